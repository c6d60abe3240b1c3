"""Rule codes and findings: the vocabulary every analysis speaks and every renderer prints.

Codes are stable: a code is never reused for another meaning, so CI configurations, ignore
lists and JSON consumers can rely on them. ``TC0xx`` are file and index integrity, ``TC1xx``
tie state against the configuration, ``TC2xx`` adapters.

Each rule carries its documentation (what it means, why it matters to which loaders, how to
fix it). The same text feeds ``tiecheck rules CODE``, SARIF ``rules[]`` and the Markdown report.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Severity(str, Enum):
    """How much a finding matters; ordered so ``--fail-on`` can compare."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


class Code(str, Enum):
    """Every rule code, by its name: the only place a code is spelled. A ``Code`` is a ``str``
    (``Code.UNTIED_HEAD_MISSING == "TC101"``), so JSON, ignore lists and tests use the text."""

    INVALID_FILE = "TC001"
    UNSAFE_PICKLE = "TC002"
    MISSING_SHARD = "TC003"
    INDEX_TENSOR_NOT_IN_SHARD = "TC004"
    TENSOR_NOT_IN_INDEX = "TC005"
    TENSOR_STORED_TWICE = "TC006"
    TOTAL_SIZE_MISMATCH = "TC007"
    NO_TENSORS = "TC008"
    UNTIED_HEAD_MISSING = "TC101"
    TIED_BUT_DIVERGED = "TC102"
    TIED_DUPLICATE_COPY = "TC103"
    EMBEDDING_MISSING = "TC104"
    UNTIED_BUT_IDENTICAL = "TC105"
    TIE_FLAG_DEFAULTED = "TC106"
    TIE_FLAGS_DISAGREE = "TC107"
    ALIAS_RECORD_MISMATCH = "TC108"
    PICKLE_SHARED_STORAGE = "TC109"
    PICKLE_STORAGE_VIEWS = "TC110"
    NO_CONFIG = "TC111"
    UNEXPECTED_TIE_STATE = "TC112"
    TIED_COPY_NOT_COMPARED = "TC113"
    IDENTICAL_TENSORS = "TC114"
    ALIAS_UNTIED_BY_FLAG = "TC115"
    UNTIED_ALIAS_MISSING = "TC116"
    TIE_FLAG_NOT_BOOLEAN = "TC117"
    ADAPTER_UNTIED_COPIES = "TC201"
    ADAPTER_BASE_NOT_FOUND = "TC202"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def rule(self) -> Rule:
        return RULES[self]


class Where(str, Enum):
    """Where a finding points when it names no file of its own (SARIF, GitHub annotations)."""

    FILES = "files"
    """the weight files (the index when there is one, else the first file)."""
    CONFIG = "config"
    """config.json: the finding is about what the config declares."""


class Repair(str, Enum):
    """The command that repairs a finding, for the ``fix:`` line of the text report (the
    rule's ``how_to_fix`` explains it and the alternatives)."""

    TO_TIED = "tied"
    """``tiecheck fix SRC --to tied``."""
    TO_UNTIED = "untied"
    """``tiecheck fix SRC --to untied``."""
    AS_VERDICT = "verdict"
    """``--to`` the state the weights are in (none when the verdict is inconsistent)."""
    INSPECT_VALUES = "inspect"
    """inspect again, comparing values (the finding comes from ``--no-data``)."""


@dataclass(frozen=True)
class Rule:
    code: Code
    name: str
    """kebab-case name, as in ruff: readable in ignore lists."""
    severity: Severity
    """default severity; a few rules raise it when the evidence is stronger (TC201)."""
    summary: str
    """one line, shown in tables and README."""
    explanation: str = ""
    """what the finding means, in terms of what is (or is not) in the files."""
    why_it_matters: str = ""
    """what loaders (transformers 4.x/5.x, vLLM, mlx-lm, llama.cpp...) do with such a checkpoint."""
    how_to_fix: str = ""
    """the remedy, naming the ``tiecheck fix`` call where one exists."""
    inconsistent: bool = False
    """an error finding of this rule makes the verdict ``inconsistent``: loaders disagree
    about (or cannot build) the model."""
    where: Where = Where.FILES
    """what the finding points at when it names no file."""
    repair: Repair | None = None
    """the command that repairs it, when there is one to suggest."""

    def sections(self) -> list[tuple[str, str]]:
        """The documentation as (heading, text) pairs, in the fixed order every format uses."""
        return [
            ("What it means", self.explanation),
            ("Why it matters", self.why_it_matters),
            ("How to fix", self.how_to_fix),
        ]

    def doc_text(self, width: int | None = None) -> str:
        """Plain-text documentation (``tiecheck rules CODE``, SARIF ``help.text``); wrapped
        to ``width`` columns when given (a terminal), one line per paragraph otherwise."""
        lines = [f"{self.code.value} {self.name} ({self.severity.value}): {self.summary}"]
        for heading, text in self.sections():
            lines += ["", f"{heading}:", _wrap(text, width) if width else text]
        if width:
            lines[0] = textwrap.fill(lines[0], width, subsequent_indent="  ")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        """Every field, for ``tiecheck rules --format json``."""
        return {
            "code": self.code.value,
            "name": self.name,
            "severity": self.severity.value,
            "summary": self.summary,
            "explanation": self.explanation,
            "why_it_matters": self.why_it_matters,
            "how_to_fix": self.how_to_fix,
            "makes_verdict_inconsistent": self.inconsistent,
            "located_in": self.where.value,
            "repair": None if self.repair is None else self.repair.value,
        }

    def doc_markdown(self, level: int = 3) -> str:
        """Markdown documentation (SARIF ``help.markdown``, the Markdown report)."""
        hashes = "#" * level
        parts = [
            f"{hashes} {self.code.value} `{self.name}` ({self.severity.value})",
            "",
            self.summary,
        ]
        for heading, text in self.sections():
            parts += ["", f"**{heading}.** {text}"]
        return "\n".join(parts)


_CODE_SPAN = re.compile(r"`[^`]*`")


def _wrap(text: str, width: int) -> str:
    """Wrap prose to ``width`` columns without breaking a `command` apart (a fix call must
    stay one line to be copied)."""
    glued = _CODE_SPAN.sub(lambda m: m.group().replace(" ", "\0"), text)
    wrapped = textwrap.fill(glued, width, break_on_hyphens=False, break_long_words=False)
    return wrapped.replace("\0", " ")


def _rules(*rules: Rule) -> dict[Code, Rule]:
    table = {r.code: r for r in rules}
    assert list(table) == list(Code), "one rule per code, in code order"
    return table


ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

RULES: dict[Code, Rule] = _rules(
    Rule(
        Code.INVALID_FILE,
        "invalid-file",
        ERR,
        "file unreadable or invalid",
        explanation=(
            "A weight file could not be read as the format its name or first bytes claim: a "
            "truncated safetensors file, a header that is not valid JSON or whose offsets do "
            "not cover the data buffer exactly, a Git LFS pointer where a .bin should be, or a "
            "file that cannot be opened at all. Its tensors are not part of the analysis, so "
            "tie findings about names it would hold are withheld."
        ),
        why_it_matters=(
            "Every loader refuses the file: safetensors' Rust loader (used by transformers, "
            "vLLM and mlx-lm) rejects bad headers, overlapping or non-contiguous offsets and a "
            "buffer that does not end exactly at the end of the file; torch.load fails on LFS "
            "pointers and truncated zips. The model cannot be loaded at all."
        ),
        how_to_fix=(
            "Fetch the file again (git lfs pull, or re-download it from the Hub) or re-save it "
            "from the training run. There is no tiecheck fix call for it: `tiecheck fix` "
            "refuses checkpoints with unreadable files until they are whole again."
        ),
    ),
    Rule(
        Code.UNSAFE_PICKLE,
        "unsafe-pickle",
        ERR,
        "pickle would need code execution to load; not loaded",
        explanation=(
            "A PyTorch pickle (.bin, .pt, .pth, .ckpt) asks for a callable outside the "
            "allow-list of tensor rebuilders and plain containers (for example os.system or a "
            "project's own class). tiecheck never executes it, so its tensors are not read."
        ),
        why_it_matters=(
            "torch.load(weights_only=True), the default since torch 2.6 and what transformers "
            "uses, refuses the file; loading it with weights_only=False would run whatever the "
            "pickle names, which is arbitrary code on the loading machine."
        ),
        how_to_fix=(
            "Load it only if you trust its origin, in an isolated environment, and re-save the "
            "state dict as safetensors; then run `tiecheck fix SRC --to tied -o OUT` or "
            "`--to untied` as the inspection of the new file suggests. Training-state files "
            "(training_args.bin, optimizer.pt) are not checkpoints: exclude them from the check."
        ),
    ),
    Rule(
        Code.MISSING_SHARD,
        "missing-shard",
        ERR,
        "index names a shard file that does not exist",
        explanation=(
            "The index (model.safetensors.index.json or pytorch_model.bin.index.json) maps "
            "tensors to a shard file that is not in the checkpoint folder. Tensors it would "
            "hold are not judged (a head in the missing shard is not reported as TC101)."
        ),
        why_it_matters=(
            "transformers, huggingface_hub and vLLM open every shard the weight_map names and "
            "fail with a missing-file error; an incomplete download or upload is the usual "
            "cause."
        ),
        how_to_fix=(
            "Download or upload the missing shard (for example `hf download REPO "
            "--include 'model-00003-of-00003.safetensors'`), or regenerate the index if the "
            "shard was deliberately removed. `tiecheck fix` refuses checkpoints with missing "
            "files."
        ),
    ),
    Rule(
        Code.INDEX_TENSOR_NOT_IN_SHARD,
        "index-tensor-not-in-shard",
        ERR,
        "index maps a tensor to a shard that does not hold it",
        explanation=(
            "The index's weight_map says a tensor is in a shard whose header does not contain "
            "that name. The index and the shards were written at different times or by "
            "different tools."
        ),
        why_it_matters=(
            "Loaders look tensors up through the weight_map: transformers reports the tensor "
            "as missing and initialises it at random, strict loaders (vLLM, mlx-lm) fail. "
            "huggingface_hub leaves this check to the consumer (huggingface_hub #4725)."
        ),
        how_to_fix=(
            "Regenerate the index from the shards' headers (re-save with the tool that wrote "
            "the shards), or restore the shard that holds the tensor. No tiecheck fix call "
            "repairs an index on its own."
        ),
    ),
    Rule(
        Code.TENSOR_NOT_IN_INDEX,
        "tensor-not-in-index",
        WARN,
        "a shard holds a tensor the index does not list",
        explanation=("A shard stores a tensor whose name the index's weight_map does not mention."),
        why_it_matters=(
            "Loaders only load what the weight_map lists, so the tensor is silently skipped. "
            "If it is the head or the embedding, the model loads with that matrix randomly "
            "initialised (transformers) or fails (vLLM, mlx-lm)."
        ),
        how_to_fix=(
            "Add the tensor to the weight_map (regenerate the index from the shards' headers), "
            "or remove the stray tensor from the shard if it is left over from an earlier save."
        ),
    ),
    Rule(
        Code.TENSOR_STORED_TWICE,
        "tensor-stored-twice",
        ERR,
        "a tensor name is stored more than once (two shards, or duplicate header keys)",
        explanation=(
            "The same tensor name appears in two shards, or twice in one safetensors header "
            "(JSON allows duplicate keys; the last one silently wins)."
        ),
        why_it_matters=(
            "Which copy a loader ends up with depends on the order it reads shards or on its "
            "JSON parser: two loaders can run two different models from the same files, and "
            "safetensors' own loader does not reject duplicate header keys."
        ),
        how_to_fix=(
            "Decide which copy is right and remove the other (re-save the checkpoint from the "
            "model in memory). `tiecheck fix` refuses to rewrite until the duplicate is gone."
        ),
    ),
    Rule(
        Code.TOTAL_SIZE_MISMATCH,
        "total-size-mismatch",
        WARN,
        "index total_size disagrees with the stored payload",
        explanation=(
            "The index's metadata.total_size is not the sum of the bytes of the unique tensors "
            "the shards hold."
        ),
        why_it_matters=(
            "Loaders do not use it to load, but tools that show model sizes or plan memory and "
            "downloads from it get wrong numbers, and a stale total_size usually means the "
            "index was not regenerated after the shards changed (look for TC004 and TC005)."
        ),
        how_to_fix=(
            "Set metadata.total_size to the stored payload (the bytes tiecheck reports in its "
            "summary), or regenerate the index with the tool that wrote the shards."
        ),
    ),
    Rule(
        Code.NO_TENSORS,
        "no-tensors",
        ERR,
        "a weight file holds no tensors",
        explanation=(
            "A file given or found as model weights (a .safetensors file, a .bin/.pt/.pth/.ckpt "
            "pickle) holds no tensor at all: an empty state dict, a pickle of plain values "
            "(an epoch counter, a config), an empty safetensors header, or a file of another "
            "format under a weight file's name."
        ),
        why_it_matters=(
            "Loaders find none of the model's parameters in it: transformers initialises every "
            "one at random (with warnings), strict loaders (vLLM, mlx-lm, llama.cpp) fail. "
            "A gate that passes such a file passes a model that does not exist."
        ),
        how_to_fix=(
            "Save the model's state dict again, or point tiecheck at the right file (training "
            "state such as optimizer.pt, scheduler.pt, rng_state.pth and training_args.bin is "
            "not model weights: exclude it from the check)."
        ),
    ),
    Rule(
        Code.UNTIED_HEAD_MISSING,
        "untied-head-missing",
        ERR,
        "declared untied but the head is missing: loaders initialise it at random",
        explanation=(
            "config.json declares the embedding and the output head untied (explicitly, or "
            "through the class default when the flag is absent), but no head tensor "
            "(lm_head.weight or the family's equivalent) is stored. Typically a tied model was "
            "saved deduplicated and its flag was then set to false, or the head was lost in a "
            "conversion."
        ),
        why_it_matters=(
            "transformers 4.x initialises the head at random with only a warning, and 5.x "
            "reports it MISSING and does the same: the model generates gibberish "
            "(transformers PR #43429). vLLM raises ValueError, mlx-lm's strict load fails, "
            "llama.cpp may fall back to token_embd."
        ),
        how_to_fix=(
            "If the model was trained tied (the usual case when the head is absent), "
            "`tiecheck fix SRC --to tied -o OUT` sets the flag to true and keeps the weights "
            "as they are. If a consumer needs an explicit head, `tiecheck fix SRC --to untied "
            "-o OUT` stores it as a copy of the embedding. If a separately trained head was "
            "lost, only the training run has it: no tool can recreate it."
        ),
        inconsistent=True,
        where=Where.CONFIG,
        repair=Repair.TO_TIED,
    ),
    Rule(
        Code.TIED_BUT_DIVERGED,
        "tied-but-diverged",
        ERR,
        "declared tied but head and embedding are both stored with different values",
        explanation=(
            "config.json declares the head tied to the embedding, yet both are stored and their "
            "values differ: a fine-tune untied them (PEFT modules_to_save, a full fine-tune "
            "after an untie) while the flag still says tied."
        ),
        why_it_matters=(
            "Loaders disagree about which model this is. transformers 4.x silently overwrites "
            "the trained head with the embedding; transformers 5.x keeps both, warns and does "
            "not tie; vLLM silently ignores the trained head; mlx-lm silently drops it. The "
            "same files produce different outputs in different runtimes (transformers #45127, "
            "peft #2777)."
        ),
        how_to_fix=(
            "To keep both trained matrices, `tiecheck fix SRC --to untied -o OUT`: only the "
            "config changes (the flag becomes false). To make it a tied model, `tiecheck fix "
            "SRC --to tied --keep embedding -o OUT` (what transformers 4.x does on load) or "
            "`--keep head` (keep the fine-tuned head's values)."
        ),
        inconsistent=True,
        repair=Repair.TO_UNTIED,
    ),
    Rule(
        Code.TIED_DUPLICATE_COPY,
        "tied-duplicate-copy",
        WARN,
        "declared tied and the head is stored as an identical copy (bytes wasted)",
        explanation=(
            "The head is declared tied and stored as a byte-identical copy of the embedding "
            "(FSDP or DeepSpeed zero_to_fp32 exports, a Trainer given an explicit state dict, "
            "converters that clone before saving). Also reported for other tied groups, such "
            "as T5's shared/encoder/decoder embeddings or BERT's decoder bias."
        ),
        why_it_matters=(
            "Every loader gets the right model (transformers re-ties, vLLM skips the stored "
            "head, mlx-lm pops it), but the checkpoint is larger than it should be by a whole "
            "vocabulary matrix (GPT-2 622 MB instead of 475 MB, transformers #23868) and "
            "parameter counts come out too high (mergekit PR #464)."
        ),
        how_to_fix=(
            "`tiecheck fix SRC --to tied -o OUT` stores the group once under the embedding's "
            "name, drops the copy and records the alias in the file metadata."
        ),
        repair=Repair.AS_VERDICT,
    ),
    Rule(
        Code.EMBEDDING_MISSING,
        "embedding-missing",
        ERR,
        "the head is stored but the embedding it ties to is missing",
        explanation=(
            "The head is stored and the input embedding is not. safetensors' save_model and "
            "huggingface_hub keep the alphabetically first name of a tied pair, which is "
            "lm_head.weight, and drop model.embed_tokens.weight."
        ),
        why_it_matters=(
            "transformers 4.57 fails to load it and older 4.x initialise the embedding at "
            "random (transformers #34759, #30125, safetensors #265); transformers 5.x swaps "
            "source and target and loads it correctly; vLLM, mlx-lm and llama.cpp's converter "
            "fail."
        ),
        how_to_fix=(
            "`tiecheck fix SRC --to tied -o OUT` stores the bytes under the embedding's name, "
            "as transformers writes tied models. `--to untied` stores both names explicitly."
        ),
        inconsistent=True,
        repair=Repair.TO_TIED,
    ),
    Rule(
        Code.UNTIED_BUT_IDENTICAL,
        "untied-but-identical",
        INFO,
        "declared untied but head and embedding are identical",
        explanation=(
            "The head is declared untied and both matrices are stored, but they hold identical "
            "bytes: the model was probably trained tied and saved with the flag false, or was "
            "untied and not trained since."
        ),
        why_it_matters=(
            "Every loader gets the same model; the checkpoint stores one matrix twice. It is "
            "worth knowing because a tied model published as untied will drift apart in "
            "fine-tunes that expect the tie."
        ),
        how_to_fix=(
            "Nothing is required. If the model is meant to be tied, `tiecheck fix SRC --to "
            "tied -o OUT` drops the copy and sets the flag to true."
        ),
    ),
    Rule(
        Code.TIE_FLAG_DEFAULTED,
        "tie-flag-defaulted",
        INFO,
        "config omits the tie flag; the class default was used",
        explanation=(
            "config.json has no tie_word_embeddings (or weight_tying), so the model class's "
            "default applies. transformers 4.x drops keys equal to the default when saving, "
            "so tied-by-default families (GPT-2, Gemma, BERT, T5, BART) often omit it."
        ),
        why_it_matters=(
            "Consumers read an absent flag differently: transformers uses the class default, "
            "llama.cpp reads absent as false and mlx-lm's Llama as true. A converter that "
            "guesses wrong looks for a head that is not there, or ignores one that is."
        ),
        how_to_fix=(
            "Write the flag explicitly: `tiecheck fix SRC --to tied -o OUT` (or `--to untied`, "
            "matching the verdict) sets it in config.json and copies the weights unchanged."
        ),
        where=Where.CONFIG,
        repair=Repair.AS_VERDICT,
    ),
    Rule(
        Code.TIE_FLAGS_DISAGREE,
        "tie-flags-disagree",
        WARN,
        "tie flags at different config levels disagree",
        explanation=(
            "A nested config (text_config, decoder, generator) and the outer config carry "
            "different values for the tie flag, as in Qwen3-VL-MoE (inner true, outer false, "
            "real head stored)."
        ),
        why_it_matters=(
            "transformers 4.57 reads the text config's flag, transformers 5.x only the outer "
            "one (some VLM configs lift an inner true outward): two transformers versions tie "
            "the same checkpoint differently."
        ),
        how_to_fix=(
            "Make the levels agree: `tiecheck fix SRC --to untied -o OUT` when a trained head is "
            "stored (verdict untied), `--to tied` when it is not; either sets every level."
        ),
        where=Where.CONFIG,
        repair=Repair.AS_VERDICT,
    ),
    Rule(
        Code.ALIAS_RECORD_MISMATCH,
        "alias-record-mismatch",
        WARN,
        "an alias record names tensors that are absent or contradicts what is stored",
        explanation=(
            "save_model, save_torch_state_dict and the Hub's conversion bot record "
            "{dropped_name: kept_name} in the safetensors __metadata__ or the index metadata. "
            "Here a record names a kept tensor that is not stored, or a dropped tensor that is "
            "stored after all: the record is stale or wrong."
        ),
        why_it_matters=(
            "No loader reads alias records, so loading is not changed by it, but it is the "
            "second, independent signal of the tie: a stale record means the file was edited "
            "after deduplication, and tools that restore aliases from it restore the wrong "
            "tensor."
        ),
        how_to_fix=(
            "`tiecheck fix SRC --to tied -o OUT` (or `--to untied`) rewrites the weights with "
            "records that match what it stores."
        ),
        repair=Repair.AS_VERDICT,
    ),
    Rule(
        Code.PICKLE_SHARED_STORAGE,
        "pickle-shared-storage",
        INFO,
        "tensors share one storage in a pickle (a tie safetensors cannot hold as is)",
        explanation=(
            "In a PyTorch pickle, two tensor names refer to the same storage with the same "
            "offset, shape and stride: a real tie, stored once."
        ),
        why_it_matters=(
            "torch.load(weights_only=True, mmap=True) keeps the sharing, so the pickle loads "
            "fine. Converting it is where it bites: safetensors' save_file refuses shared "
            "tensors, and save_model keeps lm_head.weight and drops the embedding (TC104 "
            "afterwards)."
        ),
        how_to_fix=(
            "`tiecheck fix SRC --to tied -o OUT` converts to safetensors, storing the tensor "
            "once under the embedding's name."
        ),
        repair=Repair.TO_TIED,
    ),
    Rule(
        Code.PICKLE_STORAGE_VIEWS,
        "pickle-storage-views",
        WARN,
        "tensors are different views of one storage (safetensors conversion must copy)",
        explanation=(
            "In a PyTorch pickle, tensors cover different parts of one storage (fused qkv "
            "slices, a flat DeepSpeed buffer). They are not ties."
        ),
        why_it_matters=(
            'safetensors refuses to save them ("Some tensors share memory" or "None is '
            'covering the entire storage"), and safetensors.torch._find_shared_tensors '
            "crashes on transposed views; naive conversions fail or store the whole buffer "
            "for each view."
        ),
        how_to_fix=(
            "Convert by copying each view into its own tensor: `tiecheck fix SRC --to untied "
            "-o OUT` (or `--to tied`, matching the verdict) writes each view as its own "
            "safetensors tensor; by hand, clone() every view before save_file."
        ),
        repair=Repair.AS_VERDICT,
    ),
    Rule(
        Code.NO_CONFIG,
        "no-config",
        INFO,
        "no config found; tie state inferred from the weights alone",
        explanation=(
            "There is no config.json beside the weights (and no base model config for an "
            "adapter), so nothing declares the tie; the verdict comes from the weights alone "
            "(a missing head reads as tied)."
        ),
        why_it_matters=(
            "transformers, vLLM and mlx-lm need the config to decide whether to tie; a "
            "deduplicated file without it is ambiguous to every consumer."
        ),
        how_to_fix=(
            "Ship config.json with the weights, with tie_word_embeddings set explicitly. "
            "`tiecheck fix` can only change the weights when there is no config."
        ),
        where=Where.CONFIG,
    ),
    Rule(
        Code.UNEXPECTED_TIE_STATE,
        "unexpected-tie-state",
        ERR,
        "the tie state differs from --expect",
        explanation=(
            "The verdict (tied, untied, inconsistent, not-applicable) is not the one given with "
            "--expect or the configuration's `expect` key."
        ),
        why_it_matters=(
            "A release pipeline that knows a model must be tied (Llama 3.2 1B, Qwen2.5 0.5B) "
            "or untied (Llama 3.1 8B) catches conversions and fine-tunes that changed the "
            "structure before anyone loads the result."
        ),
        how_to_fix=(
            "Read the other findings to see why the state changed, then "
            "`tiecheck fix SRC --to tied -o OUT` or `--to untied` to restore the expected "
            "state, or update `expect` if the change is intended."
        ),
        where=Where.CONFIG,
    ),
    Rule(
        Code.TIED_COPY_NOT_COMPARED,
        "tied-copy-not-compared",
        WARN,
        "declared tied, head and embedding stored separately; values not compared (--no-data)",
        explanation=(
            "The head is declared tied and stored separately from the embedding, and --no-data "
            "kept tiecheck from reading the values: it cannot tell an identical copy (TC103) "
            "from a diverged one (TC102)."
        ),
        why_it_matters=(
            "The difference is between wasted bytes and a trained head that transformers 4.x, "
            "vLLM and mlx-lm silently throw away."
        ),
        how_to_fix=(
            "Inspect again without --no-data, then follow TC102 or TC103 (`tiecheck fix SRC "
            "--to tied -o OUT` for a copy, `--to untied` for a diverged head)."
        ),
        repair=Repair.INSPECT_VALUES,
    ),
    Rule(
        Code.IDENTICAL_TENSORS,
        "identical-tensors",
        INFO,
        "byte-identical tensors outside any tie group (bytes stored twice)",
        explanation=(
            "Tensors that no known tie group explains hold identical bytes: an untracked tie "
            "(a layout tiecheck does not know, such as copies shared with an MTP layer) or "
            "values that happen to match (freshly initialised norms, zero biases)."
        ),
        why_it_matters=(
            "Loaders are unaffected; the bytes are stored more than once. When the tensors are "
            "meant to be one parameter, training will let them drift apart."
        ),
        how_to_fix=(
            "Usually nothing. If they are a tie, tie them in the model and re-save; "
            "`tiecheck fix` only deduplicates the embedding/head groups it recognises."
        ),
    ),
    Rule(
        Code.ALIAS_UNTIED_BY_FLAG,
        "alias-untied-by-flag",
        WARN,
        "declared untied, and an architecture alias (encoder/decoder embedding, decoder bias) "
        "differs from its source",
        explanation=(
            "BART-like and T5 models share `shared`, `encoder.embed_tokens` and "
            "`decoder.embed_tokens` (BERT and RoBERTa share the decoder bias). The config says "
            "untied, and the checkpoint stores these aliases separately with different values."
        ),
        why_it_matters=(
            "transformers 5.x unties the aliases together with the head and loads each stored "
            "tensor; transformers 4.x builds one shared module and silently keeps only one of "
            "them, so the two versions run different models."
        ),
        how_to_fix=(
            "Decide which model is meant. To keep one embedding for every alias, "
            "`tiecheck fix SRC --to tied --keep embedding -o OUT` (ties the head too); to keep "
            "them apart, pin transformers 5.x for this checkpoint."
        ),
    ),
    Rule(
        Code.UNTIED_ALIAS_MISSING,
        "untied-alias-missing",
        WARN,
        "declared untied, and an architecture alias (encoder/decoder embedding, decoder bias) "
        "is not stored",
        explanation=(
            "A BART-like or BERT-like checkpoint says tie_word_embeddings: false but stores only "
            "`shared` (or `cls.predictions.bias`), not the encoder/decoder embeddings (or the "
            "decoder bias) that transformers 4.x always shared with it."
        ),
        why_it_matters=(
            "transformers 5.x unties these aliases together with the head, finds them missing "
            "and initialises them at random; 4.x shares one module and loads fine."
        ),
        how_to_fix=(
            "`tiecheck fix SRC --to untied -o OUT` stores every alias explicitly; or, if the "
            "head should be tied too, `tiecheck fix SRC --to tied -o OUT`."
        ),
        repair=Repair.TO_UNTIED,
    ),
    Rule(
        Code.TIE_FLAG_NOT_BOOLEAN,
        "tie-flag-not-boolean",
        ERR,
        "the tie flag in the config is not true or false",
        explanation=(
            "config.json holds the tie flag with a value that is not a JSON boolean: the string "
            '"false", a number, null. Usually a config written by hand or by a script that '
            "quoted every value."
        ),
        why_it_matters=(
            "transformers 5.x validates config fields and refuses to load the config at all; "
            "transformers 4.x and remote code read the value's truthiness, so the string "
            '"false" means tied to them and the model is judged by that reading here. Two '
            "versions of one library disagree about whether the model loads."
        ),
        how_to_fix=(
            "Write a JSON boolean: `tiecheck fix SRC --to tied -o OUT` or `--to untied` sets "
            "the flag (at every level that carries it) to true or false."
        ),
        inconsistent=True,
        where=Where.CONFIG,
        repair=Repair.AS_VERDICT,
    ),
    Rule(
        Code.ADAPTER_UNTIED_COPIES,
        "adapter-untied-copies",
        WARN,
        "a PEFT adapter stores separate embedding and head copies for a tied base model",
        explanation=(
            "A PEFT adapter trained with modules_to_save=[embed_tokens, lm_head] on a tied base "
            "model, without ensure_weight_tying, stores two full copies that train apart. "
            "Raised to error when the copies already differ."
        ),
        why_it_matters=(
            "Merged models keep tie_word_embeddings: true, and the re-tie on load (transformers "
            "4.x, vLLM, mlx-lm) keeps one copy and discards the other (peft #2777, #2018, "
            "transformers #45127)."
        ),
        how_to_fix=(
            "Train with LoraConfig(ensure_weight_tying=True) (PEFT 0.18+). For an adapter that "
            "exists, merge it and then `tiecheck fix MERGED --to untied -o OUT` to keep both "
            "matrices, or `--to tied --keep embedding|head` to keep one; `tiecheck fix` does "
            "not rewrite adapters themselves."
        ),
        inconsistent=True,
    ),
    Rule(
        Code.ADAPTER_BASE_NOT_FOUND,
        "adapter-base-not-found",
        WARN,
        "the base model of a PEFT adapter could not be found",
        explanation=(
            "adapter_config.json names its base model in base_model_name_or_path, and no "
            "config.json was found for it: not at that path (tried from the working folder and "
            "from the adapter's folder), not in the Hugging Face cache, and no --base was given."
        ),
        why_it_matters=(
            "Whether the base ties its embedding and head decides whether an adapter that "
            "trains both copies (modules_to_save) loses one of them when merged (TC201). "
            "Without the base's config that cannot be judged, so a clean report proves less."
        ),
        how_to_fix=(
            "Pass the base model with --base PATH (its folder or config.json), or download it "
            "into the Hugging Face cache (`hf download ORG/NAME config.json`)."
        ),
    ),
)


def find_rule(selector: str) -> Rule | None:
    """A rule by code (``TC101``, any case) or by kebab-case name (``untied-head-missing``)."""
    text = selector.strip()
    rule = RULES.get(text.upper())
    if rule is not None:
        return rule
    return next((r for r in RULES.values() if r.name == text.lower()), None)


@dataclass(frozen=True)
class Location:
    """The file (and line) a finding points at, as the user's paths name it."""

    path: Path
    line: int | None = None
    """1-based line in a text file (config.json, an index), when one can be named."""


@dataclass(frozen=True)
class Finding:
    code: Code
    severity: Severity
    message: str
    keys: tuple[str, ...] = ()
    """tensor names the finding is about, in the order the message names them."""
    file: str | None = None
    """the file the finding is located in, relative to the source root where possible."""
    details: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    """machine-readable extras (differences, byte counts) for JSON consumers."""
    location: Location | None = field(default=None, compare=False)
    """where the finding points, set once the checkpoint's files are known (``inspect``)."""

    @property
    def rule(self) -> Rule:
        return RULES[self.code]


def finding(
    code: Code | str,
    message: str,
    *,
    keys: tuple[str, ...] | list[str] = (),
    file: str | None = None,
    severity: Severity | None = None,
    **details: object,
) -> Finding:
    """Build a finding with the rule's default severity unless the evidence raises it."""
    code = Code(code)
    return Finding(
        code=code,
        severity=severity or RULES[code].severity,
        message=message,
        keys=tuple(keys),
        file=file,
        details=details,
    )
