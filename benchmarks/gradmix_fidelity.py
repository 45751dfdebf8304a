"""Do GradMix's pair scores predict what a step on each pair does to old classes?

For a model trained into the second and third experience of a real stream
(ER, ``GradMixPlugin``), every class pair the plugin has scored is checked
against an independent measurement: one small SGD step (all parameters,
plain SGD) on freshly drawn mixed samples of that pair, and the change of a
loss on previous-class images. A pair is helpful when that loss falls.

The step is taken two ways:

``train`` step
    batch norm in training mode, as in every training step: the pair's
    mixed samples are forwarded together with a training-like batch (32
    current and 32 buffer samples, mixed with random partners) whose rows
    only provide batch statistics; running statistics are frozen;
``eval`` step
    batch norm on its running statistics (for models without batch norm the
    two are the same).

and two losses are measured after it (in eval mode):

``held-out``
    the cross-entropy on held-out previous-class images (validation images,
    never trained on, never in the buffer): what forgetting is about;
``buffer``
    the cross-entropy on the buffer samples that were **not** drawn into the
    probe's mixed samples (a separate buffer draw).

The benchmark prints the sign agreement between each scoring rule and each
measured change, over all scored pairs and over those above the median
``|score|``.

Rules compared (all from the same run, recorded step by step):

``ema0.9`` / ``ema0.99``
    exponential moving average of the per-step pair means (the plugin's
    ``momentum``);
``mean``
    running mean of every candidate's inner product since the pair was
    first scored (``momentum="mean"``);
``probe_last`` / ``probe_full``
    the first-order prediction at the probe itself: the inner product of the
    pair's mixed-sample gradient with the gradient of the buffer (last layer
    in closed form, or all parameters), averaged over many candidates. It
    bounds what any smoothing of the plugin's scores can reach.

Usage (about 2 minutes per seed on one core)::

    python benchmarks/gradmix_fidelity.py --dataset fashion_mnist --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cl_runs import RunConfig, run  # noqa: E402

from avalanche_mixplugins.gradients import (  # noqa: E402
    HeadCapture,
    find_linear_head,
    last_layer_gradient_sum,
    last_layer_inner_products,
    per_sample_gradients,
    soft_cross_entropy,
)
from avalanche_mixplugins.mixing import (  # noqa: E402
    mix_inputs,
    mix_targets,
    one_hot,
    sample_lambda,
)


def _tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    loader = torch.utils.data.DataLoader(dataset.eval(), batch_size=4096)
    xs, ys = [], []
    for x, y, *_ in loader:
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


class Recorder:
    """Per-step pair sums and counts of a ``GradientPairs`` policy."""

    def __init__(self, policy):
        self.steps: list[tuple[torch.Tensor, torch.Tensor]] = []
        original = policy.update

        def update(sums, counts):
            self.steps.append((sums.detach().clone(), counts.detach().clone()))
            return original(sums, counts)

        policy.update = update

    def rules(self, c: int) -> dict[str, np.ndarray]:
        out = {}
        for name, m in (("ema0.9", 0.9), ("ema0.99", 0.99)):
            s = torch.zeros(c, c)
            seen = torch.zeros(c, c, dtype=torch.bool)
            for sums, counts in self.steps:
                k = sums.shape[0]
                sums_c, counts_c = torch.zeros(c, c), torch.zeros(c, c)
                sums_c[:k, :k], counts_c[:k, :k] = sums, counts
                has = counts_c > 0
                mean = sums_c / counts_c.clamp_min(1)
                s = torch.where(has, torch.where(seen, m * s + (1 - m) * mean, mean), s)
                seen |= has
            out[name] = s.numpy()
        tot_s, tot_n = torch.zeros(c, c), torch.zeros(c, c)
        for sums, counts in self.steps:
            k = sums.shape[0]
            tot_s[:k, :k] += sums
            tot_n[:k, :k] += counts
        out["mean"] = (tot_s / tot_n.clamp_min(1)).numpy()
        out["_count"] = tot_n.numpy()
        return out


def probe(strategy, plugin, bench, i, recorder, args, rows):
    model = copy.deepcopy(strategy.model).eval()
    classes_now = sorted(bench.train_stream[i].classes_in_this_experience)
    old = sorted(
        int(c) for e in bench.train_stream[:i] for c in e.classes_in_this_experience
    )
    x_cur, y_cur = _tensors(bench.train_stream[i].dataset)
    replay = next(p for p in strategy.plugins if hasattr(p, "storage_policy"))
    x_buf, y_buf = _tensors(replay.storage_policy.buffer)
    parts = [_tensors(e.dataset) for e in bench.test_stream[:i]]
    x_val = torch.cat([q[0] for q in parts])
    y_val = torch.cat([q[1] for q in parts])
    pool_x = torch.cat([x_cur, x_buf])
    pool_y = torch.cat([y_cur, y_buf])
    c = 10
    rules = recorder.rules(c)
    gen = torch.Generator().manual_seed(args.seed * 100 + i)

    def val_loss(m):
        with torch.no_grad():
            return float(F.cross_entropy(m(x_val), y_val))

    def buf_losses(m):
        with torch.no_grad():
            return F.cross_entropy(m(x_buf), y_buf, reduction="none")

    clean = copy.deepcopy(model)
    n_cur = x_cur.shape[0]
    ctx_gen = torch.Generator().manual_seed(args.seed * 100 + i + 50)

    def context_batch():
        """A training-like mixed batch (32 current + 32 buffer samples)."""
        ic = torch.randint(0, n_cur, (32,), generator=ctx_gen)
        ib = torch.randint(0, x_buf.shape[0], (32,), generator=ctx_gen)
        xx = torch.cat([x_cur[ic], x_buf[ib]])
        perm = torch.randperm(64, generator=ctx_gen)
        return mix_inputs(xx, perm, sample_lambda(plugin.alpha, 64, generator=ctx_gen))

    def step_changes(x_mix, t_mix, other, mode):
        """Held-out and buffer loss changes after one SGD step on the pair."""
        m = copy.deepcopy(clean)
        if mode == "train":
            m.train()
            for mod in m.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.momentum = 0.0  # batch statistics, running ones frozen
            out = m(torch.cat([x_mix, context_batch()]))[: x_mix.shape[0]]
        else:
            out = m(x_mix)
        opt = torch.optim.SGD(m.parameters(), lr=args.lr)
        soft_cross_entropy(out, t_mix).mean().backward()
        opt.step()
        m.eval()
        held_out = val_loss(m) - base
        buffer = float((buf_losses(m) - base_buf)[other].mean())
        return held_out, buffer

    _, head = find_linear_head(model)
    cap = HeadCapture(model, head)
    with torch.no_grad():
        model(x_buf)
    h_buf, z_buf = cap.lookup(x_buf)
    g_w, g_b, n_buf = last_layer_gradient_sum(h_buf, z_buf, one_hot(y_buf, c))
    cap.enabled = False
    g_full = per_sample_gradients(model, x_buf, one_hot(y_buf, c)).mean(dim=0)
    sel = torch.randperm(x_val.shape[0], generator=torch.Generator().manual_seed(0))
    sel = sel[:512]
    g_val = per_sample_gradients(model, x_val[sel], one_hot(y_val[sel], c)).mean(0)
    base = val_loss(model)
    base_buf = buf_losses(model)
    seen = plugin.scored_pairs.numpy()
    for a in sorted(set(old) | set(classes_now)):
        for b in sorted(set(old) | set(classes_now)):
            if b < a or not seen[a, b]:
                continue
            ia = torch.nonzero(pool_y == a).flatten()
            ib = torch.nonzero(pool_y == b).flatten()
            if ia.numel() < 2 or ib.numel() < 2:
                continue
            deltas = {k: [] for k in TARGETS}
            p_last, p_full, p_val = [], [], []
            for _ in range(args.repeats):
                sa = ia[torch.randint(0, ia.numel(), (args.n,), generator=gen)]
                sb = ib[torch.randint(0, ib.numel(), (args.n,), generator=gen)]
                x = torch.cat([pool_x[sa], pool_x[sb]])
                y = torch.cat([pool_y[sa], pool_y[sb]])
                partner = torch.cat(
                    [torch.arange(args.n, 2 * args.n), torch.arange(args.n)]
                )
                lam = sample_lambda(plugin.alpha, 2 * args.n, generator=gen)
                x_mix = mix_inputs(x, partner, lam)
                t_mix = mix_targets(y, partner, lam, c)
                cap.enabled = True
                with torch.no_grad():
                    model(x_mix)
                cap.enabled = False
                h_m, z_m = cap.lookup(x_mix)
                p_last.append(
                    float(
                        last_layer_inner_products(
                            h_m, z_m, t_mix, g_w / n_buf, g_b / n_buf
                        ).mean()
                    )
                )
                g_mix = per_sample_gradients(model, x_mix, t_mix)
                p_full.append(float((g_mix @ g_full).mean()))
                p_val.append(float((g_mix @ g_val).mean()))
                # the buffer samples the probe did not mix: a separate draw
                other = torch.ones(x_buf.shape[0], dtype=torch.bool)
                used = torch.cat([sa, sb])
                other[used[used >= n_cur] - n_cur] = False
                for mode in ("train", "eval"):
                    held_out, buffer = step_changes(x_mix, t_mix, other, mode)
                    deltas[f"delta_{mode}"].append(held_out)
                    deltas[f"delta_buffer_{mode}"].append(buffer)
                cap.clear()
            row = {
                "seed": args.seed,
                "experience": i,
                "pair": [a, b],
                "kind": (
                    "old-old"
                    if a in old and b in old
                    else "new-new"
                    if a not in old and b not in old
                    else "old-new"
                ),
                **{k: float(np.nanmean(v)) for k, v in deltas.items()},
                "probe_last": float(np.mean(p_last)),
                "probe_full": float(np.mean(p_full)),
                "probe_val": float(np.mean(p_val)),
                "count": float(rules["_count"][a, b]),
                "plugin": float(plugin.pair_scores[a, b]),
            }
            for name in ("ema0.9", "ema0.99", "mean"):
                row[name] = float(rules[name][a, b])
            rows.append(row)
    cap.remove()


TARGETS = ("delta_train", "delta_eval", "delta_buffer_train", "delta_buffer_eval")
TARGET_NAMES = {
    "delta_train": "held-out, train step",
    "delta_eval": "held-out, eval step",
    "delta_buffer_train": "buffer, train step",
    "delta_buffer_eval": "buffer, eval step",
}


def agreement(rows, key, target="delta_train") -> tuple[float, float, int]:
    """Sign agreement of ``key`` with ``-target`` (all rows, above median |key|)."""
    rows = [r for r in rows if np.isfinite(r[target])]
    s = np.array([r[key] for r in rows])
    d = np.array([r[target] for r in rows])
    agree = np.sign(s) == -np.sign(d)
    top = np.abs(s) >= np.median(np.abs(s))
    return float(agree.mean()), float(agree[top].mean()), len(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=800)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--mem-size", type=int, default=200)
    p.add_argument("--n", type=int, default=32, help="samples per class per draw")
    p.add_argument("--repeats", type=int, default=4, help="draws per pair")
    p.add_argument("--lr", type=float, default=0.01, help="probe step size")
    p.add_argument("--probes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--plugin", default="{}", help="GradMixPlugin kwargs as JSON")
    p.add_argument("--out", default=None, help="write the per-pair rows as JSON")
    args = p.parse_args(argv)
    rows: list[dict] = []
    for seed in args.seeds:
        args.seed = seed
        cfg = RunConfig(
            dataset=args.dataset,
            per_class=args.per_class,
            split="val",
            strategy="er",
            aug="gradmix",
            mem_size=args.mem_size,
            epochs=args.epochs,
            seed=seed,
            plugin_kwargs=json.loads(args.plugin),
        )
        holder = {}

        def on_exp(strategy, plugin, bench, i, holder=holder):
            if "rec" not in holder:
                holder["rec"] = Recorder(plugin.policy)
            if i in args.probes:
                probe(strategy, plugin, bench, i, holder["rec"], args, rows)
            if i == max(args.probes):
                raise StopIteration

        try:
            run(cfg, on_experience=on_exp)
        except StopIteration:
            pass
    report(rows, args)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


def kind_majority(rows, target) -> float:
    """Agreement of a rule that knows only the pair's kind (old-old, old-new,
    new-new) and calls each kind by its majority measured sign.

    It reads the measurement, so it is a reference, not a usable rule: how
    much of a score's agreement the pair kind alone explains.
    """
    agree = []
    for kind in {r["kind"] for r in rows}:
        sub = np.array(
            [r[target] for r in rows if r["kind"] == kind and np.isfinite(r[target])]
        )
        if sub.size:
            helpful = (sub < 0).mean() >= 0.5
            agree.extend((sub < 0) == helpful)
    return float(np.mean(agree))


def report(rows, args) -> None:
    """Print the agreement of every rule with every measured change."""
    print(f"{len(rows)} scored pairs, dataset {args.dataset}, seeds {args.seeds}")
    print("sign agreement, all pairs / pairs above the median |score|:")
    print("| rule | " + " | ".join(TARGET_NAMES[t] for t in TARGETS) + " |")
    print("| --- |" + " --- |" * len(TARGETS))
    for key in RULES:
        cells = []
        for target in TARGETS:
            a, t, _ = agreement(rows, key, target)
            cells.append(f"{a:.2f} / {t:.2f}")
        print(f"| {key} | " + " | ".join(cells) + " |")
    cells = ", ".join(
        f"{kind_majority(rows, t):.2f} ({TARGET_NAMES[t]})" for t in TARGETS
    )
    print(f"pair kind alone (each kind's majority measured sign, an oracle): {cells}")
    for kind in ("old-old", "old-new", "new-new"):
        sub = [r for r in rows if r["kind"] == kind]
        if sub:
            falls = np.mean([r["delta_train"] < 0 for r in sub])
            cells = ", ".join(
                f"{agreement(sub, 'plugin', t)[0]:.2f} ({TARGET_NAMES[t]})"
                for t in TARGETS
            )
            print(
                f"{kind}: {len(sub)} pairs, held-out loss falls for {falls:.2f} "
                f"(train step); plugin agreement {cells}"
            )


RULES = ("plugin", "ema0.9", "ema0.99", "mean", "probe_last", "probe_full", "probe_val")


if __name__ == "__main__":
    main()
