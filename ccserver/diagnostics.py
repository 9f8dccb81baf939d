"""Opt-in memory diagnostics: what grew between two moments, written to the log.

Started with the environment variable ``CCSERVER_TRACEMALLOC=N`` (N frames of
traceback per allocation, 1 is usually enough); each SIGUSR2 then logs, against
the previous SIGUSR2 (the first one only takes the baseline):

* the top source lines by memory allocated since and still alive (tracemalloc);
* the Python object types whose count grew most (the garbage collector's view,
  which also sees objects allocated before tracing started);
* open file descriptors by kind (sockets, pipes, files), which shows a socket
  or file left open on some call path.

It is for finding a leak, not for production: tracing slows every allocation
(about 2x in the call path) and a dump stops the loop while it runs (a second
or so). ``CCSERVER_TRACEMALLOC_TOP`` sets how many lines of each list are logged
(default 25). See docs/performance.md, "Memory and soak".
"""

from __future__ import annotations

import gc
import logging
import os
import time
import tracemalloc
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

__all__ = ["MemoryDiagnostics"]

log = logging.getLogger(__name__)

ENV_FRAMES = "CCSERVER_TRACEMALLOC"
ENV_TOP = "CCSERVER_TRACEMALLOC_TOP"

_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def fd_kinds(fd_dir: Path = Path("/proc/self/fd")) -> Counter[str]:
    """Open descriptors by kind: ``socket``, ``pipe``, ``anon_inode:[eventpoll]``, ``file``."""
    kinds: Counter[str] = Counter()
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return kinds
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        if target.startswith(("socket:", "pipe:")):
            kinds[target.split(":", 1)[0]] += 1
        elif target.startswith("anon_inode:"):
            kinds[target] += 1
        else:
            kinds["file"] += 1
    return kinds


def object_counts() -> Counter[str]:
    """Live objects tracked by the garbage collector, by type name."""
    return Counter(type(obj).__qualname__ for obj in gc.get_objects())


class MemoryDiagnostics:
    """The SIGUSR2 dump of tracemalloc, object and descriptor growth (module docstring)."""

    def __init__(self, frames: int, top: int = 25) -> None:
        if frames < 1:
            raise ValueError(f"{ENV_FRAMES} must be a number of frames >= 1, got {frames}")
        self.frames = frames
        self.top = top
        self._snapshot: tracemalloc.Snapshot | None = None
        self._objects: Counter[str] = Counter()
        self._fds: Counter[str] = Counter()
        self._at = 0.0
        self.dumps = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MemoryDiagnostics | None:
        """Diagnostics when ``CCSERVER_TRACEMALLOC`` asks for them, else None."""
        value = env.get(ENV_FRAMES, "").strip()
        if not value or value == "0":
            return None
        try:
            frames = int(value)
            top = int(env.get(ENV_TOP, "25"))
        except ValueError as exc:
            raise ValueError(
                f"{ENV_FRAMES} and {ENV_TOP} must be whole numbers, got "
                f"{value!r} and {env.get(ENV_TOP)!r}"
            ) from exc
        return cls(frames, top)

    def start(self) -> None:
        tracemalloc.start(self.frames)
        log.warning(
            "memory diagnostics on (%s=%d): send SIGUSR2 to log what grew since the last one",
            ENV_FRAMES,
            self.frames,
        )

    def stop(self) -> None:
        tracemalloc.stop()
        self._snapshot = None

    def dump(self) -> None:
        """Log growth since the previous dump; the first one only takes the baseline."""
        began = time.monotonic()
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
        objects = object_counts()
        fds = fd_kinds()
        current, peak = tracemalloc.get_traced_memory()
        self.dumps += 1
        n = self.dumps
        log.info(
            "memory dump %d: traced %d KB (peak %d KB), %d gc objects, fds %s",
            n,
            current // 1024,
            peak // 1024,
            sum(objects.values()),
            dict(sorted(fds.items())),
        )
        if self._snapshot is not None:
            seconds = began - self._at
            group = "traceback" if self.frames > 1 else "lineno"
            stats = snapshot.compare_to(self._snapshot, group)
            grown = sorted(stats, key=lambda s: s.size_diff, reverse=True)[: self.top]
            log.info("memory dump %d: top allocations grown in %.0f s", n, seconds)
            for stat in grown:
                where = " <- ".join(f"{frame.filename}:{frame.lineno}" for frame in stat.traceback)
                log.info(
                    "memory dump %d: %+d KB %+d blocks at %s",
                    n,
                    stat.size_diff // 1024,
                    stat.count_diff,
                    where,
                )
            growth = objects.copy()
            growth.subtract(self._objects)
            log.info("memory dump %d: object types grown in %.0f s", n, seconds)
            for name, diff in growth.most_common(self.top):
                if diff <= 0:
                    break
                log.info("memory dump %d: %+d %s (now %d)", n, diff, name, objects[name])
            fd_growth = fds.copy()
            fd_growth.subtract(self._fds)
            log.info(
                "memory dump %d: fds grown %s",
                n,
                {k: v for k, v in sorted(fd_growth.items()) if v},
            )
        self._snapshot, self._objects, self._fds, self._at = snapshot, objects, fds, began
        log.info("memory dump %d done in %.2f s", n, time.monotonic() - began)
