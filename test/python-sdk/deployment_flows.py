"""The Fireworks training SDK's deployment side against `temper up`, one flow per command-line
name, written as the documentation's examples (seed lines ~8306-9500: DeploymentManager,
WeightSyncer, DeploymentSampler, the SDK-managed service, the REST client) with only the base
URL, the API key, the base model and the tokenizer changed. The tokenizer is the bundled
model's own HF tokenizer directory, loaded offline with transformers. Each flow prints one
JSON line of what it saw; test/python-sdk/deployment.test.ts asserts on it.

  python deployment_flows.py weight_sync|managed|rest_listing|routing
"""
import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
from transformers import AutoTokenizer

from common import API_KEY, BASE_MODEL, BASE_URL, max_abs_diff, report
from fireworks.training.sdk import (
    AdamParams,
    Datum,
    DeploymentConfig,
    DeploymentManager,
    DeploymentSampler,
    FiretitanServiceClient,
    FixedConcurrencyController,
    ModelInput,
    TensorData,
    TrainerJobConfig,
    TrainerJobManager,
    WeightSyncer,
)

TOKENIZER_DIR = str(Path(__file__).resolve().parents[2] / "catalog/accounts/temper/models/byte-lm-3m")
SHAPE = "accounts/temper/trainingShapes/byte-lm-3m-full"
POLL = dict(poll_interval_s=0.5, timeout_s=300)
tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def train_step(client, lr: float = 2e-3) -> float:
    """One SFT step on a short answer (the rendering is the tokenizer's chat template)."""
    conversation = QUESTION + [{"role": "assistant", "content": "Sure! The capital of France is Paris."}]
    full = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False)
    prompt_len = len(tokenizer.apply_chat_template(QUESTION, tokenize=True, add_generation_prompt=True, return_dict=False))
    n = len(full) - 1
    weights = [0.0 if i + 1 < prompt_len else 1.0 for i in range(n)]
    datum = Datum(
        model_input=ModelInput.from_ints(full[:-1]),
        loss_fn_inputs={
            "target_tokens": TensorData(data=full[1:], dtype="int64", shape=[n]),
            "weights": TensorData(data=weights, dtype="float32", shape=[n]),
        },
    )
    out = client.forward_backward([datum], "cross_entropy").result()
    client.optim_step(AdamParams(learning_rate=lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)).result()
    return float(out.metrics["loss:sum"])


def trainer_logprobs(client, full_tokens: list[int], prompt_len: int) -> list[float]:
    """The trainer's logprob of every completion token (the positions after the prompt)."""
    n = len(full_tokens) - 1
    datum = Datum(
        model_input=ModelInput.from_ints(full_tokens[:-1]),
        loss_fn_inputs={"target_tokens": TensorData(data=full_tokens[1:], dtype="int64", shape=[n])},
    )
    out = client.forward([datum], "cross_entropy").result()
    return list(out.loss_fn_outputs[0]["logprobs"].data)[prompt_len - 1 :]


def sample(sampler: DeploymentSampler, n: int = 3) -> list:
    return asyncio.run(
        sampler.sample_with_tokens(messages=QUESTION, n=n, max_tokens=12, temperature=1.0, logprobs=True)
    )


def compare(client, completions) -> float:
    """Largest |inference logprob - trainer logprob| over every sampled token."""
    worst = 0.0
    for c in completions:
        assert c.inference_logprobs is not None and len(c.inference_logprobs) == c.completion_len
        ours = trainer_logprobs(client, c.full_tokens, c.prompt_len)
        worst = max(worst, max_abs_diff(c.inference_logprobs, ours))
    return worst


# ---- flows ----


def weight_sync():
    """DeploymentManager + WeightSyncer (base, then a delta) + DeploymentSampler, by hand."""
    mgr = TrainerJobManager(api_key=API_KEY, base_url=BASE_URL)
    profile = mgr.resolve_training_profile(SHAPE)
    endpoint = mgr.create_and_wait(TrainerJobConfig(base_model=BASE_MODEL, lora_rank=0, learning_rate=1e-4), **POLL)
    service = FiretitanServiceClient(base_url=endpoint.base_url, api_key=API_KEY)
    client = service.create_training_client(base_model=BASE_MODEL, lora_rank=0)

    deploy_mgr = DeploymentManager(api_key=API_KEY, base_url=BASE_URL)
    deployment_id = "sdk-weight-sync"
    info = deploy_mgr.create_or_get(
        DeploymentConfig.from_training_profile(
            deployment_id=deployment_id,
            base_model=BASE_MODEL,
            profile=profile,
            min_replica_count=1,
            max_replica_count=1,
            hot_load_trainer_job=endpoint.job_name,
            for_training=True,
        )
    )
    ready = deploy_mgr.wait_for_ready(deployment_id, timeout_s=120, poll_interval_s=1)
    syncer = WeightSyncer(
        policy_client=client,
        deploy_mgr=deploy_mgr,
        deployment_id=deployment_id,
        base_model=BASE_MODEL,
        hotload_timeout=120,
        warmup_max_retries=3,
    )
    sampler = DeploymentSampler(
        inference_url=deploy_mgr.inference_url,
        model=ready.inference_model,
        api_key=API_KEY,
        tokenizer=tokenizer,
        concurrency_controller=FixedConcurrencyController(4),
    )

    losses = [train_step(client)]
    first = syncer.save_and_hotload("sync-1")
    s1 = sample(sampler)
    diff1 = compare(client, s1)
    before = trainer_logprobs(client, s1[0].full_tokens, s1[0].prompt_len)

    losses.append(train_step(client))
    # how far the step moved the trainer: a deployment that missed the delta would be this far off
    moved = max_abs_diff(before, trainer_logprobs(client, s1[0].full_tokens, s1[0].prompt_len))
    second = syncer.save_and_hotload("sync-2")
    s2 = sample(sampler)
    diff2 = compare(client, s2)
    status = deploy_mgr.hotload_check_status(deployment_id, BASE_MODEL)
    rows = [
        (r["name"].rsplit("/", 1)[-1], r.get("checkpointType"))
        for r in mgr.list_checkpoints(endpoint.job_id)
        if "sync-" in r["name"]
    ]
    deploy_mgr.scale_to_zero(deployment_id)
    zero = deploy_mgr.get(deployment_id)
    deploy_mgr.delete(deployment_id)
    gone = deploy_mgr.get(deployment_id)
    mgr.delete(endpoint.job_id)
    report(
        created=dict(
            name=info.name,
            state=info.state,
            hot_load_trainer_job=info.hot_load_trainer_job,
            deployment_shape=info.deployment_shape_version,
            bucket=info.hot_load_bucket_url,
            inference_model=info.inference_model,
        ),
        job_name=endpoint.job_name,
        snapshots=[first, second],
        moved=moved,
        served=status["replicas"][0]["current_snapshot_identity"],
        ledger_rows=rows,
        losses=losses,
        diff_base=diff1,
        diff_delta=diff2,
        completions=[dict(text=c.text, finish=c.finish_reason, n=c.completion_len) for c in s1 + s2],
        zero=dict(state=zero.state) if zero else None,
        gone=gone is None,
    )


def managed():
    """The SDK-managed service with a deployment: create_deployment_sampler(model_path=...)."""
    service = FiretitanServiceClient.from_firetitan_config(
        api_key=API_KEY,
        base_url=BASE_URL,
        base_model=BASE_MODEL,
        tokenizer_model=TOKENIZER_DIR,
        lora_rank=0,
        training_shape_id=SHAPE,
        deployment_id="sdk-managed",
        learning_rate=1e-4,
        replica_count=1,
        cleanup_trainer_on_close=True,
        cleanup_deployment_on_close="scale_to_zero",
    )
    try:
        client = service.create_training_client(base_model=BASE_MODEL, lora_rank=0)
        train_step(client)
        saved = client.save_weights_for_sampler("managed-1").result()
        sampler = service.create_deployment_sampler(model_path=saved.path, tokenizer=tokenizer)
        diff1 = compare(client, sample(sampler, n=2))
        train_step(client)
        saved2 = client.save_weights_for_sampler("managed-2").result()
        sampler = service.create_deployment_sampler(model_path=saved2.path, tokenizer=tokenizer)
        diff2 = compare(client, sample(sampler, n=2))
        deployment_id = service.deployment_id
        trainer_job_id = service.trainer_job_id
    finally:
        service.close()
    deploy_mgr = DeploymentManager(api_key=API_KEY, base_url=BASE_URL)
    after = deploy_mgr._get_deployment(deployment_id)
    report(
        deployment_id=deployment_id,
        trainer_job_id=trainer_job_id,
        paths=[saved.path, saved2.path],
        diff_base=diff1,
        diff_delta=diff2,
        after_close=dict(
            state=after["state"],
            replicas=after["replicaCount"],
            min=after["minReplicaCount"],
            max=after["maxReplicaCount"],
            for_training=after["forTraining"],
            deployment_shape=after.get("deploymentShape"),
        ),
    )


def rest_listing():
    """The plain REST client: models and datasets, paged (FIREWORKS_BASE_URL, Bearer key)."""
    from fireworks import Fireworks

    account = os.environ["TEMPER_ACCOUNT"]
    client = Fireworks(api_key=API_KEY, account_id=account)
    created = client.datasets.create(dataset_id="py-listing", dataset={"displayName": "from python", "userUploaded": {}})
    rows = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 3
    client.datasets.upload(dataset_id="py-listing", file=("data.jsonl", rows, "application/jsonl"))
    datasets = [d.name for d in client.datasets.list()]
    one = client.datasets.get(dataset_id="py-listing")
    catalog = [m.name for m in client.models.list(account_id="temper", page_size=1)]
    catalog_datasets = [d.name for d in client.datasets.list(account_id="temper")]
    own_models = [m.name for m in client.models.list()]
    try:
        client.models.get(model_id="nope")
        missing = None
    except Exception as e:  # fireworks.NotFoundError
        missing = dict(type=type(e).__name__, status=getattr(e, "status_code", None), message=str(e))
    report(
        created=created.name,
        datasets=datasets,
        example_count=one.example_count,
        state=one.state,
        catalog=catalog,
        catalog_datasets=catalog_datasets,
        own_models=own_models,
        missing=missing,
    )


def routing():
    """Hot-load and inference routed by header on the control-plane port; another account's
    deployment refused. The deployment is made by the vitest side (its id in argv)."""
    deployment = sys.argv[2]
    other_key = os.environ["TEMPER_OTHER_KEY"]
    deploy_mgr = DeploymentManager(api_key=API_KEY, base_url=BASE_URL)
    status = deploy_mgr.hotload_check_status(deployment.rsplit("/", 1)[-1], BASE_MODEL)
    # a snapshot the bucket does not hold: the SDK raises with the server's message
    try:
        deploy_mgr.hotload(deployment.rsplit("/", 1)[-1], BASE_MODEL, "never-saved-0000")
        missing = None
    except httpx.HTTPStatusError as e:
        missing = dict(status=e.response.status_code, message=e.response.json()["error"]["message"])
    headers = {
        "Authorization": f"Bearer {other_key}",
        "fireworks-model": BASE_MODEL,
        "fireworks-deployment": deployment,
    }
    foreign_status = httpx.get(f"{BASE_URL}/hot_load/v1/models/hot_load", headers=headers)
    foreign_sample = httpx.post(
        f"{BASE_URL}/inference/v1/completions",
        headers={"Authorization": f"Bearer {other_key}"},
        json={"model": deployment, "prompt": [1, 2], "max_tokens": 2},
    )
    # the other account's own DeploymentManager resolves its own account: not found either
    other_mgr = DeploymentManager(api_key=other_key, base_url=BASE_URL)
    report(
        replicas=len(status["replicas"]),
        stage=status["replicas"][0]["loading_state"]["stage"],
        missing=missing,
        foreign_status=dict(status=foreign_status.status_code, message=foreign_status.json()["error"]["message"]),
        foreign_sample=dict(status=foreign_sample.status_code, message=foreign_sample.json()["error"]["message"]),
        other_account=other_mgr.account_id,
        other_sees=other_mgr.get(deployment.rsplit("/", 1)[-1]),
    )


if __name__ == "__main__":
    started = time.time()
    {"weight_sync": weight_sync, "managed": managed, "rest_listing": rest_listing, "routing": routing}[sys.argv[1]]()
    print(f"done in {time.time() - started:.1f}s", file=sys.stderr)
