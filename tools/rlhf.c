/* rlhf.c - the command-line face of rlhf.h.

     rlhf tokenizer | pretrain | sft | rm | ppo     the stages, each into a run directory
     rlhf grpo | rloo                               PPO's trainer with group baselines instead of a critic
     rlhf dpo | kto                                 DPO (and SimPO) on preferences, KTO on unpaired labels:
                                                    no reward model, no sampling
     rlhf bon                                       best-of-N replies to a prompt file, as SFT data
     rlhf generate | chat | score | eval | info     using and inspecting checkpoints
     rlhf export CKPT --out DIR                     a Hugging Face directory (transformers, TRL)
     rlhf plot RUN_DIR                              SVG charts of metrics.jsonl
     rlhf demo                                      the whole pipeline on a built-in world
   `rlhf COMMAND --help` lists that command's options with their defaults.

   What a user can count on:
   - Exit status: 0 success, 1 runtime failure, 2 usage error (a bad option,
     value or combination; the message names the option), 130/143 after
     Ctrl-C / SIGTERM.
   - A run directory is never overwritten by accident: a training command
     refuses a directory that holds a run unless --resume (continue it) or
     --overwrite (start again) is given. Everything it writes is checked to
     be writable before any training starts. One run at a time: a second
     command on a run directory in use is refused (lock_run_dir).
   - Ctrl-C or SIGTERM during training finishes the current step, saves a
     resumable checkpoint and exits 130 / 143; a second Ctrl-C quits at once.
     A kill -9 loses at most the steps since the last checkpoint: every file
     is written atomically (PPO's policy, critic and EMA as one unit), and
     --resume cuts metrics.jsonl back to the checkpoint's step.
   - A model whose weights became NaN or infinite is never saved; the
     command fails and says so.
   - On a terminal, one status line shows progress; log lines print above it.

   Build: make (build/rlhf). POSIX (mkdir, sigaction, opendir, getrusage).
   A unity build: `rlhf demo` lives in tools/demo.c (beside world.h, the world
   it builds), which this file includes after its other commands so that the
   demo shares the helpers below; compile this file alone. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* with it, madvise: huge pages for rlhf.h's large blocks */
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "plot.h"

/* ---- the terminal: log lines on stdout, one status line on stderr -------------- */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double g_t0;
static int g_tty;             /* stderr is a terminal: progress goes to the status line */
static char g_status[256];    /* what the status line shows now ("" = none) */
static volatile sig_atomic_t g_stop; /* the signal that asked to stop, or 0 */

/* The status line is redrawn in place (\r, erase to the end of the line);
   a log line first erases it, prints, then redraws it, so the two never mix. */
static void status_erase(void) {
    if (g_tty && g_status[0]) fputs("\r\033[K", stderr);
}
static void status_draw(void) {
    if (g_tty && g_status[0]) {
        fprintf(stderr, "\r\033[K%s", g_status);
        fflush(stderr);
    }
}
static void status_set(const char *fmt, ...) {
    va_list ap;
    if (!g_tty) return;
    va_start(ap, fmt);
    vsnprintf(g_status, sizeof g_status, fmt, ap);
    va_end(ap);
    status_draw();
}
static void status_done(void) {
    status_erase();
    g_status[0] = 0;
}
static void say(const char *fmt, ...) {
    va_list ap;
    status_erase();
    fflush(stderr);
    printf("[%6.1fs] ", now_s() - g_t0);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    status_draw();
}
/* "rlhf CMD: message" on stderr; returns 1 (the runtime-failure exit status) */
static int fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    status_done();
    fflush(stdout);
    fprintf(stderr, "rlhf %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}
/* A library message without its stage prefix ("sft: ..."), which the
   command's own prefix ("rlhf sft: ") already says. */
static const char *lib_msg(const char *msg) {
    static const char *const stages[] = {"pretrain: ", "sft: ", "rm: ", "dpo: ", "kto: ", "ppo: "};
    size_t k;
    const char *colon = strstr(msg, ": ");
    for (k = 0; k < sizeof stages / sizeof stages[0]; k++)
        if (strncmp(msg, stages[k], strlen(stages[k])) == 0) return msg + strlen(stages[k]);
    if (strncmp(msg, "rlhf_", 5) == 0 && colon && colon - msg < 40 && !memchr(msg, ' ', (size_t)(colon - msg))) return colon + 2;
    return msg;
}
/* the same for a usage error: returns 2 */
static int usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "rlhf %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see rlhf %s --help)\n", cmd);
    return 2;
}
/* The library's log: warnings and progress. Its errors are not printed here:
   every one also comes back as a result with a message, printed once by the
   command that got it. */
static void log_cb(void *user, rlhf_log_level level, const char *msg) {
    (void)user;
    if (level == RLHF_LOG_ERROR) return;
    if (g_stop && strstr(msg, "stopped at step")) return; /* the command says it, with how to resume */
    if (level == RLHF_LOG_INFO && strncmp(msg, "ppo: sample ", 12) == 0) return;
    say("%s%s", level == RLHF_LOG_WARN ? "warning: " : "  ", msg);
}
static long peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L; /* Linux: kilobytes */
}
/* ---- the memory budget of a run, printed before it starts ----------------------------------------
   One line per model from rlhf_config_memory (fp32, rows x T tokens a forward): BUDGET_TRAINED, its weights,
   gradients, AdamW moments and activations (forward caches, backward scratch, matmul workspace);
   BUDGET_LOGPROBS, a frozen model whose log-probs keep the forward caches (a reference); BUDGET_FORWARD,
   a frozen model's weights and the scratch of its forwards (a reward model). The sum is the models' part
   of the peak; the process adds its program, the data sets and the sampling buffers. */
enum { BUDGET_FORWARD, BUDGET_LOGPROBS, BUDGET_TRAINED };
static double mb(size_t bytes) { return (double)bytes / 1048576.0; }
static void budget_line(const char *cmd, const char *role, const rlhf_config *c, int rows, int T, int kind, int recompute, size_t *sum) {
    rlhf_memory mem;
    size_t total;
    if (T > c->n_ctx) T = c->n_ctx;
    if (rows < 1 || T < 1 || rlhf_config_memory(c, rows, T, kind != BUDGET_FORWARD, &mem) != RLHF_OK) return;
    if (recompute) mem.activations = mem.activations_recompute;
    total = mem.params + mem.activations + mem.workspace;
    if (kind == BUDGET_TRAINED) {
        total += mem.grads + mem.optimizer + mem.backward;
        say("%s: memory: %s, trained on %d x %d tokens: %.1f MB (weights %.1f, gradients %.1f, AdamW %.1f, activations %.1f%s)", cmd,
            role, rows, T, mb(total), mb(mem.params), mb(mem.grads), mb(mem.optimizer), mb(total - mem.params - mem.grads - mem.optimizer),
            recompute ? ", recomputed" : "");
    } else
        say("%s: memory: %s, frozen, %s of %d x %d tokens: %.1f MB (weights %.1f, activations %.1f)", cmd, role,
            kind == BUDGET_LOGPROBS ? "log-probs" : "forwards", rows, T, mb(total), mb(mem.params), mb(total - mem.params));
    *sum += total;
}
static void budget_total(const char *cmd, size_t sum, int models) {
    say("%s: memory: %.1f MB for the %d model%s; the peak resident memory is about this plus the program, the data and "
        "the sampling buffers", cmd, mb(sum), models, models == 1 ? "" : "s");
}

static void fmt_duration(char *out, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(out, cap, "?");
    else if (s < 60) snprintf(out, cap, "%.0fs", s);
    else if (s < 3600) snprintf(out, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(out, cap, "%dh%02dm", (int)s / 3600, (int)s / 60 % 60);
}

/* ---- signals: the first Ctrl-C asks for a clean stop, the second quits -------- */
static void on_signal(int sig) {
    static const char msg[] = "\nrlhf: stopping at the next step boundary (a second signal quits at once)\n";
    if (g_stop) _exit(128 + sig);
    g_stop = sig;
    if (write(2, msg, sizeof msg - 1) < 0) { /* nothing to do: the stop still happens */ }
}
static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
static int should_stop(void *user) {
    (void)user;
    return g_stop != 0;
}
static int stopped_status(void) { return 128 + (int)g_stop; }

/* ---- options: --name value, --name=value, --flag, --no-flag, --flag=yes|no ---- */
enum { O_INT, O_FLOAT, O_STR, O_BOOL, O_CHOICE, O_LIST };
enum {
    O_ABOVE = 1, /* the lower bound is excluded */
    O_CTX = 2,   /* an int whose 0 (not given) means the model's context */
    O_BELOW = 4, /* the upper bound is excluded */
    O_ALIAS = 8  /* another name of the option before it (same value): left out of options.json */
};
typedef struct opt {
    const char *name, *help;
    int kind;
    void *value;         /* int*, float*, const char**, int* (bool, choice index), str_list* */
    double lo, hi;       /* numbers: the accepted range */
    int flags;
    const char *choices; /* O_CHOICE: "a|b|c" */
    int given;           /* set by parse_opts when the option is on the command line */
} opt;
#define OPT_I(n, h, p, lo, hi) {n, h, O_INT, p, lo, hi, 0, NULL, 0}
#define OPT_F(n, h, p, lo, hi) {n, h, O_FLOAT, p, lo, hi, 0, NULL, 0}
#define OPT_FA(n, h, p, lo, hi) {n, h, O_FLOAT, p, lo, hi, O_ABOVE, NULL, 0}
#define OPT_FB(n, h, p, lo, hi) {n, h, O_FLOAT, p, lo, hi, O_BELOW, NULL, 0}
#define OPT_S(n, h, p) {n, h, O_STR, p, 0, 0, 0, NULL, 0}
/* a string option that may be given several times (--reward A --reward B), in order */
typedef struct str_list { const char *v[RLHF_MAX_REWARDS]; int n; } str_list;
#define OPT_L(n, h, p) {n, h, O_LIST, p, 0, 0, 0, NULL, 0}
#define OPT_B(n, h, p) {n, h, O_BOOL, p, 0, 0, 0, NULL, 0}
/* --recompute (sft, rm, dpo, kto, pretrain, ppo): activation recompute on the trained models (rlhf_model_set_recompute) */
#define RECOMPUTE_HELP                                                                                                 \
    "recompute each layer's activations in the backward: several times less activation memory (rlhf info shows "   \
    "both budgets) for about one more forward per step; the same results, bit for bit"
/* --precompute-ref (dpo, kto): the reference's log-probs once, before the first step (rlhf_dpo_config.precompute_ref,
   rlhf_kto_config.precompute_ref) */
#define PRECOMPUTE_HELP                                                                                                \
    "the reference's log-prob of every reply in one pass before the first step, so a step runs the policy's forward " \
    "and backward alone (about a quarter less time per step); the pass costs about what one epoch of steps saves, so " \
    "it pays from the second epoch on. The same results, bit for bit"
#define DPO_ABOUT                                                                                                      \
    "Direct Preference Optimisation (Rafailov et al. 2023): the policy learns from preference pairs and rankings\n"    \
    "(a ranking of K replies is its K(K-1)/2 pairs) against a frozen reference, the SFT model, with no reward model\n" \
    "and no sampling. The step's loss is the mean over its pairs; metrics.jsonl carries TRL's names (rewards/chosen,\n" \
    "rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen, logps/rejected; val/loss,\n"                \
    "val/rewards/accuracies, val/rewards/margins). Checkpoints are policies, for generate, chat, eval, export or ppo.\n" \
    "--loss simpo (SimPO, Meng et al. 2024) has no reference: per-token mean log-probs and a target margin\n"         \
    "(--simpo-gamma). --resume needs the run's --model (and --ref) again: the reference is loaded anew (simpo: not)."
#define KTO_ABOUT                                                                                                      \
    "KTO (Ethayarajh et al. 2024, TRL's KTOTrainer): the policy learns from unpaired labels, one completion a record\n" \
    "marked desirable or not ({\"prompt\", \"completion\", \"label\": true|false}), against a frozen reference, the SFT\n" \
    "model; no reward model, no sampling. A completion's implicit reward beta log(pi/pi_ref) is pushed above the\n"   \
    "reference point z if desirable, below it if not; z is the policy's KL to the reference, estimated on each prompt\n" \
    "with another record's completion. metrics.jsonl carries TRL's names (count/chosen, count/rejected,\n"            \
    "rewards/chosen, rewards/rejected, logps/chosen, logps/rejected, kl; val/loss, val/accuracy, val/kl).\n"         \
    "Checkpoints are policies. --resume needs the run's --model (and --ref) again: the reference is loaded anew."
#define OPT_C(n, h, p, c) {n, h, O_CHOICE, p, 0, 0, 0, c, 0}
/* --max-len: the long-record rule's limit (rlhf_fit_report), from 2 tokens to the model's context (checked once it is loaded) */
#define OPT_MAXLEN(h, p) {"max-len", h, O_INT, p, 2, 1 << 20, O_CTX, NULL, 0}
#define N_OPTS(o) ((int)(sizeof o / sizeof o[0]))
#define BIG 1e9

static const char *choice_at(const char *choices, int k, char *buf, size_t cap) {
    const char *s = choices;
    for (; k > 0 && s; k--) s = strchr(s, '|') ? strchr(s, '|') + 1 : NULL;
    snprintf(buf, cap, "%.*s", s ? (int)strcspn(s, "|") : 0, s ? s : "");
    return buf;
}
static int choice_find(const char *choices, const char *v) {
    const char *s = choices;
    int k = 0;
    while (s) {
        size_t n = strcspn(s, "|");
        if (strlen(v) == n && strncmp(s, v, n) == 0) return k;
        s = s[n] ? s + n + 1 : NULL;
        k++;
    }
    return -1;
}
/* An O_CHOICE option holds the index of its choice; the enum value it names comes from a table beside
   the choices ("a|b|c" and {A, B, C}), never from the enum's numbering. choice_of: a value's index. */
static int choice_of(const int *values, int n, int value) {
    int k;
    for (k = 0; k < n && values[k] != value; k++) {}
    return k < n ? k : 0;
}
/* a list option's values joined by commas (how help and options.json show it) */
static void list_text(const str_list *l, char *buf, size_t cap) {
    int k;
    size_t len = 0;
    buf[0] = 0;
    for (k = 0; k < l->n && len < cap; k++) len += (size_t)snprintf(buf + len, cap - len, "%s%s", k ? "," : "", l->v[k]);
}
static void print_help(const char *usage, const char *about, const opt *o, int n) {
    int i;
    printf("usage: %s\n\n%s\n\noptions:\n", usage, about);
    for (i = 0; i < n; i++) {
        char def[64], name[48];
        if (o[i].kind == O_INT && (o[i].flags & O_CTX) && *(int *)o[i].value == 0) snprintf(def, sizeof def, "the model's context");
        else if (o[i].kind == O_INT) snprintf(def, sizeof def, "%d", *(int *)o[i].value);
        else if (o[i].kind == O_FLOAT) snprintf(def, sizeof def, "%g", (double)*(float *)o[i].value);
        else if (o[i].kind == O_STR) snprintf(def, sizeof def, "%s", *(const char **)o[i].value ? *(const char **)o[i].value : "none");
        else if (o[i].kind == O_CHOICE) choice_at(o[i].choices, *(int *)o[i].value, def, sizeof def);
        else if (o[i].kind == O_LIST) ((const str_list *)o[i].value)->n ? list_text((const str_list *)o[i].value, def, sizeof def)
                                                                       : (void)snprintf(def, sizeof def, "none");
        else snprintf(def, sizeof def, "%s", *(int *)o[i].value ? "on" : "off");
        if (o[i].kind == O_BOOL) snprintf(name, sizeof name, "--[no-]%s", o[i].name);
        else if (o[i].kind == O_CHOICE) snprintf(name, sizeof name, "--%s %s", o[i].name, o[i].choices);
        else snprintf(name, sizeof name, "--%s %s", o[i].name, o[i].kind == O_STR || o[i].kind == O_LIST ? "S" : o[i].kind == O_INT ? "N" : "X");
        printf("  %-32s %s (default: %s)\n", name, o[i].help, def);
    }
    printf("  %-32s threads, any command (default: the CPUs that other programs leave free; OMP_NUM_THREADS if set)\n",
           "--threads N");
    printf("  %-32s this help\n", "--help");
}
/* the accepted range of a number option, in words */
static void range_text(const opt *o, char *buf, size_t cap) {
    const char *num = o->kind == O_INT ? "an integer" : "a finite number";
    if (o->hi >= BIG) snprintf(buf, cap, "%s %s %.10g", num, o->flags & O_ABOVE ? ">" : ">=", o->lo);
    else if (o->lo <= -BIG) snprintf(buf, cap, "%s <= %.10g", num, o->hi);
    else snprintf(buf, cap, "%s in %s%.10g, %.10g%s", num, o->flags & O_ABOVE ? "(" : "[", o->lo, o->hi,
                  o->flags & O_BELOW ? ")" : "]");
}
/* one option's value; 0 on success, else the usage error has been printed */
static int set_opt(const char *cmd, opt *o, const char *val, int negated) {
    char *end;
    double d;
    if (o->kind == O_BOOL) {
        int k = val ? choice_find("yes|no|1|0|true|false|on|off", val) : 0;
        if (k < 0) return usage_error(cmd, "--%s takes yes or no (or 1/0, true/false, on/off), got \"%s\"", o->name, val);
        *(int *)o->value = (k % 2 == 0) != negated;
        return 0;
    }
    if (o->kind == O_STR) {
        if (!*val) return usage_error(cmd, "--%s needs a non-empty value", o->name);
        *(const char **)o->value = val;
        return 0;
    }
    if (o->kind == O_LIST) {
        str_list *l = (str_list *)o->value;
        if (!*val) return usage_error(cmd, "--%s needs a non-empty value", o->name);
        if (l->n == RLHF_MAX_REWARDS) return usage_error(cmd, "--%s is given more than %d times", o->name, RLHF_MAX_REWARDS);
        l->v[l->n++] = val;
        return 0;
    }
    if (o->kind == O_CHOICE) {
        int k = choice_find(o->choices, val);
        if (k < 0) return usage_error(cmd, "--%s is one of %s, got \"%s\"", o->name, o->choices, val);
        *(int *)o->value = k;
        return 0;
    }
    errno = 0;
    d = strtod(val, &end);
    if (!*val || *end || errno == ERANGE || !isfinite(d) || d < o->lo || d > o->hi || ((o->flags & O_ABOVE) && d <= o->lo) ||
        ((o->flags & O_BELOW) && d >= o->hi) || (o->kind == O_INT && d != floor(d))) {
        char want[96];
        range_text(o, want, sizeof want);
        return usage_error(cmd, "--%s must be %s, got \"%s\"", o->name, want, val);
    }
    if (o->kind == O_FLOAT && (o->flags & O_ABOVE) && !((float)d > (float)o->lo)) { /* 1e-50 is > 0 but 0 as a float */
        char want[96];
        range_text(o, want, sizeof want);
        return usage_error(cmd, "--%s must be %s, got \"%s\" (0 in single precision)", o->name, want, val);
    }
    if (o->kind == O_FLOAT && (o->flags & O_BELOW) && !((float)d < (float)o->hi)) { /* 0.49999999 < 0.5, but 0.5 as a float */
        char want[96];
        range_text(o, want, sizeof want);
        return usage_error(cmd, "--%s must be %s, got \"%s\" (%.10g in single precision)", o->name, want, val,
                           (double)(float)o->hi);
    }
    if (o->kind == O_INT) *(int *)o->value = (int)d;
    else *(float *)o->value = (float)d;
    return 0;
}
/* argv[first..] into o and pos (up to max_pos positionals).
   Returns -1 for --help, -2 after a usage error (printed), else the count of positionals. */
static int parse_opts(const char *cmd, int argc, char **argv, int first, opt *o, int n, const char **pos, int max_pos) {
    int i, np = 0;
    for (i = first; i < argc; i++) {
        const char *a = argv[i], *eq, *val;
        char name[64];
        int k, neg = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return -1;
        if (strncmp(a, "--", 2) != 0 || strcmp(a, "--") == 0) {
            if (np >= max_pos) return usage_error(cmd, "unexpected argument \"%s\"", a), -2;
            pos[np++] = a;
            continue;
        }
        eq = strchr(a, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a - 2) : (int)strlen(a + 2), a + 2);
        for (k = 0; k < n && strcmp(o[k].name, name) != 0; k++) {}
        if (k == n && strncmp(name, "no-", 3) == 0) { /* --no-flag */
            for (k = 0; k < n && !(o[k].kind == O_BOOL && strcmp(o[k].name, name + 3) == 0); k++) {}
            neg = 1;
            if (k < n && eq) return usage_error(cmd, "--%s takes no value", name), -2;
        }
        if (k == n) return usage_error(cmd, "unknown option --%s", name), -2;
        if (o[k].given && o[k].kind != O_LIST) return usage_error(cmd, "--%s is given twice", o[k].name), -2;
        o[k].given = 1;
        if (o[k].kind == O_BOOL) val = eq ? eq + 1 : NULL;
        else if (!(val = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL)) return usage_error(cmd, "--%s needs a value", name), -2;
        else if (!eq && strncmp(val, "--", 2) == 0) /* "--out --resume": a forgotten value, not a file named --resume */
            return usage_error(cmd, "--%s needs a value (got the option %s; write --%s=%s if you mean it)", name, val, name, val), -2;
        if (set_opt(cmd, &o[k], val, neg)) return -2;
    }
    return np;
}
/* After parse_opts: -1 was --help (print it: exit 0), -2 a usage error already printed (exit 2). */
static int help_or_usage(int np, const char *usage, const char *about, const opt *o, int n) {
    if (np != -1) return 2;
    print_help(usage, about, o, n);
    return 0;
}
static int given(const opt *o, int n, const char *name) {
    int k;
    for (k = 0; k < n; k++)
        if (strcmp(o[k].name, name) == 0) return o[k].given;
    return 0;
}

/* ---- files and run directories --------------------------------------------------- */
static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
/* a character or block device (/dev/zero, /dev/urandom, a terminal): read as a file, it never ends */
static int is_device(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode));
}
static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}
static int is_regular(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
static const char *join(char *buf, size_t cap, const char *dir, const char *name) {
    if ((size_t)snprintf(buf, cap, "%s/%s", dir, name) >= cap) buf[0] = 0; /* too long: an empty path fails to open */
    return buf;
}
/* the directories mkdir_p made, as it named them, for a failed run to remove (drop_new_run_dir) */
static char g_made[8][1024];
static int g_made_n;
static int mkdir_p(const char *path) {
    char buf[1024];
    size_t i, n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return 0;
    }
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++)
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) == 0) {
                if (g_made_n < 8) memcpy(g_made[g_made_n++], buf, i + 1);
            } else if (errno != EEXIST) {
                return 0;
            }
            if (!is_dir(buf)) {
                errno = ENOTDIR;
                return 0;
            }
            buf[i] = c;
        }
    return 1;
}
/* Temporary files of writers killed mid-write ("NAME.tmp-PID" whose PID is
   gone) are removed; a live writer's are left alone. */
static void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1100];
    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        const char *t = strstr(e->d_name, ".tmp-");
        char *end;
        long pid;
        if (!t) continue;
        pid = strtol(t + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno == EPERM) continue; /* its writer is alive */
        remove(join(path, sizeof path, dir, e->d_name));
    }
    closedir(d);
}
/* Every file a command writes must be writable before any work starts: a
   test file is created and removed in dir. 0 ok, else errno. */
static int probe_writable(const char *dir) {
    char path[1100], name[64];
    FILE *f;
    snprintf(name, sizeof name, ".rlhf-write-test.tmp-%ld", (long)getpid());
    if (!(f = fopen(join(path, sizeof path, dir, name), "w"))) return errno ? errno : EIO;
    if (fputs("x", f) < 0 || fclose(f) != 0) {
        int e = errno ? errno : EIO;
        remove(path);
        return e;
    }
    remove(path);
    return 0;
}
/* The checkpoints a stage writes into its run directory: they mark it as
   holding a run (metrics.jsonl alone is a run that never saved anything). */
static const char *const TRAIN_CKPTS[] = {"last.safetensors", "best.safetensors", NULL};
static const char *const PPO_CKPTS[] = {"policy.safetensors", "critic.safetensors", "ema.safetensors", NULL};
static int holds_any(const char *dir, const char *const *files) {
    char path[1100];
    int k;
    for (k = 0; files[k]; k++)
        if (exists(join(path, sizeof path, dir, files[k]))) return 1;
    return 0;
}
/* One run at a time in a run directory: an advisory lock (fcntl F_SETLK, POSIX) on RUN_LOCK inside it,
   held until the process exits. The OS drops it when its holder dies, kill -9 included, so a lock is never
   stale and the file itself means nothing: it is left in place (removing a lock file races with a run
   that has just opened it), holds_any looks only at checkpoints, and --overwrite has no reason to touch it.
   The descriptor is never closed: closing any descriptor of the file would drop the lock. This tool is
   POSIX only (no Windows build); a port would use LockFileEx on the same file.
   0 locked (or a directory that cannot hold the file: probe_writable says why), 1 held by another run. */
#define RUN_LOCK ".rlhf.lock"
static int g_run_lock_fd = -1;
static int lock_run_dir(const char *cmd, const char *dir) {
    char path[1100];
    struct flock fl;
    struct stat held, now;
    int fd, tries;
    if (g_run_lock_fd >= 0) return 0;
    for (tries = 0; tries < 8; tries++) {
        if ((fd = open(join(path, sizeof path, dir, RUN_LOCK), O_RDWR | O_CREAT, 0666)) < 0) {
            if (is_dir(dir)) say("warning: cannot lock %s (%s: %s): make sure no other run uses it", dir, path, strerror(errno));
            return 0; /* (a directory not made yet is locked once made) */
        }
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK; /* the whole file: l_whence SEEK_SET, l_start 0, l_len 0 */
        fl.l_whence = SEEK_SET;
        if (fcntl(fd, F_SETLK, &fl) != 0) {
            int e = errno;
            if (e == EACCES || e == EAGAIN) {
                char pid[48] = "";
                if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK && fl.l_pid > 0)
                    snprintf(pid, sizeof pid, " (pid %ld)", (long)fl.l_pid);
                close(fd);
                return fail(cmd, "%s is in use: another run%s holds it; wait for it to end, or give this run its own --out",
                            dir, pid);
            }
            close(fd); /* a file system without locks (ENOLCK: some network mounts): run unguarded, as before */
            say("warning: cannot lock %s (%s): make sure no other run uses it", dir, strerror(e));
            return 0;
        }
        if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
            g_run_lock_fd = fd;
            return 0;
        }
        close(fd); /* the file a failing run removed as this one opened it: lock the one in its place */
    }
    say("warning: cannot lock %s (its lock file keeps being replaced): make sure no other run uses it", dir);
    return 0;
}
/* The run directory of a training command, checked before anything is
   loaded or written: own (this stage's checkpoints), other (another stage's).
   Locked (lock_run_dir) before the checks that depend on its checkpoints.
   Returns 0 (ready), 1 (runtime failure) or 2 (usage), the message printed. */
static char g_new_run[1100]; /* the run directory this command made, or "" */
static int prepare_run_dir(const char *cmd, const char *dir, int resume, int overwrite, const char *const *own, const char *const *other) {
    char path[1100];
    int e, made;
    if (resume && overwrite) return usage_error(cmd, "--resume and --overwrite exclude each other");
    if (exists(dir) && !is_dir(dir)) return fail(cmd, "--out %s exists and is not a directory", dir);
    if (holds_any(dir, other))
        return usage_error(cmd, "%s holds the checkpoints of another stage (%s...): give this run its own --out", dir, other[0]);
    if (exists(join(path, sizeof path, dir, "pretrain.txt")) && exists(join(path, sizeof path, dir, "sft.jsonl")))
        return usage_error(cmd, "%s holds an rlhf demo run: give this run its own --out", dir);
    if (is_dir(dir) && lock_run_dir(cmd, dir)) return 1;
    if (resume && !exists(join(path, sizeof path, dir, own[0]))) return fail(cmd, "--resume: nothing to resume in %s (no %s)", dir, own[0]);
    if (holds_any(dir, own) && !resume && !overwrite)
        return usage_error(cmd, "%s already holds a run: add --resume to continue it, or --overwrite to start again", dir);
    made = !exists(dir);
    g_made_n = 0;
    if (!mkdir_p(dir)) return fail(cmd, "cannot create the run directory %s: %s", dir, strerror(errno));
    if (lock_run_dir(cmd, dir)) return 1; /* two runs that made it at once: the loser must not remove it */
    if (made) snprintf(g_new_run, sizeof g_new_run, "%s", dir);
    if ((e = probe_writable(dir)) != 0) return fail(cmd, "cannot write in %s: %s", dir, strerror(e));
    remove_stale_tmp(dir);
    return 0;
}
/* A fresh run, once everything it needs has loaded: the old run's files go
   (--overwrite), and so does the metrics.jsonl of a run that never saved. */
static void clear_run(const char *dir, const char *const *own) {
    char path[1100];
    int k;
    for (k = 0; own[k]; k++) remove(join(path, sizeof path, dir, own[k]));
    remove(join(path, sizeof path, dir, "metrics.jsonl"));
    remove(join(path, sizeof path, dir, "options.json"));
}
/* A training command that failed or stopped before its first checkpoint leaves no
   directory behind when it made it: its options.json and metrics.jsonl go (clear_run;
   there is no checkpoint to remove), then the directories mkdir_p made for it, the
   deepest first, each if nothing else is in it (rmdir refuses otherwise). By the
   names mkdir_p made them under: a/../b/run made a and b/run, never touches b. */
static int drop_new_run_dir(int rc) {
    char path[1100];
    if (rc == 0 || !g_new_run[0] || holds_any(g_new_run, TRAIN_CKPTS) || holds_any(g_new_run, PPO_CKPTS)) return rc;
    clear_run(g_new_run, TRAIN_CKPTS);
    remove(join(path, sizeof path, g_new_run, RUN_LOCK)); /* only its holder is in it (lock_run_dir) */
    while (g_made_n > 0 && rmdir(g_made[g_made_n - 1]) == 0) g_made_n--;
    return rc;
}
/* The options of a run, in options.json: a --resume with other values is
   told so (it continues, but is no longer the run it resumes, bit for bit).
   Options that only steer the command (where, how long, how often; --recompute and
   --precompute-ref, which give the same bytes) are left out. */
static int opt_steers_only(const char *name) {
    static const char *const names[] = {"out", "resume", "overwrite", "skip-bad", "steps", "epochs", "iters", "save-every", "log-every", "eval-every",
                                        "recompute", "precompute-ref"};
    size_t k;
    for (k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(name, names[k]) == 0) return 1;
    return 0;
}
static void opt_text(const opt *o, char *buf, size_t cap) {
    if (o->kind == O_INT) snprintf(buf, cap, "%d", *(int *)o->value);
    else if (o->kind == O_FLOAT) snprintf(buf, cap, "%.9g", (double)*(float *)o->value);
    else if (o->kind == O_STR) snprintf(buf, cap, "%s", *(const char **)o->value ? *(const char **)o->value : "");
    else if (o->kind == O_CHOICE) choice_at(o->choices, *(int *)o->value, buf, cap);
    else if (o->kind == O_LIST) list_text((const str_list *)o->value, buf, cap);
    else snprintf(buf, cap, "%s", *(int *)o->value ? "yes" : "no");
}
static int save_options(const char *cmd, const char *dir, const opt *o, int n) {
    char path[1100], v[1024];
    atomic_file a;
    FILE *f = atomic_open(&a, join(path, sizeof path, dir, "options.json"));
    int k;
    if (!f) return fail(cmd, "cannot write %s: %s", path, strerror(errno));
    fprintf(f, "{\"command\": \"%s\"", cmd);
    for (k = 0; k < n; k++) {
        const char *c;
        if (opt_steers_only(o[k].name) || (o[k].flags & O_ALIAS)) continue;
        opt_text(&o[k], v, sizeof v);
        fprintf(f, ", \"%s\": \"", o[k].name);
        for (c = v; *c; c++) {
            if (*c == '"' || *c == '\\') fputc('\\', f);
            fputc((unsigned char)*c < 32 ? '?' : *c, f);
        }
        fputc('"', f);
    }
    fprintf(f, "}\n");
    return atomic_commit(&a) == 0 ? 0 : fail(cmd, "cannot write %s: %s", path, strerror(errno));
}
static int opt_makes_model(const char *name) {
    static const char *const names[] = {"model", "tokenizer", "layers", "heads", "embd", "ctx"};
    size_t k;
    for (k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(name, names[k]) == 0) return 1;
    return 0;
}
static int compare_options(const char *cmd, const char *dir, const opt *o, int n) {
    char path[1100], v[1024], *text;
    size_t len;
    FILE *f = fopen(join(path, sizeof path, dir, "options.json"), "rb");
    rlhf_json_doc *doc = NULL;
    const rlhf_json *root, *x;
    int k, differ = 0;
    if (!f) { /* a run from before options.json, or one whose file was removed */
        say("warning: %s has no options.json: cannot check that it holds a %s run, nor which options it used", dir, cmd);
        return 0;
    }
    text = (char *)malloc(1 << 16);
    len = text ? fread(text, 1, 1 << 16, f) : 0;
    fclose(f);
    if (!text || rlhf_json_parse(&doc, text, len, 4, NULL) != RLHF_OK) {
        free(text);
        return fail(cmd, "%s/options.json is not readable JSON: cannot check that %s holds a %s run; restore the file, or "
                    "remove it to resume without the check", dir, dir, cmd);
    }
    free(text);
    root = rlhf_json_root(doc);
    if ((x = rlhf_json_get(root, "command")) && x->type == RLHF_JSON_STRING && strcmp(x->str, cmd) != 0) {
        int rc = usage_error(cmd, "%s holds a %s run, not a %s run: give this run its own --out", dir, x->str, cmd);
        rlhf_json_free(doc); /* after the message: x points into doc */
        return rc;
    }
    for (k = 0; k < n; k++) {
        /* a resumed run starts from its last.safetensors, which holds the model, its shape and its tokenizer:
           --model, --tokenizer and pretrain's --layers, --heads, --embd, --ctx, left out, are only named where the
           run began (given, a shape that differs is refused by resume_matches, a --tokenizer by model_tokenizer) */
        if (opt_steers_only(o[k].name) || (o[k].flags & O_ALIAS) || (opt_makes_model(o[k].name) && !o[k].given) ||
            !(x = rlhf_json_get(root, o[k].name)) ||
            x->type != RLHF_JSON_STRING)
            continue;
        opt_text(&o[k], v, sizeof v);
        if (strcmp(v, x->str) != 0)
            say("warning: --%s is %s here but %s in the run being resumed", o[k].name, v[0] ? v : "(none)", x->str[0] ? x->str : "(none)"), differ++;
    }
    if (differ) say("warning: %d options differ from the run's (%s/options.json): the resumed run is no longer the one it continues, bit for bit", differ, dir);
    rlhf_json_free(doc);
    return 0;
}
/* Keep the lines of metrics.jsonl that a resumed run will not write again:
   every line of other stages, and this stage's lines up to step. A line
   cut by a kill (not JSON) goes too. Rewritten atomically. */
static int truncate_metrics(const char *cmd, const char *dir, const char *stage, long step) {
    char path[1100], *line = NULL;
    size_t cap = 0;
    long dropped = 0;
    ssize_t n;
    FILE *in;
    atomic_file a;
    FILE *out;
    join(path, sizeof path, dir, "metrics.jsonl");
    if (exists(path) && !is_regular(path)) /* a device would be read forever (/dev/zero's zeros are one long line) */
        return fail(cmd, "%s is not a regular file (a device, a pipe or a directory): remove it to resume", path);
    if (!(in = fopen(path, "r"))) return 0; /* nothing yet */
    if (!(out = atomic_open(&a, path))) {
        fclose(in);
        return fail(cmd, "cannot write %s: %s", path, strerror(errno));
    }
    errno = 0;
    while ((n = getline(&line, &cap, in)) > 0) {
        rlhf_json_doc *doc;
        int keep = 0;
        if (rlhf_json_parse(&doc, line, (size_t)n, 8, NULL) == RLHF_OK) {
            const rlhf_json *o = rlhf_json_root(doc), *st = rlhf_json_get(o, "stage"), *sp = rlhf_json_get(o, "step");
            keep = !st || st->type != RLHF_JSON_STRING || strcmp(st->str, stage) != 0 || (sp && sp->type == RLHF_JSON_NUMBER && sp->number <= (double)step);
            rlhf_json_free(doc);
        }
        if (keep) fputs(line, out);
        else dropped++;
    }
    free(line);
    if (ferror(in) || (n < 0 && errno == ENOMEM)) {
        int e = errno;
        fclose(in);
        atomic_abort(&a);
        return fail(cmd, "cannot read %s: %s", path, strerror(e ? e : EIO));
    }
    fclose(in);
    if (atomic_commit(&a) != 0) return fail(cmd, "cannot rewrite %s: %s", path, strerror(errno));
    if (dropped) say("metrics.jsonl: %ld lines after step %ld dropped (they will be written again)", dropped, step);
    return 0;
}
static FILE *open_metrics(const char *cmd, const char *dir) {
    char path[1100];
    FILE *f = fopen(join(path, sizeof path, dir, "metrics.jsonl"), "a");
    if (!f) fail(cmd, "cannot write %s: %s", path, strerror(errno));
    return f;
}
/* A whole file into memory (a text file for the tokenizer): refuses a
   directory and an empty file; a leading UTF-8 byte-order mark is dropped. */
static char *read_text(const char *cmd, const char *path, size_t *len) {
    FILE *f;
    char *text = NULL;
    size_t cap = 1 << 20, n = 0;
    if (is_dir(path)) return fail(cmd, "%s is a directory, not a text file", path), (char *)NULL;
    if (is_device(path)) return fail(cmd, "%s is a device, not a text file (a file or a pipe is read to its end)", path), (char *)NULL;
    if (!(f = fopen(path, "rb"))) return fail(cmd, "cannot read %s: %s", path, strerror(errno)), (char *)NULL;
    for (;;) {
        char *grown = (char *)realloc(text, cap);
        if (!grown) {
            free(text);
            fclose(f);
            return fail(cmd, "out of memory reading %s", path), (char *)NULL;
        }
        text = grown;
        n += fread(text + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
    }
    if (ferror(f)) {
        fclose(f);
        free(text);
        return fail(cmd, "cannot read %s: %s", path, strerror(errno)), (char *)NULL;
    }
    fclose(f);
    if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) memmove(text, text + 3, n -= 3);
    if (n == 0) {
        free(text);
        return fail(cmd, "%s is empty: nothing to learn from", path), (char *)NULL;
    }
    *len = n;
    return text;
}

/* ---- models and data, with messages that name the option ------------------------ */
/* The library's "PATH: cannot open the file" (or "cannot read the file (or over 256 MiB)") says what and where,
   not why: its open's errno is gone by the time it returns. The reason is that of an open of PATH here
   (msg unchanged when PATH opens now: the library failed later, and its message says how). */
static const char *os_reason(const char *msg, const char *path, char *buf, size_t cap) {
    const char *cut = strstr(msg, " (or over 256 MiB)");
    FILE *f;
    int e;
    if (!strstr(msg, "cannot open the file") && !strstr(msg, "cannot read the file")) return msg;
    errno = 0;
    if ((f = fopen(path, "rb")) != NULL) {
        fclose(f);
        return msg;
    }
    e = errno ? errno : EIO;
    snprintf(buf, cap, "%.*s: %s", cut ? (int)(cut - msg) : (int)strlen(msg), msg, strerror(e));
    return buf;
}
/* A safetensors file: an 8-byte little-endian header length, then the header's '{' */
static int looks_like_safetensors(const char *path) {
    unsigned char b[9];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(b, 1, sizeof b, f) : 0;
    if (f) fclose(f);
    return n == sizeof b && b[8] == '{' && b[6] == 0 && b[7] == 0;
}
/* A tokenizer given as --what: a Hugging Face directory or its files (tokenizer.json; vocab.json or
   encoder.json with merges.txt or vocab.bpe beside it), else an rlhf tokenizer file. */
static int load_tokenizer_any(const char *cmd, const char *what, const char *path, rlhf_tokenizer **t) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    rlhf_error err, hf;
    char why[sizeof err.message + 64];
    *t = NULL;
    err.message[0] = 0;
    if (!is_dir(path) && looks_like_safetensors(path))
        return fail(cmd, "%s %s is a checkpoint, not a tokenizer (a checkpoint rlhf wrote carries its own; give a "
                    "tokenizer file, or a Hugging Face directory or its tokenizer.json)", what, path);
    if (!is_dir(path) && strcmp(base, "vocab.json") && strcmp(base, "merges.txt") && strcmp(base, "encoder.json") &&
        strcmp(base, "vocab.bpe")) {
        if (rlhf_tokenizer_load(t, path, &err) == RLHF_OK) return 0;
        if (!strstr(err.message, "not an rlhf.h tokenizer"))
            return fail(cmd, "%s %s", what, os_reason(err.message, path, why, sizeof why));
    }
    if (rlhf_tokenizer_load_hf(t, path, &hf) != RLHF_OK) {
        if (err.message[0] && strstr(hf.message, "an rlhf tokenizer loads with")) /* an rlhf tokenizer, damaged */
            return fail(cmd, "%s %s", what, err.message);
        return fail(cmd, "%s %s", what, is_dir(path) ? hf.message : os_reason(hf.message, path, why, sizeof why));
    }
    return 0;
}
/* The tokenizer of a model loaded from path: its own (the checkpoint's metadata), else tokfile
   (--tokenizer), else the files of a Hugging Face directory. */
static int model_tokenizer(const char *cmd, const char *what, const char *path, const char *tokfile, rlhf_model *m,
                           rlhf_tokenizer **tok) {
    int has_tok = choice_find("sft|rm|dpo|kto|pretrain", cmd) >= 0; /* commands with --tokenizer */
    rlhf_error err;
    if (rlhf_model_meta(m, "tokenizer")) {
        if (tokfile)
            return fail(cmd, "%s %s carries its own tokenizer: --tokenizer is for a model without one", what, path);
        if (rlhf_tokenizer_from_model(tok, m, &err) == RLHF_OK) return 0;
        return fail(cmd, "%s %s: %s", what, path, err.message);
    }
    if (tokfile) return load_tokenizer_any(cmd, "--tokenizer", tokfile, tok);
    if (is_dir(path) && rlhf_tokenizer_load_hf(tok, path, &err) == RLHF_OK) return 0;
    if (is_dir(path))
        return fail(cmd, "%s %s%s", what, err.message, has_tok ? "; or give --tokenizer" : "");
    return fail(cmd, "%s %s has no tokenizer in its metadata%s", what, path, has_tok ? ": give --tokenizer" : "");
}
/* A model with fewer tokens than its tokenizer (GPT-2's 50,257 and rlhf's 5 chat markers) grows:
   new embedding rows at the mean of the old ones, every old logit unchanged. One line says so. */
static int grow_vocab(const char *cmd, rlhf_model *m, const rlhf_tokenizer *t, int quiet) {
    int V = rlhf_model_config(m)->vocab_size, V2 = rlhf_tokenizer_vocab_size(t), id;
    char names[256] = "";
    size_t len = 0;
    if (V2 <= V) return 0;
    for (id = V; id < V2 && len + 40 < sizeof names; id++) { /* the new tokens, as text */
        char tok[32];
        size_t nb = 0;
        if (rlhf_tokenizer_decode(t, &id, 1, tok, sizeof tok - 1, &nb) != RLHF_OK) nb = 0;
        tok[nb < sizeof tok ? nb : sizeof tok - 1] = 0;
        len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", id > V ? " " : "", tok);
    }
    if (id < V2) snprintf(names + len, sizeof names - len, " ...");
    if (rlhf_model_resize_vocab(m, V2) != RLHF_OK)
        return fail(cmd, "cannot grow the vocabulary to %d tokens: %s", V2, lib_msg(rlhf_model_last_error(m)));
    if (!quiet)
        say("%s: vocabulary grown from %d to %d tokens for %s (new rows at the mean of the old ones)", cmd, V, V2, names);
    return 0;
}
enum { ROLE_ANY, ROLE_POLICY, ROLE_SCORER };
/* A checkpoint whose weights hold a NaN or an infinity (a diverged run saved, a corrupted file): named at load,
   before it becomes a training run's "step 0 diverged" or a generator's garbage. 1 (said) or 0. */
static int broken_weights(const char *cmd, const char *what, const char *path, rlhf_model *m) {
    int i, n = rlhf_model_num_tensors(m);
    for (i = 0; i < n; i++) {
        rlhf_tensor_info ti;
        size_t j;
        if (rlhf_model_tensor(m, i, &ti) != RLHF_OK) continue;
        for (j = 0; j < ti.numel; j++)
            if (!isfinite(ti.data[j]))
                return fail(cmd, "%s %s: %s[%zu] is %g: the checkpoint's weights are broken (a diverged run, or a damaged "
                            "file); use an earlier checkpoint", what, path, ti.name, j, (double)ti.data[j]) != 0;
    }
    return 0;
}
static rlhf_model *load_model_tok(const char *cmd, const char *what, const char *path, int role, rlhf_tokenizer **tok,
                                  const char *tokfile, int grow);
/* load the checkpoint given as --what (role: a policy has no scalar head, a scorer has one) */
static rlhf_model *load_model(const char *cmd, const char *what, const char *path, int role, rlhf_tokenizer **tok) {
    return load_model_tok(cmd, what, path, role, tok, NULL, 0);
}
/* The same, with its tokenizer from tokfile when the checkpoint has none (see model_tokenizer);
   grow: a vocabulary smaller than the tokenizer's grows (training), else it is refused. */
static rlhf_model *load_model_tok(const char *cmd, const char *what, const char *path, int role, rlhf_tokenizer **tok,
                                  const char *tokfile, int grow) {
    rlhf_model *m = NULL;
    rlhf_error err;
    char why[sizeof err.message + 64];
    if (rlhf_model_load_ex(&m, path, &err) != RLHF_OK) {
        fail(cmd, "%s: %s", what, os_reason(err.message, path, why, sizeof why));
        return NULL;
    }
    if (broken_weights(cmd, what, path, m)) {
        rlhf_model_free(m);
        return NULL;
    }
    if (role == ROLE_POLICY && rlhf_model_has_score_head(m)) {
        fail(cmd, "%s %s is a %s model (it has a scalar head): a policy (a base or SFT checkpoint) is needed here", what, path,
             rlhf_model_meta(m, "rlhf.kind") ? rlhf_model_meta(m, "rlhf.kind") : "reward or value");
        rlhf_model_free(m);
        return NULL;
    }
    if (role == ROLE_SCORER && rlhf_model_meta(m, "rlhf.kind") && strcmp(rlhf_model_meta(m, "rlhf.kind"), "value") == 0 && strcmp(what, "--critic") != 0) {
        fail(cmd, "%s %s is a value model (a PPO critic), not a reward model", what, path);
        rlhf_model_free(m);
        return NULL;
    }
    if (role == ROLE_SCORER && !rlhf_model_has_score_head(m)) {
        fail(cmd, "%s %s has no scalar head: it is a %s, not a reward model (train one with rlhf rm)", what, path,
             rlhf_model_meta(m, "rlhf.kind") ? rlhf_model_meta(m, "rlhf.kind") : "policy");
        rlhf_model_free(m);
        return NULL;
    }
    if (tok && model_tokenizer(cmd, what, path, tokfile, m, tok) != 0) {
        rlhf_model_free(m);
        return NULL;
    }
    rlhf_model_set_log(m, log_cb, NULL);
    if (!tok) return m;
    if (grow ? grow_vocab(cmd, m, *tok, 0) != 0
             : rlhf_tokenizer_vocab_size(*tok) > rlhf_model_config(m)->vocab_size &&
                   fail(cmd, "%s %s: the tokenizer has %d tokens but the model only %d (rlhf's chat markers after GPT-2's?): "
                        "fine-tune it with rlhf sft first, which grows the vocabulary",
                        what, path, rlhf_tokenizer_vocab_size(*tok), rlhf_model_config(m)->vocab_size)) {
        rlhf_tokenizer_free(*tok);
        *tok = NULL;
        rlhf_model_free(m);
        return NULL;
    }
    return m;
}
/* skipped bad records are counted and reported, never silent */
static void skip_log(void *user, rlhf_log_level level, const char *msg) {
    (void)user;
    (void)level;
    say("warning: skipped: %s", msg);
}
/* The format a record's keys say it is in, into *fmt and *what ("preference", "SFT", ...), and returned; unchanged
   (a prompt, for bon) when none fits. TEXT: {"text"} without a prompt, which no *fmt names. */
static rlhf_data_format record_format(const rlhf_json *o, rlhf_data_format *fmt, const char **what) {
    const rlhf_json *msgs = rlhf_json_get(o, "messages");
    const rlhf_json *last = msgs && msgs->type == RLHF_JSON_ARRAY && msgs->len ? rlhf_json_at(msgs, msgs->len - 1) : NULL;
    const rlhf_json *role = last && last->type == RLHF_JSON_OBJECT ? rlhf_json_get(last, "role") : NULL;
    if (rlhf_json_get(o, "text") && !rlhf_json_get(o, "prompt") && !msgs) return RLHF_DATA_TEXT;
    if (rlhf_json_get(o, "chosen") || rlhf_json_get(o, "completions")) *fmt = RLHF_DATA_PREFERENCE, *what = "preference";
    else if (rlhf_json_get(o, "completion") && rlhf_json_get(o, "label")) *fmt = RLHF_DATA_UNPAIRED, *what = "unpaired preference";
    else if (rlhf_json_get(o, "completion")) *fmt = RLHF_DATA_SFT, *what = "SFT";
    else if (role && role->type == RLHF_JSON_STRING && strcmp(role->str, "assistant") == 0) *fmt = RLHF_DATA_SFT, *what = "SFT";
    return *fmt;
}
/* A file that fails to load as fmt because it holds records of another kind (pairs given to kto, SFT records to
   dpo): what it holds and what cmd needs, from its first record, else "". */
static const char *other_format(const char *cmd, const char *path, rlhf_data_format fmt, char *buf, size_t cap) {
    static const char *const needs[] = {"text", "SFT records ({\"prompt\", \"completion\"} or {\"messages\"})",
                                        "preference pairs or rankings ({\"chosen\", \"rejected\"} or {\"completions\", \"ranking\"})",
                                        "prompts", "unpaired labels ({\"prompt\", \"completion\", \"label\": true|false})"};
    static const char *const readers[] = {"", "rlhf sft", "rlhf dpo and rlhf rm", "", "rlhf kto"};
    rlhf_jsonl *in = NULL;
    rlhf_json_doc *doc = NULL;
    rlhf_json_error e;
    rlhf_data_format got = RLHF_DATA_PROMPTS;
    const char *what = NULL;
    buf[0] = 0;
    if (rlhf_jsonl_open(&in, path, 0, &e) != RLHF_OK) return buf;
    if (rlhf_jsonl_next(in, &doc, &e) == RLHF_OK && doc && rlhf_json_root(doc)->type == RLHF_JSON_OBJECT)
        record_format(rlhf_json_root(doc), &got, &what);
    rlhf_json_free(doc);
    rlhf_jsonl_close(in);
    if (what && got != fmt && (int)fmt < 5)
        snprintf(buf, cap, ". %s holds %s records, which %s read%s; rlhf %s needs %s", path, what, readers[got],
                 got == RLHF_DATA_PREFERENCE ? "" : "s", cmd, needs[fmt]);
    return buf;
}
static rlhf_dataset *load_data(const char *cmd, const char *path, rlhf_data_format fmt, int skip_bad) {
    rlhf_dataset *d = NULL;
    rlhf_data_options o = rlhf_data_options_default();
    rlhf_error err;
    o.skip_bad = skip_bad;
    o.log = skip_log;
    if (is_dir(path)) return fail(cmd, "%s is a directory, not a data file", path), (rlhf_dataset *)NULL;
    if (is_device(path))
        return fail(cmd, "%s is a device, not a data file (a file or a pipe is read to its end)", path), (rlhf_dataset *)NULL;
    if (!exists(path)) return fail(cmd, "cannot read %s: %s", path, strerror(errno)), (rlhf_dataset *)NULL;
    if (rlhf_dataset_load(&d, path, fmt, &o, &err) != RLHF_OK) {
        char other[512];
        int record = !strstr(err.message, ":0:0:") && strstr(err.message, "no records") == NULL; /* a bad record, not the file */
        other[0] = 0;
        if (strstr(err.message, ": missing \"")) other_format(cmd, path, fmt, other, sizeof other); /* a key of another format? */
        fail(cmd, "%s%s%s", err.message, other, skip_bad || !record || other[0] ? "" : " (--skip-bad skips and counts bad records)");
        return NULL;
    }
    if (rlhf_dataset_skipped(d)) say("%s: %zu bad records skipped, %zu kept", path, rlhf_dataset_skipped(d), rlhf_dataset_size(d));
    if (rlhf_dataset_unshared_prompts(d)) /* the reader's counts of pairs taken another way than most (README) */
        say("%s: %zu pair%s without a \"prompt\" share%s no opening (each reply learned whole, after an empty "
            "prompt)", path, rlhf_dataset_unshared_prompts(d), rlhf_dataset_unshared_prompts(d) == 1 ? "" : "s",
            rlhf_dataset_unshared_prompts(d) == 1 ? "s" : "");
    if (rlhf_dataset_unsplit_transcripts(d))
        say("%s: %zu transcript%s not in \"\\n\\nHuman:\" / \"\\n\\nAssistant:\" turns, kept as plain text", path,
            rlhf_dataset_unsplit_transcripts(d), rlhf_dataset_unsplit_transcripts(d) == 1 ? "" : "s");
    if (rlhf_dataset_size(d) == 0) {
        fail(cmd, "%s holds no record", path);
        rlhf_dataset_free(d);
        return NULL;
    }
    return d;
}

/* ---- replies: the chat template, the KV cache and the sampler ------------------ */
typedef struct sampler_ctx {
    rlhf_kv_cache *cache;
    rlhf_sampler *s;
    rlhf_rng rng;
    int *ids;       /* n_ctx ids: the conversation, then the reply */
} sampler_ctx;
static void sampler_close(sampler_ctx *sc) {
    rlhf_kv_cache_free(sc->cache);
    rlhf_sampler_free(sc->s);
    free(sc->ids);
    memset(sc, 0, sizeof *sc);
}
static int sampler_open(sampler_ctx *sc, rlhf_model *m, const rlhf_sampler_config *c, uint64_t seed) {
    int n_ctx = rlhf_model_config(m)->n_ctx;
    memset(sc, 0, sizeof *sc);
    rlhf_rng_seed(&sc->rng, seed);
    sc->ids = (int *)malloc((size_t)n_ctx * sizeof(int));
    if (sc->ids && rlhf_kv_cache_create(&sc->cache, m, 1, n_ctx) == RLHF_OK && rlhf_sampler_create(&sc->s, rlhf_model_config(m)->vocab_size, c) == RLHF_OK)
        return 1;
    sampler_close(sc);
    return 0;
}
static int sampler_open_t(sampler_ctx *sc, rlhf_model *m, float temperature, uint64_t seed) {
    rlhf_sampler_config c = rlhf_sampler_config_default();
    c.temperature = temperature;
    return sampler_open(sc, m, &c, seed);
}
enum { REPLY_OK, REPLY_CUT, REPLY_TOO_LONG, REPLY_FAILED };
/* The reply to a conversation ending in a user turn, decoded into out
   without its <|end|>. REPLY_CUT: it stopped at max_new (or the context)
   before <|end|>; REPLY_TOO_LONG: the conversation leaves no room for a reply.
   One position is always kept free, so a cut reply can still take the
   <|end|> a reward model reads it at. */
static int reply_to(rlhf_model *m, const rlhf_tokenizer *t, sampler_ctx *sc, const rlhf_message *msg, int n_msg, int max_new, char *out, size_t cap) {
    int n_ctx = rlhf_model_config(m)->n_ctx, n_out = 0, stop = rlhf_tokenizer_reply_end(t), cut;
    size_t np = 0, nb = 0;
    out[0] = 0;
    if (rlhf_tokenizer_chat(t, msg, n_msg, 1, sc->ids, NULL, (size_t)n_ctx, &np) != RLHF_OK || (int)np + 2 > n_ctx) return REPLY_TOO_LONG;
    if (max_new > n_ctx - 1 - (int)np) max_new = n_ctx - 1 - (int)np;
    if (rlhf_model_generate(m, sc->cache, sc->s, &sc->rng, sc->ids, (int)np, max_new, stop, sc->ids + np, &n_out) != RLHF_OK) return REPLY_FAILED;
    cut = !(n_out > 0 && sc->ids[np + (size_t)n_out - 1] == stop);
    if (!cut) n_out--;
    if (rlhf_tokenizer_decode(t, sc->ids + np, (size_t)n_out, out, cap - 1, &nb) != RLHF_OK) nb = 0;
    out[nb < cap - 1 ? nb : cap - 1] = 0;
    return cut ? REPLY_CUT : REPLY_OK;
}
/* Bytes a model produced need not be UTF-8 (a byte-level token can split a
   character): invalid sequences become U+FFFD, so a terminal or a JSON
   reader always gets text. out needs 3 * strlen(in) + 1 bytes at most. */
static void utf8_clean(const char *in, char *out, size_t cap) {
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    while (*s && o + 4 < cap) {
        int n = *s < 0x80 ? 1 : (*s & 0xE0) == 0xC0 && *s >= 0xC2 ? 2 : (*s & 0xF0) == 0xE0 ? 3 : (*s & 0xF8) == 0xF0 && *s <= 0xF4 ? 4 : 0, k;
        for (k = 1; k < n; k++)
            if ((s[k] & 0xC0) != 0x80) n = 0;
        if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) n = 0; /* overlong, surrogate */
        if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) n = 0;  /* overlong, > U+10FFFF */
        if (n == 1 && *s < 0x20 && *s != '\n' && *s != '\t') n = 0; /* control bytes would drive the terminal */
        if (n == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            s++;
            continue;
        }
        memcpy(out + o, s, (size_t)n);
        o += (size_t)n;
        s += n;
    }
    out[o] = 0;
}

/* ---- progress: metrics.jsonl, and on a terminal the status line ----------------- */
typedef struct run_out {
    FILE *metrics;
    double t0;
    long first_step;   /* the step the run (re)started at: the rate counts from there */
    const char *stage;
    int metrics_lost;  /* a line failed to reach metrics.jsonl (a full disk): said once */
} run_out;
static double json_field(const char *json, const char *key) {
    char pat[64];
    const char *p;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = strstr(json, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}
static void run_metrics(void *user, const char *json) {
    run_out *r = (run_out *)user;
    double step = json_field(json, "step"), total = json_field(json, "total_steps"), loss = json_field(json, "loss");
    if (r->metrics && (fprintf(r->metrics, "%s\n", json) < 0 || fflush(r->metrics) != 0) && !r->metrics_lost++)
        say("warning: metrics.jsonl: %s: metric lines are being lost from step %.0f on (the checkpoints are written "
            "as before, each checked)", strerror(errno), step);
    if (g_tty && isfinite(step) && isfinite(total)) {
        double el = now_s() - r->t0, rate = el > 0 ? (step - (double)r->first_step) / el : 0;
        char eta[32], lbuf[32] = "";
        fmt_duration(eta, sizeof eta, rate > 0 ? (total - step) / rate : -1);
        if (isfinite(loss)) snprintf(lbuf, sizeof lbuf, " loss %.4f", loss);
        status_set("[%s] step %.0f/%.0f%s  %.1f steps/s  ETA %s", r->stage, step, total, lbuf, rate, eta);
    }
}

/* ---- info ------------------------------------------------------------------------ */
static int cmd_info(int argc, char **argv) {
    const char *pos[1];
    rlhf_model *m;
    rlhf_tokenizer *t = NULL;
    rlhf_error err;
    rlhf_memory mem, inf;
    const rlhf_config *c;
    int np = parse_opts("info", argc, argv, 2, NULL, 0, pos, 1);
    if (np < 0) return help_or_usage(np, "rlhf info CHECKPOINT", "A checkpoint's config, kind, tokenizer, parameter count and memory budget.", NULL, 0);
    if (np != 1) return usage_error("info", "needs one CHECKPOINT");
    if (!(m = load_model("info", "CHECKPOINT", pos[0], ROLE_ANY, NULL))) return 1;
    c = rlhf_model_config(m);
    printf("%s\n  config: vocab %d, n_ctx %d, layers %d, heads %d, channels %d\n", pos[0], c->vocab_size, c->n_ctx, c->n_layer, c->n_head,
           c->n_embd);
    printf("  kind: %s%s\n  parameters: %zu\n", rlhf_model_meta(m, "rlhf.kind") ? rlhf_model_meta(m, "rlhf.kind") : "(not set)",
           rlhf_model_has_score_head(m) ? " (scalar head)" : "", rlhf_model_num_params(m));
    if (rlhf_tokenizer_from_model(&t, m, &err) == RLHF_OK) {
        printf("  tokenizer: %d tokens (EOS %d, pad %d, <|end|> %d); template %s, replies end with token %d\n", rlhf_tokenizer_vocab_size(t),
               rlhf_tokenizer_special(t, RLHF_TOKEN_EOS), rlhf_tokenizer_special(t, RLHF_TOKEN_PAD), rlhf_tokenizer_special(t, RLHF_TOKEN_END),
               rlhf_tokenizer_template(t) == RLHF_TEMPLATE_HH ? "hh (HH-RLHF plain text)" : "chat", rlhf_tokenizer_reply_end(t));
        rlhf_tokenizer_free(t);
    } else if (is_dir(pos[0]) && rlhf_tokenizer_load_hf(&t, pos[0], &err) == RLHF_OK) {
        printf("  tokenizer: none stored; the directory's files give %d tokens (EOS %d, <|end|> %d)\n",
               rlhf_tokenizer_vocab_size(t), rlhf_tokenizer_special(t, RLHF_TOKEN_EOS), rlhf_tokenizer_special(t, RLHF_TOKEN_END));
        rlhf_tokenizer_free(t);
    } else
        printf("  tokenizer: none stored\n");
    if (rlhf_model_has_score_head(m))
        printf("  reward normalisation: %s%s%s%s\n", rlhf_model_meta(m, "rlhf.reward.gain") ? "gain " : "none (raw scores)",
               rlhf_model_meta(m, "rlhf.reward.gain") ? rlhf_model_meta(m, "rlhf.reward.gain") : "",
               rlhf_model_meta(m, "rlhf.reward.bias") ? ", bias " : "",
               rlhf_model_meta(m, "rlhf.reward.bias") ? rlhf_model_meta(m, "rlhf.reward.bias") : "");
    if (rlhf_model_meta(m, "rlhf.train.step"))
        printf("  training step: %s, AdamW steps %ld\n", rlhf_model_meta(m, "rlhf.train.step"), rlhf_model_adamw_steps(m));
    if (rlhf_model_meta(m, "rlhf.ppo.state")) printf("  PPO state: %s\n", rlhf_model_meta(m, "rlhf.ppo.state"));
    if (rlhf_model_memory(m, 8, c->n_ctx, 1, &mem) == RLHF_OK) {
        /* the parts of rlhf_memory's total, all of them: activations are the forward caches and the backward scratch */
        printf("  memory to train on 8 x %d tokens: %.1f MB (weights %.1f, grads %.1f, AdamW %.1f, activations %.1f, "
               "matmul workspace %.1f)\n", c->n_ctx, mb(mem.total), mb(mem.params), mb(mem.grads), mb(mem.optimizer),
               mb(mem.activations + mem.backward), mb(mem.workspace));
        printf("    with --recompute: %.1f MB (weights, grads, AdamW and workspace as above; activations %.1f)\n",
               mb(mem.total_recompute), mb(mem.activations_recompute + mem.backward));
    }
    if (rlhf_model_memory(m, 8, c->n_ctx, 1, &mem) == RLHF_OK && rlhf_model_memory(m, 8, c->n_ctx, 0, &inf) == RLHF_OK)
        printf("  memory for PPO, minibatches of 8 x %d tokens, four models of this size: %.1f MB (policy and critic trained,\n"
               "    %.1f each; reference's log-probs %.1f; reward model's forwards %.1f)\n", c->n_ctx,
               mb(2 * mem.total + mem.params + mem.activations + mem.workspace + inf.total), mb(mem.total),
               mb(mem.params + mem.activations + mem.workspace), mb(inf.total));
    rlhf_model_free(m);
    return 0;
}

/* ---- generate and chat ------------------------------------------------------------ */
typedef struct gen_opts {
    int n, top_k, max_new, seed;
    float temperature, top_p;
    const char *prompt, *system;
} gen_opts;
/* the sampler's options, checked against the model once it is loaded */
static int gen_setup(const char *cmd, rlhf_model *m, gen_opts *g, int max_new_given, sampler_ctx *sc) {
    rlhf_sampler_config c = rlhf_sampler_config_default();
    int n_ctx = rlhf_model_config(m)->n_ctx;
    if (!max_new_given && g->max_new >= n_ctx / 2) g->max_new = n_ctx / 2; /* the default suits the model's context */
    if (g->max_new >= n_ctx) return usage_error(cmd, "--max-new %d leaves no room for a prompt in the model's context of %d tokens", g->max_new, n_ctx);
    c.temperature = g->temperature;
    c.top_k = g->top_k;
    c.top_p = g->top_p;
    if (!sampler_open(sc, m, &c, (uint64_t)g->seed)) return fail(cmd, "out of memory for the KV cache (%d tokens)", n_ctx);
    return 0;
}
/* the sampler's options of generate and chat (g: a gen_opts) */
#define SAMPLING_OPTS(g)                                                                        \
    OPT_F("temperature", "sampling temperature (0: greedy)", &(g).temperature, 0, 100),        \
    OPT_I("top-k", "keep the k most likely tokens (0: off)", &(g).top_k, 0, BIG),               \
    OPT_FA("top-p", "nucleus: keep the smallest set reaching p (1: off)", &(g).top_p, 0, 1),   \
    OPT_I("max-new", "longest reply in tokens; if not given, at most half the context", &(g).max_new, 1, BIG), \
    OPT_I("seed", "sampling seed", &(g).seed, 0, BIG),
static void print_reply(const char *prefix, const char *text, int status) {
    char clean[3 * 4096 + 1];
    utf8_clean(text, clean, sizeof clean);
    printf("%s%s%s\n", prefix, clean, status == REPLY_CUT ? "  [cut: no end of reply within --max-new or the context]" : "");
}
/* ---- best-of-N: the reward model, the sampling, generate --best-of ------------------------------
   rlhf_best_of_n samples N replies with the policy, scores each with the reward model at its
   <|end|> (one appended to a reply cut at --max-new) and keeps the first highest. The reward model reads the policy's token ids, so the two must
   share one vocabulary (every id the same bytes) and one chat template (the same reply end); a
   reward model trained from the policy's SFT checkpoint (rlhf rm --model SFT) does. */

/* s with '"' and '\\' escaped, into out (room for 2 * strlen(s) + 1) */
static const char *bon_quote(const char *s, char *out) {
    char *o = out;
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') *o++ = '\\';
        *o++ = *s;
    }
    *o = 0;
    return out;
}
/* --reward's tokenizer against the policy's: 0, or 1 with the message printed */
static int bon_same_vocab(const char *cmd, const char *rm_path, const char *policy_path, const rlhf_tokenizer *tp,
                          const rlhf_tokenizer *tr) {
    static const char hint[] = "train the reward model from this policy's SFT checkpoint (rlhf rm --model SFT)";
    int V = rlhf_tokenizer_vocab_size(tp), id;
    if (rlhf_tokenizer_vocab_size(tr) != V)
        return fail(cmd, "--reward %s has a tokenizer of %d tokens, the policy %s one of %d: the reward model reads the policy's "
                    "token ids, so the two must share one vocabulary; %s", rm_path, rlhf_tokenizer_vocab_size(tr), policy_path, V, hint);
    for (id = 0; id < V; id++) {
        char a[1024], b[1024], ca[3 * 48 + 1], cb[3 * 48 + 1], qa[2 * sizeof ca], qb[2 * sizeof cb];
        size_t na = 0, nb = 0;
        if (rlhf_tokenizer_decode(tp, &id, 1, a, sizeof a, &na) != RLHF_OK && na <= sizeof a) na = 0;
        if (rlhf_tokenizer_decode(tr, &id, 1, b, sizeof b, &nb) != RLHF_OK && nb <= sizeof b) nb = 0;
        if (na == nb && memcmp(a, b, na < sizeof a ? na : sizeof a) == 0) continue;
        a[na < 40 ? na : 40] = 0, b[nb < 40 ? nb : 40] = 0; /* shown cleaned (a token may split a character), quoted */
        utf8_clean(a, ca, sizeof ca);
        utf8_clean(b, cb, sizeof cb);
        return fail(cmd, "--reward %s has another vocabulary than the policy %s: token %d is \"%s\" to the policy but \"%s\" to the "
                    "reward model, which would score other text than the policy wrote; %s", rm_path, policy_path, id,
                    bon_quote(ca, qa), bon_quote(cb, qb), hint);
    }
    if (rlhf_tokenizer_template(tp) != rlhf_tokenizer_template(tr))
        return fail(cmd, "--reward %s reads conversations in the %s template, the policy %s writes them in the %s one: its "
                    "scores would be read at another place than a reply's end; %s", rm_path,
                    rlhf_tokenizer_template(tr) == RLHF_TEMPLATE_HH ? "hh" : "chat", policy_path,
                    rlhf_tokenizer_template(tp) == RLHF_TEMPLATE_HH ? "hh" : "chat", hint);
    return 0;
}
/* --reward: a reward model (a scalar head; a PPO critic is refused) that shares the policy's vocabulary.
   trains: for ppo, grpo and rloo, whose KL coefficient is on the scale of a normalised reward */
static rlhf_model *bon_load_reward(const char *cmd, const char *rm_path, const char *policy_path, const rlhf_tokenizer *tp,
                                   int trains) {
    rlhf_tokenizer *tr = NULL;
    rlhf_model *rm = load_model(cmd, "--reward", rm_path, ROLE_SCORER, &tr);
    int bad;
    if (!rm) return NULL;
    bad = bon_same_vocab(cmd, rm_path, policy_path, tp, tr);
    rlhf_tokenizer_free(tr);
    if (bad) {
        rlhf_model_free(rm);
        return NULL;
    }
    if (!rlhf_model_meta(rm, "rlhf.reward.gain") && trains)
        say("warning: --reward %s is not normalised (no rlhf.reward.gain): its raw scores set the scale of the reward against "
            "the KL penalty; normalise it with rlhf rm (--normalize-samples) for the usual beta to mean what it says", rm_path);
    else if (!rlhf_model_meta(rm, "rlhf.reward.gain")) { /* on stderr: generate's stdout is the replies */
        status_erase();
        fprintf(stderr, "rlhf %s: warning: --reward %s is not normalised (no rlhf.reward.gain): the scores are raw (the same "
                "reply wins, the numbers are on the model's own scale)\n", cmd, rm_path);
        status_draw();
    }
    return rm;
}
/* the options of best-of-N against each other, before anything is loaded: 0, or 2 (printed) */
static int bon_check_sampling(const char *cmd, int n, const char *n_opt, float temperature) {
    if (n > 1 && temperature == 0.0f)
        return usage_error(cmd, "--temperature 0 (greedy) makes the %d replies of %s %d the same: best-of-N needs a temperature "
                           "above 0", n, n_opt, n);
    return 0;
}


/* ---- several rewards: --reward given once or more, and --reward-weights -------------------------
   ppo, grpo, rloo, bon and generate --best-of score a reply with sum_k w_k score_k over the --reward
   models (TRL's reward_funcs with reward_weights; the weights default to 1). One model at weight 1 goes
   to the library as the reward model itself (PPO then scores a batch in one pass); anything else as an
   rlhf_reward_mix, scored reply by reply. */
typedef struct reward_set {
    str_list path;                 /* --reward, in order */
    const char *weights;           /* --reward-weights as given, or NULL: all 1 */
    float w[RLHF_MAX_REWARDS];
    rlhf_model *m[RLHF_MAX_REWARDS];
    rlhf_reward_mix mix;
} reward_set;
/* --reward-weights against --reward, before anything is loaded: 0, or 2 (printed) */
static int rewards_check(const char *cmd, reward_set *rs) {
    const char *s = rs->weights;
    int k;
    for (k = 0; k < RLHF_MAX_REWARDS; k++) rs->w[k] = 1.0f;
    if (!s) return 0;
    if (rs->path.n == 0) return usage_error(cmd, "--reward-weights weighs the --reward models: give --reward too");
    for (k = 0;; k++, s++) {
        char *end;
        double d;
        errno = 0;
        d = strtod(s, &end);
        if (end == s || (*end && *end != ',') || errno == ERANGE || !isfinite(d))
            return usage_error(cmd, "--reward-weights takes finite numbers separated by commas (e.g. 1,0.5), got \"%s\"",
                               rs->weights);
        if (k < RLHF_MAX_REWARDS) rs->w[k] = (float)d;
        if (!*(s = end)) break;
    }
    if (k + 1 != rs->path.n)
        return usage_error(cmd, "--reward-weights has %d weight%s but --reward is given %d time%s: one weight per --reward, "
                           "in their order", k + 1, k ? "s" : "", rs->path.n, rs->path.n > 1 ? "s" : "");
    return 0;
}
/* the rewards as the library takes them: *rm, or *fn with *user (the mix) */
static void rewards_scorer(reward_set *rs, const rlhf_tokenizer *t, rlhf_model **rm, rlhf_score_fn *fn, void **user) {
    int k;
    *rm = NULL, *fn = NULL, *user = NULL;
    if (rs->path.n == 1 && rs->w[0] == 1.0f) {
        *rm = rs->m[0];
        return;
    }
    memset(&rs->mix, 0, sizeof rs->mix);
    rs->mix.tokenizer = t, rs->mix.n = rs->path.n;
    for (k = 0; k < rs->path.n; k++) rs->mix.model[k] = rs->m[k], rs->mix.weight[k] = rs->w[k];
    *fn = rlhf_reward_mix_score, *user = &rs->mix;
}
/* the rewards in words: "RM", or "1 x A + 0.5 x B" for a mix */
static const char *rewards_name(const reward_set *rs, char *buf, size_t cap) {
    size_t len = 0;
    int k;
    if (rs->path.n == 1 && rs->w[0] == 1.0f) snprintf(buf, cap, "%s", rs->path.v[0]);
    for (k = 0; (rs->path.n > 1 || rs->w[0] != 1.0f) && k < rs->path.n && len < cap; k++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%g x %s", !k ? "" : rs->w[k] < 0 ? " - " : " + ",
                                (double)(k && rs->w[k] < 0 ? -rs->w[k] : rs->w[k]), rs->path.v[k]);
    return buf;
}
/* every --reward, checked against the policy's vocabulary (bon_load_reward), then as the library takes them */
static int rewards_load(const char *cmd, reward_set *rs, const char *policy_path, const rlhf_tokenizer *tp, int trains,
                        rlhf_model **rm, rlhf_score_fn *fn, void **user) {
    int k;
    for (k = 0; k < rs->path.n; k++)
        if (!(rs->m[k] = bon_load_reward(cmd, rs->path.v[k], policy_path, tp, trains))) return 1;
    rewards_scorer(rs, tp, rm, fn, user);
    if (*fn && trains) {
        char what[1024];
        say("%s: the reward is %s, scored reply by reply", cmd, rewards_name(rs, what, sizeof what));
    }
    return 0;
}
/* the smallest context of the reward models, or n_ctx when smaller */
static int rewards_ctx(const reward_set *rs, int n_ctx) {
    int k;
    for (k = 0; k < rs->path.n; k++)
        if (rs->m[k] && rlhf_model_config(rs->m[k])->n_ctx < n_ctx) n_ctx = rlhf_model_config(rs->m[k])->n_ctx;
    return n_ctx;
}
static void rewards_free(reward_set *rs) {
    int k;
    for (k = 0; k < rs->path.n; k++) rlhf_model_free(rs->m[k]), rs->m[k] = NULL;
}

/* One prompt's best of N replies: the state of a command's whole run. */
typedef struct bon_state {
    rlhf_model *policy, *rm;
    rlhf_score_fn fn;    /* when rm is NULL: several rewards (rlhf_reward_mix_score) */
    void *user;
    const rlhf_tokenizer *t;
    rlhf_sampler_config sc;
    rlhf_rng *rng;       /* the replies come from it in order: a seed gives the same replies */
    int n, max_new;
    int *best;           /* max_new ids: the kept reply, with its end token when it has one */
    float *scores;       /* n: every reply's score */
    char *text;          /* the kept reply decoded, without its end token (NUL-terminated; may hold NUL bytes) */
    size_t text_len, text_cap;
    int n_best, best_index;
    int cut;             /* the kept reply stopped at max_new, before its end token */
} bon_state;
static void bon_close(bon_state *b) {
    free(b->best);
    free(b->scores);
    free(b->text);
    b->best = NULL, b->scores = NULL, b->text = NULL;
}
static int bon_open(bon_state *b, rlhf_model *policy, rlhf_model *rm, const rlhf_tokenizer *t, const gen_opts *g, int n,
                    int max_new, rlhf_rng *rng) {
    memset(b, 0, sizeof *b);
    b->policy = policy, b->rm = rm, b->t = t, b->rng = rng, b->n = n, b->max_new = max_new;
    b->sc = rlhf_sampler_config_default();
    b->sc.temperature = g->temperature, b->sc.top_k = g->top_k, b->sc.top_p = g->top_p;
    b->text_cap = 256;
    b->best = (int *)malloc((size_t)max_new * sizeof(int));
    b->scores = (float *)malloc((size_t)n * sizeof(float));
    b->text = (char *)malloc(b->text_cap);
    if (b->best && b->scores && b->text) return 1;
    bon_close(b);
    return 0;
}
/* ids (without a trailing end token) decoded into *text, grown as needed; 0 when out of memory */
static int bon_decode(const rlhf_tokenizer *t, const int *ids, int n, char **text, size_t *cap, size_t *len) {
    size_t nb = 0;
    rlhf_result r = rlhf_tokenizer_decode(t, ids, (size_t)n, *text, *cap - 1, &nb);
    if (r != RLHF_OK && nb >= *cap) { /* too long for the buffer: nb is the size it needs */
        char *grown = (char *)realloc(*text, nb + 1);
        if (!grown) return 0;
        *text = grown, *cap = nb + 1;
        r = rlhf_tokenizer_decode(t, ids, (size_t)n, *text, *cap - 1, &nb);
    }
    if (r != RLHF_OK) nb = 0;
    (*text)[nb] = 0;
    *len = nb;
    return 1;
}
/* The best of b->n replies to prompt (n_prompt ids through the chat template, ending where a reply
   begins), decoded into b->text. RLHF_OK, or the library's result (the message in the policy's last
   error); RLHF_ERR_NON_FINITE when a score is not finite. */
static rlhf_result bon_sample(bon_state *b, const int *prompt, int n_prompt) {
    int stop = rlhf_tokenizer_reply_end(b->t), i;
    rlhf_result r = rlhf_best_of_n(b->policy, b->rm, b->fn, b->user, b->t, prompt, n_prompt, b->n, b->max_new, &b->sc, b->rng,
                                   b->best, &b->n_best, b->scores, &b->best_index);
    if (r != RLHF_OK) return r;
    for (i = 0; i < b->n; i++)
        if (!isfinite(b->scores[i])) return RLHF_ERR_NON_FINITE;
    b->cut = !(b->n_best > 0 && b->best[b->n_best - 1] == stop);
    if (!bon_decode(b->t, b->best, b->cut ? b->n_best : b->n_best - 1, &b->text, &b->text_cap, &b->text_len))
        return RLHF_ERR_OUT_OF_MEMORY;
    return RLHF_OK;
}

/* generate --best-of: to show every reply beside its score, the reward model scores them through
   rlhf_best_of_n's score function (the call it makes itself with a reward model:
   rlhf_reward_score_ids at the reply's <|end|>, one appended to a cut reply), which also keeps
   each reply's text. */
typedef struct bon_seen {
    rlhf_model *rm;
    rlhf_score_fn fn;     /* when rm is NULL: several rewards (rlhf_reward_mix_score) */
    void *user;
    const rlhf_tokenizer *t;
    int *seq;             /* prompt + reply: room for the context */
    int k;                /* replies seen */
    char **text;          /* each reply, decoded without its end token */
    size_t *cap, *len;
    int *cut;
    int failed;           /* the reward model failed: its message is its last error */
} bon_seen;
static float bon_score_seen(void *user, const int *prompt, int n_prompt, const int *response, int n_response) {
    bon_seen *s = (bon_seen *)user;
    int len = n_prompt + n_response, k = s->k++;
    float score = NAN;
    s->cut[k] = !(n_response > 0 && response[n_response - 1] == rlhf_tokenizer_reply_end(s->t));
    if (!s->rm) score = s->fn(s->user, prompt, n_prompt, response, n_response); /* a mix scores as below, term by term */
    else {
        memcpy(s->seq, prompt, (size_t)n_prompt * sizeof(int));
        memcpy(s->seq + n_prompt, response, (size_t)n_response * sizeof(int));
        if (s->cut[k]) { /* scored at an <|end|>, appended or over the last token, as rlhf_best_of_n scores */
            if (len < rlhf_model_config(s->rm)->n_ctx) len++;
            s->seq[len - 1] = rlhf_tokenizer_reply_end(s->t);
        }
        if (rlhf_reward_score_ids(s->rm, s->seq, NULL, &len, 1, len, &score) != RLHF_OK) s->failed = 1;
    }
    if (!bon_decode(s->t, response, s->cut[k] ? n_response : n_response - 1, &s->text[k], &s->cap[k], &s->len[k])) s->failed = 2;
    return score;
}
/* --n rounds of the best of best_of replies to msg: every reply with its score, the kept one marked
   with *, or (only_best) the kept reply alone, as plain generate prints one */
static int generate_best_of(rlhf_model *m, const rlhf_tokenizer *t, sampler_ctx *sc, const gen_opts *g, reward_set *rw,
                            const char *policy_path, int best_of, int only_best, const rlhf_message *msg, int nm) {
    bon_state b;
    bon_seen s;
    int *prompt = NULL, n_ctx, max_new, round, i, rc = 0;
    size_t np = 0;
    char reward[1024];
    memset(&b, 0, sizeof b);
    memset(&s, 0, sizeof s);
    if (rewards_load("generate", rw, policy_path, t, 0, &s.rm, &s.fn, &s.user)) return rewards_free(rw), 1;
    rewards_name(rw, reward, sizeof reward);

    /* the prompt through the template, in the smallest context of the models, with room for a reply */
    n_ctx = rewards_ctx(rw, rlhf_model_config(m)->n_ctx);
    if (!(prompt = (int *)malloc((size_t)n_ctx * sizeof(int)))) {
        rc = fail("generate", "out of memory");
        goto done;
    }
    if (rlhf_tokenizer_chat(t, msg, nm, 1, prompt, NULL, (size_t)n_ctx, &np) != RLHF_OK || (int)np + 1 > n_ctx) {
        rc = fail("generate", "the prompt does not fit the context (%d tokens, the smallest of the policy's and the reward "
                  "models') with room for a reply", n_ctx);
        goto done;
    }
    max_new = g->max_new < n_ctx - (int)np ? g->max_new : n_ctx - (int)np;

    /* each reply's text and cut, kept by the score function */
    s.t = t;
    s.seq = (int *)malloc(((size_t)n_ctx + 1) * sizeof(int));
    s.text = (char **)calloc((size_t)best_of, sizeof(char *));
    s.cap = (size_t *)calloc((size_t)best_of, sizeof(size_t));
    s.len = (size_t *)calloc((size_t)best_of, sizeof(size_t));
    s.cut = (int *)calloc((size_t)best_of, sizeof(int));
    rc = !bon_open(&b, m, NULL, t, g, best_of, max_new, &sc->rng) || !s.seq || !s.text || !s.cap || !s.len || !s.cut;
    for (i = 0; rc == 0 && i < best_of; i++) rc = !(s.text[i] = (char *)malloc(s.cap[i] = 64));
    if (rc) {
        rc = fail("generate", "out of memory");
        goto done;
    }

    for (round = 0; round < g->n; round++) {
        rlhf_result r;
        s.k = 0;
        r = rlhf_best_of_n(m, NULL, bon_score_seen, &s, t, prompt, (int)np, best_of, max_new, &b.sc, b.rng, b.best, &b.n_best,
                           b.scores, &b.best_index);
        if (r != RLHF_OK) rc = fail("generate", "%s", lib_msg(rlhf_model_last_error(m)));
        else if (s.failed == 2) rc = fail("generate", "out of memory");
        else if (s.failed) rc = fail("generate", "--reward %s: %s", reward, lib_msg(rlhf_model_last_error(s.rm)));
        for (i = 0; rc == 0 && i < best_of; i++)
            if (!isfinite(b.scores[i]))
                rc = fail("generate", "--reward %s gave reply %d a score that is not finite: its weights are broken", reward, i + 1);
        if (rc) break;
        if (only_best) {
            print_reply("", s.text[b.best_index], s.cut[b.best_index] ? REPLY_CUT : REPLY_OK);
            continue;
        }
        if (round) printf("\n");
        if (g->n > 1) printf("round %d of %d: ", round + 1, g->n);
        printf("best of %d, scored by %s (* the kept reply: the first highest score)\n", best_of, reward);
        for (i = 0; i < best_of; i++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "%s %3d  %+8.4f  ", i == b.best_index ? "*" : " ", i + 1, (double)b.scores[i]);
            print_reply(prefix, s.text[i], s.cut[i] ? REPLY_CUT : REPLY_OK);
        }
    }
done:
    if (s.text)
        for (i = 0; i < best_of; i++) free(s.text[i]);
    free(s.text);
    free(s.cap);
    free(s.len);
    free(s.cut);
    free(s.seq);
    free(prompt);
    bon_close(&b);
    rewards_free(rw);
    return rc;
}

static int cmd_generate(int argc, char **argv) {
    const char *pos[1];
    gen_opts g = {1, 0, 64, 1, 0.7f, 1.0f, NULL, NULL};
    int best_of = 0, only_best = 0;
    reward_set rw;
    opt o[] = {
        OPT_S("prompt", "the user's message", &g.prompt),
        OPT_S("system", "a system message before it", &g.system),
        OPT_I("n", "replies to sample", &g.n, 1, 100000),
        OPT_I("best-of", "each reply the best of N, scored by --reward: every score printed, the kept reply marked "
                         "(off when not given)", &best_of, 1, 1024),
        OPT_L("reward", "the reward model of --best-of (it must share the policy's vocabulary); give --reward again for "
                        "several, summed with --reward-weights", &rw.path),
        OPT_S("reward-weights", "one weight per --reward, in their order, e.g. 1,0.5: the score is sum_k w_k score_k (none: "
                                "all 1)", &rw.weights),
        OPT_B("only-best", "with --best-of: print the kept reply alone, as a plain reply", &only_best),
        SAMPLING_OPTS(g)
    };
    rlhf_model *m;
    rlhf_tokenizer *t;
    sampler_ctx sc = {NULL, NULL, {{0}}, NULL};
    rlhf_message msg[2];
    char out[4096];
    int np, i, rc, nm = 0;
    memset(&rw, 0, sizeof rw);
    np = parse_opts("generate", argc, argv, 2, o, N_OPTS(o), pos, 1);
    if (np < 0) return help_or_usage(np, "rlhf generate CHECKPOINT --prompt TEXT [options]", "Sample replies to a prompt through the chat template with the KV cache.", o,
                   N_OPTS(o));
    if (np != 1 || !g.prompt) return usage_error("generate", "needs one CHECKPOINT and --prompt");
    if (best_of && !rw.path.n) return usage_error("generate", "--best-of needs --reward (the reward model that scores the replies)");
    if (!best_of && (rw.path.n || rw.weights || only_best))
        return usage_error("generate", "--%s is for --best-of N: add it", rw.path.n ? "reward" : rw.weights ? "reward-weights" : "only-best");
    if ((rc = rewards_check("generate", &rw)) != 0) return rc;
    if ((rc = bon_check_sampling("generate", best_of, "--best-of", g.temperature)) != 0) return rc;
    if (!(m = load_model("generate", "CHECKPOINT", pos[0], ROLE_POLICY, &t))) return 1;
    if ((rc = gen_setup("generate", m, &g, given(o, N_OPTS(o), "max-new"), &sc)) != 0) goto done;
    if (g.system) msg[nm].role = RLHF_ROLE_SYSTEM, msg[nm].content.str = g.system, msg[nm++].content.len = strlen(g.system);
    msg[nm].role = RLHF_ROLE_USER, msg[nm].content.str = g.prompt, msg[nm++].content.len = strlen(g.prompt);
    if (best_of) {
        rc = generate_best_of(m, t, &sc, &g, &rw, pos[0], best_of, only_best, msg, nm);
        goto done;
    }
    for (i = 0; i < g.n && rc == 0; i++) {
        int s = reply_to(m, t, &sc, msg, nm, g.max_new, out, sizeof out);
        if (s == REPLY_TOO_LONG) rc = fail("generate", "the prompt does not fit the model's context (%d tokens) with room for a reply", rlhf_model_config(m)->n_ctx);
        else if (s == REPLY_FAILED) rc = fail("generate", "%s", rlhf_model_last_error(m));
        else print_reply("", out, s);
    }
done:
    sampler_close(&sc);
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return rc;
}

/* A conversation: the system message (kept) and the turns; the oldest turns
   are dropped when the whole no longer fits the context with room for a reply. */
typedef struct convo {
    rlhf_message *msg;
    char **text;
    int n, cap;
    int first;        /* the first turn still sent (after the system message) */
} convo;
static int convo_add(convo *c, rlhf_role role, const char *s) {
    if (c->n == c->cap) {
        int nc = c->cap ? 2 * c->cap : 16;
        rlhf_message *m = (rlhf_message *)realloc(c->msg, (size_t)nc * sizeof *m);
        char **t;
        if (!m) return 0;
        c->msg = m;
        if (!(t = (char **)realloc(c->text, (size_t)nc * sizeof *t))) return 0;
        c->text = t;
        c->cap = nc;
    }
    if (!(c->text[c->n] = strdup(s))) return 0;
    c->msg[c->n].role = role;
    c->msg[c->n].content.str = c->text[c->n];
    c->msg[c->n].content.len = strlen(s);
    c->n++;
    return 1;
}
static void convo_free(convo *c) {
    int i;
    for (i = 0; i < c->n; i++) free(c->text[i]);
    free(c->text);
    free(c->msg);
}
/* the messages to send: the system message, then turns from c->first on */
static int convo_view(const convo *c, int has_system, rlhf_message *view) {
    int k = 0, i;
    if (has_system) view[k++] = c->msg[0];
    for (i = c->first; i < c->n; i++) view[k++] = c->msg[i];
    return k;
}
/* 1 when the messages, with room for a reply of at least one token and its <|end|>, fit the context */
static int fits(rlhf_model *m, const rlhf_tokenizer *t, sampler_ctx *sc, const rlhf_message *msg, int n) {
    size_t np = 0;
    int n_ctx = rlhf_model_config(m)->n_ctx;
    return rlhf_tokenizer_chat(t, msg, n, 1, sc->ids, NULL, (size_t)n_ctx, &np) == RLHF_OK && (int)np + 2 <= n_ctx;
}
static int cmd_chat(int argc, char **argv) {
    const char *pos[1];
    gen_opts g = {1, 0, 64, 1, 0.7f, 1.0f, NULL, NULL};
    opt o[] = {
        OPT_S("system", "a system message kept at the start of the conversation", &g.system),
        SAMPLING_OPTS(g)
    };
    rlhf_model *m;
    rlhf_tokenizer *t;
    sampler_ctx sc = {NULL, NULL, {{0}}, NULL};
    convo c = {NULL, NULL, 0, 0, 0};
    rlhf_message *view = NULL;
    char *line = NULL, out[4096];
    size_t line_cap = 0;
    int np = parse_opts("chat", argc, argv, 2, o, N_OPTS(o), pos, 1), rc, sys;
    if (np < 0) return help_or_usage(np, "rlhf chat CHECKPOINT [options]",
                   "Talk to a policy: each line you type is a user turn; the conversation goes through the chat template.\n"
                   "When it no longer fits the context, the oldest turns are dropped (the system message stays) and you are told.\n"
                   "An empty line or end of input quits.",
                   o, N_OPTS(o));
    if (np != 1) return usage_error("chat", "needs one CHECKPOINT");
    if (!(m = load_model("chat", "CHECKPOINT", pos[0], ROLE_POLICY, &t))) return 1;
    if ((rc = gen_setup("chat", m, &g, given(o, N_OPTS(o), "max-new"), &sc)) != 0) goto done;
    sys = g.system != NULL;
    if (sys && (!convo_add(&c, RLHF_ROLE_SYSTEM, g.system) || !(view = (rlhf_message *)malloc(2 * sizeof *view)))) {
        rc = fail("chat", "out of memory");
        goto done;
    }
    if (sys && !fits(m, t, &sc, c.msg, 1)) {
        rc = fail("chat", "--system is too long for the model's context of %d tokens", rlhf_model_config(m)->n_ctx);
        goto done;
    }
    c.first = sys;
    printf("(empty line to quit)\n");
    while (printf("you> "), fflush(stdout), getline(&line, &line_cap, stdin) > 0) {
        size_t L = strcspn(line, "\r\n");
        int s, dropped = 0, k = 0;
        line[L] = 0;
        if (L == 0) break;
        /* a message that does not fit even alone is refused, and the conversation kept */
        if (!(view = (rlhf_message *)realloc(view, (size_t)(c.n + 2) * sizeof *view))) {
            rc = fail("chat", "out of memory");
            break;
        }
        if (sys) view[k++] = c.msg[0];
        view[k].role = RLHF_ROLE_USER, view[k].content.str = line, view[k++].content.len = L;
        if (!fits(m, t, &sc, view, k)) {
            printf("(your message does not fit the context of %d tokens%s: say less)\n", rlhf_model_config(m)->n_ctx, sys ? " with the system message" : "");
            continue;
        }
        if (!convo_add(&c, RLHF_ROLE_USER, line)) {
            rc = fail("chat", "out of memory");
            break;
        }
        /* the oldest exchanges (a user turn and its reply) go until the rest fits */
        while (!fits(m, t, &sc, view, convo_view(&c, sys, view)) && c.first + 1 < c.n) c.first += 2, dropped += 2;
        if (dropped) printf("(%d older turns dropped to fit the context of %d tokens)\n", dropped, rlhf_model_config(m)->n_ctx);
        s = reply_to(m, t, &sc, view, convo_view(&c, sys, view), g.max_new, out, sizeof out);
        if (s == REPLY_FAILED || s == REPLY_TOO_LONG) {
            rc = fail("chat", "%s", s == REPLY_FAILED ? rlhf_model_last_error(m) : "the conversation does not fit the context");
            break;
        }
        print_reply("bot> ", out, s);
        if (!convo_add(&c, RLHF_ROLE_ASSISTANT, out)) {
            rc = fail("chat", "out of memory");
            break;
        }
    }
done:
    free(line);
    free(view);
    convo_free(&c);
    sampler_close(&sc);
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return rc;
}

/* ---- score and eval ----------------------------------------------------------------- */
/* --max-len against the model's context (0: not given, the context); 0 ok, else the usage error printed (2) */
static int max_len_check(const char *cmd, const rlhf_model *m, int *max_len) {
    int n_ctx = rlhf_model_config(m)->n_ctx;
    if (*max_len > n_ctx) return usage_error(cmd, "--max-len %d is longer than the model's context (%d)", *max_len, n_ctx);
    if (*max_len == 0) *max_len = n_ctx;
    return 0;
}
/* the long-record rule's counts: "CMD: N records kept (...), S skipped (...)" */
static void print_fit(const char *cmd, const rlhf_fit_report *f) {
    char line[256];
    say("%s: %s", cmd, rlhf_fit_describe(f, line, sizeof line));
}
/* every completion's reward in a preference file, and the pairwise accuracy.
   Long records follow the long-record rule in max_len tokens (prompt cut
   from the left, or the record skipped), and the counts are printed. */
static int score_file(const char *cmd, rlhf_model *m, const rlhf_tokenizer *t, const char *data, int skip_bad, int max_len) {
    rlhf_dataset *d = load_data(cmd, data, RLHF_DATA_PREFERENCE, skip_bad);
    rlhf_fit_report fit;
    size_t i;
    long right = 0, pairs = 0;
    float *s = NULL;
    if (!d) return 1;
    memset(&fit, 0, sizeof fit);
    for (i = 0; i < rlhf_dataset_size(d); i++) {
        const rlhf_record *r = rlhf_dataset_record(d, i);
        int K = r->kind == RLHF_RECORD_PAIR ? 2 : r->n_completions, k, j;
        rlhf_result res;
        float *grown = (float *)realloc(s, (size_t)K * sizeof(float));
        if (!grown) {
            free(s);
            rlhf_dataset_free(d);
            return fail(cmd, "out of memory");
        }
        s = grown;
        if ((res = rlhf_reward_score_record(m, t, r, max_len, s, &fit)) == RLHF_ERR_CONTEXT_FULL) continue; /* skipped, counted */
        if (res != RLHF_OK) {
            free(s);
            rlhf_dataset_free(d);
            return fail(cmd, "%s:%zu: %s", data, r->line, lib_msg(rlhf_model_last_error(m)));
        }
        printf("line %zu:", r->line);
        for (k = 0; k < K; k++) printf(" %.4f", (double)s[k]);
        printf("\n");
        for (k = 0; k < K; k++)
            for (j = k + 1; j < K; j++) right += s[k] > s[j], pairs++;
    }
    free(s);
    rlhf_dataset_free(d);
    print_fit(cmd, &fit);
    if (pairs == 0) return fail(cmd, "no record of %s could be scored", data);
    printf("pairwise accuracy (best-first order respected): %.4f over %ld pairs\n", (double)right / (double)pairs, pairs);
    return 0;
}
/* one (prompt, response) pair by the same rule: a prompt cut from the left is said, a response that cannot fit fails */
static int score_pair(rlhf_model *m, const rlhf_tokenizer *t, const char *prompt, const char *response, int max_len) {
    rlhf_record rec;
    rlhf_fit_report fit;
    rlhf_result r;
    float s;
    memset(&rec, 0, sizeof rec);
    memset(&fit, 0, sizeof fit);
    rec.kind = RLHF_RECORD_COMPLETION;
    rec.prompt.str = prompt, rec.prompt.len = strlen(prompt);
    rec.completion.str = response, rec.completion.len = strlen(response);
    if ((r = rlhf_reward_score_record(m, t, &rec, max_len, &s, &fit)) == RLHF_ERR_CONTEXT_FULL)
        return fail("score", "the response alone is longer than %d tokens (--max-len): it cannot be scored", max_len - 1);
    if (r != RLHF_OK) return fail("score", "%s", lib_msg(rlhf_model_last_error(m)));
    if (fit.prompts_cut)
        say("score: the prompt was cut from the left%s to fit %d tokens with the response", fit.mid_turn ? " (inside its last turn)" : "",
            max_len);
    printf("%.6f\n", (double)s);
    return 0;
}
static int cmd_score(int argc, char **argv) {
    const char *pos[1], *prompt = NULL, *response = NULL, *data = NULL;
    int skip_bad = 0, max_len = 0;
    opt o[] = {
        OPT_S("prompt", "the prompt (with --response)", &prompt),
        OPT_S("response", "the response to score", &response),
        OPT_S("data", "a preference JSONL file: score every completion, report pairwise accuracy", &data),
        OPT_B("skip-bad", "skip malformed records of --data (counted) instead of stopping", &skip_bad),
        OPT_MAXLEN("longest sequence: a longer prompt is cut from the left (whole turns where it can), a record whose "
                   "completion alone does not fit is skipped; the counts are printed", &max_len),
    };
    int np = parse_opts("score", argc, argv, 2, o, N_OPTS(o), pos, 1), rc = 0;
    rlhf_model *m;
    rlhf_tokenizer *t;
    if (np < 0) return help_or_usage(np, "rlhf score REWARD_MODEL (--prompt P --response R | --data FILE)",
                   "The reward (normalised as stored in the checkpoint) of a response, or of every completion of a preference file.", o,
                   N_OPTS(o));
    if (np != 1 || (!data && (!prompt || !response)) || (data && (prompt || response)))
        return usage_error("score", "needs REWARD_MODEL and either --prompt and --response, or --data");
    if (!(m = load_model("score", "REWARD_MODEL", pos[0], ROLE_SCORER, &t))) return 1;
    if ((rc = max_len_check("score", m, &max_len)) == 0)
        rc = data ? score_file("score", m, t, data, skip_bad, max_len) : score_pair(m, t, prompt, response, max_len);
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return rc;
}
/* a policy's mean completion loss over an SFT file; long records follow the rule in max_len positions (as SFT's) */
static int completion_loss(const char *cmd, rlhf_model *m, const rlhf_tokenizer *t, const rlhf_dataset *d, int max_len) {
    size_t i, n, cap = (size_t)max_len + 1;
    double sum = 0;
    long count = 0;
    int rc = 0;
    rlhf_fit_report fit;
    int *ids = (int *)malloc(cap * sizeof(int)), *tg = (int *)malloc(cap * sizeof(int));
    unsigned char *mask = (unsigned char *)malloc(cap);
    memset(&fit, 0, sizeof fit);
    if (!ids || !tg || !mask) rc = fail(cmd, "out of memory");
    for (i = 0; rc == 0 && i < rlhf_dataset_size(d); i++) {
        size_t k;
        long c = 0;
        float loss;
        rlhf_result r = rlhf_sft_encode_fit(t, rlhf_dataset_record(d, i), max_len + 1, ids, mask, cap, &n, &fit);
        if (r == RLHF_ERR_CONTEXT_FULL) continue; /* skipped, counted */
        if (r != RLHF_OK) {
            rc = fail(cmd, "line %zu: cannot encode the record: %s", rlhf_dataset_record(d, i)->line, rlhf_result_string(r));
            break;
        }
        for (k = 0; k + 1 < n; k++) c += (tg[k] = mask[k + 1] ? ids[k + 1] : -1) >= 0;
        if (rlhf_model_forward(m, ids, tg, 1, (int)n - 1, NULL, &loss) != RLHF_OK) rc = fail(cmd, "%s", rlhf_model_last_error(m));
        sum += (double)loss * (double)c;
        count += c;
    }
    free(ids);
    free(tg);
    free(mask);
    if (rc) return rc;
    print_fit(cmd, &fit);
    if (count == 0) return fail(cmd, "no record has a completion that fits %d tokens", max_len);
    if (!isfinite(sum)) return fail(cmd, "the completion loss is not finite: the checkpoint's weights are broken");
    printf("completion loss %.4f over %ld tokens of %ld records (perplexity %.3f)\n", sum / (double)count, count, fit.kept,
           exp(sum / (double)count));
    return 0;
}
static int cmd_eval(int argc, char **argv) {
    const char *pos[1], *data = NULL;
    int skip_bad = 0, max_len = 0;
    opt o[] = {
        OPT_S("data", "SFT JSONL (policy: completion loss) or preference JSONL (reward model: accuracy)", &data),
        OPT_B("skip-bad", "skip malformed records (counted) instead of stopping", &skip_bad),
        OPT_MAXLEN("longest sequence: a longer prompt is cut from the left (whole turns where it can), a record whose "
                   "completion alone does not fit is skipped; the counts are printed", &max_len),
    };
    int np = parse_opts("eval", argc, argv, 2, o, N_OPTS(o), pos, 1), rc;
    rlhf_model *m;
    rlhf_tokenizer *t;
    rlhf_dataset *d;
    if (np < 0) return help_or_usage(np, "rlhf eval CHECKPOINT --data FILE", "Held-out quality: a policy's completion loss, or a reward model's pairwise accuracy.", o,
                   N_OPTS(o));
    if (np != 1 || !data) return usage_error("eval", "needs CHECKPOINT and --data");
    if (!(m = load_model("eval", "CHECKPOINT", pos[0], ROLE_ANY, &t))) return 1;
    rc = max_len_check("eval", m, &max_len);
    if (rc == 0 && rlhf_model_has_score_head(m)) rc = score_file("eval", m, t, data, skip_bad, max_len);
    else if (rc == 0 && !(d = load_data("eval", data, RLHF_DATA_SFT, skip_bad))) rc = 1;
    else if (rc == 0) {
        rc = completion_loss("eval", m, t, d, max_len);
        rlhf_dataset_free(d);
    }
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return rc;
}

/* ---- bon: the best of N replies to every prompt of a file, as SFT data ---------------------------
   Rejection sampling (Nakano et al. 2021; Touvron et al. 2023's Llama 2) and expert iteration: the
   kept replies become an SFT file, and rlhf sft on it moves the policy toward its own best-of-N.
   The output is written to OUT.tmp-PID and renamed over OUT when every prompt is done: a kill or a
   Ctrl-C leaves no partial OUT (an older OUT stays as it was). */

/* The kind of a prompt-bearing file, from its first record that is a JSON object (of the first 100
   lines): preference ({"chosen"}, {"completions"}), SFT ({"completion"}, or {"messages"} ending with an
   assistant turn), KTO's unpaired ({"completion", "label"}), else prompts ({"prompt"}, {"messages"}
   ending with a user turn). Bad records are left to the reader, whose message says where. 0, or 1
   (printed) for a file that is not records at all (text, a checkpoint) or holds pretraining text. */
static int bon_format(const char *cmd, const char *path, rlhf_data_format *fmt, const char **what) {
    rlhf_jsonl *in = NULL;
    rlhf_json_doc *doc = NULL;
    rlhf_json_error e;
    const rlhf_json *o = NULL;
    char head[512], why[300] = "";
    size_t n = 0, k;
    int line, text;
    FILE *f;
    *fmt = RLHF_DATA_PROMPTS, *what = "prompt";
    if (is_dir(path) || rlhf_jsonl_open(&in, path, 0, &e) != RLHF_OK) return 0; /* the reader's message */
    for (line = 0; line < 100 && !o; line++) {
        if (rlhf_jsonl_next(in, &doc, &e) != RLHF_OK) {
            if (!why[0]) snprintf(why, sizeof why, "%s", e.message);
            continue;
        }
        if (!doc) break;
        if ((o = rlhf_json_root(doc))->type != RLHF_JSON_OBJECT) {
            if (!why[0]) snprintf(why, sizeof why, "line %zu is not a JSON object", rlhf_jsonl_line(in));
            rlhf_json_free(doc);
            doc = NULL, o = NULL;
        }
    }
    rlhf_jsonl_close(in);

    /* a file whose first byte (after a byte-order mark and blanks) does not open an object holds no records */
    if ((f = fopen(path, "rb")) != NULL) {
        n = fread(head, 1, sizeof head, f);
        fclose(f);
    }
    k = n >= 3 && memcmp(head, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    while (k < n && (head[k] == ' ' || head[k] == '\t' || head[k] == '\r' || head[k] == '\n')) k++;
    if (k < n && head[k] != '{') {
        rlhf_json_free(doc);
        return fail(cmd, "--prompts %s is not a JSONL file of records (%s): give a prompts, SFT or preference file", path,
                    why[0] ? why : "its first line is not a JSON object");
    }
    if (!o) return 0;

    text = record_format(o, fmt, what) == RLHF_DATA_TEXT;
    rlhf_json_free(doc);
    if (text) return fail(cmd, "--prompts %s holds text records ({\"text\"}): pretraining text has no prompts; give a prompts, SFT or "
                          "preference file", path);
    return 0;
}
/* The prompt of a record as rlhf_prompt_encode renders it (rlhf.h's choice, mirrored): its prompt
   messages (conversational data, HH-RLHF transcripts split into turns), its prompt string, or a
   conversation up to its last assistant turn. Returns the count of messages in *msg, or -1 for a
   prompt string (*str). */
static int bon_prompt_of(const rlhf_record *r, const rlhf_message **msg, const rlhf_str **str) {
    int n;
    if (r->prompt_messages && r->kind != RLHF_RECORD_MESSAGES) {
        *msg = r->prompt_messages;
        return r->n_prompt_messages;
    }
    if (r->kind == RLHF_RECORD_MESSAGES) {
        for (n = r->n_messages; n > 0 && r->messages[n - 1].role != RLHF_ROLE_ASSISTANT; n--) {}
        *msg = r->messages;
        return n > 0 ? n - 1 : 0;
    }
    if (r->kind == RLHF_RECORD_PROMPT && r->messages) {
        *msg = r->messages;
        return r->n_messages;
    }
    *str = &r->prompt;
    return -1;
}
/* s[0..len) as a JSON string: '"', '\\' and control bytes escaped (a NUL of the data is \u0000);
   bytes that are not UTF-8 (a byte-level token can split a character) become U+FFFD, as JSON text
   must be UTF-8. Returns how many bytes were replaced. */
static long json_put_str(FILE *f, const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    long replaced = 0;
    fputc('"', f);
    while (s < end) {
        size_t left = (size_t)(end - s);
        int n = *s < 0x80 ? 1 : (*s & 0xE0) == 0xC0 && *s >= 0xC2 ? 2 : (*s & 0xF0) == 0xE0 ? 3 : (*s & 0xF8) == 0xF0 && *s <= 0xF4 ? 4 : 0, k;
        if ((size_t)n > left) n = 0;
        for (k = 1; k < n; k++)
            if ((s[k] & 0xC0) != 0x80) n = 0;
        if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) n = 0; /* overlong, surrogate */
        if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) n = 0;  /* overlong, > U+10FFFF */
        if (n == 0) {
            fputs("\xEF\xBF\xBD", f);
            replaced++;
            s++;
        } else if (n == 1 && (*s == '"' || *s == '\\')) {
            fputc('\\', f), fputc(*s++, f);
        } else if (n == 1 && *s < 0x20) {
            fprintf(f, *s == '\n' ? "\\n" : *s == '\t' ? "\\t" : *s == '\r' ? "\\r" : "\\u%04x", (unsigned)*s);
            s++;
        } else {
            fwrite(s, 1, (size_t)n, f);
            s += n;
        }
    }
    fputc('"', f);
    return replaced;
}
static void json_put_messages(FILE *f, const rlhf_message *m, int n) {
    static const char *const role[3] = {"system", "user", "assistant"};
    int i;
    for (i = 0; i < n; i++) {
        fprintf(f, "%s{\"role\": \"%s\", \"content\": ", i ? ", " : "", role[m[i].role]);
        json_put_str(f, m[i].content.str, m[i].content.len);
        fputc('}', f);
    }
}
/* One SFT record: the prompt as the input gave it, the kept reply as the completion. A prompt string
   gives TRL's standard {"prompt", "completion"}; a conversation gives {"messages"} with the reply as
   its last assistant turn, or, when the prompt already holds assistant turns, TRL's conversational
   {"prompt": [...], "completion": [...]}, so that SFT learns the kept reply only (a messages record
   would also teach the prompt's own assistant turns). Returns the reply's bytes replaced (not UTF-8). */
static long bon_put_record(FILE *f, const rlhf_record *r, const char *reply, size_t len) {
    const rlhf_message *msg = NULL;
    const rlhf_str *str = NULL;
    int n = bon_prompt_of(r, &msg, &str), i, earlier = 0;
    long replaced;
    if (n < 0) {
        fputs("{\"prompt\": ", f);
        json_put_str(f, str->str, str->len);
        fputs(", \"completion\": ", f);
        replaced = json_put_str(f, reply, len);
        fputs("}\n", f);
        return replaced;
    }
    for (i = 0; i < n; i++) earlier += msg[i].role == RLHF_ROLE_ASSISTANT;
    fputs(earlier ? "{\"prompt\": [" : "{\"messages\": [", f);
    json_put_messages(f, msg, n);
    fputs(earlier ? "], \"completion\": [{\"role\": \"assistant\", \"content\": " : ", {\"role\": \"assistant\", \"content\": ", f);
    replaced = json_put_str(f, reply, len);
    fputs("}]}\n", f);
    return replaced;
}
/* "OUT.tmp-PID" files of a bon killed mid-write (PID gone) are removed; a live writer's stay */
static void bon_remove_stale(const char *out) {
    char dir[1024], path[1100];
    const char *slash = strrchr(out, '/'), *base = slash ? slash + 1 : out;
    size_t nb = strlen(base);
    DIR *d;
    struct dirent *e;
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - out) + (slash == out) : 1, slash ? out : ".");
    if (!(d = opendir(dir))) return;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid;
        if (strncmp(e->d_name, base, nb) != 0 || strncmp(e->d_name + nb, ".tmp-", 5) != 0) continue;
        pid = strtol(e->d_name + nb + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno == EPERM) continue; /* its writer is alive */
        remove(join(path, sizeof path, dir, e->d_name));
    }
    closedir(d);
}
/* --out before anything is loaded: a JSONL file path, replaced only with --overwrite, never one of the
   inputs; its directory is made if missing. 0, else the exit status (printed). */
static int bon_check_out(const char *out, int overwrite, const char *prompts, const char *model, const reward_set *rw) {
    struct stat so, si;
    int k;
    size_t n = strlen(out);
    if (is_dir(out) || out[n - 1] == '/') return fail("bon", "--out %s is a directory: give the path of a JSONL file to write", out);
    if (stat(out, &so) == 0) {
        for (k = -2; k < rw->path.n; k++) { /* the input files: --prompts, --model, every --reward */
            const char *in = k == -2 ? prompts : k == -1 ? model : rw->path.v[k];
            if (stat(in, &si) == 0 && so.st_dev == si.st_dev && so.st_ino == si.st_ino)
                return usage_error("bon", "--out %s is the %s file itself", out, k == -2 ? "--prompts" : k == -1 ? "--model" : "--reward");
        }
        if (!S_ISREG(so.st_mode)) return fail("bon", "--out %s exists and is not a regular file", out);
        if (!overwrite)
            return usage_error("bon", "--out %s exists: add --overwrite to replace it (it is replaced only once the new file is "
                               "complete)", out);
    }
    if (strrchr(out, '/')) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(out, '/') - out), out);
        if (dir[0] && !mkdir_p(dir)) return fail("bon", "cannot create the directory %s: %s", dir, strerror(errno));
    }
    return 0;
}
/* progress on stderr: the status line on a terminal, else a line every log_every prompts */
static void bon_progress(size_t done, size_t total, double best_sum, double all_sum, long samples, double t0, int line) {
    char eta[32];
    double el = now_s() - t0;
    fmt_duration(eta, sizeof eta, done ? el / (double)done * (double)(total - done) : -1);
    if (g_tty)
        status_set("[bon] prompt %zu/%zu  mean best %.4f  mean of all %.4f  ETA %s", done, total, best_sum / (double)done,
                   all_sum / (double)samples, eta);
    else if (line)
        fprintf(stderr, "[%6.1fs] bon: %zu/%zu prompts, mean best score %.4f, mean score of all samples %.4f, ETA %s\n", now_s() - g_t0,
                done, total, best_sum / (double)done, all_sum / (double)samples, eta);
}
/* What `rlhf bon` counts over its prompts. */
typedef struct bon_counts {
    size_t done;                          /* prompts whose best reply was chosen */
    long samples, no_prompt, cut, written, replaced;
    double best_sum, all_sum;             /* scores: the kept ones, all of them */
} bon_counts;
/* Every record's best of N into f (the temporary file), counted in c; stops at g_stop. 0, or the
   exit status of a failure (said). */
static int bon_loop(bon_state *b, const rlhf_dataset *d, const rlhf_tokenizer *t, const gen_opts *g, int limit, int keep_cut,
                    int log_every, const char *prompts, const char *reward, const char *out, atomic_file *af, FILE *f,
                    int *ids, rlhf_fit_report *fit, bon_counts *c) {
    size_t i, total = rlhf_dataset_size(d);
    double t0 = now_s();
    int logged = 0;
    for (i = 0; i < total && !g_stop; i++) {
        const rlhf_record *r = rlhf_dataset_record(d, i);
        const rlhf_message *msg = NULL;
        const rlhf_str *str = NULL;
        size_t n_ids = 0, len;
        const char *reply;
        rlhf_result res;
        int k, nm = bon_prompt_of(r, &msg, &str);
        if (nm == 0 || (nm < 0 && str->len == 0)) { /* e.g. an HH-RLHF pair whose transcripts share no turn */
            c->no_prompt++;
            continue;
        }
        if ((res = rlhf_prompt_encode_fit(t, r, limit, ids, (size_t)limit, &n_ids, fit)) != RLHF_OK)
            return fail("bon", "%s:%zu: cannot encode the prompt: %s", prompts, r->line, rlhf_result_string(res));
        if ((res = bon_sample(b, ids, (int)n_ids)) != RLHF_OK)
            return res == RLHF_ERR_NON_FINITE
                       ? fail("bon", "%s:%zu: --reward %s gave a score that is not finite: its weights are broken", prompts, r->line, reward)
                       : fail("bon", "%s:%zu: %s", prompts, r->line, lib_msg(rlhf_model_last_error(b->policy)));
        c->done++;
        c->best_sum += b->scores[b->best_index];
        for (k = 0; k < g->n; k++) c->all_sum += b->scores[k];
        c->samples += g->n;

        /* the kept reply, as the template reads a reply: under HH-RLHF's the template puts the space after
           "Assistant:" that the sampled reply starts with */
        reply = b->text, len = b->text_len;
        if (rlhf_tokenizer_template(t) == RLHF_TEMPLATE_HH && len && reply[0] == ' ') reply++, len--;
        c->cut += b->cut;
        if (!b->cut || keep_cut) c->replaced += bon_put_record(f, r, reply, len), c->written++;
        if (ferror(f)) /* a full disk: say so now, not after the last prompt */
            return fail("bon", "cannot write %s (its temporary file %s): %s%s", out, af->tmp, strerror(errno),
                        exists(out) ? " (the old file is unchanged)" : "");
        if ((logged = c->done % (size_t)log_every == 0 || i + 1 == total) != 0 || g_tty)
            bon_progress(c->done, total, c->best_sum, c->all_sum, c->samples, t0, logged);
    }
    if (!logged && c->done && !g_stop) /* the last records had no prompt */
        bon_progress(c->done, total, c->best_sum, c->all_sum, c->samples, t0, 1);
    return 0;
}
#define BON_ABOUT                                                                                                             \
    "Best-of-N as data (rejection sampling, expert iteration): for every prompt of FILE, --n replies sampled by\n"             \
    "the policy and scored by the reward model; the best (the first highest score) is written to OUT as an SFT\n"              \
    "record that rlhf sft --data reads. Prints the mean best score against the mean score of all samples (the\n"               \
    "gain of best-of-N). OUT is written whole once every prompt is done: a stop (Ctrl-C: exit 130) or a kill\n"               \
    "leaves no partial file, and an existing OUT is replaced only with --overwrite."

/* rlhf bon's lengths: --max-len within the models' context (0: all of it), --max-new by default at most half of it,
   and the room left for a prompt (*limit, 2 tokens at least) */
static int bon_lengths(const reward_set *rw, const rlhf_model *policy, int max_new_given, int *max_len, gen_opts *g,
                       int *limit) {
    int n_ctx = rewards_ctx(rw, rlhf_model_config(policy)->n_ctx);
    if (*max_len > n_ctx)
        return usage_error("bon", "--max-len %d is longer than the models' context (%d tokens, the smallest of them)", *max_len,
                           n_ctx);
    if (*max_len == 0) *max_len = n_ctx;
    if (!max_new_given && g->max_new > *max_len / 2) g->max_new = *max_len / 2; /* the default suits the context */
    if ((*limit = *max_len - g->max_new) < 2)
        return usage_error("bon", "--max-new %d leaves no room for a prompt in --max-len %d (2 tokens at least)", g->max_new,
                           *max_len);
    return 0;
}

/* rlhf bon's end: the file in place (or nothing, and why), then the counts and the gain of best-of-N.
   *f is NULL once the temporary file is committed or given up. */
static int bon_finish(atomic_file *af, FILE **f, const char *out, const char *prompts, const gen_opts *g, int keep_cut,
                      const rlhf_fit_report *fit, const bon_counts *cnt) {
    if (cnt->done == 0) return fail("bon", "no record of %s has a prompt (%ld without one)", prompts, cnt->no_prompt);
    if (cnt->written == 0)
        return fail("bon", "every kept reply stopped at --max-new %d before its end: nothing to write (raise --max-new, "
                    "or --keep-cut)", g->max_new);
    *f = NULL;
    if (atomic_commit(af) != 0)
        return fail("bon", "cannot write %s: %s%s", out, strerror(errno), exists(out) ? " (the old file is unchanged)" : "");
    print_fit("bon", fit);
    if (cnt->no_prompt) say("bon: %ld record%s without a prompt skipped", cnt->no_prompt, cnt->no_prompt == 1 ? "" : "s");
    if (cnt->cut)
        say("bon: %ld of %zu kept replies stopped at --max-new %d before their end%s", cnt->cut, cnt->done, g->max_new,
            keep_cut ? " (written: --keep-cut)" : ", left out (--keep-cut writes them)");
    if (cnt->replaced)
        say("bon: %ld bytes of kept replies were not UTF-8 (a token split a character): written as U+FFFD", cnt->replaced);
    printf("bon: %zu prompts, best of %d: mean best score %.4f vs %.4f over all %ld samples (gain %+.4f); %ld records in %s\n",
           cnt->done, g->n, cnt->best_sum / (double)cnt->done, cnt->all_sum / (double)cnt->samples, cnt->samples,
           cnt->best_sum / (double)cnt->done - cnt->all_sum / (double)cnt->samples, cnt->written, out);
    return 0;
}

static int cmd_bon(int argc, char **argv) {
    const char *pos[1], *model = NULL, *prompts = NULL, *out = NULL, *what;
    gen_opts g = {4, 0, 64, 1, 1.0f, 1.0f, NULL, NULL};
    reward_set rw;
    int max_len = 0, overwrite = 0, skip_bad = 0, keep_cut = 0, log_every = 0, np, rc, limit = 0;
    opt o[] = {
        OPT_S("model", "the policy (an SFT checkpoint or Hugging Face directory) that samples the replies", &model),
        OPT_L("reward", "the reward model that scores them (rlhf rm; it must share the policy's vocabulary); give --reward "
                        "again for several, summed with --reward-weights", &rw.path),
        OPT_S("reward-weights", "one weight per --reward, in their order, e.g. 1,0.5: the score is sum_k w_k score_k (none: "
                                "all 1)", &rw.weights),
        OPT_S("prompts", "the prompts: a PROMPTS, SFT or preference JSONL file (standard or conversational); each record's "
                         "prompt is used", &prompts),
        OPT_S("out", "the SFT JSONL file to write: {\"prompt\", \"completion\"} for a prompt string, {\"messages\"} for a "
                     "conversation (TRL's conversational {\"prompt\": [...], \"completion\": [...]} when the prompt holds "
                     "assistant turns, so that SFT learns the kept reply only); written whole or not at all", &out),
        OPT_I("n", "replies sampled per prompt, the best kept", &g.n, 1, 1024),
        OPT_F("temperature", "sampling temperature (1: the policy's own distribution)", &g.temperature, 0, 100),
        OPT_I("top-k", "keep the k most likely tokens (0: off)", &g.top_k, 0, BIG),
        OPT_FA("top-p", "nucleus: keep the smallest set reaching p (1: off)", &g.top_p, 0, 1),
        OPT_I("max-new", "longest reply in tokens; if not given, at most half of --max-len", &g.max_new, 1, BIG),
        OPT_MAXLEN("longest prompt + reply: prompts are cut from the left (whole turns where they can) to --max-len minus "
                   "--max-new tokens; the counts are printed", &max_len),
        OPT_I("seed", "sampling seed: the same seed, the same file", &g.seed, 0, BIG),
        OPT_B("keep-cut", "also write a kept reply that stopped at --max-new before its end (SFT would teach replies that "
                          "stop there); they are left out and counted otherwise", &keep_cut),
        OPT_B("overwrite", "replace an existing --out", &overwrite),
        OPT_B("skip-bad", "skip malformed records (counted and reported) instead of stopping", &skip_bad),
        OPT_I("log-every", "prompts between progress lines on stderr when it is not a terminal (0: every tenth of the file)",
              &log_every, 0, BIG),
    };
    char reward[1024];
    rlhf_model *policy = NULL, *rm = NULL;
    rlhf_score_fn fn = NULL; /* several rewards: their mix, with user */
    void *user = NULL;
    rlhf_tokenizer *t = NULL;
    rlhf_dataset *d = NULL;
    rlhf_data_format fmt;
    rlhf_fit_report fit;
    rlhf_rng rng;
    bon_state b;
    atomic_file af;
    FILE *f = NULL;
    int *ids = NULL;
    size_t total;
    bon_counts cnt;
    memset(&b, 0, sizeof b);
    memset(&fit, 0, sizeof fit);
    memset(&rw, 0, sizeof rw);
    np = parse_opts("bon", argc, argv, 2, o, N_OPTS(o), pos, 0);
    if (np < 0)
        return help_or_usage(np, "rlhf bon --model POLICY --reward RM --prompts FILE --out OUT.jsonl [options]", BON_ABOUT, o,
                             N_OPTS(o));
    if (!model || !rw.path.n || !prompts || !out) return usage_error("bon", "needs --model, --reward, --prompts and --out");
    if ((rc = rewards_check("bon", &rw)) != 0 || (rc = bon_check_sampling("bon", g.n, "--n", g.temperature)) != 0) return rc;
    if ((rc = bon_check_out(out, overwrite, prompts, model, &rw)) != 0) return rc;
    if (bon_format("bon", prompts, &fmt, &what) != 0) return 1;

    /* the models, the lengths, the prompts */
    rc = 1;
    if (!(policy = load_model("bon", "--model", model, ROLE_POLICY, &t)) || rewards_load("bon", &rw, model, t, 0, &rm, &fn, &user))
        goto done;
    rewards_name(&rw, reward, sizeof reward);
    if ((rc = bon_lengths(&rw, policy, given(o, N_OPTS(o), "max-new"), &max_len, &g, &limit)) != 0) goto done;
    rc = 1;
    if (!(d = load_data("bon", prompts, fmt, skip_bad))) goto done;
    total = rlhf_dataset_size(d);
    say("bon: %zu %s records of %s; best of %d replies of at most %d tokens after prompts of at most %d", total, what, prompts, g.n,
        g.max_new, limit);
    rlhf_rng_seed(&rng, (uint64_t)g.seed);
    if (!bon_open(&b, policy, rm, t, &g, g.n, g.max_new, &rng) || !(ids = (int *)malloc((size_t)limit * sizeof(int)))) {
        rc = fail("bon", "out of memory");
        goto done;
    }
    b.fn = fn, b.user = user;
    if (log_every == 0) log_every = total >= 10 ? (int)(total / 10) : 1;

    /* every prompt's best of N, into the temporary file */
    bon_remove_stale(out);
    if (!(f = atomic_open(&af, out))) {
        rc = fail("bon", "cannot write %s (its temporary file %s): %s", out, af.tmp, strerror(errno));
        goto done;
    }
    catch_signals();
    memset(&cnt, 0, sizeof cnt);
    if ((rc = bon_loop(&b, d, t, &g, limit, keep_cut, log_every, prompts, reward, out, &af, f, ids, &fit, &cnt)) != 0) goto done;
    status_done();
    if (g_stop) {
        atomic_abort(&af);
        f = NULL;
        fail("bon", "stopped after %zu of %zu prompts: nothing written, %s is as it was", cnt.done, total, out);
        rc = stopped_status();
        goto done;
    }

    /* the file in place, then the counts */
    rc = bon_finish(&af, &f, out, prompts, &g, keep_cut, &fit, &cnt);
done:
    if (f) atomic_abort(&af);
    free(ids);
    bon_close(&b);
    rlhf_dataset_free(d);
    rlhf_tokenizer_free(t);
    rewards_free(&rw);
    rlhf_model_free(policy);
    return rc;
}

/* ---- tokenizer ------------------------------------------------------------------------- */
static int cmd_tokenizer(int argc, char **argv) {
    const char *pos[1], *data = NULL, *out = "tokenizer.json";
    int vocab = 4096;
    rlhf_result r;
    opt o[] = {
        OPT_S("data", "UTF-8 text file to learn merges from", &data),
        OPT_I("vocab", "vocabulary size: 256 bytes + merges + 6 special tokens", &vocab, 262, 1 << 20),
        OPT_S("out", "where to write the tokenizer (JSON; replaced atomically)", &out),
    };
    int np = parse_opts("tokenizer", argc, argv, 2, o, N_OPTS(o), pos, 0);
    char *text = NULL;
    const char *src = NULL;
    rlhf_dataset *d = NULL;
    size_t len = 0;
    rlhf_tokenizer *t;
    rlhf_error err;
    if (np < 0) return help_or_usage(np, "rlhf tokenizer --data FILE [options]", "Train a byte-level BPE tokenizer (GPT-2's pre-tokenizer) on a text file.", o, N_OPTS(o));
    if (!data) return usage_error("tokenizer", "needs --data");
    if (is_dir(out)) return fail("tokenizer", "--out %s is a directory", out);
    {   /* replacing is for an older tokenizer only: never the text itself, a checkpoint or any other file */
        struct stat so, sd;
        rlhf_tokenizer *old = NULL;
        if (stat(out, &so) == 0 && stat(data, &sd) == 0 && so.st_dev == sd.st_dev && so.st_ino == sd.st_ino)
            return usage_error("tokenizer", "--out %s is the --data file itself", out);
        if (stat(out, &so) == 0 && !S_ISREG(so.st_mode)) /* a pipe or a device: opening it to check would block */
            return fail("tokenizer", "--out %s exists and is not a regular file: give the path of a JSON file to write", out);
        if (exists(out) && rlhf_tokenizer_load(&old, out, &err) != RLHF_OK)
            return fail("tokenizer", "--out %s exists and is not a tokenizer: refusing to replace it (remove it or pick another path)", out);
        rlhf_tokenizer_free(old);
    }
    if (strrchr(out, '/')) { /* its directory is made if missing */
        char dir[1024];
        snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(out, '/') - out), out);
        if (dir[0] && !mkdir_p(dir)) return fail("tokenizer", "cannot create the directory %s: %s", dir, strerror(errno));
    }
    {   /* a regular text file is read once, by pretrain's own reader: text it would refuse (invalid UTF-8: a
           binary file) is refused here too, with its line and column. A .jsonl file, a pipe (read once), or a
           file that reader refuses for another reason (its size limit; empty) is read by read_text. */
        size_t n = strlen(data);
        if (!(n >= 6 && strcmp(data + n - 6, ".jsonl") == 0) && is_regular(data)) {
            if (rlhf_dataset_load(&d, data, RLHF_DATA_TEXT, NULL, &err) == RLHF_OK)
                src = rlhf_dataset_record(d, 0)->text.str, len = rlhf_dataset_record(d, 0)->text.len;
            else if (strstr(err.message, "invalid UTF-8"))
                return fail("tokenizer", "%s (pretrain reads UTF-8 text only)", err.message);
            else
                rlhf_dataset_free(d), d = NULL;
        }
    }
    if (!d && !(src = text = read_text("tokenizer", data, &len))) return 1;
    r = rlhf_tokenizer_train(&t, src, len, vocab, &err);
    free(text);
    rlhf_dataset_free(d);
    if (r != RLHF_OK) return fail("tokenizer", "%s: %s", data, err.message);
    errno = 0;
    if ((r = rlhf_tokenizer_save(t, out)) != RLHF_OK) {
        /* rlhf_tokenizer_save returns no message: the reason is the errno of its failed open, write or rename,
           read before anything else runs (exists() below sets errno to ENOENT when there is no old file) */
        int e = errno;
        const char *why = r != RLHF_ERR_IO ? rlhf_result_string(r) : e ? strerror(e) : "the write failed";
        rlhf_tokenizer_free(t);
        return fail("tokenizer", "cannot write %s: %s%s", out, why, exists(out) ? " (the old file is unchanged)" : "");
    }
    printf("%s: %d tokens learned from %zu bytes of %s\n", out, rlhf_tokenizer_vocab_size(t), len, data);
    rlhf_tokenizer_free(t);
    return 0;
}

/* ---- pretrain, sft, rm, dpo, kto: one command shape ------------------------------------------- */
typedef struct train_cli {
    const char *cmd, *data, *val, *model, *tokfile, *out;
    int is_pre, is_rm, is_dpo, is_kto, resume, overwrite, skip_bad, seed;
    int layers, heads, embd, ctx, norm_samples, normalize, pack, decay, tmpl;
    int shape_given;  /* bits: --layers, --heads, --embd, --ctx on the command line */
    rlhf_train_options to;
    int steps;
    /* dpo and kto: --ref (NULL: --model again), --precompute-ref, --beta; dpo: --loss (an index of
       DPO_LOSSES), --label-smoothing, --simpo-gamma, all into dc; kto: the weights, into kc */
    const char *ref;
    int dpo_loss, precompute;
    rlhf_dpo_config dc;
    rlhf_kto_config kc;
} train_cli;
#define DPO_LOSSES "sigmoid|ipo|hinge|simpo"
static const int DPO_LOSS_VALUES[] = {RLHF_DPO_SIGMOID, RLHF_DPO_IPO, RLHF_DPO_HINGE, RLHF_DPO_SIMPO};
/* a stage that trains against a frozen reference: dpo (but SimPO) and kto */
static int has_reference(const train_cli *a) { return a->is_kto || (a->is_dpo && a->dc.loss != RLHF_DPO_SIMPO); }

/* the model to train: resumed, loaded or new */
static rlhf_model *train_model(train_cli *a, rlhf_tokenizer **t) {
    char path[1100];
    rlhf_model *m;
    if (a->resume) {
        if (!(m = load_model(a->cmd, "--resume", join(path, sizeof path, a->out, "last.safetensors"), a->is_rm ? ROLE_SCORER : ROLE_POLICY, t)))
            return NULL;
        a->to.resume_step = rlhf_model_meta(m, "rlhf.train.step") ? atol(rlhf_model_meta(m, "rlhf.train.step")) : 0;
        say("resuming %s at step %ld", path, a->to.resume_step);
        return m;
    }
    if (a->model) {
        if (!(m = load_model_tok(a->cmd, "--model", a->model, ROLE_POLICY, t, a->tokfile, 1))) return NULL;
        if (a->is_rm && rlhf_model_add_score_head(m, -1.0f, (uint64_t)a->seed) != RLHF_OK) {
            fail(a->cmd, "cannot add the scalar head: %s", rlhf_model_last_error(m));
            rlhf_model_free(m);
            return NULL;
        }
        return m;
    }
    {
        rlhf_config cfg;
        rlhf_memory mem;
        rlhf_result r;
        if (load_tokenizer_any(a->cmd, "--tokenizer", a->tokfile, t) != 0) return NULL;
        cfg.vocab_size = rlhf_tokenizer_vocab_size(*t);
        cfg.n_ctx = a->ctx;
        cfg.n_layer = a->layers;
        cfg.n_head = a->heads;
        cfg.n_embd = a->embd;
        if ((r = rlhf_model_create(&m, &cfg, (uint64_t)a->seed)) != RLHF_OK) {
            if (r == RLHF_ERR_OUT_OF_MEMORY && rlhf_config_memory(&cfg, 1, 1, 0, &mem) == RLHF_OK)
                return fail(a->cmd, "out of memory: a model of %d layers, %d channels, context %d needs %.0f MB for its weights alone", a->layers,
                            a->embd, a->ctx, mem.params / 1048576.0), (rlhf_model *)NULL;
            return fail(a->cmd, "cannot create the model (layers %d, heads %d, embd %d, ctx %d): %s", a->layers, a->heads, a->embd, a->ctx,
                        rlhf_result_string(r)), (rlhf_model *)NULL;
        }
        rlhf_model_set_log(m, log_cb, NULL);
        return m;
    }
}
/* A --resume continues this stage's run: the checkpoint's kind, and the
   shape options if given, must agree with it. */
static int resume_matches(const train_cli *a, rlhf_model *m) {
    const char *want = a->is_pre ? "base" : a->is_rm ? "reward" : "policy", *kind = rlhf_model_meta(m, "rlhf.kind");
    const rlhf_config *c = rlhf_model_config(m);
    if (kind && strcmp(kind, want) != 0)
        return usage_error(a->cmd, "%s/last.safetensors is a %s checkpoint, not a %s run's: give this run its own --out", a->out, kind, a->cmd);
    if (a->is_pre && (a->shape_given & 1) && a->layers != c->n_layer) return usage_error(a->cmd, "--layers %d differs from the run's %d", a->layers, c->n_layer);
    if (a->is_pre && (a->shape_given & 2) && a->heads != c->n_head) return usage_error(a->cmd, "--heads %d differs from the run's %d", a->heads, c->n_head);
    if (a->is_pre && (a->shape_given & 4) && a->embd != c->n_embd) return usage_error(a->cmd, "--embd %d differs from the run's %d", a->embd, c->n_embd);
    if (a->is_pre && (a->shape_given & 8) && a->ctx != c->n_ctx) return usage_error(a->cmd, "--ctx %d differs from the run's %d", a->ctx, c->n_ctx);
    return 0;
}
/* The reward model's normalisation (mean 0, std 1 on SFT samples), into
   every checkpoint the run wrote: last (the model in memory) and best. */
/* 1 when a and b hold the same weights, bit for bit (the same shapes assumed: checkpoints of one run) */
static int same_weights(rlhf_model *a, rlhf_model *b) {
    int i, n = rlhf_model_num_tensors(a);
    if (n != rlhf_model_num_tensors(b)) return 0;
    for (i = 0; i < n; i++) {
        rlhf_tensor_info x, y;
        if (rlhf_model_tensor(a, i, &x) != RLHF_OK || rlhf_model_tensor(b, i, &y) != RLHF_OK || x.numel != y.numel ||
            memcmp(x.data, y.data, x.numel * sizeof(float)) != 0)
            return 0;
    }
    return 1;
}
static int normalize_rm(train_cli *a, rlhf_model *m, const rlhf_tokenizer *t, const rlhf_dataset *d) {
    char path[1100];
    rlhf_model *sft, *best = NULL;
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_fit_report fit;
    float mean, sd;
    rlhf_error err;
    int rc = 0;
    memset(&fit, 0, sizeof fit);
    if (g_stop) /* the stop came as the training ended */
        return fail(a->cmd, "stopped before the normalisation: the checkpoints in %s are UNNORMALISED (raw scores); continue "
                    "with the same command and --resume to normalise them", a->out), stopped_status();
    if (!(sft = load_model(a->cmd, "--model", a->model, ROLE_POLICY, NULL))) return 1;
    if (grow_vocab(a->cmd, sft, t, 1) != 0) { /* a base model's vocabulary grows as the reward model's did */
        rlhf_model_free(sft);
        return 1;
    }
    status_set("[rm] normalising: sampling %d SFT replies (Ctrl-C stops after this, Ctrl-C twice at once: unnormalised)",
               a->norm_samples);
    if (rlhf_reward_normalize_ex(m, sft, t, d, a->norm_samples, &sc, 64, (uint64_t)a->seed, a->to.seq_len, &mean, &sd, &fit, &err) !=
        RLHF_OK)
        rc = fail(a->cmd, "normalisation failed: %s; the checkpoints in %s are left UNNORMALISED (raw scores). "
                  "Fix the cause, or pass --no-normalize to keep raw scores on purpose", lib_msg(err.message), a->out);
    else if (rlhf_model_save_ex(m, join(path, sizeof path, a->out, "last.safetensors"), 0, &err) != RLHF_OK)
        rc = fail(a->cmd, "%s", err.message);
    else {
        print_fit("rm normalisation", &fit);
        say("rm: last.safetensors normalised on %d SFT samples (raw mean %.4f, std %.4f)", a->norm_samples, (double)mean, (double)sd);
    }
    /* best: the same samples (same seed), its own scores */
    if (rc == 0 && g_stop && exists(join(path, sizeof path, a->out, "best.safetensors")))
        rc = (fail(a->cmd, "stopped after normalising last.safetensors: best.safetensors is left UNNORMALISED; continue with "
                   "the same command and --resume to normalise both"), stopped_status());
    else if (rc == 0 && exists(join(path, sizeof path, a->out, "best.safetensors"))) {
        float gain, bias;
        if (!(best = load_model(a->cmd, "best", path, ROLE_SCORER, NULL))) rc = 1;
        else if (same_weights(best, m)) { /* the best is the last: the same samples would give the same scores */
            rlhf_reward_normalization(m, &gain, &bias);
            if (rlhf_reward_set_normalization(best, gain, bias) != RLHF_OK)
                rc = fail(a->cmd, "best.safetensors: cannot set its normalisation: %s", rlhf_model_last_error(best));
            else if (rlhf_model_save_ex(best, path, 0, &err) != RLHF_OK)
                rc = fail(a->cmd, "best.safetensors: %s", err.message);
            else
                say("rm: best.safetensors normalised (the last step's weights: its gain and bias, without sampling again)");
        } else if (rlhf_reward_normalize_ex(best, sft, t, d, a->norm_samples, &sc, 64, (uint64_t)a->seed, a->to.seq_len, &mean, &sd, NULL, &err) !=
                 RLHF_OK)
            rc = fail(a->cmd, "best.safetensors: normalisation failed: %s; it is left UNNORMALISED (last.safetensors is normalised)",
                      lib_msg(err.message));
        else if (rlhf_model_save_ex(best, path, 0, &err) != RLHF_OK)
            rc = fail(a->cmd, "best.safetensors: %s", err.message);
        else
            say("rm: best.safetensors normalised (raw mean %.4f, std %.4f)", (double)mean, (double)sd);
    }
    status_done();
    if (rc == 0 && g_stop) { /* the stop came during the last normalisation, which finished */
        say("rm: stopped (the signal came during the normalisation, which finished: the checkpoints are normalised)");
        rc = stopped_status();
    }
    rlhf_model_free(best);
    rlhf_model_free(sft);
    return rc;
}
/* DPO's and KTO's frozen reference: --ref, else --model loaded a second time (the SFT model the policy
   starts from; on --resume too, where the policy is the run's last.safetensors). Its
   vocabulary grows to the tokenizer's as the policy's did (the same mean rows), and then it
   must have the policy's shape. The library reads it during training, or only in its setup
   under --precompute-ref; either way it stays loaded until rlhf_dpo_train (rlhf_kto_train) returns. */
static rlhf_model *dpo_reference(const train_cli *a, const rlhf_model *policy, const rlhf_tokenizer *t) {
    const char *what = a->ref ? "--ref" : "--model", *path = a->ref ? a->ref : a->model;
    const char *tp = rlhf_model_meta(policy, "tokenizer"), *tr;
    const rlhf_config *p = rlhf_model_config(policy), *c;
    rlhf_model *ref = load_model(a->cmd, what, path, ROLE_POLICY, NULL);
    if (!ref) return NULL;
    tr = rlhf_model_meta(ref, "tokenizer");
    /* ids mean text only through one tokenizer (a resumed policy's was rewritten by the run: not compared) */
    if (a->ref && !a->resume && tp && tr && strcmp(tp, tr) != 0) {
        fail(a->cmd, "--ref %s stores another tokenizer (or chat template) than --model %s: the reference would read "
             "other text than the policy", a->ref, a->model);
        rlhf_model_free(ref);
        return NULL;
    }
    if (grow_vocab(a->cmd, ref, t, 1) != 0) {
        rlhf_model_free(ref);
        return NULL;
    }
    c = rlhf_model_config(ref);
    if (c->vocab_size != p->vocab_size || c->n_ctx != p->n_ctx || c->n_layer != p->n_layer || c->n_head != p->n_head ||
        c->n_embd != p->n_embd) {
        fail(a->cmd, "%s %s (vocab %d, context %d, %d layers, %d heads, %d channels) is not shaped as the policy "
             "(vocab %d, context %d, %d layers, %d heads, %d channels): the reference is the SFT model the policy "
             "starts from", what, path, c->vocab_size, c->n_ctx, c->n_layer, c->n_head, c->n_embd, p->vocab_size,
             p->n_ctx, p->n_layer, p->n_head, p->n_embd);
        rlhf_model_free(ref);
        return NULL;
    }
    return ref;
}
/* checks of the options against each other, before anything is loaded */
static int train_check(const train_cli *a, const opt *o, int n) {
    const char *c = a->cmd;
    if (!a->data || !a->out) return usage_error(c, "needs --data and --out");
    if (!a->is_pre && !a->model && !a->resume) return usage_error(c, "needs --model (the checkpoint to start from)");
    if (a->is_pre && !a->model && !a->tokfile && !a->resume) return usage_error(c, "needs --tokenizer for a new model, or --model");
    if (a->is_pre && a->model && a->shape_given) return usage_error(c, "--layers, --heads, --embd and --ctx shape a new model; --model %s has its own", a->model);
    if (a->is_pre && a->embd % a->heads != 0) return usage_error(c, "--embd %d must be a multiple of --heads %d", a->embd, a->heads);
    if (a->is_rm && a->resume && !a->model && a->normalize)
        return usage_error(c, "--resume needs --model too (the SFT checkpoint the reward model is normalised on), or --no-normalize");
    if (has_reference(a) && a->resume && !a->model)
        return usage_error(c, "--resume needs --model too (the SFT checkpoint the run started from%s): give the run's "
                           "command again with --resume", a->ref ? "" : ", which is also the frozen reference, loaded again");
    if (a->is_dpo && a->dc.loss == RLHF_DPO_SIMPO && (a->ref || a->precompute))
        return usage_error(c, "--loss simpo has no reference model: %s", a->ref ? "--ref is not used (drop it)"
                                                                              : "--precompute-ref has nothing to precompute");
    if (a->is_dpo && given(o, n, "simpo-gamma") && a->dc.loss != RLHF_DPO_SIMPO)
        return usage_error(c, "--simpo-gamma is SimPO's target margin, for --loss simpo only");
    if (a->is_dpo && a->dc.loss != RLHF_DPO_SIGMOID && a->dc.loss != RLHF_DPO_SIMPO && a->dc.label_smoothing > 0.0f)
        return usage_error(c, "--label-smoothing is for --loss sigmoid (cDPO) and simpo only: --loss %s has no label to "
                           "smooth", a->dc.loss == RLHF_DPO_IPO ? "ipo" : "hinge");
    if (a->is_kto && a->kc.desirable_weight == 0.0f && a->kc.undesirable_weight == 0.0f)
        return usage_error(c, "--desirable-weight and --undesirable-weight are both 0: every record's loss would be 0");
    if (!a->is_rm && !a->is_dpo && !a->is_kto && a->to.micro_batch > a->to.batch_size) /* dpo, kto: up to the step's */
        return usage_error(c, "--micro-batch %d is larger than --batch %d", a->to.micro_batch, a->to.batch_size);
    return 0;
}
/* KTO's label balance: the paper advises w_d n_d / (w_u n_u) in [1, 4/3] (TRL's KTOTrainer warns outside it) */
/* The run's memory budget (budget_line): the trained model's rows a forward are the library's (the micro-batch;
   rm and dpo: every completion of batch-size prompts, K of a ranking, 2 of a pair), its T the sequence length;
   dpo and kto add the frozen reference's log-probs */
static void train_budget(const train_cli *a, const rlhf_model *m, const rlhf_model *ref, const rlhf_dataset *d) {
    const rlhf_config *c = rlhf_model_config(m);
    int T = a->to.seq_len ? a->to.seq_len : c->n_ctx, rows = a->to.batch_size, maxk = 2, rc = a->to.recompute;
    size_t i, sum = 0;
    if (a->to.micro_batch > 0 && a->to.micro_batch < rows) rows = a->to.micro_batch;
    if (a->is_rm || a->is_dpo) {
        for (i = 0; i < rlhf_dataset_size(d); i++) {
            const rlhf_record *r = rlhf_dataset_record(d, i);
            if (r->kind == RLHF_RECORD_RANKING && r->n_completions > maxk) maxk = r->n_completions;
        }
        rows = a->to.micro_batch > 0 && a->to.micro_batch < a->to.batch_size * maxk ? a->to.micro_batch : a->to.batch_size * maxk;
        if (rows < maxk) rows = maxk;
    }
    budget_line(a->cmd, a->is_rm ? "reward model" : "model", c, rows, T, BUDGET_TRAINED, rc, &sum);
    if (ref) budget_line(a->cmd, "reference", rlhf_model_config(ref), rows, T, BUDGET_LOGPROBS, 0, &sum);
    if (a->is_rm && a->normalize) /* the normalisation's SFT model (--model, the shape of m), sampling after the training */
        budget_line(a->cmd, "SFT model sampling for the normalisation", c, 1, c->n_ctx, BUDGET_FORWARD, 0, &sum);
    budget_total(a->cmd, sum, ref || (a->is_rm && a->normalize) ? 2 : 1);
}
static void kto_balance(const train_cli *a, const rlhf_dataset *d) {
    size_t i, n = rlhf_dataset_size(d), nd = 0;
    double wd = a->kc.desirable_weight, wu = a->kc.undesirable_weight, ratio;
    for (i = 0; i < n; i++) nd += rlhf_dataset_record(d, i)->label != 0;
    if (nd == 0 || nd == n) {
        say("warning: kto: every record of %s (%zu) is %s: KTO only pushes their implicit rewards %s the reference point",
            a->data, n, nd ? "desirable" : "undesirable", nd ? "above" : "below");
        return;
    }
    ratio = wd * (double)nd / (wu * (double)(n - nd));
    if (ratio >= 1.0 && ratio <= 4.0 / 3.0) return;
    say("warning: kto: %zu desirable x --desirable-weight %g / (%zu undesirable x --undesirable-weight %g) = %.3g; the "
        "KTO paper advises 1 to 4/3: --desirable-weight from %.3g to %.3g, or --undesirable-weight from %.3g to %.3g",
        nd, wd, n - nd, wu, ratio, wu * (double)(n - nd) / (double)nd, wu * (double)(n - nd) / (double)nd * 4.0 / 3.0,
        wd * (double)nd / (double)(n - nd) * 0.75, wd * (double)nd / (double)(n - nd));
}
/* sft's --val, before training: a file none of whose records fits --max-len would leave the run without a
   validation set (rlhf_sft_train skips them, counted with --data's). The same rule (rlhf_sft_encode_fit, seq_len + 1
   tokens), so the verdict is the library's. 0, or 1 (said). The other stages say so after training (train_summary). */
static int sft_val_fits(const train_cli *a, const rlhf_tokenizer *t, const rlhf_dataset *v, int n_ctx) {
    int T = a->to.seq_len ? a->to.seq_len : n_ctx, *ids;
    unsigned char *mask;
    rlhf_fit_report fit;
    size_t i, n, kept = 0;
    char line[256];
    if (a->is_pre || a->is_rm || a->is_dpo || a->is_kto || rlhf_dataset_record(v, 0)->kind == RLHF_RECORD_TEXT) return 0;
    ids = (int *)malloc(((size_t)T + 1) * sizeof *ids);
    mask = (unsigned char *)malloc((size_t)T + 1);
    if (!ids || !mask) {
        free(ids);
        free(mask);
        return fail(a->cmd, "out of memory");
    }
    memset(&fit, 0, sizeof fit);
    for (i = 0; i < rlhf_dataset_size(v) && !kept; i++)
        kept += rlhf_sft_encode_fit(t, rlhf_dataset_record(v, i), T + 1, ids, mask, (size_t)T + 1, &n, &fit) == RLHF_OK;
    free(ids);
    free(mask);
    if (kept) return 0;
    return fail(a->cmd, "--val %s: %s: no validation set is left (raise --max-len, up to the model's context %d, or "
                "give a --val of shorter records)", a->val, rlhf_fit_describe(&fit, line, sizeof line), n_ctx);
}
/* What a finished run says: its steps and validation, the stage's held-out measure. 0, or 1 when it diverged. */
static int train_summary(const train_cli *a, const rlhf_train_report *rep) {
    if (rep->steps == 0 && rep->skipped_steps == 0 && a->resume) {
        say("%s: the run in %s had already finished at step %ld: nothing left to train", a->cmd, a->out, a->to.resume_step);
        return 0;
    }
    if (isfinite(rep->val_loss) && rep->best_step < 0) /* the best is the resumed run's, from before this leg */
        say("%s: %ld steps in %.1f s; validation loss %.4f (best %.4f, before --resume)", a->cmd, rep->steps, rep->seconds,
            (double)rep->val_loss, (double)rep->best_val_loss);
    else if (isfinite(rep->val_loss))
        say("%s: %ld steps in %.1f s; validation loss %.4f (best %.4f at step %ld)", a->cmd, rep->steps, rep->seconds,
            (double)rep->val_loss, (double)rep->best_val_loss, rep->best_step);
    else if (a->val) /* every record of --val was skipped (sft refuses that before training: sft_val_fits) */
        say("warning: %s: %ld steps in %.1f s; no validation set: every record of --val %s was skipped (too long: "
            "the skipped count above is --data's and --val's)", a->cmd, rep->steps, rep->seconds, a->val);
    else if (a->to.val_fraction > 0 && rep->train_examples > 0)
        say("%s: %ld steps in %.1f s; no validation set: --val-fraction %g of %ld example%s holds out none (too few: "
            "give more data or a --val file)", a->cmd, rep->steps, rep->seconds, (double)a->to.val_fraction,
            rep->train_examples, rep->train_examples == 1 ? "" : "s");
    else
        say("%s: %ld steps in %.1f s; no validation set (--val, or --val-fraction above 0)", a->cmd, rep->steps, rep->seconds);
    if (a->is_rm && isfinite(rep->val_accuracy)) say("rm: held-out pairwise accuracy %.4f", (double)rep->val_accuracy);
    if (a->is_dpo && isfinite(rep->val_accuracy))
        say("dpo: held-out rewards/accuracies %.4f (pairs whose chosen reply has the larger implicit reward %s)",
            (double)rep->val_accuracy, a->dc.loss == RLHF_DPO_SIMPO ? "beta x its mean log-prob" : "beta log(pi/pi_ref)");
    if (a->is_kto && isfinite(rep->val_accuracy))
        say("kto: held-out accuracy %.4f (records whose implicit reward beta log(pi/pi_ref) lies on their label's side of "
            "the reference point)", (double)rep->val_accuracy);
    if (rep->skipped_steps > rep->steps)
        return fail(a->cmd, "training diverged: %ld of %ld steps were skipped (loss or gradient not finite); lower --lr",
                    rep->skipped_steps, rep->skipped_steps + rep->steps);
    if (rep->skipped_steps) say("warning: %ld steps were skipped (loss or gradient not finite)", rep->skipped_steps);
    return 0;
}
static int train_run(train_cli *a, const opt *o, int n_opt) {
    rlhf_model *m = NULL;
    rlhf_tokenizer *t = NULL;
    rlhf_dataset *d = NULL, *v = NULL;
    rlhf_error err;
    rlhf_train_report rep;
    rlhf_model *ref = NULL;
    rlhf_data_format fmt = a->is_pre ? RLHF_DATA_TEXT : a->is_kto ? RLHF_DATA_UNPAIRED
                         : a->is_rm || a->is_dpo ? RLHF_DATA_PREFERENCE : RLHF_DATA_SFT;
    run_out ro = {NULL, 0, 0, NULL, 0};
    rlhf_result r;
    int rc;
    if ((rc = prepare_run_dir(a->cmd, a->out, a->resume, a->overwrite, TRAIN_CKPTS, PPO_CKPTS)) != 0) return rc;
    if (a->resume && (rc = compare_options(a->cmd, a->out, o, n_opt)) != 0) return rc;
    rc = 1;
    if (!(m = train_model(a, &t))) goto done;
    if (a->resume && (rc = resume_matches(a, m)) != 0) goto done;
    if (given(o, n_opt, "template") && rlhf_tokenizer_template(t) != (rlhf_chat_template)a->tmpl) {
        rlhf_tokenizer_set_template(t, (rlhf_chat_template)a->tmpl); /* saved with the checkpoints: later stages follow it */
        say("%s: conversations rendered with the %s template", a->cmd, a->tmpl ? "HH-RLHF plain-text" : "chat");
    }
    rc = 1;
    if (a->resume && a->to.max_steps > 0 && a->to.resume_step >= a->to.max_steps) {
        if (!a->is_rm) {
            rc = usage_error(a->cmd, "the run in %s is already at step %ld: raise --steps to continue it", a->out, a->to.resume_step);
            goto done;
        }
        a->to.max_steps = a->to.resume_step; /* rm: nothing to train; the normalisation is redone below */
    }
    if (a->to.seq_len > rlhf_model_config(m)->n_ctx) {
        rc = usage_error(a->cmd, "--%s %d is longer than the model's context (%d)", a->is_pre ? "seq-len" : "max-len", a->to.seq_len,
                         rlhf_model_config(m)->n_ctx);
        goto done;
    }
    if (!(d = load_data(a->cmd, a->data, fmt, a->skip_bad)) || (a->val && !(v = load_data(a->cmd, a->val, fmt, a->skip_bad)))) goto done;
    if (v && (rc = sft_val_fits(a, t, v, rlhf_model_config(m)->n_ctx)) != 0) goto done;
    rc = 1;
    if (a->is_kto) kto_balance(a, d);
    if (has_reference(a) && !(ref = dpo_reference(a, m, t))) goto done;
    train_budget(a, m, ref, d);
    if (a->resume && truncate_metrics(a->cmd, a->out, a->cmd, a->to.resume_step)) goto done; /* stage name = command */
    if (!a->resume) {
        clear_run(a->out, TRAIN_CKPTS);
        if (save_options(a->cmd, a->out, o, n_opt)) goto done;
    }
    if (!(ro.metrics = open_metrics(a->cmd, a->out))) goto done;
    ro.t0 = now_s();
    ro.first_step = a->to.resume_step;
    ro.stage = a->cmd;
    a->to.metrics = run_metrics;
    a->to.metrics_user = &ro;
    a->to.out_dir = a->out;
    a->to.log = log_cb;
    a->to.should_stop = should_stop;
    catch_signals();
    r = a->is_kto ? rlhf_kto_train(m, ref, t, d, v, &a->kc, &a->to, &rep, &err)
        : a->is_dpo ? rlhf_dpo_train(m, ref, t, d, v, &a->dc, &a->to, &rep, &err)
        : a->is_rm ? rlhf_reward_train(m, t, d, v, &a->to, &rep, &err)
                   : rlhf_sft_train(m, t, d, v, &a->to, &rep, &err);
    status_done();
    if (r == RLHF_ERR_INTERRUPTED) {
        fail(a->cmd, "%s; continue with the same command and --resume", lib_msg(err.message));
        rc = stopped_status();
        goto done;
    }
    if (r != RLHF_OK) {
        rc = fail(a->cmd, "%s", lib_msg(err.message));
        goto done;
    }
    if ((rc = train_summary(a, &rep)) != 0) goto done;
    rc = 1;
    if (a->is_rm && a->normalize && (rc = normalize_rm(a, m, t, d)) != 0) goto done;
    rc = 1;
    if (a->is_rm && !a->normalize) say("warning: --no-normalize: the reward model's scores are raw (PPO will warn)");
    {
        char path[1100];
        printf("checkpoints in %s: last.safetensors%s; metrics in %s/metrics.jsonl\n", a->out,
               exists(join(path, sizeof path, a->out, "best.safetensors")) ? ", best.safetensors" : "", a->out);
    }
    rc = 0;
done:
    if (ro.metrics) fclose(ro.metrics);
    rlhf_dataset_free(d);
    rlhf_dataset_free(v);
    rlhf_tokenizer_free(t);
    rlhf_model_free(ref);
    rlhf_model_free(m);
    return rc;
}
/* The options of a's stage into o (room for cap): a new model's shape for pretrain, packing for pretrain and sft,
   normalisation for rm, the reference and the loss for dpo and kto. Returns their count (-1: more than cap). */
static int train_options(train_cli *a, opt *o, int cap) {
    const int is_pre = a->is_pre, is_rm = a->is_rm, is_dpo = a->is_dpo, is_kto = a->is_kto, pref = is_dpo || is_kto;
    opt all[] = {
        OPT_S("data", is_pre   ? "text file (or {\"text\"} JSONL) to pretrain on"
                      : is_kto ? "unpaired preference JSONL ({\"prompt\", \"completion\", \"label\": true|false}; strings or "
                                 "TRL's conversational form)"
                      : is_rm || is_dpo ? "preference JSONL (pairs, HH-RLHF, rankings; strings or TRL's conversational form)"
                                        : "SFT JSONL (prompt/completion or messages)", &a->data),
        OPT_S("val", "held-out file of the same kind (none: --val-fraction of --data is held out)", &a->val),
        OPT_S("model", is_pre ? "start from this checkpoint (or Hugging Face directory) instead of a new model"
                       : is_rm ? "the SFT checkpoint (or Hugging Face directory) to start from (and to normalise on)"
                       : is_dpo ? "the SFT checkpoint (or Hugging Face directory): the policy starts here, and without --ref "
                                  "it is also the frozen reference (needed again with --resume; simpo has none)"
                       : is_kto ? "the SFT checkpoint (or Hugging Face directory): the policy starts here, and without --ref "
                                  "it is also the frozen reference (needed again with --resume)"
                              : "the base checkpoint (a .safetensors file or a Hugging Face directory) to start from", &a->model),
        /* dpo and kto */
        OPT_S("ref", "the frozen reference pi_ref, if not --model (the policy's shape and tokenizer)", &a->ref),
        OPT_FA("beta", is_kto ? "the strength of the pull toward the reference: implicit reward beta log(pi/pi_ref)"
                              : "the strength of the pull toward the reference: implicit reward beta log(pi/pi_ref) (simpo: "
                                "beta x the per-token mean log-prob)", is_kto ? &a->kc.beta : &a->dc.beta, 0, BIG),
        OPT_C("loss", "sigmoid: DPO (Rafailov et al. eq. 7); ipo: the gap regressed to 1/(2 beta) on per-token mean "
                      "log-probs (Azar et al.); hinge: max(0, 1 - beta h) (SLiC); simpo: SimPO (Meng et al.), the sigmoid "
                      "loss on per-token mean log-probs less a margin, with no reference model", &a->dpo_loss, DPO_LOSSES),
        OPT_FB("label-smoothing", "cDPO's eps in [0, 0.5): the chance a label is wrong (--loss sigmoid and simpo)",
               &a->dc.label_smoothing, 0, 0.5),
        OPT_FB("simpo-gamma", "SimPO's target margin gamma: h = the gap of the per-token mean log-probs minus gamma/beta "
                              "(--loss simpo only)", &a->dc.simpo_gamma, 0, 1e6),
        OPT_F("desirable-weight", "w_d, the weight of a desirable record's loss: raise it when they are rarer (the KTO "
                                  "paper advises w_d n_d / (w_u n_u) from 1 to 4/3)", &a->kc.desirable_weight, 0, 1e6),
        OPT_F("undesirable-weight", "w_u, the weight of an undesirable record's loss", &a->kc.undesirable_weight, 0, 1e6),
        OPT_B("precompute-ref", PRECOMPUTE_HELP, &a->precompute),
        OPT_S("out", "run directory: checkpoints and metrics.jsonl", &a->out),
        OPT_B("resume", "continue the run in --out from its last.safetensors", &a->resume),
        OPT_B("overwrite", "start again in an --out that holds a run (its checkpoints and metrics are replaced)", &a->overwrite),
        OPT_B("skip-bad", "skip malformed records (counted and reported) instead of stopping", &a->skip_bad),
        OPT_FA("lr", "peak learning rate", &a->to.opt.lr, 0, 10),
        OPT_F("weight-decay", "AdamW weight decay (matrices and embeddings)", &a->to.opt.weight_decay, 0, 10),
        OPT_F("grad-clip", "clip the gradient norm (0: off)", &a->to.opt.grad_clip, 0, BIG),
        OPT_I("batch", is_rm || is_dpo ? "prompts per step (each with all its pairs)" : is_kto ? "records per step"
                                                                                     : "sequences per step",
              &a->to.batch_size, 1, 1 << 20),
        OPT_I("micro-batch", "sequences per forward (0: all of the step)", &a->to.micro_batch, 0, 1 << 20),
        OPT_B("recompute", RECOMPUTE_HELP, &a->to.recompute),
        OPT_I("seq-len", "length of the rows the text is cut into (0: the model's context)", &a->to.seq_len, 0, 1 << 20),
        OPT_MAXLEN(is_rm ? "longest sequence: a longer prompt is cut from the left (whole turns where it can), a record whose "
                           "completion alone does not fit is skipped; the counts are printed (also the normalisation's limit)"
                         : "longest sequence: a longer prompt is cut from the left (whole turns where it can), a record whose "
                           "completion alone does not fit is skipped; the counts are printed", &a->to.seq_len),
        OPT_I("epochs", "passes over the data", &a->to.epochs, 1, 1 << 20),
        OPT_I("steps", "stop after this many steps (0: the epochs decide)", &a->steps, 0, BIG),
        OPT_I("warmup", "warm-up steps", &a->to.warmup_steps, 0, BIG),
        OPT_C("decay", "learning-rate decay after the warm-up", &a->decay, "cosine|linear|constant"),
        OPT_F("min-lr", "floor of the decay, as a fraction of lr", &a->to.min_lr_ratio, 0, 1),
        OPT_I("eval-every", "steps between validations and checkpoints (0: at the end only)", &a->to.eval_every, 0, BIG),
        OPT_F("val-fraction", "held out when --val is not given (below 1)", &a->to.val_fraction, 0, 0.99),
        OPT_I("log-every", "steps between progress lines when not on a terminal", &a->to.log_every, 0, BIG),
        OPT_I("seed", pref ? "shuffling and the held-out split" : "shuffling, split, init", &a->seed, 0, BIG),
        /* pretrain only (--tokenizer: every stage) */
        OPT_S("tokenizer", "for a new model, or a --model without one: an rlhf tokenizer, a Hugging Face "
                           "directory, tokenizer.json, or vocab.json/encoder.json with merges.txt/vocab.bpe beside it",
              &a->tokfile),
        OPT_I("layers", "new model: layers", &a->layers, 1, 1024),
        OPT_I("heads", "new model: attention heads", &a->heads, 1, 1024),
        OPT_I("embd", "new model: channels (a multiple of heads)", &a->embd, 1, 1 << 16),
        OPT_I("ctx", "new model: context length", &a->ctx, 2, 1 << 16),
        /* pretrain and sft */
        OPT_B("pack", "pack several examples into each row (they never attend to each other)", &a->pack),
        /* sft only */
        OPT_C("template", "how conversations become text (kept in the checkpoint for the later stages): chat markers "
                          "<|user|> ... <|end|>, or HH-RLHF's plain \\n\\nHuman: ... \\n\\nAssistant: for a base model "
                          "(default: the --model's)", &a->tmpl, "chat|hh"),
        /* rm only */
        OPT_B("normalize", "normalise the reward on SFT samples (mean 0, std 1); when it cannot, the command fails (exit 1) "
                           "unless --no-normalize", &a->normalize),
        OPT_I("normalize-samples", "SFT samples for the reward normalisation", &a->norm_samples, 2, 1 << 20),
    };
    int k, n = 0;
    for (k = 0; k < N_OPTS(all); k++) {
        const char *nm = all[k].name;
        if ((choice_find("layers|heads|embd|ctx|seq-len", nm) >= 0 && !is_pre) || (!strcmp(nm, "max-len") && is_pre) ||
            (!strcmp(nm, "pack") && (is_rm || pref)) || (choice_find("normalize|normalize-samples", nm) >= 0 && !is_rm) ||
            (choice_find("ref|beta|precompute-ref", nm) >= 0 && !pref) ||
            (choice_find("loss|label-smoothing|simpo-gamma", nm) >= 0 && !is_dpo) ||
            (choice_find("desirable-weight|undesirable-weight", nm) >= 0 && !is_kto) ||
            (!strcmp(nm, "template") && strcmp(a->cmd, "sft") != 0))
            continue;
        if (n == cap) return -1;
        o[n++] = all[k];
    }
    return n;
}
/* rlhf pretrain | sft | rm | dpo | kto */
static int cmd_train(int argc, char **argv, const char *cmd) {
    const int is_pre = strcmp(cmd, "pretrain") == 0, is_rm = strcmp(cmd, "rm") == 0, is_dpo = strcmp(cmd, "dpo") == 0,
              is_kto = strcmp(cmd, "kto") == 0;
    train_cli a;
    opt o[64];
    int np, n, k;
    const char *pos[1];
    memset(&a, 0, sizeof a);
    a.cmd = cmd, a.is_pre = is_pre, a.is_rm = is_rm, a.is_dpo = is_dpo, a.is_kto = is_kto, a.seed = 1;
    a.layers = 4, a.heads = 4, a.embd = 128, a.ctx = 128, a.norm_samples = 200, a.normalize = 1;
    a.to = is_rm ? rlhf_train_options_reward() : is_dpo || is_kto ? rlhf_train_options_dpo() : rlhf_train_options_sft();
    a.decay = a.to.decay == RLHF_LR_LINEAR ? 1 : a.to.decay == RLHF_LR_CONSTANT ? 2 : 0; /* --decay's choices */
    a.steps = 0;
    a.dc = rlhf_dpo_config_default();
    a.kc = rlhf_kto_config_default();
    a.dpo_loss = choice_of(DPO_LOSS_VALUES, N_OPTS(DPO_LOSS_VALUES), (int)a.dc.loss);
    a.precompute = is_kto ? a.kc.precompute_ref : a.dc.precompute_ref;
    if ((n = train_options(&a, o, N_OPTS(o))) < 0) return fail(cmd, "more options than the table holds (a bug)");
    np = parse_opts(cmd, argc, argv, 2, o, n, pos, 0);
    if (np < 0)
        return help_or_usage(np, is_pre ? "rlhf pretrain --data FILE (--tokenizer TOK.json | --model CKPT) --out DIR [options]"
                                 : is_rm ? "rlhf rm --model SFT.safetensors --data PREFS.jsonl --out DIR [options]"
                                 : is_dpo ? "rlhf dpo --model SFT.safetensors --data PREFS.jsonl --out DIR [options]"
                                 : is_kto ? "rlhf kto --model SFT.safetensors --data UNPAIRED.jsonl --out DIR [options]"
                                          : "rlhf sft --model BASE.safetensors --data SFT.jsonl --out DIR [options]",
                             is_pre ? "Pretrain a GPT-2 on text (every token a target)."
                                 : is_rm ? "Train a reward model (InstructGPT eq. 1) on pairs or K-way rankings, then normalise "
                                           "it on SFT samples."
                                 : is_dpo ? DPO_ABOUT
                                 : is_kto ? KTO_ABOUT
                                          : "Supervised fine-tuning: the loss on the completions only.",
                             o, n);
    a.dc.loss = (rlhf_dpo_loss_type)DPO_LOSS_VALUES[a.dpo_loss];
    a.dc.precompute_ref = a.kc.precompute_ref = a.precompute;
    a.to.max_steps = a.steps;
    a.to.pack = a.pack;
    a.to.seed = (uint64_t)a.seed;
    a.to.decay = a.decay == 1 ? RLHF_LR_LINEAR : a.decay == 2 ? RLHF_LR_CONSTANT : RLHF_LR_COSINE;
    if (g_tty && !given(o, n, "log-every")) a.to.log_every = 0; /* the status line shows progress */
    a.shape_given = given(o, n, "layers") | given(o, n, "heads") << 1 | given(o, n, "embd") << 2 | given(o, n, "ctx") << 3;
    if ((k = train_check(&a, o, n)) != 0) return k;
    return train_run(&a, o, n);
}

/* ---- ppo, grpo, rloo: one trainer (rlhf_ppo), one command ---------------------------------------
   The three differ in the advantage estimator (rlhf_ppo_config.estimator) and so in their options:
   ppo has a critic, PPO-ptx, the adaptive KL controller and an EMA; grpo and rloo sample --group-size
   replies per prompt and have no critic; grpo has --scale-rewards and --loss-type. The command's
   name is the stage of its metric lines, the "command" of options.json and the "algo" of the saved
   state (a run is resumed by the command that made it). */
typedef struct ppo_cli {
    const char *cmd;  /* "ppo", "grpo" or "rloo" */
    const char *policy, *critic, *prompts, *ptx, *out;
    reward_set rw;    /* --reward (once or more), --reward-weights */
    int iters, resume, overwrite, skip_bad, seed, adaptive, k3, save_every, max_len;
    int loss_type, scale; /* grpo: --loss-type, --scale-rewards: indices of LOSS_TYPES, SCALES */
    int prompt_len;   /* the prompt limit the trainer gets: --max-prompt, or what --max-len leaves (options.json keeps the options as given) */
    rlhf_ppo_config c;
} ppo_cli;
/* grpo --loss-type, TRL's names, and what each divides the summed token losses by (rlhf_grpo_loss) */
#define LOSS_TYPES "grpo|bnpo|dr_grpo|dapo"
static const int LOSS_TYPE_AGG[] = {RLHF_AGG_SEQUENCE, RLHF_AGG_TOKEN, RLHF_AGG_CONSTANT, RLHF_AGG_DAPO};
#define SCALES "group|batch|none"
static const int SCALE_VALUES[] = {RLHF_SCALE_GROUP, RLHF_SCALE_BATCH, RLHF_SCALE_NONE};
/* the saved iteration of a PPO run directory (its policy's rlhf.ppo.state), or -1 */
static long ppo_saved_iteration(const char *dir) {
    char path[1100];
    rlhf_model *m = NULL;
    const char *s;
    long it = -1;
    if (rlhf_model_load_ex(&m, join(path, sizeof path, dir, "policy.safetensors"), NULL) != RLHF_OK) return -1;
    if ((s = rlhf_model_meta(m, "rlhf.ppo.state")) != NULL && strstr(s, "\"iteration\":")) it = atol(strstr(s, "\"iteration\":") + 12);
    rlhf_model_free(m);
    return it;
}
/* the options against each other, before anything is loaded: 0, or 2 (printed) */
static int ppo_check(ppo_cli *a, const opt *o, int n) {
    const char *cmd = a->cmd;
    int rc;
    if (!a->policy || !a->rw.path.n || !a->prompts || !a->out) return usage_error(cmd, "needs --policy, --reward, --prompts and --out");
    if ((rc = rewards_check(cmd, &a->rw)) != 0) return rc;
    if (given(o, n, "kl-coef") && given(o, n, "beta")) return usage_error(cmd, "--beta is --kl-coef under TRL's name: give one of them");
    if (a->c.ptx_coef > 0 && !a->ptx) return usage_error(cmd, "--ptx-coef needs --ptx (the pretraining text to mix in)");
    if (a->ptx && !(a->c.ptx_coef > 0)) return usage_error(cmd, "--ptx needs --ptx-coef > 0 (InstructGPT used 27.8)");
    if (a->c.estimator != RLHF_EST_GAE && a->c.batch_size % a->c.group_size != 0)
        return usage_error(cmd, "--batch %d is not a multiple of --group-size %d: --batch counts replies, --group-size of them to "
                           "each prompt", a->c.batch_size, a->c.group_size);
    if (a->c.mini_batch > a->c.batch_size) return usage_error(cmd, "--mini-batch %d is larger than --batch %d", a->c.mini_batch, a->c.batch_size);
    if (a->c.max_prompt_tokens == 1) return usage_error(cmd, "--max-prompt must be 0 (half the context) or at least 2 (the chat template's markers)");
    if (!a->adaptive && (a->c.kl_target != rlhf_ppo_config_default().kl_target || a->c.kl_horizon != rlhf_ppo_config_default().kl_horizon))
        return usage_error(cmd, "--kl-target and --kl-horizon steer the adaptive controller: add --adaptive-kl");
    return 0;
}
/* --max-prompt, --max-new and --max-len against the context of every model (n_ctx, the smallest) */
static int ppo_lengths(ppo_cli *a, int n_ctx) {
    const char *cmd = a->cmd;
    int given_prompt = a->c.max_prompt_tokens, prompt = given_prompt ? given_prompt : n_ctx / 2;
    if (a->max_len > n_ctx) return usage_error(cmd, "--max-len %d is longer than the models' context (%d tokens)", a->max_len, n_ctx);
    if (a->max_len && a->max_len - a->c.max_new_tokens < 2)
        return usage_error(cmd, "--max-len %d leaves no room for a prompt after --max-new %d (2 tokens at least)", a->max_len,
                           a->c.max_new_tokens);
    if (a->max_len && prompt > a->max_len - a->c.max_new_tokens) { /* prompts are cut to what the sequence leaves them */
        if (given_prompt)
            say("%s: --max-prompt %d lowered to %d: --max-len %d minus --max-new %d", cmd, prompt, a->max_len - a->c.max_new_tokens,
                a->max_len, a->c.max_new_tokens);
        prompt = a->max_len - a->c.max_new_tokens;
    }
    a->prompt_len = prompt;
    if (prompt + a->c.max_new_tokens > n_ctx)
        return usage_error(cmd, "--max-prompt %d plus --max-new %d is more than the models' context (%d tokens)%s", prompt,
                           a->c.max_new_tokens, n_ctx, given_prompt ? "" : " (--max-prompt 0 means half the context)");
    return 0;
}
/* The models, checked for their roles and against the context: the policy; the frozen reference (a
   second copy of --policy; none at --kl-coef 0 without --adaptive-kl); the rewards; ppo's critic. */
static int ppo_models(ppo_cli *a, rlhf_model **policy, rlhf_model **ref, rlhf_model **critic, rlhf_tokenizer **t) {
    const char *cmd = a->cmd;
    int n_ctx;
    if (!(*policy = load_model(cmd, "--policy", a->policy, ROLE_POLICY, t))) return 1;
    if (a->c.kl_coef > 0 || a->c.adaptive_kl) {
        if (!(*ref = load_model(cmd, "--policy", a->policy, ROLE_POLICY, NULL))) return 1;
    } else
        say("%s: --kl-coef 0: no reference model loaded (nothing pulls the policy back toward --policy; objective/kl is "
            "not measured)", cmd);
    if (rewards_load(cmd, &a->rw, a->policy, *t, 1, &a->c.reward_model, &a->c.score_fn, &a->c.score_user)) return 1;
    if (a->c.estimator == RLHF_EST_GAE) {
        const char *what = a->critic ? "--critic" : "--reward", *path = a->critic ? a->critic : a->rw.path.v[0], *tp, *tc;
        if (!(*critic = load_model(cmd, what, path, ROLE_SCORER, NULL))) return 1;
        tp = rlhf_model_meta(*policy, "tokenizer"), tc = rlhf_model_meta(*critic, "tokenizer");
        if (tp && tc && strcmp(tp, tc) != 0) return fail(cmd, "%s %s has another tokenizer than --policy %s", what, path, a->policy);
    }
    n_ctx = rewards_ctx(&a->rw, rlhf_model_config(*policy)->n_ctx);
    if (*critic && rlhf_model_config(*critic)->n_ctx < n_ctx) n_ctx = rlhf_model_config(*critic)->n_ctx;
    return ppo_lengths(a, n_ctx);
}
/* The run's memory budget (budget_line): the policy and ppo's critic trained on minibatches of --mini-batch
   replies of up to the prompt limit plus --max-new tokens; the frozen reference's log-probs and each reward
   model's forwards on as many */
static void ppo_budget(const ppo_cli *a, const rlhf_model *policy, const rlhf_model *ref, const rlhf_model *critic) {
    int T = a->prompt_len + a->c.max_new_tokens, MB = a->c.mini_batch, rc = a->c.recompute, k, n = 1;
    size_t sum = 0;
    char role[64];
    budget_line(a->cmd, "policy", rlhf_model_config(policy), MB, T, BUDGET_TRAINED, rc, &sum);
    if (critic) budget_line(a->cmd, "critic", rlhf_model_config(critic), MB, T, BUDGET_TRAINED, rc, &sum), n++;
    if (ref) budget_line(a->cmd, "reference", rlhf_model_config(ref), MB, T, BUDGET_LOGPROBS, rc, &sum), n++;
    for (k = 0; k < a->rw.path.n && k < RLHF_MAX_REWARDS; k++)
        if (a->rw.m[k]) {
            snprintf(role, sizeof role, a->rw.path.n > 1 ? "reward model %d" : "reward model", k + 1);
            budget_line(a->cmd, role, rlhf_model_config(a->rw.m[k]), MB, T, BUDGET_FORWARD, 0, &sum), n++;
        }
    budget_total(a->cmd, sum, n);
}
/* The trainer, and with --resume the run's state in it (metrics.jsonl cut back to it): 0, or the exit status */
static int ppo_start(ppo_cli *a, rlhf_ppo **ppo, long *start, const opt *o, int n_opt) {
    const char *cmd = a->cmd;
    int given_prompt = a->c.max_prompt_tokens;
    rlhf_error err;
    rlhf_result r;
    a->c.max_prompt_tokens = a->prompt_len;
    r = rlhf_ppo_create(ppo, &a->c, &err);
    a->c.max_prompt_tokens = given_prompt;
    if (r != RLHF_OK) return fail(cmd, "%s", lib_msg(err.message));
    *start = 0;
    if (!a->resume) {
        clear_run(a->out, PPO_CKPTS);
        return save_options(cmd, a->out, o, n_opt);
    }
    if (rlhf_ppo_load(*ppo, a->out, &err) != RLHF_OK)
        return fail(cmd, "--resume: %s%s", lib_msg(err.message),
                    strstr(err.message, "another reference model (fingerprint") && strstr(err.message, "0000000000000000")
                        ? " (--kl-coef 0 runs without a reference: resume with the run's --kl-coef)" : "");
    *start = ppo_saved_iteration(a->out);
    say("resuming %s at iteration %ld", a->out, *start);
    if (*start >= a->iters) return usage_error(cmd, "the run in %s is already at iteration %ld: raise --iters to continue it", a->out, *start);
    return truncate_metrics(cmd, a->out, cmd, *start);
}
/* iterations start..--iters, saved every --save-every, at the end and when stopped: 0, or the exit status */
static int ppo_iterate(ppo_cli *a, rlhf_ppo *ppo, long start, rlhf_ppo_stats *st, double t0) {
    const char *cmd = a->cmd;
    rlhf_error err;
    long i;
    for (i = start; i < a->iters; i++) {
        char eta[32];
        if (rlhf_ppo_step(ppo, st, &err) != RLHF_OK) return fail(cmd, "iteration %ld: %s", i + 1, lib_msg(err.message));
        fmt_duration(eta, sizeof eta, (now_s() - t0) / (double)(i + 1 - start) * (double)(a->iters - i - 1));
        if (isfinite(st->reward_std))
            status_set("[%s] iteration %ld/%d  score %.3f  KL %.3f  reward std %.3f  ETA %s", cmd, st->iteration, a->iters,
                       (double)st->score, (double)st->kl, (double)st->reward_std, eta);
        else
            status_set("[%s] iteration %ld/%d  score %.3f  KL %.3f  ETA %s", cmd, st->iteration, a->iters, (double)st->score,
                       (double)st->kl, eta);
        if (((i + 1) % a->save_every == 0 || i + 1 == a->iters || g_stop) && rlhf_ppo_save(ppo, a->out, &err) != RLHF_OK)
            return fail(cmd, "%s", lib_msg(err.message));
        if (g_stop) {
            fail(cmd, "stopped at iteration %ld of %d; the state is saved in %s: continue with the same command and --resume",
                 st->iteration, a->iters, a->out);
            return stopped_status();
        }
    }
    return 0;
}
static int ppo_run(ppo_cli *a, const opt *o, int n_opt) {
    const char *cmd = a->cmd;
    rlhf_model *policy = NULL, *ref = NULL, *critic = NULL;
    rlhf_tokenizer *t = NULL;
    rlhf_dataset *prompts = NULL, *ptx = NULL;
    rlhf_ppo *ppo = NULL;
    rlhf_ppo_stats st;
    run_out ro = {NULL, 0, 0, NULL, 0};
    long start = 0;
    int rc;
    memset(&st, 0, sizeof st);
    ro.stage = cmd;
    if ((rc = prepare_run_dir(cmd, a->out, a->resume, a->overwrite, PPO_CKPTS, TRAIN_CKPTS)) != 0) return rc;
    if (a->resume) {
        char path[1100];
        int has_ema = exists(join(path, sizeof path, a->out, "ema.safetensors"));
        if ((rc = compare_options(cmd, a->out, o, n_opt)) != 0) return rc;
        if (has_ema != (a->c.ema_decay > 0))
            return usage_error(cmd, "the run in %s was saved %s an EMA of the policy: resume it %s --ema", a->out, has_ema ? "with" : "without",
                               has_ema ? "with the same" : "without");
    }
    if ((rc = ppo_models(a, &policy, &ref, &critic, &t)) != 0) goto done;
    rc = 1;
    if (!(prompts = load_data(cmd, a->prompts, RLHF_DATA_PROMPTS, a->skip_bad)) ||
        (a->ptx && !(ptx = load_data(cmd, a->ptx, RLHF_DATA_TEXT, a->skip_bad))))
        goto done;
    ppo_budget(a, policy, ref, critic);
    a->c.policy = policy, a->c.ref = ref, a->c.critic = critic; /* the models and data (the rewards: ppo_models) */
    a->c.tokenizer = t, a->c.prompts = prompts, a->c.ptx = ptx;
    a->c.log = log_cb;
    a->c.metrics = run_metrics;
    a->c.metrics_user = &ro;
    if ((rc = ppo_start(a, &ppo, &start, o, n_opt)) != 0 || !(ro.metrics = open_metrics(cmd, a->out))) goto done;
    ro.t0 = now_s();
    catch_signals();
    if ((rc = ppo_iterate(a, ppo, start, &st, ro.t0)) != 0) goto done;
    status_done();
    printf("%s: %ld iterations; last score %.4f, KL %.4f; state in %s (policy.safetensors%s%s), metrics in %s/metrics.jsonl\n",
           choice_find("ppo|grpo", cmd) == 0 ? "PPO" : choice_find("ppo|grpo", cmd) == 1 ? "GRPO" : "RLOO", st.iteration,
           (double)st.score, (double)st.kl, a->out, critic ? ", critic.safetensors" : "", a->c.ema_decay > 0 ? ", ema.safetensors" : "",
           a->out);
    rc = 0;
done:
    if (ro.metrics) fclose(ro.metrics);
    rlhf_ppo_free(ppo);
    rlhf_model_free(policy);
    rlhf_model_free(ref);
    rlhf_model_free(critic);
    rewards_free(&a->rw);
    rlhf_dataset_free(prompts);
    rlhf_dataset_free(ptx);
    rlhf_tokenizer_free(t);
    return rc;
}
#define PPO_ABOUT                                                                                                      \
    "PPO with a KL penalty against the SFT policy (InstructGPT step 3, eq. 2; PPO-ptx with --ptx and --ptx-coef). A critic\n" \
    "(a copy of the first --reward unless --critic) learns the values of GAE."
#define GRPO_ABOUT                                                                                                     \
    "GRPO (Shao et al. 2024, DeepSeekMath): every prompt gets --group-size replies; a reply's advantage is its reward\n"  \
    "minus its group's mean, divided by the group's std (--scale-rewards); no critic. The loss is PPO's clipped\n"       \
    "surrogate per token (--cliprange, DAPO's --cliprange-high), aggregated by --loss-type, plus beta x k3 to the frozen\n" \
    "SFT policy (--kl-coef; 0 loads no reference). metrics.jsonl adds reward_std and frac_reward_zero_std (groups whose\n" \
    "replies all scored the same: they teach nothing)."
#define RLOO_ABOUT                                                                                                     \
    "RLOO (Ahmadian et al. 2024, REINFORCE Leave-One-Out): every prompt gets --group-size replies; a reply's reward is\n" \
    "its score minus beta x its KL to the frozen SFT policy (--kl-coef; 0 loads no reference), and its advantage that\n" \
    "reward minus the mean of the other replies of its group; no critic. The loss is REINFORCE on the whole reply, its\n" \
    "ratio clipped as PPO's (--cliprange, --cliprange-high). metrics.jsonl adds reward_std and frac_reward_zero_std."
/* the defaults of grpo and rloo, where they are not PPO's */
static void group_defaults(ppo_cli *a, int grpo) {
    a->c.estimator = grpo ? RLHF_EST_GRPO : RLHF_EST_RLOO;
    a->c.group_size = 4;                 /* small for a CPU: --batch 16 is 4 prompts of 4 replies */
    a->c.ppo_epochs = 1;                 /* one pass over each batch (TRL's num_iterations) */
    a->c.kl_coef = grpo ? 0.04f : 0.05f; /* DeepSeekMath's beta (TRL's default is 0); RLOO: PPO's */
    a->c.sampling.temperature = 1.0f;    /* TRL's: a group's replies must differ for its baseline to teach */
}
static int cmd_ppo(int argc, char **argv, const char *cmd) {
    const int algo = choice_find("ppo|grpo|rloo", cmd), group = algo > 0, grpo = algo == 1;
    ppo_cli a;
    const char *pos[1];
    int np, n, k, rc;
    memset(&a, 0, sizeof a);
    a.cmd = cmd;
    a.c = rlhf_ppo_config_default();
    a.iters = 100, a.seed = 1, a.save_every = 10;
    if (group) group_defaults(&a, grpo);
    a.loss_type = choice_of(LOSS_TYPE_AGG, N_OPTS(LOSS_TYPE_AGG), (int)a.c.loss_agg);
    a.scale = choice_of(SCALE_VALUES, N_OPTS(SCALE_VALUES), (int)a.c.scale_rewards);
    {
        opt all[] = {
            OPT_S("policy", group ? "SFT checkpoint: the policy starts here, and (at --kl-coef > 0) it is the frozen reference"
                                  : "SFT checkpoint: the policy starts here, and it is the frozen reference", &a.policy),
            OPT_L("reward", "reward-model checkpoint (normalised by rlhf rm); give --reward again for several, summed with "
                            "--reward-weights (each must share the policy's vocabulary)", &a.rw.path),
            OPT_S("reward-weights", "one weight per --reward, in their order, e.g. 1,0.5: the reward is sum_k w_k score_k "
                                    "(none: all 1)", &a.rw.weights),
            OPT_S("critic", "critic checkpoint (default: a copy of the first --reward)", &a.critic),
            OPT_S("prompts", "PROMPTS JSONL ({\"prompt\"} or {\"messages\"})", &a.prompts),
            OPT_S("ptx", "pretraining text for PPO-ptx (with --ptx-coef)", &a.ptx),
            OPT_S("out", group ? "run directory: policy.safetensors, options.json, metrics.jsonl"
                               : "run directory: policy, critic, metrics.jsonl", &a.out),
            OPT_B("resume", "continue the run in --out", &a.resume),
            OPT_B("overwrite", "start again in an --out that holds a run", &a.overwrite),
            OPT_B("skip-bad", "skip malformed records (counted and reported) instead of stopping", &a.skip_bad),
            OPT_I("iters", "iterations (in all, when resuming)", &a.iters, 1, BIG),
            OPT_I("save-every", "iterations between saves", &a.save_every, 1, BIG),
            OPT_I("group-size", "replies sampled per prompt: a group, each reply judged against the rewards of its group", &a.c.group_size, 2, 1024),
            OPT_I("batch", group ? "replies per iteration (a multiple of --group-size: --batch / --group-size prompts)"
                                 : "episodes per iteration", &a.c.batch_size, 1, 1024),
            OPT_I("mini-batch", group ? "replies per minibatch (one optimizer step each)" : "episodes per minibatch",
                  &a.c.mini_batch, 1, 1024),
            OPT_B("recompute", RECOMPUTE_HELP, &a.c.recompute),
            OPT_I("epochs", group ? "passes over each batch (TRL's num_iterations)" : "PPO epochs per batch", &a.c.ppo_epochs, 1, 1000),
            OPT_I("max-new", "longest response in tokens", &a.c.max_new_tokens, 1, 1 << 20),
            OPT_I("max-prompt", "longer prompts are cut from the left, whole turns where they can (0: half the context)",
                  &a.c.max_prompt_tokens, 0, 1 << 20),
            OPT_MAXLEN("longest prompt + reply: prompts are cut from the left to --max-len minus --max-new tokens when that is "
                       "below --max-prompt; the counts are printed", &a.max_len),
            OPT_FA("temperature", "sampling temperature (also divides the logits of the log-probs)", &a.c.sampling.temperature, 0, 100),
            OPT_I("top-k", "sampling top-k (0: off)", &a.c.sampling.top_k, 0, BIG),
            OPT_FA("top-p", "sampling top-p (1: off)", &a.c.sampling.top_p, 0, 1),
            OPT_F("kl-coef", grpo    ? "beta: beta x k3 per token in the loss (DeepSeekMath 0.04; TRL's default is 0); 0 loads no reference"
                             : group ? "beta: each reply's reward is its score minus beta x its summed KL; 0 loads no reference"
                                     : "beta, the KL penalty's coefficient", &a.c.kl_coef, 0, 1000),
            {"beta", "--kl-coef under TRL's name", O_FLOAT, &a.c.kl_coef, 0, 1000, O_ALIAS, NULL, 0},
            OPT_B("adaptive-kl", "Ziegler et al.'s controller (--kl-target, --kl-horizon)", &a.adaptive),
            OPT_FA("kl-target", "adaptive KL target", &a.c.kl_target, 0, BIG),
            OPT_FA("kl-horizon", "adaptive KL horizon", &a.c.kl_horizon, 0, BIG),
            OPT_B("k3", "the k3 KL estimator instead of k1", &a.k3),
            OPT_C("scale-rewards", "divide r - mean by the std of the group (the paper), of the whole batch, or not at all "
                                   "(Dr. GRPO)", &a.scale, SCALES),
            OPT_C("loss-type", "how the token losses are averaged, TRL's names: grpo, each reply's token mean, averaged over "
                               "the replies; bnpo, the sum over the minibatch's tokens / its token count; dr_grpo, the sum / "
                               "(replies x --max-new); dapo, the sum / (replies x the mean reply length of the whole batch "
                               "sampled): every token of the batch weighs the same, whichever minibatch holds it", &a.loss_type, LOSS_TYPES),
            OPT_FA("lr", "policy learning rate", &a.c.policy_opt.lr, 0, 10),
            OPT_FA("critic-lr", "critic learning rate", &a.c.critic_opt.lr, 0, 10),
            OPT_FA("cliprange", group ? "eps_low: the ratio is clipped to [1 - eps_low, 1 + eps_high]" : "PPO clip", &a.c.cliprange, 0, 10),
            OPT_FB("cliprange-high", "eps_high, DAPO's clip-higher (0.28 in the paper); 0: --cliprange", &a.c.cliprange_high, 0, 100),
            OPT_FA("cliprange-value", "value clip", &a.c.cliprange_value, 0, BIG),
            OPT_F("vf-coef", "value loss coefficient", &a.c.vf_coef, 0, BIG),
            OPT_F("entropy-coef", "entropy bonus", &a.c.entropy_coef, 0, BIG),
            OPT_F("ptx-coef", "PPO-ptx gamma (InstructGPT 27.8)", &a.c.ptx_coef, 0, BIG),
            OPT_F("ema", "EMA decay of the policy (InstructGPT 0.992; 0: off)", &a.c.ema_decay, 0, 0.9999),
            OPT_F("missing-eos-penalty", "score of a reply without its end token (<|end|>, or <|endoftext|> under --template hh)", &a.c.missing_eos_penalty, -BIG, BIG),
            OPT_I("seed", "sampling and shuffling", &a.seed, 0, BIG),
        };
        opt o[N_OPTS(all)];
        /* the options of this algorithm only */
        for (n = 0, k = 0; k < N_OPTS(all); k++) {
            const char *nm = all[k].name;
            if ((group && choice_find("critic|ptx|adaptive-kl|kl-target|kl-horizon|critic-lr|cliprange-value|vf-coef|"
                                      "entropy-coef|ptx-coef|ema", nm) >= 0) ||
                (!group && choice_find("group-size|cliprange-high", nm) >= 0) ||
                (!grpo && choice_find("scale-rewards|loss-type", nm) >= 0) || (grpo && strcmp(nm, "k3") == 0))
                continue;
            o[n++] = all[k];
        }
        np = parse_opts(cmd, argc, argv, 2, o, n, pos, 0);
        if (np < 0) {
            char usage[128];
            snprintf(usage, sizeof usage, "rlhf %s --policy SFT --reward RM --prompts FILE --out DIR [options]", cmd);
            return help_or_usage(np, usage, grpo ? GRPO_ABOUT : group ? RLOO_ABOUT : PPO_ABOUT, o, n);
        }
        a.c.adaptive_kl = a.adaptive;
        a.c.kl_estimator = a.k3 ? RLHF_KL_K3 : RLHF_KL_K1;
        a.c.loss_agg = (rlhf_loss_agg)LOSS_TYPE_AGG[a.loss_type];
        a.c.scale_rewards = (rlhf_scale_rewards)SCALE_VALUES[a.scale];
        a.c.seed = (uint64_t)a.seed;
        if ((rc = ppo_check(&a, o, n)) != 0) return rc;
        return ppo_run(&a, o, n);
    }
}

/* ---- plot ---------------------------------------------------------------------------------- */
static int cmd_plot(int argc, char **argv) {
    const char *pos[1];
    plot_options po = plot_options_default();
    opt o[] = {
        OPT_I("smooth", "moving-average window in points for the line charts, raw curve faint behind (0: off, -1: automatic)", &po.smooth, -1, 100000),
    };
    int np = parse_opts("plot", argc, argv, 2, o, N_OPTS(o), pos, 1), w;
    if (np < 0) return help_or_usage(np, "rlhf plot RUN_DIR [options]",
                   "SVG charts of a run's metrics.jsonl, written into RUN_DIR: loss.svg (losses per stage), reward_model.svg,\n"
                   "ppo.svg (reward and KL during PPO), gold_vs_proxy.svg and gold_vs_proxy_sqrt_kl.svg (demo: gold judge vs\n"
                   "reward model against KL, as Gao et al. 2022 plot reward over-optimisation), dpo.svg (DPO's loss, pairs\n"
                   "ranked as labelled, reward margin, implicit rewards of chosen and rejected replies), kto.svg (KTO's loss,\n"
                   "held-out records on their label's side of the reference point z, z, implicit rewards of desirable and\n"
                   "undesirable completions), grpo.svg and rloo.svg (score, KL, the spread of the rewards within groups, the\n"
                   "share of groups without any).",
                   o, N_OPTS(o));
    if (np != 1) return usage_error("plot", "needs RUN_DIR");
    if (!is_dir(pos[0])) return fail("plot", "%s is not a directory", pos[0]);
    {
        char path[1100];
        if (!exists(join(path, sizeof path, pos[0], "metrics.jsonl"))) return fail("plot", "%s has no metrics.jsonl: not a run directory", pos[0]);
    }
    po.verbose = 1;
    w = plot_run(pos[0], &po);
    if (w < 0) return 1;
    if (w == 0) return fail("plot", "%s/metrics.jsonl has nothing to plot", pos[0]);
    return 0;
}

/* ---- export: a Hugging Face directory ----------------------------------------------- */
/* --out's parent exists (made if needed) and is writable; an --out holding files needs --overwrite.
   0 ready, else the exit status (the message printed). */
static int export_check_out(const char *out, int overwrite) {
    char parent[1024];
    size_t n = strlen(out), k;
    int e;
    DIR *d;
    while (n > 1 && out[n - 1] == '/') n--; /* "a/b/" is the directory b in a */
    for (k = n; k > 0 && out[k - 1] != '/'; k--) {}
    if (k == 0) snprintf(parent, sizeof parent, ".");
    else snprintf(parent, sizeof parent, "%.*s", k == 1 ? 1 : (int)(k - 1), out);
    if (exists(out) && !is_dir(out)) return fail("export", "--out %s exists and is not a directory", out);
    if ((d = opendir(out)) != NULL) {
        struct dirent *en;
        int holds = 0;
        while ((en = readdir(d)) != NULL) holds |= strcmp(en->d_name, ".") != 0 && strcmp(en->d_name, "..") != 0;
        closedir(d);
        if (holds && !overwrite)
            return usage_error("export", "--out %s exists and is not empty: add --overwrite to replace an earlier "
                               "export", out);
    }
    if (!mkdir_p(parent)) return fail("export", "cannot create %s: %s", parent, strerror(errno));
    if ((e = probe_writable(parent)) != 0) return fail("export", "cannot write in %s: %s", parent, strerror(e));
    return 0;
}
static int cmd_export(int argc, char **argv) {
    static const char *const dt_name[3] = {"F32", "BF16", "F16"};
    const char *pos[1], *out = NULL;
    int dtype = 0, overwrite = 0, np, rc;
    opt o[] = {
        OPT_S("out", "the directory to write (its parent is created if needed)", &out),
        OPT_C("dtype", "the weights' type; bf16 and f16 round to nearest even, f16 refuses a weight over 65504",
              &dtype, "f32|bf16|f16"),
        OPT_B("overwrite", "replace an earlier export in --out (refused if it holds any other file)", &overwrite),
    };
    rlhf_export_options eo = rlhf_export_options_default();
    rlhf_model *m;
    rlhf_tokenizer *t = NULL;
    rlhf_error err;
    char path[1100];
    struct stat st;
    np = parse_opts("export", argc, argv, 2, o, N_OPTS(o), pos, 1);
    if (np < 0) return help_or_usage(np, "rlhf export CHECKPOINT --out DIR [options]",
                   "A Hugging Face directory that transformers' GPT2LMHeadModel (GPT2ForSequenceClassification\n"
                   "for a reward or value model) and AutoTokenizer load as is: config.json, model.safetensors,\n"
                   "generation_config.json, vocab.json, merges.txt, tokenizer_config.json (with the chat template\n"
                   "in Jinja) and special_tokens_map.json, written as a unit. A reward model's score is the\n"
                   "Hugging Face logit plus config.json's rlhf_score_offset.",
                   o, N_OPTS(o));
    if (np != 1) return usage_error("export", "needs one CHECKPOINT");
    if (!out) return usage_error("export", "needs --out DIR");
    if ((rc = export_check_out(out, overwrite)) != 0) return rc;
    if (!(m = load_model("export", "CHECKPOINT", pos[0], ROLE_ANY, NULL))) return 1;
    if (rlhf_tokenizer_from_model(&t, m, &err) != RLHF_OK) {
        rlhf_model_free(m);
        return fail("export", "CHECKPOINT %s has no tokenizer stored: vocab.json and merges.txt would be missing "
                    "(a checkpoint of rlhf pretrain, sft, rm or ppo holds its tokenizer)", pos[0]);
    }
    eo.dtype = (rlhf_export_dtype)dtype;
    eo.overwrite = overwrite;
    if (rlhf_model_export_hf(m, t, out, &eo, &err) != RLHF_OK) rc = fail("export", "%s", lib_msg(err.message));
    else {
        int score = rlhf_model_has_score_head(m);
        double mb = stat(join(path, sizeof path, out, "model.safetensors"), &st) == 0 ? st.st_size / 1048576.0 : 0.0;
        printf("exported %s to %s as %s, %s: config.json, model.safetensors (%.1f MB, %zu parameters), %s"
               "vocab.json + merges.txt (%d tokens), tokenizer_config.json (chat template), special_tokens_map.json\n",
               pos[0], out, score ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel", dt_name[dtype], mb,
               rlhf_model_num_params(m), score ? "" : "generation_config.json, ", rlhf_tokenizer_vocab_size(t));
    }
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return rc;
}

/* ---- the demo: `rlhf demo`, in tools/demo.c (one function per stage) ---------------------------- */
#include "demo.c"
/* ---- labelling: `rlhf label`, in tools/label.c (a person writes, ranks and compares) ---------------- */
#include "label.c"

/* ---- threads ------------------------------------------------------------------
   --threads N (any command, taken out of argv before the command parses it), else
   OMP_NUM_THREADS, else the CPUs that other programs leave free: a CPU kept busy
   by another program makes each of our threads that lands on it hold the others
   at every barrier. Busy CPUs = the machine's busy time over 50 ms (/proc/stat:
   all but idle and iowait, in CPUs), the smaller of two such looks (a run
   started just after a build once saw a CPU busy for a moment and ran on one
   thread), rounded; at least 1 thread. The library
   still drops a thread if a CPU gets busy later (rlhf_threads_in_use). */
static double busy_cpus(double seconds) {
    double t[2] = {0, 0}, idle[2] = {0, 0};
    int k;
    for (k = 0; k < 2; k++) {
        unsigned long long v[8] = {0};
        FILE *f = fopen("/proc/stat", "r");
        if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                         &v[6], &v[7]) != 8) {
            if (f) fclose(f);
            return -1.0;
        }
        fclose(f);
        t[k] = (double)(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]);
        idle[k] = (double)(v[3] + v[4]);
        if (k == 0) {
            struct timespec ts;
            ts.tv_sec = 0, ts.tv_nsec = (long)(seconds * 1e9);
            nanosleep(&ts, NULL);
        }
    }
    if (t[1] <= t[0]) return 0.0;
    return (double)sysconf(_SC_NPROCESSORS_ONLN) * (1.0 - (idle[1] - idle[0]) / (t[1] - t[0]));
}
/* OMP_NUM_THREADS as --threads is checked: an integer in [1, 1024] (the first of a list "4,2", which sets the
   outer level). OpenMP runtimes treat a value they cannot read each their own way (libgomp takes every CPU; LLVM's
   libomp makes up a count and may abort on the first team larger than one), so a bad value is removed from the
   environment before the runtime first reads it, and the choice is ours, said. Called first by main, before any
   OpenMP call (see main). */
static long g_omp_n;
static char g_omp_note[96];
static void omp_env_check(void) {
    const char *omp = getenv("OMP_NUM_THREADS");
    char *end, *at;
    long level = 1;
    if (!omp) return;
    g_omp_n = strtol(omp, &end, 10);
    while (*end == ' ' || *end == '\t') end++;
    while (*end == ',' && level >= 1) { /* the levels after the first: integers too */
        level = strtol(at = end + 1, &end, 10);
        if (end == at) level = 0;
        while (*end == ' ' || *end == '\t') end++;
    }
    if (!*omp) snprintf(g_omp_note, sizeof g_omp_note, " (OMP_NUM_THREADS is set but empty: ignored)");
    else if (end == omp || *end || g_omp_n < 1 || level < 1)
        snprintf(g_omp_note, sizeof g_omp_note, " (OMP_NUM_THREADS=%.32s%s is not a thread count: ignored)", omp,
                 strlen(omp) > 32 ? "..." : "");
    if (g_omp_note[0]) g_omp_n = 0, unsetenv("OMP_NUM_THREADS");
    else if (g_omp_n > 1024)
        snprintf(g_omp_note, sizeof g_omp_note, " (OMP_NUM_THREADS=%ld capped at 1024, as --threads is)", g_omp_n);
}
/* Removes --threads N / --threads=N from argv and sets the thread count; describes
   the choice in why. 0, or 2 after a usage error (printed). */
static int threads_setup(int *argc, char **argv, char *why, size_t cap) {
    int i, j, drop, n = 0, all;
    char note[96] = "";
    long omp_n = 0;
    for (i = 2; i < *argc; i++) {
        const char *v = NULL;
        char *end;
        long x;
        if (strcmp(argv[i], "--threads") == 0) v = i + 1 < *argc ? argv[i + 1] : "";
        else if (strncmp(argv[i], "--threads=", 10) == 0) v = argv[i] + 10;
        else continue;
        x = strtol(v, &end, 10);
        if (!*v || *end || x < 1 || x > 1024)
            return usage_error(argv[1], "--threads must be an integer in [1, 1024], got \"%s\"", v);
        n = (int)x;
        drop = argv[i][9] == '=' ? 1 : 2; /* --threads=N is one word, --threads N two */
        for (j = i + drop; j <= *argc; j++) argv[j - drop] = argv[j]; /* with argv[argc], NULL */
        *argc -= drop;
        i--;
    }
    if (n == 0) omp_n = g_omp_n, snprintf(note, sizeof note, "%s", g_omp_note); /* --threads wins */
    all = rlhf_num_threads();
    if (n > 0) snprintf(why, cap, "%d (--threads)", n);
    else if (omp_n > 0) {
        rlhf_set_num_threads(omp_n > 1024 ? 1024 : (int)omp_n, 1);
        snprintf(why, cap, "%d%s", n = rlhf_num_threads(), note[0] ? note : " (OMP_NUM_THREADS)"); /* 1 without OpenMP */
        note[0] = 0;
    } else if (all > 1) {
        double busy = busy_cpus(0.05), again = busy < 0.0 ? busy : busy_cpus(0.05);
        int b;
        if (again < busy) busy = again; /* the smaller of two looks: a program that ran for a moment is not busy */
        b = busy < 0.0 ? 0 : (int)(busy + 0.5);
        n = all - b < 1 ? 1 : all - b;
        if (busy < 0.0) snprintf(why, cap, "%d (all CPUs; their load is unknown)", n);
        else snprintf(why, cap, "%d (%d CPUs, %.1f kept busy by other programs; --threads N to choose)", n, all, busy);
    } else snprintf(why, cap, "%d (one CPU, or built without OpenMP)", n = 1);
    if (n > 0) rlhf_set_num_threads(n, 1);
    if (note[0] && strlen(why) + strlen(note) < cap) strcat(why, note);
    return 0;
}

static int usage(FILE *f) {
    fprintf(f, "usage: rlhf COMMAND [options]   (rlhf COMMAND --help for its options; rlhf --version)\n\n"
               "commands:\n"
               "  tokenizer train a byte-level BPE tokenizer on a text file\n"
               "  pretrain  pretrain a GPT-2 on text\n"
               "  sft       supervised fine-tuning on demonstrations (loss on completions only)\n"
               "  rm        train a reward model on pairs or K-way rankings, and normalise it\n"
               "  dpo       DPO on pairs or rankings against the frozen SFT model (no reward model, no sampling; SimPO: no reference)\n"
               "  kto       KTO on unpaired labels (a completion marked desirable or not) against the frozen SFT model\n"
               "  ppo       PPO with a KL penalty against the SFT policy (PPO-ptx optional)\n"
               "  grpo      GRPO: groups of replies per prompt, each reply's reward against its group's (no critic)\n"
               "  rloo      RLOO: REINFORCE with the other replies of its group as a reply's baseline (no critic)\n"
               "  bon       best-of-N as data: the best of N replies to every prompt, as an SFT file\n"
               "  generate  sample replies to a prompt\n"
               "  chat      talk to a policy\n"
               "  score     the reward of (prompt, response) pairs\n"
               "  eval      a policy's completion loss or a reward model's accuracy on a file\n"
               "  info      a checkpoint's config, kind, tokenizer, size and memory\n"
               "  export    a checkpoint as a Hugging Face directory (transformers, TRL)\n"
               "  plot      SVG charts of a run directory's metrics.jsonl\n"
               "  demo      the whole InstructGPT pipeline on a built-in world with a gold judge\n"
               "  label     write demonstrations, rank or compare a policy's replies (a person's feedback, as data)\n\n"
               "threads: --threads N with any command; by default OMP_NUM_THREADS if set, else the CPUs that other\n"
               "programs leave free (training commands and the demo print the choice)\n\n"
               "exit status: 0 success, 1 runtime failure, 2 usage error, 130/143 stopped by Ctrl-C/SIGTERM (state saved)\n");
    return f == stderr ? 2 : 0;
}

static int rlhf_main(int argc, char **argv) {
    const char *c;
    char why[128];
    int i;
    g_tty = isatty(2);
    g_t0 = now_s();
    if (argc < 2) return usage(stderr);
    c = argv[1];
    if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) return usage(stdout);
    if (strcmp(c, "--version") == 0) {
        printf("rlhf %s (kernels %s; OpenMP %s)\n", RLHF_VERSION_STRING, rlhf_simd_name(),
#ifdef _OPENMP
               "yes"
#else
               "no: one thread"
#endif
        );
        return 0;
    }
    if (threads_setup(&argc, argv, why, sizeof why)) return 2;
    for (i = 2; i < argc && strcmp(argv[i], "--help") && strcmp(argv[i], "-h"); i++) {}
    if (i == argc && choice_find("pretrain|sft|rm|dpo|kto|ppo|grpo|rloo|demo|bon", c) >= 0) say("threads: %s", why);
    if (strcmp(c, "demo") == 0) return cmd_demo(argc, argv);
    if (strcmp(c, "label") == 0) return cmd_label(argc, argv);
    if (strcmp(c, "plot") == 0) return cmd_plot(argc, argv);
    if (strcmp(c, "info") == 0) return cmd_info(argc, argv);
    if (strcmp(c, "export") == 0) return cmd_export(argc, argv);
    if (strcmp(c, "generate") == 0) return cmd_generate(argc, argv);
    if (strcmp(c, "chat") == 0) return cmd_chat(argc, argv);
    if (strcmp(c, "score") == 0) return cmd_score(argc, argv);
    if (strcmp(c, "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(c, "tokenizer") == 0) return cmd_tokenizer(argc, argv);
    if (choice_find("pretrain|sft|rm|dpo|kto", c) >= 0) return drop_new_run_dir(cmd_train(argc, argv, c));
    if (choice_find("ppo|grpo|rloo", c) >= 0) return drop_new_run_dir(cmd_ppo(argc, argv, c));
    if (strcmp(c, "bon") == 0) return cmd_bon(argc, argv);
    fprintf(stderr, "rlhf: unknown command \"%s\"\n", c);
    return usage(stderr);
}

/* The OpenMP runtime reads its environment at its first call, and clang makes that call at the entry of any
   function into which it inlined a parallel region: main checks OMP_NUM_THREADS, then calls the tool through a
   pointer no compiler can inline. */
int main(int argc, char **argv) {
    int (*volatile run)(int, char **) = rlhf_main;
    omp_env_check();
    return run(argc, argv);
}
