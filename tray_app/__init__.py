"""The desktop tray notifier: a Qt face (ui/) over a Qt-free core (net/, store/, engine)."""

__version__ = "0.1.0"
