"""
Scripted hostile peers for the hardening tests.

A hostile peer here is a real Foolscap Tub whose bytes pass through a
L{FaultProtocol} just above its socket: honest until the scripted moment,
then it sends random bytes, truncates what it was sending and closes,
stalls (sends nothing, reads nothing, never closes) or closes.  From then on
it ignores its own Tub, so what happens next is only the other end's doing.

The phases are points in the byte stream the hostile end sends:

- C{before}: instead of its first bytes (a dialer's plaintext request, a
  listener's answer to it);
- C{inside}: after half of that first write;
- C{after-switch}: right after its plaintext header block, instead of its
  first TLS bytes;
- C{mid-record}: inside its first TLS record;
- C{after-tls}: once the TLS handshake is done, instead of its encrypted
  hello -- when the peer's hello arrives it does not answer (see
  L{hostileNegotiation}; the bytes below pass unchanged);
- C{after-banana}: once the test arms it, after Foolscap's negotiation has
  finished (see L{FaultProtocol.arm}).

A test gives the hostile Tub C{tub.negotiationClass =
hostileNegotiation(script)} (which is stock Foolscap for every phase but
C{after-tls}) and dials or listens through L{FaultClientEndpoint} or
L{FaultServerEndpoint} with the same script.
"""

from __future__ import annotations

import random
import zlib
from typing import Any, Callable, Optional

from zope.interface import implementer
from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from foolscap import crypto
from foolscap.api import Referenceable, Tub
from foolscap.negotiate import ENCRYPTED, Negotiation

PHASES = ("before", "inside", "after-switch", "mid-record", "after-tls", "after-banana")
ACTIONS = ("random", "truncate", "stall", "close")


def seed(*parts: str) -> int:
    """A seed for one cell of the matrix, the same in every process (unlike hash())."""
    return zlib.crc32(" ".join(parts).encode("ascii"))

def add_matrix(cls: type, name: Callable[[str, str, str], str], doc: Callable[[str, str, str], str]) -> None:
    """
    Give C{cls} one test per phase x action x hostile end, each running
    C{cls.hostileDialer(phase, action)} or C{cls.hostileListener(...)};
    C{name} and C{doc} make each test's name and docstring from
    C{(end, action, phase)}, C{end} being C{"dialer"} or C{"listener"}.
    """
    for phase in PHASES:
        for action in ACTIONS:
            for end, method in (("dialer", "hostileDialer"), ("listener", "hostileListener")):

                def test(self: Any, phase: str = phase, action: str = action, method: str = method) -> defer.Deferred:
                    return defer.Deferred.fromCoroutine(getattr(self, method)(phase, action))

                test.__name__ = name(end, action, phase)
                test.__doc__ = doc(end, action, phase)
                setattr(cls, test.__name__, test)


_certificates: list[bytes] = []


def certificate(index: int) -> bytes:
    """A Tub certificate (PEM), made once per test run: RSA key generation is slow."""
    while len(_certificates) <= index:
        _certificates.append(crypto.createCertificate().dumpPEM())
    return _certificates[index]


class Echo(Referenceable):
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def remote_echo(self, data: Any) -> Any:
        self.calls.append(data)
        return data


class Script:
    """What a hostile end does, and where."""

    def __init__(self, phase: str, action: str, seed: int = 0) -> None:
        assert phase in PHASES and action in ACTIONS, (phase, action)
        self.phase = phase
        self.action = action
        self.random = random.Random(seed)
        self.fired = False
        self.protocols: list["FaultProtocol"] = []

    def __repr__(self) -> str:
        return "<Script %s %s>" % (self.action, self.phase)


class FaultProtocol(ProtocolWrapper):
    """
    Sits between a hostile Tub's sidetls wrapper (above) and its socket
    (below), passing bytes both ways until its script fires.
    """

    factory: "FaultFactory"

    def __init__(self, factory: "FaultFactory", wrapped: Any) -> None:
        ProtocolWrapper.__init__(self, factory, wrapped)
        self.upper = wrapped
        self.script = factory.script
        self.script.protocols.append(self)
        self.sent = b""
        self.blockEnd: Optional[int] = None
        self.detached = False
        self.armed = False

    # -- from the hostile Tub above ------------------------------------------

    def write(self, data: bytes) -> None:
        if self.detached or not data:
            return
        phase = self.script.phase
        if phase == "before":
            return self.fire(b"", data)
        if phase == "inside":
            cut = max(1, len(data) // 2)
            return self.fire(data[:cut], data[cut:])
        if self.blockEnd is None:
            seen = self.sent + data
            end = seen.find(b"\r\n\r\n")
            if end == -1:
                return self.passOn(data)
            self.blockEnd = end + 4
            cut = self.blockEnd - len(self.sent)
            self.passOn(data[:cut])
            data = data[cut:]
            if not data:
                return None
        if phase == "after-switch":
            return self.fire(b"", data)
        if phase == "mid-record":
            cut = 5 + max(1, (len(data) - 5) // 2) if len(data) > 6 else max(1, len(data) // 2)
            return self.fire(data[:cut], data[cut:])
        if self.armed:
            return self.fire(b"", data)
        return self.passOn(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.detached:
            self.transport.loseConnection()

    def abortConnection(self) -> None:
        if not self.detached:
            self.transport.abortConnection()

    # -- from the socket below -------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if not self.detached:
            self.upper.dataReceived(data)

    # -- the script ---------------------------------------------------------------

    def passOn(self, data: bytes) -> None:
        self.sent += data
        self.transport.write(data)

    def arm(self) -> None:
        """
        C{after-banana}: fire now for actions that need nothing to cut
        (random, stall, close); C{truncate} waits for the next write.
        """
        self.armed = True
        if self.script.action != "truncate":
            self.fire(b"", b"")

    def fire(self, passed: bytes, rest: bytes) -> None:
        if passed:
            self.passOn(passed)
        self.detached = True
        self.script.fired = True
        action = self.script.action
        if action == "random":
            self.transport.write(self.script.random.randbytes(5000))
        elif action == "truncate":
            if len(rest) > 1:
                self.transport.write(rest[: len(rest) // 2])
            self.transport.loseConnection()
        elif action == "close":
            self.transport.loseConnection()
        # stall: nothing, ever again


def hostileNegotiation(script: Script) -> type:
    """
    A Foolscap negotiation that, for C{after-tls}, does C{script}'s action
    in place of its encrypted hello: it sends no hello after C{startTLS},
    and when the peer's hello arrives (which is after the TLS handshake)
    it sends random bytes, half its hello and closes, nothing, or closes --
    and from then on ignores whatever arrives.  For the other phases it is
    stock Foolscap.
    """

    class HostileNegotiation(Negotiation):
        _hostileFired = False
        _hello: Optional[list[bytes]] = None

        def sendHello(self) -> None:
            if script.phase != "after-tls":
                return Negotiation.sendHello(self)
            # Keep the hello it would have sent (for truncate); send nothing.
            self._hello = []
            try:
                Negotiation.sendHello(self)
            finally:
                hello, self._hello = self._hello, None
            self._withheld = b"".join(hello)

        def sendBlock(self, block: Any) -> None:
            if self._hello is None:
                return Negotiation.sendBlock(self, block)
            keys = sorted(block)
            for k in keys:
                self._hello.append(k.lower().encode() + b": " + str(block[k]).encode() + b"\r\n")
            self._hello.append(b"\r\n")

        def dataReceived(self, chunk: bytes) -> None:
            if self._hostileFired:
                return
            if script.phase == "after-tls" and self.receive_phase == ENCRYPTED and chunk:
                self._hostileFired = True
                script.fired = True
                action = script.action
                if action == "random":
                    self.transport.write(script.random.randbytes(5000))
                elif action == "truncate":
                    self.transport.write(self._withheld[: len(self._withheld) // 2])
                    self.transport.loseConnection()
                elif action == "close":
                    self.transport.loseConnection()
                # stall: nothing, ever again
                return
            Negotiation.dataReceived(self, chunk)

    return HostileNegotiation


class FaultFactory(WrappingFactory):
    protocol = FaultProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, wrapped: Any, script: Script) -> None:
        WrappingFactory.__init__(self, wrapped)
        self.script = script


@implementer(IStreamClientEndpoint)
class FaultClientEndpoint:
    """Wrap with L{foolscap_sidetls.dialer} to make a hostile dialer."""

    def __init__(self, endpoint: Any, script: Script) -> None:
        self._endpoint = endpoint
        self.script = script

    def connect(self, factory: Any) -> defer.Deferred:
        d = self._endpoint.connect(FaultFactory(factory, self.script))
        return d.addCallback(lambda fault: fault.upper)


@implementer(IStreamServerEndpoint)
class FaultServerEndpoint:
    """Wrap with L{foolscap_sidetls.listener} to make a hostile listener."""

    def __init__(self, endpoint: Any, script: Script) -> None:
        self._endpoint = endpoint
        self.script = script

    def listen(self, factory: Any) -> defer.Deferred:
        return self._endpoint.listen(FaultFactory(factory, self.script))


class LogCapture:
    """The events foolscap_sidetls logs, while installed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "foolscap_sidetls":
            self.events.append(event)

    def install(self, case: Any) -> "LogCapture":
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)
        return self

    def lines(self, minimum: LogLevel = LogLevel.debug, **fields: Any) -> list[str]:
        """The formatted events at C{minimum} level or above with these fields."""
        return [
            formatEvent(e)
            for e in self.events
            if e["log_level"] >= minimum and all(e.get(key) == value for key, value in fields.items())
        ]


def makeTub(
    case: Any, cert: int, stoppers: list[Callable[[], Any]], script: Optional[Script] = None
) -> Tub:
    """
    A started Tub with a fixed certificate; stopped by the test's own
    cleanup.  With a C{script}, a hostile one (see L{hostileNegotiation}).
    """
    tub = Tub(certData=certificate(cert))
    tub.setOption("expose-remote-exception-types", False)
    if script is not None:
        tub.negotiationClass = hostileNegotiation(script)
    tub.startService()
    stoppers.append(lambda: tub.stopService() if tub.running else None)
    return tub


async def turn() -> None:
    """One turn of the real reactor (Foolscap's eventual-sends run on it)."""
    await task.deferLater(reactor, 0, lambda: None)


def delayedCallsOf(objects: list[Any]) -> list[Any]:
    """The real reactor's pending calls bound to any of C{objects}."""
    ids = {id(o) for o in objects if o is not None}
    return [
        call
        for call in reactor.getDelayedCalls()
        if id(getattr(call.func, "__self__", None)) in ids
    ]
