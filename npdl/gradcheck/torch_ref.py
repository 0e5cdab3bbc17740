"""Independent PyTorch versions of every checked forward pass, differentiated by autograd.

A second reference beside JAX, used where PyTorch is installed (``[torch]`` extra).
Written from the textbook formulas with ``torch`` tensor operations, never by
calling npdl.
"""

from __future__ import annotations

from .. import backend
from .cases import FAMILIES


def forward_fn(case):
    import torch

    opt = case.options
    base = case.name.split("[")[0]
    r = opt.get("reduction", "mean")

    def reduce(e):
        return e.mean() if r == "mean" else e.sum() / e.shape[0]

    def sigmoid(x):
        return 1.0 / (1.0 + torch.exp(-x))

    def picked(a, labels):
        return a[torch.arange(a.shape[0]), labels]

    table = {
        "Dense": lambda x, W, b=None: {"sigmoid": sigmoid, "tanh": torch.tanh}.get(opt.get("activation"), lambda a: a)(
            x @ W + (0.0 if b is None else b)),
        "Sigmoid": sigmoid,
        "Tanh": lambda x: torch.tanh(x),
        "ReLU": lambda x: torch.clamp(x, min=0.0),
        "LeakyReLU": lambda x: torch.where(x > 0, x, opt.get("alpha", 0.01) * x),
        "ELU": lambda x: torch.where(x > 0, x, opt.get("alpha", 1.0) * (torch.exp(x) - 1.0)),
        "Softmax": lambda x: torch.exp(x) / torch.exp(x).sum(dim=-1, keepdim=True),
        "Dropout": lambda x, mask: x * mask,
        "Flatten": lambda x: x.reshape(x.shape[0], -1),
        "SoftmaxCrossEntropy": lambda logits, labels: -picked(
            logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True)), labels).mean(),
        "NegativeLogLikelihood": lambda probs, labels: -torch.log(picked(probs, labels)).mean(),
        "MeanSquaredError": lambda pred, target: reduce((pred - target) ** 2),
        "BinaryCrossEntropyWithLogits": lambda z, t: reduce(
            -(t * torch.log(sigmoid(z)) + (1 - t) * torch.log(1 - sigmoid(z)))),
        "BinaryCrossEntropy": lambda p, t: reduce(-(t * torch.log(p) + (1 - t) * torch.log(1 - p))),
        "L2Penalty": lambda W1, W2: opt["lam"] * ((W1 ** 2).sum() + (W2 ** 2).sum()),
        "L1Penalty": lambda W1, W2: opt["lam"] * (W1.abs().sum() + W2.abs().sum()),
    }
    for family in FAMILIES:
        table.update(family.torch_table(torch, opt))
    if base not in table:
        raise KeyError(f"no PyTorch reference for {case.name}")
    return table[base]


def to_torch(x, requires_grad=False):
    import torch

    t = torch.from_numpy(backend.to_numpy(x).copy())
    return t.requires_grad_(True) if requires_grad else t


def forward(case, inputs: dict):
    return forward_fn(case)(**{k: to_torch(v) for k, v in inputs.items()}).detach().numpy()


def vjp(case, inputs: dict, dy) -> dict:
    import torch

    args = {k: to_torch(v, requires_grad=k in case.wrt) for k, v in inputs.items()}
    y = forward_fn(case)(**args)
    grads = torch.autograd.grad(y, [args[k] for k in case.wrt], grad_outputs=to_torch(dy))
    return {k: g.numpy() for k, g in zip(case.wrt, grads)}


def available() -> tuple[bool, str]:
    try:
        import torch

        return True, f"torch {torch.__version__}"
    except ImportError:
        return False, 'PyTorch is not installed (pip install "npdl-backprop[torch]")'
