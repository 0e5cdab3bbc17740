"""Fixed benchmark workloads: one full training step (forward, backward, SGD update) in float32.

The definitions are shared with the peer implementations in ``benchmarks/`` so every
library times exactly the same network, batch and loss.

* ``mlp_bN``: 784-500-10 tanh MLP (the Theano tutorial's), softmax cross-entropy.
* ``sda_bN``: 784-1000-1000-1000-10 sigmoid (the stacked denoising autoencoder's
  finetuning network), softmax cross-entropy.

* ``lenet_bN``: the Theano LeNet (conv 20 5x5 -> max-pool 2 -> tanh, conv 50 5x5 -> max-pool 2
  -> tanh, dense 500 tanh, dense 10), convolutions without bias.
* ``kcnn_bN``: the Keras CNN (conv 32 5x5 'same' relu, max-pool 2 'same', conv 64 5x5 'same'
  relu, max-pool 2 'same', dense 1024 relu, dense 10).

* ``da_bN``: the Theano denoising autoencoder with 1000 hidden units: tied 784-1000 sigmoid
  encoder and decoder, masking corruption 0.1, cross-entropy summed over pixels (the same
  function computed on the decoder's logits), SGD lr 0.1; inputs are uniform in [0, 1].

* ``rnn_bN``: the Keras RNN classifier: (N, 28, 28) as 28 steps of 28 features, SimpleRNN 50 tanh,
  dense 10, softmax cross-entropy, SGD. ``lstm_bN``: the Keras LSTM regressor: (N, 20, 1), LSTM 20
  returning every step, time-distributed dense 1, MSE, SGD. See :mod:`npdl.bench.rnn_step`.

``N`` is the batch size: ``mlp_b20``, ``sda_b1`` and ``sda_b128`` are the named
targets, and any other ``N`` works (``sda_b32``). :func:`expand` turns a list of names and
batch sizes into the sweep ``npdl bench --batch-sizes`` and ``benchmarks/run.py`` time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FAMILIES = {
    "mlp": {"sizes": (784, 500, 10), "activation": "tanh"},
    "sda": {"sizes": (784, 1000, 1000, 1000, 10), "activation": "sigmoid"},
    # convolutional nets on (N, 1, 28, 28) NCHW input: see npdl.bench.conv_step for the layer specs
    "lenet": {"arch": "lenet", "input": (1, 28, 28), "classes": 10},
    "kcnn": {"arch": "kcnn", "input": (1, 28, 28), "classes": 10},
    # tied denoising autoencoder 784-1000 sigmoid, masking 0.1, summed cross-entropy: npdl.bench.autoencoder_step
    "da": {"sizes": (784, 1000), "activation": "sigmoid", "corruption": 0.1, "lr": 0.1},
    # recurrent nets on (N, T, F) batch-first sequences, plain SGD: npdl.bench.rnn_step
    "rnn": {"cell": "simple_rnn", "steps": 28, "features": 28, "units": 50, "outputs": 10},
    "lstm": {"cell": "lstm", "steps": 20, "features": 1, "units": 20, "outputs": 1},
}
DEFAULT_WORKLOADS = ("mlp_b20", "sda_b1", "sda_b128")
LEARNING_RATE = 0.01


@dataclass(frozen=True)
class Workload:
    """One benchmark cell. ``sizes``/``activation`` describe dense stacks; other families put
    what they need in ``FAMILIES[family]`` and read it back through :attr:`spec`."""

    name: str
    family: str
    sizes: tuple
    activation: str
    batch_size: int
    lr: float = LEARNING_RATE

    @property
    def spec(self) -> dict:
        return FAMILIES[self.family]


def parse(name: str) -> Workload:
    """``"sda_b128"`` -> the Workload; a clear error lists the families otherwise."""
    m = re.fullmatch(r"([a-z0-9]+)_b(\d+)", name.strip())
    if m and m.group(1) in FAMILIES and int(m.group(2)) < 1:
        raise ValueError(f"workload {name.strip()!r}: the batch size must be a positive integer, got "
                         f"{int(m.group(2))} (e.g. {m.group(1)}_b20)")
    if not m or m.group(1) not in FAMILIES:
        raise ValueError(f"unknown workload {name!r}; use FAMILY_bBATCH with FAMILY one of "
                         f"{', '.join(FAMILIES)} (e.g. {', '.join(DEFAULT_WORKLOADS)})")
    family = FAMILIES[m.group(1)]
    return Workload(name.strip(), m.group(1), tuple(family.get("sizes", ())), family.get("activation", ""),
                    int(m.group(2)), family.get("lr", LEARNING_RATE))


def expand(names, batch_sizes=None) -> list:
    """The workloads of a sweep: every (family, batch size) pair, in the order given, no repeats.

    Without ``batch_sizes`` each name must be ``FAMILY_bBATCH``. With them (a list of ints)
    each name may be a bare family (``"mlp"``) or ``FAMILY_bBATCH`` (its batch size is then
    replaced by the sweep's), and every family is timed at every batch size.
    """
    names = [n.strip() for n in names if n.strip()]
    if batch_sizes is None:
        for n in names:
            if n in FAMILIES:
                raise ValueError(f"workload {n!r} is a family without a batch size: give --batch-sizes "
                                 f"or name it {n}_bBATCH (e.g. {n}_b20)")
        out = [parse(n) for n in names]
    else:
        sizes = [int(b) for b in batch_sizes]
        if not sizes or any(b < 1 for b in sizes):
            raise ValueError(f"batch sizes must be positive integers, got {batch_sizes!r}")
        families = []
        for n in names:
            family = n if n in FAMILIES else parse(n).family
            if family not in families:
                families.append(family)
        out = [parse(f"{family}_b{b}") for family in families for b in sizes]
    seen, unique = set(), []
    for w in out:
        if w.name not in seen:
            seen.add(w.name)
            unique.append(w)
    return unique


def parse_batch_sizes(text: str) -> list:
    """``"1,8,32"`` -> ``[1, 8, 32]``; a ValueError names anything that is not a positive integer."""
    sizes = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"--batch-sizes: {part!r} is not a positive integer (use e.g. 1,8,32,128)")
        sizes.append(int(part))
    if not sizes:
        raise ValueError("--batch-sizes: no batch size given (use e.g. 1,8,32,128)")
    return sizes
