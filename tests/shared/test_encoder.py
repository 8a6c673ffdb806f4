"""OnnxEncoder on a hand-built ONNX graph (no torch): batching, order, padding, norms, threads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import EncoderConfig, OnnxEncoder
from anime_recommender.text import anime_text

DIM_V3, DIM_V4 = 8, 4


def _write_model(folder: Path, corpus: list[str]) -> Path:
    """Embedding lookup → masked mean (v3) → linear map (v4), with a word-level tokenizer.

    Padding tokens get a large embedding, so a wrong attention mask or per-call padding shows up.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for text in corpus for w in text.lower().replace(".", " ").replace(",", " ").split()})
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=48)  # fixed padding the encoder must undo
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))

    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(vocab), DIM_V3)).astype(np.float32)
    table[0] = 100.0
    proj = rng.normal(size=(DIM_V3, DIM_V4)).astype(np.float32)
    inits = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(proj, "proj"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axl"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axl"], ["m3"]),
        helper.make_node("Mul", ["emb", "m3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "ax1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["m3", "ax1"], ["c"], keepdims=0),
        helper.make_node("Div", ["s", "c"], ["v3"]),
        helper.make_node("MatMul", ["v3", "proj"], ["v4"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"]),
        ],
        [
            helper.make_tensor_value_info("v4", TensorProto.FLOAT, ["b", DIM_V4]),
            helper.make_tensor_value_info("v3", TensorProto.FLOAT, ["b", DIM_V3]),
        ],
        inits,
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "model.onnx")
    )
    EncoderConfig(outputs={"v4": DIM_V4, "v3": DIM_V3}, max_length=32).save(folder / "encoder.json")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_catalogue: Catalogue) -> Path:
    return _write_model(tmp_path_factory.mktemp("enc"), [anime_text(a) for a in tiny_catalogue])


@pytest.fixture(scope="module")
def texts(tiny_catalogue: Catalogue) -> list[str]:
    return [anime_text(a) for a in tiny_catalogue]


def test_outputs_are_unit_vectors_in_input_order(model_dir: Path, texts: list[str]) -> None:
    encoder = OnnxEncoder.load(model_dir, threads=1)
    batched = encoder.encode(texts, batch_size=4)
    assert encoder.dims == {"v4": DIM_V4, "v3": DIM_V3}
    for name, dim in encoder.dims.items():
        assert batched[name].shape == (len(texts), dim) and batched[name].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(batched[name], axis=1), 1.0, atol=1e-6)
    # Each row equals the text encoded alone: sorting/batching/padding never mixes rows up.
    for i in (0, 7, len(texts) - 1):
        alone = encoder.encode_one(texts[i])
        for name in encoder.dims:
            np.testing.assert_allclose(alone[name], batched[name][i], atol=1e-5)


def test_batch_size_does_not_change_results(model_dir: Path, texts: list[str]) -> None:
    encoder = OnnxEncoder.load(model_dir, threads=2)
    a = encoder.encode(texts, batch_size=1)
    b = encoder.encode(texts, batch_size=64)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5)


def test_truncates_to_max_length(model_dir: Path) -> None:
    # A text far longer than max_length encodes like its first max_length tokens.
    encoder = OnnxEncoder.load(model_dir, threads=1)
    long = " ".join(["cowboy bebop"] * 100)
    short = " ".join(["cowboy bebop"] * 16)  # 32 tokens
    np.testing.assert_allclose(encoder.encode_one(long)["v3"], encoder.encode_one(short)["v3"], atol=1e-6)


def test_empty_input_and_bad_arguments(model_dir: Path) -> None:
    encoder = OnnxEncoder.load(model_dir, threads=1)
    empty = encoder.encode([])
    assert empty["v4"].shape == (0, DIM_V4)
    with pytest.raises(ValueError):
        encoder.encode(["x"], batch_size=0)
    with pytest.raises(ValueError):
        OnnxEncoder.load(model_dir, threads=0)


def test_config_must_match_model_outputs(tmp_path: Path, model_dir: Path) -> None:
    for name in ("model.onnx", "tokenizer.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    EncoderConfig(outputs={"v4": DIM_V4, "v5": 3}, max_length=32).save(tmp_path / "encoder.json")
    with pytest.raises(ValueError, match="do not match"):
        OnnxEncoder.load(tmp_path, threads=1)


def test_config_round_trip(tmp_path: Path) -> None:
    config = EncoderConfig(outputs={"v4": 256, "v3": 384}, max_length=128, quantization={"preset": "avx2"})
    config.save(tmp_path / "encoder.json")
    assert EncoderConfig.load(tmp_path / "encoder.json") == config
    assert json.loads((tmp_path / "encoder.json").read_text())["max_length"] == 128


def test_runtime_encoder_never_imports_torch(model_dir: Path) -> None:
    # The Lambda layer has no torch: loading and encoding must not pull it (or transformers) in.
    code = (
        "import sys\n"
        "from anime_recommender.encoder import OnnxEncoder\n"
        f"e = OnnxEncoder.load({str(model_dir)!r}, threads=1)\n"
        "v = e.encode(['space bounty hunters with a jazz soundtrack'])\n"
        "assert v['v4'].shape == (1, 4)\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == ""
