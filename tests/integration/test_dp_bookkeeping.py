"""DP bookkeeping with real processes (issue 12, acceptance 3).

* A DP client SIGKILLed after it trained and stored its signed upload, before the server
  confirmed it (the client's test-only fault point
  ``SECAGG_CLIENT_FAULT=kill-after-upload-stored``, :mod:`clients.faults`), is restarted
  without the fault point: the server receives exactly the stored upload (same
  ciphertext digest, nonce and signature) and the client's privacy ledger holds no
  second entry for the round.
* A deployment initialised with ``--require-dp`` refuses a ``--no-dp`` client's upload
  (reason ``DP_REQUIRED``) and ``secagg audit verify`` would flag it the same way
  (:mod:`tests.protocol.test_policy_parity`).
"""

from __future__ import annotations

import json
import signal

import pytest

from clients.dp_model import model_length
from clients.faults import CLIENT_FAULT_ENV, ClientFault
from clients.pending_upload import PENDING_UPLOAD_FILE, PendingUpload
from secagg.errors import DPRequired

from ._harness import Deployment, Harness, wait_until

ARMED = "TEST-ONLY FAULT POINT ARMED"


def _state(dep: Deployment, name: str) -> PendingUpload:
    return PendingUpload(dep.layout.state_dir(name, "client"), dep.roster)


def _ledger(dep: Deployment, name: str) -> list[list[float]]:
    path = dep.layout.state_dir(name, "client") / "privacy.json"
    history: list[list[float]] = json.loads(path.read_text())["history"]
    return history


def _server_upload(dep: Deployment, name: str) -> list[tuple[bytes, bytes, bytes, int]]:
    sql = "SELECT ciphertext_hash, nonce, signature, dp FROM uploads WHERE client_id=?"
    return [(bytes(h), bytes(n), bytes(s), int(d)) for h, n, s, d in dep.db_rows(sql, (name,))]


def test_a_client_killed_before_its_upload_is_confirmed_resends_it_and_spends_nothing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = harness.create(
        clients=2, rounds=1, model_length=model_length(128), init_args=["--require-dp"]
    )
    harness.start_deployment(dep)
    with monkeypatch.context() as env:  # only the first client process gets the fault point
        env.setenv(CLIENT_FAULT_ENV, ClientFault.KILL_AFTER_UPLOAD_STORED.value)
        first = dep.dp_client("c1")
    wait_until(lambda: not first.alive(), timeout=180, what="the client's fault-point SIGKILL",
               diagnostics=dep.log_tail)  # fmt: skip
    assert dep.stop("c1") == -signal.SIGKILL
    assert ARMED in first.output()

    stored = _state(dep, "c1").load()
    assert stored is not None and stored.round == 1
    ledger = _ledger(dep, "c1")
    assert len(ledger) == 2  # the noisy count, and round 1's training (committed)
    assert _server_upload(dep, "c1") == []  # nothing left the client

    second = dep.dp_client("c1")
    wait_until(lambda: _server_upload(dep, "c1") or None, timeout=120,
               what="c1's upload", diagnostics=dep.log_tail)  # fmt: skip
    s = stored.signed.statement
    assert _server_upload(dep, "c1") == [(s.ciphertext_hash, s.nonce, stored.signed.signature, 1)]
    assert "resending the stored upload" in second.output()
    wait_until(lambda: "1" in _state(dep, "c1").done() or None, timeout=30,
               what="c1 records round 1 as done", diagnostics=dep.log_tail)  # fmt: skip
    dep.stop("c1")
    assert _ledger(dep, "c1") == ledger  # no second training of round 1
    assert not (dep.layout.state_dir("c1", "client") / PENDING_UPLOAD_FILE).exists()

    # --- the same deployment requires DP: a --no-dp client is refused
    no_dp = dep.dp_client("c2", "--no-dp")
    wait_until(lambda: "requires differential privacy" in no_dp.output() or None, timeout=180,
               what="the --no-dp client's refusal", diagnostics=dep.log_tail)  # fmt: skip
    dep.stop("c2")
    assert _server_upload(dep, "c2") == []
    refusals = dep.layout.audit_log.read_text()
    assert f"{DPRequired.reason}" in refusals or "DPRequired" in refusals
