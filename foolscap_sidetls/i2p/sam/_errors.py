"""
What a SAM client tells its caller went wrong, each message saying what to
do about it.  L{I2PError} is the base of these and of the launcher's own
errors in L{foolscap_sidetls.i2p}, so one C{except} covers all of I2P.
"""

from __future__ import annotations

#: What a user whose SAM bridge does not answer should check.
ENABLE_SAM = (
    "Is the I2P router running with its SAM bridge enabled? For i2pd, put "
    "'[sam]' with 'enabled = true' (and address = 127.0.0.1, port = 7656) in "
    "i2pd.conf and restart it; for Java I2P, enable the SAM application bridge "
    "in the router console (Config > Clients). Or let "
    "foolscap_sidetls.i2p.launch() start an i2pd of its own"
)


class I2PError(Exception):
    """I2P could not be used; the message says why and what to do."""


class SAMUnreachable(I2PError):
    """Nothing answered at the SAM bridge's address (or it did not speak SAM)."""

    def __init__(self, where: str, reason: str) -> None:
        I2PError.__init__(self, "no SAM bridge answering at %s (%s). %s." % (where, reason, ENABLE_SAM))
        self.where = where
        self.reason = reason


class SAMRefused(I2PError):
    """
    The SAM bridge answered a command with a RESULT other than OK.

    @ivar command: the SAM command (C{"SESSION CREATE"}, C{"STREAM CONNECT"}, ...).
    @ivar result: SAM's RESULT (C{"I2P_ERROR"}, C{"CANT_REACH_PEER"}, ...).
    @ivar message: SAM's MESSAGE, or C{""}.
    """

    def __init__(self, where: str, command: str, result: str, message: str, advice: str = "") -> None:
        text = "the SAM bridge at %s refused %s: RESULT=%s" % (where, command, result)
        if message:
            text += " MESSAGE=%s" % (message,)
        if advice:
            text += " (%s)" % (advice,)
        I2PError.__init__(self, text)
        self.where = where
        self.command = command
        self.result = result
        self.message = message

    def advised(self, command: str, advice: str) -> "SAMRefused":
        """The same refusal, naming C{command} more exactly and with C{advice}."""
        return SAMRefused(self.where, command, self.result, self.message, advice)


class SAMConnectionLost(I2PError):
    """The SAM bridge closed a connection before answering (did the router stop?)."""


class SAMTimeout(I2PError):
    """The SAM bridge did not answer a command in time."""
