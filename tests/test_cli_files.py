"""The files made from the argument parsers (build_scripts/cli_files.py: the shell
completions, the man page, docs/cli.md's synopsis) are what the parsers make now, are
installed with the package, and work; every relative link of the docs leads somewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from script_modules import BUILD_SCRIPTS, load_script

REPO = Path(__file__).resolve().parents[1]


def _cli_files():
    return load_script(BUILD_SCRIPTS / "cli_files.py", "netjobs_build_cli_files")


def test_each_file_is_what_the_parsers_make(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    cli_files = _cli_files()
    stale = [
        str(path.relative_to(REPO))
        for path, text in cli_files.made().items()
        if path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"out of date (python3 build_scripts/cli_files.py): {stale}"
    # The synopsis has every subcommand and every option of the run.
    document = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for needle in ("usage: netjobs check", "usage: netjobs token", "--rerun-failed RUN", "-S "):
        assert needle in document


def test_they_are_installed_with_the_package() -> None:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    data_files = settings["tool"]["setuptools"]["data-files"]
    cli_files = _cli_files()
    installed = {REPO / name for names in data_files.values() for name in names}
    assert installed == {cli_files.BASH, cli_files.ZSH, cli_files.MAN}
    assert data_files["share/man/man1"] == ["share/man/man1/netjobs.1"]


@pytest.mark.skipif(not shutil.which("bash"), reason="no bash")
def test_the_bash_completion_completes(tmp_path: Path) -> None:
    (tmp_path / "fio.cfg").write_text("")
    script = _cli_files().BASH
    probe = f"""
source {script}
try() {{ COMP_WORDS=("$@"); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); COMP_LINE="$*"
  COMP_POINT=${{#COMP_LINE}}; COMPREPLY=(); _shtab_netjobs; echo "${{COMPREPLY[*]}}"; }}
try netjobs ""
try netjobs --rer
try netjobs --start-mode s
try netjobs check --con
try netjobs token ""
"""
    result = subprocess.run(
        ["bash", "--norc", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    first, option, mode, check, token = result.stdout.splitlines()
    assert {"check", "demo", "history", "show", "token", "fio.cfg"} <= set(first.split())
    assert option == "--rerun-failed" and mode == "scheduled sequential"
    assert check == "--connect-timeout" and token == "issue rotate"


@pytest.mark.skipif(not shutil.which("zsh"), reason="no zsh")
def test_the_zsh_completion_loads() -> None:
    script = _cli_files().ZSH
    result = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_man_page_names_every_option_of_the_run() -> None:
    page = _cli_files().MAN.read_text(encoding="utf-8")
    for flag in ("\\-S", "\\-q", "\\-\\-rerun\\-failed", "\\-\\-repeat", "netjobs history"):
        assert flag in page
    assert page.startswith(".TH NETJOBS 1")


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a document's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.*)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_relative_link_of_the_docs_leads_somewhere() -> None:
    documents = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        for link in _LINK.findall(document.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", link):
                continue  # https:, mailto:
            path, _, anchor = link.partition("#")
            target = (document.parent / path).resolve() if path else document
            if not target.exists():
                broken.append(f"{document.name}: {link}")
            elif anchor and target.suffix == ".md":
                if anchor not in _anchors(target.read_text(encoding="utf-8")):
                    broken.append(f"{document.name}: {link} (no such heading)")
    assert not broken
