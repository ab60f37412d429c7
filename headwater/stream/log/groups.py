"""Consumer groups of the embedded log: membership, partition owners and committed offsets.

One SQLite file per log folder (WAL, so readers do not block the writer) holds::

    members(group_id, member_id, host, pid, topics, heartbeat)
    owners(group_id, topic, partition, member_id)        who reads a partition now
    offsets(group_id, topic, partition, next_offset)     committed offsets
    generations(group_id, generation)                    bumped on every member change

Rebalancing is cooperative and needs no leader: every member computes the same range
assignment from the member set, gives up the partitions it should no longer read (after
``on_revoke``, where the app commits) by deleting its owner rows, and claims a partition
it should read only when no live member owns it. So two members never read one
partition at once, and the new owner starts from the offset committed in ``on_revoke``.

A member is evicted (its rows deleted, the generation bumped) by any other member when
its heartbeat is older than ``session_timeout`` or its process is gone (same host: the
pid is checked, so a ``kill -9`` is noticed within one heartbeat interval, not a session).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

from headwater.stream.broker import BrokerError, TopicPartition

_SCHEMA = """
CREATE TABLE IF NOT EXISTS members (
    group_id TEXT NOT NULL, member_id TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    topics TEXT NOT NULL, heartbeat REAL NOT NULL, PRIMARY KEY (group_id, member_id));
CREATE TABLE IF NOT EXISTS owners (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    committed_at REAL NOT NULL, PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS generations (group_id TEXT PRIMARY KEY, generation INTEGER NOT NULL);
"""


def pid_alive(pid: int) -> bool:
    """Whether a process runs with this pid on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return True


class GroupStore:
    """A connection to the groups file of one log folder; calls are serialised by a lock."""

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit survives the death of the process (not a power cut, which at
            # worst moves an offset back: records are read again, never lost).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise BrokerError(f"cannot open the consumer-group file {path}: {exc}") from exc
        self.host = socket.gethostname()
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction (takes the write lock up front, so no upgrade deadlock)."""
        with self._lock:
            yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise BrokerError(f"the consumer-group file {self.path} is locked or unreadable: {exc}") from exc
        try:
            yield db
        except sqlite3.Error as exc:
            db.execute("ROLLBACK")
            raise BrokerError(f"the consumer-group file {self.path} failed: {exc}") from exc
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def _bump(self, db: sqlite3.Connection, group: str) -> None:
        db.execute(
            "INSERT INTO generations VALUES (?, 1) ON CONFLICT(group_id) DO UPDATE SET generation = generation + 1",
            (group,),
        )

    # -- membership ------------------------------------------------------------------

    def join(self, group: str, member: str, topics: Sequence[str]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?, ?)",
                (group, member, self.host, os.getpid(), json.dumps(sorted(topics)), time.time()),
            )
            self._bump(db, group)

    def leave(self, group: str, member: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM members WHERE group_id = ? AND member_id = ?", (group, member))
            db.execute("DELETE FROM owners WHERE group_id = ? AND member_id = ?", (group, member))
            self._bump(db, group)

    def heartbeat(self, group: str, member: str, session_timeout: float) -> bool:
        """Refresh our heartbeat and evict dead members; False if we were evicted ourselves."""
        now = time.time()
        with self._write() as db:
            cur = db.execute(
                "UPDATE members SET heartbeat = ? WHERE group_id = ? AND member_id = ?", (now, group, member)
            )
            alive = cur.rowcount == 1
            rows = db.execute("SELECT member_id, host, pid, heartbeat FROM members WHERE group_id = ?", (group,))
            dead = [
                m
                for m, host, pid, beat in rows.fetchall()
                if now - beat > session_timeout or (host == self.host and not pid_alive(pid))
            ]
            for m in dead:
                db.execute("DELETE FROM members WHERE group_id = ? AND member_id = ?", (group, m))
                db.execute("DELETE FROM owners WHERE group_id = ? AND member_id = ?", (group, m))
            if dead:
                self._bump(db, group)
        return alive

    def generation(self, group: str) -> int:
        with self._lock:
            return self._generation(group)

    def _generation(self, group: str) -> int:
        row = self._db.execute("SELECT generation FROM generations WHERE group_id = ?", (group,)).fetchone()
        return row[0] if row else 0

    def view(self, group: str) -> tuple[int, dict[str, list[str]], dict[TopicPartition, str]]:
        """(generation, members -> topics, owners) read in one snapshot."""
        db = self._db
        with self._lock:
            return self._view(db, group)

    def _view(self, db: sqlite3.Connection, group: str) -> tuple[int, dict[str, list[str]], dict[TopicPartition, str]]:
        db.execute("BEGIN")
        try:
            gen = self._generation(group)
            members = {
                m: json.loads(t)
                for m, t in db.execute("SELECT member_id, topics FROM members WHERE group_id = ?", (group,))
            }
            owners = {
                TopicPartition(t, p): m
                for t, p, m in db.execute("SELECT topic, partition, member_id FROM owners WHERE group_id = ?", (group,))
            }
        finally:
            db.execute("COMMIT")
        return gen, members, owners

    def release(self, group: str, member: str, partitions: Sequence[TopicPartition]) -> None:
        with self._write() as db:
            db.executemany(
                "DELETE FROM owners WHERE group_id = ? AND topic = ? AND partition = ? AND member_id = ?",
                [(group, tp.topic, tp.partition, member) for tp in partitions],
            )

    def claim(self, group: str, member: str, partitions: Sequence[TopicPartition]) -> list[TopicPartition]:
        """Take the partitions nobody live owns; return those taken (we must still be a member)."""
        taken = []
        with self._write() as db:
            live = {m for (m,) in db.execute("SELECT member_id FROM members WHERE group_id = ?", (group,))}
            if member not in live:
                return []
            for tp in partitions:
                row = db.execute(
                    "SELECT member_id FROM owners WHERE group_id = ? AND topic = ? AND partition = ?",
                    (group, tp.topic, tp.partition),
                ).fetchone()
                if row is None or row[0] not in live or row[0] == member:
                    db.execute(
                        "INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?)", (group, tp.topic, tp.partition, member)
                    )
                    taken.append(tp)
        return taken

    # -- offsets ---------------------------------------------------------------------

    def commit(self, group: str, offsets: Mapping[TopicPartition, int], member: str | None = None) -> None:
        """Store offsets; with ``member``, only for partitions it owns (a fenced, evicted member fails)."""
        now = time.time()
        with self._write() as db:
            if member is not None:
                lost = [
                    tp
                    for tp in offsets
                    if db.execute(
                        "SELECT 1 FROM owners WHERE group_id = ? AND topic = ? AND partition = ? AND member_id = ?",
                        (group, tp.topic, tp.partition, member),
                    ).fetchone()
                    is None
                ]
                if lost:
                    raise BrokerError(
                        f"commit refused for {', '.join(map(str, sorted(lost)))}: this consumer no longer owns "
                        f"{'it' if len(lost) == 1 else 'them'} in group {group!r} (evicted or rebalanced away); "
                        "the new owner reads those records again from the last commit",
                    )
            db.executemany(
                "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?, ?, ?)",
                [(group, tp.topic, tp.partition, int(off), now) for tp, off in offsets.items()],
            )

    def committed(self, group: str, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        out: dict[TopicPartition, int | None] = {}
        with self._lock:
            for tp in partitions:
                row = self._db.execute(
                    "SELECT next_offset FROM offsets WHERE group_id = ? AND topic = ? AND partition = ?",
                    (group, tp.topic, tp.partition),
                ).fetchone()
                out[tp] = row[0] if row else None
        return out

    def group_topics(self, group: str) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT topic FROM offsets WHERE group_id = ? ORDER BY topic", (group,))
            return [t for (t,) in rows]

    def forget_topic(self, topic: str) -> None:
        """Drop committed offsets and owners of a deleted topic."""
        with self._write() as db:
            db.execute("DELETE FROM offsets WHERE topic = ?", (topic,))
            db.execute("DELETE FROM owners WHERE topic = ?", (topic,))

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()
