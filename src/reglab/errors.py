"""One error type for everything a user can get wrong.

The CLI prints ``reglab: <message>`` on one line and exits with status 2; the
library raises :class:`ReglabError` and never prints. A message names the
thing that is wrong, what was found, and the fix.
"""


class ReglabError(Exception):
    """A user-facing error: one line, names the problem and the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
