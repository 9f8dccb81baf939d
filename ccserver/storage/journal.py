"""The recorder's journal: every queued change, appended to local disk as JSON lines.

Layout under the journal directory (``<data_dir>/journal`` in the server)::

    lock                      flock()ed by the one process that writes here
    rejected.jsonl            changes the database refused, kept for an operator
    <run>/000000000001.jsonl  one directory per recorder run, segment files
    <run>/000000041873.jsonl  named by the seq of their first operation

A run directory belongs to one :class:`ContactRecorder` object: its operations
are numbered 1, 2, 3… with no gaps (see ``ops.py``). Segments are append-only;
a new one starts past ``segment_bytes``, and a segment is deleted once every
operation in it is committed to the database. A run directory left behind by a
crash is replayed by the next start and then deleted.

All file I/O runs in one worker thread per journal, in submission order, so an
``fsync`` never blocks the event loop and appends never interleave.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Final, Literal, TypeVar
from uuid import uuid4

from .ops import Queued, decode_op

__all__ = [
    "Journal",
    "JournalBusyError",
    "JournalReader",
    "SyncPolicy",
    "new_run_id",
    "remove_run",
    "segments_of",
]

log = logging.getLogger(__name__)

SyncPolicy = Literal["fsync", "write"]
"""``fsync``: an append is acknowledged after ``fdatasync`` (survives a power cut);
``write``: after ``write`` returned (survives a crash of the process, not of the OS)."""

_SUFFIX: Final = ".jsonl"
_LOCK: Final = "lock"
_REJECTED: Final = "rejected.jsonl"

_T = TypeVar("_T")


class JournalBusyError(RuntimeError):
    """Another process (or recorder) writes to this journal directory."""


def new_run_id(now: datetime) -> str:
    """A run name that sorts in start order: UTC time, then random bits against clashes."""
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid4().hex[:8]}"


def segments_of(directory: Path) -> list[int]:
    """First seqs of a run's segment files, ascending."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    stems = (n[: -len(_SUFFIX)] for n in names if n.endswith(_SUFFIX))
    return sorted(int(stem) for stem in stems if stem.isdigit())


def _segment_path(directory: Path, first_seq: int) -> Path:
    return directory / f"{first_seq:012d}{_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    """Make a created or removed directory entry durable (a file's fsync does not)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (a full disk, a signal): loop until done or error."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def remove_run(directory: Path) -> None:
    """Delete a run directory whose operations are all applied (blocking)."""
    shutil.rmtree(directory, ignore_errors=False)
    _fsync_dir(directory.parent)


class Journal:
    """Appends one run's operations to segment files; owns the directory lock and the I/O thread."""

    def __init__(
        self,
        root: Path,
        run: str,
        *,
        sync: SyncPolicy = "fsync",
        segment_bytes: int = 16 << 20,
    ) -> None:
        if sync not in ("fsync", "write"):
            raise ValueError(f"sync must be 'fsync' or 'write', not {sync!r}")
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self.root = root
        self.run = run
        self.sync: SyncPolicy = sync
        self.segment_bytes = segment_bytes
        self._lock_fd: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Touched only by the I/O thread once open() returned.
        self._fd: int | None = None
        self._size = 0
        self._segments: list[int] = []

    @property
    def directory(self) -> Path:
        """This run's directory."""
        return self.root / self.run

    @property
    def segments(self) -> int:
        """Segment files of this run (only more than one can be discarded)."""
        return len(self._segments)

    # -- lifecycle (blocking, but quick: called from start and stop) --

    def open(self) -> None:
        """Create the directories and take the lock; JournalBusyError if someone holds it."""
        if self._lock_fd is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusyError(
                f"journal {self.root} is in use by another process or recorder"
            ) from None
        self._lock_fd = fd
        self.directory.mkdir(exist_ok=True)
        if self.sync == "fsync":
            _fsync_dir(self.root)
        self._segments = segments_of(self.directory)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"journal-{self.run}")

    def close(self, *, remove: bool) -> None:
        """Finish pending I/O, close files, release the lock; ``remove`` deletes this run's files.

        Only remove a run whose every operation is committed: its files are then
        the only copy of nothing.
        """
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if remove and self.directory.exists():
            try:
                remove_run(self.directory)
            except OSError as exc:
                log.warning("could not remove journal %s: %s", self.directory, exc)
            self._segments = []
            self._size = 0
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def earlier_runs(self) -> list[str]:
        """Run directories other than ours, oldest first: left by crashes or unfinished stops."""
        runs = []
        for entry in os.scandir(self.root):
            if entry.is_dir() and entry.name != self.run and not entry.name.startswith("."):
                runs.append(entry.name)
        return sorted(runs)

    # -- I/O, in the journal's thread --

    async def _in_thread(self, fn: partial[_T]) -> _T:
        if self._executor is None:
            raise RuntimeError("journal is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def append(self, data: bytes, first_seq: int) -> None:
        """Append complete lines starting with operation ``first_seq``; durable per ``sync``.

        Raises OSError with the file unchanged (a partial write is cut off again).
        If the awaiting task is cancelled the append still completes in the
        thread; appending the same lines again is harmless (readers skip seqs
        they have seen).
        """
        await self._in_thread(partial(self._append, data, first_seq))

    def _append(self, data: bytes, first_seq: int) -> None:
        if self._fd is None or self._size >= self.segment_bytes:
            self._rotate(first_seq)
        fd = self._fd
        assert fd is not None
        start = self._size
        try:
            _write_all(fd, data)
            if self.sync == "fsync":
                os.fdatasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)  # no torn line for the next append to follow
            except OSError:
                self._close_segment()  # the next append starts a fresh segment
            raise
        self._size = start + len(data)

    def _rotate(self, first_seq: int) -> None:
        self._close_segment()
        path = _segment_path(self.directory, first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        if first_seq not in self._segments:
            self._segments.append(first_seq)
        if self.sync == "fsync":
            _fsync_dir(self.directory)

    def _close_segment(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self.sync == "fsync":
                    os.fdatasync(fd)
            finally:
                os.close(fd)

    async def discard_through(self, seq: int) -> int:
        """Delete the segments, except the one being written, whose operations are all <= seq."""
        return await self._in_thread(partial(self._discard_through, seq))

    def _discard_through(self, seq: int) -> int:
        removed = 0
        while len(self._segments) > 1 and self._segments[1] - 1 <= seq:
            first = self._segments.pop(0)
            try:
                _segment_path(self.directory, first).unlink()
            except FileNotFoundError:
                pass
            removed += 1
        return removed

    def set_aside(self, line: bytes, reason: str) -> None:
        """Keep a refused operation in ``rejected.jsonl`` for an operator (rare; blocking)."""
        record = {"run": self.run, "reason": reason, "op": json.loads(line)}
        try:
            with open(self.root / _REJECTED, "ab") as handle:
                handle.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
        except OSError as exc:
            log.warning("could not keep the refused change in %s: %s", _REJECTED, exc)


class JournalReader:
    """Reads a run's operations in seq order from ``start`` on; blocking, for a worker thread.

    Lines that do not decode are counted in :attr:`corrupt` and skipped; a line
    without its newline at the very end is an append in progress (or cut by a
    crash, so never acknowledged) and is left unread. Seqs at or below one
    already returned are skipped, which makes repeated appends harmless.
    """

    def __init__(self, directory: Path, start: int) -> None:
        self.directory = directory
        self.next_seq = max(1, start)
        self.corrupt = 0
        self._file: IO[bytes] | None = None
        self._first = 0  # first seq of the segment open in _file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, first: int) -> None:
        self.close()
        self._file = open(_segment_path(self.directory, first), "rb")
        self._first = first

    def _next_segment(self) -> int | None:
        later = [f for f in segments_of(self.directory) if f > self._first]
        return later[0] if later else None

    def read(self, limit: int, upto: int | None = None) -> list[Queued]:
        """Up to ``limit`` operations with seq >= :attr:`next_seq` (and <= ``upto``)."""
        out: list[Queued] = []
        while len(out) < limit:
            if self._file is None:
                firsts = segments_of(self.directory)
                if not firsts:
                    break
                at_or_before = [f for f in firsts if f <= self.next_seq]
                self._open(at_or_before[-1] if at_or_before else firsts[0])
            handle = self._file
            assert handle is not None
            position = handle.tell()
            line = handle.readline()
            if not line or not line.endswith(b"\n"):
                following = self._next_segment()
                if following is None:
                    handle.seek(position)  # wait for the rest of this line, or the end
                    break
                if line:
                    self.corrupt += 1
                    log.warning("journal %s: cut line skipped: %.80r", self.directory, line)
                self._open(following)
                continue
            try:
                queued = decode_op(line)
            except ValueError as exc:
                self.corrupt += 1
                log.warning("journal %s: unreadable line skipped: %s", self.directory, exc)
                continue
            if queued.seq < self.next_seq:
                continue
            if upto is not None and queued.seq > upto:
                handle.seek(position)
                break
            out.append(queued)
            self.next_seq = queued.seq + 1
        return out
