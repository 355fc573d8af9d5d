"""PyInstaller entry script of netjobs (the command line): runs netjobs_core.cli:main."""

import sys

from netjobs_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
