"""One error type for everything a user can get wrong.

The CLI prints ``reglab: <message>`` on one line and exits with status 2; the
library raises :class:`ReglabError` and never prints. A message names the
thing that is wrong, what was found, and the fix.
"""


class ReglabError(Exception):
    """A user-facing error: one line, names the problem and the fix.

    Several independent problems found at once (e.g. two bad ``--set`` values)
    are several messages, one line each: ``ReglabError(first, second)``.
    """

    def __init__(self, message: str, *more: str):
        self.lines = [" ".join(str(m).split()) for m in (message, *more)]
        super().__init__("\n".join(self.lines))
