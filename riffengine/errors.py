"""The one exception type for user mistakes.

Anything a user can get wrong (a file, a flag, a config value, an OSC or MIDI message) raises
:class:`UserError` with a message that names the thing and the fix. The CLI prints it on one line
and exits with status 2; the running engine logs it and carries on. Any other exception is a bug.
"""


class UserError(Exception):
    """A mistake in user input: the message names what is wrong and how to fix it."""
