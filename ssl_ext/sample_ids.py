"""Sample ids: which dataset sample each row of a batch is.

Per-sample tables (FlexMatch's selected labels, CalibrateMix's AUM and APM)
are keyed by sample id. Unlabeled samples are numbered by their index in the
unlabeled dataset (:class:`IndexedDataset`); labeled samples carry a
``sample_id`` data attribute (:data:`SAMPLE_ID`) of the Avalanche dataset
(:func:`add_sample_ids`), returned by ``__getitem__`` after the other fields,
so it survives ``subset``/``concat``/``train()`` and a replay buffer.
"""

from __future__ import annotations

from collections.abc import Sequence

from avalanche.benchmarks.utils import DataAttribute
from torch import Tensor
from torch.utils.data import Dataset

from avalanche_mixplugins.validation import check_unique_ids

SAMPLE_ID = "sample_id"
"""Name of the data attribute holding labeled sample ids."""


class IndexedDataset(Dataset):
    """Wrap an unlabeled dataset so items are ``(image, index)``.

    :param dataset: a map-style dataset whose items are image tensors or
        tuples/lists starting with the image (other fields are dropped).
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        item = self.dataset[index]
        if isinstance(item, tuple | list):
            item = item[0]
        if not isinstance(item, Tensor):
            raise TypeError(
                "unlabeled items must be image tensors (C, H, W) or tuples starting "
                f"with one; got {type(item).__name__} (add a ToImage/ToTensor transform)"
            )
        return item, index


def add_sample_ids(
    dataset, ids: Sequence[int] | Tensor | None = None, *, offset: int = 0
):
    """Return ``dataset`` (an ``AvalancheDataset``) with a ``sample_id`` attribute.

    The attribute is returned by ``__getitem__`` (``use_in_getitem=True``) and
    survives ``subset``/``concat``/``train()``, hence ReplayPlugin's buffer.

    :param dataset: an Avalanche dataset (e.g. ``experience.dataset``).
    :param ids: one integer per sample; default ``offset + arange(len)``.
    :param offset: first id when ``ids`` is not given.
    """
    if not hasattr(dataset, "update_data_attribute"):
        raise ValueError(
            f"add_sample_ids needs an AvalancheDataset, got {type(dataset).__name__} "
            "(wrap it with avalanche.benchmarks.utils.as_classification_dataset)"
        )
    n = len(dataset)
    if ids is None:
        ids = list(range(offset, offset + n))
    elif isinstance(ids, Tensor):
        ids = ids.tolist()
    else:
        ids = [int(i) for i in ids]
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} ids for a dataset of {n} samples")
    check_unique_ids(ids)
    return dataset.update_data_attribute(
        SAMPLE_ID, DataAttribute(ids, SAMPLE_ID, use_in_getitem=True)
    )


def sample_id_position(dataset) -> int | None:
    """Position (negative, from the end) of ``sample_id`` in the dataset's
    items, or ``None`` if the dataset has no such attribute.

    Reads ``AvalancheDataset._data_attributes``: Avalanche has no public list
    of the attributes appended to each item, in order.
    """
    attributes = getattr(dataset, "_data_attributes", None)
    if not attributes:
        return None
    names = [name for name, attr in attributes.items() if attr.use_in_getitem]
    if SAMPLE_ID not in names:
        return None
    return names.index(SAMPLE_ID) - len(names)


def set_experience_dataset(experience, dataset) -> None:
    """Replace an experience's dataset: a plain attribute in the legacy
    scenarios; in Avalanche 0.6's ``DatasetExperience`` a read-only property
    over the private ``_dataset``, which is written (there is no setter, and
    ReplayPlugin fills its buffer from ``experience.dataset``)."""
    try:
        experience.dataset = dataset
    except AttributeError:
        experience._dataset = dataset


__all__ = [
    "SAMPLE_ID",
    "IndexedDataset",
    "add_sample_ids",
    "sample_id_position",
    "set_experience_dataset",
]
