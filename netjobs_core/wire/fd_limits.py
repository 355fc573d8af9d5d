"""The soft NOFILE limit, raised to the hard one: systemd's default soft limit of 1024
is far below what a flood of idle peers takes on an agent, or what a controller of
1000 hosts (a socket each) needs. Standard library only: the agent and the controller
both call `raise_fd_limit` at start.
"""

from __future__ import annotations

try:
    import resource
except ImportError:  # Windows: no NOFILE limit to raise
    resource = None  # type: ignore[assignment]


def raise_fd_limit() -> int | None:
    """Raise the soft NOFILE limit to the hard one where allowed; the soft limit after."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)  # Linux refuses more than fs.nr_open (default 2**20)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass  # keep what we have; the connection caps follow the limit in force
    return fd_limit()


def fd_limit() -> int | None:
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft
