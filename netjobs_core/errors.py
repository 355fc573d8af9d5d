"""The one shape of an error in a file the user wrote: `path:line: message`."""

from __future__ import annotations


class FileLineError(Exception):
    """A problem at one line of a file: ``str(err) == f"{path}:{line}: {message}"``."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(path, line, message)
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"
