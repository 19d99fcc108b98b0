"""Where the shared reference artefacts are: ``../shared`` beside the checkout.

CI clones the project into a fresh folder with a copy of ``shared/`` beside
it; ``HATS_SHARED`` overrides the location.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HATS_SHARED", ROOT.parent / "shared"))
TESTDATA = SHARED / "testdata"
UNITS = TESTDATA / "units"
TVS_KEYS = TESTDATA / "tvs-keys"
EVIDENCE = TESTDATA / "hats-evidence"
