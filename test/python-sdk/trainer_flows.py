"""The Fireworks training SDK's trainer flows against `temper up`, one per command-line name,
written as the documentation's examples (seed lines ~7100-9860) with only the base URL, the API
key, the base model and the tokenizer changed. Each flow prints one JSON line of what it saw;
test/python-sdk/trainer.test.ts asserts on it.

  python trainer_flows.py lifecycle|builtin_losses|custom_dpo|save_load|reconnect|errors
"""
import sys
import time

import torch
import torch.nn.functional as F

from common import API_KEY, BASE_MODEL, BASE_URL, max_abs_diff, report, tokenizer
from fireworks.training.sdk import (
    AdamParams,
    Datum,
    FiretitanServiceClient,
    ModelInput,
    TensorData,
    TrainerJobConfig,
    TrainerJobManager,
)

POLL = dict(poll_interval_s=0.5, timeout_s=300)


def manager() -> TrainerJobManager:
    return TrainerJobManager(api_key=API_KEY, base_url=BASE_URL)


def target_datum(text: str, weights: list[float] | None = None) -> Datum:
    """The documentation's target-token datum ("Using tinker.Datum directly")."""
    tokens = tokenizer.encode(text)
    n = len(tokens) - 1
    inputs = {"target_tokens": TensorData(data=tokens[1:], dtype="int64", shape=[n])}
    if weights is not None:
        inputs["weights"] = TensorData(data=weights, dtype="float32", shape=[n])
    return Datum(model_input=ModelInput.from_ints(tokens[:-1]), loss_fn_inputs=inputs)


def logprobs(client, datums) -> list[list[float]]:
    out = client.forward(datums, "cross_entropy").result()
    return [list(o["logprobs"].data) for o in out.loss_fn_outputs]


def trainer(mgr, **config):
    endpoint = mgr.create_and_wait(
        TrainerJobConfig(base_model=BASE_MODEL, learning_rate=1e-4, **config), **POLL
    )
    service = FiretitanServiceClient(base_url=endpoint.base_url, api_key=API_KEY)
    return endpoint, service


# ---- flows ----


def lifecycle():
    mgr = manager()
    profile = mgr.resolve_training_profile("accounts/temper/trainingShapes/byte-lm-3m-full")
    created = mgr.create(
        TrainerJobConfig(
            base_model=BASE_MODEL,
            lora_rank=0,
            learning_rate=1e-5,
            display_name="sdk-lifecycle",
            inactivity_timeout="1800s",
        )
    )
    endpoint = mgr.wait_for_ready(created.job_id, **POLL)
    job = mgr.get(endpoint.job_id)
    existing = mgr.wait_for_existing(endpoint.job_id, **POLL)
    mgr.delete(endpoint.job_id)
    deadline = time.time() + 60
    while mgr.try_get(endpoint.job_id) is not None and time.time() < deadline:
        time.sleep(0.5)
    report(
        job_id=created.job_id,
        job_name=created.job_name,
        base_url=endpoint.base_url,
        existing_base_url=existing.base_url,
        state=job["state"],
        inactivity_timeout=job.get("inactivityTimeout"),
        profile_trainer_mode=getattr(profile, "trainer_mode", None),
        profile_deployment_shape_version=getattr(profile, "deployment_shape_version", None),
        profile_max_context_length=getattr(profile, "max_supported_context_length", None),
        after_delete=mgr.try_get(endpoint.job_id),
    )


def builtin_losses():
    mgr = manager()
    endpoint, service = trainer(mgr, lora_rank=0)
    try:
        client = service.create_training_client(base_model=BASE_MODEL, lora_rank=0)
        capabilities = service.get_server_capabilities()
        datums = [target_datum("The capital of France is Paris."), target_datum("2+3=5")]
        adam = AdamParams(learning_rate=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.0)
        losses = []
        for _ in range(4):
            fb = client.forward_backward(datums, "cross_entropy").result()
            losses.append(fb.metrics["loss:sum"])
            client.optim_step(adam, grad_accumulation_normalization="num_loss_tokens").result()
        # Policy-gradient losses read the sampler's logprobs and advantages.
        rl_metrics = {}
        old = logprobs(client, datums)
        for loss_fn, config in [
            ("importance_sampling", None),
            ("ppo", {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}),
            ("cispo", None),
            ("dro", {"beta": 0.05}),
        ]:
            rl = []
            for d, lp, adv in zip(datums, old, [1.0, -1.0]):
                rl.append(
                    Datum(
                        model_input=d.model_input,
                        loss_fn_inputs={
                            "target_tokens": d.loss_fn_inputs["target_tokens"],
                            "logprobs": TensorData(data=lp, dtype="float32", shape=[len(lp)]),
                            "advantages": TensorData(
                                data=[adv] * len(lp), dtype="float32", shape=[len(lp)]
                            ),
                        },
                    )
                )
            out = client.forward_backward(rl, loss_fn, config).result()
            rl_metrics[loss_fn] = sorted(out.metrics)
        step = client.optim_step(adam, grad_accumulation_normalization="num_sequences").result()
        report(
            losses=losses,
            rl_metrics=rl_metrics,
            optim_metrics=sorted((step.metrics or {}).keys()),
            capabilities=[m.model_name for m in capabilities.supported_models],
        )
    finally:
        mgr.delete(endpoint.job_id)


def build_dpo_datums(chosen_tokens, rejected_tokens, prompt_len, max_seq_len=4096):
    """Weight-based datums (the cookbook's helper): weights 0 on the prompt, 1 on the answer."""

    def one(tokens):
        tokens = tokens[:max_seq_len]
        n = len(tokens) - 1
        weights = [0.0 if i + 1 < prompt_len else 1.0 for i in range(n)]
        return Datum(
            model_input=ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={
                "target_tokens": TensorData(data=tokens[1:], dtype="int64", shape=[n]),
                "weights": TensorData(data=weights, dtype="float32", shape=[n]),
            },
        )

    return one(chosen_tokens), one(rejected_tokens)


def make_dpo_loss_fn(ref_chosen_logprobs, ref_rejected_logprobs, beta=0.1):
    ref_chosen_t = torch.tensor(ref_chosen_logprobs, dtype=torch.float32)
    ref_rejected_t = torch.tensor(ref_rejected_logprobs, dtype=torch.float32)

    def loss_fn(data, logprobs_list):
        pi_chosen, pi_rejected = logprobs_list[0], logprobs_list[1]
        chosen_weights = torch.tensor(data[0].loss_fn_inputs["weights"].data, dtype=torch.float32)
        rejected_weights = torch.tensor(data[1].loss_fn_inputs["weights"].data, dtype=torch.float32)
        pi_chosen_sum = torch.dot(pi_chosen.float(), chosen_weights)
        pi_rejected_sum = torch.dot(pi_rejected.float(), rejected_weights)
        ref_chosen_sum = torch.dot(ref_chosen_t.float(), chosen_weights)
        ref_rejected_sum = torch.dot(ref_rejected_t.float(), rejected_weights)
        margin = (pi_chosen_sum - ref_chosen_sum) - (pi_rejected_sum - ref_rejected_sum)
        dpo_loss = -F.logsigmoid(beta * margin)
        with torch.no_grad():
            accuracy = 1.0 if margin.item() > 0 else 0.0
        return dpo_loss, {"dpo_loss": dpo_loss.item(), "margin": margin.item(), "accuracy": accuracy}

    return loss_fn


def custom_dpo():
    """The DPO guide's loop: a full-parameter policy and a forward-only reference trainer."""
    mgr = manager()
    policy_ep, policy_service = trainer(mgr, lora_rank=0, display_name="dpo-policy")
    ref_ep, ref_service = trainer(mgr, lora_rank=0, forward_only=True, display_name="dpo-reference")
    try:
        policy_client = policy_service.create_training_client(BASE_MODEL, lora_rank=0)
        reference_client = ref_service.create_training_client(BASE_MODEL, lora_rank=0)
        prompt = "Q: What colour is the sky? A:"
        dataset = [
            (tokenizer.encode(prompt + " Blue."), tokenizer.encode(prompt + " Green."), len(prompt)),
            (tokenizer.encode(prompt + " It is blue."), tokenizer.encode(prompt + " Red."), len(prompt)),
        ]
        ref_cache = {}
        for i, (chosen_tokens, rejected_tokens, prompt_len) in enumerate(dataset):
            chosen_datum, rejected_datum = build_dpo_datums(chosen_tokens, rejected_tokens, prompt_len)
            fwd = reference_client.forward([chosen_datum, rejected_datum], "cross_entropy").result()
            ref_cache[i] = {
                "ref_chosen": fwd.loss_fn_outputs[0]["logprobs"].data,
                "ref_rejected": fwd.loss_fn_outputs[1]["logprobs"].data,
                "chosen_tokens": chosen_tokens,
                "rejected_tokens": rejected_tokens,
                "prompt_len": prompt_len,
            }
        margins = []
        step = 0
        accum_count = 0
        grad_accum = 2
        for _epoch in range(4):
            for idx in ref_cache:
                cached = ref_cache[idx]
                chosen_datum, rejected_datum = build_dpo_datums(
                    cached["chosen_tokens"], cached["rejected_tokens"], cached["prompt_len"]
                )
                loss_fn = make_dpo_loss_fn(cached["ref_chosen"], cached["ref_rejected"], beta=0.1)
                result = policy_client.forward_backward_custom([chosen_datum, rejected_datum], loss_fn).result()
                margins.append(result.metrics["margin"])
                accum_count += 1
                if accum_count >= grad_accum:
                    policy_client.optim_step(
                        AdamParams(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
                    ).result()
                    step += 1
                    accum_count = 0
        # The reference stayed frozen: its logprobs are what they were.
        again = reference_client.forward(
            list(build_dpo_datums(dataset[0][0], dataset[0][1], dataset[0][2])), "cross_entropy"
        ).result()
        report(
            steps=step,
            margins=margins,
            reference_drift=max_abs_diff(list(again.loss_fn_outputs[0]["logprobs"].data), list(ref_cache[0]["ref_chosen"])),
            metric_keys=sorted(result.metrics),
        )
    finally:
        mgr.delete(policy_ep.job_id)
        mgr.delete(ref_ep.job_id)


def save_load():
    mgr = manager()
    endpoint, service = trainer(mgr, lora_rank=0, display_name="sdk-state")
    other_ep = None
    deleted = None
    try:
        client = service.create_training_client(BASE_MODEL, lora_rank=0)
        datums = [target_datum("Sure! The capital of Italy is Rome.")]
        adam = AdamParams(learning_rate=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.0)
        for _ in range(2):
            client.forward_backward(datums, "cross_entropy").result()
            client.optim_step(adam).result()
        saved = client.save_state("step-2").result()
        at_save = logprobs(client, datums)
        for _ in range(2):
            client.forward_backward(datums, "cross_entropy").result()
            client.optim_step(adam).result()
        moved = logprobs(client, datums)
        client.load_state_with_optimizer("step-2").result()
        restored = logprobs(client, datums)
        # Weights only, optimizer reset: the same weights.
        client.load_state("step-2").result()
        restored_weights_only = logprobs(client, datums)
        sampler = client.save_weights_for_sampler_ext("snap-1", checkpoint_type="base")
        client.forward_backward(datums, "cross_entropy").result()
        client.optim_step(adam).result()
        delta = client.save_weights_for_sampler_ext("snap-2", checkpoint_type="delta")
        dcp_names = client.list_checkpoints()
        # Another trainer of the same account resumes from this one's checkpoint.
        other_ep, other_service = trainer(mgr, lora_rank=0, display_name="sdk-state-2")
        other = other_service.create_training_client(BASE_MODEL, lora_rank=0)
        ref = other.resolve_checkpoint_path("step-2", source_job_id=endpoint.job_id)
        other.load_state_with_optimizer(ref).result()
        cross_job = logprobs(other, datums)
        mgr.delete(endpoint.job_id)
        deleted = endpoint.job_id
        rows = mgr.list_checkpoints(deleted)
        base_row = next(r for r in rows if r["name"].endswith("/checkpoints/" + sampler.snapshot_name))
        model = mgr.promote_checkpoint(
            name=base_row["name"], output_model_id="sdk-promoted", base_model=BASE_MODEL
        )
        report(
            saved_path=saved.path,
            moved=max_abs_diff(moved[0], at_save[0]),
            restored=max_abs_diff(restored[0], at_save[0]),
            restored_weights_only=max_abs_diff(restored_weights_only[0], at_save[0]),
            cross_job=max_abs_diff(cross_job[0], at_save[0]),
            cross_job_ref=ref,
            sampler=[sampler.path, sampler.snapshot_name, delta.path, delta.snapshot_name],
            sampler_session=client.session_id,
            dcp_names=dcp_names,
            rows=[[r["name"].split("/")[-1], r.get("checkpointType"), r.get("promotable")] for r in rows],
            promoted=model if isinstance(model, dict) else getattr(model, "__dict__", str(model)),
        )
    finally:
        for ep in [endpoint, other_ep]:
            if ep is not None and ep.job_id != deleted:
                try:
                    mgr.delete(ep.job_id)
                except Exception:
                    pass


def reconnect():
    """An inactivity stop, then reconnect_and_wait resumes the trainer and the loop reloads."""
    mgr = manager()
    endpoint, service = trainer(mgr, lora_rank=0, inactivity_timeout="3s", display_name="sdk-idle")
    try:
        client = service.create_training_client(BASE_MODEL, lora_rank=0)
        datums = [target_datum("The sky is blue.")]
        client.forward_backward(datums, "cross_entropy").result()
        client.optim_step(AdamParams(learning_rate=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.0)).result()
        client.save_state("step-1").result()
        before = logprobs(client, datums)
        service.close()  # no more heartbeats: the trainer is idle from here
        deadline = time.time() + 120
        state = mgr.get(endpoint.job_id)["state"]
        while state == "JOB_STATE_RUNNING" and time.time() < deadline:
            time.sleep(0.5)
            state = mgr.get(endpoint.job_id)["state"]
        stopped = mgr.get(endpoint.job_id)
        resumed = mgr.reconnect_and_wait(endpoint.job_id, poll_interval_s=0.5, timeout_s=300)
        service2 = FiretitanServiceClient(base_url=resumed.base_url, api_key=API_KEY)
        client2 = service2.create_training_client(BASE_MODEL, lora_rank=0)
        checkpoints = client2.list_checkpoints()
        client2.load_state_with_optimizer(checkpoints[-1]).result()
        after = logprobs(client2, datums)
        report(
            stopped_state=stopped["state"],
            stopped_message=stopped.get("status", {}).get("message") or stopped.get("statusMessage"),
            resumed_state=mgr.get(endpoint.job_id)["state"],
            checkpoints=checkpoints,
            restored=max_abs_diff(after[0], before[0]),
        )
        service2.close()
    finally:
        mgr.delete(endpoint.job_id)


def errors():
    """Bad requests fail with the server's message; unload_model frees the model."""
    mgr = manager()
    seen = {}
    try:
        mgr.create_and_wait(TrainerJobConfig(base_model="accounts/temper/models/no-such-model"), **POLL)
    except Exception as e:  # noqa: BLE001
        seen["create"] = str(e)
    endpoint, service = trainer(mgr, lora_rank=0)
    try:
        client = service.create_training_client(BASE_MODEL, lora_rank=0)
        try:
            client.forward_backward([target_datum("abc")], "no_such_loss").result()
        except Exception as e:  # noqa: BLE001
            seen["loss"] = str(e)
        try:
            client.load_state("never-saved").result()
        except Exception as e:  # noqa: BLE001
            seen["load"] = str(e)
        bad_token = Datum(
            model_input=ModelInput.from_ints([1, 2, 99999]),
            loss_fn_inputs={"target_tokens": TensorData(data=[2, 3, 4], dtype="int64", shape=[3])},
        )
        try:
            client.forward([bad_token], "cross_entropy").result()
        except Exception as e:  # noqa: BLE001
            seen["token"] = str(e)
        # unload_model drops the model on the trainer; a new one then trains there
        unloaded = client.unload_model().result()
        seen["unloaded"] = unloaded.model_id == client.model_id
        fresh = FiretitanServiceClient(
            base_url=endpoint.base_url, api_key=API_KEY
        ).create_training_client(BASE_MODEL, lora_rank=0)
        seen["fresh_model"] = fresh.model_id != client.model_id
        seen["fresh_logprobs"] = len(logprobs(fresh, [target_datum("abc")])[0]) == len(
            tokenizer.encode("abc")
        ) - 1
        report(**seen)
    finally:
        mgr.delete(endpoint.job_id)


if __name__ == "__main__":
    {
        "lifecycle": lifecycle,
        "builtin_losses": builtin_losses,
        "custom_dpo": custom_dpo,
        "save_load": save_load,
        "reconnect": reconnect,
        "errors": errors,
    }[sys.argv[1]]()
