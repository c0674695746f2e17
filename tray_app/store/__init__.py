"""The local SQLite store: notifications, cursor, outbox, and the keyring for secrets.

Nothing in this package imports Qt (shared/DESIGN.md, invariant 6).
"""

import importlib
from typing import TYPE_CHECKING, Any, Final

# The package's public face: the engine, the account session, headless mode and the
# UI import from here; the modules stay importable on their own (tests, benchmarks).
# Each name is imported when first asked for (PEP 562), not with the package: the tray
# icon reads the last unread count from SQLite before the keyring (secretstorage,
# cryptography, D-Bus) may be loaded (issue 20: the icon first).
_HOMES: Final = {
    "AttentionStore": "tray_app.store.attention",
    "OpenedDatabase": "tray_app.store.db",
    "account_database_path": "tray_app.store.db",
    "open_database": "tray_app.store.db",
    "StoreError": "tray_app.store.errors",
    "NO_FILTERS": "tray_app.store.inbox",
    "Filters": "tray_app.store.inbox",
    "Inbox": "tray_app.store.inbox",
    "StoredNotification": "tray_app.store.inbox",
    "Outbox": "tray_app.store.outbox",
    "OutboxAction": "tray_app.store.outbox",
    "TokenVault": "tray_app.store.secrets",
    "open_token_vault": "tray_app.store.secrets",
    "open_token_vault_unless": "tray_app.store.secrets",
}

if TYPE_CHECKING:
    from tray_app.store.attention import AttentionStore
    from tray_app.store.db import OpenedDatabase, account_database_path, open_database
    from tray_app.store.errors import StoreError
    from tray_app.store.inbox import NO_FILTERS, Filters, Inbox, StoredNotification
    from tray_app.store.outbox import Outbox, OutboxAction
    from tray_app.store.secrets import TokenVault, open_token_vault, open_token_vault_unless


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # asked once: later lookups do not come here
    return value


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
