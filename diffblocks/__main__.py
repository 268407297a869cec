"""``python -m diffblocks``: the ``diffblocks`` command."""

import sys

from .cli import main

sys.exit(main())
