"""The in-memory dataset every study trains on: three splits as tensors."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Dataset:
    name: str                 # "mnist", "fashion-mnist", "moons", "circles", "spirals", "xor"
    x_train: torch.Tensor     # (N_train, D) float32; images: pixels in [0, 1] (or standardized), flattened
    y_train: torch.Tensor     # (N_train,) int64 class index
    x_val: torch.Tensor       # (N_val, D)
    y_val: torch.Tensor       # (N_val,)
    x_test: torch.Tensor      # (N_test, D)
    y_test: torch.Tensor      # (N_test,)
    n_classes: int            # 10 for images, 2 for point clouds (two logits, softmax cross-entropy)
    info: dict = field(default_factory=dict)  # JSON-safe provenance: source, checksums, split sizes, params

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device: str | torch.device) -> Dataset:
        """The same dataset with every tensor on `device`."""
        moved = {k: getattr(self, k).to(device) for k in
                 ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return Dataset(name=self.name, n_classes=self.n_classes, info=self.info, **moved)
