"""The detector: an MLP over scaled flow features, and its self-contained ``model.pt``.

``model.pt`` holds everything inference needs (weights, feature names, scaler, class
names, classification type), so ``fedids detect`` needs no config and no training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedids.data.features import Scaler

MODEL_FORMAT = "fedids-model/1"


class MLP(nn.Module):
    """Fully connected layers with batch-independent normalization (LayerNorm) and dropout."""

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(
    n_features: int, n_classes: int, hidden: Sequence[int], dropout: float, seed: int
) -> MLP:
    """The same seed gives every device the same initial weights."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = MLP(n_features, n_classes, list(hidden), float(dropout))
    torch.random.set_rng_state(gen_state)
    return model


def get_weights(model: nn.Module) -> list[np.ndarray]:
    return [
        v.detach().cpu().numpy().astype(np.float32, copy=True) for v in model.state_dict().values()
    ]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    keys = list(model.state_dict().keys())
    if len(keys) != len(weights):
        raise ValueError(f"model has {len(keys)} tensors, received {len(weights)}")
    state = {}
    for k, w, ref in zip(keys, weights, model.state_dict().values(), strict=True):
        if tuple(w.shape) != tuple(ref.shape):
            raise ValueError(f"tensor {k}: expected shape {tuple(ref.shape)}, got {tuple(w.shape)}")
        state[k] = torch.as_tensor(np.asarray(w, dtype=np.float32))
    model.load_state_dict(state, strict=True)


@dataclass
class Detector:
    """A trained model ready for inference on raw (unscaled) feature matrices."""

    model: MLP
    feature_names: list[str]
    class_names: list[str]
    classification: str
    scaler: Scaler
    meta: dict[str, Any]

    @torch.no_grad()
    def predict_proba(self, x_raw: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Class probabilities for raw feature rows (columns in ``feature_names`` order)."""
        self.model.eval()
        x = self.scaler.transform(np.asarray(x_raw, dtype=np.float32))
        out = np.empty((len(x), len(self.class_names)), dtype=np.float32)
        for start in range(0, len(x), batch_size):
            logits = self.model(torch.from_numpy(x[start : start + batch_size]))
            out[start : start + batch_size] = torch.softmax(logits, dim=1).numpy()
        return out

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": MODEL_FORMAT,
            "state_dict": self.model.state_dict(),
            "n_features": len(self.feature_names),
            "hidden": self.meta.get("hidden", []),
            "dropout": self.meta.get("dropout", 0.0),
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "classification": self.classification,
            "scaler": self.scaler.to_dict(),
            "meta": self.meta,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)


class ModelFileError(ValueError):
    """``model.pt`` is missing, unreadable or not a fedids model."""


def load_detector(path: str | Path) -> Detector:
    """Load a ``model.pt`` written by a fedids run; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(
            f"{path}: not a readable torch file ({exc.__class__.__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a fedids model (expected format {MODEL_FORMAT!r})")
    try:
        model = MLP(
            int(payload["n_features"]),
            len(payload["class_names"]),
            list(payload["hidden"]),
            float(payload["dropout"]),
        )
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: model weights do not match its description ({exc})") from exc
    model.eval()
    return Detector(
        model=model,
        feature_names=list(payload["feature_names"]),
        class_names=list(payload["class_names"]),
        classification=str(payload["classification"]),
        scaler=Scaler.from_dict(payload["scaler"]),
        meta=dict(payload.get("meta", {})),
    )
