#!/bin/sh
# rlhf label end to end (run by `make test` after `rlhf demo --quick`, whose SFT policy it samples from):
# the line mode's exact records for demos, rankings and pairs with skip and undo; malformed answers; a
# labelling run killed with kill -9 and resumed (no duplicate, no torn line); the files read by rlhf sft,
# rm and dpo unchanged; agreement against hand-worked figures; the terminal mode through a pseudo-terminal
# (tests/label_pty.c) with its files checked here.
# Usage: tests/cli_label.sh BUILD_DIR [RLHF [DEMO_DIR]]   (make debug passes its ASan build and its demo run)
set -eu
B=$1
RLHF=${2:-$B/rlhf}
Q=${3:-$B/demo_quick}
R=$B/cli_label_$(basename "$RLHF")
S=$Q/sft.safetensors
rm -rf "$R"
mkdir -p "$R"
die() { echo "FAIL: $*"; exit 1; }
# LLVM's OpenMP runtime (clang builds) registers each process in /dev/shm and removes the entry at exit; a process
# killed with kill -9 leaves it behind, and once /dev/shm is full every program started with that runtime dies of
# SIGBUS. forget_killed PID tidies up after a process this script killed.
forget_killed() { rm -f "/dev/shm/__KMP_REGISTERED_LIB_$1_"* 2>/dev/null; }
run() { "$RLHF" "$@" > "$R/out.txt" 2>&1 || { echo "FAIL: rlhf $*"; cat "$R/out.txt"; exit 1; }; }
# a record without the fields that change from run to run (when, how long)
strip() { sed 's/, "time": "[^"]*", "seconds": [0-9.]*}$/}/' "$1"; }
expect() { # FILE, then the expected lines (time and seconds stripped)
    f=$1; shift
    printf '%s\n' "$@" > "$R/expected.txt"
    strip "$f" > "$R/got.txt"
    cmp -s "$R/expected.txt" "$R/got.txt" || { echo "FAIL: $f is not as expected"; diff "$R/expected.txt" "$R/got.txt"; exit 1; }
}
label() { # MODE INPUT OPTIONS...: the line mode with INPUT on stdin; its stdout in out.txt
    m=$1; in=$2; shift 2
    printf "$in" | "$RLHF" label "$m" --labeller tester "$@" > "$R/out.txt" 2> "$R/err.txt" ||
        { echo "FAIL: rlhf label $m $*"; cat "$R/out.txt" "$R/err.txt"; exit 1; }
}
printf '%s\n' '{"prompt": "say hi"}' '{"prompt": "add 1 and 2"}' '{"prompt": "name a colour"}' '{"prompt": "greet Ann politely"}' > "$R/p.jsonl"
cp "$R/p.jsonl" "$R/pc.jsonl"
echo '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "add 2 and 2"}]}' >> "$R/pc.jsonl"

# --- demos: a two-line reply, skip, undo of the skip, skip again, a reply, a conversation, quit
label demos 'first reply\nline two\n.\ns\nu\ns\nthird, ünïcode ✓\n.\nq\n' --prompts "$R/pc.jsonl" --out "$R/d.jsonl"
expect "$R/d.jsonl" \
    '{"prompt": "say hi", "completion": "first reply\nline two", "labeller": "tester", "prompt_index": 0, "prompt_hash": "3a203a9b7cb5643d"}' \
    '{"prompt": "name a colour", "completion": "third, ünïcode ✓", "labeller": "tester", "prompt_index": 2, "prompt_hash": "2b335c4d42b318f9"}'
expect "$R/d.jsonl.skipped" '{"skipped": true, "labeller": "tester", "prompt_index": 1, "prompt_hash": "56f7b2ffeadb86e2"}'
grep -q '^-- undone: the skip of prompt 2$' "$R/out.txt" || die "demos: undo did not say what it undid"
# resumed: the first prompt neither labelled nor skipped (4); the conversation keeps its turns
label demos 'four\n.\n4\n.\n' --prompts "$R/pc.jsonl" --out "$R/d.jsonl"
grep -q '^label demos: 5 prompts in .*; 2 labelled and 1 skipped in ' "$R/out.txt" || die "demos: the resume did not count the earlier run"
grep -q '^== prompt 4 of 5 (demos) ==$' "$R/out.txt" && ! grep -q '== prompt [123] of' "$R/out.txt" || die "demos: the resume did not start at prompt 4"
strip "$R/d.jsonl" | sed -n 4p | grep -qxF '{"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "add 2 and 2"}], "completion": [{"role": "assistant", "content": "4"}], "labeller": "tester", "prompt_index": 4, "prompt_hash": "291e1ba5d0c95e82"}' ||
    die "demos: the conversation's record is not TRL's conversational prompt-completion"
grep -q 'none left' "$R/out.txt" || die "demos: all labelled or skipped, yet prompts left"
run sft --model "$S" --data "$R/d.jsonl" --out "$R/sft" --steps 2 --batch 2
# --revisit-skipped offers the skipped prompt 2 again
label demos '3\n.\n' --prompts "$R/pc.jsonl" --out "$R/d.jsonl" --revisit-skipped
strip "$R/d.jsonl" | sed -n 5p | grep -q '"completion": "3", .*"prompt_index": 1,' || die "demos: --revisit-skipped did not offer prompt 2"

# --- rank: orders typed both ways, skip, two undos (a record, then a skip), quit; exact rankings
RK="--prompts $R/p.jsonl --policy $S --k 4 --max-new 12 --temperature 0.8 --seed 3"
label rank '2143\ns\n4 3 2 1\nu\nu\n1234\nq\n' $RK --out "$R/r.jsonl"
strip "$R/r.jsonl" | sed 's/"completions": \[.*\], "ranking"/"ranking"/' > "$R/got.txt"
printf '%s\n' \
    "{\"prompt\": \"say hi\", \"ranking\": [1, 0, 3, 2], \"labeller\": \"tester\", \"prompt_index\": 0, \"prompt_hash\": \"3a203a9b7cb5643d\", \"policy\": \"$S\", \"seed\": 3, \"temperature\": 0.8, \"scores\": [null, null, null, null], \"flags\": [[], [], [], []]}" \
    "{\"prompt\": \"add 1 and 2\", \"ranking\": [0, 1, 2, 3], \"labeller\": \"tester\", \"prompt_index\": 1, \"prompt_hash\": \"56f7b2ffeadb86e2\", \"policy\": \"$S\", \"seed\": 3, \"temperature\": 0.8, \"scores\": [null, null, null, null], \"flags\": [[], [], [], []]}" > "$R/expected.txt"
cmp -s "$R/expected.txt" "$R/got.txt" || { echo "FAIL: rank's records"; diff "$R/expected.txt" "$R/got.txt"; exit 1; }
[ ! -s "$R/r.jsonl.skipped" ] || die "rank: the undone skip is still in r.jsonl.skipped"
# the replies come from (seed, prompt index): another run shows the same ones
label rank '2143\n1234\nq\n' $RK --out "$R/r2.jsonl"
strip "$R/r.jsonl" > "$R/a.txt" && strip "$R/r2.jsonl" > "$R/b.txt"
cmp -s "$R/a.txt" "$R/b.txt" || die "rank: the same options sampled other replies"
[ "$(grep -c '^-- reply [1-4] ' "$R/out.txt")" -eq 12 ] || die "rank: not 4 replies per prompt shown"

# --- compare: 1, 2, and a conversation (TRL's conversational pair); rlhf dpo and rm read it
label compare '1\n2\ns\ns\n2\n' --prompts "$R/pc.jsonl" --policy "$S" --max-new 12 --out "$R/c.jsonl"
label compare '2\n1\nq\n' --prompts "$R/pc.jsonl" --policy "$S" --max-new 12 --out "$R/c2.jsonl"
sed -n 1p "$R/c.jsonl" | sed 's/.*"chosen": \(".*"\), "rejected": \(".*"\), "labeller".*/\2, \1/' > "$R/a.txt"
sed -n 1p "$R/c2.jsonl" | sed 's/.*"chosen": \(".*"\), "rejected": \(".*"\), "labeller".*/\1, \2/' > "$R/b.txt"
cmp -s "$R/a.txt" "$R/b.txt" || die "compare: answer 2 is not answer 1 with chosen and rejected swapped"
sed -n 3p "$R/c.jsonl" | grep -q '^{"prompt": \[{"role": "system", "content": "be brief"}, {"role": "user", "content": "add 2 and 2"}\], "chosen": \[{"role": "assistant", "content": ".*"}\], "rejected": \[{"role": "assistant", "content": ".*"}\], "labeller": "tester", "prompt_index": 4,' ||
    die "compare: the conversation's record is not a conversational pair"
run dpo --model "$S" --data "$R/c.jsonl" --out "$R/dpo" --steps 1 --batch 2 --val-fraction 0

# --- a malformed answer stops the run (exit 1), names the stdin line, and loses nothing before it
st=0
printf '2143\n21x3\n' | "$RLHF" label rank $RK --out "$R/bad.jsonl" > /dev/null 2> "$R/err.txt" || st=$?
[ $st -eq 1 ] && grep -q 'stdin line 2: "21x3" is not an answer to prompt 2: expected the 4 replies best first' "$R/err.txt" &&
    [ "$(wc -l < "$R/bad.jsonl")" -eq 1 ] || { echo "FAIL: a malformed ranking (exit $st)"; cat "$R/err.txt"; exit 1; }
st=0
printf 'unfinished\n' | "$RLHF" label demos --prompts "$R/p.jsonl" --out "$R/bad_d.jsonl" > /dev/null 2> "$R/err.txt" || st=$?
[ $st -eq 1 ] && grep -q 'stdin ended inside the reply begun on line 1' "$R/err.txt" && [ ! -s "$R/bad_d.jsonl" ] ||
    { echo "FAIL: a demonstration cut by the end of input (exit $st)"; cat "$R/err.txt"; exit 1; }
st=0
printf '3\n' | "$RLHF" label compare --prompts "$R/p.jsonl" --policy "$S" --out "$R/bad_c.jsonl" > /dev/null 2> "$R/err.txt" || st=$?
[ $st -eq 1 ] && grep -q 'expected 1 or 2' "$R/err.txt" || die "compare: the answer 3 was not refused"
# a write that fails part way (a file-size limit) is cut off again: the file keeps whole lines only. The limit
# is 64 blocks (32 KB under dash, 64 under bash), not 1: LLVM's OpenMP runtime (the clang build) writes a
# registration file of its own in /dev/shm before main, and dies of SIGXFSZ under a limit of one block
long=$(printf 'x%.0s' $(seq 1 70000))
st=0
( ulimit -f 64; printf "short\n.\n$long\n.\n" | "$RLHF" label demos --prompts "$R/p.jsonl" --out "$R/big.jsonl" > /dev/null 2> "$R/err.txt" ) || st=$?
[ $st -eq 1 ] && grep -q "cannot write $R/big.jsonl: File too large (this item is not saved; the earlier ones are)" "$R/err.txt" &&
    [ "$(wc -l < "$R/big.jsonl")" -eq 1 ] && [ "$(tail -c 1 "$R/big.jsonl" | od -An -c | tr -d ' ')" = '\n' ] ||
    { echo "FAIL: a write over the file-size limit (exit $st)"; cat "$R/err.txt"; exit 1; }
# usage errors (exit 2): no mode, no policy, an --out of another mode's records; a conversation to rank (exit 1)
for args in "" "rank --prompts $R/p.jsonl --out $R/x.jsonl" "compare --prompts $R/p.jsonl --policy $S --out $R/x.jsonl --temperature 0" \
    "sort --out x" "rank --prompts $R/p.jsonl --policy $S --out $R/d.jsonl"; do
    st=0
    "$RLHF" label $args < /dev/null > "$R/out.txt" 2>&1 || st=$?
    [ $st -eq 2 ] || { echo "FAIL: rlhf label $args: exit $st, not 2"; cat "$R/out.txt"; exit 1; }
done
grep -q -- "--out $R/d.jsonl holds other records than rankings (line 1): give this mode its own --out" "$R/out.txt" ||
    { echo "FAIL: rank on a file of demonstrations"; cat "$R/out.txt"; exit 1; }
st=0
"$RLHF" label rank --prompts "$R/pc.jsonl" --policy "$S" --out "$R/x.jsonl" < /dev/null > "$R/out.txt" 2>&1 || st=$?
[ $st -eq 1 ] && grep -q 'is a conversation of 2 turns, but a ranking holds a prompt string' "$R/out.txt" ||
    { echo "FAIL: rank accepted a conversation prompt (exit $st)"; cat "$R/out.txt"; exit 1; }

# --- kill -9 in the middle of a run, then resume: every prompt once, no torn line
head -12 "$Q/prompts.jsonl" > "$R/p12.jsonl"
KC="--prompts $R/p12.jsonl --policy $S --max-new 12 --out $R/k.jsonl"
mkfifo "$R/fifo"
"$RLHF" label compare $KC < "$R/fifo" > "$R/kill.txt" 2>&1 &
pid=$!
exec 3> "$R/fifo"
printf '1\n2\n1\n2\n1\n' >&3
n=0
while [ "$(cat "$R/k.jsonl" 2>/dev/null | wc -l)" -lt 5 ] && [ $n -lt 120 ]; do sleep 1; n=$((n + 1)); done
kill -9 $pid
wait $pid 2>/dev/null || true
forget_killed $pid
exec 3>&-
[ "$(wc -l < "$R/k.jsonl")" -eq 5 ] || die "kill -9: not 5 records before the kill"
printf '{"prompt": "reverse: torn' >> "$R/k.jsonl" # a write cut by a crash
label compare '2\n2\n2\n2\n2\n2\n2\n' $KC
grep -q 'ends in a line cut by a crash (25 bytes, no newline): removed' "$R/out.txt" || die "resume: the torn line was not removed"
grep -q '^== prompt 6 of 12 (compare) ==$' "$R/out.txt" && ! grep -q '^== prompt [1-5] of' "$R/out.txt" || die "resume: not at prompt 6"
[ "$(wc -l < "$R/k.jsonl")" -eq 12 ] || die "resume: not 12 records"
sed 's/.*"prompt_index": \([0-9]*\),.*/\1/' "$R/k.jsonl" | sort -n | uniq -c | awk '$1 != 1 { bad = 1 } END { exit bad || NR != 12 }' ||
    die "resume: a prompt judged twice, or one missing"
run rm --model "$S" --data "$R/k.jsonl" --out "$R/rm_k" --steps 2 --normalize-samples 4

# --- rankings written by the tool train a reward model with rlhf rm, unchanged
head -20 "$Q/prompts.jsonl" > "$R/p20.jsonl"
label rank '1234\n2143\n3412\n4321\n1324\n1234\n2143\n3412\n4321\n1324\n1234\n2143\n3412\n4321\n1324\n1234\n2143\n3412\n4321\n1324\n' \
    --prompts "$R/p20.jsonl" --policy "$S" --max-new 16 --out "$R/rank20.jsonl"
[ "$(wc -l < "$R/rank20.jsonl")" -eq 20 ] || die "rank: not 20 rankings"
run rm --model "$S" --data "$R/rank20.jsonl" --out "$R/rm" --steps 4 --batch 4 --normalize-samples 8
grep -q "checkpoints in $R/rm: last.safetensors" "$R/out.txt" || die "rm on the tool's rankings"

# --- agreement against hand-worked figures. A ranks a > b > c > d, B ranks b > a > c > d (the same
# replies listed in another order): of 6 pairs, (a, b) discordant: 5/6, tau (5 - 1)/6 = 0.667. The pair
# x/y: A prefers x, B y: 0/1, tau -1. A vs B: 5 of 7 = 71.4%, tau (0.667 - 1)/2 = -0.167. C = A's p1
# only (and p9, whose replies nobody else saw): A vs C 6/6, tau 1; B vs C 5/6, tau 0.667. All: 16 of 19
# = 84.2%, tau (-0.333 + 1 + 0.667)/4 = 0.333.
printf '%s\n' '{"prompt": "p1", "completions": ["a", "b", "c", "d"], "ranking": [0, 1, 2, 3]}' \
    '{"prompt": "p2", "chosen": "x", "rejected": "y"}' '{"prompt": "p3", "completions": ["u", "v", "w"], "ranking": [2, 1, 0]}' > "$R/A.jsonl"
printf '%s\n' '{"prompt": "p1", "completions": ["d", "c", "b", "a"], "ranking": [2, 3, 1, 0]}' \
    '{"prompt": "p2", "chosen": "y", "rejected": "x"}' > "$R/B.jsonl"
printf '%s\n' '{"prompt": "p1", "completions": ["a", "b", "c", "d"], "ranking": [0, 1, 2, 3]}' \
    '{"prompt": "p9", "completions": ["u", "v"], "ranking": [0, 1]}' > "$R/C.jsonl"
run label agreement "$R/A.jsonl" "$R/B.jsonl" "$R/C.jsonl"
printf '%s\n' "$R/A.jsonl vs $R/B.jsonl: 2 prompts, 7 pairs of replies: agreement 71.4% (5 of 7), Kendall's tau -0.167" \
    "$R/A.jsonl vs $R/C.jsonl: 1 prompts, 6 pairs of replies: agreement 100.0% (6 of 6), Kendall's tau 1.000" \
    "$R/B.jsonl vs $R/C.jsonl: 1 prompts, 6 pairs of replies: agreement 83.3% (5 of 6), Kendall's tau 0.667" \
    "all: 4 prompts, 19 pairs of replies: agreement 84.2%, mean Kendall's tau 0.333" > "$R/expected.txt"
cmp -s "$R/expected.txt" "$R/out.txt" || { echo "FAIL: agreement"; diff "$R/expected.txt" "$R/out.txt"; exit 1; }
# two labellers with the tool: the same options give the same replies, so their files match. Prompt 1:
# 2143 against 1234, 4 of 6 pairs alike (tau 1/3); prompt 2: 1234 against 4321, none (tau -1)
label rank '1234\n4321\n' $RK --out "$R/r_other.jsonl"
run label agreement "$R/r.jsonl" "$R/r_other.jsonl"
grep -q "^all: 2 prompts, 12 pairs of replies: agreement 33.3%, mean Kendall's tau -0.333$" "$R/out.txt" ||
    { echo "FAIL: agreement of two labellers"; cat "$R/out.txt"; exit 1; }

# --- the terminal mode through a pseudo-terminal: keys in, files out, the screen restored
if [ -x "$B/label_pty" ]; then
    "$B/label_pty" "$RLHF" "$S" "$R/p.jsonl" "$R" > "$R/pty.txt" 2>&1 || { cat "$R/pty.txt"; die "label_pty"; }
    if grep -q "skipped" "$R/pty.txt"; then cat "$R/pty.txt"; else
        expect "$R/pty_demos.jsonl" '{"prompt": "say hi", "completion": "abc!\nsecond", "labeller": "pty", "prompt_index": 0, "prompt_hash": "3a203a9b7cb5643d"}'
        strip "$R/pty_rank.jsonl" | sed 's/"completions": \[.*\], "ranking"/"ranking"/; s/, "policy": .*, "scores"/, "scores"/' > "$R/got.txt"
        printf '%s\n' '{"prompt": "say hi", "ranking": [1, 0, 2], "labeller": "pty", "prompt_index": 0, "prompt_hash": "3a203a9b7cb5643d", "scores": [null, 2, null], "flags": [[], ["hallucination"], []]}' \
            '{"prompt": "add 1 and 2", "ranking": [2, 1, 0], "labeller": "pty", "prompt_index": 1, "prompt_hash": "56f7b2ffeadb86e2", "scores": [null, null, null], "flags": [[], [], []]}' > "$R/expected.txt"
        cmp -s "$R/expected.txt" "$R/got.txt" || { echo "FAIL: the terminal's rankings"; diff "$R/expected.txt" "$R/got.txt"; exit 1; }
        # the terminal and the line mode show the same replies: answer 2 in both, the same record
        printf '2\nq\n' | "$RLHF" label compare --prompts "$R/p.jsonl" --policy "$S" --max-new 8 --out "$R/line_compare.jsonl" \
            --labeller pty > "$R/out.txt" 2>&1 || { cat "$R/out.txt"; die "compare in the line mode"; }
        strip "$R/pty_compare.jsonl" > "$R/a.txt" && strip "$R/line_compare.jsonl" > "$R/b.txt"
        cmp -s "$R/a.txt" "$R/b.txt" || { echo "FAIL: the terminal and the line mode disagree"; cat "$R/a.txt" "$R/b.txt"; exit 1; }
        cat "$R/pty.txt"
    fi
else
    echo "cli_label: $B/label_pty not built: the terminal mode is not tested"
fi
echo "rlhf label ok (line mode: demos, rank, compare, skip, undo, malformed answers; kill -9 and resume; rlhf sft, rm and dpo read the files; agreement)"
