"""
In-memory networks for testing code that uses Foolscap Tubs, with or
without foolscap-sidetls, without opening a socket.

Like C{treq.testing}, this is public API: your own tests can connect two
Tubs through a L{MemoryNetwork}, choose which way each end's "socket"
points, and see exactly what a real deployment would see -- including
stock Foolscap's double-ClientHello failure when a listener's connections
are outbound sockets, because L{MemoryTransport.startTLS} picks its side
from the socket direction just as Twisted's TCP transports do.

Example::

    net = MemoryNetwork()
    hint = net.listen(server_tub, "server", socket="outbound")  # the I2P shape
    client_tub.addConnectionHintHandler("memory", handler(net.hint_handler()))
    furl = server_tub.registerReference(obj, furlFile=None)  # location: hint
    d = client_tub.getReference(furl)

For the same shape over real loopback TCP, L{SpliceRelay} is a small
reverse-tunnel relay and L{ReverseServerEndpoint} a server endpoint whose
connections are outbound sockets to it -- what I2P's SAM bridge does.

Deliveries are scheduled with C{callLater(0)} on the network's clock (the
global reactor by default, which Foolscap itself uses), so a test returns
the Deferred and lets trial spin the reactor; with a
L{twisted.internet.task.Clock}, advance it instead.

Modules: C{_memory} (the memory network) and C{_splice} (the loopback
splice relay).  Neither is used by the library itself.
"""

from ._memory import (
    INBOUND,
    OUTBOUND,
    MemoryAddress,
    MemoryConnection,
    MemoryNetwork,
    MemoryTransport,
)
from ._splice import ReverseServerEndpoint, SpliceRelay

__all__ = [
    "INBOUND",
    "MemoryAddress",
    "MemoryConnection",
    "MemoryNetwork",
    "MemoryTransport",
    "OUTBOUND",
    "ReverseServerEndpoint",
    "SpliceRelay",
]
