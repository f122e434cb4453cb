"""
The connection-hint handler (L{TorHandler}) and the public functions that
make one: by SOCKS port, by control port (given or made) or by launching a
tor.
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable, Optional

from typing_extensions import Unpack

from foolscap.ipb import IConnectionHintHandler, InvalidHintError
from zope.interface import implementer
from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint

from .._endpoints import _dialer
from .._limits import DialerLimitKeywords, Limits, resolve_dialer
from ._bootstrap import BOOTSTRAP_TIMEOUT
from ._common import _check_bootstrap_timeout, _kind, _require_endpoint, _where
from ._control import _open_control, _Session, _SharedTor
from ._dial import _parse_hint, _TorClient
from ._errors import TorError
from ._launch import _check_extra_config, _find_tor, _Launcher


@implementer(IConnectionHintHandler)
class TorHandler(service.Service):
    """
    A Foolscap connection-hint handler for C{tor:} (and C{tcp:}) hints whose
    connections go through tor and are TLS clients (sidetls dialers).

    Made by L{socks_endpoint}, L{default_socks}, L{control_endpoint},
    L{control_endpoint_maker} and L{launch}; the last three also serve as
    the C{tor} argument of L{listen}, sharing their one control connection
    (and launched tor).

    Its L{Limits} (C{limits=}, or the separate keywords, not both) are
    those of L{foolscap_sidetls.dialer}, for every connection it dials.

    It is a Twisted service, as L{foolscap_sidetls.i2p.I2PHandler} is:
    C{h.setServiceParent(tub)} stops it (its control connection, its
    launched tor) when the Tub stops; or call L{stop}.

    @ivar limits: Those of every dialer it makes (read-only).
    """

    #: Its endpoints are dialers already: foolscap_sidetls.handler() and
    #: install() leave it as it is.
    _sidetlsRoleBased = True

    def __init__(
        self,
        description: str,
        socks: Optional[IStreamClientEndpoint] = None,
        shared: Optional[_SharedTor] = None,
        launcher: Optional[_Launcher] = None,
        clock: Optional[IReactorTime] = None,
        limits: Optional[Limits] = None,
        **separate: Unpack[DialerLimitKeywords],
    ) -> None:
        self._description = description
        self._socks = socks
        self._shared = shared
        self._stopped: Optional[Deferred] = None
        self._launcher = launcher
        self._clock = clock
        self._limits = resolve_dialer("foolscap_sidetls.tor.TorHandler()", limits, **separate)

    @property
    def limits(self) -> Limits:
        return self._limits

    def __repr__(self) -> str:
        return "<foolscap_sidetls.tor handler: %s>" % (self._detail(),)

    def _detail(self) -> str:
        if self._launcher is not None:
            detail = self._launcher.describe()
        else:
            detail = self._description
        session = self._shared.session if self._shared is not None else None
        if session is not None and session.connected and session.socks is not None:
            detail += ", SOCKS %s" % (session.socks_where,)
        return detail

    def describe(self) -> str:
        """C{"sidetls+tor (...)"}: how this handler reaches tor."""
        return "sidetls+tor (%s)" % (self._detail(),)

    @property
    def can_listen(self) -> bool:
        """Whether L{listen} can use this handler (it has a control port)."""
        return self._shared is not None

    def hint_to_endpoint(
        self, hint: str, reactor: Any, update_status: Callable[[str], None]
    ) -> Deferred:
        """
        Parse the hint (as Foolscap does: C{tor:HOST:PORT},
        C{tcp:HOST:PORT}; non-public numeric addresses are refused) and
        return a dialer; tor itself is made ready when it connects.
        """

        try:
            host, port = _parse_hint(hint)
        except InvalidHintError:
            return defer.fail()
        ep = _TorClient(self, host, port, reactor, update_status)
        return defer.succeed((_dialer(ep, self._clock, self._limits), host))

    async def _socks_endpoint(
        self, reactor: Any, update_status: Callable[[str], None]
    ) -> tuple[Optional[IStreamClientEndpoint], str]:
        if self._shared is None:
            if self._socks is None:
                return None, "127.0.0.1:9050 or 127.0.0.1:9150"
            return self._socks, _where(self._socks)
        session = await self._shared.get(reactor, update_status)
        if session.socks is None:
            raise TorError(
                "%s has %s; enable one ('SocksPort 9050' in torrc) to dial through it"
                % (session.where, session.socks_where)
            )
        return session.socks, session.socks_where

    def stop(self) -> Deferred:
        """
        Close this handler's control connection and stop the tor it
        launched (if any); fires when done, however often it is called
        (the Tub's stopService and the application may both call it).  The
        handler cannot be used afterwards.  Stop the Tubs using it first:
        their onion services live on this tor.
        """
        if self._stopped is None:
            from twisted.internet import reactor

            steps = []
            if self._shared is not None:
                steps.append(self._shared.stop(reactor))
            if self._launcher is not None:
                steps.append(self._launcher.stop())
            self._stopped = defer.gatherResults(steps, consumeErrors=True).addCallback(lambda _: None)
        # Each caller gets its own Deferred, so no caller's callbacks can
        # change what the next one sees; a failure goes to the first caller
        # only, later ones see that the stop is over.  Not Foolscap's
        # OneShotObserverList: it fires through the global reactor (eventual
        # send), so a stop on an in-memory reactor would never be seen to end.
        mine: Deferred = Deferred()
        self._stopped.addBoth(mine.callback)
        return mine

    def stopService(self) -> Deferred:
        service.Service.stopService(self)
        return self.stop()


def socks_endpoint(
    tor_socks_endpoint: IStreamClientEndpoint,
    *,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> TorHandler:
    """
    Dial through the tor SOCKS port at C{tor_socks_endpoint}.  Cannot
    L{listen}: that needs a control port.

    Here and in the other handler makers, the dialers' limits are given as
    one C{limits=}L{foolscap_sidetls.Limits} (without C{max_negotiating})
    or as the separate keywords C{handshake_timeout},
    C{negotiation_timeout} and C{close_timeout} (those of
    L{foolscap_sidetls.dialer}), not both.
    """
    _require_endpoint(tor_socks_endpoint, "foolscap_sidetls.tor.socks_endpoint()")
    limits = resolve_dialer("foolscap_sidetls.tor.socks_endpoint()", limits, **separate)
    return TorHandler(
        "SOCKS %s" % (_where(tor_socks_endpoint),),
        socks=tor_socks_endpoint,
        limits=limits,
    )


def default_socks(
    *,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> TorHandler:
    """Dial through a tor SOCKS port on 127.0.0.1:9050 (system tor) or :9150 (Tor Browser)."""
    limits = resolve_dialer("foolscap_sidetls.tor.default_socks()", limits, **separate)
    return TorHandler(
        "SOCKS 127.0.0.1:9050 or 127.0.0.1:9150",
        limits=limits,
    )


def control_endpoint(
    tor_control_endpoint: IStreamClientEndpoint,
    *,
    bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> TorHandler:
    """
    Use the running tor whose control port is C{tor_control_endpoint}: one
    control connection, opened on first use (authenticated with tor's
    cookie), tells where the SOCKS port is and when tor has bootstrapped;
    L{listen} publishes onion services over it.  Reopened on the next use
    if it is lost.

    @param bootstrap_timeout: seconds tor may go without bootstrap progress
        before the dials (and L{listen}) waiting for it fail with
        L{TorBootstrapError}, which says what tor reports; progress starts
        the clock again.  L{None}: wait as long as it takes.
    """
    _require_endpoint(tor_control_endpoint, "foolscap_sidetls.tor.control_endpoint()")
    limits = resolve_dialer("foolscap_sidetls.tor.control_endpoint()", limits, **separate)
    stall = _check_bootstrap_timeout("foolscap_sidetls.tor.control_endpoint()", bootstrap_timeout)

    def opener(reactor: Any, report: Callable[[str], None]) -> Awaitable[_Session]:
        return _open_control(reactor, tor_control_endpoint, report, bootstrap_timeout=stall)

    shared = _SharedTor(opener, "tor control port %s" % (_where(tor_control_endpoint),))
    return TorHandler(
        "control port %s" % (_where(tor_control_endpoint),),
        shared=shared,
        limits=limits,
    )


def control_endpoint_maker(
    tor_control_endpoint_maker: Callable[..., Any],
    takes_status: bool = False,
    *,
    bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> TorHandler:
    """
    Like L{control_endpoint}, with the endpoint made on first use by
    C{tor_control_endpoint_maker(reactor)} -- or C{(reactor, update_status)}
    with C{takes_status=True} -- which may return a Deferred.  The endpoint
    it gives is kept; the maker runs again only if it failed.
    """
    if not callable(tor_control_endpoint_maker):
        raise TypeError(
            "foolscap_sidetls.tor.control_endpoint_maker() expects a callable "
            "returning an IStreamClientEndpoint (or a Deferred firing with one), "
            "got %s" % (_kind(tor_control_endpoint_maker),)
        )
    limits = resolve_dialer("foolscap_sidetls.tor.control_endpoint_maker()", limits, **separate)
    stall = _check_bootstrap_timeout("foolscap_sidetls.tor.control_endpoint_maker()", bootstrap_timeout)
    made: list[IStreamClientEndpoint] = []

    async def opener(reactor: Any, report: Callable[[str], None]) -> _Session:
        if not made:
            report("making tor control endpoint")
            if takes_status:
                result = tor_control_endpoint_maker(reactor, report)
            else:
                result = tor_control_endpoint_maker(reactor)
            endpoint = await defer.maybeDeferred(lambda: result)
            if not IStreamClientEndpoint.providedBy(endpoint):
                raise TypeError(
                    "the tor control endpoint maker %r returned %s, not an "
                    "IStreamClientEndpoint" % (tor_control_endpoint_maker, _kind(endpoint))
                )
            made.append(endpoint)
        return await _open_control(reactor, made[0], report, bootstrap_timeout=stall)

    name = getattr(tor_control_endpoint_maker, "__name__", repr(tor_control_endpoint_maker))
    shared = _SharedTor(opener, "tor control port from %s()" % (name,))
    return TorHandler(
        "control port from %s()" % (name,),
        shared=shared,
        limits=limits,
    )


def launch(
    data_directory: Optional[str] = None,
    tor_binary: Optional[str] = None,
    extra_config: Optional[dict[str, Any]] = None,
    *,
    bootstrap_timeout: Optional[float] = BOOTSTRAP_TIMEOUT,
    limits: Optional[Limits] = None,
    **separate: Unpack[DialerLimitKeywords],
) -> TorHandler:
    """
    Start a tor of our own on first use (once per handler), wait for it to
    bootstrap, and dial through it; L{listen} can publish onion services on
    it.  It gets a SOCKS and a control port on 127.0.0.1 chosen by tor,
    cookie authentication, and exits when this process does.  Stop it with
    the handler's C{stop()} (it is also stopped when the reactor shuts
    down).

    @param data_directory: tor's DataDirectory (kept; a later launch with
        the same directory starts faster).  L{None}: a temporary directory,
        removed when tor stops.
    @param tor_binary: the tor executable; L{None} searches PATH and
        C{/usr/sbin}.
    @param extra_config: further torrc options, C{{"Option": "value"}} or
        C{{"Option": ["value1", "value2"]}} for repeated lines (for
        example the C{DirAuthority} lines of a private network).
    @param bootstrap_timeout: seconds tor may go without bootstrap progress
        before the dials (and L{listen}) waiting for it fail with
        L{TorBootstrapError} -- saying what tor reports and where its log
        is -- and this tor is stopped (the next use launches another);
        progress starts the clock again.  L{None}: wait as long as it
        takes.  Tor logs to C{sidetls-tor.log} in C{data_directory} (with
        a temporary one: a temporary file, kept if the launch failed).
    @raise TorNotFound: no tor executable.
    @raise TypeError, ValueError: unusable arguments.
    """
    limits = resolve_dialer("foolscap_sidetls.tor.launch()", limits, **separate)
    if data_directory is not None and not isinstance(data_directory, (str, os.PathLike)):
        raise TypeError(
            "launch() expects data_directory to be a path (str) or None, got %s"
            % (_kind(data_directory),)
        )
    if tor_binary is not None and not isinstance(tor_binary, (str, os.PathLike)):
        raise TypeError(
            "launch() expects tor_binary to be a path (str) or None, got %s" % (_kind(tor_binary),)
        )
    config = _check_extra_config(extra_config)
    stall = _check_bootstrap_timeout("foolscap_sidetls.tor.launch()", bootstrap_timeout)
    binary = _find_tor(os.fspath(tor_binary) if tor_binary is not None else None)
    launcher = _Launcher(
        os.fspath(data_directory) if data_directory is not None else None, binary, config, stall
    )
    shared = _SharedTor(launcher.open, "the tor launched by foolscap_sidetls.tor.launch()")
    return TorHandler(
        "launched tor",
        shared=shared,
        launcher=launcher,
        limits=limits,
    )
