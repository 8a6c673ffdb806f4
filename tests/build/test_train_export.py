"""The real train → export → quantise → embed path, on a tiny BERT (seconds, no download)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from anime_pipeline.evaluation.embedding_eval import TripletSet, triplet_accuracy
from anime_pipeline.export import ExportConfig, ExportResult, ParityError, export_models, load_served_vectors
from anime_pipeline.train import TrainConfig, TrainResult, train_v4
from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import OnnxEncoder
from anime_recommender.text import anime_text

TINY_TRAIN = TrainConfig(
    max_length=64, out_dim=16, hidden_dim=32, epochs=6, batch_size=16, lr=1e-2, threads=1
)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_catalogue: Catalogue,
    tiny_bert: Path,
    tiny_triplets: TripletSet,
) -> TrainResult:
    out = tmp_path_factory.mktemp("models")
    return train_v4(tiny_catalogue, tiny_triplets, out, replace(TINY_TRAIN, base_model=str(tiny_bert)))


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_catalogue: Catalogue,
    tiny_triplets: TripletSet,
    trained: TrainResult,
) -> ExportResult:
    out = tmp_path_factory.mktemp("onnx")
    return export_models(
        tiny_catalogue,
        trained.head_path,
        out / "onnx",
        out / "runtime",
        # Tiny sample: ~60 triplets per split, so one flipped triplet moves accuracy by ~1.6 points;
        # the gate allows 5 points here (the real build uses 1 point on ~49k triplets per split).
        # v3_dim=24 < the tiny encoder's 32: exercises the folded V3 projection like the real build.
        ExportConfig(threads=1, enforce_gate=False, max_quality_drop=0.05, v3_dim=24),
        triplets=tiny_triplets,
    )


def test_training_learns_the_teacher_and_logs_it(trained: TrainResult) -> None:
    # Given triplets whose positives share tags, when the head trains on the train split,
    # then validation accuracy improves on the untrained head and the log records every epoch.
    history = trained.history
    assert history[0]["epoch"] == 0 and len(history) == TINY_TRAIN.epochs + 1
    assert max(h["val_accuracy"] for h in history[1:]) > history[0]["val_accuracy"]
    assert trained.metrics["v4_test_accuracy"] is not None
    log = json.loads(trained.log_path.read_text())
    assert log["best_epoch"] == trained.best_epoch >= 1
    assert set(log["triplets"]) == {"train", "validation", "test"}


def test_frozen_embeddings_are_cached(
    tmp_path: Path,
    tiny_catalogue: Catalogue,
    tiny_bert: Path,
    tiny_triplets: TripletSet,
    trained: TrainResult,
) -> None:
    # Given the cache of the first run, a second run with the same texts does not re-embed.
    config = replace(TINY_TRAIN, base_model=str(tiny_bert), epochs=1)
    again = train_v4(tiny_catalogue, tiny_triplets, tmp_path, config, cache_dir=trained.frozen_path.parent)
    assert again.embed_seconds == 0.0
    assert np.array_equal(np.load(again.frozen_path), np.load(trained.frozen_path))


def test_export_writes_fp32_int8_variants_and_runtime_folder(exported: ExportResult) -> None:
    names = {p.name for p in exported.onnx_dir.glob("*.onnx")}
    assert names == {"model_fp32.onnx", "model_int8_avx2.onnx", "model_int8_arm64.onnx"}
    assert {p.name for p in exported.runtime_dir.iterdir()} == {
        "model.onnx",
        "tokenizer.json",
        "encoder.json",
    }
    config = json.loads((exported.runtime_dir / "encoder.json").read_text())
    assert config["outputs"] == {"v4": 16, "v3": 24}
    assert config["quantization"]["preset"] == "AutoQuantizationConfig.avx2"
    assert config["quantization"]["dynamic"] is True
    assert (exported.onnx_dir / "parity.json").is_file()


def test_fp32_graph_matches_torch_head(exported: ExportResult) -> None:
    # The appended pooling/head/normalisation ops reproduce the trained torch head.
    assert exported.parity["fp32_graph_vs_torch_head_v4_min_cosine"] > 0.9999


def test_v3_projection_is_folded_into_every_graph(exported: ExportResult, tiny_catalogue: Catalogue) -> None:
    # The narrower V3 comes out of the graphs themselves (one embedding code path), equals the numpy
    # projection the parity numbers were computed with, and the fp32 graph's V4 still reads the full V3.
    projection = exported.parity["v3_projection"]
    assert projection["from"] == 32 and projection["to"] == 24
    assert 0.5 < projection["energy_kept"] <= 1.0
    assert projection["graph_vs_numpy_min_cosine"] > 0.9999
    assert exported.parity["fp32_graph_vs_torch_head_v4_min_cosine"] > 0.9999
    texts = [anime_text(a) for a in tiny_catalogue][:8]
    for variant in ("fp32", "int8_avx2", "int8_arm64"):
        vectors = OnnxEncoder.load(exported.onnx_dir / variant, threads=1).encode(texts)
        assert vectors["v3"].shape == (8, 24) and vectors["v4"].shape == (8, 16)


def test_fp32_weights_stored_as_fp16_shrink_the_file_not_the_results(tmp_path: Path) -> None:
    # A MatMul weight big enough to convert: the file halves, outputs stay within fp16 rounding.
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from anime_pipeline.export import store_fp32_weights_as_fp16

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((256, 128)).astype(np.float32)
    bias = rng.standard_normal(128).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 128])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    x = rng.standard_normal((4, 256)).astype(np.float32)
    before_size = path.stat().st_size
    before = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert store_fp32_weights_as_fp16(path) == 1  # the weight, not the small bias
    after = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert path.stat().st_size < 0.6 * before_size
    np.testing.assert_allclose(after, before, rtol=0, atol=2e-2)
    assert [n.op_type for n in onnx.load(str(path)).graph.node][0] == "Cast"


def test_int8_parity_gates(exported: ExportResult) -> None:
    # int8 stays close to fp32 in direction and keeps ranking quality within the gate.
    parity = exported.parity
    for variant in ("int8_avx2", "int8_arm64"):
        for out in ("v3", "v4"):
            # A random 32-wide model is far noisier under int8 than MiniLM (0.99 measured there).
            assert parity[variant][f"{out}_mean_cosine_vs_fp32"] > 0.9
    fp32_acc = parity["fp32"]["v4_test_accuracy"]
    assert parity["int8_avx2"]["v4_test_accuracy"] >= fp32_acc - 0.05
    assert parity["gate_failures"] == []


def test_gate_trips_when_quality_drops(
    tmp_path: Path, tiny_catalogue: Catalogue, tiny_triplets: TripletSet, trained: TrainResult
) -> None:
    # A negative allowance demands the shipped int8 model *beat* fp32 by a point: the build fails.
    with pytest.raises(ParityError):
        export_models(
            tiny_catalogue,
            trained.head_path,
            tmp_path / "onnx",
            tmp_path / "runtime",
            ExportConfig(threads=1, max_quality_drop=-1.0),
            triplets=tiny_triplets,
        )


def test_runtime_encoder_on_exported_model(exported: ExportResult, tiny_catalogue: Catalogue) -> None:
    encoder = OnnxEncoder.load(exported.runtime_dir, threads=1)
    texts = [anime_text(a) for a in tiny_catalogue]
    first = encoder.encode(texts, batch_size=8)
    second = encoder.encode(texts, batch_size=8)
    assert set(first) == {"v3", "v4"}
    assert first["v4"].shape == (len(texts), 16) and first["v3"].shape == (len(texts), 24)
    for out in ("v3", "v4"):
        assert first[out].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(first[out], axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(first[out], second[out])  # deterministic
    one = encoder.encode_one(texts[3])
    # Batch-of-one vs batched: same text, only the dynamic int8 activation scale differs.
    assert float(one["v4"] @ first["v4"][3]) > 0.99


def test_v4_beats_v3_on_held_out_triplets(
    exported: ExportResult, tiny_catalogue: Catalogue, tiny_triplets: TripletSet
) -> None:
    vectors = OnnxEncoder.load(exported.runtime_dir, threads=1).encode(
        [anime_text(a) for a in tiny_catalogue]
    )
    rows = tiny_triplets.rows(tiny_catalogue, "test")
    assert triplet_accuracy(vectors["v4"], *rows) > triplet_accuracy(vectors["v3"], *rows)


@pytest.mark.slow
def test_real_minilm_export_matches_sentence_transformers(
    tmp_path: Path, tiny_catalogue: Catalogue, tiny_triplets: TripletSet
) -> None:
    # The exported V3 output of the real all-MiniLM-L6-v2 equals sentence-transformers' own
    # embedding (fp32), and the int8 graph stays close to it.
    from sentence_transformers import SentenceTransformer

    from anime_pipeline.models import minilm_model

    base = str(minilm_model().path)
    config = replace(TINY_TRAIN, base_model=base, max_length=128, out_dim=64, hidden_dim=128)
    trained = train_v4(tiny_catalogue, tiny_triplets, tmp_path / "models", config)
    result = export_models(
        tiny_catalogue,
        trained.head_path,
        tmp_path / "onnx",
        tmp_path / "runtime",
        ExportConfig(threads=2, enforce_gate=False, v3_dim=None),
        triplets=tiny_triplets,
    )
    texts = [anime_text(a) for a in tiny_catalogue]
    reference = SentenceTransformer(base, device="cpu").encode(texts, normalize_embeddings=True)
    fp32 = OnnxEncoder.load(result.onnx_dir / "fp32", threads=2).encode(texts)
    assert float(np.min(np.einsum("ij,ij->i", fp32["v3"], reference))) > 0.9999
    assert result.parity["int8_avx2"]["v3_mean_cosine_vs_fp32"] > 0.9
    assert result.parity["int8_avx2"]["v4_mean_cosine_vs_fp32"] > 0.9


def test_sampled_parity_embeds_the_catalogue_once_and_judges_the_shipped_model_on_all_of_it(
    tmp_path: Path, tiny_catalogue: Catalogue, tiny_triplets: TripletSet, trained: TrainResult
) -> None:
    # Given a parity sample smaller than the catalogue (what the real build does at 27k anime)
    out = tmp_path / "models"
    result = export_models(
        tiny_catalogue,
        trained.head_path,
        out / "onnx",
        out / "runtime",
        ExportConfig(threads=1, enforce_gate=False, max_quality_drop=0.05, v3_dim=24, parity_rows=20),
        triplets=tiny_triplets,
        cache_dir=trained.head_path.parent / "cache",  # where train left its frozen vectors
    )
    parity = result.parity
    # Then the fp32 reference of the whole catalogue is the train stage's cached vectors, not a new pass
    assert parity["fp32_reference_from_train_cache"] is True
    # Then the fp32 graph and arm64 are checked on the sample, the shipped model on every row
    assert parity["sample_rows"] == 20 and parity["rows"] == len(tiny_catalogue)
    assert parity["fp32_graph_vs_torch_head_v4_min_cosine"] > 0.9999
    assert parity["fp32_graph_vs_torch_reference_v3_min_cosine"] > 0.9999
    assert "v4_test_accuracy" in parity["int8_avx2"] and "v4_test_accuracy" in parity["fp32"]
    assert "v4_test_accuracy" not in parity["int8_arm64"]
    assert parity["int8_arm64"]["v4_mean_cosine_vs_fp32"] > 0.9
    # And the saved catalogue vectors are the runtime model's own, reusable by the index stage
    texts = [anime_text(a) for a in tiny_catalogue]
    saved = load_served_vectors(out / "vectors", result.runtime_dir, texts)
    assert saved is not None and saved["v4"].shape == (len(tiny_catalogue), 16)
    fresh = OnnxEncoder.load(result.runtime_dir, threads=1).encode(texts[:5], batch_size=1)
    assert np.allclose(fresh["v4"], saved["v4"][:5], atol=1e-6)
    assert np.allclose(fresh["v3"], saved["v3"][:5], atol=1e-5)
    # But other texts (a changed catalogue) are not served from them
    assert load_served_vectors(out / "vectors", result.runtime_dir, [*texts[:-1], "changed"]) is None
