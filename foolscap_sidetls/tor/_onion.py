"""
Listening as an onion service: C{ADD_ONION} over the handler's control
connection to a Tub listener on 127.0.0.1, waiting for the descriptor
uploads, and removing the service when the Tub stops.
"""

from __future__ import annotations

import os
from base64 import b64decode
from binascii import Error as BinasciiError
from typing import Any, Callable, Optional, Union

from typing_extensions import Unpack

import txtorcon
from zope.interface import implementer
from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure

from .._endpoints import listener
from .._files import write_private
from .._limits import LimitKeywords, Limits, resolve
from ._common import _kind, _observe, _quietly, _UntilClosed, log
from ._control import _Session, _SharedTor
from ._errors import TorError
from ._handler import TorHandler, control_endpoint

#: The onion port L{listen} publishes when not told otherwise (Tahoe-LAFS's).
DEFAULT_ONION_PORT = 3457
#: How long L{listen} may take, bootstrap and descriptor upload included.
LISTEN_TIMEOUT = 300.0
_KEY_TYPE = "ED25519-V3"


@implementer(IStreamServerEndpoint)
class _LocalPort:
    """
    A server endpoint that tells L{listen} which port the Tub's listener got.

    Foolscap's C{Listener} drops listen errors on the floor; this reports
    them to L{listen} instead (which then removes the listener).
    """

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        self.listening: Deferred = Deferred()

    def __repr__(self) -> str:
        return "<onion service target %r>" % (self._endpoint,)

    def listen(self, factory: IProtocolFactory) -> Deferred:
        d = self._endpoint.listen(factory)
        result: Deferred = Deferred()

        def ok(port: IListeningPort) -> IListeningPort:
            if not self.listening.called:
                self.listening.callback(port)
            result.callback(port)
            return port

        def failed(f: Failure) -> None:
            if not self.listening.called:
                self.listening.errback(f)

        d.addCallbacks(ok, failed)
        return result


class _OnionService(service.Service):
    """
    Child service of a Tub: removes its onion service when the Tub stops,
    and closes the control connection if L{listen} opened it.
    """

    def __init__(
        self, session: _Session, service_id: str, reactor: Any, owned: Optional[_SharedTor]
    ) -> None:
        self.session = session
        self.service_id = service_id
        self._reactor = reactor
        self._owned = owned

    def stopService(self) -> Deferred:
        service.Service.stopService(self)
        d = (
            self.session.command("DEL_ONION %s" % (self.service_id,))
            if self.session.connected
            else defer.succeed(None)
        )
        d.addTimeout(10, self._reactor)
        d.addErrback(
            lambda f: log.info(
                "could not remove onion service {id}: {why}",
                id=self.service_id,
                why=f.getErrorMessage(),
            )
        )
        if self._owned is not None:
            owned = self._owned
            d.addBoth(lambda _: owned.stop(self._reactor))
        return d.addBoth(lambda _: None)


def _check_port(name: str, value: object, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            "listen() expects %s to be an int port number%s, got %s"
            % (name, " or None" if allow_none else "", _kind(value))
        )
    if not 1 <= value <= 65535:
        raise ValueError("listen() expects %s between 1 and 65535, got %d" % (name, value))


def _read_key(path: str) -> Optional[str]:
    """The key in C{path}, L{None} if there is no such file."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        text = ""
    prefix = _KEY_TYPE + ":"
    blob = text[len(prefix) :] if text.startswith(prefix) else None
    try:
        ok = blob is not None and len(b64decode(blob, validate=True)) == 64
    except (BinasciiError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "private_key_file %r does not hold a tor onion service key (expected "
            "one line 'ED25519-V3:<base64>', as foolscap_sidetls.tor.listen() "
            "writes); move it away to create a new key (and a new .onion address)" % (path,)
        )
    return text


def _reply_fields(reply: str) -> dict[str, str]:
    fields = {}
    for line in reply.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


async def _publish(
    session: _Session,
    external_port: int,
    local_port: int,
    key: Optional[str],
    report: Callable[[str], None],
    added: Callable[[str], None],
) -> tuple[str, Optional[str]]:
    """
    ADD_ONION, then wait until every HSDir tor started an upload to has
    answered and at least one stored the descriptor.

    Not txtorcon's C{create_onion_service(await_all_uploads=True)}: its
    waiting (C{txtorcon.onion._await_descriptor_upload}), fed the events
    of the tests, stays waiting on "UPLOAD E, UPLOAD F, UPLOADED E, FAILED
    F" (it checks for completion only on an UPLOADED) and fails at once
    when every upload failed, where tor retries later; it also counts
    HSDirs as a set, where tor may upload twice (two time periods) to one.
    """
    protocol = session.protocol
    events: list[list[str]] = []
    waiting = _UntilClosed(
        protocol,
        "the control connection to %s closed while publishing the onion service "
        "(did tor exit?)" % (session.where,),
    )
    uploaded = waiting.result
    service_id: list[str] = []

    def check() -> None:
        # Tor starts one upload per responsible HSDir (for the current and
        # the next time period) at once: wait until each has answered and
        # at least one took it, so a client asking any of them finds it.
        if not service_id or uploaded.called:
            return
        pending: dict[str, int] = {}
        stored = 0
        for event in events:
            if len(event) < 4 or event[1] != service_id[0]:
                continue
            action, hsdir = event[0], event[3]
            if action == "UPLOAD":
                pending[hsdir] = pending.get(hsdir, 0) + 1
            elif action in ("UPLOADED", "FAILED"):
                pending[hsdir] = pending.get(hsdir, 0) - 1
                stored += action == "UPLOADED"
        if stored and all(count <= 0 for count in pending.values()):
            uploaded.callback(None)

    def seen(text: str) -> None:
        events.append(text.split())
        check()

    await protocol.add_event_listener("HS_DESC", seen)
    try:
        command = "ADD_ONION %s Port=%d,127.0.0.1:%d" % (
            key or "NEW:" + _KEY_TYPE,
            external_port,
            local_port,
        )
        if key is not None:
            command += " Flags=DiscardPK"
        try:
            reply = await protocol.queue_command(command)
        except txtorcon.TorProtocolError as e:
            hint = ""
            if "collision" in str(e).lower():
                hint = " (is this private_key_file already in use by another listener on the same tor?)"
            raise TorError("tor refused to add the onion service: %s%s" % (e, hint)) from None
        fields = _reply_fields(reply)
        if "ServiceID" not in fields:
            raise TorError("tor's answer to ADD_ONION has no ServiceID: %r" % (reply,))
        service_id.append(fields["ServiceID"])
        added(fields["ServiceID"])
        report("waiting for tor to publish the onion service descriptor")
        check()
        await uploaded
    finally:
        if waiting.finish():
            _quietly(protocol.remove_event_listener("HS_DESC", seen))
    new_key = fields.get("PrivateKey") if key is None else None
    return service_id[0], new_key


def listen(
    tub: Any,
    tor: Union[TorHandler, IStreamClientEndpoint],
    local_port: Optional[int] = None,
    external_port: int = DEFAULT_ONION_PORT,
    private_key_file: Optional[str] = None,
    *,
    reactor: Any = None,
    timeout: Optional[float] = LISTEN_TIMEOUT,
    update_status: Optional[Callable[[str], None]] = None,
    limits: Optional[Limits] = None,
    **separate: Unpack[LimitKeywords],
) -> Deferred:
    """
    Make C{tub} reachable as an onion service; fires with its hint,
    C{"tor:<address>.onion:<external_port>"}, for C{tub.setLocation}.

    The Tub listens on C{127.0.0.1:local_port} (a free port if L{None})
    through a L{foolscap_sidetls.listener}, and tor forwards the onion's
    C{external_port} there.  The Deferred fires once the Tub is running
    and listening and tor has uploaded the onion's descriptor.  When the Tub
    stops, the onion service is removed (and the control connection closed
    if C{tor} was an endpoint).  On failure nothing is left behind: no Tub
    listener, no onion service, no control connection of ours.

    @param tor: a handler from L{control_endpoint}, L{control_endpoint_maker}
        or L{launch} (its control connection and tor are shared with its
        dials), or an C{IStreamClientEndpoint} to a tor control port (a
        control connection of its own, kept open while the Tub runs: an
        ephemeral onion service lives only as long as the connection that
        added it).
    @param private_key_file: where the onion's key is kept.  Missing: a new
        key is made and written there (mode 0600); present: it is reused,
        so the address stays the same across restarts.  L{None}: a new
        address every time, and tor forgets the key.
    @param timeout: seconds for the whole setup (L{None}: no limit).
    @param limits: What bounds each incoming connection: a
        L{foolscap_sidetls.Limits}, or the separate keywords below (its
        fields), not both.
    @param handshake_timeout: as for L{foolscap_sidetls.listener}, as are
        the next three.
    @param negotiation_timeout: seconds an incoming connection may take to
        finish negotiating; onion services are the usual target of floods
        of connections that open and say nothing, which without it are held
        until Foolscap's own 120 s negotiation timeout.
    @param close_timeout: seconds the peer gets to finish a close.
    @param max_negotiating: at most this many incoming connections
        negotiating at once (see L{foolscap_sidetls.listener} for which one
        a new connection beyond that drops).
    @param update_status: called with each step, as Foolscap's status is
        for dials (C{"launching tor"}, C{"waiting for tor bootstrap (NN%:
        ...)"}, C{"waiting for tor to publish the onion service
        descriptor"}, ...).
    """
    from foolscap.api import Tub

    if not isinstance(tub, Tub):
        raise TypeError(
            "foolscap_sidetls.tor.listen() expects a foolscap.api.Tub, got %s" % (_kind(tub),)
        )
    if isinstance(tor, TorHandler):
        if not tor.can_listen:
            raise TypeError(
                "foolscap_sidetls.tor.listen() needs tor's control port to publish an "
                "onion service, but %s only knows a SOCKS port; pass "
                "control_endpoint(...), launch(...) or an endpoint to the control port"
                % (tor.describe(),)
            )
        shared = tor._shared
        owned = None
    elif IStreamClientEndpoint.providedBy(tor):
        handler = control_endpoint(tor)
        shared = owned = handler._shared
    else:
        raise TypeError(
            "foolscap_sidetls.tor.listen() expects tor to be a handler from "
            "control_endpoint(...) or launch(...), or an IStreamClientEndpoint to "
            "tor's control port, got %s" % (_kind(tor),)
        )
    assert shared is not None
    chosen = resolve("foolscap_sidetls.tor.listen()", limits, **separate)
    _check_port("local_port", local_port, allow_none=True)
    _check_port("external_port", external_port, allow_none=False)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise ValueError(
            "listen() expects timeout to be a positive number of seconds or None, got %r"
            % (timeout,)
        )
    key = None
    key_path = None
    if private_key_file is not None:
        if not isinstance(private_key_file, (str, os.PathLike)):
            raise TypeError(
                "listen() expects private_key_file to be a path (str) or None, got %s"
                % (_kind(private_key_file),)
            )
        key_path = os.fspath(private_key_file)
        directory = os.path.dirname(os.path.abspath(key_path))
        if not os.path.isdir(directory):
            raise ValueError(
                "private_key_file %r: directory %r does not exist" % (key_path, directory)
            )
        key = _read_key(key_path)
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor

    state: dict[str, Any] = {
        "status": "connecting to tor",
        "listener": None,
        "service_id": None,
        "session": None,
    }

    def report(status: str) -> None:
        state["status"] = status
        if update_status is not None:
            update_status(status)

    def added(service_id: str) -> None:
        state["service_id"] = service_id

    async def run() -> str:
        # The Tub gets its listener at once, before tor answers: Tahoe-LAFS
        # checks that a node's Tub is listening while it builds the node.
        local = _LocalPort(TCP4ServerEndpoint(reactor, local_port or 0, interface="127.0.0.1"))
        state["listener"] = tub.listenOn(listener(local, limits=chosen))
        session = await shared.get(reactor, report)
        state["session"] = session
        report("waiting for the Tub to listen on 127.0.0.1 (is it running?)")
        try:
            port = await _observe(local.listening)
        except CancelledError:
            raise
        except Exception as e:
            raise TorError(
                "the Tub could not listen on 127.0.0.1:%s: %s" % (local_port or 0, e)
            ) from None
        report("adding the onion service")
        service_id, new_key = await _publish(
            session, external_port, port.getHost().port, key, report, added
        )
        if key_path is not None and new_key is not None:
            write_private(key_path, new_key + "\n")
        if not tub.running:
            raise TorError("the Tub stopped while its onion service was being published")
        _OnionService(session, service_id, reactor, owned).setServiceParent(tub)
        state["done"] = True
        log.info(
            "onion service {id}.onion:{port} -> 127.0.0.1:{local}",
            id=service_id,
            port=external_port,
            local=port.getHost().port,
        )
        return "tor:%s.onion:%d" % (service_id, external_port)

    def undo(f: Failure) -> Failure:
        listening = state["listener"]
        if listening is not None and listening in tub.getListeners():
            tub.stopListeningOn(listening)
        session = state["session"]
        if (
            state["service_id"] is not None
            and session is not None
            and session.connected
            and owned is None
        ):
            session.command("DEL_ONION %s" % (state["service_id"],)).addErrback(lambda _: None)
        if owned is not None:
            owned.stop(reactor)
        if f.check(defer.TimeoutError):
            raise TorError(
                "the onion service was not ready within %s s; it was %s"
                % (timeout, state["status"])
            ) from None
        return f

    d = Deferred.fromCoroutine(run())
    if timeout is not None:
        d.addTimeout(timeout, reactor)
    return d.addErrback(undo)
