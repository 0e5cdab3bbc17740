"""Where a batch-1 product runs depends on the last-level cache, read from sysfs
(npdl.kernels.numba.cache_size, npdl.kernels.numba.one_thread_max)."""

import pytest

pytest.importorskip("numba")
from npdl.kernels import numba as nb  # noqa: E402
from npdl.kernels.numba import cache_size  # noqa: E402


def _sysfs(root, caches):
    for i, (level, kind, size) in enumerate(caches):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    (root / "uevent").write_text("")
    return str(root)


def test_the_last_level_is_the_highest_data_or_unified_cache(tmp_path):
    zen1 = _sysfs(tmp_path / "zen1", [(1, "Data", "32K"), (1, "Instruction", "64K"), (2, "Unified", "512K"),
                                      (3, "Unified", "8192K")])
    assert cache_size.last_level_bytes(zen1) == 8 << 20
    no_l3 = _sysfs(tmp_path / "no_l3", [(1, "Data", "48K"), (2, "Unified", "2M"), (3, "Instruction", "9M")])
    assert cache_size.last_level_bytes(no_l3) == 2 << 20  # an instruction cache holds no weights


def test_what_cannot_be_read_is_unknown(tmp_path):
    assert cache_size.last_level_bytes(str(tmp_path / "missing")) is None
    bad = _sysfs(tmp_path / "bad", [(2, "Unified", "lots"), (3, "Unified", "")])
    assert cache_size.last_level_bytes(bad) is None
    half = _sysfs(tmp_path / "half", [(2, "Unified", "1024K"), (3, "Unified", "?")])
    assert cache_size.last_level_bytes(half) == 1 << 20


def test_one_thread_serves_three_float32_matrices_that_fit_in_the_cache():
    assert nb.one_thread_max(8 << 20) == (8 << 20) // 12 == 699050  # 1000x1000 goes to BLAS there
    assert nb.one_thread_max(8 << 20) < 1000 * 1000 < nb.one_thread_max(32 << 20)
    assert nb.one_thread_max(32 << 20) == nb.ONE_THREAD_LIMIT == 1 << 21  # capped where it was measured
    assert nb.one_thread_max(None) == nb.one_thread_max(0) == nb.ONE_THREAD_LIMIT
