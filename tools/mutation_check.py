"""Put deliberate bugs into a copy of the package and check that the tests catch them.

Run by hand (not in CI), from the repository root::

    python tools/mutation_check.py                 # every bug
    python tools/mutation_check.py --list          # ids and descriptions
    python tools/mutation_check.py ckpt-no-strategy-buffer mix-lam-swapped
    python tools/mutation_check.py --area checkpoint

Each bug in :data:`BUGS` is a text patch (``old`` must occur exactly once in
``file``) plus the tests that must go red. For each bug the script copies the
packages and the tests to a temporary directory, applies the patch there (the
working tree is never modified), runs the tests with ``pytest -x`` and prints
``caught`` (a test failed), ``SURVIVED`` (all passed: a hole in the suite),
``ERROR`` (pytest could not run the tests, e.g. the patch broke an import) or
``STALE`` (the patch text is no longer in the file: update the entry). With
``--baseline`` the selected tests are first run unpatched, which must pass.

To add a bug, append a :class:`Bug` to :data:`BUGS` (the GradMix and
CalibrateMix sections are there for it); keep ``tests`` as narrow as possible,
since the script runs them once per bug.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("avalanche_mixplugins", "ssl_ext", "tests", "examples", "pyproject.toml")


@dataclass(frozen=True)
class Bug:
    """One deliberate bug: replace ``old`` by ``new`` in ``file``."""

    id: str
    area: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str
    more: tuple[tuple[str, str, str], ...] = ()
    """Further ``(file, old, new)`` patches applied with the first."""


# fmt: off
BUGS: list[Bug] = [
    # ------------------------------------------------------------ checkpoints
    Bug(
        "ckpt-no-strategy-buffer", "checkpoint", "avalanche_mixplugins/checkpoint/files.py",
        '        state["strategy_buffer"] = buffer_state_dict(own)',
        "        pass",
        ("tests/checkpoint/test_replay_resume.py::test_every_replay_setup_resumes_exactly",),
        "a strategy's own buffer (ER-ACE, ER-AML, DER) is left out of the checkpoint",
    ),
    Bug(
        "ckpt-no-replay-plugin-buffer", "checkpoint", "avalanche_mixplugins/checkpoint/files.py",
        '        state["buffer"] = buffer_state_dict(plugin.storage_policy)',
        "        pass",
        ("tests/checkpoint/test_replay_resume.py::test_every_replay_setup_resumes_exactly",),
        "ReplayPlugin's buffer is left out of the checkpoint",
    ),
    Bug(
        "ckpt-labels-as-tensors", "checkpoint", "avalanche_mixplugins/checkpoint/buffers.py",
        'v[index] if kind == "tensor" else self._CAST[kind](v[index])',
        "v[index]",
        ("tests/checkpoint/test_replay_resume.py::test_every_replay_setup_resumes_exactly",),
        "rebuilt buffer samples return tensor labels where the stream gave ints "
        "(the ER-ACE collate crash)",
    ),
    Bug(
        "ckpt-no-reservoir-weights", "checkpoint", "avalanche_mixplugins/checkpoint/buffers.py",
        '    buffer._buffer_weights = state["weights"].clone()',
        "    buffer._buffer_weights = torch.rand(len(state['weights']))",
        ("tests/checkpoint/test_replay_resume.py::test_every_replay_setup_resumes_exactly",),
        "reservoir weights are not restored (the next buffer update keeps other samples)",
    ),
    Bug(
        "ckpt-no-optimizer", "checkpoint", "avalanche_mixplugins/checkpoint/files.py",
        '    strategy.optimizer.load_state_dict(state["optimizer"])',
        "    pass",
        ("tests/checkpoint/test_replay_resume.py::test_every_replay_setup_resumes_exactly",),
        "optimizer state (momentum) is not restored",
    ),
    Bug(
        "ckpt-no-rng", "checkpoint", "avalanche_mixplugins/checkpoint/files.py",
        '    set_rng_state(state["rng"])\n',
        "\n",
        ("tests/checkpoint/test_replay_resume.py::test_every_replay_setup_resumes_exactly",),
        "global random states are not restored",
    ),
    Bug(
        "ckpt-no-plugin-state", "checkpoint", "avalanche_mixplugins/checkpoint/files.py",
        '        plugin.load_state_dict(state["state"])',
        "        pass",
        ("tests/checkpoint/test_replay_resume.py::test_every_replay_setup_resumes_exactly",),
        "mixing plugins' state (generator, seen classes, pair scores) is not restored",
    ),
    Bug(
        "ckpt-der-logits-dropped", "checkpoint", "avalanche_mixplugins/checkpoint/buffers.py",
        "        for name, attr in dataset._data_attributes.items()\n    ]",
        '        for name, attr in dataset._data_attributes.items()\n'
        '        if name != "logits"\n    ]',
        ("tests/checkpoint/test_replay_resume.py::test_every_replay_setup_resumes_exactly",),
        "DER's stored logits are not saved with its buffer",
    ),
    Bug(
        "ckpt-mid-experience-allowed", "checkpoint", "avalanche_mixplugins/checkpoint/files.py",
        "    if in_iteration and position is None:",
        "    if False:",
        ("tests/checkpoint/test_replay_resume.py::"
         "test_avalanche_strategies_refuse_a_checkpoint_inside_an_experience",),
        "a checkpoint that cannot resume exactly (inside an experience of an "
        "Avalanche strategy) is written without a word",
    ),
    # ---------------------------------------------------- shared mixing plugin
    Bug(
        "mix-lam-swapped", "mixing", "avalanche_mixplugins/plugins/base.py",
        "batch.logits, batch.y, batch.partner, batch.lam, reduction=\"none\"",
        "batch.logits, batch.y, batch.partner, 1 - batch.lam, reduction=\"none\"",
        ("tests/plugins/test_mixed_loss.py::test_mixed_loss_and_inputs_match_an_independent_recomputation",),
        "the label weights are swapped (lam given to the partner's label)",
    ),
    Bug(
        "mix-mean-over-batch", "mixing", "avalanche_mixplugins/plugins/base.py",
        "loss = (per_sample * w).sum() / self.loss_denominator(batch, w)",
        "loss = (per_sample * w).mean()",
        ("tests/plugins/test_mixed_loss.py::test_buffer_samples_are_found_per_strategy",),
        "the mixed loss is averaged over all samples instead of the counted ones",
    ),
    Bug(
        "mix-weight-ignored", "mixing", "avalanche_mixplugins/plugins/base.py",
        "strategy.loss = strategy.loss + self.weight * loss",
        "strategy.loss = strategy.loss + loss",
        ("tests/plugins/test_mixed_loss.py::test_mixed_loss_and_inputs_match_an_independent_recomputation",),
        "the weight of the mixed loss is ignored",
    ),
    Bug(
        "mix-buffer-not-seen-er-ace", "mixing", "avalanche_mixplugins/plugins/base.py",
        "        if extra is not None:\n            x = torch.cat([x, extra[0]])",
        "        if False:\n            x = torch.cat([x, extra[0]])",
        ("tests/plugins/test_mixed_loss.py::test_buffer_samples_are_found_per_strategy",),
        "ER-ACE/ER-AML buffer samples (mb_buffer_x) are not mixed",
    ),
    Bug(
        "mix-buffer-by-experience-not-label", "mixing", "avalanche_mixplugins/plugins/base.py",
        "        is_buffer = ~lut[y.clamp(-1, lut.shape[0] - 1)]",
        "        is_buffer = torch.zeros_like(y, dtype=torch.bool)",
        ("tests/plugins/test_mixed_loss.py::test_buffer_samples_are_found_per_strategy",),
        "previous-class samples are not recognised as buffer samples",
    ),
    Bug(
        "mix-partner-self", "mixing", "avalanche_mixplugins/pairing.py",
        "    distinct = ~torch.eye(n, dtype=torch.bool, device=is_buffer.device)",
        "    distinct = torch.ones(n, n, dtype=torch.bool, device=is_buffer.device)",
        ("tests/plugins/test_mixed_loss.py::test_mixed_loss_and_inputs_match_an_independent_recomputation",),
        "a sample may be paired with itself (no mixing at all for it)",
    ),
    Bug(
        "mix-buffer-current-pairing", "mixing", "avalanche_mixplugins/pairing.py",
        '        return is_buffer.view(-1, 1) != is_buffer.view(1, -1)',
        '        return ~torch.eye(n, dtype=torch.bool, device=is_buffer.device)',
        ("tests/plugins/test_mixed_loss.py::test_buffer_samples_are_found_per_strategy",),
        'pairing="buffer_current" pairs any two samples',
    ),
    Bug(
        "mix-with-buffer-pairs-current", "mixing", "avalanche_mixplugins/pairing.py",
        "        return distinct & (is_buffer.view(-1, 1) | is_buffer.view(1, -1))",
        "        return distinct",
        ("tests/ops/test_mixing.py::test_allowed_pairs_match_a_loop_over_sample_pairs",),
        'pairing="with_buffer" also pairs two current samples',
    ),
    Bug(
        "mix-cross-mask-drops-source", "mixing", "avalanche_mixplugins/mixing.py",
        "        mask = mask | (mixed.view(-1, 1) & ~present.view(1, -1) & ~own)",
        "        mask = mask | (mixed.view(-1, 1) & ~present.view(1, -1))",
        ("tests/ops/test_mixing.py::test_asymmetric_masks_by_hand",),
        'asymmetric="all" also masks the buffer source\'s own class',
    ),
    Bug(
        "mix-label-check-off", "mixing", "avalanche_mixplugins/validation.py",
        "    if top >= n_outputs or int(y.min()) < 0:",
        "    if False:",
        ("tests/plugins/test_replay_setups.py::test_labels_outside_the_outputs_raise",),
        "labels outside the model's outputs are not reported",
    ),
    Bug(
        "mix-cutmix-lam-not-corrected", "mixing", "avalanche_mixplugins/mixing.py",
        "    return cutmix_inputs(x, partner, lam, generator=generator)",
        "    return cutmix_inputs(x, partner, lam, generator=generator)[0], lam",
        ("tests/plugins/test_mixed_loss.py::test_mixed_loss_and_inputs_match_an_independent_recomputation",),
        "CutMix's label weight is not corrected to the pasted area",
    ),
    Bug(
        "mix-nan-loss-added", "bad-values", "avalanche_mixplugins/plugins/base.py",
        "            x_mix = torch.where(ok, x_mix, torch.zeros_like(x_mix))",
        "            x_mix = x_mix",
        ("tests/plugins/test_replay_setups.py::test_non_finite_mixed_loss_is_skipped_and_scores_stay_finite",),
        "a NaN mixed input reaches the forward (its zero-weighted loss poisons the gradients)",
    ),
    # ---------------------------------------------------------- GradMix
    Bug(
        "gm-no-allreduce-buffer-grad", "distributed", "avalanche_mixplugins/gradients.py",
        "        reduce(g_w, g_b, count)",
        "        pass",
        ("tests/distributed/test_gradmix.py",),
        "the buffer gradient is not all-reduced across ranks",
    ),
    Bug(
        "gm-no-allreduce-pair-sums", "distributed", "avalanche_mixplugins/plugins/gradmix.py",
        "        _all_reduce_sum(sums, counts)",
        "        pass",
        ("tests/distributed/test_gradmix.py",),
        "the per-pair sums and counts are not all-reduced across ranks",
    ),
    Bug(
        "gm-allreduce-counts-only", "distributed", "avalanche_mixplugins/gradients.py",
        "        reduce(g_w, g_b, count)",
        "        reduce(g_w, count)",
        ("tests/distributed/test_gradmix.py",),
        "the buffer gradient's bias part is not all-reduced",
    ),
    Bug(
        "gm-nan-inner-scored", "bad-values", "avalanche_mixplugins/pairing.py",
        "        valid = valid & torch.isfinite(inner)  # never write NaN or inf into scores\n"
        "        w = valid.float()\n"
        "        val = torch.nan_to_num(inner.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)",
        "        w = valid.float()\n        val = inner.detach().float()",
        ("tests/plugins/test_bad_input.py::test_non_finite_values_never_enter_gradmix_state",),
        "non-finite inner products are written into the pair scores (both guards, "
        "in GradMixPlugin.sample_weights and GradientPairs.batch_pair_sums, removed)",
        more=((
            "avalanche_mixplugins/plugins/gradmix.py",
            "valid = batch.active & has_buffer & torch.isfinite(inner)",
            "valid = batch.active & has_buffer",
        ),),
    ),
    Bug(
        "gm-seen-without-evidence", "bad-values", "avalanche_mixplugins/pairing.py",
        "        self.seen = self.seen | has",
        "        self.seen = self.seen | (counts >= 0)",
        ("tests/plugins/test_bad_input.py::test_non_finite_values_never_enter_gradmix_state",),
        "every pair is marked scored at each step, with or without evidence",
    ),
    Bug(
        "gm-loss-ignores-scores", "gradmix", "avalanche_mixplugins/plugins/gradmix.py",
        "        return (batch.active & self.policy.helpful(batch.y, batch.partner)).float()",
        "        return batch.active.float()",
        ("tests/plugins/test_gradmix_method.py::test_mixed_loss_keeps_helpful_pairs_and_divides_by_candidates",),
        "the mixed loss counts every candidate, whatever its pair's score",
    ),
    Bug(
        "gm-score-sign-flipped", "gradmix", "avalanche_mixplugins/plugins/gradmix.py",
        "        inner = self.pair_inner_products(strategy, batch)",
        "        inner = -self.pair_inner_products(strategy, batch)",
        ("tests/plugins/test_gradmix_method.py::test_scores_are_leave_one_out_inner_products_with_the_old_class_gradient",),
        "the inner products (and so the pair scores) have the wrong sign",
    ),
    Bug(
        "gm-partners-ignore-policy", "gradmix", "avalanche_mixplugins/plugins/gradmix.py",
        "        return super().select_pairs(strategy, y, is_buffer)",
        "        return draw_partners(allowed_pairs(is_buffer, self.policy.pairing), "
        "generator=self.generator)",
        ("tests/plugins/test_gradmix_method.py::test_partners_never_form_a_pair_known_detrimental",),
        "partners are drawn at random, without the pair policy",
    ),
    Bug(
        "gm-buffer-from-current", "gradmix", "avalanche_mixplugins/gradients.py",
        "g_w, g_b, count = last_layer_gradient_sum(h, logits, targets, is_buffer)",
        "g_w, g_b, count = last_layer_gradient_sum(h, logits, targets, ~is_buffer)",
        ("tests/plugins/test_gradmix_method.py::test_scores_are_leave_one_out_inner_products_with_the_old_class_gradient",),
        "the buffer gradient is computed from current-class samples",
    ),
    Bug(
        "gm-self-correlation", "gradmix", "avalanche_mixplugins/plugins/gradmix.py",
        "        leave_one_out: bool = True,",
        "        leave_one_out: bool = False,",
        ("tests/plugins/test_gradmix_method.py::test_scores_are_leave_one_out_inner_products_with_the_old_class_gradient",),
        "the buffer mean includes the candidate's own source samples",
    ),
    Bug(
        "gm-loss-over-survivors", "gradmix", "avalanche_mixplugins/plugins/gradmix.py",
        '        loss_norm: str = "candidates",',
        '        loss_norm: str = "survivors",',
        ("tests/plugins/test_gradmix_method.py::test_mixed_loss_keeps_helpful_pairs_and_divides_by_candidates",),
        "the mixed loss is divided by the helpful samples (each survivor weighs more)",
    ),
    Bug(
        "gm-loss-over-active", "gradmix", "avalanche_mixplugins/plugins/gradmix.py",
        '        loss_norm: str = "candidates",',
        '        loss_norm: str = "active",',
        ("tests/plugins/test_gradmix_method.py::test_mixed_loss_keeps_helpful_pairs_and_divides_by_candidates",),
        "the mixed loss is divided by the samples that got a partner",
    ),
    Bug(
        "mix-no-asymmetric-under-ace", "plugins", "avalanche_mixplugins/plugins/base.py",
        "            return self.default_asymmetric",
        "            return None",
        ("tests/plugins/test_asymmetric.py",),
        "under ER-ACE, current-current candidates are trained over every class",
    ),
    Bug(
        "gm-current-pairs-filtered-under-ace", "gradmix", "avalanche_mixplugins/pairing.py",
        "            positive = positive | exempt",
        "            positive = positive",
        ("tests/plugins/test_asymmetric.py",),
        "under ER-ACE, mixes of two current samples are still dropped by their score",
    ),
    Bug(
        "mix-buffer-pairs-keep-current-logits", "plugins", "avalanche_mixplugins/plugins/base.py",
        '                previous_only=mode == "both",',
        "                previous_only=False,",
        ("tests/plugins/test_asymmetric.py",),
        'asymmetric="both": buffer-buffer mixes still push the current logits down',
    ),
    Bug(
        "gm-fidelity-sign", "gradmix", "avalanche_mixplugins/pairing.py",
        "        smoothed = self.momentum * start + (1.0 - self.momentum) * mean",
        "        smoothed = self.momentum * start - (1.0 - self.momentum) * mean",
        ("tests/plugins/test_gradmix_method.py::test_pair_scores_predict_what_a_step_does_to_old_classes",),
        "the smoothing subtracts new evidence (scores stop tracking the measured effect)",
    ),
    Bug(
        "gm-kind-prior-ignored", "gradmix", "avalanche_mixplugins/pairing.py",
        "        use_prior = ~self.fresh & self.kind_seen[kinds]",
        "        use_prior = ~self.seen & self.kind_seen[kinds]",
        ("tests/ops/test_gradients.py::test_kind_prior_starts_new_pairs_from_their_kind",),
        "the kind prior only reaches pairs never scored (old pairs keep stale scores)",
    ),
    Bug(
        "gm-kinds-swapped", "gradmix", "avalanche_mixplugins/pairing.py",
        "        return cur.view(-1, 1) + cur.view(1, -1)",
        "        return 2 - cur.view(-1, 1) - cur.view(1, -1)",
        ("tests/ops/test_gradients.py::test_kind_prior_starts_new_pairs_from_their_kind",),
        "pair kinds counted from the previous classes (new-new pairs read old-old's score)",
    ),
    Bug(
        "gm-experience-not-restarted", "gradmix", "avalanche_mixplugins/plugins/gradmix.py",
        "        self.policy.start_experience()",
        "        pass",
        ("tests/plugins/test_gradmix_method.py::test_kind_prior_follows_the_experiences",),
        "pairs keep their evidence flag across experiences (the kind prior never applies again)",
    ),
    Bug(
        "gm-momentum-swapped", "gradmix", "avalanche_mixplugins/pairing.py",
        "        smoothed = self.momentum * start + (1.0 - self.momentum) * mean",
        "        smoothed = (1.0 - self.momentum) * start + self.momentum * mean",
        ("tests/ops/test_policy_state.py", "tests/ops/test_properties.py"),
        "the pair-score smoothing takes momentum of the new evidence, 1 - momentum of the old",
    ),
    Bug(
        "gm-refresh-inverted", "gradmix", "avalanche_mixplugins/pairing.py",
        "            explore = (u < self.refresh)",
        "            explore = (u >= self.refresh)",
        ("tests/ops/test_policy_state.py",),
        "the refresh fraction is inverted (most rows ignore the scores)",
    ),
    # ----------------------------------------------------- CalibrateMix / SSL
    Bug(
        "ssl-lambda-u-dropped", "ssl", "ssl_ext/extension_points.py",
        "        return SSLLoss(sup + self.lambda_u * unsup, sup, unsup, pseudo)",
        "        return SSLLoss(sup + unsup, sup, unsup, pseudo)",
        ("tests/semi_supervised/test_step_reference.py",),
        "the unlabeled loss weight lambda_u is dropped from the objective",
    ),
    Bug(
        "ssl-ema-before-step", "ssl", "ssl_ext/amp_ema.py",
        "        if self.scaler is not None:\n            self.scaler.step(self.optimizer)",
        "        if self.ema is not None:\n            self.ema.update(self.model)\n"
        "        if self.scaler is not None:\n            self.scaler.step(self.optimizer)",
        ("tests/semi_supervised/test_step_reference.py",),
        "the EMA teacher is updated before the optimiser step instead of after it",
        more=(
            (
                "ssl_ext/amp_ema.py",
                "            self._update_ema(ok if applied is None else None)",
                "            pass",
            ),
        ),
    ),
    Bug(
        "cm-one-lambda-for-both-groups", "ssl", "ssl_ext/calibratemix/mixed_batch.py",
        "    lam = sample_lambda(alpha, 2, generator=generator).to(device)[group]",
        "    lam = sample_lambda(alpha, 1, generator=generator).to(device)[group * 0]",
        (
            "tests/ops/test_calibratemix_groups.py",
            "tests/semi_supervised/test_step_reference.py",
        ),
        "CalibrateMix draws one mixing coefficient for both groups",
    ),
    Bug(
        "ckpt-python-random-not-restored", "checkpoint", "avalanche_mixplugins/checkpoint/rng.py",
        '    random.setstate((p["version"], tuple(int(v) for v in p["state"]), p["gauss"]))',
        "    del p",
        ("tests/checkpoint/test_rng_states.py",),
        "Python's random state is not restored on load",
    ),
]
# fmt: on


def _copy_tree(dest: Path) -> None:
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        elif src.exists():
            shutil.copy2(src, dest / name)


def _run_tests(where: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(where), str(where / "tests"), env.get("PYTHONPATH", "")]
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::DeprecationWarning",
        *tests,
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=where, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return proc.returncode, lines[-1] if lines else proc.stderr[-300:]


def check(bug: Bug, timeout: float) -> tuple[str, str]:
    """Apply ``bug`` to a fresh copy and run its tests: (verdict, pytest summary)."""
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        where = Path(tmp)
        _copy_tree(where)
        for file, old, new in ((bug.file, bug.old, bug.new), *bug.more):
            target = where / file
            text = target.read_text()
            if not old or text.count(old) != 1:
                return "STALE", f"{file}: patch text found {text.count(old)} times"
            target.write_text(text.replace(old, new))
        rc, summary = _run_tests(where, bug.tests, timeout)
    if rc == 0:
        return "SURVIVED", summary
    if rc == 1:
        return "caught", summary
    if rc == -1:
        return "caught (timeout)", summary
    return "ERROR", summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ids", nargs="*", help="bug ids (default: all)")
    parser.add_argument("--area", help="only the bugs of this area")
    parser.add_argument("--list", action="store_true", help="list the bugs and exit")
    parser.add_argument(
        "--baseline", action="store_true", help="first run the tests unpatched"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    bugs = [b for b in BUGS if (not args.ids or b.id in args.ids)]
    if args.area:
        bugs = [b for b in bugs if b.area == args.area]
    unknown = set(args.ids) - {b.id for b in BUGS}
    if unknown:
        parser.error(f"unknown bug ids: {sorted(unknown)}")
    if args.list:
        for b in bugs:
            print(f"{b.id:38s} {b.area:12s} {b.what}")
        return 0
    if args.baseline:
        tests = tuple(sorted({t for b in bugs for t in b.tests}))
        with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
            _copy_tree(Path(tmp))
            rc, summary = _run_tests(Path(tmp), tests, args.timeout)
        print(f"baseline: {'green' if rc == 0 else 'RED'} ({summary})")
        if rc != 0:
            return 2
    survived = 0
    print(f"{'bug':38s} {'verdict':10s} tests / pytest summary")
    for bug in bugs:
        start = time.monotonic()
        verdict, summary = check(bug, args.timeout)
        survived += verdict in ("SURVIVED", "STALE", "ERROR")
        tests = ", ".join(t.split("::")[-1] for t in bug.tests)
        print(
            f"{bug.id:38s} {verdict:10s} {tests} | {summary} "
            f"({time.monotonic() - start:.0f}s)",
            flush=True,
        )
    print(f"{len(bugs) - survived}/{len(bugs)} caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
