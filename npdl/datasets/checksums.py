"""SHA-256 checks of decompressed file contents, shared by the loader and the downloader.

The content is checked, not the ``.gz`` bytes: the same images can be gzipped
differently (one of the shared MNIST files was recompressed), and an
uncompressed copy must pass the same check as a compressed one.
"""

import hashlib

from .errors import DatasetError


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
    if len(data) < expected_size:
        what = "truncated"
    elif len(data) > expected_size:
        what = "too long (extra bytes)"
    else:
        what = "corrupt or not the expected file"
    raise DatasetError(
        f"{name} is {what}: its decompressed content has SHA-256 {actual} ({len(data)} bytes), "
        f"expected SHA-256 {expected_sha256} ({expected_size} bytes)" + (f"; {hint}" if hint else ""))
