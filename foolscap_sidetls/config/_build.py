"""
Building and starting the Tub a checked L{NodeConfig} describes: its
handlers, listeners, onion service and I2P destination; and, when the
start fails, stopping everything it had started and writing nothing.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence

from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from foolscap.util import allocate_tcp_port

from .. import i2p as _i2p
from .._endpoints import listener
from .._files import write_private
from .._parser import inner_server
from .._handler import handler as _sidetls_handler
from ._errors import ConfigError, StartError, _why
from ._model import NodeConfig, _Listen
from ._overlays import _read_i2p_key, _read_onion_key
from ._read import _parser
from ._schema import _TUB_OPTIONS, CERT_FILE, I2P_STATEDIR, PORTNUM_FILE, TOR_STATEDIR, _Reader

@implementer(IStreamServerEndpoint)
class _Watched:
    """
    A server endpoint that reports its listen() result: Foolscap's Listener
    drops listen errors, and a port already in use must fail the start.
    """

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        self.listening: Deferred = Deferred()

    def __repr__(self) -> str:
        return repr(self._endpoint)

    def listen(self, factory: IProtocolFactory) -> "Deferred[IListeningPort]":
        d = self._endpoint.listen(factory)

        def done(result: Any) -> Any:
            if not self.listening.called:
                if isinstance(result, Failure):
                    self.listening.errback(result)
                    return None
                self.listening.callback(result)
            return result

        return d.addBoth(done)


class _Stopper(service.Service):
    """Stops the handlers a configured Tub made (tor connections, launched daemons) with it."""

    def __init__(self, stops: list[Callable[[], Any]]) -> None:
        self._stops = stops

    def stopService(self) -> Deferred:
        service.Service.stopService(self)
        return defer.gatherResults(
            [defer.maybeDeferred(stop) for stop in self._stops], consumeErrors=True
        ).addBoth(lambda _: None)


class _Made:
    """The handlers of one Tub, made on first use."""

    def __init__(self, config: NodeConfig, reactor: Any) -> None:
        self._config = config
        self._reactor = reactor
        self._cache: dict[str, Any] = {}
        self.stops: list[Callable[[], Any]] = []

    def tcp(self) -> Any:
        if "tcp" not in self._cache:
            from foolscap.connections import tcp

            self._cache["tcp"] = _sidetls_handler(tcp.default())
        return self._cache["tcp"]

    def tor_dialer(self) -> Any:
        if "tor" not in self._cache:
            from .. import tor

            settings = self._config._tor
            if settings.launch:
                made = self.tor_launched()
            elif settings.socks_port:
                made = tor.socks_endpoint(clientFromString(self._reactor, settings.socks_port))
            elif settings.control_port:
                made = self.tor_control()
            else:
                made = tor.default_socks()
            self._cache["tor"] = made
        return self._cache["tor"]

    def tor_launched(self) -> Any:
        if "tor-launch" not in self._cache:
            from .. import tor

            settings = self._config._tor
            made = tor.launch(
                data_directory=os.path.join(self._config.basedir, TOR_STATEDIR),
                tor_binary=settings.executable,
                bootstrap_timeout=settings.bootstrap_timeout,
            )
            self.stops.append(made.stop)
            self._cache["tor-launch"] = made
        return self._cache["tor-launch"]

    def tor_control(self) -> Any:
        if "tor-control" not in self._cache:
            from .. import tor

            assert self._config._tor.control_port is not None
            made = tor.control_endpoint(
                clientFromString(self._reactor, self._config._tor.control_port),
                bootstrap_timeout=self._config._tor.bootstrap_timeout,
            )
            self.stops.append(made.stop)
            self._cache["tor-control"] = made
        return self._cache["tor-control"]

    def tor_publisher(self) -> Any:
        return self.tor_launched() if self._config._tor.launch else self.tor_control()

    def i2p(self) -> Any:
        if "i2p" not in self._cache:
            settings = self._config._i2p
            options = dict(settings.options) or None
            reactor = self._reactor
            if settings.sam_port:
                made = _i2p.sam_endpoint(clientFromString(reactor, settings.sam_port), options, reactor=reactor)
            elif settings.launch:
                made = _i2p.launch(
                    settings.executable,
                    settings.configdir or os.path.join(self._config.basedir, I2P_STATEDIR),
                    options=options,
                    reactor=reactor,
                    reseed_timeout=settings.reseed_timeout,
                )
            elif settings.configdir:
                made = _i2p.local_i2p(settings.configdir, options, reactor=reactor)
            else:
                made = _i2p.default(reactor, options)
            self._cache["i2p"] = made
        return self._cache["i2p"]

    def attach(self, tub: Any) -> None:
        """Make the Tub stop these handlers (and what they launched) when it stops."""
        _Stopper(self.stops).setServiceParent(tub)
        if "i2p" in self._cache:
            # An I2PHandler is a service: a child of the Tub, i2p.listen()
            # leaves it there rather than attaching it a second time.
            self._cache["i2p"].setServiceParent(tub)

    def for_name(self, name: str) -> Any:
        return {"tcp": self.tcp, "tor": self.tor_dialer, "i2p": self.i2p}[name]()


def _recheck(config: NodeConfig) -> None:
    """
    The key files a start reads must still be what was checked: they live
    outside the config file and may have changed since L{load}.
    """
    onion = config._tor.onion
    if onion is not None:
        reader = _Reader(_parser(), config.source, config.basedir)
        if _read_onion_key(reader, onion.key_file, onion.key_file) != onion.address:
            raise ConfigError(
                config.source, "tor", "onion.private_key_file", onion.key_file,
                "%s changed since the configuration was checked; check it again" % (onion.key_file,),
            )
    dest = config._i2p.dest
    if dest is not None and any(e.kind == "i2p" for e in config._listens):
        reader = _Reader(_parser(), config.source, config.basedir)
        if _read_i2p_key(reader, dest.key_file, dest.key_file) != dest.address:
            raise ConfigError(
                config.source, "i2p", "dest.private_key_file", dest.key_file,
                "%s changed since the configuration was checked; check it again" % (dest.key_file,),
            )


def create_tub(
    config: NodeConfig,
    reactor: Any = None,
    *,
    listen: bool = True,
    update_status: Optional[Callable[[str], None]] = None,
) -> "Deferred[Any]":
    """
    Build and start the Tub C{config} describes: its handlers (all
    role-based: dialed connections are the TLS client), its listeners (the
    TLS server), its onion service and I2P destination, its location.

    Returns a L{Deferred} rather than the Tub, because an onion service or
    an I2P destination takes seconds to publish and a FURL made before then
    would not work.  It fires with the running Tub once every listener is
    up and the location is set, or fails with L{StartError} (a port in use,
    tor or the router unreachable, the certificate unreadable) after
    stopping everything it started.  A configuration that is no longer
    valid (a key file changed since L{load}) raises L{ConfigError} at once,
    before anything starts.  Cancelling the Deferred stops the start and
    everything it had started.

    The Tub keeps its certificate (its TubID, so its FURLs) in L{CERT_FILE}
    under the config's directory, and a node without C{tub.port} the port
    chosen at its first start in L{PORTNUM_FILE}.  Both are written (mode
    0600 from their first byte) only once that first start has succeeded:
    a start that fails leaves neither behind, so nothing was announced
    that a later start would have to honour.  Stopping the Tub stops what
    it started: listeners, onion service, I2P sessions, a launched tor or
    i2pd.

    @param listen: L{False} for a Tub that only dials (what C{ping} uses):
        the config's handlers and timeouts, a fresh identity, nothing
        listened on, published or written.  (A node whose C{tub.port} is
        C{disabled} also only dials, but keeps its identity.)
    @param update_status: called with each slow step, e.g. C{"tor: waiting
        for tor bootstrap (45%: ...)"}, C{"i2p: opening a SAM session ..."}.
    """
    from foolscap.api import Tub

    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    listening = listen and config.listening
    if listening:
        _recheck(config)
    report = update_status or (lambda status: None)

    new_files: list[tuple[str, str]] = []
    try:
        if listen:
            cert_file = os.path.join(config.basedir, CERT_FILE)
            cert_data = _read_certificate(config, cert_file)
            tub = _tub_with(config, cert_file, cert_data)
            if cert_data is None:
                new_files.append((cert_file, tub.getCertData().decode("ascii")))
        else:
            tub = Tub()
        entries = list(config._listens)
        portnum = config._portnum
        if listening and not entries and portnum is None:
            portnum = "tcp:%d" % (allocate_tcp_port(),)
            new_files.append((os.path.join(config.basedir, PORTNUM_FILE), portnum + "\n"))
        if not listening:
            # Nothing can fail from here on: keep the new identity now.
            _write_new(config, new_files)
            new_files = []
    except StartError:
        return defer.fail()

    # -- from here on, things start ----------------------------------------------------
    if config._tor.launch or (config._i2p.launch and not config._i2p.configdir):
        # A launched tor or i2pd keeps its data under private/: made here,
        # this user's only (os.makedirs would make it world-readable).
        _private_directory(config.basedir)
    for key, seconds in config.timeouts.items():
        tub.setOption(_TUB_OPTIONS[key], seconds)
    made = _Made(config, reactor)
    tub.removeAllConnectionHintHandlers()
    for hint_type, name in config.handlers.items():
        if name is not None:
            tub.addConnectionHintHandler(hint_type, made.for_name(name))
    if not listening:
        made.attach(tub)
        tub.startService()
        return defer.succeed(tub)

    if portnum is not None:
        entries.insert(0, _Listen("endpoint", portnum, portnum))
    location = list(config.location)
    if config._auto is not None and not config._auto[0]:
        port = int((portnum or "tcp:0").split(":")[1])
        location = [h.replace("<port>", str(port)) for h in location]

    dest = config._i2p.dest
    i2p_handler = made.i2p() if dest is not None and any(e.kind == "i2p" for e in entries) else None
    made.attach(tub)
    tub.startService()
    steps: list[Deferred] = []
    for entry in entries:
        if entry.kind != "endpoint":
            continue
        watched = _Watched(inner_server(reactor, entry.endpoint))
        tub.listenOn(listener(watched, limits=entry.limits))
        steps.append(watched.listening.addErrback(_listen_failed, config, entry.text))
    tor_settings = config._tor
    if tor_settings.onion is not None:
        from .. import tor

        onion = tor_settings.onion
        report("tor: publishing the onion service %s:%d" % (onion.address, onion.port))
        steps.append(
            tor.listen(
                tub,
                made.tor_publisher(),
                local_port=onion.forward_port,
                external_port=onion.port,
                private_key_file=onion.key_file,
                reactor=reactor,
                update_status=lambda status: report("tor: " + status),
            ).addCallbacks(_published(report, "tor: onion service %s published"), _start_failed,
                           errbackArgs=(config, "tor", "onion", "true", "could not publish the onion service"))
        )
    if dest is not None and i2p_handler is not None:
        if config._i2p.launch:
            report("i2p: launching i2pd")
        report("i2p: opening a SAM session for %s (i2pd takes ~20 s)" % (dest.address,))
        steps.append(
            _i2p.listen(
                tub, i2p_handler, dest.key_file, port=dest.port, reactor=reactor,
                update_status=lambda status: report("i2p: " + status),
            )
            .addCallbacks(_published(report, "i2p: listening on %s"), _start_failed,
                          errbackArgs=(config, "i2p", "dest", "true", "could not listen on the I2P destination"))
        )

    def started(_: Any) -> Any:
        # Only now: a start that failed has announced nothing, so it keeps
        # no identity and no port that the next start would have to reuse.
        try:
            _write_new(config, new_files)
        except StartError:
            return failed(Failure())
        tub.setLocation(*location)
        return tub

    def failed(f: Failure) -> Any:
        failure = f.value.subFailure if isinstance(f.value, defer.FirstError) else f
        for step in steps:
            if not step.called:
                step.cancel()
        stopping = tub.stopService() if tub.running else defer.succeed(None)
        stopping.addErrback(lambda _: None)
        return stopping.addCallback(lambda _: failure)

    gathered = defer.gatherResults(steps, consumeErrors=True) if steps else defer.succeed([])
    return gathered.addCallbacks(started, failed)


def _read_certificate(config: NodeConfig, path: str) -> Optional[bytes]:
    """The Tub's certificate as kept, or None before the first start."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        # Foolscap would make a new identity and overwrite the old one.
        raise StartError(
            "%r: cannot read the Tub's certificate %s (%s); it is this node's identity (its FURLs), so "
            "it is not replaced" % (config.source, path, e.strerror or _why(e))
        ) from None


def _tub_with(config: NodeConfig, path: str, data: Optional[bytes]) -> Any:
    """A Tub with the certificate C{data} (a new one if None)."""
    from foolscap.api import Tub

    try:
        return Tub(certData=data)
    except Exception as e:  # whatever OpenSSL says about a damaged PEM file
        if data is None:
            raise
        raise StartError(
            "%r: %s does not hold a Tub certificate (%s); it is this node's identity (its FURLs), so it "
            "is not replaced: move it away to make a new one" % (config.source, path, _why(e))
        ) from None


def _private_directory(basedir: str) -> str:
    path = os.path.join(basedir, "private")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _write_new(config: NodeConfig, files: Sequence[tuple[str, str]]) -> None:
    """Write the certificate and port a first start made."""
    for path, text in files:
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            write_private(path, text)
        except OSError as e:
            raise StartError("%r: cannot write %s (%s)" % (config.source, path, e.strerror or _why(e))) from None


def _published(report: Callable[[str], None], text: str) -> Callable[[str], str]:
    def done(hint: str) -> str:
        report(text % (hint,))
        return hint

    return done


def _listen_failed(f: Failure, config: NodeConfig, text: str) -> Failure:
    if f.check(defer.CancelledError):
        return f
    raise StartError(
        "%r [node] tub.port: could not listen on %r (%s)" % (config.source, text, f.getErrorMessage())
    )


def _start_failed(f: Failure, config: NodeConfig, section: str, key: str, value: str, what: str) -> Failure:
    if f.check(defer.CancelledError):
        return f
    raise StartError("%r [%s] %s = %r: %s: %s" % (config.source, section, key, value, what, f.getErrorMessage()))
