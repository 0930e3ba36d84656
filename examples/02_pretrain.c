/* 02_pretrain.c - pretraining: next-token prediction on plain text.

   Teaches: a GPT-2 from scratch (GPT-2's init), the training loop of
   rlhf_sft_train on a TEXT dataset (every token a target; windows of
   seq_len), the learning-rate schedule, checkpoints. InstructGPT: the base
   model (GPT-3) that everything after starts from, here 100k parameters.

   Usage: ex02 [steps] [out_dir]   (defaults 300, build/examples): writes
          ex02_text.txt, best.safetensors and last.safetensors into out_dir
       cc -O2 examples/02_pretrain.c -lm -o ex02 && ./ex02 [steps] [out_dir] */
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include "out_dir.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_log(void *user, rlhf_log_level level, const char *msg) {
    (void)user; (void)level;
    printf("  %s\n", msg);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 300, i;
    const char *dir = argc > 2 ? argv[2] : OUT_DIR_DEFAULT;
    rlhf_tokenizer *t;
    rlhf_model *m;
    rlhf_dataset *d;
    rlhf_error err;
    rlhf_config cfg;
    rlhf_train_options o = rlhf_train_options_sft();
    rlhf_train_report rep;
    char text[20000], path[600];
    size_t len = 0;
    FILE *f;

    /* 1. some text: counting, over and over (a pattern a tiny model can learn) */
    for (i = 0; i < 300 && len + 64 < sizeof text; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "%d, %d, %d and %d. ", i % 20, i % 20 + 1, i % 20 + 2, i % 20 + 3);
    if (!(f = out_open(dir, "ex02_text.txt", path, sizeof path))) return 1;
    fwrite(text, 1, len, f);
    fclose(f);
    if (rlhf_tokenizer_train(&t, text, len, 300, &err) != RLHF_OK || rlhf_dataset_load(&d, path, RLHF_DATA_TEXT, NULL, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }

    /* 2. a tiny GPT-2: V from the tokenizer, 2 layers, 64 channels */
    cfg.vocab_size = rlhf_tokenizer_vocab_size(t);
    cfg.n_ctx = 64;
    cfg.n_layer = 2;
    cfg.n_head = 2;
    cfg.n_embd = 64;
    if (rlhf_model_create(&m, &cfg, 42) != RLHF_OK) return 1;
    printf("%zu parameters\n", rlhf_model_num_params(m));

    /* 3. the loop: warm-up then cosine decay, gradient clipping, validation on 5% held out */
    o.opt.lr = 3e-3f;
    o.batch_size = 8;
    o.seq_len = 32;
    o.max_steps = steps;
    o.warmup_steps = 10;
    o.eval_every = steps / 3 > 0 ? steps / 3 : 1;
    o.log_every = steps / 6 > 0 ? steps / 6 : 1;
    o.out_dir = dir;                  /* best.safetensors and last.safetensors land here */
    o.log = on_log;
    if (rlhf_sft_train(m, t, d, NULL, &o, &rep, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("validation loss %.3f (best %.3f at step %ld), %.1f s\n", (double)rep.val_loss, (double)rep.best_val_loss, rep.best_step,
           rep.seconds);

    /* 4. continue a prompt greedily */
    {
        rlhf_kv_cache *c;
        rlhf_sampler *s;
        rlhf_sampler_config sc = rlhf_sampler_config_default();
        rlhf_rng rng;
        int ids[64], n_out;
        size_t n, nb;
        char out[256];
        sc.temperature = 0.0f; /* greedy */
        rlhf_rng_seed(&rng, 1);
        rlhf_tokenizer_encode(t, "7, 8, 9", 7, ids, 64, &n);
        rlhf_kv_cache_create(&c, m, 1, 64);
        rlhf_sampler_create(&s, cfg.vocab_size, &sc);
        rlhf_model_generate(m, c, s, &rng, ids, (int)n, 12, -1, ids + n, &n_out);
        rlhf_tokenizer_decode(t, ids, n + (size_t)n_out, out, sizeof out - 1, &nb);
        out[nb] = 0;
        printf("\"7, 8, 9\" continues as: \"%s\"\n", out);
        rlhf_sampler_free(s);
        rlhf_kv_cache_free(c);
    }
    rlhf_dataset_free(d);
    rlhf_model_free(m);
    rlhf_tokenizer_free(t);
    return 0;
}
