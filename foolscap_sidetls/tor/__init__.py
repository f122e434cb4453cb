"""
Foolscap over Tor, role-based: dial onion (and TCP) hints through a tor's
SOCKS port as the TLS client, and listen on an onion service as the TLS
server.

Dialing -- the same functions, arguments and hint syntax (C{tor:HOST:PORT},
and C{tcp:HOST:PORT} when registered for C{"tcp"}) as
C{foolscap.connections.tor}, each returning a connection-hint handler whose
endpoints are L{foolscap_sidetls.dialer}s::

    from foolscap_sidetls import tor
    tub.addConnectionHintHandler("tor", tor.control_endpoint(
        clientFromString(reactor, "tcp:127.0.0.1:9051")))

L{control_endpoint}, L{control_endpoint_maker} and L{launch} handlers make
one control connection (and L{launch} one tor process) per handler, shared
by every dial and by L{listen}; Foolscap's connection status shows what it
is waiting for (C{"launching tor"}, C{"connecting to tor control port
..."}, C{"waiting for tor bootstrap (NN%: ...)"}).  A tor whose bootstrap
makes no progress for C{bootstrap_timeout} seconds (L{BOOTSTRAP_TIMEOUT}
unless told otherwise) fails them with L{TorBootstrapError}, saying what
tor reported, where its log is and what to check.

Listening::

    d = tor.listen(tub, handler_or_control_endpoint)
    d.addCallback(tub.setLocation)       # "tor:<56 chars>.onion:3457"

publishes an onion service (C{ADD_ONION} over the control connection) that
forwards to a Tub listener on 127.0.0.1, and removes it when the Tub stops.

The package is split by layer, each a private module: L{_errors}, L{_common}
(helpers, the one logger), L{_status} (parsing C{STATUS_CLIENT} events),
L{_bootstrap} (following bootstrap, the stall diagnosis), L{_control} (the
control connection, shared per handler, its backoff), L{_launch} (launching
tor), L{_dial} (hints, SOCKS), L{_handler} (the hint handler and the
functions making one) and L{_onion} (C{ADD_ONION} listening).
"""

from __future__ import annotations

try:
    import txtorcon  # noqa: F401
    from foolscap.connections import tor as _foolscap_tor  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "foolscap_sidetls.tor needs txtorcon (%s): pip install 'foolscap-sidetls[tor]'" % (e,)
    ) from e

#: Where tor lives when it is not on PATH (Debian/Ubuntu put it in /usr/sbin,
#: which is not on an ordinary user's PATH).  Defined here, not in
#: L{_launch}, and read from here at each L{launch}: programs and tests set
#: C{foolscap_sidetls.tor.TOR_SEARCH_DIRS}.
TOR_SEARCH_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")

# Names outside __all__ (the timeouts, log, _TorClient) stay reachable here
# as they were before the split: tests and tools read them.
from ._bootstrap import BOOTSTRAP_TIMEOUT  # noqa: E402
from ._common import log  # noqa: E402,F401
from ._control import CONTROL_TIMEOUT, RETRY_INITIAL, RETRY_MAX, STABLE_AFTER  # noqa: E402,F401
from ._dial import _TorClient  # noqa: E402,F401
from ._errors import TorBootstrapError, TorControlError, TorError, TorNotFound  # noqa: E402
from ._handler import (  # noqa: E402
    TorHandler,
    control_endpoint,
    control_endpoint_maker,
    default_socks,
    launch,
    socks_endpoint,
)
from ._launch import LAUNCH_TIMEOUT, LOG_MAX  # noqa: E402,F401
from ._onion import DEFAULT_ONION_PORT, LISTEN_TIMEOUT, listen  # noqa: E402,F401

__all__ = [
    "BOOTSTRAP_TIMEOUT",
    "DEFAULT_ONION_PORT",
    "RETRY_INITIAL",
    "RETRY_MAX",
    "TorBootstrapError",
    "TorControlError",
    "TorError",
    "TorHandler",
    "TorNotFound",
    "control_endpoint",
    "control_endpoint_maker",
    "default_socks",
    "launch",
    "listen",
    "socks_endpoint",
]
