"""
Ports on 127.0.0.1 for tests that start real processes or refuse
connections on purpose.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listened on a moment ago: a port
    to give a daemon, or one whose connections are refused.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
