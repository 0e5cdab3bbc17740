"""``npdl bench``: time one training step of fixed workloads (see :mod:`.workloads`), count its work
(:mod:`.work`) and place it against the machine's measured ceilings (:mod:`.peak`, :mod:`.roofline`)."""

from .timing import CudaEventTimer, WallTimer, device_name, measure, timer_for
from .workloads import DEFAULT_WORKLOADS, FAMILIES, Workload, expand, parse, parse_batch_sizes
from .work import Work, model_work, workload_work
