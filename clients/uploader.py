"""Sending a stored upload: the head, then its chunks streamed from the chunk file.

An upload is sent as :func:`clients.connection.upload_stream` of the signed header (which
carries the ciphertext's head) and the chunks read one at a time from the client's chunk
file (:meth:`clients.pending_upload.StoredUpload.chunks`); every attempt streams from
chunk 0. Three answers are not failures of the upload:

- the server already holds it (``ReplayDetected`` / ``DuplicateUpload``: an earlier attempt
  got through and its answer was lost): done;
- the server is busy (``RESOURCE_EXHAUSTED`` without the size-cap reason: it admits a
  bounded number of concurrent uploads): logged, and asked again after a pause that
  doubles (:data:`~secagg.constants.UPLOAD_BUSY_FIRST_DELAY_SECONDS` up to
  :data:`~secagg.constants.UPLOAD_BUSY_MAX_DELAY_SECONDS`, with jitter:
  :class:`clients.reconnect.Backoff`), for at most the round timeout;
- a dropped connection (``UNAVAILABLE``): retried by :meth:`clients.connection.Connection.call`.

Security
--------
A retry resends the same signed bytes (same nonce and signature): the server's replay
check makes a duplicate harmless, and the client never signs a second upload of a round.
A malicious server can answer "busy" forever; the client then gives up when the round
timeout has passed, as it would if the server were down.
"""

from __future__ import annotations

import logging
import time

import grpc

from clients.connection import Connection, failed_with, upload_stream
from clients.pending_upload import StoredUpload
from clients.reconnect import Backoff, describe_failure
from secagg import constants as C
from secagg.errors import DuplicateUpload, ReplayDetected, SizeLimitExceeded
from secagg.protocol.roster import Policy
from secagg.rpc.errors import reason_of

log = logging.getLogger("secagg.client")


def server_busy(exc: grpc.RpcError) -> bool:
    """Whether a call failed only because the server is busy (RESOURCE_EXHAUSTED); an
    upload over the size cap (:class:`~secagg.errors.SizeLimitExceeded`) is too large, not
    early, and is not retried."""
    return bool(
        exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and reason_of(exc) != SizeLimitExceeded.reason
    )


def send_upload(conn: Connection, stored: StoredUpload, *, policy: Policy, name: str) -> None:
    """Stream ``stored`` to the server (see the module docstring for retries).

    Raises
    ------
    grpc.RpcError
        The server refused the upload, stayed busy past the round timeout, or the client
        was stopped while waiting.
    """
    header, rnd = stored.header(), stored.round
    give_up = time.monotonic() + policy.round_timeout_seconds
    busy = Backoff(first=C.UPLOAD_BUSY_FIRST_DELAY_SECONDS, cap=C.UPLOAD_BUSY_MAX_DELAY_SECONDS)
    while True:
        try:
            receipt = conn.call(
                lambda _, timeout: conn.stub.Upload(
                    upload_stream(header, stored.chunks()), timeout=timeout
                ),
                None,
                timeout=policy.transfer_timeout_seconds,
            )
        except grpc.RpcError as exc:
            pause = busy.next() if server_busy(exc) else 0.0
            if pause and time.monotonic() + pause < give_up:
                log.info(
                    "%s: round %d: the server is busy (%s); retrying in %.1f s",
                    name,
                    rnd,
                    describe_failure(exc),
                    pause,
                )
                if conn.stop.wait(pause):
                    raise
                continue
            if not failed_with(
                exc, ReplayDetected, DuplicateUpload, fallback=grpc.StatusCode.ALREADY_EXISTS
            ):
                raise
            log.info("%s: round %d already holds our upload (%s)", name, rnd, exc.details())
            return
        log.info(  # the size of the chunk file, the very file the server stores
            "%s: round %d uploaded (%d bytes), %d accepted so far",
            name,
            rnd,
            stored.path.stat().st_size,
            receipt.accepted_uploads,
        )
        return
