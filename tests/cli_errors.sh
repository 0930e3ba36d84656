#!/bin/sh
# The rlhf command as a stranger uses it: wrong paths, the wrong kind of file,
# nonsense option values, a run directory used twice, Ctrl-C, SIGTERM and
# kill -9 in the middle of PPO saves, a full disk under the tokenizer's write.
# Every case checks the exit status (0, 1 runtime, 2 usage, 130/143 signals),
# the message, that it is printed once, and that nothing crashed: `make test`
# runs it on build/rlhf, `make debug` on an ASan + UBSan build of the tool.
# Reuses the files of `rlhf demo --quick` (DEMO_DIR).
# Usage: tests/cli_errors.sh RLHF_BINARY WORK_DIR DEMO_DIR
set -u
X=$1
W=$2
Q=$3
rm -rf "$W"
mkdir -p "$W"
ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}allocator_may_return_null=1:detect_leaks=1
export ASAN_OPTIONS
fails=0
cases=0
OUT=$W/out.txt
# LLVM's OpenMP runtime (clang builds) registers each process in /dev/shm and removes the entry at exit; a process
# killed with kill -9 leaves it behind, and once /dev/shm is full every program started with that runtime dies of
# SIGBUS. forget_killed PID tidies up after a process this script killed.
forget_killed() { rm -f "/dev/shm/__KMP_REGISTERED_LIB_$1_"* 2>/dev/null; }

bad() {
    echo "FAIL: $1"
    sed 's/^/    /' "$OUT" | head -n 15
    fails=$((fails + 1))
}
# expect STATUS REGEX ARGS...: rlhf ARGS exits STATUS, its output matches REGEX, no sanitizer report
expect() {
    want=$1
    pat=$2
    shift 2
    cases=$((cases + 1))
    "$X" "$@" > "$OUT" 2>&1 < /dev/null
    got=$?
    if grep -qE "Sanitizer|runtime error:|Segmentation|Aborted|munmap|double free" "$OUT"; then bad "rlhf $*: crashed"; return; fi
    [ "$got" -eq "$want" ] || { bad "rlhf $*: exit $got, want $want"; return; }
    grep -qE -- "$pat" "$OUT" || bad "rlhf $*: output does not match /$pat/"
}
# once REGEX: the last output holds exactly one line matching REGEX (errors are printed once)
once() {
    n=$(grep -cE -- "$1" "$OUT")
    [ "$n" -eq 1 ] || bad "\"$1\" printed $n times"
}
# stop_when FILE REGEX: once FILE holds REGEX (or after 60 s), SIGINT to the background $pid; its exit status in st
stop_when() {
    i=0
    while [ $i -lt 600 ] && ! grep -q "$2" "$1" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -INT $pid
    wait $pid
    st=$?
}

SFT=$Q/sft.safetensors
RM=$Q/rm.safetensors
P=$Q/prompts.jsonl
PPO="--iters 1 --batch 4 --mini-batch 2 --max-new 4"

# --- wrong paths and the wrong kind of file: clear errors, no crash (cmd_ppo's cleanup) ---
expect 1 "rlhf ppo: --reward: .*typo.safetensors: cannot open the file: No such file or directory" ppo --policy "$SFT" --reward "$W/typo.safetensors" --prompts "$P" --out "$W/p1" $PPO
once "rlhf ppo:"
expect 1 "no-such-prompts.jsonl" ppo --policy "$SFT" --reward "$RM" --prompts "$W/no-such-prompts.jsonl" --out "$W/p2" $PPO
printf '{"prompt": "add 1 and 2"}\n{"prompt": \n' > "$W/broken.jsonl"
expect 1 "broken.jsonl:2:" ppo --policy "$SFT" --reward "$RM" --prompts "$W/broken.jsonl" --out "$W/p3" $PPO
once "broken.jsonl:2:"
expect 0 "1 bad records skipped" ppo --policy "$SFT" --reward "$RM" --prompts "$W/broken.jsonl" --out "$W/p3b" $PPO --skip-bad
expect 1 "no scalar head: it is a policy" ppo --policy "$SFT" --reward "$SFT" --prompts "$P" --out "$W/p4" $PPO
expect 1 "scalar head\): a policy" ppo --policy "$RM" --reward "$RM" --prompts "$P" --out "$W/p5" $PPO
expect 1 "is a directory" info "$Q"
# info's memory line: its parts add up to its total (each rounded to 0.1 MB: within 0.3)
expect 0 "memory to train on" info "$SFT"
grep "memory to train on" "$OUT" | sed 's/.*: \([0-9.]*\) MB (\(.*\))/\1 \2/' | awk '{ s = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9.]+,?$/) s += $i + 0;
    d = s - $1; if (d < -0.3 || d > 0.3) exit 1 }' || bad "info: the parts of the memory line do not add up to its total"
expect 1 "rlhf info: CHECKPOINT: .*none.safetensors: cannot open the file: No such file or directory" info "$W/none.safetensors"
expect 1 "rlhf pretrain: --tokenizer .*none/tok.json: cannot read the file: No such file or directory" pretrain --data "$Q/pretrain.txt" --tokenizer "$W/none/tok.json" --out "$W/pt_none"
expect 1 "looks like a JSON file" info "$Q/report.json"
expect 1 "scalar head\): a policy" generate "$RM" --prompt hi
expect 1 "^rlhf eval: " eval "$SFT" --data "$W/no-such.jsonl"
expect 1 "is a directory" eval "$SFT" --data "$Q"
printf '\357\273\277{"prompt": "add 1 and 2"}\n' > "$W/bom.jsonl"
expect 0 "PPO: 1 iterations" ppo --policy "$SFT" --reward "$RM" --prompts "$W/bom.jsonl" --out "$W/p6" $PPO

# --- TRL's conversational forms and HH-RLHF turns: the same conversation, the same numbers, in every form ---
u='{"role": "user", "content": "add 1 and 2"}'
printf '%s\n' '{"prompt": "add 1 and 2", "chosen": " 3", "rejected": " 4"}' \
    "{\"prompt\": [$u], \"chosen\": [{\"role\": \"assistant\", \"content\": \" 3\"}], \"rejected\": [{\"role\": \"assistant\", \"content\": \" 4\"}]}" \
    "{\"chosen\": [$u, {\"role\": \"assistant\", \"content\": \" 3\"}], \"rejected\": [$u, {\"role\": \"assistant\", \"content\": \" 4\"}]}" \
    '{"chosen": "\n\nHuman: add 1 and 2\n\nAssistant:  3", "rejected": "\n\nHuman: add 1 and 2\n\nAssistant:  4"}' > "$W/forms.jsonl"
expect 0 "pairwise accuracy .* over 4 pairs" score "$RM" --data "$W/forms.jsonl"
[ "$(grep '^line' "$OUT" | cut -d: -f2 | sort -u | wc -l)" -eq 1 ] || bad "score --data: the four forms of one pair score differently"
expect 0 "pairwise accuracy .* over 4 pairs" eval "$RM" --data "$W/forms.jsonl"
printf '%s\n' '{"prompt": "add 1 and 2", "completion": " 3"}' > "$W/sft_str.jsonl"
printf '%s\n' "{\"prompt\": [$u], \"completion\": [{\"role\": \"assistant\", \"content\": \" 3\"}]}" > "$W/sft_conv.jsonl"
expect 0 "completion loss" eval "$SFT" --data "$W/sft_str.jsonl"
grep "completion loss" "$OUT" > "$W/eval_str.txt"
expect 0 "completion loss" eval "$SFT" --data "$W/sft_conv.jsonl"
grep "completion loss" "$OUT" | cmp -s - "$W/eval_str.txt" || bad "eval: a conversational SFT record's loss differs from its string form's"
printf '%s\n' "{\"prompt\": [{\"role\": \"system\", \"content\": \"be brief\"}, $u]}" > "$W/prompts_conv.jsonl"
expect 0 "PPO: 1 iterations" ppo --policy "$SFT" --reward "$RM" --prompts "$W/prompts_conv.jsonl" --out "$W/p_conv" $PPO
printf '%s\n' '{"prompt": "add 1 and 2", "completion": " 4", "label": false}' > "$W/kto.jsonl"
expect 1 "kto.jsonl:1:1: an unpaired preference record .*, not a pair" score "$RM" --data "$W/kto.jsonl"
expect 1 "kto.jsonl:1:1: an unpaired preference record .*SFT learns every completion" sft --model "$SFT" --data "$W/kto.jsonl" --out "$W/s_kto"

# --- nonsense values: exit 2, naming the option ---
expect 2 "--lr must be" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/s0" --lr inf
expect 2 "--steps must be" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/s0" --steps -5
expect 2 "--grad-clip must be" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/s0" --grad-clip nan
expect 2 "--weight-decay must be" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/s0" --weight-decay -5
expect 2 "--temperature must be" generate "$SFT" --prompt hi --temperature inf
expect 2 "--top-p must be" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$W/p7" --top-p 0
expect 2 "--max-prompt 24 plus --max-new 100" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$W/p7" --max-new 100
expect 2 "--max-new 100 leaves no room" generate "$SFT" --prompt hi --max-new 100
expect 2 "--resume takes yes or no" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/s0" --resume=maybe
expect 2 "--decay is one of cosine\|linear\|constant" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/s0" --decay cosin
expect 2 "--embd 100 must be a multiple of --heads 3" pretrain --data "$Q/pretrain.txt" --tokenizer x --out "$W/s0" --embd 100 --heads 3
expect 1 "carries its own tokenizer: --tokenizer is for a model without one" pretrain --data "$Q/pretrain.txt" --model "$Q/base.safetensors" --tokenizer x --out "$W/s0"
expect 2 "needs --model too" rm --resume --data "$Q/rankings.jsonl" --out "$W/s0"
expect 2 "unknown option --layers" sft --layers 3
expect 2 "unknown option --pack" rm --pack
expect 0 "^rlhf [0-9]+\.[0-9]+\.[0-9]+ \(kernels [a-z0-9+]+; OpenMP (yes|no: one thread)\)$" --version
# OMP_NUM_THREADS checked as --threads is: the count used and where it came from, a rejected value named, not credited
# (LLVM's libomp aborts on "abc" and runs out of memory on "2,x" once a team of two starts, unless the tool removes
# the value before the runtime reads it: both with and without --threads)
for v in abc 0 5000 2,x; do
    cases=$((cases + 2))
    OMP_NUM_THREADS=$v "$X" sft --out "$W/omp" --threads 2 > "$OUT" 2>&1
    grep -q "threads: 2 (--threads)$" "$OUT" || bad "OMP_NUM_THREADS=$v --threads 2: not 2 threads from --threads"
    OMP_NUM_THREADS=$v "$X" sft --out "$W/omp" > "$OUT" 2>&1
    case $v in
    5000) grep -qE "threads: (1024|1) \(OMP_NUM_THREADS=5000 capped at 1024" "$OUT" || bad "OMP_NUM_THREADS=5000: not capped" ;; # 1: no OpenMP
    *) grep -q "threads: [0-9]* (.*) (OMP_NUM_THREADS=$v is not a thread count: ignored)" "$OUT" ||
        bad "OMP_NUM_THREADS=$v: not said to be ignored" ;;
    esac
done
expect 0 "no validation set" rm --model "$SFT" --data "$Q/rankings.jsonl" --out "$W/rm_noval" --steps 1 --batch 2 --val-fraction 0 --normalize-samples 2
grep -q "held-out pairwise accuracy" "$OUT" && bad "rm without a validation set printed a held-out accuracy"
# a best checkpoint that is the last step's takes the last's normalisation without sampling again: the same bytes
expect 0 "best.safetensors normalised \(the last step's weights" rm --model "$SFT" --data "$Q/rankings.jsonl" --out "$W/rm_same" --steps 2 --eval-every 2 --batch 2 --normalize-samples 8
cmp -s "$W/rm_same/best.safetensors" "$W/rm_same/last.safetensors" || bad "rm: best (the last step) and last differ"
expect 2 "--ptx-coef needs --ptx" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$W/p7" --ptx-coef 1
"$X" sft --help > "$OUT" 2>&1
cases=$((cases + 1))
if grep -qE -- "--(layers|normalize-samples) " "$OUT" || ! grep -q -- "--\[no-\]pack" "$OUT" || ! grep -q -- "--tokenizer S" "$OUT"; then bad "sft --help lists options of other commands (or lacks --tokenizer)"; fi

# --- a run directory is a unit: refused twice, --resume=no is not a resume, --overwrite starts again ---
D=$W/sft
expect 0 "checkpoints in" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$D" --steps 3 --batch 8
cp "$D/last.safetensors" "$W/last.before"
cp "$D/metrics.jsonl" "$W/metrics.before"
expect 2 "already holds a run: add --resume" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$D" --steps 3 --weight-decay 0.5
expect 2 "already holds a run" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$D" --steps 3 --resume=no
cmp -s "$D/last.safetensors" "$W/last.before" && cmp -s "$D/metrics.jsonl" "$W/metrics.before" || bad "a refused run changed the run directory"
expect 0 "checkpoints in" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$D" --steps 2 --batch 8 --overwrite --pack=0
grep -q '"step":3' "$D/metrics.jsonl" && bad "--overwrite kept the old run's metrics"
cp "$D/last.safetensors" "$W/last.before"
expect 2 "--max-len 1000 is longer than the model's context" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$D" --overwrite --max-len 1000
cmp -s "$D/last.safetensors" "$W/last.before" || bad "--overwrite deleted the old run before the new one could start"
expect 2 "already at step 2: raise --steps" sft --resume --data "$Q/sft.jsonl" --out "$D" --batch 8 --steps 2
expect 0 "--batch is 4 here but 8 in the run" sft --resume --data "$Q/sft.jsonl" --out "$D" --batch 4 --steps 3
expect 2 "--lr must be .*0 in single precision" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/s0" --lr 1e-50
expect 2 "--out needs a value \(got the option --resume" sft --model "$SFT" --data "$Q/sft.jsonl" --out --resume
expect 2 "holds a sft run, not a pretrain run" pretrain --resume --data "$Q/pretrain.txt" --out "$D"
expect 2 "holds another run" demo --quick --out "$D"
expect 2 "holds an rlhf demo run" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$Q"
expect 2 "holds the checkpoints of another stage" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$D" $PPO
: > "$W/afile"
expect 1 "--out .*afile exists and is not a directory" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/afile"
expect 1 "nothing to resume" sft --resume --model "$SFT" --data "$Q/sft.jsonl" --out "$W/empty"
if [ "$(id -u)" -ne 0 ]; then
    mkdir -p "$W/ro" && chmod 555 "$W/ro"
    expect 1 "cannot write in" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$W/ro" --eval-every 0
    chmod 755 "$W/ro"
else
    echo "cli_errors: read-only directory case skipped (root ignores permissions)"
fi

# --- tokenizer: empty input, a directory, and a full disk during the write leaves the old file whole ---
: > "$W/empty.txt"
expect 1 "empty: nothing to learn from" tokenizer --data "$W/empty.txt" --out "$W/tok.json"
expect 1 "is a directory" tokenizer --data "$Q" --out "$W/tok.json"
expect 0 "tokens learned" tokenizer --data "$Q/pretrain.txt" --vocab 300 --out "$W/tok.json"
cp "$W/tok.json" "$W/tok.before"
# text pretrain would refuse (a binary file) is refused here too; a checkpoint or a damaged rlhf tokenizer as --tokenizer
head -c 3000 "$X" > "$W/binary.txt"
expect 1 "rlhf tokenizer: .*binary.txt: 1:[0-9]*: invalid UTF-8 \(byte 0x[0-9A-F]*\) \(pretrain reads UTF-8 text only\)" tokenizer --data "$W/binary.txt" --vocab 300 --out "$W/tok_bin.json"
expect 1 "--tokenizer .*sft.safetensors is a checkpoint, not a tokenizer" pretrain --data "$Q/pretrain.txt" --tokenizer "$SFT" --out "$W/pt_ckpt"
sed 's/"version": *1/"version": 7/' "$W/tok.json" > "$W/tok_v7.json"
expect 1 "--tokenizer .*tok_v7.json: not an rlhf.h tokenizer \(expected \"type\": \"rlhf-bpe\", \"version\": 1\)" pretrain --data "$Q/pretrain.txt" --tokenizer "$W/tok_v7.json" --out "$W/pt_v7"
# a --val none of whose records fits: refused before training, named; pretrain on data too small to hold any out says why
long=$(awk 'BEGIN { for (i = 0; i < 100; i++) printf "one two three " }')
printf '{"prompt": "count", "completion": "%s"}\n{"prompt": "again", "completion": "%s"}\n' "$long" "$long" > "$W/long_val.jsonl"
expect 1 "rlhf sft: --val .*long_val.jsonl: 0 records kept .*, 2 skipped \(completion longer than" sft --model "$SFT" --data "$Q/sft.jsonl" --val "$W/long_val.jsonl" --out "$W/sv_long" --steps 1
head -c 40 "$Q/pretrain.txt" > "$W/tiny.txt"
expect 0 "no validation set: --val-fraction 0.5 of 1 example holds out none" pretrain --data "$W/tiny.txt" --tokenizer "$W/tok.json" --layers 1 --heads 2 --embd 16 --ctx 64 --steps 1 --batch 1 --val-fraction 0.5 --out "$W/pt_tiny"
# its --resume without the shape and the tokenizer (they come from the checkpoint): no warning that they differ
expect 0 "resuming .* at step 1" pretrain --data "$W/tiny.txt" --steps 2 --batch 1 --val-fraction 0.5 --out "$W/pt_tiny" --resume
grep -q "warning: --" "$OUT" && bad "pretrain --resume without the shape options: warned that they differ"
expect 2 "is the --data file itself" tokenizer --data "$W/tok.json" --out "$W/tok.json"
cp "$SFT" "$W/ckpt.safetensors"
expect 1 "exists and is not a tokenizer: refusing to replace it" tokenizer --data "$Q/pretrain.txt" --vocab 300 --out "$W/ckpt.safetensors"
cmp -s "$SFT" "$W/ckpt.safetensors" || bad "tokenizer replaced a checkpoint"
expect 1 "out of memory: a model of 1000 layers" pretrain --data "$Q/pretrain.txt" --tokenizer "$W/tok.json" --out "$W/s1" --layers 1000 --embd 4096 --heads 4
cases=$((cases + 1))
# ulimit -f: writes beyond 2 blocks fail (EFBIG; SIGXFSZ ignored), as on a full disk
(trap '' XFSZ; ulimit -f 2; "$X" tokenizer --data "$Q/pretrain.txt" --vocab 310 --out "$W/tok.json") > "$OUT" 2>&1
st=$?
[ $st -eq 1 ] || bad "tokenizer on a full disk: exit $st, want 1"
cmp -s "$W/tok.json" "$W/tok.before" || bad "tokenizer on a full disk damaged the old file"
ls "$W" | grep -q "tok.json.tmp" && bad "tokenizer on a full disk left a temporary file"
grep -q "cannot write .*tok.json: File too large (the old file is unchanged)" "$OUT" || bad "tokenizer on a full disk: not the write's errno"
cases=$((cases + 1))
# the same with no old file: the reason is still the write's (EFBIG), not the ENOENT of looking for the old file
(trap '' XFSZ; ulimit -f 2; "$X" tokenizer --data "$Q/pretrain.txt" --vocab 310 --out "$W/tok_new.json") > "$OUT" 2>&1
grep -q "cannot write .*tok_new.json: File too large$" "$OUT" || bad "tokenizer on a full disk, no old file: not the write's errno"
# metric lines that cannot be written (a full disk: here a file size limit of 8 blocks, which clang's OpenMP
# runtime needs for its registration file in /dev/shm) are said to be lost, once
cases=$((cases + 1))
(trap '' XFSZ; ulimit -f 8; "$X" sft --model "$SFT" --data "$Q/sft.jsonl" --batch 8 --steps 80 --eval-every 80 --out "$W/mfull" 2>&1) | cat > "$OUT" # the limit: not on $OUT
[ "$(grep -c "warning: metrics.jsonl: File too large: metric lines are being lost from step" "$OUT")" -eq 1 ] ||
    bad "sft with metric lines that cannot be written: not said once"
# a metrics.jsonl that is a device is refused on --resume (its zeros were read as one endless line)
cp -r "$W/rm_same" "$W/mdev" && rm -f "$W/mdev/metrics.jsonl" && ln -s /dev/zero "$W/mdev/metrics.jsonl"
expect 1 "mdev/metrics.jsonl is not a regular file" rm --model "$SFT" --data "$Q/rankings.jsonl" --out "$W/mdev" --steps 4 --eval-every 2 --batch 2 --normalize-samples 8 --resume

# --- Ctrl-C and SIGTERM: a resumable checkpoint, exit 130 / 143, then --resume continues ---
signal_case() { # SIGNAL STATUS DIR
    cases=$((cases + 1))
    "$X" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$3" --epochs 200 --batch 8 --eval-every 0 > "$OUT" 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 300 ] && ! grep -q '"step":5,' "$3/metrics.jsonl" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -"$1" $pid
    wait $pid
    st=$?
    [ $st -eq "$2" ] || { bad "sft stopped by SIG$1: exit $st, want $2"; return; }
    grep -q "continue with the same command and --resume" "$OUT" || bad "SIG$1: no resume hint"
    [ -f "$3/last.safetensors" ] || { bad "SIG$1: no checkpoint saved"; return; }
    expect 0 "resuming .* at step [1-9]" sft --resume --model "$SFT" --data "$Q/sft.jsonl" --out "$3" --epochs 1 --batch 8 --eval-every 0 --steps 0
}
signal_case INT 130 "$W/sigint"
signal_case TERM 143 "$W/sigterm"

# --- one run at a time in a run directory: a second is refused while the first runs (even with --overwrite or
# --resume); the lock dies with its holder, so after kill -9 of the first a --resume works ---
L=$W/locked
"$X" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$L" --epochs 200 --batch 8 --eval-every 2 > "$W/lock1.txt" 2>&1 &
pid=$!
i=0
while [ $i -lt 300 ] && ! [ -f "$L/last.safetensors" ]; do sleep 0.1; i=$((i + 1)); done
expect 1 "$L is in use: another run \(pid $pid\) holds it" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$L" --epochs 1 --overwrite
once "is in use"
expect 1 "$L is in use" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$L" --epochs 1 --resume
expect 1 "$L is in use" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$L" --epochs 1
kill -9 $pid
wait $pid 2>/dev/null
forget_killed $pid
expect 0 "resuming .* at step [1-9]" sft --resume --model "$SFT" --data "$Q/sft.jsonl" --out "$L" --epochs 1 --batch 8 --eval-every 0 --steps 0
# the demo locks its directory too: a second demo there is refused while the first runs
"$X" demo --quick --out "$W/demo_locked" > "$W/lock2.txt" 2>&1 &
pid=$!
i=0
while [ $i -lt 300 ] && ! [ -f "$W/demo_locked/pretrain.txt" ]; do sleep 0.1; i=$((i + 1)); done
expect 1 "$W/demo_locked is in use: another run \(pid $pid\) holds it" demo --tiny --out "$W/demo_locked"
kill -9 $pid
wait $pid 2>/dev/null
forget_killed $pid

# --- kill -9 at random moments of a PPO run that saves every iteration ---
K=$W/ppo_kill
expect 0 "PPO: 1 iterations" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$K" $PPO
n=0
while [ $n -lt 8 ]; do
    "$X" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$K" --iters 100000 --batch 4 --mini-batch 2 --max-new 4 --save-every 1 --resume > "$OUT" 2>&1 &
    pid=$!
    sleep "0.$((3 + n % 7))"
    kill -9 $pid
    wait $pid 2>/dev/null
    forget_killed $pid
    n=$((n + 1))
done
it=$("$X" info "$K/policy.safetensors" | sed -n 's/.*"iteration":\([0-9]*\).*/\1/p')
[ -n "$it" ] || it=0
expect 0 "PPO: $((it + 1)) iterations" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$K" --iters $((it + 1)) --batch 4 --mini-batch 2 --max-new 4 --resume
ls -a "$K" | grep -qE "\.tmp-|\.next|ppo\.commit" && { bad "temporary files left after kill -9 and --resume"; ls -a "$K"; }
dups=$(grep -o '"stage":"ppo","step":[0-9]*' "$K/metrics.jsonl" | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || bad "metrics.jsonl holds $dups duplicate PPO steps after kill -9 and --resume"
echo "cli_errors: PPO killed 8 times (reached iteration $it), resumed every time"
expect 2 "saved without an EMA of the policy: resume it without --ema" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$K" --iters $((it + 2)) --batch 4 --mini-batch 2 --max-new 4 --resume --ema 0.9
expect 1 "is a value model \(a PPO critic\), not a reward model" score "$K/critic.safetensors" --prompt hi --response there

# --- dpo: nonsense values (exit 2), wrong files (exit 1, the library's message naming the line) ---
RK=$Q/rankings.jsonl
expect 2 "--beta must be a finite number > 0, got \"0\"" dpo --model "$SFT" --data "$RK" --out "$W/d0" --beta 0
expect 2 "--beta must be a finite number > 0, got \"-0.1\"" dpo --model "$SFT" --data "$RK" --out "$W/d0" --beta -0.1
expect 2 "--beta must be .*\(0 in single precision\)" dpo --model "$SFT" --data "$RK" --out "$W/d0" --beta 1e-50
expect 2 "--label-smoothing must be a finite number in \[0, 0.5\), got \"0.5\"" dpo --model "$SFT" --data "$RK" --out "$W/d0" --label-smoothing 0.5
expect 2 "--label-smoothing must be .*got \"0.49999999\" \(0.5 in single precision\)" dpo --model "$SFT" --data "$RK" --out "$W/d0" --label-smoothing 0.49999999
expect 2 "--label-smoothing must be .*got \"-0.1\"" dpo --model "$SFT" --data "$RK" --out "$W/d0" --label-smoothing -0.1
expect 2 "--label-smoothing is for --loss sigmoid \(cDPO\) and simpo only: --loss ipo" dpo --model "$SFT" --data "$RK" --out "$W/d0" --loss ipo --label-smoothing 0.1
expect 2 "--loss hinge has no label to smooth" dpo --model "$SFT" --data "$RK" --out "$W/d0" --label-smoothing 0.2 --loss hinge
expect 2 "--loss is one of sigmoid\|ipo\|hinge\|simpo, got \"kto\"" dpo --model "$SFT" --data "$RK" --out "$W/d0" --loss kto
expect 2 "--simpo-gamma is SimPO's target margin, for --loss simpo only" dpo --model "$SFT" --data "$RK" --out "$W/d0" --simpo-gamma 0.3
expect 2 "--simpo-gamma must be a finite number in \[0, 1000000\), got \"-1\"" dpo --model "$SFT" --data "$RK" --out "$W/d0" --loss simpo --simpo-gamma -1
expect 2 "--loss simpo has no reference model: --ref is not used" dpo --model "$SFT" --data "$RK" --out "$W/d0" --loss simpo --ref "$SFT"
expect 2 "--loss simpo has no reference model: --precompute-ref has nothing to precompute" dpo --model "$SFT" --data "$RK" --out "$W/d0" --loss simpo --precompute-ref
expect 2 "--resume needs --model too .*frozen reference" dpo --resume --data "$RK" --out "$W/d0"
expect 2 "unknown option --normalize-samples" dpo --model "$SFT" --data "$RK" --out "$W/d0" --normalize-samples 4
expect 2 "needs --data and --out" dpo --model "$SFT" --out "$W/d0"
[ -e "$W/d0" ] && bad "a dpo refused for its options created its --out"
expect 1 "rlhf dpo: --model: .*typo.safetensors: cannot open" dpo --model "$W/typo.safetensors" --data "$RK" --out "$W/d1"
once "rlhf dpo:"
expect 1 "rlhf dpo: .*/sft.jsonl:1:1: missing \"chosen\"\. .*sft.jsonl holds SFT records, which rlhf sft reads; rlhf dpo needs preference pairs" dpo --model "$SFT" --data "$Q/sft.jsonl" --out "$W/d1"
once "sft.jsonl:1:1"
expect 1 "kto.jsonl:1:1: an unpaired preference record" dpo --model "$SFT" --data "$W/kto.jsonl" --out "$W/d1"
printf '{"prompt": "add 1 and 2", "chosen": " 3", "rejected": " 4"}\n{"prompt": \n' > "$W/broken_prefs.jsonl"
expect 1 "broken_prefs.jsonl:2:.*--skip-bad skips" dpo --model "$SFT" --data "$RK" --val "$W/broken_prefs.jsonl" --out "$W/d1"
expect 1 "cannot read .*no-such-prefs.jsonl" dpo --model "$SFT" --data "$W/no-such-prefs.jsonl" --out "$W/d1"
expect 1 "--model .*rm.safetensors is a reward model \(it has a scalar head\)" dpo --model "$RM" --data "$RK" --out "$W/d1"
expect 1 "--ref .*rm.safetensors is a reward model \(it has a scalar head\)" dpo --model "$SFT" --ref "$RM" --data "$RK" --out "$W/d1"
expect 1 "--ref .*model.safetensors \(vocab 320, context 12, 2 layers.* is not shaped as the policy" \
    dpo --model "$SFT" --ref tests/fixtures/hf/pretrained/model.safetensors --data "$RK" --out "$W/d1"
expect 2 "holds the checkpoints of another stage" dpo --model "$SFT" --data "$RK" --out "$K"
expect 2 "holds a sft run, not a dpo run" dpo --resume --model "$SFT" --data "$RK" --out "$D"

# --- kto: the unpaired format (a pairs or SFT file is named as such), nonsense weights, options of dpo, run directories ---
KO="--model $SFT --data $W/kto.jsonl"
expect 1 "rlhf kto: .*rankings.jsonl:1:1: missing \"completion\"\. .*rankings.jsonl holds preference records, which rlhf dpo and rlhf rm read; rlhf kto needs unpaired labels \(\{\"prompt\", \"completion\", \"label\": true\|false\}\)$" \
    kto --model "$SFT" --data "$RK" --out "$W/k1"
once "rankings.jsonl:1:1"
expect 1 "rlhf kto: .*sft.jsonl:1:1: missing \"label\"\. .*holds SFT records, which rlhf sft reads; rlhf kto needs unpaired labels" kto --model "$SFT" --data "$Q/sft.jsonl" --out "$W/k1"
expect 1 "rlhf kto: .*rankings.jsonl holds preference records" kto $KO --val "$RK" --out "$W/k1"
expect 1 "rankings.jsonl: all .* records are bad; .*holds preference records" kto --model "$SFT" --data "$RK" --out "$W/k1" --skip-bad
printf '%s\n' '{"prompt": "add 1 and 2", "completion": " 3", "label": "yes"}' > "$W/kto_badlabel.jsonl"
expect 1 "kto_badlabel.jsonl:1:.*\"label\" must be true or false" kto --model "$SFT" --data "$W/kto_badlabel.jsonl" --out "$W/k1"
expect 2 "--desirable-weight must be a finite number in \[0, 1000000\], got \"-1\"" kto $KO --out "$W/k0" --desirable-weight -1
expect 2 "--undesirable-weight must be a finite number .*got \"nan\"" kto $KO --out "$W/k0" --undesirable-weight nan
expect 2 "--desirable-weight and --undesirable-weight are both 0" kto $KO --out "$W/k0" --desirable-weight 0 --undesirable-weight 0
expect 2 "--beta must be a finite number > 0, got \"0\"" kto $KO --out "$W/k0" --beta 0
expect 2 "unknown option --loss" kto $KO --out "$W/k0" --loss sigmoid
expect 2 "unknown option --label-smoothing" kto $KO --out "$W/k0" --label-smoothing 0.1
expect 2 "unknown option --desirable-weight" dpo --model "$SFT" --data "$RK" --out "$W/d0" --desirable-weight 2
expect 2 "--resume needs --model too .*frozen reference" kto --resume --data "$W/kto.jsonl" --out "$W/k0"
expect 2 "needs --data and --out" kto --model "$SFT" --out "$W/k0"
[ -e "$W/k0" ] && bad "a kto refused for its options created its --out"
expect 1 "rlhf kto: --model: .*typo.safetensors: cannot open" kto --model "$W/typo.safetensors" --data "$W/kto.jsonl" --out "$W/k1"
expect 1 "--ref .*rm.safetensors is a reward model \(it has a scalar head\)" kto $KO --ref "$RM" --out "$W/k1"
expect 0 "kto: 1 steps in" kto $KO --out "$W/k2" --steps 1 --val-fraction 0
grep -q "warning: kto: every record of .*kto.jsonl (1) is undesirable" "$OUT" || bad "kto on undesirable records only: no warning"
expect 2 "holds a kto run, not a dpo run" dpo --resume --model "$SFT" --data "$RK" --out "$W/k2"
expect 2 "holds a sft run, not a kto run" kto --resume $KO --out "$D"
# TRL's conversational form, and a record of each label
printf '%s\n' "{\"prompt\": [$u], \"completion\": [{\"role\": \"assistant\", \"content\": \" 3\"}], \"label\": true}" \
    '{"prompt": "add 1 and 2", "completion": " 4", "label": false}' > "$W/kto_conv.jsonl"
expect 0 "kto: 1 steps in" kto --model "$SFT" --data "$W/kto_conv.jsonl" --out "$W/k3" --steps 1 --val-fraction 0
grep -q "warning: kto" "$OUT" && bad "kto on one record of each label warned about the balance"

# --- dpo and kto stopped (SIGINT) or killed (kill -9) mid-run, then resumed: the bytes of the uninterrupted run ---
# The first leg runs "forever" (--steps 100000) under a constant learning rate, so where it stops
# changes nothing; the resumed leg and the uninterrupted run stop at the same step S.
DPO="--data $RK --batch 2 --lr 1e-4 --decay constant --log-every 0"
head -60 "$Q/sft.jsonl" | sed 's/}$/, "label": true}/' > "$W/kto_run.jsonl"
sed -n 61,120p "$Q/sft.jsonl" | sed 's/"completion": ".*"}$/"completion": "no.", "label": false}/' >> "$W/kto_run.jsonl"
KTO="--data $W/kto_run.jsonl --batch 2 --lr 1e-4 --decay constant --log-every 0"
# wait_step FILE N STAGE: until metrics FILE holds a STAGE line of step N (30 s at most)
wait_step() {
    i=0
    while [ $i -lt 300 ] && ! grep -q "\"stage\":\"$3\",\"step\":$2," "$1" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
}
# the metric lines without what differs between runs by design (time; total_steps of a leg of 100000; kto's
# tokens, counted from the start of each leg)
strip_metrics() { sed 's/"total_steps":[0-9]*,//; s/,"elapsed_s":[^}]*//; s/,"tokens":[0-9.e+]*//' "$1"; }
resume_case() { # CMD NAME HOW EXTRA...: CMD dpo or kto; HOW is INT (stop at a step boundary) or 9 (kill -9 between saves)
    cmd=$1 name=$2 how=$3
    shift 3
    if [ "$cmd" = kto ]; then data=$KTO; else data=$DPO; fi
    cases=$((cases + 1))
    "$X" $cmd --model "$SFT" $data --out "$W/$name" --steps 100000 "$@" > "$OUT" 2>&1 &
    pid=$!
    wait_step "$W/$name/metrics.jsonl" 3 $cmd
    [ "$how" = 9 ] && sleep 0.$((1 + $$ % 3)) # somewhere in a later step or save (which one varies with the PID)
    kill -"$how" $pid
    wait $pid 2>/dev/null
    st=$?
    forget_killed $pid
    if [ "$how" = INT ]; then
        [ $st -eq 130 ] || { bad "$cmd stopped by SIGINT: exit $st, want 130"; return; }
        grep -q "continue with the same command and --resume" "$OUT" || bad "$cmd stopped by SIGINT: no resume hint"
    fi
    k=$("$X" info "$W/$name/last.safetensors" 2>/dev/null | sed -n 's/.*training step: \([0-9]*\),.*/\1/p')
    [ -n "$k" ] || { bad "$cmd stopped by SIG$how: no resumable checkpoint"; return; }
    S=$((k + 3))
    expect 0 "resuming .* at step $k" $cmd --resume --model "$SFT" $data --out "$W/$name" --steps $S "$@"
    grep -q "options differ" "$OUT" && bad "$cmd --resume with the run's options warned that they differ"
    expect 0 "$cmd: $S steps in" $cmd --model "$SFT" $data --out "$W/${name}_whole" --steps $S "$@"
    cmp -s "$W/$name/last.safetensors" "$W/${name}_whole/last.safetensors" ||
        bad "$cmd stopped by SIG$how at step $k and resumed to step $S: last.safetensors differs from the uninterrupted run's"
    strip_metrics "$W/$name/metrics.jsonl" > "$W/$name.m1"
    strip_metrics "$W/${name}_whole/metrics.jsonl" > "$W/$name.m2"
    cmp -s "$W/$name.m1" "$W/$name.m2" || { bad "$cmd stopped by SIG$how at step $k and resumed: metrics.jsonl differs from the uninterrupted run's"; diff "$W/$name.m1" "$W/$name.m2" | head -5; }
    echo "cli_errors: $cmd stopped by SIG$how at step $k, resumed to step $S: the uninterrupted run's bytes"
}
resume_case dpo dpo_int INT --eval-every 0
resume_case dpo dpo_kill 9 --eval-every 1 --precompute-ref
resume_case kto kto_int INT --eval-every 2

# --- chat: a long conversation keeps the latest turns that fit and says so ---
cases=$((cases + 1))
i=0
while [ $i -lt 12 ]; do echo "reverse: red blue green and then add 7 and 12 please"; i=$((i + 1)); done | "$X" chat "$SFT" --max-new 8 --system "be brief" > "$OUT" 2>&1
st=$?
[ $st -eq 0 ] || bad "chat: exit $st"
grep -q "older turns dropped to fit the context" "$OUT" || bad "chat: never said it dropped turns"
cases=$((cases + 1))
# a 4095-character line does not end the session, and a message too long for the context keeps the conversation
{ echo "add 1 and 2"; head -c 4095 /dev/zero | tr '\0' 'b'; echo; echo "say moon twice"; } | "$X" chat "$SFT" --max-new 4 > "$OUT" 2>&1
[ "$(grep -c '^bot> \|bot> ' "$OUT")" -eq 2 ] || bad "chat: a long line ended the session or lost a turn"
grep -q "your message does not fit the context" "$OUT" || bad "chat: a too-long message was not refused"
grep -q "older turns dropped" "$OUT" && bad "chat: a refused message dropped the conversation"
expect 0 "" generate "$SFT" --prompt "add 1 and 2"

# --- export: usage, a missing checkpoint, no tokenizer, an --out that exists, is a file or cannot be made ---
expect 2 "needs --out DIR" export "$SFT"
expect 2 "--dtype is one of f32\|bf16\|f16" export "$SFT" --out "$W/hf" --dtype f64
expect 1 "cannot open the file" export "$W/none.safetensors" --out "$W/hf"
expect 1 "has no tokenizer stored" export tests/fixtures/hf/pretrained/model.safetensors --out "$W/hf"
once "no tokenizer stored"
[ -e "$W/hf" ] && bad "export without a tokenizer created --out"
expect 0 "as GPT2LMHeadModel, F32" export "$SFT" --out "$W/hf"
cp "$W/hf/config.json" "$W/hf.config"
expect 2 "exists and is not empty: add --overwrite" export "$SFT" --out "$W/hf" --dtype f16
echo mine > "$W/hf/notes.txt"
expect 1 "holds \"notes.txt\", which an export does not write" export "$SFT" --out "$W/hf" --overwrite
cmp -s "$W/hf/config.json" "$W/hf.config" || bad "a refused export changed the earlier one"
rm -f "$W/hf/notes.txt"
expect 0 "as GPT2ForSequenceClassification, BF16" export "$RM" --out "$W/hf/" --overwrite --dtype bf16
cmp -s "$W/hf/config.json" "$W/hf.config" && bad "export --overwrite did not replace the earlier export"
ls "$W" | grep -qE "hf\.(tmp|old)-" && bad "export left a temporary directory"
expect 1 "exists and is not a directory" export "$SFT" --out "$P"
expect 1 "cannot create /proc/no-such-dir" export "$SFT" --out /proc/no-such-dir/hf

# --- best-of-N: generate --best-of and bon: usage, the wrong models and files, --out, a full disk, signals ---
expect 2 "--best-of needs --reward" generate "$SFT" --prompt hi --best-of 4
expect 2 "--reward is for --best-of N" generate "$SFT" --prompt hi --reward "$RM"
expect 2 "--only-best is for --best-of N" generate "$SFT" --prompt hi --only-best
for v in 0 -2 1025 2.5 abc; do
    expect 2 "--best-of must be an integer in \[1, 1024\], got \"$v\"" generate "$SFT" --prompt hi --best-of "$v" --reward "$RM"
done
expect 2 "--temperature 0 \(greedy\) makes the 4 replies of --best-of 4 the same" generate "$SFT" --prompt hi --best-of 4 --reward "$RM" --temperature 0
expect 1 "--reward .* has no scalar head: it is a policy" generate "$SFT" --prompt hi --best-of 2 --reward "$SFT"
expect 1 "--reward .* is a value model \(a PPO critic\)" generate "$SFT" --prompt hi --best-of 2 --reward "$K/critic.safetensors"
expect 1 "--reward: .*typo.safetensors: cannot open" generate "$SFT" --prompt hi --best-of 2 --reward "$W/typo.safetensors"
once "rlhf generate:"
expect 1 "CHECKPOINT .* is a reward model" generate "$RM" --prompt hi --best-of 2 --reward "$RM"
# reward models the policy's ids would mislead: another tokenizer size, the same size with other tokens, another template
mk_rm() { # OUT TOKENIZER_TEXT VOCAB [--template hh]: a one-step reward model
    if [ $# -gt 3 ]; then
        "$X" sft --model "$SFT" --data "$Q/sft.jsonl" --out "$1.base" --steps 1 --batch 2 --eval-every 0 --template hh > "$OUT" 2>&1
    else
        "$X" tokenizer --data "$2" --vocab "$3" --out "$1.tok.json" > "$OUT" 2>&1 &&
            "$X" pretrain --data "$Q/pretrain.txt" --tokenizer "$1.tok.json" --out "$1.base" --layers 1 --heads 1 --embd 8 --ctx 48 \
                --steps 1 --batch 2 --eval-every 0 > "$OUT" 2>&1
    fi && "$X" rm --model "$1.base/last.safetensors" --data "$Q/rankings.jsonl" --out "$1" --steps 1 --batch 2 --no-normalize > "$OUT" 2>&1 ||
        bad "could not make the reward model $1"
}
mk_rm "$W/rm300" "$Q/pretrain.txt" 300
mk_rm "$W/rm320" "$Q/sft.jsonl" 320
mk_rm "$W/rm_hh" "" 0 hh
expect 1 "--reward .*rm300/last.safetensors has a tokenizer of 300 tokens, the policy .* one of 320: .* share one vocabulary" \
    generate "$SFT" --prompt hi --best-of 2 --reward "$W/rm300/last.safetensors"
expect 1 "--reward .*rm320/last.safetensors has another vocabulary than the policy .*: token [0-9]+ is \".*\" to the policy but" \
    bon --model "$SFT" --reward "$W/rm320/last.safetensors" --prompts "$P" --out "$W/b0.jsonl"
expect 1 "--reward .*rm_hh/last.safetensors reads conversations in the hh template, the policy .* writes them in the chat one" \
    bon --model "$SFT" --reward "$W/rm_hh/last.safetensors" --prompts "$P" --out "$W/b0.jsonl"
[ -e "$W/b0.jsonl" ] && bad "bon with a refused reward model wrote --out"
BON_M="--model $SFT --reward $RM"
expect 2 "needs --model, --reward, --prompts and --out" bon $BON_M --prompts "$P"
for v in 0 -1 1025 1.5 abc; do
    expect 2 "--n must be an integer in \[1, 1024\], got \"$v\"" bon $BON_M --prompts "$P" --out "$W/b0.jsonl" --n "$v"
done
expect 2 "--temperature 0 \(greedy\) makes the 4 replies of --n 4 the same" bon $BON_M --prompts "$P" --out "$W/b0.jsonl" --temperature 0
expect 2 "--max-len 1000 is longer than the models' context \(48 tokens" bon $BON_M --prompts "$P" --out "$W/b0.jsonl" --max-len 1000
expect 2 "--max-new 47 leaves no room for a prompt in --max-len 48" bon $BON_M --prompts "$P" --out "$W/b0.jsonl" --max-new 47
expect 1 "--model .* is a reward model" bon --model "$RM" --reward "$RM" --prompts "$P" --out "$W/b0.jsonl"
expect 1 "--reward .* has no scalar head" bon --model "$SFT" --reward "$SFT" --prompts "$P" --out "$W/b0.jsonl"
expect 1 "--prompts .*pretrain.txt is not a JSONL file of records .*: give a prompts, SFT or preference file" bon $BON_M --prompts "$Q/pretrain.txt" --out "$W/b0.jsonl"
expect 1 "--prompts .*sft.safetensors is not a JSONL file of records" bon $BON_M --prompts "$SFT" --out "$W/b0.jsonl"
echo '{"text": "add 1 and 2"}' > "$W/text.jsonl"
expect 1 "--prompts .*text.jsonl holds text records" bon $BON_M --prompts "$W/text.jsonl" --out "$W/b0.jsonl"
expect 1 "is a directory, not a data file" bon $BON_M --prompts "$Q" --out "$W/b0.jsonl"
expect 1 "cannot read .*no-such-prompts.jsonl: No such file" bon $BON_M --prompts "$W/no-such-prompts.jsonl" --out "$W/b0.jsonl"
once "no-such-prompts"
expect 1 "broken.jsonl:2:.*--skip-bad" bon $BON_M --prompts "$W/broken.jsonl" --out "$W/b0.jsonl"
[ -e "$W/b0.jsonl" ] && bad "a refused bon wrote --out"
expect 0 "1 bad records skipped" bon $BON_M --prompts "$W/broken.jsonl" --out "$W/b0.jsonl" --skip-bad --keep-cut
printf '%s\n' '{"chosen": "\n\nHuman: a\n\nAssistant: 3", "rejected": "\n\nHuman: b\n\nAssistant: 4"}' \
    '{"prompt": "add 1 and 2", "chosen": " 3", "rejected": " 4"}' > "$W/pairs_unshared.jsonl"
expect 0 "1 record without a prompt skipped" bon $BON_M --prompts "$W/pairs_unshared.jsonl" --out "$W/b1.jsonl" --keep-cut
[ "$(wc -l < "$W/b1.jsonl")" -eq 1 ] || bad "bon: a pair without a prompt was written"
# pairs taken another way than most are counted where the data is read: sharing no opening, or not in HH-RLHF's turns
printf '%s\n' '{"chosen": "Intro\n\nAssistant: x", "rejected": "Intro\n\nAssistant: y"}' \
    '{"chosen": "foo", "rejected": "bar"}' '{"prompt": "add 1 and 2", "chosen": " 3", "rejected": " 4"}' > "$W/pairs_odd.jsonl"
expect 0 "pairs_odd.jsonl: 1 pair without a \"prompt\" shares no opening" dpo --model "$SFT" --data "$W/pairs_odd.jsonl" --out "$W/dpo_odd" --steps 1 --batch 2 --val-fraction 0
grep -q "pairs_odd.jsonl: 1 transcript not in " "$OUT" || bad "dpo: the transcript not in turns was not counted"
expect 1 "--out .* is a directory: give the path of a JSONL file" bon $BON_M --prompts "$P" --out "$W"
expect 1 "cannot create the directory /proc/no-such-dir" bon $BON_M --prompts "$P" --out /proc/no-such-dir/b.jsonl
cp "$P" "$W/prompts.before"
expect 2 "--out .*prompts.jsonl is the --prompts file itself" bon $BON_M --prompts "$P" --out "$P" --overwrite
expect 2 "--out .*sft.safetensors is the --model file itself" bon $BON_M --prompts "$P" --out "$SFT" --overwrite
cmp -s "$P" "$W/prompts.before" || bad "bon changed its --prompts file"
head -3 "$P" > "$W/p3.jsonl"
expect 0 "bon: 3 prompts, best of 4: mean best score" bon $BON_M --prompts "$W/p3.jsonl" --out "$W/b.jsonl" --keep-cut
cp "$W/b.jsonl" "$W/b.before"
expect 2 "--out .*b.jsonl exists: add --overwrite" bon $BON_M --prompts "$W/p3.jsonl" --out "$W/b.jsonl" --seed 2
cmp -s "$W/b.jsonl" "$W/b.before" || bad "a refused bon changed its --out"
if [ "$(id -u)" -ne 0 ]; then
    mkdir -p "$W/ro_bon" && chmod 555 "$W/ro_bon"
    expect 1 "cannot write .*ro_bon/b.jsonl" bon $BON_M --prompts "$W/p3.jsonl" --out "$W/ro_bon/b.jsonl"
    chmod 755 "$W/ro_bon"
fi
head -300 "$P" > "$W/p300.jsonl"
cases=$((cases + 1))
(trap '' XFSZ; ulimit -f 2; "$X" bon $BON_M --prompts "$W/p300.jsonl" --out "$W/b.jsonl" --overwrite --keep-cut) > "$OUT" 2>&1
st=$?
[ $st -eq 1 ] && grep -q "cannot write .*b.jsonl.*(the old file is unchanged)" "$OUT" || bad "bon on a full disk: exit $st, want 1 and the message"
cmp -s "$W/b.jsonl" "$W/b.before" || bad "bon on a full disk damaged the old file"
ls "$W" | grep -q "b.jsonl.tmp" && bad "bon on a full disk left a temporary file"
# Ctrl-C and SIGTERM: exit 130 / 143, --out as it was, no temporary file; kill -9: the next run removes the dead one's
bon_signal() { # SIGNAL STATUS
    cases=$((cases + 1))
    "$X" bon $BON_M --prompts "$P" --out "$W/b.jsonl" --overwrite --n 16 --log-every 1 > "$OUT" 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 300 ] && ! grep -q "bon: 2/" "$OUT"; do sleep 0.1; i=$((i + 1)); done
    kill -"$1" $pid
    wait $pid 2>/dev/null
    st=$?
    forget_killed $pid
    [ $st -eq "$2" ] || { bad "bon stopped by SIG$1: exit $st, want $2"; return; }
    [ "$1" = KILL ] || grep -q "stopped after [0-9]* of 1000 prompts: nothing written, .*b.jsonl is as it was" "$OUT" || bad "bon, SIG$1: no message"
    cmp -s "$W/b.jsonl" "$W/b.before" || bad "bon stopped by SIG$1 changed --out"
    [ "$1" = KILL ] || ! ls "$W" | grep -q "b.jsonl.tmp-" || bad "bon stopped by SIG$1 left a temporary file"
}
bon_signal INT 130
bon_signal TERM 143
bon_signal KILL 137
ls "$W" | grep -q "b.jsonl.tmp-" || bad "bon killed by SIGKILL left no temporary file (the test did not kill it mid-write)"
expect 0 "records in .*b.jsonl" bon $BON_M --prompts "$W/p3.jsonl" --out "$W/b.jsonl" --overwrite --keep-cut
ls "$W" | grep -q "b.jsonl.tmp-" && bad "bon did not remove the temporary file of a killed run"
cmp -s "$W/b.jsonl" "$W/b.before" || bad "bon --overwrite with the same seed wrote another file"


# --- grpo and rloo: the group options, the rewards, a run of another algorithm, Ctrl-C and --resume ---
GO="--batch 8 --mini-batch 4 --max-new 4"
GP="--policy $SFT --prompts $P --iters 1 $GO"
expect 2 "--group-size must be an integer in \[2, 1024\], got \"1\"" grpo $GP --reward "$RM" --out "$W/g0" --group-size 1
expect 2 "--batch 10 is not a multiple of --group-size 4: --batch counts replies" grpo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$W/g0" --batch 10
expect 2 "--batch 6 is not a multiple of --group-size 4" rloo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$W/g0" --batch 6
expect 2 "--loss-type is one of grpo\|bnpo\|dr_grpo\|dapo, got \"ppo\"" grpo $GP --reward "$RM" --out "$W/g0" --loss-type ppo
expect 2 "--scale-rewards is one of group\|batch\|none, got \"std\"" grpo $GP --reward "$RM" --out "$W/g0" --scale-rewards std
expect 2 "unknown option --loss-type" rloo $GP --reward "$RM" --out "$W/g0" --loss-type dapo
expect 2 "unknown option --critic" grpo $GP --reward "$RM" --out "$W/g0" --critic "$RM"
expect 2 "unknown option --group-size" ppo $GP --reward "$RM" --out "$W/g0" --group-size 4
expect 2 "--cliprange-high must be a finite number in \[0, 100\), got \"-0.1\"" grpo $GP --reward "$RM" --out "$W/g0" --cliprange-high -0.1
expect 2 "--beta is --kl-coef under TRL's name: give one of them" rloo $GP --reward "$RM" --out "$W/g0" --beta 0.1 --kl-coef 0.1
expect 2 "needs --policy, --reward, --prompts and --out" grpo --policy "$SFT" --prompts "$P" --out "$W/g0"
expect 2 "--reward-weights has 1 weight but --reward is given 2 times: one weight per --reward" \
    grpo $GP --reward "$RM" --reward "$RM" --reward-weights 1 --out "$W/g0"
expect 2 "--reward-weights has 3 weights but --reward is given 2 times" ppo $GP --reward "$RM" --reward "$RM" --reward-weights 1,2,3 --out "$W/g0"
expect 2 "--reward-weights takes finite numbers separated by commas \(e.g. 1,0.5\), got \"1,inf\"" \
    rloo $GP --reward "$RM" --reward "$RM" --reward-weights 1,inf --out "$W/g0"
expect 2 "--reward-weights takes finite numbers .*got \"0.5;1\"" bon $BON_M --reward "$RM" --reward-weights "0.5;1" --prompts "$P" --out "$W/g0.jsonl"
expect 2 "--reward-weights is for --best-of N" generate "$SFT" --prompt hi --reward-weights 1
expect 2 "--reward is given more than 8 times" grpo $GP --out "$W/g0" --reward "$RM" --reward "$RM" --reward "$RM" --reward "$RM" \
    --reward "$RM" --reward "$RM" --reward "$RM" --reward "$RM" --reward "$RM"
[ -e "$W/g0" ] && bad "a grpo refused for its options created its --out"
expect 1 "rlhf grpo: --reward: .*typo.safetensors: cannot open" grpo $GP --reward "$RM" --reward "$W/typo.safetensors" --out "$W/g1"
once "rlhf grpo:"
expect 1 "--reward .*sft.safetensors has no scalar head: it is a policy, not a reward model" rloo $GP --reward "$SFT" --out "$W/g1"
expect 1 "--reward .*critic.safetensors is a value model \(a PPO critic\)" grpo $GP --reward "$K/critic.safetensors" --out "$W/g1"
expect 1 "--reward .*rm300/last.safetensors has a tokenizer of 300 tokens" grpo $GP --reward "$RM" --reward "$W/rm300/last.safetensors" --out "$W/g1"
expect 1 "--policy .*rm.safetensors is a reward model \(it has a scalar head\)" grpo --policy "$RM" --prompts "$P" $GO --reward "$RM" --out "$W/g1"
expect 1 "no-such-prompts.jsonl" rloo --policy "$SFT" $GO --reward "$RM" --prompts "$W/no-such-prompts.jsonl" --out "$W/g1"
expect 2 "holds a ppo run, not a grpo run" grpo --policy "$SFT" --prompts "$P" $GO --reward "$RM" --out "$K" --resume --iters 100000
expect 2 "holds the checkpoints of another stage" rloo $GP --reward "$RM" --out "$D"
expect 0 "RLOO: 1 iterations; .*\(policy.safetensors\)" rloo $GP --reward "$RM" --out "$W/g2"
expect 2 "already holds a run: add --resume" rloo $GP --reward "$RM" --out "$W/g2"
expect 2 "holds a rloo run, not a grpo run" grpo --policy "$SFT" --prompts "$P" $GO --reward "$RM" --out "$W/g2" --resume --iters 2
expect 1 "--kl-coef 0 runs without a reference: resume with the run's --kl-coef" rloo --policy "$SFT" --prompts "$P" $GO --reward "$RM" --out "$W/g2" --resume --iters 2 --kl-coef 0
expect 0 "GRPO: 1 iterations" grpo $GP --reward "$RM" --out "$W/g2" --overwrite
[ -e "$W/g2/critic.safetensors" ] && bad "grpo --overwrite of a rloo run kept or wrote a critic"
# Ctrl-C mid-run: exit 130, the state saved, --resume continues to the iteration asked for
cases=$((cases + 1))
"$X" grpo --policy "$SFT" --prompts "$P" $GO --reward "$RM" --out "$W/g_int" --iters 100000 --save-every 100000 > "$OUT" 2>&1 &
pid=$!
stop_when "$W/g_int/metrics.jsonl" '"stage":"grpo","step":3,'
[ $st -eq 130 ] && grep -q "rlhf grpo: stopped at iteration [0-9]* of 100000; the state is saved in .*--resume" "$OUT" ||
    bad "grpo stopped by SIGINT: exit $st, want 130 and the resume hint"
it=$("$X" info "$W/g_int/policy.safetensors" | sed -n 's/.*"iteration":\([0-9]*\).*/\1/p')
[ -n "$it" ] || it=0
expect 0 "GRPO: $((it + 2)) iterations" grpo --policy "$SFT" --prompts "$P" $GO --reward "$RM" --out "$W/g_int" --iters $((it + 2)) --save-every 100000 --resume
grep -q "resuming .* at iteration $it" "$OUT" || bad "grpo --resume after SIGINT did not resume at iteration $it"

# --- what a stranger's trial found: a pipe as the tokenizer's --out, a device as --data, a checkpoint holding NaN,
#     a damaged or missing options.json under --resume, the run directory of a failed command, Ctrl-C during rm's
#     normalisation ---
cases=$((cases + 1))
rm -f "$W/fifo"
if mkfifo "$W/fifo" 2>/dev/null; then
    timeout 60 "$X" tokenizer --data "$Q/pretrain.txt" --vocab 300 --out "$W/fifo" > "$OUT" 2>&1 < /dev/null
    st=$?
    [ $st -eq 1 ] && grep -q -- "--out .*fifo exists and is not a regular file" "$OUT" ||
        bad "tokenizer --out FIFO: exit $st (124: it hung opening the pipe), want 1 and 'not a regular file'"
fi
# (under timeout: read as a file, /dev/zero never ends)
cases=$((cases + 1))
timeout 60 "$X" sft --model "$SFT" --data /dev/zero --out "$W/z1" > "$OUT" 2>&1 < /dev/null
st=$?
[ $st -eq 1 ] && grep -q "/dev/zero is a device, not a data file" "$OUT" || bad "sft --data /dev/zero: exit $st (124: it read forever), want 1"
[ -e "$W/z1" ] && bad "an sft refused for its --data left its --out directory"
cases=$((cases + 1))
timeout 10 "$X" tokenizer --data /dev/zero --vocab 300 --out "$W/z1.json" > "$OUT" 2>&1 < /dev/null # (it grew ~0.3 GB a second)
st=$?
[ $st -eq 1 ] && grep -q "/dev/zero is a device, not a text file" "$OUT" || bad "tokenizer --data /dev/zero: exit $st, want 1"
expect 1 "cannot read .*no-such-sft.jsonl" sft --model "$SFT" --data "$W/no-such-sft.jsonl" --out "$W/z2"
[ -e "$W/z2" ] && bad "an sft that failed before its first checkpoint left its --out directory"
expect 2 "leaves no room for a prompt" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$W/z3" --max-len 5 --max-new 4
[ -e "$W/z3" ] && bad "a ppo refused for its options left its --out directory"
# a nested --out: the parents the failed command made go too, a parent that was there stays
expect 1 "cannot read .*no-such-sft.jsonl" sft --model "$SFT" --data "$W/no-such-sft.jsonl" --out "$W/zn/a/run"
[ -e "$W/zn" ] && bad "an sft that failed before its first checkpoint left the parents it made for its --out"
mkdir -p "$W/zp"
expect 2 "leaves no room for a prompt" ppo --policy "$SFT" --reward "$RM" --prompts "$P" --out "$W/zp/a/run" --max-len 5 --max-new 4
[ -d "$W/zp" ] && ! [ -e "$W/zp/a" ] || bad "a refused ppo: the parents it made stayed, or the one that was there went"
# through "..": the directories it made go, by the names it made them under; the empty one it passed through stays
mkdir -p "$W/zq"
expect 1 "cannot read .*no-such-sft.jsonl" sft --model "$SFT" --data "$W/no-such-sft.jsonl" --out "$W/zr/../zq/run"
[ -d "$W/zq" ] && ! [ -e "$W/zq/run" ] && ! [ -e "$W/zr" ] || bad "a failed sft with --out zr/../zq/run: zq went, or zr or zq/run stayed"
# a NaN (bytes 00 00 c0 7f) over the first float of the first tensor: the data starts after the 8-byte length and the header
cp "$SFT" "$W/nan.safetensors"
hl=$(od -An -tu8 -N8 "$W/nan.safetensors" | tr -d ' ')
printf '\000\000\300\177' | dd of="$W/nan.safetensors" bs=1 seek=$((8 + hl)) conv=notrunc 2>/dev/null
expect 1 "nan.safetensors: .*\[0\] is nan: the checkpoint's weights are broken" info "$W/nan.safetensors"
expect 1 "nan.safetensors: .*is nan: the checkpoint's weights are broken" sft --model "$W/nan.safetensors" --data "$Q/sft.jsonl" --out "$W/z4"
[ -e "$W/z4" ] && bad "an sft refused for a broken --model left its --out directory"
rm -rf "$W/dmg"
cp -r "$D" "$W/dmg"
echo 'garbage{' > "$W/dmg/options.json"
cp "$W/dmg/last.safetensors" "$W/dmg.before"
expect 1 "options.json is not readable JSON: cannot check that .*dmg holds a dpo run" dpo --resume --model "$SFT" --data "$RK" --out "$W/dmg"
cmp -s "$W/dmg/last.safetensors" "$W/dmg.before" || bad "dpo --resume over a damaged options.json changed the run's checkpoint"
# a run without options.json (from before the file, or one whose file was removed): --resume warns that it cannot
# check the run, and continues it
rm -rf "$W/noopt"
cp -r "$D" "$W/noopt"
rm "$W/noopt/options.json"
expect 0 "warning: .*noopt has no options.json: cannot check that it holds a sft run, nor which options it used" \
    sft --resume --data "$Q/sft.jsonl" --out "$W/noopt" --batch 4 --steps 4
once "has no options.json"
grep -q "resuming .*noopt.* at step 3" "$OUT" || bad "sft --resume of a run without options.json did not continue it at step 3"
# Ctrl-C once the training is over (its summary printed, so the signal cannot land in a training step): the normalisation
# cannot stop midway, but the command must not end with 0, and it names what is left unnormalised. Where in the
# normalisation the signal lands is the scheduler's choice: before it (both checkpoints raw), during last.safetensors'
# (best.safetensors raw: the usual case, 600 samples take seconds), or during best.safetensors' (both normalised).
# Each message is checked against the checkpoints themselves.
cases=$((cases + 1))
rm -rf "$W/rm_int"
"$X" rm --model "$SFT" --data "$RK" --out "$W/rm_int" --steps 2 --batch 4 --eval-every 0 --normalize-samples 600 > "$OUT" 2>&1 &
pid=$!
stop_when "$OUT" "rm: held-out pairwise accuracy"
gain() { "$X" info "$W/rm_int/$1.safetensors" 2>/dev/null | grep -q "reward normalisation: gain"; }
if [ $st -ne 130 ] || grep -q "stopped at step" "$OUT"; then
    bad "rm stopped by SIGINT after its training: exit $st, want 130 (stopped in the normalisation, not in training)"
elif grep -q "stopped before the normalisation: the checkpoints in .*rm_int are UNNORMALISED (raw scores); continue with the same command and --resume" "$OUT"; then
    ! gain last && ! gain best || bad "rm stopped before the normalisation: a checkpoint said UNNORMALISED is normalised"
elif grep -q "stopped after normalising last.safetensors: best.safetensors is left UNNORMALISED; continue with the same command and --resume" "$OUT"; then
    gain last && ! gain best || bad "rm stopped after normalising last.safetensors: the checkpoints are not as the message says"
elif grep -q "rm: stopped (the signal came during the normalisation, which finished: the checkpoints are normalised)" "$OUT"; then
    gain last && gain best || bad "rm stopped as its normalisation finished: a checkpoint said normalised is not"
else
    bad "rm stopped by SIGINT during its normalisation: no message naming what is left unnormalised"
fi

if [ $fails -ne 0 ]; then
    echo "cli_errors: $fails of $cases cases FAILED"
    exit 1
fi
echo "cli_errors: all $cases cases ok (exit statuses, messages, no crash, run directories, signals, kill -9 during PPO saves, grpo and rloo, best-of-N)"
