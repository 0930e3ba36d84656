/* engine_demo.c: the engine demo (build/engine_demo), the smallest whole
   program on the engine alone; `make test` runs it for 3 steps. `make demo`
   runs the full RLHF pipeline instead (`rlhf demo`, tools/demo.c). It
   pretrains a tiny byte-level GPT-2 on a built-in text with rlhf.h, prints
   the memory budget before it starts, shows the loss falling, and samples
   from the model with the KV cache before and after.

   Every byte is a token (V = 256): no tokenizer is needed yet.
   Usage: engine_demo [steps] [seed]   (defaults 400 and 1337) */
#define _DEFAULT_SOURCE /* madvise: huge pages for rlhf.h's large blocks */
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The built-in corpus: short, regular sentences a small model can learn. */
static const char *CORPUS =
    "The labeler reads the prompt and writes a helpful answer. "
    "The model reads the prompt and writes an answer. "
    "The labeler ranks four answers from best to worst. "
    "The reward model learns to score the answers the way the labeler ranks them. "
    "The policy writes answers and the reward model scores them. "
    "A penalty keeps the policy close to the model it started from. "
    "The policy learns to write answers that score well. "
    "Step one is supervised fine-tuning. Step two is the reward model. "
    "Step three is reinforcement learning with proximal policy optimization. ";

static double now_seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

/* Continue prompt up to `window` positions: the length trained on (position
   embeddings past it never received a gradient). */
static void sample_text(rlhf_model *m, rlhf_kv_cache *c, rlhf_sampler *s, rlhf_rng *rng, const char *prompt, int window) {
    int ids[128], out[128], n_out = 0, n = (int)strlen(prompt), i;
    for (i = 0; i < n; i++) ids[i] = (unsigned char)prompt[i];
    if (rlhf_model_generate(m, c, s, rng, ids, n, window - n, -1, out, &n_out) != RLHF_OK) {
        printf("  generate failed: %s\n", rlhf_model_last_error(m));
        return;
    }
    printf("  \"%s", prompt);
    for (i = 0; i < n_out; i++) putchar(out[i] >= 32 && out[i] < 127 ? out[i] : '?');
    printf("\"\n");
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 400;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1337;
    enum { B = 8, T = 64 };
    rlhf_config cfg = rlhf_config_default(); /* L 4, NH 4, C 128 */
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_memory mem;
    rlhf_model *m;
    rlhf_kv_cache *cache;
    rlhf_sampler *sampler;
    rlhf_rng rng;
    int x[B * T], y[B * T], len = (int)strlen(CORPUS), step, i;
    double t0;
    cfg.vocab_size = 256;
    opt.lr = 1e-3f;
    sc.temperature = 0.8f;
    sc.top_k = 40;
    if (steps < 1) steps = 1;
    printf("rlhf.h %s engine demo: byte-level GPT-2 (L %d, NH %d, C %d, V %d) on %d bytes of built-in text\n",
           RLHF_VERSION_STRING, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, len);
    printf("kernels %s, %d thread(s)\n", rlhf_simd_name(), rlhf_num_threads());
    if (rlhf_config_memory(&cfg, B, T, 1, &mem) != RLHF_OK) return 1;
    printf("memory budget for B=%d T=%d: %.1f MB (params %.1f, grads %.1f, AdamW %.1f, activations %.1f, backward %.1f, matmul %.1f)\n",
           B, T, mem.total / 1e6, mem.params / 1e6, mem.grads / 1e6, mem.optimizer / 1e6, mem.activations / 1e6,
           mem.backward / 1e6, mem.workspace / 1e6);
    if (rlhf_model_create(&m, &cfg, seed) != RLHF_OK || rlhf_model_reserve(m, B, T, 1) != RLHF_OK ||
        rlhf_kv_cache_create(&cache, m, 1, cfg.n_ctx) != RLHF_OK || rlhf_sampler_create(&sampler, cfg.vocab_size, &sc) != RLHF_OK) {
        fprintf(stderr, "engine_demo: cannot build the model (out of memory?)\n");
        return 1;
    }
    rlhf_rng_seed(&rng, seed);
    printf("before training, the model babbles:\n");
    sample_text(m, cache, sampler, &rng, "The policy ", T);
    t0 = now_seconds();
    for (step = 1; step <= steps; step++) {
        float loss;
        rlhf_result r;
        /* B windows of T+1 bytes at random offsets: inputs and next-byte targets */
        for (i = 0; i < B; i++) {
            int off = (int)(rlhf_rng_u64(&rng) % (uint64_t)(len - T - 1)), t;
            for (t = 0; t < T; t++) {
                x[i * T + t] = (unsigned char)CORPUS[off + t];
                y[i * T + t] = (unsigned char)CORPUS[off + t + 1];
            }
        }
        /* linear warm-up over 50 steps, then constant */
        opt.lr = 1e-3f * (step < 50 ? (float)step / 50.0f : 1.0f);
        r = rlhf_model_train_step(m, x, y, B, T, &opt, &loss);
        if (r != RLHF_OK) {
            fprintf(stderr, "engine_demo: step %d: %s\n", step, rlhf_model_last_error(m));
            return 1;
        }
        if (step == 1 || step % 50 == 0 || step == steps)
            printf("step %4d/%d  loss %.4f  (%.1f s CPU)\n", step, steps, loss, now_seconds() - t0);
    }
    printf("after %d steps:\n", steps);
    sample_text(m, cache, sampler, &rng, "The policy ", T);
    sample_text(m, cache, sampler, &rng, "Step two ", T);
    rlhf_sampler_free(sampler);
    rlhf_kv_cache_free(cache);
    rlhf_model_free(m);
    return 0;
}
