"""``python -m gmmrefine.relion_external``: the same as the ``gmmrefine-relion`` script."""

import sys

from .job import main

sys.exit(main())
