/* libFuzzer harness: rlhf_dataset_load on an arbitrary JSONL file in each of
   the five formats, stopping at the first bad record and skipping bad
   records, and on the same bytes as a plain text file (pretraining text:
   a path not ending in .jsonl); every loaded record's strings and messages
   are read. `make fuzz`. */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../../rlhf.h"
#include <stdio.h>
#include <unistd.h>

static size_t touch(rlhf_str s) { return s.len ? (unsigned char)s.str[s.len - 1] + (unsigned char)s.str[0] : 0; }
static size_t touch_turns(const rlhf_message *m, int n) {
    size_t sum = 0;
    int k;
    for (k = 0; k < n; k++) sum += touch(m[k].content) + (size_t)m[k].role;
    return sum;
}
/* every string of every record of d (NULL: none) */
static size_t touch_all(const rlhf_dataset *d) {
    size_t i, sum = 0;
    int k;
    for (i = 0; i < rlhf_dataset_size(d); i++) {
        const rlhf_record *r = rlhf_dataset_record(d, i);
        sum += touch(r->text) + touch(r->prompt) + touch(r->completion) + touch(r->chosen) + touch(r->rejected);
        for (k = 0; k < r->n_messages; k++) sum += touch(r->messages[k].content);
        for (k = 0; k < r->n_completions; k++) sum += touch(r->completions[k]);
        sum += touch_turns(r->prompt_messages, r->n_prompt_messages) +
               touch_turns(r->completion_messages, r->n_completion_messages) +
               touch_turns(r->chosen_messages, r->n_chosen_messages) +
               touch_turns(r->rejected_messages, r->n_rejected_messages);
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static char path[96], text_path[96];
    FILE *f;
    int fmt, skip;
    volatile size_t sink = 0;
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/rlhf-fuzz-data-%ld.jsonl", (long)getpid());
        snprintf(text_path, sizeof text_path, "/tmp/rlhf-fuzz-data-%ld.txt", (long)getpid());
    }
    f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    for (fmt = RLHF_DATA_TEXT; fmt <= RLHF_DATA_UNPAIRED; fmt++)
        for (skip = 0; skip < 2; skip++) {
            rlhf_dataset *d = NULL;
            rlhf_data_options o = rlhf_data_options_default();
            rlhf_error e;
            o.skip_bad = skip;
            o.max_line_bytes = 4096;
            if (rlhf_dataset_load(&d, path, (rlhf_data_format)fmt, &o, &e) != RLHF_OK) continue;
            sink += touch_all(d);
            rlhf_dataset_free(d);
        }
    f = fopen(text_path, "wb");
    if (f) {
        rlhf_dataset *d = NULL;
        rlhf_data_options o = rlhf_data_options_default();
        rlhf_error e;
        fwrite(data, 1, size, f);
        fclose(f);
        o.max_text_bytes = 1 << 16;
        if (rlhf_dataset_load(&d, text_path, RLHF_DATA_TEXT, &o, &e) == RLHF_OK) sink += touch_all(d);
        rlhf_dataset_free(d);
    }
    (void)sink;
    return 0;
}
