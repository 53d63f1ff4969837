"""Compose the one fedids configuration from Flower run-config keys and Hydra overrides.

Configuration is read here and nowhere else: the ServerApp and ClientApp call
:func:`compose_config` once and pass plain values down. Ray actors and
``flwr-clientapp`` subprocesses carry no Hydra state, so composition is done from
scratch each time with ``initialize_config_dir`` + ``compose`` (cached per process).

Every override is checked before it is used, and a bad one is refused with ONE line naming
the key (:class:`ConfigError`):

* keys must exist in what ``conf/`` defines for the chosen group options: Hydra's ``+key``
  and ``++key`` (add a key) and ``~key`` (delete one) are refused, so a misspelt setting
  can never be silently added and left unused;
* group choices (``mode=...``, ``dataset=...``) must name a file in ``conf/<group>/``;
* values keep the type their default has in ``conf/`` (``train.lr=abc`` is refused because
  ``train.lr`` defaults to a number), and the ranges in
  :data:`fedids.config_values.RULES` hold.

The checker is driven by ``conf/``: a key added there is known, typed by its default and
checked with no edit here; only a key that needs a range (or has a ``null``/``???``
default) needs an entry there.
"""

from __future__ import annotations

import copy
import difflib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

from fedids.config_values import ConfigError, check_values

#: run-config key -> (Hydra key, is a config group)
RUN_CONFIG_KEYS: dict[str, tuple[str, bool]] = {
    "num-server-rounds": ("num_server_rounds", False),
    "local-epochs": ("local_epochs", False),
    "classification": ("classification", True),
    "mode": ("mode", True),
    "aggregation": ("aggregation", True),
    "run-dir": ("run_dir", False),
    "run-name": ("run_name", False),
}

#: Other spellings accepted for group options (the old system's).
ALIASES: dict[str, dict[str, str]] = {"classification": {"mult": "multi"}}


# --- conf/ layout ---------------------------------------------------------------------


def config_dir() -> Path:
    """The ``conf/`` folder: next to the package in a checkout or FAB, inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "_conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"fedids configuration folder not found near {here}")


def groups() -> dict[str, list[str]]:
    """Config groups and their options: every ``conf/<group>/<option>.yaml``."""
    root = config_dir()
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        options = sorted(f.stem for f in d.glob("*.yaml"))
        if options:
            out[d.name] = options
    return out


def default_choices() -> dict[str, str]:
    """``group -> option`` from the defaults list of ``conf/config.yaml``."""
    doc = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"))
    out = {}
    for entry in doc.get("defaults", []) if isinstance(doc, dict) else []:
        if isinstance(entry, dict):
            out.update({str(k): str(v) for k, v in entry.items()})
    return out


# --- parsing run-config and overrides -------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """One override and where the user wrote it (for the error line)."""

    text: str
    origin: str  # "run-config num-server-rounds" | "hydra-overrides" | "overrides"
    run_config_key: str | None = None

    def name(self, key: str) -> str:
        """How to call ``key`` in a message: the name the user typed."""
        return f"run-config {self.run_config_key}" if self.run_config_key else key


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # quote so that paths with special characters survive Hydra's override grammar
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    return str(value)


def _sources(run_config: Mapping[str, Any], extra: Sequence[str]) -> list[_Source]:
    out: list[_Source] = []
    for key, (target, is_group) in RUN_CONFIG_KEYS.items():
        if key not in run_config:
            continue
        value = run_config[key]
        text = f"{target}={value}" if is_group else f"{target}={_hydra_value(value)}"
        out.append(_Source(text, f"run-config {key}", key))
    raw = str(run_config.get("hydra-overrides", "") or "")
    try:
        out += [_Source(t, "hydra-overrides") for t in shlex.split(raw)]
    except ValueError as exc:
        raise ConfigError(f"run-config hydra-overrides cannot be parsed: {exc} in {raw!r}") from exc
    out += [_Source(str(t), "overrides") for t in extra]
    return out


def overrides_from_run_config(run_config: Mapping[str, Any]) -> list[str]:
    """Flower run-config keys as Hydra overrides (``hydra-overrides`` last, so it wins)."""
    return [s.text for s in _sources(run_config, ())]


def _parse(source: _Source) -> Override:
    try:
        (ov,) = OverridesParser.create().parse_overrides([source.text])
    except Exception as exc:  # Hydra's grammar errors span several lines: keep the first
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{source.origin}: cannot parse {source.text!r} ({first})") from exc
    return ov


# --- composing ------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _compose_cached(overrides: tuple[str, ...]) -> DictConfig:
    gh = GlobalHydra.instance()
    saved = gh.hydra if gh.is_initialized() else None
    if saved is not None:
        gh.clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose("config", overrides=list(overrides))
    finally:
        if saved is not None:
            GlobalHydra.instance().initialize(saved)


def _compose(overrides: Sequence[str]) -> DictConfig:
    """Hydra composition, cached per process (Ray actors compose for every message)."""
    return copy.deepcopy(_compose_cached(tuple(overrides)))


def _get(tree: Any, dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key in a plain tree (list indices allowed)."""
    node = tree
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _leaf_keys(tree: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            path = f"{prefix}{k}"
            keys.append(path)
            keys += _leaf_keys(v, path + ".")
    return keys


def _other_options_with(key: str, chosen: Mapping[str, str]) -> list[str]:
    """``group=option`` choices (not the chosen one) whose conf file defines ``key``."""
    group, _, rest = key.partition(".")
    if group not in groups() or not rest:
        return []
    found = []
    for option in groups()[group]:
        if option == chosen.get(group):
            continue
        doc = OmegaConf.to_container(OmegaConf.load(config_dir() / group / f"{option}.yaml"))
        if _get(doc, rest)[0]:
            found.append(f"{group}={option}")
    return found


def _unknown_key(key: str, source: _Source, base: Any, chosen: Mapping[str, str]) -> ConfigError:
    where = f"{source.origin} {source.text!r}"
    elsewhere = _other_options_with(key, chosen)
    if elsewhere:
        group = key.split(".")[0]
        return ConfigError(
            f"{where}: {key} is not a setting of {group}={chosen.get(group)}; it belongs to "
            f"{', '.join(elsewhere)} (choose that option first)"
        )
    known = [k for k in _leaf_keys(base) if not k.startswith("hydra")]
    near = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if not near:
        head = key.split(".")[0]
        same = [k for k in known if k.startswith(head + ".")]
        near = same[:6] if same else sorted(k for k in known if "." not in k)
    return ConfigError(f"{where}: unknown key {key!r} (nearest known keys: {', '.join(near)})")


def _refuse_adds(ov: Override, source: _Source, base: Any) -> None:
    key = ov.key_or_group
    if ov.type == OverrideType.DEL:
        raise ConfigError(
            f"{source.origin} {source.text!r}: deleting a key is not allowed (fedids reads "
            "every key it defines); set a value instead"
        )
    if ov.type in (OverrideType.ADD, OverrideType.FORCE_ADD):
        prefix = "++" if ov.type == OverrideType.FORCE_ADD else "+"
        if _get(base, key)[0] or key in groups():
            raise ConfigError(
                f"{source.origin} {source.text!r}: {key} is a known key, drop the {prefix!r} "
                f"({source.text.lstrip('+')})"
            )
        raise ConfigError(
            f"{source.origin} {source.text!r}: adding keys with {prefix!r} is refused (fedids "
            f"would never read {key!r})"
        )
    if ov.is_sweep_override():
        raise ConfigError(
            f"{source.origin} {source.text!r}: a run takes one value per key, not a sweep"
        )
    if ov.package is not None:
        raise ConfigError(f"{source.origin} {source.text!r}: package overrides (@) are refused")


def _group_choice(ov: Override, source: _Source) -> str:
    group = ov.key_or_group
    value = ov.value()
    options = groups()[group]
    value = ALIASES.get(group, {}).get(str(value), value)
    if not isinstance(value, str) or value not in options:
        raise ConfigError(
            f"{source.name(group)} must be one of {', '.join(options)}, got {ov.value()!r}"
        )
    return value


def compose_config(
    run_config: Mapping[str, Any] | None = None, overrides: Sequence[str] | None = None
) -> DictConfig:
    """Compose ``conf/config.yaml`` with run-config keys and extra overrides, all checked.

    Works whether or not a Hydra application is already running in this process.
    Raises :class:`ConfigError` (one line naming the key) for anything unusable.
    """
    sources = _sources(run_config or {}, list(overrides or []))
    parsed = [(_parse(s), s) for s in sources]
    known_groups = groups()
    # 1. group choices: the schema is conf/ with these options chosen
    chosen: dict[str, str] = default_choices()
    group_texts: list[str] = []
    for ov, src in parsed:
        if ov.key_or_group in known_groups and ov.type == OverrideType.CHANGE:
            if not ov.is_sweep_override() and ov.package is None:
                chosen[ov.key_or_group] = _group_choice(ov, src)
                group_texts.append(f"{ov.key_or_group}={chosen[ov.key_or_group]}")
    try:
        base_cfg = _compose(group_texts)
    except Exception as exc:  # a conf/ file itself is broken: name the choices
        raise ConfigError(f"configuration {group_texts} cannot be composed: {exc}") from exc
    base = OmegaConf.to_container(base_cfg, resolve=False)
    # 2. every other override must set a key that schema has
    by_key: dict[str, _Source] = {}
    value_texts: list[str] = []
    for ov, src in parsed:
        _refuse_adds(ov, src, base)
        key = ov.key_or_group
        if key in known_groups:
            continue
        if not _get(base, key)[0] or key.startswith("hydra"):
            raise _unknown_key(key, src, base, chosen)
        by_key[key] = src
        value_texts.append(src.text)
    try:
        cfg = _compose(group_texts + value_texts)
    except Exception as exc:  # Hydra raises several types; name the overrides
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"overrides {value_texts} cannot be applied: {first}") from exc
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            "configuration values missing: "
            + ", ".join(missing)
            + ' (set them with hydra-overrides, e.g. "dataset.path=/data/flows.csv")'
        )
    check_values(cfg, base, by_key)
    return cfg


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """A plain, resolved dict (for passing down and saving)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
