"""User-facing errors: the CLI prints a LadcError as one line and exits with code 2."""

__all__ = ["LadcError", "did_you_mean"]


class LadcError(Exception):
    """An error the user can fix (bad path, bad value, bad file). Never used for bugs."""


def did_you_mean(value: str, choices) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
