"""Runtime text encoder: one int8 ONNX graph, two L2-normalised outputs (`v4`, `v3`).

Used by the offline build to embed the catalogue and by the API to embed free-text
queries, so both sides share one code path. Only onnxruntime + tokenizers + numpy:
nothing here may import torch/transformers (the Lambda layer does not ship them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "encoder.json"


@dataclass(frozen=True)
class EncoderConfig:
    """What `encoder.json` records about the model next to it."""

    outputs: dict[str, int]
    max_length: int = 128
    base_model: str = ""
    text_version: str = ""
    quantization: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write as pretty JSON."""
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> EncoderConfig:
        """Read `encoder.json`; missing required keys raise KeyError naming them."""
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            outputs={str(k): int(v) for k, v in data["outputs"].items()},
            max_length=int(data["max_length"]),
            base_model=str(data.get("base_model", "")),
            text_version=str(data.get("text_version", "")),
            quantization=dict(data.get("quantization") or {}),
            extra=dict(data.get("extra") or {}),
        )


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class OnnxEncoder:
    """Batched text → {output name: float32 [n, dim] unit vectors} with an ONNX session."""

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, config: EncoderConfig) -> None:
        self._session = session
        self._config = config
        self._input_names = {i.name for i in session.get_inputs()}
        self._output_names = [o.name for o in session.get_outputs() if o.name in config.outputs]
        if set(self._output_names) != set(config.outputs):
            raise ValueError(
                f"model outputs {[o.name for o in session.get_outputs()]} do not match "
                f"encoder.json outputs {sorted(config.outputs)}"
            )
        # The saved tokenizer may carry fixed-length padding; we pad per batch instead (shorter = faster).
        pad_token = tokenizer.padding["pad_token"] if tokenizer.padding else "[PAD]"
        pad_id = tokenizer.token_to_id(pad_token)
        self._pad_id = 0 if pad_id is None else pad_id
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=config.max_length)
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, model_dir: Path | str, threads: int, model_file: str = MODEL_FILE) -> OnnxEncoder:
        """Load `model_dir/{model.onnx,tokenizer.json,encoder.json}` with an explicit thread count.

        `threads` is required because Lambda's vCPUs are not `os.cpu_count()`.
        """
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        model_dir = Path(model_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(
            str(model_dir / model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        return cls(session, tokenizer, EncoderConfig.load(model_dir / CONFIG_FILE))

    @property
    def config(self) -> EncoderConfig:
        """The model's `encoder.json`."""
        return self._config

    @property
    def dims(self) -> dict[str, int]:
        """Output name → vector dimension."""
        return dict(self._config.outputs)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> dict[str, np.ndarray]:
        """Embed texts; returns {output: float32 [len(texts), dim]}, rows L2-normalised, input order.

        Texts are sorted by length before batching so each batch pads to similar lengths;
        the order of the result is the order of `texts`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(texts)
        result = {name: np.zeros((n, dim), dtype=np.float32) for name, dim in self._config.outputs.items()}
        if n == 0:
            return result
        encodings = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            feeds = self._feeds([encodings[i].ids for i in rows])
            outputs = self._session.run(self._output_names, feeds)
            for name, values in zip(self._output_names, outputs, strict=True):
                result[name][rows] = values
        # The graph normalises already; normalising again here makes unit norm a guarantee of
        # this API (int8 rounding can move norms by ~1e-3) at negligible cost.
        return {name: _l2_normalise(values) for name, values in result.items()}

    def encode_one(self, text: str) -> dict[str, np.ndarray]:
        """Embed one text; returns {output: float32 [dim]}."""
        return {name: values[0] for name, values in self.encode([text], batch_size=1).items()}

    def _feeds(self, batch: list[list[int]]) -> dict[str, np.ndarray]:
        length = max(len(row) for row in batch)
        ids = np.full((len(batch), length), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.int64)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds
