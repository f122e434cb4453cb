"""
Packaging, through the real entry points: the sdist that C{python -m build}
makes (what the package index serves), the editable wheel that C{make
install} installs, the plugin cache C{make install} leaves, and C{make demo}'s
program.

Each check runs a real tool in a subprocess with a bounded wait, so a broken
MANIFEST.in or pyproject.toml fails here and not on a user's machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from typing import Any, Optional

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Bound on each subprocess: building an sdist takes ~5 s and collecting
#: the suite ~10 s on the 2-core CI machine.
WAIT = 300

#: Files at the top of the sdist: the ones the README and CLI point at, the
#: licence the metadata declares, and pytest.ini (the suite's options).
TOP_LEVEL = ("LICENSE", "NEWS.rst", "Makefile", "README.md", "pyproject.toml", "pytest.ini")

#: Directories shipped whole: their every file must be in the sdist.
WHOLE = ("examples", "tests", "benchmarks", "foolscap_sidetls")

#: What the sdist must not carry: per-machine caches (a shipped
#: dropin.cache would overwrite the installed Twisted's) and local trees.
_UNWANTED = re.compile(
    r"(^|/)(__pycache__|\.venv|\.git|\.hypothesis|_trial_temp|\.mypy_cache)(/|$)"
    r"|\.py[cod]$|(^|/)dropin\.cache$"
)

#: Words setuptools and pip use in the warnings the issue found in
#: C{make demo}'s output ("License classifiers are deprecated", "'compat'
#: editable mode ... will be removed").
_NOISE = re.compile(r"deprecat|BuildBackendWarning|will be removed", re.IGNORECASE)


def _run(argv: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=WAIT)


def _checkoutFiles(top: str) -> set[str]:
    """Every file under C{top} in the checkout, as sdist-relative paths."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
        dirnames[:] = [d for d in dirnames if not _UNWANTED.search(d + "/")]
        for name in filenames:
            relative = os.path.relpath(os.path.join(dirpath, name), ROOT).replace(os.sep, "/")
            if not _UNWANTED.search(relative):
                found.add(relative)
    return found


def _noise(output: str) -> list[str]:
    return [line for line in output.splitlines() if _NOISE.search(line)]


class Sdist(SynchronousTestCase):
    """
    The sdist is built once for the class (C{python -m build --sdist
    --no-isolation}: the test extra installs the backend, so no download).
    """

    tmp: str
    build: subprocess.CompletedProcess
    sdist: Optional[str]
    names: set[str]
    prefix: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="sidetls-sdist-")
        cls.build = _run(
            [sys.executable, "-m", "build", "--sdist", "--no-isolation",
             "--outdir", cls.tmp, ROOT],
            cwd=ROOT,
        )
        made = [n for n in os.listdir(cls.tmp) if n.endswith(".tar.gz")]
        cls.sdist = os.path.join(cls.tmp, made[0]) if len(made) == 1 else None
        cls.names = set()
        cls.prefix = ""
        if cls.sdist is not None:
            with tarfile.open(cls.sdist) as archive:
                members = [m.name for m in archive.getmembers() if m.isfile()]
            cls.prefix = members[0].split("/", 1)[0] + "/"
            cls.names = {m[len(cls.prefix):] for m in members}

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self) -> None:
        if self.sdist is None:
            self.fail(
                "python -m build --sdist failed (exit %d; the test extra installs "
                "build and setuptools>=77: make install):\n%s%s"
                % (self.build.returncode, self.build.stdout[-3000:], self.build.stderr[-3000:])
            )

    def _read(self, name: str) -> str:
        assert self.sdist is not None
        with tarfile.open(self.sdist) as archive:
            member = archive.extractfile(self.prefix + name)
            assert member is not None
            return member.read().decode("utf-8")

    def test_is_the_working_tree_without_caches(self) -> None:
        """
        Everything needed to run the tests and follow the README: the top-level
        files, every file of examples/, tests/ (helpers, tests/integration),
        benchmarks/ and the package, and the Twisted plugin module; and
        nothing per-machine (graft would take a dropin.cache or __pycache__).
        """
        required = set(TOP_LEVEL) | {"twisted/plugins/foolscap_sidetls_endpoints.py"}
        for top in WHOLE:
            required |= _checkoutFiles(top)
        # The ones the issue found missing, named so that an empty walk
        # cannot pass this test.
        self.assertTrue(
            {"tests/__init__.py", "tests/_support/tls.py", "tests/integration/conftest.py",
             "examples/reverse_listener.py", "examples/configs/tcp.cfg",
             "benchmarks/run.py"} <= required
        )
        self.assertEqual(sorted(required - self.names), [])
        self.assertEqual(sorted(n for n in self.names if _UNWANTED.search(n)), [])

    def test_declares_the_mit_licence_by_spdx_expression(self) -> None:
        licence = self._read("LICENSE")
        self.assertEqual(licence.splitlines()[0], "MIT License")
        self.assertIn("Copyright (c) 2026 the foolscap-sidetls authors", licence)
        metadata = self._read("PKG-INFO").splitlines()
        self.assertIn("License-Expression: MIT", metadata)
        self.assertIn("License-File: LICENSE", metadata)
        self.assertEqual([line for line in metadata if line.startswith("Classifier: License")], [])

    def test_builds_without_deprecation_warnings(self) -> None:
        self.assertEqual(_noise(self.build.stdout + self.build.stderr), [])

    def test_its_tests_collect_after_unpacking(self) -> None:
        """
        Unpacked, the sdist's own suite collects every test file without an
        error (collecting, not running: the full suite takes minutes).
        """
        assert self.sdist is not None
        where = tempfile.mkdtemp(prefix="sidetls-unpacked-")
        self.addCleanup(shutil.rmtree, where, True)
        with tarfile.open(self.sdist) as archive:
            archive.extractall(where, filter="data")
        tree = os.path.join(where, self.prefix.rstrip("/"))
        result = _run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=tree,
        )
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output[-3000:])
        self.assertNotIn("error", output.splitlines()[-1].lower(), output[-3000:])
        collected = {line.split("::", 1)[0] for line in result.stdout.splitlines() if "::" in line}
        expected = {
            f for f in _checkoutFiles("tests")
            if os.path.basename(f).startswith("test_") and f.endswith(".py")
        }
        self.assertEqual(sorted(expected - collected), [])
        self.assertEqual(sorted(collected - expected), [])


class Editable(SynchronousTestCase):
    """
    The editable wheel C{make install} gets from pip: built here through the
    same PEP 660 hook, without isolation.
    """

    def test_puts_the_checkout_on_sys_path_quietly(self) -> None:
        """
        Not setuptools' import-hook mode, which Twisted's plugin discovery
        cannot see, and not the deprecated C{editable_mode=compat}: one .pth
        line naming the checkout, whose twisted/plugins Twisted then searches.
        """
        from pyproject_hooks import BuildBackendHookCaller

        with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
            backend = tomllib.load(f)["build-system"]["build-backend"]
        output: list[str] = []

        def runner(cmd: Any, cwd: Any = None, extra_environ: Any = None) -> None:
            env = dict(os.environ, **(extra_environ or {}))
            done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=WAIT)
            output.append(done.stdout + done.stderr)
            done.check_returncode()

        out = tempfile.mkdtemp(prefix="sidetls-editable-")
        self.addCleanup(shutil.rmtree, out, True)
        wheel = BuildBackendHookCaller(ROOT, backend, runner=runner).build_editable(out)
        with zipfile.ZipFile(os.path.join(out, wheel)) as archive:
            pth = [n for n in archive.namelist() if n.endswith(".pth")]
            self.assertEqual(len(pth), 1, archive.namelist())
            lines = archive.read(pth[0]).decode("utf-8").split()
            finders = [n for n in archive.namelist() if n.endswith("_finder.py")]
        self.assertEqual([os.path.realpath(line) for line in lines], [os.path.realpath(ROOT)])
        self.assertEqual(finders, [])
        self.assertEqual(_noise("".join(output)), [])


class PluginCache(SynchronousTestCase):
    """
    In the venv C{make install} builds, a C{sidetls:} string is parsed
    without importing any other endpoint plugin (txi2p's takes ~6 s).
    """

    def test_sidetls_is_the_first_endpoint_plugin_tried(self) -> None:
        if not os.path.exists(os.path.join(sys.prefix, ".installed")):
            raise SkipTest("this interpreter's venv was not made by make install")
        probe = (
            "import sys, time\n"
            "from twisted.internet import reactor\n"
            "from twisted.internet.endpoints import serverFromString\n"
            "started = time.perf_counter()\n"
            "serverFromString(reactor, 'sidetls:tcp:0')\n"
            "print('%.2f' % (time.perf_counter() - started))\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('twisted.plugins.'))))\n"
            "print('txi2p' in sys.modules)\n"
        )
        result = _run([sys.executable, "-c", probe], cwd=ROOT)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        seconds, plugins, txi2p = result.stdout.splitlines()[-3:]
        self.assertEqual(plugins, "twisted.plugins._foolscap_sidetls_endpoints", "parse took %s s" % seconds)
        self.assertEqual(txi2p, "False")


class Demo(SynchronousTestCase):
    """C{make demo}'s program, as a user sees it."""

    def test_says_the_stock_failure_is_expected_before_it_happens(self) -> None:
        result = _run([sys.executable, os.path.join("examples", "reverse_listener.py")], cwd=ROOT)
        lines = result.stdout.splitlines()
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr[-3000:])
        self.assertEqual(lines[-1], "RESULT: OK")
        expected = [i for i, line in enumerate(lines) if "expected to fail" in line]
        failed = [i for i, line in enumerate(lines) if line.startswith("FAILED:")]
        self.assertEqual(len(failed), 1, lines)
        self.assertEqual(len(expected), 1, lines)
        self.assertLess(expected[0], failed[0], lines)
        self.assertEqual(_noise(result.stdout + result.stderr), [])
