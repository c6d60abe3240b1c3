"""Find the tie groups of a checkpoint: which stored (or expected) names are one tensor when tied.

Registry layouts are matched with any prefix, so ``language_model.model.embed_tokens.weight``
(Gemma 3 on disk) and ``base_model.model.model.embed_tokens.weight`` (PEFT) are found by the
plain ``model.embed_tokens.weight`` layout. When no layout matches, a fallback pairs
embedding-like and head-like names of the same shape, so unknown families still get checked.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import cache

from tiecheck.analysis.families import FAMILIES, Family, Layout
from tiecheck.model import TensorInfo

SIDECAR_SUFFIXES = (".scales", ".biases", ".SCB", ".weight_format")
"""Quantisation companions of ``X.weight`` stored as ``X.<suffix>`` (MLX, bitsandbytes int8);
bitsandbytes 4-bit stores ``X.weight.<something>`` instead, matched by prefix."""


class GroupKind(str, Enum):
    HEAD = "embedding-head"
    BIAS = "bias"


class Role(str, Enum):
    EMBEDDING = "embedding"
    ALIAS = "alias"
    """shared with the embedding by the architecture itself, whatever the tie flag says."""
    HEAD = "head"
    BIAS = "bias"
    BIAS_ALIAS = "bias-alias"


@dataclass(frozen=True)
class Member:
    name: str
    role: Role
    sidecars: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    """stored quantisation companions, by suffix relative to the weight's base name."""


@dataclass(frozen=True)
class TieGroup:
    kind: GroupKind
    members: tuple[Member, ...]
    """the source first (the name transformers keeps), then aliases, then the head."""
    layout: str
    """the registry family that matched, or 'heuristic'."""
    aliases_follow_flag: bool = True
    """whether an untied flag also unties the aliases (see ``Family.aliases_follow_flag``)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def all_names(self) -> list[str]:
        """Member names with their side-cars: everything that follows the tie."""
        return [n for m in self.members for n in (m.name, *m.sidecars.values())]


@cache
def _regex(pattern: str, prefix: str | None = None) -> re.Pattern[str]:
    body = re.escape(pattern).replace(r"\#", r"\d+")
    head = r"(?P<prefix>(?:.+\.)?)" if prefix is None else re.escape(prefix)
    return re.compile(f"^{head}{body}$")


@functools.lru_cache(maxsize=2)
def _ordered(names: frozenset[str]) -> list[str]:
    return sorted(names)


def _sidecars(name: str, names: frozenset[str]) -> dict[str, str]:
    base = name[: -len(".weight")] if name.endswith(".weight") else name
    found = {s: base + s for s in SIDECAR_SUFFIXES if base + s in names}
    # Names under ``name.``: a range of the sorted names, not a scan of all of them (a scan
    # per member made 10,000 embeddings take minutes).
    ordered, prefix = _ordered(names), name + "."
    i = bisect.bisect_left(ordered, prefix)
    while i < len(ordered) and ordered[i].startswith(prefix):
        found[ordered[i][len(base) :]] = ordered[i]
        i += 1
    return found


def _expected(pattern: str, prefix: str, names: frozenset[str]) -> str:
    """The stored name for a layout pattern under a prefix, or the name a loader would expect."""
    if "#" not in pattern:
        return prefix + pattern
    regex = _regex(pattern, prefix)
    matches = sorted((n for n in names if regex.match(n)), key=lambda n: (len(n), n))
    return matches[-1] if matches else prefix + pattern


def _groups_for_layout(
    layout: Layout, family: Family, prefix: str, names: frozenset[str]
) -> list[TieGroup]:
    embedding = prefix + layout.embedding
    members = [Member(embedding, Role.EMBEDDING, _sidecars(embedding, names))]
    members += [
        Member(prefix + a, Role.ALIAS, _sidecars(prefix + a, names)) for a in layout.aliases
    ]
    head = _expected(layout.head, prefix, names)
    members.append(Member(head, Role.HEAD, _sidecars(head, names)))
    follows = family.aliases_follow_flag
    groups = [TieGroup(GroupKind.HEAD, tuple(members), family.name, follows)]
    if layout.bias is not None:
        source, alias = (prefix + b for b in layout.bias)
        if source in names or alias in names:
            groups.append(
                TieGroup(
                    GroupKind.BIAS,
                    (Member(source, Role.BIAS), Member(alias, Role.BIAS_ALIAS)),
                    family.name,
                )
            )
    return groups


def _match_embeddings(families: tuple[Family, ...], names: frozenset[str]) -> list[TieGroup]:
    """Groups for every stored embedding (or architecture alias of one) a layout recognises.

    Layouts whose head is also stored are tried first: without a config, Whisper's
    ``model.decoder.embed_tokens.weight`` must pair with its stored ``proj_out.weight``, not
    with OPT's absent ``lm_head.weight``.
    """
    claimed: set[str] = set()
    groups: list[TieGroup] = []
    candidates = [(f, layout) for f in families for layout in f.layouts]
    # Longer patterns first, so 'transformer.wte.weight' is not read as prefix + 'wte.weight'.
    candidates.sort(key=lambda fl: -len(fl[1].embedding))
    ordered = _ordered(names)
    for require_head in (True, False):
        for family, layout in candidates:
            for pattern in (layout.embedding, *layout.aliases):
                regex = _regex(pattern)
                for name in ordered:
                    if name in claimed:
                        continue
                    match = regex.match(name)
                    if not match:
                        continue
                    found = _groups_for_layout(layout, family, match["prefix"], names)
                    head = found[0].members[-1].name
                    if (require_head and head not in names) or any(
                        n in claimed for n in found[0].names if n in names
                    ):
                        continue
                    groups += found
                    claimed.update(n for g in found for n in g.names)
    return groups


def _match_heads(family: Family, names: frozenset[str]) -> list[TieGroup]:
    """Heads stored without any embedding (TC104): only meaningful once the family is known."""
    found: list[list[TieGroup]] = []
    for layout in family.layouts:
        groups: list[TieGroup] = []
        regex = _regex(layout.head)
        for name in _ordered(names):
            match = regex.match(name)
            if match:
                groups += _groups_for_layout(layout, family, match["prefix"], names)
        if groups:
            found.append(groups)
    # Several layouts can share a head name (``lm_head.weight`` for Qwen2 and Qwen2-VL); name the
    # missing embedding after the layout whose module the stored weights actually use.
    for groups in found:
        module = groups[0].members[0].name.rsplit(".", 2)[0] + "."
        if any(n.startswith(module) for n in names - set(groups[0].names)):
            return groups
    return found[0] if found else []


_EMBEDDING_LIKE = re.compile(
    r"(^|\.)(embed_tokens|embed_in|wte|word_embeddings|tok_embeddings|token_embd|embeddings?"
    r"|shared|embed)\.weight$"
)
_HEAD_LIKE = re.compile(
    r"(^|\.)(lm_head|embed_out|output|proj_out|head|output_layer|logits|unembed|unembedding"
    r"|vocab_projector|decoder|out|lm_head\.decoder)\.weight$"
)
_NOT_VOCAB = re.compile(r"pos|position|patch|token_type|segment|time|type_embed")


def _heuristic(tensors: dict[str, TensorInfo], names: frozenset[str]) -> list[TieGroup]:
    """Unknown family: pair each embedding-like 2-D tensor with a head-like one of its shape."""
    groups = []
    heads_by_shape: dict[tuple[int, ...], list[str]] = {}  # once, not once per embedding
    for n in _ordered(names):
        if _HEAD_LIKE.search(n):
            heads_by_shape.setdefault(tensors[n].shape, []).append(n)
    for name in _ordered(names):
        info = tensors[name]
        if len(info.shape) != 2 or not _EMBEDDING_LIKE.search(name) or _NOT_VOCAB.search(name):
            continue
        heads = [n for n in heads_by_shape.get(info.shape, [])[:2] if n != name]
        head = heads[0] if heads else "lm_head.weight"
        groups.append(
            TieGroup(
                GroupKind.HEAD,
                (
                    Member(name, Role.EMBEDDING, _sidecars(name, names)),
                    Member(head, Role.HEAD, _sidecars(head, names)),
                ),
                "heuristic",
            )
        )
    return groups


def find_groups(tensors: dict[str, TensorInfo], family: Family | None) -> list[TieGroup]:
    """Tie groups, trying the config's family first, then every family, then the heuristic."""
    names = frozenset(tensors)
    if family is not None:
        groups = _match_embeddings((family,), names) or _match_heads(family, names)
        if groups:
            return groups
    groups = _match_embeddings(FAMILIES, names)
    if groups:
        return groups
    groups = _heuristic(tensors, names)
    if groups:
        return groups
    if family is None:
        for candidate in FAMILIES:
            groups = _match_heads(candidate, names)
            if groups:
                return groups
    return []
