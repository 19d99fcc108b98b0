"""``hats keys`` (placeholder until the keys module lands)."""

import click


@click.group("keys")
def keys_group() -> None:
    """Check, generate and show TVS key files."""
