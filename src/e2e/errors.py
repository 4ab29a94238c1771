"""The one exception type for bad input: the CLI prints it as a single line and exits non-zero."""


class E2EError(Exception):
    """Bad input or environment: the message names the file, what was expected and what was found."""
