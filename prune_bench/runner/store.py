"""Append-only, resumable results: one JSON line per (run configuration, item).

A record is written with one ``os.write`` of a complete line and flushed to disk before the next item
starts, so a run killed at any moment loses at most the item in flight. A write that fails (a full
disk) is cut back to the length the file had before it, so no half line is left behind.

One process writes a store at a time: a writer holds an exclusive ``flock`` on ``results.lock`` next
to its results file for as long as it is open (the kernel drops it when the process ends, however it
ends), and a second writer gets a :class:`~prune_bench.errors.UserError` naming the first one's pid.
The lock belongs to one results file, so a future shard (``ResultStore(dir, shard="rank0")`` writes
``results.rank0.jsonl`` under ``results.rank0.lock``) is locked on its own.

Damage is never fatal and never silent. A writer that opens a store moves every line it cannot use
(not UTF-8, not JSON, not a JSON object, no ``config_hash`` or ``item_id``, a torn last line) to the
sidecar ``results.damaged.jsonl`` (appended: file, line number, reason, the line's text) and says so
in one warning; a damaged ``manifest.json`` is moved there the same way. The items of moved lines are
simply computed again. A read-only store (``read_only=True``, what ``table``, ``plot`` and ``report``
use) skips the same lines, records them in :attr:`ResultStore.damage` and writes nothing, ever.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prune_bench.errors import PruneBenchError, UserError

RESULTS = "results"
TORN = "torn last line (an interrupted write)"
MANIFEST = "manifest.json"
_SHARD = re.compile(r"[A-Za-z0-9_-]+")


class StoreError(PruneBenchError):
    """The store cannot be written (a full disk, an I/O error): the run stops, whatever it was doing
    (it is not one item's failure); the CLI prints the message as one line and exits with code 2.
    What was written before stays, and the same command continues from there."""


class StoreWarning(UserWarning):
    """Damage found in a results store (and, by a writer, moved aside): one line naming file and line."""


@dataclass(frozen=True)
class Damage:
    """One unusable piece of a store: ``line`` is 1-based (``None`` when the whole file is unusable)."""

    file: str
    line: int | None
    reason: str
    raw: bytes

    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else "the file"

    def sidecar_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "file": self.file,
            "line": self.line,
            "reason": self.reason,
            "moved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "text": self.raw.decode("utf-8", "backslashreplace"),
        }
        try:
            self.raw.decode("utf-8")
        except UnicodeDecodeError:
            entry["base64"] = base64.b64encode(self.raw).decode("ascii")  # the exact bytes
        return entry


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A complete line of ``results.jsonl`` (newline included) -> (record, None) or (None, reason)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte {exc.start})"
    if not text.strip():
        return None, "empty line"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(record, dict):
        return None, f"not a JSON object (a {type(record).__name__})"
    for key in ("config_hash", "item_id"):
        if not isinstance(record.get(key), str):
            return None, f"no {key}" if key not in record else f"{key} is not a string"
    return record, None


def parse_manifest(raw: bytes) -> tuple[list[dict[str, Any]], list[tuple[int | None, str, bytes]]]:
    """``manifest.json`` -> (its runs, what is wrong with it as (line, reason, bytes moved aside)).

    A file that is not a JSON list is wrong as a whole; a list keeps its objects and gives up the
    entries that are not objects."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [(None, f"not UTF-8 (byte {exc.start})", raw)]
    if not text.strip():
        return [], [(None, "empty", raw)]
    try:
        runs = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [(exc.lineno, f"not JSON, truncated? ({exc.msg} at column {exc.colno})", raw)]
    if not isinstance(runs, list):
        return [], [(None, f"not a list of runs (a {type(runs).__name__})", raw)]
    kept = [r for r in runs if isinstance(r, dict)]
    bad = [(i, r) for i, r in enumerate(runs, 1) if not isinstance(r, dict)]
    return kept, [(None, f"entry {i} is not an object", json.dumps(r).encode()) for i, r in bad]


class _Lock:
    """The flock of one lock file, shared by the open stores of this process that write it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 1

    def is_on(self, path: Path) -> bool:
        """Whether this lock is (still) on the file now at ``path`` (not on a deleted one)."""
        try:
            here, mine = os.stat(path), os.fstat(self.fd)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


# Locks this process holds, by lock file. Stores of one process share a lock (a process is one
# writer); only another process is refused.
_HELD: dict[str, _Lock] = {}


def _forget_locks_in_child() -> None:
    # A forked child shares the parent's lock; closing its copies keeps the lock the parent's alone
    # (flock is released only when every copy is closed, or by LOCK_UN, which is never used here).
    for lock in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(lock.fd)
        lock.users = -1  # never closed again by a store the child inherited
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _holder(lock: Path) -> str:
    """The pid written into a held lock file (``?`` when its holder has not written it yet)."""
    for _ in range(5):
        try:
            text = lock.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            text = ""
        if text:
            return text
        time.sleep(0.02)
    return "?"


def _in_use(directory: Path, lock: Path) -> UserError:
    return UserError(
        f"{directory} is in use by another prune-bench run (pid {_holder(lock)}); "
        "wait for it or pass another --out"
    )


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ResultStore:
    """Results of one output directory: ``results.jsonl`` plus ``manifest.json``.

    ``ResultStore(dir)`` is a writer: it creates the directory, takes the directory's write lock and
    moves damaged lines aside. ``ResultStore(dir, read_only=True)`` reads the same records and never
    creates, locks, repairs or writes anything. ``shard`` names a results file of its own
    (``results.<shard>.jsonl``, its own lock and sidecar) for writers that run side by side.
    """

    def __init__(self, directory: str | Path, *, shard: str | None = None, read_only: bool = False) -> None:
        self.dir = Path(directory)
        self.shard = shard
        self.read_only = read_only
        stem = RESULTS if shard is None else f"{RESULTS}.{_check_shard(shard)}"
        self.path = self.dir / f"{stem}.jsonl"
        self.lock_path = self.dir / f"{stem}.lock"
        self.damaged_path = self.dir / f"{stem}.damaged.jsonl"
        self.manifest_path = self.dir / MANIFEST
        self.damage: list[Damage] = []
        self._fd: int | None = None
        self._lock: _Lock | None = None
        self._done: set[tuple[str, str]] = set()
        self._manifest_at: int | None = None  # the index of the manifest entry this writer wrote
        if read_only:
            return
        self.check_writable(self.dir, shard=shard)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the results directory '{self.dir}': {exc.strerror}") from exc
        self._take_lock()
        try:
            self._repair()
            self._done = {(r["config_hash"], r["item_id"]) for r in self.records()}
        except BaseException:
            self.close()
            raise

    # -- checks -------------------------------------------------------------------------------------

    @staticmethod
    def check_writable(directory: str | Path, *, shard: str | None = None) -> None:
        """A :class:`UserError` unless a writer could use ``directory``: not a file, its results file
        writable, the directory (or the nearest parent to create it in) writable, and no other
        process writing it. Creates nothing; cheap enough to call before a model loads."""
        path = Path(directory)
        if path.exists() and not path.is_dir():
            raise UserError(f"results directory '{path}' is a file; pass a directory as --out")
        if not path.exists():
            parent = path.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                raise UserError(f"cannot create results directory '{path}': '{parent}' is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(
                    f"cannot create results directory '{path}': '{parent}' is not writable; "
                    "pass another --out"
                )
            return
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"results directory '{path}' is not writable; pass another --out")
        stem = RESULTS if shard is None else f"{RESULTS}.{_check_shard(shard)}"
        results = path / f"{stem}.jsonl"
        if results.exists() and (not results.is_file() or not os.access(results, os.W_OK)):
            raise UserError(f"'{results}' is not a writable file; pass another --out")
        lock = path / f"{stem}.lock"
        held = _HELD.get(os.path.realpath(lock))
        if not lock.exists() or (held is not None and held.is_on(lock)):
            return
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            return  # the writer's own open says why, if it fails
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(path, lock) from None
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the only copy releases a probe's lock

    # -- the writer's lock --------------------------------------------------------------------------

    def _take_lock(self) -> None:
        key = os.path.realpath(self.lock_path)
        held = _HELD.get(key)
        if held is not None and held.is_on(self.lock_path):
            held.users += 1
            self._lock = held
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot create the lock file '{self.lock_path}': {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(self.dir, self.lock_path) from None
        with contextlib.suppress(OSError):  # who holds it, for the next one's message (best effort)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = _HELD[key] = _Lock(fd)

    def close(self) -> None:
        """Close the results file and give the lock up (when no other store of this process holds it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        lock, self._lock = self._lock, None
        if lock is None or lock.users <= 0:
            return
        lock.users -= 1
        if lock.users == 0:
            key = os.path.realpath(self.lock_path)
            if _HELD.get(key) is lock:
                del _HELD[key]
            with contextlib.suppress(OSError):
                os.ftruncate(lock.fd, 0)  # no stale pid for a later holder's first moments
            os.close(lock.fd)

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- damage -------------------------------------------------------------------------------------

    def _lines(self) -> Iterator[tuple[int, bytes, dict[str, Any] | None, Damage | None]]:
        """(line number, bytes, record or ``None``, damage or ``None``) for each line of the results file."""
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UserError(f"cannot read '{self.path}': {exc.strerror}") from exc
        with f:
            for n, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    yield n, raw, None, Damage(self.path.name, n, TORN, raw)
                    return
                record, reason = parse_line(raw)
                bad = None if record is not None else Damage(self.path.name, n, str(reason), raw)
                yield n, raw, record, bad

    def _move_aside(self, damage: list[Damage]) -> None:
        """Append ``damage`` to the sidecar, durably (before the damaged file is rewritten)."""
        data = b"".join(json.dumps(d.sidecar_entry(), sort_keys=True).encode() + b"\n" for d in damage)
        try:
            fd = os.open(self.damaged_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(
                f"cannot move damaged lines of '{self.path}' aside to '{self.damaged_path.name}': "
                f"{exc.strerror}; nothing was changed"
            ) from exc

    def _repair(self) -> None:
        good: list[bytes] = []
        damage: list[Damage] = []
        for _, raw, _, bad in self._lines():
            if bad is None:
                good.append(raw)
            else:
                damage.append(bad)
        if not damage:
            return
        self._move_aside(damage)
        try:
            if len(damage) == 1 and damage[0].reason == TORN:
                with self.path.open("rb+") as f:
                    f.truncate(f.seek(0, os.SEEK_END) - len(damage[0].raw))
                    os.fsync(f.fileno())
            else:
                tmp = self.path.with_name(self.path.name + ".tmp")
                with tmp.open("wb") as f:
                    f.write(b"".join(good))
                    f.flush()
                    os.fsync(f.fileno())
                tmp.replace(self.path)
                _fsync_dir(self.dir)
        except OSError as exc:
            raise StoreError(
                f"cannot rewrite '{self.path}' without its damaged lines: {exc.strerror}"
            ) from exc
        self.damage = damage
        _warn(f"{self.path}: {_summary(damage)}; moved to {self.damaged_path.name}, to be computed again")

    def damage_summary(self) -> str:
        """What :attr:`damage` holds, in one line (empty when nothing is damaged)."""
        by_file: dict[str, list[Damage]] = {}
        for d in self.damage:
            by_file.setdefault(d.file, []).append(d)
        return "; ".join(f"{self.dir / f}: {_summary(ds)}" for f, ds in by_file.items())

    def warn_damage(self) -> None:
        """One :class:`StoreWarning` for what a read-only store skipped (nothing when undamaged)."""
        if self.damage:
            _warn(f"{self.damage_summary()}; skipped (the next run on this directory moves it aside)")

    # -- records ------------------------------------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        """Every usable record, in file order; damaged lines are skipped (and listed in :attr:`damage`
        once the iteration ends, in a read-only store)."""
        damage: list[Damage] = []
        for _, _, record, bad in self._lines():
            if record is not None:
                yield record
            elif bad is not None:
                damage.append(bad)
        if self.read_only:
            self.damage = [d for d in self.damage if d.file != self.path.name] + damage

    def done(self, config_hash: str, item_id: str) -> bool:
        return (config_hash, item_id) in self._done

    def _writable(self) -> None:
        if self.read_only:
            raise RuntimeError(f"{self.dir} was opened read-only")
        if self._lock is None:
            raise RuntimeError(f"the store of {self.dir} is closed")

    def append(self, record: dict[str, Any]) -> None:
        """Add one record as one complete line, on disk before this returns. A failed write (a full
        disk) leaves the file as it was and is a :class:`UserError`; what was written before stays."""
        self._writable()
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot open '{self.path}' for writing: {exc.strerror}") from exc
        fd = self._fd
        before = os.fstat(fd).st_size
        key = (record["config_hash"], record["item_id"])
        try:
            written = os.write(fd, data)  # one call: the line is whole or absent
            if written != len(data):
                raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError as exc:
            _cut(fd, before)  # neither a half line nor one not known to be on disk
            raise StoreError(
                f"cannot write to '{self.path}': {exc.strerror or exc}; the records written before "
                "are kept (free space, then run the same command again to continue)"
            ) from exc
        except BaseException:  # Ctrl-C or SIGTERM in the middle: keep the line only if it is whole
            if os.fstat(fd).st_size == before + len(data):
                self._done.add(key)
            else:
                _cut(fd, before)
            raise
        self._done.add(key)

    # -- manifest -----------------------------------------------------------------------------------

    def _read_manifest(self) -> tuple[list[dict[str, Any]], list[Damage]]:
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise UserError(f"cannot read '{self.manifest_path}': {exc.strerror}") from exc
        runs, problems = parse_manifest(raw)
        return runs, [Damage(MANIFEST, line, reason, bad) for line, reason, bad in problems]

    def manifests(self) -> list[dict[str, Any]]:
        """The manifests of the runs that wrote this store (its usable ones; a read-only store lists
        the damage in :attr:`damage`)."""
        runs, damage = self._read_manifest()
        if self.read_only:
            self.damage = [d for d in self.damage if d.file != MANIFEST] + damage
        return runs

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Record each run's manifest (appended: a resumed run adds its own). A damaged manifest is
        moved to the sidecar (with a warning) and its usable runs are kept."""
        self._writable()
        runs, damage = self._read_manifest()
        if damage:
            self._move_aside(damage)
            _warn(
                f"{self.manifest_path}: {_summary(damage)}; moved to {self.damaged_path.name} "
                f"({len(runs)} usable run(s) kept; the records are not affected)"
            )
        runs.append(manifest)
        self._manifest_at = len(runs) - 1
        self._save_manifest(runs)

    def update_manifest(self, fields: dict[str, Any]) -> None:
        """Add ``fields`` to the manifest entry this writer wrote (what a run knows only at its end,
        its throughput). Nothing happens if it wrote none, or another process replaced the file."""
        self._writable()
        at = self._manifest_at
        runs, _ = self._read_manifest()
        if at is None or at >= len(runs):
            return
        runs[at].update(fields)
        self._save_manifest(runs)

    def _save_manifest(self, runs: list[dict[str, Any]]) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(runs, indent=2, sort_keys=True), encoding="utf-8")
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            tmp.replace(self.manifest_path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write '{self.manifest_path}': {exc.strerror}") from exc


def _cut(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def _check_shard(shard: str) -> str:
    if not _SHARD.fullmatch(shard):
        raise ValueError(f"a shard name is letters, digits, '-' and '_', got {shard!r}")
    return shard


def _summary(damage: list[Damage], show: int = 3) -> str:
    """``line 4: not JSON (...), line 9: no config_hash and 2 more damaged lines``."""
    parts = [f"{d.where()}: {d.reason}" for d in damage[:show]]
    more = len(damage) - show
    return ", ".join(parts) + (f" and {more} more damaged line(s)" if more > 0 else "")


def _warn(message: str) -> None:
    warnings.warn(StoreWarning(message.replace("\n", " ")), stacklevel=3)
