"""The local SQLite store: notifications, cursor, outbox, and the keyring for secrets.

Nothing in this package imports Qt (shared/DESIGN.md, invariant 6).
"""

from tray_app.store.attention import AttentionStore
from tray_app.store.db import OpenedDatabase, account_database_path, open_database
from tray_app.store.errors import StoreError
from tray_app.store.inbox import NO_FILTERS, Filters, Inbox, StoredNotification
from tray_app.store.outbox import Outbox, OutboxAction
from tray_app.store.secrets import TokenVault, open_token_vault, open_token_vault_unless

# The package's public face: the engine, the account session, headless mode and the
# UI import from here; the modules stay importable on their own (tests, benchmarks).
__all__ = [
    "NO_FILTERS",
    "AttentionStore",
    "Filters",
    "Inbox",
    "OpenedDatabase",
    "Outbox",
    "OutboxAction",
    "StoreError",
    "StoredNotification",
    "TokenVault",
    "account_database_path",
    "open_database",
    "open_token_vault",
    "open_token_vault_unless",
]
