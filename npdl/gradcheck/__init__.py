"""Proof that every backward pass is right.

For each layer and loss (:mod:`npdl.gradcheck.cases`), in float64:

1. draw inputs and a random upstream gradient ``dy`` (not ``sum(y)``, which would
   hide a transposed or permuted Jacobian);
2. run npdl's own forward and backward functions -- the ones training uses;
3. compare with central finite differences (:mod:`.numeric`) and with an
   independent JAX implementation differentiated by ``jax.vjp`` (:mod:`.jax_ref`),
   or PyTorch autograd (:mod:`.torch_ref`).

The relative error is ``max|a - n| / max(1e-8, max(|a| + |n|))``; a row passes
when it is at most ``NUMERIC_TOL`` (1e-6) against finite differences and
``AUTODIFF_TOL`` (1e-8) against autodiff.

:mod:`.step` checks a whole training step's gradient (loss and penalties, every parameter
of a small model of each family) the same two ways (``npdl gradcheck --step``).

:func:`check_layer`, :func:`check_loss` and :func:`check_model` (:mod:`.user`) do the same for a
layer, loss or model you write yourself, differentiating its own forward with PyTorch and JAX
(no hand-written reference needed), and return a :class:`Report` of the same records.
"""

from .case import Case
from .cases import CASES, select
from .numeric import numerical_vjp, relative_error
from .runner import AUTODIFF_TOL, BACKENDS, NUMERIC_TOL, Record, check_case, format_table, run
from .step import STEP_MODELS, check_step
from .user import check_layer, check_loss, check_model
from .user_report import CheckRecord, GradientCheckError, Report
