"""An in-process encrypted federated-averaging example on real data (load_digits).

Every party runs in this one process: it shows the library API end to end, not the
networked system. Clients train an MLP (64 -> 128 -> 10) on a non-IID Dirichlet split of
scikit-learn's handwritten digits, encrypt their weights, the "server" aggregates the
ciphertexts weighted by sample counts, and a quorum of key holders decrypts only the
aggregate. The same round is also averaged in plaintext to show encryption costs no
accuracy.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clients.data import dirichlet_split
from secagg import aggregate, combine, dealerless_keygen, encrypt, partial_decrypt
from secagg.model_vector import flatten_state_dict, unflatten_state_dict
from secagg.params import Parameters


@dataclass
class ClientData:
    """One client's private training data."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg demo``."""
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--keyholders", type=int, default=3)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Run the example and print one line per round."""
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(args.seed)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(args.seed).permutation(len(y))
    test, train = order[: len(y) // 5], order[len(y) // 5 :]
    splits = dirichlet_split(y[train], args.clients, args.alpha, args.seed)
    clients = [ClientData(x[train][s], y[train][s]) for s in splits]

    def make_model() -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )

    global_model = make_model()
    params = Parameters.default()
    t0 = time.perf_counter()
    keys = dealerless_keygen(n=args.keyholders, t=args.threshold, params=params)
    print(
        f"key generation: n={args.keyholders}, t={args.threshold}, {time.perf_counter() - t0:.2f}s;"
        f" parameters {params.id} (precision {params.precision:.1e}, "
        f"{params.statistical_security:.1f}-bit flooding)"
    )
    print(f"clients' sample counts: {[len(c.y) for c in clients]}")
    print(f"{'round':>5} {'accuracy':>9} {'|enc-plain|':>12} {'upload MB':>10} {'seconds':>8}")
    quorum = list(range(1, args.threshold + 1))
    for rnd in range(1, args.rounds + 1):
        start = time.perf_counter()
        uploads, plain, counts = [], [], []
        for data in clients:
            model = make_model()
            model.load_state_dict(global_model.state_dict())
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            xt, yt = torch.from_numpy(data.x), torch.from_numpy(data.y)
            for _ in range(5):
                for b in range(0, len(yt), 32):
                    opt.zero_grad()
                    loss = torch.nn.functional.cross_entropy(model(xt[b : b + 32]), yt[b : b + 32])
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()
            vector, layout = flatten_state_dict(model.state_dict())
            uploads.append(encrypt(keys.public_key, vector))
            plain.append(vector)
            counts.append(len(data.y))
        agg = aggregate(uploads, weights=counts)
        parts = [partial_decrypt(keys.shares[i - 1], agg, quorum=quorum) for i in quorum]
        mean = combine(agg, parts)
        plain_mean = np.average(np.stack(plain), axis=0, weights=counts)
        global_model.load_state_dict(unflatten_state_dict(mean, layout))
        with torch.no_grad():
            pred = global_model(torch.from_numpy(x[test])).argmax(dim=1).numpy()
        accuracy = float((pred == y[test]).mean())
        upload_mb = sum(len(u.to_bytes()) for u in uploads) / 1e6
        diff = float(np.abs(mean - plain_mean).max())
        elapsed = time.perf_counter() - start
        print(f"{rnd:>5} {accuracy:>9.3f} {diff:>12.2e} {upload_mb:>10.2f} {elapsed:>8.2f}")
    return 0
