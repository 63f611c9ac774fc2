"""Renders conversations with transformers' AutoTokenizer from a local directory, offline.

stdin: {"dir": ..., "conversations": [{"messages": [...], "tools": [...]?, "add_generation_prompt": bool,
         "template_kwargs": {...}?}],
        "texts": [str]}
stdout: {"rendered": [[ids]], "templated": [str], "encoded": [[ids]], "decoded": [str],
         "vocab_size": int, "eos_token_id": int, "class": str}
"""
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from transformers import AutoTokenizer  # noqa: E402

req = json.load(sys.stdin)
tok = AutoTokenizer.from_pretrained(req["dir"], local_files_only=True)
out = {"rendered": [], "templated": [], "encoded": [], "decoded": []}
for conv in req["conversations"]:
    kwargs = {"add_generation_prompt": conv.get("add_generation_prompt", False)}
    if conv.get("tools"):
        kwargs["tools"] = conv["tools"]
    # extra template arguments (enable_thinking=False, ...), as apply_chat_template's **kwargs
    kwargs.update(conv.get("template_kwargs") or {})
    # the DeploymentSampler's call, exactly
    ids = tok.apply_chat_template(conv["messages"], tokenize=True, return_dict=False, **kwargs)
    out["rendered"].append(list(ids))
    out["templated"].append(tok.apply_chat_template(conv["messages"], tokenize=False, **kwargs))
for text in req.get("texts", []):
    ids = tok.encode(text, add_special_tokens=True)
    out["encoded"].append(ids)
    out["decoded"].append(tok.decode(ids))
out["vocab_size"] = len(tok)
out["eos_token_id"] = tok.eos_token_id
out["class"] = type(tok).__name__
json.dump(out, sys.stdout)
