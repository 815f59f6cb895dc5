"""The council workflow through the real server and a scripted fake provider: members answer at
once, rank each other blind, a chairman writes the answer; failures, cancel and the cache."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from facilitair.agents.consensus import Ranking, aggregate, parse_ranking
from fakes.openai_server import FakeOpenAI, RecordedRequest, Reply
from support import (
    COUNCIL,
    ServerThread,
    answer_of,
    collect,
    iter_events,
    new_key,
    ranking_reply,
    script_council,
    start_task,
)


def streamed_member(request: RecordedRequest) -> Reply:
    text = answer_of(request.model)
    return Reply(text=text + "more text\n" * 20, delay_s=0.01)


@pytest.fixture
def council_server(make_server: Callable[..., ServerThread], tmp_path: Path) -> ServerThread:
    config = tmp_path / "council.toml"
    config.write_text(COUNCIL, encoding="utf-8")
    return make_server(config=config)


async def run_council(server: ServerThread, **body: Any) -> list[Any]:
    key = new_key(server.settings, "alice")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        created = await start_task(
            client, key, {"task": "Build a CLI", "workflow": "council", **body}
        )
        return await collect(client, created["stream_id"], key)


async def test_members_propose_rank_blind_and_the_chairman_answers(
    council_server: ServerThread, fake: FakeOpenAI
) -> None:
    script_council(fake, streamed_member)
    events = await run_council(council_server)

    assert events[-1].event == "task_completed", events[-1].data
    turns = [e.data for e in events if e.event == "chunk_started"]
    phases = [t["phase"] for t in turns]
    assert phases == ["propose"] * 3 + ["review"] * 3 + ["synthesize"]
    assert {t["member"] for t in turns[:6]} == {"Member 1", "Member 2", "Member 3"}
    assert turns[6]["member"] == "chair-model" and turns[6]["model"] == "chair-model"

    # Tokens of the members interleave on the one stream: a second member's first token comes
    # before the first member's last.
    firsts: dict[str, int] = {}
    lasts: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.event == "token_stream" and e.data.get("phase") == "propose":
            firsts.setdefault(e.data["member"], i)
            lasts[e.data["member"]] = i
    started = sorted(firsts, key=lambda member: firsts[member])
    assert len(started) == 3 and firsts[started[1]] < lasts[started[0]]

    # Judges saw the others' answers only, anonymised and without the models' names, and the
    # schema sent with each held it to exactly those labels.
    for request in fake.requests_for("judge"):
        user = request.messages[-1]["content"]
        assert user.count("## Response ") == 2
        assert "Member" not in user
        ranking = request.body["response_format"]["json_schema"]["schema"]["properties"]["ranking"]
        assert sorted(ranking["items"]["properties"]["response"]["enum"]) == ["A", "B"]
        assert ranking["minItems"] == ranking["maxItems"] == 2
    consensus = events[-1].data["metrics"]["consensus"]
    assert [r["model"] for r in consensus["ranking"]] == ["model-a", "model-b", "model-c"]
    assert consensus["ranking"][0]["mean_rank"] == 1.0
    assert consensus["agreement"] == 1.0
    assert consensus["dissent"] is None
    assert [a["path"] for a in events[-1].data["artifacts"]] == ["app.py"]
    assert "| 1 | Member 1 | model-a | 1.00 |" in events[-1].data["content"]
    chair = fake.requests_for("chair")[0].messages[-1]["content"]
    assert chair.index("model-a") < chair.index("model-b") < chair.index("model-c")


async def test_a_member_that_fails_is_dropped_and_an_unreadable_ranking_left_out(
    council_server: ServerThread, fake: FakeOpenAI
) -> None:
    def member(request: RecordedRequest) -> Reply | str:
        if request.model == "model-c":
            return Reply(text="half an answer\n" * 5, drop_after=3)  # breaks, every attempt
        return answer_of(request.model)

    def judge(request: RecordedRequest) -> str:
        if request.model == "model-b":
            return "I like them all."
        return ranking_reply(request)

    script_council(fake, member)
    fake.set_default("judge", judge)
    events = await run_council(council_server)

    assert events[-1].event == "task_completed", events[-1].data
    kinds = [e.data["kind"] for e in events if e.event == "system_message"]
    assert "member_dropped" in kinds and "invalid_ranking" in kinds
    reviews = [e.data for e in events if e.event == "chunk_started" and e.data["phase"] == "review"]
    assert len(reviews) == 2  # the dropped member does not judge
    consensus = events[-1].data["metrics"]["consensus"]
    assert [r["model"] for r in consensus["ranking"]] == ["model-b", "model-a"]  # one vote: A's
    assert consensus["agreement"] is None  # one readable ranking: nothing to agree with


async def test_fewer_than_two_answers_end_the_task_with_a_clear_error(
    council_server: ServerThread, fake: FakeOpenAI
) -> None:
    script_council(fake, lambda r: Reply(status=500) if r.model != "model-a" else answer_of("a"))
    events = await run_council(council_server)

    assert events[-1].event == "task_error"
    assert events[-1].data["code"] == "council_failed"
    assert "1 of 3" in events[-1].data["error"]


async def test_cancel_mid_propose_closes_every_members_request(
    council_server: ServerThread, fake: FakeOpenAI
) -> None:
    script_council(fake, lambda r: Reply(text="a line of the answer\n" * 2000, delay_s=0.05))
    key = new_key(council_server.settings, "alice")
    async with httpx.AsyncClient(base_url=council_server.base_url, timeout=30) as client:
        created = await start_task(client, key, {"task": "Build a CLI", "workflow": "council"})
        async for event in iter_events(client, created["stream_id"], key=key):
            if event.event == "token_stream":
                break
        assert fake.wait_for(lambda: len(fake.requests_for("member")) == 3)
        began = time.monotonic()
        cancelled = await client.post(
            f"/api/stream/{created['stream_id']}/cancel", headers={"X-API-Key": key}
        )
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", (
            cancelled.text
        )
        closed = await fake.wait_for_async(
            lambda: all(r.disconnected_at or r.finished_at for r in fake.requests_for("member")),
            timeout=5,
        )
        took = time.monotonic() - began
        tail = await collect(client, created["stream_id"], key, last_event_id=event.seq)

    assert closed and took < 1.0
    assert tail[-1].event == "task_cancelled", [
        e.data.get("message") for e in tail if e.event == "system_message"
    ]


async def test_a_council_is_cached_by_its_members_and_replays_the_same(
    council_server: ServerThread, fake: FakeOpenAI
) -> None:
    script_council(fake, lambda r: answer_of(r.model))
    first = await run_council(council_server)
    calls = len(fake.requests)
    again = await run_council(council_server)
    sequential = await run_council(council_server, workflow="sequential")

    assert len(fake.requests) > calls  # the sequential run is not served from the council's
    assert again[-1].data["metrics"]["cached"] is True
    assert again[-1].data["metrics"]["consensus"] == first[-1].data["metrics"]["consensus"]

    def shape(events: list[Any]) -> list[tuple[str, str, str, str]]:
        # The replay plays the turns one after another, in the order they finished.
        return [
            (e.data["phase"], e.data["member"], e.data["agent"], e.data["content"])
            for e in events
            if e.event == "chunk_completed"
        ]

    assert shape(again) == shape(first)
    assert sequential[-1].data["metrics"].get("cached") is not True


# --- the arithmetic ----------------------------------------------------------------------


def test_rankings_are_read_from_json_or_a_final_ranking_list() -> None:
    as_json = '{"ranking": [{"response": "Response B", "reason": "best"}, {"response": "A"}]}'
    assert parse_ranking("m", as_json, ["A", "B"]) == Ranking("m", ["B", "A"], {"B": "best"})
    plain = "A is fine but B is better.\nFINAL RANKING:\n1. Response B\n2. Response A\n"
    assert parse_ranking("m", plain, ["A", "B"]) == Ranking("m", ["B", "A"], {})
    assert parse_ranking("m", "FINAL RANKING: B", ["A", "B"]) is None  # partial
    assert parse_ranking("m", "no ranking here", ["A", "B"]) is None


def test_agreement_is_kendalls_w_for_rankings_that_leave_out_their_own_answer() -> None:
    models = {name: name.lower() for name in "ABCD"}
    unanimous = [Ranking(m, [x for x in "ABCD" if x != m], {}) for m in "ABCD"]
    assert aggregate(unanimous, models).agreement == 1.0
    cycle = [
        Ranking("A", ["B", "C"], {}),
        Ranking("B", ["C", "A"], {}),
        Ranking("C", ["A", "B"], {}),
    ]
    assert aggregate(cycle, {k: k for k in "ABC"}).agreement == 0.0
    split = [
        Ranking("A", ["B", "C", "D"], {}),
        Ranking("B", ["A", "C", "D"], {}),
        Ranking("C", ["A", "B", "D"], {}),
        Ranking("D", ["C", "B", "A"], {"C": "the only one that compiles"}),
    ]
    consensus = aggregate(split, models)
    assert consensus.agreement == pytest.approx(0.6)
    assert consensus.dissent == "D"
    assert consensus.dissent_reasons == {"C": "the only one that compiles"}
    assert [s.member for s in consensus.ranking] == ["A", "B", "C", "D"]


async def test_a_council_started_over_websocket_streams_the_same_events(
    council_server: ServerThread, fake: FakeOpenAI
) -> None:
    script_council(fake, streamed_member)
    key = new_key(council_server.settings, "alice")
    url = council_server.base_url.replace("http", "ws") + "/api/stream/ws"
    received: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers={"X-API-Key": key}) as ws:
        start = {"action": "start", "task": "Build a CLI", "workflow": "council"}
        await ws.send(json.dumps(start))
        created = json.loads(await ws.recv())
        assert created["event"] == "task_created", created
        while not received or received[-1]["event"] not in ("task_completed", "task_error"):
            received.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))

    assert received[-1]["event"] == "task_completed"
    phases = [m["data"]["phase"] for m in received if m["event"] == "chunk_started"]
    assert phases == ["propose"] * 3 + ["review"] * 3 + ["synthesize"]
    async with httpx.AsyncClient(base_url=council_server.base_url, timeout=30) as client:
        over_sse = await collect(client, created["data"]["stream_id"], key)
    assert [m["data"] for m in received] == [e.data for e in over_sse]


async def test_the_budget_counts_every_member(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI, tmp_path: Path
) -> None:
    config = tmp_path / "priced.toml"
    prices = "\n".join(f'"model-{x}" = {{ input = 1000.0, output = 1000.0 }}' for x in "abc")
    config.write_text(COUNCIL + f"\n[prices]\n{prices}\n", encoding="utf-8")
    server = make_server(config=config)
    script_council(fake, lambda request: Reply(text=answer_of(request.model), prompt_tokens=10))
    events = await run_council(server, budget_usd=0.05)

    # One answer costs a few cents: no single member reaches $0.05, the members together do.
    assert events[-1].event == "task_error"
    assert events[-1].data["code"] == "budget_exceeded"
    assert events[-1].data["details"]["spent_usd"] > 0.05


async def test_the_chairmans_files_are_tested_and_fixed_once_when_they_fail(
    council_server: ServerThread, fake: FakeOpenAI
) -> None:
    tests = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"

    def chair(request: RecordedRequest) -> str:
        fixing = "tests above failed" in request.messages[-1]["content"]
        body = "return a + b" if fixing else "return a - b"
        return (
            f"```python path=calc.py\ndef add(a, b):\n    {body}\n```\n\n"
            f"```python path=test_calc.py\n{tests}```\n"
        )

    script_council(fake, lambda request: answer_of(request.model))
    fake.set_default("chair", chair)
    events = await run_council(council_server)

    assert events[-1].event == "task_completed", events[-1].data
    runs = [e.data for e in events if e.event == "chunk_completed" and e.data["role"] == "tester"]
    assert [(r["tests"]["passed"], r["tests"]["failed"]) for r in runs] == [(0, 1), (1, 0)]
    chair_turns = [
        e.data for e in events if e.event == "chunk_started" and e.data["role"] == "chairman"
    ]
    assert [t["iteration"] for t in chair_turns] == [1, 2]
    assert "Passed: 1 passed, 0 failed" in events[-1].data["content"]
    assert events[-1].data["metrics"]["iterations"] == 2
