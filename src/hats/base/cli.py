"""``hats base`` (placeholder until the base module lands)."""

import click


@click.group("base")
def base_group() -> None:
    """Build the default Debian base root filesystem."""
