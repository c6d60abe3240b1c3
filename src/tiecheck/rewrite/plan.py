"""Decide what ``fix`` writes: which tensors survive under which names, in which files, and
how the config and index change. Pure: reads a ``Report``, returns a ``FixPlan``, writes nothing,
so ``--dry-run`` shows exactly what a real run would do.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tiecheck.analysis.declared import NESTED
from tiecheck.analysis.families import CONFIRMING
from tiecheck.analysis.groups import GroupKind, Member, Role
from tiecheck.analysis.integrity import alias_records
from tiecheck.analysis.ties import GroupResult, MemberResult, Relation, Verdict
from tiecheck.errors import TiecheckError
from tiecheck.model import ConfigKind, FileFormat, SourceKind, TensorInfo
from tiecheck.readers.discover import ADAPTER_FILES, PICKLE_SUFFIXES
from tiecheck.readers.paths import lstat_or_none, outside_folder
from tiecheck.report import Report
from tiecheck.rules import Code
from tiecheck.units import count


class FixRefused(TiecheckError):
    """The requested rewrite would lose data or change the model's computation."""


@dataclass(frozen=True)
class OutTensor:
    name: str
    source: TensorInfo
    """where the bytes come from (dtype and shape are the source's)."""


@dataclass
class OutFile:
    name: str
    tensors: list[OutTensor]
    metadata: dict[str, str]
    whole_copy_of: str | None = None
    """the source safetensors file this one is byte-identical to: it is then copied (or
    reflinked) whole instead of re-serialised."""

    @property
    def nbytes(self) -> int:
        return sum(t.source.nbytes for t in self.tensors)


@dataclass
class FixPlan:
    source: str
    to: Verdict
    dropped: list[tuple[str, str]] = field(default_factory=list)
    """(dropped name, the kept name it aliases)."""
    copied: list[tuple[str, str]] = field(default_factory=list)
    """(new name, the name whose bytes it copies)."""
    renamed: list[tuple[str, str]] = field(default_factory=list)
    """(stored name, name written)."""
    files: list[OutFile] = field(default_factory=list)
    index_name: str | None = None
    index_metadata: dict[str, Any] = field(default_factory=dict)
    config_name: str | None = None
    config: dict[str, Any] | None = None
    config_edits: list[str] = field(default_factory=list)
    extra_files: list[Path] = field(default_factory=list)
    """non-weight files of a model folder that come along unchanged (tokenizer, README...)."""
    replaced_sources: list[str] = field(default_factory=list)
    """source weight files the output supersedes (left untouched, even in place)."""
    bytes_before: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_after(self) -> int:
        return sum(f.nbytes for f in self.files)

    @property
    def changes_weights(self) -> bool:
        return bool(self.dropped or self.copied or self.renamed) or any(
            f.whole_copy_of is None for f in self.files
        )

    @property
    def changes_anything(self) -> bool:
        return self.changes_weights or bool(self.config_edits)


def output_file_name(name: str) -> str:
    """``pytorch_model-00001-of-00002.bin`` -> ``model-00001-of-00002.safetensors``."""
    path = PurePosixPath(name)
    if path.suffix == ".safetensors":
        return name
    stem = path.stem
    if stem.startswith("pytorch_model"):
        stem = "model" + stem[len("pytorch_model") :]
    return str(path.with_name(stem + ".safetensors"))


def parse_size(text: str) -> int:
    """'5GB', '500MB', '2GiB', '1000000' -> bytes (decimal and binary units, like the Hub)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (try 5GB, 500MB or 2GiB)")
    number, unit = float(match[1]), match[2].upper().rstrip("B")
    scale = {
        "": 1,
        "K": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
        "KI": 2**10,
        "MI": 2**20,
        "GI": 2**30,
        "TI": 2**40,
    }[unit]
    size = int(number * scale)
    if size < 1:
        raise ValueError(f"{text!r} is not a shard size: give at least one byte (e.g. 5GB)")
    return size


class _Builder:
    def __init__(self, report: Report, to: Verdict, keep: str | None) -> None:
        self.report = report
        self.ckpt = report.checkpoint
        self.to = to
        self.keep = keep
        self.tensors = {t.name: t for t in reversed(self.ckpt.tensors)}
        self.plan = FixPlan(source=self.ckpt.source, to=to, bytes_before=self.ckpt.total_bytes)
        self.drop: set[str] = set()
        self.add: list[tuple[str, TensorInfo, str]] = []
        """(new name, bytes source, file it goes beside)."""
        self.aliases: dict[str, str] = {}

    def refuse_unfixable(self) -> None:
        ckpt = self.ckpt
        if ckpt.kind is SourceKind.PEFT_ADAPTER:
            raise FixRefused("fix rewrites model checkpoints, not PEFT adapters")
        if ckpt.unreadable:
            raise FixRefused(
                "cannot fix a checkpoint with unreadable or missing files ("
                + ", ".join(sorted(ckpt.unreadable))
                + "); run 'tiecheck inspect' for details"
            )
        if ckpt.config_unreadable:
            raise FixRefused(
                "the checkpoint's config could not be read (see 'tiecheck inspect'); fix it "
                "first: the tie flag lives there"
            )
        if ckpt.tensors and any(
            t.span is None and (t.storage is None or t.storage.span is None) for t in ckpt.tensors
        ):
            raise FixRefused("some tensors are stored compressed inside the zip; cannot stream")
        if any(f.code is Code.TENSOR_STORED_TWICE for f in self.report.findings):
            raise FixRefused(
                "a tensor name is stored more than once (TC006); decide which copy is right "
                "before rewriting"
            )
        for t in ckpt.tensors:  # pickled names may hold lone surrogates; JSON headers cannot
            try:
                t.name.encode("utf-8")
            except UnicodeEncodeError:
                raise FixRefused(
                    f"tensor name {t.name!r} is not valid Unicode and cannot be written to "
                    "a safetensors header; rename it first"
                ) from None
        if not any(g.kind is GroupKind.HEAD for g in self.report.tie_groups):
            raise FixRefused("no embedding/head pair found in the weights; nothing to tie or untie")
        declared = self.report.declared
        family = declared.family
        if (
            family is not None
            and family.flag_scales_output
            and declared.tied is not None
            and (declared.tied != (self.to is Verdict.TIED))
        ):
            raise FixRefused(
                f"{family.name}: the tie flag also rescales the decoder output (by d_model**-0.5 "
                "when tied), so flipping it changes what the model computes; refusing"
            )
        if declared.always_tied and self.to is Verdict.UNTIED:
            raise FixRefused(f"{declared.source}; it cannot be untied")
        kind = declared.kind
        if kind is ConfigKind.META and self.to is Verdict.TIED:
            raise FixRefused(
                f"{declared.file}: Meta's original format has no tie: its reference code always "
                "loads output.weight, so a tied checkpoint would not load there; use --to untied"
            )
        if kind is ConfigKind.MEGATRON:
            raise FixRefused(
                f"{declared.file}: the tie is declared in a Megatron/NeMo YAML file, which "
                "tiecheck does not rewrite; set untie_embeddings_and_output_weights (or "
                "share_embeddings_and_output_weights) there by hand"
            )
        for group in self.report.tie_groups:
            if group.kind is GroupKind.HEAD and not CONFIRMING & set(group.evidence):
                emb, head = group.group.names[0], group.group.names[-1]
                confirm = shlex.quote(f"{emb}={head}")
                raise FixRefused(
                    f"the pair {emb} / {head} comes only from the look of their names (a "
                    "guess): nothing declares the model's family, and no alias record or shared "
                    f"storage confirms it. If it is right, say so: --pair {confirm}"
                )

    def _sidecar_pairs(self, src: Member, dst_name: str) -> list[tuple[str, str]]:
        """(source name, destination name) for a member and its quantisation side-cars."""
        base = dst_name[: -len(".weight")] if dst_name.endswith(".weight") else dst_name
        src_base = src.name[: -len(".weight")] if src.name.endswith(".weight") else src.name
        pairs = [(src.name, dst_name)]
        for name in src.sidecars.values():
            suffix = name[len(src_base) :]
            pairs.append((name, base + suffix))
        return pairs

    def _member(self, group: GroupResult, name: str) -> Member:
        return next(m for m in group.group.members if m.name == name)

    def tie(self, group: GroupResult) -> None:
        members = group.group.members
        stored = [m for m in group.members if m.stored]
        if not stored:
            return
        kept = members[0]
        diverged = [m for m in stored if m.relation is Relation.DISTINCT]
        if diverged and self.keep is None:
            other = diverged[0]
            raise FixRefused(
                f"{other.name} and {stored[0].name} hold different values "
                f"({_describe(other)}); tying keeps only one of them. Pass --keep embedding "
                "(what transformers 4.x does on load) or --keep head (keep the fine-tuned "
                "head), or use --to untied to keep both"
            )
        embedding_side = [
            m for m in stored if m.role is not Role.HEAD and m.role is not Role.BIAS_ALIAS
        ]
        head_side = [m for m in stored if m.role in (Role.HEAD, Role.BIAS_ALIAS)]
        if self.keep == "head" and head_side:
            survivor = head_side[0]
        else:
            survivor = (embedding_side or stored)[0]
        survivor_member = self._member(group, survivor.name)
        for member in group.group.members:
            if member.name != kept.name:
                self.aliases[member.name] = kept.name
        for result in stored:
            member = self._member(group, result.name)
            if result.name == survivor.name:
                continue
            for name, _ in self._sidecar_pairs(member, member.name):
                self.drop.add(name)
            if result.name == kept.name:  # --keep head: the survivor is renamed onto it
                self.plan.notes.append(
                    f"--keep head: {kept.name} takes the values of {survivor.name}; its own "
                    "values are not kept"
                )
            else:
                self.plan.dropped.append((result.name, kept.name))
        if survivor.name != kept.name:
            for src, dst in self._sidecar_pairs(survivor_member, kept.name):
                self.drop.add(src)
                self.add.append((dst, self.tensors[src], self.tensors[src].file))
                self.plan.renamed.append((src, dst))

    def untie(self, group: GroupResult) -> None:
        # Bias groups too (BERT's cls.predictions.decoder.bias): transformers 5.x unties them
        # along with the head, so an absent alias would be initialised afresh.
        stored = [m for m in group.members if m.stored]
        if not stored:
            return
        head = group.group.members[-1]
        reference = self._member(group, stored[0].name)
        if not group.group.aliases_follow_flag:
            self._drop_structural_copies(group)
        untied = group.group.untied_head
        if (
            untied
            and untied != head.name
            and any(m.name == head.name and m.stored for m in group.members)
        ):
            # the tied model keeps its head under another name (Lingua's TiedLinear): the
            # untied model's loader looks for it under its own
            for src, dst in self._sidecar_pairs(head, untied):
                self.drop.add(src)
                self.add.append((dst, self.tensors[src], self.tensors[src].file))
                self.plan.renamed.append((src, dst))
            return
        if not any(m.name == head.name and m.stored for m in group.members):
            if "#" in head.name:
                raise FixRefused(f"cannot tell which layer's head to create ({head.name})")
            for src, dst in self._sidecar_pairs(reference, head.name):
                self.add.append((dst, self.tensors[src], self.tensors[src].file))
                self.plan.copied.append((dst, src))
        # Every other absent member too, not only the embedding: transformers 5.x unties a
        # seq2seq model's encoder/decoder embeddings from ``shared`` along with the head when
        # the flag is false, so an untied BART missing them loads them at random.
        for member in group.members:
            if member.stored or member.name == head.name:
                continue
            for src, dst in self._sidecar_pairs(reference, member.name):
                self.add.append((dst, self.tensors[src], self.tensors[src].file))
                self.plan.copied.append((dst, src))

    def _drop_structural_copies(self, group: GroupResult) -> None:
        """Untying a T5 keeps one ``shared`` embedding for the encoder and decoder whatever
        the flag says (transformers 4.x and 5.x alike), so stored identical copies of it are
        bytes wasted (TC103) in the untied form too: drop them and record the alias, as
        save_pretrained does. A copy that differs stays: which one loads is not ours to pick."""
        kept = group.group.members[0].name
        for result in group.members:
            if result.role is not Role.ALIAS or not result.stored:
                continue
            if result.relation not in (Relation.DUPLICATE, Relation.SHARED):
                continue
            member = self._member(group, result.name)
            for name, _ in self._sidecar_pairs(member, member.name):
                self.drop.add(name)
            self.aliases[result.name] = kept
            self.plan.dropped.append((result.name, kept))

    def edit_config(self) -> None:
        config = self.ckpt.config
        if config is None:
            self.plan.notes.append(
                "no config: only the weights change; loaders cannot know the tie state"
            )
            return
        declared = self.report.declared
        value = self.to is Verdict.TIED
        data = copy.deepcopy(config.data)
        if config.kind is ConfigKind.META:  # no flag to write: the weights say it all
            return
        if config.kind is ConfigKind.TRANSFORMERS:
            flag = declared.family.flag if declared.family else "tie_word_embeddings"
            levels = {"", *NESTED, *(declared.family.sub_configs if declared.family else ())}
        else:  # Lingua's model.weight_tying, torchtitan's enable_weight_tying
            flag = declared.key or {ConfigKind.LINGUA: "model.weight_tying"}.get(
                config.kind, "enable_weight_tying"
            )
            levels = {"", flag.rpartition(".")[0]}
        paths = list(declared.flags) or []
        if flag not in paths:
            paths.insert(0, flag)
        for path in paths:
            level, _, key = path.rpartition(".")
            target: Any = data
            for part in level.split(".") if level else ():
                target = target.get(part) if isinstance(target, dict) else None
            if level not in levels or not isinstance(target, dict):
                continue
            if target.get(key) != value:
                before = json.dumps(target[key]) if key in target else "(absent)"
                self.plan.config_edits.append(f"{path}: {before} -> {json.dumps(value)}")
                target[key] = value
        self.plan.config_name = config.name
        self.plan.config = data

    def layout(self, max_shard_size: int | None) -> None:
        ckpt = self.ckpt
        files: dict[str, list[OutTensor]] = {name: [] for name in ckpt.files}
        for t in sorted(ckpt.tensors, key=_file_order):
            if t.name not in self.drop:
                files[t.file].append(OutTensor(t.name, t))
        for name, source, beside in self.add:
            files[beside].append(OutTensor(name, source))
        if max_shard_size is not None:
            ordered = [t for tensors in files.values() for t in tensors]
            first = next(iter(ckpt.files), None)
            self._reshard(ordered, max_shard_size, self._file_metadata(first))
            return
        for name, tensors in files.items():
            if not tensors:
                self.plan.notes.append(f"{name} would be empty and is not written")
                continue
            out = OutFile(self._output_name(name), tensors, self._file_metadata(name))
            self.plan.files.append(out)
        sharded = ckpt.index is not None or (
            len(self.plan.files) > 1
            and ckpt.kind is not SourceKind.SAFETENSORS_SET
            and ckpt.kind is not SourceKind.PICKLE_FILE
        )
        if sharded:
            self._index(ckpt.index.name if ckpt.index else "model.safetensors.index.json")

    def _output_name(self, name: str) -> str:
        """A folder's lone weight file under a training name (``last.ckpt``) becomes
        ``model.safetensors``, the name ``from_pretrained`` looks for."""
        ckpt = self.ckpt
        if (
            len(ckpt.files) == 1
            and ckpt.index is None
            and Path(ckpt.source).is_dir()
            and "/" not in name
        ):
            return "model.safetensors"
        return output_file_name(name)

    def _file_metadata(self, name: str | None) -> dict[str, str]:
        """The source file's own metadata without alias records, and ``format`` kept or 'pt'
        (huggingface_hub's loader refuses files whose format is not pt or mlx)."""
        records = alias_records(self.ckpt)
        source = self.ckpt.files[name].metadata if name in self.ckpt.files else {}
        metadata = {k: v for k, v in source.items() if k not in records}
        if metadata.get("format") not in ("pt", "mlx"):
            metadata["format"] = "pt"
        return metadata

    def _reshard(self, ordered: list[OutTensor], limit: int, metadata: dict[str, str]) -> None:
        shards: list[list[OutTensor]] = [[]]
        size = 0
        for t in ordered:
            if shards[-1] and size + t.source.nbytes > limit:
                shards.append([])
                size = 0
            shards[-1].append(t)
            size += t.source.nbytes
        if len(shards) == 1:
            self.plan.files.append(OutFile("model.safetensors", shards[0], dict(metadata)))
            return
        n = len(shards)
        for i, tensors in enumerate(shards, 1):
            self.plan.files.append(
                OutFile(f"model-{i:05d}-of-{n:05d}.safetensors", tensors, dict(metadata))
            )
        self._index("model.safetensors.index.json")

    def _index(self, name: str) -> None:
        if name.endswith(".bin.index.json"):
            name = name.replace("pytorch_model.bin", "model.safetensors")
            name = name.replace(".bin.index.json", ".safetensors.index.json")
        old = dict(self.ckpt.index.metadata) if self.ckpt.index else {}
        records = alias_records(self.ckpt)
        metadata = {k: v for k, v in old.items() if k not in records and k != "total_size"}
        metadata["total_size"] = 0  # filled by finish() once the files are known
        self.plan.index_name = name
        self.plan.index_metadata = metadata

    def _mark_whole_copies(self) -> None:
        for out in self.plan.files:
            source = self.ckpt.files.get(out.name)
            if source is None or source.format is not FileFormat.SAFETENSORS:
                continue
            stored = sorted((t for t in self.ckpt.tensors if t.file == out.name), key=_file_order)
            same = [(t.name, t.source) for t in out.tensors] == [(t.name, t) for t in stored]
            if same and source.metadata == out.metadata:
                out.whole_copy_of = source.name

    def alias_metadata(self) -> None:
        """Alias records: written for a tied result; for an untied one the source's are
        dropped (stale) and only the copies the architecture still shares get one (T5)."""
        # Records for the names this run drops, plus the source's own records that still
        # describe the output; none for a tie that was already deduplicated, so a fix that
        # only flips the flag (TC101) leaves the weight files byte-identical.
        written = {t.name for f in self.plan.files for t in f.tensors}
        candidates = dict(alias_records(self.ckpt)) if self.to is Verdict.TIED else {}
        candidates.update(self.plan.dropped)
        candidates.update(self.plan.renamed if self.to is Verdict.TIED else ())
        records = {d: k for d, k in candidates.items() if d not in written and k in written}
        if not records:
            return
        if self.plan.index_name is not None:
            self.plan.index_metadata.update(records)
        else:
            for out in self.plan.files:
                out.metadata.update(records)

    def finish(self) -> FixPlan:
        names = [t.name for f in self.plan.files for t in f.tensors]
        if len(names) != len(set(names)):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise TiecheckError(f"internal error: the plan writes {twice} twice; please report")
        if self.plan.index_name is not None:
            self.plan.index_metadata["total_size"] = self.plan.bytes_after
        for f in self.ckpt.files.values():
            if output_file_name(f.name) != f.name:
                self.plan.replaced_sources.append(f.name)
        if self.plan.replaced_sources:
            self.plan.notes.append(
                "the source's pickle files are converted to safetensors; the originals are "
                "left untouched (" + ", ".join(self.plan.replaced_sources) + ")"
            )
        renamed_names = {t.name for t in self.ckpt.tensors if t.stored_name != t.name}
        if renamed_names:
            self.plan.notes.append(
                f"{count(len(renamed_names), 'tensor name')} written without their container or "
                "wrapper prefix, as loaders expect them"
            )
        return self.plan


def _file_order(t: TensorInfo) -> tuple[str, int]:
    return (t.file, t.span.start if t.span else 0)


def _describe(member: MemberResult) -> str:
    d = member.difference
    return "values or shapes differ" if d is None else d.describe()


def extra_files(report: Report, written: set[str]) -> tuple[list[Path], list[str]]:
    """Top-level non-weight files of a model folder (the config is handled separately), and
    notes on the ones left behind.

    Only when the source is a folder or an index in one: a lone file's neighbours (a Downloads
    folder) are not the model's. Every one is hostile: a file that links out of the folder
    (a README pointing at a secret) or is not a regular file (a FIFO would block the copy) is
    not copied, with a note saying why.
    """
    ckpt = report.checkpoint
    if not (Path(ckpt.source).is_dir() or ckpt.index is not None):
        return [], []
    weight_like = (".safetensors", *PICKLE_SUFFIXES, ".index.json", ".gguf")
    skip = {*written, *ADAPTER_FILES}  # the plan writes those (the config it edits)
    kept, notes = [], []
    for p in sorted(ckpt.root.iterdir()):
        name = p.name
        if name.endswith(weight_like) or name in skip or name.startswith("."):
            continue
        st = lstat_or_none(p)
        if st is None or stat.S_ISDIR(st.st_mode):
            continue
        outside = outside_folder(ckpt.root, p)
        if outside is not None:
            notes.append(
                f"{name} is a symbolic link to {outside}, outside the model folder; not copied"
            )
            continue
        try:
            real = p.stat()
        except OSError:
            notes.append(f"{name} is a broken symbolic link; not copied")
            continue
        if not stat.S_ISREG(real.st_mode):
            notes.append(f"{name} is not a regular file (a FIFO, socket or device); not copied")
            continue
        kept.append(p)
    return kept, notes


def build_plan(
    report: Report, to: Verdict, *, keep: str | None = None, max_shard_size: int | None = None
) -> FixPlan:
    """Plan the rewrite of ``report``'s checkpoint into the ``to`` form, or raise FixRefused."""
    if to not in (Verdict.TIED, Verdict.UNTIED):
        raise ValueError("to must be tied or untied")
    builder = _Builder(report, to, keep)
    builder.refuse_unfixable()  # first: a file whose data could not be compared is refused
    if report.duplicates is None:
        raise ValueError("fix needs a report with data compared (no_data=False)")
    for group in report.tie_groups:
        if to is Verdict.TIED:
            builder.tie(group)
        else:
            builder.untie(group)
    builder.edit_config()
    builder.layout(max_shard_size)
    builder.alias_metadata()
    builder._mark_whole_copies()
    written = {builder.plan.config_name} if builder.plan.config_name else set()
    builder.plan.extra_files, skipped = extra_files(report, written)
    builder.plan.notes += skipped
    return builder.finish()
