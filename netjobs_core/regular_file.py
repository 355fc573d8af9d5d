"""Reading a file the user names (a config, a groups file): a regular file of
bounded size, else a `FileLineError` at its line 1. Standard library only."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from netjobs_core.errors import FileLineError


def read_regular_file(
    name: str,
    most: int,
    error: type[FileLineError],
    too_big: Callable[[int], str],
    what: str = "the file",
) -> bytes:
    """The bytes of the regular file `name`, at most `most` of them; else `error`
    (`too_big(size)` words a file that is larger).

    O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused next).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags)
    except OSError as err:
        raise error(name, 1, f"cannot read {what}: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "it is a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise error(name, 1, f"cannot read {what}: {kind}")
        if info.st_size > most:
            raise error(name, 1, too_big(info.st_size))
        with open(fd, "rb", closefd=False) as file:
            data = file.read(most + 1)
    except OSError as err:
        raise error(name, 1, f"cannot read {what}: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if len(data) > most:  # it grew after the fstat
        raise error(name, 1, too_big(len(data)))
    return data
