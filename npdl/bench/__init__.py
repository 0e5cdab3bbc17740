"""``npdl bench``: time one training step of fixed workloads (see :mod:`.workloads`)."""

from .timing import measure
from .workloads import DEFAULT_WORKLOADS, FAMILIES, Workload, parse
