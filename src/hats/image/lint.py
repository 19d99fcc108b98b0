"""Checks of an image's effective tree against what stage1 and the agents need.

Sans-I/O: a pure function of the :class:`~hats.image.tree.EffectiveTree`.

Errors (fail ``hats image build`` unless allowed with ``--lint-allow CODE``):

- ``oak-dir``: ``/oak`` exists — stage1's ``create_dir("/oak")`` fails;
- ``unsafe-name``: an absolute name or one with ``..`` (skipped by stage1);
- ``unpack-conflict``: an entry stage1 cannot unpack as the archive says
  (hard link to a missing file, a directory over a file);
- ``missing-exec``: a HATs unit's ``Exec*`` program (or the interpreter its
  ``#!`` line names) is not an executable file in the tree;
- ``key-file``: ``/hats/tvs_public_keys.txt`` missing or invalid (every
  reason, by line; at most 10 keys, the reference parser's limit);
- ``key-count``: the number of keys does not suit the share type of the
  orchestrator unit (no-split: exactly 1, xor: at least 2, shamir: at least 3);
- ``test-key``: a key in ``/hats/tvs_public_keys.txt`` whose private key is
  public knowledge (the reference's test keys 1·G, 2·G, 3·G and its heartbeat
  test key, :func:`hats.keys.keygen.insecure_key_label`): anyone can act as
  that TVS and get the image's secrets. ``lint(tree, allow_test_keys=True)``
  (``--allow-test-keys``, for test images only) reports it as a warning
  instead.

Warnings (real Debian bases have them; printed, never fatal):

- ``special-bits``: setuid/setgid/sticky bits, which stage1 drops
  (``mode & 0o777``; ``/tmp`` loses its sticky bit);
- ``dir-mode-order``: a directory entry whose mode stage1 never applies
  because another spelling of the same directory sorts after it (tar-rs
  0.4.44 applies directory entries by name, descending: ``./etc/`` in the base
  beats ``etc/`` in a later layer; upstream-facts F4);
- ``device``: device nodes and FIFOs;
- ``dockerenv``: ``/.dockerenv`` (stage1 deletes it);
- ``key-file-reference``: with ``key-file`` errors, how the reference
  orchestrator would treat the file (run it, routing each line to a TVS, or
  fail: upstream-facts F6);
- ``unit-missing-exec``: another unit's program is missing (units whose
  ``Condition*``/``Assert*`` lines name the program are skipped: systemd
  does not run them without it).
"""

from __future__ import annotations

from dataclasses import dataclass

from hats.image.tree import EffectiveTree, Entry
from hats.image.units import ORCHESTRATOR_UNIT, SYSLOGD_UNIT, exec_binaries, unit_directives
from hats.keys.keyfile import check_key_file, parse_key_file, read_like_reference
from hats.keys.keygen import insecure_key_label
from hats.sharetype import DEFAULT_SHARE_TYPE, MAX_TVS, ShareType
from hats.textsafe import printable

KEY_FILE = "hats/tvs_public_keys.txt"
HATS_UNITS = (f"etc/systemd/system/{ORCHESTRATOR_UNIT}", f"etc/systemd/system/{SYSLOGD_UNIT}")
UNIT_DIRS = ("etc/systemd/system/", "usr/lib/systemd/system/", "lib/systemd/system/")
#: Each share type's (fewest, most) TVS keys (:class:`hats.sharetype.ShareType`).
MIN_KEYS = {t.value: (t.min_tvs, t.max_tvs) for t in ShareType}
ERROR_CODES = (
    "oak-dir",
    "unsafe-name",
    "unpack-conflict",
    "missing-exec",
    "key-file",
    "key-count",
    "test-key",
)
WARNING_CODES = ("special-bits", "dir-mode-order", "device", "dockerenv", "unit-missing-exec")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning"
    code: str
    path: str
    message: str

    def __str__(self) -> str:
        """One line; the path and message escaped (:func:`hats.textsafe.printable`)."""
        return printable(f"{self.severity}: {self.path}: {self.message} [{self.code}]")

    def to_json(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "code": self.code,
            "path": self.path,
            "message": self.message,
        }


def share_type_of(unit_text: bytes) -> str:
    """The ``--secret-share-type`` an orchestrator unit passes (default no-split)."""
    share = DEFAULT_SHARE_TYPE.value
    for value in unit_directives(unit_text).get("ExecStart", []):
        words = value.split()
        for i, word in enumerate(words):
            if word.startswith("--secret-share-type="):
                share = word.split("=", 1)[1]
            elif word == "--secret-share-type" and i + 1 < len(words):
                share = words[i + 1]
    return share


def _executable(tree: EffectiveTree, program: str) -> tuple[Entry | None, str | None]:
    """The entry ``program`` runs and why it cannot run (None when fine)."""
    entry = tree.resolve(program)
    if entry is None:
        return None, "missing"
    if entry.kind not in ("file", "hardlink"):
        return entry, f"a {entry.kind}, not a file"
    if not entry.mode & 0o111:
        return entry, f"not executable (mode {entry.mode:04o})"
    return entry, None


def _interpreter(entry: Entry) -> str | None:
    if not entry.head.startswith(b"#!"):
        return None
    line = entry.head[2:].split(b"\n", 1)[0].strip()
    words = line.split()
    return words[0].decode("utf-8", "replace") if words else None


def _check_program(tree: EffectiveTree, unit: str, program: str) -> str | None:
    """Why ``unit`` cannot run ``program``, or None."""
    entry, why = _executable(tree, program)
    if why is not None:
        return f"{why}, but {unit} runs it"
    assert entry is not None
    interpreter = _interpreter(entry)
    if interpreter is not None:
        _, why = _executable(tree, interpreter)
        if why is not None:
            return f"its interpreter {interpreter} is {why} ({unit} runs it)"
    return None


def lint(tree: EffectiveTree, *, allow_test_keys: bool = False) -> list[Finding]:
    """All findings for an effective tree, errors first, then by path.

    ``allow_test_keys`` turns ``test-key`` errors into warnings (test images only).
    """
    out: list[Finding] = []
    if tree.lookup("oak") is not None:
        out.append(
            Finding(
                "error", "oak-dir", "/oak", "stage1 creates /oak itself and fails when it exists"
            )
        )
    for problem in tree.unsafe_names:
        out.append(
            Finding(
                "error", "unsafe-name", problem.name, f"{problem.message} (layer {problem.layer})"
            )
        )
    for problem in tree.conflicts:
        out.append(
            Finding(
                "error",
                "unpack-conflict",
                problem.name,
                f"{problem.message} (layer {problem.layer})",
            )
        )
    for problem in tree.sorting_overrides:
        out.append(Finding("warning", "dir-mode-order", problem.name, problem.message))
    out.extend(_lint_units(tree))
    out.extend(_lint_keys(tree, allow_test_keys))
    for entry in tree.sorted_entries():
        path = "/" + entry.path
        if entry.raw_mode & 0o7000 and entry.kind != "symlink":
            out.append(
                Finding(
                    "warning",
                    "special-bits",
                    path,
                    f"mode {entry.raw_mode:04o}: stage1 unpacks it as {entry.mode:04o}",
                )
            )
        if entry.kind in ("chardev", "blockdev", "fifo"):
            out.append(
                Finding(
                    "warning",
                    "device",
                    path,
                    f"{entry.kind} in the image (stage1 runs on a devtmpfs /dev)",
                )
            )
    if tree.lookup(".dockerenv") is not None:
        out.append(
            Finding(
                "warning", "dockerenv", "/.dockerenv", "left by docker export; stage1 deletes it"
            )
        )
    out.sort(key=lambda f: (f.severity != "error", f.path, f.code))
    return out


def _lint_units(tree: EffectiveTree) -> list[Finding]:
    out: list[Finding] = []
    for entry in tree.sorted_entries():
        if not entry.path.endswith(".service") or not entry.path.startswith(UNIT_DIRS):
            continue
        hats_unit = entry.path in HATS_UNITS
        if entry.data is None:
            continue
        directives = unit_directives(entry.data)
        guarded = {
            value.lstrip("!|")
            for key, values in directives.items()
            if key.startswith(("Condition", "Assert"))
            for value in values
        }
        for program in exec_binaries(entry.data):
            if "$" in program or "%" in program or program in guarded:
                continue
            why = _check_program(tree, "/" + entry.path, program)
            if why is None:
                continue
            if hats_unit:
                out.append(Finding("error", "missing-exec", program, why))
            else:
                out.append(Finding("warning", "unit-missing-exec", program, why))
    for unit in HATS_UNITS:
        if tree.lookup(unit) is None:
            out.append(Finding("error", "missing-exec", "/" + unit, "the HATs unit is missing"))
    return out


def _lint_test_keys(data: bytes, path: str, allow: bool) -> list[Finding]:
    severity = "warning" if allow else "error"
    hint = "allowed by --allow-test-keys" if allow else "use --allow-test-keys for test images"
    out: list[Finding] = []
    for key in parse_key_file(data, path):
        label = insecure_key_label(key.public_key)
        if label is not None:
            message = f"line {key.line}: {label}: its private key is public ({hint})"
            out.append(Finding(severity, "test-key", path, message))
    return out


def _lint_keys(tree: EffectiveTree, allow_test_keys: bool = False) -> list[Finding]:
    entry = tree.resolve(KEY_FILE)
    path = "/" + KEY_FILE
    if entry is None or entry.data is None:
        return [Finding("error", "key-file", path, "missing: the orchestrator needs it")]
    problems = check_key_file(entry.data)
    out = [Finding("error", "key-file", path, str(p)) for p in problems]
    if problems:
        reading = read_like_reference(entry.data).summary()
        out.append(Finding("warning", "key-file-reference", path, reading))
        return out
    out.extend(_lint_test_keys(entry.data, path, allow_test_keys))
    count = len(entry.data.decode().splitlines())
    unit = tree.lookup(HATS_UNITS[0])
    share = (
        share_type_of(unit.data)
        if unit is not None and unit.data is not None
        else DEFAULT_SHARE_TYPE.value
    )
    low, high = MIN_KEYS.get(share, (1, MAX_TVS))
    if not low <= count <= high:
        need = "exactly 1" if low == high else f"at least {low}"
        out.append(
            Finding(
                "error",
                "key-count",
                path,
                f"{count} key(s), but secret share type {share} needs {need}",
            )
        )
    return out
