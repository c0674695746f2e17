"""The tray notifier's server: Django + Channels, durable per-user inboxes, presence."""

__version__ = "0.1.0"
