/* libFuzzer harness: the JSONL reader over an arbitrary file, every record
   read (bad lines counted and skipped, as a caller with skipping on would),
   with a small line limit so the over-long path is reached. `make fuzz`. */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../../rlhf.h"
#include <stdio.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static char path[96];
    rlhf_jsonl *r = NULL;
    rlhf_json_error e;
    FILE *f;
    int guard = 0;
    if (!path[0]) snprintf(path, sizeof path, "/tmp/rlhf-fuzz-jsonl-%ld.jsonl", (long)getpid());
    f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    if (rlhf_jsonl_open(&r, path, 256, &e) != RLHF_OK) return 0;
    for (;;) {
        rlhf_json_doc *d = NULL;
        rlhf_result res = rlhf_jsonl_next(r, &d, &e);
        if (res == RLHF_OK && !d) break;
        rlhf_json_free(d);
        if (res == RLHF_ERR_IO || ++guard > 100000) break;
    }
    rlhf_jsonl_close(r);
    return 0;
}
