"""Data files checked part by part: the Keras and Theano archives (counts, shapes, dtypes, labels,
and the published checksum for a file under a published name), a file of the wrong kind, and
an empty part refused before any training."""

import dataclasses
import gzip
import hashlib
import os
import pickle

import numpy as np
import pytest

from npdl.datasets import DatasetError, check_parts, load_mnist, mnist_files_status, write_idx
from npdl.datasets import archives, checksums, idx, locate, mnist
from npdl.recipes import get_recipe, runner

from helpers import offline  # noqa: F401  (autouse: no network, a temporary cache, for every test here)



def fake(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8))


def write_npz(path, xtr, ytr, xte, yte):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


def write_pkl(path, parts, scale=256, protocol=2):
    """``parts``: three (uint8 images (N, 28, 28), labels) pairs, stored as the Theano file stores them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = tuple(((x.reshape(len(x), 784) / np.float32(scale)).astype(np.float32), y.astype(np.int64))
                   for x, y in parts)
    with gzip.open(path, "wb") as f:
        pickle.dump(stored, f, protocol=protocol)
    return path


def publish(monkeypatch, path, counts):
    """Make ``path`` count as the published file of its name: its checksum and part sizes."""
    data = path.read_bytes()
    monkeypatch.setitem(checksums.ARCHIVES, path.name, ((("sha256", hashlib.sha256(data).hexdigest()),), len(data)))
    monkeypatch.setitem(archives.PARTS, path.name, counts)


def write_fake_idx(directory, monkeypatch, xtr, ytr, xte, yte):
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in zip(locate.IDX_NAMES, (xtr, ytr, xte, yte)):
        write_idx(directory / (name + ".gz"), array)
        content = idx.read_file_bytes(directory / (name + ".gz"))
        monkeypatch.setitem(locate.CHECKSUMS, name, (hashlib.sha256(content).hexdigest(), len(content)))


# ----------------------------------------------------------------------- Keras and Theano


@pytest.mark.parametrize("scale", [256, 255])  # the Theano file stores pixel / 256
def test_npz_and_pkl_give_the_same_arrays_as_idx(tmp_path, monkeypatch, scale):
    xtr, ytr, xte, yte = fake()
    write_fake_idx(tmp_path / "idx", monkeypatch, xtr, ytr, xte, yte)
    publish(monkeypatch, write_npz(tmp_path / "npz" / "mnist.npz", xtr, ytr, xte, yte), {"train": 12, "test": 5})
    pkl = write_pkl(tmp_path / "pkl" / "mnist.pkl.gz", ((xtr[:8], ytr[:8]), (xtr[8:], ytr[8:]), (xte, yte)), scale)
    publish(monkeypatch, pkl, {"train": 8, "valid": 4, "test": 5})
    monkeypatch.setattr(mnist, "DLT_VALID", 4)
    reference = load_mnist(data_dir=tmp_path / "idx", normalize=False, download=False)
    for kind in ("npz", "pkl"):
        assert mnist_files_status(tmp_path / kind)["source"]["kind"] == kind
        got = load_mnist(data_dir=tmp_path / kind, normalize=False, download=False)
        for key in ("train", "valid", "test"):
            np.testing.assert_array_equal(got[key][0], reference[key][0])
            np.testing.assert_array_equal(got[key][1], reference[key][1])
    assert load_mnist("keras", tmp_path / "pkl", download=False)["train"][0].shape == (12, 784)
    np.testing.assert_array_equal(reference["train"][1], ytr[:8])


def test_idx_files_win_over_archives_in_one_folder(tmp_path, monkeypatch):
    write_npz(tmp_path / "mnist.npz", *fake())
    write_fake_idx(tmp_path, monkeypatch, *fake())
    assert mnist_files_status(tmp_path)["source"]["kind"] == "idx"


def test_pickles_run_no_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(((Evil(), None), None, None), f, protocol=2)
    with pytest.raises(DatasetError, match=r"mnist\.pkl\.gz .*refusing to load \w+\.getcwd"):
        load_mnist(data_dir=tmp_path, download=False)


def test_broken_archives_are_reported_by_name(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(DatasetError, match=r"mnist\.npz lacks the arrays \['x_test', 'y_test'\]"):
        load_mnist(data_dir=tmp_path, download=False)
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match=r"cannot read .*mnist\.npz as an \.npz archive"):
        load_mnist(data_dir=tmp_path, download=False)
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.full(2, 12, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    with pytest.raises(DatasetError, match=r"mnist\.npz: train labels must be integers 0\.\.9 .*range 12\.\.12"):
        load_mnist(data_dir=tmp_path, download=False)


# ------------------------------------------------------------- a part of the wrong size


def test_an_empty_valid_part_is_refused_not_taken_from_training(tmp_path, monkeypatch):
    xtr, ytr, xte, yte = fake()
    write_pkl(tmp_path / "mnist.pkl.gz", ((xtr, ytr), (xtr[:0], ytr[:0]), (xte, yte)), protocol=4)
    monkeypatch.setattr(mnist, "DLT_VALID", 4)  # small enough that 12 training images could lend 4
    monkeypatch.setitem(archives.PARTS, "mnist.pkl.gz", {"train": 12, "valid": 4, "test": 5})  # scaled down
    with pytest.raises(DatasetError, match=r"mnist\.pkl\.gz: the valid part is empty"):
        load_mnist(data_dir=tmp_path, download=False)
    own = write_pkl(tmp_path / "own" / "digits.pkl.gz", ((xtr, ytr), (xtr[:0], ytr[:0]), (xte, yte)))
    with pytest.raises(DatasetError, match=r"digits\.pkl\.gz: the valid part is empty"):
        load_mnist(file=own, download=False)


def test_a_published_name_with_a_part_of_the_wrong_size_names_the_part(tmp_path, monkeypatch):
    xtr, ytr, xte, yte = fake()
    write_npz(tmp_path / "npz" / "mnist.npz", xtr, ytr, xte, yte)
    with pytest.raises(DatasetError, match=r"mnist\.npz: the train part holds 12 images, but the published "
                                           r"mnist\.npz holds 60000"):
        load_mnist("keras", data_dir=tmp_path / "npz", download=False)
    write_pkl(tmp_path / "pkl" / "mnist.pkl.gz", ((xtr[:8], ytr[:8]), (xtr[8:], ytr[8:]), (xte, yte)))
    monkeypatch.setitem(archives.PARTS, "mnist.pkl.gz", {"train": 8, "valid": 4, "test": 10000})
    with pytest.raises(DatasetError, match=r"mnist\.pkl\.gz: the test part holds 5 images, but the published "
                                           r"mnist\.pkl\.gz holds 10000"):
        load_mnist(data_dir=tmp_path / "pkl", download=False)


def test_a_published_name_must_match_the_published_checksum(tmp_path, monkeypatch):
    xtr, ytr, xte, yte = fake()
    path = write_npz(tmp_path / "mnist.npz", xtr, ytr, xte, yte)
    monkeypatch.setitem(archives.PARTS, "mnist.npz", {"train": 12, "test": 5})  # the counts pass
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DatasetError, match=rf"mnist\.npz is truncated: a file named mnist\.npz must be the published "
                                           rf"one, .*SHA256 {actual} .*expected SHA256 731c5ac6.*11490434 bytes"):
        load_mnist("keras", data_dir=tmp_path, download=False)
    wrong_dtype = write_pkl(tmp_path / "p" / "mnist.pkl.gz", ((xtr[:8], ytr[:8]), (xtr[8:], ytr[8:]), (xte, yte)))
    monkeypatch.setitem(archives.PARTS, "mnist.pkl.gz", {"train": 8, "valid": 4, "test": 5})
    with pytest.raises(DatasetError, match=r"mnist\.pkl\.gz is truncated: .*MD5 .*expected MD5 a02cd19f"):
        load_mnist("keras", data_dir=tmp_path / "p", download=False)
    with pytest.raises(DatasetError, match=r"train images are float64, but the published mnist\.pkl\.gz holds float32"):
        archives._check(wrong_dtype, np.zeros((8, 784)), np.zeros(8, np.int64), "train", (784,), "mnist.pkl.gz")


def test_a_file_of_ones_own_is_checked_for_structure_only(tmp_path, monkeypatch):
    xtr, ytr, xte, yte = fake()
    own = write_npz(tmp_path / "digits.npz", xtr, ytr.astype(np.int64), xte, yte)
    data = load_mnist("keras", file=own, normalize=False)
    np.testing.assert_array_equal(data["train"][0].reshape(12, 28, 28), xtr)
    assert data["test"][1].tolist() == yte.tolist()
    pkl = write_pkl(tmp_path / "digits.pkl", ((xtr[:9], ytr[:9]), (xtr[9:], ytr[9:]), (xte, yte)))
    data = load_mnist(file=pkl, normalize=False)  # the file's own split: 9 + 3, not DLT_VALID
    assert [len(data[k][0]) for k in ("train", "valid", "test")] == [9, 3, 5]
    np.testing.assert_array_equal(data["valid"][1], ytr[9:])
    write_npz(tmp_path / "bad.npz", xtr, ytr.astype(np.float32), xte, yte)
    with pytest.raises(DatasetError, match=r"bad\.npz: train labels must be integers"):
        load_mnist("keras", file=tmp_path / "bad.npz")
    (tmp_path / "digits.bin").write_bytes(own.read_bytes())
    with pytest.raises(DatasetError, match="cannot tell the layout"):
        load_mnist(file=tmp_path / "digits.bin")


# ------------------------------------------------------------------- the wrong kind of file


def test_a_labels_file_where_images_belong_is_called_the_wrong_kind(tmp_path, monkeypatch):
    xtr, ytr, xte, yte = fake()
    write_fake_idx(tmp_path, monkeypatch, xtr, ytr, xte, yte)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", ytr)  # the labels, under the images' name
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz is the wrong kind of file: its magic "
                                           r"number 0x00000801 marks an IDX label file.*images belong here "
                                           r"\(0x00000803") as info:
        load_mnist(data_dir=tmp_path, download=False)
    assert "truncated" not in str(info.value)
    with pytest.raises(DatasetError, match=r"0x00000803 marks an IDX image file.*labels belong here"):
        idx.parse_idx(idx.read_file_bytes(tmp_path / "t10k-images-idx3-ubyte.gz"), "lb", idx.LABELS_MAGIC)


# --------------------------------------------------------------------- empty parts, any data


def test_check_parts_names_the_empty_or_mismatched_part():
    x, y = np.zeros((4, 3), np.float32), np.zeros(4, np.int64)
    assert check_parts({"train": (x, y), "test": (x, None)})["train"][0] is x
    with pytest.raises(DatasetError, match=r"recipe 'r': the 'test' part is empty \(x has shape \(0, 3\)\)"):
        check_parts({"train": (x, y), "test": (x[:0], y[:0])}, "recipe 'r'")
    with pytest.raises(DatasetError, match=r"the 'valid' part has 4 inputs but 3 targets"):
        check_parts({"valid": (x, y[:3])})


def test_a_recipe_with_an_empty_test_part_fails_before_building_the_model():
    built = []
    recipe = dataclasses.replace(get_recipe("logreg"), build=lambda *a: built.append(a))
    x, y = np.zeros((6, 784), np.float32), np.zeros(6, np.int64)
    with pytest.raises(DatasetError, match="recipe 'logreg': the 'test' part is empty"):
        runner.train(recipe, epochs=1, verbose=0, data={"train": (x, y), "valid": (x, y), "test": (x[:0], y[:0])})
    assert built == []
