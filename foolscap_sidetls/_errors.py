"""
Exceptions raised or reported by foolscap-sidetls.
"""

from foolscap.tokens import NegotiationError


class TLSSideError(NegotiationError):
    """
    The TLS handshake could not start because both ends picked the same TLS
    side.

    This is the failure a mixed deployment hits: one end uses foolscap-sidetls
    (the listener is the TLS server), the other still takes its side from the
    socket direction.  Foolscap reports C{str()} of this exception in the
    C{getReference} errback and in C{ConnectionInfo}, so the text is written
    for the person reading those, not for a developer.
    """


class TLSHandshakeTimeout(NegotiationError):
    """
    No TLS handshake completed within the handshake wait.

    When both ends wait as TLS servers nobody speaks first, and without a
    bound the connection would sit silent until Foolscap's own 120 s
    timeouts.  A peer that simply stalls looks the same from here, so this
    is not a L{TLSSideError} (which is raised only when the peer's bytes
    show it took the same side); the message names both causes.
    """


class NegotiationTimeout(NegotiationError):
    """
    A connection did not finish negotiating (plaintext header, TLS handshake
    and Foolscap's encrypted hello) within the C{negotiation_timeout} its
    listener or dialer was given; the message says in which phase it stalled,
    which is what tells a stalled peer from a slow network.
    """


class TooManyNegotiating(NegotiationError):
    """
    A listener given C{max_negotiating=N} had N connections still negotiating
    when another arrived, and dropped this one to admit it: the oldest of
    those that had sent nothing for a few seconds, or else the oldest of all.
    A flood of connections is what makes this happen, so the message says
    where this one was, to tell a flood's connections from an honest one.
    """
