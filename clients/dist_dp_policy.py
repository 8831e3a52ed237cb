"""What a distributed DP client requires of the roster's policy before it trains.

The noise of a distributed DP round is split among the contributors, so the client must
know how many contributors' noise it can count on: ``min_contributors`` (the key holders
refuse to decrypt an aggregate of fewer uploads) minus the colluders it assumes. Its
weight-1 uploads must also pass the policy's weight rules.
"""

from __future__ import annotations

from secagg.errors import ConfigError
from secagg.protocol.roster import Policy


def honest_contributors(policy: Policy, *, colluders: int) -> int:
    """``min_contributors - colluders``, after checking the policy admits weight-1 uploads.

    Raises
    ------
    ConfigError
        No honest contributor is left (``colluders >= min_contributors``), the policy's
        ``min_weight`` exceeds 1, or ``max_weight_share`` would refuse an aggregate of
        ``min_contributors`` uploads of weight 1.

    Security
    --------
    The count is only as good as the assumption on ``colluders`` and the key holders'
    enforcement of ``min_contributors``: a client that assumes too few colluders
    under-noises the aggregate.
    """
    problems = []
    if colluders < 0:
        problems.append("colluders must not be negative")
    if policy.min_contributors - colluders < 1:
        problems.append(
            f"min_contributors {policy.min_contributors} leaves no honest contributor "
            f"with {colluders} colluder(s) assumed"
        )
    if policy.min_weight > 1:
        problems.append(f"min_weight {policy.min_weight} refuses weight-1 uploads")
    if policy.max_weight_share * policy.min_contributors < 1:
        problems.append(
            f"max_weight_share {policy.max_weight_share:g} refuses {policy.min_contributors} "
            "uploads of equal weight"
        )
    if problems:
        raise ConfigError("policy unfit for distributed DP: " + "; ".join(problems))
    return policy.min_contributors - colluders
