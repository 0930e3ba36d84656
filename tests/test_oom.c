/* Allocation failure at every point, and a full disk at every byte count.

   The allocator (RLHF_MALLOC / RLHF_FREE) below fails its n-th call. For
   each scenario (one library call, its inputs made with the allocator
   disarmed) the call runs for n = 1, 2, 3, ... until it no longer reaches
   the n-th allocation. Each failing run must return RLHF_ERR_OUT_OF_MEMORY,
   leave *out NULL, leave the object it was given usable (the same call,
   disarmed, then succeeds), leave the directory it writes into byte for
   byte as it was (no torn file, no temporary left behind), and free
   everything it took: the live-allocation count is back where it was once
   the scenario's objects are freed (LeakSanitizer checks the same under
   `make debug`).

   The full disk: RLIMIT_FSIZE (SIGXFSZ ignored) makes every write past a
   byte count fail with EFBIG. Each save runs under limits swept across the
   size of its largest file and must return RLHF_ERR_IO with the directory
   unchanged, until the limit lets it through.

   POSIX (setrlimit, opendir). Usage: test_oom [NAME] runs the scenarios
   whose name contains NAME. Exit status 1 when any check fails. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <time.h>

static long g_calls;   /* RLHF_MALLOC calls since the allocator was armed */
static long g_fail_at; /* 0: disarmed; n: the n-th call returns NULL */
static long g_live;    /* blocks allocated and not yet freed */
static void oom_hit(void) {} /* a breakpoint for a debugger: the failing allocation */
static void *oom_malloc(size_t n) {
    void *p;
    if (g_fail_at > 0 && ++g_calls == g_fail_at) { oom_hit(); return NULL; }
    p = malloc(n);
    if (p) g_live++;
    return p;
}
static void oom_free(void *p) {
    if (p) g_live--;
    free(p);
}
#define RLHF_MALLOC(n) oom_malloc(n)
#define RLHF_FREE(p) oom_free(p)
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"

static int g_fail; /* failed checks */
#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            g_fail++;                                                        \
        }                                                                    \
    } while (0)
#define MUST(expr)                                                                                 \
    do {                                                                                           \
        rlhf_result r_ = (expr);                                                                   \
        if (r_ != RLHF_OK) {                                                                       \
            fprintf(stderr, "  setup failed %s:%d: %s -> %s\n", __FILE__, __LINE__, #expr,         \
                    rlhf_result_string(r_));                                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define ROOT "build/oom"

/* ---- files ---------------------------------------------------------------- */
static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, strlen(s), f) != strlen(s) || fclose(f) != 0) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
}
static void make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) { fprintf(stderr, "cannot create %s\n", path); exit(1); }
}
/* remove dir's files (one level of subdirectories), keep dir */
static void empty_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) { empty_dir(p); rmdir(p); }
        else remove(p);
    }
    closedir(d);
}
static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
/* Every file under dir (one level of subdirectories), sorted by name, as
   "name size\n" then its bytes: two snapshots are equal when the files are. */
typedef struct { char *buf; size_t len, cap; } snap;
static void snap_add(snap *s, const void *p, size_t n) {
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 256;
        s->buf = (char *)realloc(s->buf, s->cap);
        if (!s->buf) { fprintf(stderr, "out of memory (test)\n"); exit(1); }
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}
static void snap_dir(snap *s, const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char *names[256], p[1024], head[1200];
    int n = 0, i;
    if (!d) { snap_add(s, "(no dir)\n", 9); return; }
    while ((e = readdir(d)) != NULL && n < 256)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            names[n] = (char *)malloc(strlen(e->d_name) + 1);
            strcpy(names[n++], e->d_name);
        }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (i = 0; i < n; i++) {
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            snprintf(head, sizeof head, "%s%s/\n", prefix, names[i]);
            snap_add(s, head, strlen(head));
            snap_dir(s, p, names[i]);
        } else {
            FILE *f = fopen(p, "rb");
            char buf[4096];
            size_t k;
            snprintf(head, sizeof head, "%s%s %ld\n", prefix, names[i], (long)st.st_size);
            snap_add(s, head, strlen(head));
            while (f && (k = fread(buf, 1, sizeof buf, f)) > 0) snap_add(s, buf, k);
            if (f) fclose(f);
        }
        free(names[i]);
    }
}
static snap snapshot(const char *dir) {
    snap s = {NULL, 0, 0};
    snap_dir(&s, dir, "");
    return s;
}
static int snap_same(const snap *a, const snap *b) { return a->len == b->len && memcmp(a->buf, b->buf, a->len) == 0; }
/* the largest file under dir, in bytes */
static long largest_file(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    long big = 0;
    if (!d) return 0;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) { long b = largest_file(p); if (b > big) big = b; }
        else if ((long)st.st_size > big) big = (long)st.st_size;
    }
    closedir(d);
    return big;
}

/* ---- the inputs every scenario shares ------------------------------------- */
static rlhf_tokenizer *g_tok;
static rlhf_dataset *g_text, *g_sft, *g_pref, *g_prompts, *g_unpaired;
static const char TOK_TEXT[] =
    "rate this: good bad fine okay meh good good bad fine okay meh. repeat after me: red blue green cat dog sun moon. "
    "answer: yes no maybe. the quick brown fox jumps over the lazy dog. one two three four five six seven eight nine ten.";
static const char *const DATA[5][2] = {
    {ROOT "/text.jsonl", "{\"text\": \"the quick brown fox jumps over the lazy dog\"}\n{\"text\": \"one two three four five\"}\n"},
    {ROOT "/sft.jsonl",
     "{\"prompt\": \"rate this:\", \"completion\": \" good good\"}\n{\"prompt\": \"answer: yes\", \"completion\": \" no\"}\n"
     "{\"messages\": [{\"role\": \"user\", \"content\": \"one two\"}, {\"role\": \"assistant\", \"content\": \"three\"}]}\n"},
    {ROOT "/pref.jsonl",
     "{\"prompt\": \"rate this:\", \"chosen\": \" good good\", \"rejected\": \" bad\"}\n"
     "{\"prompt\": \"answer:\", \"chosen\": \" yes\", \"rejected\": \" no\"}\n"
     "{\"prompt\": \"rate this:\", \"completions\": [\" meh\", \" good\", \" bad\"], \"ranking\": [1, 0, 2]}\n"
     "{\"chosen\": \"\\n\\nHuman: one two\\n\\nAssistant: three\", \"rejected\": \"\\n\\nHuman: one two\\n\\nAssistant: dog\"}\n"},
    {ROOT "/prompts.jsonl",
     "{\"prompt\": \"rate this:\"}\n{\"prompt\": \"answer: yes\"}\n{\"prompt\": \"repeat after me: dog\"}\n"
     "{\"messages\": [{\"role\": \"user\", \"content\": \"one two three\"}]}\n"},
    {ROOT "/unpaired.jsonl",
     "{\"prompt\": \"rate this:\", \"completion\": \" good\", \"label\": true}\n"
     "{\"prompt\": \"rate this:\", \"completion\": \" bad\", \"label\": false}\n"
     "{\"prompt\": [{\"role\": \"user\", \"content\": \"answer:\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"yes\"}], \"label\": true}\n"
     "{\"prompt\": \"answer:\", \"completion\": \" no\", \"label\": false}\n"}};
static const rlhf_data_format DATA_FORMAT[5] = {RLHF_DATA_TEXT, RLHF_DATA_SFT, RLHF_DATA_PREFERENCE, RLHF_DATA_PROMPTS,
                                                RLHF_DATA_UNPAIRED};

static rlhf_config small_config(void) {
    rlhf_config c = rlhf_config_default();
    c.vocab_size = rlhf_tokenizer_vocab_size(g_tok);
    c.n_ctx = 32; c.n_layer = 1; c.n_head = 2; c.n_embd = 32; /* heads of 16: the tiled attention */
    return c;
}
static rlhf_model *new_model(uint64_t seed, int score_head) {
    rlhf_config c = small_config();
    rlhf_model *m;
    MUST(rlhf_model_create(&m, &c, seed));
    if (score_head) MUST(rlhf_model_add_score_head(m, 0.02f, seed));
    MUST(rlhf_model_set_tokenizer(m, g_tok));
    return m;
}
/* one AdamW step, so a save carries the optimiser state */
static void train_once(rlhf_model *m) {
    int x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    rlhf_adamw_config o = rlhf_adamw_config_default();
    float loss;
    MUST(rlhf_model_train_step(m, x, y, 1, 8, &o, &loss));
}
static void shared_inputs(void) {
    rlhf_error e;
    int i;
    make_dir("build"); make_dir(ROOT);
    MUST(rlhf_tokenizer_train(&g_tok, TOK_TEXT, strlen(TOK_TEXT), 300, &e));
    for (i = 0; i < 5; i++) write_text(DATA[i][0], DATA[i][1]);
    write_text(ROOT "/plain.txt", TOK_TEXT);
    MUST(rlhf_dataset_load(&g_text, DATA[0][0], RLHF_DATA_TEXT, NULL, &e));
    MUST(rlhf_dataset_load(&g_sft, DATA[1][0], RLHF_DATA_SFT, NULL, &e));
    MUST(rlhf_dataset_load(&g_pref, DATA[2][0], RLHF_DATA_PREFERENCE, NULL, &e));
    MUST(rlhf_dataset_load(&g_prompts, DATA[3][0], RLHF_DATA_PROMPTS, NULL, &e));
    MUST(rlhf_dataset_load(&g_unpaired, DATA[4][0], RLHF_DATA_UNPAIRED, NULL, &e));
    {   /* files to load: a checkpoint with AdamW state, a tokenizer, an exported directory */
        rlhf_model *m = new_model(3, 0), *rm = new_model(4, 1);
        train_once(m);
        MUST(rlhf_model_set_meta(m, "note", "a value"));
        MUST(rlhf_model_save(m, ROOT "/model.safetensors"));
        MUST(rlhf_model_save(rm, ROOT "/rm.safetensors"));
        MUST(rlhf_tokenizer_save(g_tok, ROOT "/tok.json"));
        empty_dir(ROOT "/hf"); rmdir(ROOT "/hf");
        MUST(rlhf_model_export_hf(m, g_tok, ROOT "/hf", NULL, &e));
        empty_dir(ROOT "/hf_rm"); rmdir(ROOT "/hf_rm");
        MUST(rlhf_reward_set_normalization(rm, 2.0f, 0.5f));
        MUST(rlhf_model_export_hf(rm, g_tok, ROOT "/hf_rm", NULL, &e));
        rlhf_model_free(m); rlhf_model_free(rm);
    }
}
static void free_shared(void) {
    rlhf_tokenizer_free(g_tok);
    rlhf_dataset_free(g_text); rlhf_dataset_free(g_sft); rlhf_dataset_free(g_pref);
    rlhf_dataset_free(g_prompts); rlhf_dataset_free(g_unpaired);
}

/* ---- the scenarios ---------------------------------------------------------
   setup (disarmed) makes the inputs into the globals below; run is the one
   armed call; again (disarmed, after a failure) repeats it on the same
   objects and must succeed (NULL: the call makes its object: *out must be
   NULL after a failure); teardown frees everything. dir: the directory the
   call writes, which a failure must leave as it was. */
typedef struct scenario {
    const char *name;
    const char *dir;
    void (*setup)(void);
    rlhf_result (*run)(void);
    rlhf_result (*again)(void);
    void (*teardown)(void);
} scenario;

static rlhf_model *s_m, *s_ref, *s_critic, *s_rm, *s_out; /* s_out: what a creating call returned */
static rlhf_tokenizer *s_tok_out;
static rlhf_dataset *s_data_out;
static rlhf_ppo *s_ppo, *s_ppo2;
static int s_data;               /* the dataset file of the load scenario */
static rlhf_estimator s_est;     /* PPO's estimator */
static rlhf_error s_err;
static const char *s_dir;        /* the scenario's output directory */

static void teardown_all(void) {
    rlhf_ppo_free(s_ppo); rlhf_ppo_free(s_ppo2); s_ppo = s_ppo2 = NULL;
    rlhf_model_free(s_m); rlhf_model_free(s_ref); rlhf_model_free(s_critic); rlhf_model_free(s_rm); rlhf_model_free(s_out);
    s_m = s_ref = s_critic = s_rm = s_out = NULL;
    rlhf_tokenizer_free(s_tok_out); s_tok_out = NULL;
    rlhf_dataset_free(s_data_out); s_data_out = NULL;
}
static int created_null(void) { return s_out == NULL && s_tok_out == NULL && s_data_out == NULL && s_ppo2 == NULL; }

static void setup_none(void) {}
static rlhf_result run_model_create(void) {
    rlhf_config c = small_config();
    return rlhf_model_create(&s_out, &c, 7);
}
static rlhf_result run_model_load(void) { return rlhf_model_load_ex(&s_out, ROOT "/model.safetensors", &s_err); }
static rlhf_result run_rm_load(void) { return rlhf_model_load_ex(&s_out, ROOT "/rm.safetensors", &s_err); }
static rlhf_result run_hf_load(void) { return rlhf_model_load_ex(&s_out, ROOT "/hf", &s_err); }
/* Hugging Face's own files (tests/fixtures/hf: the test runs from the repository's root) */
static rlhf_result run_hf_sharded_load(void) { return rlhf_model_load_ex(&s_out, "tests/fixtures/hf/sharded", &s_err); }
static rlhf_result run_hf_hub_load(void) { return rlhf_model_load_ex(&s_out, "tests/fixtures/hf/hub/model.safetensors", &s_err); }
static rlhf_result run_hf_f16_load(void) {
    return rlhf_model_load_ex(&s_out, "tests/fixtures/hf/pretrained/model_f16.safetensors", &s_err);
}
static rlhf_result run_hf_rm_load(void) { return rlhf_model_load_ex(&s_out, ROOT "/hf_rm", &s_err); }
static rlhf_result run_tok_train(void) { return rlhf_tokenizer_train(&s_tok_out, TOK_TEXT, strlen(TOK_TEXT), 300, &s_err); }
static rlhf_result run_tok_load(void) { return rlhf_tokenizer_load(&s_tok_out, ROOT "/tok.json", &s_err); }
static rlhf_result run_tok_load_hf(void) { return rlhf_tokenizer_load_hf(&s_tok_out, ROOT "/hf", &s_err); }
static rlhf_result run_data_load(void) {
    const char *path = s_data < 5 ? DATA[s_data][0] : ROOT "/plain.txt";
    return rlhf_dataset_load(&s_data_out, path, s_data < 5 ? DATA_FORMAT[s_data] : RLHF_DATA_TEXT, NULL, &s_err);
}
static void setup_data_0(void) { s_data = 0; }
static void setup_data_1(void) { s_data = 1; }
static void setup_data_2(void) { s_data = 2; }
static void setup_data_3(void) { s_data = 3; }
static void setup_data_4(void) { s_data = 4; }
static void setup_data_5(void) { s_data = 5; }

/* the model's first training step (gradients, AdamW moments, activations) */
static void setup_model(void) { s_m = new_model(11, 0); }
static rlhf_result run_train_step(void) {
    int x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    rlhf_adamw_config o = rlhf_adamw_config_default();
    float loss;
    return rlhf_model_train_step(s_m, x, y, 2, 4, &o, &loss);
}
static rlhf_result run_generate(void) {
    rlhf_kv_cache *c = NULL;
    rlhf_sampler *s = NULL;
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_rng rng;
    int prompt[3] = {5, 6, 7}, out[6], n = 0;
    rlhf_result r;
    rlhf_rng_seed(&rng, 1);
    sc.top_k = 5; sc.top_p = 0.9f;
    r = rlhf_kv_cache_create(&c, s_m, 1, 16);
    if (r == RLHF_OK) r = rlhf_sampler_create(&s, rlhf_model_config(s_m)->vocab_size, &sc);
    if (r == RLHF_OK) r = rlhf_model_generate(s_m, c, s, &rng, prompt, 3, 6, -1, out, &n);
    rlhf_sampler_free(s);
    rlhf_kv_cache_free(c);
    return r;
}

/* saves: the directory holds an older version first */
static void setup_save(void) {
    rlhf_model *old = new_model(12, 0);
    make_dir(ROOT "/save"); empty_dir(ROOT "/save");
    make_dir(ROOT "/savetok"); empty_dir(ROOT "/savetok");
    MUST(rlhf_model_save(old, ROOT "/save/m.safetensors"));
    MUST(rlhf_tokenizer_save(g_tok, ROOT "/savetok/tok.json"));
    rlhf_model_free(old);
    s_m = new_model(13, 0);
    train_once(s_m);
    MUST(rlhf_model_set_meta(s_m, "note", "newer"));
}
static rlhf_result run_model_save(void) { return rlhf_model_save_ex(s_m, ROOT "/save/m.safetensors", 0, &s_err); }
static rlhf_result run_tok_save(void) {
    rlhf_tokenizer *t = NULL;
    rlhf_result r = rlhf_tokenizer_from_model(&t, s_m, &s_err); /* a tokenizer of the model's */
    if (r == RLHF_OK) r = rlhf_tokenizer_set_template(t, RLHF_TEMPLATE_HH);
    if (r == RLHF_OK) r = rlhf_tokenizer_save(t, ROOT "/savetok/tok.json");
    rlhf_tokenizer_free(t);
    return r;
}
static void setup_export(void) {
    rlhf_model *old = new_model(12, 0);
    rlhf_export_options o = rlhf_export_options_default();
    s_dir = ROOT "/export";
    make_dir(s_dir); empty_dir(s_dir);
    MUST(rlhf_model_export_hf(old, g_tok, ROOT "/export/hf", &o, &s_err));
    rlhf_model_free(old);
    s_m = new_model(13, 1);
}
static rlhf_result run_export(void) {
    rlhf_export_options o = rlhf_export_options_default();
    o.overwrite = 1;
    o.dtype = RLHF_EXPORT_BF16;
    return rlhf_model_export_hf(s_m, g_tok, ROOT "/export/hf", &o, &s_err);
}

/* the training stages: two updates, validation and checkpoints in out_dir */
static void setup_stage(void) {
    s_dir = ROOT "/stage";
    make_dir(s_dir); empty_dir(s_dir);
    s_m = new_model(21, 0);
    s_ref = new_model(21, 0);
}
static void setup_stage_rm(void) { setup_stage(); MUST(rlhf_model_add_score_head(s_m, 0.02f, 5)); }
static long s_lines; /* metric lines received */
static void count_line(void *user, const char *json) { (void)user; (void)json; s_lines++; }
static rlhf_train_options stage_options(rlhf_train_options o) {
    o.metrics = count_line;
    o.batch_size = 2; o.micro_batch = 1; o.max_steps = 2; o.eval_every = 1; o.warmup_steps = 1; o.log_every = 1;
    o.out_dir = s_dir;
    o.seq_len = 0;
    return o;
}
static rlhf_result run_sft(void) {
    rlhf_train_options o = stage_options(rlhf_train_options_sft());
    o.pack = 1;
    return rlhf_sft_train(s_m, g_tok, g_sft, g_sft, &o, NULL, &s_err);
}
static rlhf_result run_pretrain(void) {
    rlhf_train_options o = stage_options(rlhf_train_options_sft());
    o.seq_len = 8;
    return rlhf_sft_train(s_m, g_tok, g_text, NULL, &o, NULL, &s_err);
}
static rlhf_result run_rm(void) {
    rlhf_train_options o = stage_options(rlhf_train_options_reward());
    return rlhf_reward_train(s_m, g_tok, g_pref, g_pref, &o, NULL, &s_err);
}
static rlhf_result run_dpo(void) {
    rlhf_train_options o = stage_options(rlhf_train_options_dpo());
    rlhf_dpo_config dc = rlhf_dpo_config_default();
    return rlhf_dpo_train(s_m, s_ref, g_tok, g_pref, g_pref, &dc, &o, NULL, &s_err);
}
static rlhf_result run_dpo_pre(void) {
    rlhf_train_options o = stage_options(rlhf_train_options_dpo());
    rlhf_dpo_config dc = rlhf_dpo_config_default();
    dc.precompute_ref = 1;
    o.out_dir = NULL;
    return rlhf_dpo_train(s_m, s_ref, g_tok, g_pref, NULL, &dc, &o, NULL, &s_err);
}
static rlhf_result run_kto(void) {
    rlhf_train_options o = stage_options(rlhf_train_options_dpo());
    rlhf_kto_config kc = rlhf_kto_config_default();
    return rlhf_kto_train(s_m, s_ref, g_tok, g_unpaired, g_unpaired, &kc, &o, NULL, &s_err);
}
static rlhf_result run_normalize(void) {
    float mean, sd;
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    return rlhf_reward_normalize_ex(s_m, s_ref, g_tok, g_prompts, 4, &sc, 4, 3, 0, &mean, &sd, NULL, &s_err);
}
static rlhf_result run_best_of_n(void) {
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_rng rng;
    int prompt[64], best[4], n_best, idx;
    size_t n;
    float scores[3];
    rlhf_result r;
    rlhf_message msg;
    msg.role = RLHF_ROLE_USER; msg.content.str = "rate this:"; msg.content.len = 10;
    rlhf_rng_seed(&rng, 2);
    r = rlhf_tokenizer_chat(g_tok, &msg, 1, 1, prompt, NULL, 64, &n);
    if (r == RLHF_OK)
        r = rlhf_best_of_n(s_ref, s_m, NULL, NULL, g_tok, prompt, (int)n, 3, 4, &sc, &rng, best, &n_best, scores, &idx);
    return r;
}

/* PPO, GRPO, RLOO: creation, one iteration, the run state saved and loaded */
static float count_five(void *user, const int *prompt, int n_prompt, const int *response, int n_response) {
    int i, c = 0;
    (void)user; (void)prompt; (void)n_prompt;
    for (i = 0; i < n_response; i++) c += response[i] == 5;
    return (float)c;
}
static rlhf_ppo_config ppo_config(void) {
    rlhf_ppo_config c = rlhf_ppo_config_default();
    c.policy = s_m; c.ref = s_ref; c.tokenizer = g_tok; c.prompts = g_prompts;
    c.estimator = s_est;
    if (s_est == RLHF_EST_GAE) {
        c.critic = s_critic; c.reward_model = s_rm;
        c.batch_size = 4; c.mini_batch = 2;
        c.ptx = g_text; c.ptx_coef = 0.1f; c.ema_decay = 0.9f; c.whiten_rewards = 1; c.adaptive_kl = 1;
    } else {
        c.score_fn = count_five;
        c.group_size = 2; c.batch_size = 4; c.mini_batch = 2;
    }
    c.ppo_epochs = 1; c.max_new_tokens = 4; c.log_samples = 1; c.seed = 5;
    c.metrics = count_line;
    c.policy_opt.lr = 1e-3f; c.critic_opt.lr = 1e-3f;
    return c;
}
static void setup_ppo_models(void) {
    s_m = new_model(31, 0);
    s_ref = new_model(31, 0);
    if (s_est == RLHF_EST_GAE) { s_critic = new_model(32, 1); s_rm = new_model(33, 1); }
}
static void setup_ppo_gae(void) { s_est = RLHF_EST_GAE; setup_ppo_models(); }
static void setup_ppo_grpo(void) { s_est = RLHF_EST_GRPO; setup_ppo_models(); }
static void setup_ppo_rloo(void) { s_est = RLHF_EST_RLOO; setup_ppo_models(); }
static rlhf_result run_ppo_create(void) {
    rlhf_ppo_config c = ppo_config();
    return rlhf_ppo_create(&s_ppo2, &c, &s_err);
}
static void make_ppo(void) {
    rlhf_ppo_config c = ppo_config();
    MUST(rlhf_ppo_create(&s_ppo, &c, &s_err));
}
static void setup_step_gae(void) { setup_ppo_gae(); make_ppo(); }
static void setup_step_grpo(void) { setup_ppo_grpo(); make_ppo(); }
static void setup_step_rloo(void) { setup_ppo_rloo(); make_ppo(); }
static rlhf_result run_ppo_step(void) {
    rlhf_ppo_stats st;
    return rlhf_ppo_step(s_ppo, &st, &s_err);
}
/* dir holds the state after one iteration; the trainer has run two */
static void setup_ppo_save(void) {
    s_dir = ROOT "/ppo";
    make_dir(s_dir); empty_dir(s_dir);
    setup_step_gae();
    MUST(run_ppo_step());
    MUST(rlhf_ppo_save(s_ppo, s_dir, &s_err));
    MUST(run_ppo_step());
}
static rlhf_result run_ppo_save(void) { return rlhf_ppo_save(s_ppo, ROOT "/ppo", &s_err); }
/* dir holds a saved state; a fresh trainer loads it */
static void setup_ppo_load(void) {
    setup_ppo_save();
    rlhf_ppo_free(s_ppo); s_ppo = NULL;
    make_ppo();
    s_dir = NULL; /* loading writes nothing when no save was interrupted */
}
static rlhf_result run_ppo_load(void) { return rlhf_ppo_load(s_ppo, ROOT "/ppo", &s_err); }

static const scenario SCENARIOS[] = {
    {"model_create", NULL, setup_none, run_model_create, NULL, teardown_all},
    {"model_load", NULL, setup_none, run_model_load, NULL, teardown_all},
    {"model_load_score_head", NULL, setup_none, run_rm_load, NULL, teardown_all},
    {"model_load_hf_dir", NULL, setup_none, run_hf_load, NULL, teardown_all},
    {"model_load_hf_reward", NULL, setup_none, run_hf_rm_load, NULL, teardown_all},
    {"model_load_hf_sharded", NULL, setup_none, run_hf_sharded_load, NULL, teardown_all},
    {"model_load_hf_hub_file", NULL, setup_none, run_hf_hub_load, NULL, teardown_all},
    {"model_load_hf_f16", NULL, setup_none, run_hf_f16_load, NULL, teardown_all},
    {"tokenizer_train", NULL, setup_none, run_tok_train, NULL, teardown_all},
    {"tokenizer_load", NULL, setup_none, run_tok_load, NULL, teardown_all},
    {"tokenizer_load_hf", NULL, setup_none, run_tok_load_hf, NULL, teardown_all},
    {"dataset_text_jsonl", NULL, setup_data_0, run_data_load, NULL, teardown_all},
    {"dataset_sft", NULL, setup_data_1, run_data_load, NULL, teardown_all},
    {"dataset_preference", NULL, setup_data_2, run_data_load, NULL, teardown_all},
    {"dataset_prompts", NULL, setup_data_3, run_data_load, NULL, teardown_all},
    {"dataset_unpaired", NULL, setup_data_4, run_data_load, NULL, teardown_all},
    {"dataset_plain_text", NULL, setup_data_5, run_data_load, NULL, teardown_all},
    {"train_step", NULL, setup_model, run_train_step, run_train_step, teardown_all},
    {"generate", NULL, setup_model, run_generate, run_generate, teardown_all},
    {"model_save", ROOT "/save", setup_save, run_model_save, run_model_save, teardown_all},
    {"tokenizer_save", ROOT "/savetok", setup_save, run_tok_save, run_tok_save, teardown_all},
    {"export_hf", ROOT "/export", setup_export, run_export, run_export, teardown_all},
    {"sft_train", ROOT "/stage", setup_stage, run_sft, run_sft, teardown_all},
    {"pretrain", ROOT "/stage", setup_stage, run_pretrain, run_pretrain, teardown_all},
    {"reward_train", ROOT "/stage", setup_stage_rm, run_rm, run_rm, teardown_all},
    {"dpo_train", ROOT "/stage", setup_stage, run_dpo, run_dpo, teardown_all},
    {"dpo_train_precompute", NULL, setup_stage, run_dpo_pre, run_dpo_pre, teardown_all},
    {"kto_train", ROOT "/stage", setup_stage, run_kto, run_kto, teardown_all},
    {"reward_normalize", NULL, setup_stage_rm, run_normalize, run_normalize, teardown_all},
    {"best_of_n", NULL, setup_stage_rm, run_best_of_n, run_best_of_n, teardown_all},
    {"ppo_create", NULL, setup_ppo_gae, run_ppo_create, NULL, teardown_all},
    {"grpo_create", NULL, setup_ppo_grpo, run_ppo_create, NULL, teardown_all},
    {"ppo_step", NULL, setup_step_gae, run_ppo_step, run_ppo_step, teardown_all},
    {"grpo_step", NULL, setup_step_grpo, run_ppo_step, run_ppo_step, teardown_all},
    {"rloo_step", NULL, setup_step_rloo, run_ppo_step, run_ppo_step, teardown_all},
    {"ppo_save", ROOT "/ppo", setup_ppo_save, run_ppo_save, run_ppo_save, teardown_all},
    {"ppo_load", NULL, setup_ppo_load, run_ppo_load, run_ppo_load, teardown_all},
};
#define N_SCENARIOS (int)(sizeof SCENARIOS / sizeof SCENARIOS[0])

/* The stages clear a stale output directory's checkpoints? No: each run
   writes last/best; the "before" snapshot is taken after setup, so a failed
   run must leave the (empty) directory empty or as setup left it. A stage
   that fails after a checkpoint was written leaves that whole checkpoint,
   which is not torn: such directories are checked file by file for being
   complete (loadable) instead of unchanged. */
static int dir_files_load(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    int ok = 1;
    if (!d) return 0;
    while ((e = readdir(d)) != NULL) {
        rlhf_model *m = NULL;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!strstr(e->d_name, ".safetensors") || strstr(e->d_name, ".tmp")) { ok = 0; fprintf(stderr, "  stray %s\n", p); continue; }
        if (rlhf_model_load(&m, p) != RLHF_OK) { ok = 0; fprintf(stderr, "  torn %s\n", p); }
        rlhf_model_free(m);
    }
    closedir(d);
    return ok;
}
static int is_stage_dir(const char *dir) { return dir && !strcmp(dir, ROOT "/stage"); }

/* n = 1, 2, ...: returns the number of allocation points the call has */
static long sweep_alloc(const scenario *s) {
    long n;
    for (n = 1;; n++) {
        long live0 = g_live;
        rlhf_result r;
        snap before = {NULL, 0, 0}, after;
        int hit;
        s_err.message[0] = 0;
        s->setup();
        if (s->dir) before = snapshot(s->dir);
        g_calls = 0; g_fail_at = n;
        r = s->run();
        g_fail_at = 0;
        hit = g_calls >= n;
        if (!hit) {
            CHECK(r == RLHF_OK, "%s: the run without a failure returned %s (%s)", s->name, rlhf_result_string(r), s_err.message);
            s->teardown();
            CHECK(g_live == live0, "%s: %ld blocks leaked by a successful run", s->name, g_live - live0);
            free(before.buf);
            return n - 1;
        }
        CHECK(r == RLHF_ERR_OUT_OF_MEMORY, "%s: allocation %ld failed, the call returned %s (%s)", s->name, n,
              rlhf_result_string(r), s_err.message);
        CHECK(created_null(), "%s: allocation %ld failed, *out is not NULL", s->name, n);
        if (s->dir && is_stage_dir(s->dir)) CHECK(dir_files_load(s->dir), "%s: allocation %ld: %s holds a torn or stray file", s->name, n, s->dir);
        else if (s->dir) {
            after = snapshot(s->dir);
            CHECK(snap_same(&before, &after), "%s: allocation %ld failed and %s changed", s->name, n, s->dir);
            free(after.buf);
        }
        free(before.buf);
        if (s->again) {
            r = s->again();
            CHECK(r == RLHF_OK, "%s: after allocation %ld failed, the call again returned %s (%s)", s->name, n,
                  rlhf_result_string(r), s_err.message);
        }
        s->teardown();
        CHECK(g_live == live0, "%s: allocation %ld failed: %ld blocks leaked", s->name, n, g_live - live0);
        if (g_fail > 20) { fprintf(stderr, "too many failures\n"); exit(1); }
    }
}

/* ---- a full disk ----------------------------------------------------------- */
static void set_fsize(rlim_t limit) {
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = limit;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) { fprintf(stderr, "setrlimit failed\n"); exit(1); }
}
/* The save under limits from 0 bytes up, in steps of a 30th of its largest
   file (and each of the first 16 bytes), until one lets it through: each
   refused save returns RLHF_ERR_IO and leaves dir byte for byte as it was.
   Returns the number of limits tried. */
static long sweep_disk(const scenario *s) {
    struct rlimit old;
    long big, limit, step, tried = 0;
    /* the size of what the save writes: run it once without a limit */
    s->setup();
    MUST(s->run());
    big = largest_file(s->dir);
    s->teardown();
    step = big / 30 > 1 ? big / 30 : 1;
    getrlimit(RLIMIT_FSIZE, &old);
    for (limit = 0; limit <= big + step; limit += limit < 16 ? 1 : step) {
        long live0 = g_live;
        rlhf_result r;
        snap before, after;
        s->setup();
        before = snapshot(s->dir);
        set_fsize((rlim_t)limit);
        r = s->run();
        set_fsize(old.rlim_cur);
        tried++;
        if (r == RLHF_OK) {
            CHECK(limit >= big, "%s: saved under a limit of %ld bytes, below its largest file's %ld", s->name, limit, big);
            s->teardown();
            free(before.buf);
            return tried;
        }
        CHECK(r == RLHF_ERR_IO, "%s: limit %ld bytes: returned %s (%s)", s->name, limit, rlhf_result_string(r), s_err.message);
        if (is_stage_dir(s->dir)) CHECK(dir_files_load(s->dir), "%s: limit %ld: %s holds a torn or stray file", s->name, limit, s->dir);
        else {
            after = snapshot(s->dir);
            CHECK(snap_same(&before, &after), "%s: limit %ld bytes: %s changed", s->name, limit, s->dir);
            free(after.buf);
        }
        free(before.buf);
        r = s->again();
        CHECK(r == RLHF_OK, "%s: after a full disk, the call again returned %s (%s)", s->name, rlhf_result_string(r), s_err.message);
        s->teardown();
        CHECK(g_live == live0, "%s: limit %ld: %ld blocks leaked", s->name, limit, g_live - live0);
        if (g_fail > 20) { fprintf(stderr, "too many failures\n"); exit(1); }
    }
    CHECK(0, "%s: still refused above its size (%ld bytes)", s->name, big);
    return tried;
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    long total = 0, total_disk = 0, live0;
    int i, ran = 0;
    clock_t t0 = clock();
    signal(SIGXFSZ, SIG_IGN);
    live0 = g_live;
    shared_inputs();
    printf("allocation failure at every point (RLHF_MALLOC fails its n-th call):\n");
    for (i = 0; i < N_SCENARIOS; i++) {
        const scenario *s = &SCENARIOS[i];
        long n;
        int fails = g_fail;
        if (only && !strstr(s->name, only)) continue;
        n = sweep_alloc(s);
        total += n;
        ran++;
        printf("  %-24s %5ld allocation points%s\n", s->name, n, g_fail > fails ? "  FAILED" : "");
        fflush(stdout);
    }
    printf("  total: %ld allocation points in %d scenarios\n", total, ran);
    printf("a full disk (RLIMIT_FSIZE at byte counts across each save):\n");
    for (i = 0; i < N_SCENARIOS; i++) {
        const scenario *s = &SCENARIOS[i];
        long n;
        int fails = g_fail;
        if (!s->dir || (only && !strstr(s->name, only))) continue;
        n = sweep_disk(s);
        total_disk += n;
        printf("  %-24s %5ld limits%s\n", s->name, n, g_fail > fails ? "  FAILED" : "");
        fflush(stdout);
    }
    printf("  total: %ld write-failure points\n", total_disk);
    free_shared();
    CHECK(g_live == live0, "%ld blocks still allocated at the end", g_live - live0);
    printf("%s (%.1f s)\n", g_fail ? "test_oom FAILED" : "test_oom ok", (double)(clock() - t0) / CLOCKS_PER_SEC);
    return g_fail ? 1 : 0;
}
