"""What a file may name: the ``_target_``s of a model card (``model/model.json``: the backbone, the head,
the run's ``dataset`` for ``sdnn.predict --split``) turned into objects without running anything the
file chose.

A card is data. Each ``_target_`` is checked against an allow-list *before anything is imported*: the
project's own classes (``sdnn.*``) and ``torch.nn.*``, plus the packages a user names with ``--trust``;
it must then be a class of the kind its place needs (a ``torch.nn.Module`` for network parts). A trusted
package must not come from the run folder. ``build`` makes the object from the plain JSON values: no
interpolation (``${...}`` is a string like any other), no resolvers, nested ``_target_`` nodes built
the same way, and every target of the tree is checked before the first one is called.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sdnn.errors import DataError

ALLOWED = ("sdnn", "torch.nn")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")  # dotted, no _private or __dunder__ part


def _under(target: str, root: str) -> bool:
    return target == root or target.startswith(root + ".")


def trusted_names(trust: Sequence[str]) -> tuple[str, ...]:
    """``--trust`` values checked: dotted package names (``mypackage`` or ``mypackage.nets``)."""
    for name in trust:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name):
            raise DataError(f"--trust {name!r}: not a package name (e.g. --trust mypackage)")
    return tuple(trust)


def _inside(path: str | None, folder: Path | None) -> bool:
    if not path or folder is None:
        return False
    try:
        return Path(path).resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _not_from(top: str, folder: Path | None, what: str, target: str) -> None:
    """A trusted package found inside ``folder`` (the run folder) is refused: its code came with the folder."""
    module = sys.modules.get(top)
    if module is not None:
        places = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []) or [])]
    else:
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: finds it, imports nothing
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise DataError(f"{what}._target_={target}: cannot import {top} (not installed and not on PYTHONPATH; "
                            "the current folder and the run folder are not searched)")
        places = [spec.origin, *list(spec.submodule_search_locations or [])]
    if any(_inside(place, folder) for place in places):
        raise DataError(f"{what}._target_={target}: {top} would be imported from the run folder {folder}; code that "
                        "comes with a run folder is never run (install your package, or put it on PYTHONPATH "
                        "outside the run folder)")


def resolve(target: Any, what: str, kind: type | None = None, trust: Sequence[str] = (),
            run_dir: Path | None = None, must: Callable[[type], bool] | None = None, needs: str = "") -> type:
    """The class ``target`` names, imported only once it is allowed: under ``ALLOWED`` or a ``trust``ed
    package (not loaded from ``run_dir``), a class, a subclass of ``kind`` when given and passing ``must``
    (``needs`` says what it must be). Anything else is a one-line ``DataError``; nothing is called."""
    if not isinstance(target, str) or not _NAME.fullmatch(target):
        raise DataError(f"{what}._target_={target!r}: not a dotted class name (e.g. sdnn.models.MLP)")
    roots = [*ALLOWED, *trust]
    if not any(_under(target, root) for root in roots):
        top = target.split(".")[0]
        allowed = " and ".join(r + ".*" for r in ALLOWED)
        hint = ("" if top in sys.stdlib_module_names or top in ("torch", "numpy") else
                f"; if {top} is your own package and you trust this run folder, add --trust {top} (installed or on "
                "PYTHONPATH)")
        raise DataError(f"{what}._target_={target} is not allowed in a model card (refused, not imported): a card "
                        f"may name the classes of {allowed}{' only' if not hint else ''}{hint}")
    if not any(_under(target, root) for root in ALLOWED):
        _not_from(target.split(".")[0], run_dir, what, target)
    parts = target.split(".")
    found: Any = None
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable module, then attributes (nested classes)
        module_name = ".".join(parts[:cut])
        if not any(_under(module_name, root) or _under(root, module_name) for root in roots):
            break
        try:
            found = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and _under(module_name, exc.name):
                continue  # not a module: try a shorter one
            raise DataError(f"{what}._target_={target}: cannot import it (ModuleNotFoundError: {exc})") from None
        except Exception as exc:  # noqa: BLE001 — an allowed module that fails to import: name it
            raise DataError(f"{what}._target_={target}: cannot import it ({type(exc).__name__}: {exc})") from None
        try:
            for name in parts[cut:]:
                found = getattr(found, name)
        except AttributeError:
            raise DataError(f"{what}._target_={target}: {module_name} has no {'.'.join(parts[cut:])}") from None
        break
    else:
        found = None
    if found is None:
        raise DataError(f"{what}._target_={target}: cannot import it (no such module)")
    home = getattr(found, "__module__", None) or ""
    if not any(_under(home, root) for root in roots):  # reached through an attribute: sdnn.x.torch.fx.Y
        raise DataError(f"{what}._target_={target} is defined in {home or 'no module'}, outside the packages a "
                        "card may name (refused, not called)")
    if not isinstance(found, type) or (kind is not None and not issubclass(found, kind)) or \
            (must is not None and not must(found)):
        wanted = needs or (f"a {kind.__module__}.{kind.__qualname__} class" if kind is not None else "a class")
        wanted = wanted.replace("torch.nn.modules.module.Module", "torch.nn.Module")
        raise DataError(f"{what}._target_={target} is not {wanted}; a model card names classes only "
                        "(refused, not called)")
    return found


def check_tree(node: Any, what: str, kind: type | None, trust: Sequence[str], run_dir: Path | None) -> None:
    """Every ``_target_`` of a (nested) card entry resolved and checked, before any is called."""
    if isinstance(node, dict):
        if "_target_" in node:
            resolve(node["_target_"], what, kind, trust, run_dir)
        for key, value in node.items():
            check_tree(value, f"{what}.{key}", kind, trust, run_dir)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_tree(value, f"{what}[{index}]", kind, trust, run_dir)


def build(node: Any, what: str, kind: type | None = None, trust: Sequence[str] = (), run_dir: Path | None = None,
          top: type | None = None, **given) -> Any:
    """The object of a card entry: its ``_target_`` class called with its other keys (``_args_``: positional
    ones) and ``given``; nested ``_target_`` nodes first, the same way. ``top``: the already checked class of
    the outermost node. Values are used as they are (no interpolation)."""
    if isinstance(node, list):
        return [build(v, f"{what}[{i}]", kind, trust, run_dir) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if "_target_" not in node:
        return {k: build(v, f"{what}.{k}", kind, trust, run_dir) for k, v in node.items()}
    cls = top or resolve(node["_target_"], what, kind, trust, run_dir)
    unknown = sorted(k for k in node if k.startswith("_") and k not in ("_target_", "_args_", "_convert_",
                                                                          "_recursive_", "_partial_"))
    if unknown or node.get("_partial_"):
        raise DataError(f"{what}: {', '.join(unknown) or '_partial_'} is not something a model card may hold")
    args = build(node.get("_args_", []), f"{what}._args_", kind, trust, run_dir)
    if not isinstance(args, list):
        raise DataError(f"{what}._args_: expected a list")
    kwargs = {k: build(v, f"{what}.{k}", kind, trust, run_dir) for k, v in node.items() if not k.startswith("_")}
    return cls(*args, **kwargs, **given)
