"""bench:sdk's sampler half, Python side: the unmodified Fireworks SDK's DeploymentSampler
sampling a temper deployment through the control-plane port (streamed token-in completions,
the SDK's own request shape). Reads JSON commands on stdin, one per line:

  {"inference_url": U, "api_key": K, "model": M, "prompt": [ids], "concurrency": C}
  {"requests": N, "max_tokens": T}  -> prints {"seconds": s, "tokens": generated}

so bench/sdk-sampler.ts can interleave its rounds with the TypeScript sampler's.
"""
import asyncio
import json
import sys
import time

from fireworks.training.sdk import DeploymentSampler, FixedConcurrencyController


async def main() -> None:
    setup = json.loads(sys.stdin.readline())
    sampler = DeploymentSampler(
        inference_url=setup["inference_url"],
        model=setup["model"],
        api_key=setup["api_key"],
        concurrency_controller=FixedConcurrencyController(setup["concurrency"]),
    )
    prompt = setup["prompt"]
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        t0 = time.perf_counter()
        done = await sampler.sample_with_prompt_tokens(
            prompt,
            n=cmd["requests"],
            max_tokens=cmd["max_tokens"],
            temperature=1.0,
            logprobs=True,
            ignore_eos=True,
        )
        seconds = time.perf_counter() - t0
        print(json.dumps({"seconds": seconds, "tokens": sum(c.completion_len for c in done)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
