"""
Shared pieces for the relay tests: driving clocks and the global reactor
to quiescence without waiting, giving in-memory connections a chosen
source address, reading the relay's side of the in-memory network, and
capturing log events.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from zope.interface import implementer
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from foolscap_sidetls.testing import MemoryNetwork, MemoryTransport


def pump(clock: Clock, limit: int = 100000) -> None:
    """Run everything due now (deliveries are callLater(0)), to quiescence."""
    for _ in range(limit):
        now = clock.seconds()
        if not any(call.getTime() <= now for call in clock.getDelayedCalls()):
            return
        clock.advance(0)
    raise AssertionError("the in-memory network never went quiet")


def advance(clock: Clock, seconds: float, step: float = 0.5) -> None:
    """Let C{seconds} pass, pumping the network at every C{step}."""
    pump(clock)
    while seconds > 1e-9:
        dt = min(step, seconds)
        clock.advance(dt)
        pump(clock)
        seconds -= dt


def _due(timer: Any) -> bool:
    now = timer.seconds()
    return any(call.getTime() <= now for call in timer.getDelayedCalls())


def pumpReactor(*clocks: Clock, limit: int = 100000) -> None:
    """
    Step the global reactor -- where Foolscap's eventual-send queue, its
    TLS writes and an in-memory network on the default clock all schedule
    their C{callLater(0)} work -- and any C{clocks}, until nothing is due
    now on any of them.  No I/O is polled and no time is waited for, so a
    Tub-level test over a L{MemoryNetwork} runs synchronously: what is
    not done when this returns is waiting for a timer, and the test can
    say so with C{assertNoResult}.
    """
    for _ in range(limit):
        busy = False
        if _due(reactor):
            reactor.runUntilCurrent()  # type: ignore[attr-defined]
            busy = True
        for clock in clocks:
            if _due(clock):
                clock.advance(0)
                busy = True
        if not busy:
            return
    raise AssertionError("the reactor and clocks never went quiet")


def within(d: "Deferred[Any]", seconds: float) -> "Deferred[Any]":
    """A bounded wait for a real-socket test: C{d}, failed with TimeoutError after C{seconds}."""
    return d.addTimeout(seconds, reactor)


# -- the relay's side of the in-memory network ------------------------------------------


def relaySide(net: MemoryNetwork, name: str) -> list[MemoryTransport]:
    """
    The transports at the listener end of every connection made to the
    listener C{name}, oldest first: the relay's end of each control
    channel, dialer and stream.
    """
    return [t for t in net.transports if t.getHost().host == name and t.getHost().port == 0]


def listenerNames(net: MemoryNetwork) -> set[str]:
    """The names of the listeners every connection made on C{net} went to."""
    return {t.getHost().host for t in net.transports if t.getHost().port == 0}


@implementer(IStreamServerEndpoint)
class SourcedEndpoint:
    """
    Wraps a server endpoint so that, while C{source} is set, the factory
    sees every new connection as coming from that IPv4 host: in memory,
    each connection otherwise has a host of its own, and the relay's
    per-source limits could not be reached.
    """

    source: Optional[str] = None

    def __init__(self, inner: IStreamServerEndpoint) -> None:
        self._inner = inner

    def listen(self, factory: IProtocolFactory) -> Any:
        return self._inner.listen(_SourcedFactory(self, factory))


class _SourcedFactory(Factory):
    def __init__(self, endpoint: SourcedEndpoint, factory: IProtocolFactory) -> None:
        self._endpoint = endpoint
        self._factory = factory

    def buildProtocol(self, addr: Any) -> Any:
        source = self._endpoint.source
        if source is not None:
            addr = IPv4Address("TCP", source, addr.port)
        return self._factory.buildProtocol(addr)


# -- logs -----------------------------------------------------------------------------------


class LogEvents:
    """The log events of one namespace, while installed."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.events: list[dict[str, Any]] = []
        self._waiters: list[tuple[Callable[[dict[str, Any]], bool], "Deferred[dict[str, Any]]"]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") != self.namespace:
            return
        self.events.append(event)
        for waiter in list(self._waiters):
            predicate, d = waiter
            if predicate(event):
                self._waiters.remove(waiter)
                d.callback(event)

    def install(self, case: Any) -> "LogEvents":
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)
        return self

    def lines(self, minimum: LogLevel = LogLevel.debug) -> list[str]:
        """The formatted events at C{minimum} level or above."""
        return [formatEvent(e) for e in self.events if e["log_level"] >= minimum]

    def when(self, predicate: Callable[[dict[str, Any]], bool]) -> "Deferred[dict[str, Any]]":
        """Fires with the first event from now on for which C{predicate} is true."""
        d: "Deferred[dict[str, Any]]" = Deferred()
        self._waiters.append((predicate, d))
        return d
