"""
This machine's addresses: what C{tub.location = AUTO} announces.
"""

from __future__ import annotations

import socket
from typing import Any, Iterable, Mapping, Optional, Sequence

def local_addresses() -> list[str]:
    """
    This machine's IPv4 addresses, every address of every interface,
    loopback last: what C{tub.location = AUTO} announces.  Tahoe-LAFS 1.20
    asks psutil for them too, so AUTO means the same here on every system
    psutil knows.  Where psutil cannot list the interfaces, the addresses
    the host name resolves to stand in (and 127.0.0.1 is always there).
    """
    try:
        import psutil

        interfaces: Optional[Mapping[str, Sequence[Any]]] = psutil.net_if_addrs()
    except Exception:  # not installed, or not supported on this system
        interfaces = None
    if interfaces is not None:
        found = _ipv4_addresses(interfaces)
    else:
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
            found = [str(info[4][0]) for info in infos]
        except OSError:
            found = []
    return _loopback_last(found + ["127.0.0.1"])


def _ipv4_addresses(interfaces: Mapping[str, Sequence[Any]]) -> list[str]:
    """The IPv4 addresses in what C{psutil.net_if_addrs()} returns, in its order."""
    return [
        str(entry.address)
        for entries in interfaces.values()
        for entry in entries
        if entry.family == socket.AF_INET
    ]


def _loopback_last(addresses: Iterable[str]) -> list[str]:
    unique = list(dict.fromkeys(addresses))
    return [a for a in unique if not a.startswith("127.")] + [a for a in unique if a.startswith("127.")]
