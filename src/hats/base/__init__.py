"""hats.base (see docs/ARCHITECTURE.md)."""
