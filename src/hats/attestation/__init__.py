"""Attestation evidence: DICE/CWT certificates, the AMD SEV-SNP report chain,
evidence verification and appraisal policies (see docs/ARCHITECTURE.md)."""
