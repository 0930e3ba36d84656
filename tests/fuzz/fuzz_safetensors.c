/* libFuzzer harness: rlhf_model_load_ex on an arbitrary file, written into a
   private temporary folder that also holds a valid config.json (so inputs
   without a config in their metadata reach the tensor checks). A loaded
   model runs, and the tokenizer its metadata carries (a checkpoint of
   `rlhf sft` holds one) is read and used. `make fuzz`. */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../../rlhf.h"
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static char dir[64], path[96];
    rlhf_model *m = NULL;
    rlhf_error e;
    FILE *f;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/rlhf-fuzz-st-%ld", (long)getpid());
        mkdir(dir, 0700);
        snprintf(path, sizeof path, "%s/config.json", dir);
        f = fopen(path, "wb");
        if (f) {
            fputs("{\"vocab_size\":5,\"n_positions\":4,\"n_layer\":1,\"n_head\":2,\"n_embd\":4}", f);
            fclose(f);
        }
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
    }
    f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    if (rlhf_model_load_ex(&m, path, &e) == RLHF_OK) {
        int x[4] = {0, 1, 2, 3}, T = m->cfg.n_ctx < 4 ? m->cfg.n_ctx : 4;
        float *logits = (float *)malloc((size_t)T * (size_t)m->cfg.vocab_size * sizeof(float)); /* any V the file says */
        rlhf_tokenizer *t = NULL;
        if (logits && m->cfg.vocab_size >= 4) rlhf_model_logits(m, x, 1, T, logits);
        free(logits);
        if (rlhf_tokenizer_from_model(&t, m, &e) == RLHF_OK) {
            int ids[64];
            char back[256];
            size_t n = 0, nb = 0;
            if (rlhf_tokenizer_encode(t, "Hi there, 2+3?", 14, ids, 64, &n) == RLHF_OK)
                rlhf_tokenizer_decode(t, ids, n, back, sizeof back, &nb);
            rlhf_tokenizer_free(t);
        }
    }
    rlhf_model_free(m);
    return 0;
}
