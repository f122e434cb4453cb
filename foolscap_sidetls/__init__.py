"""
foolscap-sidetls: run Foolscap over any transport, with the TLS side taken
from the connection's logical role -- the listener is the TLS server, the
dialer the TLS client -- instead of from the socket direction.

    from foolscap_sidetls import Limits, install, listener
    install(tub)                                  # every dial is role-based
    tub.listenOn("sidetls:tcp:0")                  # or listener(endpoint)
    listener(endpoint, limits=Limits(max_negotiating=100))
"""

from ._version import __version__
from ._endpoints import dialer, listener
from ._errors import NegotiationTimeout, TLSHandshakeTimeout, TLSSideError, TooManyNegotiating
from ._handler import handler, install
from ._interfaces import ISideTLSTransport
from ._limits import DEFAULT_CLOSE_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, Limits
from ._phase import Phase

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "ISideTLSTransport",
    "Limits",
    "NegotiationTimeout",
    "Phase",
    "TLSHandshakeTimeout",
    "TLSSideError",
    "TooManyNegotiating",
    "__version__",
    "dialer",
    "handler",
    "install",
    "listener",
]
