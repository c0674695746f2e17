"""The local SQLite store: notifications, cursor, outbox, and the keyring for secrets.

Nothing in this package imports Qt (shared/DESIGN.md, invariant 6).
"""
