"""The server's DP bookkeeping at upload: ε never decreases (from its store, across a
restart), and a roster that requires DP refuses an upload signed without it.

Each refusal leaves nothing accepted changed (round, uploads, nonces, blobs, audit log).
"""

from __future__ import annotations

from pathlib import Path

from secagg.errors import DPRequired, EpsilonDecreased
from server.store import Store
from server.store.sqlite import SqliteStore

from ._keyholders import run
from .conftest import CLIENTS, DEPLOYMENT, Server, World, make_server
from .test_uploads import refused, send


def _release_round_one(server: Server, epsilon: float) -> None:
    for client in CLIENTS:
        header, blob, _ = server.world.upload(client, server.info(), epsilon=epsilon)
        send(server, client, header, blob)
    for k in (1, 2, 3):
        server.manager.seen(k)
    run(server, (1, 2, 3))
    assert server.manager.release(1) is not None


def _reopened(store: Store, tmp_path: Path) -> Store:
    """The same store after a restart (SQLite: a new connection to the file)."""
    if not isinstance(store, SqliteStore):
        return store
    store.close()
    return SqliteStore(store.path, deployment_id=DEPLOYMENT)


def test_an_epsilon_below_an_accepted_one_is_refused_after_a_restart(
    world: World, store: Store, tmp_path: Path
) -> None:
    """c1 reported ε 1.0 in round 1; its state directory is deleted and it reports 0.5."""
    first = make_server(world, store, tmp_path)
    _release_round_one(first, epsilon=1.0)

    server = make_server(world, _reopened(store, tmp_path), tmp_path)
    info = server.info()
    assert info.round == 2
    header, blob, _ = world.upload("c1", info, epsilon=0.5)
    refused(
        server,
        lambda: send(server, "c1", header, blob),
        EpsilonDecreased,
        "c1 reports epsilon 0.5 in round 2 after 1 in an earlier upload",
    )
    header, blob, _ = world.upload("c1", info, epsilon=1.0)  # equal: no decrease
    assert send(server, "c1", header, blob).accepted_uploads == 1
    server.ctx.store.close()


def test_a_roster_that_requires_dp_refuses_an_upload_signed_without_it(
    world: World, store: Store, tmp_path: Path
) -> None:
    server = make_server(world.with_policy(require_dp=True), store, tmp_path)
    header, blob, _ = server.world.upload("c1", server.info(), dp=False)
    refused(server, lambda: send(server, "c1", header, blob), DPRequired, "requires differential")
    header, blob, _ = server.world.upload("c1", server.info(), dp=True)
    assert send(server, "c1", header, blob).accepted_uploads == 1


def test_without_the_requirement_a_non_dp_upload_is_accepted(server: Server) -> None:
    header, blob, _ = server.world.upload("c1", server.info(), dp=False)
    assert send(server, "c1", header, blob).accepted_uploads == 1
    [upload] = server.ctx.store.uploads(1)
    assert upload.statement.dp is False
