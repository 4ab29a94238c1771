"""The one exception type for bad input: the CLI prints it as a single line and exits non-zero."""


class E2EError(Exception):
    """Bad input or environment: the message names the file, what was expected and what was found."""


def first_line(message: object, *, last: bool = False, limit: int = 300) -> str:
    """The first (or last: a subprocess's error is its final line) non-empty line of an exception or output,
    cut to `limit` characters; "(no message)" for an empty one, so a one-line error never raises itself."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    return (lines[-1] if last else lines[0])[:limit]
