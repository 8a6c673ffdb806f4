"""Fixtures for the embedding stages: a tiny BERT-style sentence model and synthetic triplets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anime_pipeline.evaluation.embedding_eval import TripletSet
from anime_recommender.catalogue import Catalogue
from anime_recommender.text import anime_text


def make_tiny_bert(folder: Path, corpus: list[str]) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocab learned from `corpus`, saved like a
    sentence-transformers folder (config.json, model.safetensors, tokenizer.json, vocab.txt)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    # Like the real MiniLM tokenizer.json: fixed padding that the runtime encoder must override.
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=64)
    tok.enable_truncation(max_length=64)
    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizerFast(tokenizer_object=tok).save_pretrained(str(folder))
    tok.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config, add_pooling_layer=False).eval().save_pretrained(str(folder))
    return folder


def synthetic_triplets(catalogue: Catalogue, per_anchor: int = 12, seed: int = 0) -> TripletSet:
    """Triplets from tag Jaccard: positive = a top-3 neighbour, negative = a clearly less similar
    anime; anchors split 60/20/20 into train/validation/test."""
    rng = np.random.default_rng(seed)
    tags = [set(a.tags) for a in catalogue]
    n = len(catalogue)
    sim = np.array([[len(x & y) / max(len(x | y), 1) for y in tags] for x in tags])
    np.fill_diagonal(sim, -1)
    ids = np.asarray(catalogue.ids, dtype=np.int64)
    split_of = np.zeros(n, dtype=np.uint8)
    perm = rng.permutation(n)
    split_of[perm[int(0.6 * n) : int(0.8 * n)]] = 1
    split_of[perm[int(0.8 * n) :]] = 2
    anchor, positive, negative, margin, split = [], [], [], [], []
    for i in range(n):
        order = np.argsort(-sim[i])
        for _ in range(per_anchor):
            p = order[rng.integers(0, 3)]
            candidates = np.flatnonzero(sim[i] < sim[i, p] - 0.2)
            candidates = candidates[candidates != i]
            if len(candidates) == 0:
                continue
            q = rng.choice(candidates)
            anchor.append(ids[i])
            positive.append(ids[p])
            negative.append(ids[q])
            margin.append(sim[i, p] - sim[i, q])
            split.append(split_of[i])
    return TripletSet(
        anchor=np.asarray(anchor, dtype=np.int64),
        positive=np.asarray(positive, dtype=np.int64),
        negative=np.asarray(negative, dtype=np.int64),
        margin=np.asarray(margin, dtype=np.float32),
        split=np.asarray(split, dtype=np.uint8),
    )


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, tiny_catalogue: Catalogue) -> Path:
    """Folder of a tiny random BERT sentence model (seconds to build, no download)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), [anime_text(a) for a in tiny_catalogue])


@pytest.fixture(scope="session")
def tiny_triplets(tiny_catalogue: Catalogue) -> TripletSet:
    """Tag-Jaccard triplets over the tiny catalogue (a stand-in for the V2 teacher's)."""
    return synthetic_triplets(tiny_catalogue)
