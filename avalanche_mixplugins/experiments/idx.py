"""Reading IDX files, the format of the MNIST and Fashion-MNIST distributions.

An IDX file is a big-endian header (two zero bytes, an element-type code,
the number of dimensions, then one 32-bit size per dimension) followed by
the raw elements. Only unsigned bytes (type ``0x08``, images and labels)
are read; the file may be gzip-compressed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

IDX_UBYTE = 0x08
"""IDX element-type code of unsigned bytes."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzip-compressed).

    :param path: the file.
    :return: a read-only ``uint8`` array of the shape the header announces.
    :raises ValueError: if the file is not an unsigned-byte IDX file or its
        size does not match its header.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != IDX_UBYTE:
        raise ValueError(
            f"{path}: unsupported IDX element type 0x{dtype_code:02x} "
            "(only unsigned bytes, 0x08, are supported)"
        )
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_size:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(
        int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
    )
    expected = int(np.prod(shape))
    if len(data) - header_size != expected:
        raise ValueError(
            f"{path}: IDX header announces shape {shape} ({expected} bytes) but "
            f"the file holds {len(data) - header_size} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


__all__ = ["IDX_UBYTE", "read_idx"]
