"""The roster: who takes part, their public keys, and the policy every party enforces.

``roster.toml`` is public and identical at every party. :func:`load_roster` validates every
field and names the bad one in its error; :class:`Policy` validates itself on
construction (like :class:`~secagg.params.Parameters`), so an invalid policy cannot exist
in memory, whichever way it was built. The defaults of :class:`Policy` are the one source
of the defaults of ``secagg init``.

Key holders have no static exchange key (each ceremony makes its own); the
``exchange_public_key`` field of rosters written before that is ignored.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from secagg import constants as C
from secagg.errors import ConfigError
from secagg.params import Parameters
from secagg.protocol.hosts import hosts_table, resolve_address
from secagg.protocol.layout import ROSTER_FILE

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
ADMIN_NAME = "admin"
#: Upper bound of ``Policy.max_client_weight`` (weights are signed as u64, summed exactly).
MAX_CLIENT_WEIGHT = 2**32


@dataclass(frozen=True)
class Policy:
    """Round and decryption policy, enforced by the server and by every key holder.

    ``min_weight`` and ``max_client_weight`` bound one upload's weight. The static
    default of ``max_client_weight`` is the default parameter set's whole weight budget;
    ``secagg init`` writes ``max_total_weight // clients`` instead, so that every roster
    client together always fits in the budget.

    Notes
    -----
    The rules built on these numbers live in :mod:`secagg.protocol.policy`; the server,
    the key holders and the audit verifier all call the same functions there. A
    ``max_client_weight`` with ``max_client_weight x clients > max_total_weight`` lets one
    client starve the others (its upload exhausts the round's budget);
    :func:`load_roster` refuses such a roster.
    """

    threshold: int
    keyholders: int
    min_contributors: int = 2
    max_weight_share: float = 1.0
    rounds: int = 3
    round_timeout_seconds: float = C.DEFAULT_ROUND_TIMEOUT_SECONDS
    max_upload_bytes: int = C.MAX_UPLOAD_BYTES
    model_length: int = 1000
    epsilon_budget: float = 3.0
    min_weight: int = 1
    max_client_weight: int = C.DEFAULT_MAX_TOTAL_WEIGHT
    #: Refuse uploads whose signed statement does not claim DP (``dp = false``); the
    #: policy checks the client's claim, it cannot check the training itself.
    require_dp: bool = False
    #: Deadline of one streaming transfer (upload, download, partial); ``secagg init``
    #: derives it from the model size (:mod:`secagg.protocol.sizing`).
    transfer_timeout_seconds: float = C.TRANSFER_TIMEOUT_SECONDS
    #: Keep the ciphertext blobs (uploads, aggregate, partials) of the last this many
    #: released rounds; older ones are deleted after each release. 0 keeps all.
    retain_rounds: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.require_dp, bool):
            problems.append("require_dp must be true or false")
        if not 1 <= self.keyholders <= C.DEFAULT_MAX_KEYHOLDERS:
            problems.append(f"keyholders must be in 1..{C.DEFAULT_MAX_KEYHOLDERS}")
        if not 1 <= self.threshold <= self.keyholders:
            problems.append("threshold must be in 1..keyholders")
        if not 1 <= self.min_contributors <= 1_000_000:
            problems.append("min_contributors must be in 1..1000000")
        if not 0.0 < self.max_weight_share <= 1.0:
            problems.append("max_weight_share must be in (0, 1]")
        if not 1 <= self.rounds <= 1_000_000:
            problems.append("rounds must be in 1..1000000")
        if not 0.1 <= self.round_timeout_seconds <= C.MAX_TIMEOUT_SECONDS:
            problems.append(f"round_timeout_seconds must be in [0.1, {C.MAX_TIMEOUT_SECONDS:g}]")
        if not 1.0 <= self.transfer_timeout_seconds <= C.MAX_TIMEOUT_SECONDS:
            problems.append(f"transfer_timeout_seconds must be in [1, {C.MAX_TIMEOUT_SECONDS:g}]")
        if isinstance(self.retain_rounds, bool) or not 0 <= self.retain_rounds <= 1_000_000:
            problems.append("retain_rounds must be in 0..1000000 (0: keep every round)")
        if not 1024 <= self.max_upload_bytes <= C.MAX_UPLOAD_BYTES:
            problems.append(f"max_upload_bytes must be in 1024..{C.MAX_UPLOAD_BYTES}")
        if not 1 <= self.model_length <= C.MAX_VECTOR_LENGTH:
            problems.append(f"model_length must be in 1..{C.MAX_VECTOR_LENGTH}")
        if not 0.0 <= self.epsilon_budget <= 1000.0:
            problems.append("epsilon_budget must be in [0, 1000]")
        if not 1 <= self.max_client_weight <= MAX_CLIENT_WEIGHT:
            problems.append(f"max_client_weight must be in 1..{MAX_CLIENT_WEIGHT}")
        if not 1 <= self.min_weight <= self.max_client_weight:
            problems.append("min_weight must be in 1..max_client_weight")
        if problems:
            raise ConfigError("invalid policy: " + "; ".join(problems))

    @classmethod
    def default_of(cls, name: str) -> Any:
        """The default value of a field (the one source of CLI defaults)."""
        for f in fields(cls):
            if f.name == name:
                return f.default
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """Field name -> value (the roster's ``[policy]`` table)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Party:
    """One roster entry."""

    name: str
    role: str  # "server", "keyholder", "client", "admin"
    signing_public_key: bytes
    index: int = 0  # key holders: 1..n


@dataclass(frozen=True)
class Roster:
    """The validated contents of ``roster.toml``.

    ``server_certificate_sha256``: the SHA-256 of the server's TLS certificate, which
    every party pins (empty in rosters built in memory: no channel trusts such a server).
    ``hosts``: host name -> IP address (``[hosts]``, from ``secagg init --resolve``).
    """

    deployment_id: str
    server_address: str
    initial_model_hash: bytes
    params: Parameters
    policy: Policy
    server: Party
    keyholders: tuple[Party, ...]
    clients: tuple[Party, ...]
    server_certificate_sha256: bytes = b""
    hosts: dict[str, str] = field(default_factory=dict)

    def server_target(self, address: str | None = None) -> str:
        """Where to reach (or bind) the server: ``address`` (default: the roster's) with its
        host name replaced by the address ``[hosts]`` maps it to, if any."""
        return resolve_address(address or self.server_address, self.hosts)

    def keyholder(self, index: int) -> Party:
        """The key holder with this index (raises :class:`ConfigError`)."""
        for k in self.keyholders:
            if k.index == index:
                return k
        raise ConfigError(f"no key holder with index {index}")

    def keyholder_named(self, name: str) -> Party:
        """The key holder with this certificate name (raises :class:`ConfigError`)."""
        for k in self.keyholders:
            if k.name == name:
                return k
        raise ConfigError(f"no key holder named {name!r}")

    def client(self, name: str) -> Party:
        """The client with this name (raises :class:`ConfigError`)."""
        for c in self.clients:
            if c.name == name:
                return c
        raise ConfigError(f"no client named {name!r} in the roster")

    def role_of(self, name: str) -> str | None:
        """Role of a certificate common name, or None if unknown."""
        if name == self.server.name:
            return "server"
        if name == ADMIN_NAME:
            return "admin"
        if any(k.name == name for k in self.keyholders):
            return "keyholder"
        if any(c.name == name for c in self.clients):
            return "client"
        return None


def check_weight_budget(policy: Policy, params: Parameters, *, clients: int) -> None:
    """Every roster client's largest upload together must fit the round's weight budget.

    Raises
    ------
    ConfigError
        ``max_client_weight x clients`` exceeds ``params.max_total_weight``: one client
        could exhaust the budget and have every other upload refused (weight starvation).
    """
    if policy.max_client_weight * clients > params.max_total_weight:
        raise ConfigError(
            f"policy.max_client_weight {policy.max_client_weight} x {clients} clients exceeds "
            f"the weight budget {params.max_total_weight}: at most "
            f"{params.max_total_weight // clients} per client"
        )


# ------------------------------------------------------------------------- reading


class _Fields:
    """Typed access to a TOML table that names the bad field in every error."""

    def __init__(self, table: Any, where: str) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"roster.toml: {where} must be a table")
        self.table = table
        self.where = where

    def _get(self, key: str) -> Any:
        if key not in self.table:
            raise ConfigError(f"roster.toml: {self.where}.{key} is missing")
        return self.table[key]

    def integer(self, key: str, low: int, high: int) -> int:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ConfigError(
                f"roster.toml: {self.where}.{key} must be an integer in {low}..{high}"
            )
        return v

    def number(self, key: str, low: float, high: float) -> float:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
            raise ConfigError(
                f"roster.toml: {self.where}.{key} must be a number in [{low}, {high}]"
            )
        return float(v)

    def text(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        v = self._get(key)
        if not isinstance(v, str) or (pattern is not None and not pattern.fullmatch(v)):
            raise ConfigError(f"roster.toml: {self.where}.{key} is not a valid value")
        return v

    def key(self, key: str) -> bytes:
        v = self._get(key)
        try:
            raw = bytes.fromhex(v) if isinstance(v, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"roster.toml: {self.where}.{key} must be 32 bytes of hex")
        return raw


def _operations(pol: _Fields) -> dict[str, Any]:
    """The policy's operational fields (issue 13); rosters written before them get defaults."""
    found: dict[str, Any] = {}
    if "transfer_timeout_seconds" in pol.table:
        found["transfer_timeout_seconds"] = pol.number(
            "transfer_timeout_seconds", 1.0, C.MAX_TIMEOUT_SECONDS
        )
    if "retain_rounds" in pol.table:
        found["retain_rounds"] = pol.integer("retain_rounds", 0, 1_000_000)
    return found


def load_roster(directory: Path) -> Roster:
    """Load and validate ``DIR/roster.toml``; raises :class:`ConfigError` naming the bad field."""
    path = Path(directory) / ROSTER_FILE
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run `secagg init` first") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    top = _Fields(doc, "(top level)")
    dep = _Fields(top._get("deployment"), "deployment")
    params = Parameters.default()
    pid = _Fields(top._get("parameters"), "parameters").text("id")
    if pid != params.id:
        raise ConfigError(
            f"roster.toml: parameters.id {pid} is not a parameter set this build knows"
        )
    pol = _Fields(top._get("policy"), "policy")
    keyholders = pol.integer("keyholders", 1, params.max_keyholders)
    policy = Policy(
        threshold=pol.integer("threshold", 1, keyholders),
        keyholders=keyholders,
        min_contributors=pol.integer("min_contributors", 1, 1_000_000),
        max_weight_share=pol.number("max_weight_share", 0.0, 1.0),
        rounds=pol.integer("rounds", 1, 1_000_000),
        round_timeout_seconds=pol.number("round_timeout_seconds", 0.1, C.MAX_TIMEOUT_SECONDS),
        max_upload_bytes=pol.integer("max_upload_bytes", 1024, C.MAX_UPLOAD_BYTES),
        model_length=pol.integer("model_length", 1, C.MAX_VECTOR_LENGTH),
        epsilon_budget=pol.number("epsilon_budget", 0.0, 1000.0),
        min_weight=pol.integer("min_weight", 1, params.max_total_weight),
        max_client_weight=pol.integer("max_client_weight", 1, params.max_total_weight),
        require_dp=pol.table.get("require_dp", False),  # absent in older rosters
        **_operations(pol),
    )
    srv = _Fields(top._get("server"), "server")
    server = Party(srv.text("name", NAME_PATTERN), "server", srv.key("signing_public_key"))
    server_fingerprint = srv.key("tls_certificate_sha256")
    hosts = hosts_table(doc.get("hosts", {}))
    khs_raw = top._get("keyholders")
    if not isinstance(khs_raw, list) or len(khs_raw) != keyholders:
        raise ConfigError(f"roster.toml: keyholders must list exactly {keyholders} entries")
    khs = []
    for n, entry in enumerate(khs_raw):
        f = _Fields(entry, f"keyholders[{n}]")
        khs.append(
            Party(
                f.text("name", NAME_PATTERN),
                "keyholder",
                f.key("signing_public_key"),
                index=f.integer("index", 1, keyholders),
            )
        )
    if sorted(k.index for k in khs) != list(range(1, keyholders + 1)):
        raise ConfigError("roster.toml: keyholders[].index must be 1..n, each once")
    cl_raw = top._get("clients")
    if not isinstance(cl_raw, list) or not cl_raw:
        raise ConfigError("roster.toml: clients must be a non-empty list")
    clients = tuple(
        Party(
            (f := _Fields(e, f"clients[{n}]")).text("name", NAME_PATTERN),
            "client",
            f.key("signing_public_key"),
        )
        for n, e in enumerate(cl_raw)
    )
    names = [server.name, ADMIN_NAME, *(k.name for k in khs), *(c.name for c in clients)]
    if len(set(names)) != len(names):
        raise ConfigError("roster.toml: party names must be unique (and not 'admin')")
    if policy.min_contributors > len(clients):
        raise ConfigError("roster.toml: policy.min_contributors exceeds the number of clients")
    check_weight_budget(policy, params, clients=len(clients))
    return Roster(
        deployment_id=dep.text("id"),
        server_address=dep.text("server_address"),
        initial_model_hash=dep.key("initial_model_sha256"),
        params=params,
        policy=policy,
        server=server,
        keyholders=tuple(khs),
        clients=clients,
        server_certificate_sha256=server_fingerprint,
        hosts=hosts,
    )
