"""Regenerate ``src/hats/pb`` from the ``.proto`` files in ``proto/``.

Usage (from anywhere)::

    .venv/bin/python scripts/generate_protos.py          # rewrite src/hats/pb
    .venv/bin/python scripts/generate_protos.py --check  # exit 1 if it is stale

Needs ``grpcio-tools`` at exactly :data:`GRPCIO_TOOLS` (the ``dev`` extra):
its bundled ``protoc`` and gRPC plugin decide the bytes of the output. For
every ``proto/hats/pb/**/*.proto`` (in sorted order) it writes, under
``src/hats/pb``:

* ``<name>_pb2.py`` and ``<name>_pb2.pyi`` (``protoc --python_out --pyi_out``);
* for files that declare services, ``<name>_pb2_grpc.py`` (the gRPC plugin)
  and ``<name>_pb2_grpc.pyi``, typing stubs written here from the descriptors
  so that ``mypy --strict`` can check code that uses the stubs and servicers
  (sync and ``grpc.aio``);
* an ``__init__.py`` in every directory.

The output is a function of the inputs only (no timestamps, no absolute
paths); the old tree is replaced as a whole. ``--check`` generates into a
temporary directory and compares file by file.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "src" / "hats" / "pb"
#: Where the generated modules live, relative to the protoc output root.
PACKAGE_PATH = Path("hats") / "pb"
GRPCIO_TOOLS = "1.81.1"

ROOT_INIT = (
    '"""Protobuf and gRPC modules generated from ``proto/`` by ``scripts/generate_protos.py``.\n'
    "\n"
    "Do not edit: change the ``.proto`` files and regenerate. The proto packages are the\n"
    "reference's (``pcit.tvs``, ``oak.attestation.v1``, ...), so full message names and gRPC\n"
    "method paths are wire-identical; the Python modules are ``hats.pb.<proto path>_pb2``.\n"
    '"""\n'
)


class GenerateError(Exception):
    """A one-line reason why generation or the check failed."""


def proto_files() -> list[str]:
    """The ``.proto`` files to compile, as protoc names them (relative, sorted)."""
    files = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))
    if not files:
        raise GenerateError(f"{PROTO_DIR}: no .proto files")
    outside = [f for f in files if not f.startswith(f"{PACKAGE_PATH.as_posix()}/")]
    if outside:
        raise GenerateError(f"{PROTO_DIR / outside[0]}: not under proto/{PACKAGE_PATH.as_posix()}/")
    return files


def check_tools() -> None:
    try:
        version = metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        raise GenerateError(
            f"grpcio-tools is not installed; pip install grpcio-tools=={GRPCIO_TOOLS}"
        ) from None
    if version != GRPCIO_TOOLS:
        raise GenerateError(
            f"grpcio-tools {version} is installed but the checked-in code is made with "
            f"{GRPCIO_TOOLS}; pip install grpcio-tools=={GRPCIO_TOOLS}"
        )


def protoc(*args: str) -> None:
    """Run the bundled protoc (``python -m grpc_tools.protoc`` adds the WKT include path)."""
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", *args]
    proc = subprocess.run(cmd, cwd=PROTO_DIR, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        first = (proc.stderr.strip() or proc.stdout.strip() or "failed").splitlines()[0]
        raise GenerateError(f"protoc: {first}")


# --- typing stubs for the gRPC modules ----------------------------------------------------


def module_of(proto_name: str) -> str:
    """``hats/pb/pcit/tvs/tvs.proto`` → ``hats.pb.pcit.tvs.tvs_pb2``."""
    return proto_name.removesuffix(".proto").replace("/", ".") + "_pb2"


def alias_of(proto_name: str) -> str:
    """The import alias the gRPC plugin uses for a ``_pb2`` module."""
    stem = proto_name.removesuffix(".proto")
    return stem.replace("_", "__").replace("/", "_dot_") + "__pb2"


GRPC_STUB_PRELUDE = """\
import abc
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar, overload, type_check_only

import grpc
import grpc.aio

{imports}

_T = TypeVar("_T")

GRPC_GENERATED_VERSION: str
GRPC_VERSION: str

@type_check_only
class _MaybeAsyncIterator(AsyncIterator[_T], Iterator[_T], metaclass=abc.ABCMeta): ...

@type_check_only
class _ServicerContext(
    grpc.ServicerContext, grpc.aio.ServicerContext[Any, Any], metaclass=abc.ABCMeta
): ...
"""

_KINDS = {
    (False, False): "UnaryUnary",
    (False, True): "UnaryStream",
    (True, False): "StreamUnary",
    (True, True): "StreamStream",
}


class TypeIndex:
    """Where each message type of a descriptor set is defined."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        self.file_of: dict[str, str] = {}
        self.package_of: dict[str, str] = {}
        for f in fds.file:
            self.package_of[f.name] = f.package
            prefix = f"{f.package}." if f.package else ""
            pending = [(prefix + m.name, m) for m in f.message_type]
            while pending:
                full_name, message = pending.pop()
                self.file_of[full_name] = f.name
                pending.extend((f"{full_name}.{n.name}", n) for n in message.nested_type)

    def ref(self, type_name: str) -> tuple[str, str]:
        """``.pcit.tvs.OpaqueMessage`` → (defining file, Python expression for the class)."""
        full_name = type_name.lstrip(".")
        source = self.file_of[full_name]
        package = self.package_of[source]
        local = full_name[len(package) + 1 :] if package else full_name
        return source, f"{alias_of(source)}.{local}"


def grpc_stub(
    proto_name: str,
    services: list[descriptor_pb2.ServiceDescriptorProto],
    types: TypeIndex,
) -> str:
    """The ``_pb2_grpc.pyi`` text for the services of one ``.proto`` file."""
    used: set[str] = set()

    def ref(type_name: str) -> str:
        source, expression = types.ref(type_name)
        used.add(source)
        return expression

    body: list[str] = []
    for service in services:
        name = service.name
        sync_attrs: list[str] = []
        async_attrs: list[str] = []
        servicer: list[str] = []
        for method in service.method:
            req = ref(method.input_type)
            resp = ref(method.output_type)
            kind = _KINDS[(method.client_streaming, method.server_streaming)]
            sync_attrs.append(f"    {method.name}: grpc.{kind}MultiCallable[{req}, {resp}]")
            async_attrs.append(f"    {method.name}: grpc.aio.{kind}MultiCallable[{req}, {resp}]")
            if method.client_streaming:
                arg = f"request_iterator: _MaybeAsyncIterator[{req}]"
            else:
                arg = f"request: {req}"
            if method.server_streaming:
                ret = f"Iterator[{resp}] | AsyncIterator[{resp}]"
            else:
                ret = f"{resp} | Awaitable[{resp}]"
            servicer.append(
                f"    def {method.name}(self, {arg}, context: _ServicerContext) -> {ret}: ..."
            )
        body.append(
            f"class {name}Stub:\n"
            "    @overload\n"
            f"    def __new__(cls, channel: grpc.Channel) -> {name}Stub: ...\n"
            "    @overload\n"
            f"    def __new__(cls, channel: grpc.aio.Channel) -> {name}AsyncStub: ...\n"
            + "\n".join(sync_attrs)
            + "\n\n@type_check_only\n"
            f"class {name}AsyncStub:\n"
            f"    def __init__(self, channel: grpc.aio.Channel) -> None: ...\n"
            + "\n".join(async_attrs)
            + f"\n\nclass {name}Servicer:\n"
            + "\n".join(servicer)
            + f"\n\ndef add_{name}Servicer_to_server(\n"
            f"    servicer: {name}Servicer, server: grpc.Server | grpc.aio.Server\n"
            ") -> None: ...\n"
        )
    imports = []
    for source in sorted(used):
        package, _, module = module_of(source).rpartition(".")
        imports.append(f"from {package} import {module} as {alias_of(source)}")
    header = (
        f"# Generated by scripts/generate_protos.py from {proto_name}. DO NOT EDIT!\n"
        f'"""Typing stubs for the gRPC classes of {proto_name}."""\n\n'
    )
    return header + GRPC_STUB_PRELUDE.format(imports="\n".join(imports)) + "\n" + "\n".join(body)


# --- generation ---------------------------------------------------------------------------


def generate(dest: Path) -> None:
    """Write the complete generated tree for ``hats.pb`` into ``dest`` (must be empty)."""
    files = proto_files()
    with tempfile.TemporaryDirectory(prefix="hats-protos-") as tmp_name:
        tmp = Path(tmp_name)
        fds_path = tmp / "descriptors.pb"
        out = tmp / "out"
        out.mkdir()
        protoc(f"--descriptor_set_out={fds_path}", "--include_imports", *files)
        fds = descriptor_pb2.FileDescriptorSet.FromString(fds_path.read_bytes())
        ours = {f.name: f for f in fds.file if f.name in files}
        with_services = [name for name in files if ours[name].service]

        protoc(f"--python_out={out}", f"--pyi_out={out}", *files)
        if with_services:
            protoc(f"--grpc_python_out={out}", *with_services)

        types = TypeIndex(fds)
        for name in with_services:
            stub = out / name.replace(".proto", "_pb2_grpc.pyi")
            text = grpc_stub(name, list(ours[name].service), types)
            stub.write_text(text, encoding="utf-8", newline="\n")

        generated = out / PACKAGE_PATH
        for dirpath, _dirnames, _filenames in os.walk(generated):
            init = Path(dirpath) / "__init__.py"
            init.write_text(ROOT_INIT if init.parent == generated else "", encoding="utf-8")
        shutil.copytree(generated, dest, dirs_exist_ok=True)


def tree_files(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in sorted(filenames):
            if filename.endswith(".pyc"):
                continue
            yield (Path(dirpath) / filename).relative_to(root).as_posix()


def first_difference(fresh: Path, current: Path) -> str | None:
    """The first file (relative path) that differs, is missing or is extra; None if equal."""
    fresh_files = set(tree_files(fresh))
    current_files = set(tree_files(current)) if current.is_dir() else set()
    for name in sorted(fresh_files | current_files):
        if name not in current_files:
            return f"{name} is missing"
        if name not in fresh_files:
            return f"{name} is not generated from proto/ (stale file)"
        if not filecmp.cmp(fresh / name, current / name, shallow=False):
            return f"{name} differs from a fresh generation"
    return None


def replace_tree(fresh: Path) -> None:
    """Replace OUT_DIR by ``fresh`` (a sibling move, then the old tree is removed)."""
    staging = OUT_DIR.with_name(OUT_DIR.name + ".new")
    old = OUT_DIR.with_name(OUT_DIR.name + ".old")
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    shutil.copytree(fresh, staging)
    if OUT_DIR.exists():
        OUT_DIR.rename(old)
    staging.rename(OUT_DIR)
    if old.exists():
        shutil.rmtree(old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if src/hats/pb differs from a fresh generation",
    )
    args = parser.parse_args(argv)
    rel_out = OUT_DIR.relative_to(ROOT).as_posix()
    try:
        check_tools()
        with tempfile.TemporaryDirectory(prefix="hats-pb-") as tmp_name:
            fresh = Path(tmp_name) / "pb"
            fresh.mkdir()
            generate(fresh)
            if args.check:
                problem = first_difference(fresh, OUT_DIR)
                if problem is not None:
                    print(
                        f"{rel_out}/{problem}; run .venv/bin/python scripts/generate_protos.py",
                        file=sys.stderr,
                    )
                    return 1
                print(f"{rel_out} is up to date with proto/")
                return 0
            replace_tree(fresh)
            print(f"generated {rel_out} from {len(proto_files())} .proto files")
            return 0
    except GenerateError as exc:
        print(f"generate_protos: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
