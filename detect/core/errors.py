"""One error hierarchy, so callers can catch everything unmask raises with one clause
and the CLI can print one clean line per problem instead of a traceback."""

from __future__ import annotations


class UnmaskError(Exception):
    """Base of every error unmask raises on purpose."""


class InputError(UnmaskError):
    """An input file cannot be used: empty, truncated, not the format it claims, too large...

    The message always names the file, so one line in a batch log is enough to find it.
    """

    def __init__(self, path: object, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(UnmaskError):
    """A recipe, manifest, key file or command-line option is malformed or inconsistent."""


class ModelError(UnmaskError):
    """A model directory is missing, incomplete, or does not match the code that loads it."""
