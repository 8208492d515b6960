"""Storage profiles: how the outbox trades writes to the disk against the latency of
its commits; and what every SQLite file Ombre writes shares to write less and bound
its write-ahead log.

`default` commits each delivery as it comes and syncs every commit. `sd-card` gathers
deliveries for up to a second into one commit (so every sink writes once a second,
not every flush) and lets a sink's cursor move reach the disk with the next append's
sync instead of its own: what a source was acked for is still synced before its ack,
and a cursor move lost to a power cut only makes that sink receive its last rows
again. docs/storage.md gives the loss window of each."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["default", "sd-card"]


@dataclass(frozen=True, slots=True)
class StorageProfile:
    # The writer waits this long after a delivery arrives for others to join its commit
    # (less when the queue fills up); 0: each commit takes what is queued at once.
    commit_interval_s: float
    # Whether a sink's cursor move is synced on its own commit (synchronous=FULL), or
    # rides on the next append's sync (NORMAL).
    sync_cursor_moves: bool


PROFILES: dict[ProfileName, StorageProfile] = {
    "default": StorageProfile(commit_interval_s=0.0, sync_cursor_moves=True),
    "sd-card": StorageProfile(commit_interval_s=1.0, sync_cursor_moves=False),
}

# Every SQLite file Ombre writes checkpoints its WAL once it holds this many pages, and
# truncates it back to JOURNAL_SIZE_LIMIT_BYTES after a checkpoint: a WAL that grew
# while checkpoints failed (a full disk) or were blocked (a long read) does not keep
# its size afterwards.
WAL_AUTOCHECKPOINT_PAGES = 1000
JOURNAL_SIZE_LIMIT_BYTES = 8 * 1024 * 1024


def limit_writes(db: sqlite3.Connection) -> None:
    """Sets the WAL bounds on a connection (they last as long as it does), and
    `secure_delete = FAST`: Debian builds SQLite with it on, which writes every deleted
    page again, zeroed (the outbox's rows are all deleted once delivered)."""
    db.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
    db.execute("PRAGMA secure_delete = FAST")
