/* demo.c - `rlhf demo`: the whole InstructGPT pipeline on the built-in world
   of world.h (tasks, simulated labelers who make mistakes, a gold judge), no
   files needed. One function per stage, run in this order by cmd_demo:

     1.  demo_pretrain  the world's text, a byte-level BPE tokenizer, pretraining
     2.  demo_sft       SFT on the labelers' demonstrations
     3a. demo_rankings  labelers rank 4 to 9 SFT samples per prompt (gold judge + noise)
     3b. demo_rm_gold   the reward model's accuracy against the gold judge's rankings
     3c. demo_reward    the reward model on the rankings (eq. 1), then normalised
                        on SFT samples of PPO's prompts (it runs 3a first, 3b after)
     4.  demo_rl        PPO against the reward model, the gold judge watching
         demo_report    gold scores on held-out prompts, PPO's win rate over SFT,
                        samples side by side, report.json and the charts

   With --algos (ppo,dpo,grpo,grpo-gold,rloo,bon or all) stage 4 and the report
   are demo_compare instead: each algorithm of DEMO_ALGOS (where all their
   hyperparameters are) from the same SFT model and reward model, judged on
   the same held-out prompts, one table (gold, win rate over SFT, reward-model
   score, KL to SFT, time, memory), report.json and compare.svg. The default
   run is the pipeline above, unchanged.

   --tiny (demo_tiny) is the pipeline at a size for a small board: peak resident
   memory under 64 MB, minutes under qemu-arm. Every stage prints its memory
   budget first (demo_budget), and a trained model is loaded again from its
   checkpoint once its stage is done (demo_reload), so the later stages do not
   carry its gradients, AdamW moments and training activations.

   A unity build: this file is not compiled on its own. tools/rlhf.c includes
   it after its other commands, so the demo shares that file's static helpers
   (status line, fail, option table, load/sample helpers, run directories,
   plot) and stays one compile (`make` builds build/rlhf from tools/rlhf.c). */
#include "world.h"

enum {
    DEMO_CTX = 48,  /* the model's context, in tokens */
    DEMO_NEW = 16,  /* the longest reply, in tokens (PPO's max_new_tokens too) */
    DEMO_WATCH = 40 /* held-out prompts the gold judge scores during PPO */
};

/* ---- the demo: the whole pipeline on a built-in world, one function per stage ------------------ */
typedef struct demo {
    int seed, quick, pretrain_steps, sft_epochs, rm_prompts, ppo_iters, eval_prompts;
    int tiny;               /* --tiny: the sizes below for a small board (64 MB) */
    int n_layer, n_embd, n_head, sft_demos; /* the model's shape; SFT's demonstrations */
    int pre_batch, sft_batch, rm_batch, ppo_batch, ppo_mini; /* rows a step of each stage */
    int watch_n, rm_gold_n, norm_n; /* held-out prompts watched during PPO; fresh prompts of 3b; normalisation samples */
    float kl_coef, ppo_lr, mistake_rate;
    const char *out;
    world_rng wr;           /* the world: tasks, demonstrations, labelers' noise */
    FILE *metrics;
    rlhf_tokenizer *tok;
    rlhf_model *base, *sft, *rm, *policy;
    rlhf_dataset *prompts;
    double rm_acc, t_start; /* rm_acc: against the gold judge's rankings (-1: no pair) */
    float rm_val_acc;       /* against the labelers' held-out rankings */
    float final_kl;
    world_task watch[DEMO_WATCH]; /* the held-out prompts the gold judge scores during PPO (and GRPO, RLOO) */
    int algos;              /* --algos: a bit per DEMO_ALGOS entry; 0: the pipeline's PPO and its report */
    int peak_reset;         /* 1: the peak resident memory can be reset (Linux's /proc/self/clear_refs) */
    long peak;              /* the run's peak resident memory, in bytes, over the algorithms' peaks */
    char path[1100];
} demo;

/* ---- --algos: the algorithms compared, every hyperparameter in this table ------------------------------
   Each starts from the same SFT model and reward model (normalised on SFT samples) and is judged on the same
   held-out prompts. The RL runs get the same budget: --ppo-iters (80) iterations of 32 sampled replies,
   2 epochs over minibatches of 8, learning rate 3e-5 (PPO's --ppo-lr: the tiny model takes it without
   collapsing). GRPO and RLOO sample 8 prompts x 4 replies instead of 32 prompts x 1: the group is the
   baseline PPO's critic gives (4: the smallest group whose mean is a usable baseline at 32 replies).
   Their KL coefficients are their papers': PPO's --kl-coef 0.1 on each token's reward (InstructGPT's
   form; the demo's value), GRPO's 0.04 on k3 in the loss (DeepSeekMath), RLOO's 0.1 on each reply's reward
   (Ahmadian et al. 2024 use 0.05-0.1). DPO learns from the labelers' rankings the reward model learned
   from (5% held out with the reward model's seed, its 2 epochs and 8 prompts a step), at beta 0.1 (TRL's default) and
   a learning rate tuned for the tiny model on seed 1: gold 0.654, 0.672, 0.642, 0.565 at 5e-6, 1e-5,
   2e-5, 1e-4 (KL to SFT 0.2, 0.5, 1.3, 4.4); TRL's 1e-6 is for models 1000x larger.
   Best-of-N picks the reward model's favourite of N = 8 SFT replies to each held-out prompt: 8 x 300 =
   2400 sampled replies, about the 2560 the RL runs sample in training, spent at inference instead. */
enum { DEMO_RL, DEMO_DPO, DEMO_BON };
enum { ALGO_PPO, ALGO_DPO, ALGO_GRPO, ALGO_GRPO_GOLD, ALGO_RLOO, ALGO_BON, ALGO_N };
typedef struct demo_algo {
    const char *name;   /* in --algos, report.json, metrics.jsonl's stages and the run directory */
    const char *label;  /* in the table and the chart */
    int kind;           /* DEMO_RL: the PPO trainer (PPO, GRPO, RLOO); DEMO_DPO; DEMO_BON */
    rlhf_estimator est; /* DEMO_RL: GAE (PPO, with a critic) or a group baseline */
    int group;          /* GRPO, RLOO: replies per prompt (of 32 an iteration) */
    int gold;           /* 1: the gold judge is the reward (a verifiable reward), not the reward model */
    float kl_coef, lr;  /* beta (DPO's too) and the learning rate; NAN: the demo's --kl-coef, --ppo-lr */
    int epochs;         /* DPO: passes over the rankings */
    int n;              /* best-of-N: N */
} demo_algo;
static const demo_algo DEMO_ALGOS[ALGO_N] = {
    {"ppo", "PPO", DEMO_RL, RLHF_EST_GAE, 1, 0, NAN, NAN, 0, 0},
    {"dpo", "DPO", DEMO_DPO, RLHF_EST_GAE, 0, 0, 0.1f, 1e-5f, 2, 0},
    {"grpo", "GRPO", DEMO_RL, RLHF_EST_GRPO, 4, 0, 0.04f, 3e-5f, 0, 0},
    {"grpo-gold", "GRPO (gold)", DEMO_RL, RLHF_EST_GRPO, 4, 1, 0.04f, 3e-5f, 0, 0},
    {"rloo", "RLOO", DEMO_RL, RLHF_EST_RLOO, 4, 0, 0.1f, 3e-5f, 0, 0},
    {"bon", "best-of-8", DEMO_BON, RLHF_EST_GAE, 0, 0, 0.0f, 0.0f, 0, 8}};
static const char *demo_path(demo *d, const char *name) { return join(d->path, sizeof d->path, d->out, name); }
/* a library failure inside the demo; an interruption (Ctrl-C) says the demo does not resume */
static int demo_fail(rlhf_result r, const char *msg) {
    if (r == RLHF_ERR_INTERRUPTED || g_stop) {
        fail("demo", "interrupted; the demo does not resume: run it again (it is reproducible from its seed)");
        return stopped_status();
    }
    return fail("demo", "%s", lib_msg(msg));
}
/* a task's prompt as the user's message (its text in buf) */
static rlhf_message task_message(const world_task *task, char *buf, size_t cap) {
    rlhf_message msg;
    world_prompt(task, buf, cap);
    msg.role = RLHF_ROLE_USER;
    msg.content.str = buf;
    msg.content.len = strlen(buf);
    return msg;
}
/* the world is ASCII: a stray byte token becomes '?', so the text stays ASCII */
static void ascii_clean(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80 || (unsigned char)*s < 0x20) *s = '?';
}
/* One reply to a task's prompt, at most DEMO_NEW tokens, ASCII. */
static int reply(rlhf_model *m, const rlhf_tokenizer *t, sampler_ctx *sc, const world_task *task, char *out, size_t cap) {
    char prompt[128];
    rlhf_message msg = task_message(task, prompt, sizeof prompt);
    int s = reply_to(m, t, sc, &msg, 1, DEMO_NEW, out, cap);
    ascii_clean(out);
    return s == REPLY_OK || s == REPLY_CUT;
}
/* JSON string escaping for the files the demo writes */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 32) fprintf(f, "\\u%04x", (unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}
static int demo_commit(atomic_file *a) {
    return atomic_commit(a) == 0 ? 0 : fail("demo", "cannot write %s: %s", a->path, strerror(errno));
}
static void demo_train_options(rlhf_train_options *to) {
    to->eval_every = 0;
    to->log = log_cb;
    to->metrics = run_metrics;
    to->should_stop = should_stop;
}
/* mean gold score of m's replies on tasks (temperature 0.7); scores (n) out, may be NULL */
static double gold_eval(rlhf_model *m, const rlhf_tokenizer *t, const world_task *tasks, int n, uint64_t seed, double *scores, const char *what) {
    sampler_ctx sc;
    char out[256];
    double sum = 0.0;
    int i;
    if (!sampler_open_t(&sc, m, 0.7f, seed)) return NAN;
    for (i = 0; i < n; i++) {
        double g = reply(m, t, &sc, &tasks[i], out, sizeof out) ? world_gold(&tasks[i], out) : 0.0;
        if (scores) scores[i] = g;
        sum += g;
        if (what && i % 20 == 0) status_set("[demo] evaluating %s: %d/%d replies", what, i, n);
    }
    sampler_close(&sc);
    return sum / n;
}

/* A stage's memory budget, before it starts (budget_line of rlhf.c): the model it trains on rows x T tokens;
   PPO's critic (trained), reference (log-probs) and reward model (forwards, unless the gold judge rewards);
   then the models kept from earlier stages, which sample and score one sequence at a time */
static void demo_budget(demo *d, const char *stage, const rlhf_model *m, int rows, int T, int kind, const rlhf_model *critic, int rl) {
    rlhf_model *kept[3];
    const char *names[3] = {"base model (kept)", "SFT model (kept)", "reward model (kept)"};
    char what[64];
    size_t sum = 0;
    int k, n = 1;
    kept[0] = d->base, kept[1] = d->sft, kept[2] = d->rm;
    snprintf(what, sizeof what, "demo %s", stage);
    budget_line(what, rl ? "policy" : "model", rlhf_model_config(m), rows, T, kind, 0, &sum);
    if (critic) budget_line(what, "critic", rlhf_model_config(critic), rows, T, BUDGET_TRAINED, 0, &sum), n++;
    if (rl) budget_line(what, "reference", rlhf_model_config(m), rows, T, BUDGET_LOGPROBS, 0, &sum), n++;
    if (rl > 1 && d->rm) {
        budget_line(what, "reward model", rlhf_model_config(d->rm), rows, T, BUDGET_FORWARD, 0, &sum), n++;
        kept[2] = NULL;
    }
    for (k = 0; k < 3; k++)
        if (kept[k] && kept[k] != m) budget_line(what, names[k], rlhf_model_config(kept[k]), 1, DEMO_CTX, BUDGET_FORWARD, 0, &sum), n++;
    budget_total(what, sum, n);
}
/* A trained model freed and loaded again from the checkpoint just saved (the same weights): its gradients,
   AdamW moments and training activations go, so later stages do not carry them */
static int demo_reload(demo *d, rlhf_model **m) {
    rlhf_error err;
    rlhf_result r;
    rlhf_model_free(*m);
    *m = NULL;
    if ((r = rlhf_model_load_ex(m, d->path, &err)) != RLHF_OK) return demo_fail(r, err.message);
    rlhf_model_set_log(*m, log_cb, NULL);
    return 0;
}

/* 1. the world's text; a byte-level BPE tokenizer; pretraining */
static int demo_pretrain(demo *d) {
    size_t cap = 1 << 20, len, k;
    char *text = (char *)malloc(cap);
    rlhf_dataset *ds = NULL;
    rlhf_error err;
    rlhf_train_options to = rlhf_train_options_sft();
    rlhf_train_report rep;
    rlhf_config cfg;
    run_out ro = {NULL, 0, 0, "pretrain", 0};
    atomic_file a;
    FILE *f;
    rlhf_result r;
    say("1/4 pretraining: the world's text, a BPE tokenizer, a tiny GPT-2");
    if (!text) return fail("demo", "out of memory");
    len = world_pretrain_text(&d->wr, 6000, text, cap);
    for (k = 0; k < 400 && len + 200 < cap; k++) { /* the tokenizer also sees the instructions' words, as a real one would have */
        world_task t = world_sample_task(&d->wr);
        char p[128], ans[128];
        world_prompt(&t, p, sizeof p);
        world_answer(&t, ans, sizeof ans);
        len += (size_t)snprintf(text + len, cap - len, "%s: %s. ", p, ans);
    }
    r = rlhf_tokenizer_train(&d->tok, text, len, 320, &err);
    if (r == RLHF_OK && (f = atomic_open(&a, demo_path(d, "pretrain.txt"))) != NULL) {
        fwrite(text, 1, len, f);
        if (demo_commit(&a)) r = RLHF_ERR_IO;
    } else if (r == RLHF_OK) {
        r = RLHF_ERR_IO;
        fail("demo", "cannot write %s: %s", d->path, strerror(errno));
    }
    free(text);
    if (r != RLHF_OK) return r == RLHF_ERR_IO ? 1 : demo_fail(r, err.message);
    if ((r = rlhf_dataset_load(&ds, d->path, RLHF_DATA_TEXT, NULL, &err)) != RLHF_OK) return demo_fail(r, err.message);
    cfg.vocab_size = rlhf_tokenizer_vocab_size(d->tok);
    cfg.n_ctx = DEMO_CTX;
    cfg.n_layer = d->n_layer;
    cfg.n_head = d->n_head;
    cfg.n_embd = d->n_embd;
    if ((r = rlhf_model_create(&d->base, &cfg, (uint64_t)d->seed)) != RLHF_OK) {
        rlhf_dataset_free(ds);
        return demo_fail(r, "out of memory for the model");
    }
    rlhf_model_set_log(d->base, log_cb, NULL);
    say("  tokenizer: %d tokens; model: V %d, n_ctx %d, L %d, NH %d, C %d, %zu parameters", cfg.vocab_size, cfg.vocab_size, cfg.n_ctx,
        cfg.n_layer, cfg.n_head, cfg.n_embd, rlhf_model_num_params(d->base));
    demo_train_options(&to);
    to.opt.lr = 2e-3f;
    to.batch_size = d->pre_batch;
    to.seq_len = DEMO_CTX;
    to.max_steps = d->pretrain_steps;
    to.warmup_steps = 20;
    to.log_every = d->quick || g_tty ? 0 : 100;
    to.val_fraction = 0.02f;
    to.seed = (uint64_t)d->seed;
    demo_budget(d, "pretraining", d->base, to.batch_size, DEMO_CTX, BUDGET_TRAINED, NULL, 0);
    ro.metrics = d->metrics, ro.t0 = now_s(), to.metrics_user = &ro;
    r = rlhf_sft_train(d->base, d->tok, ds, NULL, &to, &rep, &err);
    rlhf_dataset_free(ds);
    status_done();
    if (r != RLHF_OK) return demo_fail(r, err.message);
    say("  pretraining: %ld steps, validation loss %.3f", rep.steps, (double)rep.val_loss);
    if (rlhf_model_save_ex(d->base, demo_path(d, "base.safetensors"), 0, &err) != RLHF_OK) return fail("demo", "%s", err.message);
    return demo_reload(d, &d->base);
}

/* 2. SFT on labelers' demonstrations */
static int demo_sft(demo *d) {
    rlhf_dataset *ds = NULL;
    rlhf_error err;
    rlhf_train_options to = rlhf_train_options_sft();
    rlhf_train_report rep;
    run_out ro = {NULL, 0, 0, "sft", 0};
    atomic_file a;
    FILE *f;
    rlhf_result r;
    int i;
    say("2/4 SFT: demonstrations written by simulated labelers (%.0f%% with mistakes)", 100.0 * d->mistake_rate);
    if (!(f = atomic_open(&a, demo_path(d, "sft.jsonl")))) return fail("demo", "cannot write %s: %s", d->path, strerror(errno));
    for (i = 0; i < d->sft_demos; i++) {
        world_task t = world_sample_task(&d->wr);
        char p[128], ans[160];
        world_prompt(&t, p, sizeof p);
        world_demonstration(&t, &d->wr, d->mistake_rate, ans, sizeof ans);
        fprintf(f, "{\"prompt\": ");
        json_str(f, p);
        fprintf(f, ", \"completion\": ");
        json_str(f, ans);
        fprintf(f, "}\n");
    }
    if (demo_commit(&a)) return 1;
    if ((r = rlhf_dataset_load(&ds, d->path, RLHF_DATA_SFT, NULL, &err)) != RLHF_OK) return demo_fail(r, err.message);
    if ((r = rlhf_model_load_ex(&d->sft, demo_path(d, "base.safetensors"), &err)) != RLHF_OK) {
        rlhf_dataset_free(ds);
        return demo_fail(r, err.message);
    }
    rlhf_model_set_log(d->sft, log_cb, NULL);
    demo_train_options(&to);
    to.opt.lr = 1e-3f;
    to.batch_size = d->sft_batch;
    to.epochs = d->sft_epochs;
    to.warmup_steps = 10;
    to.log_every = d->quick || g_tty ? 0 : 50;
    to.pack = 1;
    to.seed = (uint64_t)d->seed + 1;
    demo_budget(d, "SFT", d->sft, to.batch_size, DEMO_CTX, BUDGET_TRAINED, NULL, 0);
    ro.metrics = d->metrics, ro.t0 = now_s(), to.metrics_user = &ro;
    r = rlhf_sft_train(d->sft, d->tok, ds, NULL, &to, &rep, &err);
    rlhf_dataset_free(ds);
    status_done();
    if (r != RLHF_OK) return demo_fail(r, err.message);
    say("  SFT: %ld steps, validation loss on completions %.3f", rep.steps, (double)rep.val_loss);
    if (rlhf_model_save_ex(d->sft, demo_path(d, "sft.safetensors"), RLHF_SAVE_WEIGHTS_ONLY, &err) != RLHF_OK)
        return fail("demo", "%s", err.message);
    return demo_reload(d, &d->sft);
}

/* 3a. labelers rank 4 to 9 distinct SFT samples per prompt (gold judge + noise) */
static int demo_rankings(demo *d) {
    sampler_ctx sc;
    atomic_file a;
    FILE *f;
    int i, written = 0;
    if (!(f = atomic_open(&a, demo_path(d, "rankings.jsonl")))) return fail("demo", "cannot write %s: %s", d->path, strerror(errno));
    if (!sampler_open_t(&sc, d->sft, 1.0f, (uint64_t)d->seed + 2)) {
        atomic_abort(&a);
        return fail("demo", "out of memory");
    }
    for (i = 0; i < d->rm_prompts && !g_stop; i++) {
        world_task t = world_sample_task(&d->wr);
        char p[128], resp[9][160];
        double noisy[9];
        int K = 4 + world_below(&d->wr, 6), k, j, n = 0, order[9];
        if (i % 10 == 0) status_set("[demo] sampling replies for the labelers: prompt %d/%d", i, d->rm_prompts);
        if (!g_tty && i > 0 && i % 200 == 0) say("  sampled replies for %d of %d prompts", i, d->rm_prompts);
        world_prompt(&t, p, sizeof p);
        for (k = 0; k < K; k++) { /* distinct replies only: a labeler cannot rank two equal texts */
            char r[160];
            if (!reply(d->sft, d->tok, &sc, &t, r, sizeof r)) continue;
            for (j = 0; j < n && strcmp(resp[j], r) != 0; j++) {}
            if (j < n) continue;
            strcpy(resp[n], r);
            noisy[n] = world_gold(&t, r) + 0.05 * (world_uniform(&d->wr) - 0.5); /* a labeler's judgement */
            n++;
        }
        if (n < 2) continue;
        for (k = 0; k < n; k++) order[k] = k;
        for (k = 0; k < n; k++)
            for (j = k + 1; j < n; j++)
                if (noisy[order[j]] > noisy[order[k]]) {
                    int tmp = order[k];
                    order[k] = order[j];
                    order[j] = tmp;
                }
        fprintf(f, "{\"prompt\": ");
        json_str(f, p);
        fprintf(f, ", \"completions\": [");
        for (k = 0; k < n; k++) {
            if (k) fprintf(f, ", ");
            json_str(f, resp[k]);
        }
        fprintf(f, "], \"ranking\": [");
        for (k = 0; k < n; k++) fprintf(f, "%s%d", k ? ", " : "", order[k]);
        fprintf(f, "]}\n");
        written++;
    }
    sampler_close(&sc);
    status_done();
    if (g_stop) {
        atomic_abort(&a);
        return demo_fail(RLHF_ERR_INTERRUPTED, "");
    }
    if (demo_commit(&a)) return 1;
    say("  %d rankings written (prompts with fewer than 2 distinct samples skipped)", written);
    return 0;
}
/* 3b. the reward model's accuracy against the GOLD judge's rankings, on fresh prompts and samples */
static int demo_rm_gold(demo *d) {
    sampler_ctx sc;
    long right = 0, pairs = 0, too_long = 0;
    int i, n = d->rm_gold_n;
    if (!sampler_open_t(&sc, d->sft, 1.0f, (uint64_t)d->seed + 5)) return fail("demo", "out of memory");
    for (i = 0; i < n; i++) {
        world_task t = world_sample_task(&d->wr);
        char p[128], r[4][160];
        const char *pr[4], *rs[4];
        double g[4];
        float s[4];
        int k, j;
        status_set("[demo] reward model vs the gold judge: prompt %d/%d", i, n);
        world_prompt(&t, p, sizeof p);
        for (k = 0; k < 4; k++) {
            if (!reply(d->sft, d->tok, &sc, &t, r[k], sizeof r[k])) r[k][0] = 0;
            g[k] = world_gold(&t, r[k]);
            pr[k] = p;
            rs[k] = r[k];
        }
        /* a reply re-encoded from its text ('?' for stray bytes) can be longer than the tokens sampled: such a prompt is not scored */
        if (rlhf_reward_score(d->rm, d->tok, pr, rs, 4, s) != RLHF_OK) {
            if (!strstr(rlhf_model_last_error(d->rm), "longer than n_ctx")) {
                sampler_close(&sc);
                return fail("demo", "%s", rlhf_model_last_error(d->rm));
            }
            too_long++;
            continue;
        }
        for (k = 0; k < 4; k++)
            for (j = k + 1; j < 4; j++)
                if (g[k] != g[j]) {
                    pairs++;
                    right += (g[k] > g[j]) == (s[k] > s[j]);
                }
    }
    sampler_close(&sc);
    status_done();
    d->rm_acc = pairs ? (double)right / (double)pairs : -1.0;
    say("  reward model vs the gold judge on %ld fresh pairs: accuracy %.3f%s", pairs, d->rm_acc,
        too_long ? " (prompts whose replies no longer fit the context were left out)" : "");
    return 0;
}
/* 3c. the reward model: rankings (eq. 1), then normalised on SFT samples */
static int demo_reward(demo *d) {
    rlhf_dataset *prefs = NULL;
    rlhf_error err;
    rlhf_train_options to = rlhf_train_options_reward();
    rlhf_train_report rep;
    rlhf_sampler_config scfg = rlhf_sampler_config_default();
    run_out ro = {NULL, 0, 0, "rm", 0};
    atomic_file a;
    FILE *f;
    rlhf_result r;
    float mean, sd;
    int i, rc;
    say("3/4 reward model: labelers rank 4 to 9 SFT samples for each of %d prompts", d->rm_prompts);
    if ((rc = demo_rankings(d)) != 0) return rc;
    if ((r = rlhf_dataset_load(&prefs, d->path, RLHF_DATA_PREFERENCE, NULL, &err)) != RLHF_OK) return demo_fail(r, err.message);
    if ((r = rlhf_model_load_ex(&d->rm, demo_path(d, "sft.safetensors"), &err)) != RLHF_OK || (r = rlhf_model_add_score_head(d->rm, -1.0f, (uint64_t)d->seed + 3)) != RLHF_OK) {
        rlhf_dataset_free(prefs);
        return demo_fail(r, d->rm ? rlhf_model_last_error(d->rm) : err.message);
    }
    rlhf_model_set_log(d->rm, log_cb, NULL);
    demo_train_options(&to);
    to.opt.lr = 5e-4f;
    to.epochs = 2;
    to.batch_size = d->rm_batch;
    to.log_every = d->quick || g_tty ? 0 : 50;
    to.seed = (uint64_t)d->seed + 4;
    demo_budget(d, "reward model", d->rm, to.batch_size * 9, DEMO_CTX, BUDGET_TRAINED, NULL, 0); /* K up to 9 replies a prompt */
    ro.metrics = d->metrics, ro.t0 = now_s(), to.metrics_user = &ro;
    r = rlhf_reward_train(d->rm, d->tok, prefs, NULL, &to, &rep, &err);
    rlhf_dataset_free(prefs);
    status_done();
    if (r != RLHF_OK) return demo_fail(r, err.message);
    say("  reward model: %ld steps, held-out pairwise accuracy %.3f (against the labelers' noisy rankings)", rep.steps, (double)rep.val_accuracy);
    d->rm_val_acc = rep.val_accuracy;
    if ((rc = demo_rm_gold(d)) != 0) return rc;
    /* normalise on SFT samples of training prompts; these prompts are PPO's too */
    if (!(f = atomic_open(&a, demo_path(d, "prompts.jsonl")))) return fail("demo", "cannot write %s: %s", d->path, strerror(errno));
    for (i = 0; i < 1000; i++) {
        world_task t = world_sample_task(&d->wr);
        char p[128];
        world_prompt(&t, p, sizeof p);
        fprintf(f, "{\"prompt\": ");
        json_str(f, p);
        fprintf(f, "}\n");
    }
    if (demo_commit(&a)) return 1;
    if ((r = rlhf_dataset_load(&d->prompts, d->path, RLHF_DATA_PROMPTS, NULL, &err)) != RLHF_OK) return demo_fail(r, err.message);
    status_set("[demo] normalising the reward model on SFT samples");
    r = rlhf_reward_normalize(d->rm, d->sft, d->tok, d->prompts, d->norm_n, &scfg, DEMO_NEW, (uint64_t)d->seed + 6, &mean, &sd);
    status_done();
    if (r != RLHF_OK) return demo_fail(r, rlhf_model_last_error(d->rm));
    say("  normalised: raw rewards of SFT samples had mean %.3f, std %.3f", (double)mean, (double)sd);
    if (rlhf_model_save_ex(d->rm, demo_path(d, "rm.safetensors"), RLHF_SAVE_WEIGHTS_ONLY, &err) != RLHF_OK) return fail("demo", "%s", err.message);
    return demo_reload(d, &d->rm);
}

/* ids as text without a last <|end|>, stray bytes as '?' (as reply() leaves a reply) */
static void demo_text(const demo *d, const int *ids, int n, char *out, size_t cap) {
    size_t nb = 0;
    if (n > 0 && ids[n - 1] == rlhf_tokenizer_reply_end(d->tok)) n--;
    if (rlhf_tokenizer_decode(d->tok, ids, (size_t)n, out, cap - 1, &nb) != RLHF_OK) nb = 0;
    out[nb < cap - 1 ? nb : cap - 1] = 0;
    ascii_clean(out);
}
/* grpo-gold's reward: the gold judge itself, a verifiable reward. The trainer gives the prompt as the chat
   template's ids; the task is read back from their text (0 for a prompt that states none). */
static float demo_gold_score(void *user, const int *prompt, int n_prompt, const int *response, int n_response) {
    const demo *d = (const demo *)user;
    char p[512], r[160];
    world_task t;
    demo_text(d, prompt, n_prompt, p, sizeof p);
    if (!world_parse(p, &t)) return 0.0f;
    demo_text(d, response, n_response, r, sizeof r);
    return (float)world_gold(&t, r);
}
/* The library names a trainer's metric lines by its estimator ("grpo"); the demo's stage names them
   ("grpo-gold"), so the runs of --algos stay apart in metrics.jsonl. */
static void demo_metrics(void *user, const char *json) {
    const run_out *ro = (const run_out *)user;
    const char *rest = strchr(json, ',');
    char line[8192];
    if (strncmp(json, "{\"stage\":", 9) == 0 && rest && (size_t)snprintf(line, sizeof line, "{\"stage\":\"%s\"%s", ro->stage, rest) < sizeof line)
        json = line;
    run_metrics(user, json);
}

/* 4. PPO against the reward model, the gold judge watching on held-out prompts. Under --algos the same
   trainer also runs GRPO and RLOO (a group baseline, no critic), with the reward model or the gold judge. */
static int demo_rl(demo *d, const demo_algo *a) {
    rlhf_model *ref = NULL, *critic = NULL;
    rlhf_dataset *ptx = NULL;
    rlhf_ppo *ppo = NULL;
    rlhf_ppo_config pc = rlhf_ppo_config_default();
    rlhf_ppo_stats st;
    rlhf_error err;
    rlhf_result r;
    run_out ro = {NULL, 0, 0, NULL, 0};
    int i, rc = 1, gae = a->est == RLHF_EST_GAE;
    float lr = isnan(a->lr) ? d->ppo_lr : a->lr;
    memset(&st, 0, sizeof st); /* --ppo-iters is at least 1, which the compiler cannot see */
    pc.kl_coef = isnan(a->kl_coef) ? d->kl_coef : a->kl_coef;
    if (gae) say("4/4 %s: %d iterations against the reward model (beta %g)", a->label, d->ppo_iters, (double)pc.kl_coef);
    else say("4/4 %s: %d iterations of %d prompts x %d replies against %s (beta %g)", a->label, d->ppo_iters, d->ppo_batch / a->group, a->group,
             a->gold ? "the gold judge" : "the reward model", (double)pc.kl_coef);
    if ((r = rlhf_model_load_ex(&d->policy, demo_path(d, "sft.safetensors"), &err)) != RLHF_OK ||
        (r = rlhf_model_load_ex(&ref, d->path, &err)) != RLHF_OK ||
        (gae && (r = rlhf_model_load_ex(&critic, demo_path(d, "rm.safetensors"), &err)) != RLHF_OK) ||
        (r = rlhf_dataset_load(&ptx, demo_path(d, "pretrain.txt"), RLHF_DATA_TEXT, NULL, &err)) != RLHF_OK) {
        rc = demo_fail(r, err.message);
        goto done;
    }
    pc.batch_size = d->ppo_batch;
    pc.mini_batch = d->ppo_mini;
    pc.ppo_epochs = 2;
    pc.max_new_tokens = DEMO_NEW;
    pc.max_prompt_tokens = 24;
    pc.policy_opt.lr = lr;
    pc.critic_opt.lr = lr;
    pc.ptx_coef = 0.0f;
    pc.log_samples = 0;
    pc.seed = (uint64_t)d->seed + 7;
    pc.log = log_cb;
    pc.metrics = demo_metrics;
    ro.stage = a->name, ro.metrics = d->metrics, ro.t0 = now_s(), pc.metrics_user = &ro;
    pc.policy = d->policy, pc.ref = ref, pc.critic = critic, pc.reward_model = a->gold ? NULL : d->rm;
    pc.score_fn = a->gold ? demo_gold_score : NULL, pc.score_user = d;
    pc.estimator = a->est, pc.group_size = a->group;
    pc.tokenizer = d->tok, pc.prompts = d->prompts, pc.ptx = ptx;
    demo_budget(d, a->label, d->policy, pc.mini_batch, pc.max_prompt_tokens + DEMO_NEW, BUDGET_TRAINED, critic, a->gold ? 1 : 2);
    if ((r = rlhf_ppo_create(&ppo, &pc, &err)) != RLHF_OK) {
        rc = demo_fail(r, err.message);
        goto done;
    }
    for (i = 0; i < d->ppo_iters; i++) {
        char eta[32];
        if ((r = rlhf_ppo_step(ppo, &st, &err)) != RLHF_OK || g_stop) {
            rc = demo_fail(r == RLHF_OK ? RLHF_ERR_INTERRUPTED : r, err.message);
            goto done;
        }
        fmt_duration(eta, sizeof eta, (now_s() - ro.t0) / (i + 1) * (d->ppo_iters - i - 1));
        status_set("[demo] %s iteration %d/%d  score %.3f  KL %.3f  ETA %s", a->label, i + 1, d->ppo_iters, (double)st.score, (double)st.kl, eta);
        if (i % 5 == 4 || i == d->ppo_iters - 1) { /* the trainer's score beside the gold judge's, on held-out prompts */
            double g = gold_eval(d->policy, d->tok, d->watch, d->watch_n, (uint64_t)d->seed + 8, NULL, NULL);
            fprintf(d->metrics, "{\"stage\":\"%s_gold\",\"step\":%ld,\"gold/heldout\":%.5f,\"objective/scores\":%.5f,\"objective/kl\":%.5f}\n",
                    a->name, st.iteration, g, (double)st.score, (double)st.kl);
            fflush(d->metrics);
            say("  %s %3ld: %s score %6.3f, KL %6.3f, gold (held out) %.3f", a->label, st.iteration, a->gold ? "gold-judge" : "reward-model",
                (double)st.score, (double)st.kl, g);
        }
    }
    status_done();
    d->final_kl = st.kl;
    if (!mkdir_p(demo_path(d, a->name))) {
        rc = fail("demo", "cannot create %s: %s", d->path, strerror(errno));
        goto done;
    }
    if ((r = rlhf_ppo_save(ppo, d->path, &err)) != RLHF_OK) {
        rc = demo_fail(r, err.message);
        goto done;
    }
    rc = 0;
done:
    rlhf_ppo_free(ppo);
    rlhf_model_free(ref);
    rlhf_model_free(critic);
    rlhf_dataset_free(ptx);
    return rc;
}

/* the mean of x (n) and its 95% interval, mean +- 1.96 standard errors */
static double mean_ci95(const double *x, int n, double *lo, double *hi) {
    double sum = 0.0, sq = 0.0, mean, se;
    int i;
    for (i = 0; i < n; i++) {
        sum += x[i];
        sq += x[i] * x[i];
    }
    mean = sum / n;
    se = sqrt(fmax(sq / n - mean * mean, 0.0) / (n - 1));
    *lo = mean - 1.96 * se;
    *hi = mean + 1.96 * se;
    return mean;
}
/* a's win rate over b, prompt by prompt (gold scores, n each; ties count half), and its 95% interval; w (n) is scratch */
static double win_rate(const double *a, const double *b, int n, double *w, double *lo, double *hi) {
    int i;
    for (i = 0; i < n; i++) w[i] = a[i] > b[i] ? 1.0 : a[i] == b[i] ? 0.5 : 0.0;
    return mean_ci95(w, n, lo, hi);
}
/* a number for report.json: "%.4f", or null when it is not finite (the reward model's accuracies can be) */
static const char *json_num(char *buf, size_t cap, double v) {
    if (isfinite(v)) snprintf(buf, cap, "%.4f", v);
    else snprintf(buf, cap, "null");
    return buf;
}

/* the report: gold scores on held-out prompts, PPO's win rate over SFT, samples side by side, report.json, charts */
static int demo_report(demo *d) {
    world_task *eval = (world_task *)malloc((size_t)d->eval_prompts * sizeof *eval);
    double *g_sft = (double *)malloc((size_t)d->eval_prompts * sizeof(double)), *g_ppo = (double *)malloc((size_t)d->eval_prompts * sizeof(double));
    double gold_base, gold_sft, gold_ppo, mean, lo, hi, secs;
    int i, n = d->eval_prompts, rc = 0;
    long rss;
    plot_options po = plot_options_default();
    atomic_file a;
    FILE *f;
    if (!eval || !g_sft || !g_ppo) {
        free(eval), free(g_sft), free(g_ppo);
        return fail("demo", "out of memory");
    }
    say("evaluation: %d held-out prompts, replies sampled at temperature 0.7, scored by the gold judge", n);
    for (i = 0; i < n; i++) eval[i] = world_sample_task(&d->wr);
    gold_base = gold_eval(d->base, d->tok, eval, n, (uint64_t)d->seed + 9, NULL, "the base model");
    say("  base model: gold %.3f", gold_base);
    gold_sft = gold_eval(d->sft, d->tok, eval, n, (uint64_t)d->seed + 9, g_sft, "SFT");
    say("  SFT: gold %.3f", gold_sft);
    gold_ppo = gold_eval(d->policy, d->tok, eval, n, (uint64_t)d->seed + 9, g_ppo, "PPO");
    status_done();
    mean = win_rate(g_ppo, g_sft, n, g_ppo, &lo, &hi); /* g_ppo, read before it is written, holds the wins */
    secs = now_s() - d->t_start;
    rss = peak_rss_bytes();
    printf("\n== report ==\n");
    printf("gold score (held out, mean of %d): base %.3f | SFT %.3f | PPO %.3f\n", n, gold_base, gold_sft, gold_ppo);
    printf("PPO vs SFT win rate (gold judge, ties half): %.3f, 95%% interval [%.3f, %.3f]\n", mean, lo, hi);
    printf("reward model accuracy against gold rankings: %.3f (against the labelers' held-out rankings: %.3f)\n", d->rm_acc, (double)d->rm_val_acc);
    printf("KL to SFT at the end of PPO: %.3f per reply\n", (double)d->final_kl);
    printf("time %.1f s, peak memory %.1f MB\n", secs, rss / 1048576.0);
    printf("\nside by side (held-out prompts):\n");
    {
        sampler_ctx sa, sb;
        if (sampler_open_t(&sa, d->sft, 0.7f, 99) && sampler_open_t(&sb, d->policy, 0.7f, 99))
            for (i = 0; i < 6 && i < n; i++) {
                char p[128], ra[160], rb[160];
                world_prompt(&eval[i], p, sizeof p);
                if (!reply(d->sft, d->tok, &sa, &eval[i], ra, sizeof ra)) ra[0] = 0;
                if (!reply(d->policy, d->tok, &sb, &eval[i], rb, sizeof rb)) rb[0] = 0;
                printf("  %-28s SFT: %-30s PPO: %s\n", p, ra, rb);
            }
        sampler_close(&sa);
        sampler_close(&sb);
    }
    if (!(f = atomic_open(&a, demo_path(d, "report.json")))) rc = fail("demo", "cannot write %s: %s", d->path, strerror(errno));
    else {
        char acc[32], vacc[32];
        json_num(acc, sizeof acc, d->rm_acc >= 0 ? d->rm_acc : NAN);
        json_num(vacc, sizeof vacc, d->rm_val_acc);
        fprintf(f, "{\"seconds\": %.2f, \"gold\": {\"base\": %.4f, \"sft\": %.4f, \"ppo\": %.4f}, \"win_rate_ppo_vs_sft\": %.4f, "
                   "\"win_rate_ci95\": [%.4f, %.4f], \"rm_gold_accuracy\": %s, \"rm_val_accuracy\": %s, \"kl_to_sft\": %.4f, "
                   "\"peak_rss_bytes\": %ld, \"eval_prompts\": %d, \"seed\": %d}\n",
                secs, gold_base, gold_sft, gold_ppo, mean, lo, hi, acc, vacc, (double)d->final_kl, rss, n, d->seed);
        if ((rc = demo_commit(&a)) == 0) printf("\nwrote %s\n", d->path);
    }
    free(eval), free(g_sft), free(g_ppo);
    fflush(d->metrics);
    po.verbose = 1;
    if (rc == 0 && plot_run(d->out, &po) < 0) rc = 1;
    return rc;
}

/* ---- --algos: each algorithm from the same SFT model and reward model, one evaluation for all ------------ */
/* DPO from the SFT model on the labelers' rankings, against SFT as the frozen reference */
static int demo_dpo(demo *d, const demo_algo *a) {
    rlhf_dataset *prefs = NULL;
    rlhf_error err;
    rlhf_train_options to = rlhf_train_options_dpo();
    rlhf_dpo_config dc = rlhf_dpo_config_default();
    rlhf_train_report rep;
    run_out ro = {NULL, 0, 0, "dpo", 0};
    rlhf_result r;
    say("4/4 %s: %d epochs over the labelers' rankings (beta %g, lr %g)", a->label, a->epochs, (double)a->kl_coef, (double)a->lr);
    if ((r = rlhf_dataset_load(&prefs, demo_path(d, "rankings.jsonl"), RLHF_DATA_PREFERENCE, NULL, &err)) != RLHF_OK ||
        (r = rlhf_model_load_ex(&d->policy, demo_path(d, "sft.safetensors"), &err)) != RLHF_OK) {
        rlhf_dataset_free(prefs);
        return demo_fail(r, err.message);
    }
    rlhf_model_set_log(d->policy, log_cb, NULL);
    demo_train_options(&to);
    to.opt.lr = a->lr;
    to.epochs = a->epochs;
    to.log_every = d->quick || g_tty ? 0 : 50;
    to.seed = (uint64_t)d->seed + 4; /* the reward model's seed: the same rankings held out */
    ro.metrics = d->metrics, ro.t0 = now_s(), to.metrics_user = &ro;
    dc.beta = a->kl_coef;
    dc.precompute_ref = 1; /* SFT's log-probs once: it pays from the second epoch on */
    demo_budget(d, a->label, d->policy, to.batch_size * 9, DEMO_CTX, BUDGET_TRAINED, NULL, 0); /* K up to 9 replies a prompt */
    r = rlhf_dpo_train(d->policy, d->sft, d->tok, prefs, NULL, &dc, &to, &rep, &err);
    rlhf_dataset_free(prefs);
    status_done();
    if (r != RLHF_OK) return demo_fail(r, err.message);
    say("  DPO: %ld steps, held-out pairs ranked as the labelers ranked them %.3f", rep.steps, (double)rep.val_accuracy);
    if (rlhf_model_save_ex(d->policy, demo_path(d, "dpo.safetensors"), RLHF_SAVE_WEIGHTS_ONLY, &err) != RLHF_OK)
        return fail("demo", "%s", err.message);
    return 0;
}

/* A reply to a held-out prompt and its ids: the prompt's np through the chat template, then the reply's nr
   (its <|end|> included when it has one) */
typedef struct demo_reply {
    int ids[DEMO_CTX];
    int np, nr;
    char text[160];
} demo_reply;
static int demo_prompt_ids(const demo *d, const world_task *t, demo_reply *r) {
    char p[128];
    rlhf_message msg = task_message(t, p, sizeof p);
    size_t n = 0;
    if (rlhf_tokenizer_chat(d->tok, &msg, 1, 1, r->ids, NULL, DEMO_CTX, &n) != RLHF_OK || (int)n + 2 > DEMO_CTX) return 0;
    r->np = (int)n;
    return 1;
}
/* reply()'s longest reply after np prompt ids: reply_to keeps one position free for an <|end|> */
static int demo_max_new(int np) { return DEMO_CTX - 1 - np < DEMO_NEW ? DEMO_CTX - 1 - np : DEMO_NEW; }
/* m's reply by reply(), and its ids: reply_to leaves them in sc->ids, the reply up to its first <|end|>,
   or demo_max_new tokens when it was cut */
static int demo_sample(demo *d, rlhf_model *m, sampler_ctx *sc, const world_task *t, demo_reply *r) {
    int stop = rlhf_tokenizer_reply_end(d->tok), max, i;
    if (!reply(m, d->tok, sc, t, r->text, sizeof r->text) || !demo_prompt_ids(d, t, r)) return 0;
    max = demo_max_new(r->np);
    for (i = 0; i < max && sc->ids[r->np + i] != stop; i++) {}
    r->nr = i < max ? i + 1 : max;
    memcpy(r->ids + r->np, sc->ids + r->np, (size_t)r->nr * sizeof(int));
    return 1;
}
/* best-of-N as a policy: the reward model's favourite of n SFT replies (temperature 0.7, as every policy is evaluated) */
static int demo_sample_bon(demo *d, rlhf_rng *rng, const world_task *t, int n, demo_reply *r) {
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    sc.temperature = 0.7f;
    if (!demo_prompt_ids(d, t, r) || rlhf_best_of_n(d->sft, d->rm, NULL, NULL, d->tok, r->ids, r->np, n, demo_max_new(r->np), &sc, rng,
                                                    r->ids + r->np, &r->nr, NULL, NULL) != RLHF_OK)
        return 0;
    demo_text(d, r->ids + r->np, r->nr, r->text, sizeof r->text);
    return 1;
}
/* the reward model's normalised score of a reply, at an <|end|> appended when it was cut (as PPO and best-of-N score it) */
static double demo_rm_score(demo *d, const demo_reply *r) {
    int seq[DEMO_CTX], len = r->np + r->nr, stop = rlhf_tokenizer_reply_end(d->tok);
    float s;
    memcpy(seq, r->ids, (size_t)len * sizeof(int));
    if (r->nr == 0 || seq[len - 1] != stop) {
        if (len < DEMO_CTX) len++;
        seq[len - 1] = stop;
    }
    return rlhf_reward_score_ids(d->rm, seq, NULL, &len, 1, len, &s) == RLHF_OK ? s : NAN;
}
/* KL to SFT of one reply: sum over its tokens (its <|end|> too) of log pi(y_t) - log pi_sft(y_t), both at the
   sampling temperature 0.7, as the PPO trainer measures it on its rollouts */
static double demo_kl(demo *d, rlhf_model *m, const demo_reply *r) {
    int tg[DEMO_CTX], T = r->np + r->nr - 1, t;
    float lp[DEMO_CTX], lq[DEMO_CTX];
    double kl = 0.0;
    for (t = 0; t < T; t++) tg[t] = t >= r->np - 1 ? r->ids[t + 1] : -1; /* predict the reply's tokens only */
    if (rlhf_model_logprobs(m, r->ids, tg, NULL, 1, T, 0.7f, lp, NULL, 0) != RLHF_OK ||
        rlhf_model_logprobs(d->sft, r->ids, tg, NULL, 1, T, 0.7f, lq, NULL, 0) != RLHF_OK)
        return NAN;
    for (t = r->np - 1; t < T; t++) kl += (double)lp[t] - (double)lq[t];
    return kl;
}

/* one row of the table */
typedef struct demo_row {
    const demo_algo *a; /* NULL: SFT */
    double gold, gold_lo, gold_hi, win, win_lo, win_hi, rm, kl, secs;
    long peak, rss0;    /* peak resident memory during the algorithm; resident at its start (-1: not known) */
} demo_row;
/* m's replies to the held-out tasks (best-of-bon SFT replies when bon > 0), sampled as demo_report samples them
   (temperature 0.7, seed + 9): gold scores into g (n); into row the mean gold score with its interval, and the
   means of the reward model's score and of the KL to SFT (for best-of-N its bound, log N - (N - 1)/N) */
static int demo_eval(demo *d, rlhf_model *m, int bon, const world_task *tasks, int n, double *g, demo_row *row) {
    sampler_ctx sc;
    rlhf_rng rng;
    demo_reply r;
    double rm = 0.0, kl = 0.0;
    int i, ok = 0;
    if (!sampler_open_t(&sc, m, 0.7f, (uint64_t)d->seed + 9)) return fail("demo", "out of memory");
    rlhf_rng_seed(&rng, (uint64_t)d->seed + 9);
    for (i = 0; i < n && !g_stop; i++) {
        int got = bon ? demo_sample_bon(d, &rng, &tasks[i], bon, &r) : demo_sample(d, m, &sc, &tasks[i], &r);
        g[i] = got ? world_gold(&tasks[i], r.text) : 0.0; /* no reply scores 0, as in gold_eval */
        if (got) {
            rm += demo_rm_score(d, &r);
            kl += bon || m == d->sft ? 0.0 : demo_kl(d, m, &r);
            ok++;
        }
        if (i % 20 == 0) status_set("[demo] evaluating %s: %d/%d replies", row->a ? row->a->label : "SFT", i, n);
    }
    sampler_close(&sc);
    status_done();
    if (g_stop) return demo_fail(RLHF_ERR_INTERRUPTED, "");
    row->gold = mean_ci95(g, n, &row->gold_lo, &row->gold_hi);
    row->rm = ok ? rm / ok : NAN;
    row->kl = bon ? log(bon) - (bon - 1.0) / bon : ok ? kl / ok : NAN;
    return 0;
}

/* Peak resident memory per algorithm: Linux resets the peak (VmHWM) when 5 is written to /proc/self/clear_refs;
   elsewhere the column is the run's peak so far (getrusage). */
static int demo_peak_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    int ok = f && fputs("5", f) >= 0;
    return f && fclose(f) == 0 && ok;
}
/* a line "key: N kB" of /proc/self/status in bytes (VmHWM: the peak resident memory, VmRSS: now), or -1 */
static long demo_status_bytes(const char *key) {
    char line[128];
    size_t n = strlen(key);
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb >= 0 ? kb * 1024L : -1;
}
/* One algorithm: trained from SFT (best-of-N: nothing to train), then evaluated; its time is the training's
   (best-of-N's: its selection on the held-out prompts, where all its cost is), its memory the peak over both. */
static int demo_algo_run(demo *d, const demo_algo *a, const world_task *eval, int n, const double *g_sft, double *g, double *w, demo_row *row) {
    double t0 = now_s();
    int rc;
    row->a = a;
    d->peak_reset = demo_peak_reset();
    row->rss0 = d->peak_reset ? demo_status_bytes("VmRSS") : -1;
    rc = a->kind == DEMO_RL ? demo_rl(d, a) : a->kind == DEMO_DPO ? demo_dpo(d, a) : 0;
    row->secs = now_s() - t0;
    if (rc == 0) {
        t0 = now_s();
        rc = demo_eval(d, a->kind == DEMO_BON ? d->sft : d->policy, a->kind == DEMO_BON ? a->n : 0, eval, n, g, row);
        if (a->kind == DEMO_BON) row->secs = now_s() - t0;
    }
    rlhf_model_free(d->policy);
    d->policy = NULL;
    if (rc != 0) return rc;
    row->win = win_rate(g, g_sft, n, w, &row->win_lo, &row->win_hi);
    row->peak = d->peak_reset ? demo_status_bytes("VmHWM") : -1;
    if (row->peak < 0) row->peak = peak_rss_bytes();
    if (row->peak > d->peak) d->peak = row->peak;
    say("  %s: gold %.3f, win rate over SFT %.3f [%.3f, %.3f], reward model %.3f, KL to SFT %.3f, %.1f s", a->label, row->gold, row->win,
        row->win_lo, row->win_hi, row->rm, row->kl, row->secs);
    return 0;
}

/* the table, as printed and as report.json's "algorithms" */
static void demo_table(const demo *d, const demo_row *rows, int nr) {
    int k;
    printf("%-12s %-22s %-25s %9s %15s %8s %15s\n", "algorithm", "gold [95% interval]", "win rate vs SFT [95%]", "RM score", "KL to SFT",
           "time", "peak RSS");
    for (k = 0; k < nr; k++) {
        const demo_row *r = &rows[k];
        char win[40] = "-", kl[24], secs[16] = "-", mem[32] = "-";
        if (r->a) {
            snprintf(win, sizeof win, "%.3f [%.3f, %.3f]", r->win, r->win_lo, r->win_hi);
            snprintf(secs, sizeof secs, "%.1f s", r->secs);
            if (r->rss0 >= 0) snprintf(mem, sizeof mem, "%.0f MB (+%.0f)", r->peak / 1048576.0, (r->peak - r->rss0) / 1048576.0);
            else snprintf(mem, sizeof mem, "%.0f MB", r->peak / 1048576.0);
        }
        snprintf(kl, sizeof kl, r->a && r->a->kind == DEMO_BON ? "%.3f (bound)" : "%.3f", r->kl);
        printf("%-12s %.3f [%.3f, %.3f]   %-25s %9.3f %15s %8s %15s\n", r->a ? r->a->label : "SFT", r->gold, r->gold_lo, r->gold_hi, win, r->rm,
               kl, secs, mem);
    }
    printf("gold: the gold judge on %d held-out prompts, one reply each at temperature 0.7; win rate: prompts where the\n"
           "reply beats SFT's under the gold judge (ties half), 95%% interval +-1.96 standard errors; RM score: the reward\n"
           "model's normalised score of those replies (the proxy the RL runs maximise); KL to SFT: mean per reply of the sum\n"
           "over its tokens of log pi - log pi_sft, both at temperature 0.7, measured on those replies (best-of-N: the bound\n"
           "log N - (N-1)/N, not measured); time: training (best-of-N: choosing among N samples for each held-out prompt,\n"
           "where all its cost is); peak RSS: %s\n",
           d->eval_prompts,
           d->peak_reset ? "the process's peak resident memory during the algorithm's training and evaluation,\n"
                           "the models all share (base, SFT, reward model) and the data included; in brackets, its\n"
                           "rise over the resident memory at the algorithm's start"
                         : "the run's peak resident memory so far (this system cannot reset it per algorithm)");
}
static void demo_table_json(FILE *f, const demo_row *rows, int nr) {
    int k;
    for (k = 1; k < nr; k++) {
        const demo_row *r = &rows[k];
        char rm[32];
        fprintf(f, "%s{\"name\": \"%s\", \"gold\": %.4f, \"gold_ci95\": [%.4f, %.4f], \"win_rate_vs_sft\": %.4f, \"win_rate_ci95\": [%.4f, %.4f], "
                   "\"rm_score\": %s, \"kl_to_sft\": %.4f, \"kl_is_bound\": %s, \"seconds\": %.2f, \"peak_rss_bytes\": %ld, \"rss_at_start_bytes\": %ld}",
                k > 1 ? ",\n    " : "\n    ", r->a->name, r->gold, r->gold_lo, r->gold_hi, r->win, r->win_lo, r->win_hi,
                json_num(rm, sizeof rm, r->rm), r->kl, r->a->kind == DEMO_BON ? "true" : "false", r->secs, r->peak, r->rss0);
    }
}
/* the comparison's report: the table, report.json, compare.svg and the charts of metrics.jsonl */
static int demo_compare_report(demo *d, const demo_row *rows, int nr, double gold_base) {
    plot_bar bars[ALGO_N + 1];
    plot_options po = plot_options_default();
    double secs = now_s() - d->t_start;
    char acc[32], vacc[32], rm[32];
    atomic_file a;
    FILE *f;
    int k, rc = 0;
    printf("\n== comparison: every algorithm from the same SFT model and reward model ==\n");
    printf("gold score of the base model %.3f; reward model accuracy against gold rankings %.3f (against the labelers' held-out\n"
           "rankings: %.3f)\n\n", gold_base, d->rm_acc, (double)d->rm_val_acc);
    demo_table(d, rows, nr);
    printf("time %.1f s, peak memory %.1f MB\n", secs, d->peak / 1048576.0);
    if (!(f = atomic_open(&a, demo_path(d, "report.json")))) return fail("demo", "cannot write %s: %s", d->path, strerror(errno));
    fprintf(f, "{\"seconds\": %.2f, \"gold\": {\"base\": %.4f, \"sft\": %.4f}, \"sft_rm_score\": %s, \"algorithms\": [", secs, gold_base, rows[0].gold,
            json_num(rm, sizeof rm, rows[0].rm));
    demo_table_json(f, rows, nr);
    fprintf(f, "],\n  \"rm_gold_accuracy\": %s, \"rm_val_accuracy\": %s, \"peak_rss_bytes\": %ld, \"peak_per_algorithm\": %s, \"eval_prompts\": %d, \"seed\": %d}\n",
            json_num(acc, sizeof acc, d->rm_acc >= 0 ? d->rm_acc : NAN), json_num(vacc, sizeof vacc, d->rm_val_acc), d->peak,
            d->peak_reset ? "true" : "false", d->eval_prompts, d->seed);
    if ((rc = demo_commit(&a)) == 0) printf("\nwrote %s\n", d->path);
    for (k = 0; k < nr; k++) { /* SFT grey; a run rewarded by the gold judge orange: it had what no other run had */
        bars[k].label = rows[k].a ? rows[k].a->label : "SFT";
        bars[k].color = !rows[k].a ? "#999999" : rows[k].a->gold ? "#e6550d" : "#1f77b4";
        bars[k].v = rows[k].gold, bars[k].lo = rows[k].gold_lo, bars[k].hi = rows[k].gold_hi;
        bars[k].v2 = rows[k].a ? rows[k].win : NAN, bars[k].lo2 = rows[k].win_lo, bars[k].hi2 = rows[k].win_hi;
    }
    fflush(d->metrics);
    if (rc == 0 && plot_bars_write(demo_path(d, "compare.svg"), bars, nr, &po) < 0) rc = 1;
    if (rc == 0 && plot_run(d->out, &po) < 0) rc = 1;
    return rc;
}
/* --algos: the held-out prompts (demo_report's), SFT and the base model on them, then each algorithm in turn */
static int demo_compare(demo *d) {
    int n = d->eval_prompts, k, nr = 1, rc;
    world_task *eval = (world_task *)malloc((size_t)n * sizeof *eval);
    double *g = (double *)malloc(3 * (size_t)n * sizeof(double)), gold_base;
    demo_row rows[ALGO_N + 1];
    if (!eval || !g) {
        free(eval), free(g);
        return fail("demo", "out of memory");
    }
    memset(rows, 0, sizeof rows);
    for (k = 0; k < n; k++) eval[k] = world_sample_task(&d->wr);
    say("comparison: each algorithm from the same SFT model and reward model, judged on %d held-out prompts", n);
    gold_base = gold_eval(d->base, d->tok, eval, n, (uint64_t)d->seed + 9, NULL, "the base model");
    rc = demo_eval(d, d->sft, 0, eval, n, g, &rows[0]); /* g[0..n): SFT's gold scores, the baseline of every win rate */
    d->peak = peak_rss_bytes();
    if (rc == 0) say("  base model: gold %.3f; SFT: gold %.3f, reward model %.3f", gold_base, rows[0].gold, rows[0].rm);
    for (k = 0; k < ALGO_N && rc == 0; k++)
        if (d->algos & 1 << k) rc = demo_algo_run(d, &DEMO_ALGOS[k], eval, n, g, g + n, g + 2 * (size_t)n, &rows[nr++]);
    if (rc == 0) rc = demo_compare_report(d, rows, nr, gold_base);
    free(eval), free(g);
    return rc;
}
/* --algos LIST into d->algos, a bit per DEMO_ALGOS entry; 2 (the usage error printed) for a name it does not know */
static int demo_parse_algos(demo *d, const char *list) {
    const char *s = list;
    d->algos = 0;
    while (1) {
        size_t len = strcspn(s, ",");
        int k;
        for (k = 0; k < ALGO_N && !(strlen(DEMO_ALGOS[k].name) == len && strncmp(s, DEMO_ALGOS[k].name, len) == 0); k++) {}
        if (len == 3 && strncmp(s, "all", 3) == 0) d->algos = (1 << ALGO_N) - 1;
        else if (k == ALGO_N)
            return usage_error("demo", "--algos: unknown algorithm \"%.*s\" in \"%s\" (a comma-separated list of ppo, dpo, grpo, grpo-gold, rloo, bon; or all)",
                               (int)len, s, list);
        else if (d->algos & 1 << k) return usage_error("demo", "--algos: %s is listed twice in \"%s\"", DEMO_ALGOS[k].name, list);
        else d->algos |= 1 << k;
        if (!s[len]) return 0;
        s += len + 1;
    }
}

/* --tiny: a run whose peak resident memory stays under 64 MB (measured: see the README) and that finishes in
   minutes under qemu-arm: a model of L 2, C 48 (about a tenth of the default's work a token), smaller
   batches, shorter stages; the later stages see models without training memory (demo_reload) */
static void demo_tiny(demo *d, const opt *o, int n) {
    d->n_layer = 2, d->n_head = 4, d->n_embd = 48;
    d->sft_demos = 1000, d->pre_batch = 8, d->sft_batch = 16, d->rm_batch = 2, d->ppo_batch = 16, d->ppo_mini = 4;
    d->watch_n = 10, d->rm_gold_n = 40, d->norm_n = 50;
    if (!given(o, n, "pretrain-steps")) d->pretrain_steps = 250;
    if (!given(o, n, "sft-epochs")) d->sft_epochs = 2;
    if (!given(o, n, "rm-prompts")) d->rm_prompts = 120;
    if (!given(o, n, "ppo-iters")) d->ppo_iters = 20;
    if (!given(o, n, "eval-prompts")) d->eval_prompts = 100;
}
static int cmd_demo(int argc, char **argv) {
    demo d;
    const char *pos[1], *algos = NULL;
    int np, rc, i;
    memset(&d, 0, sizeof d);
    d.out = "runs/demo", d.seed = 1, d.pretrain_steps = 800, d.sft_epochs = 4, d.rm_prompts = 800, d.ppo_iters = 80, d.eval_prompts = 300;
    d.kl_coef = 0.1f, d.ppo_lr = 3e-5f, d.mistake_rate = 0.3f;
    d.n_layer = 3, d.n_head = 4, d.n_embd = 96, d.sft_demos = 2000, d.pre_batch = 16, d.sft_batch = 32, d.rm_batch = 8;
    d.ppo_batch = 32, d.ppo_mini = 8, d.watch_n = DEMO_WATCH, d.rm_gold_n = 150, d.norm_n = 200;
    {
        opt o[] = {
            OPT_S("out", "run directory (rebuilt from the seed on every run): checkpoints, data, metrics.jsonl, report.json, charts", &d.out),
            OPT_I("seed", "seed of the world and of every stage", &d.seed, 0, BIG),
            OPT_B("quick", "a short smoke run (tests use it); the stage options below override it", &d.quick),
            OPT_B("tiny", "a run for a small board: peak memory under 64 MB, minutes under emulation (a smaller model, "
                          "batches and stages: see the README); the stage options below override it", &d.tiny),
            OPT_I("pretrain-steps", "pretraining steps", &d.pretrain_steps, 1, BIG),
            OPT_I("sft-epochs", "SFT epochs over the demonstrations", &d.sft_epochs, 1, 1000),
            OPT_I("rm-prompts", "prompts whose sampled replies labelers rank", &d.rm_prompts, 10, 1000000),
            OPT_I("ppo-iters", "PPO iterations (under --algos GRPO's and RLOO's too)", &d.ppo_iters, 1, 1000000),
            OPT_I("eval-prompts", "held-out prompts for the final evaluation", &d.eval_prompts, 10, 1000000),
            OPT_F("kl-coef", "PPO's KL coefficient beta (0 shows reward over-optimisation)", &d.kl_coef, 0, 1000),
            OPT_FA("ppo-lr", "PPO's learning rate", &d.ppo_lr, 0, 1),
            OPT_F("mistake-rate", "how often simulated labelers make a mistake in demonstrations", &d.mistake_rate, 0, 1),
            OPT_S("algos", "compare algorithms from the same SFT model and reward model, one table: a comma-separated list of "
                           "ppo, dpo, grpo, grpo-gold (GRPO rewarded by the gold judge itself), rloo, bon (best-of-8), or all",
                  &algos),
        };
        np = parse_opts("demo", argc, argv, 2, o, N_OPTS(o), pos, 0);
        if (np < 0) return help_or_usage(np, "rlhf demo [options]",
                       "The whole InstructGPT pipeline on a built-in world, no files needed: tokenizer and pretraining on the world's\n"
                       "text, SFT on demonstrations by simulated labelers (who make mistakes), a reward model on their rankings of\n"
                       "SFT samples (a gold judge plus noise), PPO against the reward model, and an evaluation by the gold judge\n"
                       "(never PPO's reward). Writes checkpoints, metrics.jsonl, report.json and charts into the run directory.",
                       o, N_OPTS(o));
        if (algos && demo_parse_algos(&d, algos)) return 2;
        if (d.quick && d.tiny) return usage_error("demo", "--quick and --tiny are two sizes: give one of them");
        if (d.tiny) demo_tiny(&d, o, N_OPTS(o));
        if (d.quick) { /* small stages, unless an option sets one */
            if (!given(o, N_OPTS(o), "pretrain-steps")) d.pretrain_steps = 30;
            if (!given(o, N_OPTS(o), "sft-epochs")) d.sft_epochs = 1;
            if (!given(o, N_OPTS(o), "rm-prompts")) d.rm_prompts = 40;
            if (!given(o, N_OPTS(o), "ppo-iters")) d.ppo_iters = 2;
            if (!given(o, N_OPTS(o), "eval-prompts")) d.eval_prompts = 20;
            d.sft_demos = 200, d.watch_n = 10, d.rm_gold_n = 20, d.norm_n = 16;
        }
    }
    if (exists(d.out) && !is_dir(d.out)) return fail("demo", "--out %s exists and is not a directory", d.out);
    if (holds_any(d.out, TRAIN_CKPTS) || holds_any(d.out, PPO_CKPTS) || (exists(demo_path(&d, "metrics.jsonl")) && !exists(demo_path(&d, "pretrain.txt"))))
        return usage_error("demo", "%s holds another run; the demo rebuilds only its own directories (give it another --out)", d.out);
    if (!mkdir_p(d.out)) return fail("demo", "cannot create the run directory %s: %s", d.out, strerror(errno));
    if (lock_run_dir("demo", d.out)) return 1; /* one run at a time in it, as the training commands */
    if ((rc = probe_writable(d.out)) != 0) return fail("demo", "cannot write in %s: %s", d.out, strerror(rc));
    remove_stale_tmp(d.out);
    if (!(d.metrics = fopen(demo_path(&d, "metrics.jsonl"), "w"))) return fail("demo", "cannot write %s: %s", d.path, strerror(errno));
    catch_signals();
    g_t0 = d.t_start = now_s();
    d.wr.s = (unsigned long long)d.seed * 0x9E3779B97F4A7C15ull + 1;
    rc = demo_pretrain(&d);
    if (rc == 0) rc = demo_sft(&d);
    if (rc == 0) rc = demo_reward(&d);
    for (i = 0; i < DEMO_WATCH; i++) d.watch[i] = world_sample_task(&d.wr); /* drawn here, so every algorithm is watched on them */
    if (rc == 0 && d.algos) rc = demo_compare(&d);
    else if (rc == 0 && (rc = demo_rl(&d, &DEMO_ALGOS[ALGO_PPO])) == 0) rc = demo_report(&d);
    status_done();
    fclose(d.metrics);
    rlhf_model_free(d.base);
    rlhf_model_free(d.sft);
    rlhf_model_free(d.rm);
    rlhf_model_free(d.policy);
    rlhf_dataset_free(d.prompts);
    rlhf_tokenizer_free(d.tok);
    return rc;
}
