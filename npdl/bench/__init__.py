"""``npdl bench``: time one training step of fixed workloads (see :mod:`.workloads`)."""

from .timing import CudaEventTimer, WallTimer, device_name, measure, timer_for
from .workloads import DEFAULT_WORKLOADS, FAMILIES, Workload, expand, parse, parse_batch_sizes
