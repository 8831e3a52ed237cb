"""What a test expects of a key holder's answer: a partial, a lock, or a refusal for a reason.

Each helper waits (bounded) for the key holder's answer in the server double and fails
the test with what the key holder did instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secagg.errors import SecAggError
from secagg.proto import service_pb2 as pb

from ._server_double import Partial

if TYPE_CHECKING:
    from .conftest import Attack


def reason(answer: object, error: type[SecAggError]) -> str:
    """``answer`` must be a refusal for ``error``; its reason text."""
    assert isinstance(answer, pb.Refusal), f"answered, not refused for {error.reason}: {answer}"
    assert answer.reason.startswith(f"{error.reason}: "), answer.reason
    return answer.reason


def refused(attack: Attack, task: pb.DecryptionTask, error: type[SecAggError]) -> str:
    """The key holder's answer to ``task`` must be a refusal for ``error``; its text."""
    return reason(attack.double.wait_answer(task.task_id), error)


def partial(attack: Attack, task: pb.DecryptionTask) -> Partial:
    """The key holder's answer to ``task`` must be a partial decryption."""
    answer = attack.double.wait_answer(task.task_id)
    assert isinstance(answer, Partial), f"refused: {answer}"
    return answer


def lock_refused(
    attack: Attack, keyholder: int, task: pb.DecryptionTask, error: type[SecAggError]
) -> str:
    """Key holder ``keyholder`` must refuse the LOCK ``task`` for ``error``; the reason text."""
    return reason(attack.double.wait_lock(keyholder, task.aggregate_digest), error)


def locked(attack: Attack, keyholder: int, task: pb.DecryptionTask) -> pb.Lock:
    """Key holder ``keyholder`` must answer the LOCK ``task`` with its lock."""
    answer = attack.double.wait_lock(keyholder, task.aggregate_digest)
    assert isinstance(answer, pb.Lock), f"key holder {keyholder} refused to lock: {answer}"
    return answer
