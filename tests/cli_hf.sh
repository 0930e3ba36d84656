#!/bin/sh
# The rlhf command on a Hugging Face GPT-2 directory (issue 13): a model of
# GPT-2's shape (V = 50,257, tiny widths; written at test time by
# build/hf_gpt2_dir) fine-tuned through the chat template with GPT-2's own
# tokenizer files. `rlhf sft` grows the vocabulary by rlhf's 5 markers to
# 50,262, the loss goes down, and the checkpoints it writes carry the grown
# vocabulary and the tokenizer into generate, chat, rm and ppo. Then the
# tokenizer from the directory itself, and the errors of a broken directory.
# Usage: tests/cli_hf.sh BUILD_DIR [GPT2_DIR]   (GPT2_DIR: ../shared/testdata/gpt2)
set -eu
B=$1
G=${2:-../shared/testdata/gpt2}
R=$B/cli_hf
if [ ! -f "$G/encoder.json" ] || [ ! -f "$G/vocab.bpe" ]; then
    echo "cli_hf: GPT-2's tokenizer files not found in $G: skipped"
    exit 0
fi
rm -rf "$R"
mkdir -p "$R"
run() { "$B/rlhf" "$@" > "$R/out.txt" 2>&1 || { echo "FAIL: rlhf $*"; cat "$R/out.txt"; exit 1; }; }
has() { grep -q -- "$1" "$R/out.txt" || { echo "FAIL: expected \"$1\" in:"; cat "$R/out.txt"; exit 1; }; }
expect() { # expect STATUS PATTERN ARGS...: the exit status and a line of the output
    want=$1 pat=$2
    shift 2
    set +e
    "$B/rlhf" "$@" > "$R/out.txt" 2>&1
    got=$?
    set -e
    [ "$got" -eq "$want" ] || { echo "FAIL: rlhf $* exited $got, want $want"; cat "$R/out.txt"; exit 1; }
    has "$pat"
}

"$B/hf_gpt2_dir" "$R/gpt2" > /dev/null
cat > "$R/sft.jsonl" << 'DATA'
{"prompt": "What is the capital of France?", "completion": "Paris."}
{"prompt": "Add 2 and 3.", "completion": "5"}
{"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"}]}
{"prompt": "Name a colour.", "completion": "Blue."}
DATA
printf '{"prompt": "Add 2 and 3.", "chosen": "5", "rejected": "7"}\n{"prompt": "Say hello.", "chosen": "Hello!", "rejected": "No."}\n' > "$R/prefs.jsonl"
printf '{"prompt": "Add 2 and 3."}\n{"prompt": "Say hello."}\n' > "$R/prompts.jsonl"

# a V = 50,257 GPT-2 through sft with the chat template: the vocabulary grows, the loss goes down
run info "$R/gpt2"
has "config: vocab 50257"
run sft --model "$R/gpt2" --tokenizer "$G" --data "$R/sft.jsonl" --out "$R/sft" --steps 20 --batch 4 --lr 1e-2 --val-fraction 0 --log-every 1
has "sft: vocabulary grown from 50257 to 50262 tokens for <|pad|> <|system|> <|user|> <|assistant|> <|end|>"
first=$(grep -m1 '"loss"' "$R/sft/metrics.jsonl" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
last=$(grep '"loss"' "$R/sft/metrics.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1) }' || { echo "FAIL: the SFT loss did not go down ($first -> $last)"; exit 1; }
run info "$R/sft/last.safetensors"
has "config: vocab 50262"
has "tokenizer: 50262 tokens (EOS 50256, pad 50257, <|end|> 50261)"

# its checkpoint in the other commands
run generate "$R/sft/last.safetensors" --prompt "Add 2 and 3." --max-new 4 --n 2
echo "Say hello." | "$B/rlhf" chat "$R/sft/last.safetensors" --max-new 4 > "$R/out.txt" 2>&1 || { echo "FAIL: chat"; cat "$R/out.txt"; exit 1; }
run rm --model "$R/sft/last.safetensors" --data "$R/prefs.jsonl" --out "$R/rm" --steps 2 --batch 2 --val-fraction 0 --normalize-samples 4
run ppo --policy "$R/sft/last.safetensors" --reward "$R/rm/last.safetensors" --prompts "$R/prompts.jsonl" --out "$R/ppo" --iters 1 --batch 2 --mini-batch 2 --max-new 4
has "PPO: 1 iterations"

# the model directory alone cannot chat: its tokenizer has the markers, its embedding not
expect 1 "no tokenizer here" generate "$R/gpt2" --prompt hi
cp "$G/encoder.json" "$R/gpt2/vocab.json"
cp "$G/vocab.bpe" "$R/gpt2/merges.txt"
expect 1 "the tokenizer has 50262 tokens but the model only 50257" generate "$R/gpt2" --prompt hi
# the tokenizer from the directory's own files (vocab.json + merges.txt), and rm straight from the directory
run sft --model "$R/gpt2" --data "$R/sft.jsonl" --out "$R/sft2" --steps 2 --batch 4 --val-fraction 0
has "vocabulary grown from 50257 to 50262"
run rm --model "$R/gpt2" --data "$R/prefs.jsonl" --out "$R/rm2" --steps 2 --batch 2 --val-fraction 0 --normalize-samples 2
has "rm: vocabulary grown from 50257 to 50262"
run score "$R/rm2/last.safetensors" --prompt "Add 2 and 3." --response "5"
printf 'The capital of France is Paris. Two and three make five.\n' > "$R/text.txt"
run pretrain --model "$R/gpt2" --data "$R/text.txt" --out "$R/pre" --steps 2 --batch 2 --val-fraction 0
has "pretrain: vocabulary grown from 50257 to 50262"
expect 1 "carries its own tokenizer" sft --model "$R/sft/last.safetensors" --tokenizer "$G" --data "$R/sft.jsonl" --out "$R/sft3" --steps 1
# --tokenizer in each file form, and a tokenizer of another kind
run sft --model "$R/gpt2" --tokenizer "$G/encoder.json" --data "$R/sft.jsonl" --out "$R/sft4" --steps 1 --batch 4 --val-fraction 0
run sft --model "$R/gpt2" --tokenizer "$R/gpt2/merges.txt" --data "$R/sft.jsonl" --out "$R/sft5" --steps 1 --batch 4 --val-fraction 0
printf '{"model": {"type": "WordPiece", "vocab": {}}}' > "$R/wp.json"
expect 1 "the model is WordPiece, not BPE" sft --model "$R/gpt2" --tokenizer "$R/wp.json" --data "$R/sft.jsonl" --out "$R/sft6" --steps 1

# broken directories
mkdir -p "$R/empty"
expect 1 "is a directory without config.json" sft --model "$R/empty" --data "$R/sft.jsonl" --out "$R/s7" --steps 1
cp "$R/gpt2/config.json" "$R/empty/"
expect 1 "no weights: neither model.safetensors nor model.safetensors.index.json" info "$R/empty"
echo "rlhf on a Hugging Face GPT-2 directory ok (V 50257 -> 50262 through sft, loss $first -> $last; generate, chat, rm, ppo, score; errors)"
