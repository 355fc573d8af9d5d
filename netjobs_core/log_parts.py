"""Each command's part of a test's `-l` log (logs.py), formed as the command ends.

A command's part is its line (target, command, status; its run time, message and
metric values) with its collected files, warnings and outputs (each at most `show`
bytes) below it. At 1000 hosts that printed a fio document each, the parts are nearly
all of a 14 MB log, and forming them at the test's end was most of that end. So a run
that writes logs forms each command's part as the command's result is final (run.Run,
on the command's CommandChanged, once host_run has read its metrics) and keeps it, in
UTF-8, with what it says; the test's end joins the kept parts.

What a part says (`_said`) is everything it is formed from. A command that changed
after its part was formed (files collected after its end, metrics read at the test's
end, a status set later) says something else, and its part is formed again: the log is
byte for byte the one forming every part at the test's end gives.
"""

from __future__ import annotations

from typing import Any

from netjobs_core import text
from netjobs_core.outputs import Output
from netjobs_core.results import CommandResult
from netjobs_core.vocabulary import command_word

__all__ = ["LogParts", "form_part"]

_Said = tuple[Any, ...]


def _output_said(output: Output) -> tuple[int, str, object, str]:
    """What an output's part of the log depends on: the bytes (size and sha256; a
    finished output's kept head and tail never change), where the whole is, its error."""
    return len(output), output.sha256, output.path, output.error


def _said(target: str, command: CommandResult, show: int) -> _Said:
    """Everything `form_part` reads: two parts that say the same are the same text."""
    return (
        target,
        command.command,
        command.status,
        command.exit_code,
        command.started_at,
        command.duration_s,
        command.message,
        tuple(command.metrics.items()),
        text.file_lines(command),  # collected files and warnings, already words (cheap)
        _output_said(command.stdout),
        _output_said(command.stderr),
        show,
    )


def form_part(target: str, command: CommandResult, show: int) -> bytes:
    """The command's lines in the log, in UTF-8, each ending with a newline: its line,
    then its collected files and warnings, then each output (its head and tail when
    larger than `show`), each line behind '| '. Raises UnicodeEncodeError where the
    text cannot be UTF-8 (a lone surrogate)."""
    return b"".join(piece.encode("utf-8") for piece in _pieces(target, command, show))


def _pieces(target: str, command: CommandResult, show: int) -> tuple[str, str]:
    """form_part's text in two: the command's line with its files and warnings, then
    its outputs. Apart, because one character that is not ASCII (the `µs` of a latency
    in the command's line) takes a whole text off CPython's fast UTF-8 encoding of
    ASCII: 14 KB of fio output, 18 µs instead of 1."""
    # The line names its host: the message need not again (`connection refused by ...`).
    details = [
        f"started {text.timestamp(command.started_at)}",
        *text.command_details(command, target),
    ]
    status = command_word(command.status, command.exit_code)
    lines = [f"{target}\t{command.command}\t{status}\t{', '.join(details)}"]
    lines.extend(f"  {line}" for line in text.file_lines(command))
    outputs = []
    for name, output in (("stdout", command.stdout), ("stderr", command.stderr)):
        outputs.append(f"  {name} ({len(output)} bytes, sha256 {output.sha256})")
        if excerpt := text.output_excerpt(output, show):
            outputs.append("  | " + "\n  | ".join(excerpt))  # each line behind '| '
    return "\n".join(lines) + "\n", "\n".join(outputs) + "\n"


class LogParts:
    """The commands' parts of a test's log, kept as they were formed (by the command,
    which must stay alive meanwhile: a run's result holds its commands)."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[_Said, bytes]] = {}

    def part(self, target: str, command: CommandResult, show: int) -> bytes:
        """The command's part in UTF-8: the kept one if the command still says what it
        said when that was formed, else formed now (and kept). Raises
        UnicodeEncodeError where the text cannot be UTF-8 (a lone surrogate)."""
        said = _said(target, command, show)
        kept = self._kept.get(id(command))
        if kept is not None and kept[0] == said:
            return kept[1]
        data = form_part(target, command, show)
        self._kept[id(command)] = (said, data)
        return data

    def form(self, target: str, command: CommandResult, show: int) -> None:
        """Form the command's part now, ahead of the log: its result is final. A text
        that is not UTF-8 is left to the log's end to fail on, as it would have."""
        try:
            self.part(target, command, show)
        except UnicodeEncodeError:
            self._kept.pop(id(command), None)

    def clear(self) -> None:
        """Forget every part (the test's log is written)."""
        self._kept.clear()
