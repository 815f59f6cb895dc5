"""The in-memory index: exact results, removal, and the sketch shortlist of large partitions."""

from __future__ import annotations

import numpy as np

from facilitair.cache.index import SKETCH_FROM, PartitionIndex


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_search_is_exact_and_survives_removals() -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng.standard_normal((100, 16)))
    index = PartitionIndex(16)
    for n, vector in enumerate(vectors):
        index.add(f"e{n}", f"text {n}", vector)
    for n in range(0, 100, 2):
        assert index.remove(f"e{n}")
    assert not index.remove("e0") and len(index) == 50

    query = vectors[7]
    found = index.search(query, k=3)
    expected = sorted(
        ((float(vectors[n] @ query), f"e{n}") for n in range(1, 100, 2)), reverse=True
    )
    assert [(round(s, 5), i) for s, i, _ in found] == [(round(s, 5), i) for s, i in expected[:3]]
    assert found[0][1:] == ("e7", "text 7")
    assert index.search(query, k=3, min_similarity=0.999) == [found[0]]


def test_large_partitions_find_the_same_best_match_as_exact_search() -> None:
    rng = np.random.default_rng(2)
    centres = unit(rng.standard_normal((500, 384)))
    count = SKETCH_FROM + 10_000
    vectors = unit(centres[rng.integers(0, 500, count)] + 0.08 * rng.standard_normal((count, 384)))
    index = PartitionIndex(384)
    for n, vector in enumerate(vectors):
        index.add(f"e{n}", "", vector)
    queries = unit(vectors[:200] + 0.03 * rng.standard_normal((200, 384)))
    for query in queries:
        exact = vectors @ query
        best = int(np.argmax(exact))
        similarity, entry_id, _ = index.search(query, k=1)[0]
        assert entry_id == f"e{best}"
        assert abs(similarity - float(exact[best])) < 1e-5  # reported similarity is exact


def test_bulk_loading_matches_adding_one_by_one() -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng.standard_normal((40, 8)))
    one, bulk = PartitionIndex(8), PartitionIndex(8)
    for n, vector in enumerate(vectors):
        one.add(f"e{n}", str(n), vector)
    bulk.add_many([f"e{n}" for n in range(40)], [str(n) for n in range(40)], vectors)
    assert "e39" in bulk and len(bulk) == 40
    assert bulk.search(vectors[3], k=4) == one.search(vectors[3], k=4)
