"""`python -m netjobs_gui [CONFIG]` and the `netjobs-gui` entry point."""

from __future__ import annotations

import sys


def main() -> int:
    from netjobs_gui.app import run

    return run(sys.argv)


if __name__ == "__main__":
    sys.exit(main())
