"""The detector: an MLP over encoded flow features, and its self-contained ``model.pt``.

``model.pt`` holds everything inference needs (weights, the encoder with its column
kinds and federation statistics, class names, classification type), so ``fedids detect``
needs no config and no training data, and encodes flows exactly as training did.

The model's parameters are what Paillier encrypts every round, so its size is the
encrypted round's cost: keep it compact (:func:`count_parameters`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedids.data.encoder import Encoder, EncoderError
from fedids.data.features import Scaler

MODEL_FORMAT = "fedids-model/2"
#: Older files (a scaler instead of an encoder) still load.
LEGACY_FORMATS = ("fedids-model/1",)


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


def count_parameters(model: nn.Module) -> int:
    """Values a round sends (and Paillier encrypts): every tensor of the state dict."""
    return int(sum(v.numel() for v in model.state_dict().values()))


def model_for(encoder: Encoder, model_cfg: Mapping[str, Any], seed: int) -> MLP:
    """The configured model for an encoder's input layout (same seed -> same weights)."""
    return build_model(
        encoder.n_inputs,
        len(encoder.class_names),
        list(model_cfg.get("hidden", [64, 32])),
        float(model_cfg.get("dropout", 0.0)),
        seed,
    )


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




class FeatureNames(list):
    """The raw input columns of a detector, carrying its encoder.

    Alert tooling calls ``feature_matrix(df, detector.feature_names, source)``: the names
    travel with the encoder so that call parses cells with the training rules without
    changing its signature.
    """

    def __init__(self, names: Sequence[str], encoder: Encoder) -> None:
        super().__init__(str(n) for n in names)
        self.encoder = encoder


class Detector:
    """A trained model and the encoder it was trained with, ready for inference.

    ``encoder`` may be a pre-v2 :class:`~fedids.data.features.Scaler` (all-numeric
    features, signed log1p + standardization): it is wrapped in an equivalent encoder.
    """

    def __init__(
        self,
        model: MLP,
        feature_names: Sequence[str],
        class_names: Sequence[str],
        classification: str,
        encoder: Encoder | Scaler | None = None,
        meta: Mapping[str, Any] | None = None,
        *,
        scaler: Scaler | None = None,
    ) -> None:
        enc = encoder if encoder is not None else scaler
        if isinstance(enc, Scaler):
            enc = Encoder.from_scaler(feature_names, class_names, enc)
        if not isinstance(enc, Encoder):
            raise TypeError("Detector needs an Encoder (or a pre-v2 Scaler)")
        if list(enc.feature_names) != [str(n) for n in feature_names]:
            raise ValueError("feature_names differ from the encoder's columns")
        self.model = model
        self.encoder = enc
        self.feature_names = FeatureNames(feature_names, enc)
        self.class_names = [str(c) for c in class_names]
        self.classification = str(classification)
        self.meta = dict(meta or {})

    @classmethod
    def from_encoder(
        cls, model: MLP, encoder: Encoder, classification: str, meta: Mapping[str, Any]
    ) -> Detector:
        return cls(model, encoder.feature_names, encoder.class_names, classification,
                   encoder, meta)  # fmt: skip

    @torch.no_grad()
    def predict_proba(self, x_parsed: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Class probabilities for parsed rows (``feature_matrix``'s output: one value per
        column in ``feature_names`` order; for all-numeric inputs, the raw numbers)."""
        self.model.eval()
        x = self.encoder.encode(np.asarray(x_parsed))
        out = np.empty((len(x), len(self.class_names)), dtype=np.float32)
        for start in range(0, len(x), batch_size):
            logits = self.model(torch.from_numpy(x[start : start + batch_size]))
            out[start : start + batch_size] = torch.softmax(logits, dim=1).numpy()
        return out

    def predict_frame(self, frame: Any, *, source: str = "") -> np.ndarray:
        """Class probabilities for a raw table (text kept), encoded as in training."""
        return self.predict_proba(self.encoder.parse(frame, source=source))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": MODEL_FORMAT,
            "state_dict": self.model.state_dict(),
            "n_inputs": self.encoder.n_inputs,
            "hidden": list(self.meta.get("hidden", [])),
            "dropout": float(self.meta.get("dropout", 0.0)),
            "class_names": list(self.class_names),
            "classification": self.classification,
            "encoder": self.encoder.to_dict(),
            "meta": self.meta,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    to_file = save

    @classmethod
    def from_file(cls, path: str | Path) -> Detector:
        return load_detector(path)


class ModelFileError(ValueError):
    """``model.pt`` is missing, unreadable or not a fedids model."""


def _encoder_of(payload: Mapping[str, Any], path: Path) -> Encoder:
    if payload.get("format") in LEGACY_FORMATS:
        scaler = Scaler.from_dict(payload["scaler"])
        return Encoder.from_scaler(payload["feature_names"], payload["class_names"], scaler)
    try:
        return Encoder.from_dict(payload["encoder"])
    except EncoderError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc


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
    formats = (MODEL_FORMAT, *LEGACY_FORMATS)
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        raise ModelFileError(f"{path}: not a fedids model (expected format {MODEL_FORMAT!r})")
    try:
        encoder = _encoder_of(payload, path)
        n_inputs = int(payload.get("n_inputs", payload.get("n_features", -1)))
        if n_inputs != encoder.n_inputs:
            raise ModelFileError(
                f"{path}: model expects {n_inputs} inputs but its encoder makes "
                f"{encoder.n_inputs}"
            )
        model = MLP(
            n_inputs, len(payload["class_names"]), list(payload["hidden"]),
            float(payload["dropout"]),
        )  # fmt: skip
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ModelFileError(f"{path}: model weights do not match its description ({exc})") from exc
    model.eval()
    return Detector(
        model,
        encoder.feature_names,
        list(payload["class_names"]),
        str(payload["classification"]),
        encoder,
        dict(payload.get("meta", {})),
    )
