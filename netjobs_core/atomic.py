"""Files the controller writes: all or nothing, and its owner's only.

A file written whole (results.json, the `-l` logs, `--json`) goes to a temporary file
in the same folder, is flushed to the disk, then renamed over the old one, and the
folder is flushed too: whatever happens meanwhile (a full disk, kill -9, a power cut),
the path holds the old document or the new one, never a part. On failure the old file
stays as it was and the OSError goes to the caller, who reports it.

A file that comes in parts and is kept only whole (a collected file) is written under
`part_name` (hidden, `.NAME.part`) in its folder and `publish`ed, flushed, under its own
name once complete and checked: a kill meanwhile leaves only the `.part`.

Everything the controller creates is private: folders 0700, files 0600 (as the token
file is), whatever the umask. Streams written as they come (outputs, collected files)
are opened with `open_private`; their folders are made with `make_private_dirs`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "keep_private",
    "make_private_dirs",
    "open_private",
    "part_name",
    "publish",
    "write_atomic",
    "write_private",
    "written_in_place",
]

FILE_MODE = 0o600
DIR_MODE = 0o700
_TEMP_NAME_MAX = 200  # of the name a temporary file borrows from its target (NAME_MAX 255)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = FILE_MODE) -> None:
    """Replace the file at `path` by `data` in one step (a symlink: its target).

    The new file has `mode`. Raises OSError (ENOSPC, EACCES...) with the old file
    intact and no temporary file left behind. What is there and is no regular file
    (`--json /dev/stdout`, a pipe) is written to as it is, never replaced."""
    try:
        there = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(there.st_mode):
            with open(path, "wb") as stream:
                stream.write(data)
            return
    target = Path(os.path.realpath(path))
    folder = target.parent
    fd, temp = tempfile.mkstemp(
        prefix=f".{target.name[:_TEMP_NAME_MAX]}.", suffix=".tmp", dir=folder
    )
    try:
        with os.fdopen(fd, "wb") as file:
            if mode != FILE_MODE and hasattr(os, "fchmod"):  # mkstemp made it 0600
                os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable. Windows cannot open a folder; some file systems
    cannot flush one: the file is in place either way."""
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def part_name(path: str | os.PathLike[str]) -> Path:
    """Where the file for PATH is written until it is whole: `.NAME.part` beside it,
    hidden, a name no safe name (run_folder.safe_name: no leading dot) can be."""
    path = Path(path)
    return path.with_name(f".{path.name[:_TEMP_NAME_MAX]}.part")


def publish(temp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Give the flushed, closed file TEMP its name PATH in one step, never over a file
    that is there (FileExistsError, TEMP left as it is), and flush the folder.

    A hard link then an unlink: no replacing rename on POSIX. Where the file system
    has no hard links, a rename that Windows refuses over a file, and elsewhere a
    rename after a look (the folder is its owner's only)."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if sys.platform != "win32" and os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.rename(temp, path)
    else:
        os.unlink(temp)
    _fsync_folder(Path(path).parent)


# What os.link raises where the file system has no hard links (FAT, some network ones).
_NO_LINKS = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EMLINK", "EXDEV")
    if hasattr(errno, name)
)


def make_private_dirs(path: str | os.PathLike[str]) -> None:
    """`mkdir -p` whose every new folder is 0700; folders that exist are left as they are.

    The folder is made first and its parents only when it has none: a new host's
    folder in a run costs one system call, not two stats and a mkdir."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileNotFoundError:
        parent = Path(path).parent
        if parent == Path(path):
            raise
        make_private_dirs(parent)
        _mkdir_unless_there(path)
    except OSError:  # EEXIST; or a folder that is there where we may not write (a root)
        if not os.path.isdir(path):
            raise


def _mkdir_unless_there(path: str | os.PathLike[str]) -> None:
    try:
        os.mkdir(path, DIR_MODE)
    except OSError:
        if not os.path.isdir(path):
            raise


def keep_private(path: str | os.PathLike[str]) -> None:
    """Make the controller's own existing folder or file owner-only (0700 / 0600) if it
    is not yet (made by an older NetJobs, or under a lax umask). Only its owner can."""
    info = os.stat(path)
    if info.st_mode & 0o077 and (not hasattr(os, "getuid") or info.st_uid == os.getuid()):
        os.chmod(path, DIR_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE)


def open_private(
    path: str | os.PathLike[str], buffering: int = -1, *, exclusive: bool = False
) -> BinaryIO:
    """`open(path, "wb")`, the file created (or truncated and made) 0600; `exclusive`:
    created, never one that is there (FileExistsError), so no other writer shares it."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
    flags |= os.O_EXCL if exclusive else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        if hasattr(os, "fchmod"):  # a file that was there keeps its mode through O_TRUNC
            os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "wb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: str | os.PathLike[str], data: bytes | bytearray) -> None:
    """`open_private(path).write(data)` in plain system calls (no buffered file object,
    its stat, isatty and seeks): one small output's file, written whole at its end."""
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), FILE_MODE
    )
    try:
        if hasattr(os, "fchmod"):  # a file that was there keeps its mode through O_TRUNC
            os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def written_in_place(file: BinaryIO, path: str | os.PathLike[str], size: int) -> str:
    """Nothing ("") when `path` is still the file FILE wrote (no other file was put there
    meanwhile) and holds the SIZE bytes written to it; else what is wrong. FILE is flushed first
    (OSError: the disk refused its last bytes). Two stats: what FILE was summed over is
    what the path holds, without reading it back."""
    file.flush()
    mine = os.fstat(file.fileno())
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return f"{path} was removed while it was written"
    if (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
        return f"{path} was replaced by another file while it was written"
    if mine.st_size != size:
        return f"{path} holds {mine.st_size} bytes, not the {size} written to it"
    return ""
