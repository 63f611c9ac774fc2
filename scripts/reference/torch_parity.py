#!/usr/bin/env python3
"""Generate the parity fixtures the native engine is tested against.

The reference is HuggingFace transformers' own model classes (LlamaForCausalLM,
MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, attn_implementation="eager") plus
PEFT for LoRA, run in float64 on
the CPU from weights that are exactly representable in float32 (the fixture stores
them as float32; the reference computes with the very same values widened to float64).

transformers computes three things in float32 even when the model is float64 (RMSNorm
upcasts to float32, eager attention runs softmax in float32, and the rotary table is
built from a float32 inv_freq in float32). For a float64 reference those three spots are
patched below to stay in the input dtype; nothing else in the models is touched. The
rotary patch computes the (scaled) inverse frequencies in float64 with transformers'
formulas and checks them against the model's own float32 `inv_freq` buffer first. An
independent plain-torch float64 implementation of the same architecture checks that
the patched models compute exactly what the conventions in README.md say.

Run:  /root/.cache/temper/pyref/bin/python scripts/reference/torch_parity.py
Writes test/fixtures/parity/<case>/ (see scripts/reference/README.md for the contract).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import peft
import transformers
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.qwen2 import modeling_qwen2
from transformers.models.qwen3 import modeling_qwen3

F64 = torch.float64
REPO = Path(__file__).resolve().parents[2]
# TEMPER_PARITY_OUT redirects the output (the test suite regenerates into a temporary folder).
OUT_DIR = Path(os.environ.get("TEMPER_PARITY_OUT", REPO / "test" / "fixtures" / "parity"))
ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# --------------------------------------------------------------------------------------
# float64 patches: keep transformers' math, drop its float32 islands.
# --------------------------------------------------------------------------------------


def _rmsnorm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    # Same formula as LlamaRMSNorm / Qwen3RMSNorm: w * (x * rsqrt(mean(x^2) + eps)),
    # without the upcast to float32.
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
    return self.weight * hidden_states


def _make_eager_attention(mod):
    def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        key_states = mod.repeat_kv(key, module.num_key_value_groups)
        value_states = mod.repeat_kv(value, module.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        # transformers uses dtype=torch.float32 here; keep the query dtype instead.
        attn_weights = F.softmax(attn_weights, dim=-1, dtype=query.dtype)
        attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = attn_output.transpose(1, 2).contiguous()
        return attn_output, attn_weights

    return eager_attention_forward


def inv_freq64(head_dim: int, theta: float, scaling: dict | None) -> torch.Tensor:
    """RoPE inverse frequencies in float64, with transformers' rope_type formulas
    (modeling_rope_utils: default, linear, llama3)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=F64) / head_dim))
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / scaling["factor"]
    assert kind == "llama3", kind
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_ctx = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _rotary_forward(self, x, position_ids):
    # Same layout as transformers (emb = cat(freqs, freqs), used with rotate_half), with the
    # inverse frequencies and the angles in float64 (attach_rope_params checked them against
    # the module's own float32 inv_freq).
    freqs = position_ids[..., None].to(F64) * self._parity_inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


FAMILY_MODULES = {
    "llama": (modeling_llama, modeling_llama.LlamaRMSNorm, modeling_llama.LlamaRotaryEmbedding),
    "mistral": (modeling_mistral, modeling_mistral.MistralRMSNorm, modeling_mistral.MistralRotaryEmbedding),
    "qwen2": (modeling_qwen2, modeling_qwen2.Qwen2RMSNorm, modeling_qwen2.Qwen2RotaryEmbedding),
    "qwen3": (modeling_qwen3, modeling_qwen3.Qwen3RMSNorm, modeling_qwen3.Qwen3RotaryEmbedding),
}
ROTARY_CLASSES = tuple(rot for _, _, rot in FAMILY_MODULES.values())


def install_float64_patches() -> None:
    for mod, norm, rot in FAMILY_MODULES.values():
        norm.forward = _rmsnorm_forward
        rot.forward = _rotary_forward
        # The attention modules look this global up at call time (the "eager" default).
        mod.eager_attention_forward = _make_eager_attention(mod)


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    model_type: str  # "llama" | "mistral" | "qwen2" | "qwen3"
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    rope_theta: float
    rms_eps: float
    adam: dict
    seq_lens: list[int]
    seed: int
    lora: dict | None = None
    max_pos: int = 64
    # std of the random normal weights
    std_embed: float = 0.2
    std_proj: float = 0.15
    std_lm_head: float = 0.2
    std_lora_a: float = 0.2
    std_lora_b: float = 0.1
    std_bias: float = 0.3
    # HF rope_scaling (classic form, rope_type key), None for plain RoPE
    rope_scaling: dict | None = None
    # llama / qwen3: attention_bias (q, k, v and o_proj); qwen2 always has q/k/v biases
    attention_bias: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def qkv_bias(self) -> bool:
        return self.model_type == "qwen2" or self.attention_bias

    @property
    def o_bias(self) -> bool:
        return self.model_type != "qwen2" and self.attention_bias


CASES = [
    Case(
        name="llama_gqa_untied",
        model_type="llama",
        vocab=48,
        hidden=32,
        intermediate=40,  # not a multiple of 16 on purpose
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=8,  # = hidden / heads
        tied=False,
        rope_theta=10000.0,
        rms_eps=1e-5,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 0.0},
        seq_lens=[7, 12, 5],
        seed=1001,
    ),
    Case(
        name="qwen3_tied_qknorm",
        model_type="qwen3",
        vocab=40,
        hidden=32,
        intermediate=40,
        layers=2,
        heads=4,
        kv_heads=1,
        head_dim=16,  # != hidden / heads (8): q_proj is [64, 32], o_proj is [32, 64]
        tied=True,
        rope_theta=1000000.0,
        rms_eps=1e-6,
        # eps comparable to the clipped per-element gradients, so that clipping changes
        # the AdamW result too (with eps -> 0 one Adam step is invariant to grad scale).
        adam={"lr": 2e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "weight_decay": 0.01, "grad_clip": 0.5},
        seq_lens=[7, 12, 5],
        seed=2002,
    ),
    Case(
        name="qwen3_lora",
        model_type="qwen3",
        vocab=40,
        hidden=32,
        intermediate=48,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=16,
        tied=False,
        rope_theta=1000000.0,
        rms_eps=1e-6,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0},
        seq_lens=[7, 12, 5],
        seed=3003,
        lora={"rank": 4, "alpha": 8, "target_modules": list(ALL_PROJ)},
    ),
    Case(
        name="llama_lora_unembed",
        model_type="llama",
        vocab=48,
        hidden=32,
        intermediate=64,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=8,
        tied=False,
        rope_theta=10000.0,
        rms_eps=1e-5,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.05, "grad_clip": 0.0},
        seq_lens=[7, 12, 5],
        seed=4004,
        lora={"rank": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj", "lm_head"]},
    ),
    # --- real families, scaled down from their published shapes ---
    Case(
        # Llama 3.2 1B: tied, 4 query heads per kv head, llama3 RoPE scaling. theta and the
        # original context are chosen so that the frequencies fall in all three llama3 bands
        # (kept, smoothed, divided by the factor) and the sequences run past the original context.
        name="llama3_rope_lora",
        model_type="llama",
        vocab=48,
        hidden=64,
        intermediate=96,
        layers=2,
        heads=4,
        kv_heads=1,
        head_dim=16,
        tied=True,
        rope_theta=500.0,
        rms_eps=1e-5,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0},
        seq_lens=[9, 40, 5],
        seed=5005,
        max_pos=64,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
        lora={"rank": 4, "alpha": 8, "target_modules": list(ALL_PROJ)},
    ),
    Case(
        # Llama 2 long-context fine-tunes: linear position interpolation, untied, full fine-tune.
        name="llama_linear_rope",
        model_type="llama",
        vocab=48,
        hidden=32,
        intermediate=40,
        layers=2,
        heads=4,
        kv_heads=4,
        head_dim=8,
        tied=False,
        rope_theta=10000.0,
        rms_eps=1e-5,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 0.0},
        seq_lens=[7, 30, 5],
        seed=6006,
        rope_scaling={"rope_type": "linear", "factor": 4.0},
    ),
    Case(
        # Qwen2.5 0.5B: q/k/v biases (no o_proj bias), tied, 7 query heads per kv head
        # scaled to 3 (q_proj wider than hidden); full fine-tune, so the bias gradients are
        # compared.
        name="qwen2_bias",
        model_type="qwen2",
        vocab=40,
        hidden=32,
        intermediate=40,
        layers=2,
        heads=6,
        kv_heads=2,
        head_dim=8,
        tied=True,
        rope_theta=1000000.0,
        rms_eps=1e-6,
        adam={"lr": 2e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "weight_decay": 0.01, "grad_clip": 0.5},
        seq_lens=[7, 12, 5],
        seed=7007,
    ),
    Case(
        # Qwen2.5 with LoRA on every projection, biased ones included (the bias stays frozen,
        # as PEFT's bias="none" keeps it).
        name="qwen2_lora",
        model_type="qwen2",
        vocab=40,
        hidden=32,
        intermediate=48,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=8,
        tied=False,
        rope_theta=1000000.0,
        rms_eps=1e-6,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0},
        seq_lens=[7, 12, 5],
        seed=8008,
        lora={"rank": 4, "alpha": 8, "target_modules": list(ALL_PROJ)},
    ),
    Case(
        # Qwen3 dense with head_dim (32) twice hidden/heads and attention_bias: q/k/v/o biases
        # together with the q/k norm; full fine-tune.
        name="qwen3_bias_headdim",
        model_type="qwen3",
        vocab=40,
        hidden=32,
        intermediate=48,
        layers=2,
        heads=2,
        kv_heads=1,
        head_dim=32,
        tied=False,
        rope_theta=1000000.0,
        rms_eps=1e-6,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.05, "grad_clip": 0.0},
        seq_lens=[7, 12, 5],
        seed=9009,
        attention_bias=True,
    ),
    Case(
        # Mistral 7B v0.3 (no sliding window): untied, 4 query heads per kv head, LoRA.
        name="mistral_lora",
        model_type="mistral",
        vocab=48,
        hidden=32,
        intermediate=56,
        layers=2,
        heads=4,
        kv_heads=1,
        head_dim=8,
        tied=False,
        rope_theta=1000000.0,
        rms_eps=1e-5,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0},
        seq_lens=[7, 12, 5],
        seed=10010,
        lora={"rank": 4, "alpha": 16, "target_modules": list(ALL_PROJ)},
    ),
    Case(
        # SmolLM2 135M: a Llama with 9 heads of 64 and 3 kv heads (3 query heads each), tied,
        # theta 1e5; scaled to 3 heads of 16 over 1 kv head; LoRA on attention and MLP.
        name="smollm_lora",
        model_type="llama",
        vocab=48,
        hidden=48,
        intermediate=128,
        layers=3,
        heads=3,
        kv_heads=1,
        head_dim=16,
        tied=True,
        rope_theta=100000.0,
        rms_eps=1e-5,
        adam={"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0},
        seq_lens=[7, 12, 5],
        seed=11011,
        lora={"rank": 2, "alpha": 4, "target_modules": list(ALL_PROJ)},
    ),
]

QWEN2_WINDOW_OFF = {"use_sliding_window": False, "sliding_window": 4, "max_window_layers": 1}

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}


# --------------------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------------------


class Rng:
    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def normal32(self, shape, std: float) -> torch.Tensor:
        """float32 tensor (the stored value) drawn as float64 normal * std."""
        return (torch.randn(shape, generator=self.g, dtype=F64) * std).to(torch.float32)

    def around_one32(self, n: int, spread: float = 0.1) -> torch.Tensor:
        u = torch.rand(n, generator=self.g, dtype=F64)
        return (1.0 + spread * (2.0 * u - 1.0)).to(torch.float32)

    def ints(self, n: int, high: int) -> list[int]:
        return torch.randint(0, high, (n,), generator=self.g).tolist()

    def loss_weights(self, n: int) -> list[float]:
        w = torch.randn(n, generator=self.g, dtype=F64).to(torch.float32)
        # zeros and negatives on purpose: prompt-like zero weights, advantage-like signs
        w[0] = 0.0
        if n > 3:
            w[n // 2] = 0.0
            w[1] = -abs(float(w[1])) - 0.25
        return [float(x) for x in w.tolist()]


def hf_config_dict(c: Case) -> dict:
    """config.json in the classic form (rope_theta and rope_scaling at the top level)."""
    arch = ARCHITECTURES[c.model_type]
    out = {
        "architectures": [arch],
        "model_type": c.model_type,
        "vocab_size": c.vocab,
        "hidden_size": c.hidden,
        "intermediate_size": c.intermediate,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_dim,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_pos,
        "tie_word_embeddings": c.tied,
        "hidden_act": "silu",
        "attention_bias": c.attention_bias,
        "torch_dtype": "float32",
    }
    if c.model_type in ("qwen2", "mistral"):
        del out["attention_bias"]  # not a field of these families
    if c.model_type == "qwen2":
        # As Qwen2.5 configs carry it: a window that is off (use_sliding_window false). It is
        # shorter than the sequences here, so the parity shows it is really ignored.
        out.update(QWEN2_WINDOW_OFF)
    if c.model_type == "mistral":
        out["sliding_window"] = None  # MistralConfig's default would be 4096
    if c.rope_scaling is not None:
        out["rope_scaling"] = dict(c.rope_scaling)
    return out


def make_base_weights(c: Case, rng: Rng) -> dict[str, torch.Tensor]:
    w: dict[str, torch.Tensor] = {}
    q_out, kv_out = c.heads * c.head_dim, c.kv_heads * c.head_dim
    w["model.embed_tokens.weight"] = rng.normal32((c.vocab, c.hidden), c.std_embed)
    for i in range(c.layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = rng.around_one32(c.hidden)
        w[p + "self_attn.q_proj.weight"] = rng.normal32((q_out, c.hidden), c.std_proj)
        w[p + "self_attn.k_proj.weight"] = rng.normal32((kv_out, c.hidden), c.std_proj)
        w[p + "self_attn.v_proj.weight"] = rng.normal32((kv_out, c.hidden), c.std_proj)
        w[p + "self_attn.o_proj.weight"] = rng.normal32((c.hidden, q_out), c.std_proj)
        if c.qkv_bias:
            w[p + "self_attn.q_proj.bias"] = rng.normal32((q_out,), c.std_bias)
            w[p + "self_attn.k_proj.bias"] = rng.normal32((kv_out,), c.std_bias)
            w[p + "self_attn.v_proj.bias"] = rng.normal32((kv_out,), c.std_bias)
        if c.o_bias:
            w[p + "self_attn.o_proj.bias"] = rng.normal32((c.hidden,), c.std_bias)
        if c.model_type == "qwen3":
            w[p + "self_attn.q_norm.weight"] = rng.around_one32(c.head_dim)
            w[p + "self_attn.k_norm.weight"] = rng.around_one32(c.head_dim)
        w[p + "post_attention_layernorm.weight"] = rng.around_one32(c.hidden)
        w[p + "mlp.gate_proj.weight"] = rng.normal32((c.intermediate, c.hidden), c.std_proj)
        w[p + "mlp.up_proj.weight"] = rng.normal32((c.intermediate, c.hidden), c.std_proj)
        w[p + "mlp.down_proj.weight"] = rng.normal32((c.hidden, c.intermediate), c.std_proj)
    w["model.norm.weight"] = rng.around_one32(c.hidden)
    if not c.tied:
        w["lm_head.weight"] = rng.normal32((c.vocab, c.hidden), c.std_lm_head)
    return w


def lora_module_shapes(c: Case, base: dict[str, torch.Tensor]) -> list[tuple[str, int, int]]:
    """(module path, in_features, out_features) in a fixed order."""
    out = []
    for i in range(c.layers):
        for m in ALL_PROJ:
            if m not in c.lora["target_modules"]:
                continue
            sub = "self_attn" if m in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            path = f"model.layers.{i}.{sub}.{m}"
            o, n = base[path + ".weight"].shape
            out.append((path, n, o))
    if "lm_head" in c.lora["target_modules"]:
        o, n = base["lm_head.weight"].shape
        out.append(("lm_head", n, o))
    return out


def make_adapter(c: Case, base: dict[str, torch.Tensor], rng: Rng) -> dict[str, torch.Tensor]:
    r = c.lora["rank"]
    a: dict[str, torch.Tensor] = {}
    for path, n_in, n_out in lora_module_shapes(c, base):
        a[f"{path}.lora_A.weight"] = rng.normal32((r, n_in), c.std_lora_a)
        a[f"{path}.lora_B.weight"] = rng.normal32((n_out, r), c.std_lora_b)  # non-zero on purpose
    return a


def make_sequences(c: Case, rng: Rng) -> list[dict]:
    seqs = []
    for n in c.seq_lens:
        seqs.append({"tokens": rng.ints(n, c.vocab), "targets": rng.ints(n, c.vocab), "weights": rng.loss_weights(n)})
    return seqs


# --------------------------------------------------------------------------------------
# HF models
# --------------------------------------------------------------------------------------


def build_hf_model(c: Case, base: dict[str, torch.Tensor]) -> torch.nn.Module:
    common = dict(
        vocab_size=c.vocab,
        hidden_size=c.hidden,
        intermediate_size=c.intermediate,
        num_hidden_layers=c.layers,
        num_attention_heads=c.heads,
        num_key_value_heads=c.kv_heads,
        head_dim=c.head_dim,
        rms_norm_eps=c.rms_eps,
        rope_theta=c.rope_theta,
        max_position_embeddings=c.max_pos,
        tie_word_embeddings=c.tied,
        hidden_act="silu",
        attention_dropout=0.0,
    )
    if c.rope_scaling is not None:
        common["rope_scaling"] = dict(c.rope_scaling)
    if c.model_type == "llama":
        cfg = LlamaConfig(mlp_bias=False, attention_bias=c.attention_bias, **common)
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager")
    elif c.model_type == "mistral":
        cfg = MistralConfig(sliding_window=None, **common)
        model = MistralForCausalLM._from_config(cfg, attn_implementation="eager")
    elif c.model_type == "qwen2":
        cfg = Qwen2Config(**QWEN2_WINDOW_OFF, **common)
        assert cfg.sliding_window is None and set(cfg.layer_types) == {"full_attention"}
        model = Qwen2ForCausalLM._from_config(cfg, attn_implementation="eager")
    else:
        cfg = Qwen3Config(use_sliding_window=False, attention_bias=c.attention_bias, **common)
        model = Qwen3ForCausalLM._from_config(cfg, attn_implementation="eager")
    assert model.config.rope_parameters["rope_type"] == (c.rope_scaling or {}).get("rope_type", "default")
    # the biases the architecture really has are the ones the case says
    attn = model.model.layers[0].self_attn
    assert (attn.q_proj.bias is not None) == c.qkv_bias and (attn.v_proj.bias is not None) == c.qkv_bias
    assert (attn.o_proj.bias is not None) == c.o_bias
    model = model.to(F64)
    attach_rope_params(model, c)
    sd = {k: v.to(F64) for k, v in base.items()}
    if c.tied:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model.load_state_dict(sd, strict=True)
    if c.tied:
        assert model.lm_head.weight is model.model.embed_tokens.weight, "embeddings must be tied"
    else:
        assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert model.config._attn_implementation == "eager"
    model.eval()  # no dropout anywhere (and none configured)
    return model


def attach_rope_params(model: torch.nn.Module, c: Case) -> None:
    found = 0
    for m in model.modules():
        if isinstance(m, ROTARY_CLASSES):
            found += 1
            assert m.rope_type == (c.rope_scaling or {}).get("rope_type", "default"), m.rope_type
            # these rope types scale frequencies only, never the cos/sin amplitude
            assert m.attention_scaling == 1.0, m.attention_scaling
            inv = inv_freq64(c.head_dim, c.rope_theta, c.rope_scaling)
            # transformers' own (float32) table: the float64 one must be it, up to float32 rounding
            theirs = m.inv_freq.to(F64)
            assert theirs.shape == inv.shape, (theirs.shape, inv.shape)
            assert torch.allclose(theirs, inv, rtol=2e-6, atol=0), (theirs, inv)
            m._parity_inv_freq = inv
    assert found >= 1


def seq_logits(model: torch.nn.Module, tokens: list[int]) -> torch.Tensor:
    ids = torch.tensor([tokens], dtype=torch.long)
    out = model(input_ids=ids, use_cache=False)
    return out.logits[0]  # [T, V]


def seq_logprobs(logits: torch.Tensor, targets: list[int]) -> torch.Tensor:
    lp = torch.log_softmax(logits, dim=-1)
    return lp.gather(-1, torch.tensor(targets, dtype=torch.long)[:, None])[:, 0]


# --------------------------------------------------------------------------------------
# Independent plain-torch float64 implementation (cross-check of the conventions)
# --------------------------------------------------------------------------------------


def plain_forward(c: Case, w: dict[str, torch.Tensor], tokens: list[int], lora: dict | None = None) -> torch.Tensor:
    """Logits [T, V] from the float64 weights `w` (HF names), written from the formulas."""

    def rms(x, g):
        return g * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + c.rms_eps))

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        if name + ".bias" in w:
            y = y + w[name + ".bias"]
        if lora is not None and name + ".lora_A.weight" in lora:
            scale = c.lora["alpha"] / c.lora["rank"]
            y = y + scale * ((x @ lora[name + ".lora_A.weight"].T) @ lora[name + ".lora_B.weight"].T)
        return y

    T, d = len(tokens), c.head_dim
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    pos = torch.arange(T, dtype=F64)
    inv = inv_freq64(d, c.rope_theta, c.rope_scaling)
    ang = pos[:, None] * inv[None, :]  # [T, d/2]
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rope(v):  # v [H, T, d]; pairs (j, j + d/2) rotate together ("rotate_half" layout)
        a, b = v[..., : d // 2], v[..., d // 2 :]
        return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)

    mask = torch.full((T, T), float("-inf"), dtype=F64).triu(1)
    group = c.heads // c.kv_heads
    for i in range(c.layers):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(T, c.heads, d).transpose(0, 1)
        k = lin(h, p + "self_attn.k_proj").view(T, c.kv_heads, d).transpose(0, 1)
        v = lin(h, p + "self_attn.v_proj").view(T, c.kv_heads, d).transpose(0, 1)
        if c.model_type == "qwen3":  # per-head RMSNorm over head_dim, before RoPE
            q = rms(q, w[p + "self_attn.q_norm.weight"])
            k = rms(k, w[p + "self_attn.k_norm.weight"])
        q, k = rope(q), rope(k)
        # query head j uses kv head j // group
        k = k.repeat_interleave(group, dim=0)
        v = v.repeat_interleave(group, dim=0)
        s = (q @ k.transpose(1, 2)) / math.sqrt(d) + mask
        a = torch.softmax(s, dim=-1) @ v  # [H, T, d]
        x = x + lin(a.transpose(0, 1).reshape(T, c.heads * d), p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        u = lin(h, p + "mlp.up_proj")
        x = x + lin(g * torch.sigmoid(g) * u, p + "mlp.down_proj")
    x = rms(x, w["model.norm.weight"])
    head = "lm_head" if not c.tied else "model.embed_tokens"
    y = x @ w[head + ".weight"].T
    if lora is not None and "lm_head.lora_A.weight" in lora:
        scale = c.lora["alpha"] / c.lora["rank"]
        y = y + scale * ((x @ lora["lm_head.lora_A.weight"].T) @ lora["lm_head.lora_B.weight"].T)
    return y


def plain_adamw(p: torch.Tensor, g: torch.Tensor, h: dict) -> torch.Tensor:
    """One AdamW step from zero state, written out (torch.optim.AdamW semantics)."""
    b1, b2 = h["beta1"], h["beta2"]
    m = (1 - b1) * g
    v = (1 - b2) * g * g
    p = p * (1 - h["lr"] * h["weight_decay"])
    denom = (v.sqrt() / math.sqrt(1 - b2)) + h["eps"]
    return p - (h["lr"] / (1 - b1)) * m / denom


# --------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------


def close(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float = 1e-11, atol: float = 1e-13) -> None:
    if not torch.allclose(a, b, rtol=rtol, atol=atol):
        diff = (a - b).abs().max().item()
        raise AssertionError(f"{what}: max |diff| = {diff:.3e}")


def run_case(c: Case) -> dict:
    rng = Rng(c.seed)
    base32 = make_base_weights(c, rng)
    adapter32 = make_adapter(c, base32, rng) if c.lora else None
    seqs = make_sequences(c, rng)
    for s in seqs:
        assert len(s["tokens"]) == len(s["targets"]) == len(s["weights"])

    model = build_hf_model(c, base32)
    w64 = {k: v.to(F64) for k, v in base32.items()}

    # --- base model logits (used for the PEFT disable_adapter check) ---
    with torch.no_grad():
        base_logits = [seq_logits(model, s["tokens"]) for s in seqs]
        for s, lg in zip(seqs, base_logits):
            close(lg, plain_forward(c, w64, s["tokens"]), f"{c.name}: HF base vs plain float64 forward")

    if c.lora:
        lcfg = LoraConfig(
            r=c.lora["rank"],
            lora_alpha=c.lora["alpha"],
            target_modules=c.lora["target_modules"],
            lora_dropout=0.0,
            bias="none",
            use_rslora=False,
            init_lora_weights=True,
        )
        net = get_peft_model(model, lcfg)
        net = net.to(F64)
        prefixed = {"base_model.model." + k: v.to(F64) for k, v in adapter32.items()}
        res = set_peft_model_state_dict(net, prefixed)
        assert not res.unexpected_keys, res.unexpected_keys
        # the adapter must really be in place with the right scale
        trainable = {}
        for n, p in net.named_parameters():
            if p.requires_grad:
                assert n.startswith("base_model.model.") and ".default." in n, n
                short = n[len("base_model.model.") :].replace(".default.", ".")
                trainable[short] = p
        assert set(trainable) == set(adapter32), (sorted(trainable), sorted(adapter32))
        for k, p in trainable.items():
            assert torch.equal(p.detach(), adapter32[k].to(F64)), k
        for mod in net.modules():
            if hasattr(mod, "scaling") and isinstance(mod.scaling, dict) and "default" in mod.scaling:
                assert mod.scaling["default"] == c.lora["alpha"] / c.lora["rank"]
        net.eval()
        with torch.no_grad(), net.disable_adapter():
            for s, lg in zip(seqs, base_logits):
                got = seq_logits(net, s["tokens"])
                assert torch.equal(got, lg), f"{c.name}: PEFT with adapter disabled != base model"
        a64 = {k: v.to(F64) for k, v in adapter32.items()}
    else:
        net = model
        trainable = dict(net.named_parameters())  # tied lm_head is deduplicated here
        assert "lm_head.weight" not in trainable if c.tied else "lm_head.weight" in trainable
        assert set(trainable) == set(base32), sorted(set(trainable) ^ set(base32))
        a64 = None

    # --- forward + backward: each sequence is its own batch of one ---
    net.zero_grad(set_to_none=True)
    logprobs = []
    total = torch.zeros((), dtype=F64)
    for s in seqs:
        logits = seq_logits(net, s["tokens"])
        if a64 is not None:
            close(logits.detach(), plain_forward(c, w64, s["tokens"], a64), f"{c.name}: PEFT vs plain LoRA forward")
        lp = seq_logprobs(logits, s["targets"])
        wt = torch.tensor(s["weights"], dtype=F64)
        total = total - (wt * lp).sum()
        logprobs.append(lp)
    total.backward()
    logprobs_all = torch.cat(logprobs).detach()

    # independent loss: -sum w * logprob with plain ops, from the plain forward
    indep = 0.0
    for s in seqs:
        lg = plain_forward(c, w64, s["tokens"], a64)
        m = lg.max(-1, keepdim=True).values
        lse = (m + (lg - m).exp().sum(-1, keepdim=True).log())[:, 0]
        lp = lg[torch.arange(len(s["tokens"])), torch.tensor(s["targets"])] - lse
        indep -= sum(wi * float(li) for wi, li in zip(s["weights"], lp.tolist()))
    loss = total.detach().reshape(1)
    assert abs(loss.item() - indep) <= 1e-11 * max(1.0, abs(indep)), (loss.item(), indep)
    assert abs(loss.item() + float((torch.tensor(sum((s["weights"] for s in seqs), []), dtype=F64) * logprobs_all).sum())) < 1e-12

    names = sorted(trainable)
    grads = {n: trainable[n].grad.detach().clone() for n in names}
    for n in names:
        assert grads[n] is not None and grads[n].abs().max() > 0, f"{c.name}: zero gradient for {n}"
    grad_norm = torch.sqrt(sum((g * g).sum() for g in grads.values())).reshape(1)

    # tied embeddings: the single parameter gets both uses' gradients
    if c.tied and not c.lora:
        assert trainable["model.embed_tokens.weight"] is model.lm_head.weight

    # --- one AdamW step (after clipping when grad_clip > 0) ---
    h = c.adam
    params = [trainable[n] for n in names]
    before = {n: trainable[n].detach().clone() for n in names}
    if h["grad_clip"] > 0:
        gn = torch.nn.utils.clip_grad_norm_(params, h["grad_clip"])
        close(gn.reshape(1), grad_norm, f"{c.name}: clip_grad_norm_ total norm")
        assert grad_norm.item() > h["grad_clip"], f"{c.name}: clipping must really happen ({grad_norm.item()})"
        coef = min(1.0, h["grad_clip"] / (grad_norm.item() + 1e-6))
        for n in names:
            close(trainable[n].grad, grads[n] * coef, f"{c.name}: clipped grad {n}")
    opt = torch.optim.AdamW(
        params,
        lr=h["lr"],
        betas=(h["beta1"], h["beta2"]),
        eps=h["eps"],
        weight_decay=h["weight_decay"],
        foreach=False,
        fused=False,
    )
    used_grads = {n: trainable[n].grad.detach().clone() for n in names}
    opt.step()
    after = {n: trainable[n].detach().clone() for n in names}
    for n in names:
        close(after[n], plain_adamw(before[n], used_grads[n], h), f"{c.name}: AdamW step {n}", rtol=1e-12, atol=1e-15)

    # --- write ---
    d = OUT_DIR / c.name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(hf_config_dict(c), indent=2) + "\n")
    # The same config as transformers 5 itself writes it (RoPE inside rope_parameters).
    with tempfile.TemporaryDirectory() as t:
        AutoConfig.from_pretrained(str(d)).save_pretrained(t)
        v5 = json.loads((Path(t) / "config.json").read_text())
    assert "rope_parameters" in v5 and "rope_scaling" not in v5, sorted(v5)
    (d / "config.transformers5.json").write_text(json.dumps(v5, indent=2, sort_keys=True) + "\n")
    save_file({k: v.contiguous() for k, v in base32.items()}, str(d / "model.safetensors"), metadata={"format": "pt"})
    if adapter32 is not None:
        save_file({k: v.contiguous() for k, v in adapter32.items()}, str(d / "adapter.safetensors"), metadata={"format": "pt"})
    case_json = {
        "sequences": seqs,
        "lora": None if c.lora is None else {"rank": c.lora["rank"], "alpha": c.lora["alpha"], "target_modules": c.lora["target_modules"]},
        "adam": h,
    }
    (d / "case.json").write_text(json.dumps(case_json, indent=1) + "\n")
    expected = {"logprobs": logprobs_all, "loss": loss, "grad_norm": grad_norm.detach()}
    for n in names:
        expected["grad." + n] = grads[n]
        expected["adam." + n] = after[n]
    save_file({k: v.contiguous() for k, v in expected.items()}, str(d / "expected.safetensors"), metadata={"format": "pt"})

    for f in d.iterdir():
        f.chmod(0o644)
    verify_written(c, d, base_logits, seqs)
    return {
        "case": c.name,
        "loss": loss.item(),
        "grad_norm": grad_norm.item(),
        "tokens": int(logprobs_all.numel()),
        "trainable": len(names),
        "bytes": sum(f.stat().st_size for f in d.iterdir()),
    }


def verify_written(c: Case, d: Path, base_logits: list[torch.Tensor], seqs: list[dict]) -> None:
    """Reload the fixture through HF's own loaders and check it is what we computed from."""
    m = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager")
    assert type(m).__name__ == hf_config_dict(c)["architectures"][0]
    assert m.config.tie_word_embeddings == c.tied
    assert m.config.rope_parameters["rope_theta"] == c.rope_theta
    assert m.config.head_dim == c.head_dim
    assert m.config.rope_parameters["rope_type"] == (c.rope_scaling or {}).get("rope_type", "default")
    m = m.to(F64)
    attach_rope_params(m, c)
    m.eval()
    with torch.no_grad():
        for s, lg in zip(seqs, base_logits):
            assert torch.equal(seq_logits(m, s["tokens"]), lg), f"{c.name}: reloaded model differs"
    # the transformers-5 spelling of the config loads to the very same model
    with tempfile.TemporaryDirectory() as t:
        shutil.copy(d / "config.transformers5.json", Path(t) / "config.json")
        shutil.copy(d / "model.safetensors", Path(t) / "model.safetensors")
        m5 = AutoModelForCausalLM.from_pretrained(t, dtype=torch.float32, attn_implementation="eager")
        m5 = m5.to(F64)
        attach_rope_params(m5, c)
        m5.eval()
        with torch.no_grad():
            for s, lg in zip(seqs, base_logits):
                assert torch.equal(seq_logits(m5, s["tokens"]), lg), f"{c.name}: transformers-5 config differs"
    stored = load_file(str(d / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in stored.values())
    exp = load_file(str(d / "expected.safetensors"))
    assert all(v.dtype == F64 for v in exp.values())
    if c.lora:
        ad = load_file(str(d / "adapter.safetensors"))
        assert all(v.dtype == torch.float32 for v in ad.values())
        assert all(v.abs().max() > 0 for k, v in ad.items() if "lora_B" in k)
        assert set("grad." + k for k in ad) == {k for k in exp if k.startswith("grad.")}
    else:
        assert set("grad." + k for k in stored) == {k for k in exp if k.startswith("grad.")}


def main() -> int:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    install_float64_patches()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    total = 0
    for c in CASES:
        info = run_case(c)
        total += info["bytes"]
        print(json.dumps(info))
    print(f"total fixture bytes: {total}")
    assert total < 4 * 1024 * 1024
    return 0


if __name__ == "__main__":
    sys.exit(main())
