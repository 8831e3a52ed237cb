"""Errors across gRPC: a rich status (``grpc-status-details-bin``) with a reason code.

The server aborts with :func:`abort_with`: the status code comes from the error's class,
the details carry ``google.rpc.ErrorInfo(reason=<the class's reason>, domain="secagg")``,
and the message keeps the readable ``"ClassName: text"``. Callers read the
machine-readable reason with :func:`reason_of` instead of parsing message strings.
"""

from __future__ import annotations

import re

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from secagg.errors import (
    AuditWriteFailed,
    DuplicateUpload,
    InvalidCiphertext,
    InvalidPartialDecryption,
    PermissionDenied,
    PolicyViolation,
    QuorumNotMet,
    ReplayDetected,
    SecAggError,
    SignatureInvalid,
    SizeLimitExceeded,
    WeightBudgetExceeded,
)

#: The reason domain of every secagg error.
DOMAIN = "secagg"
#: What a reason code looks like (every :class:`SecAggError` ``reason``); anything else a
#: peer sends is reported as :data:`INVALID_REASON`, never echoed (log lines, decisions).
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
INVALID_REASON = "INVALID_REASON"

#: The status code of each error class; the first row whose classes match wins, so more
#: specific classes come first and ``SecAggError`` catches the rest.
_CODES: tuple[tuple[grpc.StatusCode, tuple[type[SecAggError], ...]], ...] = (
    (grpc.StatusCode.ALREADY_EXISTS, (ReplayDetected, DuplicateUpload)),
    (grpc.StatusCode.PERMISSION_DENIED, (PermissionDenied,)),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, (SizeLimitExceeded,)),
    (grpc.StatusCode.UNAUTHENTICATED, (SignatureInvalid,)),
    (
        grpc.StatusCode.INVALID_ARGUMENT,
        (InvalidCiphertext, InvalidPartialDecryption, WeightBudgetExceeded),
    ),
    (grpc.StatusCode.UNAVAILABLE, (QuorumNotMet, AuditWriteFailed)),
    (grpc.StatusCode.FAILED_PRECONDITION, (PolicyViolation,)),
    (grpc.StatusCode.INVALID_ARGUMENT, (SecAggError,)),
)


def status_code_of(exc: SecAggError) -> grpc.StatusCode:
    """The gRPC status code an error crosses the wire with."""
    return next(code for code, classes in _CODES if isinstance(exc, classes))


def to_status(exc: SecAggError) -> grpc.Status:
    """A rich status for ``exc``: code, readable message, ErrorInfo with the reason."""
    code = status_code_of(exc)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN))
    status = status_pb2.Status(
        code=code.value[0], message=f"{type(exc).__name__}: {exc}", details=[info]
    )
    return rpc_status.to_status(status)


def abort_with(context: grpc.ServicerContext, exc: SecAggError) -> None:
    """Abort the RPC with the rich status of ``exc`` (raises, never returns)."""
    context.abort_with_status(to_status(exc))


def reason_of(error: grpc.RpcError) -> str | None:
    """The secagg reason code of a failed call, or None if it carries none."""
    if not isinstance(error, grpc.Call):
        return None
    try:  # the peer's bytes: a status that contradicts the call, or garbage, names no reason
        status = rpc_status.from_call(error)
        if status is None:
            return None
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            is_info = detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) and detail.Unpack(info)
            if is_info and info.domain == DOMAIN:
                reason = str(info.reason)
                return reason if _REASON.fullmatch(reason) else INVALID_REASON
    except (ValueError, DecodeError):
        return None
    return None
