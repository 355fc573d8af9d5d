#!/usr/bin/env python3
"""Smoke test of the frozen executables in dist/ (after build_scripts/build.py).

    python build_scripts/smoke.py                # all three executables
    python build_scripts/smoke.py --only agent --only cli

Standard library only: it runs the executables, never the project's Python code.
  agent  --version, --help; started with no arguments (default port, token created in a
         temporary config directory) it says where it listens and where its token is;
         start-up time: launch to "listening on" (median of 3: a figure in the report,
         not a limit; bench/startup.py measures it);
  cli    three agents on loopback (port 0, temporary token file) run a real config
         through `netjobs --token-file ... --json out.json CONFIG`: statuses, exit codes,
         outputs, start spread and per-host clock figures are checked in the JSON;
         `netjobs -v CONFIG` on a pseudo-terminal (rich's live table; POSIX only);
         then `netjobs demo --json ...` (its agents must be gone afterwards);
  gui    `netjobs-gui --version` offscreen, then start-up with a config: through its
         --smoke-test hook when the GUI has one (checks the agents of the config and
         exits 0/1), otherwise it must stay up for a few seconds without a traceback.
Exits 1 with a message on the first failure; everything it started is stopped.
Figures go to build/netjobs-smoke.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
REPORT = ROOT / "build" / "netjobs-smoke.json"
WINDOWS = sys.platform == "win32"
DEFAULT_PORT = 16192
DEMO_PORTS = (16201, 16202, 16203)
DEMO_TESTS = ("start-together", "one-slow-host", "output")
RESULTS_FORMAT = "netjobs-results/2"  # what netjobs_core.results_json writes
LISTENING = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+)")
# The GUI's scripted start-up check, if its code offers one: `netjobs-gui --smoke-test
# CONFIG` starts as usual (window shown), opens CONFIG, checks its hosts with the usual
# token sources (here NETJOBS_TOKEN), quits by itself and exits 0 only if all went well.
GUI_SMOKE_FLAG = "--smoke-test"


class SmokeFailure(Exception):
    pass


def exe(name: str, dist: Path = DIST) -> Path:
    return dist / (name + ".exe" if WINDOWS else name)


def log(message: str) -> None:
    print(f"smoke: {message}", flush=True)


# -- processes --------------------------------------------------------------------------


class Processes:
    """Everything the smoke test starts, so that everything can be stopped."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, argv: Sequence[str | os.PathLike[str]], **kwargs) -> subprocess.Popen:
        if WINDOWS:
            kwargs.setdefault("creationflags", subprocess.CREATE_NEW_PROCESS_GROUP)
        else:
            kwargs.setdefault("start_new_session", True)  # its own process group
        process = subprocess.Popen([os.fspath(a) for a in argv], **kwargs)
        self.started.append(process)
        return process

    def run(
        self, argv: Sequence[str | os.PathLike[str]], timeout: float, **kwargs
    ) -> subprocess.CompletedProcess:
        """Like subprocess.run(capture_output=True, text=True) but stoppable on timeout."""
        process = self.start(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            **kwargs,
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(process)
            out, err = process.communicate()
            raise SmokeFailure(
                f"{Path(os.fspath(argv[0])).name} {' '.join(map(str, argv[1:]))} did not finish "
                f"within {timeout:g} s\n--- stdout\n{out}\n--- stderr\n{err}"
            ) from None
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    @staticmethod
    def stop(process: subprocess.Popen, grace: float = 5.0) -> None:
        """Stop a process and whatever it started.

        A one-file executable is two processes: the bootloader and the Python child it
        starts. On POSIX the bootloader forwards SIGTERM to the child; after the grace
        period the whole process group is killed. On Windows killing the bootloader
        would leave the child running, so the tree is killed with taskkill /T.
        """
        if process.poll() is not None:
            return
        if WINDOWS:
            subprocess.run(["taskkill", "/PID", str(process.pid), "/T", "/F"], capture_output=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
            if process.poll() is None:
                process.kill()
            process.wait()
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for process in reversed(self.started):
            self.stop(process)
            for stream in (process.stdout, process.stderr, process.stdin):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self.started.clear()


class LineReader:
    """Collects a process's stdout lines on a thread (portable non-blocking reads)."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        thread.start()

    def _pump(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.put(raw.decode("utf-8", "replace"))
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.seen.append(line)
            match = pattern.search(line)
            if match:
                return match
        return None

    def drain(self, timeout: float) -> str:
        """Everything printed until the stream ends (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        return self.text()

    def text(self) -> str:
        return "".join(self.seen)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if not WINDOWS:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def someone_listens(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


# -- JSON checks (pure: unit-tested in tests/test_build_scripts.py) --------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _tests_by_label(doc: object, problems: list[str]) -> dict[str, dict]:
    if not isinstance(doc, dict):
        problems.append("the results are not a JSON object")
        return {}
    if doc.get("format") != RESULTS_FORMAT:
        problems.append(f"format is {doc.get('format')!r}, expected {RESULTS_FORMAT!r}")
    tests = doc.get("tests")
    if not isinstance(tests, list):
        problems.append("no 'tests' list")
        return {}
    found = {}
    for test in tests:
        if isinstance(test, dict) and isinstance(test.get("label"), str):
            found[test["label"]] = test
        else:
            problems.append(f"a test without a label: {test!r:.80}")
    return found


def _host(test: dict, target: str, problems: list[str]) -> dict:
    for host in test.get("hosts") or []:
        if isinstance(host, dict) and host.get("target") == target:
            return host
    problems.append(f"test {test.get('label')!r}: no host {target!r}")
    return {}


def _command(host: dict, label: str, problems: list[str]) -> dict:
    commands = host.get("commands") or []
    if len(commands) != 1 or not isinstance(commands[0], dict):
        problems.append(
            f"test {label!r}, host {host.get('target')!r}: expected one command, "
            f"found {len(commands)}"
        )
        return {}
    return commands[0]


def _check_host_figures(test: dict, problems: list[str], agent_version: str | None) -> None:
    label = test.get("label")
    for host in test.get("hosts") or []:
        target = host.get("target")
        for name in ("rtt_ms", "clock_offset_ms", "clock_uncertainty_ms"):
            if not _is_number(host.get(name)):
                problems.append(f"test {label!r}, host {target!r}: {name} is {host.get(name)!r}")
        if agent_version and host.get("agent_version") != agent_version:
            problems.append(
                f"test {label!r}, host {target!r}: agent_version "
                f"{host.get('agent_version')!r}, expected {agent_version!r}"
            )


def _check_spread(test: dict, problems: list[str]) -> None:
    for name in ("start_spread_ms", "start_spread_uncertainty_ms"):
        value = test.get(name)
        if not _is_number(value) or value < 0:
            problems.append(
                f"test {test.get('label')!r}: {name} is {value!r}, expected a number >= 0"
            )


def smoke_config(ports: Sequence[int], windows: bool = WINDOWS) -> str:
    """The config the CLI runs against three agents on loopback."""
    p1, p2, p3 = ports
    slow = "ping -n 30 127.0.0.1 >NUL" if windows else "sleep 30"
    return f"""\
# Written and run by build_scripts/smoke.py against three frozen agents on loopback.
together:
-generaltimeout: 30s
127.0.0.1:{p1}: "echo smoke one"
127.0.0.1:{p2}: "echo smoke two"
127.0.0.1:{p3}: "echo smoke three"
end

exit-code:
-generaltimeout: 30s
127.0.0.1:{p1}: "echo fine"
127.0.0.1:{p2}: "exit 3"
end

timeout:
-generaltimeout: 30s
-minhosts: 1
127.0.0.1:{p1}: "echo quick"
127.0.0.1:{p3}: "{slow}"
-timeout: 1s
end
"""


def check_run_results(
    doc: object, ports: Sequence[int], agent_version: str | None = None
) -> list[str]:
    """Problems with the JSON of the smoke config's run (empty: as expected)."""
    problems: list[str] = []
    tests = _tests_by_label(doc, problems)
    if problems:
        return problems
    labels = list(tests)
    if labels != ["together", "exit-code", "timeout"]:
        return [f"tests are {labels}, expected ['together', 'exit-code', 'timeout']"]
    if doc.get("passed") is not False:  # type: ignore[union-attr]
        problems.append(f"passed is {doc.get('passed')!r}: the exit-code test must fail")  # type: ignore[union-attr]
    targets = [f"127.0.0.1:{port}" for port in ports]

    together = tests["together"]
    if together.get("status") != "passed":
        problems.append(
            f"test 'together' is {together.get('status')!r} "
            f"({together.get('reason')!r}), expected 'passed'"
        )
    _check_spread(together, problems)
    _check_host_figures(together, problems, agent_version)
    for target, word in zip(targets, ("one", "two", "three"), strict=True):
        host = _host(together, target, problems)
        if not host:
            continue
        if host.get("status") != "done":
            problems.append(
                f"test 'together', host {target}: status {host.get('status')!r} "
                f"({host.get('error')!r})"
            )
        command = _command(host, "together", problems)
        if command:
            if command.get("status") != "ok" or command.get("exit_code") != 0:
                problems.append(
                    f"test 'together', host {target}: command {command.get('status')!r}"
                    f", exit code {command.get('exit_code')!r}"
                )
            if str(command.get("stdout", "")).strip() != f"smoke {word}":
                problems.append(
                    f"test 'together', host {target}: stdout "
                    f"{command.get('stdout')!r}, expected 'smoke {word}'"
                )

    exit_code = tests["exit-code"]
    if exit_code.get("status") != "failed":
        problems.append(f"test 'exit-code' is {exit_code.get('status')!r}, expected 'failed'")
    fine = _command(_host(exit_code, targets[0], problems), "exit-code", problems)
    if fine and fine.get("status") != "ok":
        problems.append(
            f"test 'exit-code', host {targets[0]}: {fine.get('status')!r}, expected 'ok'"
        )
    three = _command(_host(exit_code, targets[1], problems), "exit-code", problems)
    if three and (three.get("status") != "failed" or three.get("exit_code") != 3):
        problems.append(
            f"test 'exit-code', host {targets[1]}: {three.get('status')!r} with exit "
            f"code {three.get('exit_code')!r}, expected 'failed' with 3"
        )

    slow_test = tests["timeout"]
    quick = _command(_host(slow_test, targets[0], problems), "timeout", problems)
    if quick and (quick.get("status") != "ok" or str(quick.get("stdout", "")).strip() != "quick"):
        problems.append(
            f"test 'timeout', host {targets[0]}: {quick.get('status')!r}, stdout "
            f"{quick.get('stdout')!r}"
        )
    slow = _command(_host(slow_test, targets[2], problems), "timeout", problems)
    if slow:
        if slow.get("status") != "timeout":
            problems.append(
                f"test 'timeout', host {targets[2]}: {slow.get('status')!r}, expected 'timeout'"
            )
        duration = slow.get("duration_s")
        if not _is_number(duration) or not 0.5 <= duration < 10:
            problems.append(
                f"test 'timeout', host {targets[2]}: ran {duration!r} s, expected "
                "about 1 s (killed at its -timeout)"
            )
    return problems


def check_demo_results(doc: object, windows: bool = WINDOWS) -> list[str]:
    """Problems with the JSON of `netjobs demo` (on Windows it runs demo-windows.cfg,
    whose outputs differ: there only the statuses and the spread are checked)."""
    problems: list[str] = []
    tests = _tests_by_label(doc, problems)
    if problems:
        return problems
    if list(tests) != list(DEMO_TESTS):
        return [f"demo tests are {list(tests)}, expected {list(DEMO_TESTS)}"]
    for label, test in tests.items():
        hosts = test.get("hosts") or []
        if len(hosts) != 3:
            problems.append(f"demo test {label!r}: {len(hosts)} hosts, expected 3")
        for host in hosts:
            if not host.get("agent_version"):
                problems.append(
                    f"demo test {label!r}, host {host.get('target')!r}: agent not "
                    f"reached ({host.get('error')!r})"
                )
        if test.get("status") != "passed":
            problems.append(
                f"demo test {label!r} is {test.get('status')!r} "
                f"({test.get('reason')!r}), expected 'passed'"
            )
        _check_spread(test, problems)
    if not windows:
        outputs = " ".join(
            str(c.get("stdout", ""))
            for host in tests["start-together"]["hosts"]
            for c in host.get("commands") or []
        )
        for n in (1, 2, 3):
            if f"agent {n} started at" not in outputs:
                problems.append(f"demo: no 'agent {n} started at' in the start-together outputs")
    return problems


# -- the checks -------------------------------------------------------------------------


class Smoke:
    def __init__(self, dist: Path, work: Path) -> None:
        self.dist = dist
        self.work = work
        self.procs = Processes()
        self.figures: dict[str, object] = {}
        self.agent_version: str | None = None
        self.token_file = work / "token"
        self.token_file.write_text(secrets.token_urlsafe(32) + "\n", encoding="ascii")
        if not WINDOWS:
            self.token_file.chmod(0o600)
        self.agents: list[tuple[subprocess.Popen, int]] = []

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every executable: user directories inside the work dir."""
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key != "NETJOBS_TOKEN"}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            APPDATA=str(home / "AppData" / "Roaming"),
            LOCALAPPDATA=str(home / "AppData" / "Local"),
            NETJOBS_GUI_SETTINGS_DIR=str(self.work / "gui-settings"),
        )
        env.update(extra)
        return env

    # agent ------------------------------------------------------------------------------

    def start_agent(
        self, argv_tail: Sequence[str], timeout: float = 20.0, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen, re.Match, float, LineReader]:
        agent = exe("netjobs-agent", self.dist)
        log_file = open(self.work / f"agent-{len(self.procs.started)}.log", "wb")
        started = time.monotonic()
        try:
            process = self.procs.start(
                [agent, *argv_tail],
                stdout=subprocess.PIPE,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                env=env or self.env(),
            )
        finally:
            log_file.close()
        reader = LineReader(process.stdout)
        match = reader.wait_for(LISTENING, timeout)
        seconds = time.monotonic() - started
        if match is None:
            self.procs.stop(process)
            logged = Path(log_file.name).read_text(encoding="utf-8", errors="replace")
            raise SmokeFailure(
                f"the agent ({' '.join(argv_tail)}) did not say where it listens "
                f"within {timeout:g} s\n--- stdout\n{reader.text()}"
                f"--- stderr\n{logged}"
            )
        return process, match, seconds, reader

    def check_agent(self) -> None:
        agent = exe("netjobs-agent", self.dist)
        done = self.procs.run([agent, "--version"], timeout=60, env=self.env())
        match = re.fullmatch(r"netjobs-agent (\S+)\s*", done.stdout)
        if done.returncode != 0 or not match:
            raise SmokeFailure(
                f"netjobs-agent --version: exit {done.returncode}, "
                f"printed {done.stdout!r} {done.stderr!r}"
            )
        self.agent_version = match.group(1)
        done = self.procs.run([agent, "--help"], timeout=60, env=self.env())
        if done.returncode != 0 or "usage:" not in done.stdout or "--token-file" not in done.stdout:
            raise SmokeFailure(
                f"netjobs-agent --help: exit {done.returncode}, printed {done.stdout[:300]!r}"
            )
        log(f"agent --version, --help: ok ({self.agent_version})")

        times = []
        for _ in range(3):
            process, _match, seconds, _reader = self.start_agent(
                ["--bind", "127.0.0.1", "--port", "0", "--token-file", str(self.token_file)]
            )
            times.append(seconds)
            self.procs.stop(process)
        median = statistics.median(times)
        self.figures["agent_listening_s"] = {
            "median": round(median, 3),
            "max": round(max(times), 3),
        }
        # A figure, not a check: on a loaded machine it says nothing about the build.
        log(f"agent start-up to listening: median {median:.3f} s, max {max(times):.3f} s")
        self.check_agent_defaults()

    def check_agent_defaults(self) -> None:
        """No arguments: default port on every address, a token created in the config dir."""
        if not port_is_free(DEFAULT_PORT, "0.0.0.0"):
            log(f"agent without arguments: SKIPPED (port {DEFAULT_PORT} is in use here)")
            return
        env = self.env()
        home = Path(env["HOME"])
        process, match, _seconds, reader = self.start_agent([], env=env)
        time.sleep(0.5)  # the other addresses and the token line follow the first one
        self.procs.stop(process)
        printed = reader.drain(5.0)
        tokens = [path for path in home.rglob("token") if path.is_file()]
        problems = []
        if int(match.group(2)) != DEFAULT_PORT:
            problems.append(f"listens on port {match.group(2)}, expected {DEFAULT_PORT}")
        if not tokens:
            problems.append(f"created no token file under the (temporary) home {home}")
        elif not any(str(path) in printed for path in tokens):
            problems.append(f"does not print where its token is ({tokens[0]})")
        if problems:
            raise SmokeFailure(
                "netjobs-agent without arguments: "
                + "; ".join(problems)
                + f"\n--- stdout\n{printed}"
            )
        log(f"agent without arguments: ok (port {DEFAULT_PORT}, token file printed)")

    def start_agents(self) -> list[int]:
        ports = []
        for _ in range(3):
            process, match, _seconds, _reader = self.start_agent(
                ["--bind", "127.0.0.1", "--port", "0", "--token-file", str(self.token_file)]
            )
            self.agents.append((process, int(match.group(2))))
            ports.append(int(match.group(2)))
        return ports

    # cli ----------------------------------------------------------------------------------

    def check_cli(self) -> None:
        cli = exe("netjobs", self.dist)
        times = []
        for _ in range(3):
            started = time.monotonic()
            done = self.procs.run([cli, "--version"], timeout=60, env=self.env())
            times.append(time.monotonic() - started)
            if done.returncode != 0 or not done.stdout.startswith("netjobs "):
                raise SmokeFailure(
                    f"netjobs --version: exit {done.returncode}, printed "
                    f"{done.stdout!r} {done.stderr!r}"
                )
        self.figures["cli_version_s"] = round(statistics.median(times), 3)
        log(f"cli --version: ok, {statistics.median(times):.3f} s (median of 3)")

        ports = self.start_agents()
        config = self.work / "smoke.cfg"
        config.write_text(smoke_config(ports), encoding="utf-8")
        out = self.work / "out.json"
        started = time.monotonic()
        done = self.procs.run(
            [cli, "--token-file", self.token_file, "--json", out, config],
            timeout=120,
            env=self.env(),
        )
        self.figures["cli_run_s"] = round(time.monotonic() - started, 2)
        detail = f"\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        if done.returncode != 1:
            raise SmokeFailure(
                f"netjobs CONFIG: exit {done.returncode}, expected 1 (one test "
                f"fails on purpose){detail}"
            )
        if not out.is_file():
            raise SmokeFailure(f"netjobs --json {out}: no file written{detail}")
        try:
            doc = json.loads(out.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SmokeFailure(f"{out} is not JSON: {exc}") from None
        problems = check_run_results(doc, ports, self.agent_version)
        if problems:
            raise SmokeFailure("netjobs CONFIG --json: " + "\n  ".join(["", *problems]) + detail)
        spread = doc["tests"][0]["start_spread_ms"]
        self.figures["cli_start_spread_ms"] = spread
        log(
            f"cli run of 3 tests on 3 agents: ok, {self.figures['cli_run_s']} s, start spread "
            f"{spread:.3f} ms"
        )
        if not WINDOWS:
            self.check_cli_terminal(config)
        self.check_demo()

    def check_cli_terminal(self, config: Path) -> None:
        """`netjobs -v` on a terminal draws rich's live table (POSIX: a pseudo-terminal)."""
        import pty
        import select

        master, slave = pty.openpty()
        process = self.procs.start(
            [exe("netjobs", self.dist), "-v", "--token-file", self.token_file, config],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=self.env(),
        )
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    if process.poll() is not None:
                        break
                    continue
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other side is closed
                    break
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(master)
        self.procs.stop(process)
        shown = b"".join(chunks).decode("utf-8", "replace")
        if process.returncode != 1 or "Traceback" in shown or "together" not in shown:
            raise SmokeFailure(
                f"netjobs -v CONFIG on a terminal: exit {process.returncode}\n"
                f"--- terminal\n{shown[-3000:]}"
            )
        log("cli -v on a terminal (live table): ok")

    def check_demo(self) -> None:
        busy = [port for port in DEMO_PORTS if not port_is_free(port)]
        if busy:
            raise SmokeFailure(f"netjobs demo needs ports {DEMO_PORTS}, but {busy} are in use")
        out = self.work / "demo.json"
        started = time.monotonic()
        done = self.procs.run(
            [exe("netjobs", self.dist), "demo", "--json", out], timeout=120, env=self.env()
        )
        self.figures["demo_s"] = round(time.monotonic() - started, 2)
        detail = f"\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        if done.returncode not in ((0, 1) if WINDOWS else (0,)):
            raise SmokeFailure(f"netjobs demo: exit {done.returncode}{detail}")
        try:
            doc = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SmokeFailure(f"netjobs demo --json: {exc}{detail}") from None
        problems = check_demo_results(doc)
        time.sleep(0.5)
        left = [port for port in DEMO_PORTS if someone_listens(port)]
        if left:
            problems.append(
                f"agents still listen on {left} after the demo ended (it must stop "
                "the agents it started)"
            )
        if problems:
            raise SmokeFailure("netjobs demo: " + "\n  ".join(["", *problems]) + detail)
        log(f"cli demo: ok, {self.figures['demo_s']} s")

    # gui ----------------------------------------------------------------------------------

    def gui_has_smoke_hook(self) -> bool:
        """Whether the GUI these executables were built from has the flag (the windowed
        Windows executable has no stdout, so --help cannot tell)."""
        return any(
            GUI_SMOKE_FLAG in path.read_text(encoding="utf-8", errors="replace")
            for path in (ROOT / "netjobs_gui").glob("*.py")
        )

    def check_gui(self) -> None:
        gui = exe("netjobs-gui", self.dist)
        env = self.env(QT_QPA_PLATFORM="offscreen")
        started = time.monotonic()
        done = self.procs.run([gui, "--version"], timeout=120, env=env)
        seconds = time.monotonic() - started
        # A windowed Windows executable has no stdout: only its exit status tells.
        if done.returncode != 0 or (not WINDOWS and not done.stdout.startswith("netjobs-gui ")):
            raise SmokeFailure(
                f"netjobs-gui --version (offscreen): exit {done.returncode}\n"
                f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
        self.figures["gui_version_s"] = round(seconds, 3)
        log(f"gui --version (offscreen, QApplication created): ok, {seconds:.3f} s")

        if not self.agents:
            self.start_agents()
        ports = [port for _process, port in self.agents]
        config = self.work / "gui.cfg"
        config.write_text(smoke_config(ports), encoding="utf-8")
        secret = self.token_file.read_text(encoding="ascii").strip()
        env = self.env(QT_QPA_PLATFORM="offscreen", NETJOBS_TOKEN=secret)
        if self.gui_has_smoke_hook():
            started = time.monotonic()
            done = self.procs.run([gui, GUI_SMOKE_FLAG, config], timeout=120, env=env)
            seconds = time.monotonic() - started
            if done.returncode != 0:
                raise SmokeFailure(
                    f"netjobs-gui {GUI_SMOKE_FLAG} {config}: exit "
                    f"{done.returncode}\n--- stdout\n{done.stdout}\n"
                    f"--- stderr\n{done.stderr}"
                )
            self.figures["gui_smoke_test_s"] = round(seconds, 2)
            log(
                f"gui {GUI_SMOKE_FLAG} (window up, config opened, hosts checked): ok, "
                f"{seconds:.2f} s"
            )
            return
        stay = 5.0
        err_file = self.work / "gui-stderr.log"
        with open(err_file, "wb") as err:
            process = self.procs.start(
                [gui, config],
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            process.wait(stay)
        except subprocess.TimeoutExpired:
            pass
        code = process.poll()
        self.procs.stop(process)
        stderr = err_file.read_text(encoding="utf-8", errors="replace")
        if code is not None or "Traceback" in stderr:
            raise SmokeFailure(
                f"netjobs-gui {config} (offscreen) "
                + (
                    f"exited with {code} within {stay:g} s"
                    if code is not None
                    else "printed a traceback"
                )
                + f"\n--- stderr\n{stderr}"
            )
        log(
            f"gui start-up with a config (offscreen): ok, still up after {stay:g} s "
            f"(no {GUI_SMOKE_FLAG} hook in netjobs_gui yet: it could not check its hosts)"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="smoke.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=["agent", "cli", "gui"],
        help="check only these executables (repeatable)",
    )
    parser.add_argument("--dist", type=Path, default=DIST, help="where the executables are")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = args.only or ["agent", "cli", "gui"]
    names = {
        "agent": ["netjobs-agent"],
        "cli": ["netjobs", "netjobs-agent"],
        "gui": ["netjobs-gui", "netjobs-agent"],
    }
    missing = sorted(
        {
            str(exe(n, args.dist))
            for key in wanted
            for n in names[key]
            if not exe(n, args.dist).is_file()
        }
    )
    if missing:
        print(
            f"smoke: FAILED: missing {', '.join(missing)}: run build_scripts/build.py first",
            file=sys.stderr,
        )
        return 1
    work = Path(tempfile.mkdtemp(prefix="netjobs-smoke-"))
    smoke = Smoke(args.dist, work)
    started = time.monotonic()
    steps: dict[str, Callable[[], None]] = {
        "agent": smoke.check_agent,
        "cli": smoke.check_cli,
        "gui": smoke.check_gui,
    }
    try:
        for key in ("agent", "cli", "gui"):
            if key in wanted:
                steps[key]()
    except SmokeFailure as exc:
        print(f"smoke: FAILED: {exc}\nsmoke: work directory kept: {work}", file=sys.stderr)
        return 1
    finally:
        smoke.procs.stop_all()
    total = time.monotonic() - started
    smoke.figures["total_s"] = round(total, 1)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps({"platform": sys.platform, **smoke.figures}, indent=2) + "\n", encoding="utf-8"
    )
    log(f"all checks passed in {total:.1f} s ({', '.join(wanted)})")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
