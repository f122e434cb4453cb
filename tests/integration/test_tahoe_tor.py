"""
Real Tahoe-LAFS 1.20 grids over the private Tor network (``_tornet.py``),
built by ``_tahoe_grid.py``: an introducer and 2 storage nodes with onion
listeners on the network's ``server`` tor, a client-only node on its
``dialer`` tor, ``tcp = disabled``, ``reveal-IP-address = false``, 1-of-2
encoding with happy=2.

- every node through ``python -m foolscap_sidetls.tahoe run`` with only
  ``[tor] control.port`` (those tors' SocksPort is ``127.0.0.1:PORT``,
  which stock Foolscap's control-port handler cannot use), storage over
  HTTPS as Tahoe 1.20 does by default: one grid shared by the module;
- the same with ``[storage] force_foolscap = true`` (storage over Foolscap);
- mixed: a sidetls introducer with stock storage and client nodes (stock
  nodes also get ``socks.port``): works, because over Tor the socket
  direction matches the role; and a sidetls client-only node (only
  ``control.port``) in a stock grid.

Onion descriptors publish in a few seconds on this network, so each grid
forms in ~15-25 s.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from twisted.trial.unittest import SynchronousTestCase

from . import _tahoe_grid
from ._tahoe_grid import SIDETLS, STOCK, Grid, TorNetwork

MiB = 2**20
FORCE_FOOLSCAP = {"storage": {"storage": {"force_foolscap": "true"}}}

TIMINGS: dict[str, float] = {}


def _only_control_port(grid: Grid) -> None:
    """The sidetls nodes' [tor] sections name the control port and no SOCKS port."""
    import configparser

    for node in grid.nodes.values():
        cfg = configparser.ConfigParser()
        cfg.read(node.basedir / "tahoe.cfg")
        assert cfg.get("tor", "control.port").startswith("tcp:127.0.0.1:"), node
        assert not cfg.has_option("tor", "socks.port"), node


@pytest.fixture(scope="module")
def sidetls_grid(tor_network, tmp_path_factory):
    """The all-sidetls grid over Tor (HTTPS storage), formed once for the module."""
    _tahoe_grid.require_sidetls()
    grid = _tahoe_grid.started(tmp_path_factory.mktemp("tahoe-tor-sidetls"), TorNetwork(tor_network), SIDETLS)
    try:
        timings = grid.wait_formed(2)
        TIMINGS["sidetls (HTTPS storage) grid formed"] = timings.total or 0.0
        TIMINGS["sidetls client: introducer connected (from its start)"] = timings.introducer or 0.0
        yield grid
    finally:
        grid.stop()


@pytest.fixture(autouse=True)
def _context(request, tor_network, tmp_path):
    request.instance.net = tor_network
    request.instance.tmp = tmp_path


class SideTLSGridTests(SynchronousTestCase):
    """Every node through ``foolscap-sidetls tahoe run``, HTTPS storage."""

    grid: Grid
    tmp: Any

    @pytest.fixture(autouse=True)
    def _grid(self, sidetls_grid: Grid) -> None:
        self.grid = sidetls_grid

    def test_client_sees_both_servers(self) -> None:
        _only_control_port(self.grid)
        servers = self.grid.servers()
        self.assertEqual(sorted(s["nickname"] for s in servers), ["storage0", "storage1"])
        # HTTPS storage connections report a bare "connected"
        self.assertEqual([s["connection_status"] for s in servers], ["connected", "connected"])
        introducers = self.grid.client.welcome()["introducers"]["statuses"]
        self.assertEqual(len(introducers), 1)
        self.assertTrue(introducers[0].startswith("Connected to tor:"), introducers)
        self.assertIn(" via sidetls+tor", introducers[0])

    def test_put_get_one_mib_byte_identical(self) -> None:
        sent, received, cap, put_took, get_took = _tahoe_grid.round_trip(self.grid, self.tmp, MiB)
        TIMINGS["sidetls (HTTPS storage) put 1 MiB"] = put_took
        TIMINGS["sidetls (HTTPS storage) get 1 MiB"] = get_took
        self.assertTrue(cap.endswith(":1:2:%d" % MiB), cap)
        self.assertEqual(len(received), MiB)
        self.assertTrue(received == sent, "the 1 MiB read back differs from what was put")

    def test_check_verify_healthy(self) -> None:
        source = self.tmp / "small.bin"
        _tahoe_grid.random_file(source, 64 * 1024)
        report = self.grid.check_verify(self.grid.put(source))
        self.assertIn("Summary: Healthy", report)
        self.assertIn("good-shares: 2 (encoding is 1-of-2)", report)


class OtherGridTests(SynchronousTestCase):
    net: Any
    tmp: Any

    def _round_trip(self, grid: Grid, label: str) -> None:
        sent, received, cap, put_took, get_took = _tahoe_grid.round_trip(grid, self.tmp, MiB)
        TIMINGS[label + " put 1 MiB"] = put_took
        TIMINGS[label + " get 1 MiB"] = get_took
        self.assertEqual(len(received), MiB)
        self.assertTrue(received == sent, "the 1 MiB read back differs from what was put")
        report = grid.check_verify(cap)
        self.assertIn("Summary: Healthy", report)
        self.assertIn("good-shares: 2 (encoding is 1-of-2)", report)

    def test_sidetls_force_foolscap(self) -> None:
        """Storage over Foolscap (``[storage] force_foolscap = true``), every Tub sidetls."""
        _tahoe_grid.require_sidetls()
        grid = _tahoe_grid.started(self.tmp / "grid", TorNetwork(self.net), SIDETLS, config=FORCE_FOOLSCAP)
        self.addCleanup(grid.stop)
        _only_control_port(grid)
        timings = grid.wait_formed(2)
        TIMINGS["sidetls (Foolscap storage) grid formed"] = timings.total or 0.0
        statuses = sorted(s["connection_status"] for s in grid.servers())
        self.assertEqual(len(statuses), 2)
        for status in statuses:
            self.assertTrue(status.startswith("Connected to tor:"), statuses)
            self.assertIn(" via sidetls+tor", status)
        self._round_trip(grid, "sidetls (Foolscap storage)")

    def test_mixed_sidetls_introducer_stock_nodes(self) -> None:
        """A sidetls introducer serves stock storage and client nodes over Tor."""
        _tahoe_grid.require_sidetls()
        grid = _tahoe_grid.started(
            self.tmp / "grid", TorNetwork(self.net), STOCK, runners={"introducer": SIDETLS}
        )
        self.addCleanup(grid.stop)
        timings = grid.wait_formed(2)
        TIMINGS["mixed (sidetls introducer) grid formed"] = timings.total or 0.0
        introducers = grid.client.welcome()["introducers"]["statuses"]
        # the stock client dials with Foolscap's own tor handler
        self.assertEqual(len(introducers), 1)
        self.assertTrue(introducers[0].startswith("Connected to tor:"), introducers)
        self.assertTrue(introducers[0].endswith(" via tor"), introducers)
        self._round_trip(grid, "mixed")

    def test_sidetls_client_only_node_in_stock_grid(self) -> None:
        """
        A client-only sidetls node with only ``[tor] control.port`` (its
        tor's SocksPort is 127.0.0.1:PORT) uses a stock grid, storage over
        HTTPS through its own tor handler.
        """
        _tahoe_grid.require_sidetls()
        grid = _tahoe_grid.started(self.tmp / "grid", TorNetwork(self.net), STOCK, runners={"client": SIDETLS})
        self.addCleanup(grid.stop)
        timings = grid.wait_formed(2)
        TIMINGS["sidetls client in stock grid: formed"] = timings.total or 0.0
        self.assertEqual([s["connection_status"] for s in grid.servers()], ["connected", "connected"])
        introducers = grid.client.welcome()["introducers"]["statuses"]
        self.assertEqual(len(introducers), 1)
        self.assertIn(" via sidetls+tor (control port 127.0.0.1:", introducers[0])
        self._round_trip(grid, "sidetls client in stock grid")


def teardown_module(module: Any) -> None:
    if TIMINGS:
        print("\nTahoe over Tor, seconds:")
        for what, seconds in TIMINGS.items():
            print("  %-55s %7.1f" % (what, seconds))
