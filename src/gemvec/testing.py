"""A tiny random EmbeddingGemma-shaped checkpoint, for tests that must not need the real model.

It has the real layout (config, safetensors, tokenizer.json, 1_Pooling, 2_Dense, 3_Dense,
prompts), so everything from loading to the CLI runs on it, and the reference
implementation (transformers / sentence-transformers) can load it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from gemvec.model.checkpoint import expected_encoder_shapes
from gemvec.model.config import Gemma3TextConfig

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Mars is known as the Red Planet. Venus is Earth's twin.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "敏捷的棕色狐狸跳过了懒狗。 日本語のテキストです。",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "task: search result | query: title: none | text: classification clustering similarity",
]


def tiny_tokenizer(vocab_size: int = 400) -> Tokenizer:
    """A byte-level BPE tokenizer (never produces <unk>) with Gemma's special ids and <bos>/<eos> template."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 1)]
    )
    return tokenizer


def tiny_config(vocab_size: int, **overrides) -> Gemma3TextConfig:
    values = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        layer_types=("sliding_attention", "sliding_attention", "full_attention", "sliding_attention"),
        sliding_window=16,  # bidirectional window 9: short texts already cross it
        query_pre_attn_scalar=32,
        max_position_embeddings=2048,
    )
    values.update(overrides)
    return Gemma3TextConfig(**values)


def make_tiny_checkpoint(folder: str | Path, seed: int = 0, dense_dim: int = 128, **config_overrides) -> Path:
    """Write a random, complete checkpoint to `folder` and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer.get_vocab_size(), **config_overrides)
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    weights = {
        name: randn(*shape, std=0.1 if len(shape) == 1 else 0.05)
        for name, shape in expected_encoder_shapes(config).items()
    }
    weights["embed_tokens.weight"] = randn(config.vocab_size, config.hidden_size, std=0.5)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})

    raw = config.to_dict() | {
        "architectures": ["Gemma3TextModel"],
        "hidden_activation": "gelu_pytorch_tanh",
        "bos_token_id": 2,
        "eos_token_id": 1,
        "attention_bias": False,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "rope_scaling": None,
    }
    _write_json(folder / "config.json", raw)
    tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "padding_side": "right",
            "model_max_length": 2048,
        },
    )
    _write_sentence_transformers_files(folder, config.hidden_size, dense_dim, randn)
    return folder


def _write_sentence_transformers_files(folder: Path, hidden: int, dense_dim: int, randn) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 4, "name": "4", "path": "4_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": 2048, "do_lower_case": False})
    _write_json(
        folder / "1_Pooling/config.json",
        {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True, "include_prompt": True},
    )
    for sub, (out_f, in_f) in {"2_Dense": (dense_dim, hidden), "3_Dense": (hidden, dense_dim)}.items():
        _write_json(
            folder / sub / "config.json",
            {
                "in_features": in_f,
                "out_features": out_f,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            },
        )
        save_file(
            {"linear.weight": randn(out_f, in_f, std=in_f**-0.5)}, str(folder / sub / "model.safetensors")
        )
    from gemvec.prompts import Task

    prompts = {"query": Task.QUERY.prompt, "document": Task.DOCUMENT.prompt}
    _write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )
    (folder / "4_Normalize").mkdir(exist_ok=True)


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
