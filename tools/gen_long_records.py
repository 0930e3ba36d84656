#!/usr/bin/env python3
"""Write a synthetic long-record dataset, shaped like Anthropic's HH-RLHF, to
measure the long-record rule of every command (README, "Long records").

Multi-turn conversations of 1 to 7 exchanges whose turns run from a few words
to a few hundred (a long tail, as real transcripts have), in four files:

  sft.jsonl      {"messages": [...]}: the last assistant turn is the completion
  prefs.jsonl    HH-RLHF pairs {"chosen": "\\n\\nHuman: ... \\n\\nAssistant: ...",
                 "rejected": ...}: one transcript, two last replies
  prompts.jsonl  {"messages": [...]} ending in a user turn (PPO prompts)
  text.txt       the transcripts as plain text (to train a tokenizer on)

Deterministic for a seed. Usage: tools/gen_long_records.py OUT_DIR [N] [SEED]
(N records per file, default 2000). Writes only into OUT_DIR (use build/...).
"""
import json
import os
import random
import sys

WORDS = ("the a of to and in is it you that for on with as are be this was have not or by at from but they can "
         "what how why when where which who would could should will my your our their there here about into over "
         "help question answer please thanks sure maybe because really think know want need make take give find "
         "good bad better best time people way day water food house car city money work school friend family dog "
         "cat book story music game code error file data model train learn test result value number list small "
         "large long short first last next again never always often idea plan step problem reason example").split()


def sentence(rng, words):
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def turn(rng, long_tail):
    """A turn of 1 to 4 sentences; one turn in long_tail is an essay of 150 to 400 words."""
    if rng.random() < long_tail:
        n = rng.randint(150, 400)
        return " ".join(sentence(rng, 10) for _ in range(n // 10))
    return " ".join(sentence(rng, rng.randint(4, 14)) for _ in range(rng.randint(1, 4)))


def conversation(rng):
    """Alternating user / assistant turns, 1 to 7 exchanges, ending with an assistant turn."""
    msgs = []
    for _ in range(rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6, 7))):
        msgs.append({"role": "user", "content": turn(rng, 0.06)})
        msgs.append({"role": "assistant", "content": turn(rng, 0.08)})
    return msgs


def hh(msgs):
    return "".join(("\n\nHuman: " if m["role"] == "user" else "\n\nAssistant: ") + m["content"] for m in msgs)


def write(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    os.makedirs(out, exist_ok=True)
    sft, prefs, prompts, text = [], [], [], []
    for _ in range(n):
        c = conversation(rng)
        sft.append(json.dumps({"messages": c}) + "\n")
        text.append(hh(c) + "\n")
    for _ in range(n):
        c = conversation(rng)
        other = dict(c[-1], content=turn(rng, 0.08))
        prefs.append(json.dumps({"chosen": hh(c), "rejected": hh(c[:-1] + [other])}) + "\n")
    for _ in range(n):
        prompts.append(json.dumps({"messages": conversation(rng)[:-1]}) + "\n")
    write(os.path.join(out, "sft.jsonl"), sft)
    write(os.path.join(out, "prefs.jsonl"), prefs)
    write(os.path.join(out, "prompts.jsonl"), prompts)
    write(os.path.join(out, "text.txt"), text)
    print(f"{out}: {n} SFT conversations, {n} HH-RLHF pairs, {n} PPO prompts, text.txt")


if __name__ == "__main__":
    main()
