# ruff: noqa: E501  (the mutations are exact source snippets)
"""Break CalibrateMix on purpose, one bug at a time, and list the tests that fail.

Each mutation replaces one exact snippet in a copy of the repository (in a
temporary directory) and runs ``tests/ops/test_calibratemix_maths.py``,
``tests/semi_supervised/test_calibratemix_plugin.py`` and
``tests/ops/test_ssl_algorithms.py`` there. The table of ``docs/calibratemix.md``
("Tests that catch a wrong method") comes from this script::

    python benchmarks/ssl_mutation_check.py          # every mutation
    python benchmarks/ssl_mutation_check.py 0 4      # mutations 0 and 4
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

SRC = pathlib.Path(__file__).resolve().parents[1]
MUT = [
    (
        "random split (ignores AUM/APM)",
        "ssl_ext/calibratemix/mixed_batch.py",
        "    lab_easy, lab_hard = median_split(labeled_scores)\n",
        "    labeled_scores = torch.rand_like(labeled_scores)\n    unlabeled_scores = torch.rand_like(unlabeled_scores)\n    lab_easy, lab_hard = median_split(labeled_scores)\n",
    ),
    (
        "labeled easy/hard inverted",
        "ssl_ext/calibratemix/mixed_batch.py",
        "    lab_easy, lab_hard = median_split(labeled_scores)\n",
        "    lab_hard, lab_easy = median_split(labeled_scores)\n",
    ),
    (
        "unlabeled easy/hard inverted",
        "ssl_ext/calibratemix/mixed_batch.py",
        "    ulb_easy, ulb_hard = median_split_masks(",
        "    ulb_hard, ulb_easy = median_split_masks(",
    ),
    (
        "pairing picks the most similar",
        "ssl_ext/calibratemix/pairing.py",
        "masked = torch.where(allowed, similarity, torch.inf)",
        "masked = torch.where(allowed, -similarity, torch.inf)",
    ),
    (
        "FlexMatch thresholds updated before the mask",
        "ssl_ext/algorithms/flexmatch.py",
        "            self.classwise_acc = torch.where(refresh, acc, self.classwise_acc)\n        return mask",
        "            self.classwise_acc = torch.where(refresh, acc, self.classwise_acc)\n        mask = (max_probs >= self.class_thresholds()[targets]).float()\n        return mask",
    ),
    (
        "SoftMatch pseudo-label = aligned arg-max",
        "ssl_ext/algorithms/base.py",
        "        targets = logits.argmax(dim=-1)\n",
        "        targets = probs.argmax(dim=-1)\n",
    ),
    (
        "split reads APM before this step's update (stale)",
        "ssl_ext/calibratemix_plugin.py",
        "        self.apm.update(weak, ulb_index)\n        if not self._batch_ok(strategy):\n            return\n        aum, apm, decided = self.split_scores(strategy)\n",
        "        if not self._batch_ok(strategy):\n            return\n        aum, apm, decided = self.split_scores(strategy)\n        self.apm.update(weak, ulb_index)\n",
    ),
    (
        "undecided samples enter the split",
        "ssl_ext/calibratemix/mixed_batch.py",
        "        None if unlabeled_decided is None else unlabeled_decided.to(device),\n",
        "        None,\n",
    ),
    (
        "APM read at the largest class, not the pseudo-label",
        "ssl_ext/calibratemix_plugin.py",
        "            self.apm.value(index, pseudo),\n",
        "            self.apm.best(index)[0],\n",
    ),
]
TESTS = [
    "tests/ops/test_calibratemix_maths.py",
    "tests/semi_supervised/test_calibratemix_plugin.py",
    "tests/ops/test_ssl_algorithms.py",
]
only = sys.argv[1:]
for i, (name, path, old, new) in enumerate(MUT):
    if only and str(i) not in only:
        continue
    dst = pathlib.Path(tempfile.mkdtemp()) / "repo"
    shutil.copytree(SRC, dst, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    f = dst / path
    text = f.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"mutation {name!r}: the snippet is not in {path} once")
    f.write_text(text.replace(old, new))
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=dst,
        env={**os.environ, "PYTHONPATH": str(dst)},
        capture_output=True,
        text=True,
    )
    failed = sorted(set(re.findall(r"FAILED (\S+)", r.stdout)))
    print(f"## {name}: {len(failed)} failing")
    for t in failed:
        print("   ", t)
    sys.stdout.flush()
    shutil.rmtree(dst.parent)
