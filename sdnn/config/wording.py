"""The wording of configuration errors: one line that names the key, the value as typed and the fix
(``require``), OmegaConf's and Hydra's errors reworded (``one_line``, ``composition_error``: an override Hydra
cannot parse, an unknown key or option with the closest known one, from ``sdnn.config.names``) and where a key
of an earlier layout went (``moved_hint``). No torch, no Hydra at import."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf.errors import OmegaConfBaseException

from sdnn.errors import ConfigError, listed

CONF = Path(__file__).resolve().parents[2] / "conf"


def require(ok: bool, key: str, value: Any, rule: str) -> None:
    """A ``ConfigError`` ``"<key>=<value> <rule>"`` unless ``ok``."""
    if not ok:
        shown = listed(value) if isinstance(value, (list, tuple)) and len(value) > 10 else repr(value)
        raise ConfigError(f"{key}={shown} {rule}")


# Keys that an earlier layout of the configuration had, and where they are now.
MOVED = {
    "optim.name": "optim=<sgd|adam> (the optimiser is a config group)",
    "optim.milestones": "scheduler.milestones (scheduler=multistep)",
    "optim.gamma": "scheduler.gamma",
}
MODEL_KEYS_MOVED = "model.backbone.{key} (a model's arguments are under model.backbone)"
# The folder of ready sweeps of an earlier layout (python run.py -m --config-dir multirun_sweeps --config-name <name>)
SWEEPS_MOVED = "; the ready sweeps are the config group sweep now (conf/sweep/): python run.py -m sweep=<{options}>"


def moved_hint(key: str) -> str:
    """Where an unknown key went, if it is one of an earlier layout ('' otherwise)."""
    if key in MOVED:
        return f"; it is now {MOVED[key]}"
    if key.startswith("model.") and not key.startswith("model.backbone.") and key != "model.name":
        return f"; it is now {MODEL_KEYS_MOVED.format(key=key.split('.', 1)[1])}"
    return ""


def shown(value: Any) -> str:
    """A value as it is typed on the command line (``1.5``, ``abc``, ``[1,2]``, ``true``, ``null``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(shown(v) for v in value) + "]"
    return str(value)


_ABSENT = object()


def _given(values: Mapping[str, Any], key: str) -> Any:
    """The value at ``key`` (``a.b``, ``a[1]``) in ``values``; ``_ABSENT`` where there is none."""
    node: Any = values
    for part in re.findall(r"[^.\[\]]+", key):
        try:
            node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            return _ABSENT
    return node



def one_line(exc: OmegaConfBaseException, prefix: str = "", given: Mapping[str, Any] | None = None) -> str:
    """An OmegaConf validation error as one line: ``<key>=<value as typed>: <what is wrong>``. ``given``: the
    values that were checked (the node that failed holds the schema's default, not the value given)."""
    local = getattr(exc, "full_key", None) or ""
    key = f"{prefix}.{local}" if prefix and local else (local or prefix)
    message = str(getattr(exc, "msg", None) or exc).strip().splitlines()[0]
    value = _given(given, local) if given is not None and local else _ABSENT
    if value is _ABSENT:
        value = getattr(getattr(exc, "child_node", None), "_val", None)
        value = None if value == "???" else value
        return f"{f'{key}={value!r}' if value is not None else key}: {message}{moved_hint(key)}"
    return f"{key}={shown(value)}: {message}{moved_hint(key)}"


def unknown_key(key: str, value: str | None = None, added: bool = False) -> str:
    """``key`` is not in the configuration: where it went (an earlier layout), the closest known key ("did you
    mean"), the keys of a plain group, or how to add a key of your own. ``added``: it was added with ``+``, and
    nothing reads it."""
    from sdnn.config.names import correct_key, keys_at, plain_groups

    moved = moved_hint(key)
    if moved:
        return f"{key} is not a key of this configuration{moved}"
    fixed = correct_key(key)
    if fixed is not None:
        return f"{key} is not a key of this configuration; did you mean {fixed}{'' if value is None else f'={value}'}?"
    top = key.split(".", 1)[0]
    if added or (top in plain_groups() and "." in key):
        where, known = (top, keys_at(top)) if "." in key else ("the top level", keys_at(""))
        return f"{key} is not a key of this configuration; {where} has: {', '.join(known or [])}"
    return f"{key} is not a key of this configuration (to add one, prefix it with +: +{key}=...)"


def unknown_option(path: str, listed_options: list[str]) -> str:
    """``group/option`` that is not a file under conf/ (or a Hydra plugin's group): the options, and the closest
    one ("did you mean")."""
    from sdnn.config.names import closest, groups, options

    parts = path.split("/")
    if parts[0] in groups():  # conf/<group>/...: experiment=paper/cifar10_wrn
        group, option, known = parts[0], "/".join(parts[1:]), options(parts[0])
    else:  # hydra/sweeper=optuna
        group, option, known = "/".join(parts[:-1]), parts[-1], list(listed_options)
    if not known:
        return f"{group}={option} is not an option"
    near = closest(option, known)
    guess = f"did you mean {group}={near}? " if near else ""
    return f"{group}={option} is not an option; {guess}choose one of: {', '.join(sorted(known))}"


# Hydra's override grammar (https://hydra.cc/docs/advanced/override_grammar/basic/)
GRAMMAR = ("key=value sets a key, +key=value adds one, ~key removes one; lists are [a,b], and a value with spaces "
           "or any of ()[]{},=: goes in quotes: 'key=\"a b\"'")


def parse_error(override: str, message: str) -> str:
    """An override Hydra cannot parse, as one line with the grammar."""
    if "missing EQUAL" in message:
        key = override.split("=", 1)[0]
        return f"{override}: an override needs a value: {key}=<value> ({GRAMMAR})"
    reason = next((line.strip() for line in message.splitlines()
                   if line.strip() and not line.startswith(("Error parsing override", "See "))), "")
    return f"{override}: Hydra cannot parse this override{f' ({reason})' if reason else ''}; {GRAMMAR}"


def _enum_guess(key: str, detail: str) -> str:
    """"; did you mean key=<value>?" for OmegaConf's "Invalid value 'x', expected one of [...]" ('' otherwise)."""
    from sdnn.config.names import closest

    found = re.match(r"Invalid value '(.*)', expected one of \[(.*)\]", detail)
    near = closest(found.group(1), [v.strip() for v in found.group(2).split(",")]) if found else None
    return f"; did you mean {key}={near}?" if near else ""


def composition_error(exc: BaseException) -> str | None:
    """Hydra's composition errors (an override it cannot parse, an unknown option or key, a value of the wrong
    type) as one line naming the key and the fix; None for any other exception."""
    from hydra.errors import (ConfigCompositionException, MissingConfigException, OverrideParseException,
                              SearchPathException)

    if isinstance(exc, OverrideParseException):
        return parse_error(exc.override, exc.message)
    if isinstance(exc, SearchPathException):  # --config-dir names no folder
        text = str(exc).strip().splitlines()[0]
        if "multirun_sweeps" not in text:
            return f"--config-dir: {text}"
        from sdnn.config.names import options

        return f"--config-dir: {text}{SWEEPS_MOVED.format(options='|'.join(options('sweep')))}"
    if isinstance(exc, MissingConfigException):
        path = str(exc.missing_cfg_file or "")
        if "/" in path:
            return unknown_option(path, list(exc.options or []))
        return str(exc).strip().splitlines()[0]
    if not isinstance(exc, ConfigCompositionException):
        return None
    text = str(exc).strip().splitlines()[0]
    cause = exc.__cause__
    match = re.match(r"(?:Error merging override|Could not override) '?([^']+?)'?\.?$", text)
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or (match.group(1).split("=")[0] if match else "")
        detail = str(getattr(cause, "msg", None) or cause).strip().splitlines()[0]
        if text.startswith("Could not override") and match:
            given = re.search(r"use \+[^=\s]+=(.*)$", str(exc), re.M)
            return unknown_key(match.group(1), given.group(1) if given else None)
        override = match.group(1) if match and text.startswith("Error merging") else key
        return f"{override}: {detail}{moved_hint(key)}{_enum_guess(key, detail)}"
    return text
