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
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from netjobs_core.wire.address import Address

__all__ = ["RunFolder", "data_dir", "new_run_id", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")


def data_dir() -> Path:
    """The user's NetJobs data directory (run folders, the run history)."""
    return platformdirs.user_data_path("netjobs", appauthor=False)


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
        collides gets a fresh one rather than mixing two runs' files."""
        base = Path(parent) if parent is not None else data_dir() / "runs"
        base.mkdir(parents=True, exist_ok=True)
        while True:
            rid = run_id or new_run_id()
            path = base / rid
            try:
                path.mkdir()
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
