"""
Tahoe-LAFS-style configuration files for role-based Foolscap Tubs.

Applications built like Tahoe-LAFS describe their connections in an INI
file; this module reads one and builds the Tub it describes, with every
handler and listener role-based (listener = TLS server, dialer = TLS
client), so the same file works over TCP, Tor onion services and I2P::

    from foolscap_sidetls import config

    node = config.load("node.cfg")            # raises config.ConfigError
    d = config.create_tub(node)                # fires with a running Tub
    d.addCallback(lambda tub: tub.registerReference(obj))

The keys mean what they mean in Tahoe-LAFS 1.20 (``[node] tub.port``,
``tub.location``, ``reveal-IP-address``, ``timeout.*``; ``[connections]
tcp``; ``[tor]``; ``[i2p]``), so a Tahoe node's ``tahoe.cfg`` works
unchanged; Tahoe's other sections (``[client]``, ``[storage]``, ...) are
accepted and ignored.  Beyond Tahoe: ``[i2p] launch`` starts a private
i2pd, ``[i2p] i2p.configdir`` reads an i2pd.conf for the SAM address, and
``[i2p] i2cp.options`` carries session options (tunnel lengths, ...).

Everything is checked when the file is loaded, before anything starts: an
invalid file raises L{ConfigError}, whose message names the file, the
section, the key, the bad value and what is accepted, and nothing has been
launched, listened on or written.
"""

from __future__ import annotations

# The package's modules, in the order a configuration goes through them:
# _schema (sections, keys, their checks), _read (text or sections into a
# NodeConfig; _overlays reads [tor] and [i2p]), _model (NodeConfig),
# _build (create_tub).  Everything importable from the old module stays
# importable here, the private names the tests use (_KEYS, _Made,
# _ipv4_addresses, _loopback_last) included.

from .._files import write_private
from ._addresses import _ipv4_addresses, _loopback_last, local_addresses
from ._build import _Made, create_tub
from ._errors import ConfigError, StartError
from ._model import NodeConfig
from ._read import from_sections, from_string, load
from ._schema import (
    _KEYS,
    CERT_FILE,
    HANDLER_NAMES,
    I2P_STATEDIR,
    PORTNUM_FILE,
    TOR_STATEDIR,
    TOR_UNAVAILABLE,
)

__all__ = [
    "CERT_FILE",
    "ConfigError",
    "HANDLER_NAMES",
    "I2P_STATEDIR",
    "NodeConfig",
    "PORTNUM_FILE",
    "StartError",
    "TOR_STATEDIR",
    "TOR_UNAVAILABLE",
    "create_tub",
    "from_sections",
    "from_string",
    "load",
    "local_addresses",
    "write_private",
]
