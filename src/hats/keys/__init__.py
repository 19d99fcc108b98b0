"""hats.keys (see docs/ARCHITECTURE.md)."""
