"""JSON schemas for the plan and the verdict: sent as response_format to providers that enforce
them, never to the others, and dropped for good when a provider refuses them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from facilitair.llm.local import bounded
from fakes.openai_server import FakeOpenAI, RecordedRequest, Reply
from support import (
    ServerThread,
    collect,
    new_key,
    plan_reply,
    script_happy_path,
    start_task,
    verdict_reply,
)


def schema_of(request: RecordedRequest) -> dict[str, Any] | None:
    response_format = request.body.get("response_format")
    if response_format is None:
        return None
    assert response_format["type"] == "json_schema"
    spec = response_format["json_schema"]
    assert spec["strict"] is True
    return {"name": spec["name"], **spec["schema"]}


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "facilitair.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def run_one(server: ServerThread) -> list[Any]:
    key = new_key(server.settings, "alice")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        created = await start_task(client, key)
        return await collect(client, created["stream_id"], key)


async def test_plan_and_verdict_carry_their_schemas_on_a_known_host(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    # The fake listens on 127.0.0.1, one of the structured_output_hosts.
    script_happy_path(fake, chunks=2)
    events = await run_one(make_server())

    assert events[-1].event == "task_completed"
    plan = schema_of(fake.requests_for("architect")[0])
    verdict = schema_of(fake.requests_for("reviewer")[0])
    assert plan is not None and plan["name"] == "plan"
    assert plan["required"] == ["design", "chunks"]
    assert verdict is not None and verdict["name"] == "verdict"
    assert set(verdict["required"]) == {"issues", "score", "approved"}
    # Free-text roles are never constrained.
    assert all(schema_of(r) is None for r in fake.requests_for("coder"))
    assert all(schema_of(r) is None for r in fake.requests_for("documenter"))


async def test_a_provider_set_to_no_structured_output_gets_no_schema(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI, tmp_path: Path
) -> None:
    script_happy_path(fake, chunks=1)
    config = config_file(tmp_path, "[providers.default]\nstructured_output = false\n")
    events = await run_one(make_server(config=config))

    assert events[-1].event == "task_completed"
    assert all(schema_of(r) is None for r in fake.requests)


async def test_a_provider_that_refuses_schemas_is_asked_again_without_one(
    make_server: Callable[..., ServerThread], fake: FakeOpenAI
) -> None:
    script_happy_path(fake, chunks=1, architect=False)

    def refuse_schemas(default: Reply | str) -> Callable[[RecordedRequest], Reply | str]:
        def reply(request: RecordedRequest) -> Reply | str:
            if "response_format" in request.body:
                return Reply(status=400, text="response_format is not supported by this model")
            return default

        return reply

    fake.set_default("architect", refuse_schemas(plan_reply(("c1", "Write m1", []))))
    fake.set_default("reviewer", refuse_schemas(verdict_reply(True)))
    events = await run_one(make_server())

    assert events[-1].event == "task_completed", events[-1].data
    architect = fake.requests_for("architect")
    assert [r.status for r in architect] == [400, 200]
    assert schema_of(architect[1]) is None
    # Refused once, the schema is not sent again: the reviewer's first request has none.
    assert [r.status for r in fake.requests_for("reviewer")] == [200]
    assert schema_of(fake.requests_for("reviewer")[0]) is None
    kinds = [e.data["kind"] for e in events if e.event == "system_message"]
    assert "invalid_json" not in kinds and "fallback" not in kinds


def test_local_bounds_close_every_string_and_list() -> None:
    schema = json.loads(
        (Path(__file__).parents[1] / "src/facilitair/schemas/verdict.json").read_text()
    )
    out = bounded(schema, max_chars=100, max_items=3)
    issue = out["properties"]["issues"]["items"]["properties"]
    assert out["properties"]["issues"]["maxItems"] == 3
    assert issue["description"]["maxLength"] == 100
    assert issue["chunk_id"]["maxLength"] == 100
    assert "maxLength" not in issue["severity"]  # an enum is bounded already
    assert schema["properties"]["issues"].get("maxItems") is None  # the input is untouched


@pytest.mark.parametrize("name", ["plan", "verdict"])
def test_schemas_follow_openai_strict_mode(name: str) -> None:
    """Strict mode wants every object closed and every property required."""
    schema = json.loads(
        (Path(__file__).parents[1] / f"src/facilitair/schemas/{name}.json").read_text()
    )

    def objects(node: Any) -> list[dict[str, Any]]:
        found = []
        if isinstance(node, dict):
            if node.get("type") == "object":
                found.append(node)
            for value in node.values():
                found.extend(objects(value))
        elif isinstance(node, list):
            for value in node:
                found.extend(objects(value))
        return found

    for node in objects(schema):
        assert node["additionalProperties"] is False
        assert set(node["required"]) == set(node["properties"])
