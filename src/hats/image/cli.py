"""``hats image`` (being written)."""

import click


@click.group("image")
def image_group() -> None:
    """Build, inspect, diff, verify and lint system images."""
