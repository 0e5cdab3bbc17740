"""Data sets: IDX parsing that refuses bad files by name, verified and atomic downloads,
the search order, and (marked ``mnist``) the real MNIST."""

import functools
import gzip
import hashlib
import http.server
import os
import threading
import time

import numpy as np
import pytest

from npdl.datasets import (DatasetError, download_mnist, load_mnist,
                           mnist_files_status, parse_idx, read_idx, split_dlt, write_idx)
from npdl.datasets import download, idx, locate, mnist
from npdl.errors import NpdlError

from helpers import offline  # noqa: F401  (autouse: no network, a temporary cache, for every test here)

NAMES = locate.IDX_NAMES
REAL_FETCH = download.fetch



def fake_arrays(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}


def write_fake_mnist(directory, monkeypatch=None, gz=True, **kwargs):
    """A tiny MNIST-shaped IDX set in ``directory``; with ``monkeypatch``, the checksum table is
    pointed at its hashes so it passes verification like the real files."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = fake_arrays(**kwargs)
    for name, array in arrays.items():
        path = directory / (name + (".gz" if gz else ""))
        write_idx(path, array)
        if monkeypatch is not None:
            content = idx.read_file_bytes(path)
            monkeypatch.setitem(locate.CHECKSUMS, name, (hashlib.sha256(content).hexdigest(), len(content)))
    return arrays


# ------------------------------------------------------------------------------ IDX parser


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_gzipped_or_not(tmp_path, suffix):
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    labels = np.array([7, 2, 1], dtype=np.uint8)
    write_idx(tmp_path / f"im{suffix}", images)
    write_idx(tmp_path / f"lb{suffix}", labels)
    assert (tmp_path / f"im{suffix}").read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\x00\x00")
    got = read_idx(tmp_path / f"im{suffix}", idx.IMAGES_MAGIC, (None, 28, 28))
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(tmp_path / f"lb{suffix}", idx.LABELS_MAGIC), labels)
    assert got.dtype == np.uint8 and not got.flags.writeable  # a view of the file's bytes


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    path = tmp_path / "labels.gz"  # unpacked by a browser but still named .gz
    write_idx(path, np.array([1, 2], dtype=np.uint8), compress=False)
    np.testing.assert_array_equal(read_idx(path, idx.LABELS_MAGIC), [1, 2])


def test_wrong_magic_names_the_file_and_both_numbers(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((2, 2), dtype=np.uint8))  # an IDX file, but of 2 dimensions
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte has magic number 0x00000802.*"
                                           r"expected 0x00000803"):
        read_idx(path, idx.IMAGES_MAGIC)


def test_little_endian_and_foreign_headers_are_described(tmp_path):
    with pytest.raises(DatasetError, match="little-endian"):
        parse_idx(bytes([3, 8, 0, 0]) + bytes(8), "x.idx", idx.IMAGES_MAGIC)
    with pytest.raises(DatasetError, match="not an IDX header"):
        parse_idx(b"PK\x03\x04" + bytes(20), "x.idx", idx.IMAGES_MAGIC)


def test_wrong_dimensions_are_refused(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((2, 28, 27), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz has dimensions \(2, 28, 27\), "
                                           r"expected \(N, 28, 28\)"):
        read_idx(path, idx.IMAGES_MAGIC, (None, 28, 28))


def test_truncated_file_is_refused_not_half_read(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((3, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte is truncated: .*needs 2368 bytes.*"
                                           r"holds 2268 bytes"):
        read_idx(path, idx.IMAGES_MAGIC)
    path.write_bytes(path.read_bytes()[:10])  # not even a whole header
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte is truncated.*16-byte header"):
        read_idx(path, idx.IMAGES_MAGIC)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match="truncated.*magic number"):
        read_idx(path, idx.IMAGES_MAGIC)


def test_truncated_gzip_is_refused(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(1000, dtype=np.int64).astype(np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\.gz is not a complete gzip file"):
        read_idx(path, idx.LABELS_MAGIC)


def test_extra_bytes_are_refused(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    write_idx(path, np.zeros(5, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00\x00\x00")
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte is 3 bytes too long"):
        read_idx(path, idx.LABELS_MAGIC)


def test_missing_file_and_error_hierarchy(tmp_path):
    with pytest.raises(DatasetError, match="cannot read .*nothing-here") as info:
        read_idx(tmp_path / "nothing-here")
    assert isinstance(info.value, NpdlError) and isinstance(info.value, OSError)


# ------------------------------------------------------------------ load_mnist on a fake set


def test_fake_set_loads_through_the_full_path(tmp_path, monkeypatch):
    arrays = write_fake_mnist(tmp_path / "data", monkeypatch)
    monkeypatch.setattr(mnist, "DLT_VALID", 4)
    data = load_mnist(data_dir=tmp_path / "data", download=False)
    assert list(data) == ["train", "valid", "test"]
    (xt, yt), (xv, yv), (xs, ys) = data["train"], data["valid"], data["test"]
    assert xt.shape == (8, 784) and xv.shape == (4, 784) and xs.shape == (5, 784)
    assert xt.dtype == np.float32 and yt.dtype == np.int64
    images = arrays["train-images-idx3-ubyte"].reshape(12, 784)
    np.testing.assert_array_equal(xt, images[:8].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(xv, images[8:].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(yv, arrays["train-labels-idx1-ubyte"][8:])

    keras = load_mnist("keras", tmp_path / "data", dtype="float64", flatten=False, download=False)
    assert list(keras) == ["train", "test"]
    assert keras["train"][0].shape == (12, 1, 28, 28) and keras["train"][0].dtype == np.float64
    raw = load_mnist("keras", tmp_path / "data", normalize=False, download=False)
    assert raw["test"][0].dtype == np.uint8 and raw["test"][0].flags.writeable
    np.testing.assert_array_equal(raw["test"][0].reshape(5, 28, 28), arrays["t10k-images-idx3-ubyte"])
    raw["test"][0][:] = 0  # a copy: the cached arrays are untouched
    again = load_mnist("keras", tmp_path / "data", normalize=False, download=False)
    np.testing.assert_array_equal(again["test"][0].reshape(5, 28, 28), arrays["t10k-images-idx3-ubyte"])


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown MNIST split 'mnist'.*'dlt', 'keras'"):
        load_mnist("mnist")
    with pytest.raises(DatasetError, match="data_dir .*no-such-dir.* is not a folder"):
        load_mnist(data_dir=tmp_path / "no-such-dir")


def test_split_dlt_takes_the_last_training_images_for_validation():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    parts = split_dlt((x, y), ("tx", "ty"), n_valid=3)
    np.testing.assert_array_equal(parts["train"][1], np.arange(7))
    np.testing.assert_array_equal(parts["valid"][1], [7, 8, 9])
    assert parts["test"] == ("tx", "ty")
    with pytest.raises(DatasetError, match="cannot hold out 10000 validation images from a training set of 10"):
        split_dlt((x, y), ("tx", "ty"))


def test_checksum_mismatch_names_the_file_and_both_hashes(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path, monkeypatch)
    expected = locate.CHECKSUMS["t10k-labels-idx1-ubyte"][0]
    labels = np.frombuffer(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", (labels + 1) % 10)  # same size, other content
    content = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    actual = hashlib.sha256(content).hexdigest()
    with pytest.raises(DatasetError, match=rf"t10k-labels-idx1-ubyte\.gz is corrupt.*{actual}.*"
                                           rf"expected SHA-256 {expected}"):
        load_mnist("keras", tmp_path, download=False)


def test_the_real_table_refuses_a_truncated_copy(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path)  # MNIST-shaped but tiny: the real checksums see it as truncated
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz is truncated: .*\(9424 bytes\), "
                                           r"expected SHA-256 ba891046.*\(47040016 bytes\)"):
        load_mnist(data_dir=tmp_path, download=False)


def test_parsed_files_are_cached_until_they_change(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path, monkeypatch)
    reads = []
    real_read = mnist.read_file_bytes
    monkeypatch.setattr(mnist, "read_file_bytes", lambda path: reads.append(path) or real_read(path))
    mnist._read_verified.cache_clear()
    load_mnist("keras", tmp_path, download=False)
    load_mnist("keras", tmp_path, download=False)
    assert len(reads) == 4
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # "replaced": read (and checked) again
    load_mnist("keras", tmp_path, download=False)
    assert len(reads) == 5 and str(reads[-1]).endswith("t10k-labels-idx1-ubyte.gz")


# -------------------------------------------------------------------------- search order


def labelled_set(directory, label):
    """A fake set whose labels are all ``label``, so a test can tell which folder was read."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in fake_arrays().items():
        write_idx(directory / (name + ".gz"), np.full_like(array, label) if "labels" in name else array)


def test_search_order_argument_then_env_then_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(locate, "CHECKSUMS", {})  # three different sets: skip verification here
    cache = tmp_path / "xdg" / "npdl" / "mnist"
    for directory, label in ((tmp_path / "arg", 1), (tmp_path / "env", 2), (cache, 3)):
        labelled_set(directory, label)
    monkeypatch.setenv("NPDL_DATA_DIR", str(tmp_path / "env"))

    def label_read(data_dir=None):
        return set(load_mnist("keras", data_dir, download=False)["test"][1])

    assert label_read(tmp_path / "arg") == {1}
    assert label_read() == {2}
    status = mnist_files_status(tmp_path / "arg")
    assert [s["where"] for s in status["searched"]] == ["data_dir argument", "$NPDL_DATA_DIR", "cache"]
    assert status["source"]["dir"] == str(tmp_path / "arg")
    assert status["files"]["t10k-labels-idx1-ubyte"] == str(tmp_path / "arg" / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.delenv("NPDL_DATA_DIR")
    assert label_read() == {3}
    assert mnist_files_status()["source"] == {"kind": "idx", "dir": str(cache), "where": "cache"}


def test_sets_are_never_mixed_across_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(locate, "CHECKSUMS", {})
    labelled_set(tmp_path / "env", 2)
    (tmp_path / "arg").mkdir()
    write_idx(tmp_path / "arg" / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    monkeypatch.setenv("NPDL_DATA_DIR", str(tmp_path / "env"))
    assert set(load_mnist("keras", tmp_path / "arg", download=False)["test"][1]) == {2}
    account = mnist_files_status(tmp_path / "arg")["searched"][0]["found"]
    assert account.startswith("incomplete: has train-images-idx3-ubyte.gz but lacks train-labels")


def test_offline_failure_names_files_folders_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("NPDL_DATA_DIR", str(tmp_path / "env"))
    (tmp_path / "arg").mkdir()
    with pytest.raises(DatasetError) as info:
        load_mnist(data_dir=tmp_path / "arg")
    message = str(info.value)
    for name in NAMES:
        assert name + ".gz" in message
    for folder in (tmp_path / "arg", tmp_path / "env", tmp_path / "xdg" / "npdl" / "mnist"):
        assert str(folder) in message
    assert "NPDL_DATA_DIR" in message and "network disabled in tests" in message
    assert "(data_dir argument): none of the files" in message and "($NPDL_DATA_DIR): does not exist" in message


def test_download_false_says_so(monkeypatch):
    monkeypatch.delenv("NPDL_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match=r"(?s)\$NPDL_DATA_DIR is not set.*download=False"):
        load_mnist(download=False)


# ----------------------------------------------------------------------------- downloads


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server for ``tmp_path / "served"`` on 127.0.0.1, with the real fetch restored."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(download, "fetch", REAL_FETCH)
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_lands_in_the_cache(server, tmp_path, monkeypatch):
    served, url = server
    arrays = write_fake_mnist(served / "mirror", monkeypatch)
    monkeypatch.delenv("NPDL_DATA_DIR", raising=False)
    # the first mirror has nothing (HTTP 404): the second one is used
    monkeypatch.setattr(download, "MIRRORS", (url + "missing/", url + "mirror/"))
    data = load_mnist("keras")
    np.testing.assert_array_equal(data["train"][1], arrays["train-labels-idx1-ubyte"])
    cache = tmp_path / "xdg" / "npdl" / "mnist"
    assert sorted(os.listdir(cache)) == sorted(n + ".gz" for n in NAMES)  # no temporary files left
    for name in NAMES:
        assert (cache / (name + ".gz")).read_bytes() == (served / "mirror" / (name + ".gz")).read_bytes()


def test_download_refuses_a_corrupt_mirror_and_writes_nothing(server, tmp_path, monkeypatch):
    served, url = server
    write_fake_mnist(served, monkeypatch)
    good = locate.CHECKSUMS["train-images-idx3-ubyte"][0]
    write_idx(served / "train-images-idx3-ubyte.gz", np.ones((12, 28, 28), np.uint8))  # tampered
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match=rf"could not download train-images-idx3-ubyte\.gz: "
                                           rf"{url}train-images-idx3-ubyte\.gz is corrupt.*expected SHA-256 {good}"):
        download_mnist(dest, mirrors=[url], quiet=True)
    assert not (dest / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in os.listdir(dest) if p.endswith(".part")]


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "file.gz"
    target.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(download.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        download.write_atomically(target, b"new content")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["file.gz"]
    monkeypatch.undo()
    download.write_atomically(target, b"new content")
    assert target.read_bytes() == b"new content" and os.listdir(tmp_path) == ["file.gz"]


# ---------------------------------------------------------------------------- real MNIST

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.mnist
def test_real_mnist_dlt_split(mnist_dir):
    data = load_mnist(data_dir=mnist_dir, download=False)
    assert [(k, x.shape, y.shape) for k, (x, y) in data.items()] == [
        ("train", (50000, 784), (50000,)), ("valid", (10000, 784), (10000,)), ("test", (10000, 784), (10000,))]
    for x, y in data.values():
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.min() == 0.0 and x.max() == 1.0 and set(np.unique(y)) == set(range(10))
    assert np.bincount(data["test"][1]).tolist() == TEST_COUNTS and data["test"][1][0] == 7
    train_counts = np.bincount(data["train"][1], minlength=10) + np.bincount(data["valid"][1], minlength=10)
    assert train_counts.tolist() == TRAIN_COUNTS and data["train"][1][0] == 5


@pytest.mark.mnist
def test_real_mnist_keras_split_raw_and_nchw(mnist_dir):
    raw = load_mnist("keras", data_dir=mnist_dir, normalize=False, download=False)
    (x, y), (xs, ys) = raw["train"], raw["test"]
    assert x.shape == (60000, 784) and xs.shape == (10000, 784) and x.dtype == np.uint8 and x.max() == 255
    assert np.bincount(ys)[1] == 1135
    nchw = load_mnist("keras", data_dir=mnist_dir, flatten=False, dtype="float64", download=False)
    assert nchw["train"][0].shape == (60000, 1, 28, 28) and nchw["train"][0].dtype == np.float64
    np.testing.assert_array_equal(nchw["test"][0].reshape(10000, 784) * 255, xs)
    dlt = load_mnist(data_dir=mnist_dir, normalize=False, download=False)
    np.testing.assert_array_equal(dlt["valid"][0], x[50000:])  # the last 10,000 training images


@pytest.mark.mnist
def test_real_mnist_loads_fast_once_cached(mnist_dir):
    load_mnist("keras", data_dir=mnist_dir, download=False)
    start = time.perf_counter()
    load_mnist("keras", data_dir=mnist_dir, download=False)
    assert time.perf_counter() - start < 1.0
