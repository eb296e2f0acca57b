"""embed: reading, standardizing, de-identifying and embedding chest X-rays."""

__version__ = "0.1.0"
