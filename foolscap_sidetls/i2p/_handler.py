"""
The connection-hint handler (L{I2PHandler}) and the public functions that
make one: for a SAM bridge's endpoint, the default address, the i2pd
configured here, or an i2pd launched for it.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Callable, Mapping, Optional, Union

from typing_extensions import Unpack

from zope.interface import implementer
from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint

from foolscap.ipb import IConnectionHintHandler

from .._handler import SideTLSHandler
from .._limits import DialerLimitKeywords, Limits, resolve_dialer
from ._keys import parse_hint
from ._launch import RESEED_TIMEOUT, _check_config, _find_i2pd, _Launcher
from ._local import DEFAULT_SAM_HOST, DEFAULT_SAM_PORT, find_config, sam_from_conf
from .sam import I2PError, SAMBridge, SAMClientEndpoint, SAMSession, check_nickname, check_options
from .sam._util import global_reactor, ignore_status, kind, where


@implementer(IConnectionHintHandler)
class _I2PHints:
    """The raw hint handler: plain SAM endpoints (L{I2PHandler} makes them dialers)."""

    def __init__(self, owner: "I2PHandler") -> None:
        self._owner = owner

    def hint_to_endpoint(
        self, hint: str, reactor: Any, update_status: Callable[[str], None]
    ) -> tuple[SAMClientEndpoint, str]:
        host, port = parse_hint(hint)
        owner = self._owner
        bridge = owner._bridge
        bridge._reactor = bridge._reactor or reactor
        return SAMClientEndpoint(bridge, owner._dial_session, host, port, update_status, owner._lookups), host

    def describe(self) -> str:
        return "i2p (%s)" % (self._owner._detail(),)


@implementer(IConnectionHintHandler)
class I2PHandler(SideTLSHandler, service.Service):
    """
    A Foolscap connection-hint handler for C{i2p:} hints whose connections
    go through a SAM bridge and are TLS clients (sidetls dialers); also the
    C{sam} argument of L{foolscap_sidetls.i2p.listen}.

    Made by L{sam_endpoint}, L{default}, L{local_i2p} and L{launch}.  Its one
    dialing session is opened on the first dial (or by L{prepare}) and
    shared by all.  It is a Twisted service: C{h.setServiceParent(tub)}
    closes its sessions (and stops a launched i2pd) when the Tub stops;
    C{listen} does that for a handler that has no parent yet.

    Its C{limits} are those of L{foolscap_sidetls.dialer}, for every
    connection it dials.
    """

    def __init__(
        self,
        bridge: SAMBridge,
        options: dict[str, str],
        nickname: Optional[str],
        clock: Optional[IReactorTime] = None,
        *,
        limits: Optional[Limits] = None,
    ) -> None:
        SideTLSHandler.__init__(self, _I2PHints(self), clock, limits=limits)
        self._bridge = bridge
        self.options = options
        self._nickname = nickname or "sidetls-dial-%s" % (secrets.token_hex(5),)
        self._session: Optional[SAMSession] = None
        self._listening: set[SAMSession] = set()
        self._lookups: dict[str, str] = {}
        self._stopped = False

    def __repr__(self) -> str:
        return "<foolscap_sidetls.i2p handler: %s>" % (self._detail(),)

    def _detail(self) -> str:
        if self._bridge.launcher is not None:
            return self._bridge.launcher.describe()
        return "SAM at %s" % (self._bridge.where,)

    @property
    def sam_endpoint(self) -> IStreamClientEndpoint:
        """The SAM bridge's client endpoint (a launched i2pd's may not answer yet)."""
        assert self._bridge.endpoint is not None
        return self._bridge.endpoint

    @property
    def sam_where(self) -> str:
        """The SAM bridge's address, e.g. C{"tcp:127.0.0.1:7656"}."""
        return self._bridge.where

    @property
    def dial_nickname(self) -> str:
        """The SAM session ID this handler dials with."""
        return self._nickname

    @property
    def launched_pid(self) -> Optional[int]:
        """The process id of the i2pd this handler launched and is running, else None."""
        launcher = self._bridge.launcher
        return launcher.pid if isinstance(launcher, _Launcher) else None

    @property
    def sessions_created(self) -> int:
        """How many SAM sessions have been created through this handler (dialing and listening)."""
        return self._bridge.sessions_created

    def new_destination_key(self) -> "Deferred[str]":
        """
        Have the router make a new destination's private key (SAM's
        C{DEST GENERATE}), without opening a session or listening: what a
        program making a node directory needs, as C{tahoe create-node
        --listen=i2p} does, to write the key file C{listen} will use.
        Fires with the key in I2P base64; C{address_of} gives its
        C{.b32.i2p} address once it is written to a file.
        """
        if self._stopped:
            return defer.fail(I2PError("this I2P handler (%s) was stopped" % (self._detail(),)))
        return defer.ensureDeferred(self._bridge.generate_key())

    def _dial_session(self) -> SAMSession:
        if self._stopped:
            raise I2PError("this I2P handler (%s) was stopped" % (self._detail(),))
        if self._session is None:
            self._session = SAMSession(self._bridge, "dial", self._nickname, None, self.options)
        return self._session

    def prepare(self, update_status: Callable[[str], None] = ignore_status) -> Deferred:
        """
        Open the dialing session now (it takes ~20 s on i2pd) rather than
        on the first dial; fires with None once it is open.
        """
        try:
            session = self._dial_session()
        except I2PError:
            return defer.fail()
        return session.ready(update_status).addCallback(lambda _: None)

    def stop(self) -> Deferred:
        """
        Close this handler's SAM sessions (dialing, and the listeners made
        with it) and stop the i2pd it launched, if any; fires when done.
        """
        self._stopped = True
        steps = []
        if self._session is not None:
            steps.append(self._session.close())
        for session in list(self._listening):
            steps.append(session.close())
        d = defer.gatherResults(steps, consumeErrors=True)
        launcher = self._bridge.launcher
        if isinstance(launcher, _Launcher):
            d.addBoth(lambda _: launcher.stop())
        return d.addBoth(lambda _: None)

    def stopService(self) -> Deferred:
        service.Service.stopService(self)
        return self.stop()


def _make_handler(
    bridge: SAMBridge, options: object, nickname: Optional[str], what: str, limits: Limits
) -> I2PHandler:
    """A handler for C{bridge}, its arguments checked (the errors naming C{what})."""
    checked = check_options(options, what)
    check_nickname(nickname, what)
    return I2PHandler(bridge, checked, nickname, limits=limits)


def sam_endpoint(
    sam_client_endpoint: IStreamClientEndpoint,
    options: Optional[Mapping[str, Any]] = None,
    nickname: Optional[str] = None,
    *,
    reactor: Any = None,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> I2PHandler:
    """
    A handler that dials C{i2p:} hints through the SAM bridge at
    C{sam_client_endpoint} (e.g. C{clientFromString(reactor,
    "tcp:127.0.0.1:7656")}).

    @param options: I2CP/SAM options for its sessions, e.g.
        C{{"inbound.length": "1"}}; C{listen} uses them too unless given its own.
    @param nickname: the SAM session ID for dialing (default: a random
        C{sidetls-dial-...}, so two Tubs never share one by accident).
    @param limits: those of L{foolscap_sidetls.dialer}, for every
        connection it dials (or the separate keywords, C{handshake_timeout},
        C{negotiation_timeout} and C{close_timeout}: not both).
    """
    if not IStreamClientEndpoint.providedBy(sam_client_endpoint):
        raise TypeError(
            "foolscap_sidetls.i2p.sam_endpoint() expects an IStreamClientEndpoint to the "
            "SAM bridge, such as clientFromString(reactor, 'tcp:127.0.0.1:7656'), got %s"
            % (kind(sam_client_endpoint),)
        )
    chosen = resolve_dialer("foolscap_sidetls.i2p.sam_endpoint()", limits, **separate)
    bridge = SAMBridge(sam_client_endpoint, where(sam_client_endpoint), reactor)
    return _make_handler(bridge, options, nickname, "sam_endpoint()", chosen)


def default(
    reactor: Any,
    options: Optional[Mapping[str, Any]] = None,
    *,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> I2PHandler:
    """A handler for the SAM bridge at 127.0.0.1:7656 (i2pd's and Java I2P's default)."""
    chosen = resolve_dialer("foolscap_sidetls.i2p.default()", limits, **separate)
    endpoint = TCP4ClientEndpoint(reactor, DEFAULT_SAM_HOST, DEFAULT_SAM_PORT)
    bridge = SAMBridge(endpoint, "tcp:%s:%d" % (DEFAULT_SAM_HOST, DEFAULT_SAM_PORT), reactor)
    return _make_handler(bridge, options, None, "default()", chosen)


def local_i2p(
    configdir: Union[str, "os.PathLike[str]", None] = None,
    options: Optional[Mapping[str, Any]] = None,
    *,
    reactor: Any = None,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> I2PHandler:
    """
    A handler for the SAM bridge of the i2pd configured in C{configdir}
    (its C{i2pd.conf}: C{[sam] enabled/address/port}); with L{None}, the
    first of C{~/.i2pd}, C{/var/lib/i2pd}, C{/etc/i2pd} that has one.

    @raise I2PConfigError: no i2pd.conf, no C{[sam]} section, SAM disabled,
        or a bad port -- the message says what to change.
    """
    chosen = resolve_dialer("foolscap_sidetls.i2p.local_i2p()", limits, **separate)
    path = find_config(configdir)
    host, port = sam_from_conf(path)
    if reactor is None:
        reactor = global_reactor()
    if ":" in host:
        endpoint: IStreamClientEndpoint = TCP6ClientEndpoint(reactor, host, port)
        address = "tcp:[%s]:%d" % (host, port)
    else:
        endpoint = TCP4ClientEndpoint(reactor, host, port)
        address = "tcp:%s:%d" % (host, port)
    bridge = SAMBridge(endpoint, "%s (from %s)" % (address, path), reactor)
    return _make_handler(bridge, options, None, "local_i2p()", chosen)


def launch(
    executable: Optional[str] = None,
    data_directory: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
    *,
    options: Optional[Mapping[str, Any]] = None,
    reactor: Any = None,
    limits: Optional[Limits] = None,
    reseed_timeout: Optional[float] = RESEED_TIMEOUT,
    **separate: Unpack[DialerLimitKeywords],
) -> I2PHandler:
    """
    A handler whose SAM bridge belongs to an i2pd of its own, started on
    first use (Foolscap's status: C{"launching i2pd"}) with SAM on a free
    loopback port, every other service (web console, proxies, BOB, I2CP)
    off, and client tunnels from nowhere.  Stopped with the handler
    (C{h.stop()}, or the Tub when C{h.setServiceParent(tub)} or C{listen}
    attached it); started again if it dies while in use.

    @param executable: the i2pd program (default: C{i2pd} on PATH or /usr/sbin).
    @param data_directory: i2pd's data directory (router identity, netDb);
        default: a temporary one, removed when i2pd stops.
    @param config: more i2pd settings, by their command-line names without
        C{--}: C{{"netid": 99, "ntcp2.port": 12345, "reseed.urls": ""}}.
    @param options: I2CP/SAM options for the handler's sessions.
    @param reseed_timeout: an i2pd that cannot reseed has no peers and
        never opens a session; when its log says reseeding failed, a
        session still not open this many seconds after it was asked for
        fails with L{I2PDFailed} saying so (and naming the log).  L{None}:
        keep waiting (e.g. for peers that will come later); the status
        still says why it waits.
    @raise I2PDNotFound: no i2pd executable ("install the Debian/Ubuntu
        package 'i2pd'").
    """
    chosen = resolve_dialer("foolscap_sidetls.i2p.launch()", limits, **separate)
    found = _find_i2pd(executable)
    if data_directory is not None and not isinstance(data_directory, (str, os.PathLike)):
        raise TypeError("launch() expects data_directory to be a path (str) or None, got %s" % (kind(data_directory),))
    settings = _check_config(config)
    if reseed_timeout is not None and (
        isinstance(reseed_timeout, bool)
        or not isinstance(reseed_timeout, (int, float))
        or not 0 < reseed_timeout < float("inf")
    ):
        raise ValueError(
            "launch(): reseed_timeout must be a number of seconds greater than 0, or None to keep "
            "waiting for peers, got %s" % (kind(reseed_timeout),)
        )
    directory = os.path.abspath(os.fspath(data_directory)) if data_directory is not None else None
    launcher = _Launcher(found, directory, settings, reactor, reseed_timeout)
    endpoint = TCP4ClientEndpoint(reactor if reactor is not None else global_reactor(), "127.0.0.1", launcher.sam_port)
    bridge = SAMBridge(endpoint, "tcp:127.0.0.1:%d" % (launcher.sam_port,), reactor, launcher)
    launcher.bridge = bridge
    return _make_handler(bridge, options, None, "launch()", chosen)
