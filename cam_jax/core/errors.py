"""The error a user's bad input raises, apart from cam_jax's own bugs.

``BadInput`` (a ``ValueError``) means the caller gave something cam_jax cannot use: an unknown
name, a bad config value, a missing or malformed file. The command line prints it as one line
and exits 2; every other exception is a bug and prints its traceback.
"""


class BadInput(ValueError):
  """The caller's input is unusable; the message names it and the valid choices."""


class MissingInput(BadInput, FileNotFoundError):
  """A file or directory the caller named does not exist (or is not what it should be)."""
