"""Compose the one fedids configuration from Flower run-config keys and Hydra overrides.

Configuration is read here and nowhere else: the ServerApp and ClientApp call
:func:`compose_config` once and pass plain values down. Ray actors and
``flwr-clientapp`` subprocesses carry no Hydra state, so composition is done from
scratch each time with ``initialize_config_dir`` + ``compose``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

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

CLASSIFICATIONS = ("binary", "multi")
MODES = ("plain", "paillier")
AGGREGATIONS = ("sync", "buffered")


class ConfigError(ValueError):
    """A run-config key or Hydra override that cannot be used."""


def config_dir() -> Path:
    """The ``conf/`` folder: next to the package in a checkout or FAB, inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "_conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"fedids configuration folder not found near {here}")


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # quote so that paths with special characters survive Hydra's override grammar
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    return str(value)


def overrides_from_run_config(run_config: Mapping[str, Any]) -> list[str]:
    """Turn Flower run-config keys into Hydra overrides (``hydra-overrides`` last, so it wins)."""
    overrides: list[str] = []
    for key, (target, is_group) in RUN_CONFIG_KEYS.items():
        if key not in run_config:
            continue
        value = run_config[key]
        if key == "classification":
            value = {"mult": "multi"}.get(str(value), str(value))  # the old system's spelling
            if value not in CLASSIFICATIONS:
                raise ConfigError(
                    f"run-config 'classification' must be one of {CLASSIFICATIONS}, got {value!r}"
                )
        if key == "mode" and str(value) not in MODES:
            raise ConfigError(f"run-config 'mode' must be one of {MODES}, got {value!r}")
        if key == "aggregation" and str(value) not in AGGREGATIONS:
            raise ConfigError(
                f"run-config 'aggregation' must be one of {AGGREGATIONS}, got {value!r}"
            )
        if key in ("num-server-rounds", "local-epochs") and int(value) < 1:
            raise ConfigError(f"run-config {key!r} must be at least 1, got {value!r}")
        overrides.append(f"{target}={value}" if is_group else f"{target}={_hydra_value(value)}")
    extra = str(run_config.get("hydra-overrides", "") or "")
    try:
        overrides += shlex.split(extra)
    except ValueError as exc:
        raise ConfigError(f"run-config 'hydra-overrides' cannot be parsed: {exc}") from exc
    return overrides


def compose_config(
    run_config: Mapping[str, Any] | None = None, overrides: list[str] | None = None
) -> DictConfig:
    """Compose ``conf/config.yaml`` with run-config keys and extra overrides.

    Works whether or not a Hydra application is already running in this process.
    """
    all_overrides = overrides_from_run_config(run_config or {}) + list(overrides or [])
    gh = GlobalHydra.instance()
    saved = gh.hydra if gh.is_initialized() else None
    if saved is not None:
        gh.clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            try:
                cfg = compose("config", overrides=all_overrides)
            except Exception as exc:  # Hydra raises several types; name the overrides
                raise ConfigError(f"bad configuration override in {all_overrides}: {exc}") from exc
    finally:
        if saved is not None:
            GlobalHydra.instance().initialize(saved)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            "configuration values missing: "
            + ", ".join(missing)
            + ' (set them with hydra-overrides, e.g. "dataset.path=/data/flows.csv")'
        )
    return cfg


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """A plain, resolved dict (for passing down and saving)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
