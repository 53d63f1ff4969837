"""Types and ranges of configuration values: what conf/ cannot say by its defaults alone.

A value keeps the type its default has in ``conf/`` (``train.lr`` defaults to a number, so
``train.lr=abc`` is refused); :data:`RULES` adds ranges and types for keys whose default
says too little (``null``, ``???``, an int that may be fractional). A key added to conf/
is typed by its default with no edit here; add a rule only when it needs a range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fedids.failures import FedidsError


class ConfigError(FedidsError, ValueError):
    """A run-config key or Hydra override that cannot be used (one line naming the key)."""


# --- value rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What a key's value must be. ``kind`` None: the type of the key's default in conf/."""

    kind: str | None = None  # "int" | "number" | "bool" | "str" | "list"
    ge: float | None = None  # >=
    gt: float | None = None  # >
    le: float | None = None  # <=
    lt: float | None = None  # <
    choices: tuple[str, ...] | None = None
    item: Rule | None = None  # for lists: the rule every element obeys
    nullable: bool = False  # null allowed even if the default is not null
    nonempty: bool = False  # for text and lists


INT_POS = Rule("int", ge=1)
FRACTION = Rule("number", gt=0, le=1)  # (0, 1]

#: Ranges and types conf/ cannot express by its defaults. Keys absent from the composed
#: configuration (another group option chosen) are skipped.
RULES: dict[str, Rule] = {
    "seed": Rule("int", ge=0),
    "num_server_rounds": INT_POS,
    "local_epochs": INT_POS,
    "run_dir": Rule("str", nonempty=True),
    "train.batch_size": INT_POS,
    "train.lr": Rule("number", gt=0),
    "train.weight_decay": Rule("number", ge=0),
    "train.val_fraction": Rule("number", ge=0, lt=1),
    "train.class_weighting": Rule("str", choices=("none", "inverse", "sqrt_inverse")),
    "train.torch_threads": INT_POS,
    "federation.num_partitions": INT_POS,
    "federation.fraction_fit": FRACTION,
    "federation.fraction_evaluate": FRACTION,
    "federation.min_fit_clients": INT_POS,
    "federation.min_evaluate_clients": INT_POS,
    "federation.min_available_clients": INT_POS,
    "federation.round_timeout": Rule("number", gt=0),
    "federation.setup_timeout": Rule("number", gt=0),
    "federation.max_num_examples": INT_POS,
    "model.hidden": Rule("list", item=INT_POS, nonempty=True),
    "model.dropout": Rule("number", ge=0, lt=1),
    "partition.alpha": Rule("number", gt=0),
    "partition.min_records": INT_POS,
    "dataset.path": Rule("str", nullable=True, nonempty=True),
    "dataset.rows": Rule("int", ge=1, nullable=True),
    "dataset.seed": Rule("int", nullable=True),
    "dataset.label_column": Rule("str", nonempty=True),
    "dataset.drop_columns": Rule("list", item=Rule("str")),
    "dataset.normal_label": Rule("str"),
    "dataset.classes": Rule("list", item=Rule("str"), nullable=True, nonempty=True),
    "mode.workers": INT_POS,
    "mode.max_clients": INT_POS,
    "mode.max_multiplier": INT_POS,
    "mode.count_bits": INT_POS,
    "mode.expected_fingerprint": Rule("str", nullable=True),
}


def _kind_of(default: Any) -> str | None:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return None if default == "???" else "str"
    if isinstance(default, list):
        return "list"
    if isinstance(default, Mapping):
        return "section"
    return None  # null: no type to keep


_KIND_WORDS = {
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str": "text",
    "list": "a list",
    "section": "a section",
}


def _coerce(value: Any, kind: str | None) -> tuple[bool, Any]:
    """``(ok, value)``: ``value`` as ``kind``, converting only where nothing is lost."""
    if kind is None:
        return True, value
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "int":
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return False, value
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value), value
    if kind == "str":
        if isinstance(value, str):
            return True, value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, str(value)  # e.g. dataset.normal_label=0: labels compare as text
        return False, value
    if kind == "list":
        return isinstance(value, list), value
    if kind == "section":
        return isinstance(value, Mapping), value
    raise ValueError(f"unknown kind {kind!r}")  # pragma: no cover - RULES typo


def _range_problem(value: Any, rule: Rule) -> str | None:
    if rule.choices is not None and value not in rule.choices:
        return f"must be one of {', '.join(rule.choices)}"
    if rule.nonempty and isinstance(value, str | list) and len(value) == 0:
        return "must not be empty"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    low_ok = (rule.ge is None or value >= rule.ge) and (rule.gt is None or value > rule.gt)
    high_ok = (rule.le is None or value <= rule.le) and (rule.lt is None or value < rule.lt)
    if low_ok and high_ok:
        return None
    low = high = ""
    if rule.ge is not None or rule.gt is not None:
        low = f"[{rule.ge:g}" if rule.ge is not None else f"({rule.gt:g}"
    if rule.le is not None or rule.lt is not None:
        high = f"{rule.le:g}]" if rule.le is not None else f"{rule.lt:g})"
    if low and high:
        return f"must be in {low}, {high}"
    if rule.ge is not None:
        return f"must be at least {rule.ge:g}"
    if rule.gt is not None:
        return f"must be greater than {rule.gt:g}"
    if rule.le is not None:
        return f"must be at most {rule.le:g}"
    return f"must be less than {rule.lt:g}"


def check_value(name: str, value: Any, default: Any, rule: Rule | None) -> Any:
    """``value`` checked (and converted where lossless); raises ConfigError naming ``name``."""
    rule = rule or Rule()
    if value is None:
        if default is None or rule.nullable:
            return None
        kind = rule.kind or _kind_of(default)
        raise ConfigError(f"{name} must be {_KIND_WORDS.get(kind or '', 'set')}, got null")
    kind = rule.kind or _kind_of(default)
    ok, value = _coerce(value, kind)
    if not ok and kind == "section":
        keys = ", ".join(f"{name}.{k}" for k in list(default)[:4])
        raise ConfigError(f"{name} is a section ({keys}, ...): set its keys, got {value!r}")
    if not ok:
        word = _KIND_WORDS[kind]  # type: ignore[index]
        if kind == "number" and isinstance(value, float):
            word = "a finite number"
        raise ConfigError(f"{name} must be {word}, got {value!r}")
    if isinstance(value, list):
        item_rule = rule.item
        item_default = default[0] if isinstance(default, list) and default else None
        if item_rule is not None or item_default is not None:
            value = [
                check_value(f"{name}[{i}]", v, item_default, item_rule) for i, v in enumerate(value)
            ]
    problem = _range_problem(value, rule)
    if problem:
        raise ConfigError(f"{name} {problem}, got {value!r}")
    return value


def check_values(
    cfg: DictConfig, base: Mapping[str, Any], sources: Mapping[str, Any] | None = None
) -> None:
    """Type- and range-check every value of ``cfg`` against ``base`` (conf/ defaults).

    Lossless conversions (``run_name=2024`` -> ``"2024"``) are written back into ``cfg``.
    """
    sources = sources or {}
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # an interpolation that does not resolve
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"configuration cannot be resolved: {first}") from exc

    def name_of(key: str) -> str:
        for k, src in sources.items():
            if key == k or key.startswith(k + "."):
                return src.name(key)
        return key

    def walk(node: Any, default: Any, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            sub_default = default.get(key) if isinstance(default, Mapping) else None
            if isinstance(value, Mapping):
                walk(value, sub_default, path + ".")
                continue
            checked = check_value(name_of(path), value, sub_default, RULES.get(path))
            if type(checked) is not type(value) or checked != value:
                OmegaConf.update(cfg, path, checked, merge=False)

    walk(plain, base, "")
