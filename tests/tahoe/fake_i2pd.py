"""
A stand-in for i2pd, run as a real process by foolscap_sidetls.i2p.launch
in tests/tahoe/test_create_i2p.py: it reads the i2pd.conf it is given,
serves just enough SAM on 127.0.0.1 (HELLO, DEST GENERATE) to make a
destination key, and records in C{fake-i2pd.record} (in the data
directory) that it started and that it was stopped (SIGTERM).  It has no
network and no router: a destination key is only local key material.
"""

from __future__ import annotations

import base64
import configparser
import os
import signal
import socket
import sys
import threading


def _keypair() -> tuple[str, str]:
    public = os.urandom(384) + b"\x00\x00\x00"
    private = public + os.urandom(256) + os.urandom(20)

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw, altchars=b"-~").decode("ascii")

    return b64(public), b64(private)


def _serve(connection: socket.socket) -> None:
    with connection, connection.makefile("rb") as lines:
        for raw in lines:
            verb = raw.decode("utf-8").split(" ")[:2]
            if verb[0] == "HELLO":
                reply = "HELLO REPLY RESULT=OK VERSION=3.1"
            elif verb == ["DEST", "GENERATE"]:
                reply = "DEST REPLY PUB=%s PRIV=%s" % _keypair()
            else:
                reply = 'SESSION STATUS RESULT=I2P_ERROR MESSAGE="fake i2pd: %s is not served"' % (" ".join(verb),)
            connection.sendall((reply + "\n").encode("utf-8"))


def main(argv: list[str]) -> None:
    options = dict(zip(argv[1::2], argv[2::2]))
    conf = configparser.ConfigParser()
    with open(options["--conf"]) as f:
        conf.read_string("[top]\n" + f.read())
    port = int(conf["sam"]["port"])
    record = os.path.join(options["--datadir"], "fake-i2pd.record")

    def note(what: str) -> None:
        with open(record, "a") as f:
            f.write(what + "\n")

    def stopped(signum: int, frame: object) -> None:
        note("stopped")
        os._exit(0)

    signal.signal(signal.SIGTERM, stopped)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(8)
    note("started")
    # Bounded: a test that forgets it still ends it within a minute.
    signal.alarm(60)
    while True:
        connection, _ = server.accept()
        threading.Thread(target=_serve, args=(connection,), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv)
