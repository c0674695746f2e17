"""A socket's delivery state without a server: doorbells, resumes, replays, the send
queue and the rate limit, driven by hand and by hypothesis.

No database and no sockets: the state is a pure object (backend/notifications/
socket_state.py), and ``Db`` below stands in for the user's Inbox rows, the only
thing the state reads (through the consumer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from backend.notifications import protocol
from backend.notifications.selectors import ReplayRow
from backend.notifications.socket_state import ReadRows, SocketState, replay_batch_size

HELLO = '{"type":"hello","payload":{}}'


def make_state(
    *,
    queue_limit: int = 1000,
    replay_batch: int = 200,
    replay_max: int = 10_000,
    rate: float = 20.0,
    burst: float = 60.0,
) -> SocketState:
    return SocketState(
        queue_limit=queue_limit,
        replay_batch=replay_batch,
        replay_max=replay_max,
        rate=rate,
        burst=burst,
        now=0.0,
    )


def frame(seq: int) -> str:
    return protocol.encode("notification_created", {"seq": seq, "title": f"n{seq}"})


@dataclass
class Db:
    """A user's Inbox: seqs 1..latest, some deleted."""

    latest: int = 0
    deleted: set[int] = field(default_factory=set)

    def commit(self) -> int:
        self.latest += 1
        return self.latest

    def rows(self, read: ReadRows) -> list[ReplayRow]:
        seqs = range(read.after_seq + 1, min(self.latest, read.after_seq + read.limit) + 1)
        return [
            ReplayRow(seq=s, payload=None if s in self.deleted else {"seq": s, "title": f"n{s}"})
            for s in seqs
        ]

    def live(self, after: int) -> list[int]:
        return [s for s in range(after + 1, self.latest + 1) if s not in self.deleted]


def drain(state: SocketState) -> list[dict[str, Any]]:
    frames = [json.loads(f) for f in state.pending]
    state.pending.clear()
    return frames


def run_reads(state: SocketState, db: Db) -> list[dict[str, Any]]:
    """Serve every read the state asks for, sending frames as a fast client reads them."""
    sent = drain(state)
    while (read := state.next_read()) is not None or state.pending:
        if read is not None:
            state.rows_read(read, db.rows(read))
        sent += drain(state)
    return sent


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["payload"]["seq"] for f in frames if f["type"] == "notification_created"]


def opened(db: Db | None = None, **options: Any) -> SocketState:
    state = make_state(**options)
    state.open(latest_seq=db.latest if db else 0, hello=HELLO)
    assert [f["type"] for f in drain(state)] == ["hello"]
    return state


# -- live delivery ---------------------------------------------------------------


def test_the_next_seq_goes_out_an_older_one_is_a_duplicate() -> None:
    state = opened()
    assert state.notification(1, frame(1))
    assert not state.notification(1, frame(1))
    assert state.notification(2, frame(2))
    assert seqs(drain(state)) == [1, 2]
    assert state.next_read() is None


def test_only_the_next_seq_with_nothing_queued_skips_the_queue() -> None:
    state = make_state()
    assert not state.notification_now(1)  # no hello yet: the database has it
    state.open(latest_seq=0, hello=HELLO)
    assert not state.notification_now(1)  # hello still queued: it goes first
    drain(state)
    assert state.notification_now(1)
    assert state.sent_seq == 1
    assert not state.pending
    assert not state.notification_now(1)  # a duplicate
    assert not state.notification_now(3)  # a gap: notification() starts the catch-up
    assert state.sent_seq == 1
    assert not state.catching_up
    state.push_one(frame(0))  # an answer waiting: the next seq queues behind it
    assert not state.notification_now(2)
    assert state.notification(2, frame(2))
    assert [f["payload"].get("seq") for f in drain(state)] == [0, 2]
    assert not state.notification(4, frame(4))  # a gap: a catch-up starts
    assert state.catching_up
    assert not state.notification_now(3)  # the run sends it, in order
    state.close(protocol.CLOSE_TRY_AGAIN)
    assert not state.notification_now(3)


def test_a_skipped_seq_starts_a_catch_up_from_the_database() -> None:
    db = Db(latest=3)
    state = opened(Db(latest=0))
    assert not state.notification(3, frame(3))  # 1 and 2 rang nowhere
    assert state.catching_up
    read = state.next_read()
    assert read == ReadRows(after_seq=0, limit=200)
    assert state.next_read() is None  # one read at a time
    state.rows_read(read, db.rows(read))
    frames = run_reads(state, db)
    assert seqs(frames) == [1, 2, 3]
    assert frames[-1] == {
        "type": "caught_up",
        "payload": {"after_seq": 0, "through_seq": 3, "replayed": 3},
    }
    assert state.notification(4, frame(4))


def test_doorbells_during_a_catch_up_make_it_read_again() -> None:
    db = Db(latest=2)
    state = opened(Db(latest=0))
    state.request_catch_up()
    read = state.next_read()
    assert read is not None
    db.commit()  # seq 3 commits while the read runs; its doorbell comes in
    assert not state.notification(3, frame(3))
    state.rows_read(read, Db(latest=2).rows(read))  # the read saw only 1 and 2
    frames = run_reads(state, db)
    assert seqs(frames) == [1, 2, 3]
    assert frames[-1]["payload"] == {"after_seq": 0, "through_seq": 3, "replayed": 3}


def test_doorbells_before_hello_are_read_from_the_database() -> None:
    db = Db(latest=5)
    state = make_state()
    assert not state.notification(6, frame(6))  # before hello: not sent
    db.commit()
    state.open(latest_seq=5, hello=HELLO)
    frames = run_reads(state, db)
    assert [f["type"] for f in frames] == ["hello", "notification_created", "caught_up"]
    assert seqs(frames) == [6]


def test_hello_goes_first_even_behind_frames_queued_while_authenticating() -> None:
    state = make_state()
    state.push(['{"type":"unread_count","payload":{}}'])
    state.open(latest_seq=0, hello=HELLO)
    assert [f["type"] for f in drain(state)] == ["hello", "unread_count"]


# -- resume ----------------------------------------------------------------------


def test_resume_replays_in_batches_and_ends_with_an_honest_caught_up() -> None:
    db = Db(latest=30, deleted={14})
    state = opened(db, replay_batch=7)
    state.resume(12, latest=state.known_latest)
    frames = run_reads(state, db)
    assert seqs(frames) == [s for s in range(13, 31) if s != 14]
    assert frames[-1]["payload"] == {"after_seq": 12, "through_seq": 30, "replayed": 17}


def test_a_resume_during_a_catch_up_restarts_it_from_the_cursor() -> None:
    db = Db(latest=10)
    state = opened(Db(latest=0), replay_batch=4)
    state.request_catch_up()
    read = state.next_read()
    assert read == ReadRows(after_seq=0, limit=4)
    state.resume(6, latest=10)
    state.rows_read(read, db.rows(read))  # read before the resume: dropped
    frames = run_reads(state, db)
    assert seqs(frames) == [7, 8, 9, 10]
    assert frames[-1]["payload"] == {"after_seq": 6, "through_seq": 10, "replayed": 4}


def test_a_backlog_beyond_replay_max_is_sent_to_rest() -> None:
    db = Db(latest=8)
    state = opened(db, replay_max=5)
    state.resume(1, latest=8, ref="r")
    (answer,) = drain(state)
    assert answer == {
        "type": "resync_required",
        "payload": {
            "after_seq": 1,
            "latest_seq": 8,
            "page_url": "/api/inbox/?after_seq=1&limit=200",
        },
        "ref": "r",
    }
    assert state.notification(9, frame(9))  # then live from latest_seq


def test_a_cursor_ahead_of_the_data_is_refused() -> None:
    state = opened(Db(latest=3))
    with pytest.raises(protocol.ProtocolError) as ahead:
        state.resume(4, latest=3)
    assert ahead.value.code == "cursor_ahead"
    assert not state.catching_up


def test_resume_at_open_uses_the_rows_read_with_the_user() -> None:
    db = Db(latest=5)
    state = make_state(replay_batch=3)
    first = db.rows(ReadRows(after_seq=1, limit=3))
    state.open(latest_seq=5, hello=HELLO, resume_after=1, first_rows=first)
    assert [f["type"] for f in drain(state)] == ["hello", *["notification_created"] * 3]
    frames = run_reads(state, db)  # the second batch is read
    assert seqs(frames) == [5]
    assert frames[-1]["payload"] == {"after_seq": 1, "through_seq": 5, "replayed": 4}


def test_resume_at_open_reads_again_for_doorbells_rung_while_authenticating() -> None:
    db = Db(latest=2)
    state = make_state()
    first = db.rows(ReadRows(after_seq=0, limit=200))  # read with the user: seqs 1, 2
    db.commit()
    state.notification(3, frame(3))  # seq 3 rang before hello
    state.open(latest_seq=2, hello=HELLO, resume_after=0, first_rows=first)
    frames = run_reads(state, db)
    assert seqs(frames) == [1, 2, 3]
    assert frames[-1]["payload"] == {"after_seq": 0, "through_seq": 3, "replayed": 3}


@pytest.mark.parametrize(("after", "code"), [(9, "cursor_ahead")])
def test_a_bad_resume_at_open_is_an_error_after_hello(after: int, code: str) -> None:
    state = make_state()
    state.open(latest_seq=3, hello=HELLO, resume_after=after, first_rows=[])
    hello, error = drain(state)
    assert hello["type"] == "hello"
    assert error["payload"]["code"] == code
    assert not state.catching_up


# -- queue and rate --------------------------------------------------------------


def test_a_full_queue_closes_with_1013_and_drops_the_backlog() -> None:
    state = opened(queue_limit=3)
    for seq in range(1, 4):
        state.notification(seq, frame(seq))
    assert state.close_code is None
    state.notification(4, frame(4))
    assert state.close_code == protocol.CLOSE_TRY_AGAIN
    assert not state.pending
    state.push(["x"])
    assert not state.pending


def test_a_catch_up_waits_for_room_in_the_queue() -> None:
    db = Db(latest=50)
    state = opened(Db(latest=0), queue_limit=8, replay_batch=200)
    assert state.batch == replay_batch_size(replay_batch=200, queue_limit=8) == 2
    state.request_catch_up()
    sent: list[int] = []
    while True:
        read = state.next_read()
        if read is not None:
            state.rows_read(read, db.rows(read))
        elif not state.pending:
            break
        assert len(state.pending) <= 8 // 2 + state.batch
        if len(state.pending) > 4 or read is None:  # the client reads one frame
            sent += seqs([json.loads(state.pending.popleft())])
    assert sent == list(range(1, 51))
    assert state.close_code is None


def test_the_rate_limit_is_a_token_bucket() -> None:
    state = opened(rate=1.0, burst=3.0)
    assert all(state.client_frame(0.0) for _ in range(3))
    assert state.client_frame(1.0)  # one more token after a second
    assert not state.client_frame(1.0)
    assert state.close_code == protocol.CLOSE_POLICY


def test_a_closed_state_sends_and_reads_nothing() -> None:
    state = opened(Db(latest=0))
    state.request_catch_up()
    read = state.next_read()
    assert read is not None
    state.close(protocol.CLOSE_RESTART)
    state.close(protocol.CLOSE_TRY_AGAIN)
    assert state.close_code == protocol.CLOSE_RESTART
    state.rows_read(read, Db(latest=2).rows(read))
    assert not state.pending
    assert state.next_read() is None


# -- random interleavings --------------------------------------------------------


class Interleavings(RuleBasedStateMachine):
    """Doorbells in order, duplicated and lost; resumes from a client cursor (the real
    client's rules, docs/protocol.md "Resume"); replay reads that return while doorbells
    and resumes come in; a client that reads frames slowly.

    Checked after every step: what the state queued never has a gap or a duplicate
    (except what a resume below it asked for again), and every caught_up is honest: a
    client that follows the protocol's rules never holds a cursor with a row missing
    below it. At the end, with the database poll's catch-up, the client has every row.
    """

    def __init__(self) -> None:
        super().__init__()
        self.db = Db()
        self.bells: list[int] = []  # doorbells on their way, in ring order
        self.read: ReadRows | None = None
        self.read_snapshot: list[ReplayRow] = []
        # The server-side view of what was queued.
        self.last_queued = 0
        self.rebases: set[int] = set()  # cursors the queue may restart from next
        self.queued_at: dict[int, int] = {}
        self.resumed_below: list[tuple[int, int]] = []  # (step, cursor)
        self.step = 0
        # The client.
        self.cursor = 0
        self.stored: set[int] = set()
        self.replaying = False
        self.lost = False  # a doorbell lost since the last poll or resume

    @initialize(
        latest=st.integers(0, 6),
        deleted=st.sets(st.integers(1, 6)),
        queue=st.sampled_from([4, 8, 1000]),
        batch=st.integers(1, 5),
        at_connect=st.booleans(),
        early=st.integers(0, 3),
    )
    def open(
        self, latest: int, deleted: set[int], queue: int, batch: int, at_connect: bool, early: int
    ) -> None:
        self.db = Db(latest=latest, deleted={d for d in deleted if d <= latest})
        self.state = make_state(queue_limit=queue, replay_batch=batch, replay_max=12)
        # What the opening statement read (with ?after_seq=0, the first batch too) ...
        first = self.db.rows(ReadRows(after_seq=0, limit=self.state.batch))
        # ... and notifications committed after it, whose doorbells ring before hello.
        for _ in range(early):
            seq = self.db.commit()
            self.state.notification(seq, frame(seq))
        self.last_queued = latest
        # The client starts empty (cold start) and resumes from 0: at connect, or with a
        # resume frame after hello.
        if at_connect:
            self.state.open(latest_seq=latest, hello=HELLO, resume_after=0, first_rows=first)
            self.rebases.add(0)
            self.resumed_below.append((self.step, 0))
            self.replaying = True
            self.check_queue()
            self.take_all_frames()
        else:
            self.state.open(latest_seq=latest, hello=HELLO)
            self.check_queue()
            self.take_all_frames()
            self.client_resume()

    # -- the world --

    @rule(deleted=st.booleans())
    def commit(self, deleted: bool) -> None:
        seq = self.db.commit()
        if deleted:
            self.db.deleted.add(seq)
        self.bells.append(seq)

    @precondition(lambda self: self.bells)
    @rule(how=st.sampled_from(["ring", "duplicate", "lose"]), direct=st.booleans())
    def doorbell(self, how: str, direct: bool = False) -> None:
        seq = self.bells[0]
        if how != "duplicate":
            self.bells.pop(0)
        if how == "lose":
            self.lost = True
        elif direct and self.state.notification_now(seq):
            # The consumer's hot path: the frame skips the queue, straight to the client,
            # so nothing may be queued that it would overtake.
            assert not self.state.pending
            self.step += 1
            self.check_sent(seq)
            self.client_frame(json.loads(frame(seq)))
        else:
            self.state.notification(seq, frame(seq))
            self.check_queue()

    @rule()
    def poll(self) -> None:
        self.state.request_catch_up()  # the database watch, a Redis resubscribe
        self.lost = False

    @rule()
    def start_read(self) -> None:
        if self.read is None:
            read = self.state.next_read()
            if read is not None:
                self.read, self.read_snapshot = read, self.db.rows(read)
            self.check_queue()

    @precondition(lambda self: self.read is not None)
    @rule()
    def finish_read(self) -> None:
        assert self.read is not None
        read, self.read = self.read, None
        self.state.rows_read(read, self.read_snapshot)
        self.check_queue()

    @rule(count=st.integers(1, 5))
    def client_reads(self, count: int) -> None:
        for _ in range(count):
            if not self.state.pending:
                break
            self.client_frame(json.loads(self.state.pending.popleft()))

    @rule()
    def settle(self) -> None:
        """Reads answered and frames read until the socket is idle (then it is live)."""
        for _ in range(100):
            if self.read is not None:
                self.finish_read()
            self.start_read()
            if self.read is None and not self.state.pending:
                break
            self.take_all_frames()
        if not self.bells and not self.lost and self.state.close_code is None:
            # Every doorbell rang and none was lost since the last poll or resume: nothing
            # may be left for a later doorbell to bring.
            assert set(self.db.live(0)) <= self.stored, sorted(set(self.db.live(0)) - self.stored)

    @rule()
    def client_resume(self) -> None:
        """The client resumes from its cursor (after a gap, or a lost replay)."""
        cursor = self.cursor
        # As the consumer: the database is asked only for a cursor above what is known.
        known = self.state.known_latest
        self.state.resume(cursor, latest=known if cursor <= known else self.db.latest)
        self.rebases.add(cursor)
        self.resumed_below.append((self.step, cursor))
        self.lost = False  # the replay reads whatever was committed, rung or not
        self.replaying = True
        self.check_queue()

    # -- checks --

    def take_all_frames(self) -> None:
        while self.state.pending:
            self.client_frame(json.loads(self.state.pending.popleft()))

    def check_queue(self) -> None:
        """What was queued since the last check: consecutive rows, no duplicates."""
        self.step += 1
        if self.state.close_code is not None:
            return
        for item in list(self.state.pending)[getattr(self, "_checked", 0) :]:
            document = json.loads(item)
            if document["type"] == "resync_required":
                self.rebases.add(document["payload"]["latest_seq"])
            if document["type"] == "caught_up":
                # A replay moves past deleted rows without a frame: live goes on from here.
                self.rebases.add(document["payload"]["through_seq"])
            if document["type"] != "notification_created":
                continue
            self.check_sent(document["payload"]["seq"])
        self._checked = len(self.state.pending)

    def check_sent(self, seq: int) -> None:
        """A notification queued, or written straight out: the next one, no duplicate."""
        bases = {self.last_queued, *self.rebases}
        # The next seq (live: a doorbell does not know the row was deleted since), or
        # the next row still there (a replay skips deleted ones).
        assert any(seq in (base + 1, *self.db.live(base)[:1]) for base in bases), (seq, bases)
        if seq in self.queued_at:
            # Only a resume from below it, after it was queued, may ask for it again.
            first = self.queued_at[seq]
            assert any(s >= first and c < seq for s, c in self.resumed_below), seq
        self.queued_at[seq] = self.step
        self.last_queued = seq
        self.rebases.clear()

    def client_frame(self, document: dict[str, Any]) -> None:
        self._checked = max(0, getattr(self, "_checked", 0) - 1)
        kind, payload = document["type"], document["payload"]
        if kind == "notification_created":
            seq = payload["seq"]
            self.stored.add(seq)
            if seq == self.cursor + 1:
                self.cursor = seq
            elif seq > self.cursor + 1 and not self.replaying:
                self.client_resume()  # a gap outside a replay: the client asks again
        elif kind == "caught_up" and payload["after_seq"] <= self.cursor:
            self.cursor = max(self.cursor, payload["through_seq"])
            self.replaying = False
        elif kind == "resync_required":
            # The client pages over REST up to latest_seq.
            latest = payload["latest_seq"]
            self.stored |= set(self.db.live(0)) & set(range(latest + 1))
            self.cursor = max(self.cursor, latest)
            self.replaying = False

    @invariant()
    def the_cursor_never_passes_a_missing_row(self) -> None:
        if not hasattr(self, "state"):
            return
        missing = set(self.db.live(0)) & set(range(1, self.cursor + 1))
        assert missing <= self.stored, sorted(missing - self.stored)

    def teardown(self) -> None:
        if not hasattr(self, "state") or self.state.close_code is not None:
            return  # closed with 1013: the client reconnects and resumes (tested above)
        # Every doorbell lands or is lost, the reads finish, the poll runs, and the
        # client reads everything: it must then hold every row.
        while self.bells:
            self.doorbell("ring")
            self.take_all_frames()  # a reading client (one that is not is closed: 1013)
        if self.read is not None:
            self.finish_read()
        self.poll()
        for _ in range(1000):
            read = self.state.next_read()
            if read is not None:
                self.state.rows_read(read, self.db.rows(read))
                self.check_queue()
            elif self.state.pending:
                self.take_all_frames()
            elif self.cursor < self.db.latest:
                # Its replay was answered by an earlier caught_up, or the last frames it
                # saw left a gap (deleted rows): as on every reconnect, it resumes.
                self.client_resume()
            else:
                break
        assert self.state.close_code is None
        assert set(self.db.live(0)) <= self.stored
        assert self.cursor == self.db.latest


Interleavings.TestCase.settings = hypothesis_settings(
    max_examples=500, stateful_step_count=30, deadline=None
)
test_random_interleavings_never_gap_or_duplicate = Interleavings.TestCase


# -- the unread count -------------------------------------------------------------


def _count(frame: str | None) -> int | None:
    return None if frame is None else int(json.loads(frame)["payload"]["unread_count"])


def test_each_new_notification_moves_the_count_from_hellos() -> None:
    state = make_state()
    state.open(latest_seq=10, hello=HELLO, unread_count=3)
    drain(state)
    assert state.count_frame() is None  # hello said 3

    assert state.notification_now(11)
    state.count_new(11)
    assert _count(state.count_frame()) == 4
    assert state.count_frame() is None  # said once

    # Queued behind something: counted now, said once the queue drains.
    state.push_one(protocol.encode("pong"))
    assert state.notification(12, frame(12))
    assert state.notification(13, frame(13))
    assert _count(state.count_frame()) == 6


def test_a_read_state_change_sets_the_count_and_later_ones_count_on() -> None:
    state = opened(Db(latest=10))
    change = [protocol.encode("notification_updated", {"id": 1}), protocol.unread_count_frame(2)]

    state.read_state(change, unread=2, latest_seq=10)
    assert drain(state)[-1]["payload"] == {"unread_count": 2}
    assert state.count_frame() is None
    state.notification(11, frame(11))
    assert _count(state.count_frame()) == 3


def test_a_change_that_arrives_after_newer_notifications_keeps_them_counted() -> None:
    # Several processes: a change committed at seq 10 reaches the socket after 11 and 12.
    state = opened(Db(latest=10))
    state.notification(11, frame(11))
    state.notification(12, frame(12))
    drain(state)

    state.read_state(
        [protocol.encode("all_read"), protocol.unread_count_frame(0)], unread=0, latest_seq=10
    )

    assert drain(state)[-1] == {"type": "unread_count", "payload": {"unread_count": 2}}
    assert state.unread == 2


def test_a_catch_up_counts_the_rows_it_finds_above_what_was_counted() -> None:
    db = Db(latest=4)
    state = make_state()
    state.open(latest_seq=4, hello=HELLO, unread_count=4)
    drain(state)
    for _ in range(3):
        db.commit()
    state.notification(7, frame(7))  # 5 and 6 rang nowhere: a catch-up reads them
    run_reads(state, db)

    assert state.unread == 7
    assert _count(state.count_frame()) == 7
    # A replay of rows hello already counted changes nothing.
    state.resume(0, latest=7)
    run_reads(state, db)
    assert state.count_frame() is None


def test_the_count_frame_is_what_encode_writes() -> None:
    assert protocol.unread_count_frame(12) == protocol.encode("unread_count", {"unread_count": 12})
