"""Every step's mixed inputs and mixed loss, recovered by brute force from the
samples each Avalanche replay setup trains on (split digits)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from avalanche_mixplugins import CutMixPlugin, GradMixPlugin, MixupPlugin
from avalanche_mixplugins.experiments.streams import class_incremental_from_tensors
from tests.plugins.setups import run


@pytest.fixture(scope="module")
def distinct_digits(digits_tensors):
    """Split digits with a little uniform noise on every pixel, so no two
    samples share a pixel value: a mixed input then tells exactly which samples
    it was made of (and, for CutMix, where the box is)."""
    x_tr, y_tr, x_te, y_te = digits_tensors
    g = torch.Generator().manual_seed(0)
    x_tr = x_tr + 0.01 * torch.rand(x_tr.shape, generator=g)
    return class_incremental_from_tensors(
        x_tr, y_tr, x_te, y_te, n_experiences=5, seed=0
    )


def pool_of(strategy, setup: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The samples trained on this step, where each strategy keeps them, and how
    many of them come from the strategy's buffer outside the minibatch."""
    x, y = strategy.mb_x, strategy.mb_y
    if setup in ("er_ace", "er_aml") and strategy.replay_loader is not None:
        bx, by = strategy.mb_buffer_x, strategy.mb_buffer_y
        return torch.cat([x, bx]), torch.cat([y, by]), len(bx)
    # Naive + ReplayPlugin: memory rows inside the batch; DER: prepended rows
    return x, y, 0


def recover_mixup(x_mix, pool):
    """Brute force: for each mixed row, the pool sample ``j`` and ``lam`` with
    ``x_mix[i] = lam x_i + (1 - lam) x_j`` (``j = -1``: the row is ``x_i``)."""
    X, M = pool.flatten(1).double(), x_mix.flatten(1).double()
    partner, lam = [], []
    for i in range(len(X)):
        if torch.allclose(M[i], X[i], rtol=0, atol=1e-6):
            partner.append(-1)
            lam.append(1.0)
            continue
        d = X[i] - X  # (N, D)
        r = M[i] - X
        lj = (r * d).sum(1) / (d * d).sum(1).clamp_min(1e-12)
        res = (r - lj.view(-1, 1) * d).norm(dim=1)
        res[i] = float("inf")
        j = int(res.argmin())
        assert res[j] < 1e-4, f"row {i} is not a mix of two samples of the step"
        assert -1e-6 <= lj[j] <= 1 + 1e-6, f"row {i}: lam {float(lj[j])} not in [0, 1]"
        partner.append(j)
        lam.append(float(lj[j]))
    return torch.tensor(partner), torch.tensor(lam, dtype=torch.float64)


def recover_cutmix(x_mix, pool):
    """Brute force: for each mixed row, the pool sample pasted in, and the label
    weight ``1 - box area / image area`` (the box must be a rectangle)."""
    partner, lam = [], []
    h, w = pool.shape[-2:]
    for i in range(len(pool)):
        inside = (x_mix[i] != pool[i]).any(0)  # (H, W)
        if not inside.any():
            partner.append(-1)
            lam.append(1.0)
            continue
        rows = torch.nonzero(inside.any(1)).flatten()
        cols = torch.nonzero(inside.any(0)).flatten()
        box = inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert box.all(), f"row {i}: the pasted region is not a box"
        src = [
            j
            for j in range(len(pool))
            if j != i and torch.equal(x_mix[i][:, inside], pool[j][:, inside])
        ]
        assert len(src) >= 1, f"row {i}: the box is not taken from a sample"
        assert torch.equal(x_mix[i][:, ~inside], pool[i][:, ~inside])
        partner.append(src[0])
        lam.append(1.0 - float(inside.sum()) / (h * w))
    return torch.tensor(partner), torch.tensor(lam, dtype=torch.float64)


class MixAudit(SupervisedPlugin):
    """Put one instance before and one after the mixing plugin: records, in
    ``before_backward``, the pool, the mixed inputs (a forward pre-hook on the
    model between the two) and the loss the plugin added."""

    def __init__(self, setup: str, mode: str, shared=None):
        super().__init__()
        self.setup, self.mode = setup, mode
        self.shared = shared if shared is not None else {"records": [], "on": False}

    def second(self):
        return MixAudit(self.setup, self.mode, self.shared)

    def before_training_exp(self, strategy, **kwargs):
        if "hook" not in self.shared:

            def hook(module, args):
                if self.shared["on"]:
                    self.shared["inputs"].append(args[0].detach().clone())

            self.shared["hook"] = strategy.model.register_forward_pre_hook(hook)

    def before_backward(self, strategy, **kwargs):
        sh = self.shared
        if not sh["on"]:  # first instance: before the mixing plugin
            sh["on"], sh["inputs"] = True, []
            sh["loss_before"] = float(strategy.loss)
            return
        sh["on"] = False
        pool, y, n_extra = pool_of(strategy, self.setup)
        added = float(strategy.loss) - sh["loss_before"]
        mixed = sh["inputs"]
        assert len(mixed) <= 1, "the mixing plugin ran more than one forward"
        current = [int(c) for c in strategy.experience.classes_in_this_experience]
        record = {
            "exp": strategy.experience.current_experience,
            "pool": pool.clone(),
            "y": y.clone(),
            "n_extra": n_extra,
            "is_old": ~torch.isin(y, torch.tensor(current)),
            "added": added,
            "x_mix": mixed[0] if mixed else None,
        }
        if mixed:
            with torch.no_grad():  # the weights the plugin's loss was computed at
                record["logits"] = strategy.model(mixed[0]).double()
        sh["records"].append(record)


def audited_run(setup, bench, plugin, mode):
    audit = MixAudit(setup, mode)
    losses, _, strategy = run(
        setup, bench, plugin=audit, extra=[plugin, audit.second()], n_exp=2
    )
    return audit.shared["records"], strategy


def duplicated_rows(pool):
    flat = pool.flatten(1)
    same = (flat.unsqueeze(0) == flat.unsqueeze(1)).all(-1)
    return same.sum(1) > 1


def asymmetric_logits(z, y, old, partner, setup):
    """ER-ACE / ER-AML: a mix of two current samples is trained over the classes
    of the step's current samples only (the strategies' asymmetric
    cross-entropy); every other row keeps all logits."""
    if setup not in ("er_ace", "er_aml"):
        return z
    present = torch.zeros(z.shape[1], dtype=torch.bool)
    present[y[~old]] = True
    masked = (~old & ~old[partner]).view(-1, 1) & ~present.view(1, -1)
    return z.masked_fill(masked, float("-inf"))


@pytest.mark.parametrize("setup", ["naive_replay", "er_ace", "er_aml", "der"])
@pytest.mark.parametrize(
    "name, mode",
    [
        ("mixup", "mixup"),
        ("cutmix", "cutmix"),
        ("gradmix", "mixup"),
        ("gradmix_cutmix", "cutmix"),
    ],
)
def test_mixed_loss_and_inputs_match_an_independent_recomputation(
    setup, name, mode, distinct_digits
):
    """Every step, each mixed input is a convex combination (Mixup) or a box
    paste (CutMix) of two distinct samples of the step, found by brute force
    among the samples each strategy trains on (ER-ACE/ER-AML: minibatch and
    ``mb_buffer_x``; DER: with the prepended buffer rows); and the loss the
    plugin adds is ``weight`` times the mean over mixed rows of
    ``lam CE(f(x~), y_i) + (1 - lam) CE(f(x~), y_j)``, recomputed with
    ``F.cross_entropy`` from the recovered partners and weights. (GradMix: the
    inputs only, its loss is weighted by its pair scores.)"""
    weight = 0.5
    plugin = {
        "mixup": lambda: MixupPlugin(seed=2, weight=weight),
        "cutmix": lambda: CutMixPlugin(seed=2, weight=weight),
        "gradmix": lambda: GradMixPlugin(seed=2, no_buffer="mixup", weight=weight),
        "gradmix_cutmix": lambda: GradMixPlugin(
            seed=2, no_buffer="mixup", weight=weight, mix="cutmix"
        ),
    }[name]()
    records, _ = audited_run(setup, distinct_digits, plugin, mode)
    recover = recover_cutmix if mode == "cutmix" else recover_mixup
    n_checked = 0
    for r in records:
        assert r["x_mix"] is not None, "a step of pairing='all' was not mixed"
        pool, y = r["pool"], r["y"]
        assert r["x_mix"].shape == pool.shape  # one mixed row per sample
        partner, lam = recover(r["x_mix"], pool)
        # every row without an identical twin in the step really is mixed
        # (CutMix may draw an empty box)
        if name.startswith("gradmix"):
            # GradMix leaves unmixed a row whose every pair is known detrimental
            continue
        if mode == "mixup":
            assert (partner >= 0)[~duplicated_rows(pool)].all()
        if r["exp"] == 1 and r["n_extra"]:
            # rows of the strategy's own buffer are mixed too
            assert (partner[-r["n_extra"] :] >= 0).any()
        j = torch.where(partner >= 0, partner, torch.arange(len(pool)))
        z = asymmetric_logits(r["logits"], y, r["is_old"], j, setup)
        ce_i = F.cross_entropy(z, y, reduction="none")
        ce_j = F.cross_entropy(z, y[j], reduction="none")
        expected = (lam * ce_i + (1 - lam) * ce_j).mean()
        assert r["added"] == pytest.approx(weight * float(expected), abs=1e-5)
        n_checked += 1
    if not name.startswith("gradmix"):
        n_steps = sum(
            len(e.dataset) // 32 + 1 for e in distinct_digits.train_stream[:2]
        )
        assert n_checked == n_steps


@pytest.mark.parametrize("pairing", ["buffer_current", "current"])
@pytest.mark.parametrize("setup", ["naive_replay", "er_ace", "der"])
def test_buffer_samples_are_found_per_strategy(setup, pairing, distinct_digits):
    """Buffer (previous-class) samples are found wherever the strategy keeps
    them (Naive + ReplayPlugin: in the batch, told apart by label; ER-ACE:
    ``mb_buffer_x``; DER: prepended to the batch). With
    ``pairing="buffer_current"`` every pair joins a previous-class and a
    current-class sample and nothing is mixed before a buffer exists; with
    ``"current"`` buffer samples are never mixed and do not count in the mean
    of the mixed loss."""
    plugin = MixupPlugin(seed=3, pairing=pairing)
    records, _ = audited_run(setup, distinct_digits, plugin, "mixup")
    second = [r for r in records if r["exp"] == 1]
    if pairing == "buffer_current":
        first = [r for r in records if r["exp"] == 0]
        assert all(r["x_mix"] is None and r["added"] == 0.0 for r in first)
    assert second and all(r["x_mix"] is not None for r in second)
    for r in second:
        partner, lam = recover_mixup(r["x_mix"], r["pool"])
        old = r["is_old"]
        assert old.any() and (~old).any()
        if setup == "er_ace":  # previous classes only come from mb_buffer_x
            assert not old[: len(old) - r["n_extra"]].any()
        if setup == "der":  # DER prepends its buffer rows
            assert old[: int(old.sum())].all()
        mixed = partner >= 0
        if pairing == "buffer_current":
            assert mixed.all()
            assert (old != old[partner]).all()
            counted = torch.ones_like(old)
        else:
            assert not mixed[old].any()
            assert (~old[partner[mixed]]).all()
            assert mixed[~old & ~duplicated_rows(r["pool"])].all()
            counted = ~old
        y = r["y"]
        j = torch.where(mixed, partner, torch.arange(len(y)))
        z = asymmetric_logits(r["logits"], y, old, j, setup)
        per = lam * F.cross_entropy(z, y, reduction="none") + (1 - lam) * (
            F.cross_entropy(z, y[j], reduction="none")
        )
        assert r["added"] == pytest.approx(float(per[counted].mean()), abs=1e-5)
