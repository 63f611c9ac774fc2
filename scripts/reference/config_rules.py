#!/usr/bin/env python3
"""Checks temper's config.json rules against transformers itself.

temper refuses some config fields and accepts others as exact (src/engine/config.ts). This
script builds small random models of each family in float64 and shows, with transformers'
own classes, that every refusal listed here is necessary (the field really changes the
logits: ignoring it would mis-score) and every acceptance is exact (the logits are the same
as the plain configuration's). It writes the configs with the verdicts to
test/fixtures/parity/config_rules.json, which test/engine/config-rules.test.ts holds the
TypeScript parser to (and regenerates live, like the parity fixtures).

Run:  /root/.cache/temper/pyref/bin/python scripts/reference/config_rules.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

F64 = torch.float64
REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("TEMPER_CONFIG_RULES_OUT", REPO / "test" / "fixtures" / "parity" / "config_rules.json"))

SMALL = {
    "vocab_size": 40,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}

BASES = {
    "llama": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **SMALL},
    "mistral": {"architectures": ["MistralForCausalLM"], "model_type": "mistral", **SMALL, "sliding_window": None},
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **SMALL},
    "qwen3": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", **SMALL, "head_dim": 16},
}

# (name, family, changes to the base config, verdict, the field a refusal names)
RULES = [
    ("mistral window shorter than the context", "mistral", {"sliding_window": 8}, "refused", "sliding_window"),
    ("mistral window as long as the context", "mistral", {"sliding_window": 32}, "accepted", None),
    ("mistral without sliding_window (4096)", "mistral", {"sliding_window": "<absent>"}, "accepted", None),
    ("qwen2 window on for layer 1", "qwen2", {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}, "refused", "use_sliding_window"),
    ("qwen2 window switched off", "qwen2", {"use_sliding_window": False, "sliding_window": 8, "max_window_layers": 0}, "accepted", None),
    ("qwen3 window on for every layer", "qwen3", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 0}, "refused", "use_sliding_window"),
    ("qwen3 window spelled in layer_types", "qwen3", {"use_sliding_window": True, "sliding_window": 4, "layer_types": ["full_attention", "sliding_attention"]}, "refused", "layer_types"),
    # sliding layers without a window: transformers fails on it, so must we
    ("qwen3 layer_types without use_sliding_window", "qwen3", {"sliding_window": 4, "layer_types": ["full_attention", "sliding_attention"]}, "refused", "layer_types"),
    ("llama yarn RoPE", "llama", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8}}, "refused", "rope_scaling.rope_type"),
    ("llama longrope RoPE", "llama", {"rope_scaling": {"rope_type": "longrope", "short_factor": [1.5] * 4, "long_factor": [2.0] * 4, "original_max_position_embeddings": 8}}, "refused", "rope_scaling.rope_type"),
    ("llama mlp_bias", "llama", {"mlp_bias": True}, "refused", "mlp_bias"),
    ("llama gelu MLP", "llama", {"hidden_act": "gelu"}, "refused", "hidden_act"),
    ("mistral num_key_value_heads omitted (8)", "mistral", {"num_attention_heads": 8, "num_key_value_heads": "<absent>"}, "refused_by_shape", None),
    ("llama3 without original_max_position_embeddings", "llama", {"rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}}, "scaled", None),
]


def config_of(family: str, changes: dict) -> dict:
    c = dict(BASES[family])
    for k, v in changes.items():
        if v == "<absent>":
            c.pop(k, None)
        else:
            c[k] = v
    return c


def build(cfg: dict) -> torch.nn.Module:
    config = AutoConfig.for_model(**{k: v for k, v in cfg.items() if k != "architectures"})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=F64)
    # biases that exist get values, so a bias switch really shows in the logits
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, dtype=F64, generator=torch.Generator().manual_seed(len(name))) * 0.5)
    return model.eval()


def logits(model: torch.nn.Module, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0]


def main() -> int:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    tokens = [(i * 7 + 3) % SMALL["vocab_size"] for i in range(SMALL["max_position_embeddings"])]
    out = []
    for name, family, changes, verdict, field in RULES:
        base_cfg = config_of(family, {})
        cfg = config_of(family, changes)
        base = build(base_cfg)
        try:
            variant = build(cfg)
        except Exception as err:  # noqa: BLE001 - a config transformers cannot build
            raise AssertionError(f"{name}: transformers cannot build it ({err})") from err
        if verdict == "refused_by_shape":
            # MistralConfig's default of 8 kv heads: a different model, not the plain one
            assert variant.config.num_key_value_heads == 8, variant.config.num_key_value_heads
            out.append({"name": name, "config": cfg, "verdict": "accepted_as", "expect": {"numKvHeads": 8}})
            continue
        if verdict == "scaled":
            assert variant.config.rope_parameters["original_max_position_embeddings"] == SMALL["max_position_embeddings"]
            out.append({"name": name, "config": cfg, "verdict": "accepted_as", "expect": {"ropeScaling": {"type": "llama3", "factor": 4.0, "lowFreqFactor": 1.0, "highFreqFactor": 4.0, "originalMaxPositions": SMALL["max_position_embeddings"]}}})
            continue
        # the same weights wherever the shapes agree, so only the config differs
        sd = base.state_dict()
        own = variant.state_dict()
        variant.load_state_dict({k: sd[k] if k in sd and sd[k].shape == v.shape else v for k, v in own.items()})
        a = logits(base, tokens)
        try:
            b = logits(variant, tokens)
        except ValueError as err:
            # transformers cannot run the config at all: refusing it is the only exact answer
            assert verdict == "refused", f"{name}: transformers fails on it ({err})"
            out.append({"name": name, "config": cfg, "verdict": verdict, "field": field, "transformers_error": str(err)})
            print(json.dumps({"rule": name, "verdict": verdict, "transformers_error": str(err)}))
            continue
        same = torch.allclose(a, b, rtol=0, atol=1e-12)
        diff = float((a - b).abs().max()) if a.shape == b.shape else float("inf")
        if verdict == "refused":
            assert not same, f"{name}: transformers computes the same logits, so refusing is not necessary"
        else:
            assert same, f"{name}: transformers' logits differ by {diff:.3e}, so accepting is not exact"
        out.append({"name": name, "config": cfg, "verdict": verdict, "field": field, "max_logit_diff": round(diff, 6)})
        print(json.dumps({"rule": name, "verdict": verdict, "max_logit_diff": diff}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"transformers": transformers.__version__, "base": BASES, "rules": out}, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
