"""
An i2pd already running here: where its SAM bridge listens, read from its
i2pd.conf (L{sam_from_conf}), for L{foolscap_sidetls.i2p.local_i2p}.
"""

from __future__ import annotations

import configparser
import os
from typing import Union

from ._errors import INSTALL_I2PD, I2PConfigError
from .sam._util import kind

#: Where a router's SAM bridge listens unless configured otherwise.
DEFAULT_SAM_HOST = "127.0.0.1"
DEFAULT_SAM_PORT = 7656


def _read_i2pd_conf(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, inline_comment_prefixes=("#",), comment_prefixes=("#", ";")
    )
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise I2PConfigError("cannot read %s: %s" % (path, e.strerror or e)) from None
    try:
        parser.read_string("[__top__]\n" + text, source=path)
    except configparser.Error as e:
        raise I2PConfigError("cannot parse %s as an i2pd.conf: %s" % (path, e)) from None
    return parser


def _conf_bool(value: str, path: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise I2PConfigError("%s: [sam] %s = %r is neither true nor false" % (path, name, value))


def find_config(configdir: Union[str, "os.PathLike[str]", None]) -> str:
    if configdir is None:
        # The package's I2PD_CONFIG_DIRS, read now: programs and tests set it there.
        from . import I2PD_CONFIG_DIRS

        tried = []
        for candidate in I2PD_CONFIG_DIRS:
            path = os.path.join(os.path.expanduser(candidate), "i2pd.conf")
            tried.append(path)
            if os.path.isfile(path):
                return path
        raise I2PConfigError(
            "no i2pd.conf found (looked for %s); %s, or pass its directory"
            % (", ".join(tried), INSTALL_I2PD)
        )
    if not isinstance(configdir, (str, os.PathLike)):
        raise TypeError(
            "local_i2p() expects configdir to be a directory holding i2pd.conf (str), got %s" % (kind(configdir),)
        )
    path = os.fspath(configdir)
    if os.path.isdir(path):
        path = os.path.join(path, "i2pd.conf")
    if not os.path.isfile(path):
        raise I2PConfigError("%s does not exist; is i2pd configured there?" % (path,))
    return path


def sam_from_conf(path: str) -> tuple[str, int]:
    """The SAM bridge's host and port an i2pd.conf configures."""
    parser = _read_i2pd_conf(path)
    if not parser.has_section("sam"):
        raise I2PConfigError(
            "%s has no [sam] section, so its SAM bridge's address is unknown; add\n"
            "  [sam]\n  enabled = true\n  address = 127.0.0.1\n  port = 7656\n"
            "to it and restart i2pd" % (path,)
        )
    sam = parser["sam"]
    enabled = _conf_bool(sam.get("enabled", "true"), path, "enabled")
    if not enabled:
        raise I2PConfigError(
            "%s disables the SAM bridge ([sam] enabled = false); set 'enabled = true' "
            "in its [sam] section and restart i2pd" % (path,)
        )
    host = sam.get("address", DEFAULT_SAM_HOST).strip() or DEFAULT_SAM_HOST
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    text = sam.get("port", str(DEFAULT_SAM_PORT)).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise I2PConfigError("%s: [sam] port = %r is not a port number" % (path, text))
    return host, int(text)
