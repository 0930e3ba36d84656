/* demo.c - `rlhf demo`: the whole InstructGPT pipeline on the built-in world
   of world.h (tasks, simulated labelers who make mistakes, a gold judge), no
   files needed. One function per stage, run in this order by cmd_demo:

     1.  demo_pretrain  the world's text, a byte-level BPE tokenizer, pretraining
     2.  demo_sft       SFT on the labelers' demonstrations
     3a. demo_rankings  labelers rank 4 to 9 SFT samples per prompt (gold judge + noise)
     3b. demo_rm_gold   the reward model's accuracy against the gold judge's rankings
     3c. demo_reward    the reward model on the rankings (eq. 1), then normalised
                        on SFT samples of PPO's prompts (it runs 3a first, 3b after)
     4.  demo_ppo       PPO against the reward model, the gold judge watching
         demo_report    gold scores on held-out prompts, PPO's win rate over SFT,
                        samples side by side, report.json and the charts

   A unity build: this file is not compiled on its own. tools/rlhf.c includes
   it after its other commands, so the demo shares that file's static helpers
   (status line, fail, option table, load/sample helpers, run directories,
   plot) and stays one compile (`make` builds build/rlhf from tools/rlhf.c). */
#include "world.h"

/* ---- the demo: the whole pipeline on a built-in world, one function per stage ------------------ */
typedef struct demo {
    int seed, quick, pretrain_steps, sft_epochs, rm_prompts, ppo_iters, eval_prompts;
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
    char path[1100];
} demo;
static const char *demo_path(demo *d, const char *name) { return join(d->path, sizeof d->path, d->out, name); }
/* a library failure inside the demo; an interruption (Ctrl-C) says the demo does not resume */
static int demo_fail(rlhf_result r, const char *msg) {
    if (r == RLHF_ERR_INTERRUPTED || g_stop) {
        fail("demo", "interrupted; the demo does not resume: run it again (it is reproducible from its seed)");
        return stopped_status();
    }
    return fail("demo", "%s", lib_msg(msg));
}
/* One reply to a task's prompt (the world is ASCII: a stray byte token becomes '?', so the text stays ASCII). */
static int reply(rlhf_model *m, const rlhf_tokenizer *t, sampler_ctx *sc, const world_task *task, char *out, size_t cap) {
    char prompt[128];
    rlhf_message msg;
    size_t i;
    int s;
    world_prompt(task, prompt, sizeof prompt);
    msg.role = RLHF_ROLE_USER;
    msg.content.str = prompt;
    msg.content.len = strlen(prompt);
    s = reply_to(m, t, sc, &msg, 1, 16, out, cap);
    for (i = 0; out[i]; i++)
        if ((unsigned char)out[i] >= 0x80 || (unsigned char)out[i] < 0x20) out[i] = '?';
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

/* 1. the world's text; a byte-level BPE tokenizer; pretraining */
static int demo_pretrain(demo *d) {
    size_t cap = 1 << 20, len, k;
    char *text = (char *)malloc(cap);
    rlhf_dataset *ds = NULL;
    rlhf_error err;
    rlhf_train_options to = rlhf_train_options_sft();
    rlhf_train_report rep;
    rlhf_config cfg;
    run_out ro = {NULL, 0, 0, "pretrain"};
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
    cfg.n_ctx = 48;
    cfg.n_layer = 3;
    cfg.n_head = 4;
    cfg.n_embd = 96;
    if ((r = rlhf_model_create(&d->base, &cfg, (uint64_t)d->seed)) != RLHF_OK) {
        rlhf_dataset_free(ds);
        return demo_fail(r, "out of memory for the model");
    }
    rlhf_model_set_log(d->base, log_cb, NULL);
    say("  tokenizer: %d tokens; model: V %d, n_ctx %d, L %d, NH %d, C %d, %zu parameters", cfg.vocab_size, cfg.vocab_size, cfg.n_ctx,
        cfg.n_layer, cfg.n_head, cfg.n_embd, rlhf_model_num_params(d->base));
    demo_train_options(&to);
    to.opt.lr = 2e-3f;
    to.batch_size = 16;
    to.seq_len = 48;
    to.max_steps = d->pretrain_steps;
    to.warmup_steps = 20;
    to.log_every = d->quick || g_tty ? 0 : 100;
    to.val_fraction = 0.02f;
    to.seed = (uint64_t)d->seed;
    ro.metrics = d->metrics, ro.t0 = now_s(), to.metrics_user = &ro;
    r = rlhf_sft_train(d->base, d->tok, ds, NULL, &to, &rep, &err);
    rlhf_dataset_free(ds);
    status_done();
    if (r != RLHF_OK) return demo_fail(r, err.message);
    say("  pretraining: %ld steps, validation loss %.3f", rep.steps, (double)rep.val_loss);
    if (rlhf_model_save_ex(d->base, demo_path(d, "base.safetensors"), 0, &err) != RLHF_OK) return fail("demo", "%s", err.message);
    return 0;
}

/* 2. SFT on labelers' demonstrations */
static int demo_sft(demo *d) {
    rlhf_dataset *ds = NULL;
    rlhf_error err;
    rlhf_train_options to = rlhf_train_options_sft();
    rlhf_train_report rep;
    run_out ro = {NULL, 0, 0, "sft"};
    atomic_file a;
    FILE *f;
    rlhf_result r;
    int i;
    say("2/4 SFT: demonstrations written by simulated labelers (%.0f%% with mistakes)", 100.0 * d->mistake_rate);
    if (!(f = atomic_open(&a, demo_path(d, "sft.jsonl")))) return fail("demo", "cannot write %s: %s", d->path, strerror(errno));
    for (i = 0; i < (d->quick ? 200 : 2000); i++) {
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
    to.batch_size = 32;
    to.epochs = d->sft_epochs;
    to.warmup_steps = 10;
    to.log_every = d->quick || g_tty ? 0 : 50;
    to.pack = 1;
    to.seed = (uint64_t)d->seed + 1;
    ro.metrics = d->metrics, ro.t0 = now_s(), to.metrics_user = &ro;
    r = rlhf_sft_train(d->sft, d->tok, ds, NULL, &to, &rep, &err);
    rlhf_dataset_free(ds);
    status_done();
    if (r != RLHF_OK) return demo_fail(r, err.message);
    say("  SFT: %ld steps, validation loss on completions %.3f", rep.steps, (double)rep.val_loss);
    if (rlhf_model_save_ex(d->sft, demo_path(d, "sft.safetensors"), RLHF_SAVE_WEIGHTS_ONLY, &err) != RLHF_OK)
        return fail("demo", "%s", err.message);
    return 0;
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
    int i, n = d->quick ? 20 : 150;
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
    run_out ro = {NULL, 0, 0, "rm"};
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
    to.batch_size = 8;
    to.log_every = d->quick || g_tty ? 0 : 50;
    to.seed = (uint64_t)d->seed + 4;
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
    r = rlhf_reward_normalize(d->rm, d->sft, d->tok, d->prompts, d->quick ? 16 : 200, &scfg, 16, (uint64_t)d->seed + 6, &mean, &sd);
    status_done();
    if (r != RLHF_OK) return demo_fail(r, rlhf_model_last_error(d->rm));
    say("  normalised: raw rewards of SFT samples had mean %.3f, std %.3f", (double)mean, (double)sd);
    if (rlhf_model_save_ex(d->rm, demo_path(d, "rm.safetensors"), RLHF_SAVE_WEIGHTS_ONLY, &err) != RLHF_OK) return fail("demo", "%s", err.message);
    return 0;
}

/* 4. PPO against the reward model, the gold judge watching on held-out prompts */
static int demo_ppo(demo *d) {
    rlhf_model *ref = NULL, *critic = NULL;
    rlhf_dataset *ptx = NULL;
    rlhf_ppo *ppo = NULL;
    rlhf_ppo_config pc = rlhf_ppo_config_default();
    rlhf_ppo_stats st;
    rlhf_error err;
    rlhf_result r;
    world_task watch[40];
    run_out ro = {NULL, 0, 0, "ppo"};
    int i, rc = 1;
    say("4/4 PPO: %d iterations against the reward model (beta %g)", d->ppo_iters, (double)d->kl_coef);
    if ((r = rlhf_model_load_ex(&d->policy, demo_path(d, "sft.safetensors"), &err)) != RLHF_OK ||
        (r = rlhf_model_load_ex(&ref, d->path, &err)) != RLHF_OK || (r = rlhf_model_load_ex(&critic, demo_path(d, "rm.safetensors"), &err)) != RLHF_OK ||
        (r = rlhf_dataset_load(&ptx, demo_path(d, "pretrain.txt"), RLHF_DATA_TEXT, NULL, &err)) != RLHF_OK) {
        rc = demo_fail(r, err.message);
        goto done;
    }
    pc.batch_size = 32;
    pc.mini_batch = 8;
    pc.ppo_epochs = 2;
    pc.max_new_tokens = 16;
    pc.max_prompt_tokens = 24;
    pc.kl_coef = d->kl_coef;
    pc.policy_opt.lr = d->ppo_lr;
    pc.critic_opt.lr = d->ppo_lr;
    pc.ptx_coef = 0.0f;
    pc.log_samples = 0;
    pc.seed = (uint64_t)d->seed + 7;
    pc.log = log_cb;
    pc.metrics = run_metrics;
    ro.metrics = d->metrics, ro.t0 = now_s(), pc.metrics_user = &ro;
    pc.policy = d->policy, pc.ref = ref, pc.critic = critic, pc.reward_model = d->rm;
    pc.tokenizer = d->tok, pc.prompts = d->prompts, pc.ptx = ptx;
    if ((r = rlhf_ppo_create(&ppo, &pc, &err)) != RLHF_OK) {
        rc = demo_fail(r, err.message);
        goto done;
    }
    for (i = 0; i < 40; i++) watch[i] = world_sample_task(&d->wr);
    for (i = 0; i < d->ppo_iters; i++) {
        char eta[32];
        if ((r = rlhf_ppo_step(ppo, &st, &err)) != RLHF_OK || g_stop) {
            rc = demo_fail(r == RLHF_OK ? RLHF_ERR_INTERRUPTED : r, err.message);
            goto done;
        }
        fmt_duration(eta, sizeof eta, (now_s() - ro.t0) / (i + 1) * (d->ppo_iters - i - 1));
        status_set("[demo] PPO iteration %d/%d  score %.3f  KL %.3f  ETA %s", i + 1, d->ppo_iters, (double)st.score, (double)st.kl, eta);
        if (i % 5 == 4 || i == d->ppo_iters - 1) { /* reward-model score beside the gold judge's, on held-out prompts */
            double g = gold_eval(d->policy, d->tok, watch, d->quick ? 10 : 40, (uint64_t)d->seed + 8, NULL, NULL);
            fprintf(d->metrics, "{\"stage\":\"ppo_gold\",\"step\":%ld,\"gold/heldout\":%.5f,\"objective/scores\":%.5f,\"objective/kl\":%.5f}\n",
                    st.iteration, g, (double)st.score, (double)st.kl);
            fflush(d->metrics);
            say("  PPO %3ld: reward-model score %6.3f, KL %6.3f, gold (held out) %.3f", st.iteration, (double)st.score, (double)st.kl, g);
        }
    }
    status_done();
    d->final_kl = st.kl;
    if (!mkdir_p(demo_path(d, "ppo"))) {
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

/* the report: gold scores on held-out prompts, PPO's win rate over SFT, samples side by side, report.json, charts */
static int demo_report(demo *d) {
    world_task *eval = (world_task *)malloc((size_t)d->eval_prompts * sizeof *eval);
    double *g_sft = (double *)malloc((size_t)d->eval_prompts * sizeof(double)), *g_ppo = (double *)malloc((size_t)d->eval_prompts * sizeof(double));
    double gold_base, gold_sft, gold_ppo, wins = 0.0, sq = 0.0, mean, se, lo, hi, secs;
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
    for (i = 0; i < n; i++) {
        double w = g_ppo[i] > g_sft[i] ? 1.0 : g_ppo[i] == g_sft[i] ? 0.5 : 0.0;
        wins += w;
        sq += w * w;
    }
    mean = wins / n;
    se = sqrt(fmax(sq / n - mean * mean, 0.0) / (n - 1));
    lo = mean - 1.96 * se;
    hi = mean + 1.96 * se;
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
        if (d->rm_acc >= 0) snprintf(acc, sizeof acc, "%.4f", d->rm_acc);
        else snprintf(acc, sizeof acc, "null");
        if (isfinite(d->rm_val_acc)) snprintf(vacc, sizeof vacc, "%.4f", d->rm_val_acc);
        else snprintf(vacc, sizeof vacc, "null");
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

static int cmd_demo(int argc, char **argv) {
    demo d;
    const char *pos[1];
    int np, rc;
    memset(&d, 0, sizeof d);
    d.out = "runs/demo", d.seed = 1, d.pretrain_steps = 800, d.sft_epochs = 4, d.rm_prompts = 800, d.ppo_iters = 80, d.eval_prompts = 300;
    d.kl_coef = 0.1f, d.ppo_lr = 3e-5f, d.mistake_rate = 0.3f;
    {
        opt o[] = {
            OPT_S("out", "run directory (rebuilt from the seed on every run): checkpoints, data, metrics.jsonl, report.json, charts", &d.out),
            OPT_I("seed", "seed of the world and of every stage", &d.seed, 0, BIG),
            OPT_B("quick", "a short smoke run (tests use it); the stage options below override it", &d.quick),
            OPT_I("pretrain-steps", "pretraining steps", &d.pretrain_steps, 1, BIG),
            OPT_I("sft-epochs", "SFT epochs over the demonstrations", &d.sft_epochs, 1, 1000),
            OPT_I("rm-prompts", "prompts whose sampled replies labelers rank", &d.rm_prompts, 10, 1000000),
            OPT_I("ppo-iters", "PPO iterations", &d.ppo_iters, 1, 1000000),
            OPT_I("eval-prompts", "held-out prompts for the final evaluation", &d.eval_prompts, 10, 1000000),
            OPT_F("kl-coef", "PPO's KL coefficient beta (0 shows reward over-optimisation)", &d.kl_coef, 0, 1000),
            OPT_FA("ppo-lr", "PPO's learning rate", &d.ppo_lr, 0, 1),
            OPT_F("mistake-rate", "how often simulated labelers make a mistake in demonstrations", &d.mistake_rate, 0, 1),
        };
        np = parse_opts("demo", argc, argv, 2, o, N_OPTS(o), pos, 0);
        if (np < 0) return help_or_usage(np, "rlhf demo [options]",
                       "The whole InstructGPT pipeline on a built-in world, no files needed: tokenizer and pretraining on the world's\n"
                       "text, SFT on demonstrations by simulated labelers (who make mistakes), a reward model on their rankings of\n"
                       "SFT samples (a gold judge plus noise), PPO against the reward model, and an evaluation by the gold judge\n"
                       "(never PPO's reward). Writes checkpoints, metrics.jsonl, report.json and charts into the run directory.",
                       o, N_OPTS(o));
        if (d.quick) { /* small stages, unless an option sets one */
            if (!given(o, N_OPTS(o), "pretrain-steps")) d.pretrain_steps = 30;
            if (!given(o, N_OPTS(o), "sft-epochs")) d.sft_epochs = 1;
            if (!given(o, N_OPTS(o), "rm-prompts")) d.rm_prompts = 40;
            if (!given(o, N_OPTS(o), "ppo-iters")) d.ppo_iters = 2;
            if (!given(o, N_OPTS(o), "eval-prompts")) d.eval_prompts = 20;
        }
    }
    if (exists(d.out) && !is_dir(d.out)) return fail("demo", "--out %s exists and is not a directory", d.out);
    if (holds_any(d.out, TRAIN_CKPTS) || holds_any(d.out, PPO_CKPTS) || (exists(demo_path(&d, "metrics.jsonl")) && !exists(demo_path(&d, "pretrain.txt"))))
        return usage_error("demo", "%s holds another run; the demo rebuilds only its own directories (give it another --out)", d.out);
    if (!mkdir_p(d.out)) return fail("demo", "cannot create the run directory %s: %s", d.out, strerror(errno));
    if ((rc = probe_writable(d.out)) != 0) return fail("demo", "cannot write in %s: %s", d.out, strerror(rc));
    remove_stale_tmp(d.out);
    if (!(d.metrics = fopen(demo_path(&d, "metrics.jsonl"), "w"))) return fail("demo", "cannot write %s: %s", d.path, strerror(errno));
    catch_signals();
    g_t0 = d.t_start = now_s();
    d.wr.s = (unsigned long long)d.seed * 0x9E3779B97F4A7C15ull + 1;
    rc = demo_pretrain(&d);
    if (rc == 0) rc = demo_sft(&d);
    if (rc == 0) rc = demo_reward(&d);
    if (rc == 0) rc = demo_ppo(&d);
    if (rc == 0) rc = demo_report(&d);
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
