"""Host names and addresses of a deployment: what ``--host`` and ``--resolve`` may say.

``secagg init --host PARTY=NAME`` names a party's host (a DNS name or an IP address) in
that party's certificate; ``--resolve NAME=IP`` records in the roster's ``[hosts]`` table
which address a host name stands for, so that every party reaches the server by the
roster's mapping instead of DNS or ``/etc/hosts`` (:func:`resolve_address`).

Security
--------
A host name or address is only where to connect. Whom a party accepts as the server is
decided by the TLS handshake against the roster's server certificate (its SHA-256 is in
the roster) and server name (:mod:`secagg.rpc.transport`): a wrong or hostile mapping
makes a connection fail, it cannot make a party talk to another server.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from secagg.errors import ConfigError

#: A DNS host name (RFC 1123 labels, lower case, no wildcard), at most 253 characters.
DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_address(text: str) -> IPAddress | None:
    """``text`` as an IP address, or None when it is not one."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def check_host(text: str) -> str:
    """A host name or IP address, normalised (IP addresses in their canonical form).

    Raises
    ------
    ConfigError
        ``text`` is neither an IP address nor a DNS name (e.g. a wildcard, an underscore,
        upper case, a trailing dot).
    """
    address = ip_address(text)
    if address is not None:
        return str(address)
    if not DNS_NAME.fullmatch(text):
        raise ConfigError(f"{text!r} is neither an IP address nor a lower-case DNS name")
    return text


def assignment(text: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` as ``(KEY, VALUE)`` (the form of ``--host`` and ``--resolve``).

    Raises
    ------
    ValueError
        No ``=``, or an empty side (argparse reports it as an invalid value).
    """
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def host_table(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Host name -> IP address from ``(NAME, IP)`` pairs, each validated.

    Raises
    ------
    ConfigError
        A name is not a DNS name, an address is not an IP address, or one name is mapped
        to two addresses.
    """
    table: dict[str, str] = {}
    for name, value in pairs:
        if ip_address(name) is not None or check_host(name) != name:
            raise ConfigError(f"hosts: {name!r} must be a DNS name")
        address = ip_address(value)
        if address is None:
            raise ConfigError(f"hosts: {name} must map to an IP address, not {value!r}")
        if table.get(name, str(address)) != str(address):
            raise ConfigError(f"hosts: {name} is mapped to two addresses")
        table[name] = str(address)
    return table


def hosts_table(raw: object) -> dict[str, str]:
    """The roster's ``[hosts]`` table, validated (:func:`host_table`); raises ConfigError."""
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError("roster.toml: hosts must map host names to IP address strings")
    return host_table(raw.items())


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT`` for IPv6) as ``(HOST, PORT)``.

    Raises
    ------
    ConfigError
        No port, a port outside 0..65535, or an invalid host.
    """
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"address {address!r} must be HOST:PORT")
    return check_host(host), int(port)


def join_address(host: str, port: int) -> str:
    """``HOST:PORT``, with brackets around an IPv6 address."""
    address = ip_address(host)
    return f"[{host}]:{port}" if isinstance(address, ipaddress.IPv6Address) else f"{host}:{port}"


def resolve_address(address: str, hosts: Mapping[str, str]) -> str:
    """``address`` with its host name replaced by the address ``hosts`` maps it to.

    An address whose host is not in ``hosts`` is returned unchanged (the system resolver
    then looks it up).
    """
    host, port = split_address(address)
    return join_address(hosts[host], port) if host in hosts else address
