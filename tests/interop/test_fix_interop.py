"""``fix`` outputs load in transformers exactly as the model that was asked for.

Tiny models of five families are saved by transformers itself (and one ``.bin`` by
``torch.save`` of a state dict whose head shares the embedding's storage); broken variants are
made from them by editing the saved tensors. Each output of ``tiecheck fix`` is loaded with
``from_pretrained(output_loading_info=True)``; it must have no missing, unexpected or
mismatched key, be tied or untied as asked, and give the same logits, bit for bit, as the
*intended* model: built in memory from the source's tensors with the target tie flag.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import tiecheck  # noqa: E402
from tiecheck.cli import app  # noqa: E402
from tiecheck.rewrite.plan import FixRefused  # noqa: E402

transformers.logging.set_verbosity_error()

INPUT_IDS = [[1, 5, 9, 3, 7, 2]]
DECODER_IDS = [[0, 4, 8]]
VOCAB = 64


@dataclass(frozen=True)
class Source:
    path: Path
    seq2seq: bool
    embedding: str
    head: str
    aliases: tuple[str, ...] = ()
    bias: tuple[str, str] | None = None
    """(source, alias) of a bias the head shares (BERT), stored once by transformers."""
    masked: bool = False


def _causal_names() -> dict[str, str]:
    return {"embedding": "model.embed_tokens.weight", "head": "lm_head.weight"}


def _save(model: torch.nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def _edit(base: Path, folder: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """Copy a saved model and rewrite its tensors with ``edit(dict) -> dict``."""
    shutil.copytree(base, folder)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file(edit(tensors), str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def _noise(t: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return t + 0.05 * torch.randn(t.shape, generator=g)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    root = tmp_path_factory.mktemp("sources")
    small = {"vocab_size": VOCAB}
    decoder = {
        **small,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    }
    out: dict[str, Source] = {}

    torch.manual_seed(0)
    qwen = transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(**decoder, tie_word_embeddings=True)
    )
    out["qwen2-tied"] = Source(_save(qwen, root / "qwen2"), False, **_causal_names())

    torch.manual_seed(1)
    llama = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**decoder, tie_word_embeddings=False)
    )
    out["llama-untied"] = Source(_save(llama, root / "llama"), False, **_causal_names())

    torch.manual_seed(2)
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            **small, n_embd=16, n_layer=1, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0
        )
    )
    out["gpt2"] = Source(
        _save(gpt2, root / "gpt2"), False, "transformer.wte.weight", "lm_head.weight"
    )

    torch.manual_seed(3)
    bart = transformers.BartForConditionalGeneration(
        transformers.BartConfig(
            **small,
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=32,
        )
    )
    out["bart"] = Source(
        _save(bart, root / "bart"),
        True,
        "model.shared.weight",
        "lm_head.weight",
        ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"),
    )

    torch.manual_seed(4)
    t5 = transformers.T5ForConditionalGeneration(
        transformers.T5Config(**small, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    )
    out["t5"] = Source(
        _save(t5, root / "t5"),
        True,
        "shared.weight",
        "lm_head.weight",
        ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"),
    )

    # T5 v1.1 / Flan-T5 as released: tie_word_embeddings false and a trained lm_head, while
    # the encoder and decoder embeddings are one `shared` module whatever the flag says.
    # (transformers 5 forces the flag true in T5Config, so the layout is made by editing a
    # save.) Converters that clone every tensor before save_file (the pickle-to-safetensors
    # pattern) store the embeddings as identical copies (TC103).
    torch.manual_seed(6)
    flan = transformers.T5ForConditionalGeneration(
        transformers.T5Config(**small, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    )
    copies = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
    flan_dir = _edit(
        _save(flan, root / "flan-t5-saved"),
        root / "flan-t5-copies",
        lambda t: {
            **t,
            "lm_head.weight": _noise(t["shared.weight"]),
            **{c: t["shared.weight"].clone() for c in copies},
        },
    )
    flan_config = json.loads((flan_dir / "config.json").read_text())
    (flan_dir / "config.json").write_text(json.dumps({**flan_config, "tie_word_embeddings": False}))
    out["flan-t5-copies"] = Source(flan_dir, True, "shared.weight", "lm_head.weight", copies)

    torch.manual_seed(5)
    bert = transformers.BertForMaskedLM(
        transformers.BertConfig(
            **small,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    )
    with torch.no_grad():  # a trained-looking bias, so a re-initialised one would show
        bert.cls.predictions.bias.normal_()
    out["bert"] = Source(
        _save(bert, root / "bert"),
        False,
        "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.weight",
        bias=("cls.predictions.bias", "cls.predictions.decoder.bias"),
        masked=True,
    )

    # A pickle whose head and embedding are one storage, as torch.save(model.state_dict()) of
    # a tied model writes it.
    state = qwen.state_dict()
    assert state["lm_head.weight"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()
    pickle_dir = root / "qwen2-bin"
    pickle_dir.mkdir()
    torch.save(state, pickle_dir / "pytorch_model.bin")
    qwen.config.save_pretrained(pickle_dir)
    out["qwen2-bin"] = Source(pickle_dir, False, **_causal_names())

    emb, head = "model.embed_tokens.weight", "lm_head.weight"
    broken = {
        # TC101: declared untied, head removed.
        "tc101": _edit(
            root / "llama", root / "tc101", lambda t: {k: v for k, v in t.items() if k != head}
        ),
        # TC102: declared tied, a different (trained) head stored.
        "tc102": _edit(root / "qwen2", root / "tc102", lambda t: {**t, head: _noise(t[emb])}),
        # TC103: declared tied, an identical copy of the head stored.
        "tc103": _edit(root / "qwen2", root / "tc103", lambda t: {**t, head: t[emb].clone()}),
        # TC104: embedding removed, head kept.
        "tc104": _edit(
            root / "qwen2",
            root / "tc104",
            lambda t: {**{k: v for k, v in t.items() if k != emb}, head: t[emb].clone()},
        ),
    }
    for name, path in broken.items():
        out[name] = Source(path, False, **_causal_names())
    return out


def _source_tensors(src: Source) -> dict[str, torch.Tensor]:
    if (src.path / "model.safetensors").exists():
        return load_file(str(src.path / "model.safetensors"))
    return torch.load(src.path / "pytorch_model.bin", weights_only=True)


def _auto(src: Source):  # type: ignore[no-untyped-def]
    if src.masked:
        return transformers.AutoModelForMaskedLM
    return transformers.AutoModelForSeq2SeqLM if src.seq2seq else transformers.AutoModelForCausalLM


def _logits(model, src: Source) -> torch.Tensor:  # type: ignore[no-untyped-def]
    model.eval()
    with torch.no_grad():
        if src.seq2seq:
            return model(
                input_ids=torch.tensor(INPUT_IDS), decoder_input_ids=torch.tensor(DECODER_IDS)
            ).logits
        return model(input_ids=torch.tensor(INPUT_IDS)).logits


def _intended(src: Source, to: str, keep: str | None):  # type: ignore[no-untyped-def]
    """The model the user asked for, built in memory from the source's own tensors."""
    tensors = _source_tensors(src)
    emb_values = tensors.get(src.embedding, tensors.get(src.head))
    head_values = tensors.get(src.head, emb_values)
    bias_alias = (src.bias[1],) if src.bias else ()
    state = {k: v for k, v in tensors.items() if k not in (src.head, *src.aliases, *bias_alias)}
    if to == "tied":
        state[src.embedding] = head_values if keep == "head" else emb_values
    else:
        state[src.embedding] = emb_values
        state[src.head] = head_values
        state.update(dict.fromkeys(src.aliases, emb_values))
        if src.bias:
            state[src.bias[1]] = tensors[src.bias[0]]
    config = transformers.AutoConfig.from_pretrained(src.path)
    config.tie_word_embeddings = to == "tied"
    model = _auto(src).from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == []
    allowed = {src.head, *src.aliases, *bias_alias} if to == "tied" else set()
    assert set(missing) <= allowed, missing
    return model


CASES = [
    ("qwen2-tied", "tied", None),
    ("qwen2-tied", "untied", None),
    ("llama-untied", "tied", "embedding"),
    ("llama-untied", "tied", "head"),
    ("llama-untied", "untied", None),
    ("gpt2", "tied", None),
    ("gpt2", "untied", None),
    ("bart", "tied", None),
    ("bart", "untied", None),
    ("bert", "tied", None),
    ("bert", "untied", None),
    ("t5", "tied", None),
    ("qwen2-bin", "tied", None),
    ("qwen2-bin", "untied", None),
    ("tc101", "tied", None),
    ("tc101", "untied", None),
    ("tc102", "tied", "head"),
    ("tc102", "tied", "embedding"),
    ("tc102", "untied", None),
    ("tc103", "tied", None),
    ("tc103", "untied", None),
    ("tc104", "tied", None),
    ("tc104", "untied", None),
]


CASES = [(*case, None) for case in CASES] + [
    # Re-sharded (index + several shards, alias records in the index metadata).
    ("qwen2-tied", "untied", None, "6KB"),
    ("tc103", "tied", None, "6KB"),
    ("bart", "untied", None, "8KB"),
    ("qwen2-bin", "tied", None, "6KB"),
]


@pytest.mark.parametrize(
    ("name", "to", "keep", "shard"),
    CASES,
    ids=[
        f"{n}-{to}" + (f"-keep-{k}" if k else "") + (f"-{s}" if s else "") for n, to, k, s in CASES
    ],
)
def test_fixed_output_loads_in_transformers_as_the_intended_model(
    sources: dict[str, Source],
    tmp_path: Path,
    name: str,
    to: str,
    keep: str | None,
    shard: str | None,
) -> None:
    src = sources[name]
    out = tmp_path / "out"
    result = tiecheck.fix(src.path, to=to, output=out, keep=keep, max_shard_size=shard)
    if shard:
        assert (out / "model.safetensors.index.json").is_file()
        assert len(list(out.glob("model-*.safetensors"))) > 1

    model, info = _auto(src).from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    assert (
        type(model).__name__ == transformers.AutoConfig.from_pretrained(src.path).architectures[0]
    )

    inp, outp = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert (inp.data_ptr() == outp.data_ptr()) is (to == "tied")
    assert model.config.tie_word_embeddings is (to == "tied")
    if src.seq2seq and to == "tied":
        for alias in (model.get_encoder().embed_tokens, model.get_decoder().embed_tokens):
            assert alias.weight.data_ptr() == inp.data_ptr()

    expected = _logits(_intended(src, to, keep), src)
    assert torch.equal(_logits(model, src), expected)

    assert result.after is not None and result.after.verdict.value == to
    inspected = CliRunner().invoke(app, ["inspect", str(out), "--expect", to, "-q"])
    assert inspected.exit_code == 0, inspected.stdout


def test_untying_flan_t5_drops_the_copies_of_shared_it_still_ties(
    sources: dict[str, Source], tmp_path: Path
) -> None:
    """TC103 on an untied T5: --to untied keeps the trained head and drops the encoder and
    decoder copies of `shared` (transformers ties those whatever the flag), and the output
    loads as the very model the source loads as."""
    src = sources["flan-t5-copies"]
    before = tiecheck.inspect(src.path)
    assert sorted(f.code.value for f in before.findings) == ["TC103", "TC103"]
    result = tiecheck.fix(src.path, to="untied", output=tmp_path / "out")
    written = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert not set(src.aliases) & set(written)
    assert {"shared.weight", "lm_head.weight"} <= set(written)
    assert result.after is not None and not result.after.findings

    original = transformers.T5ForConditionalGeneration.from_pretrained(src.path)
    fixed, info = transformers.T5ForConditionalGeneration.from_pretrained(
        tmp_path / "out", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert fixed.lm_head.weight.data_ptr() != fixed.shared.weight.data_ptr()
    assert fixed.encoder.embed_tokens.weight.data_ptr() == fixed.shared.weight.data_ptr()
    assert torch.equal(_logits(fixed, src), _logits(original, src))


@pytest.mark.parametrize(
    ("name", "to", "message"),
    [
        ("llama-untied", "tied", "--keep"),
        ("tc102", "tied", "--keep"),
        ("t5", "untied", "rescales"),
    ],
)
def test_refusals_write_nothing(
    sources: dict[str, Source], tmp_path: Path, name: str, to: str, message: str
) -> None:
    with pytest.raises(FixRefused, match=message):
        tiecheck.fix(sources[name].path, to=to, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_keep_head_and_keep_embedding_give_different_models(
    sources: dict[str, Source], tmp_path: Path
) -> None:
    """The intended-model comparison above can tell the two apart: the trained head's
    values really end up in the shared weight with --keep head."""
    src = sources["tc102"]
    logits = {}
    for keep in ("head", "embedding"):
        tiecheck.fix(src.path, to="tied", output=tmp_path / keep, keep=keep)
        model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / keep)
        logits[keep] = _logits(model, src)
        assert torch.equal(
            model.get_input_embeddings().weight,
            _source_tensors(src)[src.head if keep == "head" else src.embedding],
        )
    assert not torch.equal(logits["head"], logits["embedding"])


def test_transformers_loads_the_unfixed_sources_wrongly(sources: dict[str, Source]) -> None:
    """Why the fixes matter, as observed in the installed transformers."""
    _, info = transformers.AutoModelForCausalLM.from_pretrained(
        sources["tc101"].path, output_loading_info=True
    )
    assert "lm_head.weight" in info["missing_keys"]  # TC101: head initialised at random

    model = transformers.AutoModelForCausalLM.from_pretrained(sources["tc102"].path)
    stored = _source_tensors(sources["tc102"])
    inp, outp = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    if int(transformers.__version__.split(".")[0]) >= 5:
        # 5.x keeps both stored tensors and does not tie, whatever the config says.
        assert inp.data_ptr() != outp.data_ptr()
        assert torch.equal(outp, stored["lm_head.weight"])
    else:
        # 4.x re-ties and silently discards the trained head.
        assert inp.data_ptr() == outp.data_ptr()
        assert not torch.equal(outp, stored["lm_head.weight"])
