"""NetJobs agent: runs a controller's commands at the instant it asks for.

Standard library only (it is frozen into a small executable for VMs); from
netjobs_core it uses only `__version__` and the stdlib-only `netjobs_core.wire` layer.

Its records are NamedTuples or plain classes, not dataclasses: a dataclass compiles
its methods at each import, and an agent started over SSH imports all of it at each
run's start, before its host can be prepared.
"""
