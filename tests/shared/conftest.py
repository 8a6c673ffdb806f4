"""Fixtures for the shared package: a tiny two-output ONNX encoder and a complete artifact bundle.

The model is a real ONNX graph (embedding lookup, masked mean, projection) with the production
inputs (`input_ids`, `attention_mask`) and outputs (`v4`, `v3`), so `OnnxEncoder`, the indexes and
`load_bundle` run their real code paths in milliseconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from anime_recommender.artifacts import write_bundle
from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import EncoderConfig, OnnxEncoder
from anime_recommender.index import VectorIndex
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.text import anime_text

V3_DIM, V4_DIM = 16, 8


def make_tiny_model(model_dir: Path, texts: list[str], outputs: tuple[str, ...] = ("v4", "v3")) -> Path:
    """Write model.onnx, tokenizer.json and encoder.json for a deterministic toy encoder."""
    import onnx
    from onnx import TensorProto, helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    model_dir.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in t.lower().split()})
    vocab = {"[PAD]": 0, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(words)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.normalizer = None
    tokenizer.save(str(model_dir / "tokenizer.json"))

    rng = np.random.default_rng(0)
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
    dims = {"v4": V4_DIM, "v3": V3_DIM}
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "l"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "l"]),
        ],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["b", dims[o]]) for o in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(model_dir / "model.onnx"))
    EncoderConfig(
        outputs={o: dims[o] for o in outputs},
        max_length=64,
        base_model="tiny-test",
        quantization={"mode": "none", "note": "test model"},
    ).save(model_dir / "encoder.json")
    return model_dir


def make_neighbours(catalogue: Catalogue, k: int = 5, seed: int = 0) -> NeighbourLists:
    """Random but well-formed V2 lists (descending scores, no self-neighbours)."""
    rng = np.random.default_rng(seed)
    ids = np.array(catalogue.ids, dtype=np.int64)
    nb = np.stack([rng.choice(ids[ids != i], size=k, replace=False) for i in ids])
    scores = np.sort(rng.random((len(ids), k)).astype(np.float16), axis=1)[:, ::-1]
    return NeighbourLists(ids=ids, neighbour_ids=nb, scores=scores)


def build_bundle(directory: Path, catalogue: Catalogue, model_dir: Path) -> Path:
    """Embed the catalogue with the real OnnxEncoder and write a complete bundle."""
    encoder = OnnxEncoder.load(model_dir, threads=1)
    vectors = encoder.encode([anime_text(a) for a in catalogue])
    indexes = {
        space: VectorIndex.build(catalogue.ids, vectors[space], M=8, ef_construction=50, ef=20)
        for space in encoder.dims
    }
    write_bundle(
        directory,
        catalogue=catalogue,
        neighbours=make_neighbours(catalogue),
        model_dir=model_dir,
        indexes=indexes,
        recall_at_10=dict.fromkeys(indexes, 1.0),
    )
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy two-output (v4, v3) ONNX encoder directory over the tiny catalogue's vocabulary."""
    texts = [anime_text(a) for a in tiny_catalogue]
    return make_tiny_model(tmp_path_factory.mktemp("model"), texts)


@pytest.fixture(scope="session")
def _bundle_template(
    tiny_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle") / "anime-artifacts", tiny_catalogue, tiny_model_dir)


@pytest.fixture
def bundle_dir(_bundle_template: Path, tmp_path: Path) -> Path:
    """A fresh, writable copy of a complete artifact bundle (tests may corrupt it)."""
    return Path(shutil.copytree(_bundle_template, tmp_path / "anime-artifacts"))


@pytest.fixture
def corrupt() -> Callable[[Path, str], None]:
    """`corrupt(path, mode)`: mode 'flip' (one byte, same size), 'truncate' or 'delete'."""

    def _corrupt(path: Path, mode: str) -> None:
        if mode == "delete":
            path.unlink()
            return
        data = bytearray(path.read_bytes())
        if mode == "flip":
            data[len(data) // 2] ^= 0xFF
        elif mode == "truncate":
            data = data[: len(data) // 2]
        else:
            raise ValueError(mode)
        path.write_bytes(bytes(data))

    return _corrupt


@pytest.fixture
def tiny_model_factory() -> Callable[..., Path]:
    """`make_tiny_model(model_dir, texts, outputs=("v4", "v3"))` for tests needing another model."""
    return make_tiny_model


@pytest.fixture
def neighbours_factory() -> Callable[..., NeighbourLists]:
    """`make_neighbours(catalogue, k=5, seed=0)`: well-formed random V2 lists."""
    return make_neighbours
