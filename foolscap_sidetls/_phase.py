"""
The phase of one sidetls connection, and which phase may follow which.

A connection is in exactly one L{Phase}.  The live ones come in order --
Foolscap's plaintext header exchange, the TLS handshake, Foolscap's
encrypted hello, the connection handed to a C{Broker} -- and any of them
can end in L{Phase.CLOSING} (this end closed; the peer still has to
finish) or straight in L{Phase.LOST}.  L{NEXT} is the whole table; a
transition it does not list is a bug, and raises.

One branch leaves that line: during the plaintext exchange the
application may stop being a Foolscap negotiation without ever calling
C{startTLS} -- Tahoe-LAFS's protocol switch turning into its HTTPS
storage server, or any protocol that hands the connection to another.
That is L{Phase.PASSTHROUGH}, which only ends (see
L{foolscap_sidetls._foolscap.tookOver} for when it is entered, and why
only the application, never the peer, can get there).

How far negotiation got is kept even after this end closes: a TLS
handshake can complete while its close is under way, and the line logged
when the connection is gone says where negotiation stood, not only that
it was closing.  L{describe} is that part of the line.
"""

from __future__ import annotations

from enum import Enum


class Phase(Enum):
    """Where one connection stands; its value is what logs print."""

    #: Foolscap's plaintext header exchange, before C{startTLS}.
    PLAINTEXT = "plaintext"
    #: C{startTLS} was called; the TLS handshake has not completed.
    HANDSHAKING = "handshaking"
    #: TLS is up; Foolscap still exchanges its encrypted hellos.
    NEGOTIATING = "negotiating"
    #: The application (Foolscap's C{Broker}) has the connection.
    ESTABLISHED = "established"
    #: The application stopped being a Foolscap negotiation before TLS
    #: (it handed the connection to another protocol, e.g. Tahoe-LAFS's
    #: HTTPS storage server doing its own TLS): not Foolscap, so none of
    #: the negotiation limits apply; bytes pass through untouched.
    PASSTHROUGH = "passthrough"
    #: This end closed (or aborted) the connection; nothing more reaches
    #: the application while the close completes.
    CLOSING = "closing"
    #: The transport underneath reported the connection lost.
    LOST = "lost"


#: The phases of a connection that is up: those negotiation goes through,
#: in order, then the branch it can leave by.
LIVE = (
    Phase.PLAINTEXT,
    Phase.HANDSHAKING,
    Phase.NEGOTIATING,
    Phase.ESTABLISHED,
    Phase.PASSTHROUGH,
)

_ENDINGS = frozenset({Phase.CLOSING, Phase.LOST})

#: Which phases may follow each phase.
NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.PLAINTEXT: frozenset({Phase.HANDSHAKING, Phase.PASSTHROUGH}) | _ENDINGS,
    Phase.HANDSHAKING: frozenset({Phase.NEGOTIATING}) | _ENDINGS,
    Phase.NEGOTIATING: frozenset({Phase.ESTABLISHED}) | _ENDINGS,
    Phase.ESTABLISHED: _ENDINGS,
    Phase.PASSTHROUGH: _ENDINGS,
    Phase.CLOSING: frozenset({Phase.LOST}),
    Phase.LOST: frozenset(),
}


def checkTransition(current: Phase, new: Phase) -> None:
    """
    @raise RuntimeError: if L{NEXT} does not let C{new} follow C{current}.
    """
    if new not in NEXT[current]:
        raise RuntimeError(
            "a sidetls connection cannot go from phase %s to phase %s; from %s it "
            "can go to: %s"
            % (
                current.value,
                new.value,
                current.value,
                ", ".join(sorted(p.value for p in NEXT[current])) or "nothing",
            )
        )


def describe(reached: Phase, received: bool, stillNegotiating: bool) -> str:
    """
    Where negotiation stood, for a log line or an error message.

    @param reached: the last live phase the connection reached.
    @param received: whether the peer sent any plaintext.
    @param stillNegotiating: whether the application has yet to take the
        connection (Foolscap may switch to its Broker a moment before the
        phase says so: the switch is seen when its delivery returns).
    """
    if reached is Phase.PLAINTEXT:
        if not received:
            return "before the peer sent anything"
        return "in the plaintext header exchange"
    if reached is Phase.HANDSHAKING:
        return "in the TLS handshake"
    if reached is Phase.PASSTHROUGH:
        return "after the application took the connection over"
    if stillNegotiating:
        return "in Foolscap's negotiation after the TLS handshake"
    return "after negotiation"
