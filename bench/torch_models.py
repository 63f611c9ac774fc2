#!/usr/bin/env python3
"""The PyTorch + PEFT anchor of bench/models.ts.

    torch_models.py --dir D --threads N --steps S --spawned-ms T

Loads the HF model directory D (config.json + model.safetensors in bf16, written by
bench/models.ts) with transformers as float32 (fp32 compute, the usual way to LoRA-train on
a CPU), wraps it with PEFT LoRA (rank/alpha/targets from D/bench.json), and runs S training
steps (forward, mean cross-entropy over every target token, backward, AdamW) on the batch in
D/batch.json (tokens and next-token targets, 4 x 512). Prints one JSON line:
  {"load_s": spawn -> ready to step, "step_s": [...], "loss": [...], "peak_rss_bytes": VmHWM}
The clock starts when the parent spawned this process (--spawned-ms, epoch ms), so the
interpreter start and imports count as loading, as they do for temper.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--spawned-ms", type=float, required=True)
    # Gradient accumulation over this many equal slices of the batch (same step, same mean
    # loss, less activation memory): the fallback when the whole batch does not fit.
    ap.add_argument("--micro-batches", type=int, default=1)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.dir, "bench.json")) as f:
        spec = json.load(f)
    with open(os.path.join(args.dir, "batch.json")) as f:
        batch = json.load(f)

    model = AutoModelForCausalLM.from_pretrained(args.dir, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=spec["rank"],
            lora_alpha=spec["alpha"],
            lora_dropout=0.0,
            target_modules=spec["targets"],
            bias="none",
        ),
    )
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
    tokens = torch.tensor(batch["tokens"], dtype=torch.long)
    targets = torch.tensor(batch["targets"], dtype=torch.long)
    load_s = time.time() - args.spawned_ms / 1000.0

    step_s, losses = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        total = 0.0
        for tok, tgt in zip(tokens.chunk(args.micro_batches), targets.chunk(args.micro_batches)):
            logits = model(input_ids=tok).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
            (loss / args.micro_batches).backward()
            total += float(loss) / args.micro_batches
            del logits, loss
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_s.append(time.perf_counter() - t)
        losses.append(total)
    print(
        json.dumps(
            {
                "load_s": load_s,
                "step_s": step_s,
                "loss": losses,
                "peak_rss_bytes": peak_rss_bytes(),
                "torch": torch.__version__,
                "micro_batches": args.micro_batches,
                "trainable_params": sum(p.numel() for p in trainable),
            }
        )
    )


if __name__ == "__main__":
    main()
