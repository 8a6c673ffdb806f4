"""A tiny real ONNX encoder and a complete artifact bundle built from it, in seconds and offline.

The model is a genuine ONNX graph (embedding lookup, masked mean → `v3`, projection → `v4`) with the
production inputs (`input_ids`, `attention_mask`) and a WordLevel tokenizer learned from the given
texts, so `OnnxEncoder`, the hnswlib indexes, `load_bundle` and the API run their real code paths.
`corrupt_file` damages one artifact the ways a bad deploy or a bad disk would, to reach the fallback
tiers. Used by `anime-build bench --quick` and by the test fixtures (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from anime_recommender.artifacts import write_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import EncoderConfig, OnnxEncoder
from anime_recommender.index import VectorIndex
from anime_recommender.release_dates import ReleaseDates
from anime_recommender.teacher import TeacherFeatures, top_k_neighbours
from anime_recommender.text import anime_text

V3_DIM, V4_DIM = 16, 8
DIMS: dict[str, int] = {"v4": V4_DIM, "v3": V3_DIM}
# Words of the events/search.json query, so the sample event hits known tokens.
EXTRA_WORDS: tuple[str, ...] = ("space", "bounty", "hunters", "jazz", "soundtrack")
# Recorded in encoder.json (and so in the bundle manifest): this is no real quantised model.
QUANTIZATION: dict[str, str] = {"mode": "none", "note": "test model"}

CorruptMode = Literal["flip", "truncate", "delete"]


def make_tiny_model(
    model_dir: Path,
    texts: Iterable[str],
    *,
    outputs: Sequence[str] = ("v4", "v3"),
    extra_words: Iterable[str] = EXTRA_WORDS,
    seed: int = 0,
) -> Path:
    """Write `model.onnx`, `tokenizer.json` and `encoder.json` of a deterministic toy encoder.

    Args:
        model_dir: output folder (created).
        texts: corpus whose lower-cased whitespace words become the vocabulary.
        outputs: graph outputs to expose, a subset of `("v4", "v3")` (e.g. `("v3",)` for a model
            without the fine-tuned space).
        extra_words: words added to the vocabulary besides the corpus's.
        seed: RNG seed of the embedding and projection weights.
    """
    import onnx
    from onnx import TensorProto, helper
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    unknown = set(outputs) - set(DIMS)
    if unknown or not outputs:
        raise ValueError(f"outputs must be a non-empty subset of {sorted(DIMS)}, got {list(outputs)}")
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
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["b", DIMS[o]]) for o in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(model_dir / "model.onnx"))
    EncoderConfig(
        outputs={o: DIMS[o] for o in outputs},
        max_length=64,
        base_model="tiny-test",
        quantization=dict(QUANTIZATION),
    ).save(model_dir / "encoder.json")
    return model_dir


def make_tiny_bundle(
    catalogue: Catalogue,
    root: Path,
    *,
    k: int = 20,
    ef: int = 32,
    threads: int = 1,
    model_dir: Path | None = None,
    release_dates: ReleaseDates | None = None,
) -> Path:
    """A complete, checksummed artifact bundle for `catalogue` under `root/anime-artifacts`.

    Args:
        catalogue: the anime to serve.
        root: parent folder (created).
        k: length of the V2 neighbour lists, computed by the real teacher.
        ef: search-time ef of both hnswlib indexes (built with M=8, ef_construction=50).
        threads: ONNX Runtime threads used to embed the catalogue.
        model_dir: an existing model folder (e.g. `make_tiny_model` over another catalogue's
            texts) to embed with and ship; by default `make_tiny_model` over the catalogue's texts
            is written to `root/model`. One index is built per model output.
        release_dates: the enrichment `catalogue` was loaded with, shipped as `release_dates.json`.
    """
    texts = [anime_text(a) for a in catalogue]
    if model_dir is None:
        model_dir = make_tiny_model(root / "model", texts)
    vectors = OnnxEncoder.load(model_dir, threads=threads).encode(texts)
    indexes = {
        space: VectorIndex.build(catalogue.ids, space_vectors, M=8, ef_construction=50, ef=ef)
        for space, space_vectors in vectors.items()
    }
    neighbours = top_k_neighbours(TeacherFeatures.from_catalogue(catalogue), k=k)
    directory = root / "anime-artifacts"
    write_bundle(
        directory,
        catalogue=catalogue,
        neighbours=neighbours,
        model_dir=model_dir,
        indexes=indexes,
        release_dates=release_dates,
    )
    return directory


def corrupt_file(path: Path, mode: CorruptMode) -> None:
    """Damage one artifact file in place.

    Args:
        path: the file.
        mode: `"flip"` inverts one byte in the middle (same size, so only the sha256 catches it),
            `"truncate"` keeps the first half, `"delete"` removes the file.
    """
    if mode == "delete":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if mode == "flip":
        data[len(data) // 2] ^= 0xFF
    elif mode == "truncate":
        data = data[: len(data) // 2]
    else:
        raise ValueError(f"unknown corruption mode {mode!r}")
    path.write_bytes(bytes(data))
