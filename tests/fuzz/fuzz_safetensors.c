/* libFuzzer harness: rlhf_model_load_ex on an arbitrary file, written into a
   private temporary folder that also holds a valid config.json (so inputs
   without a config in their metadata reach the tensor checks). `make fuzz`. */
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
        float logits[4 * 5];
        int x[4] = {0, 1, 2, 3};
        rlhf_model_logits(m, x, 1, m->cfg.n_ctx < 4 ? m->cfg.n_ctx : 4, logits);
    }
    rlhf_model_free(m);
    return 0;
}
