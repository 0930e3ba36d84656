/* Crash safety of checkpoint writes (POSIX: fork and SIGKILL).
   A child process saves two different models to the same path, over and
   over; the parent kills it at a random moment, then checks that the path
   holds one of the two complete checkpoints and that it loads. Repeated
   ITERATIONS times. Exit status 0 when every check passes.
   Usage: test_crash [iterations] [dir] */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int iterations = argc > 1 ? atoi(argv[1]) : 120, it, fails = 0, saw[2] = {0, 0};
    const char *dir = argc > 2 ? argv[2] : "build";
    char path[512];
    rlhf_config cfg;
    rlhf_model *m[2];
    rlhf_rng rng;
    /* ~2.4 MB per checkpoint: a write takes long enough to be caught midway */
    cfg.vocab_size = 1024; cfg.n_ctx = 64; cfg.n_layer = 2; cfg.n_head = 4; cfg.n_embd = 128;
    snprintf(path, sizeof path, "%s/crash_target.safetensors", dir);
    if (rlhf_model_create(&m[0], &cfg, 1) != RLHF_OK || rlhf_model_create(&m[1], &cfg, 2) != RLHF_OK) return 2;
    if (rlhf_model_save(m[0], path) != RLHF_OK) {
        fprintf(stderr, "test_crash: cannot save %s: %s\n", path, rlhf_model_last_error(m[0]));
        return 2;
    }
    rlhf_rng_seed(&rng, (uint64_t)time(NULL));
    for (it = 0; it < iterations; it++) {
        pid_t child = fork();
        struct timespec ts;
        rlhf_model *got = NULL;
        rlhf_error err;
        char tmp[600];
        int k, which = -1;
        if (child < 0) { perror("fork"); return 2; }
        if (child == 0) { /* save A, B, A, B, ... until killed */
            for (k = 0;; k++)
                if (rlhf_model_save(m[k & 1], path) != RLHF_OK) _exit(3);
        }
        ts.tv_sec = 0;
        ts.tv_nsec = (long)(rlhf_rng_float(&rng) * 40e6f); /* 0-40 ms: several saves */
        nanosleep(&ts, NULL);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
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
    return fails ? 1 : 0;
}
