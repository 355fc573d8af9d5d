"""Hosts over SSH: connect as the user's ssh would, start the agent for the run.

One SSH connection per host for the whole run (`SshDialer`), with the user's
~/.ssh/config, ssh-agent, keys and known_hosts, and one agent per host for the
run too: the first `AgentLink` to a host opens a channel running
`netjobs-agent --stdio` there. The agent reads a random secret of this link from
the first line on its stdin (`link <hex>`: never argv or the environment, which
`ps` shows; its keys a cheap HKDF, wire/sealing.py link_key), answers with a
ready line, then speaks the usual protocol on stdin/stdout. The run keeps the
authenticated link between tests (netjobs_core/links.py), so the host's next
test goes on with the same agent: no new process, no new interpreter, no new
handshake. Nothing listens on the host; the agent ends with its channel (EOF at
the end of the run, or a test that ended otherwise: the orphan rules kill what
it started).

How the agent gets there: with a python3 >= 3.11 on the host, the zipapp of
netjobs_core/agent_zipapp.py, cached under ~/.cache/netjobs/ by version and
hash (checked by hash before each start, uploaded only when missing);
otherwise the one-file Linux agent (dist/netjobs-agent) when the controller
has one and the host's system and machine match ours. Probing, checking and
starting are one remote command: a host with the agent cached costs one
channel round trip after the SSH handshake.

Host keys: a key that known_hosts lacks is refused, naming host and
fingerprint, unless `accept_new` (then appended to the user's known_hosts,
as OpenSSH's StrictHostKeyChecking=accept-new); a changed key is always refused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fnmatch
import glob
import os
import platform
import secrets
import shlex
import socket
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netjobs_core import library_search
from netjobs_core.agent_zipapp import Payload, agent_executable, agent_zipapp, default_executable
from netjobs_core.client import AgentError, Refused
from netjobs_core.wire.address import Address
from netjobs_core.wire.sealing import LINK_SECRET_BYTES
from netjobs_core.wire.tokens import ENV_VAR, STDIO_READY, stdio_greeting


@contextlib.contextmanager
def _unimportable(module: str) -> Iterator[None]:
    """MODULE cannot be imported meanwhile (an optional part its importer does
    without); as it was afterwards. Imported already: nothing changes."""
    if module in sys.modules:
        yield
        return
    sys.modules[module] = None  # type: ignore[assignment]  # the import system's "absent"
    try:
        yield
    finally:
        if module in sys.modules and sys.modules[module] is None:
            del sys.modules[module]


# Its search for liboqs: ~20 ms of every start. Its X.509 certificates (PKIX-SSH's;
# OpenSSH has none, so neither has NetJobs) import cryptography.x509: ~15 ms of CPU
# before the first SSH packet; without them asyncssh skips known_hosts lines of
# X.509 subjects and offers no x509v3 algorithm, as OpenSSH's ssh.
# cryptography 51 deprecates DSA, whose key types asyncssh 2.24 names as it is
# imported: a warning on every run for keys nobody here uses (OpenSSH has dropped
# them too), so not shown.
with (
    library_search.remembered(),
    _unimportable("asyncssh.crypto.x509"),
    warnings.catch_warnings(),
):
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh
    from asyncssh.encryption import get_default_encryption_algs

START_TIMEOUT_S = 15.0  # at least this for the agent to start (a cold python on a busy host)
DEPLOY_TIMEOUT_S = 60.0  # at least this for an upload (the one-file agent is ~10 MB)
CLOSE_TIMEOUT_S = 2.0  # for the SSH connections to close at the end of the run
BANNER_LINES = 64  # lines a login shell may print before the agent's ready line
STDERR_KEEP = 4096  # the first bytes of the remote stderr, kept for messages
STDERR_LINES = 4  # of which the first lines go into a message
READ_LIMIT = 256 * 1024  # past this much unread output the channel is paused
# Bulk output: asyncssh handles each SSH packet in Python, so fewer, larger packets
# (sshd sends up to what it reads from the agent's pipe, within our max packet) and
# fewer window adjustments cost the controller less per MiB; the window bounds what
# one host's channel may have in flight.
WINDOW = 4 * 1024 * 1024
MAX_PACKET = 256 * 1024
# asyncssh computes chacha20-poly1305 (OpenSSH's first choice) in several calls per
# packet; AES-GCM is one call, in hardware. Ours first unless ssh_config sets Ciphers.
FAST_CIPHERS = [b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com"]
NEED_PYZ, NEED_EXE, NO_AGENT, OLD_PYTHON = 83, 84, 85, 86  # exit statuses of the start script
CACHE_DIR = '"${XDG_CACHE_HOME:-$HOME/.cache}/netjobs"'
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass
class SshOptions:
    accept_new: bool = False  # add unknown host keys to known_hosts (accept-new)
    config: list[str] | None = None  # ssh_config files; None: ~/.ssh/config
    username: str | None = None  # where neither the target nor ~/.ssh/config names one
    client_keys: list[str] | None = None  # key files; None: ssh-agent, config, ~/.ssh/id_*
    executable: Path | None = field(default_factory=default_executable)


class HostKeyRefused(AgentError):
    pass


# -- the start script ---------------------------------------------------------------
# Runs on the host as `python -I -S -c`: the version checked (a remembered interpreter
# may have become an older one), the zipapp's hash checked, the interpreter
# remembered for the next start, then the agent run in this same process: one
# interpreter start per agent. -S: the agent needs only the standard library. No
# ssl: asyncio imports it when it can (~6 ms of each start); over SSH, no TLS. No
# garbage collection during the imports (~5 ms: what they make lives); the agent's
# stdio_main() turns it on again. No argument parser: stdio_main is `--stdio --quiet`.
_CHECK_AND_RUN = (
    f"import sys\nsys.version_info < (3, 11) and sys.exit({OLD_PYTHON})\n"
    "sys.modules['ssl'] = None\n"
    "import gc, hashlib, os\n"
    "gc.disable()\n"
    "z, h, f = sys.argv[1:4]\n"
    "try:\n"
    "    ok = hashlib.sha256(open(z, 'rb').read()).hexdigest() == h\n"
    "except OSError:\n"
    "    ok = False\n"
    f"ok or sys.exit({NEED_PYZ})\n"
    "if f:\n"
    "    try:\n"
    "        t = '%s.%d' % (f, os.getpid())\n"
    "        with open(t, 'w') as out:\n"
    "            out.write(os.environ.get('PATH', '') + '\\n' + sys.executable + '\\n')\n"
    "        os.replace(t, f)\n"
    "    except OSError:\n"
    "        pass\n"
    "sys.path.insert(0, z)\n"
    "from netjobs_agent.__main__ import stdio_main\n"
    "sys.exit(stdio_main())\n"
)


# Asked of each candidate found on PATH: it runs (a pyenv shim of a version that is
# not active exits 127), it is >= 3.11 (an older one says what it is on stderr, for
# the message when none will do), and where its interpreter really is (started
# directly then, and remembered: the next start needs no probing and no shim).
_USABLE = (
    "import sys; v = sys.version_info; v < (3, 11) and sys.exit("
    "'%s is Python %d.%d, older than 3.11' % (sys.executable, v[0], v[1])); "
    "print(sys.executable)"
)
PYTHONS = ("python3.14", "python3.13", "python3.12", "python3.11", "python3")
REMEMBERED = "python"  # in the host's cache: PATH and the interpreter of the last start


def start_script(pyz: Payload, exe: Payload | None, remembered: bool = True) -> str:
    """POSIX sh: start the cached zipapp with the interpreter the last start found
    (when `remembered`, it is still there and PATH is the same: no probing, one
    interpreter start); else with the first python3 >= 3.11 that runs, newest name
    first, each name in every directory of PATH (a shim manager's directory comes
    first and may hold names that do not run); else the cached one-file agent. An
    exit status says what to upload first, or that the remembered interpreter is
    too old now; what the candidates said on stderr goes to the controller, for a
    failure's message."""
    run = f'-I -S -c "$a" "$d/{pyz.name}" {pyz.sha256}'
    shown = "--stdio --quiet"  # what stdio_main is; in ps, as the one-file agent's
    lines = [f"d={CACHE_DIR}", f'f="$d/{REMEMBERED}"', f"a={shlex.quote(_CHECK_AND_RUN)}"]
    if remembered:
        lines += [
            # remembered with the PATH it was found on: another PATH, another search
            'r=; [ -f "$f" ] && { IFS= read -r p && IFS= read -r r; } < "$f" &&',
            f'  [ "$p" = "$PATH" ] && [ -x "$r" ] && [ ! -d "$r" ] && exec "$r" {run} "" {shown}',
        ]
    else:
        lines.append('rm -f "$f"')
    lines += [
        "set -f; IFS=:",  # PATH split at colons, its entries never globbed
        f"for c in {' '.join(PYTHONS)}; do",
        "  for b in $PATH; do",
        '    p="${b:-.}/$c"',
        '    [ -x "$p" ] && [ ! -d "$p" ] || continue',
        f'    r=$("$p" -I -S -c {shlex.quote(_USABLE)}) || continue',
        '    [ -x "$r" ] || r=$p',
        # -I: the user's PYTHONPATH and site-packages cannot shadow the agent's modules
        f'    exec "$r" {run} "$f" {shown}',
        "  done",
        "done",
        "unset IFS",
    ]
    if exe is not None:
        lines += [
            f'x="$d/{exe.name}"',
            'h=$(sha256sum "$x" 2>/dev/null) && h=${h%% *}',
            f'[ "$h" = {exe.sha256} ] && exec "$x" {shown}',
            f'[ "$(uname -sm)" = {shlex.quote(_local_system())} ] && exit {NEED_EXE}',
        ]
    lines.append(f"exit {NO_AGENT}")
    return "\n".join(lines)


def _local_system() -> str:
    return f"{platform.system()} {platform.machine()}"


def upload_script(payload: Payload) -> str:
    """Write stdin to the cache atomically (a partial upload never has the name); a
    failed one (a full disk) is removed, not left to fill it further run after run."""
    return (
        f'd={CACHE_DIR} && mkdir -p "$d" && chmod 700 "$d" && t="$d/.upload.$$" && '
        f'{{ cat > "$t" && chmod 700 "$t" && mv -f "$t" "$d/{payload.name}" || '
        '{ s=$?; rm -f "$t"; exit $s; }; }'
    )


# -- the channel an AgentLink reads and writes ------------------------------------
class _Stdout:
    """What the agent writes on its stdout, kept as the SSH packets brought it and
    handed out joined: one copy of each byte (none for a read that takes one packet
    whole), where asyncio's StreamReader copied every byte into its buffer and out
    again (200 MiB of output: two more passes over it on the controller's loop).
    Past READ_LIMIT unread the channel is paused (sshd then stops sending)."""

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._channel: asyncssh.SSHClientChannel[bytes] | None = None
        self._paused = False

    def set_channel(self, channel: asyncssh.SSHClientChannel[bytes]) -> None:
        self._channel = channel

    def feed(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._size += len(data)
            self._wake()
            if self._size > READ_LIMIT and not self._paused and self._channel is not None:
                self._channel.pause_reading()
                self._paused = True

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        """Until more comes, the end, or an error (the caller's timeout bounds it)."""
        if self._error is not None:
            raise self._error
        if self._waiter is not None:
            raise RuntimeError("the agent's stdout is read by one reader at a time")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _took(self, count: int) -> None:
        self._size -= count
        if self._paused and self._size <= READ_LIMIT // 2 and self._channel is not None:
            self._paused = False
            self._channel.resume_reading()

    async def read(self, n: int) -> bytes:
        """Up to N bytes (at least one); b"" at the end."""
        while not self._chunks:
            if self._eof:
                return b""
            await self._wait()
        first = self._chunks.popleft()
        if len(first) > n:
            self._chunks.appendleft(first[n:])
            first = first[:n]
        taken, size = [first], len(first)
        while self._chunks and size + len(self._chunks[0]) <= n:
            chunk = self._chunks.popleft()
            taken.append(chunk)
            size += len(chunk)
        self._took(size)
        return first if len(taken) == 1 else b"".join(taken)

    async def readline(self) -> bytes:
        """The next line with its newline; what is left at the end, b"" after it;
        ValueError for a line longer than READ_LIMIT (as StreamReader's)."""
        while True:
            joined = b"".join(self._chunks)
            end = joined.find(b"\n") + 1
            if not end:
                if not self._eof:
                    if len(joined) > READ_LIMIT:
                        raise ValueError(f"a line longer than {READ_LIMIT} bytes")
                    await self._wait()
                    continue
                end = len(joined)
            self._chunks.clear()
            if end < len(joined):
                self._chunks.append(joined[end:])
            self._took(end)
            return joined[:end]


class _AgentSession(asyncssh.SSHClientSession[bytes]):
    def __init__(self) -> None:
        self.stdout = _Stdout()
        self.stderr = bytearray()  # its first STDERR_KEEP bytes: where a failure begins
        self.exit_status: int | None = None
        self.channel: asyncssh.SSHClientChannel[bytes] | None = None

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self.channel = chan
        self.stdout.set_channel(chan)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr += data[: STDERR_KEEP - len(self.stderr)]
        else:
            self.stdout.feed(data)

    def eof_received(self) -> bool:
        self.stdout.feed_eof()
        return False

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.stdout.set_exception(ConnectionResetError(f"SSH connection lost: {exc}"))
        else:
            self.stdout.feed_eof()

    def stderr_head(self) -> str:
        """The first lines the host wrote on stderr, as one line: the first error
        says what went wrong (a pyenv shim's 'command not found'), later ones how."""
        lines = self.stderr.decode("utf-8", "replace").splitlines()
        return " / ".join([line.strip() for line in lines if line.strip()][:STDERR_LINES])


async def _ready_line(stdout: _Stdout) -> bytes:
    """The agent's ready line, past what a login shell may print first; b"" at EOF."""
    first = b""
    for _ in range(BANNER_LINES):
        line = await stdout.readline()
        if not line or line.startswith(STDIO_READY):
            return line
        first = first or line
    shown = first.decode("utf-8", "replace").strip()[:80]
    raise ValueError(
        f"no ready line from the agent in the first {BANNER_LINES} lines on its output, "
        f"which began {shown!r}: the host's shell start-up files (~/.bashrc, ~/.profile) "
        "print that for a command run over SSH too; print only in interactive shells "
        "(case $- in *i*)"
    )


class SshChannel:
    """An agent's stdin/stdout over one SSH channel (client.Channel), for the run."""

    kernel_stamps = False  # a pipe at the far end

    def __init__(
        self,
        chan: asyncssh.SSHClientChannel[bytes],
        session: _AgentSession,
    ) -> None:
        self._chan = chan
        self.session = session

    async def read(self, n: int) -> bytes:
        return await self.session.stdout.read(n)

    def write(self, data: bytes | bytearray) -> None:
        self._chan.write(bytes(data))  # asyncssh wants bytes

    def arrival_ns(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self._chan.is_closing()

    def abort(self) -> None:
        self._chan.abort()

    async def close(self, timeout: float) -> None:
        """An EOF after what is queued: the agent ends (killing what is left) and its
        sshd closes the channel. Not waited for, as a TCP close waits for no agent:
        the run's end (its SSH connections closing) waits for no agent to exit."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self._chan.write_eof()


# -- host keys ------------------------------------------------------------------------
def _as_list(value: object) -> list[object]:
    """An ssh_config setting's list of values; [] when it has none."""
    return list(value) if isinstance(value, list | tuple) else []


def _known_hosts_files(configured: Any) -> list[str]:
    """The known_hosts files ssh_config names (else ~/.ssh/known_hosts), expanded."""
    return [os.path.expanduser(str(name)) for name in _as_list(configured) or [DEFAULT_KNOWN_HOSTS]]


def _existing(files: list[str]) -> list[str]:
    return [f for f in files if os.path.isfile(f)]


def _known_hosts_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _Client(asyncssh.SSHClient):
    """Decides on host keys that known_hosts does not list (asyncssh asks us)."""

    def __init__(self, dialer: SshDialer, files: list[str], shown: str) -> None:
        self._dialer = dialer
        self._files = files
        self._shown = shown
        self.refusal: str | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        existing = _existing(self._files)
        known = asyncssh.match_known_hosts(existing, host, addr, port)[0] if existing else []
        fingerprint = f"{key.get_algorithm()} key {key.get_fingerprint()}"
        if known:
            self.refusal = (
                f"the SSH host key of {self._shown} HAS CHANGED: it now offers {fingerprint}, "
                f"not the key in {', '.join(existing)} (a reinstalled host, or someone in the "
                f"middle); refused. If the change is expected: ssh-keygen -R {host}"
            )
            return False
        if not self._dialer.options.accept_new:
            self.refusal = (
                f"the SSH host key of {self._shown} is not known: {fingerprint}; refused. "
                "Check it, then run again with --ssh-accept-new to add it to "
                f"{self._files[0]} (or connect once with ssh)"
            )
            return False
        path = Path(self._files[0])
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = f"{_known_hosts_pattern(host, port)} {key.export_public_key().decode().strip()}\n"
        with path.open("a", encoding="utf-8") as out:
            out.write(line)
        self._dialer.accepted.append(f"{self._shown}: {fingerprint} added to {path}")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._dialer.forget(self)


# -- client keys ----------------------------------------------------------------------
DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")  # what ssh tries


def _sent_env(patterns: object) -> list[str]:
    """What ssh_config's SendEnv sends, by name, less the token: an agent over SSH needs
    none, and the token leaves this machine for no host (docs/security.md)."""
    wanted = [str(pattern) for pattern in _as_list(patterns)]
    return [
        glob.escape(name)  # a name, not a pattern, to asyncssh's SendEnv matching
        for name in os.environ
        if name != ENV_VAR and any(fnmatch.fnmatchcase(name, p) for p in wanted)
    ]


def _needs_passphrase(path: str) -> bool:
    try:
        asyncssh.read_private_key(path)
    except asyncssh.KeyImportError as exc:
        return str(exc).startswith("Passphrase")
    except OSError:
        pass
    return False


def _key_advice(settings: asyncssh.SSHClientConnectionOptions, keys: list[str] | None) -> str:
    """What to do when the host refused our keys. NetJobs asks for no passphrase (it
    runs unattended, as ssh -o BatchMode=yes), so a key file that needs one is used
    only through an ssh-agent: say so when one was skipped, or when there was no key."""
    configured = keys if keys is not None else settings.config.get("IdentityFile", ())
    written = [str(name) for name in _as_list(configured) or DEFAULT_KEYS]
    files = [os.path.expanduser(name) for name in written]
    locked = [f for f in files if os.path.isfile(f) and _needs_passphrase(f)]
    agent = bool(settings.agent_path)
    if locked and not agent:
        return (
            f"{', '.join(locked)} needs its passphrase, which NetJobs never asks for, and no "
            f'ssh-agent runs: eval "$(ssh-agent)"; ssh-add {locked[0]}; then run again'
        )
    if locked:
        return f"{', '.join(locked)} needs its passphrase: is it in your ssh-agent (ssh-add)?"
    if not agent and not any(os.path.isfile(f) for f in files):
        return f"no key to offer: no ssh-agent, and no key file ({', '.join(written)})"
    return "is the key in the host's authorized_keys, or in your ssh-agent?"


# -- the dialer -----------------------------------------------------------------------
@dataclass
class _Host:
    conn: asyncssh.SSHClientConnection
    client: _Client
    send_env: list[str]  # the environment variables each session sends (_sent_env)
    has_pyz: bool = False  # uploaded or found during this run
    has_exe: bool = False


class SshDialer:
    """The SSH connections of one run (client.Dialer); `async with` closes them."""

    def __init__(self, options: SshOptions | None = None) -> None:
        self.options = options or SshOptions()
        self.accepted: list[str] = []  # host keys added with accept_new, for the user
        self._hosts: dict[tuple[str, int, str], asyncio.Task[_Host]] = {}
        self._payloads: asyncio.Future[tuple[Payload, Payload | None]] | None = None

    def _agent_payloads(self) -> asyncio.Future[tuple[Payload, Payload | None]]:
        """The zipapp and the one-file agent, made once, in a thread (compiling and
        hashing them would stall every host's connection on this loop), from the
        first open on, while the SSH handshakes go on."""
        if self._payloads is None:
            executable = self.options.executable

            def build() -> tuple[Payload, Payload | None]:
                return agent_zipapp(), agent_executable(executable) if executable else None

            self._payloads = asyncio.ensure_future(asyncio.to_thread(build))
        return self._payloads

    async def __aenter__(self) -> SshDialer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._payloads is not None and self._payloads.done():
            self._payloads.exception()  # retrieved: each host that needed it said so
        hosts, self._hosts = self._hosts, {}
        pending = [task for task in hosts.values() if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        conns = [
            task.result().conn
            for task in hosts.values()
            if not task.cancelled() and task.exception() is None
        ]  # closing one ends its channels, and with them the agents between tests
        for conn in conns:
            conn.close()
        closing = [asyncio.create_task(conn.wait_closed()) for conn in conns]
        if closing:
            _, late = await asyncio.wait(closing, timeout=CLOSE_TIMEOUT_S)
            for waiter in late:
                waiter.cancel()

    def _drop(self, host: _Host) -> None:
        self.forget(host.client)
        host.conn.abort()

    def forget(self, client: _Client) -> None:
        for key, task in list(self._hosts.items()):
            if task.done() and not task.cancelled() and task.exception() is None:
                if task.result().client is client:
                    del self._hosts[key]

    def connect_ahead(self, addresses: Sequence[Address], timeout: float) -> None:
        """Begin the SSH connections to ADDRESSES (those over SSH) and the agent's
        payloads now, while the caller does what needs no host (its first results
        file, the history); `open` takes them up, and says what failed."""
        for address in addresses:
            if address.over_ssh:
                self._connection(address, timeout)
        self._agent_payloads()

    def _connection(self, address: Address, timeout: float) -> asyncio.Task[_Host]:
        """The host's connection: being made, made, or begun now (again after a failure)."""
        key = (address.host, address.port, address.user)
        task = self._hosts.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._hosts[key] = asyncio.create_task(
                self._connect(address, timeout), name=f"ssh {address}"
            )
        return task

    async def open(self, address: Address, timeout: float) -> tuple[SshChannel, bytes]:
        """A channel to a stdio agent started now on the host, and the link secret it
        was given."""
        payloads = self._agent_payloads()
        key = (address.host, address.port, address.user)
        task = self._connection(address, timeout)
        try:
            host = await asyncio.shield(task)
        except AgentError:
            if self._hosts.get(key) is task:
                del self._hosts[key]  # the next test tries again
            raise
        try:
            pyz, exe = await asyncio.shield(payloads)
        except OSError as exc:
            raise AgentError(f"cannot read the one-file agent to send: {exc}") from None
        return await self._start_agent(host, address, timeout, pyz, exe)

    async def _connect(self, address: Address, timeout: float) -> _Host:
        options = self.options
        try:
            settings = await asyncssh.SSHClientConnectionOptions.construct(
                host=address.host, config=options.config or ()
            )
        except (ValueError, OSError, asyncssh.Error) as exc:
            raise AgentError(f"SSH settings for {address}: {exc}") from None
        files = _known_hosts_files(settings.known_hosts)
        ciphers = list(settings.encryption_algs)
        existing = _existing(files)
        client = _Client(self, files, str(address))
        kwargs: dict[str, Any] = {
            "port": address.port or (),
            "config": options.config or (),
            "known_hosts": existing or b"",  # never None: that would disable the check
            "client_factory": lambda: client,
        }
        if ciphers == get_default_encryption_algs():  # not the user's choice: ours
            preferred = FAST_CIPHERS + [c for c in ciphers if c not in FAST_CIPHERS]
            kwargs["encryption_algs"] = [c.decode("ascii") for c in preferred]
        username = address.user or options.username
        if username:
            kwargs["username"] = username
        if options.client_keys is not None:
            # A key file that needs its passphrase is skipped, as ~/.ssh's are: an
            # ssh-agent may hold it; if none does, the refusal says so (_key_advice).
            kwargs["client_keys"] = options.client_keys
            kwargs["ignore_encrypted"] = True
        try:
            async with asyncio.timeout(timeout):
                conn = await asyncssh.connect(address.host, **kwargs)
        except TimeoutError:
            raise AgentError(
                f"SSH connection to {address} timed out: no answer within {timeout:g} s"
            ) from None
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyRefused(client.refusal or f"SSH host key refused: {exc.reason}") from None
        except asyncssh.PermissionDenied as exc:
            advice = _key_advice(settings, options.client_keys)
            raise AgentError(f"SSH authentication failed: {exc.reason} ({advice})") from None
        except asyncssh.Error as exc:
            raise AgentError(f"SSH connection to {address} failed: {exc.reason}") from None
        except ConnectionRefusedError:
            raise Refused(
                f"SSH connection refused by {address} (no SSH server on that port?)"
            ) from None
        except socket.gaierror:
            raise AgentError(f"cannot resolve the host name {address.host!r}") from None
        except OSError as exc:
            raise AgentError(f"SSH connection to {address} failed: {exc.strerror or exc}") from None
        except ValueError as exc:  # a key or setting asyncssh cannot use
            raise AgentError(f"SSH settings for {address}: {exc}") from None
        return _Host(conn, client, _sent_env(settings.send_env))

    async def _start_agent(
        self, host: _Host, address: Address, timeout: float, pyz: Payload, exe: Payload | None
    ) -> tuple[SshChannel, bytes]:
        remembered = True  # the interpreter of the host's last start, if any
        for _ in range(4):  # start; upload what is missing, start again (twice at most)
            secret = secrets.token_bytes(LINK_SECRET_BYTES)
            script = start_script(pyz, exe, remembered)
            chan, session = await self._run(host, address, script, timeout)
            chan.write(stdio_greeting(secret))
            try:
                async with asyncio.timeout(max(timeout, START_TIMEOUT_S)):
                    line = await _ready_line(session.stdout)
                    if not line:
                        await chan.wait_closed()
            except TimeoutError:
                chan.abort()
                raise AgentError(
                    f"the agent did not start on {address} within "
                    f"{max(timeout, START_TIMEOUT_S):g} s"
                    + (f": {head}" if (head := session.stderr_head()) else "")
                ) from None
            except (OSError, ValueError) as exc:  # ValueError: a line past READ_LIMIT
                chan.abort()
                raise AgentError(f"starting the agent on {address}: {exc}") from None
            if line:
                return SshChannel(chan, session), secret
            status = session.exit_status
            if status == NEED_PYZ and not host.has_pyz:
                await self._upload(host, address, pyz)
                host.has_pyz = True
            elif status == NEED_EXE and exe is not None and not host.has_exe:
                await self._upload(host, address, exe)
                host.has_exe = True
            elif status == NO_AGENT:
                raise AgentError(
                    f"cannot start the agent on {address}: no python3 >= 3.11 there"
                    + (
                        ", and the one-file agent is for another system"
                        if exe is not None
                        else ", and no one-file agent here to send (build_scripts/build.py "
                        "--only agent makes dist/netjobs-agent)"
                    )
                    + (f" (the host said: {head})" if (head := session.stderr_head()) else "")
                )
            elif remembered:
                # The remembered interpreter is too old now (OLD_PYTHON), or fails in
                # another way: forgotten, and PATH probed as on a first start.
                remembered = False
            else:
                head = session.stderr_head()
                raise AgentError(
                    f"the agent failed to start on {address} (exit status {status})"
                    + (f": {head}" if head else "")
                )
        raise AgentError(f"the agent failed to start on {address} after uploading it")

    async def _run(
        self, host: _Host, address: Address, command: str, timeout: float
    ) -> tuple[asyncssh.SSHClientChannel[bytes], _AgentSession]:
        try:
            async with asyncio.timeout(timeout):
                chan, session = await host.conn.create_session(
                    _AgentSession,
                    command,
                    encoding=None,
                    window=WINDOW,
                    max_pktsize=MAX_PACKET,
                    send_env=host.send_env,
                )
        except TimeoutError:
            self._drop(host)  # a dead connection (a cut): the next test connects anew
            raise AgentError(f"SSH: no session opened on {address} within {timeout:g} s") from None
        except (asyncssh.Error, OSError) as exc:
            self._drop(host)
            raise AgentError(f"SSH: cannot open a session on {address}: {exc}") from None
        assert isinstance(session, _AgentSession)
        return chan, session

    async def _upload(self, host: _Host, address: Address, payload: Payload) -> None:
        try:
            async with asyncio.timeout(DEPLOY_TIMEOUT_S):
                done = await host.conn.run(
                    upload_script(payload),
                    input=payload.data,
                    encoding=None,
                    check=False,
                    send_env=host.send_env,
                )
        except TimeoutError:
            raise AgentError(
                f"uploading the agent to {address} took longer than {DEPLOY_TIMEOUT_S:g} s"
            ) from None
        except (asyncssh.Error, OSError) as exc:
            raise AgentError(f"uploading the agent to {address}: {exc}") from None
        if done.exit_status != 0:
            error = done.stderr if isinstance(done.stderr, str) else ""
            if isinstance(done.stderr, bytes):
                error = done.stderr.decode("utf-8", "replace").strip()
            raise AgentError(
                f"cannot upload the agent to {address}'s ~/.cache/netjobs: "
                f"{error or f'exit status {done.exit_status}'}"
            )
