"""``python3 -m hats.syslogd``: the image's ``oak_containers_syslogd``, at a lower CPU priority."""

import sys

from hats.syslogd import lower_priority, main

lower_priority()
sys.exit(main())
