"""Experiment support for semi-supervised runs (not needed to train).

What ``examples/semi_supervised.py`` builds around a run, for any script
that runs :class:`~ssl_ext.strategy.SemiSupervisedStrategy` the same way:

* :mod:`.data`: the datasets by name and their views, the labeled /
  unlabeled / validation split of a training set;
* :mod:`.runs`: the algorithm and batch options, the USB recipe's
  learning-rate decay, CalibrateMix from the command line and its summary
  for a result file, the pseudo-label diagnostics of a run, the raw result
  line of a run (JSONL) and the temperature-scaling comparison.

The datasets themselves, the streams, timing and the options every script
shares come from :mod:`avalanche_mixplugins.experiments`.
"""

from ssl_ext.experiments.data import (
    FLIPPED_DATASETS,
    OFFLINE_DATASETS,
    SSL_DATASETS,
    VALIDATION_SEED,
    TrainingSplit,
    add_split_options,
    balanced_labels,
    load_ssl_dataset,
    split_from_args,
    split_training_set,
    views_for_dataset,
)
from ssl_ext.experiments.runs import (
    PseudoLabelMonitor,
    add_algorithm_option,
    add_calibratemix_options,
    add_record_options,
    add_ssl_batch_options,
    append_record,
    calibratemix_from_args,
    calibratemix_summary,
    cosine_schedule,
    eval_logits,
    run_record,
    temperature_scaling_results,
)

__all__ = [
    "FLIPPED_DATASETS",
    "OFFLINE_DATASETS",
    "SSL_DATASETS",
    "VALIDATION_SEED",
    "PseudoLabelMonitor",
    "TrainingSplit",
    "add_algorithm_option",
    "add_calibratemix_options",
    "add_record_options",
    "append_record",
    "add_split_options",
    "add_ssl_batch_options",
    "balanced_labels",
    "calibratemix_from_args",
    "calibratemix_summary",
    "cosine_schedule",
    "eval_logits",
    "load_ssl_dataset",
    "split_from_args",
    "run_record",
    "split_training_set",
    "temperature_scaling_results",
    "views_for_dataset",
]
