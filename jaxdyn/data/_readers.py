"""Readers of the standard dataset file formats: IDX (MNIST, Fashion-MNIST), gzipped or not,
and CIFAR-10's binary batches.

Both validate headers and sizes before they allocate the data array, and neither ever
unpickles anything (CIFAR-10's pickled "python version" is refused).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import Any

import numpy as np

from jaxdyn._checks import fail
from jaxdyn.data._datasets import PathLike

# --------------------------------------------------------------------------- IDX files

# IDX type codes (third magic byte) -> big-endian numpy dtype, per the MNIST file-format spec.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# DEFLATE cannot compress better than about 1032:1, so a gzip file of C bytes holds at most
# ~1032 * C bytes; a header claiming more is corrupt and must not trigger an allocation.
_MAX_GZIP_RATIO = 1032
_CHUNK = 1 << 20


def _check_path(func: str, path: Any) -> str:
    """`os.fspath(path)`, with a TypeError naming `func(path)` for anything but a path."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        fail(
            f"{func}(path)",
            "a str or os.PathLike file path",
            f"{type(path).__name__} {path!r}",
            TypeError,
        )
    return os.fspath(path)


def _read_exactly(f: Any, n: int, what: str, path: PathLike) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise ValueError(f"{path}: truncated {what}: expected {n} bytes, got {got}.")
        got += k
    return buf


def _is_gzip(path: PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _gzip_size(path: PathLike, limit: int) -> tuple[int, bool]:
    """`(size, complete)`: the decompressed size of a (possibly multi-member) gzip file,
    counted in constant memory. Counting stops about a chunk past `limit` (`complete` is then
    False and `size` a lower bound), so a gzip bomb is never inflated in full."""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while total <= limit + _CHUNK:
                chunk = f.read(_CHUNK)
                if not chunk:
                    return total, True
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: unreadable gzip stream (corrupt or truncated?): {e}.") from e
    return total, False


def read_idx(path: PathLike) -> np.ndarray:
    """Reads an IDX file (the MNIST / Fashion-MNIST format), gzipped or not.

    Format: magic `00 00 <type> <ndim>`, then `ndim` big-endian uint32 sizes, then the data in
    big-endian row-major order. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64. Gzip is detected from the magic bytes `1f 8b`, not the name;
    multi-member gzip files (`cat a.gz b.gz`) are read as one stream, as `gunzip` does.
    The header is validated against the file size before the data array is allocated.

    Args:
      path: file path.

    Returns:
      The array, shape `(d_1, ..., d_ndim)`, in native byte order.

    Raises:
      TypeError: `path` is not a str or os.PathLike.
      FileNotFoundError: no file at `path`.
      ValueError: not an IDX file, or its size disagrees with its header.
    """
    path = _check_path("read_idx", path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`read_idx(path)`: no IDX file at {path!r}.")
    gz = _is_gzip(path)
    file_size = os.path.getsize(path)
    if gz:
        with open(path, "rb") as raw:
            raw.seek(max(file_size - 4, 0))
            # The gzip trailer stores the uncompressed size mod 2^32 of the LAST member only.
            isize = int.from_bytes(raw.read(4), "little")
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
        try:
            magic = bytes(_read_exactly(f, 4, "IDX header", path))
            if magic[0] != 0 or magic[1] != 0:
                raise ValueError(
                    f"{path}: not an IDX file: magic must start with bytes 00 00; "
                    f"got {magic.hex(' ')}."
                )
            if magic[2] not in _IDX_DTYPES:
                codes = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
                raise ValueError(
                    f"{path}: unknown IDX type code 0x{magic[2]:02X}; expected one of {codes}."
                )
            ndim = magic[3]
            if ndim == 0:
                raise ValueError(f"{path}: IDX header declares 0 dimensions; expected >= 1.")
            dims = tuple(
                int(d)
                for d in np.frombuffer(
                    bytes(_read_exactly(f, 4 * ndim, "IDX dimension list", path)), ">u4"
                )
            )
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: unreadable IDX header (corrupt gzip stream?): {e}.") from e
        dtype = np.dtype(_IDX_DTYPES[magic[2]])
        header = 4 + 4 * ndim
        payload = math.prod(dims) * dtype.itemsize
        expected = header + payload
        if gz:
            if expected > _MAX_GZIP_RATIO * file_size + 1024:
                raise ValueError(
                    f"{path}: IDX header declares dims {dims} ({expected} bytes), "
                    f"more than a {file_size}-byte gzip file can hold."
                )
            # A single-member file's trailer settles the size for free. Otherwise (a
            # multi-member file, or a wrong size) count the decompressed bytes before
            # allocating, so that the message can say how many there are.
            if isize != expected % 2**32:
                got, complete = _gzip_size(path, expected)
                if got != expected:
                    got = got if complete else f"at least {got}"
                    raise ValueError(
                        f"{path}: size mismatch for IDX dims {dims} of "
                        f"{dtype.name}: expected {expected} bytes ({header} header "
                        f"+ {payload} data) after decompression, got {got}."
                    )
        elif file_size != expected:
            raise ValueError(
                f"{path}: size mismatch for IDX dims {dims} of {dtype.name}: "
                f"expected {expected} bytes ({header} header + {payload} data), "
                f"got {file_size}."
            )
        try:
            buf = _read_exactly(f, payload, "IDX data", path)
            extra = f.read(1)
        except (EOFError, OSError, zlib.error) as e:
            raise ValueError(f"{path}: unreadable IDX data (corrupt gzip stream?): {e}.") from e
        if extra:
            raise ValueError(
                f"{path}: size mismatch for IDX dims {dims}: expected {expected} "
                f"bytes after decompression, got more."
            )
    return np.frombuffer(buf, dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_RECORD = 1 + 3 * 32 * 32
_PICKLE_NAMES = {
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
}
_PICKLE_REFUSAL = (
    "this is CIFAR-10's Python version (pickled batches, cifar-10-batches-py). jaxdyn never "
    "unpickles files, since unpickling can execute arbitrary code. Use the binary version "
    "instead: cifar-10-binary.tar.gz, which extracts to cifar-10-batches-bin/ holding "
    "data_batch_1.bin ... data_batch_5.bin and test_batch.bin."
)


def read_cifar10_binary(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 binary batch (`data_batch_<i>.bin` or `test_batch.bin`).

    Each record is 1 label byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue,
    each a row-major 32x32 plane). The file size (a positive multiple of 3073) and the labels
    (< 10) are checked before the image array is allocated. Pickled files are refused.

    Args:
      path: file path.

    Returns:
      `(images, labels)`: uint8 `(n, 32, 32, 3)` NHWC images and int64 `(n,)` labels.

    Raises:
      TypeError: `path` is not a str or os.PathLike.
      FileNotFoundError: no file at `path`.
      ValueError: a pickled file, a size that is not a multiple of 3073, or a label >= 10.
    """
    path = _check_path("read_cifar10_binary", path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`read_cifar10_binary(path)`: no CIFAR-10 binary file at {path!r}."
        )
    where = f"`read_cifar10_binary(path)`={path!r}"
    if os.path.basename(path) in _PICKLE_NAMES:
        raise ValueError(f"{where}: {_PICKLE_REFUSAL}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(2)
        # Pickle protocols 2+ start with the PROTO opcode 0x80 and the protocol number.
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            raise ValueError(f"{where} is a Python pickle: {_PICKLE_REFUSAL}")
        if size == 0 or size % _CIFAR_RECORD:
            raise ValueError(
                f"{where}: a CIFAR-10 binary file holds records of "
                f"{_CIFAR_RECORD} bytes; expected a positive multiple of "
                f"{_CIFAR_RECORD} bytes, got {size}."
            )
        n = size // _CIFAR_RECORD
        labels = np.empty(n, np.int64)
        for i in range(n):
            f.seek(i * _CIFAR_RECORD)
            labels[i] = f.read(1)[0]
        if labels.max() >= 10:
            bad = int(np.argmax(labels >= 10))
            raise ValueError(
                f"{where}: CIFAR-10 labels must be in [0, 10); record {bad} "
                f"has label {labels[bad]}."
            )
        f.seek(0)
        records = np.frombuffer(_read_exactly(f, size, "CIFAR-10 data", path), np.uint8)
    images = records.reshape(n, _CIFAR_RECORD)[:, 1:].reshape(n, 3, 32, 32)
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels
