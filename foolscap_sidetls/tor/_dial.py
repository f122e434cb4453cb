"""
Dialing through tor: reading C{tor:}/C{tcp:} hints strictly, and the
client endpoint that gets the handler's tor ready, then connects through
its SOCKS port and explains SOCKS failures in words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import txtorcon
from txtorcon.socks import SocksError
from foolscap.connections import tor as _foolscap_tor
from foolscap.ipb import InvalidHintError
from zope.interface import implementer
from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint

from .. import _hints
from ._common import _reason
from ._errors import TorError

if TYPE_CHECKING:
    from ._handler import TorHandler

#: Tor's SOCKS5 extended error codes (SocksPort flag ExtendedErrors).
_ONION_SOCKS_ERRORS = {
    0xF0: "tor found no descriptor for this onion service (is the service running and published?)",
    0xF1: "the onion service's descriptor is invalid",
    0xF2: "introduction to the onion service failed",
    0xF3: "the rendezvous with the onion service failed",
    0xF4: "the onion service requires client authorization",
    0xF5: "tor's client authorization for this onion service was rejected",
    0xF6: "this is not a valid onion address",
    0xF7: "introduction to the onion service timed out",
}


_HINT_EXPECTED = (
    "'tor:HOST:PORT' or 'tcp:HOST:PORT', HOST being a DNS name such as an "
    ".onion address, or a public IPv4 address"
)


def _parse_hint(hint: str) -> tuple[str, int]:
    """
    C{(host, port)} from a C{tor:}/C{tcp:} hint: Foolscap's syntax and its
    refusal of non-public numeric addresses (no exit could reach them), read
    strictly -- ASCII only, a port from 1 to 65535, no empty DNS labels, an
    onion host a valid v3 address (version and checksum) -- with a message
    that says what is wrong.
    """
    prefix = "unrecognized TCP/Tor hint"
    text = _hints.check_characters(prefix, hint, _HINT_EXPECTED)
    kind, colon, rest = text.partition(":")
    host, colon2, port_text = rest.rpartition(":")
    if not colon or not colon2:
        raise _hints.invalid(prefix, text, "it is not TYPE:HOST:PORT", _HINT_EXPECTED)
    port = _hints.parse_port(prefix, text, port_text, _HINT_EXPECTED)
    _hints.check_dns_name(prefix, text, host, _HINT_EXPECTED)
    if not _foolscap_tor.HINT_RE.search(text):  # never looser than Foolscap
        raise _hints.invalid(prefix, text, "Foolscap's tor handler does not accept it", _HINT_EXPECTED)
    # Tor would refuse a mistyped onion only after the SOCKS request; say so here.
    _hints.check_onion(prefix, text, host, _HINT_EXPECTED)
    if _foolscap_tor.is_non_public_numeric_address(host):
        raise InvalidHintError(
            "ignoring non-Tor-able ipaddr %s in hint %r: no Tor exit can reach a "
            "private, loopback or reserved address" % (host, text)
        )
    return host, port


@implementer(IStreamClientEndpoint)
class _TorClient:
    """
    Connects to HOST:PORT through tor's SOCKS port, getting the handler's
    tor ready first (launch, control connection, bootstrap) and reporting
    each step through Foolscap's C{update_status}.

    Tor trouble is raised from C{connect}, not from C{hint_to_endpoint}:
    Foolscap drops a hint whose handler fails and reports only
    C{NoLocationHintsError}, while a failed connect reaches the
    C{getReference} errback with our explanation.
    """

    def __init__(
        self,
        handler: "TorHandler",
        host: str,
        port: int,
        reactor: Any,
        update_status: Callable[[str], None],
    ) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._reactor = reactor
        self._update_status = update_status
        self._target = "%s:%d" % (host, port)

    def __repr__(self) -> str:
        return "<tor connection to %s via %s>" % (self._target, self._handler._detail())

    def connect(self, factory: IProtocolFactory) -> Deferred:
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> Any:
        socks, socks_where = await self._handler._socks_endpoint(self._reactor, self._update_status)
        if self._handler._shared is not None:
            self._update_status(
                "connecting to %s through tor (SOCKS %s)" % (self._target, socks_where)
            )
        candidates: list[IStreamClientEndpoint]
        if socks is None:  # default_socks(): the system tor, else Tor Browser's
            candidates = [TCP4ClientEndpoint(self._reactor, "127.0.0.1", p) for p in (9050, 9150)]
        else:
            candidates = [socks]
        for i, candidate in enumerate(candidates):
            tracked = _Tracked(candidate)
            via = txtorcon.TorClientEndpoint(
                self._host, self._port, socks_endpoint=tracked, reactor=self._reactor
            )
            try:
                return await via.connect(factory)
            except (CancelledError, error.ConnectingCancelledError):
                # Foolscap gave up (timeout, or another hint won): txtorcon
                # would leave the half-done SOCKS connection open.
                tracked.abort()
                raise
            except error.ConnectError as e:
                if i + 1 < len(candidates):
                    continue
                raise TorError(
                    "could not reach tor's SOCKS port at %s (%s); is tor running?"
                    % (socks_where, _reason(e))
                ) from None
            except SocksError as e:
                why = (
                    _ONION_SOCKS_ERRORS.get(getattr(e, "code", None) or 0)
                    or str(e).strip()
                    or repr(e)
                )
                raise TorError("tor could not connect to %s: %s" % (self._target, why)) from None
        raise AssertionError("unreachable")


@implementer(IStreamClientEndpoint)
class _Tracked:
    """Remembers the connections an endpoint made, to abort them."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint
        self._protocols: list[Any] = []

    def connect(self, factory: IProtocolFactory) -> Deferred:
        return self._endpoint.connect(factory).addCallback(self._made)

    def _made(self, protocol: Any) -> Any:
        self._protocols.append(protocol)
        return protocol

    def abort(self) -> None:
        for protocol in self._protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abortConnection()
