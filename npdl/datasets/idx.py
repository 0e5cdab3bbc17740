"""Reading LeCun's IDX files, the format MNIST ships in, gzipped or not.

An IDX file is a 4-byte magic number -- two zero bytes, a type code (``0x08`` =
unsigned byte) and the number of dimensions -- then one big-endian uint32 per
dimension, then the values, row-major. MNIST images are ``0x00000803`` (ubyte,
3 dimensions: count, rows, columns), labels ``0x00000801`` (ubyte, 1 dimension).

The whole file is read (and gunzipped) into memory first and its length checked
against the header before any value is used, so a truncated file is refused
instead of half-read. :func:`numpy.frombuffer` then views the bytes without a copy.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from .errors import DatasetError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
GZIP_MAGIC = b"\x1f\x8b"

_KNOWN_MAGIC = {
    IMAGES_MAGIC: "an IDX image file (unsigned bytes, 3 dimensions)",
    LABELS_MAGIC: "an IDX label file (unsigned bytes, 1 dimension)",
}


def read_file_bytes(path) -> bytes:
    """The content of ``path``, gunzipped when it is gzip data.

    Gzip is recognised by its first two bytes, not by the ``.gz`` suffix: some
    browsers unpack a download but keep the name, and an IDX file can never start
    with ``1f 8b`` (its magic number starts with two zero bytes).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DatasetError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:  # EOFError: the gzip stream was cut short
        raise DatasetError(f"{os.fspath(path)} is not a complete gzip file ({exc}); it is probably truncated "
                           "or corrupt: delete it and download it again") from exc


def _describe(magic: int) -> str:
    if magic in _KNOWN_MAGIC:
        return _KNOWN_MAGIC[magic]
    if int.from_bytes(magic.to_bytes(4, "big"), "little") in _KNOWN_MAGIC:
        return "an IDX header written in little-endian byte order"
    if magic >> 16 == 0x1F8B:
        return "gzip data"
    return "not an IDX header"


def parse_idx(data: bytes, name, expected_magic: int, dims=None) -> np.ndarray:
    """The uint8 array in the IDX bytes ``data`` (read-only, no copy).

    ``name`` is used in error messages (normally the file's path).
    ``expected_magic`` is :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC` (any
    ``0x000008NN`` works: unsigned bytes in NN dimensions). ``dims``, if given,
    lists the required size of each dimension, ``None`` where any size goes,
    e.g. ``(None, 28, 28)`` for MNIST images.

    Raises :class:`DatasetError` naming the file, what was expected and what was
    found, for a wrong magic number, wrong dimensions, or a length that does not
    match the header (truncated, or extra bytes at the end).
    """
    name = os.fspath(name)
    ndim = expected_magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise DatasetError(f"{name} is truncated: it holds {len(data)} bytes, fewer than an IDX magic number (4)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic and magic in _KNOWN_MAGIC and expected_magic in _KNOWN_MAGIC:
        found, wanted = ("labels", "images") if magic == LABELS_MAGIC else ("images", "labels")
        raise DatasetError(f"{name} is the wrong kind of file: its magic number 0x{magic:08x} marks "
                           f"{_describe(magic)}, but {wanted} belong here (0x{expected_magic:08x}, {_KNOWN_MAGIC[expected_magic]}); "
                           f"it holds {found}: put the {wanted} file under this name")
    if magic != expected_magic:
        raise DatasetError(f"{name} has magic number 0x{magic:08x} ({_describe(magic)}), expected "
                           f"0x{expected_magic:08x} ({_KNOWN_MAGIC.get(expected_magic, 'IDX')}); "
                           "is it the right file (images vs labels), and not some other format?")
    if len(data) < header:
        raise DatasetError(f"{name} is truncated: it holds {len(data)} bytes, fewer than its {header}-byte header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if dims is not None:
        want = tuple(dims)
        if len(want) != ndim or any(w is not None and w != s for w, s in zip(want, shape)):
            shown = "(" + ", ".join("N" if w is None else str(w) for w in want) + ")"
            raise DatasetError(f"{name} has dimensions {shape}, expected {shown}")
    expected_len = header + math.prod(shape)
    if len(data) != expected_len:
        what = "truncated" if len(data) < expected_len else f"{len(data) - expected_len} bytes too long"
        raise DatasetError(f"{name} is {what}: its header says shape {shape}, which needs {expected_len} bytes "
                           f"({header} header + {math.prod(shape)} data), but it holds {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path, expected_magic: int = IMAGES_MAGIC, dims=None) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a read-only uint8 array; see :func:`parse_idx`."""
    return parse_idx(read_file_bytes(path), path, expected_magic, dims)


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write a uint8 array as an IDX file (gzipped when ``compress`` or the name ends in ``.gz``).

    The inverse of :func:`read_idx`; tests use it to make small MNIST-shaped files.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data += array.tobytes()
    if compress if compress is not None else os.fspath(path).endswith(".gz"):
        data = gzip.compress(data)
    with open(path, "wb") as f:
        f.write(data)
