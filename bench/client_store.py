"""B9: the desktop client's local store, beside bare sqlite3 and the idle event loop.

Four figures, each from the product's own code on a real SQLite file in scratch:

- **insert p99**: one live notification stored the way the engine stores it
  (``protocol.parse_notification`` then ``Inbox.ingest``: parse, de-duplicate, row +
  FTS index + cursor in one transaction, ``COMMIT``), on top of the store the search
  figure uses. Baselines:
  ``bare sqlite3`` (INSERT + COMMIT of the equivalent row into a plain table with the
  product's PRAGMAs) and ``bare sqlite3 + FTS5`` (the same plus the text into an FTS5 table).
- **10k catch-up**: 10,000 ``notification_created`` text frames and their ``caught_up``,
  parsed with ``tray_app.net.protocol`` and handed to ``Engine.handle_frame`` as the socket
  session hands them over during a replay (the engine stores them in batches of
  ``REPLAY_FLUSH_ROWS``), onto a fresh store; median of the rounds. Baselines: ``bare
  sqlite3`` (one ``executemany`` of the 10k rows in one transaction) and ``bare sqlite3 +
  FTS5`` (the same plus one ``executemany`` into FTS5).
- **search p99**: ``Inbox.search(Filters(text=...), limit=50)`` over the store (100k rows
  in the full profile), for words drawn from the same distribution as the texts (common,
  ordinary and rare words, two-word queries, three-letter prefixes). Baselines: ``bare
  FTS5`` (``MATCH ... ORDER BY rowid DESC LIMIT 50``, rowids only, over a standalone FTS5
  table with the same texts and tokenizer) and ``bare FTS5 + rows`` (the same, then the 50
  rows' columns). Both must return exactly the product's rows, which is checked.
- **longest UI stall**: the real ``TrayApp`` (qasync loop, ``QT_QPA_PLATFORM=offscreen``)
  logs in to the real server (a subprocess), the history window is opened from the tray's
  own signal before the first row arrives, and the server replays the 10k notifications
  it holds for that user over the WebSocket; a 1 ms ``QTimer`` records every loop turn.
  The figure is the longest gap between two ticks from the window opening until the
  window lists all 10k rows. Baseline: ``idle loop``, the same loop with the same window
  open and no catch-up, over a window of the same length right after.

Store figures run in a child process pinned to the server CPU (CPU 0), peers interleaved
with ours sample by sample so noise hits both alike. For the stall the client app is the
thing under test, so it runs pinned to CPU 0 and the server that feeds it is moved to
CPU 1, beside this (idle) process: on one core the server's sending would be counted as
the client's stall.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

from bench import common
from bench.common import BenchError, Outcome, percentile, result
from bench.peers import raw_sqlite

SEED: Final = 20261205
READER: Final = "reader"
READER_PASSWORD: Final = "demo"
# The loop probe's period: a turn of the loop that takes longer shows as a longer gap.
TICK_MS: Final = 1
# After the catch-up, time for deferred work (toast flush, the last refresh) to finish
# before the idle window starts: a fixed settle window.
SETTLE_SECONDS: Final = 1.0
INSERT_TARGET_MS: Final = 1.0
CATCH_UP_TARGET_S: Final = 2.0
SEARCH_TARGET_MS: Final = 5.0
STALL_TARGET_MS: Final = 50.0
SEARCH_LIMIT: Final = 50


@dataclass(frozen=True)
class Settings:
    """The counts of one run."""

    search_rows: int
    search_queries: int
    insert_samples: int
    catch_up_rows: int
    catch_up_rounds: int
    ui_rows: int


PROFILES: Final = {
    "quick": Settings(
        search_rows=20_000,
        search_queries=400,
        insert_samples=1_000,
        catch_up_rows=10_000,
        catch_up_rounds=2,
        ui_rows=10_000,
    ),
    "full": Settings(
        search_rows=100_000,
        search_queries=2_000,
        insert_samples=5_000,
        catch_up_rows=10_000,
        catch_up_rounds=5,
        ui_rows=10_000,
    ),
}
SMOKE: Final = Settings(
    search_rows=500,
    search_queries=20,
    insert_samples=20,
    catch_up_rows=300,
    catch_up_rounds=1,
    ui_rows=300,
)


# --- realistic notifications ----------------------------------------------------------

_VERBS: Final = (
    "Fix", "Add", "Remove", "Update", "Refactor", "Migrate", "Document", "Test", "Review",
    "Deploy", "Investigate", "Speed up", "Simplify", "Rename", "Split", "Merge", "Upgrade",
    "Localize", "Secure", "Audit", "Design", "Prototype", "Clean up", "Monitor", "Cache",
)  # fmt: skip
_ADJECTIVES: Final = (
    "flaky", "slow", "broken", "missing", "duplicate", "stale", "empty", "legacy", "nightly",
    "offline", "mobile", "dark", "shared", "public", "private", "new", "old", "async",
    "encrypted", "paginated", "localized", "responsive", "accessible", "failing", "partial",
    "weekly", "monthly", "unread", "pinned", "archived", "expired", "pending", "default",
)  # fmt: skip
_NOUNS: Final = (
    "login", "logout", "session", "token", "cache", "dashboard", "sidebar", "navbar", "modal",
    "dialog", "button", "form", "validation", "checkout", "cart", "invoice", "payment",
    "refund", "subscription", "billing", "plan", "coupon", "search", "filter", "sort",
    "pagination", "export", "import", "upload", "download", "avatar", "profile", "settings",
    "preferences", "notification", "toast", "badge", "email", "digest", "webhook", "API",
    "endpoint", "schema", "migration", "index", "query", "report", "chart", "graph",
    "timeline", "calendar", "reminder", "deadline", "milestone", "sprint", "backlog",
    "roadmap", "release", "changelog", "build", "pipeline", "runner", "container", "image",
    "cluster", "node", "queue", "worker", "scheduler", "cron", "job", "retry", "backoff",
    "timeout", "latency", "throughput", "memory", "leak", "crash", "exception", "stacktrace",
    "log", "metrics", "tracing", "alert", "pager", "incident", "postmortem", "outage",
    "firewall", "certificate", "TLS", "DNS", "proxy", "gateway", "loadbalancer", "CDN",
    "font", "icon", "logo", "palette", "theme", "layout", "grid", "typography", "spacing",
    "animation", "transition", "tooltip", "dropdown", "checkbox", "slider", "tab", "menu",
    "onboarding", "tutorial", "signup", "password", "reset", "2FA", "SSO", "OAuth",
    "permissions", "roles", "audit", "compliance", "GDPR", "consent", "cookie", "banner",
    "translation", "locale", "timezone", "currency", "address", "map", "geolocation",
    "offline", "sync", "conflict", "merge", "diff", "history", "undo", "draft", "comment",
    "mention", "reaction", "thread", "attachment", "preview", "thumbnail", "video", "audio",
    "player", "playlist", "feed", "ranking", "recommendation", "experiment", "flag",
    "rollout", "rollback", "hotfix", "patch", "dependency", "library", "SDK", "plugin",
    "extension", "widget", "tray", "installer", "updater", "crashreporter", "telemetry",
)  # fmt: skip
_STATUSES: Final = ("To do", "In progress", "In review", "Done", "Blocked")
_ROLES: Final = ("member", "manager", "owner")
# Actors the server knows (the demo users); ids as the demo seeds them do not matter here.
_ACTORS: Final = (
    ("alice", "Alice", "Anders"),
    ("bob", "Bob", "Brandt"),
    ("carol", "Carol", "Castillo"),
    ("admin", "Ada", "Admin"),
)
_PROJECTS: Final = (
    (1, "Mobile App"),
    (2, "Website Redesign"),
    (3, "Billing Service"),
    (4, "Data Pipeline"),
    (5, "Design System"),
    (6, "Internal Tools"),
    (7, "Customer Portal"),
    (8, "Search Platform"),
)
_EPOCH: Final = datetime(2026, 11, 1, tzinfo=UTC)


def _zipf_weights(count: int) -> list[float]:
    return [1.0 / (rank + 1) for rank in range(count)]


class Corpus:
    """Notification content like the server's events (backend/projects/services.py), with
    words drawn from a Zipf distribution so the full-text index sees common and rare terms.

    Args:
        rng: The source of randomness (seeded: every run writes the same texts).
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words = list(_NOUNS) + list(_ADJECTIVES)
        rng.shuffle(self.words)
        self._word_weights = _zipf_weights(len(self.words))
        self._noun_weights = _zipf_weights(len(_NOUNS))

    def word(self) -> str:
        return self.rng.choices(self.words, self._word_weights)[0]

    def _noun(self) -> str:
        return self.rng.choices(_NOUNS, self._noun_weights)[0]

    def task_title(self) -> str:
        parts = [self.rng.choice(_VERBS)]
        if self.rng.random() < 0.5:
            parts.append(self.rng.choice(_ADJECTIVES))
        parts.append(self._noun())
        if self.rng.random() < 0.4:
            parts.append(self._noun())
        return " ".join(parts)

    def sentence(self, low: int, high: int) -> str:
        words = [self.word() for _ in range(self.rng.randint(low, high))]
        return " ".join(words).capitalize() + "."

    def content(self) -> dict[str, Any]:
        """One notification's shared part, minus ids and time: what the server stores."""
        rng = self.rng
        actor = rng.choice(_ACTORS)
        project_id, project_title = rng.choice(_PROJECTS)
        name = f"{actor[1]} {actor[2]}"
        task = self.task_title()
        task_id = rng.randint(1, 5000)
        url = f"/projects/{project_id}/tasks/{task_id}"
        kind = rng.choices(
            ("moved", "assigned", "created", "updated", "milestone", "member", "announcement"),
            (40, 15, 15, 12, 6, 4, 8),
        )[0]
        priority = "normal"
        data: dict[str, Any] = {"task_id": task_id}
        if kind == "moved":
            old, new = rng.sample(_STATUSES, 2)
            event, title = "task_status_changed", f"Task moved to {new}"
            message = f"{name} moved “{task}” from {old} to {new} in {project_title}"
            data.update(old_status=old.lower().replace(" ", "_"), new_status=new.lower())
        elif kind == "assigned":
            event, title, priority = "task_assigned", "Task assigned to you", "high"
            message = f"{name} assigned “{task}” to you in {project_title}"
        elif kind == "created":
            event, title = "task_created", "New task"
            message = f"{name} added “{task}” to {project_title}"
        elif kind == "updated":
            event, title = "task_updated", "Task updated"
            message = f"{name} renamed “{self.task_title()}” to “{task}” in {project_title}"
        elif kind == "milestone":
            event, title = "milestone_updated", "Milestone updated"
            milestone = f"{self._noun().capitalize()} {rng.choice(('beta', 'launch', 'v2'))}"
            message = f"{name} moved the due date of “{milestone}” in {project_title}"
            url = f"/projects/{project_id}/milestones/{task_id}"
            data = {"milestone_id": task_id}
        elif kind == "member":
            event, title = "team_member_added", f"Added to {project_title}"
            message = f"{name} added you to {project_title} as {rng.choice(_ROLES)}"
            url = f"/projects/{project_id}"
            data = {"role": "member"}
        else:
            event = "announcement"
            title = self.sentence(3, 7).rstrip(".")
            message = " ".join(self.sentence(6, 14) for _ in range(rng.randint(1, 3)))
            priority = rng.choices(("low", "normal", "high", "urgent"), (2, 6, 2, 1))[0]
            url, data = "", {}
            return {
                "title": title,
                "message": message,
                "event_type": event,
                "priority": priority,
                "url": url,
                "actor": None,
                "project": None,
                "data": data,
            }
        return {
            "title": title,
            "message": message,
            "event_type": event,
            "priority": priority,
            "url": url,
            "actor": {"username": actor[0], "first_name": actor[1], "last_name": actor[2]},
            "project": {"id": project_id, "title": project_title},
            "data": data,
        }

    def payload(self, seq: int) -> dict[str, Any]:
        """A notification as the server sends it (backend/notifications/payloads.py)."""
        shared = self.content()
        actor = shared["actor"]
        if actor is not None:
            shared["actor"] = {
                "id": _ACTORS.index((actor["username"], actor["first_name"], actor["last_name"]))
                + 2,
                **actor,
            }
        created = _EPOCH + timedelta(seconds=seq * 37)
        return {
            "id": 500_000 + seq,
            "seq": seq,
            "is_read": False,
            "read_at": None,
            **shared,
            "created_at": created.isoformat().replace("+00:00", "Z"),
        }

    def queries(self, count: int, texts: Sequence[str]) -> list[tuple[str, str]]:
        """``count`` searches a user might type, as ``(kind, text)``, cycling through kinds.

        Args:
            count: How many.
            texts: The stored titles and messages (to find the common and the rare words).
        """
        frequency: Counter[str] = Counter()
        for text in texts:
            frequency.update({word.lower().strip("“”.,") for word in text.split()})
        known = [word for word in self.words if frequency[word.lower()] > 0]
        by_count = sorted(known, key=lambda word: frequency[word.lower()])
        common = by_count[-5:]
        rare = by_count[: max(5, len(by_count) // 10)]
        kinds = ("common word", "word", "two words", "prefix", "rare word", "name")
        names = [first for _, first, _ in _ACTORS] + [title for _, title in _PROJECTS]
        made: list[tuple[str, str]] = []
        for number in range(count):
            kind = kinds[number % len(kinds)]
            if kind == "common word":
                text = self.rng.choice(common)
            elif kind == "word":
                text = self.word()
            elif kind == "two words":
                text = f"{self.word()} {self.word()}"
            elif kind == "prefix":
                text = self.word()[:3]
            elif kind == "rare word":
                text = self.rng.choice(rare)
            else:
                text = self.rng.choice(names)
            made.append((kind, text))
        return made


def _bare_row(payload: dict[str, Any]) -> raw_sqlite.Row:
    """The row bare sqlite3 stores for a payload: the product's columns, converted once."""
    created = datetime.fromisoformat(payload["created_at"])
    project = payload["project"]
    return (
        payload["seq"],
        payload["id"],
        payload["title"],
        payload["message"],
        payload["event_type"],
        payload["priority"],
        payload["url"],
        (created - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
        int(payload["is_read"]),
        json.dumps(payload["actor"]) if payload["actor"] is not None else None,
        project["id"] if project else None,
        project["title"] if project else None,
        json.dumps(payload["data"]),
    )


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _ms(nanoseconds: int) -> float:
    return nanoseconds / 1e6


def _summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(samples, 50),
        "p99": percentile(samples, 99),
        "max": max(samples),
        "mean": statistics.fmean(samples),
    }


# --- the store figures (child process on the server CPU) ------------------------------


def _measure_search(
    corpus: Corpus, settings: Settings, scratch: Path, payloads: list[dict[str, Any]]
) -> tuple[dict[str, Any], Any, Any]:
    """Build the search store (ours and the bare FTS5 peer), then time the queries."""
    from tray_app.net.protocol import parse_notification
    from tray_app.store.db import open_database
    from tray_app.store.inbox import Filters, Inbox, fts_match_expression

    opened = open_database(scratch / "ours-search.sqlite3")
    inbox = Inbox(opened.connection)
    started = time.perf_counter()
    for chunk in _chunks(payloads, 1000):
        inbox.ingest([parse_notification(payload) for payload in chunk])
    build_seconds = time.perf_counter() - started
    bare = raw_sqlite.open_bare(scratch / "bare-fts.sqlite3", fts=True)
    rows = [_bare_row(payload) for payload in payloads]
    for chunk in _chunks(rows, 1000):
        raw_sqlite.insert_many(bare, chunk, fts=True)

    texts = [f"{p['title']} {p['message']}" for p in payloads]
    queries = corpus.queries(settings.search_queries, texts)
    # Same rows from every side, or the comparison means nothing.
    match_counts: dict[str, int] = {}
    for _, text in dict.fromkeys(queries):
        expression = fts_match_expression(text)
        if expression is None:
            raise BenchError(f"query {text!r} has no searchable word")
        ours_seqs = [row.seq for row in inbox.search(Filters(text=text), limit=SEARCH_LIMIT)]
        if ours_seqs != raw_sqlite.search_rowids(bare, expression, SEARCH_LIMIT):
            raise BenchError(f"bare FTS5 and the store disagree on {text!r}")
        bare_seqs = [row[0] for row in raw_sqlite.search_rows(bare, expression, SEARCH_LIMIT)]
        if ours_seqs != bare_seqs:
            raise BenchError(f"bare FTS5 + rows and the store disagree on {text!r}")
        match_counts[text] = inbox.count(Filters(text=text))

    samples: dict[str, list[float]] = {"ours": [], "bare FTS5": [], "bare FTS5 + rows": []}
    kinds: list[str] = []
    for kind, text in queries:
        expression = fts_match_expression(text) or ""
        filters = Filters(text=text)
        begin = time.perf_counter_ns()
        inbox.search(filters, limit=SEARCH_LIMIT)
        samples["ours"].append(_ms(time.perf_counter_ns() - begin))
        begin = time.perf_counter_ns()
        raw_sqlite.search_rowids(bare, expression, SEARCH_LIMIT)
        samples["bare FTS5"].append(_ms(time.perf_counter_ns() - begin))
        begin = time.perf_counter_ns()
        raw_sqlite.search_rows(bare, expression, SEARCH_LIMIT)
        samples["bare FTS5 + rows"].append(_ms(time.perf_counter_ns() - begin))
        kinds.append(kind)
    by_kind = {
        kind: {
            name: _summary([s for s, k in zip(series, kinds, strict=True) if k == kind])
            for name, series in samples.items()
        }
        for kind in dict.fromkeys(kinds)
    }
    slowest = sorted(
        zip(samples["ours"], queries, strict=True), key=lambda item: item[0], reverse=True
    )[:10]
    raw = {
        "rows": len(payloads),
        "build_seconds": build_seconds,
        "queries": [text for _, text in queries],
        "kinds": kinds,
        "samples_ms": samples,
        "by_kind": by_kind,
        "matches": match_counts,
        "slowest_ours": [
            {"ms": ms, "kind": kind, "text": text, "matches": match_counts[text]}
            for ms, (kind, text) in slowest
        ],
    }
    return raw, inbox, bare


def _measure_inserts(
    corpus: Corpus,
    settings: Settings,
    scratch: Path,
    inbox: Any,
    bare_fts: Any,
    prefill: list[raw_sqlite.Row],
) -> dict[str, Any]:
    """Live notifications one at a time onto the search store (and onto the peers' files
    holding the same rows), interleaved."""
    from tray_app.net.protocol import parse_notification

    bare = raw_sqlite.open_bare(scratch / "bare-plain.sqlite3", fts=False)
    for chunk in _chunks(prefill, 1000):
        raw_sqlite.insert_many(bare, chunk, fts=False)
    first = len(prefill) + 1
    payloads = [corpus.payload(seq) for seq in range(first, first + settings.insert_samples)]
    names = ("ours", "bare sqlite3", "bare sqlite3 + FTS5")
    samples: dict[str, list[float]] = {name: [] for name in names}
    # This thread's CPU time per insert too: a wall-clock outlier with no CPU behind it
    # was the scheduler running another process (the machine is shared), not the store.
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for payload in payloads:
        row = _bare_row(payload)
        stored = 0
        for name in names:
            begin, begin_cpu = time.perf_counter_ns(), time.thread_time_ns()
            if name == "ours":
                # Read by the protocol, as the engine hands a live frame's on.
                stored = len(inbox.ingest([parse_notification(payload)]).added)
            elif name == "bare sqlite3":
                raw_sqlite.insert_one(bare, row, fts=False)
            else:
                raw_sqlite.insert_one(bare_fts, row, fts=True)
            samples[name].append(_ms(time.perf_counter_ns() - begin))
            cpu[name].append(_ms(time.thread_time_ns() - begin_cpu))
        if stored != 1:
            raise BenchError(f"seq {payload['seq']} was not stored")
    bare.close()
    return {
        "rows_before": len(prefill),
        "samples_ms": samples,
        "cpu_ms": cpu,
        "summary": {name: _summary(series) for name, series in samples.items()},
        "cpu_summary": {name: _summary(series) for name, series in cpu.items()},
    }


async def _engine_catch_up(path: Path, frames: list[str], caught_up: str) -> tuple[float, int]:
    """Apply a replay through the engine as the socket session does; (seconds, added)."""
    from tray_app.engine import CatchUpFinished, Engine, EngineEvent
    from tray_app.net import protocol
    from tray_app.net.api import ApiClient
    from tray_app.store.db import open_database
    from tray_app.store.inbox import Inbox
    from tray_app.store.outbox import Outbox

    opened = open_database(path)
    inbox = Inbox(opened.connection)
    # Never contacted: the replay comes in as frames; the engine needs a client to exist.
    async with ApiClient("http://127.0.0.1:9") as api:
        engine = Engine(api=api, inbox=inbox, outbox=Outbox(opened.connection, inbox))
        finished: list[int] = []

        def listen(event: EngineEvent) -> None:
            if isinstance(event, CatchUpFinished):
                finished.append(event.added)

        engine.subscribe(listen)
        begin = time.perf_counter()
        for text in frames:
            frame = protocol.parse_server_frame(text)
            await engine.handle_frame(frame, replaying=True)
        await engine.handle_frame(protocol.parse_server_frame(caught_up), replaying=True)
        seconds = time.perf_counter() - begin
    cursor = inbox.cursor()
    opened.connection.close()
    if finished != [len(frames)] or cursor != len(frames):
        raise BenchError(f"catch-up ended with cursor {cursor} and events {finished}")
    return seconds, finished[0]


def _measure_catch_up(corpus: Corpus, settings: Settings, scratch: Path) -> dict[str, Any]:
    """Rounds of: the engine's replay onto a fresh store, one ingest call of the same rows,
    and the two bare peers, each on a fresh file."""
    from tray_app.net.protocol import parse_notification
    from tray_app.store.db import open_database
    from tray_app.store.inbox import Inbox

    count = settings.catch_up_rows
    payloads = [corpus.payload(seq) for seq in range(1, count + 1)]
    frames = [json.dumps({"type": "notification_created", "payload": p}) for p in payloads]
    caught_up = json.dumps(
        {"type": "caught_up", "payload": {"after_seq": 0, "through_seq": count, "replayed": count}}
    )
    rows = [_bare_row(payload) for payload in payloads]
    seconds: dict[str, list[float]] = {
        "ours": [],
        "ours, one ingest call": [],
        "bare sqlite3": [],
        "bare sqlite3 + FTS5": [],
    }
    for number in range(settings.catch_up_rounds):
        folder = scratch / f"catch-up-{number}"
        folder.mkdir()
        took, _ = asyncio.run(_engine_catch_up(folder / "ours.sqlite3", frames, caught_up))
        seconds["ours"].append(took)

        opened = open_database(folder / "ours-one-call.sqlite3")
        begin = time.perf_counter()
        # The rows as the protocol reads them, as the engine's replay hands them on.
        read = [parse_notification(payload) for payload in payloads]
        Inbox(opened.connection).ingest(read, through_seq=count, replay_after_seq=0)
        seconds["ours, one ingest call"].append(time.perf_counter() - begin)
        opened.connection.close()

        for name, fts in (("bare sqlite3", False), ("bare sqlite3 + FTS5", True)):
            bare = raw_sqlite.open_bare(folder / f"{name.replace(' ', '-')}.sqlite3", fts=fts)
            begin = time.perf_counter()
            raw_sqlite.insert_many(bare, rows, fts=fts)
            seconds[name].append(time.perf_counter() - begin)
            bare.close()
    return {
        "rows": count,
        "rounds": settings.catch_up_rounds,
        "seconds": seconds,
        "median_seconds": {name: statistics.median(series) for name, series in seconds.items()},
        "frame_bytes_mean": statistics.fmean(len(frame) for frame in frames),
    }


def store_worker(settings: Settings, scratch: Path) -> dict[str, Any]:
    """Every store figure, in this process (the entry point pins it to CPU 0)."""
    corpus = Corpus(random.Random(SEED))
    payloads = [corpus.payload(seq) for seq in range(1, settings.search_rows + 1)]
    search, inbox, bare_fts = _measure_search(corpus, settings, scratch, payloads)
    inserts = _measure_inserts(
        corpus, settings, scratch, inbox, bare_fts, [_bare_row(p) for p in payloads]
    )
    bare_fts.close()
    catch_up = _measure_catch_up(corpus, settings, scratch)
    return {"search": search, "insert": inserts, "catch_up": catch_up}


# --- the stall: the real app on the real server ---------------------------------------

_SEED_CODE: Final = """
import json, os
from django.db import transaction
from backend.users.models import User
from backend.notifications.selectors import Audience
from backend.notifications.services import notification_create
spec = json.loads(open(os.environ["BENCH_SEED_FILE"], encoding="utf-8").read())
reader, _ = User.objects.get_or_create(
    username=spec["username"], defaults={"first_name": "Rita", "last_name": "Reader"})
reader.set_password(spec["password"])
reader.save()
actors = {u.username: u for u in User.objects.filter(username__in=spec["actors"])}
audience = Audience(users=(reader.pk,))
with transaction.atomic():
    for item in spec["notifications"]:
        project = item["project"]
        actor = item["actor"]
        notification_create(
            audience=audience, title=item["title"], message=item["message"],
            event_type=item["event_type"], priority=item["priority"], url=item["url"],
            actor=actors[actor["username"]] if actor else None,
            project_id=project["id"] if project else None,
            project_title=project["title"] if project else "",
            data=item["data"])
print(reader.pk)
"""


def _move_to_cpu(pid: int, cpu: int) -> None:
    """Pin every thread of a running process (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def _client_env(root: Path) -> dict[str, str]:
    """The app's environment: every file under ``root``, no D-Bus, no proxy, offscreen Qt."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TRAY_", "XDG_", "DBUS_", "QT_"))
        and key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    for name in ("home", "config", "data", "cache", "state", "runtime"):
        (root / name).mkdir(parents=True, mode=0o700)
    env.update(
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "config"),
        XDG_DATA_HOME=str(root / "data"),
        XDG_CACHE_HOME=str(root / "cache"),
        XDG_STATE_HOME=str(root / "state"),
        XDG_RUNTIME_DIR=str(root / "runtime"),
        TRAY_NOTIFIER_MANAGED_FILE=str(root / "no-managed.json"),
        QT_QPA_PLATFORM="offscreen",
        PYTHONUNBUFFERED="1",
    )
    return env


def measure_stall(settings: Settings, scratch: Path) -> dict[str, Any]:
    """Seed the server, start it on CPU 1, run the app (CPU 0) through the catch-up."""
    server_dir = scratch / "server"
    server_dir.mkdir()
    env = common.bench_env(server_dir)
    common.prepare_database(env)
    corpus = Corpus(random.Random(SEED + 1))
    spec = {
        "username": READER,
        "password": READER_PASSWORD,
        "actors": [actor[0] for actor in _ACTORS],
        "notifications": [corpus.content() for _ in range(settings.ui_rows)],
    }
    spec_path = scratch / "seed.json"
    spec_path.write_text(json.dumps(spec))
    began = time.perf_counter()
    common.run_cli({**env, "BENCH_SEED_FILE": str(spec_path)}, "manage", "shell", "-c", _SEED_CODE)
    seed_seconds = time.perf_counter() - began

    command = [sys.executable, "-m", "backend.cli", "serve", "--port", "0"]
    server = common.start_server("ours", command, env, scratch / "server.log")
    try:
        _move_to_cpu(server.process.pid, common.CLIENT_CPU)
        out = scratch / "ui.json"
        child = subprocess.run(
            [
                *(sys.executable, "-m", "bench.client_store", "--worker", "ui"),
                *("--settings", json.dumps(asdict(settings))),
                *("--server", server.base_url, "--out", str(out)),
                *("--scratch", str(scratch / "client")),
            ],
            cwd=common.REPO_ROOT,
            env=_client_env(scratch / "client-home"),
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=common.pin_to_server_cpu,
            check=False,
        )
        if child.returncode != 0 or not out.exists():
            raise BenchError(
                f"the app run failed ({child.returncode}):\n{child.stdout[-3000:]}"
                f"{child.stderr[-3000:]}\nserver log:\n{server.log_tail()}"
            )
        measured: dict[str, Any] = json.loads(out.read_text())
    finally:
        common.stop_server(server)
    measured["seed_seconds"] = seed_seconds
    measured["app_stderr_tail"] = child.stderr[-2000:]
    return measured


def _longest_gap(ticks: Sequence[float], start: float, end: float) -> tuple[float, list[float]]:
    """The longest gap between consecutive ticks overlapping [start, end], and every gap."""
    gaps = [(b - a) * 1000 for a, b in pairwise(ticks) if b >= start and a <= end]
    if not gaps:
        raise BenchError("the loop probe did not tick in the window")
    return max(gaps), gaps


def ui_worker(settings: Settings, server_url: str, data_root: Path) -> dict[str, Any]:
    """In the child (offscreen Qt, CPU 0): the app, the history window, the catch-up."""
    import qasync
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from tray_app.ui.app import AppOptions, TrayApp

    application = QApplication([sys.argv[0]])
    application.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(application)
    asyncio.set_event_loop(loop)
    expected = settings.ui_rows
    options = AppOptions(
        server_url=server_url,
        username=READER,
        data_dir=data_root / "data",
        config_dir=data_root / "config",
        password=READER_PASSWORD,
        session_only=True,
    )
    ticks: list[float] = []
    cpu: list[float] = []
    rows_seen: list[int] = []
    added = [0]
    marks: dict[str, float] = {}
    facts: dict[str, Any] = {"states": [], "caught_up_added": []}
    done = asyncio.Event()
    # A diagnosis aid, off by default: BENCH_B9_PROFILE=PATH writes a pyinstrument profile
    # of the catch-up window (pip install pyinstrument into .venv first).
    profile_path = os.environ.get("BENCH_B9_PROFILE")
    profiler: Any = None
    if profile_path:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)

    async def scenario() -> None:
        app = TrayApp(options)

        def on_added(_row: object, _live: bool) -> None:
            marks.setdefault("first_row", time.perf_counter())
            added[0] += 1

        def on_caught_up(added: int) -> None:
            facts["caught_up_added"].append(added)
            marks["caught_up"] = time.perf_counter()

        def tick() -> None:
            now = time.perf_counter()
            ticks.append(now)
            # Per tick: this thread's CPU time (a gap with little CPU in it was the machine
            # running something else) and the rows stored so far (the work in that turn).
            cpu.append(time.thread_time())
            rows_seen.append(added[0])
            account = app.account
            if "open" not in marks and account is not None:
                # The user opens History from the tray before the replay arrives.
                facts["cursor_at_open"] = account.engine.inbox.cursor()
                account.bridge.notification_added.connect(on_added)
                account.bridge.catch_up_finished.connect(on_caught_up)
                account.bridge.connection_state_changed.connect(
                    lambda change: facts["states"].append(change.state.value)
                )
                app.tray.history_requested.emit()
                marks["open"] = time.perf_counter()
                if profiler is not None:
                    profiler.start()
            history = app.history
            if (
                "done" not in marks
                and "caught_up" in marks
                and history is not None
                and history.model.total == expected
            ):
                marks["done"] = now
                done.set()
                if profiler is not None:
                    profiler.stop()

        probe = QTimer()
        probe.setTimerType(Qt.TimerType.PreciseTimer)
        probe.setInterval(TICK_MS)
        probe.timeout.connect(tick)
        probe.start()
        running = asyncio.get_running_loop().create_task(app.run())
        try:
            async with asyncio.timeout(300):
                await done.wait()
        except TimeoutError:
            raise BenchError(f"the app did not finish the catch-up: {marks} {facts}") from None
        history = app.history
        facts["history_rows_loaded"] = history.model.rowCount() if history else None
        facts["tray_unread"] = app.tray.state.unread
        # Fixed windows: the settle time, then an idle window as long as the catch-up took.
        await asyncio.sleep(SETTLE_SECONDS)
        marks["idle_start"] = time.perf_counter()
        await asyncio.sleep(marks["done"] - marks["open"])
        marks["idle_end"] = time.perf_counter()
        app.quit()
        async with asyncio.timeout(60):
            await running
        probe.stop()

    with loop:
        loop.run_until_complete(scenario())
    if profiler is not None and profile_path:
        Path(profile_path).write_text(profiler.output_text(unicode=True, show_all=False))
    if facts.get("cursor_at_open") != 0:
        raise BenchError(f"rows were stored before the history opened: {facts}")
    stall, gaps = _longest_gap(ticks, marks["open"], marks["done"])
    idle, idle_gaps = _longest_gap(ticks, marks["idle_start"], marks["idle_end"])
    window = [
        number
        for number in range(1, len(ticks))
        if ticks[number] >= marks["open"] and ticks[number - 1] <= marks["done"]
    ]
    cpu_gaps = [(cpu[n] - cpu[n - 1]) * 1000 for n in window]
    top = sorted(window, key=lambda n: ticks[n] - ticks[n - 1])[-10:]
    return {
        "rows": expected,
        "tick_ms": TICK_MS,
        "longest_stall_ms": stall,
        "idle_longest_gap_ms": idle,
        "gaps_ms": gaps,
        "idle_gaps_ms": idle_gaps,
        "longest_stall_cpu_ms": max(cpu_gaps),
        "largest_gaps": [
            {
                "ms": (ticks[n] - ticks[n - 1]) * 1000,
                "cpu_ms": (cpu[n] - cpu[n - 1]) * 1000,
                "rows_stored": rows_seen[n] - rows_seen[n - 1],
                "at_s": ticks[n - 1] - marks["open"],
            }
            for n in reversed(top)
        ],
        "window_seconds": marks["done"] - marks["open"],
        "open_to_first_row_s": marks.get("first_row", marks["open"]) - marks["open"],
        "first_row_to_shown_s": marks["done"] - marks.get("first_row", marks["open"]),
        **facts,
    }


# --- the benchmark ----------------------------------------------------------------------


def _settings_for(profile: str, smoke: bool) -> Settings:
    if profile not in PROFILES:
        raise BenchError(f"unknown profile {profile!r}")
    return SMOKE if smoke else PROFILES[profile]


def _run_store_child(settings: Settings, scratch: Path) -> dict[str, Any]:
    out = scratch / "store.json"
    folder = scratch / "store"
    folder.mkdir()
    child = subprocess.run(
        [
            *(sys.executable, "-m", "bench.client_store", "--worker", "store"),
            *("--settings", json.dumps(asdict(settings))),
            *("--scratch", str(folder), "--out", str(out)),
        ],
        cwd=common.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        preexec_fn=common.pin_to_server_cpu,
        check=False,
    )
    if child.returncode != 0 or not out.exists():
        raise BenchError(f"the store run failed ({child.returncode}):\n{child.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(out.read_text())
    return measured


def run(profile: str, *, smoke: bool, scratch: Path) -> Outcome:
    """B9: insert p99, 10k catch-up, search p99 and the longest UI stall, with baselines."""
    settings = _settings_for(profile, smoke)
    store = _run_store_child(settings, scratch)
    stall = measure_stall(settings, scratch)

    insert = store["insert"]["summary"]
    catch_up = store["catch_up"]["median_seconds"]
    search = store["search"]["samples_ms"]
    search_rows = store["search"]["rows"]
    catch_up_rows = store["catch_up"]["rows"]
    results = [
        result(
            id="B9",
            metric=f"store insert, one live notification, p99 ({search_rows:,} rows stored)",
            unit="ms",
            ours=insert["ours"]["p99"],
            peers={name: insert[name]["p99"] for name in ("bare sqlite3", "bare sqlite3 + FTS5")},
            target="under 1 ms",
            met=insert["ours"]["p99"] < INSERT_TARGET_MS,
        ),
        result(
            id="B9",
            metric=f"catch-up of {catch_up_rows:,} notifications applied (median)",
            unit="s",
            ours=catch_up["ours"],
            peers={name: catch_up[name] for name in ("bare sqlite3", "bare sqlite3 + FTS5")},
            target="under 2 s",
            met=catch_up["ours"] < CATCH_UP_TARGET_S,
        ),
        result(
            id="B9",
            metric=f"full-text search, newest {SEARCH_LIMIT} of {search_rows:,} rows, p99",
            unit="ms",
            ours=percentile(search["ours"], 99),
            peers={
                name: percentile(search[name], 99) for name in ("bare FTS5", "bare FTS5 + rows")
            },
            target="under 5 ms",
            met=percentile(search["ours"], 99) < SEARCH_TARGET_MS,
        ),
        result(
            id="B9",
            metric=(f"longest UI event-loop stall, {stall['rows']:,}-row catch-up, history open"),
            unit="ms",
            ours=stall["longest_stall_ms"],
            peers={"idle loop": stall["idle_longest_gap_ms"]},
            target="under 50 ms",
            met=stall["longest_stall_ms"] < STALL_TARGET_MS,
        ),
    ]
    cdfs = {
        f"B9 store search, newest {SEARCH_LIMIT} of {search_rows:,} rows": {
            "ours": search["ours"],
            "bare FTS5": search["bare FTS5"],
            "bare FTS5 + rows": search["bare FTS5 + rows"],
        },
        "B9 store insert, one notification": store["insert"]["samples_ms"],
        f"B9 UI loop gaps during a {stall['rows']:,}-row catch-up": {
            "ours": stall["gaps_ms"],
            "idle loop": stall["idle_gaps_ms"],
        },
    }
    raw = {"settings": asdict(settings), "profile": profile, "smoke": smoke, **store}
    raw["stall"] = stall
    return Outcome(results=results, raw=raw, cdfs=cdfs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_store", description=__doc__)
    parser.add_argument("--profile", choices=common.PROFILE_NAMES, default="quick")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--output", type=Path, help="write the rows (and raw data) here")
    # The children this module starts; not for use by hand.
    parser.add_argument("--worker", choices=("store", "ui"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    if options.worker is not None:
        settings = Settings(**json.loads(options.settings))
        if options.worker == "store":
            measured = store_worker(settings, options.scratch)
        else:
            measured = ui_worker(settings, options.server, options.scratch)
        options.out.write_text(json.dumps(measured))
        return 0

    common.pin_to_client_cpu()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-b9-") as scratch:
        outcome = run(options.profile, smoke=options.smoke, scratch=Path(scratch))
    for row in outcome.results:
        print(json.dumps(row))
    print(f"took {time.monotonic() - started:.0f} s")
    if options.output is not None:
        options.output.write_text(
            json.dumps({"results": outcome.results, "raw": outcome.raw, "cdfs": outcome.cdfs})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
