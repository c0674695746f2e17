"""One socket's delivery state, with no I/O (sans-I/O, like websockets' protocol objects).

The consumer (consumers.py) feeds it what happens (a doorbell, a client's
``resume``, rows read from the database, frames handed to the transport, the
clock) and does what it asks: send the frames in ``pending``, read the rows
``next_read()`` names, close with ``close_code``. Everything that makes a socket
gap-free is here, so tests drive it without a server
(tests/backend/notifications/test_socket_state.py).

- ``sent_seq`` is the highest seq queued on this socket with nothing missing
  below it: a doorbell for ``sent_seq + 1`` goes straight out, an older one is
  a duplicate, a newer one means a doorbell went missing and the socket catches
  up from the database.
- A catch-up reads rows above ``sent_seq`` in batches and ends with
  ``caught_up`` covering ``(covered_from, sent_seq]``: every row in that range
  was queued in this run (deleted ones excepted). Doorbells during a run only
  mark it dirty (the run reads again); a ``resume`` during a run restarts it
  from the resume's cursor.
- Every outgoing frame goes through one bounded queue (``pending``): a socket
  whose backlog reaches ``queue_limit`` is closed with 1013. A catch-up adds a
  batch only while the queue is at most half full, so a replay never trips it.
- Client frames pass a token bucket; a client over it is closed with 1008.
- ``unread`` is the user's unread count: hello's, a read-state change's (with the
  newest seq it includes), plus one for each unread notification queued above that
  seq. Whenever it differs from what the socket last said, an ``unread_count``
  frame follows the notifications (``count_frame``: in the same write as one sent
  at once, else once the queue drains), so a client that only listens to
  ``unread_count`` (a bell) stays right when notifications arrive.

docs/protocol.md is the reference for the frames and close codes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backend.notifications import protocol


class Row(Protocol):
    """A row of a replay (selectors.ReplayRow): its seq, and its payload, None when the
    user deleted it (never sent, but the cursor moves past it)."""

    @property
    def seq(self) -> int: ...

    @property
    def payload(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class ReadRows:
    """What the socket needs from the database: up to ``limit`` rows above ``after_seq``."""

    after_seq: int
    limit: int


def replay_batch_size(*, replay_batch: int, queue_limit: int) -> int:
    """Rows per catch-up read. A batch goes into the queue whole once it is at most half
    full, so it must fit in a quarter of it: a bigger one (TRAY_WS_SEND_QUEUE set below
    TRAY_REPLAY_BATCH) would close every resuming socket with 1013."""
    return min(replay_batch, max(1, queue_limit // 4))


# How many of the seqs counted since the last read-state change a socket remembers, to
# count those a late change did not see (several processes: a change and newer
# notifications crossing on their way, a few ms apart). 32 ints a socket: 2,000 sockets
# holding 1,024 each were 35 MiB more RSS in B6.
COUNTED_SEQS = 32


class SocketState:
    """The delivery state of one socket. Not thread-safe; one event loop drives it."""

    def __init__(
        self,
        *,
        queue_limit: int,
        replay_batch: int,
        replay_max: int,
        rate: float,
        burst: float,
        now: float,
    ) -> None:
        self.pending: deque[str] = deque()
        """Frames to send, oldest first; the consumer pops them as it sends."""
        self.close_code: int | None = None
        """Set once: the socket must be closed with this code (pending is then empty)."""
        self.ready = False
        self.sent_seq = 0
        self.hello_latest_seq = 0
        self.unread = 0
        self._said_unread = 0  # the count the socket's last unread_count frame (or hello) said
        self._counted_through = 0  # the newest seq ``unread`` includes
        # Seqs counted by this socket since the last read-state change, newest last.
        self._counted: deque[int] = deque(maxlen=COUNTED_SEQS)
        self.queue_limit = queue_limit
        self.batch = replay_batch_size(replay_batch=replay_batch, queue_limit=queue_limit)
        self._room = queue_limit // 2
        self._replay_max = replay_max
        # Catch-up bookkeeping.
        self.catching_up = False
        self._reading: ReadRows | None = None
        self._finishing = False  # rows exhausted: caught_up waits for room in the queue
        self._dirty = False
        self._resume_to: int | None = None
        self._covered_from = 0
        self._replayed = 0
        # Client frame rate (token bucket).
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._tokens_at = now

    # -- outgoing -----------------------------------------------------------

    def push(self, frames: Sequence[str]) -> None:
        """Queue frames (acks, errors, read-state and presence frames) in order."""
        if self.close_code is not None:
            return
        # The bound is on the backlog, not the batch: one batch is itself bounded (a
        # bulk action answers at most MAX_IDS_PER_REQUEST frames) and must go whole.
        if len(self.pending) >= self.queue_limit:
            self.close(protocol.CLOSE_TRY_AGAIN)
            return
        self.pending.extend(frames)

    def push_one(self, frame: str) -> None:
        """``push([frame])`` without the list (the live delivery's hot path)."""
        if self.close_code is not None:
            return
        if len(self.pending) >= self.queue_limit:
            self.close(protocol.CLOSE_TRY_AGAIN)
            return
        self.pending.append(frame)

    def close(self, code: int) -> None:
        """Close with ``code`` (the first code wins). Pending frames are dropped: the
        database has every notification, and the client resumes."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.pending.clear()
        self.catching_up = False
        self._reading = None

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    # -- live delivery ------------------------------------------------------

    def open(
        self,
        *,
        latest_seq: int,
        hello: str,
        resume_after: int | None = None,
        first_rows: Sequence[Row] | None = None,
        unread_count: int = 0,
    ) -> None:
        """The socket is authenticated: queue ``hello``; notifications go out from here.

        Args:
            latest_seq: The user's latest seq, read after the socket was registered
                with the hub (a notification committed later rings its doorbell here).
            hello: The encoded ``hello`` frame.
            resume_after: The cursor of a resume asked for at connect (``?after_seq``),
                already validated; handled exactly like a ``resume`` frame after hello.
            first_rows: The rows above ``resume_after`` (at most ``batch``), read in the
                same statement as ``latest_seq``; used as the replay's first read.
            unread_count: hello's count, read in that statement too.
        """
        if self.close_code is not None or self.ready:
            return
        self.ready = True
        self.hello_latest_seq = self.sent_seq = self._counted_through = latest_seq
        self.unread = self._said_unread = unread_count
        # Doorbells rung before now were not sent (no hello yet): the database has them.
        missed = self._dirty
        self._dirty = False
        # First even if frames (read-state changes) were queued while authenticating.
        self.pending.appendleft(hello)
        if resume_after is not None:
            try:
                self.resume(resume_after, latest=latest_seq)
            except protocol.ProtocolError as error:
                self.push_one(protocol.encode_error(error.code, error.message))
            if first_rows is not None and self.catching_up:
                read = self.next_read()  # from resume_after: the run starts there
                if read is not None:
                    # Those rows were read before any doorbell rung since: if one did,
                    # the run reads again after them.
                    self._dirty = missed
                    self.rows_read(read, first_rows)
                    return
        if missed:
            self.request_catch_up()

    def notification(self, seq: int, frame: str) -> bool:
        """A doorbell for this socket's user. Returns True when ``frame`` was queued."""
        if not self.ready or self.catching_up:
            self._dirty = True
            return False
        sent = self.sent_seq
        if seq == sent + 1:
            self.sent_seq = seq
            self.push_one(frame)
            self.count_new(seq)  # said once the queue drains (count_frame)
            return True
        if seq > sent:
            self.request_catch_up()  # a doorbell went missing: the database has it
        return False  # else a duplicate doorbell

    def count_new(self, seq: int) -> None:
        """A new (unread) notification ``seq`` was queued or sent: counted, unless
        ``unread`` includes it already."""
        if seq > self._counted_through:
            self._counted_through = seq
            self.unread += 1
            self._counted.append(seq)

    def count_sent(self, seq: int) -> int | None:
        """``count_new`` for a notification sent at once (the hot path of a broadcast):
        the count to say in the same write, which the socket then has said; None when
        ``unread`` includes it already."""
        if seq <= self._counted_through:
            return None
        self._counted_through = seq
        self.unread = self._said_unread = unread = self.unread + 1
        self._counted.append(seq)
        return unread

    def count_frame(self) -> str | None:
        """The ``unread_count`` frame to send next, when the count changed since the
        socket last said it (which it then has); else None."""
        if self.unread == self._said_unread or self.close_code is not None:
            return None
        self._said_unread = self.unread
        return protocol.unread_count_frame(self.unread)

    def read_state(self, frames: Sequence[str], *, unread: int, latest_seq: int | None) -> None:
        """Queue a read-state change's frames, the last of them its ``unread_count``:
        ``unread`` as of ``latest_seq`` (None from a server that did not say: now).

        With several server processes a change may arrive after notifications committed
        after it; those stay counted on top of its count (and its last frame says so).
        """
        later = 0 if latest_seq is None else sum(1 for seq in self._counted if seq > latest_seq)
        self._counted.clear()
        self.unread = self._said_unread = unread + later
        if latest_seq is not None:
            self._counted_through = max(self._counted_through, latest_seq)
        if later:
            frames = [*frames[:-1], protocol.unread_count_frame(self.unread)]
        self.push(frames)

    def notification_now(self, seq: int) -> bool:
        """A doorbell whose frame may skip the queue: the next seq on a live socket
        with nothing queued before it.

        Returns True when it may: ``sent_seq`` is then ``seq`` and the caller hands
        the frame to the transport itself, or queues it with ``push_one`` when the
        transport cannot take it now. False: nothing changed; ``notification`` decides.
        """
        if (
            self.pending
            or seq != self.sent_seq + 1
            or not self.ready
            or self.catching_up
            or self.close_code is not None
        ):
            return False
        self.sent_seq = seq
        return True

    def request_catch_up(self) -> None:
        """Replay from the database whatever is above ``sent_seq`` (a missed doorbell, a
        lost Redis subscription): starts a run, or makes the running one read again."""
        self._dirty = True
        if not self.catching_up and self.ready and self.close_code is None:
            self.catching_up = True
            self._covered_from = self.sent_seq
            self._replayed = 0
            self._finishing = False

    @property
    def replayed(self) -> int:
        """Notifications queued by the current (or last) catch-up run."""
        return self._replayed

    # -- resume -------------------------------------------------------------

    @property
    def known_latest(self) -> int:
        """A seq known to exist: a cursor at or below it needs no query to be checked."""
        return max(self.hello_latest_seq, self.sent_seq)

    def resume(self, after: int, *, latest: int, ref: str | int | None = None) -> None:
        """The client asked for every row above ``after`` (a validated cursor).

        Args:
            after: The client's cursor.
            latest: The user's latest seq: ``known_latest``, or read from the database
                when ``after`` is above that.
            ref: The request's ref, echoed by ``resync_required``.

        Raises:
            protocol.ProtocolError: ``cursor_ahead`` when ``after`` is above ``latest``.
        """
        if self.close_code is not None:
            return
        if after > latest:
            raise protocol.ProtocolError(
                "cursor_ahead",
                f"after_seq {after} is beyond the latest seq {latest}: the server's data was "
                "reset; drop the local cache and resume from 0.",
            )
        if latest - after > self._replay_max:
            self.sent_seq = max(self.sent_seq, latest)
            self.push_one(
                protocol.encode(
                    "resync_required",
                    {
                        "after_seq": after,
                        "latest_seq": latest,
                        "page_url": f"/api/inbox/?after_seq={after}&limit=200",
                    },
                    ref=ref,
                )
            )
            return
        if self.catching_up:
            self._resume_to = after
            self._dirty = True
            return
        self.sent_seq = after
        self.request_catch_up()

    # -- catch-up -----------------------------------------------------------

    def next_read(self) -> ReadRows | None:
        """The read the socket needs now, or None (no run, a read in flight, or the queue
        too full to take a batch: ask again once frames were sent).

        A run whose rows are exhausted queues its ``caught_up`` here, once there is room.
        """
        if not self.catching_up or self._reading is not None or len(self.pending) > self._room:
            return None
        if self._resume_to is not None:
            self.sent_seq, self._resume_to = self._resume_to, None
            self._covered_from = self.sent_seq
            self._replayed = 0
            self._finishing = False
        if self._finishing and not self._dirty:
            self.catching_up = self._finishing = False
            self.push_one(
                protocol.encode(
                    "caught_up",
                    {
                        "after_seq": self._covered_from,
                        "through_seq": self.sent_seq,
                        "replayed": self._replayed,
                    },
                )
            )
            return None
        self._finishing = False
        self._dirty = False
        self._reading = ReadRows(after_seq=self.sent_seq, limit=self.batch)
        return self._reading

    def rows_read(self, read: ReadRows, rows: Sequence[Row]) -> None:
        """The rows ``read`` asked for, in seq order (deleted ones with a None payload)."""
        if self._reading is not read:
            return  # the socket closed meanwhile
        self._reading = None
        if self._resume_to is not None:
            return  # a resume came in during the read: the next read starts from it
        frames = [
            protocol.encode("notification_created", row.payload)
            for row in rows
            if row.payload is not None
        ]
        for row in rows:
            if row.payload is not None and not row.payload.get("is_read"):
                self.count_new(row.seq)
        if rows:
            self.sent_seq = rows[-1].seq
            self._counted_through = max(self._counted_through, self.sent_seq)
        self._replayed += len(frames)
        self.push(frames)
        if len(rows) < read.limit:
            self._finishing = True  # unless a doorbell rang meanwhile (dirty): read again

    def read_failed(self) -> None:
        """The database could not be read: close with 1011 (the client resumes later)."""
        self.close(protocol.CLOSE_SERVER_ERROR)

    # -- incoming -----------------------------------------------------------

    def client_frame(self, now: float) -> bool:
        """A frame from the client at time ``now`` (monotonic seconds). Returns False,
        and closes with 1008, when it is over the rate limit."""
        tokens = min(self._burst, self._tokens + (now - self._tokens_at) * self._rate)
        self._tokens_at = now
        if tokens < 1:
            self._tokens = tokens
            self.close(protocol.CLOSE_POLICY)
            return False
        self._tokens = tokens - 1
        return True
