"""Generate tests/fixtures/hh_template.bin: HH-RLHF's plain template, rendered and tokenized.

The reference is the Jinja string below (what `rlhf export` writes as the chat_template of a tokenizer
using RLHF_TEMPLATE_HH), rendered by Python's jinja2 the way Hugging Face's apply_chat_template does (a
sandbox with trim_blocks and lstrip_blocks), then tokenized as Hugging Face's GPT-2 tokenizer does: the
text is split at the special token <|endoftext|> first, each piece encoded with GPT-2's byte-level BPE
(gen_gpt2_parity.py's independent encoder), and <|endoftext|> itself is id 50256. rlhf.h's
rlhf_tokenizer_chat must give these ids exactly.

Run from the repo root (Debian's python3-regex and python3-jinja2):
    /usr/bin/python3 tools/gen_hh_template.py [output_path]
It reads ../shared/testdata/gpt2 (never copied into the repo).

Fixture format: gen_gpt2_parity.py's RLHFFIX1. Records: "count" i32[1] = N conversations; for each i,
"roles.<i>" i32[n] (0 system, 1 user, 2 assistant), "gen.<i>" i32[1] (add_generation_prompt),
"msg.<i>.<j>" i32[len] (the content's UTF-8 bytes, one per element), "text.<i>" i32[len] (the
rendered text's bytes) and "ids.<i>" i32[n] (its ids); "jinja" i32[len] is the template's bytes, which
an exported tokenizer_config.json must hold as its chat_template. Contents hold no special-token string:
rlhf.h keeps those as text where Hugging Face's tokenizer would make them special ids.
"""
import os
import struct
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.dont_write_bytecode = True  # importing gen_gpt2_parity must not leave tools/__pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_gpt2_parity as gp  # noqa: E402

HH_JINJA = (  # byte for byte what rlhf.h's rlhf__hf_chat_template writes for RLHF_TEMPLATE_HH
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '\\n\\nHuman: ' + message['content'] }}{% elif message['role'] == 'assistant' %}"
    "{{ '\\n\\nAssistant: ' + message['content'] + '<|endoftext|>' }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] }}"
    "{% else %}{{ raise_exception('HH-RLHF template: the role must be system, user or assistant, "
    "not ' + message['role']) }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n\\nAssistant:' }}{% endif %}"
)
EOS = "<|endoftext|>"
ROLES = {"system": 0, "user": 1, "assistant": 2}

CONVERSATIONS = [
    ([("user", "What is the capital of France?"), ("assistant", "Paris.")], False),
    ([("user", "What is the capital of France?")], True),
    ([("system", "You are a helpful assistant."), ("user", "Hi!"), ("assistant", "Hello! How can I help?"),
      ("user", "Tell me a joke."), ("assistant", "Why did the chicken cross the road?")], False),
    ([("system", "Be brief."), ("user", "Hi!"), ("assistant", "Hello."), ("user", "And now?")], True),
    # whitespace where the pieces meet: trailing spaces and newlines, leading spaces, an empty reply
    ([("user", "ends with spaces   "), ("assistant", "  starts with spaces\n\n"), ("user", "\n")], True),
    ([("user", "tab\tand newline\n"), ("assistant", "")], False),
    # the template's own words inside a turn
    ([("user", "Say \"\n\nHuman: hi\" please"), ("assistant", "Human: hi Assistant: ok")], False),
    ([("user", "Caf\u00e9 na\u00efve \u65e5\u672c \U0001F600"), ("assistant", "ok \u2014 \u00e7a va")], True),
]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tokenize(enc, text):
    ids = []
    for k, piece in enumerate(text.split(EOS)):
        if k:
            ids.append(50256)
        ids += enc.encode(piece)
    return ids


def rec(name, dtype, arr):
    b = name.encode()
    out = struct.pack("<I", len(b)) + b + struct.pack("<III", dtype, 1, len(arr))
    return out + struct.pack("<%di" % len(arr), *arr)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(gp.ROOT, "tests", "fixtures", "hh_template.bin")
    enc = gp.Encoder()
    # as transformers' apply_chat_template renders: a sandbox, trim_blocks, lstrip_blocks, raise_exception
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    tmpl = env.from_string(HH_JINJA)
    recs = [rec("count", 1, [len(CONVERSATIONS)]), rec("jinja", 1, list(HH_JINJA.encode()))]
    for i, (conv, gen) in enumerate(CONVERSATIONS):
        messages = [{"role": r, "content": c} for r, c in conv]
        text = tmpl.render(messages=messages, add_generation_prompt=gen)
        ids = tokenize(enc, text)
        # self-checks: the ids decode to the text (EOS as its string), and the text is what the template says
        assert enc.decode_bytes([x for x in ids if x != 50256]) == text.replace(EOS, "").encode()
        recs.append(rec("roles.%d" % i, 1, [ROLES[r] for r, _ in conv]))
        recs.append(rec("gen.%d" % i, 1, [int(gen)]))
        for j, (_, c) in enumerate(conv):
            recs.append(rec("msg.%d.%d" % (i, j), 1, list(c.encode())))
        recs.append(rec("text.%d" % i, 1, list(text.encode())))
        recs.append(rec("ids.%d" % i, 1, ids))
    with open(out_path, "wb") as f:
        f.write(b"RLHFFIX1" + struct.pack("<I", len(recs)) + b"".join(recs))
    print("wrote %s: %d conversations" % (out_path, len(CONVERSATIONS)))


if __name__ == "__main__":
    main()
