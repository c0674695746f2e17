"""Drop simplejwt's token blacklist tables, which held every refresh token in clear.

Sessions are LoginSession rows now (no token stored). Installs that ran the
blacklist app still have its tables: a refresh token read from them refreshed
successfully, so they go, and with them every session issued before this
release (their holders log in once more).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

_TABLES = ("token_blacklist_blacklistedtoken", "token_blacklist_outstandingtoken")


def drop_blacklist_tables(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        for table in _TABLES:  # the blacklisted table first: it points at the other
            if table in existing:
                cursor.execute(f"DROP TABLE {connection.ops.quote_name(table)}")
        if "django_migrations" in existing:
            cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["token_blacklist"])


class Migration(migrations.Migration):
    dependencies = [("users", "0002_login_sessions")]

    operations = [migrations.RunPython(drop_blacklist_tables, migrations.RunPython.noop)]
