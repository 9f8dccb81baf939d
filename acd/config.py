"""Build a :class:`~acd.router.Router` from a loaded configuration.

The router itself knows nothing of TOML or pydantic; this is the one place
that turns ``queues.toml``, the agents' skills in ``extensions.toml`` and
``[acd]`` into its specs and settings.
"""

from __future__ import annotations

from acd.queues import Destination, EscalationStep, QueueSpec
from acd.router import AcdSettings, Router
from ccserver.config.schema import Config, Queue

__all__ = ["acd_settings", "overflow_destination", "queue_spec", "router_from_config"]


def overflow_destination(config: Config, queue: Queue) -> Destination | None:
    """The queue's ``overflow`` with a bare name resolved to a queue or a flow."""
    target = queue.overflow_target
    if target is None:
        return None
    kind, name = target
    if kind is None:
        kind = "queue" if name in config.queues else "flow"
    return Destination(kind, name)


def queue_spec(config: Config, name: str) -> QueueSpec:
    """One queue's routing spec."""
    q = config.queues[name]
    return QueueSpec(
        name=name,
        members=tuple(q.members),
        ring_timeout=q.ring_timeout,
        wrap_up=q.wrap_up,
        strategy=q.strategy,
        penalties=dict(q.penalties),
        required_skills=dict(q.required_skills),
        retry=q.retry,
        max_wait=q.max_wait,
        overflow=overflow_destination(config, q),
        join_empty=q.join_empty,
        leave_empty=q.leave_empty,
        service_level=q.service_level_seconds,
        service_level_target=q.service_level_target,
        announce_position=q.announce_position,
        announce_wait=q.announce_wait,
        announce_every=q.announce_every,
        escalation=tuple(
            EscalationStep(step.after, step.lower_by, step.drop, step.add_queues)
            for step in q.escalation
        ),
    )


def acd_settings(config: Config) -> AcdSettings:
    acd = config.acd
    return AcdSettings(
        aging_rate=acd.aging_rate,
        tiers=dict(acd.tiers),
        default_tier=acd.default_tier,
        reason_codes=dict(acd.reason_codes),
        stats_window=acd.stats_window,
        seed=acd.random_seed,
    )


def router_from_config(config: Config) -> Router:
    """A router with every queue, every agent (with its skills) and the ``[acd]`` rules."""
    return Router(
        {name: queue_spec(config, name) for name in config.queues},
        skills={number: dict(ext.skills) for number, ext in config.agents().items()},
        settings=acd_settings(config),
    )
