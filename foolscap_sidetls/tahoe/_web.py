"""
Tahoe-LAFS's HTTPS storage client over the node's own tor handler.

Tahoe 1.19 and 1.20 dial HTTPS storage servers over Tor by asking the tor
provider C{get_tor_instance(reactor)} for a txtorcon C{Tor} and calling
its C{web_agent(pool=..., tls_context_factory=...)}
(C{allmydata.storage.http_client.StorageClientFactory._create_agent}).
Answered by Tahoe's own provider, that is a second way to tor beside this
project's handler: with C{[tor] launch = true} a second tor process, with
C{[tor] control.port} a second control connection that reads SocksPort
the txtorcon way.  L{TorWeb} answers the same two calls with agents whose
every connection is dialed by the node's own L{foolscap_sidetls.tor}
handler: the tor it launched or the one at control.port, its bootstrap
wait, its backoff, its SOCKS error messages.

Each connection is the handler's sidetls dialer (the TLS client, as a
dialer is), and the agent's TLS is started on it with Tahoe's pinning
policy through the dialer's C{startTLS} -- the one TLS layer, on the side
the role says, bounded by the dialer's handshake timeout, and after the
handshake an ordinary established connection.
"""

from __future__ import annotations

from typing import Any, Optional

from foolscap.ipb import IConnectionHintHandler
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

__all__ = ["TorWeb"]

log = Logger(namespace="foolscap_sidetls.tahoe")


class _TLSFirst(ProtocolWrapper):
    """Starts the agent's TLS on the sidetls dialer before the agent's protocol speaks."""

    factory: "_TLSFirstFactory"

    def makeConnection(self, transport: Any) -> None:
        # The dialer's startTLS: a TLS client whatever the socket is, with
        # Tahoe's pinning policy; the dialer leaves its negotiation limits
        # once the handshake is done.
        transport.startTLS(self.factory.creator)
        ProtocolWrapper.makeConnection(self, transport)


class _TLSFirstFactory(WrappingFactory):
    protocol = _TLSFirst

    def __init__(self, wrapped: IProtocolFactory, creator: Any) -> None:
        WrappingFactory.__init__(self, wrapped)  # type: ignore[arg-type]
        self.creator = creator


@implementer(IStreamClientEndpoint)
class _ThroughHandler:
    """HOST:PORT through a Foolscap hint handler's dialer, with TLS started on it."""

    def __init__(self, handler: IConnectionHintHandler, reactor: Any, host: str, port: int, creator: Any) -> None:
        self._handler = handler
        self._reactor = reactor
        self._hint = "tor:%s:%d" % (host, port)
        self._creator = creator

    def __repr__(self) -> str:
        return "<HTTPS to %s via %r>" % (self._hint[4:], self._handler)

    def _status(self, status: str) -> None:
        log.debug("HTTPS storage connection to {where}: {status}", where=self._hint[4:], status=status)

    def connect(self, factory: IProtocolFactory) -> "Deferred[IProtocol]":
        d: Deferred = self._handler.hint_to_endpoint(self._hint, self._reactor, self._status)

        def dial(made: tuple[IStreamClientEndpoint, str]) -> Deferred:
            return made[0].connect(_TLSFirstFactory(factory, self._creator))

        # The dialer fires with our wrapper: the agent wants its own protocol.
        return d.addCallback(dial).addCallback(lambda wrapper: wrapper.wrappedProtocol)


@implementer(IAgentEndpointFactory)
class _EndpointFactory:
    def __init__(self, handler: IConnectionHintHandler, reactor: Any, policy: IPolicyForHTTPS) -> None:
        self._handler = handler
        self._reactor = reactor
        self._policy = policy

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        if uri.scheme != b"https":
            raise ValueError(
                "foolscap-sidetls tahoe: the storage client's agent over tor speaks https only (Tahoe's HTTPS "
                "storage protocol), got %r" % (uri.toBytes(),)
            )
        host = uri.host.decode("ascii")
        return _ThroughHandler(
            self._handler, self._reactor, host, uri.port, self._policy.creatorForNetloc(uri.host, uri.port)
        )


class TorWeb:
    """
    What C{get_tor_instance} fires with under the launcher: the part of
    txtorcon's C{Tor} that Tahoe's HTTPS storage client uses
    (C{web_agent}), served by the node's sidetls tor handler.

    @ivar handler: the node's tor hint handler (the one its Tubs dial with).
    """

    def __init__(self, handler: IConnectionHintHandler, reactor: Any) -> None:
        if not IConnectionHintHandler.providedBy(handler):
            raise TypeError("TorWeb needs a Foolscap connection-hint handler, got %r" % (handler,))
        self.handler = handler
        self._reactor = reactor

    def __repr__(self) -> str:
        return "<foolscap-sidetls tahoe: HTTPS over %r>" % (self.handler,)

    def web_agent(
        self,
        pool: Optional[HTTPConnectionPool] = None,
        tls_context_factory: Optional[IPolicyForHTTPS] = None,
    ) -> IAgent:
        """
        An agent whose HTTPS connections go through the node's tor handler
        (as txtorcon's C{Tor.web_agent}, whose arguments these are;
        C{tls_context_factory} defaults to Twisted's browser-like policy).
        """
        policy = BrowserLikePolicyForHTTPS() if tls_context_factory is None else tls_context_factory
        return Agent.usingEndpointFactory(
            self._reactor, _EndpointFactory(self.handler, self._reactor, policy), pool=pool
        )

