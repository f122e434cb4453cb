"""
A Foolscap listener that is reached by dialing out -- the I2P SAM / reverse
tunnel shape -- first with stock Foolscap (fails), then with
foolscap-sidetls (works).

    .venv/bin/python examples/reverse_listener.py

Everything runs in this process on 127.0.0.1:

    dialer Tub --tcp--> [front | splice relay | back] <--tcp-- listener Tub
                                                    (the listener dialed out)

The listener's connection is a TCP *client* socket, so Twisted's
startTLS makes a stock Foolscap listener send a ClientHello, as the dialer
does: the handshake dies.  With foolscap-sidetls the listener is the TLS
server because it is the listener.

Exit status 0 only if the stock run failed that way and the sidetls run
succeeded.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any, Optional

from twisted.internet import defer, task
from twisted.internet.tcp import Client as TCPClientSocket
from twisted.python.failure import Failure
from foolscap.api import Referenceable, Tub

import foolscap_sidetls
from foolscap_sidetls.testing import ReverseServerEndpoint, SpliceRelay

#: Foolscap's own connection timeout (default 120 s), kept short here.
CONNECT_TIMEOUT = 5
#: A backstop around getReference, in case nothing fires at all.
OVERALL_TIMEOUT = 8
PAYLOAD = 1024 * 1024


class Echo(Referenceable):
    def remote_echo(self, data: bytes) -> bytes:
        return data


def _describe(transport: Any) -> str:
    """Which role and TLS side a SideTLSProtocol took, and over what socket."""
    below = transport.transport
    socket = (
        "a TCP client socket (it dialed out)"
        if isinstance(below, TCPClientSocket)
        else type(below).__name__
    )
    return "role=%s, TLS %s, over %s" % (transport.role, transport.tlsSide, socket)


#: Said before the stock run, so that its FAILED line reads as the point
#: of the demo rather than as something gone wrong.
STOCK_EXPECTATION = (
    "expected to fail: the listener's socket dialed out, so Twisted makes it "
    "the TLS client too and both ends send a ClientHello"
)


@defer.inlineCallbacks
def run(reactor: Any, sidetls: bool) -> Any:
    """
    One attempt; returns C{(True, None)} on a successful call, or
    C{(False, failure)}.
    """
    print("=== %s ===" % ("sidetls" if sidetls else "stock Foolscap"))
    if not sidetls:
        print(STOCK_EXPECTATION)
    relay = SpliceRelay(reactor)
    front, back = yield relay.start()
    print("relay: dialers connect to front port %d, the listener dials out to back port %d"
          % (front, back))

    listenerTub = Tub()
    listenerTub.startService()
    endpoint: Any = ReverseServerEndpoint(reactor, relay.back_endpoint(), pool=2)
    if sidetls:
        endpoint = foolscap_sidetls.listener(endpoint, handshake_timeout=CONNECT_TIMEOUT)
    listenerTub.listenOn(endpoint)
    listenerTub.setLocation(relay.front_hint())
    furl = listenerTub.registerReference(Echo())

    dialerTub = Tub(_test_options={"connect_timeout": CONNECT_TIMEOUT})
    if sidetls:
        foolscap_sidetls.install(dialerTub)
    dialerTub.startService()

    outcome: tuple[bool, Optional[Failure]]
    try:
        d = dialerTub.getReference(furl)
        d.addTimeout(OVERALL_TIMEOUT, reactor)
        rref = yield d
        print("dialer:   ", _describe(rref.tracker.broker.transport))
        for broker in listenerTub.brokers.values():
            print("listener: ", _describe(broker.transport))
        payload = bytes(range(256)) * (PAYLOAD // 256)
        started = time.monotonic()
        echoed = yield rref.callRemote("echo", payload)
        elapsed = time.monotonic() - started
        if echoed != payload:
            raise AssertionError("echo returned different bytes")
        print("call: 1 MiB echoed in %.0f ms (sha256 %s...)"
              % (elapsed * 1000, hashlib.sha256(echoed).hexdigest()[:16]))
        outcome = (True, None)
    except Exception:
        failure = Failure()
        print("FAILED: %s: %s" % (type(failure.value).__name__, failure.getErrorMessage()))
        outcome = (False, failure)
    finally:
        yield dialerTub.stopService()
        yield listenerTub.stopService()
        yield relay.stop()
    return outcome


def _isDoubleClientHello(failure: Optional[Failure]) -> bool:
    if failure is None:
        return False
    from OpenSSL.SSL import Error as SSLError

    return bool(failure.check(SSLError)) and "unexpected message" in str(failure.value)


@defer.inlineCallbacks
def main(reactor: Any) -> Any:
    stockOK, stockFailure = yield run(reactor, sidetls=False)
    if stockOK:
        print("-> unexpected: stock Foolscap worked over a dialed-out listener")
    elif _isDoubleClientHello(stockFailure):
        print("-> as expected: both ends sent a ClientHello")
    else:
        print("-> stock Foolscap failed, but not with the double-ClientHello error")
    print()
    sidetlsOK, _ = yield run(reactor, sidetls=True)
    if sidetlsOK:
        print("-> sidetls: the listener was the TLS server although its socket dialed out")
    print()
    good = (not stockOK) and _isDoubleClientHello(stockFailure) and sidetlsOK
    print("RESULT:", "OK" if good else "UNEXPECTED")
    if not good:
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main)
