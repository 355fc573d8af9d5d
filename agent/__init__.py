"""NetJobs agent: runs a controller's commands at the instant it asks for.

Standard library only (it is frozen into a small executable for VMs); from
netjobs_core it uses only `__version__` and the stdlib-only `netjobs_core.wire` layer.
"""
