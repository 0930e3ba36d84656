/* Crash safety of checkpoint writes (POSIX: fork and SIGKILL).
   1. One model file: a child process saves two different models to the
      same path, over and over; the parent kills it at a random moment, then
      checks that the path holds one of the two complete checkpoints and
      that it loads.
   2. PPO state, three files saved as a unit: a child runs PPO iterations,
      saving after each into one directory; the parent kills it at a random
      moment, then a fresh trainer must load the directory, at the iteration
      of the last save that returned or of the one that was under way, and
      no *.next, ppo.commit* or *.tmp-* file may remain.
   Exit status 0 when every check passes.
   Usage: test_crash [iterations] [dir] */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/* ---- 1. one model file: rounds of saving A, B, A, ... killed at random */
/* LLVM's OpenMP runtime (clang builds) registers each process in /dev/shm and removes the entry when the process
 * exits; a child killed with SIGKILL leaves its entry behind, and once /dev/shm is full every program started with
 * that runtime dies of SIGBUS. Tidy up after the children this test kills. */
static void forget_killed(pid_t child) {
    char name[96];
    snprintf(name, sizeof name, "/dev/shm/__KMP_REGISTERED_LIB_%ld_%ld", (long)child, (long)getuid());
    unlink(name);
}

static int crash_model(int iterations, const char *dir, rlhf_rng *rng) {
    int it, fails = 0, saw[2] = {0, 0};
    char path[512];
    rlhf_config cfg;
    rlhf_model *m[2];
    rlhf_error e;
    /* ~2.4 MB per checkpoint: a write takes long enough to be caught midway */
    cfg.vocab_size = 1024; cfg.n_ctx = 64; cfg.n_layer = 2; cfg.n_head = 4; cfg.n_embd = 128;
    snprintf(path, sizeof path, "%s/crash_target.safetensors", dir);
    if (rlhf_model_create(&m[0], &cfg, 1) != RLHF_OK || rlhf_model_create(&m[1], &cfg, 2) != RLHF_OK) return 1;
    if (rlhf_model_save_ex(m[0], path, 0, &e) != RLHF_OK) {
        fprintf(stderr, "test_crash: cannot save %s: %s\n", path, e.message);
        return 1;
    }
    for (it = 0; it < iterations; it++) {
        pid_t child = fork();
        struct timespec ts;
        rlhf_model *got = NULL;
        rlhf_error err;
        char tmp[600];
        int k, which = -1;
        if (child < 0) { perror("fork"); return fails + 1; }
        if (child == 0) { /* save A, B, A, B, ... until killed */
            for (k = 0;; k++)
                if (rlhf_model_save(m[k & 1], path) != RLHF_OK) _exit(3);
        }
        ts.tv_sec = 0;
        ts.tv_nsec = (long)(rlhf_rng_float(rng) * 40e6f); /* 0-40 ms: several saves */
        nanosleep(&ts, NULL);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        forget_killed(child);
        /* the target is complete: it loads, and it is exactly A or B */
        if (rlhf_model_load_ex(&got, path, &err) != RLHF_OK) {
            fprintf(stderr, "FAIL iteration %d: %s\n", it, err.message);
            fails++;
            continue;
        }
        for (k = 0; k < 2; k++)
            if (memcmp(got->param_mem, m[k]->param_mem, got->num_params * sizeof(float)) == 0)
                which = k;
        if (which < 0) {
            fprintf(stderr, "FAIL iteration %d: %s loads but is neither checkpoint\n", it, path);
            fails++;
        } else
            saw[which]++;
        rlhf_model_free(got);
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)child); /* the killed writer's temporary file */
        remove(tmp);
    }
    printf("crash safety: %d kills during saves, the target always held a whole checkpoint: %s (A %d times, B %d times)\n", iterations,
           fails ? "NO" : "yes", saw[0], saw[1]);
    rlhf_model_free(m[0]);
    rlhf_model_free(m[1]);
    remove(path);
    return fails;
}

/* ---- 2. PPO: a tiny trainer whose score counts one token (the PPO tests' world) */
typedef struct { int good; } count_task;
static float count_good(void *user, const int *prompt, int n_prompt, const int *response, int n_response) {
    const count_task *ct = (const count_task *)user;
    int i, c = 0;
    (void)prompt; (void)n_prompt;
    for (i = 0; i < n_response; i++) c += response[i] == ct->good;
    return (float)c;
}
typedef struct {
    rlhf_tokenizer *t;
    rlhf_model *policy, *ref, *critic;
    rlhf_dataset *prompts;
    count_task task;
    rlhf_ppo_config cfg;
} ppo_world;
static rlhf_model *world_model(const rlhf_tokenizer *t, uint64_t seed) {
    rlhf_config cfg;
    rlhf_model *m = NULL;
    cfg.vocab_size = rlhf_tokenizer_vocab_size(t); cfg.n_ctx = 48; cfg.n_layer = 2; cfg.n_head = 2; cfg.n_embd = 32;
    return rlhf_model_create(&m, &cfg, seed) == RLHF_OK ? m : NULL;
}
/* 0 when something cannot be built */
static int ppo_world_make(ppo_world *w, const char *dir) {
    static const char text[] =
        "rate this: good bad fine okay meh good good bad fine okay meh. repeat after me: red blue green cat dog sun moon. "
        "answer: yes no maybe. the quick brown fox jumps over the lazy dog. one two three four five six seven eight nine ten.";
    static const char prompts[] = "{\"prompt\": \"rate this:\"}\n{\"prompt\": \"answer: yes\"}\n";
    char path[512];
    rlhf_error e;
    size_t n;
    int id[4];
    FILE *f;
    memset(w, 0, sizeof *w);
    if (rlhf_tokenizer_train(&w->t, text, strlen(text), 300, &e) != RLHF_OK) return 0;
    if (rlhf_tokenizer_encode(w->t, " good", 5, id, 4, &n) != RLHF_OK) return 0;
    w->task.good = id[0];
    snprintf(path, sizeof path, "%s/crash_prompts.jsonl", dir);
    if (!(f = fopen(path, "wb"))) return 0;
    fputs(prompts, f);
    fclose(f);
    if (rlhf_dataset_load(&w->prompts, path, RLHF_DATA_PROMPTS, NULL, &e) != RLHF_OK) return 0;
    w->policy = world_model(w->t, 91);
    w->ref = world_model(w->t, 91);
    w->critic = world_model(w->t, 92);
    if (!w->policy || !w->ref || !w->critic || rlhf_model_add_score_head(w->critic, 0.0f, 1) != RLHF_OK) return 0;
    /* small iterations, so a good share of the time goes to saving; EMA on: three files a save */
    w->cfg = rlhf_ppo_config_default();
    w->cfg.batch_size = 4;
    w->cfg.mini_batch = 4;
    w->cfg.ppo_epochs = 1;
    w->cfg.max_new_tokens = 4;
    w->cfg.policy_opt.lr = w->cfg.critic_opt.lr = 1e-3f;
    w->cfg.ema_decay = 0.9f;
    w->cfg.log_samples = 0;
    w->cfg.seed = 5;
    w->cfg.policy = w->policy, w->cfg.ref = w->ref, w->cfg.critic = w->critic;
    w->cfg.score_fn = count_good, w->cfg.score_user = &w->task, w->cfg.tokenizer = w->t, w->cfg.prompts = w->prompts;
    return 1;
}
static void ppo_world_free(ppo_world *w) {
    rlhf_model_free(w->policy); rlhf_model_free(w->ref); rlhf_model_free(w->critic);
    rlhf_dataset_free(w->prompts);
    rlhf_tokenizer_free(w->t);
}
static rlhf_ppo *ppo_trainer(ppo_world *w, rlhf_error *e) {
    rlhf_ppo *p = NULL;
    rlhf_ppo_create(&p, &w->cfg, e);
    return p;
}
/* Files of dir that a save leaves only while it runs (or after a kill):
   *.next, ppo.commit, ppo.commit.tmp, *.tmp-PID. Their count; the first
   name into first. */
static int temporaries(const char *dir, char *first, size_t cap) {
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (first && cap) first[0] = 0;
    if (!d) return -1;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if ((len > 5 && strcmp(de->d_name + len - 5, ".next") == 0) || strncmp(de->d_name, "ppo.commit", 10) == 0 ||
            strstr(de->d_name, ".tmp-") != NULL) {
            if (n++ == 0 && first) snprintf(first, cap, "%s", de->d_name);
        }
    }
    closedir(d);
    return n;
}
/* The child's report of a save: 'B' before rlhf_ppo_save, 'D' after it returned. */
typedef struct { char kind; long iteration; } save_note;

/* Rounds of: fork a child that runs PPO iterations and saves each into dir;
   kill it at a random moment; load dir into a fresh trainer. Returns the
   number of failed checks. */
static int crash_ppo(int rounds, const char *base, rlhf_rng *rng) {
    ppo_world a, b;
    rlhf_ppo *p;
    rlhf_error e;
    char dir[512], name[600];
    int round, fails = 0, inside = 0, rolled = 0;
    long in_dir; /* the iteration dir holds */
    double seconds = 0.0;
    snprintf(dir, sizeof dir, "%s/crash_ppo", base);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) { perror(dir); return 1; }
    /* a: the children's world (each child inherits it at iteration 0); b: the parent's, for loading */
    if (!ppo_world_make(&a, base) || !ppo_world_make(&b, base)) { fprintf(stderr, "test_crash: cannot build the PPO world\n"); return 1; }
    if (!(p = ppo_trainer(&a, &e))) { fprintf(stderr, "test_crash: %s\n", e.message); return 1; }
    /* a complete state from the start (iteration 0), so every load must succeed */
    if (rlhf_ppo_save(p, dir, &e) != RLHF_OK) { fprintf(stderr, "test_crash: %s\n", e.message); return 1; }
    {   /* how long an iteration and a save take, to spread the kills over several of each (dir then holds iteration 3) */
        double t0 = rlhf__seconds();
        rlhf_ppo *q = ppo_trainer(&b, &e);
        int k;
        for (k = 0; q && k < 3; k++)
            if (rlhf_ppo_step(q, NULL, &e) != RLHF_OK || rlhf_ppo_save(q, dir, &e) != RLHF_OK) break;
        rlhf_ppo_free(q);
        if (k < 3) { fprintf(stderr, "test_crash: %s\n", e.message); return 1; }
        seconds = (rlhf__seconds() - t0) / 3;
        in_dir = 3;
    }
    for (round = 0; round < rounds; round++) {
        int fd[2], status, n_tmp;
        pid_t child;
        struct timespec ts;
        save_note note;
        long last_done = in_dir, pending = -1;
        rlhf_ppo *q;
        rlhf_result r;
        if (pipe(fd) != 0) { perror("pipe"); return fails + 1; }
        child = fork();
        if (child < 0) { perror("fork"); return fails + 1; }
        if (child == 0) { /* step, save, step, save, ... until killed */
            close(fd[0]);
            for (;;) {
                if (rlhf_ppo_step(p, NULL, &e) != RLHF_OK) _exit(3);
                note.kind = 'B';
                note.iteration = p->iteration;
                if (write(fd[1], &note, sizeof note) != (ssize_t)sizeof note) _exit(4);
                if (rlhf_ppo_save(p, dir, &e) != RLHF_OK) _exit(5);
                note.kind = 'D';
                if (write(fd[1], &note, sizeof note) != (ssize_t)sizeof note) _exit(4);
            }
        }
        close(fd[1]);
        /* anywhere in the first ~4 iterations of the child */
        ts.tv_sec = 0;
        ts.tv_nsec = (long)(rlhf_rng_float(rng) * 4.0 * seconds * 1e9);
        if (ts.tv_nsec > 999999999L) ts.tv_nsec = 999999999L;
        nanosleep(&ts, NULL);
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        forget_killed(child);
        if (!WIFSIGNALED(status)) {
            fprintf(stderr, "FAIL round %d: the child stopped by itself (status %d)\n", round, WEXITSTATUS(status));
            fails++;
        }
        /* what the child said: saves that returned, and one under way */
        while (read(fd[0], &note, sizeof note) == (ssize_t)sizeof note) {
            if (note.kind == 'B') pending = note.iteration;
            else last_done = note.iteration, pending = -1;
        }
        close(fd[0]);
        /* caught inside a save (before or after its commit point)? */
        n_tmp = temporaries(dir, name, sizeof name);
        if (n_tmp > 0) inside++;
        snprintf(name, sizeof name, "%s/ppo.commit", dir);
        if (access(name, F_OK) == 0) rolled++;
        /* a fresh trainer loads dir: the last save that returned, or the one under way */
        if (!(q = ppo_trainer(&b, &e))) { fprintf(stderr, "test_crash: %s\n", e.message); return fails + 1; }
        r = rlhf_ppo_load(q, dir, &e);
        if (r != RLHF_OK) {
            fprintf(stderr, "FAIL round %d: rlhf_ppo_load: %s\n", round, e.message);
            fails++;
        } else if (q->iteration != last_done && q->iteration != pending) {
            fprintf(stderr, "FAIL round %d: loaded iteration %ld; the child had saved %ld (and was saving %ld)\n", round, q->iteration,
                    last_done, pending);
            fails++;
        } else
            in_dir = q->iteration;
        rlhf_ppo_free(q);
        if ((n_tmp = temporaries(dir, name, sizeof name)) != 0) {
            fprintf(stderr, "FAIL round %d: %d temporary files remain after the load, e.g. %s\n", round, n_tmp, name);
            fails++;
        }
    }
    printf("crash safety (PPO, 3 files a save): %d kills, %d inside a save (%d after its commit point); every load found one whole save "
           "and no temporary file: %s\n", rounds, inside, rolled, fails ? "NO" : "yes");
    if (!fails) { /* leave nothing behind (on failure the directory is the evidence) */
        int i;
        for (i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "%s/%s", dir, RLHF__PPO_FILES[i]);
            remove(name);
        }
        rmdir(dir);
        snprintf(name, sizeof name, "%s/crash_prompts.jsonl", base);
        remove(name);
    }
    rlhf_ppo_free(p);
    ppo_world_free(&a);
    ppo_world_free(&b);
    return fails;
}

int main(int argc, char **argv) {
    int iterations = argc > 1 ? atoi(argv[1]) : 120, fails;
    const char *dir = argc > 2 ? argv[2] : "build";
    rlhf_rng rng;
    rlhf_rng_seed(&rng, (uint64_t)time(NULL));
    fails = crash_model(iterations, dir, &rng);
    fails += crash_ppo(iterations, dir, &rng);
    return fails ? 1 : 0;
}
