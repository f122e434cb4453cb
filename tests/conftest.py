"""
Shared pytest configuration for the whole suite.

Trial's C{TestCase.mktemp()} returns a path relative to the working
directory, which trial itself sets to C{_trial_temp}; under pytest the
working directory is the checkout, so each test that calls it would leave a
directory named after its module (C{tests.core.test_takeover/...}) in the
source tree.  Here it returns a fresh path under pytest's own C{tmp_path}
instead: removed by pytest's retention policy, never in the checkout.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from twisted.trial import unittest


@pytest.fixture(autouse=True)
def _mktemp_outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def mktemp(self: unittest.SynchronousTestCase) -> str:
        # As trial's: a path that does not exist yet, in a directory that does.
        return os.path.join(tempfile.mkdtemp(dir=tmp_path), "temp")

    monkeypatch.setattr(unittest.SynchronousTestCase, "mktemp", mktemp)
    yield
