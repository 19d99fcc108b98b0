"""Fixtures shared by the VM boot tests: the expensive set-up is made once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hats.demo import DemoSetup
from hats.vm.demo import VmDemoOptions, prepare_vm
from hats.vm.qemu import QEMU


@pytest.fixture(scope="session")
def vm_setup(tmp_path_factory: pytest.TempPathFactory, default_base_tar: Path) -> DemoSetup:
    """The built image, workload bundle, keys, secret and policy of ``hats vm demo``.

    Built once per session (the Debian base comes from the machine's cache) and
    shared by every boot test that uses our insecure boot without stage0.
    """
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed (Debian package qemu-system-x86)")
    work = tmp_path_factory.mktemp("vm")
    lines: list[str] = []
    setup = prepare_vm(VmDemoOptions(workdir=work, xz_block_size="8MiB"), lines.append)
    print("\n".join(lines))
    return setup
