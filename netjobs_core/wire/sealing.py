"""The keys and proofs of the handshake and the frame seals (see the theory of
operation in netjobs_core/wire/connection.py): token key, host credentials,
proofs, session keys."""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import struct
from typing import Protocol

from netjobs_core.wire.messages import Role

try:
    from _hashlib import hmac_new as _openssl_hmac
except ImportError:  # a Python without OpenSSL's hashes
    _openssl_hmac = None  # type: ignore[assignment]

NONCE_BYTES = 32
SEQ = struct.Struct(">Q")  # a sealed frame's implicit sequence number, as its tag covers it

# The token key: scrypt with 32 MiB of memory, ~100 ms once per process and
# token. The salt is a fixed protocol label: a per-agent salt would have to be
# sent before authentication and buys nothing here, since every proof mixes in
# fresh nonces (no precomputed table of proofs is possible) and the token, not
# a password reused elsewhere, is what the label keeps apart from other uses.
KEY_SALT = b"netjobs protocol 2 token key"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


@functools.lru_cache(maxsize=8)
def token_key(token: bytes) -> bytes:
    """The key every proof and session key comes from: memory-hard, so that a
    captured proof costs an offline guesser one scrypt per guess."""
    return hashlib.scrypt(
        token, salt=KEY_SALT, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 2**20, dklen=32
    )


class Credential(enum.StrEnum):
    """What an agent proved in its handshake: the kind of secret it holds."""

    SHARED = "shared"  # the shared token itself (a copy of the controller's)
    HOST = "host"  # its own credential, derived for its host name (`netjobs token issue`)
    LINK = "link"  # the random secret of one SSH link, from the controller that started it


CREDENTIAL_BYTES = 32
HOST_INFO = b"netjobs host credential v1\x00"


def host_key(host: str) -> str:
    """The form of a host name that credentials are derived for and compared in:
    DNS names are case-insensitive."""
    return host.lower()


def host_credential(controller_key: bytes, host: str) -> bytes:
    """The agent credential of HOST: HKDF-SHA256-Expand (one block) of the controller's
    token key with the host name as its info. Cheap (one HMAC) for the controller, one
    per host; a holder of it learns neither the token key nor another host's
    credential (HMAC is a PRF), and guessing the token from it costs a scrypt a guess."""
    info = HOST_INFO + host_key(host).encode("utf-8") + b"\x01"
    return hmac.digest(controller_key, info, "sha256")


# A link secret: 256 random bits the controller makes for one agent it starts over
# SSH and hands it on the channel (netjobs_core/ssh.py, agent/server.py serve_stdio).
# Nothing to guess, so nothing to stretch: HKDF-SHA256 (extract with this label as
# the salt, one expand block), two HMACs, where a token's scrypt costs ~100 ms and
# 32 MiB at both ends. Only ever for such a secret, never for a human-chosen token.
LINK_SECRET_BYTES = 32
LINK_SALT = b"netjobs protocol 2 link key"
LINK_INFO = b"netjobs link key v1\x01"


def link_key(secret: bytes) -> bytes:
    """The key every proof and session key of an SSH link comes from."""
    if len(secret) != LINK_SECRET_BYTES:
        raise ValueError(f"a link secret is {LINK_SECRET_BYTES} random bytes")
    return hmac.digest(hmac.digest(LINK_SALT, secret, "sha256"), LINK_INFO, "sha256")


def proof(key: bytes, label: bytes, *parts: bytes) -> str:
    """HMAC-SHA256(KEY, LABEL | PARTS) in hex: OpenSSL's one-shot call (a handshake makes
    two at each end; hmac.HMAC's Python object cost 4x as much)."""
    return hmac.digest(key, label + b"".join(parts), "sha256").hex()


class Mac(Protocol):
    """A keyed HMAC-SHA256 in progress (hmac.HMAC, or OpenSSL's own)."""

    def copy(self) -> Mac: ...

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


def _keyed_mac(key: bytes) -> Mac:
    """HMAC-SHA256 keyed with KEY: OpenSSL's object itself where there is one, without
    hmac.HMAC's Python wrapper around it (a sealed frame copies, updates and digests
    one: 1.8 against 1.2 µs a frame)."""
    if _openssl_hmac is None:
        return hmac.new(key, digestmod=hashlib.sha256)
    mac: Mac = _openssl_hmac(key, digestmod="sha256")
    return mac


# Each direction's HKDF info (one expand block), worked out once.
_DIRECTIONS = tuple(
    (sender, b"netjobs frames from the " + sender.value.encode() + b"\x01") for sender in Role
)


def session_keys(key: bytes, transcript: bytes) -> dict[Role, Mac]:
    """HKDF-SHA256 (extract, then one expand block per direction): the MAC each
    sender seals its frames with, by sender."""
    prk = hmac.digest(hashlib.sha256(transcript).digest(), key, "sha256")
    return {sender: _keyed_mac(hmac.digest(prk, info, "sha256")) for sender, info in _DIRECTIONS}


def is_nonce(value: str) -> bool:
    if len(value) != 2 * NONCE_BYTES:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True
