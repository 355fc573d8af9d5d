"""The desktop controller's command line (read before Qt starts, and again by the app)."""

from __future__ import annotations

import argparse

from netjobs_core import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netjobs-gui", description="NetJobs desktop controller")
    parser.add_argument("config", nargs="?", help="config file to open")
    parser.add_argument("--version", action="version", version=f"netjobs-gui {__version__}")
    # For the executables' smoke test: open CONFIG, check its hosts, exit 0 if all are fine.
    parser.add_argument("--smoke-test", action="store_true", help=argparse.SUPPRESS)
    return parser
