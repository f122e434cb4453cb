"""
Tahoe-LAFS's HTTPS storage client over Tor under the launcher: what it
asks the tor provider (C{get_tor_instance}, then C{web_agent}) is answered
with the node's own sidetls tor handler, so a node launches one tor at
most and its agent dials through that tor's SOCKS port.

In memory: the fake tor control port of tests/tor (L{FakeTor}) and a
reactor that records spawned processes (L{ProcessReactor}), as the tor
tests use; no real tor.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from foolscap.ipb import IConnectionHintHandler
from OpenSSL import SSL
from hyperlink import DecodedURL
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool, ResponseNeverReceived, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from allmydata import client
from allmydata.storage.http_client import StorageClientFactory
from allmydata.storage.http_common import get_spki_hash

import foolscap_sidetls
from foolscap_sidetls import tor
from foolscap_sidetls.tahoe._web import TorWeb
from foolscap_sidetls.testing import MemoryNetwork

from .._support.tls import certificate
from ..tor.test_tor import ONION, FakeTor, ProcessReactor, Statuses, socks_connections
from ._support import launcher, node_dir

#: A storage server's NURL over Tor, as Tahoe announces it (hash and swissnum made up).
NURL = "pb+tor://%s@%s:3457/%s#v=1" % ("a" * 43, ONION, "s" * 32)

_LAUNCHED = (
    "[node]\ntub.port = disabled\ntub.location = disabled\n[connections]\ntcp = tor\n"
    "[tor]\nlaunch = true\ntor.executable = %s\n" % (sys.executable,)
)
_CONTROL = (
    "[node]\ntub.port = disabled\ntub.location = disabled\n[connections]\ntcp = tor\n"
    "[tor]\ncontrol.port = tcp:127.0.0.1:9051\n"
)


class StorageOverTorTests(SynchronousTestCase):
    def provider(self, text: str, clock: Any = reactor) -> Any:
        launcher(self)
        config = client.read_config(node_dir(self, text), "client.port")
        provider = client.create_tor_provider(clock, config)
        self.addCleanup(provider.networks.stopService)
        return provider

    def https_request(self, provider: Any, clock: Any) -> Any:
        """Tahoe's storage client, as its storage broker makes it for a pb+tor:// server, sends one request."""
        factory = StorageClientFactory({"tcp": "tor", "tor": "tor"}, provider)
        pool = HTTPConnectionPool(clock, persistent=False)
        made = Deferred.fromCoroutine(factory.create_storage_client(DecodedURL.from_text(NURL), clock, pool))
        request = made.addCallback(lambda storage: storage.request("GET", storage.relative_url("/storage/v1/version")))
        self.addCleanup(self.cancel, request)
        return request

    def cancel(self, request: Deferred) -> None:
        """Give up the request, as Tahoe's timeout would: nothing is left on the global reactor (treq's timer)."""
        from twisted.internet import reactor as global_reactor

        request.cancel()
        self.failureResultOf(request)
        self.assertEqual([c for c in global_reactor.getDelayedCalls() if "Deferred.cancel()" in repr(c)], [])

    def test_oneTorLaunchPerNode(self) -> None:
        """
        [tor] launch = true: a Foolscap dial and the HTTPS storage client
        share one launched tor (one process spawned), and the agent's
        connection goes to that tor's SOCKS port.  (Before: Tahoe's own
        provider launched a second tor for the storage client.)
        """
        clock = ProcessReactor()
        provider = self.provider(_LAUNCHED, clock)
        handler = provider.get_tor_handler()
        endpoint, _ = self.successResultOf(handler.hint_to_endpoint("tor:%s:3457" % (ONION,), clock, Statuses()))
        endpoint.connect(Factory.forProtocol(Protocol))
        self.assertEqual(len(clock.spawned), 1)
        # The launched tor writes its control port; the fake answers there.
        datadir = clock.spawned[0][4]
        with open(os.path.join(datadir, "sidetls-control-port"), "w") as f:
            f.write("PORT=127.0.0.1:9161\n")
        clock.advance(0.05)
        FakeTor(clock, port=9161).accept()
        self.assertEqual(len(socks_connections(clock)), 1)

        self.https_request(provider, clock)
        clock.advance(0.05)
        self.assertEqual((len(clock.spawned), len(socks_connections(clock))), (1, 2))
        self.assertEqual(
            [(host, port) for host, port, *_ in socks_connections(clock)], [("127.0.0.1", 9050)] * 2
        )

    def test_controlPortOnly(self) -> None:
        """
        [tor] control.port only: the storage client's agent uses the node's
        handler, whose control connection tells it the SOCKS port
        (SocksPort ADDRESS:PORT included): one control connection, no
        second one opened by txtorcon.
        """
        clock = ProcessReactor()
        provider = self.provider(_CONTROL, clock)
        fake = FakeTor(clock)
        fake.socks = '"127.0.0.1:19050"'
        request = self.https_request(provider, clock)
        fake.accept()
        self.assertEqual(len(fake.pending()), 0)
        self.assertEqual([(h, p) for h, p, *_ in socks_connections(clock, 19050)], [("127.0.0.1", 19050)])
        self.assertNoResult(request)

    def test_agentFromOurTor(self) -> None:
        """get_tor_instance fires with the node's tor handler wrapped for Tahoe's web_agent call."""
        provider = self.provider(_CONTROL)
        web = self.successResultOf(provider.get_tor_instance(reactor))
        self.assertIsInstance(web, TorWeb)
        self.assertIs(web.handler, provider.get_tor_handler())
        self.assertIsInstance(web.handler, tor.TorHandler)

    def test_torDisabled(self) -> None:
        """[tor] enabled = false: the storage client is told why, naming the file and the keys."""
        provider = self.provider(
            "[node]\ntub.port = disabled\ntub.location = disabled\n[tor]\nenabled = false\n"
        )
        failure = self.failureResultOf(provider.get_tor_instance(reactor), ValueError)
        self.assertIn("tahoe.cfg: Tahoe's HTTPS storage client needs tor here", str(failure.value))
        self.assertIn("([tor] enabled = false)", str(failure.value))


@implementer(IConnectionHintHandler)
class _MemoryHandler:
    """A hint handler whose every hint is dialed, by a sidetls dialer, to one in-memory server; hints recorded."""

    def __init__(self, net: MemoryNetwork) -> None:
        self._net = net
        self.hints: list[str] = []

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> Deferred:
        self.hints.append(hint)
        return succeed((foolscap_sidetls.dialer(self._net.client_endpoint("storage")), hint.split(":")[1]))


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello over " + request.getHeader(b"authorization").split(b" ")[0]


class HTTPSThroughHandlerTests(TestCase):
    """
    The agent TorWeb gives Tahoe's HTTPS storage client, end to end in
    memory: the connection is the handler's sidetls dialer, TLS is started
    on it as the client with Tahoe's SPKI pinning, the server is an HTTPS
    site.
    """

    def request(self, spki_hash: str) -> tuple[Deferred, _MemoryHandler]:
        net = MemoryNetwork()
        cert = certificate("storage-server")
        options = CertificateOptions(privateKey=cert.privateKey.original, certificate=cert.original)
        net.server_endpoint("storage").listen(TLSMemoryBIOFactory(options, False, Site(_Hello())))
        handler = _MemoryHandler(net)

        class Provider:
            def get_tor_instance(self, reactor: Any) -> Deferred:
                return succeed(TorWeb(handler, reactor))

        pool = HTTPConnectionPool(reactor, persistent=False)
        nurl = DecodedURL.from_text("pb+tor://%s@%s:3457/%s#v=1" % (spki_hash, ONION, "s" * 32))
        made = Deferred.fromCoroutine(
            StorageClientFactory({"tcp": "tor"}, Provider()).create_storage_client(nurl, reactor, pool)
        )
        d = made.addCallback(lambda storage: storage.request("GET", storage.relative_url("/storage/v1/version")))
        return d, handler

    def test_pinnedServer(self) -> None:
        """The server whose key the NURL pins answers; the handler was asked for tor:ONION:3457."""
        cert = certificate("storage-server")
        spki_hash = get_spki_hash(cert.original.to_cryptography()).decode("ascii")
        d, handler = self.request(spki_hash)
        d.addCallback(lambda response: readBody(response).addCallback(lambda body: (response.code, body)))
        d.addCallback(self.assertEqual, (200, b"hello over Tahoe-LAFS"))
        d.addCallback(lambda _: self.assertEqual(handler.hints, ["tor:%s:3457" % (ONION,)]))
        return d

    def test_otherServerRefused(self) -> None:
        """A server whose key is not the pinned one: the TLS handshake fails (Tahoe's pinning is in force)."""
        d, _ = self.request("b" * 43)
        self.assertFailure(d, ResponseNeverReceived)
        d.addCallback(lambda e: self.assertEqual([type(r.value) for r in e.reasons], [SSL.Error]))
        return d
