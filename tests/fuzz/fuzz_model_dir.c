/* libFuzzer harness: what rlhf_model_load_ex reads beside the weights, and
   the PPO run state a resume reads. The first byte picks the file(s); the
   rest is one file or two separated by the byte 0x1E:
     '0'  config.json of a Hugging Face directory whose model.safetensors
          (tests/fixtures/hf/hub's) has no config in its metadata
     '1'  model.safetensors.index.json, then optionally config.json (else
          tests/fixtures/hf/sharded's), beside that fixture's two shards
     '2'  the "rlhf.ppo.state" metadata of a PPO run's policy.safetensors,
          read as rlhf_ppo_load reads it (rlhf__ppo_read_state) for a
          trainer with no prompts, no PPO-ptx data and a known reference
   A model that loads computes logits. Run from the repository's root (the
   fixtures are read from tests/fixtures/hf). `make fuzz`. */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../../rlhf.h"
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* bytes into dir/name */
static void put(const char *dir, const char *name, const unsigned char *data, size_t size) {
    char path[200];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if ((f = fopen(path, "wb")) != NULL) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
}
/* a fixture's bytes (the harness cannot run without them); *size its length */
static unsigned char *fixture(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    unsigned char *b = (unsigned char *)malloc(1 << 20);
    if (!f || !b || (*size = fread(b, 1, 1 << 20, f)) == 0) {
        fprintf(stderr, "fuzz_model_dir: cannot read %s (run from the repository's root)\n", path);
        abort();
    }
    fclose(f);
    return b;
}
/* the folders of modes 0 and 1 with their fixed files, once */
static void setup(const char *root, unsigned char **sharded_config, size_t *config_len) {
    static const char *const copies[3][3] = {
        {"0", "tests/fixtures/hf/hub/model.safetensors", "model.safetensors"},
        {"1", "tests/fixtures/hf/sharded/model-00001-of-00002.safetensors", "model-00001-of-00002.safetensors"},
        {"1", "tests/fixtures/hf/sharded/model-00002-of-00002.safetensors", "model-00002-of-00002.safetensors"}};
    char dir[160];
    size_t n;
    int k;
    mkdir(root, 0700);
    for (k = 0; k < 3; k++) {
        unsigned char *b = fixture(copies[k][1], &n);
        snprintf(dir, sizeof dir, "%s/%s", root, copies[k][0]);
        mkdir(dir, 0700);
        put(dir, copies[k][2], b, n);
        free(b);
    }
    *sharded_config = fixture("tests/fixtures/hf/sharded/config.json", config_len);
}

/* mode 2: the state string as the metadata of a small policy, read for a trainer that has no data */
static void ppo_state(const unsigned char *data, size_t size) {
    static rlhf_model *pol;
    rlhf_ppo p;
    rlhf__ppo_state s;
    rlhf_error e;
    char *state = (char *)malloc(size + 1);
    if (!pol) {
        rlhf_config c = {8, 4, 1, 1, 4};
        if (rlhf_model_create(&pol, &c, 1) != RLHF_OK) abort();
    }
    if (!state) return;
    memcpy(state, data, size);
    state[size] = 0; /* metadata values are strings: a NUL ends it */
    memset(&p, 0, sizeof p);
    p.cfg = rlhf_ppo_config_default();
    p.ref_hash = 0x0123456789abcdefULL;
    /* the library's own key, set as a save sets it (rlhf_model_set_meta keeps rlhf.* to the library) */
    if (rlhf__set_meta(pol, "rlhf.ppo.state", state) == RLHF_OK) rlhf__ppo_read_state(&p, pol, "run", &s, &e);
    free(state);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static char root[64];
    static unsigned char *sharded_config;
    static size_t config_len;
    char dir[96];
    size_t cut = size;
    rlhf_model *m = NULL;
    rlhf_error e;
    if (size < 1 || data[0] < '0' || data[0] > '2') return 0;
    if (data[0] == '2') {
        ppo_state(data + 1, size - 1);
        return 0;
    }
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/rlhf-fuzz-dir-%ld", (long)getpid());
        setup(root, &sharded_config, &config_len);
    }
    snprintf(dir, sizeof dir, "%s/%c", root, data[0]);
    if (data[0] == '0') put(dir, "config.json", data + 1, size - 1);
    else {
        const unsigned char *sep = (const unsigned char *)memchr(data + 1, 0x1E, size - 1);
        if (sep) cut = (size_t)(sep - data);
        put(dir, "model.safetensors.index.json", data + 1, cut - 1);
        if (sep) put(dir, "config.json", sep + 1, size - cut - 1);
        else put(dir, "config.json", sharded_config, config_len);
    }
    if (rlhf_model_load_ex(&m, dir, &e) == RLHF_OK) {
        int x[4] = {0, 1, 2, 3}, T = m->cfg.n_ctx < 4 ? m->cfg.n_ctx : 4;
        float *logits = (float *)malloc((size_t)T * (size_t)m->cfg.vocab_size * sizeof(float));
        if (logits && m->cfg.vocab_size >= 4) rlhf_model_logits(m, x, 1, T, logits);
        free(logits);
    }
    rlhf_model_free(m);
    return 0;
}
