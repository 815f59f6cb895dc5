"""LLM backends behind one interface (`LLMProvider`), chosen per role by configuration."""

from __future__ import annotations

import os

from facilitair.config import AgentConfig, Settings
from facilitair.llm.base import LLMProvider, ProviderError
from facilitair.llm.openai_compat import OpenAICompatibleProvider
from facilitair.llm.retry import RetryingProvider, RetryPolicy


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


class NoProviderConfigured(RuntimeError):
    pass


def build_providers(settings: Settings, config: AgentConfig) -> ProviderSet:
    policy = RetryPolicy(
        max_retries=settings.llm_max_retries,
        base_delay_s=settings.llm_retry_base_s,
        first_token_timeout_s=settings.llm_first_token_timeout_s,
        total_timeout_s=settings.llm_timeout_s,
    )
    providers: dict[str, LLMProvider] = {}
    for name, entry in config.providers.items():
        base_url = entry.base_url
        api_key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
        if name == "default":
            base_url = base_url or settings.llm_base_url
            if api_key is None and settings.llm_api_key is not None:
                api_key = settings.llm_api_key.get_secret_value()
        if base_url is None:
            raise NoProviderConfigured(
                f"LLM provider {name!r} has no base URL: set FAC_LLM_BASE_URL to an "
                "OpenAI-compatible endpoint (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp server) "
                "or give it a base_url in the FAC_CONFIG file"
            )
        inner = OpenAICompatibleProvider(base_url, api_key, timeout_s=settings.llm_timeout_s)
        providers[name] = RetryingProvider(inner, policy)
    return ProviderSet(providers)
