"""``python -m sam_viz``: the command line (see ``sam_viz.cli``)."""

import sys

from .cli import main

sys.exit(main())
