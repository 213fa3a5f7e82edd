"""``python -m choreo.cli``: ``choreo`` without the installed script (the set-up scripts use it)."""

import sys

from choreo.cli.main import main

sys.exit(main())
