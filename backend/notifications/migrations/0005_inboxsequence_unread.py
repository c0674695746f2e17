"""The unread count kept in the sequence row; the partial ``inbox_unread`` index dropped.

Every publish wrote each recipient's row into the partial index too: a B-tree
ordered by user, so a broadcast dirtied a page per recipient there as well
(~40% of a 400-recipient publish on SQLite, docs/performance.md, issue 14). The
index only served counting and listing a user's unread rows; the count is now
``InboxSequence.unread``, and the listing goes through ``inbox_unique_user_seq``.

The count is filled from the rows before the index goes (the count uses it). In
reverse the index comes back and the column is dropped. Plain SQL that SQLite and
PostgreSQL both run. SQLite rebuilds the sequence table to add a NOT NULL column:
one row per user, never the inbox.
"""

from django.db import migrations, models

FILL_UNREAD = """
UPDATE notifications_inboxsequence SET unread = (
    SELECT COUNT(*) FROM notifications_inbox
    WHERE notifications_inbox.user_id = notifications_inboxsequence.user_id
      AND notifications_inbox.read_at IS NULL
      AND notifications_inbox.deleted_at IS NULL
)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0004_inbox_user_unindexed"),
    ]

    operations = [
        migrations.AddField(
            model_name="inboxsequence",
            name="unread",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.RunSQL(FILL_UNREAD, reverse_sql=migrations.RunSQL.noop),
        migrations.RemoveIndex(model_name="inbox", name="inbox_unread"),
    ]
