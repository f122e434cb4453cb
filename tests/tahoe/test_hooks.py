"""
The patch points against the installed Tahoe-LAFS, and against a Tahoe
whose internals changed: refused, naming the version and the hook, with
nothing patched.
"""

from __future__ import annotations

import importlib
import types
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

import allmydata
from allmydata import client, node
from allmydata.introducer import server
from allmydata.util import i2p_provider, tor_provider

from foolscap_sidetls.tahoe import CHECKED_VERSIONS, PATCH_POINTS, HookMismatch, apply, check

#: Every patched attribute and the real function there before any patch.
_REAL = {
    (point.module, point.name): importlib.import_module(point.module).__dict__[point.name]
    for point in PATCH_POINTS
}


def _changed(module_name: str, change: Callable[[types.ModuleType], None]) -> Callable[[str], Any]:
    """An importer whose C{module_name} is a copy of the real one with C{change} made to it."""
    real = importlib.import_module(module_name)
    fake = types.ModuleType(module_name)
    fake.__dict__.update(vars(real))
    change(fake)

    def import_module(name: str) -> Any:
        return fake if name == module_name else importlib.import_module(name)

    import_module.fake = fake  # type: ignore[attr-defined]
    return import_module


class InstalledTahoeTests(SynchronousTestCase):
    def test_installedReleaseMatches(self) -> None:
        """The installed Tahoe-LAFS is a checked release and matches every point."""
        self.assertIn(allmydata.__version__, CHECKED_VERSIONS)
        self.assertEqual(check(), allmydata.__version__)

    def test_everyPointPatchedAndUndone(self) -> None:
        """apply() replaces all 13 points (aliases by one object); undo() restores every original."""
        patched = apply()
        try:
            self.assertEqual(len(PATCH_POINTS), 13)
            replaced = [(m, n) for (m, n), real in _REAL.items() if getattr(importlib.import_module(m), n) is real]
            self.assertEqual(replaced, [])
            self.assertIs(client.create_i2p_provider, i2p_provider.create)
            self.assertIs(server.create_tor_provider, tor_provider.create)
            self.assertIs(server._valid_config, node._common_valid_config)
        finally:
            patched.undo()
        self.assertEqual(
            [(m, n) for (m, n), real in _REAL.items() if getattr(importlib.import_module(m), n) is not real], []
        )


class ChangedTahoeTests(SynchronousTestCase):
    def assertRefusedUntouched(self, import_module: Callable[[str], Any], *words: str) -> str:
        fake = import_module.fake  # type: ignore[attr-defined]
        before = dict(vars(fake))
        with self.assertRaises(HookMismatch) as caught:
            apply(import_module)
        message = str(caught.exception)
        for text in words + ("Nothing was patched",):
            self.assertIn(text, message)
        # Nothing patched: not the real modules, not the fake one.
        self.assertEqual(
            [(m, n) for (m, n), real in _REAL.items() if getattr(importlib.import_module(m), n) is not real], []
        )
        self.assertEqual(vars(fake), before)
        return message

    def test_missingHook(self) -> None:
        """A Tahoe without tub_listen_on: refused, naming 1.20.0 and the hook."""
        importer = _changed("allmydata.node", lambda m: delattr(m, "tub_listen_on"))
        message = self.assertRefusedUntouched(
            importer, "Tahoe-LAFS %s does not match" % (allmydata.__version__,),
            "missing hook allmydata.node.tub_listen_on",
        )
        self.assertEqual(message.count("missing hook"), 1)

    def test_changedSignature(self) -> None:
        """A create_tub taking other parameters: refused, both signatures named."""

        def create_tub(tub_options: Any, handlers: Any) -> None:
            raise AssertionError("never called")

        importer = _changed("allmydata.node", lambda m: setattr(m, "create_tub", create_tub))
        self.assertRefusedUntouched(
            importer,
            "changed signature of allmydata.node.create_tub: expected (tub_options, default_connection_handlers, "
            "foolscap_connection_handlers, handler_overrides, force_foolscap, kwargs), found (tub_options, handlers)",
        )

    def test_callerNoLongerLooksItUp(self) -> None:
        """A create_main_tub that no longer calls create_tub by name would leave Tubs stock: refused."""

        def create_main_tub(config: Any, *args: Any, **kwargs: Any) -> None:
            return tub_listen_on()  # type: ignore[name-defined]  # noqa: F821

        importer = _changed("allmydata.node", lambda m: setattr(m, "create_main_tub", create_main_tub))
        self.assertRefusedUntouched(
            importer,
            "allmydata.node.create_main_tub no longer calls create_tub, so the patch of allmydata.node.create_tub "
            "would never run",
        )

    def test_unknownVersion(self) -> None:
        """A release nobody checked: refused, naming it and the checked ones."""
        importer = _changed("allmydata", lambda m: setattr(m, "__version__", "1.99.0"))
        self.assertRefusedUntouched(
            importer,
            "Tahoe-LAFS 1.99.0 does not match what this launcher was checked against (Tahoe-LAFS %s)"
            % (", ".join(CHECKED_VERSIONS),),
            "version 1.99.0 is not one of the checked releases",
        )

    def test_aliasDiverged(self) -> None:
        """introducer.server's create_i2p_provider no longer Tahoe's create: refused (one patch would miss it)."""
        importer = _changed("allmydata.introducer.server", lambda m: setattr(m, "create_i2p_provider", lambda reactor, config: None))
        self.assertRefusedUntouched(
            importer,
            "allmydata.introducer.server.create_i2p_provider is no longer allmydata.util.i2p_provider.create",
        )

    def test_configMethodMissing(self) -> None:
        """A _Config without enumerate_section (read for [tor]/[i2p]): refused."""
        fake_config = type("_Config", (), {"get_config": lambda self: None, "get_config_path": lambda self: None})
        importer = _changed("allmydata.node", lambda m: setattr(m, "_Config", fake_config))
        self.assertRefusedUntouched(importer, "missing hook allmydata.node._Config.enumerate_section")

    def test_storageClientNoLongerAsksForTor(self) -> None:
        """
        An HTTPS storage client that no longer gets its agent through
        get_tor_instance and web_agent (what the launcher answers with the
        node's own tor): refused, naming both.
        """

        class StorageClientFactory:
            async def _create_agent(self, nurl: Any, reactor: Any, tls: Any, pool: Any) -> Any:
                return await self._tor_provider.get_tor(reactor)  # type: ignore[attr-defined]

        importer = _changed(
            "allmydata.storage.http_client", lambda m: setattr(m, "StorageClientFactory", StorageClientFactory)
        )
        self.assertRefusedUntouched(
            importer,
            "allmydata.storage.http_client.StorageClientFactory._create_agent no longer uses get_tor_instance, "
            "web_agent, so the HTTPS storage client's agent over tor (answered with the node's own tor handler) "
            "would not be what it asks for",
        )

    def test_createNodeListenerTableChanged(self) -> None:
        """create-node's listener table no longer holding i2p_provider: its create_config patch would be missed."""
        importer = _changed(
            "allmydata.scripts.create_node", lambda m: setattr(m, "_LISTENERS", {**m._LISTENERS, "i2p": object()})
        )
        self.assertRefusedUntouched(
            importer,
            "allmydata.scripts.create_node._LISTENERS['i2p'] is no longer the module allmydata.util.i2p_provider, "
            "so create-node would not call the patched create_config",
        )
