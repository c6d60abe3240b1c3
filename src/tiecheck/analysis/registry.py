"""The family registry generated from transformers itself (``tiecheck/data/registry.json``).

For every ``model_type`` transformers knows that has a language-model head (or any class that
ties parameters), the data file says what transformers does with the tie flag and where each
head class keeps its embedding, its output head and their ties, in memory and on disk. It is
written by ``scripts/generate_registry.py``, which instantiates every class on the meta device
under a pinned transformers release; tiecheck reads the file and never imports transformers
(seconds of start-up, and a different answer per installed version).

Use :func:`lookup` with the ``model_type`` of a config.json::

    entry = lookup("gemma3")
    head = entry.head_for(config_architectures) or entry.primary_head()
    head.ties(flag=True)          # {target: source}: what transformers ties when the flag is true
    head.structural_ties()        # ties kept whatever the flag says (T5's shared embeddings)
    head.disk_names("lm_head.weight")  # names the head may have in a checkpoint

Terms used throughout:

- *flag*: ``tie_word_embeddings``, the only key transformers 5 reads to decide whether to tie
  (``get_expanded_tied_weights_keys`` returns nothing when the config's flag is false or absent).
  Every PreTrainedModel inside a composite model reads its *own* config's flag, so a tie can be
  governed by ``text_config`` rather than the root (``Tie.flag_path``).
- *tie map*: ``{target: source}`` of full in-memory parameter names. ``save_pretrained`` keeps
  the source and drops the target; ``from_pretrained`` accepts either (since 5.x the tie is
  symmetric).
- *in-memory name* vs *on-disk name*: transformers 5 renames checkpoint keys on load
  (``conversion_mapping.py``) and reverses the renames on save, so a freshly saved Gemma 3 stores
  ``language_model.model.embed_tokens.weight`` for ``model.language_model.embed_tokens.weight``.

The file is loaded on the first call and each entry is converted on its first lookup; both
are cached for the life of the process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from functools import cache
from importlib import resources
from typing import Any

DATA_FILE = "registry.json"
SCHEMA_VERSION = 1

LM_KINDS = frozenset(
    {
        "causal-lm",
        "masked-lm",
        "seq-to-seq-causal-lm",
        "speech-seq-2-seq",
        "image-text-to-text",
        "multimodal-lm",
        "vision-2-seq",
        "pretraining",
        "with-lm-head",
    }
)
"""Head kinds (auto-mapping names, shortened) whose classes carry a language-model head."""


class RegistryError(Exception):
    """The packaged data file is missing, unreadable or of another schema: a broken install."""


class Opposite(str, Enum):
    """What transformers does when config.json says the opposite of the class default."""

    KEPT = "kept"
    """the value is used as written."""
    OVERRIDDEN = "overridden"
    """the config class forces its own value (the T5 family in transformers 5: always true)."""
    RAISES = "raises"
    """the config class refuses the value (DBRX raises on ``tie_word_embeddings=True``)."""


@dataclass(frozen=True)
class TieFlag:
    """A config class's tie flag."""

    name: str
    """the attribute, ``tie_word_embeddings``."""
    default: bool | None
    """its value when config.json does not spell it. ``None``: the class has no such attribute,
    so an absent key means transformers 5 never ties (an explicit key is still honoured)."""
    opposite: Opposite | None
    """what happens to the non-default value; ``None`` when unknown (static-only entry)."""
    aliases: tuple[str, ...] = ()
    """other config.json keys the class reads into the flag (LFM2's ``tie_embedding``)."""

    @property
    def forced(self) -> bool:
        """The class overrides whatever config.json says: the flag decides nothing."""
        return self.opposite is Opposite.OVERRIDDEN

    def effective(self, declared: bool | None) -> bool | None:
        """The value transformers ends up with at this config level when config.json says
        ``declared`` (``None``: the key is absent; what another level lifts or pushes is not
        included). ``None`` in return: the config would not load (``RAISES``)."""
        if declared is None:
            return bool(self.default)  # no attribute: transformers 5 reads it as false
        if declared == self.default or self.opposite in (None, Opposite.KEPT):
            return declared
        if self.opposite is Opposite.OVERRIDDEN:
            return self.default
        return None


@dataclass(frozen=True)
class SubConfig:
    """A nested configuration (``text_config``, ``decoder``, ``thinker_config.text_config``)."""

    path: str
    """its keys from the root of config.json, joined by dots."""
    config_class: str
    model_type: str | None
    flag: TieFlag | None
    """``None``: the sub-config class has no tie flag (vision towers, audio encoders)."""
    lifts_to_root: bool
    """an inner value opposite to the root's default is copied to the root (LLaVA, Qwen2-VL)."""
    follows_root: bool
    """the root's value is copied into this sub-config (Pix2Struct)."""


@dataclass(frozen=True)
class Tie:
    """One tied parameter: ``target`` is the same tensor as ``source`` in memory."""

    target: str
    source: str
    flag_path: str | None = None
    """which config's flag governs it: ``""`` the root, ``"text_config"``...; ``None`` for a
    structural tie (kept whatever the flag says) or when unknown."""


@dataclass(frozen=True)
class ParamNames:
    """Where one in-memory parameter is found in checkpoint files."""

    name: str
    """the in-memory name (``model.named_parameters()``)."""
    saved_as: str | None
    """the name transformers' ``save_pretrained`` writes; ``None`` when unknown or split."""
    legacy: tuple[str, ...] = ()
    """other on-disk names ``from_pretrained`` renames into ``name`` (older layouts)."""
    saved_split: tuple[str, ...] = ()
    """when ``save_pretrained`` writes the tensor as several (a conversion concatenates them
    on load: Molmo2's ``wte.embedding`` + ``wte.new_embedding``), their names."""

    def disk_names(self) -> tuple[str, ...]:
        """Every name under which this parameter may be stored, most likely first."""
        names = [n for n in (self.saved_as, self.name, *self.legacy) if n]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Rename:
    """A checkpoint-key renaming rule of transformers' conversion mapping (applied on load,
    reversed on save), kept because it touches one of the recorded names."""

    pattern: str
    """regex on the on-disk key (matched with ``re.search`` within ``scope``)."""
    replacement: str
    scope: str | None
    """the key prefix the rule is limited to, ``None`` for the whole key."""


@dataclass(frozen=True)
class HeadClass:
    """A model class of the model type (``LlamaForCausalLM``, ``T5Model``)."""

    name: str
    kinds: tuple[str, ...]
    """auto mappings the class is registered in, shortened (``causal-lm``, ``masked-lm``,
    ``base``...); a class listed only because it ties parameters has no LM kind."""
    base_model_prefix: str
    """the attribute holding the base model (``model``, ``transformer``, ``bert``): a checkpoint
    of the base model alone stores its names without this prefix."""
    ties_flag_true: tuple[Tie, ...] | None
    """the complete expanded tie map with every tie flag true; ``None`` when unknown or when
    the config class refuses ``true``."""
    ties_flag_false: tuple[Tie, ...] | None
    """the same with every flag false: the structural ties."""
    input_embedding: str | None
    """``get_input_embeddings()``'s weight; ``None`` when the class has none or it is not a
    single weight (CSM's summed codebook embeddings)."""
    output_embedding: str | None
    """``get_output_embeddings()``'s weight (the LM head); ``None`` when there is none."""
    output_bias: str | None
    """the head's bias, when it has one (BERT ``cls.predictions.decoder.bias``)."""
    params: tuple[ParamNames, ...]
    """on-disk names of the embedding, head, bias and every tied name."""
    renames: tuple[Rename, ...]
    declared_ties: tuple[tuple[str, str | None], ...] | None
    """the class's ``_tied_weights_keys`` as written (patterns allowed; 4.x: sources ``None``)."""
    config_path: str | None
    """the sub-config the class is built from (``text_config`` for ``Llama4ForCausalLM``, as
    ``AutoModelForCausalLM`` hands it ``get_text_config()``); ``""`` the model type's config;
    ``None`` its own config class's defaults or unknown."""
    static_only: str | None
    """why the class could not be instantiated; then only declared facts are filled in."""
    notes: tuple[str, ...] = ()

    @property
    def is_lm(self) -> bool:
        return bool(LM_KINDS.intersection(self.kinds))

    def ties(self, flag: bool) -> dict[str, str] | None:
        """``{target: source}`` when every tie flag is ``flag``; ``None`` when unknown."""
        chosen = self.ties_flag_true if flag else self.ties_flag_false
        return None if chosen is None else {t.target: t.source for t in chosen}

    def structural_ties(self) -> dict[str, str]:
        """Ties transformers keeps whatever the flag says (both maps agree)."""
        untied = self.ties(False) or {}
        tied = self.ties(True)
        if tied is None:
            return untied
        return {t: s for t, s in untied.items() if tied.get(t) == s}

    def flag_ties(self) -> dict[str, str]:
        """Ties that exist only when the flag is true."""
        tied = self.ties(True) or {}
        structural = self.structural_ties()
        return {t: s for t, s in tied.items() if t not in structural}

    def param(self, name: str) -> ParamNames | None:
        for entry in self.params:
            if entry.name == name:
                return entry
        return None

    def disk_names(self, name: str) -> tuple[str, ...]:
        """Names under which in-memory parameter ``name`` may be stored (just ``name`` when
        the registry records nothing else about it)."""
        entry = self.param(name)
        return entry.disk_names() if entry is not None else (name,)

    def saved_name(self, name: str) -> str:
        """The name ``save_pretrained`` writes for in-memory parameter ``name``."""
        entry = self.param(name)
        return entry.saved_as if entry is not None and entry.saved_as else name


@dataclass(frozen=True)
class ModelTypeEntry:
    """Everything recorded for one ``model_type``."""

    model_type: str
    config_class: str | None
    flag: TieFlag
    sub_configs: tuple[SubConfig, ...]
    heads: tuple[HeadClass, ...]
    """sorted by class name."""
    static_only: str | None
    """why the config class could not be built; then every head is static-only too."""

    def head(self, class_name: str) -> HeadClass | None:
        for head in self.heads:
            if head.name == class_name:
                return head
        return None

    def head_for(self, architectures: object) -> HeadClass | None:
        """The first class named in config.json's ``architectures`` that the registry knows
        (the value is taken as found in the file: anything but a list of strings is ignored)."""
        if not isinstance(architectures, list):
            return None
        for name in architectures:
            if isinstance(name, str) and (head := self.head(name)) is not None:
                return head
        return None

    def lm_heads(self) -> tuple[HeadClass, ...]:
        return tuple(h for h in self.heads if h.is_lm)

    def primary_head(self) -> HeadClass | None:
        """The LM head class to assume when config.json names none: the causal-LM class if
        there is one, else the first LM class by kind preference, else ``None``."""
        for kind in (
            "causal-lm",
            "image-text-to-text",
            "seq-to-seq-causal-lm",
            "speech-seq-2-seq",
            "multimodal-lm",
            "vision-2-seq",
            "masked-lm",
            "with-lm-head",
            "pretraining",
        ):
            for head in self.heads:
                if kind in head.kinds:
                    return head
        return None

    def sub_config(self, path: str) -> SubConfig | None:
        for sub in self.sub_configs:
            if sub.path == path:
                return sub
        return None


@dataclass(frozen=True)
class Environment:
    """What the data file was generated with."""

    transformers: str
    torch: str
    peft: str
    python: str
    date: str
    optional: tuple[tuple[str, str], ...] = ()
    """optional packages some classes need to be built, and their versions."""


# ------------------------------------------------------------------------------------------
# loading


@dataclass(frozen=True)
class _Data:
    """The data file, indexed but not parsed: ``header`` is everything but the entries (parsed),
    ``spans`` locates each model type's entry in ``text``. ``parsed`` holds the entries when the
    text was not in the canonical form and had to be parsed whole."""

    text: str
    header: dict[str, Any]
    spans: dict[str, tuple[int, int]]
    parsed: dict[str, Any] | None = None


# The entries' opening lines in the generator's canonical form (``json.dumps(indent=1,
# sort_keys=True)``, enforced by tests/test_registry_data.py): inside ``"model_types"`` each
# entry starts on a line indented by exactly two spaces, and nothing else in that object is
# (JSON strings cannot hold a raw newline; deeper levels are indented further).
_ENTRIES_OPEN = '\n "model_types": {\n'
_ENTRIES_CLOSE = "\n }"
_ENTRY_START = '\n  "'


@cache
def _data() -> _Data:
    """Read the file and index its entries. ``json`` can only parse a whole document, and the
    whole document (about 1 MB) takes longer to parse than tiecheck should spend on it; each
    entry is parsed on its first lookup instead (see ``_ENTRIES_OPEN``)."""
    try:
        text = resources.files("tiecheck").joinpath("data").joinpath(DATA_FILE).read_text("utf-8")
    except (OSError, UnicodeDecodeError, ModuleNotFoundError) as exc:
        raise RegistryError(f"cannot read the packaged {DATA_FILE}: {exc}") from exc
    data = _indexed(text)
    if data is None:  # not in canonical form (edited by hand?): parse it whole
        try:
            whole = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"{DATA_FILE} is not JSON: {exc}") from exc
        if not isinstance(whole, dict) or not isinstance(whole.get("model_types"), dict):
            raise RegistryError(f"{DATA_FILE} has no model_types object")
        data = _Data(text, whole, {}, whole["model_types"])
    if data.header.get("schema") != SCHEMA_VERSION:
        found = data.header.get("schema")
        raise RegistryError(f"{DATA_FILE} has schema {found!r}, expected {SCHEMA_VERSION}")
    return data


def _indexed(text: str) -> _Data | None:
    start = text.find(_ENTRIES_OPEN)
    end = text.find(_ENTRIES_CLOSE, start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    body_start = start + len(_ENTRIES_OPEN) - 1  # at the newline before the first entry
    try:
        header = json.loads(text[:body_start] + "}" + text[end + len(_ENTRIES_CLOSE) :])
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    spans: dict[str, tuple[int, int]] = {}
    position = text.find(_ENTRY_START, body_start, end + 1)
    while position >= 0:
        following = text.find(_ENTRY_START, position + 1, end + 1)
        name_end = text.find('"', position + len(_ENTRY_START))
        name = text[position + len(_ENTRY_START) : name_end]
        if name_end < 0 or "\\" in name:
            return None
        spans[name] = (position + 1, following if following >= 0 else end)
        position = following
    return _Data(text, header, spans)


def _raw_entry(model_type: str) -> dict[str, Any] | None:
    data = _data()
    if data.parsed is not None:
        return data.parsed.get(model_type)
    span = data.spans.get(model_type)
    if span is None:
        return None
    piece = data.text[span[0] : span[1]].rstrip().removesuffix(",")
    try:
        parsed = json.loads("{" + piece + "}")
    except ValueError as exc:
        raise RegistryError(f"{DATA_FILE}: entry {model_type} is not JSON: {exc}") from exc
    if not isinstance(parsed, dict) or set(parsed) != {model_type}:
        raise RegistryError(f"{DATA_FILE}: entry {model_type} is malformed")
    return parsed[model_type]


def model_types() -> tuple[str, ...]:
    """Every model type the registry knows, sorted."""
    data = _data()
    return tuple(sorted(data.parsed if data.parsed is not None else data.spans))


def environment() -> Environment:
    env = _data().header["environment"]
    return Environment(
        transformers=env["transformers"],
        torch=env["torch"],
        peft=env["peft"],
        python=env["python"],
        date=env["date"],
        optional=tuple(sorted((env.get("optional") or {}).items())),
    )


def lookup(model_type: object) -> ModelTypeEntry | None:
    """The entry for a config.json ``model_type``; ``None`` when transformers (at the pinned
    release) does not know it or it has no head and no tie. Anything but a string (the value
    comes from an untrusted file) is ``None``."""
    if not isinstance(model_type, str):
        return None
    return _entry(model_type)


@cache
def _entry(model_type: str) -> ModelTypeEntry | None:
    raw = _raw_entry(model_type)
    return None if raw is None else _model_type(model_type, raw)


def _flag(raw: dict[str, Any] | None) -> TieFlag | None:
    if raw is None:
        return None
    opposite = raw.get("opposite")
    return TieFlag(
        name=raw["name"],
        default=raw["default"],
        opposite=Opposite(opposite) if opposite is not None else None,
        aliases=tuple(raw.get("aliases", ())),
    )


def _ties(
    raw: dict[str, str] | None, following: dict[str, str | None] | None
) -> tuple[Tie, ...] | None:
    """``following``: the flag path of each tie that follows a flag, ``None`` for the others."""
    if raw is None:
        return None
    following = following or {}
    return tuple(Tie(t, s, following.get(t)) for t, s in sorted(raw.items()))


def _head(name: str, raw: dict[str, Any]) -> HeadClass:
    tied, untied = raw["ties_flag_true"], raw["ties_flag_false"]
    # the file writes only the flag paths that are not the root's, and only the saved names
    # that differ from the in-memory ones
    exceptions = raw.get("tie_flags")
    following: dict[str, str | None] = {}
    if tied is not None and untied is not None:
        following = {
            t: (exceptions.get(t, "") if exceptions is not None else None)
            for t, s in tied.items()
            if untied.get(t) != s
        }
    saved = raw.get("saved_names")
    split = raw.get("saved_split") or {}
    legacy = raw.get("legacy_names") or {}
    names = {n for m in (tied or {}, untied or {}) for pair in m.items() for n in pair}
    names |= {raw[k] for k in ("input_embedding", "output_embedding", "output_bias") if raw[k]}
    names |= set(legacy)
    declared = raw.get("declared_ties")
    return HeadClass(
        name=name,
        kinds=tuple(raw["kinds"]),
        base_model_prefix=raw["base_model_prefix"],
        ties_flag_true=_ties(tied, following),
        ties_flag_false=_ties(untied, None),
        input_embedding=raw["input_embedding"],
        output_embedding=raw["output_embedding"],
        output_bias=raw["output_bias"],
        params=tuple(
            ParamNames(
                n,
                None if saved is None or n in split else saved.get(n, n),
                tuple(legacy.get(n, ())),
                tuple(split.get(n, ())),
            )
            for n in sorted(names)
        ),
        renames=tuple(Rename(r["from"], r["to"], r["scope"]) for r in raw.get("renames", ())),
        declared_ties=None if declared is None else tuple(sorted(declared.items())),
        config_path=raw.get("config_path"),
        static_only=raw["static_only"],
        notes=tuple(raw.get("notes", ())),
    )


def _model_type(model_type: str, raw: dict[str, Any]) -> ModelTypeEntry:
    flag = _flag(raw["flag"])
    if flag is None:  # the generator always writes the root's record (default null if absent)
        raise RegistryError(f"{DATA_FILE}: {model_type} has no flag record")
    return ModelTypeEntry(
        model_type=model_type,
        config_class=raw["config_class"],
        flag=flag,
        sub_configs=tuple(
            SubConfig(
                path=path,
                config_class=sub["config_class"],
                model_type=sub["model_type"],
                flag=_flag(sub["flag"]),
                lifts_to_root=sub["lifts_to_root"],
                follows_root=sub["follows_root"],
            )
            for path, sub in sorted(raw["sub_configs"].items())
        ),
        heads=tuple(_head(name, head) for name, head in sorted(raw["heads"].items())),
        static_only=raw["static_only"],
    )
