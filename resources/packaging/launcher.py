"""The frozen app's entry point: PyInstaller runs this file as ``__main__``.

A file of its own rather than ``tray_app/__main__.py``: PyInstaller puts the entry
script's folder on the module search path, and ``tray_app/`` there would make its
modules importable a second time under top-level names.
"""

import sys

from tray_app.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
