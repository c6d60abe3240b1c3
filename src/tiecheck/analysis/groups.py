"""Find the tie groups of a checkpoint: which stored (or expected) names are one tensor when tied.

Registry layouts are matched with any prefix, so ``language_model.model.embed_tokens.weight``
(Gemma 3 on disk) and ``base_model.model.model.embed_tokens.weight`` (PEFT) are found by the
plain ``model.embed_tokens.weight`` layout. When no layout matches, a fallback pairs
embedding-like and head-like names of the same shape, so unknown families still get checked.
"""

from __future__ import annotations

import bisect
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


def _match_embeddings(families: tuple[Family, ...], names: _Names) -> list[TieGroup]:
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


def _match_heads(family: Family, names: _Names) -> list[TieGroup]:
    """Heads stored without any embedding (TC104): only meaningful once the family is known.

    One group per prefix: a ``#`` head pattern matches every layer, but only the last is
    the head."""
    found: list[list[TieGroup]] = []
    for layout in family.layouts:
        groups: list[TieGroup] = []
        prefixes = dict.fromkeys(prefix for prefix, _ in names.matches(layout.head))
        for prefix in prefixes:
            groups += _groups_for_layout(layout, family, prefix, names)
        if groups:
            found.append(groups)
    # Several layouts can share a head name (``lm_head.weight`` for Qwen2 and Qwen2-VL); name the
    # missing embedding after the layout whose module the stored weights actually use.
    for groups in found:
        module = groups[0].members[0].name.rsplit(".", 2)[0] + "."
        if names.other_under(module, set(groups[0].names)):
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
            )
        )
    return groups


def find_groups(tensors: dict[str, TensorInfo], family: Family | None) -> list[TieGroup]:
    """Tie groups, trying the config's family first, then every family, then the heuristic."""
    names = _Names(frozenset(tensors))
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
