"""What the checkpoint's configuration declares about the tie, and where that answer came from.

"Absent" is not "false": transformers 4.x drops keys equal to the class default when saving, so
tied-by-default families (GPT-2, Gemma, BERT, T5, BART) routinely omit the flag; the default
comes from the registry generated from transformers. VLM or encoder-decoder configs can carry
the flag at several levels, which loaders read differently. Other frameworks declare the tie in
files of their own (``readers.declarations``): Lingua's ``model.weight_tying``, torchtitan's
``enable_weight_tying``, Megatron's ``untie_embeddings_and_output_weights``, NeMo's
``share_embeddings_and_output_weights``; Meta's original params.json declares none because the
reference code never ties. Every answer names the file and key it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tiecheck.analysis.families import (
    MOSAIC_MPT,
    Family,
    family_for,
    family_for_kind,
    has_lm_head,
)
from tiecheck.model import ConfigInfo, ConfigKind
from tiecheck.rules import Code, Finding, finding

NESTED = ("text_config", "decoder", "generator", "llm_config", "language_config")
"""Nested configs that may carry their own flag, for any model type (the registry adds the
ones a known model type has)."""


@dataclass(frozen=True)
class DeclaredTie:
    tied: bool | None
    """None: nothing declares anything (no config, no alias record)."""
    source: str
    """human-readable origin: 'config.json: text_config.tie_word_embeddings', a class default..."""
    model_type: str | None = None
    family: Family | None = None
    defaulted: bool = False
    flags: dict[str, bool] = field(default_factory=dict)
    """every explicit flag found, by its dotted path in the config."""
    has_lm_head: bool = True
    """False when ``architectures`` names only classes without an LM head (reward models,
    encoders, classifiers): then a missing head is expected."""
    file: str | None = None
    """the file the declaration was read from."""
    key: str | None = None
    """the key in it (dotted), when one decided."""
    kind: ConfigKind | None = None
    always_tied: bool = False
    """the model's code ties whatever the flag says (MosaicML's MPT)."""


LM_HEAD_CLASS_MARKERS = (
    "ForCausalLM",
    "LMHeadModel",
    "ForConditionalGeneration",
    "ForMaskedLM",
    "ForPreTraining",
    "WithLMHead",
    "ForSeq2SeqLM",
    "ForImageTextToText",
    "ForSpeechSeq2Seq",
    "ForMultimodalLM",
    "ForTextToSpeech",
    "MTModel",  # MarianMTModel
)
"""Class-name markers of an LM head, for classes the registry does not know (remote code)."""


def _json_text(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


def _at(data: dict[str, Any], path: str) -> tuple[bool, object]:
    """``(present, value)`` of a dotted key."""
    level: Any = data
    *parents, key = path.split(".")
    for part in parents:
        level = level.get(part) if isinstance(level, dict) else None
    if isinstance(level, dict) and key in level:
        return True, level[key]
    return False, None


def _as_flag(
    config: ConfigInfo, path: str, value: object, findings: list[Finding], *, negated: bool
) -> bool:
    """A flag's boolean value; a value that is not a JSON boolean is read as transformers 4.x
    (and remote code doing ``if config.flag``) reads it, by truthiness, with TC117.
    ``negated``: the key says "untie" (Megatron), so true means untied."""
    if isinstance(value, bool):
        return value != negated
    reading = bool(value) != negated
    findings.append(
        finding(
            Code.TIE_FLAG_NOT_BOOLEAN,
            f"{config.name}: {path} is {_json_text(value)} ({type(value).__name__}), not "
            "true or false: transformers 5.x refuses to load this config, 4.x reads it as "
            f"{str(bool(value)).lower()} ({'tied' if reading else 'untied'})",
            file=config.name,
            value=_json_text(value),
        )
    )
    return reading


def _model_types(data: dict[str, Any]) -> list[str]:
    types = [data.get("model_type")]
    types += [data[k].get("model_type") for k in NESTED if isinstance(data.get(k), dict)]
    return [t for t in types if isinstance(t, str)]


def _has_lm_head(config: ConfigInfo, model_type: str | None) -> bool:
    architectures = config.architectures
    if not architectures:
        return True
    known = has_lm_head(model_type, architectures)
    if known is not None:
        return known
    return any(any(m in a for m in LM_HEAD_CLASS_MARKERS) for a in architectures)


def _defaulted(config: ConfigInfo, tied: bool, why: str, flag: str, **common: Any) -> Declared:
    message = (
        f"{config.name} has no {flag}; using {why}: {'tied' if tied else 'untied'} "
        "(llama.cpp reads an absent flag as untied)"
    )
    return DeclaredTie(tied, why, defaulted=True, file=config.name, **common), [
        finding(Code.TIE_FLAG_DEFAULTED, message, file=config.name)
    ]


Declared = tuple[DeclaredTie, list[Finding]]


def _other_framework(config: ConfigInfo) -> Declared:
    """Declarations of frameworks other than transformers."""
    kind = config.kind
    family = family_for_kind(kind)
    common: dict[str, Any] = {"family": family, "kind": kind}
    findings: list[Finding] = []
    if kind is ConfigKind.META:
        why = (
            f"{config.name}: Meta's original format, which has no tie flag: the reference code "
            "keeps a separate output layer and loads it strictly"
        )
        return DeclaredTie(False, why, file=config.name, **common), findings
    keys = {
        ConfigKind.LINGUA: [("model.weight_tying", False)],
        ConfigKind.TORCHTITAN: [
            ("enable_weight_tying", False),
            ("model.enable_weight_tying", False),
        ],
        ConfigKind.MEGATRON: [
            ("untie_embeddings_and_output_weights", True),
            ("share_embeddings_and_output_weights", False),
        ],
    }[kind]
    for path, negated in keys:
        present, value = _at(config.data, path)
        if present:
            tied = _as_flag(config, path, value, findings, negated=negated)
            flags = {path: tied != negated} if isinstance(value, bool) else {}
            return (
                DeclaredTie(
                    tied, f"{config.name}: {path}", file=config.name, key=path, flags=flags,
                    **common,
                ),
                findings,
            )  # fmt: skip
    if kind is ConfigKind.MEGATRON:  # a YAML that says nothing about the tie declares nothing
        return DeclaredTie(None, f"{config.name} declares nothing about the tie", **common), [
            finding(
                Code.NO_CONFIG,
                f"{config.name} has neither untie_embeddings_and_output_weights nor "
                "share_embeddings_and_output_weights; the tie state is inferred from the weights",
                file=config.name,
            )
        ]
    # Lingua's and torchtitan's model args default to untied
    name = family.name if family else kind.value
    return _defaulted(config, False, f"{name}'s default", keys[0][0], **common)


def declared_tie(config: ConfigInfo | None, alias_records: dict[str, str]) -> Declared:
    """Resolve the declared tie; the findings say when a default was assumed, levels differ or
    a flag is not a boolean."""
    if config is None:
        if alias_records:
            return DeclaredTie(True, "alias records in the weight metadata (no config)"), []
        return DeclaredTie(None, "none (no config found)"), [
            finding(
                Code.NO_CONFIG,
                "no config.json found; the tie state is inferred from the weights alone",
            )
        ]
    if config.kind is not ConfigKind.TRANSFORMERS:
        return _other_framework(config)
    types = _model_types(config.data)
    family = next(
        (f for t in types if (f := family_for(t, config.architectures)) is not None), None
    )
    model_type = family.model_types[0] if family and family.model_types else None
    model_type = model_type or (types[0] if types else None)
    flag_names = (family.flag, *family.flag_aliases) if family else ("tie_word_embeddings",)
    levels = ("", *NESTED, *(family.sub_configs if family else ()))
    findings: list[Finding] = []
    flags: dict[str, bool] = {}
    for level in dict.fromkeys(levels):
        for flag in dict.fromkeys((*flag_names, "tie_word_embeddings")):
            path = f"{level}.{flag}" if level else flag
            present, value = _at(config.data, path)
            if present:
                flags[path] = _as_flag(config, path, value, findings, negated=False)
    common: dict[str, Any] = {
        "model_type": model_type,
        "family": family,
        "flags": flags,
        "has_lm_head": _has_lm_head(config, model_type),
        "kind": ConfigKind.TRANSFORMERS,
    }
    # MosaicML's remote MPT code ties whatever the flag says; transformers' native class (no
    # auto_map) honours the flag.
    if model_type in MOSAIC_MPT and "auto_map" in config.data:
        return DeclaredTie(
            True, "MosaicML's MPT code always ties its embedding and head", file=config.name,
            always_tied=True, **common,
        ), findings  # fmt: skip
    if len(set(flags.values())) > 1:
        listed = ", ".join(f"{k}={str(v).lower()}" for k, v in flags.items())
        findings.append(
            finding(
                Code.TIE_FLAGS_DISAGREE,
                f"{config.name}: tie flags disagree ({listed}); transformers 4.x reads the text "
                "config, 5.x the top level, so loaders will not agree on this model",
                file=config.name,
            )
        )
    if flags:
        top = [k for k in flags if "." not in k]
        # a family's own flag wins (hf_olmo ties by weight_tying, whatever else is written)
        own = family.flag if family is not None and family.flag in flags else None
        chosen = own or (top[0] if top else next(iter(flags)))
        return DeclaredTie(
            flags[chosen], f"{config.name}: {chosen}", file=config.name, key=chosen, **common
        ), findings
    if family is not None:
        tied, why = family.default_tied, f"the {model_type} class default"
    else:
        tied = True
        why = (
            f"transformers' PretrainedConfig default (model_type {model_type!r} is not in "
            "tiecheck's registry)"
            if model_type
            else "transformers' PretrainedConfig default"
        )
    flag = family.flag if family else "tie_word_embeddings"
    declared, more = _defaulted(config, tied, why, flag, **common)
    return declared, findings + more
