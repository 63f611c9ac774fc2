#!/usr/bin/env python3
"""The PyTorch / OpenBLAS anchors of bench/engine.ts.

    torch_engine.py info
        -> {"torch_build": "...", "blas": "...", ...}
    torch_engine.py train --dir D --threads N --warmup W --steps S
        -> one training step (forward, weighted CE loss (sum), backward, AdamW fused) of the model in
           D (config.json + model.safetensors, written by bench/engine.ts) on the batch in
           D/batch.json; {"step_s": [...], "loss0": ..., ...}
    torch_engine.py gemm --threads N --shapes '[[m,n,k,transA,transB],...]' --min-time T
        -> numpy float32 matmul (OpenBLAS sgemm in PyPI's numpy): {"results": [{"gflops": ..}]}

The model is a compact hand-written Llama (nn.Linear without bias, RMSNorm, RoPE in the
rotate_half layout, GQA through F.scaled_dot_product_attention(is_causal=True), SwiGLU):
plain fast eager PyTorch, none of transformers' wrappers. The JSON result is the last line
of stdout. Thread counts are pinned through the environment before torch/numpy load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def pin_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)


QUIET_CORES = 0.25  # other processes may use at most this many cores during a timed sample


class Load:
    """CPU used by OTHER processes during an interval, in cores: the machine's busy time
    (/proc/stat) minus this process's own CPU time (all its threads, OpenMP spinners included)."""

    @staticmethod
    def _snap() -> tuple[float, float, float]:
        import resource

        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), busy, ru.ru_utime + ru.ru_stime

    def __enter__(self) -> "Load":
        self.t0, self.b0, self.o0 = self._snap()
        return self

    def __exit__(self, *exc) -> None:
        t1, b1, o1 = self._snap()
        self.seconds = t1 - self.t0
        self.foreign = max(0.0, ((b1 - self.b0) - (o1 - self.o0)) / max(self.seconds, 1e-9))


def timed_samples(fn, want: int, max_samples: int) -> dict:
    """Runs fn() until `want` samples ran on a quiet machine (or max_samples ran at all).
    fn returns its own timing (seconds or a tuple whose [0] is seconds)."""
    samples, foreign = [], []
    while len(samples) < max_samples:
        with Load() as ld:
            r = fn()
        samples.append(r)
        foreign.append(ld.foreign)
        if sum(1 for x in foreign if x < QUIET_CORES) >= want:
            break
    quiet = [s for s, x in zip(samples, foreign) if x < QUIET_CORES]
    # Foreign load only ever slows a sample down: the quiet ones, however few, are the better estimate.
    return {"samples": samples, "foreign": foreign, "quiet": quiet, "use": quiet if quiet else samples, "is_quiet": len(quiet) >= want}


def median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


# --------------------------------------------------------------------------------------
# build description
# --------------------------------------------------------------------------------------


def cmd_info(_args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    cfg = torch.__config__.show()
    parts = ["PyPI"]
    if "BLAS_INFO=mkl" in cfg or "Math Kernel Library" in cfg:
        mkl = ""
        for line in cfg.splitlines():
            if "Math Kernel Library Version" in line:
                mkl = " " + line.split("Version")[1].split("-")[0].strip()
        parts.append(f"MKL{mkl}")
    else:
        for tok in cfg.replace(",", " ").split():
            if tok.startswith("BLAS_INFO="):
                parts.append(tok.split("=", 1)[1])
    for line in cfg.splitlines():
        if "MKL-DNN v" in line or "oneDNN v" in line:
            parts.append("oneDNN " + line.split(" v", 1)[1].split()[0])
    cap = torch.backends.cpu.get_cpu_capability()
    parts.append(f"CPU {cap}")
    torch_build = f"torch {torch.__version__} ({', '.join(parts)})"

    blas = "unknown"
    try:
        import io
        import contextlib

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            np.show_config()
        text = buf.getvalue()
        name = version = ""
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("name:") and not name:
                name = s.split(":", 1)[1].strip()
            if s.startswith("version:") and not version and name:
                version = s.split(":", 1)[1].strip()
        if name:
            blas = f"{name} {version}".strip()
    except Exception as exc:  # pragma: no cover - diagnostics only
        blas = f"unknown ({exc})"
    return {
        "torch_build": torch_build,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "numpy_blas": blas,
        "python": sys.version.split()[0],
    }


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


def build_model(cfg: dict, weights: dict, seq_len: int):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    H = cfg["hidden_size"]
    I = cfg["intermediate_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg["num_key_value_heads"]
    hd = cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    V = cfg["vocab_size"]
    groups = nh // nkv

    class RMSNorm(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return F.rms_norm(x, (x.shape[-1],), self.weight, eps)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(H, nh * hd, bias=False)
            self.k_proj = nn.Linear(H, nkv * hd, bias=False)
            self.v_proj = nn.Linear(H, nkv * hd, bias=False)
            self.o_proj = nn.Linear(nh * hd, H, bias=False)

        def forward(self, x, cos, sin):
            B, L, _ = x.shape
            q = self.q_proj(x).view(B, L, nh, hd).transpose(1, 2)
            k = self.k_proj(x).view(B, L, nkv, hd).transpose(1, 2)
            v = self.v_proj(x).view(B, L, nkv, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            # Native GQA in SDPA (torch >= 2.5) beats repeat_interleave + SDPA on CPU.
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=groups > 1)
            return self.o_proj(o.transpose(1, 2).reshape(B, L, nh * hd))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = nn.Linear(H, I, bias=False)
            self.up_proj = nn.Linear(H, I, bias=False)
            self.down_proj = nn.Linear(I, H, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = RMSNorm(H)
            self.self_attn = Attention()
            self.post_attention_layernorm = RMSNorm(H)
            self.mlp = MLP()

        def forward(self, x, cos, sin):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(V, H)
            self.layers = nn.ModuleList(Block() for _ in range(cfg["num_hidden_layers"]))
            self.norm = RMSNorm(H)

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()
            self.lm_head = nn.Linear(H, V, bias=False)
            inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
            ang = torch.arange(seq_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
            ang = torch.cat([ang, ang], dim=-1)
            self.register_buffer("cos", ang.cos().float(), persistent=False)
            self.register_buffer("sin", ang.sin().float(), persistent=False)

        def forward(self, tokens):
            x = self.model.embed_tokens(tokens)
            for layer in self.model.layers:
                x = layer(x, self.cos, self.sin)
            return self.lm_head(self.model.norm(x))

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    with torch.device("cpu"):
        model = Llama()
    if cfg.get("tie_word_embeddings"):
        model.lm_head.weight = model.model.embed_tokens.weight
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [m for m in missing if not (cfg.get("tie_word_embeddings") and m == "lm_head.weight")]
    if missing or unexpected:
        raise SystemExit(f"weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def cmd_train(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(os.path.join(args.dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(args.dir, "batch.json")) as f:
        batch = json.load(f)
    adam = batch["adam"]
    tokens = torch.tensor(batch["tokens"], dtype=torch.long)  # [B, L]
    targets = torch.tensor(batch["targets"], dtype=torch.long).reshape(-1)
    weights = torch.tensor(batch["weights"], dtype=torch.float32).reshape(-1)
    model = build_model(cfg, load_file(os.path.join(args.dir, "model.safetensors")), tokens.shape[1])
    model.train()
    hp = dict(lr=adam["lr"], betas=(adam["beta1"], adam["beta2"]), eps=adam["eps"], weight_decay=adam["weight_decay"])
    # The fused CPU AdamW kernel (torch >= 2.4) is the fastest stock optimizer path (about 5x
    # the foreach path at 25M parameters on 2 cores); `--adamw foreach` selects the other.
    adamw = args.adamw
    try:
        opt = torch.optim.AdamW(model.parameters(), **hp, fused=True) if adamw == "fused" else None
    except (RuntimeError, TypeError):
        opt = None
        adamw = "foreach"
    if opt is None:
        opt = torch.optim.AdamW(model.parameters(), **hp, foreach=True, fused=False)

    def step() -> tuple[float, float, float, float]:
        t0 = time.perf_counter()
        logits = model(tokens)
        nll = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets, reduction="none")
        loss = (weights * nll).sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        return loss.item(), t1 - t0, t2 - t1, t3 - t2

    losses = []
    for _ in range(args.warmup):
        losses.append(step()[0])

    def timed():
        loss, a, b, c = step()
        losses.append(loss)
        return (a + b + c, a, b, c)

    t = timed_samples(timed, args.steps, args.max_steps)
    use = t["use"]
    return {
        "threads": torch.get_num_threads(),
        "adamw": adamw,
        "step_s": [s[0] for s in t["samples"]],
        "foreign_cores": t["foreign"],
        "quiet": t["is_quiet"],
        "median_step_s": median([s[0] for s in use]),
        "forward_s": median([s[1] for s in use]),
        "backward_s": median([s[2] for s in use]),
        "optim_s": median([s[3] for s in use]),
        "losses": losses,
        "params": sum(p.numel() for p in model.parameters()),
    }


# --------------------------------------------------------------------------------------
# GEMM anchor
# --------------------------------------------------------------------------------------


def openblas_core() -> str:
    """The kernel set OpenBLAS picked at load (e.g. SkylakeX, or Haswell when the bench forces
    the AVX2 kernels with OPENBLAS_CORETYPE=Haswell)."""
    import ctypes
    import glob

    import numpy as np

    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas*.so*"))):
        lib = ctypes.CDLL(path)  # already loaded by numpy: the same handle
        for sym in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return "unknown"


def cmd_gemm(args: argparse.Namespace) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    results = []
    for m, n, k, ta, tb in json.loads(args.shapes):
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        av = a.T if ta else a  # transposed views: numpy hands sgemm the transpose flag, no copy
        bv = b.T if tb else b
        c = np.empty((m, n), dtype=np.float32)
        np.matmul(av, bv, out=c)  # warm-up (thread start, page faults)
        t0 = time.perf_counter()
        np.matmul(av, bv, out=c)
        once = max(time.perf_counter() - t0, 1e-6)
        repeat = max(1, int(args.min_time / once))

        def trial():
            t0 = time.perf_counter()
            for _ in range(repeat):
                np.matmul(av, bv, out=c)
            return (time.perf_counter() - t0) / repeat

        t = timed_samples(trial, args.trials, 3 * args.trials)
        sec = median(t["use"])
        results.append({"m": m, "n": n, "k": k, "transA": bool(ta), "transB": bool(tb), "seconds": sec, "gflops": 2.0 * m * n * k / sec / 1e9, "quiet": t["is_quiet"], "foreign_cores": max(t["foreign"])})
    return {"results": results, "openblas_core": openblas_core()}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info")
    t = sub.add_parser("train")
    t.add_argument("--dir", required=True)
    t.add_argument("--threads", type=int, required=True)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--max-steps", type=int, default=15)
    t.add_argument("--adamw", choices=["fused", "foreach"], default="fused")
    g = sub.add_parser("gemm")
    g.add_argument("--threads", type=int, required=True)
    g.add_argument("--shapes", required=True)
    g.add_argument("--min-time", type=float, default=0.25)
    g.add_argument("--trials", type=int, default=5)
    args = p.parse_args()
    if hasattr(args, "threads"):
        pin_threads(args.threads)
    out = {"info": cmd_info, "train": cmd_train, "gemm": cmd_gemm}[args.cmd](args)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
