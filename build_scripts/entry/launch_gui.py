"""PyInstaller entry script of netjobs-gui: runs netjobs_gui.__main__:main."""

import sys

from netjobs_gui.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
