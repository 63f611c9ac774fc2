"""OpenAI conformance of a temper deployment, driven by the unmodified `openai` package.

Usage: python openai_conformance.py GATEWAY_URL MODEL ADDON
Prints one JSON object: {case: {"ok": bool, "error"?: str, "detail"?: ...}} for every case.

Every response is checked twice: through the client's own typed objects (as a user's code reads
them) and as raw JSON validated strictly (`model_validate(raw, strict=True)`) against the
client's pydantic models. Where OpenAI's own wire format departs from those models (a null at
the first echoed prompt position; `finish_reason: null` in completion stream chunks), the test
asserts that exactly those fields, and nothing else, fail validation.
"""

import json
import sys
import time
import traceback

import httpx2
import openai
import pydantic
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

URL, MODEL, ADDON = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=f"{URL}/inference/v1", api_key="unused", max_retries=0, timeout=60)
results = {}


def case(fn):
    try:
        detail = fn()
        results[fn.__name__] = {"ok": True, "detail": detail}
    except Exception:  # noqa: BLE001 - every failure is reported by name
        results[fn.__name__] = {"ok": False, "error": traceback.format_exc()}
    return fn


def strict(model_cls, raw, allowed=()):
    """Validates strictly; returns the locations that failed, which must all be in `allowed`."""
    try:
        model_cls.model_validate(raw, strict=True)
        return []
    except pydantic.ValidationError as e:
        locs = [".".join(str(x) for x in err["loc"]) for err in e.errors()]
        bad = [loc for loc in locs if loc not in allowed]
        assert not bad, f"{model_cls.__name__} strict validation failed at {bad}: {e}"
        return locs


def sse(path, body):
    """POSTs a streaming request and returns the parsed `data:` events (without [DONE])."""
    events, done = [], False
    with httpx2.stream("POST", f"{URL}/inference/v1/{path}", json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            assert not done, "event after [DONE]"
            events.append(json.loads(data))
    assert done, "stream ended without [DONE]"
    return events


def expect_error(status, param, fn):
    try:
        fn()
    except openai.APIStatusError as e:
        assert e.status_code == status, (e.status_code, e.body)
        body = e.response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert body["error"]["param"] == param, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
        return body["error"]["message"]
    raise AssertionError("no error")


PROMPT = "The cat sat on the mat. "


@case
def models_list():
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert ids == [MODEL, ADDON], ids
    raw = httpx2.get(f"{URL}/inference/v1/models").json()
    assert raw["object"] == "list"
    for m in raw["data"]:
        strict(Model, m)
    return ids


@case
def models_retrieve():
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL and m.object == "model" and isinstance(m.created, int)
    strict(Model, httpx2.get(f"{URL}/inference/v1/models/{MODEL}").json())
    assert client.models.retrieve(ADDON).id == ADDON
    msg = expect_error(404, "model", lambda: client.models.retrieve("accounts/x/models/nope"))
    assert "accounts/x/models/nope" in msg
    return msg


@case
def completion_basic():
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0
    )
    c = raw.parse()
    body = raw.http_response.json()
    strict(Completion, body)
    assert c.object == "text_completion" and c.model == ADDON
    ch = c.choices[0]
    assert ch.finish_reason in ("stop", "length") and isinstance(ch.text, str)
    u = c.usage
    assert u.prompt_tokens == len(PROMPT.encode()) and u.completion_tokens <= 8
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    return ch.text


@case
def completion_logprobs():
    raw = client.completions.with_raw_response.create(
        model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3
    )
    strict(Completion, raw.http_response.json())
    ch = raw.parse().choices[0]
    lp = ch.logprobs
    n = len(lp.tokens)
    assert n == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) > 0
    for i in range(n):
        top = lp.top_logprobs[i]
        assert 1 <= len(top) <= 3, top
        # greedy: the chosen token is the likeliest one
        assert max(top, key=top.get) == lp.tokens[i], (top, lp.tokens[i])
        assert abs(top[lp.tokens[i]] - lp.token_logprobs[i]) < 1e-6
    # text_offset indexes the choice's text
    assert lp.text_offset[0] == 0
    for i in range(n - 1):
        assert lp.text_offset[i + 1] - lp.text_offset[i] == len(lp.tokens[i])
    assert "".join(lp.tokens).startswith(ch.text)
    return lp.text_offset


@case
def completion_echo_scoring():
    """lm-eval's loglikelihood: echo + logprobs, max_tokens 0 (and 1), greedy check from the dicts."""
    context, continuation = "The cat sat on", " the mat."
    out = {}
    for max_tokens in (0, 1):
        raw = client.completions.with_raw_response.create(
            model=MODEL, prompt=context + continuation, max_tokens=max_tokens, echo=True, logprobs=1,
            temperature=0,
        )
        body = raw.http_response.json()
        # OpenAI itself sends null at position 0 (nothing predicts the first token)
        failed = strict(
            Completion, body,
            allowed=("choices.0.logprobs.token_logprobs.0", "choices.0.logprobs.top_logprobs.0"),
        )
        assert sorted(failed) == ["choices.0.logprobs.token_logprobs.0", "choices.0.logprobs.top_logprobs.0"]
        ch = raw.parse().choices[0]
        lp = ch.logprobs
        P = len((context + continuation).encode())
        assert ch.text.startswith(context + continuation)
        assert len(lp.tokens) == P + max_tokens
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        assert all(isinstance(d, dict) and len(d) == 1 for d in lp.top_logprobs[1:])
        assert lp.text_offset[: P] == list(range(P))
        ctx = len(context.encode())
        greedy = all(
            max(lp.top_logprobs[i], key=lp.top_logprobs[i].get) == lp.tokens[i] for i in range(ctx, P)
        )
        out[max_tokens] = {"logprob": sum(lp.token_logprobs[ctx:P]), "greedy": greedy}
        assert raw.parse().usage.completion_tokens == max_tokens
    assert abs(out[0]["logprob"] - out[1]["logprob"]) < 1e-5, out
    return out


@case
def completion_n2_usage():
    c = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=7, n=2, seed=5)
    assert [x.index for x in c.choices] == [0, 1]
    P = len(PROMPT.encode())
    gen = [len(x.token_ids) for x in c.choices]  # extension field
    assert c.usage.prompt_tokens == P, c.usage
    assert c.usage.completion_tokens == sum(gen)
    assert c.usage.total_tokens == P + sum(gen)
    return c.usage.model_dump()


@case
def completion_batch_prompts():
    c = client.completions.create(model=MODEL, prompt=["Hello", "The dog"], max_tokens=3, n=2, temperature=0)
    assert [x.index for x in c.choices] == [0, 1, 2, 3]
    assert c.usage.prompt_tokens == len("Hello") + len("The dog")
    assert c.choices[0].text == c.choices[1].text  # greedy, same prompt
    return [x.text for x in c.choices]


@case
def completion_stop():
    full = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0).choices[0].text
    stop = full[3:5]
    c = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0, stop=[stop, "zzz"])
    ch = c.choices[0]
    assert ch.finish_reason == "stop" and ch.text == full[: full.index(stop)], (full, stop, ch.text)
    return {"full": full, "stop": stop}


@case
def completion_stream():
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 10, "temperature": 0, "logprobs": 1}
    plain = client.completions.create(**body).choices[0].text
    # the usual loop: every chunk has a choice
    text = "".join(chunk.choices[0].text for chunk in client.completions.create(**body, stream=True))
    assert text == plain, (text, plain)
    events = sse("completions", {**body, "stream": True})
    for i, e in enumerate(events):
        assert "usage" not in e and len(e["choices"]) == 1
        # completion chunks reuse `Completion`, whose finish_reason OpenAI sends as null mid-stream
        allowed = () if e["choices"][0]["finish_reason"] else ("choices.0.finish_reason",)
        strict(Completion, e, allowed)
    offs = [o for e in events if e["choices"][0]["logprobs"] for o in e["choices"][0]["logprobs"]["text_offset"]]
    assert offs == list(range(len(offs))), offs  # one byte per token here
    with_usage = sse("completions", {**body, "stream": True, "stream_options": {"include_usage": True}})
    last = with_usage[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 10
    assert all(e["usage"] is None for e in with_usage[:-1])
    strict(Completion, last)
    # echo streams the prompt first (with its logprobs), then the completion
    echoed = sse("completions", {**body, "stream": True, "echo": True})
    first = echoed[0]["choices"][0]
    assert first["text"] == PROMPT and len(first["logprobs"]["tokens"]) == len(PROMPT.encode())
    assert first["logprobs"]["top_logprobs"][0] is None and all(first["logprobs"]["top_logprobs"][1:])
    assert "".join(e["choices"][0]["text"] for e in echoed) == PROMPT + plain
    return len(events)


@case
def chat_basic():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 3+4?"}]
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=msgs, max_tokens=12, temperature=0)
    strict(ChatCompletion, raw.http_response.json())
    c = raw.parse()
    assert c.object == "chat.completion" and c.choices[0].message.role == "assistant"
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    # developer messages are system messages; content parts of type text are text
    dev = client.chat.completions.create(
        model=MODEL, max_tokens=12, temperature=0,
        messages=[{"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "What is 3+4?"}]}],
    )
    assert dev.choices[0].message.content == c.choices[0].message.content
    assert dev.usage.prompt_tokens == c.usage.prompt_tokens
    return c.choices[0].message.content


@case
def chat_logprobs():
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0,
        logprobs=True, top_logprobs=2,
    )
    strict(ChatCompletion, raw.http_response.json())
    ch = raw.parse().choices[0]
    content = ch.logprobs.content
    assert len(content) == ch.model_extra["token_ids"].__len__() > 0
    for t in content:
        assert len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
        assert t.top_logprobs[0].token == t.token and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6
        assert isinstance(t.bytes, list)
    return len(content)


@case
def chat_n_stop():
    msgs = [{"role": "user", "content": "Tell me about cats."}]
    full = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=20, temperature=0)
    text = full.choices[0].message.content
    stop = text[2:4]
    c = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=20, temperature=0, n=2, stop=stop)
    assert [x.index for x in c.choices] == [0, 1]
    for x in c.choices:
        assert x.finish_reason == "stop" and x.message.content == text[: text.index(stop)]
    assert c.usage.prompt_tokens == full.usage.prompt_tokens
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    return stop


@case
def chat_stream():
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 16, "temperature": 0}
    plain = client.chat.completions.create(**body).choices[0].message.content
    text = ""
    for chunk in client.chat.completions.create(**body, stream=True):
        text += chunk.choices[0].delta.content or ""  # no IndexError: every chunk has a choice
    assert text == plain, (text, plain)
    events = sse("chat/completions", {**body, "stream": True, "logprobs": True, "top_logprobs": 1})
    for e in events:
        strict(ChatCompletionChunk, e)
        assert len(e["choices"]) == 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    n_lp = sum(len(e["choices"][0]["logprobs"]["content"]) for e in events if e["choices"][0]["logprobs"])
    with_usage = sse("chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}})
    for e in with_usage:
        strict(ChatCompletionChunk, e)
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["completion_tokens"] == n_lp
    assert all(e["usage"] is None for e in with_usage[:-1])
    return n_lp


@case
def chat_tools():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=msgs, tools=tools, max_tokens=16, temperature=0
    )
    strict(ChatCompletion, raw.http_response.json())
    with_tools = raw.parse().usage.prompt_tokens
    without = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=1).usage.prompt_tokens
    assert with_tools > without  # the tools are in the prompt
    # a conversation that carries a tool call and its result renders
    follow = client.chat.completions.create(
        model=MODEL, max_tokens=8, tools=tools,
        messages=msgs + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    )
    assert follow.choices[0].message.role == "assistant"
    msg = expect_error(400, "tool_choice", lambda: client.chat.completions.create(
        model=MODEL, messages=msgs, tools=tools, tool_choice="required"))
    return msg


@case
def errors():
    out = {}
    out["response_format"] = expect_error(400, "response_format", lambda: client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}))
    out["presence_penalty"] = expect_error(400, "presence_penalty", lambda: client.completions.create(
        model=MODEL, prompt="x", presence_penalty=0.5))
    out["max_tokens"] = expect_error(400, "max_tokens", lambda: client.completions.create(
        model=MODEL, prompt="x", max_tokens=-1))
    out["image"] = expect_error(400, "messages", lambda: client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]))
    out["suffix"] = expect_error(400, "suffix", lambda: client.completions.create(
        model=MODEL, prompt="x", suffix="y"))
    out["top_logprobs"] = expect_error(400, "top_logprobs", lambda: client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], top_logprobs=2))
    out["vocab"] = expect_error(400, "prompt", lambda: client.completions.create(
        model=MODEL, prompt=[1, 2, 99999]))
    assert "image_url" in out["image"] and "json_schema" in out["response_format"]
    return out


@case
def fireworks_token_in_stream():
    """What the Fireworks SDK's DeploymentSampler sends and reads (spec section 7)."""
    prompt = list(PROMPT.encode())
    events = sse("completions", {
        "model": "accounts/test/deployments/conformance", "prompt": prompt, "n": 1, "max_tokens": 12,
        "temperature": 1.0, "stream": True, "perf_metrics_in_response": True, "raw_output": True,
        "top_p": 1.0, "top_k": 0, "logprobs": True, "top_logprobs": 2, "seed": 3,
    })
    content, finish, raw_output, perf = [], None, None, None
    for e in events:
        for ch in e["choices"]:
            content += (ch.get("logprobs") or {}).get("content") or []
            finish = ch.get("finish_reason") or finish
            raw_output = ch.get("raw_output") or raw_output
        perf = e.get("perf_metrics", perf)
    assert finish in ("stop", "length")
    ids = raw_output["completion_token_ids"]
    assert len(content) == len(ids) > 0
    for t, tid in zip(content, ids):
        assert t["token_id"] == tid and isinstance(t["logprob"], float | int)
        # temperature 1, no truncation: the sampling distribution is the model's
        assert abs(t["sampling_logprob"] - t["logprob"]) < 1e-4, t
        assert all(isinstance(a["token_id"], int) for a in t["top_logprobs"]) and len(t["top_logprobs"]) == 2
    assert float(perf["prefill-queue-duration"]) >= 0 and int(perf["prompt-tokens"]) == len(prompt)
    assert "events" and events[-1].get("perf_metrics") is not None
    # the JSON (non-stream) answer and its headers carry the same metrics
    r = httpx2.post(f"{URL}/inference/v1/completions", json={"prompt": prompt, "max_tokens": 2, "raw_output": True})
    assert float(r.headers["fireworks-prefill-queue-duration"]) >= 0
    return {"tokens": len(ids), "perf": perf}


@case
def disconnect_frees_replica():
    status = lambda: httpx2.get(f"{URL}/hot_load/v1/models/hot_load").json()["replicas"]  # noqa: E731
    before = sum(r["generated_tokens"] for r in status())
    stream = client.completions.create(
        model=MODEL, prompt="Go", max_tokens=400, stream=True, extra_body={"ignore_eos": True}
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()  # the client goes away mid-stream
    # and a plain request whose client gives up (timeout) mid-generation
    try:
        client.with_options(timeout=0.3).completions.create(
            model=MODEL, prompt="Go", max_tokens=400, extra_body={"ignore_eos": True})
        raise AssertionError("expected a timeout")
    except openai.APITimeoutError:
        pass
    t0 = time.time()
    while any(r["inflight"] > 0 for r in status()):
        assert time.time() - t0 < 10, f"replica still busy: {status()}"
        time.sleep(0.02)
    generated = sum(r["generated_tokens"] for r in status()) - before
    assert generated < 800, generated
    ok = client.completions.create(model=MODEL, prompt="Go", max_tokens=4)
    assert len(ok.choices) == 1
    return {"generated_of_800": generated, "freed_after_s": round(time.time() - t0, 3)}


print(json.dumps(results))
