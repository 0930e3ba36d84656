/* libFuzzer harness: the tokenizer readers on arbitrary files. The first
   byte picks the reader; the rest is one file or several, separated by the
   byte 0x1E (ASCII's record separator, which none of these files holds):
     '0'  an rlhf.h tokenizer file             rlhf_tokenizer_load
     '1'  tokenizer.json (Hugging Face)        rlhf_tokenizer_load_hf
     '2'  vocab.json, merges.txt and, when given, tokenizer_config.json and
          added_tokens.json (a Hugging Face directory)
     '3'  encoder.json, vocab.bpe (OpenAI's)   rlhf_tokenizer_load_gpt2_ex
   Each mode has its own temporary folder, so no file of another input is
   read. A tokenizer that loads encodes text (plain and with special tokens),
   decodes it back, and renders a chat under both templates. `make fuzz`. */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../../rlhf.h"
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* bytes into dir/name; data NULL removes the file */
static void put(const char *dir, const char *name, const unsigned char *data, size_t size) {
    char path[160];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!data) {
        remove(path);
        return;
    }
    if ((f = fopen(path, "wb")) != NULL) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
}

/* what a caller does with a tokenizer it loaded */
static void use(rlhf_tokenizer *t) {
    static const char text[] = "Hello there, 2+3=5!<|endoftext|> <|user|>caf\xc3\xa9 \xff\xfe";
    rlhf_message msgs[3];
    int ids[256], chat[256];
    unsigned char mask[256];
    char back[512];
    size_t n = 0, nb = 0, nc = 0;
    int k;
    msgs[0].role = RLHF_ROLE_SYSTEM, msgs[0].content.str = "Be brief.", msgs[0].content.len = 9;
    msgs[1].role = RLHF_ROLE_USER, msgs[1].content.str = "2+3?", msgs[1].content.len = 4;
    msgs[2].role = RLHF_ROLE_ASSISTANT, msgs[2].content.str = " 5", msgs[2].content.len = 2;
    if (rlhf_tokenizer_encode(t, text, sizeof text - 1, ids, 256, &n) == RLHF_OK)
        rlhf_tokenizer_decode(t, ids, n, back, sizeof back, &nb);
    if (rlhf_tokenizer_encode_special(t, text, sizeof text - 1, ids, 256, &n) == RLHF_OK)
        rlhf_tokenizer_decode(t, ids, n, back, sizeof back, &nb);
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) ids[k] = rlhf_tokenizer_special(t, (rlhf_special_token)k);
    rlhf_tokenizer_decode(t, ids, RLHF_NUM_SPECIAL_TOKENS, back, sizeof back, &nb);
    rlhf_tokenizer_chat(t, msgs, 3, 1, chat, mask, 256, &nc);
    if (rlhf_tokenizer_set_template(t, RLHF_TEMPLATE_HH) == RLHF_OK) rlhf_tokenizer_chat(t, msgs, 3, 1, chat, mask, 256, &nc);
    (void)rlhf_tokenizer_reply_end(t);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static const char *const names[4][4] = {{"tokenizer.rlhf.json"},
                                            {"tokenizer.json"},
                                            {"vocab.json", "merges.txt", "tokenizer_config.json", "added_tokens.json"},
                                            {"encoder.json", "vocab.bpe"}};
    static char root[64];
    char dir[96], a[160], b[160];
    const unsigned char *part[4] = {NULL, NULL, NULL, NULL};
    size_t len[4] = {0, 0, 0, 0}, i, start;
    int mode, n_parts = 0, k;
    rlhf_tokenizer *t = NULL;
    rlhf_error e;
    if (size < 1 || data[0] < '0' || data[0] > '3') return 0;
    mode = data[0] - '0';
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/rlhf-fuzz-tok-%ld", (long)getpid());
        mkdir(root, 0700);
        for (k = 0; k < 4; k++) {
            snprintf(dir, sizeof dir, "%s/%d", root, k);
            mkdir(dir, 0700);
        }
    }
    snprintf(dir, sizeof dir, "%s/%d", root, mode);

    /* the files, split at 0x1E; the ones not given are removed */
    for (i = start = 1; i <= size && n_parts < 4; i++)
        if (i == size || data[i] == 0x1E) {
            part[n_parts] = data + start, len[n_parts] = i - start, n_parts++;
            start = i + 1;
        }
    for (k = 0; k < 4 && names[mode][k]; k++) put(dir, names[mode][k], part[k], len[k]);

    snprintf(a, sizeof a, "%s/%s", dir, names[mode][0]);
    if (mode == 0 && rlhf_tokenizer_load(&t, a, &e) != RLHF_OK) t = NULL;
    if (mode == 1 && rlhf_tokenizer_load_hf(&t, a, &e) != RLHF_OK) t = NULL;
    if (mode == 2 && rlhf_tokenizer_load_hf(&t, dir, &e) != RLHF_OK) t = NULL;
    snprintf(b, sizeof b, "%s/%s", dir, "vocab.bpe");
    if (mode == 3 && rlhf_tokenizer_load_gpt2_ex(&t, a, b, &e) != RLHF_OK) t = NULL;
    if (t) use(t);
    rlhf_tokenizer_free(t);
    return 0;
}
