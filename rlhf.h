/* rlhf.h - v0.8.0 - InstructGPT's RLHF pipeline for tiny GPT-2 models on a CPU.
   A single-header C99 library: libc, libm, optional OpenMP. No other dependency.

   Do this:
       #define RLHF_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the
   implementation. Every other file includes it without the #define.

   CONTENTS (grep -n '^// >>' rlhf.h prints the map of the implementation)
       >>config     version, options, result codes, allocator, log callback, RNG
       >>kernels    matmul (packed, register-tiled, SIMD), layernorm, GELU,
                    fused causal attention, softmax + cross-entropy, AdamW
       >>json       strict JSON (RFC 8259) reader, streaming JSONL reader
       >>tokenizer  byte-level BPE: GPT-2's pre-tokenizer, encode, decode,
                    training, special tokens, chat template, storage,
                    Hugging Face's tokenizer files (tokenizer.json, vocab.json)
       >>model      GPT-2: parameters, init, forward, backward, training step,
                    KV-cache decode, sampling (temperature, top-k, top-p)
       >>io         safetensors checkpoints: atomic save, strict load,
                    Hugging Face files and directories (sharded too), AdamW
                    state for resuming
       >>data       datasets: text, SFT, preference pairs, K-way rankings, prompts
       >>train      the loop every offline stage shares: schedule, micro-batches,
                    non-finite guard, validation, best/last checkpoints, resume
       >>sft        supervised fine-tuning and pretraining: the loss, examples,
                    packing (InstructGPT step 1)
       >>reward     the reward model: ranking loss (eq. 1), its stage of the
                    loop, scoring, normalisation (InstructGPT step 2)
       >>ppo        PPO with the KL penalty (InstructGPT step 3, eq. 2, PPO-ptx):
                    rollout, evaluate, advantages (GAE), learn (clipped losses),
                    KL control, resume, trace; the same trainer runs GRPO and RLOO
       >>dpo        DPO and its variants (cDPO, IPO, hinge, SimPO): the losses
                    and their stage of the loop
       >>kto        KTO on unpaired labels: the loss and its stage
       >>bon        best-of-N and rejection sampling; several rewards as one
       >>grpo       group advantages (GRPO, Dr. GRPO, RLOO) and the losses of
                    GRPO (DAPO, Dr. GRPO aggregations, clip-higher) and RLOO

   QUICK START (compiles as is)

       #define RLHF_IMPLEMENTATION
       #include "rlhf.h"
       #include <stdio.h>
       int main(void) {
           rlhf_config cfg = rlhf_config_default();        // a tiny GPT-2
           rlhf_model *m;
           if (rlhf_model_create(&m, &cfg, 42) != RLHF_OK) return 1;
           int x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8] = {2, 3, 4, 5, 6, 7, 8, 9};
           rlhf_adamw_config opt = rlhf_adamw_config_default();
           for (int step = 0; step < 50; step++) {
               float loss;
               rlhf_result r = rlhf_model_train_step(m, x, y, 1, 8, &opt, &loss);
               if (r != RLHF_OK) { printf("%s\n", rlhf_model_last_error(m)); return 1; }
               if (step % 10 == 0) printf("step %d loss %.4f\n", step, loss);
           }
           rlhf_model_free(m);
           return 0;
       }

   COMPILE-TIME OPTIONS (#define before the #include that has RLHF_IMPLEMENTATION)
       RLHF_STATIC            make every function static (file-private library).
       RLHF_NO_SIMD           use only the scalar reference kernels. Default: the
                              AVX2+FMA path when the compiler targets it
                              (__AVX2__ && __FMA__, e.g. -march=native; with
                              __AVX512F__ too, the matmul's micro-kernel, the
                              matrix-vector path and GELU take 16-lane AVX-512
                              registers), the NEON
                              path on AArch64 (__aarch64__ && __ARM_NEON), else scalar.
       RLHF_MALLOC(size) / RLHF_FREE(ptr)
                              your allocator; define both or neither (an #error
                              says so). Default malloc/free, and on Linux the
                              parameter blocks (weights, gradients, AdamW
                              moments) of 32 MiB and more ask for transparent
                              huge pages
                              (madvise; declared by the C library with
                              _DEFAULT_SOURCE or _GNU_SOURCE defined before any
                              #include, as in gcc's default gnu modes and C++;
                              without them the advice is skipped).
       RLHF_ASSERT(x)         checks of programmer errors only (never of input
                              data). Default assert().
       OpenMP                 compile with -fopenmp to run the kernels' outer loops
                              on several threads (OMP_NUM_THREADS, or
                              rlhf_set_num_threads); fewer while another program
                              keeps a CPU busy (rlhf_threads_in_use). Without it the
                              library is single-threaded and warning-free.

   CONCEPTS
       Notation, used in every comment: B batch, T sequence length, C channels
       (n_embd), V vocabulary, L layers, NH heads, hs = C/NH head size,
       BT = B*T rows. All tensors are fp32, row-major, the last dimension
       contiguous: "(B,T,C)" means element [b][t][c] is at ((b*T)+t)*C + c.
       Weights use Hugging Face GPT-2 names and layouts (Conv1D weights are
       stored [in, out]), so a tensor moves 1:1 between rlhf.h and PyTorch.
       Token ids are int; a target of -1 is ignored by the loss.

       RL notation (>>ppo): an episode b is a prompt of P_b tokens and a
       response of n_b tokens, at most max_new; Pmax and Nmax are the longest
       of a rollout, whose rows are (B, T = Pmax + Nmax). Per response token
       t: KL_t (the penalty's estimate), r_t (reward), V_t (the critic's
       value), A_t (advantage), R_t = A_t + V_t (return). beta is the KL
       coefficient, gamma and lambda GAE's, eps the clip range.

       Calls follow one convention:
         - the object first (the model, cache, trainer), then the inputs in
           the order (inputs, targets, doc_start), then the shape (B, T),
           then options, then outputs;
         - a creator takes a config struct: rlhf_X_create(&out, &config, ...),
           the config from rlhf_X_config_default() with your changes;
         - a name ending in _ex is the full form of the call without it:
           every option, and rlhf_error *err as the last argument;
         - an argument declared const is never written, not even an error
           buffer inside it.

       Ownership: every object made by rlhf_X_create is freed by rlhf_X_free.
       Pointers you pass in stay yours; the library never keeps them after
       the call returns. rlhf_model_tensor() hands out pointers into the
       model's memory, valid until the model is freed.

       Memory: parameters live in one allocation; gradients and AdamW moments
       in two more, made on the first training call. Training activations
       (every layer's forward caches) are sized by rlhf_model_reserve(m, B, T,
       1) for the largest batch you will use (or on the first call with a
       larger shape); forward passes without targets (logits only) use one
       layer's scratch instead, sized by rlhf_model_reserve(m, B, T, 0). A
       call whose shape fits what is reserved never allocates.
       rlhf_model_set_recompute(m, 1) keeps only each layer's input instead
       and runs the layers' forwards again in the backward: several times
       less activation memory for about one more forward per step.
       rlhf_config_memory() reports the budget in bytes, with and without
       recompute, before anything is allocated.

   THREAD SAFETY
       No global mutable state. Distinct objects may be used from distinct
       threads at the same time. One object (a model, a cache, a sampler) must
       not be used by two threads at once: a model's forward pass writes its
       activation buffers. An rlhf_rng belongs to whoever holds it.

   DETERMINISM
       Same seed, same build, same inputs: bitwise-identical results. Every
       reduction has a fixed order that does not depend on the thread count
       (matmuls split output tiles, never the K sum; sums over rows are split
       by channel; the gradient norm sums fixed chunks in a fixed order), so a
       build also gives identical bytes on 1 or N OpenMP threads. The SIMD and
       scalar builds differ in the last bits (FMA vs separate multiply-add).

   ERRORS
       Functions return rlhf_result: RLHF_OK (0) or a negative code;
       rlhf_result_string(r) names it. The one-line message saying what and
       where goes to the rlhf_error *err of a call that takes one (the _ex
       forms, loaders, the training stages, PPO); a call that takes a model
       it may write (not const) also leaves the message in the model
       (rlhf_model_last_error) and passes it to the log callback installed
       with rlhf_model_set_log. The training stages and PPO report progress
       and warnings through their options' log callback. The library never
       prints, never calls exit() and never asserts on data you pass in.

   WHAT rlhf.h DOES NOT DO
       No GPU, no fp16/bf16 compute (F16/BF16 checkpoints are converted to
       F32 on load), no dropout (RLHF runs without it), no multi-process
       training, no models other than GPT-2's architecture. The KV cache
       advances all of its sequences by one position per call (prompts of
       different lengths are left-padded: rlhf_model_prefill_padded). Checkpoint
       writes are atomic on POSIX and on Windows (MoveFileExA replaces the
       target in one step); rlhf_model_export_hf needs POSIX. Files over
       2 GiB need a 64-bit `long` (ftell): not on Windows, not on 32-bit
       systems (where the reader says it cannot determine the size). On
       32-bit glibc build with -D_FILE_OFFSET_BITS=64: without it, listing
       a directory fails on file systems with 64-bit inode numbers.

   VERSION HISTORY
       0.8.0  beyond PPO, and speed. DPO (rlhf_dpo_loss, rlhf_dpo_train:
              sigmoid, cDPO, IPO, hinge, SimPO without a reference), KTO on
              unpaired labels (rlhf_kto_loss, rlhf_kto_train), best-of-N
              (rlhf_best_of_n), GRPO (Dr. GRPO, DAPO's and bnpo's losses,
              clip-higher, batch scaling) and RLOO in the PPO trainer
              (rlhf_ppo_config.estimator, group_size, scale_rewards,
              loss_agg, cliprange_high; no critic; no reference at beta 0;
              rlhf_group_advantages, rlhf_grpo_loss, rlhf_rloo_loss), several
              rewards as one (rlhf_reward_mix); a reply whose score is not
              finite is left out (advantage 0) with a warning, in PPO too.
              Speed: a matmul team that adapts to a busy CPU, packed panels
              per thread, attention's backward in blocks of queries, decode
              prefetching. rlhf_ppo_save's state names the algorithm (a
              0.7 state reads as PPO's).
       0.7.0  real checkpoints and real data. Hugging Face GPT-2 directories
              load (rlhf_model_load_ex on a directory, sharded or not;
              rlhf_tokenizer_load_hf: tokenizer.json, vocab.json + merges.txt,
              encoder.json + vocab.bpe) and export (rlhf_model_export_hf: a
              GPT2LMHeadModel, or a GPT2ForSequenceClassification with
              rlhf_score_offset, F32/BF16/F16, the chat template as Jinja).
              HH-RLHF's plain template for base models
              (rlhf_tokenizer_set_template; rlhf_tokenizer_reply_end is the
              stop token of either template). TRL's conversational formats,
              unpaired preference (RLHF_DATA_UNPAIRED), HH-RLHF transcripts
              split into turns (rlhf_response_encode). Long records, one rule
              (rlhf_fit_cut and the _fit encoders, rlhf_reward_score_record,
              rlhf_reward_normalize_ex, rlhf_train_report.fit): prompts cut
              from the left at a turn start, responses never cut, records
              that cannot fit skipped and counted. CLI: rlhf export,
              --tokenizer forms, --template, --max-len, --no-normalize (sft
              and rm lose --seq-len, which pretrain keeps; --normalize-samples
              0 no longer turns normalisation off).
       0.6.0  one training loop (>>train) under SFT, pretraining and the
              reward model; PPO in the paper's order, eq. 2 written out, the
              KL controller public (rlhf_kl_control); the GPT-2 block written
              once. API: rlhf_ppo_create takes its models and data in
              rlhf_ppo_config; rlhf_model_forward_logprobs is now
              rlhf_model_logprobs(m, inputs, targets, doc_start, ...) (the
              old name is gone so that an old call fails to compile rather
              than swap two arguments); rlhf_model_save_ex gains
              rlhf_error *err and no longer writes into its const model;
              rlhf_ppo_save takes a non-const trainer (it writes metadata
              into the models). Numbers are unchanged bit for bit. PPO warns
              when most replies of an iteration end without <|end|>
              (val/missing_eos_frac). rlhf_model_resize_vocab grows a trained
              model's vocabulary (new rows at the mean of the old ones).
       0.5.1  training loops stop between steps on request (should_stop,
              RLHF_ERR_INTERRUPTED) with a resumable checkpoint; non-finite
              weights are never checkpointed; PPO's files saved as one unit
              (journaled); a UTF-8 BOM is skipped; atomic tokenizer save.
       0.5.0  PPO: batched rollouts (left-padded KV cache), log-prob pass,
              KL-penalised rewards, GAE, clipped losses, PPO-ptx, EMA,
              adaptive KL, guards, TRL metrics, bit-exact resume, trace.
       0.4.0  SFT and pretraining loop, reward model (scalar head, eq. 1,
              normalisation, scoring), document starts (left padding, packing).
       0.3.0  tokenizer: byte-level BPE, GPT-2's files, training, chat template.
       0.2.0  formats: JSON/JSONL reader, safetensors checkpoints, datasets.
       0.1.0  engine: kernels, GPT-2 forward/backward, AdamW, KV-cache decode,
              sampling.

   LICENSE: MIT, at the end of this file.
*/
#ifndef RLHF_H
#define RLHF_H

#define RLHF_VERSION_MAJOR 0
#define RLHF_VERSION_MINOR 8
#define RLHF_VERSION_PATCH 0
#define RLHF_VERSION_STRING "0.8.0"

#include <stddef.h>
#include <stdint.h>

#ifdef RLHF_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define RLHFDEF static __attribute__((unused))
#else
#define RLHFDEF static
#endif
#else
#define RLHFDEF extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------
   Result codes: one X-macro list gives the enum and the messages.
   X(name, value, message) */
#define RLHF_RESULT_LIST(X)                                                          \
    X(RLHF_OK, 0, "ok")                                                              \
    X(RLHF_ERR_INVALID_ARGUMENT, -1, "invalid argument")                             \
    X(RLHF_ERR_OUT_OF_MEMORY, -2, "out of memory")                                   \
    X(RLHF_ERR_SIZE_OVERFLOW, -3, "size computation overflows")                      \
    X(RLHF_ERR_BAD_TOKEN, -4, "token id out of range")                               \
    X(RLHF_ERR_NO_TARGETS, -5, "no target other than -1 in the batch")               \
    X(RLHF_ERR_NON_FINITE, -6, "loss, gradient norm or weights not finite")          \
    X(RLHF_ERR_CONTEXT_FULL, -7, "sequence longer than the model's context")         \
    X(RLHF_ERR_STATE, -8, "call out of order")                                       \
    X(RLHF_ERR_IO, -9, "cannot read or write a file")                                \
    X(RLHF_ERR_PARSE, -10, "malformed input")                                        \
    X(RLHF_ERR_TOO_LARGE, -11, "input exceeds a limit")                              \
    X(RLHF_ERR_INTERRUPTED, -12, "stopped by the caller")

typedef enum rlhf_result {
#define RLHF__ENUM_ITEM(name, value, message) name = value,
    RLHF_RESULT_LIST(RLHF__ENUM_ITEM)
#undef RLHF__ENUM_ITEM
    RLHF_RESULT_END_ /* not a result; keeps the list's trailing comma legal */
} rlhf_result;

/* The message of a result code ("unknown result" for a value not in the list). */
RLHFDEF const char *rlhf_result_string(rlhf_result r);

/* Log callback: level, and one line of text without a trailing newline.
   `user` is the pointer you gave with it. Called from the caller's thread. */
typedef enum rlhf_log_level { RLHF_LOG_ERROR = 0, RLHF_LOG_WARN = 1, RLHF_LOG_INFO = 2 } rlhf_log_level;
typedef void (*rlhf_log_fn)(void *user, rlhf_log_level level, const char *message);

/* ---------------------------------------------------------------------------
   Random numbers: xoshiro256** with explicit state (seed it with
   rlhf_rng_seed; copy the struct to save and restore a stream). */
typedef struct rlhf_rng { uint64_t s[4]; } rlhf_rng;
RLHFDEF void     rlhf_rng_seed(rlhf_rng *rng, uint64_t seed);
RLHFDEF uint64_t rlhf_rng_u64(rlhf_rng *rng);
RLHFDEF float    rlhf_rng_float(rlhf_rng *rng);   /* uniform in [0, 1), 24 bits */
RLHFDEF float    rlhf_rng_normal(rlhf_rng *rng);  /* N(0, 1), Box-Muller, no cached spare */

/* ---------------------------------------------------------------------------
   Model configuration (GPT-2). n_embd must be divisible by n_head. */
typedef struct rlhf_config {
    int vocab_size; /* V */
    int n_ctx;      /* maximum sequence length (rows of wpe) */
    int n_layer;    /* L */
    int n_head;     /* NH */
    int n_embd;     /* C */
} rlhf_config;

/* A tiny model that trains in seconds: V 512, n_ctx 128, L 4, NH 4, C 128. */
RLHFDEF rlhf_config rlhf_config_default(void);
/* The shape of GPT-2 124M: V 50257, n_ctx 1024, L 12, NH 12, C 768. */
RLHFDEF rlhf_config rlhf_config_gpt2_124m(void);

/* AdamW as torch.optim.AdamW, with nanoGPT's parameter groups: weight decay
   on tensors with 2 or more dimensions only (embeddings and matmul weights),
   never on biases or LayerNorm parameters. grad_clip > 0 clips the global
   gradient 2-norm as torch.nn.utils.clip_grad_norm_ does; <= 0 turns it off. */
typedef struct rlhf_adamw_config {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
} rlhf_adamw_config;
/* lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1, clip 1.0 (nanoGPT's
   GPT-2 recipe; lr is for tiny models, InstructGPT's fine-tuning used ~1e-5). */
RLHFDEF rlhf_adamw_config rlhf_adamw_config_default(void);

/* ---------------------------------------------------------------------------
   The model. */
typedef struct rlhf_model rlhf_model;

/* One parameter tensor under its Hugging Face GPT-2 name ("wte.weight",
   "h.0.attn.c_attn.weight", ...). data and grad point into the model (grad is
   NULL until training memory exists); valid until the model is freed. */
typedef struct rlhf_tensor_info {
    const char *name;
    int ndim;          /* 1 or 2 */
    int shape[2];      /* shape[1] is 0 when ndim is 1 */
    size_t numel;
    float *data;
    float *grad;
    int weight_decay;  /* 1 when AdamW decays it (ndim >= 2) */
} rlhf_tensor_info;

/* Memory a model needs, in bytes. */
typedef struct rlhf_memory {
    size_t params;       /* weights */
    size_t grads;        /* gradients (training only) */
    size_t optimizer;    /* AdamW m and v (training only) */
    size_t activations;  /* forward caches for (B,T) */
    size_t backward;     /* backward scratch for (B,T) (training only) */
    size_t workspace;    /* matmul packing buffers */
    size_t total;
    /* the same training with activation recompute on (rlhf_model_set_recompute): the forward keeps
       each layer's input and one layer's caches, so activations_recompute replaces activations
       (forward passes only: equal to activations and total) */
    size_t activations_recompute;
    size_t total_recompute;
} rlhf_memory;

/* Create a GPT-2 with GPT-2's init: N(0, 0.02) weights, residual output
   projections (attn.c_proj, mlp.c_proj) N(0, 0.02/sqrt(2L)), zero biases,
   LayerNorm weight 1 and bias 0. Same seed, same weights on every platform.
   *out receives the model, or NULL on failure. */
RLHFDEF rlhf_result rlhf_model_create(rlhf_model **out, const rlhf_config *cfg, uint64_t seed);
RLHFDEF void        rlhf_model_free(rlhf_model *m);
RLHFDEF const rlhf_config *rlhf_model_config(const rlhf_model *m);
/* Install a log callback (NULL removes it). */
RLHFDEF void        rlhf_model_set_log(rlhf_model *m, rlhf_log_fn fn, void *user);
/* The message of the last failed call on m ("" if none). */
RLHFDEF const char *rlhf_model_last_error(const rlhf_model *m);
RLHFDEF size_t      rlhf_model_num_params(const rlhf_model *m);
RLHFDEF int         rlhf_model_num_tensors(const rlhf_model *m);
/* Describe tensor i (0 <= i < rlhf_model_num_tensors), in Hugging Face order. */
RLHFDEF rlhf_result rlhf_model_tensor(rlhf_model *m, int i, rlhf_tensor_info *out);
/* Find a tensor by its Hugging Face name. */
RLHFDEF rlhf_result rlhf_model_find_tensor(rlhf_model *m, const char *name, rlhf_tensor_info *out);

/* The memory budget of a model of config cfg for training on (B,T) batches
   (training != 0) or for forward passes only (training == 0), with and
   without activation recompute (activations and total, activations_recompute
   and total_recompute). Allocates nothing, so it can be printed before
   anything is built. */
RLHFDEF rlhf_result rlhf_config_memory(const rlhf_config *cfg, int B, int T, int training, rlhf_memory *out);
/* Parameters of a model of config cfg (0 if the config is invalid). */
RLHFDEF size_t      rlhf_config_num_params(const rlhf_config *cfg);
/* rlhf_config_memory for m's config. */
RLHFDEF rlhf_result rlhf_model_memory(const rlhf_model *m, int B, int T, int training, rlhf_memory *out);
/* training != 0: allocate the forward caches for batches up to (B,T)
   (rlhf_memory.activations, or activations_recompute when m recomputes),
   gradients, AdamW moments and backward scratch; a later training call whose
   B*T and B*T*T are no larger never allocates. training == 0: allocate the
   (much smaller) scratch of forward passes without targets (logits only),
   which keep no per-layer caches; a later one with B*T no larger never
   allocates. */
RLHFDEF rlhf_result rlhf_model_reserve(rlhf_model *m, int B, int T, int training);
/* Activation recompute (activation checkpointing; Chen et al. 2016, "Training
   Deep Nets with Sublinear Memory Cost"), off by default. on != 0: the caching
   forward passes (with targets, forward_values and logprobs for a backward)
   keep only each layer's input, (L+1) x (B,T,C), and one layer's caches; each
   backward runs every layer's forward again, from its input, just before the
   layer's backward (the last layer's caches are still there). The attention
   probabilities, (B,NH,T,T) per layer, were most of the caches at long T: on
   GPT-2 124M at B 4, T 1024 the activations drop from 5.3 GiB to 1.3 GiB
   (the logits, B*T*V, are most of what is left). The cost: one more forward
   of L-1 layers per backward, 22% more FLOPs per training step there. Gradients
   are identical, bit for bit (the same kernels on the same inputs, in the same
   order). Changing the setting drops the activation buffers (reserve again);
   a forward waiting for its backward must be run again. */
RLHFDEF rlhf_result rlhf_model_set_recompute(rlhf_model *m, int on);
RLHFDEF int         rlhf_model_recompute(const rlhf_model *m);

/* Forward pass on inputs (B,T). With targets (B,T) (entries in [0,V) or -1),
   *loss receives the mean cross-entropy over targets != -1 and the pass is
   ready for rlhf_model_backward. targets and loss may be NULL (then nothing
   to backpropagate). logits (B,T,V) may be NULL; if given, receives them. */
RLHFDEF rlhf_result rlhf_model_forward(rlhf_model *m, const int *inputs, const int *targets,
                                       int B, int T, float *logits, float *loss);
/* Set every gradient to 0. */
RLHFDEF rlhf_result rlhf_model_zero_grad(rlhf_model *m);
/* Backpropagate the loss of the last forward with targets, ADDING into the
   gradients (so several calls accumulate). */
RLHFDEF rlhf_result rlhf_model_backward(rlhf_model *m);
/* Clip (if opt->grad_clip > 0) and apply one AdamW step to every parameter.
   *grad_norm (may be NULL) receives the norm before clipping. If the norm is
   not finite nothing changes and RLHF_ERR_NON_FINITE is returned. */
RLHFDEF rlhf_result rlhf_model_adamw_update(rlhf_model *m, const rlhf_adamw_config *opt, float *grad_norm);
/* Number of AdamW updates applied so far (bias correction uses step + 1). */
RLHFDEF long        rlhf_model_adamw_steps(const rlhf_model *m);

/* One optimisation step on a (B,T) batch: forward, mean cross-entropy over
   targets != -1, backward, AdamW update (torch.optim.AdamW semantics, bias
   correction, decoupled weight decay on tensors with 2 or more dimensions
   only). *loss receives the loss before the update. */
RLHFDEF rlhf_result rlhf_model_train_step(rlhf_model *m, const int *inputs, const int *targets,
                                          int B, int T, const rlhf_adamw_config *opt, float *loss);
/* Forward only: logits (B,T,V) for inputs, row-major, into caller memory. */
RLHFDEF rlhf_result rlhf_model_logits(rlhf_model *m, const int *inputs, int B, int T, float *logits);

/* Documents in a batch. doc_start (B,T): for token t of row b, the index in
   its row where its document begins (0 <= doc_start[b,t] <= t). The token
   attends only to positions doc_start[b,t]..t, and its position embedding
   is wpe[t - doc_start[b,t]]. So one row can hold:
     left padding   P pad tokens, then a sequence: doc_start = t for t < P
                    (each pad token alone), P for t >= P; the sequence gets
                    exactly the outputs it would get unpadded;
     packing        several examples back to back, none seeing another.
   doc_start NULL: every row is one document from position 0 (right padding
   needs nothing: causal attention never looks ahead). rlhf_doc_left_pad
   fills doc_start for left padding. Otherwise as rlhf_model_forward. */
RLHFDEF rlhf_result rlhf_model_forward_docs(rlhf_model *m, const int *inputs, const int *targets, const int *doc_start,
                                            int B, int T, float *logits, float *loss);
RLHFDEF void        rlhf_doc_left_pad(int *doc_start, const int *n_pad, int B, int T);

/* The scalar head: reward and value models (InstructGPT's RM; a PPO critic).
   score.weight [1, C] and score.bias [1] read the final LayerNorm output:
   value[b,t] = ln_f(h[b,t]) . score.weight + score.bias, at every position.
   add_score_head adds them to a model (from a base or SFT checkpoint):
   weight ~ N(0, init_std), bias 0; init_std < 0 means 1/sqrt(C + 1)
   ("The N implementation details of RLHF", item 6; 0 for a value head).
   A checkpoint with score.* loads with its head; the LM head stays usable. */
RLHFDEF rlhf_result rlhf_model_add_score_head(rlhf_model *m, float init_std, uint64_t seed);
RLHFDEF int         rlhf_model_has_score_head(const rlhf_model *m);
/* Grow the vocabulary to vocab_size tokens (special tokens added to a
   trained model: chat markers, a pad token). wte gains rows V .. vocab_size-1,
   each the mean of the existing rows (Hugging Face's resize with mean
   initialisation); the LM head is tied to wte, so every old token's logit
   stays as it was. The new rows' AdamW moments start at 0 and the step count
   is kept; activations are dropped (reserve again), and a KV cache made for
   the old size is refused by decode. Shrinking is refused. */
RLHFDEF rlhf_result rlhf_model_resize_vocab(rlhf_model *m, int vocab_size);
/* values (B,T) for inputs (B,T); doc_start as rlhf_model_forward_docs (may be
   NULL). for_backward != 0 keeps every layer's caches (training memory; with
   recompute, every layer's input) so rlhf_model_backward_values can follow;
   0 uses the small inference scratch. */
RLHFDEF rlhf_result rlhf_model_forward_values(rlhf_model *m, const int *inputs, const int *doc_start, int B, int T,
                                              float *values, int for_backward);
/* Backpropagate d loss / d values (B,T) of the last forward_values, ADDING
   into the gradients. Positions you do not use get 0. */
RLHFDEF rlhf_result rlhf_model_backward_values(rlhf_model *m, const float *dvalues);

/* Log-probabilities for PPO: logp (B,T) = log softmax(logits / temperature)
   at targets[b,t] (the token that follows; rows with target -1 get 0), and,
   if entropy is not NULL, the entropy of that distribution. doc_start as
   rlhf_model_forward_docs (may be NULL). for_backward != 0: then
   rlhf_model_backward_logprobs(m, dlogp, dentropy) ADDS the gradients of
   sum dlogp*logp + dentropy*entropy (dentropy may be NULL). Training memory.
   (0.5 called this rlhf_model_forward_logprobs with doc_start before
   targets; the name is gone so that an old call fails to compile instead of
   swapping the two silently.) */
RLHFDEF rlhf_result rlhf_model_logprobs(rlhf_model *m, const int *inputs, const int *targets, const int *doc_start,
                                        int B, int T, float temperature, float *logp, float *entropy, int for_backward);
RLHFDEF rlhf_result rlhf_model_backward_logprobs(rlhf_model *m, const float *dlogp, const float *dentropy);

/* ---------------------------------------------------------------------------
   KV cache and decoding: n_seq sequences advanced together, one token each
   per call, up to max_len positions (<= n_ctx). Each decode step costs one
   matrix-vector pass over the weights for all n_seq sequences. */
typedef struct rlhf_kv_cache rlhf_kv_cache;
RLHFDEF rlhf_result rlhf_kv_cache_create(rlhf_kv_cache **out, const rlhf_model *m, int n_seq, int max_len);
RLHFDEF void        rlhf_kv_cache_free(rlhf_kv_cache *c);
RLHFDEF void        rlhf_kv_cache_reset(rlhf_kv_cache *c);   /* back to length 0 */
RLHFDEF int         rlhf_kv_cache_length(const rlhf_kv_cache *c);
/* Feed tokens[n_seq] at position rlhf_kv_cache_length(c); logits (n_seq,V)
   receive the next-token logits of each sequence. The cache must have been
   made for a model of the same config. */
RLHFDEF rlhf_result rlhf_model_decode(rlhf_model *m, rlhf_kv_cache *c, const int *tokens, float *logits);
/* Fill an empty cache with prompts tokens (n_seq, T) in one forward pass
   (matrix-matrix, much faster than T decode steps); logits (n_seq, V), may be
   NULL, receive the next-token logits after the last prompt token. */
RLHFDEF rlhf_result rlhf_model_prefill(rlhf_model *m, rlhf_kv_cache *c, const int *tokens, int T, float *logits);
/* The same for prompts of different lengths, left-padded to T: row s starts
   with n_pad[s] padding tokens (0 <= n_pad[s] < T), which are masked and do
   not count as positions, now and in every later decode step. So each
   sequence decodes exactly as it would alone, and all advance together. */
RLHFDEF rlhf_result rlhf_model_prefill_padded(rlhf_model *m, rlhf_kv_cache *c, const int *tokens, const int *n_pad,
                                              int T, float *logits);

/* ---------------------------------------------------------------------------
   Sampling. temperature 0 is greedy (argmax, lowest id on ties). top_k 0 is
   off; otherwise only the k most likely tokens are kept. top_p 1 is off;
   otherwise the smallest set of most likely tokens whose probability reaches
   top_p is kept. Applied in Hugging Face's order: temperature, top-k, top-p. */
typedef struct rlhf_sampler_config { float temperature; int top_k; float top_p; } rlhf_sampler_config;
/* temperature 1, top_k 0 (off), top_p 1 (off): sampling from the model itself. */
RLHFDEF rlhf_sampler_config rlhf_sampler_config_default(void);
typedef struct rlhf_sampler rlhf_sampler;
RLHFDEF rlhf_result rlhf_sampler_create(rlhf_sampler **out, int vocab_size, const rlhf_sampler_config *cfg);
RLHFDEF void        rlhf_sampler_free(rlhf_sampler *s);
/* Draw a token id from logits (V); uses the caller's rng (one draw, none at
   temperature 0). Returns -1 only if the logits are all NaN / -inf. */
RLHFDEF int         rlhf_sampler_sample(rlhf_sampler *s, const float *logits, rlhf_rng *rng);

/* Generate after a prompt of n_prompt tokens, with a cache made for one
   sequence (reset here): up to max_new tokens into out (room for max_new
   ids), stopping after eos (eos < 0: never) or when the cache is full.
   *n_out receives the number of tokens written. The prompt goes through
   rlhf_model_prefill. */
RLHFDEF rlhf_result rlhf_model_generate(rlhf_model *m, rlhf_kv_cache *c, rlhf_sampler *s, rlhf_rng *rng,
                                        const int *prompt, int n_prompt, int max_new, int eos,
                                        int *out, int *n_out);

/* ---------------------------------------------------------------------------
   JSON (RFC 8259), strict: UTF-8 validated, exact number grammar, no
   extensions (no comments, trailing commas, NaN, BOM), nesting limited
   without recursion. Strings keep their length, so "\u0000" is a NUL byte of
   data. A parse builds a read-only tree owned by an rlhf_json_doc. */
typedef enum rlhf_json_type {
    RLHF_JSON_NULL, RLHF_JSON_FALSE, RLHF_JSON_TRUE, RLHF_JSON_NUMBER,
    RLHF_JSON_STRING, RLHF_JSON_ARRAY, RLHF_JSON_OBJECT
} rlhf_json_type;
typedef struct rlhf_json rlhf_json;
struct rlhf_json {
    rlhf_json_type type;
    const char *str;     /* STRING: decoded UTF-8 bytes; NUMBER: the text as written. NUL-terminated. */
    size_t len;          /* STRING, NUMBER: bytes in str. ARRAY, OBJECT: number of elements. */
    double number;       /* NUMBER: its value: correctly rounded when the significant digits
                            (up to 19 kept) form an integer below 2^53 and the decimal exponent
                            is within +-22; otherwise within a few ulp */
    const char *key;     /* a member of an OBJECT: its decoded name (NUL-terminated) */
    size_t key_len;
    const rlhf_json *child; /* ARRAY, OBJECT: the first element, in document order */
    const rlhf_json *next;  /* the next element of the parent */
    size_t offset;       /* byte offset of the value in the input */
};
/* Where and why a parse failed. line and column count from 1; column is in
   bytes. message says what was expected (for JSONL: "path:line:column: ..."). */
typedef struct rlhf_json_error { size_t offset, line, column; char message[256]; } rlhf_json_error;
typedef struct rlhf_json_doc rlhf_json_doc;
#define RLHF_JSON_DEFAULT_MAX_DEPTH 512

/* Parse len bytes of text (which need not be NUL-terminated) with at most
   max_depth nested arrays/objects (<= 0: RLHF_JSON_DEFAULT_MAX_DEPTH). *out
   receives the document, or NULL on failure; err (may be NULL) the place and
   reason of a failure. The text is not referenced after the call. */
RLHFDEF rlhf_result rlhf_json_parse(rlhf_json_doc **out, const char *text, size_t len, int max_depth,
                                    rlhf_json_error *err);
RLHFDEF const rlhf_json *rlhf_json_root(const rlhf_json_doc *doc);
RLHFDEF void        rlhf_json_free(rlhf_json_doc *doc);
/* The first member of an object named key (NUL-terminated), or NULL. */
RLHFDEF const rlhf_json *rlhf_json_get(const rlhf_json *object, const char *key);
/* Element i of an array or object, or NULL. O(i). */
RLHFDEF const rlhf_json *rlhf_json_at(const rlhf_json *container, size_t i);
/* 1 and *out set if v is a number written as an integer (no fraction or
   exponent) that fits int64_t; 0 otherwise. */
RLHFDEF int         rlhf_json_int64(const rlhf_json *v, int64_t *out);

/* JSONL: one JSON value per line, streamed (the file is never loaded whole).
   Lines end in LF or CRLF; blank lines are skipped; the last line may lack
   its newline; a UTF-8 byte-order mark at the start of the file is skipped
   (columns of line 1 then count after it). A line may hold at most
   1,000,000 JSON values. */
typedef struct rlhf_jsonl rlhf_jsonl;
/* max_line_bytes <= 0: 64 MiB. A longer line is an error, not a truncation. */
RLHFDEF rlhf_result rlhf_jsonl_open(rlhf_jsonl **out, const char *path, long max_line_bytes, rlhf_json_error *err);
/* The next record: *doc receives it (free it with rlhf_json_free), or NULL
   at the end of the file (and RLHF_OK). On a malformed line, err->message is
   "path:line:column: reason" and the reader moves on to the next line, so a
   caller may count and skip bad records. */
RLHFDEF rlhf_result rlhf_jsonl_next(rlhf_jsonl *r, rlhf_json_doc **doc, rlhf_json_error *err);
/* Line number (from 1) of the record last returned. */
RLHFDEF size_t      rlhf_jsonl_line(const rlhf_jsonl *r);
RLHFDEF void        rlhf_jsonl_close(rlhf_jsonl *r);

/* ---------------------------------------------------------------------------
   Checkpoints: safetensors (Hugging Face's format), one file a whole model.
   Tensors under Hugging Face GPT-2 names, fp32 little-endian; __metadata__
   holds "config" (JSON), "rlhf.version", "optim.step" and your own
   key/value strings (rlhf_model_set_meta: the model kind, the tokenizer,
   training state). AdamW moments, when present, are the extra tensors
   "optim.m.<name>" and "optim.v.<name>", so a run resumes exactly.

   Loading accepts files written by PyTorch / Hugging Face as they come: the
   "transformer." prefix, a tied "lm_head.weight" (present or not), the old
   "h.N.attn.bias" / "h.N.attn.masked_bias" buffers (ignored), F16 and BF16
   (converted to F32), and a config.json beside the file when the metadata
   has no config. Reading is strict (the reference reader's rules, plus
   duplicate names rejected, plus every shape checked against the config);
   every length is checked against the bytes that are really there. Writing
   is atomic: a temporary file in the same directory, flushed and fsync'ed
   (POSIX), then renamed over the target: the path holds the old file or
   the new one, never a mix. */
typedef struct rlhf_error { char message[512]; } rlhf_error;
/* Load a model (stable entry point; on failure *out is NULL). */
RLHFDEF rlhf_result rlhf_model_load(rlhf_model **out, const char *path);
/* The same, with the reason of a failure in err (may be NULL): the file,
   the tensor or field, and what was expected. path may also be a Hugging
   Face model directory: config.json with model.safetensors, or with a
   sharded model.safetensors.index.json whose "weight_map" names the shard
   (a file in the directory) of each tensor. Each shard is read as strictly
   as one file; a tensor of a shard that the map puts elsewhere or leaves
   out, a mapped tensor its shard lacks, a tensor of the model in no shard or
   in two, and a missing shard are errors that name it. A directory with
   only pytorch_model.bin is refused (pickles are not read: convert with
   transformers' save_pretrained(DIR, safe_serialization=True)). The
   directory's tokenizer is not loaded here: rlhf_tokenizer_load_hf(DIR). */
RLHFDEF rlhf_result rlhf_model_load_ex(rlhf_model **out, const char *path, rlhf_error *err);
/* Save (stable entry point): weights, config, metadata, and the AdamW state
   when the model has one. The model is const and is not written: the
   reason of a failure comes back through rlhf_model_save_ex's err. */
RLHFDEF rlhf_result rlhf_model_save(const rlhf_model *m, const char *path);
#define RLHF_SAVE_WEIGHTS_ONLY 1 /* flag: leave the AdamW state out */
/* The same with flags (0 or RLHF_SAVE_WEIGHTS_ONLY) and the reason of a
   failure in err (may be NULL): the path and what went wrong. */
RLHFDEF rlhf_result rlhf_model_save_ex(const rlhf_model *m, const char *path, int flags, rlhf_error *err);
/* Set (or, with value NULL, remove) a metadata string saved with the model.
   Keys and values are UTF-8; "format", "config", "optim.step" and keys
   starting with "rlhf." are the library's. */
RLHFDEF rlhf_result rlhf_model_set_meta(rlhf_model *m, const char *key, const char *value);
/* The value of a metadata key, or NULL. Valid until the key is set again. */
RLHFDEF const char *rlhf_model_meta(const rlhf_model *m, const char *key);

/* ---------------------------------------------------------------------------
   Datasets: JSONL records with TRL's field names, parsed into typed records.
   Standard forms hold strings (s); TRL's conversational forms hold lists of
   messages (m: [{"role": "system"|"user"|"assistant", "content": s}, ...]).
     RLHF_DATA_TEXT        plain UTF-8 text (any path not ending in .jsonl:
                           the whole file, without a byte-order mark, is one
                           record) or {"text": s}
                             {"text": "The cat sat."}
     RLHF_DATA_SFT         prompt-completion, standard or conversational (the
                           completion's assistant turns are learned), or a
                           conversation with at least one assistant turn
                             {"prompt": "2+3?", "completion": " 5"}
                             {"prompt": [{"role": "user", "content": "2+3?"}],
                              "completion": [{"role": "assistant", "content": "5"}]}
                             {"messages": [{"role": "user", "content": "2+3?"},
                                           {"role": "assistant", "content": "5"}]}
     RLHF_DATA_PREFERENCE  pairs with an explicit prompt, standard or
                           conversational (chosen and rejected: the reply turns)
                             {"prompt": "2+3?", "chosen": " 5", "rejected": " 6"}
                             {"prompt": [m], "chosen": [m], "rejected": [m]}
                           pairs with an implicit prompt: conversational (the
                           prompt is the leading messages both share, up to
                           the last assistant turn both have at the same place)
                             {"chosen": [m], "rejected": [m]}
                           or HH-RLHF transcripts (the prompt is the shared
                           text up to the last shared "\n\nAssistant:"; with
                           none shared, the prompt is empty and the whole
                           transcripts are compared, counted). Text that
                           follows the pattern (a "\n\nHuman:" turn first,
                           then alternating "\n\nAssistant:" and "\n\nHuman:"
                           turns, replies ending with an assistant turn) is
                           also split into turns (one space after a marker
                           dropped); other text stays strings (counted)
                             {"chosen": "\n\nHuman: 2+3?\n\nAssistant: 5",
                              "rejected": "\n\nHuman: 2+3?\n\nAssistant: 6"}
                           and InstructGPT's rankings, K >= 2 indices best first
                             {"prompt": "2+3?", "completions": [" 6", " 5"], "ranking": [1, 0]}
                           Conversational replies must end with an assistant
                           turn; in either form chosen must differ from rejected.
     RLHF_DATA_PROMPTS     a prompt, standard or conversational, or a
                           conversation; messages end with a user turn
                             {"prompt": "2+3?"}
                             {"prompt": [{"role": "user", "content": "2+3?"}]}
                             {"messages": [{"role": "user", "content": "2+3?"}]}
     RLHF_DATA_UNPAIRED    unpaired preference (KTO), standard or
                           conversational: stored for a trainer of its own;
                           SFT and the reward model refuse these records
                             {"prompt": "2+3?", "completion": " 6", "label": false}
                             {"prompt": [m], "completion": [m], "label": true}
   A bad record stops the load with "path:line:column: reason", unless
   skip_bad is set: then it is skipped, counted and passed to the log. */
typedef enum rlhf_data_format {
    RLHF_DATA_TEXT,
    RLHF_DATA_SFT,
    RLHF_DATA_PREFERENCE,
    RLHF_DATA_PROMPTS,
    RLHF_DATA_UNPAIRED
} rlhf_data_format;
typedef enum rlhf_record_kind {
    RLHF_RECORD_TEXT,
    RLHF_RECORD_COMPLETION,
    RLHF_RECORD_MESSAGES,
    RLHF_RECORD_PAIR,
    RLHF_RECORD_RANKING,
    RLHF_RECORD_PROMPT,
    RLHF_RECORD_UNPAIRED
} rlhf_record_kind;
typedef enum rlhf_role { RLHF_ROLE_SYSTEM, RLHF_ROLE_USER, RLHF_ROLE_ASSISTANT } rlhf_role;
/* A string with its length (it may contain NUL bytes); str is NUL-terminated too. */
typedef struct rlhf_str { const char *str; size_t len; } rlhf_str;
typedef struct rlhf_message { rlhf_role role; rlhf_str content; } rlhf_message;
typedef struct rlhf_record {
    rlhf_record_kind kind;
    size_t line;                   /* line of the source file (1 for a plain text file) */
    rlhf_str text;                 /* TEXT */
    rlhf_str prompt;               /* COMPLETION, PAIR, RANKING, PROMPT, UNPAIRED with a string prompt */
    rlhf_str completion;           /* COMPLETION, UNPAIRED */
    rlhf_str chosen, rejected;     /* PAIR: the responses, without the prompt */
    const rlhf_message *messages;  /* MESSAGES, PROMPT given as messages */
    int n_messages;
    const rlhf_str *completions;   /* RANKING: reordered best first (completions[0] is the best) */
    int n_completions;             /* K */
    /* The parts as messages: TRL's conversational forms, and HH-RLHF
       transcripts split into turns (their strings above are kept too). NULL:
       the part is its string only (a prompt string is one user turn, a
       response one assistant turn). A prompt may have 0 messages (a pair
       whose conversations share none). */
    const rlhf_message *prompt_messages;     /* COMPLETION, PAIR, PROMPT, UNPAIRED */
    int n_prompt_messages;
    const rlhf_message *completion_messages; /* COMPLETION, UNPAIRED */
    int n_completion_messages;
    const rlhf_message *chosen_messages, *rejected_messages; /* PAIR: the replies, without the prompt */
    int n_chosen_messages, n_rejected_messages;
    int label;                     /* UNPAIRED: 1 the completion is desirable ("label": true), 0 not */
} rlhf_record;
typedef struct rlhf_data_options {
    int skip_bad;          /* 0: a bad record stops the load; 1: skip and count it */
    long max_line_bytes;   /* longest JSONL line accepted (<= 0: 64 MiB) */
    long max_text_bytes;   /* largest plain text file (<= 0: 1 GiB) */
    rlhf_log_fn log;       /* receives each skipped record's message (may be NULL) */
    void *log_user;
} rlhf_data_options;
RLHFDEF rlhf_data_options rlhf_data_options_default(void);
typedef struct rlhf_dataset rlhf_dataset;
/* Load path as format. opt may be NULL (defaults). On failure *out is NULL
   and err (may be NULL) says where and why. */
RLHFDEF rlhf_result rlhf_dataset_load(rlhf_dataset **out, const char *path, rlhf_data_format format,
                                      const rlhf_data_options *opt, rlhf_error *err);
RLHFDEF void        rlhf_dataset_free(rlhf_dataset *d);
RLHFDEF size_t      rlhf_dataset_size(const rlhf_dataset *d);
RLHFDEF const rlhf_record *rlhf_dataset_record(const rlhf_dataset *d, size_t i);
/* Records skipped as bad (skip_bad), and the first one's message ("" if none). */
RLHFDEF size_t      rlhf_dataset_skipped(const rlhf_dataset *d);
RLHFDEF const char *rlhf_dataset_first_skip(const rlhf_dataset *d);
/* Pairs with an implicit prompt that share none (empty prompt): HH-RLHF
   transcripts that share no "\n\nAssistant:" turn, conversations that share
   no messages before an assistant turn. */
RLHFDEF size_t      rlhf_dataset_unshared_prompts(const rlhf_dataset *d);
/* HH-RLHF pairs kept as strings because their text does not follow the
   Human/Assistant pattern (see RLHF_DATA_PREFERENCE), not split into turns. */
RLHFDEF size_t      rlhf_dataset_unsplit_transcripts(const rlhf_dataset *d);

/* ---------------------------------------------------------------------------
   Tokenizer: byte-level BPE (Radford et al. 2019). Text is split with GPT-2's
   pattern  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
   (Unicode classes as Python's regex module has them), then each piece's
   bytes are merged by rank. Every byte string round-trips: decode(encode(b))
   == b, invalid UTF-8 included. Special tokens: <|endoftext|> (EOS), <|pad|>
   (never the EOS), and the chat markers <|system|>, <|user|>, <|assistant|>,
   <|end|>. Ordinary encoding never produces them; rlhf_tokenizer_encode_special
   turns their strings into their ids.
   Chat template: each message is <|role|> content <|end|>; the generation
   prompt ends with <|assistant|>, and the model's reply ends with <|end|>.
   A second template, for base models, adds no marker to the text: HH-RLHF's
   plain transcript (RLHF_TEMPLATE_HH, rlhf_tokenizer_set_template below). */
typedef struct rlhf_tokenizer rlhf_tokenizer;
typedef enum rlhf_special_token {
    RLHF_TOKEN_EOS, RLHF_TOKEN_PAD, RLHF_TOKEN_SYSTEM, RLHF_TOKEN_USER, RLHF_TOKEN_ASSISTANT, RLHF_TOKEN_END,
    RLHF_NUM_SPECIAL_TOKENS
} rlhf_special_token;
/* GPT-2's files (encoder.json, vocab.bpe): OpenAI's ids exactly; <|endoftext|>
   is 50256, and <|pad|> and the chat markers follow as 50257..50261. */
RLHFDEF rlhf_result rlhf_tokenizer_load_gpt2(rlhf_tokenizer **out, const char *encoder_json_path,
                                             const char *vocab_bpe_path);
RLHFDEF rlhf_result rlhf_tokenizer_load_gpt2_ex(rlhf_tokenizer **out, const char *encoder_json_path,
                                                const char *vocab_bpe_path, rlhf_error *err);
/* GPT-2's tokenizer as Hugging Face (or OpenAI) saves it; path is a model
   directory or one of these files:
     tokenizer.json            model BPE, pre-tokenizer ByteLevel (no prefix
                               space), no normalizer; merges as "a b" strings or
                               [a, b] pairs; "added_tokens" with their ids
     vocab.json + merges.txt   either file names both (the other beside it);
                               added tokens from tokenizer_config.json
                               ("added_tokens_decoder") and added_tokens.json
                               beside them, when present
     encoder.json + vocab.bpe  OpenAI's names (rlhf_tokenizer_load_gpt2)
   A directory is searched in that order; a file of another name is read as a
   tokenizer.json. The files' ids are kept exactly. <|endoftext|> is the EOS;
   rlhf's markers (<|pad|>, <|system|>, <|user|>, <|assistant|>, <|end|>) keep
   the ids the files give them (as added tokens, as an rlhf export writes them)
   and the ones missing follow the files' last id, in that order (GPT-2's files
   alone: 50257..50261). Anything else (a WordPiece, Unigram or other model, a
   pre-tokenizer other than ByteLevel, a normalizer, BPE dropout) is refused
   with what was found. On failure *out is NULL and err (may be NULL) names
   the file and the reason. */
RLHFDEF rlhf_result rlhf_tokenizer_load_hf(rlhf_tokenizer **out, const char *path, rlhf_error *err);
/* Train on len bytes of UTF-8 text to vocab_size tokens in all: 256 bytes,
   then merges, then the 6 special tokens (the last 6 ids). If the text runs
   out of pairs first, the vocabulary is smaller (rlhf_tokenizer_vocab_size
   tells). Deterministic: the most frequent pair first, ties to smaller ids.
   Pieces longer than 256 bytes are learned from in 256-byte chunks (this
   keeps training linear; such runs are rare in text). No text (len 0) is
   refused: RLHF_ERR_INVALID_ARGUMENT. */
RLHFDEF rlhf_result rlhf_tokenizer_train(rlhf_tokenizer **out, const char *text, size_t len, int vocab_size,
                                         rlhf_error *err);
RLHFDEF void        rlhf_tokenizer_free(rlhf_tokenizer *t);
/* Encode len bytes of text as ordinary text (special-token strings such as
   "<|endoftext|>" are NOT turned into special ids here). Writes up to cap ids;
   *n_ids receives the count needed; RLHF_ERR_TOO_LARGE when cap was too small. */
RLHFDEF rlhf_result rlhf_tokenizer_encode(const rlhf_tokenizer *t, const char *text, size_t len, int *ids, size_t cap,
                                          size_t *n_ids);
/* The same, but the strings of the special tokens become their ids. */
RLHFDEF rlhf_result rlhf_tokenizer_encode_special(const rlhf_tokenizer *t, const char *text, size_t len, int *ids,
                                                  size_t cap, size_t *n_ids);
/* Bytes of ids (special tokens as their strings) into out[cap]; *n_bytes
   receives the count needed. No NUL is appended. */
RLHFDEF rlhf_result rlhf_tokenizer_decode(const rlhf_tokenizer *t, const int *ids, size_t n, char *out, size_t cap,
                                          size_t *n_bytes);
RLHFDEF int         rlhf_tokenizer_vocab_size(const rlhf_tokenizer *t);
RLHFDEF int         rlhf_tokenizer_special(const rlhf_tokenizer *t, rlhf_special_token which);
/* Chat template over n messages: ids and (if mask is not NULL) mask[i] = 1
   on the tokens SFT learns (assistant content and its <|end|>), 0 elsewhere.
   add_generation_prompt != 0 appends <|assistant|>, where a reply begins.
   Same cap / *n_ids contract as rlhf_tokenizer_encode. */
RLHFDEF rlhf_result rlhf_tokenizer_chat(const rlhf_tokenizer *t, const rlhf_message *messages, int n,
                                        int add_generation_prompt, int *ids, unsigned char *mask, size_t cap,
                                        size_t *n_ids);
/* The template rlhf_tokenizer_chat renders (a property of the tokenizer, saved with it):
     RLHF_TEMPLATE_CHAT  <|system|> s <|end|><|user|> u <|end|><|assistant|> a <|end|>; generation prompt
                         <|assistant|>; a reply ends with <|end|> (the default)
     RLHF_TEMPLATE_HH    HH-RLHF's plain text (Bai et al. 2022), which a base GPT-2 already reads: s, then
                         "\n\nHuman: " u, "\n\nAssistant: " a <|endoftext|>; generation prompt "\n\nAssistant:";
                         a reply (" a", with its space) ends with <|endoftext|>. The text between two
                         <|endoftext|> is encoded as one string, as Hugging Face's tokenizer encodes the
                         rendered template, so the ids are the same. No marker token is used, but the
                         tokenizer still holds <|pad|> for batches, so a model needs its vocabulary.
   rlhf_tokenizer_reply_end gives the token a reply ends with under the tokenizer's template: the stop token
   of generation, PPO and the reward model (where this header says a reply ends with <|end|>, under HH it
   ends with <|endoftext|>). */
typedef enum rlhf_chat_template { RLHF_TEMPLATE_CHAT, RLHF_TEMPLATE_HH } rlhf_chat_template;
RLHFDEF rlhf_result rlhf_tokenizer_set_template(rlhf_tokenizer *t, rlhf_chat_template which);
RLHFDEF rlhf_chat_template rlhf_tokenizer_template(const rlhf_tokenizer *t);
RLHFDEF int         rlhf_tokenizer_reply_end(const rlhf_tokenizer *t);
/* Storage: the tokenizer as JSON (a file of its own, or the "tokenizer"
   metadata of a checkpoint, so one file is a whole model). The file is
   written as checkpoints are (a temporary file beside it, fsync'ed, renamed
   over it): on failure (RLHF_ERR_IO) an existing file is untouched. */
RLHFDEF rlhf_result rlhf_tokenizer_save(const rlhf_tokenizer *t, const char *path);
RLHFDEF rlhf_result rlhf_tokenizer_load(rlhf_tokenizer **out, const char *path, rlhf_error *err);
RLHFDEF rlhf_result rlhf_model_set_tokenizer(rlhf_model *m, const rlhf_tokenizer *t);
RLHFDEF rlhf_result rlhf_tokenizer_from_model(rlhf_tokenizer **out, const rlhf_model *m, rlhf_error *err);

/* ---------------------------------------------------------------------------
   Export to a Hugging Face directory: what GPT2LMHeadModel.from_pretrained
   (or, for a model with a scalar head, GPT2ForSequenceClassification) and
   AutoTokenizer.from_pretrained load as is, for PyTorch, transformers and TRL.
   The directory holds
     config.json              model_type gpt2, every size, gelu_new, LayerNorm
                              eps 1e-5, tied embeddings, no dropout, bos/eos
                              <|endoftext|>, pad_token_id <|pad|>, torch_dtype
     model.safetensors        the weights only, under "transformer." as
                              save_pretrained writes them (the tied lm_head left
                              out), __metadata__ {"format": "pt"}; in F32, BF16 or
                              F16 (rounded to nearest, ties to even)
     generation_config.json   eos_token_id [<|end|>, <|endoftext|>]: generation
                              stops where rlhf.h's does (not for a scalar head)
     vocab.json, merges.txt   the tokens (GPT-2's byte-to-unicode alphabet) up to
                              the last one that is not pad or a chat marker, and
                              the merges by rank ("#version: 0.2" first)
     tokenizer_config.json    the special tokens (added_tokens_decoder), pad,
                              eos, bos, model_max_length n_ctx, GPT2Tokenizer,
                              and chat_template: the Jinja string whose text,
                              encoded with its special tokens, is
                              rlhf_tokenizer_chat's ids
     special_tokens_map.json
   A model with a scalar head (reward or value) exports as
   GPT2ForSequenceClassification (num_labels 1): score.weight [1, C] is
   gain * score.weight, the normalisation's gain folded in; Hugging Face's
   score layer has no bias, so rlhf.h's score = the Hugging Face logit +
   config.json's "rlhf_score_offset" (= gain * score.bias + bias). It pools
   the last token that is not pad_token_id, the token rlhf.h scores (the
   reply's <|end|>) when a batch is right-padded with <|pad|>.
   rlhf_model_load_ex reads DIR/model.safetensors back (config.json beside,
   the offset as score.bias) with the same logits and scores. */
typedef enum rlhf_export_dtype { RLHF_EXPORT_F32, RLHF_EXPORT_BF16, RLHF_EXPORT_F16 } rlhf_export_dtype;
typedef struct rlhf_export_options {
    rlhf_export_dtype dtype; /* F32. F16 refuses a weight beyond its range (|x| >= 65520 rounds to
                                infinity): the error names the tensor; use BF16 or F32 then */
    int overwrite;           /* 0: a DIR that holds files is refused. 1: it is replaced, provided it
                                holds nothing but an earlier export's files (nothing else is deleted) */
} rlhf_export_options;
/* dtype F32, overwrite 0 */
RLHFDEF rlhf_export_options rlhf_export_options_default(void);
/* Export m with tokenizer t (NULL: the tokenizer stored in m) into the
   directory dir. opt may be NULL (defaults). The directory is written as a
   unit: every file into dir.tmp-PID beside it, each fsync'ed, then renamed
   to dir (an empty dir is replaced; with overwrite an earlier export is
   moved aside, the new one renamed in, the old one deleted), so dir holds
   the old export or the new one, never a mix; on failure dir is untouched.
   Refused: non-finite weights (RLHF_ERR_NON_FINITE), a weight beyond the
   dtype's range (RLHF_ERR_TOO_LARGE), a tokenizer larger than the model's
   vocabulary. POSIX only (elsewhere RLHF_ERR_IO). err (may be NULL) says why. */
RLHFDEF rlhf_result rlhf_model_export_hf(const rlhf_model *m, const rlhf_tokenizer *t, const char *dir,
                                         const rlhf_export_options *opt, rlhf_error *err);

/* ---------------------------------------------------------------------------
   Losses of the RLHF stages (stable entry points). */

/* InstructGPT eq. 1 for one prompt: rewards (K) of K completions listed best
   first. Returns -1/C(K,2) * sum over i<j of log sigmoid(r_i - r_j): all
   C(K,2) comparisons of one prompt as one batch element. When grad is not
   NULL, writes d loss / d rewards[k] for each k. Stable for any gap (a gap of
   100 gives a finite loss and gradient). K < 2: returns 0, grad zeros. */
RLHFDEF float rlhf_ranking_loss(const float *rewards, int K, float *grad);

/* Generalised advantage estimation (Schulman et al. 2016) over one response
   of n tokens, rewards (n), values (n) -> adv (n), ret (n):
   delta_t = rewards[t] + gamma * values[t+1] - values[t] (values[n] = 0),
   adv[t] = delta_t + gamma * lam * adv[t+1], ret[t] = adv[t] + values[t]. */
RLHFDEF void rlhf_gae(const float *rewards, const float *values, int n, float gamma, float lam, float *adv, float *ret);

/* PPO (InstructGPT step 3): the KL estimators of the per-token penalty:
   k1 = logp - ref_logp; k3 = exp(d) - 1 - d, d = ref_logp - logp. */
typedef enum rlhf_kl_estimator { RLHF_KL_K1, RLHF_KL_K3 } rlhf_kl_estimator;
/* The losses of a minibatch, mean over n tokens, with their gradients (may be NULL):
   policy:  ratio = exp(logp - old_logp);  mean max(-A ratio, -A clip(ratio, 1-eps, 1+eps))
   value:   v_clip = v_old + clip(v - v_old, -eps, eps);  0.5 mean max((v - R)^2, (v_clip - R)^2)
   *clipfrac: fraction of tokens where the clipped term was larger;
   *approxkl: 0.5 mean (logp - old_logp)^2. */
RLHFDEF float rlhf_ppo_policy_loss(const float *logp, const float *old_logp, const float *adv, int n, float cliprange,
                                   float *dlogp, float *clipfrac, float *approxkl);
RLHFDEF float rlhf_ppo_value_loss(const float *v, const float *v_old, const float *ret, int n, float cliprange_value,
                                  float *dv, float *clipfrac);
/* Per-token rewards of one response (n tokens): kl[t] by the estimator,
   rewards[t] = -beta kl[t], plus score on the last token. */
RLHFDEF void rlhf_ppo_rewards(const float *logp, const float *ref_logp, int n, float score, float beta,
                              rlhf_kl_estimator est, float *rewards, float *kl);

/* DPO (Rafailov et al. 2023) and its variants, mean over n preference pairs.
   Inputs are log-probs of the chosen and rejected responses under the policy
   and the frozen reference (sums over response tokens; for IPO the caller
   passes per-token means, as TRL does). With
     h_i = (policy_chosen_i - ref_chosen_i) - (policy_rejected_i - ref_rejected_i):
     SIGMOID: l_i = -(1 - eps) log sigmoid(beta h_i) - eps log sigmoid(-beta h_i)
              (eps = label_smoothing: cDPO's belief that a label is flipped)
     IPO:     l_i = (h_i - 1/(2 beta))^2            (Azar et al. 2023)
     HINGE:   l_i = max(0, 1 - beta h_i)            (SLiC, Zhao et al. 2023)
   d_chosen[i] = d(mean loss)/d policy_chosen_i and d_rejected[i] =
   d(mean loss)/d policy_rejected_i (either may be NULL). The sigmoid and
   hinge losses and every gradient stay finite for any finite |h| (IPO's
   square of a huge gap is not a float). A NaN input gives NaN. n <= 0:
   returns 0. Returns the mean loss. */
/* SIMPO (Meng et al. 2024, reference-free) is the sigmoid loss of its h: the
   caller passes per-token mean log-probs of the policy, ref_chosen[i] =
   gamma / beta (the target margin) and ref_rejected[i] = 0, so that
   h = mean log pi(y_w) - mean log pi(y_l) - gamma / beta. */
typedef enum rlhf_dpo_loss_type {
    RLHF_DPO_SIGMOID = 0, RLHF_DPO_IPO = 1, RLHF_DPO_HINGE = 2, RLHF_DPO_SIMPO = 3
} rlhf_dpo_loss_type;
RLHFDEF float rlhf_dpo_loss(const float *policy_chosen, const float *policy_rejected,
                            const float *ref_chosen, const float *ref_rejected, int n, float beta,
                            rlhf_dpo_loss_type type, float label_smoothing,
                            float *d_chosen, float *d_rejected);

/* KTO (Ethayarajh et al. 2024) on unpaired labels, the mean over n
   completions. policy[i] and ref[i] are the completion's log-probs (sums
   over its tokens) under the policy and the frozen reference, label[i] 1
   (desirable) or 0; kl is the reference point z (the batch's KL estimate,
   clamped >= 0, a constant: no gradient flows through it). With
   h_i = policy[i] - ref[i]:
     desirable:    l_i = w_d (1 - sigmoid(beta (h_i - z)))
     undesirable:  l_i = w_u (1 - sigmoid(beta (z - h_i)))
   d_policy[i] = d(mean loss)/d policy[i] (may be NULL). Returns the mean. */
RLHFDEF float rlhf_kto_loss(const float *policy, const float *ref, const int *label, int n, float kl, float beta,
                            float desirable_weight, float undesirable_weight, float *d_policy);

/* Group advantages (GRPO, Dr. GRPO, RLOO): rewards and adv are n_groups x G,
   row-major (the G samples of one prompt side by side).
     GRPO:    adv = (r - mean_g) / (std_g + 1e-4), std_g with Bessel's
              correction (Shao et al. 2024, as TRL); G = 1: adv = 0
     DR_GRPO: adv = r - mean_g                            (Liu et al. 2025)
     RLOO:    adv = r - (sum_g - r) / (G - 1)             (Ahmadian et al. 2024;
              G >= 2, G = 1: adv = 0)
   adv may be rewards (in place). */
typedef enum rlhf_advantage_type { RLHF_ADV_GRPO = 0, RLHF_ADV_DR_GRPO = 1, RLHF_ADV_RLOO = 2 } rlhf_advantage_type;
RLHFDEF void rlhf_group_advantages(const float *rewards, int n_groups, int G,
                                   rlhf_advantage_type type, float *adv);

/* The policy losses of the critic-free trainers over n_seq sampled replies,
   packed one after another (reply i has lens[i] tokens, its per-sequence
   advantage adv[i]); logp, old_logp, ref_logp and dlogp are per token.
   GRPO (Shao et al. 2024, eq. 3, as TRL's GRPOTrainer): per token
     r_t = exp(logp_t - old_logp_t),
     l_t = max(-A_i r_t, -A_i clip(r_t, 1 - eps_low, 1 + eps_high)) + beta k3_t,
     k3_t = exp(ref_logp_t - logp_t) - (ref_logp_t - logp_t) - 1
   (eps_high > eps_low is DAPO's clip-higher; beta 0 reads no ref_logp, which
   may then be NULL; A_i = 0 gives no surrogate term whatever r_t), aggregated
   by agg, with norm as it says:
     RLHF_AGG_SEQUENCE  (TRL "grpo"):    mean_i (1/|y_i|) sum_t l_t
     RLHF_AGG_TOKEN     (TRL "bnpo"):    sum_i sum_t l_t / sum_i |y_i|
     RLHF_AGG_CONSTANT  (TRL "dr_grpo"): sum_i sum_t l_t / (n_seq norm), norm = max_new_tokens
     RLHF_AGG_DAPO      (TRL "dapo"):    sum_i sum_t l_t / norm, norm = the tokens of the whole
                        rollout x n_seq / its replies (every token of a rollout weighs the same,
                        whichever minibatch holds it)
   RLOO (Ahmadian et al. 2024): REINFORCE on the sequence, its ratio
   R_i = exp(sum_t (logp_t - old_logp_t)) clipped to [1 - eps_low, 1 + eps_high]:
     L = mean_i max(-A_i R_i, -A_i clip(R_i, 1 - eps_low, 1 + eps_high))
   (at R_i = 1, the first pass over a batch, its gradient is REINFORCE's
   -A_i d/dtheta log pi(y_i)). dlogp (may be NULL) receives dL/dlogp_t,
   *clipfrac (may be NULL) the share of tokens (GRPO) or replies (RLOO)
   whose clipped term was the one used, *mean_kl (may be NULL) the mean of
   k3_t over the tokens (0 when beta is 0). Returns L. */
typedef enum rlhf_loss_agg {
    RLHF_AGG_SEQUENCE = 0, RLHF_AGG_TOKEN = 1, RLHF_AGG_CONSTANT = 2, RLHF_AGG_DAPO = 3
} rlhf_loss_agg;
RLHFDEF float rlhf_grpo_loss(const float *logp, const float *old_logp, const float *ref_logp, const float *adv,
                             const int *lens, int n_seq, float eps_low, float eps_high, float beta, rlhf_loss_agg agg,
                             float norm, float *dlogp, float *clipfrac, float *mean_kl);
RLHFDEF float rlhf_rloo_loss(const float *logp, const float *old_logp, const float *adv, const int *lens, int n_seq,
                             float eps_low, float eps_high, float *dlogp, float *clipfrac);

/* The adaptive KL controller (Ziegler et al. 2019): the KL coefficient
   after an iteration whose mean KL (over its n_episodes episodes, of
   sum_t KL_t) was kl:
     e = clip(kl / kl_target - 1, -0.2, 0.2),  beta' = beta * (1 + e * n_episodes / horizon) */
RLHFDEF float rlhf_kl_control(float beta, float kl, float kl_target, float horizon, int n_episodes);

/* ---------------------------------------------------------------------------
   Training loops: SFT and pretraining (InstructGPT step 1), the reward model
   (step 2). Both read a dataset through a tokenizer (the chat template, the
   special tokens), hold out a validation set, follow a learning-rate
   schedule, clip gradients, skip non-finite steps (counted), report metrics
   and write checkpoints. Weights that are themselves not finite end the
   run (RLHF_ERR_NON_FINITE) and are never checkpointed; the caller may stop
   a run between steps (should_stop). Each call starts a fresh AdamW state
   (a checkpoint of the previous stage may carry one). Sequences are rendered with the chat template:
   a prompt string is one user turn, a completion one assistant turn, so
   every response ends with <|end|>, the stop token. */
typedef enum rlhf_lr_decay { RLHF_LR_COSINE, RLHF_LR_LINEAR, RLHF_LR_CONSTANT } rlhf_lr_decay;
/* Receives one JSON object per line of metrics (no newline), e.g.
   {"stage":"sft","step":10,"loss":2.31,...}: append it to metrics.jsonl. */
typedef void (*rlhf_metrics_fn)(void *user, const char *json);
typedef struct rlhf_train_options {
    rlhf_adamw_config opt;  /* opt.lr is the peak learning rate; opt.grad_clip clips */
    int batch_size;         /* SFT: sequences per step; reward model: prompts per step */
    int micro_batch;        /* sequences per forward/backward (gradients accumulate, so
                               memory follows micro_batch, the update batch_size); 0: all */
    int seq_len;            /* longest sequence, in positions (0: the model's n_ctx); longer
                               records follow the long-record rule (rlhf_fit_report) */
    int epochs;             /* passes over the training set */
    long max_steps;         /* > 0: stop after this many updates (the schedule spans them) */
    int warmup_steps;       /* lr rises linearly from lr/warmup to lr over these steps */
    rlhf_lr_decay decay;    /* then decays to min_lr_ratio * lr by the last step */
    float min_lr_ratio;
    int eval_every;         /* steps between validations (0: only at the end) */
    float val_fraction;     /* held out of the training set when no val set is given */
    int pack;               /* SFT: pack several examples into one row (never attending
                               across each other: see rlhf_model_forward_docs) */
    int log_every;          /* steps between progress lines to log (0: none) */
    uint64_t seed;          /* shuffling and the validation split */
    long resume_step;       /* > 0: continue a run from its checkpoint at this step (load
                               out_dir/last.safetensors first: it holds the AdamW state and
                               rlhf.train.step). Same options and data: the data order, the
                               schedule, the best score and the metric lines' "tokens" (from
                               rlhf.train.tokens) pick up where the run stopped; "elapsed_s"
                               counts from this call */
    const char *out_dir;    /* NULL: no checkpoints. Else out_dir/last.safetensors at every
                               validation and the end, out_dir/best.safetensors at each new
                               best validation score (the directory must exist) */
    rlhf_log_fn log;        /* progress lines, warnings (may be NULL) */
    void *log_user;
    rlhf_metrics_fn metrics; /* may be NULL */
    void *metrics_user;
    int (*should_stop)(void *user); /* may be NULL. Polled after every update but the last (after
                               its metric line and any validation or checkpoint of that step);
                               nonzero: out_dir/last.safetensors is written at that step (when
                               out_dir is set) so resume_step continues from it, and the call
                               returns RLHF_ERR_INTERRUPTED. Ctrl-C handlers set a flag it reads */
    void *stop_user;
    int recompute;          /* 1: activation recompute on the trained model (rlhf_model_set_recompute,
                               left on after the call): several times less activation memory for
                               about one more forward per step, the same results to the bit; 0:
                               the model's own setting (off unless set) */
} rlhf_train_options;
/* SFT: lr 3e-4 peak, warm-up 10 steps, cosine to 10%, clip 1, batch 16,
   1 epoch, validation every 100 steps on 5% held out, seq_len n_ctx. */
RLHFDEF rlhf_train_options rlhf_train_options_sft(void);
/* Reward model ("The N implementation details", item 4): lr 1e-4 annealed
   linearly to 0, one epoch, 8 prompts per step, 32 sequences per forward,
   weight decay 0, validation every 50 steps on 5% held out. */
RLHFDEF rlhf_train_options rlhf_train_options_reward(void);
/* The learning rate at step (from 0) of total_steps: linear warm-up
   lr*(step+1)/warmup, then with progress p = (step - warmup) / (total -
   warmup) over the rest, cosine: min + (lr-min)(1+cos(pi p))/2; linear:
   lr - (lr-min) p (the floor min = min_lr_ratio * lr is reached just after
   the last step, so every step learns). */
RLHFDEF float rlhf_lr_at(const rlhf_train_options *o, long step, long total_steps);

/* Long records: one rule in every stage and command (SFT, the reward model,
   scoring, normalisation, PPO prompts). A sequence is a prompt (the chat
   template up to the <|assistant|> where a reply begins) and a response (an
   SFT completion, a chosen, rejected or ranked completion, each with its
   <|end|>). When the two are longer than max_len tokens:
     - the response is never cut;
     - the prompt is cut from the LEFT: its last turns and <|assistant|>
       survive. The cut falls at the start of a turn (a role marker) when
       one leaves a prompt that fits and still holds a whole turn before
       <|assistant|>: the earliest such start, so as much as fits is kept
       and the model reads a well-formed conversation (a system message
       at the start goes like any other turn). When even the last
       turn alone does not fit, the prompt keeps its last tokens (the tail
       of that turn, its <|end|>, <|assistant|>): a mid-turn cut, counted
       apart;
     - a record whose response with the minimum prompt (1 token: the
       <|assistant|> the reply follows) is longer than max_len is skipped
       and counted. A ranking is kept or skipped whole, its K completions
       after one prompt, cut for the longest of them.
   The counts of one pass over a dataset: */
typedef struct rlhf_fit_report {
    long kept;         /* records used, whole or with their prompt cut */
    long prompts_cut;  /* of the kept, those whose prompt was cut from the left */
    long mid_turn;     /* of those, cut inside a turn (the last turn alone did not fit) */
    long skipped;      /* records skipped: the completion with the minimum prompt is longer than max_len */
    int max_len;       /* the limit, in tokens of a sequence (the last report's) */
    int prompts_only;  /* 1: the records were prompts (PPO, normalisation): nothing is skipped */
} rlhf_fit_report;
/* The rule on lengths: a prompt of n_prompt tokens whose turns start at
   turn_start[0..n_turns) (offsets into the prompt, any order; NULL when
   n_turns is 0), then a response of n_response tokens, in max_len tokens.
   Returns how many prompt tokens to drop from the left (0: it fits whole),
   or -1 when the record cannot fit. *mid_turn (may be NULL) is set to 1
   when the cut falls inside a turn, else 0. The stages pass the positions
   of the chat template's role markers (<|system|>, <|user|>, <|assistant|>)
   as the turn starts; a prompt without any is cut by its last tokens. */
RLHFDEF long rlhf_fit_cut(size_t n_prompt, const size_t *turn_start, int n_turns, size_t n_response, size_t max_len,
                          int *mid_turn);
/* One line for a report, e.g. "9,120 records kept (1,204 prompts cut from
   the left, 3 mid-turn), 311 skipped (completion longer than 255 tokens)";
   prompts-only reports read "200 prompts kept (12 cut from the left to 128
   tokens)".
   Writes at most cap bytes (NUL-terminated); returns out. */
RLHFDEF char *rlhf_fit_describe(const rlhf_fit_report *f, char *out, size_t cap);

typedef struct rlhf_train_report {
    long steps;             /* updates applied */
    long skipped_steps;     /* non-finite loss or gradient norm: no update */
    double seconds;
    long train_examples, val_examples;
    long truncated;         /* examples whose prompt was cut from the left to fit seq_len */
    long dropped;           /* examples skipped: their completion alone does not fit seq_len */
    float train_loss;       /* mean loss of the steps since the last 100-step boundary */
    float val_loss, best_val_loss;   /* last and best validation (NaN if none) */
    long best_step;
    float train_accuracy, val_accuracy; /* reward model: pairs ranked right */
    double tokens;          /* tokens processed in training forwards */
    rlhf_fit_report fit;    /* SFT and reward model: the long-record rule over train and val
                               (truncated = fit.prompts_cut, dropped = fit.skipped) */
} rlhf_train_report;

/* A record as SFT sees it: ids (up to cap) and mask (1 where a token is
   learned). COMPLETION: the prompt (a string as a user turn, or its
   messages), then the completion (a string as an assistant turn, or its
   messages), whose assistant turns alone are learned; MESSAGES: the
   assistant turns learned; TEXT: the text and EOS, all learned. *n
   receives the count needed (RLHF_ERR_TOO_LARGE when > cap). */
RLHFDEF rlhf_result rlhf_sft_encode(const rlhf_tokenizer *t, const rlhf_record *r, int *ids, unsigned char *mask,
                                    size_t cap, size_t *n);
/* The prompt of a record, ending with <|assistant|> where a reply begins:
   prompt strings (COMPLETION, PAIR, RANKING, PROMPT, UNPAIRED) as one user
   turn, prompt messages as they are; MESSAGES up to (without) the last
   assistant turn. */
RLHFDEF rlhf_result rlhf_prompt_encode(const rlhf_tokenizer *t, const rlhf_record *r, int *ids, size_t cap, size_t *n);
/* A record's prompt and its k-th response through the chat template, as
   the reward model reads them: PAIR k = 0 chosen, 1 rejected; RANKING
   completions[k] (best first); COMPLETION and UNPAIRED k = 0. The prompt
   as in rlhf_prompt_encode (without <|assistant|>), the response a string
   as one assistant turn or its messages. Same cap / *n contract. */
RLHFDEF rlhf_result rlhf_response_encode(const rlhf_tokenizer *t, const rlhf_record *r, int k, int *ids, size_t cap,
                                         size_t *n);

/* rlhf_sft_encode under the rule: a COMPLETION or MESSAGES record in at
   most max_len tokens (an example of n tokens trains on n - 1 positions, so
   a stage of seq_len positions passes seq_len + 1). The response is the
   last assistant turn; turns after it (nothing to learn there) are left
   out. ids and mask need room for max_len (cap >= max_len). Returns
   RLHF_ERR_CONTEXT_FULL when the record is skipped; fit (may be NULL)
   counts it either way. TEXT records have no prompt: INVALID_ARGUMENT. */
RLHFDEF rlhf_result rlhf_sft_encode_fit(const rlhf_tokenizer *t, const rlhf_record *r, int max_len, int *ids,
                                        unsigned char *mask, size_t cap, size_t *n, rlhf_fit_report *fit);
/* rlhf_prompt_encode under the rule, in at most max_len tokens (the reply's
   room is the caller's: PPO's max_new_tokens). Never skips (max_len >= 1);
   ids need room for max_len (cap >= max_len). fit may be NULL. */
RLHFDEF rlhf_result rlhf_prompt_encode_fit(const rlhf_tokenizer *t, const rlhf_record *r, int max_len, int *ids,
                                           size_t cap, size_t *n, rlhf_fit_report *fit);

/* Supervised fine-tuning, or pretraining when train holds TEXT records.
   SFT: mean cross-entropy over completion (assistant) tokens only; prompt
   tokens have target -1. Text: the token stream (each record's text, then
   EOS) cut into rows of seq_len, every token a target. An example longer
   than seq_len follows the long-record rule (rlhf_fit_report: its prompt
   cut from the left, or skipped when its completion alone does not fit;
   counted in rep->fit and logged in one line). val may be NULL (then val_fraction is held
   out). rep and err may be NULL. Sets the checkpoint metadata rlhf.kind
   ("policy" after SFT, "base" after pretraining) and the tokenizer. */
RLHFDEF rlhf_result rlhf_sft_train(rlhf_model *m, const rlhf_tokenizer *t, const rlhf_dataset *train,
                                   const rlhf_dataset *val, const rlhf_train_options *o, rlhf_train_report *rep,
                                   rlhf_error *err);

/* The reward model (InstructGPT eq. 1) on PREFERENCE datasets (pairs and
   K-way rankings; a batch mixes any K): per prompt, one forward per
   completion, the reward read at each completion's last token (its <|end|>),
   and rlhf_ranking_loss over the prompt's C(K,2) pairs as one batch element.
   m must have a scalar head (rlhf_model_add_score_head). Each record is one
   batch element (a pair record weighs as much as a ranking); a prompt with
   more than micro_batch completions still goes in one forward. A comparison
   longer than seq_len follows the long-record rule (rlhf_fit_report: the
   prompt cut from the left for the longest completion, or the record
   skipped; counted in rep->fit and logged in one line). Refuses a tokenizer whose pad
   token is its stop or EOS token. Sets rlhf.kind = "reward" and clears any
   old normalisation: call rlhf_reward_normalize, then save the model. */
RLHFDEF rlhf_result rlhf_reward_train(rlhf_model *m, const rlhf_tokenizer *t, const rlhf_dataset *train,
                                      const rlhf_dataset *val, const rlhf_train_options *o, rlhf_train_report *rep,
                                      rlhf_error *err);

/* DPO (Rafailov et al. 2023) on preference pairs and rankings (a ranking of
   K is its C(K,2) pairs, better first, each weighing as much as a pair of
   a pair record: a ranking of 4 counts 6 times; the reward model instead
   weighs each prompt once): the policy m learns from the pairs
   directly, against the frozen reference ref (the SFT model it starts from),
   with the loss of rlhf_dpo_loss on the sequence log-probs of the replies
   (sums over the reply's tokens; IPO: their per-token means). Units of a
   step are prompts, as for the reward model (batch_size prompts, every pair
   of each); the step's loss is the mean over its pairs. The reference's
   log-prob of every reply is computed one prompt a forward, the same numbers
   whether precompute_ref is set (one pass over the data before the first
   step; ref is not used afterwards and may be freed when the call returns)
   or not (the reference runs beside the policy in every step): a run gives
   the same bits either way. Metric lines carry TRL's names: rewards/chosen,
   rewards/rejected (beta (log pi - log pi_ref), means over the pairs),
   rewards/accuracies, rewards/margins, logps/chosen, logps/rejected;
   validation val/loss and val/rewards/accuracies. Checkpoints as SFT's
   (kind "policy"); resume_step continues bit for bit. */
typedef struct rlhf_dpo_config {
    float beta;               /* 0.1: the strength of the pull toward the reference */
    rlhf_dpo_loss_type loss;  /* RLHF_DPO_SIGMOID (DPO, cDPO with label_smoothing), IPO, HINGE */
    float label_smoothing;    /* cDPO's eps in [0, 0.5): 0 (sigmoid only: refused with ipo, hinge) */
    int precompute_ref;       /* 1: the reference's log-probs in one pass before training */
    float simpo_gamma;        /* SIMPO's target margin gamma: 0.5 (TRL's CPOConfig). With loss SIMPO
                                 there is no reference (pass NULL) and log-probs are per-token means */
} rlhf_dpo_config;
/* beta 0.1, sigmoid, no label smoothing, precompute_ref 0, simpo_gamma 0.5 (TRL's defaults) */
RLHFDEF rlhf_dpo_config rlhf_dpo_config_default(void);
/* The reward model's options with TRL's DPO learning rate: lr 1e-6 decaying
   linearly to 0 (as TRL's), no warm-up or weight decay (as TRL's), batch 8
   prompts, 32 sequences a forward; one epoch and validation every 50 steps on
   5% held out, AdamW betas (0.9, 0.95) (the library's choices: TRL runs 3
   epochs without validation, betas (0.9, 0.999)). */
RLHFDEF rlhf_train_options rlhf_train_options_dpo(void);
/* DPO (or IPO, hinge, cDPO, SimPO as dc->loss says) of m on the preference
   data train (pairs or rankings; val held out, or NULL and o->val_fraction),
   ref the frozen reference (the same config as m; NULL with SIMPO). */
RLHFDEF rlhf_result rlhf_dpo_train(rlhf_model *m, rlhf_model *ref, const rlhf_tokenizer *t, const rlhf_dataset *train,
                                   const rlhf_dataset *val, const rlhf_dpo_config *dc, const rlhf_train_options *o,
                                   rlhf_train_report *rep, rlhf_error *err);

/* KTO on an unpaired preference set (RLHF_DATA_UNPAIRED: {"prompt",
   "completion", "label"}, TRL's format), TRL's KTOTrainer: each record's
   completion log-prob against the reference, and the reference point z
   from mismatched pairs (each prompt with the next record's completion,
   policy minus reference, averaged over the step, clamped at 0). Options:
   rlhf_train_options_dpo() (lr 1e-6 as TRL's KTOConfig). */
typedef struct rlhf_kto_config {
    float beta;               /* 0.1 */
    float desirable_weight;   /* 1: raise it when desirable examples are rarer (the paper's advice:
                                 w_d n_d / (w_u n_u) in [1, 4/3]) */
    float undesirable_weight; /* 1 */
    int precompute_ref;       /* 1: the reference's log-probs in one pass before training */
} rlhf_kto_config;
RLHFDEF rlhf_kto_config rlhf_kto_config_default(void);
RLHFDEF rlhf_result rlhf_kto_train(rlhf_model *m, rlhf_model *ref, const rlhf_tokenizer *t, const rlhf_dataset *train,
                                   const rlhf_dataset *val, const rlhf_kto_config *kc, const rlhf_train_options *o,
                                   rlhf_train_report *rep, rlhf_error *err);

/* Scores of B sequences (B,T): row b holds n_pad[b] padding tokens (n_pad
   NULL: none), then lengths[b] tokens of prompt and response; the reward is
   the head's value at the last of them (the response's <|end|>). Padding
   never moves it: right padding is never attended, left padding is masked
   and positions start after it. scores (B) = gain * value + bias, the
   model's normalisation (1 and 0 until set). */
/* the public form: always normalised */
RLHFDEF rlhf_result rlhf_reward_score_ids(rlhf_model *rm, const int *tokens, const int *n_pad, const int *lengths,
                                          int B, int T, float *scores);
/* Scores of n (prompt, response) texts through the chat template. A pair
   longer than n_ctx is refused (RLHF_ERR_CONTEXT_FULL); rlhf_reward_score_record
   applies the long-record rule instead. */
RLHFDEF rlhf_result rlhf_reward_score(rlhf_model *rm, const rlhf_tokenizer *t, const char *const *prompts,
                                      const char *const *responses, int n, float *scores);
/* The rewards of a record's completions under the long-record rule in
   max_len tokens (0: n_ctx; at most n_ctx): a PAIR's chosen and rejected, a
   RANKING's K best first, a COMPLETION's one completion, all after the same
   prompt (cut from the left for the longest). scores (K), normalised.
   Returns RLHF_ERR_CONTEXT_FULL when the record is skipped (a completion
   does not fit even after a 1-token prompt); fit (may be NULL) counts. */
RLHFDEF rlhf_result rlhf_reward_score_record(rlhf_model *rm, const rlhf_tokenizer *t, const rlhf_record *r,
                                             int max_len, float *scores, rlhf_fit_report *fit);
/* Normalisation ("The N implementation details", item 7): score = gain *
   raw + bias, stored in the checkpoint (rlhf.reward.gain, rlhf.reward.bias). */
RLHFDEF rlhf_result rlhf_reward_set_normalization(rlhf_model *rm, float gain, float bias);
RLHFDEF void        rlhf_reward_normalization(const rlhf_model *rm, float *gain, float *bias);
/* Sample one response from policy (the SFT model) for each of n_samples
   prompts of the dataset (cycling through it), score them raw, and set the
   gain and bias that give those scores mean 0 and std 1. A reply cut by
   max_new_tokens gets <|end|> appended (or over its last token when the
   context is full), so it is scored where training comparisons are. *raw_mean and
   *raw_std (may be NULL) receive the raw statistics. */
RLHFDEF rlhf_result rlhf_reward_normalize(rlhf_model *rm, rlhf_model *policy, const rlhf_tokenizer *t,
                                          const rlhf_dataset *prompts, int n_samples,
                                          const rlhf_sampler_config *sampling, int max_new_tokens, uint64_t seed,
                                          float *raw_mean, float *raw_std);
/* The same in sequences of at most max_len tokens (0: the smaller n_ctx of
   the two models; larger is refused): each prompt follows the long-record
   rule in max_len - R tokens, R = min(max_new_tokens, max_len / 2) kept
   for the reply, so every prompt is used (cut from the left when long) and
   counted in fit (may be NULL). Fails (never skips) when the samples cannot
   be drawn or their raw scores have no spread: err (may be NULL) says why. */
RLHFDEF rlhf_result rlhf_reward_normalize_ex(rlhf_model *rm, rlhf_model *policy, const rlhf_tokenizer *t,
                                             const rlhf_dataset *prompts, int n_samples,
                                             const rlhf_sampler_config *sampling, int max_new_tokens, uint64_t seed,
                                             int max_len, float *raw_mean, float *raw_std, rlhf_fit_report *fit,
                                             rlhf_error *err);

/* ---------------------------------------------------------------------------
   PPO (InstructGPT step 3, eq. 2; Ziegler et al. 2019; "The N implementation
   details of RLHF with PPO"). Each iteration:
     1. rollouts: batch_size prompts, left-padded, one response each sampled
        with the KV cache (temperature, top-k, top-p) until <|end|> or
        max_new_tokens;
     2. the score of each response (the reward model at its last token,
        normalised, or your score function); a response without <|end|>
        scores missing_eos_penalty; log-probs of the policy and the frozen
        reference (logits / temperature), values of the critic;
     3. per-token rewards -kl_coef * KL_t, the score added on the last token;
        GAE; returns = advantages + values; advantages whitened;
     4. ppo_epochs passes over shuffled minibatches: clipped surrogate,
        clipped value loss * vf_coef, optional entropy bonus, optional
        PPO-ptx (ptx_coef * LM loss on pretraining text), optional EMA;
     5. the KL coefficient: fixed, or the adaptive controller.
   Guards: pad == stop token refuses to start; a non-finite loss or gradient
   norm skips the update (counted); a minibatch whose mean ratio exceeds
   ratio_threshold is skipped (counted); a negative mean KL is warned about,
   and so is an iteration where most replies end without <|end|>.
   Metrics (one JSON line per iteration) use TRL's names. */
/* A programmatic reward instead of a reward model (tests, known objectives):
   the score of response (n_response tokens, its <|end|> included if it has
   one) to prompt (n_prompt tokens, the chat template's ids). */
typedef float (*rlhf_score_fn)(void *user, const int *prompt, int n_prompt, const int *response, int n_response);

/* Several rewards as one score function (TRL's reward_funcs with
   reward_weights): score = sum_k weight[k] x score_k, where term k is the
   reward model model[k] (normalised, scalar head; the reply scored at its
   <|end|>, appended when the reply was cut, as PPO scores it) or, when
   model[k] is NULL, fn[k](user[k], ...), a programmatic ("verifiable")
   reward. Pass rlhf_reward_mix_score as the score_fn of PPO, GRPO, RLOO or
   best-of-N with the mix as its user pointer (and no reward_model). A term
   that fails (out of memory; a prompt and reply longer than a reward model's
   n_ctx; a reward model without a tokenizer in the mix) makes the score NaN:
   the trainers leave that reply out (advantage 0, with a warning), best-of-N
   never picks it. last[k] holds each term's score of the latest call. */
#define RLHF_MAX_REWARDS 8
typedef struct rlhf_reward_mix {
    const rlhf_tokenizer *tokenizer; /* the reply-end token the reward models score at */
    int n;                           /* terms, 1..RLHF_MAX_REWARDS */
    rlhf_model *model[RLHF_MAX_REWARDS];
    rlhf_score_fn fn[RLHF_MAX_REWARDS];
    void *user[RLHF_MAX_REWARDS];
    float weight[RLHF_MAX_REWARDS];
    float last[RLHF_MAX_REWARDS];
} rlhf_reward_mix;
RLHFDEF float rlhf_reward_mix_score(void *mix, const int *prompt, int n_prompt, const int *response, int n_response);

/* Best-of-N, or rejection sampling (Nakano et al. 2021; Touvron et al. 2023
   fine-tune on such samples: expert iteration): n replies to one prompt
   (prompt: n_prompt ids through the template, ending where a reply begins),
   each sampled by policy with sc, up to max_new tokens, stopping after the
   tokenizer's reply end; each scored by the reward model rm (its normalised
   score at the reply's <|end|>: a reply cut at max_new is scored with one
   appended, as PPO scores it and as rlhf_reward_normalize calibrated it) or,
   when rm is NULL, by score_fn(score_user, ...) on the reply as sampled; the best kept
   (the first of equal scores). best (room for max_new ids) receives it and
   *n_best its length; scores (n, may be NULL) every reply's score, *best_index
   (may be NULL) which one won. The replies come from rng in order, so a seed
   gives the same N replies whatever the reward. */
RLHFDEF rlhf_result rlhf_best_of_n(rlhf_model *policy, rlhf_model *rm, rlhf_score_fn score_fn, void *score_user,
                                   const rlhf_tokenizer *t, const int *prompt, int n_prompt, int n, int max_new,
                                   const rlhf_sampler_config *sc, rlhf_rng *rng, int *best, int *n_best,
                                   float *scores, int *best_index);

/* The PPO trainer's advantage estimators and GRPO's reward scaling. With
   GRPO the KL to the reference is a term of the loss (beta x k3 per token, as
   TRL's GRPOTrainer); with RLOO it is taken from each reply's reward
   (score - beta x sum_t KL_t, by kl_estimator); with GAE from each token's. */
typedef enum rlhf_estimator { RLHF_EST_GAE = 0, RLHF_EST_GRPO = 1, RLHF_EST_RLOO = 2 } rlhf_estimator;
typedef enum rlhf_scale_rewards { RLHF_SCALE_GROUP = 0, RLHF_SCALE_BATCH = 1, RLHF_SCALE_NONE = 2 } rlhf_scale_rewards;

typedef struct rlhf_ppo_config {
    /* the models and data: yours; they must outlive the trainer */
    rlhf_model *policy;       /* trained */
    rlhf_model *ref;          /* the frozen SFT model, the same config as the policy */
    rlhf_model *critic;       /* a model with a scalar head (initialise it from the reward model); trained */
    rlhf_model *reward_model; /* a model with a scalar head, normalised; or NULL, and then score_fn */
    rlhf_score_fn score_fn;   /* the score when reward_model is NULL */
    void *score_user;
    const rlhf_tokenizer *tokenizer;
    const rlhf_dataset *prompts; /* a PROMPTS (or any prompt-bearing) dataset */
    const rlhf_dataset *ptx;     /* a TEXT dataset for PPO-ptx, or NULL */
    /* the algorithm */
    int batch_size;          /* episodes (prompts) per iteration: 16 */
    int mini_batch;          /* episodes per PPO minibatch (and per forward): 4 */
    int ppo_epochs;          /* passes over each batch: 4 */
    int max_prompt_tokens;   /* longer prompts are cut from the left by the long-record rule
                                (rlhf_fit_report): 0 = n_ctx / 2 */
    int max_new_tokens;      /* response length limit: 32 */
    rlhf_sampler_config sampling; /* temperature 0.7, top_k 0, top_p 1 */
    int penalize_missing_eos; /* 1: a response without <|end|> scores missing_eos_penalty */
    float missing_eos_penalty; /* -1 */
    float kl_coef;           /* beta (initial when adaptive): 0.05. A negative mean KL beyond 2
                                standard errors is warned about */
    int adaptive_kl;         /* 0: fixed beta; 1: Ziegler et al.'s controller */
    float kl_target, kl_horizon; /* 6, 10000 */
    rlhf_kl_estimator kl_estimator; /* k1 = logp - ref_logp; k3 = exp(d) - 1 - d, d = ref_logp - logp */
    float gamma, lam;        /* GAE: 1, 0.95 */
    float cliprange;         /* 0.2 */
    float cliprange_value;   /* 0.2 */
    float vf_coef;           /* 0.1: scales the critic's loss. The critic is a separate model with
                                its own AdamW (as TRL's separate value model), so vf_coef acts
                                through grad_clip and eps only, like a critic step-size knob */
    float entropy_coef;      /* 0: no bonus (entropy is still reported) */
    int whiten_rewards;      /* 0; 1 divides rewards by their std (no mean shift) */
    float ptx_coef;          /* gamma of PPO-ptx: 0 = off (InstructGPT 27.8) */
    int ptx_batch;           /* pretraining rows per minibatch: 0 = mini_batch */
    float ema_decay;         /* 0 = off; InstructGPT 0.992 */
    float ratio_threshold;   /* 10 */
    rlhf_adamw_config policy_opt; /* lr 1e-5 (raise for tiny models), wd 0, clip 1 */
    rlhf_adamw_config critic_opt; /* the same */
    long total_iterations;   /* > 0: both learning rates anneal linearly to 0 over this many
                                iterations ("N implementation details", item 4); 0: constant */
    int log_samples;         /* sample responses logged per iteration: 2 */
    uint64_t seed;
    rlhf_log_fn log;         /* progress lines, samples, warnings (may be NULL) */
    void *log_user;
    rlhf_metrics_fn metrics; /* one JSON line per iteration (may be NULL) */
    void *metrics_user;
    int recompute;           /* 1: activation recompute (rlhf_model_set_recompute) on the policy, the
                                critic and the reference, left on after the trainer is freed: several
                                times less activation memory for about one more forward per
                                backward, the same results to the bit; 0: the models' own settings */
    /* The advantage estimator: PPO's GAE with the critic, or a group baseline without one (GRPO,
       RLOO: see >>grpo). Each prompt is then sampled group_size times (batch_size counts replies and
       is a multiple of it); the critic is neither needed (may be NULL) nor trained; the reference
       may be NULL when kl_coef is 0 (and no adaptive KL). */
    rlhf_estimator estimator; /* RLHF_EST_GAE (PPO, the default), RLHF_EST_GRPO, RLHF_EST_RLOO */
    int group_size;           /* G replies per prompt: 1 for GAE; >= 2 for GRPO and RLOO */
    rlhf_scale_rewards scale_rewards; /* GRPO: divide r - mean_g by the std of the group (GROUP, the
                                paper), of the whole batch (BATCH), or not (NONE: Dr. GRPO) */
    rlhf_loss_agg loss_agg;   /* GRPO: RLHF_AGG_SEQUENCE ("grpo"), TOKEN ("bnpo"), CONSTANT ("dr_grpo"),
                                 DAPO ("dapo"); see rlhf_grpo_loss */
    float cliprange_high;     /* the upper clip eps_high (DAPO: 0.28); 0 = cliprange. GRPO and RLOO only.
                                 (penalize_missing_eos applies to GRPO and RLOO too, unlike TRL's GRPO) */
} rlhf_ppo_config;
RLHFDEF rlhf_ppo_config rlhf_ppo_config_default(void);

/* What one iteration did (also in the metrics line, under TRL's names). */
typedef struct rlhf_ppo_stats {
    long iteration;
    float score;             /* objective/scores: mean score */
    float kl;                /* objective/kl: mean over episodes of sum_t KL_t */
    float rlhf_reward;       /* objective/rlhf_reward: mean of score - beta * sum_t KL_t */
    float entropy;           /* objective/entropy: mean of -sum_t logp_t */
    float kl_coef;           /* beta used this iteration */
    float policy_loss, value_loss, approxkl, clipfrac, value_clipfrac, policy_entropy, ratio, var_explained;
    float ptx_loss;          /* NaN when PPO-ptx is off */
    float lr;                /* the policy's learning rate this iteration */
    int num_eos;             /* episodes that ended with <|end|> */
    float response_length;   /* mean tokens per response */
    long skipped_updates, skipped_minibatches; /* non-finite, ratio above the threshold (totals) */
    double seconds_generate, seconds_score, seconds_learn;
    double tokens_generated;
    float missing_eos;       /* val/missing_eos_frac: the share of replies without <|end|>; above one half
                                the log warns (their scores are the penalty: little can be learned) */
    float reward_std;        /* GRPO, RLOO: the mean over groups of the std of the replies' rewards (TRL's
                                reward_std); NaN for PPO */
    float frac_reward_zero_std; /* GRPO, RLOO: the share of groups whose replies all had the same reward
                                (every advantage 0: they teach nothing); NaN for PPO */
    int nonfinite_scores;    /* val/nonfinite_scores: replies whose score was NaN or inf (a reward model or
                                score function failed): left out of learning (advantage 0), warned about */
} rlhf_ppo_stats;

typedef struct rlhf_ppo rlhf_ppo;
/* A trainer for the models and data named in cfg (see rlhf_ppo_config;
   start from rlhf_ppo_config_default() and set them). err (may be NULL)
   says why creation failed. */
RLHFDEF rlhf_result rlhf_ppo_create(rlhf_ppo **out, const rlhf_ppo_config *cfg, rlhf_error *err);
RLHFDEF void        rlhf_ppo_free(rlhf_ppo *p);
/* One iteration: rollouts, scoring, learning, KL control. stats may be NULL. */
RLHFDEF rlhf_result rlhf_ppo_step(rlhf_ppo *p, rlhf_ppo_stats *stats, rlhf_error *err);
/* The whole state into dir (which must exist): policy.safetensors and
   critic.safetensors with their AdamW state, ema.safetensors (when EMA is
   on), and in the policy's metadata the iteration, KL coefficient, RNG
   state, data positions and the reference's fingerprint. rlhf_ppo_load
   restores it into a trainer created with the same models and config; the
   run then continues bit for bit as if never interrupted.
   The files are saved as a unit (journaled): each is written whole as
   X.next, then dir/ppo.commit is written (atomically) as the commit point,
   then each X.next is renamed to X and ppo.commit removed. Both calls first
   finish a save that was killed after its commit point, or remove what one
   killed before it left behind. So after a kill at any moment dir holds the
   previous complete state or the new one (rlhf_ppo_load never finds a mix),
   and no *.next or ppo.commit* file remains after the next save or load.
   A trainer whose weights are not finite is not saved (RLHF_ERR_NON_FINITE;
   dir keeps the previous state). */
RLHFDEF rlhf_result rlhf_ppo_save(rlhf_ppo *p, const char *dir, rlhf_error *err);
RLHFDEF rlhf_result rlhf_ppo_load(rlhf_ppo *p, const char *dir, rlhf_error *err);
/* The EMA of the policy's weights (ema_decay > 0), or NULL. */
RLHFDEF const rlhf_model *rlhf_ppo_ema(const rlhf_ppo *p);
RLHFDEF float       rlhf_ppo_kl_coef(const rlhf_ppo *p);
/* The long-record rule over the whole prompt set, counted once when the
   trainer is created (and logged in one line): prompts kept, cut from the
   left to max_prompt_tokens. */
RLHFDEF rlhf_fit_report rlhf_ppo_prompt_fit(const rlhf_ppo *p);

/* Trace of episode b of the last iteration, one row per response token. */
typedef struct rlhf_ppo_trace_row {
    int token;
    float logp;      /* log pi_old(a_t|s_t), logits / temperature */
    float ref_logp;  /* log pi_ref(a_t|s_t) */
    float kl;        /* KL_t by kl_estimator (k1: logp - ref_logp); GRPO: k3 */
    float reward;    /* r_t = -beta KL_t (+ score on the last token) */
    float value;     /* V(s_t), the critic */
    float delta;     /* delta_t = r_t + gamma V(s_{t+1}) - V(s_t); NaN for GRPO and RLOO (no critic) */
    float advantage; /* A_t = delta_t + gamma lambda A_{t+1} (before whitening) */
    float ret;       /* R_t = A_t + V(s_t) */
    float ratio;     /* pi_new / pi_old in the last minibatch that held it */
    int clipped;     /* 1 when the clipped term of the surrogate was the one used */
} rlhf_ppo_trace_row;
RLHFDEF rlhf_result rlhf_ppo_trace(const rlhf_ppo *p, int b, rlhf_ppo_trace_row *rows, int cap, int *n_rows);
/* The same as a text table (columns named after their equations), with the
   tokens decoded; *n_bytes receives the length needed (cap too small:
   RLHF_ERR_TOO_LARGE). */
RLHFDEF rlhf_result rlhf_ppo_trace_text(const rlhf_ppo *p, int b, char *out, size_t cap, size_t *n_bytes);

/* Which kernels this build uses: "avx2+fma", "neon" or "scalar". */
RLHFDEF const char *rlhf_simd_name(void);
/* Threads the kernels run on (1 without OpenMP). */
RLHFDEF int         rlhf_num_threads(void);
/* Set the threads to n (n >= 1; as omp_set_num_threads; 0 keeps the count)
   and whether the kernels may use fewer while some of them do not get a CPU
   of their own (adapt 1, the default; see "threads on a busy machine" in the
   implementation). Without OpenMP it does nothing. */
RLHFDEF void        rlhf_set_num_threads(int n, int adapt);
/* Threads the kernels use now: rlhf_num_threads(), or fewer while another
   program holds a CPU (adapt 1). */
RLHFDEF int         rlhf_threads_in_use(void);

#ifdef __cplusplus
}
#endif
#endif /* RLHF_H */

/* ======================================================================== */
/*                           IMPLEMENTATION                                 */
/* ======================================================================== */
#if defined(RLHF_IMPLEMENTATION) && !defined(RLHF_IMPLEMENTATION_DONE)
#define RLHF_IMPLEMENTATION_DONE

#include <math.h>
#include <stdarg.h>
#include <stdio.h>   /* vsnprintf only: the library never prints */
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// >>config  allocator, OpenMP and SIMD selection, result strings, RNG
// ----------------------------------------------------------------------------

#if defined(RLHF_MALLOC) && defined(RLHF_FREE)
/* the caller's allocator */
#elif !defined(RLHF_MALLOC) && !defined(RLHF_FREE)
#define RLHF_MALLOC(size) malloc(size)
#define RLHF_FREE(ptr) free(ptr)
#define RLHF__OWN_MALLOC 1
#else
#error "rlhf.h: define both RLHF_MALLOC and RLHF_FREE, or neither"
#endif

#ifndef RLHF_ASSERT
#include <assert.h>
#define RLHF_ASSERT(x) assert(x)
#endif

/* OpenMP only as one-line pragmas; without -fopenmp they vanish, so there is
   no unknown-pragma warning. RLHF__OMP(omp parallel for) -> _Pragma("omp parallel for") */
#ifdef _OPENMP
#include <omp.h>
#define RLHF__OMP(x) _Pragma(#x)
#else
#define RLHF__OMP(x)
#endif

/* The scalar _ref twins are called only by the tests in some builds (and a
   kernel's one-region wrapper that the model does not use, rlhf__adamw). */
#if defined(__GNUC__) || defined(__clang__)
#define RLHF__REF static __attribute__((unused))
#else
#define RLHF__REF static
#endif

/* SIMD is chosen at compile time; RLHF_NO_SIMD forces the scalar kernels.
   32-bit ARM takes the scalar ones: ARMv7's NEON has no vdivq_f32, vsqrtq_f32
   or vaddvq_f32 and flushes subnormals to zero. */
#if !defined(RLHF_NO_SIMD) && defined(__AVX2__) && defined(__FMA__)
#define RLHF__AVX2 1
#include <immintrin.h>
#if defined(__AVX512F__) /* AVX-512: the matmul's micro-kernel, rlhf__gemv's and GELU's 16 lanes; the rest AVX2 */
#define RLHF__AVX512 1
#endif
#elif !defined(RLHF_NO_SIMD) && defined(__aarch64__) && defined(__ARM_NEON)
#define RLHF__NEON 1
#include <arm_neon.h>
#endif

RLHFDEF const char *rlhf_simd_name(void) {
#if defined(RLHF__AVX512)
    return "avx512f+avx2+fma";
#elif defined(RLHF__AVX2)
    return "avx2+fma";
#elif defined(RLHF__NEON)
    return "neon";
#else
    return "scalar";
#endif
}

RLHFDEF int rlhf_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- threads on a busy machine ---------------------------------------------
   Every parallel loop takes its thread count from rlhf__nt(ops): 1 below two
   grains of rlhf__par_grain operations (starting threads costs more than they
   save), else one thread per grain, at most the team. The team is all threads
   unless another program holds a CPU: an OpenMP thread without a CPU of its
   own holds every barrier, and on 2 cores with one busy a 2-thread step took
   twice as long as a 1-thread one. The matmul measures it (rlhf__team_note):
   over a window of >= 50 ms of matmul time on n >= 2 threads,
     team rate   = work of all threads / wall time
     single rate = max over threads of its work / the time it worked
   (its time waiting at barriers left out: what one thread alone would do),
   and a team that is not 10% faster than one thread alone drops a thread.
   A smaller team tries all threads again (a window of 20 ms) after 0.5 s,
   then 1, 2, 4, 8 s while the tries keep failing. Every loop gives the same bits on any thread count
   (each output is computed whole by one thread, in a fixed order), so the
   team never changes a result. The state is shared by all models. */
#define RLHF__TEAM_MAX 64 /* threads the matmul measures (more: no adapting) */
#ifdef _OPENMP
/* ops: about a nanosecond of one thread's work each (a matmul does ~32
   multiply-adds a nanosecond, a LayerNorm a few elements, an expf ~4 ns) */
static double rlhf__par_grain = 20000.0; /* ops (~20 us) per thread, at least; the tests set 1 */
static struct {
    int size, adapt, n, probing;           /* size 0: all threads */
    double t_shrunk, backoff, wall, unit[RLHF__TEAM_MAX], busy[RLHF__TEAM_MAX];
} rlhf__team = {0, 1, 0, 0, 0.0, 0.5, 0.0, {0.0}, {0.0}};

static int rlhf__team_now(void) {
    int size, all = omp_get_max_threads();
    RLHF__OMP(omp atomic read)
    size = rlhf__team.size;
    return size >= 1 && size < all ? size : all;
}
static int rlhf__nt(double ops) {
    int team = rlhf__team_now();
    double grains = ops / rlhf__par_grain;
    return grains < 2.0 ? 1 : grains < (double)team ? (int)grains : team;
}
static void rlhf__team_set(const int size) {
    RLHF__OMP(omp atomic write)
    rlhf__team.size = size + 0; /* "+ 0": GCC 12 would warn "set but not used" of a bare parameter */
    rlhf__team.n = 0; /* a new window */
    rlhf__team.wall = 0.0;
}
/* the window's verdict: shrink the team, or keep it and reset the back-off */
static void rlhf__team_judge(double now) {
    double total = 0.0, single = 0.0;
    int i, n = rlhf__team.n;
    for (i = 0; i < n; i++) {
        total += rlhf__team.unit[i];
        if (rlhf__team.busy[i] > 0.0 && rlhf__team.unit[i] / rlhf__team.busy[i] > single)
            single = rlhf__team.unit[i] / rlhf__team.busy[i];
    }
    if (total / rlhf__team.wall < 1.1 * single) {
        rlhf__team.backoff = rlhf__team.probing && rlhf__team.backoff < 8.0 ? 2.0 * rlhf__team.backoff : 0.5;
        rlhf__team.t_shrunk = now;
        rlhf__team_set(n - 1);
    } else {
        rlhf__team.backoff = 0.5;
        rlhf__team_set(rlhf__team.size);
    }
    rlhf__team.probing = 0;
}
/* After a matmul on n threads: thread i did unit[i] operations in busy[i]
   seconds of work, wall seconds in all. */
static void rlhf__team_note(int n, const double *unit, const double *busy, double wall) {
    RLHF__OMP(omp critical(rlhf__team))
    {
        double now = omp_get_wtime();
        int i, all = omp_get_max_threads();
        if (!rlhf__team.adapt || all > RLHF__TEAM_MAX) {
            rlhf__team_set(0);
        } else if (rlhf__team.size >= 1 && rlhf__team.size < all && now - rlhf__team.t_shrunk >= rlhf__team.backoff) {
            rlhf__team_set(0); /* try all threads again */
            rlhf__team.probing = 1;
        } else if (n >= 2 && n <= RLHF__TEAM_MAX) {
            if (n != rlhf__team.n) { /* the first matmul of a window */
                rlhf__team.n = n;
                rlhf__team.wall = 0.0;
                for (i = 0; i < n; i++) rlhf__team.unit[i] = rlhf__team.busy[i] = 0.0;
            }
            for (i = 0; i < n; i++) rlhf__team.unit[i] += unit[i], rlhf__team.busy[i] += busy[i];
            rlhf__team.wall += wall;
            if (rlhf__team.wall >= (rlhf__team.probing ? 0.02 : 0.05)) rlhf__team_judge(now);
        }
    }
}
#define RLHF__WTIME() omp_get_wtime()
#define RLHF__TID() omp_get_thread_num()
#define RLHF__NTHREADS() omp_get_num_threads()
#else
static int rlhf__nt(double ops) {
    (void)ops;
    return 1;
}
static void rlhf__team_note(int n, const double *unit, const double *busy, double wall) {
    (void)n, (void)unit, (void)busy, (void)wall;
}
#define RLHF__WTIME() 0.0
#define RLHF__TID() 0
#define RLHF__NTHREADS() 1
#endif

RLHFDEF void rlhf_set_num_threads(int n, int adapt) {
#ifdef _OPENMP
    if (n >= 1) omp_set_num_threads(n);
    RLHF__OMP(omp critical(rlhf__team))
    {
        rlhf__team.adapt = adapt != 0;
        rlhf__team.backoff = 0.5;
        rlhf__team.probing = 0;
        rlhf__team_set(0);
    }
#else
    (void)n, (void)adapt;
#endif
}
RLHFDEF int rlhf_threads_in_use(void) {
#ifdef _OPENMP
    return rlhf__team_now();
#else
    return 1;
#endif
}

RLHFDEF const char *rlhf_result_string(rlhf_result r) {
    switch (r) {
#define RLHF__STRING_ITEM(name, value, message) case name: return message;
        RLHF_RESULT_LIST(RLHF__STRING_ITEM)
#undef RLHF__STRING_ITEM
    default: return "unknown result";
    }
}

/* Size arithmetic that refuses to wrap: *out = a * b, 0 on overflow. */
static int rlhf__mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > (size_t)-1 / a) return 0;
    *out = a * b;
    return 1;
}
static int rlhf__add_size(size_t a, size_t b, size_t *out) {
    if (b > (size_t)-1 - a) return 0;
    *out = a + b;
    return 1;
}

/* Huge pages for the parameter blocks. Weights, gradients and the AdamW
   moments are read whole, in long streams, every step (the decode reads every
   weight once a token): a 4 KiB page every ~150 ns at memory speed, and with
   small pages each one costs a TLB miss. Those blocks (rlhf__alloc_params), of
   32 MiB or more, start on a 2 MiB boundary and, with malloc on Linux, ask for
   transparent huge pages (madvise: most distributions leave the choice to the
   program, /sys/kernel/mm/transparent_hugepage/enabled says "madvise"). M
   decoding on one thread went from ~19 to ~15.5 ms a token, on two from ~10.8
   to ~10.0 (alternating runs; the bench's bandwidth probe reads the same kind
   of block). Other blocks keep small pages: a huge page is resident whole
   once touched, and activations and KV caches sized for the longest batch are
   often touched in part (huge pages everywhere took make demo's peak RSS from
   74 to 276 MB). From 32 MiB up only: glibc serves smaller blocks from its
   heap once a large block has been freed (its mmap threshold rises up to 32
   MiB), where the advice would outlive the block; and smaller ones fit the
   last-level cache of many CPUs anyway. madvise is a Linux extension the C
   library declares only when asked (_DEFAULT_SOURCE, _GNU_SOURCE or
   _BSD_SOURCE before any #include; glibc assumes _DEFAULT_SOURCE in gcc's gnu
   modes, g++ defines _GNU_SOURCE): a strict -std=c99 build without them, your
   RLHF_MALLOC, or another system aligns the blocks all the same, without the
   advice. */
#define RLHF__HUGE_MIN ((size_t)32 << 20)
#define RLHF__HUGE_PAGE ((size_t)2 << 20)
#if defined(RLHF__OWN_MALLOC) && defined(__linux__) && \
    (defined(_DEFAULT_SOURCE) || defined(_GNU_SOURCE) || defined(_BSD_SOURCE))
#include <sys/mman.h>
#if defined(MADV_HUGEPAGE)
#define RLHF__HUGE_PAGES 1
#endif
#endif
#if defined(RLHF__HUGE_PAGES)
static void rlhf__advise_huge(void *p, size_t bytes) {
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* only advice: refused, the pages stay small */
}
#else
static void rlhf__advise_huge(void *p, size_t bytes) { (void)p, (void)bytes; }
#endif

/* 64-byte aligned blocks (a cache line; AVX2 wants 32); with huge, 2 MiB
   aligned from RLHF__HUGE_MIN up, with room to the next 2 MiB past the end (so
   the advice covers the last page too, never memory outside the block). The
   padding, at most 4 MiB of a block of 32 MiB or more, is never touched. The
   pointer returned by RLHF_MALLOC is stored just before the aligned block. */
static void *rlhf__alloc_aligned(size_t bytes, int huge) {
    size_t total, align = huge && bytes >= RLHF__HUGE_MIN ? RLHF__HUGE_PAGE : 64, span = bytes;
    unsigned char *raw, *p;
    if (align > 64) span = (bytes + RLHF__HUGE_PAGE - 1) / RLHF__HUGE_PAGE * RLHF__HUGE_PAGE;
    if (span < bytes || !rlhf__add_size(span, align + sizeof(void *), &total)) return NULL;
    raw = (unsigned char *)RLHF_MALLOC(total);
    if (!raw) return NULL;
    p = raw + sizeof(void *);
    p += (align - ((uintptr_t)p & (align - 1))) & (align - 1);
    memcpy(p - sizeof(void *), &raw, sizeof(void *));
    if (align > 64) rlhf__advise_huge(p, span);
    return p;
}
static void *rlhf__alloc(size_t bytes) { return rlhf__alloc_aligned(bytes, 0); }
static void rlhf__free(void *p) {
    void *raw;
    if (!p) return;
    memcpy(&raw, (unsigned char *)p - sizeof(void *), sizeof(void *));
    RLHF_FREE(raw);
}
/* floats, overflow-checked */
static float *rlhf__alloc_floats(size_t n) {
    size_t bytes;
    if (!rlhf__mul_size(n, sizeof(float), &bytes)) return NULL;
    return (float *)rlhf__alloc(bytes);
}
/* a parameter block: weights, gradients or an AdamW moment (huge pages) */
static float *rlhf__alloc_params(size_t n) {
    size_t bytes;
    if (!rlhf__mul_size(n, sizeof(float), &bytes)) return NULL;
    return (float *)rlhf__alloc_aligned(bytes, 1);
}

/* xoshiro256** (Blackman & Vigna 2018), seeded through splitmix64 so that any
   64-bit seed, 0 included, gives a good state. */
static uint64_t rlhf__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
RLHFDEF void rlhf_rng_seed(rlhf_rng *rng, uint64_t seed) {
    int i;
    for (i = 0; i < 4; i++) rng->s[i] = rlhf__splitmix64(&seed);
}
static uint64_t rlhf__rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
RLHFDEF uint64_t rlhf_rng_u64(rlhf_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rlhf__rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rlhf__rotl(s[3], 45);
    return result;
}
RLHFDEF float rlhf_rng_float(rlhf_rng *rng) {
    /* top 24 bits: every value is exactly representable, never 1.0 */
    return (float)(rlhf_rng_u64(rng) >> 40) * (1.0f / 16777216.0f);
}
/* p (n) = std * N(0,1), both outputs of each Box-Muller pair used (half the
   log/sqrt of calling rlhf_rng_normal n times: a GPT-2 124M init is 124M draws). */
static void rlhf__fill_normal(float *p, size_t n, float std, rlhf_rng *rng) {
    size_t i;
    for (i = 0; i < n; i += 2) {
        double u1 = ((double)(rlhf_rng_u64(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
        double u2 = (double)(rlhf_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        p[i] = std * (float)(r * cos(a));
        if (i + 1 < n) p[i + 1] = std * (float)(r * sin(a));
    }
}
RLHFDEF float rlhf_rng_normal(rlhf_rng *rng) {
    /* Box-Muller in double; u1 in (0, 1] so log() never sees 0. */
    double u1 = ((double)(rlhf_rng_u64(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rlhf_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// ----------------------------------------------------------------------------
// >>kernels  vector primitives, packed matmul, layernorm, GELU, attention,
//            cross-entropy, AdamW. Every SIMD kernel has a scalar rlhf__X_ref
//            twin that defines what it computes (tests compare the two).
// ----------------------------------------------------------------------------

/* Horizontal sums of one register. */
#if defined(RLHF__AVX2)
static float rlhf__hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
#endif

/* dot product: sum_i a[i] * b[i]; a, b (n). */
RLHF__REF float rlhf__dot_ref(const float *a, const float *b, int n) {
    float s = 0.0f;
    int i;
    for (i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static float rlhf__dot(const float *a, const float *b, int n) {
    int i = 0;
    float s = 0.0f;
#if defined(RLHF__AVX2)
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s = rlhf__hsum256(_mm256_add_ps(s0, s1));
#elif defined(RLHF__NEON)
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s = vaddvq_f32(vaddq_f32(s0, s1));
#endif
    for (; i < n; i++) s += a[i] * b[i]; /* the tail, or the whole loop when scalar */
    return s;
}

/* axpy: y[i] += a * x[i]; x, y (n). */
RLHF__REF void rlhf__axpy_ref(float *y, float a, const float *x, int n) {
    int i;
    for (i = 0; i < n; i++) y[i] += a * x[i];
}
static void rlhf__axpy(float *y, float a, const float *x, int n) {
    int i = 0;
#if defined(RLHF__AVX2)
    __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#elif defined(RLHF__NEON)
    float32x4_t va = vdupq_n_f32(a);
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, vld1q_f32(x + i)));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

/* ---- vector exp ------------------------------------------------------------
   exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]
   (Cody & Waite: ln 2 split into a part exact in a few bits and a correction,
   so n ln 2 is subtracted without rounding), exp(r) by Cephes' expf polynomial
   (degree 7, ~1 ulp), then scaled by 2^n through the exponent bits. 2^n is
   applied as two factors 2^(n/2) 2^(n - n/2), each a normal float, so results
   below FLT_MIN underflow gradually with one rounding, as libm's expf does,
   and x > 88.72 overflows to inf. x is first clamped to [-104, 89] (beyond it
   the result is 0 or inf anyway) so n fits in an int; NaN passes through.
   Measured against libm by the test exp_accuracy. */
#if defined(RLHF__AVX2)
static __m256 rlhf__exp256(__m256 x) {
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f), ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, ln2_lo, _mm256_fnmadd_ps(n, ln2_hi, xc));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    /* exp(r) ~ 1 + r + r^2 (1/2 + r (1/6 + r (1/24 + ...))) */
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    p = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_blendv_ps(p, _mm256_add_ps(x, x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); /* NaN in, NaN out */
}
#if defined(RLHF__AVX512)
/* rlhf__exp256 on 16 lanes: each step gives each lane the value it gives
   there (every operation correctly rounded or exact), so the same bits; for
   elementwise maps only (a sum over the lanes would change its order). Used
   by GELU: 4M floats of config S's step, one thread, forward 5.0 -> 3.7 ms,
   backward 8.8 -> 4.9. */
static __m512 rlhf__exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    /* n rounded to the nearest integer (ties to even) as an int, then as a float: the values of
       rlhf__exp256's n and ni (gcc's unoptimised _mm512_roundscale_ps trips -Wsign-conversion) */
    __m512i ni = _mm512_cvt_roundps_epi32(_mm512_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 n = _mm512_cvtepi32_ps(ni);
    __m512 r = _mm512_fnmadd_ps(n, ln2_lo, _mm512_fnmadd_ps(n, ln2_hi, xc));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    __m512i n1 = _mm512_srai_epi32(ni, 1), n2 = _mm512_sub_epi32(ni, n1);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, _mm512_set1_epi32(127)), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, _mm512_set1_epi32(127)), 23));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    p = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), p, _mm512_add_ps(x, x));
}
#endif
/* n < 8 floats through an 8-wide function: the tail of an array takes the same
   path as its body, so an element's result never depends on where it lies. */
static __m256 rlhf__load_part(const float *x, int n, float fill) {
    float buf[8];
    int i;
    for (i = 0; i < 8; i++) buf[i] = i < n ? x[i] : fill;
    return _mm256_loadu_ps(buf);
}
static void rlhf__store_part(float *y, __m256 v, int n) {
    float buf[8];
    _mm256_storeu_ps(buf, v);
    memcpy(y, buf, (size_t)n * sizeof(float));
}
#endif

/* out[i] = exp(x[i]); out, x (n), may be the same array */
RLHF__REF void rlhf__exp_ref(float *out, const float *x, int n) {
    int i;
    for (i = 0; i < n; i++) out[i] = expf(x[i]);
}
RLHF__REF void rlhf__exp(float *out, const float *x, int n) { /* the vector exp over an array: for the tests */
#if defined(RLHF__AVX2)
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, rlhf__exp256(_mm256_loadu_ps(x + i)));
    if (i < n) rlhf__store_part(out + i, rlhf__exp256(rlhf__load_part(x + i, n - i, 0.0f)), n - i);
#else
    rlhf__exp_ref(out, x, n);
#endif
}

/* ---- matmul ----------------------------------------------------------------
   C (M,N) = [C +] A (M,K) * B (K,N), where element (i,k) of A is at
   A[i*rsa + k*csa] and (k,j) of B at B[k*rsb + j*csb]: the strides express
   every transpose the model needs, e.g. for a Conv1D weight W (IC,OC):
     forward        out (BT,OC)  = inp (BT,IC) * W              rsb=OC, csb=1
     backward-data  dinp (BT,IC) = dout (BT,OC) * W^T           rsb=1,  csb=OC
     backward-wt    dW (IC,OC)  += inp^T (IC,BT) * dout (BT,OC) rsa=1,  csa=IC
   The fast path is the BLIS/GotoBLAS scheme: A and B are copied ("packed")
   into contiguous panels of MR rows and NR columns for a KC-deep slice, and a
   register-tiled micro-kernel computes each MR x NR tile of C with all its
   accumulators in registers. Threads split the output tiles, never the K sum,
   so each C element is summed in the same order on any thread count. */
#if defined(RLHF__AVX512)
#define RLHF__MR 8     /* micro-tile rows: 8 AVX-512 registers of accumulators (16 for a pair of tiles) */
#else
#define RLHF__MR 6     /* micro-tile rows: 6 x 2 AVX2 registers (or 6 x 4 NEON) of accumulators */
#endif
#define RLHF__NR 16    /* micro-tile columns */
#define RLHF__KC 256   /* depth of a packed slice: an A panel (6-8 KB) and a B panel (16 KB) fit L1 */
#define RLHF__MC 96    /* rows of A packed at once (96 KB, stays in L2); a multiple of MR */
#define RLHF__NC 1024  /* columns of B packed at once (1 MB; two such packs alternate) */
/* Packed B panels (kc, NR) start RLHF__BPS(kc) floats apart: kc*NR and a pad
   of 32 floats. B is packed row by row (rlhf__gemm_pack_b_rows); without the
   pad (kc*NR floats: 16 KB) a row's stores into its panels all fall in one
   set of L1 and evict each other. */
#define RLHF__BPAD 32
#define RLHF__BPS(kc) ((ptrdiff_t)(kc) * RLHF__NR + RLHF__BPAD)
#define RLHF__BBUF ((size_t)(RLHF__NC / RLHF__NR) * RLHF__BPS(RLHF__KC)) /* floats of one packed B slice */
/* The matmul's workspace (rlhf__gemm_work_alloc): 16 floats of header (work[0]
   holds the threads it has room for; 16 keep the panels 64-byte aligned), the
   two packed B slices (RLHF__BBUF floats each: (KC, NC) and the panels' pads)
   shared by all threads, then one packed A block
   (MC, KC) per thread, so each thread packs the rows it computes into its own
   cache. A matmul runs on at most work[0] threads. */
#define RLHF__GEMM_HEADER 16
#define RLHF__GEMM_WORK_FLOATS(threads) \
    ((size_t)RLHF__GEMM_HEADER + 2 * RLHF__BBUF + (size_t)(threads) * RLHF__MC * RLHF__KC)
/* At most this many rows: the matrix-vector path, no packing, when the
   few-rows paths (rlhf__gemm_few_rows, _cols) do not take them: below
   RLHF__FEW_MIN rows, A's rows not contiguous along k, or B's columns
   contiguous with K past RLHF__FEW_COLS_KMAX. */
#define RLHF__SMALL_M 16

/* The definition: a plain triple loop, summing k in order. */
RLHF__REF void rlhf__gemm_ref(int M, int N, int K, const float *A, ptrdiff_t rsa, ptrdiff_t csa,
                           const float *B, ptrdiff_t rsb, ptrdiff_t csb, float *C, ptrdiff_t ldc,
                           int accumulate) {
    int i, j, k;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            float s = 0.0f;
            for (k = 0; k < K; k++) s += A[i * rsa + k * csa] * B[k * rsb + j * csb];
            C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
        }
}

/* Micro-kernel. tile (MR,NR) = sum over k < kc of Ap[k][r] * Bp[k][c], where
   Ap is a packed A panel (kc,MR) and Bp a packed B panel (kc,NR). */
/* A's element (r, k) of the tile is Ap[r*ars + k*aks]: a packed panel (ars 1,
   aks MR), or A's own rows when they are contiguous along k (ars = the row
   stride, aks 1: no copy needed). B's row k is the NR floats at Bp + k*rsb: a
   packed panel (rsb NR), or 16 columns of a B whose rows are contiguous
   (attention's values). The MR x NR tile goes to C (rows ldc apart), added to
   what C holds when acc: the sum over k first, then C + it. */
RLHF__REF void rlhf__gemm_tile_ref(int kc, const float *Ap, ptrdiff_t ars, ptrdiff_t aks, const float *Bp,
                                   ptrdiff_t rsb, float *C, ptrdiff_t ldc, int acc) {
    float tile[RLHF__MR * RLHF__NR];
    int k, r, c;
    for (r = 0; r < RLHF__MR * RLHF__NR; r++) tile[r] = 0.0f;
    for (k = 0; k < kc; k++)
        for (r = 0; r < RLHF__MR; r++)
            for (c = 0; c < RLHF__NR; c++) tile[r * RLHF__NR + c] += Ap[r * ars + k * aks] * Bp[k * rsb + c];
    for (r = 0; r < RLHF__MR; r++)
        for (c = 0; c < RLHF__NR; c++) C[r * ldc + c] = acc ? C[r * ldc + c] + tile[r * RLHF__NR + c] : tile[r * RLHF__NR + c];
}
#if defined(RLHF__AVX2) && !defined(RLHF__AVX512)
/* one row of a tile, 16 floats, into c: stored, or added to c's */
static void rlhf__tile_row(float *c, __m256 x0, __m256 x1, int acc) {
    if (acc) x0 = _mm256_add_ps(_mm256_loadu_ps(c), x0), x1 = _mm256_add_ps(_mm256_loadu_ps(c + 8), x1);
    _mm256_storeu_ps(c, x0);
    _mm256_storeu_ps(c + 8, x1);
}
#endif
#if defined(RLHF__AVX512)
/* AVX-512: a row of the tile is one 16-lane register. Per k, one load of B's
   row and 8 FMAs, each taking its A element as a broadcast from memory. Tiles
   go in pairs where they can (rlhf__gemm_tile2, below); this one takes the
   last panel of an odd count, and the edges. */
#define RLHF__TILE_FMA(c, p, r) c = _mm512_fmadd_ps(_mm512_set1_ps(p[ka + (r) * ars]), b, c)
#define RLHF__TILE_OUT(r) \
    _mm512_storeu_ps(C + r * ldc, acc ? _mm512_add_ps(_mm512_loadu_ps(C + r * ldc), c##r) : c##r)
static void rlhf__gemm_tile(int kc, const float *Ap, ptrdiff_t ars, ptrdiff_t aks, const float *Bp, ptrdiff_t rsb,
                            float *C, ptrdiff_t ldc, int acc) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    /* rows r, r+1, r+2 at p + ka, p + ka + ars, p + ka + 2*ars: three bases address
       the 8 rows (eight would crowd the general registers with the loop's) */
    const float *p0 = Ap, *p3 = Ap + 3 * ars, *p6 = Ap + 6 * ars;
    ptrdiff_t k, ka;
    for (k = 0, ka = 0; k < kc; k++, ka += aks, Bp += rsb) {
        __m512 b = _mm512_loadu_ps(Bp);
        RLHF__TILE_FMA(c0, p0, 0); RLHF__TILE_FMA(c1, p0, 1); RLHF__TILE_FMA(c2, p0, 2);
        RLHF__TILE_FMA(c3, p3, 0); RLHF__TILE_FMA(c4, p3, 1); RLHF__TILE_FMA(c5, p3, 2);
        RLHF__TILE_FMA(c6, p6, 0); RLHF__TILE_FMA(c7, p6, 1);
    }
    RLHF__TILE_OUT(0); RLHF__TILE_OUT(1); RLHF__TILE_OUT(2); RLHF__TILE_OUT(3);
    RLHF__TILE_OUT(4); RLHF__TILE_OUT(5); RLHF__TILE_OUT(6); RLHF__TILE_OUT(7);
}
/* Two tiles side by side, 8 x 32: B panels Bp and Bp + bps, each row of the
   pair in two registers (16 accumulators, 2 B vectors, 1 broadcast). Each A
   element, broadcast once, feeds two FMAs: 10 loads per 16 FMAs, against 9 per
   8 above (in L1 on an AVX-512 Xeon whose FMA peak is ~215-238 GFLOP/s: ~178
   against ~130 for the 8 x 16 tile above and ~155 for a 12 x 16 one). 8 rows,
   not 12 (12 x 32 is as fast): the row counts of a batch (B*T, C) are
   multiples of 8 more often. The same FMAs on each element as
   two calls of rlhf__gemm_tile: the same bits. */
#define RLHF__TILE_FMA2(r, p, o) do { \
        __m512 a_ = _mm512_set1_ps(p[ka + (o) * ars]); \
        c##r##a = _mm512_fmadd_ps(a_, b0, c##r##a), c##r##b = _mm512_fmadd_ps(a_, b1, c##r##b); \
    } while (0)
#define RLHF__TILE_OUT2(r) do { \
        float *o_ = C + r * ldc; \
        _mm512_storeu_ps(o_, acc ? _mm512_add_ps(_mm512_loadu_ps(o_), c##r##a) : c##r##a); \
        _mm512_storeu_ps(o_ + 16, acc ? _mm512_add_ps(_mm512_loadu_ps(o_ + 16), c##r##b) : c##r##b); \
    } while (0)
static void rlhf__gemm_tile2(int kc, const float *Ap, ptrdiff_t ars, ptrdiff_t aks, const float *Bp, ptrdiff_t bps,
                             ptrdiff_t rsb, float *C, ptrdiff_t ldc, int acc) {
    __m512 c0a = _mm512_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
    __m512 c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
    const float *p0 = Ap, *p3 = Ap + 3 * ars, *p6 = Ap + 6 * ars, *B1 = Bp + bps;
    ptrdiff_t k, ka;
    for (k = 0; k < RLHF__MR; k++) { /* C's 16 lines, on their way while the tile is summed */
        _mm_prefetch((const char *)(C + k * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + k * ldc + 16), _MM_HINT_T0);
    }
    for (k = 0, ka = 0; k < kc; k++, ka += aks, Bp += rsb, B1 += rsb) {
        __m512 b0 = _mm512_loadu_ps(Bp), b1 = _mm512_loadu_ps(B1);
        RLHF__TILE_FMA2(0, p0, 0); RLHF__TILE_FMA2(1, p0, 1); RLHF__TILE_FMA2(2, p0, 2);
        RLHF__TILE_FMA2(3, p3, 0); RLHF__TILE_FMA2(4, p3, 1); RLHF__TILE_FMA2(5, p3, 2);
        RLHF__TILE_FMA2(6, p6, 0); RLHF__TILE_FMA2(7, p6, 1);
    }
    RLHF__TILE_OUT2(0); RLHF__TILE_OUT2(1); RLHF__TILE_OUT2(2); RLHF__TILE_OUT2(3);
    RLHF__TILE_OUT2(4); RLHF__TILE_OUT2(5); RLHF__TILE_OUT2(6); RLHF__TILE_OUT2(7);
}
#undef RLHF__TILE_FMA
#undef RLHF__TILE_OUT
#undef RLHF__TILE_FMA2
#undef RLHF__TILE_OUT2
#define RLHF__PAIRS 1
#else
static void rlhf__gemm_tile(int kc, const float *Ap, ptrdiff_t ars, ptrdiff_t aks, const float *Bp, ptrdiff_t rsb,
                            float *C, ptrdiff_t ldc, int acc) {
#if defined(RLHF__AVX2)
    /* 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers */
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *a0 = Ap, *a1 = a0 + ars, *a2 = a1 + ars, *a3 = a2 + ars, *a4 = a3 + ars, *a5 = a4 + ars;
    ptrdiff_t k, ka;
    for (k = 0, ka = 0; k < kc; k++, ka += aks, Bp += rsb) {
        __m256 b0 = _mm256_loadu_ps(Bp), b1 = _mm256_loadu_ps(Bp + 8), a;
        a = _mm256_broadcast_ss(a0 + ka); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(a1 + ka); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(a2 + ka); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(a3 + ka); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(a4 + ka); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(a5 + ka); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    rlhf__tile_row(C, c00, c01, acc);
    rlhf__tile_row(C + ldc, c10, c11, acc);
    rlhf__tile_row(C + 2 * ldc, c20, c21, acc);
    rlhf__tile_row(C + 3 * ldc, c30, c31, acc);
    rlhf__tile_row(C + 4 * ldc, c40, c41, acc);
    rlhf__tile_row(C + 5 * ldc, c50, c51, acc);
#elif defined(RLHF__NEON)
    /* 24 accumulators + 4 B vectors of the 32 NEON registers */
    float32x4_t acc4[RLHF__MR][4];
    int k, r, q;
    for (r = 0; r < RLHF__MR; r++)
        for (q = 0; q < 4; q++) acc4[r][q] = vdupq_n_f32(0.0f);
    for (k = 0; k < kc; k++, Ap += aks, Bp += rsb) {
        float32x4_t b0 = vld1q_f32(Bp), b1 = vld1q_f32(Bp + 4), b2 = vld1q_f32(Bp + 8), b3 = vld1q_f32(Bp + 12);
        for (r = 0; r < RLHF__MR; r++) {
            float a = Ap[r * ars];
            acc4[r][0] = vfmaq_n_f32(acc4[r][0], b0, a);
            acc4[r][1] = vfmaq_n_f32(acc4[r][1], b1, a);
            acc4[r][2] = vfmaq_n_f32(acc4[r][2], b2, a);
            acc4[r][3] = vfmaq_n_f32(acc4[r][3], b3, a);
        }
    }
    for (r = 0; r < RLHF__MR; r++)
        for (q = 0; q < 4; q++) {
            float *c = C + r * ldc + 4 * q;
            vst1q_f32(c, acc ? vaddq_f32(vld1q_f32(c), acc4[r][q]) : acc4[r][q]);
        }
#else
    rlhf__gemm_tile_ref(kc, Ap, ars, aks, Bp, rsb, C, ldc, acc);
#endif
}
/* Two tiles side by side (B panels Bp and Bp + bps): the AVX2 and NEON kernels
   have no registers to spare for a wider tile, so it would be two calls, and
   two B panels would crowd a 32 KB L1: rlhf__gemm_block pairs tiles only
   with AVX-512 (RLHF__PAIRS). */
#define RLHF__PAIRS 0
static void rlhf__gemm_tile2(int kc, const float *Ap, ptrdiff_t ars, ptrdiff_t aks, const float *Bp, ptrdiff_t bps,
                             ptrdiff_t rsb, float *C, ptrdiff_t ldc, int acc) {
    rlhf__gemm_tile(kc, Ap, ars, aks, Bp, rsb, C, ldc, acc);
    rlhf__gemm_tile(kc, Ap, ars, aks, Bp + bps, rsb, C + RLHF__NR, ldc, acc);
}
#endif

/* The matrix-vector kernel of the decode: C (M,len) [+]= A (M,K) * B (K,len) for few
   rows M, B with contiguous rows (row k at B + k*rsb), C's rows ldc apart.
   Generation is bound by reading the weights once per token, so B must stream
   from memory in long runs: each call reads its len columns of every row.
   Four rows of B per pass: C[i,j] takes four chained FMAs,
   c = fma(a3, b3, fma(a2, b2, fma(a1, b1, fma(a0, b0, c)))), the very roundings
   of four axpy's one after the other, with a quarter of the loads and stores of
   C. The rows of a pass:
     spread 0: k = 4p .. 4p+3, adjacent (one stream from memory);
     spread 1: k = p, p+q, p+2q, p+3q with q = K/4, one from each quarter of B
               (four far-apart streams, which one core reads faster: GPT-2-124M's
               decode on two threads, 8.9-9.6 -> 7.9-8.8 ms a token);
   passes p = 0 .. K/4-1 in turn, then the K%4 last rows one by one.
   rlhf__gemv_k gives that order. The scalar twin (and the columns past the last
   full vector) is one axpy per k in the same order: the same sum, bit for bit. */
static int rlhf__gemv_k(int t, int K, int spread) { /* the t-th row of B the sum takes */
    int np = K / 4;
    if (t >= 4 * np) return t;
    return spread ? t / 4 + t % 4 * np : t;
}
RLHF__REF void rlhf__gemv_ref(int M, int K, int len, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                             ptrdiff_t rsb, float *C, ptrdiff_t ldc, int spread) {
    int i, t, j;
    for (t = 0; t < K; t++) {
        int k = rlhf__gemv_k(t, K, spread);
        for (i = 0; i < M; i++)
            for (j = 0; j < len; j++) C[i * ldc + j] += A[i * rsa + k * csa] * B[k * rsb + j];
    }
}
static void rlhf__gemv(int M, int K, int len, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                       ptrdiff_t rsb, float *C, ptrdiff_t ldc, int spread) {
    int np = K / 4, q = spread ? np : 1, adv = spread ? 1 : 4, p, k, i; /* q: between a pass's rows */
    for (p = 0; p < np; p++) {
        const float *b0 = B + (ptrdiff_t)p * adv * rsb, *b1 = b0 + q * rsb, *b2 = b1 + q * rsb, *b3 = b2 + q * rsb;
        for (i = 0; i < M; i++) {
            const float *a = A + i * rsa + (ptrdiff_t)p * adv * csa; /* seek to A[i, k of b0] */
            float *c = C + i * ldc, s0 = a[0], s1 = a[q * csa], s2 = a[2 * q * csa], s3 = a[3 * q * csa];
#if defined(RLHF__AVX2)
            int j = 0;
            __m256 a0 = _mm256_set1_ps(s0), a1 = _mm256_set1_ps(s1), a2 = _mm256_set1_ps(s2);
            __m256 a3 = _mm256_set1_ps(s3);
            ptrdiff_t next = adv * rsb; /* from a row of this pass to its row in the next */
#if defined(RLHF__AVX512)
            /* 16 lanes, the same FMAs on each element (C in a chain over k): the same bits */
            __m512 w0 = _mm512_set1_ps(s0), w1 = _mm512_set1_ps(s1), w2 = _mm512_set1_ps(s2), w3 = _mm512_set1_ps(s3);
            for (; j + 16 <= len; j += 16) {
                __m512 acc;
                if (p + 1 < np) { /* the next pass's rows, a cache line each */
                    _mm_prefetch((const char *)(b0 + next + j), _MM_HINT_T0);
                    _mm_prefetch((const char *)(b1 + next + j), _MM_HINT_T0);
                    _mm_prefetch((const char *)(b2 + next + j), _MM_HINT_T0);
                    _mm_prefetch((const char *)(b3 + next + j), _MM_HINT_T0);
                }
                acc = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b0 + j), _mm512_loadu_ps(c + j));
                acc = _mm512_fmadd_ps(w1, _mm512_loadu_ps(b1 + j), acc);
                acc = _mm512_fmadd_ps(w2, _mm512_loadu_ps(b2 + j), acc);
                _mm512_storeu_ps(c + j, _mm512_fmadd_ps(w3, _mm512_loadu_ps(b3 + j), acc));
            }
#endif
            for (; j + 8 <= len; j += 8) {
                __m256 acc;
                if (!(j & 15) && p + 1 < np) { /* the next pass's rows, a cache line each while these are */
                    _mm_prefetch((const char *)(b0 + next + j), _MM_HINT_T0); /* read: runs of a few KB end */
                    _mm_prefetch((const char *)(b1 + next + j), _MM_HINT_T0); /* before the hardware's */
                    _mm_prefetch((const char *)(b2 + next + j), _MM_HINT_T0); /* prefetcher has ramped */
                    _mm_prefetch((const char *)(b3 + next + j), _MM_HINT_T0); /* up */
                }
                acc = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b0 + j), _mm256_loadu_ps(c + j));
                acc = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b1 + j), acc);
                acc = _mm256_fmadd_ps(a2, _mm256_loadu_ps(b2 + j), acc);
                _mm256_storeu_ps(c + j, _mm256_fmadd_ps(a3, _mm256_loadu_ps(b3 + j), acc));
            }
            for (; j < len; j++) { /* as rlhf__axpy's tail: multiply, then add */
                c[j] += s0 * b0[j];
                c[j] += s1 * b1[j];
                c[j] += s2 * b2[j];
                c[j] += s3 * b3[j];
            }
#else /* NEON and scalar builds: four axpy's, whatever rounding rlhf__axpy has there */
            rlhf__axpy(c, s0, b0, len);
            rlhf__axpy(c, s1, b1, len);
            rlhf__axpy(c, s2, b2, len);
            rlhf__axpy(c, s3, b3, len);
#endif
        }
    }
    for (k = 4 * np; k < K; k++)
        for (i = 0; i < M; i++) rlhf__axpy(C + i * ldc, A[i * rsa + k * csa], B + k * rsb, len);
}

/* Four dot products of one vector with four others: out[q] = rlhf__dot(a, b[q], n),
   bit for bit (the same two accumulators, tail and horizontal sum per product).
   For the LM head of the decode: four rows of wte are read side by side, four
   streams from memory instead of one, which one core reads faster. */
static void rlhf__dot4(const float *a, const float *b0, const float *b1, const float *b2, const float *b3, int n,
                       float *out) {
#if defined(RLHF__AVX2)
    const float *b[4];
    __m256 s0[4], s1[4];
    int i = 0, q;
    b[0] = b0, b[1] = b1, b[2] = b2, b[3] = b3;
    for (q = 0; q < 4; q++) s0[q] = s1[q] = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        __m256 x0 = _mm256_loadu_ps(a + i), x1 = _mm256_loadu_ps(a + i + 8);
        for (q = 0; q < 4; q++) {
            s0[q] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(b[q] + i), s0[q]);
            s1[q] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(b[q] + i + 8), s1[q]);
        }
    }
    for (; i + 8 <= n; i += 8)
        for (q = 0; q < 4; q++) s0[q] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b[q] + i), s0[q]);
    for (q = 0; q < 4; q++) {
        float s = rlhf__hsum256(_mm256_add_ps(s0[q], s1[q]));
        int t;
        for (t = i; t < n; t++) s += a[t] * b[q][t];
        out[q] = s;
    }
#else
    out[0] = rlhf__dot(a, b0, n), out[1] = rlhf__dot(a, b1, n), out[2] = rlhf__dot(a, b2, n);
    out[3] = rlhf__dot(a, b3, n);
#endif
}

/* Few rows (decode: one row per sequence): stream B once, no packing.
   B with contiguous rows (csb == 1): rlhf__gemv on column slices.
   B with contiguous columns (rsb == 1, csa == 1): dot products.
   scratch: room for M*N floats when RLHF__HALVES says so (the matmul's B buffers).

   Halves of k: for a B of a megabyte or more, with K >= 64 (GPT-2's layers,
   never a tiny model's), the matrix-vector path sums k in two halves,
       C = (C + A[:, :h] B[:h, :]) + A[:, h:] B[h:, :],
   the first half accumulated into C, the second from zero into scratch, then
   added; h = K/2 rounded down to four rows (whole rlhf__gemv passes). The
   split depends on the shape alone, never on the number of threads, so the
   bits do not either. Two threads then each stream one contiguous half of B:
   the layer matmuls of a GPT-2-124M decode read 61-65 GB/s on two threads,
   against 50-52 GB/s when each thread read its half of every B row. Each half
   is summed with rlhf__gemv's spread order (four far-apart streams a thread);
   smaller B's keep the adjacent order, and a tiny model's bits with it. */
/* (2*KC*NC, not the B buffers' 2*RLHF__BBUF floats: the bound fixes which sums take which order) */
#define RLHF__HALVES(M, N, K) \
    ((K) >= 64 && (size_t)(K) * (size_t)(N) >= ((size_t)1 << 18) && \
     (size_t)(M) * (size_t)(N) <= 2 * (size_t)RLHF__KC * RLHF__NC)
#define RLHF__GEMV_CFLOATS 4096 /* floats of C a column slice holds at most (16 KB: a third of L1) */
static void rlhf__gemm_small(int M, int N, int K, const float *A, ptrdiff_t rsa, ptrdiff_t csa,
                             const float *B, ptrdiff_t rsb, ptrdiff_t csb, float *C, ptrdiff_t ldc,
                             int accumulate, float *scratch) {
    if (csb == 1) {
        /* Items: a half of k (or all of it) and a slice of columns, whole cache
           lines (16 floats) wide, as few slices as keep every thread busy, so
           each thread streams its part of every B row in one run (a GPT-2 layer:
           up to 12 KB): the hardware prefetchers follow long runs best. C's slice
           (M rows) is read and written once per four B rows, so slices are also
           narrow enough for it to stay in L1 (RLHF__GEMV_CFLOATS): GPT-2-124M's
           qkv and fc (2304 and 3072 columns) at 4 rows, ms for 12 layers, best
           of three: 8.5 -> 6.4 and 14.9 -> 10.7 on one thread, 4.4 -> 3.3 and
           7.7 -> 5.1 on two; at 8 rows 16.0 -> 10.4 and 22.5 -> 17.0, 8.4 -> 5.2
           and 11.8 -> 8.2. The column slices never change the sum's order. */
        int halves = RLHF__HALVES(M, N, K) ? 2 : 1, h = halves == 2 ? K / 2 / 4 * 4 : K;
        int threads = rlhf_num_threads(), cols = (threads + halves - 1) / halves;
        int per = cols * ((N + 8192 * cols - 1) / (8192 * cols)), fit = RLHF__GEMV_CFLOATS / M / 16 * 16;
        int CH, nchunks;
        if ((double)per * fit < N) per = ((N + fit - 1) / fit + cols - 1) / cols * cols; /* still a share a thread */
        CH = ((N + per - 1) / per + 15) / 16 * 16;
        nchunks = (N + CH - 1) / CH;
        RLHF__OMP(omp parallel num_threads(rlhf__nt((double)M * N * K / 8.0)))
        {
            int item, piece, np = (N + 255) / 256;
            RLHF__OMP(omp for schedule(dynamic))
            for (item = 0; item < halves * nchunks; item++) {
                int half = item % halves, j0 = item / halves * CH, len = N - j0 < CH ? N - j0 : CH, i;
                int k0 = half ? h : 0, kn = half ? K - h : h;
                float *c = half ? scratch + j0 : C + j0;
                ptrdiff_t ld = half ? N : ldc;
                if (half || !accumulate)
                    for (i = 0; i < M; i++) memset(c + i * ld, 0, (size_t)len * sizeof(float));
                rlhf__gemv(M, kn, len, A + k0 * csa, rsa, csa, B + k0 * rsb + j0, rsb, c, ld, halves == 2);
            }
            /* C += the second half, once every item is done (the barrier above),
               in runs of 256 columns shared among the threads */
            RLHF__OMP(omp for schedule(static) nowait)
            for (piece = 0; piece < (halves == 2 ? M * np : 0); piece++) {
                int i = piece / np, j0 = piece % np * 256, len = N - j0 < 256 ? N - j0 : 256, j;
                float *c = C + i * ldc + j0;
                const float *t = scratch + (ptrdiff_t)i * N + j0;
                for (j = 0; j < len; j++) c[j] += t[j];
            }
        }
    } else {
        /* Four far-apart columns at a time (rlhf__dot4): group g is columns g, g+Q,
           g+2Q and g+3Q with Q = ceil(N/4), so a thread's run of groups reads four
           distant runs of B side by side; the last groups may have fewer (n).
           Threads take runs of about Q/16 groups (GPT-2's LM head: 785 groups, four
           runs of 2.4 MB): with runs of 4 groups two threads read alternate 12 KB
           of each run, and the decode on two threads took 14.0 ms a token, 11.6 ms
           with long runs (a dynamic split still, for a thread that loses its CPU). */
        int Q = (N + 3) / 4, g, run = Q / 16 < 4 ? 4 : Q / 16;
        (void)run; /* unused without OpenMP */
        RLHF__OMP(omp parallel for schedule(dynamic, run) num_threads(rlhf__nt((double)M * N * K / 8.0)))
        for (g = 0; g < Q; g++) {
            int n = 1, i, q;
            while (n < 4 && g + n * Q < N) n++;
            for (i = 0; i < M; i++) {
                float d[4];
                if (n == 4)
                    rlhf__dot4(A + i * rsa, B + g * csb, B + (g + Q) * csb, B + (g + 2 * Q) * csb,
                               B + (g + 3 * Q) * csb, K, d);
                else
                    for (q = 0; q < n; q++) d[q] = rlhf__dot(A + i * rsa, B + (g + q * Q) * csb, K);
                for (q = 0; q < n; q++) {
                    float *c = C + i * ldc + g + q * Q;
                    *c = accumulate ? *c + d[q] : d[q];
                }
            }
        }
    }
}

/* Half a B panel from 8 columns of B that are contiguous along k (B stored
   transposed: the backward-data): dst[k*ldd + c] = src[c][k] for c < 8, k < kc
   (ldd: NR in a panel; attention's keys transposed, rlhf__att_transpose).
   The SIMD path transposes 8 x 8 blocks in registers (two rounds of unpacks
   and shuffles, then a swap of 128-bit halves). */
static void rlhf__pack_cols8(float *dst, ptrdiff_t ldd, const float *const *src, int kc) {
    int k = 0, c;
#if defined(RLHF__AVX2)
    for (; k + 8 <= kc; k += 8) {
        __m256 x[8], t[8], u[8];
        for (c = 0; c < 8; c++) x[c] = _mm256_loadu_ps(src[c] + k);
        for (c = 0; c < 8; c += 2) t[c] = _mm256_unpacklo_ps(x[c], x[c + 1]), t[c + 1] = _mm256_unpackhi_ps(x[c], x[c + 1]);
        for (c = 0; c < 8; c += 4) {
            u[c] = _mm256_shuffle_ps(t[c], t[c + 2], 0x44), u[c + 1] = _mm256_shuffle_ps(t[c], t[c + 2], 0xEE);
            u[c + 2] = _mm256_shuffle_ps(t[c + 1], t[c + 3], 0x44), u[c + 3] = _mm256_shuffle_ps(t[c + 1], t[c + 3], 0xEE);
        }
        for (c = 0; c < 4; c++) { /* x[i] becomes element k+i of columns 0..7 */
            _mm256_storeu_ps(dst + (k + c) * ldd, _mm256_permute2f128_ps(u[c], u[c + 4], 0x20));
            _mm256_storeu_ps(dst + (k + c + 4) * ldd, _mm256_permute2f128_ps(u[c], u[c + 4], 0x31));
        }
    }
#endif
    for (; k < kc; k++)
        for (c = 0; c < 8; c++) dst[k * ldd + c] = src[c][k];
}

/* One B panel (kc, NR) at (pc, j0) into dst, zero-padded past N. */
static void rlhf__gemm_pack_b_panel(float *dst, int kc, int pc, int j0, int N, const float *B, ptrdiff_t rsb,
                                    ptrdiff_t csb) {
    int k, c;
    if (j0 + RLHF__NR <= N && csb == 1) { /* full panel, rows contiguous: copy 16-float rows */
        for (k = 0; k < kc; k++) memcpy(dst + k * RLHF__NR, B + (pc + k) * rsb + j0, RLHF__NR * sizeof(float));
    } else if (j0 + RLHF__NR <= N && rsb == 1) { /* full panel, columns contiguous: transposed */
        const float *src[RLHF__NR];
        for (c = 0; c < RLHF__NR; c++) src[c] = B + (j0 + c) * csb + pc;
        rlhf__pack_cols8(dst, RLHF__NR, src, kc);
        rlhf__pack_cols8(dst + 8, RLHF__NR, src + 8, kc);
    } else {
        for (k = 0; k < kc; k++)
            for (c = 0; c < RLHF__NR; c++)
                dst[k * RLHF__NR + c] = j0 + c < N ? B[(pc + k) * rsb + (j0 + c) * csb] : 0.0f;
    }
}
/* Rows [k0, k1) of B (kc, np panels of NR columns) at (pc, j0), B's rows
   contiguous, packed as rlhf__gemm_pack_b_panel packs them (zero past N) but
   row by row: each row's run of np*NR columns is read front to back, one
   stream from memory a row, into panels RLHF__BPS(kc) floats apart. Panel by
   panel, each row gave the pack one line (64 bytes) at a time, rows 1-12 KB
   apart: no stream the prefetcher follows. GPT-2-124M's qkv weights (12
   layers, one thread) packed in 8.0-8.3 ms panel by panel without the pad,
   6.1-6.5 row by row with it. */
static void rlhf__gemm_pack_b_rows(float *Bp, int kc, int k0, int k1, int np, int pc, int j0, int N, const float *B,
                                   ptrdiff_t rsb) {
    int k, jp, c;
    for (k = k0; k < k1; k++) {
        const float *row = B + (ptrdiff_t)(pc + k) * rsb;
        for (jp = 0; jp < np; jp++) {
            float *dst = Bp + jp * RLHF__BPS(kc) + (ptrdiff_t)k * RLHF__NR;
            int j = j0 + jp * RLHF__NR;
            if (j + RLHF__NR <= N) memcpy(dst, row + j, RLHF__NR * sizeof(float));
            else
                for (c = 0; c < RLHF__NR; c++) dst[c] = j + c < N ? row[j + c] : 0.0f;
        }
    }
}
/* The next unit of a queue shared by the team: its counter, taken atomically */
static int rlhf__take(int *next) {
    int u;
    RLHF__OMP(omp atomic capture)
    u = (*next)++;
    return u;
}
/* Homes: the H threads of a matmul's team (H 1: one shared queue) each own a
   range of B panels, which they pack and then multiply by every row block, so
   a core reads from its own L2 the panels it packed (a shared queue handed each
   thread parts of every panel range, packed by either core: GPT-2-124M's 256-
   row matmuls, 2 threads, 4-12% slower). A thread that has emptied its home's
   queues takes from the next home's, so a thread without a CPU holds back
   none of the work. The ns parts of the B panels, in home order: part p is
   home p*H/ns's, parts [RLHF__HOME(h), RLHF__HOME(h + 1)) are home h's. */
#define RLHF__HOME(h, ns, H) (((h) * (ns) + (H) - 1) / (H))
/* Inside the matmul's parallel region: pack B (kc, nc) at (pc, jc) into np
   panels (kc, NR), RLHF__BPS(kc) floats apart. B's rows contiguous (csb 1): a
   home's panels in runs of RLHF__PACK_ROWS rows (fewer, down to 8, to give a
   large team two runs a thread), row by row; otherwise panel by panel. The
   units of home h are counted by q[h][0]; thread tid starts at home tid % H. */
#define RLHF__PACK_ROWS 32
static void rlhf__gemm_pack_b(float *Bp, int np, int ns, int H, int (*q)[2], int kc, int pc, int jc, int N,
                              const float *B, ptrdiff_t rsb, ptrdiff_t csb) {
    int len = RLHF__PACK_ROWS, nruns, d, u;
    while (csb == 1 && len > 8 && (kc + len - 1) / len < 2 * RLHF__NTHREADS()) len /= 2;
    nruns = (kc + len - 1) / len;
    for (d = 0; d < H; d++) {
        int h = (RLHF__TID() + d) % H;
        int lo = (int)((long)np * RLHF__HOME(h, ns, H) / ns), hi = (int)((long)np * RLHF__HOME(h + 1, ns, H) / ns);
        while ((u = rlhf__take(&q[h][0])) < (csb == 1 ? nruns : hi - lo)) {
            int k0 = u * len, k1 = k0 + len < kc ? k0 + len : kc;
            if (csb == 1)
                rlhf__gemm_pack_b_rows(Bp + lo * RLHF__BPS(kc), kc, k0, k1, hi - lo, pc, jc + lo * RLHF__NR, N, B,
                                       rsb);
            else
                rlhf__gemm_pack_b_panel(Bp + (ptrdiff_t)(lo + u) * RLHF__BPS(kc), kc, pc, jc + (lo + u) * RLHF__NR,
                                        N, B, rsb, csb);
        }
    }
}
/* pack A (mc, kc) at (ic, pc) into mp panels (kc, MR), zero-padded past M:
   by one thread, into its own block. A full panel of rows contiguous along k
   (csa 1: the forward and the backward-data) is not copied: the micro-kernel
   reads it in place (panel ip's slot is left unused). Columns contiguous
   (rsa 1: A^T in the backward-weights) and every panel full: row by row, as
   rlhf__gemm_pack_b_rows does, for the same reason (config S's 1024 x 256
   dW of fc.proj packed its A in 22% of its time panel by panel). */
static void rlhf__gemm_pack_a(float *Ap, int mp, int kc, int ic, int pc, int M, const float *A, ptrdiff_t rsa,
                              ptrdiff_t csa) {
    int ip, k, r;
    if (rsa == 1 && csa != 1 && ic + mp * RLHF__MR <= M) {
        for (k = 0; k < kc; k++) {
            const float *src = A + ic + (ptrdiff_t)(pc + k) * csa;
            for (ip = 0; ip < mp; ip++)
                memcpy(Ap + ((ptrdiff_t)ip * kc + k) * RLHF__MR, src + ip * RLHF__MR, RLHF__MR * sizeof(float));
        }
        return;
    }
    for (ip = 0; ip < mp; ip++) {
        float *dst = Ap + (ptrdiff_t)ip * kc * RLHF__MR;
        int i0 = ic + ip * RLHF__MR;
        if (i0 + RLHF__MR <= M && csa == 1) continue;
        if (i0 + RLHF__MR <= M && rsa == 1) { /* full panel, columns contiguous: MR floats a step */
            for (k = 0; k < kc; k++) memcpy(dst + k * RLHF__MR, A + i0 + (pc + k) * csa, RLHF__MR * sizeof(float));
        } else {
            for (k = 0; k < kc; k++)
                for (r = 0; r < RLHF__MR; r++)
                    dst[k * RLHF__MR + r] = i0 + r < M ? A[(i0 + r) * rsa + (pc + k) * csa] : 0.0f;
        }
    }
}
/* C's start for a linear layer (rlhf__linear_forward): the first K slice adds
   its products to residual + bias (res rows ldc apart, as C's; either NULL:
   0), set tile by tile just before the tile is computed, from L1, instead of
   in a pass over all of C first (that pass wrote and read back 3-4 MB per
   matmul of config S: ~1.5% of its training step). */
typedef struct rlhf__cinit { const float *res, *bias; } rlhf__cinit;
/* C's rows [i0, i0 + rows) x columns [j0, j0 + cols) = res + bias: as a copy
   of res (or zeros) then += bias, the same roundings as the pass it replaces */
static void rlhf__cinit_tile(const rlhf__cinit *in, float *C, ptrdiff_t ldc, int i0, int rows, int j0, int cols) {
    int r, c;
#if defined(RLHF__AVX2)
    if (cols == RLHF__NR && in->res && in->bias) { /* a whole tile's width: two vectors a row */
        __m256 b0 = _mm256_loadu_ps(in->bias + j0), b1 = _mm256_loadu_ps(in->bias + j0 + 8);
        for (r = 0; r < rows; r++) {
            float *o = C + (i0 + r) * ldc + j0;
            const float *res = in->res + (i0 + r) * ldc + j0;
            _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(res), b0));
            _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(res + 8), b1));
        }
        return;
    }
    if (cols == RLHF__NR && in->bias) { /* 0 + bias: +0 where the bias is -0, as the pass gave */
        __m256 z = _mm256_setzero_ps(), b0 = _mm256_add_ps(z, _mm256_loadu_ps(in->bias + j0));
        __m256 b1 = _mm256_add_ps(z, _mm256_loadu_ps(in->bias + j0 + 8));
        for (r = 0; r < rows; r++) {
            float *o = C + (i0 + r) * ldc + j0;
            _mm256_storeu_ps(o, b0);
            _mm256_storeu_ps(o + 8, b1);
        }
        return;
    }
#endif
    for (r = 0; r < rows; r++) {
        float *o = C + (i0 + r) * ldc + j0;
        const float *res = in->res ? in->res + (i0 + r) * ldc + j0 : NULL, *b = in->bias ? in->bias + j0 : NULL;
        if (res && b)
            for (c = 0; c < cols; c++) o[c] = res[c] + b[c];
        else if (b)
            for (c = 0; c < cols; c++) o[c] = 0.0f + b[c];
        else if (res)
            for (c = 0; c < cols; c++) o[c] = res[c];
        else
            for (c = 0; c < cols; c++) o[c] = 0.0f;
    }
}

/* The tiles of C in rows [ic, ic + mp*MR) and B panels [jp0, jp1) at jc, B-panel-major (a run of
   tiles reuses one B panel, or a pair of them with RLHF__PAIRS, from L1; the A block stays in L2).
   Each tile is computed whole, in the same order whoever computes it, so C has the same bits on
   any thread count. On the first K slice, a tile starts from init when there is one (then
   overwrite is 0). B panel jp starts at Bp + jp*bps (RLHF__BPS(kc) from the packs). */
static void rlhf__gemm_block(const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *Ap, const float *Bp,
                             ptrdiff_t bps, int jp0, int jp1, int mp, int kc, int ic, int pc, int jc, int M, int N,
                             float *C, ptrdiff_t ldc, int overwrite, const rlhf__cinit *init) {
    int tj, ti, r, q, step;
    for (tj = jp0; tj < jp1; tj += step) {
        step = RLHF__PAIRS && tj + 1 < jp1 && jc + (tj + 2) * RLHF__NR <= N ? 2 : 1; /* tiles in pairs */
        for (ti = 0; ti < mp; ti++) {
            int i0 = ic + ti * RLHF__MR, rows = M - i0 < RLHF__MR ? M - i0 : RLHF__MR;
            int inplace = rows == RLHF__MR && csa == 1; /* a full panel of rows contiguous along k: read in place */
            const float *a = inplace ? A + i0 * rsa + pc : Ap + (ptrdiff_t)ti * kc * RLHF__MR;
            ptrdiff_t ars = inplace ? rsa : 1, aks = inplace ? 1 : RLHF__MR;
            if (step == 2 && rows == RLHF__MR) { /* a whole pair: straight into C */
                int j0 = jc + tj * RLHF__NR;
                if (init && pc == 0) {
                    rlhf__cinit_tile(init, C, ldc, i0, rows, j0, RLHF__NR);
                    rlhf__cinit_tile(init, C, ldc, i0, rows, j0 + RLHF__NR, RLHF__NR);
                }
                rlhf__gemm_tile2(kc, a, ars, aks, Bp + tj * bps, bps, RLHF__NR, C + i0 * ldc + j0, ldc, !overwrite);
                continue;
            }
            for (q = tj; q < tj + step; q++) {
                float tile[RLHF__MR * RLHF__NR];
                int j0 = jc + q * RLHF__NR, cols = N - j0 < RLHF__NR ? N - j0 : RLHF__NR;
                int full = rows == RLHF__MR && cols == RLHF__NR;
                float *out = full ? C + i0 * ldc + j0 : tile; /* a tile at the edge goes through a buffer */
                if (init && pc == 0) rlhf__cinit_tile(init, C, ldc, i0, rows, j0, cols);
                rlhf__gemm_tile(kc, a, ars, aks, Bp + q * bps, RLHF__NR, out,
                                full ? ldc : RLHF__NR, full && !overwrite);
                if (full) continue;
                for (r = 0; r < rows; r++) { /* the edge tile's rows and columns inside C */
                    float *crow = C + (i0 + r) * ldc + j0;
                    const float *trow = tile + r * RLHF__NR;
                    int c;
                    for (c = 0; c < cols; c++) crow[c] = overwrite ? trow[c] : crow[c] + trow[c];
                }
            }
        }
    }
}

/* Few rows (RLHF__FEW_MIN to RLHF__FEW_MAX: the decode of 12 to 64 sequences,
   a row each) whose A rows are contiguous along k (csa 1). Packing all of B
   copies all of it (the weights) for a few rows' work, and the matrix-vector
   path reads and writes C once per four rows of B, so these paths read B once,
   each part just before the micro-kernel takes it:
   - B's rows contiguous (csb 1: the layers' weights), rlhf__gemm_few_rows:
     the threads take runs of RLHF__FEW_RUN panels of 16 columns (or half
     that, rlhf__few_run_len) as they ask; for each K slice in order, a thread
     packs the run's slice of B into its own part of the shared B buffers,
     row by row (a 1 KB run of each row, 512 B in runs of 8, front to back;
     the micro-kernel reading B in place, a pair of panels (128 bytes of each
     of 256 rows) at a time, took B from memory at half the speed), then every
     row panel of A passes over it, A read in place (a ragged last panel
     packed).
   - B's columns contiguous (rsb 1: the LM head, wte (V,C) read as B = wte^T),
     rlhf__gemm_few_cols: the product is taken transposed,
         C^T (N,M) = B^T (N,K) A^T (K,M),
     B^T's rows are contiguous, so they are the micro-kernel's A, read in
     place MR rows (vocabulary entries) at a time, and A^T (K,M) is packed by
     the threads first, shared (in the B buffers). A thread takes a run of
     RLHF__FEW_RUN row panels of B^T; for each pair of A^T's panels and each K
     slice, the slice (32 columns: 32 KB) stays in L1 while the run's row
     panels pass over it; the run's tiles of C^T are summed in a buffer, then
     stored into C transposed. With one panel (12-16 rows) all of A^T (48 KB
     at K 768) stays in cache, and each row panel of B^T is read front to
     back, its K slices in a row: 16 sequences' LM head, 43 -> 49 GFLOP/s on
     one thread, 84 -> 96 on two (against slice by slice). The same path
     takes up to RLHF__FEW_COLS_MMAX rows (a training batch of GPT-2-124M's
     shape, a PPO minibatch) when B^T is larger than the B buffers (weights
     that come from memory: the LM head, dX = dY W^T of the wider layers) and
     A^T fits them: reading B^T once in place beat packing it, GFLOP/s on 1 /
     2 threads (both paths on the same operands, best of 7 calls): the LM
     head at 256 rows (N 50257, K 768) 95 -> 115 / 192 -> 229 GFLOP/s, at 512
     rows 124 -> 145 / 235 -> 283; dX of fc.proj (256, 3072, 768) 119 -> 137
     / 248 -> 276. With B^T in cache (config S's 256-column weights at 364 to
     1024 rows) packing was 5-20% faster. This path does not time its threads
     for rlhf__team_note (nor does few_rows): the team is judged on the other
     matmuls of a step.
   Either way each C element is the sum of its K slices in rlhf__gemm's order,
   each slice summed over k by the same micro-kernel, and a*b is b*a: the bits
   of the packed path, on any thread count. GPT-2-124M's decode (ms a step,
   best of 12, against the matrix-vector path and the packed one before):
   16 sequences 151 -> 84-88 on one thread, 79 -> 53-57 on two; 64 sequences
   249 -> 168 and 130 -> 107. (Then, with the pad of rlhf__gemm_pack_b_rows
   and B^T front to back, 16 sequences: 84-85 -> 81-83 and 54-55 -> 52-53.)
   Below 12 rows the matrix-vector path is as fast or faster (8 rows: 86 ->
   76 on one thread but 44 -> 50 on two). */
#define RLHF__FEW_MIN 12
#define RLHF__FEW_MAX 64 /* at most RLHF__MC: all row panels fit one thread's A block */
#define RLHF__FEW_RUN 16 /* B panels a thread takes at once (256 columns; its pack: ~258 KB), or row panels of B^T */
/* The deepest K of rlhf__gemm_few_cols: the ragged last rows of B^T, packed
   over all of K (K*MR floats), fit a thread's A block; A^T packed (K * 64
   floats at most up to RLHF__FEW_MAX rows) then fits the B buffers too
   (past it, rlhf__few_cols_big checks that it fits). */
#define RLHF__FEW_COLS_KMAX (RLHF__MC * RLHF__KC / RLHF__MR)
#define RLHF__FEW_COLS_MMAX 512 /* rows of rlhf__gemm_few_cols when B^T is larger than the B buffers */
/* Panels a run of rlhf__gemm_few_rows takes: RLHF__FEW_RUN, or half that when
   it evens out the threads' shares (the most runs a thread gets, times their
   width): GPT-2's 768 columns (48 panels) make 3 runs of 16 for 2 threads, one
   thread idle a third of the time; 6 runs of 8 split evenly. */
static int rlhf__few_run_len(int np, int nt) {
    int half = RLHF__FEW_RUN / 2, whole = (np + RLHF__FEW_RUN - 1) / RLHF__FEW_RUN, halves = (np + half - 1) / half;
    return nt > 1 && (halves + nt - 1) / nt * half < (whole + nt - 1) / nt * RLHF__FEW_RUN ? half : RLHF__FEW_RUN;
}
static void rlhf__gemm_few_rows(int M, int N, int K, const float *A, ptrdiff_t rsa, const float *B, ptrdiff_t rsb,
                                float *C, ptrdiff_t ldc, int accumulate, float *Bbufs, float *Ablocks, int nt) {
    int np = (N + RLHF__NR - 1) / RLHF__NR, mp = (M + RLHF__MR - 1) / RLHF__MR, rl, nruns;
    int room = (int)(2 * RLHF__BBUF / (RLHF__FEW_RUN * RLHF__BPS(RLHF__KC)));
    if (nt > room) nt = room; /* the runs' packs the B buffers hold */
    rl = rlhf__few_run_len(np, nt), nruns = (np + rl - 1) / rl;
    RLHF__OMP(omp parallel num_threads(nt))
    {
        int run, pc, tid = RLHF__TID();
        float *Ap = Ablocks + (size_t)tid * RLHF__MC * RLHF__KC; /* A's ragged row panel, packed */
        float *Bp = Bbufs + tid * RLHF__FEW_RUN * RLHF__BPS(RLHF__KC); /* the run's B panels */
        RLHF__OMP(omp for schedule(dynamic))
        for (run = 0; run < nruns; run++) {
            int jp0 = run * rl, n = np - jp0 < rl ? np - jp0 : rl;
            for (pc = 0; pc < K; pc += RLHF__KC) {
                int kc = K - pc < RLHF__KC ? K - pc : RLHF__KC;
                rlhf__gemm_pack_a(Ap, mp, kc, 0, pc, M, A, rsa, 1); /* the ragged row panel, if any */
                rlhf__gemm_pack_b_rows(Bp, kc, 0, kc, n, pc, jp0 * RLHF__NR, N, B, rsb);
                rlhf__gemm_block(A, rsa, 1, Ap, Bp, RLHF__BPS(kc), 0, n, mp, kc, 0, pc, jp0 * RLHF__NR, M, N, C,
                                 ldc, pc == 0 && !accumulate, NULL);
            }
        }
    }
}
/* (the layout of rlhf__gemm_few_cols' packed A^T: the panel of columns [16 jp,
   16 jp + 16) of the K slice at pc starts at pc*npan*NR + jp*kc*NR) */
static void rlhf__gemm_few_cols(int M, int N, int K, const float *A, ptrdiff_t rsa, const float *B, ptrdiff_t csb,
                                float *C, ptrdiff_t ldc, int accumulate, float *At, float *Ablocks, int nt) {
    int npan = (M + RLHF__NR - 1) / RLHF__NR, nslice = (K + RLHF__KC - 1) / RLHF__KC;
    int nrp = (N + RLHF__MR - 1) / RLHF__MR, nruns = (nrp + RLHF__FEW_RUN - 1) / RLHF__FEW_RUN;
    (void)nt; /* unused without OpenMP */
    RLHF__OMP(omp parallel num_threads(nt))
    {
        int item, run;
        float *Ae = Ablocks + (size_t)RLHF__TID() * RLHF__MC * RLHF__KC; /* B^T's ragged last rows, packed */
        RLHF__OMP(omp for schedule(static)) /* A^T, then the barrier */
        for (item = 0; item < nslice * npan; item++) {
            int pc = item / npan * RLHF__KC, jp = item % npan, kc = K - pc < RLHF__KC ? K - pc : RLHF__KC;
            rlhf__gemm_pack_b_panel(At + (ptrdiff_t)pc * npan * RLHF__NR + (ptrdiff_t)jp * kc * RLHF__NR, kc, pc,
                                    jp * RLHF__NR, M, A, 1, rsa);
        }
        RLHF__OMP(omp for schedule(dynamic))
        for (run = 0; run < nruns; run++) {
            /* the run's rows of C^T, two A^T panels wide (MR x 32 floats a row panel) */
            float buf[RLHF__FEW_RUN * RLHF__MR * 2 * RLHF__NR];
            int rp0 = run * RLHF__FEW_RUN, nr = nrp - rp0 < RLHF__FEW_RUN ? nrp - rp0 : RLHF__FEW_RUN;
            int n0 = rp0 * RLHF__MR, rows = N - n0 < nr * RLHF__MR ? N - n0 : nr * RLHF__MR, jq, pc, rp, r, c, st;
            if (rows < nr * RLHF__MR) /* every K slice of the ragged last panel: slice pc at Ae + pc*MR */
                for (pc = 0; pc < K; pc += RLHF__KC)
                    rlhf__gemm_pack_a(Ae + (ptrdiff_t)pc * RLHF__MR, 1, K - pc < RLHF__KC ? K - pc : RLHF__KC,
                                      n0 + (nr - 1) * RLHF__MR, pc, N, B, csb, 1);
            for (jq = 0; jq < npan; jq += 2) { /* a pair of A^T panels (or the last one) */
                int cols = M - jq * RLHF__NR < 2 * RLHF__NR ? M - jq * RLHF__NR : 2 * RLHF__NR;
                if (accumulate && (rows < nr * RLHF__MR || cols < 2 * RLHF__NR)) /* the kernel adds to all of it */
                    memset(buf, 0, sizeof buf);
                if (accumulate)
                    for (r = 0; r < rows; r++)
                        for (c = 0; c < cols; c++) buf[r * 2 * RLHF__NR + c] = C[(jq * RLHF__NR + c) * ldc + n0 + r];
                for (st = 0; st < nr * nslice; st++) { /* each (row panel, K slice); slices in order */
                    int kc, acc, full;
                    const float *a, *b;
                    ptrdiff_t ars, aks;
                    float *t;
                    if (npan == 1) /* A^T whole (16 columns) stays in cache: B^T's rows front to back */
                        rp = st / nslice, pc = st % nslice * RLHF__KC;
                    else /* a slice of A^T (32 columns) stays in L1 while the row panels pass over it */
                        rp = st % nr, pc = st / nr * RLHF__KC;
                    kc = K - pc < RLHF__KC ? K - pc : RLHF__KC, acc = accumulate || pc > 0;
                    b = At + (ptrdiff_t)pc * npan * RLHF__NR + (ptrdiff_t)jq * kc * RLHF__NR;
                    full = n0 + (rp + 1) * RLHF__MR <= N;
                    a = full ? B + (n0 + rp * RLHF__MR) * csb + pc : Ae + (ptrdiff_t)pc * RLHF__MR;
                    ars = full ? csb : 1, aks = full ? 1 : RLHF__MR;
                    t = buf + rp * RLHF__MR * 2 * RLHF__NR;
                    if (jq + 1 < npan)
                        rlhf__gemm_tile2(kc, a, ars, aks, b, (ptrdiff_t)kc * RLHF__NR, RLHF__NR, t, 2 * RLHF__NR, acc);
                    else
                        rlhf__gemm_tile(kc, a, ars, aks, b, RLHF__NR, t, 2 * RLHF__NR, acc);
                }
                for (c = 0; c < cols; c++) /* C (i, n) = C^T (n, i) */
                    for (r = 0; r < rows; r++) C[(jq * RLHF__NR + c) * ldc + n0 + r] = buf[r * 2 * RLHF__NR + c];
            }
        }
    }
}

/* Past RLHF__FEW_MAX rows, rlhf__gemm_few_cols takes a product (no start
   to set: init NULL) of at most RLHF__FEW_COLS_MMAX rows whose B^T (N,K) is
   larger than the B buffers, whose A^T (K, M up to whole panels) fits them,
   and whose N gives each of the nt threads two runs of row panels at least. */
static int rlhf__few_cols_big(int M, int N, int K, const rlhf__cinit *init, int nt) {
    double room = 2.0 * (double)RLHF__BBUF, panels = (double)((M + RLHF__NR - 1) / RLHF__NR);
    return !init && M <= RLHF__FEW_COLS_MMAX && (double)N * K > room && (double)K * panels * RLHF__NR <= room &&
           (double)N >= 2.0 * nt * RLHF__FEW_RUN * RLHF__MR;
}

/* The workspace of rlhf__gemm for the threads of now (at least 1), or NULL */
static float *rlhf__gemm_work_alloc(void) {
    int threads = rlhf_num_threads() < 1 ? 1 : rlhf_num_threads();
    float *w = rlhf__alloc_floats(RLHF__GEMM_WORK_FLOATS(threads));
    if (w) w[0] = (float)threads;
    return w;
}

/* The fast path. work from rlhf__gemm_work_alloc. One parallel region; per
   (jc, pc) slice the threads pack B together, then take work items as they
   ask (dynamic: a thread without a CPU takes fewer): an item is a block of MC
   rows (or, when there are too few blocks to keep every thread busy, a part
   of its B panels), whose A rows the thread packs into its own block (once
   for parts of one block it takes in a row) and multiplies by the shared B
   panels. One barrier a slice, after packing B: slices alternate between two
   B buffers, so a thread done with its items goes on to pack the next slice's
   B while the others finish (the buffer it packs into was last read in the
   slice before, which every thread left before that barrier). Each thread
   times its work for rlhf__team_note, which shrinks the team while a thread
   has no CPU. init (may be NULL): C's start, as rlhf__cinit says; then
   accumulate is ignored. */
static void rlhf__gemm_init(int M, int N, int K, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                            ptrdiff_t rsb, ptrdiff_t csb, float *C, ptrdiff_t ldc, int accumulate,
                            const rlhf__cinit *init, float *work) {
    float *Bbufs = work + RLHF__GEMM_HEADER, *Ablocks = Bbufs + 2 * RLHF__BBUF;
    double unit[RLHF__TEAM_MAX] = {0.0}, busy[RLHF__TEAM_MAX] = {0.0}, t_start = RLHF__WTIME();
    int threads = 1, nt, queues[3][RLHF__TEAM_MAX][2]; /* by slice mod 3 and home: next B pack unit, next item */
    if (M <= 0 || N <= 0) return;
    if (init && (K <= 0 || M <= RLHF__FEW_MAX)) { /* no tiles (or few): C's start in one pass */
        int i;
        for (i = 0; i < M; i++) rlhf__cinit_tile(init, C, ldc, i, 1, 0, N);
        init = NULL, accumulate = 1;
    }
    if (init) accumulate = 1;
    if (K <= 0) {
        int i;
        if (!accumulate)
            for (i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    nt = rlhf__nt((double)M * N * K / 32.0);
    if (nt > (int)work[0]) nt = (int)work[0]; /* the A blocks there is room for */
    if (M >= RLHF__FEW_MIN && M <= RLHF__FEW_MAX && csa == 1 && csb == 1) {
        rlhf__gemm_few_rows(M, N, K, A, rsa, B, rsb, C, ldc, accumulate, Bbufs, Ablocks, nt);
        return;
    }
    if (M >= RLHF__FEW_MIN && csa == 1 && rsb == 1 && K <= RLHF__FEW_COLS_KMAX &&
        (M <= RLHF__FEW_MAX || rlhf__few_cols_big(M, N, K, init, nt))) {
        rlhf__gemm_few_cols(M, N, K, A, rsa, B, csb, C, ldc, accumulate, Bbufs, Ablocks, nt);
        return;
    }
    if (M <= RLHF__SMALL_M && (csb == 1 || (rsb == 1 && csa == 1))) {
        rlhf__gemm_small(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, Bbufs);
        return;
    }
    memset(queues, 0, sizeof queues);
    RLHF__OMP(omp parallel num_threads(nt))
    {
        int jc, pc, u, d, tid = RLHF__TID(), team = RLHF__NTHREADS(), packed_ic = -1, packed_pc = -1, slice = 0;
        float *Ap = Ablocks + (size_t)tid * RLHF__MC * RLHF__KC; /* this thread's A block */
        double tiles = 0.0, worked = 0.0, t0;
        for (jc = 0; jc < N; jc += RLHF__NC) {
            int nc = N - jc < RLHF__NC ? N - jc : RLHF__NC;
            int np = (nc + RLHF__NR - 1) / RLHF__NR, nm = (M + RLHF__MC - 1) / RLHF__MC; /* B panels, row blocks */
            /* parts of the B panels an item takes: 8 items a thread at least, when it can. When A is packed
               (A^T, the backward-weights) each thread packs the blocks it takes parts of, so the parts of one
               block packed it once per thread: there the blocks alone are the items as soon as each thread
               gets two (config S's dW at 512 and 1024 rows, 2 threads: 4-11% faster) */
            int ns = 1, H;
            while (team > 1 && (csa == 1 || nm < 2 * team) && nm * ns < 8 * team && 2 * ns <= np) ns *= 2;
            H = ns >= team && team <= RLHF__TEAM_MAX ? team : 1; /* homes: a part of the panels a thread */
            for (pc = 0; pc < K; pc += RLHF__KC, slice++) {
                int kc = K - pc < RLHF__KC ? K - pc : RLHF__KC;
                float *Bp = Bbufs + (size_t)(slice & 1) * RLHF__BBUF;
                int(*q)[2] = queues[slice % 3];
                t0 = RLHF__WTIME();
                rlhf__gemm_pack_b(Bp, np, ns, H, q, kc, pc, jc, N, B, rsb, csb);
                worked += RLHF__WTIME() - t0;
                RLHF__OMP(omp barrier)
                /* the queues of slice - 1 are spent (every thread packed this slice after its items there);
                   set for slice + 2 before this thread can reach the barrier of slice + 1 */
                if (tid == 0) memset(queues[(slice + 2) % 3], 0, sizeof queues[0]);
                t0 = RLHF__WTIME();
                for (d = 0; d < H; d++) { /* the items of this thread's home, then the other homes' left */
                    int h = (tid + d) % H, p0 = RLHF__HOME(h, ns, H), nparts = RLHF__HOME(h + 1, ns, H) - p0;
                    while ((u = rlhf__take(&q[h][1])) < nm * nparts) { /* block by block */
                        int ic = u / nparts * RLHF__MC, part = p0 + u % nparts;
                        int mp = ((M - ic < RLHF__MC ? M - ic : RLHF__MC) + RLHF__MR - 1) / RLHF__MR; /* A panels */
                        int jp0 = (int)((long)np * part / ns), jp1 = (int)((long)np * (part + 1) / ns);
                        if (ic != packed_ic || pc != packed_pc) /* the parts of one block share its A pack */
                            rlhf__gemm_pack_a(Ap, mp, kc, ic, pc, M, A, rsa, csa), packed_ic = ic, packed_pc = pc;
                        rlhf__gemm_block(A, rsa, csa, Ap, Bp, RLHF__BPS(kc), jp0, jp1, mp, kc, ic, pc, jc, M, N,
                                         C, ldc, pc == 0 && !accumulate, init);
                        tiles += (double)kc * mp * (jp1 - jp0);
                    }
                }
                worked += RLHF__WTIME() - t0;
            }
        }
        if (tid < RLHF__TEAM_MAX) unit[tid] = tiles * (RLHF__MR * RLHF__NR), busy[tid] = worked;
        if (tid == 0) threads = RLHF__NTHREADS();
    }
    if (rlhf_num_threads() >= 2) rlhf__team_note(threads, unit, busy, RLHF__WTIME() - t_start); /* n 1: retry all? */
}
static void rlhf__gemm(int M, int N, int K, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                       ptrdiff_t rsb, ptrdiff_t csb, float *C, ptrdiff_t ldc, int accumulate, float *work) {
    rlhf__gemm_init(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, NULL, work);
}

/* ---- Conv1D (Hugging Face's linear layer, weight stored [in, out]) ---------
   forward:  out (BT,OC) = [residual (BT,OC) +] bias (OC) + inp (BT,IC) * w (IC,OC)
   residual and bias may be NULL. Starting from residual + bias and
   accumulating the product folds the residual add of a GPT-2 block into the
   matmul, so no separate buffer is needed for the projection; the matmul
   sets each tile's start as it computes it (rlhf__cinit). */
static void rlhf__linear_forward(float *out, const float *inp, const float *w, const float *bias,
                                 const float *residual, int BT, int IC, int OC, float *work) {
    rlhf__cinit init;
    init.res = residual, init.bias = bias;
    rlhf__gemm_init(BT, OC, IC, inp, IC, 1, w, OC, 1, out, OC, 1, &init, work);
}

/* dbias (OC) += sum over rows of dout (BT,OC). Threads split the channels;
   each channel sums its rows in order, so any thread count gives the same bits.
   The SIMD path keeps a 64-channel chunk of dbias in 8 registers through all
   the rows: the twin's very additions in the twin's order, the same bits. */
RLHF__REF void rlhf__bias_backward_ref(float *dbias, const float *dout, int BT, int OC) {
    int bt, c;
    for (bt = 0; bt < BT; bt++)
        for (c = 0; c < OC; c++) dbias[c] += dout[(ptrdiff_t)bt * OC + c];
}
static void rlhf__bias_backward(float *dbias, const float *dout, int BT, int OC) {
    const int CH = 64;
    int nchunks = (OC + CH - 1) / CH, chunk;
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(rlhf__nt((double)BT * OC / 4.0)))
    for (chunk = 0; chunk < nchunks; chunk++) {
        int c0 = chunk * CH, c1 = c0 + CH < OC ? c0 + CH : OC, bt, c;
#if defined(RLHF__AVX2)
        if (c1 - c0 == 64) {
            float *o = dbias + c0;
            __m256 a0 = _mm256_loadu_ps(o), a1 = _mm256_loadu_ps(o + 8), a2 = _mm256_loadu_ps(o + 16);
            __m256 a3 = _mm256_loadu_ps(o + 24), a4 = _mm256_loadu_ps(o + 32), a5 = _mm256_loadu_ps(o + 40);
            __m256 a6 = _mm256_loadu_ps(o + 48), a7 = _mm256_loadu_ps(o + 56);
            for (bt = 0; bt < BT; bt++) {
                const float *d = dout + (ptrdiff_t)bt * OC + c0; /* seek to dout[bt, c0] */
                a0 = _mm256_add_ps(a0, _mm256_loadu_ps(d)), a1 = _mm256_add_ps(a1, _mm256_loadu_ps(d + 8));
                a2 = _mm256_add_ps(a2, _mm256_loadu_ps(d + 16)), a3 = _mm256_add_ps(a3, _mm256_loadu_ps(d + 24));
                a4 = _mm256_add_ps(a4, _mm256_loadu_ps(d + 32)), a5 = _mm256_add_ps(a5, _mm256_loadu_ps(d + 40));
                a6 = _mm256_add_ps(a6, _mm256_loadu_ps(d + 48)), a7 = _mm256_add_ps(a7, _mm256_loadu_ps(d + 56));
            }
            _mm256_storeu_ps(o, a0), _mm256_storeu_ps(o + 8, a1), _mm256_storeu_ps(o + 16, a2);
            _mm256_storeu_ps(o + 24, a3), _mm256_storeu_ps(o + 32, a4), _mm256_storeu_ps(o + 40, a5);
            _mm256_storeu_ps(o + 48, a6), _mm256_storeu_ps(o + 56, a7);
            continue;
        }
#endif
        for (bt = 0; bt < BT; bt++) /* a partial chunk, or every chunk in a scalar build */
            for (c = c0; c < c1; c++) dbias[c] += dout[(ptrdiff_t)bt * OC + c];
    }
}

/* backward of out = inp * w + bias:
   dinp (BT,IC)  = dout (BT,OC) * w^T          (overwrites)
   dw   (IC,OC) += inp^T (IC,BT) * dout (BT,OC)
   dbias (OC)   += column sums of dout          (dbias may be NULL) */
static void rlhf__linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                  const float *w, int BT, int IC, int OC, float *work) {
    rlhf__gemm(BT, IC, OC, dout, OC, 1, w, 1, OC, dinp, IC, 0, work);
    rlhf__gemm(IC, OC, BT, inp, 1, IC, dout, OC, 1, dw, OC, 1, work);
    if (dbias) rlhf__bias_backward(dbias, dout, BT, OC);
}

/* ---- LayerNorm -------------------------------------------------------------
   torch.nn.LayerNorm(C, eps=1e-5), biased variance:
     out = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var + 1e-5)
   out (BT,C), mean (BT), rstd (BT) <- inp (BT,C), weight (C), bias (C).
   Caches mean and rstd for the backward. The scalar twin is the definition;
   the fast kernel sums each row in 8 lanes, then the lanes (an order fixed by
   C alone, so any thread count gives the same bits). */
RLHF__REF void rlhf__layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                                        const float *weight, const float *bias, int BT, int C) {
    int bt;
    for (bt = 0; bt < BT; bt++) {
        const float *x = inp + (ptrdiff_t)bt * C; /* seek to inp[bt, :] */
        float *o = out + (ptrdiff_t)bt * C;
        float m = 0.0f, v = 0.0f, s;
        int c;
        for (c = 0; c < C; c++) m += x[c];
        m /= (float)C;
        for (c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= (float)C;
        s = 1.0f / sqrtf(v + 1e-5f); /* eps 1e-5: GPT-2's layer_norm_epsilon */
        for (c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[bt] = m;
        rstd[bt] = s;
    }
}
/* one row: o, x, w, b (C); the SIMD loops first, the scalar loops finish the
   row (they are the whole row in a scalar build) */
static void rlhf__layernorm_row(float *o, float *mean, float *rstd, const float *x, const float *w, const float *b,
                                int C) {
    float m = 0.0f, v = 0.0f, s;
    int c = 0;
#if defined(RLHF__AVX2)
    __m256 acc = _mm256_setzero_ps(), vm, vs;
    for (; c + 8 <= C; c += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + c));
    m = rlhf__hsum256(acc);
#endif
    for (; c < C; c++) m += x[c];
    m /= (float)C;
    c = 0;
#if defined(RLHF__AVX2)
    vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    for (; c + 8 <= C; c += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + c), vm);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    v = rlhf__hsum256(acc);
#endif
    for (; c < C; c++) v += (x[c] - m) * (x[c] - m);
    v /= (float)C;
    s = 1.0f / sqrtf(v + 1e-5f); /* eps 1e-5: GPT-2's layer_norm_epsilon */
    c = 0;
#if defined(RLHF__AVX2)
    vs = _mm256_set1_ps(s);
    for (; c + 8 <= C; c += 8) {
        __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vs);
        _mm256_storeu_ps(o + c, _mm256_fmadd_ps(n, _mm256_loadu_ps(w + c), _mm256_loadu_ps(b + c)));
    }
#endif
    for (; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
    *mean = m;
    *rstd = s;
}
static void rlhf__layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                    const float *weight, const float *bias, int BT, int C) {
    int bt;
    RLHF__OMP(omp parallel for schedule(dynamic, 8) num_threads(rlhf__nt((double)BT * C)))
    for (bt = 0; bt < BT; bt++) /* seek to inp[bt, :] */
        rlhf__layernorm_row(out + (ptrdiff_t)bt * C, mean + bt, rstd + bt, inp + (ptrdiff_t)bt * C, weight, bias, C);
}

/* backward, with n = (x - mean) * rstd the normalised input:
     dweight += sum_bt dout * n;   dbias += sum_bt dout
     dinp    += rstd * (g - mean_c(g) - n * mean_c(g * n)),  g = dout * weight
   dinp, dout, inp (BT,C); dweight, dbias, weight (C); mean, rstd (BT). */
RLHF__REF void rlhf__layernorm_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                                         const float *inp, const float *weight, const float *mean,
                                         const float *rstd, int BT, int C) {
    int bt, c;
    for (bt = 0; bt < BT; bt++) {
        const float *x = inp + (ptrdiff_t)bt * C, *dy = dout + (ptrdiff_t)bt * C;
        float *dx = dinp + (ptrdiff_t)bt * C;
        float gmean = 0.0f, gnmean = 0.0f;
        for (c = 0; c < C; c++) {
            float n = (x[c] - mean[bt]) * rstd[bt], g = dy[c] * weight[c];
            gmean += g;
            gnmean += g * n;
        }
        gmean /= (float)C;
        gnmean /= (float)C;
        for (c = 0; c < C; c++) {
            float n = (x[c] - mean[bt]) * rstd[bt], g = dy[c] * weight[c];
            dx[c] += rstd[bt] * (g - gmean - n * gnmean);
            dweight[c] += dy[c] * (x[c] - mean[bt]) * rstd[bt];
            dbias[c] += dy[c];
        }
    }
}
/* dinp's row: dx, dy, x, w (C) */
static void rlhf__layernorm_dx_row(float *dx, const float *dy, const float *x, const float *w, float m, float s,
                                   int C) {
    float gmean = 0.0f, gnmean = 0.0f;
    int c = 0;
#if defined(RLHF__AVX2)
    __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(s), ag = _mm256_setzero_ps(), agn = ag, vgm, vgnm;
    for (; c + 8 <= C; c += 8) {
        __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vs);
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(w + c));
        ag = _mm256_add_ps(ag, g);
        agn = _mm256_fmadd_ps(g, n, agn);
    }
    gmean = rlhf__hsum256(ag), gnmean = rlhf__hsum256(agn);
#endif
    for (; c < C; c++) {
        float n = (x[c] - m) * s, g = dy[c] * w[c];
        gmean += g;
        gnmean += g * n;
    }
    gmean /= (float)C;
    gnmean /= (float)C;
    c = 0;
#if defined(RLHF__AVX2)
    vgm = _mm256_set1_ps(gmean), vgnm = _mm256_set1_ps(gnmean);
    for (; c + 8 <= C; c += 8) {
        __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vs);
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(w + c));
        __m256 t = _mm256_fnmadd_ps(n, vgnm, _mm256_sub_ps(g, vgm)); /* g - gmean - n * gnmean */
        _mm256_storeu_ps(dx + c, _mm256_fmadd_ps(vs, t, _mm256_loadu_ps(dx + c)));
    }
#endif
    for (; c < C; c++) {
        float n = (x[c] - m) * s, g = dy[c] * w[c];
        dx[c] += s * (g - gmean - n * gnmean);
    }
}
static void rlhf__layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                     const float *inp, const float *weight, const float *mean,
                                     const float *rstd, int BT, int C) {
    const int CH = 64;
    int nchunks = (C + CH - 1) / CH, chunk, bt;
    RLHF__OMP(omp parallel for schedule(dynamic, 8) num_threads(rlhf__nt(2.0 * BT * C)))
    for (bt = 0; bt < BT; bt++) /* seek to row bt */
        rlhf__layernorm_dx_row(dinp + (ptrdiff_t)bt * C, dout + (ptrdiff_t)bt * C, inp + (ptrdiff_t)bt * C, weight,
                               mean[bt], rstd[bt], C);
    /* parameter gradients: threads split channels; each channel sums its rows
       in order with the twin's very operations (same bits in every build) */
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(rlhf__nt((double)BT * C)))
    for (chunk = 0; chunk < nchunks; chunk++) {
        int c0 = chunk * CH, c1 = c0 + CH < C ? c0 + CH : C, b, c;
        for (b = 0; b < BT; b++) {
            const float *x = inp + (ptrdiff_t)b * C, *dy = dout + (ptrdiff_t)b * C;
            c = c0;
#if defined(RLHF__AVX2)
            for (; c + 8 <= c1; c += 8) {
                __m256 d = _mm256_loadu_ps(dy + c), xm = _mm256_sub_ps(_mm256_loadu_ps(x + c), _mm256_set1_ps(mean[b]));
                __m256 dw = _mm256_mul_ps(_mm256_mul_ps(d, xm), _mm256_set1_ps(rstd[b]));
                _mm256_storeu_ps(dweight + c, _mm256_add_ps(_mm256_loadu_ps(dweight + c), dw));
                _mm256_storeu_ps(dbias + c, _mm256_add_ps(_mm256_loadu_ps(dbias + c), d));
            }
#endif
            for (; c < c1; c++) {
                dweight[c] += dy[c] * (x[c] - mean[b]) * rstd[b];
                dbias[c] += dy[c];
            }
        }
    }
}

/* ---- GELU, tanh approximation (GPT-2's "gelu_new") -------------------------
   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
   computed as x * sigmoid(2u), the same function (1 + tanh(u) = 2 sigmoid(2u)):
   one expf instead of tanhf (about twice as fast in glibc; in the SIMD path
   the vector exp above is the only transcendental, so no vector tanh is
   needed), and no cancellation in 1 + tanh(u) where tanh(u) is near -1.
   out, inp (n). The backward needs only inp (the forward's input). */
#define RLHF__GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define RLHF__GELU_C 0.044715f
#define RLHF__ELEM_CHUNK 4096 /* elements per task of an elementwise kernel: a multiple of 8, fixed, so the
                                  vector/tail split of the array never depends on the thread count */
RLHF__REF void rlhf__gelu_forward_ref(float *out, const float *inp, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        float x = inp[i], u = RLHF__GELU_K * (x + RLHF__GELU_C * x * x * x);
        out[i] = x / (1.0f + expf(-2.0f * u)); /* exp overflow -> inf -> x/inf = 0: the right limit */
    }
}
#if defined(RLHF__AVX2)
/* 8 lanes of the forward: x / (1 + exp(-2u)), 2u = 2 sqrt(2/pi) x (1 + 0.044715 x^2) */
static __m256 rlhf__gelu256(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u2 = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f * RLHF__GELU_K), x),
                              _mm256_fmadd_ps(_mm256_set1_ps(RLHF__GELU_C), x2, _mm256_set1_ps(1.0f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), rlhf__exp256(u2)));
}
/* 8 lanes of the backward's local derivative (see rlhf__gelu_backward_ref) */
static __m256 rlhf__dgelu256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u2 = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f * RLHF__GELU_K), x),
                              _mm256_fmadd_ps(_mm256_set1_ps(RLHF__GELU_C), x2, one));
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, rlhf__exp256(u2)));
    __m256 slope = _mm256_fmadd_ps(_mm256_set1_ps(3.0f * RLHF__GELU_C), x2, one); /* 1 + 3 * 0.044715 x^2 */
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f * RLHF__GELU_K), x),
                             _mm256_mul_ps(s, _mm256_sub_ps(one, s))); /* 2 x s (1 - s) sqrt(2/pi) */
    return _mm256_fmadd_ps(t, slope, s);
}
#endif
#if defined(RLHF__AVX512)
/* rlhf__gelu256 and rlhf__dgelu256 on 16 lanes: the same bits (rlhf__exp512) */
static __m512 rlhf__gelu512(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u2 = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f * RLHF__GELU_K), x),
                              _mm512_fmadd_ps(_mm512_set1_ps(RLHF__GELU_C), x2, _mm512_set1_ps(1.0f)));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), rlhf__exp512(u2)));
}
static __m512 rlhf__dgelu512(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u2 = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f * RLHF__GELU_K), x),
                              _mm512_fmadd_ps(_mm512_set1_ps(RLHF__GELU_C), x2, one));
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, rlhf__exp512(u2)));
    __m512 slope = _mm512_fmadd_ps(_mm512_set1_ps(3.0f * RLHF__GELU_C), x2, one);
    __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f * RLHF__GELU_K), x),
                             _mm512_mul_ps(s, _mm512_sub_ps(one, s)));
    return _mm512_fmadd_ps(t, slope, s);
}
#endif
static void rlhf__gelu_forward(float *out, const float *inp, size_t n) {
    ptrdiff_t chunk, nchunks = (ptrdiff_t)((n + RLHF__ELEM_CHUNK - 1) / RLHF__ELEM_CHUNK);
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(rlhf__nt(4.0 * (double)n)))
    for (chunk = 0; chunk < nchunks; chunk++) {
        size_t i = (size_t)chunk * RLHF__ELEM_CHUNK, end = i + RLHF__ELEM_CHUNK < n ? i + RLHF__ELEM_CHUNK : n;
#if defined(RLHF__AVX512)
        for (; i + 16 <= end; i += 16) _mm512_storeu_ps(out + i, rlhf__gelu512(_mm512_loadu_ps(inp + i)));
#endif
#if defined(RLHF__AVX2)
        for (; i + 8 <= end; i += 8) _mm256_storeu_ps(out + i, rlhf__gelu256(_mm256_loadu_ps(inp + i)));
        if (i < end) {
            int r = (int)(end - i);
            rlhf__store_part(out + i, rlhf__gelu256(rlhf__load_part(inp + i, r, 0.0f)), r);
        }
#else
        rlhf__gelu_forward_ref(out + i, inp + i, end - i);
#endif
    }
}
/* d gelu/dx = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  s = sigmoid(2u)
   (from 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u', with 1 - tanh^2 u = 4 s (1 - s)).
   dinout (n): dout on entry, dinp on return (in place). */
RLHF__REF void rlhf__gelu_backward_ref(float *dinout, const float *inp, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        float x = inp[i], u = RLHF__GELU_K * (x + RLHF__GELU_C * x * x * x);
        float s = 1.0f / (1.0f + expf(-2.0f * u));
        float local = s + 2.0f * x * s * (1.0f - s) * RLHF__GELU_K * (1.0f + 3.0f * RLHF__GELU_C * x * x);
        dinout[i] *= local;
    }
}
static void rlhf__gelu_backward(float *dinout, const float *inp, size_t n) {
    ptrdiff_t chunk, nchunks = (ptrdiff_t)((n + RLHF__ELEM_CHUNK - 1) / RLHF__ELEM_CHUNK);
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(rlhf__nt(4.0 * (double)n)))
    for (chunk = 0; chunk < nchunks; chunk++) {
        size_t i = (size_t)chunk * RLHF__ELEM_CHUNK, end = i + RLHF__ELEM_CHUNK < n ? i + RLHF__ELEM_CHUNK : n;
#if defined(RLHF__AVX512)
        for (; i + 16 <= end; i += 16)
            _mm512_storeu_ps(dinout + i,
                             _mm512_mul_ps(_mm512_loadu_ps(dinout + i), rlhf__dgelu512(_mm512_loadu_ps(inp + i))));
#endif
#if defined(RLHF__AVX2)
        for (; i + 8 <= end; i += 8)
            _mm256_storeu_ps(dinout + i,
                             _mm256_mul_ps(_mm256_loadu_ps(dinout + i), rlhf__dgelu256(_mm256_loadu_ps(inp + i))));
        if (i < end) {
            int r = (int)(end - i);
            __m256 d = rlhf__dgelu256(rlhf__load_part(inp + i, r, 0.0f));
            rlhf__store_part(dinout + i, _mm256_mul_ps(rlhf__load_part(dinout + i, r, 0.0f), d), r);
        }
#else
        rlhf__gelu_backward_ref(dinout + i, inp + i, end - i);
#endif
    }
}

/* ---- softmax pieces: the row maximum, sum of exponentials, weighted sum ---- */
#if defined(RLHF__AVX512)
/* the live lanes of a 16-lane step at i of n floats: all 16, or the tail's */
#define RLHF__LIVE16(n, i) ((__mmask16)((n) - (i) >= 16 ? 0xFFFFu : (1u << ((n) - (i))) - 1u))
#endif
/* x (n) *= s: one rounding an element on any path */
static void rlhf__scale(float *x, int n, float s) {
    int i = 0;
#if defined(RLHF__AVX512)
    __m512 v16 = _mm512_set1_ps(s);
    for (; i < n; i += 16) {
        __mmask16 live = RLHF__LIVE16(n, i);
        _mm512_mask_storeu_ps(x + i, live, _mm512_mul_ps(_mm512_maskz_loadu_ps(live, x + i), v16));
    }
#elif defined(RLHF__AVX2)
    __m256 vs = _mm256_set1_ps(s);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
#endif
    for (; i < n; i++) x[i] *= s;
}
/* max over x (n >= 1); NaN entries are skipped, as the scalar "x > maxv"
   test does. The maximum is exact in any order (but for which of -0 and +0
   a tie of the two returns, and x - (+-0) and x + (+-0) take the same value
   either way where the softmax and the cross-entropy use it), so AVX-512
   hosts take 16 lanes, the tail's lanes past n -inf. */
static float rlhf__row_max(const float *x, int n) {
    float maxv = -INFINITY;
    int i = 0;
#if defined(RLHF__AVX512)
    __m512 acc16 = _mm512_set1_ps(-INFINITY);
    for (; i < n; i += 16) /* NaN in x: keeps acc */
        acc16 = _mm512_max_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), RLHF__LIVE16(n, i), x + i), acc16);
    return _mm512_reduce_max_ps(acc16);
#elif defined(RLHF__AVX2)
    __m256 acc = _mm256_set1_ps(-INFINITY);
    __m128 h;
    for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(_mm256_loadu_ps(x + i), acc); /* NaN in x: keeps acc */
    h = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    maxv = _mm_cvtss_f32(h);
#endif
    for (; i < n; i++)
        if (x[i] > maxv) maxv = x[i];
    return maxv;
}
/* x[i] <- exp(x[i] - maxv) for x (n); returns their sum (float, in 8 lanes
   then across them) */
static float rlhf__exp_shift_sum(float *x, int n, float maxv) {
    float sum = 0.0f;
    int i = 0;
#if defined(RLHF__AVX2)
    __m256 vm = _mm256_set1_ps(maxv), acc = _mm256_setzero_ps(), e;
#if defined(RLHF__AVX512)
    __m512 vm16 = _mm512_set1_ps(maxv);
    /* exp on 16 lanes (rlhf__exp512: the same bits), summed in 8 as below, the
       low half then the high; the tail's lanes past n padded with -inf as
       below (exp 0: acc + 0 is acc, so the same sum as the 8-lane tail's; a
       row whose maximum is -inf gives NaN either way, of either sign) */
    for (; i < n; i += 16) {
        __mmask16 live = RLHF__LIVE16(n, i);
        __m512 e16 = rlhf__exp512(_mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), live, x + i), vm16));
        _mm512_mask_storeu_ps(x + i, live, e16);
        acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e16)); /* x[i..i+8), then x[i+8..i+16) */
        acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e16), 1)));
    }
#endif
    for (; i + 8 <= n; i += 8) {
        e = rlhf__exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) { /* padding exp(-inf) = 0 adds nothing */
        e = rlhf__exp256(_mm256_sub_ps(rlhf__load_part(x + i, n - i, -INFINITY), vm));
        rlhf__store_part(x + i, e, n - i);
        acc = _mm256_add_ps(acc, e);
        i = n;
    }
    sum = rlhf__hsum256(acc);
#endif
    for (; i < n; i++) {
        x[i] = expf(x[i] - maxv);
        sum += x[i];
    }
    return sum;
}
/* o (hs) [+]= sum_j w[j] * v_j over j < n, value j at v + j*stride, summed in
   order j = 0, 1, ... as rlhf__axpy would; the SIMD path keeps 64 channels of
   o in 8 registers through all n rows instead of loading and storing o n times */
RLHF__REF void rlhf__wsum_ref(float *o, const float *w, const float *v, size_t stride, int n, int hs,
                              int accumulate) {
    int j;
    if (!accumulate) memset(o, 0, (size_t)hs * sizeof(float));
    for (j = 0; j < n; j++) rlhf__axpy_ref(o, w[j], v + (size_t)j * stride, hs);
}
static void rlhf__wsum(float *o, const float *w, const float *v, size_t stride, int n, int hs, int accumulate) {
    int c = 0, j;
#if defined(RLHF__AVX2)
    for (; c + 64 <= hs; c += 64) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        if (accumulate) {
            a0 = _mm256_loadu_ps(o + c), a1 = _mm256_loadu_ps(o + c + 8), a2 = _mm256_loadu_ps(o + c + 16);
            a3 = _mm256_loadu_ps(o + c + 24), a4 = _mm256_loadu_ps(o + c + 32), a5 = _mm256_loadu_ps(o + c + 40);
            a6 = _mm256_loadu_ps(o + c + 48), a7 = _mm256_loadu_ps(o + c + 56);
        }
        for (j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * stride + c;
            __m256 wj = _mm256_broadcast_ss(w + j);
            a0 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj), a0);
            a1 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 8), a1);
            a2 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 16), a2);
            a3 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 24), a3);
            a4 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 32), a4);
            a5 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 40), a5);
            a6 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 48), a6);
            a7 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 56), a7);
        }
        _mm256_storeu_ps(o + c, a0), _mm256_storeu_ps(o + c + 8, a1), _mm256_storeu_ps(o + c + 16, a2);
        _mm256_storeu_ps(o + c + 24, a3), _mm256_storeu_ps(o + c + 32, a4), _mm256_storeu_ps(o + c + 40, a5);
        _mm256_storeu_ps(o + c + 48, a6), _mm256_storeu_ps(o + c + 56, a7);
    }
    for (; c + 8 <= hs; c += 24) {
        /* 1 to 3 groups of 8 channels at once (small heads: hs 24, 32, 48); a group
           past hs repeats the first (the same sums, stored to the same place) */
        int o1 = c + 16 <= hs ? 8 : 0, o2 = c + 24 <= hs ? 16 : 0;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0;
        if (accumulate)
            a0 = _mm256_loadu_ps(o + c), a1 = _mm256_loadu_ps(o + c + o1), a2 = _mm256_loadu_ps(o + c + o2);
        for (j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * stride + c;
            __m256 wj = _mm256_broadcast_ss(w + j);
            a0 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj), a0);
            a1 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + o1), a1);
            a2 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + o2), a2);
        }
        _mm256_storeu_ps(o + c + o2, a2), _mm256_storeu_ps(o + c + o1, a1), _mm256_storeu_ps(o + c, a0);
        if (!o2) c -= o1 ? 8 : 16; /* fewer than 3 groups: c + 24 -> c + 16 or c + 8 */
    }
#endif
    if (c < hs) { /* the channels left (all of them in a scalar build) */
        if (!accumulate) memset(o + c, 0, (size_t)(hs - c) * sizeof(float));
        for (j = 0; j < n; j++) rlhf__axpy(o + c, w[j], v + (size_t)j * stride + c, hs - c);
    }
}

/* out[j] = q . k_j for j < n, key j at k + j*stride; q (hs). The SIMD path
   takes 8 keys at a time: 8 accumulators of 8 lanes, whose lanes a transpose
   (two rounds of horizontal adds and a swap of 128-bit halves) sums into the
   8 dot products at once, instead of a horizontal sum per key. */
RLHF__REF void rlhf__dots_ref(float *out, const float *q, const float *k, size_t stride, int n, int hs) {
    int j;
    for (j = 0; j < n; j++) out[j] = rlhf__dot_ref(q, k + (size_t)j * stride, hs);
}
#if defined(RLHF__AVX2)
static __m256 rlhf__dot8(const float *q, const float *k, size_t stride, int hs) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, t0, t1, t2, t3;
    const float *k1 = k + stride, *k2 = k1 + stride, *k3 = k2 + stride, *k4 = k3 + stride, *k5 = k4 + stride;
    const float *k6 = k5 + stride, *k7 = k6 + stride;
    int c;
    for (c = 0; c < hs; c += 8) { /* written out: 8 accumulators that must stay in registers */
        __m256 qc = _mm256_loadu_ps(q + c);
        a0 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k + c), a0);
        a1 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k1 + c), a1);
        a2 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k2 + c), a2);
        a3 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k3 + c), a3);
        a4 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k4 + c), a4);
        a5 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k5 + c), a5);
        a6 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k6 + c), a6);
        a7 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k7 + c), a7);
    }
    /* hadd(x, y) = [x0+x1, x2+x3, y0+y1, y2+y3 | x4+x5, x6+x7, y4+y5, y6+y7]: after two rounds the low
       half of t0 holds lanes 0-3 of keys 0..3 summed, its high half lanes 4-7 */
    t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
    t0 = _mm256_hadd_ps(t0, t1), t2 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t2, 0x20), _mm256_permute2f128_ps(t0, t2, 0x31));
}
#endif
static void rlhf__dots(float *out, const float *q, const float *k, size_t stride, int n, int hs) {
    int j = 0;
#if defined(RLHF__AVX2)
    if (hs % 8 == 0)
        for (; j + 8 <= n; j += 8) _mm256_storeu_ps(out + j, rlhf__dot8(q, k + (size_t)j * stride, stride, hs));
#endif
    for (; j < n; j++) out[j] = rlhf__dot(q, k + (size_t)j * stride, hs);
}

/* ---- fused causal self-attention ---------------------------------------------
   qkv (B,T,3C): q, k, v each C wide, head h in channels [h*hs, (h+1)*hs).
   For each (b, h, t):  att[t2] = softmax over t2 <= t of (q_t . k_t2) / sqrt(hs)
                        out_t   = sum over t2 <= t of att[t2] * v_t2
   out (B,T,C); att (B,NH,T,T) caches the probabilities for the backward
   (entries t2 > t are not read: the tiled path below writes 0 in some); with
   att NULL (inference) the rows live in rows (B*NH, RLHF__ATT_QB, T) instead,
   with the same bits. Scores, softmax and the weighted sum run in one pass per
   row, or per block of rows in tiles: no (B,NH,T,T) score buffer. Threads
   split (b, h).
   Documents: with doc (B,T) not NULL, token t of row b sees only the keys
   t2 in [doc[b,t], t], the start of its own document, so one row can hold
   left padding (each pad token its own document) or several packed examples
   that never attend to each other. doc NULL: every row is one document. */
/* x (n) <- softmax(x * scale), in place */
static void rlhf__softmax_scaled(float *x, int n, float scale) {
    float maxv, inv;
    rlhf__scale(x, n, scale);
    maxv = rlhf__row_max(x, n);
    inv = 1.0f / rlhf__exp_shift_sum(x, n, maxv); /* stable: the maximum is subtracted; sum >= 1 (exp(0)) */
    rlhf__scale(x, n, inv);
}
/* One query row: the KV-cache decode's, and the training forward's when a
   head's size is not a multiple of 16 (else it goes in tiles, below: the
   same math, summed in another order). row (n) = softmax(q . k_j / sqrt(hs))
   over keys j < n, then o (hs) = sum_j row[j] * v_j. q (hs); key j at
   k + j*stride, value j at v + j*stride. */
static void rlhf__attend_row(float *o, float *row, const float *q, const float *k, const float *v, size_t stride, int n,
                             int hs, float scale) {
    rlhf__dots(row, q, k, stride, n, hs);
    rlhf__softmax_scaled(row, n, scale);
    rlhf__wsum(o, row, v, stride, n, hs, 0);
}
/* the scalar twin: the definition, with expf and the scalar dot and axpy */
RLHF__REF void rlhf__attend_row_ref(float *o, float *row, const float *q, const float *k, const float *v,
                                    size_t stride, int n, int hs, float scale) {
    float maxv = -INFINITY, sum = 0.0f, inv;
    int j;
    for (j = 0; j < n; j++) {
        row[j] = rlhf__dot_ref(q, k + (size_t)j * stride, hs) * scale;
        if (row[j] > maxv) maxv = row[j];
    }
    for (j = 0; j < n; j++) {
        row[j] = expf(row[j] - maxv); /* stable: the row maximum is subtracted */
        sum += row[j];
    }
    inv = 1.0f / sum; /* sum >= 1: the maximum contributes exp(0) */
    for (j = 0; j < n; j++) row[j] *= inv;
    rlhf__wsum_ref(o, row, v, stride, n, hs, 0);
}

/* ---- attention in tiles (heads of 16, 32, .. 256 channels) --------------------
   A query row at a time reads all its keys and values, 256 bytes each, 3C
   floats apart: for a long context that is L2's bandwidth, not the FMA units
   (~30 GFLOP/s on one core, a third of the matmuls). With hs a multiple of 16,
   queries go in blocks of RLHF__ATT_QB rows and every product is the
   matmul's micro-kernel on a tile of MR rows (6; 8 with AVX-512) x 16 columns,
   each key and value loaded once for MR rows:
     scores (rows t, keys j) = Q K^T: K^T made once per head (hs x T,
                               rlhf__att_transpose), its panels of 16 keys
                               read in place, shared by the block's tiles
                               (without room for K^T, each block packs its
                               keys' panels: the same bits);
     out (rows t, 16 channels) = P V: V's rows (copied contiguous once per
                               head) read in place (rlhf__att_tile);
   the softmax in between runs row by row as before. A block's rows see keys
   [lo, hi): the first document start among them to the last row; a row's
   probabilities outside its own [s0, t] are set to 0 there, so every row of a
   tile sums over the same keys (a 0 adds nothing to a finite sum; an inf or
   NaN in a key or value the row may not see still gives NaN, 0 x inf, as
   PyTorch's masked attention does, where the row path never reads it). */
#define RLHF__ATT_QB 24 /* query rows a block: 4 micro-tiles (3 of AVX-512's 8 rows) */
#define RLHF__ATT_TILED(hs) ((hs) % RLHF__NR == 0 && (hs) <= RLHF__KC)
/* the columns of the next tile (or pair of tiles) of a head's hs columns, from c */
#define RLHF__ATT_COLS(hs, c) (RLHF__PAIRS && (hs) - (c) >= 2 * RLHF__NR ? 2 * RLHF__NR : RLHF__NR)
/* C (rows, cols) [+]= A (rows, kc) B (kc, cols), rows <= MR, cols <= NR or
   2*NR: A's element (r, k) at A[r*ars + k*aks], B's row k at B + k*rsb. k goes
   in slices of at most RLHF__KC, each slice's sum added to C (the first one
   stored unless acc), so a tile of fewer than MR rows packs its A rows
   (zero-padded) in a buffer on the stack; one of fewer than NR columns goes
   through a buffer. 2*NR columns with full rows: the pair kernel. */
static void rlhf__att_tile(int rows, int cols, int kc, const float *A, ptrdiff_t ars, ptrdiff_t aks, const float *B,
                           ptrdiff_t rsb, float *C, ptrdiff_t ldc, int acc) {
    float Ap[RLHF__MR * RLHF__KC], tile[RLHF__MR * RLHF__NR];
    int pc, r, c, full = rows == RLHF__MR && cols == RLHF__NR;
    if (cols > RLHF__NR) { /* two tiles side by side: the same bits either way */
        for (pc = 0; rows == RLHF__MR && pc < kc; pc += RLHF__KC)
            rlhf__gemm_tile2(kc - pc < RLHF__KC ? kc - pc : RLHF__KC, A + pc * aks, ars, aks, B + pc * rsb, RLHF__NR,
                             rsb, C, ldc, acc || pc > 0);
        if (rows == RLHF__MR) return;
        rlhf__att_tile(rows, RLHF__NR, kc, A, ars, aks, B, rsb, C, ldc, acc);
        rlhf__att_tile(rows, cols - RLHF__NR, kc, A, ars, aks, B + RLHF__NR, rsb, C + RLHF__NR, ldc, acc);
        return;
    }
    for (pc = 0; pc < kc; pc += RLHF__KC) {
        int n = kc - pc < RLHF__KC ? kc - pc : RLHF__KC, add = acc || pc > 0;
        const float *b = B + pc * rsb;
        if (full) {
            rlhf__gemm_tile(n, A + pc * aks, ars, aks, b, rsb, C, ldc, add);
            continue;
        }
        if (rows < RLHF__MR) {
            rlhf__gemm_pack_a(Ap, 1, n, 0, pc, rows, A, ars, aks);
            rlhf__gemm_tile(n, Ap, 1, RLHF__MR, b, rsb, tile, RLHF__NR, 0);
        } else {
            rlhf__gemm_tile(n, A + pc * aks, ars, aks, b, rsb, tile, RLHF__NR, 0);
        }
        for (r = 0; r < rows; r++)
            for (c = 0; c < cols; c++) {
                float *o = C + r * ldc + c;
                *o = add ? *o + tile[r * RLHF__NR + c] : tile[r * RLHF__NR + c];
            }
    }
}
/* The keys the rows t0 .. t0+nq-1 see: [lo, hi); s0[i] the first of row i's */
static void rlhf__att_block_keys(const int *d, int t0, int nq, int *s0, int *lo, int *hi) {
    int i;
    *lo = t0 + nq, *hi = t0 + nq;
    for (i = 0; i < nq; i++) {
        s0[i] = d ? d[t0 + i] : 0;
        *lo = s0[i] < *lo ? s0[i] : *lo;
    }
}
/* A head's keys (or values) transposed, once per head: yt (hs rows, ldt
   apart) = the T rows of y (hs floats each, ys apart) as columns, zero in
   columns T .. ldt-1 (ldt = RLHF__ATT_LDT(T)). The scores then read 16 or
   32 keys of it in place, from any first key, where each block of queries
   packed its keys' panels again (T / RLHF__ATT_QB times each key: at T =
   1024 that packing took a fifth of the attention's time). The row stride
   is a multiple of 16 floats plus 16, so the hs rows of a 16-key window fall
   in different sets of L1. */
#define RLHF__ATT_LDT(T) (((ptrdiff_t)(T) + RLHF__NR - 1) / RLHF__NR * RLHF__NR + RLHF__NR)
static void rlhf__att_transpose(float *yt, ptrdiff_t ldt, const float *y, ptrdiff_t ys, int T, int hs) {
    const float *src[8];
    int j0, j, c;
    for (j0 = 0; j0 + 8 <= T; j0 += 8) {
        for (j = 0; j < 8; j++) src[j] = y + (j0 + j) * ys;
        rlhf__pack_cols8(yt + j0, ldt, src, hs);
    }
    for (c = 0; c < hs; c++) {
        for (j = j0; j < T; j++) yt[c * ldt + j] = y[j * ys + c];
        for (j = T; j < ldt; j++) yt[c * ldt + j] = 0.0f;
    }
}
/* A head's room, when there is one (room not NULL): y's T rows (hs floats,
   ys apart) transposed at room, then z's T rows copied contiguous after it.
   *zr, *zs: where to read z's rows (the copy, hs apart, or z itself). */
static void rlhf__att_fill(float *room, ptrdiff_t ldt, const float *y, const float *z, ptrdiff_t ys, int T, int hs,
                           const float **zr, ptrdiff_t *zs) {
    int i;
    *zr = z, *zs = ys;
    if (!room) return;
    rlhf__att_transpose(room, ldt, y, ys, T, hs);
    for (i = 0; i < T; i++) memcpy(room + hs * ldt + (ptrdiff_t)i * hs, z + i * ys, (size_t)hs * sizeof(float));
    *zr = room + hs * ldt, *zs = hs;
}
/* S (nq rows ld apart, columns = keys) = X Y^T for keys [lo, hi): X's row i at
   x + i*xs (hs), key j's row at y + j*ys, or column j of yt when yt is not
   NULL (rlhf__att_transpose; two panels at once where it can); only tiles
   some row of which sees the keys (row t0 + i sees keys <= t0 + i). The same
   products in the same order either way: the same bits. */
static void rlhf__att_scores(float *S, ptrdiff_t ld, const float *x, ptrdiff_t xs, const float *y, ptrdiff_t ys,
                             const float *yt, ptrdiff_t ldt, int t0, int nq, int lo, int hi, int hs) {
    float Bp[RLHF__KC * RLHF__NR];
    int j0, ti, nk;
    for (j0 = lo; j0 < hi; j0 += nk) {
        const float *b = Bp;
        ptrdiff_t rsb = RLHF__NR;
        nk = hi - j0 < RLHF__NR ? hi - j0 : RLHF__NR;
        if (yt) { /* in place: row c of the panel at yt + c*ldt + j0 (zeros past T) */
            b = yt + j0, rsb = ldt;
            if (RLHF__PAIRS && hi - j0 >= 2 * RLHF__NR) nk = 2 * RLHF__NR;
        } else {
            rlhf__gemm_pack_b_panel(Bp, hs, 0, 0, nk, y + j0 * ys, 1, ys); /* Bp[c][j] = y_{j0+j}[c] */
        }
        for (ti = 0; ti < nq; ti += RLHF__MR) {
            int rows = nq - ti < RLHF__MR ? nq - ti : RLHF__MR;
            if (t0 + ti + rows - 1 < j0) continue; /* none of these rows sees key j0 or later */
            rlhf__att_tile(rows, nk, hs, x + ti * xs, xs, 1, b, rsb, S + ti * ld + j0, ld, 0);
        }
    }
}
/* O (rows ldo apart) [+]= W Z for each tile of rows: W's row i at w + i*ld
   (keys lo .. the tile's last row), key j's row of Z at z + j*zs (hs) */
static void rlhf__att_apply(float *o, ptrdiff_t ldo, const float *w, ptrdiff_t ld, const float *z, ptrdiff_t zs,
                            int t0, int nq, int lo, int hs, int acc) {
    int ti, c, w2;
    for (ti = 0; ti < nq; ti += RLHF__MR) {
        int rows = nq - ti < RLHF__MR ? nq - ti : RLHF__MR, n = t0 + ti + rows - lo;
        for (c = 0; c < hs; c += w2)
            w2 = RLHF__ATT_COLS(hs, c),
            rlhf__att_tile(rows, w2, n, w + ti * ld + lo, ld, 1, z + lo * zs + c, zs, o + ti * ldo + c, ldo, acc);
    }
}
/* one (b, h) in blocks: q, k, v at row 0 of the head (3C apart); P (T rows)
   the probabilities (training), or NULL and rows (RLHF__ATT_QB rows); kt:
   room for the keys transposed (hs x RLHF__ATT_LDT(T)), or NULL: each block
   packs the panels of its keys */
static void rlhf__attention_forward_tiled(float *out, float *P, float *rows, float *kt, const float *q, const int *d,
                                          int T, int C, int hs, float scale) {
    const float *k = q + C, *v = q + 2 * C;
    ptrdiff_t C3 = 3 * (ptrdiff_t)C, ldt = RLHF__ATT_LDT(T);
    int t0, s0[RLHF__ATT_QB], lo, hi, i;
    const float *vr; /* V's rows, vs apart */
    ptrdiff_t vs;
    rlhf__att_fill(kt, ldt, k, v, C3, T, hs, &vr, &vs);
    for (t0 = 0; t0 < T; t0 += RLHF__ATT_QB) {
        int nq = T - t0 < RLHF__ATT_QB ? T - t0 : RLHF__ATT_QB;
        float *S = P ? P + (ptrdiff_t)t0 * T : rows; /* row i of the block at S + i*T */
        rlhf__att_block_keys(d, t0, nq, s0, &lo, &hi);
        rlhf__att_scores(S, T, q + t0 * C3, C3, k, C3, kt, ldt, t0, nq, lo, hi, hs);
        for (i = 0; i < nq; i++) { /* softmax over [s0, t]; 0 for the block's other keys */
            float *x = S + (ptrdiff_t)i * T;
            rlhf__softmax_scaled(x + s0[i], t0 + i + 1 - s0[i], scale);
            memset(x + lo, 0, (size_t)(s0[i] - lo) * sizeof(float));
            memset(x + t0 + i + 1, 0, (size_t)(hi - t0 - i - 1) * sizeof(float));
        }
        rlhf__att_apply(out + (ptrdiff_t)t0 * C, C, S, T, vr, vs, t0, nq, lo, hs, 0);
    }
}

/* Room for each of nt threads' transposed keys (rlhf__att_transpose) and
   contiguous values in the tiled path (2 x hs x RLHF__ATT_LDT(T) floats a
   thread; the backward's: V^T and K): the matmul's workspace (work, from
   rlhf__gemm_work_alloc, idle while attention runs), past its header, when
   they fit there (GPT-2-124M at T 1024 needs 133K floats a thread; the two B
   buffers alone hold 528K). Else, or work NULL, NULL: each block packs its
   keys' panels and reads V in place, with the same bits. */
static float *rlhf__att_room(float *work, int nt, int T, int hs) {
    size_t need = 2 * (size_t)nt * (size_t)hs * (size_t)RLHF__ATT_LDT(T);
    if (!work || !RLHF__ATT_TILED(hs)) return NULL;
    return need <= RLHF__GEMM_WORK_FLOATS((size_t)work[0]) - RLHF__GEMM_HEADER ? work + RLHF__GEMM_HEADER : NULL;
}
/* work: the matmul's workspace, or NULL (rlhf__att_room) */
static void rlhf__attention_forward(float *out, float *att, float *rows, const float *qkv, const int *doc, int B, int T,
                                    int C, int NH, float *work) {
    int hs = C / NH, bh, nt = rlhf__nt((double)B * T * T * C / 8.0);
    float scale = 1.0f / sqrtf((float)hs), *room;
    if (nt > B * NH) nt = B * NH; /* a head a thread at the most */
    room = rlhf__att_room(work, nt, T, hs);
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(nt))
    for (bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH, t;
        const float *base = qkv + (ptrdiff_t)b * T * 3 * C; /* seek to qkv[b, 0, :] */
        if (RLHF__ATT_TILED(hs)) {
            float *kt = room ? room + 2 * (ptrdiff_t)RLHF__TID() * hs * RLHF__ATT_LDT(T) : NULL;
            rlhf__attention_forward_tiled(out + (ptrdiff_t)b * T * C + h * hs, att ? att + (ptrdiff_t)bh * T * T : NULL,
                                          att ? NULL : rows + (ptrdiff_t)bh * RLHF__ATT_QB * T, kt, base + h * hs,
                                          doc ? doc + (ptrdiff_t)b * T : NULL, T, C, hs, scale);
            continue;
        }
        for (t = 0; t < T; t++) {
            int s0 = doc ? doc[(ptrdiff_t)b * T + t] : 0; /* first key this token may see */
            /* seek to att[b, h, t, :] */
            float *row = att ? att + ((ptrdiff_t)bh * T + t) * T : rows + (ptrdiff_t)bh * RLHF__ATT_QB * T;
            const float *k0 = base + (ptrdiff_t)s0 * 3 * C;
            rlhf__attend_row(out + ((ptrdiff_t)b * T + t) * C + h * hs, row + s0, base + (ptrdiff_t)t * 3 * C + h * hs,
                             k0 + C + h * hs, k0 + 2 * C + h * hs, 3 * (size_t)C, t + 1 - s0, hs, scale);
        }
    }
}

/* backward of the above. dqkv (B,T,3C) += gradients; dout (B,T,C);
   scratch (B*NH, RLHF__ATT_QB, T). With a = att[t,:], g = dout_t:
     da[t2] = g . v_t2
     ds[t2] = a[t2] (da[t2] - sum_j a[j] da[j])          (softmax backward)
     dq_t  += sum_t2 ds[t2] k_t2 / sqrt(hs)
     dv_t2 += sum_t a[t2] g_t;  dk_t2 += sum_t ds[t2] q_t / sqrt(hs)
   Queries go in blocks of RLHF__ATT_QB: first each query's row of ds (and its
   dq), then each key's dk and dv from the block's rows at once (rlhf__wsum:
   the key's slice stays in registers while the block's queries are added in
   order of t), so a key's gradient is loaded and stored once per block instead
   of once per query, and two threads (heads side by side in one row of dqkv)
   seldom write the same cache lines. Every sum runs over t or t2 in increasing
   order: the bits do not depend on the block size or the threads. Threads take
   (b, h) with b varying fastest, so two threads work on different rows. */
/* dk, dv of the keys that the queries t0 .. t0+nq-1 (ds rows in ds) see */
static void rlhf__attention_backward_keys(float *dbase, const float *base, const float *g0, const float *ds,
                                          const float *att, const int *s0, int t0, int nq, int T, int C, int hs) {
    float wa[RLHF__ATT_QB], ws[RLHF__ATT_QB];
    int t2, lo = t0 + nq, i, j, n;
    for (i = 0; i < nq; i++) lo = s0[i] < lo ? s0[i] : lo; /* the first key any query of the block sees */
    for (t2 = lo; t2 < t0 + nq; t2++) {
        float *dk = dbase + (ptrdiff_t)t2 * 3 * C + C;
        /* runs of consecutive queries t >= t2 that see t2 (s0 <= t2): one rlhf__wsum per run */
        for (i = t2 > t0 ? t2 - t0 : 0; i < nq; i = j) {
            for (j = i, n = 0; j < nq && s0[j] <= t2; j++, n++) {
                wa[n] = att[(ptrdiff_t)j * T + t2];
                ws[n] = ds[(ptrdiff_t)j * T + t2];
            }
            if (n == 0) {
                j = i + 1;
                continue;
            }
            rlhf__wsum(dk + C, wa, g0 + (ptrdiff_t)i * C, (size_t)C, n, hs, 1);                   /* dv_t2 */
            rlhf__wsum(dk, ws, base + (ptrdiff_t)(t0 + i) * 3 * C, 3 * (size_t)C, n, hs, 1); /* dk_t2 */
        }
    }
}
/* The backward of rlhf__attention_forward_tiled for one (b, h), in its blocks:
     dP = dO V^T                      (scores: V^T packed in panels, as K^T)
     dS = P (dP - sum_j P dP) / sqrt(hs), row by row; 0 outside [s0, t]
     dq += dS K;   dk += dS^T Q;   dv += P^T dO   (tiles of MR queries, MR keys)
   P's zeros outside each row's keys in [lo, hi) are the forward's (the same
   blocks), so P^T's tiles sum over the same keys for every row. dq (the head's
   row 0 of dqkv; dk, dv at + C, + 2C), ds: RLHF__ATT_QB rows of scratch; vt:
   room for V transposed, as the forward's kt, or NULL. */
static void rlhf__attention_backward_tiled(float *dq, float *ds, float *vt, const float *dout, const float *q,
                                           const float *P, const int *d, int T, int C, int hs, float scale) {
    const float *k = q + C, *v = q + 2 * C;
    float *dk = dq + C, *dv = dq + 2 * C;
    ptrdiff_t C3 = 3 * (ptrdiff_t)C, ldt = RLHF__ATT_LDT(T);
    int t0, s0[RLHF__ATT_QB], lo, hi, i, j, c;
    const float *kr; /* K's rows, ks apart */
    ptrdiff_t ks;
    rlhf__att_fill(vt, ldt, v, k, C3, T, hs, &kr, &ks);
    for (t0 = 0; t0 < T; t0 += RLHF__ATT_QB) {
        int nq = T - t0 < RLHF__ATT_QB ? T - t0 : RLHF__ATT_QB;
        const float *a0 = P + (ptrdiff_t)t0 * T, *g = dout + t0 * (ptrdiff_t)C; /* the block's rows of P, dO */
        rlhf__att_block_keys(d, t0, nq, s0, &lo, &hi);
        rlhf__att_scores(ds, T, g, C, v, C3, vt, ldt, t0, nq, lo, hi, hs);
        for (i = 0; i < nq; i++) {
            const float *a = a0 + (ptrdiff_t)i * T + s0[i];
            float *x = ds + (ptrdiff_t)i * T, *xs = x + s0[i];
            int n = t0 + i + 1 - s0[i];
            float dot = rlhf__dot(a, xs, n);
#if defined(RLHF__AVX2)
            __m256 vd = _mm256_set1_ps(dot), vs = _mm256_set1_ps(scale);
            for (j = 0; j + 8 <= n; j += 8) /* (a (x - dot)) scale, as the tail's */
                _mm256_storeu_ps(xs + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(a + j),
                                                                     _mm256_sub_ps(_mm256_loadu_ps(xs + j), vd)), vs));
#else
            j = 0;
#endif
            for (; j < n; j++) xs[j] = a[j] * (xs[j] - dot) * scale;
            memset(x + lo, 0, (size_t)(s0[i] - lo) * sizeof(float));
            memset(x + t0 + i + 1, 0, (size_t)(hi - t0 - i - 1) * sizeof(float));
        }
        rlhf__att_apply(dq + t0 * C3, C3, ds, T, kr, ks, t0, nq, lo, hs, 1);
        for (j = lo; j < hi; j += RLHF__MR) { /* A^T's rows: MR keys; k: the block's queries */
            int rows = hi - j < RLHF__MR ? hi - j : RLHF__MR, w2;
            for (c = 0; c < hs; c += w2) {
                w2 = RLHF__ATT_COLS(hs, c);
                rlhf__att_tile(rows, w2, nq, ds + j, 1, T, q + t0 * C3 + c, C3, dk + j * C3 + c, C3, 1);
                rlhf__att_tile(rows, w2, nq, a0 + j, 1, T, g + c, C, dv + j * C3 + c, C3, 1);
            }
        }
    }
}
static void rlhf__attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                                     const float *att, const int *doc, int B, int T, int C, int NH, float *work) {
    int hs = C / NH, u, nt = rlhf__nt((double)B * T * T * C / 4.0);
    float scale = 1.0f / sqrtf((float)hs), *room;
    if (nt > B * NH) nt = B * NH;
    room = rlhf__att_room(work, nt, T, hs);
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(nt))
    for (u = 0; u < B * NH; u++) {
        int b = u % B, h = u / B, bh = b * NH + h, t0, i, t2, s0[RLHF__ATT_QB];
        const float *base = qkv + (ptrdiff_t)b * T * 3 * C + h * hs; /* seek to q[b, 0, head h] */
        float *dbase = dqkv + (ptrdiff_t)b * T * 3 * C + h * hs;
        float *ds = scratch + (ptrdiff_t)bh * RLHF__ATT_QB * T;
        if (RLHF__ATT_TILED(hs)) {
            float *vt = room ? room + 2 * (ptrdiff_t)RLHF__TID() * hs * RLHF__ATT_LDT(T) : NULL;
            rlhf__attention_backward_tiled(dbase, ds, vt, dout + (ptrdiff_t)b * T * C + h * hs, base,
                                           att + (ptrdiff_t)bh * T * T, doc ? doc + (ptrdiff_t)b * T : NULL, T, C, hs,
                                           scale);
            continue;
        }
        for (t0 = 0; t0 < T; t0 += RLHF__ATT_QB) {
            int nq = T - t0 < RLHF__ATT_QB ? T - t0 : RLHF__ATT_QB;
            const float *g0 = dout + ((ptrdiff_t)b * T + t0) * C + h * hs;
            for (i = 0; i < nq; i++) { /* each query's row: da, then ds in its place; dq */
                int t = t0 + i;
                const float *a = att + ((ptrdiff_t)bh * T + t) * T, *g = g0 + (ptrdiff_t)i * C;
                float *da = ds + (ptrdiff_t)i * T, dot = 0.0f;
                const float *k0;
                s0[i] = doc ? doc[(ptrdiff_t)b * T + t] : 0;
                k0 = base + (ptrdiff_t)s0[i] * 3 * C + C; /* seek to k_s0, then v_s0 */
                rlhf__dots(da + s0[i], g, k0 + C, 3 * (size_t)C, t + 1 - s0[i], hs); /* da[t2] = g . v_t2 */
                for (t2 = s0[i]; t2 <= t; t2++) dot += a[t2] * da[t2];
                for (t2 = s0[i]; t2 <= t; t2++) da[t2] = a[t2] * (da[t2] - dot) * scale;
                rlhf__wsum(dbase + (ptrdiff_t)t * 3 * C, da + s0[i], k0, 3 * (size_t)C, t + 1 - s0[i], hs, 1);
            }
            rlhf__attention_backward_keys(dbase, base, g0, ds, att + ((ptrdiff_t)bh * T + t0) * T, s0, t0, nq, T, C,
                                          hs);
        }
    }
}

/* ---- softmax + cross-entropy, ignore index -1 ------------------------------
   torch.nn.functional.cross_entropy(logits, targets, ignore_index=-1), per row:
     loss_bt = logsumexp(logits_bt) - logits_bt[target_bt]   (0 where target is -1)
   losses (BT), lse (BT) <- logits (BT,V), targets (BT). lse is kept for the backward. */
RLHF__REF void rlhf__crossentropy_forward_ref(float *losses, float *lse, const float *logits, const int *targets,
                                           int BT, int V) {
    int bt;
    for (bt = 0; bt < BT; bt++) {
        const float *l = logits + (ptrdiff_t)bt * V; /* seek to logits[bt, :] */
        float maxv = -INFINITY;
        double sum = 0.0; /* V terms in [0, 1]: double keeps the sum exact enough for any V */
        int v;
        for (v = 0; v < V; v++)
            if (l[v] > maxv) maxv = l[v];
        for (v = 0; v < V; v++) sum += (double)expf(l[v] - maxv);
        lse[bt] = maxv + (float)log(sum);
        losses[bt] = targets[bt] >= 0 ? lse[bt] - l[targets[bt]] : 0.0f;
    }
}
/* sum_v exp(l[v] - maxv) over l (V), in double (8 float exponentials at a
   time, added into 2 x 4 double lanes, then across them) */
static double rlhf__sum_exp_shift(const float *l, int V, float maxv) {
    double sum = 0.0;
    int v = 0;
#if defined(RLHF__AVX2)
    __m256 vm = _mm256_set1_ps(maxv), e;
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    __m128d h;
    for (; v + 8 <= V; v += 8) {
        e = rlhf__exp256(_mm256_sub_ps(_mm256_loadu_ps(l + v), vm));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    if (v < V) { /* padding exp(-inf) = 0 adds nothing */
        e = rlhf__exp256(_mm256_sub_ps(rlhf__load_part(l + v, V - v, -INFINITY), vm));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        v = V;
    }
    s0 = _mm256_add_pd(s0, s1);
    h = _mm_add_pd(_mm256_castpd256_pd128(s0), _mm256_extractf128_pd(s0, 1));
    sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
#endif
    for (; v < V; v++) sum += (double)expf(l[v] - maxv);
    return sum;
}
static void rlhf__crossentropy_forward(float *losses, float *lse, const float *logits, const int *targets,
                                       int BT, int V) {
    int bt;
    RLHF__OMP(omp parallel for schedule(dynamic, 4) num_threads(rlhf__nt(4.0 * BT * V)))
    for (bt = 0; bt < BT; bt++) {
        const float *l = logits + (ptrdiff_t)bt * V; /* seek to logits[bt, :] */
        float maxv = rlhf__row_max(l, V);
        lse[bt] = maxv + (float)log(rlhf__sum_exp_shift(l, V, maxv));
        losses[bt] = targets[bt] >= 0 ? lse[bt] - l[targets[bt]] : 0.0f;
    }
}
/* d loss / d logits = (softmax(logits) - onehot(target)) * dloss, rows with
   target -1 get 0. dlogits (BT,V) overwrites logits in place. */
RLHF__REF void rlhf__crossentropy_backward_ref(float *logits_to_dlogits, const float *lse, const int *targets,
                                            float dloss, int BT, int V) {
    int bt, v;
    for (bt = 0; bt < BT; bt++) {
        float *d = logits_to_dlogits + (ptrdiff_t)bt * V;
        if (targets[bt] < 0) {
            memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
        for (v = 0; v < V; v++) d[v] = expf(d[v] - lse[bt]) * dloss;
        d[targets[bt]] -= dloss;
    }
}
static void rlhf__crossentropy_backward(float *logits_to_dlogits, const float *lse, const int *targets,
                                        float dloss, int BT, int V) {
    int bt;
    RLHF__OMP(omp parallel for schedule(dynamic, 4) num_threads(rlhf__nt(4.0 * BT * V)))
    for (bt = 0; bt < BT; bt++) {
        float *d = logits_to_dlogits + (ptrdiff_t)bt * V;
        int v = 0;
        if (targets[bt] < 0) {
            memset(d, 0, (size_t)V * sizeof(float));
            continue;
        }
#if defined(RLHF__AVX2)
        {
            __m256 vl = _mm256_set1_ps(lse[bt]), vd = _mm256_set1_ps(dloss);
            for (; v + 8 <= V; v += 8)
                _mm256_storeu_ps(d + v, _mm256_mul_ps(rlhf__exp256(_mm256_sub_ps(_mm256_loadu_ps(d + v), vl)), vd));
            if (v < V) {
                __m256 e = rlhf__exp256(_mm256_sub_ps(rlhf__load_part(d + v, V - v, 0.0f), vl));
                rlhf__store_part(d + v, _mm256_mul_ps(e, vd), V - v);
            }
            v = V;
        }
#endif
        for (; v < V; v++) d[v] = expf(d[v] - lse[bt]) * dloss;
        d[targets[bt]] -= dloss;
    }
}

/* ---- AdamW -----------------------------------------------------------------
   torch.optim.AdamW (Loshchilov & Hutter 2019) at step t >= 1, in torch's order:
     g <- g * clip                                   (clip_grad_norm_, when clip < 1)
     p <- p * (1 - lr * wd)                          (decoupled weight decay)
     m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
     p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
   p, m, v (n) in place; g (n), scaled in place when clip != 1 (the very
   product a separate pass over g would store, without that pass's 2 bytes of
   traffic per byte of g). decay = 1 - lr*wd, step_size = lr/(1 - b1^t),
   bc2_sqrt = sqrt(1 - b2^t) are computed once per step in double. The SIMD
   path uses the same separate multiplies, adds, sqrt and division. */
RLHF__REF void rlhf__adamw_ref(float *p, float *m, float *v, float *g, size_t n, float b1, float b2, float eps,
                               float decay, float step_size, float bc2_sqrt, float clip) {
    size_t i;
    for (i = 0; i < n; i++) {
        float denom;
        if (clip != 1.0f) g[i] = g[i] * clip;
        p[i] = p[i] * decay;
        m[i] = m[i] * b1 + (1.0f - b1) * g[i];
        v[i] = v[i] * b2 + (1.0f - b2) * (g[i] * g[i]);
        denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] - step_size * (m[i] / denom);
    }
}
/* Inside a parallel region (an orphaned "omp for", nowait: the tensors of a
   model follow one another without a barrier) or outside one (one thread):
   the n elements in tasks of 4096, handed out as threads ask. */
static void rlhf__adamw_tasks(float *p, float *m, float *v, float *g, size_t n, float b1, float b2, float eps,
                              float decay, float step_size, float bc2_sqrt, float clip) {
    const ptrdiff_t CH = 4096; /* elements per task */
    ptrdiff_t nchunks = ((ptrdiff_t)n + CH - 1) / CH, chunk;
    RLHF__OMP(omp for schedule(dynamic) nowait)
    for (chunk = 0; chunk < nchunks; chunk++) {
        size_t i = (size_t)(chunk * CH), end = i + (size_t)CH < n ? i + (size_t)CH : n;
#if defined(RLHF__AVX2)
        __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), v1b1 = _mm256_set1_ps(1.0f - b1);
        __m256 v1b2 = _mm256_set1_ps(1.0f - b2), veps = _mm256_set1_ps(eps), vdec = _mm256_set1_ps(decay);
        __m256 vss = _mm256_set1_ps(step_size), vbc = _mm256_set1_ps(bc2_sqrt), vclip = _mm256_set1_ps(clip);
        for (; i + 8 <= end; i += 8) {
            __m256 gi = _mm256_loadu_ps(g + i);
            __m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p + i), vdec), mi, vi, den;
            if (clip != 1.0f) gi = _mm256_mul_ps(gi, vclip), _mm256_storeu_ps(g + i, gi);
            mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), vb1), _mm256_mul_ps(v1b1, gi));
            vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), vb2), _mm256_mul_ps(v1b2, _mm256_mul_ps(gi, gi)));
            den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc), veps);
            pi = _mm256_sub_ps(pi, _mm256_mul_ps(vss, _mm256_div_ps(mi, den)));
            _mm256_storeu_ps(p + i, pi); _mm256_storeu_ps(m + i, mi); _mm256_storeu_ps(v + i, vi);
        }
#elif defined(RLHF__NEON)
        float32x4_t vb1 = vdupq_n_f32(b1), vb2 = vdupq_n_f32(b2), v1b1 = vdupq_n_f32(1.0f - b1);
        float32x4_t v1b2 = vdupq_n_f32(1.0f - b2), veps = vdupq_n_f32(eps), vdec = vdupq_n_f32(decay);
        float32x4_t vss = vdupq_n_f32(step_size), vbc = vdupq_n_f32(bc2_sqrt), vclip = vdupq_n_f32(clip);
        for (; i + 4 <= end; i += 4) {
            float32x4_t gi = vld1q_f32(g + i);
            float32x4_t pi = vmulq_f32(vld1q_f32(p + i), vdec), mi, vi, den;
            if (clip != 1.0f) gi = vmulq_f32(gi, vclip), vst1q_f32(g + i, gi);
            mi = vaddq_f32(vmulq_f32(vld1q_f32(m + i), vb1), vmulq_f32(v1b1, gi));
            vi = vaddq_f32(vmulq_f32(vld1q_f32(v + i), vb2), vmulq_f32(v1b2, vmulq_f32(gi, gi)));
            den = vaddq_f32(vdivq_f32(vsqrtq_f32(vi), vbc), veps);
            pi = vsubq_f32(pi, vmulq_f32(vss, vdivq_f32(mi, den)));
            vst1q_f32(p + i, pi); vst1q_f32(m + i, mi); vst1q_f32(v + i, vi);
        }
#endif
        if (i < end)
            rlhf__adamw_ref(p + i, m + i, v + i, g + i, end - i, b1, b2, eps, decay, step_size, bc2_sqrt, clip);
    }
}
/* one tensor in its own parallel region (the kernel test, the bench) */
RLHF__REF void rlhf__adamw(float *p, float *m, float *v, float *g, size_t n, float b1, float b2, float eps, float decay,
                        float step_size, float bc2_sqrt, float clip) {
    RLHF__OMP(omp parallel num_threads(rlhf__nt((double)n)))
    rlhf__adamw_tasks(p, m, v, g, n, b1, b2, eps, decay, step_size, bc2_sqrt, clip);
}

/* sum of squares of x (n) in double: 16 lanes, lane j summing x[i]^2 for
   i = j, j + 16, ... in order, then the lanes u_j = (s_j + s_j+4) + (s_j+8 +
   s_j+12) and (u_0 + u_2) + (u_1 + u_3), then the n % 16 left in order. 16
   independent sums instead of one chain of dependent adds: the GPT-2-124M
   gradient norm took 84 ms on one thread, the 500 MB read ~15. The twin does
   the same additions in the same order: the same bits with or without SIMD. */
RLHF__REF double rlhf__sumsq16_ref(const float *x, size_t n) {
    double lane[16] = {0.0}, u[4];
    size_t i = 0, j;
    for (; i + 16 <= n; i += 16)
        for (j = 0; j < 16; j++) {
            double sq = (double)x[i + j] * (double)x[i + j]; /* apart: no contraction into an FMA */
            lane[j] += sq;
        }
    for (j = 0; j < 4; j++) u[j] = (lane[j] + lane[j + 4]) + (lane[j + 8] + lane[j + 12]);
    {
        double total = (u[0] + u[2]) + (u[1] + u[3]);
        for (; i < n; i++) {
            double sq = (double)x[i] * (double)x[i];
            total += sq;
        }
        return total;
    }
}
static double rlhf__sumsq16(const float *x, size_t n) {
#if defined(RLHF__AVX2)
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, u;
    __m128d h;
    double total;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) { /* a0 holds lanes 0-3, a1 lanes 4-7, ... */
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x0)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x0, 1));
        __m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(x1)), d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(x1, 1));
        a0 = _mm256_add_pd(a0, _mm256_mul_pd(d0, d0)), a1 = _mm256_add_pd(a1, _mm256_mul_pd(d1, d1));
        a2 = _mm256_add_pd(a2, _mm256_mul_pd(d2, d2)), a3 = _mm256_add_pd(a3, _mm256_mul_pd(d3, d3));
    }
    u = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    h = _mm_add_pd(_mm256_castpd256_pd128(u), _mm256_extractf128_pd(u, 1)); /* (u0 + u2, u1 + u3) */
    total = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) {
        double sq = (double)x[i] * (double)x[i];
        total += sq;
    }
    return total;
#else
    return rlhf__sumsq16_ref(x, n);
#endif
}
/* sum of squares of x (n), in double, over 64 fixed chunks added in order:
   the same bits on any thread count. */
static double rlhf__sumsq(const float *x, size_t n) {
    enum { NCHUNK = 64 };
    double part[NCHUNK], total = 0.0;
    size_t per = (n + NCHUNK - 1) / NCHUNK;
    int chunk;
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(rlhf__nt((double)n / 8.0)))
    for (chunk = 0; chunk < NCHUNK; chunk++) {
        size_t i = (size_t)chunk * per, end = i + per < n ? i + per : n;
        part[chunk] = i < end ? rlhf__sumsq16(x + i, end - i) : 0.0;
    }
    for (chunk = 0; chunk < NCHUNK; chunk++) total += part[chunk];
    return total;
}

// ----------------------------------------------------------------------------
// >>json  a strict JSON reader (RFC 8259) and a streaming JSONL reader. Every
//         byte is hostile: lengths are checked before use, nesting is an
//         explicit stack (a deep file cannot overflow the C stack), and every
//         error says where (line, column, byte offset) and what was expected.
// ----------------------------------------------------------------------------

/* The document's nodes and decoded strings live in an arena of blocks that
   are freed together. */
typedef struct rlhf__arena_block { struct rlhf__arena_block *prev; size_t used, cap; } rlhf__arena_block;
#define RLHF__ARENA_HEADER ((sizeof(rlhf__arena_block) + 15) & ~(size_t)15)
struct rlhf_json_doc {
    rlhf__arena_block *blocks;
    rlhf_json *root;
};

static void *rlhf__arena_alloc(rlhf_json_doc *d, size_t n) {
    rlhf__arena_block *b = d->blocks;
    unsigned char *p;
    if (n > (size_t)-1 / 2) return NULL;
    n = (n + 15) & ~(size_t)15; /* keep every allocation 16-byte aligned */
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = (rlhf__arena_block *)rlhf__alloc(RLHF__ARENA_HEADER + cap);
        if (!b) return NULL;
        b->prev = d->blocks;
        b->used = 0;
        b->cap = cap;
        d->blocks = b;
    }
    p = (unsigned char *)b + RLHF__ARENA_HEADER + b->used;
    b->used += n;
    return p;
}

RLHFDEF void rlhf_json_free(rlhf_json_doc *d) {
    rlhf__arena_block *b;
    if (!d) return;
    for (b = d->blocks; b;) {
        rlhf__arena_block *prev = b->prev;
        rlhf__free(b);
        b = prev;
    }
    rlhf__free(d);
}
RLHFDEF const rlhf_json *rlhf_json_root(const rlhf_json_doc *d) { return d ? d->root : NULL; }

/* parser state: the input s[0..n), the position i */
typedef struct rlhf__jp {
    const unsigned char *s;
    size_t n, i;
    rlhf_json_doc *doc;
    rlhf_json_error *err;
} rlhf__jp;

/* Fill err with the place of byte `at` and a reason; returns RLHF_ERR_PARSE
   (or `code`). The line and column are counted only here, on failure. */
static rlhf_result rlhf__json_fail(rlhf__jp *p, rlhf_result code, size_t at, const char *fmt, ...) {
    va_list ap;
    size_t k, line = 1, line_start = 0;
    char found[32];
    if (!p->err) return code;
    for (k = 0; k < at && k < p->n; k++)
        if (p->s[k] == '\n') {
            line++;
            line_start = k + 1;
        }
    if (at >= p->n) snprintf(found, sizeof found, "end of input");
    else if (p->s[at] >= 0x20 && p->s[at] < 0x7f) snprintf(found, sizeof found, "'%c'", p->s[at]);
    else snprintf(found, sizeof found, "byte 0x%02X", p->s[at]);
    p->err->offset = at;
    p->err->line = line;
    p->err->column = at - line_start + 1;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof p->err->message, fmt, ap);
    va_end(ap);
    k = strlen(p->err->message);
    if (k + 1 < sizeof p->err->message)
        snprintf(p->err->message + k, sizeof p->err->message - k, ", found %s", found);
    return code;
}

static void rlhf__json_ws(rlhf__jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

/* Length of the valid UTF-8 sequence at s[0..avail), or 0 if invalid
   (Unicode 15, table 3-7: no overlong forms, no surrogates, <= U+10FFFF). */
static size_t rlhf__utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t len, k;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong below U+0800 */
        else if (c == 0xED) hi = 0x9F; /* surrogates U+D800..DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong below U+10000 */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    if (avail < len || s[1] < lo || s[1] > hi) return 0;
    for (k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

static int rlhf__hex4(const unsigned char *s, unsigned *out) {
    unsigned v = 0;
    int k;
    for (k = 0; k < 4; k++) {
        unsigned c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return 0;
    }
    *out = v;
    return 1;
}
static size_t rlhf__utf8_put(unsigned char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | cp >> 6); o[1] = (unsigned char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12); o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18); o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63)); o[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

/* A string at p->i (which is '"'): decoded into the arena, NUL-terminated.
   The raw span bounds the decoded length (every escape shrinks). */
static rlhf_result rlhf__json_string(rlhf__jp *p, const char **out, size_t *out_len) {
    size_t start = p->i + 1, end = start, k;
    unsigned char *o, *w;
    /* the raw span, to the closing quote (an escape's second byte is stepped over) */
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n)
        return rlhf__json_fail(p, RLHF_ERR_PARSE, p->n, "unterminated string (it starts at byte %zu)", p->i);
    o = w = (unsigned char *)rlhf__arena_alloc(p->doc, end - start + 1);
    if (!o) return rlhf__json_fail(p, RLHF_ERR_OUT_OF_MEMORY, p->i, "out of memory decoding a string");

    /* decode: escapes (\uXXXX and its surrogate pairs to UTF-8), other bytes checked as UTF-8 and copied */
    for (k = start; k < end;) {
        unsigned c = p->s[k];
        if (c == '\\') {
            unsigned cp, lo;
            c = p->s[k + 1]; /* k + 1 < end: the scan above stepped over it */
            switch (c) {
            case '"': *w++ = '"'; k += 2; continue;
            case '\\': *w++ = '\\'; k += 2; continue;
            case '/': *w++ = '/'; k += 2; continue;
            case 'b': *w++ = '\b'; k += 2; continue;
            case 'f': *w++ = '\f'; k += 2; continue;
            case 'n': *w++ = '\n'; k += 2; continue;
            case 'r': *w++ = '\r'; k += 2; continue;
            case 't': *w++ = '\t'; k += 2; continue;
            case 'u': break;
            default: return rlhf__json_fail(p, RLHF_ERR_PARSE, k + 1,
                                            "expected an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
            }
            if (end - k < 6 || !rlhf__hex4(p->s + k + 2, &cp))
                return rlhf__json_fail(p, RLHF_ERR_PARSE, k, "expected 4 hex digits after \\u");
            k += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a high surrogate needs its low half: \uDC00..\uDFFF */
                if (end - k < 6 || p->s[k] != '\\' || p->s[k + 1] != 'u' || !rlhf__hex4(p->s + k + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return rlhf__json_fail(p, RLHF_ERR_PARSE, k - 6,
                                           "expected a low surrogate \\uDC00-\\uDFFF after \\u%04X", cp);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                k += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF)
                return rlhf__json_fail(p, RLHF_ERR_PARSE, k - 6, "lone low surrogate \\u%04X (not a character)", cp);
            w += rlhf__utf8_put(w, cp);
        } else if (c < 0x20) {
            return rlhf__json_fail(p, RLHF_ERR_PARSE, k, "control character in a string (escape it)");
        } else {
            size_t len = rlhf__utf8_len(p->s + k, end - k);
            if (!len) return rlhf__json_fail(p, RLHF_ERR_PARSE, k, "invalid UTF-8 in a string");
            memcpy(w, p->s + k, len);
            w += len;
            k += len;
        }
    }
    *w = 0;
    *out = (const char *)o;
    *out_len = (size_t)(w - o);
    p->i = end + 1;
    return RLHF_OK;
}

/* A number at p->i, grammar -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static rlhf_result rlhf__json_number(rlhf__jp *p, rlhf_json *v) {
    static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t start = p->i, k = p->i;
    int neg = 0, digits = 0;
    long e10 = 0, exp_val = 0;
    uint64_t mant = 0;
    double x;
    char *text;

    /* the integer part */
    if (k < p->n && p->s[k] == '-') { neg = 1; k++; }
    if (k >= p->n || p->s[k] < '0' || p->s[k] > '9') return rlhf__json_fail(p, RLHF_ERR_PARSE, k, "expected a digit");
    if (p->s[k] == '0') {
        k++;
        if (k < p->n && p->s[k] >= '0' && p->s[k] <= '9')
            return rlhf__json_fail(p, RLHF_ERR_PARSE, k, "leading zero in a number");
    } else
        for (; k < p->n && p->s[k] >= '0' && p->s[k] <= '9'; k++) {
            /* keep 19 significant digits; count the dropped ones in the exponent */
            if (digits < 19) { mant = mant * 10 + (uint64_t)(p->s[k] - '0'); digits += mant != 0; }
            else e10++;
        }

    /* the fraction, then the exponent */
    if (k < p->n && p->s[k] == '.') {
        k++;
        if (k >= p->n || p->s[k] < '0' || p->s[k] > '9')
            return rlhf__json_fail(p, RLHF_ERR_PARSE, k, "expected a digit after '.'");
        for (; k < p->n && p->s[k] >= '0' && p->s[k] <= '9'; k++)
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(p->s[k] - '0');
                digits += mant != 0;
                e10--;
            }
    }
    if (k < p->n && (p->s[k] == 'e' || p->s[k] == 'E')) {
        int eneg = 0;
        k++;
        if (k < p->n && (p->s[k] == '+' || p->s[k] == '-')) eneg = p->s[k++] == '-';
        if (k >= p->n || p->s[k] < '0' || p->s[k] > '9')
            return rlhf__json_fail(p, RLHF_ERR_PARSE, k, "expected a digit in the exponent");
        /* past an exponent of 10^6 only 0 or inf are possible: stop counting */
        for (; k < p->n && p->s[k] >= '0' && p->s[k] <= '9'; k++)
            if (exp_val < 1000000) exp_val = exp_val * 10 + (p->s[k] - '0');
        e10 += eneg ? -exp_val : exp_val;
    }

    /* value = mant * 10^e10: exact (hence correctly rounded) when mant < 2^53
       and |e10| <= 22; otherwise one rounding per step of at most 10^22 (each
       power exact in a double), a few ulp at worst, and the same bits on every
       libm (pow() is not: Wine's is off by 90 ulp at 10^-162) */
    if (mant == 0 || e10 < -400) x = 0.0; /* below the smallest subnormal */
    else {
        x = (double)mant;
        for (; e10 > 22 && !isinf(x); e10 -= 22) x *= pow10[22];
        for (; e10 < -22 && x != 0.0; e10 += 22) x /= pow10[22];
        if (e10 >= -22 && e10 <= 22) x = e10 >= 0 ? x * pow10[e10] : x / pow10[-e10]; /* else inf or 0 already */
    }
    if (isinf(x)) return rlhf__json_fail(p, RLHF_ERR_PARSE, start, "number too large for a double");

    /* the node keeps the value and the text as written */
    v->type = RLHF_JSON_NUMBER;
    v->number = neg ? -x : x;
    v->len = k - start;
    text = (char *)rlhf__arena_alloc(p->doc, v->len + 1);
    if (!text) return rlhf__json_fail(p, RLHF_ERR_OUT_OF_MEMORY, start, "out of memory");
    memcpy(text, p->s + start, v->len);
    text[v->len] = 0;
    v->str = text;
    p->i = k;
    return RLHF_OK;
}

/* The tree under construction: the open arrays and objects (an explicit
   stack: a deep document cannot overflow the C stack), the count of values
   against max_values (each value costs ~100 bytes of memory, so a hostile
   input cannot inflate 50x before it is judged) and the member name that the
   next value of an object takes. */
typedef struct rlhf__jframe { rlhf_json *node, *last; } rlhf__jframe; /* an open array/object and its last element */
typedef struct rlhf__jtree {
    rlhf__jframe *stack;
    size_t depth, n_values, max_values;
    int max_depth;
    const char *key;
    size_t key_len;
} rlhf__jtree;

/* A value is expected at p->i: a new node, linked as the last element of
   the innermost open container (or as the root). */
static rlhf_result rlhf__json_node(rlhf__jp *p, rlhf__jtree *tr, rlhf_json **out) {
    rlhf_json *v;
    *out = NULL;
    rlhf__json_ws(p);
    if (p->i >= p->n) return rlhf__json_fail(p, RLHF_ERR_PARSE, p->i, "expected a value");
    if (++tr->n_values > tr->max_values)
        return rlhf__json_fail(p, RLHF_ERR_TOO_LARGE, p->i, "more than %zu values", tr->max_values);
    v = (rlhf_json *)rlhf__arena_alloc(p->doc, sizeof *v);
    if (!v) return rlhf__json_fail(p, RLHF_ERR_OUT_OF_MEMORY, p->i, "out of memory");
    memset(v, 0, sizeof *v);
    v->offset = p->i;

    if (tr->depth == 0) p->doc->root = v;
    else {
        rlhf__jframe *f = &tr->stack[tr->depth - 1];
        if (f->last) f->last->next = v;
        else f->node->child = v;
        f->last = v;
        f->node->len++;
        if (f->node->type == RLHF_JSON_OBJECT) { /* array elements have no name */
            v->key = tr->key;
            v->key_len = tr->key_len;
        }
    }
    *out = v;
    return RLHF_OK;
}

/* A member name and its ':' at p->i (whitespace already skipped), into
   tr->key; `expected` says what else could have stood there. */
static rlhf_result rlhf__json_member_name(rlhf__jp *p, rlhf__jtree *tr, const char *expected) {
    rlhf_result r;
    if (p->i >= p->n || p->s[p->i] != '"') return rlhf__json_fail(p, RLHF_ERR_PARSE, p->i, "%s", expected);
    if ((r = rlhf__json_string(p, &tr->key, &tr->key_len)) != RLHF_OK) return r;
    rlhf__json_ws(p);
    if (p->i >= p->n || p->s[p->i] != ':')
        return rlhf__json_fail(p, RLHF_ERR_PARSE, p->i, "expected ':' after a member name");
    p->i++;
    return RLHF_OK;
}

/* '{' or '[' at p->i opens v. *empty is 1 when it closes at once (v is then
   a complete value), 0 when its first element's value is expected. */
static rlhf_result rlhf__json_open(rlhf__jp *p, rlhf__jtree *tr, rlhf_json *v, int *empty) {
    unsigned c = p->s[p->i];
    *empty = 0;
    if (tr->depth >= (size_t)tr->max_depth)
        return rlhf__json_fail(p, RLHF_ERR_TOO_LARGE, p->i, "nesting deeper than %d levels", tr->max_depth);
    v->type = c == '{' ? RLHF_JSON_OBJECT : RLHF_JSON_ARRAY;
    tr->stack[tr->depth].node = v;
    tr->stack[tr->depth].last = NULL;
    tr->depth++;
    p->i++;
    rlhf__json_ws(p);

    if (p->i < p->n && p->s[p->i] == (c == '{' ? '}' : ']')) {
        *empty = 1;
        p->i++;
        tr->depth--; /* the container is complete */
        return RLHF_OK;
    }
    return c == '{' ? rlhf__json_member_name(p, tr, "expected '\"' (a member name) or '}'") : RLHF_OK;
}

/* A string, a number, true, false or null at p->i, into v. */
static rlhf_result rlhf__json_scalar(rlhf__jp *p, rlhf_json *v) {
    unsigned c = p->s[p->i];
    if (c == '"') {
        v->type = RLHF_JSON_STRING;
        return rlhf__json_string(p, &v->str, &v->len);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return rlhf__json_number(p, v);
    if (p->n - p->i >= 4 && memcmp(p->s + p->i, "true", 4) == 0) {
        v->type = RLHF_JSON_TRUE;
        p->i += 4;
    } else if (p->n - p->i >= 5 && memcmp(p->s + p->i, "false", 5) == 0) {
        v->type = RLHF_JSON_FALSE;
        p->i += 5;
    } else if (p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0) {
        v->type = RLHF_JSON_NULL;
        p->i += 4;
    } else
        return rlhf__json_fail(p, RLHF_ERR_PARSE, p->i,
                               "expected a value (object, array, string, number, true, false or null)");
    return RLHF_OK;
}

/* A value is complete: close the containers it completes, then step over the
   ',' (and an object's next member name) before the next element's value.
   tr->depth is 0 when the root is complete. */
static rlhf_result rlhf__json_after_value(rlhf__jp *p, rlhf__jtree *tr) {
    while (tr->depth > 0) {
        rlhf__jframe *f = &tr->stack[tr->depth - 1];
        char close = f->node->type == RLHF_JSON_OBJECT ? '}' : ']';
        rlhf__json_ws(p);
        if (p->i < p->n && p->s[p->i] == (unsigned char)close) {
            p->i++;
            tr->depth--;
            continue;
        }
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            if (close != '}') return RLHF_OK;
            rlhf__json_ws(p);
            return rlhf__json_member_name(p, tr, "expected '\"' (a member name) after ','");
        }
        return rlhf__json_fail(p, RLHF_ERR_PARSE, p->i, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    return RLHF_OK;
}

/* The whole of text[0..len) as one JSON value. max_values bounds the tree
   (see rlhf__jtree). */
static rlhf_result rlhf__json_parse(rlhf_json_doc **out, const char *text, size_t len, int max_depth, size_t max_values,
                                    rlhf_json_error *err) {
    rlhf__jp p;
    rlhf__jtree tr;
    rlhf_json_doc *d;
    size_t cap;
    rlhf_result r = RLHF_OK;
    if (err) memset(err, 0, sizeof *err);
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!text && len) return RLHF_ERR_INVALID_ARGUMENT;

    /* the document and the stack of open containers */
    if (max_depth <= 0) max_depth = RLHF_JSON_DEFAULT_MAX_DEPTH;
    cap = (size_t)max_depth < len ? (size_t)max_depth : len; /* each level needs a byte */
    d = (rlhf_json_doc *)rlhf__alloc(sizeof *d);
    memset(&tr, 0, sizeof tr);
    tr.stack = (rlhf__jframe *)rlhf__alloc((cap + 1) * sizeof(rlhf__jframe));
    if (!d || !tr.stack) {
        rlhf__free(d);
        rlhf__free(tr.stack);
        return RLHF_ERR_OUT_OF_MEMORY;
    }
    memset(d, 0, sizeof *d);
    tr.max_depth = max_depth;
    tr.max_values = max_values;
    p.s = (const unsigned char *)text;
    p.n = len;
    p.i = 0;
    p.doc = d;
    p.err = err;

    /* one value per turn: a container opens (its elements follow), or a
       scalar completes and closes what it completes */
    for (;;) {
        rlhf_json *v;
        if ((r = rlhf__json_node(&p, &tr, &v)) != RLHF_OK) break;
        if (p.s[p.i] == '{' || p.s[p.i] == '[') {
            int empty;
            if ((r = rlhf__json_open(&p, &tr, v, &empty)) != RLHF_OK) break;
            if (!empty) continue; /* its first element's value */
        } else if ((r = rlhf__json_scalar(&p, v)) != RLHF_OK)
            break;
        if ((r = rlhf__json_after_value(&p, &tr)) != RLHF_OK || tr.depth == 0) break;
    }
    rlhf__free(tr.stack);

    /* nothing but whitespace after the root */
    if (r == RLHF_OK) {
        rlhf__json_ws(&p);
        if (p.i < p.n) r = rlhf__json_fail(&p, RLHF_ERR_PARSE, p.i, "expected the end of the input after the value");
    }
    if (r != RLHF_OK) {
        rlhf_json_free(d);
        return r;
    }
    *out = d;
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_json_parse(rlhf_json_doc **out, const char *text, size_t len, int max_depth,
                                    rlhf_json_error *err) {
    return rlhf__json_parse(out, text, len, max_depth, (size_t)-1, err);
}

RLHFDEF const rlhf_json *rlhf_json_get(const rlhf_json *o, const char *key) {
    const rlhf_json *c;
    size_t n;
    if (!o || o->type != RLHF_JSON_OBJECT || !key) return NULL;
    n = strlen(key);
    for (c = o->child; c; c = c->next)
        if (c->key_len == n && memcmp(c->key, key, n) == 0) return c;
    return NULL;
}
RLHFDEF const rlhf_json *rlhf_json_at(const rlhf_json *a, size_t i) {
    const rlhf_json *c;
    if (!a || (a->type != RLHF_JSON_ARRAY && a->type != RLHF_JSON_OBJECT) || i >= a->len) return NULL;
    for (c = a->child; i > 0; i--) c = c->next;
    return c;
}
/* A member of object o whose name an earlier member already has (*dup, or
   NULL if the names are distinct); sorting keeps it O(n log n). */
static int rlhf__cmp_member_key(const void *x, const void *y) {
    const rlhf_json *a = *(const rlhf_json *const *)x, *b = *(const rlhf_json *const *)y;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    if (a->key_len != b->key_len) return a->key_len < b->key_len ? -1 : 1;
    return a->offset < b->offset ? -1 : a->offset > b->offset; /* equal names: document order */
}
static rlhf_result rlhf__json_dup_key(const rlhf_json *o, const rlhf_json **dup) {
    const rlhf_json **m, *c;
    size_t i = 0;
    *dup = NULL;
    if (!o || o->type != RLHF_JSON_OBJECT || o->len < 2) return RLHF_OK;
    m = (const rlhf_json **)rlhf__alloc(o->len * sizeof *m);
    if (!m) return RLHF_ERR_OUT_OF_MEMORY;
    for (c = o->child; c; c = c->next) m[i++] = c;
    qsort((void *)m, o->len, sizeof *m, rlhf__cmp_member_key);
    for (i = 1; i < o->len && !*dup; i++)
        if (m[i]->key_len == m[i - 1]->key_len && memcmp(m[i]->key, m[i - 1]->key, m[i]->key_len) == 0) *dup = m[i];
    rlhf__free((void *)m);
    return RLHF_OK;
}

RLHFDEF int rlhf_json_int64(const rlhf_json *v, int64_t *out) {
    size_t k = 0;
    int neg = 0;
    uint64_t x = 0, limit;
    if (!v || v->type != RLHF_JSON_NUMBER || !out) return 0;
    if (v->str[0] == '-') { neg = 1; k = 1; }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; k < v->len; k++) {
        unsigned d = (unsigned char)v->str[k] - '0';
        if (d > 9) return 0; /* '.', 'e': not written as an integer */
        if (x > (limit - d) / 10) return 0;
        x = x * 10 + d;
    }
    *out = neg ? (x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x) : (int64_t)x;
    return 1;
}

/* ---- JSONL ------------------------------------------------------------------- */
struct rlhf_jsonl {
    FILE *f;
    char *path;
    unsigned char *buf;  /* read buffer (64 KiB) */
    size_t buf_pos, buf_len;
    unsigned char *line; /* the current line, grown up to max_line */
    size_t line_cap, max_line, line_no;
    int eof;
};
#define RLHF__JSONL_CHUNK 65536

static void rlhf__jsonl_error(rlhf_json_error *err, const char *path, size_t line, size_t column, size_t offset,
                              const char *what) {
    int n;
    if (!err) return;
    err->line = line;
    err->column = column;
    err->offset = offset;
    n = snprintf(err->message, sizeof err->message, "%s:%zu:%zu: ", path, line, column);
    if (n > 0 && (size_t)n < sizeof err->message) { /* append what, cut to fit */
        size_t room = sizeof err->message - (size_t)n - 1, wl = strlen(what);
        memcpy(err->message + n, what, wl < room ? wl : room);
        err->message[(size_t)n + (wl < room ? wl : room)] = 0;
    }
}

RLHFDEF rlhf_result rlhf_jsonl_open(rlhf_jsonl **out, const char *path, long max_line_bytes, rlhf_json_error *err) {
    rlhf_jsonl *r;
    size_t plen;
    if (err) memset(err, 0, sizeof *err);
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!path) return RLHF_ERR_INVALID_ARGUMENT;
    r = (rlhf_jsonl *)rlhf__alloc(sizeof *r);
    if (!r) return RLHF_ERR_OUT_OF_MEMORY;
    memset(r, 0, sizeof *r);
    plen = strlen(path);
    r->path = (char *)rlhf__alloc(plen + 1);
    r->buf = (unsigned char *)rlhf__alloc(RLHF__JSONL_CHUNK);
    if (!r->path || !r->buf) {
        rlhf_jsonl_close(r);
        return RLHF_ERR_OUT_OF_MEMORY;
    }
    memcpy(r->path, path, plen + 1);
    r->max_line = max_line_bytes > 0 ? (size_t)max_line_bytes : (size_t)64 << 20;
    r->f = fopen(path, "rb");
    if (!r->f) {
        rlhf__jsonl_error(err, path, 0, 0, 0, "cannot open the file");
        rlhf_jsonl_close(r);
        return RLHF_ERR_IO;
    }
    *out = r;
    return RLHF_OK;
}

RLHFDEF void rlhf_jsonl_close(rlhf_jsonl *r) {
    if (!r) return;
    if (r->f) fclose(r->f);
    rlhf__free(r->path);
    rlhf__free(r->buf);
    rlhf__free(r->line);
    rlhf__free(r);
}
RLHFDEF size_t rlhf_jsonl_line(const rlhf_jsonl *r) { return r ? r->line_no : 0; }

/* Read the next line (without its LF) into r->line; *len receives its length.
   Returns 0 at end of file, 1 for a line, -1 for a line over the limit (which
   is consumed), -2 for a read error. */
static int rlhf__jsonl_getline(rlhf_jsonl *r, size_t *len) {
    size_t n = 0;
    int too_long = 0, got = 0;
    for (;;) {
        unsigned char *nl;
        size_t take, avail;
        /* refill the read buffer */
        if (r->buf_pos == r->buf_len) {
            if (r->eof) break;
            r->buf_len = fread(r->buf, 1, RLHF__JSONL_CHUNK, r->f);
            r->buf_pos = 0;
            if (r->buf_len == 0) {
                r->eof = 1;
                if (ferror(r->f)) return -2;
                break;
            }
        }

        /* the bytes up to the LF (or the buffer's end) join the line, unless it is already over the limit */
        got = 1;
        avail = r->buf_len - r->buf_pos;
        nl = (unsigned char *)memchr(r->buf + r->buf_pos, '\n', avail);
        take = nl ? (size_t)(nl - (r->buf + r->buf_pos)) : avail;
        if (!too_long) {
            if (n + take > r->max_line) too_long = 1;
            else {
                if (n + take + 1 > r->line_cap) { /* grow geometrically, bounded by the limit */
                    size_t cap = r->line_cap ? r->line_cap : 4096;
                    unsigned char *nb;
                    while (cap < n + take + 1) cap *= 2;
                    if (cap > r->max_line + 1) cap = r->max_line + 1;
                    nb = (unsigned char *)rlhf__alloc(cap);
                    if (!nb) return -3;
                    if (n) memcpy(nb, r->line, n);
                    rlhf__free(r->line);
                    r->line = nb;
                    r->line_cap = cap;
                }
                memcpy(r->line + n, r->buf + r->buf_pos, take);
                n += take;
            }
        }
        r->buf_pos += take;
        if (nl) {
            r->buf_pos++; /* the LF */
            break;
        }
    }
    if (!got) return 0;
    r->line_no++;
    *len = n;
    return too_long ? -1 : 1;
}

RLHFDEF rlhf_result rlhf_jsonl_next(rlhf_jsonl *r, rlhf_json_doc **doc, rlhf_json_error *err) {
    if (err) memset(err, 0, sizeof *err);
    if (!doc) return RLHF_ERR_INVALID_ARGUMENT;
    *doc = NULL;
    if (!r) return RLHF_ERR_INVALID_ARGUMENT;
    for (;;) {
        size_t len = 0, k;
        const unsigned char *text;
        rlhf_json_error e;
        rlhf_result res;
        int g = rlhf__jsonl_getline(r, &len);

        /* the next line, or why there is none */
        if (g == 0) return RLHF_OK; /* end of file */
        if (g == -1) {
            char what[96];
            snprintf(what, sizeof what, "line longer than the limit of %zu bytes", r->max_line);
            rlhf__jsonl_error(err, r->path, r->line_no, 1, 0, what);
            return RLHF_ERR_TOO_LARGE;
        }
        if (g == -2) {
            rlhf__jsonl_error(err, r->path, r->line_no + 1, 1, 0, "read error");
            return RLHF_ERR_IO;
        }
        if (g == -3) {
            rlhf__jsonl_error(err, r->path, r->line_no + 1, 1, 0, "out of memory for a line");
            return RLHF_ERR_OUT_OF_MEMORY;
        }

        /* the line's text: a CRLF's CR and the file's BOM dropped; a blank line skipped */
        if (len && r->line[len - 1] == '\r') len--; /* CRLF */
        /* a UTF-8 byte-order mark (Windows editors write one) starts the file, not the record */
        text = r->line;
        if (r->line_no == 1 && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3, len -= 3;
        for (k = 0; k < len && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r'); k++) {}
        if (k == len) continue; /* blank line */

        /* a record of more than 1,000,000 values is refused before its tree
           (~100 bytes a value) grows past ~100 MB */
        res = rlhf__json_parse(doc, (const char *)text, len, 0, 1000000, &e);
        if (res != RLHF_OK) {
            rlhf__jsonl_error(err, r->path, r->line_no, e.column, e.offset, e.message);
            return res;
        }
        return RLHF_OK;
    }
}

/* ---- small helpers shared by the readers and writers below --------------------- */
static char *rlhf__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = (char *)rlhf__alloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
static int rlhf__valid_utf8(const char *s, size_t n) {
    size_t i = 0, k;
    while (i < n) {
        if (!(k = rlhf__utf8_len((const unsigned char *)s + i, n - i))) return 0;
        i += k;
    }
    return 1;
}

/* a growing string (headers, JSON output) */
typedef struct rlhf__sb { char *p; size_t len, cap; int oom; } rlhf__sb;
static void rlhf__sb_add(rlhf__sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *np;
        while (cap < b->len + n + 1) cap *= 2;
        if (!(np = (char *)rlhf__alloc(cap))) { b->oom = 1; return; }
        if (b->len) memcpy(np, b->p, b->len);
        rlhf__free(b->p);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void rlhf__sb_str(rlhf__sb *b, const char *s) { rlhf__sb_add(b, s, strlen(s)); }
static void rlhf__sb_fmt(rlhf__sb *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) rlhf__sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}
/* a JSON string literal: quotes, backslashes and control bytes escaped */
static void rlhf__sb_json(rlhf__sb *b, const char *s) {
    rlhf__sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { rlhf__sb_add(b, "\\", 1); rlhf__sb_add(b, s, 1); }
        else if (c < 0x20) rlhf__sb_fmt(b, "\\u%04x", c);
        else rlhf__sb_add(b, s, 1);
    }
    rlhf__sb_add(b, "\"", 1);
}

/* Read the whole of a file of at most limit bytes into a new buffer (NULL if
   it cannot be read or is larger: *len 0; out of memory: *len (size_t)-1). */
static char *rlhf__read_small_file(const char *path, size_t limit, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long size;
    size_t n;
    *len = 0;
    if (!f) return NULL;
    /* allocate what the file holds, not the limit */
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || (unsigned long)size > limit ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = (char *)rlhf__alloc((size_t)size + 1);
    if (!buf) { fclose(f); *len = (size_t)-1; return NULL; }
    n = fread(buf, 1, (size_t)size + 1, f);
    fclose(f);
    if (n != (size_t)size) { rlhf__free(buf); return NULL; } /* changed under us */
    buf[n] = 0;
    *len = n;
    return buf;
}

/* name inside the directory dir, or (beside != 0) beside the file path names,
   as a new string (NULL when out of memory) */
static char *rlhf__path_join(const char *path, const char *name, int beside) {
    size_t plen = strlen(path), nlen = strlen(name);
    char *s;
    if (beside) /* keep the directory part, its separator included */
        while (plen > 0 && path[plen - 1] != '/'
#ifdef _WIN32
               && path[plen - 1] != '\\'
#endif
        )
            plen--;
    else
        while (plen > 1 && path[plen - 1] == '/') plen--; /* "dir/" and "dir" name the same place */
    if (!(s = (char *)rlhf__alloc(plen + nlen + 2))) return NULL;
    memcpy(s, path, plen);
    if (!beside && plen > 0 && s[plen - 1] != '/') s[plen++] = '/';
    memcpy(s + plen, name, nlen + 1);
    return s;
}
/* 1 if path opens for reading (a directory may, on POSIX: callers read it as a file to tell) */
static int rlhf__can_open(const char *path) {
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f) fclose(f);
    return f != NULL;
}
/* the file name part of path */
static const char *rlhf__base_name(const char *path) {
    const char *b = strrchr(path, '/');
#ifdef _WIN32
    if (strrchr(path, '\\') > b) b = strrchr(path, '\\');
#endif
    return b ? b + 1 : path;
}

/* "path: reason" into err (may be NULL); returns r */
static rlhf_result rlhf__st_err(rlhf_error *err, rlhf_result r, const char *path, const char *fmt, ...) {
    va_list ap;
    int n;
    if (!err) return r;
    n = snprintf(err->message, sizeof err->message, "%s: ", path);
    if (n < 0 || (size_t)n >= sizeof err->message) return r;
    va_start(ap, fmt);
    vsnprintf(err->message + n, sizeof err->message - (size_t)n, fmt, ap);
    va_end(ap);
    return r;
}
/* the error of a failed rlhf__read_small_file (len: what it left in *len) */
static rlhf_result rlhf__read_err(rlhf_error *err, const char *path, size_t len) {
    if (len == (size_t)-1) return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory reading the file");
    return rlhf__st_err(err, RLHF_ERR_IO, path, "cannot read the file (or over 256 MiB)");
}

/* ---- writing: a file appears whole or not at all --------------------------------
   rlhf__out_open creates a temporary file beside path (the same directory, so
   the rename is atomic); rlhf__out_write appends (a failure is remembered);
   rlhf__out_commit flushes, fsyncs (POSIX) and closes it, renames it over
   path and fsyncs the directory. path then holds the old file or the new
   one, never a mix. in_place writes path itself, still fsync'ed, for a
   caller that journals its own files (rlhf_ppo_save's *.next): a kill then
   leaves no temporary behind. A failure removes what was written. */
#if defined(__unix__) || defined(__APPLE__)
#define RLHF__POSIX_IO 1
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#elif defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <io.h>      /* _commit: fsync's counterpart */
#include <windows.h> /* MoveFileExA */
#endif
typedef struct rlhf__out {
#ifdef RLHF__POSIX_IO
    int fd;
#else
    FILE *f;
#endif
    int failed, in_place;
    const char *path;
    char *file;      /* the file being written: path.tmp-PID, or path in place */
    char why[512];   /* what went wrong, with the file names */
} rlhf__out;

/* Make renames in the directory of path durable (POSIX: fsync the
   directory; elsewhere nothing to do). */
static void rlhf__fsync_dir(const char *path) {
#ifdef RLHF__POSIX_IO
    char buf[1024], *dir = strlen(path) < sizeof buf ? strcpy(buf, path) : rlhf__strdup(path), *slash;
    int fd;
    if (!dir) return; /* out of memory for a very long path: the file is in place, only this fsync is skipped */
    slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    fd = open(slash ? dir : ".", O_RDONLY);
    if (fd >= 0) {
        if (fsync(fd) != 0) { /* some file systems refuse fsync on directories: the file is still safe */ }
        close(fd);
    }
    if (dir != buf) rlhf__free(dir);
#else
    (void)path;
#endif
}
/* rename from over to (which may exist); 0 on success. Windows' rename()
   does not replace: MoveFileExA does, in one step, and WRITE_THROUGH returns
   only once the move is on disk (the fsync of the directory elsewhere). */
static int rlhf__replace(const char *from, const char *to) {
#if defined(_WIN32)
    return MoveFileExA(from, to, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH) ? 0 : -1;
#else
    return rename(from, to);
#endif
}

static rlhf_result rlhf__out_open(rlhf__out *o, const char *path, int in_place) {
    size_t plen = strlen(path);
    o->failed = 0;
    o->in_place = in_place;
    o->path = path;
    o->why[0] = 0;
    o->file = NULL;
#ifdef RLHF__POSIX_IO
    {   /* a rename would put a plain file where a device, a pipe or a directory was (/dev/null, as root) */
        struct stat st;
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            snprintf(o->why, sizeof o->why,
                     "%s exists and is not a regular file (a directory, a device or a pipe): not replaced", path);
            return RLHF_ERR_IO;
        }
    }
#endif
    if (!(o->file = (char *)rlhf__alloc(plen + 32))) {
        snprintf(o->why, sizeof o->why, "out of memory");
        return RLHF_ERR_OUT_OF_MEMORY;
    }
#ifdef RLHF__POSIX_IO
    /* the PID keeps two processes saving to one path off each other's file */
    if (in_place) memcpy(o->file, path, plen + 1);
    else snprintf(o->file, plen + 32, "%s.tmp-%ld", path, (long)getpid());
    o->fd = open(o->file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    o->failed = o->fd < 0;
#else
    if (in_place) memcpy(o->file, path, plen + 1);
    else snprintf(o->file, plen + 32, "%s.tmp", path);
    o->f = fopen(o->file, "wb");
    o->failed = o->f == NULL;
#endif
    if (!o->failed) return RLHF_OK;
    snprintf(o->why, sizeof o->why, "cannot create %s", o->file);
    rlhf__free(o->file);
    o->file = NULL;
    return RLHF_ERR_IO;
}
static void rlhf__out_write(rlhf__out *o, const void *p, size_t n) {
    const unsigned char *c = (const unsigned char *)p;
    if (o->failed) return;
#ifdef RLHF__POSIX_IO
    while (n > 0) {
        ssize_t w = write(o->fd, c, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { o->failed = 1; return; }
        c += w;
        n -= (size_t)w;
    }
#else
    if (fwrite(c, 1, n, o->f) != n) o->failed = 1;
#endif
}
static rlhf_result rlhf__out_commit(rlhf__out *o) {
    rlhf_result r = RLHF_OK;
#ifdef RLHF__POSIX_IO
    if (!o->failed && fsync(o->fd) != 0) o->failed = 1; /* the data is on disk before the rename */
    if (close(o->fd) != 0) o->failed = 1;
#else
    if (fflush(o->f) != 0) o->failed = 1;
#if defined(_WIN32)
    if (!o->failed && _commit(_fileno(o->f)) != 0) o->failed = 1; /* the data is on disk before the rename */
#endif
    if (fclose(o->f) != 0) o->failed = 1;
#endif
    if (o->failed) {
        remove(o->file);
        if (o->in_place) snprintf(o->why, sizeof o->why, "writing %s failed (disk full?)", o->file);
        else snprintf(o->why, sizeof o->why, "writing %s failed (disk full?); %s is unchanged", o->file, o->path);
        r = RLHF_ERR_IO;
    } else if (!o->in_place) {
        if (rlhf__replace(o->file, o->path) != 0) {
            remove(o->file);
            snprintf(o->why, sizeof o->why, "cannot rename %s to %s", o->file, o->path);
            r = RLHF_ERR_IO;
        } else
            rlhf__fsync_dir(o->path);
    }
    rlhf__free(o->file);
    o->file = NULL;
    return r;
}

// ----------------------------------------------------------------------------
// >>tokenizer  byte-level BPE: GPT-2's pre-tokenizer by hand (Unicode tables
//              generated from Python's regex module), merge-rank encoding,
//              training with incremental pair counts, special tokens, chat
// ----------------------------------------------------------------------------

/* BEGIN GENERATED UNICODE TABLES: tools/gen_unicode_tables.py, Python regex 2.5.123, Unicode 15.0. Do not edit. */
static const uint32_t rlhf__uni_letter[][2] = { /* \p{L}, inclusive ranges */
    {0x41, 0x5A}, {0x61, 0x7A}, {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x2C1},
    {0x2C6, 0x2D1}, {0x2E0, 0x2E4}, {0x2EC, 0x2EC}, {0x2EE, 0x2EE}, {0x370, 0x374}, {0x376, 0x377}, {0x37A, 0x37D},
    {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481},
    {0x48A, 0x52F}, {0x531, 0x556}, {0x559, 0x559}, {0x560, 0x588}, {0x5D0, 0x5EA}, {0x5EF, 0x5F2}, {0x620, 0x64A},
    {0x66E, 0x66F}, {0x671, 0x6D3}, {0x6D5, 0x6D5}, {0x6E5, 0x6E6}, {0x6EE, 0x6EF}, {0x6FA, 0x6FC}, {0x6FF, 0x6FF},
    {0x710, 0x710}, {0x712, 0x72F}, {0x74D, 0x7A5}, {0x7B1, 0x7B1}, {0x7CA, 0x7EA}, {0x7F4, 0x7F5}, {0x7FA, 0x7FA},
    {0x800, 0x815}, {0x81A, 0x81A}, {0x824, 0x824}, {0x828, 0x828}, {0x840, 0x858}, {0x860, 0x86A}, {0x870, 0x887},
    {0x889, 0x88E}, {0x8A0, 0x8C9}, {0x904, 0x939}, {0x93D, 0x93D}, {0x950, 0x950}, {0x958, 0x961}, {0x971, 0x980},
    {0x985, 0x98C}, {0x98F, 0x990}, {0x993, 0x9A8}, {0x9AA, 0x9B0}, {0x9B2, 0x9B2}, {0x9B6, 0x9B9}, {0x9BD, 0x9BD},
    {0x9CE, 0x9CE}, {0x9DC, 0x9DD}, {0x9DF, 0x9E1}, {0x9F0, 0x9F1}, {0x9FC, 0x9FC}, {0xA05, 0xA0A}, {0xA0F, 0xA10},
    {0xA13, 0xA28}, {0xA2A, 0xA30}, {0xA32, 0xA33}, {0xA35, 0xA36}, {0xA38, 0xA39}, {0xA59, 0xA5C}, {0xA5E, 0xA5E},
    {0xA72, 0xA74}, {0xA85, 0xA8D}, {0xA8F, 0xA91}, {0xA93, 0xAA8}, {0xAAA, 0xAB0}, {0xAB2, 0xAB3}, {0xAB5, 0xAB9},
    {0xABD, 0xABD}, {0xAD0, 0xAD0}, {0xAE0, 0xAE1}, {0xAF9, 0xAF9}, {0xB05, 0xB0C}, {0xB0F, 0xB10}, {0xB13, 0xB28},
    {0xB2A, 0xB30}, {0xB32, 0xB33}, {0xB35, 0xB39}, {0xB3D, 0xB3D}, {0xB5C, 0xB5D}, {0xB5F, 0xB61}, {0xB71, 0xB71},
    {0xB83, 0xB83}, {0xB85, 0xB8A}, {0xB8E, 0xB90}, {0xB92, 0xB95}, {0xB99, 0xB9A}, {0xB9C, 0xB9C}, {0xB9E, 0xB9F},
    {0xBA3, 0xBA4}, {0xBA8, 0xBAA}, {0xBAE, 0xBB9}, {0xBD0, 0xBD0}, {0xC05, 0xC0C}, {0xC0E, 0xC10}, {0xC12, 0xC28},
    {0xC2A, 0xC39}, {0xC3D, 0xC3D}, {0xC58, 0xC5A}, {0xC5D, 0xC5D}, {0xC60, 0xC61}, {0xC80, 0xC80}, {0xC85, 0xC8C},
    {0xC8E, 0xC90}, {0xC92, 0xCA8}, {0xCAA, 0xCB3}, {0xCB5, 0xCB9}, {0xCBD, 0xCBD}, {0xCDD, 0xCDE}, {0xCE0, 0xCE1},
    {0xCF1, 0xCF2}, {0xD04, 0xD0C}, {0xD0E, 0xD10}, {0xD12, 0xD3A}, {0xD3D, 0xD3D}, {0xD4E, 0xD4E}, {0xD54, 0xD56},
    {0xD5F, 0xD61}, {0xD7A, 0xD7F}, {0xD85, 0xD96}, {0xD9A, 0xDB1}, {0xDB3, 0xDBB}, {0xDBD, 0xDBD}, {0xDC0, 0xDC6},
    {0xE01, 0xE30}, {0xE32, 0xE33}, {0xE40, 0xE46}, {0xE81, 0xE82}, {0xE84, 0xE84}, {0xE86, 0xE8A}, {0xE8C, 0xEA3},
    {0xEA5, 0xEA5}, {0xEA7, 0xEB0}, {0xEB2, 0xEB3}, {0xEBD, 0xEBD}, {0xEC0, 0xEC4}, {0xEC6, 0xEC6}, {0xEDC, 0xEDF},
    {0xF00, 0xF00}, {0xF40, 0xF47}, {0xF49, 0xF6C}, {0xF88, 0xF8C}, {0x1000, 0x102A}, {0x103F, 0x103F},
    {0x1050, 0x1055}, {0x105A, 0x105D}, {0x1061, 0x1061}, {0x1065, 0x1066}, {0x106E, 0x1070}, {0x1075, 0x1081},
    {0x108E, 0x108E}, {0x10A0, 0x10C5}, {0x10C7, 0x10C7}, {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FC, 0x1248},
    {0x124A, 0x124D}, {0x1250, 0x1256}, {0x1258, 0x1258}, {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D},
    {0x1290, 0x12B0}, {0x12B2, 0x12B5}, {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5}, {0x12C8, 0x12D6},
    {0x12D8, 0x1310}, {0x1312, 0x1315}, {0x1318, 0x135A}, {0x1380, 0x138F}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD},
    {0x1401, 0x166C}, {0x166F, 0x167F}, {0x1681, 0x169A}, {0x16A0, 0x16EA}, {0x16F1, 0x16F8}, {0x1700, 0x1711},
    {0x171F, 0x1731}, {0x1740, 0x1751}, {0x1760, 0x176C}, {0x176E, 0x1770}, {0x1780, 0x17B3}, {0x17D7, 0x17D7},
    {0x17DC, 0x17DC}, {0x1820, 0x1878}, {0x1880, 0x1884}, {0x1887, 0x18A8}, {0x18AA, 0x18AA}, {0x18B0, 0x18F5},
    {0x1900, 0x191E}, {0x1950, 0x196D}, {0x1970, 0x1974}, {0x1980, 0x19AB}, {0x19B0, 0x19C9}, {0x1A00, 0x1A16},
    {0x1A20, 0x1A54}, {0x1AA7, 0x1AA7}, {0x1B05, 0x1B33}, {0x1B45, 0x1B4C}, {0x1B83, 0x1BA0}, {0x1BAE, 0x1BAF},
    {0x1BBA, 0x1BE5}, {0x1C00, 0x1C23}, {0x1C4D, 0x1C4F}, {0x1C5A, 0x1C7D}, {0x1C80, 0x1C88}, {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF}, {0x1CE9, 0x1CEC}, {0x1CEE, 0x1CF3}, {0x1CF5, 0x1CF6}, {0x1CFA, 0x1CFA}, {0x1D00, 0x1DBF},
    {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4},
    {0x1FF6, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2102, 0x2102}, {0x2107, 0x2107},
    {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184},
    {0x2C00, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D},
    {0x2D30, 0x2D67}, {0x2D6F, 0x2D6F}, {0x2D80, 0x2D96}, {0x2DA0, 0x2DA6}, {0x2DA8, 0x2DAE}, {0x2DB0, 0x2DB6},
    {0x2DB8, 0x2DBE}, {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE}, {0x2DD0, 0x2DD6}, {0x2DD8, 0x2DDE}, {0x2E2F, 0x2E2F},
    {0x3005, 0x3006}, {0x3031, 0x3035}, {0x303B, 0x303C}, {0x3041, 0x3096}, {0x309D, 0x309F}, {0x30A1, 0x30FA},
    {0x30FC, 0x30FF}, {0x3105, 0x312F}, {0x3131, 0x318E}, {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF},
    {0x4E00, 0xA48C}, {0xA4D0, 0xA4FD}, {0xA500, 0xA60C}, {0xA610, 0xA61F}, {0xA62A, 0xA62B}, {0xA640, 0xA66E},
    {0xA67F, 0xA69D}, {0xA6A0, 0xA6E5}, {0xA717, 0xA71F}, {0xA722, 0xA788}, {0xA78B, 0xA7CA}, {0xA7D0, 0xA7D1},
    {0xA7D3, 0xA7D3}, {0xA7D5, 0xA7D9}, {0xA7F2, 0xA801}, {0xA803, 0xA805}, {0xA807, 0xA80A}, {0xA80C, 0xA822},
    {0xA840, 0xA873}, {0xA882, 0xA8B3}, {0xA8F2, 0xA8F7}, {0xA8FB, 0xA8FB}, {0xA8FD, 0xA8FE}, {0xA90A, 0xA925},
    {0xA930, 0xA946}, {0xA960, 0xA97C}, {0xA984, 0xA9B2}, {0xA9CF, 0xA9CF}, {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9EF},
    {0xA9FA, 0xA9FE}, {0xAA00, 0xAA28}, {0xAA40, 0xAA42}, {0xAA44, 0xAA4B}, {0xAA60, 0xAA76}, {0xAA7A, 0xAA7A},
    {0xAA7E, 0xAAAF}, {0xAAB1, 0xAAB1}, {0xAAB5, 0xAAB6}, {0xAAB9, 0xAABD}, {0xAAC0, 0xAAC0}, {0xAAC2, 0xAAC2},
    {0xAADB, 0xAADD}, {0xAAE0, 0xAAEA}, {0xAAF2, 0xAAF4}, {0xAB01, 0xAB06}, {0xAB09, 0xAB0E}, {0xAB11, 0xAB16},
    {0xAB20, 0xAB26}, {0xAB28, 0xAB2E}, {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABE2}, {0xAC00, 0xD7A3},
    {0xD7B0, 0xD7C6}, {0xD7CB, 0xD7FB}, {0xF900, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17},
    {0xFB1D, 0xFB1D}, {0xFB1F, 0xFB28}, {0xFB2A, 0xFB36}, {0xFB38, 0xFB3C}, {0xFB3E, 0xFB3E}, {0xFB40, 0xFB41},
    {0xFB43, 0xFB44}, {0xFB46, 0xFBB1}, {0xFBD3, 0xFD3D}, {0xFD50, 0xFD8F}, {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB},
    {0xFE70, 0xFE74}, {0xFE76, 0xFEFC}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}, {0xFFC2, 0xFFC7},
    {0xFFCA, 0xFFCF}, {0xFFD2, 0xFFD7}, {0xFFDA, 0xFFDC}, {0x10000, 0x1000B}, {0x1000D, 0x10026}, {0x10028, 0x1003A},
    {0x1003C, 0x1003D}, {0x1003F, 0x1004D}, {0x10050, 0x1005D}, {0x10080, 0x100FA}, {0x10280, 0x1029C},
    {0x102A0, 0x102D0}, {0x10300, 0x1031F}, {0x1032D, 0x10340}, {0x10342, 0x10349}, {0x10350, 0x10375},
    {0x10380, 0x1039D}, {0x103A0, 0x103C3}, {0x103C8, 0x103CF}, {0x10400, 0x1049D}, {0x104B0, 0x104D3},
    {0x104D8, 0x104FB}, {0x10500, 0x10527}, {0x10530, 0x10563}, {0x10570, 0x1057A}, {0x1057C, 0x1058A},
    {0x1058C, 0x10592}, {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1}, {0x105B3, 0x105B9},
    {0x105BB, 0x105BC}, {0x10600, 0x10736}, {0x10740, 0x10755}, {0x10760, 0x10767}, {0x10780, 0x10785},
    {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x10800, 0x10805}, {0x10808, 0x10808}, {0x1080A, 0x10835},
    {0x10837, 0x10838}, {0x1083C, 0x1083C}, {0x1083F, 0x10855}, {0x10860, 0x10876}, {0x10880, 0x1089E},
    {0x108E0, 0x108F2}, {0x108F4, 0x108F5}, {0x10900, 0x10915}, {0x10920, 0x10939}, {0x10980, 0x109B7},
    {0x109BE, 0x109BF}, {0x10A00, 0x10A00}, {0x10A10, 0x10A13}, {0x10A15, 0x10A17}, {0x10A19, 0x10A35},
    {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7}, {0x10AC9, 0x10AE4}, {0x10B00, 0x10B35},
    {0x10B40, 0x10B55}, {0x10B60, 0x10B72}, {0x10B80, 0x10B91}, {0x10C00, 0x10C48}, {0x10C80, 0x10CB2},
    {0x10CC0, 0x10CF2}, {0x10D00, 0x10D23}, {0x10E80, 0x10EA9}, {0x10EB0, 0x10EB1}, {0x10F00, 0x10F1C},
    {0x10F27, 0x10F27}, {0x10F30, 0x10F45}, {0x10F70, 0x10F81}, {0x10FB0, 0x10FC4}, {0x10FE0, 0x10FF6},
    {0x11003, 0x11037}, {0x11071, 0x11072}, {0x11075, 0x11075}, {0x11083, 0x110AF}, {0x110D0, 0x110E8},
    {0x11103, 0x11126}, {0x11144, 0x11144}, {0x11147, 0x11147}, {0x11150, 0x11172}, {0x11176, 0x11176},
    {0x11183, 0x111B2}, {0x111C1, 0x111C4}, {0x111DA, 0x111DA}, {0x111DC, 0x111DC}, {0x11200, 0x11211},
    {0x11213, 0x1122B}, {0x1123F, 0x11240}, {0x11280, 0x11286}, {0x11288, 0x11288}, {0x1128A, 0x1128D},
    {0x1128F, 0x1129D}, {0x1129F, 0x112A8}, {0x112B0, 0x112DE}, {0x11305, 0x1130C}, {0x1130F, 0x11310},
    {0x11313, 0x11328}, {0x1132A, 0x11330}, {0x11332, 0x11333}, {0x11335, 0x11339}, {0x1133D, 0x1133D},
    {0x11350, 0x11350}, {0x1135D, 0x11361}, {0x11400, 0x11434}, {0x11447, 0x1144A}, {0x1145F, 0x11461},
    {0x11480, 0x114AF}, {0x114C4, 0x114C5}, {0x114C7, 0x114C7}, {0x11580, 0x115AE}, {0x115D8, 0x115DB},
    {0x11600, 0x1162F}, {0x11644, 0x11644}, {0x11680, 0x116AA}, {0x116B8, 0x116B8}, {0x11700, 0x1171A},
    {0x11740, 0x11746}, {0x11800, 0x1182B}, {0x118A0, 0x118DF}, {0x118FF, 0x11906}, {0x11909, 0x11909},
    {0x1190C, 0x11913}, {0x11915, 0x11916}, {0x11918, 0x1192F}, {0x1193F, 0x1193F}, {0x11941, 0x11941},
    {0x119A0, 0x119A7}, {0x119AA, 0x119D0}, {0x119E1, 0x119E1}, {0x119E3, 0x119E3}, {0x11A00, 0x11A00},
    {0x11A0B, 0x11A32}, {0x11A3A, 0x11A3A}, {0x11A50, 0x11A50}, {0x11A5C, 0x11A89}, {0x11A9D, 0x11A9D},
    {0x11AB0, 0x11AF8}, {0x11C00, 0x11C08}, {0x11C0A, 0x11C2E}, {0x11C40, 0x11C40}, {0x11C72, 0x11C8F},
    {0x11D00, 0x11D06}, {0x11D08, 0x11D09}, {0x11D0B, 0x11D30}, {0x11D46, 0x11D46}, {0x11D60, 0x11D65},
    {0x11D67, 0x11D68}, {0x11D6A, 0x11D89}, {0x11D98, 0x11D98}, {0x11EE0, 0x11EF2}, {0x11F02, 0x11F02},
    {0x11F04, 0x11F10}, {0x11F12, 0x11F33}, {0x11FB0, 0x11FB0}, {0x12000, 0x12399}, {0x12480, 0x12543},
    {0x12F90, 0x12FF0}, {0x13000, 0x1342F}, {0x13441, 0x13446}, {0x14400, 0x14646}, {0x16800, 0x16A38},
    {0x16A40, 0x16A5E}, {0x16A70, 0x16ABE}, {0x16AD0, 0x16AED}, {0x16B00, 0x16B2F}, {0x16B40, 0x16B43},
    {0x16B63, 0x16B77}, {0x16B7D, 0x16B8F}, {0x16E40, 0x16E7F}, {0x16F00, 0x16F4A}, {0x16F50, 0x16F50},
    {0x16F93, 0x16F9F}, {0x16FE0, 0x16FE1}, {0x16FE3, 0x16FE3}, {0x17000, 0x187F7}, {0x18800, 0x18CD5},
    {0x18D00, 0x18D08}, {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122},
    {0x1B132, 0x1B132}, {0x1B150, 0x1B152}, {0x1B155, 0x1B155}, {0x1B164, 0x1B167}, {0x1B170, 0x1B2FB},
    {0x1BC00, 0x1BC6A}, {0x1BC70, 0x1BC7C}, {0x1BC80, 0x1BC88}, {0x1BC90, 0x1BC99}, {0x1D400, 0x1D454},
    {0x1D456, 0x1D49C}, {0x1D49E, 0x1D49F}, {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC},
    {0x1D4AE, 0x1D4B9}, {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A},
    {0x1D50D, 0x1D514}, {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E}, {0x1D540, 0x1D544},
    {0x1D546, 0x1D546}, {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5}, {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA},
    {0x1D6DC, 0x1D6FA}, {0x1D6FC, 0x1D714}, {0x1D716, 0x1D734}, {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E},
    {0x1D770, 0x1D788}, {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF1E},
    {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E100, 0x1E12C}, {0x1E137, 0x1E13D}, {0x1E14E, 0x1E14E},
    {0x1E290, 0x1E2AD}, {0x1E2C0, 0x1E2EB}, {0x1E4D0, 0x1E4EB}, {0x1E7E0, 0x1E7E6}, {0x1E7E8, 0x1E7EB},
    {0x1E7ED, 0x1E7EE}, {0x1E7F0, 0x1E7FE}, {0x1E800, 0x1E8C4}, {0x1E900, 0x1E943}, {0x1E94B, 0x1E94B},
    {0x1EE00, 0x1EE03}, {0x1EE05, 0x1EE1F}, {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24}, {0x1EE27, 0x1EE27},
    {0x1EE29, 0x1EE32}, {0x1EE34, 0x1EE37}, {0x1EE39, 0x1EE39}, {0x1EE3B, 0x1EE3B}, {0x1EE42, 0x1EE42},
    {0x1EE47, 0x1EE47}, {0x1EE49, 0x1EE49}, {0x1EE4B, 0x1EE4B}, {0x1EE4D, 0x1EE4F}, {0x1EE51, 0x1EE52},
    {0x1EE54, 0x1EE54}, {0x1EE57, 0x1EE57}, {0x1EE59, 0x1EE59}, {0x1EE5B, 0x1EE5B}, {0x1EE5D, 0x1EE5D},
    {0x1EE5F, 0x1EE5F}, {0x1EE61, 0x1EE62}, {0x1EE64, 0x1EE64}, {0x1EE67, 0x1EE6A}, {0x1EE6C, 0x1EE72},
    {0x1EE74, 0x1EE77}, {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E}, {0x1EE80, 0x1EE89}, {0x1EE8B, 0x1EE9B},
    {0x1EEA1, 0x1EEA3}, {0x1EEA5, 0x1EEA9}, {0x1EEAB, 0x1EEBB}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B739},
    {0x2B740, 0x2B81D}, {0x2B820, 0x2CEA1}, {0x2CEB0, 0x2EBE0}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A},
    {0x31350, 0x323AF},
};
static const uint32_t rlhf__uni_number[][2] = { /* \p{N} */
    {0x30, 0x39}, {0xB2, 0xB3}, {0xB9, 0xB9}, {0xBC, 0xBE}, {0x660, 0x669}, {0x6F0, 0x6F9}, {0x7C0, 0x7C9},
    {0x966, 0x96F}, {0x9E6, 0x9EF}, {0x9F4, 0x9F9}, {0xA66, 0xA6F}, {0xAE6, 0xAEF}, {0xB66, 0xB6F}, {0xB72, 0xB77},
    {0xBE6, 0xBF2}, {0xC66, 0xC6F}, {0xC78, 0xC7E}, {0xCE6, 0xCEF}, {0xD58, 0xD5E}, {0xD66, 0xD78}, {0xDE6, 0xDEF},
    {0xE50, 0xE59}, {0xED0, 0xED9}, {0xF20, 0xF33}, {0x1040, 0x1049}, {0x1090, 0x1099}, {0x1369, 0x137C},
    {0x16EE, 0x16F0}, {0x17E0, 0x17E9}, {0x17F0, 0x17F9}, {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19DA},
    {0x1A80, 0x1A89}, {0x1A90, 0x1A99}, {0x1B50, 0x1B59}, {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59},
    {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B},
    {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x2CFD, 0x2CFD}, {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A},
    {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F}, {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF},
    {0xA620, 0xA629}, {0xA6E6, 0xA6EF}, {0xA830, 0xA835}, {0xA8D0, 0xA8D9}, {0xA900, 0xA909}, {0xA9D0, 0xA9D9},
    {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59}, {0xABF0, 0xABF9}, {0xFF10, 0xFF19}, {0x10107, 0x10133}, {0x10140, 0x10178},
    {0x1018A, 0x1018B}, {0x102E1, 0x102FB}, {0x10320, 0x10323}, {0x10341, 0x10341}, {0x1034A, 0x1034A},
    {0x103D1, 0x103D5}, {0x104A0, 0x104A9}, {0x10858, 0x1085F}, {0x10879, 0x1087F}, {0x108A7, 0x108AF},
    {0x108FB, 0x108FF}, {0x10916, 0x1091B}, {0x109BC, 0x109BD}, {0x109C0, 0x109CF}, {0x109D2, 0x109FF},
    {0x10A40, 0x10A48}, {0x10A7D, 0x10A7E}, {0x10A9D, 0x10A9F}, {0x10AEB, 0x10AEF}, {0x10B58, 0x10B5F},
    {0x10B78, 0x10B7F}, {0x10BA9, 0x10BAF}, {0x10CFA, 0x10CFF}, {0x10D30, 0x10D39}, {0x10E60, 0x10E7E},
    {0x10F1D, 0x10F26}, {0x10F51, 0x10F54}, {0x10FC5, 0x10FCB}, {0x11052, 0x1106F}, {0x110F0, 0x110F9},
    {0x11136, 0x1113F}, {0x111D0, 0x111D9}, {0x111E1, 0x111F4}, {0x112F0, 0x112F9}, {0x11450, 0x11459},
    {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116C9}, {0x11730, 0x1173B}, {0x118E0, 0x118F2},
    {0x11950, 0x11959}, {0x11C50, 0x11C6C}, {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11F50, 0x11F59},
    {0x11FC0, 0x11FD4}, {0x12400, 0x1246E}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59},
    {0x16B5B, 0x16B61}, {0x16E80, 0x16E96}, {0x1D2C0, 0x1D2D3}, {0x1D2E0, 0x1D2F3}, {0x1D360, 0x1D378},
    {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E4F0, 0x1E4F9}, {0x1E8C7, 0x1E8CF},
    {0x1E950, 0x1E959}, {0x1EC71, 0x1ECAB}, {0x1ECAD, 0x1ECAF}, {0x1ECB1, 0x1ECB4}, {0x1ED01, 0x1ED2D},
    {0x1ED2F, 0x1ED3D}, {0x1F100, 0x1F10C}, {0x1FBF0, 0x1FBF9},
};
static const uint32_t rlhf__uni_space[][2] = { /* \s as the regex module sees it (Unicode White_Space) */
    {0x9, 0xD}, {0x20, 0x20}, {0x85, 0x85}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
    {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};
/* END GENERATED UNICODE TABLES */

static int rlhf__in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) { /* binary search for the range that could hold cp */
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}
/* character classes of GPT-2's pattern */
enum { RLHF__CL_LETTER, RLHF__CL_NUMBER, RLHF__CL_SPACE, RLHF__CL_OTHER };
static int rlhf__cp_class(uint32_t cp) {
    if (cp < 128) { /* ASCII fast path */
        if ((cp | 32) >= 'a' && (cp | 32) <= 'z') return RLHF__CL_LETTER;
        if (cp >= '0' && cp <= '9') return RLHF__CL_NUMBER;
        /* not U+001C..1F: regex's \s differs from isspace() there */
        if (cp == ' ' || (cp >= 9 && cp <= 13)) return RLHF__CL_SPACE;
        return RLHF__CL_OTHER;
    }
    if (rlhf__in_ranges(rlhf__uni_letter, sizeof rlhf__uni_letter / sizeof rlhf__uni_letter[0], cp))
        return RLHF__CL_LETTER;
    if (rlhf__in_ranges(rlhf__uni_number, sizeof rlhf__uni_number / sizeof rlhf__uni_number[0], cp))
        return RLHF__CL_NUMBER;
    if (rlhf__in_ranges(rlhf__uni_space, sizeof rlhf__uni_space / sizeof rlhf__uni_space[0], cp)) return RLHF__CL_SPACE;
    return RLHF__CL_OTHER;
}
/* the code point at s[i] and its byte length; an invalid byte is one
   character of class OTHER (so any byte string can be encoded) */
static uint32_t rlhf__cp_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
    size_t k = rlhf__utf8_len(s + i, n - i);
    uint32_t cp;
    if (k == 0) { *len = 1; return 0xFFFFFFFFu; }
    *len = k;
    if (k == 1) return s[i];
    cp = s[i] & (0x7F >> k);
    for (; k > 1; k--, i++) cp = cp << 6 | (s[i + 1] & 63);
    return cp;
}
static int rlhf__class_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
    uint32_t cp = rlhf__cp_at(s, n, i, len);
    return cp == 0xFFFFFFFFu ? RLHF__CL_OTHER : rlhf__cp_class(cp);
}
/* end of the run of class cl starting at i */
static size_t rlhf__run(const unsigned char *s, size_t n, size_t i, int cl) {
    while (i < n) {
        size_t len;
        if (rlhf__class_at(s, n, i, &len) != cl) break;
        i += len;
    }
    return i;
}
/* GPT-2's pattern at position i (< n): the end of the piece that starts
   there. The alternatives in the pattern's order, leftmost first:
     's 't 're 've 'm 'll 'd  |  ?\p{L}+  |  ?\p{N}+  |  ?[^\s\p{L}\p{N}]+  |  \s+(?!\S)  |  \s+ */
static size_t rlhf__pretoken_end(const unsigned char *s, size_t n, size_t i) {
    size_t len, j, last;
    int cl;
    if (s[i] == '\'' && i + 1 < n) {
        unsigned char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    j = i;
    if (s[i] == ' ' && i + 1 < n) j = i + 1; /* the optional leading space */
    cl = rlhf__class_at(s, n, j, &len);
    if (cl != RLHF__CL_SPACE) return rlhf__run(s, n, j, cl);
    /* whitespace here (a " " before whitespace belongs to the run) */
    /* \s+(?!\S): the whole run if it reaches the end; otherwise all but its
       last character (which then leads the next piece); a single whitespace
       character before a non-space falls to \s+ */
    for (j = i, last = i; j < n;) {
        if (rlhf__class_at(s, n, j, &len) != RLHF__CL_SPACE) break;
        last = j;
        j += len;
    }
    if (j == n || last == i) return j;
    return last;
}

/* ---- the tokenizer -------------------------------------------------------------- */
static const char *const RLHF__SPECIAL_STR[RLHF_NUM_SPECIAL_TOKENS] = {
    "<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"};

typedef struct rlhf__merge { int a, b, c; } rlhf__merge; /* a + b -> c, at rank = index */
struct rlhf_tokenizer {
    int n_vocab;
    uint32_t *tok_off;     /* token i is pool[tok_off[i] .. tok_off[i+1]) */
    unsigned char *pool;
    int byte_id[256];      /* the token of each single byte */
    rlhf__merge *merges;
    int n_merges;
    uint64_t *pair_key;    /* open addressing: (a << 32 | b) + 1, 0 = empty */
    int *pair_rank;
    size_t pair_cap;
    int special[RLHF_NUM_SPECIAL_TOKENS];
    rlhf_chat_template chat_template;
};

RLHFDEF void rlhf_tokenizer_free(rlhf_tokenizer *t) {
    if (!t) return;
    rlhf__free(t->tok_off);
    rlhf__free(t->pool);
    rlhf__free(t->merges);
    rlhf__free(t->pair_key);
    rlhf__free(t->pair_rank);
    rlhf__free(t);
}
RLHFDEF int rlhf_tokenizer_vocab_size(const rlhf_tokenizer *t) { return t ? t->n_vocab : 0; }
RLHFDEF int rlhf_tokenizer_special(const rlhf_tokenizer *t, rlhf_special_token w) {
    return t && (int)w >= 0 && w < RLHF_NUM_SPECIAL_TOKENS ? t->special[w] : -1;
}

RLHFDEF rlhf_result rlhf_tokenizer_set_template(rlhf_tokenizer *t, rlhf_chat_template which) {
    if (!t || (which != RLHF_TEMPLATE_CHAT && which != RLHF_TEMPLATE_HH)) return RLHF_ERR_INVALID_ARGUMENT;
    t->chat_template = which;
    return RLHF_OK;
}
RLHFDEF rlhf_chat_template rlhf_tokenizer_template(const rlhf_tokenizer *t) {
    return t ? t->chat_template : RLHF_TEMPLATE_CHAT;
}
RLHFDEF int rlhf_tokenizer_reply_end(const rlhf_tokenizer *t) {
    if (!t) return -1;
    return t->special[t->chat_template == RLHF_TEMPLATE_HH ? RLHF_TOKEN_EOS : RLHF_TOKEN_END];
}

static uint64_t rlhf__hash64(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27; x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
/* the rank of merging (a, b), or -1 */
static int rlhf__pair_rank(const rlhf_tokenizer *t, int a, int b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    size_t i = (size_t)rlhf__hash64(key) & (t->pair_cap - 1);
    while (t->pair_key[i]) {
        if (t->pair_key[i] == key) return t->pair_rank[i];
        i = (i + 1) & (t->pair_cap - 1);
    }
    return -1;
}
/* index the merges by pair; 0 if a pair repeats */
static int rlhf__index_merges(rlhf_tokenizer *t) {
    size_t cap = 16, i;
    int r;
    while (cap < (size_t)t->n_merges * 2 + 2) cap *= 2;
    t->pair_cap = cap;
    t->pair_key = (uint64_t *)rlhf__alloc(cap * sizeof(uint64_t));
    t->pair_rank = (int *)rlhf__alloc(cap * sizeof(int));
    if (!t->pair_key || !t->pair_rank) return -1;
    memset(t->pair_key, 0, cap * sizeof(uint64_t));
    for (r = 0; r < t->n_merges; r++) {
        uint64_t key = ((uint64_t)(uint32_t)t->merges[r].a << 32 | (uint32_t)t->merges[r].b) + 1;
        for (i = (size_t)rlhf__hash64(key) & (cap - 1); t->pair_key[i]; i = (i + 1) & (cap - 1))
            if (t->pair_key[i] == key) return 0;
        t->pair_key[i] = key;
        t->pair_rank[i] = r;
    }
    return 1;
}

/* BPE of one piece (OpenAI's bpe()): start from its bytes; repeatedly take
   the adjacent pair of lowest merge rank and merge all its occurrences, left
   to right; stop when no pair has a rank. sym (n) is scratch and result. */
static size_t rlhf__bpe(const rlhf_tokenizer *t, const unsigned char *p, size_t n, int *sym) {
    size_t k, m = n;
    for (k = 0; k < n; k++) sym[k] = t->byte_id[p[k]];
    while (m > 1) {
        int best = -1, r;
        size_t w;
        for (k = 0; k + 1 < m; k++)
            if ((r = rlhf__pair_rank(t, sym[k], sym[k + 1])) >= 0 && (best < 0 || r < best)) best = r;
        if (best < 0) break;
        for (k = 0, w = 0; k < m; w++) {
            if (k + 1 < m && sym[k] == t->merges[best].a && sym[k + 1] == t->merges[best].b) {
                sym[w] = t->merges[best].c;
                k += 2;
            } else
                sym[w] = sym[k++];
        }
        m = w;
    }
    return m;
}

/* The same result as rlhf__bpe in O(n log n), for long pieces (rlhf__bpe
   rescans the piece once per merge). Symbols form a linked list; a min-heap
   holds candidate merges keyed (rank << 32 | position), so equal ranks pop
   left to right. As in OpenAI's loop, every occurrence of one rank is merged
   before the pairs those merges create compete: new pairs wait in a pending
   list until the rank changes. Entries made stale by a merge are skipped.
   sym, next, prev (n) and heap, pending (3n) are scratch; returns the count. */
static void rlhf__heap64_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = v;
}
static uint64_t rlhf__heap64_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}
static size_t rlhf__bpe_heap(const rlhf_tokenizer *t, const unsigned char *p, size_t n, int *sym, int *next, int *prev,
                             uint64_t *heap, uint64_t *pending) {
    size_t nh = 0, np = 0, i, k, out;
    int cur = -1, r;
    /* the bytes as a linked list, and their pairs that have a rank on the heap */
    for (i = 0; i < n; i++) {
        sym[i] = t->byte_id[p[i]];
        next[i] = (int)i + 1;
        prev[i] = (int)i - 1;
    }
    for (i = 0; i + 1 < n; i++)
        if ((r = rlhf__pair_rank(t, sym[i], sym[i + 1])) >= 0) rlhf__heap64_push(heap, &nh, (uint64_t)r << 32 | i);

    /* merge in rank order, left to right within a rank */
    while (nh > 0 || np > 0) {
        uint64_t e;
        int j, h;
        if (nh == 0 || (cur >= 0 && (int)(heap[0] >> 32) != cur)) { /* a rank is done: its new pairs join */
            for (k = 0; k < np; k++) rlhf__heap64_push(heap, &nh, pending[k]);
            np = 0;
            cur = -1;
            continue;
        }
        e = rlhf__heap64_pop(heap, &nh);
        r = (int)(e >> 32);
        i = (size_t)(e & 0xFFFFFFFFu);
        j = next[i];
        if (sym[i] < 0 || j >= (int)n || sym[i] != t->merges[r].a || sym[j] != t->merges[r].b) continue; /* stale */
        cur = r;
        sym[i] = t->merges[r].c; /* i absorbs j */
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] < (int)n) prev[next[j]] = (int)i;
        h = prev[i];
        if (h >= 0 && (k = (size_t)rlhf__pair_rank(t, sym[h], sym[i])) != (size_t)-1)
            pending[np++] = (uint64_t)k << 32 | (uint32_t)h;
        if (next[i] < (int)n && (k = (size_t)rlhf__pair_rank(t, sym[i], sym[next[i]])) != (size_t)-1)
            pending[np++] = (uint64_t)k << 32 | i;
    }

    /* the list's symbols, in order */
    for (i = 0, out = 0; i < n; i = (size_t)next[i]) sym[out++] = sym[i];
    return out;
}
#define RLHF__BPE_LONG 64 /* pieces longer than this take the heap path */

/* encode ordinary text into ids (up to cap), counting into *count */
static rlhf_result rlhf__encode_plain(const rlhf_tokenizer *t, const unsigned char *s, size_t n, int *ids, size_t cap,
                                      size_t *count) {
    int stack_sym[RLHF__BPE_LONG], *heap_mem = NULL;
    size_t heap_cap = 0, i = 0;
    while (i < n) {
        size_t end = rlhf__pretoken_end(s, n, i), len = end - i, m, k;
        const int *res = stack_sym;
        if (len <= RLHF__BPE_LONG) m = rlhf__bpe(t, s + i, len, stack_sym);
        else { /* a long piece: the heap path; scratch of 3 ints and 6 uint64 per byte */
            uint64_t *h;
            if (len > heap_cap) {
                rlhf__free(heap_mem);
                heap_mem = (int *)rlhf__alloc(len * (3 * sizeof(int) + 6 * sizeof(uint64_t)) + sizeof(uint64_t));
                if (!heap_mem) return RLHF_ERR_OUT_OF_MEMORY;
                heap_cap = len;
            }
            h = (uint64_t *)(void *)(heap_mem + 3 * len + (len & 1)); /* 8-byte aligned */
            m = rlhf__bpe_heap(t, s + i, len, heap_mem, heap_mem + len, heap_mem + 2 * len, h, h + 3 * len);
            res = heap_mem;
        }
        for (k = 0; k < m; k++, (*count)++)
            if (*count < cap) ids[*count] = res[k];
        i = end;
    }
    rlhf__free(heap_mem);
    return RLHF_OK;
}
RLHFDEF rlhf_result rlhf_tokenizer_encode(const rlhf_tokenizer *t, const char *text, size_t len, int *ids, size_t cap,
                                          size_t *n_ids) {
    size_t count = 0;
    rlhf_result r;
    if (n_ids) *n_ids = 0;
    if (!t || (!text && len) || (!ids && cap) || !n_ids) return RLHF_ERR_INVALID_ARGUMENT;
    if ((r = rlhf__encode_plain(t, (const unsigned char *)text, len, ids, cap, &count)) != RLHF_OK) return r;
    *n_ids = count;
    return count <= cap ? RLHF_OK : RLHF_ERR_TOO_LARGE;
}
RLHFDEF rlhf_result rlhf_tokenizer_encode_special(const rlhf_tokenizer *t, const char *text, size_t len, int *ids,
                                                  size_t cap, size_t *n_ids) {
    const unsigned char *s = (const unsigned char *)text;
    size_t count = 0, i = 0, start = 0;
    rlhf_result r;
    if (n_ids) *n_ids = 0;
    if (!t || (!text && len) || (!ids && cap) || !n_ids) return RLHF_ERR_INVALID_ARGUMENT;
    while (i < len) {
        int w = -1, k;
        if (s[i] == '<')
            for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS && w < 0; k++) {
                size_t sl = strlen(RLHF__SPECIAL_STR[k]);
                if (len - i >= sl && memcmp(s + i, RLHF__SPECIAL_STR[k], sl) == 0) w = k;
            }
        if (w < 0) { i++; continue; }
        /* the ordinary text before it, then the special id */
        if ((r = rlhf__encode_plain(t, s + start, i - start, ids, cap, &count)) != RLHF_OK) return r;
        if (count < cap) ids[count] = t->special[w];
        count++;
        i += strlen(RLHF__SPECIAL_STR[w]);
        start = i;
    }
    if ((r = rlhf__encode_plain(t, s + start, len - start, ids, cap, &count)) != RLHF_OK) return r;
    *n_ids = count;
    return count <= cap ? RLHF_OK : RLHF_ERR_TOO_LARGE;
}
RLHFDEF rlhf_result rlhf_tokenizer_decode(const rlhf_tokenizer *t, const int *ids, size_t n, char *out, size_t cap,
                                          size_t *n_bytes) {
    size_t i, w = 0;
    if (n_bytes) *n_bytes = 0;
    if (!t || (!ids && n) || (!out && cap) || !n_bytes) return RLHF_ERR_INVALID_ARGUMENT;
    for (i = 0; i < n; i++) {
        size_t len;
        const unsigned char *p;
        if (ids[i] < 0 || ids[i] >= t->n_vocab) return RLHF_ERR_BAD_TOKEN;
        p = t->pool + t->tok_off[ids[i]];
        len = t->tok_off[ids[i] + 1] - t->tok_off[ids[i]];
        if (w < cap) memcpy(out + w, p, len <= cap - w ? len : cap - w);
        w += len;
    }
    *n_bytes = w;
    return w <= cap ? RLHF_OK : RLHF_ERR_TOO_LARGE;
}

/* HH-RLHF's plain template (see RLHF_TEMPLATE_HH). One chunk of text (the text up to an <|endoftext|>, or
   the rest) encoded as a whole; a token is learned when its first byte lies in [lo, hi), the reply. */
static rlhf_result rlhf__hh_chunk(const rlhf_tokenizer *t, const unsigned char *text, size_t len, size_t lo,
                                  size_t hi, int *ids, unsigned char *mask, size_t cap, size_t *count) {
    size_t first = *count, k, pos = 0;
    rlhf_result r = rlhf__encode_plain(t, text, len, ids, cap, count);
    if (r == RLHF_OK && mask)
        for (k = first; k < *count && k < cap; k++) {
            mask[k] = (unsigned char)(pos >= lo && pos < hi);
            pos += t->tok_off[ids[k] + 1] - t->tok_off[ids[k]];
        }
    return r;
}
static rlhf_result rlhf__chat_hh(const rlhf_tokenizer *t, const rlhf_message *msg, int n, int gen, int *ids,
                                 unsigned char *mask, size_t cap, size_t *n_ids) {
    static const char *const head[3] = {"", "\n\nHuman: ", "\n\nAssistant:"};
    size_t room = 16, len = 0, count = 0, lo = 0;
    unsigned char *text;
    rlhf_result r = RLHF_OK;
    int i;
    for (i = 0; i < n; i++) room += msg[i].content.len + 16;
    if (!(text = (unsigned char *)rlhf__alloc(room))) return RLHF_ERR_OUT_OF_MEMORY;

    /* system text as it is, "\n\nHuman: " u, "\n\nAssistant:" " a" <|endoftext|>: SFT learns " a" and the EOS */
    for (i = 0; i < n && r == RLHF_OK; i++) {
        int reply = msg[i].role == RLHF_ROLE_ASSISTANT;
        memcpy(text + len, head[msg[i].role], strlen(head[msg[i].role]));
        len += strlen(head[msg[i].role]);
        lo = len;
        if (reply) text[len++] = ' ';
        if (msg[i].content.len) memcpy(text + len, msg[i].content.str, msg[i].content.len);
        len += msg[i].content.len;
        if (!reply) continue;
        r = rlhf__hh_chunk(t, text, len, lo, len, ids, mask, cap, &count);
        if (count < cap) { ids[count] = t->special[RLHF_TOKEN_EOS]; if (mask) mask[count] = 1; }
        count++;
        len = 0;
    }

    /* the rest of the text, then the generation prompt: nothing learned */
    if (gen) {
        memcpy(text + len, head[RLHF_ROLE_ASSISTANT], strlen(head[RLHF_ROLE_ASSISTANT]));
        len += strlen(head[RLHF_ROLE_ASSISTANT]);
    }
    if (r == RLHF_OK && len) r = rlhf__hh_chunk(t, text, len, 0, 0, ids, mask, cap, &count);
    rlhf__free(text);
    *n_ids = count;
    return r != RLHF_OK ? r : count <= cap ? RLHF_OK : RLHF_ERR_TOO_LARGE;
}
RLHFDEF rlhf_result rlhf_tokenizer_chat(const rlhf_tokenizer *t, const rlhf_message *msg, int n,
                                        int add_generation_prompt, int *ids, unsigned char *mask, size_t cap,
                                        size_t *n_ids) {
    static const rlhf_special_token role_tok[3] = {RLHF_TOKEN_SYSTEM, RLHF_TOKEN_USER, RLHF_TOKEN_ASSISTANT};
    size_t count = 0, k;
    int i;
    rlhf_result r;
    if (n_ids) *n_ids = 0;
    if (!t || (!msg && n) || n < 0 || (!ids && cap) || !n_ids) return RLHF_ERR_INVALID_ARGUMENT;
    for (i = 0; i < n; i++)
        if ((int)msg[i].role < 0 || msg[i].role > RLHF_ROLE_ASSISTANT) return RLHF_ERR_INVALID_ARGUMENT;
    if (t->chat_template == RLHF_TEMPLATE_HH)
        return rlhf__chat_hh(t, msg, n, add_generation_prompt, ids, mask, cap, n_ids);
    for (i = 0; i < n; i++) {
        size_t before;
        int learn = msg[i].role == RLHF_ROLE_ASSISTANT;
        /* <|role|> content <|end|>; SFT learns an assistant's content and its <|end|> */
        if (count < cap) { ids[count] = t->special[role_tok[msg[i].role]]; if (mask) mask[count] = 0; }
        count++;
        before = count;
        if ((r = rlhf__encode_plain(t, (const unsigned char *)msg[i].content.str, msg[i].content.len, ids, cap,
                                    &count)) != RLHF_OK)
            return r;
        if (mask)
            for (k = before; k < count && k < cap; k++) mask[k] = (unsigned char)learn;
        if (count < cap) { ids[count] = t->special[RLHF_TOKEN_END]; if (mask) mask[count] = (unsigned char)learn; }
        count++;
    }
    if (add_generation_prompt) {
        if (count < cap) { ids[count] = t->special[RLHF_TOKEN_ASSISTANT]; if (mask) mask[count] = 0; }
        count++;
    }
    *n_ids = count;
    return count <= cap ? RLHF_OK : RLHF_ERR_TOO_LARGE;
}

/* ---- building: token table, byte alphabet, merges ------------------------------ */
/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
   other 68 bytes to U+0100.. in order, so every token is a printable string. */
static void rlhf__gpt2_alphabet(uint32_t cp_of_byte[256], int byte_of_cp[324]) {
    int b, n = 0;
    for (b = 0; b < 324; b++) byte_of_cp[b] = -1;
    for (b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp_of_byte[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        byte_of_cp[cp_of_byte[b]] = b;
    }
}
/* a GPT-2 alphabet string to its bytes (out has room for len bytes); -1 if a
   character is outside the alphabet */
static long rlhf__from_alphabet(const char *s, size_t len, const int byte_of_cp[324], unsigned char *out) {
    size_t i = 0, w = 0, k;
    while (i < len) {
        uint32_t cp = rlhf__cp_at((const unsigned char *)s, len, i, &k);
        if (cp >= 324 || byte_of_cp[cp] < 0) return -1;
        out[w++] = (unsigned char)byte_of_cp[cp];
        i += k;
    }
    return (long)w;
}

/* A map from token bytes to ids, for loading (duplicates, merge lookups). */
typedef struct rlhf__tokmap { int *slot; size_t cap; const rlhf_tokenizer *t; } rlhf__tokmap;
static uint64_t rlhf__fnv(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    while (n--) h = (h ^ *p++) * 0x100000001b3ull;
    return h;
}
/* find the slot of bytes p[0..n): its id if present, else -1 with *where set to the free slot */
static int rlhf__tokmap_find(const rlhf__tokmap *m, const unsigned char *p, size_t n, size_t *where) {
    size_t i = (size_t)rlhf__fnv(p, n) & (m->cap - 1);
    for (; m->slot[i] >= 0; i = (i + 1) & (m->cap - 1)) {
        int id = m->slot[i];
        size_t len = m->t->tok_off[id + 1] - m->t->tok_off[id];
        if (len == n && memcmp(m->t->pool + m->t->tok_off[id], p, n) == 0) break;
    }
    *where = i;
    return m->slot[i];
}
/* index tokens [0, n); returns -1, or the first id that duplicates an earlier one */
static int rlhf__tokmap_build(rlhf__tokmap *m, const rlhf_tokenizer *t, int n, int *dup_of) {
    int id;
    m->t = t;
    m->cap = 16;
    while (m->cap < (size_t)n * 2 + 2) m->cap *= 2;
    m->slot = (int *)rlhf__alloc(m->cap * sizeof(int));
    if (!m->slot) return -2;
    memset(m->slot, 0xFF, m->cap * sizeof(int)); /* -1: empty */
    for (id = 0; id < n; id++) {
        size_t w;
        int prev = rlhf__tokmap_find(m, t->pool + t->tok_off[id], t->tok_off[id + 1] - t->tok_off[id], &w);
        if (prev >= 0) { *dup_of = prev; return id; }
        m->slot[w] = id;
    }
    return -1;
}

/* Check a finished table (bytes, merges, specials) and index the merges.
   what names the source for messages. */
static rlhf_result rlhf__tokenizer_finish(rlhf_tokenizer *t, const char *what, rlhf_error *err) {
    int b, r, k;
    /* every byte has a token of its own (not a special one) */
    for (b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (r = 0; r < t->n_vocab; r++)
        if (t->tok_off[r + 1] - t->tok_off[r] == 1) {
            int byte = t->pool[t->tok_off[r]], special = 0;
            for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) special |= t->special[k] == r;
            if (!special && t->byte_id[byte] < 0) t->byte_id[byte] = r;
        }
    for (b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "no token for byte 0x%02X: byte-level BPE needs all 256", b);

    /* every merge a + b -> c: c's bytes are a's followed by b's */
    for (r = 0; r < t->n_merges; r++) {
        const rlhf__merge *mg = &t->merges[r];
        size_t la, lb, lc;
        if (mg->a < 0 || mg->b < 0 || mg->c < 0 || mg->a >= t->n_vocab || mg->b >= t->n_vocab || mg->c >= t->n_vocab)
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "merge %d names a token id outside [0, %d)", r, t->n_vocab);
        la = t->tok_off[mg->a + 1] - t->tok_off[mg->a];
        lb = t->tok_off[mg->b + 1] - t->tok_off[mg->b];
        lc = t->tok_off[mg->c + 1] - t->tok_off[mg->c];
        if (lc != la + lb || memcmp(t->pool + t->tok_off[mg->c], t->pool + t->tok_off[mg->a], la) != 0 ||
            memcmp(t->pool + t->tok_off[mg->c] + la, t->pool + t->tok_off[mg->b], lb) != 0)
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "merge %d: token %d is not token %d followed by token %d", r,
                                mg->c, mg->a, mg->b);
    }

    /* the special tokens: in range, and distinct */
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) {
        int j;
        if (t->special[k] < 0 || t->special[k] >= t->n_vocab)
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "special token %s has id %d, outside [0, %d)",
                                RLHF__SPECIAL_STR[k], t->special[k], t->n_vocab);
        for (j = 0; j < k; j++)
            if (t->special[j] == t->special[k])
                return rlhf__st_err(err, RLHF_ERR_PARSE, what,
                                    "%s and %s share id %d (the pad must differ from the EOS)",
                                    RLHF__SPECIAL_STR[j], RLHF__SPECIAL_STR[k], t->special[k]);
    }

    /* the merges indexed by pair, for encoding */
    r = rlhf__index_merges(t);
    if (r < 0) return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, what, "out of memory");
    if (r == 0) return rlhf__st_err(err, RLHF_ERR_PARSE, what, "a pair of tokens is merged twice");
    return RLHF_OK;
}

static rlhf_tokenizer *rlhf__tokenizer_alloc(int n_vocab, size_t pool_bytes, int n_merges) {
    rlhf_tokenizer *t = (rlhf_tokenizer *)rlhf__alloc(sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->tok_off = (uint32_t *)rlhf__alloc(((size_t)n_vocab + 1) * sizeof(uint32_t));
    t->pool = (unsigned char *)rlhf__alloc(pool_bytes + 1);
    t->merges = (rlhf__merge *)rlhf__alloc(((size_t)n_merges + 1) * sizeof(rlhf__merge));
    if (!t->tok_off || !t->pool || !t->merges) { rlhf_tokenizer_free(t); return NULL; }
    t->tok_off[0] = 0;
    return t;
}

RLHFDEF rlhf_result rlhf_tokenizer_load_gpt2(rlhf_tokenizer **out, const char *encoder_json_path,
                                             const char *vocab_bpe_path) {
    return rlhf_tokenizer_load_gpt2_ex(out, encoder_json_path, vocab_bpe_path, NULL);
}

/* The tokens of encoder.json (root: {token string: id}) into t's pool, in id
   order: the ids must be a permutation of 0..n-1 and every string must be in
   GPT-2's byte alphabet. *off receives the pool's length. */
static rlhf_result rlhf__gpt2_token_bytes(rlhf_tokenizer *t, const rlhf_json *root, const int byte_of_cp[324],
                                          size_t *off, int *have_eos, const char *enc_path, rlhf_error *err) {
    int n = (int)root->len, id;
    const rlhf_json **by_id = (const rlhf_json **)rlhf__alloc((size_t)n * sizeof *by_id), *v;
    rlhf_result r = RLHF_OK;
    if (!by_id) return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, enc_path, "out of memory");
    memset((void *)by_id, 0, (size_t)n * sizeof *by_id);

    /* each id given once */
    for (v = root->child; v; v = v->next) {
        int64_t x;
        if (!rlhf_json_int64(v, &x) || x < 0 || x >= n) {
            r = rlhf__st_err(err, RLHF_ERR_PARSE, enc_path, "token \"%s\": id must be an integer in [0, %d)",
                             v->key, n);
            break;
        }
        if (by_id[x]) {
            r = rlhf__st_err(err, RLHF_ERR_PARSE, enc_path, "id %lld is given to \"%s\" and to \"%s\"", (long long)x,
                             by_id[x]->key, v->key);
            break;
        }
        by_id[x] = v;
    }

    /* the tokens' bytes, by id */
    for (id = 0; r == RLHF_OK && id < n; id++) {
        long len = rlhf__from_alphabet(by_id[id]->key, by_id[id]->key_len, byte_of_cp, t->pool + *off);
        if (len < 0) {
            r = rlhf__st_err(err, RLHF_ERR_PARSE, enc_path,
                             "token \"%s\" has a character outside GPT-2's byte alphabet", by_id[id]->key);
            break;
        }
        if (strcmp(by_id[id]->key, RLHF__SPECIAL_STR[RLHF_TOKEN_EOS]) == 0) {
            t->special[RLHF_TOKEN_EOS] = id;
            *have_eos = 1;
        }
        *off += (size_t)len;
        t->tok_off[id + 1] = (uint32_t)*off;
    }
    rlhf__free((void *)by_id);
    return r;
}

/* A tokenizer from encoder.json's object: GPT-2's n tokens (<|endoftext|>
   among them), then pad and the chat markers after GPT-2's ids. */
static rlhf_result rlhf__gpt2_vocab(rlhf_tokenizer **out, const rlhf_json *root, const int byte_of_cp[324],
                                    const char *enc_path, rlhf_error *err) {
    int n = (int)root->len, k, have_eos = 0;
    size_t pool = 0, off = 0;
    const rlhf_json *v;
    rlhf_tokenizer *t;
    rlhf_result r;
    for (v = root->child; v; v = v->next) pool += v->key_len;
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) pool += strlen(RLHF__SPECIAL_STR[k]);
    if (!(t = rlhf__tokenizer_alloc(n + RLHF_NUM_SPECIAL_TOKENS, pool, 0)))
        return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, enc_path, "out of memory");

    if ((r = rlhf__gpt2_token_bytes(t, root, byte_of_cp, &off, &have_eos, enc_path, err)) == RLHF_OK && !have_eos)
        r = rlhf__st_err(err, RLHF_ERR_PARSE, enc_path, "no <|endoftext|> token");
    if (r != RLHF_OK) {
        rlhf_tokenizer_free(t);
        return r;
    }

    /* pad and the chat markers follow GPT-2's ids */
    for (k = 1; k < RLHF_NUM_SPECIAL_TOKENS; k++) {
        size_t sl = strlen(RLHF__SPECIAL_STR[k]);
        memcpy(t->pool + off, RLHF__SPECIAL_STR[k], sl);
        off += sl;
        t->special[k] = n + k - 1;
        t->tok_off[n + k] = (uint32_t)off;
    }
    t->n_vocab = n + RLHF_NUM_SPECIAL_TOKENS - 1;
    *out = t;
    return RLHF_OK;
}

/* vocab.bpe: a "#version" line, then one merge "A B" per line, by rank, into
   t's merges; map finds the tokens A, B and AB. */
static rlhf_result rlhf__gpt2_merges(rlhf_tokenizer *t, const rlhf__tokmap *map, const char *bbuf, size_t blen,
                                     const int byte_of_cp[324], const char *enc_path, const char *bpe_path,
                                     rlhf_error *err) {
    unsigned char *scratch;
    size_t i, line;
    int k;
    rlhf_result r = RLHF_OK;

    /* room for a merge a line, and for one line's bytes */
    for (i = 0, k = 0; i < blen; i++) k += bbuf[i] == '\n';
    rlhf__free(t->merges);
    t->merges = (rlhf__merge *)rlhf__alloc(((size_t)k + 2) * sizeof(rlhf__merge));
    scratch = (unsigned char *)rlhf__alloc(blen + 1);
    if (!t->merges || !scratch) {
        rlhf__free(scratch);
        return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, bpe_path, "out of memory");
    }

    for (i = 0, line = 1; i < blen; line++) {
        size_t e = i, sp, w;
        long la, lb;
        int a, b, c;
        while (e < blen && bbuf[e] != '\n') e++;
        if (e > i && bbuf[e - 1] == '\r') e--;
        if (e == i || (line == 1 && e - i >= 8 && memcmp(bbuf + i, "#version", 8) == 0)) { /* blank or header */
            i = e + (e < blen && bbuf[e] == '\r') + 1;
            continue;
        }

        /* "A B": two tokens in the byte alphabet, one space between */
        for (sp = i; sp < e && bbuf[sp] != ' '; sp++) {}
        if (sp == e || sp == i || sp + 1 == e || memchr(bbuf + sp + 1, ' ', e - sp - 1)) {
            r = rlhf__st_err(err, RLHF_ERR_PARSE, bpe_path, "%zu: expected two tokens separated by one space", line);
            break;
        }
        la = rlhf__from_alphabet(bbuf + i, sp - i, byte_of_cp, scratch);
        lb = la < 0 ? -1 : rlhf__from_alphabet(bbuf + sp + 1, e - sp - 1, byte_of_cp, scratch + la);
        if (la < 0 || lb < 0) {
            r = rlhf__st_err(err, RLHF_ERR_PARSE, bpe_path, "%zu: a character outside GPT-2's byte alphabet", line);
            break;
        }

        /* A, B and AB must all be tokens */
        a = rlhf__tokmap_find(map, scratch, (size_t)la, &w);
        b = rlhf__tokmap_find(map, scratch + la, (size_t)lb, &w);
        c = rlhf__tokmap_find(map, scratch, (size_t)(la + lb), &w);
        if (a < 0 || b < 0 || c < 0) {
            r = rlhf__st_err(err, RLHF_ERR_PARSE, bpe_path, "%zu: merge \"%.*s\" names a token not in %s", line,
                             (int)(e - i), bbuf + i, enc_path);
            break;
        }
        t->merges[t->n_merges].a = a;
        t->merges[t->n_merges].b = b;
        t->merges[t->n_merges].c = c;
        t->n_merges++;
        i = e + (e < blen && bbuf[e] == '\r') + 1;
    }
    rlhf__free(scratch);
    return r;
}

RLHFDEF rlhf_result rlhf_tokenizer_load_gpt2_ex(rlhf_tokenizer **out, const char *enc_path, const char *bpe_path,
                                                rlhf_error *err) {
    uint32_t cp_of_byte[256];
    int byte_of_cp[324], k, dup = -1;
    char *ebuf = NULL, *bbuf = NULL;
    size_t elen = 0, blen = 0;
    rlhf_json_doc *doc = NULL;
    rlhf_json_error je;
    const rlhf_json *root;
    rlhf_tokenizer *t = NULL;
    rlhf__tokmap map = {NULL, 0, NULL};
    rlhf_result r = RLHF_OK;
    if (err) err->message[0] = 0;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!enc_path || !bpe_path) return RLHF_ERR_INVALID_ARGUMENT;
    rlhf__gpt2_alphabet(cp_of_byte, byte_of_cp);

    /* encoder.json: an object mapping token strings to ids */
    if (!(ebuf = rlhf__read_small_file(enc_path, (size_t)256 << 20, &elen)))
        return rlhf__read_err(err, enc_path, elen);
    if ((r = rlhf_json_parse(&doc, ebuf, elen, 4, &je)) != RLHF_OK) {
        r = rlhf__st_err(err, r, enc_path, "%zu:%zu: %s", je.line, je.column, je.message);
        goto done;
    }
    root = rlhf_json_root(doc);
    if (root->type != RLHF_JSON_OBJECT || root->len == 0 || root->len > (1u << 24)) {
        r = rlhf__st_err(err, RLHF_ERR_PARSE, enc_path, "expected an object mapping token strings to ids");
        goto done;
    }
    if ((r = rlhf__gpt2_vocab(&t, root, byte_of_cp, enc_path, err)) != RLHF_OK) goto done;

    /* no two tokens with the same bytes (the map then finds the merges' tokens) */
    if ((k = rlhf__tokmap_build(&map, t, t->n_vocab, &dup)) != -1) {
        r = k == -2 ? rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, enc_path, "out of memory")
                    : rlhf__st_err(err, RLHF_ERR_PARSE, enc_path, "token %d has the same bytes as token %d", k, dup);
        goto done;
    }

    /* vocab.bpe: the merges, then the whole table checked */
    if (!(bbuf = rlhf__read_small_file(bpe_path, (size_t)256 << 20, &blen))) {
        r = rlhf__read_err(err, bpe_path, blen);
        goto done;
    }
    if ((r = rlhf__gpt2_merges(t, &map, bbuf, blen, byte_of_cp, enc_path, bpe_path, err)) == RLHF_OK)
        r = rlhf__tokenizer_finish(t, bpe_path, err);
done:
    rlhf__free(ebuf);
    rlhf__free(bbuf);
    rlhf__free(map.slot);
    rlhf_json_free(doc);
    if (r != RLHF_OK) {
        rlhf_tokenizer_free(t);
        return r;
    }
    *out = t;
    return RLHF_OK;
}

/* ---- training: byte-level BPE with incremental pair counts --------------------------
   Sennrich et al. 2016, on GPT-2's pre-tokenized pieces (merges never cross
   them). Each distinct piece is a "word" with a count. A hash map holds every
   adjacent pair's total count and the words it occurs in; a max-heap (with
   lazy deletion: an entry whose count is out of date is re-pushed) yields the
   most frequent pair. A merge touches only the words that hold the pair. */
typedef struct rlhf__tw { int *sym; int len; int64_t count; } rlhf__tw;
typedef struct rlhf__tp { int a, b; int64_t count; int *where; int n_where, cap_where, stamp; } rlhf__tp;
typedef struct rlhf__he { int64_t count; int a, b; } rlhf__he;
typedef struct rlhf__trainer {
    rlhf__tw *w; size_t n_w, cap_w;
    int *wslot; size_t cap_wslot;     /* word map: index into w, -1 empty */
    rlhf__tp *p; size_t n_p, cap_p;
    int *slot; size_t cap_slot;       /* pair map: index into p, -1 empty */
    rlhf__he *heap; size_t n_heap, cap_heap;
    int *touched, n_touched, cap_touched; /* the pairs one merge created (touched keeps its size across merges) */
    int oom;
} rlhf__trainer;

static int rlhf__he_before(const rlhf__he *x, const rlhf__he *y) { /* higher count; ties: smaller ids */
    return x->count > y->count || (x->count == y->count && (x->a < y->a || (x->a == y->a && x->b < y->b)));
}
static void rlhf__heap_push(rlhf__trainer *T, int64_t count, int a, int b) {
    size_t i;
    if (T->n_heap == T->cap_heap) {
        size_t cap = T->cap_heap ? 2 * T->cap_heap : 1024;
        rlhf__he *nh = (rlhf__he *)rlhf__alloc(cap * sizeof *nh);
        if (!nh) { T->oom = 1; return; }
        if (T->n_heap) memcpy(nh, T->heap, T->n_heap * sizeof *nh);
        rlhf__free(T->heap);
        T->heap = nh;
        T->cap_heap = cap;
    }
    i = T->n_heap++;
    T->heap[i].count = count; T->heap[i].a = a; T->heap[i].b = b;
    while (i > 0 && rlhf__he_before(&T->heap[i], &T->heap[(i - 1) / 2])) { /* sift up */
        rlhf__he tmp = T->heap[i];
        T->heap[i] = T->heap[(i - 1) / 2];
        T->heap[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}
static rlhf__he rlhf__heap_pop(rlhf__trainer *T) {
    rlhf__he top = T->heap[0];
    size_t i = 0;
    T->heap[0] = T->heap[--T->n_heap];
    for (;;) { /* sift down */
        size_t l = 2 * i + 1, r = l + 1, m = i;
        rlhf__he tmp;
        if (l < T->n_heap && rlhf__he_before(&T->heap[l], &T->heap[m])) m = l;
        if (r < T->n_heap && rlhf__he_before(&T->heap[r], &T->heap[m])) m = r;
        if (m == i) break;
        tmp = T->heap[i]; T->heap[i] = T->heap[m]; T->heap[m] = tmp;
        i = m;
    }
    return top;
}
/* the stats of pair (a, b), created if missing; NULL when out of memory */
static rlhf__tp *rlhf__pair(rlhf__trainer *T, int a, int b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i;
    if (T->n_p * 2 >= T->cap_slot) { /* grow the map, and the array with it */
        size_t cap = T->cap_slot ? 2 * T->cap_slot : 4096, k;
        int *ns = (int *)rlhf__alloc(cap * sizeof(int));
        rlhf__tp *np = (rlhf__tp *)rlhf__alloc(cap / 2 * sizeof(rlhf__tp));
        if (!ns || !np) { rlhf__free(ns); rlhf__free(np); T->oom = 1; return NULL; }
        memset(ns, 0xFF, cap * sizeof(int));
        if (T->n_p) memcpy(np, T->p, T->n_p * sizeof(rlhf__tp));
        for (k = 0; k < T->n_p; k++) {
            uint64_t kk = (uint64_t)(uint32_t)np[k].a << 32 | (uint32_t)np[k].b;
            for (i = (size_t)rlhf__hash64(kk) & (cap - 1); ns[i] >= 0; i = (i + 1) & (cap - 1)) {}
            ns[i] = (int)k;
        }
        rlhf__free(T->slot);
        rlhf__free(T->p);
        T->slot = ns;
        T->p = np;
        T->cap_slot = cap;
        T->cap_p = cap / 2;
    }
    for (i = (size_t)rlhf__hash64(key) & (T->cap_slot - 1); T->slot[i] >= 0; i = (i + 1) & (T->cap_slot - 1))
        if (T->p[T->slot[i]].a == a && T->p[T->slot[i]].b == b) return &T->p[T->slot[i]];
    T->slot[i] = (int)T->n_p;
    memset(&T->p[T->n_p], 0, sizeof(rlhf__tp));
    T->p[T->n_p].a = a;
    T->p[T->n_p].b = b;
    T->p[T->n_p].stamp = -1;
    return &T->p[T->n_p++];
}
static void rlhf__pair_add_word(rlhf__trainer *T, rlhf__tp *p, int w) {
    if (p->n_where && p->where[p->n_where - 1] == w) return; /* already listed (consecutive) */
    if (p->n_where == p->cap_where) {
        int cap = p->cap_where ? 2 * p->cap_where : 4;
        int *nw = (int *)rlhf__alloc((size_t)cap * sizeof(int));
        if (!nw) { T->oom = 1; return; }
        if (p->n_where) memcpy(nw, p->where, (size_t)p->n_where * sizeof(int));
        rlhf__free(p->where);
        p->where = nw;
        p->cap_where = cap;
    }
    p->where[p->n_where++] = w;
}

static void rlhf__trainer_free(rlhf__trainer *T) {
    size_t i;
    for (i = 0; i < T->n_w; i++) rlhf__free(T->w[i].sym);
    for (i = 0; i < T->n_p; i++) rlhf__free(T->p[i].where);
    rlhf__free(T->w);
    rlhf__free(T->p);
    rlhf__free(T->slot);
    rlhf__free(T->heap);
    rlhf__free(T->wslot);
    rlhf__free(T->touched);
}

/* The slot of the word with bytes p[0..n) in the word map: the word's, or the
   free slot where it goes. */
static size_t rlhf__word_slot(const rlhf__trainer *T, const unsigned char *p, size_t n) {
    size_t j;
    for (j = (size_t)rlhf__fnv(p, n) & (T->cap_wslot - 1); T->wslot[j] >= 0; j = (j + 1) & (T->cap_wslot - 1)) {
        const rlhf__tw *w = &T->w[T->wslot[j]];
        if ((size_t)w->len == n) {
            int q;
            for (q = 0; q < w->len && w->sym[q] == p[q]; q++) {}
            if (q == w->len) break;
        }
    }
    return j;
}

/* the word map at twice its size; 0 when out of memory */
static int rlhf__word_rehash(rlhf__trainer *T) {
    size_t cap = T->cap_wslot * 2, q;
    int *ns = (int *)rlhf__alloc(cap * sizeof(int));
    if (!ns) { T->oom = 1; return 0; }
    memset(ns, 0xFF, cap * sizeof(int));
    for (q = 0; q < T->n_w; q++) {
        const rlhf__tw *w = &T->w[q];
        uint64_t hh = 0xcbf29ce484222325ull; /* rlhf__fnv over the piece's bytes */
        size_t z;
        int k;
        for (k = 0; k < w->len; k++) hh = (hh ^ (unsigned char)w->sym[k]) * 0x100000001b3ull;
        for (z = (size_t)hh & (cap - 1); ns[z] >= 0; z = (z + 1) & (cap - 1)) {}
        ns[z] = (int)q;
    }
    rlhf__free(T->wslot);
    T->wslot = ns;
    T->cap_wslot = cap;
    return 1;
}

/* A new word of count 1 with bytes p[0..n) (byte b is token b), at free
   slot j of the word map; 0 when out of memory. */
static int rlhf__word_add(rlhf__trainer *T, const unsigned char *p, size_t n, size_t j) {
    rlhf__tw *w;
    int k;
    if (T->n_w == T->cap_w) {
        size_t cap = T->cap_w ? 2 * T->cap_w : 1024;
        rlhf__tw *nw = (rlhf__tw *)rlhf__alloc(cap * sizeof *nw);
        if (!nw) { T->oom = 1; return 0; }
        if (T->n_w) memcpy(nw, T->w, T->n_w * sizeof *nw);
        rlhf__free(T->w);
        T->w = nw;
        T->cap_w = cap;
    }
    w = &T->w[T->n_w];
    w->sym = (int *)rlhf__alloc(n * sizeof(int));
    if (!w->sym) { T->oom = 1; return 0; }
    for (k = 0; k < (int)n; k++) w->sym[k] = p[k];
    w->len = (int)n;
    w->count = 1;
    T->wslot[j] = (int)T->n_w++;
    return T->n_w * 2 >= T->cap_wslot ? rlhf__word_rehash(T) : 1; /* the map stays under half full */
}

/* 1. the distinct pieces of the text and their counts */
static void rlhf__train_words(rlhf__trainer *T, const unsigned char *s, size_t len) {
    size_t i;
    T->cap_wslot = 1024;
    T->wslot = (int *)rlhf__alloc(T->cap_wslot * sizeof(int));
    if (!T->wslot) { T->oom = 1; return; }
    memset(T->wslot, 0xFF, T->cap_wslot * sizeof(int));
    for (i = 0; i < len;) {
        size_t end = rlhf__pretoken_end(s, len, i), j;
        /* a piece over 256 bytes (a run of letters or symbols with no break)
           is learned from in 256-byte chunks: each merge recounts the words
           holding its pair, so one huge word would make training quadratic */
        if (end - i > 256) end = i + 256;
        j = rlhf__word_slot(T, s + i, end - i);
        if (T->wslot[j] >= 0) T->w[T->wslot[j]].count++;
        else if (!rlhf__word_add(T, s + i, end - i, j)) return;
        i = end;
    }
}

/* 2. every adjacent pair: its count and its words, and a heap entry */
static void rlhf__train_pairs(rlhf__trainer *T) {
    size_t i;
    int k;
    for (i = 0; i < T->n_w; i++)
        for (k = 0; k + 1 < T->w[i].len; k++) {
            rlhf__tp *p = rlhf__pair(T, T->w[i].sym[k], T->w[i].sym[k + 1]);
            if (!p) return;
            p->count += T->w[i].count;
            rlhf__pair_add_word(T, p, (int)i);
        }
    for (i = 0; i < T->n_p; i++) rlhf__heap_push(T, T->p[i].count, T->p[i].a, T->p[i].b);
}

/* 3a. the most frequent pair whose heap entry is current; NULL when the heap
   runs dry (or out of memory: T->oom) */
static rlhf__tp *rlhf__train_best(rlhf__trainer *T) {
    for (;;) {
        rlhf__he top;
        rlhf__tp *p;
        if (T->n_heap == 0) return NULL;
        top = rlhf__heap_pop(T);
        p = rlhf__pair(T, top.a, top.b);
        if (!p) return NULL;
        if (p->count == top.count && p->count > 0) return p;
        if (p->count > 0 && p->count < top.count) rlhf__heap_push(T, p->count, p->a, p->b); /* stale: re-queue */
    }
}

/* 3b. token 256 + r, the bytes of a followed by those of b, by merge r; 0
   when out of memory */
static int rlhf__train_add_token(rlhf_tokenizer *t, int a, int b, int r, size_t *pool_bytes, size_t *pool_cap) {
    int c = 256 + r;
    size_t la = t->tok_off[a + 1] - t->tok_off[a], lb = t->tok_off[b + 1] - t->tok_off[b];
    if (*pool_bytes + la + lb + 64 > *pool_cap) { /* grow the byte pool geometrically */
        size_t cap = 2 * (*pool_bytes + la + lb + 64);
        unsigned char *np = (unsigned char *)rlhf__alloc(cap);
        if (!np) return 0;
        memcpy(np, t->pool, *pool_bytes);
        rlhf__free(t->pool);
        t->pool = np;
        *pool_cap = cap;
    }
    memcpy(t->pool + *pool_bytes, t->pool + t->tok_off[a], la);
    memcpy(t->pool + *pool_bytes + la, t->pool + t->tok_off[b], lb);
    *pool_bytes += la + lb;
    t->tok_off[c + 1] = (uint32_t)*pool_bytes;
    t->merges[r].a = a;
    t->merges[r].b = b;
    t->merges[r].c = c;
    t->n_merges = r + 1;
    t->n_vocab = c + 1;
    return 1;
}

/* 3c for word wi: if it holds (a, b), its pairs' counts out, the merge into
   c (merge r), its new pairs' counts in. A pair that holds c lists the word,
   and is touched once per merge. 0 when out of memory. */
static int rlhf__train_merge_word(rlhf__trainer *T, int wi, int a, int b, int c, int r) {
    rlhf__tw *w = &T->w[wi];
    int x, y, has = 0;
    for (x = 0; x + 1 < w->len && !has; x++) has = w->sym[x] == a && w->sym[x + 1] == b;
    if (!has) return 1;

    /* the word's pairs before the merge lose its count */
    for (x = 0; x + 1 < w->len; x++) {
        rlhf__tp *op = rlhf__pair(T, w->sym[x], w->sym[x + 1]);
        if (!op) return 0;
        op->count -= w->count;
    }

    /* merge left to right */
    for (x = 0, y = 0; x < w->len; y++) {
        if (x + 1 < w->len && w->sym[x] == a && w->sym[x + 1] == b) { w->sym[y] = c; x += 2; }
        else w->sym[y] = w->sym[x++];
    }
    w->len = y;

    /* its pairs after the merge gain it; those with c list the word */
    for (x = 0; x + 1 < w->len; x++) {
        rlhf__tp *np = rlhf__pair(T, w->sym[x], w->sym[x + 1]);
        if (!np) return 0;
        np->count += w->count;
        if (np->a != c && np->b != c) continue;
        rlhf__pair_add_word(T, np, wi);
        if (np->stamp == r) continue;
        np->stamp = r; /* push each new pair once, after all words */
        if (T->n_touched == T->cap_touched) {
            int *nt = (int *)rlhf__alloc(sizeof(int) * (size_t)T->cap_touched * 2);
            if (!nt) { T->oom = 1; return 0; }
            memcpy(nt, T->touched, sizeof(int) * (size_t)T->n_touched);
            rlhf__free(T->touched);
            T->touched = nt;
            T->cap_touched *= 2;
        }
        T->touched[T->n_touched++] = (int)(np - T->p);
    }
    return 1;
}

/* 3c. rewrite the words that hold p = (a, b) (its word list, taken over) and
   recount their pairs; then queue the pairs merge r created */
static void rlhf__train_rewrite(rlhf__trainer *T, rlhf__tp *p, int r) {
    int a = p->a, b = p->b, *where = p->where, n_where = p->n_where, q;
    p->where = NULL; /* p may move: rlhf__pair grows the pair array */
    p->n_where = p->cap_where = 0;
    T->n_touched = 0;
    for (q = 0; q < n_where; q++)
        if (!rlhf__train_merge_word(T, where[q], a, b, 256 + r, r)) {
            rlhf__free(where);
            return;
        }
    rlhf__free(where);
    for (q = 0; q < T->n_touched; q++)
        rlhf__heap_push(T, T->p[T->touched[q]].count, T->p[T->touched[q]].a, T->p[T->touched[q]].b);
}

/* 4. the special tokens after the merges; 0 when out of memory */
static int rlhf__train_specials(rlhf_tokenizer *t, size_t pool_bytes, size_t pool_cap) {
    size_t extra = 0;
    int k;
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) extra += strlen(RLHF__SPECIAL_STR[k]);
    if (pool_bytes + extra + 1 > pool_cap) {
        unsigned char *np = (unsigned char *)rlhf__alloc(pool_bytes + extra + 1);
        if (!np) return 0;
        memcpy(np, t->pool, pool_bytes);
        rlhf__free(t->pool);
        t->pool = np;
    }
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) {
        size_t sl = strlen(RLHF__SPECIAL_STR[k]);
        memcpy(t->pool + pool_bytes, RLHF__SPECIAL_STR[k], sl);
        pool_bytes += sl;
        t->special[k] = t->n_vocab;
        t->tok_off[t->n_vocab + 1] = (uint32_t)pool_bytes;
        t->n_vocab++;
    }
    return 1;
}

RLHFDEF rlhf_result rlhf_tokenizer_train(rlhf_tokenizer **out, const char *text, size_t len, int vocab_size,
                                         rlhf_error *err) {
    static const char *const who = "rlhf_tokenizer_train";
    rlhf__trainer T;
    rlhf_tokenizer *t = NULL;
    int n_merges, r, k;
    size_t pool_bytes = 256, pool_cap = 256 + 64;
    rlhf_result res = RLHF_OK;
    if (err) err->message[0] = 0;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    /* an empty file given as the corpus is a mistake worth naming, not a tokenizer of bytes only */
    if (len == 0) return rlhf__st_err(err, RLHF_ERR_INVALID_ARGUMENT, who, "no text to learn from (0 bytes)");
    if (!text) return rlhf__st_err(err, RLHF_ERR_INVALID_ARGUMENT, who, "text is NULL");
    if (vocab_size < 256 + RLHF_NUM_SPECIAL_TOKENS || vocab_size > (1 << 24))
        return rlhf__st_err(err, RLHF_ERR_INVALID_ARGUMENT, who,
                            "vocab_size must be from %d (bytes and special tokens) to 2^24, got %d",
                            256 + RLHF_NUM_SPECIAL_TOKENS, vocab_size);
    n_merges = vocab_size - 256 - RLHF_NUM_SPECIAL_TOKENS;
    memset(&T, 0, sizeof T);

    /* 1. and 2. the words, and their pairs */
    rlhf__train_words(&T, (const unsigned char *)text, len);
    if (!T.oom) rlhf__train_pairs(&T);
    if (T.oom) goto done;

    /* 3. the tokenizer: bytes 0..255, merges 256.., specials last */
    t = rlhf__tokenizer_alloc(vocab_size, (size_t)256 + 64, n_merges);
    if (!t) { T.oom = 1; goto done; }
    for (k = 0; k < 256; k++) {
        t->pool[k] = (unsigned char)k;
        t->tok_off[k + 1] = (uint32_t)(k + 1);
    }
    t->n_vocab = 256;
    T.cap_touched = 1024;
    T.touched = (int *)rlhf__alloc(sizeof(int) * 1024);
    if (!T.touched) { T.oom = 1; goto done; }
    for (r = 0; r < n_merges && T.n_heap > 0 && !T.oom; r++) {
        rlhf__tp *p = rlhf__train_best(&T);
        if (!p) break;
        if (!rlhf__train_add_token(t, p->a, p->b, r, &pool_bytes, &pool_cap)) { T.oom = 1; break; }
        rlhf__train_rewrite(&T, p, r);
    }
    if (T.oom) goto done;

    /* 4. the special tokens, then the whole table checked */
    if (!rlhf__train_specials(t, pool_bytes, pool_cap)) { T.oom = 1; goto done; }
    res = rlhf__tokenizer_finish(t, who, err);
done:
    if (T.oom && res == RLHF_OK) res = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, who, "out of memory");
    rlhf__trainer_free(&T);
    if (res != RLHF_OK) {
        rlhf_tokenizer_free(t);
        return res;
    }
    *out = t;
    return RLHF_OK;
}

/* ---- storage: JSON ---------------------------------------------------------------
   {"type": "rlhf-bpe", "version": 1,
    "vocab": [token bytes in GPT-2's printable byte alphabet, by id],
    "merges": [[a, b, c], ...] by rank (a followed by b is token c),
    "special": [eos, pad, system, user, assistant, end],
    "template": "hh" only when rlhf_tokenizer_chat renders HH-RLHF's text (absent: the chat template)} */
static char *rlhf__tokenizer_json(const rlhf_tokenizer *t, size_t *len) {
    uint32_t cp_of_byte[256];
    int byte_of_cp[324], i, k;
    rlhf__sb b = {NULL, 0, 0, 0};
    rlhf__gpt2_alphabet(cp_of_byte, byte_of_cp);
    rlhf__sb_str(&b, "{\"type\":\"rlhf-bpe\",\"version\":1,\"vocab\":[");
    for (i = 0; i < t->n_vocab && !b.oom; i++) {
        size_t j;
        rlhf__sb_str(&b, i ? ",\"" : "\"");
        for (j = t->tok_off[i]; j < t->tok_off[i + 1]; j++) {
            unsigned char u[4];
            uint32_t cp = cp_of_byte[t->pool[j]];
            if (cp == '"' || cp == '\\') rlhf__sb_add(&b, "\\", 1);
            rlhf__sb_add(&b, (const char *)u, rlhf__utf8_put(u, cp));
        }
        rlhf__sb_str(&b, "\"");
    }
    rlhf__sb_str(&b, "],\"merges\":[");
    for (i = 0; i < t->n_merges; i++)
        rlhf__sb_fmt(&b, i ? ",[%d,%d,%d]" : "[%d,%d,%d]", t->merges[i].a, t->merges[i].b, t->merges[i].c);
    rlhf__sb_str(&b, "],\"special\":[");
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) rlhf__sb_fmt(&b, k ? ",%d" : "%d", t->special[k]);
    rlhf__sb_str(&b, t->chat_template == RLHF_TEMPLATE_HH ? "],\"template\":\"hh\"}" : "]}");
    if (b.oom) { rlhf__free(b.p); return NULL; }
    *len = b.len;
    return b.p;
}
/* The "vocab" strings into t's table and "merges" ([a, b, c] each) into its
   merge list; map then indexes the tokens (no two may share their bytes). */
static rlhf_result rlhf__tokenizer_json_table(rlhf_tokenizer *t, rlhf__tokmap *map, const rlhf_json *vocab,
                                              const rlhf_json *merges, const char *what, rlhf_error *err) {
    uint32_t cp_of_byte[256];
    int byte_of_cp[324], n = (int)vocab->len, i, k, dup = -1;
    size_t off = 0;
    const rlhf_json *v;
    rlhf__gpt2_alphabet(cp_of_byte, byte_of_cp);

    /* the tokens' bytes, by id */
    for (i = 0, v = vocab->child; v; v = v->next, i++) {
        long l = rlhf__from_alphabet(v->str, v->len, byte_of_cp, t->pool + off);
        if (l < 0)
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "vocab[%d] has a character outside the byte alphabet", i);
        off += (size_t)l;
        t->tok_off[i + 1] = (uint32_t)off;
    }
    t->n_vocab = n;
    if ((k = rlhf__tokmap_build(map, t, n, &dup)) != -1)
        return k == -2 ? rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, what, "out of memory")
                       : rlhf__st_err(err, RLHF_ERR_PARSE, what, "vocab[%d] duplicates vocab[%d]", k, dup);

    /* the merges, by rank */
    for (i = 0, v = merges->child; v; v = v->next, i++) {
        int64_t a, b, c;
        if (v->type != RLHF_JSON_ARRAY || v->len != 3 || !rlhf_json_int64(v->child, &a) ||
            !rlhf_json_int64(v->child->next, &b) || !rlhf_json_int64(v->child->next->next, &c) || a < 0 || b < 0 ||
            c < 0 || a >= n || b >= n || c >= n)
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "merges[%d] must be three token ids in [0, %d)", i, n);
        t->merges[i].a = (int)a;
        t->merges[i].b = (int)b;
        t->merges[i].c = (int)c;
    }
    t->n_merges = (int)merges->len;
    return RLHF_OK;
}

/* The document's type and version, and its "vocab", "merges" and "special" arrays. */
static rlhf_result rlhf__tokenizer_json_fields(const rlhf_json *root, const rlhf_json **vocab, const rlhf_json **merges,
                                               const rlhf_json **special, const char *what, rlhf_error *err) {
    const rlhf_json *v = rlhf_json_get(root, "type");
    int64_t x;
    *vocab = rlhf_json_get(root, "vocab");
    *merges = rlhf_json_get(root, "merges");
    *special = rlhf_json_get(root, "special");
    if (!v || v->type != RLHF_JSON_STRING || strcmp(v->str, "rlhf-bpe") != 0 ||
        !rlhf_json_int64(rlhf_json_get(root, "version"), &x) || x != 1)
        return rlhf__st_err(err, RLHF_ERR_PARSE, what,
                            "not an rlhf.h tokenizer (expected \"type\": \"rlhf-bpe\", \"version\": 1)");
    if (!*vocab || (*vocab)->type != RLHF_JSON_ARRAY || (*vocab)->len < 256 || (*vocab)->len > (1u << 24) || !*merges ||
        (*merges)->type != RLHF_JSON_ARRAY || !*special || (*special)->type != RLHF_JSON_ARRAY ||
        (*special)->len != RLHF_NUM_SPECIAL_TOKENS)
        return rlhf__st_err(err, RLHF_ERR_PARSE, what,
                            "expected \"vocab\" (at least 256 strings), \"merges\" and \"special\" (%d ids)",
                            RLHF_NUM_SPECIAL_TOKENS);
    for (v = (*vocab)->child; v; v = v->next)
        if (v->type != RLHF_JSON_STRING)
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "vocab entries must be strings");
    return RLHF_OK;
}

/* A tokenizer from its JSON (rlhf__tokenizer_json's format); what names the
   source in messages. */
static rlhf_result rlhf__tokenizer_from_json(rlhf_tokenizer **out, const char *text, size_t len, const char *what,
                                             rlhf_error *err) {
    int n, k;
    rlhf_json_doc *doc = NULL;
    rlhf_json_error je;
    const rlhf_json *vocab, *merges, *special, *v;
    rlhf_tokenizer *t = NULL;
    rlhf__tokmap map = {NULL, 0, NULL};
    size_t pool = 0;
    rlhf_result r;
    int64_t x;
    if ((r = rlhf_json_parse(&doc, text, len, 4, &je)) != RLHF_OK)
        return rlhf__st_err(err, r, what, "%zu:%zu: %s", je.line, je.column, je.message);
    if ((r = rlhf__tokenizer_json_fields(rlhf_json_root(doc), &vocab, &merges, &special, what, err)) != RLHF_OK)
        goto done;

    /* the table: room for the vocab's bytes, then vocab, merges and specials */
    n = (int)vocab->len;
    for (v = vocab->child; v; v = v->next) pool += v->len;
    if (!(t = rlhf__tokenizer_alloc(n, pool, (int)merges->len))) {
        r = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, what, "out of memory");
        goto done;
    }
    if ((r = rlhf__tokenizer_json_table(t, &map, vocab, merges, what, err)) != RLHF_OK) goto done;
    for (k = 0, v = special->child; v; v = v->next, k++) {
        if (!rlhf_json_int64(v, &x) || x < 0 || x >= n) {
            r = rlhf__st_err(err, RLHF_ERR_PARSE, what, "special[%d] must be a token id in [0, %d)", k, n);
            goto done;
        }
        t->special[k] = (int)x;
    }
    v = rlhf_json_get(rlhf_json_root(doc), "template");
    if (v && (v->type != RLHF_JSON_STRING || (strcmp(v->str, "hh") != 0 && strcmp(v->str, "chat") != 0))) {
        r = rlhf__st_err(err, RLHF_ERR_PARSE, what, "\"template\" must be \"chat\" or \"hh\"");
        goto done;
    }
    if (v && strcmp(v->str, "hh") == 0) t->chat_template = RLHF_TEMPLATE_HH;
    r = rlhf__tokenizer_finish(t, what, err);
done:
    rlhf__free(map.slot);
    rlhf_json_free(doc);
    if (r != RLHF_OK) { rlhf_tokenizer_free(t); return r; }
    *out = t;
    return RLHF_OK;
}
RLHFDEF rlhf_result rlhf_tokenizer_save(const rlhf_tokenizer *t, const char *path) {
    size_t len = 0;
    char *json;
    rlhf__out o;
    rlhf_result r;
    if (!t || !path || !*path) return RLHF_ERR_INVALID_ARGUMENT;
    if (!(json = rlhf__tokenizer_json(t, &len))) return RLHF_ERR_OUT_OF_MEMORY;
    /* as a checkpoint is written: a crash or a full disk never leaves half a tokenizer */
    if ((r = rlhf__out_open(&o, path, 0)) == RLHF_OK) {
        rlhf__out_write(&o, json, len);
        r = rlhf__out_commit(&o);
    }
    rlhf__free(json);
    return r;
}
RLHFDEF rlhf_result rlhf_tokenizer_load(rlhf_tokenizer **out, const char *path, rlhf_error *err) {
    size_t len = 0;
    char *buf;
    rlhf_result r;
    if (err) err->message[0] = 0;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!path) return RLHF_ERR_INVALID_ARGUMENT;
    if (!(buf = rlhf__read_small_file(path, (size_t)256 << 20, &len)))
        return rlhf__read_err(err, path, len);
    r = rlhf__tokenizer_from_json(out, buf, len, path, err);
    rlhf__free(buf);
    return r;
}

/* ---- Hugging Face's tokenizer files (rlhf_model_export_hf) ----------------------- */

/* The chat template as the Jinja string of tokenizer_config.json's
   "chat_template", rendered by transformers with messages and
   add_generation_prompt: <|role|> content <|end|> per message, then
   <|assistant|> where a reply begins. Encoded with the markers as special
   tokens, its text is rlhf_tokenizer_chat's ids. Another role is an error
   (raise_exception is transformers' helper). Under RLHF_TEMPLATE_HH, HH-RLHF's
   plain text instead (the string tools/gen_hh_template.py renders with jinja2;
   test tokenizer_hh checks both). */
static void rlhf__hf_chat_template(rlhf__sb *b, const rlhf_tokenizer *t) {
    static const char *const roles[3] = {"system", "user", "assistant"};
    int k;
    if (t->chat_template == RLHF_TEMPLATE_HH) {
        rlhf__sb_str(b, "{% for message in messages %}{% if message['role'] == 'user' %}"
                        "{{ '\\n\\nHuman: ' + message['content'] }}{% elif message['role'] == 'assistant' %}"
                        "{{ '\\n\\nAssistant: ' + message['content'] + '<|endoftext|>' }}"
                        "{% elif message['role'] == 'system' %}{{ message['content'] }}"
                        "{% else %}{{ raise_exception('HH-RLHF template: the role must be system, user or assistant, "
                        "not ' + message['role']) }}{% endif %}{% endfor %}"
                        "{% if add_generation_prompt %}{{ '\\n\\nAssistant:' }}{% endif %}");
        return;
    }
    rlhf__sb_str(b, "{% for message in messages %}");
    for (k = 0; k < 3; k++)
        rlhf__sb_fmt(b, "{%% %s message['role'] == '%s' %%}{{ '%s' }}", k ? "elif" : "if", roles[k],
                     RLHF__SPECIAL_STR[RLHF_TOKEN_SYSTEM + k]);
    rlhf__sb_str(b, "{% else %}{{ raise_exception('rlhf.h chat template: the role must be system, user or assistant, "
                    "not ' + message['role']) }}{% endif %}");
    rlhf__sb_fmt(b, "{{ message['content'] + '%s' }}{%% endfor %%}", RLHF__SPECIAL_STR[RLHF_TOKEN_END]);
    rlhf__sb_fmt(b, "{%% if add_generation_prompt %%}{{ '%s' }}{%% endif %%}", RLHF__SPECIAL_STR[RLHF_TOKEN_ASSISTANT]);
}

/* vocab.json holds ids [0, n) and the added tokens follow as n, n+1, ...
   (transformers numbers added tokens after the vocabulary): n is past the
   last token that is not pad or a chat marker, so GPT-2's <|endoftext|>
   stays in vocab.json as in GPT-2's own files. */
static int rlhf__hf_base_vocab(const rlhf_tokenizer *t) {
    int n = t->n_vocab, k, added = 1;
    while (added && n > 0) {
        added = 0;
        for (k = 1; k < RLHF_NUM_SPECIAL_TOKENS; k++) added |= t->special[k] == n - 1;
        n -= added;
    }
    return n;
}
/* token id's bytes in GPT-2's byte-to-unicode alphabet, '"' and '\' escaped for JSON when json != 0 */
static void rlhf__sb_token(rlhf__sb *b, const rlhf_tokenizer *t, int id, const uint32_t cp_of_byte[256], int json) {
    size_t j;
    for (j = t->tok_off[id]; j < t->tok_off[id + 1]; j++) {
        unsigned char u[4];
        uint32_t cp = cp_of_byte[t->pool[j]];
        if (json && (cp == '"' || cp == '\\')) rlhf__sb_add(b, "\\", 1);
        rlhf__sb_add(b, (const char *)u, rlhf__utf8_put(u, cp));
    }
}
/* vocab.json: {token: id} for ids [0, rlhf__hf_base_vocab) */
static void rlhf__hf_vocab_json(const rlhf_tokenizer *t, rlhf__sb *b) {
    uint32_t cp_of_byte[256];
    int byte_of_cp[324], i, n = rlhf__hf_base_vocab(t);
    rlhf__gpt2_alphabet(cp_of_byte, byte_of_cp);
    rlhf__sb_str(b, "{");
    for (i = 0; i < n && !b->oom; i++) {
        rlhf__sb_str(b, i ? ",\n\"" : "\"");
        rlhf__sb_token(b, t, i, cp_of_byte, 1);
        rlhf__sb_fmt(b, "\":%d", i);
    }
    rlhf__sb_str(b, "}\n");
}
/* merges.txt: "#version: 0.2", then "A B" per merge, by rank */
static void rlhf__hf_merges_txt(const rlhf_tokenizer *t, rlhf__sb *b) {
    uint32_t cp_of_byte[256];
    int byte_of_cp[324], r;
    rlhf__gpt2_alphabet(cp_of_byte, byte_of_cp);
    rlhf__sb_str(b, "#version: 0.2\n");
    for (r = 0; r < t->n_merges && !b->oom; r++) {
        rlhf__sb_token(b, t, t->merges[r].a, cp_of_byte, 0);
        rlhf__sb_str(b, " ");
        rlhf__sb_token(b, t, t->merges[r].b, cp_of_byte, 0);
        rlhf__sb_str(b, "\n");
    }
}
/* The special tokens' roles, shared by tokenizer_config.json and special_tokens_map.json. */
static void rlhf__hf_special_roles(rlhf__sb *b) {
    int k;
    rlhf__sb_str(b, "\"additional_special_tokens\":[");
    for (k = RLHF_TOKEN_SYSTEM; k <= RLHF_TOKEN_END; k++) rlhf__sb_fmt(b, "%s\"%s\"", k > RLHF_TOKEN_SYSTEM ? "," : "",
                                                                          RLHF__SPECIAL_STR[k]);
    rlhf__sb_fmt(b, "],\n\"bos_token\":\"%s\",\n\"eos_token\":\"%s\",\n\"pad_token\":\"%s\",\n\"unk_token\":\"%s\"",
                 RLHF__SPECIAL_STR[RLHF_TOKEN_EOS], RLHF__SPECIAL_STR[RLHF_TOKEN_EOS],
                 RLHF__SPECIAL_STR[RLHF_TOKEN_PAD], RLHF__SPECIAL_STR[RLHF_TOKEN_EOS]);
}
static void rlhf__hf_special_tokens_map(rlhf__sb *b) {
    rlhf__sb_str(b, "{\n");
    rlhf__hf_special_roles(b);
    rlhf__sb_str(b, "\n}\n");
}
/* tokenizer_config.json: GPT2Tokenizer with the special tokens as added
   tokens (by id), no BOS added, no clean-up of spaces on decoding (so
   decoding gives the bytes back), and the chat template. */
static void rlhf__hf_tokenizer_config(const rlhf_tokenizer *t, int n_ctx, rlhf__sb *b) {
    int k, done, last = -1;
    rlhf__sb tmpl = {NULL, 0, 0, 0};
    rlhf__sb_str(b, "{\n\"add_bos_token\":false,\n\"add_prefix_space\":false,\n\"added_tokens_decoder\":{");
    for (done = 0; done < RLHF_NUM_SPECIAL_TOKENS; done++) { /* in id order */
        int w = -1;
        for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++)
            if (t->special[k] > last && (w < 0 || t->special[k] < t->special[w])) w = k;
        last = t->special[w];
        rlhf__sb_fmt(b, "%s\n  \"%d\":{\"content\":\"%s\",\"lstrip\":false,\"normalized\":false,\"rstrip\":false,"
                        "\"single_word\":false,\"special\":true}", done ? "," : "", last, RLHF__SPECIAL_STR[w]);
    }
    rlhf__sb_str(b, "\n},\n");
    rlhf__hf_special_roles(b);
    rlhf__hf_chat_template(&tmpl, t);
    rlhf__sb_str(b, ",\n\"chat_template\":");
    if (tmpl.oom) b->oom = 1;
    else rlhf__sb_json(b, tmpl.p);
    rlhf__free(tmpl.p);
    rlhf__sb_fmt(b, ",\n\"clean_up_tokenization_spaces\":false,\n\"errors\":\"replace\",\n\"model_max_length\":%d,\n"
                    "\"tokenizer_class\":\"GPT2Tokenizer\"\n}\n", n_ctx);
}

/* ---- Hugging Face's tokenizer files ----------------------------------------------
   GPT-2's tokenizer as Hugging Face saves it: vocab.json (OpenAI's
   encoder.json under another name) + merges.txt (vocab.bpe), with added
   tokens in tokenizer_config.json ("added_tokens_decoder") or
   added_tokens.json; or one tokenizer.json (the tokenizers library: model
   BPE, pre-tokenizer ByteLevel, merges as "a b" strings or [a, b] pairs,
   "added_tokens" with their ids). Ids stay the files' ids; rlhf's markers the
   files lack are appended after them, as rlhf_tokenizer_load_gpt2 does. */
typedef struct rlhf__hf_added { int64_t id; const char *content; size_t len; } rlhf__hf_added;
typedef struct rlhf__hf_tok {
    rlhf__hf_added *add; /* the added tokens, from any of the files (deduplicated) */
    int n_add, cap_add;
    const char *what;    /* the file named in messages */
    rlhf_error *err;
} rlhf__hf_tok;

/* One added token (id, content); the same pair twice is one token, a clash is an error. */
static rlhf_result rlhf__hf_add(rlhf__hf_tok *h, int64_t id, const char *content, size_t len, const char *src) {
    int i;
    for (i = 0; i < h->n_add; i++) {
        const rlhf__hf_added *a = &h->add[i];
        int same_text = a->len == len && memcmp(a->content, content, len) == 0;
        if (a->id == id && same_text) return RLHF_OK;
        if (a->id == id || same_text)
            return rlhf__st_err(h->err, RLHF_ERR_PARSE, src,
                                "added token \"%s\" (id %lld) clashes with \"%s\" (id %lld)", content,
                                (long long)id, a->content, (long long)a->id);
    }
    if (id < 0 || id >= (1 << 24))
        return rlhf__st_err(h->err, RLHF_ERR_PARSE, src, "added token \"%s\": id %lld is outside [0, 2^24)", content,
                            (long long)id);
    if (h->n_add == h->cap_add) {
        int cap = h->cap_add ? 2 * h->cap_add : 16;
        rlhf__hf_added *na = (rlhf__hf_added *)rlhf__alloc((size_t)cap * sizeof *na);
        if (!na) return rlhf__st_err(h->err, RLHF_ERR_OUT_OF_MEMORY, src, "out of memory");
        if (h->n_add) memcpy(na, h->add, (size_t)h->n_add * sizeof *na);
        rlhf__free(h->add);
        h->add = na;
        h->cap_add = cap;
    }
    h->add[h->n_add].id = id;
    h->add[h->n_add].content = content;
    h->add[h->n_add].len = len;
    h->n_add++;
    return RLHF_OK;
}
/* Added tokens from a JSON value: tokenizer.json's "added_tokens" ([{"id", "content"}]),
   tokenizer_config.json's "added_tokens_decoder" ({"id": {"content"}}) or added_tokens.json ({"content": id}). */
static rlhf_result rlhf__hf_added_from(rlhf__hf_tok *h, const rlhf_json *v, const char *src) {
    const rlhf_json *e;
    rlhf_result r;
    for (e = v ? v->child : NULL; e; e = e->next) {
        const rlhf_json *c = NULL;
        int64_t id = -1;
        if (v->type == RLHF_JSON_ARRAY) { /* [{"id": n, "content": s}] */
            c = rlhf_json_get(e, "content");
            if (!rlhf_json_int64(rlhf_json_get(e, "id"), &id)) id = -1;
        } else if (e->type == RLHF_JSON_OBJECT) { /* {"n": {"content": s}} */
            char *endp;
            long x = strtol(e->key, &endp, 10);
            c = rlhf_json_get(e, "content");
            id = *e->key && !*endp ? x : -1;
        } else if (!rlhf_json_int64(e, &id)) /* {"s": n} */
            id = -1;
        if ((v->type == RLHF_JSON_ARRAY || e->type == RLHF_JSON_OBJECT) && (!c || c->type != RLHF_JSON_STRING)) id = -1;
        if (id < 0 || (c ? c->len : e->key_len) == 0)
            return rlhf__st_err(h->err, RLHF_ERR_PARSE, src, "added token at byte %zu needs an integer id and a "
                                "non-empty content string", e->offset);
        if ((r = rlhf__hf_add(h, id, c ? c->str : e->key, c ? c->len : e->key_len, src)) != RLHF_OK) return r;
    }
    return RLHF_OK;
}
static int rlhf__cmp_added(const void *a, const void *b) {
    int64_t x = ((const rlhf__hf_added *)a)->id, y = ((const rlhf__hf_added *)b)->id;
    return x < y ? -1 : x > y;
}
/* the id of the added token whose content is s, else of the vocabulary's
   token s (s is printable ASCII: its own byte-alphabet string), or -1 */
static int rlhf__hf_added_id(const rlhf__hf_tok *h, const rlhf_json *vocab, const char *s) {
    int64_t id;
    int i;
    for (i = 0; i < h->n_add; i++)
        if (h->add[i].len == strlen(s) && memcmp(h->add[i].content, s, h->add[i].len) == 0) return (int)h->add[i].id;
    return rlhf_json_int64(rlhf_json_get(vocab, s), &id) && id >= 0 && id < (int64_t)vocab->len ? (int)id : -1;
}

/* The table: vocab (token string in GPT-2's byte alphabet -> id, ids 0..n-1),
   then the added tokens past n (their ids must follow n without a gap; one
   below n must be the vocabulary's token of the same bytes), then rlhf's
   markers the files lack. <|endoftext|> is the EOS. */
static rlhf_result rlhf__hf_vocab(rlhf_tokenizer **out, rlhf__hf_tok *h, const rlhf_json *vocab,
                                  const int byte_of_cp[324]) {
    int n, k, i, n_extra = 0, missing = 0, have_eos = 0, next;
    size_t pool = 0, off = 0;
    const rlhf_json *v;
    rlhf_tokenizer *t;
    rlhf_result r;
    if (!vocab || vocab->type != RLHF_JSON_OBJECT || vocab->len < 256 || vocab->len > (1u << 24))
        return rlhf__st_err(h->err, RLHF_ERR_PARSE, h->what, "the vocabulary must be an object of 256 to 2^24 tokens");
    n = (int)vocab->len;
    if (h->n_add > 1) qsort(h->add, (size_t)h->n_add, sizeof *h->add, rlhf__cmp_added);
    for (i = 0; i < h->n_add; i++) {
        if (h->add[i].id >= n && h->add[i].id != n + n_extra++)
            return rlhf__st_err(h->err, RLHF_ERR_PARSE, h->what, "added token \"%s\" has id %lld, expected %d (ids "
                                "must follow the vocabulary without a gap)", h->add[i].content,
                                (long long)h->add[i].id, n + n_extra - 1);
        pool += h->add[i].len;
    }
    for (k = 1; k < RLHF_NUM_SPECIAL_TOKENS; k++) missing += rlhf__hf_added_id(h, vocab, RLHF__SPECIAL_STR[k]) < 0;
    for (v = vocab->child; v; v = v->next) pool += v->key_len;
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) pool += strlen(RLHF__SPECIAL_STR[k]);
    if (!(t = rlhf__tokenizer_alloc(n + n_extra + missing, pool, 0)))
        return rlhf__st_err(h->err, RLHF_ERR_OUT_OF_MEMORY, h->what, "out of memory");

    /* the vocabulary; added tokens below n must agree with it */
    if ((r = rlhf__gpt2_token_bytes(t, vocab, byte_of_cp, &off, &have_eos, h->what, h->err)) != RLHF_OK) goto fail;
    for (i = 0; i < h->n_add && h->add[i].id < n; i++) {
        int id = (int)h->add[i].id;
        size_t len = t->tok_off[id + 1] - t->tok_off[id];
        if (len != h->add[i].len || memcmp(t->pool + t->tok_off[id], h->add[i].content, len) != 0) {
            r = rlhf__st_err(h->err, RLHF_ERR_PARSE, h->what,
                             "added token \"%s\" has id %d, which the vocabulary gives to another token",
                             h->add[i].content, id);
            goto fail;
        }
    }

    /* the added tokens past n (their text is their bytes), then the missing markers */
    for (next = n; i < h->n_add; i++, next++) {
        memcpy(t->pool + off, h->add[i].content, h->add[i].len);
        off += h->add[i].len;
        t->tok_off[next + 1] = (uint32_t)off;
    }
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++) {
        int id = rlhf__hf_added_id(h, vocab, RLHF__SPECIAL_STR[k]);
        if (k == RLHF_TOKEN_EOS) {
            if (id >= 0) t->special[k] = id;
            else if (!have_eos) {
                r = rlhf__st_err(h->err, RLHF_ERR_PARSE, h->what, "no <|endoftext|> token (GPT-2's EOS)");
                goto fail;
            }
            continue;
        }
        if (id < 0) {
            size_t sl = strlen(RLHF__SPECIAL_STR[k]);
            memcpy(t->pool + off, RLHF__SPECIAL_STR[k], sl);
            off += sl;
            id = next++;
            t->tok_off[id + 1] = (uint32_t)off;
        }
        t->special[k] = id;
    }
    t->n_vocab = next;
    *out = t;
    return RLHF_OK;
fail:
    rlhf_tokenizer_free(t);
    return r;
}

/* tokenizer.json's merges, by rank: "a b" strings or [a, b] pairs, each a, b
   and ab a token of map */
static rlhf_result rlhf__hf_json_merges(rlhf_tokenizer *t, const rlhf__tokmap *map, const rlhf_json *merges,
                                        const int byte_of_cp[324], const char *what, rlhf_error *err) {
    const rlhf_json *v;
    size_t most = 0, w;
    unsigned char *buf;
    int i;
    for (v = merges->child; v; v = v->next) /* room for the longest merge's bytes */
        if (v->type == RLHF_JSON_STRING) most = v->len > most ? v->len : most;
        else if (v->type == RLHF_JSON_ARRAY && v->len == 2 && v->child->type == RLHF_JSON_STRING &&
                 v->child->next->type == RLHF_JSON_STRING)
            most = v->child->len + v->child->next->len > most ? v->child->len + v->child->next->len : most;
    rlhf__free(t->merges);
    t->merges = (rlhf__merge *)rlhf__alloc((merges->len + 1) * sizeof(rlhf__merge));
    buf = (unsigned char *)rlhf__alloc(most + 1);
    if (!t->merges || !buf) {
        rlhf__free(buf);
        return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, what, "out of memory");
    }
    for (i = 0, v = merges->child; v; v = v->next, i++) {
        const char *a, *b;
        size_t la, lb;
        long ba, bb = -1;
        int ia, ib, ic;
        if (v->type == RLHF_JSON_STRING && (b = (const char *)memchr(v->str, ' ', v->len)) != NULL &&
            !memchr(b + 1, ' ', v->len - (size_t)(b + 1 - v->str))) {
            a = v->str, la = (size_t)(b - v->str), b++, lb = v->len - la - 1;
        } else if (v->type == RLHF_JSON_ARRAY && v->len == 2 && v->child->type == RLHF_JSON_STRING &&
                   v->child->next->type == RLHF_JSON_STRING) {
            a = v->child->str, la = v->child->len, b = v->child->next->str, lb = v->child->next->len;
        } else {
            rlhf__free(buf);
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "merges[%d] must be \"a b\" or [\"a\", \"b\"]", i);
        }
        ba = la && lb ? rlhf__from_alphabet(a, la, byte_of_cp, buf) : -1;
        if (ba >= 0) bb = rlhf__from_alphabet(b, lb, byte_of_cp, buf + ba);
        ia = ba > 0 ? rlhf__tokmap_find(map, buf, (size_t)ba, &w) : -1;
        ib = bb > 0 ? rlhf__tokmap_find(map, buf + ba, (size_t)bb, &w) : -1;
        ic = ia >= 0 && ib >= 0 ? rlhf__tokmap_find(map, buf, (size_t)(ba + bb), &w) : -1;
        if (ic < 0) {
            rlhf__free(buf);
            return rlhf__st_err(err, RLHF_ERR_PARSE, what, "merges[%d] (\"%.*s\" + \"%.*s\") %s", i, (int)la, a,
                                (int)lb, b, bb < 0 ? "is empty or has a character outside GPT-2's byte alphabet"
                                                    : "names a token not in the vocabulary");
        }
        t->merges[i].a = ia, t->merges[i].b = ib, t->merges[i].c = ic;
    }
    t->n_merges = (int)merges->len;
    rlhf__free(buf);
    return RLHF_OK;
}

/* The table (bytes, ids, specials) indexed, its merges read (merges.txt text,
   or tokenizer.json's list), all checked. A special token must never be what
   a merge makes: ordinary text would then encode into it. */
static rlhf_result rlhf__hf_merges_finish(rlhf_tokenizer *t, const char *txt, size_t txt_len, const rlhf_json *list,
                                          const int byte_of_cp[324], const char *vocab_what, const char *merges_what,
                                          rlhf_error *err) {
    rlhf__tokmap map = {NULL, 0, NULL};
    int k, dup = -1, i;
    rlhf_result r;
    if ((k = rlhf__tokmap_build(&map, t, t->n_vocab, &dup)) != -1) {
        rlhf__free(map.slot);
        return k == -2 ? rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, vocab_what, "out of memory")
                       : rlhf__st_err(err, RLHF_ERR_PARSE, vocab_what, "token %d has the same bytes as token %d", k,
                                      dup);
    }
    r = list ? rlhf__hf_json_merges(t, &map, list, byte_of_cp, merges_what, err)
             : rlhf__gpt2_merges(t, &map, txt, txt_len, byte_of_cp, vocab_what, merges_what, err);
    rlhf__free(map.slot);
    if (r != RLHF_OK || (r = rlhf__tokenizer_finish(t, merges_what, err)) != RLHF_OK) return r;
    for (i = 0; i < t->n_merges; i++)
        for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++)
            if (t->merges[i].c == t->special[k])
                return rlhf__st_err(err, RLHF_ERR_PARSE, merges_what, "merge %d makes the special token %s (id %d)",
                                    i, RLHF__SPECIAL_STR[k], t->special[k]);
    return RLHF_OK;
}

/* A JSON file into *doc (at most 256 MiB). optional: a file that cannot be
   opened leaves *doc NULL and is no error. */
static rlhf_result rlhf__json_file(rlhf_json_doc **doc, const char *path, int optional, rlhf_error *err) {
    size_t len = 0;
    char *buf;
    rlhf_json_error je;
    rlhf_result r;
    *doc = NULL;
    if (optional && !rlhf__can_open(path)) return RLHF_OK;
    if (!(buf = rlhf__read_small_file(path, (size_t)256 << 20, &len)))
        return rlhf__read_err(err, path, len);
    if ((r = rlhf_json_parse(doc, buf, len, 16, &je)) != RLHF_OK)
        r = rlhf__st_err(err, r, path, "%zu:%zu: %s", je.line, je.column, je.message);
    rlhf__free(buf);
    return r;
}

/* vocab.json + merges.txt, with the added tokens of tokenizer_config.json and
   added_tokens.json beside vocab.json when they are there */
static rlhf_result rlhf__hf_load_vocab_merges(rlhf_tokenizer **out, const char *vocab_path, const char *merges_path,
                                              rlhf_error *err) {
    int byte_of_cp[324];
    uint32_t cp_of_byte[256];
    char *cfg_path = rlhf__path_join(vocab_path, "tokenizer_config.json", 1);
    char *add_path = rlhf__path_join(vocab_path, "added_tokens.json", 1), *mbuf = NULL;
    rlhf_json_doc *vdoc = NULL, *cdoc = NULL, *adoc = NULL;
    rlhf__hf_tok h;
    rlhf_tokenizer *t = NULL;
    size_t mlen = 0;
    rlhf_result r;
    memset(&h, 0, sizeof h);
    h.what = vocab_path, h.err = err;
    rlhf__gpt2_alphabet(cp_of_byte, byte_of_cp);
    if (!cfg_path || !add_path) r = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, vocab_path, "out of memory");
    else if ((r = rlhf__json_file(&vdoc, vocab_path, 0, err)) == RLHF_OK &&
             (r = rlhf__json_file(&cdoc, cfg_path, 1, err)) == RLHF_OK &&
             (r = rlhf__json_file(&adoc, add_path, 1, err)) == RLHF_OK) {
        const rlhf_json *dec = cdoc ? rlhf_json_get(rlhf_json_root(cdoc), "added_tokens_decoder") : NULL;
        if (dec && dec->type != RLHF_JSON_OBJECT)
            r = rlhf__st_err(err, RLHF_ERR_PARSE, cfg_path, "\"added_tokens_decoder\" must be an object");
        else if (adoc && rlhf_json_root(adoc)->type != RLHF_JSON_OBJECT)
            r = rlhf__st_err(err, RLHF_ERR_PARSE, add_path, "expected an object mapping token strings to ids");
        else if ((r = rlhf__hf_added_from(&h, dec, cfg_path)) == RLHF_OK &&
                 (r = rlhf__hf_added_from(&h, adoc ? rlhf_json_root(adoc) : NULL, add_path)) == RLHF_OK &&
                 (r = rlhf__hf_vocab(&t, &h, rlhf_json_root(vdoc), byte_of_cp)) == RLHF_OK) {
            if (!(mbuf = rlhf__read_small_file(merges_path, (size_t)256 << 20, &mlen)))
                r = rlhf__read_err(err, merges_path, mlen);
            else
                r = rlhf__hf_merges_finish(t, mbuf, mlen, NULL, byte_of_cp, vocab_path, merges_path, err);
        }
    }
    rlhf__free(cfg_path), rlhf__free(add_path), rlhf__free(mbuf), rlhf__free(h.add);
    rlhf_json_free(vdoc), rlhf_json_free(cdoc), rlhf_json_free(adoc);
    if (r != RLHF_OK) { rlhf_tokenizer_free(t); return r; }
    *out = t;
    return RLHF_OK;
}

/* tokenizer.json's parts, refused with what was found when they are not
   GPT-2's byte-level BPE: no normalizer, the ByteLevel pre-tokenizer (no
   prefix space, GPT-2's split pattern), a BPE model without dropout,
   subword affixes, byte fallback or ignore_merges. */
static rlhf_result rlhf__hf_check_tokenizer_json(const rlhf_json *root, const char *what, rlhf_error *err) {
    const rlhf_json *model = rlhf_json_get(root, "model"), *pre = rlhf_json_get(root, "pre_tokenizer"), *v;
    const rlhf_json *norm = rlhf_json_get(root, "normalizer");
    const char *found;
    if (root->type != RLHF_JSON_OBJECT || !model || model->type != RLHF_JSON_OBJECT)
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "not a Hugging Face tokenizer.json (no \"model\" object)%s",
                            rlhf_json_get(root, "type") ? "; an rlhf tokenizer loads with rlhf_tokenizer_load" : "");
    if ((v = rlhf_json_get(model, "type")) && !(v->type == RLHF_JSON_STRING && strcmp(v->str, "BPE") == 0))
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "the model is %s, not BPE: rlhf.h reads GPT-2-style byte-level "
                            "BPE only", v->type == RLHF_JSON_STRING ? v->str : "of no named type");
    if (norm && norm->type != RLHF_JSON_NULL)
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "a normalizer (%s) is set; GPT-2's byte-level BPE has none",
                            (v = rlhf_json_get(norm, "type")) && v->type == RLHF_JSON_STRING ? v->str : "?");
    found = !pre || pre->type != RLHF_JSON_OBJECT ? "none"
            : (v = rlhf_json_get(pre, "type")) && v->type == RLHF_JSON_STRING ? v->str : "?";
    if (strcmp(found, "ByteLevel") != 0)
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "the pre-tokenizer is %s, not ByteLevel: rlhf.h reads "
                            "GPT-2-style byte-level BPE only", found);
    if (!((v = rlhf_json_get(pre, "add_prefix_space")) && v->type == RLHF_JSON_FALSE))
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "the ByteLevel pre-tokenizer adds a prefix space (%s); "
                            "GPT-2's does not", v ? "add_prefix_space true" : "the default when the field is absent");
    if ((v = rlhf_json_get(pre, "use_regex")) && v->type == RLHF_JSON_FALSE)
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "the ByteLevel pre-tokenizer does not split (use_regex false)");
    if (((v = rlhf_json_get(model, "dropout")) && v->type != RLHF_JSON_NULL && !(v->type == RLHF_JSON_NUMBER &&
                                                                                   v->number == 0)) ||
        ((v = rlhf_json_get(model, "continuing_subword_prefix")) && v->type != RLHF_JSON_NULL && v->len) ||
        ((v = rlhf_json_get(model, "end_of_word_suffix")) && v->type != RLHF_JSON_NULL && v->len) ||
        ((v = rlhf_json_get(model, "byte_fallback")) && v->type == RLHF_JSON_TRUE) ||
        ((v = rlhf_json_get(model, "ignore_merges")) && v->type == RLHF_JSON_TRUE))
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "the BPE model sets \"%s\", which GPT-2's does not", v->key);
    v = rlhf_json_get(model, "merges");
    if (!v || v->type != RLHF_JSON_ARRAY)
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "the BPE model has no \"merges\" list");
    if ((v = rlhf_json_get(root, "added_tokens")) && v->type != RLHF_JSON_ARRAY)
        return rlhf__st_err(err, RLHF_ERR_PARSE, what, "\"added_tokens\" must be a list");
    return RLHF_OK;
}
/* one tokenizer.json */
static rlhf_result rlhf__hf_load_tokenizer_json(rlhf_tokenizer **out, const char *path, rlhf_error *err) {
    int byte_of_cp[324];
    uint32_t cp_of_byte[256];
    rlhf_json_doc *doc = NULL;
    rlhf__hf_tok h;
    rlhf_tokenizer *t = NULL;
    const rlhf_json *root, *model;
    rlhf_result r;
    memset(&h, 0, sizeof h);
    h.what = path, h.err = err;
    rlhf__gpt2_alphabet(cp_of_byte, byte_of_cp);
    if ((r = rlhf__json_file(&doc, path, 0, err)) == RLHF_OK &&
        (r = rlhf__hf_check_tokenizer_json((root = rlhf_json_root(doc)), path, err)) == RLHF_OK) {
        model = rlhf_json_get(root, "model");
        if ((r = rlhf__hf_added_from(&h, rlhf_json_get(root, "added_tokens"), path)) == RLHF_OK &&
            (r = rlhf__hf_vocab(&t, &h, rlhf_json_get(model, "vocab"), byte_of_cp)) == RLHF_OK)
            r = rlhf__hf_merges_finish(t, NULL, 0, rlhf_json_get(model, "merges"), byte_of_cp, path, path, err);
    }
    rlhf__free(h.add);
    rlhf_json_free(doc);
    if (r != RLHF_OK) { rlhf_tokenizer_free(t); return r; }
    *out = t;
    return RLHF_OK;
}

/* The pair of files of one form (vocab and merges), either one given: the other is beside it. */
static rlhf_result rlhf__hf_load_pair(rlhf_tokenizer **out, const char *path, const char *vocab_name,
                                      const char *merges_name, int given_is_vocab, int openai, rlhf_error *err) {
    char *other = rlhf__path_join(path, given_is_vocab ? merges_name : vocab_name, 1);
    const char *vp = given_is_vocab ? path : other, *mp = given_is_vocab ? other : path;
    rlhf_result r;
    if (!other) return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory");
    if (!rlhf__can_open(other))
        r = rlhf__st_err(err, RLHF_ERR_IO, path, "its partner %s cannot be read (%s and %s belong together)", other,
                         vocab_name, merges_name);
    else
        r = openai ? rlhf_tokenizer_load_gpt2_ex(out, vp, mp, err) : rlhf__hf_load_vocab_merges(out, vp, mp, err);
    rlhf__free(other);
    return r;
}

RLHFDEF rlhf_result rlhf_tokenizer_load_hf(rlhf_tokenizer **out, const char *path, rlhf_error *err) {
    static const char *const names[4] = {"vocab.json", "merges.txt", "encoder.json", "vocab.bpe"};
    const char *base;
    char *p[3] = {NULL, NULL, NULL};
    size_t len = 0;
    char *probe;
    int k;
    rlhf_result r;
    if (err) err->message[0] = 0;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!path || !*path) return RLHF_ERR_INVALID_ARGUMENT;

    /* a file of a pair, by its name */
    base = rlhf__base_name(path);
    for (k = 0; k < 4; k++)
        if (strcmp(base, names[k]) == 0)
            return rlhf__hf_load_pair(out, path, names[k & 2], names[(k & 2) + 1], (k & 1) == 0, k >= 2, err);

    /* a directory: tokenizer.json first (what Hugging Face's fast tokenizer reads), then the pairs */
    p[0] = rlhf__path_join(path, "tokenizer.json", 0);
    p[1] = rlhf__path_join(path, "vocab.json", 0);
    p[2] = rlhf__path_join(path, "encoder.json", 0);
    if (!p[0] || !p[1] || !p[2]) r = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory");
    else if (rlhf__can_open(p[0])) r = rlhf__hf_load_tokenizer_json(out, p[0], err);
    else if (rlhf__can_open(p[1])) r = rlhf__hf_load_pair(out, p[1], names[0], names[1], 1, 0, err);
    else if (rlhf__can_open(p[2])) r = rlhf__hf_load_pair(out, p[2], names[2], names[3], 1, 1, err);
    else if ((probe = rlhf__read_small_file(path, (size_t)256 << 20, &len)) != NULL) { /* a tokenizer.json renamed */
        rlhf__free(probe);
        r = rlhf__hf_load_tokenizer_json(out, path, err);
    } else if (len == (size_t)-1)
        r = rlhf__read_err(err, path, len);
    else
        r = rlhf__st_err(err, RLHF_ERR_IO, path, rlhf__can_open(path)
                         ? "no tokenizer here (expected tokenizer.json, vocab.json + merges.txt or encoder.json + "
                           "vocab.bpe in the directory)"
                         : "cannot be read");
    for (k = 0; k < 3; k++) rlhf__free(p[k]);
    return r;
}

// ----------------------------------------------------------------------------
// >>model  GPT-2 as Hugging Face's GPT2LMHeadModel computes it: learned token
//          and position embeddings, L pre-LN blocks (attention, MLP 4C with
//          GELU), final LayerNorm, LM head tied to wte. No dropout.
// ----------------------------------------------------------------------------

RLHFDEF rlhf_config rlhf_config_default(void) {
    rlhf_config c;
    c.vocab_size = 512;
    c.n_ctx = 128;
    c.n_layer = 4;
    c.n_head = 4;
    c.n_embd = 128;
    return c;
}
RLHFDEF rlhf_config rlhf_config_gpt2_124m(void) {
    rlhf_config c;
    c.vocab_size = 50257;
    c.n_ctx = 1024;
    c.n_layer = 12;
    c.n_head = 12;
    c.n_embd = 768;
    return c;
}
RLHFDEF rlhf_adamw_config rlhf_adamw_config_default(void) {
    rlhf_adamw_config o;
    o.lr = 3e-4f;
    o.beta1 = 0.9f;
    o.beta2 = 0.95f;
    o.eps = 1e-8f;
    o.weight_decay = 0.1f;
    o.grad_clip = 1.0f;
    return o;
}

/* Parameters (and gradients, with the same layout): one allocation, a struct
   of named pointers into it, each kind stacked over the L layers (llm.c's
   layout), so AdamW is one flat loop and layer l's weights are w + l*size. */
#define RLHF__NUM_KINDS 18
typedef struct rlhf__params {
    float *wte;      /* (V, C)      token embedding, also the LM head */
    float *wpe;      /* (n_ctx, C)  position embedding */
    float *ln1w;     /* (L, C) */
    float *ln1b;     /* (L, C) */
    float *qkvw;     /* (L, C, 3C)  attn.c_attn.weight */
    float *qkvb;     /* (L, 3C) */
    float *attprojw; /* (L, C, C)   attn.c_proj.weight */
    float *attprojb; /* (L, C) */
    float *ln2w;     /* (L, C) */
    float *ln2b;     /* (L, C) */
    float *fcw;      /* (L, C, 4C)  mlp.c_fc.weight */
    float *fcb;      /* (L, 4C) */
    float *fcprojw;  /* (L, 4C, C)  mlp.c_proj.weight */
    float *fcprojb;  /* (L, C) */
    float *lnfw;     /* (C) */
    float *lnfb;     /* (C) */
    float *scorew;   /* (C)         score.weight [1, C]: the scalar head (empty without one) */
    float *scoreb;   /* (1)         score.bias */
} rlhf__params;

/* Forward caches, each for the reserved (B,T). */
#define RLHF__NUM_ACTS 20
typedef struct rlhf__acts {
    float *encoded;   /* (B,T,C)     wte[x] + wpe[t] */
    float *ln1;       /* (L,B,T,C) */
    float *ln1_mean;  /* (L,B,T) */
    float *ln1_rstd;  /* (L,B,T) */
    float *qkv;       /* (L,B,T,3C) */
    float *atty;      /* (L,B,T,C)   attention output before c_proj */
    float *att;       /* (L,B,NH,T,T) attention probabilities */
    float *residual2; /* (L,B,T,C)   after the attention block */
    float *ln2;       /* (L,B,T,C) */
    float *ln2_mean;  /* (L,B,T) */
    float *ln2_rstd;  /* (L,B,T) */
    float *fch;       /* (L,B,T,4C)  MLP hidden before GELU */
    float *fch_gelu;  /* (L,B,T,4C) */
    float *residual3; /* (L,B,T,C)   after the MLP block: the next layer's input */
    float *lnf;       /* (B,T,C) */
    float *lnf_mean;  /* (B,T) */
    float *lnf_rstd;  /* (B,T) */
    float *logits;    /* (B,T,V)     becomes dlogits in the backward */
    float *lse;       /* (B,T)       log-sum-exp of each logits row */
    float *losses;    /* (B,T) */
} rlhf__acts;

/* Backward scratch, reused by every layer. */
#define RLHF__NUM_BWD 6
typedef struct rlhf__bwd {
    float *dresidual; /* (B,T,C)  gradient flowing along the residual stream */
    float *dln;       /* (B,T,C)  gradient at a LayerNorm output */
    float *datty;     /* (B,T,C) */
    float *dqkv;      /* (B,T,3C) */
    float *dfch;      /* (B,T,4C) */
    float *datt;      /* (B,NH,RLHF__ATT_QB,T) a block of rows of attention-probability gradients */
} rlhf__bwd;

typedef struct rlhf__tensor {
    char name[48];
    int ndim, shape[2], decay;
    size_t offset, numel; /* in floats, into the parameter block */
} rlhf__tensor;

struct rlhf_model {
    rlhf_config cfg;
    size_t kind_size[RLHF__NUM_KINDS]; /* floats per kind (all layers) */
    size_t num_params;
    float *param_mem, *grad_mem, *m_mem, *v_mem; /* grads and AdamW moments: NULL until training */
    rlhf__params params, grads;
    long adam_steps;
    rlhf__tensor *tensors;
    int n_tensors;
    /* activations, sized for cap_bt = B*T and cap_btt = B*T*T */
    float *act_mem, *bwd_mem;
    size_t cap_bt, cap_btt, bwd_cap_bt, bwd_cap_btt;
    rlhf__acts acts;
    rlhf__bwd bwd;
    int recompute; /* activation recompute: acts hold one layer's caches (slot 0) and every residual3 */
    int *tok_mem; /* inputs, targets, document starts of the last forward: (3, cap_bt) */
    int has_score; /* a scalar head (score.weight, score.bias) follows ln_f */
    int has_doc;   /* the last training forward had document starts */
    float *inf_mem; /* inference scratch (forward without targets), one layer's worth, for inf_cap_bt rows */
    size_t inf_cap_bt;
    int B, T, backward_ready; /* backward_ready: 0 none, 1 LM loss, 2 scalar values */
    float dloss;  /* 1 / number of targets != -1 */
    float temperature; /* of the last rlhf_model_logprobs */
    float *work;  /* matmul packing, rlhf__gemm_work_alloc */
    rlhf_log_fn log;
    void *log_user;
    char err[256];
    char **meta;  /* metadata: key0, value0, key1, value1, ... (n_meta pairs) */
    int n_meta, cap_meta;
};

/* Record a failure on m (message for rlhf_model_last_error and the log). */
static rlhf_result rlhf__fail(rlhf_model *m, rlhf_result r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    if (m->log) m->log(m->log_user, RLHF_LOG_ERROR, m->err);
    return r;
}

static int rlhf__config_ok(const rlhf_config *c) {
    double C = c->n_embd, params;
    if (!(c->vocab_size > 0 && c->n_ctx > 0 && c->n_layer > 0 && c->n_head > 0 && c->n_embd > 0 &&
          c->n_embd % c->n_head == 0))
        return 0;
    /* the parameter count, in double: every size_t product of the layout
       below is smaller, so none can wrap (on 32-bit hosts too) */
    params = ((double)c->vocab_size + c->n_ctx) * C + (double)c->n_layer * (12.0 * C * C + 13.0 * C) + 2.0 * C;
    return params * 4.0 * 4.0 < (double)(size_t)-1 && params < 1e12;
}

static void rlhf__kind_sizes(const rlhf_config *c, int has_score, size_t s[RLHF__NUM_KINDS]) {
    size_t V = (size_t)c->vocab_size, C = (size_t)c->n_embd, L = (size_t)c->n_layer, P = (size_t)c->n_ctx;
    s[0] = V * C;          s[1] = P * C;
    s[2] = L * C;          s[3] = L * C;
    s[4] = L * C * 3 * C;  s[5] = L * 3 * C;
    s[6] = L * C * C;      s[7] = L * C;
    s[8] = L * C;          s[9] = L * C;
    s[10] = L * C * 4 * C; s[11] = L * 4 * C;
    s[12] = L * 4 * C * C; s[13] = L * C;
    s[14] = C;             s[15] = C;
    s[16] = has_score ? C : 0; s[17] = has_score ? 1 : 0;
}
static void rlhf__point_params(rlhf__params *p, float *base, const size_t s[RLHF__NUM_KINDS]) {
    float **ptr[RLHF__NUM_KINDS];
    int i;
    ptr[0] = &p->wte;  ptr[1] = &p->wpe;  ptr[2] = &p->ln1w; ptr[3] = &p->ln1b;
    ptr[4] = &p->qkvw; ptr[5] = &p->qkvb; ptr[6] = &p->attprojw; ptr[7] = &p->attprojb;
    ptr[8] = &p->ln2w; ptr[9] = &p->ln2b; ptr[10] = &p->fcw; ptr[11] = &p->fcb;
    ptr[12] = &p->fcprojw; ptr[13] = &p->fcprojb; ptr[14] = &p->lnfw; ptr[15] = &p->lnfb;
    ptr[16] = &p->scorew; ptr[17] = &p->scoreb;
    for (i = 0; i < RLHF__NUM_KINDS; i++) {
        *ptr[i] = base;
        base += s[i];
    }
}

/* Floats of each forward cache (training == 0) or backward buffer for (B,T).
   With recompute, the per-layer caches hold one layer (LC = 1): only
   residual3, each layer's output and so the next one's input, keeps all L. */
static void rlhf__act_sizes(const rlhf_config *c, size_t BT, size_t BTT, int recompute, size_t s[RLHF__NUM_ACTS]) {
    size_t C = (size_t)c->n_embd, L = (size_t)c->n_layer, NH = (size_t)c->n_head, V = (size_t)c->vocab_size;
    size_t LC = recompute ? 1 : L;
    s[0] = BT * C;      s[1] = LC * BT * C;     s[2] = LC * BT;      s[3] = LC * BT;
    s[4] = LC * BT * 3 * C; s[5] = LC * BT * C; s[6] = LC * NH * BTT; s[7] = LC * BT * C;
    s[8] = LC * BT * C; s[9] = LC * BT;         s[10] = LC * BT;     s[11] = LC * BT * 4 * C;
    s[12] = LC * BT * 4 * C; s[13] = L * BT * C; s[14] = BT * C;     s[15] = BT;
    s[16] = BT;         s[17] = BT * V;         s[18] = BT;          s[19] = BT;
}
static void rlhf__bwd_sizes(const rlhf_config *c, size_t BT, size_t BTT, size_t s[RLHF__NUM_BWD]) {
    size_t C = (size_t)c->n_embd, NH = (size_t)c->n_head;
    (void)BTT;
    s[0] = BT * C; s[1] = BT * C; s[2] = BT * C; s[3] = BT * 3 * C; s[4] = BT * 4 * C;
    s[5] = NH * BT * RLHF__ATT_QB; /* (B, NH, RLHF__ATT_QB, T) */
}
static size_t rlhf__sum_sizes(const size_t *s, int n) {
    size_t t = 0;
    int i;
    for (i = 0; i < n; i++) t += s[i];
    return t;
}
/* 1 if the (B,T) activation memory of config c stays below 2^47 bytes (so no
   size_t product above can wrap on a 64-bit host) and fits size_t. */
static int rlhf__shape_fits(const rlhf_config *c, double BT, double BTT) {
    double C = c->n_embd, L = c->n_layer, NH = c->n_head, V = c->vocab_size;
    /* rlhf__act_sizes + rlhf__bwd_sizes per row, then the attention caches */
    double floats = BT * (2 * C + L * (16 * C + 4) + V + 4) + BT * (12 * C + NH * RLHF__ATT_QB) + L * NH * BTT;
    return floats * 4.0 < 140737488355328.0 && floats * 4.0 < (double)(size_t)-1 && BT * NH < 2147483647.0;
}

RLHFDEF size_t rlhf_config_num_params(const rlhf_config *cfg) {
    size_t s[RLHF__NUM_KINDS];
    if (!cfg || !rlhf__config_ok(cfg)) return 0;
    rlhf__kind_sizes(cfg, 0, s);
    return rlhf__sum_sizes(s, RLHF__NUM_KINDS);
}

/* Floats of the inference scratch for BT rows: x, x2, ln, atty (BT,C); mean,
   rstd (BT); qkv (BT,3C); fch, fch_gelu (BT,4C); attention rows (BT*NH*RLHF__ATT_QB:
   a block of query rows for each (b, h)). */
static size_t rlhf__infer_floats(const rlhf_config *c, size_t BT) {
    return BT * (15 * (size_t)c->n_embd + 2 + RLHF__ATT_QB * (size_t)c->n_head);
}
static rlhf_result rlhf__ensure_infer(rlhf_model *m, size_t BT) {
    float *mem;
    if (BT <= m->inf_cap_bt) return RLHF_OK;
    mem = rlhf__alloc_floats(rlhf__infer_floats(&m->cfg, BT));
    if (!mem)
        return rlhf__fail(m, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model: cannot allocate inference scratch for B*T=%zu", BT);
    rlhf__free(m->inf_mem);
    m->inf_mem = mem;
    m->inf_cap_bt = BT;
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_config_memory(const rlhf_config *cfg, int B, int T, int training, rlhf_memory *out) {
    size_t s[RLHF__NUM_ACTS], sr[RLHF__NUM_ACTS], bs[RLHF__NUM_BWD], BT, BTT;
    if (!cfg || !rlhf__config_ok(cfg) || !out || B < 1 || T < 1 || T > cfg->n_ctx) return RLHF_ERR_INVALID_ARGUMENT;
    if (!rlhf__shape_fits(cfg, (double)B * T, (double)B * T * T)) return RLHF_ERR_SIZE_OVERFLOW;
    BT = (size_t)B * (size_t)T;
    BTT = BT * (size_t)T;
    rlhf__act_sizes(cfg, BT, BTT, 0, s);
    rlhf__act_sizes(cfg, BT, BTT, 1, sr);
    rlhf__bwd_sizes(cfg, BT, BTT, bs);
    out->params = rlhf_config_num_params(cfg) * sizeof(float);
    out->grads = training ? out->params : 0;
    out->optimizer = training ? 2 * out->params : 0;
    /* training: every layer's forward caches; inference: one layer's scratch */
    out->activations = training ? rlhf__sum_sizes(s, RLHF__NUM_ACTS) * sizeof(float) + 3 * BT * sizeof(int)
                                : rlhf__infer_floats(cfg, BT) * sizeof(float);
    out->backward = training ? rlhf__sum_sizes(bs, RLHF__NUM_BWD) * sizeof(float) : 0;
    out->workspace = RLHF__GEMM_WORK_FLOATS(rlhf_num_threads() < 1 ? 1 : rlhf_num_threads()) * sizeof(float);
    out->total = out->params + out->grads + out->optimizer + out->activations + out->backward + out->workspace;
    out->activations_recompute = training ? rlhf__sum_sizes(sr, RLHF__NUM_ACTS) * sizeof(float) + 3 * BT * sizeof(int)
                                          : out->activations;
    out->total_recompute = out->total - out->activations + out->activations_recompute;
    return RLHF_OK;
}
RLHFDEF rlhf_result rlhf_model_memory(const rlhf_model *m, int B, int T, int training, rlhf_memory *out) {
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    return rlhf_config_memory(&m->cfg, B, T, training, out);
}

/* Make sure activations for (B,T) exist, and training memory if asked.
   Allocates only when the shape does not fit what is there. */
static rlhf_result rlhf__ensure(rlhf_model *m, int B, int T, int training) {
    size_t BT = (size_t)B * (size_t)T, BTT = BT * (size_t)T;
    if (!rlhf__shape_fits(&m->cfg, (double)BT, (double)BTT))
        return rlhf__fail(m, RLHF_ERR_SIZE_OVERFLOW, "rlhf_model: activations for B=%d T=%d do not fit in memory", B,
                          T);
    if (BT > m->cap_bt || BTT > m->cap_btt) {
        size_t s[RLHF__NUM_ACTS], ncap = BT > m->cap_bt ? BT : m->cap_bt, ncapt = BTT > m->cap_btt ? BTT : m->cap_btt;
        float *mem, *p;
        rlhf__acts *a = &m->acts;
        float **ptr[RLHF__NUM_ACTS];
        int *tok;
        int i;
        ptr[0] = &a->encoded; ptr[1] = &a->ln1; ptr[2] = &a->ln1_mean; ptr[3] = &a->ln1_rstd; ptr[4] = &a->qkv;
        ptr[5] = &a->atty; ptr[6] = &a->att; ptr[7] = &a->residual2; ptr[8] = &a->ln2; ptr[9] = &a->ln2_mean;
        ptr[10] = &a->ln2_rstd; ptr[11] = &a->fch; ptr[12] = &a->fch_gelu; ptr[13] = &a->residual3; ptr[14] = &a->lnf;
        ptr[15] = &a->lnf_mean; ptr[16] = &a->lnf_rstd; ptr[17] = &a->logits; ptr[18] = &a->lse; ptr[19] = &a->losses;
        rlhf__act_sizes(&m->cfg, ncap, ncapt, m->recompute, s);
        mem = rlhf__alloc_floats(rlhf__sum_sizes(s, RLHF__NUM_ACTS));
        tok = (int *)rlhf__alloc(3 * ncap * sizeof(int));
        if (!mem || !tok) {
            rlhf__free(mem);
            rlhf__free(tok);
            return rlhf__fail(m, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model: cannot allocate activations for B*T=%zu", ncap);
        }
        rlhf__free(m->act_mem);
        rlhf__free(m->tok_mem);
        m->act_mem = mem;
        m->tok_mem = tok;
        for (p = mem, i = 0; i < RLHF__NUM_ACTS; i++) {
            *ptr[i] = p;
            p += s[i];
        }
        m->cap_bt = ncap;
        m->cap_btt = ncapt;
        m->backward_ready = 0;
    }
    if (!training) return RLHF_OK;
    if (!m->grad_mem) {
        m->grad_mem = rlhf__alloc_params(m->num_params);
        m->m_mem = rlhf__alloc_params(m->num_params);
        m->v_mem = rlhf__alloc_params(m->num_params);
        if (!m->grad_mem || !m->m_mem || !m->v_mem) {
            rlhf__free(m->grad_mem); rlhf__free(m->m_mem); rlhf__free(m->v_mem);
            m->grad_mem = m->m_mem = m->v_mem = NULL;
            return rlhf__fail(m, RLHF_ERR_OUT_OF_MEMORY,
                              "rlhf_model: cannot allocate gradients and AdamW state (%zu parameters)", m->num_params);
        }
        memset(m->grad_mem, 0, m->num_params * sizeof(float));
        memset(m->m_mem, 0, m->num_params * sizeof(float));
        memset(m->v_mem, 0, m->num_params * sizeof(float));
        rlhf__point_params(&m->grads, m->grad_mem, m->kind_size);
    }
    if (m->bwd_cap_bt < m->cap_bt || m->bwd_cap_btt < m->cap_btt) {
        size_t s[RLHF__NUM_BWD];
        float *mem, *p;
        rlhf__bwd *b = &m->bwd;
        float **ptr[RLHF__NUM_BWD];
        int i;
        ptr[0] = &b->dresidual;
        ptr[1] = &b->dln;
        ptr[2] = &b->datty;
        ptr[3] = &b->dqkv;
        ptr[4] = &b->dfch;
        ptr[5] = &b->datt;
        rlhf__bwd_sizes(&m->cfg, m->cap_bt, m->cap_btt, s);
        mem = rlhf__alloc_floats(rlhf__sum_sizes(s, RLHF__NUM_BWD));
        if (!mem)
            return rlhf__fail(m, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model: cannot allocate backward scratch for B*T=%zu",
                              m->cap_bt);
        rlhf__free(m->bwd_mem);
        m->bwd_mem = mem;
        for (p = mem, i = 0; i < RLHF__NUM_BWD; i++) {
            *ptr[i] = p;
            p += s[i];
        }
        m->bwd_cap_bt = m->cap_bt;
        m->bwd_cap_btt = m->cap_btt;
    }
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_model_reserve(rlhf_model *m, int B, int T, int training) {
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (B < 1 || T < 1 || T > m->cfg.n_ctx)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_model_reserve: need B >= 1 and 1 <= T <= n_ctx (%d), got B=%d T=%d", m->cfg.n_ctx, B,
                          T);
    if (!training) { /* inference: also check the shape as a forward would */
        if (!rlhf__shape_fits(&m->cfg, (double)B * T, (double)B * T * T))
            return rlhf__fail(m, RLHF_ERR_SIZE_OVERFLOW, "rlhf_model_reserve: B=%d T=%d is too large", B, T);
        return rlhf__ensure_infer(m, (size_t)B * (size_t)T);
    }
    return rlhf__ensure(m, B, T, training);
}

RLHFDEF rlhf_result rlhf_model_set_recompute(rlhf_model *m, int on) {
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    on = on != 0;
    if (on == m->recompute) return RLHF_OK;
    /* the caches change layout (one layer's or every layer's): the next training call allocates them */
    rlhf__free(m->act_mem);
    rlhf__free(m->tok_mem);
    m->act_mem = NULL;
    m->tok_mem = NULL;
    m->cap_bt = m->cap_btt = 0;
    m->backward_ready = 0;
    m->recompute = on;
    return RLHF_OK;
}
RLHFDEF int rlhf_model_recompute(const rlhf_model *m) { return m ? m->recompute : 0; }

/* Build the table of Hugging Face tensor names over the parameter block. */
static rlhf_result rlhf__build_tensors(rlhf_model *m) {
    static const char *const layer_names[12] = {
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
        "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
    int L = m->cfg.n_layer, C = m->cfg.n_embd, i, l, k;
    size_t kind_off[RLHF__NUM_KINDS];
    rlhf__tensor *t;
    kind_off[0] = 0;
    for (k = 1; k < RLHF__NUM_KINDS; k++) kind_off[k] = kind_off[k - 1] + m->kind_size[k - 1];
    m->n_tensors = 2 + 12 * L + 2 + (m->has_score ? 2 : 0);
    m->tensors = (rlhf__tensor *)rlhf__alloc((size_t)m->n_tensors * sizeof(rlhf__tensor));
    if (!m->tensors) return RLHF_ERR_OUT_OF_MEMORY;
    t = m->tensors;
    memset(t, 0, (size_t)m->n_tensors * sizeof(rlhf__tensor));
    strcpy(t[0].name, "wte.weight");
    t[0].ndim = 2; t[0].shape[0] = m->cfg.vocab_size; t[0].shape[1] = C; t[0].offset = kind_off[0];
    strcpy(t[1].name, "wpe.weight");
    t[1].ndim = 2; t[1].shape[0] = m->cfg.n_ctx; t[1].shape[1] = C; t[1].offset = kind_off[1];
    for (l = 0; l < L; l++)
        for (k = 0; k < 12; k++) {
            /* (rows, cols) of each per-layer tensor; rows only for 1-D */
            static const int rows_x[12] = {1, 1, 1, 3, 1, 1, 1, 1, 1, 4, 4, 1}; /* in units of C */
            static const int cols_x[12] = {0, 0, 3, 0, 1, 0, 0, 0, 4, 0, 1, 0};
            rlhf__tensor *x = &t[2 + 12 * l + k];
            snprintf(x->name, sizeof x->name, "h.%d.%s", l, layer_names[k]);
            x->ndim = cols_x[k] ? 2 : 1;
            x->shape[0] = rows_x[k] * C;
            x->shape[1] = cols_x[k] * C;
            x->offset = kind_off[2 + k] + (size_t)l * (m->kind_size[2 + k] / (size_t)L);
        }
    i = 2 + 12 * L;
    strcpy(t[i].name, "ln_f.weight");
    strcpy(t[i + 1].name, "ln_f.bias");
    t[i].ndim = t[i + 1].ndim = 1;
    t[i].shape[0] = t[i + 1].shape[0] = C;
    t[i].offset = kind_off[14];
    t[i + 1].offset = kind_off[15];
    if (m->has_score) { /* Hugging Face's GPT2ForSequenceClassification names, plus a bias */
        strcpy(t[i + 2].name, "score.weight");
        t[i + 2].ndim = 2; t[i + 2].shape[0] = 1; t[i + 2].shape[1] = C; t[i + 2].offset = kind_off[16];
        strcpy(t[i + 3].name, "score.bias");
        t[i + 3].ndim = 1; t[i + 3].shape[0] = 1; t[i + 3].offset = kind_off[17];
    }
    for (i = 0; i < m->n_tensors; i++) {
        t[i].numel = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        t[i].decay = t[i].ndim >= 2; /* nanoGPT's groups: decay matrices and embeddings only */
    }
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_model_create(rlhf_model **out, const rlhf_config *cfg, uint64_t seed) {
    rlhf_model *m;
    rlhf_rng rng;
    int i;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!cfg || !rlhf__config_ok(cfg)) return RLHF_ERR_INVALID_ARGUMENT;
    m = (rlhf_model *)rlhf__alloc(sizeof(rlhf_model));
    if (!m) return RLHF_ERR_OUT_OF_MEMORY;
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    rlhf__kind_sizes(cfg, 0, m->kind_size);
    m->num_params = rlhf__sum_sizes(m->kind_size, RLHF__NUM_KINDS);
    m->param_mem = rlhf__alloc_params(m->num_params);
    m->work = rlhf__gemm_work_alloc();
    if (!m->param_mem || !m->work || rlhf__build_tensors(m) != RLHF_OK) {
        rlhf_model_free(m);
        return RLHF_ERR_OUT_OF_MEMORY;
    }
    rlhf__point_params(&m->params, m->param_mem, m->kind_size);
    /* GPT-2 init (Radford et al. 2019; HF's _init_weights), in tensor order:
       matrices and embeddings N(0, 0.02); the projections that write into
       the residual stream N(0, 0.02 / sqrt(2L)) so its variance does not
       grow with depth; biases 0; LayerNorm weight 1, bias 0. */
    rlhf_rng_seed(&rng, seed);
    for (i = 0; i < m->n_tensors; i++) {
        rlhf__tensor *t = &m->tensors[i];
        float *p = m->param_mem + t->offset;
        size_t j;
        if (t->ndim == 2) {
            float std = 0.02f;
            if (strstr(t->name, "c_proj.weight")) std = 0.02f / sqrtf(2.0f * (float)cfg->n_layer);
            rlhf__fill_normal(p, t->numel, std, &rng);
        } else {
            float v = strstr(t->name, "ln_") && strstr(t->name, ".weight") ? 1.0f : 0.0f;
            for (j = 0; j < t->numel; j++) p[j] = v;
        }
    }
    *out = m;
    return RLHF_OK;
}

RLHFDEF void rlhf_model_free(rlhf_model *m) {
    if (!m) return;
    rlhf__free(m->param_mem);
    rlhf__free(m->grad_mem);
    rlhf__free(m->m_mem);
    rlhf__free(m->v_mem);
    rlhf__free(m->tensors);
    rlhf__free(m->act_mem);
    rlhf__free(m->bwd_mem);
    rlhf__free(m->tok_mem);
    rlhf__free(m->inf_mem);
    rlhf__free(m->work);
    while (m->n_meta > 0) {
        m->n_meta--;
        rlhf__free(m->meta[2 * m->n_meta]);
        rlhf__free(m->meta[2 * m->n_meta + 1]);
    }
    rlhf__free(m->meta);
    rlhf__free(m);
}

RLHFDEF const rlhf_config *rlhf_model_config(const rlhf_model *m) { return m ? &m->cfg : NULL; }
RLHFDEF void rlhf_model_set_log(rlhf_model *m, rlhf_log_fn fn, void *user) {
    if (!m) return;
    m->log = fn;
    m->log_user = user;
}
RLHFDEF const char *rlhf_model_last_error(const rlhf_model *m) { return m ? m->err : "no model"; }
RLHFDEF size_t rlhf_model_num_params(const rlhf_model *m) { return m ? m->num_params : 0; }
RLHFDEF int rlhf_model_num_tensors(const rlhf_model *m) { return m ? m->n_tensors : 0; }
RLHFDEF long rlhf_model_adamw_steps(const rlhf_model *m) { return m ? m->adam_steps : 0; }

/* NULL when every weight of m is finite, else the name of the first tensor
   holding a NaN or an infinity. A run that diverged has weights like these;
   the training loops stop on them and never checkpoint them. */
static const char *rlhf__non_finite_tensor(const rlhf_model *m) {
    int i;
    size_t j;
    for (i = 0; i < m->n_tensors; i++) {
        const float *p = m->param_mem + m->tensors[i].offset;
        for (j = 0; j < m->tensors[i].numel; j++)
            if (!isfinite(p[j])) return m->tensors[i].name;
    }
    return NULL;
}

/* The scalar head (Stiennon et al. 2020; "The N implementation details",
   item 6): score.weight [1, C] ~ N(0, std), score.bias = 0. The reward
   model uses std = 1/sqrt(C + 1) so a fresh head's rewards have variance ~1;
   a value head starts at 0. Its two kinds are the last of the parameter
   block, so every existing tensor keeps its offset: the blocks grow by C + 1
   floats and the old contents are copied over (AdamW state included). */
RLHFDEF rlhf_result rlhf_model_add_score_head(rlhf_model *m, float init_std, uint64_t seed) {
    size_t old_n, new_n, C;
    float *blk[4] = {NULL, NULL, NULL, NULL}, **old[4];
    rlhf__tensor *old_tensors;
    int old_nt, i;
    rlhf_rng rng;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (m->has_score)
        return rlhf__fail(m, RLHF_ERR_STATE, "rlhf_model_add_score_head: the model already has a scalar head");
    if (init_std != init_std || init_std > 1e6f)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_model_add_score_head: init_std %g is not a usable standard deviation",
                          (double)init_std);
    C = (size_t)m->cfg.n_embd;
    if (init_std < 0.0f) init_std = 1.0f / sqrtf((float)C + 1.0f);
    old_n = m->num_params;
    new_n = old_n + C + 1;
    old[0] = &m->param_mem; old[1] = &m->grad_mem; old[2] = &m->m_mem; old[3] = &m->v_mem;
    for (i = 0; i < 4; i++) {
        if (!*old[i]) continue;
        blk[i] = rlhf__alloc_params(new_n);
        if (!blk[i]) {
            while (i > 0) rlhf__free(blk[--i]);
            return rlhf__fail(m, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model_add_score_head: out of memory");
        }
        memcpy(blk[i], *old[i], old_n * sizeof(float));
        memset(blk[i] + old_n, 0, (C + 1) * sizeof(float));
    }
    old_tensors = m->tensors;
    old_nt = m->n_tensors;
    m->has_score = 1;
    rlhf__kind_sizes(&m->cfg, 1, m->kind_size); /* the table's offsets come from these */
    if (rlhf__build_tensors(m) != RLHF_OK) {
        m->has_score = 0;
        rlhf__kind_sizes(&m->cfg, 0, m->kind_size);
        m->tensors = old_tensors;
        m->n_tensors = old_nt;
        for (i = 0; i < 4; i++) rlhf__free(blk[i]);
        return rlhf__fail(m, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model_add_score_head: out of memory");
    }
    rlhf__free(old_tensors);
    for (i = 0; i < 4; i++)
        if (blk[i]) {
            rlhf__free(*old[i]);
            *old[i] = blk[i];
        }
    m->num_params = new_n;
    rlhf__point_params(&m->params, m->param_mem, m->kind_size);
    if (m->grad_mem) rlhf__point_params(&m->grads, m->grad_mem, m->kind_size);
    rlhf_rng_seed(&rng, seed);
    rlhf__fill_normal(m->params.scorew, C, init_std, &rng);
    m->params.scoreb[0] = 0.0f;
    m->backward_ready = 0;
    return RLHF_OK;
}
RLHFDEF int rlhf_model_has_score_head(const rlhf_model *m) { return m ? m->has_score : 0; }

/* The new model's contents from the old one, tensor by tensor (the tables
   list the same names in the same order): weights and, when the old model
   has them, AdamW moments. wte's old rows are its first V * C floats; its new
   rows get the mean of the old ones (the moments of the new rows stay 0). */
static void rlhf__copy_grown(rlhf_model *n, const rlhf_model *m) {
    size_t V = (size_t)m->cfg.vocab_size, V2 = (size_t)n->cfg.vocab_size, C = (size_t)m->cfg.n_embd, v, c;
    int i, k, blocks = m->m_mem && n->m_mem ? 3 : 1;
    for (i = 0; i < m->n_tensors; i++) {
        const rlhf__tensor *a = &m->tensors[i], *b = &n->tensors[i];
        for (k = 0; k < blocks; k++) {
            const float *src = (k == 0 ? m->param_mem : k == 1 ? m->m_mem : m->v_mem) + a->offset;
            float *dst = (k == 0 ? n->param_mem : k == 1 ? n->m_mem : n->v_mem) + b->offset;
            memcpy(dst, src, a->numel * sizeof(float));
        }
    }
    for (c = 0; c < C; c++) { /* the mean row, in double, over the V old rows */
        double sum = 0.0;
        for (v = 0; v < V; v++) sum += m->params.wte[v * C + c];
        for (v = V; v < V2; v++) n->params.wte[v * C + c] = (float)(sum / (double)V);
    }
    n->adam_steps = m->adam_steps;
}

RLHFDEF rlhf_result rlhf_model_resize_vocab(rlhf_model *m, int vocab_size) {
    rlhf_config cfg;
    rlhf_model *n = NULL, tmp;
    char **meta;
    int i, n_meta, cap_meta;
    rlhf_result r;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (vocab_size < m->cfg.vocab_size)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_model_resize_vocab: %d tokens is fewer than the model's %d", vocab_size,
                          m->cfg.vocab_size);
    if (vocab_size == m->cfg.vocab_size) return RLHF_OK;

    /* a model of the new size with the same parts: the scalar head, training memory when m has it */
    cfg = m->cfg;
    cfg.vocab_size = vocab_size;
    if ((r = rlhf_model_create(&n, &cfg, 0)) == RLHF_OK) n->recompute = m->recompute; /* and its cache layout */
    if (r != RLHF_OK || (m->has_score && (r = rlhf_model_add_score_head(n, 0.0f, 0)) != RLHF_OK) ||
        (m->m_mem && (r = rlhf__ensure(n, 1, 1, 1)) != RLHF_OK)) {
        rlhf_model_free(n);
        return rlhf__fail(m, r, "rlhf_model_resize_vocab: cannot make a model of %d tokens: %s", vocab_size,
                          rlhf_result_string(r));
    }
    for (i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, n->tensors[i].name) != 0) {
            rlhf_model_free(n);
            return rlhf__fail(m, RLHF_ERR_STATE, "rlhf_model_resize_vocab: tensor %d differs (%s)", i,
                              m->tensors[i].name);
        }
    rlhf__copy_grown(n, m);

    /* m takes the new internals and keeps its own metadata and log; n leaves with the old ones */
    tmp = *m;
    *m = *n;
    *n = tmp;
    meta = m->meta, n_meta = m->n_meta, cap_meta = m->cap_meta;
    m->meta = n->meta, m->n_meta = n->n_meta, m->cap_meta = n->cap_meta;
    n->meta = meta, n->n_meta = n_meta, n->cap_meta = cap_meta;
    m->log = n->log;
    m->log_user = n->log_user;
    rlhf_model_free(n);
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_model_tensor(rlhf_model *m, int i, rlhf_tensor_info *out) {
    const rlhf__tensor *t;
    if (!m || !out || i < 0 || i >= m->n_tensors) return RLHF_ERR_INVALID_ARGUMENT;
    t = &m->tensors[i];
    out->name = t->name;
    out->ndim = t->ndim;
    out->shape[0] = t->shape[0];
    out->shape[1] = t->ndim == 2 ? t->shape[1] : 0;
    out->numel = t->numel;
    out->data = m->param_mem + t->offset;
    out->grad = m->grad_mem ? m->grad_mem + t->offset : NULL;
    out->weight_decay = t->decay;
    return RLHF_OK;
}
RLHFDEF rlhf_result rlhf_model_find_tensor(rlhf_model *m, const char *name, rlhf_tensor_info *out) {
    int i;
    if (!m || !name || !out) return RLHF_ERR_INVALID_ARGUMENT;
    for (i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return rlhf_model_tensor(m, i, out);
    return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_find_tensor: no tensor named \"%s\"", name);
}

/* Token ids: 0 <= id < V, or -1 where allowed (targets). */
static rlhf_result rlhf__check_ids(rlhf_model *m, const int *ids, int B, int T, int allow_ignore, const char *what) {
    int i, n = B * T;
    for (i = 0; i < n; i++)
        if (ids[i] >= m->cfg.vocab_size || ids[i] < (allow_ignore ? -1 : 0))
            return rlhf__fail(m, RLHF_ERR_BAD_TOKEN, "rlhf_model: %s[%d][%d] = %d is outside [%d, %d)", what, i / T,
                              i % T, ids[i], allow_ignore ? -1 : 0, m->cfg.vocab_size);
    return RLHF_OK;
}

/* encoded (B,T,C) = wte[inputs[b,t]] + wpe[t - doc[b,t]]: positions count
   from the start of each token's document (doc NULL: from 0), so a left-padded
   or packed sequence sees the same positions as it would alone */
static void rlhf__encoder_forward(float *out, const int *inputs, const int *doc, const float *wte, const float *wpe,
                                  int B, int T, int C) {
    int bt;
    RLHF__OMP(omp parallel for schedule(dynamic, 8) num_threads(rlhf__nt((double)B * T * C / 4.0)))
    for (bt = 0; bt < B * T; bt++) {
        const float *te = wte + (ptrdiff_t)inputs[bt] * C, *pe = wpe + (ptrdiff_t)(bt % T - (doc ? doc[bt] : 0)) * C;
        float *o = out + (ptrdiff_t)bt * C;
        int c;
        for (c = 0; c < C; c++) o[c] = te[c] + pe[c];
    }
}
/* dwte[inputs[b,t]] += dout[b,t]; dwpe[t - doc[b,t]] += dout[b,t]. Serial
   over rows: the scatter into dwte would race, and it is O(BT*C), cheap. */
static void rlhf__encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inputs, const int *doc,
                                   int B, int T, int C) {
    int bt, c;
    for (bt = 0; bt < B * T; bt++) {
        const float *d = dout + (ptrdiff_t)bt * C;
        float *te = dwte + (ptrdiff_t)inputs[bt] * C, *pe = dwpe + (ptrdiff_t)(bt % T - (doc ? doc[bt] : 0)) * C;
        for (c = 0; c < C; c++) {
            te[c] += d[c];
            pe[c] += d[c];
        }
    }
}

/* ---- the GPT-2 block, written once -----------------------------------------
   Training, inference and KV-cache decoding run the same block; they differ
   only in attention (which keeps its probabilities for the backward, reads a
   document mask, or reads the cache). Hugging Face's GPT2Block:
     x2  = x  + attn.c_proj(attention(ln_1(x)))
     out = x2 + mlp.c_proj(gelu(mlp.c_fc(ln_2(x2)))) */
typedef struct rlhf__block_io {
    const float *x;                          /* (BT, C) the residual stream in */
    float *ln1, *ln1_mean, *ln1_rstd;        /* (BT, C), (BT), (BT) */
    float *qkv, *atty, *x2;                  /* (BT, 3C), (BT, C), (BT, C) */
    float *ln2, *ln2_mean, *ln2_rstd;        /* (BT, C), (BT), (BT) */
    float *fch, *fch_gelu;                   /* (BT, 4C) each */
    float *out;                              /* (BT, C) the residual stream out (may be x) */
} rlhf__block_io;

/* How a caller attends: atty (BT, C) from qkv (BT, 3C) at layer l. */
typedef struct rlhf__attn {
    void (*fn)(const struct rlhf__attn *a, int l, const float *qkv, float *atty);
    rlhf_model *m;
    const int *doc;          /* document starts (B, T), or NULL */
    int B, T;
    float *att;              /* training: the probabilities of every layer, kept for the backward */
    float *rows;             /* inference: one row of scratch per thread */
    rlhf_kv_cache *cache;    /* inference with a cache (prefill) or decoding */
} rlhf__attn;

static void rlhf__block_forward(rlhf_model *m, int l, int BT, const rlhf__block_io *io, const rlhf__attn *attn) {
    const rlhf__params *p = &m->params;
    int C = m->cfg.n_embd;
    size_t lC = (size_t)l * (size_t)C;

    /* x2 = x + c_proj(attn(ln_1(x))) */
    rlhf__layernorm_forward(io->ln1, io->ln1_mean, io->ln1_rstd, io->x, p->ln1w + lC, p->ln1b + lC, BT, C);
    rlhf__linear_forward(io->qkv, io->ln1, p->qkvw + lC * 3 * (size_t)C, p->qkvb + lC * 3, NULL, BT, C, 3 * C, m->work);
    attn->fn(attn, l, io->qkv, io->atty);
    rlhf__linear_forward(io->x2, io->atty, p->attprojw + lC * (size_t)C, p->attprojb + lC, io->x, BT, C, C, m->work);

    /* out = x2 + mlp.c_proj(gelu(mlp.c_fc(ln_2(x2)))) */
    rlhf__layernorm_forward(io->ln2, io->ln2_mean, io->ln2_rstd, io->x2, p->ln2w + lC, p->ln2b + lC, BT, C);
    rlhf__linear_forward(io->fch, io->ln2, p->fcw + lC * 4 * (size_t)C, p->fcb + lC * 4, NULL, BT, C, 4 * C, m->work);
    rlhf__gelu_forward(io->fch_gelu, io->fch, (size_t)BT * 4 * (size_t)C);
    rlhf__linear_forward(io->out, io->fch_gelu, p->fcprojw + lC * 4 * (size_t)C, p->fcprojb + lC, io->x2, BT, 4 * C, C,
                         m->work);
}

/* The cache slot of layer l in m->acts: l, or 0 under activation recompute
   (one layer's caches, refilled before each layer's backward). */
static size_t rlhf__slot(const rlhf_model *m, int l) { return m->recompute ? 0 : (size_t)l; }

/* training: causal attention over the batch, the probabilities kept */
static void rlhf__attend_train(const rlhf__attn *a, int l, const float *qkv, float *atty) {
    int B = a->B, T = a->T, NH = a->m->cfg.n_head;
    rlhf__attention_forward(atty, a->att + rlhf__slot(a->m, l) * (size_t)B * (size_t)NH * (size_t)T * (size_t)T,
                            NULL, qkv, a->doc, B, T, a->m->cfg.n_embd, NH, a->m->work);
}
static void rlhf__attn_train(rlhf_model *m, rlhf__attn *attn) {
    memset(attn, 0, sizeof *attn);
    attn->fn = rlhf__attend_train, attn->m = m, attn->B = m->B, attn->T = m->T, attn->att = m->acts.att;
    attn->doc = m->has_doc ? m->tok_mem + 2 * m->cap_bt : NULL;
}
/* Layer l of the training forward of m's last (B,T): its input (encoded, or
   the layer before's residual3), its caches (slot k) and its output. */
static void rlhf__train_io(const rlhf_model *m, int l, rlhf__block_io *io) {
    const rlhf__acts *a = &m->acts;
    size_t BT = (size_t)m->B * (size_t)m->T, BTC = BT * (size_t)m->cfg.n_embd, k = rlhf__slot(m, l);
    io->x = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * BTC;
    io->ln1 = a->ln1 + k * BTC, io->ln1_mean = a->ln1_mean + k * BT, io->ln1_rstd = a->ln1_rstd + k * BT;
    io->qkv = a->qkv + k * BTC * 3, io->atty = a->atty + k * BTC, io->x2 = a->residual2 + k * BTC;
    io->ln2 = a->ln2 + k * BTC, io->ln2_mean = a->ln2_mean + k * BT, io->ln2_rstd = a->ln2_rstd + k * BT;
    io->fch = a->fch + k * BTC * 4, io->fch_gelu = a->fch_gelu + k * BTC * 4, io->out = a->residual3 + (size_t)l * BTC;
}

/* The forward pass over m->tok_mem (m->B, m->T) into m->acts, up to the
   final LayerNorm; the LM head's logits too when lm != 0. */
static void rlhf__forward(rlhf_model *m, int B, int T, int lm) {
    int C = m->cfg.n_embd, V = m->cfg.vocab_size, L = m->cfg.n_layer, l;
    size_t BT = (size_t)B * (size_t)T, BTC = BT * (size_t)C;
    rlhf__params *p = &m->params;
    rlhf__acts *a = &m->acts;
    rlhf__attn attn;
    rlhf__attn_train(m, &attn);
    rlhf__encoder_forward(a->encoded, m->tok_mem, attn.doc, p->wte, p->wpe, B, T, C);
    for (l = 0; l < L; l++) { /* every layer keeps its activations (or, recomputing, its input) for the backward */
        rlhf__block_io io;
        rlhf__train_io(m, l, &io);
        rlhf__block_forward(m, l, (int)BT, &io, &attn);
    }
    rlhf__layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->residual3 + (size_t)(L - 1) * BTC, p->lnfw, p->lnfb,
                            (int)BT, C);
    /* logits (BT,V) = lnf (BT,C) * wte^T: the LM head is tied to the token embedding */
    if (lm) rlhf__gemm((int)BT, V, C, a->lnf, C, 1, p->wte, 1, C, a->logits, V, 0, m->work);
}

/* values (BT) = lnf (BT,C) . score.weight + score.bias: the scalar head */
static void rlhf__score_forward(float *values, const float *lnf, const float *w, const float *b, size_t BT, int C) {
    size_t i;
    for (i = 0; i < BT; i++) values[i] = rlhf__dot(lnf + i * (size_t)C, w, C) + b[0];
}

/* rlhf__forward_infer is defined with the KV cache, below */
static void rlhf__forward_infer(rlhf_model *m, const int *inputs, const int *doc, int B, int T, float *logits,
                                float *values, rlhf_kv_cache *cache);

static void rlhf__backward_lm_head(rlhf_model *m, size_t BT, int C, int V);

/* Document starts: 0 <= doc[b,t] <= t (t's document begins at or before t). */
static rlhf_result rlhf__check_doc(rlhf_model *m, const int *doc, int B, int T, const char *fn) {
    int b, t;
    for (b = 0; b < B; b++)
        for (t = 0; t < T; t++) {
            int d = doc[(ptrdiff_t)b * T + t];
            if (d < 0 || d > t)
                return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "%s: doc_start[%d][%d] = %d is outside [0, %d]", fn, b,
                                  t, d, t);
        }
    return RLHF_OK;
}

/* Everything a forward entry point checks, then the pass. mode 1: LM
   (logits, optional loss); mode 2: scalar head (values), with caches for a
   backward when keep != 0. */
static rlhf_result rlhf__forward_entry(rlhf_model *m, const int *inputs, const int *targets, const int *doc, int B,
                                       int T, float *logits, float *loss, float *values, int mode, int keep,
                                       const char *fn) {
    rlhf_result r;
    size_t BT;
    m->backward_ready = 0;
    if (!inputs || B < 1 || T < 1)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "%s: need inputs, B >= 1 and T >= 1 (got B=%d T=%d)", fn, B, T);
    if (T > m->cfg.n_ctx)
        return rlhf__fail(m, RLHF_ERR_CONTEXT_FULL, "%s: T=%d is longer than n_ctx=%d", fn, T, m->cfg.n_ctx);
    if (!rlhf__shape_fits(&m->cfg, (double)B * T, (double)B * T * T))
        return rlhf__fail(m, RLHF_ERR_SIZE_OVERFLOW, "%s: B=%d T=%d is too large", fn, B, T);
    if (mode == 1 && (targets != NULL) != (loss != NULL))
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "%s: targets and loss go together", fn);
    if (mode == 2 && !m->has_score)
        return rlhf__fail(m, RLHF_ERR_STATE, "%s: the model has no scalar head (rlhf_model_add_score_head)", fn);
    if (mode == 2 && !values) return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "%s: values is NULL", fn);
    if ((r = rlhf__check_ids(m, inputs, B, T, 0, "inputs")) != RLHF_OK) return r;
    if (targets && (r = rlhf__check_ids(m, targets, B, T, 1, "targets")) != RLHF_OK) return r;
    if (doc && (r = rlhf__check_doc(m, doc, B, T, fn)) != RLHF_OK) return r;
    BT = (size_t)B * (size_t)T;
    if (mode == 1 ? !targets : !keep) { /* nothing to backpropagate: no caches */
        if ((r = rlhf__ensure_infer(m, BT)) != RLHF_OK) return r;
        rlhf__forward_infer(m, inputs, doc, B, T, logits, values, NULL);
        return RLHF_OK;
    }
    if ((r = rlhf__ensure(m, B, T, 0)) != RLHF_OK) return r;
    memcpy(m->tok_mem, inputs, BT * sizeof(int));
    m->has_doc = doc != NULL;
    if (doc) memcpy(m->tok_mem + 2 * m->cap_bt, doc, BT * sizeof(int));
    m->B = B;
    m->T = T;
    rlhf__forward(m, B, T, mode == 1);
    if (mode == 2) {
        rlhf__score_forward(values, m->acts.lnf, m->params.scorew, m->params.scoreb, BT, m->cfg.n_embd);
        m->backward_ready = 2;
        return RLHF_OK;
    }
    if (logits) memcpy(logits, m->acts.logits, BT * (size_t)m->cfg.vocab_size * sizeof(float));
    {
        /* mean cross-entropy over targets != -1 */
        double sum = 0.0;
        size_t i, count = 0;
        int *tg = m->tok_mem + m->cap_bt;
        memcpy(tg, targets, BT * sizeof(int));
        rlhf__crossentropy_forward(m->acts.losses, m->acts.lse, m->acts.logits, tg, (int)BT, m->cfg.vocab_size);
        for (i = 0; i < BT; i++)
            if (tg[i] >= 0) {
                sum += m->acts.losses[i];
                count++;
            }
        if (count == 0) {
            *loss = 0.0f;
            return rlhf__fail(m, RLHF_ERR_NO_TARGETS, "%s: all %zu targets are -1: nothing to learn", fn, BT);
        }
        *loss = (float)(sum / (double)count);
        m->dloss = 1.0f / (float)count;
        m->backward_ready = 1;
    }
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_model_forward(rlhf_model *m, const int *inputs, const int *targets, int B, int T,
                                       float *logits, float *loss) {
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    return rlhf__forward_entry(m, inputs, targets, NULL, B, T, logits, loss, NULL, 1, 0, "rlhf_model_forward");
}
RLHFDEF rlhf_result rlhf_model_forward_docs(rlhf_model *m, const int *inputs, const int *targets, const int *doc_start,
                                            int B, int T, float *logits, float *loss) {
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    return rlhf__forward_entry(m, inputs, targets, doc_start, B, T, logits, loss, NULL, 1, 0,
                               "rlhf_model_forward_docs");
}
RLHFDEF rlhf_result rlhf_model_forward_values(rlhf_model *m, const int *inputs, const int *doc_start, int B, int T,
                                              float *values, int for_backward) {
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    return rlhf__forward_entry(m, inputs, NULL, doc_start, B, T, NULL, NULL, values, 2, for_backward,
                               "rlhf_model_forward_values");
}

/* Log-probabilities of chosen tokens under the sampling distribution, the
   quantities of PPO. Per row bt with a target a: z = logits / temperature,
     logp = z_a - logsumexp(z),   entropy = -sum_v p_v log p_v = lse - sum_v p_v z_v
   ("The N implementation details", item 8: the temperature used for sampling
   divides the logits here too). Always the caching forward (a backward may
   follow, and the logits are kept there). */
RLHFDEF rlhf_result rlhf_model_logprobs(rlhf_model *m, const int *inputs, const int *targets, const int *doc_start,
                                        int B, int T, float temperature, float *logp, float *entropy,
                                        int for_backward) {
    rlhf_result r;
    size_t BT;
    int V, bt;
    const char *fn = "rlhf_model_logprobs";
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    m->backward_ready = 0;
    if (!inputs || !targets || !logp || B < 1 || T < 1 || !(temperature > 0.0f) || !isfinite(temperature))
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "%s: need inputs, targets, logp, B >= 1, T >= 1 and temperature > 0 (got %g)", fn,
                          (double)temperature);
    if (T > m->cfg.n_ctx)
        return rlhf__fail(m, RLHF_ERR_CONTEXT_FULL, "%s: T=%d is longer than n_ctx=%d", fn, T, m->cfg.n_ctx);
    if (!rlhf__shape_fits(&m->cfg, (double)B * T, (double)B * T * T))
        return rlhf__fail(m, RLHF_ERR_SIZE_OVERFLOW, "%s: B=%d T=%d is too large", fn, B, T);
    if ((r = rlhf__check_ids(m, inputs, B, T, 0, "inputs")) != RLHF_OK) return r;
    if ((r = rlhf__check_ids(m, targets, B, T, 1, "targets")) != RLHF_OK) return r;
    if (doc_start && (r = rlhf__check_doc(m, doc_start, B, T, fn)) != RLHF_OK) return r;
    if ((r = rlhf__ensure(m, B, T, 0)) != RLHF_OK) return r;
    BT = (size_t)B * (size_t)T;
    V = m->cfg.vocab_size;
    memcpy(m->tok_mem, inputs, BT * sizeof(int));
    memcpy(m->tok_mem + m->cap_bt, targets, BT * sizeof(int));
    m->has_doc = doc_start != NULL;
    if (doc_start) memcpy(m->tok_mem + 2 * m->cap_bt, doc_start, BT * sizeof(int));
    m->B = B;
    m->T = T;
    m->temperature = temperature;
    rlhf__forward(m, B, T, 1);
    RLHF__OMP(omp parallel for schedule(dynamic, 4) num_threads(rlhf__nt(8.0 * (double)BT * V)))
    for (bt = 0; bt < (int)BT; bt++) {
        const float *l = m->acts.logits + (ptrdiff_t)bt * V;
        int a = targets[bt], v;
        float maxv = -INFINITY, lse;
        double sum = 0.0, pz = 0.0;
        if (a < 0) {
            logp[bt] = 0.0f;
            if (entropy) entropy[bt] = 0.0f;
            continue;
        }
        for (v = 0; v < V; v++) maxv = l[v] / temperature > maxv ? l[v] / temperature : maxv;
        for (v = 0; v < V; v++) sum += (double)expf(l[v] / temperature - maxv);
        lse = maxv + (float)log(sum);
        m->acts.lse[bt] = lse;
        logp[bt] = l[a] / temperature - lse;
        if (entropy) {
            for (v = 0; v < V; v++) pz += (double)expf(l[v] / temperature - lse) * (double)(l[v] / temperature);
            entropy[bt] = lse - (float)pz;
        }
    }
    if (for_backward) m->backward_ready = 3;
    return RLHF_OK;
}

/* d/dz_v of logp_a = 1[v=a] - p_v;  of entropy H = -p_v (log p_v + H);
   dlogits = dz / temperature. Rows without a target get 0. */
RLHFDEF rlhf_result rlhf_model_backward_logprobs(rlhf_model *m, const float *dlogp, const float *dentropy) {
    rlhf_result r;
    size_t BT;
    int V, bt;
    float temp;
    const int *targets;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (m->backward_ready != 3)
        return rlhf__fail(
            m, RLHF_ERR_STATE,
            "rlhf_model_backward_logprobs: no rlhf_model_logprobs(..., for_backward=1) to backpropagate");
    if (!dlogp) return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_backward_logprobs: dlogp is NULL");
    if ((r = rlhf__ensure(m, m->B, m->T, 1)) != RLHF_OK) return r;
    BT = (size_t)m->B * (size_t)m->T;
    V = m->cfg.vocab_size;
    temp = m->temperature;
    targets = m->tok_mem + m->cap_bt;
    for (bt = 0; bt < (int)BT; bt++)
        if (!isfinite(dlogp[bt]) || (dentropy && !isfinite(dentropy[bt])))
            return rlhf__fail(m, RLHF_ERR_NON_FINITE,
                              "rlhf_model_backward_logprobs: gradient at [%d][%d] is not finite", bt / m->T, bt % m->T);
    m->backward_ready = 0;
    RLHF__OMP(omp parallel for schedule(dynamic, 4) num_threads(rlhf__nt(8.0 * (double)BT * V)))
    for (bt = 0; bt < (int)BT; bt++) {
        float *l = m->acts.logits + (ptrdiff_t)bt * V, lse = m->acts.lse[bt];
        int a = targets[bt], v;
        float g = dlogp[bt], ge = dentropy ? dentropy[bt] : 0.0f, H = 0.0f;
        if (a < 0) {
            memset(l, 0, (size_t)V * sizeof(float));
            continue;
        }
        if (ge != 0.0f) {
            double pz = 0.0;
            for (v = 0; v < V; v++) pz += (double)expf(l[v] / temp - lse) * (double)(l[v] / temp);
            H = lse - (float)pz;
        }
        for (v = 0; v < V; v++) {
            float z = l[v] / temp, p = expf(z - lse);
            float dz = g * ((v == a ? 1.0f : 0.0f) - p) - (ge != 0.0f ? ge * p * ((z - lse) + H) : 0.0f);
            l[v] = dz / temp;
        }
    }
    rlhf__backward_lm_head(m, BT, m->cfg.n_embd, V);
    return RLHF_OK;
}

RLHFDEF void rlhf_doc_left_pad(int *doc_start, const int *n_pad, int B, int T) {
    int b, t;
    if (!doc_start || !n_pad) return;
    for (b = 0; b < B; b++)
        for (t = 0; t < T; t++) doc_start[(ptrdiff_t)b * T + t] = t < n_pad[b] ? t : n_pad[b];
}

/* Gradients to zero in runs of 1 Mi floats (4 MiB), handed out as threads ask:
   GPT-2-124M's 500 MB took 15-18 ms on one thread, a step's ~1.3% on two. */
RLHFDEF rlhf_result rlhf_model_zero_grad(rlhf_model *m) {
    const size_t RUN = (size_t)1 << 20;
    ptrdiff_t run, nruns;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (!m->grad_mem) return RLHF_OK;
    nruns = (ptrdiff_t)((m->num_params + RUN - 1) / RUN);
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(rlhf__nt((double)m->num_params / 8.0)))
    for (run = 0; run < nruns; run++) {
        size_t i0 = (size_t)run * RUN, n = m->num_params - i0 < RUN ? m->num_params - i0 : RUN;
        memset(m->grad_mem + i0, 0, n * sizeof(float));
    }
    return RLHF_OK;
}

/* The backward from d loss / d lnf (in bwd.dln) down to the embeddings. */
static void rlhf__backward_trunk(rlhf_model *m);
/* From dlogits (in acts.logits) through the tied LM head, then the trunk:
   logits = lnf * wte^T:  dlnf = dlogits * wte;  dwte += dlogits^T * lnf */
static void rlhf__backward_lm_head(rlhf_model *m, size_t BT, int C, int V) {
    rlhf__gemm((int)BT, C, V, m->acts.logits, V, 1, m->params.wte, C, 1, m->bwd.dln, C, 0, m->work);
    rlhf__gemm(V, C, (int)BT, m->acts.logits, 1, V, m->acts.lnf, C, 1, m->grads.wte, C, 1, m->work);
    rlhf__backward_trunk(m);
}
/* Activation recompute: the forward kept each layer's input (residual3 of
   the layer before, or encoded) and, in slot 0, the last layer's caches.
   Before the backward of layer l < L-1, its forward runs again from that
   input into slot 0: the same kernels on the same bytes in the same order,
   so the caches, and the gradients, are the forward's to the bit. The
   layer's output is kept already (the next layer's input): it goes to
   bwd.datty, scratch that the layer's backward fills only later. */
static void rlhf__recompute_layer(rlhf_model *m, int l) {
    rlhf__block_io io;
    rlhf__attn attn;
    rlhf__attn_train(m, &attn);
    rlhf__train_io(m, l, &io);
    io.out = m->bwd.datty;
    rlhf__block_forward(m, l, m->B * m->T, &io, &attn);
}
static void rlhf__backward_trunk(rlhf_model *m) {
    int B = m->B, T = m->T, C = m->cfg.n_embd, NH = m->cfg.n_head, L = m->cfg.n_layer, l;
    size_t BT = (size_t)B * (size_t)T, BTC = BT * (size_t)C;
    rlhf__params *p = &m->params, *g = &m->grads;
    rlhf__acts *a = &m->acts;
    rlhf__bwd *d = &m->bwd;
    const int *doc = m->has_doc ? m->tok_mem + 2 * m->cap_bt : NULL;
    memset(d->dresidual, 0, BTC * sizeof(float));
    rlhf__layernorm_backward(d->dresidual, g->lnfw, g->lnfb, d->dln, a->residual3 + (size_t)(L - 1) * BTC, p->lnfw,
                             a->lnf_mean, a->lnf_rstd, (int)BT, C);
    for (l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * BTC;
        size_t lC = (size_t)l * (size_t)C, k = rlhf__slot(m, l); /* k: the layer's cache slot */
        if (m->recompute && l < L - 1) rlhf__recompute_layer(m, l);
        /* residual3 = residual2 + fch_gelu * fcprojw + fcprojb  (dresidual passes through unchanged) */
        rlhf__linear_backward(d->dfch, g->fcprojw + lC * 4 * (size_t)C, g->fcprojb + lC, d->dresidual,
                              a->fch_gelu + k * BTC * 4, p->fcprojw + lC * 4 * (size_t)C, (int)BT, 4 * C, C, m->work);
        /* fch_gelu = gelu(fch) */
        rlhf__gelu_backward(d->dfch, a->fch + k * BTC * 4, BTC * 4);
        /* fch = ln2 * fcw + fcb */
        rlhf__linear_backward(d->dln, g->fcw + lC * 4 * (size_t)C, g->fcb + lC * 4, d->dfch, a->ln2 + k * BTC,
                              p->fcw + lC * 4 * (size_t)C, (int)BT, C, 4 * C, m->work);
        /* ln2 = layernorm(residual2): adds into dresidual, which now is d residual2 */
        rlhf__layernorm_backward(d->dresidual, g->ln2w + lC, g->ln2b + lC, d->dln, a->residual2 + k * BTC, p->ln2w + lC,
                                 a->ln2_mean + k * BT, a->ln2_rstd + k * BT, (int)BT, C);
        /* residual2 = residual + atty * attprojw + attprojb */
        rlhf__linear_backward(d->datty, g->attprojw + lC * (size_t)C, g->attprojb + lC, d->dresidual, a->atty + k * BTC,
                              p->attprojw + lC * (size_t)C, (int)BT, C, C, m->work);
        /* atty = attention(qkv) */
        memset(d->dqkv, 0, BTC * 3 * sizeof(float));
        rlhf__attention_backward(d->dqkv, d->datt, d->datty, a->qkv + k * BTC * 3,
                                 a->att + k * BT * (size_t)NH * (size_t)T, doc, B, T, C, NH, m->work);
        /* qkv = ln1 * qkvw + qkvb */
        rlhf__linear_backward(d->dln, g->qkvw + lC * 3 * (size_t)C, g->qkvb + lC * 3, d->dqkv, a->ln1 + k * BTC,
                              p->qkvw + lC * 3 * (size_t)C, (int)BT, C, 3 * C, m->work);
        /* ln1 = layernorm(residual): dresidual becomes d of this layer's input */
        rlhf__layernorm_backward(d->dresidual, g->ln1w + lC, g->ln1b + lC, d->dln, residual, p->ln1w + lC,
                                 a->ln1_mean + k * BT, a->ln1_rstd + k * BT, (int)BT, C);
    }
    rlhf__encoder_backward(g->wte, g->wpe, d->dresidual, m->tok_mem, doc, B, T, C);
}

RLHFDEF rlhf_result rlhf_model_backward(rlhf_model *m) {
    int C, V;
    size_t BT;
    rlhf_result r;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (m->backward_ready != 1)
        return rlhf__fail(m, RLHF_ERR_STATE, "rlhf_model_backward: no forward pass with targets to backpropagate");
    if ((r = rlhf__ensure(m, m->B, m->T, 1)) != RLHF_OK) return r; /* fits the forward's shape: no reallocation */
    m->backward_ready = 0; /* the logits become dlogits below */
    C = m->cfg.n_embd; V = m->cfg.vocab_size;
    BT = (size_t)m->B * (size_t)m->T;
    /* loss = (1/count) sum losses: dloss = 1/count per counted row */
    rlhf__crossentropy_backward(m->acts.logits, m->acts.lse, m->tok_mem + m->cap_bt, m->dloss, (int)BT, V);
    rlhf__backward_lm_head(m, BT, C, V);
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_model_backward_values(rlhf_model *m, const float *dvalues) {
    int C, c;
    size_t BT, i;
    double db = 0.0;
    rlhf_result r;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (m->backward_ready != 2)
        return rlhf__fail(
            m, RLHF_ERR_STATE,
            "rlhf_model_backward_values: no rlhf_model_forward_values(..., for_backward=1) to backpropagate");
    if (!dvalues) return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_backward_values: dvalues is NULL");
    if ((r = rlhf__ensure(m, m->B, m->T, 1)) != RLHF_OK) return r;
    m->backward_ready = 0;
    C = m->cfg.n_embd;
    BT = (size_t)m->B * (size_t)m->T;
    for (i = 0; i < BT; i++)
        if (!isfinite(dvalues[i]))
            return rlhf__fail(m, RLHF_ERR_NON_FINITE, "rlhf_model_backward_values: dvalues[%zu][%zu] is %g",
                              i / (size_t)m->T, i % (size_t)m->T, (double)dvalues[i]);
    /* value = lnf . w + b:  dlnf = dvalue * w;  dw += sum dvalue * lnf;  db += sum dvalue */
    for (i = 0; i < BT; i++) {
        float *dl = m->bwd.dln + i * (size_t)C;
        for (c = 0; c < C; c++) dl[c] = dvalues[i] * m->params.scorew[c];
        rlhf__axpy(m->grads.scorew, dvalues[i], m->acts.lnf + i * (size_t)C, C);
        db += dvalues[i];
    }
    m->grads.scoreb[0] += (float)db;
    rlhf__backward_trunk(m);
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_model_adamw_update(rlhf_model *m, const rlhf_adamw_config *opt, float *grad_norm) {
    double norm, bc1, bc2;
    float clip_coef = 1.0f, step_size, bc2_sqrt;
    long t;
    if (!m || !opt) return RLHF_ERR_INVALID_ARGUMENT;
    if (!m->grad_mem)
        return rlhf__fail(m, RLHF_ERR_STATE, "rlhf_model_adamw_update: no gradients (run a backward first)");
    if (!(opt->lr >= 0.0f) || !(opt->beta1 >= 0.0f && opt->beta1 < 1.0f) ||
        !(opt->beta2 >= 0.0f && opt->beta2 < 1.0f) || !(opt->eps >= 0.0f) || !(opt->weight_decay >= 0.0f))
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_model_adamw_update: need lr, eps, weight_decay >= 0 and betas in [0, 1) (lr=%g "
                          "beta1=%g beta2=%g eps=%g wd=%g)",
                          (double)opt->lr, (double)opt->beta1, (double)opt->beta2, (double)opt->eps,
                          (double)opt->weight_decay);
    /* global 2-norm of all gradients, as torch.nn.utils.clip_grad_norm_ */
    norm = sqrt(rlhf__sumsq(m->grad_mem, m->num_params));
    if (grad_norm) *grad_norm = (float)norm;
    if (!isfinite(norm))
        return rlhf__fail(m, RLHF_ERR_NON_FINITE, "rlhf_model_adamw_update: gradient norm is %g; update %ld skipped",
                          norm, m->adam_steps + 1);
    if (opt->grad_clip > 0.0f) {
        /* clip_coef = max_norm / (norm + 1e-6), applied only when below 1 (torch's epsilon) */
        double coef = (double)opt->grad_clip / (norm + 1e-6);
        if (coef < 1.0) clip_coef = (float)coef;
    }
    t = ++m->adam_steps;
    bc1 = 1.0 - pow((double)opt->beta1, (double)t);
    bc2 = 1.0 - pow((double)opt->beta2, (double)t);
    step_size = (float)((double)opt->lr / bc1);
    bc2_sqrt = (float)sqrt(bc2);
    /* every tensor in one parallel region, the clip folded into the update */
    RLHF__OMP(omp parallel num_threads(rlhf__nt((double)m->num_params)))
    {
        int i;
        for (i = 0; i < m->n_tensors; i++) {
            const rlhf__tensor *x = &m->tensors[i];
            float decay = x->decay ? (float)(1.0 - (double)opt->lr * (double)opt->weight_decay) : 1.0f;
            rlhf__adamw_tasks(m->param_mem + x->offset, m->m_mem + x->offset, m->v_mem + x->offset,
                              m->grad_mem + x->offset, x->numel, opt->beta1, opt->beta2, opt->eps, decay, step_size,
                              bc2_sqrt, clip_coef);
        }
    }
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_model_train_step(rlhf_model *m, const int *inputs, const int *targets, int B, int T,
                                          const rlhf_adamw_config *opt, float *loss) {
    rlhf_result r;
    float l = 0.0f;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (!targets || !opt)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_train_step: targets and opt are required");
    if (B >= 1 && T >= 1 && T <= m->cfg.n_ctx && (r = rlhf__ensure(m, B, T, 1)) != RLHF_OK) return r;
    if ((r = rlhf_model_forward(m, inputs, targets, B, T, NULL, &l)) != RLHF_OK) return r;
    if (loss) *loss = l;
    if (!isfinite(l))
        return rlhf__fail(m, RLHF_ERR_NON_FINITE, "rlhf_model_train_step: loss is %g; update %ld skipped", (double)l,
                          m->adam_steps + 1);
    rlhf_model_zero_grad(m);
    if ((r = rlhf_model_backward(m)) != RLHF_OK) return r;
    return rlhf_model_adamw_update(m, opt, NULL);
}

RLHFDEF rlhf_result rlhf_model_logits(rlhf_model *m, const int *inputs, int B, int T, float *logits) {
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (!logits) return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_logits: logits is NULL");
    return rlhf_model_forward(m, inputs, NULL, B, T, logits, NULL);
}

/* ---- KV cache and one-token decode -------------------------------------------
   For each layer, the keys and values of every position seen so far, so a new
   token costs one pass over the weights instead of a full re-forward. */
struct rlhf_kv_cache {
    rlhf_config cfg;
    int n_seq, max_len, len;
    float *k, *v;                  /* (L, n_seq, max_len, C) */
    float *x, *x2, *ln, *mean, *rstd, *qkv, *atty, *fch, *fch_gelu, *att, *logits; /* per-step scratch */
    float *mem;
    int *n_pad;  /* (n_seq) left padding of each sequence, set by the prefill */
    int *doc;    /* (n_seq, max_len) document starts of a padded prefill */
};

RLHFDEF rlhf_result rlhf_kv_cache_create(rlhf_kv_cache **out, const rlhf_model *m, int n_seq, int max_len) {
    rlhf_kv_cache *c;
    size_t C, L, N, P, kv, total;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!m || n_seq < 1 || max_len < 1 || max_len > m->cfg.n_ctx) return RLHF_ERR_INVALID_ARGUMENT;
    C = (size_t)m->cfg.n_embd; L = (size_t)m->cfg.n_layer; N = (size_t)n_seq; P = (size_t)max_len;
    { /* refuse before multiplying in size_t (32-bit hosts included) */
        double floats = (double)L * (double)N * (double)P * (double)C * 2 +
                        (double)N * ((double)C * 12 + 2 + (double)m->cfg.n_head * (double)P + m->cfg.vocab_size);
        if (floats * 4.0 > (double)(size_t)-1 / 2 || floats > 1e13 || (double)N * m->cfg.n_head > 2147483647.0)
            return RLHF_ERR_SIZE_OVERFLOW;
    }
    kv = L * N * P * C;
    total = 2 * kv + N * (C * 2 + C + 2 + 3 * C + C + 8 * C) + N * (size_t)m->cfg.n_head * P +
            N * (size_t)m->cfg.vocab_size;
    c = (rlhf_kv_cache *)rlhf__alloc(sizeof *c);
    if (!c) return RLHF_ERR_OUT_OF_MEMORY;
    memset(c, 0, sizeof *c);
    c->mem = rlhf__alloc_floats(total);
    c->n_pad = (int *)rlhf__alloc(N * sizeof(int));
    c->doc = (int *)rlhf__alloc(N * P * sizeof(int));
    if (!c->mem || !c->n_pad || !c->doc) {
        rlhf__free(c->mem);
        rlhf__free(c->n_pad);
        rlhf__free(c->doc);
        rlhf__free(c);
        return RLHF_ERR_OUT_OF_MEMORY;
    }
    /* every page touched now, once: left to the decode, each new position's
       first write into a layer's keys and values faults a page in, 18 faults a
       token on GPT-2-124M, which cost ~0.3 ms of a 9 ms token in a VM here */
    memset(c->mem, 0, total * sizeof(float));
    memset(c->n_pad, 0, N * sizeof(int));
    c->cfg = m->cfg;
    c->n_seq = n_seq;
    c->max_len = max_len;
    c->k = c->mem;             c->v = c->k + kv;
    c->x = c->v + kv;          c->x2 = c->x + N * C;     c->ln = c->x2 + N * C;
    c->mean = c->ln + N * C;   c->rstd = c->mean + N;    c->qkv = c->rstd + N;
    c->atty = c->qkv + N * 3 * C; c->fch = c->atty + N * C; c->fch_gelu = c->fch + N * 4 * C;
    c->att = c->fch_gelu + N * 4 * C; c->logits = c->att + N * (size_t)m->cfg.n_head * P;
    *out = c;
    return RLHF_OK;
}
RLHFDEF void rlhf_kv_cache_free(rlhf_kv_cache *c) {
    if (!c) return;
    rlhf__free(c->n_pad);
    rlhf__free(c->doc);
    rlhf__free(c->mem);
    rlhf__free(c);
}
RLHFDEF void rlhf_kv_cache_reset(rlhf_kv_cache *c) {
    if (!c) return;
    c->len = 0;
    memset(c->n_pad, 0, (size_t)c->n_seq * sizeof(int));
}
RLHFDEF int rlhf_kv_cache_length(const rlhf_kv_cache *c) { return c ? c->len : 0; }

/* keys and values of layer l for positions 0..T-1 of every sequence, from
   qkv (N,T,3C), into the cache */
static void rlhf__cache_store(rlhf_kv_cache *c, int l, const float *qkv, int N, int T) {
    int C = c->cfg.n_embd, sq, t;
    float *kl = c->k + (ptrdiff_t)l * N * c->max_len * C, *vl = c->v + (ptrdiff_t)l * N * c->max_len * C;
    for (sq = 0; sq < N; sq++)
        for (t = 0; t < T; t++) {
            const float *row = qkv + ((ptrdiff_t)sq * T + t) * 3 * C;
            memcpy(kl + ((ptrdiff_t)sq * c->max_len + t) * C, row + C, (size_t)C * sizeof(float));
            memcpy(vl + ((ptrdiff_t)sq * c->max_len + t) * C, row + 2 * C, (size_t)C * sizeof(float));
        }
}

/* The forward pass without caches (no backward will follow): the same
   block as rlhf__forward, so the logits are identical, through one layer's
   scratch. logits (B,T,V) may be NULL; values (B,T), if not NULL, receive
   the scalar head's output. doc (B,T) or NULL: the document starts
   (rlhf__attention_forward). With a KV cache (prefill: B = its n_seq,
   empty), each layer's keys and values are copied into it, and logits (B,V)
   are those of the last position only. */

/* inference: attention through a row of scratch; a prefill's keys and values into the cache */
static void rlhf__attend_infer(const rlhf__attn *a, int l, const float *qkv, float *atty) {
    if (a->cache) rlhf__cache_store(a->cache, l, qkv, a->B, a->T);
    rlhf__attention_forward(atty, NULL, a->rows, qkv, a->doc, a->B, a->T, a->m->cfg.n_embd, a->m->cfg.n_head,
                            a->m->work);
}

static void rlhf__forward_infer(rlhf_model *m, const int *inputs, const int *doc, int B, int T, float *logits,
                                float *values, rlhf_kv_cache *cache) {
    int C = m->cfg.n_embd, V = m->cfg.vocab_size, L = m->cfg.n_layer, l;
    size_t BT = (size_t)B * (size_t)T, BTC = BT * (size_t)C;
    rlhf__params *p = &m->params;
    float *x = m->inf_mem, *x2 = x + BTC, *ln = x2 + BTC, *atty = ln + BTC, *mean = atty + BTC, *rstd = mean + BT;
    float *qkv = rstd + BT, *fch = qkv + 3 * BTC, *fch_gelu = fch + 4 * BTC, *rows = fch_gelu + 4 * BTC;
    rlhf__block_io io;
    rlhf__attn attn;

    /* one layer's scratch, reused by every layer: the block reads x and writes x */
    io.x = x, io.out = x, io.x2 = x2, io.qkv = qkv, io.atty = atty, io.fch = fch, io.fch_gelu = fch_gelu;
    io.ln1 = io.ln2 = ln, io.ln1_mean = io.ln2_mean = mean, io.ln1_rstd = io.ln2_rstd = rstd;
    memset(&attn, 0, sizeof attn);
    attn.fn = rlhf__attend_infer, attn.m = m, attn.doc = doc, attn.B = B, attn.T = T, attn.rows = rows,
    attn.cache = cache;
    rlhf__encoder_forward(x, inputs, doc, p->wte, p->wpe, B, T, C);
    for (l = 0; l < L; l++) rlhf__block_forward(m, l, (int)BT, &io, &attn);

    /* the final LayerNorm and the heads; with a cache only each sequence's last position */
    if (cache) {
        int b;
        for (b = 0; b < B; b++)
            memcpy(x2 + (ptrdiff_t)b * C, x + ((ptrdiff_t)b * T + T - 1) * C, (size_t)C * sizeof(float));
        rlhf__layernorm_forward(ln, mean, rstd, x2, p->lnfw, p->lnfb, B, C);
        if (logits) rlhf__gemm(B, V, C, ln, C, 1, p->wte, 1, C, logits, V, 0, m->work);
        return;
    }
    rlhf__layernorm_forward(ln, mean, rstd, x, p->lnfw, p->lnfb, (int)BT, C);
    if (logits) rlhf__gemm((int)BT, V, C, ln, C, 1, p->wte, 1, C, logits, V, 0, m->work);
    if (values) rlhf__score_forward(values, ln, p->scorew, p->scoreb, BT, C);
}

RLHFDEF rlhf_result rlhf_model_prefill(rlhf_model *m, rlhf_kv_cache *c, const int *tokens, int T, float *logits) {
    return rlhf_model_prefill_padded(m, c, tokens, NULL, T, logits);
}
RLHFDEF rlhf_result rlhf_model_prefill_padded(rlhf_model *m, rlhf_kv_cache *c, const int *tokens, const int *n_pad,
                                              int T, float *logits) {
    rlhf_result r;
    int s;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (!c || !tokens || T < 1)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_prefill: need a cache, tokens and T >= 1");
    if (memcmp(&c->cfg, &m->cfg, sizeof m->cfg) != 0)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_model_prefill: the cache was made for a model of another shape");
    if (c->len != 0)
        return rlhf__fail(m, RLHF_ERR_STATE, "rlhf_model_prefill: the cache is not empty (reset it first)");
    if (T > c->max_len)
        return rlhf__fail(m, RLHF_ERR_CONTEXT_FULL, "rlhf_model_prefill: %d tokens do not fit the cache (%d)", T,
                          c->max_len);
    if ((r = rlhf__check_ids(m, tokens, c->n_seq, T, 0, "tokens")) != RLHF_OK) return r;
    for (s = 0; n_pad && s < c->n_seq; s++)
        if (n_pad[s] < 0 || n_pad[s] >= T)
            return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                              "rlhf_model_prefill_padded: sequence %d: n_pad %d must be in [0, T-1=%d]", s, n_pad[s],
                              T - 1);
    if ((r = rlhf__ensure_infer(m, (size_t)c->n_seq * (size_t)T)) != RLHF_OK) return r;
    for (s = 0; s < c->n_seq; s++) c->n_pad[s] = n_pad ? n_pad[s] : 0;
    if (n_pad) rlhf_doc_left_pad(c->doc, n_pad, c->n_seq, T);
    rlhf__forward_infer(m, tokens, n_pad ? c->doc : NULL, c->n_seq, T, c->logits, NULL, c);
    if (logits) memcpy(logits, c->logits, (size_t)c->n_seq * (size_t)m->cfg.vocab_size * sizeof(float));
    c->len = T;
    return RLHF_OK;
}

/* decoding: the new position's key and value appended to the cache, then
   its attention over positions n_pad..pos (the training kernel's row) */
static void rlhf__attend_decode(const rlhf__attn *a, int l, const float *qkv, float *atty) {
    rlhf_kv_cache *c = a->cache;
    int C = c->cfg.n_embd, NH = c->cfg.n_head, hs = C / NH, N = c->n_seq, pos = c->len, s, sh;
    float *kl = c->k + (ptrdiff_t)l * N * c->max_len * C, *vl = c->v + (ptrdiff_t)l * N * c->max_len * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (s = 0; s < N; s++) {
        memcpy(kl + ((ptrdiff_t)s * c->max_len + pos) * C, qkv + (ptrdiff_t)s * 3 * C + C, (size_t)C * sizeof(float));
        memcpy(vl + ((ptrdiff_t)s * c->max_len + pos) * C, qkv + (ptrdiff_t)s * 3 * C + 2 * C,
               (size_t)C * sizeof(float));
    }
    RLHF__OMP(omp parallel for schedule(dynamic) num_threads(rlhf__nt((double)N * (pos + 1) * C / 8.0)))
    for (sh = 0; sh < N * NH; sh++) {
        int sq = sh / NH, h = sh % NH, s0 = c->n_pad[sq];
        rlhf__attend_row(atty + (ptrdiff_t)sq * C + h * hs, c->att + (ptrdiff_t)sh * c->max_len,
                         qkv + (ptrdiff_t)sq * 3 * C + h * hs, kl + ((ptrdiff_t)sq * c->max_len + s0) * C + h * hs,
                         vl + ((ptrdiff_t)sq * c->max_len + s0) * C + h * hs, (size_t)C, pos + 1 - s0, hs, scale);
    }
}

RLHFDEF rlhf_result rlhf_model_decode(rlhf_model *m, rlhf_kv_cache *c, const int *tokens, float *logits) {
    int C, L, V, N, pos, l, s;
    rlhf__params *p;
    rlhf__block_io io;
    rlhf__attn attn;
    rlhf_result r;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (!c || !tokens)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_decode: cache and tokens are required");
    if (memcmp(&c->cfg, &m->cfg, sizeof m->cfg) != 0)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_model_decode: the cache was made for a model of another shape");
    if (c->len >= c->max_len)
        return rlhf__fail(m, RLHF_ERR_CONTEXT_FULL, "rlhf_model_decode: the cache is full (%d positions)", c->max_len);
    if ((r = rlhf__check_ids(m, tokens, 1, c->n_seq, 0, "tokens")) != RLHF_OK) return r;
    C = m->cfg.n_embd; L = m->cfg.n_layer; V = m->cfg.vocab_size;
    N = c->n_seq; pos = c->len; p = &m->params;

    /* the new token of each sequence; position ids count from the end of its left padding */
    for (s = 0; s < N; s++) {
        const float *te = p->wte + (ptrdiff_t)tokens[s] * C, *pe = p->wpe + (ptrdiff_t)(pos - c->n_pad[s]) * C;
        int i;
        for (i = 0; i < C; i++) c->x[(ptrdiff_t)s * C + i] = te[i] + pe[i];
    }

    /* the blocks, one row per sequence, through the cache's scratch */
    io.x = c->x, io.out = c->x, io.x2 = c->x2, io.qkv = c->qkv, io.atty = c->atty, io.fch = c->fch,
    io.fch_gelu = c->fch_gelu;
    io.ln1 = io.ln2 = c->ln, io.ln1_mean = io.ln2_mean = c->mean, io.ln1_rstd = io.ln2_rstd = c->rstd;
    memset(&attn, 0, sizeof attn);
    attn.fn = rlhf__attend_decode, attn.m = m, attn.cache = c;
    for (l = 0; l < L; l++) rlhf__block_forward(m, l, N, &io, &attn);

    /* the final LayerNorm and the LM head */
    rlhf__layernorm_forward(c->ln, c->mean, c->rstd, c->x, p->lnfw, p->lnfb, N, C);
    rlhf__gemm(N, V, C, c->ln, C, 1, p->wte, 1, C, logits ? logits : c->logits, V, 0, m->work);
    if (logits) memcpy(c->logits, logits, (size_t)N * (size_t)V * sizeof(float));
    c->len++;
    return RLHF_OK;
}

/* ---- sampling ---------------------------------------------------------------- */
typedef struct rlhf__prob_index { float p; int i; } rlhf__prob_index;
struct rlhf_sampler {
    rlhf_sampler_config cfg;
    int V;
    rlhf__prob_index *cand; /* (V) */
};

RLHFDEF rlhf_sampler_config rlhf_sampler_config_default(void) {
    rlhf_sampler_config c;
    c.temperature = 1.0f;
    c.top_k = 0;
    c.top_p = 1.0f;
    return c;
}
RLHFDEF rlhf_result rlhf_sampler_create(rlhf_sampler **out, int vocab_size, const rlhf_sampler_config *cfg) {
    rlhf_sampler *s;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (vocab_size < 1 || !cfg || !(cfg->temperature >= 0.0f) || cfg->top_k < 0 ||
        !(cfg->top_p > 0.0f && cfg->top_p <= 1.0f))
        return RLHF_ERR_INVALID_ARGUMENT;
    s = (rlhf_sampler *)rlhf__alloc(sizeof *s);
    if (!s) return RLHF_ERR_OUT_OF_MEMORY;
    s->cand = (rlhf__prob_index *)rlhf__alloc((size_t)vocab_size * sizeof(rlhf__prob_index));
    if (!s->cand) {
        rlhf__free(s);
        return RLHF_ERR_OUT_OF_MEMORY;
    }
    s->cfg = *cfg;
    s->V = vocab_size;
    *out = s;
    return RLHF_OK;
}
RLHFDEF void rlhf_sampler_free(rlhf_sampler *s) {
    if (!s) return;
    rlhf__free(s->cand);
    rlhf__free(s);
}

/* a ranks before b: higher probability, then lower id (a strict total order,
   so every selection and sort below is deterministic) */
static int rlhf__ranks_before(const rlhf__prob_index *a, const rlhf__prob_index *b) {
    return a->p > b->p || (a->p == b->p && a->i < b->i);
}
static int rlhf__cmp_prob_desc(const void *x, const void *y) {
    const rlhf__prob_index *a = (const rlhf__prob_index *)x, *b = (const rlhf__prob_index *)y;
    return rlhf__ranks_before(a, b) ? -1 : rlhf__ranks_before(b, a) ? 1 : 0;
}
/* restore the heap property below node i of a heap whose root ranks LAST */
static void rlhf__sift_down(rlhf__prob_index *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        rlhf__prob_index tmp;
        if (l < n && rlhf__ranks_before(&h[w], &h[l])) w = l;
        if (r < n && rlhf__ranks_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        tmp = h[i]; h[i] = h[w]; h[w] = tmp;
        i = w;
    }
}

RLHFDEF int rlhf_sampler_sample(rlhf_sampler *s, const float *logits, rlhf_rng *rng) {
    int V, n, i, best = -1;
    float maxv = -INFINITY, mass = 0.0f, r;
    if (!s || !logits || !rng) return -1;
    V = s->V;
    for (i = 0; i < V; i++) /* NaN compares false: never the maximum */
        if (logits[i] > maxv) {
            maxv = logits[i];
            best = i;
        }
    if (best < 0) return -1;
    if (s->cfg.temperature == 0.0f || s->cfg.top_k == 1 || maxv == INFINITY) return best; /* greedy */
    /* p_i = exp((l_i - max) / temperature), unnormalised; NaN logits get 0 */
    for (i = 0; i < V; i++) {
        float l = logits[i];
        s->cand[i].p = l == l ? expf((l - maxv) / s->cfg.temperature) : 0.0f;
        s->cand[i].i = i;
    }
    n = V;
    if (s->cfg.top_k > 0 && s->cfg.top_k < V) {
        /* keep the k best: a heap whose root is the worst kept, O(V log k) */
        int k = s->cfg.top_k;
        for (i = k / 2 - 1; i >= 0; i--) rlhf__sift_down(s->cand, k, i);
        for (i = k; i < V; i++)
            if (rlhf__ranks_before(&s->cand[i], &s->cand[0])) {
                s->cand[0] = s->cand[i];
                rlhf__sift_down(s->cand, k, 0);
            }
        n = k;
    }
    for (i = 0; i < n; i++) mass += s->cand[i].p;
    if (s->cfg.top_p < 1.0f) {
        /* nucleus (Holtzman et al. 2020): the smallest prefix of the sorted
           candidates whose mass reaches top_p. A token below
           (1 - top_p) * mass / (n - 1) can never be in it, so those are
           dropped before sorting (llama2.c's trick). */
        float cutoff = n > 1 ? (1.0f - s->cfg.top_p) * mass / (float)(n - 1) : 0.0f, cum = 0.0f, pmax = 0.0f;
        int kept = 0;
        /* the bound holds for every token but the most likely one, which is
           always kept (as Hugging Face's min_tokens_to_keep = 1) */
        for (i = 0; i < n; i++)
            if (s->cand[i].p > pmax) pmax = s->cand[i].p;
        if (cutoff > pmax) cutoff = pmax;
        for (i = 0; i < n; i++)
            if (s->cand[i].p >= cutoff) s->cand[kept++] = s->cand[i];
        qsort(s->cand, (size_t)kept, sizeof *s->cand, rlhf__cmp_prob_desc);
        for (i = 0; i < kept; i++) {
            cum += s->cand[i].p;
            if (cum >= s->cfg.top_p * mass) {
                i++;
                break;
            }
        }
        n = i < kept ? i : kept;
        for (mass = 0.0f, i = 0; i < n; i++) mass += s->cand[i].p;
    }
    r = rlhf_rng_float(rng) * mass;
    for (i = 0; i < n; i++) {
        r -= s->cand[i].p;
        if (r < 0.0f) return s->cand[i].i;
    }
    /* rounding left r >= 0: the last candidate that has any probability */
    for (i = n - 1; i > 0 && s->cand[i].p == 0.0f; i--) {}
    return s->cand[i].i;
}

RLHFDEF rlhf_result rlhf_model_generate(rlhf_model *m, rlhf_kv_cache *c, rlhf_sampler *s, rlhf_rng *rng,
                                        const int *prompt, int n_prompt, int max_new, int eos, int *out, int *n_out) {
    int i, tok;
    rlhf_result r;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (n_out) *n_out = 0;
    if (!c || !s || !rng || !prompt || n_prompt < 1 || max_new < 0 || (max_new > 0 && !out) || !n_out ||
        c->n_seq != 1 || s->V != m->cfg.vocab_size)
        return rlhf__fail(
            m, RLHF_ERR_INVALID_ARGUMENT,
            "rlhf_model_generate: need a one-sequence cache, a sampler for V=%d, an rng, a non-empty prompt and out",
            m->cfg.vocab_size);
    if (n_prompt > c->max_len)
        return rlhf__fail(m, RLHF_ERR_CONTEXT_FULL,
                          "rlhf_model_generate: prompt of %d tokens does not fit the cache (%d)", n_prompt, c->max_len);
    rlhf_kv_cache_reset(c);
    if ((r = rlhf_model_prefill(m, c, prompt, n_prompt, NULL)) != RLHF_OK) return r;
    for (i = 0; i < max_new; i++) {
        tok = rlhf_sampler_sample(s, c->logits, rng);
        if (tok < 0)
            return rlhf__fail(m, RLHF_ERR_NON_FINITE, "rlhf_model_generate: logits are all NaN or -inf at step %d", i);
        out[(*n_out)++] = tok;
        if (tok == eos || c->len >= c->max_len) break; /* stop after EOS, or when the cache is full */
        if ((r = rlhf_model_decode(m, c, &tok, NULL)) != RLHF_OK) return r;
    }
    return RLHF_OK;
}

// ----------------------------------------------------------------------------
// >>io  safetensors checkpoints: metadata store, writer (atomic, through rlhf__out), strict reader
// ----------------------------------------------------------------------------

RLHFDEF const char *rlhf_model_meta(const rlhf_model *m, const char *key) {
    int i;
    if (!m || !key) return NULL;
    for (i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta[2 * i], key) == 0) return m->meta[2 * i + 1];
    return NULL;
}
/* set without the reserved-key check (the loader uses it) */
static rlhf_result rlhf__set_meta(rlhf_model *m, const char *key, const char *value) {
    int i;
    char *v = NULL;
    for (i = 0; i < m->n_meta && strcmp(m->meta[2 * i], key) != 0; i++) {}
    if (!value) { /* remove: move the last pair into the hole */
        if (i == m->n_meta) return RLHF_OK;
        rlhf__free(m->meta[2 * i]);
        rlhf__free(m->meta[2 * i + 1]);
        m->n_meta--;
        m->meta[2 * i] = m->meta[2 * m->n_meta];
        m->meta[2 * i + 1] = m->meta[2 * m->n_meta + 1];
        return RLHF_OK;
    }

    /* replace the value of key i, or append the pair (growing the table) */
    if (!(v = rlhf__strdup(value))) return RLHF_ERR_OUT_OF_MEMORY;
    if (i < m->n_meta) {
        rlhf__free(m->meta[2 * i + 1]);
        m->meta[2 * i + 1] = v;
        return RLHF_OK;
    }
    if (m->n_meta == m->cap_meta) {
        int cap = m->cap_meta ? 2 * m->cap_meta : 8;
        char **nm = (char **)rlhf__alloc((size_t)cap * 2 * sizeof(char *));
        if (!nm) { rlhf__free(v); return RLHF_ERR_OUT_OF_MEMORY; }
        if (m->n_meta) memcpy(nm, m->meta, (size_t)m->n_meta * 2 * sizeof(char *));
        rlhf__free(m->meta);
        m->meta = nm;
        m->cap_meta = cap;
    }
    if (!(m->meta[2 * m->n_meta] = rlhf__strdup(key))) { rlhf__free(v); return RLHF_ERR_OUT_OF_MEMORY; }
    m->meta[2 * m->n_meta + 1] = v;
    m->n_meta++;
    return RLHF_OK;
}
static int rlhf__reserved_meta(const char *key) {
    return strcmp(key, "format") == 0 || strcmp(key, "config") == 0 || strcmp(key, "optim.step") == 0 ||
           strncmp(key, "rlhf.", 5) == 0;
}
RLHFDEF rlhf_result rlhf_model_set_meta(rlhf_model *m, const char *key, const char *value) {
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (!key || !*key || !rlhf__valid_utf8(key, strlen(key)) || (value && !rlhf__valid_utf8(value, strlen(value))))
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_model_set_meta: key and value must be non-empty UTF-8 strings");
    if (rlhf__reserved_meta(key))
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_set_meta: \"%s\" is reserved for the library", key);
    return rlhf__set_meta(m, key, value);
}

RLHFDEF rlhf_result rlhf_model_set_tokenizer(rlhf_model *m, const rlhf_tokenizer *t) {
    size_t len = 0;
    char *json;
    rlhf_result r;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (!t) return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_set_tokenizer: no tokenizer");
    if (t->n_vocab > m->cfg.vocab_size)
        return rlhf__fail(m, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_model_set_tokenizer: the tokenizer has %d tokens but the model's vocabulary only %d",
                          t->n_vocab, m->cfg.vocab_size);
    if (!(json = rlhf__tokenizer_json(t, &len)))
        return rlhf__fail(m, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model_set_tokenizer: out of memory");
    r = rlhf__set_meta(m, "tokenizer", json);
    rlhf__free(json);
    return r;
}
RLHFDEF rlhf_result rlhf_tokenizer_from_model(rlhf_tokenizer **out, const rlhf_model *m, rlhf_error *err) {
    const char *json = rlhf_model_meta(m, "tokenizer");
    if (err) err->message[0] = 0;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!json)
        return rlhf__st_err(err, RLHF_ERR_STATE, "rlhf_tokenizer_from_model",
                            "the model has no tokenizer in its metadata");
    return rlhf__tokenizer_from_json(out, json, strlen(json), "the model's tokenizer metadata", err);
}

/* ---- bytes: safetensors is little-endian on every host ----------------------- */
static int rlhf__host_le(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}
static void rlhf__put_u64le(unsigned char *o, uint64_t v) {
    int k;
    for (k = 0; k < 8; k++) o[k] = (unsigned char)(v >> (8 * k));
}
static uint64_t rlhf__get_u64le(const unsigned char *b) {
    uint64_t v = 0;
    int k;
    for (k = 7; k >= 0; k--) v = v << 8 | b[k];
    return v;
}
/* IEEE half (F16) and bfloat16 (BF16) to float */
static float rlhf__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, bits;
    float f;
    if (e == 0) { /* zero or subnormal: m * 2^-24 exactly */
        f = (float)m * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    bits = sign | (e == 31 ? 0x7F800000u | m << 13 : (e + 112) << 23 | m << 13);
    memcpy(&f, &bits, 4);
    return f;
}
static float rlhf__bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- writing ---------------------------------------------------------------------- */
#define RLHF__SAVE_IN_PLACE 0x100 /* private flag of rlhf_model_save_ex: write path itself (see rlhf__out_open) */

/* floats as little-endian bytes, through a staging buffer on big-endian hosts */
static void rlhf__out_floats(rlhf__out *o, const float *x, size_t n) {
    if (rlhf__host_le()) {
        rlhf__out_write(o, x, n * sizeof(float));
        return;
    }
    while (n > 0) {
        unsigned char buf[4096];
        size_t k, chunk = n < 1024 ? n : 1024;
        for (k = 0; k < chunk; k++) {
            uint32_t u;
            memcpy(&u, x + k, 4);
            buf[4 * k] = (unsigned char)u; buf[4 * k + 1] = (unsigned char)(u >> 8);
            buf[4 * k + 2] = (unsigned char)(u >> 16); buf[4 * k + 3] = (unsigned char)(u >> 24);
        }
        rlhf__out_write(o, buf, 4 * chunk);
        x += chunk;
        n -= chunk;
    }
}

RLHFDEF rlhf_result rlhf_model_save(const rlhf_model *m, const char *path) {
    return rlhf_model_save_ex(m, path, 0, NULL);
}

RLHFDEF rlhf_result rlhf_model_save_ex(const rlhf_model *m, const char *path, int flags, rlhf_error *err) {
    int with_optim, pass, i;
    rlhf__sb h = {NULL, 0, 0, 0};
    uint64_t off = 0;
    unsigned char len8[8];
    rlhf__out o;
    rlhf_result r;
    if (err) err->message[0] = 0;
    if (!m) return RLHF_ERR_INVALID_ARGUMENT;
    if (!path || !*path) return rlhf__st_err(err, RLHF_ERR_INVALID_ARGUMENT, "rlhf_model_save", "no path");
    with_optim = m->m_mem && !(flags & RLHF_SAVE_WEIGHTS_ONLY);

    /* header: metadata, then every tensor in table order (then the moments) */
    rlhf__sb_str(&h, "{\"__metadata__\":{\"format\":\"pt\",\"rlhf.version\":\"" RLHF_VERSION_STRING "\",\"config\":");
    {
        char cfg[256];
        snprintf(cfg, sizeof cfg, "{\"vocab_size\":%d,\"n_positions\":%d,\"n_layer\":%d,\"n_head\":%d,\"n_embd\":%d}",
                 m->cfg.vocab_size, m->cfg.n_ctx, m->cfg.n_layer, m->cfg.n_head, m->cfg.n_embd);
        rlhf__sb_json(&h, cfg);
    }
    if (with_optim) rlhf__sb_fmt(&h, ",\"optim.step\":\"%ld\"", m->adam_steps);
    for (i = 0; i < m->n_meta; i++) {
        rlhf__sb_str(&h, ",");
        rlhf__sb_json(&h, m->meta[2 * i]);
        rlhf__sb_str(&h, ":");
        rlhf__sb_json(&h, m->meta[2 * i + 1]);
    }
    rlhf__sb_str(&h, "}");
    for (pass = 0; pass < (with_optim ? 3 : 1); pass++)
        for (i = 0; i < m->n_tensors; i++) {
            const rlhf__tensor *t = &m->tensors[i];
            uint64_t bytes = (uint64_t)t->numel * 4;
            rlhf__sb_fmt(&h, ",\"%s%s\":{\"dtype\":\"F32\",\"shape\":[%d",
                         pass == 0 ? "" : pass == 1 ? "optim.m." : "optim.v.", t->name, t->shape[0]);
            if (t->ndim == 2) rlhf__sb_fmt(&h, ",%d", t->shape[1]);
            rlhf__sb_fmt(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                         (unsigned long long)(off + bytes));
            off += bytes;
        }
    rlhf__sb_str(&h, "}");
    while (!h.oom && (h.len + 8) % 8) rlhf__sb_add(&h, " ", 1); /* writers pad the header to a multiple of 8 */
    if (h.oom) {
        rlhf__free(h.p);
        return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model_save", "out of memory building the header for %s",
                            path);
    }

    /* whole or not at all: a temporary file renamed over path (or path itself, journaled by the caller) */
    if ((r = rlhf__out_open(&o, path, (flags & RLHF__SAVE_IN_PLACE) != 0)) != RLHF_OK) {
        rlhf__free(h.p);
        return rlhf__st_err(err, r, "rlhf_model_save", "%s", o.why);
    }
    rlhf__put_u64le(len8, (uint64_t)h.len);
    rlhf__out_write(&o, len8, 8);
    rlhf__out_write(&o, h.p, h.len);
    for (pass = 0; pass < (with_optim ? 3 : 1); pass++) { /* the data, in the header's order */
        const float *base = pass == 0 ? m->param_mem : pass == 1 ? m->m_mem : m->v_mem;
        for (i = 0; i < m->n_tensors; i++) rlhf__out_floats(&o, base + m->tensors[i].offset, m->tensors[i].numel);
    }
    rlhf__free(h.p);
    if ((r = rlhf__out_commit(&o)) != RLHF_OK) return rlhf__st_err(err, r, "rlhf_model_save", "%s", o.why);
    return RLHF_OK;
}

/* ---- reading ------------------------------------------------------------------------ */
typedef struct rlhf__st_entry {
    const rlhf_json *json;
    const char *name;      /* as in the file */
    int dtype, ndim;       /* dtype: index into RLHF__DTYPES */
    int64_t shape[8];
    uint64_t begin, end;
} rlhf__st_entry;
static const struct { const char *name; int size; } RLHF__DTYPES[] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U8", 1},
    {"U16", 2}, {"U32", 4}, {"U64", 8}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
#define RLHF__NUM_DTYPES (int)(sizeof RLHF__DTYPES / sizeof RLHF__DTYPES[0])

static int rlhf__cmp_entry_offset(const void *a, const void *b) {
    const rlhf__st_entry *x = (const rlhf__st_entry *)a, *y = (const rlhf__st_entry *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

/* An integer field of a config object, in [1, 2^30]. */
static rlhf_result rlhf__cfg_int(const rlhf_json *o, const char *key, const char *alt, int *out, const char *src,
                                 const char *path, rlhf_error *err) {
    const rlhf_json *v = rlhf_json_get(o, key);
    int64_t x;
    if (!v && alt) v = rlhf_json_get(o, alt);
    if (!v) return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s has no \"%s\"", src, key);
    if (!rlhf_json_int64(v, &x) || x < 1 || x > (1 << 30))
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s: \"%s\" must be an integer from 1 to 2^30, got %s", src, key,
                            v->type == RLHF_JSON_NUMBER ? v->str : "a non-number");
    *out = (int)x;
    return RLHF_OK;
}
/* A GPT-2 config from {"vocab_size", "n_positions" (or "n_ctx"), "n_layer",
   "n_head", "n_embd"} plus Hugging Face's options, which must describe the
   architecture rlhf.h implements. */
static rlhf_result rlhf__parse_config(const rlhf_json *o, rlhf_config *c, const char *src, const char *path,
                                      rlhf_error *err) {
    rlhf_result r;
    const rlhf_json *v;
    if (!o || o->type != RLHF_JSON_OBJECT)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s is not a JSON object", src);
    if ((r = rlhf__cfg_int(o, "vocab_size", NULL, &c->vocab_size, src, path, err)) != RLHF_OK ||
        (r = rlhf__cfg_int(o, "n_positions", "n_ctx", &c->n_ctx, src, path, err)) != RLHF_OK ||
        (r = rlhf__cfg_int(o, "n_layer", NULL, &c->n_layer, src, path, err)) != RLHF_OK ||
        (r = rlhf__cfg_int(o, "n_head", NULL, &c->n_head, src, path, err)) != RLHF_OK ||
        (r = rlhf__cfg_int(o, "n_embd", NULL, &c->n_embd, src, path, err)) != RLHF_OK)
        return r;
    if (c->n_embd % c->n_head != 0)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s: n_head %d does not divide n_embd %d", src, c->n_head,
                            c->n_embd);
    if (!rlhf__config_ok(c)) return rlhf__st_err(err, RLHF_ERR_TOO_LARGE, path, "%s: the model is too large", src);
    if ((v = rlhf_json_get(o, "activation_function")) &&
        !(v->type == RLHF_JSON_STRING && (strcmp(v->str, "gelu_new") == 0 || strcmp(v->str, "gelu_pytorch_tanh") == 0)))
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s: activation_function must be \"gelu_new\" (tanh GELU)", src);
    if ((v = rlhf_json_get(o, "layer_norm_epsilon")) &&
        !(v->type == RLHF_JSON_NUMBER && fabs(v->number - 1e-5) < 1e-12))
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s: layer_norm_epsilon must be 1e-05", src);
    if ((v = rlhf_json_get(o, "tie_word_embeddings")) && v->type == RLHF_JSON_FALSE)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s: untied word embeddings are not supported", src);
    if ((v = rlhf_json_get(o, "model_type")) && !(v->type == RLHF_JSON_STRING && strcmp(v->str, "gpt2") == 0))
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s: model_type must be \"gpt2\"", src);
    if ((v = rlhf_json_get(o, "n_inner")) && v->type != RLHF_JSON_NULL &&
        !(v->type == RLHF_JSON_NUMBER && v->number == 4.0 * c->n_embd))
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s: n_inner must be null or 4 * n_embd", src);
    if (((v = rlhf_json_get(o, "scale_attn_weights")) && v->type == RLHF_JSON_FALSE) ||
        ((v = rlhf_json_get(o, "scale_attn_by_inverse_layer_idx")) && v->type == RLHF_JSON_TRUE) ||
        ((v = rlhf_json_get(o, "reorder_and_upcast_attn")) && v->type == RLHF_JSON_TRUE))
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%s: only GPT-2's standard attention scaling is supported", src);
    return RLHF_OK;
}

/* Read entry e's elements (any of F32/F16/BF16) as floats into dst (numel). */
static int rlhf__read_floats(FILE *f, uint64_t data_start, const rlhf__st_entry *e, float *dst, size_t numel) {
    unsigned char buf[8192];
    size_t done = 0, esz = (size_t)RLHF__DTYPES[e->dtype].size;
    if (fseek(f, (long)(data_start + e->begin), SEEK_SET) != 0) return 0;
    if (e->dtype == 0 && rlhf__host_le()) return fread(dst, 4, numel, f) == numel;
    while (done < numel) {
        size_t k, chunk = numel - done < sizeof buf / 4 ? numel - done : sizeof buf / 4;
        if (fread(buf, esz, chunk, f) != chunk) return 0;
        for (k = 0; k < chunk; k++) {
            const unsigned char *b = buf + k * esz;
            if (e->dtype == 0) {
                uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
                memcpy(dst + done + k, &u, 4);
            } else {
                uint16_t u = (uint16_t)(b[0] | b[1] << 8);
                dst[done + k] = e->dtype == 1 ? rlhf__f16_to_f32(u) : rlhf__bf16_to_f32(u);
            }
        }
        done += chunk;
    }
    return 1;
}

RLHFDEF rlhf_result rlhf_model_load(rlhf_model **out, const char *path) { return rlhf_model_load_ex(out, path, NULL); }

/* The reader's state: the file, where its data begins and how long it is,
   the header's tensor entries and its __metadata__ (which point into hdoc),
   and which of the model's tensors the file held. */
typedef struct rlhf__st_reader {
    const char *path;
    rlhf_error *err;
    FILE *f;
    char *hbuf;
    rlhf_json_doc *hdoc;
    uint64_t data_start, data_size;
    rlhf__st_entry *ents;
    size_t n_ent;
    const rlhf_json *meta;
    int *found;  /* 3 per model tensor: its weights, optim.m.*, optim.v.* */
    int n_optim; /* AdamW moments read */
} rlhf__st_reader;

/* The file's header bytes into R->hbuf: the file opened, its length rules
   checked, and where the data after the header begins. */
static rlhf_result rlhf__st_read_header(rlhf__st_reader *R, uint64_t *hlen_out) {
    const char *path = R->path;
    rlhf_error *err = R->err;
    long fsize;
    unsigned char len8[8];
    uint64_t hlen;
    size_t k;
    int i, looks_json;
    R->f = fopen(path, "rb");
    if (!R->f) return rlhf__st_err(err, RLHF_ERR_IO, path, "cannot open the file");
    if (fseek(R->f, 0, SEEK_END) != 0 || (fsize = ftell(R->f)) < 0 || fseek(R->f, 0, SEEK_SET) != 0)
        return rlhf__st_err(err, RLHF_ERR_IO, path, "cannot determine the file size");

    /* rule: 8-byte little-endian header length N, N <= 100,000,000, 8 + N <= size */
    memset(len8, 0, sizeof len8);
    k = fread(len8, 1, 8, R->f);
    for (i = 0; i < (int)k && (len8[i] == ' ' || len8[i] == '\t' || len8[i] == '\r' || len8[i] == '\n'); i++) {}
    /* JSON where the length should be (a config.json, a tokenizer): its
       text read as a length is absurd, so say what the file is instead */
    looks_json = i < (int)k && (len8[i] == '{' || len8[i] == '[');
    hlen = rlhf__get_u64le(len8);
    if (looks_json && (k < 8 || hlen > (uint64_t)fsize - 8))
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "looks like a JSON file, not a safetensors checkpoint");
    if (k < 8)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "file of %ld bytes is shorter than the 8-byte header length",
                            fsize);
    if (hlen > (uint64_t)fsize - 8)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path,
                            "header length %llu is larger than the file (%ld bytes): "
                            "not a safetensors file, or truncated",
                            (unsigned long long)hlen, fsize);
    if (hlen > 100000000u)
        return rlhf__st_err(err, RLHF_ERR_TOO_LARGE, path, "header length %llu exceeds the limit of 100000000 bytes",
                            (unsigned long long)hlen);
    if (hlen == 0)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "header length is 0 (the header must be a JSON object)");

    /* the header, and where the data begins */
    R->hbuf = (char *)rlhf__alloc((size_t)hlen);
    if (!R->hbuf)
        return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory for a %llu-byte header",
                            (unsigned long long)hlen);
    if (fread(R->hbuf, 1, (size_t)hlen, R->f) != (size_t)hlen)
        return rlhf__st_err(err, RLHF_ERR_IO, path, "read error in the header");
    R->data_start = 8 + hlen;
    R->data_size = (uint64_t)fsize - R->data_start;
    *hlen_out = hlen;
    return RLHF_OK;
}

/* __metadata__ (v): an object of distinct string keys with string values,
   none holding a NUL byte */
static rlhf_result rlhf__st_check_meta(const rlhf__st_reader *R, const rlhf_json *v) {
    const rlhf_json *w;
    rlhf_result r;
    if (v->type != RLHF_JSON_OBJECT)
        return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "__metadata__ is not an object");
    if ((r = rlhf__json_dup_key(v, &w)) != RLHF_OK) return rlhf__st_err(R->err, r, R->path, "out of memory");
    if (w) return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "duplicate __metadata__ key \"%s\"", w->key);
    for (w = v->child; w; w = w->next)
        if (w->type != RLHF_JSON_STRING || strlen(w->str) != w->len || strlen(w->key) != w->key_len)
            return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                                "__metadata__ \"%s\" is not a string (or holds a NUL byte)",
                                w->key);
    return RLHF_OK;
}

/* A tensor entry's fields (only dtype, shape and data_offsets, each once),
   its dtype and its shape; *numel receives its element count. */
static rlhf_result rlhf__st_entry_shape(const rlhf__st_reader *R, const rlhf_json *v, rlhf__st_entry *e,
                                        uint64_t *numel) {
    const char *path = R->path;
    rlhf_error *err = R->err;
    const rlhf_json *w, *x;
    int i;
    for (w = v->child; w; w = w->next) {
        if (strcmp(w->key, "dtype") != 0 && strcmp(w->key, "shape") != 0 && strcmp(w->key, "data_offsets") != 0)
            return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": unknown field \"%s\"", v->key, w->key);
        if (rlhf_json_get(v, w->key) != w)
            return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": field \"%s\" appears twice", v->key, w->key);
    }

    /* dtype: one of RLHF__DTYPES */
    w = rlhf_json_get(v, "dtype");
    if (!w || w->type != RLHF_JSON_STRING)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": no \"dtype\" string", v->key);
    for (e->dtype = 0; e->dtype < RLHF__NUM_DTYPES && strcmp(w->str, RLHF__DTYPES[e->dtype].name) != 0; e->dtype++) {}
    if (e->dtype == RLHF__NUM_DTYPES)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": unknown dtype \"%s\"", v->key, w->str);

    /* shape: up to 8 sizes whose element count does not overflow */
    w = rlhf_json_get(v, "shape");
    if (!w || w->type != RLHF_JSON_ARRAY || w->len > 8)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path,
                            "tensor \"%s\": \"shape\" must be an array of at most 8 integers", v->key);
    e->ndim = (int)w->len;
    for (i = 0, x = w->child; x; x = x->next, i++) {
        if (!rlhf_json_int64(x, &e->shape[i]) || e->shape[i] < 0)
            return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": shape[%d] is not a non-negative integer",
                                v->key, i);
        if (e->shape[i] != 0 && *numel > UINT64_MAX / (uint64_t)e->shape[i])
            return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": the shape's element count overflows",
                                v->key);
        *numel *= (uint64_t)e->shape[i];
    }
    return RLHF_OK;
}

/* A tensor entry v into e: an object whose dtype and shape hold exactly the
   bytes its data_offsets span. */
static rlhf_result rlhf__st_parse_entry(const rlhf__st_reader *R, const rlhf_json *v, rlhf__st_entry *e) {
    const char *path = R->path;
    rlhf_error *err = R->err;
    const rlhf_json *w;
    int64_t b, en;
    uint64_t numel = 1, bytes;
    rlhf_result r;
    memset(e, 0, sizeof *e);
    e->json = v;
    e->name = v->key;
    if (v->type != RLHF_JSON_OBJECT)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": entry is not an object", v->key);
    if ((r = rlhf__st_entry_shape(R, v, e, &numel)) != RLHF_OK) return r;

    /* data_offsets: [begin, end) within the data */
    w = rlhf_json_get(v, "data_offsets");
    if (!w || w->type != RLHF_JSON_ARRAY || w->len != 2 || !rlhf_json_int64(w->child, &b) ||
        !rlhf_json_int64(w->child->next, &en) || b < 0 || en < 0)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path,
                            "tensor \"%s\": \"data_offsets\" must be two non-negative integers", v->key);
    if (en < b)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": data_offsets [%lld, %lld] end before they begin",
                            v->key, (long long)b, (long long)en);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;

    /* the span is the shape's bytes */
    if (numel > UINT64_MAX / (uint64_t)RLHF__DTYPES[e->dtype].size)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "tensor \"%s\": the byte size overflows", v->key);
    bytes = numel * (uint64_t)RLHF__DTYPES[e->dtype].size;
    if (bytes != e->end - e->begin)
        return rlhf__st_err(err, RLHF_ERR_PARSE, path,
                            "tensor \"%s\": %s shape holds %llu bytes but data_offsets span %llu",
                            v->key, RLHF__DTYPES[e->dtype].name, (unsigned long long)bytes,
                            (unsigned long long)(e->end - e->begin));
    return RLHF_OK;
}

/* The header (hlen bytes in R->hbuf) as JSON: an object of distinct names,
   each a tensor entry (into R->ents) or __metadata__ (R->meta). */
static rlhf_result rlhf__st_parse_header(rlhf__st_reader *R, uint64_t hlen) {
    const char *path = R->path;
    rlhf_error *err = R->err;
    rlhf_json_error je;
    const rlhf_json *root, *v;
    rlhf_result r;
    /* rule: the header is UTF-8 JSON (an object); nesting beyond a few levels is hostile */
    /* at most 2,000,000 values: ~200,000 tensors of ~10 values each, and at
       most ~200 MB of tree, whatever the header's 100 MB hold */
    if ((r = rlhf__json_parse(&R->hdoc, R->hbuf, (size_t)hlen, 8, 2000000, &je)) != RLHF_OK)
        return rlhf__st_err(err, r, path, "header byte %llu (file offset %llu): %s", (unsigned long long)je.offset,
                            (unsigned long long)(je.offset + 8), je.message);
    root = rlhf_json_root(R->hdoc);
    if (root->type != RLHF_JSON_OBJECT || R->hbuf[0] != '{') /* as the current reference reader: '{' at byte 0 */
        return rlhf__st_err(err, RLHF_ERR_PARSE, path, "the header is not a JSON object starting at its first byte");
    /* duplicate names: the reference reader lets them through; we do not
       (found by sorting, so a header of many entries stays O(n log n)) */
    if ((r = rlhf__json_dup_key(root, &v)) != RLHF_OK) return rlhf__st_err(err, r, path, "out of memory");
    if (v) return rlhf__st_err(err, RLHF_ERR_PARSE, path, "duplicate name \"%s\" in the header", v->key);

    /* every entry: __metadata__, or a tensor */
    R->ents = (rlhf__st_entry *)rlhf__alloc((root->len + 1) * sizeof *R->ents);
    if (!R->ents) return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory");
    for (v = root->child; v; v = v->next) {
        if (strlen(v->key) != v->key_len)
            return rlhf__st_err(err, RLHF_ERR_PARSE, path, "a tensor name contains a NUL byte");
        if (strcmp(v->key, "__metadata__") == 0) {
            if ((r = rlhf__st_check_meta(R, v)) != RLHF_OK) return r;
            R->meta = v;
            continue;
        }
        if ((r = rlhf__st_parse_entry(R, v, &R->ents[R->n_ent])) != RLHF_OK) return r;
        R->n_ent++;
    }
    return RLHF_OK;
}

/* rule: sorted by offset, the tensors start at 0, touch, and cover the data exactly */
static rlhf_result rlhf__st_check_layout(rlhf__st_reader *R) {
    uint64_t expect = 0;
    size_t k;
    qsort(R->ents, R->n_ent, sizeof *R->ents, rlhf__cmp_entry_offset);
    for (k = 0; k < R->n_ent; k++) {
        const rlhf__st_entry *e = &R->ents[k];
        if (e->begin != expect)
            return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                                "tensor \"%s\" starts at data offset %llu, expected %llu (%s)",
                                e->name, (unsigned long long)e->begin, (unsigned long long)expect,
                                e->begin < expect ? "it overlaps the previous tensor" : "a gap before it");
        expect = e->end;
    }
    if (expect != R->data_size)
        return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                            "the tensors cover %llu bytes of data but the file holds %llu after the header",
                            (unsigned long long)expect, (unsigned long long)R->data_size);
    return RLHF_OK;
}

/* The config from config.json beside the checkpoint (a file of at most 1 MiB). */
static rlhf_result rlhf__st_config_beside(const rlhf__st_reader *R, rlhf_config *cfg) {
    const char *path = R->path;
    size_t plen = strlen(path), clen = 0;
    char *cpath = (char *)rlhf__alloc(plen + 16), *slash, *cfgbuf;
    rlhf_json_doc *cdoc = NULL;
    rlhf_json_error je;
    rlhf_result r;
    if (!cpath) return rlhf__st_err(R->err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory");
    memcpy(cpath, path, plen + 1);
    slash = strrchr(cpath, '/');
#ifdef _WIN32
    if (!slash || strrchr(cpath, '\\') > slash) slash = strrchr(cpath, '\\');
#endif
    strcpy(slash ? slash + 1 : cpath, "config.json");

    cfgbuf = rlhf__read_small_file(cpath, 1 << 20, &clen);
    if (!cfgbuf && clen == (size_t)-1)
        r = rlhf__st_err(R->err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory reading %s", cpath);
    else if (!cfgbuf)
        r = rlhf__st_err(R->err, RLHF_ERR_PARSE, path, "no config: the metadata has none and %s cannot be read", cpath);
    else if ((r = rlhf_json_parse(&cdoc, cfgbuf, clen, 16, &je)) != RLHF_OK)
        r = rlhf__st_err(R->err, r, path, "%s:%zu:%zu: %s", cpath, je.line, je.column, je.message);
    else
        r = rlhf__parse_config(rlhf_json_root(cdoc), cfg, cpath, path, R->err);
    rlhf__free(cpath);
    rlhf__free(cfgbuf);
    rlhf_json_free(cdoc);
    return r;
}

/* The config: our metadata's, else config.json beside the file. */
static rlhf_result rlhf__st_config(const rlhf__st_reader *R, rlhf_config *cfg) {
    const rlhf_json *v;
    rlhf_json_doc *cdoc = NULL;
    rlhf_json_error je;
    rlhf_result r;
    if (!R->meta || (v = rlhf_json_get(R->meta, "config")) == NULL) return rlhf__st_config_beside(R, cfg);
    if ((r = rlhf_json_parse(&cdoc, v->str, v->len, 4, &je)) != RLHF_OK)
        r = rlhf__st_err(R->err, r, R->path, "__metadata__ config: %s", je.message);
    else
        r = rlhf__parse_config(rlhf_json_root(cdoc), cfg, "__metadata__ config", R->path, R->err);
    rlhf_json_free(cdoc);
    return r;
}

/* The values (elements) of R's tensors: each is bounded by its bytes in the file. */
static uint64_t rlhf__st_values(const rlhf__st_reader *R) {
    uint64_t sum = 0, n;
    size_t k;
    int d;
    for (k = 0; k < R->n_ent; k++) {
        for (n = 1, d = 0; d < R->ents[k].ndim; d++) n *= (uint64_t)R->ents[k].shape[d];
        sum += n;
    }
    return sum;
}
/* A config that asks for more parameters than the weights hold values is
   not theirs: refused before the model is allocated (a config.json that says
   250,000 layers beside a 2-layer file must not allocate gigabytes first). */
static rlhf_result rlhf__st_config_fits(const rlhf_config *cfg, uint64_t values, const char *path, rlhf_error *err) {
    size_t n = rlhf_config_num_params(cfg);
    if ((uint64_t)n <= values) return RLHF_OK;
    return rlhf__st_err(err, RLHF_ERR_PARSE, path, "the config (n_layer %d, n_embd %d, n_head %d, vocab_size %d, "
                        "n_ctx %d) describes %zu parameters but the weights hold only %llu values: the config does not "
                        "belong to these weights", cfg->n_layer, cfg->n_embd, cfg->n_head, cfg->vocab_size,
                        cfg->n_ctx, n, (unsigned long long)values);
}

/* e's name without the "transformer." prefix Hugging Face's wrappers add */
static const char *rlhf__st_bare_name(const rlhf__st_entry *e) {
    return strncmp(e->name, "transformer.", 12) == 0 ? e->name + 12 : e->name;
}

/* "tensor has shape [...], expected [...]" for entry e and tensor mt */
static rlhf_result rlhf__st_shape_error(const rlhf__st_reader *R, const rlhf__st_entry *e, const rlhf__tensor *mt) {
    char got[128];
    int pos = 0, d;
    got[0] = 0;
    for (d = 0; d < e->ndim && pos < 100; d++)
        pos += snprintf(got + pos, sizeof got - (size_t)pos, d ? ", %lld" : "%lld", (long long)e->shape[d]);
    if (mt->ndim == 2)
        return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "tensor \"%s\" has shape [%s], expected [%d, %d]%s",
                            e->name, got, mt->shape[0], mt->shape[1],
                            strstr(mt->name, "weight") && mt->name[0] == 'h' ? " (Conv1D layout [in, out])" : "");
    return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "tensor \"%s\" has shape [%s], expected [%d]", e->name, got,
                        mt->shape[0]);
}

/* Entry e into the model's tensor of its name: the weights, optim.m.* or
   optim.v.* (the AdamW moments), or a known extra that is skipped. */
static rlhf_result rlhf__st_load_entry(rlhf__st_reader *R, rlhf_model *m, const rlhf__st_entry *e) {
    const char *name = rlhf__st_bare_name(e);
    const rlhf__tensor *mt;
    float *base;
    int slot = 0, t;
    rlhf_result r;
    if (strncmp(name, "optim.m.", 8) == 0) { slot = 1; name += 8; }
    else if (strncmp(name, "optim.v.", 8) == 0) { slot = 2; name += 8; }
    if (strcmp(name, "lm_head.weight") == 0) return RLHF_OK; /* tied to wte: checked later */
    if (strncmp(name, "h.", 2) == 0) { /* h.N.attn.bias / masked_bias: old causal-mask buffers */
        const char *dot = strchr(name + 2, '.');
        if (dot && (strcmp(dot, ".attn.bias") == 0 || strcmp(dot, ".attn.masked_bias") == 0)) return RLHF_OK;
    }

    /* the tensor of that name, of the same shape, in a float dtype */
    for (t = 0; t < m->n_tensors && strcmp(m->tensors[t].name, name) != 0; t++) {}
    if (t == m->n_tensors)
        return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                            "unexpected tensor \"%s\" (not part of a GPT-2 with %d layers)",
                            e->name, m->cfg.n_layer);
    mt = &m->tensors[t];
    if (!(e->ndim == mt->ndim && e->shape[0] == mt->shape[0] && (mt->ndim == 1 || e->shape[1] == mt->shape[1])))
        return rlhf__st_shape_error(R, e, mt);
    if (e->dtype > 2)
        return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "tensor \"%s\" is %s; weights must be F32, F16 or BF16",
                            e->name, RLHF__DTYPES[e->dtype].name);

    /* read it (the moments live in the AdamW state, made on the first) */
    if (slot > 0 && !m->m_mem) {
        r = rlhf__ensure(m, 1, 1, 1);
        if (r != RLHF_OK) return rlhf__st_err(R->err, r, R->path, "out of memory for the AdamW state");
    }
    base = slot == 0 ? m->param_mem : slot == 1 ? m->m_mem : m->v_mem;
    if (!rlhf__read_floats(R->f, R->data_start, e, base + mt->offset, mt->numel))
        return rlhf__st_err(R->err, RLHF_ERR_IO, R->path, "read error in tensor \"%s\"", e->name);
    if (R->found[3 * t + slot]++)
        return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                            "tensor \"%s\" appears twice (as \"%s\" and under another name)",
                            mt->name, e->name);
    if (slot > 0) { /* moments AdamW never makes (updates whose gradient is not finite are skipped): the
                       resumed run's first update would turn the weights NaN, blamed on the learning rate.
                       An infinity it can make (g*g overflows float without clipping): not refused */
        const float *x = base + mt->offset;
        size_t j;
        for (j = 0; j < mt->numel; j++)
            if (x[j] != x[j] || (slot == 2 && x[j] < 0.0f))
                return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                                    "%s[%zu] is %g, not a state AdamW writes (%s): a damaged file? Use an earlier "
                                    "checkpoint", e->name, j, (double)x[j],
                                    x[j] == x[j] ? "a second moment is a mean of squares, never negative"
                                                 : "its moments are never NaN");
    }
    R->n_optim += slot > 0;
    return RLHF_OK;
}

static rlhf_result rlhf__st_check_found(const rlhf__st_reader *R, const rlhf_model *m);
/* Every entry into m; then every tensor of m must have been found (and with
   moments, both of its moments). */
static rlhf_result rlhf__st_load_tensors(rlhf__st_reader *R, rlhf_model *m) {
    size_t k;
    rlhf_result r;
    R->found = (int *)rlhf__alloc((size_t)m->n_tensors * 3 * sizeof(int));
    if (!R->found) return rlhf__st_err(R->err, RLHF_ERR_OUT_OF_MEMORY, R->path, "out of memory");
    memset(R->found, 0, (size_t)m->n_tensors * 3 * sizeof(int));
    for (k = 0; k < R->n_ent; k++)
        if ((r = rlhf__st_load_entry(R, m, &R->ents[k])) != RLHF_OK) return r;
    return rlhf__st_check_found(R, m);
}
/* Every tensor of m was found (and with moments, both of its moments). */
static rlhf_result rlhf__st_check_found(const rlhf__st_reader *R, const rlhf_model *m) {
    int i;
    for (i = 0; i < m->n_tensors; i++) {
        const int *found = R->found + 3 * i;
        if (!found[0] && strcmp(m->tensors[i].name, "score.bias") == 0 && !R->n_optim)
            continue; /* Hugging Face's score Linear has no bias: it stays 0 */
        if (!found[0])
            return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "missing tensor \"%s\"", m->tensors[i].name);
        if (R->n_optim && (!found[1] || !found[2]))
            return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "incomplete AdamW state: optim.%s.%s is missing",
                                found[1] ? "v" : "m", m->tensors[i].name);
    }
    return RLHF_OK;
}

/* A stored lm_head must be the tied copy of wte. */
static rlhf_result rlhf__st_check_lm_head(const rlhf__st_reader *R, const rlhf_model *m) {
    size_t k;
    for (k = 0; k < R->n_ent; k++) {
        const rlhf__st_entry *e = &R->ents[k];
        size_t numel = (size_t)m->cfg.vocab_size * (size_t)m->cfg.n_embd, j;
        float *tmpw;
        if (strcmp(rlhf__st_bare_name(e), "lm_head.weight") != 0) continue;
        if (e->ndim != 2 || e->shape[0] != m->cfg.vocab_size || e->shape[1] != m->cfg.n_embd || e->dtype > 2)
            return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                                "lm_head.weight must be [%d, %d] F32/F16/BF16 like wte",
                                m->cfg.vocab_size, m->cfg.n_embd);
        tmpw = rlhf__alloc_floats(numel);
        if (!tmpw) return rlhf__st_err(R->err, RLHF_ERR_OUT_OF_MEMORY, R->path, "out of memory");
        if (!rlhf__read_floats(R->f, R->data_start, e, tmpw, numel)) {
            rlhf__free(tmpw);
            return rlhf__st_err(R->err, RLHF_ERR_IO, R->path, "read error in lm_head.weight");
        }
        for (j = 0; j < numel && memcmp(&tmpw[j], &m->params.wte[j], 4) == 0; j++) {}
        rlhf__free(tmpw);
        if (j < numel)
            return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                                "lm_head.weight differs from wte.weight at element %zu: untied heads are not supported",
                                j);
    }
    return RLHF_OK;
}

/* Metadata: ours (the AdamW step count) back into the model, the rest kept
   for the caller. Moments need their step count. */
static rlhf_result rlhf__st_restore_meta(const rlhf__st_reader *R, rlhf_model *m) {
    const rlhf_json *v;
    for (v = R->meta ? R->meta->child : NULL; v; v = v->next) {
        if (strcmp(v->key, "config") == 0 || strcmp(v->key, "format") == 0 || strcmp(v->key, "rlhf.version") == 0)
            continue;
        if (strcmp(v->key, "optim.step") == 0) {
            char *endp;
            long step = strtol(v->str, &endp, 10);
            if (*v->str == 0 || *endp != 0 || step < 0)
                return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path,
                                    "__metadata__ optim.step \"%s\" is not a step count", v->str);
            m->adam_steps = step;
            continue;
        }
        if (rlhf__set_meta(m, v->key, v->str) != RLHF_OK)
            return rlhf__st_err(R->err, RLHF_ERR_OUT_OF_MEMORY, R->path, "out of memory");
    }
    if (R->n_optim && (!R->meta || !rlhf_json_get(R->meta, "optim.step")))
        return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "AdamW moments without __metadata__ optim.step");
    return RLHF_OK;
}

/* A scalar head exported by rlhf_model_export_hf: Hugging Face's score layer
   has no bias, so config.json beside the file carries rlhf.h's offset
   ("rlhf_score_offset"), which becomes score.bias, and "rlhf_kind" and
   "rlhf_reward_normalized" give back the metadata the model had (its gain is
   already in score.weight: normalisation 1 and 0). Only for a file with no
   config and no score.bias of its own. */
static rlhf_result rlhf__st_hf_score(const rlhf__st_reader *R, rlhf_model *m) {
    size_t plen = strlen(R->path), clen = 0;
    char *cpath, *slash, *cfgbuf;
    rlhf_json_doc *cdoc = NULL;
    const rlhf_json *root, *v;
    rlhf_result r = RLHF_OK;
    int t;
    if (!m->has_score || (R->meta && rlhf_json_get(R->meta, "config"))) return RLHF_OK;
    for (t = 0; t < m->n_tensors && strcmp(m->tensors[t].name, "score.bias") != 0; t++) {}
    if (t == m->n_tensors || R->found[3 * t]) return RLHF_OK;
    if (!(cpath = (char *)rlhf__alloc(plen + 16)))
        return rlhf__st_err(R->err, RLHF_ERR_OUT_OF_MEMORY, R->path, "out of memory");
    memcpy(cpath, R->path, plen + 1);
    slash = strrchr(cpath, '/');
    strcpy(slash ? slash + 1 : cpath, "config.json");
    cfgbuf = rlhf__read_small_file(cpath, 1 << 20, &clen); /* read once already by rlhf__st_config_beside */
    if (!cfgbuf || (r = rlhf_json_parse(&cdoc, cfgbuf, clen, 16, NULL)) != RLHF_OK) {
        /* it read and parsed before: only memory can fail now, and the offset must not be lost */
        r = (!cfgbuf && clen == (size_t)-1) || r == RLHF_ERR_OUT_OF_MEMORY
                ? rlhf__st_err(R->err, RLHF_ERR_OUT_OF_MEMORY, R->path, "out of memory reading %s", cpath) : RLHF_OK;
        goto done;
    }
    root = rlhf_json_root(cdoc);

    if ((v = rlhf_json_get(root, "rlhf_score_offset")) != NULL) {
        if (v->type != RLHF_JSON_NUMBER || !isfinite((float)v->number))
            r = rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "%s: \"rlhf_score_offset\" must be a finite number",
                             cpath);
        else
            m->param_mem[m->tensors[t].offset] = (float)v->number;
    }
    if (r == RLHF_OK && (v = rlhf_json_get(root, "rlhf_kind")) != NULL && v->type == RLHF_JSON_STRING &&
        (strcmp(v->str, "reward") == 0 || strcmp(v->str, "value") == 0) && !rlhf_model_meta(m, "rlhf.kind"))
        r = rlhf__set_meta(m, "rlhf.kind", v->str);
    if (r == RLHF_OK && (v = rlhf_json_get(root, "rlhf_reward_normalized")) != NULL && v->type == RLHF_JSON_TRUE &&
        !rlhf_model_meta(m, "rlhf.reward.gain") && (r = rlhf__set_meta(m, "rlhf.reward.gain", "1")) == RLHF_OK)
        r = rlhf__set_meta(m, "rlhf.reward.bias", "0");
    if (r == RLHF_ERR_OUT_OF_MEMORY) r = rlhf__st_err(R->err, r, R->path, "out of memory");
done:
    rlhf__free(cpath);
    rlhf__free(cfgbuf);
    rlhf_json_free(cdoc);
    return r;
}

/* ---- Hugging Face model directories -------------------------------------------------
   config.json plus model.safetensors, or plus model.safetensors.index.json
   ({"weight_map": {tensor name: shard file}}) and its shards, each read by the
   strict reader above. Every tensor of a shard must be mapped to that shard,
   every mapped tensor must be in its shard, and the model's tensors must all
   be there once. */

/* A directory (POSIX: stat; elsewhere: a config.json opens inside it). A
   directory opens as a file on POSIX and would read as one of LONG_MAX bytes. */
static int rlhf__is_dir(const char *path) {
#ifdef RLHF__POSIX_IO
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
#else
    char *c = rlhf__path_join(path, "config.json", 0);
    int yes = c && rlhf__can_open(c);
    rlhf__free(c);
    return yes;
#endif
}

/* What one shard's reader holds, released (the found table is the caller's). */
static void rlhf__st_close(rlhf__st_reader *R) {
    if (R->f) fclose(R->f);
    rlhf__free(R->hbuf);
    rlhf__free(R->ents);
    rlhf_json_free(R->hdoc);
    R->f = NULL, R->hbuf = NULL, R->ents = NULL, R->hdoc = NULL, R->n_ent = 0, R->meta = NULL;
}
/* A shard opened: its header read, parsed, and its layout checked. */
static rlhf_result rlhf__st_open(rlhf__st_reader *R, const char *path, rlhf_error *err) {
    uint64_t hlen = 0;
    rlhf_result r;
    R->path = path;
    R->err = err;
    if ((r = rlhf__st_read_header(R, &hlen)) != RLHF_OK || (r = rlhf__st_parse_header(R, hlen)) != RLHF_OK) return r;
    return rlhf__st_check_layout(R);
}

/* The index's weight_map: an object of distinct tensor names whose values
   are plain file names in the directory; *shards receives each file once, in
   the order of first mention (an array of n_shards pointers into the index). */
static rlhf_result rlhf__shard_list(const rlhf_json *wm, const char ***shards, int *n_shards, const char *ipath,
                                    rlhf_error *err) {
    const rlhf_json *v, *dup;
    int k;
    if (!wm || wm->type != RLHF_JSON_OBJECT || wm->len == 0)
        return rlhf__st_err(err, RLHF_ERR_PARSE, ipath, "no \"weight_map\" object naming the shard of each tensor");
    if (rlhf__json_dup_key(wm, &dup) != RLHF_OK)
        return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, ipath, "out of memory");
    if (dup)
        return rlhf__st_err(err, RLHF_ERR_PARSE, ipath, "tensor \"%s\" is given twice in the weight_map", dup->key);
    if (!(*shards = (const char **)rlhf__alloc(wm->len * sizeof **shards)))
        return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, ipath, "out of memory");
    *n_shards = 0;
    for (v = wm->child; v; v = v->next) {
        if (v->type != RLHF_JSON_STRING || v->len == 0 || strlen(v->str) != v->len || strchr(v->str, '/') ||
            strchr(v->str, '\\') || strcmp(v->str, "..") == 0 || strcmp(v->str, ".") == 0)
            return rlhf__st_err(err, RLHF_ERR_PARSE, ipath, "weight_map: tensor \"%s\" must name a file in the "
                                "directory (no path)", v->key);
        for (k = 0; k < *n_shards && strcmp((*shards)[k], v->str) != 0; k++) {}
        if (k == *n_shards) (*shards)[(*n_shards)++] = v->str;
    }
    return RLHF_OK;
}

/* One shard's tensors into m, each checked against the index's map. */
static rlhf_result rlhf__shard_load(rlhf__st_reader *R, rlhf_model *m, const rlhf_json *wm, const char *shard,
                                    const char *ipath) {
    const rlhf_json *v;
    size_t k, mapped = 0;
    rlhf_result r;
    for (k = 0; k < R->n_ent; k++) {
        const rlhf__st_entry *e = &R->ents[k];
        if (!(v = rlhf_json_get(wm, e->name)))
            return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "tensor \"%s\" is not in the weight_map of %s",
                                e->name, ipath);
        if (strcmp(v->str, shard) != 0)
            return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "tensor \"%s\" is here, but %s maps it to %s",
                                e->name, ipath, v->str);
        if ((r = rlhf__st_load_entry(R, m, e)) != RLHF_OK) return r;
    }
    for (v = wm->child; v; v = v->next) mapped += strcmp(v->str, shard) == 0;
    if (mapped != R->n_ent) /* the index maps more tensors here than the shard holds: name one */
        for (v = wm->child; v; v = v->next) {
            if (strcmp(v->str, shard) != 0) continue;
            for (k = 0; k < R->n_ent && strcmp(R->ents[k].name, v->key) != 0; k++) {}
            if (k == R->n_ent)
                return rlhf__st_err(R->err, RLHF_ERR_PARSE, R->path, "%s maps tensor \"%s\" to this shard, which "
                                    "does not hold it", ipath, v->key);
        }
    return rlhf__st_restore_meta(R, m);
}

/* The model of a sharded checkpoint: the config from the first shard's
   metadata or config.json, then every shard, then the tied lm_head (wte may
   come from another shard than lm_head, so that check comes last). */
static rlhf_result rlhf__load_sharded(rlhf_model **out, const char *ipath, rlhf_error *err) {
    rlhf_json_doc *doc = NULL;
    const rlhf_json *wm = NULL, *v;
    const char **shards = NULL;
    char *spath = NULL;
    int n_shards = 0, s, n_optim = 0, *found = NULL, pass;
    uint64_t values = 0;
    rlhf__st_reader R;
    rlhf_model *m = NULL;
    rlhf_config cfg;
    rlhf_result r;
    memset(&R, 0, sizeof R);
    if ((r = rlhf__json_file(&doc, ipath, 0, err)) != RLHF_OK) return r;
    if ((r = rlhf__shard_list((wm = rlhf_json_get(rlhf_json_root(doc), "weight_map")), &shards, &n_shards, ipath,
                              err)) != RLHF_OK)
        goto done;
    for (s = 0; s < n_shards; s++) { /* every shard there before anything is read */
        rlhf__free(spath);
        if (!(spath = rlhf__path_join(ipath, shards[s], 1))) { r = RLHF_ERR_OUT_OF_MEMORY; goto done; }
        if (!rlhf__can_open(spath)) {
            r = rlhf__st_err(err, RLHF_ERR_IO, ipath, "shard %s is missing (cannot open %s)", shards[s], spath);
            goto done;
        }
        if ((r = rlhf__st_open(&R, spath, err)) != RLHF_OK) goto done;
        values += rlhf__st_values(&R); /* for rlhf__st_config_fits */
        rlhf__st_close(&R);
    }

    /* pass 0 loads every shard (the first one also gives the config); then every tensor must have come,
       and pass 1 checks lm_head against wte */
    for (pass = 0; pass < 2; pass++) {
        if (pass == 1) { /* all of the model's tensors, named from the index */
            R.path = ipath, R.err = err, R.found = found, R.n_optim = n_optim;
            if ((r = rlhf__st_check_found(&R, m)) != RLHF_OK) goto done;
        }
        for (s = 0; s < n_shards; s++) {
            rlhf__free(spath);
            if (!(spath = rlhf__path_join(ipath, shards[s], 1))) { r = RLHF_ERR_OUT_OF_MEMORY; goto done; }
            if ((r = rlhf__st_open(&R, spath, err)) != RLHF_OK) goto done;
            if (!m) {
                if ((r = rlhf__st_config(&R, &cfg)) != RLHF_OK ||
                    (r = rlhf__st_config_fits(&cfg, values, ipath, err)) != RLHF_OK)
                    goto done;
                if ((r = rlhf_model_create(&m, &cfg, 0)) != RLHF_OK) {
                    r = rlhf__st_err(err, r, ipath, "cannot create the model: %s", rlhf_result_string(r));
                    goto done;
                }
                for (v = wm->child; v && strcmp(strncmp(v->key, "transformer.", 12) ? v->key : v->key + 12,
                                                "score.weight") != 0; v = v->next) {}
                if ((v && (r = rlhf_model_add_score_head(m, 0.0f, 0)) != RLHF_OK) ||
                    !(found = (int *)rlhf__alloc((size_t)m->n_tensors * 3 * sizeof(int)))) {
                    r = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, ipath, "out of memory");
                    goto done;
                }
                memset(found, 0, (size_t)m->n_tensors * 3 * sizeof(int));
            }
            R.found = found;
            R.n_optim = 0;
            r = pass == 0 ? rlhf__shard_load(&R, m, wm, shards[s], ipath) : rlhf__st_check_lm_head(&R, m);
            n_optim += R.n_optim;
            rlhf__st_close(&R);
            if (r != RLHF_OK) goto done;
        }
    }
done:
    rlhf__st_close(&R);
    rlhf__free(found);
    rlhf__free(spath);
    rlhf__free((void *)shards);
    rlhf_json_free(doc);
    if (r == RLHF_ERR_OUT_OF_MEMORY && err && !err->message[0]) rlhf__st_err(err, r, ipath, "out of memory");
    if (r != RLHF_OK) { rlhf_model_free(m); return r; }
    *out = m;
    return RLHF_OK;
}

/* A directory: config.json, then model.safetensors or the sharded index. */
static rlhf_result rlhf__load_hf_dir(rlhf_model **out, const char *dir, rlhf_error *err) {
    static const char *const names[4] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                         "pytorch_model.bin"};
    char *p[5];
    int k;
    rlhf_result r;
    for (k = 0; k < 4; k++) p[k] = rlhf__path_join(dir, names[k], 0);
    p[4] = rlhf__path_join(dir, "pytorch_model.bin.index.json", 0);
    if (!p[0] || !p[1] || !p[2] || !p[3] || !p[4]) r = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, dir, "out of memory");
    else if (!rlhf__can_open(p[0]))
        r = rlhf__st_err(err, RLHF_ERR_IO, dir, "is a directory without config.json, so not a Hugging Face model "
                         "directory (give a .safetensors checkpoint, or a directory with config.json and weights)");
    else if (rlhf__can_open(p[1])) r = rlhf_model_load_ex(out, p[1], err);
    else if (rlhf__can_open(p[2])) r = rlhf__load_sharded(out, p[2], err);
    else if (rlhf__can_open(p[3]) || rlhf__can_open(p[4]))
        r = rlhf__st_err(err, RLHF_ERR_PARSE, dir, "the weights are in PyTorch's pickle format (pytorch_model.bin), "
                         "which rlhf.h does not read: convert them to safetensors first, e.g. in Python: "
                         "GPT2LMHeadModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)");
    else
        r = rlhf__st_err(err, RLHF_ERR_IO, dir, "no weights: neither model.safetensors nor "
                         "model.safetensors.index.json is here");
    for (k = 0; k < 5; k++) rlhf__free(p[k]);
    return r;
}

RLHFDEF rlhf_result rlhf_model_load_ex(rlhf_model **out, const char *path, rlhf_error *err) {
    rlhf__st_reader R;
    uint64_t hlen = 0;
    rlhf_config cfg;
    rlhf_model *m = NULL;
    size_t k;
    rlhf_result r;
    if (err) err->message[0] = 0;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!path) return RLHF_ERR_INVALID_ARGUMENT;
    if (rlhf__is_dir(path)) return rlhf__load_hf_dir(out, path, err);
    memset(&R, 0, sizeof R);
    R.path = path;
    R.err = err;

    /* the header: its length, its JSON, its entries, their layout in the data */
    if ((r = rlhf__st_read_header(&R, &hlen)) != RLHF_OK || (r = rlhf__st_parse_header(&R, hlen)) != RLHF_OK ||
        (r = rlhf__st_check_layout(&R)) != RLHF_OK)
        goto done;

    /* the model its config describes, with a scalar head (reward or value
       model) when the file has score.weight */
    if ((r = rlhf__st_config(&R, &cfg)) != RLHF_OK ||
        (r = rlhf__st_config_fits(&cfg, rlhf__st_values(&R), path, err)) != RLHF_OK)
        goto done;
    if ((r = rlhf_model_create(&m, &cfg, 0)) != RLHF_OK) {
        r = rlhf__st_err(err, r, path, "cannot create the model: %s", rlhf_result_string(r));
        goto done;
    }
    for (k = 0; k < R.n_ent; k++)
        if (strcmp(rlhf__st_bare_name(&R.ents[k]), "score.weight") == 0) {
            if ((r = rlhf_model_add_score_head(m, 0.0f, 0)) != RLHF_OK) r = rlhf__st_err(err, r, path, "out of memory");
            break;
        }
    if (r != RLHF_OK) goto done;

    /* the tensors, the tied head, the metadata */
    if ((r = rlhf__st_load_tensors(&R, m)) == RLHF_OK && (r = rlhf__st_check_lm_head(&R, m)) == RLHF_OK &&
        (r = rlhf__st_restore_meta(&R, m)) == RLHF_OK)
        r = rlhf__st_hf_score(&R, m);
done:
    if (R.f) fclose(R.f);
    rlhf__free(R.hbuf);
    rlhf__free(R.ents);
    rlhf__free(R.found);
    rlhf_json_free(R.hdoc);
    if (r != RLHF_OK) {
        rlhf_model_free(m);
        return r;
    }
    *out = m;
    return RLHF_OK;
}

/* ---- export: a Hugging Face directory (rlhf_model_export_hf) ---------------------- */
#ifdef RLHF__POSIX_IO
#include <dirent.h>
#endif
/* the files of an export: nothing else is ever deleted by an overwrite */
static const char *const RLHF__HF_FILES[] = {"config.json", "model.safetensors", "generation_config.json", "vocab.json",
                                            "merges.txt", "tokenizer_config.json", "special_tokens_map.json"};
#define RLHF__HF_NFILES (sizeof RLHF__HF_FILES / sizeof RLHF__HF_FILES[0])

RLHFDEF rlhf_export_options rlhf_export_options_default(void) {
    rlhf_export_options o;
    o.dtype = RLHF_EXPORT_F32;
    o.overwrite = 0;
    return o;
}

/* float to IEEE half, rounded to nearest, ties to even, subnormals included;
   |x| >= 65520 becomes infinity (rlhf__export_check refuses it before) */
static uint16_t rlhf__f32_to_f16(float f) {
    uint32_t x, ax, sign, h, rem, mant, shift;
    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000u;
    ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u); /* NaN */
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* 65520 and up: infinity */
    if (ax >= 0x38800000u) { /* a normal half (>= 2^-14): exponent rebiased 127 -> 15, 13 bits rounded off */
        h = (ax - 0x38000000u) >> 13;
        rem = ax & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) return (uint16_t)sign; /* at most 2^-25, half the smallest subnormal: ties to 0 */
    /* a subnormal half: the value in units of 2^-24 */
    mant = (ax & 0x7FFFFFu) | 0x800000u;
    shift = 126u - (ax >> 23); /* 14 .. 24 */
    h = mant >> shift;
    rem = mant & ((1u << shift) - 1u);
    if (rem > (1u << (shift - 1u)) || (rem == (1u << (shift - 1u)) && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}
/* float to bfloat16, rounded to nearest, ties to even (|x| >= 0x7F7F8000's value overflows: refused before) */
static uint16_t rlhf__f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40u); /* NaN stays a (quiet) NaN */
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

/* A tensor's name in the export (0: not exported). The backbone under
   "transformer." as save_pretrained writes it; score.weight as is;
   score.bias has no place in Hugging Face's score layer (it is in the offset). */
static int rlhf__export_name(const rlhf__tensor *mt, char *name, size_t cap) {
    if (strcmp(mt->name, "score.bias") == 0) return 0;
    snprintf(name, cap, "%s%s", strncmp(mt->name, "score.", 6) == 0 ? "" : "transformer.", mt->name);
    return 1;
}
/* The scale of tensor mt in the export: the normalisation's gain for score.weight, else 1 */
static float rlhf__export_scale(const rlhf__tensor *mt, float gain) {
    return strcmp(mt->name, "score.weight") == 0 ? gain : 1.0f;
}

/* Every weight as exported finite and inside the dtype's range (a value
   that would round to infinity is refused, never written). */
static rlhf_result rlhf__export_check(const rlhf_model *m, float gain, rlhf_export_dtype dt, rlhf_error *err) {
    static const char *const dt_name[3] = {"F32", "BF16", "F16"};
    /* the smallest magnitude (as float bits) that the dtype rounds to infinity */
    uint32_t limit = dt == RLHF_EXPORT_F16 ? 0x477FF000u : dt == RLHF_EXPORT_BF16 ? 0x7F7F8000u : 0x7F800000u;
    int i;
    for (i = 0; i < m->n_tensors; i++) {
        const rlhf__tensor *mt = &m->tensors[i];
        const float *x = m->param_mem + mt->offset, g = rlhf__export_scale(mt, gain);
        size_t j;
        for (j = 0; j < mt->numel; j++) {
            float v = x[j] * g;
            uint32_t bits;
            memcpy(&bits, &v, 4);
            if (!isfinite(v))
                return rlhf__st_err(err, RLHF_ERR_NON_FINITE, "rlhf_model_export_hf",
                                    "%s[%zu] is %g: a model with non-finite weights is not exported", mt->name, j,
                                    (double)v);
            if ((bits & 0x7FFFFFFFu) >= limit)
                return rlhf__st_err(err, RLHF_ERR_TOO_LARGE, "rlhf_model_export_hf",
                                    "%s[%zu] is %g, beyond %s's range (it would round to infinity): export as %s",
                                    mt->name, j, (double)v, dt_name[dt], dt == RLHF_EXPORT_F16 ? "BF16 or F32" : "F32");
        }
    }
    return RLHF_OK;
}

/* n floats times g as dt, little-endian, through a staging buffer */
static void rlhf__export_floats(rlhf__out *o, const float *x, size_t n, float g, rlhf_export_dtype dt) {
    unsigned char buf[4096];
    while (n > 0) {
        size_t k, w = 0, chunk = n < 1024 ? n : 1024;
        for (k = 0; k < chunk; k++) {
            float v = x[k] * g;
            uint32_t u;
            if (dt == RLHF_EXPORT_F32) memcpy(&u, &v, 4);
            else u = dt == RLHF_EXPORT_F16 ? rlhf__f32_to_f16(v) : rlhf__f32_to_bf16(v);
            buf[w++] = (unsigned char)u;
            buf[w++] = (unsigned char)(u >> 8);
            if (dt == RLHF_EXPORT_F32) {
                buf[w++] = (unsigned char)(u >> 16);
                buf[w++] = (unsigned char)(u >> 24);
            }
        }
        rlhf__out_write(o, buf, w);
        x += chunk;
        n -= chunk;
    }
}

/* model.safetensors at path: the weights under Hugging Face's names, in dt,
   metadata {"format": "pt"} only (no AdamW state, no rlhf.h metadata) */
static rlhf_result rlhf__export_weights(const rlhf_model *m, float gain, rlhf_export_dtype dt, const char *path,
                                        rlhf_error *err) {
    static const char *const dt_name[3] = {"F32", "BF16", "F16"};
    uint64_t off = 0, esz = dt == RLHF_EXPORT_F32 ? 4 : 2;
    rlhf__sb h = {NULL, 0, 0, 0};
    unsigned char len8[8];
    char name[64];
    rlhf__out o;
    rlhf_result r;
    int i;
    rlhf__sb_str(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (i = 0; i < m->n_tensors; i++) {
        const rlhf__tensor *mt = &m->tensors[i];
        uint64_t bytes = (uint64_t)mt->numel * esz;
        if (!rlhf__export_name(mt, name, sizeof name)) continue;
        rlhf__sb_fmt(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d", name, dt_name[dt], mt->shape[0]);
        if (mt->ndim == 2) rlhf__sb_fmt(&h, ",%d", mt->shape[1]);
        rlhf__sb_fmt(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    rlhf__sb_str(&h, "}");
    while (!h.oom && (h.len + 8) % 8) rlhf__sb_add(&h, " ", 1);
    if (h.oom) {
        rlhf__free(h.p);
        return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory");
    }
    if ((r = rlhf__out_open(&o, path, 1)) != RLHF_OK) {
        rlhf__free(h.p);
        return rlhf__st_err(err, r, "rlhf_model_export_hf", "%s", o.why);
    }
    rlhf__put_u64le(len8, (uint64_t)h.len);
    rlhf__out_write(&o, len8, 8);
    rlhf__out_write(&o, h.p, h.len);
    rlhf__free(h.p);
    for (i = 0; i < m->n_tensors; i++) {
        const rlhf__tensor *mt = &m->tensors[i];
        if (rlhf__export_name(mt, name, sizeof name))
            rlhf__export_floats(&o, m->param_mem + mt->offset, mt->numel, rlhf__export_scale(mt, gain), dt);
    }
    if ((r = rlhf__out_commit(&o)) != RLHF_OK) return rlhf__st_err(err, r, "rlhf_model_export_hf", "%s", o.why);
    return RLHF_OK;
}

/* config.json: GPT2Config's fields under transformers' names (no dropout,
   tied embeddings); for a scalar head GPT2ForSequenceClassification's
   num_labels 1 and rlhf.h's offset, with a note saying what it means */
static void rlhf__export_config(const rlhf_model *m, const rlhf_tokenizer *t, rlhf_export_dtype dt, double offset,
                                rlhf__sb *b) {
    static const char *const torch_dt[3] = {"float32", "bfloat16", "float16"};
    const rlhf_config *c = &m->cfg;
    const char *kind = rlhf_model_meta(m, "rlhf.kind");
    int eos = t->special[RLHF_TOKEN_EOS], s = m->has_score;
    rlhf__sb_fmt(b, "{\n\"activation_function\":\"gelu_new\",\n\"architectures\":[\"%s\"],\n\"attn_pdrop\":0.0,\n",
                 s ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel");
    rlhf__sb_fmt(b, "\"bos_token_id\":%d,\n\"embd_pdrop\":0.0,\n\"eos_token_id\":%d,\n", eos, eos);
    if (s) rlhf__sb_str(b, "\"id2label\":{\"0\":\"LABEL_0\"},\n\"label2id\":{\"LABEL_0\":0},\n");
    rlhf__sb_fmt(b, "\"initializer_range\":0.02,\n\"layer_norm_epsilon\":1e-05,\n\"model_type\":\"gpt2\",\n"
                    "\"n_ctx\":%d,\n\"n_embd\":%d,\n\"n_head\":%d,\n\"n_inner\":null,\n"
                    "\"n_layer\":%d,\n\"n_positions\":%d,\n",
                 c->n_ctx, c->n_embd, c->n_head, c->n_layer, c->n_ctx);
    if (s) rlhf__sb_str(b, "\"num_labels\":1,\n");
    rlhf__sb_fmt(b, "\"pad_token_id\":%d,\n\"reorder_and_upcast_attn\":false,\n\"resid_pdrop\":0.0,\n",
                 t->special[RLHF_TOKEN_PAD]);
    if (s) {
        rlhf__sb_fmt(b, "\"rlhf_kind\":\"%s\",\n", kind && strcmp(kind, "value") == 0 ? "value" : "reward");
        rlhf__sb_str(b, "\"rlhf_note\":\"rlhf.h's score = this model's logit + rlhf_score_offset (the score layer of "
                        "Hugging Face has no bias); the normalisation's gain is folded into score.weight\",\n");
        rlhf__sb_fmt(b, "\"rlhf_reward_normalized\":%s,\n\"rlhf_score_offset\":%.9g,\n",
                     rlhf_model_meta(m, "rlhf.reward.gain") ? "true" : "false", offset);
    }
    rlhf__sb_fmt(b, "\"rlhf_version\":\"%s\",\n\"scale_attn_by_inverse_layer_idx\":false,\n"
                    "\"scale_attn_weights\":true,\n", RLHF_VERSION_STRING);
    rlhf__sb_fmt(b, "\"summary_first_dropout\":0.0,\n\"tie_word_embeddings\":true,\n\"torch_dtype\":\"%s\",\n"
                    "\"use_cache\":true,\n\"vocab_size\":%d\n}\n", torch_dt[dt], c->vocab_size);
}

/* b's text as dir/name, fsync'ed (the directory is renamed into place as a whole); b is emptied */
static rlhf_result rlhf__export_file(const char *dir, const char *name, rlhf__sb *b, rlhf_error *err) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = (char *)rlhf__alloc(n);
    rlhf__out o;
    rlhf_result r;
    if (!path || b->oom) r = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model_export_hf", "out of memory");
    else {
        snprintf(path, n, "%s/%s", dir, name);
        if ((r = rlhf__out_open(&o, path, 1)) == RLHF_OK) {
            rlhf__out_write(&o, b->p, b->len);
            r = rlhf__out_commit(&o);
        }
        if (r != RLHF_OK) rlhf__st_err(err, r, "rlhf_model_export_hf", "%s", o.why);
    }
    rlhf__free(path);
    rlhf__free(b->p);
    memset(b, 0, sizeof *b);
    return r;
}

/* Every file of the export into the (new, empty) directory dir. */
static rlhf_result rlhf__export_files(const rlhf_model *m, const rlhf_tokenizer *t, const char *dir,
                                      rlhf_export_dtype dt, float gain, double offset, rlhf_error *err) {
    size_t n = strlen(dir) + 32;
    char *path = (char *)rlhf__alloc(n);
    rlhf__sb b = {NULL, 0, 0, 0};
    rlhf_result r;
    if (!path) return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, "rlhf_model_export_hf", "out of memory");
    snprintf(path, n, "%s/model.safetensors", dir);
    r = rlhf__export_weights(m, gain, dt, path, err);
    if (r == RLHF_OK) {
        rlhf__export_config(m, t, dt, offset, &b);
        r = rlhf__export_file(dir, "config.json", &b, err);
    }
    if (r == RLHF_OK && !m->has_score) { /* generation stops at <|end|> (a reply's end) or <|endoftext|> */
        rlhf__sb_fmt(&b, "{\n\"_from_model_config\":false,\n\"bos_token_id\":%d,\n\"eos_token_id\":[%d,%d],\n"
                         "\"pad_token_id\":%d\n}\n", t->special[RLHF_TOKEN_EOS], t->special[RLHF_TOKEN_END],
                     t->special[RLHF_TOKEN_EOS], t->special[RLHF_TOKEN_PAD]);
        r = rlhf__export_file(dir, "generation_config.json", &b, err);
    }
    if (r == RLHF_OK) {
        rlhf__hf_vocab_json(t, &b);
        r = rlhf__export_file(dir, "vocab.json", &b, err);
    }
    if (r == RLHF_OK) {
        rlhf__hf_merges_txt(t, &b);
        r = rlhf__export_file(dir, "merges.txt", &b, err);
    }
    if (r == RLHF_OK) {
        rlhf__hf_tokenizer_config(t, m->cfg.n_ctx, &b);
        r = rlhf__export_file(dir, "tokenizer_config.json", &b, err);
    }
    if (r == RLHF_OK) {
        rlhf__hf_special_tokens_map(&b);
        r = rlhf__export_file(dir, "special_tokens_map.json", &b, err);
    }
    if (r == RLHF_OK) rlhf__fsync_dir(path); /* the directory's entries, before it is renamed into place */
    rlhf__free(path);
    return r;
}

#ifdef RLHF__POSIX_IO
/* What dir holds: 0 nothing, 1 only an export's files, 2 something else
   (*other receives its name), -1 it cannot be listed. */
static int rlhf__export_dir_holds(const char *dir, char *other, size_t cap) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int holds = 0, fail;
    if (!d) return -1;
    /* readdir's NULL is the end, or (errno set) a failure: EOVERFLOW on 32-bit
       builds without -D_FILE_OFFSET_BITS=64, where an entry does not fit */
    while (holds < 2 && (errno = 0, e = readdir(d)) != NULL) {
        size_t k;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        for (k = 0; k < RLHF__HF_NFILES && strcmp(e->d_name, RLHF__HF_FILES[k]) != 0; k++) {}
        holds = k < RLHF__HF_NFILES ? 1 : 2;
        if (holds == 2) snprintf(other, cap, "%s", e->d_name);
    }
    fail = e ? 0 : errno;
    closedir(d);
    errno = fail; /* for the caller's message */
    return fail ? -1 : holds;
}
/* Remove an export: its files (an export's names only), then the directory
   (which fails, leaving it, if anything else is in it). 0 on success. */
static int rlhf__export_remove(const char *dir) {
    size_t k, n = strlen(dir) + 32;
    char buf[1024], *p = n <= sizeof buf ? buf : (char *)rlhf__alloc(n); /* cleaning up needs no memory */
    if (!p) return -1;
    for (k = 0; k < RLHF__HF_NFILES; k++) {
        snprintf(p, n, "%s/%s", dir, RLHF__HF_FILES[k]);
        unlink(p);
    }
    if (p != buf) rlhf__free(p);
    return rmdir(dir);
}
/* The finished tmp directory into dir's place. replace: dir holds an earlier
   export, moved aside to old first and deleted after (if the second rename
   fails, it is moved back). rename(2) replaces an empty directory itself. */
static rlhf_result rlhf__export_commit(const char *tmp, const char *dir, const char *old, int replace,
                                       rlhf_error *err) {
    if (replace && rename(dir, old) != 0)
        return rlhf__st_err(err, RLHF_ERR_IO, dir, "cannot move the earlier export aside to %s: %s", old,
                            strerror(errno));
    if (rename(tmp, dir) != 0) {
        int e = errno;
        if (replace) rename(old, dir);
        return rlhf__st_err(err, RLHF_ERR_IO, dir, "cannot rename %s to it: %s", tmp, strerror(e));
    }
    rlhf__fsync_dir(dir);
    if (replace) rlhf__export_remove(old);
    return RLHF_OK;
}
/* dir as a unit: checked, written as tmp beside it, renamed into place */
static rlhf_result rlhf__export_dir(const rlhf_model *m, const rlhf_tokenizer *t, const char *dir,
                                    const rlhf_export_options *o, float gain, double offset, rlhf_error *err) {
    size_t n = strlen(dir) + 32;
    char *tmp = (char *)rlhf__alloc(n), *old = (char *)rlhf__alloc(n), other[256];
    struct stat st;
    int holds = 0;
    rlhf_result r = RLHF_OK;
    if (!tmp || !old) r = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, dir, "out of memory");
    else if (stat(dir, &st) == 0) { /* an existing dir: empty, or (with overwrite) an earlier export */
        if (!S_ISDIR(st.st_mode)) r = rlhf__st_err(err, RLHF_ERR_IO, dir, "exists and is not a directory");
        else if ((holds = rlhf__export_dir_holds(dir, other, sizeof other)) < 0)
            r = rlhf__st_err(err, RLHF_ERR_IO, dir, "cannot list the directory: %s", strerror(errno));
        else if (holds == 2 && o->overwrite)
            r = rlhf__st_err(err, RLHF_ERR_IO, dir, "holds \"%s\", which an export does not write: not replaced",
                             other);
        else if (holds > 0 && !o->overwrite)
            r = rlhf__st_err(err, RLHF_ERR_IO, dir, "exists and is not empty (overwrite replaces an earlier export)");
    }
    if (r == RLHF_OK) {
        snprintf(tmp, n, "%s.tmp-%ld", dir, (long)getpid());
        snprintf(old, n, "%s.old-%ld", dir, (long)getpid());
        /* a temporary directory of this PID left by a killed export is cleared first */
        if (mkdir(tmp, 0755) != 0 && (errno != EEXIST || rlhf__export_remove(tmp) != 0 || mkdir(tmp, 0755) != 0))
            r = rlhf__st_err(err, RLHF_ERR_IO, dir, "cannot create the temporary directory %s: %s", tmp,
                             strerror(errno));
        else if ((r = rlhf__export_files(m, t, tmp, o->dtype, gain, offset, err)) != RLHF_OK ||
                 (r = rlhf__export_commit(tmp, dir, old, holds > 0, err)) != RLHF_OK)
            rlhf__export_remove(tmp);
    }
    rlhf__free(tmp);
    rlhf__free(old);
    return r;
}
#endif

RLHFDEF rlhf_result rlhf_model_export_hf(const rlhf_model *m, const rlhf_tokenizer *t, const char *dir,
                                         const rlhf_export_options *opt, rlhf_error *err) {
    static const char *const who = "rlhf_model_export_hf";
    rlhf_export_options o = opt ? *opt : rlhf_export_options_default();
    rlhf_tokenizer *own = NULL;
    float gain = 1.0f, bias = 0.0f;
    double offset = 0.0;
    char *path = NULL;
    size_t n;
    rlhf_result r;
    int i, dup = -1;
    rlhf__tokmap map = {NULL, 0, NULL};
    if (err) err->message[0] = 0;
    if (!m || !dir || !*dir) return rlhf__st_err(err, RLHF_ERR_INVALID_ARGUMENT, who, "needs a model and a directory");
    if ((int)o.dtype < RLHF_EXPORT_F32 || (int)o.dtype > RLHF_EXPORT_F16)
        return rlhf__st_err(err, RLHF_ERR_INVALID_ARGUMENT, who, "dtype must be F32, BF16 or F16");
    if (!t && (r = rlhf_tokenizer_from_model(&own, m, err)) != RLHF_OK) return r;
    if (!t) t = own;

    /* what goes out: a tokenizer the model covers, with tokens vocab.json can hold, and weights that fit dtype */
    if (t->n_vocab > m->cfg.vocab_size)
        r = rlhf__st_err(err, RLHF_ERR_INVALID_ARGUMENT, who, "the tokenizer has %d tokens but the model only %d",
                         t->n_vocab, m->cfg.vocab_size);
    else if ((i = rlhf__tokmap_build(&map, t, t->n_vocab, &dup)) != -1)
        r = i == -2 ? rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, who, "out of memory")
                    : rlhf__st_err(err, RLHF_ERR_INVALID_ARGUMENT, who,
                                   "tokens %d and %d have the same bytes: a vocab.json cannot hold both", dup, i);
    else {
        if (m->has_score) { /* rlhf.h's score = gain * (logit + score.bias) + bias = gain * logit + offset */
            for (i = 0; i < m->n_tensors && strcmp(m->tensors[i].name, "score.bias") != 0; i++) {}
            rlhf_reward_normalization(m, &gain, &bias);
            offset = (double)gain * m->param_mem[m->tensors[i].offset] + bias;
        }
        r = rlhf__export_check(m, gain, o.dtype, err);
    }
    rlhf__free(map.slot);
    if (r == RLHF_OK) {
#ifdef RLHF__POSIX_IO
        n = strlen(dir); /* "out/" and "out" are one directory */
        while (n > 1 && dir[n - 1] == '/') n--;
        if (!(path = (char *)rlhf__alloc(n + 1))) r = rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, who, "out of memory");
        else {
            memcpy(path, dir, n);
            path[n] = 0;
            r = rlhf__export_dir(m, t, path, &o, gain, offset, err);
        }
#else
        (void)n, (void)offset, (void)rlhf__export_files; /* written by rlhf__export_dir, POSIX only */
        r = rlhf__st_err(err, RLHF_ERR_IO, dir, "exporting a directory needs POSIX (mkdir, directory renames)");
#endif
    }
    rlhf__free(path);
    rlhf_tokenizer_free(own);
    return r;
}

// ----------------------------------------------------------------------------
// >>data  datasets: JSONL records (TRL's field names) into typed records
// ----------------------------------------------------------------------------

struct rlhf_dataset {
    rlhf_json_doc arena; /* the records' strings, messages and completion lists */
    rlhf_record *rec;
    size_t n, cap, skipped, unshared;
    char first_skip[512];
    size_t unsplit; /* HH-RLHF pairs whose text is not in turns */
};

RLHFDEF rlhf_data_options rlhf_data_options_default(void) {
    rlhf_data_options o;
    o.skip_bad = 0;
    o.max_line_bytes = 0;
    o.max_text_bytes = 0;
    o.log = NULL;
    o.log_user = NULL;
    return o;
}
RLHFDEF void rlhf_dataset_free(rlhf_dataset *d) {
    rlhf__arena_block *b;
    if (!d) return;
    for (b = d->arena.blocks; b;) {
        rlhf__arena_block *prev = b->prev;
        rlhf__free(b);
        b = prev;
    }
    rlhf__free(d->rec);
    rlhf__free(d);
}
RLHFDEF size_t rlhf_dataset_size(const rlhf_dataset *d) { return d ? d->n : 0; }
RLHFDEF const rlhf_record *rlhf_dataset_record(const rlhf_dataset *d, size_t i) {
    return d && i < d->n ? &d->rec[i] : NULL;
}
RLHFDEF size_t rlhf_dataset_skipped(const rlhf_dataset *d) { return d ? d->skipped : 0; }
RLHFDEF const char *rlhf_dataset_first_skip(const rlhf_dataset *d) { return d ? d->first_skip : ""; }
RLHFDEF size_t rlhf_dataset_unshared_prompts(const rlhf_dataset *d) { return d ? d->unshared : 0; }
RLHFDEF size_t rlhf_dataset_unsplit_transcripts(const rlhf_dataset *d) { return d ? d->unsplit : 0; }

/* why a record is bad, and at which value (column = its offset in the line + 1) */
typedef struct rlhf__rec_err { size_t column; char what[256]; int oom; } rlhf__rec_err;
static int rlhf__bad(rlhf__rec_err *e, const rlhf_json *at, const char *fmt, ...) {
    va_list ap;
    e->column = at ? at->offset + 1 : 1;
    va_start(ap, fmt);
    vsnprintf(e->what, sizeof e->what, fmt, ap);
    va_end(ap);
    return 0;
}
static int rlhf__copy_str(rlhf_dataset *d, const char *s, size_t n, rlhf_str *out, rlhf__rec_err *e) {
    char *p = (char *)rlhf__arena_alloc(&d->arena, n + 1);
    if (!p) { e->oom = 1; return rlhf__bad(e, NULL, "out of memory"); }
    if (n) memcpy(p, s, n);
    p[n] = 0;
    out->str = p;
    out->len = n;
    return 1;
}
/* obj[key] must be a string; copied into out */
static int rlhf__field_str(rlhf_dataset *d, const rlhf_json *obj, const char *key, rlhf_str *out, rlhf__rec_err *e) {
    const rlhf_json *v = rlhf_json_get(obj, key);
    if (!v) return rlhf__bad(e, obj, "missing \"%s\"", key);
    if (v->type != RLHF_JSON_STRING) return rlhf__bad(e, v, "\"%s\" must be a string", key);
    return rlhf__copy_str(d, v->str, v->len, out, e);
}
/* A list of messages (arr, the record's field `field`) into d's arena: *out, *n. */
static int rlhf__parse_turns(rlhf_dataset *d, const rlhf_json *arr, const char *field, const rlhf_message **out,
                             int *n, rlhf__rec_err *e) {
    static const char *const roles[3] = {"system", "user", "assistant"};
    rlhf_message *msg;
    const rlhf_json *v;
    int i = 0;
    if (arr->type != RLHF_JSON_ARRAY || arr->len == 0)
        return rlhf__bad(e, arr, "\"%s\" must be a non-empty array", field);
    if (arr->len > 1000000) return rlhf__bad(e, arr, "\"%s\" has more than 1000000 turns", field);
    msg = (rlhf_message *)rlhf__arena_alloc(&d->arena, arr->len * sizeof *msg);
    if (!msg) { e->oom = 1; return rlhf__bad(e, NULL, "out of memory"); }
    for (v = arr->child; v; v = v->next, i++) {
        const rlhf_json *role = rlhf_json_get(v, "role");
        int k;
        if (v->type != RLHF_JSON_OBJECT) return rlhf__bad(e, v, "%s[%d] must be an object", field, i);
        if (!role || role->type != RLHF_JSON_STRING)
            return rlhf__bad(e, role ? role : v, "%s[%d] needs a \"role\" string", field, i);
        for (k = 0; k < 3 && !(role->len == strlen(roles[k]) && strcmp(role->str, roles[k]) == 0); k++) {}
        if (k == 3) return rlhf__bad(e, role, "%s[%d] role must be \"system\", \"user\" or \"assistant\"", field, i);
        msg[i].role = (rlhf_role)k;
        if (!rlhf__field_str(d, v, "content", &msg[i].content, e)) return 0;
    }
    *out = msg;
    *n = i;
    return 1;
}
static int rlhf__parse_messages(rlhf_dataset *d, const rlhf_json *arr, rlhf_record *r, rlhf__rec_err *e) {
    return rlhf__parse_turns(d, arr, "messages", &r->messages, &r->n_messages, e);
}

/* HH-RLHF: both transcripts hold the prompt; it is the shared text up to and
   including the last "\n\nAssistant:" that lies wholly in the shared prefix.
   Returns that prompt's length, or 0 when no such marker is shared. */
static size_t rlhf__hh_prompt_len(const char *a, size_t al, const char *b, size_t bl) {
    static const char marker[] = "\n\nAssistant:";
    const size_t ml = sizeof marker - 1;
    size_t common = 0, i;
    while (common < al && common < bl && a[common] == b[common]) common++;
    for (i = common >= ml ? common - ml + 1 : 0; i-- > 0;)
        if (memcmp(a + i, marker, ml) == 0) return i + ml;
    return 0;
}

/* ---- HH-RLHF transcripts in turns, for the chat template ------------------- */

/* HH-RLHF: where the next turn marker "\n\nHuman:" or "\n\nAssistant:" in
   s[from..len) begins (len: none), its role and its length. A "Human:"
   without the blank line before it is text of the turn. */
static size_t rlhf__hh_marker(const char *s, size_t len, size_t from, rlhf_role *role, size_t *mlen) {
    size_t i;
    for (i = from; i + 8 <= len; i++) {
        if (s[i] != '\n' || s[i + 1] != '\n') continue;
        if (memcmp(s + i, "\n\nHuman:", 8) == 0) { *role = RLHF_ROLE_USER; *mlen = 8; return i; }
        if (i + 12 <= len && memcmp(s + i, "\n\nAssistant:", 12) == 0) {
            *role = RLHF_ROLE_ASSISTANT;
            *mlen = 12;
            return i;
        }
    }
    return len;
}
/* Text s[0..len) as turns: the first turn's content starts at 0 and is
   `first`'s; each marker starts the next. msg NULL: only counts. Returns
   the number of turns, 0 when two turns in a row have the same role, -1
   when out of memory. One space after a marker belongs to the marker. */
static int rlhf__hh_turns(rlhf_dataset *d, const char *s, size_t len, rlhf_role first, rlhf_message *msg,
                          rlhf__rec_err *e) {
    size_t pos = 0, mlen = 0;
    rlhf_role role = first, next = first;
    int n = 0;
    for (;;) {
        size_t end = rlhf__hh_marker(s, len, pos, &next, &mlen);
        size_t skip = pos < end && s[pos] == ' ';
        if (msg) {
            msg[n].role = role;
            if (!rlhf__copy_str(d, s + pos + skip, end - pos - skip, &msg[n].content, e)) return -1;
        }
        n++;
        if (end == len) return n;
        if (next == role) return 0;
        role = next;
        pos = end + mlen;
    }
}
/* Text as turns from `first`, which must end with a turn of `last`: 1 and
   the turns in d's arena, 0 when the text does not follow the pattern, -1
   when out of memory. */
static int rlhf__hh_split(rlhf_dataset *d, const char *s, size_t len, rlhf_role first, rlhf_role last,
                          const rlhf_message **out, int *n, rlhf__rec_err *e) {
    rlhf_message *msg;
    int k = rlhf__hh_turns(d, s, len, first, NULL, e);
    rlhf_role other = first == RLHF_ROLE_USER ? RLHF_ROLE_ASSISTANT : RLHF_ROLE_USER;
    if (k <= 0 || (k % 2 ? first : other) != last) return 0; /* turns alternate: the parity gives the last */
    msg = (rlhf_message *)rlhf__arena_alloc(&d->arena, (size_t)k * sizeof *msg);
    if (!msg) {
        e->oom = 1;
        rlhf__bad(e, NULL, "out of memory");
        return -1;
    }
    if (rlhf__hh_turns(d, s, len, first, msg, e) < 0) return -1;
    *out = msg;
    *n = k;
    return 1;
}
/* An HH-RLHF pair (its prompt of pl bytes split off as strings) also in
   turns: the prompt from its first "\n\nHuman:" (or "Human:" at the very
   start) to the last shared "\n\nAssistant:", ending with a user turn; each
   reply from the assistant's turn on, ending with one. Text that does not
   follow this stays strings only, counted. Returns 0 only when out of memory. */
static int rlhf__hh_in_turns(rlhf_dataset *d, rlhf_record *r, size_t pl, rlhf__rec_err *e) {
    const char *s = r->prompt.str;
    size_t start = pl >= 8 && memcmp(s, "\n\nHuman:", 8) == 0 ? 8 : pl >= 6 && memcmp(s, "Human:", 6) == 0 ? 6 : 0;
    int ok = start > 0 && pl >= start + 12;
    if (ok) ok = rlhf__hh_split(d, s + start, pl - 12 - start, RLHF_ROLE_USER, RLHF_ROLE_USER, &r->prompt_messages,
                                &r->n_prompt_messages, e);
    if (ok > 0)
        ok = rlhf__hh_split(d, r->chosen.str, r->chosen.len, RLHF_ROLE_ASSISTANT, RLHF_ROLE_ASSISTANT,
                            &r->chosen_messages, &r->n_chosen_messages, e);
    if (ok > 0)
        ok = rlhf__hh_split(d, r->rejected.str, r->rejected.len, RLHF_ROLE_ASSISTANT, RLHF_ROLE_ASSISTANT,
                            &r->rejected_messages, &r->n_rejected_messages, e);
    if (ok < 0) return 0;
    if (ok == 0) { /* the strings alone, as before the split */
        r->prompt_messages = r->chosen_messages = r->rejected_messages = NULL;
        r->n_prompt_messages = r->n_chosen_messages = r->n_rejected_messages = 0;
        d->unsplit++;
    }
    return 1;
}

/* InstructGPT's K-way ranking {"prompt", "completions", "ranking"}: the
   completions (v) reordered best first. */
static int rlhf__parse_ranking(rlhf_dataset *d, const rlhf_json *o, const rlhf_json *v, rlhf_record *r,
                               rlhf__rec_err *e) {
    const rlhf_json *rk = rlhf_json_get(o, "ranking"), *x, **items;
    rlhf_str *comp;
    unsigned char *seen;
    int K, i;
    r->kind = RLHF_RECORD_RANKING;
    if (!rlhf__field_str(d, o, "prompt", &r->prompt, e)) return 0;
    if (v->type != RLHF_JSON_ARRAY || v->len < 2)
        return rlhf__bad(e, v, "\"completions\" must be an array of at least 2 strings");
    if (v->len > 4096) return rlhf__bad(e, v, "\"completions\" has more than 4096 entries");
    if (!rk) return rlhf__bad(e, o, "missing \"ranking\"");
    if (rk->type != RLHF_JSON_ARRAY || rk->len != v->len)
        return rlhf__bad(e, rk, "\"ranking\" must be an array of %zu indices (one per completion)", v->len);

    K = (int)v->len;
    comp = (rlhf_str *)rlhf__arena_alloc(&d->arena, (size_t)K * sizeof *comp);
    seen = (unsigned char *)rlhf__arena_alloc(&d->arena, (size_t)K);
    items = (const rlhf_json **)rlhf__arena_alloc(&d->arena, (size_t)K * sizeof *items);
    if (!comp || !seen || !items) { e->oom = 1; return rlhf__bad(e, NULL, "out of memory"); }
    for (i = 0, x = v->child; x; x = x->next) items[i++] = x; /* O(1) access by index */
    memset(seen, 0, (size_t)K);

    /* ranking[i] is the index of the i-th best completion: each index once */
    for (i = 0, x = rk->child; x; x = x->next, i++) {
        int64_t idx;
        const rlhf_json *c;
        if (!rlhf_json_int64(x, &idx) || idx < 0 || idx >= K)
            return rlhf__bad(e, x, "ranking[%d] must be an index from 0 to %d", i, K - 1);
        if (seen[idx]) return rlhf__bad(e, x, "ranking[%d] repeats index %lld", i, (long long)idx);
        seen[idx] = 1;
        c = items[idx];
        if (c->type != RLHF_JSON_STRING) return rlhf__bad(e, c, "completions[%lld] must be a string", (long long)idx);
        if (!rlhf__copy_str(d, c->str, c->len, &comp[i], e)) return 0;
    }
    r->completions = comp;
    r->n_completions = K;
    return 1;
}

/* A pair {"chosen", "rejected"} with its "prompt", or without one (HH-RLHF):
   the shared prompt split off both transcripts. */
static int rlhf__parse_pair(rlhf_dataset *d, const rlhf_json *o, rlhf_record *r, rlhf__rec_err *e) {
    size_t pl;
    r->kind = RLHF_RECORD_PAIR;
    if (!rlhf__field_str(d, o, "chosen", &r->chosen, e) || !rlhf__field_str(d, o, "rejected", &r->rejected, e))
        return 0;
    if (r->chosen.len == r->rejected.len && memcmp(r->chosen.str, r->rejected.str, r->chosen.len) == 0)
        return rlhf__bad(e, rlhf_json_get(o, "rejected"), "\"rejected\" is the same as \"chosen\": nothing to compare");
    if (rlhf_json_get(o, "prompt")) return rlhf__field_str(d, o, "prompt", &r->prompt, e);
    pl = rlhf__hh_prompt_len(r->chosen.str, r->chosen.len, r->rejected.str, r->rejected.len);
    if (!rlhf__copy_str(d, r->chosen.str, pl, &r->prompt, e)) return 0;
    r->chosen.str += pl;
    r->chosen.len -= pl;
    r->rejected.str += pl;
    r->rejected.len -= pl;
    if (pl == 0) d->unshared++;
    return pl == 0 || rlhf__hh_in_turns(d, r, pl, e);
}

/* ---- TRL's conversational forms: parts given as lists of messages ---------- */

/* obj[key] is a list: the record is in TRL's conversational form */
static int rlhf__is_list(const rlhf_json *o, const char *key) {
    const rlhf_json *v = rlhf_json_get(o, key);
    return v && v->type == RLHF_JSON_ARRAY;
}
/* obj[key] as a non-empty list of messages; `as` names the field whose list
   made the record conversational (every part then is one) */
static int rlhf__field_turns(rlhf_dataset *d, const rlhf_json *o, const char *key, const char *as,
                             const rlhf_message **out, int *n, rlhf__rec_err *e) {
    const rlhf_json *v = rlhf_json_get(o, key);
    if (!v) return rlhf__bad(e, o, "missing \"%s\"", key);
    if (v->type != RLHF_JSON_ARRAY) return rlhf__bad(e, v, "\"%s\" must be a list of messages, as \"%s\" is", key, as);
    return rlhf__parse_turns(d, v, key, out, n, e);
}
static int rlhf__same_turn(const rlhf_message *a, const rlhf_message *b) {
    return a->role == b->role && a->content.len == b->content.len &&
           memcmp(a->content.str, b->content.str, a->content.len) == 0;
}

/* {"prompt": [m], "completion": [m]}: the completion needs an assistant
   turn (what SFT learns, what an unpaired label judges) */
static int rlhf__parse_conv_completion(rlhf_dataset *d, const rlhf_json *o, rlhf_record *r, rlhf__rec_err *e) {
    const char *as = rlhf__is_list(o, "prompt") ? "prompt" : "completion";
    int i, assistant = 0;
    if (!rlhf__field_turns(d, o, "prompt", as, &r->prompt_messages, &r->n_prompt_messages, e) ||
        !rlhf__field_turns(d, o, "completion", as, &r->completion_messages, &r->n_completion_messages, e))
        return 0;
    for (i = 0; i < r->n_completion_messages; i++) assistant += r->completion_messages[i].role == RLHF_ROLE_ASSISTANT;
    if (!assistant) return rlhf__bad(e, rlhf_json_get(o, "completion"), "\"completion\" has no assistant turn");
    return 1;
}

/* KTO's unpaired preference {"prompt", "completion", "label": true|false},
   standard or conversational */
static int rlhf__parse_unpaired(rlhf_dataset *d, const rlhf_json *o, rlhf_record *r, rlhf__rec_err *e) {
    const rlhf_json *label = rlhf_json_get(o, "label");
    r->kind = RLHF_RECORD_UNPAIRED;
    if (rlhf__is_list(o, "prompt") || rlhf__is_list(o, "completion")) {
        if (!rlhf__parse_conv_completion(d, o, r, e)) return 0;
    } else if (!rlhf__field_str(d, o, "prompt", &r->prompt, e) ||
               !rlhf__field_str(d, o, "completion", &r->completion, e))
        return 0;
    if (!label) return rlhf__bad(e, o, "missing \"label\"");
    if (label->type != RLHF_JSON_TRUE && label->type != RLHF_JSON_FALSE)
        return rlhf__bad(e, label, "\"label\" must be true or false");
    r->label = label->type == RLHF_JSON_TRUE;
    return 1;
}

/* The prompt two conversations share: their common leading messages, up to
   the last place where both have an assistant turn, so each reply begins
   with the assistant (as an HH-RLHF prompt ends at the last shared
   "\n\nAssistant:"). 0: they share none. */
static int rlhf__shared_turns(const rlhf_message *a, int na, const rlhf_message *b, int nb) {
    int s = 0, j;
    while (s < na && s < nb && rlhf__same_turn(&a[s], &b[s])) s++;
    for (j = s; j > 0; j--)
        if (j < na && j < nb && a[j].role == RLHF_ROLE_ASSISTANT && b[j].role == RLHF_ROLE_ASSISTANT) return j;
    return 0;
}
/* TRL's conversational preference: replies that end with an assistant turn
   and differ; the prompt given, or the messages both share (implicit). */
static int rlhf__parse_conv_pair(rlhf_dataset *d, const rlhf_json *o, rlhf_record *r, rlhf__rec_err *e) {
    const char *as = rlhf__is_list(o, "prompt") ? "prompt" : "chosen";
    int k, same;
    r->kind = RLHF_RECORD_PAIR;
    if (!rlhf__field_turns(d, o, "chosen", as, &r->chosen_messages, &r->n_chosen_messages, e) ||
        !rlhf__field_turns(d, o, "rejected", as, &r->rejected_messages, &r->n_rejected_messages, e))
        return 0;
    if (r->chosen_messages[r->n_chosen_messages - 1].role != RLHF_ROLE_ASSISTANT)
        return rlhf__bad(e, rlhf_json_get(o, "chosen"), "\"chosen\" must end with an assistant turn");
    if (r->rejected_messages[r->n_rejected_messages - 1].role != RLHF_ROLE_ASSISTANT)
        return rlhf__bad(e, rlhf_json_get(o, "rejected"), "\"rejected\" must end with an assistant turn");
    same = r->n_chosen_messages == r->n_rejected_messages;
    for (k = 0; same && k < r->n_chosen_messages; k++)
        same = rlhf__same_turn(&r->chosen_messages[k], &r->rejected_messages[k]);
    if (same)
        return rlhf__bad(e, rlhf_json_get(o, "rejected"), "\"rejected\" is the same as \"chosen\": nothing to compare");
    if (rlhf_json_get(o, "prompt"))
        return rlhf__field_turns(d, o, "prompt", as, &r->prompt_messages, &r->n_prompt_messages, e);

    /* implicit prompt: split off the shared messages (views into chosen's list) */
    k = rlhf__shared_turns(r->chosen_messages, r->n_chosen_messages, r->rejected_messages, r->n_rejected_messages);
    r->prompt_messages = r->chosen_messages;
    r->n_prompt_messages = k;
    r->chosen_messages += k;
    r->n_chosen_messages -= k;
    r->rejected_messages += k;
    r->n_rejected_messages -= k;
    if (k == 0) d->unshared++;
    return 1;
}

static int rlhf__parse_record(rlhf_dataset *d, rlhf_data_format fmt, const rlhf_json *o, rlhf_record *r,
                              rlhf__rec_err *e) {
    const rlhf_json *v;
    int i, assistant = 0;
    if (o->type != RLHF_JSON_OBJECT) return rlhf__bad(e, o, "a record must be a JSON object");
    switch (fmt) {
    case RLHF_DATA_TEXT:
        r->kind = RLHF_RECORD_TEXT;
        return rlhf__field_str(d, o, "text", &r->text, e);

    case RLHF_DATA_SFT: /* a conversation with an assistant turn, or a prompt and its completion */
        if (rlhf_json_get(o, "label") && rlhf_json_get(o, "completion"))
            return rlhf__bad(e, o, "an unpaired preference record (\"label\"): SFT learns every completion it is "
                                   "given; give it {\"prompt\", \"completion\"} or {\"messages\"}");
        if ((v = rlhf_json_get(o, "messages")) != NULL) {
            r->kind = RLHF_RECORD_MESSAGES;
            if (!rlhf__parse_messages(d, v, r, e)) return 0;
            for (i = 0; i < r->n_messages; i++) assistant += r->messages[i].role == RLHF_ROLE_ASSISTANT;
            if (!assistant) return rlhf__bad(e, v, "\"messages\" has no assistant turn: nothing to learn");
            return 1;
        }
        if (!rlhf_json_get(o, "prompt") && !rlhf_json_get(o, "completion"))
            return rlhf__bad(e, o, "expected {\"prompt\", \"completion\"} or {\"messages\"}");
        r->kind = RLHF_RECORD_COMPLETION;
        if (rlhf__is_list(o, "prompt") || rlhf__is_list(o, "completion"))
            return rlhf__parse_conv_completion(d, o, r, e);
        return rlhf__field_str(d, o, "prompt", &r->prompt, e) && rlhf__field_str(d, o, "completion", &r->completion, e);

    case RLHF_DATA_PREFERENCE:
        if ((v = rlhf_json_get(o, "completions")) != NULL) return rlhf__parse_ranking(d, o, v, r, e);
        if (!rlhf_json_get(o, "chosen") && rlhf_json_get(o, "label") && rlhf_json_get(o, "completion"))
            return rlhf__bad(e, o, "an unpaired preference record ({\"prompt\", \"completion\", \"label\"}), not a "
                                   "pair: this needs {\"chosen\", \"rejected\"} or {\"completions\", \"ranking\"}");
        if (rlhf__is_list(o, "prompt") || rlhf__is_list(o, "chosen")) return rlhf__parse_conv_pair(d, o, r, e);
        return rlhf__parse_pair(d, o, r, e);

    case RLHF_DATA_PROMPTS: /* a conversation that ends with a user turn, or a prompt */
        r->kind = RLHF_RECORD_PROMPT;
        if ((v = rlhf_json_get(o, "messages")) != NULL) {
            if (!rlhf__parse_messages(d, v, r, e)) return 0;
            if (r->messages[r->n_messages - 1].role != RLHF_ROLE_USER)
                return rlhf__bad(e, v, "\"messages\" must end with a user turn");
            r->prompt_messages = r->messages;
            r->n_prompt_messages = r->n_messages;
            return 1;
        }
        if (rlhf__is_list(o, "prompt")) { /* TRL's conversational prompt-only form */
            v = rlhf_json_get(o, "prompt");
            if (!rlhf__parse_turns(d, v, "prompt", &r->messages, &r->n_messages, e)) return 0;
            if (r->messages[r->n_messages - 1].role != RLHF_ROLE_USER)
                return rlhf__bad(e, v, "\"prompt\" must end with a user turn");
            r->prompt_messages = r->messages;
            r->n_prompt_messages = r->n_messages;
            return 1;
        }
        return rlhf__field_str(d, o, "prompt", &r->prompt, e);

    case RLHF_DATA_UNPAIRED:
        return rlhf__parse_unpaired(d, o, r, e);
    }
    return rlhf__bad(e, o, "unknown data format");
}

/* A bad record: stop (returns the error) or skip and count (returns OK). */
static rlhf_result rlhf__data_bad(rlhf_dataset *d, const rlhf_data_options *opt, const char *msg, rlhf_result code,
                                  rlhf_error *err) {
    if (!opt->skip_bad || code == RLHF_ERR_OUT_OF_MEMORY || code == RLHF_ERR_IO) {
        if (err) snprintf(err->message, sizeof err->message, "%s", msg);
        return code;
    }
    if (d->skipped++ == 0) snprintf(d->first_skip, sizeof d->first_skip, "%s", msg);
    if (opt->log) opt->log(opt->log_user, RLHF_LOG_WARN, msg);
    return RLHF_OK;
}

static rlhf_result rlhf__data_push(rlhf_dataset *d, const rlhf_record *r) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        rlhf_record *nr = (rlhf_record *)rlhf__alloc(cap * sizeof *nr);
        if (!nr) return RLHF_ERR_OUT_OF_MEMORY;
        if (d->n) memcpy(nr, d->rec, d->n * sizeof *nr);
        rlhf__free(d->rec);
        d->rec = nr;
        d->cap = cap;
    }
    d->rec[d->n++] = *r;
    return RLHF_OK;
}

/* The whole of open file f (at most limit bytes, or stop just past it) into
   one string of d's arena; NULL when out of memory. The string has room for
   a NUL after its *len bytes. */
static char *rlhf__read_text(rlhf_dataset *d, FILE *f, size_t limit, size_t *len) {
    char *buf = (char *)rlhf__arena_alloc(&d->arena, 1 << 16);
    size_t cap = 1 << 16, got;
    *len = 0;
    if (!buf) return NULL;
    while ((got = fread(buf + *len, 1, cap - *len, f)) > 0) { /* grow by reading in chunks */
        *len += got;
        if (*len > limit) break;
        if (*len == cap) {
            char *nb = (char *)rlhf__arena_alloc(&d->arena, cap * 2);
            if (!nb) return NULL;
            memcpy(nb, buf, *len);
            buf = nb;
            cap *= 2;
        }
    }
    return buf;
}

/* A plain text file as one record of UTF-8 text. */
static rlhf_result rlhf__load_text(rlhf_dataset *d, const char *path, const rlhf_data_options *opt, rlhf_error *err) {
    size_t limit = opt->max_text_bytes > 0 ? (size_t)opt->max_text_bytes : (size_t)1 << 30;
    size_t len = 0, i = 0, line = 1, col = 1;
    FILE *f = fopen(path, "rb");
    rlhf_record rec;
    char *buf;
    rlhf_result r;
    if (!f) return rlhf__st_err(err, RLHF_ERR_IO, path, "cannot open the file");
    buf = rlhf__read_text(d, f, limit, &len);
    fclose(f);
    if (!buf) return rlhf__st_err(err, RLHF_ERR_OUT_OF_MEMORY, path, "out of memory");
    if (len > limit) return rlhf__st_err(err, RLHF_ERR_TOO_LARGE, path, "larger than the limit of %zu bytes", limit);
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) { /* a byte-order mark is not text to learn */
        buf += 3;
        len -= 3;
    }
    if (len == 0) return rlhf__st_err(err, RLHF_ERR_PARSE, path, "the file is empty");

    /* valid UTF-8 throughout; an error names its line and column */
    while (i < len) {
        size_t k = rlhf__utf8_len((const unsigned char *)buf + i, len - i);
        if (!k)
            return rlhf__st_err(err, RLHF_ERR_PARSE, path, "%zu:%zu: invalid UTF-8 (byte 0x%02X)", line, col,
                                (unsigned)(unsigned char)buf[i]);
        if (buf[i] == '\n') { line++; col = 1; }
        else col++;
        i += k;
    }

    memset(&rec, 0, sizeof rec);
    rec.kind = RLHF_RECORD_TEXT;
    rec.line = 1;
    rec.text.str = buf;
    rec.text.len = len;
    buf[len] = 0; /* room: rlhf__read_text grows before the buffer is full */
    if ((r = rlhf__data_push(d, &rec)) != RLHF_OK) return rlhf__st_err(err, r, path, "out of memory");
    return RLHF_OK;
}

/* One JSONL record (doc, which this frees) into d; a bad one stops the load
   or is skipped (rlhf__data_bad). */
static rlhf_result rlhf__load_record(rlhf_dataset *d, rlhf_jsonl *jl, rlhf_json_doc *doc, rlhf_data_format format,
                                     const char *path, const rlhf_data_options *opt, rlhf_error *err) {
    rlhf_record rec;
    rlhf__rec_err e;
    rlhf_result r;
    memset(&rec, 0, sizeof rec);
    e.oom = 0;
    rec.line = rlhf_jsonl_line(jl);
    if (!rlhf__parse_record(d, format, rlhf_json_root(doc), &rec, &e)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s:%zu:%zu: %s", path, rec.line, e.column, e.what);
        rlhf_json_free(doc);
        return rlhf__data_bad(d, opt, msg, e.oom ? RLHF_ERR_OUT_OF_MEMORY : RLHF_ERR_PARSE, err);
    }
    rlhf_json_free(doc);
    if ((r = rlhf__data_push(d, &rec)) != RLHF_OK) rlhf__st_err(err, r, path, "out of memory");
    return r;
}

/* A JSONL file, record by record, into d. */
static rlhf_result rlhf__load_jsonl(rlhf_dataset *d, const char *path, rlhf_data_format format,
                                    const rlhf_data_options *opt, rlhf_error *err) {
    rlhf_jsonl *jl;
    rlhf_json_error je;
    rlhf_result r = RLHF_OK;
    if ((r = rlhf_jsonl_open(&jl, path, opt->max_line_bytes, &je)) != RLHF_OK) {
        if (err) snprintf(err->message, sizeof err->message, "%s", je.message);
        return r;
    }
    for (;;) {
        rlhf_json_doc *doc = NULL;
        rlhf_result pr = rlhf_jsonl_next(jl, &doc, &je);
        if (pr != RLHF_OK) { /* a line that is not JSON */
            if ((r = rlhf__data_bad(d, opt, je.message, pr, err)) != RLHF_OK) break;
            continue;
        }
        if (!doc) break; /* end of file */
        if ((r = rlhf__load_record(d, jl, doc, format, path, opt, err)) != RLHF_OK) break;
    }
    rlhf_jsonl_close(jl);
    return r;
}

RLHFDEF rlhf_result rlhf_dataset_load(rlhf_dataset **out, const char *path, rlhf_data_format format,
                                      const rlhf_data_options *options, rlhf_error *err) {
    rlhf_data_options opt = options ? *options : rlhf_data_options_default();
    rlhf_dataset *d;
    rlhf_result r;
    size_t plen;
    if (err) err->message[0] = 0;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!path || (int)format < 0 || format > RLHF_DATA_UNPAIRED) return RLHF_ERR_INVALID_ARGUMENT;
    d = (rlhf_dataset *)rlhf__alloc(sizeof *d);
    if (!d) return RLHF_ERR_OUT_OF_MEMORY;
    memset(d, 0, sizeof *d);

    /* text that is not JSONL is one record; anything else is JSONL */
    plen = strlen(path);
    if (format == RLHF_DATA_TEXT && !(plen >= 6 && strcmp(path + plen - 6, ".jsonl") == 0))
        r = rlhf__load_text(d, path, &opt, err);
    else
        r = rlhf__load_jsonl(d, path, format, &opt, err);

    /* a load that kept nothing is an error */
    if (r == RLHF_OK && d->n == 0) {
        if (d->skipped)
            r = rlhf__st_err(err, RLHF_ERR_PARSE, path, "all %zu records are bad; the first: %s", d->skipped,
                             d->first_skip);
        else r = rlhf__st_err(err, RLHF_ERR_PARSE, path, "no records");
    }
    if (r != RLHF_OK) {
        rlhf_dataset_free(d);
        return r;
    }
    *out = d;
    return RLHF_OK;
}

// ----------------------------------------------------------------------------
// >>train  the training loop every offline stage shares: options and the
//          learning-rate schedule, the run (errors, log, metric lines,
//          checkpoints), the train/validation split and the loop itself
// ----------------------------------------------------------------------------
//
// A stage (pretraining, SFT, the reward model; DPO next) is a loss over
// "units" of its data: rows of tokens for a language model, prompts with
// their K ranked completions for the reward model. The loop owns everything
// else, written once here:
//
//   for epoch = 0, 1, ...:  shuffle the units (the run's seeded generator)
//     for each batch of batch_size units:           step s = 1 .. S
//       skip it when s <= resume_step (only the data order advances)
//       g = stage.grads(batch)     gradient of the batch's mean loss,
//                                  accumulated over micro-batches
//       theta <- AdamW(theta, g, lr(s))            unless g is not finite
//       a metric line; every eval_every steps and at S:
//         stage.validate -> best.safetensors when the loss improves,
//         then last.safetensors (with AdamW's state: resume is bit-exact)
//       stop here when the caller's should_stop says so
//
// A stage with a frozen reference model (DPO) keeps it in its own state and
// runs it inside grads: the loop only ever updates run->m.
//
// The learning rate at step s (0-based; W warmup steps, S steps in all,
// lo = lr * min_lr_ratio), as Hugging Face's schedules:
//
//   lr(s) = lr * (s + 1) / W                          s < W
//   p     = min(1, (s - W) / (S - W))                 afterwards
//   lr(s) = lo + (lr - lo) * (1 + cos(pi p)) / 2      cosine decay
//   lr(s) = lr - (lr - lo) * p                        linear decay

#if defined(_OPENMP)
static double rlhf__seconds(void) { return omp_get_wtime(); }
#else
#include <time.h>
static double rlhf__seconds(void) {
#ifdef TIME_UTC
    struct timespec ts;
    if (timespec_get(&ts, TIME_UTC) == TIME_UTC) return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
    return (double)clock() / CLOCKS_PER_SEC;
}
#endif

/* The defaults of the SFT and pretraining stages; the reward model's differ
   where "The N implementation details" (and InstructGPT) differ: one epoch,
   a linear decay to 0, no weight decay, micro-batches of 32 sequences. */
RLHFDEF rlhf_train_options rlhf_train_options_sft(void) {
    rlhf_train_options o;
    memset(&o, 0, sizeof o);
    o.opt = rlhf_adamw_config_default();
    o.batch_size = 16;
    o.epochs = 1;
    o.warmup_steps = 10;
    o.decay = RLHF_LR_COSINE;
    o.min_lr_ratio = 0.1f;
    o.eval_every = 100;
    o.val_fraction = 0.05f;
    o.log_every = 10;
    o.seed = 1;
    return o;
}
RLHFDEF rlhf_train_options rlhf_train_options_reward(void) {
    rlhf_train_options o = rlhf_train_options_sft();
    o.opt.lr = 1e-4f;
    o.opt.weight_decay = 0.0f;
    o.batch_size = 8;
    o.micro_batch = 32;
    o.warmup_steps = 0;
    o.decay = RLHF_LR_LINEAR;
    o.min_lr_ratio = 0.0f;
    o.eval_every = 50;
    return o;
}

RLHFDEF float rlhf_lr_at(const rlhf_train_options *o, long step, long total_steps) {
    double lr, lo, p;
    long rest;
    if (!o) return 0.0f;
    lr = o->opt.lr;
    lo = lr * o->min_lr_ratio;
    if (step < o->warmup_steps) return (float)(lr * (double)(step + 1) / (double)o->warmup_steps);

    /* progress over the decay steps; the floor is reached after the last
       step (as Hugging Face's schedules), so no step runs at lr 0 */
    rest = total_steps - o->warmup_steps;
    p = rest > 0 ? (double)(step - o->warmup_steps) / (double)rest : 0.0;
    if (p > 1.0) p = 1.0;
    if (o->decay == RLHF_LR_COSINE) return (float)(lo + (lr - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * p)));
    if (o->decay == RLHF_LR_LINEAR) return (float)(lr - (lr - lo) * p);
    return (float)lr;
}

/* ---- a run: options, error, timing, log and metric lines ------------------- */

typedef struct rlhf__trainrun {
    const rlhf_train_options *o;
    rlhf_error *err;
    rlhf_model *m;          /* the model the run trains */
    const char *stage;      /* "sft", "pretrain", "rm", "ppo": the prefix of every message */
    double t0;
    double tokens0;         /* a resumed run: tokens before its checkpoint (the metric lines count from
                               the run's start, the report from this call's) */
    rlhf__sb line;          /* the metric line being built */
    float best;             /* best validation loss so far (NaN: none) */
    rlhf_train_report rep;  /* what the caller gets back (offline stages) */
} rlhf__trainrun;

/* The run's messages. Each begins with the stage ("sft: ", "rm: ", ...):
   a command-line tool prints the error as is. The run ends with result r:
   "stage: message" into err and the log */
static rlhf_result rlhf__run_vend(rlhf__trainrun *run, rlhf_log_level level, rlhf_result r, const char *fmt,
                                  va_list ap) {
    char msg[480], full[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(full, sizeof full, "%s: %s", run->stage, msg);
    if (run->err) snprintf(run->err->message, sizeof run->err->message, "%s", full);
    if (run->o->log) run->o->log(run->o->log_user, level, full);
    return r;
}
static rlhf_result rlhf__run_fail(rlhf__trainrun *run, rlhf_result r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    r = rlhf__run_vend(run, RLHF_LOG_ERROR, r, fmt, ap);
    va_end(ap);
    return r;
}
static rlhf_result rlhf__run_end(rlhf__trainrun *run, rlhf_log_level level, rlhf_result r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    r = rlhf__run_vend(run, level, r, fmt, ap);
    va_end(ap);
    return r;
}
static void rlhf__run_log(rlhf__trainrun *run, rlhf_log_level level, const char *fmt, ...) {
    char msg[512];
    int n;
    va_list ap;
    if (!run->o->log) return;
    n = snprintf(msg, sizeof msg, "%s: ", run->stage);
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    run->o->log(run->o->log_user, level, msg);
}

/* metric lines: begin, add "key":value pairs (non-finite as null), emit */
static void rlhf__metric_begin(rlhf__trainrun *run, long step) {
    run->line.len = 0;
    run->line.oom = 0; /* a line that ran out of memory before does not stop this one */
    rlhf__sb_fmt(&run->line, "{\"stage\":\"%s\",\"step\":%ld", run->stage, step);
}
static void rlhf__metric(rlhf__trainrun *run, const char *key, double v) {
    if (isfinite(v)) rlhf__sb_fmt(&run->line, ",\"%s\":%.7g", key, v);
    else rlhf__sb_fmt(&run->line, ",\"%s\":null", key);
}
static void rlhf__metric_end(rlhf__trainrun *run) {
    rlhf__metric(run, "elapsed_s", rlhf__seconds() - run->t0);
    rlhf__sb_str(&run->line, "}");
    if (run->o->metrics && !run->line.oom) run->o->metrics(run->o->metrics_user, run->line.p);
}

/* A checkpoint of the run: its kind and tokenizer go into the metadata so
   the file is a whole model; AdamW state included (for resuming). */
static rlhf_result rlhf__run_save(rlhf__trainrun *run, const char *name, long step, const char *kind,
                                  const rlhf_tokenizer *t) {
    char path[1024], num[32];
    const char *bad = rlhf__non_finite_tensor(run->m);
    rlhf_error e;
    rlhf_result r;

    /* a diverged model is never a checkpoint: the previous one stays */
    if (bad)
        return rlhf__run_fail(run, RLHF_ERR_NON_FINITE,
                              "the weights are not finite after step %ld (%s; learning rate too high?)%s", step, bad,
                              run->o->out_dir ? "; checkpoint not written" : "");
    if ((r = rlhf__set_meta(run->m, "rlhf.kind", kind)) != RLHF_OK)
        return rlhf__run_fail(run, r, "out of memory for the metadata");
    if ((r = rlhf_model_set_tokenizer(run->m, t)) != RLHF_OK)
        return rlhf__run_fail(run, r, "cannot store the tokenizer in the model: %s", rlhf_model_last_error(run->m));
    if (!run->o->out_dir) return RLHF_OK;

    /* the step and the best validation loss let a resumed run go on as if never stopped */
    if ((size_t)snprintf(path, sizeof path, "%s/%s", run->o->out_dir, name) >= sizeof path)
        return rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT, "out_dir \"%s\" is too long", run->o->out_dir);
    snprintf(num, sizeof num, "%ld", step);
    r = rlhf__set_meta(run->m, "rlhf.train.step", num);
    if (r == RLHF_OK) {
        snprintf(num, sizeof num, "%.17g", run->tokens0 + run->rep.tokens);
        r = rlhf__set_meta(run->m, "rlhf.train.tokens", num);
    }
    if (r == RLHF_OK && isfinite(run->best)) {
        snprintf(num, sizeof num, "%.9g", (double)run->best);
        r = rlhf__set_meta(run->m, "rlhf.train.best_val_loss", num);
    }
    if (r != RLHF_OK) return rlhf__run_fail(run, r, "out of memory for the metadata");
    if ((r = rlhf_model_save_ex(run->m, path, 0, &e)) != RLHF_OK)
        return rlhf__run_fail(run, r, "cannot write checkpoint %s: %s", path, e.message);
    return RLHF_OK;
}

/* The caller's should_stop said stop after this step: last.safetensors at
   it, exactly as a periodic save (unless the step's validation has just
   written it), so resume_step = step continues bit for bit. */
static rlhf_result rlhf__run_stop(rlhf__trainrun *run, long step, long total_steps, int saved, const char *kind,
                                  const rlhf_tokenizer *t) {
    rlhf_result r;
    if (!saved && (r = rlhf__run_save(run, "last.safetensors", step, kind, t)) != RLHF_OK) return r;
    if (!run->o->out_dir)
        return rlhf__run_end(run, RLHF_LOG_WARN, RLHF_ERR_INTERRUPTED, "stopped at step %ld of %ld", step, total_steps);
    return rlhf__run_end(run, RLHF_LOG_WARN, RLHF_ERR_INTERRUPTED,
                         "stopped at step %ld of %ld; %s/last.safetensors holds it", step, total_steps,
                         run->o->out_dir);
}

/* A stage starts with a fresh AdamW (moments 0, step 0): a checkpoint of the
   previous stage may carry its state, which belongs to another loss. */
static void rlhf__fresh_optimizer(rlhf_model *m) {
    if (m->m_mem) memset(m->m_mem, 0, m->num_params * sizeof(float));
    if (m->v_mem) memset(m->v_mem, 0, m->num_params * sizeof(float));
    m->adam_steps = 0;
}

/* the options in range, or a message naming the first one that is not */
static int rlhf__opts_ok(rlhf__trainrun *run, const rlhf_train_options *o, const rlhf_model *m) {
    /* an infinite lr or decay would pass "> 0" and wreck the weights on the first step */
    const float knob[3] = {o->opt.lr, o->opt.grad_clip, o->opt.weight_decay};
    static const char *const knob_name[3] = {"opt.lr", "opt.grad_clip", "opt.weight_decay"};
    int i;
    for (i = 0; i < 3; i++)
        if (!isfinite(knob[i])) {
            rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT, "bad options: %s is %g; it must be finite", knob_name[i],
                           (double)knob[i]);
            return 0;
        }
    if (o->batch_size < 1 || o->micro_batch < 0 || o->seq_len < 0 || o->seq_len > m->cfg.n_ctx || o->epochs < 1 ||
        o->warmup_steps < 0 || !(o->min_lr_ratio >= 0.0f && o->min_lr_ratio <= 1.0f) ||
        !(o->val_fraction >= 0.0f && o->val_fraction < 1.0f) || o->eval_every < 0 || o->log_every < 0 ||
        !(o->opt.lr > 0.0f)) {
        rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT,
                       "bad options: need batch_size >= 1, micro_batch >= 0, 0 <= seq_len <= n_ctx (%d), epochs >= 1, "
                       "warmup_steps >= 0, min_lr_ratio in [0,1], val_fraction in [0,1), lr > 0",
                       m->cfg.n_ctx);
        return 0;
    }
    return 1;
}

/* The start every offline stage shares: the run, its report, the arguments
   and options checked, the best validation loss of a resumed run, and a
   fresh optimizer for a new one. 0 when the run cannot start (err says why). */
static int rlhf__run_begin(rlhf__trainrun *run, const char *stage, rlhf_model *m, const rlhf_tokenizer *t,
                           const rlhf_dataset *train, const rlhf_train_options *o, rlhf_error *err, rlhf_result *r) {
    rlhf_train_report *rep = &run->rep;
    memset(run, 0, sizeof *run);
    memset(rep, 0, sizeof *rep);
    rep->train_loss = rep->val_loss = rep->best_val_loss = NAN;
    rep->train_accuracy = rep->val_accuracy = NAN;
    rep->best_step = -1;
    if (err) err->message[0] = 0;
    if (!m || !t || !train || !o) {
        if (err)
            snprintf(err->message, sizeof err->message, "%s: model, tokenizer, dataset and options are required",
                     stage);
        *r = RLHF_ERR_INVALID_ARGUMENT;
        return 0;
    }
    run->o = o;
    run->err = err;
    run->m = m;
    run->stage = stage;
    run->t0 = rlhf__seconds();
    run->best = NAN;
    if (o->resume_step > 0 && rlhf_model_meta(m, "rlhf.train.best_val_loss"))
        rep->best_val_loss = run->best = (float)strtod(rlhf_model_meta(m, "rlhf.train.best_val_loss"), NULL);
    if (o->resume_step == 0) /* a new run: an earlier stage's best (the model's metadata) is not this run's, and
                                a stop before this run's first validation would save it for its resume to read */
        rlhf__set_meta(m, "rlhf.train.best_val_loss", NULL);
    if (o->resume_step > 0 && rlhf_model_meta(m, "rlhf.train.tokens")) { /* the metric lines' count goes on */
        run->tokens0 = strtod(rlhf_model_meta(m, "rlhf.train.tokens"), NULL);
        if (!(run->tokens0 >= 0.0 && run->tokens0 < 1e300)) run->tokens0 = 0.0; /* a damaged value: from 0 */
    }
    *r = RLHF_ERR_INVALID_ARGUMENT;
    if (!rlhf__opts_ok(run, o, m)) return 0;
    if (rlhf_tokenizer_vocab_size(t) > m->cfg.vocab_size) {
        rlhf__run_fail(run, *r, "the tokenizer has %d tokens but the model only %d", rlhf_tokenizer_vocab_size(t),
                       m->cfg.vocab_size);
        return 0;
    }
    *r = RLHF_OK;
    return 1;
}

/* ---- the split: training and validation units -------------------------------- */

/* Fisher-Yates with the run's generator */
static void rlhf__shuffle(size_t *a, size_t n, rlhf_rng *rng) {
    size_t i;
    for (i = n; i > 1; i--) {
        size_t j = (size_t)(rlhf_rng_u64(rng) % (uint64_t)i), tmp = a[i - 1];
        a[i - 1] = a[j];
        a[j] = tmp;
    }
}

/* Split units 0..n into train and validation index lists: val_fraction of
   them, chosen by the seed, at least one when n >= 2. */
static int rlhf__split(size_t n, float frac, uint64_t seed, size_t **train, size_t *n_train, size_t **val,
                       size_t *n_val) {
    size_t i, nv = (size_t)((double)frac * (double)n);
    size_t *all = (size_t *)rlhf__alloc((n + 1) * sizeof(size_t));
    rlhf_rng rng;
    if (!all) return 0;
    if (frac > 0.0f && nv == 0 && n >= 2) nv = 1;
    for (i = 0; i < n; i++) all[i] = i;
    rlhf_rng_seed(&rng, seed ^ 0x5A17u);
    rlhf__shuffle(all, n, &rng);
    *val = (size_t *)rlhf__alloc((nv + 1) * sizeof(size_t));
    if (!*val) { rlhf__free(all); return 0; }
    memcpy(*val, all, nv * sizeof(size_t));
    memmove(all, all + nv, (n - nv) * sizeof(size_t));
    *n_val = nv;
    *train = all;
    *n_train = n - nv;
    return 1;
}

/* The units to train and validate on: n of the training set, and either all
   n_given of a separate validation set (given = 1) or val_fraction of the
   n held out. The lists index the training set, or the validation set. */
static rlhf_result rlhf__train_val(rlhf__trainrun *run, size_t n, int given, size_t n_given, size_t **tidx, size_t *n_t,
                                   size_t **vidx, size_t *n_v) {
    size_t i;
    if (!given) {
        if (!rlhf__split(n, run->o->val_fraction, run->o->seed, tidx, n_t, vidx, n_v))
            return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
        return RLHF_OK;
    }
    *tidx = (size_t *)rlhf__alloc((n + 1) * sizeof(size_t));
    *vidx = (size_t *)rlhf__alloc((n_given + 1) * sizeof(size_t));
    if (!*tidx || !*vidx) return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
    for (i = 0; i < n; i++) (*tidx)[i] = i;
    for (i = 0; i < n_given; i++) (*vidx)[i] = i;
    *n_t = n;
    *n_v = n_given;
    return RLHF_OK;
}

/* ---- the loop ----------------------------------------------------------------- */

/* What one step's gradients produced, as the stage reports it. */
typedef struct rlhf__step_out {
    double loss;     /* the step's loss: the mean over its units */
    int finite;      /* 0: a loss or a gradient was not finite (no update) */
    double correct;  /* preference stages: pairs ranked right, */
    double pairs;    /*   pairs in all, */
    double margin;   /*   and the sum of their reward margins r_better - r_worse */
} rlhf__step_out;

/* What a stage supplies to the loop. */
typedef struct rlhf__stage {
    const char *kind;     /* the checkpoints' rlhf.kind: "base", "policy" or "reward" */
    size_t n_train;       /* training units */
    size_t n_val;         /* validation units (0: no validation) */
    size_t *order;        /* the n_train units in training order, shuffled every epoch */
    int order_restarts;   /* 1: each epoch shuffles 0..n_train-1 afresh; 0: it shuffles the previous
                             epoch's order (the reward model's, kept so its old runs resume bit for bit) */
    int preference;       /* metric lines carry accuracy and margin (else the tokens seen) */
    /* The gradient of the mean loss over units[0..n), accumulated into the
       model's (zeroed) gradients; out->loss is that mean. */
    rlhf_result (*grads)(void *self, rlhf__trainrun *run, const size_t *units, size_t n, long step,
                         rlhf__step_out *out);
    /* The validation loss into run->rep.val_loss (and what else the stage
       measures), with its metric line and log line. */
    rlhf_result (*validate)(void *self, rlhf__trainrun *run, long step);
    /* more metrics of the step just taken, into its metric line (may be NULL) */
    void (*metrics)(void *self, rlhf__trainrun *run);
    void *self;
} rlhf__stage;

/* steps in the run: max_steps, or epochs over n units in batches */
static long rlhf__run_steps(const rlhf_train_options *o, size_t n) {
    if (o->max_steps > 0) return o->max_steps;
    return (long)((n + (size_t)o->batch_size - 1) / (size_t)o->batch_size) * o->epochs;
}

/* The metric line and the log line of one step. */
static void rlhf__step_report(rlhf__trainrun *run, const rlhf__stage *st, const rlhf__step_out *s, long step,
                              long total, double epoch, float lr, float gn) {
    const rlhf_train_options *o = run->o;
    double acc = s->pairs > 0 ? s->correct / s->pairs : NAN;
    rlhf__metric_begin(run, step);
    rlhf__metric(run, "total_steps", (double)total);
    rlhf__metric(run, "epoch", epoch);
    rlhf__metric(run, "loss", s->finite ? s->loss : NAN);
    if (st->preference) {
        rlhf__metric(run, "accuracy", acc);
        rlhf__metric(run, "margin", s->pairs > 0 ? s->margin / s->pairs : NAN);
    }
    if (st->metrics) st->metrics(st->self, run);
    rlhf__metric(run, "lr", lr);
    rlhf__metric(run, "grad_norm", gn);
    if (!st->preference) rlhf__metric(run, "tokens", run->tokens0 + run->rep.tokens);
    rlhf__metric_end(run);
    if (!o->log_every || (step % o->log_every != 0 && step != total)) return;
    if (st->preference) {
        rlhf__run_log(run, RLHF_LOG_INFO, "step %ld/%ld loss %.4f accuracy %.3f lr %.3g grad_norm %.3g", step, total,
                      s->loss, s->pairs > 0 ? acc : 0.0, (double)lr, (double)gn);
    } else {
        double el = rlhf__seconds() - run->t0;
        rlhf__run_log(run, RLHF_LOG_INFO, "step %ld/%ld loss %.4f lr %.3g grad_norm %.3g %.0f tok/s", step, total,
                      s->loss, (double)lr, (double)gn, el > 0 ? run->rep.tokens / el : 0.0);
    }
}

/* One optimisation step (0-based `step`) on units[0..n): the stage's
   gradients, then AdamW at lr unless they are not finite. */
static rlhf_result rlhf__train_step(rlhf__trainrun *run, rlhf__stage *st, const size_t *units, size_t n, long step,
                                    float lr, rlhf__step_out *s, float *gn) {
    rlhf_adamw_config opt = run->o->opt;
    rlhf_result r;
    const char *bad;
    memset(s, 0, sizeof *s);
    s->finite = 1;
    *gn = 0.0f;
    rlhf_model_zero_grad(run->m);
    if ((r = st->grads(st->self, run, units, n, step, s)) != RLHF_OK) return r;

    /* the update; a non-finite gradient norm skips it */
    opt.lr = lr;
    if (s->finite) {
        r = rlhf_model_adamw_update(run->m, &opt, gn);
        if (r == RLHF_ERR_NON_FINITE) s->finite = 0;
        else if (r != RLHF_OK) return rlhf__run_fail(run, r, "step %ld: %s", step + 1, rlhf_model_last_error(run->m));
    }
    if (s->finite) {
        run->rep.steps++;
        return RLHF_OK;
    }

    /* skipped: fatal when the weights themselves are not finite (skipping the rest cannot help) */
    if ((bad = rlhf__non_finite_tensor(run->m)) != NULL)
        return rlhf__run_fail(run, RLHF_ERR_NON_FINITE,
                              "the weights are not finite after step %ld (%s; learning rate too high?)", step, bad);
    run->rep.skipped_steps++;
    rlhf__run_log(run, RLHF_LOG_WARN, "step %ld: loss or gradient norm is not finite; update skipped (%ld so far)",
                  step + 1, run->rep.skipped_steps);
    return RLHF_OK;
}

/* Validation (when there is a validation set), best.safetensors when the
   loss improves on the best so far, then last.safetensors. */
static rlhf_result rlhf__train_checkpoint(rlhf__trainrun *run, rlhf__stage *st, long step, const rlhf_tokenizer *t) {
    rlhf_train_report *rep = &run->rep;
    rlhf_result r;
    if (st->n_val > 0) {
        if ((r = st->validate(st->self, run, step)) != RLHF_OK) return r;
        if (run->line.oom && run->o->metrics)
            return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory for a metric line");
        if (isfinite(rep->val_loss) && !(rep->val_loss >= rep->best_val_loss)) {
            rep->best_val_loss = run->best = rep->val_loss;
            rep->best_step = step;
            if ((r = rlhf__run_save(run, "best.safetensors", step, st->kind, t)) != RLHF_OK) return r;
        }
    }
    return rlhf__run_save(run, "last.safetensors", step, st->kind, t);
}

/* The loop (see the top of this section). rng: the run's generator, already
   used by the stage's setup where it shuffles; on return run->rep holds the
   report. The training loss and accuracy of the report are means over a
   window of up to 100 steps, the last window at the end. */
static rlhf_result rlhf__train_loop(rlhf__trainrun *run, rlhf__stage *st, rlhf_rng *rng, const rlhf_tokenizer *t) {
    const rlhf_train_options *o = run->o;
    rlhf_train_report *rep = &run->rep;
    long step = 0, total = rlhf__run_steps(o, st->n_train), epoch, win_n = 0;
    double win_loss = 0.0, win_correct = 0.0, win_pairs = 0.0;
    size_t at, i, n;
    rlhf_result r;
    for (epoch = 0; step < total; epoch++) {
        if (st->order_restarts)
            for (i = 0; i < st->n_train; i++) st->order[i] = i;
        rlhf__shuffle(st->order, st->n_train, rng);
        for (at = 0; at < st->n_train && step < total; at += (size_t)o->batch_size) {
            rlhf__step_out s;
            float gn, lr = rlhf_lr_at(o, step, total);
            int saved;
            n = st->n_train - at < (size_t)o->batch_size ? st->n_train - at : (size_t)o->batch_size;
            if (step < o->resume_step) { /* done before the checkpoint: only the data order advances */
                step++;
                continue;
            }

            /* the step, its metrics, and the training window */
            if ((r = rlhf__train_step(run, st, st->order + at, n, step, lr, &s, &gn)) != RLHF_OK) return r;
            step++;
            if (s.finite) {
                win_loss += s.loss;
                win_n++;
                win_correct += s.correct;
                win_pairs += s.pairs;
            }
            rlhf__step_report(run, st, &s, step, total, (double)epoch + (double)(at + n) / (double)st->n_train, lr, gn);
            if (run->line.oom && run->o->metrics)
            return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory for a metric line");
            if (win_n >= 100 || step == total) {
                rep->train_loss = win_n ? (float)(win_loss / (double)win_n) : NAN;
                rep->train_accuracy = win_pairs > 0 ? (float)(win_correct / win_pairs) : NAN;
                if (step != total) win_loss = 0.0, win_n = 0, win_correct = 0.0, win_pairs = 0.0;
            }

            /* validation and checkpoints every eval_every steps and at the end */
            saved = (o->eval_every && step % o->eval_every == 0) || step == total;
            if (saved && (r = rlhf__train_checkpoint(run, st, step, t)) != RLHF_OK) return r;

            /* the caller may stop the run here; the last step needs no stop */
            if (o->should_stop && step < total && o->should_stop(o->stop_user)) {
                if (win_n) rep->train_loss = (float)(win_loss / (double)win_n);
                if (win_pairs > 0) rep->train_accuracy = (float)(win_correct / win_pairs);
                return rlhf__run_stop(run, step, total, saved, st->kind, t);
            }
        }
    }
    return RLHF_OK;
}

// ----------------------------------------------------------------------------
// >>sft  supervised fine-tuning (InstructGPT step 1) and pretraining: the
//        examples, packing, batches, and the stage the loop of >>train runs
// ----------------------------------------------------------------------------
//
// InstructGPT step 1 fine-tunes GPT-2 on labelers' demonstrations with the
// language-modelling loss, learned on the demonstration only:
//
//   L_SFT = -(1/N) sum_examples sum_{t learned} log pi(x_t | x_<t)
//
// N is the number of learned tokens in the step. Which tokens are learned
// is a mask from the chat template: the assistant turns with their <|end|>
// (a COMPLETION record: the completion; MESSAGES: every assistant turn).
// Pretraining is the same loss with every token learned, over a text
// stream cut into windows. From a record to a gradient:
//
//   record   --rlhf_sft_encode-->     ids and mask (the chat template)
//            --rlhf__sft_examples-->  examples: cut to seq_len + 1 tokens,
//                                     or windows of the text stream
//            --rlhf__rows_build-->    rows: one example each, or packed
//                                     back to back (o->pack)
//            --rlhf__rows_fill-->     a (B,T) batch: inputs, targets (-1 where
//                                     not learned), document starts
//            --rlhf__lm_grads-->      the loss and its gradient, for the
//                                     loop of >>train

/* ---- examples: token sequences in one buffer ------------------------------
   Example i is ids[off[i] .. off[i] + len[i]) with mask (1: learned). Groups
   (the reward model's prompts) are runs of K consecutive examples. */
typedef struct rlhf__examples {
    int *ids;              /* every example's tokens, back to back */
    unsigned char *mask;   /* 1 per learned token, parallel to ids */
    size_t n_tok, cap_tok; /* tokens stored, room for */
    size_t *off;           /* example i starts at ids[off[i]] */
    int *len;              /* and has len[i] tokens */
    size_t n, cap;         /* examples stored, room for */
    size_t *gfirst;        /* group g: examples gfirst[g] .. gfirst[g] + gk[g] - 1, */
    int *gk;               /*   the K completions of one prompt, best first */
    size_t ng, capg;       /* groups stored, room for */
} rlhf__examples;

/* every array freed, the struct empty again */
static void rlhf__ex_free(rlhf__examples *e) {
    rlhf__free(e->ids);
    rlhf__free(e->mask);
    rlhf__free(e->off);
    rlhf__free(e->len);
    rlhf__free(e->gfirst);
    rlhf__free(e->gk);
    memset(e, 0, sizeof *e);
}
/* grow *p (elements of size sz) to hold at least need; 0 when out of memory */
static int rlhf__grow(void **p, size_t *cap, size_t need, size_t sz) {
    size_t nc;
    void *q;
    if (need <= *cap) return 1;
    nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    q = rlhf__alloc(nc * sz);
    if (!q) return 0;
    if (*p) memcpy(q, *p, *cap * sz);
    rlhf__free(*p);
    *p = q;
    *cap = nc;
    return 1;
}
/* Append one example of n tokens (mask NULL: every token learned); 0 when
   out of memory. The token arrays grow together, then the index arrays. */
static int rlhf__ex_add(rlhf__examples *e, const int *ids, const unsigned char *mask, int n) {
    size_t ct = e->cap_tok, c = e->cap;
    void *p;

    /* room: ids and mask share cap_tok, off and len share cap */
    if (!rlhf__grow((void **)&e->ids, &ct, e->n_tok + (size_t)n, sizeof(int))) return 0;
    p = e->mask;
    ct = e->cap_tok;
    if (!rlhf__grow(&p, &ct, e->n_tok + (size_t)n, 1)) return 0;
    e->mask = (unsigned char *)p;
    e->cap_tok = ct;
    if (!rlhf__grow((void **)&e->off, &c, e->n + 1, sizeof(size_t))) return 0;
    c = e->cap;
    if (!rlhf__grow((void **)&e->len, &c, e->n + 1, sizeof(int))) return 0;
    e->cap = c;

    /* the tokens, their mask, and where they are */
    memcpy(e->ids + e->n_tok, ids, (size_t)n * sizeof(int));
    if (mask) memcpy(e->mask + e->n_tok, mask, (size_t)n);
    else memset(e->mask + e->n_tok, 1, (size_t)n);
    e->off[e->n] = e->n_tok;
    e->len[e->n] = n;
    e->n_tok += (size_t)n;
    e->n++;
    return 1;
}
/* Mark examples first .. first + k - 1 as one group (one prompt's K
   completions); 0 when out of memory. */
static int rlhf__ex_group(rlhf__examples *e, size_t first, int k) {
    size_t c = e->capg;
    if (!rlhf__grow((void **)&e->gfirst, &c, e->ng + 1, sizeof(size_t))) return 0;
    c = e->capg;
    if (!rlhf__grow((void **)&e->gk, &c, e->ng + 1, sizeof(int))) return 0;
    e->capg = c;
    e->gfirst[e->ng] = first;
    e->gk[e->ng] = k;
    e->ng++;
    return 1;
}

/* A buffer for one encoded record: ids and mask, room for cap tokens. It
   grows until the record fits (records have no length limit before they
   are cut to seq_len). */
typedef struct rlhf__tokbuf { int *ids; unsigned char *mask; size_t cap; } rlhf__tokbuf;
/* room for at least need tokens (contents not kept) */
static rlhf_result rlhf__tokbuf_grow(rlhf__tokbuf *b, size_t need) {
    rlhf__free(b->ids);
    rlhf__free(b->mask);
    b->cap = need + 64;
    b->ids = (int *)rlhf__alloc(b->cap * sizeof(int));
    b->mask = (unsigned char *)rlhf__alloc(b->cap);
    if (b->ids && b->mask) return RLHF_OK;
    rlhf__free(b->ids);
    rlhf__free(b->mask);
    b->ids = NULL;
    b->mask = NULL;
    b->cap = 0;
    return RLHF_ERR_OUT_OF_MEMORY;
}
/* the chat template of n messages into b, grown until they fit; gen != 0
   appends <|assistant|> (a prompt awaiting its reply) */
static rlhf_result rlhf__chat_grow(const rlhf_tokenizer *t, const rlhf_message *msg, int n, int gen, rlhf__tokbuf *b,
                                   size_t *n_ids) {
    for (;;) {
        rlhf_result r = rlhf_tokenizer_chat(t, msg, n, gen, b->ids, b->mask, b->cap, n_ids);
        if (r != RLHF_ERR_TOO_LARGE) return r;
        if ((r = rlhf__tokbuf_grow(b, *n_ids)) != RLHF_OK) return r;
    }
}
/* a record's prompt and its k-th response (defined below, beside the prompt's messages) */
static rlhf_result rlhf__record_chat(const rlhf_tokenizer *t, const rlhf_record *r, int k, int *ids,
                                     unsigned char *mask, size_t cap, size_t *n);
RLHFDEF rlhf_result rlhf_sft_encode(const rlhf_tokenizer *t, const rlhf_record *r, int *ids, unsigned char *mask,
                                    size_t cap, size_t *n) {
    rlhf_result res;
    if (!t || !r || !n) return RLHF_ERR_INVALID_ARGUMENT;
    *n = 0;
    switch (r->kind) {
    case RLHF_RECORD_COMPLETION: /* the prompt, then the completion: the completion's assistant turns are learned */
        return rlhf__record_chat(t, r, 0, ids, mask, cap, n);
    case RLHF_RECORD_MESSAGES: /* the conversation as it is: every assistant turn is learned */
        return rlhf_tokenizer_chat(t, r->messages, r->n_messages, 0, ids, mask, cap, n);
    case RLHF_RECORD_TEXT:
        /* the text, then EOS: every token learned */
        res = rlhf_tokenizer_encode(t, r->text.str, r->text.len, ids, cap, n);
        if (res != RLHF_OK && res != RLHF_ERR_TOO_LARGE) return res;
        if (*n + 1 > cap) {
            *n += 1;
            return RLHF_ERR_TOO_LARGE;
        }
        ids[(*n)++] = rlhf_tokenizer_special(t, RLHF_TOKEN_EOS);
        if (mask) memset(mask, 1, *n);
        return RLHF_OK;
    default:
        return RLHF_ERR_INVALID_ARGUMENT;
    }
}

/* The messages of a record's prompt: its prompt messages, the prompt string
   as one user turn (in two[0]), or the record's own messages up to the last
   assistant turn.
   Returns how many, or -1 for a record with no prompt. */
static int rlhf__prompt_messages(const rlhf_record *r, rlhf_message two[1], const rlhf_message **msg) {
    int n;
    if (r->prompt_messages && r->kind != RLHF_RECORD_MESSAGES) { /* conversational, or HH-RLHF in turns */
        *msg = r->prompt_messages;
        return r->n_prompt_messages;
    }
    switch (r->kind) {
    case RLHF_RECORD_COMPLETION: case RLHF_RECORD_PAIR: case RLHF_RECORD_RANKING: case RLHF_RECORD_UNPAIRED:
        two[0].role = RLHF_ROLE_USER;
        two[0].content = r->prompt;
        *msg = two;
        return 1;
    case RLHF_RECORD_PROMPT:
        if (r->messages) {
            *msg = r->messages;
            return r->n_messages;
        }
        two[0].role = RLHF_ROLE_USER;
        two[0].content = r->prompt;
        *msg = two;
        return 1;
    case RLHF_RECORD_MESSAGES: /* up to the last assistant turn */
        for (n = r->n_messages; n > 0 && r->messages[n - 1].role != RLHF_ROLE_ASSISTANT; n--) {}
        *msg = r->messages;
        return n > 0 ? n - 1 : 0;
    default:
        return -1;
    }
}
RLHFDEF rlhf_result rlhf_prompt_encode(const rlhf_tokenizer *t, const rlhf_record *r, int *ids, size_t cap, size_t *n) {
    rlhf_message one[1];
    const rlhf_message *msg;
    int k;
    if (!t || !r || !n) return RLHF_ERR_INVALID_ARGUMENT;
    *n = 0;
    if ((k = rlhf__prompt_messages(r, one, &msg)) < 0) return RLHF_ERR_INVALID_ARGUMENT;
    return rlhf_tokenizer_chat(t, msg, k, 1, ids, NULL, cap, n);
}

/* The messages of a record's k-th response (see rlhf_response_encode): its
   own, or its string as one assistant turn (in one[0]). Returns how many,
   or -1 when the record has no k-th response. */
static int rlhf__response_messages(const rlhf_record *r, int k, rlhf_message one[1], const rlhf_message **msg) {
    const rlhf_message *m = NULL;
    int n = 0;
    rlhf_str s;
    if (k < 0) return -1;
    switch (r->kind) {
    case RLHF_RECORD_COMPLETION: case RLHF_RECORD_UNPAIRED:
        if (k > 0) return -1;
        m = r->completion_messages, n = r->n_completion_messages, s = r->completion;
        break;
    case RLHF_RECORD_PAIR:
        if (k > 1) return -1;
        m = k ? r->rejected_messages : r->chosen_messages;
        n = k ? r->n_rejected_messages : r->n_chosen_messages;
        s = k ? r->rejected : r->chosen;
        break;
    case RLHF_RECORD_RANKING:
        if (k >= r->n_completions) return -1;
        s = r->completions[k];
        break;
    default:
        return -1;
    }
    if (m) {
        *msg = m;
        return n;
    }
    one[0].role = RLHF_ROLE_ASSISTANT;
    one[0].content = s;
    *msg = one;
    return 1;
}
/* A record's prompt, then its k-th response, as one conversation through
   the chat template: ids and (if mask) 1 on the response's assistant turns
   only (a prompt's own assistant turns are context, not learned). */
static rlhf_result rlhf__record_chat(const rlhf_tokenizer *t, const rlhf_record *r, int k, int *ids,
                                     unsigned char *mask, size_t cap, size_t *n) {
    rlhf_message one_p[1], one_r[1], few[16], *all;
    const rlhf_message *pm, *rm;
    int np = rlhf__prompt_messages(r, one_p, &pm), nr = rlhf__response_messages(r, k, one_r, &rm), i, context = 0;
    size_t n1 = 0;
    rlhf_result res;
    if (np < 0 || nr < 0) return RLHF_ERR_INVALID_ARGUMENT;

    /* the whole conversation in one array, so the template sees it as a messages record would */
    all = np + nr <= 16 ? few : (rlhf_message *)rlhf__alloc((size_t)(np + nr) * sizeof *all);
    if (!all) return RLHF_ERR_OUT_OF_MEMORY;
    if (np) memcpy(all, pm, (size_t)np * sizeof *all);
    memcpy(all + np, rm, (size_t)nr * sizeof *all);
    res = rlhf_tokenizer_chat(t, all, np + nr, 0, ids, mask, cap, n);
    if (all != few) rlhf__free(all);

    /* the prompt's own assistant turns: not learned (its length from the template of the prompt alone) */
    for (i = 0; i < np; i++) context += pm[i].role == RLHF_ROLE_ASSISTANT;
    if (res == RLHF_OK && mask && context) {
        rlhf_result rp = rlhf_tokenizer_chat(t, pm, np, 0, NULL, NULL, 0, &n1);
        if (rp != RLHF_OK && rp != RLHF_ERR_TOO_LARGE) return rp;
        memset(mask, 0, n1 < *n ? n1 : *n);
    }
    return res;
}
RLHFDEF rlhf_result rlhf_response_encode(const rlhf_tokenizer *t, const rlhf_record *r, int k, int *ids, size_t cap,
                                         size_t *n) {
    if (!t || !r || !n) return RLHF_ERR_INVALID_ARGUMENT;
    *n = 0;
    if (r->kind == RLHF_RECORD_COMPLETION || r->kind == RLHF_RECORD_UNPAIRED || r->kind == RLHF_RECORD_PAIR ||
        r->kind == RLHF_RECORD_RANKING)
        return rlhf__record_chat(t, r, k, ids, NULL, cap, n);
    return RLHF_ERR_INVALID_ARGUMENT;
}
/* the number of responses of a record (0: none) */
static int rlhf__n_responses(const rlhf_record *r) {
    switch (r->kind) {
    case RLHF_RECORD_COMPLETION: case RLHF_RECORD_UNPAIRED: return 1;
    case RLHF_RECORD_PAIR: return 2;
    case RLHF_RECORD_RANKING: return r->n_completions;
    default: return 0;
    }
}

/* ---- long records: one rule for every stage and command ------------------------
   A record is a prompt and a response; when they do not fit, the prompt
   loses its oldest tokens (at a turn's start where one fits), the response
   never loses any, and a record that cannot fit at all is skipped. Each
   stage encodes the two halves, asks rlhf_fit_cut where to cut, and counts
   the outcome in an rlhf_fit_report (see the API part for the rule). */

RLHFDEF long rlhf_fit_cut(size_t n_prompt, const size_t *turn_start, int n_turns, size_t n_response, size_t max_len,
                          int *mid_turn) {
    /* the minimum prompt: the <|assistant|> the reply follows (none when there is no prompt at all) */
    size_t min_prompt = n_prompt < 1 ? n_prompt : 1, room, best = n_prompt;
    int k;
    if (mid_turn) *mid_turn = 0;
    if (n_prompt + n_response <= max_len) return 0;
    if (n_response > max_len || min_prompt > max_len - n_response) return -1;
    room = max_len - n_response;

    /* the earliest turn start that leaves a prompt that fits and a whole turn before the prompt's last token */
    for (k = 0; k < n_turns; k++)
        if (turn_start[k] > 0 && turn_start[k] + 1 < n_prompt && n_prompt - turn_start[k] <= room &&
            turn_start[k] < best)
            best = turn_start[k];
    if (best < n_prompt) return (long)best;

    /* the last turn alone is too long: its tail, <|end|> and <|assistant|> */
    if (mid_turn) *mid_turn = 1;
    return (long)(n_prompt - room);
}

/* n with thousands separators ("9,120") into out[32] */
static const char *rlhf__commas(long n, char out[32]) {
    char digits[24];
    int len = snprintf(digits, sizeof digits, "%ld", n < 0 ? -n : n), i, o = 0;
    if (n < 0) out[o++] = '-';
    for (i = 0; i < len; i++) {
        out[o++] = digits[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len) out[o++] = ',';
    }
    out[o] = 0;
    return out;
}
RLHFDEF char *rlhf_fit_describe(const rlhf_fit_report *f, char *out, size_t cap) {
    char a[32], b[32], c[32], mid[64] = "";
    if (!out || cap == 0) return out;
    if (!f) {
        out[0] = 0;
        return out;
    }
    if (f->mid_turn) snprintf(mid, sizeof mid, ", %s mid-turn", rlhf__commas(f->mid_turn, c));
    if (f->prompts_only)
        snprintf(out, cap, "%s prompt%s kept (%s cut from the left to %d tokens%s)", rlhf__commas(f->kept, a),
                 f->kept == 1 ? "" : "s", rlhf__commas(f->prompts_cut, b), f->max_len, mid);
    else
        snprintf(out, cap, "%s record%s kept (%s prompt%s cut from the left%s), %s skipped (completion longer than %d "
                 "tokens)",
                 rlhf__commas(f->kept, a), f->kept == 1 ? "" : "s", rlhf__commas(f->prompts_cut, b),
                 f->prompts_cut == 1 ? "" : "s", mid, rlhf__commas(f->skipped, c), f->max_len - 1);
    return out;
}

/* The buffers of one record under the rule: its prompt (ids, mask), one
   response, and the prompt's turn starts. They grow and are reused. */
typedef struct rlhf__fitbuf {
    rlhf__tokbuf p, r;
    size_t *turns;
    size_t cap_turns, n_turns;
} rlhf__fitbuf;
static void rlhf__fitbuf_free(rlhf__fitbuf *fb) {
    rlhf__free(fb->p.ids); rlhf__free(fb->p.mask); rlhf__free(fb->r.ids); rlhf__free(fb->r.mask);
    rlhf__free(fb->turns);
    memset(fb, 0, sizeof *fb);
}
static int rlhf__fit_turn(rlhf__fitbuf *fb, size_t at) {
    if (!rlhf__grow((void **)&fb->turns, &fb->cap_turns, fb->n_turns + 1, sizeof(size_t))) return 0;
    fb->turns[fb->n_turns++] = at;
    return 1;
}
/* The prompt's turn starts. Chat template: its role markers (ordinary text
   never encodes to them). HH-RLHF's template has none: a turn starts where
   the first k messages alone end, when their ids are a prefix of the
   prompt's (a message ending in a space shares a token with the next
   "\n\nHuman:": no clean cut there). fb->r is the scratch. */
static rlhf_result rlhf__fit_turns(const rlhf_tokenizer *t, const rlhf_message *msg, int n_msg, rlhf__fitbuf *fb,
                                   size_t np) {
    int sys = rlhf_tokenizer_special(t, RLHF_TOKEN_SYSTEM), usr = rlhf_tokenizer_special(t, RLHF_TOKEN_USER);
    int ast = rlhf_tokenizer_special(t, RLHF_TOKEN_ASSISTANT), k;
    size_t i, n;
    rlhf_result r;
    fb->n_turns = 0;
    if (rlhf_tokenizer_template(t) != RLHF_TEMPLATE_HH) {
        for (i = 0; i < np; i++)
            if ((fb->p.ids[i] == sys || fb->p.ids[i] == usr || fb->p.ids[i] == ast) && !rlhf__fit_turn(fb, i))
                return RLHF_ERR_OUT_OF_MEMORY;
        return RLHF_OK;
    }
    for (k = 1; k < n_msg; k++) {
        if ((r = rlhf__chat_grow(t, msg, k, 0, &fb->r, &n)) != RLHF_OK) return r;
        if (n < np && memcmp(fb->r.ids, fb->p.ids, n * sizeof(int)) == 0 && !rlhf__fit_turn(fb, n))
            return RLHF_ERR_OUT_OF_MEMORY;
    }
    return RLHF_OK;
}
/* The prompt of a record into fb->p (the template up to where a reply
   begins, with the mask of any earlier assistant turn) and its turn
   starts: *n tokens. */
static rlhf_result rlhf__fit_prompt_ids(const rlhf_tokenizer *t, const rlhf_record *rec, rlhf__fitbuf *fb, size_t *n) {
    rlhf_message one[1];
    const rlhf_message *msg;
    int k = rlhf__prompt_messages(rec, one, &msg);
    rlhf_result r;
    if (k < 0) return RLHF_ERR_INVALID_ARGUMENT;
    if ((r = rlhf__chat_grow(t, msg, k, 1, &fb->p, n)) != RLHF_OK) return r;
    return rlhf__fit_turns(t, msg, k, fb, *n);
}
/* Response k of a record into fb->r (MESSAGES: its last assistant turn):
   the record's prompt and that response through the template, less the
   prompt's np tokens in fb->p, with the mask of what SFT learns. Both
   templates render a reply after its prompt's ids unchanged (a role marker,
   or the ":" of "\n\nAssistant:" before " reply", ends a piece); checked. */
static rlhf_result rlhf__fit_response_ids(const rlhf_tokenizer *t, const rlhf_record *rec, int k, rlhf__fitbuf *fb,
                                          size_t np, size_t *n) {
    rlhf_message one[1];
    const rlhf_message *msg;
    rlhf_result r;
    if (rec->kind == RLHF_RECORD_MESSAGES) { /* the prompt's messages, then the last assistant turn */
        int kp = rlhf__prompt_messages(rec, one, &msg);
        if (kp < 0 || kp >= rec->n_messages || rec->messages[kp].role != RLHF_ROLE_ASSISTANT)
            return RLHF_ERR_INVALID_ARGUMENT;
        r = rlhf__chat_grow(t, rec->messages, kp + 1, 0, &fb->r, n);
    } else
        while ((r = rlhf__record_chat(t, rec, k, fb->r.ids, fb->r.mask, fb->r.cap, n)) == RLHF_ERR_TOO_LARGE &&
               (r = rlhf__tokbuf_grow(&fb->r, *n)) == RLHF_OK) {}
    if (r != RLHF_OK) return r;
    if (*n < np || memcmp(fb->r.ids, fb->p.ids, np * sizeof(int)) != 0) return RLHF_ERR_INVALID_ARGUMENT;
    *n -= np;
    memmove(fb->r.ids, fb->r.ids + np, *n * sizeof(int));
    memmove(fb->r.mask, fb->r.mask + np, *n);
    return RLHF_OK;
}
/* Where to cut the prompt in fb->p (np tokens, its turn starts in
   fb->turns) for a response of nr tokens in max_len. Counts the record in
   fit (may be NULL); -1: skipped. */
static long rlhf__fit_apply(rlhf__fitbuf *fb, size_t np, size_t nr, size_t max_len, rlhf_fit_report *fit) {
    int mid = 0, nt = (int)(fb->n_turns < 1u << 30 ? fb->n_turns : 1u << 30);
    long cut = rlhf_fit_cut(np, fb->turns, nt, nr, max_len, &mid);
    if (fit) {
        fit->max_len = (int)max_len;
        if (cut < 0) fit->skipped++;
        else fit->kept++;
        fit->prompts_cut += cut > 0;
        fit->mid_turn += cut > 0 && mid;
    }
    return cut;
}

/* The SFT example of a record under the rule into out (ids, mask; room for
   max_len): the prompt's kept part, then the last assistant turn. */
static rlhf_result rlhf__sft_fit(const rlhf_tokenizer *t, const rlhf_record *rec, size_t max_len, rlhf__fitbuf *fb,
                                 int *ids, unsigned char *mask, size_t *n, rlhf_fit_report *fit) {
    size_t np, nr;
    long cut;
    rlhf_result r;

    /* both halves (the response: the completion, or a conversation's last assistant turn), and the cut */
    *n = 0;
    if (rec->kind != RLHF_RECORD_COMPLETION && rec->kind != RLHF_RECORD_MESSAGES) return RLHF_ERR_INVALID_ARGUMENT;
    if ((r = rlhf__fit_prompt_ids(t, rec, fb, &np)) != RLHF_OK) return r;
    if ((r = rlhf__fit_response_ids(t, rec, 0, fb, np, &nr)) != RLHF_OK) return r;
    if ((cut = rlhf__fit_apply(fb, np, nr, max_len, fit)) < 0) return RLHF_ERR_CONTEXT_FULL;

    /* the example: the prompt's kept part (a conversation's earlier assistant turns are learned, a
       prompt's own are context), then the response */
    np -= (size_t)cut;
    memcpy(ids, fb->p.ids + cut, np * sizeof(int));
    if (rec->kind == RLHF_RECORD_MESSAGES) memcpy(mask, fb->p.mask + cut, np);
    else memset(mask, 0, np);
    memcpy(ids + np, fb->r.ids, nr * sizeof(int));
    memcpy(mask + np, fb->r.mask, nr);
    *n = np + nr;
    return RLHF_OK;
}
RLHFDEF rlhf_result rlhf_sft_encode_fit(const rlhf_tokenizer *t, const rlhf_record *r, int max_len, int *ids,
                                        unsigned char *mask, size_t cap, size_t *n, rlhf_fit_report *fit) {
    rlhf__fitbuf fb;
    rlhf_result res;
    if (n) *n = 0;
    if (!t || !r || !ids || !mask || !n || max_len < 2 || cap < (size_t)max_len) return RLHF_ERR_INVALID_ARGUMENT;
    memset(&fb, 0, sizeof fb);
    res = rlhf__sft_fit(t, r, (size_t)max_len, &fb, ids, mask, n, fit);
    rlhf__fitbuf_free(&fb);
    return res;
}

/* The prompt of a record cut by the rule to max_len tokens, into out. */
static rlhf_result rlhf__prompt_fit(const rlhf_tokenizer *t, const rlhf_record *rec, size_t max_len, rlhf__fitbuf *fb,
                                    int *ids, size_t *n, rlhf_fit_report *fit) {
    size_t np;
    long cut;
    rlhf_result r;
    *n = 0;
    if ((r = rlhf__fit_prompt_ids(t, rec, fb, &np)) != RLHF_OK) return r;
    if ((cut = rlhf__fit_apply(fb, np, 0, max_len, fit)) < 0) return RLHF_ERR_CONTEXT_FULL;
    if (fit) fit->prompts_only = 1;
    *n = np - (size_t)cut;
    memcpy(ids, fb->p.ids + cut, *n * sizeof(int));
    return RLHF_OK;
}
RLHFDEF rlhf_result rlhf_prompt_encode_fit(const rlhf_tokenizer *t, const rlhf_record *r, int max_len, int *ids,
                                           size_t cap, size_t *n, rlhf_fit_report *fit) {
    rlhf__fitbuf fb;
    rlhf_result res;
    if (n) *n = 0;
    if (!t || !r || !ids || !n || max_len < 1 || cap < (size_t)max_len) return RLHF_ERR_INVALID_ARGUMENT;
    memset(&fb, 0, sizeof fb);
    res = rlhf__prompt_fit(t, r, (size_t)max_len, &fb, ids, n, fit);
    rlhf__fitbuf_free(&fb);
    return res;
}

/* A preference record's K responses (PAIR: chosen, rejected; RANKING: best
   first; COMPLETION, UNPAIRED: one) under the rule, one prompt cut for the
   longest response: row k of ids (stride max_len) holds lens[k] tokens.
   Each response is encoded twice (its length, then its row), so only one
   response buffer is needed. RLHF_ERR_CONTEXT_FULL: skipped (counted). */
static rlhf_result rlhf__pref_fit(const rlhf_tokenizer *t, const rlhf_record *rec, size_t max_len, rlhf__fitbuf *fb,
                                  int *ids, int *lens, int *prompt_len, rlhf_fit_report *fit) {
    size_t np, nr, longest = 0;
    int k, K = rlhf__n_responses(rec);
    long cut;
    rlhf_result r;
    if (K < 1) return RLHF_ERR_INVALID_ARGUMENT;
    if ((r = rlhf__fit_prompt_ids(t, rec, fb, &np)) != RLHF_OK) return r;
    for (k = 0; k < K; k++) {
        if ((r = rlhf__fit_response_ids(t, rec, k, fb, np, &nr)) != RLHF_OK) return r;
        if (nr > longest) longest = nr;
    }
    if ((cut = rlhf__fit_apply(fb, np, longest, max_len, fit)) < 0) return RLHF_ERR_CONTEXT_FULL;
    np -= (size_t)cut;
    for (k = 0; k < K; k++) {
        int *row = ids + (size_t)k * max_len;
        if ((r = rlhf__fit_response_ids(t, rec, k, fb, np + (size_t)cut, &nr)) != RLHF_OK) return r;
        memcpy(row, fb->p.ids + cut, np * sizeof(int));
        memcpy(row + np, fb->r.ids, nr * sizeof(int));
        lens[k] = (int)(np + nr);
    }
    if (prompt_len) *prompt_len = (int)np;
    return RLHF_OK;
}
/* A training stage's counts: into the report's truncated and dropped, and
   one line to the log ("sft: 9,120 records kept (...), 311 skipped (...)") */
static void rlhf__fit_log(rlhf__trainrun *run, rlhf_fit_report *fit) {
    char line[256];
    run->rep.truncated = fit->prompts_cut;
    run->rep.dropped = fit->skipped;
    if (fit->kept + fit->skipped > 0)
        rlhf__run_log(run, RLHF_LOG_INFO, "%s", rlhf_fit_describe(fit, line, sizeof line));
}

/* SFT or text examples of a dataset. Text: one token stream cut into
   windows of seq_len + 1 tokens (inputs are the first seq_len, targets the
   last seq_len). SFT: one example per record of at most seq_len + 1 tokens
   by the long-record rule (prompt cut from the left, or skipped), counted
   in fit. */
static rlhf_result rlhf__sft_examples(rlhf__trainrun *run, const rlhf_tokenizer *t, const rlhf_dataset *d, int seq_len,
                                      rlhf__examples *ex, rlhf_fit_report *fit) {
    rlhf__tokbuf b = {NULL, NULL, 0};
    rlhf__fitbuf fb;
    size_t i, n, j;
    rlhf_result r = RLHF_OK;
    int text = rlhf_dataset_size(d) > 0 && rlhf_dataset_record(d, 0)->kind == RLHF_RECORD_TEXT;
    rlhf__examples stream;
    memset(&stream, 0, sizeof stream);
    memset(&fb, 0, sizeof fb);
    if (!text && (r = rlhf__tokbuf_grow(&b, (size_t)seq_len + 1)) != RLHF_OK)
        return rlhf__run_fail(run, r, "out of memory while encoding the dataset");

    /* each record: text encoded whole (the buffer grows to fit it); SFT by the rule into seq_len + 1 tokens */
    for (i = 0; i < rlhf_dataset_size(d) && r == RLHF_OK; i++) {
        const rlhf_record *rec = rlhf_dataset_record(d, i);
        if ((rec->kind == RLHF_RECORD_TEXT) != text) {
            r = rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT, "line %zu: a dataset mixes text and SFT records",
                               rec->line);
            break;
        }
        if (text) {
            while ((r = rlhf_sft_encode(t, rec, b.ids, b.mask, b.cap, &n)) == RLHF_ERR_TOO_LARGE)
                if ((r = rlhf__tokbuf_grow(&b, n)) != RLHF_OK) break;
        } else {
            r = rlhf__sft_fit(t, rec, (size_t)seq_len + 1, &fb, b.ids, b.mask, &n, fit);
            if (r == RLHF_ERR_CONTEXT_FULL) { /* skipped and counted: the completion alone does not fit */
                r = RLHF_OK;
                continue;
            }
        }
        if (r != RLHF_OK) {
            r = rlhf__run_fail(run, r, "line %zu: cannot encode the record: %s", rec->line, rlhf_result_string(r));
            break;
        }
        /* text: append to the stream, cut below; SFT: one example (its completion always learns) */
        if (!rlhf__ex_add(text ? &stream : ex, b.ids, text ? NULL : b.mask, (int)n)) r = RLHF_ERR_OUT_OF_MEMORY;
    }

    /* text: windows of seq_len + 1 tokens that overlap by one, so every
       token but the first is a target exactly once */
    if (r == RLHF_OK && text)
        for (j = 0; j + 1 < stream.n_tok && r == RLHF_OK; j += (size_t)seq_len) {
            size_t len = stream.n_tok - j < (size_t)seq_len + 1 ? stream.n_tok - j : (size_t)seq_len + 1;
            if (!rlhf__ex_add(ex, stream.ids + j, NULL, (int)len)) r = RLHF_ERR_OUT_OF_MEMORY;
        }
    if (r == RLHF_ERR_OUT_OF_MEMORY) r = rlhf__run_fail(run, r, "out of memory while encoding the dataset");
    rlhf__ex_free(&stream);
    rlhf__fitbuf_free(&fb);
    rlhf__free(b.ids);
    rlhf__free(b.mask);
    return r;
}

/* Rows: each a run of examples placed back to back (one example per row
   without packing). An example of n tokens takes n - 1 positions: inputs
   ids[0..n-2], targets ids[1..n-1] where learned. */
typedef struct rlhf__rows {
    size_t *seg;   /* the examples of every row, row after row */
    size_t *first; /* row r's examples are seg[first[r] .. first[r] + nseg[r] - 1] */
    int *nseg;     /* examples in row r */
    int *len;      /* positions row r uses (at most seq_len) */
    int *ntg;      /* targets in row r: its learned tokens after each example's first */
    size_t n;      /* rows */
} rlhf__rows;
static void rlhf__rows_free(rlhf__rows *r) {
    rlhf__free(r->seg); rlhf__free(r->first); rlhf__free(r->nseg); rlhf__free(r->len); rlhf__free(r->ntg);
    memset(r, 0, sizeof *r);
}
/* Examples idx[0..n) into rows of at most seq_len positions, in that
   order: without packing one example per row; with packing an example joins
   the previous row when it fits (greedy, no reordering), and the document
   starts keep it from attending across (rlhf__rows_fill). 0: out of memory. */
static int rlhf__rows_build(rlhf__rows *rows, const rlhf__examples *ex, const size_t *idx, size_t n, int seq_len,
                            int pack) {
    size_t i;
    memset(rows, 0, sizeof *rows);
    rows->seg = (size_t *)rlhf__alloc((n + 1) * sizeof(size_t));
    rows->first = (size_t *)rlhf__alloc((n + 1) * sizeof(size_t));
    rows->nseg = (int *)rlhf__alloc((n + 1) * sizeof(int));
    rows->len = (int *)rlhf__alloc((n + 1) * sizeof(int));
    rows->ntg = (int *)rlhf__alloc((n + 1) * sizeof(int));
    if (!rows->seg || !rows->first || !rows->nseg || !rows->len || !rows->ntg) return 0;

    /* each example: its positions (n - 1) and targets, into the last row or a new one */
    for (i = 0; i < n; i++) {
        int need = ex->len[idx[i]] - 1, tg = 0, k;
        for (k = 1; k <= need; k++)
            tg += ex->mask[ex->off[idx[i]] + (size_t)k] != 0; /* targets: learned tokens after the first */
        rows->seg[i] = idx[i];
        if (pack && rows->n > 0 && rows->len[rows->n - 1] + need <= seq_len) {
            rows->nseg[rows->n - 1]++;
            rows->len[rows->n - 1] += need;
            rows->ntg[rows->n - 1] += tg;
            continue;
        }
        rows->first[rows->n] = i;
        rows->nseg[rows->n] = 1;
        rows->len[rows->n] = need;
        rows->ntg[rows->n] = tg;
        rows->n++;
    }
    return 1;
}
/* Fill (B,T) inputs, targets and document starts with rows order[0..B);
   T is the longest of them. For an example of tokens x_0 .. x_{n-1} placed
   at position p: inputs x_0 .. x_{n-2}, targets x_1 .. x_{n-1} (or -1 where
   not learned), and every position's document start p (so attention and
   position ids restart with each packed example). Returns the number of
   targets. */
static size_t rlhf__rows_fill(const rlhf__rows *rows, const rlhf__examples *ex, const size_t *order, int B, int pad,
                              int *inputs, int *targets, int *doc, int *T_out) {
    int b, T = 1, t, s;
    size_t count = 0;
    for (b = 0; b < B; b++) /* T: the longest row of the batch */
        if (rows->len[order[b]] > T) T = rows->len[order[b]];
    for (b = 0; b < B; b++) { /* row b: its examples back to back, then padding */
        const size_t r = order[b];
        int *in = inputs + (ptrdiff_t)b * T, *tg = targets + (ptrdiff_t)b * T, *dc = doc + (ptrdiff_t)b * T, pos = 0;
        for (s = 0; s < rows->nseg[r]; s++) {
            size_t e = rows->seg[rows->first[r] + (size_t)s];
            const int *ids = ex->ids + ex->off[e];
            const unsigned char *mk = ex->mask + ex->off[e];
            int n = ex->len[e] - 1, start = pos;
            for (t = 0; t < n; t++, pos++) {
                in[pos] = ids[t];
                tg[pos] = mk[t + 1] ? ids[t + 1] : -1;
                dc[pos] = start;
                count += tg[pos] >= 0;
            }
        }
        for (; pos < T; pos++) { /* right padding: never attended, never learned */
            in[pos] = pad;
            tg[pos] = -1;
            dc[pos] = pos;
        }
    }
    *T_out = T;
    return count;
}

/* ---- the SFT stage: a language model's loss over rows ------------------------
   What the loop of >>train calls: rlhf__lm_grads for a step, and
   rlhf__lm_validate at each checkpoint. The units the loop shuffles are
   rows. */

typedef struct rlhf__lm_stage {
    rlhf__examples ex, vex;  /* training examples; validation examples when a validation set is given */
    rlhf__rows rows, vrows;  /* rows of training and validation examples */
    size_t *vorder;          /* the validation rows in order */
    int *inputs, *targets, *doc; /* one micro-batch: (micro, seq_len) each */
    int micro, pad, pack, has_val;
} rlhf__lm_stage;

/* The gradient of the step's loss, the mean cross-entropy over all its
   targets (N of them, across micro-batches):
     L = (1/N) sum_rows sum_t -log p(target_t | tokens < t)
   Each micro-batch adds its own part: its summed token losses / N. */
static rlhf_result rlhf__lm_grads(void *self, rlhf__trainrun *run, const size_t *units, size_t n, long step,
                                  rlhf__step_out *s) {
    rlhf__lm_stage *lm = (rlhf__lm_stage *)self;
    rlhf_model *m = run->m;
    size_t mb, total = 0;
    rlhf_result r;

    /* N: the targets of every row of the step, known before the first micro-batch */
    for (mb = 0; mb < n; mb++) total += (size_t)lm->rows.ntg[units[mb]];

    /* micro-batches of at most micro rows; a row with no target adds nothing */
    for (mb = 0; mb < n; mb += (size_t)lm->micro) {
        int B = (int)(n - mb < (size_t)lm->micro ? n - mb : (size_t)lm->micro), T;
        size_t count =
            rlhf__rows_fill(&lm->rows, &lm->ex, units + mb, B, lm->pad, lm->inputs, lm->targets, lm->doc, &T);
        float loss;
        if (count == 0) continue;

        /* forward: the mean loss over this micro-batch's count targets */
        r = rlhf__forward_entry(m, lm->inputs, lm->targets, lm->pack ? lm->doc : NULL, B, T, NULL, &loss, NULL, 1, 0,
                                "sft");
        if (r != RLHF_OK) return rlhf__run_fail(run, r, "step %ld: %s", step + 1, rlhf_model_last_error(m));
        run->rep.tokens += (double)B * T;
        if (!isfinite(loss)) {
            s->finite = 0;
            return RLHF_OK;
        }

        /* backward with dL/d(each token's loss) = 1/N */
        s->loss += (double)loss * (double)count / (double)total;
        m->dloss = 1.0f / (float)total;
        if ((r = rlhf_model_backward(m)) != RLHF_OK)
            return rlhf__run_fail(run, r, "step %ld: %s", step + 1, rlhf_model_last_error(m));
    }
    return RLHF_OK;
}

/* Validation loss of the language model: the sum of all token losses over
   the validation rows / the number of their targets. */
static rlhf_result rlhf__lm_validate(void *self, rlhf__trainrun *run, long step) {
    rlhf__lm_stage *lm = (rlhf__lm_stage *)self;
    const rlhf__examples *ex = lm->has_val ? &lm->vex : &lm->ex;
    double sum = 0.0;
    size_t i, total = 0;
    rlhf_result r;

    /* the rows in their order, micro at a time, forward only: each batch's mean loss x its targets */
    for (i = 0; i < lm->vrows.n; i++) lm->vorder[i] = i;
    for (i = 0; i < lm->vrows.n; i += (size_t)lm->micro) {
        int B = (int)(lm->vrows.n - i < (size_t)lm->micro ? lm->vrows.n - i : (size_t)lm->micro), T;
        size_t count =
            rlhf__rows_fill(&lm->vrows, ex, lm->vorder + i, B, lm->pad, lm->inputs, lm->targets, lm->doc, &T);
        float loss;
        if (count == 0) continue;
        r = rlhf__forward_entry(run->m, lm->inputs, lm->targets, lm->pack ? lm->doc : NULL, B, T, NULL, &loss, NULL, 1,
                                0, "validation");
        if (r != RLHF_OK)
            return rlhf__run_fail(run, r, "validation rows %zu..%zu: %s", i, i + (size_t)B - 1,
                                  rlhf_model_last_error(run->m));
        sum += (double)loss * (double)count;
        total += count;
    }

    /* no backward may follow a validation forward; the loss, its metric line and its log line */
    run->m->backward_ready = 0;
    run->rep.val_loss = total ? (float)(sum / (double)total) : NAN;
    rlhf__metric_begin(run, step);
    rlhf__metric(run, "val/loss", run->rep.val_loss);
    rlhf__metric_end(run);
    rlhf__run_log(run, RLHF_LOG_INFO, "step %ld validation loss %.4f", step, (double)run->rep.val_loss);
    return RLHF_OK;
}

/* The SFT stage's data: examples, the split, rows (packed once, in a seeded
   order, when o->pack), the batch buffers and the model's memory. */
static rlhf_result rlhf__lm_setup(rlhf__trainrun *run, rlhf__lm_stage *lm, rlhf__stage *st, const rlhf_tokenizer *t,
                                  const rlhf_dataset *train, const rlhf_dataset *val, rlhf_rng *rng) {
    const rlhf_train_options *o = run->o;
    rlhf_train_report *rep = &run->rep;
    size_t *tidx = NULL, *vidx = NULL, n_t = 0, n_v = 0, cells;
    int seq_len = o->seq_len ? o->seq_len : run->m->cfg.n_ctx, ok;
    rlhf_result r;

    /* examples, and the validation set: given, or held out */
    lm->micro = o->micro_batch > 0 && o->micro_batch < o->batch_size ? o->micro_batch : o->batch_size;
    lm->pad = rlhf_tokenizer_special(t, RLHF_TOKEN_PAD);
    lm->pack = o->pack;
    lm->has_val = val != NULL;
    if ((r = rlhf__sft_examples(run, t, train, seq_len, &lm->ex, &rep->fit)) != RLHF_OK) return r;
    if (val && (r = rlhf__sft_examples(run, t, val, seq_len, &lm->vex, &rep->fit)) != RLHF_OK) return r;
    rlhf__fit_log(run, &rep->fit);
    if ((r = rlhf__train_val(run, lm->ex.n, val != NULL, lm->vex.n, &tidx, &n_t, &vidx, &n_v)) != RLHF_OK) goto done;
    if (n_t == 0) {
        r = rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT, "no training example left (%ld skipped: completion longer "
                           "than %d tokens)", rep->dropped, seq_len);
        goto done;
    }
    rep->train_examples = (long)n_t;
    rep->val_examples = (long)n_v;

    /* rows, and the buffers of one micro-batch */
    if (o->pack) rlhf__shuffle(tidx, n_t, rng);
    ok = rlhf__rows_build(&lm->rows, &lm->ex, tidx, n_t, seq_len, o->pack) &&
         rlhf__rows_build(&lm->vrows, val ? &lm->vex : &lm->ex, vidx, n_v, seq_len, o->pack);
    cells = (size_t)lm->micro * (size_t)seq_len;
    st->order = (size_t *)rlhf__alloc((lm->rows.n + 1) * sizeof(size_t));
    lm->vorder = (size_t *)rlhf__alloc((lm->vrows.n + 1) * sizeof(size_t));
    lm->inputs = (int *)rlhf__alloc(cells * sizeof(int));
    lm->targets = (int *)rlhf__alloc(cells * sizeof(int));
    lm->doc = (int *)rlhf__alloc(cells * sizeof(int));
    if (!ok || !st->order || !lm->vorder || !lm->inputs || !lm->targets || !lm->doc) {
        r = rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if (o->recompute) rlhf_model_set_recompute(run->m, 1);
    if ((r = rlhf_model_reserve(run->m, lm->micro, seq_len, 1)) != RLHF_OK) {
        r = rlhf__run_fail(run, r, "cannot reserve training memory for %d x %d: %s", lm->micro, seq_len,
                           rlhf_model_last_error(run->m));
        goto done;
    }
    st->n_train = lm->rows.n;
    st->n_val = lm->vrows.n;
    rlhf__run_log(run, RLHF_LOG_INFO, "%zu examples in %zu rows to train on (and %zu held out), %ld steps of %d rows, seq_len %d%s",
                  n_t, lm->rows.n, n_v, rlhf__run_steps(o, lm->rows.n), o->batch_size, seq_len,
                  o->pack ? ", packed" : "");
done:
    rlhf__free(tidx);
    rlhf__free(vidx);
    return r;
}

/* SFT and pretraining: the run checked and begun (>>train), the stage set
   up, the loop run, and everything freed whatever happened. */
RLHFDEF rlhf_result rlhf_sft_train(rlhf_model *m, const rlhf_tokenizer *t, const rlhf_dataset *train,
                                   const rlhf_dataset *val, const rlhf_train_options *o, rlhf_train_report *rep_out,
                                   rlhf_error *err) {
    rlhf__trainrun run;
    rlhf__lm_stage lm;
    rlhf__stage st;
    rlhf_rng rng;
    int text = train && rlhf_dataset_size(train) > 0 && rlhf_dataset_record(train, 0)->kind == RLHF_RECORD_TEXT;
    rlhf_result r;
    if (!rlhf__run_begin(&run, text ? "pretrain" : "sft", m, t, train, o, err, &r)) return r;
    if (rlhf_dataset_size(train) > 0 && rlhf_dataset_record(train, 0)->kind == RLHF_RECORD_UNPAIRED)
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT, "the training set holds unpaired preference records "
                              "(prompt, completion, label): SFT needs {\"prompt\", \"completion\"} or {\"messages\"}");
    if (val && rlhf_dataset_size(val) > 0 && (rlhf_dataset_record(val, 0)->kind == RLHF_RECORD_TEXT) != text)
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT, "the training set is %s but the validation set is not",
                              text ? "text" : "SFT");
    if (o->resume_step <= 0) rlhf__fresh_optimizer(m);

    /* the stage: a language model's loss; rows restart their order each epoch */
    memset(&lm, 0, sizeof lm);
    memset(&st, 0, sizeof st);
    st.kind = text ? "base" : "policy";
    st.order_restarts = 1;
    st.grads = rlhf__lm_grads;
    st.validate = rlhf__lm_validate;
    st.self = &lm;
    rlhf_rng_seed(&rng, o->seed);
    if ((r = rlhf__lm_setup(&run, &lm, &st, t, train, val, &rng)) == RLHF_OK) r = rlhf__train_loop(&run, &st, &rng, t);

    run.rep.seconds = rlhf__seconds() - run.t0;
    if (rep_out) *rep_out = run.rep;
    rlhf__free(st.order); rlhf__free(lm.vorder); rlhf__free(lm.inputs); rlhf__free(lm.targets); rlhf__free(lm.doc);
    rlhf__ex_free(&lm.ex); rlhf__ex_free(&lm.vex); rlhf__rows_free(&lm.rows); rlhf__rows_free(&lm.vrows);
    rlhf__free(run.line.p);
    return r;
}

// ----------------------------------------------------------------------------
// >>reward  the reward model (InstructGPT step 2): eq. 1, the training loop,
//           scoring, normalisation
// ----------------------------------------------------------------------------
//
// The reward model r_theta(x, y) is GPT-2 with a scalar head in place of
// the LM head (score.weight, score.bias on the final LayerNorm's output);
// the reward of a prompt x and completion y, rendered through the chat
// template, is the head's value at the last token, y's <|end|>. Labelers
// ranked K completions of a prompt; InstructGPT eq. 1 takes all C(K,2)
// pairs of one ranking as one batch element:
//
//   loss(theta) = -1/C(K,2) E_{(x, y_w, y_l) ~ D} [ log sigmoid(r_theta(x, y_w) - r_theta(x, y_l)) ]
//
// y_w the completion ranked higher of a pair, y_l the lower. The training
// loop is >>train's; this stage supplies eq. 1 over groups of K sequences.
// After training, the reward is normalised so that the SFT policy's
// replies score mean 0 and std 1 ("so that the labeler demonstrations
// achieve a mean score of 0 before doing RL"): score = gain * raw + bias.

/* ---- eq. 1 ------------------------------------------------------------------
   The two halves of the pairwise loss, each in the form that neither
   overflows nor loses the small side: a reward gap of 100 must still give
   a finite loss and a gradient near 0 or 1, not NaN. */

/* log sigmoid(x), without overflow for any x: -log(1 + e^-x) for x >= 0,
   x - log(1 + e^x) below (the exp never sees a positive argument) */
static double rlhf__log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
/* sigmoid(-x) = 1 - sigmoid(x), computed from the side where it is small */
static double rlhf__sigmoid_neg(double x) { return x >= 0 ? exp(-x) / (1.0 + exp(-x)) : 1.0 / (1.0 + exp(x)); }

RLHFDEF float rlhf_ranking_loss(const float *rewards, int K, float *grad) {
    /* InstructGPT (Ouyang et al. 2022) eq. 1, one prompt:
         loss = -1/C(K,2) * sum_{i<j} log sigmoid(r_i - r_j)   (i ranked above j)
       d loss/d r_i += -sigmoid(-(r_i - r_j)) / C(K,2);  d loss/d r_j += +sigmoid(-(r_i - r_j)) / C(K,2) */
    double sum = 0.0, pairs;
    int i, j;
    if (grad)
        for (i = 0; i < K; i++) grad[i] = 0.0f;
    if (!rewards || K < 2) return 0.0f;

    /* every pair i < j of the ranking, i the better; the sums in double, the result in float */
    pairs = 0.5 * (double)K * (double)(K - 1);
    for (i = 0; i < K; i++)
        for (j = i + 1; j < K; j++) {
            double d = (double)rewards[i] - (double)rewards[j];
            sum -= rlhf__log_sigmoid(d);
            if (grad) {
                double g = rlhf__sigmoid_neg(d) / pairs;
                grad[i] -= (float)g;
                grad[j] += (float)g;
            }
        }
    return (float)(sum / pairs);
}

/* ---- the reward model's training data: one group of K sequences per prompt -- */

/* Comparisons of a preference dataset: each record a group of K examples,
   best first (prompt + completion through the chat template), in at most
   seq_len tokens by the long-record rule: the prompt cut from the left for
   the longest completion, or the record skipped (counted in fit). The mask
   is 0 on the prompt and 1 on the completion (DPO sums the reply's log-probs). */
static rlhf_result rlhf__rm_examples(rlhf__trainrun *run, const rlhf_tokenizer *t, const rlhf_dataset *d, int seq_len,
                                     rlhf__examples *ex, rlhf_fit_report *fit) {
    rlhf__fitbuf fb;
    int *rows = NULL, *lens = NULL, k, K, np; /* one record's K sequences (stride seq_len), their lengths */
    unsigned char *mask = (unsigned char *)rlhf__alloc((size_t)seq_len); /* 0 on the prompt, 1 on the reply */
    size_t i, cap_rows = 0, cap_lens = 0;
    rlhf_result r = RLHF_OK;
    memset(&fb, 0, sizeof fb);
    if (!mask) r = rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
    for (i = 0; i < rlhf_dataset_size(d) && r == RLHF_OK; i++) {
        /* a pair is a ranking of K = 2: chosen first */
        const rlhf_record *rec = rlhf_dataset_record(d, i);
        size_t first = ex->n;
        if (rec->kind != RLHF_RECORD_PAIR && rec->kind != RLHF_RECORD_RANKING) {
            r = rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT, "line %zu: %s", rec->line,
                               rec->kind == RLHF_RECORD_UNPAIRED
                                   ? "an unpaired preference record (prompt, completion, label), not a pair or ranking"
                                   : "not a preference pair or ranking");
            break;
        }
        K = rlhf__n_responses(rec);
        if (!rlhf__grow((void **)&rows, &cap_rows, (size_t)K * (size_t)seq_len, sizeof(int)) ||
            !rlhf__grow((void **)&lens, &cap_lens, (size_t)K, sizeof(int))) {
            r = rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
            break;
        }

        /* each completion after the same prompt, best first; a ranking is learned whole or not at all */
        r = rlhf__pref_fit(t, rec, (size_t)seq_len, &fb, rows, lens, &np, fit);
        if (r == RLHF_ERR_CONTEXT_FULL) { /* skipped and counted */
            r = RLHF_OK;
            continue;
        }
        if (r != RLHF_OK) {
            r = rlhf__run_fail(run, r, "line %zu: cannot encode the record: %s", rec->line, rlhf_result_string(r));
            break;
        }
        memset(mask, 0, (size_t)np);
        memset(mask + np, 1, (size_t)(seq_len - np));
        for (k = 0; k < K && r == RLHF_OK; k++)
            if (!rlhf__ex_add(ex, rows + (size_t)k * (size_t)seq_len, mask, lens[k]))
                r = rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
        if (r == RLHF_OK && !rlhf__ex_group(ex, first, K))
            r = rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
    }
    rlhf__fitbuf_free(&fb);
    rlhf__free(rows);
    rlhf__free(lens);
    rlhf__free(mask);
    return r;
}

/* Groups order[0..n) into a (B,T) batch, each group's K sequences in
   consecutive rows, right-padded to the longest (T): the reward is read at
   each sequence's own last token, so padding after it is never seen
   (attention is causal). B (the rows) and T out. */
static void rlhf__rm_fill(const rlhf__examples *ex, const size_t *groups, size_t n, int pad, int *inputs, int *B_out,
                          int *T_out) {
    size_t g;
    int B = 0, T = 1, k, t;
    for (g = 0; g < n; g++)
        for (k = 0; k < ex->gk[groups[g]]; k++)
            if (ex->len[ex->gfirst[groups[g]] + (size_t)k] > T) T = ex->len[ex->gfirst[groups[g]] + (size_t)k];
    for (g = 0; g < n; g++)
        for (k = 0; k < ex->gk[groups[g]]; k++, B++) {
            size_t e = ex->gfirst[groups[g]] + (size_t)k;
            int *row = inputs + (ptrdiff_t)B * T;
            memcpy(row, ex->ids + ex->off[e], (size_t)ex->len[e] * sizeof(int));
            for (t = ex->len[e]; t < T; t++) row[t] = pad;
        }
    *B_out = B;
    *T_out = T;
}
/* How many groups from order[at] fit one forward of at most micro
   sequences: at least one, even a group with more (a ranking is never
   split across forwards, since eq. 1 couples its K rewards). */
static size_t rlhf__rm_take(const rlhf__examples *ex, const size_t *order, size_t at, size_t end, int micro) {
    size_t n = 0;
    int seqs = 0;
    while (at + n < end && (n == 0 || seqs + ex->gk[order[at + n]] <= micro)) seqs += ex->gk[order[at + n++]];
    return n;
}
/* The rewards of one forward's groups: per group the ranking loss (InstructGPT
   eq. 1) and, if dvalues, scale * d loss / d value at each last token. Adds
   the summed loss, correct pairs and pairs, and the summed reward margins. */
static void rlhf__rm_losses(const rlhf__examples *ex, const size_t *groups, size_t n, const float *values,
                            float *dvalues, int T, float scale, float *scratch, double *loss, double *correct,
                            double *pairs, double *margin) {
    size_t grp;
    int row = 0, k, j;
    for (grp = 0; grp < n; grp++) { /* group grp fills rows row .. row + K - 1 */
        int K = ex->gk[groups[grp]];
        float *rv = scratch, *gv = scratch + K; /* (2, K): rewards, gradients */
        for (k = 0; k < K; k++) /* the reward: the value at the completion's last token, its <|end|> */
            rv[k] = values[(ptrdiff_t)(row + k) * T + ex->len[ex->gfirst[groups[grp]] + (size_t)k] - 1];
        *loss += rlhf_ranking_loss(rv, K, gv);

        /* accuracy and margin over the C(K,2) pairs: k is ranked above j */
        for (k = 0; k < K; k++)
            for (j = k + 1; j < K; j++) {
                *correct += rv[k] > rv[j] ? 1.0 : 0.0;
                *margin += (double)rv[k] - (double)rv[j];
                *pairs += 1.0;
            }

        /* the gradient reaches the model only through the K last tokens */
        if (dvalues)
            for (k = 0; k < K; k++)
                dvalues[(ptrdiff_t)(row + k) * T + ex->len[ex->gfirst[groups[grp]] + (size_t)k] - 1] = gv[k] * scale;
        row += K;
    }
}

/* ---- the reward model's stage: eq. 1 over prompts with K ranked completions ---
   What the loop of >>train calls: rlhf__rm_grads for a step and
   rlhf__rm_validate at each checkpoint. The units the loop shuffles are
   prompts (groups); a step's batch_size counts prompts, not sequences. */

typedef struct rlhf__rm_stage {
    rlhf__examples ex, vex;  /* training groups; validation groups when a validation set is given */
    size_t *vidx, n_v;       /* the validation groups */
    int *inputs;             /* one forward: (rows, seq_len) */
    float *values, *dvalues; /* the value head's outputs at every position, and their gradients */
    float *kbuf;             /* (2, K): one prompt's rewards and gradients */
    int micro, pad, has_val;
} rlhf__rm_stage;

/* The gradient of the step's loss, the mean of eq. 1 over its n prompts:
     L = (1/n) sum_prompts loss(prompt)
   Prompts go through the model whole, as many as fit micro sequences. */
static rlhf_result rlhf__rm_grads(void *self, rlhf__trainrun *run, const size_t *units, size_t n, long step,
                                  rlhf__step_out *s) {
    rlhf__rm_stage *rm = (rlhf__rm_stage *)self;
    rlhf_model *m = run->m;
    size_t g, take; /* the next prompt of the step, and how many go in this forward */
    rlhf_result r;
    for (g = 0; g < n; g += take) {
        int B, T;
        double l0 = s->loss; /* the loss so far: this forward's part is s->loss - l0 */

        /* forward: the value at every position of every completion */
        take = rlhf__rm_take(&rm->ex, units, g, n, rm->micro);
        rlhf__rm_fill(&rm->ex, units + g, take, rm->pad, rm->inputs, &B, &T);
        r = rlhf__forward_entry(m, rm->inputs, NULL, NULL, B, T, NULL, NULL, rm->values, 2, 1, "rm");
        if (r != RLHF_OK) return rlhf__run_fail(run, r, "step %ld: %s", step + 1, rlhf_model_last_error(m));
        run->rep.tokens += (double)B * T;

        /* eq. 1 per prompt at the completions' last tokens; each prompt's gradient / n */
        memset(rm->dvalues, 0, (size_t)B * (size_t)T * sizeof(float));
        rlhf__rm_losses(&rm->ex, units + g, take, rm->values, rm->dvalues, T, 1.0f / (float)n, rm->kbuf, &s->loss,
                        &s->correct, &s->pairs, &s->margin);
        if (!isfinite(s->loss - l0)) {
            s->finite = 0;
            break;
        }

        /* backward from the values' gradients */
        if ((r = rlhf_model_backward_values(m, rm->dvalues)) != RLHF_OK) {
            if (r != RLHF_ERR_NON_FINITE)
                return rlhf__run_fail(run, r, "step %ld: %s", step + 1, rlhf_model_last_error(m));
            s->finite = 0;
            break;
        }
    }
    s->loss /= (double)n;
    return RLHF_OK;
}

/* Validation: eq. 1's mean over the validation prompts, the fraction of
   pairs ranked right and the mean margin. */
static rlhf_result rlhf__rm_validate(void *self, rlhf__trainrun *run, long step) {
    rlhf__rm_stage *rm = (rlhf__rm_stage *)self;
    const rlhf__examples *vx = rm->has_val ? &rm->vex : &rm->ex; /* held out of the training set, or given */
    rlhf_train_report *rep = &run->rep;
    double vl = 0.0, vc = 0.0, vp = 0.0, vm = 0.0; /* loss, correct pairs, pairs, margins: sums */
    size_t g, take;
    rlhf_result r;

    /* the validation prompts in their order, as many per forward as the training step takes */
    for (g = 0; g < rm->n_v; g += take) {
        int B, T;
        take = rlhf__rm_take(vx, rm->vidx, g, rm->n_v, rm->micro);
        rlhf__rm_fill(vx, rm->vidx + g, take, rm->pad, rm->inputs, &B, &T);
        r = rlhf__forward_entry(run->m, rm->inputs, NULL, NULL, B, T, NULL, NULL, rm->values, 2, 0, "rm validation");
        if (r != RLHF_OK)
            return rlhf__run_fail(run, r, "validation at step %ld: %s", step, rlhf_model_last_error(run->m));
        rlhf__rm_losses(vx, rm->vidx + g, take, rm->values, NULL, T, 0.0f, rm->kbuf, &vl, &vc, &vp, &vm);
    }

    /* eq. 1's mean over prompts; accuracy and margin over pairs (a ranking of K counts C(K,2) times) */
    rep->val_loss = (float)(vl / (double)rm->n_v);
    rep->val_accuracy = vp > 0 ? (float)(vc / vp) : NAN;
    rlhf__metric_begin(run, step);
    rlhf__metric(run, "val/loss", rep->val_loss);
    rlhf__metric(run, "val/accuracy", rep->val_accuracy);
    rlhf__metric(run, "val/margin", vp > 0 ? vm / vp : NAN);
    rlhf__metric_end(run);
    rlhf__run_log(run, RLHF_LOG_INFO, "step %ld validation loss %.4f accuracy %.3f (%zu prompts)", step,
                  (double)rep->val_loss, (double)rep->val_accuracy, rm->n_v);
    return RLHF_OK;
}

/* The reward model's data: comparisons, the split, and buffers for the
   widest forward (micro sequences, or one prompt with more). */
static rlhf_result rlhf__rm_setup(rlhf__trainrun *run, rlhf__rm_stage *rm, rlhf__stage *st, const rlhf_tokenizer *t,
                                  const rlhf_dataset *train, const rlhf_dataset *val) {
    const rlhf_train_options *o = run->o;
    rlhf_train_report *rep = &run->rep;
    /* maxk: the largest K of either set; rows: the sequences of the widest forward. The buffers and
       the model's memory are sized once, here, for that forward: no step allocates */
    int seq_len = o->seq_len ? o->seq_len : run->m->cfg.n_ctx, maxk = 2, rows;
    size_t i;
    rlhf_result r;

    /* comparisons, and the validation set: given, or held out */
    rm->micro = o->micro_batch > 0 ? o->micro_batch : 1 << 30;
    rm->pad = rlhf_tokenizer_special(t, RLHF_TOKEN_PAD);
    rm->has_val = val != NULL;
    if ((r = rlhf__rm_examples(run, t, train, seq_len, &rm->ex, &rep->fit)) != RLHF_OK) return r;
    if (val && (r = rlhf__rm_examples(run, t, val, seq_len, &rm->vex, &rep->fit)) != RLHF_OK) return r;
    rlhf__fit_log(run, &rep->fit);
    if ((r = rlhf__train_val(run, rm->ex.ng, val != NULL, rm->vex.ng, &st->order, &st->n_train, &rm->vidx, &rm->n_v)) !=
        RLHF_OK)
        return r;
    if (st->n_train == 0)
        return rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT,
                              "no comparison left to train on (%ld skipped: a completion longer than %d tokens)",
                              rep->dropped, seq_len - 1);
    st->n_val = rm->n_v;
    rep->train_examples = (long)st->n_train;
    rep->val_examples = (long)rm->n_v;

    /* the widest forward: micro sequences, or one prompt with more */
    for (i = 0; i < rm->ex.ng; i++) maxk = rm->ex.gk[i] > maxk ? rm->ex.gk[i] : maxk;
    for (i = 0; i < rm->vex.ng; i++) maxk = rm->vex.gk[i] > maxk ? rm->vex.gk[i] : maxk;
    if ((long)rm->micro > (long)o->batch_size * maxk) rm->micro = o->batch_size * maxk;
    rows = rm->micro > maxk ? rm->micro : maxk;
    rm->inputs = (int *)rlhf__alloc((size_t)rows * (size_t)seq_len * sizeof(int));
    rm->values = rlhf__alloc_floats((size_t)rows * (size_t)seq_len);
    rm->dvalues = rlhf__alloc_floats((size_t)rows * (size_t)seq_len);
    rm->kbuf = rlhf__alloc_floats(2 * (size_t)maxk);
    if (!rm->inputs || !rm->values || !rm->dvalues || !rm->kbuf)
        return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory for batches of %d sequences of %d tokens",
                              rows, seq_len);
    if (o->recompute) rlhf_model_set_recompute(run->m, 1);
    if ((r = rlhf_model_reserve(run->m, rows, seq_len, 1)) != RLHF_OK)
        return rlhf__run_fail(run, r, "cannot reserve training memory for %d x %d: %s", rows, seq_len,
                              rlhf_model_last_error(run->m));
    rlhf__run_log(run, RLHF_LOG_INFO, "%zu comparisons to train on (and %zu held out), K up to %d, %ld steps of %d prompts",
                  st->n_train, rm->n_v, maxk, rlhf__run_steps(o, st->n_train), o->batch_size);
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_reward_train(rlhf_model *m, const rlhf_tokenizer *t, const rlhf_dataset *train,
                                      const rlhf_dataset *val, const rlhf_train_options *o, rlhf_train_report *rep_out,
                                      rlhf_error *err) {
    rlhf__trainrun run;
    rlhf__rm_stage rm;
    rlhf__stage st;
    rlhf_rng rng;
    int pad;
    rlhf_result r;
    /* the run, and a model that can score: a scalar head (rlhf_model_add_score_head) */
    if (!rlhf__run_begin(&run, "rm", m, t, train, o, err, &r)) return r;
    if (!m->has_score)
        return rlhf__run_fail(&run, RLHF_ERR_STATE, "the model has no scalar head (rlhf_model_add_score_head)");

    /* "The N implementation details", item 2: a pad equal to the stop token
       would make the last real token indistinguishable from padding */
    pad = rlhf_tokenizer_special(t, RLHF_TOKEN_PAD);
    if (pad == rlhf_tokenizer_special(t, RLHF_TOKEN_END) || pad == rlhf_tokenizer_special(t, RLHF_TOKEN_EOS))
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT,
                              "the tokenizer's pad token (%d) is its stop or EOS token: refused", pad);

    /* a new run: a fresh optimizer, and a new head, so any normalisation of an earlier one does not apply;
       a resumed run keeps both (its checkpoint holds the AdamW state of this very run) */
    if (o->resume_step <= 0) {
        rlhf__fresh_optimizer(m);
        rlhf__set_meta(m, "rlhf.reward.gain", NULL);
        rlhf__set_meta(m, "rlhf.reward.bias", NULL);
    }

    /* the stage: eq. 1; the prompts' order carries over from epoch to epoch */
    memset(&rm, 0, sizeof rm);
    memset(&st, 0, sizeof st);
    st.kind = "reward";
    st.preference = 1;
    st.grads = rlhf__rm_grads;
    st.validate = rlhf__rm_validate;
    st.self = &rm;
    rlhf_rng_seed(&rng, o->seed);
    if ((r = rlhf__rm_setup(&run, &rm, &st, t, train, val)) == RLHF_OK) r = rlhf__train_loop(&run, &st, &rng, t);

    /* the report, whatever happened, and every buffer freed */
    run.rep.seconds = rlhf__seconds() - run.t0;
    if (rep_out) *rep_out = run.rep;
    rlhf__free(st.order); rlhf__free(rm.vidx); rlhf__free(rm.inputs); rlhf__free(rm.values); rlhf__free(rm.dvalues);
    rlhf__free(rm.kbuf); rlhf__ex_free(&rm.ex); rlhf__ex_free(&rm.vex);
    rlhf__free(run.line.p);
    return r;
}

/* ---- scoring and normalisation ------------------------------------------------
   A reward model's score is gain * (value at the last token) + bias; the
   gain and bias live in its metadata (rlhf.reward.gain, .bias), 1 and 0
   until rlhf_reward_normalize sets them. */

/* the gain and bias in the model's metadata; 1 and 0 when it has none */
RLHFDEF void rlhf_reward_normalization(const rlhf_model *rm, float *gain, float *bias) {
    const char *g = rlhf_model_meta(rm, "rlhf.reward.gain"), *b = rlhf_model_meta(rm, "rlhf.reward.bias");
    if (gain) *gain = g ? (float)strtod(g, NULL) : 1.0f;
    if (bias) *bias = b ? (float)strtod(b, NULL) : 0.0f;
}
/* gain and bias into the metadata as %.9g, which reads back as the same float */
RLHFDEF rlhf_result rlhf_reward_set_normalization(rlhf_model *rm, float gain, float bias) {
    char buf[64];
    rlhf_result r;
    if (!rm) return RLHF_ERR_INVALID_ARGUMENT;
    if (!isfinite(gain) || !isfinite(bias) || gain == 0.0f)
        return rlhf__fail(rm, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_reward_set_normalization: gain %g and bias %g must be finite, gain non-zero",
                          (double)gain, (double)bias);
    snprintf(buf, sizeof buf, "%.9g", (double)gain);
    if ((r = rlhf__set_meta(rm, "rlhf.reward.gain", buf)) != RLHF_OK) return r;
    snprintf(buf, sizeof buf, "%.9g", (double)bias);
    return rlhf__set_meta(rm, "rlhf.reward.bias", buf);
}

/* Raw (normalise == 0) or normalised scores of B sequences (B,T): row b
   holds n_pad[b] pad tokens (left padding; n_pad NULL: none), then
   lengths[b] real tokens, then right padding. The document starts of the
   left padding give each sequence the positions it would have alone. */
static rlhf_result rlhf__reward_scores(rlhf_model *rm, const int *tokens, const int *n_pad, const int *lengths, int B,
                                       int T, float *scores, int normalise) {
    float *values, gain = 1.0f, bias = 0.0f;
    int *doc = NULL, b;
    rlhf_result r;

    /* the arguments, the head, and every row's padding and length against T */
    if (!rm) return RLHF_ERR_INVALID_ARGUMENT;
    if (!tokens || !lengths || !scores || B < 1 || T < 1)
        return rlhf__fail(rm, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_reward_score_ids: need tokens, lengths, scores, B >= 1 and T >= 1");
    if (!rm->has_score)
        return rlhf__fail(rm, RLHF_ERR_STATE,
                          "rlhf_reward_score_ids: the model has no scalar head (not a reward model)");
    for (b = 0; b < B; b++) {
        int p = n_pad ? n_pad[b] : 0;
        if (lengths[b] < 1 || p < 0 || p > T - lengths[b])
            return rlhf__fail(rm, RLHF_ERR_INVALID_ARGUMENT,
                              "rlhf_reward_score_ids: row %d: %d padding + %d tokens do not fit T=%d", b, p, lengths[b],
                              T);
    }

    /* one forward of the value head over the batch, inference memory only */
    values = rlhf__alloc_floats((size_t)B * (size_t)T);
    if (n_pad) doc = (int *)rlhf__alloc((size_t)B * (size_t)T * sizeof(int));
    if (!values || (n_pad && !doc)) {
        rlhf__free(values);
        rlhf__free(doc);
        return rlhf__fail(rm, RLHF_ERR_OUT_OF_MEMORY, "rlhf_reward_score_ids: out of memory");
    }
    if (doc) rlhf_doc_left_pad(doc, n_pad, B, T);
    r = rlhf__forward_entry(rm, tokens, NULL, doc, B, T, NULL, NULL, values, 2, 0, "rlhf_reward_score_ids");
    if (normalise) rlhf_reward_normalization(rm, &gain, &bias);
    /* the reward: the value at the last real token, after any left padding */
    if (r == RLHF_OK)
        for (b = 0; b < B; b++)
            scores[b] = gain * values[(ptrdiff_t)b * T + (n_pad ? n_pad[b] : 0) + lengths[b] - 1] + bias;
    rlhf__free(values);
    rlhf__free(doc);
    return r;
}
RLHFDEF rlhf_result rlhf_reward_score_ids(rlhf_model *rm, const int *tokens, const int *n_pad, const int *lengths,
                                          int B, int T, float *scores) {
    return rlhf__reward_scores(rm, tokens, n_pad, lengths, B, T, scores, 1);
}

RLHFDEF rlhf_result rlhf_reward_score(rlhf_model *rm, const rlhf_tokenizer *t, const char *const *prompts,
                                      const char *const *responses, int n, float *scores) {
    enum { CHUNK = 16 };
    rlhf__tokbuf b = {NULL, NULL, 0};
    rlhf_message two[2];           /* the user turn and the assistant turn of one pair */
    int *batch = NULL, lens[CHUNK], i, j, T; /* batch: CHUNK rows of n_ctx */
    size_t len;
    rlhf_result r = RLHF_OK;
    if (!rm) return RLHF_ERR_INVALID_ARGUMENT;

    /* pairs in chunks of 16: each encoded through the chat template, checked against n_ctx */
    if (!t || !prompts || !responses || !scores || n < 0)
        return rlhf__fail(rm, RLHF_ERR_INVALID_ARGUMENT, "rlhf_reward_score: missing argument");
    batch = (int *)rlhf__alloc((size_t)CHUNK * (size_t)rm->cfg.n_ctx * sizeof(int));
    if (!batch) return rlhf__fail(rm, RLHF_ERR_OUT_OF_MEMORY, "rlhf_reward_score: out of memory");
    two[0].role = RLHF_ROLE_USER;
    two[1].role = RLHF_ROLE_ASSISTANT;
    for (i = 0; i < n && r == RLHF_OK; i += CHUNK) {
        /* the chunk's pairs encoded into rows of stride n_ctx; T: the longest */
        int B = n - i < CHUNK ? n - i : CHUNK;
        for (j = 0, T = 1; j < B && r == RLHF_OK; j++) {
            two[0].content.str = prompts[i + j];
            two[0].content.len = prompts[i + j] ? strlen(prompts[i + j]) : 0;
            two[1].content.str = responses[i + j];
            two[1].content.len = responses[i + j] ? strlen(responses[i + j]) : 0;
            if (!two[0].content.str || !two[1].content.str) {
                r = rlhf__fail(rm, RLHF_ERR_INVALID_ARGUMENT, "rlhf_reward_score: prompt or response %d is NULL",
                               i + j);
                break;
            }
            if ((r = rlhf__chat_grow(t, two, 2, 0, &b, &len)) != RLHF_OK) {
                r = rlhf__fail(rm, r, "rlhf_reward_score: cannot encode pair %d: %s", i + j, rlhf_result_string(r));
                break;
            }
            if (len > (size_t)rm->cfg.n_ctx) {
                r = rlhf__fail(rm, RLHF_ERR_CONTEXT_FULL,
                               "rlhf_reward_score: pair %d is %zu tokens, longer than n_ctx %d", i + j, len,
                               rm->cfg.n_ctx);
                break;
            }
            lens[j] = (int)len;
            if (lens[j] > T) T = lens[j];
            memcpy(batch + (ptrdiff_t)j * rm->cfg.n_ctx, b.ids, len * sizeof(int));
        }
        if (r != RLHF_OK) break;
        /* rows of stride n_ctx -> rows of stride T, right-padded */
        for (j = 0; j < B; j++) {
            int k;
            memmove(batch + (ptrdiff_t)j * T, batch + (ptrdiff_t)j * rm->cfg.n_ctx, (size_t)lens[j] * sizeof(int));
            for (k = lens[j]; k < T; k++) batch[(ptrdiff_t)j * T + k] = rlhf_tokenizer_special(t, RLHF_TOKEN_PAD);
        }
        /* scored at each pair's last token, normalised */
        r = rlhf__reward_scores(rm, batch, NULL, lens, B, T, scores + i, 1);
    }
    rlhf__free(batch);
    rlhf__free(b.ids);
    rlhf__free(b.mask);
    return r;
}

RLHFDEF rlhf_result rlhf_reward_score_record(rlhf_model *rm, const rlhf_tokenizer *t, const rlhf_record *r,
                                             int max_len, float *scores, rlhf_fit_report *fit) {
    rlhf__fitbuf fb;
    int *rows = NULL, *lens = NULL, K, k, T = 1;
    rlhf_result res;
    if (!rm) return RLHF_ERR_INVALID_ARGUMENT;
    if (!t || !r || !scores || max_len < 0 || max_len > rm->cfg.n_ctx || (K = rlhf__n_responses(r)) < 1)
        return rlhf__fail(rm, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_reward_score_record: need a tokenizer, a pair, ranking or completion record, scores, "
                          "and 0 <= max_len <= n_ctx %d", rm->cfg.n_ctx);
    if (max_len == 0) max_len = rm->cfg.n_ctx;

    /* the K sequences after one prompt, cut by the rule; skipped records are the caller's to count */
    memset(&fb, 0, sizeof fb);
    rows = (int *)rlhf__alloc((size_t)K * (size_t)max_len * sizeof(int));
    lens = (int *)rlhf__alloc((size_t)K * sizeof(int));
    if (!rows || !lens) res = rlhf__fail(rm, RLHF_ERR_OUT_OF_MEMORY, "rlhf_reward_score_record: out of memory");
    else if ((res = rlhf__pref_fit(t, r, (size_t)max_len, &fb, rows, lens, NULL, fit)) == RLHF_OK) {
        /* rows of stride max_len -> stride T (the longest), right-padded; scored at each last token */
        for (k = 0; k < K; k++) T = lens[k] > T ? lens[k] : T;
        for (k = 0; k < K; k++) {
            int j;
            memmove(rows + (ptrdiff_t)k * T, rows + (ptrdiff_t)k * max_len, (size_t)lens[k] * sizeof(int));
            for (j = lens[k]; j < T; j++) rows[(ptrdiff_t)k * T + j] = rlhf_tokenizer_special(t, RLHF_TOKEN_PAD);
        }
        res = rlhf__reward_scores(rm, rows, NULL, lens, K, T, scores, 1);
    } else if (res != RLHF_ERR_CONTEXT_FULL)
        res = rlhf__fail(rm, res, "rlhf_reward_score_record: line %zu: cannot encode the record: %s", r->line,
                         rlhf_result_string(res));
    rlhf__fitbuf_free(&fb);
    rlhf__free(rows);
    rlhf__free(lens);
    return res;
}

/* One reply of policy to the prompt in seq[0..np) (room for ctx tokens),
   scored raw at its last token: a reply cut by the length limit is scored
   at an <|end|> as every training comparison is (appended, or over its
   last token). */
static rlhf_result rlhf__normalize_sample(rlhf_model *rm, rlhf_model *policy, rlhf_kv_cache *cache, rlhf_sampler *s,
                                         rlhf_rng *rng, int *seq, int np, int room, int ctx, int stop, float *raw) {
    int nr = 0;
    rlhf_result r;
    if ((r = rlhf_model_generate(policy, cache, s, rng, seq, np, room, stop, seq + np, &nr)) != RLHF_OK)
        return rlhf__fail(rm, r, "rlhf_reward_normalize: generation failed: %s", rlhf_model_last_error(policy));
    if (nr == 0 || seq[np + nr - 1] != stop) {
        if (np + nr < ctx) nr++;
        seq[np + nr - 1] = stop;
    }
    nr += np;
    return rlhf__reward_scores(rm, seq, NULL, &nr, 1, nr, raw, 0);
}

RLHFDEF rlhf_result rlhf_reward_normalize_ex(rlhf_model *rm, rlhf_model *policy, const rlhf_tokenizer *t,
                                             const rlhf_dataset *prompts, int n_samples,
                                             const rlhf_sampler_config *sampling, int max_new_tokens, uint64_t seed,
                                             int max_len, float *raw_mean, float *raw_std, rlhf_fit_report *fit,
                                             rlhf_error *err) {
    rlhf_kv_cache *cache = NULL;
    rlhf_sampler *s = NULL;
    rlhf__fitbuf fb;
    rlhf_rng rng;
    int *seq = NULL, i, ctx, room, reply, stop;
    double sum = 0.0, sumsq = 0.0, mean, sd;
    rlhf_result r = RLHF_OK;
    if (err) err->message[0] = 0;
    if (!rm) return RLHF_ERR_INVALID_ARGUMENT;
    memset(&fb, 0, sizeof fb);

    /* a prompt and its reply must fit both models (and max_len); one sequence at a time through the KV cache */
    ctx = policy && policy->cfg.n_ctx < rm->cfg.n_ctx ? policy->cfg.n_ctx : rm->cfg.n_ctx;
    if (!policy || !t || !prompts || !sampling || n_samples < 2 || max_new_tokens < 1 ||
        rlhf_dataset_size(prompts) == 0 || max_len < 0 || max_len == 1 || max_len > ctx) {
        r = rlhf__fail(rm, RLHF_ERR_INVALID_ARGUMENT,
                       "rlhf_reward_normalize: need a policy, a tokenizer, prompts, n_samples >= 2, "
                       "max_new_tokens >= 1 and max_len 0 or in [2, %d] (got %d)", ctx, max_len);
        goto done;
    }
    if (max_len > 0) ctx = max_len;
    /* room kept for the reply (at most half the sequence): a prompt keeps the rest (the long-record rule), and
       the reply may use what its prompt leaves, up to max_new_tokens */
    room = max_new_tokens < ctx / 2 ? max_new_tokens : ctx / 2;
    stop = rlhf_tokenizer_reply_end(t);
    if ((r = rlhf_kv_cache_create(&cache, policy, 1, policy->cfg.n_ctx)) != RLHF_OK ||
        (r = rlhf_sampler_create(&s, policy->cfg.vocab_size, sampling)) != RLHF_OK ||
        !(seq = (int *)rlhf__alloc((size_t)ctx * sizeof(int)))) {
        r = rlhf__fail(rm, r == RLHF_OK ? RLHF_ERR_OUT_OF_MEMORY : r,
                       "rlhf_reward_normalize: cannot create the sampler and cache");
        goto done;
    }

    /* n_samples replies of the policy to the prompts in turn, each scored raw: sum and sum of squares */
    rlhf_rng_seed(&rng, seed);
    for (i = 0; i < n_samples; i++) {
        const rlhf_record *rec = rlhf_dataset_record(prompts, (size_t)i % rlhf_dataset_size(prompts));
        size_t np;
        float raw;
        if ((r = rlhf__prompt_fit(t, rec, (size_t)(ctx - room), &fb, seq, &np, fit)) != RLHF_OK) {
            r = rlhf__fail(rm, r, "rlhf_reward_normalize: record %d (line %zu): cannot encode its prompt: %s", i,
                           rec->line, rlhf_result_string(r));
            goto done;
        }
        reply = ctx - (int)np < max_new_tokens ? ctx - (int)np : max_new_tokens; /* at least room */
        if ((r = rlhf__normalize_sample(rm, policy, cache, s, &rng, seq, (int)np, reply, ctx, stop, &raw)) != RLHF_OK)
            goto done;
        sum += raw;
        sumsq += (double)raw * raw;
    }

    /* the raw scores' mean and (population) std, from which gain and bias follow */
    mean = sum / n_samples;
    sd = sqrt(fmax(sumsq / n_samples - mean * mean, 0.0));
    if (raw_mean) *raw_mean = (float)mean;
    if (raw_std) *raw_std = (float)sd;
    if (!(sd > 1e-12)) {
        r = rlhf__fail(rm, RLHF_ERR_INVALID_ARGUMENT,
                       "rlhf_reward_normalize: the %d raw rewards have std %g: cannot normalise", n_samples, sd);
        goto done;
    }
    /* score = (raw - mean) / std = raw * (1/std) + (-mean/std) */
    r = rlhf_reward_set_normalization(rm, (float)(1.0 / sd), (float)(-mean / sd));
done:
    if (r != RLHF_OK && err) snprintf(err->message, sizeof err->message, "%s", rlhf_model_last_error(rm));
    rlhf__fitbuf_free(&fb);
    rlhf_kv_cache_free(cache);
    rlhf_sampler_free(s);
    rlhf__free(seq);
    return r;
}
RLHFDEF rlhf_result rlhf_reward_normalize(rlhf_model *rm, rlhf_model *policy, const rlhf_tokenizer *t,
                                          const rlhf_dataset *prompts, int n_samples,
                                          const rlhf_sampler_config *sampling, int max_new_tokens, uint64_t seed,
                                          float *raw_mean, float *raw_std) {
    return rlhf_reward_normalize_ex(rm, policy, t, prompts, n_samples, sampling, max_new_tokens, seed, 0, raw_mean,
                                    raw_std, NULL, NULL);
}

// ----------------------------------------------------------------------------
// >>ppo  PPO with a KL penalty against the SFT policy (InstructGPT step 3,
//        eq. 2, PPO-ptx): the equations, the trainer, one iteration in the
//        paper's order, resume, trace
// ----------------------------------------------------------------------------
//
// InstructGPT (Ouyang et al. 2022) eq. 2: the RL policy pi_RL (weights phi)
// maximises
//
//   objective(phi) = E_{(x,y) ~ D_pi_RL} [ r_theta(x, y) - beta log( pi_RL(y | x) / pi_SFT(y | x) ) ]
//                  + gamma E_{x ~ D_pretrain} [ log pi_RL(x) ]
//
// x is a prompt and y the policy's response to it, r_theta the reward model
// (step 2), pi_SFT the frozen SFT model (the reference), beta the KL
// coefficient, gamma (ptx_coef) the weight of the pretraining term; gamma = 0
// is the paper's "PPO", gamma > 0 its "PPO-ptx". Where each term is computed:
//
//   term                         how                                         function
//   y ~ pi_RL(. | x)             B responses sampled, the KV cache           rlhf__ppo_rollout
//   r_theta(x, y)                the score at y's last token (<|end|>)       rlhf__ppo_evaluate, rlhf_reward_score_ids
//   log pi_RL / pi_SFT           per token: KL_t = log pi_RL - log pi_SFT    rlhf_ppo_rewards
//   the bracket as a reward      r_t = -beta KL_t, + r_theta at the last t   rlhf_ppo_rewards
//   beta                         fixed, or Ziegler et al.'s controller       rlhf_kl_control
//   E[...] maximised by PPO      advantages A_t by GAE, whitened             rlhf_gae, rlhf__ppo_advantages
//                                the clipped surrogate on each minibatch     rlhf_ppo_policy_loss, rlhf__ppo_policy
//                                the critic V_t learns the returns R_t       rlhf_ppo_value_loss, rlhf__ppo_critic
//   gamma E[log pi_RL(x)]        - gamma x the LM loss on pretraining rows   rlhf__ppo_ptx
//
// rlhf_ppo_step runs one iteration in that order: rollout, evaluate,
// advantages, learn (ppo_epochs passes over shuffled minibatches: policy,
// ptx, critic), statistics, KL control, metrics.
//
// GRPO and RLOO (estimator, see >>grpo for their equations) run the same
// iteration with three changes: the rollout samples each prompt G times
// (rlhf__ppo_prompts); the advantages come from each reply's reward
// against its group, with no critic (rlhf__ppo_group_advantages); the
// policy's loss is rlhf_grpo_loss or rlhf_rloo_loss (rlhf__ppo_surrogate).
//
// Notation (see CONCEPTS): episode b is a prompt of P_b tokens and a response
// of n_b tokens (at most max_new). A rollout's rows are (B, T) with
// T = Pmax + Nmax, its longest prompt and response: a prompt is left-padded
// to end at position Pmax - 1, its response starts at Pmax. Per-token arrays
// are (B, max_new): token t of episode b is at b * max_new + t. For token t:
// KL_t, r_t (reward), V_t (value), A_t (advantage), R_t = A_t + V_t (return).

/* ---- the equations ------------------------------------------------------------ */

RLHFDEF void rlhf_gae(const float *rewards, const float *values, int n, float gamma, float lam, float *adv,
                      float *ret) {
    /* Schulman et al. 2016 (GAE), backwards from the last of the response's n tokens:
         delta_t = r_t + gamma * V_{t+1} - V_t,  V_n = 0 (the episode ends)
         A_t     = delta_t + gamma * lambda * A_{t+1}
         R_t     = A_t + V_t   (the value function's target) */
    float next_value = 0.0f, next_adv = 0.0f;
    int t;
    if (!rewards || !values || !adv || !ret) return;
    for (t = n - 1; t >= 0; t--) {
        float delta = rewards[t] + gamma * next_value - values[t];
        adv[t] = delta + gamma * lam * next_adv;
        ret[t] = adv[t] + values[t];
        next_value = values[t];
        next_adv = adv[t];
    }
}

RLHFDEF void rlhf_ppo_rewards(const float *logp, const float *ref_logp, int n, float score, float beta,
                              rlhf_kl_estimator est, float *rewards, float *kl) {
    /* Ziegler et al. 2019; InstructGPT eq. 2: the per-token KL penalty
         k1:  KL_t = log pi(a_t|s_t) - log pi_ref(a_t|s_t)
         k3:  KL_t = exp(d) - 1 - d,  d = log pi_ref - log pi   (non-negative, unbiased)
         r_t = -beta * KL_t,  and r_{n-1} += score (the reward model's, on the last token) */
    int t;
    for (t = 0; t < n; t++) {
        float d = ref_logp[t] - logp[t];
        float k = est == RLHF_KL_K3 ? expm1f(d) - d : -d;
        if (kl) kl[t] = k;
        rewards[t] = -beta * k;
    }
    if (n > 0) rewards[n - 1] += score;
}

RLHFDEF float rlhf_kl_control(float beta, float kl, float kl_target, float horizon, int n_episodes) {
    /* Ziegler et al. 2019, section 2.2, the adaptive KL controller:
         e_t       = clip(KL_t / KL_target - 1, -0.2, 0.2)
         beta_t+1  = beta_t * (1 + K_beta e_t),   K_beta = n_episodes / horizon
       KL_t is the mean over the iteration's episodes of sum_t KL_t. */
    double e = kl / kl_target - 1.0;
    e = e < -0.2 ? -0.2 : e > 0.2 ? 0.2 : e;
    return (float)(beta * (1.0 + e * (double)n_episodes / horizon));
}

RLHFDEF float rlhf_ppo_policy_loss(const float *logp, const float *old_logp, const float *adv, int n, float cliprange,
                                   float *dlogp, float *clipfrac, float *approxkl) {
    /* Schulman et al. 2017, the clipped surrogate, as a loss (minimised):
         ratio_t = exp(logp_t - old_logp_t)
         L = mean_t max(-A_t ratio_t, -A_t clip(ratio_t, 1 - eps, 1 + eps))
       d L / d logp_t = -A_t ratio_t / n where the unclipped term is the max,
       0 where the clipped one is (clip is flat outside [1-eps, 1+eps]) */
    double loss = 0.0, cf = 0.0, akl = 0.0;
    int t;
    if (n <= 0) return 0.0f;
    for (t = 0; t < n; t++) {
        float log_ratio = logp[t] - old_logp[t], ratio = expf(log_ratio);
        float rc = ratio < 1.0f - cliprange ? 1.0f - cliprange : ratio > 1.0f + cliprange ? 1.0f + cliprange : ratio;
        float l1 = -adv[t] * ratio, l2 = -adv[t] * rc;
        int clipped = l2 > l1;
        loss += clipped ? l2 : l1;
        cf += clipped;
        akl += 0.5 * (double)log_ratio * log_ratio; /* approxkl: 0.5 mean (log ratio)^2 */
        if (dlogp) dlogp[t] = clipped ? 0.0f : -adv[t] * ratio / (float)n;
    }
    if (clipfrac) *clipfrac = (float)(cf / n);
    if (approxkl) *approxkl = (float)(akl / n);
    return (float)(loss / n);
}

RLHFDEF float rlhf_ppo_value_loss(const float *v, const float *v_old, const float *ret, int n, float cliprange_value,
                                  float *dv, float *clipfrac) {
    /* the clipped value loss (OpenAI baselines; "N implementation details", item 15):
         v_clip = v_old + clip(v - v_old, -eps, eps)
         L = 0.5 mean_t max((v_t - R_t)^2, (v_clip_t - R_t)^2) */
    double loss = 0.0, cf = 0.0;
    int t;
    if (n <= 0) return 0.0f;
    for (t = 0; t < n; t++) {
        float dlt = v[t] - v_old[t];
        float vc = v_old[t] + (dlt < -cliprange_value  ? -cliprange_value
                               : dlt > cliprange_value ? cliprange_value
                                                       : dlt);
        float e1 = (v[t] - ret[t]) * (v[t] - ret[t]), e2 = (vc - ret[t]) * (vc - ret[t]);
        int clipped = e2 > e1;
        loss += 0.5 * (clipped ? e2 : e1);
        cf += clipped;
        /* d/dv: (v - R)/n unclipped; (v_clip - R)/n * [v - v_old inside the clip range] clipped */
        if (dv)
            dv[t] =
                clipped ? (fabsf(dlt) < cliprange_value ? (vc - ret[t]) / (float)n : 0.0f) : (v[t] - ret[t]) / (float)n;
    }
    if (clipfrac) *clipfrac = (float)(cf / n);
    return (float)(loss / n);
}

/* ---- the trainer -------------------------------------------------------------- */

RLHFDEF rlhf_ppo_config rlhf_ppo_config_default(void) {
    rlhf_ppo_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = 16;
    c.mini_batch = 4;
    c.ppo_epochs = 4;
    c.max_new_tokens = 32;
    c.sampling = rlhf_sampler_config_default();
    c.sampling.temperature = 0.7f;
    c.penalize_missing_eos = 1;
    c.missing_eos_penalty = -1.0f;
    c.kl_coef = 0.05f;
    c.kl_target = 6.0f;
    c.kl_horizon = 10000.0f;
    c.kl_estimator = RLHF_KL_K1;
    c.gamma = 1.0f;
    c.lam = 0.95f;
    c.cliprange = 0.2f;
    c.cliprange_value = 0.2f;
    c.vf_coef = 0.1f;
    c.ratio_threshold = 10.0f;
    c.policy_opt = rlhf_adamw_config_default();
    c.policy_opt.lr = 1e-5f;
    c.policy_opt.weight_decay = 0.0f;
    c.critic_opt = c.policy_opt;
    c.log_samples = 2;
    c.seed = 1;
    c.estimator = RLHF_EST_GAE;
    c.group_size = 1;
    c.scale_rewards = RLHF_SCALE_GROUP;
    c.loss_agg = RLHF_AGG_SEQUENCE;
    return c;
}

/* The last rollout: B episodes and everything measured on them. */
typedef struct rlhf__rollout {
    int Pmax, Nmax, T;                  /* longest prompt, longest response, T = Pmax + Nmax */
    int *seq;                           /* (B, T): left padding, prompt, response, right padding */
    int *n_pad, *plen, *rlen, *has_eos; /* (B): left padding, P_b, n_b, 1 when it ended with <|end|> */
    float *score;                       /* (B): r_theta(x, y), or the missing-EOS penalty */
    /* (B, max_new), token t of episode b at b * max_new + t: */
    float *logp, *ref_logp;             /* log pi_old(y_t), log pi_ref(y_t) (logits / temperature) */
    float *values, *kl, *rewards;       /* V_t, KL_t, r_t */
    float *adv, *ret, *adv_white;       /* A_t, R_t, and A_t whitened over the rollout */
    float *ratio;                       /* pi / pi_old at the last update that used the token */
    unsigned char *clipped;             /* 1 when the surrogate's clipped term was the one used */
} rlhf__rollout;

/* One minibatch's response tokens, compacted: (MB * max_new) each. */
typedef struct rlhf__mb_tokens {
    float *logp, *old_logp, *adv, *dlogp; /* the policy: log pi, log pi_old, whitened A_t, dL/dlog pi */
    float *v, *v_old, *ret, *dv;          /* the critic: V, V_old, R_t, dL/dV */
    float *ref;                           /* log pi_ref (GRPO's KL term) */
} rlhf__mb_tokens;

struct rlhf_ppo {
    rlhf_ppo_config cfg;        /* a copy; its models and data are the caller's */
    rlhf_model *policy, *ref, *critic, *rm, *ema;
    const rlhf_tokenizer *tok;
    const rlhf_dataset *prompts;
    rlhf__examples ptx;         /* pretraining windows (PPO-ptx) */
    size_t *order, data_pos;    /* the prompts' order in this data epoch, and the next one to use */
    size_t *ptx_order, ptx_pos; /* the same for the pretraining rows */
    long ptx_epoch, data_epoch; /* epochs so far: with the seed they rebuild the orders on resume */
    rlhf_train_options topt;    /* the log and metric callbacks, for the shared run helpers */
    rlhf__trainrun run;
    rlhf_rng rng;               /* sampling and minibatch shuffles: saved and restored with the run */
    float kl_coef;              /* beta now */
    long iteration;             /* iterations done */
    long skipped_updates;       /* minibatches whose loss or gradient was not finite */
    long skipped_minibatches;   /* minibatches skipped by the ratio guard */
    uint64_t ref_hash;          /* the reference's fingerprint: a resumed run must use the same one */
    int stop, pad;              /* <|end|> and the pad token */
    int max_prompt, max_new;    /* prompt tokens kept, response tokens at most */
    int B, MB;                  /* episodes per iteration, per minibatch */
    int G;                      /* replies per prompt (GRPO, RLOO); 1 for GAE */
    int use_critic;             /* GAE: the critic is evaluated and trained */
    int ptxT, ptx_rows;         /* PPO-ptx rows: length and count per minibatch */
    rlhf__rollout ro;
    /* minibatch scratch: (MB, T) rows in, (MB, T) outputs and their gradients, compacted tokens */
    int *mb_in, *mb_tg, *mb_doc;  /* (MB, T): a minibatch's tokens, targets, document starts */
    int *ptx_in, *ptx_tg;         /* (ptx_rows, ptxT): pretraining inputs and targets (then document starts) */
    float *mb_out, *mb_ent;       /* (MB, T): log-probs or values; entropies */
    float *mb_d, *mb_d2;          /* (MB, T): the gradients the backward reads (log-probs or values; entropies) */
    rlhf__mb_tokens tk;
    rlhf_kv_cache *cache;       /* B sequences of max_prompt + max_new positions: the rollout's keys and values */
    rlhf_sampler *sampler;      /* temperature, top-k, top-p as configured */
    float *step_logits;         /* (B, V): the logits of the next token while sampling */
    rlhf__fitbuf fitb;          /* one prompt before the long-record rule cuts it (grows once, then reused) */
    rlhf_fit_report prompt_fit; /* the rule over the whole prompt set, counted at creation */
    float reward_std, frac_zero_std; /* GRPO, RLOO: the last rollout's (TRL's metrics) */
    size_t ro_tokens;           /* the last rollout's response tokens (DAPO's normaliser) */
};

/* Where response token t of an episode lives: in the (B, max_new) arrays,
   and in row `row` of a (., T) minibatch, at the position that predicts it
   (the one before it: Pmax - 1 + t). Every offset of >>ppo comes from here. */
/* token t of episode b in the (B, max_new) arrays */
static size_t rlhf__tok(const rlhf_ppo *p, int b, int t) { return (size_t)b * (size_t)p->max_new + (size_t)t; }
/* the position of row `row` (of T) whose output is about response token t */
static size_t rlhf__pred_at(const rlhf_ppo *p, int row, int t) {
    return (size_t)row * (size_t)p->ro.T + (size_t)(p->ro.Pmax - 1 + t);
}

/* FNV-1a over the reference's weights: its identity in a resumed run */
static uint64_t rlhf__model_hash(const rlhf_model *m) {
    const unsigned char *b = (const unsigned char *)m->param_mem;
    size_t i, n = m->num_params * sizeof(float);
    uint64_t h = 1469598103934665603ull;
    for (i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* the prompt order of data epoch e: a permutation from (seed, e) alone, so a
   resumed run rebuilds it */
static void rlhf__ppo_order(rlhf_ppo *p) {
    /* a generator of its own, so that the order does not depend on how much sampling came before */
    size_t i, n = rlhf_dataset_size(p->prompts);
    rlhf_rng r;
    for (i = 0; i < n; i++) p->order[i] = i;
    rlhf_rng_seed(&r, p->cfg.seed * 0x9E3779B97F4A7C15ull + (uint64_t)p->data_epoch + 1);
    rlhf__shuffle(p->order, n, &r);
}
/* the same for the pretraining rows of PPO-ptx, from (seed, ptx epoch) */
static void rlhf__ppo_ptx_order(rlhf_ppo *p) {
    size_t i;
    rlhf_rng r;
    for (i = 0; i < p->ptx.n; i++) p->ptx_order[i] = i;
    rlhf_rng_seed(&r, p->cfg.seed * 0xC2B2AE3D27D4EB4Full + (uint64_t)p->ptx_epoch + 7);
    rlhf__shuffle(p->ptx_order, p->ptx.n, &r);
}

RLHFDEF void rlhf_ppo_free(rlhf_ppo *p) {
    if (!p) return;
    rlhf_model_free(p->ema);
    rlhf__ex_free(&p->ptx);
    rlhf__free(p->ptx_order); rlhf__free(p->order);
    /* n_pad, logp, mb_in, mb_out and ptx_in each hold the arrays after them (rlhf__ppo_buffers) */
    rlhf__free(p->ro.seq); rlhf__free(p->ro.n_pad); rlhf__free(p->ro.logp); rlhf__free(p->ro.clipped);
    rlhf__free(p->mb_in); rlhf__free(p->ptx_in); rlhf__free(p->mb_out);
    rlhf_kv_cache_free(p->cache);
    rlhf_sampler_free(p->sampler);
    rlhf__free(p->step_logits);
    rlhf__fitbuf_free(&p->fitb);
    rlhf__free(p->run.line.p);
    rlhf__free(p);
}

/* "ppo: message" into err; returns r. The trainer's creation reports this
   way; once it runs, the run helpers of >>train report (rlhf__run_fail). */
static rlhf_result rlhf__ppo_fail(rlhf_error *err, rlhf_result r, const char *fmt, ...) {
    va_list ap;
    if (!err) return r;
    snprintf(err->message, sizeof err->message, "ppo: ");
    va_start(ap, fmt);
    vsnprintf(err->message + 5, sizeof err->message - 5, fmt, ap);
    va_end(ap);
    return r;
}

/* the algorithm's name in logs and metrics: "ppo", "grpo" or "rloo" */
static const char *rlhf__estimator_name(rlhf_estimator e) {
    return e == RLHF_EST_GRPO ? "grpo" : e == RLHF_EST_RLOO ? "rloo" : "ppo";
}

/* GRPO and RLOO: the group, the reward scaling and the loss's aggregation
   in range; which models they can do without. */
static rlhf_result rlhf__ppo_check_group(const rlhf_ppo_config *c, rlhf_error *err) {
    const rlhf_result bad = RLHF_ERR_INVALID_ARGUMENT;
    if ((int)c->estimator < 0 || (int)c->estimator > 2 || (int)c->scale_rewards < 0 || (int)c->scale_rewards > 2 ||
        (int)c->loss_agg < 0 || (int)c->loss_agg > 3 || !(c->cliprange_high >= 0.0f && c->cliprange_high < 100.0f))
        return rlhf__ppo_fail(err, bad, "bad config: unknown estimator, scale_rewards or loss_agg, or cliprange_high "
                                        "not in [0, 100)");
    if (c->estimator == RLHF_EST_GAE && c->group_size != 1 && c->group_size != 0)
        return rlhf__ppo_fail(err, bad, "group_size %d needs a group estimator (GRPO or RLOO); PPO's GAE samples "
                                        "each prompt once", c->group_size);
    if (c->estimator != RLHF_EST_GAE && (c->group_size < 2 || c->batch_size % c->group_size != 0))
        return rlhf__ppo_fail(err, bad, "%s needs group_size >= 2 replies per prompt, and batch_size (%d) a multiple "
                              "of it (got %d)", rlhf__estimator_name(c->estimator), c->batch_size, c->group_size);
    if (c->estimator == RLHF_EST_GAE && c->cliprange_high != 0.0f)
        return rlhf__ppo_fail(err, bad, "cliprange_high applies to GRPO and RLOO; PPO's clip is symmetric (cliprange)");
    if (c->adaptive_kl && c->kl_coef == 0.0f)
        return rlhf__ppo_fail(err, bad, "adaptive KL from kl_coef 0 would stay at 0: start it above 0");
    if (!c->ref && (c->kl_coef != 0.0f || c->adaptive_kl))
        return rlhf__ppo_fail(err, bad, "no reference model: only kl_coef 0 (without adaptive KL) can do without one");
    if (!c->critic && c->estimator == RLHF_EST_GAE)
        return rlhf__ppo_fail(err, bad, "PPO's GAE needs a critic (initialise it from the reward model)");
    return RLHF_OK;
}

/* The config and the models checked before anything is allocated. */
static rlhf_result rlhf__ppo_check(const rlhf_ppo_config *c, rlhf_error *err) {
    const rlhf_model *policy = c->policy, *critic = c->critic, *rm = c->reward_model;
    const rlhf_tokenizer *t = c->tokenizer;
    const rlhf_result bad = RLHF_ERR_INVALID_ARGUMENT;
    int pad;
    rlhf_result r;

    /* the models and data, then every number in its range: sizes the buffers can hold (perm[1024]),
       temperatures and clip ranges that divide or bound, coefficients that are finite and >= 0 */
    if (!policy || (!rm && !c->score_fn) || !t || !c->prompts)
        return rlhf__ppo_fail(err, bad,
                              "need a policy, a reward model or score function, a tokenizer, prompts and a config");
    if ((r = rlhf__ppo_check_group(c, err)) != RLHF_OK) return r;
    if (c->batch_size < 1 || c->batch_size > 1024 || c->mini_batch < 1 || c->mini_batch > c->batch_size ||
        c->ppo_epochs < 1 || c->max_new_tokens < 1 || c->max_prompt_tokens < 0 || !(c->sampling.temperature > 0.0f) ||
        !(c->kl_coef >= 0.0f) || !(c->cliprange > 0.0f) || !(c->cliprange_value > 0.0f) || !(c->vf_coef >= 0.0f) ||
        !(c->gamma >= 0.0f && c->gamma <= 1.0f) || !(c->lam >= 0.0f && c->lam <= 1.0f) ||
        !(c->ema_decay >= 0.0f && c->ema_decay < 1.0f) || !(c->ptx_coef >= 0.0f) || c->ptx_batch < 0 ||
        c->ptx_batch > 1024 || !(c->ratio_threshold > 1.0f) || !(c->entropy_coef >= 0.0f) ||
        !isfinite(c->entropy_coef) || !isfinite(c->missing_eos_penalty) || !(c->policy_opt.lr >= 0.0f) ||
        !(c->critic_opt.lr >= 0.0f) || !isfinite(c->kl_coef) || c->total_iterations < 0 ||
        (c->adaptive_kl && !(c->kl_target > 0.0f && c->kl_horizon > 0.0f)))
        return rlhf__ppo_fail(
            err, bad,
            "bad config: need 1 <= mini_batch <= batch_size <= 1024, ppo_epochs >= 1, max_new_tokens >= 1, temperature "
            "> 0 "
            "(log-probs divide by it), kl_coef >= 0, cliprange(s) > 0, gamma and lam in [0,1], ema_decay in [0,1), "
            "ptx_batch <= 1024, ratio_threshold > 1, entropy_coef >= 0, finite missing_eos_penalty, learning rates >= "
            "0");

    /* the models fit together: KL_t compares two distributions over the same vocabulary and positions */
    if (c->ref && memcmp(&policy->cfg, &c->ref->cfg, sizeof policy->cfg) != 0)
        return rlhf__ppo_fail(err, bad, "the reference model's config differs from the policy's");
    if (critic && !critic->has_score)
        return rlhf__ppo_fail(err, bad, "the critic has no scalar head (initialise it from the reward model)");
    if (rm && !rm->has_score) return rlhf__ppo_fail(err, bad, "the reward model has no scalar head");
    if (rlhf_tokenizer_vocab_size(t) > policy->cfg.vocab_size)
        return rlhf__ppo_fail(err, bad, "the tokenizer's %d tokens do not fit the policy's vocabulary (%d)",
                              rlhf_tokenizer_vocab_size(t), policy->cfg.vocab_size);

    /* the policy may sample any id below its vocabulary size: the critic and the reward model must read them all */
    if ((critic && critic->cfg.vocab_size < policy->cfg.vocab_size) ||
        (rm && rm->cfg.vocab_size < policy->cfg.vocab_size))
        return rlhf__ppo_fail(err, bad, "the critic's and reward model's vocabularies must hold the policy's %d ids",
                              policy->cfg.vocab_size);

    /* "N implementation details", item 2; users' reports (trl#734): with pad == EOS the policy never learns to stop */
    pad = rlhf_tokenizer_special(t, RLHF_TOKEN_PAD);
    if (pad == rlhf_tokenizer_special(t, RLHF_TOKEN_END) || pad == rlhf_tokenizer_special(t, RLHF_TOKEN_EOS))
        return rlhf__ppo_fail(err, bad, "the pad token (%d) equals the stop or EOS token: refusing to start", pad);

    /* the data: prompts to sample from, and pretraining text when PPO-ptx is on */
    if (rlhf_dataset_size(c->prompts) == 0) return rlhf__ppo_fail(err, bad, "the prompt dataset is empty");
    if (c->ptx_coef > 0.0f &&
        (!c->ptx || rlhf_dataset_size(c->ptx) == 0 || rlhf_dataset_record(c->ptx, 0)->kind != RLHF_RECORD_TEXT))
        return rlhf__ppo_fail(err, bad, "ptx_coef > 0 needs a TEXT dataset of pretraining data");
    return RLHF_OK;
}

/* The rollout's arrays and the minibatch scratch, each group in one block. */
static int rlhf__ppo_buffers(rlhf_ppo *p, int ctx) {
    rlhf__rollout *ro = &p->ro;
    size_t BN = (size_t)p->B * (size_t)p->max_new, MT = (size_t)p->MB * (size_t)(p->max_prompt + p->max_new);
    size_t MN = (size_t)p->MB * (size_t)p->max_new;
    float **tok_arrays[10];
    int i;

    /* six allocations in all: the prompt order; the rollout's tokens; its (B) ints and the prompt
       buffer (B, ctx); its (B, max_new) floats and the scores; the clip flags; the minibatch rows,
       outputs and compacted tokens; the logits of one sampling step */
    p->order = (size_t *)rlhf__alloc((rlhf_dataset_size(p->prompts) + 1) * sizeof(size_t));
    ro->seq = (int *)rlhf__alloc((size_t)p->B * (size_t)(p->max_prompt + p->max_new) * sizeof(int));
    ro->n_pad = (int *)rlhf__alloc((size_t)p->B * sizeof(int) * 4 + (size_t)p->B * (size_t)ctx * sizeof(int));
    ro->logp = rlhf__alloc_floats(BN * 9 + (size_t)p->B);
    ro->clipped = (unsigned char *)rlhf__alloc(BN);
    p->mb_in = (int *)rlhf__alloc(MT * 3 * sizeof(int));
    p->mb_out = rlhf__alloc_floats(MT * 4 + MN * 9);
    p->step_logits = rlhf__alloc_floats((size_t)p->B * (size_t)p->policy->cfg.vocab_size);
    if (!p->order || !ro->seq || !ro->n_pad || !ro->logp || !ro->clipped || !p->mb_in || !p->mb_out || !p->step_logits)
        return 0;

    /* carve the blocks: (B) ints; (B, max_new) floats; (MB, T) rows; (MB * max_new) tokens */
    ro->plen = ro->n_pad + p->B; ro->rlen = ro->plen + p->B; ro->has_eos = ro->rlen + p->B;
    tok_arrays[0] = &ro->ref_logp; tok_arrays[1] = &ro->values; tok_arrays[2] = &ro->rewards; tok_arrays[3] = &ro->kl;
    tok_arrays[4] = &ro->adv; tok_arrays[5] = &ro->ret; tok_arrays[6] = &ro->ratio; tok_arrays[7] = &ro->adv_white;
    tok_arrays[8] = &ro->score;
    for (i = 0; i < 9; i++) *tok_arrays[i] = (i ? *tok_arrays[i - 1] : ro->logp) + BN;
    p->mb_tg = p->mb_in + MT; p->mb_doc = p->mb_tg + MT;
    p->mb_ent = p->mb_out + MT; p->mb_d = p->mb_ent + MT; p->mb_d2 = p->mb_d + MT;
    p->tk.logp = p->mb_d2 + MT;
    p->tk.old_logp = p->tk.logp + MN;
    p->tk.adv = p->tk.old_logp + MN;
    p->tk.dlogp = p->tk.adv + MN;
    p->tk.v = p->tk.dlogp + MN; p->tk.v_old = p->tk.v + MN; p->tk.ret = p->tk.v_old + MN; p->tk.dv = p->tk.ret + MN;
    p->tk.ref = p->tk.dv + MN;

    /* before the first update the ratio is 1 and nothing is clipped (what a trace shows at iteration 0) */
    memset(ro->clipped, 0, BN);
    for (i = 0; i < (int)BN; i++) ro->ratio[i] = 1.0f;
    return 1;
}

/* PPO-ptx: the pretraining rows, their order, their buffers. */
static rlhf_result rlhf__ppo_ptx_setup(rlhf_ppo *p, int ctx, rlhf_error *err) {
    rlhf_fit_report fit;
    rlhf_result r;
    memset(&fit, 0, sizeof fit);
    /* windows of 64 tokens (or the context), ptx_batch of them per minibatch, in a seeded order */
    p->ptxT = ctx < 64 ? ctx : 64;
    p->ptx_rows = p->cfg.ptx_batch ? p->cfg.ptx_batch : p->MB;
    if ((r = rlhf__sft_examples(&p->run, p->tok, p->cfg.ptx, p->ptxT, &p->ptx, &fit)) != RLHF_OK) return r;
    p->ptx_order = (size_t *)rlhf__alloc((p->ptx.n + 1) * sizeof(size_t));
    p->ptx_in = (int *)rlhf__alloc((size_t)p->ptx_rows * (size_t)p->ptxT * 3 * sizeof(int));
    if (!p->ptx_order || !p->ptx_in || p->ptx.n == 0)
        return rlhf__ppo_fail(err, p->ptx.n ? RLHF_ERR_OUT_OF_MEMORY : RLHF_ERR_INVALID_ARGUMENT,
                              "no pretraining rows for PPO-ptx");
    p->ptx_tg = p->ptx_in + (size_t)p->ptx_rows * (size_t)p->ptxT;
    rlhf__ppo_ptx_order(p);
    return RLHF_OK;
}

/* The trainer's fields from the config, the shared run helpers' options. */
static void rlhf__ppo_init(rlhf_ppo *p, const rlhf_ppo_config *c, int ctx, rlhf_error *err) {
    /* the config and the models it names; prompts get half the context unless told */
    p->cfg = *c;
    p->policy = c->policy; p->ref = c->ref; p->critic = c->critic; p->rm = c->reward_model;
    p->tok = c->tokenizer; p->prompts = c->prompts;
    p->stop = rlhf_tokenizer_reply_end(c->tokenizer);
    p->pad = rlhf_tokenizer_special(c->tokenizer, RLHF_TOKEN_PAD);
    p->max_new = c->max_new_tokens;
    p->max_prompt = c->max_prompt_tokens ? c->max_prompt_tokens : ctx / 2;
    p->B = c->batch_size; p->MB = c->mini_batch;
    p->G = c->estimator == RLHF_EST_GAE ? 1 : c->group_size;
    p->use_critic = c->estimator == RLHF_EST_GAE;
    p->kl_coef = c->kl_coef;
    p->ref_hash = c->ref ? rlhf__model_hash(c->ref) : 0; /* no reference (beta 0): fingerprint 0 */
    rlhf_rng_seed(&p->rng, c->seed);

    /* the run helpers of >>train (errors, log lines, metric lines) read their callbacks from topt */
    p->topt = rlhf_train_options_sft();
    p->topt.log = c->log;
    p->topt.log_user = c->log_user;
    p->topt.metrics = c->metrics;
    p->topt.metrics_user = c->metrics_user;
    p->run.o = &p->topt; p->run.err = err; p->run.m = c->policy; p->run.stage = rlhf__estimator_name(c->estimator); p->run.t0 = rlhf__seconds();
    p->run.best = NAN;
}

/* The long-record rule over every prompt once (into max_prompt tokens),
   counted and logged in one line; the rollouts cut the same way. */
static rlhf_result rlhf__ppo_prompt_scan(rlhf_ppo *p, rlhf_error *err) {
    char line[256];
    size_t i, n;
    rlhf_result r = RLHF_OK;
    int *ids = (int *)rlhf__alloc((size_t)p->max_prompt * sizeof(int));
    if (!ids) return rlhf__ppo_fail(err, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
    memset(&p->prompt_fit, 0, sizeof p->prompt_fit);
    for (i = 0; i < rlhf_dataset_size(p->prompts) && r == RLHF_OK; i++) {
        const rlhf_record *rec = rlhf_dataset_record(p->prompts, i);
        if ((r = rlhf__prompt_fit(p->tok, rec, (size_t)p->max_prompt, &p->fitb, ids, &n, &p->prompt_fit)) != RLHF_OK)
            r = rlhf__ppo_fail(err, r, "prompt at line %zu: %s", rec->line, rlhf_result_string(r));
    }
    rlhf__free(ids);
    if (r == RLHF_OK) rlhf__run_log(&p->run, RLHF_LOG_INFO, "%s", rlhf_fit_describe(&p->prompt_fit, line, sizeof line));
    return r;
}
RLHFDEF rlhf_fit_report rlhf_ppo_prompt_fit(const rlhf_ppo *p) {
    rlhf_fit_report none;
    memset(&none, 0, sizeof none);
    return p ? p->prompt_fit : none;
}

RLHFDEF rlhf_result rlhf_ppo_create(rlhf_ppo **out, const rlhf_ppo_config *c, rlhf_error *err) {
    rlhf_ppo *p;
    rlhf_result r;
    int ctx, rows;
    /* everything checked before anything is allocated; on any failure below, all is freed and *out stays NULL */
    if (err) err->message[0] = 0;
    if (!out) return RLHF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!c) return rlhf__ppo_fail(err, RLHF_ERR_INVALID_ARGUMENT, "need a config");
    if ((r = rlhf__ppo_check(c, err)) != RLHF_OK) return r;
    p = (rlhf_ppo *)rlhf__alloc(sizeof *p);
    if (!p) return RLHF_ERR_OUT_OF_MEMORY;
    memset(p, 0, sizeof *p);

    /* the context every model can read: prompt + response must fit it */
    ctx = c->policy->cfg.n_ctx;
    if (c->critic && c->estimator == RLHF_EST_GAE && c->critic->cfg.n_ctx < ctx) ctx = c->critic->cfg.n_ctx;
    if (c->reward_model && c->reward_model->cfg.n_ctx < ctx) ctx = c->reward_model->cfg.n_ctx;
    rlhf__ppo_init(p, c, ctx, err);
    if (p->max_prompt < 2 || p->max_prompt + p->max_new > ctx) {
        r = rlhf__ppo_fail(err, RLHF_ERR_INVALID_ARGUMENT,
                           "max_prompt_tokens (%d) + max_new_tokens (%d) must fit the smallest model context (%d)",
                           p->max_prompt, p->max_new, ctx);
        goto fail;
    }

    /* buffers, the KV cache and sampler, the data orders, PPO-ptx, the EMA */
    if (!rlhf__ppo_buffers(p, ctx)) {
        r = rlhf__ppo_fail(err, RLHF_ERR_OUT_OF_MEMORY,
                           "out of memory for the rollout buffers (%d episodes of %d tokens)", p->B,
                           p->max_prompt + p->max_new);
        goto fail;
    }
    if ((r = rlhf_kv_cache_create(&p->cache, p->policy, p->B, p->max_prompt + p->max_new)) != RLHF_OK ||
        (r = rlhf_sampler_create(&p->sampler, p->policy->cfg.vocab_size, &c->sampling)) != RLHF_OK) {
        r = rlhf__ppo_fail(err, r, "cannot create the KV cache and sampler: %s", rlhf_result_string(r));
        goto fail;
    }
    rlhf__ppo_order(p);
    if ((r = rlhf__ppo_prompt_scan(p, err)) != RLHF_OK) goto fail;
    if (c->ptx_coef > 0.0f && (r = rlhf__ppo_ptx_setup(p, ctx, err)) != RLHF_OK) goto fail;
    if (c->ema_decay > 0.0f) {
        if ((r = rlhf_model_create(&p->ema, &p->policy->cfg, 0)) != RLHF_OK) {
            r = rlhf__ppo_fail(err, r, "cannot create the EMA model");
            goto fail;
        }
        memcpy(p->ema->param_mem, p->policy->param_mem, p->policy->num_params * sizeof(float));
    }

    /* memory now, not in the middle of an iteration: the policy for minibatches and PPO-ptx rows, the
       critic for minibatches; the reference's log-prob pass keeps its logits in its training buffers */
    rows = p->MB > p->ptx_rows ? p->MB : p->ptx_rows;
    if (!p->use_critic) p->critic = NULL; /* GRPO and RLOO neither read nor train one */
    if (c->recompute) {
        rlhf_model_set_recompute(p->policy, 1);
        if (p->critic) rlhf_model_set_recompute(p->critic, 1);
        if (p->ref) rlhf_model_set_recompute(p->ref, 1);
    }
    if ((r = rlhf_model_reserve(p->policy, rows, p->max_prompt + p->max_new, 1)) != RLHF_OK ||
        (p->ptx_rows && (r = rlhf_model_reserve(p->policy, p->ptx_rows, p->ptxT, 1)) != RLHF_OK) ||
        (p->critic && (r = rlhf_model_reserve(p->critic, p->MB, p->max_prompt + p->max_new, 1)) != RLHF_OK) ||
        (p->ref && (r = rlhf__ensure(p->ref, p->MB, p->max_prompt + p->max_new, 0)) != RLHF_OK)) {
        r = rlhf__ppo_fail(err, r, "cannot reserve training memory for minibatches of %d x %d tokens", rows,
                           p->max_prompt + p->max_new);
        goto fail;
    }
    /* PPO is a new stage: AdamW starts afresh for both (rlhf_ppo_load restores a run's state) */
    rlhf__fresh_optimizer(p->policy);
    if (p->critic) rlhf__fresh_optimizer(p->critic);
    p->run.err = NULL;
    *out = p;
    return RLHF_OK;
fail:
    p->run.err = NULL;
    rlhf_ppo_free(p);
    return r;
}

/* the EMA of the policy (what InstructGPT evaluates), and beta as the controller has set it */
RLHFDEF const rlhf_model *rlhf_ppo_ema(const rlhf_ppo *p) { return p ? p->ema : NULL; }
RLHFDEF float rlhf_ppo_kl_coef(const rlhf_ppo *p) { return p ? p->kl_coef : 0.0f; }

/* ---- one iteration, phase by phase -------------------------------------------- */

/* Episodes rows[0..n) of the rollout into the minibatch scratch: inputs,
   document starts (the left padding), and targets: response token t at
   position Pmax + t, predicted at Pmax - 1 + t. */
static void rlhf__ppo_fill(rlhf_ppo *p, const size_t *rows, int n) {
    const rlhf__rollout *ro = &p->ro;
    int j, t, T = ro->T;

    /* the rows as sampled; targets only at the response (the prompt and padding are not learned) */
    for (j = 0; j < n; j++) {
        int b = (int)rows[j];
        int *tg = p->mb_tg + (ptrdiff_t)j * T;
        memcpy(p->mb_in + (ptrdiff_t)j * T, ro->seq + (ptrdiff_t)b * T, (size_t)T * sizeof(int));
        for (t = 0; t < T; t++) tg[t] = -1;
        for (t = 0; t < ro->rlen[b]; t++) p->mb_tg[rlhf__pred_at(p, j, t)] = ro->seq[rlhf__pred_at(p, b, t) + 1];
    }

    /* position ids and attention start after each row's left padding, as at sampling */
    for (j = 0; j < n; j++) rlhf_doc_left_pad(p->mb_doc + (ptrdiff_t)j * T, &ro->n_pad[(int)rows[j]], 1, T);
}

/* The prompts of this iteration, in the data order, into prompt_buf (rows
   of ctx); P_b and Pmax. A prompt longer than max_prompt is cut from the
   left by the long-record rule (its last turns and <|assistant|>, where the
   reply begins, survive; counted once at creation). GRPO and RLOO: each
   prompt G times in a row (a group). */
static rlhf_result rlhf__ppo_prompts(rlhf_ppo *p, int *prompt_buf, int ctx) {
    rlhf__rollout *ro = &p->ro;
    size_t n;
    int b;
    rlhf_result r;
    for (b = 0, ro->Pmax = 1; b < p->B; b++) {
        const rlhf_record *rec;
        int *dst = prompt_buf + (size_t)b * (size_t)ctx;
        if (b % p->G != 0) { /* the group's prompt again */
            memcpy(dst, dst - ctx, (size_t)ro->plen[b - 1] * sizeof(int));
            ro->plen[b] = ro->plen[b - 1];
            continue;
        }
        if (p->data_pos >= rlhf_dataset_size(p->prompts)) { /* the prompts used up: a new epoch, a new order */
            p->data_epoch++;
            p->data_pos = 0;
            rlhf__ppo_order(p);
        }
        rec = rlhf_dataset_record(p->prompts, p->order[p->data_pos++]);

        /* the chat template up to <|assistant|>, cut from the left to max_prompt */
        r = rlhf__prompt_fit(p->tok, rec, (size_t)p->max_prompt, &p->fitb, dst, &n, NULL);
        if (r != RLHF_OK) return rlhf__run_fail(&p->run, r, "prompt at line %zu: %s", rec->line, rlhf_result_string(r));
        ro->plen[b] = (int)n;
        if ((int)n > ro->Pmax) ro->Pmax = (int)n;
    }
    return RLHF_OK;
}

/* Sample the responses token by token with the KV cache, all B at once;
   an episode stops at <|end|> or after max_new tokens. seq has rows of
   stride S = Pmax + max_new here; step_tok holds B tokens. */
static rlhf_result rlhf__ppo_sample(rlhf_ppo *p, int *step_tok, double *tokens) {
    rlhf__rollout *ro = &p->ro;
    int V = p->policy->cfg.vocab_size, S = ro->Pmax + p->max_new, b, t, all_done;
    rlhf_result r;
    for (t = 0; t < p->max_new; t++) {
        /* token t of every live episode from the logits of the last step; a finished one is fed padding */
        for (b = 0, all_done = 1; b < p->B; b++) {
            int tok = p->pad;
            if (!ro->has_eos[b] && ro->rlen[b] == t) {
                tok = rlhf_sampler_sample(p->sampler, p->step_logits + (ptrdiff_t)b * V, &p->rng);
                if (tok < 0)
                    return rlhf__run_fail(&p->run, RLHF_ERR_NON_FINITE,
                                          "episode %d step %d: the policy's logits are all NaN or -inf", b, t);
                ro->seq[(ptrdiff_t)b * S + ro->Pmax + t] = tok;
                ro->rlen[b]++;
                *tokens += 1.0;
                if (tok == p->stop) ro->has_eos[b] = 1;
                else all_done = 0;
            }
            step_tok[b] = ro->has_eos[b] ? p->pad : tok;
        }

        /* every episode finished, or the limit: no logits are needed for a next token */
        if (all_done || t + 1 == p->max_new) break;
        if ((r = rlhf_model_decode(p->policy, p->cache, step_tok, p->step_logits)) != RLHF_OK)
            return rlhf__run_fail(&p->run, r, "decode: %s", rlhf_model_last_error(p->policy));
    }
    return RLHF_OK;
}

/* 1. rollout: y ~ pi_RL(. | x) for B prompts x; the rows end as (B, T) */
static rlhf_result rlhf__ppo_rollout(rlhf_ppo *p, double *tokens) {
    rlhf__rollout *ro = &p->ro;
    int ctx = p->max_prompt + p->max_new, *prompt_buf = ro->has_eos + p->B, b, k, S;
    rlhf_result r;
    if ((r = rlhf__ppo_prompts(p, prompt_buf, ctx)) != RLHF_OK) return r;

    /* left-pad to Pmax (rows of stride S = Pmax + max_new): every prompt ends at Pmax - 1 */
    S = ro->Pmax + p->max_new;
    for (b = 0; b < p->B; b++) {
        int *dst = ro->seq + (size_t)b * (size_t)S;
        ro->n_pad[b] = ro->Pmax - ro->plen[b];
        for (k = 0; k < ro->n_pad[b]; k++) dst[k] = p->pad;
        memcpy(dst + ro->n_pad[b], prompt_buf + (size_t)b * (size_t)ctx, (size_t)ro->plen[b] * sizeof(int));
        ro->rlen[b] = 0;
        ro->has_eos[b] = 0;
    }

    /* prefill reads rows of stride Pmax: compact them into prompt_buf; then sample */
    for (b = 0; b < p->B; b++)
        memcpy(prompt_buf + (ptrdiff_t)b * ro->Pmax, ro->seq + (ptrdiff_t)b * S, (size_t)ro->Pmax * sizeof(int));
    rlhf_kv_cache_reset(p->cache);
    if ((r = rlhf_model_prefill_padded(p->policy, p->cache, prompt_buf, ro->n_pad, ro->Pmax, p->step_logits)) !=
        RLHF_OK)
        return rlhf__run_fail(&p->run, r, "prefill: %s", rlhf_model_last_error(p->policy));
    if ((r = rlhf__ppo_sample(p, prompt_buf, tokens)) != RLHF_OK) return r;

    /* the batch as (B, T), T = Pmax + Nmax: rows of stride S -> stride T, in place (T <= S), right-padded */
    for (b = 0, ro->Nmax = 1; b < p->B; b++) ro->Nmax = ro->rlen[b] > ro->Nmax ? ro->rlen[b] : ro->Nmax;
    ro->T = ro->Pmax + ro->Nmax;
    for (b = 0; b < p->B; b++) {
        memmove(ro->seq + (ptrdiff_t)b * ro->T, ro->seq + (ptrdiff_t)b * S,
                (size_t)(ro->Pmax + ro->rlen[b]) * sizeof(int));
        for (k = ro->Pmax + ro->rlen[b]; k < ro->T; k++) ro->seq[(ptrdiff_t)b * ro->T + k] = p->pad;
    }
    return RLHF_OK;
}

/* out[(B, max_new)] of episodes b0.. from a minibatch's per-position values */
static void rlhf__ppo_gather(rlhf_ppo *p, int b0, int n, const float *mb, float *out) {
    /* mb is (n, T) with one value per position; out keeps only the positions that predict response tokens */
    int j, t;
    for (j = 0; j < n; j++)
        for (t = 0; t < p->ro.rlen[b0 + j]; t++) out[rlhf__tok(p, b0 + j, t)] = mb[rlhf__pred_at(p, j, t)];
}

/* r_theta(x, y) of episodes b0..b0+n (in the minibatch scratch): the reward
   model at the response's last token, or the score function */
static rlhf_result rlhf__ppo_score(rlhf_ppo *p, int b0, int n) {
    rlhf__rollout *ro = &p->ro;
    int len[1024], j, T = ro->T;
    rlhf_result r;

    /* a score function sees the prompt and the response as token ids, without padding */
    if (!p->rm) {
        for (j = 0; j < n; j++) {
            const int *row = ro->seq + (ptrdiff_t)(b0 + j) * T;
            ro->score[b0 + j] = p->cfg.score_fn(p->cfg.score_user, row + ro->n_pad[b0 + j], ro->plen[b0 + j],
                                                row + ro->Pmax, ro->rlen[b0 + j]);
        }
        return RLHF_OK;
    }

    /* the reward model reads the minibatch rows as they are (left padding and all), its length per row */
    for (j = 0; j < n; j++) {
        int *row = p->mb_in + (ptrdiff_t)j * T;
        len[j] = ro->plen[b0 + j] + ro->rlen[b0 + j];
        /* a reply cut by the limit is scored at an <|end|>, as the reward
           model was trained and normalised (appended, or over its last token) */
        if (!ro->has_eos[b0 + j]) {
            if (ro->Pmax + ro->rlen[b0 + j] < T) len[j]++;
            row[ro->n_pad[b0 + j] + len[j] - 1] = p->stop;
        }
    }
    if ((r = rlhf_reward_score_ids(p->rm, p->mb_in, ro->n_pad + b0, len, n, T, ro->score + b0)) != RLHF_OK)
        return rlhf__run_fail(&p->run, r, "reward model: %s", rlhf_model_last_error(p->rm));
    return RLHF_OK;
}

/* 2. evaluate: log pi_old and log pi_ref of every response token, V_t, and
   the score r_theta(x, y); minibatch by minibatch */
static rlhf_result rlhf__ppo_evaluate(rlhf_ppo *p) {
    rlhf__rollout *ro = &p->ro;
    int B = p->B, T = ro->T, j, b;
    float temp = p->cfg.sampling.temperature;
    size_t rows[1024];
    rlhf_result r;
    for (b = 0; b < B; b += p->MB) {
        int n = B - b < p->MB ? B - b : p->MB;

        /* log pi_old and log pi_ref of the sampled tokens, at the sampling temperature
           ("N implementation details", item 8); pi_old is the policy before this iteration's updates */
        for (j = 0; j < n; j++) rows[j] = (size_t)(b + j);
        rlhf__ppo_fill(p, rows, n);
        r = rlhf_model_logprobs(p->policy, p->mb_in, p->mb_tg, p->mb_doc, n, T, temp, p->mb_out, NULL, 0);
        if (r != RLHF_OK) return rlhf__run_fail(&p->run, r, "policy log-probs: %s", rlhf_model_last_error(p->policy));
        rlhf__ppo_gather(p, b, n, p->mb_out, ro->logp);
        if (p->ref) { /* without one (beta 0) log pi_ref = log pi_old: every KL_t is 0 */
            r = rlhf_model_logprobs(p->ref, p->mb_in, p->mb_tg, p->mb_doc, n, T, temp, p->mb_out, NULL, 0);
            if (r != RLHF_OK)
                return rlhf__run_fail(&p->run, r, "reference log-probs: %s", rlhf_model_last_error(p->ref));
        }
        rlhf__ppo_gather(p, b, n, p->mb_out, ro->ref_logp);

        /* V(s_t): the critic's value at the position that emits token t (0 without a critic) */
        if (p->critic &&
            (r = rlhf_model_forward_values(p->critic, p->mb_in, p->mb_doc, n, T, p->mb_ent, 0)) != RLHF_OK)
            return rlhf__run_fail(&p->run, r, "critic values: %s", rlhf_model_last_error(p->critic));
        if (!p->critic) memset(p->mb_ent, 0, (size_t)n * (size_t)T * sizeof(float));
        rlhf__ppo_gather(p, b, n, p->mb_ent, ro->values);

        /* the score; "N implementation details", item 10: no stop token, a fixed penalty instead */
        if ((r = rlhf__ppo_score(p, b, n)) != RLHF_OK) return r;
        for (j = 0; j < n; j++)
            if (p->cfg.penalize_missing_eos && !ro->has_eos[b + j]) ro->score[b + j] = p->cfg.missing_eos_penalty;
    }
    for (b = 0, j = 0; b < B; b++) j += !isfinite(ro->score[b]);
    if (j)
        rlhf__run_log(&p->run, RLHF_LOG_WARN,
                      "iteration %ld: %d of %d replies scored NaN or inf (a reward model or score function failed): "
                      "they are left out (advantage 0)",
                      p->iteration + 1, j, B);
    return RLHF_OK;
}

/* mean and std (unbiased, as torch.var; + 1e-8 under the root) of x over
   every response token of the rollout, n of them */
static void rlhf__ppo_moments(const rlhf_ppo *p, const float *x, size_t n, double *mean, double *sd) {
    double sum = 0.0, sumsq = 0.0;
    int b, t;
    /* two passes (the mean first), in double: the tokens of a rollout are few, and this is exact enough
       to give the same whitening on every build */
    for (b = 0; b < p->B; b++)
        for (t = 0; t < p->ro.rlen[b]; t++) sum += x[rlhf__tok(p, b, t)];
    *mean = sum / (double)n;
    for (b = 0; b < p->B; b++)
        for (t = 0; t < p->ro.rlen[b]; t++) sumsq += (x[rlhf__tok(p, b, t)] - *mean) * (x[rlhf__tok(p, b, t)] - *mean);
    *sd = sqrt((n > 1 ? sumsq / (double)(n - 1) : 0.0) + 1e-8);
}

/* A_i of one group's G rewards r (its first at b0), over its finite ones:
   a reply whose score is not finite (a failed reward model or score
   function) gets A_i = 0 and does not count in the others' baseline. Adds
   the group's std (Bessel) to *std_sum (and 1 to *n_groups_std), and 1 to
   *zero when every finite reward is the same or fewer than two are finite. */
static void rlhf__group_adv(const rlhf_ppo *p, const float *r, int G, float *adv, double *std_sum, int *zero,
                            int *n_groups_std) {
    float fin[1024], a[1024];
    double sum = 0.0, v = 0.0, m;
    int i, k = 0;
    rlhf_advantage_type type = p->cfg.estimator == RLHF_EST_RLOO             ? RLHF_ADV_RLOO
                               : p->cfg.scale_rewards == RLHF_SCALE_GROUP ? RLHF_ADV_GRPO
                                                                            : RLHF_ADV_DR_GRPO;
    for (i = 0; i < G; i++)
        if (isfinite(r[i])) fin[k++] = r[i], sum += r[i];
    for (i = 0; i < G; i++) adv[i] = 0.0f;
    if (k < 2) { /* nothing to compare with: no advantage */
        (*zero)++;
        return;
    }
    rlhf_group_advantages(fin, 1, k, type, a);
    m = sum / k; /* exact for equal rewards, so their deviations are exactly 0 */
    for (i = 0; i < k; i++) v += (fin[i] - m) * (fin[i] - m);
    *std_sum += sqrt(v / (k - 1));
    (*n_groups_std)++;
    *zero += v == 0.0;
    for (i = 0, k = 0; i < G; i++)
        if (isfinite(r[i])) adv[i] = a[k++];
}

/* 3 (GRPO, RLOO). One reward per reply, r_i, and its advantage against
   the others of its group (rlhf_group_advantages), the same for each of its
   tokens (>>grpo):
     GRPO  r_i = score_i              (beta x k3_t is a term of the loss)
     RLOO  r_i = score_i - beta sum_t KL_t
   scale_rewards BATCH divides r_i - mean_g by the std of the whole batch
   instead of the group's. Returns the number of response tokens. */
static size_t rlhf__ppo_group_advantages(rlhf_ppo *p) {
    rlhf__rollout *ro = &p->ro;
    float seq_r[1024], adv[1024];
    double sum = 0.0, ss = 0.0, std_sum = 0.0;
    size_t n = 0, o;
    int b, t, g, G = p->G, rloo = p->cfg.estimator == RLHF_EST_RLOO, zero = 0, n_std = 0, n_fin = 0;

    /* r_i; KL_t by RLOO's estimator, GRPO's k3 (rlhf_ppo_rewards: -beta KL_t on each token, the score on the last) */
    memset(seq_r, 0, sizeof seq_r);
    for (b = 0; b < p->B; b++) {
        double r = 0.0;
        o = rlhf__tok(p, b, 0);
        rlhf_ppo_rewards(ro->logp + o, ro->ref_logp + o, ro->rlen[b], ro->score[b], rloo ? p->kl_coef : 0.0f,
                         rloo ? p->cfg.kl_estimator : RLHF_KL_K3, ro->rewards + o, ro->kl + o);
        for (t = 0; t < ro->rlen[b]; t++) r += ro->rewards[o + (size_t)t];
        seq_r[b] = rloo ? (float)r : ro->score[b];
        n += (size_t)ro->rlen[b];
    }

    /* A_i group by group; GROUP is the paper's, NONE Dr. GRPO's r - mean_g, which BATCH then divides */
    for (g = 0; g < p->B / G; g++) rlhf__group_adv(p, seq_r + g * G, G, adv + g * G, &std_sum, &zero, &n_std);
    for (b = 0; b < p->B; b++)
        if (isfinite(seq_r[b])) sum += seq_r[b], n_fin++;
    for (b = 0; b < p->B; b++)
        if (isfinite(seq_r[b])) ss += (seq_r[b] - sum / n_fin) * (seq_r[b] - sum / n_fin);
    if (!rloo && p->cfg.scale_rewards == RLHF_SCALE_BATCH && n_fin > 1)
        for (b = 0; b < p->B; b++) adv[b] = (float)(adv[b] / (sqrt(ss / (n_fin - 1)) + 1e-4));

    /* TRL's reward_std (the mean of the groups' stds) and frac_reward_zero_std (groups that teach nothing) */
    p->reward_std = n_std ? (float)(std_sum / n_std) : NAN;
    p->frac_zero_std = (float)zero / (float)(p->B / G);

    /* every token of reply i gets A_i (no critic: R_t = A_t, V_t = 0) */
    for (b = 0; b < p->B; b++)
        for (t = 0; t < ro->rlen[b]; t++) {
            o = rlhf__tok(p, b, t);
            ro->adv[o] = ro->adv_white[o] = ro->ret[o] = adv[b];
        }
    return n;
}

/* 3. advantages: r_t from KL_t and the score, optionally whitened; A_t and
   R_t by GAE; A_t whitened over the rollout for the policy's loss.
   Returns the number of response tokens. */
static size_t rlhf__ppo_advantages(rlhf_ppo *p) {
    rlhf__rollout *ro = &p->ro;
    size_t n = 0, o;
    double mean, sd;
    int b, t;
    if (!p->use_critic) return rlhf__ppo_group_advantages(p);

    /* r_t per episode: -beta KL_t on every token, the score added on the last (0 when it is not finite:
       that episode's advantages are set to 0 below, and its returns to V_t: it teaches nothing) */
    for (b = 0; b < p->B; b++) {
        o = rlhf__tok(p, b, 0);
        rlhf_ppo_rewards(ro->logp + o, ro->ref_logp + o, ro->rlen[b], isfinite(ro->score[b]) ? ro->score[b] : 0.0f,
                         p->kl_coef, p->cfg.kl_estimator, ro->rewards + o, ro->kl + o);
        n += (size_t)ro->rlen[b];
    }

    /* whitened rewards keep their mean ("N details", item 14; TRL's masked_whiten(shift_mean=False)):
         r_t <- (r_t - mean) / sqrt(var + 1e-8) + mean */
    if (p->cfg.whiten_rewards) {
        rlhf__ppo_moments(p, ro->rewards, n, &mean, &sd);
        for (b = 0; b < p->B; b++)
            for (t = 0; t < ro->rlen[b]; t++) {
                float *x = &ro->rewards[rlhf__tok(p, b, t)];
                *x = (float)((*x - mean) / sd + mean);
            }
    }

    /* GAE per episode, then A_t whitened over the rollout (TRL's masked_whiten): (A_t - mean) / sqrt(var + 1e-8) */
    for (b = 0; b < p->B; b++) {
        o = rlhf__tok(p, b, 0);
        rlhf_gae(ro->rewards + o, ro->values + o, ro->rlen[b], p->cfg.gamma, p->cfg.lam, ro->adv + o, ro->ret + o);
        for (t = 0; t < ro->rlen[b] && !isfinite(ro->score[b]); t++) ro->adv[o + (size_t)t] = 0.0f,
            ro->ret[o + (size_t)t] = ro->values[o + (size_t)t];
    }
    rlhf__ppo_moments(p, ro->adv, n, &mean, &sd);
    for (b = 0; b < p->B; b++)
        for (t = 0; t < ro->rlen[b]; t++) {
            o = rlhf__tok(p, b, t);
            ro->adv_white[o] = isfinite(ro->score[b]) ? (float)((ro->adv[o] - mean) / sd) : 0.0f;
        }
    return n;
}

/* What the learn phase sums over its minibatches. */
typedef struct rlhf__learn_sums {
    double policy_loss, value_loss, approxkl, clipfrac, value_clipfrac; /* over the minibatches learned from */
    double entropy, ratio;                                              /* over all minibatches */
    double ptx_loss;
    long n_ptx;
    size_t n_mb, n_kept;
} rlhf__learn_sums;

/* 4a. The policy's log-probs and entropy on a minibatch, its response
   tokens compacted into p->tk; returns the number of tokens, *mean_ratio
   the mean of pi / pi_old over them. */
static rlhf_result rlhf__ppo_policy_forward(rlhf_ppo *p, const size_t *rows, int n, rlhf__learn_sums *sums, size_t *nt,
                                            double *mean_ratio) {
    const rlhf__rollout *ro = &p->ro;
    double ratio_sum = 0.0, ent_sum = 0.0; /* summed in double: the guard compares their mean with a threshold */
    size_t k = 0;
    int j, t;

    /* log pi (at the sampling temperature) and its entropy at every position, kept for the backward */
    rlhf_result r = rlhf_model_logprobs(p->policy, p->mb_in, p->mb_tg, p->mb_doc, n, ro->T, p->cfg.sampling.temperature,
                                        p->mb_out, p->mb_ent, 1);
    if (r != RLHF_OK) return rlhf__run_fail(&p->run, r, "minibatch log-probs: %s", rlhf_model_last_error(p->policy));

    /* the response tokens in episode order: log pi, log pi_old, whitened A_t; the ratio and entropy summed */
    for (j = 0; j < n; j++)
        for (t = 0; t < ro->rlen[rows[j]]; t++, k++) {
            size_t at = rlhf__pred_at(p, j, t), o = rlhf__tok(p, (int)rows[j], t);
            p->tk.logp[k] = p->mb_out[at];
            p->tk.old_logp[k] = ro->logp[o];
            p->tk.ref[k] = ro->ref_logp[o];
            p->tk.adv[k] = ro->adv_white[o];
            ratio_sum += exp((double)p->tk.logp[k] - p->tk.old_logp[k]);
            ent_sum += p->mb_ent[at];
        }

    /* this minibatch's means enter the iteration's policy/entropy_avg and val/ratio */
    *nt = k;
    sums->entropy += ent_sum / (double)k;
    sums->ratio += ratio_sum / (double)k;
    sums->n_mb++;
    *mean_ratio = ratio_sum / (double)k;
    return RLHF_OK;
}

/* 4b. PPO-ptx, eq. 2's gamma term: + ptx_coef x the LM loss of ptx_rows
   pretraining rows, its gradient added to the policy's. *finite = 0 when
   the loss is not finite. */
static rlhf_result rlhf__ppo_ptx(rlhf_ppo *p, int *finite, rlhf__learn_sums *sums) {
    size_t prow[1024], cnt;
    rlhf__rows rw;       /* the rows: one pretraining window each, never packed */
    int pT, q;           /* the batch's length; a row */
    float lptx;          /* the mean LM loss over the rows' targets */
    rlhf_result r;

    /* the next rows in the pretraining order, one row each */
    memset(&rw, 0, sizeof rw);
    for (q = 0; q < p->ptx_rows; q++) {
        if (p->ptx_pos >= p->ptx.n) {
            p->ptx_epoch++;
            p->ptx_pos = 0;
            rlhf__ppo_ptx_order(p);
        }
        prow[q] = p->ptx_order[p->ptx_pos++];
    }
    if (!rlhf__rows_build(&rw, &p->ptx, prow, (size_t)p->ptx_rows, p->ptxT, 0)) {
        rlhf__rows_free(&rw);
        return rlhf__run_fail(&p->run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (q = 0; q < p->ptx_rows; q++) prow[q] = (size_t)q;
    cnt = rlhf__rows_fill(&rw, &p->ptx, prow, p->ptx_rows, p->pad, p->ptx_in, p->ptx_tg,
                          p->ptx_tg + (ptrdiff_t)p->ptx_rows * p->ptxT, &pT);
    rlhf__rows_free(&rw);

    /* forward, then backward with the loss scaled by ptx_coef */
    r = rlhf__forward_entry(p->policy, p->ptx_in, p->ptx_tg, NULL, p->ptx_rows, pT, NULL, &lptx, NULL, 1, 0, "ppo-ptx");
    if (r != RLHF_OK && r != RLHF_ERR_NO_TARGETS)
        return rlhf__run_fail(&p->run, r, "PPO-ptx: %s", rlhf_model_last_error(p->policy));
    if (r != RLHF_OK || cnt == 0) return RLHF_OK;
    if (!isfinite(lptx)) {
        *finite = 0;
        return RLHF_OK;
    }
    p->policy->dloss *= p->cfg.ptx_coef; /* d(ptx_coef * L_ptx): the LM loss's upstream gradient, scaled */
    if ((r = rlhf_model_backward(p->policy)) != RLHF_OK)
        return rlhf__run_fail(&p->run, r, "PPO-ptx backward: %s", rlhf_model_last_error(p->policy));
    sums->ptx_loss += lptx;
    sums->n_ptx++;
    return RLHF_OK;
}

/* The policy's loss on a minibatch's nt tokens (in p->tk) and dL/dlog pi
   per token: PPO's clipped surrogate (token mean), or GRPO's or RLOO's
   (rlhf_grpo_loss, rlhf_rloo_loss: per reply, its advantage read at its
   first token). *approxkl = 0.5 mean (log pi - log pi_old)^2. */
static float rlhf__ppo_surrogate(rlhf_ppo *p, const size_t *rows, int n, size_t nt, float *clipfrac,
                                 float *approxkl) {
    float eps = p->cfg.cliprange, eps_hi = p->cfg.cliprange_high > 0.0f ? p->cfg.cliprange_high : eps, adv[1024], kl;
    float norm;
    double sq = 0.0;
    int lens[1024], j;
    size_t k;
    if (p->use_critic)
        return rlhf_ppo_policy_loss(p->tk.logp, p->tk.old_logp, p->tk.adv, (int)nt, eps, p->tk.dlogp, clipfrac,
                                    approxkl);
    for (j = 0, k = 0; j < n; k += (size_t)lens[j], j++) {
        lens[j] = p->ro.rlen[rows[j]];
        adv[j] = p->tk.adv[k];
    }
    for (k = 0; k < nt; k++) sq += ((double)p->tk.logp[k] - p->tk.old_logp[k]) * (p->tk.logp[k] - p->tk.old_logp[k]);
    *approxkl = (float)(0.5 * sq / (double)nt);
    if (p->cfg.estimator == RLHF_EST_RLOO)
        return rlhf_rloo_loss(p->tk.logp, p->tk.old_logp, adv, lens, n, eps, eps_hi, p->tk.dlogp, clipfrac);
    norm = p->cfg.loss_agg == RLHF_AGG_DAPO ? (float)((double)p->ro_tokens * n / p->B) : (float)p->max_new;
    return rlhf_grpo_loss(p->tk.logp, p->tk.old_logp, p->tk.ref, adv, lens, n, eps, eps_hi, p->kl_coef,
                          p->cfg.loss_agg, norm, p->tk.dlogp, clipfrac, &kl);
}

/* 4c. The policy's gradient on a minibatch (after 4a): the clipped
   surrogate (minus the entropy bonus), PPO-ptx, into the policy's
   gradients. *finite = 0 when the loss or the gradient is not finite. */
static rlhf_result rlhf__ppo_policy_grad(rlhf_ppo *p, const size_t *rows, int n, size_t nt, rlhf__learn_sums *sums,
                                         float *mb_loss, float *clipfrac, float *approxkl, int *finite) {
    rlhf__rollout *ro = &p->ro;
    float eps_hi = p->cfg.cliprange_high > 0.0f && !p->use_critic ? p->cfg.cliprange_high : p->cfg.cliprange;
    float lo = 1.0f - p->cfg.cliprange, hi = 1.0f + eps_hi; /* the clip range [1 - eps, 1 + eps_high] */
    int j, t;
    size_t k = 0;
    rlhf_result r;

    /* the surrogate over the minibatch's nt tokens, its gradient per token, clipfrac, approxkl */
    *mb_loss = rlhf__ppo_surrogate(p, rows, n, nt, clipfrac, approxkl);

    /* scatter dL/dlog pi (and the entropy bonus: L -= c * mean H) to the positions; keep ratio and clip for the trace
     */
    memset(p->mb_d, 0, (size_t)n * (size_t)ro->T * sizeof(float));
    memset(p->mb_d2, 0, (size_t)n * (size_t)ro->T * sizeof(float));
    for (j = 0; j < n; j++) {
        double lr = 0.0; /* RLOO clips the reply's ratio: its log, sum_t (log pi - log pi_old) */
        for (t = 0; t < ro->rlen[rows[j]]; t++) lr += (double)p->tk.logp[k + (size_t)t] - p->tk.old_logp[k + (size_t)t];
        for (t = 0; t < ro->rlen[rows[j]]; t++, k++) {
            size_t at = rlhf__pred_at(p, j, t), o = rlhf__tok(p, (int)rows[j], t);
            float a = p->tk.adv[k], rr, rc;
            p->mb_d[at] = p->tk.dlogp[k];
            p->mb_d2[at] = -p->cfg.entropy_coef / (float)nt;
            rr = ro->ratio[o] = expf(p->tk.logp[k] - p->tk.old_logp[k]);
            rc = rr < lo ? lo : rr > hi ? hi : rr;
            ro->clipped[o] = -a * rc > -a * rr; /* the clipped term is the larger one (as in rlhf_ppo_policy_loss) */
            if (p->cfg.estimator == RLHF_EST_RLOO) ro->clipped[o] = (a > 0.0f && lr > log(hi)) || (a < 0.0f && lr < log(lo));
        }
    }

    /* backward, PPO-ptx */
    rlhf_model_zero_grad(p->policy);
    *finite = 1;
    if (!isfinite(*mb_loss)) *finite = 0;
    else if ((r = rlhf_model_backward_logprobs(p->policy, p->mb_d, p->cfg.entropy_coef > 0.0f ? p->mb_d2 : NULL)) !=
             RLHF_OK) {
        if (r != RLHF_ERR_NON_FINITE)
            return rlhf__run_fail(&p->run, r, "policy backward: %s", rlhf_model_last_error(p->policy));
        *finite = 0;
    }
    if (*finite && p->cfg.ptx_coef > 0.0f && (r = rlhf__ppo_ptx(p, finite, sums)) != RLHF_OK) return r;
    return RLHF_OK;
}

/* 4c'. The policy's update on a minibatch: its gradient (4c), AdamW, the
   EMA. *skipped = 1 when a non-finite loss or gradient skipped the update. */
static rlhf_result rlhf__ppo_policy(rlhf_ppo *p, const size_t *rows, int n, size_t nt, const rlhf_adamw_config *opt,
                                    rlhf__learn_sums *sums, float *mb_loss, float *clipfrac, float *approxkl,
                                    int *skipped) {
    int finite;
    rlhf_result r = rlhf__ppo_policy_grad(p, rows, n, nt, sums, mb_loss, clipfrac, approxkl, &finite);
    if (r != RLHF_OK) return r;
    if (finite) {
        r = rlhf_model_adamw_update(p->policy, opt, NULL);
        if (r == RLHF_ERR_NON_FINITE) finite = 0;
        else if (r != RLHF_OK) return rlhf__run_fail(&p->run, r, "policy update: %s", rlhf_model_last_error(p->policy));
    }

    /* skipped, or the EMA of the weights (InstructGPT): ema = d ema + (1 - d) theta */
    *skipped = !finite;
    if (!finite) {
        p->skipped_updates++;
        rlhf__run_log(&p->run, RLHF_LOG_WARN,
                      "iteration %ld: non-finite policy loss or gradient: update skipped (%ld so far)",
                      p->iteration + 1, p->skipped_updates);
    } else if (p->ema) {
        size_t q, np = p->policy->num_params;
        float d = p->cfg.ema_decay;
        for (q = 0; q < np; q++) p->ema->param_mem[q] = d * p->ema->param_mem[q] + (1.0f - d) * p->policy->param_mem[q];
    }
    return RLHF_OK;
}

/* 4d. The critic's update on a minibatch: vf_coef x the clipped value loss
   against the returns R_t. */
static rlhf_result rlhf__ppo_critic(rlhf_ppo *p, const size_t *rows, int n, size_t nt, const rlhf_adamw_config *opt,
                                    int policy_skipped, float *mb_loss, float *clipfrac) {
    const rlhf__rollout *ro = &p->ro;
    size_t k = 0;
    int j, t, finite;
    rlhf_result r = rlhf_model_forward_values(p->critic, p->mb_in, p->mb_doc, n, ro->T, p->mb_out, 1);
    if (r != RLHF_OK) return rlhf__run_fail(&p->run, r, "critic forward: %s", rlhf_model_last_error(p->critic));

    /* the response tokens in episode order: V now, V_old from the rollout, and the return R_t */
    for (j = 0; j < n; j++)
        for (t = 0; t < ro->rlen[rows[j]]; t++, k++) {
            size_t o = rlhf__tok(p, (int)rows[j], t);
            p->tk.v[k] = p->mb_out[rlhf__pred_at(p, j, t)];
            p->tk.v_old[k] = ro->values[o];
            p->tk.ret[k] = ro->ret[o];
        }
    *mb_loss =
        rlhf_ppo_value_loss(p->tk.v, p->tk.v_old, p->tk.ret, (int)nt, p->cfg.cliprange_value, p->tk.dv, clipfrac);

    /* scatter vf_coef * dL/dV to the positions; backward; the update */
    memset(p->mb_d, 0, (size_t)n * (size_t)ro->T * sizeof(float));
    for (j = 0, k = 0; j < n; j++)
        for (t = 0; t < ro->rlen[rows[j]]; t++, k++) p->mb_d[rlhf__pred_at(p, j, t)] = p->cfg.vf_coef * p->tk.dv[k];
    rlhf_model_zero_grad(p->critic);
    finite = isfinite(*mb_loss);
    if (finite && (r = rlhf_model_backward_values(p->critic, p->mb_d)) != RLHF_OK) {
        if (r != RLHF_ERR_NON_FINITE)
            return rlhf__run_fail(&p->run, r, "critic backward: %s", rlhf_model_last_error(p->critic));
        finite = 0;
    }
    if (finite) {
        r = rlhf_model_adamw_update(p->critic, opt, NULL);
        if (r == RLHF_ERR_NON_FINITE) finite = 0;
        else if (r != RLHF_OK) return rlhf__run_fail(&p->run, r, "critic update: %s", rlhf_model_last_error(p->critic));
    }
    if (!finite) {
        p->skipped_updates += !policy_skipped; /* a minibatch counts once */
        rlhf__run_log(&p->run, RLHF_LOG_WARN, "iteration %ld: non-finite value loss or gradient: critic update skipped",
                      p->iteration + 1);
    }
    return RLHF_OK;
}

/* 4. learn: ppo_epochs passes over the rollout in shuffled minibatches; on
   each, the policy (4a-4c) and the critic (4d). TRL's guard: a minibatch
   whose mean ratio pi / pi_old exceeds ratio_threshold is skipped. */
static rlhf_result rlhf__ppo_learn(rlhf_ppo *p, rlhf_ppo_stats *st) {
    rlhf_adamw_config popt = p->cfg.policy_opt, copt = p->cfg.critic_opt; /* the policy's and critic's AdamW */
    rlhf__learn_sums s;
    size_t perm[1024], nt = 0;
    int e, b0, j;
    rlhf_result r;
    memset(&s, 0, sizeof s);

    /* the learning rates of this iteration */
    if (p->cfg.total_iterations > 0) { /* lr * (1 - iteration / total), iteration counted from 0 */
        double f = 1.0 - (double)p->iteration / (double)p->cfg.total_iterations;
        f = f < 0.0 ? 0.0 : f;
        popt.lr = (float)(popt.lr * f);
        copt.lr = (float)(copt.lr * f);
    }
    st->lr = popt.lr;

    /* each epoch a new permutation of the episodes from the run's generator, cut into minibatches */
    for (j = 0; j < p->B; j++) perm[j] = (size_t)j;
    for (e = 0; e < p->cfg.ppo_epochs; e++) {
        rlhf__shuffle(perm, (size_t)p->B, &p->rng);
        for (b0 = 0; b0 < p->B; b0 += p->MB) {
            int n = p->B - b0 < p->MB ? p->B - b0 : p->MB, skipped = 0;
            float pl = 0.0f, vl = 0.0f, cf = 0.0f, akl = 0.0f, vcf = 0.0f;
            double mean_ratio = 0.0;
            /* 4a: pi on this minibatch; the guard; 4b-4c: the policy's update; 4d: the critic's */
            rlhf__ppo_fill(p, perm + b0, n);
            if ((r = rlhf__ppo_policy_forward(p, perm + b0, n, &s, &nt, &mean_ratio)) != RLHF_OK) return r;
            if (!(mean_ratio <= p->cfg.ratio_threshold)) {
                p->skipped_minibatches++;
                rlhf__run_log(&p->run, RLHF_LOG_WARN,
                              "iteration %ld: minibatch mean ratio %.3g > %g: skipped (%ld so far)", p->iteration + 1,
                              mean_ratio, (double)p->cfg.ratio_threshold, p->skipped_minibatches);
                p->policy->backward_ready = 0;
                continue;
            }
            if ((r = rlhf__ppo_policy(p, perm + b0, n, nt, &popt, &s, &pl, &cf, &akl, &skipped)) != RLHF_OK) return r;
            if (p->critic && (r = rlhf__ppo_critic(p, perm + b0, n, nt, &copt, skipped, &vl, &vcf)) != RLHF_OK)
                return r;
            s.policy_loss += pl; s.value_loss += vl; s.approxkl += akl; s.clipfrac += cf; s.value_clipfrac += vcf;
            s.n_kept++;
        }
    }

    /* losses over the minibatches that were learned from; entropy and ratio over all; NaN when
       the guard skipped every minibatch (nothing was learned this iteration) */
    st->policy_loss = st->value_loss = st->approxkl = st->clipfrac = st->value_clipfrac = NAN;
    if (s.n_kept) {
        st->policy_loss = (float)(s.policy_loss / (double)s.n_kept);
        st->value_loss = (float)(s.value_loss / (double)s.n_kept);
        st->approxkl = (float)(s.approxkl / (double)s.n_kept); st->clipfrac = (float)(s.clipfrac / (double)s.n_kept);
        st->value_clipfrac = (float)(s.value_clipfrac / (double)s.n_kept);
    }
    if (s.n_mb) {
        st->policy_entropy = (float)(s.entropy / (double)s.n_mb);
        st->ratio = (float)(s.ratio / (double)s.n_mb);
    }
    st->ptx_loss = s.n_ptx ? (float)(s.ptx_loss / (double)s.n_ptx) : NAN;
    if (!p->critic) st->value_loss = st->value_clipfrac = NAN; /* GRPO, RLOO: no critic */
    return RLHF_OK;
}

/* 5. statistics of the rollout (TRL's objective/... and val/... metrics), n_tok response tokens */
static void rlhf__ppo_statistics(rlhf_ppo *p, size_t n_tok, rlhf_ppo_stats *st) {
    /* all of them from the rollout as sampled and evaluated (before this iteration's updates) */
    const rlhf__rollout *ro = &p->ro;
    double sum_kl = 0.0, sumsq_kl = 0.0, kl_se, sum_score = 0.0, sum_nlp = 0.0, n_len = 0.0, vr = 0.0, vm = 0.0,
           er = 0.0, em = 0.0;
    double nt = (double)n_tok, var_r, var_e;
    int b, t, n_score = 0;

    /* per episode: sum_t KL_t, -sum_t log pi_old (the sampled sequence's entropy estimate), its
       score and length; per token: sums for the variance of R_t and of R_t - V_t */
    for (b = 0; b < p->B; b++) {
        double skl = 0.0, snlp = 0.0;
        for (t = 0; t < ro->rlen[b]; t++) {
            size_t o = rlhf__tok(p, b, t);
            skl += ro->kl[o];
            snlp -= ro->logp[o];
            vr += (double)ro->ret[o];
            vm += (double)ro->ret[o] * ro->ret[o];
            er += (double)ro->ret[o] - ro->values[o];
            em += ((double)ro->ret[o] - ro->values[o]) * ((double)ro->ret[o] - ro->values[o]);
        }
        sum_kl += skl;
        sumsq_kl += skl * skl;
        sum_nlp += snlp;
        if (isfinite(ro->score[b])) sum_score += ro->score[b], n_score++;
        else st->nonfinite_scores++;
        n_len += ro->rlen[b];
        st->num_eos += ro->has_eos[b];
    }

    /* the means over episodes, as TRL reports them */
    st->iteration = p->iteration;
    st->score = n_score ? (float)(sum_score / n_score) : NAN; /* over the replies with a finite score */
    st->kl = (float)(sum_kl / p->B);
    st->rlhf_reward = n_score ? (float)(sum_score / n_score - (double)p->kl_coef * sum_kl / p->B) : NAN;
    st->entropy = (float)(sum_nlp / p->B);
    st->response_length = (float)(n_len / p->B);

    /* explained variance, 1 - Var(R - V) / Var(R), over the rollout's tokens */
    var_r = vm / nt - (vr / nt) * (vr / nt);
    var_e = em / nt - (er / nt) * (er / nt);
    st->var_explained = var_r > 0.0 && p->critic ? (float)(1.0 - var_e / var_r) : NAN;
    st->reward_std = p->critic ? NAN : p->reward_std;
    st->frac_reward_zero_std = p->critic ? NAN : p->frac_zero_std;
    st->skipped_updates = p->skipped_updates;
    st->skipped_minibatches = p->skipped_minibatches;

    /* most replies cut by the length limit: they all score the same, and PPO learns next to nothing */
    st->missing_eos = (float)(p->B - st->num_eos) / (float)p->B;
    if (2 * st->num_eos < p->B)
        rlhf__run_log(&p->run, RLHF_LOG_WARN,
                      "iteration %ld: %d of %d replies ended without <|end|>%s: raise max_new_tokens (--max-new), or "
                      "check that the SFT model learned to end its replies",
                      p->iteration, p->B - st->num_eos, p->B,
                      p->cfg.penalize_missing_eos ? " and all scored the missing-EOS penalty" : "");

    /* the standard error of the mean KL: a negative mean within noise is no alarm */
    kl_se = p->B > 1 ? sqrt(fmax(sumsq_kl / p->B - (sum_kl / p->B) * (sum_kl / p->B), 0.0) / (p->B - 1)) : 0.0;
    if (st->kl < 0.0f && -st->kl > 2.0 * kl_se)
        rlhf__run_log(&p->run, RLHF_LOG_WARN,
                      "iteration %ld: mean KL is negative (%.4g): the sampler and the log-prob pass disagree "
                      "(top-k/top-p at rollout, "
                      "or a bad reward model drives the policy off the reference)",
                      p->iteration, (double)st->kl);
}

/* 7. metrics: one JSON line under TRL's names, a log line, a few samples */
static void rlhf__ppo_metrics(rlhf_ppo *p, const rlhf_ppo_stats *st) {
    const struct { const char *key; double value; } m[] = {
        {"objective/kl", st->kl}, {"objective/entropy", st->entropy},
        {"objective/non_score_reward", -(double)st->kl_coef * st->kl}, {"objective/rlhf_reward", st->rlhf_reward},
        {"objective/scores", st->score}, {"objective/kl_coef", st->kl_coef}, {"lr", st->lr},
        {"policy/approxkl_avg", st->approxkl}, {"policy/clipfrac_avg", st->clipfrac},
        {"policy/entropy_avg", st->policy_entropy}, {"loss/policy_avg", st->policy_loss},
        {"loss/value_avg", st->value_loss}, {"loss/ptx", st->ptx_loss}, {"val/clipfrac_avg", st->value_clipfrac},
        {"val/ratio", st->ratio}, {"val/num_eos_tokens", (double)st->num_eos},
        {"val/missing_eos_frac", st->missing_eos}, {"val/var_explained", st->var_explained},
        {"val/nonfinite_scores", (double)st->nonfinite_scores},
        {"val/response_length", st->response_length}, {"ppo/skipped_updates", (double)st->skipped_updates},
        {"ppo/skipped_minibatches", (double)st->skipped_minibatches}, {"time/generate_s", st->seconds_generate},
        {"time/score_s", st->seconds_score}, {"time/learn_s", st->seconds_learn},
        {"tokens_per_s/generate", st->seconds_generate > 0 ? st->tokens_generated / st->seconds_generate : NAN}};
    /* GRPO and RLOO add TRL's GRPOTrainer names (kl: the mean per token at the rollout) */
    const struct { const char *key; double value; } g[] = {
        {"reward", st->score}, {"reward_std", st->reward_std}, {"frac_reward_zero_std", st->frac_reward_zero_std},
        {"kl", st->response_length > 0 ? st->kl / st->response_length : NAN}, {"entropy", st->policy_entropy},
        {"clip_ratio/region_mean", st->clipfrac}, {"completions/mean_length", st->response_length},
        {"completions/clipped_ratio", st->missing_eos}};
    const rlhf__rollout *ro = &p->ro;
    size_t i;
    int b, t;

    /* the metric line: episodes seen so far, then each key of the tables with its value */
    rlhf__metric_begin(&p->run, p->iteration);
    rlhf__metric(&p->run, "episode", (double)p->iteration * p->B);
    for (i = 0; i < sizeof m / sizeof m[0]; i++) rlhf__metric(&p->run, m[i].key, m[i].value);
    for (i = 0; i < sizeof g / sizeof g[0] && !p->critic; i++) rlhf__metric(&p->run, g[i].key, g[i].value);
    rlhf__metric_end(&p->run);

    /* the log: one line of the iteration's main numbers, then log_samples responses decoded */
    rlhf__run_log(&p->run, RLHF_LOG_INFO,
                  "iteration %ld: score %.3f kl %.3f beta %.4g rlhf_reward %.3f eos %d/%d policy_loss %.4f %s %.4f",
                  p->iteration, (double)st->score, (double)st->kl, (double)st->kl_coef, (double)st->rlhf_reward,
                  st->num_eos, p->B, (double)st->policy_loss, p->critic ? "value_loss" : "zero_std_groups",
                  (double)(p->critic ? st->value_loss : st->frac_reward_zero_std));
    for (b = 0; b < p->cfg.log_samples && b < p->B && p->topt.log; b++) { /* a few samples with their score and KL */
        char text[512];
        size_t nb = 0;
        double skl = 0.0;
        for (t = 0; t < ro->rlen[b]; t++) skl += ro->kl[rlhf__tok(p, b, t)];
        if (rlhf_tokenizer_decode(p->tok, ro->seq + rlhf__pred_at(p, b, 0) + 1, (size_t)ro->rlen[b], text,
                                  sizeof text - 1, &nb) != RLHF_OK)
            nb = nb < sizeof text - 1 ? nb : sizeof text - 1;
        text[nb < sizeof text - 1 ? nb : sizeof text - 1] = 0;
        rlhf__run_log(&p->run, RLHF_LOG_INFO, "sample %d: score %.3f kl %.3f: %s", b, (double)ro->score[b], skl, text);
    }
}

RLHFDEF rlhf_result rlhf_ppo_step(rlhf_ppo *p, rlhf_ppo_stats *stats, rlhf_error *err) {
    rlhf_ppo_stats st;
    rlhf_result r;
    double t0, t1, t2, t3;
    size_t n_tok;
    if (!p) return RLHF_ERR_INVALID_ARGUMENT;
    memset(&st, 0, sizeof st);
    p->run.err = err; /* the run helpers write this call's error here */
    if (err) err->message[0] = 0;
    st.kl_coef = p->kl_coef; /* the beta this iteration's rewards use */

    /* 1-4: rollout, evaluate, advantages, learn */
    t0 = rlhf__seconds(); /* t0..t1 sampling, t1..t2 scoring and advantages, t2..t3 learning */
    if ((r = rlhf__ppo_rollout(p, &st.tokens_generated)) != RLHF_OK) goto done;
    t1 = rlhf__seconds();
    if ((r = rlhf__ppo_evaluate(p)) != RLHF_OK) goto done;
    n_tok = p->ro_tokens = rlhf__ppo_advantages(p);
    t2 = rlhf__seconds();
    if ((r = rlhf__ppo_learn(p, &st)) != RLHF_OK) goto done;
    t3 = rlhf__seconds();

    /* 5-7: statistics, KL control for the next iteration, metrics */
    p->iteration++;
    rlhf__ppo_statistics(p, n_tok, &st);
    st.seconds_generate = t1 - t0;
    st.seconds_score = t2 - t1;
    st.seconds_learn = t3 - t2;
    if (p->cfg.adaptive_kl) p->kl_coef = rlhf_kl_control(p->kl_coef, st.kl, p->cfg.kl_target, p->cfg.kl_horizon, p->B);
    rlhf__ppo_metrics(p, &st);
    if (p->run.line.oom && p->cfg.metrics)
        r = rlhf__run_fail(&p->run, RLHF_ERR_OUT_OF_MEMORY, "out of memory for the metric line (the step is done)");
done:
    /* the caller's err is this call's only: the trainer keeps no pointer to it */
    if (stats) *stats = st;
    p->run.err = NULL;
    return r;
}

/* ---- resume: the whole state into a directory -------------------------------
   A save is journaled, so that a kill at any moment leaves the previous
   complete state or the new one, never a mix of files from two saves:
     1. each file is written whole, fsync'ed, as X.next (policy, critic, EMA);
     2. ppo.commit (written as ppo.commit.tmp, fsync'ed, renamed) marks the
        new set complete: this rename is the moment the save happens;
     3. each X.next is renamed over X, then ppo.commit is removed.
   Fixed names (no PID, no listing of the directory) let rlhf__ppo_recover,
   run before every save and load, find what an interrupted save left. */
static const char *const RLHF__PPO_FILES[3] = {"policy.safetensors", "critic.safetensors", "ema.safetensors"};

/* "ppo: dir: reason" into err (may be NULL); returns r */
static rlhf_result rlhf__ppo_err(rlhf_error *err, rlhf_result r, const char *dir, const char *fmt, ...) {
    va_list ap;
    int n;
    /* a save or load names its directory first: the user may run several */
    if (!err) return r;
    n = snprintf(err->message, sizeof err->message, "ppo: %s: ", dir);
    if (n < 0 || (size_t)n >= sizeof err->message) return r;
    va_start(ap, fmt);
    vsnprintf(err->message + n, sizeof err->message - (size_t)n, fmt, ap);
    va_end(ap);
    return r;
}
/* dir/name into buf, or RLHF_ERR_TOO_LARGE when it does not fit */
static rlhf_result rlhf__ppo_path(char *buf, size_t cap, const char *dir, const char *name) {
    return (size_t)snprintf(buf, cap, "%s/%s", dir, name) < cap ? RLHF_OK : RLHF_ERR_TOO_LARGE;
}
/* whether path can be opened for reading (all a recovery needs to know) */
static int rlhf__file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}
/* Finish or undo an interrupted save in dir. With ppo.commit the new set is
   complete: every X.next still there is renamed over X (step 3 again).
   Without it the save never reached its commit point: its X.next and
   ppo.commit.tmp are removed (the files of the previous save were never
   touched). Either way no temporary file is left. */
static rlhf_result rlhf__ppo_recover(const char *dir, rlhf_error *err) {
    char commit[1024], tmp[1024], next[1024], path[1024];
    int i, committed;
    if (rlhf__ppo_path(commit, sizeof commit, dir, "ppo.commit") != RLHF_OK ||
        rlhf__ppo_path(tmp, sizeof tmp, dir, "ppo.commit.tmp") != RLHF_OK)
        return rlhf__ppo_err(err, RLHF_ERR_TOO_LARGE, dir, "the directory name is too long");
    committed = rlhf__file_exists(commit);

    /* each of the three files: its X.next renamed into place (committed) or removed (not) */
    for (i = 0; i < 3; i++) {
        if (rlhf__ppo_path(path, sizeof path, dir, RLHF__PPO_FILES[i]) != RLHF_OK ||
            (size_t)snprintf(next, sizeof next, "%s.next", path) >= sizeof next)
            return rlhf__ppo_err(err, RLHF_ERR_TOO_LARGE, dir, "the directory name is too long");
        if (!rlhf__file_exists(next)) continue;
        if (!committed) remove(next);
        else if (rlhf__replace(next, path) != 0)
            return rlhf__ppo_err(err, RLHF_ERR_IO, dir,
                                 "cannot finish the interrupted save: renaming %s.next to %s failed",
                                 RLHF__PPO_FILES[i], RLHF__PPO_FILES[i]);
    }

    /* then the commit record and any half-written one go; the renames are durable before */
    rlhf__fsync_dir(commit);
    remove(tmp);
    if (committed && remove(commit) != 0)
        return rlhf__ppo_err(err, RLHF_ERR_IO, dir, "cannot remove ppo.commit after finishing the interrupted save");
    return RLHF_OK;
}
/* The commit point: ppo.commit, holding the iteration, written whole under
   a fixed temporary name (which rlhf__ppo_recover knows) and renamed. */
static rlhf_result rlhf__ppo_commit(const char *dir, long iteration, rlhf_error *err) {
    char commit[1024], tmp[1024], text[64];
    rlhf__out o;
    rlhf_result r;
    int n = snprintf(text, sizeof text, "{\"iteration\":%ld}\n", iteration); /* for a person who finds it */
    if (rlhf__ppo_path(commit, sizeof commit, dir, "ppo.commit") != RLHF_OK ||
        rlhf__ppo_path(tmp, sizeof tmp, dir, "ppo.commit.tmp") != RLHF_OK)
        return rlhf__ppo_err(err, RLHF_ERR_TOO_LARGE, dir, "the directory name is too long");

    /* written whole and fsync'ed under the temporary name, then renamed: the rename is the commit */
    if ((r = rlhf__out_open(&o, tmp, 1)) != RLHF_OK) return rlhf__ppo_err(err, r, dir, "%s", o.why);
    rlhf__out_write(&o, text, (size_t)n);
    if ((r = rlhf__out_commit(&o)) != RLHF_OK) return rlhf__ppo_err(err, r, dir, "%s", o.why);
    if (rlhf__replace(tmp, commit) != 0) {
        remove(tmp);
        return rlhf__ppo_err(err, RLHF_ERR_IO, dir, "cannot rename ppo.commit.tmp to ppo.commit");
    }
    rlhf__fsync_dir(commit);
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_ppo_save(rlhf_ppo *p, const char *dir, rlhf_error *err) {
    rlhf_model *model[3];
    char path[1024], state[1024];
    const char *bad;
    rlhf_error e;
    rlhf_result r;
    int i;
    if (err) err->message[0] = 0;
    if (!p || !dir) return RLHF_ERR_INVALID_ARGUMENT;
    model[0] = p->policy;
    model[1] = p->critic;
    model[2] = p->ema; /* NULL when EMA is off */

    /* what an earlier save left half done is finished or undone first */
    if ((r = rlhf__ppo_recover(dir, err)) != RLHF_OK) return r;
    /* a diverged run is never saved: the previous state stays */
    for (i = 0; i < 3; i++)
        if (model[i] && (bad = rlhf__non_finite_tensor(model[i])) != NULL)
            return rlhf__ppo_err(
                err, RLHF_ERR_NON_FINITE, dir,
                "the weights of the %s are not finite after iteration %ld (%s; learning rate too high?); "
                "checkpoint not written",
                i == 0   ? "policy"
                : i == 1 ? "critic"
                         : "EMA",
                p->iteration, bad);

    /* every number that steers the rest of the run; floats as %.9g round-trip exactly. The RNG's
       four words go as decimal strings: JSON numbers are doubles and would lose bits of a uint64 */
    snprintf(
        state, sizeof state,
        "{\"iteration\":%ld,\"kl_coef\":%.9g,\"rng\":[\"%llu\",\"%llu\",\"%llu\",\"%llu\"],\"data_epoch\":%ld,\"data_"
        "pos\":%lu,"
        "\"ptx_epoch\":%ld,\"ptx_pos\":%lu,\"skipped_updates\":%ld,\"skipped_minibatches\":%ld,\"ref\":\"%016llx\",\"algo\":\"%s\"}",
        p->iteration, (double)p->kl_coef, (unsigned long long)p->rng.s[0], (unsigned long long)p->rng.s[1],
        (unsigned long long)p->rng.s[2], (unsigned long long)p->rng.s[3], p->data_epoch, (unsigned long)p->data_pos,
        p->ptx_epoch, (unsigned long)p->ptx_pos, p->skipped_updates, p->skipped_minibatches,
        (unsigned long long)p->ref_hash, rlhf__estimator_name(p->cfg.estimator));
    /* the iteration in every file ties the files of one save together: rlhf_ppo_load refuses a mix */
    snprintf(path, sizeof path, "%ld", p->iteration);
    if ((r = rlhf__set_meta(p->policy, "rlhf.ppo.state", state)) != RLHF_OK ||
        (r = rlhf__set_meta(p->policy, "rlhf.kind", "policy")) != RLHF_OK ||
        (p->critic && (r = rlhf__set_meta(p->critic, "rlhf.kind", "value")) != RLHF_OK) ||
        (p->critic && (r = rlhf__set_meta(p->critic, "rlhf.ppo.iteration", path)) != RLHF_OK) ||
        (p->ema && (r = rlhf__set_meta(p->ema, "rlhf.ppo.iteration", path)) != RLHF_OK)) {
        if (err) snprintf(err->message, sizeof err->message, "ppo: out of memory for the metadata");
        return r;
    }
    /* the tokenizer rides along, so each file is a whole model for rlhf generate and rlhf chat */
    if ((r = rlhf_model_set_tokenizer(p->policy, p->tok)) != RLHF_OK ||
        (p->critic && (r = rlhf_model_set_tokenizer(p->critic, p->tok)) != RLHF_OK)) {
        if (err) snprintf(err->message, sizeof err->message, "ppo: out of memory for the tokenizer's metadata");
        return r;
    }

    /* 1. the new files, whole, beside the old ones (the EMA needs no AdamW state) */
    for (i = 0; i < 3; i++) {
        if (!model[i]) continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s.next", dir, RLHF__PPO_FILES[i]) >= sizeof path) {
            rlhf__ppo_recover(dir, NULL);
            return rlhf__ppo_err(err, RLHF_ERR_TOO_LARGE, dir, "the directory name is too long");
        }
        r = rlhf_model_save_ex(model[i], path, RLHF__SAVE_IN_PLACE | (i == 2 ? RLHF_SAVE_WEIGHTS_ONLY : 0), &e);
        if (r != RLHF_OK) {
            if (err) snprintf(err->message, sizeof err->message, "ppo: cannot save %.240s: %.240s", path, e.message);
            rlhf__ppo_recover(dir, NULL); /* no commit yet: removes the *.next written so far */
            return r;
        }
    }
    /* 2. the commit point; 3. the new files take the old ones' names */
    if ((r = rlhf__ppo_commit(dir, p->iteration, err)) != RLHF_OK) {
        rlhf__ppo_recover(dir, NULL);
        return r;
    }
    return rlhf__ppo_recover(dir, err);
}

/* weights, AdamW moments and step of src into dst (same shape) */
static rlhf_result rlhf__copy_state(rlhf_model *dst, const rlhf_model *src, int with_optim) {
    /* the trainer keeps its own model objects (the caller's pointers): the loaded state goes into them */
    if (memcmp(&dst->cfg, &src->cfg, sizeof dst->cfg) != 0 || dst->num_params != src->num_params)
        return RLHF_ERR_INVALID_ARGUMENT;
    memcpy(dst->param_mem, src->param_mem, dst->num_params * sizeof(float));
    if (!with_optim) return RLHF_OK;

    /* AdamW's moments and step count: without them a resumed run would not continue bit for bit */
    if (!src->m_mem) return RLHF_ERR_PARSE;
    if (!dst->m_mem && rlhf__ensure(dst, 1, 1, 1) != RLHF_OK) return RLHF_ERR_OUT_OF_MEMORY;
    memcpy(dst->m_mem, src->m_mem, dst->num_params * sizeof(float));
    memcpy(dst->v_mem, src->v_mem, dst->num_params * sizeof(float));
    dst->adam_steps = src->adam_steps;
    return RLHF_OK;
}
static int rlhf__json_long(const rlhf_json *o, const char *key, long *out) {
    int64_t v;
    const rlhf_json *x = rlhf_json_get(o, key);
    if (!x || !rlhf_json_int64(x, &v)) return 0;
    *out = (long)v;
    return 1;
}

/* The trainer's counters as a save wrote them (rlhf.ppo.state). */
typedef struct rlhf__ppo_state {
    long iteration, data_epoch, data_pos, ptx_epoch, ptx_pos, skipped_updates, skipped_minibatches;
    uint64_t rng[4];
    float kl_coef;
} rlhf__ppo_state;

/* rlhf.ppo.state of a loaded policy: complete, in range for this trainer's
   data, and written with this trainer's reference (its fingerprint). */
static rlhf_result rlhf__ppo_read_state(const rlhf_ppo *p, const rlhf_model *pol, const char *dir, rlhf__ppo_state *s,
                                        rlhf_error *err) {
    const char *state = rlhf_model_meta(pol, "rlhf.ppo.state");
    rlhf_json_doc *doc = NULL;
    rlhf_json_error je;
    const rlhf_json *root, *rng, *ref, *algo;
    rlhf_result r = RLHF_OK;
    char want[32];
    int i;

    /* the JSON object, every field present */
    if (!state)
        return rlhf__ppo_err(err, RLHF_ERR_PARSE, dir,
                             "policy.safetensors has no rlhf.ppo.state metadata (not a PPO checkpoint)");
    if ((r = rlhf_json_parse(&doc, state, strlen(state), 4, &je)) != RLHF_OK)
        return rlhf__ppo_err(err, r, dir, "rlhf.ppo.state: %s", je.message);
    root = rlhf_json_root(doc);
    rng = rlhf_json_get(root, "rng");
    ref = rlhf_json_get(root, "ref");
    if (!rlhf__json_long(root, "iteration", &s->iteration) || !rlhf__json_long(root, "data_epoch", &s->data_epoch) ||
        !rlhf__json_long(root, "data_pos", &s->data_pos) || !rlhf__json_long(root, "ptx_epoch", &s->ptx_epoch) ||
        !rlhf__json_long(root, "ptx_pos", &s->ptx_pos) ||
        !rlhf__json_long(root, "skipped_updates", &s->skipped_updates) ||
        !rlhf__json_long(root, "skipped_minibatches", &s->skipped_minibatches) || !rlhf_json_get(root, "kl_coef") ||
        !rng || rng->type != RLHF_JSON_ARRAY || rng->len != 4 || !ref || s->data_pos < 0 ||
        (size_t)s->data_pos > rlhf_dataset_size(p->prompts) || s->data_epoch < 0 || s->ptx_epoch < 0 ||
        s->ptx_pos < 0 || (size_t)s->ptx_pos > p->ptx.n) {
        r = rlhf__ppo_err(err, RLHF_ERR_PARSE, dir, "rlhf.ppo.state is incomplete or does not fit this trainer's data");
        goto done;
    }

    /* the same algorithm (a state without "algo" is from a PPO run of 0.7) and the same reference */
    algo = rlhf_json_get(root, "algo");
    if (algo && algo->type != RLHF_JSON_STRING) algo = NULL;
    if (strcmp(algo ? algo->str : "ppo", rlhf__estimator_name(p->cfg.estimator)) != 0) {
        r = rlhf__ppo_err(err, RLHF_ERR_INVALID_ARGUMENT, dir, "the run was a %s run; this trainer runs %s",
                          algo ? algo->str : "ppo", rlhf__estimator_name(p->cfg.estimator));
        goto done;
    }
    snprintf(want, sizeof want, "%016llx", (unsigned long long)p->ref_hash);
    if (!ref->str || strcmp(ref->str, want) != 0) {
        r = rlhf__ppo_err(err, RLHF_ERR_INVALID_ARGUMENT, dir,
                          "the run used another reference model (fingerprint %s, this one is %s)",
                          ref->str ? ref->str : "?", want);
        goto done;
    }

    /* the generator's four words (decimal strings) and beta */
    for (i = 0; i < 4; i++) {
        const rlhf_json *x = rlhf_json_at(rng, (size_t)i);
        s->rng[i] = x && x->type == RLHF_JSON_STRING ? (uint64_t)strtoull(x->str, NULL, 10) : 0;
    }
    s->kl_coef = (float)rlhf_json_get(root, "kl_coef")->number;
done:
    rlhf_json_free(doc);
    return r;
}

/* The files belong to one save (the iteration in each) and to this
   trainer's models (shapes, and the AdamW state a resume needs). */
static rlhf_result rlhf__ppo_check_files(const rlhf_ppo *p, const rlhf_model *pol, const rlhf_model *cri,
                                         const rlhf_model *ema, long it, const char *dir, rlhf_error *err) {
    char itbuf[32];
    const rlhf_result bad = RLHF_ERR_INVALID_ARGUMENT;
    snprintf(itbuf, sizeof itbuf, "%ld", it);
    if ((cri && (!rlhf_model_meta(cri, "rlhf.ppo.iteration") ||
                 strcmp(rlhf_model_meta(cri, "rlhf.ppo.iteration"), itbuf) != 0)) ||
        (ema && (!rlhf_model_meta(ema, "rlhf.ppo.iteration") ||
                 strcmp(rlhf_model_meta(ema, "rlhf.ppo.iteration"), itbuf) != 0)))
        return rlhf__ppo_err(err, RLHF_ERR_PARSE, dir,
                             "the files are from different saves (policy at iteration %ld; critic or EMA not)", it);
    if (memcmp(&p->policy->cfg, &pol->cfg, sizeof pol->cfg) != 0 || p->policy->num_params != pol->num_params ||
        !pol->m_mem)
        return rlhf__ppo_err(err, bad, dir, "policy.safetensors does not match the policy (shape or AdamW state)");
    if (cri && (memcmp(&p->critic->cfg, &cri->cfg, sizeof cri->cfg) != 0 || p->critic->num_params != cri->num_params ||
                !cri->m_mem))
        return rlhf__ppo_err(err, bad, dir,
                             "critic.safetensors does not match the critic (shape, head or AdamW state)");
    if (ema && (memcmp(&p->ema->cfg, &ema->cfg, sizeof ema->cfg) != 0 || p->ema->num_params != ema->num_params))
        return rlhf__ppo_err(err, bad, dir, "ema.safetensors does not match the policy's shape");
    return RLHF_OK;
}

RLHFDEF rlhf_result rlhf_ppo_load(rlhf_ppo *p, const char *dir, rlhf_error *err) {
    char path[1024];
    rlhf_model *pol = NULL, *cri = NULL, *ema = NULL;
    rlhf__ppo_state s = {0, 0, 0, 0, 0, 0, 0, {0, 0, 0, 0}, 0.0f};
    rlhf_result r = RLHF_OK;
    if (err) err->message[0] = 0;
    if (!p || !dir) return RLHF_ERR_INVALID_ARGUMENT;
    if ((r = rlhf__ppo_recover(dir, err)) != RLHF_OK)
        return r; /* a save that was killed: its new state, or the one before */

    /* 1. the files of the last complete save, each through the strict loader */
    if (rlhf__ppo_path(path, sizeof path, dir, "policy.safetensors") != RLHF_OK ||
        (r = rlhf_model_load_ex(&pol, path, err)) != RLHF_OK)
        goto done;
    if (p->critic && (rlhf__ppo_path(path, sizeof path, dir, "critic.safetensors") != RLHF_OK ||
                      (r = rlhf_model_load_ex(&cri, path, err)) != RLHF_OK))
        goto done;
    if (p->ema && (rlhf__ppo_path(path, sizeof path, dir, "ema.safetensors") != RLHF_OK ||
                   (r = rlhf_model_load_ex(&ema, path, err)) != RLHF_OK))
        goto done;

    /* 2. the trainer's state; 3. the files of one save, fitting this trainer. Everything is
          checked before anything is copied: a failed load leaves the trainer as it was */
    if ((r = rlhf__ppo_read_state(p, pol, dir, &s, err)) != RLHF_OK) goto done;
    if ((r = rlhf__ppo_check_files(p, pol, cri, ema, s.iteration, dir, err)) != RLHF_OK) goto done;

    /* 4. only now into the trainer: weights and AdamW state, then the counters, the generator
          and the data orders (rebuilt from the seed and the epochs) */
    if ((r = rlhf__copy_state(p->policy, pol, 1)) != RLHF_OK ||
        (cri && (r = rlhf__copy_state(p->critic, cri, 1)) != RLHF_OK) ||
        (ema && (r = rlhf__copy_state(p->ema, ema, 0)) != RLHF_OK)) {
        r = rlhf__ppo_err(err, r, dir, "out of memory for the AdamW state");
        goto done;
    }
    memcpy(p->rng.s, s.rng, sizeof s.rng);
    p->kl_coef = s.kl_coef;
    p->iteration = s.iteration;
    p->data_epoch = s.data_epoch;
    p->data_pos = (size_t)s.data_pos;
    p->ptx_epoch = s.ptx_epoch;
    p->ptx_pos = (size_t)s.ptx_pos;
    p->skipped_updates = s.skipped_updates;
    p->skipped_minibatches = s.skipped_minibatches;
    rlhf__ppo_order(p);
    if (p->ptx.n) rlhf__ppo_ptx_order(p);
done:
    rlhf_model_free(pol);
    rlhf_model_free(cri);
    rlhf_model_free(ema);
    return r;
}

/* ---- trace: one episode, token by token ---------------------------------------- */
/* ---- trace: one episode's every quantity, token by token ---------------------
   What a reader checks against the equations at the top of this section:
   the rows come from the last rollout as it was learned from (ratio and
   clip from the last minibatch that held each token). */
RLHFDEF rlhf_result rlhf_ppo_trace(const rlhf_ppo *p, int b, rlhf_ppo_trace_row *rows, int cap, int *n_rows) {
    int i, n;
    if (!p || !rows || !n_rows || b < 0 || b >= p->B || p->iteration == 0) return RLHF_ERR_INVALID_ARGUMENT;
    n = p->ro.rlen[b];
    *n_rows = n;
    if (n > cap) return RLHF_ERR_TOO_LARGE;
    for (i = 0; i < n; i++) {
        size_t o = rlhf__tok(p, b, i);
        rlhf_ppo_trace_row *w = &rows[i];
        float next_v = i + 1 < n ? p->ro.values[o + 1] : 0.0f; /* V(s_n) = 0: the episode ends */
        w->token = p->ro.seq[rlhf__pred_at(p, b, i) + 1];
        w->logp = p->ro.logp[o];
        w->ref_logp = p->ro.ref_logp[o];
        w->kl = p->ro.kl[o];
        w->reward = p->ro.rewards[o];
        w->value = p->ro.values[o];
        w->delta = w->reward + p->cfg.gamma * next_v - w->value; /* GAE's delta_t, recomputed for the reader */
        if (!p->critic) w->delta = NAN; /* GRPO, RLOO: no critic, no delta_t */
        w->advantage = p->ro.adv[o];
        w->ret = p->ro.ret[o];
        w->ratio = p->ro.ratio[o];
        w->clipped = p->ro.clipped[o];
    }
    return RLHF_OK;
}

/* the legend under the trace's header: each column's equation, as the estimator computes it */
static void rlhf__trace_legend(const rlhf_ppo *p, rlhf__sb *sb) {
    const char *k3 = "exp(d) - 1 - d, d = ref_logp - logp (k3)", *kl;
    kl = p->cfg.estimator == RLHF_EST_GRPO || p->cfg.kl_estimator == RLHF_KL_K3 ? k3 : "logp - ref_logp (k1)";
    rlhf__sb_fmt(sb, "    (logp = log pi_old(a_t|s_t) at temperature; KL_t = %s;\n", kl);
    if (p->cfg.estimator == RLHF_EST_GRPO)
        rlhf__sb_str(sb, "     r_t = the score at the end (beta KL_t is a term of GRPO's loss, not of the reward);\n"
                         "     no critic: V(s_t) = 0, delta_t none; A_t = the reply's group advantage, R_t = A_t;\n"
                         "     ratio = pi_new / pi_old of the token in the last minibatch that held it; clip = its "
                         "clipped term was used)\n");
    else if (p->cfg.estimator == RLHF_EST_RLOO)
        rlhf__sb_str(sb, "     r_t = -beta KL_t (+ score at the end), summed: the reply's reward;\n"
                         "     no critic: V(s_t) = 0, delta_t none; A_t = the reply's leave-one-out advantage, R_t = A_t;"
                         "\n     ratio = pi_new / pi_old of the token; clip = the reply's clipped term was used (RLOO "
                         "clips the reply's ratio))\n");
    else
        rlhf__sb_str(sb, "     r_t = -beta KL_t (+ score at the end);\n"
                         "     delta_t = r_t + gamma V(s_t+1) - V(s_t); A_t = delta_t + gamma lambda A_t+1; R_t = A_t + "
                         "V(s_t);\n     ratio = pi_new / pi_old in the last minibatch that held the token; clip = the "
                         "clipped surrogate term was used)\n");
}

RLHFDEF rlhf_result rlhf_ppo_trace_text(const rlhf_ppo *p, int b, char *out, size_t cap, size_t *n_bytes) {
    rlhf_ppo_trace_row *rows;
    rlhf__sb sb = {NULL, 0, 0, 0};
    int n, i;
    rlhf_result r;
    if (!p || !n_bytes || b < 0 || b >= p->B) return RLHF_ERR_INVALID_ARGUMENT;

    /* the rows, then the table: a header line, a legend naming each column's equation, one line per token */
    rows = (rlhf_ppo_trace_row *)rlhf__alloc((size_t)(p->max_new + 1) * sizeof *rows);
    if (!rows) return RLHF_ERR_OUT_OF_MEMORY;
    if ((r = rlhf_ppo_trace(p, b, rows, p->max_new, &n)) != RLHF_OK) {
        rlhf__free(rows);
        return r;
    }
    rlhf__sb_fmt(&sb, "episode %d of iteration %ld: score %.4f, beta %.4g, %s\n", b, p->iteration,
                 (double)p->ro.score[b], (double)p->kl_coef,
                 p->ro.has_eos[b]              ? "ends with <|end|>"
                 : p->cfg.penalize_missing_eos ? "no <|end|> (penalty score)"
                                               : "no <|end|>");
    rlhf__sb_fmt(&sb, "%3s %-14s %9s %9s %9s %9s %9s %9s %9s %9s %7s %s\n", "t", "token", "logp", "ref_logp", "KL_t",
                 "r_t", "V(s_t)", "delta_t", "A_t", "R_t", "ratio", "clip");
    rlhf__trace_legend(p, &sb);
    for (i = 0; i < n; i++) {
        char tok[64];
        size_t nb = 0, k;
        if (rlhf_tokenizer_decode(p->tok, &rows[i].token, 1, tok, sizeof tok - 1, &nb) != RLHF_OK) nb = 0;
        if (nb > 14) nb = 14;
        for (k = 0; k < nb; k++) /* one column per token: control bytes and partial UTF-8 as '?' */
            if ((unsigned char)tok[k] < 32 || (unsigned char)tok[k] >= 0x80) tok[k] = '?';
        tok[nb] = 0;
        rlhf__sb_fmt(&sb, "%3d %-14s %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f %7.4f %s\n", i, tok,
                     (double)rows[i].logp, (double)rows[i].ref_logp, (double)rows[i].kl, (double)rows[i].reward,
                     (double)rows[i].value, (double)rows[i].delta, (double)rows[i].advantage, (double)rows[i].ret,
                     (double)rows[i].ratio, rows[i].clipped ? "yes" : "");
    }

    /* the whole table or RLHF_ERR_TOO_LARGE with the size needed, as snprintf */
    rlhf__free(rows);
    if (sb.oom) {
        rlhf__free(sb.p);
        return RLHF_ERR_OUT_OF_MEMORY;
    }
    *n_bytes = sb.len;
    if (out && cap > sb.len) memcpy(out, sb.p, sb.len + 1);
    r = out && cap > sb.len ? RLHF_OK : RLHF_ERR_TOO_LARGE;
    rlhf__free(sb.p);
    return r;
}

// ----------------------------------------------------------------------------
// >>dpo  Direct Preference Optimisation and its variants: the losses
// ----------------------------------------------------------------------------
//
// DPO (Rafailov et al. 2023) trains the policy on preference pairs directly,
// with no reward model and no sampling: its eq. 7, for a prompt x with a
// chosen reply y_w and a rejected one y_l, pi_ref the frozen SFT model,
//
//   L_DPO = -E [ log sigmoid( beta log pi(y_w|x)/pi_ref(y_w|x) - beta log pi(y_l|x)/pi_ref(y_l|x) ) ]
//
// The log-ratios are sums over the reply's tokens. Written with
//   h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)),
// the implicit rewards beta (log pi - log pi_ref) of y_w and y_l (TRL's
// rewards/chosen and rewards/rejected) and the variants TRL names:
//
//   sigmoid  l = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)
//            eps = 0: DPO; eps > 0: cDPO (Mitchell 2023), labels flipped
//            with probability eps
//   ipo      l = (h - 1/(2 beta))^2, h from per-token mean log-probs (Azar
//            et al. 2023: regresses the gap to 1/(2 beta) instead of pushing
//            it to infinity)
//   hinge    l = max(0, 1 - beta h) (SLiC, Zhao et al. 2023)
//   simpo    the sigmoid loss with no reference, h = mean log pi(y_w|x) -
//            mean log pi(y_l|x) - gamma/beta (Meng et al. 2024: per-token
//            means, a target margin gamma; TRL's CPOTrainer, loss "simpo")
//
// and their derivatives in h, from d log sigmoid(x)/dx = sigmoid(-x):
//
//   sigmoid  dl/dh = -beta ((1 - eps) sigmoid(-beta h) - eps sigmoid(beta h))
//   ipo      dl/dh = 2 (h - 1/(2 beta))
//   hinge    dl/dh = -beta where 1 - beta h > 0, else 0
//
// with dh/d log pi(y_w|x) = 1 and dh/d log pi(y_l|x) = -1.
//
// Example (sigmoid, beta 0.1, eps 0): log pi(y_w) = -10, log pi(y_l) = -12,
// the reference gives both -11: h = 1 - (-1) = 2, beta h = 0.2, the loss
// -log sigmoid(0.2) = 0.5981, dl/d log pi(y_w) = -0.1 sigmoid(-0.2) = -0.0450
// and +0.0450 for y_l: the step raises y_w and lowers y_l.

RLHFDEF float rlhf_dpo_loss(const float *policy_chosen, const float *policy_rejected,
                            const float *ref_chosen, const float *ref_rejected, int n, float beta,
                            rlhf_dpo_loss_type type, float label_smoothing,
                            float *d_chosen, float *d_rejected) {
    double sum = 0.0, b = beta, eps = label_smoothing;
    int i;
    if (!policy_chosen || !policy_rejected || !ref_chosen || !ref_rejected || n <= 0) return 0.0f;
    for (i = 0; i < n; i++) {
        /* h in double: log-probs of long replies are large and close together */
        double h = ((double)policy_chosen[i] - ref_chosen[i]) - ((double)policy_rejected[i] - ref_rejected[i]);
        double l, dh;
        if (type == RLHF_DPO_IPO) {
            double gap = h - 1.0 / (2.0 * b);
            l = gap * gap;
            dh = 2.0 * gap;
        } else if (type == RLHF_DPO_HINGE) { /* NaN stays NaN, as torch.relu's */
            l = isnan(h) ? h : 1.0 - b * h > 0.0 ? 1.0 - b * h : 0.0;
            dh = isnan(h) ? h : 1.0 - b * h > 0.0 ? -b : 0.0;
        } else { /* sigmoid, with cDPO's label smoothing */
            l = -(1.0 - eps) * rlhf__log_sigmoid(b * h) - eps * rlhf__log_sigmoid(-b * h);
            dh = -b * ((1.0 - eps) * rlhf__sigmoid_neg(b * h) - eps * rlhf__sigmoid_neg(-b * h));
        }
        sum += l;
        if (d_chosen) d_chosen[i] = (float)(dh / n);
        if (d_rejected) d_rejected[i] = (float)(-dh / n);
    }
    return (float)(sum / n);
}

/* ---- the DPO stage: the loss over pairs of a prompt's ranked replies -------
   What the loop of >>train calls, as for the reward model: units are
   prompts with their K replies (a pair: K = 2), as many per forward as fit
   micro sequences. Per reply the sequence log-prob under the policy,
     logp(y|x) = sum over the reply's tokens t of log pi(y_t | x, y_<t)
   (IPO: divided by the reply's token count), and under the reference the
   same, computed one prompt a forward (rlhf__dpo_ref_group) so that a
   precomputed reference and a live one give the same bits. */

typedef struct rlhf__dpo_stage {
    rlhf__examples ex, vex;  /* training groups; validation groups when given */
    size_t *vidx, n_v;
    rlhf_model *ref;         /* the frozen reference (NULL for SimPO) */
    float *ref_ex, *ref_vex; /* precomputed: the reference's log-prob of every example (NULL: live) */
    int *inputs, *targets;   /* one forward: (rows, seq_len) */
    float *logp, *dlogp;     /* per position, and their gradients */
    float *seq, *rseq, *dseq; /* per row: the policy's and the reference's log-prob, d loss / d policy's */
    rlhf_dpo_config cfg;
    int micro, pad, has_val, seq_len;
    double m[6];             /* a step's sums over pairs: pairs, r_chosen, r_rejected, correct, logp_c, logp_r */
} rlhf__dpo_stage;

/* IPO and SimPO compare per-token mean log-probs, the others sums */
static int rlhf__dpo_mean(const rlhf__dpo_stage *d) {
    return d->cfg.loss == RLHF_DPO_IPO || d->cfg.loss == RLHF_DPO_SIMPO;
}

/* Targets of group rows: the next token where it is part of the reply, else -1 */
static void rlhf__dpo_targets(const rlhf__examples *ex, const size_t *groups, size_t n, const int *inputs,
                              int *targets, int T) {
    size_t g;
    int row = 0, k, t;
    for (g = 0; g < n; g++)
        for (k = 0; k < ex->gk[groups[g]]; k++, row++) {
            size_t e = ex->gfirst[groups[g]] + (size_t)k;
            const unsigned char *mask = ex->mask + ex->off[e];
            for (t = 0; t < T; t++)
                targets[(ptrdiff_t)row * T + t] =
                    t + 1 < ex->len[e] && mask[t + 1] ? inputs[(ptrdiff_t)row * T + t + 1] : -1;
        }
}
/* Per row the sum of logp over the reply (rows B of T), IPO: the mean */
static void rlhf__dpo_rowsums(const float *logp, const int *targets, int B, int T, int mean, float *seq) {
    int b, t, n;
    for (b = 0; b < B; b++) {
        double sum = 0.0;
        for (t = 0, n = 0; t < T; t++)
            if (targets[(ptrdiff_t)b * T + t] >= 0) sum += logp[(ptrdiff_t)b * T + t], n++;
        seq[b] = (float)(mean && n > 0 ? sum / n : sum);
    }
}
/* The reference's log-probs of group g's K replies into out (K), one forward */
static rlhf_result rlhf__dpo_ref_group(rlhf__dpo_stage *d, const rlhf__examples *ex, size_t g, float *out) {
    int B, T;
    rlhf_result r;
    rlhf__rm_fill(ex, &g, 1, d->pad, d->inputs, &B, &T);
    rlhf__dpo_targets(ex, &g, 1, d->inputs, d->targets, T);
    r = rlhf_model_logprobs(d->ref, d->inputs, d->targets, NULL, B, T, 1.0f, d->logp, NULL, 0);
    if (r == RLHF_OK) rlhf__dpo_rowsums(d->logp, d->targets, B, T, rlhf__dpo_mean(d), out);
    return r;
}
/* The reference's log-probs of every example of ex into out (ex->n) */
static rlhf_result rlhf__dpo_ref_all(rlhf__trainrun *run, rlhf__dpo_stage *d, const rlhf__examples *ex, float *out) {
    size_t g;
    rlhf_result r;
    for (g = 0; g < ex->ng; g++)
        if ((r = rlhf__dpo_ref_group(d, ex, g, out + ex->gfirst[g])) != RLHF_OK)
            return rlhf__run_fail(run, r, "reference model: %s", rlhf_model_last_error(d->ref));
    return RLHF_OK;
}

/* The loss of the pairs of groups[0..n) (rows in order, policy log-probs in
   seq, the reference's in rseq), each pair's gradient times scale into dseq
   (may be NULL); adds the loss sum and the metric sums into m. */
static double rlhf__dpo_pairs(const rlhf__dpo_stage *d, const rlhf__examples *ex, const size_t *groups, size_t n,
                              const float *seq, const float *rseq, float *dseq, float scale, double *m) {
    double loss = 0.0, b = d->cfg.beta;
    size_t g;
    int row = 0, i, j, K;
    for (g = 0; g < n && dseq; g++) /* zero the rows' gradients */
        for (i = 0; i < ex->gk[groups[g]]; i++) dseq[row++] = 0.0f;
    for (g = 0, row = 0; g < n; g++, row += K) {
        K = ex->gk[groups[g]];
        for (i = 0; i < K; i++)
            for (j = i + 1; j < K; j++) { /* reply i is ranked above reply j */
                float dc, dr, margin = d->cfg.simpo_gamma / d->cfg.beta, zero = 0.0f; /* SimPO's "reference" */
                const float *ri = rseq + row + i, *rj = rseq + row + j;
                double rc = b * ((double)seq[row + i] - rseq[row + i]), rr = b * ((double)seq[row + j] - rseq[row + j]);
                if (d->cfg.loss == RLHF_DPO_SIMPO) ri = &margin, rj = &zero;
                loss += rlhf_dpo_loss(seq + row + i, seq + row + j, ri, rj, 1, d->cfg.beta, d->cfg.loss,
                                      d->cfg.label_smoothing, &dc, &dr);
                if (dseq) dseq[row + i] += dc * scale, dseq[row + j] += dr * scale;
                m[0] += 1.0, m[1] += rc, m[2] += rr, m[3] += rc > rr ? 1.0 : 0.0;
                m[4] += seq[row + i], m[5] += seq[row + j];
            }
    }
    return loss;
}

/* pairs in groups[0..n) */
static double rlhf__dpo_count(const rlhf__examples *ex, const size_t *groups, size_t n) {
    double p = 0.0;
    size_t g;
    for (g = 0; g < n; g++) p += 0.5 * ex->gk[groups[g]] * (ex->gk[groups[g]] - 1);
    return p;
}

/* One forward of groups[0..n): the policy's log-probs (with the backward
   cache when for_backward) and the reference's, per row into d->seq, d->rseq */
static rlhf_result rlhf__dpo_forward(rlhf__trainrun *run, rlhf__dpo_stage *d, const rlhf__examples *ex,
                                     const float *ref_pre, const size_t *groups, size_t n, int for_backward, int *B,
                                     int *T) {
    size_t g;
    int row = 0, k;
    rlhf_result r;
    for (g = 0; g < n; g++, row += k) { /* the reference first: it shares the input buffers */
        k = ex->gk[groups[g]];
        if (d->cfg.loss == RLHF_DPO_SIMPO) memset(d->rseq + row, 0, (size_t)k * sizeof(float)); /* no reference */
        else if (ref_pre) memcpy(d->rseq + row, ref_pre + ex->gfirst[groups[g]], (size_t)k * sizeof(float));
        else if ((r = rlhf__dpo_ref_group(d, ex, groups[g], d->rseq + row)) != RLHF_OK)
            return rlhf__run_fail(run, r, "reference model: %s", rlhf_model_last_error(d->ref));
    }
    rlhf__rm_fill(ex, groups, n, d->pad, d->inputs, B, T);
    rlhf__dpo_targets(ex, groups, n, d->inputs, d->targets, *T);
    r = rlhf_model_logprobs(run->m, d->inputs, d->targets, NULL, *B, *T, 1.0f, d->logp, NULL, for_backward);
    if (r != RLHF_OK) return rlhf__run_fail(run, r, "%s", rlhf_model_last_error(run->m));
    rlhf__dpo_rowsums(d->logp, d->targets, *B, *T, rlhf__dpo_mean(d), d->seq);
    return RLHF_OK;
}

/* The gradient of the step's loss, the mean of the DPO loss over its pairs */
static rlhf_result rlhf__dpo_grads(void *self, rlhf__trainrun *run, const size_t *units, size_t n, long step,
                                   rlhf__step_out *s) {
    rlhf__dpo_stage *d = (rlhf__dpo_stage *)self;
    double pairs = rlhf__dpo_count(&d->ex, units, n);
    size_t g, take;
    int B, T, b, t;
    rlhf_result r;
    memset(d->m, 0, sizeof d->m);
    for (g = 0; g < n; g += take) {
        take = rlhf__rm_take(&d->ex, units, g, n, d->micro);
        if ((r = rlhf__dpo_forward(run, d, &d->ex, d->ref_ex, units + g, take, 1, &B, &T)) != RLHF_OK) return r;
        run->rep.tokens += (double)B * T;
        s->loss += rlhf__dpo_pairs(d, &d->ex, units + g, take, d->seq, d->rseq, d->dseq, (float)(1.0 / pairs), d->m);
        /* d loss / d logp at every reply token: its row's gradient (IPO: / the reply's tokens) */
        for (b = 0; b < B; b++) {
            int nt = 0;
            for (t = 0; t < T; t++) nt += d->targets[(ptrdiff_t)b * T + t] >= 0;
            for (t = 0; t < T; t++)
                d->dlogp[(ptrdiff_t)b * T + t] =
                    d->targets[(ptrdiff_t)b * T + t] < 0 ? 0.0f
                    : rlhf__dpo_mean(d)               ? d->dseq[b] / (float)nt
                                                      : d->dseq[b];
        }
        if (!isfinite(s->loss)) {
            s->finite = 0;
            break;
        }
        if ((r = rlhf_model_backward_logprobs(run->m, d->dlogp, NULL)) != RLHF_OK) {
            if (r != RLHF_ERR_NON_FINITE)
                return rlhf__run_fail(run, r, "step %ld: %s", step + 1, rlhf_model_last_error(run->m));
            s->finite = 0;
            break;
        }
    }
    s->loss /= pairs;
    s->pairs = d->m[0];
    s->correct = d->m[3];
    s->margin = d->m[1] - d->m[2];
    return RLHF_OK;
}

/* TRL's names for the step's means over its pairs */
static void rlhf__dpo_metrics(void *self, rlhf__trainrun *run) {
    const double *m = ((const rlhf__dpo_stage *)self)->m;
    double p = m[0] > 0 ? m[0] : NAN;
    rlhf__metric(run, "rewards/chosen", m[1] / p);
    rlhf__metric(run, "rewards/rejected", m[2] / p);
    rlhf__metric(run, "rewards/accuracies", m[3] / p);
    rlhf__metric(run, "rewards/margins", (m[1] - m[2]) / p);
    rlhf__metric(run, "logps/chosen", m[4] / p);
    rlhf__metric(run, "logps/rejected", m[5] / p);
}

/* Validation: the mean loss over the validation pairs, and the accuracy */
static rlhf_result rlhf__dpo_validate(void *self, rlhf__trainrun *run, long step) {
    rlhf__dpo_stage *d = (rlhf__dpo_stage *)self;
    const rlhf__examples *vx = d->has_val ? &d->vex : &d->ex;
    const float *pre = d->has_val ? d->ref_vex : d->ref_ex;
    double loss = 0.0, m[6] = {0};
    size_t g, take;
    int B, T;
    rlhf_result r;
    for (g = 0; g < d->n_v; g += take) {
        take = rlhf__rm_take(vx, d->vidx, g, d->n_v, d->micro);
        if ((r = rlhf__dpo_forward(run, d, vx, pre, d->vidx + g, take, 0, &B, &T)) != RLHF_OK) return r;
        loss += rlhf__dpo_pairs(d, vx, d->vidx + g, take, d->seq, d->rseq, NULL, 0.0f, m);
    }
    run->rep.val_loss = m[0] > 0 ? (float)(loss / m[0]) : NAN;
    run->rep.val_accuracy = m[0] > 0 ? (float)(m[3] / m[0]) : NAN;
    rlhf__metric_begin(run, step);
    rlhf__metric(run, "val/loss", run->rep.val_loss);
    rlhf__metric(run, "val/rewards/accuracies", run->rep.val_accuracy);
    rlhf__metric(run, "val/rewards/margins", m[0] > 0 ? (m[1] - m[2]) / m[0] : NAN);
    rlhf__metric_end(run);
    rlhf__run_log(run, RLHF_LOG_INFO, "step %ld validation loss %.4f accuracy %.3f (%zu prompts)", step,
                  (double)run->rep.val_loss, (double)run->rep.val_accuracy, d->n_v);
    return RLHF_OK;
}

/* The data, the split, the buffers, and the reference pass when precomputed */
static rlhf_result rlhf__dpo_setup(rlhf__trainrun *run, rlhf__dpo_stage *d, rlhf__stage *st, const rlhf_tokenizer *t,
                                   const rlhf_dataset *train, const rlhf_dataset *val) {
    const rlhf_train_options *o = run->o;
    int maxk = 2, rows;
    size_t i;
    rlhf_result r;
    d->seq_len = o->seq_len ? o->seq_len : run->m->cfg.n_ctx;
    d->micro = o->micro_batch > 0 ? o->micro_batch : 1 << 30;
    d->pad = rlhf_tokenizer_special(t, RLHF_TOKEN_PAD);
    d->has_val = val != NULL;
    if ((r = rlhf__rm_examples(run, t, train, d->seq_len, &d->ex, &run->rep.fit)) != RLHF_OK) return r;
    if (val && (r = rlhf__rm_examples(run, t, val, d->seq_len, &d->vex, &run->rep.fit)) != RLHF_OK) return r;
    rlhf__fit_log(run, &run->rep.fit);
    r = rlhf__train_val(run, d->ex.ng, val != NULL, d->vex.ng, &st->order, &st->n_train, &d->vidx, &d->n_v);
    if (r != RLHF_OK) return r;
    if (st->n_train == 0)
        return rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT, "no pair left to train on (%ld skipped: a reply longer "
                              "than %d tokens)", run->rep.dropped, d->seq_len - 1);
    st->n_val = d->n_v;
    run->rep.train_examples = (long)st->n_train;
    run->rep.val_examples = (long)d->n_v;

    /* buffers for the widest forward: micro sequences, or one prompt with more */
    for (i = 0; i < d->ex.ng; i++) maxk = d->ex.gk[i] > maxk ? d->ex.gk[i] : maxk;
    for (i = 0; i < d->vex.ng; i++) maxk = d->vex.gk[i] > maxk ? d->vex.gk[i] : maxk;
    if ((long)d->micro > (long)o->batch_size * maxk) d->micro = o->batch_size * maxk;
    rows = d->micro > maxk ? d->micro : maxk;
    d->inputs = (int *)rlhf__alloc((size_t)rows * (size_t)d->seq_len * sizeof(int));
    d->targets = (int *)rlhf__alloc((size_t)rows * (size_t)d->seq_len * sizeof(int));
    d->logp = rlhf__alloc_floats((size_t)rows * (size_t)d->seq_len);
    d->dlogp = rlhf__alloc_floats((size_t)rows * (size_t)d->seq_len);
    d->seq = rlhf__alloc_floats(3 * (size_t)rows);
    if (!d->inputs || !d->targets || !d->logp || !d->dlogp || !d->seq)
        return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory for batches of %d sequences of %d tokens",
                              rows, d->seq_len);
    d->rseq = d->seq + rows, d->dseq = d->seq + 2 * (size_t)rows;
    if (o->recompute) rlhf_model_set_recompute(run->m, 1);
    if ((r = rlhf_model_reserve(run->m, rows, d->seq_len, 1)) != RLHF_OK)
        return rlhf__run_fail(run, r, "cannot reserve training memory for %d x %d: %s", rows, d->seq_len,
                              rlhf_model_last_error(run->m));

    /* the reference: precomputed for every reply now, or run beside the policy in each step */
    if (d->cfg.precompute_ref && d->ref) {
        d->ref_ex = rlhf__alloc_floats(d->ex.n + 1);
        d->ref_vex = rlhf__alloc_floats(d->vex.n + 1);
        if (!d->ref_ex || !d->ref_vex) return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
        if ((r = rlhf__dpo_ref_all(run, d, &d->ex, d->ref_ex)) != RLHF_OK) return r;
        if ((r = rlhf__dpo_ref_all(run, d, &d->vex, d->ref_vex)) != RLHF_OK) return r;
        rlhf__run_log(run, RLHF_LOG_INFO, "reference log-probs precomputed for %zu replies", d->ex.n + d->vex.n);
    }
    rlhf__run_log(run, RLHF_LOG_INFO, "%zu prompts of pairs to train on (and %zu held out), K up to %d, %ld steps of %d prompts, "
                  "beta %g, loss %s", st->n_train, d->n_v, maxk, rlhf__run_steps(o, st->n_train), o->batch_size,
                  (double)d->cfg.beta, d->cfg.loss == RLHF_DPO_IPO ? "ipo" : d->cfg.loss == RLHF_DPO_HINGE ? "hinge"
                  : d->cfg.loss == RLHF_DPO_SIMPO ? "simpo (no reference)"
                  : d->cfg.label_smoothing > 0 ? "sigmoid (cDPO)" : "sigmoid");
    return RLHF_OK;
}

RLHFDEF rlhf_dpo_config rlhf_dpo_config_default(void) {
    rlhf_dpo_config c;
    c.beta = 0.1f;
    c.loss = RLHF_DPO_SIGMOID;
    c.label_smoothing = 0.0f;
    c.precompute_ref = 0;
    c.simpo_gamma = 0.5f;
    return c;
}
RLHFDEF rlhf_train_options rlhf_train_options_dpo(void) {
    rlhf_train_options o = rlhf_train_options_reward(); /* the same schedule and batches */
    o.opt.lr = 1e-6f;
    return o;
}

RLHFDEF rlhf_result rlhf_dpo_train(rlhf_model *m, rlhf_model *ref, const rlhf_tokenizer *t, const rlhf_dataset *train,
                                   const rlhf_dataset *val, const rlhf_dpo_config *dc, const rlhf_train_options *o,
                                   rlhf_train_report *rep_out, rlhf_error *err) {
    rlhf__trainrun run;
    rlhf__dpo_stage d;
    rlhf__stage st;
    rlhf_rng rng;
    rlhf_result r;
    if (!rlhf__run_begin(&run, "dpo", m, t, train, o, err, &r)) return r;
    memset(&d, 0, sizeof d);
    d.cfg = dc ? *dc : rlhf_dpo_config_default();
    if (d.cfg.loss == RLHF_DPO_SIMPO) ref = NULL; /* reference-free */
    else if (!ref || ref == m)
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT, "a reference model other than the policy is required");
    if (ref && memcmp(&ref->cfg, &m->cfg, sizeof m->cfg) != 0)
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT, "the reference's config differs from the policy's");
    if (!(d.cfg.beta > 0.0f) || !isfinite(d.cfg.beta) || (int)d.cfg.loss < 0 || (int)d.cfg.loss > 3 ||
        !(d.cfg.label_smoothing >= 0.0f && d.cfg.label_smoothing < 0.5f) ||
        !(d.cfg.simpo_gamma >= 0.0f && d.cfg.simpo_gamma < 1e6f))
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT, "beta %g must be > 0, label_smoothing %g in [0, 0.5), "
                              "simpo_gamma %g finite and >= 0, loss 0 to 3", (double)d.cfg.beta,
                              (double)d.cfg.label_smoothing, (double)d.cfg.simpo_gamma);
    if (d.cfg.label_smoothing > 0.0f && d.cfg.loss != RLHF_DPO_SIGMOID && d.cfg.loss != RLHF_DPO_SIMPO)
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT,
                              "label_smoothing %g applies to the sigmoid and simpo losses only (cDPO), not to %s",
                              (double)d.cfg.label_smoothing, d.cfg.loss == RLHF_DPO_IPO ? "ipo" : "hinge");
    if (o->resume_step <= 0) rlhf__fresh_optimizer(m);
    d.ref = ref;
    memset(&st, 0, sizeof st);
    st.kind = "policy";
    st.preference = 1;
    st.order_restarts = 1;
    st.grads = rlhf__dpo_grads;
    st.validate = rlhf__dpo_validate;
    st.metrics = rlhf__dpo_metrics;
    st.self = &d;
    rlhf_rng_seed(&rng, o->seed);
    if ((r = rlhf__dpo_setup(&run, &d, &st, t, train, val)) == RLHF_OK) r = rlhf__train_loop(&run, &st, &rng, t);

    run.rep.seconds = rlhf__seconds() - run.t0;
    if (rep_out) *rep_out = run.rep;
    rlhf__free(st.order); rlhf__free(d.vidx); rlhf__free(d.inputs); rlhf__free(d.targets); rlhf__free(d.logp);
    rlhf__free(d.dlogp); rlhf__free(d.seq); rlhf__free(d.ref_ex); rlhf__free(d.ref_vex);
    rlhf__ex_free(&d.ex); rlhf__ex_free(&d.vex);
    rlhf__free(run.line.p);
    return r;
}

// ----------------------------------------------------------------------------
// >>kto  KTO: preference from unpaired labels
// ----------------------------------------------------------------------------
//
// KTO (Ethayarajh et al. 2024, eq. 8; TRL's KTOTrainer) learns from single
// completions labelled desirable or not, no pairs needed. With the implied
// reward h = log pi(y|x) - log pi_ref(y|x) and a reference point z, the KL
// of the policy to the reference estimated on mismatched pairs (x with the
// completion y' of another record), clamped at 0 and held constant:
//
//   desirable     l = w_d (1 - sigmoid(beta (h - z)))
//   undesirable   l = w_u (1 - sigmoid(beta (z - h)))
//
// and, from d sigmoid(x)/dx = sigmoid(x) sigmoid(-x),
//
//   desirable     dl/dh = -w_d beta sigmoid(beta (h - z)) sigmoid(-beta (h - z))
//   undesirable   dl/dh = +w_u beta sigmoid(beta (z - h)) sigmoid(-beta (z - h))
//
// Example: beta 0.1, z 0.5, a desirable completion with h = 2.5: beta
// (h - z) = 0.2, l = 1 - sigmoid(0.2) = 0.4502, dl/dh = -0.1 x 0.5498 x
// 0.4502 = -0.0248: the step raises log pi(y|x).

RLHFDEF float rlhf_kto_loss(const float *policy, const float *ref, const int *label, int n, float kl, float beta,
                            float desirable_weight, float undesirable_weight, float *d_policy) {
    double sum = 0.0, b = beta;
    int i;
    if (!policy || !ref || !label || n <= 0) return 0.0f;
    for (i = 0; i < n; i++) {
        /* x = beta (h - z) for a desirable completion, beta (z - h) for an undesirable one */
        double h = (double)policy[i] - ref[i], x = label[i] ? b * (h - kl) : b * (kl - h);
        double w = label[i] ? desirable_weight : undesirable_weight;
        double sp = rlhf__sigmoid_neg(-x), sn = rlhf__sigmoid_neg(x); /* sigmoid(x), sigmoid(-x) */
        sum += w * sn;                                               /* 1 - sigmoid(x) = sigmoid(-x) */
        if (d_policy) d_policy[i] = (float)((label[i] ? -1.0 : 1.0) * w * b * sp * sn / n);
    }
    return (float)(sum / n);
}

/* ---- the KTO stage: the DPO stage's machinery on groups of one -------------- */

typedef struct rlhf__kto_stage {
    rlhf__dpo_stage d;        /* buffers, reference, forwards; d.ex, d.vex: each record's completion (K = 1) */
    rlhf__examples kl, vkl;   /* the same records' prompts with the next record's completion (z's pairs) */
    float *ref_kl, *ref_vkl;  /* their reference log-probs, when precomputed */
    int *lab, *vlab;          /* per record: 1 desirable, 0 undesirable */
    rlhf_kto_config cfg;
    double m[7];              /* a step's sums: desirable, undesirable, their rewards beta h, their log-probs, z */
} rlhf__kto_stage;

/* Record i of d and its mismatched twin (its prompt, record (i + 1) mod n's
   completion), one example group each in ex and kl, or neither when either
   does not fit (counted as skipped). */
static rlhf_result rlhf__kto_add(rlhf__trainrun *run, const rlhf_tokenizer *t, const rlhf_dataset *d, size_t i,
                                 int seq_len, rlhf__fitbuf *fb, int *row, unsigned char *mask, rlhf__examples *ex,
                                 rlhf__examples *kl, rlhf_fit_report *fit, int *added) {
    const rlhf_record *rec = rlhf_dataset_record(d, i), *next = rlhf_dataset_record(d, (i + 1) % rlhf_dataset_size(d));
    rlhf_record twin = *rec;
    int len[2], np[2], k;
    rlhf_result r;
    *added = 0;
    if (rec->kind != RLHF_RECORD_UNPAIRED)
        return rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT, "line %zu: not an unpaired preference record "
                              "({\"prompt\", \"completion\", \"label\"})", rec->line);
    twin.completion = next->completion;
    twin.completion_messages = next->completion_messages;
    twin.n_completion_messages = next->n_completion_messages;

    /* the twin first (its fit is not the record's count); then the record itself */
    r = rlhf__pref_fit(t, &twin, (size_t)seq_len, fb, row + seq_len, &len[1], &np[1], NULL);
    if (r == RLHF_OK) r = rlhf__pref_fit(t, rec, (size_t)seq_len, fb, row, &len[0], &np[0], fit);
    else if (r == RLHF_ERR_CONTEXT_FULL) fit->skipped++;
    if (r == RLHF_ERR_CONTEXT_FULL) return RLHF_OK;
    if (r != RLHF_OK) return rlhf__run_fail(run, r, "line %zu: cannot encode the record: %s", rec->line,
                                            rlhf_result_string(r));
    for (k = 0; k < 2; k++) {
        rlhf__examples *e = k ? kl : ex;
        memset(mask, 0, (size_t)np[k]);
        memset(mask + np[k], 1, (size_t)(seq_len - np[k]));
        if (!rlhf__ex_add(e, row + (size_t)k * (size_t)seq_len, mask, len[k]) || !rlhf__ex_group(e, e->n - 1, 1))
            return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
    }
    *added = 1;
    return RLHF_OK;
}

/* Every record of d into ex and kl (aligned: group g of each is record
   g's), its label into *lab. */
static rlhf_result rlhf__kto_examples(rlhf__trainrun *run, const rlhf_tokenizer *t, const rlhf_dataset *d, int seq_len,
                                      rlhf__examples *ex, rlhf__examples *kl, int **lab, rlhf_fit_report *fit) {
    rlhf__fitbuf fb;
    int *row = (int *)rlhf__alloc(2 * (size_t)seq_len * sizeof(int)), added;
    unsigned char *mask = (unsigned char *)rlhf__alloc((size_t)seq_len);
    size_t i;
    rlhf_result r = RLHF_OK;
    memset(&fb, 0, sizeof fb);
    *lab = (int *)rlhf__alloc((rlhf_dataset_size(d) + 1) * sizeof(int));
    if (!row || !mask || !*lab) r = rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
    for (i = 0; i < rlhf_dataset_size(d) && r == RLHF_OK; i++) {
        r = rlhf__kto_add(run, t, d, i, seq_len, &fb, row, mask, ex, kl, fit, &added);
        if (r == RLHF_OK && added) (*lab)[ex->ng - 1] = rlhf_dataset_record(d, i)->label != 0;
    }
    rlhf__fitbuf_free(&fb);
    rlhf__free(row);
    rlhf__free(mask);
    return r;
}

/* z, the reference point: mean over groups[0..n) of log pi - log pi_ref of
   their mismatched twins (no backward), clamped at 0 */
static rlhf_result rlhf__kto_z(rlhf__trainrun *run, rlhf__kto_stage *k, const rlhf__examples *kl, const float *ref_pre,
                               const size_t *groups, size_t n, double *z) {
    size_t g, take;
    double sum = 0.0;
    int B, T, b;
    rlhf_result r;
    for (g = 0; g < n; g += take) {
        take = rlhf__rm_take(kl, groups, g, n, k->d.micro);
        if ((r = rlhf__dpo_forward(run, &k->d, kl, ref_pre, groups + g, take, 0, &B, &T)) != RLHF_OK) return r;
        for (b = 0; b < B; b++) sum += (double)k->d.seq[b] - k->d.rseq[b];
    }
    *z = n ? sum / (double)n : 0.0;
    if (*z < 0.0) *z = 0.0;
    return RLHF_OK;
}

/* The loss of groups[0..n) (one forward's worth, log-probs in d.seq and
   d.rseq) at z, its gradient times scale into d.dseq (grad) and the
   metric sums into m; returns the loss summed over the records. */
static double rlhf__kto_losses(rlhf__kto_stage *k, const int *lab, const size_t *groups, size_t n, double z, int grad,
                               double scale, double *m) {
    int labels[1024], b;
    double loss;
    labels[0] = 0;
    for (b = 0; b < (int)n && b < 1024; b++) labels[b] = lab[groups[b]];
    loss = rlhf_kto_loss(k->d.seq, k->d.rseq, labels, (int)n, (float)z, k->cfg.beta, k->cfg.desirable_weight,
                         k->cfg.undesirable_weight, grad ? k->d.dseq : NULL) * (double)n;
    for (b = 0; b < (int)n; b++) {
        int u = !labels[b]; /* m: count, reward beta h, log-prob; desirable at 0, 2, 4, undesirable at 1, 3, 5 */
        if (grad) k->d.dseq[b] = (float)(k->d.dseq[b] * (double)n * scale);
        m[u] += 1.0;
        m[2 + u] += k->cfg.beta * ((double)k->d.seq[b] - k->d.rseq[b]);
        m[4 + u] += k->d.seq[b];
    }
    return loss;
}

/* The gradient of the step's loss, the mean of the KTO loss over its records */
static rlhf_result rlhf__kto_grads(void *self, rlhf__trainrun *run, const size_t *units, size_t n, long step,
                                   rlhf__step_out *s) {
    rlhf__kto_stage *k = (rlhf__kto_stage *)self;
    size_t g, take;
    double z;
    int B, T, b, t;
    rlhf_result r;
    memset(k->m, 0, sizeof k->m);
    if ((r = rlhf__kto_z(run, k, &k->kl, k->ref_kl, units, n, &z)) != RLHF_OK) return r;
    k->m[6] = z;
    for (g = 0; g < n; g += take) {
        /* forward, the loss at z, d loss / d logp at every completion token (the row's: a sum), backward */
        take = rlhf__rm_take(&k->d.ex, units, g, n, k->d.micro);
        if ((r = rlhf__dpo_forward(run, &k->d, &k->d.ex, k->d.ref_ex, units + g, take, 1, &B, &T)) != RLHF_OK)
            return r;
        run->rep.tokens += (double)B * T;
        s->loss += rlhf__kto_losses(k, k->lab, units + g, take, z, 1, 1.0 / (double)n, k->m);
        for (b = 0; b < B; b++)
            for (t = 0; t < T; t++)
                k->d.dlogp[(ptrdiff_t)b * T + t] = k->d.targets[(ptrdiff_t)b * T + t] < 0 ? 0.0f : k->d.dseq[b];
        if (!isfinite(s->loss)) {
            s->finite = 0;
            break;
        }
        if ((r = rlhf_model_backward_logprobs(run->m, k->d.dlogp, NULL)) != RLHF_OK) {
            if (r != RLHF_ERR_NON_FINITE)
                return rlhf__run_fail(run, r, "step %ld: %s", step + 1, rlhf_model_last_error(run->m));
            s->finite = 0;
            break;
        }
    }
    s->loss /= (double)n;
    return RLHF_OK;
}

/* TRL's names for the step's KTO metrics (means where TRL logs sums) */
static void rlhf__kto_metrics(void *self, rlhf__trainrun *run) {
    const double *m = ((const rlhf__kto_stage *)self)->m;
    rlhf__metric(run, "count/chosen", m[0]);
    rlhf__metric(run, "count/rejected", m[1]);
    rlhf__metric(run, "rewards/chosen", m[0] > 0 ? m[2] / m[0] : NAN);
    rlhf__metric(run, "rewards/rejected", m[1] > 0 ? m[3] / m[1] : NAN);
    rlhf__metric(run, "logps/chosen", m[0] > 0 ? m[4] / m[0] : NAN);
    rlhf__metric(run, "logps/rejected", m[1] > 0 ? m[5] / m[1] : NAN);
    rlhf__metric(run, "kl", m[6]);
}

/* Validation: z over the validation records, the mean loss, and the share
   of records on their label's side of it (beta h > beta z when desirable) */
static rlhf_result rlhf__kto_validate(void *self, rlhf__trainrun *run, long step) {
    rlhf__kto_stage *k = (rlhf__kto_stage *)self;
    const rlhf__examples *vx = k->d.has_val ? &k->d.vex : &k->d.ex, *vk = k->d.has_val ? &k->vkl : &k->kl;
    const float *pre = k->d.has_val ? k->d.ref_vex : k->d.ref_ex, *pre_kl = k->d.has_val ? k->ref_vkl : k->ref_kl;
    const int *lab = k->d.has_val ? k->vlab : k->lab;
    double loss = 0.0, m[7] = {0}, z, right = 0.0;
    size_t g, take;
    int B, T, b;
    rlhf_result r;
    if ((r = rlhf__kto_z(run, k, vk, pre_kl, k->d.vidx, k->d.n_v, &z)) != RLHF_OK) return r;
    for (g = 0; g < k->d.n_v; g += take) {
        take = rlhf__rm_take(vx, k->d.vidx, g, k->d.n_v, k->d.micro);
        if ((r = rlhf__dpo_forward(run, &k->d, vx, pre, k->d.vidx + g, take, 0, &B, &T)) != RLHF_OK) return r;
        loss += rlhf__kto_losses(k, lab, k->d.vidx + g, take, z, 0, 0.0, m);
        for (b = 0; b < B; b++) right += (k->d.seq[b] - k->d.rseq[b] > z) == (lab[k->d.vidx[g + (size_t)b]] != 0);
    }
    run->rep.val_loss = k->d.n_v ? (float)(loss / (double)k->d.n_v) : NAN;
    run->rep.val_accuracy = k->d.n_v ? (float)(right / (double)k->d.n_v) : NAN;
    rlhf__metric_begin(run, step);
    rlhf__metric(run, "val/loss", run->rep.val_loss);
    rlhf__metric(run, "val/accuracy", run->rep.val_accuracy);
    rlhf__metric(run, "val/kl", z);
    rlhf__metric_end(run);
    rlhf__run_log(run, RLHF_LOG_INFO, "step %ld validation loss %.4f, %.3f of the records on their label's side, "
                  "kl %.4f (%zu records)", step, (double)run->rep.val_loss, (double)run->rep.val_accuracy, z, k->d.n_v);
    return RLHF_OK;
}


/* The records (each with its mismatched twin), the split, the buffers, and
   the reference's pass when precomputed */
static rlhf_result rlhf__kto_setup(rlhf__trainrun *run, rlhf__kto_stage *k, rlhf__stage *st, const rlhf_tokenizer *t,
                                   const rlhf_dataset *train, const rlhf_dataset *val) {
    rlhf__dpo_stage *d = &k->d;
    const rlhf_train_options *o = run->o;
    rlhf_result r;
    d->seq_len = o->seq_len ? o->seq_len : run->m->cfg.n_ctx;
    d->micro = o->micro_batch > 0 ? o->micro_batch : o->batch_size;
    d->micro = d->micro > o->batch_size ? o->batch_size : d->micro > 1024 ? 1024 : d->micro;
    d->pad = rlhf_tokenizer_special(t, RLHF_TOKEN_PAD);
    d->has_val = val != NULL;
    if ((r = rlhf__kto_examples(run, t, train, d->seq_len, &d->ex, &k->kl, &k->lab, &run->rep.fit)) != RLHF_OK ||
        (val && (r = rlhf__kto_examples(run, t, val, d->seq_len, &d->vex, &k->vkl, &k->vlab, &run->rep.fit)) != RLHF_OK))
        return r;
    rlhf__fit_log(run, &run->rep.fit);
    r = rlhf__train_val(run, d->ex.ng, val != NULL, d->vex.ng, &st->order, &st->n_train, &d->vidx, &d->n_v);
    if (r != RLHF_OK) return r;
    if (st->n_train == 0)
        return rlhf__run_fail(run, RLHF_ERR_INVALID_ARGUMENT, "no record left to train on");
    st->n_val = d->n_v;
    run->rep.train_examples = (long)st->n_train;
    run->rep.val_examples = (long)d->n_v;

    /* buffers for micro sequences a forward */
    d->inputs = (int *)rlhf__alloc((size_t)d->micro * (size_t)d->seq_len * sizeof(int));
    d->targets = (int *)rlhf__alloc((size_t)d->micro * (size_t)d->seq_len * sizeof(int));
    d->logp = rlhf__alloc_floats((size_t)d->micro * (size_t)d->seq_len);
    d->dlogp = rlhf__alloc_floats((size_t)d->micro * (size_t)d->seq_len);
    d->seq = rlhf__alloc_floats(3 * (size_t)d->micro);
    if (!d->inputs || !d->targets || !d->logp || !d->dlogp || !d->seq)
        return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory for batches of %d sequences of %d tokens",
                              d->micro, d->seq_len);
    d->rseq = d->seq + d->micro, d->dseq = d->seq + 2 * (size_t)d->micro;
    if (o->recompute) rlhf_model_set_recompute(run->m, 1);
    if ((r = rlhf_model_reserve(run->m, d->micro, d->seq_len, 1)) != RLHF_OK)
        return rlhf__run_fail(run, r, "cannot reserve training memory for %d x %d: %s", d->micro, d->seq_len,
                              rlhf_model_last_error(run->m));

    /* the reference: every completion and twin now, or beside the policy in each step */
    if (k->cfg.precompute_ref) {
        d->ref_ex = rlhf__alloc_floats(d->ex.n + 1), d->ref_vex = rlhf__alloc_floats(d->vex.n + 1);
        k->ref_kl = rlhf__alloc_floats(k->kl.n + 1), k->ref_vkl = rlhf__alloc_floats(k->vkl.n + 1);
        if (!d->ref_ex || !d->ref_vex || !k->ref_kl || !k->ref_vkl)
            return rlhf__run_fail(run, RLHF_ERR_OUT_OF_MEMORY, "out of memory");
        if ((r = rlhf__dpo_ref_all(run, d, &d->ex, d->ref_ex)) != RLHF_OK ||
            (r = rlhf__dpo_ref_all(run, d, &d->vex, d->ref_vex)) != RLHF_OK ||
            (r = rlhf__dpo_ref_all(run, d, &k->kl, k->ref_kl)) != RLHF_OK ||
            (r = rlhf__dpo_ref_all(run, d, &k->vkl, k->ref_vkl)) != RLHF_OK)
            return r;
    }
    rlhf__run_log(run, RLHF_LOG_INFO, "%zu records to train on (and %zu held out), %ld steps of %d records, beta %g, weights %g / %g",
                  st->n_train, d->n_v, rlhf__run_steps(o, st->n_train), o->batch_size, (double)k->cfg.beta,
                  (double)k->cfg.desirable_weight, (double)k->cfg.undesirable_weight);
    return RLHF_OK;
}

RLHFDEF rlhf_kto_config rlhf_kto_config_default(void) {
    rlhf_kto_config c;
    c.beta = 0.1f;
    c.desirable_weight = c.undesirable_weight = 1.0f;
    c.precompute_ref = 0;
    return c;
}

/* the KTO run's allocations */
static void rlhf__kto_free(rlhf__kto_stage *k, rlhf__stage *st) {
    rlhf__dpo_stage *d = &k->d;
    rlhf__free(st->order); rlhf__free(d->vidx); rlhf__free(d->inputs); rlhf__free(d->targets); rlhf__free(d->logp);
    rlhf__free(d->dlogp); rlhf__free(d->seq); rlhf__free(d->ref_ex); rlhf__free(d->ref_vex);
    rlhf__free(k->ref_kl); rlhf__free(k->ref_vkl); rlhf__free(k->lab); rlhf__free(k->vlab);
    rlhf__ex_free(&d->ex); rlhf__ex_free(&d->vex); rlhf__ex_free(&k->kl); rlhf__ex_free(&k->vkl);
}

RLHFDEF rlhf_result rlhf_kto_train(rlhf_model *m, rlhf_model *ref, const rlhf_tokenizer *t, const rlhf_dataset *train,
                                   const rlhf_dataset *val, const rlhf_kto_config *kc, const rlhf_train_options *o,
                                   rlhf_train_report *rep_out, rlhf_error *err) {
    rlhf__trainrun run;
    rlhf__kto_stage k;
    rlhf__stage st;
    rlhf_rng rng;
    rlhf_result r;
    if (!rlhf__run_begin(&run, "kto", m, t, train, o, err, &r)) return r;
    memset(&k, 0, sizeof k);
    memset(&st, 0, sizeof st);
    k.cfg = kc ? *kc : rlhf_kto_config_default();
    k.d.cfg = rlhf_dpo_config_default(); /* the DPO stage's forwards: sums over the completion's tokens */
    if (!ref || ref == m || memcmp(&ref->cfg, &m->cfg, sizeof m->cfg) != 0)
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT,
                              "a reference model other than the policy, with the policy's config, is required");
    if (!(k.cfg.beta > 0.0f) || !isfinite(k.cfg.beta) || !(k.cfg.desirable_weight >= 0.0f) ||
        !(k.cfg.undesirable_weight >= 0.0f) || !isfinite(k.cfg.desirable_weight) || !isfinite(k.cfg.undesirable_weight))
        return rlhf__run_fail(&run, RLHF_ERR_INVALID_ARGUMENT, "beta %g must be > 0 and the weights finite and >= 0",
                              (double)k.cfg.beta);
    if (o->resume_step <= 0) rlhf__fresh_optimizer(m);
    k.d.ref = ref;
    st.kind = "policy";
    st.order_restarts = 1;
    st.grads = rlhf__kto_grads;
    st.validate = rlhf__kto_validate;
    st.metrics = rlhf__kto_metrics;
    st.self = &k;
    rlhf_rng_seed(&rng, o->seed);
    if ((r = rlhf__kto_setup(&run, &k, &st, t, train, val)) == RLHF_OK) r = rlhf__train_loop(&run, &st, &rng, t);

    run.rep.seconds = rlhf__seconds() - run.t0;
    if (rep_out) *rep_out = run.rep;
    rlhf__kto_free(&k, &st);
    rlhf__free(run.line.p);
    return r;
}

// ----------------------------------------------------------------------------
// >>bon  best-of-N and rejection sampling
// ----------------------------------------------------------------------------
//
// The simplest use of a reward model r: sample N replies y_1 .. y_N ~ pi(. | x)
// and keep y* = argmax_i r(x, y_i). As a policy at inference it trades N times
// the generation for reward; as data (expert iteration, Llama 2's rejection
// sampling), the y* become an SFT set and the policy is fine-tuned on them.
// Its KL to pi is often quoted as log N - (N - 1)/N (Stiennon et al. 2020),
// which is an upper bound (Beirami et al. 2024): N = 4 moves the policy by
// at most 0.64 nats per reply.
//
// Example: N = 4 replies scored 0.2, 1.3, -0.5, 1.3: the second is kept (the
// first of the two best).

RLHFDEF rlhf_result rlhf_best_of_n(rlhf_model *policy, rlhf_model *rm, rlhf_score_fn score_fn, void *score_user,
                                   const rlhf_tokenizer *t, const int *prompt, int n_prompt, int n, int max_new,
                                   const rlhf_sampler_config *sc, rlhf_rng *rng, int *best, int *n_best,
                                   float *scores, int *best_index) {
    rlhf_kv_cache *c = NULL;
    rlhf_sampler *smp = NULL;
    int *seq = NULL, i, nr, len, win = -1, stop;
    float score, top = -INFINITY;
    rlhf_result r;
    if (!policy) return RLHF_ERR_INVALID_ARGUMENT;
    if (n_best) *n_best = 0;
    if (!t || !prompt || n_prompt < 1 || n < 1 || max_new < 1 || !sc || !rng || !best || !n_best ||
        (!rm && !score_fn) || n_prompt + max_new > policy->cfg.n_ctx || (rm && n_prompt + max_new > rm->cfg.n_ctx))
        return rlhf__fail(policy, RLHF_ERR_INVALID_ARGUMENT,
                          "rlhf_best_of_n: need a prompt, n >= 1, max_new >= 1, a sampler config, an rng, room for the "
                          "reply, a reward model or score function, and n_prompt + max_new (%d) within n_ctx",
                          n_prompt + max_new);
    stop = rlhf_tokenizer_reply_end(t);
    seq = (int *)rlhf__alloc((size_t)(n_prompt + max_new + 1) * sizeof(int));
    if (!seq) return rlhf__fail(policy, RLHF_ERR_OUT_OF_MEMORY, "rlhf_best_of_n: out of memory");
    memcpy(seq, prompt, (size_t)n_prompt * sizeof(int));
    if ((r = rlhf_kv_cache_create(&c, policy, 1, n_prompt + max_new)) != RLHF_OK ||
        (r = rlhf_sampler_create(&smp, policy->cfg.vocab_size, sc)) != RLHF_OK)
        goto done;
    for (i = 0; i < n; i++) {
        /* reply i, then its score; the best so far is kept in best */
        if ((r = rlhf_model_generate(policy, c, smp, rng, prompt, n_prompt, max_new, stop, seq + n_prompt, &nr)) !=
            RLHF_OK)
            goto done;
        len = n_prompt + nr;
        if (rm) {
            /* a reply cut at max_new is scored at an <|end|>, as PPO scores it and as the reward
               model was normalised: appended, or over its last token when the context is full */
            int scored = len, kept = seq[len - 1];
            if (nr == 0 || seq[len - 1] != stop) {
                if (scored < rm->cfg.n_ctx) scored++;
                seq[scored - 1] = stop;
            }
            r = rlhf_reward_score_ids(rm, seq, NULL, &scored, 1, scored, &score);
            seq[len - 1] = kept; /* the reply as sampled again */
            if (r != RLHF_OK) {
                rlhf__fail(policy, r, "rlhf_best_of_n: reward model: %s", rlhf_model_last_error(rm));
                goto done;
            }
        } else {
            score = score_fn(score_user, prompt, n_prompt, seq + n_prompt, nr);
        }
        if (scores) scores[i] = score;
        if (win < 0 || score > top || (isnan(top) && !isnan(score))) { /* NaN never wins over a number */
            win = i, top = score;
            memcpy(best, seq + n_prompt, (size_t)nr * sizeof(int)); /* the reply as sampled, without that <|end|> */
            *n_best = nr;
        }
    }
    if (best_index) *best_index = win;
done:
    rlhf_kv_cache_free(c);
    rlhf_sampler_free(smp);
    rlhf__free(seq);
    return r;
}

/* ---- several rewards as one ---------------------------------------------------

   score(x, y) = sum_k w_k score_k(x, y). Example: a reward model that gives
   0.8 at weight 1 and a length penalty of -0.5 at weight 0.2: 0.8 - 0.1 = 0.7. */
RLHFDEF float rlhf_reward_mix_score(void *mix, const int *prompt, int n_prompt, const int *response, int n_response) {
    rlhf_reward_mix *m = (rlhf_reward_mix *)mix;
    double total = 0.0;
    int *ids = NULL, k, len, stop;
    if (!m || m->n < 1 || m->n > RLHF_MAX_REWARDS || n_prompt < 0 || n_response < 0) return NAN;
    for (k = 0; k < m->n; k++) {
        float s = NAN;
        if (!m->model[k] && m->fn[k]) s = m->fn[k](m->user[k], prompt, n_prompt, response, n_response);
        else if (m->model[k] && m->tokenizer) {
            /* prompt + reply, ending at <|end|>: appended, or over the last token when the context is full */
            if (!ids) ids = (int *)rlhf__alloc(((size_t)n_prompt + (size_t)n_response + 1) * sizeof(int));
            if (!ids) return NAN;
            stop = rlhf_tokenizer_reply_end(m->tokenizer);
            memcpy(ids, prompt, (size_t)n_prompt * sizeof(int));
            memcpy(ids + n_prompt, response, (size_t)n_response * sizeof(int));
            len = n_prompt + n_response;
            if (n_response == 0 || response[n_response - 1] != stop) {
                if (len < m->model[k]->cfg.n_ctx) len++;
                ids[len - 1] = stop;
            }
            if (len > m->model[k]->cfg.n_ctx ||
                rlhf_reward_score_ids(m->model[k], ids, NULL, &len, 1, len, &s) != RLHF_OK)
                s = NAN;
        }
        m->last[k] = s;
        total += (double)m->weight[k] * s;
    }
    rlhf__free(ids);
    return (float)total;
}

// ----------------------------------------------------------------------------
// >>grpo  group-relative advantages: GRPO, Dr. GRPO, RLOO
// ----------------------------------------------------------------------------
//
// GRPO (Shao et al. 2024, DeepSeekMath, eq. 3 and section 4.1.2) and RLOO
// (Ahmadian et al. 2024) drop PPO's value model: each prompt gets G sampled
// replies with rewards r_1 .. r_G, and each reply's advantage is its reward
// against the others of its group (the baseline), the same for every token
// of the reply:
//
//   GRPO     A_i = (r_i - mean(r)) / (std(r) + 1e-4)   std with Bessel's
//                                                     correction, as TRL
//   Dr. GRPO A_i = r_i - mean(r)                       (Liu et al. 2025: the
//            division by std favours groups that are almost all right or
//            all wrong; they drop it)
//   RLOO     A_i = r_i - 1/(G-1) sum_{j != i} r_j      leave-one-out: the
//            baseline does not contain the reply's own reward
//
// The trainer is >>ppo's with estimator RLHF_EST_GRPO or RLHF_EST_RLOO
// (rlhf_ppo_config): G replies per prompt, these advantages, no critic, and
// the losses below (rlhf_grpo_loss, rlhf_rloo_loss). The KL to the
// reference enters GRPO's loss per token (beta k3_t, Shao et al. eq. 3) and
// RLOO's reward per reply (r_i = score_i - beta sum_t KL_t).
//
// Example, one group of G = 4 with rewards 1, 0, 0, 1: mean 0.5, std
// sqrt((4 x 0.25) / 3) = 0.5774, so GRPO gives +-0.5/0.5775 = +-0.8659,
// Dr. GRPO +-0.5 and RLOO 1 - 1/3 = 0.6667 and 0 - 2/3 = -0.6667. A group
// whose rewards are all equal teaches nothing (every A_i = 0): TRL counts
// those groups as frac_reward_zero_std.

RLHFDEF void rlhf_group_advantages(const float *rewards, int n_groups, int G,
                                   rlhf_advantage_type type, float *adv) {
    int g, i;
    if (!rewards || !adv || n_groups <= 0 || G <= 0) return;
    for (g = 0; g < n_groups; g++) {
        const float *r = rewards + (ptrdiff_t)g * G;
        float *a = adv + (ptrdiff_t)g * G;
        double sum = 0.0, mean, ss = 0.0, std;
        for (i = 0; i < G; i++) sum += r[i];
        mean = sum / G;
        for (i = 0; i < G; i++) ss += ((double)r[i] - mean) * ((double)r[i] - mean);
        std = G > 1 ? sqrt(ss / (G - 1)) : 0.0;
        for (i = 0; i < G; i++) { /* a may be r: each r[i] is read before a[i] is written */
            double ri = r[i], v;
            if (type == RLHF_ADV_RLOO) v = G > 1 ? ri - (sum - ri) / (G - 1) : 0.0;
            else if (type == RLHF_ADV_DR_GRPO) v = ri - mean;
            else v = G > 1 ? (ri - mean) / (std + 1e-4) : 0.0;
            a[i] = (float)v;
        }
    }
}


/* The clipped surrogate of one token or reply: l = max(-A r, -A clip(r, lo, hi)).
   Returns dl/dlog r (the clipped term, when it is the one used, is flat in
   r); *clipped = 1 then. */
static float rlhf__surrogate(float A, float r, float lo, float hi, float *l, int *clipped) {
    float rc = r < lo ? lo : r > hi ? hi : r;
    float u = -A * r, c = -A * rc;
    if (A == 0.0f) { /* nothing to learn, and no 0 x inf when r overflowed */
        *l = 0.0f, *clipped = 0;
        return 0.0f;
    }
    *clipped = c > u;
    *l = *clipped ? c : u;
    return *clipped ? 0.0f : -A * r;
}

/* GRPO's loss (Shao et al. 2024, eq. 3, in TRL's per-token form):
     L = agg_{i,t} [ max(-A_i r_t, -A_i clip(r_t, 1 - eps_low, 1 + eps_high)) + beta k3_t ]
   with the weight w_t of each token by the aggregation (|y_i| = lens[i]):
     SEQUENCE  w_t = 1 / (n_seq |y_i|)    every reply counts the same
     TOKEN     w_t = 1 / sum_i |y_i|      every token of the minibatch the same
     CONSTANT  w_t = 1 / (n_seq norm)     no length bias at all (Dr. GRPO)
     DAPO      w_t = 1 / norm             every token of the rollout the same
   and dL/dlogp_t = w_t (dl_t/dlogp_t + beta (1 - exp(ref_logp_t - logp_t))).
   Example: one reply of 2 tokens, A = 1, eps 0.2, beta 0, logp - old_logp
   = 0 and log 1.5: r = 1, 1.5; l = -1, -1.2 (the second clipped at 1.2);
   SEQUENCE L = -1.1, dL/dlogp = -0.5, 0. */
RLHFDEF float rlhf_grpo_loss(const float *logp, const float *old_logp, const float *ref_logp, const float *adv,
                             const int *lens, int n_seq, float eps_low, float eps_high, float beta, rlhf_loss_agg agg,
                             float norm, float *dlogp, float *clipfrac, float *mean_kl) {
    double loss = 0.0, kl_sum = 0.0, n_tok = 0.0;
    long n_clip = 0;
    size_t k = 0;
    int i, t;
    if (!logp || !old_logp || !adv || !lens || n_seq <= 0 || (beta != 0.0f && !ref_logp)) return NAN;
    for (i = 0; i < n_seq; i++) n_tok += lens[i];

    for (i = 0; i < n_seq; i++) {
        /* the weight of each of this reply's tokens */
        double w = agg == RLHF_AGG_TOKEN      ? 1.0 / (n_tok > 0 ? n_tok : 1.0)
                 : agg == RLHF_AGG_CONSTANT   ? 1.0 / ((double)n_seq * (norm > 0.0f ? norm : 1.0f))
                 : agg == RLHF_AGG_DAPO       ? 1.0 / (norm > 0.0f ? norm : 1.0f)
                 : lens[i] > 0                ? 1.0 / ((double)n_seq * lens[i])
                                              : 0.0;
        for (t = 0; t < lens[i]; t++, k++) {
            /* the surrogate, then k3 and its gradient 1 - exp(ref - logp) */
            float r = expf(logp[k] - old_logp[k]), l, g;
            int clipped;
            g = rlhf__surrogate(adv[i], r, 1.0f - eps_low, 1.0f + eps_high, &l, &clipped);
            n_clip += clipped;
            if (beta != 0.0f) {
                float d = ref_logp[k] - logp[k], e = expf(d), k3 = e - d - 1.0f;
                l += beta * k3;
                g += beta * (1.0f - e);
                kl_sum += k3;
            }
            loss += w * l;
            if (dlogp) dlogp[k] = (float)(w * g);
        }
    }
    if (clipfrac) *clipfrac = n_tok > 0 ? (float)((double)n_clip / n_tok) : 0.0f;
    if (mean_kl) *mean_kl = n_tok > 0 ? (float)(kl_sum / n_tok) : 0.0f;
    return (float)loss;
}

/* RLOO's loss (Ahmadian et al. 2024): REINFORCE with the leave-one-out
   baseline in A_i, on the whole reply's ratio R_i = pi(y_i) / pi_old(y_i):
     L = (1/n) sum_i max(-A_i R_i, -A_i clip(R_i, 1 - eps_low, 1 + eps_high))
     dL/dlogp_t = -A_i R_i / n for each token of y_i (0 when clipped)
   Example: A = (0.5, -0.5), replies of 3 and 1 tokens at R = 1: L = 0,
   dL/dlogp = -0.25, -0.25, -0.25, +0.25. */
RLHFDEF float rlhf_rloo_loss(const float *logp, const float *old_logp, const float *adv, const int *lens, int n_seq,
                             float eps_low, float eps_high, float *dlogp, float *clipfrac) {
    double loss = 0.0;
    long n_clip = 0;
    size_t k = 0, k0;
    int i, t;
    if (!logp || !old_logp || !adv || !lens || n_seq <= 0) return NAN;
    for (i = 0; i < n_seq; i++) {
        /* log R_i: the sum of the reply's log-ratios, in double */
        double lr = 0.0;
        float l, g;
        int clipped;
        for (k0 = k, t = 0; t < lens[i]; t++, k++) lr += (double)logp[k] - old_logp[k];
        g = rlhf__surrogate(adv[i], (float)exp(lr), 1.0f - eps_low, 1.0f + eps_high, &l, &clipped);
        n_clip += clipped;
        loss += l;
        if (dlogp)
            for (t = 0; t < lens[i]; t++) dlogp[k0 + (size_t)t] = g / (float)n_seq;
    }
    if (clipfrac) *clipfrac = (float)n_clip / (float)n_seq;
    return (float)(loss / n_seq);
}

#endif /* RLHF_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 the rlhf.h authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
