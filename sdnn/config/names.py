"""The names a command line can use, for "did you mean ...?": the config groups and their options (the YAML
files under conf/), and the keys of the configuration (the schema's plain keys, every key an option of a group
declares). No torch, no Hydra."""

from __future__ import annotations

import dataclasses
import difflib
import functools
from pathlib import Path
from typing import Any

import yaml

from sdnn.config.wording import CONF
# groups that options build on, the user's own file, and the catalogues of other commands (sdnn.study's studies,
# sdnn.advise's calibration): never typed as group=option
NOT_CHOSEN = ("base", "local", "study", "advise")
# groups whose options set keys of the other groups and of hydra (@package _global_): no keys of their own
GLOBAL = ("experiment", "sweep")


def closest(word: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The candidate most like ``word`` (difflib, similarity >= 0.6), or None."""
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def groups() -> list[str]:
    """The config groups chosen on the command line (``group=option``)."""
    return sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in NOT_CHOSEN and any(p.rglob("*.yaml")))


def options(group: str) -> list[str]:
    """The options of ``group`` (``experiment``: ``paper/cifar10_wrn``, ...)."""
    folder = CONF / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml")) if folder.is_dir() else []


def _merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, dict) or key not in into:
            into[key] = dict(value) if isinstance(value, dict) else value
    return into


def _keys_of(path: Path) -> dict[str, Any]:
    """The keys an option file declares, with those of the files its ``defaults`` list builds on."""
    text = yaml.safe_load(path.read_text()) or {}
    tree: dict[str, Any] = {}
    for entry in text.pop("defaults", None) or []:
        name = entry if isinstance(entry, str) else None
        if not name or name == "_self_" or name.startswith("override "):
            continue
        name = name.split("@", 1)[0]
        base = CONF / f"{name.lstrip('/')}.yaml" if name.startswith("/") else path.parent / f"{name}.yaml"
        if base.is_file():
            _merge(tree, _keys_of(base))
    return _merge(tree, {k: v for k, v in text.items() if isinstance(k, str)})


def _fields(schema: type) -> dict[str, Any]:
    """A dataclass's fields as a key tree (nested dataclasses as subtrees)."""
    tree: dict[str, Any] = {}
    for item in dataclasses.fields(schema):
        factory = item.default_factory if item.default_factory is not dataclasses.MISSING else None
        tree[item.name] = _fields(factory) if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None
    return tree


@functools.lru_cache(maxsize=1)
def key_tree() -> dict[str, Any]:
    """Every known key: the schema's plain keys and, under each group, the union of its options' keys."""
    from sdnn.config.schema import RunConfig

    tree = _fields(RunConfig)
    for group in groups():
        if group in GLOBAL:
            continue
        keys: dict[str, Any] = {}
        for option in options(group):
            _merge(keys, _keys_of(CONF / group / f"{option}.yaml"))
        tree[group] = keys
    return tree


def plain_groups() -> list[str]:
    """The groups of plain keys that the schema types (``phase1``, ``subclass``, ...): no key can be added."""
    from sdnn.config.schema import RunConfig

    return sorted(item.name for item in dataclasses.fields(RunConfig)
                  if item.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(item.default_factory))


def keys_at(prefix: str) -> list[str] | None:
    """The keys under the dotted ``prefix`` ('' for the top level), or None where it is not a known node."""
    node: Any = key_tree()
    for part in filter(None, prefix.split(".")):
        node = node.get(part) if isinstance(node, dict) else None
    return sorted(node) if isinstance(node, dict) else None


def correct_key(key: str) -> str | None:
    """``key`` with each unknown part replaced by the closest known one (``subclas.per_clas`` →
    ``subclass.per_class``); None where a part has no close match or nothing needed changing."""
    node: Any = key_tree()
    parts = key.split(".")
    fixed = []
    for part in parts:
        if not isinstance(node, dict):
            return None
        name = part if part in node else closest(part, list(node))
        if name is None:
            return None
        fixed.append(name)
        node = node[name]
    return ".".join(fixed) if fixed != parts else None
