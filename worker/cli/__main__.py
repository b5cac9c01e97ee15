"""``python -m worker.cli``: the same command line as ``moderation-worker``."""

import sys

from worker.cli import main

sys.exit(main())
