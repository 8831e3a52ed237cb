"""The vocabulary the SecAgg mod and the strategy mixin share: keys, the model's layout, the
reply's SecAgg record.

**Flattening order** (what one encrypted vector is). The arrays of an ``ArrayRecord`` are
taken in *sorted key order* (not insertion order: it survives any serialization), each
flattened in C order and converted to float64. Floating-point arrays (float16, float32,
float64: each converts to float64 exactly) are the vector; a FedOpt strategy's float64
and a torch client's float32 are both accepted, as the layout records only "floating".

**Integer policy.** Integer and boolean arrays (BatchNorm's ``num_batches_tracked``) are
*not* aggregated: the clients never send them, and the released model keeps the global
model's value and dtype for them (a count of steps would also break the value bound of
the encoding). Any other dtype (complex, object, strings) is refused.

Security
--------
:func:`arrays_digest` covers every array (integer ones too) with its key, dtype and
shape: it is how the mod tells that a mod between it and the sealed train function
changed the model or the update (:mod:`clients.flower.seal`). The reply record carries a
client-signed contribution; the mixin parses it with a size cap and verifies the
signature before it reads a field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from google.protobuf.message import DecodeError

from secagg import constants as C
from secagg.encoding import F64
from secagg.errors import ConfigError, EncodingError, MalformedStatement
from secagg.proto import service_pb2 as pb
from secagg.protocol.model_blob import encode_model
from secagg.protocol.roster import Roster
from secagg.protocol.statements import Signed, UploadStatement

#: Node configuration keys (``flower-supernode --node-config``): the node's trust anchor.
NODE_DIR = "secagg-dir"
NODE_CLIENT = "secagg-client"
#: Optional: where this node reaches ``secagg serve`` (default: the roster's address).
NODE_ADDRESS = "secagg-address"
#: Optional: ``release`` (default) or ``unchecked`` (see :mod:`clients.flower.node`).
NODE_MODEL_CHECK = "secagg-model-check"
#: Simulation only: the deployment directory every simulated node of this machine uses,
#: as roster client number ``partition-id`` (an environment variable, never run config).
SIMULATION_ENV = "SECAGG_FLOWER_SIMULATION_DIR"
#: The ConfigRecord of a train reply that carries the SecAgg contribution.
REPLY_RECORD = "secagg"
_CONTRIBUTION = "contribution"
_ROUND = "round"

#: A model's arrays by key, deserialised (:func:`as_numpy`).
NumpyArrays: TypeAlias = Mapping[str, npt.NDArray[Any]]
#: An ``ArrayRecord``, or its arrays already deserialised.
Arrays: TypeAlias = ArrayRecord | NumpyArrays


def as_numpy(arrays: Arrays) -> dict[str, npt.NDArray[Any]]:
    """The arrays by key, each deserialised once (an ``ArrayRecord``'s ``numpy()`` parses
    the bytes on every call: deserialise once, then pass the result around)."""
    if isinstance(arrays, ArrayRecord):
        return {key: array.numpy() for key, array in arrays.items()}
    return dict(arrays)


def model_hash(round_number: int, model: F64) -> bytes:
    """The hash secagg names round ``round_number``'s global model by (the roster's
    ``initial_model_hash``, a release's ``model_hash``, an upload's ``global_model_hash``)."""
    return hashlib.sha256(encode_model(round_number, model)).digest()


@dataclass(frozen=True)
class ArraySpec:
    """One array of the model: its key, shape and whether it is aggregated (floating)."""

    key: str
    shape: tuple[int, ...]
    floating: bool

    @property
    def size(self) -> int:
        """Number of values."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class ModelLayout:
    """The arrays of a model in flattening order (sorted keys)."""

    specs: tuple[ArraySpec, ...]

    @property
    def size(self) -> int:
        """Length of the flattened vector (floating arrays only)."""
        return sum(s.size for s in self.specs if s.floating)

    @classmethod
    def of(cls, arrays: Arrays) -> ModelLayout:
        """The layout of ``arrays`` (raises :class:`EncodingError` on a dtype it refuses)."""
        values = as_numpy(arrays)
        specs = []
        for key in sorted(values):
            value = values[key]
            kind = value.dtype.kind
            if kind not in "fiub":
                raise EncodingError(f"array {key!r} has dtype {value.dtype}: not a number")
            if kind == "f" and value.dtype.itemsize > 8:
                raise EncodingError(f"array {key!r} has dtype {value.dtype}: wider than float64")
            specs.append(ArraySpec(key, tuple(value.shape), kind == "f"))
        if not any(s.floating for s in specs):
            raise EncodingError("the model has no floating-point array to aggregate")
        return cls(tuple(specs))

    def flatten(self, arrays: Arrays) -> F64:
        """The floating arrays of ``arrays`` as one float64 vector, in this layout's order.

        Raises :class:`EncodingError` if ``arrays`` does not have this layout.
        """
        values = as_numpy(arrays)
        if ModelLayout.of(values) != self:
            raise EncodingError("the arrays do not have the model's layout (keys, shapes, kinds)")
        parts = [
            np.asarray(values[s.key], dtype=np.float64).reshape(-1)
            for s in self.specs
            if s.floating
        ]
        return np.concatenate(parts)

    def unflatten(self, vector: F64, fixed: ArrayRecord) -> ArrayRecord:
        """An ``ArrayRecord`` of this layout: floating arrays from ``vector`` (float64),
        integer arrays copied from ``fixed`` (the integer policy), in ``fixed``'s key order."""
        if vector.shape != (self.size,):
            raise EncodingError(f"vector of shape {vector.shape}; the layout needs {self.size}")
        out: dict[str, Array] = {}
        offset = 0
        for spec in self.specs:
            if spec.floating:
                part = np.array(vector[offset : offset + spec.size], dtype=np.float64)
                out[spec.key] = Array(part.reshape(spec.shape))
                offset += spec.size
            else:
                out[spec.key] = Array(np.array(fixed[spec.key].numpy()))
        return ArrayRecord({key: out[key] for key in fixed})

    def check_length(self, roster: Roster) -> None:
        """The flattened model fits the deployment (raises :class:`ConfigError`)."""
        if self.size != roster.policy.model_length:
            raise ConfigError(
                f"the model has {self.size} floating-point values; the deployment's "
                f"model_length is {roster.policy.model_length} (secagg init --model-length)"
            )


def arrays_digest(arrays: Arrays) -> bytes:
    """SHA-256 over every array of ``arrays`` (sorted keys; key, dtype, shape and bytes)."""
    values = as_numpy(arrays)
    h = hashlib.sha256(b"secagg/flower-arrays/v1")
    for key in sorted(values):
        value = np.ascontiguousarray(values[key])
        for part in (key.encode(), value.dtype.str.encode(), repr(value.shape).encode()):
            h.update(len(part).to_bytes(8, "big") + part)
        h.update(value.tobytes())
    return h.digest()


def only_arrays(content: RecordDict) -> ArrayRecord:
    """The one ``ArrayRecord`` of a message (raises :class:`EncodingError` otherwise)."""
    records = list(content.array_records.values())
    if len(records) != 1:
        raise EncodingError(f"a train message must carry one ArrayRecord, not {len(records)}")
    return records[0]


def contribution_record(signed: Signed[UploadStatement]) -> ConfigRecord:
    """The reply's SecAgg record: the client-signed contribution (no ciphertext, no model)."""
    contribution = signed.statement.to_contribution(signed.signature)
    return ConfigRecord(
        {_ROUND: signed.statement.round, _CONTRIBUTION: contribution.SerializeToString()}
    )


def signed_contribution(reply: Message, roster: Roster) -> Signed[UploadStatement]:
    """The verified contribution of a train reply (staged: size cap, parse, signature).

    Raises
    ------
    MalformedStatement
        No SecAgg record, or one that is too large or does not parse.
    SignatureInvalid, UnknownParty
        The signature does not verify under the roster key of the client it names.
    """
    record: Mapping[str, object] | None = reply.content.config_records.get(REPLY_RECORD)
    if record is None:
        raise MalformedStatement("the reply carries no SecAgg record (is the SecAgg mod on?)")
    blob, round_number = record.get(_CONTRIBUTION), record.get(_ROUND)
    if not isinstance(blob, bytes) or not isinstance(round_number, int):
        raise MalformedStatement("the reply's SecAgg record lacks its contribution or round")
    if len(blob) > C.FLOWER_MAX_RECORD_BYTES:
        raise MalformedStatement(f"a SecAgg record of {len(blob)} bytes is too large")
    try:
        message = pb.Contribution.FromString(blob)
    except DecodeError as exc:
        raise MalformedStatement(f"the reply's contribution does not parse: {exc}") from None
    signed = UploadStatement.from_contribution(roster.deployment_id, round_number, message)
    signed.verify(roster)
    return signed
