"""Records left pending by a server that had 8 bands of users become "any user's".

backend/notifications/inbox_log.py now splits a publish's rows into 32 bands (user id
modulo 32), and a reader settles its own band and the records of band -1
(``ANY_BAND``). A record written with 8 bands holds users of several new bands, so it
is given band -1: the first reader of anyone, or the lane's next step, writes it.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0007_inbox_pending_band"),
    ]

    operations = [
        migrations.RunSQL(
            "UPDATE notifications_inboxpending SET band = -1",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
