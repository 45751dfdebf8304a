"""Do GradMix's pair scores predict what a step on each pair does to old classes?

For a model trained into the second and third experience of a real stream
(ER, ``GradMixPlugin``), every class pair the plugin has scored is checked
against an independent measurement: one small SGD step (all parameters,
plain SGD, eval mode) on freshly drawn mixed samples of that pair, and the
change of the loss on **held-out** previous-class images (validation images,
never trained on, never in the buffer). A pair is helpful when that loss
falls. The benchmark prints the sign agreement between each scoring rule and
the measured change, over all scored pairs and over those above the median
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

    clean = copy.deepcopy(model)
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
    seen = plugin.scored_pairs.numpy()
    for a in sorted(set(old) | set(classes_now)):
        for b in sorted(set(old) | set(classes_now)):
            if b < a or not seen[a, b]:
                continue
            ia = torch.nonzero(pool_y == a).flatten()
            ib = torch.nonzero(pool_y == b).flatten()
            if ia.numel() < 2 or ib.numel() < 2:
                continue
            deltas, p_last, p_full, p_val = [], [], [], []
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
                m = copy.deepcopy(clean)
                opt = torch.optim.SGD(m.parameters(), lr=args.lr)
                soft_cross_entropy(m(x_mix), t_mix).mean().backward()
                opt.step()
                deltas.append(val_loss(m) - base)
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
                "delta": float(np.mean(deltas)),
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


def agreement(rows, key) -> tuple[float, float, int]:
    s = np.array([r[key] for r in rows])
    d = np.array([r["delta"] for r in rows])
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
    print(f"{len(rows)} scored pairs, dataset {args.dataset}, seeds {args.seeds}")
    print("| rule | sign agreement (all) | above median abs score |")
    print("| --- | --- | --- |")
    for key in (
        "plugin",
        "ema0.9",
        "ema0.99",
        "mean",
        "probe_last",
        "probe_full",
        "probe_val",
    ):
        a, t, _ = agreement(rows, key)
        print(f"| {key} | {a:.2f} | {t:.2f} |")
    for kind in ("old-old", "old-new", "new-new"):
        sub = [r for r in rows if r["kind"] == kind]
        if sub:
            d = np.mean([r["delta"] < 0 for r in sub])
            a = agreement(sub, "plugin")[0]
            print(
                f"{kind}: {len(sub)} pairs, measured helpful {d:.2f}, plugin agreement {a:.2f}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
