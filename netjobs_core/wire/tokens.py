"""Where the token comes from. Standard library only (the agent uses it).

Sources, first found wins: an explicit token file, the NETJOBS_TOKEN
environment variable, then `token` in the user's NetJobs config directory.
A token file others may read is used with a warning (as ssh does with keys),
or refused when `strict`.

A token file holds either a shared token (any text of at least
MIN_TOKEN_CHARS: the controller's token, or a copy of it on an agent) or one
agent's own credential, as `netjobs token issue` writes it::

    netjobs agent credential 1
    host node07
    credential <64 hex digits>

(netjobs_core/wire/sealing.py host_credential says how it is derived.)
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from netjobs_core.wire.messages import HOST_NAME_RE
from netjobs_core.wire.sealing import CREDENTIAL_BYTES, LINK_SECRET_BYTES, Credential

if TYPE_CHECKING:  # pathlib and secrets where used: an agent started over SSH reads no
    # token file, and the two (with urllib, ipaddress, random) are ~6 % of its start
    from pathlib import Path

ENV_VAR = "NETJOBS_TOKEN"
MIN_TOKEN_CHARS = 16
# Far above a token (43 characters) or a credential file (~130 bytes): what is read of
# a token file, so that /dev/zero or a wrong file is an error, not all the memory.
MAX_TOKEN_FILE_BYTES = 64 * 1024
# The stdio bootstrap of an agent started over SSH (agent/server.py serve_stdio,
# netjobs_core/ssh.py): the controller's first line names the kind of secret and
# gives it, `link <64 hex digits>` (a fresh link secret: sealing.link_key, no
# stretching; a stdio agent takes no other kind, so a human-chosen token can never
# be taken unstretched); the agent's first line, once it holds it, starts with
# STDIO_READY.
STDIO_LINK = b"link "
STDIO_READY = b"NETJOBS-STDIO "


class TokenError(Exception):
    """No usable token, with what to do about it."""


CREDENTIAL_HEADER = "netjobs agent credential 1"
UTF8_BOM = b"\xef\xbb\xbf"


class Token(NamedTuple):  # not a dataclass: one compiled at each agent's start is ~1 %
    secret: bytes  # the shared token, or an agent's credential (host set)
    source: str  # for messages: never the secret itself
    warning: str | None = None  # e.g. a token file others may read: for the caller to print
    host: str | None = None  # an agent credential's host; None: a shared token
    link: bool = False  # a stdio agent's link secret (random: sealing.link_key)

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"Token(source={self.source!r})"

    @property
    def kind(self) -> Credential:
        if self.link:
            return Credential.LINK
        return Credential.SHARED if self.host is None else Credential.HOST


def stdio_greeting(secret: bytes) -> bytes:
    """The controller's first line to a stdio agent: the link secret, named as one."""
    if len(secret) != LINK_SECRET_BYTES:
        raise ValueError(f"a link secret is {LINK_SECRET_BYTES} random bytes")
    return STDIO_LINK + secret.hex().encode() + b"\n"


def parse_stdio_greeting(line: bytes) -> bytes | None:
    """The link secret of a controller's first line; None if it is not one."""
    if not line.startswith(STDIO_LINK):
        return None
    try:
        secret = bytes.fromhex(line[len(STDIO_LINK) :].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return secret if len(secret) == LINK_SECRET_BYTES else None


def credential_file_text(host: str, credential: bytes) -> str:
    """What an agent's token file holds: its host name and its credential."""
    return f"{CREDENTIAL_HEADER}\nhost {host}\ncredential {credential.hex()}\n"


def _parse_credential(text: str, path: Path) -> tuple[str, bytes]:
    """The host and credential of an agent's token file (TokenError: file:line)."""
    lines = text.splitlines()
    if lines[0].strip() != CREDENTIAL_HEADER:
        raise TokenError(f"{path}:1: expected {CREDENTIAL_HEADER!r} (made by a newer NetJobs?)")
    values = {}
    for number, (line, key) in enumerate(zip(lines[1:], ("host", "credential"), strict=False), 2):
        name, _, value = line.strip().partition(" ")
        if name != key or not value:
            raise TokenError(f"{path}:{number}: expected '{key} ...' in an agent credential")
        values[key] = value.strip()
    if len(values) < 2 or len(lines) > 3:
        raise TokenError(f"{path}: an agent credential has 3 lines ({CREDENTIAL_HEADER}, ...)")
    host = values["host"]
    if HOST_NAME_RE.fullmatch(host) is None:
        raise TokenError(f"{path}:2: bad host name {host[:60]!r}")
    try:
        credential = bytes.fromhex(values["credential"])
    except ValueError:
        credential = b""
    if len(credential) != CREDENTIAL_BYTES:
        raise TokenError(f"{path}:3: the credential is not {2 * CREDENTIAL_BYTES} hex digits")
    return host, credential


def config_dir() -> Path:
    """The per-user NetJobs config directory (same rules as platformdirs)."""
    from pathlib import Path

    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "netjobs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "netjobs"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "netjobs"


def default_token_path() -> Path:
    return config_dir() / "token"


def _loose_permissions(path: Path) -> str | None:
    """What is wrong with who may read PATH (POSIX), or None."""
    if os.name != "posix":
        return None  # NTFS ACLs: not judged here
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # the read below says why
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"token file {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}): anyone who reads it can run commands on the agents; "
            f"run: chmod 600 {path}"
        )
    return None


def _read_bounded(path: Path) -> bytes:
    """At most MAX_TOKEN_FILE_BYTES + 1 bytes of PATH. A pipe is fine (`--token-file
    <(pass show netjobs)`); a FIFO no one writes to reads as empty rather than wait
    for ever (opened without blocking, then read blocking: no writer is an end)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise IsADirectoryError(21, "Is a directory")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        chunks: list[bytes] = []
        left = MAX_TOKEN_FILE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read(path: Path, strict: bool) -> Token:
    warning = _loose_permissions(path)
    if warning and strict:
        raise TokenError(f"{warning} (refused: --strict-permissions)")
    try:
        data = _read_bounded(path)
    except OSError as exc:
        raise TokenError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise TokenError(
            f"token file {path} holds more than {MAX_TOKEN_FILE_BYTES >> 10} KiB: not a token"
        )
    # A copy saved by Windows Notepad starts with a UTF-8 byte order mark: not part
    # of the token, which the agent holding the original would not match.
    secret = data.removeprefix(UTF8_BOM).strip()
    if secret.startswith(CREDENTIAL_HEADER.encode()):
        host, credential = _parse_credential(secret.decode("ascii", "replace"), path)
        return Token(credential, f"token file {path}", warning, host)
    if len(secret) < MIN_TOKEN_CHARS:
        raise TokenError(f"token file {path} holds fewer than {MIN_TOKEN_CHARS} characters")
    return Token(secret, f"token file {path}", warning)


def load_token(
    token_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    strict: bool = False,
) -> Token:
    from pathlib import Path

    env = os.environ if env is None else env
    if token_file:
        return _read(Path(token_file).expanduser(), strict)
    value = env.get(ENV_VAR, "").strip()
    if value:
        if len(value) < MIN_TOKEN_CHARS:
            raise TokenError(f"{ENV_VAR} holds fewer than {MIN_TOKEN_CHARS} characters")
        return Token(value.encode(), f"environment variable {ENV_VAR}")
    path = default_token_path()
    if path.exists():
        return _read(path, strict)
    raise TokenError(
        f"no token: pass --token-file, set {ENV_VAR}, or copy the agent's token file to {path}"
    )


def generate_token_file(path: Path) -> Token:
    """Write a fresh random token readable only by its owner."""
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return Token(secret.encode(), f"token file {path}")


# A guessable token is worse than a short one: the scrypt stretch only divides an
# offline guesser's rate, so what it has to search must be large to begin with.
MIN_TOKEN_BITS = 64
_CHUNKS = re.compile(r"[a-z]+|[A-Z][a-z]+|[A-Z]+|[0-9]+|[^A-Za-z0-9]+")
_WORD_BITS = 16.0  # a single-case run of letters may be a word: ~65 000 of them


def weakness(secret: bytes) -> str | None:
    """Why SECRET is obviously guessable, or None. Never quotes the secret.

    Fewer than 3 of {lower, upper, digit, symbol} in under 24 characters is
    weak; so is a low estimate of what a guesser must search: each run of
    one kind of character counts its length times the bits of its kind, but
    a run of letters in one case (a word, perhaps) counts at most 16 bits.
    `secrets.token_urlsafe(32)` estimates at well over 100 bits.
    """
    text = secret.decode("utf-8", "replace")
    classes = sum(
        any(test(ch) for ch in text)
        for test in (str.islower, str.isupper, str.isdigit, lambda ch: not ch.isalnum())
    )
    if len(text) < 24 and classes < 3:
        return f"{len(text)} characters of only {classes} kinds (lower, upper, digit, symbol)"
    bits = 0.0
    for chunk in _CHUNKS.findall(text):
        if chunk[-1].isalpha():
            bits += min(len(chunk) * math.log2(26), _WORD_BITS)
        elif chunk.isdigit():
            bits += len(chunk) * math.log2(10)
        else:
            bits += len(chunk) * 5.0
    if bits < MIN_TOKEN_BITS:
        return f"words and short runs worth about {bits:.0f} bits (at least {MIN_TOKEN_BITS})"
    return None


def refuse_weak(token: Token) -> None:
    """Raise TokenError when TOKEN is obviously guessable (see `weakness`); an agent
    credential is random by construction."""
    if token.host is not None:
        return
    reason = weakness(token.secret)
    if reason is not None:
        raise TokenError(
            f"the token in {token.source} is weak: {reason}; generate one with "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`, "
            "or pass --allow-weak-token"
        )
