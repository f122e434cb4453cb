"""
A Foolscap Tub on a Tor onion service, with foolscap-sidetls: listen on an
onion, print the FURL, and optionally dial it (through Tor) and call it.

Needs tor (Debian/Ubuntu: ``apt-get install tor``) and txtorcon
(``pip install 'foolscap-sidetls[tor]'``).

Use the system tor through its control port (enable it in
/etc/tor/torrc with ``ControlPort 9051`` and ``CookieAuthentication 1``,
restart tor, and make sure this user can read the cookie -- on Debian/Ubuntu
by being in the group ``debian-tor``)::

    .venv/bin/python examples/tor_onion.py --control tcp:127.0.0.1:9051

or let the example start a tor of its own (kept in --data-dir, so a second
run bootstraps faster)::

    .venv/bin/python examples/tor_onion.py --launch --data-dir ~/.cache/sidetls-tor

Then it prints the FURL and serves until Ctrl-C.  Other options:

    --dial            also connect to the FURL through Tor, call it with a
                      64 KiB payload, print the timings, and exit (status 0
                      on success)
    --dial FURL       only dial someone else's FURL and call "echo" on it
    --key-file PATH   keep the onion's key there: the same .onion address
                      (and FURL) on every run
    --torrc KEY=VALUE extra torrc option for --launch (repeatable), e.g. to
                      join a private test network

Every connection's TLS side is taken from its role: the listening Tub is the
TLS server, the dialing one the TLS client.  Progress (launching tor,
bootstrap percentage, descriptor publication) is printed as it happens.
Publishing a new onion on the real Tor network takes from a few seconds to
a minute or two, and the first connection to it about as long.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Optional

from zope.interface import implementer
from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString
from twisted.python.failure import Failure
from foolscap.api import Referenceable, Tub
from foolscap.ipb import IConnectionHintHandler

from foolscap_sidetls import tor

PAYLOAD = 64 * 1024
SELF_TEST_TIMEOUT = 600


class Echo(Referenceable):  # type: ignore[misc]
    def remote_echo(self, data: bytes) -> bytes:
        return data


def _handler(args: argparse.Namespace, reactor: Any) -> tor.TorHandler:
    if args.launch:
        extra = {}
        for option in args.torrc:
            key, _, value = option.partition("=")
            extra.setdefault(key, []).append(value)
        return tor.launch(data_directory=args.data_dir, extra_config=extra or None)
    return tor.control_endpoint(clientFromString(reactor, args.control))


@implementer(IConnectionHintHandler)
class _Printer:
    """A hint handler wrapper that prints each status Foolscap is given."""

    def __init__(self, inner: tor.TorHandler, started: float) -> None:
        self.inner = inner
        self.started = started

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> Any:
        def status(text: str) -> None:
            print("  [%5.1f s] %s" % (time.monotonic() - self.started, text), flush=True)
            update_status(text)

        return self.inner.hint_to_endpoint(hint, reactor, status)

    def describe(self) -> str:
        return self.inner.describe()


async def _call(furl: str, handler: tor.TorHandler, started: float) -> None:
    dialing = Tub()
    dialing.startService()
    try:
        dialing.removeAllConnectionHintHandlers()
        dialing.addConnectionHintHandler("tor", _Printer(handler, started))
        t0 = time.monotonic()
        print("dialing %s" % (furl,), flush=True)
        rref = await dialing.getReference(furl)
        print(
            "connected in %.1f s (we are the TLS %s)"
            % (time.monotonic() - t0, rref.tracker.broker.transport.tlsSide),
            flush=True,
        )
        payload = os.urandom(PAYLOAD)
        t0 = time.monotonic()
        answer = await rref.callRemote("echo", payload)
        if answer != payload:
            raise RuntimeError("the echo came back different")
        print("echoed %d bytes in %.1f s" % (len(payload), time.monotonic() - t0), flush=True)
    finally:
        await dialing.stopService()


async def main(reactor: Any, args: argparse.Namespace) -> int:
    started = time.monotonic()
    handler = _handler(args, reactor)
    try:
        if isinstance(args.dial, str):
            await _call(args.dial, handler, started)
            return 0

        tub = Tub()
        tub.startService()
        print("publishing an onion service via %s ..." % (handler.describe(),), flush=True)
        try:
            hint = await tor.listen(
                tub,
                handler,
                private_key_file=args.key_file,
                update_status=lambda text: print(
                    "  [%5.1f s] %s" % (time.monotonic() - started, text), flush=True
                ),
            )
        except tor.TorError as e:
            print("error: %s" % (e,), file=sys.stderr)
            await tub.stopService()
            return 1
        tub.setLocation(hint)
        furl = tub.registerReference(Echo(), "echo")
        print(
            "published in %.1f s; listening as the TLS server on %s"
            % (time.monotonic() - started, hint)
        )
        print(furl, flush=True)

        if args.dial is True:
            try:
                await _call(furl, handler, started)
            finally:
                await tub.stopService()
            return 0

        print("serving until Ctrl-C", flush=True)
        stopped: defer.Deferred = defer.Deferred()
        reactor.addSystemEventTrigger("before", "shutdown", lambda: stopped.callback(None))
        await stopped
        await tub.stopService()
        return 0
    finally:
        await handler.stop()


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--control",
        default="tcp:127.0.0.1:9051",
        help="tor control port endpoint (default %(default)s)",
    )
    how.add_argument("--launch", action="store_true", help="start a tor of our own")
    parser.add_argument("--data-dir", help="DataDirectory for --launch (kept between runs)")
    parser.add_argument(
        "--torrc",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra torrc option for --launch",
    )
    parser.add_argument("--key-file", help="onion key file: the same address on every run")
    parser.add_argument(
        "--dial",
        nargs="?",
        const=True,
        default=False,
        metavar="FURL",
        help="dial our own FURL (or FURL) and call it",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()

    def run(reactor: Any) -> defer.Deferred:
        d = defer.Deferred.fromCoroutine(main(reactor, arguments))
        if arguments.dial is not False:
            d.addTimeout(SELF_TEST_TIMEOUT, reactor)

        def done(code: int) -> None:
            if code:
                raise SystemExit(code)

        def failed(f: Failure) -> None:
            if f.check(SystemExit):
                f.raiseException()
            print("error: %s" % (f.getErrorMessage(),), file=sys.stderr)
            raise SystemExit(1)

        return d.addCallbacks(done, failed)

    task.react(run)
