"""``python -m hats`` runs the ``hats`` command."""

import sys

from hats.cli import main

sys.exit(main())
