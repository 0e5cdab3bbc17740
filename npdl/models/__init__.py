"""Models: :class:`Sequential`, a stack of layers with compile / fit / evaluate / predict."""

from .sequential import CLASSIFIER_LOSSES, METRICS, Sequential
from .summary import parameter_counts, summary_table
