"""Forget an environment variable for good: the token in NETJOBS_TOKEN.

`os.environ.pop` is not enough. It drops Python's copy and, through unsetenv, the C
library's pointer to the string; but the string itself stays where the kernel put it,
in the environment block at the top of the process's stack, and that block is what
`/proc/PID/environ` shows (to the same user, and to every command the agent runs: a
command could read the token from its parent). On macOS `ps -E` reads the same area.

So the value is overwritten in place, with NUL bytes, before the variable is unset:
every string of the C library's `environ` array that starts with `NAME=` (they point
into that block at start-up), and on Linux, where /proc/self/stat says where the block
is, every `NAME=` entry of the whole block. On Linux the result is then read back from
/proc/self/environ, and the parent's environment too: the launcher of a one-file
executable keeps the variable, and `forget` says so. Standard library only (ctypes);
where ctypes or the C symbols are missing the variable is only unset, and `forget`
says so.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["forget"]


def forget(name: str) -> str | None:
    """Remove NAME from this process's environment, its value overwritten wherever the
    system shows the process's environment. None when done (or NAME was not set), else
    what is left, for a warning: the variable is unset in any case."""
    value = os.environ.get(name)
    if value is None:
        return None  # never set (Python's copy is made from the block at start-up)
    problem = None
    if os.name == "posix":
        try:
            _overwrite(name.encode())
        except (OSError, ValueError, AttributeError, ImportError) as exc:
            problem = f"could not overwrite it in place ({exc})"
    os.environ.pop(name, None)  # Python's copy, and unsetenv: the C library's pointer
    if sys.platform.startswith("linux") and problem is None:
        with contextlib.suppress(OSError):
            with open("/proc/self/environ", "rb") as handle:
                left = handle.read()
            prefix = name.encode() + b"="
            entries = left.split(b"\0")
            if any(e.startswith(prefix) and len(e) > len(prefix) for e in entries) or (
                value and os.fsencode(value) in left
            ):
                problem = "/proc/self/environ still shows it"
    if problem is not None:
        return f"{name} may still be readable in this process's environment: {problem}"
    if value and sys.platform.startswith("linux"):
        # The launcher of a one-file executable (PyInstaller's bootloader) is a parent
        # process that keeps the environment it was given: its commands could read it there.
        with contextlib.suppress(OSError):
            with open(f"/proc/{os.getppid()}/environ", "rb") as handle:
                if os.fsencode(value) in handle.read():
                    return f"{name} is still readable in the environment of its parent process"
    return None


def _overwrite(prefix_name: bytes) -> None:
    import ctypes

    prefix = prefix_name + b"="
    # The C library's array: at start-up its strings are the kernel's block.
    libc = ctypes.CDLL(None)
    if sys.platform == "darwin":
        get = libc._NSGetEnviron
        get.restype = ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))
        array = get().contents
    else:
        array = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    index = 0
    while array and array[index]:
        address = array[index]
        entry = ctypes.string_at(address)
        if entry.startswith(prefix):
            ctypes.memset(address + len(prefix), 0, len(entry) - len(prefix))
        index += 1
    # Linux: the whole block, as /proc/PID/environ reads it (fields 50 and 51 of stat).
    if sys.platform.startswith("linux"):
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end
        if not 0 < start < end:
            return
        block = ctypes.string_at(start, end - start)
        offset = 0
        for entry in block.split(b"\0"):
            if entry.startswith(prefix) and len(entry) > len(prefix):
                ctypes.memset(start + offset + len(prefix), 0, len(entry) - len(prefix))
            offset += len(entry) + 1
