#!/bin/sh
# Long records, one rule in every command (issue 13, item 5): sft, rm (and its
# normalisation), eval, score --data and ppo read files that mix short records
# with records longer than the context (48 tokens here), and each prints the
# counts of the rule in one line: records kept, prompts cut from the left
# (mid-turn apart), records skipped because a completion alone does not fit.
# The counts are exact: the short records fit with room to spare, the long
# ones are hundreds of tokens. Reuses the checkpoints of `rlhf demo --quick`.
# Usage: tests/cli_long.sh BUILD_DIR
set -u
B=$1
Q=$B/demo_quick
R=$B/cli_long
rm -rf "$R"
mkdir -p "$R"
fails=0
OUT=$R/out.txt
# run STATUS ARGS...: rlhf ARGS exits STATUS
run() {
    want=$1
    shift
    "$B/rlhf" "$@" > "$OUT" 2>&1
    got=$?
    [ "$got" -eq "$want" ] || { echo "FAIL: rlhf $* exited $got, want $want"; sed 's/^/    /' "$OUT" | tail -n 8; fails=$((fails + 1)); }
}
# has TEXT: the last output holds exactly one line containing TEXT
has() {
    n=$(grep -cF -- "$1" "$OUT")
    [ "$n" -eq 1 ] || { echo "FAIL: \"$1\" printed $n times"; sed 's/^/    /' "$OUT" | tail -n 8; fails=$((fails + 1)); }
}

L="reverse: gray blue green pink gold. greet Dee politely and add 19 and 6, then add 0 and 14, nice to meet you, hello Fay."
LONG="$L $L $L $L"   # about 400 bytes: far more than 48 tokens

# SFT: 5 short, 3 with a long prompt (one user turn: cut mid-turn), 1 conversation whose last
# exchange fits (cut at a turn), 2 whose completion alone is too long (skipped)
{
    for i in 1 2 3 4 5; do printf '{"prompt": "add %d and 2", "completion": "%d"}\n' "$i" $((i + 2)); done
    for i in 1 2 3; do printf '{"prompt": "%s add %d and 1", "completion": "%d"}\n' "$LONG" "$i" $((i + 1)); done
    printf '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "hello"}, ' "$LONG"
    printf '{"role": "user", "content": "add 2 and 2"}, {"role": "assistant", "content": "4"}]}\n'
    for i in 1 2; do printf '{"prompt": "greet Dee politely", "completion": "%s"}\n' "$LONG"; done
} > "$R/sft.jsonl"
# preference pairs: 6 short, 3 with a long prompt, 2 with a long chosen completion (skipped)
{
    for i in 1 2 3 4 5 6; do printf '{"prompt": "add %d and 1", "chosen": "%d", "rejected": "hello"}\n' "$i" $((i + 1)); done
    for i in 1 2 3; do printf '{"prompt": "%s add %d and 1", "chosen": "%d", "rejected": "blue"}\n' "$LONG" "$i" $((i + 1)); done
    for i in 1 2; do printf '{"prompt": "greet Fay politely", "chosen": "%s", "rejected": "hello"}\n' "$LONG"; done
} > "$R/prefs.jsonl"
# PPO prompts: 3 short, 2 long
{
    for i in 1 2 3; do printf '{"prompt": "add %d and 3"}\n' "$i"; done
    for i in 1 2; do printf '{"prompt": "%s add %d and 3"}\n' "$LONG" "$i"; done
} > "$R/prompts.jsonl"

run 0 sft --model "$Q/sft.safetensors" --data "$R/sft.jsonl" --out "$R/sft" --steps 2 --batch 4 --val-fraction 0
has "sft: 9 records kept (4 prompts cut from the left, 3 mid-turn), 2 skipped (completion longer than 48 tokens)"
run 0 sft --model "$Q/sft.safetensors" --data "$R/sft.jsonl" --out "$R/sft40" --steps 1 --batch 4 --val-fraction 0 --max-len 40
has "sft: 9 records kept (4 prompts cut from the left, 3 mid-turn), 2 skipped (completion longer than 40 tokens)"
run 0 eval "$Q/sft.safetensors" --data "$R/sft.jsonl"
has "eval: 9 records kept (4 prompts cut from the left, 3 mid-turn), 2 skipped (completion longer than 48 tokens)"
has "tokens of 9 records"
run 0 rm --model "$Q/sft.safetensors" --data "$R/prefs.jsonl" --out "$R/rm" --steps 2 --batch 4 --val-fraction 0 --normalize-samples 11
has "rm: 9 records kept (3 prompts cut from the left, 3 mid-turn), 2 skipped (completion longer than 47 tokens)"
# the normalisation samples every record's prompt once, cut to 48 - 24 tokens (24 kept for the reply)
has "rm normalisation: 11 prompts kept (3 cut from the left to 24 tokens, 3 mid-turn)"
has "last.safetensors normalised"
run 0 score "$R/rm/last.safetensors" --data "$R/prefs.jsonl"
has "score: 9 records kept (3 prompts cut from the left, 3 mid-turn), 2 skipped (completion longer than 47 tokens)"
[ "$(grep -c '^line ' "$OUT")" -eq 9 ] || { echo "FAIL: score --data printed $(grep -c '^line ' "$OUT") scored lines, want 9"; fails=$((fails + 1)); }
run 0 eval "$R/rm/last.safetensors" --data "$R/prefs.jsonl" --max-len 30
has "eval: 9 records kept (3 prompts cut from the left, 3 mid-turn), 2 skipped (completion longer than 29 tokens)"
run 0 score "$R/rm/last.safetensors" --prompt "$LONG" --response "4"
has "score: the prompt was cut from the left (inside its last turn) to fit 48 tokens with the response"
run 1 score "$R/rm/last.safetensors" --prompt "add 1 and 1" --response "$LONG"
has "the response alone is longer than 47 tokens"
run 0 ppo --policy "$Q/sft.safetensors" --reward "$R/rm/last.safetensors" --prompts "$R/prompts.jsonl" --out "$R/ppo" --iters 1 --batch 4 \
    --mini-batch 2 --max-new 4 --max-len 20
has "ppo: 5 prompts kept (2 cut from the left to 16 tokens, 2 mid-turn)"
# --max-len is checked against the model's context, and below 2 is a usage error
run 2 eval "$Q/sft.safetensors" --data "$R/sft.jsonl" --max-len 49
has "--max-len 49 is longer than the model's context (48)"
run 2 score "$R/rm/last.safetensors" --data "$R/prefs.jsonl" --max-len 1
has "--max-len must be an integer in [2, 1048576]"
run 2 ppo --policy "$Q/sft.safetensors" --reward "$R/rm/last.safetensors" --prompts "$R/prompts.jsonl" --out "$R/ppo2" --max-new 4 --max-len 5
has "--max-len 5 leaves no room for a prompt after --max-new 4"
run 2 rm --model "$Q/sft.safetensors" --data "$R/prefs.jsonl" --out "$R/rm2" --max-len 100
has "--max-len 100 is longer than the model's context (48)"
run 0 rm --model "$Q/sft.safetensors" --data "$R/prefs.jsonl" --out "$R/rm3" --steps 1 --batch 4 --val-fraction 0 --no-normalize
has "warning: --no-normalize: the reward model's scores are raw"

# a normalisation that cannot run fails the command (exit 1, the checkpoint kept but unnormalised) unless --no-normalize:
# a policy taught to end every reply at once, and one prompt, give identical samples whose scores have no spread
for i in 1 2 3 4 5 6 7 8; do printf '{"prompt": "add %d and 2", "completion": ""}\n' "$i"; done > "$R/empty.jsonl"
for i in 1 2 3; do printf '{"prompt": "add 1 and 2", "chosen": "3", "rejected": "hello"}\n'; done > "$R/same.jsonl"
run 0 sft --model "$Q/sft.safetensors" --data "$R/empty.jsonl" --out "$R/esft" --steps 30 --batch 8 --lr 1e-2 --warmup 0 --val-fraction 0
run 1 rm --model "$R/esft/last.safetensors" --data "$R/same.jsonl" --out "$R/erm" --steps 1 --batch 2 --val-fraction 0 --normalize-samples 4
has "normalisation failed: the 4 raw rewards have std 0: cannot normalise; the checkpoints in $R/erm are left UNNORMALISED"
run 0 info "$R/erm/last.safetensors"
has "reward normalisation: none (raw scores)"
run 0 rm --model "$R/esft/last.safetensors" --data "$R/same.jsonl" --out "$R/erm" --overwrite --steps 1 --batch 2 --val-fraction 0 --no-normalize

[ "$fails" -eq 0 ] || { echo "cli_long: $fails failures"; exit 1; }
echo "rlhf long records ok (sft, rm + normalisation, eval, score --data, ppo: one rule, the counts printed; a failed normalisation fails rm)"
