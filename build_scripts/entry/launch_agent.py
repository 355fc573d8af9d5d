"""PyInstaller entry script of netjobs-agent: runs agent.__main__:main."""

import sys

from agent.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
