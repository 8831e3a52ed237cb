"""``secagg audit verify`` and the key holders' certificates: round locks and endorsements.

The log is the honest one-round log of ``test_audit_verify.write_log`` with its locks
and endorsements (:class:`~test_audit_verify.Cert`) changed: too few, logged too late,
forged (signed with another key holder's key), on another aggregate, round or model.
Each is reported at the entry that breaks a rule of :mod:`secagg.protocol.certificates`,
with that rule's message; a forged certificate does not count, so it is reported again
where a certificate it was to complete is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_audit_verify
from test_audit_verify import ENDORSEMENTS, LOCKS, Cert, edit, not_retained, write_log

from secagg.protocol.audit_verify import EndorsementReport, format_report, verify_log

deployment, dep = test_audit_verify.deployment, test_audit_verify.dep  # fixtures

NO_CERTIFICATE = "decrypted without a lock certificate: {} valid locks on its aggregate, 3 needed"
UNDER_ENDORSED = "release of round 1 has {} valid key-holder endorsements of its model; threshold 2"
FORGED_LOCK = (Cert(1), Cert(2, signer="kh1"), Cert(3))


def _no_certificate(have: int) -> list[tuple[str, int, str]]:
    """The error of each of the two partials when only ``have`` valid locks precede them."""
    return [
        ("partial", k - 1, f"partial of key holder {k} " + NO_CERTIFICATE.format(have))
        for k in (1, 2)
    ]


# case -> (write_log arguments, expected errors as (first entry of a type, offset, message))
CASES: dict[str, tuple[dict[str, Any], list[tuple[str, int, str]]]] = {
    "partial without enough locks": ({"locks": LOCKS[:2]}, _no_certificate(2)),
    "lock logged after the partials": (
        {"locks": (*LOCKS[:2], Cert(3, late=True))},
        _no_certificate(2),
    ),
    "forged lock signature": (
        {"locks": FORGED_LOCK},
        [("lock", 1, "invalid signature by key holder 2"), *_no_certificate(2)],
    ),
    "equivocating lock": (
        {"locks": (*LOCKS, Cert(1, aggregate="another aggregate"))},
        [
            ("lock", 3, "lock of key holder 1 is not on round 1's logged aggregate"),
            ("lock", 3, "key holder 1 equivocated: it locked round 1 to two aggregates"),
        ],
    ),
    "lock on a round without an aggregate": (
        {"locks": (*LOCKS, Cert(2, round=2))},
        [("lock", 3, "lock of key holder 2 is not on round 2's logged aggregate")],
    ),
    "release with t-1 endorsements": (
        {"endorsements": ENDORSEMENTS[:1]},
        [("release", 0, UNDER_ENDORSED.format(1))],
    ),
    "one key holder endorsing twice": (
        {"endorsements": (Cert(1), Cert(1))},
        [("release", 0, UNDER_ENDORSED.format(1))],
    ),
    "endorsement of another model": (
        {"endorsements": (Cert(1), Cert(2, model="another model"))},
        [("release", 0, UNDER_ENDORSED.format(1))],
    ),
    "endorsement logged after the release": (
        {"endorsements": (Cert(1), Cert(2, late=True))},
        [("release", 0, UNDER_ENDORSED.format(1))],
    ),
    "forged endorsement signature": (
        {"endorsements": (Cert(1), Cert(2, signer="kh1"))},
        [
            ("endorsement", 1, "invalid signature by key holder 2"),
            ("release", 0, UNDER_ENDORSED.format(1)),
        ],
    ),
    "endorsement of another aggregate": (
        {"endorsements": (Cert(1), Cert(2, aggregate="another aggregate"))},
        [
            ("endorsement", 1, "endorsement of key holder 2 is not of round 1's logged aggregate"),
            ("release", 0, UNDER_ENDORSED.format(1)),
        ],
    ),
    "endorsement with malformed quorums": (
        {"endorsements": (Cert(1), Cert(2, checked=(1, 2, 3)))},
        [
            (
                "endorsement",
                1,
                "endorsement of key holder 2 lists malformed quorums: "
                "3 indices do not form quorums of 2",
            ),
            ("release", 0, UNDER_ENDORSED.format(1)),
        ],
    ),
    "forged lock/endorse refusal (task 0)": (
        {"refusal_signer": "kh1"},
        [("refusal 0", 0, "invalid signature by key holder 3")],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_certificate_is_reported_with_its_rule(dep: Path, case: str) -> None:
    arguments, expected = CASES[case]
    seqs = write_log(dep, **arguments)
    report = verify_log(dep)
    assert report.errors == [
        f"entry {seqs[first] + offset} ({first.split()[0]}): {message}"
        for first, offset, message in expected
    ]


def test_the_honest_log_reports_its_locks_and_endorsements(dep: Path) -> None:
    seqs = write_log(dep)
    report = verify_log(dep)
    assert report.errors == []
    assert report.warnings == not_retained(seqs)
    r = report.rounds[1]
    assert r.locked_by == [1, 2, 3]
    assert r.endorsements == [EndorsementReport(1, [[1, 2]]), EndorsementReport(2, [[1, 2]])]
    json_round = report.to_json()["rounds"][0]
    assert json_round["endorsements"][1] == {"keyholder": 2, "checked_quorums": [[1, 2]]}
    lines = format_report(report).splitlines()
    assert lines[2] == (
        "  locked by key holders [1, 2, 3]; "
        "endorsed by key holder 1 (checked [1, 2]), key holder 2 (checked [1, 2])"
    )


def test_a_lock_with_an_unreadable_signature_is_named(dep: Path) -> None:
    """The generic signature reading applies to locks (the edit also breaks the chain)."""
    seqs = write_log(dep)
    edit(dep, seqs["lock"], lambda e: e["data"].update(signature="AB" * 64))
    report = verify_log(dep)
    assert report.errors[0] == (
        f"entry {seqs['lock']} (lock): signature by key holder 1 is not canonical lower-case hex"
    )
    for k in (1, 2):  # the lock does not count
        partial = f"entry {seqs['partial'] + k - 1} (partial): partial of key holder {k} "
        assert partial + NO_CERTIFICATE.format(2) in report.errors
