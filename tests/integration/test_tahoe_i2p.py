"""
Real Tahoe-LAFS 1.20 grids over the private I2P router (``_i2pnet.py``),
built by ``_tahoe_grid.py``: an introducer, 2 storage nodes
(``--listen=i2p``) and a client-only node, ``tcp = disabled``,
``reveal-IP-address = false``, 1-of-2 encoding with happy=2.

- every node through ``python -m foolscap_sidetls.tahoe run``, the zero-hop
  session options from ``[i2p] i2cp.options`` and no patch of txi2p: the
  grid forms, 1 MiB round-trips byte-identical, ``check --verify`` is
  Healthy (one grid, shared by the module);
- the negative control: stock Tahoe with txi2p's ``invertTLS`` disabled
  (``_tahoe_stock.py``) fails with the double-ClientHello error of Tahoe
  ticket 2861;
- mixed: one stock storage node without ``invertTLS`` among sidetls nodes
  is refused by the sidetls client with this project's plain-words
  diagnosis, while the sidetls storage node serves; and a sidetls
  client-only node, its session options from ``[i2p] i2cp.options`` only,
  uses a stock grid (stock with ``invertTLS``).

Each SAM session costs ~20 s on i2pd, so each grid takes ~40 s to form.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from twisted.trial.unittest import SynchronousTestCase

from . import _tahoe_grid
from ._tahoe_grid import SIDETLS, Grid, I2PNetwork

MiB = 2**20

#: What OpenSSL says on the listener when the dialer's ClientHello meets
#: a second TLS client (Tahoe ticket 2861), as Tahoe's welcome page shows it.
DOUBLE_CLIENT_HELLO = "tls alert unexpected message"
#: The start of foolscap_sidetls._diagnosis's explanation for a dialer whose
#: peer also sent a ClientHello.
PLAIN_WORDS = (
    "TLS handshake failed: the peer also acted as TLS client (it sent a ClientHello) "
    "although this end dialed the connection and is the TLS client"
)

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def sidetls_grid(i2p_router, tmp_path_factory):
    """The all-sidetls grid over I2P, formed once for the module's tests."""
    _tahoe_grid.require_sidetls()
    began = time.monotonic()
    grid = _tahoe_grid.started(tmp_path_factory.mktemp("tahoe-i2p-sidetls"), I2PNetwork(i2p_router), SIDETLS)
    try:
        timings = grid.wait_formed(2)
        TIMINGS["sidetls grid formed (from the introducer's start)"] = timings.total or 0.0
        TIMINGS["sidetls client: introducer connected (from its start)"] = timings.introducer or 0.0
        TIMINGS["sidetls fixture: create + form"] = time.monotonic() - began
        yield grid
    finally:
        grid.stop()


@pytest.fixture(autouse=True)
def _context(request, i2p_router, tmp_path):
    request.instance.router = i2p_router
    request.instance.tmp = tmp_path


class SideTLSGridTests(SynchronousTestCase):
    """Every node through ``foolscap-sidetls tahoe run``."""

    grid: Grid
    tmp: Any

    @pytest.fixture(autouse=True)
    def _grid(self, sidetls_grid: Grid) -> None:
        self.grid = sidetls_grid

    def test_client_sees_both_servers_via_sidetls(self) -> None:
        servers = self.grid.servers()
        self.assertEqual(sorted(s["nickname"] for s in servers), ["storage0", "storage1"], self.grid.logs())
        statuses = [s["connection_status"] for s in servers]
        self.assertEqual(
            [s for s in statuses if s.startswith("Connected to i2p:") and " via sidetls+i2p (SAM at " in s],
            statuses,
        )
        introducers = self.grid.client.welcome()["introducers"]["statuses"]
        self.assertEqual(len(introducers), 1)
        self.assertIn(" via sidetls+i2p (SAM at ", introducers[0])

    def test_put_get_one_mib_byte_identical(self) -> None:
        sent, received, cap, put_took, get_took = _tahoe_grid.round_trip(self.grid, self.tmp, MiB)
        TIMINGS["sidetls put 1 MiB"] = put_took
        TIMINGS["sidetls get 1 MiB"] = get_took
        self.assertTrue(cap.startswith("URI:CHK:"), cap)
        self.assertTrue(cap.endswith(":1:2:%d" % MiB), cap)
        self.assertEqual(len(received), MiB)
        self.assertTrue(received == sent, "the 1 MiB read back differs from what was put")

    def test_check_verify_healthy(self) -> None:
        source = self.tmp / "small.bin"
        _tahoe_grid.random_file(source, 64 * 1024)
        cap = self.grid.put(source)
        report = self.grid.check_verify(cap)
        self.assertIn("Summary: Healthy", report)
        self.assertIn("good-shares: 2 (encoding is 1-of-2)", report)


class StockGridTests(SynchronousTestCase):
    """Stock Tahoe over I2P, and stock among sidetls nodes: what fails, and how."""

    router: Any
    tmp: Any

    def test_negative_control_stock_without_invert_tls(self) -> None:
        """
        Stock Tahoe whose txi2p ``invertTLS`` is off: the introducer's
        listener (an outgoing SAM socket, so Twisted makes it the TLS client)
        answers the client's ClientHello with a ClientHello of its own; the
        client reports OpenSSL's 'unexpected message' and never connects.
        """
        net = I2PNetwork(self.router)
        grid = _tahoe_grid.started(self.tmp / "grid", net, net.stock(invert_tls=False))
        self.addCleanup(grid.stop)
        began = time.monotonic()
        text = grid.wait_for_status(grid.client, DOUBLE_CLIENT_HELLO)
        TIMINGS["negative control: double ClientHello reported"] = time.monotonic() - began
        self.assertIn("via i2p: negotiation failed: [('SSL routines', '', '%s')]" % DOUBLE_CLIENT_HELLO, text)
        state = grid.client.welcome()
        self.assertEqual(state["servers"], [])
        self.assertFalse(state["introducers"]["statuses"][0].lower().startswith("connected"), state)

    def test_stock_listener_without_invert_tls_among_sidetls_nodes(self) -> None:
        """
        A stock storage node without ``invertTLS`` reaches the sidetls
        introducer (as a dialer it is the TLS client either way) and is
        announced, but the sidetls client dialing it meets a second
        ClientHello and says so in plain words; the sidetls storage node
        serves.
        """
        _tahoe_grid.require_sidetls()
        net = I2PNetwork(self.router)
        grid = _tahoe_grid.started(
            self.tmp / "grid", net, SIDETLS, runners={"storage1": net.stock(invert_tls=False)}
        )
        self.addCleanup(grid.stop)
        began = time.monotonic()
        text = grid.wait_for_status(grid.client, PLAIN_WORDS)
        TIMINGS["mixed: plain-words diagnosis shown"] = time.monotonic() - began
        self.assertIn("run foolscap-sidetls on both ends", text)
        grid.wait_formed(1)
        by_name = {s["nickname"]: s["connection_status"] for s in grid.servers()}
        self.assertEqual(sorted(by_name), ["storage0", "storage1"], by_name)
        self.assertIn(" via sidetls+i2p (SAM at ", by_name["storage0"])
        self.assertFalse(by_name["storage1"].lower().startswith("connected"), by_name)

    def test_sidetls_client_only_node_in_stock_grid(self) -> None:
        """
        A client-only sidetls node whose zero-hop session options come from
        ``[i2p] i2cp.options`` alone (stock Tahoe cannot pass them: ticket
        2889) uses a stock grid (with txi2p's ``invertTLS``).
        """
        _tahoe_grid.require_sidetls()
        net = I2PNetwork(self.router)
        grid = _tahoe_grid.started(self.tmp / "grid", net, net.stock(invert_tls=True), runners={"client": SIDETLS})
        self.addCleanup(grid.stop)
        timings = grid.wait_formed(2)
        TIMINGS["sidetls client in stock grid: formed"] = timings.total or 0.0
        statuses = [s["connection_status"] for s in grid.servers()]
        self.assertEqual(len(statuses), 2)
        for status in statuses:
            self.assertIn(" via sidetls+i2p (SAM at ", status)
        sent, received, _cap, _put, _get = _tahoe_grid.round_trip(grid, self.tmp, MiB)
        self.assertEqual(len(received), MiB)
        self.assertTrue(received == sent, "the 1 MiB read back differs from what was put")


def teardown_module(module: Any) -> None:
    if TIMINGS:
        print("\nTahoe over I2P, seconds:")
        for what, seconds in TIMINGS.items():
            print("  %-55s %7.1f" % (what, seconds))
