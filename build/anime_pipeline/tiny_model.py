"""A tiny real ONNX encoder and a complete artifact bundle built from it, in seconds and offline.

The model is a genuine two-output ONNX graph (embedding lookup, masked mean → `v3`, projection →
`v4`) with the production inputs (`input_ids`, `attention_mask`) and a WordLevel tokenizer learned
from the given texts, so `OnnxEncoder`, the hnswlib indexes, `load_bundle` and the API run their real
code paths. Used by `anime-build bench --quick`, the reliability tests and (importable) test fixtures.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from anime_recommender.artifacts import write_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import EncoderConfig, OnnxEncoder
from anime_recommender.index import VectorIndex
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours
from anime_recommender.text import anime_text

V3_DIM, V4_DIM = 16, 8
# Words of the events/search.json query, so the sample event hits known tokens.
EXTRA_WORDS: tuple[str, ...] = ("space", "bounty", "hunters", "jazz", "soundtrack")


def make_tiny_model(
    model_dir: Path, texts: Iterable[str], *, extra_words: Iterable[str] = EXTRA_WORDS, seed: int = 0
) -> Path:
    """Write `model.onnx`, `tokenizer.json` and `encoder.json` of a deterministic toy encoder.

    Args:
        model_dir: output folder (created).
        texts: corpus whose lower-cased whitespace words become the vocabulary.
        extra_words: words added to the vocabulary besides the corpus's.
        seed: RNG seed of the embedding and projection weights.
    """
    import onnx
    from onnx import TensorProto, helper
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    model_dir.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in t.lower().split()} | set(extra_words))
    vocab = {"[PAD]": 0, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(model_dir / "tokenizer.json"))
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((len(vocab), V3_DIM)).astype(np.float32)
    proj = rng.standard_normal((V3_DIM, V4_DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tok"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "one"], ["safe"]),
        helper.make_node("Div", ["summed", "safe"], ["v3"]),
        helper.make_node("MatMul", ["v3", "proj"], ["v4"]),
    ]
    inits = [
        helper.make_tensor("emb", TensorProto.FLOAT, emb.shape, emb.ravel().tolist()),
        helper.make_tensor("proj", TensorProto.FLOAT, proj.shape, proj.ravel().tolist()),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "l"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "l"]),
        ],
        [
            helper.make_tensor_value_info("v4", TensorProto.FLOAT, ["b", V4_DIM]),
            helper.make_tensor_value_info("v3", TensorProto.FLOAT, ["b", V3_DIM]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(model_dir / "model.onnx"))
    EncoderConfig(
        outputs={"v4": V4_DIM, "v3": V3_DIM},
        max_length=64,
        base_model="tiny-test",
        quantization={"mode": "none"},
    ).save(model_dir / "encoder.json")
    return model_dir


def make_tiny_bundle(catalogue: Catalogue, root: Path, *, k: int = 20, threads: int = 1) -> Path:
    """A complete, checksummed artifact bundle for `catalogue` under `root/anime-artifacts`.

    The model is `make_tiny_model` over the catalogue's texts (in `root/model`); indexes are built
    from its embeddings (M=8, ef_construction=50, ef=32) and the V2 lists by the real teacher.
    """
    texts = [anime_text(a) for a in catalogue]
    model_dir = make_tiny_model(root / "model", texts)
    vectors = OnnxEncoder.load(model_dir, threads=threads).encode(texts)
    indexes = {
        space: VectorIndex.build(catalogue.ids, vectors[space], M=8, ef_construction=50, ef=32)
        for space in ("v4", "v3")
    }
    neighbours = top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=k)
    directory = root / "anime-artifacts"
    write_bundle(directory, catalogue=catalogue, neighbours=neighbours, model_dir=model_dir, indexes=indexes)
    return directory
