"""
The addresses of the hidden Tub's side: where a relayed connection's
dialer came from, and what a relayed listening port reports as its host.
"""

from __future__ import annotations

from zope.interface import implementer
from twisted.internet.interfaces import IAddress


@implementer(IAddress)
class RelayedAddress:
    """
    The dialer of a relayed connection, as the relay saw it: what the
    hidden Tub's listening factory is built with.  (The connection's
    C{getPeer()} is the relay: that is the socket's other end.)
    """

    def __init__(self, host: str, port: int, relay: str) -> None:
        self.host = host
        self.port = port
        self.relay = relay

    def __repr__(self) -> str:
        return "RelayedAddress(%r, %d, via %r)" % (self.host, self.port, self.relay)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RelayedAddress):
            return NotImplemented
        return (self.host, self.port, self.relay) == (other.host, other.port, other.relay)

    def __hash__(self) -> int:
        return hash((self.host, self.port, self.relay))


@implementer(IAddress)
class RelayAddress:
    """
    What a relayed listening port reports as its host: it has no local
    address, only a relay at which it can be reached.
    """

    def __init__(self, relay: str, tubid: str) -> None:
        self.relay = relay
        self.tubid = tubid
        # Foolscap's Listener logs host and port.
        self.host = relay
        self.port = None

    def __repr__(self) -> str:
        return "RelayAddress(%r, %r)" % (self.relay, self.tubid)

    def __str__(self) -> str:
        return "relay %s for TubID %s" % (self.relay, self.tubid)
