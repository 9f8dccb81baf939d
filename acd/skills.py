"""Skill requirements: who may take a call, how well they fit, and how requirements relax.

A call's requirement is a *profile*: a sorted tuple of ``(skill, minimum
proficiency)`` pairs, merged from the queue's required skills and the skills
the call carries (from the IVR or the DID). A profile is hashable and
canonical, so the router can keep one index of matching agents per profile
and queue instead of testing every agent for every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "MAX_PROFICIENCY",
    "MIN_PROFICIENCY",
    "Profile",
    "check_skills",
    "merge",
    "relax",
    "satisfies",
    "score",
]

MIN_PROFICIENCY = 1
MAX_PROFICIENCY = 10

Profile = tuple[tuple[str, int], ...]
"""Required skills as sorted ``(name, minimum)`` pairs; ``()`` requires nothing."""


def check_skills(skills: Mapping[str, int], what: str) -> dict[str, int]:
    """A copy of ``skills`` with every level checked (1 to 10); ValueError names the bad one."""
    for name, level in skills.items():
        if isinstance(level, bool) or not isinstance(level, int):
            raise ValueError(f"{what}: skill {name!r} level must be an integer")
        if not MIN_PROFICIENCY <= level <= MAX_PROFICIENCY:
            raise ValueError(
                f"{what}: skill {name!r} level {level} is outside "
                f"{MIN_PROFICIENCY}-{MAX_PROFICIENCY}"
            )
    return dict(skills)


def merge(*requirements: Mapping[str, int] | Iterable[tuple[str, int]]) -> Profile:
    """One profile from several requirement sets; a skill asked twice keeps the higher minimum."""
    merged: dict[str, int] = {}
    for requirement in requirements:
        pairs = requirement.items() if isinstance(requirement, Mapping) else requirement
        for name, level in pairs:
            merged[name] = max(level, merged.get(name, 0))
    return tuple(sorted(merged.items()))


def satisfies(skills: Mapping[str, int], profile: Profile) -> bool:
    """Whether an agent with ``skills`` has every required skill at its minimum or better."""
    return all(skills.get(name, 0) >= minimum for name, minimum in profile)


def score(skills: Mapping[str, int], profile: Profile) -> int:
    """How well an agent fits: the sum of its proficiencies in the required skills."""
    return sum(skills.get(name, 0) for name, _ in profile)


def relax(profile: Profile, lower_by: int = 0, drop: Iterable[str] = ()) -> Profile:
    """An escalation step: every minimum lowered by ``lower_by`` (not below 1), skills dropped."""
    dropped = set(drop)
    return tuple(
        (name, max(MIN_PROFICIENCY, minimum - lower_by))
        for name, minimum in profile
        if name not in dropped
    )
