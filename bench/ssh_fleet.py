#!/usr/bin/env python3
"""NetJobs over SSH next to pdsh and clush, on the same SSH hosts, in paired rounds.

Makes N network namespaces with one real OpenSSH server each (tests/ssh_lab.py), a
private HOME whose ~/.ssh holds the lab's key, known_hosts and config (never the
user's), then runs `date +%s%N` on every host, each round in a new order:

- `netjobs --ssh CONFIG` (cold: a new controller process, new SSH connections, the
  agent started on each host; its zipapp already cached there by a warm-up run, and
  the controller's bytecode written by it, as an installed NetJobs has it);
- `netjobs --ssh --repeat K CONFIG`: the same plus K-1 more tests on the same agents;
  (its wall - the cold wall of the round) / (K-1) is the cost of one extra test;
- `pdsh -R ssh -w HOSTS` and `clush -w HOSTS` (-o "-F config": the lab's ssh setup).

Per way: wall time, the controller's CPU (the process and its children: pdsh's and
clush's ssh processes count), and the spread of the commands' own timestamps. Then
--bulk MiB from one host: NetJobs in this process (run_test on an SshDialer whose
connection, agent and link a first test made, as for a run's second test) against
`ssh -F config HOST 'head -c ...' > /dev/null` (cold), alternating, each with the
wall time, CPU of its side and MiB/s. Needs root, iproute2, sshd, pdsh.

    sudo .venv/bin/python bench/ssh_fleet.py                # 8 hosts, 10 rounds: ~3 min
    sudo .venv/bin/python bench/ssh_fleet.py --rounds 20 --bulk 200
    git archive COMMIT | tar -x -C /tmp/before   # that commit's cold run beside this one's
    sudo .venv/bin/python bench/ssh_fleet.py --before /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from ssh_lab import Lab, ssh_lab  # noqa: E402

from netjobs_core.config import parse_config  # noqa: E402
from netjobs_core.links import Links  # noqa: E402
from netjobs_core.results import TestStatus  # noqa: E402
from netjobs_core.run_options import RunOptions  # noqa: E402
from netjobs_core.runner import run_test  # noqa: E402
from netjobs_core.ssh import SshDialer  # noqa: E402
from netjobs_core.wire.tokens import Token  # noqa: E402

NETJOBS = [sys.executable, "-m", "netjobs_core.cli"]
CLUSH = str(Path(sys.executable).parent / "clush")
TIMEOUT_S = 120.0


@dataclass
class Sample:
    wall: float  # s
    cpu: float  # s, user + system, the process and the children it waited for
    spread: float | None = None  # ms, the commands' own timestamps; None: not all ran
    rss: float | None = None  # MB, peak resident set of the process or its largest child


# GNU time, where installed, for a process's peak RSS: wait4's own `ru_maxrss` of a child
# of this script counts the Python it was forked from (the memory it had until its exec).
GNU_TIME = "/usr/bin/time"


def timed(
    argv: list[str], env: dict[str, str], out: Path, cwd: Path | None = None
) -> tuple[Sample, int]:
    """Run ARGV with its stdout to OUT; its wall time and CPU (wait4's rusage), and its
    peak RSS where GNU time is installed."""
    rss_file = out.with_suffix(".rss")
    rss_file.unlink(missing_ok=True)
    if Path(GNU_TIME).exists():
        argv = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *argv]
    with out.open("wb") as sink:
        began = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        wall = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        rss = int(rss_file.read_text().split()[-1]) / 1024  # KiB: the last line
    return Sample(wall, usage.ru_utime + usage.ru_stime, rss=rss), proc.returncode


def spread_ms(stamps: list[int], hosts: int) -> float | None:
    return (max(stamps) - min(stamps)) / 1e6 if len(stamps) == hosts else None


def stamps_from_lines(text: str) -> list[int]:
    """`host: 1733...` lines (pdsh, clush): the numbers."""
    found = []
    for line in text.splitlines():
        value = line.rpartition(":")[2].strip()
        if value.isdigit():
            found.append(int(value))
    return found


def stamps_from_json(path: Path) -> list[list[int]]:
    """Per test of a `netjobs --json` document: the hosts' timestamps."""
    document = json.loads(path.read_text())
    tests = []
    for test in document["tests"]:
        stamps = []
        for host in test["hosts"]:
            text = (host["commands"][0].get("stdout") or "").strip()
            if text.isdigit():
                stamps.append(int(text))
        tests.append(stamps)
    return tests


def user_home(lab: Lab, base: Path) -> dict[str, str]:
    """A HOME whose ~/.ssh is the lab's: what `netjobs --ssh` reads, as a user's."""
    home = base / "home"
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(mode=0o700, parents=True)
    shutil.copy(lab.key, dot_ssh / "id_ed25519")
    shutil.copy(lab.config, dot_ssh / "config")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETJOBS_", "SSH_"))}
    # As installed (pip compiles the bytecode; clush's is in site-packages): the
    # warm-up run writes the controller's bytecode under BASE, the rounds read it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | {
        "PYTHONPYCACHEPREFIX": str(base / "pycache"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "cfg"),
        "XDG_DATA_HOME": str(base / "data"),  # the runs' folders: removed with the lab
        "PDSH_SSH_ARGS": f"-F {lab.config} -2 -a -x -l%u %h",
    }


def fleet(
    lab: Lab, base: Path, rounds: int, repeat: int, before: Path | None = None
) -> dict[str, list[Sample]]:
    env = user_home(lab, base)
    hosts = [h.address for h in lab.hosts]
    config = base / "fleet.cfg"
    config.write_text("t:\n" + "".join(f'{a}: "date +%s%N"\n' for a in hosts) + "end\n")
    out = base / "out.txt"
    results = base / "results.json"
    ways = {
        "netjobs --ssh": [*NETJOBS, "--ssh", "--no-history", "--json", str(results), str(config)],
        f"netjobs --ssh --repeat {repeat}": [
            *NETJOBS,
            "--ssh",
            "--no-history",
            "--repeat",
            str(repeat),
            "--json",
            str(results),
            str(config),
        ],
        "pdsh -R ssh": ["pdsh", "-R", "ssh", "-w", ",".join(hosts), "date +%s%N"],
        "clush": [CLUSH, "-w", ",".join(hosts), "-o", f"-F {lab.config}", "date +%s%N"],
    }
    where: dict[str, Path] = {}
    if before is not None:  # another tree's NetJobs (`python -m` finds it from there)
        way = f"netjobs --ssh ({before.name})"
        ways[way], where[way] = ways["netjobs --ssh"], before
    samples: dict[str, list[Sample]] = {way: [] for way in ways}
    samples["netjobs: each extra test"] = []
    for way, argv in ways.items():  # warm-up: the agent's upload, page caches
        _, code = timed(argv, env, out, where.get(way))
        if code != 0:
            raise SystemExit(f"{way} failed ({code}):\n{out.read_text()[-3000:]}")
    names = list(ways)
    for n in range(rounds):
        order = names[n % len(names) :] + names[: n % len(names)]
        if n % 2:
            order.reverse()
        walls: dict[str, float] = {}
        for way in order:
            sample, code = timed(ways[way], env, out, where.get(way))
            if code != 0:
                kept = base.parent / f"ssh_fleet-failed-{os.getpid()}-{n}-{way.split()[0]}.txt"
                kept.write_text(out.read_text())
                print(
                    f"round {n + 1}: {way} exited {code} after {sample.wall:.1f} s "
                    f"(output kept in {kept})",
                    file=sys.stderr,
                )
                continue
            if way.startswith("netjobs"):
                per_test = [spread_ms(s, len(hosts)) for s in stamps_from_json(results)]
                sample.spread = statistics.median(p for p in per_test if p is not None)
            else:
                sample.spread = spread_ms(stamps_from_lines(out.read_text()), len(hosts))
            samples[way].append(sample)
            walls[way] = sample.wall
        cold, warm = walls.get(names[0]), walls.get(names[1])
        if cold is not None and warm is not None:
            samples["netjobs: each extra test"].append(Sample((warm - cold) / (repeat - 1), 0.0))
    return samples


async def _bulk_netjobs(lab: Lab, mib: int, rounds: int) -> list[Sample]:
    host = lab.hosts[0]
    test = parse_config(
        f't:\nssh://{host.address}: "head -c {mib * 2**20} /dev/zero"\nend\n'
    ).tests[0]
    warm = parse_config(f't:\nssh://{host.address}: "true"\nend\n').tests[0]
    samples = []
    links = Links()
    async with SshDialer(lab.options()) as dialer:
        options = RunOptions(Token(os.urandom(32), "unused"), connect_timeout=10, dialer=dialer)
        # The connection, the agent, its link: as for a run's second test.
        await run_test(warm, options, links=links)
        for _ in range(rounds):
            cpu, began = time.process_time(), time.monotonic()
            result = await asyncio.wait_for(run_test(test, options, links=links), TIMEOUT_S)
            sample = Sample(time.monotonic() - began, time.process_time() - cpu)
            if result.status is TestStatus.PASSED:
                samples.append(sample)
            else:
                print(f"bulk over netjobs failed: {result.reason}", file=sys.stderr)
        await links.close()
    return samples


def bulk(lab: Lab, base: Path, mib: int, rounds: int) -> dict[str, list[Sample]]:
    """Alternating: a NetJobs test moving MIB from one host, `ssh cat` of the same."""
    host = lab.hosts[0]
    argv = ["ssh", "-F", str(lab.config), host.address, f"head -c {mib * 2**20} /dev/zero"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
    netjobs: list[Sample] = []
    ssh: list[Sample] = []
    for _ in range(rounds):
        netjobs += asyncio.run(_bulk_netjobs(lab, mib, 1))
        with open(os.devnull, "wb") as sink:
            began = time.monotonic()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(argv, env=env, stdout=sink, check=True, timeout=TIMEOUT_S)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        ssh.append(Sample(time.monotonic() - began, cpu))
    return {f"netjobs --ssh, {mib} MiB": netjobs, f"ssh HOST cat, {mib} MiB": ssh}


def table(samples: dict[str, list[Sample]], hosts: int) -> str:
    rows = [
        f"| {hosts} hosts, `date +%s%N` | wall p50 / max (s) | controller CPU p50 (s) "
        "| stamp spread p50 / max (ms) | peak RSS p50 (MB) |",
        "|---|---|---|---|---|",
    ]
    for way, runs in samples.items():
        if not runs:
            rows.append(f"| {way} | none ran | | | |")
            continue
        walls = [s.wall for s in runs]
        cpus = [s.cpu for s in runs]
        spreads = [s.spread for s in runs if s.spread is not None]
        spread = f"{statistics.median(spreads):.1f} / {max(spreads):.1f}" if spreads else "-"
        cpu = f"{statistics.median(cpus):.3f}" if any(cpus) else "-"
        rss = [s.rss for s in runs if s.rss is not None]
        peak = f"{statistics.median(rss):.0f}" if rss else "-"
        rows.append(
            f"| {way} ({len(runs)}) | {statistics.median(walls):.3f} / {max(walls):.3f} "
            f"| {cpu} | {spread} | {peak} |"
        )
    return "\n".join(rows)


def bulk_table(samples: dict[str, list[Sample]], mib: int) -> str:
    rows = ["| one host | wall p50 (s) | MiB/s p50 | its side's CPU p50 (s) |", "|---|---|---|---|"]
    for way, runs in samples.items():
        wall = statistics.median(s.wall for s in runs) if runs else float("nan")
        cpu = statistics.median(s.cpu for s in runs) if runs else float("nan")
        rows.append(f"| {way} ({len(runs)}) | {wall:.3f} | {mib / wall:.0f} | {cpu:.3f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=6, help="tests of the --repeat way")
    parser.add_argument("--bulk", type=int, default=200, metavar="MIB", help="0: none")
    parser.add_argument("--bulk-rounds", type=int, default=5)
    parser.add_argument(
        "--before",
        type=Path,
        metavar="TREE",
        help="also a cold run of the NetJobs in TREE (git archive of an older commit), "
        "interleaved with the others",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if shutil.which("pdsh") is None or not Path(CLUSH).exists():
        print("needs pdsh (apt-get install pdsh) and clush (ClusterShell)", file=sys.stderr)
        return 2
    os.environ.pop("SSH_AUTH_SOCK", None)
    with tempfile.TemporaryDirectory(prefix="njs-fleet-") as tmp:
        base = Path(tmp)
        (base / "lab").mkdir()
        with ssh_lab(base / "lab", args.hosts) as lab:
            if args.rounds:
                samples = fleet(lab, base, args.rounds, args.repeat, args.before)
                print(table(samples, args.hosts), flush=True)
            if args.bulk:
                print(bulk_table(bulk(lab, base, args.bulk, args.bulk_rounds), args.bulk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
