"""The one base class of errors a user can fix (bad flag, file or data), and how entry points report them.

Every module raises its own subclass (ConfigError, DatasetError, ...); entry
points wrap `main` in `exit_on_user_error`, which turns any of them into one
line on stderr and exit status 2, while real bugs still show a traceback.
"""

import functools
import sys
from collections.abc import Callable

USER_ERROR_EXIT_CODE = 2


class UserError(ValueError):
    """A problem with the user's input, described in one line naming the flag or file."""


class DataError(UserError):
    """A data-making command's input file or option is wrong; the message names the file (and line) or flag."""


def exit_on_user_error(main: Callable) -> Callable:
    """`main`, reporting a UserError as one line `error: ...` on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT_CODE)
    return wrapped
