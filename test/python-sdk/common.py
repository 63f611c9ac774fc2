"""What every conformance script shares: where temper is, the model, a tokenizer, and a way
to report. The scripts use the unmodified `fireworks-ai[training]` SDK; only the base URL, the
API key, the base model and the tokenizer differ from the documentation's examples.

The bundled model is byte-level (ids 0-255 are the UTF-8 bytes), so the tokenizer here is
simply the bytes of the text.
"""
import json
import os
import sys

API_KEY = os.environ["FIREWORKS_API_KEY"]
BASE_URL = os.environ["FIREWORKS_BASE_URL"]
BASE_MODEL = "accounts/temper/models/byte-lm-3m"


class ByteTokenizer:
    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


tokenizer = ByteTokenizer()


def report(**fields) -> None:
    """One JSON line the vitest side reads (last line of stdout)."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def max_abs_diff(a, b) -> float:
    assert len(a) == len(b), (len(a), len(b))
    return max(abs(x - y) for x, y in zip(a, b)) if a else 0.0
