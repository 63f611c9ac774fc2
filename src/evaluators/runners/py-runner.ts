/**
 * The runner inside a Python evaluator's sandbox, as source text (see js-runner.ts for the
 * protocol, which is the same, first line `{"env":{…}}` included). It loads the evaluator file, finds its function (the entry
 * point's name; else `evaluate`; else the file's one `@evaluation_test` function) and calls it
 * per rollout:
 * - an eval-protocol `@evaluation_test` function (pointwise) gets an `EvaluationRow` built from
 *   the rollout (the completion as the last assistant message, `ground_truth`) and is called
 *   the way eval-protocol calls one directly, `await fn(row)`; its row's `evaluation_result`
 *   (`score`, `reason`, `is_score_valid`) is the result;
 * - a plain function gets the rollout dict and returns a number, a dict like JS evaluators'
 *   results, or an object with `score` (an `EvaluateResult`).
 * print() output goes to stderr, so it cannot break the protocol on stdout.
 */
export const PY_RUNNER_FILE = 'py-runner.py';

export const PY_RUNNER_SOURCE = String.raw`
import asyncio, errno, importlib.util, inspect, json, math, os, socket, sys, time

_protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {"$num": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    return str(value)


_PROTOCOL_FD = _protocol.fileno()


def encode(message):
    try:
        return (json.dumps(message, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError):
        return (json.dumps(_plain(message)) + "\n").encode()


def write_all(data):
    view = memoryview(data)
    while view:
        view = view[os.write(_PROTOCOL_FD, view):]


def send(message):
    write_all(encode(message))


def kind_of(error):
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, OSError) and error.errno == errno.EAGAIN and isinstance(error, BlockingIOError):
        return "processes"
    if isinstance(error, (ConnectionRefusedError, socket.gaierror)) or (
        isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    ):
        return "network"
    return "error"


_children_fd = None


def with_strays(message):
    # Processes alive under this one: pid 1 of the sandbox, so orphans are re-parented to its
    # main thread too (a child of another thread is caught by the parent's sweep after the batch).
    global _children_fd
    try:
        if _children_fd is None:
            _children_fd = os.open("/proc/self/task/%d/children" % os.getpid(), os.O_RDONLY)
        n = len(os.pread(_children_fd, 65536, 0).split())
    except OSError:
        n = 0
    if n:
        message["strays"] = n
    return message


def message_of(error):
    text = str(error)
    return type(error).__name__ + (": " + text if text else "")


def load(path, name):
    sys.path.insert(0, os.path.dirname(path))
    sys.path.insert(0, "/evaluator")
    module_name = os.path.splitext(os.path.relpath(path, "/evaluator"))[0].replace("/", ".")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    if name:
        fn = getattr(module, name, None)
        if not callable(fn):
            raise ValueError("the evaluator file has no function " + name)
        return fn
    if callable(getattr(module, "evaluate", None)):
        return module.evaluate
    tests = [v for v in vars(module).values() if callable(v) and hasattr(v, "_origin_func")]
    if len(tests) == 1:
        return tests[0]
    raise ValueError(
        "the evaluator file must define evaluate(row) or one @evaluation_test function"
        + (" (it has %d; name one in the entry point file.py::function)" % len(tests) if tests else "")
    )


def as_result(value):
    if value is None or isinstance(value, (bool, int, float, dict)):
        if isinstance(value, dict) and "is_score_valid" in value and "valid" not in value:
            value = dict(value, valid=value["is_score_valid"])
        return value
    score = getattr(value, "score", None)
    if score is None:
        return None
    result = {"score": score, "valid": bool(getattr(value, "is_score_valid", True))}
    reason = getattr(value, "reason", None)
    if reason is not None:
        result["reason"] = str(reason)
    return result


def read_env():
    # The first stdin line: the evaluator's own environment (the account's secrets). Whatever
    # follows it in the same read is the start of the requests.
    data = b""
    while b"\n" not in data:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            return data
        data += chunk
    line, rest = data.split(b"\n", 1)
    os.environ.update(json.loads(line)["env"])
    return rest


def main():
    path, name = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
    pending = read_env()
    try:
        fn = load(path, name)
        is_ep = hasattr(fn, "_origin_func")
        if is_ep:
            from eval_protocol.models import EvaluationRow, Message
            mode = getattr(fn, "_metainfo", {}).get("mode", "pointwise")
            if mode != "pointwise":
                raise ValueError("only pointwise @evaluation_test functions can score rollouts (this one is " + str(mode) + ")")
    except BaseException as error:
        send({"fatal": message_of(error)})
        sys.exit(3)
    loop = asyncio.new_event_loop()
    send({"ready": True})

    def call(rollout):
        if not is_ep:
            result = fn(rollout)
            if inspect.isawaitable(result):
                result = loop.run_until_complete(result)
            return as_result(result)
        messages = list(rollout.get("messages") or [])
        completion = rollout.get("completion") or ""
        last = messages[-1] if messages else None
        if not (isinstance(last, dict) and last.get("role") == "assistant" and last.get("content") == completion):
            messages.append({"role": "assistant", "content": completion})
        row = EvaluationRow(
            messages=[Message(**m) for m in messages],
            ground_truth=rollout.get("groundTruth"),
        )
        returned = fn(row)
        if inspect.isawaitable(returned):
            returned = loop.run_until_complete(returned)
        scored = returned if returned is not None else row
        return as_result(getattr(scored, "evaluation_result", None))

    # Requests arrive in batches: the results of one read go out together, and at least every
    # 20 ms, so the platform still sees each rollout end (it times them one by one).
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        out = []
        flushed = time.monotonic()
        for line in lines:
            if not line.strip():
                continue
            request = json.loads(line)
            try:
                result = {"id": request["id"], "ok": True, "value": call(request["rollout"])}
            except BaseException as error:
                if isinstance(error, (KeyboardInterrupt, SystemExit)):
                    raise
                result = {"id": request["id"], "ok": False, "error": message_of(error), "kind": kind_of(error)}
            out.append(encode(with_strays(result)))
            now = time.monotonic()
            if now - flushed > 0.02:
                write_all(b"".join(out))
                out = []
                flushed = now
        if out:
            write_all(b"".join(out))


main()
`;
