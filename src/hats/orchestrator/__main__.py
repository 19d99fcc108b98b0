"""``python3 -m hats.orchestrator``."""

import sys

from hats.orchestrator import main

sys.exit(main())
