"""The ccxt package without its 104 exchange modules: each name is loaded when it is first used.

    ccxt_package() -> the `ccxt` module (`ccxt.bybit`, `ccxt.BaseError`, ... as `import ccxt` gives them)
    preload(names) -> None   (loads those names now, e.g. before the daemon freezes start-up)

`ccxt/__init__.py` imports every exchange module it ships (104 in ccxt 4.5.90: 0.3 s and some 35 MB
resident), and no lighter import path exists upstream (ccxt issue #29573): even `import ccxt.base.errors`
runs that `__init__` first. tierdrift uses three exchange classes (`binanceusdm`, `binancecoinm`, `bybit`)
and the errors. So `ccxt_package` registers, instead of running `__init__`, a module for `ccxt` built
from ccxt's own import spec (the same `__path__`, `__file__` and loader): `ccxt.base.errors` or
`ccxt.bybit` are then imported as the real submodules of the real directory, each loading only what it
imports itself (the base `Exchange`, requests, cryptography: what the real package loads too).

What the module answers is read from `__init__`'s own source, never listed here: each `from ccxt.X
import Y` and each plain assignment (`__version__`, `exchanges`) binds a name, and the name is bound on
first access to what `__init__` would have bound to it (`ccxt.bybit` is the class `ccxt.bybit.bybit`,
not the submodule; `ccxt.BaseError` the class of `ccxt.base.errors`; `ccxt.exchanges` the full list).
Any other name (`__all__`, which `__init__` computes, or a name it does not bind) first runs the real
`__init__` into the module, so code that uses the package in any other way (`from ccxt import *`,
`dir`) gets the whole real package, with the classes already loaded being the same objects.

Fallbacks, where the light path could differ from the real package: if `ccxt` is already imported it is
used as it is, and if its `__init__` holds any statement other than those imports and assignments (a
ccxt with another layout), or is not a plain source file, `ccxt_package` is a plain `import ccxt`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NAME = "ccxt"


class _From:
    """`from <module> import <attr>` in `__init__`. (Plain classes: a dataclass costs a millisecond to
    create, and this module is imported at start-up by every command that imports `monitor.exchanges`.)"""

    __slots__ = ("attr", "module")

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr


class _Value:
    """`name = <literal>` in `__init__`."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


#: `name = <expression>` in `__init__` (`__all__`): known only by running it.
_COMPUTED = object()

Binding = _From | _Value | object

_lock = threading.RLock()  # one installation, one load of a name, one run of the real `__init__`
_bindings: dict[str, Binding] = {}  # of the installed light module (one per process)


def ccxt_package() -> types.ModuleType:
    """The `ccxt` package: the one already imported, else the light module (or the real one, see above)."""
    module = sys.modules.get(NAME)
    if module is not None:
        return module
    with _lock:
        module = sys.modules.get(NAME)
        if module is None:
            module = _install() or importlib.import_module(NAME)
    return module


def preload(names: Iterable[str]) -> None:
    """Load each of `names` (attributes of the package) now rather than at first use."""
    package = ccxt_package()
    for name in names:
        getattr(package, name)


def is_light(module: types.ModuleType) -> bool:
    """True while `module` is the light package (until something ran the real `__init__` into it)."""
    return isinstance(module, _Light)


def bindings_of(source: str) -> dict[str, Binding] | None:
    """What each name of a ccxt `__init__` source is bound to at its end, or None if the source does
    anything else (then only running it tells what the package holds)."""
    import ast  # here: the modules that import this one are imported by read-only commands too

    out: dict[str, Binding] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(NAME + "."):
            if any(alias.name == "*" for alias in node.names):
                return None
            for alias in node.names:
                out[alias.asname or alias.name] = _From(str(node.module), alias.name)
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            try:
                binding: Binding = _Value(ast.literal_eval(node.value))
            except ValueError:
                binding = _COMPUTED
            for target in node.targets:
                assert isinstance(target, ast.Name)  # checked above; narrows for mypy
                out[target.id] = binding
        else:
            return None
    return out


def _install() -> types.ModuleType | None:
    """Register the light module as `ccxt`, or return None when the layout is not the expected one."""
    spec = importlib.util.find_spec(NAME)  # finds the package without importing it
    if (
        spec is None
        or spec.origin is None
        or not spec.submodule_search_locations
        or not isinstance(spec.loader, importlib.machinery.SourceFileLoader)
    ):
        return None
    try:
        found = bindings_of(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    if found is None:
        return None
    module = importlib.util.module_from_spec(spec)
    _bindings.clear()
    _bindings.update(found)
    module.__class__ = _Light
    sys.modules[NAME] = module
    return module


def _resolve(module: types.ModuleType, name: str) -> Any:
    """What `__init__` binds `name` to, loading only the submodule it comes from.

    One load at a time (`_lock`): ccxt's base modules import each other in a cycle (`ccxt.base` and
    `ccxt.base.exchange`), which the real package only ever imports from one thread, inside its
    `__init__`; two threads loading two names at once met there in a `_DeadlockError` or a partially
    initialised module. (A name already loaded never gets here: it is in the module's namespace.) Code
    importing ccxt's submodules itself from several threads at once could still meet that cycle;
    tierdrift loads ccxt through `ccxt_package` only.
    """
    with _lock:
        if name in module.__dict__:  # another thread loaded it while this one waited
            return module.__dict__[name]
        binding = _bindings.get(name, _COMPUTED)
        if isinstance(binding, _From):
            source = importlib.import_module(binding.module)
            try:
                value = getattr(source, binding.attr)
            except AttributeError:  # `from package import submodule`, as the import statement allows
                value = importlib.import_module(f"{binding.module}.{binding.attr}")
        elif isinstance(binding, _Value):
            value = binding.value
        else:
            return _run_init(module, name)
        module.__dict__[name] = value
        return value


def _run_init(module: types.ModuleType, name: str) -> Any:
    """Run the real `__init__` into `module` (once), then answer `name` as the real package would."""
    with _lock:
        if isinstance(module, _Light):
            spec = module.__spec__
            assert spec is not None  # set by module_from_spec, with the loader checked in `_install`
            assert spec.loader is not None
            spec.loader.exec_module(module)
            object.__setattr__(module, "__class__", types.ModuleType)  # the whole package now: nothing left to load
    try:
        return module.__dict__[name]
    except KeyError:
        raise AttributeError(f"module {NAME!r} has no attribute {name!r}") from None


class _Light(types.ModuleType):
    """The `ccxt` module before its `__init__` ran: names resolve on first access (PEP 562's hook, on the
    module's class so that the module's namespace holds only what the real package would hold)."""

    def __getattr__(self, name: str) -> Any:  # called only for names not bound yet
        return _resolve(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds `ccxt.<child>` to each submodule it loads (`ccxt.binance` when
        # `ccxt.binanceusdm` imports it); `__init__` rebinds such names (the exchange's class, `base`
        # a list), so the real package never shows them as submodules and neither does this one.
        binding = _bindings.get(name)
        if binding is not None and isinstance(value, types.ModuleType) and value.__name__ == f"{NAME}.{name}":
            if isinstance(binding, _From) and binding.module == value.__name__ and hasattr(value, binding.attr):
                value = getattr(value, binding.attr)
            elif isinstance(binding, _Value):
                value = binding.value
            else:
                return  # resolved on first access
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(_bindings))
