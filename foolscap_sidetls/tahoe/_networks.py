"""
A Tahoe node's [tor] and [i2p] sections served by foolscap-sidetls: what
the launcher gives Tahoe in place of its own tor and I2P providers.

The node's tahoe.cfg sections are checked by L{foolscap_sidetls.config}
(C{from_sections}, the same keys and messages as C{foolscap-sidetls
check}), and the handlers are the ones C{config.create_tub} builds from
them: so SocksPort ADDRESS:PORT tors, C{[i2p] launch}, C{i2p.configdir},
C{i2cp.options} and SAM session recovery work as they do there.  Onion
services and I2P destinations are published with L{foolscap_sidetls.tor}
C{.listen} and L{foolscap_sidetls.i2p} C{.listen}, on Tahoe's own Tub.
Tahoe's HTTPS storage client over Tor dials through the same tor handler
(L{_web}): a node has one way to tor, and launches one tor at most.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import __version__
from .. import config as sidetls_config
from .._foolscap import tubHandlers
from ._web import TorWeb

__all__ = ["I2PProvider", "TorProvider", "networks_for"]

log = Logger(namespace="foolscap_sidetls.tahoe")

#: The tahoe.cfg sections foolscap-sidetls reads; Tahoe's other sections are its own.
_SECTIONS = ("node", "connections", "tor", "i2p")

#: What the node's log says once, when its Tubs are made.
ANNOUNCEMENT = (
    "foolscap-sidetls {version}: every Tub of this node is role-based (the listener is the TLS server, the "
    "dialer the TLS client, whichever way the socket was opened); tor: hints -> {tor}; i2p: hints -> {i2p}"
)


class Networks(service.MultiService):
    """
    One node's handlers and publishers, made from its tahoe.cfg once and
    shared by its tor and I2P providers; stopping it stops what they
    started (control connections, a launched tor or i2pd).
    """

    def __init__(self, reactor: Any, config: Any) -> None:
        service.MultiService.__init__(self)
        self._reactor = reactor
        self._config = config
        sections = {name: config.enumerate_section(name) for name in _SECTIONS}
        try:
            self.node = sidetls_config.from_sections(
                {name: keys for name, keys in sections.items() if keys},
                source=config.get_config_path("tahoe.cfg"),
                basedir=config.get_config_path(),
            )
        except sidetls_config.ConfigError as e:
            # Tahoe's `run` prints this one as "Configuration error:", not as a traceback.
            from allmydata.util.configutil import UnknownConfigError  # type: ignore[import-untyped]

            raise UnknownConfigError(str(e)) from e
        # A Tub that only dials: what config.create_tub builds for this
        # node's [connections], [tor] and [i2p]; its handlers are handed to
        # Tahoe, and it holds (and stops) what they start.
        made: list[Any] = []
        sidetls_config.create_tub(self.node, reactor, listen=False).addBoth(made.append)
        if not made or isinstance(made[0], Failure):
            if made:
                made[0].raiseException()
            raise RuntimeError("foolscap_sidetls.config.create_tub(listen=False) did not finish at once")
        self._dialing = made[0]  # running already: stopped in stopService, never started twice
        self.handlers = dict(tubHandlers(self._dialing) or {})
        self.listening: list[Any] = []
        log.info(
            ANNOUNCEMENT,
            version=__version__,
            tor=self.node.describe_handler("tor"),
            i2p=self.node.describe_handler("i2p"),
        )

    def stopService(self) -> Any:
        d = defer.maybeDeferred(service.MultiService.stopService, self)
        if self._dialing.running:
            stopping = self._dialing.stopService()
            d.addBoth(lambda _: stopping)
        return d

    def tor_publisher(self) -> Any:
        """
        What publishes the onion service: the tor handler when it has a
        control connection (launched or control.port), else the control
        port itself, whose connection tor.listen closes when the Tub stops.
        """
        dialer = self.handlers.get("tor")
        if dialer is not None and getattr(dialer, "can_listen", False):
            return dialer
        control = self._config.get_config("tor", "control.port", None)
        if control is None:
            raise ValueError(
                "%s: [tor] onion = true needs [tor] control.port or launch = true"
                % (self._config.get_config_path("tahoe.cfg"),)
            )
        return clientFromString(self._reactor, control)

    def onion_local_port(self) -> Optional[int]:
        """C{[tor] onion.local_port} when C{[tor] onion = true}, else None."""
        if not self._config.get_config("tor", "onion", False, boolean=True):
            return None
        return int(self._config.get_config("tor", "onion.local_port"))

    def listen_tor(self, tub: Any, local_port: Union[int, None, str] = "configured") -> None:
        """
        Publish the onion service: C{tor.listen} makes the Tub listen on
        127.0.0.1 (C{[tor] onion.local_port}, or C{local_port}: None for a
        free port, when the Tub's own tub.port already holds that port on
        every interface) and tor forward to it.
        """
        from .. import tor

        get = self._config.get_config
        keyfile = self._config.get_config_path(get("tor", "onion.private_key_file"))
        self._track(
            "tor: onion service",
            tor.listen(
                tub,
                self.tor_publisher(),
                local_port=int(get("tor", "onion.local_port")) if local_port == "configured" else local_port,
                external_port=int(get("tor", "onion.external_port")),
                private_key_file=keyfile,
                reactor=self._reactor,
            ),
        )

    def listen_i2p(self, tub: Any) -> None:
        from .. import i2p

        handler = self.handlers.get("i2p")
        if handler is None:
            raise ValueError(
                "%s: [node] tub.port has listen:i2p, but I2P is not enabled ([i2p] enabled = false)"
                % (self._config.get_config_path("tahoe.cfg"),)
            )
        get = self._config.get_config
        self._track(
            "i2p: destination",
            i2p.listen(
                tub,
                handler,
                self._config.get_config_path(get("i2p", "dest.private_key_file")),
                port=int(get("i2p", "dest.port")),
                reactor=self._reactor,
            ),
        )

    def _track(self, what: str, d: Any) -> None:
        self.listening.append(d)

        def published(hint: str) -> str:
            log.info("{what} published: {hint}", what=what, hint=hint)
            return hint

        def failed(f: Failure) -> None:
            log.failure("{what} could not be published", f, what=what)

        d.addCallbacks(published, failed)

    def tor_web(self, reactor: Any) -> "Deferred[TorWeb]":
        """
        What Tahoe's HTTPS storage client gets from C{get_tor_instance}:
        agents dialing through this node's own tor handler -- the tor it
        launched or the one at control.port -- never a tor of Tahoe's.
        """
        handler = self.handlers.get("tor")
        if handler is None:
            return defer.fail(
                ValueError(
                    "%s: Tahoe's HTTPS storage client needs tor here (a pb+tor:// storage server, or [connections] "
                    "tcp = tor), but tor is disabled ([tor] enabled = false); enable it, or set [storage] "
                    "force_foolscap = true on the servers" % (self._config.get_config_path("tahoe.cfg"),)
                )
            )
        return defer.succeed(TorWeb(handler, reactor))


class _Provider(service.Service):
    """What Tahoe calls on its provider, answered from the node's L{Networks}."""

    hint_type = ""

    def __init__(self, networks: Networks) -> None:
        self.networks = networks

    def get_client_endpoint(self) -> Any:
        return self.networks.handlers.get(self.hint_type)

    def get_listener(self) -> Any:
        raise RuntimeError(
            "listen:%s is served by foolscap-sidetls under `foolscap-sidetls tahoe` (its tub_listen_on); "
            "Tahoe's own listener is not used" % (self.hint_type,)
        )

    def setServiceParent(self, parent: Any) -> Any:
        # Both providers are given to the node; the networks join it once.
        if self.networks.parent is None:
            self.networks.setServiceParent(parent)
        return service.Service.setServiceParent(self, parent)


class I2PProvider(_Provider):
    hint_type = "i2p"
    get_i2p_handler = _Provider.get_client_endpoint

    def listen(self, tub: Any) -> None:
        self.networks.listen_i2p(tub)


class TorProvider(_Provider):
    hint_type = "tor"
    get_tor_handler = _Provider.get_client_endpoint

    def listen(self, tub: Any, local_port: Union[int, None, str] = "configured") -> None:
        self.networks.listen_tor(tub, local_port)

    def onion_local_port(self) -> Optional[int]:
        return self.networks.onion_local_port()

    def get_tor_instance(self, reactor: object) -> "Deferred[TorWeb]":
        """For Tahoe's HTTPS storage client: see L{Networks.tor_web}."""
        return self.networks.tor_web(reactor)


#: Each Tahoe configuration object and its networks (a node process has one).
_made: list[tuple[Any, Networks]] = []


def networks_for(reactor: Any, config: Any) -> Networks:
    """The node's L{Networks}, made on the first call for C{config}."""
    for known, networks in _made:
        if known is config:
            return networks
    networks = Networks(reactor, config)
    _made.append((config, networks))
    return networks
