"""Where the reference artefacts the tests use are: ``tests/data/``.

Every file there is listed, with its upstream origin and SHA-256, in
``tests/data/README.md`` (checked by ``tests/test_data_digests.py``). Tests
never read anything outside the checkout.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT / "tests" / "data"
UNITS = TESTDATA / "units"
TVS_KEYS = TESTDATA / "tvs-keys"
EVIDENCE = TESTDATA / "hats-evidence"
AMD = TESTDATA / "amd"
STAGE0 = TESTDATA / "oak-stage0"
OAK_STAGE0 = TESTDATA / "oak-stage0"
