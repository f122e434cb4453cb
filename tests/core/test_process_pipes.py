"""
Foolscap over a child process's stdin/stdout: a transport with no
startTLS at all.

The child (tests/_support/pipe_child.py) is a listener serving one connection on
its stdio through SideTLSFactory(isClient=False); the parent dials it
through a custom ``pipe:NAME`` hint whose endpoint is Twisted's
ProcessEndpoint.  With foolscap-sidetls the TLS layer is spliced above the
pipes and the call works; stock Foolscap asks the pipe transport for
startTLS and fails.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from typing import Any

from zope.interface import implementer
from twisted.internet import defer, error, reactor
from twisted.internet.endpoints import ProcessEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.trial import unittest
from foolscap.api import Tub
from foolscap.ipb import IConnectionHintHandler, InvalidHintError

import foolscap_sidetls

from .._support.waiting import coroutine, until

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_support", "pipe_child.py")

_HINT = re.compile(r"^pipe:([a-z0-9-]+)$")


@implementer(IStreamClientEndpoint)
class _RecordingEndpoint:
    """Notes each connected protocol's transport, to find the child later."""

    def __init__(self, inner: IStreamClientEndpoint, transports: list[Any]) -> None:
        self._inner = inner
        self._transports = transports

    def connect(self, factory: IProtocolFactory) -> Any:
        def record(protocol: Any) -> Any:
            self._transports.append(protocol.transport)
            return protocol

        return self._inner.connect(factory).addCallback(record)


@implementer(IConnectionHintHandler)
class PipeHintHandler:
    """
    A stock (socket-sided, so to speak) handler for ``pipe:NAME`` hints:
    each connection spawns the child and speaks over its stdin/stdout.
    """

    def __init__(self, certFile: str, swissnum: str, transports: list[Any]) -> None:
        self._argv = [sys.executable, CHILD, certFile, swissnum]
        self._transports = transports

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> Any:
        mo = _HINT.search(hint)
        if not mo:
            raise InvalidHintError("unrecognized pipe hint %r" % (hint,))
        endpoint = ProcessEndpoint(
            reactor, sys.executable, self._argv, env=dict(os.environ)
        )
        return _RecordingEndpoint(endpoint, self._transports), mo.group(1)

    def describe(self) -> str:
        return "pipe"


class ProcessPipeTests(unittest.TestCase):
    timeout = 20

    def setUp(self) -> None:
        # The child's identity is made here, so the FURL exists before the
        # child does.
        identity = Tub()
        # Not self.mktemp(): that writes under the current directory.
        directory = tempfile.mkdtemp(prefix="sidetls-pipes-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.certFile = os.path.join(directory, "child.pem")
        with open(self.certFile, "wb") as f:
            f.write(identity.getCertData())
        self.swissnum = identity.generateSwissnumber(Tub.NAMEBITS)
        self.furl = "pb://%s@pipe:child/%s" % (identity.getTubID(), self.swissnum)
        self.transports: list[Any] = []
        self.addCleanup(self._reapChildren)

    def _reapChildren(self) -> "defer.Deferred[Any]":
        """Kill any child still running and wait until it is reaped."""
        for transport in self.transports:
            if transport.pid is not None:
                try:
                    transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass
        return defer.Deferred.fromCoroutine(
            until(self, lambda: all(t.pid is None for t in self.transports), 5.0, "the child process to be reaped")
        )

    def makeDialer(self, sidetls: bool) -> Tub:
        tub = Tub(_test_options={"connect_timeout": 10})
        tub.removeAllConnectionHintHandlers()
        pipes = PipeHintHandler(self.certFile, self.swissnum, self.transports)
        tub.addConnectionHintHandler(
            "pipe", foolscap_sidetls.handler(pipes) if sidetls else pipes
        )
        tub.startService()
        return tub

    def assertChildGone(self) -> None:
        self.assertEqual(len(self.transports), 1, "expected exactly one child")
        self.assertIsNone(
            self.transports[0].pid, "child process still running or not reaped"
        )

    @coroutine
    async def test_sidetls_over_pipes(self) -> Any:
        """
        A dialer wrapped with foolscap_sidetls.handler reaches the child's
        Tub over its pipes; both ends took the TLS side of their role.
        """
        tub = self.makeDialer(sidetls=True)
        try:
            rref = await tub.getReference(self.furl)
            payload = os.urandom(200 * 1024)
            echoed = await rref.callRemote("echo", payload)
            self.assertEqual(echoed, payload)

            child = await rref.callRemote("describe")
            ours = rref.tracker.broker.transport
            pid = self.transports[0].pid
        finally:
            await tub.stopService()

        self.assertEqual(child["pid"], pid)
        self.assertEqual(
            (child["role"], child["tlsSide"], child["below"]),
            ("listener", "server", "_ServeOnce"),
        )
        self.assertEqual((ours.role, ours.tlsSide), ("dialer", "client"))
        self.assertEqual(type(ours.transport).__name__, "_ProcessEndpointTransport")
        self.assertFalse(hasattr(ours.transport, "startTLS"))
        # Stopping the Tub closed the pipes; the child exited and was reaped.
        self.assertChildGone()
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)

    @coroutine
    async def test_stock_fails_over_pipes(self) -> Any:
        """
        Stock Foolscap over the same pipes asks the transport for startTLS,
        which a process transport does not have.
        """
        tub = self.makeDialer(sidetls=False)
        try:
            d = tub.getReference(self.furl)
            failure = await self.assertFailure(d, AttributeError)
        finally:
            await tub.stopService()
        self.assertIn("startTLS", str(failure))
        self.assertIn("_ProcessEndpointTransport", str(failure))
        # The failed negotiation closed the pipes and the child exited.
        self.assertChildGone()
