"""The Python every NetJobs entry point needs, checked before anything newer loads.

An entry point (the agent, the CLI, the GUI) calls require_python() before it
imports the rest, so that an older interpreter prints what is needed instead of
a SyntaxError or ImportError traceback. This file itself must compile on old
Pythons: no annotations, f-strings or anything newer than Python 3.0 (its types
are comments, which mypy reads and no interpreter does).
"""

# ruff: noqa: UP032  (str.format, not f-strings: this must compile anywhere)
import sys

MIN_PYTHON = (3, 11)  # as pyproject.toml's requires-python


def python_too_old(version_info=None):  # type: (tuple[int | str, ...] | None) -> str | None
    """The message for an interpreter (this one by default) older than MIN_PYTHON, else None."""
    if version_info is None:
        version_info = sys.version_info
    if tuple(version_info[:2]) >= MIN_PYTHON:
        return None
    return "needs Python {}.{} or newer; this is Python {}.{}.{} ({})".format(
        MIN_PYTHON[0],
        MIN_PYTHON[1],
        version_info[0],
        version_info[1],
        version_info[2],
        sys.executable or "python",
    )


def require_python(prog):  # type: (str) -> None
    """Exit with status 2 and a one-line message on a too old Python."""
    message = python_too_old()
    if message is not None:
        sys.stderr.write("{}: {}\n".format(prog, message))
        sys.exit(2)
