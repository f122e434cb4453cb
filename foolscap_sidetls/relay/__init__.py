"""
A relay for Tubs that cannot be dialed (behind NAT, without a listening
socket), with end-to-end TLS the relay cannot read: Foolscap ticket 46,
"option 4" of Brian Warner's relay designs.

Who dials whom, and who is the TLS server::

    dialer Tub ---tcp---> relay <---tcp--- hidden Tub
                 (1)              (2) control, (3) streams

    (1) the dialer's own Foolscap connection: GET /id/<tubid>, then TLS with
        the dialer as client and the *hidden Tub* as server; the relay
        copies the ciphertext.
    (2) the hidden Tub's control channel: TLS with the hidden Tub as client,
        presenting its Tub certificate (proving its TubID), the relay as
        server.
    (3) one stream per relayed connection, dialed by the hidden Tub when
        the relay asks; it carries (1).

On the relay::

    from foolscap_sidetls import relay
    server = relay.RelayServer(cert_file="relay.pem")
    server.listen(serverFromString(reactor, "tcp:7000"))
    print(server.url("tcp:relay.example.org:7000"))   # relay://<id>@tcp:...

On the hidden Tub::

    tub.listenOn(relay.listener(relay_url, tub))
    tub.setLocation(*relay.location_hints(relay_url))

Dialers need nothing: the hidden Tub's FURL has an ordinary tcp hint for
the relay, and the relay routes on the TubID in Foolscap's plaintext
request, so a stock Foolscap dialer gets through.

The package, one layer a module: L{_wire} (the bytes each connection
says, the control lines), L{_url} (relay URLs and hints), the hidden Tub's
side in C{_client*} (L{_client}: the endpoint and L{listener}) and the
relay's in C{_server*} (L{_server}: L{RelayServer}), and what both ends
share (L{_plumbing}; their argument checks are L{foolscap_sidetls._limits}').
"""

from ._addresses import RelayAddress, RelayedAddress
from ._client import RelayListenerEndpoint, listener, location_hints
from ._client_states import CONNECTING, REGISTERED, STOPPED, WAITING
from ._server import RelayServer
from ._server_limits import RelayLimits
from ._url import parse_relay_url
from ._wire import (
    RelayError,
    RelayIdentityError,
    RelayRefusedError,
    RelayTimeoutError,
    certificate_id,
)


__all__ = [
    "CONNECTING",
    "REGISTERED",
    "STOPPED",
    "WAITING",
    "RelayAddress",
    "RelayError",
    "RelayIdentityError",
    "RelayLimits",
    "RelayListenerEndpoint",
    "RelayRefusedError",
    "RelayServer",
    "RelayTimeoutError",
    "RelayedAddress",
    "certificate_id",
    "listener",
    "location_hints",
    "parse_relay_url",
]
