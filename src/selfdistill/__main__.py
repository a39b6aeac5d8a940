"""``python -m selfdistill``: see :mod:`selfdistill.cli`."""

import sys

from .cli import main

sys.exit(main())
