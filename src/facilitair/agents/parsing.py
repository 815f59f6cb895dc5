"""Reading structure out of model text: the JSON plan, the review verdict, the files."""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from facilitair.protocol.events import Artifact

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
PATH_IN_INFO = re.compile(r"(?:path|file|filename|title)\s*[=:]\s*[\"']?([^\s\"']+)")
PATH_TOKEN = re.compile(r"^[\w.\-/]+\.[\w]+$|^(?:Dockerfile|Makefile|Procfile)$")
PATH_IN_LINE = re.compile(r"`([^`\s]+)`|(?:file|path)\s*:\s*([^\s*`]+)", re.IGNORECASE)
FIRST_LINE_COMMENT = re.compile(
    r"^\s*(?:#|//|--|/\*|<!--)\s*(?:file:\s*)?([\w.\-/]+\.\w+)\s*(?:\*/|-->)?\s*$", re.IGNORECASE
)

LANGUAGE_BY_EXTENSION = {
    "py": "python",
    "js": "javascript",
    "ts": "typescript",
    "tsx": "tsx",
    "jsx": "jsx",
    "go": "go",
    "rs": "rust",
    "java": "java",
    "rb": "ruby",
    "php": "php",
    "cs": "csharp",
    "sql": "sql",
    "sh": "bash",
    "md": "markdown",
    "json": "json",
    "yaml": "yaml",
    "yml": "yaml",
    "toml": "toml",
    "html": "html",
    "css": "css",
    "txt": "text",
}


def _ints_as_text(value: Any) -> Any:
    """Models often number chunks 1, 2, 3: accept them as ids "1", "2", "3"."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) else v for v in value]
    return str(value) if isinstance(value, int) else value


MAX_CHUNK_ID = 40


class PlanChunk(BaseModel):
    id: str = Field(min_length=1, max_length=MAX_CHUNK_ID)
    description: str = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)

    _ids_as_text = field_validator("id", "depends_on", mode="before")(_ints_as_text)


class ReviewIssue(BaseModel):
    severity: str = "major"
    chunk_id: str | None = None
    description: str = ""

    @field_validator("severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    _chunk_id_as_text = field_validator("chunk_id", mode="before")(_ints_as_text)


class Verdict(BaseModel):
    approved: bool
    score: float | None = None
    issues: list[ReviewIssue] = Field(default_factory=list)


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(info string, body, start offset) of every closed fenced block."""
    return [(m.group("info").strip(), m.group("body"), m.start()) for m in FENCE.finditer(text)]


def json_objects(text: str) -> list[Any]:
    """JSON values found in `text`: fenced blocks first, then the outermost {...} span."""
    candidates = [body for info, body, _ in fenced_blocks(text) if info in ("", "json", "JSON")]
    # The outermost span: {...}, or [...] when the text opens with a bare array.
    brace, bracket = text.find("{"), text.find("[")
    start, closing = (bracket, "]") if -1 < bracket < brace or brace == -1 else (brace, "}")
    end = text.rfind(closing)
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    found = []
    for candidate in candidates:
        try:
            found.append(json.loads(candidate))
        except ValueError:
            continue
    return found


def parse_plan(text: str, max_chunks: int) -> list[PlanChunk] | None:
    """The architect's chunk plan, or None when the text holds no usable one."""
    for value in json_objects(text):
        items = value.get("chunks") if isinstance(value, dict) else value
        if not isinstance(items, list) or not items:
            continue
        try:
            chunks = [PlanChunk.model_validate(item) for item in _with_ids(items[:max_chunks])]
        except ValidationError:
            continue
        known = {chunk.id for chunk in chunks}
        for chunk in chunks:
            # Unknown or self dependencies are dropped rather than failing the plan.
            chunk.depends_on = [d for d in chunk.depends_on if d in known and d != chunk.id]
        if _has_cycle(chunks):
            continue
        return chunks
    return None


def _with_ids(items: list[Any]) -> list[Any]:
    """When ids are missing, blank, too long or repeated, the chunks are numbered c1, c2, … by
    position; their dependencies are then ambiguous and dropped."""
    ids = [str(item.get("id", "")).strip() if isinstance(item, dict) else "" for item in items]
    usable = all(0 < len(i) <= MAX_CHUNK_ID for i in ids)
    if usable and len(set(ids)) == len(ids):
        return items
    return [
        {**item, "id": f"c{n}", "depends_on": []} if isinstance(item, dict) else item
        for n, item in enumerate(items, 1)
    ]


def plan_design(text: str) -> str:
    """The design the coders read: the plan's `design` field when the Architect answered in
    JSON, else the whole answer."""
    for value in json_objects(text):
        if isinstance(value, dict) and isinstance(value.get("design"), str):
            return str(value["design"]).strip() or text
    return text


def _has_cycle(chunks: list[PlanChunk]) -> bool:
    deps = {chunk.id: set(chunk.depends_on) for chunk in chunks}
    done: set[str] = set()
    while deps:
        ready = [cid for cid, needs in deps.items() if needs <= done]
        if not ready:
            return True
        for cid in ready:
            done.add(cid)
            del deps[cid]
    return False


def parse_verdict(text: str) -> Verdict | None:
    for value in json_objects(text):
        if not isinstance(value, dict) or "approved" not in value:
            continue
        try:
            return Verdict.model_validate(value)
        except ValidationError:
            continue
    return None


def safe_relative_path(path: str) -> str | None:
    """A normalised relative path, or None for absolute paths and ones that climb out."""
    path = path.strip().strip("`'\"").replace("\\", "/")
    if not path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return None
    normal = posixpath.normpath(path)
    if normal == "." or normal.startswith("../") or normal == "..":
        return None
    return normal


def extract_artifacts(text: str) -> list[Artifact]:
    """Files written as fenced blocks whose path is in the info string (```python path=a.py or
    ```python a.py), on the line just before the fence (`a.py`, File: a.py), or in a first-line
    comment (# a.py). A later block for the same path replaces an earlier one."""
    files: dict[str, Artifact] = {}
    for info, body, start in fenced_blocks(text):
        words = info.split()
        info_path = _path_from_info(info, words)
        head = words[0] if words else ""
        language = "" if "=" in head or head == info_path else head.lower()
        path = info_path or _path_from_previous_line(text, start)
        if path is None:
            first, _, _ = body.partition("\n")
            match = FIRST_LINE_COMMENT.match(first)
            if match:
                path = match.group(1)
        safe = safe_relative_path(path) if path else None
        if safe is None:
            continue
        if not language:
            language = LANGUAGE_BY_EXTENSION.get(safe.rsplit(".", 1)[-1].lower(), "text")
        files[safe] = Artifact(path=safe, language=language, content=body)
    return list(files.values())


def _path_from_info(info: str, words: list[str]) -> str | None:
    match = PATH_IN_INFO.search(info)
    if match:
        return match.group(1)
    for word in words:
        if PATH_TOKEN.match(word) and ("." in word or "/" in word or word[0].isupper()):
            return word
    return None


def _path_from_previous_line(text: str, fence_start: int) -> str | None:
    before = text[:fence_start].rstrip("\n").rsplit("\n", 1)[-1].strip()
    if not before or len(before) > 200:
        return None
    for match in PATH_IN_LINE.finditer(before):
        candidate = (match.group(1) or match.group(2) or "").rstrip(":")
        if PATH_TOKEN.match(candidate):
            return candidate
    return None
