"""The one table of run flags (netjobs_core.run_flags): the command line is built from
it, and every flag of `netjobs` has its place in the window or says why not."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from netjobs_core import cli, run_flags
from netjobs_core.results import StartMode
from netjobs_core.run_flags import FLAGS, Where, option_values, run_values
from netjobs_core.run_options import RunOptions
from netjobs_core.session import UsageError
from netjobs_core.wire.tokens import Token


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]


@pytest.mark.parametrize("parser", [cli._run_parser(), cli._check_parser()], ids=["run", "check"])
def test_every_flag_of_the_command_line_is_in_the_table(parser: argparse.ArgumentParser) -> None:
    dests = {f.dest for f in FLAGS}
    for action in _options(parser):
        assert action.dest in dests, f"{action.option_strings} is not in run_flags.FLAGS"
        assert tuple(action.option_strings) == run_flags.flag(action.dest).names


def test_every_flag_has_a_place_in_the_window_or_says_why_not() -> None:
    for each in FLAGS:
        if each.gui is Where.OPTIONS:
            assert each.label, each.dest
        elif each.gui is Where.SETTINGS:
            assert each.setting, each.dest
        else:
            assert each.note.strip(), f"{each.dest}: say where, or why the window has none"


def test_the_readme_flags_are_in_the_run_options_form() -> None:
    """Issue 23, point 8: what the README said the window had and it lacked."""
    form = {f.dest for f in FLAGS if f.gui is Where.OPTIONS}
    assert {"repeat", "start_mode", "results", "collect_max", "inline_limit", "no_history"} <= form


def test_command_line_values_become_run_options_and_run_arguments() -> None:
    args = cli._run_parser().parse_args(
        ["--repeat", "3", "--start-mode", "sequential", "--collect-max", "2M",
         "--inline-limit", "1k", "--no-history", "--connect-timeout", "2.5", "-l", "x.cfg"]
    )  # fmt: skip
    options = RunOptions(token=Token("t" * 32, "test"), **option_values(vars(args)))
    assert options.repeat == 3
    assert options.start_mode is StartMode.SEQUENTIAL
    assert options.collect_max == 2 * 1024**2
    assert options.inline_limit == 1024
    assert options.connect_timeout == 2.5
    assert run_values(vars(args)) == {
        "log": True,
        "json_path": None,
        "csv_path": None,
        "show": 64 * 1024,
        "in_history": False,
    }


def test_a_field_reads_a_value_as_the_command_line_does() -> None:
    repeat = run_flags.flag("repeat")
    assert repeat.value_of("4") == 4
    assert repeat.value_of("") == 1  # empty: the default
    with pytest.raises(ValueError, match="must be 1 or more, not 0"):
        repeat.value_of("0")
    with pytest.raises(ValueError, match="bad size 'lots'"):
        run_flags.flag("collect_max").value_of("lots")
    with pytest.raises(ValueError, match="choose from scheduled, sequential"):
        run_flags.flag("start_mode").value_of("later")
    assert run_flags.flag("collect_max").shown(1024**3) == "1.0 GiB"


def test_a_lead_beyond_its_cap_is_refused_not_cut_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--lead above 5000 ms was silently 5 s: refused now, exit 2, as other bad values."""
    lead = run_flags.flag("lead")
    assert lead.value_of("5000") == 5000.0
    with pytest.raises(ValueError, match=r"must be at most 5000 ms .*, not 5000\.5"):
        lead.value_of("5000.5")
    cfg = tmp_path / "c.cfg"
    cfg.write_text('t:\n127.0.0.1:1: "true"\nend\n')
    for value in ("6000", "-1"):
        refused = subprocess.run(
            [sys.executable, "-m", "netjobs_core.cli", "--lead", value, str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert refused.returncode == 2, refused.stderr
        assert "argument --lead: must be " in refused.stderr and "Traceback" not in refused.stderr


def test_a_results_folder_that_cannot_be_made_says_where(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match=f"cannot make the run's folder in {blocker}"):
        run_flags.make_run_folder(str(blocker))
    assert run_flags.make_run_folder(str(tmp_path / "runs")).path.parent == tmp_path / "runs"
