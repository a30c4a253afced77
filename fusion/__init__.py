"""rgbt-fusion: RGB-thermal image fusion (I/O, colour, data, methods, metrics, CLI)."""

__version__ = "0.1.0"
