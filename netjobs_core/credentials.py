"""Agent credentials: the files `netjobs token issue` writes, one per host, and the
controller's token that `netjobs token rotate` replaces (the GUI's Settings use
the same). The model is in docs/security.md; the derivation in
netjobs_core/wire/sealing.py `host_credential`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from netjobs_core.atomic import make_private_dirs, write_atomic
from netjobs_core.nodesets import NO_GROUPS, Groups, NodeSetError, expand, is_node_set
from netjobs_core.wire.address import Address, AddressError, split_ssh_prefix
from netjobs_core.wire.sealing import host_credential, token_key
from netjobs_core.wire.tokens import (
    ENV_VAR,
    Token,
    TokenError,
    credential_file_text,
    default_token_path,
    generate_token_file,
    load_token,
)

SUFFIX = ".token"


class CredentialError(Exception):
    """What cannot be issued, and why (a target, the token)."""


@dataclass(frozen=True)
class ControllerToken:
    token: Token
    created: bool  # it did not exist: made now


def _not_an_agent_file(token: Token) -> Token:
    if token.host is not None:
        raise CredentialError(
            f"{token.source} is the credential of the agent on {token.host}, not the "
            "controller's token: pass the controller's --token-file"
        )
    return token


def controller_token(path: str | os.PathLike[str] | None) -> ControllerToken:
    """The controller's token from PATH, $NETJOBS_TOKEN or the default file; a new
    one at PATH (or the default place) when none exists yet."""
    try:
        return ControllerToken(_not_an_agent_file(load_token(path)), False)
    except TokenError as exc:
        target = Path(path).expanduser() if path else default_token_path()
        if target.exists() or (not path and os.environ.get(ENV_VAR, "").strip()):
            raise CredentialError(str(exc)) from None
    make_private_dirs(target.parent)
    return ControllerToken(generate_token_file(target), True)


def target_hosts(targets: Sequence[str], groups: Groups = NO_GROUPS) -> list[str]:
    """The host part of each target (node sets and @groups expanded; no port, no
    ssh://user@), once each, in the order given."""
    hosts = []
    for target in targets:
        prefix, rest = split_ssh_prefix(target.strip())
        try:
            names = expand(rest, groups) if is_node_set(rest) else [rest]
            hosts += [Address.parse(prefix + name).host for name in names]
        except (NodeSetError, AddressError) as exc:
            raise CredentialError(f"target {target!r}: {exc}") from None
    return list(dict.fromkeys(hosts))


def agent_file(out: Path, host: str) -> Path:
    return out / f"{host}{SUFFIX}"


def issue(token: Token, hosts: Sequence[str], out: Path) -> list[Path]:
    """Write HOST.token in OUT (made 0700 when missing) for each host: its credential,
    derived from the controller's TOKEN. Raises OSError."""
    key = token_key(_not_an_agent_file(token).secret)
    make_private_dirs(out)
    written = []
    for host in hosts:
        path = agent_file(out, host)
        write_atomic(path, credential_file_text(host, host_credential(key, host)).encode())
        written.append(path)
    return written


def issued_hosts(out: Path) -> list[str]:
    """The hosts of the agent files in OUT, by name."""
    hosts = []
    for path in sorted(out.glob(f"*{SUFFIX}")):
        try:
            token = load_token(path)
        except TokenError:
            continue  # not an agent file: left alone
        if token.host is not None:
            hosts.append(token.host)
    return hosts


def rotate(path: str | os.PathLike[str] | None) -> Path:
    """Replace the controller's token file by a new random token; returns its path.
    Every credential issued from the old one is refused from now on."""
    if not path and os.environ.get(ENV_VAR, "").strip():
        raise CredentialError(
            f"the controller's token comes from ${ENV_VAR}: rotate writes a token file, "
            "so unset it or pass --token-file"
        )
    target = Path(path).expanduser() if path else default_token_path()
    if target.exists():
        try:
            _not_an_agent_file(load_token(target))
        except TokenError:
            pass  # unreadable or too short: replaced all the same
    make_private_dirs(target.parent)
    write_atomic(target, (secrets.token_urlsafe(32) + "\n").encode())
    return target
