"""Data sets: MNIST from the LeCun IDX files (or Keras's .npz, or Theano's .pkl.gz) and toy problems.

Everything here returns NumPy arrays on the CPU; move them with
:func:`npdl.to_device`. This package may import NumPy (it sits outside the
layer-math boundary, like the backend and the CLI).

>>> data = load_mnist()                       # doctest: +SKIP
>>> x_train, y_train = data["train"]          # (50000, 784) float32, (50000,) int64
"""

from .download import MIRRORS, download_mnist
from .errors import DatasetError
from .idx import parse_idx, read_idx, write_idx
from .locate import CHECKSUMS, ENV_VAR, IDX_NAMES, cache_dir
from .mnist import load_mnist, load_mnist_raw, mnist_files_status, split_dlt
from .parts import check_parts
from .toy import and_gate, linear_regression

__all__ = ["load_mnist", "load_mnist_raw", "mnist_files_status", "and_gate", "linear_regression",
           "DatasetError", "download_mnist", "read_idx", "parse_idx", "write_idx", "split_dlt",
           "cache_dir", "CHECKSUMS", "IDX_NAMES", "ENV_VAR", "MIRRORS", "check_parts"]
