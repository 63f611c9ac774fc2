"""The plain `tinker` client's basic loop against a temper trainer: its gateway base URL is the
Tinker base URL, and the key is the temper key behind the `tml-` prefix the client insists on.
The trainer itself is created with the Fireworks SDK's TrainerJobManager (tinker has no call
for that). Prints one JSON line.
"""
import tinker
from tinker import types

from common import API_KEY, BASE_MODEL, BASE_URL, report, tokenizer
from fireworks.training.sdk import TrainerJobConfig, TrainerJobManager


def datum(text: str) -> types.Datum:
    tokens = tokenizer.encode(text)
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": types.TensorData(data=tokens[1:], dtype="int64", shape=[len(tokens) - 1]),
        },
    )


def main() -> None:
    mgr = TrainerJobManager(api_key=API_KEY, base_url=BASE_URL)
    endpoint = mgr.create_and_wait(
        TrainerJobConfig(base_model=BASE_MODEL, lora_rank=0, display_name="plain-tinker"),
        poll_interval_s=0.5,
        timeout_s=300,
    )
    try:
        service = tinker.ServiceClient(base_url=endpoint.base_url, api_key="tml-" + API_KEY)
        capabilities = service.get_server_capabilities()
        training_client = service.create_lora_training_client(base_model=BASE_MODEL, rank=8).result()
        data = [datum("The capital of France is Paris."), datum("Sure! Anything else?")]
        losses = []
        for _ in range(4):
            fwdbwd = training_client.forward_backward(data, "cross_entropy")
            optim = training_client.optim_step(types.AdamParams(learning_rate=1e-3))
            result = fwdbwd.result()
            optim.result()
            losses.append(result.metrics["loss:sum"])
        forward = training_client.forward(data, "cross_entropy").result()
        saved = training_client.save_state("tinker-step-4").result()
        info = training_client.get_info()
        report(
            losses=losses,
            logprob_lengths=[len(o["logprobs"].data) for o in forward.loss_fn_outputs],
            saved_path=saved.path,
            is_lora=info.is_lora,
            lora_rank=info.lora_rank,
            models=[m.model_name for m in capabilities.supported_models],
        )
    finally:
        mgr.delete(endpoint.job_id)


if __name__ == "__main__":
    main()
