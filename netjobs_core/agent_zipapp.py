"""The agent as one self-contained zipapp, for hosts reached over SSH.

Built in memory from `agent/` (as the package `netjobs_agent`), the stdlib-only
`netjobs_core/wire/` and `netjobs_core/__init__.py` (the version), with fixed
timestamps and a sorted file list: the same sources give the same bytes, so the
copy cached on a host (`agent-<version>-<sha12>.pyz`) is found again by name and
checked by hash.

Beside each module, its bytecode for the controller's Python version (an unchecked
hash-based .pyc, PEP 552: the archive's own hash vouches for it). zipimport never
writes bytecode, so without it every start compiles every module again: a third
of an agent's start-up. A host with another version passes over a .pyc whose magic
number is not its own and compiles that module's source, as before. The bytecode
is compiled in a fresh interpreter (`-I -S`, a fixed hash seed): marshal's output
depends on the state of the process that writes it (which strings other modules
share), and the bytes must be the same at every run. A frozen controller has no
interpreter to start: its zipapp carries sources only.

Compiling is a Python start and ~0.1 s of CPU, on every cold run's path to the
first agent start: the archive is kept in the controller's cache directory, named
by a hash of everything it is made of (the sources, this Python), and made again
only when one of them changes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import marshal
import subprocess
import sys
import zipapp
import zipfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from netjobs_core import __version__
from netjobs_core.atomic import make_private_dirs, write_atomic

ROOT = Path(__file__).resolve().parent.parent
INTERPRETER = "/usr/bin/env python3"
_MAIN = "import sys\n\nfrom netjobs_agent.__main__ import main\n\nsys.exit(main(sys.argv[1:]))\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_FORMAT = "stored"  # how _build makes it, in the cache key: another way, another archive


@dataclass(frozen=True)
class Payload:
    """A file to put on a host: its bytes, their SHA-256 and its cache name there."""

    data: bytes
    sha256: str
    name: str


def _sources() -> list[tuple[str, Path]]:
    """(name in the archive, file) for every module the agent needs."""
    files = [(f"netjobs_agent/{p.name}", p) for p in (ROOT / "agent").glob("*.py")]
    files += [(f"netjobs_core/wire/{p.name}", p) for p in (ROOT / "netjobs_core/wire").glob("*.py")]
    files.append(("netjobs_core/__init__.py", ROOT / "netjobs_core" / "__init__.py"))
    return sorted(files)


def payload(data: bytes, suffix: str) -> Payload:
    digest = hashlib.sha256(data).hexdigest()
    return Payload(data, digest, f"agent-{__version__}-{digest[:12]}{suffix}")


# Reads [(name, source)] (marshal) on stdin, writes {name: .pyc bytes}: magic, flags
# (hash-based, unchecked), the source's hash, the marshalled code.
_COMPILE = (
    "import importlib.util as u, marshal, sys\n"
    "flags = (1).to_bytes(4, 'little')\n"
    "sys.stdout.buffer.write(marshal.dumps({n: u.MAGIC_NUMBER + flags + u.source_hash(s)"
    " + marshal.dumps(compile(s, n, 'exec', dont_inherit=True))"
    " for n, s in marshal.loads(sys.stdin.buffer.read())}))\n"
)
COMPILE_TIMEOUT_S = 60.0


def _bytecode(files: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """The .pyc of each file for this Python, by name; {} where none can be made."""
    if getattr(sys, "frozen", False):
        return {}
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _COMPILE],
            input=marshal.dumps(files),
            capture_output=True,
            env={"PYTHONHASHSEED": "0"},
            timeout=COMPILE_TIMEOUT_S,
            check=True,
        )
        compiled = marshal.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError, EOFError, TypeError):
        return {}  # sources only: each start compiles them, as it always could
    return compiled if isinstance(compiled, dict) else {}


def _build(files: list[tuple[str, bytes]]) -> bytes:
    # Stored, not deflated: zipimport inflates every module at every agent start
    # (~3-4 ms of a start's ~90 ms of CPU, 8 starts sharing a small host's CPUs in a
    # cold run); the archive is sent once per host and version (690 KB, not 290).
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_STORED) as archive:
        compiled = _bytecode(files)
        members = files + [(name + "c", compiled[name]) for name, _ in files if name in compiled]
        for name, data in sorted(members):
            info = zipfile.ZipInfo(name, _EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    plain.seek(0)
    out = io.BytesIO()
    zipapp.create_archive(plain, out, interpreter=INTERPRETER)  # the shebang line
    return out.getvalue()


def _inputs_hash(files: list[tuple[str, bytes]]) -> str:
    """What the archive is made of: the files, the Python that compiles them, the format."""
    digest = hashlib.sha256()
    python = (sys.version, sys.executable, sys.implementation.cache_tag, INTERPRETER, _FORMAT)
    for part in (*python, str(getattr(sys, "frozen", False))):
        digest.update(part.encode() + b"\0")
    for name, data in files:
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def cache_dir() -> Path:
    return platformdirs.user_cache_path("netjobs", appauthor=False)


CACHE_PREFIX = "zipapp-"


def _keep(folder: Path, name: str, data: bytes) -> None:
    """Written whole or not at all; older archives removed (one is enough)."""
    try:
        make_private_dirs(folder)
        write_atomic(folder / name, data)
    except OSError:
        return  # a read-only cache: the next run builds it again
    for old in folder.glob(f"{CACHE_PREFIX}*.pyz"):
        if old.name != name:
            with contextlib.suppress(OSError):
                old.unlink()


@functools.cache
def agent_zipapp() -> Payload:
    files = [("__main__.py", _MAIN.encode())]
    files += [(name, path.read_bytes()) for name, path in _sources()]
    folder = cache_dir()
    name = f"{CACHE_PREFIX}{_inputs_hash(files)[:32]}.pyz"
    try:
        data = (folder / name).read_bytes()
    except OSError:
        data = _build(files)
        _keep(folder, name, data)
    return payload(data, ".pyz")


@functools.cache
def agent_executable(path: Path) -> Payload:
    """The one-file agent built by build_scripts/ (dist/netjobs-agent)."""
    return payload(path.read_bytes(), "")


def default_executable() -> Path | None:
    """The one-file agent beside a one-file controller, else dist/netjobs-agent of
    this checkout, when there is one."""
    candidates = [ROOT / "dist" / "netjobs-agent"]
    if getattr(sys, "frozen", False):
        candidates.insert(0, Path(sys.executable).resolve().parent / "netjobs-agent")
    return next((path for path in candidates if path.is_file()), None)
