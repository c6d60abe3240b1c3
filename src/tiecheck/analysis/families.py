"""Families: where a kind of model keeps its embedding and head, and what its configuration
assumes when the tie flag is absent.

Two sources, never mixed for one checkpoint:

- **transformers model types** come from the registry generated from transformers itself
  (``registry.json``, see ``analysis.registry``): for the config's ``model_type`` and the head
  class its ``architectures`` names, the tie map, the input and output embeddings and the
  names ``save_pretrained`` writes. A known ``model_type`` only ever gets its own names.
- **other ecosystems** (Meta's original format, torchtune, torchtitan, Lingua, Megatron,
  nanoGPT, llama.cpp's GGUF names, remote-code models transformers does not ship) are written
  out below, each with the source its names come from.

``#`` in a name stands for a layer number.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cache

from tiecheck.analysis import registry
from tiecheck.model import ConfigKind


class Evidence(str, Enum):
    """Why a tie group exists: the fixed vocabulary of reports (``evidence`` in JSON)."""

    REGISTRY = "registry"
    """the registry entry (generated from transformers) for the config's ``model_type``."""
    LAYOUT = "layout"
    """a known family's layout: another ecosystem's, chosen by its declaration file
    (params.json, a Megatron config) or a remote-code ``model_type``; or, in a checkpoint
    that declares no family, a layout whose exact names the files hold."""
    ALIAS_RECORD = "alias-record"
    """an alias record ``{dropped: kept}`` in the safetensors or index metadata."""
    SHARED_STORAGE = "shared-storage"
    """the names are one storage in a pickle."""
    BYTE_IDENTITY = "byte-identity"
    """the stored tensors hold identical bytes."""
    NAME_HEURISTIC = "name-heuristic"
    """only the look of the names suggests the pair (an embedding-like and a head-like name
    of one shape): a guess."""
    PAIR_OPTION = "pair-option"
    """named by the user with ``--pair EMBEDDING=HEAD``."""


CONFIRMING = frozenset(
    {
        Evidence.REGISTRY,
        Evidence.LAYOUT,
        Evidence.ALIAS_RECORD,
        Evidence.SHARED_STORAGE,
        Evidence.PAIR_OPTION,
    }
)
"""Evidence ``fix`` may act on; byte identity and names alone are a guess."""


@dataclass(frozen=True)
class Layout:
    embedding: str
    head: str
    aliases: tuple[str, ...] = ()
    """names the architecture always shares with the embedding (T5 and BART encoder/decoder)."""
    bias: tuple[str, str] | None = None
    """(source, alias) of a bias the architecture shares (BERT's decoder bias)."""
    untied_head: str | None = None
    """the head's name in the untied model when the tied one stores it elsewhere (Lingua's
    TiedLinear keeps ``output.tied_module.weight``, the untied model ``output.weight``)."""


@dataclass(frozen=True)
class Family:
    id: str
    """fixed identifier in reports: ``transformers:<model_type>`` or an ecosystem's name."""
    name: str
    """for people."""
    model_types: tuple[str, ...]
    default_tied: bool
    layouts: tuple[Layout, ...]
    evidence: Evidence
    source: str
    """where the facts come from."""
    flag: str = "tie_word_embeddings"
    flag_aliases: tuple[str, ...] = ()
    """other config keys the class reads into the flag."""
    flag_ignored: bool = False
    """the remote modelling code ties whatever the config says (MosaicML's MPT)."""
    flag_forced: bool = False
    """transformers 5 overrides the flag (the T5 family: always true)."""
    aliases_follow_flag: bool = True
    """transformers 5.x unties architecture aliases (BART's encoder/decoder embeddings, BERT's
    decoder bias) with the flag; T5 keeps one ``shared`` module whatever the flag says."""
    flag_scales_output: bool = False
    """the tie flag also rescales the decoder output (T5), so flipping it changes the model."""
    sub_configs: tuple[str, ...] = ()
    """nested config keys that carry their own tie flag (``text_config``)."""


# -- other ecosystems ---------------------------------------------------------------------

META = Family(
    "meta",
    "Meta original / torchtune / torchtitan",
    (),
    False,
    (Layout("tok_embeddings.weight", "output.weight"),),
    Evidence.LAYOUT,
    "llama-models llama3/model.py (tok_embeddings, output); torchtune and torchtitan keep the "
    "names",
)
LINGUA = Family(
    "lingua",
    "Lingua",
    (),
    False,
    (
        Layout("tok_embeddings.weight", "output.weight"),
        Layout("tok_embeddings.weight", "output.tied_module.weight", untied_head="output.weight"),
    ),
    Evidence.LAYOUT,
    "facebookresearch/lingua apps/main/transformer.py (TiedLinear stores output.tied_module)",
    flag="weight_tying",
)
MEGATRON = Family(
    "megatron",
    "Megatron-LM / NeMo",
    (),
    True,
    (
        Layout("embedding.word_embeddings.weight", "output_layer.weight"),
        Layout("language_model.embedding.word_embeddings.weight", "output_layer.weight"),
    ),
    Evidence.LAYOUT,
    "Megatron-LM GPTModel (embedding.word_embeddings, output_layer)",
    flag="untie_embeddings_and_output_weights",
)
ECOSYSTEMS: tuple[Family, ...] = (
    META,
    LINGUA,
    MEGATRON,
    Family(
        "nanogpt",
        "nanoGPT",
        (),
        True,
        (Layout("transformer.wte.weight", "lm_head.weight"),),
        Evidence.LAYOUT,
        "karpathy/nanoGPT model.py (wte and lm_head are one parameter)",
    ),
    Family(
        "gguf",
        "llama.cpp GGUF names",
        (),
        False,
        (Layout("token_embd.weight", "output.weight"),),
        Evidence.LAYOUT,
        "llama.cpp: output.weight absent when tied",
    ),
    Family(
        "hf_olmo",
        "OLMo (hf_olmo remote code)",
        ("hf_olmo",),
        True,
        (Layout("model.transformer.wte.weight", "model.transformer.ff_out.weight"),),
        Evidence.LAYOUT,
        "allenai/OLMo hf_olmo (weight_tying; ff_out only when untied)",
        flag="weight_tying",
    ),
    Family(
        "internlm2",
        "InternLM2 (remote code)",
        ("internlm2",),
        False,
        (Layout("model.tok_embeddings.weight", "output.weight"),),
        Evidence.LAYOUT,
        "internlm/internlm2 modeling_internlm2.py",
    ),
    Family(
        "chatglm",
        "ChatGLM / GLM-4 (remote code)",
        ("chatglm",),
        False,
        (
            Layout(
                "transformer.embedding.word_embeddings.weight", "transformer.output_layer.weight"
            ),
        ),
        Evidence.LAYOUT,
        "THUDM/chatglm modeling_chatglm.py",
    ),
    Family(
        "phi-msft",
        "phi MixFormer (remote code)",
        ("mixformer-sequential", "phi-msft"),
        False,
        (Layout("layers.0.wte.weight", "layers.#.linear.weight"),),
        Evidence.LAYOUT,
        "microsoft/phi-1_5 modeling_mixformer_sequential.py",
    ),
    Family(
        "falcon-refinedweb",
        "Falcon (RefinedWeb remote code)",
        ("RefinedWeb", "RefinedWebModel"),
        True,
        (
            Layout("transformer.word_embeddings.weight", "lm_head.weight"),
            Layout("word_embeddings.weight", "lm_head.weight"),
        ),
        Evidence.LAYOUT,
        "tiiuae/falcon modelling_RW.py",
    ),
)
_BY_KIND = {
    ConfigKind.META: META,
    ConfigKind.LINGUA: LINGUA,
    ConfigKind.TORCHTITAN: META,
    ConfigKind.MEGATRON: MEGATRON,
}
_REMOTE_CODE = {t: f for f in ECOSYSTEMS for t in f.model_types}

T5_SCALING = frozenset({"t5", "mt5", "umt5", "longt5", "switch_transformers"})
"""T5's tie flag also scales the decoder output by d_model**-0.5 (TYING.md section 2)."""
FORCED_4X_DEFAULTS = {"mt5": False}
"""Where transformers 5 forces the flag, the registry (read from 5.x) records the forced value
as the default; transformers 4.x still reads an absent flag as its own class default, and for
mT5 that is false (TYING.md section 2). 5.x keeps a stored head that differs from the embedding
(it warns and does not tie), so the 4.x default is the one that names a real risk: with it, a
missing mT5 head is reported as missing rather than silently tied."""
MOSAIC_MPT = frozenset({"mpt"})
"""MosaicML's remote MPT code ties whatever the flag says (transformers' native class honours
it); told apart by ``auto_map`` in config.json."""


# -- transformers model types, from the registry --------------------------------------------


def _saved(head: registry.HeadClass, name: str) -> tuple[str, ...]:
    """The names a parameter may be stored under, ``save_pretrained``'s first."""
    return head.disk_names(name)


def _layouts(head: registry.HeadClass) -> tuple[tuple[Layout, ...], bool]:
    """A head class's layouts (one per way its embedding and head may be named on disk), and
    whether its aliases untie with the flag."""
    embedding, output = head.input_embedding, head.output_embedding
    if embedding is None:
        return (), True
    ties = head.ties(True) or {}
    structural = head.structural_ties()
    aliases = tuple(t for t, s in ties.items() if s == embedding and t != output)
    follows = not any(a in structural for a in aliases)
    bias = None
    if head.output_bias is not None and head.output_bias in ties:
        bias = (head.saved_name(ties[head.output_bias]), head.saved_name(head.output_bias))
    heads = _saved(head, output) if output else ()
    layouts = []
    for emb in _saved(head, embedding):
        for out in heads or (head.saved_name(embedding),):
            layouts.append(Layout(emb, out, tuple(head.saved_name(a) for a in aliases), bias))
    # a checkpoint of the base model alone stores its names without the base prefix
    prefix = head.base_model_prefix + "." if head.base_model_prefix else ""
    saved = head.saved_name(embedding)
    if prefix and saved.startswith(prefix) and heads:
        layouts.append(Layout(saved[len(prefix) :], heads[0]))
    return tuple(dict.fromkeys(layouts)), follows


def _from_registry(entry: registry.ModelTypeEntry, architectures: tuple[str, ...]) -> Family:
    named = entry.head_for(list(architectures))
    heads = [named] if named is not None else list(entry.lm_heads())
    primary = entry.primary_head()
    if named is None and primary is not None and primary in heads:  # most likely first
        heads.remove(primary)
        heads.insert(0, primary)
    layouts: list[Layout] = []
    follows = True
    for head in heads:
        found, head_follows = _layouts(head)
        layouts += found
        follows = follows and head_follows
    model_type = entry.model_type
    return Family(
        f"transformers:{model_type}",
        model_type,
        (model_type,),
        FORCED_4X_DEFAULTS.get(model_type, bool(entry.flag.default))
        if entry.flag.forced
        else bool(entry.flag.default),
        tuple(dict.fromkeys(layouts)),
        Evidence.REGISTRY,
        f"tiecheck's registry of transformers {registry.environment().transformers} "
        f"({', '.join(h.name for h in heads[:2])})",
        flag=entry.flag.name,
        flag_aliases=entry.flag.aliases,
        flag_forced=entry.flag.forced,
        aliases_follow_flag=follows,
        flag_scales_output=model_type in T5_SCALING,
        sub_configs=tuple(s.path for s in entry.sub_configs if s.flag is not None),
    )


@cache
def _registry_family(model_type: str, architectures: tuple[str, ...]) -> Family | None:
    entry = registry.lookup(model_type)
    return None if entry is None else _from_registry(entry, architectures)


def family_for(model_type: str | None, architectures: tuple[str, ...] = ()) -> Family | None:
    """The family of a transformers ``model_type`` (remote-code ones written out here first,
    then the registry); None when neither knows it."""
    if not model_type:
        return None
    if model_type in _REMOTE_CODE:
        return _REMOTE_CODE[model_type]
    return _registry_family(model_type, architectures)


def family_for_kind(kind: ConfigKind) -> Family | None:
    """The family a non-transformers declaration file names (params.json, Megatron YAML)."""
    return _BY_KIND.get(kind)


def has_lm_head(model_type: str | None, architectures: tuple[str, ...]) -> bool | None:
    """Whether the classes ``architectures`` names carry an LM head, by the registry; None
    when it does not know them."""
    entry = registry.lookup(model_type) if model_type else None
    if entry is None:
        return None
    known = [entry.head(a) for a in architectures]
    known = [h for h in known if h is not None]
    if not known:
        return None
    return any(h.is_lm for h in known)


@cache
def every_family() -> tuple[Family, ...]:
    """Every family: the ecosystems' and every registry model type's."""
    found = [f for t in registry.model_types() if (f := _registry_family(t, ())) is not None]
    return (*ECOSYSTEMS, *found)


@cache
def undeclared_layouts() -> tuple[Family, ...]:
    """For a checkpoint that declares no family: one pseudo-family per distinct layout of
    every family, named after the family when only one has it (``nanogpt``, ``meta``) and
    ``known-names`` when several share it (``model.embed_tokens.weight`` and
    ``lm_head.weight`` are the names of dozens of transformers model types)."""
    owners: dict[Layout, list[Family]] = {}
    for family in every_family():
        for layout in family.layouts:
            owners.setdefault(layout, []).append(family)
    out = []
    for layout, families in owners.items():
        first = families[0]
        out.append(
            Family(
                first.id if len(families) == 1 else "known-names",
                first.name if len(families) == 1 else "a known family's names",
                (),
                first.default_tied,
                (layout,),
                Evidence.LAYOUT,
                first.source
                if len(families) == 1
                else "names of "
                + ", ".join(f.id for f in families[:4])
                + (f" and {len(families) - 4} more" if len(families) > 4 else ""),
                aliases_follow_flag=all(f.aliases_follow_flag for f in families),
            )
        )
    return tuple(out)
