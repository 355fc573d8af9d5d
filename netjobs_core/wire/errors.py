"""What goes wrong on a NetJobs connection: every error of the protocol modules."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the protocol; the connection cannot go on."""


class NotNetJobsPeer(ProtocolError):
    """The peer does not speak NetJobs at all (a web server, an echo service...)."""


class PeerEchoed(NotNetJobsPeer):
    """The peer sent back our own greeting, as an original NetJobs 2.x agent does."""


class VersionMismatch(ProtocolError):
    """The peer speaks another version of the NetJobs protocol."""


class AuthenticationFailed(ProtocolError):
    """The peer does not hold the same token."""


class CredentialRefused(AuthenticationFailed):
    """The agent proved a host credential this controller does not accept for the
    target: another host's, or one the controller's token did not issue."""


class IntegrityError(ProtocolError):
    """A frame failed its tag: altered, dropped, replayed or reordered on the way."""


class FrameTooLarge(ProtocolError):
    """A frame header announced more than the protocol allows."""


class PeerError(ProtocolError):
    """The peer reported an error and will close (busy, auth, bad request...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
