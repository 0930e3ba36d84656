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
# grpo and rloo (no critic): 2 iterations, then --resume to 4 gives the bytes of 4 in one go; TRL's group metrics;
# --kl-coef 0 loads no reference; a two-reward mix; plot draws grpo.svg / rloo.svg. The demo's reward model and SFT
# policy (it ends some replies at --max-new 24, so groups differ and the policy learns)
GR="--policy $Q/sft.safetensors --reward $Q/rm.safetensors --prompts $Q/prompts.jsonl --batch 8 --mini-batch 4 --max-new 24 --lr 1e-3"
for alg in grpo rloo; do
    run $alg $GR --out "$R/$alg" --iters 4
    run $alg $GR --out "$R/${alg}_2" --iters 2
    run $alg $GR --out "$R/${alg}_2" --iters 4 --resume
    grep -q "resuming .* at iteration 2" "$R/out.txt" && grep -q "iterations; last score" "$R/out.txt" ||
        { echo "FAIL: $alg --resume did not continue"; cat "$R/out.txt"; exit 1; }
    cmp -s "$R/$alg/policy.safetensors" "$R/${alg}_2/policy.safetensors" || { echo "FAIL: $alg: 2 + resume 2 is not 4 iterations"; exit 1; }
    cmp -s "$R/$alg/policy.safetensors" "$Q/sft.safetensors" && { echo "FAIL: $alg did not change the policy"; exit 1; }
    test -e "$R/$alg/critic.safetensors" && { echo "FAIL: $alg saved a critic"; exit 1; }
    grep -q "\"stage\":\"$alg\",\"step\":4,.*\"reward_std\":[0-9].*\"frac_reward_zero_std\":[0-9]" "$R/$alg/metrics.jsonl" ||
        { echo "FAIL: $alg: no reward_std / frac_reward_zero_std at iteration 4"; exit 1; }
    run plot "$R/$alg"
    grep -q "wrote $R/$alg/$alg.svg" "$R/out.txt" && grep -q ">Groups that teach nothing</text>" "$R/$alg/$alg.svg" ||
        { echo "FAIL: plot drew no $alg.svg"; cat "$R/out.txt"; exit 1; }
done
run grpo $GR --out "$R/grpo_dapo" --iters 1 --loss-type dapo --scale-rewards none --cliprange-high 0.28 --kl-coef 0
grep -q "no reference model loaded" "$R/out.txt" || { echo "FAIL: grpo --kl-coef 0 loaded a reference"; cat "$R/out.txt"; exit 1; }
# --loss-type: bnpo divides the token losses by the minibatch's tokens, dapo by the whole batch's (per reply): the
# same bytes when one minibatch holds the batch, other bytes when two do
GL="--policy $Q/sft.safetensors --reward $Q/rm.safetensors --prompts $Q/prompts.jsonl --batch 8 --max-new 24 --lr 1e-3 --iters 1"
for mb in 8 4; do
    for lt in bnpo dapo; do run grpo $GL --mini-batch $mb --loss-type $lt --out "$R/grpo_${lt}_$mb"; done
done
cmp -s "$R/grpo_bnpo_8/policy.safetensors" "$R/grpo_dapo_8/policy.safetensors" ||
    { echo "FAIL: grpo --loss-type bnpo and dapo differ on a single minibatch"; exit 1; }
cmp -s "$R/grpo_bnpo_4/policy.safetensors" "$R/grpo_dapo_4/policy.safetensors" &&
    { echo "FAIL: grpo --loss-type bnpo and dapo are the same over two minibatches (is dapo bnpo?)"; exit 1; }
run rloo $GR --out "$R/rloo_mix" --iters 1 --reward "$Q/rm.safetensors" --reward-weights 0.5,0.25 --k3
grep -q "the reward is 0.5 x .*rm.safetensors + 0.25 x .*rm.safetensors, scored reply by reply" "$R/out.txt" ||
    { echo "FAIL: rloo with two rewards did not mix them"; cat "$R/out.txt"; exit 1; }
run generate "$R/grpo/policy.safetensors" --prompt "add 1 and 2" --max-new 4
# dpo: every pair of the rankings against the SFT model (loaded twice: policy and frozen reference), TRL's metric
# names, a held-out accuracy; --precompute-ref and --recompute give the same bytes; the checkpoint is a policy; plot
# draws dpo.svg
run dpo --model "$R/sft/last.safetensors" --data "$Q/rankings.jsonl" --out "$R/dpo" --steps 4 --batch 4 --lr 1e-3 --eval-every 2
grep -q "dpo: held-out rewards/accuracies 0\.[0-9]" "$R/out.txt" || { echo "FAIL: dpo: no held-out accuracy"; cat "$R/out.txt"; exit 1; }
for k in rewards/chosen rewards/rejected rewards/accuracies rewards/margins logps/chosen logps/rejected; do
    grep -q "\"stage\":\"dpo\",\"step\":4,.*\"$k\":-\{0,1\}[0-9]" "$R/dpo/metrics.jsonl" || { echo "FAIL: dpo: no $k at step 4"; exit 1; }
done
grep -q '"stage":"dpo","step":4,"val/loss":[0-9].*"val/rewards/accuracies":[0-9].*"val/rewards/margins":' "$R/dpo/metrics.jsonl" ||
    { echo "FAIL: dpo: no validation line at step 4"; cat "$R/dpo/metrics.jsonl"; exit 1; }
grep -q '"stage":"dpo","step":1,.*"rewards/chosen":0,"rewards/rejected":0,' "$R/dpo/metrics.jsonl" ||
    { echo "FAIL: dpo: at step 1 the policy is not its reference (implicit rewards not 0)"; exit 1; }
run dpo --model "$R/sft/last.safetensors" --data "$Q/rankings.jsonl" --out "$R/dpo_pre" --steps 4 --batch 4 --lr 1e-3 --eval-every 2 --precompute-ref
grep -q "reference log-probs precomputed" "$R/out.txt" || { echo "FAIL: dpo --precompute-ref did not precompute"; cat "$R/out.txt"; exit 1; }
cmp -s "$R/dpo/last.safetensors" "$R/dpo_pre/last.safetensors" || { echo "FAIL: dpo --precompute-ref changed the checkpoint"; exit 1; }
run dpo --model "$R/sft/last.safetensors" --data "$Q/rankings.jsonl" --out "$R/dpo_rc" --steps 4 --batch 4 --lr 1e-3 --eval-every 2 --recompute
cmp -s "$R/dpo/last.safetensors" "$R/dpo_rc/last.safetensors" || { echo "FAIL: dpo --recompute changed the checkpoint"; exit 1; }
cmp -s "$R/sft/last.safetensors" "$R/dpo/last.safetensors" && { echo "FAIL: dpo did not change the policy"; exit 1; }
run info "$R/dpo/last.safetensors"
grep -q "kind: policy$" "$R/out.txt" || { echo "FAIL: dpo's checkpoint is not a policy"; cat "$R/out.txt"; exit 1; }
run dpo --model "$R/sft/last.safetensors" --data "$Q/rankings.jsonl" --out "$R/dpo_ipo" --steps 2 --batch 4 --lr 1e-3 --loss ipo --beta 0.5
grep -q "beta 0.5, loss ipo" "$R/out.txt" || { echo "FAIL: dpo --loss ipo --beta 0.5 not used"; cat "$R/out.txt"; exit 1; }
run dpo --model "$R/sft/last.safetensors" --data "$Q/rankings.jsonl" --out "$R/dpo_cdpo" --steps 2 --batch 4 --label-smoothing 0.1 --ref "$R/sft/last.safetensors"
grep -q "loss sigmoid (cDPO)" "$R/out.txt" || { echo "FAIL: dpo --label-smoothing is not cDPO"; cat "$R/out.txt"; exit 1; }
# SimPO: no reference loaded (--model once); --resume needs no --model, and 2 + resume 1 is 3 steps (constant lr)
SP="--data $Q/rankings.jsonl --batch 4 --lr 1e-3 --decay constant --loss simpo --simpo-gamma 0.3 --label-smoothing 0.1"
run dpo --model "$R/sft/last.safetensors" $SP --out "$R/dpo_simpo" --steps 3
grep -q "loss simpo (no reference)" "$R/out.txt" || { echo "FAIL: dpo --loss simpo is not reference-free"; cat "$R/out.txt"; exit 1; }
run dpo --model "$R/sft/last.safetensors" $SP --out "$R/dpo_simpo2" --steps 2
run dpo $SP --out "$R/dpo_simpo2" --steps 3 --resume
grep -q "options differ" "$R/out.txt" && { echo "FAIL: dpo --loss simpo --resume without --model warned"; cat "$R/out.txt"; exit 1; }
cmp -s "$R/dpo_simpo/last.safetensors" "$R/dpo_simpo2/last.safetensors" || { echo "FAIL: dpo simpo: 2 + resume 1 is not 3 steps"; exit 1; }
run plot "$R/dpo"
for l in "training batches" "held out" "chosen replies (training batches)" "rejected replies (training batches)"; do
    grep -q ">$l</text>" "$R/dpo/dpo.svg" || { echo "FAIL: dpo.svg has no legend entry \"$l\""; exit 1; }
done
run generate "$R/dpo/last.safetensors" --prompt "add 1 and 2" --max-new 4
# kto on unpaired labels (60 SFT replies desirable, 40 replies "no." not: a warning on the balance), TRL's metric
# names and a held-out accuracy; 2 steps + --resume 2 are the bytes of 4 in one go (constant lr), and so are
# --precompute-ref and --recompute; the checkpoint is a policy; plot draws kto.svg
head -60 "$Q/sft.jsonl" | sed 's/}$/, "label": true}/' > "$R/kto.jsonl"
sed -n 61,100p "$Q/sft.jsonl" | sed 's/"completion": ".*"}$/"completion": "no.", "label": false}/' >> "$R/kto.jsonl"
KT="--model $R/sft/last.safetensors --data $R/kto.jsonl --batch 4 --lr 1e-3 --eval-every 2 --decay constant"
run kto $KT --out "$R/kto" --steps 4
grep -q "kto: held-out accuracy [01]\.[0-9]" "$R/out.txt" && grep -q "warning: kto: 60 desirable x --desirable-weight 1 / (40 undesirable" "$R/out.txt" ||
    { echo "FAIL: kto: no held-out accuracy or balance warning"; cat "$R/out.txt"; exit 1; }
for k in count/chosen count/rejected rewards/chosen rewards/rejected logps/chosen logps/rejected kl; do
    grep -q "\"stage\":\"kto\",\"step\":4,.*\"$k\":" "$R/kto/metrics.jsonl" || { echo "FAIL: kto: no $k at step 4"; exit 1; }
done
grep -q '"stage":"kto","step":4,"val/loss":[0-9].*"val/accuracy":[0-9].*"val/kl":[0-9]' "$R/kto/metrics.jsonl" ||
    { echo "FAIL: kto: no validation line at step 4"; cat "$R/kto/metrics.jsonl"; exit 1; }
run kto $KT --out "$R/kto_2" --steps 2
run kto $KT --out "$R/kto_2" --steps 4 --resume
grep -q "resuming .* at step 2" "$R/out.txt" || { echo "FAIL: kto --resume did not resume"; cat "$R/out.txt"; exit 1; }
run kto $KT --out "$R/kto_pre" --steps 4 --precompute-ref --recompute
for d in kto_2 kto_pre; do
    cmp -s "$R/kto/last.safetensors" "$R/$d/last.safetensors" || { echo "FAIL: kto: $d is not the bytes of the run of 4 steps"; exit 1; }
done
cmp -s "$R/sft/last.safetensors" "$R/kto/last.safetensors" && { echo "FAIL: kto did not change the policy"; exit 1; }
run info "$R/kto/last.safetensors"
grep -q "kind: policy$" "$R/out.txt" || { echo "FAIL: kto's checkpoint is not a policy"; cat "$R/out.txt"; exit 1; }
run plot "$R/kto"
for l in "held out" "desirable completions (training batches)" "undesirable completions (training batches)"; do
    grep -q ">$l</text>" "$R/kto/kto.svg" || { echo "FAIL: kto.svg has no legend entry \"$l\""; exit 1; }
done
# dpo from a Hugging Face GPT-2 directory (V 50,257, tiny widths) with GPT-2's tokenizer: policy and reference grow
# to 50,262 alike (the implicit rewards are 0 at step 1), also when --resume loads the reference again (a constant
# learning rate: a first leg of 2 steps has the schedule of a run of 3)
G=../shared/testdata/gpt2
if [ -f "$G/encoder.json" ] && [ -x "$B/hf_gpt2_dir" ]; then
    "$B/hf_gpt2_dir" "$R/gpt2" > /dev/null
    printf '{"prompt": "Add 2 and 3.", "chosen": "5", "rejected": "7"}\n{"prompt": "Say hello.", "chosen": "Hello!", "rejected": "No."}\n' > "$R/hf_prefs.jsonl"
    HFD="--model $R/gpt2 --tokenizer $G --data $R/hf_prefs.jsonl --batch 2 --val-fraction 0 --lr 1e-3 --decay constant"
    run dpo $HFD --out "$R/dpo_hf" --steps 2
    grep -q "dpo: vocabulary grown from 50257 to 50262 tokens" "$R/out.txt" || { echo "FAIL: dpo on GPT-2: no growth"; cat "$R/out.txt"; exit 1; }
    grep -q '"step":1,.*"rewards/chosen":0,"rewards/rejected":0,' "$R/dpo_hf/metrics.jsonl" ||
        { echo "FAIL: dpo on GPT-2: the grown reference differs from the grown policy"; exit 1; }
    run dpo $HFD --out "$R/dpo_hf" --steps 3 --resume
    run dpo $HFD --out "$R/dpo_hf3" --steps 3
    cmp -s "$R/dpo_hf/last.safetensors" "$R/dpo_hf3/last.safetensors" || { echo "FAIL: dpo on GPT-2: 2 + resume 1 is not 3 steps"; exit 1; }
else
    echo "cli_smoke: dpo on a GPT-2 directory skipped ($G/encoder.json or $B/hf_gpt2_dir missing)"
fi
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

# best-of-N at inference: N scores, the highest one marked; --only-best prints the marked reply alone. bon on the
# same prompt and seed samples the same replies: its mean best score is the marked one, its mean the scores' mean,
# and it leaves the reply out (without --keep-cut) when generate marked it cut. Seeds 1 and 3: one kept reply
# that ends, one cut at --max-new (with this build's numbers).
S=$Q/sft.safetensors
RW=$Q/rm.safetensors
echo '{"prompt": "reverse: red blue green"}' > "$R/bon_one.jsonl"
for seed in 1 3; do
    gen_bon() { run generate "$S" --prompt "reverse: red blue green" --best-of 5 --reward "$RW" --temperature 1 --max-new 24 --seed $seed "$@"; }
    gen_bon
    # "* 2  +1.2345  reply" (kept) and "  1  -0.5000  reply": K or - and the score
    sed -n 's/^\* *[0-9][0-9]*  *\([-+][0-9.]*\)  .*/K \1/p; s/^  *[0-9][0-9]*  *\([-+][0-9.]*\)  .*/- \1/p' "$R/out.txt" > "$R/bon_scores.txt"
    [ "$(wc -l < "$R/bon_scores.txt")" -eq 5 ] && [ "$(grep -c '^K' "$R/bon_scores.txt")" -eq 1 ] ||
        { echo "FAIL: generate --best-of 5 did not print 5 scores with one kept"; cat "$R/out.txt"; exit 1; }
    awk '{ if (NR == 1 || $2 + 0 > max) max = $2 + 0; if ($1 == "K") kept = $2 + 0 } END { exit !(kept == max) }' "$R/bon_scores.txt" ||
        { echo "FAIL: generate --best-of marked a reply whose score is not the highest"; cat "$R/out.txt"; exit 1; }
    sed -n 's/^\* *[0-9][0-9]*  *[-+][0-9.]*  //p' "$R/out.txt" > "$R/bon_kept.txt"
    gen_bon --only-best
    cmp -s "$R/out.txt" "$R/bon_kept.txt" || { echo "FAIL: generate --only-best did not print the marked reply alone"; cat "$R/out.txt" "$R/bon_kept.txt"; exit 1; }
    run bon --model "$S" --reward "$RW" --prompts "$R/bon_one.jsonl" --out "$R/bon_one_out.jsonl" --n 5 --max-new 24 --seed $seed --keep-cut --overwrite
    sed -n 's/^bon: 1 prompts, best of 5: mean best score \([-0-9.]*\) vs \([-0-9.]*\) over all 5 samples.*/\1 \2/p' "$R/out.txt" > "$R/bon_means.txt"
    awk 'NR == FNR { best = $1; all = $2; next } { if ($1 == "K") kept = $2; sum += $2 }
         END { d1 = best - kept; d2 = all - sum / 5; exit !(NR == 6 && d1 * d1 < 1e-8 && d2 * d2 < 2.25e-8) }' "$R/bon_means.txt" "$R/bon_scores.txt" ||
        { echo "FAIL: bon and generate --best-of with seed $seed disagree"; cat "$R/out.txt" "$R/bon_scores.txt"; exit 1; }
    rm -f "$R/bon_one_nc.jsonl"
    st=0
    "$B/rlhf" bon --model "$S" --reward "$RW" --prompts "$R/bon_one.jsonl" --out "$R/bon_one_nc.jsonl" --n 5 --max-new 24 --seed $seed > "$R/out.txt" 2>&1 || st=$?
    if grep -q '\[cut: ' "$R/bon_kept.txt"; then
        [ $st -eq 1 ] && grep -q "every kept reply stopped at --max-new 24 before its end: nothing to write" "$R/out.txt"
    else
        [ $st -eq 0 ] && [ "$(wc -l < "$R/bon_one_nc.jsonl")" -eq 1 ]
    fi || { echo "FAIL: bon (seed $seed) and generate --best-of disagree on whether the kept reply was cut"; cat "$R/out.txt" "$R/bon_kept.txt"; exit 1; }
done

# several rewards: the same reward model twice, weighted 2 and 1, scores three times as high, and keeps the same replies
run bon --model "$S" --reward "$RW" --prompts "$R/bon_one.jsonl" --out "$R/bon_single.jsonl" --n 5 --max-new 24 --keep-cut
sed -n 's/^bon: 1 prompts, best of 5: mean best score \([-0-9.]*\) vs \([-0-9.]*\) over.*/\1 \2/p' "$R/out.txt" > "$R/bon_means1.txt"
run bon --model "$S" --reward "$RW" --reward "$RW" --reward-weights 2,1 --prompts "$R/bon_one.jsonl" --out "$R/bon_mix.jsonl" --n 5 --max-new 24 --keep-cut
sed -n 's/^bon: 1 prompts, best of 5: mean best score \([-0-9.]*\) vs \([-0-9.]*\) over.*/\1 \2/p' "$R/out.txt" > "$R/bon_means3.txt"
paste "$R/bon_means1.txt" "$R/bon_means3.txt" | awk '{ d1 = $3 - 3 * $1; d2 = $4 - 3 * $2; exit !(NF == 4 && d1 * d1 < 1e-7 && d2 * d2 < 1e-7) }' &&
    cmp -s "$R/bon_single.jsonl" "$R/bon_mix.jsonl" || { echo "FAIL: bon with --reward-weights 2,1 of one model is not 3 x its score"; cat "$R/out.txt"; exit 1; }
run generate "$S" --prompt "reverse: red blue green" --best-of 3 --reward "$RW" --reward "$RW" --reward-weights 1,-2 --max-new 8
grep -q "scored by 1 x .*rm.safetensors - 2 x .*rm.safetensors" "$R/out.txt" || { echo "FAIL: generate --best-of with two rewards"; cat "$R/out.txt"; exit 1; }

# bon as data: a prompt string, a conversation, a conversation with an assistant turn; the SFT file reads back
u='{"role": "user", "content": "add 1 and 2"}'
printf '%s\n' '{"prompt": "reverse: red blue green"}' "{\"prompt\": [{\"role\": \"system\", \"content\": \"be brief\"}, $u]}" \
    "{\"messages\": [$u, {\"role\": \"assistant\", \"content\": \"3\"}, {\"role\": \"user\", \"content\": \"say moon twice\"}]}" > "$R/bon_prompts.jsonl"
run bon --model "$S" --reward "$RW" --prompts "$R/bon_prompts.jsonl" --out "$R/bon.jsonl" --n 4 --keep-cut
grep -q "^bon: 3 prompts, best of 4: mean best score" "$R/out.txt" && [ "$(wc -l < "$R/bon.jsonl")" -eq 3 ] ||
    { echo "FAIL: bon did not write 3 records"; cat "$R/out.txt" "$R/bon.jsonl"; exit 1; }
sed -n 's/^bon: 3 prompts.*mean best score \([-0-9.]*\) vs \([-0-9.]*\) over all 12 samples.*/\1 \2/p' "$R/out.txt" |
    awk '{ exit !(NF == 2 && $1 + 0 >= $2 + 0) }' || { echo "FAIL: bon's mean best score is below its mean score"; cat "$R/out.txt"; exit 1; }
sed -n 1p "$R/bon.jsonl" | grep -q '^{"prompt": "reverse: red blue green", "completion": "' &&
    sed -n 2p "$R/bon.jsonl" | grep -q '^{"messages": \[{"role": "system", "content": "be brief"}, {"role": "user", "content": "add 1 and 2"}, {"role": "assistant", "content": "' &&
    sed -n 3p "$R/bon.jsonl" | grep -q '^{"prompt": \[{"role": "user", "content": "add 1 and 2"}, {"role": "assistant", "content": "3"}, {"role": "user", "content": "say moon twice"}\], "completion": \[{"role": "assistant", "content": "' ||
    { echo "FAIL: bon's records are not in TRL's forms"; cat "$R/bon.jsonl"; exit 1; }
run eval "$S" --data "$R/bon.jsonl"
grep -q "of 3 records" "$R/out.txt" || { echo "FAIL: eval does not read bon's file"; cat "$R/out.txt"; exit 1; }
run sft --model "$S" --data "$R/bon.jsonl" --val "$R/bon.jsonl" --out "$R/sft_bon" --steps 2 --batch 3
cp "$R/bon.jsonl" "$R/bon.first"
run bon --model "$S" --reward "$RW" --prompts "$R/bon_prompts.jsonl" --out "$R/bon.jsonl" --n 4 --keep-cut --overwrite
cmp -s "$R/bon.jsonl" "$R/bon.first" || { echo "FAIL: bon with the same seed wrote another file"; exit 1; }
# a kept reply cut at --max-new is written with --keep-cut (and counted); without it, left out and counted:
# the second file is the first without its C cut records
head -200 "$Q/prompts.jsonl" > "$R/bon_200.jsonl"
run bon --model "$S" --reward "$RW" --prompts "$R/bon_200.jsonl" --out "$R/bon_all.jsonl" --n 2 --max-new 3 --keep-cut
C=$(sed -n 's/.* \([0-9][0-9]*\) of 200 kept replies stopped at --max-new 3 before their end (written: --keep-cut).*/\1/p' "$R/out.txt")
[ -n "$C" ] && [ "$C" -ge 1 ] && [ "$(wc -l < "$R/bon_all.jsonl")" -eq 200 ] ||
    { echo "FAIL: bon --keep-cut --max-new 3 did not write and count its cut replies"; cat "$R/out.txt"; exit 1; }
st=0
"$B/rlhf" bon --model "$S" --reward "$RW" --prompts "$R/bon_200.jsonl" --out "$R/bon_cut.jsonl" --n 2 --max-new 3 > "$R/out.txt" 2>&1 || st=$?
if [ "$C" -eq 200 ]; then
    [ $st -eq 1 ] && grep -q "every kept reply stopped" "$R/out.txt"
else
    [ $st -eq 0 ] && [ "$(wc -l < "$R/bon_cut.jsonl")" -eq $((200 - C)) ] && ! grep -vxFf "$R/bon_all.jsonl" "$R/bon_cut.jsonl" > /dev/null &&
        grep -q "$C of 200 kept replies stopped at --max-new 3 before their end, left out" "$R/out.txt"
fi || { echo "FAIL: bon without --keep-cut did not leave out exactly the $C cut replies"; cat "$R/out.txt"; exit 1; }
# HH-RLHF's template: the policy and reward model of --template hh
run generate "$R/sft_hh/last.safetensors" --prompt "add 1 and 2" --best-of 2 --reward "$R/rm_hh/last.safetensors" --max-new 4
run bon --model "$R/sft_hh/last.safetensors" --reward "$R/rm_hh/last.safetensors" --prompts "$R/bon_prompts.jsonl" --out "$R/bon_hh.jsonl" --max-new 4 --keep-cut
run eval "$R/sft_hh/last.safetensors" --data "$R/bon_hh.jsonl"
set +e
"$B/rlhf" sft --no-such-option > /dev/null 2>&1
[ $? -eq 2 ] || { echo "FAIL: a usage error must exit 2"; exit 1; }
"$B/rlhf" info "$R/no-such-file.safetensors" > /dev/null 2>&1
[ $? -eq 1 ] || { echo "FAIL: a runtime failure must exit 1"; exit 1; }
echo "rlhf command smoke run ok (tokenizer, pretrain, sft + resume, rm, ppo + resume, grpo and rloo + resume, grpo loss types, dpo, simpo + resume, kto + resume, --recompute, generate, generate --best-of, bon, chat, score, eval, export, info, plot)"
