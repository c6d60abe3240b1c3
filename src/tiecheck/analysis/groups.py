"""Find the tie groups of a checkpoint: which stored (or expected) names are one tensor when
tied, and the evidence for each.

A checkpoint whose declaration names its family (a ``model_type`` the registry knows, a
params.json) gets that family's layouts and nothing else. Layouts are matched with any prefix,
so ``base_model.model.model.embed_tokens.weight`` (PEFT) is found by the plain
``model.embed_tokens.weight`` layout. Without a family, what the files say comes first (alias
records, storage shared in a pickle), then names: a known family's names, or embedding-like
and head-like names of one shape; groups from names alone carry only ``name-heuristic``
evidence, which ``fix`` will not act on.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cache

from tiecheck.analysis.families import Evidence, Family, Layout, every_family, undeclared_layouts
from tiecheck.analysis.sharing import SharedStorage, SharingKind
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
    """the family whose layout matched (``Family.id``), ``alias-record``, ``shared-storage``,
    ``pair-option`` or ``heuristic``."""
    aliases_follow_flag: bool = True
    """whether an untied flag also unties the aliases (see ``Family.aliases_follow_flag``)."""
    evidence: tuple[Evidence, ...] = ()
    """why the names form a group (more is added once values are compared)."""
    untied_head: str | None = None
    """the head's name in the untied model, when it differs from ``members[-1]`` (Lingua)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def all_names(self) -> list[str]:
        """Member names with their side-cars: everything that follows the tie."""
        return [n for m in self.members for n in (m.name, *m.sidecars.values())]


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    """A layout pattern as a regex (``#`` a layer number), for the tail of a name."""
    return re.compile(re.escape(pattern).replace(r"\#", r"\d+"))


_NUMBER = re.compile(r"(?<![^.])\d+(?![^.])")
"""A whole dotted component of digits (what the ``#`` of a pattern matches)."""


def _shape(dotted: str) -> str:
    """A dotted name with every all-digit component written ``#``: the index key under which
    a layout pattern (``layers.#.linear.weight``, ``layers.0.wte.weight``) finds its names."""
    return _NUMBER.sub("#", dotted)


class _Names:
    """The stored names of one checkpoint, indexed once per ``find_groups`` call.

    Every question a layout asks (which names end with this pattern, under which prefix; which
    is the last layer's head under a prefix; which side-cars hang off a name) is then a lookup,
    not a scan of all names: a scan per matched embedding made 10,000 names take minutes. The
    indexes take time and memory linear in the total length of the names.
    """

    def __init__(self, names: frozenset[str]) -> None:
        self.all = names
        self.ordered = sorted(names)
        self._tails: dict[int, dict[str, list[tuple[str, str]]]] = {}
        self._last: dict[str, dict[str, str]] = {}
        self._under: dict[str, list[str]] | None = None

    def __contains__(self, name: object) -> bool:
        return name in self.all

    def _by_tail(self, k: int) -> dict[str, list[tuple[str, str]]]:
        """``(prefix, name)`` pairs keyed by the ``_shape`` of the last ``k`` components, in
        name order; the prefix is empty or ends with a dot, as ``prefix + pattern`` needs."""
        index = self._tails.get(k)
        if index is None:
            index = self._tails[k] = {}
            for name in self.ordered:
                parts = name.rsplit(".", k)
                if len(parts) < k or (len(parts) > k and not parts[0]):
                    continue
                prefix = parts[0] + "." if len(parts) > k else ""
                index.setdefault(_shape(name[len(prefix) :]), []).append((prefix, name))
        return index

    def matches(self, pattern: str) -> list[tuple[str, str]]:
        """``(prefix, name)`` for every stored ``name == prefix + pattern`` (``#`` standing for
        a layer number), in name order."""
        index = self._by_tail(pattern.count(".") + 1)
        if all(c == "#" or "#" not in c for c in pattern.split(".")):
            candidates = index.get(_shape(pattern), [])
        else:  # '#' inside a component: its shape cannot be predicted, test every tail
            candidates = sorted((pair for pairs in index.values() for pair in pairs), key=_name)
        regex = _regex(pattern)
        return [(p, n) for p, n in candidates if regex.fullmatch(n, len(p))]

    def expected(self, pattern: str, prefix: str) -> str:
        """The stored name for a layout pattern under a prefix (the last layer's, for a
        ``#`` pattern), or the name a loader would expect."""
        if "#" not in pattern:
            return prefix + pattern
        last = self._last.get(pattern)
        if last is None:
            last = self._last[pattern] = {}
            for p, n in self.matches(pattern):
                if p not in last or (len(n), n) > (len(last[p]), last[p]):
                    last[p] = n
        return last.get(prefix, prefix + pattern)

    def under(self, name: str) -> list[str]:
        """Stored names ``name.<rest>`` (bitsandbytes 4-bit side-cars of ``X.weight``).

        Each name belongs to its last ``.weight.`` only: ``a.weight.b.weight.absmax`` is a
        side-car of ``a.weight.b.weight``, not also of ``a.weight``. Without that, a chain of
        nested names would give every member all the names below it, quadratic in the names.
        """
        if self._under is None:
            self._under = {}
            for n in self.ordered:
                i = n.rfind(".weight.")
                if i >= 0:
                    self._under.setdefault(n[: i + len(".weight")], []).append(n)
        return self._under.get(name, [])

    def other_under(self, prefix: str, exclude: set[str]) -> bool:
        """Whether a stored name outside ``exclude`` starts with ``prefix`` (a range of the
        sorted names, stopping at the first)."""
        i = bisect.bisect_left(self.ordered, prefix)
        while i < len(self.ordered) and self.ordered[i].startswith(prefix):
            if self.ordered[i] not in exclude:
                return True
            i += 1
        return False


def _name(pair: tuple[str, str]) -> str:
    return pair[1]


def _sidecars(name: str, names: _Names) -> dict[str, str]:
    base = name[: -len(".weight")] if name.endswith(".weight") else name
    found = {s: base + s for s in SIDECAR_SUFFIXES if base + s in names.all}
    for n in names.under(name):
        found[n[len(base) :]] = n
    return found


def _groups_for_layout(
    layout: Layout, family: Family, prefix: str, names: _Names
) -> list[TieGroup]:
    embedding = prefix + layout.embedding
    members = [Member(embedding, Role.EMBEDDING, _sidecars(embedding, names))]
    members += [
        Member(prefix + a, Role.ALIAS, _sidecars(prefix + a, names)) for a in layout.aliases
    ]
    head = names.expected(layout.head, prefix)
    members.append(Member(head, Role.HEAD, _sidecars(head, names)))
    follows = family.aliases_follow_flag
    evidence = (family.evidence,)
    untied = prefix + layout.untied_head if layout.untied_head else None
    groups = [TieGroup(GroupKind.HEAD, tuple(members), family.id, follows, evidence, untied)]
    if layout.bias is not None:
        source, alias = (prefix + b for b in layout.bias)
        if source in names or alias in names:
            groups.append(
                TieGroup(
                    GroupKind.BIAS,
                    (Member(source, Role.BIAS), Member(alias, Role.BIAS_ALIAS)),
                    family.id,
                    follows,
                    evidence,
                )
            )
    return groups


def _match_embeddings(
    families: tuple[Family, ...], names: _Names, prefixes: frozenset[str] | None = None
) -> list[TieGroup]:
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
    for require_head in (True, False):
        for family, layout in candidates:
            for pattern in (layout.embedding, *layout.aliases):
                for prefix, name in names.matches(pattern):
                    if prefixes is not None and prefix not in prefixes:
                        continue
                    if name in claimed or (
                        require_head and names.expected(layout.head, prefix) not in names.all
                    ):
                        continue
                    found = _groups_for_layout(layout, family, prefix, names)
                    if any(n in claimed for n in found[0].names if n in names.all):
                        continue
                    groups += found
                    claimed.update(n for g in found for n in g.names)
    return groups


def _match_heads(
    family: Family, names: _Names, prefixes: frozenset[str] | None = None
) -> list[TieGroup]:
    """Heads stored without any embedding (TC104): only meaningful once the family is known.

    One group per prefix: a ``#`` head pattern matches every layer, but only the last is
    the head."""
    found: list[list[TieGroup]] = []
    for layout in family.layouts:
        groups: list[TieGroup] = []
        found_prefixes = dict.fromkeys(prefix for prefix, _ in names.matches(layout.head))
        for prefix in found_prefixes:
            if prefixes is not None and prefix not in prefixes:
                continue
            groups += _groups_for_layout(layout, family, prefix, names)
        if groups:
            found.append(groups)

    # Several layouts can share a head name (``lm_head.weight`` for Qwen2 and Qwen2-VL); name the
    # missing embedding after the layout whose module the stored weights actually use.
    # The longest module first: 'model.' holds 'model.language_model.layers.0' too.
    def module(groups: list[TieGroup]) -> str:
        return groups[0].members[0].name.rsplit(".", 2)[0] + "."

    for groups in sorted(found, key=lambda g: -len(module(g))):
        if names.other_under(module(groups), set(groups[0].names)):
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


def _heuristic(tensors: dict[str, TensorInfo], names: _Names) -> list[TieGroup]:
    """Unknown family: pair each embedding-like 2-D tensor with a head-like one of its shape."""
    groups = []
    heads_by_shape: dict[tuple[int, ...], list[str]] = {}  # once, not once per embedding
    for n in names.ordered:
        if _HEAD_LIKE.search(n):
            heads_by_shape.setdefault(tensors[n].shape, []).append(n)
    for name in names.ordered:
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
                evidence=(Evidence.NAME_HEURISTIC,),
            )
        )
    return groups


@cache
def _layout_pairs() -> dict[str, frozenset[str]]:
    """Every known family's embedding name -> the head names it pairs with (no ``#``)."""
    pairs: dict[str, set[str]] = {}
    for family in every_family():
        for layout in family.layouts:
            if "#" not in layout.embedding and "#" not in layout.head:
                pairs.setdefault(layout.embedding, set()).add(layout.head)
    return {k: frozenset(v) for k, v in pairs.items()}


def _roles(a: str, b: str, names: _Names) -> tuple[str, str] | None:
    """``(embedding, head)`` of two names a record or a shared storage pairs: by a known
    family's layout under one prefix (a lookup per dotted suffix of the name), else by
    embedding-like and head-like names."""
    pairs = _layout_pairs()
    for emb, head in ((a, b), (b, a)):
        parts = emb.split(".")
        for i in range(len(parts)):
            tail = ".".join(parts[i:])
            prefix = emb[: len(emb) - len(tail)]
            heads = pairs.get(tail)
            if heads and head.startswith(prefix) and head[len(prefix) :] in heads:
                return emb, head
    if _EMBEDDING_LIKE.search(a) and _HEAD_LIKE.search(b):
        return a, b
    if _EMBEDDING_LIKE.search(b) and _HEAD_LIKE.search(a):
        return b, a
    return None


def _pair(emb: str, head: str, names: _Names, layout: str, evidence: Evidence) -> TieGroup:
    members = (
        Member(emb, Role.EMBEDDING, _sidecars(emb, names)),
        Member(head, Role.HEAD, _sidecars(head, names)),
    )
    return TieGroup(GroupKind.HEAD, members, layout, evidence=(evidence,))


def _from_records(records: dict[str, str], names: _Names) -> list[TieGroup]:
    """Pairs named by alias records ``{dropped: kept}`` (safetensors' save_model,
    huggingface_hub): the record says which names are one tensor, the names which is the
    embedding."""
    groups, claimed = [], set()
    for dropped, kept in records.items():
        roles = _roles(dropped, kept, names)
        if roles is None or claimed & set(roles):
            continue
        groups.append(_pair(*roles, names, "alias-record", Evidence.ALIAS_RECORD))
        claimed.update(roles)
    return groups


def _from_shared(shared: list[SharedStorage], names: _Names, taken: set[str]) -> list[TieGroup]:
    """Pairs a pickle stores as one storage (nanoGPT's ``wte`` and ``lm_head``)."""
    groups = []
    for s in shared:
        if s.kind is not SharingKind.ALIAS or len(s.keys) != 2 or taken & set(s.keys):
            continue
        roles = _roles(s.keys[0], s.keys[1], names)
        if roles is not None:
            groups.append(_pair(*roles, names, "shared-storage", Evidence.SHARED_STORAGE))
    return groups


def _confirmed(groups: list[TieGroup], records: dict[str, str]) -> list[TieGroup]:
    """Add alias-record evidence to groups a record describes (either direction)."""
    if not records:
        return groups
    out = []
    for g in groups:
        members = set(g.names)
        if any(d in members and k in members for d, k in records.items()):
            g = replace(g, evidence=(*g.evidence, Evidence.ALIAS_RECORD))
        out.append(g)
    return out


def find_groups(
    tensors: dict[str, TensorInfo],
    family: Family | None,
    *,
    records: dict[str, str] | None = None,
    shared: list[SharedStorage] | None = None,
    pair: tuple[str, str] | None = None,
) -> list[TieGroup]:
    """Tie groups with their evidence: the user's ``pair``; else the declared family's
    layouts only; else what the files say (alias records, shared storage), then names."""
    names = _Names(frozenset(tensors))
    records = records or {}
    if pair is not None:
        return [_pair(pair[0], pair[1], names, "pair-option", Evidence.PAIR_OPTION)]
    if family is not None:
        return _confirmed(
            _match_embeddings((family,), names) or _match_heads(family, names), records
        )
    groups = _from_records(records, names)
    groups += _from_shared(shared or [], names, {n for g in groups for n in g.names})
    if groups:
        return groups
    # nothing declares a family: a known layout's exact names (no prefix but PEFT's), then
    # the look of the names
    known = undeclared_layouts()
    groups = _match_embeddings(known, names, UNDECLARED_PREFIXES) or _heuristic(tensors, names)
    if groups:
        return groups
    for candidate in known:
        groups = _match_heads(candidate, names, UNDECLARED_PREFIXES)
        if groups:
            return groups
    return []


UNDECLARED_PREFIXES = frozenset({"", "base_model.model."})
"""Prefixes a known layout may carry in a checkpoint that declares no family: any prefix
would let BLOOM's ``word_embeddings.weight`` claim DeBERTa's
``deberta.embeddings.word_embeddings.weight`` and invent a head beside it."""
