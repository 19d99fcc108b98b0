"""hats: the HATs system image builder and the agents that run inside it."""

__version__ = "0.1.0"
