"""
The zope interfaces of foolscap-sidetls, all in one place.

Stable: anything named C{I*} here is public API (re-exported from
L{foolscap_sidetls}); the classes that provide them are private.
"""

from zope.interface import Attribute
from twisted.internet.interfaces import ITLSTransport


class ISideTLSTransport(ITLSTransport):
    """
    A transport whose TLS side comes from the connection's logical role,
    not from the direction of the socket underneath it.

    Foolscap's C{Negotiation} (and, after the switch, its C{Broker}) sees
    this transport.  Anything that needs to know which end of a connection
    it is on -- diagnostics, the C{ping} command, tests -- reads it here
    rather than guessing from C{getPeer()}.
    """

    role = Attribute(
        "C{'listener'} or C{'dialer'}: the logical role this end of the "
        "connection plays, fixed when the connection was built."
    )

    tlsSide = Attribute(
        "C{None} before C{startTLS}; then C{'server'} or C{'client'}, the "
        "TLS side this end took."
    )

    phase = Attribute(
        "Where the connection stands, a L{foolscap_sidetls.Phase}: PLAINTEXT, "
        "HANDSHAKING, NEGOTIATING, ESTABLISHED, or PASSTHROUGH (the application "
        "took the connection over from Foolscap before TLS), then CLOSING (this "
        "end closed) and LOST.  Read-only; what the logs print."
    )
