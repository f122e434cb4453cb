"""
foolscap_sidetls.tor against real tor daemons: a private Tor network on
127.0.0.1 (see _tornet.py), shared by the whole session.

The network has two client tors: C{server} (hosts the onion services in
most tests) and C{dialer}.  Tests are trial TestCases (Foolscap runs on the
global reactor); the session fixture reaches them through the autouse
fixture below, which sets C{self.net}.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from typing import Any, Callable

import pytest
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from foolscap.api import Referenceable, RemoteInterface, Tub
from foolscap.constraint import ByteStringConstraint
from foolscap.ipb import IConnectionHintHandler
from foolscap.schema import Any as AnyConstraint

from foolscap_sidetls import tor
from foolscap_sidetls._endpoints import ListenerEndpoint
from .._support.waiting import coroutine, until

MiB = 2**20
ONION_HINT = re.compile(r"^tor:([a-z2-7]{56})\.onion:(\d+)$")


@pytest.fixture(autouse=True)
def _network(request, tor_network):
    """Hand the session's private Tor network to the trial TestCase."""
    request.instance.net = tor_network


class RIEcho(RemoteInterface):
    def echo(data=ByteStringConstraint(2 * MiB)):
        return ByteStringConstraint(2 * MiB)

    def echo_back(peer=AnyConstraint(), data=ByteStringConstraint(2 * MiB)):
        """Ask C{peer} (the caller's object) to echo C{data}: a call the other way."""
        return ByteStringConstraint(2 * MiB)


@implementer(RIEcho)
class Echo(Referenceable):
    def __init__(self) -> None:
        self.peers: list[Any] = []
        self.peer_transports: list[Any] = []

    def remote_echo(self, data):
        return data

    def remote_echo_back(self, peer, data):
        self.peers.append(peer)
        self.peer_transports.append(peer.tracker.broker.transport)
        return peer.callRemote("echo", data)


def _closed(protocol: Any) -> Deferred:
    """Close a txtorcon control connection; fires once it is closed."""
    gone = protocol.when_disconnected()
    gone.addErrback(lambda _: None)
    protocol.transport.loseConnection()
    return gone


@implementer(IStreamServerEndpoint)
class _Recording:
    """Remembers the listening port an endpoint gave (for txtorcon's onion: endpoint)."""

    def __init__(self, endpoint: Any) -> None:
        self._endpoint = endpoint
        self.port: Deferred = Deferred()

    def listen(self, factory: Any) -> Deferred:
        d = self._endpoint.listen(factory)

        def got(port: Any) -> Any:
            self.port.callback(port)
            return port

        return d.addCallback(got)


@implementer(IConnectionHintHandler)
class _RecordingStatus:
    """A hint handler that remembers every status its inner handler reports."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.statuses: list[str] = []
        self.times: list[tuple[float, str]] = []

    def hint_to_endpoint(
        self, hint: str, reactor: Any, update_status: Callable[[str], None]
    ) -> Any:
        def record(status: str) -> None:
            self.statuses.append(status)
            self.times.append((round(reactor.seconds(), 2), status))
            update_status(status)

        return self.inner.hint_to_endpoint(hint, reactor, record)

    def describe(self) -> str:
        return self.inner.describe()


class TorTestCase(TestCase):
    timeout = 120
    net: Any

    def makeTub(self) -> Tub:
        tub = Tub()
        tub.setOption("expose-remote-exception-types", False)
        tub._test_options = dict(tub._test_options, connect_timeout=45)
        tub.startService()
        self.addCleanup(self._stop, tub)
        return tub

    @staticmethod
    def _stop(tub: Tub) -> Any:
        if tub.running:
            return tub.stopService()
        return None

    def control(self, node: Any) -> tor.TorHandler:
        handler = tor.control_endpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", node.control_port))
        self.addCleanup(handler.stop)
        return handler

    def dialingTub(self, handler: Any) -> Tub:
        tub = self.makeTub()
        tub.removeAllConnectionHintHandlers()
        tub.addConnectionHintHandler("tor", handler)
        return tub

    async def serve(self, handler: Any, **kwargs: Any) -> tuple[Tub, str, Echo]:
        """A Tub listening on a new onion; its FURL and object."""
        tub = self.makeTub()
        hint = await tor.listen(tub, handler, **kwargs)
        self.assertRegex(hint, ONION_HINT)
        tub.setLocation(hint)
        echo = Echo()
        return tub, tub.registerReference(echo, "echo"), echo

    @staticmethod
    def hint(furl: str) -> str:
        return furl.split("@")[1].split("/")[0]

    async def eventually(
        self,
        check: Callable[[], Any],
        timeout: float,
        what: str,
        state: Callable[[], Any] = lambda: None,
    ) -> Any:
        return await until(self, check, timeout, what, state, interval=0.1)


class OnionRoundTrips(TorTestCase):
    async def roundtrip(self, listen_node: Any, dial_node: Any) -> None:
        _, furl, echo = await self.serve(self.control(listen_node))
        dialer_handler = self.control(dial_node)
        rref = await self.dialingTub(dialer_handler).getReference(furl)

        mine = rref.tracker.broker.transport
        self.assertEqual((mine.role, mine.tlsSide), ("dialer", "client"))
        self.assertIn(
            "sidetls+tor (control port 127.0.0.1:%d" % dial_node.control_port,
            dialer_handler.describe(),
        )

        payload = os.urandom(MiB)
        self.assertEqual(await rref.callRemote("echo", payload), payload)
        # and a 1 MiB call from the listener back to the dialer
        self.assertEqual(await rref.callRemote("echo_back", Echo(), payload[::-1]), payload[::-1])
        theirs = echo.peer_transports[0]
        self.assertEqual((theirs.role, theirs.tlsSide), ("listener", "server"))

    @coroutine
    async def test_dialer_calls_onion_on_server_tor(self):
        await self.roundtrip(self.net.server, self.net.dialer)

    @coroutine
    async def test_reverse_direction(self):
        await self.roundtrip(self.net.dialer, self.net.server)


class Launch(TorTestCase):
    @coroutine
    async def test_launched_tor_dials_and_listens(self):
        """
        One launched tor (joined to the private network via extra_config)
        serves both a dial and a listen; its progress shows in the status.
        """
        _, furl, _ = await self.serve(self.control(self.net.server))
        launched = tor.launch(extra_config=self.net.client_config())
        self.addCleanup(launched.stop)
        self.assertEqual(launched.describe(), "sidetls+tor (launched tor)")

        recorded = _RecordingStatus(launched)
        rref = await self.dialingTub(recorded).getReference(furl)
        statuses = recorded.statuses
        self.assertEqual(statuses[0], "launching tor")
        self.assertTrue(
            any(
                re.match(r"^connecting to tor control port 127\.0\.0\.1:\d+$", s) for s in statuses
            ),
            statuses,
        )
        self.assertTrue(
            any(re.match(r"^waiting for tor bootstrap \(\d+%: .+\)$", s) for s in statuses),
            statuses,
        )
        self.assertRegex(
            statuses[-1],
            r"^connecting to [a-z2-7]{56}\.onion:3457 through tor \(SOCKS 127\.0\.0\.1:\d+\)$",
        )
        described = launched.describe()
        pid = int(re.search(r"pid (\d+)", described).group(1))
        self.assertRegex(
            described, r"^sidetls\+tor \(launched tor, pid \d+, SOCKS 127\.0\.0\.1:\d+\)$"
        )

        payload = os.urandom(MiB)
        self.assertEqual(await rref.callRemote("echo", payload), payload)

        # The same tor publishes an onion service: no second process.
        _, furl2, _ = await self.serve(launched)
        self.assertEqual(launched.describe(), described)
        rref2 = await self.dialingTub(self.control(self.net.dialer)).getReference(furl2)
        self.assertEqual(await rref2.callRemote("echo", b"launched"), b"launched")

        for tub in (rref.tracker.broker.tub, rref2.tracker.broker.tub):
            await tub.stopService()
        await launched.stop()
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)
        self.assertEqual(launched.describe(), "sidetls+tor (launched tor)")


class OnionLifecycle(TorTestCase):
    @coroutine
    async def test_private_key_file_keeps_the_address(self):
        handler = self.control(self.net.server)
        keyfile = os.path.join(tempfile.mkdtemp(prefix="sidetls-onion-"), "onion.key")
        self.addCleanup(shutil.rmtree, os.path.dirname(keyfile), True)
        first, furl1, _ = await self.serve(handler, private_key_file=keyfile)
        self.assertEqual(stat.S_IMODE(os.stat(keyfile).st_mode), 0o600)
        with open(keyfile) as f:
            self.assertRegex(f.read(), r"^ED25519-V3:[A-Za-z0-9+/=]{88}\n$")
        await first.stopService()

        _, furl, _ = await self.serve(handler, private_key_file=keyfile)
        self.assertEqual(self.hint(furl1), self.hint(furl))
        rref = await self.dialingTub(self.control(self.net.dialer)).getReference(furl)
        self.assertEqual(await rref.callRemote("echo", b"same address"), b"same address")

    @coroutine
    async def test_onion_removed_when_tub_stops(self):
        handler = self.control(self.net.server)
        tub, furl, _ = await self.serve(handler)
        service_id = ONION_HINT.match(self.hint(furl)).group(1)

        async def current() -> str:
            info = await handler._shared.session.protocol.get_info("onions/current")
            return info["onions/current"]

        self.assertIn(service_id, await current())
        await tub.stopService()
        self.assertNotIn(service_id, await current())

        # From the network's side: a fresh Tub cannot reach it any more
        # (tor gives up on a vanished service only after its own SOCKS
        # timeout, so Foolscap's timeout is shortened here).
        late = self.dialingTub(self.control(self.net.dialer))
        late._test_options = dict(late._test_options, connect_timeout=10)
        try:
            await late.getReference(furl)
        except tor.TorError as e:
            self.assertIn("tor could not connect to %s.onion:3457: " % service_id, str(e))
        except Exception:
            pass  # e.g. Foolscap's own connection timeout
        else:
            self.fail("the onion service was still reachable after its Tub stopped")

    @coroutine
    async def test_own_control_connection_closed_when_tub_stops(self):
        """With a plain control endpoint, listen's own connection goes with the Tub."""
        ep = TCP4ClientEndpoint(reactor, "127.0.0.1", self.net.server.control_port)
        tub, furl, _ = await self.serve(ep)
        (service,) = [s for s in tub if type(s).__name__ == "_OnionService"]
        protocol = service.session.protocol
        self.assertTrue(service.session.connected)
        await tub.stopService()
        self.assertFalse(service.session.connected)
        self.assertFalse(protocol.transport.connected)


class Failures(TorTestCase):
    @coroutine
    async def test_tor_killed_then_back(self):
        """
        Killing the tor a Reconnector dials through gives a clear error;
        once it runs again (same ports), the Reconnector reconnects.
        """
        net = self.net
        _, furl, echo = await self.serve(self.control(net.server))
        handler = self.control(net.dialer)
        tub = self.dialingTub(handler)
        connected: list[Any] = []
        reconnector = tub.connectTo(furl, connected.append)
        self.addCleanup(reconnector.stopConnecting)

        def state() -> Any:
            info = reconnector.getReconnectionInfo()
            statuses = info.connectionInfo.connectorStatuses if info.connectionInfo else None
            return (info.state, statuses, reconnector.getLastFailure())

        await self.eventually(lambda: connected, 60, "the first connection", state)

        # The listening side's end of this connection.  Tor may keep its
        # stream open for minutes after the dialing tor died; Foolscap then
        # replaces it when the new connection arrives, and the replaced TLS
        # connection waits for a close_notify that never comes.  That is
        # the dead peer's doing, not this test's subject: abort it at the end.
        await connected[0].callRemote("echo_back", Echo(), b"hello")
        socket = echo.peer_transports[0].transport  # the TCP connection from tor
        self.addCleanup(lambda: socket.abortConnection() if socket.connected else None)

        lost: list[bool] = []
        connected[0].notifyOnDisconnect(lambda: lost.append(True))
        self.addCleanup(lambda: threads.deferToThread(net.restart_client, net.dialer))
        net.kill_client(net.dialer)
        await self.eventually(lambda: lost, 30, "the connection to drop", state)

        failure = await self.eventually(
            reconnector.getLastFailure, 30, "a failed reconnection", state
        )
        self.assertEqual(
            str(failure.value).split(". ")[0],
            "could not connect to tor's control port at 127.0.0.1:%d (connection refused)"
            % net.dialer.control_port,
        )
        status = reconnector.getReconnectionInfo().connectionInfo.connectorStatuses
        self.assertIn(
            "failed to connect: could not connect to tor's control port", list(status.values())[0]
        )

        # A SOCKS-only handler says the same in its own words.
        socks = tor.socks_endpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", net.dialer.socks_port))
        try:
            await self.dialingTub(socks).getReference(furl)
        except tor.TorError as e:
            self.assertEqual(
                str(e),
                "could not reach tor's SOCKS port at 127.0.0.1:%d (connection refused); is tor running?"
                % net.dialer.socks_port,
            )
        else:
            self.fail("connected through a dead tor")

        net.dialer.start()
        await self.eventually(lambda: len(connected) > 1, 60, "the Reconnector to reconnect", state)
        self.assertEqual(await connected[-1].callRemote("echo", b"back"), b"back")


class EndpointStrings(TorTestCase):
    @coroutine
    async def test_sidetls_onion_server_string(self):
        """serverFromString(reactor, "sidetls:onion:...") wraps txtorcon's onion endpoint."""
        port = 3458
        ep = serverFromString(
            reactor, "sidetls:onion:%d:controlPort=%d" % (port, self.net.server.control_port)
        )
        self.assertIsInstance(ep, ListenerEndpoint)
        recording = _Recording(ep)
        tub = self.makeTub()
        tub.listenOn(recording)
        listening = await recording.port
        # txtorcon's onion: endpoint keeps its control connection (and so
        # the ephemeral onion) until the process exits; close it here.
        protocol = ep._endpoint._config.protocol
        self.addCleanup(lambda: _closed(protocol))
        tub.setLocation("tor:%s:%d" % (listening.getHost().onion_uri, port))
        furl = tub.registerReference(Echo(), "echo")
        rref = await self.dialingTub(self.control(self.net.dialer)).getReference(furl)
        self.assertEqual(await rref.callRemote("echo", b"onion:"), b"onion:")
