#!/usr/bin/env python
"""Generate tiecheck's family registry (``src/tiecheck/data/registry.json``) from transformers.

Run by developers when tiecheck moves to a new transformers release, never at run time: tiecheck
reads the JSON file through ``tiecheck.analysis.registry`` and never imports transformers.

    python scripts/generate_registry.py            # rewrite the data file
    python scripts/generate_registry.py --check    # exit 1 if the data file is out of date
    python scripts/generate_registry.py --only llama t5 --output /tmp/r.json

What it records, per ``model_type`` of ``CONFIG_MAPPING`` that has a language-model head class in
the auto mappings (or any class whose tie map is not empty): the configuration class, its tie
flag (default, forced or not, aliases), the nested sub-configurations that carry their own flag,
and per head class the expanded tie maps with every flag true and every flag false, the input
embedding and output head parameter names, ``base_model_prefix``, the names
``save_pretrained`` writes for them and the legacy on-disk names transformers renames into them.

How: each class is instantiated on the meta device (no memory for weights) from its config
class's defaults, once with every tie flag true and once with every flag false, and the facts
are read from the live objects through transformers' own functions
(``get_expanded_tied_weights_keys``, ``get_input_embeddings``, ``revert_weight_conversion``,
the conversion mapping). Where that fails the entry falls back to class attributes and says
so (``static_only``). transformers 4.57 (list-form ``_tied_weights_keys``, no expanded maps)
is supported: ties are then read from parameter identity after ``tie_weights()``.

The output is sorted JSON; the environment's ``date`` is kept from the existing file when
nothing else changed, so rerunning in the same environment rewrites the same bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import gc
import importlib.metadata
import io
import json
import logging
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
FLAG = "tie_word_embeddings"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "src" / "tiecheck" / "data" / "registry.json"

# Auto mappings whose classes carry a language-model head (4.x and 5.x names; absent ones are
# skipped). Kind names are the mapping names, shortened: MODEL_FOR_CAUSAL_LM -> causal-lm.
LM_MAPPINGS = (
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
    "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES",
    "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
    "MODEL_WITH_LM_HEAD_MAPPING_NAMES",
)
# A composite config nests sub-configs; deeper than this is not seen in transformers.
MAX_CONFIG_DEPTH = 4


def kind_of(mapping_name: str) -> str:
    """``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` -> ``causal-lm``; ``MODEL_MAPPING_NAMES``: ``base``."""
    if mapping_name == "MODEL_MAPPING_NAMES":
        return "base"
    core = mapping_name.removesuffix("_MAPPING_NAMES")
    core = core.removeprefix("MODEL_FOR_").removeprefix("MODEL_")
    return core.lower().replace("_", "-")


LM_KINDS = frozenset(kind_of(name) for name in LM_MAPPINGS)


def _short_error(exc: BaseException) -> str:
    """One line, no addresses or paths, so the data file does not change from run to run."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    text = re.sub(r" at 0x[0-9a-f]+", "", text)
    text = re.sub(r"/[^\s'\"]*/site-packages/", "", text)
    text = text[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers warns a lot while building default models; none of it matters here."""
    sink = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("ignore")
        yield


class Transformers:
    """The installed transformers, with the few calls that differ between 4.x and 5.x."""

    def __init__(self) -> None:
        import torch
        import transformers
        from transformers.models.auto import modeling_auto

        self.torch = torch
        self.tf = transformers
        self.version = transformers.__version__
        self.major = int(self.version.split(".")[0])
        self.auto = modeling_auto
        self.config_base = getattr(transformers, "PreTrainedConfig", None) or (
            transformers.PretrainedConfig
        )
        self.model_base = transformers.PreTrainedModel
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        logging.getLogger("transformers").setLevel(logging.ERROR)

    # --- auto mappings ---------------------------------------------------------------------

    def config_names(self) -> dict[str, str]:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        return dict(CONFIG_MAPPING_NAMES)

    def classes_by_type(self) -> dict[str, dict[str, set[str]]]:
        """``{model_type: {class_name: {kind, ...}}}`` over every auto model mapping."""
        result: dict[str, dict[str, set[str]]] = {}
        for name in sorted(dir(self.auto)):
            if not name.endswith("_MAPPING_NAMES") or not name.startswith("MODEL"):
                continue
            mapping = getattr(self.auto, name)
            if not isinstance(mapping, dict):
                continue
            kind = kind_of(name)
            for model_type, classes in mapping.items():
                for class_name in classes if isinstance(classes, list | tuple) else (classes,):
                    if isinstance(class_name, str):
                        result.setdefault(model_type, {}).setdefault(class_name, set()).add(kind)
        return result

    def config_class(self, model_type: str) -> type:
        from transformers import CONFIG_MAPPING

        return CONFIG_MAPPING[model_type]

    def model_class(self, class_name: str) -> type:
        with _quiet():
            cls = getattr(self.tf, class_name)
        return cls

    # --- configurations --------------------------------------------------------------------

    def sub_config_keys(self, config_cls: type) -> list[str]:
        subs = getattr(config_cls, "sub_configs", None) or {}
        return sorted(subs)

    def is_config(self, value: object) -> bool:
        return isinstance(value, self.config_base)

    # --- models ----------------------------------------------------------------------------

    def instantiate(self, model_cls: type, config: Any) -> Any:
        with _quiet(), self.torch.device("meta"):
            model = model_cls(config)
        return model

    def declared_ties(self, owner: Any) -> dict[str, str | None] | None:
        """``_tied_weights_keys`` of a class (through the MRO) or of a live model (where a
        class computes it in a property, DEIMv2): 5.x ``{target: source}`` with regex allowed,
        4.x a list of targets (recorded with a null source). ``None`` when not given."""
        declared = getattr(owner, "_tied_weights_keys", None)
        if isinstance(declared, dict):
            return {str(k): str(v) for k, v in declared.items()}
        if isinstance(declared, list | tuple | set):
            return {str(k): None for k in sorted(declared)}
        return None

    def expanded_ties(self, model: Any) -> dict[str, str]:
        """The model's complete ``{target: source}`` map of tied parameters."""
        if hasattr(model, "get_expanded_tied_weights_keys"):
            with _quiet():
                return dict(model.get_expanded_tied_weights_keys(all_submodels=True))
        return self.identity_ties(model)

    def identity_ties(self, model: Any) -> dict[str, str]:
        """Ties as parameter identity after ``tie_weights()`` (what 4.x has instead of a map):
        the first name of each shared tensor is the source, the others its targets."""
        groups: dict[int, list[str]] = {}
        for name, param in model.named_parameters(remove_duplicate=False):
            groups.setdefault(id(param), []).append(name)
        return {t: names[0] for names in groups.values() if len(names) > 1 for t in names[1:]}

    def per_submodel_ties(self, model: Any) -> list[tuple[str, Any, dict[str, str]]]:
        """``(prefix, config, ties)`` for each PreTrainedModel inside ``model`` (5.x), the way
        ``get_expanded_tied_weights_keys(all_submodels=True)`` walks them."""
        result = []
        for prefix, sub in model.named_modules(remove_duplicate=False):
            if isinstance(sub, self.model_base) and hasattr(sub, "get_expanded_tied_weights_keys"):
                with _quiet():
                    ties = sub.get_expanded_tied_weights_keys(all_submodels=False)
                if prefix:
                    ties = {f"{prefix}.{k}": f"{prefix}.{v}" for k, v in ties.items()}
                result.append((prefix, sub.config, ties))
        return result

    # --- names on disk ---------------------------------------------------------------------

    def saved_names(self, model: Any, names: list[str]) -> dict[str, list[str]]:
        """The names ``save_pretrained`` writes for each of ``names``: usually one; several
        when a converter splits the tensor on save (Molmo2 writes its embedding as
        ``wte.embedding`` + ``wte.new_embedding``). 5.x reverses the conversion mapping on save;
        4.x reverses ``_checkpoint_conversion_mapping``."""
        try:
            from transformers.core_model_loading import revert_weight_conversion
        except ImportError:
            return {n: [self._saved_name_4x(model, n)] for n in names}
        result = {}
        for name in names:
            tensor = model.get_parameter_or_buffer(name)
            with _quiet():
                reverted = revert_weight_conversion(model, {name: tensor})
            result[name] = sorted(reverted)
        return result

    def _saved_name_4x(self, model: Any, name: str) -> str:
        # transformers 4.5x save_pretrained: reverse each (pattern -> replacement) of the class's
        # _checkpoint_conversion_mapping, first match wins.
        mapping = getattr(model, "_checkpoint_conversion_mapping", None) or {}
        for pattern, replacement in {v: k for k, v in mapping.items()}.items():
            replacement = re.sub(r"\(.*\)", "", replacement.lstrip("^"))
            renamed, count = re.subn(pattern, replacement, name)
            if count:
                return renamed
        return name

    def load_renamings(self, model: Any) -> list[Any]:
        """The renaming rules ``from_pretrained`` applies to checkpoint keys, in order."""
        try:
            from transformers.conversion_mapping import get_model_conversion_mapping
            from transformers.core_model_loading import WeightRenaming
        except ImportError:
            return []
        with _quiet():
            transforms = get_model_conversion_mapping(model)
        return [t for t in transforms if isinstance(t, WeightRenaming)]

    def legacy_names(
        self, model: Any, name: str, renamings: list[Any], saved: str | None = None
    ) -> tuple[list[str], list[dict[str, str | None]]]:
        """On-disk names, other than ``name`` itself, that ``from_pretrained`` renames into
        ``name``, and the rules that do it. Candidates: each rule run backwards once, and all
        of them backwards in turn (the way ``save_pretrained`` reverts them); a candidate is
        kept only if running the rules forwards (transformers' own code) gives ``name``."""
        if self.major < 5:
            return self._legacy_names_4x(model, name)
        from transformers.core_model_loading import apply_renamings

        reversed_rules = []
        for rule in renamings:
            try:
                # reverse_transform() shares its pattern lists with the rule it reverses and
                # edits them in place (transformers 5.24): reverse a copy.
                reversed_rules.append(copy.deepcopy(rule).reverse_transform())
            except (ValueError, TypeError):  # quantized/TP transforms cannot reverse
                continue
        candidates = {saved} if saved else set()
        for rule in reversed_rules:
            renamed, pattern = rule.rename_source_key(name)
            if pattern is not None:
                candidates.add(renamed)
        candidates.add(apply_renamings(name, reversed_rules[::-1]))
        save_rules = [r for r in reversed_rules if type(r).__name__ != "PrefixChange"]
        candidates.add(apply_renamings(name, save_rules[::-1]))
        legacy, fired = [], []
        for candidate in sorted(candidates - {name}):
            if apply_renamings(candidate, renamings) != name:
                continue
            legacy.append(candidate)
            key = candidate
            for rule in renamings:
                key, pattern = rule.rename_source_key(key)
                if pattern is not None:
                    fired.append(_rule_record(rule, pattern))
        return legacy, fired

    def _legacy_names_4x(
        self, model: Any, name: str
    ) -> tuple[list[str], list[dict[str, str | None]]]:
        mapping = getattr(model, "_checkpoint_conversion_mapping", None) or {}
        legacy, fired = [], []
        for pattern, replacement in mapping.items():
            back = re.sub(r"\(.*\)", "", replacement.lstrip("^"))
            candidate_pattern = "^" + re.escape(back)
            if re.match(candidate_pattern, name):
                source = re.sub(r"\\(.)", r"\1", pattern.lstrip("^"))
                candidate = re.sub(candidate_pattern, source, name, count=1)
                if re.sub(pattern, replacement, candidate, count=1) == name and candidate != name:
                    legacy.append(candidate)
                    fired.append({"from": pattern, "to": replacement, "scope": None})
        return legacy, fired


def _rule_record(rule: Any, matched_pattern: str) -> dict[str, str | None]:
    """A renaming rule as data: the source pattern that matched, its replacement, its scope."""
    sources = list(getattr(rule, "_original_source_patterns", None) or rule.source_patterns)
    targets = list(getattr(rule, "_original_target_patterns", None) or rule.target_patterns)
    try:
        index = list(rule.source_patterns).index(matched_pattern)
    except ValueError:
        index = 0
    index = min(index, len(sources) - 1)
    return {
        "from": sources[index],
        "to": targets[min(index, len(targets) - 1)],
        "scope": getattr(rule, "scope_prefix", None),
    }


# ------------------------------------------------------------------------------------------
# configurations


def _config_tree(
    tf: Transformers, config: Any, path: str = "", depth: int = 0
) -> Iterator[tuple[str, Any]]:
    """``(path, config)`` for the config and every nested sub-config (``text_config``,
    ``thinker_config.text_config``), the root as ``""``."""
    yield path, config
    if depth >= MAX_CONFIG_DEPTH:
        return
    for key in tf.sub_config_keys(type(config)):
        sub = getattr(config, key, None)
        if tf.is_config(sub):
            yield from _config_tree(tf, sub, f"{path}.{key}" if path else key, depth + 1)


def _flag_value(config: Any) -> bool | None:
    """The flag as the config holds it; ``None`` when the class has no such attribute."""
    if not hasattr(config, FLAG):
        return None
    value = getattr(config, FLAG)
    return None if value is None else bool(value)


def _sub_flag_paths(tf: Transformers, config: Any) -> list[list[str]]:
    return [path.split(".") for path, _ in _config_tree(tf, config) if path]


def _config_with_flags(config_cls: type, default: Any, paths: list[list[str]], value: bool) -> Any:
    """``config_cls`` built from its defaults with the flag set to ``value`` at the root and
    at each sub-config path, passed as nested dicts the way a config.json passes them."""
    kwargs: dict[str, Any] = {FLAG: value}
    for path in paths:
        if path[0] not in kwargs:
            kwargs[path[0]] = getattr(default, path[0]).to_dict()
        target = kwargs[path[0]]
        for key in path[1:]:
            target = target[key]
        target[FLAG] = value
    return config_cls(**kwargs)


def build_config(tf: Transformers, config_cls: type, value: bool) -> Any:
    """The config class's defaults with every tie flag set to ``value``, as a config.json that
    spells the flag at every level. A sub-config that refuses the value (CSM's depth decoder
    raises on ``true``) keeps its default; raises when the root refuses it (DBRX)."""
    with _quiet():
        default = config_cls()
        paths = _sub_flag_paths(tf, default)
        try:
            return _config_with_flags(config_cls, default, paths, value)
        except Exception:
            pass
        config_cls(**{FLAG: value})  # when the root refuses the value, let it raise
        accepted: list[list[str]] = []
        for path in paths:
            try:
                _config_with_flags(config_cls, default, [*accepted, path], value)
            except Exception:
                continue
            accepted.append(path)
        return _config_with_flags(config_cls, default, accepted, value)


def _opposite(tf: Transformers, config_cls: type, path: list[str], default: bool) -> str:
    """What happens when config.json says the opposite of the default: ``kept``,
    ``overridden`` (the class forces its value) or ``raises``. A sub-config is asked on its
    own class, so a parent that copies its flag inward (``follows_root``) is not mistaken for
    a forced flag; if the class cannot be built alone it is asked inside its parent."""
    try:
        with _quiet():
            if not path:  # every level says the opposite, so an inner default lifted to the
                # root (HunYuan-VL) is not mistaken for a forced flag
                return _kept(build_config(tf, config_cls, not default), default)
            sub = _walk(config_cls(), path)
            try:
                return _kept(type(sub)(**{**sub.to_dict(), FLAG: not default}), default)
            except Exception:
                pass
            return _kept(_walk(_with_sub_flag(config_cls, path, not default), path), default)
    except Exception:
        return "raises"


def _kept(config: Any, default: bool) -> str:
    return "kept" if _flag_value(config) == (not default) else "overridden"


def _walk(config: Any, path: list[str]) -> Any:
    for key in path:
        config = getattr(config, key)
    return config


def _with_sub_flag(config_cls: type, path: list[str], value: bool) -> Any:
    """The config class built with only the flag of the sub-config at ``path`` spelled out."""
    data = getattr(config_cls(), path[0]).to_dict()
    target = data
    for key in path[1:]:
        target = target[key]
    target[FLAG] = value
    return config_cls(**{path[0]: data})


def _aliases(tf: Transformers, config_cls: type, default: bool | None) -> list[str]:
    """Other config.json keys that set the flag (``attribute_map`` entries, keys a class pops
    into it such as LFM2's ``tie_embedding``), each confirmed by building a config with it."""
    candidates = {
        k for k, v in (getattr(config_cls, "attribute_map", None) or {}).items() if v == FLAG
    }
    import inspect

    for method in ("__init__", "__post_init__"):  # 4.x configs have no __post_init__
        with contextlib.suppress(TypeError, OSError, AttributeError):
            source = inspect.getsource(getattr(config_cls, method))
            candidates |= set(
                re.findall(rf"kwargs\.pop\(\s*[\"'](\w+)[\"']\s*,\s*self\.{FLAG}", source)
            )
    confirmed = []
    target = True if default is None else not default
    for key in sorted(candidates - {FLAG}):
        try:
            with _quiet():
                config = config_cls(**{key: target})
        except Exception:
            continue
        if _flag_value(config) == target:
            confirmed.append(key)
    return confirmed


def flag_record(
    tf: Transformers, config_cls: type, path: list[str], value: bool | None
) -> dict[str, Any]:
    record: dict[str, Any] = {"name": FLAG, "default": value}
    if value is None:
        record["opposite"] = "kept"
    else:
        record["opposite"] = _opposite(tf, config_cls, path, value)
    record["forced"] = record["opposite"] == "overridden"
    return record


def config_record(tf: Transformers, config_cls: type) -> dict[str, Any]:
    """The config class's tie flag and its nested sub-configs' flags."""
    with _quiet():
        default = config_cls()
    root_default = _flag_value(default)
    flag = flag_record(tf, config_cls, [], root_default)
    flag["aliases"] = _aliases(tf, config_cls, root_default)
    subs: dict[str, Any] = {}
    for path, sub in _config_tree(tf, default):
        if not path:
            continue
        keys = path.split(".")
        sub_default = _flag_value(sub)
        record: dict[str, Any] = {
            "config_class": type(sub).__name__,
            "model_type": getattr(sub, "model_type", None) or None,
            "flag": flag_record(tf, config_cls, keys, sub_default)
            if sub_default is not None
            else None,
        }
        record["lifts_to_root"] = _lifts(tf, config_cls, keys, root_default)
        record["follows_root"] = _follows(tf, config_cls, keys, root_default)
        subs[path] = record
    return {"config_class": config_cls.__name__, "flag": flag, "sub_configs": subs}


def _lifts(tf: Transformers, config_cls: type, path: list[str], root: bool | None) -> bool:
    """An inner value opposite to the root's is copied to the root (LLaVA, Qwen2-VL and
    HunYuan-VL lift an inner ``true``): for some ``x``, the root flag ``x`` stays ``x`` when
    this sub-config says ``x`` too, and becomes ``not x`` when it says ``not x``."""
    if root is None:
        return False

    def root_after(value: bool, inner: bool) -> bool | None:
        with _quiet():
            data = getattr(config_cls(), path[0]).to_dict()
            target = data
            for key in path[1:]:
                target = target[key]
            target[FLAG] = inner
            return _flag_value(config_cls(**{FLAG: value, path[0]: data}))

    for value in (False, True):
        try:
            if root_after(value, value) == value and root_after(value, not value) == (not value):
                return True
        except Exception:
            continue
    return False


def _follows(tf: Transformers, config_cls: type, path: list[str], root: bool | None) -> bool:
    """Setting only the root flag to the opposite of its default also changes this
    sub-config's flag (Pix2Struct copies the root flag inward)."""
    if root is None:
        return False
    try:
        with _quiet():
            before = config_cls()
            after = config_cls(**{FLAG: not root})
            for key in path:
                before, after = getattr(before, key), getattr(after, key)
    except Exception:
        return False
    return _flag_value(before) != _flag_value(after) and _flag_value(after) == (not root)


# ------------------------------------------------------------------------------------------
# model classes


def _module_name(model: Any, module: Any) -> str | None:
    for name, candidate in model.named_modules(remove_duplicate=False):
        if candidate is module:
            return name
    return None


def _param(prefix: str | None, leaf: str, module: Any) -> str | None:
    value = getattr(module, leaf, None) if module is not None else None
    if prefix is None or value is None or not hasattr(value, "shape"):
        return None
    direct = dict(module.named_parameters(recurse=False)) | dict(
        module.named_buffers(recurse=False)
    )
    if leaf not in direct:
        return None
    return f"{prefix}.{leaf}" if prefix else leaf


def _embedding_of(tf: Transformers, model: Any, getter: str) -> tuple[Any, str | None, str | None]:
    """``(module, owner_prefix, error)``: the module ``model.<getter>()`` returns; when the
    model itself cannot say (composite models such as Qwen2.5-Omni raise NotImplementedError
    or have no head at the top), the first PreTrainedModel inside it that can, and its prefix."""
    error = None
    for prefix, sub in model.named_modules():
        if prefix and not isinstance(sub, tf.model_base):
            continue
        try:
            with _quiet():
                module = getattr(sub, getter)()
        except Exception as exc:
            if not prefix:
                error = _short_error(exc)
            continue
        if module is not None:
            return module, prefix, error
    return None, None, error


def embedding_names(tf: Transformers, model: Any) -> dict[str, Any]:
    """Parameter names of the input embedding, the output head and the head's bias, found by
    locating ``get_input_embeddings()`` / ``get_output_embeddings()`` among the modules."""
    names: dict[str, Any] = {"input_embedding": None, "output_embedding": None, "output_bias": None}
    notes = []
    inp, owner, error = _embedding_of(tf, model, "get_input_embeddings")
    if error:
        notes.append(f"get_input_embeddings: {error}")
    if inp is not None:
        names["input_embedding"] = _param(_module_name(model, inp), "weight", inp)
        if names["input_embedding"] is None:
            notes.append(f"input embedding {type(inp).__name__} has no weight of its own")
        if owner:
            notes.append(f"input embedding from submodel {owner}")
    out, owner, error = _embedding_of(tf, model, "get_output_embeddings")
    if error:
        notes.append(f"get_output_embeddings: {error}")
    if out is not None:
        prefix = _module_name(model, out)
        names["output_embedding"] = _param(prefix, "weight", out)
        names["output_bias"] = _param(prefix, "bias", out)
        if owner:
            notes.append(f"output embedding from submodel {owner}")
    names["notes"] = notes
    return names


def _governing_flags(
    tf: Transformers, model: Any, root: Any, ties_true: dict[str, str], ties_false: dict[str, str]
) -> dict[str, str | None]:
    """For each tie that follows a flag (in the flag-true map, not in the flag-false one): the
    path in ``root`` (the config the model was built from) of the config whose flag governs it
    (``""`` the root, ``text_config``, ...), found by identity of each submodel's config."""
    following = {t for t, s in ties_true.items() if ties_false.get(t) != s}
    if not following:
        return {}
    if tf.major < 5:
        return dict.fromkeys(sorted(following))  # resolved by toggling in class_record
    tree = list(_config_tree(tf, root))
    paths = {id(config): path for path, config in tree}
    by_class: dict[type, list[str]] = {}
    for path, config in tree:
        by_class.setdefault(type(config), []).append(path)
    result: dict[str, str | None] = {}
    for prefix, config, ties in tf.per_submodel_ties(model):
        path = paths.get(id(config))
        if path is None and not prefix:
            path = ""  # the model copied the config it was given (PegasusForCausalLM)
        elif path is None and len(by_class.get(type(config), [])) == 1:
            path = by_class[type(config)][0]  # a copy of the only config of its class
        for target in ties:
            if target in following:
                result[target] = path
    for target in following - set(result):
        result[target] = None
    return result


def _base_record(tf: Transformers, model_cls: type, kinds: set[str]) -> dict[str, Any]:
    return {
        "kinds": sorted(kinds),
        "base_model_prefix": getattr(model_cls, "base_model_prefix", "") or "",
        "declared_ties": tf.declared_ties(model_cls),
        "config_path": None,
        "config_fill_ins": {},
        "static_only": None,
        "notes": [],
    }


def configs_for_class(
    tf: Transformers, model_cls: type, configs: dict[bool, Any]
) -> tuple[dict[bool, Any], str | None]:
    """The configs a class is built from, and their path in the model type's config.

    A class whose ``config_class`` is a sub-config class (``Llama4ForCausalLM`` takes
    ``Llama4TextConfig``) gets that sub-config, as ``AutoModelFor*.from_config`` hands it
    ``config.get_text_config()``; a class whose config class is not in the tree gets that
    class's own defaults (path ``None``)."""
    wanted = getattr(model_cls, "config_class", None)
    probe = configs[True] if configs[True] is not None else configs[False]
    if not isinstance(wanted, type) or isinstance(probe, wanted):
        return configs, ""
    for path, sub in _config_tree(tf, probe):
        if path and type(sub) is wanted:
            keys = path.split(".")
            return {
                v: (_walk(c, keys) if c is not None else None) for v, c in configs.items()
            }, path
    own: dict[bool, Any] = {}
    for value in (True, False):
        try:
            own[value] = build_config(tf, wanted, value)
        except Exception:
            own[value] = None
    return own, None


# Config attributes some classes' defaults leave unset (None) although every real checkpoint
# sets them; filled in only when building with the defaults fails, and recorded in the entry.
def _fill_ins(config: Any, decoder: bool) -> dict[str, Any]:
    fills: dict[str, Any] = {}

    def get(key: str) -> Any:
        try:  # per-layer configs raise on some global reads (DiffusionGemma's head_dim)
            return getattr(config, key, None)
        except Exception:
            return None

    heads, hidden, layers = get("num_attention_heads"), get("hidden_size"), get("num_hidden_layers")
    if hasattr(config, "vocab_size") and get("vocab_size") is None:
        fills["vocab_size"] = 1024
    if (
        isinstance(heads, int)
        and isinstance(hidden, int)
        and "head_dim" in vars(config)
        and get("head_dim") is None
    ):
        fills["head_dim"] = hidden // heads
    if (
        isinstance(heads, int)
        and "num_key_value_heads" in vars(config)
        and get("num_key_value_heads") is None
    ):
        fills["num_key_value_heads"] = heads
    if isinstance(layers, int) and "layer_types" in vars(config) and get("layer_types") is None:
        fills["layer_types"] = ["full_attention"] * layers
    if decoder and get("is_decoder") is False:
        fills["is_decoder"] = True  # heads that only run as decoders (Reformer's LM head)
    return fills


def _filled(tf: Transformers, config: Any, decoder: bool) -> tuple[Any, dict[str, Any]]:
    """A copy of ``config`` with :func:`_fill_ins` applied at every level."""
    config = copy.deepcopy(config)
    applied: dict[str, Any] = {}
    for path, sub in _config_tree(tf, config):
        for key, value in _fill_ins(sub, decoder).items():
            with contextlib.suppress(Exception):
                setattr(sub, key, value)
                applied[f"{path}.{key}" if path else key] = value
    return config, applied


def _instantiate_all(
    tf: Transformers, model_cls: type, configs: dict[bool, Any], model_true: Any | None
) -> dict[bool, Any]:
    models: dict[bool, Any] = {}
    for value in (True, False):
        if value and model_true is not None:
            models[value] = model_true
        elif configs[value] is not None:
            models[value] = tf.instantiate(model_cls, configs[value])
    return models


def class_record(
    tf: Transformers,
    model_type: str,
    model_cls: type,
    kinds: set[str],
    root_configs: dict[bool, Any],
    model_true: Any | None = None,
) -> dict[str, Any]:
    record = _base_record(tf, model_cls, kinds)
    configs, config_path = configs_for_class(tf, model_cls, root_configs)
    record["config_path"] = config_path
    try:
        models = _instantiate_all(tf, model_cls, configs, model_true)
    except Exception as first:
        # retry with unset attributes filled in, then also as a decoder; else static-only
        for decoder in (False, True):
            filled: dict[bool, Any] = {}
            applied: dict[str, Any] = {}
            for value, config in configs.items():
                filled[value], fills = (
                    _filled(tf, config, decoder) if config is not None else (None, {})
                )
                applied.update(fills)
            if not applied:
                continue
            try:
                models = _instantiate_all(tf, model_cls, filled, None)
            except Exception:
                continue
            configs = filled
            record["config_fill_ins"] = applied
            break
        else:
            reason = f"instantiation failed: {_short_error(first)}"
            return _static_record(tf, record, model_cls, reason, configs)
    if not models:
        return _static_record(tf, record, model_cls, "no config with the flag set builds", configs)
    config_paths = [
        path for path, _ in _config_tree(tf, next(c for c in configs.values() if c is not None))
    ]
    ties = {value: tf.expanded_ties(model) for value, model in models.items()}
    if isinstance(getattr(model_cls, "_tied_weights_keys", None), property):
        # computed per instance (DEIMv2): record what the instance says
        record["declared_ties"] = tf.declared_ties(next(iter(models.values())))
    for value, key in ((True, "ties_flag_true"), (False, "ties_flag_false")):
        record[key] = ties.get(value)
        if value not in models:
            record["notes"].append(f"the config class rejects {FLAG}={value}")
    reference = models[True] if True in models else models[False]
    governing: dict[str, str | None] | None = None
    if len(models) == 2:
        governing = _governing_flags(tf, models[True], configs[True], ties[True], ties[False])
        if config_path:  # paths from the model type's config, not the sub-config built from
            governing = {
                t: (f"{config_path}.{p}" if p else config_path) if p is not None else None
                for t, p in governing.items()
            }
        if tf.major < 5 and governing:
            governing = _toggle_attribution(tf, model_cls, config_paths, configs, governing)
    # the root governs most ties: only the others are written, to keep the file small
    record["tie_flags"] = (
        None if governing is None else {t: p for t, p in governing.items() if p != ""}
    )
    names = embedding_names(tf, reference)
    record["notes"].extend(names.pop("notes"))  # type: ignore[arg-type]
    record.update(names)
    # identity cross-check: a tie map entry whose two names are not one tensor after init
    for value, model in models.items():
        shared = tf.identity_ties(model)
        for target, source in sorted(ties[value].items()):
            if shared.get(target, target) != shared.get(source, source):
                record["notes"].append(
                    f"flag {value}: not one tensor after init: {target}, {source}"
                )
    # names on disk: what save_pretrained writes, and legacy names from_pretrained renames
    wanted = {
        n
        for n in (record["input_embedding"], record["output_embedding"], record["output_bias"])
        if n
    }
    for tie_map in ties.values():  # both flag values: a structural tie's names too
        wanted |= set(tie_map) | set(tie_map.values())
    wanted_sorted = sorted(wanted)
    saved: dict[str, str] | None
    try:
        written = tf.saved_names(reference, wanted_sorted)
        saved = {k: v[0] for k, v in written.items() if len(v) == 1}
        record["saved_split"] = {k: v for k, v in written.items() if len(v) != 1}
    except Exception as exc:
        saved = None
        record["saved_split"] = {}
        record["notes"].append(f"save names: {_short_error(exc)}")
    # most names are saved as they are: only the others are written
    record["saved_names"] = None if saved is None else {k: v for k, v in saved.items() if k != v}
    renamings = tf.load_renamings(reference)
    legacy: dict[str, list[str]] = {}
    rules: dict[str, dict[str, str | None]] = {}
    for name in wanted_sorted:
        try:
            saved_as = saved.get(name) if saved else None
            names_found, fired = tf.legacy_names(reference, name, renamings, saved_as)
        except Exception as exc:
            record["notes"].append(f"legacy names of {name}: {_short_error(exc)}")
            continue
        extra = sorted(set(names_found) - {name})
        if extra:
            legacy[name] = extra
        for rule in fired:
            rules[json.dumps(rule, sort_keys=True)] = rule
    record["legacy_names"] = legacy
    record["renames"] = [rules[k] for k in sorted(rules)]
    del models
    return record


def _toggle_attribution(
    tf: Transformers,
    model_cls: type,
    config_paths: list[str],
    configs: dict[bool, Any],
    governing: dict[str, str | None],
) -> dict[str, str | None]:
    """4.x: which flag governs each tie, found by turning one flag off at a time."""
    for path in config_paths:
        try:
            with _quiet():
                data = configs[True].to_dict()
                target = data
                for key in path.split(".") if path else []:
                    target = target[key]
                target[FLAG] = False
                config = type(configs[True])(**data)
            ties = tf.expanded_ties(tf.instantiate(model_cls, config))
        except Exception:
            continue
        for tie in governing:
            if governing[tie] is None and tie not in ties:
                governing[tie] = path
    return governing


def _static_record(
    tf: Transformers,
    record: dict[str, Any],
    model_cls: type,
    reason: str,
    configs: dict[bool, Any] | None,
) -> dict[str, Any]:
    """What can be said without a live model: the declared ties, when they are plain names
    (no regex, no module names), are what transformers 5 returns for the class itself."""
    record["static_only"] = reason
    declared = record["declared_ties"]
    plain = re.compile(r"^[A-Za-z0-9_.]+\.(weight|bias)$")
    if declared and all(
        v is not None and plain.match(k) and plain.match(v) for k, v in declared.items()
    ):
        record["ties_flag_true"] = dict(declared)
        forced = False
        if configs is not None and configs.get(False) is not None:
            forced = _flag_value(configs[False]) is True
        record["ties_flag_false"] = dict(declared) if forced else {}
    else:
        record["ties_flag_true"] = None
        record["ties_flag_false"] = None
    record.update(
        {
            "tie_flags": None,
            "input_embedding": None,
            "output_embedding": None,
            "output_bias": None,
            "saved_names": None,
            "saved_split": {},
            "legacy_names": {},
            "renames": [],
        }
    )
    return record


# ------------------------------------------------------------------------------------------
# the whole registry


def type_record(
    tf: Transformers, model_type: str, classes: dict[str, set[str]], log: Any
) -> dict[str, Any] | None:
    """The entry of one model type, or None when no class of it has a head or a tie."""
    lm_classes = {c: k for c, k in classes.items() if k & LM_KINDS}
    entry: dict[str, Any] = {"static_only": None}
    try:
        config_cls = tf.config_class(model_type)
    except Exception as exc:
        if not lm_classes:
            return None
        return _static_type(
            tf, model_type, lm_classes, f"config class not importable: {_short_error(exc)}"
        )
    try:
        entry.update(config_record(tf, config_cls))
    except Exception as exc:
        if not lm_classes:
            return None
        return _static_type(
            tf, model_type, lm_classes, f"default config failed: {_short_error(exc)}", config_cls
        )
    configs: dict[bool, Any] = {}
    for value in (True, False):
        try:
            configs[value] = build_config(tf, config_cls, value)
        except Exception:
            configs[value] = None  # the class refuses the value (recorded as "opposite": "raises")
    if configs[True] is None and configs[False] is None:
        if not lm_classes:
            return None
        return _static_type(
            tf, model_type, lm_classes, "no config with the flag set builds", config_cls
        )
    heads: dict[str, Any] = {}
    for class_name in sorted(classes):
        kinds = classes[class_name]
        try:
            record = _class_entry(tf, model_type, class_name, kinds, configs)
        except Exception as exc:  # a class that is a stand-in for a missing optional package
            # raises ImportError on any attribute (transformers' dummy objects)
            record = None
            if kinds & LM_KINDS:
                reason = f"class not usable: {_short_error(exc)}"
                record = _static_record(tf, _base_record(tf, object, kinds), object, reason, None)
        if record is not None:
            heads[class_name] = record
        gc.collect()
    if not heads:
        return None
    entry["heads"] = heads
    return entry


def _class_entry(
    tf: Transformers, model_type: str, class_name: str, kinds: set[str], configs: dict[bool, Any]
) -> dict[str, Any] | None:
    """The record of one class, or None for a class without an LM head that ties nothing."""
    try:
        model_cls = tf.model_class(class_name)
    except Exception as exc:
        if not kinds & LM_KINDS:
            return None
        reason = f"class not importable: {_short_error(exc)}"
        return _static_record(tf, _base_record(tf, object, kinds), object, reason, None)
    model_true = None
    if not kinds & LM_KINDS:  # other classes count only when they tie something
        own, _ = configs_for_class(tf, model_cls, configs)
        probe = own[True] if own[True] is not None else own[False]
        try:
            model_true = tf.instantiate(model_cls, probe)
        except Exception as exc:
            if not tf.declared_ties(model_cls):
                return None
            # it would tie: say so, from the class alone
            reason = f"instantiation failed: {_short_error(exc)}"
            return _static_record(
                tf, _base_record(tf, model_cls, kinds), model_cls, reason, configs
            )
        if not tf.expanded_ties(model_true):
            return None
        if own[True] is None:
            model_true = None
    return class_record(tf, model_type, model_cls, kinds, configs, model_true)


def _static_type(
    tf: Transformers,
    model_type: str,
    lm_classes: dict[str, set[str]],
    reason: str,
    config_cls: type | None = None,
) -> dict[str, Any]:
    heads = {}
    for class_name, kinds in sorted(lm_classes.items()):
        try:
            model_cls = tf.model_class(class_name)
            record = _base_record(tf, model_cls, kinds)
        except Exception as exc:
            model_cls = object
            record = _base_record(tf, object, kinds)
            record["notes"].append(f"class not importable: {_short_error(exc)}")
        heads[class_name] = _static_record(tf, record, model_cls, reason, None)
    default = None
    if config_cls is not None:
        field = getattr(config_cls, "__dataclass_fields__", {}).get(FLAG)
        if field is not None and isinstance(field.default, bool):
            default = field.default
    return {
        "static_only": reason,
        "config_class": config_cls.__name__ if config_cls is not None else None,
        "flag": {"name": FLAG, "default": default, "opposite": None, "forced": None, "aliases": []},
        "sub_configs": {},
        "heads": heads,
    }


def environment(tf: Transformers) -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "torch": tf.torch.__version__,
        "transformers": tf.version,
        "peft": version("peft"),
        # optional packages some classes need to be built (else they are static-only)
        "optional": {dist: version(dist) for dist in ("pillow", "timm", "torchaudio")},
    }


def generate(only: list[str] | None, log: Any) -> dict[str, Any]:
    tf = Transformers()
    known = tf.config_names()
    classes = tf.classes_by_type()
    types = sorted(t for t in known if t in classes and (not only or t in only))
    model_types: dict[str, Any] = {}
    started = time.monotonic()
    for index, model_type in enumerate(types, 1):
        begin = time.monotonic()
        try:
            entry = type_record(tf, model_type, classes[model_type], log)
        except Exception as exc:  # a bug here must not lose the other 400 entries
            entry = None
            log(f"  !! {model_type}: {_short_error(exc)}")
        took = time.monotonic() - begin
        if entry is not None:
            model_types[model_type] = entry
            heads = entry["heads"]
            static = sum(1 for h in heads.values() if h["static_only"])
            mark = f" ({static} static-only)" if static else ""
            log(f"[{index:4d}/{len(types)}] {model_type}: {len(heads)} classes{mark} {took:.1f}s")
        elif took > 1:
            log(f"[{index:4d}/{len(types)}] {model_type}: skipped {took:.1f}s")
    log(f"done in {time.monotonic() - started:.0f}s: {len(model_types)} model types")
    return {
        "schema": SCHEMA_VERSION,
        "generated_by": "scripts/generate_registry.py",
        "environment": environment(tf),
        "model_types": model_types,
    }


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def with_date(data: dict[str, Any], previous: str | None) -> str:
    """Stamp today's date, unless the previous file says the same thing apart from its date:
    then keep its date, so a rerun rewrites identical bytes."""
    if previous is not None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            old = json.loads(previous)
            old_date = old["environment"].pop("date")
            if old == data:
                data["environment"]["date"] = old_date
                return dump(data)
    data["environment"]["date"] = dt.datetime.now(dt.timezone.utc).date().isoformat()
    return dump(data)


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0" and argv is None:
        # Some transformers messages list a set (the missing optional packages of a class:
        # "requires the PIL library" or "the timm library" first, run to run); a fixed hash
        # seed makes every such order, and so the file, the same on every run.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--only", nargs="+", metavar="MODEL_TYPE", help="just these model types")
    parser.add_argument("--check", action="store_true", help="exit 1 if --output is out of date")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    data = generate(args.only, log)
    previous = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
    text = with_date(data, previous)
    if args.check:
        if text != previous:
            print(
                f"{args.output} is out of date: run python scripts/generate_registry.py",
                file=sys.stderr,
            )
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    log(f"wrote {args.output} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
