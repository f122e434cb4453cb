"""
Faults: the daemon under a connection is killed while a call is in flight
(SIGKILL, as a crash), then started again on the same ports and data
directory.

Through the fault a driver makes a numbered sequence of calls on whatever
reference the Reconnector last gave it: before, one held open by the server
when the daemon dies, during the outage, and after the Reconnector is back.
Every call must end exactly once -- returning its own number, or failing
with an error that says the connection went -- and the server must have run
none of them twice (Foolscap does not retry; nothing here may either).

Tor: the private network's "dialer" client tor is killed, and in another
test the "server" tor that hosts the onion service; each is restarted by
the cleanup too, so the session fixture stays usable.  An onion service
added over a control connection lives as long as that tor does, so after
the server tor is back the listener publishes it again, from the same key
file: the same address, which the dialer's Reconnector finds again.  I2P: a
router of the test's own, as in test_i2p.Crash, so the session's router is
untouched.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from twisted.internet import defer, reactor, task, threads
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from foolscap.api import DeadReferenceError, Referenceable, Tub

from foolscap_sidetls import ISideTLSTransport, i2p, tor
from .._support.waiting import coroutine, until

from . import _i2pnet

#: Figures measured here, printed at the end (pytest -s).
FIGURES: dict[str, str] = {}


class Numbered(Referenceable):
    """Runs numbered calls, counting each run; C{hold} keeps the answer back."""

    def __init__(self) -> None:
        self.runs: collections.Counter[int] = collections.Counter()
        self.held: list[Deferred] = []

    def remote_call(self, n: int, hold: bool) -> Any:
        self.runs[n] += 1
        if hold:
            d: Deferred = Deferred()
            self.held.append(d)
            return d.addCallback(lambda _: n)
        return n

    def release(self) -> None:
        held, self.held = self.held, []
        for d in held:
            d.callback(None)


class Driver:
    """Numbered calls through the newest reference; every outcome recorded."""

    def __init__(self) -> None:
        self.refs: list[Any] = []
        self.next = 1
        self.outcomes: dict[int, list[Any]] = collections.defaultdict(list)

    def connected(self, rref: Any) -> None:
        self.refs.append(rref)

    def call(self, hold: bool = False) -> int:
        n, self.next = self.next, self.next + 1
        self.refs[-1].callRemote("call", n, hold).addBoth(self.outcomes[n].append)
        return n

    def pending(self) -> list[int]:
        return [n for n in range(1, self.next) if not self.outcomes[n]]


class FaultCase(TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.started = time.monotonic()
        self.numbered = Numbered()
        self.addCleanup(self.numbered.release)
        self.addCleanup(self._abort_closing)

    def makeTub(self) -> Tub:
        tub = Tub()
        tub.setOption("expose-remote-exception-types", False)
        tub.startService()
        self.addCleanup(lambda: tub.stopService() if tub.running else None)
        return tub

    @staticmethod
    def _abort_closing() -> None:
        """
        A connection the dead daemon left half-open, replaced by Foolscap
        when the new one arrived, is waiting out its close timeout (30 s);
        end it now rather than have the test wait.  (A socket still in the
        reactor is not gone yet; one whose sidetls connection is
        disconnecting is being closed by this end.)
        """
        for selectable in list(reactor.getReaders()) + list(reactor.getWriters()):
            protocol = getattr(selectable, "protocol", None)
            if (
                ISideTLSTransport.providedBy(protocol)
                and protocol.disconnecting
                and not selectable.disconnected
            ):
                selectable.abortConnection()

    async def eventually(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        return await until(self, check, timeout, what)

    async def through_fault(
        self, name: str, driver: Driver, kill: Callable[[], Any], restart: Callable[[], Any]
    ) -> None:
        """Calls before, across and after killing and restarting the daemon."""
        await self.eventually(lambda: driver.refs, 120, "the first connection")
        for _ in range(5):
            driver.call()
        await self.eventually(lambda: not driver.pending(), 60, "the first calls")

        held = driver.call(hold=True)
        await self.eventually(lambda: self.numbered.runs[held], 60, "the held call to arrive")
        lost: list[None] = []
        driver.refs[-1].notifyOnDisconnect(lost.append, None)
        killed = time.monotonic()
        await kill()
        await self.eventually(lambda: lost, 90, "the connection to be lost")
        FIGURES["%s: connection lost after kill" % name] = "%.2f s" % (time.monotonic() - killed)
        await self.eventually(lambda: driver.outcomes[held], 10, "the held call to fail")
        failure = driver.outcomes[held][0]
        self.assertIsInstance(failure, Failure)
        self.assertTrue(failure.check(DeadReferenceError), failure)
        self.assertIn("Connection was lost", str(failure.value))

        # During the outage: calls on the dead reference fail at once.
        during = [driver.call() for _ in range(3)]
        for n in during:
            self.assertIsInstance(driver.outcomes[n][0], Failure, n)
            self.assertTrue(driver.outcomes[n][0].check(DeadReferenceError), n)
            self.assertIn("Calling Stale Broker", str(driver.outcomes[n][0].value))

        restarted = time.monotonic()
        await restart()
        await self.eventually(lambda: len(driver.refs) > 1, 120, "the Reconnector to reconnect")
        FIGURES["%s: reconnected after restart" % name] = "%.2f s" % (time.monotonic() - restarted)
        after = [driver.call() for _ in range(5)]
        await self.eventually(lambda: not driver.pending(), 60, "the calls after the fault")

        # Every call ended exactly once; each that returned gave its own number
        # and ran once; none ran twice.
        for n in range(1, driver.next):
            self.assertEqual(len(driver.outcomes[n]), 1, n)
            outcome = driver.outcomes[n][0]
            if not isinstance(outcome, Failure):
                self.assertEqual(outcome, n)
                self.assertEqual(self.numbered.runs[n], 1, n)
        self.assertEqual([n for n, runs in self.numbered.runs.items() if runs > 1], [])
        for n in after:
            self.assertEqual(driver.outcomes[n], [n])
        returned = sum(1 for n in range(1, driver.next) if not isinstance(driver.outcomes[n][0], Failure))
        FIGURES["%s: numbered calls" % name] = "%d made, %d returned, %d failed (1 in flight, %d during the outage), 0 lost, 0 run twice" % (
            driver.next - 1, returned, driver.next - 1 - returned, len(during),
        )


class TorFault(FaultCase):
    net: Any

    @pytest.fixture(autouse=True)
    def _network(self, tor_network: Any) -> None:
        self.net = tor_network

    def control(self, node: Any) -> tor.TorHandler:
        handler = tor.control_endpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", node.control_port))
        self.addCleanup(handler.stop)
        return handler

    async def connected(self, silence: float = 0) -> tuple[Tub, tor.TorHandler, str, Driver]:
        """
        An onion-service Tub (its key in a file) and a Reconnector to it
        through the dialer tor; with C{silence}, the dialer drops a
        connection that has been silent that long (Foolscap's
        disconnectTimeout, Tahoe-LAFS's C{timeout.disconnect}).
        """
        net = self.net
        server = self.makeTub()
        directory = tempfile.mkdtemp(prefix="sidetls-faults-onion-")
        self.addCleanup(shutil.rmtree, directory, True)
        key = os.path.join(directory, "onion.key")
        hosting = self.control(net.server)
        hint = await tor.listen(server, hosting, private_key_file=key)
        server.setLocation(hint)
        self.numbered_furl = server.registerReference(self.numbered, "numbered")
        dialing = self.makeTub()
        if silence:
            dialing.setOption("keepaliveTimeout", silence / 4)
            dialing.setOption("disconnectTimeout", silence)
        dialing.removeAllConnectionHintHandlers()
        dialing.addConnectionHintHandler("tor", self.control(net.dialer))
        driver = Driver()
        reconnector = dialing.connectTo(self.numbered_furl, driver.connected)
        reconnector.maxDelay = 4.0
        self.addCleanup(reconnector.stopConnecting)
        return server, hosting, key, driver

    @coroutine
    async def test_tor_killed_mid_call(self) -> None:
        """The dialer's tor dies under a call; once it is back, so is the connection."""
        net = self.net
        _, _, _, driver = await self.connected()
        # Leave the session's network as it was, whatever happens.
        self.addCleanup(lambda: threads.deferToThread(net.restart_client, net.dialer))

        async def kill() -> None:
            net.kill_client(net.dialer)

        async def restart() -> None:
            net.dialer.start()

        await self.through_fault("tor", driver, kill, restart)

    @coroutine
    async def test_onion_service_tor_killed_mid_call(self) -> None:
        """
        The tor hosting the listener's onion service dies under a call.
        Its onion service dies with it (it was added over the control
        connection, as Tahoe-LAFS adds its own); once that tor is back the
        listener publishes it again from its key file -- the same address
        -- and the dialer's Reconnector, which kept trying, gets through.

        Two things here are Tor's, not ours, and are what a Tahoe-LAFS
        deployment meets too.  The dialer's tor does not always tear down
        the stream when the far side's tor dies (its rendezvous circuit can
        outlive it), so the dialer notices through Foolscap's own
        disconnectTimeout, which this dialer sets to 10 s (Foolscap's
        default is never).  And a client tor that kept failing to reach the
        onion while it was down holds on to what it learnt (descriptor,
        failed introduction points, recent directory fetches): in this
        private network it then failed for over 120 s after the service was
        back, until SIGNAL NEWNYM, which clears that client-side onion
        state; this test sends it to the dialer's tor once the service is
        republished, as an operator would.
        """
        net = self.net
        server, hosting, key, driver = await self.connected(silence=10.0)
        self.addCleanup(lambda: threads.deferToThread(net.restart_client, net.server))

        async def kill() -> None:
            net.kill_client(net.server)

        async def restart() -> None:
            await threads.deferToThread(net.restart_client, net.server)
            again = await tor.listen(server, hosting, private_key_file=key)
            self.assertEqual("pb://%s@%s/numbered" % (server.getTubID(), again), self.numbered_furl)

            def forget() -> None:
                with net.dialer.control() as control:
                    control.command("SIGNAL NEWNYM")

            await threads.deferToThread(forget)

        await self.through_fault("tor (onion service side)", driver, kill, restart)


class I2PFault(FaultCase):
    router: Any

    @pytest.fixture(autouse=True)
    def _router(self, i2p_router: Any) -> None:
        self.router = i2p_router  # only for the prerequisite check; this test runs its own

    def keyfile(self) -> str:
        directory = tempfile.mkdtemp(prefix="sidetls-faults-")
        self.addCleanup(shutil.rmtree, directory, True)
        return os.path.join(directory, "l.key")

    @coroutine
    async def test_i2pd_killed_mid_call(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="sidetls-faults-i2pd-"))
        self.addCleanup(shutil.rmtree, str(workdir), True)
        router = _i2pnet.I2PRouter(workdir)
        router.start()
        self.addCleanup(router.stop)
        await threads.deferToThread(router.wait, 30)
        sam = lambda: clientFromString(reactor, router.sam_description)  # noqa: E731
        listening, dialing = self.makeTub(), self.makeTub()
        handler = i2p.sam_endpoint(sam(), options=_i2pnet.SESSION_OPTIONS)
        dialing.addConnectionHintHandler("i2p", handler)
        handler.setServiceParent(dialing)
        hint, _ = await defer.gatherResults(
            [
                i2p.listen(listening, sam(), self.keyfile(), options=_i2pnet.SESSION_OPTIONS),
                handler.prepare(),
            ],
            consumeErrors=True,
        )
        listening.setLocation(hint)
        furl = listening.registerReference(self.numbered, "numbered")
        driver = Driver()
        reconnector = dialing.connectTo(furl, driver.connected)
        reconnector.maxDelay = 4.0
        self.addCleanup(reconnector.stopConnecting)

        async def kill() -> None:
            await threads.deferToThread(router.kill)

        async def restart() -> None:
            await task.deferLater(reactor, 1.0, lambda: None)
            router.start()
            await threads.deferToThread(router.wait, 30)

        await self.through_fault("i2p", driver, kill, restart)


def teardown_module(module: Any) -> None:
    if FIGURES:
        print("\nFault figures:")
        for what, figure in FIGURES.items():
            print("  %-42s %s" % (what, figure))
