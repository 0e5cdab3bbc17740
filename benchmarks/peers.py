"""The npdl benchmark workloads written in PyTorch (eager) and JAX (jit), for side-by-side timing.

Run one (workload, implementation) per process so thread pools of different libraries
never compete:  python benchmarks/peers.py --impl torch --workload mlp_b20 --device cpu
Prints one JSON line like ``npdl bench --json``, with the step's ``flops`` and minimum ``bytes``:
npdl's count of the same workload (:func:`npdl.bench.work.workload_work`), the same for every
implementation, so their achieved GFLOP/s compare.
"""

from __future__ import annotations

from peer_common import jax_sgd  # noqa: E402  (benchmarks/ is on sys.path)

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from npdl.bench import measure, parse  # noqa: E402
from npdl.bench.timing import cpu_name  # noqa: E402
from npdl.bench.work import workload_work  # noqa: E402


def torch_step(w, device):
    import torch

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    act = {"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}[w.activation]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(w.sizes[:-1], w.sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(w.sizes) - 2:
            layers.append(act())
    model = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=w.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(w.batch_size, w.sizes[0], generator=gen).to(dev)
    y = torch.randint(0, w.sizes[-1], (w.batch_size,), generator=gen).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    return step, sync, f"torch {torch.__version__} (threads {torch.get_num_threads()})"


def jax_step(w, device):
    import jax
    import jax.numpy as jnp

    act = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[w.activation]
    key = jax.random.PRNGKey(0)
    params = []
    for n_in, n_out in zip(w.sizes[:-1], w.sizes[1:]):
        key, sub = jax.random.split(key)
        r = (6.0 / (n_in + n_out)) ** 0.5
        params.append((jax.random.uniform(sub, (n_in, n_out), jnp.float32, -r, r), jnp.zeros(n_out, jnp.float32)))
    key, kx, ky = jax.random.split(key, 3)
    x = jax.random.normal(kx, (w.batch_size, w.sizes[0]), jnp.float32)
    y = jax.random.randint(ky, (w.batch_size,), 0, w.sizes[-1])

    def loss_fn(params, x, y):
        h = x
        for W, b in params[:-1]:
            h = act(h @ W + b)
        W, b = params[-1]
        logits = h @ W + b
        logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return jax_sgd(loss_fn, params, x, y, w.lr)


#: family -> {impl: function(workload, device) -> (step, sync, version)}; later families add theirs
PEERS = {"mlp": {"torch": torch_step, "jax": jax_step}, "sda": {"torch": torch_step, "jax": jax_step}}
IMPLS = ("torch", "jax")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers_conv import PEERS_CONV  # noqa: E402  (lenet, kcnn)

PEERS.update(PEERS_CONV)

from peers_autoencoder import PEERS_AUTOENCODER  # noqa: E402  (da)

PEERS.update(PEERS_AUTOENCODER)

from peers_rnn import PEERS_RNN  # noqa: E402  (rnn, lstm)

PEERS.update(PEERS_RNN)


def device_name(impl, device) -> str:
    """The GPU's name as the peer library reports it, or the CPU's model name."""
    if device != "gpu":
        return cpu_name()
    if impl == "torch":
        import torch

        return torch.cuda.get_device_name(0)
    import jax

    return jax.devices()[0].device_kind


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--impl", choices=sorted(IMPLS), required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--min-seconds", type=float, default=1.5)
    args = p.parse_args(argv)
    w = parse(args.workload)
    step, sync, version = PEERS[w.family][args.impl](w, args.device)
    result = measure(step, sync, min_seconds=args.min_seconds)
    work = workload_work(w)  # counted after the timing, from npdl's model of the workload
    print(json.dumps({"workload": w.name, "impl": args.impl, "device": args.device, "batch_size": w.batch_size,
                      "device_name": device_name(args.impl, args.device), **result, "version": version,
                      "flops": work.flops, "bytes": work.bytes}))


if __name__ == "__main__":
    main()
