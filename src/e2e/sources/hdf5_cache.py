"""The HDF5 chunk cache of a chunked dataset, sized so that reading it in consecutive row batches decompresses
each chunk once; and the one line that says how a dataset is stored.

The real e/gamma files are gzip-compressed chunks (115 and 123 MiB for 2.04 GB of pixels). A chunk that spans
the rows of two batches is decompressed by the first; whether the second finds it still decompressed depends
on the chunk cache, one per open dataset, which by default holds 1 MiB (8 MiB since HDF5 2.0).
"""

from __future__ import annotations

import math

# beyond this the chunks of a row do not all fit: reading still works, and the line logged on opening says so
MAX_CHUNK_CACHE = 2**30


def chunk_cache(shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int) -> tuple[int, int]:
    """HDF5 chunk-cache bytes and hash slots that hold one row of chunks: every chunk that a given row touches.

    Rows are read in consecutive batches; a chunk that spans the rows of two batches is then still cached when
    the second batch reads it, so no chunk is decompressed twice. On a full-size e/gamma file in the chunks h5py
    picks, (7782, 2, 2, 1), a row of chunks is 512 chunks of 125 kB: with HDF5's default cache (8 MiB) each
    chunk was decompressed 2.88 times and reading took 79 s; with this one (61 MiB) 1.01 times and 40 s
    (bench/results/hdf5_cache.md)."""
    return min(_row_of_chunks(shape, chunks) * math.prod(chunks) * itemsize, MAX_CHUNK_CACHE), _next_prime(
        100 * _row_of_chunks(shape, chunks)
    )


def _row_of_chunks(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """How many chunks hold the pixels of one row."""
    return math.prod(-(-s // c) for s, c in zip(shape[1:], chunks[1:]))


def _next_prime(n: int) -> int:
    """HDF5 advises a prime number of hash slots, about 100 times the chunks that fit in the cache."""
    n |= 1
    while any(n % d == 0 for d in range(3, math.isqrt(n) + 1, 2)):
        n += 2
    return n


def with_chunk_cache(file, name: str):
    """Dataset `name` of the open h5py `file` with its own chunk cache, sized by chunk_cache."""
    import h5py

    layout = _chunk_layout(file, name)
    if layout is None:
        return file[name]
    nbytes, nslots = chunk_cache(*layout)
    access = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    access.set_chunk_cache(nslots, nbytes, 1.0)  # w0 = 1: a chunk read through is the first to go
    return h5py.Dataset(h5py.h5d.open(file.id, name.encode(), access))


def _chunk_layout(file, name: str) -> tuple[tuple[int, ...], tuple[int, ...], int] | None:
    """(shape, chunk shape, item size) of a chunked dataset, None if contiguous. The dataset is closed again on
    return: HDF5 shares one chunk cache among all open handles of a dataset, set by the first to open it."""
    ds = file[name]
    return (ds.shape, ds.chunks, ds.dtype.itemsize) if ds.chunks else None


def storage(ds) -> str:
    """How an HDF5 dataset is stored, for the line logged on opening its file."""
    name, compression = ds.name.lstrip("/"), ds.compression or "uncompressed"
    if ds.chunks is None:
        return f"{name} contiguous, {compression}"
    level = f" level {ds.compression_opts}" if ds.compression_opts is not None else ""
    cached = ds.id.get_access_plist().get_chunk_cache()[1]
    short = cached < _row_of_chunks(ds.shape, ds.chunks) * math.prod(ds.chunks) * ds.dtype.itemsize
    return (
        f"{name} {compression}{level}{' with shuffle' if ds.shuffle else ''}, chunks {ds.chunks}, "
        f"chunk cache {cached / 2**20:.1f} MiB"
        + (" (less than a row of chunks: some are decompressed more than once)" if short else "")
    )
