"""The one place a run's files go: its results folder.

Every run gets an id and a folder. Inside it:

    results.json                      the run's JSON document (written as tests end)
    <test>/<host>/cmd<k>.stdout       command k's bytes, exactly as written (spooled)
    <test>/<host>/cmd<k>.stderr
    <test>/<host>/<file name>         files collected from the host (-collect)

`<test>` is the test label, with `.<repetition>` appended when a test is repeated;
`<host>` is the target as the config writes it. Both are made safe as file names
here and nowhere else, and each gets a folder of its own: when two names would be
one (`[fd00::a:1]:9` and `[fd00:a::1]:9` both read `fd00_a_1_9`; two labels that
differ only past their first 120 characters; `Node1` and `node1` on a file system
that ignores case), the later one gets `~` and a short hash of its original text
(`fd00_a_1_9~6e8136fc`; `~` is never in a name made safe, so no other name is
that). The RunFolder remembers the name it gave each test and host, so a host keeps
its name in every test of the run. Paths recorded in the JSON are relative to the
JSON file: readers follow them, never the naming.

The default folder is under the user's data directory (platformdirs), so the run
history can find it again; `--results DIR` puts it elsewhere.

All of it is its owner's only: the data directory, its `runs/` and every run folder
are 0700 (folders NetJobs makes on the way too), the files in them 0600
(netjobs_core/atomic.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from netjobs_core.atomic import DIR_MODE, keep_private, make_private_dirs
from netjobs_core.wire.address import Address

__all__ = ["OUTPUT_NAME", "RunFolder", "data_dir", "new_run_id", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")
# A command's output in its host's folder (`cmd0.stdout`): no collected file takes it.
OUTPUT_NAME = re.compile(r"cmd[0-9]+\.(stdout|stderr)")
NAME_MAX = 120  # characters of a name made safe
_HASH_CHARS = 8  # of the suffix that tells apart two originals made one name


def data_dir() -> Path:
    """The user's NetJobs data directory (run folders, the run history), made 0700
    when it is missing and made 0700 again when it is not (an older NetJobs made it
    0755). Never raises: whoever then uses the folder reports what fails."""
    path = platformdirs.user_data_path("netjobs", appauthor=False)
    try:
        make_private_dirs(path)
        keep_private(path)
    except OSError:
        pass
    return path


def new_run_id(now: float | None = None) -> str:
    """`20261201-224719-3f2a`: sortable by time, unique enough to name a folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


def safe_name(text: str) -> str:
    """`text` as one path component: no separators, no leading dot, never empty."""
    name = _UNSAFE.sub("_", text).strip("_")
    if not name or name.startswith("."):
        name = "_" + name
    return name[:NAME_MAX]


class _Names:
    """The names given in one folder: one per original, the same each time asked."""

    def __init__(self, reserved: tuple[str, ...] = ()) -> None:
        self._given: dict[tuple[str, str], str] = {}
        self._taken = {name.casefold() for name in reserved}  # as a case-blind disk sees them

    def name(self, original: str, ending: str = "") -> str:
        """ORIGINAL made safe, then ENDING: its own name, or, when taken, one with `~`
        and a hash of ORIGINAL and ENDING (a counter after it in the unlikely event
        that is taken too)."""
        key = (original, ending)
        given = self._given.get(key)
        if given is None:
            given = safe_name(original)[: NAME_MAX - len(ending)] + ending
            if given.casefold() in self._taken:
                digest = hashlib.sha256(f"{original}\0{ending}".encode("utf-8", "surrogatepass"))
                suffix = "~" + digest.hexdigest()[:_HASH_CHARS]
                stem = safe_name(original)[: NAME_MAX - len(suffix) - len(ending) - 4]
                given, serial = stem + suffix + ending, 1
                while given.casefold() in self._taken:
                    serial += 1
                    given = f"{stem}{suffix}{serial}{ending}"
            self._given[key] = given
            self._taken.add(given.casefold())
        return given


@dataclass(frozen=True, slots=True)
class RunFolder:
    run_id: str
    path: Path
    # The names given to tests (beside results.json) and to hosts (one set for the
    # run: a host's folder has one name in every test).
    _tests: _Names = field(
        default_factory=lambda: _Names(("results.json",)), compare=False, repr=False
    )
    _hosts: _Names = field(default_factory=_Names, compare=False, repr=False)

    @classmethod
    def create(
        cls, parent: str | os.PathLike[str] | None = None, run_id: str | None = None
    ) -> RunFolder:
        """A new folder `<parent>/<run id>` (parent: the data directory's `runs/`).

        With an explicit `parent` that does not exist yet, it is made; a run id that
        collides gets a fresh one rather than mixing two runs' files. The run folder
        and every folder made for it are 0700; an existing `parent` keeps its mode,
        except the data directory's own `runs/`, which is made 0700."""
        if parent is not None:
            base = Path(parent)
            make_private_dirs(base)
        else:
            base = data_dir() / "runs"
            make_private_dirs(base)
            keep_private(base)
        while True:
            rid = run_id or new_run_id()
            path = base / rid
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                run_id = None
                continue
            return cls(rid, path)

    @property
    def json_path(self) -> Path:
        return self.path / "results.json"

    def test_dir(self, label: str, repetition: int | None = None) -> Path:
        """The folder of one test (or one repetition of it): its own, for the run."""
        ending = f".{repetition}" if repetition is not None else ""
        return self.path / self._tests.name(label, ending)

    def host_dir(self, label: str, address: Address, repetition: int | None = None) -> Path:
        """The folder of one host's files in one test (created on demand by the writer):
        its own, and the same in every test of the run."""
        return self.test_dir(label, repetition) / self._hosts.name(address.short)
