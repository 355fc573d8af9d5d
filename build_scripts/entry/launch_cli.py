"""PyInstaller entry script of netjobs (the command line): runs netjobs_core.cli:command."""

from netjobs_core.cli import command

if __name__ == "__main__":
    command()
