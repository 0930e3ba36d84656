/* 05_ppo.c - PPO with a KL penalty.

   Teaches: the PPO loop of InstructGPT step 3 (eq. 2):
       maximise E[ r(x, y) - beta * log(pi(y|x) / pi_ref(y|x)) ]
   rollouts with the KV cache, per-token KL rewards, GAE, the clipped
   surrogate and value losses, and the per-token trace that shows each.
   The reward here is a known function of the reply (how often it says
   "yes"), so you can watch it rise while KL to the reference stays bounded.

   Usage: ex05 [iterations] [out_dir]   (defaults 30, build/examples):
          writes ex05_prompts.jsonl into out_dir
       cc -O2 examples/05_ppo.c -lm -o ex05 && ./ex05 [iterations] [out_dir] */
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include "out_dir.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float count_yes(void *user, const int *prompt, int n_prompt, const int *response, int n_response) {
    int i, c = 0, yes = *(const int *)user;
    (void)prompt; (void)n_prompt;
    for (i = 0; i < n_response; i++) c += response[i] == yes;
    return (float)c;
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 30, i, yes;
    static const char corpus[] = "yes no maybe. is it so? yes. no. maybe yes, maybe no. ask me: yes or no? ";
    rlhf_tokenizer *t;
    rlhf_model *policy, *ref, *critic;
    rlhf_dataset *prompts;
    rlhf_ppo *ppo;
    rlhf_ppo_config c = rlhf_ppo_config_default();
    rlhf_ppo_stats st;
    rlhf_error err;
    rlhf_config cfg;
    size_t n;
    char path[600];
    FILE *f = out_open(argc > 2 ? argv[2] : OUT_DIR_DEFAULT, "ex05_prompts.jsonl", path, sizeof path);

    if (!f) return 1;
    fprintf(f, "{\"prompt\": \"ask me\"}\n{\"prompt\": \"is it so?\"}\n");
    fclose(f);
    if (rlhf_tokenizer_train(&t, corpus, strlen(corpus), 280, &err) != RLHF_OK ||
        rlhf_dataset_load(&prompts, path, RLHF_DATA_PROMPTS, NULL, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    rlhf_tokenizer_encode(t, " yes", 4, &yes, 1, &n);

    /* policy and reference start equal (here: random; in practice the SFT model);
       the critic has a scalar head (in practice: the reward model's weights) */
    cfg.vocab_size = rlhf_tokenizer_vocab_size(t);
    cfg.n_ctx = 32;
    cfg.n_layer = 2;
    cfg.n_head = 2;
    cfg.n_embd = 32;
    if (rlhf_model_create(&policy, &cfg, 7) != RLHF_OK || rlhf_model_create(&ref, &cfg, 7) != RLHF_OK ||
        rlhf_model_create(&critic, &cfg, 8) != RLHF_OK || rlhf_model_add_score_head(critic, 0.0f, 9) != RLHF_OK)
        return 1;

    c.batch_size = 32;
    c.mini_batch = 8;
    c.ppo_epochs = 2;
    c.max_new_tokens = 8;
    c.sampling.temperature = 1.0f;
    c.penalize_missing_eos = 0;
    c.kl_coef = 0.2f;            /* the optimum pi* ~ pi_ref * exp(r / beta) keeps KL finite */
    c.policy_opt.lr = 1e-2f;     /* tiny models take large steps */
    c.critic_opt.lr = 1e-2f;
    c.log_samples = 0;
    c.policy = policy, c.ref = ref, c.critic = critic; /* no reward model: count_yes scores */
    c.score_fn = count_yes, c.score_user = &yes, c.tokenizer = t, c.prompts = prompts;
    if (rlhf_ppo_create(&ppo, &c, &err) != RLHF_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("iteration  reward(\"yes\" count)  KL to reference\n");
    for (i = 0; i < iters; i++) {
        if (rlhf_ppo_step(ppo, &st, &err) != RLHF_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        if (i % 5 == 4 || i == iters - 1) printf("%9ld  %19.2f  %15.2f\n", st.iteration, (double)st.score, (double)st.kl);
    }
    {   /* one episode, token by token: every column is one of PPO's equations */
        char table[8192];
        size_t nb;
        if (rlhf_ppo_trace_text(ppo, 0, table, sizeof table, &nb) == RLHF_OK) printf("\n%s", table);
    }
    rlhf_ppo_free(ppo);
    rlhf_model_free(policy);
    rlhf_model_free(ref);
    rlhf_model_free(critic);
    rlhf_dataset_free(prompts);
    rlhf_tokenizer_free(t);
    return 0;
}
