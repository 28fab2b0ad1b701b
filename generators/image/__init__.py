"""Image generators, one family per module."""
