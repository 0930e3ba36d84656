/* 03_sft.c - supervised fine-tuning on demonstrations.

   Teaches: prompt/completion records, the loss on completion tokens only
   (prompt tokens get target -1), packing several examples into one row
   without them attending to each other. InstructGPT step 1: a labeler writes
   the reply a prompt deserves; the model imitates it.

   Usage: ex03 [epochs] [out_dir]   (defaults 8, build/examples): writes
          ex03_sft.jsonl into out_dir
       cc -O2 examples/03_sft.c -lm -o ex03 && ./ex03 [epochs] [out_dir] */
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include "out_dir.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const animals[] = {"cat", "dog", "fox", "owl", "bee", "eel", "yak", "ant"};

int main(int argc, char **argv) {
    int epochs = argc > 1 ? atoi(argv[1]) : 8, i;
    rlhf_tokenizer *t;
    rlhf_model *m;
    rlhf_dataset *d;
    rlhf_error err;
    rlhf_config cfg;
    rlhf_train_options o = rlhf_train_options_sft();
    rlhf_train_report rep;
    char path[600];
    FILE *f = out_open(argc > 2 ? argv[2] : OUT_DIR_DEFAULT, "ex03_sft.jsonl", path, sizeof path);
    char corpus[4096];
    size_t len = 0;

    /* 1. demonstrations: "plural of X" -> "Xs", as JSONL {"prompt", "completion"} */
    if (!f) return 1;
    for (i = 0; i < 400; i++) fprintf(f, "{\"prompt\": \"plural of %s\", \"completion\": \"%ss\"}\n", animals[i % 8], animals[i % 8]);
    fclose(f);
    for (i = 0; i < 8; i++) len += (size_t)snprintf(corpus + len, sizeof corpus - len, "plural of %s: %ss. ", animals[i], animals[i]);
    if (rlhf_tokenizer_train(&t, corpus, len, 280, &err) != RLHF_OK ||
        rlhf_dataset_load(&d, path, RLHF_DATA_SFT, NULL, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    cfg.vocab_size = rlhf_tokenizer_vocab_size(t);
    cfg.n_ctx = 32;
    cfg.n_layer = 2;
    cfg.n_head = 2;
    cfg.n_embd = 48;
    if (rlhf_model_create(&m, &cfg, 3) != RLHF_OK) return 1;

    /* 2. SFT: each record through the chat template; loss = mean over the
          reply's tokens (and its <|end|>) only; rows packed */
    o.opt.lr = 3e-3f;
    o.batch_size = 16;
    o.epochs = epochs;
    o.pack = 1;
    o.eval_every = 0;
    o.log_every = 0;
    if (rlhf_sft_train(m, t, d, NULL, &o, &rep, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("%ld steps, %ld examples in, validation loss on completions %.3f\n", rep.steps, rep.train_examples, (double)rep.val_loss);

    /* 3. ask */
    {
        rlhf_kv_cache *c;
        rlhf_sampler *s;
        rlhf_sampler_config sc = rlhf_sampler_config_default();
        rlhf_rng rng;
        rlhf_message msg;
        int ids[64], n_out;
        size_t n, nb;
        char out[128];
        sc.temperature = 0.0f;
        rlhf_rng_seed(&rng, 1);
        rlhf_kv_cache_create(&c, m, 1, 32);
        rlhf_sampler_create(&s, cfg.vocab_size, &sc);
        for (i = 0; i < 3; i++) {
            char q[64];
            snprintf(q, sizeof q, "plural of %s", animals[i * 3]);
            msg.role = RLHF_ROLE_USER;
            msg.content.str = q;
            msg.content.len = strlen(q);
            rlhf_tokenizer_chat(t, &msg, 1, 1, ids, NULL, 64, &n);
            rlhf_model_generate(m, c, s, &rng, ids, (int)n, 8, rlhf_tokenizer_reply_end(t), ids + n, &n_out);
            rlhf_tokenizer_decode(t, ids + n, (size_t)n_out, out, sizeof out - 1, &nb);
            out[nb] = 0;
            printf("%s -> %s\n", q, out);
        }
        rlhf_sampler_free(s);
        rlhf_kv_cache_free(c);
    }
    rlhf_dataset_free(d);
    rlhf_model_free(m);
    rlhf_tokenizer_free(t);
    return 0;
}
