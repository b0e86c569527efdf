"""``python -m karmma ...``: the same as the ``karmma`` command."""

import sys

from karmma.cli import main

sys.exit(main())
