"""Small helpers shared by several test modules (imported as ``helpers``: pytest puts this folder on
``sys.path``)."""

import importlib.util
import os
import sys
import urllib.error

import numpy as np
import pytest
from numpy.lib.array_utils import byte_bounds

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")


def load_benchmark(name, filename):
    """The script ``benchmarks/<filename>`` imported as module ``name`` (its own imports found beside it)."""
    sys.path.insert(0, BENCH)
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def arrays_in(obj, out):
    """Every NumPy array inside ``obj`` (nested lists, tuples and dicts), appended to ``out``."""
    if isinstance(obj, np.ndarray):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            arrays_in(v, out)
    elif isinstance(obj, dict):
        for v in obj.values():
            arrays_in(v, out)
    return out


def union_bytes(arrays) -> int:
    """Bytes of memory the arrays cover together (overlapping views counted once)."""
    spans = sorted(byte_bounds(a) for a in arrays if a.size)
    total, end = 0, None
    for lo, hi in spans:
        if end is None or lo >= end:
            total, end = total + hi - lo, hi
        elif hi > end:
            total, end = total + hi - end, hi
    return total


def tiny_images(n=60, seed=0):
    """MNIST-shaped data for fast runs: noisy copies of ten random prototypes, ``{"train", "valid", "test"}``."""
    rng = np.random.default_rng(seed)
    proto = rng.random((10, 784)).astype(np.float32)

    def part(k):
        y = rng.integers(0, 10, k)
        return np.clip(proto[y] + 0.2 * rng.standard_normal((k, 784)), 0, 1).astype(np.float32), y
    return {"train": part(n), "valid": part(20), "test": part(20)}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test touches the network or the real ~/.cache: the cache is a temp folder, fetching fails.
    Autouse: a test module that imports it has it around every one of its tests."""
    from npdl.datasets import download

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def no_network(url, timeout=None):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(download, "fetch", no_network)
