"""``python -m diffblocks.cli``."""

import sys

from . import main

sys.exit(main())
