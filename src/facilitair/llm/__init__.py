"""LLM backends behind one interface (`LLMProvider`), chosen per role by configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from facilitair.config import AgentConfig, NoProviderConfigured, Settings
from facilitair.llm.base import LLMProvider, ProviderError
from facilitair.llm.local import LocalModelProvider, runtime_available, shipped_model_path
from facilitair.llm.openai_compat import OpenAICompatibleProvider
from facilitair.llm.retry import RetryingProvider, RetryPolicy

__all__ = [
    "Endpoint",
    "NoProviderConfigured",
    "ProviderSet",
    "build_providers",
    "local_model_path",
    "provider_endpoint",
]


class ProviderSet:
    """The configured providers by name; each role names one (`provider = "…"`)."""

    def __init__(self, providers: dict[str, LLMProvider]) -> None:
        self._providers = providers

    def get(self, name: str) -> LLMProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise ProviderError(f"no LLM provider named {name!r} is configured") from None

    def items(self) -> list[tuple[str, LLMProvider]]:
        return list(self._providers.items())

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def build_providers(settings: Settings, config: AgentConfig) -> ProviderSet:
    """One provider per [providers.NAME] entry; raises NoProviderConfigured with a sentence
    that says what to set when one cannot work."""
    policy = RetryPolicy(
        max_retries=settings.llm_max_retries,
        base_delay_s=settings.llm_retry_base_s,
        first_token_timeout_s=settings.llm_first_token_timeout_s,
        total_timeout_s=settings.llm_timeout_s,
    )
    providers: dict[str, LLMProvider] = {}
    for name, entry in config.providers.items():
        endpoint = provider_endpoint(name, settings, config)
        if endpoint.local:
            providers[name] = RetryingProvider(_local_provider(settings, config), policy)
            continue
        if endpoint.base_url is None:
            raise NoProviderConfigured(
                f"LLM provider {name!r} has no base_url in the FAC_CONFIG file"
            )
        api_key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
        if name == "default" and api_key is None and settings.llm_api_key is not None:
            api_key = settings.llm_api_key.get_secret_value()
        inner = OpenAICompatibleProvider(
            endpoint.base_url,
            api_key,
            timeout_s=settings.llm_timeout_s,
            structured_output=endpoint.structured_output,
            extra_body=entry.extra_body,
        )
        providers[name] = RetryingProvider(inner, policy)
    missing = {role.provider for role in config.roles.values()} - set(providers)
    if missing:
        raise NoProviderConfigured(f"roles name unknown provider(s): {', '.join(sorted(missing))}")
    return ProviderSet(providers)


@dataclass(frozen=True)
class Endpoint:
    """Where a provider's requests go. `local`: the embedded model (no base_url)."""

    base_url: str | None
    local: bool
    structured_output: bool


def provider_endpoint(name: str, settings: Settings, config: AgentConfig) -> Endpoint:
    entry = config.providers[name]
    base_url = entry.base_url
    if name == "default":
        base_url = base_url or settings.llm_base_url
        if base_url is None:
            return Endpoint(None, local=True, structured_output=True)
    structured = entry.structured_output
    if structured is None:
        host = urlsplit(base_url).hostname if base_url else None
        structured = host in config.structured_output_hosts
    return Endpoint(base_url, local=False, structured_output=structured)


def local_model_path(settings: Settings, config: AgentConfig) -> Path | None:
    """The GGUF file the local provider runs: `model_path`, else the shipped file of `model`."""
    local = config.local
    if local.model_path:
        return Path(local.model_path)
    shipped = local.shipped.get(local.model)
    return shipped_model_path(shipped, settings.data_dir) if shipped else None


def _local_provider(settings: Settings, config: AgentConfig) -> LLMProvider:
    path = local_model_path(settings, config)
    if path is None or not runtime_available():
        raise NoProviderConfigured(
            "No LLM is configured and the offline model is not installed. Either set "
            "FAC_LLM_BASE_URL (and FAC_LLM_API_KEY) to an OpenAI-compatible endpoint — OpenAI, "
            "OpenRouter, Ollama, vLLM, llama.cpp server — or run `bash scripts/setup.sh`, which "
            f"installs llama.cpp (xllamacpp) and the {config.local.model} model."
        )
    shipped = config.local.shipped.get(config.local.model)
    template = config.local.chat_template or (shipped.chat_template if shipped else "")
    return LocalModelProvider(path, config.local, template)
