"""``python -m cli``: ``choreo`` without the installed script (the set-up scripts use it)."""

import sys

from cli.main import main

sys.exit(main())
