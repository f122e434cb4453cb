"""
Foolscap over I2P, role-based: dial C{i2p:} hints as the TLS client and
listen on an I2P destination as the TLS server, through an I2P router's SAM
bridge (i2pd or Java I2P).

Why: a Tub I{listening} on I2P gets each connection over a socket it
opened itself (SAM's C{STREAM ACCEPT}), so stock Twisted makes it a TLS
client and the handshake dies -- both ends send a ClientHello.  Here the
listener's connections go through L{foolscap_sidetls.listener} and are the
TLS server whatever the socket says.  The SAM client is this package's own
(L{foolscap_sidetls.i2p.sam}, which says why, with figures, rather than
txi2p's).

Dialing::

    from foolscap_sidetls import i2p
    h = i2p.default(reactor)                 # SAM at 127.0.0.1:7656
    tub.addConnectionHintHandler("i2p", h)   # i2p:ADDR and i2p:ADDR:PORT hints
    h.setServiceParent(tub)                  # close its SAM session with the Tub

Listening (fires with the hint once the Tub is listening)::

    d = i2p.listen(tub, h, "node.i2p.key")   # or a SAM client endpoint
    d.addCallback(tub.setLocation)           # "i2p:<52 chars>.b32.i2p"

Other ways to reach a router: L{sam_endpoint} (any SAM client endpoint),
L{local_i2p} (reads an i2pd.conf for the SAM address), L{launch} (starts a
private i2pd and stops it with the Tub).  Each returns an L{I2PHandler}: one
SAM session for dialing, opened on first use and shared by every
connection (a session costs ~20 s on i2pd; a further connection costs one
SAM round trip), and the C{sam} argument of L{listen}, whose listening
session is separate (a dialer does not reveal the listener's address).
A handler is a Twisted service: its parent's C{stopService} closes its
sessions and stops the i2pd it launched.

Foolscap's connection status shows what a dial is waiting for:
C{"launching i2pd"}, C{"opening SAM session (can take ~20 s)"},
C{"connecting to <address> over I2P"}.  A session that does not open says
why: a launched i2pd whose log shows that reseeding failed (no peers: this
machine cannot reach the I2P network) fails it after C{reseed_timeout}
(30 s), naming the log; an attached router's silence is reported every 30 s
with what SAM last said.

The package is split by layer: L{sam} (the SAM v3 client, no Foolscap),
L{_errors}, L{_keys} (key files, C{.b32.i2p} addresses, C{i2p:} hints),
L{_local} (an existing i2pd's i2pd.conf), L{_i2pd_log} and L{_launch} (a
launched i2pd), L{_handler} (the hint handler and the functions making one)
and L{_listen} (L{listen}).
"""

from __future__ import annotations

#: Where i2pd lives when it is not on PATH (Debian/Ubuntu: /usr/sbin).
#: Defined here and read from here at each L{launch}: programs and tests
#: set C{foolscap_sidetls.i2p.I2PD_SEARCH_DIRS}.
I2PD_SEARCH_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
#: The configuration directories L{local_i2p} tries, in i2pd's own order
#: (plus Debian's /etc/i2pd); read from here at each call.
I2PD_CONFIG_DIRS: tuple[str, ...] = ("~/.i2pd", "/var/lib/i2pd", "/etc/i2pd")

# Names outside __all__ (the timeouts, the default SAM address, log,
# _parse_hint) stay reachable here as they were before the split: the
# configuration reader, tests and tools read them.
from ._errors import I2PConfigError, I2PDFailed, I2PDNotFound  # noqa: E402
from ._handler import I2PHandler, default, launch, local_i2p, sam_endpoint  # noqa: E402
from ._keys import address_of  # noqa: E402
from ._keys import parse_hint as _parse_hint  # noqa: E402,F401
from ._launch import LAUNCH_TIMEOUT, RESEED_TIMEOUT  # noqa: E402,F401
from ._listen import listen  # noqa: E402
from ._local import DEFAULT_SAM_HOST, DEFAULT_SAM_PORT  # noqa: E402,F401
from .sam import (  # noqa: E402,F401
    HELLO_TIMEOUT,
    SESSION_TIMEOUT,
    I2PAddress,
    I2PError,
    SAMConnectionLost,
    SAMRefused,
    SAMTimeout,
    SAMUnreachable,
)
from .sam._util import log  # noqa: E402,F401

__all__ = [
    "I2PAddress",
    "I2PConfigError",
    "I2PDFailed",
    "I2PDNotFound",
    "I2PError",
    "I2PHandler",
    "SAMConnectionLost",
    "SAMRefused",
    "SAMTimeout",
    "SAMUnreachable",
    "address_of",
    "default",
    "launch",
    "listen",
    "local_i2p",
    "sam_endpoint",
]
