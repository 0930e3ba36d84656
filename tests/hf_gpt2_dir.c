/* hf_gpt2_dir.c - a GPT-2-shaped Hugging Face model directory for tests/cli_hf.sh.

     hf_gpt2_dir DIR [V C L NH N_POSITIONS]     (default: 50257 16 1 2 64)

   Writes DIR/config.json and DIR/model.safetensors as transformers'
   save_pretrained lays them out for GPT2LMHeadModel: F32 tensors named
   "transformer.*" (Conv1D weights [in, out]), no lm_head.weight (tied), the
   header metadata {"format": "pt"} and no config in it, so a reader must take
   the sizes from config.json. Weights: rlhf_model_create's GPT-2 init, seed 1.
   Each file is written to a temporary name beside it and renamed. The model
   is GPT-2's shape (V = 50,257: the vocabulary without rlhf's chat markers)
   at toy widths, so the tests need no multi-megabyte file in the repository. */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int write_whole(const char *dir, const char *name, const char *head, size_t hlen, rlhf_model *m) {
    char path[1024], tmp[1100];
    FILE *f;
    int i, ok;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) return 0;
    ok = fwrite(head, 1, hlen, f) == hlen;
    for (i = 0; m && ok && i < rlhf_model_num_tensors(m); i++) { /* the data, in the header's order, little-endian */
        rlhf_tensor_info ti;
        size_t k;
        rlhf_model_tensor(m, i, &ti);
        for (k = 0; ok && k < ti.numel; k++) {
            unsigned char b[4];
            uint32_t u;
            memcpy(&u, &ti.data[k], 4);
            b[0] = (unsigned char)u, b[1] = (unsigned char)(u >> 8), b[2] = (unsigned char)(u >> 16), b[3] = (unsigned char)(u >> 24);
            ok = fwrite(b, 1, 4, f) == 4;
        }
    }
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp, path) == 0;
}

int main(int argc, char **argv) {
    rlhf_config c = {50257, 64, 1, 2, 16};
    rlhf_model *m = NULL;
    char *h, cfg[1024];
    size_t cap = 1 << 16, n = 8, off = 0;
    int i;
    if (argc != 2 && argc != 7) {
        fprintf(stderr, "usage: hf_gpt2_dir DIR [V C L NH N_POSITIONS]\n");
        return 2;
    }
    if (argc == 7) c.vocab_size = atoi(argv[2]), c.n_embd = atoi(argv[3]), c.n_layer = atoi(argv[4]), c.n_head = atoi(argv[5]), c.n_ctx = atoi(argv[6]);
    if (rlhf_model_create(&m, &c, 1) != RLHF_OK) { fprintf(stderr, "hf_gpt2_dir: cannot create the model\n"); return 1; }
    mkdir(argv[1], 0777);

    /* the header: 8-byte length, then JSON padded with spaces to a multiple of 8 */
    h = (char *)malloc(cap);
    n += (size_t)snprintf(h + n, cap - n, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info ti;
        rlhf_model_tensor(m, i, &ti);
        n += (size_t)snprintf(h + n, cap - n, ",\"transformer.%s\":{\"dtype\":\"F32\",\"shape\":[%d", ti.name, ti.shape[0]);
        if (ti.ndim == 2) n += (size_t)snprintf(h + n, cap - n, ",%d", ti.shape[1]);
        n += (size_t)snprintf(h + n, cap - n, "],\"data_offsets\":[%zu,%zu]}", off, off + 4 * ti.numel);
        off += 4 * ti.numel;
    }
    h[n++] = '}';
    while (n % 8) h[n++] = ' ';
    for (i = 0; i < 8; i++) h[i] = (char)((unsigned long long)(n - 8) >> (8 * i));

    snprintf(cfg, sizeof cfg,
             "{\n  \"activation_function\": \"gelu_new\",\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"bos_token_id\": 50256,\n"
             "  \"eos_token_id\": 50256,\n  \"layer_norm_epsilon\": 1e-05,\n  \"model_type\": \"gpt2\",\n  \"n_ctx\": %d,\n"
             "  \"n_embd\": %d,\n  \"n_head\": %d,\n  \"n_inner\": null,\n  \"n_layer\": %d,\n  \"n_positions\": %d,\n"
             "  \"tie_word_embeddings\": true,\n  \"torch_dtype\": \"float32\",\n  \"vocab_size\": %d\n}\n",
             c.n_ctx, c.n_embd, c.n_head, c.n_layer, c.n_ctx, c.vocab_size);
    if (!write_whole(argv[1], "model.safetensors", h, n, m) || !write_whole(argv[1], "config.json", cfg, strlen(cfg), NULL)) {
        fprintf(stderr, "hf_gpt2_dir: cannot write in %s\n", argv[1]);
        return 1;
    }
    printf("%s: config.json, model.safetensors (V %d, C %d, L %d, NH %d, n_positions %d; %zu parameters)\n", argv[1], c.vocab_size,
           c.n_embd, c.n_layer, c.n_head, c.n_ctx, rlhf_model_num_params(m));
    free(h);
    rlhf_model_free(m);
    return 0;
}
