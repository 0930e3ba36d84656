/* bench.c - how fast is rlhf.h here? A tool, never a test: it prints timings.

   Measures (DESIGN.md, "Performance"):
     train  ms/step, tokens/s and GFLOP/s of rlhf_model_train_step on configs S and M
     gemm   GFLOP/s of the matmul kernel rlhf__gemm on every matmul shape of a training
            step, side by side with OpenBLAS's cblas_sgemm if built with -DRLHF_BENCH_OPENBLAS
     kernels  where a config-S step's time goes: matmuls, attention, GELU, LayerNorm,
            cross-entropy, AdamW, other; and attention's share of a layer at T = 128..1024
     gen    tokens/s of KV-cache decoding, one sequence and a batch of sequences
     rm     ms per reward-model step (values, ranking loss, backward, AdamW) on config S,
            beside the LM training step of the same shape
     ppo    one PPO iteration on config S: time split (generation, scoring, learning)
            and tokens generated per second
     recompute  activation recompute (rlhf_model_set_recompute): memory budgets, peak RSS
            and step time with and without, on S and (with --only recompute) on M at T = 1024
     busy   (--busy) with a process spinning on one CPU for the whole run: the S step on
            1 thread and on all threads, the ratio (issue 14's goal: <= 1.15x)

   Build (the Makefile passes its flags in RLHF_BENCH_CFLAGS so the output records them):
     gcc -std=c99 -O2 -march=native -fopenmp -I. tools/bench.c -o build/bench -lm
     ... -DRLHF_BENCH_OPENBLAS tools/bench.c -o build/bench -lopenblas -lm
   Run with the same thread count for both libraries, on an otherwise idle machine
   (an OpenMP thread that has to share its CPU makes every barrier wait for it):
     OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 OPENBLAS_THREAD_TIMEOUT=4 ./build/bench [--quick] [--only ...]
   (OPENBLAS_THREAD_TIMEOUT=4: OpenBLAS's threads stop spinning soon after each call,
   instead of holding the CPUs that our threads are timed on next)

   FLOP counts (one multiply-add = 2 FLOPs):
     matmul (M,K)x(K,N):  2*M*N*K
     training step:       6*N*B*T + 6*L*B*T*T*C
       6*N*B*T: each of the N parameters takes part in one multiply-add per token in
       the forward pass (2 FLOPs) and two in the backward (dX and dW: 4 FLOPs). N counts
       every parameter except wpe (a lookup, never multiplied; wte counts once, as the
       LM head). Biases and LayerNorm weights are counted too: < 0.2% of N.
       6*L*B*T*T*C: causal attention. Per layer the forward does T*T/2 (query, key)
       pairs per sequence and head, each a hs-long dot (q.k) and axpy (att*v): 4*hs
       FLOPs, so 2*B*T*T*C; the backward does twice that (4 dots/axpys per pair).
     GELU, LayerNorm, softmax, cross-entropy and AdamW are not counted, so a step's
     GFLOP/s understates the work done. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_setaffinity, for --busy */
#endif
#define _POSIX_C_SOURCE 199309L
#define RLHF_IMPLEMENTATION
#include "rlhf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <sys/types.h>
#include <sys/wait.h> /* waitpid */
#include <unistd.h>   /* fork, getppid */
#if defined(__linux__)
#include <sched.h>
#endif
#ifdef RLHF_BENCH_OPENBLAS
#include <cblas.h>
#endif

#ifndef RLHF_BENCH_CFLAGS
#define RLHF_BENCH_CFLAGS "unknown"
#endif
#ifdef __VERSION__
#define BENCH_COMPILER __VERSION__
#else
#define BENCH_COMPILER "unknown"
#endif

static int g_json = 0; /* --json: also print one JSON line per result */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Other processes on the machine steal CPU time from the timings, and an OpenMP
   thread that has to share its CPU makes every barrier wait for it. So each section
   reports the CPU time used by everything else while it ran: the machine's busy
   time (Linux /proc/stat: user, nice, system, irq, softirq, and steal by the
   hypervisor) minus this process's CPU time. See report_others below. */
typedef struct { double wall, busy, ours; } usage_mark;
static usage_mark usage_now(void) {
    usage_mark u = {0.0, 0.0, 0.0};
    unsigned long long v[8];
    struct timespec ts;
    FILE *f = fopen("/proc/stat", "r");
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                    &v[6], &v[7]) == 8)
        u.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100.0; /* USER_HZ, 100 on Linux */
    if (f) fclose(f);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    u.ours = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    u.wall = now_s();
    return u;
}
/* The FP32 FMA peak of the threads, now: 12 independent chains of FMAs each
   (enough to hide the FMA latency on both FMA ports), of the widest vectors the
   build has: AVX-512 when rlhf.h's matmul uses it (RLHF__AVX512), else AVX2. On
   an AVX-512 host, a build without it (-mno-avx512f) reports the AVX2 peak, the
   bound of what that build can reach. Best of 20 tries, GFLOP/s, or 0 without
   AVX2. Compare it with REFERENCES.md ("Hardware here"): two vCPUs that share a
   physical core give ~1x, not ~2x, the one-thread figure. */
#if defined(RLHF__AVX512)
#define PEAK_LANES 16
typedef __m512 peak_vec;
#define PEAK_SET1 _mm512_set1_ps
#define PEAK_FMA _mm512_fmadd_ps
#define PEAK_ADD _mm512_add_ps
/* the sum of the 16 lanes as two halves (_mm512_reduce_add_ps needs GCC 7) */
#define PEAK_SUM(v) \
    rlhf__hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), \
                                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))))
#define PEAK_NAME "AVX-512"
#elif defined(RLHF__AVX2)
#define PEAK_LANES 8
typedef __m256 peak_vec;
#define PEAK_SET1 _mm256_set1_ps
#define PEAK_FMA _mm256_fmadd_ps
#define PEAK_ADD _mm256_add_ps
#define PEAK_SUM rlhf__hsum256
#define PEAK_NAME "AVX2"
#else
#define PEAK_NAME "no"
#endif
#if defined(RLHF__AVX2)
static volatile float g_sink; /* the peak loops' result goes here, so they cannot be optimised away */
#endif
static double fma_peak(void) {
    double best = 0.0;
#if defined(RLHF__AVX2)
    const long iters = 5000000;
    int try_;
    float sink = 0.0f;
    for (try_ = 0; try_ < 20; try_++) { /* ~0.2 s: past the start-up of new threads */
        double t0 = now_s(), gflops;
        RLHF__OMP(omp parallel reduction(+ : sink))
        {
            /* distinct start values, or the compiler merges the 12 identical chains into one */
            peak_vec a0 = PEAK_SET1(sink), d = PEAK_SET1(1.0f), a1 = PEAK_ADD(a0, d);
            peak_vec a2 = PEAK_ADD(a1, d), a3 = PEAK_ADD(a2, d), a4 = PEAK_ADD(a3, d);
            peak_vec a5 = PEAK_ADD(a4, d), a6 = PEAK_ADD(a5, d), a7 = PEAK_ADD(a6, d);
            peak_vec a8 = PEAK_ADD(a7, d), a9 = PEAK_ADD(a8, d), a10 = PEAK_ADD(a9, d);
            peak_vec a11 = PEAK_ADD(a10, d), x = PEAK_SET1(0.999f), y = PEAK_SET1(1e-3f);
            long i;
            for (i = 0; i < iters; i++) {
                a0 = PEAK_FMA(a0, x, y); a1 = PEAK_FMA(a1, x, y); a2 = PEAK_FMA(a2, x, y);
                a3 = PEAK_FMA(a3, x, y); a4 = PEAK_FMA(a4, x, y); a5 = PEAK_FMA(a5, x, y);
                a6 = PEAK_FMA(a6, x, y); a7 = PEAK_FMA(a7, x, y); a8 = PEAK_FMA(a8, x, y);
                a9 = PEAK_FMA(a9, x, y); a10 = PEAK_FMA(a10, x, y); a11 = PEAK_FMA(a11, x, y);
            }
            a0 = PEAK_ADD(PEAK_ADD(PEAK_ADD(a0, a1), PEAK_ADD(a2, a3)), PEAK_ADD(PEAK_ADD(a4, a5), PEAK_ADD(a6, a7)));
            sink += PEAK_SUM(PEAK_ADD(a0, PEAK_ADD(PEAK_ADD(a8, a9), PEAK_ADD(a10, a11))));
        }
        gflops = 2.0 * PEAK_LANES * 12 * iters * rlhf_num_threads() / (now_s() - t0) * 1e-9;
        best = gflops > best ? gflops : best;
    }
    g_sink = sink;
#endif
    return best;
}

/* The streaming read bandwidth of the threads, now, GB/s: a sum over 256 MiB (eight
   times this machine's L3) in a block allocated as the weights are (rlhf.h's
   parameter blocks: huge pages where Linux gives them), each thread its
   contiguous part, read as four runs side
   by side (one core reads several runs faster than one: the prefetchers keep more
   lines in flight). Best of 6 passes, after one that touches the pages. Integer
   adds: no SIMD needed, and far faster than the memory on any core. */
static volatile uint64_t g_bw_sink;
static double mem_bandwidth(void) {
    const size_t n = (size_t)32 << 20; /* 64-bit words: 256 MiB */
    uint64_t *a = (uint64_t *)rlhf__alloc_aligned(n * sizeof(uint64_t), 1), sum = 0; /* as the weights' block */
    double best = 0.0;
    int pass;
    ptrdiff_t i;
    if (!a) return 0.0;
    RLHF__OMP(omp parallel for schedule(static))
    for (i = 0; i < (ptrdiff_t)n; i++) a[i] = (uint64_t)i;
    for (pass = 0; pass < 6; pass++) {
        double t0 = now_s(), gbs;
        RLHF__OMP(omp parallel reduction(+ : sum))
        {
            int nt = rlhf_num_threads(), t = 0;
            size_t part, q, j;
            const uint64_t *p;
            uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#ifdef _OPENMP
            nt = omp_get_num_threads(), t = omp_get_thread_num();
#endif
            part = n / (size_t)nt, q = part / 4, p = a + (size_t)t * part;
            for (j = 0; j < q; j++) s0 += p[j], s1 += p[q + j], s2 += p[2 * q + j], s3 += p[3 * q + j];
            sum += s0 + s1 + s2 + s3;
        }
        gbs = (double)n * sizeof(uint64_t) / (now_s() - t0) * 1e-9;
        best = gbs > best ? gbs : best;
    }
    g_bw_sink = sum;
    rlhf__free(a);
    return best;
}

static double g_peak0; /* the FMA peak at the start */
/* After a section: warn if other processes used CPU time while it ran, or if the FMA
   peak has dropped (the hypervisor gave our vCPUs less: a busy sibling hyperthread,
   a shared physical core), both invisible to the timings themselves. */
static void report_others(usage_mark start) {
    usage_mark end = usage_now();
    double others = (end.busy - start.busy) - (end.ours - start.ours), wall = end.wall - start.wall;
    double peak = fma_peak();
    if (start.busy > 0.0 && others > 0.05 * wall)
        printf("WARNING: other processes kept %.2f CPUs busy during this section: its timings are unreliable\n",
               others / wall);
    if (peak < 0.85 * g_peak0)
        printf("WARNING: FMA peak now %.1f GFLOP/s, %.0f%% of the start's: the CPUs are shared, timings unreliable\n",
               peak, 100.0 * peak / g_peak0);
}

static void die(const char *what, rlhf_result r) {
    fprintf(stderr, "bench: %s failed: %s\n", what, rlhf_result_string(r));
    exit(1);
}
static void *xmalloc(size_t bytes) {
    void *p = rlhf__alloc(bytes); /* 64-byte aligned */
    if (!p) die("allocation", RLHF_ERR_OUT_OF_MEMORY);
    return p;
}

/* A benchmark configuration: the model and its (B,T) training batch. */
typedef struct { const char *name; rlhf_config cfg; int B, T; } bench_config;
/*                                  V      n_ctx  L   NH  C     B  T */
static const bench_config CONFIG_S = {"S", {512, 128, 4, 4, 256}, 8, 128};
static const bench_config CONFIG_M = {"M", {50257, 1024, 12, 12, 768}, 4, 64}; /* GPT-2 124M */

static int random_token(rlhf_rng *rng, int V) { return (int)(rlhf_rng_u64(rng) % (uint64_t)V); }

/* ---- 1. training step ------------------------------------------------------- */
static void bench_train(const bench_config *bc, int warmup, int steps) {
    const rlhf_config *c = &bc->cfg;
    const double MiB = 1024.0 * 1024.0;
    int B = bc->B, T = bc->T, BT = B * T, i;
    int *x = (int *)xmalloc((size_t)BT * sizeof(int)), *y = (int *)xmalloc((size_t)BT * sizeof(int));
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m;
    rlhf_memory mem;
    rlhf_rng rng;
    rlhf_result r;
    double t0, t1, sec, best = 1e30, flops, n_matmul;
    float loss0 = 0.0f, loss = 0.0f;

    printf("\n== training step, config %s: V %d, n_ctx %d, L %d, NH %d, C %d, B %d, T %d ==\n", bc->name,
           c->vocab_size, c->n_ctx, c->n_layer, c->n_head, c->n_embd, B, T);
    if ((r = rlhf_model_create(&m, c, 1)) != RLHF_OK) die("rlhf_model_create", r);
    if ((r = rlhf_model_memory(m, B, T, 1, &mem)) != RLHF_OK) die("rlhf_model_memory", r);
    printf("%zu parameters; memory MiB: params %.1f, grads %.1f, AdamW %.1f, activations %.1f, "
           "backward %.1f, workspace %.1f, total %.1f\n", rlhf_model_num_params(m), mem.params / MiB,
           mem.grads / MiB, mem.optimizer / MiB, mem.activations / MiB, mem.backward / MiB,
           mem.workspace / MiB, mem.total / MiB);
    fflush(stdout);
    if ((r = rlhf_model_reserve(m, B, T, 1)) != RLHF_OK) die("rlhf_model_reserve", r);

    rlhf_rng_seed(&rng, 7);
    for (i = 0; i < BT; i++) x[i] = random_token(&rng, c->vocab_size), y[i] = random_token(&rng, c->vocab_size);
    for (i = 0; i < warmup; i++) /* touches the activation pages for the first time, warms the caches */
        if ((r = rlhf_model_train_step(m, x, y, B, T, &opt, &loss0)) != RLHF_OK) die("rlhf_model_train_step", r);
    for (sec = 0.0, i = 0; i < steps; i++) {
        t0 = now_s();
        if ((r = rlhf_model_train_step(m, x, y, B, T, &opt, &loss)) != RLHF_OK) die("rlhf_model_train_step", r);
        t1 = now_s() - t0;
        sec += t1 / steps; /* the mean */
        best = t1 < best ? t1 : best;
        if (i == 0 && warmup == 0) loss0 = loss;
    }

    n_matmul = (double)rlhf_model_num_params(m) - (double)c->n_ctx * c->n_embd; /* all but wpe */
    flops = 6.0 * n_matmul * BT + 6.0 * c->n_layer * (double)B * T * T * c->n_embd;
    printf("%d warm-up + %d timed steps (loss %.3f -> %.3f on one repeated batch)\n", warmup, steps, loss0, loss);
    printf("%-8s %10s %10s %10s %12s %14s\n", "config", "ms/step", "tokens/s", "GFLOP/s", "GFLOP/step", "best ms/step");
    printf("%-8s %10.1f %10.0f %10.1f %12.2f %14.1f\n", bc->name, 1e3 * sec, BT / sec, flops / sec * 1e-9, flops * 1e-9,
           1e3 * best);
    printf("(FLOPs/step = 6*N*B*T + 6*L*B*T*T*C, N = %.0f parameters without wpe)\n", n_matmul);
    if (g_peak0 > 0.0) /* the yardstick: the step against all its FLOPs at the FMA peak */
        printf("FMA bound %.1f ms (the step's FLOPs at the peak probed at the start, %.1f GFLOP/s): "
               "mean %.2fx, best %.2fx the bound\n", flops / g_peak0 * 1e-6, g_peak0, sec / (flops / g_peak0 * 1e-9),
               best / (flops / g_peak0 * 1e-9));
    if (g_json)
        printf("{\"bench\":\"train\",\"config\":\"%s\",\"threads\":%d,\"ms_per_step\":%.3f,\"tokens_per_s\":%.1f,"
               "\"gflops\":%.2f}\n", bc->name, rlhf_num_threads(), 1e3 * sec, BT / sec, flops / sec * 1e-9);
    rlhf_model_free(m);
    rlhf__free(x);
    rlhf__free(y);
}

/* ---- 2. matmul ---------------------------------------------------------------
   C (M,N) [+]= A (M,K) * B (K,N) with element (i,k) of A at A[i*rsa + k*csa] and
   (k,j) of B at B[k*rsb + j*csb], as rlhf__gemm takes them. In BLAS terms an
   operand with column stride 1 is "N" (leading dimension: its row stride), one
   with row stride 1 is "T" (leading dimension: its column stride). */
typedef struct {
    char name[24];
    int M, N, K;
    ptrdiff_t rsa, csa, rsb, csb;
    int acc;   /* C += (1) or C = (0), as the training step calls it */
    int count; /* times per training step: L for a layer's matmul, 1 for the LM head */
} gemm_shape;

static gemm_shape shape(const char *layer, const char *pass, int M, int N, int K, ptrdiff_t rsa, ptrdiff_t csa,
                        ptrdiff_t rsb, ptrdiff_t csb, int acc, int count) {
    gemm_shape s;
    snprintf(s.name, sizeof s.name, "%s %s", layer, pass);
    s.M = M; s.N = N; s.K = K; s.rsa = rsa; s.csa = csa; s.rsb = rsb; s.csb = csb; s.acc = acc; s.count = count;
    return s;
}
/* The three matmuls of a Conv1D layer with weight W (IC,OC) on BT rows, as
   rlhf__linear_forward and rlhf__linear_backward call them. */
static int layer_shapes(gemm_shape *s, const char *layer, int BT, int IC, int OC, int L) {
    s[0] = shape(layer, "fwd", BT, OC, IC, IC, 1, OC, 1, 1, L); /* out = bias + inp*W */
    s[1] = shape(layer, "dX", BT, IC, OC, OC, 1, 1, OC, 0, L);  /* dinp = dout*W^T */
    s[2] = shape(layer, "dW", IC, OC, BT, 1, IC, OC, 1, 1, L);  /* dW += inp^T*dout */
    return 3;
}
/* Every matmul of a training step: 4 per layer x 3 passes, plus the tied LM head as
   rlhf__forward and rlhf_model_backward call it (wte is (V,C), stored like W^T). */
static int step_shapes(gemm_shape *s, const bench_config *bc) {
    int BT = bc->B * bc->T, C = bc->cfg.n_embd, V = bc->cfg.vocab_size, L = bc->cfg.n_layer, n = 0;
    n += layer_shapes(s + n, "qkv", BT, C, 3 * C, L);
    n += layer_shapes(s + n, "attn.proj", BT, C, C, L);
    n += layer_shapes(s + n, "fc", BT, C, 4 * C, L);
    n += layer_shapes(s + n, "fc.proj", BT, 4 * C, C, L);
    s[n++] = shape("lm_head", "fwd", BT, V, C, C, 1, 1, C, 0, 1); /* logits = x*wte^T */
    s[n++] = shape("lm_head", "dX", BT, C, V, V, 1, C, 1, 0, 1);  /* dx = dlogits*wte */
    s[n++] = shape("lm_head", "dW", V, C, BT, 1, V, C, 1, 1, 1);  /* dwte += dlogits^T*x */
    return n;
}

typedef struct { const gemm_shape *s; const float *A, *B; float *C[2], *work; int acc; } gemm_call;
static void call_ours(const gemm_call *g) {
    const gemm_shape *s = g->s;
    rlhf__gemm(s->M, s->N, s->K, g->A, s->rsa, s->csa, g->B, s->rsb, s->csb, g->C[0], s->N, g->acc, g->work);
}
#ifdef RLHF_BENCH_OPENBLAS
static void call_openblas(const gemm_call *g) {
    const gemm_shape *s = g->s;
    cblas_sgemm(CblasRowMajor, s->csa == 1 ? CblasNoTrans : CblasTrans, s->csb == 1 ? CblasNoTrans : CblasTrans,
                s->M, s->N, s->K, 1.0f, g->A, (int)(s->csa == 1 ? s->rsa : s->csa), g->B,
                (int)(s->csb == 1 ? s->rsb : s->csb), g->acc ? 1.0f : 0.0f, g->C[1], s->N);
}
static void (*const g_fns[2])(const gemm_call *) = {call_ours, call_openblas};
#define N_FNS 2
#else
static void (*const g_fns[1])(const gemm_call *) = {call_ours};
#define N_FNS 1
#endif

/* best[f] = the best time of library f over 3-30 calls (as many as fill ~budget
   seconds), after one untimed call. One library at a time: right after a call,
   its threads spin for a while waiting for more work, and would steal the CPUs
   from the other library's threads if the two took turns call by call. */
static void best_times(const gemm_call *g, double budget, double *best) {
    int f, rep, reps;
    for (f = 0; f < N_FNS; f++) {
        double t0 = now_s(), t;
        g_fns[f](g);
        t = now_s() - t0;
        reps = t > 0.0 ? (int)(budget / t) : 30;
        reps = reps < 3 ? 3 : reps > 30 ? 30 : reps;
        for (best[f] = 1e30, rep = 0; rep < reps; rep++) {
            t0 = now_s();
            g_fns[f](g);
            t = now_s() - t0;
            best[f] = t < best[f] ? t : best[f];
        }
    }
}

/* One reward-model step (InstructGPT eq. 1) on config bc's shape: B sequences
   of T tokens = B/K prompts with K completions each; values at every position
   (no LM head), the ranking loss of each prompt at its completions' last
   tokens, backward, AdamW. Beside it, the LM training step of the same
   shape, timed in the same run: the ratio is what the scalar head saves. */
static void bench_rm(const bench_config *bc, int steps) {
    const rlhf_config *c = &bc->cfg;
    enum { K = 4 };
    int B = bc->B, T = bc->T, BT = B * T, i, s, g, k;
    int *x = (int *)xmalloc((size_t)BT * sizeof(int)), *y = (int *)xmalloc((size_t)BT * sizeof(int));
    float *values = (float *)xmalloc((size_t)BT * sizeof(float)), *dvalues = (float *)xmalloc((size_t)BT * sizeof(float));
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *rm, *lm;
    rlhf_rng rng;
    rlhf_result r;
    double rm_s = 0.0, lm_s = 0.0, t0;
    float loss = 0.0f;
    printf("\n== reward-model step, config %s: %d prompts x K=%d completions of T=%d tokens ==\n", bc->name, B / K, K, T);
    if ((r = rlhf_model_create(&rm, c, 1)) != RLHF_OK || (r = rlhf_model_add_score_head(rm, -1.0f, 2)) != RLHF_OK) die("reward model", r);
    if ((r = rlhf_model_create(&lm, c, 1)) != RLHF_OK) die("rlhf_model_create", r);
    if ((r = rlhf_model_reserve(rm, B, T, 1)) != RLHF_OK || (r = rlhf_model_reserve(lm, B, T, 1)) != RLHF_OK) die("rlhf_model_reserve", r);
    rlhf_rng_seed(&rng, 7);
    for (i = 0; i < BT; i++) x[i] = random_token(&rng, c->vocab_size), y[i] = random_token(&rng, c->vocab_size);
    for (s = -1; s < steps; s++) { /* step -1 warms up */
        float rw[K], gr[K];
        t0 = now_s();
        if ((r = rlhf_model_forward_values(rm, x, NULL, B, T, values, 1)) != RLHF_OK) die("rlhf_model_forward_values", r);
        memset(dvalues, 0, (size_t)BT * sizeof(float));
        for (g = 0, loss = 0.0f; g < B / K; g++) {
            for (k = 0; k < K; k++) rw[k] = values[(size_t)(g * K + k) * T + T - 1 - k]; /* last tokens */
            loss += rlhf_ranking_loss(rw, K, gr) / (float)(B / K);
            for (k = 0; k < K; k++) dvalues[(size_t)(g * K + k) * T + T - 1 - k] = gr[k] / (float)(B / K);
        }
        rlhf_model_zero_grad(rm);
        if ((r = rlhf_model_backward_values(rm, dvalues)) != RLHF_OK) die("rlhf_model_backward_values", r);
        if ((r = rlhf_model_adamw_update(rm, &opt, NULL)) != RLHF_OK) die("rlhf_model_adamw_update", r);
        if (s >= 0) rm_s += (now_s() - t0) / steps;
        t0 = now_s();
        if ((r = rlhf_model_train_step(lm, x, y, B, T, &opt, NULL)) != RLHF_OK) die("rlhf_model_train_step", r);
        if (s >= 0) lm_s += (now_s() - t0) / steps;
    }
    printf("%d timed steps each, interleaved (ranking loss %.3f at the end)\n", steps, loss);
    printf("reward-model step %8.1f ms  (%.0f sequences/s)\n", 1e3 * rm_s, B / rm_s);
    printf("LM training step  %8.1f ms  (same shape; reward/LM = %.2f)\n", 1e3 * lm_s, rm_s / lm_s);
    if (g_json)
        printf("{\"bench\":\"rm\",\"config\":\"%s\",\"threads\":%d,\"ms_per_step\":%.3f,\"lm_ms_per_step\":%.3f}\n", bc->name,
               rlhf_num_threads(), 1e3 * rm_s, 1e3 * lm_s);
    rlhf_model_free(rm);
    rlhf_model_free(lm);
    rlhf__free(x); rlhf__free(y); rlhf__free(values); rlhf__free(dvalues);
}

/* One PPO iteration on config S: policy, frozen reference, critic and reward
   model all of S's shape; batch_size episodes with prompts of ~24 tokens and
   up to 64 new tokens (no EOS is forced: a random model rarely stops, so
   every response runs to the limit, the worst case). Reports the time split
   (generation, scoring with the reference/critic/reward passes, learning)
   and the tokens generated per second. */
static void bench_ppo(const bench_config *bc, int iters) {
    static const char corpus[] = "the quick brown fox jumps over the lazy dog. add 17 and 25. reverse: red blue green. greet Ana politely. ";
    const char *path = "build/bench_prompts.jsonl";
    rlhf_config c = bc->cfg;
    rlhf_tokenizer *t;
    rlhf_model *policy = NULL, *ref = NULL, *critic = NULL, *rm = NULL; /* die() exits on the first failure */
    rlhf_dataset *prompts;
    rlhf_ppo *ppo;
    rlhf_ppo_config pc = rlhf_ppo_config_default();
    rlhf_ppo_stats st;
    rlhf_error e;
    rlhf_result r;
    FILE *f;
    int i;
    double gen = 0, score = 0, learn = 0, toks = 0;
    if ((r = rlhf_tokenizer_train(&t, corpus, strlen(corpus), 300, &e)) != RLHF_OK) die("rlhf_tokenizer_train", r);
    if (!(f = fopen(path, "wb"))) die("writing build/bench_prompts.jsonl", RLHF_ERR_IO);
    for (i = 0; i < 64; i++) fprintf(f, "{\"prompt\": \"add %d and %d, then reverse: red blue green, and greet Ana politely\"}\n", i, 2 * i + 1);
    fclose(f);
    if ((r = rlhf_dataset_load(&prompts, path, RLHF_DATA_PROMPTS, NULL, &e)) != RLHF_OK) die("rlhf_dataset_load", r);
    if ((r = rlhf_model_create(&policy, &c, 1)) != RLHF_OK || (r = rlhf_model_create(&ref, &c, 1)) != RLHF_OK ||
        (r = rlhf_model_create(&critic, &c, 2)) != RLHF_OK || (r = rlhf_model_create(&rm, &c, 2)) != RLHF_OK ||
        (r = rlhf_model_add_score_head(critic, 0.0f, 3)) != RLHF_OK || (r = rlhf_model_add_score_head(rm, -1.0f, 3)) != RLHF_OK)
        die("models", r);
    pc.batch_size = 16;
    pc.mini_batch = 4;
    pc.ppo_epochs = 4;
    pc.max_new_tokens = 64;
    pc.max_prompt_tokens = 64;
    pc.log_samples = 0;
    pc.policy = policy;
    pc.ref = ref;
    pc.critic = critic;
    pc.reward_model = rm;
    pc.tokenizer = t;
    pc.prompts = prompts;
    if ((r = rlhf_ppo_create(&ppo, &pc, &e)) != RLHF_OK) {
        fprintf(stderr, "%s\n", e.message);
        die("rlhf_ppo_create", r);
    }
    printf("\n== PPO iteration, config %s: %d episodes, up to %d new tokens, %d epochs of minibatches of %d ==\n", bc->name,
           pc.batch_size, pc.max_new_tokens, pc.ppo_epochs, pc.mini_batch);
    for (i = -1; i < iters; i++) { /* iteration -1 warms up */
        if ((r = rlhf_ppo_step(ppo, &st, &e)) != RLHF_OK) {
            fprintf(stderr, "%s\n", e.message);
            die("rlhf_ppo_step", r);
        }
        if (i < 0) continue;
        gen += st.seconds_generate / iters;
        score += st.seconds_score / iters;
        learn += st.seconds_learn / iters;
        toks += st.tokens_generated / iters;
    }
    {
        size_t np = 0;
        int ids[256];
        rlhf_prompt_encode(t, rlhf_dataset_record(prompts, 0), ids, 256, &np);
        printf("%d iterations; prompts of ~%zu tokens (chat template), mean response %.1f tokens\n", iters, np, toks / pc.batch_size);
    }
    printf("iteration %8.1f ms: generation %.1f ms (%.0f%%), scoring %.1f ms (%.0f%%), learning %.1f ms (%.0f%%)\n",
           1e3 * (gen + score + learn), 1e3 * gen, 100 * gen / (gen + score + learn), 1e3 * score, 100 * score / (gen + score + learn),
           1e3 * learn, 100 * learn / (gen + score + learn));
    printf("generation: %.0f tokens/s (%d sequences decoded together)\n", toks / gen, pc.batch_size);
    if (g_json)
        printf("{\"bench\":\"ppo\",\"config\":\"%s\",\"threads\":%d,\"ms_generate\":%.3f,\"ms_score\":%.3f,\"ms_learn\":%.3f,\"gen_tokens_per_s\":%.1f}\n",
               bc->name, rlhf_num_threads(), 1e3 * gen, 1e3 * score, 1e3 * learn, toks / gen);
    rlhf_ppo_free(ppo);
    rlhf_model_free(policy); rlhf_model_free(ref); rlhf_model_free(critic); rlhf_model_free(rm);
    rlhf_dataset_free(prompts);
    rlhf_tokenizer_free(t);
}

static void bench_gemm(const bench_config *bc, double budget) {
    gemm_shape s[15];
    int n = step_shapes(s, bc), i, f;
    double step_flops = 0.0, step_time[2] = {0.0, 0.0}, weighted_ratio = 0.0;
    gemm_call g;
    rlhf_rng rng;
    rlhf_rng_seed(&rng, 3);
    g.work = rlhf__gemm_work_alloc();
    if (!g.work) die("allocation", RLHF_ERR_OUT_OF_MEMORY);
    /* The table compares matmul kernels on a fixed team. Adapting, the
       library dropped a thread for 0.5 s when OpenBLAS's threads, still
       spinning from the row before, held a CPU during its first call, and a
       row measured in that time read one thread's speed (qkv dW of config M:
       150 GFLOP/s, 286 in the next run). */
    rlhf_set_num_threads(rlhf_num_threads(), 0);
    printf("\n== matmul, config %s (BT=%d, C=%d, V=%d): GFLOP/s, best of 3-30 calls, %d thread(s), no adapting ==\n",
           bc->name, bc->B * bc->T, bc->cfg.n_embd, bc->cfg.vocab_size, rlhf_num_threads());
    printf("%-14s %6s %6s %6s %3s %3s %8s", "shape", "M", "N", "K", "op", "x", "ours");
    if (N_FNS == 2) printf(" %9s %8s %9s", "OpenBLAS", "ours/OB", "max.diff");
    printf("\n");
    for (i = 0; i < n; i++) {
        const gemm_shape *sh = &s[i];
        size_t na = (size_t)(sh->M - 1) * sh->rsa + (size_t)(sh->K - 1) * sh->csa + 1;
        size_t nb = (size_t)(sh->K - 1) * sh->rsb + (size_t)(sh->N - 1) * sh->csb + 1, nc = (size_t)sh->M * sh->N, j;
        float *A = (float *)xmalloc(na * sizeof(float)), *B = (float *)xmalloc(nb * sizeof(float));
        double flops = 2.0 * sh->M * sh->N * sh->K, best[2];
        float dmax = 0.0f, cmax = 0.0f;
        for (j = 0; j < na; j++) A[j] = 2.0f * rlhf_rng_float(&rng) - 1.0f; /* uniform in [-1, 1) */
        for (j = 0; j < nb; j++) B[j] = 2.0f * rlhf_rng_float(&rng) - 1.0f;
        g.s = sh; g.A = A; g.B = B;
        for (f = 0; f < N_FNS; f++) g.C[f] = (float *)xmalloc(nc * sizeof(float));
        /* first C = A*B by each library; they must agree (relative to the largest |C|) */
        g.acc = 0;
        for (f = 0; f < N_FNS; f++) g_fns[f](&g);
        for (j = 0; N_FNS == 2 && j < nc; j++) {
            float d = fabsf(g.C[0][j] - g.C[N_FNS - 1][j]), a = fabsf(g.C[0][j]);
            dmax = d > dmax ? d : dmax;
            cmax = a > cmax ? a : cmax;
        }
        g.acc = sh->acc;
        best_times(&g, budget, best);
        printf("%-14s %6d %6d %6d  %c%c %3d %8.1f", sh->name, sh->M, sh->N, sh->K, sh->csa == 1 ? 'N' : 'T',
               sh->csb == 1 ? 'N' : 'T', sh->count, flops / best[0] * 1e-9);
        if (N_FNS == 2)
            printf(" %9.1f %8.2f %9.1e", flops / best[N_FNS - 1] * 1e-9, best[N_FNS - 1] / best[0],
                   cmax > 0.0f ? dmax / cmax : dmax);
        printf("\n");
        if (g_json) {
            printf("{\"bench\":\"gemm\",\"config\":\"%s\",\"shape\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,\"threads\":%d,"
                   "\"gflops\":%.2f", bc->name, sh->name, sh->M, sh->N, sh->K, rlhf_num_threads(), flops / best[0] * 1e-9);
            if (N_FNS == 2) printf(",\"openblas_gflops\":%.2f", flops / best[N_FNS - 1] * 1e-9);
            printf("}\n");
        }
        fflush(stdout);
        step_flops += flops * sh->count;
        weighted_ratio += flops * sh->count * (best[N_FNS - 1] / best[0]);
        for (f = 0; f < N_FNS; f++) step_time[f] += best[f] * sh->count;
        for (f = 0; f < N_FNS; f++) rlhf__free(g.C[f]);
        rlhf__free(A);
        rlhf__free(B);
    }
    rlhf_set_num_threads(rlhf_num_threads(), 1);
    /* column x = times per training step; each shape weighs its FLOPs in a whole step */
    printf("all matmuls of a step (%.1f GFLOP): ours %.1f GFLOP/s", step_flops * 1e-9, step_flops / step_time[0] * 1e-9);
    if (N_FNS == 2)
        printf(", OpenBLAS %.1f GFLOP/s\nFLOP-weighted mean ours/OpenBLAS over config %s's step shapes: %.2f",
               step_flops / step_time[N_FNS - 1] * 1e-9, bc->name, weighted_ratio / step_flops);
    printf("\n");
    if (g_peak0 > 0.0) /* what the matmuls' rate alone allows a whole step */
        printf("the step's matmuls alone take %.1f ms at these rates: %.2fx their FLOPs at the FMA peak (%.1f)\n",
               step_time[0] * 1e3, step_time[0] / (step_flops / g_peak0 * 1e-9), g_peak0);
    if (g_peak0 > 0.0 && N_FNS == 2)
        printf("                              at OpenBLAS's rates: %.1f ms, %.2fx\n", step_time[N_FNS - 1] * 1e3,
               step_time[N_FNS - 1] / (step_flops / g_peak0 * 1e-9));
    rlhf__free(g.work);
}

/* ---- 3. generation with the KV cache ---------------------------------------------
   n_seq sequences, each a random prompt (one prefill), then n_new greedy tokens (the
   library's sampler at temperature 0: argmax over V). Only the n_new decode steps
   are timed, the argmax included. Returns their seconds.
   Bounds of one decode step (one new token for each of the n_seq sequences):
     memory:  every weight read once (all parameters but wpe, plus one wpe row), and
              each sequence's keys and values of every layer, 2*L*C floats a
              position: 4 * (N - n_ctx*C + C + n_seq*2*L*C*P) bytes, P = the positions
              attended, on average n_prompt + (n_new + 1) / 2; at the read bandwidth
     compute: n_seq * (2*N' + 4*L*C*P) FLOPs, N' = N - n_ctx*C (each weight one
              multiply-add per token; attention a dot and an axpy of C per layer and
              position); at the FMA peak
   "of bound" is the bound's time over the measured time: 100% is the machine's limit. */
static double gen_run(rlhf_model *m, int n_seq, int n_prompt, int n_new) {
    int V = rlhf_model_config(m)->vocab_size, i, s;
    int *tok = (int *)xmalloc((size_t)n_seq * n_prompt * sizeof(int));
    float *logits = (float *)xmalloc((size_t)n_seq * V * sizeof(float));
    rlhf_sampler_config greedy = {0.0f, 0, 1.0f}; /* temperature, top_k, top_p */
    rlhf_sampler *smp;
    rlhf_kv_cache *kv;
    rlhf_rng rng;
    rlhf_result r;
    double t0, sec;
    if ((r = rlhf_sampler_create(&smp, V, &greedy)) != RLHF_OK) die("rlhf_sampler_create", r);
    if ((r = rlhf_kv_cache_create(&kv, m, n_seq, n_prompt + n_new)) != RLHF_OK) die("rlhf_kv_cache_create", r);
    rlhf_rng_seed(&rng, 11);
    for (i = 0; i < n_seq * n_prompt; i++) tok[i] = random_token(&rng, V);
    if ((r = rlhf_model_prefill(m, kv, tok, n_prompt, logits)) != RLHF_OK) die("rlhf_model_prefill", r); /* untimed */
    t0 = now_s();
    for (i = 0; i < n_new; i++) {
        for (s = 0; s < n_seq; s++) tok[s] = rlhf_sampler_sample(smp, logits + (size_t)s * V, &rng);
        if ((r = rlhf_model_decode(m, kv, tok, logits)) != RLHF_OK) die("rlhf_model_decode", r);
    }
    sec = now_s() - t0;
    rlhf_kv_cache_free(kv);
    rlhf_sampler_free(smp);
    rlhf__free(tok);
    rlhf__free(logits);
    return sec;
}

/* Tokens/s for 1, 4, 16 and 64 sequences decoded together, each against both bounds.
   Batches of 16 and more decode n_new / 4 tokens (at least 8): the weights are then
   read once per 16+ tokens and a step costs what it costs either way.
   This machine's read bandwidth moves by a third within minutes (a VM: 48 to 84 GB/s
   on two threads in one hour), so each row takes turns, three rounds: the bandwidth
   probe, then the decoding; the row compares the best of each (the probe is a best
   of six passes, the decoding a mean over its n_new steps). */
static void bench_gen(const bench_config *bc, int n_new) {
    static const int n_seqs[4] = {1, 4, 16, 64};
    const int n_prompt = 16, rounds = 3;
    rlhf_config c = bc->cfg;
    rlhf_model *m;
    rlhf_result r;
    int k, round;
    double n_w, per_pos;
    /* S's n_ctx (128) cannot hold 256 new tokens: widen the context. That only grows
       the wpe table; each token still costs what it costs in config S. */
    if (c.n_ctx < n_prompt + n_new) c.n_ctx = n_prompt + n_new;
    if ((r = rlhf_model_create(&m, &c, 1)) != RLHF_OK) die("rlhf_model_create", r);
    n_w = (double)rlhf_model_num_params(m) - (double)c.n_ctx * c.n_embd; /* all but wpe */
    per_pos = 2.0 * c.n_layer * c.n_embd;                                  /* cached floats a position */
    printf("\n== generation with the KV cache, config %s (n_ctx %d): %d-token prompt (prefilled), then greedy "
           "decoding ==\n", bc->name, c.n_ctx, n_prompt);
    printf("bounds: %.1f MB of weights a step at the read bandwidth (probe: measured beside each row, best of %d "
           "rounds); %.2f GFLOP a token at %.1f GFLOP/s\n",
           4.0 * (n_w + c.n_embd) * 1e-6, rounds, (2.0 * n_w + 2.0 * per_pos * (n_prompt + n_new / 2)) * 1e-9,
           g_peak0);
    printf("%-6s %6s %6s %10s %10s %8s %8s %10s %9s %10s %9s\n", "config", "n_seq", "n_new", "tokens/s", "ms/step",
           "GB/s", "probe", "of bw", "GFLOP/s", "of peak", "of bound");
    for (k = 0; k < 4; k++) {
        int n_seq = n_seqs[k], nn = n_seq >= 16 ? (n_new / 4 < 8 ? 8 : n_new / 4) : n_new;
        double step = 0.0, bw = 0.0, P = n_prompt + (nn + 1) / 2.0, bytes, flops, t_bw, t_fma;
        for (round = 0; round < rounds; round++) {
            double b = mem_bandwidth(), s = gen_run(m, n_seq, n_prompt, nn) / nn;
            bw = b > bw ? b : bw;
            step = round == 0 || s < step ? s : step;
        }
        bytes = 4.0 * (n_w + c.n_embd + n_seq * per_pos * P), flops = n_seq * (2.0 * n_w + 2.0 * per_pos * P);
        t_bw = bw > 0.0 ? bytes / (bw * 1e9) : 0.0, t_fma = g_peak0 > 0.0 ? flops / (g_peak0 * 1e9) : 0.0;
        printf("%-6s %6d %6d %10.1f %10.2f %8.1f %8.1f %9.0f%% %9.1f %9.0f%% %8.0f%%\n", bc->name, n_seq, nn,
               n_seq / step, 1e3 * step, bytes / step * 1e-9, bw, 100.0 * t_bw / step, flops / step * 1e-9,
               100.0 * t_fma / step, 100.0 * (t_bw > t_fma ? t_bw : t_fma) / step);
        if (g_json)
            printf("{\"bench\":\"gen\",\"config\":\"%s\",\"n_seq\":%d,\"threads\":%d,\"tokens_per_s\":%.2f,"
                   "\"read_gbs\":%.2f,\"of_bandwidth_bound\":%.3f,\"of_fma_peak\":%.3f}\n", bc->name, n_seq,
                   rlhf_num_threads(), n_seq / step, bw, t_bw / step, t_fma / step);
        fflush(stdout);
    }
    printf("(of bw: the memory bound's time / the step's; of peak: the FMA bound's; of bound: the larger.\n"
           " Weights that fit the last-level cache, as S's, are read faster than memory: above 100%% of bw.)\n");
    rlhf_model_free(m);
}

/* ---- 4. PyTorch beside us ---------------------------------------------------------
   The training step of section 1 in PyTorch (tools/bench_torch.py, run by
   /usr/bin/python3 with the same thread count and OMP_WAIT_POLICY=PASSIVE), on the
   same weights and batch: the bench writes them to build/bench_torch_<config>.bin,
   then takes turns with the script, a few steps each, several rounds. A yardstick:
   without python3 or torch the section says so and is skipped. */
typedef struct { FILE *to, *from; pid_t pid; } torch_proc;

/* one record of the file format of tools/bench_torch.py (host byte order) */
static void put_record(FILE *f, const char *name, int is_int, int ndim, const int *dims, const void *data) {
    uint32_t u[3], d[2];
    size_t n = 1;
    int i;
    u[0] = (uint32_t)strlen(name);
    fwrite(u, 4, 1, f);
    fwrite(name, 1, u[0], f);
    u[0] = (uint32_t)is_int, u[1] = (uint32_t)ndim;
    fwrite(u, 4, 2, f);
    for (i = 0; i < ndim; i++) d[i] = (uint32_t)dims[i], n *= (size_t)dims[i];
    fwrite(d, 4, (size_t)ndim, f);
    fwrite(data, 4, n, f);
}
static int write_torch_file(const char *path, rlhf_model *m, const int *x, const int *y, int B, int T,
                            const rlhf_adamw_config *o) {
    const rlhf_config *c = rlhf_model_config(m);
    int nt = rlhf_model_num_tensors(m), cfg[7], dims[2], i, ok;
    int *decay = (int *)xmalloc((size_t)nt * sizeof(int));
    float adamw[6];
    rlhf_tensor_info t;
    uint32_t count = (uint32_t)(5 + nt);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    cfg[0] = c->vocab_size, cfg[1] = c->n_ctx, cfg[2] = c->n_layer, cfg[3] = c->n_head, cfg[4] = c->n_embd;
    cfg[5] = B, cfg[6] = T;
    adamw[0] = o->lr, adamw[1] = o->beta1, adamw[2] = o->beta2, adamw[3] = o->eps, adamw[4] = o->weight_decay;
    adamw[5] = o->grad_clip;
    fwrite("RLHFFIX1", 1, 8, f);
    fwrite(&count, 4, 1, f);
    dims[0] = 7, put_record(f, "config", 1, 1, dims, cfg);
    dims[0] = 6, put_record(f, "adamw", 0, 1, dims, adamw);
    dims[0] = B, dims[1] = T, put_record(f, "inputs", 1, 2, dims, x), put_record(f, "targets", 1, 2, dims, y);
    for (i = 0; i < nt; i++) rlhf_model_tensor(m, i, &t), decay[i] = t.weight_decay;
    dims[0] = nt, put_record(f, "decay", 1, 1, dims, decay);
    for (i = 0; i < nt; i++) rlhf_model_tensor(m, i, &t), put_record(f, t.name, 0, t.ndim, t.shape, t.data);
    ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    rlhf__free(decay);
    return ok;
}

/* starts the script on file; *desc receives its "ready" line; 0 if it cannot run */
static int torch_start(torch_proc *tp, const char *file, char *desc, size_t cap) {
    static const char *const py = "/usr/bin/python3";
    int in[2], out[2];
    char threads[16];
    snprintf(threads, sizeof threads, "%d", rlhf_num_threads());
    snprintf(desc, cap, "%s not found", py);
    if (access(py, X_OK) != 0 || pipe(in) != 0) return 0;
    if (pipe(out) != 0) return close(in[0]), close(in[1]), 0;
    fflush(stdout);
    if ((tp->pid = fork()) == 0) { /* the child: stdin from in, stdout to out */
        dup2(in[0], 0), dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl(py, py, "tools/bench_torch.py", file, threads, (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    tp->to = fdopen(in[1], "w"), tp->from = fdopen(out[0], "r");
    snprintf(desc, cap, "tools/bench_torch.py did not start");
    if (tp->pid < 0 || !tp->to || !tp->from || !fgets(desc, (int)cap, tp->from) || strncmp(desc, "ready ", 6) != 0) {
        desc[strcspn(desc, "\n")] = 0;
        if (!strncmp(desc, "skip ", 5)) memmove(desc, desc + 5, strlen(desc + 5) + 1);
        return 0;
    }
    desc[strcspn(desc, "\n")] = 0;
    memmove(desc, desc + 6, strlen(desc + 6) + 1);
    return 1;
}
static void torch_stop(torch_proc *tp) {
    if (tp->to) fprintf(tp->to, "quit\n"), fclose(tp->to);
    if (tp->from) fclose(tp->from);
    if (tp->pid > 0) waitpid(tp->pid, NULL, 0);
}
/* n PyTorch steps: best and mean seconds, the first step's loss; 0 on failure */
static int torch_steps(torch_proc *tp, int n, double *best, double *mean, double *loss0) {
    char line[256];
    double loss1;
    fprintf(tp->to, "step %d\n", n);
    fflush(tp->to);
    return fgets(line, sizeof line, tp->from) && sscanf(line, "%lf %lf %lf %lf", best, mean, loss0, &loss1) == 4;
}

static void bench_torch(const bench_config *bc, int rounds, int steps) {
    const rlhf_config *c = &bc->cfg;
    char file[64], desc[256];
    int B = bc->B, T = bc->T, BT = B * T, i, k, ok, started;
    int *x = (int *)xmalloc((size_t)BT * sizeof(int)), *y = (int *)xmalloc((size_t)BT * sizeof(int));
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    torch_proc tp = {NULL, NULL, 0};
    rlhf_model *m;
    rlhf_rng rng;
    rlhf_result r;
    double ours_best = 1e30, ours_sum = 0.0, pt_best = 1e30, pt_sum = 0.0, b, mn, pt_loss0 = 0.0, l0;
    float loss0 = 0.0f, loss;
    printf("\n== PyTorch beside us: the training step of config %s (B %d, T %d), %d rounds of %d steps each ==\n",
           bc->name, B, T, rounds, steps);
    if ((r = rlhf_model_create(&m, c, 1)) != RLHF_OK) die("rlhf_model_create", r);
    if ((r = rlhf_model_reserve(m, B, T, 1)) != RLHF_OK) die("rlhf_model_reserve", r);
    rlhf_rng_seed(&rng, 7);
    for (i = 0; i < BT; i++) x[i] = random_token(&rng, c->vocab_size), y[i] = random_token(&rng, c->vocab_size);
    snprintf(file, sizeof file, "build/bench_torch_%s.bin", bc->name);
    signal(SIGPIPE, SIG_IGN); /* a script that died: its pipe's writes fail instead of killing the bench */
    snprintf(desc, sizeof desc, "cannot write %s", file);
    started = write_torch_file(file, m, x, y, B, T, &opt) && torch_start(&tp, file, desc, sizeof desc);
    if (!started) printf("PyTorch: skipped (%s)\n", desc);
    /* a warm-up step each (the first loss: same weights and batch, so it must agree) */
    ok = started && rlhf_model_train_step(m, x, y, B, T, &opt, &loss0) == RLHF_OK &&
         torch_steps(&tp, 1, &b, &mn, &pt_loss0);
    for (k = 0; ok && k < rounds; k++) { /* ours, then PyTorch, in turns */
        for (i = 0; i < steps; i++) {
            double t0 = now_s(), t;
            if ((r = rlhf_model_train_step(m, x, y, B, T, &opt, &loss)) != RLHF_OK) die("rlhf_model_train_step", r);
            t = now_s() - t0;
            ours_sum += t, ours_best = t < ours_best ? t : ours_best;
        }
        ok = torch_steps(&tp, steps, &b, &mn, &l0);
        pt_sum += mn * steps, pt_best = b < pt_best ? b : pt_best;
    }
    if (ok) {
        double n = (double)rounds * steps;
        printf("PyTorch: %s (its BLAS threads sleep between calls: OMP_WAIT_POLICY=PASSIVE)\n", desc);
        printf("first step's loss: ours %.5f, PyTorch %.5f (same weights and batch)\n", loss0, pt_loss0);
        printf("%-8s %14s %14s %14s %14s %10s\n", "config", "ours ms/step", "best", "PyTorch ms", "best",
               "PT/ours");
        printf("%-8s %14.1f %14.1f %14.1f %14.1f %9.2fx\n", bc->name, 1e3 * ours_sum / n, 1e3 * ours_best,
               1e3 * pt_sum / n, 1e3 * pt_best, pt_sum / ours_sum);
        printf("(PT/ours > 1: we are faster; the means of %d interleaved steps each)\n", rounds * steps);
        if (g_json)
            printf("{\"bench\":\"torch\",\"config\":\"%s\",\"threads\":%d,\"ms_per_step\":%.3f,"
                   "\"torch_ms_per_step\":%.3f}\n", bc->name, rlhf_num_threads(), 1e3 * ours_sum / n, 1e3 * pt_sum / n);
    } else if (started)
        printf("PyTorch: the script stopped answering (see its messages above)\n");
    torch_stop(&tp);
    remove(file);
    rlhf_model_free(m);
    rlhf__free(x);
    rlhf__free(y);
}

/* ---- --busy: another program holds one CPU ---------------------------------------
   A child process spins on the last CPU for the whole run (pinned there on Linux,
   like a program pinned to one core, the worst case: one of our threads must share
   that CPU), and exits when killed or when this process is gone. */
static pid_t g_spinner = -1;
static void busy_stop(void) {
    if (g_spinner > 0) kill(g_spinner, SIGKILL), waitpid(g_spinner, NULL, 0);
    g_spinner = -1;
}
static void busy_start(void) {
    pid_t parent = getpid();
    fflush(stdout);
    if ((g_spinner = fork()) == 0) {
        volatile double x = 1.0;
        long i;
#if defined(__linux__)
        cpu_set_t set;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        CPU_ZERO(&set);
        CPU_SET(ncpu > 1 ? (int)ncpu - 1 : 0, &set);
        sched_setaffinity(0, sizeof set, &set);
#endif
        for (;;) {
            for (i = 0; i < 10000000; i++) x = x * 0.999999 + 1e-9;
            if (getppid() != parent) _exit(0);
        }
    }
    if (g_spinner < 0) die("fork (--busy)", RLHF_ERR_IO);
    atexit(busy_stop);
}

/* best ms of `steps` training steps of config bc on `threads` threads (adapt:
   the library may use fewer while one has no CPU) */
static double busy_step_ms(const bench_config *bc, int threads, int adapt, int steps, int *in_use) {
    int BT = bc->B * bc->T, i, *x = (int *)xmalloc((size_t)BT * 2 * sizeof(int)), *y = x + BT;
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m;
    rlhf_rng rng;
    rlhf_result r;
    double best = 1e30, t0;
    float loss;
    rlhf_set_num_threads(threads, adapt);
    if ((r = rlhf_model_create(&m, &bc->cfg, 1)) != RLHF_OK) die("rlhf_model_create", r);
    rlhf_rng_seed(&rng, 7);
    for (i = 0; i < BT; i++)
        x[i] = random_token(&rng, bc->cfg.vocab_size), y[i] = random_token(&rng, bc->cfg.vocab_size);
    for (i = 0; i <= steps; i++) { /* the first step is a warm-up */
        t0 = now_s();
        if ((r = rlhf_model_train_step(m, x, y, bc->B, bc->T, &opt, &loss)) != RLHF_OK) die("rlhf_model_train_step", r);
        if (i > 0 && now_s() - t0 < best) best = now_s() - t0;
    }
    *in_use = rlhf_threads_in_use();
    rlhf_model_free(m);
    rlhf__free(x);
    return 1e3 * best;
}
/* The step on 1 thread and on n (>= 2) threads while the spinner runs, rounds
   taken in turn, best of each: the goal (issue 14) is n threads no slower than
   1.15x one thread. "fixed" keeps all n threads (no adapting), to show what the
   dynamic split alone does. */
static void bench_busy(const bench_config *bc, int n, int rounds, int steps) {
    double one = 1e30, team = 1e30, fixed = 1e30, t;
    int r, in_use = 0, dummy, keep = rlhf_num_threads();
    printf("\n== --busy: training step, config %s, while another process spins on one CPU ==\n", bc->name);
    for (r = 0; r < rounds; r++) {
        t = busy_step_ms(bc, 1, 1, steps, &dummy), one = t < one ? t : one;
        t = busy_step_ms(bc, n, 1, steps, &in_use), team = t < team ? t : team;
        t = busy_step_ms(bc, n, 0, steps, &dummy), fixed = t < fixed ? t : fixed;
    }
    rlhf_set_num_threads(keep, 1);
    printf("best ms/step of %d rounds x %d steps: 1 thread %.1f | %d threads %.1f (%.2fx; %d in use at the end) | "
           "%d threads fixed %.1f (%.2fx)\n", rounds, steps, one, n, team, team / one, in_use, n, fixed, fixed / one);
    if (g_json)
        printf("{\"bench\":\"busy\",\"config\":\"%s\",\"threads\":%d,\"ms_1\":%.3f,\"ms_n\":%.3f,"
               "\"ms_n_fixed\":%.3f}\n",
               bc->name, n, one, team, fixed);
}

/* ---- tokenizer: BPE training and encoding speed ----------------------------------
   A deterministic synthetic corpus: made-up words (syllables from a table),
   drawn with Zipf's law so frequent words repeat as in real text (10 MB give
   about 1.5 million pieces, ~145,000 of them distinct, like English prose),
   with punctuation, numbers, capitals and newlines. */
static char *synth_corpus(size_t bytes) {
    static const char *const syl[24] = {"ta", "re", "mo", "ka", "li", "su", "ne", "po", "ri", "da", "ve", "lo",
                                        "the", "and", "ing", "er", "on", "st", "qu", "ph", "ch", "ou", "ea", "an"};
    static const char *const punct[6] = {".", ",", "!", "?", ";", ":"};
    char *buf = (char *)xmalloc(bytes + 64);
    size_t n = 0;
    rlhf_rng rng;
    rlhf_rng_seed(&rng, 2024);
    while (n < bytes) {
        /* word rank log-uniform in [1, 10^6): P(rank k) ~ 1/k, Zipf's law as in
           real text; the rank seeds the word's syllables */
        uint64_t rank = (uint64_t)exp(13.8 * rlhf_rng_float(&rng)), h = rank * 0x9E3779B97F4A7C15ull;
        int nsyl = 1 + (int)((h >> 59) % 5), k; /* up to 24^5 distinct words */
        if (rlhf_rng_float(&rng) < 0.05f) { n += (size_t)sprintf(buf + n, "%u", (unsigned)(rlhf_rng_u64(&rng) % 10000)); }
        else
            for (k = 0; k < nsyl; k++, h = h * 6364136223846793005ull + 1442695040888963407ull) {
                const char *sy = syl[(h >> 33) % 24];
                size_t l = strlen(sy);
                memcpy(buf + n, sy, l);
                if (k == 0 && rlhf_rng_float(&rng) < 0.08f) buf[n] = (char)(buf[n] - 32); /* Capital */
                n += l;
            }
        if (rlhf_rng_float(&rng) < 0.1f) n += (size_t)sprintf(buf + n, "%s", punct[rlhf_rng_u64(&rng) % 6]);
        buf[n++] = rlhf_rng_float(&rng) < 0.02f ? '\n' : ' ';
    }
    buf[bytes] = 0;
    return buf;
}
static void bench_tokenizer(size_t corpus_bytes, int vocab) {
    char *text = synth_corpus(corpus_bytes);
    rlhf_tokenizer *t = NULL, *g = NULL;
    rlhf_error e;
    size_t n_ids = 0;
    int *ids = (int *)xmalloc(corpus_bytes * sizeof(int));
    double t0, train_s, enc_s;
    printf("\n== tokenizer: %.1f MB synthetic corpus ==\n", corpus_bytes / 1e6);
    t0 = now_s();
    if (rlhf_tokenizer_train(&t, text, corpus_bytes, vocab, &e) != RLHF_OK) { printf("train failed: %s\n", e.message); exit(1); }
    train_s = now_s() - t0;
    t0 = now_s();
    rlhf_tokenizer_encode(t, text, corpus_bytes, ids, corpus_bytes, &n_ids);
    enc_s = now_s() - t0;
    printf("train to %d tokens: %.2f s (single-threaded)\n", rlhf_tokenizer_vocab_size(t), train_s);
    printf("encode, trained tokenizer: %.1f MB/s (%.2f bytes per token)\n", corpus_bytes / 1e6 / enc_s, (double)corpus_bytes / (double)n_ids);
    if (rlhf_tokenizer_load_gpt2_ex(&g, "../shared/testdata/gpt2/encoder.json", "../shared/testdata/gpt2/vocab.bpe", &e) == RLHF_OK) {
        t0 = now_s();
        rlhf_tokenizer_encode(g, text, corpus_bytes, ids, corpus_bytes, &n_ids);
        enc_s = now_s() - t0;
        printf("encode, GPT-2 tokenizer:   %.1f MB/s (%.2f bytes per token)\n", corpus_bytes / 1e6 / enc_s, (double)corpus_bytes / (double)n_ids);
        rlhf_tokenizer_free(g);
    } else
        printf("encode, GPT-2 tokenizer: skipped (%s)\n", e.message);
    if (g_json) printf("{\"bench\":\"tokenizer\",\"corpus_bytes\":%zu,\"vocab\":%d,\"train_s\":%.3f}\n", corpus_bytes, vocab, train_s);
    rlhf_tokenizer_free(t);
    rlhf__free(ids); /* xmalloc's blocks come from rlhf__alloc */
    rlhf__free(text);
}

/* ---- 8. activation recompute --------------------------------------------------
   rlhf_model_set_recompute: the forward keeps each layer's input and one layer's
   caches, and the backward runs the forward of layers 0..L-2 again. Its FLOPs, on
   top of a step's: (L-1)/L * (2*Nb*B*T + 2*L*B*T*T*C), Nb the parameters of the L
   blocks (the LM head is not recomputed). Peak RSS is the kernel's VmHWM
   (/proc/self/status), reset before each measure through /proc/self/clear_refs
   (Linux 4.0 and later; where it cannot be reset, the recomputing run goes first,
   the smaller). */
static double peak_rss_mib(int reset) {
    char line[256];
    double kib = -1.0;
    FILE *f;
    if (reset && (f = fopen("/proc/self/clear_refs", "w")) != NULL) {
        fputs("5", f);
        fclose(f);
    }
    if (reset || !(f = fopen("/proc/self/status", "r"))) return -1.0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kib = atof(line + 6);
    fclose(f);
    return kib / 1024.0;
}
static double recompute_flop_ratio(const rlhf_config *c, int B, int T) {
    double C = c->n_embd, L = c->n_layer, BT = (double)B * T;
    double N = (double)rlhf_config_num_params(c) - (double)c->n_ctx * C, Nb = L * (12.0 * C * C + 13.0 * C);
    double step = 6.0 * N * BT + 6.0 * L * BT * T * C, extra = (L - 1) / L * (2.0 * Nb * BT + 2.0 * L * BT * T * C);
    return (step + extra) / step;
}
/* one model per setting, stepped in turn (interleaved: a busy machine slows both alike) or one after
   the other (M at T = 1024: one model at a time, for its peak RSS); best and mean ms of each */
static void recompute_time(const bench_config *bc, int steps, int together) {
    const rlhf_config *c = &bc->cfg;
    int B = bc->B, T = bc->T, BT = B * T, i, k, first;
    int *x = (int *)xmalloc((size_t)BT * sizeof(int)), *y = (int *)xmalloc((size_t)BT * sizeof(int));
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m[2] = {NULL, NULL};
    rlhf_rng rng;
    rlhf_result r;
    double best[2] = {1e30, 1e30}, mean[2] = {0, 0}, rss[2] = {-1, -1}, t0;
    float loss[2] = {0, 0};
    rlhf_rng_seed(&rng, 7);
    for (i = 0; i < BT; i++) x[i] = random_token(&rng, c->vocab_size), y[i] = random_token(&rng, c->vocab_size);
    for (first = 0; first < 2; first += together ? 2 : 1) { /* m[0] recomputes, m[1] keeps the caches */
        int last = together ? 2 : first + 1;
        peak_rss_mib(1);
        for (k = first; k < last; k++) {
            if ((r = rlhf_model_create(&m[k], c, 1)) != RLHF_OK) die("rlhf_model_create", r);
            rlhf_model_set_recompute(m[k], k == 0);
            if ((r = rlhf_model_reserve(m[k], B, T, 1)) != RLHF_OK) die("rlhf_model_reserve", r);
            if ((r = rlhf_model_train_step(m[k], x, y, B, T, &opt, &loss[k])) != RLHF_OK) die("train_step", r);
        }
        for (i = 0; i < steps; i++)
            for (k = first; k < last; k++) {
                t0 = now_s();
                if ((r = rlhf_model_train_step(m[k], x, y, B, T, &opt, &loss[k])) != RLHF_OK) die("train_step", r);
                t0 = now_s() - t0;
                best[k] = t0 < best[k] ? t0 : best[k];
                mean[k] += t0 / steps;
            }
        for (k = first; k < last; k++) {
            rss[k] = together ? -1.0 : peak_rss_mib(0); /* two models at once: no RSS of one */
            rlhf_model_free(m[k]);
        }
    }
    printf("%-18s %12s %12s %14s %14s\n", "", "best ms", "mean ms", "peak RSS MiB", "loss");
    for (k = 0; k < 2; k++)
        printf("%-18s %12.1f %12.1f %14.0f %14.9g\n", k == 0 ? "recompute" : "caches (default)", 1e3 * best[k],
               1e3 * mean[k], rss[k], (double)loss[k]);
    printf("time with recompute / without: best %.3f, mean %.3f (FLOPs: %.3f); the same loss bytes: %s\n",
           best[0] / best[1], mean[0] / mean[1], recompute_flop_ratio(c, B, T),
           memcmp(&loss[0], &loss[1], sizeof loss[0]) == 0 ? "yes" : "NO");
    if (g_json)
        printf("{\"bench\":\"recompute\",\"config\":\"%s\",\"T\":%d,\"threads\":%d,\"ms_recompute\":%.1f,"
               "\"ms_caches\":%.1f,\"rss_mib_recompute\":%.0f,\"rss_mib_caches\":%.0f}\n", bc->name, T,
               rlhf_num_threads(), 1e3 * best[0], 1e3 * best[1], rss[0], rss[1]);
    rlhf__free(x);
    rlhf__free(y);
}
static void bench_recompute(const bench_config *bc, int steps, int measure) {
    const double MiB = 1024.0 * 1024.0;
    rlhf_memory mem;
    rlhf_result r;
    printf("\n== activation recompute, config %s: B %d, T %d ==\n", bc->name, bc->B, bc->T);
    if ((r = rlhf_config_memory(&bc->cfg, bc->B, bc->T, 1, &mem)) != RLHF_OK) die("rlhf_config_memory", r);
    printf("rlhf_config_memory, MiB: activations %.1f -> %.1f with recompute (%.2fx less; logits %.1f of it); "
           "total %.1f -> %.1f\n", mem.activations / MiB, mem.activations_recompute / MiB,
           (double)mem.activations / (double)mem.activations_recompute,
           (double)bc->B * bc->T * bc->cfg.vocab_size * 4 / MiB, mem.total / MiB, mem.total_recompute / MiB);
    if (g_json)
        printf("{\"bench\":\"recompute_budget\",\"config\":\"%s\",\"T\":%d,\"activations\":%zu,"
               "\"activations_recompute\":%zu}\n", bc->name, bc->T, mem.activations, mem.activations_recompute);
    if (!measure) return;
    fflush(stdout);
    /* both models at once when they are small */
    recompute_time(bc, steps, (double)mem.total + (double)mem.total_recompute < 1024.0 * MiB);
}

/* ---- per-kernel split of a training step ------------------------------------------
   Each kernel of rlhf_model_train_step on config bc's shapes, timed alone (best of
   a few calls, its inputs refreshed untimed before each) and weighted by how often
   a step calls it; "other" is the whole step minus their sum (the embedding, bias
   gradients, the residual copies, the gradient norm, zeroing the gradients). Then
   the attention share of one layer at T = 128, 512 and 1024 (B*T kept at config
   S's 1024 tokens), against that layer's 12 matmuls, in GFLOP/s. */
typedef struct {
    int B, T, C, NH, V;
    size_t np; /* AdamW: parameters */
    float *x, *y, *mean, *rstd, *w, *bias, *dw, *db, *dx, *h, *dh, *dh0, *qkv, *dqkv, *att, *scratch, *atty, *datty;
    float *logits, *logits0, *lse, *losses, *p, *m, *v, *g;
    float *work; /* the matmul's workspace, lent to attention as a model lends it */
    int *tg;
} kernel_bufs;
typedef void (*kernel_fn)(kernel_bufs *k);
static void k_ln_fwd(kernel_bufs *k) {
    rlhf__layernorm_forward(k->y, k->mean, k->rstd, k->x, k->w, k->bias, k->B * k->T, k->C);
}
static void k_ln_bwd(kernel_bufs *k) {
    rlhf__layernorm_backward(k->dx, k->dw, k->db, k->y, k->x, k->w, k->mean, k->rstd, k->B * k->T, k->C);
}
static void k_gelu_fwd(kernel_bufs *k) { rlhf__gelu_forward(k->dh, k->h, (size_t)k->B * k->T * 4 * k->C); }
static void k_gelu_bwd_prep(kernel_bufs *k) { memcpy(k->dh, k->dh0, (size_t)k->B * k->T * 4 * k->C * sizeof(float)); }
static void k_gelu_bwd(kernel_bufs *k) { rlhf__gelu_backward(k->dh, k->h, (size_t)k->B * k->T * 4 * k->C); }
static void k_att_fwd(kernel_bufs *k) {
    rlhf__attention_forward(k->atty, k->att, NULL, k->qkv, NULL, k->B, k->T, k->C, k->NH, k->work);
}
static void k_att_bwd(kernel_bufs *k) {
    rlhf__attention_backward(k->dqkv, k->scratch, k->datty, k->qkv, k->att, NULL, k->B, k->T, k->C, k->NH,
                             k->work);
}
static void k_ce_fwd(kernel_bufs *k) {
    rlhf__crossentropy_forward(k->losses, k->lse, k->logits, k->tg, k->B * k->T, k->V);
}
static void k_ce_bwd_prep(kernel_bufs *k) { memcpy(k->logits, k->logits0, (size_t)k->B * k->T * k->V * sizeof(float)); }
static void k_ce_bwd(kernel_bufs *k) {
    rlhf__crossentropy_backward(k->logits, k->lse, k->tg, 1e-3f, k->B * k->T, k->V);
}
static void k_adamw(kernel_bufs *k) {
    rlhf__adamw(k->p, k->m, k->v, k->g, k->np, 0.9f, 0.95f, 1e-8f, 0.999f, 1e-4f, 0.3f, 1.0f);
}

/* the best of reps calls of fn, each after an untimed prep (may be NULL) */
static double best_of(kernel_fn fn, kernel_fn prep, kernel_bufs *k, int reps) {
    double best = 1e30, t0, t;
    int r;
    for (r = 0; r <= reps; r++) { /* call 0 warms up */
        if (prep) prep(k);
        t0 = now_s();
        fn(k);
        t = now_s() - t0;
        if (r > 0) best = t < best ? t : best;
    }
    return best;
}
static float *kbuf(size_t n, rlhf_rng *rng, float lo, float hi) {
    float *p = (float *)xmalloc((n ? n : 1) * sizeof(float));
    size_t i;
    for (i = 0; i < n; i++) p[i] = lo + (hi - lo) * rlhf_rng_float(rng);
    return p;
}
static void kbufs_alloc(kernel_bufs *k, int B, int T, int C, int NH, int V, size_t np, rlhf_rng *rng) {
    size_t BT = (size_t)B * T, i;
    k->B = B, k->T = T, k->C = C, k->NH = NH, k->V = V, k->np = np;
    k->x = kbuf(BT * C, rng, -2, 2), k->y = kbuf(BT * C, rng, -1, 1), k->dx = kbuf(BT * C, rng, 0, 0);
    k->mean = kbuf(BT, rng, 0, 0), k->rstd = kbuf(BT, rng, 0, 0);
    k->w = kbuf(C, rng, 0.5f, 1.5f), k->bias = kbuf(C, rng, -0.1f, 0.1f);
    k->dw = kbuf(C, rng, 0, 0), k->db = kbuf(C, rng, 0, 0);
    k->h = kbuf(BT * 4 * C, rng, -4, 4), k->dh = kbuf(BT * 4 * C, rng, -1, 1), k->dh0 = kbuf(BT * 4 * C, rng, -1, 1);
    k->qkv = kbuf(BT * 3 * C, rng, -1, 1), k->dqkv = kbuf(BT * 3 * C, rng, 0, 0);
    k->att = kbuf((size_t)B * NH * T * T, rng, 0, 0), k->scratch = kbuf((size_t)B * NH * RLHF__ATT_QB * T, rng, 0, 0);
    k->atty = kbuf(BT * C, rng, 0, 0), k->datty = kbuf(BT * C, rng, -1, 1);
    k->logits = kbuf(BT * V, rng, -5, 5), k->logits0 = kbuf(BT * V, rng, -5, 5);
    k->lse = kbuf(BT, rng, 0, 0), k->losses = kbuf(BT, rng, 0, 0);
    k->p = kbuf(np, rng, -1, 1), k->m = kbuf(np, rng, -0.1f, 0.1f);
    k->v = kbuf(np, rng, 0, 0.01f), k->g = kbuf(np, rng, -1, 1);
    k->tg = (int *)xmalloc(BT * sizeof(int));
    if (!(k->work = rlhf__gemm_work_alloc())) die("allocation", RLHF_ERR_OUT_OF_MEMORY);
    for (i = 0; i < BT; i++) k->tg[i] = (int)(rlhf_rng_u64(rng) % (uint64_t)V);
    k_ln_fwd(k); /* mean, rstd for the backward */
    memcpy(k->logits, k->logits0, BT * V * sizeof(float));
    k_ce_fwd(k); /* lse for the backward */
    k_att_fwd(k);
}
static void kbufs_free(kernel_bufs *k) {
    float *all[26];
    int i;
    all[0] = k->x, all[1] = k->y, all[2] = k->dx, all[3] = k->mean, all[4] = k->rstd, all[5] = k->w, all[6] = k->bias;
    all[7] = k->dw, all[8] = k->db, all[9] = k->h, all[10] = k->dh, all[11] = k->dh0, all[12] = k->qkv;
    all[13] = k->dqkv;
    all[14] = k->att, all[15] = k->scratch, all[16] = k->atty, all[17] = k->datty, all[18] = k->logits;
    all[19] = k->logits0, all[20] = k->lse, all[21] = k->losses, all[22] = k->p, all[23] = k->m, all[24] = k->v;
    all[25] = k->g;
    for (i = 0; i < 26; i++) rlhf__free(all[i]);
    rlhf__free(k->tg);
    rlhf__free(k->work);
}
/* seconds of the matmuls of shapes s[first..last) with their step counts (count 1 when per_layer) */
static double matmul_seconds(const gemm_shape *s, int first, int last, int per_layer, rlhf_rng *rng, int reps) {
    double total = 0.0;
    gemm_call g;
    int i;
    g.work = rlhf__gemm_work_alloc();
    if (!g.work) die("allocation", RLHF_ERR_OUT_OF_MEMORY);
    for (i = first; i < last; i++) {
        const gemm_shape *sh = &s[i];
        size_t na = (size_t)(sh->M - 1) * sh->rsa + (size_t)(sh->K - 1) * sh->csa + 1;
        size_t nb = (size_t)(sh->K - 1) * sh->rsb + (size_t)(sh->N - 1) * sh->csb + 1;
        double best = 1e30, t0, t;
        int r;
        float *A = kbuf(na, rng, -1, 1), *B = kbuf(nb, rng, -1, 1);
        g.s = sh, g.A = A, g.B = B, g.C[0] = kbuf((size_t)sh->M * sh->N, rng, 0, 0), g.acc = sh->acc;
        for (r = 0; r <= reps; r++) { /* call 0 warms up */
            t0 = now_s();
            call_ours(&g);
            t = now_s() - t0;
            if (r > 0) best = t < best ? t : best;
        }
        total += best * (per_layer ? 1 : sh->count);
        rlhf__free(A), rlhf__free(B), rlhf__free(g.C[0]);
    }
    rlhf__free(g.work);
    return total;
}

/* best ms of a whole training step on config bc */
static double step_seconds(const bench_config *bc, int steps) {
    int BT = bc->B * bc->T, i;
    int *x = (int *)xmalloc((size_t)BT * sizeof(int)), *y = (int *)xmalloc((size_t)BT * sizeof(int));
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m;
    rlhf_rng rng;
    rlhf_result r;
    double best = 1e30, t0, t;
    if ((r = rlhf_model_create(&m, &bc->cfg, 1)) != RLHF_OK) die("rlhf_model_create", r);
    rlhf_rng_seed(&rng, 7);
    for (i = 0; i < BT; i++) x[i] = random_token(&rng, bc->cfg.vocab_size);
    for (i = 0; i < BT; i++) y[i] = random_token(&rng, bc->cfg.vocab_size);
    for (i = -2; i < steps; i++) { /* two warm-up steps */
        t0 = now_s();
        if ((r = rlhf_model_train_step(m, x, y, bc->B, bc->T, &opt, NULL)) != RLHF_OK) die("rlhf_model_train_step", r);
        t = now_s() - t0;
        if (i >= 0) best = t < best ? t : best;
    }
    rlhf_model_free(m);
    rlhf__free(x), rlhf__free(y);
    return best;
}

static void bench_kernels(const bench_config *bc, int reps) {
    const rlhf_config *c = &bc->cfg;
    int L = c->n_layer, C = c->n_embd, BT = bc->B * bc->T, i, nshape;
    size_t np = (size_t)C * (c->vocab_size + c->n_ctx) + (size_t)L * (12 * C * C + 13 * C) + 2 * C;
    static const char *const names[8] = {"matmuls", "attention", "GELU", "LayerNorm", "cross-entropy", "AdamW",
                                         "other", "step"};
    static const char *const keys[8] = {"matmuls", "attention", "gelu", "layernorm", "crossentropy", "adamw", "other",
                                        "step"};
    double ms[8], kflops[2];
    gemm_shape s[15];
    kernel_bufs k;
    rlhf_rng rng;
    rlhf_rng_seed(&rng, 5);
    printf("\n== per-kernel split of a training step, config %s: ms per step (best of %d calls each) ==\n",
           bc->name, reps);
    nshape = step_shapes(s, bc);
    kbufs_alloc(&k, bc->B, bc->T, C, c->n_head, c->vocab_size, np, &rng);
    ms[7] = step_seconds(bc, reps);
    ms[0] = matmul_seconds(s, 0, nshape, 0, &rng, reps);
    ms[1] = L * (best_of(k_att_fwd, NULL, &k, reps) + best_of(k_att_bwd, NULL, &k, reps));
    ms[2] = L * (best_of(k_gelu_fwd, NULL, &k, reps) + best_of(k_gelu_bwd, k_gelu_bwd_prep, &k, reps));
    ms[3] = (2 * L + 1) * (best_of(k_ln_fwd, NULL, &k, reps) + best_of(k_ln_bwd, NULL, &k, reps));
    ms[4] = best_of(k_ce_fwd, NULL, &k, reps) + best_of(k_ce_bwd, k_ce_bwd_prep, &k, reps);
    ms[5] = best_of(k_adamw, NULL, &k, reps);
    for (ms[6] = ms[7], i = 0; i < 6; i++) ms[6] -= ms[i];
    kbufs_free(&k);
    for (i = 0; i < 8; i++) printf("%-14s %8.2f ms %5.1f%%\n", names[i], 1e3 * ms[i], 100.0 * ms[i] / ms[7]);
    printf("(attention includes its softmax; LayerNorm: %d forward + backward; other = step - the rest)\n", 2 * L + 1);
    if (g_json) {
        printf("{\"bench\":\"kernels\",\"config\":\"%s\",\"threads\":%d", bc->name, rlhf_num_threads());
        for (i = 0; i < 8; i++) printf(",\"ms_%s\":%.3f", keys[i], 1e3 * ms[i]);
        printf("}\n");
    }

    /* one layer's attention (forward + backward) at T = 128, 512, 1024, B*T = 1024 tokens */
    printf("attention of one layer (fwd+bwd) against the layer's 12 matmuls, B*T = %d, C %d, NH %d:\n", BT, C,
           c->n_head);
    printf("%6s %4s %10s %10s %8s %12s %12s\n", "T", "B", "att ms", "matmul ms", "att %", "att GFLOP/s",
           "mm GFLOP/s");
    kflops[1] = 2.0 * BT * 12.0 * C * C * 3.0; /* 12 C^2 weights per layer, 3 passes */
    for (i = 0; i < 3; i++) {
        int T = i == 0 ? 128 : i == 1 ? 512 : 1024, B = BT / T;
        double att, mm;
        kbufs_alloc(&k, B, T, C, c->n_head, 1, 1, &rng);
        att = best_of(k_att_fwd, NULL, &k, reps) + best_of(k_att_bwd, NULL, &k, reps);
        mm = matmul_seconds(s, 0, 12, 1, &rng, reps);
        kflops[0] = 6.0 * B * (double)T * T * C;
        printf("%6d %4d %10.2f %10.2f %7.1f%% %12.1f %12.1f\n", T, B, 1e3 * att, 1e3 * mm, 100.0 * att / (att + mm),
               kflops[0] / att * 1e-9, kflops[1] / mm * 1e-9);
        kbufs_free(&k);
    }
}

static void usage(void) {
    printf("usage: bench [--only S|M|gemm|kernels|gen|torch|rm|ppo|tok|recompute] [--quick] [--steps-s N]"
           " [--steps-m N] [--json] [--help]\n"
           "  --only S     training step of config S only (M: of config M; gemm: matmuls; gen: generation;\n"
           "               torch: the S and M training steps beside PyTorch's, when /usr/bin/python3 has torch;\n"
           "               rm: a reward-model step; ppo: a PPO iteration; tok: tokenizer training on 10 MB\n"
           "               to 4096 tokens, and encoding; kernels: the per-kernel split of a config-S step and\n"
           "               the attention share of a layer at T = 128, 512, 1024; recompute: activation recompute\n"
           "               on S, and on M at T = 1024 its memory and time, ~8 GB and minutes, which the full run\n"
           "               only budgets)\n"
           "  --quick      a smoke run of a few seconds: config S only (unless --only M), few steps\n"
           "  --steps-s N  timed training steps on S (default 10); --steps-m N on M (default 3)\n"
           "  --json       also print one JSON line per result\n"
           "  --busy       a process spins on the last CPU for the whole run (another program holding a core);\n"
           "               first the S step on 1 thread and on all threads (at least 2), best of 3 rounds\n"
           "Threads: OMP_NUM_THREADS (and OPENBLAS_NUM_THREADS: set it to the same value).\n");
}

int main(int argc, char **argv) {
    const char *only = "all";
    int quick = 0, steps_s = 10, steps_m = 3, i, all, run_m, busy = 0;
    usage_mark u;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--json")) g_json = 1;
        else if (!strcmp(argv[i], "--busy")) busy = 1;
        else if (!strcmp(argv[i], "--steps-s") && i + 1 < argc) steps_s = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps-m") && i + 1 < argc) steps_m = atoi(argv[++i]);
        else {
            usage();
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    all = !strcmp(only, "all");
    if (!all && strcmp(only, "S") && strcmp(only, "M") && strcmp(only, "gemm") && strcmp(only, "kernels") &&
        strcmp(only, "gen") && strcmp(only, "torch") && strcmp(only, "tok") && strcmp(only, "rm") && strcmp(only, "ppo") &&
        strcmp(only, "recompute")) {
        usage();
        return 2;
    }
    if (quick) steps_s = 2, steps_m = 1;
    steps_s = steps_s < 1 ? 1 : steps_s;
    steps_m = steps_m < 1 ? 1 : steps_m;
    run_m = !quick || !strcmp(only, "M"); /* M takes ~2 GB and tens of seconds */

    printf("rlhf.h %s | kernels %s | threads %d\n", RLHF_VERSION_STRING, rlhf_simd_name(), rlhf_num_threads());
    printf("compiler: %s\nflags: %s\n", BENCH_COMPILER, RLHF_BENCH_CFLAGS);
    printf("env:");
    for (i = 0; i < 4; i++) { /* OMP_WAIT_POLICY=PASSIVE: each parallel region first wakes its sleeping threads */
        static const char *const vars[4] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
                                            "OMP_WAIT_POLICY"};
        printf(" %s=%s", vars[i], getenv(vars[i]) ? getenv(vars[i]) : "(unset)");
    }
    printf("\n");
#ifdef RLHF_BENCH_OPENBLAS
    printf("OpenBLAS: core %s, threads %d%s\n", openblas_get_corename(), openblas_get_num_threads(),
           openblas_get_num_threads() != rlhf_num_threads() ? " (WARNING: not rlhf.h's thread count)" : "");
    /* OpenBLAS's idle threads spin for a while after each call (2^28 cycles by default): our
       threads, timed next, would find their CPUs taken, and the team would drop a thread */
    if (openblas_get_num_threads() > 1 && !getenv("OPENBLAS_THREAD_TIMEOUT"))
        printf("WARNING: OPENBLAS_THREAD_TIMEOUT unset: OpenBLAS's threads spin after each call and take our "
               "threads' CPUs (make bench sets it to 4)\n");
#endif
    if (busy) /* before the first parallel region: the child is forked from one thread */
        busy_start(), printf("--busy: a process spins on the last CPU (warnings about other processes expected)\n");
    g_peak0 = fma_peak();
    printf("FP32 FMA peak now: %.1f GFLOP/s on %d thread(s), %s FMAs (0: no AVX2)\n", g_peak0, rlhf_num_threads(),
           PEAK_NAME);
    printf("read bandwidth now: %.1f GB/s on %d thread(s) (a sum over 256 MiB, four runs a thread)\n", mem_bandwidth(),
           rlhf_num_threads());
    if (busy) bench_busy(&CONFIG_S, rlhf_num_threads() < 2 ? 2 : rlhf_num_threads(), 3, quick ? 1 : 3);
    /* each section: run it, then say whether other processes disturbed it */
    if (all || !strcmp(only, "S")) u = usage_now(), bench_train(&CONFIG_S, quick ? 1 : 2, steps_s), report_others(u);
    if ((all || !strcmp(only, "M")) && run_m)
        u = usage_now(), bench_train(&CONFIG_M, quick ? 0 : 1, steps_m), report_others(u);
    if (all || !strcmp(only, "gemm")) {
        u = usage_now(), bench_gemm(&CONFIG_S, quick ? 0.02 : 0.3), report_others(u);
        if (run_m) u = usage_now(), bench_gemm(&CONFIG_M, quick ? 0.02 : 0.3), report_others(u);
    }
    if (all || !strcmp(only, "kernels")) u = usage_now(), bench_kernels(&CONFIG_S, quick ? 2 : 10), report_others(u);
    if (all || !strcmp(only, "gen")) {
        u = usage_now(), bench_gen(&CONFIG_S, quick ? 32 : 256), report_others(u);
        if (run_m) u = usage_now(), bench_gen(&CONFIG_M, quick ? 8 : 128), report_others(u);
    }
    if (all || !strcmp(only, "torch")) {
        u = usage_now(), bench_torch(&CONFIG_S, quick ? 1 : 3, quick ? 2 : 5), report_others(u);
        if (run_m) u = usage_now(), bench_torch(&CONFIG_M, 2, quick ? 1 : 2), report_others(u);
    }
    if (all || !strcmp(only, "rm")) u = usage_now(), bench_rm(&CONFIG_S, quick ? 2 : 10), report_others(u);
    if (all || !strcmp(only, "ppo")) u = usage_now(), bench_ppo(&CONFIG_S, quick ? 1 : 3), report_others(u);
    if (all || !strcmp(only, "tok")) u = usage_now(), bench_tokenizer(quick ? 1000000 : 10000000, 4096), report_others(u);
    if (all || !strcmp(only, "recompute")) {
        bench_config m1024 = CONFIG_M;
        m1024.T = 1024;
        u = usage_now(), bench_recompute(&CONFIG_S, quick ? 1 : steps_s, 1), report_others(u);
        u = usage_now(), bench_recompute(&m1024, steps_m < 2 ? steps_m : 2, !strcmp(only, "recompute") && !quick);
        report_others(u);
    }
    printf("\nFP32 FMA peak at the end: %.1f GFLOP/s\n", fma_peak());
    return 0;
}
