/* 01_tokenizer.c - byte-level BPE and the chat template.

   Teaches: how text becomes token ids (GPT-2's pre-tokenizer, then merges
   learned from data), that every byte string round-trips, the special tokens,
   and the chat template whose mask tells SFT which tokens to learn.
   InstructGPT: the model reads prompts and writes replies as tokens; SFT's
   loss covers only the reply's tokens (the mask below).

   Usage: ex01   (no arguments; writes nothing)
       cc -O2 examples/01_tokenizer.c -lm -o ex01 && ./ex01 */
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include <stdio.h>
#include <string.h>

static const char corpus[] =
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs. "
    "Reinforcement learning from human feedback fine-tunes a language model with a reward model "
    "trained on human rankings. The reward model reads a prompt and a response and returns a number. ";

int main(void) {
    rlhf_tokenizer *t;
    rlhf_error err;
    int ids[256], i;
    unsigned char mask[256];
    size_t n, nb;
    char back[512];
    const char *text = "The fox reads the reward.";
    rlhf_message chat[2];

    /* 1. learn merges: 256 byte tokens, then the most frequent pairs, then the 6 specials */
    if (rlhf_tokenizer_train(&t, corpus, strlen(corpus), 300, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("vocabulary: %d tokens (EOS %d, pad %d, <|end|> %d)\n", rlhf_tokenizer_vocab_size(t),
           rlhf_tokenizer_special(t, RLHF_TOKEN_EOS), rlhf_tokenizer_special(t, RLHF_TOKEN_PAD),
           rlhf_tokenizer_special(t, RLHF_TOKEN_END));

    /* 2. encode and decode: each piece of GPT-2's split is merged on its own */
    rlhf_tokenizer_encode(t, text, strlen(text), ids, 256, &n);
    printf("\"%s\" -> %zu tokens:", text, n);
    for (i = 0; i < (int)n; i++) {
        char piece[64];
        rlhf_tokenizer_decode(t, &ids[i], 1, piece, sizeof piece - 1, &nb);
        piece[nb] = 0;
        printf(" [%s]", piece);
    }
    rlhf_tokenizer_decode(t, ids, n, back, sizeof back - 1, &nb);
    back[nb] = 0;
    printf("\nround trip: \"%s\" (%s)\n", back, strcmp(back, text) == 0 ? "identical" : "DIFFERENT");

    /* 3. the chat template: <|user|> prompt <|end|> <|assistant|> reply <|end|>,
          mask = 1 on what SFT learns: the reply and its <|end|> */
    chat[0].role = RLHF_ROLE_USER;
    chat[0].content.str = "name an animal";
    chat[0].content.len = strlen(chat[0].content.str);
    chat[1].role = RLHF_ROLE_ASSISTANT;
    chat[1].content.str = "the fox";
    chat[1].content.len = strlen(chat[1].content.str);
    rlhf_tokenizer_chat(t, chat, 2, 0, ids, mask, 256, &n);
    printf("chat: %zu tokens\n", n);
    for (i = 0; i < (int)n; i++) {
        char piece[64];
        rlhf_tokenizer_decode(t, &ids[i], 1, piece, sizeof piece - 1, &nb);
        piece[nb] = 0;
        printf("  %4d %-14s %s\n", ids[i], piece, mask[i] ? "learned by SFT" : "");
    }
    rlhf_tokenizer_free(t);
    return 0;
}
