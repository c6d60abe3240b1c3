"""The built-in registry of model families: where each keeps its embedding and head, and what
its configuration class assumes when ``tie_word_embeddings`` is absent.

This replaces importing transformers (seconds of start-up, and it knows only what it was
released with). Names are in-memory names; on-disk prefixes (``language_model.``,
``base_model.model.``) are matched in ``groups``. ``#`` in a name stands for a layer number.
Facts come from each family's configuration and modelling code (see TYING.md, section 3).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    embedding: str
    head: str
    aliases: tuple[str, ...] = ()
    """names the architecture always shares with the embedding (T5 and BART encoder/decoder)."""
    bias: tuple[str, str] | None = None
    """(source, alias) of a bias the architecture always shares (BERT, RoBERTa)."""


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    default_tied: bool
    layouts: tuple[Layout, ...]
    flag: str = "tie_word_embeddings"
    flag_ignored: bool = False
    """the remote modelling code ties whatever the config says (MosaicML's MPT)."""
    aliases_follow_flag: bool = True
    """transformers 5.x unties architecture aliases (BART's encoder/decoder embeddings, BERT's
    decoder bias) with the flag; T5 keeps one ``shared`` module whatever the flag says."""
    flag_scales_output: bool = False
    """the tie flag also rescales the decoder output (T5), so flipping it changes the model."""


DECODER = Layout("model.embed_tokens.weight", "lm_head.weight")
VLM_DECODER = Layout("model.language_model.embed_tokens.weight", "lm_head.weight")
GPT2 = (Layout("transformer.wte.weight", "lm_head.weight"), Layout("wte.weight", "lm_head.weight"))
BLOOM = (
    Layout("transformer.word_embeddings.weight", "lm_head.weight"),
    Layout("word_embeddings.weight", "lm_head.weight"),
)
T5_LAYOUT = Layout(
    "shared.weight",
    "lm_head.weight",
    aliases=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"),
)
SEQ2SEQ_SHARED = Layout(
    "model.shared.weight",
    "lm_head.weight",
    aliases=("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"),
)

FAMILIES: tuple[Family, ...] = (
    Family(
        "llama-like (untied by default)",
        (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen2_moe",
            "qwen3",
            "qwen3_moe",
            "phi",
            "phi3",
            "phimoe",
            "olmo",
            "olmo2",
            "olmoe",
            "stablelm",
            "deepseek_v2",
            "deepseek_v3",
            "granite",
            "granitemoe",
            "granitemoeshared",
            "nemotron",
            "jamba",
            "ministral",
            "glm",
            "glm4",
            "helium",
            "exaone4",
            "seed_oss",
        ),
        False,
        (VLM_DECODER, DECODER),
    ),
    Family(
        "llama-like (tied by default)",
        (
            "gemma",
            "gemma2",
            "gemma3",
            "gemma3_text",
            "cohere",
            "cohere2",
            "smollm3",
            "starcoder2",
        ),
        True,
        (VLM_DECODER, DECODER),
    ),
    Family(
        "qwen-vl",
        ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"),
        False,
        (VLM_DECODER, DECODER),
    ),
    Family("gpt2", ("gpt2", "gpt_bigcode"), True, GPT2),
    Family("gptj", ("gptj",), False, (Layout("transformer.wte.weight", "lm_head.weight"),)),
    Family(
        "gpt-neox", ("gpt_neox",), False, (Layout("gpt_neox.embed_in.weight", "embed_out.weight"),)
    ),
    Family(
        "opt",
        ("opt",),
        True,
        (
            Layout("model.decoder.embed_tokens.weight", "lm_head.weight"),
            Layout("decoder.embed_tokens.weight", "lm_head.weight"),
        ),
    ),
    Family("bloom", ("bloom",), True, BLOOM),
    Family("falcon", ("falcon", "RefinedWeb", "RefinedWebModel"), True, BLOOM),
    Family(
        "mpt",
        ("mpt",),
        True,
        (Layout("transformer.wte.weight", "lm_head.weight"),),
        flag_ignored=True,
    ),
    Family(
        "olmo (hf_olmo)",
        ("hf_olmo",),
        True,
        (Layout("model.transformer.wte.weight", "model.transformer.ff_out.weight"),),
        flag="weight_tying",
    ),
    Family(
        "t5",
        ("t5", "longt5", "umt5"),
        True,
        (T5_LAYOUT,),
        aliases_follow_flag=False,
        flag_scales_output=True,
    ),
    # Switch Transformers copies T5's modelling code, but transformers 5.x does not force its
    # flag, so an untied flag unties the encoder/decoder embeddings too.
    Family(
        "switch_transformers", ("switch_transformers",), True, (T5_LAYOUT,), flag_scales_output=True
    ),
    # MT5Config defaults to tie_word_embeddings=False in transformers 4.x (TYING.md section 2);
    # 5.x forces the flag true and keeps a stored head that differs.
    Family(
        "mt5", ("mt5",), False, (T5_LAYOUT,), aliases_follow_flag=False, flag_scales_output=True
    ),
    Family(
        "bart-like",
        (
            "bart",
            "mbart",
            "pegasus",
            "marian",
            "blenderbot",
            "blenderbot-small",
            "plbart",
            "m2m_100",
            "nllb-moe",
            "bigbird_pegasus",
        ),
        True,
        (SEQ2SEQ_SHARED,),
    ),
    # LED keeps its encoder-decoder under ``led.`` but its head at the top level.
    Family(
        "led",
        ("led",),
        True,
        (
            Layout(
                "led.shared.weight",
                "lm_head.weight",
                aliases=("led.encoder.embed_tokens.weight", "led.decoder.embed_tokens.weight"),
            ),
        ),
    ),
    Family(
        "bert",
        ("bert",),
        True,
        (
            Layout(
                "bert.embeddings.word_embeddings.weight",
                "cls.predictions.decoder.weight",
                bias=("cls.predictions.bias", "cls.predictions.decoder.bias"),
            ),
        ),
    ),
    Family(
        "roberta",
        ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"),
        True,
        (
            Layout(
                "roberta.embeddings.word_embeddings.weight",
                "lm_head.decoder.weight",
                bias=("lm_head.bias", "lm_head.decoder.bias"),
            ),
        ),
    ),
    Family(
        "distilbert",
        ("distilbert",),
        True,
        (Layout("distilbert.embeddings.word_embeddings.weight", "vocab_projector.weight"),),
    ),
    Family(
        "electra",
        ("electra",),
        True,
        (Layout("electra.embeddings.word_embeddings.weight", "generator_lm_head.weight"),),
    ),
    Family(
        "whisper",
        ("whisper",),
        True,
        (Layout("model.decoder.embed_tokens.weight", "proj_out.weight"),),
    ),
    Family(
        "mamba",
        ("mamba", "falcon_mamba"),
        True,
        (
            Layout("backbone.embeddings.weight", "lm_head.weight"),
            Layout("backbone.embedding.weight", "lm_head.weight"),
        ),
    ),
    # Mamba2Config defaults to tie_word_embeddings=False (transformers 4.x and 5.x alike).
    Family(
        "mamba2",
        ("mamba2",),
        False,
        (
            Layout("backbone.embeddings.weight", "lm_head.weight"),
            Layout("backbone.embedding.weight", "lm_head.weight"),
        ),
    ),
    Family(
        "internlm2",
        ("internlm2",),
        False,
        (Layout("model.tok_embeddings.weight", "output.weight"),),
    ),
    Family(
        "chatglm",
        ("chatglm",),
        False,
        (
            Layout(
                "transformer.embedding.word_embeddings.weight", "transformer.output_layer.weight"
            ),
        ),
    ),
    Family(
        "phi (MixFormer remote code)",
        ("mixformer-sequential", "phi-msft"),
        False,
        (Layout("layers.0.wte.weight", "layers.#.linear.weight"),),
    ),
    # Checkpoints without a transformers config: Meta's original Llama, torchtitan, torchtune,
    # Lingua, and llama.cpp's GGUF names.
    Family(
        "meta/torchtitan/torchtune", (), False, (Layout("tok_embeddings.weight", "output.weight"),)
    ),
    Family("gguf names", (), False, (Layout("token_embd.weight", "output.weight"),)),
)

BY_MODEL_TYPE: dict[str, Family] = {t: f for f in FAMILIES for t in f.model_types}


def family_for(model_type: str | None) -> Family | None:
    return BY_MODEL_TYPE.get(model_type) if model_type else None
