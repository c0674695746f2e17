"""Ingest notification batches into a store file as fast as possible, forever.

The crash test in test_inbox.py runs this as a subprocess and SIGKILLs it at random
moments. After every committed ingest it prints the cursor (one line, flushed), so the
test knows a lower bound for what must have survived.

Each batch resends a few already stored seqs (duplicates) and is shuffled, so the kill
also lands in de-duplication and cursor advancing, not only in plain inserts.

Usage: python intake_worker.py DATABASE_PATH SEED
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

# Run as a script: make the repository importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tray_app.net.protocol import Notification, parse_notification
from tray_app.store.db import open_database
from tray_app.store.inbox import Inbox

WORDS = ("crash", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot")


def payload(seq: int) -> Notification:
    """A notification as the server would send it, with seq and a derived id."""
    return parse_notification(
        {
            "id": 1_000_000 + seq,
            "seq": seq,
            "is_read": False,
            "read_at": None,
            "title": f"crash test {seq}",
            "message": " ".join(WORDS[(seq + n) % len(WORDS)] for n in range(12)),
            "event_type": "task_status_changed",
            "priority": ("low", "normal", "high", "urgent")[seq % 4],
            "url": f"/projects/1/tasks/{seq}",
            "created_at": "2026-11-22T09:30:00.123456Z",
            "actor": {"id": 4, "username": "bob", "first_name": "Bob", "last_name": "Baker"},
            "project": {"id": 1 + seq % 3, "title": f"Project {seq % 3}"},
            "data": {"task_id": seq},
        }
    )


def main() -> None:
    path = Path(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    inbox = Inbox(open_database(path).connection)
    while True:
        cursor = inbox.cursor()
        first = max(1, cursor + 1 - rng.randint(0, 3))
        batch = [payload(seq) for seq in range(first, cursor + rng.randint(1, 40) + 1)]
        rng.shuffle(batch)
        result = inbox.ingest(batch)
        print(result.cursor, flush=True)


if __name__ == "__main__":
    main()
