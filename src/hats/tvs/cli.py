"""``hats tvs``: run a test TVS and split secrets for split-trust TVSes.

``hats tvs serve`` takes the reference standalone server's local-mode flags
with the same spellings (``--port``, ``--primary_private_key``, …; boolean
flags also as ``--flag=true|false``) plus:

* ``--listen ADDR``: instead of ``--port`` (``HOST:PORT``, ``unix:PATH``,
  ``vsock://CID:PORT``); ``--port N`` listens on ``[::]:N``;
* ``--secrets-file FILE``: users and secrets from a TOML/JSON file
  (:mod:`hats.tvs.keys`) instead of ``--user_*``;
* ``--share-index N``: serve share N (1-based) of every secret given as
  ``shares = [...]`` in the secrets file (how one TVS of a split-trust set
  serves its share of a secret; see :mod:`hats.tvs.keys`);
* ``--amd-certs-dir DIR``: AMD ARK/ASK roots instead of the built-in ones;
* ``--now ISO8601``: check certificate validity at this time (testing);
* ``--max-streams N``, ``--message-timeout S``, ``--session-timeout S``: the
  stream cap and deadlines (:mod:`hats.tvs.server`).

When ready it prints one line ``listening on ADDR`` on stdout. Each request's
outcome goes to stderr. Secrets and private keys are never printed.

``hats tvs split-secret --scheme xor|shamir --shares N [--threshold K] --secret HEX``
prints the N share JSONs, one per line, in share order.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TypeVar

import click

from hats.cliopts import log_to_stderr, stream_limit_options
from hats.errors import HatsError
from hats.streamlimits import StreamLimits
from hats.tvs.keys import (
    DEFAULT_KEY_ID,
    DEFAULT_PUBLIC_KEY,
    DEFAULT_SECRET,
    KeyProvider,
    decode_hex,
    load_secrets_file,
)
from hats.tvs.limits import DEFAULT_LIMITS
from hats.tvs.split import SCHEMES, split_secret

REFERENCE = " (reference flag)"
"""Marks, in ``--help``, a flag spelled and meaning as the reference standalone TVS's."""

RULE = (
    "Flags with underscores are the reference TVS's (same spelling, same meaning; each also"
    " takes hyphens); flags with hyphens only are ours."
)


def _absl_bool(name: str, help_text: str) -> click.Option:
    return click.Option(
        [f"--{name}", f"--{name.replace('_', '-')}"],
        type=click.BOOL,
        is_flag=False,
        flag_value=True,
        default=False,
        show_default=True,
        help=help_text + f" (--{name} or --{name}=true|false)" + REFERENCE,
    )


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise HatsError(f"{path}: cannot read the {what}: {reason}") from None


def _parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise HatsError(f"--now: {text!r} is not an ISO 8601 date/time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _private_key(text: str, flag: str) -> bytes:
    key = decode_hex(text, flag)
    if len(key) != 32:
        raise HatsError(f"{flag}: expected 32 bytes (64 hex digits), got {len(key)}")
    return key


def _key_provider(
    secrets_file: str | None,
    share_index: int | None,
    user_authentication_public_key: str | None,
    user_key_id: str | None,
    user_public_key: str | None,
    user_secret: str | None,
) -> KeyProvider:
    user_flags = [
        name
        for name, value in (
            ("--user_key_id", user_key_id),
            ("--user_public_key", user_public_key),
            ("--user_secret", user_secret),
        )
        if value is not None
    ]
    if secrets_file is not None:
        if user_authentication_public_key is not None or user_flags:
            names = ", ".join(["--user_authentication_public_key", *user_flags])
            raise HatsError(f"--secrets-file cannot be combined with {names}")
        return load_secrets_file(secrets_file, share_index=share_index)
    if share_index is not None:
        raise HatsError("--share-index needs --secrets-file (with 'shares' lists)")
    if user_authentication_public_key is None:
        raise HatsError("give --user_authentication_public_key or --secrets-file")
    return KeyProvider.from_flags(
        decode_hex(user_authentication_public_key, "--user_authentication_public_key"),
        user_key_id=DEFAULT_KEY_ID if user_key_id is None else user_key_id,
        user_public_key=DEFAULT_PUBLIC_KEY if user_public_key is None else user_public_key,
        user_secret=DEFAULT_SECRET
        if user_secret is None
        else decode_hex(user_secret, "--user_secret"),
    )


@click.group("tvs")
def tvs_group() -> None:
    """A TVS wire-compatible with the reference, for tests and demos."""


@tvs_group.command(
    "serve",
    params=[
        _absl_bool("accept_insecure_policies", "Accept policies with an insecure stage0"),
        _absl_bool(
            "enable_policy_signature",
            "Require valid policy signatures (under --policy-public-key)",
        ),
        _absl_bool("enable_dynamic_policy_fetching", "Not supported (refused when true)"),
    ],
    epilog=RULE,
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    envvar="PORT",
    help="Listen on [::]:PORT (0: any free port) [default: $PORT; or --listen]" + REFERENCE,
)
@click.option(
    "--listen",
    "listen",
    metavar="ADDR",
    help="HOST:PORT, unix:PATH or vsock://CID:PORT, instead of --port [default: none].",
)
@click.option(
    "--primary_private_key",
    "--primary-private-key",
    "primary_private_key",
    metavar="HEX32",
    envvar="HATS_TVS_PRIMARY_PRIVATE_KEY",
    show_envvar=True,
    help="TVS primary key, required (the variable keeps it out of `ps`)" + REFERENCE,
)
@click.option(
    "--secondary_private_key",
    "--secondary-private-key",
    "secondary_private_key",
    metavar="HEX32",
    envvar="HATS_TVS_SECONDARY_PRIVATE_KEY",
    show_envvar=True,
    help="TVS secondary key (rotation) [default: none]" + REFERENCE,
)
@click.option(
    "--appraisal_policy_file",
    "--appraisal-policy-file",
    "appraisal_policy_file",
    metavar="FILE",
    help="Text-format AppraisalPolicies, required" + REFERENCE,
)
@click.option(
    "--policy-public-key",
    "--policy_public_key",
    "policy_public_key",
    metavar="PEM|HEX",
    help="With --enable_policy_signature: the P-256 key the policies are signed with, a PEM"
    " file or 130 hex digits inline or in a file (ours: the reference TVS has only its"
    " hard-coded key) [default: the reference's policy key].",
)
@click.option(
    "--user_authentication_public_key",
    "--user-authentication-public-key",
    "user_authentication_public_key",
    metavar="HEX65",
    help="The only user (id 1); or --secrets-file" + REFERENCE,
)
@click.option(
    "--user_key_id",
    "--user-key-id",
    "user_key_id",
    help=f"Secret key id [default: {DEFAULT_KEY_ID}]" + REFERENCE,
)
@click.option(
    "--user_public_key",
    "--user-public-key",
    "user_public_key",
    help=f"Secret public key [default: {DEFAULT_PUBLIC_KEY}]" + REFERENCE,
)
@click.option(
    "--user_secret",
    "--user-secret",
    "user_secret",
    metavar="HEX",
    help="Secret bytes [default: 736563726574]" + REFERENCE,
)
@click.option(
    "--secrets-file",
    "--secrets_file",
    "secrets_file",
    metavar="FILE",
    help="TOML/JSON users and secrets, instead of --user_* [default: none].",
)
@click.option(
    "--share-index",
    "--share_index",
    "share_index",
    type=click.IntRange(min=1),
    help="Serve share N of the secrets file's 'shares' lists [default: whole secrets].",
)
@click.option(
    "--amd-certs-dir",
    "amd_certs_dir",
    metavar="DIR",
    help="AMD ARK/ASK PEM files [default: the built-in AMD roots].",
)
@click.option(
    "--now",
    "now",
    metavar="ISO8601",
    help="Validity time for certificates (testing) [default: the current time].",
)
@stream_limit_options(DEFAULT_LIMITS, what="VerifyReport stream")
def serve_command(
    port: int | None,
    listen: str | None,
    primary_private_key: str | None,
    secondary_private_key: str | None,
    appraisal_policy_file: str | None,
    policy_public_key: str | None,
    user_authentication_public_key: str | None,
    user_key_id: str | None,
    user_public_key: str | None,
    user_secret: str | None,
    secrets_file: str | None,
    share_index: int | None,
    amd_certs_dir: str | None,
    now: str | None,
    limits: StreamLimits,
    accept_insecure_policies: bool,
    enable_policy_signature: bool,
    enable_dynamic_policy_fetching: bool,
) -> None:
    """Serve pcit.tvs.TeeVerificationService/VerifyReport until interrupted.

    Every missing or bad option is reported at once, in one line.

    \b
    Examples:
      HATS_TVS_PRIMARY_PRIVATE_KEY=HEX hats tvs serve --port 8080 \\
          --appraisal_policy_file policy.txtpb --secrets-file secrets.toml
      hats tvs serve --listen unix:/tmp/tvs.sock --appraisal_policy_file policy.txtpb \\
          --enable_policy_signature --policy-public-key policy-key.pub \\
          --user_authentication_public_key HEX65
    """
    # The verifier and grpc are imported here, not at the top: `--help` stays fast.
    from hats.attestation.amd.certs import load_amd_roots
    from hats.attestation.policy import (
        REFERENCE_POLICY_KEY,
        load_policies,
        open_cmdline_warnings,
        verify_policy_signatures,
    )
    from hats.attestation.policykey import describe_key, read_policy_public_key
    from hats.tvs.server import serve_bound
    from hats.tvs.session import PolicyChecker, TvsConfig

    problems: list[str] = []
    T = TypeVar("T")

    def checked(make: Callable[[], T]) -> T | None:
        try:
            return make()
        except HatsError as exc:
            problems.append(str(exc))
            return None

    if (port is None) == (listen is None):
        problems.append("give exactly one of --port and --listen")
    if enable_dynamic_policy_fetching:
        problems.append("--enable_dynamic_policy_fetching is not supported")
    primary = None
    if primary_private_key is None:
        problems.append("missing --primary_private_key (or $HATS_TVS_PRIMARY_PRIVATE_KEY)")
    else:
        primary = checked(lambda: _private_key(primary_private_key, "--primary_private_key"))
    secondary = None
    if secondary_private_key is not None:
        secondary = checked(lambda: _private_key(secondary_private_key, "--secondary_private_key"))
    key: bytes | None = REFERENCE_POLICY_KEY
    if policy_public_key is not None:
        if not enable_policy_signature:
            problems.append("--policy-public-key needs --enable_policy_signature")
        key = checked(lambda: read_policy_public_key(policy_public_key, "--policy-public-key"))
    policies = None
    if appraisal_policy_file is None:
        problems.append("missing --appraisal_policy_file")
    else:
        policy_file = appraisal_policy_file
        policies = checked(
            lambda: load_policies(
                _read_text(policy_file, "appraisal policy file"),
                policy_file,
                accept_insecure=accept_insecure_policies,
            )
        )
        if policies is not None and enable_policy_signature and key is not None:
            loaded, verifying_key = policies, key
            checked(lambda: verify_policy_signatures(loaded, policy_file, verifying_key))
    roots = None
    if amd_certs_dir is not None:
        certs_dir = Path(amd_certs_dir)
        roots = checked(lambda: load_amd_roots(certs_dir))
    moment = checked(lambda: _parse_now(now))
    provider = checked(
        lambda: _key_provider(
            secrets_file,
            share_index,
            user_authentication_public_key,
            user_key_id,
            user_public_key,
            user_secret,
        )
    )
    if problems:
        count = f"{len(problems)} problems: " if len(problems) > 1 else ""
        error = HatsError(f"tvs serve: {count}{'; '.join(problems)}")
        error.exit_code = 2
        raise error
    assert policies is not None and primary is not None and provider is not None
    checker = PolicyChecker(
        policies=policies,
        accept_insecure=accept_insecure_policies,
        amd_roots=roots,
        now=moment,
    )
    config = TvsConfig(
        primary_private_key=primary,
        secondary_private_key=secondary,
        key_provider=provider,
        evidence_checker=checker,
    )
    address = listen if listen is not None else f"[::]:{port}"
    log_to_stderr("hats.tvs", "hats tvs")
    server, bound = serve_bound(address, config.new_handler, limits=limits)
    log = logging.getLogger("hats.tvs")
    log.info(
        "%d polic%s, users %s",
        len(policies.policies),
        "y" if len(policies.policies) == 1 else "ies",
        ", ".join(repr(u) for u in provider.user_ids),
    )
    if enable_policy_signature and key is not None:
        log.info("policy signatures verified under %s", describe_key(key))
    for warning in open_cmdline_warnings(policies, appraisal_policy_file or ""):  # F10: once each
        log.warning("warning: %s", warning)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        server.stop(grace=1)

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"listening on {bound}")
    sys.stdout.flush()
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=1).wait()


@tvs_group.command("split-secret")
@click.option("--scheme", type=click.Choice(SCHEMES), required=True, help="Sharing scheme.")
@click.option("--shares", type=click.IntRange(min=1), required=True, help="Number of shares.")
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    help="Shamir: shares needed (default max(N-1, 2)); XOR: must be N.",
)
@click.option("--secret", metavar="HEX", required=True, help="The secret, in hex.")
def split_secret_command(scheme: str, shares: int, threshold: int | None, secret: str) -> None:
    """Print the share JSONs of a secret, one per line, in share order.

    Give share N to TVS N (``shares = [...]`` in its secrets file, served with
    --share-index N).

    \b
    Example:
      hats tvs split-secret --scheme shamir --shares 3 --secret HEX
    """
    for share in split_secret(scheme, shares, threshold, decode_hex(secret, "--secret")):
        click.echo(share.decode())
