"""``python -m banditfleet``: the same command line as the ``banditfleet`` script."""

import sys

from banditfleet.cli import main

sys.exit(main())
