"""Small PyTorch modules that reproduce, parameter name for parameter name, the models of three
producers whose checkpoints are not transformers folders: nanoGPT, Meta's reference Llama and
Meta's Lingua. They are the *loaders* of the tests as much as the writers: a checkpoint that
``tiecheck fix`` rewrote must load into them strictly and compute what the original computed.

Written for these tests (not copied): the names, nesting and tying were learned by reading
karpathy/nanoGPT ``model.py`` and ``train.py``, meta-llama/llama-models
``models/llama3/model.py`` / ``generation.py`` (strict ``load_state_dict``) and
facebookresearch/lingua ``apps/main/transformer.py`` / ``lingua/transformer.py``
(``TiedLinear``). Only what decides the state dict is mirrored faithfully; the arithmetic is
simplified (no KV cache, no model parallelism) but deterministic, which is all the logits
comparisons need.

Imports torch at module level: import it only from interop tests or from functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

# ---------------------------------------------------------------------------------------------
# nanoGPT (karpathy/nanoGPT model.py): transformer.{wte,wpe,h.N,ln_f} and lm_head, tied by
# assigning the head's Parameter to the embedding in __init__.


@dataclass
class GPTConfig:
    """nanoGPT's GPTConfig fields (``model_args`` in ckpt.pt holds exactly these)."""

    block_size: int = 16
    vocab_size: int = 64
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 16
    dropout: float = 0.0
    bias: bool = True


class _NanoLayerNorm(nn.Module):
    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class _NanoAttention(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head = c.n_head
        self.n_embd = c.n_embd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class _NanoMLP(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class _NanoBlock(nn.Module):
    def __init__(self, c: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = _NanoLayerNorm(c.n_embd, c.bias)
        self.attn = _NanoAttention(c)
        self.ln_2 = _NanoLayerNorm(c.n_embd, c.bias)
        self.mlp = _NanoMLP(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT. ``tie=False`` is not in nanoGPT (it always ties); it is the untied twin a
    ``fix --to untied`` output must load into."""

    def __init__(self, config: GPTConfig, *, tie: bool = True) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "wpe": nn.Embedding(config.block_size, config.n_embd),
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList([_NanoBlock(config) for _ in range(config.n_layer)]),
                "ln_f": _NanoLayerNorm(config.n_embd, config.bias),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if tie:  # nanoGPT: self.transformer.wte.weight = self.lm_head.weight
            self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits at every position (nanoGPT computes only the last one at inference)."""
        pos = torch.arange(idx.shape[1])
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


# ---------------------------------------------------------------------------------------------
# Meta's reference Llama (llama-models models/llama3/model.py) and Lingua
# (lingua/transformer.py): the same block names, tok_embeddings / norm / output at the top.


@dataclass
class LlamaArgs:
    """The fields of Meta's ``params.json`` that decide the shapes."""

    dim: int = 32
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = 2
    vocab_size: int = 64
    multiple_of: int = 16
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> LlamaArgs:
        """As ``ModelArgs(**params)`` does: unknown keys are ignored."""
        known = {k: v for k, v in params.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _ffn_hidden(dim: int, multiple_of: int, multiplier: float | None) -> int:
    hidden = int(2 * (4 * dim) / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight.float()).type_as(x)


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding on (batch, seq, heads, head_dim), computed on the fly (Meta
    keeps freqs_cis as a plain attribute, Lingua as a non-persistent buffer: neither is in the
    state dict)."""
    _, t, _, d = x.shape
    freqs = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    angles = torch.outer(torch.arange(t, dtype=torch.float32), freqs)
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    xf = x.float().reshape(*x.shape[:-1], d // 2, 2)
    a, b = xf[..., 0], xf[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, a: LlamaArgs) -> None:
        super().__init__()
        self.n_heads = a.n_heads
        self.n_kv_heads = a.n_kv_heads or a.n_heads
        self.head_dim = a.dim // a.n_heads
        self.theta = a.rope_theta
        self.wq = nn.Linear(a.dim, a.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(a.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(a.dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(a.n_heads * self.head_dim, a.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = _rope(self.wq(x).view(b, t, self.n_heads, self.head_dim), self.theta)
        k = _rope(self.wk(x).view(b, t, self.n_kv_heads, self.head_dim), self.theta)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim)
        rep = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.wo(y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, a: LlamaArgs) -> None:
        super().__init__()
        hidden = _ffn_hidden(a.dim, a.multiple_of, a.ffn_dim_multiplier)
        self.w1 = nn.Linear(a.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, a.dim, bias=False)
        self.w3 = nn.Linear(a.dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, a: LlamaArgs) -> None:
        super().__init__()
        self.attention = Attention(a)
        self.feed_forward = FeedForward(a)
        self.attention_norm = RMSNorm(a.dim, a.norm_eps)
        self.ffn_norm = RMSNorm(a.dim, a.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x))
        return h + self.feed_forward(self.ffn_norm(h))


class MetaTransformer(nn.Module):
    """llama-models' ``Transformer``: never tied; ``generation.py`` loads it strictly."""

    def __init__(self, a: LlamaArgs) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(a.vocab_size, a.dim)
        self.layers = nn.ModuleList([TransformerBlock(a) for _ in range(a.n_layers)])
        self.norm = RMSNorm(a.dim, a.norm_eps)
        self.output = nn.Linear(a.dim, a.vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h)).float()


class TiedLinear(nn.Module):
    """Lingua's TiedLinear: holds the embedding module itself, so the state dict carries the
    shared weight a second time as ``output.tied_module.weight``."""

    def __init__(self, tied_module: nn.Module) -> None:
        super().__init__()
        self.tied_module = tied_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.tied_module.weight)


class LinguaTransformer(nn.Module):
    """Lingua's ``LMTransformer`` (apps/main/transformer.py): the blocks come first (from
    ``BaseTransformer.__init__``), then tok_embeddings, norm and output."""

    def __init__(self, a: LlamaArgs, *, weight_tying: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList([TransformerBlock(a) for _ in range(a.n_layers)])
        self.weight_tying = weight_tying
        self.tok_embeddings = nn.Embedding(a.vocab_size, a.dim)
        self.norm = RMSNorm(a.dim, a.norm_eps)
        self.output: nn.Module = (
            TiedLinear(self.tok_embeddings)
            if weight_tying
            else nn.Linear(a.dim, a.vocab_size, bias=False)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h)).float()
