"""``python -m worker``: the same command line as ``moderation-worker`` (``worker.cli``)."""

import sys

from worker.cli import main

sys.exit(main())
