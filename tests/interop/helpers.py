"""Tiny real models saved by transformers itself, and readers of what it wrote that do not use
tiecheck (safetensors ``safe_open`` and ``torch.load``), so every expectation is checked against
an independent source: the files as the libraries see them, and the model as transformers loads it.

Imported by the interop test modules only after ``pytest.importorskip("transformers")``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from packaging.version import Version
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from producers import ENCODER, GPT2, HIDDEN, VISION_TOWER, VOCAB
from tiecheck import Severity
from tiecheck.analysis.groups import GroupKind

TF_VERSION = Version(transformers.__version__)
TF5 = TF_VERSION.major >= 5

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------
# tiny models of the families the brief names (explicit configurations, no hub access)

_DECODER = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 64,
}
_SEQ2SEQ = {
    "vocab_size": VOCAB,
    "d_model": HIDDEN,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "max_position_embeddings": 32,
}
_T5 = {
    "vocab_size": VOCAB,
    "d_model": HIDDEN,
    "d_kv": 8,
    "d_ff": 32,
    "num_layers": 1,
    "num_heads": 2,
}


def _qwen2_tied() -> Any:
    return transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(**_DECODER, tie_word_embeddings=True)
    )


def _llama_untied() -> Any:
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**_DECODER))


def _gpt2() -> Any:
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2))


def _t5() -> Any:  # T5 v1.0 (t5-small): flag left at its default
    return transformers.T5ForConditionalGeneration(transformers.T5Config(**_T5))


def _t5_flag_false() -> Any:  # what a Flan-T5 / T5 v1.1 config says
    config = transformers.T5Config(**_T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    return transformers.T5ForConditionalGeneration(config)


def _bart() -> Any:
    return transformers.BartForConditionalGeneration(transformers.BartConfig(**_SEQ2SEQ))


def _bert() -> Any:
    return transformers.BertForMaskedLM(transformers.BertConfig(**ENCODER))


def _whisper() -> Any:
    config = transformers.WhisperConfig(
        vocab_size=VOCAB,
        d_model=HIDDEN,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_mel_bins=8,
        max_source_positions=16,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    return transformers.WhisperForConditionalGeneration(config)


TINY: dict[str, Callable[[], Any]] = {
    "qwen2-tied": _qwen2_tied,
    "llama-untied": _llama_untied,
    "gpt2": _gpt2,
    "t5-v1.0": _t5,
    "t5-flag-false": _t5_flag_false,
    "bart": _bart,
    "bert-mlm": _bert,
    "whisper": _whisper,
}


def tiny(name: str, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TINY[name]().eval()


# ---------------------------------------------------------------------------------------------
# tiny models of any registry family, from transformers' own config class (the sweep)

_SMALL = {
    **_DECODER,
    "d_model": HIDDEN,
    "n_embd": HIDDEN,
    "n_layer": 1,
    "num_layers": 1,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "num_decoder_layers": 1,
    "n_head": 2,
    "num_heads": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "ffn_dim": 32,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "d_ff": 32,
    "n_inner": 32,
    "d_kv": 8,
    "head_dim": 8,
    "n_positions": 64,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 0,
    # mixture-of-experts and MLA models: keep them at a few thousand parameters
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 16,
    "shared_expert_intermediate_size": 16,
    "kv_lora_rank": 8,
    "q_lora_rank": 8,
    "qk_rope_head_dim": 4,
    "qk_nope_head_dim": 4,
    "v_head_dim": 8,
    "n_group": 1,
    "topk_group": 1,
}
_OVERRIDES: dict[str, dict[str, Any]] = {
    "falcon": {"head_dim": None},  # a read-only property there
    "mamba2": {
        "num_heads": 4,
        "head_dim": 8,
        "expand": 2,
        "n_groups": 1,
        "state_size": 8,
        "chunk_size": 8,
    },
}
_TEXT = {**_DECODER, "head_dim": 8}
_QWEN_VISION = {
    "depth": 1,
    "hidden_size": HIDDEN,
    "embed_dim": HIDDEN,
    "num_heads": 2,
    "intermediate_size": 32,
    "patch_size": 2,
    "spatial_merge_size": 1,
    "temporal_patch_size": 1,
    "out_hidden_size": HIDDEN,
    "hidden_act": "gelu",
}


def _nested_config(model_type: str, tie: bool) -> Any:
    """VLM configs: a tiny text and vision tower (the defaults are billions of parameters)."""
    config_class = transformers.CONFIG_MAPPING[model_type]
    if model_type == "gemma3":
        return config_class(
            text_config={**_TEXT, "sliding_window": 8},
            vision_config=VISION_TOWER,
            mm_tokens_per_image=4,
            image_token_index=5,
            boi_token_index=6,
            eoi_token_index=7,
            tie_word_embeddings=tie,
        )
    text = {**_TEXT, "rope_scaling": {"rope_type": "default", "mrope_section": [1, 1, 2]}}
    if model_type.endswith("_moe"):
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16)
    return config_class(
        text_config=text,
        vision_config=_QWEN_VISION,
        tie_word_embeddings=tie,
        image_token_id=5,
        video_token_id=6,
        vision_start_token_id=7,
    )


NESTED_TYPES = ("gemma3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")


def lm_class_for(model_type: str) -> Any | None:
    """The head-bearing class transformers maps a model type to (seq2seq, masked, causal, VLM)."""
    from transformers.models.auto import modeling_auto as auto

    for mapping in (
        auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
        auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
        auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    ):
        if model_type in mapping:
            return getattr(transformers, mapping[model_type], None)
    return None


def tiny_of_type(model_type: str, tie: bool, seed: int = 0) -> Any:
    cls = lm_class_for(model_type)
    assert cls is not None, model_type
    if model_type in NESTED_TYPES:
        config = _nested_config(model_type, tie)
    else:
        config_class = transformers.CONFIG_MAPPING[model_type]
        default = config_class()
        kwargs = {k: v for k, v in _SMALL.items() if hasattr(default, k)}
        for key, value in _OVERRIDES.get(model_type, {}).items():
            if value is None:
                kwargs.pop(key, None)
            else:
                kwargs[key] = value
        config = config_class(**kwargs, tie_word_embeddings=tie)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(config).eval()


# ---------------------------------------------------------------------------------------------
# saving the way real checkpoints are written


def save_bin(model: Any, folder: Path) -> Path:
    """A ``pytorch_model.bin`` as transformers 4.x wrote it: ``torch.save`` of the state dict,
    which keeps tied parameters on one storage.

    transformers 5 accepts ``safe_serialization=False`` but ignores it (observed on 5.23: it
    writes ``model.safetensors``), so the pickle is written here with ``torch.save`` when the
    library does not write one itself.
    """
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=False)
    target = folder / "pytorch_model.bin"
    if not target.exists():
        for stale in folder.glob("model*.safetensors*"):
            stale.unlink()
        torch.save(model.state_dict(), target)
    return target


def save_sharded_bin(model: Any, folder: Path, max_shard_size: int = 4000) -> Path:
    """Sharded pickles as transformers 4.x wrote them: huggingface_hub's splitter (which keeps
    tensors that share storage in one shard), one ``torch.save`` per shard, and the index."""
    from huggingface_hub import split_torch_state_dict_into_shards

    folder.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # as save_pretrained records it
    model.config.save_pretrained(folder)
    state = model.state_dict()
    split = split_torch_state_dict_into_shards(
        state, filename_pattern="pytorch_model{suffix}.bin", max_shard_size=max_shard_size
    )
    for filename, names in split.filename_to_tensors.items():
        torch.save({n: state[n] for n in names}, folder / filename)
    index = folder / "pytorch_model.bin.index.json"
    index.write_text(
        json.dumps({"metadata": split.metadata, "weight_map": split.tensor_to_filename}, indent=2)
    )
    return index


def save(model: Any, folder: Path, layout: str) -> Path:
    """Write ``model`` in one of the layouts the tests compare: safetensors, sharded, bin."""
    if layout == "safetensors":
        model.save_pretrained(folder)
    elif layout == "sharded":
        model.save_pretrained(folder, max_shard_size="4KB")
        assert (folder / "model.safetensors.index.json").is_file(), "expected a sharded save"
    elif layout == "bin":
        save_bin(model, folder)
    elif layout == "sharded-bin":
        save_sharded_bin(model, folder)
    else:
        raise ValueError(layout)
    return folder


def edit_safetensors(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Rewrite ``model.safetensors`` after ``edit`` changed its state dict in place, the way
    hand-made conversions and merge scripts produce real-world files."""
    path = folder / "model.safetensors"
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    state = load_file(path)
    edit(state)
    save_file(state, path, metadata=metadata or {"format": "pt"})


# ---------------------------------------------------------------------------------------------
# independent readers


def stored_tensors(folder: Path) -> dict[str, str]:
    """Every tensor name in the folder's weight files -> the file (relative) holding it, read
    with safetensors' own reader and ``torch.load``; the folder holds one format only."""
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                assert key not in found, f"{key} stored twice"
                found[key] = path.name
    for path in sorted(folder.glob("*.bin")):
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        for key in state:
            assert key not in found, f"{key} stored twice"
            found[key] = path.name
    return found


def load_pickle(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def read_tensor(folder: Path, name: str) -> torch.Tensor:
    file = stored_tensors(folder)[name]
    if file.endswith(".safetensors"):
        with safe_open(folder / file, "pt") as f:
            return f.get_tensor(name)
    return load_pickle(folder / file)[name]


# ---------------------------------------------------------------------------------------------
# transformers as the client


def load_model(folder: Path, cls: Any = None) -> tuple[Any, dict[str, Any]]:
    """Load with the class named in config.json; returns the model and its loading info."""
    if cls is None:
        config = json.loads((folder / "config.json").read_text())
        cls = getattr(transformers, config["architectures"][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_pretrained(folder, output_loading_info=True)


def tied_in_memory(model: Any) -> bool:
    """Whether the loaded model's output projection is its input embedding (one tensor)."""
    output = model.get_output_embeddings()
    return output is not None and output.weight is model.get_input_embeddings().weight


@contextlib.contextmanager
def transformers_log() -> Iterator[list[str]]:
    """Collect the messages transformers logs (it does not propagate to the root logger)."""
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = _Collect(level=logging.WARNING)
    logger = logging.getLogger("transformers")
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        transformers.logging.set_verbosity(level)


# ---------------------------------------------------------------------------------------------
# assertions shared by the modules


def errors(report: Any) -> list[str]:
    return [f"{f.code}: {f.message}" for f in report.findings if f.severity is Severity.ERROR]


def codes(report: Any) -> list[str]:
    return [f.code for f in report.findings]


def head_group(report: Any) -> Any:
    heads = [g for g in report.tie_groups if g.kind is GroupKind.HEAD]
    assert len(heads) == 1, f"expected one embedding-head group, got {heads}"
    return heads[0]


def assert_members_match_files(report: Any, folder: Path) -> dict[str, str]:
    """Each tie-group member tiecheck calls stored is in the files, in the file it names; each
    member it calls absent is in no file."""
    files = stored_tensors(folder)
    for group in report.tie_groups:
        for member in group.members:
            if member.stored:
                assert member.name in files, f"tiecheck says {member.name} is stored; it is not"
                where = files[member.name]
                assert member.file == where, (
                    f"{member.name}: tiecheck says {member.file}, not {where}"
                )
            else:
                assert member.name not in files, (
                    f"tiecheck says {member.name} is absent; {files[member.name]} holds it"
                )
    return files
