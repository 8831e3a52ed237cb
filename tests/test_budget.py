"""The key holder's lifetime decryption budget (clients.keyholder.budget)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import secagg
from clients.keyholder import budget as budget_module
from clients.keyholder.budget import BUDGET_FILE, DecryptionBudget
from secagg.errors import ConfigError, DecryptionBudgetExhausted, PolicyViolation

#: 2^14 coefficients: two decryptions of one N = 8192 ciphertext.
SMALL = secagg.Parameters.calculate(decryption_budget_bits=14)
ONE_CIPHERTEXT = SMALL.poly_modulus_degree


def test_a_fresh_budget_is_whole(tmp_path: Path) -> None:
    budget = DecryptionBudget(tmp_path, SMALL)
    assert budget.spent() == 0
    assert budget.remaining() == SMALL.decryption_budget == 2**14
    assert not (tmp_path / BUDGET_FILE).exists()


def test_spending_adds_up_and_survives_a_new_instance(tmp_path: Path) -> None:
    budget = DecryptionBudget(tmp_path, SMALL)
    budget.spend(ONE_CIPHERTEXT)
    budget.spend(100)
    assert budget.spent() == ONE_CIPHERTEXT + 100
    again = DecryptionBudget(tmp_path, SMALL)  # a restarted key holder
    assert again.spent() == ONE_CIPHERTEXT + 100
    assert again.remaining() == 2**14 - ONE_CIPHERTEXT - 100
    assert json.loads((tmp_path / BUDGET_FILE).read_text())["spent"] == ONE_CIPHERTEXT + 100
    assert (tmp_path / BUDGET_FILE).stat().st_mode & 0o777 == 0o600


def test_the_whole_budget_can_be_spent_and_no_more(tmp_path: Path) -> None:
    budget = DecryptionBudget(tmp_path, SMALL)
    budget.spend(ONE_CIPHERTEXT)
    budget.spend(ONE_CIPHERTEXT)
    assert budget.remaining() == 0
    with pytest.raises(DecryptionBudgetExhausted, match="lifetime budget of 16384"):
        budget.spend(1)
    budget.spend(0)  # nothing to decrypt costs nothing


def test_a_refusal_leaves_the_counter_unchanged(tmp_path: Path) -> None:
    budget = DecryptionBudget(tmp_path, SMALL)
    budget.spend(ONE_CIPHERTEXT + 1)
    before = (tmp_path / BUDGET_FILE).read_bytes()
    with pytest.raises(DecryptionBudgetExhausted) as info:
        budget.spend(ONE_CIPHERTEXT)  # 1 coefficient too many
    assert isinstance(info.value, PolicyViolation)
    assert info.value.reason == "DECRYPTION_BUDGET_EXHAUSTED"
    assert (tmp_path / BUDGET_FILE).read_bytes() == before
    assert DecryptionBudget(tmp_path, SMALL).spent() == ONE_CIPHERTEXT + 1
    budget.spend(ONE_CIPHERTEXT - 1)  # what is left can still be spent
    assert budget.remaining() == 0


def test_the_budget_comes_from_the_parameters(tmp_path: Path) -> None:
    budget = DecryptionBudget(tmp_path, secagg.Parameters.default())
    assert budget.remaining() == secagg.Parameters.default().decryption_budget >= 2**32


def test_a_negative_spend_is_refused(tmp_path: Path) -> None:
    budget = DecryptionBudget(tmp_path, SMALL)
    with pytest.raises(ValueError, match="negative"):
        budget.spend(-ONE_CIPHERTEXT)
    assert budget.spent() == 0


def test_a_failed_write_refuses_the_spend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The total is on disk before spend returns: if it cannot be written, no decryption."""

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError("No space left on device")

    budget = DecryptionBudget(tmp_path, SMALL)
    monkeypatch.setattr(budget_module, "write_atomically", disk_full)
    with pytest.raises(OSError):
        budget.spend(ONE_CIPHERTEXT)
    assert budget.spent() == 0


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b"{}", b'{"spent": -1}', b'{"spent": "8192"}', b'{"spent": true}'],
    ids=repr,
)
def test_a_damaged_counter_fails_closed(tmp_path: Path, content: bytes) -> None:
    (tmp_path / BUDGET_FILE).write_bytes(content)
    budget = DecryptionBudget(tmp_path, SMALL)
    with pytest.raises(ConfigError, match="damaged"):
        budget.spend(1)
    with pytest.raises(ConfigError, match="damaged"):
        budget.remaining()
    assert (tmp_path / BUDGET_FILE).read_bytes() == content
