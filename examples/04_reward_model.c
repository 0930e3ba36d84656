/* 04_reward_model.c - a reward model from K-way rankings.

   Teaches: a scalar head on a GPT-2 (score.weight, score.bias); the reward
   read at the reply's last token; InstructGPT's eq. 1,
       loss = -1/C(K,2) * sum over pairs (better i, worse j) of log sigmoid(r_i - r_j),
   with all C(K,2) pairs of a prompt as one batch element; normalisation;
   scoring. InstructGPT step 2: labelers rank 4 to 9 replies per prompt.

   Usage: ex04 [epochs] [out_dir]   (defaults 3, build/examples): writes
          ex04_rankings.jsonl into out_dir
       cc -O2 examples/04_reward_model.c -lm -o ex04 && ./ex04 [epochs] [out_dir] */
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include "out_dir.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the labelers' taste: a reply is better the more "please" and "thanks" it has */
static const char *const words[] = {"please", "thanks", "now", "go", "do", "it"};

static void reply(rlhf_rng *r, int polite, char *out, size_t cap) {
    size_t len = 0;
    int i;
    for (i = 0; i < 4; i++) /* 4 words, `polite` of them courteous, at random places */
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "",
                                (int)(rlhf_rng_u64(r) % (uint64_t)(4 - i)) < polite ? (polite--, words[rlhf_rng_u64(r) % 2])
                                                                                     : words[2 + rlhf_rng_u64(r) % 4]);
}

int main(int argc, char **argv) {
    int epochs = argc > 1 ? atoi(argv[1]) : 3, i, k;
    rlhf_rng rng;
    rlhf_tokenizer *t;
    rlhf_model *rm;
    rlhf_dataset *d;
    rlhf_error err;
    rlhf_config cfg;
    rlhf_train_options o = rlhf_train_options_reward();
    rlhf_train_report rep;
    char path[600];
    FILE *f = out_open(argc > 2 ? argv[2] : OUT_DIR_DEFAULT, "ex04_rankings.jsonl", path, sizeof path);
    static const char corpus[] = "open the door please. thanks. do it now. go. please do it, thanks. now go do it. ";

    /* 1. rankings: K = 2..4 replies with distinct politeness, listed best first */
    if (!f) return 1;
    rlhf_rng_seed(&rng, 4);
    for (i = 0; i < 300; i++) {
        int K = 2 + (int)(rlhf_rng_u64(&rng) % 3);
        fprintf(f, "{\"prompt\": \"open the door\", \"completions\": [");
        for (k = 0; k < K; k++) {
            char r[64];
            reply(&rng, K - 1 - k, r, sizeof r); /* completion k has K-1-k courtesies */
            fprintf(f, "%s\"%s\"", k ? ", " : "", r);
        }
        fprintf(f, "], \"ranking\": [");
        for (k = 0; k < K; k++) fprintf(f, "%s%d", k ? ", " : "", k); /* best first */
        fprintf(f, "]}\n");
    }
    fclose(f);
    if (rlhf_tokenizer_train(&t, corpus, strlen(corpus), 280, &err) != RLHF_OK ||
        rlhf_dataset_load(&d, path, RLHF_DATA_PREFERENCE, NULL, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }

    /* 2. a GPT-2 with a scalar head: score.weight ~ N(0, 1/sqrt(C+1)), bias 0 */
    cfg.vocab_size = rlhf_tokenizer_vocab_size(t);
    cfg.n_ctx = 32;
    cfg.n_layer = 2;
    cfg.n_head = 2;
    cfg.n_embd = 32;
    if (rlhf_model_create(&rm, &cfg, 5) != RLHF_OK || rlhf_model_add_score_head(rm, -1.0f, 6) != RLHF_OK) return 1;

    /* 3. eq. 1 over every prompt's pairs; 5% held out */
    o.opt.lr = 1e-3f;
    o.epochs = epochs;
    o.eval_every = 0;
    o.log_every = 0;
    if (rlhf_reward_train(rm, t, d, NULL, &o, &rep, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("%ld steps: held-out pairwise accuracy %.3f, loss %.3f\n", rep.steps, (double)rep.val_accuracy, (double)rep.val_loss);

    /* 4. scores of new replies (normalisation left at gain 1, bias 0 here;
          rlhf_reward_normalize sets it from a policy's samples) */
    {
        const char *p[3] = {"open the door", "open the door", "open the door"};
        const char *r[3] = {"please thanks please go", "go now do it", "thanks do it now"};
        float s[3];
        if (rlhf_reward_score(rm, t, p, r, 3, s) != RLHF_OK) return 1;
        for (i = 0; i < 3; i++) printf("r(\"%s\") = %+.3f\n", r[i], (double)s[i]);
    }
    rlhf_dataset_free(d);
    rlhf_model_free(rm);
    rlhf_tokenizer_free(t);
    return 0;
}
