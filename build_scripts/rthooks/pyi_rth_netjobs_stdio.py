"""Runtime hook of the windowed GUI executable.

A windowed Windows executable starts with sys.stdout and sys.stderr set to None, so
any print to stderr, logging's last-resort handler or a library writing a warning
would raise. Give them a sink instead (os.devnull). No effect where they exist.
"""

import os
import sys

for _name in ("stdout", "stderr"):
    if getattr(sys, _name) is None:
        setattr(sys, _name, open(os.devnull, "w", encoding="utf-8"))
del _name
