"""SHA-256 checks of decompressed file contents, shared by the loader and the downloader.

The content is checked, not the ``.gz`` bytes: the same images can be gzipped
differently (one of the shared MNIST files was recompressed), and an
uncompressed copy must pass the same check as a compressed one.
"""

import hashlib

from .errors import DatasetError


def _how_wrong(size: int, expected_size: int, same_size: str) -> str:
    """What a file of ``size`` bytes that fails its checksum is: short, long, or ``same_size``."""
    if size < expected_size:
        return "truncated"
    if size > expected_size:
        return "too long (extra bytes)"
    return same_size


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def verify_content(name, data: bytes, expected_sha256: str, expected_size: int, hint: str = "") -> None:
    """Raise :class:`DatasetError` unless ``data`` has the expected SHA-256 and length.

    ``name`` is what the message calls the file (its path, or a URL). The message
    gives both checksums and both sizes, so a truncated file (short) reads
    differently from a corrupt or foreign one (right size, wrong hash).
    """
    actual = sha256_hex(data)
    if actual == expected_sha256 and len(data) == expected_size:
        return
    what = _how_wrong(len(data), expected_size, "corrupt or not the expected file")
    raise DatasetError(
        f"{name} is {what}: its decompressed content has SHA-256 {actual} ({len(data)} bytes), "
        f"expected SHA-256 {expected_sha256} ({expected_size} bytes)" + (f"; {hint}" if hint else ""))


#: The published single-file archives, by file name: ``(algorithm, hex digest)`` pairs of the whole
#: file as downloaded (any one matching is enough) and its size in bytes.
#:
#: * ``mnist.npz``: Keras's copy, SHA-256 as pinned by ``keras.datasets.mnist.load_data``
#:   (https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz); Keras before 2.2
#:   fetched it from https://s3.amazonaws.com/img-datasets/mnist.npz and pinned that copy's MD5.
#: * ``mnist.pkl.gz``: the Theano DeepLearningTutorials' file
#:   (http://deeplearning.net/data/mnist/mnist.pkl.gz). No SHA-256 of it is published; the MD5
#:   the tutorials' mirrors and the libraries that download it pin is used instead.
ARCHIVES = {
    "mnist.npz": ((("sha256", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
                   ("md5", "8a61469f7ea1b51cbae51d4f78837e45")), 11490434),
    "mnist.pkl.gz": ((("md5", "a02cd19f81d51c426d7ca14024243ce9"),), 16168813),
}


def verify_archive(path, name: str, data: bytes) -> None:
    """Raise :class:`DatasetError` unless ``data`` (the bytes of ``path``) is the published file ``name``.

    ``name`` must be a key of :data:`ARCHIVES`. The message gives the file's digest and size
    next to the published ones, and what to do with a file of one's own.
    """
    digests, size = ARCHIVES[name]
    actual = {algorithm: hashlib.new(algorithm, data).hexdigest() for algorithm, _ in digests}
    if any(actual[algorithm] == digest for algorithm, digest in digests):
        return
    what = _how_wrong(len(data), size, "corrupt or not the published file")
    algorithm, digest = digests[0]
    raise DatasetError(
        f"{path} is {what}: a file named {name} must be the published one, and this one has "
        f"{algorithm.upper()} {actual[algorithm]} ({len(data)} bytes), expected {algorithm.upper()} {digest} "
        f"({size} bytes). Delete it and download it again, or, for a file of your own, give it another name "
        f"and pass it as load_mnist(file=...) (then only its shapes, dtypes and labels are checked)")
