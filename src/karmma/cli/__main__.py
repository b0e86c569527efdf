"""``python -m karmma.cli ...`` (what torchrun and srun launch): the same as the ``karmma`` command."""

import sys

from karmma.cli import main

sys.exit(main())
