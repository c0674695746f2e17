"""Drop the inbox's index on user_id alone: inbox_unique_user_seq leads with user_id.

Django's AlterField would rebuild the whole inbox table on SQLite to drop one
index; dropping the index by its name (the one Django gave it in 0002, the same
on SQLite and PostgreSQL) is instant on both.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INDEX = "notifications_inbox_user_id_2cc4c544"


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0003_message_publisher"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=f'CREATE INDEX "{INDEX}" ON "notifications_inbox" ("user_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="inbox",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="inbox",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
    ]
