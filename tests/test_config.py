"""Tests of the config parser: netjobs_core.config."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netjobs_core.config import (
    DEFAULT_PORT,
    CommandSpec,
    ConfigError,
    Plan,
    TestSpec,
    load_config,
    parse_config,
    parse_duration,
    write_duration,
)
from netjobs_core.text import timeout as timeout_text
from netjobs_core.wire.address import DEFAULT_PORT as PROTOCOL_DEFAULT_PORT
from netjobs_core.wire.address import Address
from netjobs_core.wire.errors import ProtocolError
from netjobs_core.wire.messages import MAX_TIMEOUT_S, SENT_BY, Prepare, Role, check

EXAMPLES = Path(__file__).resolve().parent.parent / "resources" / "examples"

README_EXAMPLE = """\
test0:
-generaltimeout: none
-minhosts: all
localhost: "echo 'hello, world'"
-timeout: 1s
end

test1:
-generaltimeout: 5m
-minhosts: 0
172.17.1.19: "./some_test_script.sh"
-timeout: 30s
182.17.1.20: "./other_test_script.sh"
182.17.1.20: "./and_another_test_script.sh"
end
"""


def parse(text: str) -> Plan:
    return parse_config(text, "t.cfg")


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.cfg")
    return info.value


def assert_error(text: str, line: int, *words: str) -> ConfigError:
    err = error(text)
    assert err.path == "t.cfg"
    assert err.line == line, str(err)
    for word in words:
        assert word in err.message, f"{word!r} not in {err.message!r}"
    assert str(err) == f"t.cfg:{line}: {err.message}"
    assert err.message[:1] == err.message[:1].lower()  # lowercase-first
    return err


def block(*lines: str, label: str = "t") -> str:
    return "\n".join([f"{label}:", *lines, "end", ""])


def one_test(text: str) -> TestSpec:
    plan = parse(text)
    assert len(plan.tests) == 1
    return plan.tests[0]


def one_command(target_line: str, *options: str) -> CommandSpec:
    test = one_test(block(target_line, *options))
    assert len(test.commands) == 1
    return test.commands[0]


# --------------------------------------------------------------------------- interface


def test_default_port_is_the_protocols() -> None:
    assert DEFAULT_PORT == PROTOCOL_DEFAULT_PORT == 16192


def test_config_error_fields_str_and_pickle() -> None:
    err = ConfigError("a/b.cfg", 7, "-minhosts must come before the first target")
    assert (err.path, err.line, err.message) == (
        "a/b.cfg",
        7,
        "-minhosts must come before the first target",
    )
    assert str(err) == "a/b.cfg:7: -minhosts must come before the first target"
    assert isinstance(err, Exception)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.line, copy.message, str(copy)) == (
        err.path,
        err.line,
        err.message,
        str(err),
    )


def test_dataclasses_are_frozen_and_testspec_not_collected() -> None:
    test = one_test(block('h: "x"'))
    with pytest.raises(dataclasses.FrozenInstanceError):
        test.label = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        test.commands[0].command = "y"  # type: ignore[misc]
    assert TestSpec.__test__ is False
    assert "__test__" not in {f.name for f in dataclasses.fields(TestSpec)}


def test_default_path_name() -> None:
    assert parse_config(block('h: "x"')).path == "<config>"
    with pytest.raises(ConfigError) as info:
        parse_config("")
    assert str(info.value) == "<config>:1: no tests in the file"


# --------------------------------------------------------------------------- README example


def test_readme_example() -> None:
    plan = parse(README_EXAMPLE)
    assert plan == Plan(
        "t.cfg",
        (
            TestSpec(
                label="test0",
                line=1,
                general_timeout=None,
                minhosts=None,
                commands=(CommandSpec(Address("localhost", 16192), "echo 'hello, world'", 1.0, 4),),
            ),
            TestSpec(
                label="test1",
                line=8,
                general_timeout=300.0,
                minhosts=0,
                commands=(
                    CommandSpec(Address("172.17.1.19", 16192), "./some_test_script.sh", 30.0, 11),
                    CommandSpec(Address("182.17.1.20", 16192), "./other_test_script.sh", 300.0, 13),
                    CommandSpec(
                        Address("182.17.1.20", 16192), "./and_another_test_script.sh", 300.0, 14
                    ),
                ),
            ),
        ),
    )
    test0, test1 = plan.tests
    assert test0.addresses == [Address("localhost", 16192)]
    assert test0.required_hosts == 1
    assert test1.addresses == [Address("172.17.1.19", 16192), Address("182.17.1.20", 16192)]
    assert test1.required_hosts == 0
    assert [c.target for c in test1.commands] == ["172.17.1.19", "182.17.1.20", "182.17.1.20"]


def test_readme_example_crlf_and_lone_cr() -> None:
    expected = parse(README_EXAMPLE)
    assert parse(README_EXAMPLE.replace("\n", "\r\n")) == expected
    assert parse(README_EXAMPLE.replace("\n", "\r")) == expected


def test_mixed_line_endings_count_lines() -> None:
    text = 't:\r\nh: "a"\rg: "b"\n\r\nk: "c"\r\nend'
    test = one_test(text)
    assert [c.line for c in test.commands] == [2, 3, 5]
    assert [c.command for c in test.commands] == ["a", "b", "c"]


def test_crlf_error_line_numbers() -> None:
    assert_error('t:\r\nh: "a"\r\n\r\n-minhosts: 1\r\nend\r\n', 4, "-minhosts", "before")


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        ("45", 45.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("330s", 330.0),
        ("1.5h", 5400.0),
        ("0.5m", 30.0),
        (".5", 0.5),
        ("2.", 2.0),
        ("5M", 300.0),
        ("2H", 7200.0),
        ("30S", 30.0),
        ("  30s  ", 30.0),
        ("30 s", 30.0),
        ("none", None),
        ("None", None),
        ("NONE", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "-1",
        "-5s",
        "5x",
        "5 minutes",
        "5ms",
        "1e3",
        "inf",
        "nan",
        "s",
        "1.2.3",
        "+5",
        "5m30s",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert "duration" in message
    if text.startswith("-"):
        assert "negative" in message
    elif text.strip():
        assert "none" in message and "s, m or h" in message


def test_parse_duration_rejects_overflow() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("9" * 400 + "h")


def test_parse_duration_unicode_digits_rejected() -> None:
    with pytest.raises(ValueError):
        parse_duration("٣s")  # an Arabic-Indic digit: float() would take it


# --------------------------------------------------------------------------- blocks


@pytest.mark.parametrize(
    "label", ["test0", "a", "my-test", "my_test", "v1.2", "0", "A.b-C_d", ".x"]
)
def test_labels(label: str) -> None:
    assert one_test(block('h: "x"', label=label)).label == label


@pytest.mark.parametrize("line", ["t :", "t:   ", "  t  :  ", "\tt\t:\t"])
def test_label_white_space(line: str) -> None:
    test = one_test(f'{line}\nh: "x"\nend\n')
    assert (test.label, test.line) == ("t", 1)


@pytest.mark.parametrize("end", ["end", "END", "End", "  end  ", "\tEnD\t"])
def test_end_case_and_white_space(end: str) -> None:
    assert one_test(f't:\nh: "x"\n{end}\n').label == "t"


def test_blank_lines_and_comments_everywhere() -> None:
    text = (
        "# header comment\n"
        "\n"
        "   # indented comment\n"
        "t:\n"
        "\n"
        "# comment inside\n"
        "-generaltimeout: 10s\n"
        "  \t  \n"
        "-minhosts: 1\n"
        "#-minhosts: 99\n"
        'h: "x"\n'
        "\n"
        "# comment between target and its -timeout\n"
        "-timeout: 2s\n"
        '  # g: "not a target"\n'
        "end\n"
        "\n"
        "# trailing comment\n"
    )
    test = one_test(text)
    assert (test.line, test.general_timeout, test.minhosts) == (4, 10.0, 1)
    assert test.commands == (CommandSpec(Address("h", DEFAULT_PORT), "x", 2.0, 11),)


def test_several_tests_in_order() -> None:
    plan = parse(block('a: "1"', label="one") + "\n" + block('b: "2"', label="two"))
    assert [t.label for t in plan.tests] == ["one", "two"]
    assert [t.line for t in plan.tests] == [1, 5]
    assert plan.tests[1].commands[0].line == 6


def test_indented_lines() -> None:
    test = one_test('  t:\n    -minhosts: all\n    h: "x"\n      -timeout: 1s\n  end\n')
    assert test.commands[0].timeout == 1.0


def test_no_final_newline() -> None:
    assert one_test('t:\nh: "x"\nend').label == "t"


def test_empty_config() -> None:
    assert_error("", 1, "no tests")
    assert_error("\n\n\n", 1, "no tests")
    assert_error("# only a comment\n\n# another\n", 1, "no tests")


# --------------------------------------------------------------------------- block errors


def test_missing_end_at_end_of_file_reports_label() -> None:
    assert_error('\n\nlost:\nh: "x"\n', 3, "test 'lost'", "no 'end'")
    assert_error(block('h: "x"', label="ok") + 'lost:\nh: "x"\n', 4, "'lost'", "'end'")


def test_label_while_test_open() -> None:
    err = assert_error(
        'first:\nh: "x"\n\nsecond:\nh: "y"\nend\n', 4, "'first'", "'second'", "'end'"
    )
    assert "line 1" in err.message


def test_end_outside_block() -> None:
    assert_error("end\n", 1, "'end'", "outside")
    assert_error(block('h: "x"') + "end\n", 4, "'end'", "outside")


def test_target_outside_block() -> None:
    assert_error('h: "x"\n', 1, "target 'h'", "outside", "label")
    assert_error(block('h: "x"') + 'g: "y"\n', 4, "target 'g'", "outside")


@pytest.mark.parametrize("option", ["-generaltimeout: 5s", "-minhosts: all", "-timeout: 5s"])
def test_option_outside_block(option: str) -> None:
    name = option.split(":")[0]
    assert_error(f"{option}\n" + block('h: "x"'), 1, name, "outside")
    assert_error(block('h: "x"') + f"\n{option}\n", 5, name, "outside")


def test_test_without_targets() -> None:
    assert_error("\nempty:\nend\n", 2, "'empty'", "no targets")
    assert_error("empty:\n-generaltimeout: 5s\n-minhosts: 0\n# nothing\nend\n", 1, "no targets")


def test_duplicate_label() -> None:
    text = block('h: "x"', label="dup") + block('h: "y"', label="dup")
    err = assert_error(text, 4, "duplicate", "'dup'")
    assert "line 1" in err.message


def test_duplicate_label_is_case_insensitive() -> None:
    # Labels name log files, and some file systems ignore case.
    assert_error(block('h: "x"', label="Run") + block('h: "y"', label="run"), 4, "duplicate")


@pytest.mark.parametrize(
    "line",
    ["hello world", "this is not a config line", "host = x", "=", "[section]", "end end", "endx"],
)
def test_garbage_inside_block(line: str) -> None:
    err = assert_error(f't:\nh: "x"\n{line}\nend\n', 3)
    assert "expected" in err.message


@pytest.mark.parametrize("line", ["hello world", "=", "[section]", "endx", "t x:"])
def test_garbage_outside_block(line: str) -> None:
    assert_error(f"{line}\n" + block('h: "x"'), 1, "expected", "label")


@pytest.mark.parametrize("line", ["t: # comment", "t: extra", "t:x"])
def test_text_after_label_colon(line: str) -> None:
    # Outside a block these are errors: a label line has nothing after its colon.
    assert_error(f"{line}\n" + block('h: "x"'), 1)


def test_comment_after_label_or_end_says_so() -> None:
    assert_error('t: # hi\nh: "x"\nend\n', 1, "comment", "own line")
    assert_error('t:\nh: "x"\nend # done\n', 3, "comment", "own line")


def test_label_with_bad_characters() -> None:
    assert_error('my test:\nh: "x"\nend\n', 1, "expected")
    assert_error('t!:\nh: "x"\nend\n', 1, "expected")


# --------------------------------------------------------------------------- options


def test_general_timeout_applies_to_every_command() -> None:
    test = one_test(block("-generaltimeout: 5m", 'a: "1"', 'b: "2"'))
    assert test.general_timeout == 300.0
    assert [c.timeout for c in test.commands] == [300.0, 300.0]


def test_no_timeouts_means_none() -> None:
    test = one_test(block('a: "1"'))
    assert (test.general_timeout, test.minhosts, test.commands[0].timeout) == (None, None, None)


def test_timeout_overrides_general_timeout_for_its_target_only() -> None:
    test = one_test(
        block("-generaltimeout: 2h", 'a: "1"', "-timeout: 30s", 'b: "2"', 'c: "3"', "-timeout: 1m")
    )
    assert [c.timeout for c in test.commands] == [30.0, 7200.0, 60.0]
    assert test.general_timeout == 7200.0


def test_timeout_none_overrides_general_timeout() -> None:
    test = one_test(block("-generaltimeout: 10s", 'a: "1"', "-timeout: none", 'b: "2"'))
    assert [c.timeout for c in test.commands] == [None, 10.0]


def test_timeout_without_general_timeout() -> None:
    test = one_test(block('a: "1"', "-timeout: 1.5s", 'b: "2"'))
    assert [c.timeout for c in test.commands] == [1.5, None]


def test_timeout_zero_is_allowed() -> None:
    assert one_command('a: "1"', "-timeout: 0").timeout == 0.0


def prepare_accepts(timeout: float | None) -> bool:
    """Whether the agent would take a 'prepare' with this command timeout."""
    commands = [{"id": 0, "command": "x", "timeout": timeout}]
    try:
        check(Prepare(label="t", commands=commands), SENT_BY[Role.CONTROLLER])
    except ProtocolError:
        return False
    return True


@pytest.mark.parametrize(
    "option",
    [
        'a: "1"\n-timeout: 10000000h',  # the issue's: passed -s, then aborted the run
        'a: "1"\n-timeout: 277778h',
        'a: "1"\n-timeout: 16666667m',
        'a: "1"\n-timeout: 1000000000.5',
        '-generaltimeout: 10000000h\na: "1"',
        'a: "1"\n-timeout: ' + "9" * 400,
    ],
)
def test_a_timeout_beyond_the_protocols_bound_is_a_file_line_error(option: str) -> None:
    name = option.split("-", 1)[1].split(":")[0]
    err = assert_error(block(*option.split("\n")), 2 if name == "generaltimeout" else 3, name)
    longest = f"{MAX_TIMEOUT_S:.0f}s"
    assert f"the longest timeout is {longest}" in err.message and "'none'" in err.message
    assert parse_duration(longest) == MAX_TIMEOUT_S  # the maximum, as the config writes it


@pytest.mark.parametrize("value", [f"{MAX_TIMEOUT_S:.0f}", f"{MAX_TIMEOUT_S // 3600:.0f}h", "0"])
def test_a_timeout_up_to_the_bound_is_one_the_agent_accepts(value: str) -> None:
    timeout = one_command('a: "1"', f"-timeout: {value}").timeout
    assert timeout is not None and timeout <= MAX_TIMEOUT_S and prepare_accepts(timeout)
    assert not prepare_accepts(MAX_TIMEOUT_S * (1 + 1e-15))


def test_simulate_refuses_a_timeout_the_run_would_abort_on(tmp_path: Path, capsys) -> None:
    """Issue 18, point 14: `-s` said valid, then the run aborted with a protocol error."""
    from netjobs_core.cli import main

    config = tmp_path / "long.cfg"
    config.write_text('t:\nlocalhost: "true"\n-timeout: 10000000h\nend\n')
    assert main(["-s", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"netjobs: {config}:3: -timeout: duration '10000000h' is too large: the longest "
        "timeout is 1000000000s (about 31 years); 'none' means no limit\n"
    )
    config.write_text('t:\nlocalhost: "true"\n-timeout: 277777h\nend\n')
    assert main(["-s", str(config)]) == 0
    assert "  localhost: 'true'  timeout 999997200s  (line 2)" in capsys.readouterr().out


@given(
    st.floats(0, MAX_TIMEOUT_S)
    | st.integers(0, int(MAX_TIMEOUT_S)).map(float)
    | st.sampled_from([0.0, 1e-5, 1e-300, 5e-324, 0.1 + 0.2, 2e9 / 2, MAX_TIMEOUT_S])
)
def test_the_written_timeout_reads_back_as_the_same_seconds(seconds: float) -> None:
    written = timeout_text(seconds)
    assert written == write_duration(seconds) and "e" not in written
    assert parse_duration(written) == seconds
    spec = one_command('a: "1"', f"-timeout: {written}")
    assert spec.timeout == seconds and prepare_accepts(spec.timeout)


@pytest.mark.parametrize(
    "line",
    [
        "-timeout: 30s",
        "-timeout:30s",
        "-timeout :  30s",
        "-timeout\t:\t30s\t",
        "-TIMEOUT: 30s",
        "-Timeout: 30s",
        "  -timeout: 30S",
    ],
)
def test_option_spelling(line: str) -> None:
    assert one_command('a: "1"', line).timeout == 30.0


@pytest.mark.parametrize(
    ("lines", "general", "minhosts"),
    [
        (("-GeneralTimeout: 1m", "-MINHOSTS: ALL"), 60.0, None),
        (("-generaltimeout :5", "-minhosts :  1"), 5.0, 1),
        (("-minhosts: 0", "-generaltimeout: none"), None, 0),
        (("-minhosts: All",), None, None),
        (("-minhosts: 01",), None, 1),
    ],
)
def test_block_options_spelling(
    lines: tuple[str, ...], general: float | None, minhosts: int | None
) -> None:
    test = one_test(block(*lines, 'a: "1"'))
    assert (test.general_timeout, test.minhosts) == (general, minhosts)


@pytest.mark.parametrize("name", ["generaltimeout", "minhosts"])
def test_block_option_after_target(name: str) -> None:
    value = "5s" if name == "generaltimeout" else "1"
    text = block('a: "1"', "-timeout: 1s", f"-{name}: {value}")
    assert_error(text, 4, f"-{name} must come before the first target")


def test_block_option_after_target_message_is_exact() -> None:
    err = error('t:\nh: "x"\n\n\n\n\n-minhosts: 1\nend\n')
    assert str(err) == "t.cfg:7: -minhosts must come before the first target"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("-generaltimeout: 5s", "-generaltimeout: 6s"),
        ("-minhosts: all", "-minhosts: 1"),
        ("-minhosts: 1", "-MinHosts: 1"),
    ],
)
def test_duplicate_block_option(first: str, second: str) -> None:
    err = assert_error(block(first, "", second, 'a: "1"'), 4, "twice")
    assert first.split(":")[0].lower() in err.message
    assert "line 2" in err.message


def test_duplicate_timeout_for_one_target() -> None:
    err = assert_error(block('a: "1"', "-timeout: 1s", "-timeout: 2s"), 4, "-timeout", "twice")
    assert "line 2" in err.message


def test_timeout_before_any_target() -> None:
    assert_error(block("-timeout: 5s", 'a: "1"'), 2, "-timeout", "target")
    assert_error(block("-generaltimeout: 1s", "-timeout: 5s", 'a: "1"'), 3, "-timeout")


@pytest.mark.parametrize(
    "line", ["-foo: 1", "-general-timeout: 5s", "-min_hosts: 1", "-verbose: yes", "-t: 1"]
)
def test_unknown_option(line: str) -> None:
    err = assert_error(block('a: "1"', line), 3, "unknown option")
    assert line.split(":")[0] in err.message
    assert "-timeout" in err.message  # says what was expected


def test_unknown_option_outside_block() -> None:
    assert_error("-foo: 1\n" + block('a: "1"'), 1, "unknown option '-foo'")


@pytest.mark.parametrize("line", ["-", "- timeout: 1s", "-5s", "--timeout: 1s"])
def test_malformed_option(line: str) -> None:
    assert_error(block('a: "1"', line), 3, "expected", "-timeout")


@pytest.mark.parametrize("line", ["-timeout 30s", "-timeout", "-timeout = 30s"])
def test_option_without_colon(line: str) -> None:
    assert_error(block('a: "1"', line), 3, "':'", "-timeout")


@pytest.mark.parametrize(
    "line", ["-timeout: 5x", "-timeout: -1s", "-timeout:", "-timeout: 1e3", "-timeout: 5 minutes"]
)
def test_bad_timeout(line: str) -> None:
    assert_error(block('a: "1"', line), 3, "-timeout", "duration")


@pytest.mark.parametrize("value", ["abc", "-1", "", "5mm", "1.5.1", "forever"])
def test_bad_general_timeout(value: str) -> None:
    assert_error(block(f"-generaltimeout: {value}", 'a: "1"'), 2, "-generaltimeout", "duration")


def test_comment_after_option_value() -> None:
    assert_error(block('a: "1"', "-timeout: 30s # half a minute"), 3, "comment", "own line")
    assert_error(block("-minhosts: all # all of them", 'a: "1"'), 2, "comment", "own line")
    assert_error(block("-generaltimeout: 5m # five", 'a: "1"'), 2, "comment", "own line")


# --------------------------------------------------------------------------- minhosts


@pytest.mark.parametrize("value", ["-1", "one", "1.5", "", "all hosts", "+1", "٣", "0x2"])
def test_bad_minhosts(value: str) -> None:
    assert_error(block(f"-minhosts: {value}", 'a: "1"'), 2, "-minhosts", "'all'", "integer")


def test_minhosts_values() -> None:
    test = one_test(block("-minhosts: 2", 'a: "1"', 'b: "2"', 'c: "3"'))
    assert (test.minhosts, test.required_hosts) == (2, 2)
    test = one_test(block("-minhosts: all", 'a: "1"', 'b: "2"', 'c: "3"'))
    assert (test.minhosts, test.required_hosts) == (None, 3)
    test = one_test(block("-minhosts: 0", 'a: "1"'))
    assert (test.minhosts, test.required_hosts) == (0, 0)
    test = one_test(block("-minhosts: 3", 'a: "1"', 'b: "2"', 'c: "3"'))
    assert test.required_hosts == 3


def test_minhosts_exceeds_hosts_reported_at_minhosts_line() -> None:
    text = 'x:\n-generaltimeout: 1s\n-minhosts: 4\na: "1"\nb: "2"\nc: "3"\nend\n'
    err = error(text)
    assert str(err) == "t.cfg:3: -minhosts 4 exceeds the 3 hosts of test 'x'"


def test_minhosts_counts_distinct_host_and_port() -> None:
    # Same host twice counts once; same host on another port counts again.
    lines = ('a: "1"', 'a: "2"', 'a:16200: "3"', 'a:16192: "4"')
    test = one_test(block("-minhosts: 2", *lines))
    assert test.addresses == [Address("a", 16192), Address("a", 16200)]
    assert_error(block("-minhosts: 3", *lines), 2, "-minhosts 3 exceeds the 2 hosts")


def test_minhosts_huge_number() -> None:
    assert_error(block("-minhosts: " + "9" * 5000, 'a: "1"'), 2, "exceeds the 1 host ")


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("line", "host", "port", "target"),
    [
        ('localhost: "x"', "localhost", 16192, "localhost"),
        ('storage-01: "x"', "storage-01", 16192, "storage-01"),
        ('Storage-01.Lab.example: "x"', "Storage-01.Lab.example", 16192, "Storage-01.Lab.example"),
        ('my_host: "x"', "my_host", 16192, "my_host"),
        ('10.0.0.5: "x"', "10.0.0.5", 16192, "10.0.0.5"),
        ('10.0.0.5:16201: "x"', "10.0.0.5", 16201, "10.0.0.5:16201"),
        ('host:16200: "x"', "host", 16200, "host:16200"),
        ('host:1: "x"', "host", 1, "host:1"),
        ('host:65535: "x"', "host", 65535, "host:65535"),
        ('host:16192: "x"', "host", 16192, "host"),
        ('[::1]: "x"', "::1", 16192, "[::1]"),
        ('[::1]:16200: "x"', "::1", 16200, "[::1]:16200"),
        ('[fd00::5]: "x"', "fd00::5", 16192, "[fd00::5]"),
        ('[FD00::5]:16200: "x"', "FD00::5", 16200, "[FD00::5]:16200"),
        ('[::ffff:10.0.0.5]: "x"', "::ffff:10.0.0.5", 16192, "[::ffff:10.0.0.5]"),
        ('[fe80::1%eth0]:16201: "x"', "fe80::1%eth0", 16201, "[fe80::1%eth0]:16201"),
        # white space around every colon
        ('host :  "x"', "host", 16192, "host"),
        ('host : 16200 : "x"', "host", 16200, "host:16200"),
        ('host:16200 :"x"', "host", 16200, "host:16200"),
        ('[::1] : 16200 : "x"', "::1", 16200, "[::1]:16200"),
        ('  10.0.0.5\t:\t16201\t:\t"x"', "10.0.0.5", 16201, "10.0.0.5:16201"),
        ('host:"x"', "host", 16192, "host"),
        ('host:016200: "x"', "host", 16200, "host:16200"),
    ],
)
def test_target_forms(line: str, host: str, port: int, target: str) -> None:
    command = one_command(line)
    assert (command.address, command.target) == (Address(host, port), target)
    assert command.command == "x"
    assert command.line == 2


@pytest.mark.parametrize(
    "line",
    [
        '::1: "x"',
        'fd00::5: "x"',
        'fd00::5:16200: "x"',
        'fe80::1:2:3: "x"',
        '2001:db8::1 : "x"',
        "::1: echo hi",
        "fd00::5 echo hi",
    ],
)
def test_unbracketed_ipv6(line: str) -> None:
    assert_error(block(line), 2, "IPv6", "brackets")


@pytest.mark.parametrize(
    "port", ["0", "65536", "99999", "123456", "-1", "abc", "", "16 200", "1e3"]
)
def test_bad_port(port: str) -> None:
    assert_error(block(f'host:{port}: "x"'), 2, "bad port", "65535")
    assert_error(block(f'[::1]:{port}: "x"'), 2, "bad port", "65535")


def test_huge_port() -> None:
    assert_error(block(f'host:{"1" * 5000}: "x"'), 2, "bad port")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('[not-ipv6]: "x"', ("IPv6",)),
        ('[10.0.0.5]: "x"', ("IPv6",)),
        ('[::1: "x"', ("']'",)),
        ('[::1]x: "x"', ("after ']'",)),
        ('[]: "x"', ("IPv6",)),
        ('999.1.1.1: "x"', ("IPv4",)),
        ('10.0.0: "x"', ("IPv4",)),
        ('12345: "x"', ("IPv4",)),
        ('my host: "x"', ("bad host",)),
        ('h@st: "x"', ("bad host",)),
        ('hôst: "x"', ("bad host",)),
        (':16200: "x"', ("missing host",)),
        (': "x"', ("missing target",)),
        ('"x"', ("missing target",)),
        ('host "x"', ("':'",)),
        ('host:16200 "x"', ("':'",)),
    ],
)
def test_bad_target(line: str, words: tuple[str, ...]) -> None:
    assert_error(block(line), 2, *words)


def test_host_case_is_kept() -> None:
    assert one_command('StOrAgE-01: "x"').address.host == "StOrAgE-01"


# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ('h: "echo hi"', "echo hi"),
        ('h: "sh -c \\"x\\""', 'sh -c \\"x\\"'),
        ("h: \"echo 'hello, world'\"", "echo 'hello, world'"),
        ('h: "echo "quoted" words"', 'echo "quoted" words'),
        ('h: ""x""', '"x"'),
        ('h: "echo # not a comment"', "echo # not a comment"),
        ('h: "echo a#b" # a real comment', "echo a#b"),
        ('h: "echo hi"   ', "echo hi"),
        ('h: "echo hi"\t# comment', "echo hi"),
        ('h: "echo hi"#comment', "echo hi"),
        ('h: "  spaced  "', "  spaced  "),
        ('h: "a\\nb"', "a\\nb"),  # no escape processing
        ('h: "x: y: z"', "x: y: z"),
        ("h: \"date +%s.%N; printf '%s\\n' $((1+2))\"", "date +%s.%N; printf '%s\\n' $((1+2))"),
        ('h: "tab\there"', "tab\there"),
        ('h: "unicode ✓ é"', "unicode ✓ é"),
        ('h: "-timeout: 5s"', "-timeout: 5s"),
        ('h: "end"', "end"),
    ],
)
def test_commands(line: str, command: str) -> None:
    assert one_command(line).command == command


def test_last_quote_closes_the_command_even_in_a_comment() -> None:
    # Everything from the first to the LAST quote is the command, as documented.
    assert one_command('h: "echo a" # say "b"').command == 'echo a" # say "b'


def test_unquoted_command() -> None:
    assert_error(block("h: echo hi"), 2, "double quotes")
    assert_error(block("host:16200: ./run.sh"), 2, "double quotes")
    assert_error(block("[::1]: ./run.sh"), 2, "double quotes")
    assert_error(block("10.0.0.5:16201: echo"), 2, "double quotes")


def test_target_without_command() -> None:
    assert_error(block("host:16200:"), 2, "missing command")
    assert_error(block("[::1]:"), 2, "missing command")


def test_empty_command() -> None:
    assert_error(block('h: ""'), 2, "empty command")
    assert_error(block('h: "   "'), 2, "empty command")


def test_unterminated_command() -> None:
    assert_error(block('h: "echo hi'), 2, "closing")


@pytest.mark.parametrize("after", ["x", "; echo", "'more'", "-timeout: 1s"])
def test_text_after_closing_quote(after: str) -> None:
    assert_error(block(f'h: "echo hi" {after}'), 2, "after the closing", "comment")


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x0c"])
def test_control_character_in_command(char: str) -> None:
    assert_error(block(f'h: "echo {char}"'), 2, "control character")


def test_several_commands_per_target_and_repeated_targets() -> None:
    test = one_test(
        block(
            "-generaltimeout: 1m",
            'a: "one"',
            "-timeout: 5s",
            'a: "two"',
            'b:16200: "three"',
            'a: "four"',
            "-timeout: none",
            'b:16200: "five"',
        )
    )
    assert [
        (c.address.host, c.address.port, c.command, c.timeout, c.line) for c in test.commands
    ] == [
        ("a", 16192, "one", 5.0, 3),
        ("a", 16192, "two", 60.0, 5),
        ("b", 16200, "three", 60.0, 6),
        ("a", 16192, "four", None, 7),
        ("b", 16200, "five", 60.0, 9),
    ]
    assert test.addresses == [Address("a", 16192), Address("b", 16200)]
    assert test.required_hosts == 2


def test_addresses_keep_first_appearance_order() -> None:
    test = one_test(block('c: "1"', 'a: "1"', 'c: "2"', '[::1]: "x"', 'b: "3"', 'a: "4"'))
    assert test.addresses == [
        Address("c", 16192),
        Address("a", 16192),
        Address("::1", 16192),
        Address("b", 16192),
    ]


def test_label_like_line_inside_block_is_missing_end() -> None:
    # "localhost:" with no command looks like a new label: the open test is named.
    assert_error(block('h: "x"', "localhost:"), 3, "'end'", "'t'", "'localhost'")


# --------------------------------------------------------------------------- BOM and files


def test_bom_in_text_is_ignored() -> None:
    assert parse("\ufeff" + README_EXAMPLE) == parse(README_EXAMPLE)


def test_load_config(tmp_path: Path) -> None:
    path = tmp_path / "plan.cfg"
    path.write_text(README_EXAMPLE, encoding="utf-8")
    plan = load_config(path)
    assert plan.path == str(path)
    assert plan.tests == parse(README_EXAMPLE).tests
    assert load_config(str(path)) == plan


def test_load_config_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "plan.cfg"
    path.write_bytes(b"\xef\xbb\xbf" + README_EXAMPLE.replace("\n", "\r\n").encode())
    assert load_config(path).tests == parse(README_EXAMPLE).tests


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.cfg"
    path.write_bytes(b'\xef\xbb\xbft:\r\nh: "x"\r\n-minhosts: 1\r\nend\r\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:3: -minhosts must come before the first target"


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b't:\nh: "caf\xe9"\nend\n', 2),
        (b'\xfft:\nh: "x"\nend\n', 1),
        (b't:\r\n# \xc3\r\n\r\nh: "x"\r\nend\r\n', 2),
        (b't:\r\rh: "x"\rend\r\x80', 5),
        (b't:\nh: "x"\nend\n\n\xed\xa0\x80\n', 5),  # an encoded surrogate is not UTF-8
    ],
)
def test_load_config_non_utf8(tmp_path: Path, data: bytes, line: int) -> None:
    path = tmp_path / "latin1.cfg"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert "UTF-8" in info.value.message


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.cfg"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.path, info.value.line) == (str(path), 1)
    assert "cannot read" in info.value.message


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "cannot read" in info.value.message


def test_load_config_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.cfg"
    path.write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:1: no tests in the file"


# --------------------------------------------------------------------------- examples


def test_demo_example() -> None:
    plan = load_config(EXAMPLES / "demo.cfg")
    assert 2 <= len(plan.tests) <= 3
    demo_agents = {Address("127.0.0.1", port) for port in (16201, 16202, 16203)}
    for test in plan.tests:
        assert set(test.addresses) == demo_agents
        for command in test.commands:
            assert command.timeout is not None and command.timeout <= 10
    assert any(c.timeout != t.general_timeout for t in plan.tests for c in t.commands)
    assert any(t.minhosts is not None and t.minhosts < len(t.addresses) for t in plan.tests)
    assert any("date +%s.%N" in c.command for t in plan.tests for c in t.commands)


def test_reference_example() -> None:
    plan = load_config(EXAMPLES / "reference.cfg")
    commands = [c for t in plan.tests for c in t.commands]
    hosts = {c.address.host for c in commands}
    assert {"storage-01", "10.0.0.5", "fd00::5"} <= hosts
    assert any(
        c.address.port != DEFAULT_PORT and ":" in c.address.host for c in commands
    )  # [v6]:port
    assert any(c.address.port != DEFAULT_PORT and ":" not in c.address.host for c in commands)
    assert any(t.general_timeout is not None for t in plan.tests)
    assert any(t.minhosts is None for t in plan.tests)
    assert any(t.minhosts is not None for t in plan.tests)
    assert any(len(t.commands) > len(t.addresses) for t in plan.tests)  # several per target
    assert any(c.timeout != t.general_timeout for t in plan.tests for c in t.commands)
    assert any("#" in c.command for c in commands)
    assert any('"' in c.command for c in commands)
    fleet = plan.tests[-1]
    assert len(fleet.addresses) == 36 and {c.node_set for c in fleet.commands} == {
        "node[01-32]",
        "10.0.0.[5-8]:16200",
    }
    assert all(c.collect[0] == "/tmp/fio-$NETJOBS_INDEX.json" for c in fleet.commands)


# --------------------------------------------------------------------------- properties

_FRAGMENTS = st.sampled_from(
    [
        "t:",
        "end",
        "END",
        "# c",
        "",
        " ",
        ":",
        '"',
        '""',
        "h",
        "[::1]",
        "[",
        "]",
        "::",
        "16200",
        "0",
        "99999",
        "-timeout",
        "-generaltimeout",
        "-minhosts",
        "all",
        "none",
        "5m",
        "-",
        "#",
        "\t",
        "\r",
        "\n",
        "\r\n",
        "\ufeff",
        "\x00",
        "é",
        "1" * 30,
        "%",
        "fe80::1",
        "10.0.0.5",
    ]
)

_config_like = st.lists(_FRAGMENTS | st.text(max_size=5), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.text() | _config_like)
def test_any_text_gives_plan_or_config_error(text: str) -> None:
    try:
        plan = parse_config(text, "any.cfg")
    except ConfigError as err:
        assert err.path == "any.cfg"
        assert err.line >= 1
        assert err.message
        assert str(err).startswith("any.cfg:")
    else:
        assert isinstance(plan, Plan)
        assert plan.tests
        for test in plan.tests:
            assert test.commands
            assert 0 <= test.required_hosts <= len(test.addresses)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_load_gives_plan_or_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / "any.cfg"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as err:
        assert err.line >= 1


# Generated valid configs ------------------------------------------------------------

_SPACE = st.sampled_from(["", " ", "  ", "\t", " \t "])
_LABEL = st.from_regex(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,12}", fullmatch=True)
_HOST_NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,8}(\.[A-Za-z0-9_-]{1,8}){0,2}", fullmatch=True)
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


@st.composite
def _host(draw: st.DrawFn) -> tuple[str, str]:
    """(text as written, host as parsed)."""
    kind = draw(st.sampled_from(["name", "v4", "v6"]))
    if kind == "name":
        name = draw(_HOST_NAME)
        return name, name
    if kind == "v4":
        address = str(draw(st.ip_addresses(v=4)))
        return address, address
    address = str(draw(st.ip_addresses(v=6)))
    return f"[{address}]", address


@st.composite
def _duration(draw: st.DrawFn) -> tuple[str, float | None]:
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(["none", "None", "NONE"])), None
    whole = draw(st.integers(0, 100_000))
    fraction = draw(st.sampled_from(["", ".5", ".25", ".0"]))
    unit = draw(st.sampled_from(["", "s", "m", "h", "S", "M", "H"]))
    seconds = (whole + float(fraction or 0)) * _UNIT[unit.lower()]
    return f"{whole}{fraction}{draw(_SPACE) if unit else ''}{unit}", seconds


_COMMAND = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"))
    | st.sampled_from(['"', "#", "'", "\\", ":", " ", "\t"]),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() != "")


@st.composite
def _config(draw: st.DrawFn) -> tuple[str, list[TestSpec]]:
    """A valid config (lines joined with LF) and the tests parsing it must give."""
    lines: list[str] = []
    expected: list[TestSpec] = []

    def filler() -> None:
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", "   ", "# comment", '  # x: "y"', "#end"])))

    def option(name: str) -> str:
        name = draw(st.sampled_from([name, name.upper(), name.title()]))
        return f"{draw(_SPACE)}-{name}{draw(_SPACE)}:{draw(_SPACE)}{{}}{draw(_SPACE)}"

    labels = draw(
        st.lists(_LABEL, min_size=1, max_size=3, unique_by=lambda label: label.casefold())
    )
    for label in labels:
        filler()
        lines.append(f"{draw(_SPACE)}{label}{draw(_SPACE)}:{draw(_SPACE)}")
        label_line = len(lines)
        general: float | None = None
        minhosts_index: int | None = None
        for name in draw(st.permutations(["generaltimeout", "minhosts"]))[
            : draw(st.integers(0, 2))
        ]:
            filler()
            if name == "generaltimeout":
                text, general = draw(_duration())
                lines.append(option(name).format(text))
            else:
                lines.append(option(name))  # value chosen once the hosts are known
                minhosts_index = len(lines) - 1
        commands: list[CommandSpec] = []
        addresses: list[tuple[str, str, int, str]] = []
        for _ in range(draw(st.integers(1, 4))):
            filler()
            if addresses and draw(st.booleans()):
                written, host, port, port_text = draw(st.sampled_from(addresses))
            else:
                written, host = draw(_host())
                chosen = draw(st.none() | st.integers(1, 65535) | st.just(DEFAULT_PORT))
                port_text = "" if chosen is None else f"{draw(_SPACE)}:{draw(_SPACE)}{chosen}"
                port = DEFAULT_PORT if chosen is None else chosen
                addresses.append((written, host, port, port_text))
            command = draw(_COMMAND)
            comment = draw(st.sampled_from(["", " # done", "#x", "   # a: 'b' # c"]))
            lines.append(
                f"{draw(_SPACE)}{written}{port_text}{draw(_SPACE)}:{draw(_SPACE)}"
                f'"{command}"{comment}{draw(_SPACE)}'
            )
            line = len(lines)
            timeout = general
            if draw(st.booleans()):
                filler()
                text, timeout = draw(_duration())
                lines.append(option("timeout").format(text))
            commands.append(CommandSpec(Address(host, port), command, timeout, line))
        distinct = len({(host, port) for _, host, port, _ in addresses})
        minhosts: int | None = None
        if minhosts_index is not None:
            minhosts = draw(st.none() | st.integers(0, distinct))
            text = (
                draw(st.sampled_from(["all", "ALL", "All"])) if minhosts is None else str(minhosts)
            )
            lines[minhosts_index] = lines[minhosts_index].format(text)
        filler()
        lines.append(draw(st.sampled_from(["end", "END", " end ", "End\t"])))
        expected.append(TestSpec(label, label_line, general, minhosts, tuple(commands)))
    filler()
    return "\n".join(lines), expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_config(), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.booleans())
def test_generated_configs_round_trip(
    config: tuple[str, list[TestSpec]], newline: str, bom: bool, final_newline: bool
) -> None:
    text, expected = config
    text = (
        ("\ufeff" if bom else "") + text.replace("\n", newline) + (newline if final_newline else "")
    )
    plan = parse_config(text, "gen.cfg")
    assert plan == Plan("gen.cfg", tuple(expected))
    for test in plan.tests:
        distinct = list(dict.fromkeys(c.address for c in test.commands))
        assert test.addresses == distinct
        assert test.required_hosts == (len(distinct) if test.minhosts is None else test.minhosts)
        for command in test.commands:
            host = command.address.bracketed_host
            port = "" if command.address.port == DEFAULT_PORT else f":{command.address.port}"
            assert command.target == host + port


@settings(max_examples=20, deadline=None)
@given(_config())
def test_generated_configs_via_load_config(
    tmp_path_factory: pytest.TempPathFactory, config: tuple[str, list[TestSpec]]
) -> None:
    # Through a real file, as UTF-8 with a BOM and CRLF line endings.
    text, expected = config
    path = tmp_path_factory.getbasetemp() / "gen.cfg"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert load_config(path).tests == tuple(expected)


def test_default_port_can_be_chosen_for_targets_without_one() -> None:
    plan = parse_config(
        't:\nalpha: "a"\nbeta:16192: "b"\n[::1]: "c"\n[::2]:9: "d"\nend\n', default_port=17000
    )
    assert [c.address for c in plan.tests[0].commands] == [
        Address("alpha", 17000),
        Address("beta", 16192),
        Address("::1", 17000),
        Address("::2", 9),
    ]
    assert plan.tests[0].commands[0].target == "alpha:17000"


MANY_MISTAKES = """\
a:
h1: "x"
-bogus: 3
h[3-1]: "y"
end
b:
end
c:
h2 "z"
d:
h3: "ok"
end
"""


def test_every_problem_of_a_file_in_line_order_as_the_cli_words_them():
    from netjobs_core.config import config_problems

    plan, problems = config_problems(MANY_MISTAKES, "f.cfg")
    assert plan is None
    assert [p.line for p in problems] == [3, 4, 6, 9, 10]
    assert "unknown option '-bogus'" in problems[0].message
    assert "bad node set 'h[3-1]'" in problems[1].message
    assert problems[2].message == "test 'b' has no targets"
    assert problems[4].message.startswith("expected 'end' to close test 'c' (line 8)")
    with pytest.raises(ConfigError) as raised:  # the CLI's parser still stops at the first
        parse_config(MANY_MISTAKES, "f.cfg")
    assert str(raised.value) == str(problems[0])


def test_a_file_without_problems_gives_its_plan():
    from netjobs_core.config import config_problems

    text = 't:\nh1: "x"\nend\n'
    plan, problems = config_problems(text, "f.cfg")
    assert problems == [] and plan == parse_config(text, "f.cfg")
