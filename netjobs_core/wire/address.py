"""Where an agent listens: the one address type of NetJobs.

`Address.parse` reads a target as a config or a user writes it (``host``,
``host:port``, ``[fd00::5]``, ``[fd00::5]:16200``); `str()` always gives the full
form with the port and brackets for IPv6 (``[fd00::5]:16192``), which is what a
table of hosts shows; `short` drops the port when it is the default, as a config
writes it. Parse errors are `AddressError`s worded to follow ``file:line:``.

A target may also be reached over SSH: ``ssh://[user@]host[:port]`` (`scheme`
"ssh", `user` "" for SSH's own default, `port` 0 for SSH's default port:
~/.ssh/config's, else 22). Such an address always shows as written, with its
``ssh://``, so `str()` and `short` round-trip through `parse`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_PORT = 16192
SSH = "ssh"
SSH_PREFIX = "ssh://"
SSH_DEFAULT_PORT = 0  # ssh_config's Port for the host, else 22

_HOST_RE = re.compile(r"[A-Za-z0-9._-]+")
_NUMERIC_HOST_RE = re.compile(r"[0-9.]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_USER_RE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
TARGET_FORMAT = "'host: \"command\"'"
IPV6_HINT = "an IPv6 address must be in brackets, e.g. '[::1]: \"command\"'"


class AddressError(ValueError):
    """A target that is not a host, host:port, [IPv6] or [IPv6]:port."""


@dataclass(frozen=True, order=True)
class Address:
    host: str  # a name, an IPv4 address, or an IPv6 address without brackets
    port: int = DEFAULT_PORT
    scheme: str = ""  # "" an agent's TCP port; SSH: started over SSH for the run
    user: str = ""  # SSH's login name; "" as ~/.ssh/config says, else the local user

    @classmethod
    def parse(cls, text: str, default_port: int = DEFAULT_PORT) -> Address:
        prefix, target = split_ssh_prefix(text.strip())
        if prefix:
            user = prefix[len(SSH_PREFIX) : -1]
            if user and _USER_RE.fullmatch(user) is None:
                raise AddressError(
                    f"bad user name {user!r} in {text.strip()!r}: expected "
                    "'ssh://user@host' (letters, digits, '.', '_', '-')"
                )
            if target.lower().startswith(SSH_PREFIX):
                raise AddressError(f"'ssh://' twice in {text.strip()!r}")
            return replace(cls.parse(target, SSH_DEFAULT_PORT), scheme=SSH, user=user)
        if not target:
            raise AddressError(f"missing target: expected {TARGET_FORMAT}")
        if target.startswith("["):
            inside, bracket, rest = target[1:].partition("]")
            if not bracket:
                raise AddressError(f"missing ']' after the IPv6 address {inside!r}")
            try:
                ipaddress.IPv6Address(inside)
            except ValueError:
                raise AddressError(
                    f"bad IPv6 address {inside!r}: expected e.g. '[fd00::5]'"
                ) from None
            rest = rest.strip()
            if rest and not rest.startswith(":"):
                raise AddressError(
                    f"unexpected {rest!r} after ']': expected ':PORT' or ': \"command\"'"
                )
            return cls(inside, parse_port(rest[1:].strip()) if rest else default_port)
        parts = target.split(":")
        if len(parts) > 2:
            raise AddressError(f"more than one ':' before the command: {IPV6_HINT}")
        host = parts[0].strip()
        if not host:
            raise AddressError(f"missing host before ':': expected {TARGET_FORMAT}")
        if _HOST_RE.fullmatch(host) is None:
            raise AddressError(
                f"bad host {host!r}: expected a host name (letters, digits, '-', '.', '_'), "
                "an IPv4 address or an IPv6 address in brackets"
            )
        if _NUMERIC_HOST_RE.fullmatch(host) is not None:
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise AddressError(f"bad IPv4 address {host!r}: expected e.g. '10.0.0.5'") from None
        return cls(host, parse_port(parts[1].strip()) if len(parts) == 2 else default_port)

    @classmethod
    def from_sockaddr(cls, sockaddr: Any) -> Address | None:
        """A socket's (host, port, ...) tuple; None for anything else (a Unix socket)."""
        if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
            return cls(str(sockaddr[0]), int(sockaddr[1]))
        return None

    @property
    def bracketed_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def short(self) -> str:
        """As a config writes it: the port only when it is not the default."""
        if self.scheme == SSH:
            return str(self)
        return self.bracketed_host if self.port == DEFAULT_PORT else str(self)

    @property
    def over_ssh(self) -> bool:
        return self.scheme == SSH

    def as_ssh(self) -> Address:
        """The same host over SSH (`--ssh`): a port written in the config is SSH's."""
        if self.scheme == SSH:
            return self
        port = SSH_DEFAULT_PORT if self.port == DEFAULT_PORT else self.port
        return replace(self, port=port, scheme=SSH)

    def __str__(self) -> str:
        if self.scheme == SSH:
            user = f"{self.user}@" if self.user else ""
            port = f":{self.port}" if self.port != SSH_DEFAULT_PORT else ""
            return f"{SSH_PREFIX}{user}{self.bracketed_host}{port}"
        return f"{self.bracketed_host}:{self.port}"


def split_ssh_prefix(text: str) -> tuple[str, str]:
    """("ssh://user@", "host:port") for an SSH target, ("", text) for any other.

    The host part alone is what a node set (``node[01-32]``) expands. A user name
    holds no '@': the first one ends it, and one right after ``ssh://`` starts a
    group (``ssh://@storage``, ``ssh://bench@@storage``)."""
    if not text[: len(SSH_PREFIX)].lower() == SSH_PREFIX:
        return "", text
    rest = text[len(SSH_PREFIX) :]
    user, at, host = rest.partition("@")
    if not at or not user:
        return SSH_PREFIX, rest
    return f"{SSH_PREFIX}{user}{at}", host


def parse_port(text: str) -> int:
    digits = text.lstrip("0")
    if _DIGITS_RE.fullmatch(text) is None or len(digits) > 5 or not 1 <= int(digits or 0) <= 65535:
        raise AddressError(f"bad port {text!r}: expected a number from 1 to 65535")
    return int(text)


def is_unbracketed_ipv6(text: str) -> bool:
    """True for "::1", "fd00::5" and "fd00::5:16200" (an IPv6 address with a port)."""
    for candidate in (text, text.rpartition(":")[0]):
        if candidate.count(":") >= 2:
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            return True
    return False
