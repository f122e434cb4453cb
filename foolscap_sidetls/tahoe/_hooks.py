"""
Every place where C{foolscap-sidetls tahoe} reaches into Tahoe-LAFS: the
one list of patch points, each with what it must look like (its
parameters, the callers that must look it up by name at call time), and
the Tahoe-LAFS releases it was checked against.

Tahoe-LAFS has no plugin point for connection handlers, so the launcher
replaces the functions that make them: only where handlers, listeners,
the tahoe.cfg key table and create-node's [i2p] section are made, never
TLS or Foolscap's protocol.  What it answers without patching (the tor
provider's C{get_tor_instance}, asked by the HTTPS storage client) is
listed too (L{RELIED_ON}): its caller must still ask by those names.  A
Tahoe whose internals differ would otherwise run half role-based (a
listener left stock, a Tub dialing the stock way), which fails in the
confusing ways this project exists to remove; so L{check} compares
everything first, and L{apply} patches nothing unless every point matches.

Checked against: Tahoe-LAFS 1.20.0 and 1.19.0 (each installed and run
through this module's checks and the tests in tests/tahoe).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Optional

__all__ = [
    "CHECKED_VERSIONS",
    "HookMismatch",
    "PATCH_POINTS",
    "PatchPoint",
    "Patched",
    "RELIED_ON",
    "Reliance",
    "apply",
    "check",
]

#: The Tahoe-LAFS releases whose internals match every patch point below.
CHECKED_VERSIONS: tuple[str, ...] = ("1.20.0", "1.19.0")

_ImportModule = Callable[[str], ModuleType]


@dataclass(frozen=True)
class PatchPoint:
    """
    One Tahoe-LAFS function the launcher replaces.

    @ivar module: the module holding it.
    @ivar name: its name there (C{Class.method} for a method).
    @ivar parameters: the parameter names it must have, in order.
    @ivar replacement: the factory in L{_patches} that makes the
        replacement from the original.
    @ivar alias_of: (module, name) of the function this name must be the
        very same object as (a name Tahoe imported with C{from ... import}).
    @ivar callers: (module, function, name): functions that must look the
        patched name up when they run, or the patch would never be called.
    @ivar why: what it makes, in words, for the refusal message.
    @ivar checked: the Tahoe-LAFS releases this point was checked against.
    """

    module: str
    name: str
    parameters: tuple[str, ...]
    replacement: str
    why: str
    alias_of: Optional[tuple[str, str]] = None
    callers: tuple[tuple[str, str, str], ...] = ()
    checked: tuple[str, ...] = CHECKED_VERSIONS

    @property
    def qualified(self) -> str:
        return "%s.%s" % (self.module, self.name)


_I2P_CREATE = ("allmydata.util.i2p_provider", "create")
_TOR_CREATE = ("allmydata.util.tor_provider", "create")
_VALID = ("allmydata.node", "_common_valid_config")

#: Every patch point, in the order they are applied.
PATCH_POINTS: tuple[PatchPoint, ...] = (
    PatchPoint(
        "allmydata.node", "_common_valid_config", (), "admit_keys",
        "the tahoe.cfg keys Tahoe accepts",
        callers=(("allmydata.client", "_valid_config", "_common_valid_config"),),
    ),
    PatchPoint(
        "allmydata.introducer.server", "_valid_config", (), "admit_keys",
        "the tahoe.cfg keys an introducer accepts", alias_of=_VALID,
        callers=(("allmydata.introducer.server", "create_introducer", "_valid_config"),),
    ),
    PatchPoint(
        "allmydata.util.i2p_provider", "create", ("reactor", "config"), "i2p_provider",
        "the [i2p] handler and listener",
    ),
    PatchPoint(
        "allmydata.client", "create_i2p_provider", ("reactor", "config"), "i2p_provider",
        "a client node's [i2p] handler and listener", alias_of=_I2P_CREATE,
        callers=(("allmydata.client", "create_client_from_config", "create_i2p_provider"),),
    ),
    PatchPoint(
        "allmydata.introducer.server", "create_i2p_provider", ("reactor", "config"), "i2p_provider",
        "an introducer's [i2p] handler and listener", alias_of=_I2P_CREATE,
        callers=(("allmydata.introducer.server", "create_introducer", "create_i2p_provider"),),
    ),
    PatchPoint(
        "allmydata.util.tor_provider", "create", ("reactor", "config", "import_tor", "import_txtorcon"),
        "tor_provider", "the [tor] handler and listener",
    ),
    PatchPoint(
        "allmydata.client", "create_tor_provider", ("reactor", "config", "import_tor", "import_txtorcon"),
        "tor_provider", "a client node's [tor] handler and listener", alias_of=_TOR_CREATE,
        callers=(("allmydata.client", "create_client_from_config", "create_tor_provider"),),
    ),
    PatchPoint(
        "allmydata.introducer.server", "create_tor_provider",
        ("reactor", "config", "import_tor", "import_txtorcon"),
        "tor_provider", "an introducer's [tor] handler and listener", alias_of=_TOR_CREATE,
        callers=(("allmydata.introducer.server", "create_introducer", "create_tor_provider"),),
    ),
    PatchPoint(
        "allmydata.node", "create_tub",
        ("tub_options", "default_connection_handlers", "foolscap_connection_handlers", "handler_overrides",
         "force_foolscap", "kwargs"),
        "create_tub", "every Tub's connection handlers (the main Tub, the storage-server Tubs)",
        callers=(("allmydata.node", "create_main_tub", "create_tub"),),
    ),
    PatchPoint(
        "allmydata.node", "tub_listen_on", ("i2p_provider", "tor_provider", "tub", "tubport", "location"),
        "tub_listen_on", "the main Tub's listeners (tub.port: endpoints, listen:tor, listen:i2p)",
        callers=(("allmydata.node", "create_main_tub", "tub_listen_on"),),
    ),
    PatchPoint(
        "allmydata.util.iputil", "listenOnUnused", ("tub", "portnum"), "listen_on_unused",
        "the log-port Tub's handlers and listener",
        callers=(("allmydata.node", "Node.create_log_tub", "listenOnUnused"),),
    ),
    # create-node --i2p-launch (Tahoe refuses it: "under development").
    PatchPoint(
        "allmydata.scripts.create_node", "validate_i2p_options", ("o",), "validate_i2p_options",
        "create-node's and create-introducer's I2P option checks (accepting --i2p-launch)",
        callers=(
            ("allmydata.scripts.create_node", "CreateNodeOptions.parseArgs", "validate_i2p_options"),
            ("allmydata.scripts.create_node", "CreateIntroducerOptions.parseArgs", "validate_i2p_options"),
        ),
        checked=("1.20.0", "1.19.0"),
    ),
    PatchPoint(
        "allmydata.util.i2p_provider", "create_config", ("reactor", "cli_config"), "i2p_create_config",
        "create-node's [i2p] section and destination key (--i2p-launch with a launched i2pd)",
        callers=(("allmydata.scripts.create_node", "write_node_config", "create_config"),),
        checked=("1.20.0", "1.19.0"),
    ),
)


@dataclass(frozen=True)
class Reliance:
    """
    A Tahoe-LAFS function the launcher does not patch but answers: it must
    still ask for what the launcher provides, by these names.

    @ivar function: (module, name) of the function.
    @ivar names: the names it must use (attributes it looks up).
    @ivar why: what the launcher answers there, for the refusal message.
    @ivar checked: the Tahoe-LAFS releases this was checked against.
    """

    function: tuple[str, str]
    names: tuple[str, ...]
    why: str
    checked: tuple[str, ...]


#: What the launcher answers without patching.
RELIED_ON: tuple[Reliance, ...] = (
    # TorProvider.get_tor_instance fires with a _web.TorWeb, not a
    # txtorcon Tor: this is the one caller, and web_agent all it uses.
    Reliance(
        ("allmydata.storage.http_client", "StorageClientFactory._create_agent"),
        ("get_tor_instance", "web_agent"),
        "the HTTPS storage client's agent over tor (answered with the node's own tor handler)",
        ("1.20.0", "1.19.0"),
    ),
)

#: create-node finds each listener's create_config through this table of
#: modules: the i2p entry must be the module whose create_config is patched.
_LISTENER_TABLE = ("allmydata.scripts.create_node", "_LISTENERS", "i2p", "allmydata.util.i2p_provider")

#: What the launcher calls on Tahoe's configuration object (its _Config).
_CONFIG_METHODS = ("allmydata.node", "_Config", ("enumerate_section", "get_config", "get_config_path"))


class HookMismatch(Exception):
    """
    The installed Tahoe-LAFS does not match the patch points: the launcher
    refuses to start, and has patched nothing.
    """

    def __init__(self, version: str, problems: list[str]) -> None:
        self.version = version
        self.problems = list(problems)
        super().__init__(
            "foolscap-sidetls tahoe: refusing to start: Tahoe-LAFS %s does not match what this launcher was "
            "checked against (Tahoe-LAFS %s): %s. Nothing was patched. Run stock `tahoe` instead, or install "
            "a checked release: pip install 'tahoe-lafs==%s'"
            % (version, ", ".join(CHECKED_VERSIONS), "; ".join(self.problems), CHECKED_VERSIONS[0])
        )


def _resolve(module: ModuleType, dotted: str) -> Any:
    found: Any = module
    for part in dotted.split("."):
        found = getattr(found, part)
    return found


def _parameters(function: Any) -> Optional[tuple[str, ...]]:
    try:
        return tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None


def check(import_module: _ImportModule = importlib.import_module) -> str:
    """
    Compare the installed Tahoe-LAFS with every patch point; its version.

    @param import_module: how modules are found (tests give a fake Tahoe).
    @raise HookMismatch: naming the version and each mismatch.
    """
    problems: list[str] = []
    try:
        version = str(getattr(import_module("allmydata"), "__version__", "unknown"))
    except ImportError as e:
        raise HookMismatch("(not importable)", ["import allmydata failed (%s)" % (e,)]) from None
    if version not in CHECKED_VERSIONS:
        problems.append("version %s is not one of the checked releases" % (version,))
    modules: dict[str, Optional[ModuleType]] = {}

    def module(name: str) -> Optional[ModuleType]:
        if name not in modules:
            try:
                modules[name] = import_module(name)
            except ImportError as e:
                problems.append("missing module %s (%s)" % (name, e))
                modules[name] = None
        return modules[name]

    def lookup(module_name: str, name: str) -> Any:
        found = module(module_name)
        if found is None:
            return None
        try:
            return _resolve(found, name)
        except AttributeError:
            problems.append("missing hook %s.%s" % (module_name, name))
            return None

    for point in PATCH_POINTS:
        original = lookup(point.module, point.name)
        if original is None:
            continue
        if not callable(original):
            problems.append("hook %s is not a function" % (point.qualified,))
            continue
        found = _parameters(original)
        if found != point.parameters:
            problems.append(
                "changed signature of %s: expected (%s), found (%s)"
                % (point.qualified, ", ".join(point.parameters), "?" if found is None else ", ".join(found))
            )
        if point.alias_of is not None:
            target = lookup(*point.alias_of)
            if target is not None and target is not original:
                problems.append(
                    "%s is no longer %s.%s, so patching one would miss the other" % ((point.qualified,) + point.alias_of)
                )
        for caller_module, caller, name in point.callers:
            function = lookup(caller_module, caller)
            if function is None:
                continue
            code = getattr(inspect.unwrap(function), "__code__", None)
            if code is None or name not in code.co_names:
                problems.append(
                    "%s.%s no longer calls %s, so the patch of %s would never run"
                    % (caller_module, caller, name, point.qualified)
                )
    for reliance in RELIED_ON:
        function = lookup(*reliance.function)
        if function is None:
            continue
        code = getattr(inspect.unwrap(function), "__code__", None)
        missing = [name for name in reliance.names if code is None or name not in code.co_names]
        if missing:
            problems.append(
                "%s.%s no longer uses %s, so %s would not be what it asks for"
                % (reliance.function + (", ".join(missing), reliance.why))
            )
    table_module, table_name, key, listener_module = _LISTENER_TABLE
    table = lookup(table_module, table_name)
    if table is not None:
        found_listener = table.get(key) if isinstance(table, dict) else None
        if found_listener is not module(listener_module):
            problems.append(
                "%s.%s[%r] is no longer the module %s, so create-node would not call the patched create_config"
                % (table_module, table_name, key, listener_module)
            )
    module_name, class_name, methods = _CONFIG_METHODS
    config_class = lookup(module_name, class_name)
    if config_class is not None:
        for method in methods:
            if not callable(getattr(config_class, method, None)):
                problems.append("missing hook %s.%s.%s" % (module_name, class_name, method))
    if problems:
        raise HookMismatch(version, problems)
    return version


class Patched:
    """The patches applied by L{apply}; L{undo} puts the originals back (for tests)."""

    def __init__(self, version: str, originals: list[tuple[Any, str, Any]]) -> None:
        self.version = version
        self._originals = originals

    def undo(self) -> None:
        for holder, attribute, original in reversed(self._originals):
            setattr(holder, attribute, original)
        self._originals = []


def apply(import_module: _ImportModule = importlib.import_module) -> Patched:
    """
    Check every patch point (L{check}), then patch them all: either every
    Tub Tahoe makes is role-based, or nothing was touched.

    @raise HookMismatch: nothing was patched.
    """
    from . import _patches

    version = check(import_module)
    made: dict[tuple[str, int], Any] = {}
    plan: list[tuple[Any, str, Any, Any]] = []
    for point in PATCH_POINTS:
        parent_name, _, attribute = point.name.rpartition(".")
        holder = import_module(point.module)
        if parent_name:
            holder = _resolve(holder, parent_name)
        original = getattr(holder, attribute)
        key = (point.replacement, id(original))
        if key not in made:
            # One replacement per original: an alias gets the very same object.
            made[key] = getattr(_patches, point.replacement)(original)
        plan.append((holder, attribute, original, made[key]))
    originals: list[tuple[Any, str, Any]] = []
    for holder, attribute, original, replacement in plan:
        setattr(holder, attribute, replacement)
        originals.append((holder, attribute, original))
    return Patched(version, originals)
