"""Protobuf and gRPC modules generated from ``proto/`` by ``scripts/generate_protos.py``.

Do not edit: change the ``.proto`` files and regenerate. The proto packages are the
reference's (``pcit.tvs``, ``oak.attestation.v1``, ...), so full message names and gRPC
method paths are wire-identical; the Python modules are ``hats.pb.<proto path>_pb2``.
"""
