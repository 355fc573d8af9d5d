#!/usr/bin/env python3
"""How fast does a command's output reach the controller, and at what memory cost?

One real local agent (`python -m netjobs_agent`) and the real `netjobs` CLI with
`--json`, side by side in one run with two raw socket transfers of the same bytes on
loopback, read by a process that counts them: a Python relay (a pipe into a process
that writes them to a TCP socket: what NetJobs adds to it is framing, the HMAC, the
agent's spool and the controller's spool to the run folder) and the kernel's floor,
sendfile(2) of the file straight into the socket. Cases:

* 200 MiB of random bytes and 200 MiB of text (`cat FILE`): NetJobs and raw, rates
  and their ratio; sha256 of the file in the run folder and of the JSON's
  `stdout_sha256` against the file the command printed;
* 1 GiB of zeros: the controller's peak RSS (target < 150 MB).

NetJobs' time is the CLI's wall time minus that of the same run of `true` (process
start, connection, clock measurement: fixed costs, reported separately), so the
rate is that of the output itself. Peak RSS is the child's own (os.wait4).

    .venv/bin/python bench/output.py                 # the default cases (~1-2 minutes)
    .venv/bin/python bench/output.py --mib 50 --big-mib 256 --repeats 1

Everything it starts is stopped at the end; its files go to a temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netjobs_core import local_agents  # noqa: E402

MIB = 1024**2
# The kernel's floor for the same bytes: the file straight into the socket, no copy
# through any process (what a pipe -> Python -> socket relay is measured against).
SENDFILE_SENDER = """
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "rb") as f:
    size, offset = os.fstat(f.fileno()).st_size, 0
    while offset < size:
        offset += os.sendfile(s.fileno(), f.fileno(), offset, size - offset)
s.close()
"""
SENDER = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
read = sys.stdin.buffer.raw.read
while chunk := read(262144):
    s.sendall(chunk)
s.close()
"""


@dataclass
class Measure:
    seconds: float
    rss_kib: int
    cpu_s: float  # user + system of the transferring processes (not `cat`)
    sha_ok: bool | None = None


def _wait4(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, float]:
    """(exit status, peak RSS in KiB, CPU seconds) of the child itself."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"{process.args} ran past {timeout} s")
        time.sleep(0.005)


def raw_transfer(path: Path, sendfile: bool = False) -> Measure:
    """`cat FILE | sender` -> a socket -> this process, counting (`sendfile`: the
    sender sends the file itself with sendfile(2), no cat, no pipe)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        began = time.perf_counter()
        own = resource.getrusage(resource.RUSAGE_SELF)
        if sendfile:
            cat = subprocess.Popen(["true"])  # nothing to pipe: kept for the clean-up below
            sender = subprocess.Popen([sys.executable, "-c", SENDFILE_SENDER, str(port), str(path)])
        else:
            cat = subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)
            sender = subprocess.Popen([sys.executable, "-c", SENDER, str(port)], stdin=cat.stdout)
            assert cat.stdout is not None
            cat.stdout.close()
        try:
            conn, _ = listener.accept()
            buffer = bytearray(MIB)
            total = 0
            with conn:
                while count := conn.recv_into(buffer):
                    total += count
            seconds = time.perf_counter() - began
            after = resource.getrusage(resource.RUSAGE_SELF)
            _, _, sender_cpu = _wait4(sender, 60)
        finally:
            for process in (cat, sender):
                if process.returncode is None:
                    process.kill()
                    process.wait()
    assert total == path.stat().st_size, (total, path.stat().st_size)
    receiver_cpu = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
    return Measure(seconds, 0, sender_cpu + receiver_cpu)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def netjobs_run(
    workdir: Path, token_file: Path, agent_pid: int, port: int, command: str, expect: Path | None
) -> Measure:
    config = workdir / "bench.cfg"
    config.write_text(f't:\n127.0.0.1:{port}: "{command}"\nend\n')
    results = workdir / "runs"
    json_path = workdir / "out.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "netjobs_core.cli", str(config), "--token-file"]
    argv += [str(token_file), "--json", str(json_path), "--results", str(results), "--no-history"]
    began = time.perf_counter()
    agent_ticks = _cpu_ticks(agent_pid)
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=workdir
    )
    status, rss, cpu = _wait4(process, 600)
    seconds = time.perf_counter() - began
    cpu += (_cpu_ticks(agent_pid) - agent_ticks) / os.sysconf("SC_CLK_TCK")
    assert process.stderr is not None
    err = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if status != 0:
        raise RuntimeError(f"netjobs failed ({status}):\n{err[-2000:]}")
    sha_ok = None
    document = json.loads(json_path.read_text())
    item = document["tests"][0]["hosts"][0]["commands"][0]
    spooled = json_path.parent / item["stdout_file"] if "stdout_file" in item else None
    if expect is not None:
        want = _sha256(expect)
        sha_ok = item["stdout_sha256"] == want and spooled is not None and _sha256(spooled) == want
    for folder in results.iterdir():  # keep the disk free for the next case
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    return Measure(seconds, rss, cpu, sha_ok)


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def _make_files(workdir: Path, mib: int) -> dict[str, Path]:
    random_file = workdir / "random.bin"
    with open(random_file, "wb") as file:
        for _ in range(mib):
            file.write(os.urandom(MIB))
    text_file = workdir / "text.txt"
    with open(text_file, "wb") as file:
        line = 0
        while file.tell() < mib * MIB:
            file.write(
                "".join(
                    f"{n:>10} fio: read: IOPS=123k, BW=480MiB/s (503MB/s)\n"
                    for n in range(line, line + 20000)
                ).encode()
            )
            line += 20000
        file.truncate(mib * MIB)
    return {"random": random_file, "text": text_file}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="size of the rate cases (200)")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the RSS case (1024)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each case (2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netjobs-bench-output-") as tmp:
        workdir = Path(tmp)
        token_file = workdir / "token"
        token_file.write_text(secrets.token_urlsafe(32) + "\n")
        token_file.chmod(0o600)
        files = _make_files(workdir, args.mib)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        agent = local_agents.start_agent(
            token_file, "--quiet", port=0, bind="127.0.0.1", env=env, cwd=REPO
        )
        pid, port = agent.process.pid, agent.port
        try:
            rows: list[tuple[str, Measure | None, Measure | None, Measure, float]] = []
            fixed = [netjobs_run(workdir, token_file, pid, port, "true", None) for _ in range(2)]
            base = min(fixed, key=lambda m: m.seconds)
            for kind, path in files.items():
                raws, sends, runs = [], [], []
                for _ in range(args.repeats):  # interleaved: the same load for all three
                    sends.append(raw_transfer(path, sendfile=True))
                    raws.append(raw_transfer(path))
                    runs.append(netjobs_run(workdir, token_file, pid, port, f"cat {path}", path))
                best = min(runs, key=lambda m: m.seconds)
                best.sha_ok = all(m.sha_ok for m in runs)
                best.rss_kib = max(m.rss_kib for m in runs)
                rows.append(
                    (
                        f"{args.mib} MiB {kind}",
                        min(sends, key=lambda m: m.seconds),
                        min(raws, key=lambda m: m.seconds),
                        best,
                        args.mib,
                    )
                )
            zeros = f"head -c {args.big_mib * MIB} /dev/zero"
            big = netjobs_run(workdir, token_file, pid, port, zeros, None)
            rows.append((f"{args.big_mib} MiB zeros", None, None, big, args.big_mib))
            agent_peak = _peak_rss_kib(pid)
        finally:
            agent.kill()
    print(f"# bench/output.py on {platform.node()} ({os.cpu_count()} CPUs, {platform.platform()})")
    print(
        f"# netjobs fixed cost (a run of `true`): {base.seconds:.2f} s and {base.cpu_s:.2f} "
        "CPU s, subtracted from the rates and CPU figures"
    )
    print(f"# agent peak RSS over all cases (VmHWM): {agent_peak / 1024 * 1.048576:.0f} MB")
    print()
    print(
        "| case | sendfile MiB/s | Python relay MiB/s | netjobs MiB/s | of the relay "
        "| of sendfile | incl. fixed cost | relay CPU s/GiB | netjobs CPU s/GiB "
        "| ctl peak RSS MB | sha256 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for case, send, raw, run, mib in rows:
        rate = mib / max(1e-6, run.seconds - base.seconds)
        cpu = (run.cpu_s - base.cpu_s) * 1024 / mib
        send_rate = f"{mib / send.seconds:.0f}" if send else "-"
        of_send = f"{rate / (mib / send.seconds):.0%}" if send else "-"
        raw_rate = f"{mib / raw.seconds:.0f}" if raw else "-"
        ratio = f"{rate / (mib / raw.seconds):.0%}" if raw else "-"
        raw_cpu = f"{raw.cpu_s * 1024 / mib:.1f}" if raw else "-"
        sha = "-" if run.sha_ok is None else "equal" if run.sha_ok else "DIFFERENT"
        print(
            f"| {case} | {send_rate} | {raw_rate} | {rate:.0f} | {ratio} | {of_send} "
            f"| {mib / run.seconds:.0f} | {raw_cpu} | {cpu:.1f} "
            f"| {run.rss_kib / 1024 * 1.048576:.0f} | {sha} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
