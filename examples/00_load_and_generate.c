/* 00_load_and_generate.c - load a checkpoint and talk to it.

   Teaches: a checkpoint is one .safetensors file holding the weights, the
   config and the tokenizer; the chat template; sampling with the KV cache
   (temperature, top-k, top-p). InstructGPT: this is how a labeler (or a
   user) sees the policy: a prompt in, a reply out.

   Usage: ex00 [checkpoint] [prompt]   (defaults runs/demo/sft.safetensors,
          "greet Ana politely"); reads the checkpoint, writes nothing.
   Build and run (after `make demo`, which writes runs/demo/sft.safetensors):
       cc -O2 examples/00_load_and_generate.c -lm -o ex00
       ./ex00 runs/demo/sft.safetensors "add 3 and 4" */
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "runs/demo/sft.safetensors";
    const char *prompt = argc > 2 ? argv[2] : "greet Ana politely";
    rlhf_model *m;
    rlhf_tokenizer *t;
    rlhf_error err;
    rlhf_kv_cache *cache;
    rlhf_sampler *sampler;
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_rng rng;
    rlhf_message msg;
    int ids[256], n_reply = 0, i, end;
    size_t n_prompt, n_text;
    char text[1024];

    /* 1. the model and its tokenizer, both from the one file */
    if (rlhf_model_load_ex(&m, path, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n(run `make demo` first, or give a checkpoint path)\n", err.message);
        return 1;
    }
    if (rlhf_tokenizer_from_model(&t, m, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        rlhf_model_free(m);
        return 1;
    }
    printf("%s: %zu parameters, kind %s\n", path, rlhf_model_num_params(m),
           rlhf_model_meta(m, "rlhf.kind") ? rlhf_model_meta(m, "rlhf.kind") : "(none)");

    /* 2. the prompt through the chat template: <|user|>...<|end|><|assistant|> */
    msg.role = RLHF_ROLE_USER;
    msg.content.str = prompt;
    msg.content.len = strlen(prompt);
    if (rlhf_tokenizer_chat(t, &msg, 1, 1, ids, NULL, 128, &n_prompt) != RLHF_OK) {
        fprintf(stderr, "the prompt is too long\n");
        return 1;
    }

    /* 3. three replies at temperature 0.7: the KV cache makes each new token
          one pass over the weights, not a re-forward of the whole sequence */
    sc.temperature = 0.7f;
    rlhf_rng_seed(&rng, 1);
    end = rlhf_tokenizer_reply_end(t); /* a reply stops at <|end|> (the chat template's stop token) */
    if (rlhf_kv_cache_create(&cache, m, 1, rlhf_model_config(m)->n_ctx) != RLHF_OK ||
        rlhf_sampler_create(&sampler, rlhf_model_config(m)->vocab_size, &sc) != RLHF_OK)
        return 1;
    for (i = 0; i < 3; i++) {
        int max_new = rlhf_model_config(m)->n_ctx - (int)n_prompt;
        if (rlhf_model_generate(m, cache, sampler, &rng, ids, (int)n_prompt, max_new < 32 ? max_new : 32, end, ids + n_prompt,
                                &n_reply) != RLHF_OK) {
            fprintf(stderr, "%s\n", rlhf_model_last_error(m));
            return 1;
        }
        rlhf_tokenizer_decode(t, ids + n_prompt, (size_t)n_reply, text, sizeof text - 1, &n_text);
        text[n_text < sizeof text - 1 ? n_text : sizeof text - 1] = 0;
        printf("%s -> %s\n", prompt, text);
    }
    rlhf_sampler_free(sampler);
    rlhf_kv_cache_free(cache);
    rlhf_tokenizer_free(t);
    rlhf_model_free(m);
    return 0;
}
