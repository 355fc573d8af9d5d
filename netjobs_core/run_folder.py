"""The one place a run's files go: its results folder.

Every run gets an id and a folder. Inside it:

    results.json                      the run's JSON document (written as tests end)
    <test>/<host>/cmd<k>.stdout       command k's bytes, exactly as written (spooled)
    <test>/<host>/cmd<k>.stderr
    <test>/<host>/<file name>         files collected from the host (-collect)

`<test>` is the test label, with `.<repetition>` appended when a test is repeated;
`<host>` is the target as the config writes it. Both are made safe as file names
here and nowhere else. Paths recorded in the JSON are relative to the JSON file.

The default folder is under the user's data directory (platformdirs), so the run
history can find it again; `--results DIR` puts it elsewhere.

All of it is its owner's only: the data directory, its `runs/` and every run folder
are 0700 (folders NetJobs makes on the way too), the files in them 0600
(netjobs_core/atomic.py).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from netjobs_core.atomic import DIR_MODE, keep_private, make_private_dirs
from netjobs_core.wire.address import Address

__all__ = ["RunFolder", "data_dir", "new_run_id", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")


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
    return name[:120]


@dataclass(frozen=True, slots=True)
class RunFolder:
    run_id: str
    path: Path

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
        name = safe_name(label) + (f".{repetition}" if repetition is not None else "")
        return self.path / name

    def host_dir(self, label: str, address: Address, repetition: int | None = None) -> Path:
        """The folder of one host's files in one test (created on demand by the writer)."""
        return self.test_dir(label, repetition) / safe_name(address.short)
