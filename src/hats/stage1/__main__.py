"""``python -m hats.stage1``: the guest stage1 program (see :mod:`hats.stage1.guest`)."""

import sys

from hats.stage1.guest import main

sys.exit(main())
