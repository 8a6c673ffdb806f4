"""Stage `export`: one ONNX graph (encoder + mean pooling + head + L2 norm) with outputs `v3`, `v4`.

1. optimum exports the base transformer (feature-extraction → `last_hidden_state`).
2. onnx.helper appends masked mean pooling + L2 normalisation (`v3`) and the trained head
   + L2 normalisation (`v4`), so queries and catalogue vectors come from the very same graph.
3. optimum's `ORTQuantizer` quantises it dynamically to int8: a portable x86 (AVX2) file
   and an arm64 (Graviton) file. The weights deliberately left in fp32 (FFN outputs, head) are then
   stored as float16 behind a `Cast` (see `store_fp32_weights_as_fp16`).
4. Parity: fp32 graph vs the torch reference, int8 vs fp32 (mean cosine, triplet accuracy,
   recall@10 against the teacher), written to `parity.json`; the runtime model folder
   (`model.onnx`, `tokenizer.json`, `encoder.json`) holds the x86 int8 model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anime_pipeline.evaluation.embedding_eval import TripletSet, teacher_recall, top_k_rows, triplet_accuracy
from anime_pipeline.models import BaseModel, resolve_base_model
from anime_pipeline.paths import BuildPaths
from anime_pipeline.progress import progress
from anime_pipeline.train import HEAD_FILE, TrainConfig, cached_frozen_embeddings, head_vectors, load_head
from anime_recommender.catalogue import Catalogue
from anime_recommender.encoder import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, EncoderConfig, OnnxEncoder
from anime_recommender.text import TEXT_VERSION, anime_text

log = logging.getLogger(__name__)

FP32_FILE = "model_fp32.onnx"
QUANT_TARGETS = ("avx2", "arm64")
#: The variant the runtime folder (and so the layer) ships.
SHIPPED = "int8_avx2"


class ParityError(RuntimeError):
    """The int8 model lost more ranking quality than the gate allows."""


@dataclass(frozen=True)
class QuantSettings:
    """Dynamic int8 settings passed to optimum's `AutoQuantizationConfig.<target>`."""

    per_channel: bool = True
    reduce_range: bool = False
    # None = the preset's list (MatMul, Gather, ...): quantising the 30k-token embedding Gather
    # is what brings MiniLM from 59 MB (MatMul-only) to ~23 MB.
    operators_to_quantize: tuple[str, ...] | None = None
    exclude_head: bool = True
    # The transformer's FFN-output MatMuls (`/encoder/layer.N/output/dense/MatMul`) see the widest
    # activation ranges; quantising them dynamically cost V4 1.7 points of teacher recall@10 on the
    # default catalogue (fails the 1-point gate). Keeping all six in fp32 costs +10.6 MB and passes
    # (-0.65 points); keeping only layers 3-5 did not (-1.36).
    fp32_ffn_output: bool = True
    # Store those fp32 MatMul weights as float16 + `Cast` (-7.9 MB on MiniLM, what makes the 40k-anime
    # layers fit): onnxruntime constant-folds the Cast at session creation, so compute stays fp32 and
    # the speed is unchanged; fp16 rounding (~5e-4 relative) is far below the int8 noise.
    fp16_weight_storage: bool = True


@dataclass(frozen=True)
class ExportConfig:
    """How to export, quantise and check the V3/V4 graph."""

    opset: int = 18
    quant: QuantSettings = QuantSettings()
    threads: int = 2
    # Parity is measured the way the index stage embeds (one text per run; see index_stage).
    batch_size: int = 1
    # Gate: int8 triplet accuracy / teacher recall may drop at most this much (absolute) vs fp32.
    max_quality_drop: float = 0.01
    # Rows of the catalogue the fp32 graph and the arm64 variant embed for parity (a seeded sample;
    # None = all). The shipped int8 avx2 variant always embeds the whole catalogue (the index stage
    # reuses those vectors) and the fp32 reference of the whole catalogue is the train stage's cached
    # torch vectors through the torch head: one ONNX pass over the catalogue instead of three, and
    # the parity gate still judges the shipped model on every triplet.
    parity_rows: int | None = 2000
    enforce_gate: bool = True
    # V3 output width: the 384-d pooled vector is projected onto its top principal directions (fit
    # on the catalogue, uncentred, folded into the graph). 256 keeps 99.0 % of the energy and cost
    # nothing measurable (V3 test triplet accuracy 77.07 -> 77.09 %, teacher R@10 10.26 -> 10.22 %)
    # while shrinking the V3 index by a third: what keeps a 40k-anime bundle under Lambda's 250 MB.
    # None keeps the full width.
    v3_dim: int | None = 256


@dataclass
class ExportResult:
    """Files written and the parity numbers."""

    onnx_dir: Path
    runtime_dir: Path
    files: dict[str, int]
    parity: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _append_pooling_and_head(model: Any, head: dict[str, Any], opset: int) -> Any:
    """Add `v3` = normalise(masked mean of last_hidden_state) and `v4` = normalise(head(v3)).

    Uses only opset-13+ ops whose axes are inputs (Unsqueeze, ReduceSum), so it works for
    any opset optimum picks >= 13. GELU is written out with Erf to match torch's exact GELU.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    hidden = graph.output[0].name
    if opset < 13:
        raise ValueError("opset >= 13 required")

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        graph.node.append(helper.make_node(op, inputs, [output], name=f"pool_{output}", **attrs))
        return output

    axis1 = const("pool_axis1", np.array([1], dtype=np.int64))
    axis_last = const("pool_axis_last", np.array([-1], dtype=np.int64))
    eps = const("pool_eps", np.array(1e-9, dtype=np.float32))
    eps_norm = const("pool_eps_norm", np.array(1e-12, dtype=np.float32))

    def l2_normalise(x: str, prefix: str, out: str) -> str:
        sq = node("Mul", [x, x], f"{prefix}_sq")
        ss = node("ReduceSum", [sq, axis_last], f"{prefix}_sumsq", keepdims=1)
        norm = node("Sqrt", [ss], f"{prefix}_norm")
        norm = node("Max", [norm, eps_norm], f"{prefix}_norm_clamped")
        return node("Div", [x, norm], out)

    mask = node("Cast", ["attention_mask"], "pool_mask_f", to=TensorProto.FLOAT)
    mask3 = node("Unsqueeze", [mask, axis_last], "pool_mask3")
    masked = node("Mul", [hidden, mask3], "pool_masked")
    summed = node("ReduceSum", [masked, axis1], "pool_sum", keepdims=0)
    count = node("ReduceSum", [mask3, axis1], "pool_count", keepdims=0)
    count = node("Max", [count, eps], "pool_count_clamped")
    mean = node("Div", [summed, count], "pool_mean")
    v3 = l2_normalise(mean, "v3n", "v3")

    w = head["state_dict"]

    def linear(x: str, layer: str) -> str:
        weight = const(f"head_{layer}_w", np.ascontiguousarray(w[f"{layer}.weight"].T.astype(np.float32)))
        bias = const(f"head_{layer}_b", w[f"{layer}.bias"].astype(np.float32))
        mm = node("MatMul", [x, weight], f"head_{layer}_mm")
        return node("Add", [mm, bias], f"head_{layer}_out")

    skip = linear(v3, "skip")
    h = linear(v3, "fc1")
    sqrt2 = const("head_sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    one = const("head_one", np.array(1.0, dtype=np.float32))
    half = const("head_half", np.array(0.5, dtype=np.float32))
    erf = node("Erf", [node("Div", [h, sqrt2], "head_gelu_scaled")], "head_gelu_erf")
    gelu = node(
        "Mul",
        [node("Mul", [h, half], "head_gelu_half"), node("Add", [erf, one], "head_gelu_1perf")],
        "head_gelu",
    )
    mlp = linear(gelu, "fc2")
    y = node("Add", [skip, mlp], "head_sum")
    v4 = l2_normalise(y, "v4n", "v4")

    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(v4, TensorProto.FLOAT, ["batch_size", int(head["out_dim"])]),
            helper.make_tensor_value_info(v3, TensorProto.FLOAT, ["batch_size", int(head["in_dim"])]),
        ]
    )
    onnx.checker.check_model(model)
    return model


def export_fp32(base_path: Path, head: dict[str, Any], out_file: Path, opset: int) -> None:
    """optimum export of the transformer, then pooling + head appended → one fp32 graph."""
    import onnx
    from optimum.exporters.onnx import main_export

    with tempfile.TemporaryDirectory() as tmp:
        main_export(
            str(base_path),
            output=tmp,
            task="feature-extraction",
            opset=opset,
            library_name="transformers",
            local_files_only=True,
            do_validation=False,
        )
        model = onnx.load(str(Path(tmp) / "model.onnx"))
    model = _append_pooling_and_head(model, head, opset)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_file))


def fit_v3_projection(vectors: np.ndarray, dim: int) -> tuple[np.ndarray, float]:
    """Top-`dim` right singular vectors of the (uncentred) unit vectors, as a [d, dim] matrix.

    Uncentred, because cosine similarity is about directions from the origin. Each column's sign is
    fixed (largest entry positive) so that the same data always gives the same matrix. Returns the
    matrix and the share of squared norm it keeps.
    """
    if not 0 < dim <= vectors.shape[1]:
        raise ValueError(f"v3 projection width {dim} must be in 1..{vectors.shape[1]}")
    _, singular, vt = np.linalg.svd(vectors.astype(np.float64), full_matrices=False)
    basis = vt[:dim].T
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(dim)])
    kept = float((singular[:dim] ** 2).sum() / (singular**2).sum())
    return (basis * signs).astype(np.float32), kept


def project_unit(vectors: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """`vectors @ projection`, L2-normalised: what the graph's appended projection computes."""
    projected = vectors @ projection
    return (projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)).astype(
        np.float32
    )


def append_v3_projection(model_file: Path, projection: np.ndarray) -> None:
    """Make the graph's `v3` output normalise(v3_full @ projection); the head still reads the full vector."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_file))
    graph = model.graph
    for node in graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == "v3":
                    names[i] = "v3_full"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.ascontiguousarray(projection, dtype=np.float32), "v3_projection"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "v3p_axis_last"),
            numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "v3p_eps"),
        ]
    )
    steps: list[tuple[str, list[str], str, dict[str, Any]]] = [
        ("MatMul", ["v3_full", "v3_projection"], "v3p_mm", {}),
        ("Mul", ["v3p_mm", "v3p_mm"], "v3p_sq", {}),
        ("ReduceSum", ["v3p_sq", "v3p_axis_last"], "v3p_sumsq", {"keepdims": 1}),
        ("Sqrt", ["v3p_sumsq"], "v3p_norm", {}),
        ("Max", ["v3p_norm", "v3p_eps"], "v3p_norm_clamped", {}),
        ("Div", ["v3p_mm", "v3p_norm_clamped"], "v3", {}),
    ]
    for op, inputs, output, attrs in steps:
        node = helper.make_node(op, inputs, [output], name=f"v3_projection_{output}")
        node.attribute.extend(helper.make_attribute(key, value) for key, value in attrs.items())
        graph.node.append(node)
    outputs = [o for o in graph.output if o.name != "v3"]
    del graph.output[:]
    graph.output.extend(
        [
            *outputs,
            helper.make_tensor_value_info("v3", TensorProto.FLOAT, ["batch_size", projection.shape[1]]),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(model_file))


def store_fp32_weights_as_fp16(model_file: Path, *, min_bytes: int = 65_536) -> int:
    """Store large fp32 MatMul/Gemm weights as float16 initializers feeding a `Cast` back to fp32.

    Only initializers consumed by nothing but MatMul/Gemm and at least `min_bytes` large are
    converted (biases and LayerNorm parameters are tiny and stay). Returns how many were converted.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_file))
    graph = model.graph
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT or not consumers.get(init.name, set()) <= {"MatMul", "Gemm"}:
            continue
        weights = numpy_helper.to_array(init)
        if weights.nbytes < min_bytes or not consumers.get(init.name):
            continue
        stored = f"{init.name}_fp16"
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(weights.astype(np.float16), stored))
        casts.append(
            helper.make_node("Cast", [stored], [init.name], to=TensorProto.FLOAT, name=f"{stored}_cast")
        )
    # Prepended: a Cast of an initializer has no other inputs, so the order stays topological.
    for cast in reversed(casts):
        graph.node.insert(0, cast)
    onnx.checker.check_model(model)
    onnx.save(model, str(model_file))
    return len(casts)


def quantise(fp32_file: Path, target: str, settings: QuantSettings, out_file: Path) -> dict[str, Any]:
    """Dynamic int8 with optimum's ORTQuantizer; returns the config as recorded in encoder.json."""
    import onnx
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    names = [n.name for n in onnx.load(str(fp32_file)).graph.node]
    exclude: list[str] = []
    if settings.exclude_head:
        exclude += [n for n in names if n.startswith("pool_head_")]
    if settings.fp32_ffn_output:
        exclude += [n for n in names if n.endswith("/output/dense/MatMul") and "/attention/" not in n]
    kwargs: dict[str, Any] = {
        "is_static": False,
        "per_channel": settings.per_channel,
        "nodes_to_exclude": exclude,
    }
    if settings.operators_to_quantize is not None:
        kwargs["operators_to_quantize"] = list(settings.operators_to_quantize)
    if target == "avx2":
        qconfig = AutoQuantizationConfig.avx2(reduce_range=settings.reduce_range, **kwargs)
    elif target == "arm64":
        qconfig = AutoQuantizationConfig.arm64(**kwargs)
    else:
        raise ValueError(f"unknown quantisation target {target!r}; use one of {QUANT_TARGETS}")
    quantizer = ORTQuantizer.from_pretrained(fp32_file.parent, file_name=fp32_file.name)
    with tempfile.TemporaryDirectory() as tmp:
        quantizer.quantize(quantization_config=qconfig, save_dir=tmp, file_suffix=target)
        (written,) = Path(tmp).glob("*.onnx")
        shutil.move(str(written), out_file)
    fp16_weights = store_fp32_weights_as_fp16(out_file) if settings.fp16_weight_storage else 0
    return {
        "tool": "optimum.onnxruntime.ORTQuantizer",
        "preset": f"AutoQuantizationConfig.{target}",
        "dynamic": True,
        "per_channel": qconfig.per_channel,
        "reduce_range": qconfig.reduce_range,
        "weights_dtype": str(qconfig.weights_dtype),
        "activations_dtype": str(qconfig.activations_dtype),
        "operators_to_quantize": list(qconfig.operators_to_quantize),
        "nodes_excluded": len(exclude),
        "fp32_head": settings.exclude_head,
        "fp32_ffn_output": settings.fp32_ffn_output,
        # fp32-computed weights stored as float16 (+ Cast) to save layer space
        "fp16_stored_weights": fp16_weights,
    }


def _write_model_dir(
    folder: Path, onnx_file: Path, tokenizer: Path, config: EncoderConfig, model_name: str = MODEL_FILE
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, folder / model_name)
    shutil.copyfile(tokenizer, folder / TOKENIZER_FILE)
    config.save(folder / CONFIG_FILE)


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.einsum("ij,ij->i", a, b)))


def _quality(
    vectors: dict[str, np.ndarray],
    catalogue: Catalogue,
    triplets: TripletSet | None,
    neighbours_path: Path | None,
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if triplets is None:
        return out
    for split in ("validation", "test"):
        rows = triplets.rows(catalogue, split)
        for name, v in vectors.items():
            out[f"{name}_{split}_accuracy"] = triplet_accuracy(v, *rows)
    test_anchors = triplets.rows(catalogue, "test")[0]
    for name, v in vectors.items():
        out[f"{name}_test_teacher_recall@10"] = teacher_recall(v, catalogue, test_anchors, neighbours_path)
    return out


@dataclass
class _VariantFolders:
    """What every exported variant's `encoder.json` shares; `dims` and `extra` change when V3 is projected."""

    head: dict[str, Any]
    base_name: str
    tokenizer: Path
    max_length: int
    dims: dict[str, int]
    quant_configs: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def encoder_config(self, variant: str) -> EncoderConfig:
        """The runtime config of a variant ("fp32", "int8_avx2", ...)."""
        return EncoderConfig(
            outputs=self.dims,
            max_length=self.max_length,
            base_model=self.base_name,
            text_version=TEXT_VERSION,
            quantization=self.quant_configs.get(variant.removeprefix("int8_"), {"dtype": "float32"}),
            extra={
                "head": {k: self.head[k] for k in ("in_dim", "hidden_dim", "out_dim")},
                "pooling": "mean",
                **self.extra,
            },
        )

    def write(self, folder: Path, onnx_file: Path, variant: str) -> None:
        """One loadable model folder (graph, tokenizer, config) for a variant."""
        _write_model_dir(folder, onnx_file, self.tokenizer, self.encoder_config(variant))


def _export_graphs(
    base_path: Path, head: dict[str, Any], onnx_dir: Path, config: ExportConfig
) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """The fp32 graph and its int8 quantisations: variant name -> file, and each target's quant config."""
    fp32_file = onnx_dir / FP32_FILE
    export_fp32(base_path, head, fp32_file, config.opset)
    quant_configs: dict[str, dict[str, Any]] = {}
    for target in QUANT_TARGETS:
        quant_configs[target] = quantise(
            fp32_file, target, config.quant, onnx_dir / f"model_int8_{target}.onnx"
        )
    variants = {"fp32": fp32_file, **{f"int8_{t}": onnx_dir / f"model_int8_{t}.onnx" for t in QUANT_TARGETS}}
    return variants, quant_configs


def _embed_variants(
    onnx_dir: Path, variants: Iterable[str], texts: list[str], outputs: Iterable[str], config: ExportConfig
) -> dict[str, dict[str, np.ndarray]]:
    """Each variant's vectors of `texts`, through the runtime encoder loaded from its folder."""
    embedded: dict[str, dict[str, np.ndarray]] = {}
    for name in variants:
        encoder = OnnxEncoder.load(onnx_dir / name, threads=config.threads)
        parts: list[dict[str, np.ndarray]] = []
        for first in progress(range(0, len(texts), 1024), desc=f"embed {name}", unit="chunk"):
            parts.append(encoder.encode(texts[first : first + 1024], batch_size=config.batch_size))
        embedded[name] = {out: np.concatenate([p[out] for p in parts]) for out in outputs}
    return embedded


def _fold_v3_projection(
    folders: _VariantFolders,
    variants: dict[str, Path],
    embedded: dict[str, dict[str, np.ndarray]],
    onnx_dir: Path,
    texts: list[str],
    config: ExportConfig,
    dim: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """Project V3 onto `dim` directions inside every graph; returns the parity record and the projection."""
    # Fit on the fp32 catalogue vectors; every variant's catalogue vectors are projected exactly
    # as the graphs will do it (appended below), so the parity numbers describe the shipped files.
    projection, energy = fit_v3_projection(embedded["fp32"]["v3"], dim)
    for vec in embedded.values():
        vec["v3"] = project_unit(vec["v3"], projection)
    for name, file in variants.items():
        append_v3_projection(file, projection)
        if name != "fp32" and config.quant.fp16_weight_storage:
            folders.quant_configs[name.removeprefix("int8_")]["fp16_stored_weights"] += (
                store_fp32_weights_as_fp16(file)
            )
    record: dict[str, Any] = {
        "from": folders.dims["v3"],
        "to": dim,
        "energy_kept": energy,
        "fit_rows": len(embedded["fp32"]["v3"]),
    }
    # The same dict object: the graph check below also lands in the runtime folder's encoder.json.
    folders.extra["v3_projection"] = record
    folders.dims["v3"] = dim
    for name, file in variants.items():
        folders.write(onnx_dir / name, file, name)
    # The folded graph must give what the numpy projection gave (a few texts, the shipped variant).
    check = OnnxEncoder.load(onnx_dir / SHIPPED, threads=config.threads).encode(texts[:16], batch_size=1)
    record["graph_vs_numpy_min_cosine"] = float(
        np.min(np.einsum("ij,ij->i", check["v3"], embedded[SHIPPED]["v3"][:16]))
    )
    return record, projection


def parity_sample(n: int, rows: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted row numbers of a seeded sample of `rows` of `n` (None: every row, when `rows` covers them)."""
    if rows is None or rows >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))


def _fp32_reference(
    base: BaseModel, head: dict[str, Any], catalogue: Catalogue, cache_dir: Path, config: ExportConfig
) -> tuple[dict[str, np.ndarray], bool]:
    """The fp32 model's vectors of the whole catalogue without an ONNX pass: the train stage's cached
    frozen-encoder vectors (computed here when the cache is gone) through the torch head; and whether
    the cache had them."""
    train_config = TrainConfig(max_length=int(head["config"]["max_length"]), threads=config.threads)
    # Named as the train stage named it (the cache key holds the name): the head's own record.
    trained_on = BaseModel(str(head.get("base_model", base.name)), base.path)
    v3, _, seconds = cached_frozen_embeddings(trained_on, catalogue, train_config, cache_dir)
    return {"v3": v3, "v4": head_vectors(head, v3)}, seconds == 0.0


def served_key(model_dir: Path, texts: Sequence[str]) -> str:
    """What the shipped model's catalogue vectors depend on: its graph file and the encoder texts (the
    index stage reuses export's vectors while this is unchanged)."""
    digest = hashlib.sha256((model_dir / MODEL_FILE).read_bytes())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _agreement_with_fp32(
    vec: dict[str, np.ndarray], fp32: dict[str, np.ndarray], rows: int
) -> dict[str, Any]:
    """Cosine and top-10 overlap of a quantised variant's vectors against the fp32 graph's."""
    entry: dict[str, Any] = {}
    for out in ("v3", "v4"):
        cos = np.einsum("ij,ij->i", vec[out], fp32[out])
        entry[f"{out}_mean_cosine_vs_fp32"] = float(cos.mean())
        entry[f"{out}_min_cosine_vs_fp32"] = float(cos.min())
        k = min(10, rows - 1)
        if k > 0:
            sample = np.arange(min(rows, 2000))
            mine = top_k_rows(vec[out], sample, k)
            ref = top_k_rows(fp32[out], sample, k)
            entry[f"{out}_top10_overlap_vs_fp32"] = float(
                np.mean([len(set(a) & set(b)) / k for a, b in zip(mine, ref, strict=True)])
            )
    return entry


def _quality_gate_failures(parity: dict[str, Any], variants: Iterable[str], max_drop: float) -> list[str]:
    """Every quality figure of an int8 variant more than `max_drop` below fp32's."""
    failures: list[str] = []
    for name in variants:
        if name == "fp32":
            continue
        for key, ref in parity["fp32"].items():
            got = parity[name].get(key)
            if ref is not None and got is not None and got < ref - max_drop:
                failures.append(f"{name} {key}: {got:.4f} < fp32 {ref:.4f} - {max_drop}")
    return failures


SERVED_VECTORS = {"v3": "v3", "v4": "v4_int8"}
SERVED_KEY_FILE = "served.json"


def _save_catalogue_vectors(vectors_dir: Path, embedded: dict[str, dict[str, np.ndarray]], key: str) -> None:
    """Catalogue vectors in row order for the evaluate and index stages (`.work/models/vectors/*.npy`).

    "v3"/"v4_int8" are what the shipped int8 x86 graph serves (`served.json` records `served_key`);
    fp32 for comparison.
    """
    vectors_dir.mkdir(parents=True, exist_ok=True)
    (vectors_dir / SERVED_KEY_FILE).unlink(missing_ok=True)
    served, fp32 = embedded[SHIPPED], embedded["fp32"]
    for name, values in {
        **{file: served[space] for space, file in SERVED_VECTORS.items()},
        "v3_fp32": fp32["v3"],
        "v4_fp32": fp32["v4"],
    }.items():
        np.save(vectors_dir / f"{name}.npy", values)
    (vectors_dir / SERVED_KEY_FILE).write_text(json.dumps({"key": key}) + "\n", encoding="utf-8")


def load_served_vectors(
    vectors_dir: Path, model_dir: Path, texts: Sequence[str]
) -> dict[str, np.ndarray] | None:
    """The shipped model's catalogue vectors export saved, when they are for this model and these texts."""
    try:
        saved = json.loads((vectors_dir / SERVED_KEY_FILE).read_text(encoding="utf-8"))
        if saved.get("key") != served_key(model_dir, texts):
            return None
        vectors = {space: np.load(vectors_dir / f"{file}.npy") for space, file in SERVED_VECTORS.items()}
    except (OSError, ValueError):
        return None
    return vectors if all(len(v) == len(texts) for v in vectors.values()) else None


def _enforce_gate(gate_failures: list[str], enforce: bool) -> None:
    """Warn about every failure; raise for the shipped model's when the gate is enforced.

    The build fails only for the shipped (x86 avx2) model; the arm64 variant is recorded and
    warned about, since the default deployment does not load it.
    """
    shipped = [f for f in gate_failures if f.startswith("int8_avx2 ")]
    for failure in gate_failures:
        log.warning("int8 parity gate: %s", failure)
    if shipped and enforce:
        raise ParityError("; ".join(shipped))


def export_models(
    catalogue: Catalogue,
    head_path: Path,
    onnx_dir: Path,
    runtime_dir: Path,
    config: ExportConfig = ExportConfig(),  # noqa: B008 - frozen dataclass, safe as a default
    triplets: TripletSet | None = None,
    neighbours_path: Path | None = None,
    cache_dir: Path | None = None,
) -> ExportResult:
    """Export fp32 + int8 (avx2, arm64) graphs, check parity, write the runtime model folder."""
    start = time.perf_counter()
    head = load_head(head_path)
    base = resolve_base_model(head["base_model_path"], cache_dir or onnx_dir / "cache")
    variants, quant_configs = _export_graphs(base.path, head, onnx_dir, config)
    folders = _VariantFolders(
        head=head,
        base_name=base.name,
        tokenizer=base.tokenizer_file,
        max_length=int(head["config"]["max_length"]),
        dims={"v4": int(head["out_dim"]), "v3": int(head["in_dim"])},
        quant_configs=quant_configs,
    )
    # One loadable folder per variant (parity uses the runtime encoder itself: one code path).
    for name, file in variants.items():
        folders.write(onnx_dir / name, file, name)

    texts = [anime_text(a) for a in catalogue]
    sample = parity_sample(len(texts), config.parity_rows)
    outputs = list(folders.dims)
    if sample is None:
        embedded = _embed_variants(onnx_dir, variants, texts, outputs, config)
        sampled = embedded
        fp32_graph = embedded["fp32"]
        rows = np.arange(len(texts))
    else:
        rows = sample
        embedded = _embed_variants(onnx_dir, [SHIPPED], texts, outputs, config)
        embedded["fp32"], reused = _fp32_reference(
            base, head, catalogue, cache_dir or onnx_dir / "cache", config
        )
        sampled = _embed_variants(
            onnx_dir, [n for n in variants if n != SHIPPED], [texts[i] for i in sample], outputs, config
        )
        fp32_graph = sampled["fp32"]
    # The fp32 graph must reproduce the torch head on its own V3 output (checks the appended ops).
    torch_v4 = head_vectors(head, fp32_graph["v3"])
    parity: dict[str, Any] = {
        "rows": len(texts),
        "sample_rows": len(rows),
        "fp32_graph_vs_torch_head_v4_min_cosine": float(
            np.min(np.einsum("ij,ij->i", fp32_graph["v4"], torch_v4))
        ),
    }
    if sample is not None:
        parity["fp32_reference_from_train_cache"] = reused
        # The torch reference the gate uses stands for the fp32 graph only if the two agree.
        parity["fp32_graph_vs_torch_reference_v3_min_cosine"] = float(
            np.min(np.einsum("ij,ij->i", fp32_graph["v3"], embedded["fp32"]["v3"][sample]))
        )
    if config.v3_dim is not None and config.v3_dim < folders.dims["v3"]:
        parity["v3_projection"], projection = _fold_v3_projection(
            folders, variants, embedded, onnx_dir, texts, config, config.v3_dim
        )
        if sampled is not embedded:
            for sampled_vectors in sampled.values():
                sampled_vectors["v3"] = project_unit(sampled_vectors["v3"], projection)
    fp32 = embedded["fp32"]
    fp32_rows = {out: values[rows] for out, values in fp32.items()}
    for name in variants:
        vec: dict[str, np.ndarray] | None = embedded.get(name)
        if name == "fp32":
            entry: dict[str, Any] = {}
        elif vec is not None:
            entry = _agreement_with_fp32(vec, fp32, len(texts))
        else:
            entry = _agreement_with_fp32(sampled[name], fp32_rows, len(rows))
        if vec is not None:
            entry.update(_quality(vec, catalogue, triplets, neighbours_path))
        parity[name] = entry
    judged = [name for name in variants if name in embedded]
    gate_failures = (
        _quality_gate_failures(parity, judged, config.max_quality_drop) if triplets is not None else []
    )
    parity["gate_failures"] = gate_failures
    parity["quantization"] = quant_configs
    parity["settings"] = asdict(config)

    folders.write(runtime_dir, variants[SHIPPED], SHIPPED)
    _save_catalogue_vectors(onnx_dir.parent / "vectors", embedded, served_key(runtime_dir, texts))
    files = {p.name: p.stat().st_size for p in sorted(onnx_dir.glob("*.onnx"))}
    files.update({f"runtime/{p.name}": p.stat().st_size for p in sorted(runtime_dir.iterdir())})
    parity["files"] = files
    seconds = time.perf_counter() - start
    parity["seconds"] = seconds
    (onnx_dir / "parity.json").write_text(json.dumps(parity, indent=2) + "\n", encoding="utf-8")
    _enforce_gate(gate_failures, config.enforce_gate)
    return ExportResult(
        onnx_dir=onnx_dir, runtime_dir=runtime_dir, files=files, parity=parity, seconds=seconds
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `anime-build export`."""
    parser = subparsers.add_parser(
        "export",
        help="Export V3+V4 as one ONNX graph (optimum), quantise to int8 (avx2 + arm64), check parity.",
        description="Writes .work/models/onnx/{model_fp32,model_int8_avx2,model_int8_arm64}.onnx, one "
        "loadable folder per variant, parity.json (int8 vs fp32 cosine, triplet accuracy, teacher "
        "recall@10), and the runtime folder .work/models/runtime/{model.onnx,tokenizer.json,encoder.json} "
        "(int8 avx2). Fails if int8 loses more than --max-drop of fp32 quality.",
    )
    defaults = ExportConfig()
    parser.add_argument("--opset", type=int, default=defaults.opset, help="ONNX opset (default %(default)s)")
    parser.add_argument("--no-per-channel", action="store_true", help="per-tensor weight scales")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (x86 only)")
    parser.add_argument(
        "--quantise-head", action="store_true", help="also quantise the V4 head (default: fp32)"
    )
    parser.add_argument(
        "--quantise-ffn-output",
        action="store_true",
        help="also quantise the FFN-output MatMuls (smaller, fails the parity gate on MiniLM)",
    )
    parser.add_argument(
        "--fp32-weight-storage",
        action="store_true",
        help="keep the non-quantised weights stored as fp32 (default: float16 + Cast, ~8 MB smaller)",
    )
    parser.add_argument(
        "--ops", nargs="+", metavar="OP", help="operator types to quantise (default: the preset's list)"
    )
    parser.add_argument(
        "--threads", type=int, default=defaults.threads, help="onnxruntime threads for parity"
    )
    parser.add_argument("--max-drop", type=float, default=defaults.max_quality_drop, help="quality gate")
    parser.add_argument(
        "--v3-dim",
        type=int,
        default=defaults.v3_dim,
        help="project the V3 output onto this many principal directions (default %(default)s; "
        "0 keeps the encoder's full width)",
    )
    parser.set_defaults(func=run)


def runtime_model_dir(paths: BuildPaths) -> Path:
    """Where the runtime (int8 avx2) model folder goes; the index/layers stages read it."""
    return paths.models / "runtime"


def config_from_args(args: argparse.Namespace) -> ExportConfig:
    """The export configuration the CLI arguments describe."""
    return ExportConfig(
        opset=args.opset,
        quant=QuantSettings(
            per_channel=not args.no_per_channel,
            reduce_range=args.reduce_range,
            exclude_head=not args.quantise_head,
            fp32_ffn_output=not args.quantise_ffn_output,
            fp16_weight_storage=not args.fp32_weight_storage,
            operators_to_quantize=tuple(args.ops) if args.ops else None,
        ),
        threads=args.threads,
        max_quality_drop=args.max_drop,
        v3_dim=args.v3_dim or None,
    )


def run_and_report(paths: BuildPaths, config: ExportConfig) -> ExportResult:
    """Export, quantise and check the build's head and encoder, then log files and parity."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = export_models(
        Catalogue.load(paths.catalogue),
        paths.models / HEAD_FILE,
        paths.models / "onnx",
        runtime_model_dir(paths),
        config,
        triplets=TripletSet.load(paths.triplets) if paths.triplets.is_file() else None,
        neighbours_path=paths.neighbours,
        cache_dir=paths.work / "cache",
    )
    log.info("export: %.1fs, files %s", result.seconds, json.dumps(result.files))
    log.info("parity: %s", json.dumps({k: v for k, v in result.parity.items() if k != "settings"}, indent=1))
    return result


def run_default(paths: BuildPaths) -> ExportResult:
    """`anime-build export` with its defaults (what `anime-build all` runs)."""
    return run_and_report(paths, ExportConfig())


def run(args: argparse.Namespace) -> int:
    """CLI entry of `anime-build export`."""
    run_and_report(BuildPaths.from_env(), config_from_args(args))
    return 0
