/* rlhf.c - the command-line face of rlhf.h.

     rlhf tokenizer | pretrain | sft | rm | ppo     the stages, each into a run directory
     rlhf generate | chat | score | eval | info     using and inspecting checkpoints
     rlhf plot RUN_DIR                              SVG charts of metrics.jsonl
     rlhf demo                                      the whole pipeline on a built-in world
   `rlhf COMMAND --help` lists every option with its default.

   Exit status: 0 success, 1 runtime failure, 2 usage error.
   Build: make (build/rlhf). POSIX (mkdir, getrusage). */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include "world.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------------ */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int g_tty;
static double g_t0;
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("[%6.1fs] ", now_s() - g_t0);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}
static void log_cb(void *user, rlhf_log_level level, const char *msg) {
    (void)user;
    if (level == RLHF_LOG_INFO && strstr(msg, "sample ")) return;
    say("%s%s", level == RLHF_LOG_ERROR ? "error: " : level == RLHF_LOG_WARN ? "warning: " : "  ", msg);
}
static void metrics_cb(void *user, const char *json) {
    FILE *f = (FILE *)user;
    if (f) fprintf(f, "%s\n", json);
}
static int ensure_dir(const char *path) {
    char buf[1024];
    size_t i, n = strlen(path);
    if (n >= sizeof buf) return 0;
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++)
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return 0;
            buf[i] = c;
        }
    return 1;
}
static long peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L; /* Linux: kilobytes */
}
static int fail_usage(const char *cmd, const char *msg) {
    fprintf(stderr, "rlhf %s: %s (see rlhf %s --help)\n", cmd, msg, cmd);
    return 2;
}

/* ---- replies: the chat template, the KV cache and the sampler ------------------ */
typedef struct sampler_ctx {
    rlhf_kv_cache *cache;
    rlhf_sampler *s;
    rlhf_rng rng;
} sampler_ctx;
static int sampler_open(sampler_ctx *sc, rlhf_model *m, const rlhf_sampler_config *c, uint64_t seed) {
    memset(sc, 0, sizeof *sc);
    rlhf_rng_seed(&sc->rng, seed);
    return rlhf_kv_cache_create(&sc->cache, m, 1, rlhf_model_config(m)->n_ctx) == RLHF_OK &&
           rlhf_sampler_create(&sc->s, rlhf_model_config(m)->vocab_size, c) == RLHF_OK;
}
static int sampler_open_t(sampler_ctx *sc, rlhf_model *m, float temperature, uint64_t seed) {
    rlhf_sampler_config c = rlhf_sampler_config_default();
    c.temperature = temperature;
    return sampler_open(sc, m, &c, seed);
}
static void sampler_close(sampler_ctx *sc) {
    rlhf_kv_cache_free(sc->cache);
    rlhf_sampler_free(sc->s);
}
/* The reply to a conversation (ending in a user turn), decoded into out
   without its <|end|>; 0 when it does not fit or generation fails. */
static int reply_to(rlhf_model *m, const rlhf_tokenizer *t, sampler_ctx *sc, const rlhf_message *msg, int n_msg, int max_new, char *out,
                    size_t cap) {
    int n_ctx = rlhf_model_config(m)->n_ctx, *ids = (int *)malloc((size_t)n_ctx * sizeof(int)), n_out = 0, ok = 0;
    int stop = rlhf_tokenizer_special(t, RLHF_TOKEN_END);
    size_t np = 0, nb = 0;
    out[0] = 0;
    if (ids && rlhf_tokenizer_chat(t, msg, n_msg, 1, ids, NULL, (size_t)n_ctx - 1, &np) == RLHF_OK) {
        if (max_new > n_ctx - (int)np) max_new = n_ctx - (int)np;
        if (rlhf_model_generate(m, sc->cache, sc->s, &sc->rng, ids, (int)np, max_new, stop, ids + np, &n_out) == RLHF_OK) {
            if (n_out > 0 && ids[np + (size_t)n_out - 1] == stop) n_out--;
            if (rlhf_tokenizer_decode(t, ids + np, (size_t)n_out, out, cap - 1, &nb) != RLHF_OK) nb = 0;
            out[nb < cap - 1 ? nb : cap - 1] = 0;
            ok = 1;
        }
    } else if (ids)
        fprintf(stderr, "rlhf: the conversation (%zu tokens) does not fit the context (%d)\n", np, n_ctx);
    free(ids);
    return ok;
}

/* ---- options: --name value, --name=value, --flag ------------------------------- */
typedef struct opt {
    const char *name, *help;
    char kind;       /* 'i' int, 'f' float, 's' string, 'b' flag */
    void *value;
} opt;
static void print_help(const char *usage, const char *about, const opt *o, int n) {
    int i;
    printf("usage: %s\n\n%s\n\noptions:\n", usage, about);
    for (i = 0; i < n; i++) {
        char def[64];
        if (o[i].kind == 'i') snprintf(def, sizeof def, "%d", *(int *)o[i].value);
        else if (o[i].kind == 'f') snprintf(def, sizeof def, "%g", (double)*(float *)o[i].value);
        else if (o[i].kind == 's') snprintf(def, sizeof def, "%s", *(const char **)o[i].value ? *(const char **)o[i].value : "(none)");
        else snprintf(def, sizeof def, "off");
        printf("  --%-18s %s (default: %s)\n", o[i].name, o[i].help, def);
    }
    printf("  --%-18s this help\n", "help");
}
/* parse argv[first..] into o; positional arguments into pos (up to max_pos). -1 help, -2 error, else count of positionals */
static int parse_opts(const char *cmd, int argc, char **argv, int first, opt *o, int n, const char **pos, int max_pos) {
    int i, np = 0;
    for (i = first; i < argc; i++) {
        const char *a = argv[i], *val = NULL, *eq;
        char name[64];
        int k;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return -1;
        if (strncmp(a, "--", 2) != 0) {
            if (np >= max_pos) { fprintf(stderr, "rlhf %s: unexpected argument \"%s\"\n", cmd, a); return -2; }
            pos[np++] = a;
            continue;
        }
        eq = strchr(a, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a - 2) : (int)strlen(a + 2), a + 2);
        for (k = 0; k < n && strcmp(o[k].name, name) != 0; k++) {}
        if (k == n) { fprintf(stderr, "rlhf %s: unknown option --%s (see rlhf %s --help)\n", cmd, name, cmd); return -2; }
        if (o[k].kind == 'b') {
            *(int *)o[k].value = 1;
            continue;
        }
        val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) { fprintf(stderr, "rlhf %s: --%s needs a value\n", cmd, name); return -2; }
        if (o[k].kind == 's') *(const char **)o[k].value = val;
        else {
            char *end;
            double d = strtod(val, &end);
            if (*val == 0 || *end != 0 || (o[k].kind == 'i' && d != (double)(int)d)) {
                fprintf(stderr, "rlhf %s: --%s wants %s, got \"%s\"\n", cmd, name, o[k].kind == 'i' ? "an integer" : "a number", val);
                return -2;
            }
            if (o[k].kind == 'i') *(int *)o[k].value = (int)d;
            else *(float *)o[k].value = (float)d;
        }
    }
    return np;
}

#include "plot.h"

static int cmd_plot(int argc, char **argv) {
    const char *pos[1];
    int np = parse_opts("plot", argc, argv, 2, NULL, 0, pos, 1), w;
    if (np == -1) {
        print_help("rlhf plot RUN_DIR", "SVG charts of a run's metrics.jsonl: loss.svg (losses per stage), reward_model.svg,\n"
                                        "ppo.svg (reward and KL during PPO), gold_vs_proxy.svg (gold judge vs reward model against KL).",
                   NULL, 0);
        return 0;
    }
    if (np != 1) return fail_usage("plot", np < 0 ? "bad arguments" : "needs RUN_DIR");
    w = plot_run(pos[0], 1);
    if (w < 0) return 1;
    if (w == 0) {
        fprintf(stderr, "rlhf plot: %s/metrics.jsonl has nothing to plot\n", pos[0]);
        return 1;
    }
    return 0;
}

/* ---- the training and inspection commands ------------------------------------- */
typedef struct run_out { FILE *metrics; double t0; const char *stage; } run_out;
/* metrics.jsonl, and on a terminal a progress line with rate and ETA */
static void run_metrics(void *user, const char *json) {
    run_out *r = (run_out *)user;
    const char *ps = strstr(json, "\"step\":"), *pt = strstr(json, "\"total_steps\":"), *pl = strstr(json, "\"loss\":");
    if (r->metrics) {
        fprintf(r->metrics, "%s\n", json);
        fflush(r->metrics);
    }
    if (g_tty && ps && pt) {
        double step = atof(ps + 7), total = atof(pt + 14), el = now_s() - r->t0, rate = el > 0 ? step / el : 0;
        fprintf(stderr, "\r[%s] step %.0f/%.0f %s%.4s %.1f steps/s ETA %.0fs   ", r->stage, step, total, pl ? "loss " : "", pl ? pl + 7 : "",
                rate, rate > 0 ? (total - step) / rate : 0.0);
        if (step >= total) fprintf(stderr, "\n");
    }
}
static FILE *open_metrics(const char *dir, int append) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (!(f = fopen(path, append ? "a" : "w"))) fprintf(stderr, "rlhf: cannot write %s: %s\n", path, strerror(errno));
    return f;
}
static rlhf_model *load_or_die(const char *path, rlhf_tokenizer **tok) {
    rlhf_model *m = NULL;
    rlhf_error err;
    if (rlhf_model_load_ex(&m, path, &err) != RLHF_OK) {
        fprintf(stderr, "rlhf: %s\n", err.message);
        return NULL;
    }
    if (tok && rlhf_tokenizer_from_model(tok, m, &err) != RLHF_OK) {
        fprintf(stderr, "rlhf: %s: %s\n", path, err.message);
        rlhf_model_free(m);
        return NULL;
    }
    rlhf_model_set_log(m, log_cb, NULL);
    return m;
}

static int cmd_info(int argc, char **argv) {
    const char *pos[1];
    rlhf_model *m;
    rlhf_tokenizer *t = NULL;
    rlhf_error err;
    rlhf_memory mem;
    const rlhf_config *c;
    int np = parse_opts("info", argc, argv, 2, NULL, 0, pos, 1);
    if (np == -1) { print_help("rlhf info CHECKPOINT", "A checkpoint's config, kind, tokenizer, parameter count and memory budget.", NULL, 0); return 0; }
    if (np != 1) return fail_usage("info", "needs one CHECKPOINT");
    if (!(m = load_or_die(pos[0], NULL))) return 1;
    c = rlhf_model_config(m);
    printf("%s\n  config: vocab %d, n_ctx %d, layers %d, heads %d, channels %d\n", pos[0], c->vocab_size, c->n_ctx, c->n_layer, c->n_head, c->n_embd);
    printf("  kind: %s%s\n  parameters: %zu\n", rlhf_model_meta(m, "rlhf.kind") ? rlhf_model_meta(m, "rlhf.kind") : "(not set)",
           rlhf_model_has_score_head(m) ? " (scalar head)" : "", rlhf_model_num_params(m));
    if (rlhf_tokenizer_from_model(&t, m, &err) == RLHF_OK) {
        printf("  tokenizer: %d tokens (EOS %d, pad %d, <|end|> %d)\n", rlhf_tokenizer_vocab_size(t), rlhf_tokenizer_special(t, RLHF_TOKEN_EOS),
               rlhf_tokenizer_special(t, RLHF_TOKEN_PAD), rlhf_tokenizer_special(t, RLHF_TOKEN_END));
        rlhf_tokenizer_free(t);
    } else
        printf("  tokenizer: none stored\n");
    if (rlhf_model_meta(m, "rlhf.reward.gain"))
        printf("  reward normalisation: gain %s, bias %s\n", rlhf_model_meta(m, "rlhf.reward.gain"), rlhf_model_meta(m, "rlhf.reward.bias"));
    if (rlhf_model_meta(m, "rlhf.train.step")) printf("  training step: %s, AdamW steps %ld\n", rlhf_model_meta(m, "rlhf.train.step"), rlhf_model_adamw_steps(m));
    if (rlhf_model_memory(m, 8, c->n_ctx, 1, &mem) == RLHF_OK)
        printf("  memory to train on 8 x %d tokens: %.1f MB (weights %.1f, grads %.1f, AdamW %.1f, activations %.1f)\n", c->n_ctx, mem.total / 1048576.0,
               mem.params / 1048576.0, mem.grads / 1048576.0, mem.optimizer / 1048576.0, (mem.activations + mem.backward) / 1048576.0);
    rlhf_model_free(m);
    return 0;
}

static int cmd_generate(int argc, char **argv, int interactive) {
    const char *pos[1], *prompt = NULL, *cmd = interactive ? "chat" : "generate";
    int n = 1, top_k = 0, max_new = 64, seed = 1, np, i;
    float temperature = 0.7f, top_p = 1.0f;
    opt o[] = {
        {"prompt", "the user's message (generate)", 's', &prompt},
        {"n", "replies to sample (generate)", 'i', &n},
        {"temperature", "sampling temperature (0: greedy)", 'f', &temperature},
        {"top-k", "keep the k most likely tokens (0: off)", 'i', &top_k},
        {"top-p", "nucleus: keep the smallest set reaching p (1: off)", 'f', &top_p},
        {"max-new", "longest reply in tokens", 'i', &max_new},
        {"seed", "sampling seed", 'i', &seed},
    };
    rlhf_model *m;
    rlhf_tokenizer *t;
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    sampler_ctx ctx;
    char out[4096];
    np = parse_opts(cmd, argc, argv, 2, o, (int)(sizeof o / sizeof o[0]), pos, 1);
    if (np == -1) {
        print_help(interactive ? "rlhf chat CHECKPOINT [options]" : "rlhf generate CHECKPOINT --prompt TEXT [options]",
                   interactive ? "Talk to a policy: each line you type is a user turn; the conversation goes through the chat template.\n"
                                 "An empty line or end of input quits."
                               : "Sample replies to a prompt through the chat template with the KV cache.",
                   o, (int)(sizeof o / sizeof o[0]));
        return 0;
    }
    if (np != 1) return fail_usage(cmd, "needs one CHECKPOINT");
    if (!interactive && !prompt) return fail_usage(cmd, "needs --prompt");
    if (n < 1 || max_new < 1 || top_k < 0 || !(temperature >= 0) || !(top_p > 0 && top_p <= 1))
        return fail_usage(cmd, "need n >= 1, max-new >= 1, top-k >= 0, temperature >= 0, top-p in (0, 1]");
    if (!(m = load_or_die(pos[0], &t))) return 1;
    sc.temperature = temperature;
    sc.top_k = top_k;
    sc.top_p = top_p;
    if (!sampler_open(&ctx, m, &sc, (uint64_t)seed)) {
        fprintf(stderr, "rlhf %s: out of memory\n", cmd);
        sampler_close(&ctx);
        rlhf_tokenizer_free(t);
        rlhf_model_free(m);
        return 1;
    }
    if (!interactive) {
        rlhf_message msg;
        msg.role = RLHF_ROLE_USER;
        msg.content.str = prompt;
        msg.content.len = strlen(prompt);
        for (i = 0; i < n; i++) {
            if (!reply_to(m, t, &ctx, &msg, 1, max_new, out, sizeof out)) { sampler_close(&ctx); rlhf_model_free(m); rlhf_tokenizer_free(t); return 1; }
            printf("%s\n", out);
        }
    } else {
        rlhf_message hist[64];
        char *texts[64];
        char line[1024];
        int nh = 0;
        printf("(empty line to quit)\n");
        while (nh + 2 < 64 && (printf("you> "), fflush(stdout), fgets(line, sizeof line, stdin))) {
            size_t L = strcspn(line, "\r\n");
            line[L] = 0;
            if (L == 0) break;
            texts[nh] = strdup(line);
            hist[nh].role = RLHF_ROLE_USER;
            hist[nh].content.str = texts[nh];
            hist[nh].content.len = L;
            nh++;
            if (!reply_to(m, t, &ctx, hist, nh, max_new, out, sizeof out)) break;
            printf("bot> %s\n", out);
            texts[nh] = strdup(out);
            hist[nh].role = RLHF_ROLE_ASSISTANT;
            hist[nh].content.str = texts[nh];
            hist[nh].content.len = strlen(out);
            nh++;
        }
        for (i = 0; i < nh; i++) free(texts[i]);
    }
    sampler_close(&ctx);
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return 0;
}

/* every completion's reward in a preference file, and the pairwise accuracy; 0 or 1 (exit status) */
static int score_file(rlhf_model *m, const rlhf_tokenizer *t, const char *data) {
    int rc = 0;
    rlhf_dataset *d;
    rlhf_error err;
    size_t i;
    long right = 0, pairs = 0;
    if (rlhf_dataset_load(&d, data, RLHF_DATA_PREFERENCE, NULL, &err) != RLHF_OK) {
        fprintf(stderr, "rlhf score: %s\n", err.message);
        rc = 1;
    } else {
        for (i = 0; i < rlhf_dataset_size(d) && rc == 0; i++) {
            const rlhf_record *r = rlhf_dataset_record(d, i);
            int K = r->kind == RLHF_RECORD_PAIR ? 2 : r->n_completions, k, j;
            const char *p[64], *c[64];
            float s[64];
            if (K > 64) K = 64;
            for (k = 0; k < K; k++) {
                p[k] = r->prompt.str;
                c[k] = r->kind == RLHF_RECORD_PAIR ? (k == 0 ? r->chosen.str : r->rejected.str) : r->completions[k].str;
            }
            if (rlhf_reward_score(m, t, p, c, K, s) != RLHF_OK) {
                fprintf(stderr, "rlhf score: %s:%zu: %s\n", data, r->line, rlhf_model_last_error(m));
                rc = 1;
                break;
            }
            printf("line %zu:", r->line);
            for (k = 0; k < K; k++) printf(" %.4f", (double)s[k]);
            printf("\n");
            for (k = 0; k < K; k++)
                for (j = k + 1; j < K; j++) right += s[k] > s[j], pairs++;
        }
        if (rc == 0) printf("pairwise accuracy (best-first order respected): %.4f over %ld pairs\n", pairs ? (double)right / pairs : 0.0, pairs);
        rlhf_dataset_free(d);
    }
    return rc;
}

static int cmd_score(int argc, char **argv) {
    const char *pos[1], *prompt = NULL, *response = NULL, *data = NULL;
    opt o[] = {
        {"prompt", "the prompt (with --response)", 's', &prompt},
        {"response", "the response to score", 's', &response},
        {"data", "a preference JSONL file: score every completion, report pairwise accuracy", 's', &data},
    };
    int np = parse_opts("score", argc, argv, 2, o, 3, pos, 1), rc = 0;
    rlhf_model *m;
    rlhf_tokenizer *t;
    if (np == -1) {
        print_help("rlhf score REWARD_MODEL (--prompt P --response R | --data FILE)",
                   "The reward (normalised as stored in the checkpoint) of a response, or of every completion of a preference file.", o, 3);
        return 0;
    }
    if (np != 1 || (!data && (!prompt || !response))) return fail_usage("score", "needs REWARD_MODEL and --prompt/--response or --data");
    if (!(m = load_or_die(pos[0], &t))) return 1;
    if (!rlhf_model_has_score_head(m)) {
        fprintf(stderr, "rlhf score: %s has no scalar head: not a reward model\n", pos[0]);
        rlhf_model_free(m);
        rlhf_tokenizer_free(t);
        return 1;
    }
    if (!data) {
        float s;
        if (rlhf_reward_score(m, t, &prompt, &response, 1, &s) != RLHF_OK) { fprintf(stderr, "rlhf score: %s\n", rlhf_model_last_error(m)); rc = 1; }
        else printf("%.6f\n", (double)s);
    } else {
        rc = score_file(m, t, data);
    }
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return rc;
}

static int cmd_tokenizer(int argc, char **argv) {
    const char *pos[1], *data = NULL, *out = "tokenizer.json";
    int vocab = 4096;
    opt o[] = {
        {"data", "UTF-8 text file to learn merges from", 's', &data},
        {"vocab", "vocabulary size: 256 bytes + merges + 6 special tokens", 'i', &vocab},
        {"out", "where to write the tokenizer (JSON)", 's', &out},
    };
    int np = parse_opts("tokenizer", argc, argv, 2, o, 3, pos, 0);
    char *text;
    size_t len = 0, cap = 1 << 20;
    FILE *f;
    rlhf_tokenizer *t;
    rlhf_error err;
    if (np == -1) { print_help("rlhf tokenizer --data FILE [options]", "Train a byte-level BPE tokenizer (GPT-2's pre-tokenizer) on a text file.", o, 3); return 0; }
    if (np < 0) return 2;
    if (!data) return fail_usage("tokenizer", "needs --data");
    if (vocab < 262) return fail_usage("tokenizer", "--vocab must be at least 262 (256 bytes and 6 special tokens)");
    if (!(f = fopen(data, "rb"))) { fprintf(stderr, "rlhf tokenizer: cannot read %s: %s\n", data, strerror(errno)); return 1; }
    text = (char *)malloc(cap);
    while (text) {
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        cap *= 2;
        text = (char *)realloc(text, cap);
    }
    fclose(f);
    if (!text) { fprintf(stderr, "rlhf tokenizer: out of memory\n"); return 1; }
    if (rlhf_tokenizer_train(&t, text, len, vocab, &err) != RLHF_OK) {
        fprintf(stderr, "rlhf tokenizer: %s: %s\n", data, err.message);
        free(text);
        return 1;
    }
    free(text);
    if (rlhf_tokenizer_save(t, out) != RLHF_OK) { fprintf(stderr, "rlhf tokenizer: cannot write %s\n", out); rlhf_tokenizer_free(t); return 1; }
    printf("%s: %d tokens learned from %zu bytes of %s\n", out, rlhf_tokenizer_vocab_size(t), len, data);
    rlhf_tokenizer_free(t);
    return 0;
}

/* pretrain, sft, rm: one command shape */
static int cmd_train(int argc, char **argv, const char *cmd) {
    const char *pos[1], *data = NULL, *val = NULL, *model = NULL, *tokfile = NULL, *out = NULL;
    int is_pre = strcmp(cmd, "pretrain") == 0, is_rm = strcmp(cmd, "rm") == 0, resume = 0, seed = 1, np;
    int layers = 4, heads = 4, embd = 128, ctx = 128, norm_samples = 200;
    rlhf_train_options to = is_rm ? rlhf_train_options_reward() : rlhf_train_options_sft();
    int batch = to.batch_size, micro = to.micro_batch, seq_len = 0, epochs = to.epochs, warmup = to.warmup_steps, eval_every = to.eval_every;
    int steps = 0, pack = 0, log_every = to.log_every;
    float lr = to.opt.lr, wd = to.opt.weight_decay, clip = to.opt.grad_clip, min_lr = to.min_lr_ratio, val_frac = to.val_fraction;
    const char *decay = is_rm ? "linear" : "cosine";
    opt o[] = {
        {"data", is_pre ? "text file (or {\"text\"} JSONL) to pretrain on" : is_rm ? "preference JSONL (pairs, HH-RLHF, rankings)" : "SFT JSONL (prompt/completion or messages)", 's', &data},
        {"val", "held-out JSONL (default: val-fraction of --data)", 's', &val},
        {"model", is_pre ? "start from this checkpoint instead of a new model" : "checkpoint to start from (SFT: base; rm: SFT)", 's', &model},
        {"tokenizer", "tokenizer JSON for a new model (pretrain)", 's', &tokfile},
        {"out", "run directory: checkpoints, metrics.jsonl", 's', &out},
        {"resume", "continue the run in --out from its last.safetensors", 'b', &resume},
        {"layers", "new model: layers", 'i', &layers},
        {"heads", "new model: attention heads", 'i', &heads},
        {"embd", "new model: channels", 'i', &embd},
        {"ctx", "new model: context length", 'i', &ctx},
        {"lr", "peak learning rate", 'f', &lr},
        {"weight-decay", "AdamW weight decay (matrices and embeddings)", 'f', &wd},
        {"grad-clip", "clip the gradient norm (0: off)", 'f', &clip},
        {"batch", is_rm ? "prompts per step" : "sequences per step", 'i', &batch},
        {"micro-batch", "sequences per forward (0: all)", 'i', &micro},
        {"seq-len", "longest sequence (0: the model's context)", 'i', &seq_len},
        {"epochs", "passes over the data", 'i', &epochs},
        {"steps", "stop after this many steps (0: epochs decide)", 'i', &steps},
        {"warmup", "warm-up steps", 'i', &warmup},
        {"decay", "cosine, linear or constant", 's', &decay},
        {"min-lr", "floor of the decay, as a fraction of lr", 'f', &min_lr},
        {"eval-every", "steps between validations (0: at the end)", 'i', &eval_every},
        {"val-fraction", "held out when --val is not given", 'f', &val_frac},
        {"pack", "SFT/pretrain: pack examples into rows", 'b', &pack},
        {"log-every", "steps between progress lines", 'i', &log_every},
        {"normalize-samples", "rm: SFT samples for the reward normalisation (0: skip)", 'i', &norm_samples},
        {"seed", "shuffling, split, init", 'i', &seed},
    };
    const int n_opt = (int)(sizeof o / sizeof o[0]);
    rlhf_model *m = NULL;
    rlhf_tokenizer *t = NULL;
    rlhf_dataset *d = NULL, *v = NULL;
    rlhf_error err;
    rlhf_train_report rep;
    run_out ro;
    char path[1024];
    int rc = 1;
    np = parse_opts(cmd, argc, argv, 2, o, n_opt, pos, 0);
    if (np == -1) {
        print_help(is_pre ? "rlhf pretrain --data FILE --tokenizer TOK.json --out DIR [options]"
                          : is_rm ? "rlhf rm --model SFT.safetensors --data PREFS.jsonl --out DIR [options]"
                                  : "rlhf sft --model BASE.safetensors --data SFT.jsonl --out DIR [options]",
                   is_pre ? "Pretrain a GPT-2 on text (every token a target)." : is_rm ? "Train a reward model (InstructGPT eq. 1) from pairs or K-way rankings, then normalise it on SFT samples."
                                                                              : "Supervised fine-tuning: loss on the completions only.",
                   o, n_opt);
        return 0;
    }
    if (np < 0) return 2;
    if (!data || !out) return fail_usage(cmd, "needs --data and --out");
    if (!is_pre && !model && !resume) return fail_usage(cmd, "needs --model");
    if (is_pre && !model && !tokfile && !resume) return fail_usage(cmd, "needs --tokenizer (or --model)");
    if (!ensure_dir(out)) { fprintf(stderr, "rlhf %s: cannot create %s: %s\n", cmd, out, strerror(errno)); return 1; }
    to.opt.lr = lr; to.opt.weight_decay = wd; to.opt.grad_clip = clip;
    to.batch_size = batch; to.micro_batch = micro; to.seq_len = seq_len; to.epochs = epochs; to.max_steps = steps;
    to.warmup_steps = warmup; to.min_lr_ratio = min_lr; to.eval_every = eval_every; to.val_fraction = val_frac; to.pack = pack;
    to.log_every = g_tty ? 0 : log_every; to.seed = (uint64_t)seed; to.out_dir = out; to.log = log_cb;
    to.decay = strcmp(decay, "linear") == 0 ? RLHF_LR_LINEAR : strcmp(decay, "constant") == 0 ? RLHF_LR_CONSTANT : RLHF_LR_COSINE;
    if (strcmp(decay, "linear") && strcmp(decay, "constant") && strcmp(decay, "cosine")) return fail_usage(cmd, "--decay is cosine, linear or constant");
    if (resume) {
        snprintf(path, sizeof path, "%s/last.safetensors", out);
        if (!(m = load_or_die(path, &t))) return 1;
        to.resume_step = rlhf_model_meta(m, "rlhf.train.step") ? atol(rlhf_model_meta(m, "rlhf.train.step")) : 0;
        say("resuming %s at step %ld", path, to.resume_step);
    } else if (model) {
        if (!(m = load_or_die(model, &t))) return 1;
        if (is_rm && !rlhf_model_has_score_head(m) && rlhf_model_add_score_head(m, -1.0f, (uint64_t)seed) != RLHF_OK) goto done;
    } else {
        rlhf_config cfg;
        if (rlhf_tokenizer_load(&t, tokfile, &err) != RLHF_OK) { fprintf(stderr, "rlhf %s: %s\n", cmd, err.message); return 1; }
        cfg.vocab_size = rlhf_tokenizer_vocab_size(t); cfg.n_ctx = ctx; cfg.n_layer = layers; cfg.n_head = heads; cfg.n_embd = embd;
        if (rlhf_model_create(&m, &cfg, (uint64_t)seed) != RLHF_OK) {
            fprintf(stderr, "rlhf %s: cannot create a model with layers %d, heads %d, embd %d, ctx %d (embd must divide by heads)\n", cmd, layers, heads, embd, ctx);
            goto done;
        }
        rlhf_model_set_log(m, log_cb, NULL);
    }
    if (rlhf_dataset_load(&d, data, is_pre ? RLHF_DATA_TEXT : is_rm ? RLHF_DATA_PREFERENCE : RLHF_DATA_SFT, NULL, &err) != RLHF_OK ||
        (val && rlhf_dataset_load(&v, val, is_pre ? RLHF_DATA_TEXT : is_rm ? RLHF_DATA_PREFERENCE : RLHF_DATA_SFT, NULL, &err) != RLHF_OK)) {
        fprintf(stderr, "rlhf %s: %s\n", cmd, err.message);
        goto done;
    }
    ro.metrics = open_metrics(out, resume);
    ro.t0 = now_s();
    ro.stage = cmd;
    to.metrics = run_metrics;
    to.metrics_user = &ro;
    if ((is_rm ? rlhf_reward_train(m, t, d, v, &to, &rep, &err) : rlhf_sft_train(m, t, d, v, &to, &rep, &err)) != RLHF_OK) {
        fprintf(stderr, "rlhf %s: %s\n", cmd, err.message);
        if (ro.metrics) fclose(ro.metrics);
        goto done;
    }
    if (ro.metrics) fclose(ro.metrics);
    say("%s: %ld steps in %.1f s; validation loss %.4f (best %.4f at step %ld)%s", cmd, rep.steps, rep.seconds, (double)rep.val_loss,
        (double)rep.best_val_loss, rep.best_step, rep.skipped_steps ? "; some steps skipped (non-finite)" : "");
    if (is_rm) say("rm: held-out pairwise accuracy %.4f", (double)rep.val_accuracy);
    if (is_rm && norm_samples > 1) { /* normalise on SFT samples of the training prompts (the SFT model is --model) */
        rlhf_model *sft = model ? load_or_die(model, NULL) : NULL;
        rlhf_sampler_config sc = rlhf_sampler_config_default();
        float mean, sd;
        if (sft && rlhf_reward_normalize(m, sft, t, d, norm_samples, &sc, 64, (uint64_t)seed, &mean, &sd) == RLHF_OK) {
            say("rm: normalised on %d SFT samples (raw mean %.4f, std %.4f)", norm_samples, (double)mean, (double)sd);
            snprintf(path, sizeof path, "%s/last.safetensors", out);
            if (rlhf_model_save(m, path) != RLHF_OK) { fprintf(stderr, "rlhf rm: cannot write %s\n", path); rlhf_model_free(sft); goto done; }
        } else
            fprintf(stderr, "rlhf rm: normalisation skipped: %s\n", sft ? rlhf_model_last_error(m) : "no SFT model (--model) to sample from");
        rlhf_model_free(sft);
    }
    printf("checkpoints in %s: last.safetensors%s; metrics in %s/metrics.jsonl\n", out, rep.best_step >= 0 ? ", best.safetensors" : "", out);
    rc = 0;
done:
    rlhf_dataset_free(d);
    rlhf_dataset_free(v);
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return rc;
}

static int cmd_ppo(int argc, char **argv) {
    const char *pos[1], *policy_p = NULL, *reward_p = NULL, *critic_p = NULL, *prompts_p = NULL, *ptx_p = NULL, *out = NULL;
    rlhf_ppo_config c = rlhf_ppo_config_default();
    int iters = 100, resume = 0, seed = 1, adaptive = 0, k3 = 0, np, i, rc = 1, save_every = 10;
    opt o[] = {
        {"policy", "SFT checkpoint: the policy starts here and it is the frozen reference", 's', &policy_p},
        {"reward", "reward-model checkpoint (normalised)", 's', &reward_p},
        {"critic", "critic checkpoint (default: a copy of --reward)", 's', &critic_p},
        {"prompts", "PROMPTS JSONL", 's', &prompts_p},
        {"ptx", "text for PPO-ptx (with --ptx-coef)", 's', &ptx_p},
        {"out", "run directory: policy, critic, metrics.jsonl", 's', &out},
        {"resume", "continue the run in --out", 'b', &resume},
        {"iters", "PPO iterations", 'i', &iters},
        {"save-every", "iterations between saves", 'i', &save_every},
        {"batch", "episodes per iteration", 'i', &c.batch_size},
        {"mini-batch", "episodes per minibatch", 'i', &c.mini_batch},
        {"epochs", "PPO epochs per batch", 'i', &c.ppo_epochs},
        {"max-new", "longest response", 'i', &c.max_new_tokens},
        {"temperature", "sampling temperature (also divides the logits of the log-probs)", 'f', &c.sampling.temperature},
        {"top-k", "sampling top-k (0: off)", 'i', &c.sampling.top_k},
        {"top-p", "sampling top-p (1: off)", 'f', &c.sampling.top_p},
        {"kl-coef", "beta, the KL penalty's coefficient", 'f', &c.kl_coef},
        {"adaptive-kl", "Ziegler et al.'s controller (--kl-target, --kl-horizon)", 'b', &adaptive},
        {"kl-target", "adaptive KL target", 'f', &c.kl_target},
        {"kl-horizon", "adaptive KL horizon", 'f', &c.kl_horizon},
        {"k3", "the k3 KL estimator instead of k1", 'b', &k3},
        {"lr", "policy learning rate", 'f', &c.policy_opt.lr},
        {"critic-lr", "critic learning rate", 'f', &c.critic_opt.lr},
        {"cliprange", "PPO clip", 'f', &c.cliprange},
        {"cliprange-value", "value clip", 'f', &c.cliprange_value},
        {"vf-coef", "value loss coefficient", 'f', &c.vf_coef},
        {"entropy-coef", "entropy bonus", 'f', &c.entropy_coef},
        {"ptx-coef", "PPO-ptx gamma (InstructGPT 27.8)", 'f', &c.ptx_coef},
        {"ema", "EMA decay of the policy (InstructGPT 0.992; 0: off)", 'f', &c.ema_decay},
        {"missing-eos-penalty", "score of a reply without <|end|>", 'f', &c.missing_eos_penalty},
        {"seed", "sampling and shuffling", 'i', &seed},
    };
    const int n_opt = (int)(sizeof o / sizeof o[0]);
    rlhf_model *policy = NULL, *ref = NULL, *critic = NULL, *rm = NULL;
    rlhf_tokenizer *t = NULL;
    rlhf_dataset *prompts = NULL, *ptx = NULL;
    rlhf_ppo *ppo = NULL;
    rlhf_ppo_stats st;
    rlhf_error err;
    run_out ro;
    np = parse_opts("ppo", argc, argv, 2, o, n_opt, pos, 0);
    if (np == -1) {
        print_help("rlhf ppo --policy SFT --reward RM --prompts FILE --out DIR [options]",
                   "PPO with a KL penalty against the SFT policy (InstructGPT step 3, eq. 2; PPO-ptx with --ptx and --ptx-coef).", o, n_opt);
        return 0;
    }
    if (np < 0) return 2;
    if (!policy_p || !reward_p || !prompts_p || !out) return fail_usage("ppo", "needs --policy, --reward, --prompts and --out");
    if (iters < 1 || save_every < 1) return fail_usage("ppo", "--iters and --save-every must be >= 1");
    if (!ensure_dir(out)) { fprintf(stderr, "rlhf ppo: cannot create %s: %s\n", out, strerror(errno)); return 1; }
    c.adaptive_kl = adaptive;
    c.kl_estimator = k3 ? RLHF_KL_K3 : RLHF_KL_K1;
    c.seed = (uint64_t)seed;
    c.log = log_cb;
    if (!(policy = load_or_die(policy_p, &t)) || !(ref = load_or_die(policy_p, NULL)) || !(rm = load_or_die(reward_p, NULL)) ||
        !(critic = load_or_die(critic_p ? critic_p : reward_p, NULL)))
        goto done;
    if (rlhf_dataset_load(&prompts, prompts_p, RLHF_DATA_PROMPTS, NULL, &err) != RLHF_OK ||
        (ptx_p && rlhf_dataset_load(&ptx, ptx_p, RLHF_DATA_TEXT, NULL, &err) != RLHF_OK)) {
        fprintf(stderr, "rlhf ppo: %s\n", err.message);
        goto done;
    }
    ro.metrics = open_metrics(out, resume);
    ro.t0 = now_s();
    ro.stage = "ppo";
    c.metrics = run_metrics;
    c.metrics_user = &ro;
    if (rlhf_ppo_create(&ppo, policy, ref, critic, rm, NULL, NULL, t, prompts, ptx, &c, &err) != RLHF_OK) { fprintf(stderr, "rlhf %s\n", err.message); goto done; }
    if (resume && rlhf_ppo_load(ppo, out, &err) != RLHF_OK) { fprintf(stderr, "rlhf ppo: --resume: %s\n", err.message); goto done; }
    for (i = 0; i < iters; i++) {
        if (rlhf_ppo_step(ppo, &st, &err) != RLHF_OK) { fprintf(stderr, "rlhf %s\n", err.message); goto done; }
        if (g_tty)
            fprintf(stderr, "\r[ppo] iteration %ld/%d score %.3f kl %.3f ETA %.0fs   %s", st.iteration, iters, (double)st.score, (double)st.kl,
                    (now_s() - ro.t0) / (i + 1) * (iters - i - 1), i + 1 == iters ? "\n" : "");
        if ((i + 1) % save_every == 0 || i + 1 == iters)
            if (rlhf_ppo_save(ppo, out, &err) != RLHF_OK) { fprintf(stderr, "rlhf %s\n", err.message); goto done; }
    }
    printf("PPO: %ld iterations; last score %.4f, KL %.4f; state in %s (policy.safetensors, critic.safetensors), metrics in %s/metrics.jsonl\n",
           st.iteration, (double)st.score, (double)st.kl, out, out);
    rc = 0;
done:
    if (ro.metrics && rc != 2) fclose(ro.metrics);
    rlhf_ppo_free(ppo);
    rlhf_model_free(policy); rlhf_model_free(ref); rlhf_model_free(critic); rlhf_model_free(rm);
    rlhf_dataset_free(prompts); rlhf_dataset_free(ptx);
    rlhf_tokenizer_free(t);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    const char *pos[1], *data = NULL;
    opt o[] = {{"data", "SFT JSONL (policy: completion loss) or preference JSONL (reward model: accuracy)", 's', &data}};
    int np = parse_opts("eval", argc, argv, 2, o, 1, pos, 1), rc = 1;
    rlhf_model *m;
    rlhf_tokenizer *t;
    rlhf_dataset *d = NULL;
    rlhf_error err;
    if (np == -1) { print_help("rlhf eval CHECKPOINT --data FILE", "Held-out quality: a policy's completion loss, or a reward model's pairwise accuracy.", o, 1); return 0; }
    if (np != 1 || !data) return fail_usage("eval", "needs CHECKPOINT and --data");
    if (!(m = load_or_die(pos[0], &t))) return 1;
    if (rlhf_model_has_score_head(m)) { /* a reward model: its accuracy on the preference file */
        rc = score_file(m, t, data);
        goto done;
    }
    if (rlhf_dataset_load(&d, data, RLHF_DATA_SFT, NULL, &err) != RLHF_OK) { fprintf(stderr, "rlhf eval: %s\n", err.message); goto done; }
    {
        size_t i, n;
        double sum = 0;
        long count = 0;
        int *ids = (int *)malloc(4096 * sizeof(int)), *tg = (int *)malloc(4096 * sizeof(int));
        unsigned char *mask = (unsigned char *)malloc(4096);
        for (i = 0; ids && tg && mask && i < rlhf_dataset_size(d); i++) {
            size_t k;
            long c = 0;
            float loss;
            if (rlhf_sft_encode(t, rlhf_dataset_record(d, i), ids, mask, 4096, &n) != RLHF_OK || n < 2) continue;
            if (n > (size_t)rlhf_model_config(m)->n_ctx + 1) n = (size_t)rlhf_model_config(m)->n_ctx + 1;
            for (k = 0; k + 1 < n; k++) c += (tg[k] = mask[k + 1] ? ids[k + 1] : -1) >= 0;
            if (c == 0 || rlhf_model_forward(m, ids, tg, 1, (int)n - 1, NULL, &loss) != RLHF_OK) continue;
            sum += (double)loss * c;
            count += c;
        }
        free(ids); free(tg); free(mask);
        printf("completion loss %.4f over %ld tokens of %zu records (perplexity %.3f)\n", count ? sum / count : 0.0, count, rlhf_dataset_size(d),
               count ? exp(sum / count) : 0.0);
    }
    rc = 0;
done:
    rlhf_dataset_free(d);
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return rc;
}

/* ---- the demo ------------------------------------------------------------------ */
typedef struct demo_opts {
    int seed, quick, pretrain_steps, sft_epochs, rm_prompts, ppo_iters, eval_prompts, threads_unused;
    float kl_coef, ppo_lr, mistake_rate;
    const char *out;
} demo_opts;

/* One reply to a task's prompt (the world is ASCII: a stray byte token becomes '?', so the text stays UTF-8). */
static int reply(rlhf_model *m, const rlhf_tokenizer *t, sampler_ctx *sc, const world_task *task, char *out, size_t cap) {
    char prompt[128];
    rlhf_message msg;
    size_t i;
    int ok;
    world_prompt(task, prompt, sizeof prompt);
    msg.role = RLHF_ROLE_USER;
    msg.content.str = prompt;
    msg.content.len = strlen(prompt);
    ok = reply_to(m, t, sc, &msg, 1, 16, out, cap);
    for (i = 0; out[i]; i++)
        if ((unsigned char)out[i] >= 0x80 || (unsigned char)out[i] < 0x20) out[i] = '?';
    return ok;
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

/* mean gold score of m's replies on tasks (temperature 0.7); scores (n) out, may be NULL */
static double gold_eval(rlhf_model *m, const rlhf_tokenizer *t, const world_task *tasks, int n, uint64_t seed, double *scores) {
    sampler_ctx sc;
    char out[256];
    double sum = 0.0;
    int i;
    if (!sampler_open_t(&sc, m, 0.7f, seed)) return -1.0;
    for (i = 0; i < n; i++) {
        double g = reply(m, t, &sc, &tasks[i], out, sizeof out) ? world_gold(&tasks[i], out) : 0.0;
        if (scores) scores[i] = g;
        sum += g;
    }
    sampler_close(&sc);
    return sum / n;
}

typedef struct ppo_gold_ctx { FILE *metrics; } ppo_gold_ctx;

static int cmd_demo(int argc, char **argv) {
    demo_opts d;
    opt o[] = {
        {"out", "run directory (checkpoints, metrics.jsonl, report.json)", 's', &d.out},
        {"seed", "seed of the world and of every stage", 'i', &d.seed},
        {"quick", "a short smoke run (tests use it)", 'b', &d.quick},
        {"pretrain-steps", "pretraining steps", 'i', &d.pretrain_steps},
        {"sft-epochs", "SFT epochs over the demonstrations", 'i', &d.sft_epochs},
        {"rm-prompts", "prompts whose sampled replies labelers rank", 'i', &d.rm_prompts},
        {"ppo-iters", "PPO iterations", 'i', &d.ppo_iters},
        {"eval-prompts", "held-out prompts for the final evaluation", 'i', &d.eval_prompts},
        {"kl-coef", "PPO's KL coefficient beta (0 shows reward over-optimisation)", 'f', &d.kl_coef},
        {"ppo-lr", "PPO's learning rate", 'f', &d.ppo_lr},
        {"mistake-rate", "how often simulated labelers make a mistake in demonstrations", 'f', &d.mistake_rate},
    };
    const int n_opt = (int)(sizeof o / sizeof o[0]);
    const char *pos[1];
    char path[1024], *text = NULL;
    world_rng wr;
    rlhf_tokenizer *tok = NULL;
    rlhf_model *base = NULL, *sft = NULL, *rm = NULL, *policy = NULL, *ref = NULL, *critic = NULL;
    rlhf_dataset *ds = NULL, *prefs = NULL, *prompts = NULL, *ptx = NULL;
    rlhf_error err;
    rlhf_train_options to;
    rlhf_train_report rep;
    rlhf_ppo *ppo = NULL;
    rlhf_ppo_config pc;
    rlhf_ppo_stats st;
    rlhf_config cfg;
    world_task *eval = NULL;
    double *g_sft = NULL, *g_ppo = NULL, gold_base = 0, gold_sft = 0, gold_ppo = 0, t_start = now_s(), rm_acc = 0;
    FILE *f, *metrics = NULL;
    int i, rc = 1, np;
    size_t len;
    memset(&d, 0, sizeof d);
    d.out = "runs/demo";
    d.seed = 1;
    d.pretrain_steps = 800;
    d.sft_epochs = 4;
    d.rm_prompts = 800;
    d.ppo_iters = 80;
    d.eval_prompts = 300;
    d.kl_coef = 0.1f;
    d.ppo_lr = 3e-5f;
    d.mistake_rate = 0.3f;
    np = parse_opts("demo", argc, argv, 2, o, n_opt, pos, 0);
    if (np == -1) {
        print_help("rlhf demo [options]",
                   "The whole InstructGPT pipeline on a built-in world, no files needed: tokenizer and pretraining on the world's\n"
                   "text, SFT on demonstrations by simulated labelers (who make mistakes), a reward model on their rankings of\n"
                   "SFT samples (a gold judge plus noise), PPO against the reward model, and an evaluation by the gold judge\n"
                   "(never PPO's reward). Writes checkpoints, metrics.jsonl and report.json into the run directory.",
                   o, n_opt);
        return 0;
    }
    if (np < 0) return 2;
    if (d.quick) {
        d.pretrain_steps = 30;
        d.sft_epochs = 1;
        d.rm_prompts = 40;
        d.ppo_iters = 2;
        d.eval_prompts = 20;
    }
    if (d.pretrain_steps < 1 || d.sft_epochs < 1 || d.rm_prompts < 10 || d.ppo_iters < 1 || d.eval_prompts < 10 || !(d.kl_coef >= 0) ||
        !(d.ppo_lr > 0) || !(d.mistake_rate >= 0 && d.mistake_rate <= 1))
        return fail_usage("demo", "need pretrain-steps, sft-epochs, ppo-iters >= 1, rm-prompts and eval-prompts >= 10, kl-coef >= 0, "
                                  "ppo-lr > 0, mistake-rate in [0, 1]");
    if (!ensure_dir(d.out)) {
        fprintf(stderr, "rlhf demo: cannot create the run directory %s: %s\n", d.out, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", d.out);
    if (!(metrics = fopen(path, "w"))) {
        fprintf(stderr, "rlhf demo: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    g_t0 = now_s();
    wr.s = (unsigned long long)d.seed * 0x9E3779B97F4A7C15ull + 1;

    /* 1. the world's text; a byte-level BPE tokenizer; pretraining */
    say("1/4 pretraining: the world's text, a BPE tokenizer, a tiny GPT-2");
    text = (char *)malloc(1 << 20);
    if (!text) goto oom;
    len = world_pretrain_text(&wr, 6000, text, 1 << 20);
    {
        /* the tokenizer also sees the instructions' words, as a real one would have */
        size_t k;
        for (k = 0; k < 400 && len + 200 < (1u << 20); k++) {
            world_task t = world_sample_task(&wr);
            char p[128], a[128];
            world_prompt(&t, p, sizeof p);
            world_answer(&t, a, sizeof a);
            len += (size_t)snprintf(text + len, (1u << 20) - len, "%s: %s. ", p, a);
        }
    }
    if (rlhf_tokenizer_train(&tok, text, len, 320, &err) != RLHF_OK) goto lib_fail;
    snprintf(path, sizeof path, "%s/pretrain.txt", d.out);
    if (!(f = fopen(path, "w"))) goto io_fail;
    fwrite(text, 1, len, f);
    fclose(f);
    if (rlhf_dataset_load(&ds, path, RLHF_DATA_TEXT, NULL, &err) != RLHF_OK) goto lib_fail;
    cfg.vocab_size = rlhf_tokenizer_vocab_size(tok);
    cfg.n_ctx = 48;
    cfg.n_layer = 3;
    cfg.n_head = 4;
    cfg.n_embd = 96;
    if (rlhf_model_create(&base, &cfg, (uint64_t)d.seed) != RLHF_OK) goto oom;
    rlhf_model_set_log(base, log_cb, NULL);
    say("  tokenizer: %d tokens; model: V %d, n_ctx %d, L %d, NH %d, C %d, %zu parameters", cfg.vocab_size, cfg.vocab_size, cfg.n_ctx,
        cfg.n_layer, cfg.n_head, cfg.n_embd, rlhf_model_num_params(base));
    to = rlhf_train_options_sft();
    to.opt.lr = 2e-3f;
    to.batch_size = 16;
    to.seq_len = 48;
    to.max_steps = d.pretrain_steps;
    to.warmup_steps = 20;
    to.eval_every = 0;
    to.log_every = d.quick ? 0 : 100;
    to.val_fraction = 0.02f;
    to.seed = (uint64_t)d.seed;
    to.log = log_cb;
    to.metrics = metrics_cb;
    to.metrics_user = metrics;
    if (rlhf_sft_train(base, tok, ds, NULL, &to, &rep, &err) != RLHF_OK) goto lib_fail;
    say("  pretraining: %ld steps, validation loss %.3f", rep.steps, (double)rep.val_loss);
    snprintf(path, sizeof path, "%s/base.safetensors", d.out);
    if (rlhf_model_save(base, path) != RLHF_OK) goto save_fail;
    rlhf_dataset_free(ds);
    ds = NULL;

    /* 2. SFT on labelers' demonstrations */
    say("2/4 SFT: demonstrations written by simulated labelers (%.0f%% with mistakes)", 100.0 * d.mistake_rate);
    snprintf(path, sizeof path, "%s/sft.jsonl", d.out);
    if (!(f = fopen(path, "w"))) goto io_fail;
    for (i = 0; i < (d.quick ? 200 : 2000); i++) {
        world_task t = world_sample_task(&wr);
        char p[128], a[160];
        world_prompt(&t, p, sizeof p);
        world_demonstration(&t, &wr, d.mistake_rate, a, sizeof a);
        fprintf(f, "{\"prompt\": ");
        json_str(f, p);
        fprintf(f, ", \"completion\": ");
        json_str(f, a);
        fprintf(f, "}\n");
    }
    fclose(f);
    if (rlhf_dataset_load(&ds, path, RLHF_DATA_SFT, NULL, &err) != RLHF_OK) goto lib_fail;
    snprintf(path, sizeof path, "%s/base.safetensors", d.out);
    if (rlhf_model_load_ex(&sft, path, &err) != RLHF_OK) goto lib_fail;
    rlhf_model_set_log(sft, log_cb, NULL);
    to = rlhf_train_options_sft();
    to.opt.lr = 1e-3f;
    to.batch_size = 32;
    to.epochs = d.sft_epochs;
    to.warmup_steps = 10;
    to.eval_every = 0;
    to.log_every = d.quick ? 0 : 50;
    to.pack = 1;
    to.seed = (uint64_t)d.seed + 1;
    to.log = log_cb;
    to.metrics = metrics_cb;
    to.metrics_user = metrics;
    if (rlhf_sft_train(sft, tok, ds, NULL, &to, &rep, &err) != RLHF_OK) goto lib_fail;
    say("  SFT: %ld steps, validation loss on completions %.3f", rep.steps, (double)rep.val_loss);
    snprintf(path, sizeof path, "%s/sft.safetensors", d.out);
    if (rlhf_model_save_ex(sft, path, RLHF_SAVE_WEIGHTS_ONLY) != RLHF_OK) goto save_fail;
    rlhf_dataset_free(ds);
    ds = NULL;

    /* 3. rankings of SFT samples by labelers (gold judge + noise), the reward model */
    say("3/4 reward model: labelers rank 4 to 9 SFT samples for each of %d prompts", d.rm_prompts);
    snprintf(path, sizeof path, "%s/rankings.jsonl", d.out);
    if (!(f = fopen(path, "w"))) goto io_fail;
    {
        sampler_ctx sc;
        int written = 0;
        if (!sampler_open_t(&sc, sft, 1.0f, (uint64_t)d.seed + 2)) goto oom;
        for (i = 0; i < d.rm_prompts; i++) {
            world_task t = world_sample_task(&wr);
            char p[128], resp[9][160];
            double noisy[9];
            int K = 4 + world_below(&wr, 6), k, j, n = 0, order[9];
            world_prompt(&t, p, sizeof p);
            for (k = 0; k < K; k++) { /* distinct replies only: a labeler cannot rank two equal texts */
                char r[160];
                if (!reply(sft, tok, &sc, &t, r, sizeof r)) continue;
                for (j = 0; j < n && strcmp(resp[j], r) != 0; j++) {}
                if (j < n) continue;
                strcpy(resp[n], r);
                noisy[n] = world_gold(&t, r) + 0.05 * (world_uniform(&wr) - 0.5); /* a labeler's judgement */
                n++;
            }
            if (n < 2) continue;
            for (k = 0; k < n; k++) order[k] = k;
            for (k = 0; k < n; k++)
                for (j = k + 1; j < n; j++)
                    if (noisy[order[j]] > noisy[order[k]]) { int tmp = order[k]; order[k] = order[j]; order[j] = tmp; }
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
        fclose(f);
        say("  %d rankings written (prompts with fewer than 2 distinct samples skipped)", written);
    }
    if (rlhf_dataset_load(&prefs, path, RLHF_DATA_PREFERENCE, NULL, &err) != RLHF_OK) goto lib_fail;
    snprintf(path, sizeof path, "%s/sft.safetensors", d.out);
    if (rlhf_model_load_ex(&rm, path, &err) != RLHF_OK) goto lib_fail;
    rlhf_model_set_log(rm, log_cb, NULL);
    if (rlhf_model_add_score_head(rm, -1.0f, (uint64_t)d.seed + 3) != RLHF_OK) goto oom;
    to = rlhf_train_options_reward();
    to.opt.lr = 5e-4f;
    to.epochs = 2;
    to.batch_size = 8;
    to.eval_every = 0;
    to.log_every = d.quick ? 0 : 50;
    to.seed = (uint64_t)d.seed + 4;
    to.log = log_cb;
    to.metrics = metrics_cb;
    to.metrics_user = metrics;
    if (rlhf_reward_train(rm, tok, prefs, NULL, &to, &rep, &err) != RLHF_OK) goto lib_fail;
    say("  reward model: %ld steps, held-out pairwise accuracy %.3f (against the labelers' noisy rankings)", rep.steps, (double)rep.val_accuracy);
    {   /* accuracy against the GOLD judge's rankings, on fresh prompts and fresh samples */
        sampler_ctx sc;
        long right = 0, pairs = 0;
        if (!sampler_open_t(&sc, sft, 1.0f, (uint64_t)d.seed + 5)) goto oom;
        for (i = 0; i < (d.quick ? 20 : 150); i++) {
            world_task t = world_sample_task(&wr);
            char p[128], r[4][160];
            const char *pr[4], *rs[4];
            double g[4];
            float s[4];
            int k, j;
            world_prompt(&t, p, sizeof p);
            for (k = 0; k < 4; k++) {
                if (!reply(sft, tok, &sc, &t, r[k], sizeof r[k])) r[k][0] = 0;
                g[k] = world_gold(&t, r[k]);
                pr[k] = p;
                rs[k] = r[k];
            }
            if (rlhf_reward_score(rm, tok, pr, rs, 4, s) != RLHF_OK) { sampler_close(&sc); goto lib_fail_model_rm; }
            for (k = 0; k < 4; k++)
                for (j = k + 1; j < 4; j++)
                    if (g[k] != g[j]) {
                        pairs++;
                        right += (g[k] > g[j]) == (s[k] > s[j]);
                    }
        }
        sampler_close(&sc);
        rm_acc = pairs ? (double)right / (double)pairs : 0.0;
        say("  reward model vs the gold judge on %ld fresh pairs: accuracy %.3f", pairs, rm_acc);
    }
    /* normalise on SFT samples of training prompts */
    snprintf(path, sizeof path, "%s/prompts.jsonl", d.out);
    if (!(f = fopen(path, "w"))) goto io_fail;
    for (i = 0; i < 1000; i++) {
        world_task t = world_sample_task(&wr);
        char p[128];
        world_prompt(&t, p, sizeof p);
        fprintf(f, "{\"prompt\": ");
        json_str(f, p);
        fprintf(f, "}\n");
    }
    fclose(f);
    if (rlhf_dataset_load(&prompts, path, RLHF_DATA_PROMPTS, NULL, &err) != RLHF_OK) goto lib_fail;
    {
        rlhf_sampler_config scfg = rlhf_sampler_config_default();
        float mean, sd;
        if (rlhf_reward_normalize(rm, sft, tok, prompts, d.quick ? 16 : 200, &scfg, 16, (uint64_t)d.seed + 6, &mean, &sd) != RLHF_OK)
            goto lib_fail_model_rm;
        say("  normalised: raw rewards of SFT samples had mean %.3f, std %.3f", (double)mean, (double)sd);
    }
    snprintf(path, sizeof path, "%s/rm.safetensors", d.out);
    if (rlhf_model_save_ex(rm, path, RLHF_SAVE_WEIGHTS_ONLY) != RLHF_OK) goto save_fail;

    /* 4. PPO against the reward model, the gold judge watching */
    say("4/4 PPO: %d iterations against the reward model (beta %g)", d.ppo_iters, (double)d.kl_coef);
    snprintf(path, sizeof path, "%s/sft.safetensors", d.out);
    if (rlhf_model_load_ex(&policy, path, &err) != RLHF_OK || rlhf_model_load_ex(&ref, path, &err) != RLHF_OK) goto lib_fail;
    snprintf(path, sizeof path, "%s/rm.safetensors", d.out);
    if (rlhf_model_load_ex(&critic, path, &err) != RLHF_OK) goto lib_fail;
    snprintf(path, sizeof path, "%s/pretrain.txt", d.out);
    if (rlhf_dataset_load(&ptx, path, RLHF_DATA_TEXT, NULL, &err) != RLHF_OK) goto lib_fail;
    pc = rlhf_ppo_config_default();
    pc.batch_size = 32;
    pc.mini_batch = 8;
    pc.ppo_epochs = 2;
    pc.max_new_tokens = 16;
    pc.max_prompt_tokens = 24;
    pc.kl_coef = d.kl_coef;
    pc.policy_opt.lr = d.ppo_lr;
    pc.critic_opt.lr = d.ppo_lr;
    pc.ptx_coef = 0.0f;
    pc.log_samples = 0;
    pc.seed = (uint64_t)d.seed + 7;
    pc.log = log_cb;
    pc.metrics = metrics_cb;
    pc.metrics_user = metrics;
    if (rlhf_ppo_create(&ppo, policy, ref, critic, rm, NULL, NULL, tok, prompts, ptx, &pc, &err) != RLHF_OK) goto lib_fail;
    {
        world_task watch[40];
        for (i = 0; i < 40; i++) watch[i] = world_sample_task(&wr);
        for (i = 0; i < d.ppo_iters; i++) {
            if (rlhf_ppo_step(ppo, &st, &err) != RLHF_OK) goto lib_fail;
            if (i % 5 == 4 || i == d.ppo_iters - 1) { /* reward-model score beside the gold judge's, on held-out prompts */
                double g = gold_eval(policy, tok, watch, d.quick ? 10 : 40, (uint64_t)d.seed + 8, NULL);
                fprintf(metrics, "{\"stage\":\"ppo_gold\",\"step\":%ld,\"gold/heldout\":%.5f,\"objective/scores\":%.5f,\"objective/kl\":%.5f}\n",
                        st.iteration, g, (double)st.score, (double)st.kl);
                fflush(metrics);
                say("  PPO %3ld: reward-model score %6.3f, KL %6.3f, gold (held out) %.3f", st.iteration, (double)st.score, (double)st.kl, g);
            }
        }
    }
    snprintf(path, sizeof path, "%s/ppo", d.out);
    if (!ensure_dir(path) || rlhf_ppo_save(ppo, path, &err) != RLHF_OK) goto lib_fail;

    /* evaluation by the gold judge on held-out prompts */
    say("evaluation: %d held-out prompts, replies sampled at temperature 0.7, scored by the gold judge", d.eval_prompts);
    eval = (world_task *)malloc((size_t)d.eval_prompts * sizeof *eval);
    g_sft = (double *)malloc((size_t)d.eval_prompts * sizeof(double));
    g_ppo = (double *)malloc((size_t)d.eval_prompts * sizeof(double));
    if (!eval || !g_sft || !g_ppo) goto oom;
    for (i = 0; i < d.eval_prompts; i++) eval[i] = world_sample_task(&wr);
    gold_base = gold_eval(base, tok, eval, d.eval_prompts, (uint64_t)d.seed + 9, NULL);
    gold_sft = gold_eval(sft, tok, eval, d.eval_prompts, (uint64_t)d.seed + 9, g_sft);
    gold_ppo = gold_eval(policy, tok, eval, d.eval_prompts, (uint64_t)d.seed + 9, g_ppo);
    {
        double wins = 0.0, sq = 0.0, mean, se, lo, hi, secs = now_s() - t_start;
        long rss = peak_rss_bytes();
        for (i = 0; i < d.eval_prompts; i++) {
            double w = g_ppo[i] > g_sft[i] ? 1.0 : g_ppo[i] == g_sft[i] ? 0.5 : 0.0;
            wins += w;
            sq += w * w;
        }
        mean = wins / d.eval_prompts;
        se = sqrt(fmax(sq / d.eval_prompts - mean * mean, 0.0) / (d.eval_prompts - 1));
        lo = mean - 1.96 * se;
        hi = mean + 1.96 * se;
        printf("\n== report ==\n");
        printf("gold score (held out, mean of %d): base %.3f | SFT %.3f | PPO %.3f\n", d.eval_prompts, gold_base, gold_sft, gold_ppo);
        printf("PPO vs SFT win rate (gold judge, ties half): %.3f, 95%% interval [%.3f, %.3f]\n", mean, lo, hi);
        printf("reward model accuracy against gold rankings: %.3f\n", rm_acc);
        printf("KL to SFT at the end of PPO: %.3f per reply\n", (double)st.kl);
        printf("time %.1f s, peak memory %.1f MB\n", secs, rss / 1048576.0);
        printf("\nside by side (held-out prompts):\n");
        {
            sampler_ctx a, b;
            if (sampler_open_t(&a, sft, 0.7f, 99) && sampler_open_t(&b, policy, 0.7f, 99))
                for (i = 0; i < 6; i++) {
                    char p[128], ra[160], rb[160];
                    world_prompt(&eval[i], p, sizeof p);
                    reply(sft, tok, &a, &eval[i], ra, sizeof ra);
                    reply(policy, tok, &b, &eval[i], rb, sizeof rb);
                    printf("  %-28s SFT: %-30s PPO: %s\n", p, ra, rb);
                }
            sampler_close(&a);
            sampler_close(&b);
        }
        snprintf(path, sizeof path, "%s/report.json", d.out);
        if (!(f = fopen(path, "w"))) goto io_fail;
        fprintf(f, "{\"seconds\": %.2f, \"gold\": {\"base\": %.4f, \"sft\": %.4f, \"ppo\": %.4f}, \"win_rate_ppo_vs_sft\": %.4f, "
                   "\"win_rate_ci95\": [%.4f, %.4f], \"rm_heldout_accuracy\": %.4f, \"kl_to_sft\": %.4f, \"peak_rss_bytes\": %ld, "
                   "\"eval_prompts\": %d, \"seed\": %d}\n",
                secs, gold_base, gold_sft, gold_ppo, mean, lo, hi, rm_acc, (double)st.kl, rss, d.eval_prompts, d.seed);
        fclose(f);
        printf("\nwrote %s\n", path);
        plot_run(d.out, 1);
    }
    rc = 0;
    goto done;
lib_fail_model_rm:
    fprintf(stderr, "rlhf demo: %s\n", rlhf_model_last_error(rm));
    goto done;
save_fail:
    fprintf(stderr, "rlhf demo: cannot save %s\n", path);
    goto done;
io_fail:
    fprintf(stderr, "rlhf demo: cannot write %s: %s\n", path, strerror(errno));
    goto done;
oom:
    fprintf(stderr, "rlhf demo: out of memory\n");
    goto done;
lib_fail:
    fprintf(stderr, "rlhf demo: %s\n", err.message);
done:
    if (metrics) fclose(metrics);
    free(text); free(eval); free(g_sft); free(g_ppo);
    rlhf_ppo_free(ppo);
    rlhf_model_free(base); rlhf_model_free(sft); rlhf_model_free(rm); rlhf_model_free(policy); rlhf_model_free(ref); rlhf_model_free(critic);
    rlhf_dataset_free(ds); rlhf_dataset_free(prefs); rlhf_dataset_free(prompts); rlhf_dataset_free(ptx);
    rlhf_tokenizer_free(tok);
    return rc;
}

static int usage(FILE *f) {
    fprintf(f, "usage: rlhf COMMAND [options]   (rlhf COMMAND --help for its options)\n\n"
               "commands:\n"
               "  tokenizer train a byte-level BPE tokenizer on a text file\n"
               "  pretrain  pretrain a GPT-2 on text\n"
               "  sft       supervised fine-tuning on demonstrations (loss on completions only)\n"
               "  rm        train a reward model on pairs or K-way rankings, and normalise it\n"
               "  ppo       PPO with a KL penalty against the SFT policy (PPO-ptx optional)\n"
               "  generate  sample replies to a prompt\n"
               "  chat      talk to a policy\n"
               "  score     the reward of (prompt, response) pairs\n"
               "  eval      a policy's completion loss or a reward model's accuracy on a file\n"
               "  info      a checkpoint's config, kind, tokenizer, size and memory\n"
               "  plot      SVG charts of a run directory's metrics.jsonl\n"
               "  demo      the whole InstructGPT pipeline on a built-in world with a gold judge\n\n"
               "exit status: 0 success, 1 runtime failure, 2 usage error\n");
    return f == stderr ? 2 : 0;
}

int main(int argc, char **argv) {
    g_tty = isatty(1);
    g_t0 = now_s();
    if (argc < 2) return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) return usage(stdout);
    if (strcmp(argv[1], "demo") == 0) return cmd_demo(argc, argv);
    if (strcmp(argv[1], "plot") == 0) return cmd_plot(argc, argv);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc, argv);
    if (strcmp(argv[1], "generate") == 0) return cmd_generate(argc, argv, 0);
    if (strcmp(argv[1], "chat") == 0) return cmd_generate(argc, argv, 1);
    if (strcmp(argv[1], "score") == 0) return cmd_score(argc, argv);
    if (strcmp(argv[1], "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(argv[1], "tokenizer") == 0) return cmd_tokenizer(argc, argv);
    if (strcmp(argv[1], "pretrain") == 0 || strcmp(argv[1], "sft") == 0 || strcmp(argv[1], "rm") == 0) return cmd_train(argc, argv, argv[1]);
    if (strcmp(argv[1], "ppo") == 0) return cmd_ppo(argc, argv);
    fprintf(stderr, "rlhf: unknown command \"%s\"\n", argv[1]);
    return usage(stderr);
}
