"""Downloading the four MNIST IDX files into the cache, verified and written atomically.

Each file is fetched whole into memory (the largest is under 10 MB), gunzipped,
and its content checked against :data:`npdl.datasets.locate.CHECKSUMS` before
anything touches the disk. Only then are the ``.gz`` bytes written, to a
temporary file in the destination folder that :func:`os.replace` renames into
place, so an interrupted download or a bad mirror never leaves a half-written
or wrong file where the loader would find it.

yann.lecun.com no longer serves the files reliably, so the default mirrors are
the copies PyTorch (torchvision) and TensorFlow use.
"""

from __future__ import annotations

import gzip
import http.client
import os
import sys
import tempfile
import urllib.request
import zlib
from pathlib import Path

from . import locate
from .checksums import verify_content
from .errors import DatasetError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

TIMEOUT_S = 60


def fetch(url: str, timeout: float = TIMEOUT_S) -> bytes:
    """The body of ``url`` (a separate function so tests can swap the network out)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def write_atomically(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and :func:`os.replace`.

    Readers see either the old file or the complete new one, never a partial
    write, even if the process is killed half-way.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def download_file(name: str, dest_dir, mirrors=None, timeout: float = TIMEOUT_S, quiet: bool = False) -> Path:
    """Download ``name + ".gz"`` into ``dest_dir`` from the first mirror that serves a verified copy.

    A mirror that fails (network error, HTTP error, bad gzip, wrong checksum) is
    skipped; if all fail, :class:`DatasetError` lists each mirror's failure.
    """
    expected_sha, expected_size = locate.CHECKSUMS[name]
    dest = Path(dest_dir) / (name + ".gz")
    failures = []
    for mirror in (MIRRORS if mirrors is None else mirrors):
        url = mirror.rstrip("/") + "/" + name + ".gz"
        if not quiet:
            print(f"npdl: downloading {url}", file=sys.stderr)
        try:
            packed = fetch(url, timeout)
            content = gzip.decompress(packed)
            verify_content(url, content, expected_sha, expected_size)
        except (OSError, EOFError, zlib.error, ValueError, http.client.HTTPException) as exc:
            # URLError, timeouts and DatasetError (bad checksum) are all OSErrors
            # a DatasetError (bad checksum) already names the URL; the others need it added
            failures.append(str(exc) if isinstance(exc, DatasetError) else
                            f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        try:
            write_atomically(dest, packed)
        except OSError as exc:
            raise DatasetError(f"downloaded {url} but could not write {dest}: {exc.strerror or exc}") from exc
        return dest
    raise DatasetError(f"could not download {name}.gz: " + "; ".join(failures or ["no mirrors given"]))


def download_mnist(dest_dir=None, mirrors=None, timeout: float = TIMEOUT_S, quiet: bool = False) -> dict:
    """Download whichever of the four IDX files ``dest_dir`` (default: the cache) lacks.

    Returns ``{name: path}`` for all four. Files already present are left alone
    (the loader verifies them when it reads them).
    """
    dest_dir = Path(locate.cache_dir() if dest_dir is None else dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the download folder {dest_dir}: {exc.strerror or exc}") from exc
    paths = {}
    for name in locate.IDX_NAMES:
        paths[name] = locate.find_idx_file(dest_dir, name) or download_file(name, dest_dir, mirrors, timeout, quiet)
    return paths
