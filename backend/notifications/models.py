"""Notifications: one Message (content, stored once) and one Inbox row per recipient.

A user's Inbox rows carry ``seq``: 1, 2, 3, ... with no gap, assigned under a
lock on the user's InboxSequence row in the transaction that writes them, so
seq order is commit order (shared/DESIGN.md, invariant 2).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Priority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


class Message(models.Model):
    event_type = models.CharField(max_length=50, default="announcement")
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True, max_length=5000)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    url = models.CharField(max_length=2000, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Copied rather than a foreign key: a project_deleted notification outlives its project.
    project_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    project_title = models.CharField(max_length=200, blank=True)
    # Event details such as {"old_status": "todo", "new_status": "done"}.
    data = models.JSONField(default=dict, blank=True)
    # How the audience was named ({"project": 3}); the recipients are the Inbox rows.
    audience = models.JSONField(default=dict, blank=True)
    # Who published it ("api_key:3", "user:7", "cli"; "" for rows older than the field):
    # an idempotency key is unique per publisher, so one integration's "deploy-42"
    # never swallows another's. The database default keeps raw inserts working.
    publisher = models.CharField(max_length=50, blank=True, default="", db_default="")
    # NULL, not "", for "no key": the unique constraint skips it, so keyless rows never collide.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["publisher", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="message_unique_publisher_key",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class InboxSequence(models.Model):
    """The last seq handed out to a user: the row locked while their Inbox rows are written.

    ``unread`` is the number of the user's Inbox rows with ``read_at`` and
    ``deleted_at`` both NULL, kept exact by every service that adds rows or changes
    those two fields, in the same transaction. It replaced a partial index of the
    unread rows: one B-tree less per recipient of every publish (docs/performance.md,
    issue 14).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    last_seq = models.BigIntegerField(default=0)
    # The database default keeps raw inserts (benchmarks, bulk loads) and rows made
    # before the field working.
    unread = models.BigIntegerField(default=0, db_default=0)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.last_seq}"


class Inbox(models.Model):
    # No index of its own: inbox_unique_user_seq leads with user_id and serves every
    # lookup by user; each further index on a table every broadcast writes one row per
    # recipient into costs a B-tree insert per recipient (docs/performance.md, issue 14).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="inbox", db_index=False
    )
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    seq = models.BigIntegerField()
    read_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user", "seq"]
        # The only index by user: a user's unread rows are counted by
        # InboxSequence.unread, and listed (mark all read, ?unread=true) through this
        # one, whose user_id leads (migration 0005 dropped the partial inbox_unread).
        constraints = [
            models.UniqueConstraint(fields=["user", "seq"], name="inbox_unique_user_seq"),
        ]
        verbose_name_plural = "inbox rows"

    def __str__(self) -> str:
        return f"{self.user_id}#{self.seq}"


class InboxPending(models.Model):
    """One publish's Inbox rows not written yet (backend/notifications/inbox_log.py).

    The publish reserved the rows' ids (``first_id``, ``first_id + 1``, ...) and
    their users' seqs in its own transaction; ``rows`` is ``[[user_id, seq], ...]``
    in id order, the users of one ``band``. ``inbox_log`` turns it into the Inbox
    rows it stands for.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    first_id = models.BigIntegerField()
    # The band of users whose rows these are (``inbox_log.band_of``); -1: any user's
    # (``inbox_log.ANY_BAND``, records written before there were bands).
    band = models.SmallIntegerField(default=-1)
    rows = models.TextField()

    class Meta:
        verbose_name_plural = "pending inbox rows"

    def __str__(self) -> str:
        return f"message {self.message_id} from {self.first_id}"


class ApiKey(models.Model):
    """A key another system publishes with. Only its SHA-256 is stored."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class PresenceRecord(models.Model):
    """What presence keeps of a user beyond Redis and the server's memory: the status
    they chose and when they were last seen, so that an empty Redis restart (scale mode)
    or a server restart (the embedded default) shows them as before.

    Written by ``presence_services.presence_status_choose`` (when a user chooses) and
    ``presence_services.presence_seen_record`` (batched: the hub flushes who went offline
    every few seconds); read back into presence by the hub (``Hub._seed_presence``).
    Do-not-disturb is not here: it is an attention setting (backend/attention).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    # "online" or "away" (protocol.STATUSES but "dnd"); "" while never chosen.
    chosen_status = models.CharField(max_length=10, blank=True, default="")
    # When the user's last socket closed (their process's clock), or None.
    last_seen = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.chosen_status or '-'} {self.last_seen}"
