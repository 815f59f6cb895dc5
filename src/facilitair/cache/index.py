"""Nearest-neighbour search over the cache's vectors: the `VectorIndex` interface and its
in-memory implementation (the embedded default; `store.postgres.PgVectorIndex` is the shared
one for scale-out).

`MemoryVectorIndex` keeps one `PartitionIndex` per partition, loaded from the store at startup.

Rows live in one contiguous float32 matrix (grown by doubling), so a lookup is one
matrix-vector product; removal moves the last row into the hole. That product reads the whole
matrix (150 MB at 100,000 x 384), so large partitions first score a sketch — every vector
through a fixed random orthonormal projection to SKETCH_DIM dimensions, a third of the bytes —
and then score the best SHORTLIST candidates exactly. Similarities reported are always exact;
only a true best match ranked below SHORTLIST by the sketch could be missed, which at these
sizes the tests show does not happen for near-duplicates.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from facilitair.cache.entry import CacheEntry

SKETCH_FROM = 20_000  # below this many rows, search is exact end to end
SKETCH_DIM = 128
SHORTLIST = 256

Matrix = npt.NDArray[np.float32]


class Candidate(NamedTuple):
    similarity: float  # cosine, exact
    entry_id: str
    text: str


class VectorIndex(Protocol):
    """The cache's vectors, searched within one partition."""

    async def load(self, created_after: str) -> int:
        """Get ready to search (entries made before `created_after` are expired); return how
        many entries were loaded into this process."""
        ...

    async def add(self, entries: list[CacheEntry]) -> None:
        """Index entries just written to the store."""
        ...

    async def remove(self, entry_ids: list[str]) -> None:
        """Forget entries just deleted from the store."""
        ...

    async def search(self, partition: str, vector: Matrix, k: int) -> list[Candidate]:
        """Up to k candidates of the partition, most similar first."""
        ...

    async def count(self) -> int: ...


class EntrySource(Protocol):
    async def cache_entries(self, created_after: str) -> list[CacheEntry]: ...


class MemoryVectorIndex:
    """Every partition's vectors in this process, loaded from the store at startup."""

    def __init__(self, source: EntrySource) -> None:
        self.source = source
        self._partitions: dict[str, PartitionIndex] = {}
        self._where: dict[str, str] = {}  # entry_id → partition

    async def load(self, created_after: str) -> int:
        entries = [
            e
            for e in await self.source.cache_entries(created_after)
            if e.entry_id not in self._where
        ]
        by_partition: dict[str, list[CacheEntry]] = {}
        for entry in entries:
            by_partition.setdefault(entry.partition, []).append(entry)
        for partition, group in by_partition.items():
            index = self._partitions.get(partition)
            if index is None:
                index = self._partitions[partition] = PartitionIndex(len(group[0].vector))
            index.add_many(
                [e.entry_id for e in group],
                [e.task for e in group],
                np.stack([e.vector for e in group]),
            )
            self._where.update((e.entry_id, partition) for e in group)
        return len(entries)

    async def add(self, entries: list[CacheEntry]) -> None:
        for entry in entries:
            index = self._partitions.get(entry.partition)
            if index is None:
                index = self._partitions[entry.partition] = PartitionIndex(len(entry.vector))
            index.add(entry.entry_id, entry.task, entry.vector)
            self._where[entry.entry_id] = entry.partition

    async def remove(self, entry_ids: list[str]) -> None:
        for entry_id in entry_ids:
            partition = self._where.pop(entry_id, None)
            if partition is None:
                continue
            index = self._partitions[partition]
            index.remove(entry_id)
            if not len(index):
                del self._partitions[partition]

    async def search(self, partition: str, vector: Matrix, k: int) -> list[Candidate]:
        index = self._partitions.get(partition)
        if index is None:
            return []
        return [Candidate(*found) for found in index.search(vector, k)]

    async def count(self) -> int:
        return len(self._where)


def _projection(dimension: int) -> Matrix:
    rng = np.random.default_rng(20_241_124)  # fixed: sketches must agree across restarts
    q, _ = np.linalg.qr(rng.standard_normal((dimension, min(SKETCH_DIM, dimension))))
    return q.astype(np.float32)


class PartitionIndex:
    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._matrix: Matrix = np.zeros((16, dimension), dtype=np.float32)
        self._projection = _projection(dimension)
        self._sketch: Matrix = np.zeros((16, self._projection.shape[1]), dtype=np.float32)
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._rows

    def add(self, entry_id: str, text: str, vector: Matrix) -> None:
        if entry_id in self._rows:
            self.remove(entry_id)
        row = len(self._ids)
        if row == len(self._matrix):
            self._matrix = _grown(self._matrix)
            self._sketch = _grown(self._sketch)
        self._matrix[row] = vector
        self._sketch[row] = vector @ self._projection
        self._ids.append(entry_id)
        self._texts.append(text)
        self._rows[entry_id] = row

    def add_many(self, entry_ids: list[str], texts: list[str], vectors: Matrix) -> None:
        """Add rows in bulk (a restart loading its entries); ids must be new."""
        start, end = len(self._ids), len(self._ids) + len(entry_ids)
        while end > len(self._matrix):
            self._matrix = _grown(self._matrix)
            self._sketch = _grown(self._sketch)
        self._matrix[start:end] = vectors
        self._sketch[start:end] = vectors @ self._projection
        self._ids.extend(entry_ids)
        self._texts.extend(texts)
        self._rows.update((entry_id, start + n) for n, entry_id in enumerate(entry_ids))

    def remove(self, entry_id: str) -> bool:
        row = self._rows.pop(entry_id, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        if row != last:
            self._matrix[row] = self._matrix[last]
            self._sketch[row] = self._sketch[last]
            self._ids[row] = self._ids[last]
            self._texts[row] = self._texts[last]
            self._rows[self._ids[row]] = row
        self._ids.pop()
        self._texts.pop()
        return True

    def search(
        self, vector: Matrix, k: int = 5, min_similarity: float = -1.0
    ) -> list[tuple[float, str, str]]:
        """Up to k (similarity, entry_id, text), most similar first."""
        count = len(self._ids)
        if count == 0:
            return []
        if count < SKETCH_FROM:
            rows = np.arange(count)
            scores = self._matrix[:count] @ vector
        else:
            rough = self._sketch[:count] @ (vector @ self._projection)
            rows = np.argpartition(rough, -SHORTLIST)[-SHORTLIST:]
            scores = self._matrix[rows] @ vector
        top = _top(scores, k)
        return [
            (float(scores[i]), self._ids[rows[i]], self._texts[rows[i]])
            for i in top
            if scores[i] >= min_similarity
        ]


def _top(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.intp]:
    if len(scores) > k:
        top = np.argpartition(scores, -k)[-k:]
        return top[np.argsort(scores[top])[::-1]]
    return np.argsort(scores)[::-1]


def _grown(matrix: Matrix) -> Matrix:
    grown = np.zeros((2 * len(matrix), matrix.shape[1]), dtype=np.float32)
    grown[: len(matrix)] = matrix
    return grown
