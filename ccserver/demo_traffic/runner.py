"""Runs the demo traffic against a node: the agents' phones, the customers' calls, the end.

Owned by whoever starts it (``ccserver run --demo-traffic`` in
``ccserver/app.py``): :meth:`DemoTraffic.start` registers the agents and
starts the one task that places calls; :meth:`DemoTraffic.stop` cancels it,
hangs every demo call up and unregisters the agents. The run ends by itself
after its call count or duration, once its last call is over.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping

from ccserver.demo_traffic.agent import DemoAgent
from ccserver.demo_traffic.caller import DemoCallers
from ccserver.demo_traffic.plan import CallScript, DemoPlan, DemoSettings
from ccserver.demo_traffic.ua import log
from ccserver.media.endpoint import RtpPorts
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.transport import Address
from ivr.audio import tone

__all__ = ["TRUNK_ADDRESS", "DemoTraffic"]

TRUNK_ADDRESS = "127.0.0.2"
"""The demo carrier's address (config/trunks.toml): calls from it need no authentication."""
AGENT_ADDRESS = "127.0.0.1"
RTP_PORTS = (30000, 31998)
"""The demo phones' RTP ports: above the demo node's 20000-29999, below the ephemeral ports."""


class DemoTraffic:
    """Demo agents answering and demo customers calling, for a bounded run."""

    def __init__(
        self,
        settings: DemoSettings,
        server: Address,
        passwords: Mapping[str, str],
        *,
        trunk_address: str = TRUNK_ADDRESS,
    ) -> None:
        missing = [ext for ext in settings.agents if ext not in passwords]
        if missing:
            raise ValueError(f"demo agents {', '.join(missing)} are not extensions of the config")
        self.settings = settings
        self.server = server
        self.passwords = passwords
        self.trunk_address = trunk_address
        self.clock = MediaClock()
        # The agents speak a low tone, the customers a higher one, so a
        # capture tells the two directions apart.
        self.agents: list[DemoAgent] = []
        self.callers: DemoCallers | None = None
        self.outcomes: Counter[str] = Counter()
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._registrations: list[asyncio.Task[None]] = []
        self._calls: set[asyncio.Task[None]] = set()
        self._plan: DemoPlan | None = None

    async def start(self) -> None:
        """Register the demo agents (errors raise here), then start placing calls."""
        loop = asyncio.get_running_loop()
        plan = self._plan = DemoPlan(self.settings, loop.time())
        agent_voice = EncodedAudio(tone([220.0], 1.0, level_dbfs=-20.0), "demo-agent")
        caller_voice = EncodedAudio(tone([330.0, 440.0], 1.0, level_dbfs=-20.0), "demo-caller")
        for ext in self.settings.agents:
            agent = DemoAgent(
                ext,
                self.passwords[ext],
                self.server,
                self.clock,
                RtpPorts(AGENT_ADDRESS, *RTP_PORTS),
                agent_voice,
                plan.agent_times,
                host=AGENT_ADDRESS,
            )
            await agent.start()
            self.agents.append(agent)
        self.callers = DemoCallers(
            self.trunk_address,
            self.server,
            self.clock,
            RtpPorts(self.trunk_address, *RTP_PORTS),
            caller_voice,
        )
        await self.callers.start()
        for agent in self.agents:
            agent.on_answered = self.callers.agent_answered
            agent.on_hung_up = self.callers.agent_hung_up
            ready: asyncio.Future[None] = loop.create_future()
            self._registrations.append(
                loop.create_task(agent.stay_registered(ready), name=f"demo-register-{agent.ext}")
            )
            await asyncio.wait_for(ready, 10)
        log.info(
            "demo traffic: %d agents registered; up to %d calls at %.1f a minute for %.0f s "
            "from %s",
            len(self.agents),
            self.settings.calls,
            self.settings.rate,
            self.settings.duration,
            self.trunk_address,
        )
        self._task = loop.create_task(self._run(), name="demo-traffic")

    async def _run(self) -> None:
        assert self._plan is not None and self.callers is not None
        plan, callers = self._plan, self.callers
        loop = asyncio.get_running_loop()
        while (due := plan.next_time()) is not None:
            await asyncio.sleep(max(0.0, due - loop.time()))  # the arrival schedule itself
            script = plan.take(loop.time(), callers.busy_numbers())
            if script is not None:
                task = loop.create_task(self._one_call(script), name=f"demo-call-{script.number}")
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
        if self._calls:
            await asyncio.wait(list(self._calls))
        log.info(
            "demo traffic finished: %d calls placed; %s",
            plan.placed,
            ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none",
        )
        self.finished.set()

    async def _one_call(self, script: CallScript) -> None:
        assert self.callers is not None
        try:
            outcome = await self.callers.call(script)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("demo call from %s failed", script.number)
            outcome = "error"
        self.outcomes[outcome] += 1

    async def stop(self) -> None:
        """Cancel the run, hang up every demo call, unregister the agents."""
        tasks = [t for t in (self._task, *self._calls) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.callers is not None:
            await self.callers.close()
        for task in self._registrations:
            task.cancel()
        await asyncio.gather(*self._registrations, return_exceptions=True)
        for agent in self.agents:
            for line in list(agent.lines.values()):
                agent.hang_up(line)
            await agent.unregister()
            await agent.close()
        self.clock.close()
