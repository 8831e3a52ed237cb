"""Client withdrawals: a signed statement that a client leaves from a round on.

Later rounds stop waiting for a withdrawn client (:func:`server.state.active_clients`)
and refuse its uploads. A withdrawal is recorded once; repeating it changes nothing.
"""

from __future__ import annotations

import logging

from secagg.errors import MalformedStatement, PermissionDenied
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import WithdrawalEntry
from secagg.protocol.statements import WithdrawalStatement
from server.audit_trail import MAX_REASON_CHARS
from server.context import Context

log = logging.getLogger("secagg.server")


def withdraw(ctx: Context, client: str, request: pb.Withdrawal) -> None:
    """Verify and record a client's withdrawal (raises PermissionDenied, SignatureInvalid).

    Notes
    -----
    The reason is stored and logged in full, so the signed statement can be checked
    again from the store or the audit log; a reason longer than ``MAX_REASON_CHARS`` is
    refused (:class:`~secagg.errors.MalformedStatement`).
    """
    if request.client_id != client:
        raise PermissionDenied("client_id does not match the authenticated certificate")
    if len(request.reason) > MAX_REASON_CHARS:
        raise MalformedStatement(f"withdrawal reason longer than {MAX_REASON_CHARS} characters")
    signed = WithdrawalStatement.from_proto(ctx.roster.deployment_id, request)
    s = signed.verify(ctx.roster)
    with ctx.store.transaction():
        if ctx.store.add_withdrawal(signed):
            ctx.audit.record(WithdrawalEntry(s.client_id, s.round, s.reason, signed.signature))
    log.info("%s withdrew from round %d on: %s", client, s.round, s.reason)
