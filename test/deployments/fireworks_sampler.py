"""The Fireworks SDK's DeploymentSampler (fireworks-ai 1.2.30, unmodified) against a deployment's
gateway: token-in streaming completions, raw_output ids, per-token logprobs, perf metrics for
its adaptive concurrency controller. Usage: python fireworks_sampler.py GATEWAY_URL DEPLOYMENT
Prints one JSON object with what the sampler returned."""

import asyncio
import json
import sys

from fireworks.training.sdk.concurrency import AdaptiveConcurrencyController
from fireworks.training.sdk.sampling import DeploymentSampler

URL, DEPLOYMENT = sys.argv[1], sys.argv[2]
PROMPT = list(b"The cat sat on the mat. ")


async def main():
    ctl = AdaptiveConcurrencyController()
    sampler = DeploymentSampler(inference_url=URL, model=DEPLOYMENT, api_key="unused", concurrency_controller=ctl)
    out = {}
    done = await sampler.sample_with_prompt_tokens(
        PROMPT, n=3, max_tokens=12, temperature=1.0, logprobs=True, top_logprobs=2, stop=["."]
    )
    out["plain"] = [
        {
            "full_tokens": c.full_tokens,
            "prompt_len": c.prompt_len,
            "completion_len": c.completion_len,
            "finish_reason": c.finish_reason,
            "text": c.text,
            "inference_logprobs": c.inference_logprobs,
            "sampling_logprobs": c.sampling_logprobs,
            "topk_ids": c.inference_topk_token_ids,
        }
        for c in done
    ]
    greedy = await sampler.sample_with_prompt_tokens(PROMPT, n=1, max_tokens=6, temperature=0.0, logprobs=True)
    out["greedy"] = {"sampling_logprobs": greedy[0].sampling_logprobs, "inference_logprobs": greedy[0].inference_logprobs}
    echo = await sampler.sample_with_prompt_tokens(PROMPT, n=1, max_tokens=4, temperature=1.0, logprobs=True, echo=True)
    out["echo"] = {
        "completion_len": echo[0].completion_len,
        "logprobs_echoed": echo[0].logprobs_echoed,
        "echoed_prompt_logprob_count": echo[0].echoed_prompt_logprob_count,
        "inference_logprobs": echo[0].inference_logprobs,
        "sampling_logprobs": echo[0].sampling_logprobs,
        "full_tokens": echo[0].full_tokens,
    }
    metrics = sampler.drain_metrics()
    out["metrics"] = [
        {"prefill_queue_duration": m.prefill_queue_duration, "server_ttft": m.server_ttft,
         "num_concurrent_requests": m.num_concurrent_requests, "completion_tokens": m.completion_tokens,
         "prompt_tokens": m.prompt_tokens}
        for m in metrics
    ]
    step = ctl.step_completed()
    out["controller"] = {k: v for k, v in step.items() if isinstance(v, (int, float, type(None)))}
    print(json.dumps(out))


asyncio.run(main())
