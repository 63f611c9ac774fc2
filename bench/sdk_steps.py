"""bench:sdk's Python side: the unmodified Fireworks training SDK driving a trainer through
temper's gateway. Reads JSON commands on stdin, one per line:

  {"base_url": T, "api_key": K, "base_model": M, "batch": [[tokens...], ...], "prompt_len": P}
  {"steps": N}      -> prints {"seconds": [one per step]}  (forward_backward + optim_step)

so bench/sdk.ts can interleave its rounds with the TypeScript SDK's.
"""
import json
import sys
import time

from fireworks.training.sdk import AdamParams, Datum, FiretitanServiceClient, ModelInput, TensorData


def main() -> None:
    setup = json.loads(sys.stdin.readline())
    service = FiretitanServiceClient(base_url=setup["base_url"], api_key=setup["api_key"])
    client = service.create_training_client(base_model=setup["base_model"], lora_rank=0)
    p = setup["prompt_len"]
    datums = []
    for tokens in setup["batch"]:
        n = len(tokens) - 1
        datums.append(
            Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": TensorData(data=tokens[1:], dtype="int64", shape=[n]),
                    "weights": TensorData(
                        data=[0.0 if j < p else 1.0 for j in range(n)], dtype="float32", shape=[n]
                    ),
                },
            )
        )
    adam = AdamParams(learning_rate=1e-5, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.0)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = json.loads(line)["steps"]
        seconds = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.forward_backward(datums, "cross_entropy").result()
            client.optim_step(adam, grad_accumulation_normalization="num_loss_tokens").result()
            seconds.append(time.perf_counter() - t0)
        print(json.dumps({"seconds": seconds}), flush=True)
    service.close()


if __name__ == "__main__":
    main()
