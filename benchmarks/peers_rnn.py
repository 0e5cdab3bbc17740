"""The recurrent workloads (``rnn_bN``, ``lstm_bN``) in PyTorch (eager) and JAX (jit).

Both read the network from the workload spec npdl builds from (:data:`npdl.bench.workloads.FAMILIES`),
so the three libraries train the same network on batch-first (N, T, F) float32 sequences:

* ``rnn``: tanh Elman RNN (last state) -> dense -> softmax cross-entropy;
* ``lstm``: LSTM (every state) -> the same dense on every step -> mean squared error;

plain SGD (lr 0.01), Glorot-uniform input weights, orthogonal recurrent weights, zero biases
(forget-gate bias 1). PyTorch uses its own ``nn.RNN`` / ``nn.LSTM`` (with its second, unused
hidden bias set to zero); JAX runs the cell with ``jax.lax.scan`` under ``jax.jit``.
Registered into ``PEERS`` by ``benchmarks/peers.py``.
"""

from __future__ import annotations

from peer_common import jax_sgd  # noqa: E402  (benchmarks/ is on sys.path)


def _glorot(gen, shape, fan_in, fan_out, torch):
    r = (6.0 / (fan_in + fan_out)) ** 0.5
    return (torch.rand(shape, generator=gen) * 2 - 1) * r


def torch_rnn_step(w, device):
    import torch

    s = w.spec
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    gen = torch.Generator().manual_seed(0)
    H, F, K = s["units"], s["features"], s["outputs"]
    gates = 4 if s["cell"] == "lstm" else 1
    cell = (torch.nn.LSTM if s["cell"] == "lstm" else torch.nn.RNN)(F, H, batch_first=True)
    head = torch.nn.Linear(H, K)
    with torch.no_grad():
        cell.weight_ih_l0.copy_(_glorot(gen, (gates * H, F), F, gates * H, torch))
        torch.nn.init.orthogonal_(cell.weight_hh_l0, generator=gen)
        cell.bias_ih_l0.zero_()
        cell.bias_hh_l0.zero_()
        if gates == 4:
            cell.bias_ih_l0[H:2 * H] = 1.0
        head.weight.copy_(_glorot(gen, (K, H), H, K, torch))
        head.bias.zero_()
    cell, head = cell.to(dev), head.to(dev)
    params = list(cell.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=w.lr)
    x = torch.randn(w.batch_size, s["steps"], F, generator=gen).to(dev)
    if s["cell"] == "lstm":
        y = torch.randn(w.batch_size, s["steps"], K, generator=gen).to(dev)
        loss_fn = torch.nn.MSELoss()

        def forward():
            out, _ = cell(x)
            return head(out)
    else:
        y = torch.randint(0, K, (w.batch_size,), generator=gen).to(dev)
        loss_fn = torch.nn.CrossEntropyLoss()

        def forward():
            _, h_last = cell(x)
            return head(h_last[0])

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(), y)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    return step, sync, f"torch {torch.__version__} (threads {torch.get_num_threads()})"


def jax_rnn_step(w, device):
    import jax
    import jax.numpy as jnp

    s = w.spec
    H, F, K, T = s["units"], s["features"], s["outputs"], s["steps"]
    lstm = s["cell"] == "lstm"
    G = 4 * H if lstm else H
    key = jax.random.PRNGKey(0)
    k1, k2, k3, kx, ky = jax.random.split(key, 5)

    def glorot(k, shape):
        r = (6.0 / (shape[0] + shape[1])) ** 0.5
        return jax.random.uniform(k, shape, jnp.float32, -r, r)

    b = jnp.zeros(G, jnp.float32)
    if lstm:
        b = b.at[H:2 * H].set(1.0)
    params = {"Wx": glorot(k1, (F, G)), "Wh": jax.nn.initializers.orthogonal()(k2, (H, G), jnp.float32), "b": b,
              "W": glorot(k3, (H, K)), "c": jnp.zeros(K, jnp.float32)}
    x = jax.random.normal(kx, (w.batch_size, T, F), jnp.float32)
    y = (jax.random.normal(ky, (w.batch_size, T, K), jnp.float32) if lstm
         else jax.random.randint(ky, (w.batch_size,), 0, K))

    def loss_fn(p, x, y):
        xs = jnp.swapaxes(x, 0, 1) @ p["Wx"] + p["b"]  # (T, N, G): the input projection of every step
        N = x.shape[0]
        if lstm:
            def cell(carry, z_in):
                h, c = carry
                z = z_in + h @ p["Wh"]
                i, f = jax.nn.sigmoid(z[:, :H]), jax.nn.sigmoid(z[:, H:2 * H])
                g, o = jnp.tanh(z[:, 2 * H:3 * H]), jax.nn.sigmoid(z[:, 3 * H:])
                c = f * c + i * g
                h = o * jnp.tanh(c)
                return (h, c), h

            zeros = jnp.zeros((N, H), jnp.float32)
            _, hs = jax.lax.scan(cell, (zeros, zeros), xs)
            pred = jnp.swapaxes(hs, 0, 1) @ p["W"] + p["c"]
            return jnp.mean((pred - y) ** 2)

        def cell(h, z_in):
            h = jnp.tanh(z_in + h @ p["Wh"])
            return h, None

        h, _ = jax.lax.scan(cell, jnp.zeros((N, H), jnp.float32), xs)
        logits = h @ p["W"] + p["c"]
        logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return jax_sgd(loss_fn, params, x, y, w.lr)


PEERS_RNN = {"rnn": {"torch": torch_rnn_step, "jax": jax_rnn_step},
             "lstm": {"torch": torch_rnn_step, "jax": jax_rnn_step}}
