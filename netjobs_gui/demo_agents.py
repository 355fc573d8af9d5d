"""Local demo agents for the window: what `netjobs demo` starts, kept while the window
is open so that its demo config runs with F5."""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from netjobs_core.demo import demo_config
from netjobs_core.local_agents import AgentStartError, LocalAgent, start_agent
from netjobs_core.session import UsageError, plan_addresses, read_plan
from netjobs_core.wire.address import Address
from netjobs_core.wire.tokens import Token


@dataclass
class DemoAgents:
    agents: list[LocalAgent]
    token: Token
    addresses: frozenset[Address]
    folder: tempfile.TemporaryDirectory[str]

    @classmethod
    def start(cls) -> DemoAgents:
        """An agent on 127.0.0.1 for each port of the demo config, with a fresh token;
        AgentStartError (another program on a port?) or UsageError."""
        addresses = plan_addresses(read_plan(demo_config()))
        folder = tempfile.TemporaryDirectory(prefix="netjobs-demo-")
        secret = secrets.token_urlsafe(32)
        token_file = Path(folder.name) / "token"
        token_file.write_text(secret + "\n")
        token_file.chmod(0o600)
        agents: list[LocalAgent] = []
        try:
            for address in addresses:
                log = Path(folder.name) / f"agent-{address.port}.log"
                agents.append(start_agent(token_file, port=address.port, log=log))
        except AgentStartError as exc:
            for agent in agents:
                agent.stop()
            folder.cleanup()
            raise UsageError(f"{exc} (is another program using the port?)") from None
        token = Token(secret.encode(), "the demo agents' token")
        return cls(agents, token, frozenset(addresses), folder)

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.folder.cleanup()
