"""Where the shared token comes from. Standard library only (the agent uses it).

Sources, first found wins: an explicit token file, the NETJOBS_TOKEN
environment variable, then `token` in the user's NetJobs config directory.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "NETJOBS_TOKEN"
MIN_TOKEN_CHARS = 16


class TokenError(Exception):
    """No usable token, with what to do about it."""


@dataclass(frozen=True)
class Token:
    secret: bytes
    source: str  # for messages: never the secret itself

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"Token(source={self.source!r})"


def config_dir() -> Path:
    """The per-user NetJobs config directory (same rules as platformdirs)."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "netjobs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "netjobs"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "netjobs"


def default_token_path() -> Path:
    return config_dir() / "token"


def _read(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise TokenError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    if len(secret) < MIN_TOKEN_CHARS:
        raise TokenError(f"token file {path} holds fewer than {MIN_TOKEN_CHARS} characters")
    return secret


def load_token(
    token_file: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None
) -> Token:
    env = os.environ if env is None else env
    if token_file:
        path = Path(token_file).expanduser()
        return Token(_read(path), f"token file {path}")
    value = env.get(ENV_VAR, "").strip()
    if value:
        if len(value) < MIN_TOKEN_CHARS:
            raise TokenError(f"{ENV_VAR} holds fewer than {MIN_TOKEN_CHARS} characters")
        return Token(value.encode(), f"environment variable {ENV_VAR}")
    path = default_token_path()
    if path.exists():
        return Token(_read(path), f"token file {path}")
    raise TokenError(
        f"no token: pass --token-file, set {ENV_VAR}, or copy the agent's token file to {path}"
    )


def generate_token_file(path: Path) -> Token:
    """Write a fresh random token readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return Token(secret.encode(), f"token file {path}")
