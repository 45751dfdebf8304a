"""Training dynamics per sample: AUM (labeled) and APM (unlabeled), pure tensors.

Two trackers keyed by a sample's dataset index, updated from the detached
logits of each training step, without host synchronisation (every update is
a scatter on the tables' device) and without Avalanche:

* :class:`AUMTracker`: *area under the margin* of labeled samples (Pleiss,
  Zhang, Elenberg, Weinberger. "Identifying Mislabeled Data using the Area
  Under the Margin Ranking". NeurIPS 2020. https://arxiv.org/abs/2001.10528).
  The margin at a step is ``z_y - max_{j != y} z_j`` (negative when the sample
  is misclassified); AUM is the running mean of the margins over all steps.
* :class:`APMTracker`: *average pseudo-margin* of unlabeled samples (Sosea,
  Caragea. "MarginMatch: Improving Semi-Supervised Learning with
  Pseudo-Margins". CVPR 2023. https://arxiv.org/abs/2308.09037). For every
  class ``c``, ``PM_c = z_c - max_{j != c} z_j``; an ``N x C`` table is
  updated as ``APM <- a PM + (1 - a) APM`` with ``a = delta / (1 + n)``,
  ``n`` the number of earlier updates of the row (``delta = 0.997``), the
  schedule of the CalibrateMix release (Rahman, Mohan, Sosea, Caragea.
  "CalibrateMix: Guided-Mixup Calibration of Image Semi-Supervised Models".
  arXiv:2511.12964, AAAI 2026).

Rows whose logits hold a NaN or an infinity are skipped (the table keeps its
previous value and the row's count does not move).

Memory. AUM costs two float32 numbers per labeled sample. APM costs
``N x C`` numbers plus one int32 count per unlabeled sample: 4 N C bytes in
float32, e.g. 50,000 x 10 = 2 MB (CIFAR-10), 50,000 x 100 = 20 MB
(CIFAR-100), but 1.28 M x 1,000 = 5.1 GB for ImageNet. ``dtype=torch.float16``
(or ``torch.bfloat16``) halves that (2.6 GB; the update is computed in
float32 and rounded on store: margins are O(1-10) logits and float16 keeps
about 3 significant digits, enough to rank samples for a median split).
For an ImageNet-size set the plan beyond half precision is a top-k table:
only the ``k`` classes with the largest APM of each row matter for the value
at the pseudo-label once training has settled (the pseudo-label is almost
always among them); storing ``k`` class ids and values (e.g. ``k = 8``:
1.28 M x 8 x (2 + 2) bytes = 41 MB) with a default for the other classes
would make the table independent of ``C``. That variant is not implemented
here; :meth:`APMTracker.memory_bytes` reports the current cost.

Indices within one update are assumed distinct for :class:`APMTracker`
(the strategy's unlabeled loader draws each batch from one shuffled epoch);
if an index repeats, one of its rows is kept. :class:`AUMTracker` counts a
repeated index once per occurrence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from avalanche_mixplugins.validation import check_indexed_logits, check_positive_int

DEFAULT_APM_DELTA = 0.997


def margins(logits: Tensor, labels: Tensor) -> Tensor:
    """AUM margin of each row: ``z_y - max_{j != y} z_j``.

    :param logits: ``(N, C)`` logits, ``C >= 2``.
    :param labels: ``(N,)`` integer labels in ``[0, C)``.
    :return: float32 ``(N,)``.
    """
    z = logits.detach().float()
    y = labels.long().view(-1, 1)
    true = z.gather(1, y).squeeze(1)
    others = z.scatter(1, y, float("-inf")).amax(dim=1)
    return true - others


def pseudo_margins(logits: Tensor) -> Tensor:
    """Pseudo-margin of every class: ``PM_c = z_c - max_{j != c} z_j``.

    For the arg-max class this is ``top1 - top2`` (``>= 0``), for every other
    class ``z_c - top1`` (``<= 0``).

    :param logits: ``(N, C)`` logits, ``C >= 2``.
    :return: float32 ``(N, C)``.
    """
    z = logits.detach().float()
    top2 = z.topk(2, dim=1).values
    best = z.argmax(dim=1, keepdim=True)
    rival = top2[:, :1].expand_as(z).clone()
    rival.scatter_(1, best, top2[:, 1:2])
    return z - rival


class AUMTracker:
    """Area under the margin (AUM) of labeled samples, keyed by sample id.

    Pleiss et al., NeurIPS 2020 (https://arxiv.org/abs/2001.10528); used for
    the labeled easy/hard split of CalibrateMix (arXiv:2511.12964).

    Keeps a sum of margins and a count per id; ``value`` is their ratio (0 for
    ids never seen). The tables grow with :meth:`grow` (e.g. when a
    class-incremental stream brings new labeled samples).

    :param num_samples: number of ids (ids lie in ``[0, num_samples)``).
    :param device: device of the tables (the training device).
    """

    def __init__(self, *, num_samples: int, device: torch.device | str = "cpu"):
        n = check_positive_int("num_samples", num_samples)
        self.margin_sum = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device)

    @property
    def num_samples(self) -> int:
        return self.margin_sum.shape[0]

    def grow(self, num_samples: int) -> None:
        """Extend the tables to ``num_samples`` ids (never shrinks)."""
        extra = check_positive_int("num_samples", num_samples) - self.num_samples
        if extra > 0:
            pad = self.margin_sum.new_zeros(extra)
            self.margin_sum = torch.cat([self.margin_sum, pad])
            self.count = torch.cat([self.count, pad])

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor, index: Tensor) -> None:
        """Add one step's margins of the samples ``index``.

        :param logits: ``(N, C)`` logits (detached here).
        :param labels: ``(N,)`` true labels.
        :param index: ``(N,)`` sample ids in ``[0, num_samples)``.
        """
        z = check_indexed_logits(logits, index)
        if labels.shape != index.shape:
            raise ValueError(
                f"labels must have shape {tuple(index.shape)}, got {tuple(labels.shape)}"
            )
        m = margins(z, labels.to(z.device))
        ok = torch.isfinite(z).all(dim=1)
        index = index.to(self.margin_sum.device).long()
        self.margin_sum.index_add_(
            0, index, torch.where(ok, m, 0.0).to(self.margin_sum)
        )
        self.count.index_add_(0, index, ok.to(self.count.dtype))

    def value(self, index: Tensor) -> Tensor:
        """AUM of the samples ``index`` (0 for ids never updated), ``(N,)``."""
        index = index.to(self.margin_sum.device).long()
        return self.margin_sum[index] / self.count[index].clamp_min(1.0)

    def memory_bytes(self) -> int:
        return self.margin_sum.nbytes + self.count.nbytes

    def to(self, device: torch.device | str) -> AUMTracker:
        """Move the tables to ``device`` (in place); returns ``self``."""
        self.margin_sum = self.margin_sum.to(device)
        self.count = self.count.to(device)
        return self

    def state_dict(self) -> dict:
        return {"margin_sum": self.margin_sum.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state) - {"margin_sum", "count"}
        if unknown:
            raise ValueError(f"unexpected keys in AUM state dict: {sorted(unknown)}")
        if state["margin_sum"].shape != state["count"].shape:
            raise ValueError("margin_sum and count must have the same shape")
        device = self.margin_sum.device
        self.margin_sum = state["margin_sum"].to(device, torch.float32).clone()
        self.count = state["count"].to(device, torch.float32).clone()

    def __repr__(self) -> str:
        return f"AUMTracker(num_samples={self.num_samples})"


class APMTracker:
    """Average pseudo-margin (APM) of unlabeled samples: an ``N x C`` table.

    MarginMatch (Sosea & Caragea, CVPR 2023, https://arxiv.org/abs/2308.09037)
    with the update schedule of the CalibrateMix release (arXiv:2511.12964):
    ``APM[i] <- a PM(z_i) + (1 - a) APM[i]``, ``a = delta / (1 + n_i)`` where
    ``n_i`` counts the earlier updates of row ``i``.

    The number of classes may grow between updates (a class-incremental head):
    new columns start at 0. See the module docstring for the memory cost and
    the plan for ImageNet-size sets.

    :param num_samples: size of the unlabeled dataset (rows).
    :param num_classes: columns; ``None`` takes the width of the first update.
    :param delta: the schedule's numerator, in ``(0, 1]`` (0.997).
    :param dtype: storage dtype of the table (``float32``, ``float16`` or
        ``bfloat16``); updates are computed in float32.
    :param device: device of the table (the training device).
    """

    def __init__(
        self,
        *,
        num_samples: int,
        num_classes: int | None = None,
        delta: float = DEFAULT_APM_DELTA,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.num_samples = check_positive_int("num_samples", num_samples)
        delta = float(delta)
        if not 0.0 < delta <= 1.0:
            raise ValueError(f"delta must be in (0, 1], got {delta}")
        self.delta = delta
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(
                f"dtype must be torch.float32, float16 or bfloat16, got {dtype}"
            )
        self.dtype = dtype
        self.device = torch.device(device)
        self.table: Tensor | None = None
        self.count = torch.zeros(self.num_samples, dtype=torch.int32, device=device)
        if num_classes is not None:
            self._grow(check_positive_int("num_classes", num_classes))

    @property
    def num_classes(self) -> int:
        return 0 if self.table is None else self.table.shape[1]

    def _grow(self, num_classes: int) -> None:
        if num_classes < self.num_classes:
            raise ValueError(
                f"got {num_classes} classes, fewer than the {self.num_classes} tracked"
            )
        if num_classes == self.num_classes:
            return
        new = torch.zeros(
            self.num_samples, num_classes, dtype=self.dtype, device=self.device
        )
        if self.table is not None:
            new[:, : self.num_classes] = self.table
        self.table = new

    @torch.no_grad()
    def update(self, logits: Tensor, index: Tensor) -> None:
        """One step of the running average for the samples ``index``.

        :param logits: ``(N, C)`` weak-view logits (detached here).
        :param index: ``(N,)`` distinct indices in ``[0, num_samples)``.
        """
        z = check_indexed_logits(logits, index).to(self.device)
        self._grow(z.shape[1])
        index = index.to(self.device).long()
        ok = torch.isfinite(z).all(dim=1)
        pm = pseudo_margins(torch.where(ok[:, None], z, 0.0))
        n = self.count[index]
        a = (self.delta / (1.0 + n.float()))[:, None]
        old = self.table[index].float()
        new = a * pm + (1.0 - a) * old
        self.table[index] = torch.where(ok[:, None], new, old).to(self.dtype)
        self.count[index] = n + ok.to(n.dtype)

    def value(self, index: Tensor, classes: Tensor) -> Tensor:
        """APM of samples ``index`` at classes ``classes`` (float32 ``(N,)``)."""
        if self.table is None:
            return torch.zeros(index.shape[0], device=self.device)
        index = index.to(self.device).long()
        classes = classes.to(self.device).long().clamp_max(self.num_classes - 1)
        return self.table[index, classes].float()

    def updates(self, index: Tensor) -> Tensor:
        """Number of updates of the rows ``index`` (int32 ``(N,)``)."""
        return self.count[index.to(self.device).long()]

    def best(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """Largest APM of each sample and its class: ``(values, classes)``.

        Before any update every value is 0 and the class is 0.
        """
        if self.table is None:
            zeros = torch.zeros(index.shape[0], device=self.device)
            return zeros, zeros.long()
        values, classes = self.table[index.to(self.device).long()].float().max(dim=1)
        return values, classes

    def memory_bytes(self) -> int:
        table = 0 if self.table is None else self.table.nbytes
        return table + self.count.nbytes

    def to(self, device: torch.device | str) -> APMTracker:
        """Move the table to ``device`` (in place); returns ``self``."""
        self.device = torch.device(device)
        self.count = self.count.to(device)
        if self.table is not None:
            self.table = self.table.to(device)
        return self

    def state_dict(self) -> dict:
        return {
            "table": None if self.table is None else self.table.clone(),
            "count": self.count.clone(),
            "delta": self.delta,
        }

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state) - {"table", "count", "delta"}
        if unknown:
            raise ValueError(f"unexpected keys in APM state dict: {sorted(unknown)}")
        count = state["count"]
        if count.shape != (self.num_samples,):
            raise ValueError(
                f"count has shape {tuple(count.shape)}, expected ({self.num_samples},)"
            )
        table = state["table"]
        if table is not None and table.shape[0] != self.num_samples:
            raise ValueError(
                f"table has {table.shape[0]} rows, expected {self.num_samples}"
            )
        self.delta = float(state.get("delta", self.delta))
        self.count = count.to(self.device, torch.int32).clone()
        self.table = (
            None if table is None else table.to(self.device, self.dtype).clone()
        )

    def __repr__(self) -> str:
        return (
            f"APMTracker(num_samples={self.num_samples}, num_classes="
            f"{self.num_classes}, delta={self.delta}, dtype={self.dtype})"
        )


__all__ = [
    "DEFAULT_APM_DELTA",
    "APMTracker",
    "AUMTracker",
    "margins",
    "pseudo_margins",
]
