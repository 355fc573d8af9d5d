"""PyInstaller entry script of netjobs-agent: runs netjobs_agent.__main__:main."""

import sys

from netjobs_agent.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
