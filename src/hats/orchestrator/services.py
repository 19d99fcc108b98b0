"""The orchestrator's gRPC services for the workload (spec wire-protocol §3.4, §3.6–3.8).

On the unix socket (``--ipc-socket-path``), one server with three services:

* ``pcit.server_common.HatsOrchestrator.GetKeys`` — the secrets of
  ``state.secret_manager.current()``, one ``Key`` per ``Secret``, same fields,
  same order. A failure of the secret manager (a :class:`HatsError`, e.g.
  secrets too stale) is ``UNAVAILABLE`` with the error's one-line message; any
  other failure is ``INTERNAL`` naming only the exception type. Neither ever
  carries key material.
* ``oak.containers.Orchestrator``: ``GetApplicationConfig`` → ``config = b""``;
  ``NotifyAppReady`` → forwarded to the launcher's ``oak.containers.Launcher``
  (failure → ``INTERNAL "couldn't send notification: …"``);
  ``GetEndorsedEvidence`` → the final evidence and the empty endorsements
  ``{oak_containers: {}}`` (bytes ``12 00``), as the reference.
* ``oak.containers.v1.OrchestratorCrypto`` (:mod:`hats.orchestrator.ipc_crypto`):
  ``DeriveSessionKeys`` (INSTANCE/GROUP X25519 key, HPKE exports; unspecified
  origin → ``INVALID_ARGUMENT "unspecified key origin"``, crypto failure →
  ``INTERNAL``); ``Sign`` (INSTANCE → ECDSA with the instance signing key, GROUP →
  ``UNIMPLEMENTED``); ``BindSession`` (session-binding key over
  ``transcript || additional_data``).

Deliberate differences from the reference (§8.1, §8.2):

* the socket is mode **0660**, owned by the runtime user's uid/gid (the
  reference: 0666, set after the server already listens). The socket is bound
  inside a fresh private directory (0700) beside the target, chmod-ed and
  chown-ed there, then renamed into place, so it is never reachable with
  other permissions; only then does the server start;
* ``Sign`` with the **instance** key answers ``PERMISSION_DENIED`` unless
  ``enable_instance_signing``: that key also signs the TVS handshake hash, so
  a local caller able to sign arbitrary 32 bytes could complete a TVS
  session for the host operator (§8.2).

Clients may use any ``:authority`` (the HATs/Oak SDKs send ``[::]:0``); the
server does not look at it.

The TCP ``oak.key_provisioning.v1.KeyProvisioning`` server (§3.8) runs only
when an address is given (:func:`serve_key_provisioning`); it checks that
both request fields are present and then answers ``UNIMPLEMENTED``: the
specification does not give the fields of ``oak.crypto.v1.EncryptedRequest``,
so the group key cannot be sent in a form a reference peer would read.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import grpc
from cryptography.hazmat.primitives.asymmetric import x25519
from google.protobuf import empty_pb2

from hats.errors import HatsError
from hats.orchestrator import ipc_crypto
from hats.orchestrator.state import OrchestratorState
from hats.pb.oak.attestation.v1 import endorsement_pb2
from hats.pb.oak.containers import interfaces_pb2, interfaces_pb2_grpc
from hats.pb.oak.containers.v1 import orchestrator_crypto_pb2 as crypto_pb2
from hats.pb.oak.containers.v1 import orchestrator_crypto_pb2_grpc as crypto_pb2_grpc
from hats.pb.oak.crypto.v1 import crypto_pb2 as oak_crypto_pb2
from hats.pb.oak.key_provisioning.v1 import key_provisioning_pb2, key_provisioning_pb2_grpc
from hats.pb.oak.session.v1 import messages_pb2
from hats.pb.pcit.server_common import orchestrator_pb2, orchestrator_pb2_grpc
from hats.transport import AddressError, parse_address

_log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
"""Mode of the IPC socket (the reference: 0666)."""

MAX_WORKERS = 8

INSTANCE = crypto_pb2.KeyOrigin.INSTANCE
GROUP = crypto_pb2.KeyOrigin.GROUP

_Context = grpc.ServicerContext


class IpcServerError(HatsError):
    """The IPC socket or the KeyProvisioning server cannot be set up."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _abort(context: _Context, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, _one_line(details))
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def empty_endorsements() -> endorsement_pb2.Endorsements:
    """``Endorsements{oak_containers: {}}`` (§2 step 10): encodes to ``12 00``."""
    endorsements = endorsement_pb2.Endorsements()
    endorsements.oak_containers.SetInParent()
    return endorsements


class HatsOrchestratorServicer(orchestrator_pb2_grpc.HatsOrchestratorServicer):
    """``GetKeys``: the current secrets, 1:1 as ``Key`` messages."""

    def __init__(self, state: OrchestratorState) -> None:
        self._state = state

    def GetKeys(
        self, request: empty_pb2.Empty, context: _Context
    ) -> orchestrator_pb2.GetKeysResponse:
        try:
            secrets = self._state.secret_manager.current()
        except HatsError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, f"secrets unavailable: {exc}")
        except Exception as exc:
            _log.error("GetKeys failed: %s", type(exc).__name__)
            _abort(context, grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__})")
        response = orchestrator_pb2.GetKeysResponse()
        for secret in secrets:
            response.keys.add(
                key_id=secret.key_id, public_key=secret.public_key, private_key=secret.private_key
            )
        return response


class OakOrchestratorServicer(interfaces_pb2_grpc.OrchestratorServicer):
    """``oak.containers.Orchestrator`` as HATs serves it (§3.6)."""

    def __init__(
        self,
        state: OrchestratorState,
        notify_app_ready: Callable[[], None] | None = None,
    ) -> None:
        self._state = state
        self._notify = notify_app_ready or self._notify_launcher

    def _notify_launcher(self) -> None:
        with grpc.insecure_channel(self._state.launcher_target) as channel:
            stub = interfaces_pb2_grpc.LauncherStub(channel)
            stub.NotifyAppReady(empty_pb2.Empty(), timeout=self._state.rpc_timeout)

    def GetApplicationConfig(
        self, request: empty_pb2.Empty, context: _Context
    ) -> interfaces_pb2.GetApplicationConfigResponse:
        return interfaces_pb2.GetApplicationConfigResponse(config=b"")

    def NotifyAppReady(self, request: empty_pb2.Empty, context: _Context) -> empty_pb2.Empty:
        try:
            self._notify()
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else None
            reason = f"{code.name if code else 'error'}: {details or ''}".rstrip(": ")
            _abort(context, grpc.StatusCode.INTERNAL, f"couldn't send notification: {reason}")
        except (HatsError, OSError) as exc:
            _abort(context, grpc.StatusCode.INTERNAL, f"couldn't send notification: {exc}")
        return empty_pb2.Empty()

    def GetEndorsedEvidence(
        self, request: empty_pb2.Empty, context: _Context
    ) -> messages_pb2.EndorsedEvidence:
        return messages_pb2.EndorsedEvidence(
            evidence=self._state.evidence, endorsements=empty_endorsements()
        )


class OrchestratorCryptoServicer(crypto_pb2_grpc.OrchestratorCryptoServicer):
    """``oak.containers.v1.OrchestratorCrypto`` (§3.7), instance signing gated (§8.2)."""

    def __init__(self, state: OrchestratorState, *, enable_instance_signing: bool) -> None:
        self._keys = state.instance_keys
        self._enable_instance_signing = enable_instance_signing

    def _x25519_key(self, origin: int, context: _Context) -> x25519.X25519PrivateKey:
        if origin == INSTANCE:
            return self._keys.encryption_key
        if origin == GROUP:
            return self._keys.group_encryption_key
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "unspecified key origin")

    def DeriveSessionKeys(
        self, request: crypto_pb2.DeriveSessionKeysRequest, context: _Context
    ) -> crypto_pb2.DeriveSessionKeysResponse:
        key = self._x25519_key(request.key_origin, context)
        try:
            request_key, response_key = ipc_crypto.derive_session_keys(
                key, request.serialized_encapsulated_public_key
            )
        except ipc_crypto.IpcCryptoError as exc:
            _abort(context, grpc.StatusCode.INTERNAL, f"couldn't derive session keys: {exc}")
        return crypto_pb2.DeriveSessionKeysResponse(
            session_keys=oak_crypto_pb2.SessionKeys(
                request_key=request_key, response_key=response_key
            )
        )

    def Sign(self, request: crypto_pb2.SignRequest, context: _Context) -> crypto_pb2.SignResponse:
        if request.key_origin == GROUP:
            _abort(context, grpc.StatusCode.UNIMPLEMENTED, "signing with the group key")
        if request.key_origin != INSTANCE:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "unspecified key origin")
        if not self._enable_instance_signing:
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "signing with the instance key is disabled (it also signs the TVS "
                "handshake); start the orchestrator with --enable-instance-signing",
            )
        signature = ipc_crypto.sign_message(self._keys.signing_key, request.message)
        return crypto_pb2.SignResponse(signature=oak_crypto_pb2.Signature(signature=signature))

    def BindSession(
        self, request: crypto_pb2.BindSessionRequest, context: _Context
    ) -> crypto_pb2.BindSessionResponse:
        signature = ipc_crypto.bind_session(
            self._keys.session_binding_key, request.transcript, request.additional_data
        )
        return crypto_pb2.BindSessionResponse(
            signature=oak_crypto_pb2.Signature(signature=signature)
        )


def _remove_stale_socket(path: Path) -> None:
    """Refuse an existing path unless it is a socket nobody listens on (then remove it)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise IpcServerError(f"{path}: exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        pass
    except OSError as exc:
        raise IpcServerError(f"{path}: cannot check the existing socket: {exc.strerror}") from None
    else:
        raise IpcServerError(f"{path}: another process is listening on this socket")
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _bind(server: grpc.Server, target: str, what: str) -> int:
    try:
        port = server.add_insecure_port(target)
    except RuntimeError as exc:
        raise IpcServerError(f"{what}: cannot listen on {target}: {exc}") from None
    if not port:
        raise IpcServerError(f"{what}: cannot listen on {target}")
    return port


def serve_ipc(
    socket_path: str,
    state: OrchestratorState,
    *,
    enable_instance_signing: bool,
    runtime_uid: int | None,
    runtime_gid: int | None,
    notify_app_ready: Callable[[], None] | None = None,
    max_workers: int = MAX_WORKERS,
) -> grpc.Server:
    """Start the three services on ``unix:socket_path``; return the running server.

    Creates the parent directory, refuses an existing path unless it is a
    stale socket, and makes the socket mode 0660 owned by
    ``runtime_uid``/``runtime_gid`` (each ``None`` = keep ours) before it
    appears at ``socket_path`` and before the server starts. ``notify_app_ready``
    replaces the forwarding to the launcher (tests). Stop with ``server.stop``.
    """
    path = Path(socket_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IpcServerError(f"{path.parent}: cannot create directory: {exc.strerror}") from None
    _remove_stale_socket(path)
    # Beyond the pool, gRPC refuses a call (RESOURCE_EXHAUSTED) instead of queueing it.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers), maximum_concurrent_rpcs=max_workers
    )
    orchestrator_pb2_grpc.add_HatsOrchestratorServicer_to_server(
        HatsOrchestratorServicer(state), server
    )
    interfaces_pb2_grpc.add_OrchestratorServicer_to_server(
        OakOrchestratorServicer(state, notify_app_ready), server
    )
    crypto_pb2_grpc.add_OrchestratorCryptoServicer_to_server(
        OrchestratorCryptoServicer(state, enable_instance_signing=enable_instance_signing),
        server,
    )
    try:
        private_dir = Path(tempfile.mkdtemp(prefix=".ipc-", dir=path.parent))
    except OSError as exc:
        raise IpcServerError(f"{path.parent}: cannot create a directory: {exc.strerror}") from None
    staged = private_dir / "s"
    try:
        _bind(server, f"unix:{staged}", str(path))
        try:
            if runtime_uid is not None or runtime_gid is not None:
                os.chown(
                    staged,
                    -1 if runtime_uid is None else runtime_uid,
                    -1 if runtime_gid is None else runtime_gid,
                )
            os.chmod(staged, SOCKET_MODE)
            os.rename(staged, path)
        except OSError as exc:
            detail = exc.strerror or errno.errorcode.get(exc.errno or 0, "error")
            raise IpcServerError(f"{path}: cannot set up the socket: {detail}") from None
    except BaseException:
        server.stop(None)
        with contextlib.suppress(OSError):
            staged.unlink()
        raise
    finally:
        with contextlib.suppress(OSError):
            private_dir.rmdir()
    server.start()
    _log.info("serving the workload services on unix:%s (mode 0660)", path)
    return server


class KeyProvisioningServicer(key_provisioning_pb2_grpc.KeyProvisioningServicer):
    """``GetGroupKeys``: checks the request, then ``UNIMPLEMENTED`` (see the module doc)."""

    def GetGroupKeys(
        self, request: key_provisioning_pb2.GetGroupKeysRequest, context: _Context
    ) -> key_provisioning_pb2.GetGroupKeysResponse:
        if not request.HasField("evidence") or not request.HasField("endorsements"):
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetGroupKeysRequest needs both evidence and endorsements",
            )
        _abort(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            "group key provisioning is not implemented by the HATs Python orchestrator",
        )


@dataclass
class KeyProvisioningServer:
    """A running KeyProvisioning server and the TCP port it listens on."""

    server: grpc.Server
    port: int

    def stop(self, grace: float | None = None) -> None:
        self.server.stop(grace).wait()


def serve_key_provisioning(
    addr: str | None, state: OrchestratorState | None = None
) -> KeyProvisioningServer | None:
    """Start Oak's KeyProvisioning server on ``addr`` (``host:port``); ``None`` → off.

    Nothing listens unless an address is given (the reference listens on
    ``0.0.0.0:4000`` by default, §8.5). ``state`` is accepted for when group
    key provisioning is implemented.
    """
    del state
    if addr is None:
        return None
    try:
        address = parse_address(addr)
    except AddressError as exc:
        raise IpcServerError(f"KeyProvisioning address: {exc}") from None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), maximum_concurrent_rpcs=2)
    key_provisioning_pb2_grpc.add_KeyProvisioningServicer_to_server(
        KeyProvisioningServicer(), server
    )
    port = _bind(server, address.grpc_target(), "KeyProvisioning server")
    server.start()
    _log.info("KeyProvisioning server on %s (answers UNIMPLEMENTED)", address)
    return KeyProvisioningServer(server, port)
