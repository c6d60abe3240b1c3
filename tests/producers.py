"""Checkpoints written by the tools that write them in the wild, and the loaders that read them.

Every builder here calls the producer itself (``torch.save`` of the exact object a training
script saves, ``torch.distributed.checkpoint.save``, torchtune's checkpointer, accelerate's
``save_model``, ``safetensors.torch.save_model``, transformers' ``save_pretrained``, PEFT's
``save_pretrained``, mlx-lm's ``convert``); where a producer is a script rather than a library
(nanoGPT's ``train.py``, Meta's reference code, Lingua), the model is rebuilt with the same
parameter names in ``interop/producer_models.py`` and saved exactly as the script saves it.
Each loader is the consumer's own loading path (strict ``load_state_dict``,
``safetensors.torch.load_model``, ``from_pretrained``, ``mlx_lm.load``), so a test can say
"what ``tiecheck fix`` wrote loads where it is meant to, and computes the same logits".

torch, transformers and the producers are imported inside the functions: importing this
module costs nothing, so the fast suite can import it without them.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typer.testing import CliRunner

from tiecheck.cli import app

if TYPE_CHECKING:
    import torch

VOCAB = 64
HIDDEN = 16
INPUT_IDS = [[3, 9, 4, 7, 12, 8, 11, 6]]
"""Token ids for every logits comparison: none is a special token of the tiny configs (0-2
are pad/bos/eos, 5 is the VLMs' image token)."""


# ---------------------------------------------------------------------------------------------
# tiecheck, run as a user runs it


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def tiecheck_cli(*args: str | Path) -> CliResult:
    """The real command line, in-process; an exception other than the exit is re-raised so a
    crash shows as a traceback, not as an exit code."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def inspect_json(source: str | Path, *args: str | Path) -> tuple[int, dict[str, Any]]:
    """``tiecheck inspect SOURCE --json`` (no configuration file): the exit code and the one
    report. Fails the test with tiecheck's stderr when the source could not be opened."""
    result = tiecheck_cli("inspect", source, "--json", "--isolated", "-q", *args)
    document = json.loads(result.stdout)
    assert document["reports"], f"no report for {source}: {document['errors']} {result.stderr}"
    return result.exit_code, document["reports"][0]


def fix_cli(source: str | Path, to: str, output: Path, *args: str | Path) -> CliResult:
    return tiecheck_cli("fix", source, "--to", to, "-o", output, "-q", *args)


def codes(report: dict[str, Any]) -> list[str]:
    return [f["code"] for f in report["findings"]]


def messages(report: dict[str, Any], severity: str | None = None) -> list[str]:
    return [
        f"{f['code']}: {f['message']}"
        for f in report["findings"]
        if severity is None or f["severity"] == severity
    ]


def head_groups(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in report["tie_groups"] if g["kind"] == "embedding-head"]


def report_names(report: dict[str, Any]) -> set[str]:
    """Every tensor name the report mentions in tie groups, shared storages and duplicates."""
    names: set[str] = set()
    for g in report["tie_groups"]:
        names.update(g["members"])
    for s in report["shared_storage"]:
        names.update(s["keys"])
    for d in report["duplicates"] or []:
        names.update(d["keys"])
    return names


# ---------------------------------------------------------------------------------------------
# reading what was written, without tiecheck


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every ``*.safetensors`` file in ``folder`` (safetensors' own reader);
    a name stored twice fails the test."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        for name, tensor in load_file(str(path)).items():
            assert name not in state, f"{name} stored twice in {folder}"
            state[name] = tensor
    assert state, f"no safetensors file in {folder}: {sorted(p.name for p in folder.iterdir())}"
    return state


def safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def load_into(model: Any, folder: Path) -> None:
    """Load a fix output strictly into ``model``: the state dict straight from the files when
    every name is there, else ``safetensors.torch.load_model`` (the loader made for
    deduplicated ties: it accepts a missing name only when the model shares that tensor with
    a stored one). Either way a missing or unexpected name fails."""
    files = weight_files(folder)
    state = read_safetensors_folder(folder)
    if set(state) == set(model.state_dict()):
        model.load_state_dict(state, strict=True)
        return
    assert len(files) == 1, f"a deduplicated tie in several files: {files}"
    from safetensors.torch import load_model

    load_model(model, str(files[0]), strict=True)


def randomize(model: Any, seed: int) -> Any:
    """Give every parameter distinct, trained-looking values (freshly initialised norms are all
    ones and biases all zeros, which makes unrelated tensors byte-identical). Tied parameters
    stay tied: they are one Parameter."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))
    return model


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the producers' warnings and progress bars (they are not under test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------------------------
# nanoGPT: train.py saves {"model", "optimizer", "model_args", "iter_num", "best_val_loss",
# "config"} with torch.save; "model" is raw_model.state_dict(), which after torch.compile is
# the OptimizedModule's (every key prefixed "_orig_mod."), and the tie puts
# transformer.wte.weight and lm_head.weight on one storage.

NANOGPT_TRAIN_CONFIG = {
    "out_dir": "out-shakespeare-char",
    "eval_interval": 250,
    "log_interval": 10,
    "eval_iters": 200,
    "eval_only": False,
    "always_save_checkpoint": False,
    "init_from": "scratch",
    "dataset": "shakespeare_char",
    "gradient_accumulation_steps": 1,
    "batch_size": 2,
    "block_size": 16,
    "n_layer": 2,
    "n_head": 2,
    "n_embd": HIDDEN,
    "dropout": 0.0,
    "bias": True,
    "learning_rate": 1e-3,
    "max_iters": 2,
    "weight_decay": 0.1,
    "beta1": 0.9,
    "beta2": 0.99,
    "grad_clip": 1.0,
    "decay_lr": True,
    "backend": "nccl",
    "device": "cpu",
    "dtype": "float32",
    "compile": True,
}


def nanogpt_model(model_args: dict[str, Any], *, tie: bool = True) -> Any:
    from interop.producer_models import GPT, GPTConfig

    return GPT(GPTConfig(**model_args), tie=tie).eval()


def write_nanogpt(folder: Path, *, compiled: bool = True, seed: int = 0) -> Path:
    """``ckpt.pt`` as nanoGPT's train.py writes it after two AdamW steps (so the optimizer
    holds exp_avg/exp_avg_sq tensors of the weights' shapes), optionally through
    ``torch.compile`` (a real OptimizedModule; never run, so nothing is compiled)."""
    import torch

    from interop.producer_models import GPT, GPTConfig

    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=VOCAB, n_embd=HIDDEN)
    model = GPT(config)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
    )
    g = torch.Generator().manual_seed(seed)
    for _ in range(2):
        x = torch.randint(0, VOCAB, (2, 8), generator=g)
        y = torch.randint(0, VOCAB, (2, 8), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x).view(-1, VOCAB), y.view(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    raw_model = torch.compile(model) if compiled else model
    checkpoint = {
        "model": raw_model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "model_args": asdict(config),
        "iter_num": 2,
        "best_val_loss": torch.tensor(1.5),
        "config": {**NANOGPT_TRAIN_CONFIG, "compile": compiled},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ckpt.pt"
    torch.save(checkpoint, path)
    return path


def nanogpt_state(ckpt: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``model_args`` and the state dict as nanoGPT's sample.py reads them (the
    ``_orig_mod.`` prefix stripped)."""
    import torch

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    return checkpoint["model_args"], state


def nanogpt_logits_of_checkpoint(ckpt: Path) -> torch.Tensor:
    """sample.py's loading path: build GPT from model_args, strict load_state_dict."""
    model_args, state = nanogpt_state(ckpt)
    model = nanogpt_model(model_args)
    model.load_state_dict(state, strict=True)
    return logits(model)


def logits(model: Any, ids: list[list[int]] | None = None) -> torch.Tensor:
    import torch

    with torch.no_grad():
        out = model(torch.tensor(ids or INPUT_IDS))
    return getattr(out, "logits", out)


# ---------------------------------------------------------------------------------------------
# Meta's original Llama format: consolidated.00.pth (torch.save of the state dict) and a
# params.json without any tie flag; llama-models' generation.py loads it strictly into a
# Transformer that has its own ``output``.

META_PARAMS = {
    "dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "vocab_size": VOCAB,
    "multiple_of": 16,
    "ffn_dim_multiplier": 1.0,
    "norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "use_scaled_rope": True,
}


def write_meta_llama(
    folder: Path, *, seed: int = 0, head: str = "own", dtype: str = "bfloat16"
) -> Path:
    """A Meta-format folder. ``head``: ``own`` (a trained output.weight, Llama 3.1),
    ``copy`` (output.weight equal to the embedding: what Meta ships for Llama 3.2 1B/3B),
    ``missing`` (output.weight not stored)."""
    import torch

    from interop.producer_models import LlamaArgs, MetaTransformer

    torch.manual_seed(seed)
    model = MetaTransformer(LlamaArgs.from_params(META_PARAMS))
    randomize(model, seed)
    model = model.to(getattr(torch, dtype))
    state = model.state_dict()
    if head == "copy":
        state["output.weight"] = state["tok_embeddings.weight"].clone()
    elif head == "missing":
        del state["output.weight"]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "consolidated.00.pth")
    (folder / "params.json").write_text(json.dumps(META_PARAMS))
    return folder


def meta_model(params: dict[str, Any]) -> Any:
    from interop.producer_models import LlamaArgs, MetaTransformer

    return MetaTransformer(LlamaArgs.from_params(params)).eval()


def meta_logits(folder: Path, dtype: str = "bfloat16") -> torch.Tensor:
    """llama-models' loading path: ``Transformer(ModelArgs(**params.json))`` and a strict
    ``load_state_dict`` of consolidated.00.pth, or of the safetensors tiecheck wrote."""
    import torch

    params = json.loads((folder / "params.json").read_text())
    model = meta_model(params).to(getattr(torch, dtype))
    pth = sorted(folder.glob("consolidated.*.pth"))
    if pth:
        model.load_state_dict(torch.load(pth[0], weights_only=True), strict=True)
    else:
        model.load_state_dict(read_safetensors_folder(folder), strict=True)
    return logits(model)


# ---------------------------------------------------------------------------------------------
# Lingua: CheckpointManager.save writes dcp.save({"model": model_sd, "optim": optim_sd}) into
# <dump_dir>/checkpoints/<step:010d>/ with params.json (the whole TrainArgs; the model's
# ``weight_tying`` under "model") and train_state_00000.json; consolidate_checkpoints writes
# consolidated/consolidated.pth with dcp_to_torch_save and copies params.json beside it.


def lingua_params(weight_tying: bool) -> dict[str, Any]:
    model = {k: v for k, v in META_PARAMS.items() if k not in ("use_scaled_rope",)}
    model.update(
        {
            "head_dim": None,
            "init_base_std": None,
            "init_std_factor": "disabled",
            "max_seqlen": 32,
            "seed": 42,
            "weight_tying": weight_tying,
            "sliding_window": None,
        }
    )
    return {
        "name": "tiny_lingua",
        "dump_dir": "/checkpoint/lingua/tiny",
        "seed": 777,
        "grad_acc_steps": 1,
        "gc_collect_freq": 1000,
        "probe_freq": None,
        "steps": 2,
        "data": {"root_dir": "data", "sources": {"dclm": 1.0}, "batch_size": 2, "seq_len": 8},
        "optim": {"lr": 0.003, "weight_decay": 0.1, "warmup": 2, "scheduler": "cosine"},
        "model": model,
        "distributed": {"dp_shard": 1, "dp_replicate": 1, "tp_size": 1, "model_dtype": "fp32"},
        "env": {"MKL_SERVICE_FORCE_INTEL": "GNU", "OMP_NUM_THREADS": "1"},
        "checkpoint": {"dump": {"every": 1, "keep": 0}, "eval": {"every": 1, "keep": 0}},
        "logging": {"freq": 1},
    }


@dataclass(frozen=True)
class LinguaDirs:
    step: Path
    """the DCP checkpoint folder (.metadata, __0_0.distcp, params.json, train_state)."""
    consolidated: Path
    """consolidated/ (consolidated.pth, params.json)."""


def lingua_model(params: dict[str, Any]) -> Any:
    from interop.producer_models import LinguaTransformer, LlamaArgs

    m = params["model"]
    return LinguaTransformer(LlamaArgs.from_params(m), weight_tying=m["weight_tying"]).eval()


def write_lingua(dump_dir: Path, *, weight_tying: bool, seed: int = 0) -> LinguaDirs:
    """A Lingua training checkpoint after two AdamW steps, and its consolidation."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from torch.distributed.checkpoint.state_dict import get_state_dict

    params = lingua_params(weight_tying)
    torch.manual_seed(seed)
    model = lingua_model(params).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(seed)
    for _ in range(2):
        x = torch.randint(0, VOCAB, (2, 8), generator=g)
        model(x).logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    step = dump_dir / "checkpoints" / f"{2:010d}"
    step.mkdir(parents=True)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with quiet():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=step)
    (step / "params.json").write_text(json.dumps(params))
    (step / "train_state_00000.json").write_text(json.dumps({"step": 2, "acc_step": 0}))
    consolidated = step / "consolidated"
    consolidated.mkdir()
    with quiet():
        dcp_to_torch_save(step, consolidated / "consolidated.pth")
    (consolidated / "params.json").write_text((step / "params.json").read_text())
    return LinguaDirs(step, consolidated)


def lingua_logits(folder: Path) -> torch.Tensor:
    """Lingua's load_consolidated_model_and_tokenizer: the model from params.json's "model",
    a strict load_state_dict of consolidated.pth's "model" entry, or of the safetensors
    tiecheck wrote (through ``load_into`` when the output deduplicated the tie)."""
    import torch

    params = json.loads((folder / "params.json").read_text())
    model = lingua_model(params)
    pth = folder / "consolidated.pth"
    if pth.is_file():
        model.load_state_dict(torch.load(pth, weights_only=True)["model"], strict=True)
    else:
        load_into(model, folder)
    return logits(model)


# ---------------------------------------------------------------------------------------------
# torchtune: the model is built by a component builder (TiedLinear when tied: ``output`` is no
# module, so output.weight is not in the state dict); FullModelTorchTuneCheckpointer reads
# model.pt and writes <output_dir>/epoch_N/model-00001-of-00001.bin with torch.save. torchtune
# runs in its own environment (interop/torchtune_client.py, driven by interop/external.py).


def write_torchtune(root: Path, *, tied: bool, seed: int = 0) -> Path:
    """A tiny Qwen2 from torchtune's builder, saved by its checkpointer; the epoch folder."""
    from interop.external import torchtune_write

    return torchtune_write(root, tied=tied, seed=seed)


def torchtune_file(folder: Path) -> Path:
    """The one weight file of a torchtune epoch folder (.bin) or of tiecheck's output."""
    (path,) = [*folder.glob("*.bin"), *folder.glob("*.safetensors")]
    return path


def torchtune_state(folder: Path) -> dict[str, torch.Tensor]:
    import torch

    path = torchtune_file(folder)
    if path.suffix == ".bin":
        return torch.load(path, weights_only=True)
    return read_safetensors_folder(folder)


def torchtune_logits(path: Path, *, tied: bool) -> torch.Tensor:
    """torchtune's loading path: the builder, then a strict load_state_dict of ``path``."""
    from interop.external import torchtune_logits as run

    return run(path, tied=tied)


# ---------------------------------------------------------------------------------------------
# transformers models (tiny, explicit configurations: no Hub access)


def _decoder_config(**extra: Any) -> dict[str, Any]:
    return {
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 64,
        **extra,
    }


def qwen2(tie: bool, seed: int = 0) -> Any:
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.Qwen2Config(**_decoder_config(), tie_word_embeddings=tie)
    return randomize(transformers.Qwen2ForCausalLM(config), seed).eval()


GPT2 = {
    "vocab_size": VOCAB,
    "n_embd": HIDDEN,
    "n_layer": 1,
    "n_head": 2,
    "n_positions": 32,
    "bos_token_id": 0,
    "eos_token_id": 0,
}
"""A tiny GPT-2 (``GPT2Config`` keywords)."""

VISION_TOWER = {
    "hidden_size": HIDDEN,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 16,
    "patch_size": 8,
}
"""A tiny SigLIP-style vision tower (``vision_config`` of Idefics3, SmolVLM, Gemma 3)."""


def gpt2(seed: int = 0) -> Any:
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2))
    return randomize(model, seed).eval()


ENCODER = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
}
"""A tiny BERT-style encoder (the keywords BERT, DeBERTa and ESM configs share)."""


def _deberta_v2(tie: bool) -> Any:
    import transformers

    config = transformers.DebertaV2Config(**ENCODER, tie_word_embeddings=tie)
    return transformers.DebertaV2ForMaskedLM(config)


def _esm(tie: bool) -> Any:
    import transformers

    config = transformers.EsmConfig(
        **{**ENCODER, "max_position_embeddings": 40},
        pad_token_id=1,
        mask_token_id=2,
        tie_word_embeddings=tie,
    )
    return transformers.EsmForMaskedLM(config)


def _rwkv(tie: bool) -> Any:
    import transformers

    config = transformers.RwkvConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,  # RWKV's init divides by num_hidden_layers - 1
        attention_hidden_size=HIDDEN,
        intermediate_size=32,
        context_length=32,
        tie_word_embeddings=tie,
    )
    return transformers.RwkvForCausalLM(config)


def _vlm(tie: bool, kind: str) -> Any:
    import transformers

    config_class, model_class = {
        "idefics3": (transformers.Idefics3Config, transformers.Idefics3ForConditionalGeneration),
        "smolvlm": (transformers.SmolVLMConfig, transformers.SmolVLMForConditionalGeneration),
    }[kind]
    config = config_class(
        text_config={
            "model_type": "llama",
            **_decoder_config(num_key_value_heads=2),
            "tie_word_embeddings": tie,
        },
        vision_config=VISION_TOWER,
        scale_factor=2,
        image_token_id=5,
        tie_word_embeddings=tie,
    )
    return model_class(config)


FAMILIES: dict[str, Callable[[bool], Any]] = {
    "deberta-v2": _deberta_v2,
    "esm": _esm,
    "rwkv": _rwkv,
    "idefics3": lambda tie: _vlm(tie, "idefics3"),
    "smolvlm": lambda tie: _vlm(tie, "smolvlm"),
}
"""transformers families the hand-written registry got wrong (head names it did not know,
VLM layouts it guessed)."""


def family_model(name: str, tie: bool, seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    with quiet():
        return randomize(FAMILIES[name](tie), seed).eval()


def save_pretrained(model: Any, folder: Path) -> Path:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    with quiet():
        model.save_pretrained(folder)
    return folder


def load_pretrained(folder: Path, config: Any = None) -> tuple[Any, dict[str, Any]]:
    """``from_pretrained(output_loading_info=True)`` with the class config.json names (or
    ``config`` for a folder that has none)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if config is None:
        config = transformers.AutoConfig.from_pretrained(folder)
    cls = getattr(transformers, config.architectures[0])
    with quiet():
        model, info = cls.from_pretrained(folder, config=config, output_loading_info=True)
    return model.eval(), info


def tied_in_memory(model: Any) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def intended_logits(source_model: Any, to: str, keep: str | None = None) -> torch.Tensor:
    """Logits of ``intended_model``."""
    return logits(intended_model(source_model, to, keep))


def intended_model(source_model: Any, to: str, keep: str | None = None) -> Any:
    """The model the user asked for, built from the source model in memory.

    ``--to untied`` (or a source that is tied already) asks for the model as it computes now.
    ``--to tied`` of an untied model is the model transformers builds with the tie flag set,
    loaded with the source's tensors, where each tie of transformers' own map
    (``all_tied_weights_keys``, ``{target: source}``: the head to the embedding, DeBERTa's
    decoder bias to its prediction bias) takes the source side's values, or with
    ``keep="head"`` the target side's (tiecheck's ``--keep``: the embedding side is what
    transformers 4.x keeps on load, the head side the fine-tuned head)."""
    import copy

    if to == "untied" or tied_in_memory(source_model):
        return source_model
    config = copy.deepcopy(source_model.config)
    config.tie_word_embeddings = True
    if getattr(config, "text_config", None) is not None:
        config.text_config.tie_word_embeddings = True
    with quiet():
        tied = type(source_model)(config).eval()
    ties = dict(tied.all_tied_weights_keys)
    assert ties, f"{type(source_model).__name__} declares no tie"
    state = {k: v.clone() for k, v in source_model.state_dict().items()}
    for target, source in ties.items():
        if keep == "head":
            state[source] = state[target]
        del state[target]
    missing, unexpected = tied.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= set(ties), (missing, unexpected)
    assert tied_in_memory(tied)
    return tied


# ---------------------------------------------------------------------------------------------
# accelerate and safetensors' own savers (no config.json beside the weights)


def write_accelerate(model: Any, folder: Path) -> Path:
    """``Accelerator().save_model(model, folder)``: deduplicates the tie itself and writes
    ``model.safetensors`` (and no config)."""
    from accelerate import Accelerator

    with quiet():
        Accelerator(cpu=True).save_model(model, folder)
    return folder


def write_save_model(model: Any, path: Path) -> Path:
    """``safetensors.torch.save_model``: keeps the alphabetically first name of each tie and
    records the dropped one in ``__metadata__``."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------
# PEFT: an adapter whose base_model_name_or_path is relative


@dataclass(frozen=True)
class AdapterLayout:
    base: Path
    adapter: Path
    recorded_base: str
    """base_model_name_or_path as PEFT wrote it."""


def write_peft_relative(root: Path, *, seed: int = 0) -> AdapterLayout:
    """A tied Qwen2 base saved in ``root/models/base``; LoRA with
    ``modules_to_save=["embed_tokens", "lm_head"]`` trained on it from ``root/models/adapter``
    as the working folder, which loaded the base as ``../base`` (so PEFT records that relative
    name); the copies are moved apart as training would."""
    import torch
    from peft import LoraConfig, get_peft_model

    base = save_pretrained(qwen2(tie=True, seed=seed), root / "models" / "base")
    adapter = root / "models" / "adapter"
    adapter.mkdir(parents=True)
    previous = Path.cwd()
    os.chdir(adapter)
    try:
        model, _ = load_pretrained(Path("../base"))
        config = LoraConfig(
            r=2,
            target_modules=["q_proj", "v_proj"],
            modules_to_save=["embed_tokens", "lm_head"],
        )
        with quiet():
            peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "modules_to_save" in name:
                    p.add_(0.01 * torch.randn_like(p))
        with quiet():
            peft_model.save_pretrained(".")
    finally:
        os.chdir(previous)
    recorded = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    return AdapterLayout(base, adapter, recorded)


# ---------------------------------------------------------------------------------------------
# mlx-lm: mlx_lm.convert from a local transformers folder (save_pretrained + a tokenizer)


def write_tokenizer(folder: Path) -> None:
    """A word-level tokenizer of VOCAB tokens (tokenizers library, no download): mlx-lm's
    load and convert need one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2} | {f"t{i}": i for i in range(3, VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.save_pretrained(folder)


def write_hf_llama_for_mlx(folder: Path, *, tie: bool, seed: int = 0) -> Path:
    """A tiny Llama saved by transformers (hidden 64: mlx quantises in groups of 32 or 64
    along the input dimension) with a tokenizer."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = randomize(transformers.LlamaForCausalLM(config), seed).eval()
    save_pretrained(model, folder)
    write_tokenizer(folder)
    return folder


def mlx_convert(hf_folder: Path, mlx_folder: Path, *, quantize: bool) -> Path:
    """``mlx_lm.convert`` (what ``mlx_lm.convert --hf-path ... [-q]`` runs), offline."""
    import contextlib
    import io

    from mlx_lm import convert

    with contextlib.redirect_stdout(io.StringIO()), quiet():
        convert(
            str(hf_folder),
            mlx_path=str(mlx_folder),
            quantize=quantize,
            q_group_size=32 if quantize else None,
            q_bits=4 if quantize else None,
        )
    return mlx_folder


def mlx_logits(folder: Path) -> Any:
    """``mlx_lm.load`` (strict: every stored weight must be a parameter of the model and every
    parameter stored) and the logits as a numpy array."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load

    with quiet():
        model, _ = load(str(folder))
    out = model(mx.array(INPUT_IDS))
    mx.eval(out)
    return np.array(out.astype(mx.float32))
