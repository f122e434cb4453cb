"""
foolscap_sidetls.i2p against real i2pd routers on 127.0.0.1 (see
_i2pnet.py): the session's router (fixture C{i2p_router}), one launched by
L{i2p.launch}, and one a test kills and restarts.

Every SAM session costs ~20 s on i2pd, so each test opens the sessions it
needs in parallel (L{I2PHandler.prepare} alongside L{i2p.listen}).  Tests
are trial TestCases (Foolscap runs on the global reactor); the session
fixture reaches them through the autouse fixture below.  Each test checks
at its end that no socket to a SAM bridge is left open.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from foolscap.api import Referenceable, RemoteInterface, Tub
from foolscap.constraint import ByteStringConstraint
from txi2p.address import I2PTunnelTransport
from txi2p.sam import base as txi2p_base
from txi2p.sam import session as txi2p_session
from txi2p.sam.endpoints import SAMI2PStreamServerEndpoint

import foolscap_sidetls
from foolscap_sidetls import TLSSideError, i2p
from foolscap_sidetls._files import write_private
from .._support.waiting import coroutine, until

from . import _i2pnet

MiB = 2**20
SESSION = _i2pnet.SESSION_OPTIONS

#: Timings measured by the tests, printed at the end of each (pytest -s).
TIMINGS: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _router(request, i2p_router):
    """Hand the session's private I2P router to the trial TestCase."""
    request.instance.router = i2p_router


class RIBulk(RemoteInterface):
    def echo(data=ByteStringConstraint(2 * MiB)):
        return ByteStringConstraint(2 * MiB)


@implementer(RIBulk)
class Bulk(Referenceable):
    def remote_echo(self, data):
        return data[::-1]


def sam_sockets(port: int) -> list[Any]:
    """Our open TCP connections to a SAM bridge on 127.0.0.1:C{port}."""
    found = []
    for selectable in set(reactor.getReaders()) | set(reactor.getWriters()):
        try:
            peer = selectable.getPeer()
        except Exception:
            continue
        if getattr(peer, "port", None) == port and getattr(peer, "host", None) == "127.0.0.1":
            found.append(selectable)
    return found


class I2PTestCase(TestCase):
    timeout = 240
    router: _i2pnet.I2PRouter

    def setUp(self) -> None:
        if self.router.ready_after is not None:
            TIMINGS["session router: SAM answering after start"] = self.router.ready_after
        self.sam_ports: set[int] = {self.router.sam_port}
        self.started = time.monotonic()
        # Added first, so it runs after every other cleanup.
        self.addCleanup(self._nothing_left)

    async def _check_nothing_left(self) -> None:
        for port in self.sam_ports:
            await self.eventually(lambda: not sam_sockets(port), 10, "our sockets to SAM port %d to close" % port)

    def _nothing_left(self) -> Deferred:
        d = Deferred.fromCoroutine(self._check_nothing_left())

        def report(result: Any) -> Any:
            took = time.monotonic() - self.started
            TIMINGS["test " + self.id().rsplit(".", 1)[-1]] = took
            return result

        return d.addBoth(report)

    def mktemp(self) -> str:
        """A fresh path in a temporary directory (trial's mktemp writes under the cwd)."""
        directory = tempfile.mkdtemp(prefix="sidetls-i2p-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        return os.path.join(directory, "temp")

    def makeTub(self) -> Tub:
        tub = Tub()
        tub.setOption("expose-remote-exception-types", False)
        tub.startService()
        self.addCleanup(self._stop, tub)
        return tub

    @staticmethod
    def _stop(tub: Tub) -> Any:
        if tub.running:
            return tub.stopService()
        return None

    def sam(self, router: Any = None) -> Any:
        router = router or self.router
        self.sam_ports.add(router.sam_port)
        return clientFromString(reactor, router.sam_description)

    def dialer(self, tub: Tub, router: Any = None) -> i2p.I2PHandler:
        """Tub dials i2p: hints through its own handler (stopped with the Tub)."""
        handler = i2p.sam_endpoint(self.sam(router), options=SESSION)
        tub.addConnectionHintHandler("i2p", handler)
        handler.setServiceParent(tub)
        return handler

    def keyfile(self, name: str) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        return os.path.join(directory, name)

    async def eventually(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        return await until(self, check, timeout, what)

    async def disconnect(self, rref: Any, *tubs: Tub) -> None:
        """Drop rref's connection and wait until every Tub has forgotten it."""
        gone: Deferred = Deferred()
        rref.notifyOnDisconnect(gone.callback, None)
        rref.tracker.broker.transport.loseConnection()
        await gone
        await self.eventually(lambda: all(not t.brokers for t in tubs), 30, "both Tubs to see the disconnection")

    @staticmethod
    def hint(furl: str) -> str:
        return furl.split("@")[1].split("/")[0]


class TubToTub(I2PTestCase):
    @coroutine
    async def test_calls_both_ways_1MiB(self):
        """
        Two Tubs, each listening on I2P (sidetls listener) and dialing
        through its own handler: A dials B, then B dials A, 1 MiB each way.
        """
        a, b = self.makeTub(), self.makeTub()
        ha, hb = self.dialer(a), self.dialer(b)
        self.assertNotEqual(ha.dial_nickname, hb.dial_nickname)
        t0 = time.monotonic()
        hint_a, hint_b, _, _ = await defer.gatherResults(
            [
                i2p.listen(a, ha, self.keyfile("a.key")),
                i2p.listen(b, hb, self.keyfile("b.key")),
                ha.prepare(),
                hb.prepare(),
            ],
            consumeErrors=True,
        )
        TIMINGS["4 sessions in parallel"] = time.monotonic() - t0
        self.assertRegex(hint_a, r"^i2p:[a-z2-7]{52}\.b32\.i2p$")
        a.setLocation(hint_a)
        b.setLocation(hint_b)
        furl_a = a.registerReference(Bulk())
        furl_b = b.registerReference(Bulk())
        payload = os.urandom(MiB)

        rref = await a.getReference(furl_b)
        self.assertEqual(rref.getConnectionInfo().winningHint, hint_b)
        transport = rref.tracker.broker.transport
        self.assertEqual((transport.role, transport.tlsSide), ("dialer", "client"))
        t0 = time.monotonic()
        self.assertEqual(await rref.callRemote("echo", payload), payload[::-1])
        TIMINGS["1 MiB each way, A->B"] = time.monotonic() - t0
        await self.disconnect(rref, a, b)

        rref = await b.getReference(furl_a)
        self.assertEqual(rref.getConnectionInfo().winningHint, hint_a)
        self.assertEqual(rref.tracker.broker.transport.role, "dialer")
        self.assertEqual(await rref.callRemote("echo", payload[::-1]), payload)
        # One dialing and one listening session per Tub, nothing more.
        self.assertEqual((ha.sessions_created, hb.sessions_created), (2, 2))


class TxI2PListeners(I2PTestCase):
    @coroutine
    async def test_invertTLS_unused_and_stock_fails(self):
        """
        Two Tubs listening through txi2p's SAM server endpoint: one wrapped
        by L{foolscap_sidetls.listener} (C{sidetls:i2p:} strings use this
        project's own SAM client, so txi2p's endpoint is wrapped directly) with
        txi2p's tunnel transport C{startTLS} booby-trapped, which works;
        one stock Foolscap listener with C{invertTLS} disabled, where both
        ends send a ClientHello.
        """
        maker = i2p.sam_endpoint(self.sam())
        key_s, key_k = self.keyfile("s.key"), self.keyfile("k.key")
        try:
            for path in (key_s, key_k):
                write_private(path, await maker.new_destination_key())
        finally:
            await maker.stop()
        addr_s, addr_k = i2p.address_of(key_s), i2p.address_of(key_k)
        trapped: list[Any] = []

        class Controlled(I2PTunnelTransport):
            """txi2p's tunnel transport, per listener: startTLS raises, or invertTLS is off."""

            def __init__(self, wrapped: Any, local: Any, peer: Any = None, invertTLS: bool = False) -> None:
                host = getattr(local, "host", None)
                I2PTunnelTransport.__init__(self, wrapped, local, peer, invertTLS if host != addr_k else False)
                if host == addr_s:

                    def startTLS(ctx: Any, normal: bool = True) -> None:
                        trapped.append(ctx)
                        raise AssertionError("txi2p's startTLS (invertTLS) was used")

                    self.startTLS = startTLS

        self.patch(txi2p_base, "I2PTunnelTransport", Controlled)

        nick_s, nick_k = "sidetls-test-s-%d" % os.getpid(), "sidetls-test-k-%d" % os.getpid()
        tub_s, tub_k, tub_d = self.makeTub(), self.makeTub(), self.makeTub()
        listener_s = tub_s.listenOn(foolscap_sidetls.listener(
            SAMI2PStreamServerEndpoint.new(self.sam(), key_s, nickname=nick_s, options=dict(SESSION))
        ))
        endpoint_k = SAMI2PStreamServerEndpoint.new(self.sam(), key_k, nickname=nick_k, options=dict(SESSION))
        listener_k = tub_k.listenOn(endpoint_k)
        self.addCleanup(self._close_txi2p, [listener_s, listener_k], [nick_s, nick_k], [tub_d, tub_s, tub_k])
        handler = self.dialer(tub_d)
        await defer.gatherResults(
            [handler.prepare(), txi2p_session.getSession(nick_s), txi2p_session.getSession(nick_k)],
            consumeErrors=True,
        )
        await self.eventually(
            lambda: all(l._lp is not None and l._lp.accepts for l in (listener_s, listener_k)),
            10, "txi2p's STREAM ACCEPTs",
        )
        tub_s.setLocation("i2p:" + addr_s)
        tub_k.setLocation("i2p:" + addr_k)

        rref = await tub_d.getReference(tub_s.registerReference(Bulk()))
        self.assertEqual(await rref.callRemote("echo", b"sidetls" * 1000), (b"sidetls" * 1000)[::-1])
        self.assertEqual(trapped, [])

        d = tub_d.getReference(tub_k.registerReference(Bulk()))
        f = await self.assertFailure(d, TLSSideError)
        self.assertIn("the peer also acted as TLS client (it sent a ClientHello)", str(f))
        self.assertIn("run foolscap-sidetls on both ends", str(f))

    async def _close_txi2p_sessions(self, listeners: list[Any], nicknames: list[str], tubs: list[Tub]) -> None:
        # txi2p errbacks its accept factory's Deferred when its accepting
        # sockets close; nobody else listens to it.
        for listener in listeners:
            port = listener._lp
            if port is not None and not port.factory.deferred.called:
                port.factory.deferred.addErrback(lambda _: None)
        for tub in tubs:
            if tub.running:
                await tub.stopService()
        # Streams must close before their session does (txi2p raises otherwise).
        await self.eventually(
            lambda: len(sam_sockets(self.router.sam_port)) <= len(nicknames), 10, "txi2p's streams to close"
        )
        for nickname in nicknames:
            session = txi2p_session._sessions.get(nickname)
            if session is not None:
                session.close()

    def _close_txi2p(self, listeners: list[Any], nicknames: list[str], tubs: list[Tub]) -> Deferred:
        return Deferred.fromCoroutine(self._close_txi2p_sessions(listeners, nicknames, tubs))


class Launched(I2PTestCase):
    @coroutine
    async def test_launched_i2pd_second_connection_reuses_session(self):
        """
        launch() starts a second private i2pd; one Tub listens through the
        handle, another dials through it.  A second connection from the
        dialing Tub opens no new SAM session and takes well under a second.
        """
        datadir = self.mktemp()
        handle = i2p.launch(
            data_directory=datadir, config=_i2pnet.private_config(_i2pnet.free_port()), options=SESSION
        )
        self.sam_ports.add(handle._bridge.launcher.sam_port)
        listening, dialing = self.makeTub(), self.makeTub()
        dialing.addConnectionHintHandler("i2p", handle)
        statuses: list[tuple[float, str]] = []
        t0 = time.monotonic()

        def record(status: str) -> None:
            statuses.append((time.monotonic() - t0, status))

        hint, _ = await defer.gatherResults(
            [i2p.listen(listening, handle, self.keyfile("x.key")), handle.prepare(record)], consumeErrors=True
        )
        self.assertIs(handle.parent, listening)
        self.assertEqual([s for _, s in statuses], ["launching i2pd", "opening SAM session (can take ~20 s)"])
        TIMINGS["launched i2pd: SAM answering"] = statuses[1][0]
        TIMINGS["launched i2pd: sessions ready"] = time.monotonic() - t0
        pid = handle.launched_pid
        self.assertIsNotNone(pid)

        listening.setLocation(hint)
        furl = listening.registerReference(Bulk())
        rref = await dialing.getReference(furl)
        self.assertEqual(await rref.callRemote("echo", b"first"), b"tsrif")
        sessions, nickname = handle.sessions_created, handle.dial_nickname
        self.assertEqual(sessions, 2)  # the listener's and the dialer's
        await self.disconnect(rref, listening, dialing)

        t0 = time.monotonic()
        rref = await dialing.getReference(furl)
        second = time.monotonic() - t0
        TIMINGS["second connection (same Tub, I2P)"] = second
        self.assertEqual(await rref.callRemote("echo", b"second"), b"dnoces")
        # No new session: that is what makes a second connection cost one
        # SAM round trip instead of i2pd's ~20 s (timed in
        # benchmarks/networks.py, not asserted here).
        self.assertEqual((handle.sessions_created, handle.dial_nickname), (sessions, nickname))

        # The Tub the handle is attached to stops i2pd.
        await dialing.stopService()
        await listening.stopService()
        self.assertIsNone(handle.launched_pid)
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)


class Crash(I2PTestCase):
    @coroutine
    async def test_router_killed_then_back(self):
        """
        The router dies under a connected Reconnector: a dial says SAM is
        not answering (and where); once the router is back on the same
        ports and data directory, the listener reopens its session with
        the same key and the Reconnector connects again.
        """
        router = _i2pnet.I2PRouter(Path(self.mktemp()))
        router.start()
        self.addCleanup(router.stop)
        router.wait(30)
        listening, dialing = self.makeTub(), self.makeTub()
        handler = self.dialer(dialing, router)
        hint, _ = await defer.gatherResults(
            [i2p.listen(listening, self.sam(router), self.keyfile("l.key"), options=SESSION), handler.prepare()],
            consumeErrors=True,
        )
        listening.setLocation(hint)
        furl = listening.registerReference(Bulk())

        connections: list[Deferred] = [Deferred()]

        def connected(rref: Any) -> None:
            connections[-1].callback(rref)
            connections.append(Deferred())

        reconnector = dialing.connectTo(furl, connected)
        reconnector.maxDelay = 4.0
        self.addCleanup(reconnector.stopConnecting)
        rref = await connections[0]
        self.assertEqual(await rref.callRemote("echo", b"before"), b"erofeb")

        lost: Deferred = Deferred()
        rref.notifyOnDisconnect(lost.callback, None)
        router.kill()
        await lost
        f = await self.assertFailure(dialing.getReference(furl), i2p.SAMUnreachable)
        self.assertIn("no SAM bridge answering at tcp:127.0.0.1:%d (connection refused)" % router.sam_port, str(f))

        await task.deferLater(reactor, 1.0, lambda: None)
        restarted = time.monotonic()
        router.start()
        router.wait(30)
        rref = await connections[1]
        TIMINGS["reconnected after router restart"] = time.monotonic() - restarted
        self.assertEqual(await rref.callRemote("echo", b"after"), b"retfa")
        self.assertEqual(rref.getConnectionInfo().winningHint, hint)
        self.assertEqual(handler.sessions_created, 2)  # one before the crash, one after


def teardown_module(module: Any) -> None:
    """Print what the tests measured (shown with pytest -s)."""
    if TIMINGS:
        print("\nI2P timings:")
        for what, seconds in TIMINGS.items():
            print("  %-45s %6.2f s" % (what, seconds))
