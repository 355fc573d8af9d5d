#!/usr/bin/env python3
"""The files made from `netjobs`'s argument parsers (netjobs_core.cli.parsers): the bash
and zsh completions (by shtab), the man page and the synopsis in docs/cli.md. They are
committed, and installed with the package (pyproject.toml's data-files);
tests/test_cli_files.py fails when one is not what the parsers make now.

    python3 build_scripts/cli_files.py          # write them again
    python3 build_scripts/cli_files.py --check  # exit 1, naming each one out of date
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARE = REPO / "share"
BASH = SHARE / "bash-completion" / "completions" / "netjobs"
ZSH = SHARE / "zsh" / "site-functions" / "_netjobs"
MAN = SHARE / "man" / "man1" / "netjobs.1"
DOCS = REPO / "docs" / "cli.md"
BEGIN = "<!-- synopsis: made by build_scripts/cli_files.py from the parsers; do not edit -->"
END = "<!-- end of synopsis -->"
WIDTH = "100"  # argparse's help width (it reads COLUMNS)

# The first word: a subcommand or the CONFIG of a run.
_FIRST_WORD = {
    "bash": """
_netjobs_file_or_command() {{
  compgen -W "{names}" -- "$1"
  compgen -f -- "$1"
}}
""",
    "zsh": """
_netjobs_file_or_command() {{
  _alternative 'commands:command:({names})' 'files:config:_files'
}}
""",
}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    os.environ["COLUMNS"] = WIDTH
    sys.path.insert(0, str(REPO))
    from netjobs_core.cli import parsers

    return parsers()


def completion(shell: str) -> str:
    """The `shell` completion of every subcommand and option, by shtab; a FILE or DIR
    option completes paths."""
    import shtab

    found = _parsers()
    run = found.pop("")
    top = argparse.ArgumentParser(prog="netjobs", parents=[run], add_help=False)
    for action in top._actions:
        if action.dest == "config":
            action.complete = {shell: "_netjobs_file_or_command"}  # type: ignore[attr-defined]
    commands = top.add_subparsers(dest="command")
    for name, parser in found.items():
        commands.add_parser(name, parents=[parser], add_help=False, help=_first(parser))
    for parser in (top, *found.values()):
        for action in parser._actions:
            if action.metavar in ("FILE", "CONFIG"):
                action.complete = getattr(action, "complete", shtab.FILE)  # type: ignore[attr-defined]
            elif action.metavar == "DIR":
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    preamble = _FIRST_WORD[shell].format(names=" ".join(found))
    return shtab.complete(top, shell, preamble={shell: preamble}).rstrip() + "\n"


def _first(parser: argparse.ArgumentParser) -> str:
    """A parser's description's first sentence."""
    return re.split(r"(?<=\.)\s|: ", parser.description or "", maxsplit=1)[0].rstrip(".")


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            flags = ", ".join(f"\\fB{_roff(flag)}\\fR" for flag in action.option_strings)
            if action.nargs != 0:
                flags += f" \\fI{_roff(str(action.metavar or action.dest.upper()))}\\fR"
        else:
            flags = f"\\fI{_roff(str(action.metavar or action.dest))}\\fR"
        help_text = action.help or ""
        if action.choices and not action.option_strings:
            help_text = f"one of {', '.join(map(str, action.choices))}. {help_text}"
        lines += [".TP", flags, _roff(help_text % {"default": action.default, "prog": parser.prog})]
    return lines


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().removeprefix("usage: ").split())


def man_page() -> str:
    """netjobs(1): the run's options, each subcommand's, and the exit status."""
    found = _parsers()
    run = found.pop("")
    lines = [
        '.TH NETJOBS 1 "" "NetJobs" "User Commands"',
        ".SH NAME",
        "netjobs \\- start the same command on many machines at one measured instant",
        ".SH SYNOPSIS",
        _roff(_usage(run)),
        *(f".br\n{_roff(_usage(parser))}" for parser in found.values()),
        ".SH DESCRIPTION",
        _roff(run.description or ""),
        ".SH OPTIONS",
        *_options(run),
        ".SH COMMANDS",
    ]
    for parser in found.values():
        lines += [f".SS {_roff(parser.prog)}", _roff(parser.description or ""), *_options(parser)]
    lines += [
        ".SH EXIT STATUS",
        _roff(run.epilog or ""),
        ".SH FILES",
        "The controller's token: \\fI~/.config/netjobs/token\\fR; the run history and the "
        "runs' folders: \\fI~/.local/share/netjobs/\\fR.",
        ".SH SEE ALSO",
        "\\fBnetjobs\\-agent\\fR(1), the documents in \\fIdocs/\\fR of the source "
        "(docs/cli.md, docs/config.md).",
    ]
    return "\n".join(lines) + "\n"


def synopsis() -> str:
    """docs/cli.md's generated part: each parser's --help as `netjobs` prints it."""
    blocks = []
    for name, parser in _parsers().items():
        blocks += [f"### `{parser.prog}`" if name else "### `netjobs` (a run)", ""]
        blocks += ["```", parser.format_help().rstrip(), "```", ""]
    return "\n".join(blocks)


def _with_synopsis(document: str) -> str:
    head, begin, rest = document.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{DOCS}: the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n\n{synopsis()}{END}{tail}"


def made() -> dict[Path, str]:
    """Each file as the parsers make it now."""
    return {
        BASH: completion("bash"),
        ZSH: completion("zsh"),
        MAN: man_page(),
        DOCS: _with_synopsis(DOCS.read_text(encoding="utf-8")),
    }


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    stale = []
    for path, text in made().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{path.relative_to(REPO)}: {'out of date' if check else 'written'}")
    if check and stale:
        print("run: python3 build_scripts/cli_files.py")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
