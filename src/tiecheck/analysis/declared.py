"""What the configuration declares about the tie, and where that answer came from.

"Absent" is not "false": transformers 4.x drops keys equal to the class default when saving, so
tied-by-default families (GPT-2, Gemma, BERT, T5, BART) routinely omit the flag. And VLM or
encoder-decoder configs can carry the flag at several levels, which loaders read differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tiecheck.analysis.families import Family, family_for
from tiecheck.model import ConfigInfo
from tiecheck.rules import Code, Finding, finding

NESTED = ("text_config", "decoder", "generator", "llm_config", "language_config")
FLAGS = ("tie_word_embeddings", "weight_tying")


@dataclass(frozen=True)
class DeclaredTie:
    tied: bool | None
    """None: no config and no alias record, so nothing declares anything."""
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


def _flag_values(data: dict[str, Any]) -> dict[str, object]:
    """Every tie flag written in the config, by dotted path, whatever its JSON type."""
    found: dict[str, object] = {}
    levels: list[tuple[str, dict[str, Any]]] = [("", data)]
    levels += [(f"{k}.", data[k]) for k in NESTED if isinstance(data.get(k), dict)]
    for prefix, level in levels:
        for flag in FLAGS:
            if flag in level:
                found[prefix + flag] = level[flag]
    return found


def _json_text(value: object) -> str:
    import json

    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


def _explicit_flags(config: ConfigInfo) -> tuple[dict[str, bool], list[Finding]]:
    """The flags as booleans, and TC117 for each that is not one.

    A non-boolean is read as transformers 4.x (and remote code doing ``if config.flag``) reads
    it, by truthiness: the string "false" is true. transformers 5.x refuses the config.
    """
    flags: dict[str, bool] = {}
    findings = []
    for path, value in _flag_values(config.data).items():
        if isinstance(value, bool):
            flags[path] = value
            continue
        reading = bool(value)
        flags[path] = reading
        findings.append(
            finding(
                Code.TIE_FLAG_NOT_BOOLEAN,
                f"{config.name}: {path} is {_json_text(value)} ({type(value).__name__}), not "
                "true or false: transformers 5.x refuses to load this config, 4.x reads it as "
                f"{str(reading).lower()} ({'tied' if reading else 'untied'})",
                file=config.name,
                value=_json_text(value),
            )
        )
    return flags, findings


def _model_types(data: dict[str, Any]) -> list[str]:
    types = [data.get("model_type")]
    types += [data[k].get("model_type") for k in NESTED if isinstance(data.get(k), dict)]
    return [t for t in types if isinstance(t, str)]


def _has_lm_head(config: ConfigInfo) -> bool:
    architectures = config.architectures
    if not architectures:
        return True
    return any(any(m in a for m in LM_HEAD_CLASS_MARKERS) for a in architectures)


def declared_tie(
    config: ConfigInfo | None, alias_records: dict[str, str]
) -> tuple[DeclaredTie, list[Finding]]:
    """Resolve the declared tie; the findings say when a default was assumed or levels differ."""
    if config is None:
        if alias_records:
            return DeclaredTie(True, "alias records in the weight metadata (no config)"), []
        return DeclaredTie(None, "none (no config found)"), [
            finding(
                Code.NO_CONFIG,
                "no config.json found; the tie state is inferred from the weights alone",
            )
        ]
    types = _model_types(config.data)
    family = next((f for f in map(family_for, types) if f is not None), None)
    model_type = types[0] if types else None
    flags, findings = _explicit_flags(config)
    common = {
        "model_type": model_type,
        "family": family,
        "flags": flags,
        "has_lm_head": _has_lm_head(config),
    }
    # MosaicML's remote MPT code ties whatever the flag says; transformers' native class (no
    # auto_map) honours the flag.
    if family is not None and family.flag_ignored and "auto_map" in config.data:
        return DeclaredTie(
            True, f"{family.name} always ties its embedding and head", **common
        ), findings
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
        return DeclaredTie(flags[chosen], f"{config.name}: {chosen}", **common), findings
    if family is not None:
        tied, why = family.default_tied, f"the {model_type} class default"
    else:
        tied, why = (
            True,
            (
                f"transformers' PretrainedConfig default (model_type {model_type!r} is not in "
                "tiecheck's registry)"
                if model_type
                else "transformers' PretrainedConfig default"
            ),
        )
    findings.append(
        finding(
            Code.TIE_FLAG_DEFAULTED,
            f"{config.name} has no tie_word_embeddings; using {why}: "
            f"{'tied' if tied else 'untied'} (llama.cpp reads an absent flag as untied)",
            file=config.name,
        )
    )
    return DeclaredTie(tied, why, defaulted=True, **common), findings
