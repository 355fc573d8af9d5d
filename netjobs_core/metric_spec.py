"""A `-metric: NAME = REGEX` of the config, and how a matched number is read.

Standard library only (the config parser uses it). A metric's value is the last
match's one capture group, read as a number with an optional SI or IEC suffix and
an optional unit word after it, which is ignored: `1.5GiB/s` is 1.5 x 2^30,
`940 Mbits/sec` 940 x 10^6, `12 ms` 12.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["CSV_COLUMNS", "MetricSpec", "parse_metric", "read_number"]

NAME_RE = re.compile(r"[A-Za-z0-9_.]+")
MAX_NAME_CHARS = 64
# The CSV's own columns (results_csv), before one per metric name. A metric of one of
# these names would make a second column of that name: a database refuses the table, a
# CSV reader keeps one of the two. Compared without case, as SQL compares names.
CSV_COLUMNS = (
    "run",
    "test",
    "repetition",
    "test_status",
    "host",
    "command_index",
    "status",
    "exit_code",
    "start_offset_ms",
    "release_late_ms",
    "exec_offset_ms",
    "elapsed_s",
)
_TAKEN = frozenset(column.lower() for column in CSV_COLUMNS)

_MULTIPLIERS = {
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}
# A number; a suffix, when what follows it is not a letter but B or b (bytes, bits):
# `5 Mbits` and `3 GiB` have one, `9 Tasks` and `4 Mops` do not; then a unit word
# without digits.
_NUMBER_RE = re.compile(
    r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"\s*(?:(Ki|Mi|Gi|Ti|[kKMGT])(?![AC-Za-ac-z]))?"
    r"(?:\s*[^\s0-9.+-][^\s0-9]*)?\s*"
)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One `-metric` line: its NAME, its compiled REGEX, and where it is."""

    name: str
    pattern: re.Pattern[str]
    line: int = 0


def read_number(text: str) -> float | None:
    """The number `text` says (`1.5GiB/s`, `480`, `2.1e3 ops`), None when it says none
    or one past a float's range (`1e999`, `1e308 Ti`: no figure to add up)."""
    match = _NUMBER_RE.fullmatch(text)
    if match is None:
        return None
    value = float(match.group(1))
    suffix = match.group(2)
    if suffix:
        value *= _MULTIPLIERS[suffix]
    return value if math.isfinite(value) else None


def parse_metric(value: str, line: int = 0) -> MetricSpec:
    """`NAME = REGEX` as the config writes it; ValueError saying what is wrong.

    The spaces around `=` are not part of either; everything after them is the
    regular expression, `#` included."""
    name, equals, regex = value.partition("=")
    name, regex = name.strip(), regex.strip()
    if not equals or not name:
        raise ValueError("expected 'NAME = REGEX', e.g. '-metric: rate = ([0-9.]+ [KMG]?B/s)'")
    if NAME_RE.fullmatch(name) is None or len(name) > MAX_NAME_CHARS:
        raise ValueError(
            f"bad metric name {name!r}: letters, digits, '_' and '.', "
            f"at most {MAX_NAME_CHARS} characters"
        )
    if name.lower() in _TAKEN:
        raise ValueError(
            f"metric name {name!r} is a column of the CSV already ({', '.join(CSV_COLUMNS)}): "
            "choose another"
        )
    if not regex:
        raise ValueError(f"metric {name!r} has no regular expression after '='")
    try:
        pattern = re.compile(regex)
    except re.error as err:
        raise ValueError(f"metric {name!r}: bad regular expression: {err}") from None
    if pattern.groups != 1:
        raise ValueError(
            f"metric {name!r}: the regular expression must have exactly one capture group "
            f"'(...)', not {pattern.groups} (use '(?:...)' for groups that capture nothing)"
        )
    return MetricSpec(name, pattern, line)
