"""``python3 -m hats.syslogd``."""

import sys

from hats.syslogd import main

sys.exit(main())
