"""tests/data holds exactly the files its README lists, with the listed SHA-256.

The digests in the README were taken from the upstream artefacts when they
were collected; a file changed by accident (an editor's newline, a re-export
of a certificate) or a file added without provenance fails here.
"""

from __future__ import annotations

import hashlib
import re

import shared_data

ROW = re.compile(r"^\| `(?P<path>[^`]+)` \| .+ \| `(?P<sha>[0-9a-f]{64})` \|$")


def _listed() -> dict[str, str]:
    text = (shared_data.TESTDATA / "README.md").read_text()
    rows = {m["path"]: m["sha"] for m in map(ROW.match, text.splitlines()) if m}
    assert rows, "tests/data/README.md lists no files"
    return rows


def test_every_listed_file_has_its_digest() -> None:
    for path, sha in _listed().items():
        data = (shared_data.TESTDATA / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha, path


def test_no_file_without_provenance() -> None:
    present = {
        str(p.relative_to(shared_data.TESTDATA))
        for p in shared_data.TESTDATA.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    assert present == set(_listed())


def test_the_reference_policy_is_listed_with_its_known_digest() -> None:
    # Spot check that the table is read at all: the digest of the reference
    # policy as collected (sha256sum of shared/testdata/hats-evidence/on-perm-reference.txtpb).
    assert (
        _listed()["hats-evidence/on-perm-reference.txtpb"]
        == "d2d4af0de3921540915b42ec110ed886a8b614ea72fde80f2cd7e982f9bdec65"
    )
