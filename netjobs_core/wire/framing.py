"""Frames: the bytes of one message on the wire, and the stream split back into them.

Layout and limits are described in the theory of operation
(netjobs_core/wire/connection.py). This layer knows a header only as a JSON
object with a "type"; what each type carries is netjobs_core/wire/messages.py.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from typing import Any

from netjobs_core.wire.errors import FrameTooLarge, NotNetJobsPeer, ProtocolError, VersionMismatch

PROTOCOL_VERSION = 2
MAGIC = b"NJ"
PREFIX = struct.Struct(">2sBBII")
PREFIX_SIZE = PREFIX.size
FLAG_TAGGED = 0x01  # a TAG_SIZE-byte HMAC follows the body
TAG_SIZE = 32
MAX_HEADER = 256 * 1024
MAX_BODY = 1024 * 1024
MAX_HANDSHAKE_HEADER = 1024  # hello, auth, welcome, error: a few hundred bytes, no body


def _header_codec() -> tuple[Callable[[dict[str, Any]], str], Callable[[str], Any]]:
    """One encoder and one decoder for every frame header, called as directly as the
    json module allows: its C encoder made once (JSONEncoder.encode makes one per
    call: half its time for a ping's header) and its C scanner given text (json.loads
    of bytes first guesses their encoding; a header is ASCII: anything not UTF-8 is
    malformed). Strict: a header is one JSON object, no whitespace around it."""
    plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    encode: Callable[[dict[str, Any]], str]
    if make_encoder is None:  # a Python without the json module's C part
        encode = plain.encode
    else:
        chunks = make_encoder(
            None,
            plain.default,
            json.encoder.encode_basestring_ascii,
            None,
            ":",
            ",",
            False,
            False,
            True,
        )  # no check for cycles: a header is made of JSON's own values

        def encode_in_c(header: dict[str, Any]) -> str:
            return "".join(chunks(header, 0))

        encode = encode_in_c

    def decode(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration as exc:
            raise ValueError(f"no JSON value at character {exc.value}") from None
        if end != len(text):
            raise ValueError(f"extra data at character {end}")
        return value

    return encode, decode


_encode_header, _decode_header = _header_codec()
# `\uD800`-`\uDFFF` in a header's text: the rare case worth looking into.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class Frame:
    """A frame's header, parsed but not checked (the message type apart), and its body.
    Not frozen, as RawFrame: a frozen dataclass's __init__ took 0.7 µs a frame, this
    one 0.2; nothing changes a frame once made. Written out, not a dataclass: the two
    frame classes' compiled methods were ~1.5 % of an agent's start over SSH."""

    __slots__ = ("body", "fields", "type")

    def __init__(self, type: str, fields: dict[str, Any] | None = None, body: bytes = b"") -> None:
        self.type = type
        self.fields = {} if fields is None else fields
        self.body = body

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.type, self.fields, self.body) == (other.type, other.fields, other.body)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    def __repr__(self) -> str:
        return f"Frame(type={self.type!r}, fields={self.fields!r}, body={self.body!r})"


def frame_head(frame: Frame, flags: int = 0) -> bytes:
    """The frame's prefix and header: what goes before the body."""
    header = _encode_header({"type": frame.type, **frame.fields}).encode("ascii")
    if len(header) > MAX_HEADER or len(frame.body) > MAX_BODY:
        raise FrameTooLarge(f"frame too large to send: {frame.type}")
    return PREFIX.pack(MAGIC, PROTOCOL_VERSION, flags, len(header), len(frame.body)) + header


def encode_frame(frame: Frame, flags: int = 0) -> bytes:
    """The frame without its tag (a sealed frame's tag is the Connection's business)."""
    return frame_head(frame, flags) + frame.body


def _printable(data: bytes | bytearray, limit: int = 60) -> str:
    text = data[:limit].decode("latin-1")
    text = "".join(ch if 32 <= ord(ch) < 127 else "." for ch in text)
    return text.strip(".") or data[:16].hex()


class RawFrame:
    """One frame as it came: `head` (prefix and header) then `body` is what its tag
    covers. Kept apart so that a large body is never copied to be checked or parsed.
    Not frozen: a frozen dataclass's __init__ (object.__setattr__ per field) was a
    fifth of taking a small frame apart, and nothing changes one after it is made."""

    __slots__ = ("body", "flags", "head", "tag")

    def __init__(self, flags: int, head: bytes, body: bytes, tag: bytes) -> None:
        self.flags = flags
        self.head = head
        self.body = body
        self.tag = tag

    def __repr__(self) -> str:
        return f"RawFrame(flags={self.flags}, head={self.head!r}, body={len(self.body)} bytes)"

    @property
    def header_len(self) -> int:
        return len(self.head) - PREFIX_SIZE

    @property
    def signed(self) -> bytes:
        """The frame as its tag covers it (the handshake's transcript, tools)."""
        return self.head + self.body

    def parse(self) -> Frame:
        """Parse the header: call only once the tag (if any is due) verified."""
        raw_header = self.head[PREFIX_SIZE:]
        try:
            header = _decode_header(raw_header.decode())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            # RecursionError: deeply nested JSON ("[[[[...") from a hostile peer.
            raise ProtocolError(f"malformed frame header: {exc}") from None
        if not isinstance(header, dict) or not isinstance(header.get("type"), str):
            raise ProtocolError("malformed frame header: no message type")
        if _SURROGATE_ESCAPE.search(raw_header) and _has_lone_surrogate(header):
            # JSON can spell half a UTF-16 pair: no character, and no file or terminal
            # could take it (UTF-8 has no encoding for it).
            raise ProtocolError("malformed frame header: a string holds half a surrogate pair")
        kind = header.pop("type")
        return Frame(kind, header, self.body)


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


_VIEW_BODY = 4096


def _not_a_peer(data: bytearray) -> NotNetJobsPeer:
    return NotNetJobsPeer(f"not a NetJobs agent or controller (it sent {_printable(data)!r})")


class FrameDecoder:
    """Splits a byte stream into frames; raises ProtocolError on bad input.

    The size limits are attributes: a Connection keeps them tiny until the
    peer is authenticated. `feed` parses without checking any tag (for tools
    and tests); a Connection pulls `next_frame` and verifies first.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.max_header = MAX_HEADER
        self.max_body = MAX_BODY

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        self.add(data)
        return [frame.parse() for frame in iter(self.next_frame, None)]

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def next_frame(self) -> RawFrame | None:
        buf = self._buffer
        have = len(buf)
        if have < PREFIX_SIZE:
            if have and buf[:2] != MAGIC[:have]:  # as soon as its first bytes say so
                raise _not_a_peer(buf)
            return None
        magic, version, flags, header_len, body_len = PREFIX.unpack_from(buf)
        if magic != MAGIC:
            raise _not_a_peer(buf)
        if version != PROTOCOL_VERSION:
            raise VersionMismatch(
                f"peer speaks NetJobs protocol {version}, this side speaks {PROTOCOL_VERSION}"
            )
        if flags & ~FLAG_TAGGED:
            raise ProtocolError(f"frame with unknown flags {flags:#04x}")
        if header_len > self.max_header or body_len > self.max_body:
            raise FrameTooLarge(f"frame of {header_len}+{body_len} bytes exceeds the limit")
        end = PREFIX_SIZE + header_len + body_len
        tag_end = end + (TAG_SIZE if flags & FLAG_TAGGED else 0)
        if have < tag_end:
            return None
        head_end = PREFIX_SIZE + header_len
        # A slice of the buffer is a copy, and bytes() of it another: through a view, a
        # large body is copied once; a small frame is taken apart faster without one.
        view = memoryview(buf) if body_len >= _VIEW_BODY else None
        src = buf if view is None else view
        try:
            frame = RawFrame(
                flags, bytes(src[:head_end]), bytes(src[head_end:end]), bytes(src[end:tag_end])
            )
        finally:
            if view is not None:
                view.release()  # or the buffer could not shrink
        del buf[:tag_end]
        return frame
