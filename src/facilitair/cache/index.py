"""Exact nearest-neighbour search over one partition's vectors, in memory.

Rows live in one contiguous float32 matrix (grown by doubling), so a lookup is a single
matrix-vector product; removal moves the last row into the hole."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class PartitionIndex:
    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._matrix = np.zeros((16, dimension), dtype=np.float32)
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._rows

    def add(self, entry_id: str, text: str, vector: npt.NDArray[np.float32]) -> None:
        if entry_id in self._rows:
            self.remove(entry_id)
        row = len(self._ids)
        if row == len(self._matrix):
            grown = np.zeros((2 * row, self.dimension), dtype=np.float32)
            grown[:row] = self._matrix
            self._matrix = grown
        self._matrix[row] = vector
        self._ids.append(entry_id)
        self._texts.append(text)
        self._rows[entry_id] = row

    def remove(self, entry_id: str) -> bool:
        row = self._rows.pop(entry_id, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        if row != last:
            self._matrix[row] = self._matrix[last]
            self._ids[row] = self._ids[last]
            self._texts[row] = self._texts[last]
            self._rows[self._ids[row]] = row
        self._ids.pop()
        self._texts.pop()
        return True

    def search(
        self, vector: npt.NDArray[np.float32], k: int = 5, min_similarity: float = -1.0
    ) -> list[tuple[float, str, str]]:
        """Up to k (similarity, entry_id, text), most similar first."""
        count = len(self._ids)
        if count == 0:
            return []
        scores = self._matrix[:count] @ vector
        if count > k:
            top = np.argpartition(scores, -k)[-k:]
            top = top[np.argsort(scores[top])[::-1]]
        else:
            top = np.argsort(scores)[::-1]
        return [
            (float(scores[i]), self._ids[i], self._texts[i])
            for i in top
            if scores[i] >= min_similarity
        ]
