"""``python -m detect.cli``: the same as the ``unmask`` command."""

import sys

from . import main

sys.exit(main())
