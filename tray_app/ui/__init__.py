"""The Qt face of the app. Widgets are passive: they show what they are given and emit
signals for what the user asks; ``app.py`` wires them to the engine through
``bridge.py``, the one place where engine events become Qt signals."""
