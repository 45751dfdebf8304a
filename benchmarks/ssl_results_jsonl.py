"""Result files of ``examples/semi_supervised.py`` (one JSON per run) as JSON lines.

The example writes its line itself with ``--results-jsonl FILE``; this
converts the per-run JSON files of runs made without it, with the commit of
the code that made them (``--git-commit``, since the runs may have come from
a checkout that is gone)::

    python benchmarks/ssl_results_jsonl.py RUNS/*.json --git-commit SHA \\
        --output docs/results/ssl/select.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssl_ext.experiments.runs import append_record, run_record


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("results", nargs="+", help="JSON result files")
    p.add_argument("--git-commit", required=True, help="commit of the code that ran")
    p.add_argument("--output", required=True, help="JSONL file to append to")
    args = p.parse_args(argv)
    n = 0
    for path in sorted(args.results):
        result = json.loads(Path(path).read_text())
        if result.get("kind") != "semi_supervised":
            continue
        git = {"commit": args.git_commit, "dirty": False}
        append_record(args.output, run_record(result, git=git))
        n += 1
    print(f"{n} lines -> {args.output}")


if __name__ == "__main__":
    main()
