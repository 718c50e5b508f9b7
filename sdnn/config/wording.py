"""The wording of configuration errors: one line that names the key, the value as typed and the fix
(``require``), OmegaConf's and Hydra's errors reworded (``one_line``, ``composition_error``) and where a key
of an earlier layout went (``moved_hint``). No torch, no Hydra at import."""

from __future__ import annotations

import re
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


def moved_hint(key: str) -> str:
    """Where an unknown key went, if it is one of an earlier layout ('' otherwise)."""
    if key in MOVED:
        return f"; it is now {MOVED[key]}"
    if key.startswith("model.") and not key.startswith("model.backbone.") and key != "model.name":
        return f"; it is now {MODEL_KEYS_MOVED.format(key=key.split('.', 1)[1])}"
    return ""


def one_line(exc: OmegaConfBaseException, prefix: str = "") -> str:
    """An OmegaConf validation error as one line: ``<key>=<value>: <what is wrong>``."""
    key = getattr(exc, "full_key", None) or ""
    key = f"{prefix}.{key}" if prefix and key else (key or prefix)
    message = str(getattr(exc, "msg", None) or exc).strip().splitlines()[0]
    value = getattr(getattr(exc, "child_node", None), "_val", None)
    shown = f"{key}={value!r}" if value is not None else key
    return f"{shown}: {message}{moved_hint(key)}"


def composition_error(exc: BaseException) -> str | None:
    """Hydra's composition errors (an unknown option or key, a value of the wrong type) as one line
    naming the key and the fix; None for any other exception."""
    from hydra.errors import ConfigCompositionException, MissingConfigException

    if isinstance(exc, MissingConfigException):
        path = str(exc.missing_cfg_file or "")
        group, _, option = path.rpartition("/")
        if group and exc.options:
            return (f"{group.replace('/', '.')}={option} is not an option; choose one of: "
                    f"{', '.join(sorted(exc.options))}")
        return str(exc).strip().splitlines()[0]
    if not isinstance(exc, ConfigCompositionException):
        return None
    text = str(exc).strip().splitlines()[0]
    cause = exc.__cause__
    match = re.match(r"(?:Error merging override|Could not override) '?([^']+?)'?\.?$", text)
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or (match.group(1).split("=")[0] if match else "")
        detail = str(getattr(cause, "msg", None) or cause).strip().splitlines()[0]
        if text.startswith("Could not override"):
            return (f"{key} is not a key of this configuration (to add one, prefix it with +: +{key}=...)"
                    f"{moved_hint(key)}")
        override = match.group(1) if match and text.startswith("Error merging") else key
        return f"{override}: {detail}{moved_hint(key)}"
    return text
