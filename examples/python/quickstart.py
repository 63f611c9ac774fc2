"""The Training API quickstart (fine-tuning/training-api/quickstart in the documentation) as it
runs against `temper up`: the documentation's code with the base URL, the API key, the base
model, the training shape and the tokenizer changed, and `tinker` / `tinker_cookbook` (not SDK
dependencies) replaced by the SDK's own `fireworks.training.tinker` types.

    FIREWORKS_BASE_URL=http://127.0.0.1:8080 FIREWORKS_API_KEY=... python examples/python/quickstart.py
"""
import os
from pathlib import Path

import torch
import transformers

from fireworks.training import tinker
from fireworks.training.sdk import FiretitanServiceClient

# Step 1: create the managed service
api_key = os.environ["FIREWORKS_API_KEY"]
base_url = os.environ.get("FIREWORKS_BASE_URL", "http://127.0.0.1:8080")
base_model = "accounts/temper/models/byte-lm-3m"
shape_id = "accounts/temper/trainingShapes/byte-lm-3m-full"
# the bundled model's HF tokenizer directory (loads offline)
tokenizer_dir = str(Path(__file__).resolve().parents[2] / "catalog/accounts/temper/models/byte-lm-3m")

service = FiretitanServiceClient.from_firetitan_config(
    api_key=api_key,
    base_url=base_url,
    base_model=base_model,
    tokenizer_model=tokenizer_dir,
    lora_rank=0,
    training_shape_id=shape_id,
    learning_rate=1e-5,
    create_deployment=False,
    cleanup_trainer_on_close=True,
)

# Step 2: create the training client
training_client = service.create_training_client(
    base_model=base_model,
    lora_rank=0,
)
print(f"Trainer job: {service.trainer_job_id}")

# Step 3: build training data
tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
conversation = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]
full_text = tokenizer.apply_chat_template(conversation, tokenize=False)
full_tokens = tokenizer.encode(full_text)
prompt_only = tokenizer.apply_chat_template(conversation[:1], tokenize=False)
prompt_len = len(tokenizer.encode(prompt_only))
weights = torch.zeros(len(full_tokens), dtype=torch.float32)
weights[prompt_len:] = 1.0
# what tinker_cookbook's datum_from_model_input_weights builds: inputs and targets shifted by one
n = len(full_tokens) - 1
datum = tinker.Datum(
    model_input=tinker.ModelInput.from_ints(full_tokens[:-1]),
    loss_fn_inputs={
        "target_tokens": tinker.TensorData(data=full_tokens[1:], dtype="int64", shape=[n]),
        "weights": tinker.TensorData(data=weights[1:].tolist(), dtype="float32", shape=[n]),
    },
)


# Step 4: write a loss function and train
def sft_loss(data, logprobs_list):
    total_loss = torch.tensor(0.0)
    n_tokens = 0
    for i, logprobs in enumerate(logprobs_list):
        weights = torch.tensor(
            data[i].loss_fn_inputs["weights"].data, dtype=torch.float32,
        )
        min_len = min(len(logprobs), len(weights))
        total_loss = total_loss - torch.dot(
            logprobs[:min_len].float(), weights[:min_len],
        )
        n_tokens += weights[:min_len].sum().item()
    loss = total_loss / max(n_tokens, 1)
    return loss, {"sft_loss": loss.item(), "n_tokens": n_tokens}


batch = [datum]
for step in range(10):
    result = training_client.forward_backward_custom(batch, sft_loss).result()
    training_client.optim_step(
        tinker.AdamParams(learning_rate=1e-5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    ).result()
    print(f"Step {step}: {result.metrics}")

# Step 5: save and promote
saved = training_client.save_weights_for_sampler(
    "sft-final",
    checkpoint_type="base",
).result()
print(f"Checkpoint saved: {saved.path}")
# Promote the checkpoint to a deployable model. `list_checkpoints` returns the full
# 4-segment checkpoint resource name that promotion expects.
entry = next(
    row for row in service.list_checkpoints(service.trainer_job_id)
    if row["name"].endswith(f"/checkpoints/{saved.path}")
)
model = service.promote_checkpoint(
    name=entry["name"],
    output_model_id="my-sft-model",
    base_model=base_model,
)
print(f"Model: {model['name']} ({model.get('state')})")
service.close()
