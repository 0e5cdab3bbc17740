"""``npdl.cli.memory.retain_freed_memory``: the two ``mallopt`` settings it makes on glibc, and where it
makes none (``NPDL_MALLOC=default``, no glibc, ``mallopt`` refusing)."""

import ctypes
import platform

import pytest

from npdl.cli.memory import retain_freed_memory

#: the parameter numbers in glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


class FakeLibc:
    """Records ``mallopt(param, value)`` calls and answers ``answer`` (glibc: 1 on success, 0 on error)."""

    def __init__(self, answer=1):
        self.calls, self.answer = [], answer

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.answer


@pytest.fixture
def libc(monkeypatch):
    """``ctypes.CDLL`` replaced: opening a library records its name and gives ``libc.lib`` (or raises it)."""

    class Opened:
        lib, names = FakeLibc(), []

    def cdll(name):
        Opened.names.append(name)
        if isinstance(Opened.lib, Exception):
            raise Opened.lib
        return Opened.lib

    monkeypatch.delenv("NPDL_MALLOC", raising=False)
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    return Opened


def test_sets_the_mmap_and_trim_thresholds_through_glibc_mallopt(libc):
    assert retain_freed_memory() is True
    assert libc.names == ["libc.so.6"]
    assert sorted(libc.lib.calls) == [(M_MMAP_THRESHOLD, 16 * 2**20), (M_TRIM_THRESHOLD, 128 * 2**20)]
    libc.lib.calls.clear()
    assert retain_freed_memory(mmap_threshold=3 * 2**20, trim_threshold=5 * 2**20) is True
    assert sorted(libc.lib.calls) == [(M_MMAP_THRESHOLD, 3 * 2**20), (M_TRIM_THRESHOLD, 5 * 2**20)]


@pytest.mark.parametrize("setting", ["default", " Default\n"])
def test_npdl_malloc_default_leaves_malloc_alone(libc, monkeypatch, setting):
    monkeypatch.setenv("NPDL_MALLOC", setting)
    assert retain_freed_memory() is False and libc.names == [] and libc.lib.calls == []


@pytest.mark.parametrize("lib", [OSError("libc.so.6: cannot open shared object file"), object(), FakeLibc(answer=0)],
                         ids=["no-glibc", "no-mallopt", "mallopt-refuses"])
def test_false_where_it_cannot_be_applied(libc, lib):
    libc.lib = lib
    assert retain_freed_memory() is False


def test_the_real_call_succeeds_exactly_on_glibc_and_can_repeat(monkeypatch):
    monkeypatch.delenv("NPDL_MALLOC", raising=False)
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert retain_freed_memory() is on_glibc
    assert retain_freed_memory() is on_glibc  # the same settings again
