"""Configuration: `FAC_*` environment variables (Settings) and the TOML file of roles,
models and prices (AgentConfig). Both are read once, at startup, into the app container."""

from __future__ import annotations

import json
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from facilitair.sandbox import Limits


class NoProviderConfigured(RuntimeError):
    """No LLM can serve a role; the message says what to set."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "facilitair"


class Settings(BaseSettings):
    """Server settings. Every field is read from `FAC_<NAME>`; e.g. FAC_DATA_DIR."""

    model_config = SettingsConfigDict(env_prefix="FAC_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None  # postgresql://… (scale-out) or sqlite:///PATH
    database_pool_size: int = Field(default=20, ge=1)  # connections per process (PostgreSQL)
    redis_url: str | None = None  # redis://… : events, cancel signals and rate limits in Redis
    redis_pool_size: int = Field(default=64, ge=4)  # connections per process
    redis_prefix: str = "fac"  # every Redis key starts with it (several deployments, one Redis)
    redis_stream_keep: int = Field(default=1000, ge=10)  # events kept in Redis once persisted
    redis_finished_ttl_s: int = Field(default=300, ge=1)  # then finished streams replay from the db
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    config: Path | None = None

    lease_s: float = Field(default=30.0, ge=1)  # a dead process's tasks end within this time
    run_tasks: bool = True  # false: this API process only accepts, streams and cancels
    task_concurrency: int = Field(default=100, ge=1)  # tasks one process runs at once
    secret_key: SecretStr | None = None
    no_auth: bool = False
    rate_limit_per_minute: int = Field(default=60, ge=1)
    ticket_ttl_s: int = Field(default=60, ge=1)
    key_check_s: float = Field(default=2.0, gt=0)  # open streams of a revoked key end within this
    send_timeout_s: float = Field(default=30.0, gt=0)  # a client that stops reading is dropped
    stream_ttl_s: int = Field(default=24 * 3600, ge=1)
    heartbeat_s: float = Field(default=15.0, gt=0)
    sse_retry_ms: int = Field(default=3000, ge=0)
    web_dir: Path | None = None  # the built web UI; default: web/dist of a checkout, if built
    cors_origins: list[str] = Field(default_factory=list)  # e.g. ["http://localhost:5173"]
    max_body_bytes: int = Field(default=1_000_000, ge=1024)

    cache_enabled: bool = True
    cache_threshold: float = Field(default=0.72, gt=0, le=1)  # see bench/guard_tuning.py
    cache_granularity: Literal["basic", "medium", "advanced"] = "medium"
    cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    cache_max_entries: int = Field(default=100_000, ge=1)
    cache_verify: bool = False
    cache_verify_band: float = Field(default=0.05, ge=0, le=1)
    embeddings: Literal["local", "openai"] = "local"
    embeddings_model: str = "text-embedding-3-small"
    embeddings_base_url: str | None = None
    embeddings_model_path: Path | None = None  # an ONNX file instead of the packaged one
    embeddings_tokenizer_path: Path | None = None  # its tokenizer.json

    llm_max_retries: int = Field(default=3, ge=0)
    llm_retry_base_s: float = Field(default=0.5, ge=0)
    llm_first_token_timeout_s: float = Field(default=60.0, gt=0)
    llm_timeout_s: float = Field(default=600.0, gt=0)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "facilitair.sqlite3"


class RoleConfig(BaseModel):
    name: str
    model: str
    provider: str = "default"
    fallbacks: list[str] = Field(default_factory=list)
    temperature: float = 0.2
    max_tokens: int = 2000
    expected_tokens: int = 500
    system_prompt: str
    json_retry_prompt: str = ""
    revise_prompt: str = ""
    # The JSON schema the answer must follow (a file in facilitair/schemas/, without ".json"),
    # sent to providers that can enforce it; "" for free text.
    output_schema: str = ""


class ProviderConfig(BaseModel):
    base_url: str | None = None
    api_key_env: str | None = None
    # Send JSON schemas as `response_format`; unset: on for the hosts in structured_output_hosts.
    structured_output: bool | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)


class Price(BaseModel):
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class SequentialConfig(BaseModel):
    max_concurrent_coders: int = Field(default=3, ge=1)
    max_review_iterations: int = Field(default=2, ge=0)
    blocking_severities: list[str] = Field(default_factory=list)
    max_plan_chunks: int = Field(default=8, ge=1)


class CouncilMember(BaseModel):
    model: str
    provider: str = "default"
    temperature: float | None = None  # unset: the member role's
    seed: int | None = None


class CouncilConfig(BaseModel):
    members: list[CouncilMember] = Field(default_factory=list, min_length=2, max_length=7)
    chairman: str = ""  # a model; empty: the best-ranked member's
    chairman_provider: str = ""  # empty: the provider of the member whose model it is


class TesterConfig(BaseModel):
    # "auto": on when the roles run a real endpoint, off on the small offline model (its code
    # rarely runs, and the first run should stay quick).
    enabled: Literal["auto", "on", "off"] = "auto"
    limits: Limits = Field(default_factory=Limits)


class WorkflowConfig(BaseModel):
    sequential: SequentialConfig = Field(default_factory=SequentialConfig)
    tester: TesterConfig = Field(default_factory=TesterConfig)
    council: CouncilConfig = Field(
        default_factory=lambda: CouncilConfig(
            members=[CouncilMember(model="gpt-4o-mini"), CouncilMember(model="gpt-4o-mini")]
        )
    )


class EvalConfig(BaseModel):
    """`facilitair eval`: how the baseline arms sample, and the prompts every arm sees."""

    vote_samples: int = Field(default=5, ge=1)
    vote_temperature: float = Field(default=0.8, ge=0)
    repair_rounds: int = Field(default=2, ge=0)
    max_samples: int = Field(default=16, ge=1)  # calls per problem an arm may make to meet a budget
    solve_prompt: str = ""
    repair_prompt: str = ""  # {failures}: the examples' failing output
    task_template: str = ""  # {prompt}, {entry_point}: the task the workflows are given
    limits: Limits = Field(default_factory=lambda: Limits(cpu_s=10, wall_s=20.0))


class ShippedModel(BaseModel):
    """A GGUF file inside a registry package."""

    package: str  # the import name
    file: str
    assemble: bool = False  # shipped in parts that the package's assemble() joins
    license: str = ""
    chat_template: str = ""  # a llama.cpp built-in template, for files that carry none


class LocalModelConfig(BaseModel):
    model: str = "SmolLM2-135M-Instruct"
    model_path: str = ""
    chat_template: str = ""  # empty: the model file's own (or the shipped entry's)
    context_tokens: int = Field(default=8192, ge=256)
    parallel: int = Field(default=4, ge=1)
    threads: int = Field(default=2, ge=1)
    max_tokens: int = Field(default=384, ge=16)
    structured_max_tokens: int = Field(default=1024, ge=16)
    max_string_chars: int = Field(default=240, ge=16)
    max_items: int = Field(default=6, ge=1)
    stop: list[str] = Field(default_factory=list)
    sampling: dict[str, Any] = Field(default_factory=dict)
    shipped: dict[str, ShippedModel] = Field(default_factory=dict)


class AgentConfig(BaseModel):
    workflow: WorkflowConfig = Field(default_factory=WorkflowConfig)
    local: LocalModelConfig = Field(default_factory=LocalModelConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    roles: dict[str, RoleConfig]
    prices: dict[str, Price] = Field(default_factory=dict)
    speeds: dict[str, float] = Field(default_factory=dict)
    structured_output_hosts: list[str] = Field(default_factory=list)
    schemas: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def output_schema(self, role: RoleConfig) -> dict[str, Any] | None:
        return self.schemas[role.output_schema] if role.output_schema else None

    def uses_local_model(self, settings: Settings) -> bool:
        default = self.providers.get("default")
        return default is not None and not (default.base_url or settings.llm_base_url)

    def resolved(self, settings: Settings) -> AgentConfig:
        """This config as it will run: without an endpoint for the default provider, its roles
        run the local model (and have no fallbacks: there is nothing else to fall back to)."""
        if not self.uses_local_model(settings):
            return self
        roles = {
            key: role.model_copy(update={"model": self.local.model, "fallbacks": []})
            if role.provider == "default"
            else role
            for key, role in self.roles.items()
        }
        council = self.workflow.council
        members = [
            m.model_copy(update={"model": self.local.model}) if m.provider == "default" else m
            for m in council.members
        ]
        chairman = council.chairman
        if chairman and (council.chairman_provider or "default") == "default":
            chairman = self.local.model
        workflow = self.workflow.model_copy(
            update={
                "council": council.model_copy(update={"members": members, "chairman": chairman})
            }
        )
        return self.model_copy(update={"roles": roles, "workflow": workflow})

    def price_usd(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.prices.get(model)
        if price is None:
            return None
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000

    def tokens_per_second(self, model: str) -> float:
        return self.speeds.get(model, self.speeds.get("default", 60.0))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_agent_config(path: Path | None) -> AgentConfig:
    """The built-in defaults, overlaid with the user's TOML file when one is given."""
    text = resources.files("facilitair").joinpath("defaults.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    if path is not None:
        data = _merge(data, tomllib.loads(path.read_text(encoding="utf-8")))
    config = AgentConfig.model_validate(data)
    names = {role.output_schema for role in config.roles.values() if role.output_schema}
    schemas = resources.files("facilitair").joinpath("schemas")
    for name in sorted(names - set(config.schemas)):
        source = schemas.joinpath(f"{name}.json")
        if not source.is_file():
            raise ValueError(f"no schema named {name!r} in facilitair/schemas")
        config.schemas[name] = json.loads(source.read_text(encoding="utf-8"))
    return config
