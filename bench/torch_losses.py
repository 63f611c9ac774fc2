"""Anchor for bench/losses.ts: the same GRPO loss (TIS token weights, k3 KL to a reference),
forward and backward, in PyTorch on the CPU.

    python bench/torch_losses.py DIR --steps S --warmup W --threads N --dtype float32

DIR holds the batch bench/losses.ts wrote (float64, row-major): lp.bin, old.bin, rollout.bin,
ref.bin, mask.bin ([B, T] each), adv.bin ([B]) and meta.json ({"sequences", "tokens", ...}).

Two shapes of the same computation are timed:
  list     what forward_backward_custom does: one requires_grad tensor per datum, a Python loop
           over datums, loss.backward(); the metrics are accumulated as tensors and read once.
  batched  the [B, T] batch as one tensor (possible here because every datum has length T).
Writes the list variant's gradients, computed in float64, to DIR/torch_grads.bin for the parity
check, and prints one JSON line: {"list_ms", "batched_ms", "loss", "metrics" (float64 run),
"threads", "dtype" (of the timed runs), "torch"}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

SAFETY_CLAMP = 20.0


def load(d: Path, dtype: torch.dtype):
    meta = json.loads((d / "meta.json").read_text())
    b, t = meta["sequences"], meta["tokens"]

    def rows(name: str) -> torch.Tensor:
        return torch.from_numpy(np.fromfile(d / f"{name}.bin", dtype=np.float64).reshape(b, t)).to(dtype)

    adv = torch.from_numpy(np.fromfile(d / "adv.bin", dtype=np.float64)).to(dtype)
    return meta, rows("lp"), rows("old"), rows("rollout"), rows("ref"), rows("mask"), adv


def grpo_list(lps, old, rollout, ref, mask, adv, cfg):
    """Per-datum loop, as a Training API custom loss sees its inputs."""
    lo, hi, beta, cap = 1 - cfg["eps_clip"], 1 + cfg["eps_clip"], cfg["kl_beta"], cfg["tis_cap"]
    total = lps[0].new_zeros(())
    acc = {k: lps[0].new_zeros(()) for k in ("active", "ppo_kl", "ratio", "clipped", "ref_kld", "tis_w", "tis_clip")}
    for i, lp in enumerate(lps):
        m = mask[i]
        active = m > 0.5
        # TIS weight (constant w.r.t. lp): clamp(exp(clamp(old - rollout)), 0, cap); 1 where masked.
        raw = torch.exp(torch.clamp(old[i] - rollout[i], -SAFETY_CLAMP, SAFETY_CLAMP))
        w = torch.where(active, torch.clamp(raw, 0.0, cap), torch.ones_like(raw))
        d = torch.clamp(lp - old[i], -SAFETY_CLAMP, SAFETY_CLAMP)
        ratio = torch.exp(d)
        clipped = torch.clamp(ratio, lo, hi)
        a = adv[i]
        per_token = torch.maximum(-ratio * a, -clipped * a) * w
        y = ref[i] - lp
        k3 = torch.exp(y) - y - 1.0
        per_token = per_token + beta * k3
        total = total + (per_token * m).sum()
        with torch.no_grad():
            af = active.to(lp.dtype)
            acc["active"] += af.sum()
            acc["ppo_kl"] += ((ratio - d - 1.0) * af).sum()
            acc["ratio"] += (ratio * af).sum()
            acc["clipped"] += ((clipped != ratio).to(lp.dtype) * af).sum()
            acc["ref_kld"] += (k3 * af).sum()
            acc["tis_w"] += (w * af).sum()
            acc["tis_clip"] += ((w != raw).to(lp.dtype) * af).sum()
    total.backward()
    n = acc["active"].item()
    metrics = {
        "ppo_kl:mean": acc["ppo_kl"].item() / n,
        "ppo_ratio:mean": acc["ratio"].item() / n,
        "ppo_clip_frac:mean": acc["clipped"].item() / n,
        "ref_kld:mean": acc["ref_kld"].item() / n,
        "tis/weight:mean": acc["tis_w"].item() / n,
        "tis/clip_frac:mean": acc["tis_clip"].item() / n,
    }
    return total.item(), metrics


def grpo_batched(lp, old, rollout, ref, mask, adv, cfg):
    """The same loss on the padded [B, T] batch in one set of tensor ops."""
    lo, hi, beta, cap = 1 - cfg["eps_clip"], 1 + cfg["eps_clip"], cfg["kl_beta"], cfg["tis_cap"]
    active = mask > 0.5
    raw = torch.exp(torch.clamp(old - rollout, -SAFETY_CLAMP, SAFETY_CLAMP))
    w = torch.where(active, torch.clamp(raw, 0.0, cap), torch.ones_like(raw))
    d = torch.clamp(lp - old, -SAFETY_CLAMP, SAFETY_CLAMP)
    ratio = torch.exp(d)
    clipped = torch.clamp(ratio, lo, hi)
    a = adv[:, None]
    y = ref - lp
    k3 = torch.exp(y) - y - 1.0
    per_token = torch.maximum(-ratio * a, -clipped * a) * w + beta * k3
    total = (per_token * mask).sum()
    total.backward()
    with torch.no_grad():
        af = active.to(lp.dtype)
        n = af.sum()
        metrics = torch.stack(
            [
                ((ratio - d - 1.0) * af).sum() / n,
                (ratio * af).sum() / n,
                ((clipped != ratio).to(lp.dtype) * af).sum() / n,
                (k3 * af).sum() / n,
                (w * af).sum() / n,
                ((w != raw).to(lp.dtype) * af).sum() / n,
            ]
        ).tolist()
    return total.item(), metrics


def timed(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir", type=Path)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    meta, lp0, old, rollout, ref, mask, adv = load(args.dir, dtype)
    cfg = meta["config"]

    def run_list():
        lps = [lp0[i].clone().requires_grad_(True) for i in range(lp0.shape[0])]
        loss, metrics = grpo_list(lps, old, rollout, ref, mask, adv, cfg)
        return lps, loss, metrics

    def run_batched():
        lp = lp0.clone().requires_grad_(True)
        return grpo_batched(lp, old, rollout, ref, mask, adv, cfg)

    # Parity data comes from a float64 run (un-timed): in float32 a ratio sitting within
    # rounding of a clip bound can land on the other side, which says nothing about the math.
    _, lp64, old64, rollout64, ref64, mask64, adv64 = load(args.dir, torch.float64)
    lps64 = [lp64[i].clone().requires_grad_(True) for i in range(lp64.shape[0])]
    loss, metrics = grpo_list(lps64, old64, rollout64, ref64, mask64, adv64, cfg)
    torch.stack([x.grad for x in lps64]).numpy().tofile(args.dir / "torch_grads.bin")
    list_ms = timed(run_list, args.steps, args.warmup)
    batched_ms = timed(run_batched, args.steps, args.warmup)
    print(
        json.dumps(
            {
                "list_ms": list_ms,
                "batched_ms": batched_ms,
                "loss": loss,
                "metrics": metrics,
                "threads": args.threads,
                "dtype": args.dtype,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
