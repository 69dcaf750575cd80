"""CLI output as the tests read it."""


def text(res) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(res.output.split())
