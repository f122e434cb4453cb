"""
A Foolscap Tub listening on I2P with foolscap-sidetls: listen on an I2P
destination, print the FURL, and optionally dial it (over I2P) and call it.

Needs an I2P router with its SAM bridge enabled.  For i2pd (Debian/Ubuntu:
``apt-get install i2pd``) that is, in /etc/i2pd/i2pd.conf::

    [sam]
    enabled = true
    address = 127.0.0.1
    port = 7656

then ``systemctl restart i2pd``.  Give the router a few minutes after its
first start to join the network.  Then::

    .venv/bin/python examples/i2p_listener.py                 # SAM at 127.0.0.1:7656
    .venv/bin/python examples/i2p_listener.py --sam tcp:127.0.0.1:7656
    .venv/bin/python examples/i2p_listener.py --i2pd-conf /etc/i2pd
    .venv/bin/python examples/i2p_listener.py --launch --data-dir ~/.cache/sidetls-i2pd

It prints the FURL and serves until Ctrl-C.  Other options:

    --dial             also connect to the FURL over I2P (through a second
                       Tub and SAM session), call it with a 64 KiB payload,
                       print the timings, and exit (status 0 on success)
    --dial FURL        only dial someone else's FURL and call "echo" on it
    --key-file PATH    where the destination's private key is kept (default:
                       ./i2p-listener.key): the same .b32.i2p address, and
                       FURL, on every run
    --option KEY=VALUE I2CP/SAM session option (repeatable), e.g.
                       inbound.length=1 for faster, less anonymous tunnels
    --launch           start a private i2pd instead (stopped on exit);
                       --data-dir keeps its router identity and netDb, so a
                       second run joins the network much faster
    --i2pd-config K=V  extra i2pd setting for --launch (repeatable)

The listening Tub is the TLS server of every connection even though SAM hands
it each one over a socket it opened itself (STREAM ACCEPT); the dialing Tub is
the TLS client.  Progress is printed as it happens: "launching i2pd",
"opening SAM session (can take ~20 s)" (i2pd builds the session's tunnels;
on the real network it can take longer), "connecting to ... over I2P".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Optional

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.python.failure import Failure
from foolscap.api import Referenceable, Tub

from foolscap_sidetls import i2p

PAYLOAD = 64 * 1024


class Echo(Referenceable):
    def remote_echo(self, data: bytes) -> bytes:
        return data


def pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise SystemExit("%s %r: expected KEY=VALUE" % (what, value))
        result[key] = val
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--sam", help="SAM bridge endpoint (default tcp:127.0.0.1:7656)")
    where.add_argument("--i2pd-conf", metavar="DIR", help="read the SAM address from DIR/i2pd.conf")
    where.add_argument("--launch", action="store_true", help="start a private i2pd")
    parser.add_argument("--data-dir", help="i2pd data directory for --launch")
    parser.add_argument("--i2pd-config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--key-file", default="i2p-listener.key")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--dial", nargs="?", const="self", metavar="FURL")
    return parser.parse_args(argv)


def make_handler(reactor: Any, args: argparse.Namespace) -> i2p.I2PHandler:
    options = pairs(args.option, "--option")
    if args.launch:
        return i2p.launch(
            data_directory=args.data_dir, config=pairs(args.i2pd_config, "--i2pd-config"), options=options
        )
    if args.i2pd_conf:
        return i2p.local_i2p(args.i2pd_conf, options)
    if args.sam:
        return i2p.sam_endpoint(clientFromString(reactor, args.sam), options)
    return i2p.default(reactor, options)


def status_printer(who: str, started: float) -> Any:
    def show(status: str) -> None:
        print("  [%5.1f s] %s: %s" % (time.monotonic() - started, who, status), flush=True)

    return show


async def dial(handler: i2p.I2PHandler, furl: str, started: float) -> int:
    tub = Tub()
    tub.startService()
    tub.addConnectionHintHandler("i2p", handler)
    try:
        print("dialing %s" % (furl,), flush=True)
        await handler.prepare(status_printer("dialer", started))
        t0 = time.monotonic()
        rref = await tub.getReference(furl)
        connected = time.monotonic() - t0
        transport = rref.tracker.broker.transport
        payload = os.urandom(PAYLOAD)
        t0 = time.monotonic()
        answer = await rref.callRemote("echo", payload)
        called = time.monotonic() - t0
        if answer != payload:
            print("echo returned something else!")
            return 1
        print(
            "connected in %.2f s (role=%s, TLS %s); %d KiB echoed in %.2f s"
            % (connected, transport.role, transport.tlsSide, PAYLOAD // 1024, called)
        )
        return 0
    finally:
        await tub.stopService()


async def main(reactor: Any, argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        handler = make_handler(reactor, args)
    except (i2p.I2PError, ValueError, TypeError) as e:
        print("error: %s" % (e,), file=sys.stderr)
        return 2

    if args.dial not in (None, "self"):
        # Only dial someone else's FURL.
        dialer = handler
        try:
            return await dial(dialer, args.dial, started)
        except Exception as e:
            print("error: %s" % (e,), file=sys.stderr)
            return 1
        finally:
            await dialer.stop()

    tub = Tub()
    tub.startService()
    tub.addConnectionHintHandler("i2p", handler)
    prepared: Optional[Deferred] = None
    failures: list[Failure] = []
    if args.dial == "self":
        # A second Tub will dial us through the handler's dialing session (a
        # transient destination of its own), which opens while ours does.
        prepared = handler.prepare(status_printer("dialer", started))
        prepared.addErrback(failures.append)
    try:
        print("listening on I2P (key in %s) through %s" % (args.key_file, handler.describe()), flush=True)
        print("  [%5.1f s] listener: opening SAM session (can take ~20 s)" % (time.monotonic() - started,), flush=True)
        hint = await i2p.listen(tub, handler, args.key_file)
        tub.setLocation(hint)
        furl = tub.registerReference(Echo(), "echo")
        print("  [%5.1f s] listening" % (time.monotonic() - started,))
        print("FURL: %s" % (furl,), flush=True)
        if prepared is not None:
            await prepared
            if failures:
                failures[0].raiseException()
            return await dial(handler, furl, started)
        print("serving; Ctrl-C to stop")
        await defer.Deferred()  # until the reactor stops
        return 0
    except Exception as e:
        print("error: %s" % (e,), file=sys.stderr)
        return 1
    finally:
        if tub.running:
            await tub.stopService()
        await handler.stop()


def run(reactor: Any) -> Deferred:
    d = defer.Deferred.fromCoroutine(main(reactor, sys.argv[1:]))

    def done(code: Any) -> None:
        if isinstance(code, Failure):
            code.printTraceback()
            code = 1
        raise SystemExit(code)

    return d.addBoth(done)


if __name__ == "__main__":
    task.react(run)
