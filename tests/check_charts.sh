#!/bin/sh
# The charts of `rlhf plot` (tools/plot.h) on a committed run directory,
# tests/fixtures/plot_run/metrics.jsonl (hand-made: every stage, and a gold
# score that rises then falls with KL): each expected SVG is written,
# rsvg-convert renders it to a non-empty PNG, its tick labels are round
# numbers evenly spaced by 1, 2 or 5 x 10^k, and the legends hold one entry
# per series. Then the failures: nothing to plot and a missing directory exit
# 1 with a message; a malformed line is skipped. Last, `rlhf demo --quick
# --algos all`: its compare.svg the same way, its table, and bad --algos lists.
# Usage: tests/check_charts.sh BUILD_DIR   (needs BUILD_DIR/rlhf and rsvg-convert)
set -u
B=${1:?usage: tests/check_charts.sh BUILD_DIR}
R=$B/check_charts
FX=$(dirname "$0")/fixtures/plot_run
CHARTS="loss reward_model ppo gold_vs_proxy gold_vs_proxy_sqrt_kl"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
command -v rsvg-convert > /dev/null || { echo "FAIL: rsvg-convert is missing (Debian: apt-get install librsvg2-bin)"; exit 1; }
[ -x "$B/rlhf" ] || { echo "FAIL: $B/rlhf is missing (make $B/rlhf)"; exit 1; }
rm -rf "$R"
mkdir -p "$R/run" "$R/empty" "$R/bad"
cp "$FX/metrics.jsonl" "$R/run/"

# Tick labels: each <g class="ticks"> group is one axis. Its labels must be
# plain decimals (no exponent, no trailing zeros, optional k for thousands),
# evenly spaced by a step of 1, 2 or 5 x 10^k, each a multiple of that step.
check_ticks() {
    awk -v file="$1" '
    function fail(why) { printf "FAIL: %s: tick labels [%s]: %s\n", file, labels, why; bad = 1 }
    /<g class="ticks"/ { in_g = 1; n = 0; labels = ""; next }
    in_g {
        for (s = $0; match(s, />[^<>]*<\/text>/); s = substr(s, RSTART + RLENGTH)) {
            t = substr(s, RSTART + 1, RLENGTH - 8); labels = labels (n ? " " : "") t
            if (t !~ /^-?[0-9]+(\.[0-9]*[1-9])?k?$/) fail("\"" t "\" is not a plain round number")
            v[++n] = (t ~ /k$/) ? substr(t, 1, length(t) - 1) * 1000 : t + 0
        }
    }
    in_g && /<\/g>/ {
        in_g = 0; groups++
        if (n < 2) { fail("fewer than two ticks"); next }
        d = v[2] - v[1]
        if (d <= 0) { fail("not increasing"); next }
        e = log(d) / log(10) + 1e-9; fe = int(e); if (fe > e) fe--; m = d / 10 ^ fe
        if ((m - 1) ^ 2 > 1e-12 && (m - 2) ^ 2 > 1e-12 && (m - 5) ^ 2 > 1e-12) fail("step " d " is not 1, 2 or 5 x 10^k")
        for (i = 2; i <= n; i++) if (((v[i] - v[i - 1]) - d) ^ 2 > (1e-6 * d) ^ 2) fail("uneven spacing")
        for (i = 1; i <= n; i++) { q = v[i] / d; if ((q - int(q + (q < 0 ? -0.5 : 0.5))) ^ 2 > 1e-10) fail(v[i] " is not a multiple of " d) }
    }
    END { if (groups < 2) { printf "FAIL: %s: no tick groups found\n", file; bad = 1 } exit bad }' "$1"
}

"$B/rlhf" plot "$R/run" > "$R/out.txt" 2>&1 || { fail "rlhf plot on the fixture exited $?"; cat "$R/out.txt"; }
for c in $CHARTS; do
    svg=$R/run/$c.svg
    [ -s "$svg" ] || { fail "$c.svg was not written"; continue; }
    if rsvg-convert "$svg" -o "$R/$c.png" 2> "$R/rsvg.txt"; then
        [ -s "$R/$c.png" ] || fail "rsvg-convert made an empty $c.png"
    else
        fail "rsvg-convert $c.svg: $(cat "$R/rsvg.txt")"
    fi
    check_ticks "$svg" || fails=$((fails + 1))
done
ls "$R/run/"*.tmp-* > /dev/null 2>&1 && fail "temporary files left behind: $(ls "$R/run/"*.tmp-*)"

# the content the charts exist for
G=$R/run/gold_vs_proxy.svg
[ -s "$G" ] && {
    [ "$(grep -c '<circle' "$G")" -ge 32 ] || fail "gold_vs_proxy.svg: fewer than 2 x 16 dots (a scatter of the ppo_gold points)"
    [ "$(grep -c '<polyline' "$G")" -eq 2 ] || fail "gold_vs_proxy.svg: not one running-mean curve per series"
    for l in "gold judge, held-out prompts" "reward model (proxy), PPO batches"; do
        [ "$(grep -c ">$l</text>" "$G")" -eq 1 ] || fail "gold_vs_proxy.svg: legend entry \"$l\" not there exactly once"
    done
}
grep -q 'stroke-opacity="0.25"' "$R/run/loss.svg" 2> /dev/null || fail "loss.svg: no faint raw curve behind the moving average"
grep -q '>KL to SFT</text>' "$R/run/reward_model.svg" 2> /dev/null && fail "reward_model.svg: a legend entry for a series it does not draw"

# failures: nothing to plot, a missing directory; a malformed (truncated) last line is skipped
echo '{"stage":"other","step":1,"x":2}' > "$R/empty/metrics.jsonl"
"$B/rlhf" plot "$R/empty" > "$R/out.txt" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "nothing to plot: exit $rc, want 1"
grep -q "rlhf plot: " "$R/out.txt" || fail "nothing to plot: no message"
ls "$R/empty/"*.svg > /dev/null 2>&1 && fail "nothing to plot, yet an SVG was written"
"$B/rlhf" plot "$R/no-such-dir" > "$R/out.txt" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "a missing directory: exit $rc, want 1"
grep -q "rlhf plot: " "$R/out.txt" || fail "a missing directory: no message"
{ cat "$FX/metrics.jsonl"; printf '{"stage":"ppo","step":81,"objective/k'; } > "$R/bad/metrics.jsonl"
"$B/rlhf" plot "$R/bad" > "$R/out.txt" 2>&1 || fail "a truncated last line: exit $?, want 0"
grep -q "line skipped" "$R/out.txt" || fail "a truncated last line: not reported as skipped"
[ -s "$R/bad/gold_vs_proxy.svg" ] || fail "a truncated last line: the charts were not written"

# rlhf demo --algos: compare.svg (gold score and win rate over SFT, a bar and a whisker per algorithm) from a
# quick run of every algorithm, the table in report.json; a name --algos does not know is a usage error (2)
A=$R/algos
if "$B/rlhf" demo --quick --algos all --threads 1 --out "$A" > "$R/algos.txt" 2>&1; then
    svg=$A/compare.svg
    if [ -s "$svg" ]; then
        rsvg-convert "$svg" -o "$R/compare.png" 2> "$R/rsvg.txt" && [ -s "$R/compare.png" ] || fail "rsvg-convert compare.svg: $(cat "$R/rsvg.txt")"
        check_ticks "$svg" || fails=$((fails + 1))
        # a bar per algorithm and SFT in the gold panel, per algorithm in the win-rate panel, and the background
        [ "$(grep -c '<rect' "$svg")" -eq 14 ] || fail "compare.svg: $(grep -c '<rect' "$svg") rects, want 7 + 6 bars and the background"
        for l in SFT PPO DPO GRPO "GRPO (gold)" RLOO best-of-8; do
            [ "$(grep -c ">$l</text>" "$svg")" -eq 2 ] || fail "compare.svg: label \"$l\" not under both panels"
        done
    else
        fail "rlhf demo --quick --algos all wrote no compare.svg"
    fi
    for a in ppo dpo grpo grpo-gold rloo bon; do
        grep -q "\"name\": \"$a\"" "$A/report.json" || fail "report.json of --algos all has no row for $a"
    done
    grep -q "^best-of-8 .*(bound)" "$R/algos.txt" || fail "the table does not label best-of-N's KL as a bound"
else
    fail "rlhf demo --quick --algos all exited $?"
    tail -5 "$R/algos.txt"
fi
for bad in nonsense ppo,,dpo dpo,dpo ""; do
    "$B/rlhf" demo --quick --algos "$bad" --out "$R/algos_bad" > "$R/out.txt" 2>&1
    rc=$?
    [ $rc -eq 2 ] || fail "--algos \"$bad\": exit $rc, want 2"
    grep -q "rlhf demo: --algos" "$R/out.txt" || fail "--algos \"$bad\": no message naming --algos"
done
[ -e "$R/algos_bad" ] && fail "a refused --algos created its run directory"

if [ $fails -gt 0 ]; then
    echo "check_charts: $fails failure(s); files in $R"
    exit 1
fi
echo "charts ok ($CHARTS and demo --algos's compare.svg: rendered by rsvg-convert, round ticks; failures exit 1)"
