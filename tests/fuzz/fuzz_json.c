/* libFuzzer harness: rlhf_json_parse on arbitrary bytes; a parsed tree is
   walked end to end (every string and number read) and freed. `make fuzz`. */
#define RLHF_IMPLEMENTATION
#include "../../rlhf.h"

static size_t walk(const rlhf_json *v, int depth) {
    size_t n = 1;
    const rlhf_json *c;
    if (v->type == RLHF_JSON_STRING || v->type == RLHF_JSON_NUMBER) n += v->len ? (unsigned char)v->str[v->len - 1] : 0;
    if (v->key) n += v->key_len;
    for (c = v->child; c; c = c->next) n += walk(c, depth + 1); /* depth <= the parser's limit */
    return n;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    rlhf_json_doc *d = NULL;
    rlhf_json_error e;
    if (rlhf_json_parse(&d, (const char *)data, size, 64, &e) == RLHF_OK) {
        int64_t x;
        walk(rlhf_json_root(d), 0);
        rlhf_json_int64(rlhf_json_root(d), &x);
        rlhf_json_get(rlhf_json_root(d), "a");
        rlhf_json_at(rlhf_json_root(d), 3);
    }
    rlhf_json_free(d);
    return 0;
}
