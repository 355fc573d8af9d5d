"""NetJobs core: config, protocol, clock sync, runner, results, CLI (no Qt)."""

__version__ = "3.2.0"
