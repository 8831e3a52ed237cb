"""Bring your own model (issue 14, acceptance 3): a user's CNN through the networked path.

A deployment sized for the CNN of :mod:`clients.models.digits_cnn` (its length and round
1's model from ``python -m clients.custom_trainer``), ``--require-dp``, a real server,
three key holders and three clients — two ``secagg client --trainer
clients.models.digits_cnn:trainer`` processes and one through the Python entry point
:func:`clients.custom_trainer.run_client` — three rounds with DP-SGD. The tests check the
evidence the run leaves: every release is signed and equals the weighted mean of the
clients' updates, recomputed here by replaying the same trainer with the same (seeded,
test-only) noise; the model learns; each client's epsilon is recorded as the MLP's is
(``privacy.json``, and the signed upload the server stored), above 0 and within the
target. The run takes about 35 seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from clients.custom_trainer import ClientInfo
from clients.custom_trainer_layout import prepared_model
from clients.custom_trainer_run import BoundTrainer, ClientDeployment
from clients.data import load_federation, scale_pixels
from clients.models.digits_cnn import trainer as cnn_trainer
from secagg.proto import service_pb2 as pb
from secagg.protocol.model_blob import decode_model

from ._harness import REPO, Deployment, Harness, Proc, _env, max_error, weighted_mean

TRAINER = "clients.models.digits_cnn:trainer"
CLIENTS = ("c1", "c2", "c3")
ROUNDS = 3
NOISE_SEED = 0  # test-only: the replay below needs the clients' noise (no privacy)


@dataclass
class Run:
    dep: Deployment
    initial: np.ndarray
    models: dict[int, np.ndarray]  # round -> the model released after it

    def privacy(self, client: str) -> dict[str, object]:
        path = self.dep.layout.state_dir(client, "client") / "privacy.json"
        state: dict[str, object] = json.loads(path.read_text())
        return state


@pytest.fixture(scope="module")
def run(module_harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Run:
    initial = tmp_path_factory.mktemp("cnn") / "initial.bin"
    described = subprocess.run(
        [sys.executable, "-m", "clients.custom_trainer", TRAINER, "--length",
         "--initial-model", str(initial)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert described.returncode == 0, described.stderr
    length = int(described.stdout)
    dep = module_harness.create(
        clients=len(CLIENTS),
        rounds=ROUNDS,
        model_length=length,
        min_contributors=len(CLIENTS),
        init_args=["--require-dp", "--initial-model", str(initial)],
    )
    module_harness.start_deployment(dep)
    with pytest.MonkeyPatch.context() as env:  # one thread: the replay's float arithmetic
        env.setenv("OMP_NUM_THREADS", "1")
        for name in CLIENTS[:-1]:
            dep.start(
                name, "client", dep.directory, "--name", name, "--trainer", TRAINER,
                "--insecure-noise-seed", str(NOISE_SEED),
            )  # fmt: skip
        start_python_client(dep, CLIENTS[-1])
    for name in CLIENTS:
        assert dep.wait_exit(name, timeout=240) == 0, dep.log_tail()
    final = dep.wait_round(lambda i: i.state == pb.FINISHED, timeout=60, what="FINISHED")
    assert final.round == ROUNDS + 1
    models = {}
    for rnd in range(1, ROUNDS + 1):
        release = dep.get_release(rnd)
        assert release is not None, f"round {rnd} has no release"
        dep.verify_release(release)
        models[rnd] = dep.model_of(release)
    _, start = decode_model(dep.layout.initial_model.read_bytes(), length=length)
    return Run(dep, start, models)


def start_python_client(dep: Deployment, name: str) -> None:
    """Client ``name`` through the Python entry point, :func:`clients.custom_trainer.run_client`
    (registered with the deployment's processes: logs on failure, killed at teardown)."""
    code = (
        "import sys; from clients.custom_trainer import run_client; "
        "run_client(sys.argv[1], sys.argv[2], sys.argv[3], noise_seed=int(sys.argv[4]))"
    )
    out_path, err_path = dep.logs / f"{name}.py.stdout", dep.logs / f"{name}.py.stderr"
    out, err = open(out_path, "wb"), open(err_path, "wb")  # noqa: SIM115 (closed in stop)
    popen = subprocess.Popen(
        [sys.executable, "-c", code, str(dep.directory), name, TRAINER, str(NOISE_SEED)],
        cwd=REPO, env=_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
        start_new_session=True,
    )  # fmt: skip
    proc = Proc(name, popen, out_path, err_path, [out, err])
    dep.procs[name] = proc
    dep.history.append(proc)


def test_the_deployment_is_sized_by_the_trainer_helper(run: Run) -> None:
    vector = cnn_trainer.model_vector()
    assert run.dep.roster.policy.model_length == vector.size == 1914
    # BatchNorm became GroupNorm for Opacus: no running statistics, no integer buffer.
    assert vector.local == ()
    np.testing.assert_array_equal(run.initial, cnn_trainer.initial_model(0))


def test_each_release_is_the_weighted_mean_of_the_replayed_updates(run: Run) -> None:
    """The key holders' decryption equals plaintext FedAvg of the same training."""
    roster = run.dep.roster
    policy = roster.policy
    uploads = run.dep.db_rows("SELECT round, client_id, weight, dp FROM uploads")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the clients ran (OMP_NUM_THREADS=1)
    try:
        replay = [
            BoundTrainer(
                cnn_trainer,
                ClientInfo(name, i, CLIENTS),
                ClientDeployment(
                    model_length=policy.model_length,
                    max_abs_value=roster.params.max_abs_value,
                    rounds=policy.rounds,
                    weight_range=(policy.min_weight, policy.max_client_weight),
                    state_dir=run.dep.directory.parent / "replay" / name,
                ),
                noise_seed=NOISE_SEED,
            )
            for i, name in enumerate(CLIENTS)
        ]
        served = run.initial
        for rnd in range(1, ROUNDS + 1):
            updates = [t.train(served, rnd) for t in replay]
            expected = weighted_mean([u for u, _ in updates], [w for _, w in updates])
            assert max_error(run.models[rnd], expected) <= 1e-6, rnd
            served = run.models[rnd]
    finally:
        torch.set_num_threads(threads)
    weights = {name: t.weight for name, t in zip(CLIENTS, replay, strict=True)}
    assert sorted(uploads) == sorted(
        (rnd, name, weights[name], 1) for rnd in range(1, ROUNDS + 1) for name in CLIENTS
    )


def test_the_model_learns(run: Run) -> None:
    federation = load_federation(clients=len(CLIENTS), seed=0)
    x, y = torch.from_numpy(scale_pixels(federation.x_test)), torch.from_numpy(federation.y_test)
    vector = cnn_trainer.model_vector()

    def accuracy(weights: np.ndarray) -> float:
        model = prepared_model(cnn_trainer.model, dp=True)
        vector.load(model, weights)
        model.eval()
        with torch.no_grad():
            return float((model(x).argmax(dim=1) == y).float().mean())

    before, after = accuracy(run.initial), accuracy(run.models[ROUNDS])
    assert before < 0.2 and after > 0.35, (before, after)


def test_epsilon_is_reported_like_the_mlps(run: Run) -> None:
    """In the client's privacy.json (what the demo reads) and in every signed upload."""
    target = cnn_trainer.dp.target_epsilon if cnn_trainer.dp else 0.0
    stored = {
        (rnd, name): eps
        for rnd, name, eps in run.dep.db_rows("SELECT round, client_id, epsilon FROM uploads")
    }
    for name in CLIENTS:
        state = run.privacy(name)
        assert state["unit"] == "add/remove one record of the client's local dataset"
        recorded = state["epsilon"]
        assert isinstance(recorded, dict) and sorted(recorded) == ["1", "2", "3"]
        spent = [float(recorded[str(rnd)]) for rnd in range(1, ROUNDS + 1)]
        assert 0 < spent[0] < spent[1] < spent[2] <= target, (name, spent)
        assert [stored[(rnd, name)] for rnd in range(1, ROUNDS + 1)] == spent
        history = state["history"]
        assert isinstance(history, list) and len(history) == 1 + ROUNDS  # count + rounds
        # The validation metrics stayed on the client.
        metrics = json.loads(
            (run.dep.layout.state_dir(name, "client") / "metrics.json").read_text()
        )
        assert sorted(metrics) == ["1", "2", "3"]
