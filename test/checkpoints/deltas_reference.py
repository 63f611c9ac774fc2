"""The reference side of test/checkpoints/deltas.reference.test.ts.

Runs the reference platform's published arc_v2 implementation (PyPI
`fireworks-delta-compression`, installed by scripts/setup.sh from
scripts/reference/requirements.txt) on real safetensors files, so the TypeScript codec is
checked against it in both directions.

  python deltas_reference.py make WORKDIR BASE.safetensors
      writes WORKDIR/{variant}/{prev,next}.safetensors for variants f32 and bf16 (the
      bundled model's weights, then one small AdamW-like update), plus extras (F16, I64,
      empty) in a third variant "mixed", and WORKDIR/{variant}/py_delta.safetensors made by
      the reference encoder.
  python deltas_reference.py apply WORKDIR
      applies WORKDIR/{variant}/ts_delta.safetensors (made by our encoder) to prev with the
      reference's in-place decoder and its tensor-dict decoder; prints one JSON line with
      the results.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from fireworks_delta_compression import (
    delta_compress_files_to_file,
    delta_decompress_dict_from_file,
    delta_decompress_inplace,
)
from safetensors.torch import load_file, save_file

VARIANTS = ["f32", "bf16", "mixed"]


def adamw_like(t: torch.Tensor, gen: torch.Generator, lr: float = 1e-5) -> torch.Tensor:
    # AdamW's first step moves every weight by about lr (the update is m/sqrt(v) = sign(g)).
    g = torch.randn(t.shape, generator=gen)
    return (t.float() - lr * torch.sign(g)).to(t.dtype)


def make(work: Path, base: Path) -> None:
    gen = torch.Generator().manual_seed(1234)
    weights = load_file(str(base))
    variants = {
        "f32": {k: v.float() for k, v in weights.items()},
        "bf16": {k: v.to(torch.bfloat16) for k, v in weights.items()},
        "mixed": {
            "a.f16": torch.randn(33, 7, generator=gen).to(torch.float16),
            "b.bf16": torch.randn(5, 3, generator=gen).to(torch.bfloat16),
            "c.f32": torch.randn(1001, generator=gen),
            "d.i64": torch.arange(17, dtype=torch.int64),
            "e.empty": torch.zeros(0, 4),
            "f.f64": torch.randn(3, 3, generator=gen, dtype=torch.float64),
        },
    }
    for name, prev in variants.items():
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        nxt = {
            k: (adamw_like(v, gen) if v.is_floating_point() and v.numel() else v + 1 if v.numel() else v)
            for k, v in prev.items()
        }
        save_file(prev, str(d / "prev.safetensors"), metadata={"format": "pt"})
        save_file(nxt, str(d / "next.safetensors"), metadata={"format": "pt"})
        delta_compress_files_to_file(
            src=str(d / "prev.safetensors"),
            dst=str(d / "next.safetensors"),
            diff_file=str(d / "py_delta.safetensors"),
            compression_format="arc_v2",
        )


def apply(work: Path) -> None:
    out = {}
    for name in VARIANTS:
        d = work / name
        target = d / "py_applied.safetensors"
        shutil.copyfile(d / "prev.safetensors", target)
        delta_decompress_inplace(
            base_path=str(target), diff_path=str(d / "ts_delta.safetensors"), compression_format="arc_v2"
        )
        inplace_equal = target.read_bytes() == (d / "next.safetensors").read_bytes()
        restored = delta_decompress_dict_from_file(
            src=load_file(str(d / "prev.safetensors")),
            diff_file=str(d / "ts_delta.safetensors"),
            compression_format="arc_v2",
        )
        expected = load_file(str(d / "next.safetensors"))
        dict_equal = sorted(restored) == sorted(expected) and all(
            restored[k].dtype == expected[k].dtype
            and restored[k].shape == expected[k].shape
            and torch.equal(restored[k].view(torch.uint8), expected[k].view(torch.uint8))
            if restored[k].numel()
            else restored[k].shape == expected[k].shape
            for k in expected
        )
        out[name] = {"inplace_equal": inplace_equal, "dict_equal": dict_equal}
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, work = sys.argv[1], Path(sys.argv[2])
    if cmd == "make":
        make(work, Path(sys.argv[3]))
    elif cmd == "apply":
        apply(work)
    else:
        raise SystemExit(f"unknown command {cmd}")
