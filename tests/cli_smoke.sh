#!/bin/sh
# The rlhf command end to end at toy sizes (run by `make test` after
# `rlhf demo --quick`, whose files it reuses): every stage, --resume, the
# inspection commands, plots, and a usage error's exit status.
# Usage: tests/cli_smoke.sh BUILD_DIR
set -eu
B=$1
R=$B/cli_smoke
Q=$B/demo_quick
rm -rf "$R"
mkdir -p "$R"
run() { "$B/rlhf" "$@" > "$R/out.txt" 2>&1 || { echo "FAIL: rlhf $*"; cat "$R/out.txt"; exit 1; }; }
run tokenizer --data "$Q/pretrain.txt" --vocab 300 --out "$R/tok.json"
run pretrain --data "$Q/pretrain.txt" --tokenizer "$R/tok.json" --out "$R/pre" --layers 2 --heads 2 --embd 32 --ctx 48 --steps 10 --batch 4
run sft --model "$R/pre/last.safetensors" --data "$Q/sft.jsonl" --out "$R/sft" --epochs 1 --batch 32
run sft --resume --data "$Q/sft.jsonl" --out "$R/sft" --epochs 2 --batch 32
grep -q '"step":12' "$R/sft/metrics.jsonl" || { echo "FAIL: sft --resume did not continue"; exit 1; }
run rm --model "$R/sft/last.safetensors" --data "$Q/rankings.jsonl" --out "$R/rm" --normalize-samples 8
# HH-RLHF's plain template: kept in the checkpoint, followed by rm, ppo and generate (replies end with EOS)
run sft --model "$R/pre/last.safetensors" --data "$Q/sft.jsonl" --out "$R/sft_hh" --steps 4 --batch 8 --template hh
run info "$R/sft_hh/last.safetensors"
grep -q "template hh" "$R/out.txt" || { echo "FAIL: sft --template hh is not in the checkpoint"; cat "$R/out.txt"; exit 1; }
for i in 1 2 3 4 5 6 7 8; do echo '{"prompt": "add 1 and 2", "chosen": "3", "rejected": "4"}'; done > "$R/pairs_short.jsonl"
run rm --model "$R/sft_hh/last.safetensors" --data "$R/pairs_short.jsonl" --out "$R/rm_hh" --steps 2 --normalize-samples 4
run ppo --policy "$R/sft_hh/last.safetensors" --reward "$R/rm_hh/last.safetensors" --prompts "$Q/prompts.jsonl" --out "$R/ppo_hh" --iters 1 --batch 4 --mini-batch 2 --max-new 4
run generate "$R/ppo_hh/policy.safetensors" --prompt "add 1 and 2" --max-new 4
# --recompute: the same checkpoints, byte for byte, from sft, rm and ppo (pretrain is sft's loop on text)
run sft --model "$R/pre/last.safetensors" --data "$Q/sft.jsonl" --out "$R/sft_hh_rc" --steps 4 --batch 8 --template hh --recompute
run rm --model "$R/sft_hh/last.safetensors" --data "$R/pairs_short.jsonl" --out "$R/rm_hh_rc" --steps 2 --normalize-samples 4 --recompute
run ppo --policy "$R/sft_hh/last.safetensors" --reward "$R/rm_hh/last.safetensors" --prompts "$Q/prompts.jsonl" --out "$R/ppo_hh_rc" --iters 1 --batch 4 --mini-batch 2 --max-new 4 --recompute
for f in sft_hh/last sft_hh_rc/last rm_hh/last rm_hh_rc/last ppo_hh/policy ppo_hh_rc/policy ppo_hh/critic ppo_hh_rc/critic; do
    test -s "$R/$f.safetensors" || { echo "FAIL: no $f.safetensors"; exit 1; }
done
cmp -s "$R/sft_hh/last.safetensors" "$R/sft_hh_rc/last.safetensors" || { echo "FAIL: sft --recompute changed the checkpoint"; exit 1; }
cmp -s "$R/rm_hh/last.safetensors" "$R/rm_hh_rc/last.safetensors" || { echo "FAIL: rm --recompute changed the checkpoint"; exit 1; }
cmp -s "$R/ppo_hh/policy.safetensors" "$R/ppo_hh_rc/policy.safetensors" || { echo "FAIL: ppo --recompute changed the policy"; exit 1; }
cmp -s "$R/ppo_hh/critic.safetensors" "$R/ppo_hh_rc/critic.safetensors" || { echo "FAIL: ppo --recompute changed the critic"; exit 1; }
run ppo --policy "$R/sft/last.safetensors" --reward "$R/rm/last.safetensors" --prompts "$Q/prompts.jsonl" --out "$R/ppo" --iters 1 --batch 4 --mini-batch 2 --max-new 4
run ppo --policy "$R/sft/last.safetensors" --reward "$R/rm/last.safetensors" --prompts "$Q/prompts.jsonl" --out "$R/ppo" --iters 2 --batch 4 --mini-batch 2 --max-new 4 --resume
grep -q "PPO: 2 iterations" "$R/out.txt" || { echo "FAIL: ppo --resume did not continue"; cat "$R/out.txt"; exit 1; }
run generate "$R/ppo/policy.safetensors" --prompt "add 1 and 2" --n 2 --max-new 4
run score "$R/rm/last.safetensors" --prompt "add 1 and 2" --response "3"
run eval "$R/sft/last.safetensors" --data "$Q/sft.jsonl"
run export "$R/sft/last.safetensors" --out "$R/hf_sft"
grep -q "as GPT2LMHeadModel, F32" "$R/out.txt" || { echo "FAIL: export"; cat "$R/out.txt"; exit 1; }
for f in config.json model.safetensors generation_config.json vocab.json merges.txt tokenizer_config.json special_tokens_map.json; do
    test -s "$R/hf_sft/$f" || { echo "FAIL: export wrote no $f"; exit 1; }
done
run export "$R/rm/last.safetensors" --out "$R/hf_sft" --overwrite --dtype bf16
grep -q "as GPT2ForSequenceClassification, BF16" "$R/out.txt" || { echo "FAIL: export of a reward model"; cat "$R/out.txt"; exit 1; }
run info "$R/hf_sft/model.safetensors"
grep -q "kind: reward (scalar head)" "$R/out.txt" || { echo "FAIL: the exported reward model did not read back"; cat "$R/out.txt"; exit 1; }
run info "$R/rm/last.safetensors"
grep -q "scalar head" "$R/out.txt" || { echo "FAIL: info"; exit 1; }
run plot "$R/ppo"
test -s "$R/ppo/ppo.svg"
echo "add 1 and 2" | "$B/rlhf" chat "$R/sft/last.safetensors" --max-new 4 > "$R/out.txt" 2>&1 || { echo "FAIL: chat"; exit 1; }
set +e
"$B/rlhf" sft --no-such-option > /dev/null 2>&1
[ $? -eq 2 ] || { echo "FAIL: a usage error must exit 2"; exit 1; }
"$B/rlhf" info "$R/no-such-file.safetensors" > /dev/null 2>&1
[ $? -eq 1 ] || { echo "FAIL: a runtime failure must exit 1"; exit 1; }
echo "rlhf command smoke run ok (tokenizer, pretrain, sft + resume, rm, ppo + resume, --recompute, generate, chat, score, eval, export, info, plot)"
