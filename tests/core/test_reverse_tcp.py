"""
The I2P shape on loopback TCP: a listener that reaches its dialers by
dialing out to a splice relay, so its connections are TCP client sockets.

Stock Foolscap fails there (both ends send a ClientHello); foolscap-sidetls
works; a sidetls dialer facing a stock reverse listener gets an
explanation instead of OpenSSL's words.  The relay and ReverseServerEndpoint
themselves are checked first, without Foolscap.
"""

from __future__ import annotations

import os
from typing import Any

from OpenSSL.SSL import Error as SSLError
from twisted.internet import defer, error, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.tcp import Client as TCPClientSocket
from twisted.python.failure import Failure
from twisted.trial import unittest
from foolscap.api import Referenceable, Tub

import foolscap_sidetls
from foolscap_sidetls import TLSSideError
from foolscap_sidetls.testing import ReverseServerEndpoint, SpliceRelay

from .._support.waiting import coroutine, until


class Echo(Referenceable):
    def remote_echo(self, data: Any) -> Any:
        return data


# -- the relay and the reverse endpoint, without Foolscap -------------------


class _Echo(Protocol):
    transport: Any
    factory: Any

    def connectionMade(self) -> None:
        self.factory.made.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.factory.received.append(data)
        self.transport.write(data)


class _EchoFactory(Factory):
    protocol = _Echo

    def __init__(self) -> None:
        self.made: list[_Echo] = []
        self.received: list[bytes] = []
        self.addresses: list[Any] = []

    def buildProtocol(self, addr: Any) -> Protocol:
        self.addresses.append(addr)
        protocol = _Echo()
        protocol.factory = self
        return protocol


class _Collect(Protocol):
    """A dialer that sends C{payload} and collects what comes back."""

    transport: Any

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received: list[bytes] = []
        self.total = 0
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        self.total += len(data)
        if self.total >= len(self.payload) and not self.done.called:
            self.done.callback(b"".join(self.received))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class _Sink(Protocol):
    """A listener-side protocol that does not read until told to."""

    received = 0
    transport: Any
    factory: Any

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        self.factory.protocols.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)


class _SinkFactory(Factory):
    protocol = _Sink

    def __init__(self) -> None:
        self.protocols: list[_Sink] = []


class _Flood(Protocol):
    """A dialer that writes as fast as its transport lets it (a push
    producer), up to C{LIMIT} bytes."""

    CHUNK = 64 * 1024
    #: Far above what the sockets on the way can hold (each loopback
    #: socket buffers a few MiB at most).
    LIMIT = 256 * 1024 * 1024

    sent = 0
    paused = False
    stopped = False
    transport: Any

    def connectionMade(self) -> None:
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._chunk = b"\x5a" * self.CHUNK
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        # The transport calls pauseProducing from inside write() once its
        # buffer is full.
        while not self.paused and not self.stopped and self.sent < self.LIMIT:
            self.transport.write(self._chunk)
            self.sent += self.CHUNK

    def pauseProducing(self) -> None:
        self.paused = True

    def stop(self) -> int:
        self.stopped = True
        self.transport.unregisterProducer()
        return self.sent

    def stopProducing(self) -> None:
        self.stopped = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class SpliceRelayTests(unittest.TestCase):
    timeout = 10

    def setUp(self) -> Any:
        self.relay = SpliceRelay(reactor)
        self.addCleanup(self.relay.stop)
        return self.relay.start().addCallback(self._started)

    def _started(self, ports: tuple[int, int]) -> None:
        self.front, self.back = ports

    async def listen(self, factory: Any, pool: int = 2) -> Any:
        endpoint = ReverseServerEndpoint(reactor, self.relay.back_endpoint(), pool=pool)
        port = await endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        await until(self, lambda: self.relay.parked == pool, 5.0, "self.relay.parked == pool")
        return port

    async def dial(self, payload: bytes) -> Any:
        proto = _Collect(payload)
        await TCP4ClientEndpoint(reactor, "127.0.0.1", self.front).connect(
            Factory.forProtocol(lambda: proto)
        )
        return proto

    @coroutine
    async def test_splice_is_byte_exact_and_signal_is_consumed(self) -> Any:
        """
        A dialer's bytes reach the listener's protocol unchanged -- the
        relay's liveness line is not among them -- and the protocol was
        built with the dialer's address, over a client socket.
        """
        factory = _EchoFactory()
        await self.listen(factory)
        payload = os.urandom(3 * 1024 * 1024)  # several socket buffers
        dialer = await self.dial(payload)
        echoed = await dialer.done
        self.assertEqual(len(echoed), len(payload))
        self.assertEqual(echoed, payload)
        self.assertEqual(b"".join(factory.received), payload)
        (made,) = factory.made
        self.assertIsInstance(made.transport, TCPClientSocket)
        (address,) = factory.addresses
        self.assertEqual(
            (address.host, address.port),
            (dialer.transport.getHost().host, dialer.transport.getHost().port),
        )
        dialer.transport.loseConnection()
        await dialer.lost

    @coroutine
    async def test_pool_refills_and_dialer_waits_for_a_parked_connection(self) -> Any:
        """
        Each spliced connection is replaced at the relay; a dialer arriving
        when nothing is parked waits rather than being dropped.
        """
        factory = _EchoFactory()
        await self.listen(factory, pool=1)
        first = await self.dial(b"one")
        second = await self.dial(b"two")  # arrives before the refill
        self.assertEqual((await first.done), b"one")
        self.assertEqual((await second.done), b"two")
        await until(self, lambda: self.relay.parked == 1, 5.0, "self.relay.parked == 1")
        self.assertEqual(self.relay.spliced, 2)
        for proto in (first, second):
            proto.transport.loseConnection()
            await proto.lost

    @coroutine
    async def test_slow_reader_stalls_the_writer(self) -> Any:
        """
        Flow control through the relay: while the listener's protocol does
        not read, a dialer writing as fast as it may is soon paused, after
        no more than the sockets' buffers hold -- the relay does not soak
        the stream up -- and everything arrives once the listener reads.
        """
        sink = _SinkFactory()
        await self.listen(sink, pool=1)
        flood = _Flood()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", self.front).connect(
            Factory.forProtocol(lambda: flood)
        )
        await until(self, lambda: sink.protocols and flood.sent >= _Flood.CHUNK, 5.0, "sink.protocols and flood.sent >= _Flood.CHUNK")

        # Wait until the dialer has been paused and stayed paused a while.
        stalled = 0
        for _ in range(1000):
            before = flood.sent
            await task.deferLater(reactor, 0.05, lambda: None)
            stalled = stalled + 1 if (flood.paused and flood.sent == before) else 0
            if stalled >= 6 or flood.sent >= _Flood.LIMIT:
                break
        self.assertLess(
            flood.sent,
            _Flood.LIMIT,
            "the dialer was never held back: the relay is buffering the stream",
        )
        (listenerSide,) = sink.protocols
        self.assertLess(listenerSide.received, flood.sent)

        sent = flood.stop()
        listenerSide.transport.resumeProducing()
        await until(self, lambda: listenerSide.received == sent, 8.0, "listenerSide.received == sent")
        flood.transport.loseConnection()
        await flood.lost

    @coroutine
    async def test_close_on_either_side_closes_the_other(self) -> Any:
        factory = _EchoFactory()
        await self.listen(factory, pool=1)
        dialer = await self.dial(b"x")
        await dialer.done
        (listenerSide,) = factory.made
        listenerSide.transport.loseConnection()
        await dialer.lost  # the relay passed the close on
        await until(self, lambda: self.relay.connections == 1, 5.0, "self.relay.connections == 1")  # the new parked one

    @coroutine
    async def test_stopListening_closes_parked_connections(self) -> Any:
        endpoint = ReverseServerEndpoint(reactor, self.relay.back_endpoint(), pool=3)
        port = await endpoint.listen(_EchoFactory())
        await until(self, lambda: self.relay.parked == 3, 5.0, "self.relay.parked == 3")
        await port.stopListening()
        await until(self, lambda: self.relay.connections == 0, 5.0, "self.relay.connections == 0")
        self.assertEqual(port.parked, 0)

    @coroutine
    async def test_listen_fails_when_relay_is_unreachable(self) -> Any:
        closed = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Protocol)
        )
        portnum = closed.getHost().port
        await closed.stopListening()
        endpoint = ReverseServerEndpoint(
            reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", portnum), pool=2
        )
        await self.assertFailure(endpoint.listen(_EchoFactory()), error.ConnectionRefusedError)


# -- Foolscap over the relay ------------------------------------------------


class ReverseListenerTests(unittest.TestCase):
    timeout = 15

    def setUp(self) -> Any:
        self.relay = SpliceRelay(reactor)
        # Cleanups run last-in first-out: the Tubs stop before the relay.
        self.addCleanup(self.relay.stop)
        return self.relay.start()

    def makeTub(self) -> Tub:
        tub = Tub(_test_options={"connect_timeout": 8})
        tub.startService()
        self.addCleanup(tub.stopService)
        return tub

    def reverseListener(self, sidetls: bool) -> tuple[Tub, str]:
        tub = self.makeTub()
        endpoint: Any = ReverseServerEndpoint(reactor, self.relay.back_endpoint(), pool=1)
        if sidetls:
            endpoint = foolscap_sidetls.listener(endpoint)
        tub.listenOn(endpoint)
        tub.setLocation(self.relay.front_hint())
        return tub, tub.registerReference(Echo())

    def dialer(self, sidetls: bool) -> Tub:
        tub = self.makeTub()
        if sidetls:
            foolscap_sidetls.install(tub)
        return tub

    @coroutine
    async def test_stock_fails_with_double_clienthello(self) -> Any:
        _, furl = self.reverseListener(sidetls=False)
        d = self.dialer(sidetls=False).getReference(furl)
        failure = await self.assertFailure(d, SSLError)
        # Whichever end reads the other's ClientHello first reports it
        # ('unexpected message'); the other gets its alert
        # ('tls alert unexpected message').
        self.assertIn("unexpected message", str(failure))
        self.assertEqual(self.relay.spliced, 1)

    @coroutine
    async def test_sidetls_succeeds(self) -> Any:
        listenerTub, furl = self.reverseListener(sidetls=True)
        rref = await self.dialer(sidetls=True).getReference(furl)
        payload = os.urandom(256 * 1024)
        echoed = await rref.callRemote("echo", payload)
        self.assertEqual(echoed, payload)

        ours = rref.tracker.broker.transport
        self.assertEqual((ours.role, ours.tlsSide), ("dialer", "client"))
        (theirs,) = [b.transport for b in listenerTub.brokers.values()]
        self.assertEqual((theirs.role, theirs.tlsSide), ("listener", "server"))
        # The I2P shape: the listener's connection is a socket it dialed.
        self.assertIsInstance(theirs.transport, TCPClientSocket)
        self.assertEqual(self.relay.spliced, 1)

    @coroutine
    async def test_sidetls_dialer_vs_stock_reverse_listener_is_explained(self) -> Any:
        _, furl = self.reverseListener(sidetls=False)
        d = self.dialer(sidetls=True).getReference(furl)
        failure = await self.assertFailure(d, TLSSideError)
        self.assertIn("also acted as TLS client", str(failure))
