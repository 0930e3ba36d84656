#!/bin/sh
# `rlhf demo --tiny`, the demo for a small board (run by `make test`): it must finish with its report,
# its peak resident memory (getrusage, in report.json; /usr/bin/time's too when installed) at most
# 64 MB, and every stage must print its memory budget first. Then the budget of the training
# commands on its files: sft (one model), rm (with the normalisation's SFT model), dpo (and its
# reference), ppo (the four models), grpo at --kl-coef 0 (no reference, no critic), and rlhf info's.
# Usage: tests/cli_tiny.sh BUILD_DIR
set -eu
B=$1
D=$B/demo_tiny
R=$B/cli_tiny
LIMIT=67108864 # 64 MB
rm -rf "$D" "$R"
mkdir -p "$R"
fail() { echo "FAIL: $*"; exit 1; }
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%M" -o "$R/time.txt" "$B/rlhf" demo --tiny --out "$D" > "$R/demo.txt" 2>&1 || { cat "$R/demo.txt"; fail "rlhf demo --tiny"; }
    kb=$(tail -1 "$R/time.txt")
    [ "$kb" -le $((LIMIT / 1024)) ] || fail "rlhf demo --tiny: peak resident memory $kb kB (/usr/bin/time) is over 64 MB"
else
    "$B/rlhf" demo --tiny --out "$D" > "$R/demo.txt" 2>&1 || { cat "$R/demo.txt"; fail "rlhf demo --tiny"; }
fi
peak=$(sed -n 's/.*"peak_rss_bytes": \([0-9]*\).*/\1/p' "$D/report.json")
[ -n "$peak" ] || fail "rlhf demo --tiny: no peak_rss_bytes in $D/report.json"
[ "$peak" -le $LIMIT ] || fail "rlhf demo --tiny: peak resident memory $peak bytes is over 64 MB"
grep -q '"win_rate_ppo_vs_sft"' "$D/report.json" || fail "rlhf demo --tiny: no win rate in its report"
expect() { # FILE PATTERN...: each pattern on a line of FILE
    f=$1
    shift
    for p in "$@"; do grep -q "$p" "$f" || { cat "$f"; fail "no line \"$p\" in $f"; }; done
}
expect "$R/demo.txt" "demo pretraining: memory: model, trained on 8 x 48 tokens" "demo pretraining: memory: .* MB for the 1 model" \
    "demo SFT: memory: model, trained on 16 x 48" "demo reward model: memory: model, trained on 18 x 48" \
    "demo PPO: memory: policy, trained on 4 x 40" "demo PPO: memory: critic, trained on 4 x 40" \
    "demo PPO: memory: reference, frozen, log-probs of 4 x 40" "demo PPO: memory: reward model, frozen, forwards of 4 x 40" \
    "demo PPO: memory: .* MB for the 6 models"
run() { # OUT ARGS...: rlhf ARGS, its output in OUT
    out=$1
    shift
    "$B/rlhf" "$@" > "$out" 2>&1 || { cat "$out"; fail "rlhf $*"; }
}
run "$R/sft.txt" sft --model "$D/base.safetensors" --data "$D/sft.jsonl" --out "$R/sft" --steps 2 --batch 8 --eval-every 0
expect "$R/sft.txt" "sft: memory: model, trained on 8 x 48 tokens: .* MB (weights .*, gradients .*, AdamW .*, activations .*)" \
    "sft: memory: .* MB for the 1 model"
run "$R/rm.txt" rm --model "$D/sft.safetensors" --data "$D/rankings.jsonl" --out "$R/rm" --steps 2 --batch 2 --normalize-samples 4
expect "$R/rm.txt" "rm: memory: reward model, trained on 18 x 48" "rm: memory: SFT model sampling for the normalisation, frozen" \
    "rm: memory: .* MB for the 2 models"
run "$R/dpo.txt" dpo --model "$D/sft.safetensors" --data "$D/rankings.jsonl" --out "$R/dpo" --steps 2 --batch 2
expect "$R/dpo.txt" "dpo: memory: model, trained on 18 x 48" "dpo: memory: reference, frozen, log-probs of 18 x 48" \
    "dpo: memory: .* MB for the 2 models"
run "$R/ppo.txt" ppo --policy "$D/sft.safetensors" --reward "$D/rm.safetensors" --prompts "$D/prompts.jsonl" --out "$R/ppo" \
    --iters 1 --batch 4 --mini-batch 2 --max-new 8 --max-prompt 24
expect "$R/ppo.txt" "ppo: memory: policy, trained on 2 x 32" "ppo: memory: critic, trained on 2 x 32" \
    "ppo: memory: reference, frozen, log-probs of 2 x 32" "ppo: memory: reward model, frozen, forwards of 2 x 32" \
    "ppo: memory: .* MB for the 4 models"
run "$R/grpo.txt" grpo --policy "$D/sft.safetensors" --reward "$D/rm.safetensors" --prompts "$D/prompts.jsonl" --out "$R/grpo" \
    --iters 1 --batch 4 --mini-batch 2 --max-new 8 --max-prompt 24 --kl-coef 0
expect "$R/grpo.txt" "grpo: memory: policy, trained on 2 x 32" "grpo: memory: .* MB for the 2 models"
! grep -q "grpo: memory: \(critic\|reference\)" "$R/grpo.txt" || fail "grpo at --kl-coef 0 counts a critic or a reference"
run "$R/info.txt" info "$D/sft.safetensors"
expect "$R/info.txt" "memory to train on 8 x 48 tokens" "memory for PPO, minibatches of 8 x 48 tokens, four models of this size"
echo "rlhf demo --tiny ok: peak resident memory $((peak / 1048576)) MB (at most 64), memory budgets printed by the demo, sft, rm, dpo, ppo, grpo and info"
