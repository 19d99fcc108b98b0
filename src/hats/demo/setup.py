"""The demos' setup: the steps both demos take, and the servers they start.

Both demos (local: :mod:`hats.demo.local`; in QEMU: :mod:`hats.vm.demo`) make
the same things, in their own order: keys (:func:`make_keys`) → image →
DICE data (:func:`simulate_stage1`) → bundle → policy (:func:`make_policy`)
→ secret (:func:`make_secret`, :func:`write_secrets_file`); what they made is
one :class:`DemoSetup`. Then :func:`start_tvs`, :func:`start_launcher` and
:func:`orchestrator_args` start the peers over unix sockets in its work
directory.

Key material (private keys, the secret) goes to files (mode 0600) and
through the environment, never on a command line or into a message; the
demos print only the secret's fingerprint (the first 16 hex digits of its
SHA-256).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hats.demo.harness import Process, hats_command, run_step, start
from hats.sharetype import ShareType

KEY_ID = "64"


@dataclass
class DemoKeys:
    """The TVS key pairs (private, public), the orchestrator's pair and the public key file."""

    tvs: list[tuple[bytes, bytes]]
    client_private: bytes
    client_public: bytes
    key_file: Path

    def __repr__(self) -> str:
        return f"DemoKeys(tvs={len(self.tvs)}, key_file={self.key_file!r})"


@dataclass
class DemoSecret:
    """The secret (key id 64), its fingerprint and its lines in a TVS secrets file."""

    secret: bytes
    fingerprint: str
    lines: list[str]

    def __repr__(self) -> str:
        return f"DemoSecret(fingerprint={self.fingerprint!r})"


@dataclass
class DemoSetup:
    """What a demo's preparation made: the files, keys and secret of one run.

    The secret and the private keys are key material: never print them.
    """

    work: Path
    env: dict[str, str]
    share: str
    image: Path
    image_sha256: str
    dice: Path
    bundle: Path
    policy: Path
    tvs_keys: list[tuple[bytes, bytes]]
    client_private: bytes
    key_file: Path
    secret: bytes
    expected_fingerprint: str
    secrets_file: Path

    def __repr__(self) -> str:
        return f"DemoSetup(work={self.work!r}, share={self.share!r})"

    def tvs_address(self, index: int) -> str:
        """The unix socket address of TVS ``index`` (0-based)."""
        return f"unix:{self.work}/tvs{index}.sock"

    @property
    def launcher_address(self) -> str:
        return f"unix:{self.work}/launcher.sock"


def demo_env(cache_dir: Path | None = None) -> dict[str, str]:
    """The children's environment: ours, unbuffered output, optionally another cache."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cache_dir is not None:
        env["HATS_CACHE_DIR"] = str(cache_dir)
    return env


def make_keys(work: Path, tvs: int, *, tvs_private: bytes | None = None) -> DemoKeys:
    """``tvs`` TVS key pairs (the first from ``tvs_private`` if given), the orchestrator's pair,
    and ``work/tvs_public_keys.txt``."""
    from hats.keys.keyfile import format_key_file
    from hats.keys.keygen import generate_key_pair, public_key_from_private

    pairs = [generate_key_pair() for _ in range(tvs)]
    if tvs_private is not None:
        pairs[0] = (tvs_private, public_key_from_private(tvs_private))
    client_private, client_public = generate_key_pair()
    key_file = work / "tvs_public_keys.txt"
    key_file.write_bytes(format_key_file([public for _, public in pairs]))
    return DemoKeys(pairs, client_private, client_public, key_file)


def make_secret(share: str, tvs: int) -> DemoSecret:
    """A random 32-byte secret, whole for ``no-split``, else split into ``tvs`` shares."""
    from hats.tvs.split import split_secret

    secret = secrets.token_bytes(32)
    fingerprint = hashlib.sha256(secret).hexdigest()[:16]
    if share == ShareType.NO_SPLIT:
        lines = [f'private_key = "{secret.hex()}"']
    else:
        shares = [s.decode() for s in split_secret(share, tvs, None, secret)]
        lines = ["shares = [" + ", ".join(f"'{s}'" for s in shares) + "]"]
    return DemoSecret(secret, fingerprint, lines)


def simulate_stage1(
    image: Path,
    out: Path,
    env: Mapping[str, str],
    *,
    step: str = "stage1",
    extra: Sequence[str | Path] = (),
) -> Path:
    """``hats stage1 simulate``: the DICE data of ``image`` (insecure root); ``extra`` options."""
    run_step(
        step, hats_command("stage1", "simulate", "--system-image", image, *extra, "-o", out), env
    )
    return out


def make_policy(
    image: Path | None,
    bundle: Path,
    dice: Path,
    out: Path,
    env: Mapping[str, str],
    *,
    image_sha256: str | None = None,
) -> Path:
    """``hats policy make`` for the image (or its SHA-256) and bundle, insecure like ``dice``."""
    if image_sha256 is not None:
        image_args: list[str | Path] = ["--system-image-sha256", image_sha256]
    elif image is not None:
        image_args = ["--system-image", image]
    else:
        raise ValueError("make_policy needs the image or its SHA-256")
    run_step(
        "policy",
        hats_command(
            "policy",
            "make",
            *image_args,
            "--bundle",
            bundle,
            "--like",
            dice,
            "--insecure",
            "-o",
            out,
        ),
        env,
    )
    return out


def write_secrets_file(path: Path, client_public: bytes, lines: list[str]) -> Path:
    """A TVS secrets file: one user (``client_public``), key id 64 with ``lines``.

    Mode 0600 from its first byte (:func:`hats.fsio.write_bytes_atomic`).
    """
    from hats.fsio import PRIVATE_MODE, write_bytes_atomic

    text = (
        "[[users]]\n"
        f'authentication_public_key = "{client_public.hex()}"\n'
        "[[users.secrets]]\n"
        f'key_id = "{KEY_ID}"\n'
        'public_key = "demo public key"\n' + "\n".join(lines) + "\n"
    )
    write_bytes_atomic(path, text.encode(), PRIVATE_MODE)
    return path


def assemble(
    *,
    work: Path,
    env: dict[str, str],
    share: str,
    image: Path,
    image_sha256: str,
    dice: Path,
    bundle: Path,
    policy: Path,
    keys: DemoKeys,
    secret: DemoSecret,
) -> DemoSetup:
    """The :class:`DemoSetup` of these parts; writes ``work/secrets.toml`` for the TVSes."""
    secrets_file = write_secrets_file(work / "secrets.toml", keys.client_public, secret.lines)
    return DemoSetup(
        work=work,
        env=env,
        share=share,
        image=image,
        image_sha256=image_sha256,
        dice=dice,
        bundle=bundle,
        policy=policy,
        tvs_keys=keys.tvs,
        client_private=keys.client_private,
        key_file=keys.key_file,
        secret=secret.secret,
        expected_fingerprint=secret.fingerprint,
        secrets_file=secrets_file,
    )


def start_tvs(
    setup: DemoSetup,
    index: int,
    running: list[Process],
    *,
    policy: Path | None = None,
    secrets_file: Path | None = None,
) -> str:
    """Start TVS ``index`` (0-based), wait until it listens; its address."""
    private, _ = setup.tvs_keys[index]
    address = setup.tvs_address(index)
    args = hats_command(
        "tvs",
        "serve",
        "--listen",
        address,
        "--appraisal_policy_file",
        policy or setup.policy,
        "--accept_insecure_policies",
        "--secrets-file",
        secrets_file or setup.secrets_file,
    )
    if setup.share != ShareType.NO_SPLIT:
        args += ["--share-index", str(index + 1)]
    # Private keys go through the environment, not the command line (`ps` shows it).
    env = {**setup.env, "HATS_TVS_PRIMARY_PRIVATE_KEY": private.hex()}
    start(f"TVS {index}", args, env, running)
    return address


def start_launcher(
    setup: DemoSetup, running: list[Process], extra: Sequence[str | Path] = ()
) -> Process:
    """Start the launcher on ``setup.launcher_address``, proxying to every TVS; wait until ready.

    ``extra``: more ``hats launcher serve`` options (the VM demo adds ``--vmm qemu …``).
    """
    args = hats_command(
        "launcher",
        "serve",
        "--listen",
        setup.launcher_address,
        "--tvs_addresses",
        ",".join(setup.tvs_address(i) for i in range(len(setup.tvs_keys))),
        "--system-image",
        setup.image,
        "--bundle",
        setup.bundle,
        *map(str, extra),
    )
    env = {**setup.env, "HATS_TVS_AUTHENTICATION_KEY": setup.client_private.hex()}
    return start("launcher", args, env, running)


def orchestrator_args(setup: DemoSetup, heartbeat: int | str | None = None) -> list[str]:
    """The ``hats orchestrator --runtime process`` command line of the demo."""
    user = pwd.getpwuid(os.getuid()).pw_name
    args = hats_command(
        "orchestrator",
        "--launcher-addr",
        setup.launcher_address,
        "--tvs-public-keys-file",
        setup.key_file,
        f"--secret-share-type={setup.share}",
        "--dice-file",
        setup.dice,
        "--runtime",
        "process",
        "--container-dir",
        setup.work / "container",
        "--ipc-socket-path",
        setup.work / "ipc" / "orchestrator_ipc",
        "--runtime-user",
        user,
        "--log-to-stderr",
    )
    if heartbeat is not None:
        args.append(f"--tvs-heartbeat-frequency={heartbeat}")
    return args
