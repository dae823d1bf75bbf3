"""torchmetrics states for segmentation evaluation (summed across ranks at compute, never averaged per
batch).

- `confusion_jaccard`: a `MulticlassJaccardIndex(average=None)` used for its dataset-level confusion
  matrix (`confmat` state).
- `synced_confmat` / `iou_from_confmat`: per-class IoU and the macro mIoU over classes with union > 0.
  torchmetrics 1.9's own `average="macro"` also gives weight 0 to classes absent from both prediction and
  truth (`weights[confmat.sum(1) + confmat.sum(0) == 0] = 0`), so the two agree; we compute it ourselves so
  the rule does not depend on the torchmetrics version (a test checks the agreement).
- `RatioSums`: named numerator / denominator sums (float64) for the threshold-free and collapse
  diagnostics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassJaccardIndex


def confusion_jaccard(num_classes: int, ignore_index: int = 255) -> MulticlassJaccardIndex:
    """A per-class Jaccard metric whose `confmat` state (num_classes x num_classes, rows = truth) is the
    dataset-level confusion matrix. Argument validation is off: it costs a `unique` over every pixel."""
    return MulticlassJaccardIndex(num_classes, average=None, ignore_index=ignore_index, validate_args=False)


def synced_confmat(metric: MulticlassJaccardIndex) -> Tensor:
    """The confusion matrix summed over all ranks (a no-op sync outside DDP); local state is restored."""
    with metric.sync_context():
        return metric.confmat.detach().clone()


def iou_from_confmat(confmat: Tensor) -> tuple[Tensor, float]:
    """(per-class IoU with nan where union == 0, mean over classes with union > 0; nan if none)."""
    cm = confmat.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    valid = union > 0
    miou = float(iou[valid].mean()) if bool(valid.any()) else float("nan")
    return iou, miou


class RatioSums(Metric):
    """Named ratios sum(num) / sum(den), accumulated in float64 and summed across ranks."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = list(names)
        k = len(self.names)
        self.add_state("num", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("den", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: dict[str, tuple[Tensor | float, Tensor | float]]) -> None:  # type: ignore[override]
        """`values[name] = (numerator, denominator)` to add; names not given are left unchanged."""
        for name, (num, den) in values.items():
            i = self.names.index(name)
            self.num[i] += torch.as_tensor(num, dtype=torch.float64, device=self.num.device)
            self.den[i] += torch.as_tensor(den, dtype=torch.float64, device=self.den.device)

    def compute(self) -> dict[str, Tensor]:
        """{name: ratio (nan where the denominator is 0)} plus {name + "/den": denominator}."""
        ratio = torch.where(self.den > 0, self.num / self.den, torch.full_like(self.num, float("nan")))
        out = {n: ratio[i] for i, n in enumerate(self.names)}
        out.update({f"{n}/den": self.den[i] for i, n in enumerate(self.names)})
        return out
