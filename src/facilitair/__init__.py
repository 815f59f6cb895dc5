"""Facilitair: watch a team of LLM agents build software together, streamed live."""

__version__ = "0.1.0"
