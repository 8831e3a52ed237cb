"""Where everything of a deployment lives: one answer to every "where is X".

A deployment directory (``secagg init DIR``) holds the public roster, the CA and one
directory per party; the server keeps its state in a data directory (``serve --data``,
default ``DIR/server/data``). Every party, the demo and ``secagg audit verify`` ask a
:class:`DeploymentLayout` instead of joining paths themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from secagg.errors import ConfigError

ROSTER_FILE = "roster.toml"
_ROLE_DIRS = {"server": "", "admin": "", "keyholder": "keyholders", "client": "clients"}


@dataclass(frozen=True)
class DeploymentLayout:
    """Paths of one deployment directory (and of the server's state directory)."""

    root: Path
    server_data_dir: Path | None = None

    @classmethod
    def find(cls, directory: Path, *, server_data: Path | None = None) -> DeploymentLayout:
        """``DIR`` itself, or ``DIR/deployment`` (a demo's output); raises ConfigError."""
        directory = Path(directory)
        for candidate in (directory, directory / "deployment"):
            if (candidate / ROSTER_FILE).exists():
                return cls(candidate, server_data)
        raise ConfigError(f"{directory} holds no {ROSTER_FILE} (nor deployment/{ROSTER_FILE})")

    # --------------------------------------------------------------- public files
    @property
    def roster(self) -> Path:
        """The public roster."""
        return self.root / ROSTER_FILE

    @property
    def ca_certificate(self) -> Path:
        """The deployment CA's certificate (public)."""
        return self.root / "ca" / "ca.pem"

    @property
    def server_certificate(self) -> Path:
        """The server's TLS certificate (public; every party pins it, the roster has its hash)."""
        return self.root / "ca" / "server.pem"

    @property
    def initial_model(self) -> Path:
        """Round 1's global model (a ``ModelBlob``; public, its hash is in the roster)."""
        return self.root / "initial_model.bin"

    @property
    def ca_key(self) -> Path:
        """The deployment CA's private key (keep offline)."""
        return self.root / "ca" / "ca.key"

    # --------------------------------------------------------------- parties
    def party_dir(self, name: str, role: str) -> Path:
        """A party's own directory (keys, certificate, state)."""
        if role not in _ROLE_DIRS:
            raise ConfigError(f"unknown role {role!r}")
        sub = _ROLE_DIRS[role]
        return self.root / sub / name if sub else self.root / name

    def state_dir(self, name: str, role: str) -> Path:
        """A key holder's or client's local state (shares, upload and privacy records)."""
        return self.party_dir(name, role) / "state"

    # --------------------------------------------------------------- server state
    @property
    def server_data(self) -> Path:
        """The server's state directory (``serve --data``; default ``DIR/server/data``)."""
        return self.server_data_dir or self.party_dir("server", "server") / "data"

    @property
    def database(self) -> Path:
        """The server's SQLite database."""
        return self.server_data / "state.db"

    @property
    def blobs(self) -> Path:
        """The server's content-addressed blob store."""
        return self.server_data / "blobs"

    @property
    def audit_log(self) -> Path:
        """The server's audit log."""
        return self.server_data / "audit.log"

    @property
    def server_log(self) -> Path:
        """The server's process log."""
        return self.server_data / "server.log"
