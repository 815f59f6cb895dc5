"""Split the hand-written pairs (raw/*.jsonl) into a tuning half and a frozen test half, written
to src/facilitair/cache/pairs/ (shipped with the package: `facilitair cache eval` reads them).

    python3 data/cache-pairs/split.py

Stratified: within each (domain, category) group, pairs ordered by a hash of their id go
alternately to tune and test, so both halves hold every domain and category. Thresholds and
rules are tuned on coding-tune.jsonl only; coding-test.jsonl is for reporting.

src/facilitair/cache/pairs/coding-fresh.jsonl is not made here: 160 pairs (80 should hit, 80
traps, in 16 categories) written later by another author who was given only the categories and
never saw the guard or these pairs. Nothing is tuned on it either. coding-hard.jsonl (200 pairs
by a third author) holds the hardest case: traps that are free rewordings *and* change one
thing; it was used for tuning, like the tuning half.
"""

import hashlib
import json
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE.parents[1] / "src" / "facilitair" / "cache" / "pairs"


def main() -> None:
    groups: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for path in sorted((HERE / "raw").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            pair = json.loads(line)
            domain = str(pair["id"]).split("-")[0]
            groups[(domain, str(pair["category"]))].append(pair)
    halves: dict[str, list[dict[str, object]]] = {"tune": [], "test": []}
    turn = 0  # carried across groups, so odd-sized groups do not all favour one half
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda p: hashlib.sha1(str(p["id"]).encode()).hexdigest())
        for pair in ordered:
            halves["tune" if turn % 2 == 0 else "test"].append(pair)
            turn += 1
    for name, pairs in halves.items():
        pairs.sort(key=lambda p: str(p["id"]))
        text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
        (OUT / f"coding-{name}.jsonl").write_text(text, encoding="utf-8")
        hits = sum(bool(p["same_answer"]) for p in pairs)
        print(f"coding-{name}.jsonl: {len(pairs)} pairs, {hits} should hit")


if __name__ == "__main__":
    main()
