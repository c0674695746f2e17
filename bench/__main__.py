"""``python -m bench``: the issue 5 suite (see ``bench/suite.py``)."""

import sys

from bench.suite import main

sys.exit(main())
