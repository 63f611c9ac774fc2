"""Cross-checks temper's exports with transformers + PEFT (run by exports.test.ts).

Input: a JSON file with a list of cases {base_dir, adapter_dir, merged_dir, sequences:
[{tokens, targets}], tied_lm_head, resave_dir}. For each case: loads our HF base export with
AutoModelForCausalLM, our PEFT export on top with PeftModel.from_pretrained, and reports the
per-target logprobs, how far PEFT's loaded adapter is from our file, how far
merge_and_unload() is from our merged export, and our merged export's logprobs; saves the adapter again with PEFT's
save_pretrained into resave_dir.
Output: JSON on stdout, one result per case.
"""

import json
import sys

import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
import glob
import os


def logprobs(model, seq):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([seq["tokens"]]), use_cache=False).logits[0]
    lp = torch.log_softmax(logits.double(), -1)
    return lp.gather(-1, torch.tensor(seq["targets"])[:, None])[:, 0].tolist()


def load_dir(path):
    out = {}
    for f in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        out.update(load_file(f))
    return out


def run(case):
    seqs = case["sequences"]
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    base = AutoModelForCausalLM.from_pretrained(case["base_dir"], **kw).eval()
    res = {"base": [logprobs(base, s) for s in seqs]}
    peft_model = PeftModel.from_pretrained(base, case["adapter_dir"]).eval()
    ours = load_file(os.path.join(case["adapter_dir"], "adapter_model.safetensors"))
    # PEFT also lists lm_head's base layer when lm_head is a target (save_embedding_layers);
    # those are base weights, not adapter weights.
    loaded = {k: v for k, v in get_peft_model_state_dict(peft_model).items() if ".base_layer." not in k}
    res["adapter_keys_diff"] = sorted(set(loaded) ^ set(ours))[:5]
    res["adapter_max_diff"] = max(float((loaded[k] - ours[k]).abs().max()) for k in ours if k in loaded)
    res["scaling"] = sorted({float(m.scaling["default"]) for m in peft_model.modules() if hasattr(m, "scaling") and isinstance(m.scaling, dict) and "default" in m.scaling})
    res["peft"] = [logprobs(peft_model, s) for s in seqs]
    # PEFT's own save, for loadAdapter to read back.
    peft_model.save_pretrained(case["resave_dir"])
    merged_ref = peft_model.merge_and_unload().state_dict()
    mine = load_dir(case["merged_dir"])
    skip = {"lm_head.weight", "model.embed_tokens.weight"} if case["tied_lm_head"] else set()
    diffs = [float((merged_ref[k] - v).abs().max()) for k, v in mine.items() if k not in skip]
    res["merge_keys_missing"] = sorted(set(k for k in merged_ref if k not in mine and k not in skip and not (k == "lm_head.weight" and base.config.tie_word_embeddings)))
    res["merge_max_diff"] = max(diffs)
    merged = AutoModelForCausalLM.from_pretrained(case["merged_dir"], **kw).eval()
    res["merged"] = [logprobs(merged, s) for s in seqs]
    res["merged_tied"] = bool(merged.config.tie_word_embeddings)
    return res


def main():
    cases = json.load(open(sys.argv[1]))
    print(json.dumps([run(c) for c in cases]))


if __name__ == "__main__":
    main()
