"""Generate tests/fixtures/gpt2_parity.bin: GPT-2 tokenizer reference encodings.

An independent re-implementation of OpenAI's GPT-2 encoder.py (no tiktoken, no
Hugging Face): map every byte to a printable unicode character (bytes_to_unicode),
split the text with GPT-2's pattern using the `regex` module, and apply the BPE
merges by rank exactly as OpenAI's bpe() does. It encodes ~60 hand-written texts
chosen to hit the tricky cases (Unicode classes, odd whitespace, contractions,
emoji, control bytes), checks that decoding gives back every text's bytes, and
writes the results for rlhf.h's tests to compare against.

Run from the repo root (needs Debian's python3-regex):
    /usr/bin/python3 tools/gen_gpt2_parity.py [output_path]
It reads ../shared/testdata/gpt2/{encoder.json,vocab.bpe} (never copied into
the repo); output_path defaults to tests/fixtures/gpt2_parity.bin.

Fixture format (little-endian):
    8 bytes magic b"RLHFFIX1", u32 record count, then per record:
    u32 name_len, name (ASCII), u32 dtype (0=float32, 1=int32),
    u32 ndim, ndim x u32 dims, prod(dims) elements.
Records: "count" i32[1] = number of texts N; then for i in 0..N-1:
    "text.<i>" i32[len] = the text's UTF-8 bytes, one byte per element (len may be 0);
    "ids.<i>"  i32[n]   = its GPT-2 token ids (n may be 0).
"""
import json
import os
import struct
import sys

import regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "testdata", "gpt2")
PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """OpenAI's byte -> printable char table: printable Latin-1 bytes map to
    themselves, the other 68 bytes to chr(256), chr(257), ... in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class Encoder:
    def __init__(self):
        with open(os.path.join(DATA, "encoder.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(DATA, "vocab.bpe"), encoding="utf-8") as f:
            merges = f.read().split("\n")[1:-1]  # skip the "#version" line and final empty line
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.byte_enc = bytes_to_unicode()
        self.byte_dec = {v: k for k, v in self.byte_enc.items()}

    def bpe(self, token):
        """Merge a word (a string of byte-chars) the way OpenAI's bpe() does."""
        word = tuple(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break  # no mergeable pair left
            first, second = best
            new, i = [], 0
            while i < len(word):  # merge every occurrence, left to right
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return word

    def encode(self, text):
        ids = []
        for piece in PAT.findall(text):
            chars = "".join(self.byte_enc[b] for b in piece.encode("utf-8"))
            ids += [self.encoder[t] for t in self.bpe(chars)]
        return ids

    def decode_bytes(self, ids):
        return bytes(self.byte_dec[c] for i in ids for c in self.decoder[i])


PARAGRAPHS = [
    "The lighthouse keeper wrote in his log every evening, even when nothing happened. "
    "On the night of the storm he noted the wind at forty knots, the barometer falling, "
    "and a single fishing boat that had not come home. He kept the lamp turning until dawn, "
    "then walked down to the harbour, where the boat's crew were already drinking tea and "
    "arguing about who had steered them through the rocks. He didn't tell them he'd been "
    "awake all night. Instead he went home, slept for three hours, and wrote: 'Wind easing. "
    "All vessels accounted for.' It was, he later said, the best sentence he'd ever written.",
    "To train a reward model, collect pairs of responses to the same prompt and ask people "
    "which one they prefer. The model learns to assign a higher score to the preferred answer, "
    "typically by minimising -log(sigmoid(r_chosen - r_rejected)). Once trained, it stands in "
    "for the human judges during reinforcement learning: the policy generates text, the reward "
    "model scores it, and PPO nudges the policy towards higher scores while a KL penalty keeps "
    "it close to the original model. Without that penalty the policy quickly finds strange, "
    "repetitive outputs that the reward model happens to like -- so-called reward hacking.",
    "Grandma's recipe card is stained and soft at the corners. It says: 2 cups flour, 1 tsp "
    "baking soda, a pinch of salt, 3/4 cup sugar, 2 eggs, 1 cup mashed bananas (very ripe!), "
    "and 1/2 cup melted butter. Mix the dry things; mix the wet things; combine them gently. "
    "Bake at 350\u00b0F for 55-60 minutes, or until a toothpick comes out clean. At the bottom, "
    "in different ink, someone added: \"Walnuts optional. Chocolate chips NOT optional.\" "
    "Nobody in the family admits to writing that line, but everyone follows it, every time, "
    "and we've never once regretted it.\n",
]

TEXTS = [
    # trivial and whitespace-only
    "", " ", "  ", " \t\n \r\n  ", "Hello world", " the", "  hello", "hello  ", "hello\n",
    "a b  c   d    e     f", "line1\nline2\n\nline4\n\n\n", "tab\tsep\t\tcols\t", "mixed \t \n\t  \n end",
    "trailing spaces and newline   \n  ", "\n\n\n", "\r\n\r\n", "a\u00a0b \u00a0c",
    # special-token text is ordinary text here
    "<|endoftext|>", "before<|endoftext|>after",
    # accented Latin, precomposed and decomposed (e + U+0301 combining acute, i + U+0308 diaeresis)
    "café señor über Ångström", "cafe\u0301 nai\u0308ve", "ÉCOLE école à la crème",
    # other scripts
    "Καλημέρα κόσμε", "Привет, мир!",
    "عدد ٣٤ و ١٢٣", "नमस्ते दुनिया",  # Arabic with Arabic-Indic digits; Hindi (virama, vowel signs)
    "你好，世界！", "こんにちは カタカナ", "안녕하세요 세계",
    "\u3000full\u3000width\u3000space",
    # emoji: astral, ZWJ sequences, skin tones, flags, variation selectors
    "I \u2764\ufe0f tokens \U0001F600\U0001F602",
    "family: \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466",
    "wave \U0001F44B\U0001F3FD thumbs \U0001F44D\U0001F3FF",
    "flags \U0001F1EF\U0001F1F5\U0001F1FA\U0001F1F8 \U0001F3F3\ufe0f\u200d\U0001F308",
    "math \U0001D400\U0001D401 and \U00020000",
    # control bytes and odd whitespace
    "ctl\x01\x02\x1b[31mred\x1b[0m\x7f", "nul\x00in\x00the middle\x00", "nel\x85next line", "bom\ufeffinside \ufeff",
    "ls\u2028ps\u2029end", "fs\x1cgs\x1drs\x1eus\x1f", "thin\u2009space hair\u200aspace", "zero\u200bwidth",
    # contractions
    "it's can't we're they've I'm you'll he'd", "IT'S CAN'T WE'RE THEY'VE I'M YOU'LL HE'D",
    "don't 'tis 's 't 'll", "rock 'n' roll, the '90s", "O'Brien's", "it\u2019s curly",
    # numbers
    "1234567890", "3.14159 and 2.71828", "1e10 -42 +7 0x1F", "version 1.2.3-rc4",
    "\u0663\u0664 \u00b2\u00b3 \u00bd \u2167",  # Arabic-Indic 34, superscripts, one half, Roman numeral 8
    # punctuation, code, structured text
    "What?!... Really?!?! --- yes.", "```python\nprint('hi')\n```", "https://example.com/a/b?x=1&y=two#frag",
    "mail me: first.last+tag@example.co.uk", '{"a": [1, 2.5, null], "b": {"c": "d\\n"}}',
    "int main(void) {\n\tfor (int i = 0; i < 10; i++) { printf(\"%d\\n\", i); }\n\treturn 0;\n}\n",
    "$$ \\frac{a}{b} $$ ~~~ ### @@@ %%% ^^^", "snake_case_name __init__ CamelCase",
] + PARAGRAPHS


def write_fixture(path, records):
    """records: list of (name, list of int32 values); each stored as a 1-D int32 array."""
    with open(path, "wb") as f:
        f.write(b"RLHFFIX1" + struct.pack("<I", len(records)))
        for name, vals in records:
            nb = name.encode("ascii")
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<III", 1, 1, len(vals)))  # dtype int32, ndim 1, dim
            f.write(struct.pack(f"<{len(vals)}i", *vals))


def main():
    enc = Encoder()
    # Known answers from the real GPT-2 tokenizer.
    assert enc.encode("Hello world") == [15496, 995]
    assert enc.encode(" the") == [262]
    eot = enc.encode("<|endoftext|>")
    assert 50256 not in eot and len(eot) > 1, eot  # special token text is NOT special here

    records = [("count", [len(TEXTS)])]
    total_bytes = total_ids = 0
    for i, text in enumerate(TEXTS):
        data = text.encode("utf-8")
        ids = enc.encode(text)
        assert enc.decode_bytes(ids) == data, (i, text)  # round trip must be exact
        records += [(f"text.{i}", list(data)), (f"ids.{i}", ids)]
        total_bytes += len(data)
        total_ids += len(ids)

    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "gpt2_parity.bin")
    write_fixture(out, records)
    print(f"{out}: {len(TEXTS)} texts, {total_bytes} bytes, {total_ids} ids, "
          f"<|endoftext|> -> {eot}")


if __name__ == "__main__":
    main()
