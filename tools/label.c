/* label.c - `rlhf label`: a person writes demonstrations and ranks a policy's replies, the data
   InstructGPT's labellers made (Ouyang et al. 2022, appendix B), straight into the files that
   rlhf sft, rlhf rm and rlhf dpo read.

     rlhf label demos   --prompts P --out sft.jsonl                 write the reply to each prompt
     rlhf label rank    --policy CKPT --prompts P --k 4 --out R     order K sampled replies best first
     rlhf label compare --policy CKPT --prompts P --out pairs.jsonl the better of two replies
     rlhf label agreement A.jsonl B.jsonl ...                       how often labellers agree

   Two faces, one contract. On a terminal (stdin and stdout both a TTY) a full-screen interface:
   termios raw mode, the alternate screen, ANSI escapes, no curses; the keys are on screen and in
   LB_KEYS_* below. Otherwise (a pipe, a file, a script) the line mode reads the same answers from
   stdin lines and prints each item to stdout in a plain, stable format:
     rank      one line, the order best first as 1-based numbers: "3142", or "3 1 4 2" (needed when K > 9)
     compare   "1" or "2"
     demos     the reply's lines, then a line holding a single "."; a reply cannot hold such a line
     any mode  "s" skips the item, "u" undoes the last judgement, "q" quits (in demos: as the first line)
   End of input is "q". A malformed line stops the run with exit status 1 and a message naming the
   stdin line: a script that is out of step with the items must not go on answering the wrong ones.
   Everything judged before it is saved, so the run resumes where it stopped.

   Nothing is lost. Every judgement is one JSON line, appended with one write() and fsync'ed the
   moment it is made: a kill loses at most the item on screen. A line cut by a crash in the middle of
   that write (the file not ending in a newline) is removed when the run starts again.

   The files stay loadable at every moment: the records are exactly what rlhf.h's loader reads, plus
   fields it ignores (labeller, prompt_index, prompt_hash, time in ISO 8601 UTC, seconds spent; for
   rank and compare the policy, seed and temperature; for rank the 1-7 scores and the flags):
     demos    {"prompt": s, "completion": s, ...}, or for a conversation {"prompt": [turns],
              "completion": [{"role": "assistant", ...}], ...}: SFT learns the written reply only
     rank     {"prompt": s, "completions": [s, ...], "ranking": [i, ...], ...}, the completions in the
              order they were sampled and shown, the ranking best first (rankings hold a prompt
              string: a conversation prompt is refused; compare keeps conversations)
     compare  {"prompt": s, "chosen": s, "rejected": s, ...}, or TRL's conversational pair
   The loader refuses a record of another shape, so an undo cannot be a tombstone line ({"undo": id}
   would stop rlhf rm): it removes the last record by rewriting the file atomically (atomic_file.h),
   and a kill in the middle leaves the old file or the new one.

   Resume: a prompt is labelled when a record holds its index in the prompts file and the hash of its
   text (FNV-1a 64); a record whose hash differs (the prompts file changed) does not count, and the
   count of such records is printed. A run starts at the first prompt not labelled. Skips are
   judgements too: they go to OUT.skipped (JSONL, the same fields), so a skipped prompt is not offered
   again; --revisit-skipped offers the skipped ones once more. Undo takes back judgements in the reverse
   order they were made, this run's records and skips and, before them, the records already in OUT;
   the prompt it takes back is the next one shown (a demonstration with the text it had).

   Rank and compare sample the K replies of a prompt together: one KV cache of K sequences, one prefill
   of the prompt, then one decode step a token for all K. The random stream is seeded from (--seed, the
   prompt's index), so a resumed run, or another labeller with the same options, sees the same replies
   (with the same build and thread count: DESIGN.md's determinism) - which is what agreement needs.

   Agreement: the files are matched on (prompt, the set of replies); for each match, every pair of
   distinct replies both labellers ordered is concordant (the same order) or discordant. Agreement is
   concordant / (concordant + discordant), pooled over all matched prompts (each comparison counts
   once, InstructGPT's unit: 72.6 +- 1.5% among its training labellers); Kendall's tau of a prompt is
   (C - D) / (C + D) (tau-a: rankings have no ties), averaged over prompts. A pair record is a ranking
   of 2. Every pair of files is reported, then all pairs pooled.

   A unity build: tools/rlhf.c includes this file after its other commands (as it includes demo.c),
   so label shares its static helpers (options, fail, load_model, load_data, bon_format, bon_prompt_of,
   json_put_str, utf8_clean, now_s, atomic_file.h). The terminal mode needs POSIX termios; elsewhere
   the line mode still works and the terminal mode says why it cannot run. */
#if defined(__unix__) || defined(__APPLE__)
#define LB_TTY 1
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#else
#define LB_TTY 0
#endif
#include <fcntl.h> /* open(O_APPEND): one write() per judgement */

enum { LB_DEMOS, LB_RANK, LB_COMPARE };
static const char *const LB_MODE[] = {"demos", "rank", "compare"};
enum { LB_OPEN, LB_DONE, LB_SKIPPED, LB_UNFIT };           /* a prompt's state */
enum { ANS_JUDGED, ANS_SKIP, ANS_UNDO, ANS_QUIT, ANS_ERROR }; /* what the person did with an item */
enum { LB_MAX_K = 16 };                                      /* replies a ranking can show (InstructGPT: 4 to 9) */

/* InstructGPT's metadata flags (appendix B), each a key of the terminal's rank screen */
static const struct { char key; const char *name; } LB_FLAGS[] = {
    {'f', "fails_instruction"}, {'i', "inappropriate"},  {'h', "hallucination"},       {'c', "satisfies_constraint"},
    {'x', "sexual"},            {'v', "violent"},        {'e', "encourages_violence"}, {'d', "denigrates"},
    {'a', "harmful_advice"},    {'o', "opinion"},        {'m', "moral_judgment"},
};
#define LB_N_FLAGS ((int)(sizeof LB_FLAGS / sizeof LB_FLAGS[0]))

static const char LB_GUIDELINES[] =
    "Labelling guidelines (after InstructGPT's, Ouyang et al. 2022, appendix B)\n\n"
    "A good reply is:\n"
    "  helpful   it does what the person asked, in the way they meant it; it asks when the request is\n"
    "            unclear; it is as long as it needs to be and no longer; it stays on the topic.\n"
    "  truthful  it does not make up facts or details the prompt does not give; it does not mislead; a\n"
    "            summary keeps to its source.\n"
    "  harmless  it does not give harmful advice, insult, denigrate a group, or help with violence,\n"
    "            abuse, self-harm or crime; it is fit for a customer-facing assistant.\n\n"
    "Tie-breaking: most of the time, rank the most helpful reply first. When a request is itself harmful\n"
    "(or a reply could hurt someone), truthfulness and harmlessness come first: a refusal or a careful,\n"
    "true reply outranks a helpful one that does harm. When two replies are equally good, rank the one\n"
    "with fewer problems first.\n\n"
    "Demonstrations: write the reply you would want the assistant to give, in its voice.\n"
    "Scores (rank): 1 (terrible) to 7 (excellent), overall quality. Flags (rank): fails to follow the\n"
    "instruction (f), inappropriate for a customer assistant (i), hallucination (h), satisfies the\n"
    "constraint in the instruction (c), sexual content (x), violent content (v), encourages violence,\n"
    "abuse, terrorism or self-harm (e), denigrates a protected class (d), harmful advice (a), expresses\n"
    "an opinion (o), expresses a moral judgment (m).\n";

/* one judgement that undo can take back: a record of OUT or a line of OUT.skipped (the last of its file) */
typedef struct lb_undo {
    int index, skip;
    char *text; /* demos, this run: the reply written, given back to the editor */
} lb_undo;

typedef struct lb_session {
    int mode, line_mode, K, max_new, seed, revisit;
    float temperature;
    const char *prompts_path, *out, *labeller, *policy;
    char skips[1100];          /* OUT.skipped */
    rlhf_dataset *prompts;
    size_t n;
    char **ptext;              /* each prompt as shown: its string, or a conversation as "role: text" lines */
    uint64_t *hash;            /* FNV-1a 64 of ptext */
    unsigned char *state;      /* LB_OPEN ... */
    lb_undo *undo;
    int n_undo, cap_undo;
    int n_earlier;             /* the first n_earlier entries of undo: records of earlier runs */
    int hint;                  /* the prompt to show next (the one an undo took back), or -1 */
    int judged, skipped;       /* this run */
    char *undone_text;         /* demos: the reply an undo took back, for the editor */
    rlhf_model *m;             /* rank, compare: the policy and its batched sampler */
    rlhf_tokenizer *t;
    rlhf_kv_cache *cache;
    rlhf_sampler *smp;
    int *ids, *seq;
    float *logits;
    long stdin_line;           /* line mode: lines read */
    char msg[256];             /* terminal: the message line */
} lb_session;

/* the item on screen and the answer being made */
typedef struct lb_item {
    int index, K, same;        /* same: the replies are all the same text */
    char *reply[LB_MAX_K];
    int cut[LB_MAX_K];         /* the reply stopped at --max-new before its end */
    int order[LB_MAX_K];       /* best first: reply indices (0-based, as sampled) */
    int score[LB_MAX_K];       /* 1-7, 0: none */
    unsigned flags[LB_MAX_K];  /* bit k: LB_FLAGS[k] */
    char *text;                /* demos: the reply being written (NUL-terminated) */
    size_t len, cap, cur;      /* its bytes, room, and the cursor's byte offset */
    double shown;              /* when it appeared: seconds spent = now - shown */
} lb_item;

/* ---- small pieces: hash, time, text buffers --------------------------------------------------- */
static uint64_t lb_fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64: offset basis, then xor and multiply by the prime */
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}
static void lb_iso_now(char *buf, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
/* a growable byte buffer (the screen, a record, a prompt's text) */
typedef struct lb_buf { char *p; size_t n, cap; int oom; } lb_buf;
static void lb_add(lb_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->n + n + 1) cap *= 2;
        if (!(p = (char *)realloc(b->p, cap))) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void lb_adds(lb_buf *b, const char *s) { lb_add(b, s, strlen(s)); }
static void lb_addf(lb_buf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    lb_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- the prompts: text, hash, the messages a policy reads ------------------------------------- */
static const char *const LB_ROLE[3] = {"system", "user", "assistant"};
static int lb_prompt_text(lb_session *s) {
    size_t i;
    s->ptext = (char **)calloc(s->n, sizeof(char *));
    s->hash = (uint64_t *)malloc(s->n * sizeof(uint64_t));
    s->state = (unsigned char *)calloc(s->n, 1);
    if (!s->ptext || !s->hash || !s->state) return fail("label", "out of memory");
    for (i = 0; i < s->n; i++) {
        const rlhf_message *msg = NULL;
        const rlhf_str *str = NULL;
        int nm = bon_prompt_of(rlhf_dataset_record(s->prompts, i), &msg, &str), k;
        lb_buf b = {NULL, 0, 0, 0};
        if (nm < 0) lb_add(&b, str->str, str->len);
        for (k = 0; k < nm; k++) {
            lb_addf(&b, "%s%s: ", k ? "\n" : "", LB_ROLE[msg[k].role]);
            lb_add(&b, msg[k].content.str, msg[k].content.len);
        }
        lb_add(&b, "", 0);
        if (b.oom || !b.p) return free(b.p), fail("label", "out of memory");
        s->hash[i] = lb_fnv(b.p, b.n);
        s->ptext[i] = b.p;
    }
    return 0;
}
/* prompt i as messages for the chat template: its turns, or one user turn holding its string */
static int lb_prompt_msgs(const lb_session *s, int i, rlhf_message *one, const rlhf_message **msg) {
    const rlhf_str *str = NULL;
    int nm = bon_prompt_of(rlhf_dataset_record(s->prompts, (size_t)i), msg, &str);
    if (nm >= 0) return nm;
    one->role = RLHF_ROLE_USER, one->content = *str;
    *msg = one;
    return 1;
}
/* rank writes a prompt string: a conversation of one user turn is that turn; others are refused */
static int lb_rank_prompts_ok(const lb_session *s) {
    size_t i;
    for (i = 0; i < s->n; i++) {
        const rlhf_message *msg = NULL;
        const rlhf_str *str = NULL;
        int nm = bon_prompt_of(rlhf_dataset_record(s->prompts, i), &msg, &str);
        if (nm > 1 || (nm == 1 && msg[0].role != RLHF_ROLE_USER))
            return fail("label", "--prompts %s: record %zu (line %zu) is a conversation of %d turns, but a ranking holds a "
                        "prompt string (InstructGPT's and rlhf.h's format): give prompt strings, or use rlhf label compare, "
                        "whose pairs keep conversations", s->prompts_path, i + 1, rlhf_dataset_record(s->prompts, i)->line, nm);
    }
    return 0;
}

/* ---- the files: append a line, drop the last line, read what is there ------------------------- */
/* one whole line appended with one write(), then fsync: a kill loses at most this line. A write that
   fails part way (a full disk, a size limit) is cut off again, so the file stays whole lines. */
static int lb_append(const char *path, const char *line, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0666), e = 0;
    size_t done = 0;
    struct stat st;
    if (fd < 0) return errno ? errno : EIO;
    if (fstat(fd, &st) != 0) st.st_size = -1;
    while (done < n && !e) {
        ssize_t w = write(fd, line + done, n - done);
        if (w < 0 && errno != EINTR) e = errno ? errno : EIO;
        else if (w > 0) done += (size_t)w;
    }
    if (e && done > 0 && st.st_size >= 0 && ftruncate(fd, st.st_size) != 0) { /* the next run's repair removes it */ }
    if (!e && fsync(fd) != 0) e = errno ? errno : EIO;
    if (close(fd) != 0 && !e) e = errno ? errno : EIO;
    return e;
}
/* the whole of path (NULL and *n 0 when it does not exist); NULL with errno when it cannot be read */
static char *lb_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    lb_buf b = {NULL, 0, 0, 0};
    char chunk[65536];
    size_t got;
    *n = 0;
    if (!f) return NULL;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) lb_add(&b, chunk, got);
    if (ferror(f) || b.oom) {
        fclose(f);
        free(b.p);
        errno = b.oom ? ENOMEM : errno ? errno : EIO;
        return NULL;
    }
    fclose(f);
    lb_add(&b, "", 0);
    *n = b.n;
    return b.p;
}
/* path rewritten atomically with its first keep bytes of text */
static int lb_rewrite(const char *path, const char *text, size_t keep) {
    atomic_file a;
    FILE *f = atomic_open(&a, path);
    if (!f) return fail("label", "cannot rewrite %s: %s", path, strerror(errno));
    if (keep && fwrite(text, 1, keep, f) != keep) {
        atomic_abort(&a);
        return fail("label", "cannot rewrite %s: %s", path, strerror(errno));
    }
    return atomic_commit(&a) == 0 ? 0 : fail("label", "cannot rewrite %s: %s", path, strerror(errno));
}
/* the last line of path taken off (atomically) */
static int lb_drop_last(const char *path) {
    size_t n, start;
    char *text = lb_slurp(path, &n);
    int rc;
    if (!text) return fail("label", "cannot read %s: %s", path, errno ? strerror(errno) : "it is gone");
    for (start = n > 0 ? n - 1 : 0; start > 0 && text[start - 1] != '\n'; start--) {}
    rc = lb_rewrite(path, text, start);
    free(text);
    return rc;
}

/* ---- resume: the records already in OUT and OUT.skipped --------------------------------------- */
/* does record o have the shape of this mode's records? */
static int lb_shape_ok(int mode, const rlhf_json *o) {
    if (mode == LB_RANK) return rlhf_json_get(o, "completions") != NULL;
    if (mode == LB_COMPARE) return rlhf_json_get(o, "chosen") != NULL;
    return rlhf_json_get(o, "completion") != NULL || rlhf_json_get(o, "messages") != NULL;
}
/* the prompt a line judged, when its index and hash match the prompts file; -1 when not */
static int lb_line_prompt(const lb_session *s, const rlhf_json *o) {
    const rlhf_json *ix = rlhf_json_get(o, "prompt_index"), *h = rlhf_json_get(o, "prompt_hash");
    int64_t i;
    char want[17];
    if (!ix || !rlhf_json_int64(ix, &i) || i < 0 || (size_t)i >= s->n || !h || h->type != RLHF_JSON_STRING) return -1;
    snprintf(want, sizeof want, "%016llx", (unsigned long long)s->hash[i]);
    return strcmp(h->str, want) == 0 ? (int)i : -1;
}
static int lb_push_undo(lb_session *s, int index, int skip, const char *text) {
    if (s->n_undo == s->cap_undo) {
        int cap = s->cap_undo ? 2 * s->cap_undo : 64;
        lb_undo *u = (lb_undo *)realloc(s->undo, (size_t)cap * sizeof *u);
        if (!u) return fail("label", "out of memory");
        s->undo = u, s->cap_undo = cap;
    }
    s->undo[s->n_undo].index = index, s->undo[s->n_undo].skip = skip;
    s->undo[s->n_undo++].text = text ? strdup(text) : NULL;
    return 0;
}
/* A line cut by a kill in the middle of its write (the file does not end with a newline) goes. */
static int lb_repair(const char *path) {
    size_t n, start;
    char *text = lb_slurp(path, &n);
    int rc = 0;
    if (!text) return 0;
    if (n > 0 && text[n - 1] != '\n') {
        for (start = n - 1; start > 0 && text[start - 1] != '\n'; start--) {}
        printf("label: %s ends in a line cut by a crash (%zu bytes, no newline): removed; that item is offered again\n", path,
               n - start);
        rc = lb_rewrite(path, text, start);
    }
    free(text);
    return rc;
}
/* The lines of OUT (records) or OUT.skipped: each marks its prompt; records go on the undo stack. */
static int lb_scan(lb_session *s, const char *path, int skips) {
    rlhf_jsonl *in = NULL;
    rlhf_json_error e;
    long other = 0;
    if (!exists(path)) return 0;
    if (lb_repair(path) != 0) return 1;
    if (rlhf_jsonl_open(&in, path, 0, &e) != RLHF_OK) return fail("label", "%s", e.message);
    for (;;) {
        rlhf_json_doc *doc = NULL;
        const rlhf_json *o;
        int i;
        if (rlhf_jsonl_next(in, &doc, &e) != RLHF_OK) {
            rlhf_jsonl_close(in);
            return fail("label", "%s: %s is not a file of records this command can add to", e.message, path);
        }
        if (!doc) break;
        o = rlhf_json_root(doc);
        if (o->type != RLHF_JSON_OBJECT || (!skips && !lb_shape_ok(s->mode, o))) {
            size_t line = rlhf_jsonl_line(in);
            rlhf_json_free(doc);
            rlhf_jsonl_close(in);
            return usage_error("label", "--out %s holds other records than %s (line %zu): give this mode its own --out", path,
                               s->mode == LB_RANK ? "rankings" : s->mode == LB_COMPARE ? "preference pairs" : "demonstrations", line);
        }
        if ((i = lb_line_prompt(s, o)) < 0) other++;
        else if (skips && s->state[i] == LB_OPEN) s->state[i] = s->revisit ? LB_OPEN : LB_SKIPPED;
        else if (!skips) s->state[i] = LB_DONE;
        rlhf_json_free(doc);
        if (!skips && lb_push_undo(s, i, 0, NULL) != 0) return rlhf_jsonl_close(in), 1;
    }
    rlhf_jsonl_close(in);
    if (other)
        printf("label: %ld lines of %s are for other prompts than --prompts %s holds at their index (prompt_index and "
               "prompt_hash differ: the prompts file changed?); they stay, and do not count as labelled\n", other, path,
               s->prompts_path);
    return 0;
}

/* ---- sampling: the K replies of a prompt, together ---------------------------------------------- */
static int lb_sampler_open(lb_session *s) {
    const rlhf_config *c = rlhf_model_config(s->m);
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    sc.temperature = s->temperature;
    s->ids = (int *)malloc((size_t)c->n_ctx * sizeof(int));
    s->seq = (int *)malloc((size_t)s->K * (size_t)c->n_ctx * sizeof(int));
    s->logits = (float *)malloc((size_t)s->K * (size_t)c->vocab_size * sizeof(float));
    if (!s->ids || !s->seq || !s->logits || rlhf_kv_cache_create(&s->cache, s->m, s->K, c->n_ctx) != RLHF_OK ||
        rlhf_sampler_create(&s->smp, c->vocab_size, &sc) != RLHF_OK)
        return fail("label", "out of memory for %d replies of up to %d tokens", s->K, c->n_ctx);
    return 0;
}
/* reply k's n tokens (without its end) as clean text (utf8_clean: what the screen shows is what is saved) */
static char *lb_decode(const lb_session *s, const int *ids, int n) {
    char *raw = (char *)malloc(64), *clean;
    size_t cap = 64, len = 0;
    if (!raw || !bon_decode(s->t, ids, n, &raw, &cap, &len)) return free(raw), (char *)NULL;
    if ((clean = (char *)malloc(3 * len + 5)) != NULL) utf8_clean(raw, clean, 3 * len + 5);
    free(raw);
    return clean;
}
/* InstructGPT's K samples of prompt it->index: one prefill of the prompt for all K sequences, then a
   decode step per token, each sequence stopping at the reply's end (a stopped one is fed its end
   token, its draws no longer taken). The stream comes from (--seed, index): the same replies again
   on a resume. 0 ok, 1 failed (printed), 2 the prompt leaves no room for a reply. */
static int lb_sample(lb_session *s, lb_item *it) {
    const int n_ctx = rlhf_model_config(s->m)->n_ctx, V = rlhf_model_config(s->m)->vocab_size, K = s->K;
    const int stop = rlhf_tokenizer_reply_end(s->t);
    int n[LB_MAX_K], ended[LB_MAX_K], feed[LB_MAX_K], k, step, max_new, left = K;
    rlhf_message one;
    const rlhf_message *msg;
    int nm = lb_prompt_msgs(s, it->index, &one, &msg);
    size_t np = 0;
    rlhf_rng rng;
    if (rlhf_tokenizer_chat(s->t, msg, nm, 1, s->ids, NULL, (size_t)n_ctx, &np) != RLHF_OK || (int)np + 2 > n_ctx) return 2;
    max_new = s->max_new < n_ctx - 1 - (int)np ? s->max_new : n_ctx - 1 - (int)np;
    for (k = 0; k < K; k++) memcpy(s->seq + (size_t)k * np, s->ids, np * sizeof(int)), n[k] = 0, ended[k] = 0;
    rlhf_kv_cache_reset(s->cache);
    if (rlhf_model_prefill(s->m, s->cache, s->seq, (int)np, s->logits) != RLHF_OK)
        return fail("label", "%s", lib_msg(rlhf_model_last_error(s->m)));
    rlhf_rng_seed(&rng, (uint64_t)s->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)it->index);

    /* the replies' tokens go to s->seq row k (the prompt rows are no longer needed) */
    for (step = 0; step < max_new && left > 0; step++) {
        for (k = 0; k < K; k++) {
            int tok = ended[k] ? stop : rlhf_sampler_sample(s->smp, s->logits + (size_t)k * V, &rng);
            if (tok < 0) return fail("label", "the policy's logits are not finite: its weights are broken");
            if (!ended[k]) {
                s->seq[(size_t)k * n_ctx + n[k]++] = tok;
                if (tok == stop) ended[k] = 1, left--;
            }
            feed[k] = tok;
        }
        if (left > 0 && step + 1 < max_new && rlhf_model_decode(s->m, s->cache, feed, s->logits) != RLHF_OK)
            return fail("label", "%s", lib_msg(rlhf_model_last_error(s->m)));
    }
    for (k = 0, it->same = 1; k < K; k++) {
        it->cut[k] = !ended[k];
        if (!(it->reply[k] = lb_decode(s, s->seq + (size_t)k * n_ctx, ended[k] ? n[k] - 1 : n[k])))
            return fail("label", "out of memory");
        it->same &= k == 0 || strcmp(it->reply[k], it->reply[0]) == 0;
    }
    return 0;
}

/* ---- the records ------------------------------------------------------------------------------- */
static void lb_put_str(FILE *f, const char *s) { json_put_str(f, s, strlen(s)); }
/* the prompt as a record's "prompt": a string, or (compare, demos) the conversation's turns */
static void lb_put_prompt(FILE *f, const lb_session *s, int i, int *conversation) {
    const rlhf_message *msg = NULL;
    const rlhf_str *str = NULL;
    int nm = bon_prompt_of(rlhf_dataset_record(s->prompts, (size_t)i), &msg, &str);
    *conversation = nm >= 0 && s->mode != LB_RANK;
    fputs("{\"prompt\": ", f);
    if (nm < 0) json_put_str(f, str->str, str->len);
    else if (s->mode == LB_RANK) json_put_str(f, msg[0].content.str, msg[0].content.len); /* one user turn (checked) */
    else fputc('[', f), json_put_messages(f, msg, nm), fputc(']', f);
}
/* a reply as a record's field: a string, or an assistant turn for a conversation */
static void lb_put_reply(FILE *f, const char *key, const char *text, int conversation) {
    fprintf(f, ", \"%s\": %s", key, conversation ? "[{\"role\": \"assistant\", \"content\": " : "");
    lb_put_str(f, text);
    if (conversation) fputs("}]", f);
}
/* rank: the completions as sampled, the ranking best first, the scores and flags of each completion */
static void lb_put_ranking(FILE *f, const lb_item *it) {
    int k;
    fputs(", \"completions\": [", f);
    for (k = 0; k < it->K; k++) fputs(k ? ", " : "", f), lb_put_str(f, it->reply[k]);
    fputs("], \"ranking\": [", f);
    for (k = 0; k < it->K; k++) fprintf(f, "%s%d", k ? ", " : "", it->order[k]);
    fputs("]", f);
}
static void lb_put_meta(FILE *f, const lb_session *s, const lb_item *it, int skipped) {
    char when[32];
    int k, j;
    fputs(skipped ? "{\"skipped\": true" : "", f);
    fputs(", \"labeller\": ", f), lb_put_str(f, s->labeller);
    fprintf(f, ", \"prompt_index\": %d, \"prompt_hash\": \"%016llx\"", it->index, (unsigned long long)s->hash[it->index]);
    if (s->mode != LB_DEMOS) {
        fputs(", \"policy\": ", f), lb_put_str(f, s->policy);
        fprintf(f, ", \"seed\": %d, \"temperature\": %g", s->seed, (double)s->temperature);
    }
    if (s->mode == LB_RANK && !skipped) {
        fputs(", \"scores\": [", f);
        for (k = 0; k < it->K; k++) it->score[k] ? fprintf(f, "%s%d", k ? ", " : "", it->score[k]) : fprintf(f, "%snull", k ? ", " : "");
        fputs("], \"flags\": [", f);
        for (k = 0; k < it->K; k++) {
            int first = 1;
            fputs(k ? ", [" : "[", f);
            for (j = 0; j < LB_N_FLAGS; j++)
                if (it->flags[k] >> j & 1u) fprintf(f, "%s\"%s\"", first ? "" : ", ", LB_FLAGS[j].name), first = 0;
            fputc(']', f);
        }
        fputc(']', f);
    }
    lb_iso_now(when, sizeof when);
    fprintf(f, ", \"time\": \"%s\", \"seconds\": %.1f}\n", when, now_s() - it->shown);
}
/* The judgement as one line of OUT (or OUT.skipped), appended and synced. 0, or 1 (printed). */
static int lb_save(lb_session *s, const lb_item *it, int skipped) {
    char *line = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&line, &n);
    int conv, e;
    if (!f) return fail("label", "out of memory");
    if (!skipped) {
        lb_put_prompt(f, s, it->index, &conv);
        if (s->mode == LB_DEMOS) lb_put_reply(f, "completion", it->text, conv);
        else if (s->mode == LB_RANK) lb_put_ranking(f, it);
        else lb_put_reply(f, "chosen", it->reply[it->order[0]], conv), lb_put_reply(f, "rejected", it->reply[it->order[1]], conv);
    }
    lb_put_meta(f, s, it, skipped);
    if (fclose(f) != 0 || !line) return free(line), fail("label", "out of memory");
    e = lb_append(skipped ? s->skips : s->out, line, n);
    free(line);
    if (e) return fail("label", "cannot write %s: %s (this item is not saved; the earlier ones are)", skipped ? s->skips : s->out,
                       strerror(e));
    s->state[it->index] = skipped ? LB_SKIPPED : LB_DONE;
    if (skipped) s->skipped++;
    else s->judged++;
    return lb_push_undo(s, it->index, skipped, s->mode == LB_DEMOS && !skipped ? it->text : NULL);
}
/* Undo: the last judgement's line taken off its file; its prompt is shown next. 0, or 1 (printed). */
static int lb_undo_last(lb_session *s, char *said, size_t cap) {
    lb_undo u;
    if (s->n_undo == 0) return snprintf(said, cap, "nothing to undo"), 0;
    u = s->undo[--s->n_undo];
    if (lb_drop_last(u.skip ? s->skips : s->out) != 0) return free(u.text), 1;
    if (s->n_undo >= s->n_earlier) u.skip ? s->skipped-- : s->judged--; /* a judgement of this run */
    else s->n_earlier--;
    if (u.index >= 0) {
        s->state[u.index] = LB_OPEN;
        s->hint = u.index;
        snprintf(said, cap, "undone: the %s of prompt %d", u.skip ? "skip" : "judgement", u.index + 1);
    } else
        snprintf(said, cap, "undone: the last record of %s (for a prompt not in this prompts file)", s->out);
    free(s->undone_text);
    s->undone_text = u.text;
    return 0;
}
/* the next prompt to show: the one an undo took back, else the first one open */
static int lb_next(lb_session *s) {
    size_t i;
    if (s->hint >= 0 && s->state[s->hint] == LB_OPEN) return s->hint;
    for (i = 0; i < s->n; i++)
        if (s->state[i] == LB_OPEN) return (int)i;
    return -1;
}
static size_t lb_count(const lb_session *s, int state) {
    size_t i, c = 0;
    for (i = 0; i < s->n; i++) c += s->state[i] == state;
    return c;
}
/* the first reply before reply k with the same text (1-based), or 0: a labeller cannot order the two */
static int lb_same_as(const lb_item *it, int k) {
    int j;
    for (j = 0; j < k; j++)
        if (strcmp(it->reply[j], it->reply[k]) == 0) return j + 1;
    return 0;
}
static void lb_item_free(lb_item *it) {
    int k;
    for (k = 0; k < LB_MAX_K; k++) free(it->reply[k]);
    free(it->text);
    memset(it, 0, sizeof *it);
}

/* ---- answers: an order typed as text ----------------------------------------------------------- */
/* "3142" (K <= 9), or numbers separated by spaces or commas ("3 1 4 2", needed when K > 9), as 1-based
   replies best first; order receives them 0-based. 1 when it is each of 1..K once. */
static int lb_parse_order(const char *line, int K, int *order) {
    int seen[LB_MAX_K + 1] = {0}, n = 0, sep = strpbrk(line, " ,\t") != NULL;
    const char *p = line;
    while (*p) {
        long v;
        char *end;
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        if (*p < '0' || *p > '9') return 0;
        if (sep) v = strtol(p, &end, 10), p = end;
        else if (K > 9) return 0;
        else v = *p++ - '0';
        if (v < 1 || v > K || seen[v] || n == K) return 0;
        seen[v] = 1, order[n++] = (int)v - 1;
    }
    return n == K;
}
/* the command a line (or key) stands for: ANS_SKIP, ANS_UNDO, ANS_QUIT, or -1 */
static int lb_command(const char *line) {
    if (strcmp(line, "s") == 0) return ANS_SKIP;
    if (strcmp(line, "u") == 0) return ANS_UNDO;
    if (strcmp(line, "q") == 0) return ANS_QUIT;
    return -1;
}

/* ---- the line mode: items on stdout, answers from stdin lines ------------------------------------ */
static int lb_getline(lb_session *s, char **line, size_t *cap) {
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) return 0;
    s->stdin_line++;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = 0;
    return 1;
}
static void lb_line_show(const lb_session *s, const lb_item *it) {
    int k;
    printf("== prompt %d of %zu (%s) ==\n%s\n", it->index + 1, s->n, LB_MODE[s->mode], s->ptext[it->index]);
    for (k = 0; s->mode != LB_DEMOS && k < it->K; k++) {
        printf("-- reply %d%s", k + 1, it->cut[k] ? " [cut at --max-new]" : "");
        if (lb_same_as(it, k)) printf(" [the same as reply %d]", lb_same_as(it, k));
        printf(" --\n%s\n", it->reply[k]);
    }
    if (s->mode == LB_DEMOS) printf("> write the reply, then a line holding a single \".\" (s skip, u undo, q quit)\n");
    else if (s->mode == LB_COMPARE) printf("> the better reply: 1 or 2 (s skip, u undo, q quit)\n");
    else printf("> the %d replies best first, e.g. %s (s skip, u undo, q quit)\n", it->K, it->K > 9 ? "\"2 1 3 ...\"" : "2143");
    fflush(stdout);
}
/* a demonstration: lines up to "."; trailing newlines dropped */
static int lb_line_demo(lb_session *s, lb_item *it, char **line, size_t *cap) {
    lb_buf b = {NULL, 0, 0, 0};
    long first = s->stdin_line + 1;
    int k;
    for (k = 0;; k++) {
        if (!lb_getline(s, line, cap)) {
            free(b.p);
            if (k == 0) return ANS_QUIT;
            return fail("label", "stdin ended inside the reply begun on line %ld (a reply ends with a line holding a "
                        "single \".\"): not saved", first), ANS_ERROR;
        }
        if (k == 0 && lb_command(*line) >= 0) return free(b.p), lb_command(*line);
        if (strcmp(*line, ".") == 0) break;
        if (k) lb_add(&b, "\n", 1);
        lb_adds(&b, *line);
    }
    while (b.n > 0 && b.p[b.n - 1] == '\n') b.p[--b.n] = 0;
    if (b.oom) return free(b.p), fail("label", "out of memory"), ANS_ERROR;
    if (b.n == 0) return free(b.p), fail("label", "stdin line %ld: an empty reply (write one, or s to skip)", s->stdin_line), ANS_ERROR;
    free(it->text);
    it->text = b.p, it->len = b.n;
    return ANS_JUDGED;
}
static int lb_line_ask(lb_session *s, lb_item *it) {
    static char *line;
    static size_t cap;
    int c;
    lb_line_show(s, it);
    if (s->mode == LB_DEMOS) return lb_line_demo(s, it, &line, &cap);
    if (!lb_getline(s, &line, &cap)) return ANS_QUIT;
    if ((c = lb_command(line)) >= 0) return c;
    if (s->mode == LB_COMPARE && (strcmp(line, "1") == 0 || strcmp(line, "2") == 0)) {
        it->order[0] = line[0] - '1', it->order[1] = 2 - (line[0] - '0');
        return ANS_JUDGED;
    }
    if (s->mode == LB_RANK && lb_parse_order(line, it->K, it->order)) return ANS_JUDGED;
    if (s->mode == LB_COMPARE)
        fail("label", "stdin line %ld: \"%.40s\" is not an answer to prompt %d: expected 1 or 2 (the better reply), or s, u, q",
             s->stdin_line, line, it->index + 1);
    else
        fail("label", "stdin line %ld: \"%.40s\" is not an answer to prompt %d: expected the %d replies best first, each of 1 to "
             "%d once (%s), or s, u, q", s->stdin_line, line, it->index + 1, it->K, it->K, it->K > 9 ? "e.g. \"2 1 3 ...\"" : "e.g. 2143");
    return ANS_ERROR;
}

/* ---- the terminal mode: raw keys, the alternate screen, one frame per key -------------------------
   Every exit path gives the terminal back: atexit, and SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers that
   restore it and exit 128 + the signal (every judgement is on disk already). Raw mode turns off ISIG,
   so Ctrl-C arrives as a key and quits like q. SIGWINCH (a resize) interrupts the read and the frame
   is drawn again at the new size. */
#define LB_KEYS_DEMOS "arrows/Home/End move  Enter new line  Backspace/Delete erase  Ctrl-D submit  Ctrl-S skip  " \
                      "Ctrl-U undo last  Ctrl-G guidelines  Ctrl-Q quit"
#define LB_KEYS_COMPARE "1 or 2: the better reply  s skip  u undo last  ? guidelines  PgUp/PgDn scroll  q quit"
#define LB_KEYS_RANK "\xE2\x86\x91\xE2\x86\x93 select  +/- move it up/down  Enter submit the order shown  or type it: " \
                     "digits then Enter  </> score 1-7  flags: f i h c x v e d a o m  s skip  u undo last  " \
                     "? guidelines  PgUp/PgDn scroll  q quit"
enum { K_UP = 0x110001, K_DOWN, K_LEFT, K_RIGHT, K_HOME, K_END, K_PGUP, K_PGDN, K_DEL, K_RESIZE, K_EOF };
#if LB_TTY

/* lines of the frame's body, wrapped; mark: the line and column of the cursor (or of the selection) */
typedef struct lb_lines { char **v; int n, cap, mark, mark_col; } lb_lines;
static void lb_lines_push(lb_lines *L, lb_buf *b) {
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        char **v = (char **)realloc(L->v, (size_t)cap * sizeof *v);
        if (!v) {
            free(b->p);
            memset(b, 0, sizeof *b);
            return;
        }
        L->v = v, L->cap = cap;
    }
    lb_add(b, "", 0);
    L->v[L->n++] = b->p;
    memset(b, 0, sizeof *b);
}
static void lb_lines_free(lb_lines *L) {
    int i;
    for (i = 0; i < L->n; i++) free(L->v[i]);
    free(L->v);
    memset(L, 0, sizeof *L);
}
/* text[0..len) after prefix, wrapped at width columns (a column per code point: a character is never
   split), later lines indented as wide as prefix (ASCII). cursor: a byte offset of text to mark, or -1. */
static void lb_wrap(lb_lines *L, const char *prefix, const char *text, size_t len, int width, long cursor) {
    int indent = (int)strlen(prefix), avail = width - indent > 8 ? width - indent : 8, col = 0;
    lb_buf b = {NULL, 0, 0, 0};
    size_t i;
    lb_adds(&b, prefix);
    for (i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)text[i] : '\n';
        if (i < len && c != '\n' && (c & 0xC0) != 0x80 && col >= avail) {
            lb_lines_push(L, &b);
            lb_addf(&b, "%*s", indent, ""), col = 0;
        }
        if ((long)i == cursor) L->mark = L->n, L->mark_col = indent + (col < avail ? col : avail - 1);
        if (i == len) break;
        if (c == '\n') {
            lb_lines_push(L, &b);
            lb_addf(&b, "%*s", indent, ""), col = 0;
            continue;
        }
        col += (c & 0xC0) != 0x80;
        lb_add(&b, c == '\t' ? " " : (const char *)&text[i], 1);
    }
    lb_lines_push(L, &b);
}

static int lb_col_of(const char *s, size_t start, size_t i);
/* a line of lb_wrap_items: as it is, or (one item wider than the screen) wrapped by characters */
static void lb_push_fit(lb_lines *L, lb_buf *b, int col, int width) {
    if (col <= width) lb_lines_push(L, b);
    else lb_wrap(L, "", b->p, b->n, width, -1), free(b->p), memset(b, 0, sizeof *b);
}
/* the keys' help, broken into lines between its items (two spaces apart) */
static void lb_wrap_items(lb_lines *L, const char *text, int width) {
    lb_buf b = {NULL, 0, 0, 0};
    int col = 0;
    while (*text) {
        const char *end = strstr(text, "  ");
        size_t n = end ? (size_t)(end - text) : strlen(text);
        int w = lb_col_of(text, 0, n);
        if (col > 0 && col + 2 + w > width) lb_push_fit(L, &b, col, width), col = 0;
        if (col > 0) lb_add(&b, "  ", 2), col += 2;
        lb_add(&b, text, n), col += w;
        text += n;
        while (*text == ' ') text++;
    }
    if (b.n > 0) lb_push_fit(L, &b, col, width);
}

static struct termios g_lb_saved;
static volatile sig_atomic_t g_lb_raw, g_lb_winch;
static const char LB_LEAVE[] = "\033[0m\033[?25h\033[?1049l";
static void lb_tty_restore(void) {
    if (!g_lb_raw) return;
    g_lb_raw = 0;
    tcsetattr(0, TCSAFLUSH, &g_lb_saved);
    if (write(1, LB_LEAVE, sizeof LB_LEAVE - 1) < 0) { /* nothing more to do on the way out */ }
}
static void lb_tty_signal(int sig) {
    lb_tty_restore(); /* tcsetattr and write are async-signal-safe */
    _exit(128 + sig);
}
static void lb_tty_winch(int sig) {
    (void)sig;
    g_lb_winch = 1;
}
static int lb_tty_enter(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    static const char enter[] = "\033[?1049h\033[?25l\033[H\033[2J";
    static int registered;
    struct termios raw;
    struct sigaction sa;
    size_t k;
    if (tcgetattr(0, &g_lb_saved) != 0) return fail("label", "cannot read the terminal's settings: %s", strerror(errno));
    raw = g_lb_saved;
    raw.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON); /* Ctrl-S, Ctrl-Q and Enter reach us as typed */
    raw.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);           /* Ctrl-C too: it quits like q */
    raw.c_cflag |= CS8;
    raw.c_cc[VMIN] = 1, raw.c_cc[VTIME] = 0;
    if (!registered) atexit(lb_tty_restore), registered = 1;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = lb_tty_signal;
    for (k = 0; k < sizeof sigs / sizeof sigs[0]; k++) sigaction(sigs[k], &sa, NULL);
    sa.sa_handler = lb_tty_winch; /* no SA_RESTART: the read returns and the frame is drawn at the new size */
    sigaction(SIGWINCH, &sa, NULL);
    if (tcsetattr(0, TCSAFLUSH, &raw) != 0) return fail("label", "cannot put the terminal in raw mode: %s", strerror(errno));
    g_lb_raw = 1;
    if (write(1, enter, sizeof enter - 1) < 0) return fail("label", "cannot write to the terminal: %s", strerror(errno));
    return 0;
}
static void lb_tty_size(int *rows, int *cols) {
    struct winsize ws;
    *rows = 24, *cols = 80;
    if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) *rows = ws.ws_row, *cols = ws.ws_col;
    if (*rows < 6) *rows = 6;
    if (*cols < 20) *cols = 20;
}
/* the next byte within ms milliseconds, or -1 */
static int lb_tty_byte(int ms) {
    struct pollfd p;
    unsigned char c;
    p.fd = 0, p.events = POLLIN;
    if (poll(&p, 1, ms) <= 0 || read(0, &c, 1) != 1) return -1;
    return c;
}
/* an escape sequence after ESC: CSI (ESC [) or SS3 (ESC O) arrows, Home/End, PgUp/PgDn, Delete */
static int lb_tty_escape(void) {
    int c = lb_tty_byte(50), n = 0;
    if (c != '[' && c != 'O') return 27; /* a lone Esc (or Alt-key): ignored */
    while ((c = lb_tty_byte(50)) >= '0' && c <= '9') n = n * 10 + (c - '0');
    while (c == ';' || (c >= '0' && c <= '9')) c = lb_tty_byte(50); /* modifiers: Shift-Up is an Up */
    switch (c) {
    case 'A': return K_UP;
    case 'B': return K_DOWN;
    case 'C': return K_RIGHT;
    case 'D': return K_LEFT;
    case 'H': return K_HOME;
    case 'F': return K_END;
    case '~': return n == 1 || n == 7 ? K_HOME : n == 4 || n == 8 ? K_END : n == 3 ? K_DEL : n == 5 ? K_PGUP : n == 6 ? K_PGDN : 27;
    }
    return 27;
}
static int lb_tty_key(void) {
    for (;;) {
        unsigned char c;
        ssize_t r;
        if (g_lb_winch) {
            g_lb_winch = 0;
            return K_RESIZE;
        }
        r = read(0, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return K_EOF;
        return c == 27 ? lb_tty_escape() : c;
    }
}

/* ---- the demonstration editor: a byte buffer, the cursor on a character boundary ------------------ */
static size_t lb_u8_prev(const char *s, size_t i) {
    if (i == 0) return 0;
    for (i--; i > 0 && (s[i] & 0xC0) == 0x80; i--) {}
    return i;
}
static size_t lb_u8_next(const char *s, size_t len, size_t i) {
    if (i >= len) return len;
    for (i++; i < len && (s[i] & 0xC0) == 0x80; i++) {}
    return i;
}
static size_t lb_bol(const char *s, size_t i) {
    while (i > 0 && s[i - 1] != '\n') i--;
    return i;
}
static size_t lb_eol(const char *s, size_t len, size_t i) {
    while (i < len && s[i] != '\n') i++;
    return i;
}
/* the offset col characters after start, at most the end of its line */
static size_t lb_at_col(const char *s, size_t len, size_t start, int col) {
    size_t end = lb_eol(s, len, start), i = start;
    for (; col > 0 && i < end; col--) i = lb_u8_next(s, end, i);
    return i;
}
static int lb_col_of(const char *s, size_t start, size_t i) {
    int col = 0;
    for (; start < i; start++) col += (s[start] & 0xC0) != 0x80;
    return col;
}
static int lb_ed_insert(lb_item *it, const char *bytes, size_t n) {
    if (it->len + n + 1 > it->cap) {
        size_t cap = it->cap ? 2 * it->cap : 256;
        char *p;
        while (cap < it->len + n + 1) cap *= 2;
        if (!(p = (char *)realloc(it->text, cap))) return 0;
        if (!it->text) p[0] = 0;
        it->text = p, it->cap = cap;
    }
    memmove(it->text + it->cur + n, it->text + it->cur, it->len - it->cur + 1);
    memcpy(it->text + it->cur, bytes, n);
    it->len += n, it->cur += n;
    return 1;
}
static void lb_ed_erase(lb_item *it, size_t from, size_t to) {
    memmove(it->text + from, it->text + to, it->len - to + 1);
    it->len -= to - from;
    it->cur = from;
}
/* one key of the editor; 0 when out of memory */
static int lb_ed_key(lb_item *it, int key) {
    const char *s = it->text ? it->text : "";
    size_t cur = it->cur, len = it->len, bol = lb_bol(s, cur);
    char c = (char)key;
    switch (key) {
    case K_LEFT: it->cur = lb_u8_prev(s, cur); return 1;
    case K_RIGHT: it->cur = lb_u8_next(s, len, cur); return 1;
    case K_HOME: it->cur = bol; return 1;
    case K_END: it->cur = lb_eol(s, len, cur); return 1;
    case K_UP:
        if (bol > 0) it->cur = lb_at_col(s, len, lb_bol(s, bol - 1), lb_col_of(s, bol, cur));
        return 1;
    case K_DOWN:
        if (lb_eol(s, len, cur) < len) it->cur = lb_at_col(s, len, lb_eol(s, len, cur) + 1, lb_col_of(s, bol, cur));
        return 1;
    case 127:
    case 8:
        if (cur > 0) lb_ed_erase(it, lb_u8_prev(s, cur), cur);
        return 1;
    case K_DEL:
        if (cur < len) lb_ed_erase(it, cur, lb_u8_next(s, len, cur));
        return 1;
    case '\r':
    case '\n': return lb_ed_insert(it, "\n", 1);
    }
    if (key == '\t' || (key >= 32 && key < 256 && key != 127)) return lb_ed_insert(it, &c, 1); /* UTF-8 arrives byte by byte */
    return 1;
}

/* ---- a frame: the title, the body (scrolled), the keys, the message line -------------------------- */
typedef struct lb_ui {
    int scroll, follow, guide, sel, touched;
    char typed[64];   /* rank: an order being typed */
} lb_ui;
/* the bytes of the first cols characters of s */
static size_t lb_cut(const char *s, int cols) {
    size_t i = 0;
    for (; s[i]; i++)
        if ((s[i] & 0xC0) != 0x80 && cols-- == 0) break;
    return i;
}
static void lb_rank_body(const lb_item *it, const lb_ui *u, int cols, lb_lines *L) {
    int p, j;
    lb_wrap(L, "", "Order, best first:", 18, cols, -1);
    for (p = 0; p < it->K; p++) {
        int k = it->order[p];
        lb_buf h = {NULL, 0, 0, 0};
        lb_addf(&h, "%s%d. reply %d", p == u->sel ? "> " : "  ", p + 1, k + 1);
        if (it->score[k]) lb_addf(&h, "   score %d/7", it->score[k]);
        for (j = 0; j < LB_N_FLAGS; j++)
            if (it->flags[k] >> j & 1u) lb_addf(&h, "  [%s]", LB_FLAGS[j].name);
        if (it->cut[k]) lb_adds(&h, "  (cut at --max-new)");
        if (lb_same_as(it, k)) lb_addf(&h, "  (the same as reply %d)", lb_same_as(it, k));
        lb_add(&h, "", 0);
        if (p == u->sel) L->mark = L->n, L->mark_col = 0;
        lb_wrap(L, "", h.p ? h.p : "", h.n, cols, -1);
        free(h.p);
        lb_wrap(L, "      ", it->reply[k], strlen(it->reply[k]), cols, -1);
    }
}
static void lb_body(const lb_session *s, const lb_item *it, const lb_ui *u, int cols, lb_lines *L) {
    int k;
    L->mark = -1;
    if (u->guide) {
        lb_wrap(L, "", LB_GUIDELINES, strlen(LB_GUIDELINES), cols, -1);
        return;
    }
    lb_wrap(L, "Prompt: ", s->ptext[it->index], strlen(s->ptext[it->index]), cols, -1);
    lb_wrap(L, "", "", 0, cols, -1);
    if (s->mode == LB_DEMOS) {
        lb_wrap(L, "", "Your reply:", 11, cols, -1);
        lb_wrap(L, "  ", it->text ? it->text : "", it->len, cols, (long)it->cur);
    } else if (s->mode == LB_COMPARE) {
        for (k = 0; k < 2; k++) {
            char h[64];
            snprintf(h, sizeof h, "[%d]%s ", k + 1, it->cut[k] ? " (cut)" : "");
            lb_wrap(L, h, it->reply[k], strlen(it->reply[k]), cols, -1);
            lb_wrap(L, "", "", 0, cols, -1);
        }
    } else
        lb_rank_body(it, u, cols, L);
}
static void lb_write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w, n -= (size_t)w;
    }
}
static void lb_frame(lb_session *s, const lb_item *it, lb_ui *u) {
    static const char *const keys[] = {LB_KEYS_DEMOS, LB_KEYS_RANK, LB_KEYS_COMPARE};
    int rows, cols, body, i;
    lb_lines L = {NULL, 0, 0, -1, 0}, F = {NULL, 0, 0, -1, 0};
    lb_buf b = {NULL, 0, 0, 0};
    char title[512], msg[256];
    const char *k = u->guide ? "any key: back to the item" : keys[s->mode];
    lb_tty_size(&rows, &cols);
    lb_body(s, it, u, cols, &L);
    lb_wrap_items(&F, k, cols);
    body = rows - 2 - F.n > 1 ? rows - 2 - F.n : 1;

    /* the cursor (or the selected reply) stays in view, unless PgUp/PgDn moved the view */
    if (u->follow && L.mark >= 0 && L.mark < u->scroll) u->scroll = L.mark;
    if (u->follow && L.mark >= 0 && L.mark >= u->scroll + body) u->scroll = L.mark - body + 1;
    if (u->scroll > L.n - body) u->scroll = L.n - body;
    if (u->scroll < 0) u->scroll = 0;

    snprintf(title, sizeof title, " rlhf label %s | prompt %d of %zu | labelled %zu, skipped %zu | %s ", LB_MODE[s->mode],
             it->index + 1, s->n, lb_count(s, LB_DONE), lb_count(s, LB_SKIPPED), s->labeller);
    lb_adds(&b, "\033[H\033[7m");
    lb_add(&b, title, lb_cut(title, cols));
    lb_adds(&b, "\033[K\033[0m\r\n");
    for (i = 0; i < body; i++) {
        if (u->scroll + i < L.n) lb_adds(&b, L.v[u->scroll + i]);
        lb_adds(&b, "\033[K\r\n");
    }
    for (i = 0; i < F.n; i++) lb_addf(&b, "\033[2m%s\033[0m\033[K\r\n", F.v[i]);
    if (s->mode == LB_RANK && u->typed[0] && !u->guide) snprintf(msg, sizeof msg, "order: %s_", u->typed);
    else snprintf(msg, sizeof msg, "%s", s->msg);
    lb_adds(&b, "\033[1m");
    lb_add(&b, msg, lb_cut(msg, cols - 1));
    lb_adds(&b, "\033[0m\033[K");
    if (s->mode == LB_DEMOS && !u->guide && L.mark >= u->scroll && L.mark < u->scroll + body)
        lb_addf(&b, "\033[%d;%dH\033[?25h", L.mark - u->scroll + 2, L.mark_col + 1);
    else
        lb_adds(&b, "\033[?25l");
    if (!b.oom) lb_write_all(b.p, b.n);
    free(b.p);
    lb_lines_free(&L);
    lb_lines_free(&F);
}

/* ---- the keys of each mode: -1 to stay on the item, else what the person did ---------------------- */
static int lb_key_demos(lb_session *s, lb_item *it, int key) {
    if (key == 19) return ANS_SKIP; /* Ctrl-S */
    if (key == 21) return ANS_UNDO; /* Ctrl-U */
    if (key == 4) {                 /* Ctrl-D: trailing newlines dropped, as in the line mode */
        while (it->len > 0 && it->text[it->len - 1] == '\n') it->text[--it->len] = 0;
        if (it->cur > it->len) it->cur = it->len;
        if (it->len > 0 && strspn(it->text, " \t\n") < it->len) return ANS_JUDGED;
        snprintf(s->msg, sizeof s->msg, "an empty reply: write one, or Ctrl-S to skip");
        return -1;
    }
    if (!lb_ed_key(it, key)) snprintf(s->msg, sizeof s->msg, "out of memory: the reply is too long");
    return -1;
}
static int lb_key_compare(lb_item *it, int key) {
    if (key != '1' && key != '2') return -1;
    it->order[0] = key - '1', it->order[1] = '2' - key;
    return ANS_JUDGED;
}
static int lb_key_rank(lb_session *s, lb_item *it, lb_ui *u, int key) {
    size_t nt = strlen(u->typed);
    int k = it->order[u->sel], j;
    if ((key == '+' || key == '=' || key == '-' || key == '_') && (j = key == '+' || key == '=' ? u->sel - 1 : u->sel + 1) >= 0 &&
        j < it->K) { /* the selected reply moves one place up (+) or down (-) */
        it->order[u->sel] = it->order[j], it->order[j] = k, u->sel = j, u->touched = 1;
    } else if (key == K_UP || key == K_DOWN) {
        u->sel += key == K_UP ? (u->sel > 0 ? -1 : 0) : (u->sel + 1 < it->K ? 1 : 0);
    } else if (((key >= '0' && key <= '9') || key == ' ' || key == ',') && nt + 1 < sizeof u->typed) {
        u->typed[nt] = (char)key, u->typed[nt + 1] = 0;
    } else if ((key == 127 || key == 8) && nt > 0) {
        u->typed[nt - 1] = 0;
    } else if (key == '<' || key == '>') {
        it->score[k] += key == '>' ? (it->score[k] < 7) : -(it->score[k] > 0);
    } else if (key == '\r' || key == '\n') {
        if (!u->typed[0] && u->touched) return ANS_JUDGED;
        if (!u->typed[0]) return u->touched = 1, snprintf(s->msg, sizeof s->msg, "the order is still as sampled: Enter again "
                                                           "submits it as it is"), -1;
        if (lb_parse_order(u->typed, it->K, it->order)) return ANS_JUDGED;
        snprintf(s->msg, sizeof s->msg, "\"%s\" is not an order of the %d replies: each of 1 to %d once, best first%s", u->typed,
                 it->K, it->K, it->K > 9 ? ", separated by spaces" : "");
        u->typed[0] = 0;
    } else {
        for (j = 0; j < LB_N_FLAGS; j++)
            if (key == LB_FLAGS[j].key) it->flags[k] ^= 1u << j;
    }
    return -1;
}
/* One item on the terminal, until it is judged, skipped, undone or the person quits. */
static int lb_tty_ask(lb_session *s, lb_item *it) {
    lb_ui u;
    memset(&u, 0, sizeof u);
    u.follow = 1;
    for (;;) {
        int key, r;
        lb_frame(s, it, &u);
        key = lb_tty_key();
        if (key == K_EOF || key == 3 || key == 17) return ANS_QUIT; /* Ctrl-C, Ctrl-Q */
        if (key == K_RESIZE) continue;
        if (u.guide) {
            u.guide = 0;
            continue;
        }
        s->msg[0] = 0;
        u.follow = key != K_PGUP && key != K_PGDN;
        if (!u.follow) {
            u.scroll += key == K_PGUP ? -10 : 10;
            continue;
        }
        if (key == 7 || (s->mode != LB_DEMOS && key == '?')) {
            u.guide = 1, u.scroll = 0;
            continue;
        }
        if (s->mode != LB_DEMOS && (key == 's' || key == 'u' || key == 'q')) return key == 's' ? ANS_SKIP : key == 'u' ? ANS_UNDO : ANS_QUIT;
        r = s->mode == LB_DEMOS ? lb_key_demos(s, it, key) : s->mode == LB_COMPARE ? lb_key_compare(it, key) : lb_key_rank(s, it, &u, key);
        if (r >= 0) return r;
    }
}
/* what a step of the run shows while it works (sampling) */
static void lb_tty_busy(const char *what) {
    char line[160];
    int n = snprintf(line, sizeof line, "\033[H\033[2J\033[?25l%s", what);
    lb_write_all(line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
}
#else
static int lb_tty_enter(void) {
    return fail("label", "the terminal mode of rlhf label needs a POSIX terminal (termios): give the answers on stdin "
                "instead (the line mode, see rlhf label --help)");
}
static void lb_tty_restore(void) {}
static int lb_tty_ask(lb_session *s, lb_item *it) {
    (void)s, (void)it;
    return ANS_ERROR;
}
static void lb_tty_busy(const char *what) { (void)what; }
#endif

/* ---- the run: the next prompt, its item, the judgement saved -------------------------------------- */
/* prompt i as an item: its samples (rank, compare), or the editor (demos, with the text an undo gave
   back). 0 ready, 1 failed (printed), 2 the prompt leaves no room for a reply. */
static int lb_prepare(lb_session *s, lb_item *it, int i) {
    int k, r;
    memset(it, 0, sizeof *it);
    it->index = i;
    it->K = s->mode == LB_DEMOS ? 0 : s->K;
    for (k = 0; k < it->K; k++) it->order[k] = k;
    if (s->mode == LB_DEMOS) {
        const char *t = s->undone_text ? s->undone_text : "";
        if (!lb_ed_insert(it, t, strlen(t))) return fail("label", "out of memory");
        free(s->undone_text), s->undone_text = NULL;
        return 0;
    }
    if (!s->line_mode) {
        char what[96];
        snprintf(what, sizeof what, "sampling %d replies to prompt %d ...", s->K, i + 1);
        lb_tty_busy(what);
    }
    if ((r = lb_sample(s, it)) == 2) {
        if (s->line_mode)
            fprintf(stderr, "rlhf label: prompt %d does not fit the policy's context (%d tokens) with room for a reply: left "
                    "out of this run\n", i + 1, rlhf_model_config(s->m)->n_ctx);
        else
            snprintf(s->msg, sizeof s->msg, "prompt %d does not fit the context with room for a reply: left out", i + 1);
    }
    if (r == 0 && s->mode == LB_COMPARE && it->same)
        snprintf(s->msg, sizeof s->msg, "the two replies are the same: 1 or 2 records a skip");
    return r;
}
/* what the person did with the item, carried out; 0 to go on, 1 failed (printed) */
static int lb_carry_out(lb_session *s, lb_item *it, int a) {
    char said[256] = "";
    if (a == ANS_JUDGED && s->mode == LB_COMPARE && it->same) {
        a = ANS_SKIP; /* a pair of equal replies teaches nothing (and a conversational one would not load) */
        snprintf(said, sizeof said, "the two replies are the same: prompt %d recorded as skipped", it->index + 1);
    }
    if (a == ANS_UNDO && lb_undo_last(s, said, sizeof said) != 0) return 1;
    if ((a == ANS_JUDGED || a == ANS_SKIP) && lb_save(s, it, a == ANS_SKIP) != 0) return 1;
    if (said[0] && s->line_mode) printf("-- %s\n", said);
    snprintf(s->msg, sizeof s->msg, "%s", said);
    return 0;
}
static int lb_run(lb_session *s) {
    lb_item it;
    memset(&it, 0, sizeof it);
    for (;;) {
        int i = lb_next(s), r, a;
        if (i < 0) return 0;
        s->hint = -1;
        if ((r = lb_prepare(s, &it, i)) == 1) return lb_item_free(&it), 1;
        if (r == 2) {
            s->state[i] = LB_UNFIT;
            lb_item_free(&it);
            continue;
        }
        it.shown = now_s();
        a = s->line_mode ? lb_line_ask(s, &it) : lb_tty_ask(s, &it);
        if (a == ANS_QUIT || a == ANS_ERROR) {
            lb_item_free(&it);
            return a == ANS_ERROR;
        }
        r = lb_carry_out(s, &it, a);
        lb_item_free(&it);
        if (r) return 1;
    }
}

/* ---- rlhf label demos | rank | compare ------------------------------------------------------------ */
#define LABEL_ABOUT                                                                                                    \
    "Human feedback in the loop (InstructGPT's labelling, Ouyang et al. 2022, appendix B):\n"                          \
    "  demos    you write the reply to each prompt: SFT data (rlhf sft --data OUT)\n"                                   \
    "  rank     you order K replies sampled from --policy best first, with 1-7 scores and flags: rankings\n"            \
    "           (rlhf rm --data OUT; rlhf dpo --data OUT)\n"                                                           \
    "  compare  you pick the better of two replies: preference pairs (rlhf rm, rlhf dpo)\n"                             \
    "Every judgement is appended to --out and synced at once; a run started again resumes at the first prompt\n"     \
    "not labelled. Skips go to OUT.skipped and are not offered again (--revisit-skipped). On a terminal: a full\n"    \
    "screen with the keys shown. Otherwise the line mode reads one answer per item from stdin: rank, the order\n"     \
    "best first (\"3142\", or \"3 1 4 2\" when K > 9); compare, 1 or 2; demos, the reply's lines then a line \".\";\n" \
    "in every mode s skips, u undoes the last judgement, q quits (end of input too). A malformed line stops the\n"    \
    "run (exit 1) with everything before it saved."
static void lb_session_free(lb_session *s) {
    size_t i;
    int k;
    for (i = 0; s->ptext && i < s->n; i++) free(s->ptext[i]);
    for (k = 0; k < s->n_undo; k++) free(s->undo[k].text);
    free(s->ptext), free(s->hash), free(s->state), free(s->undo), free(s->undone_text);
    free(s->ids), free(s->seq), free(s->logits);
    rlhf_kv_cache_free(s->cache);
    rlhf_sampler_free(s->smp);
    rlhf_model_free(s->m);
    rlhf_tokenizer_free(s->t);
    rlhf_dataset_free(s->prompts);
}
/* --out's directory is writable (checked before anything is labelled) */
static int lb_check_out(const char *out) {
    char dir[1024];
    const char *slash = strrchr(out, '/');
    int e;
    struct stat st;
    if (stat(out, &st) == 0 && !S_ISREG(st.st_mode)) return usage_error("label", "--out %s is not a regular file: give a file (JSONL)", out);
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - out) + (slash == out) : 1, slash ? out : ".");
    if (!is_dir(dir)) return fail("label", "--out %s: the directory %s does not exist", out, dir);
    if ((e = probe_writable(dir)) != 0) return fail("label", "cannot write in %s: %s", dir, strerror(e));
    if (exists(out) && access(out, R_OK | W_OK) != 0) return fail("label", "cannot read and write %s: %s", out, strerror(errno));
    return 0;
}
/* prompts, what OUT and OUT.skipped hold, the policy: 0 ready, else the exit status (printed) */
static int lb_setup(lb_session *s, int max_new_given) {
    rlhf_data_format fmt;
    const char *what;
    int rc, n_ctx;
    if ((rc = lb_check_out(s->out)) != 0) return rc;
    if (bon_format("label", s->prompts_path, &fmt, &what) || !(s->prompts = load_data("label", s->prompts_path, fmt, 0))) return 1;
    s->n = rlhf_dataset_size(s->prompts);
    if (lb_prompt_text(s) || (s->mode == LB_RANK && lb_rank_prompts_ok(s))) return 1;
    snprintf(s->skips, sizeof s->skips, "%s.skipped", s->out);
    if ((rc = lb_scan(s, s->out, 0)) != 0 || (rc = lb_scan(s, s->skips, 1)) != 0) return rc;
    s->n_earlier = s->n_undo;
    if (s->mode == LB_DEMOS || lb_next(s) < 0) return 0;
    if (!(s->m = load_model("label", "--policy", s->policy, ROLE_POLICY, &s->t))) return 1;
    n_ctx = rlhf_model_config(s->m)->n_ctx;
    if (!max_new_given && s->max_new >= n_ctx / 2) s->max_new = n_ctx / 2; /* generate's default */
    if (s->max_new >= n_ctx)
        return usage_error("label", "--max-new %d leaves no room for a prompt in the policy's context of %d tokens", s->max_new, n_ctx);
    return lb_sampler_open(s);
}
static int lb_label(lb_session *s) {
    FILE *errs = NULL;
    int rc, saved = -1;
    printf("label %s: %zu prompts in %s; %zu labelled and %zu skipped in %s; labeller %s\n", LB_MODE[s->mode], s->n, s->prompts_path,
           lb_count(s, LB_DONE), lb_count(s, LB_SKIPPED), s->out, s->labeller);
    fflush(stdout);
    if (!s->line_mode && lb_tty_enter() != 0) return lb_tty_restore(), 1;
    if (!s->line_mode && (errs = tmpfile()) != NULL && (saved = dup(2)) >= 0) {
        fflush(stderr); /* a message printed on the alternate screen would vanish with it: it waits in a file */
        dup2(fileno(errs), 2);
    }
    rc = lb_run(s);
    lb_tty_restore();
    if (saved >= 0) {
        char buf[4096];
        size_t n;
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        rewind(errs);
        while ((n = fread(buf, 1, sizeof buf, errs)) > 0) fwrite(buf, 1, n, stderr);
    }
    if (errs) fclose(errs);
    printf("label %s: %d judged and %d skipped in this run; %zu of %zu prompts labelled, %zu skipped%s (%s)\n", LB_MODE[s->mode],
           s->judged, s->skipped, lb_count(s, LB_DONE), s->n, lb_count(s, LB_SKIPPED),
           lb_next(s) < 0 ? ": none left" : "", s->out);
    return rc;
}
static int lb_agreement(int argc, char **argv);
static int cmd_label(int argc, char **argv) {
    lb_session s;
    int mode = argc > 2 ? choice_find("demos|rank|compare|agreement", argv[2]) : -1, n, k, np, rc, line = 0;
    const char *pos[1];
    char usage_line[160];
    if (argc < 3 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
        printf("usage: rlhf label demos|rank|compare --prompts FILE --out FILE [options]\n"
               "       rlhf label agreement FILE FILE ...\n\n%s\n\nrlhf label MODE --help lists the options of a mode.\n", LABEL_ABOUT);
        return argc < 3 ? 2 : 0;
    }
    if (mode < 0) return usage_error("label", "the mode is demos, rank, compare or agreement, got \"%s\"", argv[2]);
    if (mode == 3) return lb_agreement(argc, argv);
    memset(&s, 0, sizeof s);
    s.mode = mode, s.K = mode == LB_COMPARE ? 2 : 4, s.max_new = 64, s.seed = 1, s.temperature = 1.0f, s.hint = -1;
    s.labeller = getenv("USER") && *getenv("USER") ? getenv("USER") : "anonymous";
    {
        opt all[] = {
            OPT_S("prompts", "the prompts: a prompts file ({\"prompt\"} or {\"messages\"}), or an SFT or preference file", &s.prompts_path),
            OPT_S("out", "the JSONL file the judgements are appended to (created if needed; a run resumes it)", &s.out),
            OPT_S("labeller", "your name in every record (by default $USER, when it is set)", &s.labeller),
            OPT_S("policy", "the policy whose replies you judge (an SFT, PPO or DPO checkpoint)", &s.policy),
            OPT_I("k", "replies to rank per prompt (InstructGPT: 4 to 9)", &s.K, 2, LB_MAX_K),
            OPT_F("temperature", "sampling temperature of the replies (0: greedy, every reply the same)", &s.temperature, 0, 100),
            OPT_I("max-new", "longest reply in tokens; if not given, at most half the context", &s.max_new, 1, BIG),
            OPT_I("seed", "sampling seed: the replies to prompt i come from (seed, i), the same on every run", &s.seed, 0, BIG),
            OPT_B("revisit-skipped", "offer the prompts skipped in earlier runs again", &s.revisit),
            OPT_B("line", "the line mode even on a terminal (answers from stdin lines)", &line),
        };
        opt o[N_OPTS(all)];
        for (n = 0, k = 0; k < N_OPTS(all); k++) /* the options of this mode only */
            if (!(mode == LB_DEMOS && choice_find("policy|k|temperature|max-new|seed", all[k].name) >= 0) &&
                !(mode == LB_COMPARE && strcmp(all[k].name, "k") == 0))
                o[n++] = all[k];
        np = parse_opts("label", argc, argv, 3, o, n, pos, 0);
        snprintf(usage_line, sizeof usage_line, "rlhf label %s %s--prompts FILE --out FILE [options]", LB_MODE[mode],
                 mode == LB_DEMOS ? "" : "--policy CKPT ");
        if (np < 0) return help_or_usage(np, usage_line, LABEL_ABOUT, o, n);
        if (!s.prompts_path || !s.out || (mode != LB_DEMOS && !s.policy))
            return usage_error("label", "%s needs --prompts and --out%s", LB_MODE[mode], mode == LB_DEMOS ? "" : " and --policy");
        if (mode != LB_DEMOS && s.temperature == 0.0f)
            return usage_error("label", "--temperature 0 (greedy) makes every reply the same: nothing to %s", LB_MODE[mode]);
        s.line_mode = line || !isatty(0) || !isatty(1);
        signal(SIGXFSZ, SIG_IGN); /* a file-size limit: the write fails and says so, the terminal is given back */
        rc = lb_setup(&s, given(o, n, "max-new"));
        if (rc == 0) rc = lb_label(&s);
    }
    lb_session_free(&s);
    return rc;
}

/* ---- rlhf label agreement: how often two labellers order the same replies the same way -------------- */
typedef struct lb_judged { uint64_t key; const rlhf_record *r; } lb_judged;
static int lb_n_replies(const rlhf_record *r) { return r->kind == RLHF_RECORD_RANKING ? r->n_completions : 2; }
/* reply i of a record, best first: a ranking's completion, a pair's chosen (0) or rejected (1) reply */
static rlhf_str lb_reply_of(const rlhf_record *r, int i) {
    const rlhf_message *m = i ? r->rejected_messages : r->chosen_messages;
    int n = i ? r->n_rejected_messages : r->n_chosen_messages;
    if (r->kind == RLHF_RECORD_RANKING) return r->completions[i];
    if (m && n > 0) return m[n - 1].content; /* a conversational pair: its assistant turn */
    return i ? r->rejected : r->chosen;
}
/* records match on their prompt and the set of their replies (the order is what is compared) */
static uint64_t lb_record_key(const rlhf_record *r) {
    uint64_t h = lb_fnv(r->prompt.str ? r->prompt.str : "", r->prompt.str ? r->prompt.len : 0), sum = 0;
    int i;
    for (i = 0; r->prompt_messages && i < r->n_prompt_messages; i++)
        h = (h ^ lb_fnv(r->prompt_messages[i].content.str, r->prompt_messages[i].content.len)) * 1099511628211ULL + (uint64_t)r->prompt_messages[i].role;
    for (i = 0; i < lb_n_replies(r); i++) {
        rlhf_str s = lb_reply_of(r, i);
        sum += lb_fnv(s.str, s.len); /* a sum: the same for any order */
    }
    return h ^ (sum * 0x9E3779B97F4A7C15ULL);
}
static int lb_judged_cmp(const void *a, const void *b) {
    uint64_t x = ((const lb_judged *)a)->key, y = ((const lb_judged *)b)->key;
    return x < y ? -1 : x > y;
}
static int lb_find_reply(const rlhf_record *r, rlhf_str s) {
    int i;
    for (i = 0; i < lb_n_replies(r); i++) {
        rlhf_str t = lb_reply_of(r, i);
        if (t.len == s.len && memcmp(t.str, s.str, s.len) == 0) return i;
    }
    return -1;
}
/* every pair of distinct replies of a (a prefers i to j when i < j): concordant when b orders them alike */
static void lb_concord(const rlhf_record *a, const rlhf_record *b, long *C, long *D) {
    int i, j, K = lb_n_replies(a);
    for (i = 0; i < K; i++)
        for (j = i + 1; j < K; j++) {
            rlhf_str x = lb_reply_of(a, i), y = lb_reply_of(a, j);
            int pi = lb_find_reply(b, x), pj = lb_find_reply(b, y);
            if ((x.len == y.len && memcmp(x.str, y.str, x.len) == 0) || pi < 0 || pj < 0) continue; /* the same text: no order */
            if (pi < pj) ++*C;
            else ++*D;
        }
}
/* one file's judgements, sorted by key */
static lb_judged *lb_judged_of(const rlhf_dataset *d) {
    size_t i, n = rlhf_dataset_size(d);
    lb_judged *j = (lb_judged *)malloc((n ? n : 1) * sizeof *j);
    if (!j) return NULL;
    for (i = 0; i < n; i++) j[i].r = rlhf_dataset_record(d, i), j[i].key = lb_record_key(j[i].r);
    qsort(j, n, sizeof *j, lb_judged_cmp);
    return j;
}
/* files a and b: prompts both judged, concordant and discordant pairs, the sum of per-prompt tau */
static void lb_agree_pair(const lb_judged *a, size_t na, const lb_judged *b, size_t nb, long *prompts, long *C, long *D,
                          double *tau) {
    size_t i;
    for (i = 0; i < na; i++) {
        const lb_judged *m = (const lb_judged *)bsearch(&a[i], b, nb, sizeof *b, lb_judged_cmp);
        long c = 0, d = 0;
        if (!m) continue;
        lb_concord(a[i].r, m->r, &c, &d);
        if (c + d == 0) continue;
        ++*prompts, *C += c, *D += d;
        *tau += (double)(c - d) / (double)(c + d); /* Kendall's tau-a of this prompt */
    }
}
static int lb_agreement(int argc, char **argv) {
    const char *pos[64];
    rlhf_dataset *d[64];
    lb_judged *j[64];
    long P = 0, C = 0, D = 0;
    double tau = 0.0;
    int np = parse_opts("label", argc, argv, 3, NULL, 0, pos, 64), n, a, b, rc = 0;
    if (np < 0)
        return help_or_usage(np, "rlhf label agreement FILE FILE ...",
                             "Inter-labeller agreement on the prompts labelled in more than one file (a file per labeller;\n"
                             "rankings and pairs, matched on the prompt and the set of replies). Agreement: concordant pairs of\n"
                             "replies over all pairs both ordered, pooled over prompts (InstructGPT: 72.6 +- 1.5% among its\n"
                             "training labellers). Kendall's tau: (concordant - discordant) / pairs, per prompt, averaged.", NULL, 0);
    if (np < 2) return usage_error("label", "agreement needs two files or more");
    for (n = 0; n < np; n++) {
        if (!(d[n] = load_data("label", pos[n], RLHF_DATA_PREFERENCE, 0)) || !(j[n] = lb_judged_of(d[n]))) {
            rc = d[n] ? fail("label", "out of memory") : 1;
            if (d[n]) rlhf_dataset_free(d[n]);
            break;
        }
    }
    for (a = 0; rc == 0 && a < np; a++)
        for (b = a + 1; b < np; b++) {
            long p = 0, c = 0, dd = 0;
            double t = 0.0;
            lb_agree_pair(j[a], rlhf_dataset_size(d[a]), j[b], rlhf_dataset_size(d[b]), &p, &c, &dd, &t);
            printf("%s vs %s: %ld prompts, %ld pairs of replies", pos[a], pos[b], p, c + dd);
            if (p) printf(": agreement %.1f%% (%ld of %ld), Kendall's tau %.3f", 100.0 * (double)c / (double)(c + dd), c, c + dd, t / (double)p);
            printf("\n");
            P += p, C += c, D += dd, tau += t;
        }
    if (rc == 0 && P == 0)
        rc = fail("label", "no prompt is labelled in more than one file (records match on the prompt and the set of replies: rank "
                  "with the same --policy, --k, --seed and --temperature)");
    else if (rc == 0)
        printf("all: %ld prompts, %ld pairs of replies: agreement %.1f%%, mean Kendall's tau %.3f\n", P, C + D,
               100.0 * (double)C / (double)(C + D), tau / (double)P);
    for (a = 0; a < n; a++) free(j[a]), rlhf_dataset_free(d[a]);
    return rc;
}
