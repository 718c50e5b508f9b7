"""The study catalogue, ``conf/study/``: each study one small YAML file that lists only what differs.

``conf/study/<name>.yaml`` (``python -m sdnn.study <name>``) has the keys

* ``base``: names of ``conf/study/base/<base>.yaml``, whose ``overrides`` come first, in that order;
* ``overrides``: the study's own run.py overrides, after the bases';
* ``seeds``; ``variants``: a list whose entries are a variant set (``conf/study/variants/<set>.yaml``, itself such
  a list) or one variant ``name: {overrides: [...], schedule: [...], method: sdnn}`` (each key optional; a
  ``schedule`` also changes the baseline, which then gets its own);
* ``default_variants`` (default ``[main]``), ``about`` (one line), ``regime`` (its row in the regime map).

A base or study may declare ``files: {name: path}``: ``{name}`` in one of its overrides or its variants' is that
file, the path relative to the repository unless the environment variable ``SDNN_<NAME>`` gives another
(relative to the working folder).
``conf/study/on.yaml`` is the template of ``python -m sdnn.study --on <overrides>`` (the overrides are its base).

Files are read with ``yaml.safe_load``: data only. Anything malformed is a one-line ``ConfigError`` naming the file.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdnn.config import Method
from sdnn.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
CATALOGUE = CONF / "study"
REPOSITORY = CONF.parent
ADHOC = "on"          # conf/study/on.yaml: the template of --on, not a study of its own
RESERVED = {ADHOC, "map"}   # `python -m sdnn.study map ...` is the regime map
STUDY_KEYS = {"about", "regime", "base", "overrides", "files", "seeds", "variants", "default_variants"}
BASE_KEYS = {"files", "overrides"}
VARIANT_KEYS = {"overrides", "schedule", "method"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Variant:
    """A run compared with the baseline of the same seed: its ``method`` and overrides; ``schedule``
    overrides also apply to (and need) their own baseline."""

    overrides: tuple[str, ...] = ()
    schedule: tuple[str, ...] = ()
    method: str = "sdnn"

    def folder(self, name: str) -> str:
        return f"{self.method}-" + "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in name)


@dataclass(frozen=True)
class DataFile:
    """A file a study reads: where it is, and how a user points the study at another copy."""

    name: str
    path: Path
    declared_in: Path
    variable: str          # SDNN_<NAME>
    default: str           # the path the catalogue gives

    def check(self) -> None:
        if self.path.exists():  # a file, or a folder (of shards)
            return
        given = os.environ.get(self.variable)
        where = (f"{self.variable}={given}" if given else
                 f"{self.path}: no such file ({_shown(self.declared_in)}, files: {self.name})")
        raise ConfigError(f"{where}{': no such file' if given else ''}; set {self.variable}=/path/to/"
                          f"{Path(self.default).name} to use your copy")


@dataclass(frozen=True)
class Study:
    """One study: the overrides every run shares (``base``), its seeds and variants, and how it reads."""

    name: str
    base: tuple[str, ...]
    seeds: tuple[int, ...]
    variants: dict[str, Variant] = field(default_factory=dict)
    about: str = ""
    regime: str = ""      # class structure × model, for the regime map
    default_variants: tuple[str, ...] = ("main",)
    files: tuple[DataFile, ...] = ()
    invocation: str = ""  # what follows `python -m sdnn.study` to run it (its name, or --on ...)

    def check_files(self) -> None:
        """A one-line ``ConfigError`` for the first file the study reads that is not there."""
        for file in self.files:
            file.check()

    def pick(self, names: Sequence[str] | None) -> list[str]:
        """The variants to run: ``None`` = the defaults, ``["all"]`` = every one; others must exist."""
        picked = list(self.default_variants) if names is None else (
            list(self.variants) if list(names) == ["all"] else list(names))
        unknown = [v for v in picked if v not in self.variants]
        if unknown:
            raise ConfigError(f"unknown variant(s) {unknown} of study {self.name}; available: "
                              f"{', '.join(self.variants)} (or all)")
        return picked


def study_names() -> list[str]:
    """The studies of the catalogue (``conf/study/*.yaml``), sorted."""
    return sorted(path.stem for path in CATALOGUE.glob("*.yaml") if path.stem not in RESERVED)


def load_study(name: str) -> Study:
    """``conf/study/<name>.yaml`` with its bases and variant sets (nothing is checked against the data)."""
    path = CATALOGUE / f"{name}.yaml"
    if name in RESERVED or not path.is_file() or not re.fullmatch(r"[\w.-]+", name):
        hint = "; for a study on your own data: python -m sdnn.study --on <overrides>" if name != ADHOC else ""
        raise ConfigError(f"unknown study {name!r}; available: {', '.join(study_names())}{hint}")
    return _study(name, path, invocation=name)


def adhoc_study(overrides: Sequence[str], name: str) -> Study:
    """``--on <overrides>``: conf/study/on.yaml with the given overrides as its base."""
    overrides = [str(o) for o in overrides]
    if not overrides:
        raise ConfigError("--on needs the run's overrides, e.g. --on dataset=npz dataset.path=features.npz model=lr")
    return _study(name, CATALOGUE / f"{ADHOC}.yaml", invocation="--on " + shlex.join(overrides), given=overrides)


def _study(name: str, path: Path, invocation: str, given: Sequence[str] = ()) -> Study:
    spec = _mapping(path, STUDY_KEYS)
    files = dict(_files(path, spec))
    base: list[str] = []
    for base_name in _strings(path, spec, "base"):
        base_path = CATALOGUE / "base" / f"{base_name}.yaml"
        if not re.fullmatch(r"[\w.-]+", base_name) or not base_path.is_file():
            available = ", ".join(sorted(p.stem for p in (CATALOGUE / "base").glob("*.yaml")))
            raise ConfigError(f"{_shown(path)}: base {base_name!r} is not a file of conf/study/base/; available: "
                              f"{available}")
        base_spec = _mapping(base_path, BASE_KEYS)
        files.update(_files(base_path, base_spec))
        base += _strings(base_path, base_spec, "overrides")
    base += _strings(path, spec, "overrides")
    seeds = spec.get("seeds")
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ConfigError(f"{_shown(path)}: seeds must be a non-empty list of integers >= 0, e.g. [0, 1, 2]")
    variants = {name: Variant(overrides=tuple(_fill(path, o, files) for o in v.overrides),
                              schedule=tuple(_fill(path, o, files) for o in v.schedule), method=v.method)
                for name, v in _variants(path, spec.get("variants"), ()).items()}
    defaults = _strings(path, spec, "default_variants") or ["main"]
    for key in ("about", "regime"):
        if not isinstance(spec.get(key, ""), str):
            raise ConfigError(f"{_shown(path)}: {key} must be one line of text")
    study = Study(name=name, base=(*given, *(_fill(path, o, files) for o in base)), seeds=tuple(seeds), variants=variants,
                  about=spec.get("about", ""), regime=spec.get("regime", ""), default_variants=tuple(defaults),
                  files=tuple(files.values()), invocation=invocation)
    missing = [v for v in study.default_variants if v not in variants]
    if missing:
        raise ConfigError(f"{_shown(path)}: default_variants {missing} are not among its variants")
    return study


# ----------------------------------------------------------------------------- reading the files

def _shown(path: Path) -> str:
    """A catalogue file as the user finds it: relative to the repository."""
    try:
        return str(path.relative_to(CONF.parent))
    except ValueError:
        return str(path)


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{_shown(path)}: not valid YAML ({problem}{where})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{_shown(path)}: cannot be read ({exc})") from None


def _mapping(path: Path, keys: set[str]) -> dict[str, Any]:
    spec = _load(path)
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{_shown(path)}: must be a mapping of {', '.join(sorted(keys))}")
    unknown = sorted(str(k) for k in spec if k not in keys)
    if unknown:
        raise ConfigError(f"{_shown(path)}: unknown key(s) {unknown}; the keys are {', '.join(sorted(keys))}")
    return spec


def _strings(path: Path, spec: dict[str, Any], key: str) -> list[str]:
    values = spec.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{_shown(path)}: {key} must be a list of strings (quote one that YAML reads otherwise)")
    return list(values)


def _files(path: Path, spec: dict[str, Any]) -> dict[str, DataFile]:
    declared = spec.get("files") or {}
    if not isinstance(declared, dict) or not all(isinstance(k, str) and re.fullmatch(r"\w+", k)
                                                 and isinstance(v, str) for k, v in declared.items()):
        raise ConfigError(f"{_shown(path)}: files must map names (letters, digits, _) to paths")
    out = {}
    for name, default in declared.items():
        variable = f"SDNN_{name.upper()}"
        given = os.environ.get(variable)
        where = Path(given).expanduser() if given else REPOSITORY / default
        out[name] = DataFile(name=name, path=where.resolve(), declared_in=path, variable=variable, default=default)
    return out


def _fill(path: Path, override: str, files: dict[str, DataFile]) -> str:
    """``{name}`` in an override is the declared file's path."""

    def filled(match: re.Match) -> str:
        if match.group(1) not in files:
            raise ConfigError(f"{_shown(path)}: override {override!r} names {{{match.group(1)}}}, which no files: "
                              f"entry declares; declared: {', '.join(files) or 'none'}")
        return str(files[match.group(1)].path)

    return _PLACEHOLDER.sub(filled, override)


def _variants(path: Path, entries: Any, seen: tuple[str, ...]) -> dict[str, Variant]:
    """A variants list: set names (read in turn) and ``name: spec`` entries, in order."""
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{_shown(path)}: variants must be a non-empty list of variant sets "
                          "(conf/study/variants/<set>.yaml) and variants (name: {overrides: [...]})")
    out: dict[str, Variant] = {}
    for entry in entries:
        if isinstance(entry, str):
            found = _variant_set(path, entry, seen)
        elif isinstance(entry, dict) and len(entry) == 1:
            (name, spec), = entry.items()
            found = {name: _variant(path, name, spec)}
        else:
            raise ConfigError(f"{_shown(path)}: variant entry {entry!r} is neither a set name nor one "
                              "'name: {overrides: [...]}'")
        for name, variant in found.items():
            if name in out:
                raise ConfigError(f"{_shown(path)}: variant {name!r} is given twice")
            out[name] = variant
    return out


def _variant_set(path: Path, name: str, seen: tuple[str, ...]) -> dict[str, Variant]:
    set_path = CATALOGUE / "variants" / f"{name}.yaml"
    if not re.fullmatch(r"[\w.-]+", name) or not set_path.is_file():
        available = ", ".join(sorted(p.stem for p in (CATALOGUE / "variants").glob("*.yaml")))
        raise ConfigError(f"{_shown(path)}: variant set {name!r} is not a file of conf/study/variants/; "
                          f"available: {available}")
    if name in seen:
        raise ConfigError(f"{_shown(path)}: variant set {name!r} includes itself ({' → '.join([*seen, name])})")
    return _variants(set_path, _load(set_path), (*seen, name))


def _variant(path: Path, name: Any, spec: Any) -> Variant:
    if not isinstance(name, str):
        raise ConfigError(f"{_shown(path)}: variant name {name!r} must be a string (quote it)")
    spec = {} if spec is None else spec
    if not isinstance(spec, dict) or set(spec) - VARIANT_KEYS:
        raise ConfigError(f"{_shown(path)}: variant {name!r} must be a mapping of "
                          f"{', '.join(sorted(VARIANT_KEYS))}; got {spec!r}")
    methods = [m.value for m in Method]
    method = spec.get("method", "sdnn")
    if method not in methods:
        raise ConfigError(f"{_shown(path)}: variant {name!r}: method {method!r} is not one of {', '.join(methods)}")
    lists = {key: _strings(path, spec, key) for key in ("overrides", "schedule")}
    return Variant(overrides=tuple(lists["overrides"]), schedule=tuple(lists["schedule"]), method=method)
