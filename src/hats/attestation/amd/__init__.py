"""AMD SEV-SNP: the attestation report, AMD's certificates and the VCEK chain.

``report`` parses the report (pure), ``certs`` loads the ARK/ASK roots (built in
or from a directory) and reads the VCEK, ``verify`` checks ARK → ASK → VCEK →
report.

The package imports nothing itself (import from the module that owns a name),
so reading a report does not load the X.509 stack.
"""
