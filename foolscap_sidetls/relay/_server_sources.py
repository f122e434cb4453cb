"""
Who the relay counts a connection against: its source (an IPv4 address or
an IPv6 /64), and the counters the per-source limits keep.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def _host_and_port(addr: Any) -> tuple[str, int]:
    host = str(getattr(addr, "host", None) or getattr(addr, "name", None) or "unknown")
    host = "".join(host.split()) or "unknown"
    port = getattr(addr, "port", 0)
    return host, port if isinstance(port, int) else 0


def _source_of(addr: Any) -> str:
    """
    What the per-source limits count by: the peer's IPv4 address, or the
    /64 of its IPv6 address -- one host is usually given a whole /64 and
    may use any address in it, so counting by address would give it as
    many allowances as it likes.  Anything else (a name) as it is.
    """
    host = _host_and_port(addr)[0]
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return host


def _increment(counts: dict[Any, int], key: Any) -> None:
    counts[key] = counts.get(key, 0) + 1


def _decrement(counts: dict[Any, int], key: Any) -> None:
    count = counts.get(key, 0) - 1
    if count > 0:
        counts[key] = count
    else:
        counts.pop(key, None)
