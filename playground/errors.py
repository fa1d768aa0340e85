"""The one exception type for mistakes a user can make (bad flag, unknown game, missing data,
wrong checkpoint). `run.py` prints its message as one line and exits non-zero."""


class UserError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


def check(condition: bool, message: str) -> None:
    """Raise `UserError(message)` unless `condition` holds."""
    if not condition:
        raise UserError(message)


def require_positive(**values: float) -> None:
    """Refuse zero or negative settings, naming the flag: `require_positive(batch_size=32)`."""
    for name, value in values.items():
        if not value > 0:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be positive, got {value}")
