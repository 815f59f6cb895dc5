"""The council's arithmetic: read a member's ranking of anonymous responses, then aggregate the
rankings into a mean rank per member, an agreement figure and the most dissenting view.

Each member ranks the *others'* answers, so every ranking leaves one response out: a balanced
incomplete block design (t responses, each ranking holds k = t - 1 of them, each response is
ranked r times, each pair of responses appears together in lambda rankings). Agreement is
Kendall's W for that design (Durbin 1951),

    W = 12 * sum_j (R_j - r (k + 1) / 2)^2 / (lambda^2 * t * (t^2 - 1)),

R_j the rank sum of response j; with complete rankings (k = t, r = lambda = m) it is the
textbook coefficient of concordance. 1 means every ranking agrees, 0 none. The dissent is the
member whose ranking correlates least (Spearman) with the aggregate order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from facilitair.agents.parsing import json_objects

FINAL_RANKING = re.compile(r"FINAL\s+RANKING\s*:?(?P<body>.*)", re.IGNORECASE | re.DOTALL)
LABEL = re.compile(r"\bResponse\s+([A-Z])\b|^\s*(?:\d+[.)]\s*)?([A-Z])\b", re.MULTILINE)


@dataclass(frozen=True)
class Ranking:
    """One reviewer's ranking: labels best first, with a reason per label when given."""

    reviewer: str
    order: list[str]
    reasons: dict[str, str]


@dataclass(frozen=True)
class Standing:
    member: str
    model: str
    mean_rank: float
    votes: int


@dataclass(frozen=True)
class Consensus:
    ranking: list[Standing]
    agreement: float | None  # Kendall's W, 0..1; None with fewer than two rankings
    dissent: str | None  # the reviewer who agrees least with the others
    dissent_reasons: dict[str, str]

    def as_metrics(self) -> dict[str, Any]:
        return {
            "ranking": [
                {"member": s.member, "model": s.model, "mean_rank": round(s.mean_rank, 3)}
                for s in self.ranking
            ],
            "agreement": None if self.agreement is None else round(self.agreement, 3),
            "dissent": (
                {"member": self.dissent, "reasons": self.dissent_reasons}
                if self.dissent is not None
                else None
            ),
        }


def parse_ranking(reviewer: str, text: str, expected: list[str]) -> Ranking | None:
    """The reviewer's order of `expected` labels: a JSON `{"ranking": [{"response": "A",
    "reason": "…"}, …]}`, else a plain `FINAL RANKING:` list. None when neither names every
    expected label exactly once (a partial ranking would skew the mean ranks)."""
    wanted = set(expected)
    for value in json_objects(text):
        items = value.get("ranking") if isinstance(value, dict) else None
        if not isinstance(items, list):
            continue
        order: list[str] = []
        reasons: dict[str, str] = {}
        for item in items:
            label = _label(item.get("response") if isinstance(item, dict) else item)
            if label is None:
                continue
            order.append(label)
            if isinstance(item, dict) and isinstance(item.get("reason"), str):
                reasons[label] = item["reason"].strip()
        if len(order) == len(wanted) and set(order) == wanted:
            return Ranking(reviewer, order, reasons)
    match = FINAL_RANKING.search(text)
    if match is not None:
        order = []
        for found in LABEL.finditer(match.group("body")):
            label = found.group(1) or found.group(2)
            if label in wanted and label not in order:
                order.append(label)
        if set(order) == wanted:
            return Ranking(reviewer, order, {})
    return None


def _label(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    found = re.fullmatch(r"\s*(?:Response\s+)?([A-Za-z])\s*", value)
    return found.group(1).upper() if found else None


def aggregate(rankings: list[Ranking], models: dict[str, str]) -> Consensus:
    """`rankings` use members' names (labels already mapped back); `models` lists every member
    still in the council, with its model."""
    positions: dict[str, list[int]] = {member: [] for member in models}
    for ranking in rankings:
        for place, member in enumerate(ranking.order, 1):
            positions.setdefault(member, []).append(place)
    standings = [
        Standing(
            member=member,
            model=models.get(member, ""),
            mean_rank=sum(places) / len(places) if places else float(len(models)),
            votes=len(places),
        )
        for member, places in positions.items()
    ]
    standings.sort(key=lambda s: (s.mean_rank, -s.votes, s.member))
    agreement = _concordance(rankings, list(models))
    dissent = _dissent(rankings, [s.member for s in standings])
    reasons = next((r.reasons for r in rankings if r.reviewer == dissent), {})
    return Consensus(standings, agreement, dissent, reasons)


def _concordance(rankings: list[Ranking], items: list[str]) -> float | None:
    """Kendall's W for incomplete rankings of equal length; None when it is not defined
    (fewer than two rankings, or rankings of a single response)."""
    if len(rankings) < 2 or len(items) < 2:
        return None
    k = len(rankings[0].order)
    if k < 2 or any(len(r.order) != k for r in rankings):
        return None
    t = len(items)
    sums = dict.fromkeys(items, 0)
    counts = dict.fromkeys(items, 0)
    for ranking in rankings:
        for place, item in enumerate(ranking.order, 1):
            sums[item] = sums.get(item, 0) + place
            counts[item] = counts.get(item, 0) + 1
    pairs = list(combinations(items, 2))
    together = [
        sum(1 for r in rankings if first in r.order and second in r.order)
        for first, second in pairs
    ]
    lam = sum(together) / len(together)
    if lam == 0:
        return None
    spread = sum((sums[j] - counts[j] * (k + 1) / 2) ** 2 for j in items)
    return max(0.0, min(1.0, 12 * spread / (lam**2 * t * (t * t - 1))))


def _dissent(rankings: list[Ranking], aggregate_order: list[str]) -> str | None:
    scored: dict[str, float] = {}
    for ranking in rankings:
        rho = _spearman(ranking.order, aggregate_order)
        if rho is not None:
            scored[ranking.reviewer] = rho
    if len(scored) < 2 or min(scored.values()) == max(scored.values()):
        return None  # nobody stands out
    return min(scored, key=lambda reviewer: (scored[reviewer], reviewer))


def _spearman(first: list[str], second: list[str]) -> float | None:
    """Spearman's rho of two orders over the items both contain (re-ranked among themselves);
    None when they share fewer than two."""
    shared = [item for item in first if item in second]
    n = len(shared)
    if n < 2:
        return None
    rank_a = {item: i for i, item in enumerate(shared)}
    rank_b = {item: i for i, item in enumerate(x for x in second if x in rank_a)}
    d2 = sum((rank_a[item] - rank_b[item]) ** 2 for item in shared)
    return 1 - 6 * d2 / (n * (n * n - 1))
