/* world.h - the synthetic world of `rlhf demo`: instructions in a small
   grammar, the text a base model is pretrained on, demonstrations written by
   simulated labelers who make realistic mistakes, and a programmatic GOLD
   JUDGE standing in for human preference. Deterministic given a seed.

   Instructions (prompt -> what a perfect assistant says):
     add 7 and 12             -> 19
     reverse: red blue green  -> green blue red
     greet Ana politely       -> hello Ana, nice to meet you.
     say cat twice            -> cat cat

   The gold judge scores a response in [0, 1]: correctness first (partial
   credit for near misses), then brevity (every word beyond the perfect
   answer costs 0.1). It is used to label data and to evaluate, never as
   PPO's reward (PPO sees only the reward model trained on its rankings). */
#ifndef RLHF_WORLD_H
#define RLHF_WORLD_H

#include <ctype.h>
#include <stdio.h>
#include <string.h>

enum { WORLD_ADD, WORLD_REVERSE, WORLD_GREET, WORLD_TWICE, WORLD_KINDS };
static const char *const WORLD_COLORS[] = {"red", "blue", "green", "black", "white", "pink", "gray", "gold"};
static const char *const WORLD_NAMES[] = {"Ana", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Ivy"};
static const char *const WORLD_WORDS[] = {"cat", "dog", "sun", "moon", "tree", "fish", "star", "rain"};

typedef struct world_task {
    int kind;
    int a, b;       /* ADD: operands; GREET: name; TWICE: word */
    int w[3];       /* REVERSE: three colours */
} world_task;

/* a small generator of its own, so the world does not depend on the library's */
typedef struct world_rng { unsigned long long s; } world_rng;
static unsigned world_next(world_rng *r) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(r->s >> 33);
}
static int world_below(world_rng *r, int n) { return (int)(world_next(r) % (unsigned)n); }
static double world_uniform(world_rng *r) { return (world_next(r) & 0xFFFFFF) / 16777216.0; }

static world_task world_sample_task(world_rng *r) {
    world_task t;
    memset(&t, 0, sizeof t);
    t.kind = world_below(r, WORLD_KINDS);
    t.a = world_below(r, 8);
    t.b = world_below(r, 8);
    if (t.kind == WORLD_ADD) {
        t.a = world_below(r, 20);
        t.b = world_below(r, 20);
    }
    t.w[0] = world_below(r, 8);
    do t.w[1] = world_below(r, 8); while (t.w[1] == t.w[0]);
    do t.w[2] = world_below(r, 8); while (t.w[2] == t.w[0] || t.w[2] == t.w[1]);
    return t;
}

static void world_prompt(const world_task *t, char *out, size_t cap) {
    switch (t->kind) {
    case WORLD_ADD: snprintf(out, cap, "add %d and %d", t->a, t->b); break;
    case WORLD_REVERSE: snprintf(out, cap, "reverse: %s %s %s", WORLD_COLORS[t->w[0]], WORLD_COLORS[t->w[1]], WORLD_COLORS[t->w[2]]); break;
    case WORLD_GREET: snprintf(out, cap, "greet %s politely", WORLD_NAMES[t->a]); break;
    default: snprintf(out, cap, "say %s twice", WORLD_WORDS[t->a]); break;
    }
}
static void world_answer(const world_task *t, char *out, size_t cap) {
    switch (t->kind) {
    case WORLD_ADD: snprintf(out, cap, "%d", t->a + t->b); break;
    case WORLD_REVERSE: snprintf(out, cap, "%s %s %s", WORLD_COLORS[t->w[2]], WORLD_COLORS[t->w[1]], WORLD_COLORS[t->w[0]]); break;
    case WORLD_GREET: snprintf(out, cap, "hello %s, nice to meet you.", WORLD_NAMES[t->a]); break;
    default: snprintf(out, cap, "%s %s", WORLD_WORDS[t->a], WORLD_WORDS[t->a]); break;
    }
}

/* A labeler's demonstration: right most of the time; otherwise one of the
   mistakes people make (a slip in the sum, a half-done reversal, a curt
   greeting, the wrong count) or padding the answer with chatter. */
static void world_demonstration(const world_task *t, world_rng *r, double mistake_rate, char *out, size_t cap) {
    char ans[128];
    world_answer(t, ans, sizeof ans);
    if (world_uniform(r) >= mistake_rate) {
        snprintf(out, cap, "%s", ans);
        return;
    }
    switch (world_below(r, 2) ? t->kind : WORLD_KINDS) {
    case WORLD_ADD: snprintf(out, cap, "%d", t->a + t->b + (world_below(r, 2) ? 1 : -1)); break;
    case WORLD_REVERSE: snprintf(out, cap, "%s %s %s", WORLD_COLORS[t->w[0]], WORLD_COLORS[t->w[1]], WORLD_COLORS[t->w[2]]); break;
    case WORLD_GREET: snprintf(out, cap, "hi %s.", WORLD_NAMES[t->a]); break;
    case WORLD_TWICE: snprintf(out, cap, "%s %s %s", WORLD_WORDS[t->a], WORLD_WORDS[t->a], WORLD_WORDS[t->a]); break;
    default: snprintf(out, cap, "sure, here it is: %s", ans); break; /* chatter */
    }
}

/* The task a prompt states, found anywhere in text (inside a chat template's
   markers, say): the inverse of world_prompt, so a verifiable reward can
   judge a reply from the prompt's text alone. Returns 1 and sets *t, or 0
   when text states no task. A candidate counts only if world_prompt renders
   it back to the same characters ("add 07 and 3" is no task). */
static int world_lookup(const char *const *list, const char *w) {
    int i;
    for (i = 0; i < 8; i++)
        if (strcmp(list[i], w) == 0) return i;
    return -1;
}
static int world_parse(const char *text, world_task *t) {
    const char *p;
    for (p = text; *p; p++) {
        char w[3][16], back[128];
        memset(t, 0, sizeof *t);
        if (sscanf(p, "add %d and %d", &t->a, &t->b) == 2 && t->a >= 0 && t->a < 20 && t->b >= 0 && t->b < 20)
            t->kind = WORLD_ADD;
        else if (sscanf(p, "reverse: %15[a-z] %15[a-z] %15[a-z]", w[0], w[1], w[2]) == 3 &&
                 (t->w[0] = world_lookup(WORLD_COLORS, w[0])) >= 0 && (t->w[1] = world_lookup(WORLD_COLORS, w[1])) >= 0 &&
                 (t->w[2] = world_lookup(WORLD_COLORS, w[2])) >= 0)
            t->kind = WORLD_REVERSE;
        else if (sscanf(p, "greet %15[A-Za-z] politel%1[y]", w[0], w[1]) == 2 && (t->a = world_lookup(WORLD_NAMES, w[0])) >= 0)
            t->kind = WORLD_GREET;
        else if (sscanf(p, "say %15[a-z] twic%1[e]", w[0], w[1]) == 2 && (t->a = world_lookup(WORLD_WORDS, w[0])) >= 0)
            t->kind = WORLD_TWICE;
        else
            continue;
        world_prompt(t, back, sizeof back);
        if (strncmp(p, back, strlen(back)) == 0) return 1;
    }
    return 0;
}

/* Pretraining text: the world's facts in plain prose (no chat template), so
   a base model knows sums, colours and names but not how to follow an
   instruction. */
static size_t world_pretrain_text(world_rng *r, int n_sentences, char *out, size_t cap) {
    size_t len = 0;
    int i;
    for (i = 0; i < n_sentences && len + 128 < cap; i++) {
        world_task t = world_sample_task(r);
        char ans[128];
        world_answer(&t, ans, sizeof ans);
        switch (t.kind) {
        case WORLD_ADD: len += (size_t)snprintf(out + len, cap - len, "%d plus %d is %s. ", t.a, t.b, ans); break;
        case WORLD_REVERSE:
            len += (size_t)snprintf(out + len, cap - len, "%s %s %s backwards is %s. ", WORLD_COLORS[t.w[0]], WORLD_COLORS[t.w[1]],
                                    WORLD_COLORS[t.w[2]], ans);
            break;
        case WORLD_GREET: len += (size_t)snprintf(out + len, cap - len, "%s met %s and said: %s ", WORLD_NAMES[t.b], WORLD_NAMES[t.a], ans); break;
        default: len += (size_t)snprintf(out + len, cap - len, "the %s and the %s, %s. ", WORLD_WORDS[t.a], WORLD_WORDS[t.b], ans); break;
        }
    }
    return len;
}

/* split text into lower-case words (letters and digits) */
static int world_words(const char *s, char words[][16], int max) {
    int n = 0;
    while (*s && n < max) {
        int k = 0;
        while (*s && !isalnum((unsigned char)*s)) s++;
        if (!*s) break;
        while (*s && isalnum((unsigned char)*s)) {
            if (k < 15) words[n][k++] = (char)tolower((unsigned char)*s);
            s++;
        }
        words[n][k] = 0;
        n++;
    }
    return n;
}
static int world_lower_eq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

/* The gold judge: correctness (with partial credit), minus 0.1 per word
   beyond the perfect answer's length; clamped to [0, 1]. */
static double world_gold(const world_task *t, const char *response) {
    char w[32][16], gw[8][16], ans[128];
    int n = world_words(response, w, 32), ng, i, hits = 0, extra;
    double correct = 0.0, s;
    world_answer(t, ans, sizeof ans);
    ng = world_words(ans, gw, 8);
    switch (t->kind) {
    case WORLD_ADD: { /* the first number given is the answer */
        for (i = 0; i < n && !isdigit((unsigned char)w[i][0]); i++) {}
        if (i < n) {
            int v = atoi(w[i]), d = v - (t->a + t->b);
            correct = d == 0 ? 1.0 : (d == 1 || d == -1) ? 0.3 : 0.0;
        }
        break;
    }
    case WORLD_REVERSE: /* the colours in the right places */
        for (i = 0; i < 3 && i < n; i++) hits += strcmp(w[i], gw[i]) == 0;
        correct = hits == 3 ? 1.0 : 0.25 * hits;
        break;
    case WORLD_GREET: { /* the name, a hello, a courtesy */
        int name = 0, hello = 0, nice = 0;
        for (i = 0; i < n; i++) {
            name |= world_lower_eq(w[i], WORLD_NAMES[t->a]);
            hello |= strcmp(w[i], "hello") == 0;
            nice |= strcmp(w[i], "nice") == 0 || strcmp(w[i], "meet") == 0;
        }
        correct = 0.5 * name + 0.2 * hello + 0.3 * nice;
        break;
    }
    default: /* the word exactly twice */
        for (i = 0; i < n; i++) hits += strcmp(w[i], WORLD_WORDS[t->a]) == 0;
        correct = hits == 2 ? 1.0 : hits > 0 ? 0.4 : 0.0;
        break;
    }
    extra = n - ng;
    s = correct - (extra > 0 ? 0.1 * extra : 0.0);
    return s < 0.0 ? 0.0 : s > 1.0 ? 1.0 : s;
}

#endif /* RLHF_WORLD_H */
