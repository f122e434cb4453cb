"""
A Tub behind NAT, reached through a relay that carries only ciphertext.

With no arguments, everything runs in this process on 127.0.0.1 and checks
itself (exit status 0 on success)::

    .venv/bin/python examples/relay.py

    stock dialer Tub --tcp--> relay <--tcp-- hidden Tub (listens on nothing)
       TLS client       copies bytes          TLS server

The dialer is plain Foolscap: the hidden Tub's FURL has an ordinary tcp hint
for the relay, and the relay routes on the TubID in Foolscap's plaintext
request.  The demo then restarts the relay and shows the hidden Tub
registering again by itself.

Or run the three parts separately (each serves until Ctrl-C)::

    .venv/bin/python examples/relay.py relay --port 7000 --cert-file relay.pem
        (prints the relay URL, relay://<relay-id>@tcp:127.0.0.1:7000)
    .venv/bin/python examples/relay.py hidden RELAY_URL [--cert-file hidden.pem]
        (prints the hidden Tub's FURL)
    .venv/bin/python examples/relay.py dial FURL

Use --host to put another address in the relay URL (the relay itself binds
to --interface, 127.0.0.1 by default).

While a step waits (the hidden Tub registering with a relay that is down,
say), it says so every 10 seconds, with the last error.  Ctrl-C (or
SIGTERM) stops any of them at any point, as ``foolscap-sidetls serve``
does: "stopping...", the Tub and relay stopped (the hidden Tub's
registration withdrawn), "stopped", exit status 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Optional

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.tcp import Client as TCPClientSocket, Port as TCPPort
from twisted.python.failure import Failure
from foolscap import crypto
from foolscap.api import Referenceable, Tub

from foolscap_sidetls import relay

PAYLOAD = 1024 * 1024
#: How long the demo waits for any one step before giving up.
STEP_TIMEOUT = 30.0
#: How often a step that is still under way says so.
STILL_WAITING = 10


class Echo(Referenceable):
    def remote_echo(self, data: bytes) -> bytes:
        return data


def _forever() -> "defer.Deferred[None]":
    """Until Ctrl-C cancels it."""
    return defer.Deferred()


class Waiting:
    """
    While a step is under way, every L{STILL_WAITING} seconds, prints that
    it still is and how it is doing (C{how()}): a relay that is down is
    retried quietly, and silence looks like a hang.
    """

    def __init__(self, reactor: Any, how: Callable[[], str]) -> None:
        self._started = time.monotonic()
        self._how = how
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor
        self._ticker.start(STILL_WAITING, now=False)

    def done(self) -> None:
        if self._ticker.running:
            self._ticker.stop()

    def _tick(self) -> None:
        print("  [%5.1f s] ... still %s" % (time.monotonic() - self._started, self._how()), flush=True)


def until_stopped(reactor: Any, start: Callable[[], "defer.Deferred[Any]"]) -> "defer.Deferred[Any]":
    """
    C{start()}'s result, started once the reactor runs (only then are its
    signal handlers in place, so an early Ctrl-C stops cleanly rather than
    raising KeyboardInterrupt); a failure is one line, "error: ...", and
    exit status 1.  Ctrl-C or SIGTERM cancels it, waits for its cleanup
    (each part stops what it started), and is no error: "stopped", exit
    status 0, as for C{foolscap-sidetls serve}.
    """
    state: dict[str, Any] = {"work": None, "stopping": False}
    ended: "defer.Deferred[None]" = defer.Deferred()

    def settle(result: Any) -> Any:
        ended.callback(None)
        if state["stopping"]:
            return None
        if isinstance(result, Failure) and not result.check(SystemExit):
            print("error: %s" % (result.getErrorMessage(),), file=sys.stderr, flush=True)
            raise SystemExit(1)
        return result

    def shutdown() -> Optional["defer.Deferred[None]"]:
        if ended.called:
            return None  # it ended by itself; the reactor stops after it
        state["stopping"] = True
        print("stopping...", flush=True)
        state["work"].cancel()
        return ended.addCallback(lambda _: print("stopped", flush=True))

    def begin(_: None) -> "defer.Deferred[Any]":
        reactor.addSystemEventTrigger("before", "shutdown", shutdown)
        state["work"] = start()
        return state["work"].addBoth(settle)

    running: "defer.Deferred[None]" = defer.Deferred()
    reactor.callWhenRunning(running.callback, None)
    return running.addCallback(begin)


@defer.inlineCallbacks
def start_relay(
    reactor: Any, server: relay.RelayServer, port: int, interface: str, host: str
) -> Any:
    listening = yield server.listen(TCP4ServerEndpoint(reactor, port, interface=interface))
    return server, listening, server.url("tcp:%s:%d" % (host, listening.getHost().port))


def start_hidden(url: str, cert_file: Optional[str] = None) -> tuple[Tub, Any, str]:
    tub = Tub(certFile=cert_file) if cert_file else Tub()
    endpoint = relay.listener(url, tub)
    tub.listenOn(endpoint)  # listens by dialing out to the relay
    tub.setLocation(*relay.location_hints(url))  # dialers reach it via the relay
    tub.startService()
    return tub, endpoint, tub.registerReference(Echo(), "echo")


@defer.inlineCallbacks
def demo(reactor: Any) -> Any:
    # The relay's identity: keep it (RelayServer(cert_file=...)) and its URL,
    # which hidden Tubs pin, survives restarts.
    certificate = crypto.createCertificate()
    server, port, url = yield start_relay(
        reactor, relay.RelayServer(certificate), 0, "127.0.0.1", "127.0.0.1"
    )
    print("relay:   listening on 127.0.0.1:%d, relay URL %s" % (port.getHost().port, url))

    hidden, endpoint, furl = start_hidden(url)
    yield _bounded(reactor, endpoint.when_registered(), "the hidden Tub to register")
    print("hidden:  registered; FURL %s" % (furl,))

    dialer = Tub()  # stock Foolscap: nothing from foolscap_sidetls
    dialer.startService()
    ok = True
    try:
        rref = yield _bounded(reactor, dialer.getReference(furl), "the dialer to connect")
        payload = os.urandom(PAYLOAD)
        echoed = yield _bounded(reactor, rref.callRemote("echo", payload), "the echo")
        (broker,) = hidden.brokers.values()
        below = broker.transport.transport
        listening = [r for r in reactor.getReaders() if isinstance(r, TCPPort)]
        print("dialer:  echo of 1 MiB through the relay: %s"
              % ("intact" if echoed == payload else "WRONG DATA"))
        peerID = relay.certificate_id(rref.tracker.broker.transport.getPeerCertificate())
        print("dialer:  TLS client; the certificate it checked is the hidden Tub's: %s"
              % (peerID == hidden.tubID,))
        print("hidden:  role=%s, TLS %s, over a %s"
              % (broker.transport.role, broker.transport.tlsSide,
                 "TCP client socket to the relay" if isinstance(below, TCPClientSocket)
                 else type(below).__name__))
        print("         listening sockets in this process: %d, the relay's" % len(listening))
        ok = (
            echoed == payload
            and broker.transport.tlsSide == "server"
            and listening == [port]
            and peerID == hidden.tubID
        )

        print("relay:   stopping, and starting again on the same port")
        portNumber = port.getHost().port
        yield server.stop()
        # Both Tubs notice their connections to the relay are gone.
        yield _until(
            reactor,
            lambda: endpoint.state != relay.REGISTERED and not dialer.brokers,
            "both Tubs to notice the relay is gone",
        )
        server, port, _ = yield start_relay(
            reactor, relay.RelayServer(certificate), portNumber, "127.0.0.1", "127.0.0.1"
        )
        yield _bounded(reactor, endpoint.when_registered(), "the hidden Tub to register again")
        print("hidden:  registered again by itself (%d registrations so far)"
              % (endpoint.port.registrations,))
        rref = yield _bounded(reactor, dialer.getReference(furl), "the dialer to connect again")
        again = yield _bounded(reactor, rref.callRemote("echo", b"again"), "the second echo")
        print("dialer:  echo through the restarted relay: %s" % (again == b"again",))
        ok = ok and again == b"again"
    finally:
        yield dialer.stopService()
        yield hidden.stopService()
        yield server.stop()
    print("RESULT:", "OK" if ok else "UNEXPECTED")
    if not ok:
        raise SystemExit(1)


class StepTimedOut(Exception):
    """A step of the demo did not happen in time."""


@defer.inlineCallbacks
def _until(
    reactor: Any, condition: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT
) -> Any:
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() >= deadline:
            raise StepTimedOut("timed out after %g s waiting for %s" % (timeout, what))
        yield task.deferLater(reactor, 0.01, lambda: None)


def _bounded(reactor: Any, d: "defer.Deferred[Any]", what: str) -> "defer.Deferred[Any]":
    """C{d}, failed with L{StepTimedOut} if it has not fired within STEP_TIMEOUT."""

    def timedOut(value: Any, timeout: float) -> Any:
        raise StepTimedOut("timed out after %g s waiting for %s" % (timeout, what))

    return d.addTimeout(STEP_TIMEOUT, reactor, onTimeoutCancel=timedOut)


@defer.inlineCallbacks
def run_relay(reactor: Any, args: argparse.Namespace) -> Any:
    server = relay.RelayServer(cert_file=args.cert_file)
    try:
        server, port, url = yield start_relay(
            reactor, server, args.port, args.interface, args.host or args.interface
        )
        print("relay URL: %s" % (url,))
        print("serving; Ctrl-C to stop", flush=True)
        yield _forever()
    finally:
        yield server.stop()


def _registration(endpoint: relay.RelayListenerEndpoint) -> str:
    """How registering is going, for L{Waiting}."""
    error = endpoint.last_error
    return "registering with the relay: %s%s" % (
        endpoint.state,
        " (last error: %s)" % (error.getErrorMessage(),) if error is not None else "",
    )


@defer.inlineCallbacks
def run_hidden(reactor: Any, args: argparse.Namespace) -> Any:
    tub, endpoint, furl = start_hidden(args.url, args.cert_file)
    try:
        print("registering with %s ..." % (args.url,), flush=True)
        waiting = Waiting(reactor, lambda: _registration(endpoint))
        try:
            yield endpoint.when_registered()
        finally:
            waiting.done()
        print("registered; FURL: %s" % (furl,))
        print("serving; Ctrl-C to stop", flush=True)
        yield _forever()
    finally:
        yield tub.stopService()  # withdraws the registration


@defer.inlineCallbacks
def run_dial(reactor: Any, args: argparse.Namespace) -> Any:
    tub = Tub()
    tub.startService()
    try:
        print("connecting to %s ..." % (args.furl,), flush=True)
        waiting = Waiting(reactor, lambda: "connecting (Foolscap tries each hint in the FURL)")
        try:
            rref = yield tub.getReference(args.furl)
        finally:
            waiting.done()
        payload = os.urandom(PAYLOAD)
        echoed = yield rref.callRemote("echo", payload)
        print("echo of 1 MiB: %s" % ("intact" if echoed == payload else "WRONG DATA"))
    finally:
        yield tub.stopService()
    if echoed != payload:
        raise SystemExit(1)


def _demoOrExplain(reactor: Any) -> Any:
    def explain(failure: Any) -> None:
        failure.trap(StepTimedOut)
        print("RESULT: FAILED, %s" % (failure.value,), file=sys.stderr)
        raise SystemExit(1)

    return demo(reactor).addErrback(explain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    r = sub.add_parser("relay", help="run a relay")
    r.add_argument("--port", type=int, default=7000)
    r.add_argument("--interface", default="127.0.0.1")
    r.add_argument("--host", help="the address to put in the relay URL")
    r.add_argument("--cert-file", help="keep the relay's certificate (and URL) here")
    h = sub.add_parser("hidden", help="run a hidden Tub with an echo object")
    h.add_argument("url", help="the relay URL the relay printed")
    h.add_argument("--cert-file", help="keep the Tub's certificate (and FURL) here")
    d = sub.add_parser("dial", help="call echo on a FURL")
    d.add_argument("furl")
    args = parser.parse_args()
    if args.command is None:
        task.react(lambda reactor: until_stopped(reactor, lambda: _demoOrExplain(reactor)))
    else:
        run = {"relay": run_relay, "hidden": run_hidden, "dial": run_dial}[args.command]
        task.react(lambda reactor: until_stopped(reactor, lambda: run(reactor, args)))


if __name__ == "__main__":
    main()
