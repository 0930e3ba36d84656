"""Independent reader of rlhf.h's Hugging Face exports, and the fixture of the export tests.

tests/test_rlhf.c (export_hf, export_hf_reward) builds deterministic models (a tokenizer trained
on fixed text, weights from fixed seeds, and a model over GPT-2's own tokenizer) and exports them
with rlhf_model_export_hf into build/hf_export/{trained, trained_bf16, trained_f16, gpt2, reward}.
This script loads each directory from config.json, model.safetensors, vocab.json, merges.txt and
tokenizer_config.json ALONE, as transformers would, with nothing of rlhf.h:
  * its own safetensors parser (F32, BF16, F16; offsets contiguous and covering the data);
  * its own byte-level BPE: GPT-2's bytes_to_unicode, GPT-2's pre-tokenizer pattern with `regex`,
    OpenAI's bpe() over merges.txt's ranks, and the added tokens of added_tokens_decoder split out
    of the text first (transformers' behaviour for special tokens);
  * its own GPT-2 forward in torch float64 (GPT2LMHeadModel: tied head; GPT2ForSequenceClassification:
    score.weight at the last token that is not pad_token_id, plus config.json's rlhf_score_offset);
  * the chat template rendered by jinja2 as transformers renders it (ImmutableSandboxedEnvironment,
    trim_blocks, lstrip_blocks, raise_exception).
It checks the directories' layout (config fields, tensor names, metadata, added-token ids) and
writes tests/fixtures/hf_export.bin (RLHFFIX1, tools/gen_golden.py's format; strings are int32
arrays of bytes):
  texts i32[1], text.{i};  convs i32[1], conv.{i}.roles (0 system, 1 user, 2 assistant),
  conv.{i}.gen, conv.{i}.msg.{k}, conv.{i}.text (the template rendered);  template (the Jinja string);
  {trained,gpt2}.ids.{i} and {trained,gpt2}.conv.{i}.ids (this BPE's ids);
  trained.lids.{0,1} (16 ids) and trained.logits.{0,1} f32[16,V]; trained_bf16.logits.0 and
  trained_f16.logits.0 (the same ids through the BF16 / F16 exports);  gpt2.lids.0, gpt2.cols,
  gpt2.logits.0 f32[16, len(cols)] (some columns of V = 50262);  reward.inputs i32[B,T] (right-padded
  with pad_token_id), reward.lengths i32[B], reward.scores f32[B];  round.values f32[n] and
  round.bf16, round.f16: torch's .to(bfloat16 / float16) of them, widened back to float32.

Regenerate (from the repo root; GPT-2's files in ../shared/testdata/gpt2):
    make hf-export-fixture
which runs `build/test_rlhf export_hf` (it writes build/hf_export/ before comparing) and then
    /usr/bin/python3 tools/hf_reference.py build/hf_export tests/fixtures/hf_export.bin
"""
import json
import math
import os
import struct
import sys

import numpy as np
import regex
import torch
import torch.nn.functional as F
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

sys.dont_write_bytecode = True  # importing gen_golden must not leave tools/__pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import read_fixture, write_fixture  # noqa: E402

DT = torch.float64
PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
TEXTS = ["The quick brown fox jumps over the lazy dog.",
         "It's 12:30, isn't it?  We'll see what they've done\n\tand you'd agree!",
         "Naïve café — crème brûlée, ünïcödé and 🚀 emoji; 3.14159 and 1,000,000.",
         "   leading spaces, trailing spaces   ",
         "CamelCaseWords and snake_case_words and ALLCAPS 123abc456"]
CONVS = [([(0, "You are terse."), (1, "Name a colour."), (2, "Blue.")], 0),
         ([(1, "Hi!"), (2, "Hello."), (1, "2+2?")], 1),
         ([(1, "Write ü and 🚀 please")], 1),
         ([(0, "Be kind."), (1, "Hi"), (2, "Hello, friend."), (1, "Bye"), (2, "Bye!")], 0),
         ([], 1)]
ROLES = ["system", "user", "assistant"]
REWARD_PAIRS = [("Hi", "Hello."), ("2+2?", "4"), ("Name a fox.", "The quick one.")]


# ---- safetensors --------------------------------------------------------------------------------
def read_safetensors(path):
    """(metadata, {name: float64 tensor}); the header's rules checked as the reference reader does."""
    data = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    base, spans, out = 8 + n, [], {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        spans.append((b, en))
        raw = data[base + b:base + en]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float64)
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view("<f4").astype(np.float64)
        else:
            raise ValueError(f"{path}: {name} has dtype {e['dtype']}")
        assert a.size == int(np.prod(e["shape"])), name
        out[name] = torch.from_numpy(a.copy()).reshape(e["shape"])
    spans.sort()
    assert spans[0][0] == 0 and all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    assert spans[-1][1] == len(data) - base, "the tensors must cover the data exactly"
    return meta, out


# ---- tokenizer: vocab.json + merges.txt + added tokens ---------------------------------------------
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Tokenizer:
    def __init__(self, d):
        self.encoder = json.load(open(os.path.join(d, "vocab.json"), encoding="utf-8"))
        lines = open(os.path.join(d, "merges.txt"), encoding="utf-8").read().split("\n")
        assert lines[0] == "#version: 0.2"
        self.ranks = {tuple(l.split(" ")): i for i, l in enumerate(x for x in lines[1:] if x)}
        self.config = json.load(open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8"))
        self.added = {v["content"]: int(k) for k, v in self.config["added_tokens_decoder"].items()}
        n = len(self.encoder)
        new = sorted(i for s, i in self.added.items() if s not in self.encoder)
        assert new == list(range(n, n + len(new))), "added tokens must follow vocab.json's ids in order"
        for s, i in self.added.items():
            assert self.encoder.get(s, i) == i, s
        self.byte_encoder = bytes_to_unicode()
        alt = "|".join(regex.escape(s) for s in sorted(self.added, key=len, reverse=True))
        self.split = regex.compile(f"({alt})")

    def bpe(self, word):
        """OpenAI's bpe(): merge the adjacent pair of lowest rank everywhere, until none has a rank."""
        word = list(word)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode_plain(self, text):
        ids = []
        for piece in PAT.findall(text):
            s = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids += [self.encoder[t] for t in self.bpe(s)]
        return ids

    def encode(self, text):
        """transformers' encoding: the added (special) tokens are split out of the text first."""
        ids = []
        for part in self.split.split(text):
            if part in self.added:
                ids.append(self.added[part])
            elif part:
                ids += self.encode_plain(part)
        return ids

    def render(self, messages, add_generation_prompt):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message):
            raise TemplateError(message)

        env.globals["raise_exception"] = raise_exception
        special = {k: self.config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
        return env.from_string(self.config["chat_template"]).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **special)


# ---- the model ---------------------------------------------------------------------------------
class Model:
    def __init__(self, d):
        self.config = json.load(open(os.path.join(d, "config.json")))
        meta, tensors = read_safetensors(os.path.join(d, "model.safetensors"))
        c = self.config
        assert meta == {"format": "pt"}, meta
        assert c["model_type"] == "gpt2" and c["activation_function"] == "gelu_new" and c["tie_word_embeddings"]
        assert c["layer_norm_epsilon"] == 1e-5 and c["n_inner"] is None and c["n_positions"] == c["n_ctx"]
        assert c["attn_pdrop"] == c["resid_pdrop"] == c["embd_pdrop"] == 0.0
        assert "lm_head.weight" not in tensors
        self.P = {}
        for name, t in tensors.items():
            assert name.startswith("transformer.") or name == "score.weight", name
            self.P[name[len("transformer."):] if name.startswith("transformer.") else name] = t
        self.C, self.NH, self.L = c["n_embd"], c["n_head"], c["n_layer"]
        assert self.P["wte.weight"].shape == (c["vocab_size"], self.C)

    def hidden(self, idx):
        """ln_f output (B,T,C) of GPT-2 on idx (B,T); right padding is never attended (causal)."""
        P, C, NH = self.P, self.C, self.NH
        hs, (B, T) = C // NH, idx.shape
        ln = lambda x, n: F.layer_norm(x, (C,), P[n + ".weight"], P[n + ".bias"], eps=1e-5)
        x = P["wte.weight"][idx] + P["wpe.weight"][:T]
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for i in range(self.L):
            h = f"h.{i}."
            q, k, v = (ln(x, h + "ln_1") @ P[h + "attn.c_attn.weight"] + P[h + "attn.c_attn.bias"]).split(C, dim=-1)
            heads = lambda t: t.view(B, T, NH, hs).transpose(1, 2)
            att = (heads(q) @ heads(k).transpose(-2, -1)) / math.sqrt(hs)
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            a = (att @ heads(v)).transpose(1, 2).reshape(B, T, C)
            x = x + a @ P[h + "attn.c_proj.weight"] + P[h + "attn.c_proj.bias"]
            g = ln(x, h + "ln_2") @ P[h + "mlp.c_fc.weight"] + P[h + "mlp.c_fc.bias"]
            g = 0.5 * g * (1 + torch.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g ** 3)))
            x = x + g @ P[h + "mlp.c_proj.weight"] + P[h + "mlp.c_proj.bias"]
        return ln(x, "ln_f")

    def logits(self, ids):
        return (self.hidden(torch.tensor([ids])) @ self.P["wte.weight"].T)[0]

    def scores(self, inputs):
        """GPT2ForSequenceClassification: the logit at the last token that is not pad_token_id, plus rlhf's offset."""
        idx = torch.tensor(inputs)
        logits = (self.hidden(idx) @ self.P["score.weight"].T)[..., 0]
        pad = self.config["pad_token_id"]
        last = [max(t for t in range(idx.shape[1]) if idx[b, t] != pad) for b in range(idx.shape[0])]
        return torch.stack([logits[b, last[b]] for b in range(len(last))]) + self.config["rlhf_score_offset"]


# ---- the fixture -------------------------------------------------------------------------------
def as_bytes(s):
    return np.frombuffer(s.encode("utf-8"), np.uint8).astype(np.int32)


def f32(t):
    return t.to(torch.float32).numpy()


def check_layout(d, tok, kind):
    """What transformers needs beyond the weights: ids of the special tokens, generation's stop."""
    c = json.load(open(os.path.join(d, "config.json")))
    eos, pad, end = tok.added["<|endoftext|>"], tok.added["<|pad|>"], tok.added["<|end|>"]
    assert c["bos_token_id"] == c["eos_token_id"] == eos and c["pad_token_id"] == pad
    assert len(tok.encoder) + len([s for s in tok.added if s not in tok.encoder]) <= c["vocab_size"]
    assert tok.config["pad_token"] == "<|pad|>" and tok.config["tokenizer_class"] == "GPT2Tokenizer"
    assert json.load(open(os.path.join(d, "special_tokens_map.json")))["pad_token"] == "<|pad|>"
    if kind == "lm":
        assert c["architectures"] == ["GPT2LMHeadModel"]
        g = json.load(open(os.path.join(d, "generation_config.json")))
        assert end in g["eos_token_id"] and eos in g["eos_token_id"]
    else:
        assert c["architectures"] == ["GPT2ForSequenceClassification"] and c["num_labels"] == 1
        assert not os.path.exists(os.path.join(d, "generation_config.json"))
    try:  # the template refuses a role rlhf.h does not have
        tok.render([{"role": "tool", "content": "x"}], False)
        raise AssertionError("the template accepted role 'tool'")
    except TemplateError:
        pass


def token_records(tag, tok, rec):
    for i, t in enumerate(TEXTS):
        ids = tok.encode(t)
        assert not (set(ids) & set(tok.added.values())), "plain text must not hold special ids"
        rec.append((f"{tag}.ids.{i}", np.array(ids, np.int32)))
    for i, (msgs, gen) in enumerate(CONVS):
        text = tok.render([{"role": ROLES[r], "content": c} for r, c in msgs], bool(gen))
        rec.append((f"{tag}.conv.{i}.ids", np.array(tok.encode(text), np.int32)))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "hf_export")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests", "fixtures", "hf_export.bin")
    d = lambda name: os.path.join(src, name)
    tok, g2 = Tokenizer(d("trained")), Tokenizer(d("gpt2"))
    check_layout(d("trained"), tok, "lm")
    check_layout(d("gpt2"), g2, "lm")
    check_layout(d("reward"), Tokenizer(d("reward")), "score")

    rec = [("texts", np.array([len(TEXTS)], np.int32))]
    rec += [(f"text.{i}", as_bytes(t)) for i, t in enumerate(TEXTS)]
    rec.append(("convs", np.array([len(CONVS)], np.int32)))
    for i, (msgs, gen) in enumerate(CONVS):
        text = tok.render([{"role": ROLES[r], "content": c} for r, c in msgs], bool(gen))
        assert text == g2.render([{"role": ROLES[r], "content": c} for r, c in msgs], bool(gen))
        print(f"conv {i}: {text!r}")
        rec += [(f"conv.{i}.roles", np.array([r for r, _ in msgs], np.int32)),
                (f"conv.{i}.gen", np.array([gen], np.int32))]
        rec += [(f"conv.{i}.msg.{k}", as_bytes(c)) for k, (_, c) in enumerate(msgs)]
        rec.append((f"conv.{i}.text", as_bytes(text)))
    rec.append(("template", as_bytes(tok.config["chat_template"])))
    token_records("trained", tok, rec)
    token_records("gpt2", g2, rec)

    # logits: float64 forwards of the exported weights (F32, and the BF16 / F16 exports as stored)
    m = Model(d("trained"))
    for i in range(2):
        ids = tok.encode(TEXTS[i])[:16]
        rec += [(f"trained.lids.{i}", np.array(ids, np.int32)), (f"trained.logits.{i}", f32(m.logits(ids)))]
        if i == 0:
            for dt in ("bf16", "f16"):
                md = Model(d(f"trained_{dt}"))
                assert md.config["torch_dtype"] == {"bf16": "bfloat16", "f16": "float16"}[dt]
                rec.append((f"trained_{dt}.logits.0", f32(md.logits(ids))))
    mg = Model(d("gpt2"))
    ids, cols = g2.encode(TEXTS[1])[:16], list(range(0, 50257, 499)) + list(range(50256, 50262))
    rec += [("gpt2.lids.0", np.array(ids, np.int32)), ("gpt2.cols", np.array(cols, np.int32)),
            ("gpt2.logits.0", f32(mg.logits(ids)[:, cols]))]

    # the reward model: right-padded replies, scored at their last real token (<|end|>)
    mr, pad = Model(d("reward")), tok.added["<|pad|>"]
    rows = [tok.encode(tok.render([{"role": "user", "content": p}, {"role": "assistant", "content": r}], False))
            for p, r in REWARD_PAIRS]
    T = max(map(len, rows))
    assert T <= mr.config["n_positions"] and all(r[-1] == tok.added["<|end|>"] for r in rows)
    inputs = [r + [pad] * (T - len(r)) for r in rows]
    scores = mr.scores(inputs)
    print(f"reward scores {scores.tolist()} (offset {mr.config['rlhf_score_offset']})")
    rec += [("reward.inputs", np.array(inputs, np.int32)), ("reward.lengths", np.array(list(map(len, rows)), np.int32)),
            ("reward.scores", f32(scores))]

    # torch's rounding to BF16 and F16: ties, subnormals, the largest finite half, random values
    g = torch.Generator().manual_seed(3)
    edge = [0.0, -0.0, 1.0, -1.0, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9 + 2 ** -20,
            65504.0, 65519.0, -65519.0, 2 ** -14, 2 ** -14 - 2 ** -25, 2 ** -24, 2 ** -25, 2 ** -25 + 2 ** -40,
            3 * 2 ** -25, 5 * 2 ** -25, 1e-8, 6e-8, 1e-3, 0.1, -3.14159265, 1234.5678, 2 ** -126, 1e-40]
    vals = torch.cat([torch.tensor(edge, dtype=torch.float32), torch.randn(96, generator=g) * 30])
    rec += [("round.values", f32(vals)), ("round.bf16", f32(vals.to(torch.bfloat16).to(torch.float32))),
            ("round.f16", f32(vals.to(torch.float16).to(torch.float32)))]

    write_fixture(out, rec)
    back = read_fixture(out)
    assert [n for n, _ in back] == [n for n, _ in rec]
    for (n, a), (_, b) in zip(rec, back):
        assert np.array_equal(np.asarray(a), b), n
    print(f"wrote {out}: {len(rec)} records, {os.path.getsize(out)} bytes; read-back OK")


if __name__ == "__main__":
    main()
