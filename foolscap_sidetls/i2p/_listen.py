"""
L{listen}: a Tub listening on an I2P destination, through a SAM session of
its own and a L{foolscap_sidetls.listener} (each accepted stream is the TLS
server), its key kept in a file.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Callable, Mapping, Optional, Union

from typing_extensions import Unpack

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from .._endpoints import listener
from .._files import write_private
from .._limits import LimitKeywords, Limits, resolve
from ._handler import I2PHandler, sam_endpoint
from ._keys import claim, read_key
from .sam import SAMBridge, SAMServerEndpoint, SAMSession, b32, check_nickname, check_options
from .sam._util import ignore_status, kind, log

async def keyed_session(
    bridge: SAMBridge,
    path: str,
    key: Optional[str],
    release: Optional[Callable[[], None]],
    nickname: Optional[str],
    options: dict[str, str],
    report: Callable[[str], None],
    what: str,
) -> SAMSession:
    """
    The listening session (not yet open) of the key in C{path} (C{key},
    claimed by C{release}): a key made through SAM and written (0600,
    atomically) first when there is none, and claimed then.  The claim is
    given back when the session closes.
    """
    if key is None:
        key = await bridge.generate_key(report)
        release = claim(bridge.where, b32(key), what)
        write_private(path, key)
    address = b32(key)
    session = SAMSession(
        bridge, "listen", nickname or "sidetls-listen-%s-%s" % (address[:8], secrets.token_hex(3)), key, options
    )
    if release is not None:
        session.on_close(release)
    return session


def _check_port(value: object) -> None:
    """The I2P port put in the hint: None, or 1 to 65535."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError("listen(): port must be a port number (int from 1 to 65535) or None, got %s" % (kind(value),))
    if value is not None and not 1 <= value <= 65535:
        raise ValueError("listen(): port must be from 1 to 65535, got %d" % (value,))


def listen(
    tub: Any,
    sam: Union[I2PHandler, IStreamClientEndpoint],
    keyfile: Union[str, "os.PathLike[str]"],
    port: Optional[int] = None,
    options: Optional[Mapping[str, Any]] = None,
    *,
    nickname: Optional[str] = None,
    reactor: Any = None,
    limits: Optional[Limits] = None,
    update_status: Callable[[str], None] = ignore_status,
    **separate: Unpack[LimitKeywords],
) -> Deferred:
    """
    Make C{tub} listen on an I2P destination; fires with its hint,
    C{"i2p:<52 chars>.b32.i2p"} (or C{...:PORT}), for C{tub.setLocation}.

    The destination's private key is kept in C{keyfile}: made through SAM
    and written there (mode 0600) if missing, reused if present (the same
    address across restarts; txi2p's key files work too).  A SAM session
    of its own is opened (~20 s on i2pd), then the Tub listens through a
    L{foolscap_sidetls.listener} -- each accepted stream is the TLS server
    -- and the Deferred fires once the Tub is listening (when the Tub is
    not running yet, once the listener is in place).  If the router drops
    the session, it is reopened with the same key.  When the Tub stops, so
    does the listener and its session.  On failure nothing is left: no
    listener, no session.

    @param sam: a handler from L{sam_endpoint}, C{default}, C{local_i2p} or
        C{launch} (a launched i2pd then stops with this Tub, unless the
        handler already had a service parent), or an IStreamClientEndpoint
        to a SAM bridge.
    @param port: an I2P port to put in the hint; dialers send it as
        C{TO_PORT}.  The session accepts streams to any port.
    @param options: I2CP/SAM options for the listening session (default:
        the handler's).
    @param limits: those of L{foolscap_sidetls.listener}, or the separate
        keywords (not both): C{handshake_timeout} (seconds to wait for each
        TLS handshake), and the next three.
    @param negotiation_timeout: seconds an incoming connection may take to
        finish negotiating; without it a flood of streams that open and say
        nothing is held until Foolscap's own 120 s negotiation timeout.
    @param close_timeout: seconds the peer gets to finish a close.
    @param max_negotiating: at most this many incoming connections
        negotiating at once (see L{foolscap_sidetls.listener} for which one
        a new connection beyond that drops).
    @param update_status: called with what opening the listening session
        waits for, in words (C{"launching i2pd"}, C{"opening SAM session
        ..."}, or why it does not open: a launched i2pd without peers, an
        attached router silent for N s).
    """
    from foolscap.api import Tub

    if not isinstance(tub, Tub):
        raise TypeError("foolscap_sidetls.i2p.listen() expects a foolscap.api.Tub, got %s" % (kind(tub),))
    if isinstance(sam, I2PHandler):
        handler = sam
        attach = handler.parent is None
    elif IStreamClientEndpoint.providedBy(sam):
        handler = sam_endpoint(sam, options, reactor=reactor)
        attach = True
    else:
        raise TypeError(
            "foolscap_sidetls.i2p.listen() expects sam to be a handler from sam_endpoint(), "
            "default(), local_i2p() or launch(), or an IStreamClientEndpoint to the SAM bridge, "
            "got %s" % (kind(sam),)
        )
    if handler._stopped:
        raise ValueError("listen(): the I2P handler %r was stopped" % (handler,))
    chosen = resolve("foolscap_sidetls.i2p.listen()", limits, **separate)
    if not isinstance(keyfile, (str, os.PathLike)):
        raise TypeError("listen() expects keyfile to be a path (str), got %s" % (kind(keyfile),))
    path = os.fspath(keyfile)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError("listen(): keyfile %r: directory %r does not exist" % (path, directory))
    _check_port(port)
    if not callable(update_status):
        raise TypeError("listen() expects update_status to be a callable taking a str, got %s" % (kind(update_status),))
    checked = check_options(options, "listen()") if options is not None else handler.options
    check_nickname(nickname, "listen()")
    key = read_key(path)
    bridge = handler._bridge
    if reactor is not None and bridge._reactor is None:
        bridge._reactor = reactor
    release = claim(bridge.where, b32(key), "listen()") if key is not None else None
    state: dict[str, Any] = {"session": None, "listener": None}

    async def run() -> str:
        session = await keyed_session(bridge, path, key, release, nickname, checked, update_status, "listen()")
        state["session"] = session
        handler._listening.add(session)
        session.on_close(lambda: handler._listening.discard(session))
        # The Tub gets its listener before the session opens (at once when
        # the key exists; the port waits for the session): Tahoe-LAFS
        # checks that a node's Tub is listening while it builds the node.
        endpoint = SAMServerEndpoint(session, port)
        state["listener"] = tub.listenOn(listener(endpoint, limits=chosen))
        await session.ready(update_status)
        if tub.running:
            await endpoint.when_listening()
            if endpoint.failure is not None:
                endpoint.failure.raiseException()
        if attach and handler.parent is None:
            # Attached last: detaching a service stops it.
            handler.setServiceParent(tub)
        assert session.address is not None
        address = session.address.host
        log.info("Tub {tubid} listening on I2P at {address}", tubid=tub.getShortTubID(), address=address)
        return "i2p:%s" % (address,) + (":%d" % (port,) if port else "")

    def undo(f: Failure) -> Failure:
        listening = state["listener"]
        if listening is not None and listening in tub.getListeners():
            tub.stopListeningOn(listening)
        session = state["session"]
        if session is not None:
            session.close()
        if release is not None:
            release()
        if not isinstance(sam, I2PHandler):
            handler.stop()
        return f

    return Deferred.fromCoroutine(run()).addErrback(undo)

