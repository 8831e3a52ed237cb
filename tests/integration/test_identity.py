"""Who is the server: another party's certificate does not pass for it; several hosts work.

Attacker tests first. An insider (a client, or a key holder) owns its certificate and key
and runs its own gRPC server on the address the roster names, presenting that
certificate. The real key holder, client and operator processes must refuse it with a
clear error and send it nothing. Before issue 11 every certificate named ``localhost``,
carried no key usage, and every channel expected the name ``localhost``: the handshake
succeeded and the parties sent their RPCs to the impostor.

Who enforces it: each connecting party, in the TLS handshake of its own channel, which
trusts only the roster's server certificate (pinned by its SHA-256) under the roster's
server name; an insider's certificate is signed by the CA but is not that certificate,
does not carry the name ``server`` and carries ``clientAuth`` only. It cannot mint a
better one without the CA key.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest

from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.layout import DeploymentLayout

from ._harness import Deployment, Harness, cli

LENGTH = 2_000
REFUSAL = "is not the roster's server"


class _Recorder(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Records the method of every RPC that reaches the impostor (and serves none)."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.lock = threading.Lock()

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> None:
        with self.lock:
            self.methods.append(handler_call_details.method)


@contextmanager
def _impostor(dep: Deployment, name: str, role: str) -> Iterator[_Recorder]:
    """A gRPC server on the roster's server address presenting ``name``'s own certificate.

    It accepts any caller (no client certificate required): the most an insider can offer.
    """
    files = DeploymentLayout(dep.directory).party_dir(name, role)
    creds = grpc.ssl_server_credentials(
        [((files / "tls.key").read_bytes(), (files / "tls.pem").read_bytes())]
    )
    recorder = _Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[recorder])
    assert server.add_secure_port(dep.roster.server_target(), creds) != 0
    server.start()
    try:
        yield recorder
    finally:
        server.stop(grace=0).wait()


@pytest.mark.parametrize(("insider", "role"), [("c1", "client"), ("kh2", "keyholder")])
def test_an_insiders_certificate_does_not_pass_for_the_server(
    harness: Harness, insider: str, role: str
) -> None:
    dep = harness.create(keyholders=3, threshold=2, rounds=1, model_length=LENGTH)
    with _impostor(dep, insider, role) as impostor:
        dep.keyholder(1)
        dep.client("c2", seed=2, weight=5)
        admin = cli("admin", "status", dep.directory, timeout=60)
        codes = {name: dep.wait_exit(name, timeout=60) for name in ("kh1", "c2")}
        assert impostor.methods == [], f"RPCs reached the impostor: {impostor.methods}"
    assert admin.returncode == 2, admin.stdout + admin.stderr
    assert REFUSAL in admin.stderr, admin.stderr
    for name, code in codes.items():
        output = dep.procs[name].output()
        assert code == 2, f"{name} exited with {code}:\n{output[-3000:]}"
        assert REFUSAL in output, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
    print(f"impostor with {insider}'s certificate: refused by kh1, c2 and admin; no RPC sent")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def test_a_server_on_another_host_is_reached_by_its_roster_name(harness: Harness) -> None:
    port = _free_port("127.0.0.2")
    dep = harness.create(
        clients=2,
        keyholders=1,
        threshold=1,
        rounds=1,
        model_length=LENGTH,
        address=f"secagg-server.test:{port}",
        init_args=["--host", "server=secagg-server.test",
                   "--resolve", "secagg-server.test=127.0.0.2"],
    )  # fmt: skip
    certificate = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage",
         "-in", str(DeploymentLayout(dep.directory).server_certificate)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:server, DNS:secagg-server.test, IP Address:127.0.0.2" in certificate
    assert "localhost" not in certificate and "Client" not in certificate
    harness.start_deployment(dep)  # the server binds 127.0.0.2; the key holder finds it
    with pytest.raises(OSError):  # nothing listens on the default loopback address
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    status = dep.admin_status()
    assert status["round"] == 1 and status["state"] == "COLLECTING"
    releases = dep.run_to_finish({"c1": (1, 10), "c2": (2, 30)}, 1, finish_timeout=60)
    dep.verify_release(releases[1])
    # the server's certificate is no client certificate: the server refuses it as a caller
    files = DeploymentLayout(dep.directory).party_dir("server", "server")
    creds = grpc.ssl_channel_credentials(
        root_certificates=DeploymentLayout(dep.directory).server_certificate.read_bytes(),
        private_key=(files / "tls.key").read_bytes(),
        certificate_chain=(files / "tls.pem").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", "server")]
    with grpc.secure_channel(dep.roster.server_target(), creds, options=options) as channel:
        stub = pb_grpc.AggregationStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetRound(pb.Empty(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # refused at the handshake
