"""``hats keys``: check, show, generate and make TVS key files.

A thin shell over :mod:`hats.keys.keyfile` and :mod:`hats.keys.keygen`: it
reads and writes files and prints; user errors are :class:`HatsError` (one
line, printed by :func:`hats.cli.main`). Private keys are printed only by
``keys gen`` without ``--private-out``, and never in an error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from hats.errors import HatsError
from hats.fsio import make_parent_dirs, write_bytes_atomic
from hats.keys.keyfile import (
    KeyFileError,
    check_key_file,
    decode_public_key_hex,
    format_key_file,
    parse_key_file,
    read_like_reference,
)
from hats.keys.keygen import (
    PrivateKeyError,
    generate_key_pair,
    insecure_key_label,
    private_key_from_hex,
    public_key_from_private,
    small_multiple,
)

PRIVATE_KEY_MODE = 0o600


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise HatsError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _dot() -> str:
    """The middle dot for "k·G", or '*' if stdout cannot encode it."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "·".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "*"
    return "·"


@click.group("keys")
def keys_group() -> None:
    """Check, generate and show TVS key files (tvs_public_keys.txt)."""


@keys_group.command("check")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON document on stdout: {"ok": …, "files": [one object per file]}.',
)
@click.option(
    "--allow-test-keys",
    is_flag=True,
    help="Accept keys whose private key is public (the reference's test keys 1*G, 2*G, 3*G "
    "and its heartbeat key): for test images only.",
)
@click.option(
    "--reject-test-keys",
    is_flag=True,
    hidden=True,
    help="The default (kept for old scripts); overrides --allow-test-keys.",
)
def check_command(
    files: tuple[str, ...], as_json: bool, allow_test_keys: bool, reject_test_keys: bool
) -> None:
    """Report every problem in each key FILE as FILE:LINE: message.

    Exits 1 if any file has a problem. Stricter than the reference
    orchestrator: CRLF line endings, duplicated keys and index gaps are
    problems too, and so are keys whose private key is public knowledge (the
    reference's test keys: anyone can act as that TVS) unless
    --allow-test-keys is given (test images only). A file with problems gets
    a note saying how the reference orchestrator would treat it (run it, and
    with which TVS per line, or fail).

    \b
    Example:
      hats keys check tvs_public_keys.txt
    """
    reject = reject_test_keys or not allow_test_keys
    contents = [(name, _read(name)) for name in files]
    failed = False
    records: list[dict[str, Any]] = []
    for name, data in contents:
        problems = check_key_file(data, reject_test_keys=reject)
        count = None if problems else len(parse_key_file(data, name))
        failed = failed or bool(problems)
        reference = read_like_reference(data).summary() if problems else None
        if as_json:
            records.append(
                {
                    "file": name,
                    "ok": not problems,
                    "keys": count,
                    "problems": [{"line": p.line, "message": p.message} for p in problems],
                    "reference": reference,
                }
            )
            continue
        dot = _dot()
        for problem in problems:
            where = name if problem.line is None else f"{name}:{problem.line}"
            click.echo(f"{where}: {problem.message.replace('·', dot)}")
        if reference is not None:
            click.echo(f"{name}: note: {reference}")
        if count is not None:
            click.echo(f"{name}: OK ({_plural(count, 'key')})")
    if as_json:
        click.echo(json.dumps({"ok": not failed, "files": records}, indent=2))
    if failed:
        click.get_current_context().exit(1)


@keys_group.command("show")
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of key objects.")
def show_command(file: str, as_json: bool) -> None:
    """List the keys of FILE in TVS order, flagging known test keys.

    "test key k*G" marks the public key of the private scalar k (k = 1, 2, 3),
    as in the reference test images: anyone can act as such a TVS.

    \b
    Example:
      hats keys show tvs_public_keys.txt --json
    """
    keys = parse_key_file(_read(file), file)
    if as_json:
        records = [
            {
                "index": key.index,
                "line": key.line,
                "public_key": key.public_key.hex(),
                "test_key_multiple": small_multiple(key.public_key),
                "note": insecure_key_label(key.public_key),
            }
            for key in keys
        ]
        click.echo(json.dumps(records, indent=2))
        return
    dot = _dot()
    click.echo(f"{'INDEX':<5}  {'LINE':<4}  {'PUBLIC KEY':<130}  NOTE")
    for key in keys:
        note = insecure_key_label(key.public_key, dot) or ""
        click.echo(f"{key.index:<5}  {key.line:<4}  {key.public_key.hex()}  {note}".rstrip())


@keys_group.command("gen")
@click.option(
    "--private-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the private key (hex) here, mode 0600, instead of printing it.",
)
@click.option(
    "--public-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the public key (hex) here.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing --private-out file.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def gen_command(
    private_out: Path | None, public_out: Path | None, force: bool, as_json: bool
) -> None:
    """Generate a P-256 key pair for a TVS.

    Prints "private: HEX" and "public: HEX". With --private-out the private
    key goes only to that file (created with mode 0600; an existing file is
    kept unless --force). Missing directories are created.

    \b
    Examples:
      hats keys gen --private-out tvs1.key --public-out tvs1.pub
      hats keys gen --private-out policy.key --public-out policy.pub   # policy signing
    """
    if (
        private_out is not None
        and public_out is not None
        and (private_out.resolve() == public_out.resolve())
    ):
        raise click.UsageError("--private-out and --public-out must be different files")
    if private_out is not None and private_out.exists() and not force:
        raise HatsError(f"{private_out}: already exists (use --force to overwrite a private key)")
    private_key, public_key = generate_key_pair()
    if private_out is not None:
        make_parent_dirs(private_out)
        write_bytes_atomic(private_out, private_key.hex().encode() + b"\n", PRIVATE_KEY_MODE)
    if public_out is not None:
        make_parent_dirs(public_out)
        write_bytes_atomic(public_out, public_key.hex().encode() + b"\n")
    record: dict[str, str] = {}
    if private_out is None:
        record["private"] = private_key.hex()
    else:
        record["private_file"] = str(private_out)
    record["public"] = public_key.hex()
    if public_out is not None:
        record["public_file"] = str(public_out)
    if as_json:
        click.echo(json.dumps(record))
        return
    if private_out is None:
        click.echo(f"private: {private_key.hex()}")
    else:
        click.echo(f"private: written to {private_out}")
    click.echo(f"public: {public_key.hex()}")


@keys_group.command("make")
@click.option("--key", "hex_keys", multiple=True, metavar="HEX", help="A public key (repeat).")
@click.option(
    "--from-private",
    "private_files",
    multiple=True,
    metavar="FILE",
    help="A file holding a private key in hex, as written by 'keys gen' (repeat).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key file to write (missing directories are created).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing --output file.")
def make_command(
    hex_keys: tuple[str, ...], private_files: tuple[str, ...], output: Path, force: bool
) -> None:
    """Write a key file from public keys, in the given order.

    The keys get indices 0, 1, ... in the order given. Give them either as
    --key HEX or as --from-private FILE, not both. An existing output file is
    kept unless --force.

    \b
    Examples:
      hats keys make --from-private tvs1.key --from-private tvs2.key -o tvs_public_keys.txt
      hats keys make --key 04… -o tvs_public_keys.txt
    """
    if output.exists() and not force:
        raise HatsError(f"{output}: already exists (use --force to overwrite it)")
    if hex_keys and private_files:
        raise click.UsageError("use either --key or --from-private, not both")
    if not hex_keys and not private_files:
        raise click.UsageError("give at least one --key or --from-private")
    keys: list[bytes] = []
    for number, text in enumerate(hex_keys, start=1):
        try:
            keys.append(decode_public_key_hex(text))
        except KeyFileError as exc:
            raise KeyFileError(f"--key #{number}: {exc}") from None
    for name in private_files:
        text = _read(name).decode("ascii", errors="replace")
        try:
            keys.append(public_key_from_private(private_key_from_hex(text)))
        except PrivateKeyError as exc:
            raise PrivateKeyError(f"{name}: {exc}") from None
    try:
        data = format_key_file(keys)
    except KeyFileError as exc:
        raise KeyFileError(f"{output}: cannot write: {exc}") from None
    make_parent_dirs(output)
    write_bytes_atomic(output, data)
    click.echo(f"{output}: wrote {_plural(len(keys), 'key')}")
