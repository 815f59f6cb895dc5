"""Nearest-neighbour search over one partition's vectors, in memory.

Rows live in one contiguous float32 matrix (grown by doubling), so a lookup is one
matrix-vector product; removal moves the last row into the hole. That product reads the whole
matrix (150 MB at 100,000 x 384), so large partitions first score a sketch — every vector
through a fixed random orthonormal projection to SKETCH_DIM dimensions, a third of the bytes —
and then score the best SHORTLIST candidates exactly. Similarities reported are always exact;
only a true best match ranked below SHORTLIST by the sketch could be missed, which at these
sizes the tests show does not happen for near-duplicates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SKETCH_FROM = 20_000  # below this many rows, search is exact end to end
SKETCH_DIM = 128
SHORTLIST = 256

Matrix = npt.NDArray[np.float32]


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
