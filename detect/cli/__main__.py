"""``python -m detect.cli``: the same as the ``unmask`` command."""

import sys

from detect.cli import main

sys.exit(main())
