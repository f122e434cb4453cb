"""
Session fixtures for the real-daemon tests: a private Tor network and a
private I2P router, both on 127.0.0.1 only, started together (each takes
about 20 s to become usable, so starting them in parallel halves the wait)
and stopped by pid when the session ends.

Locally, a missing binary skips the tests that need it, with the package to
install; under CI (CI=true) it is a failure, because CI installs both.
"""

from __future__ import annotations

import os
import shutil

import pytest

_NEEDS = {
    "tor": (("tor", "tor-gencert"), "apt-get install tor"),
    "i2p": (("i2pd",), "apt-get install i2pd"),
}


def _missing(kind: str) -> str | None:
    binaries, install = _NEEDS[kind]
    absent = [b for b in binaries if shutil.which(b) is None]
    if not absent:
        return None
    return "%s not found on PATH (%s)" % (", ".join(absent), install)


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail("integration prerequisite missing under CI: " + why, pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def _daemons(tmp_path_factory):
    """
    Start every network whose binaries exist, without waiting; each
    fixture below waits for its own.  Stopped (and logs printed on failure
    by the per-network fixtures) at the end of the session.
    """
    # Imported here so that collecting the unit tests costs nothing.
    from . import _i2pnet, _tornet

    started = {}
    if _missing("tor") is None:
        net = _tornet.TorNetwork(tmp_path_factory.mktemp("tornet"))
        net.start()
        started["tor"] = net
    if _missing("i2p") is None:
        router = _i2pnet.I2PRouter(tmp_path_factory.mktemp("i2pnet"))
        router.start()
        started["i2p"] = router
    try:
        yield started
    finally:
        for daemon in started.values():
            daemon.stop()


def _ready(daemons, kind, timeout):
    why = _missing(kind)
    if why is not None:
        _unavailable(why)
    daemon = daemons[kind]
    try:
        daemon.wait(timeout)
    except Exception as e:
        print(daemon.logs())
        pytest.fail("%s network did not become usable: %s" % (kind, e), pytrace=False)
    return daemon


@pytest.fixture(scope="session")
def tor_network(_daemons):
    """A usable private Tor network (see _tornet.TorNetwork)."""
    return _ready(_daemons, "tor", timeout=120)


@pytest.fixture(scope="session")
def i2p_router(_daemons):
    """A usable private I2P router with SAM (see _i2pnet.I2PRouter)."""
    return _ready(_daemons, "i2p", timeout=60)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Print the daemons' logs under a failed integration test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        daemons = getattr(item, "funcargs", {}).get("_daemons") or {}
        for daemon in daemons.values():
            report.sections.append(("daemon logs: %r" % (daemon,), daemon.logs()))
