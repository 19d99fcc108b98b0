"""``python3 -m hats.agent``."""

import sys

from hats.agent import main

sys.exit(main())
