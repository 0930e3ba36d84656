/* The test suite of rlhf.h: `make test` runs it; `build/test_rlhf NAME` runs
   the tests whose name contains NAME. Exit status is non-zero when any check
   fails. Tolerances are |got - want| <= atol + rtol * |want|, both stated at
   each use with the reason for them; NaN and Inf must match exactly.

   The library is included with its implementation so the tests can call the
   internal kernels (rlhf__X) and their scalar twins (rlhf__X_ref). A counting
   allocator checks that training steps do not allocate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#if defined(__unix__) || defined(__APPLE__) /* mkdir, getpid: the file-writing tests look at temporary files */
#include <sys/stat.h>
#include <unistd.h>
#endif

static long g_allocs; /* number of RLHF_MALLOC calls so far */
static void *count_malloc(size_t n) {
    g_allocs++;
    return malloc(n);
}
#define RLHF_MALLOC(n) count_malloc(n)
#define RLHF_FREE(p) free(p)
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#if defined(_WIN32) /* the tests' directories: mkdir takes no mode there */
#include <direct.h>
#define mkdir(path, mode) _mkdir(path)
#endif

/* rlhf_ppo_create with the models and data as arguments: the tests name
   them at each call, the library takes them in the config. */
static rlhf_result ppo_create_with(rlhf_ppo **out, rlhf_model *policy, rlhf_model *ref, rlhf_model *critic, rlhf_model *rm,
                                   rlhf_score_fn fn, void *user, const rlhf_tokenizer *t, const rlhf_dataset *prompts,
                                   const rlhf_dataset *ptx, const rlhf_ppo_config *cfg, rlhf_error *err) {
    rlhf_ppo_config c = *cfg;
    c.policy = policy; c.ref = ref; c.critic = critic; c.reward_model = rm; c.score_fn = fn; c.score_user = user;
    c.tokenizer = t; c.prompts = prompts; c.ptx = ptx;
    return rlhf_ppo_create(out, &c, err);
}

#ifndef RLHF_FIXTURE_DIR
#define RLHF_FIXTURE_DIR "tests/fixtures"
#endif

/* ---- checks -------------------------------------------------------------- */
static int g_fail; /* failures in the current test */
/* the matmul's workspace, lent to attention for its room (rlhf__att_room) as the model lends m->work */
static float *g_att_work;
/* set by a test that has nothing to compare on this build; main prints "skipped" */
static const char *g_skip;

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
            g_fail++;                                                             \
        }                                                                         \
    } while (0)
#define CHECK_OK(expr)                                                            \
    do {                                                                          \
        rlhf_result r_ = (expr);                                                  \
        if (r_ != RLHF_OK) {                                                      \
            fprintf(stderr, "  FAIL %s:%d: %s -> %s\n", __FILE__, __LINE__, #expr, \
                    rlhf_result_string(r_));                                      \
            g_fail++;                                                             \
        }                                                                         \
    } while (0)

/* |got - want| <= atol + rtol*|want| for n values; NaN/Inf must match. Prints
   the first few mismatches and the worst error. Returns the mismatch count. */
static int close_enough(const char *what, const float *got, const float *want, size_t n, double atol, double rtol) {
    size_t i, bad = 0, worst_i = 0;
    double worst = 0.0;
    for (i = 0; i < n; i++) {
        double g = got[i], w = want[i], err;
        int ok;
        if (isnan(w) || isinf(w)) ok = (isnan(w) && isnan(g)) || g == w;
        else {
            err = fabs(g - w);
            ok = err <= atol + rtol * fabs(w);
            if (err > worst) { worst = err; worst_i = i; }
        }
        if (!ok) {
            if (bad < 5) fprintf(stderr, "  FAIL %s[%zu]: got %.9g want %.9g\n", what, i, g, w);
            bad++;
        }
    }
    if (bad) {
        fprintf(stderr, "  FAIL %s: %zu of %zu values off (atol %g, rtol %g); worst |err| %.3g at %zu\n", what, bad, n,
                atol, rtol, worst, worst_i);
        g_fail++;
    }
    return (int)bad;
}

static void fill_uniform(float *x, size_t n, rlhf_rng *rng, float lo, float hi) {
    size_t i;
    for (i = 0; i < n; i++) x[i] = lo + (hi - lo) * rlhf_rng_float(rng);
}
static float *floats(size_t n) {
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p) { fprintf(stderr, "out of memory in the test\n"); exit(2); }
    return p;
}

/* ---- result codes, RNG ---------------------------------------------------- */
static void test_result_strings(void) {
    static const rlhf_result all[] = {
#define ITEM(name, value, msg) name,
        RLHF_RESULT_LIST(ITEM)
#undef ITEM
    };
    size_t i, j, n = sizeof all / sizeof all[0];
    CHECK(RLHF_OK == 0);
    for (i = 0; i < n; i++) {
        CHECK(strcmp(rlhf_result_string(all[i]), "unknown result") != 0);
        if (i > 0) CHECK((int)all[i] < 0);
        for (j = 0; j < i; j++) CHECK(strcmp(rlhf_result_string(all[i]), rlhf_result_string(all[j])) != 0);
    }
    CHECK(strcmp(rlhf_result_string((rlhf_result)12345), "unknown result") == 0);
}

/* rlhf__alloc_aligned: 64-byte alignment, 2 MiB for parameter blocks from
   RLHF__HUGE_MIN up (whether or not the advice can be given), never for
   others; every byte of the block is writable (ASan
   in make debug sees an overrun), and a size whose rounding up would wrap is
   refused before any allocation (ASan would abort on a huge malloc). */
static void test_alloc_alignment(void) {
    const size_t sizes[] = {1, 63, 4096, RLHF__HUGE_MIN - 1, RLHF__HUGE_MIN, RLHF__HUGE_MIN + 3};
    size_t i;
    int huge;
    for (huge = 0; huge < 2; huge++)
        for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            unsigned char *p = (unsigned char *)rlhf__alloc_aligned(sizes[i], huge);
            size_t align = huge && sizes[i] >= RLHF__HUGE_MIN ? RLHF__HUGE_PAGE : 64;
            CHECK(p != NULL);
            if (!p) continue;
            CHECK(((uintptr_t)p & (align - 1)) == 0);
            memset(p, 0xA5, sizes[i]);
            CHECK(p[0] == 0xA5 && p[sizes[i] - 1] == 0xA5);
            rlhf__free(p);
        }
    CHECK(rlhf__alloc_aligned((size_t)-1 - 100, 1) == NULL);
    CHECK(rlhf__alloc((size_t)-1 - 10) == NULL);
}

static void test_rng(void) {
    rlhf_rng a, b;
    int i;
    double sum = 0, sumsq = 0;
    rlhf_rng_seed(&a, 7);
    rlhf_rng_seed(&b, 7);
    for (i = 0; i < 1000; i++) CHECK(rlhf_rng_u64(&a) == rlhf_rng_u64(&b));
    rlhf_rng_seed(&b, 8);
    CHECK(rlhf_rng_u64(&a) != rlhf_rng_u64(&b));
    for (i = 0; i < 100000; i++) {
        float u = rlhf_rng_float(&a);
        CHECK(u >= 0.0f && u < 1.0f);
        if (!(u >= 0.0f && u < 1.0f)) break;
    }
    for (i = 0; i < 100000; i++) {
        double z = rlhf_rng_normal(&a);
        sum += z;
        sumsq += z * z;
    }
    /* 1e5 draws: the mean's standard error is 0.003, the variance's 0.0045 */
    CHECK(fabs(sum / 1e5) < 0.015);
    CHECK(fabs(sumsq / 1e5 - 1.0) < 0.025);
    /* known first value of xoshiro256** seeded by splitmix64(0) pins the stream */
    rlhf_rng_seed(&a, 0);
    CHECK(rlhf_rng_u64(&a) == 0x99EC5F36CB75F2B4ull);
}

/* ---- kernels: SIMD against the scalar twin ---------------------------------- */
static const int ODD_SIZES[] = {1, 5, 7, 8, 13, 16, 33, 64, 100, 257};
#define N_ODD (int)(sizeof ODD_SIZES / sizeof ODD_SIZES[0])

static void test_kernel_dot_axpy(void) {
    rlhf_rng rng;
    int s;
    if (strcmp(rlhf_simd_name(), "scalar") == 0) { /* dot and axpy are then their twins' very loops: nothing to compare */
        g_skip = "scalar build: dot and axpy are their scalar twins";
        return;
    }
    rlhf_rng_seed(&rng, 1);
    for (s = 0; s < N_ODD; s++) {
        int n = ODD_SIZES[s];
        float *a = floats(n), *b = floats(n), *y1 = floats(n), *y2 = floats(n);
        float d1, d2;
        char what[64];
        fill_uniform(a, n, &rng, -1, 1);
        fill_uniform(b, n, &rng, -1, 1);
        d1 = rlhf__dot(a, b, n);
        d2 = rlhf__dot_ref(a, b, n);
        /* different summation order: n roundings of terms <= 1 */
        snprintf(what, sizeof what, "dot n=%d", n);
        close_enough(what, &d1, &d2, 1, 1e-6 * n, 0);
        memcpy(y1, b, n * sizeof(float));
        memcpy(y2, b, n * sizeof(float));
        rlhf__axpy(y1, 0.37f, a, n);
        rlhf__axpy_ref(y2, 0.37f, a, n);
        /* FMA vs multiply-then-add: one rounding apart */
        snprintf(what, sizeof what, "axpy n=%d", n);
        close_enough(what, y1, y2, n, 1e-7, 1e-6);
        free(a); free(b); free(y1); free(y2);
    }
}

/* rlhf__gemm_init (C's start set tile by tile: residual + bias, either one,
   or none) against the pass it replaces, C = residual + bias then an
   accumulating rlhf__gemm: the same bits, on every path (few rows, packed,
   edge tiles, several K slices). */
static void check_gemm_init(int M, int N, int K, const float *A, ptrdiff_t rsa, ptrdiff_t csa, const float *B,
                            ptrdiff_t rsb, ptrdiff_t csb, const float *res, int layout, float *work, rlhf_rng *rng) {
    float *bias = floats((size_t)N), *C1 = floats((size_t)M * N), *C2 = floats((size_t)M * N);
    int which, i, j;
    fill_uniform(bias, (size_t)N, rng, -1, 1);
    for (which = 0; which < 4; which++) { /* residual and bias, bias alone, residual alone, neither */
        rlhf__cinit init;
        init.res = which == 0 || which == 2 ? res : NULL, init.bias = which < 2 ? bias : NULL;
        for (i = 0; i < M * N; i++) C1[i] = 1e30f; /* garbage: the start must overwrite it */
        for (i = 0; i < M; i++)
            for (j = 0; j < N; j++) {
                float v = init.res ? init.res[i * N + j] : 0.0f;
                C2[i * N + j] = init.bias ? v + init.bias[j] : v;
            }
        rlhf__gemm_init(M, N, K, A, rsa, csa, B, rsb, csb, C1, N, 0, &init, work);
        rlhf__gemm(M, N, K, A, rsa, csa, B, rsb, csb, C2, N, 1, work);
        if (memcmp(C1, C2, (size_t)M * N * sizeof(float)) != 0) {
            fprintf(stderr, "  FAIL gemm_init M=%d N=%d K=%d layout=%d start %d: not the bits of the pass\n", M, N,
                    K, layout, which);
            g_fail++;
        }
    }
    free(bias); free(C1); free(C2);
}

/* The micro-kernels against their scalar twin rlhf__gemm_tile_ref on odd depths:
   rlhf__gemm_tile (an MR x NR tile) and rlhf__gemm_tile2 (two side by side),
   A packed (ars 1, aks MR) or read in place (rows kc + 3 apart), B as the
   matmul packs it (panels kc*NR apart) or as attention reads it (rows of a
   wider matrix, the second tile's columns NR further), C stored or added to,
   with a guard column past the pair that must stay as it was. rlhf__gemm_tile2
   must give the bits of two rlhf__gemm_tile calls: the matmul pairs tiles or
   not depending on how the threads split the panels. */
static void test_kernel_gemm_tile(void) {
    static const int depths[] = {1, 2, 3, 7, 16, 61, 255, 256};
    enum { MR = RLHF__MR, NR = RLHF__NR, LDC = 2 * RLHF__NR + 1, WIDE = 2 * RLHF__NR + 5 };
    rlhf_rng rng;
    size_t di;
    int inplace, acc, battn, r;
    rlhf_rng_seed(&rng, 41);
    for (di = 0; di < sizeof depths / sizeof depths[0]; di++) {
        int kc = depths[di];
        float *A = floats((size_t)MR * (kc + 3)), *B = floats((size_t)kc * WIDE), C0[MR * LDC], C1[MR * LDC];
        float C2[MR * LDC], C3[MR * LDC];
        fill_uniform(A, (size_t)MR * (kc + 3), &rng, -1, 1);
        fill_uniform(B, (size_t)kc * WIDE, &rng, -1, 1);
        fill_uniform(C0, MR * LDC, &rng, -1, 1);
        for (battn = 0; battn < 2; battn++)
            for (inplace = 0; inplace < 2; inplace++)
                for (acc = 0; acc < 2; acc++) {
                    ptrdiff_t ars = inplace ? kc + 3 : 1, aks = inplace ? 1 : MR;
                    ptrdiff_t rsb = battn ? (ptrdiff_t)WIDE : (ptrdiff_t)NR, bps = battn ? (ptrdiff_t)NR : (ptrdiff_t)kc * NR;
                    char what[96];
                    memcpy(C1, C0, sizeof C1), memcpy(C2, C0, sizeof C2), memcpy(C3, C0, sizeof C3);
                    rlhf__gemm_tile2(kc, A, ars, aks, B, bps, rsb, C1, LDC, acc);
                    rlhf__gemm_tile(kc, A, ars, aks, B, rsb, C2, LDC, acc);
                    rlhf__gemm_tile(kc, A, ars, aks, B + bps, rsb, C2 + NR, LDC, acc);
                    rlhf__gemm_tile_ref(kc, A, ars, aks, B, rsb, C3, LDC, acc);
                    rlhf__gemm_tile_ref(kc, A, ars, aks, B + bps, rsb, C3 + NR, LDC, acc);
                    snprintf(what, sizeof what, "gemm_tile kc=%d in_place=%d attention's B=%d acc=%d", kc, inplace,
                             battn, acc);
                    close_enough(what, C2, C3, MR * LDC, 2e-7 * kc + 1e-6, 1e-5);
                    snprintf(what, sizeof what, "gemm_tile2 kc=%d in_place=%d attention's B=%d acc=%d", kc, inplace,
                             battn, acc);
                    close_enough(what, C1, C3, MR * LDC, 2e-7 * kc + 1e-6, 1e-5);
                    if (RLHF__PAIRS && memcmp(C1, C2, sizeof C1) != 0) {
                        fprintf(stderr, "  FAIL %s: not the bits of two single tiles\n", what);
                        g_fail++;
                    }
                    for (r = 0; r < MR; r++) CHECK(C1[r * LDC + 2 * NR] == C0[r * LDC + 2 * NR]); /* guard column */
                }
        free(A); free(B);
    }
    if (!RLHF__PAIRS) printf("  skipped: gemm_tile2 against two gemm_tile calls (without AVX-512 it is those two calls)\n");
}

/* Every layout the model uses (NN, NT, TN) on odd and aligned shapes, with
   and without accumulation, through the packed path, the matrix-vector path,
   several K slices (K > KC), several row blocks (M > MC) and column blocks. */
static void test_kernel_gemm(void) {
    static const int shapes[][3] = {{1, 1, 1},   {1, 5, 7},    {3, 13, 33},   {4, 100, 17},  {5, 7, 13},
                                    {6, 16, 8},  {7, 33, 1},   {13, 17, 300}, {33, 64, 64},  {64, 48, 96},
                                    {97, 31, 513}, {200, 40, 70}, {5, 2100, 9}, {20, 2100, 9}, {130, 129, 257},
                                    {50, 1100, 600}};
    rlhf_rng rng;
    float *work = rlhf__gemm_work_alloc();
    size_t si;
    int layout, acc;
    rlhf_rng_seed(&rng, 2);
    for (si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        float *A = floats((size_t)M * K), *B = floats((size_t)K * N);
        float *C1 = floats((size_t)M * N), *C2 = floats((size_t)M * N), *C0 = floats((size_t)M * N);
        float *C3 = floats((size_t)M * N);
        fill_uniform(A, (size_t)M * K, &rng, -1, 1);
        fill_uniform(B, (size_t)K * N, &rng, -1, 1);
        fill_uniform(C0, (size_t)M * N, &rng, -1, 1);
        for (layout = 0; layout < 3; layout++)
            for (acc = 0; acc < 2; acc++) {
                /* layout 0: A (M,K), B (K,N); 1: B stored (N,K); 2: A stored (K,M) */
                ptrdiff_t rsa = layout == 2 ? 1 : K, csa = layout == 2 ? M : 1;
                ptrdiff_t rsb = layout == 1 ? 1 : N, csb = layout == 1 ? K : 1;
                char what[96];
                memcpy(C1, C0, (size_t)M * N * sizeof(float));
                memcpy(C2, C0, (size_t)M * N * sizeof(float));
                rlhf__gemm(M, N, K, A, rsa, csa, B, rsb, csb, C1, N, acc, work);
                rlhf__gemm_ref(M, N, K, A, rsa, csa, B, rsb, csb, C2, N, acc);
                snprintf(what, sizeof what, "gemm M=%d N=%d K=%d layout=%d acc=%d", M, N, K, layout, acc);
                /* K products of terms in [-1,1] summed in another order: the
                   error grows like K * 2^-24; 2e-7*K + 1e-6 covers it with margin */
                close_enough(what, C1, C2, (size_t)M * N, 2e-7 * K + 1e-6, 1e-5);
#ifdef _OPENMP
                { /* one thread (the paths split the work by thread count): the same bits */
                    int threads = omp_get_max_threads();
                    memcpy(C3, C0, (size_t)M * N * sizeof(float));
                    omp_set_num_threads(1);
                    rlhf__gemm(M, N, K, A, rsa, csa, B, rsb, csb, C3, N, acc, work);
                    omp_set_num_threads(threads);
                    if (memcmp(C1, C3, (size_t)M * N * sizeof(float)) != 0) {
                        fprintf(stderr, "  FAIL %s: %d threads and 1 thread give different bits\n", what, threads);
                        g_fail++;
                    }
                }
#endif
                if (acc == 0)
                    check_gemm_init(M, N, K, A, rsa, csa, B, rsb, csb, C0, layout, work, &rng);
            }
        free(A); free(B); free(C0); free(C1); free(C2); free(C3);
    }
    rlhf__free(work);
}

/* The few-rows paths (RLHF__FEW_MIN <= M <= RLHF__FEW_MAX, A's rows contiguous):
   B's rows contiguous (rlhf__gemm_few_rows: B packed row by row, a run at a
   time) and B's columns contiguous (rlhf__gemm_few_cols: the product taken
   transposed, B^T read in place as the micro-kernel's A). Each, called
   directly and through rlhf__gemm_init's dispatch (stored, accumulated, and
   from residual + bias, bias or residual), must give the bits of the packed
   path: the same rows computed inside a matmul of RLHF__FEW_MAX + 37 rows
   (rows past the first M random) give the same C rows, on 1, 3 and 16
   threads (a workspace for 16, every loop split: more threads than the B
   buffers hold runs for); and close to rlhf__gemm_ref, with a guard column
   past each C row that must stay untouched. A is an exact-size copy, so a
   read past its last row is caught by a sanitizer. Shapes: M at both ends
   and ragged (not a multiple of MR or NR), N with a ragged last panel, fewer
   columns than one, or more runs than 16 threads; K across several K slices
   with a short last one, and as deep as a thread's A block holds MR rows of
   B^T, and one deeper. Past RLHF__FEW_MAX rows (kernel_gemm_few_cols_big),
   B's columns contiguous only (rlhf__gemm_few_cols when B^T is larger than
   the B buffers, up to RLHF__FEW_COLS_MMAX rows), against the same M rows
   with B stored (K,N), its rows contiguous, which the packed paths take
   (rlhf__gemm_init's main loop, on 1, 3 and 16 threads;
   their packing copies the same panels): rows just past RLHF__FEW_MAX,
   ragged, at the most, A^T as large as the B buffers hold and one K deeper
   (with a ragged last row panel of B^T, so an A^T overflowing the buffers
   into thread 0's A block would be overwritten there), B^T just larger
   than them and just not, runs for 16 threads. */
static void check_gemm_few(int M, int N, int K, const float *A, const float *Abig, const float *B, int layout,
                           const float *C0, float *work, rlhf_rng *rng) {
    const int BIG = M <= RLHF__FEW_MAX ? RLHF__FEW_MAX + 37 : M + 37;
    int ld = N + 1, i, start, threads;
    ptrdiff_t rsb = layout ? 1 : N, csb = layout ? K : 1;
    int direct = layout == 0 || (K <= RLHF__FEW_COLS_KMAX && /* the few path can take it */
                                 (M <= RLHF__FEW_MAX || rlhf__few_cols_big(M, N, K, NULL, 1)));
    float *Bkn = M <= RLHF__FEW_MAX ? NULL : floats((size_t)K * N); /* B (K,N) for the packed path */
    float *C1 = floats((size_t)BIG * ld), *C2 = floats((size_t)BIG * ld), *C3 = floats((size_t)BIG * ld);
    float *bias = floats((size_t)N), *res = floats((size_t)BIG * ld);
    float *Bb = work + RLHF__GEMM_HEADER, *Ab = Bb + 2 * RLHF__BBUF;
    char what[112];
    fill_uniform(bias, (size_t)N, rng, -1, 1);
    fill_uniform(res, (size_t)BIG * ld, rng, -1, 1);
    for (i = 0; Bkn && i < K * N; i++) Bkn[i] = B[(i % N) * K + i / N];
    for (start = 0; start < 5; start++) /* stored, accumulated, residual + bias, bias, residual */
        for (threads = 1; threads <= 16; threads += threads == 1 ? 2 : 13) {
            rlhf__cinit init;
            init.res = start == 2 || start == 4 ? res : NULL, init.bias = start == 2 || start == 3 ? bias : NULL;
#ifdef _OPENMP
            int keep = omp_get_max_threads();
            omp_set_num_threads(threads);
#endif
            memcpy(C1, C0, (size_t)BIG * ld * sizeof(float));
            memcpy(C2, C0, (size_t)BIG * ld * sizeof(float));
            memcpy(C3, C0, (size_t)BIG * ld * sizeof(float));
            rlhf__gemm_init(M, N, K, A, K, 1, B, rsb, csb, C1, ld, start == 1, start >= 2 ? &init : NULL, work);
            if (Bkn) /* the packed path */
                rlhf__gemm_init(M, N, K, A, K, 1, Bkn, N, 1, C2, ld, start == 1, start >= 2 ? &init : NULL, work);
            else
                rlhf__gemm_init(BIG, N, K, Abig, K, 1, B, rsb, csb, C2, ld, start == 1, start >= 2 ? &init : NULL,
                                work);
            if (direct && start < 2) {
                if (layout == 0) rlhf__gemm_few_rows(M, N, K, A, K, B, N, C3, ld, start, Bb, Ab, threads);
                else rlhf__gemm_few_cols(M, N, K, A, K, B, K, C3, ld, start, Bb, Ab, threads);
            }
#ifdef _OPENMP
            omp_set_num_threads(keep);
#endif
            snprintf(what, sizeof what, "gemm few M=%d N=%d K=%d layout=%d start %d threads=%d", M, N, K, layout,
                     start, threads);
            if (memcmp(C1, C2, (size_t)M * ld * sizeof(float)) != 0 ||
                (direct && start < 2 && memcmp(C3, C2, (size_t)M * ld * sizeof(float)) != 0)) {
                fprintf(stderr, "  FAIL %s: not the packed path's bits\n", what);
                g_fail++;
            }
            for (i = 0; i < M; i++) CHECK(C1[i * ld + N] == C0[i * ld + N]); /* the guard column */
            for (i = M; i < BIG; i++) CHECK(memcmp(C1 + i * ld, C0 + i * ld, (size_t)ld * sizeof(float)) == 0);
            if (threads == 1 && start < 2) {
                memcpy(C2, C0, (size_t)M * ld * sizeof(float));
                rlhf__gemm_ref(M, N, K, A, K, 1, B, rsb, csb, C2, ld, start);
                close_enough(what, C1, C2, (size_t)M * ld, 2e-7 * K + 1e-6, 1e-5);
            }
        }
    free(C1); free(C2); free(C3); free(bias); free(res); free(Bkn);
}
static void run_gemm_few(const int (*shapes)[3], size_t n) {
    const int BIG = RLHF__FEW_MAX + 37; /* rows of A in the packed matmul when M <= RLHF__FEW_MAX */
#ifdef _OPENMP
    double grain = rlhf__par_grain;
#endif
    rlhf_rng rng;
    size_t si;
    float *work = rlhf__alloc_floats(RLHF__GEMM_WORK_FLOATS(16));
    rlhf_rng_seed(&rng, 23);
    CHECK(work != NULL);
    if (!work) return;
    work[0] = 16.0f; /* room for 16 threads' A blocks */
    /* the ragged rows of B^T packed over all of K fit a thread's A block; A^T (64 columns) the B buffers */
    CHECK(RLHF__FEW_COLS_KMAX * RLHF__MR <= RLHF__MC * RLHF__KC);
    CHECK((size_t)RLHF__FEW_COLS_KMAX * 4 * RLHF__NR <= 2 * (size_t)RLHF__KC * RLHF__NC && RLHF__FEW_MAX <= 4 * RLHF__NR);
#ifdef _OPENMP
    rlhf__par_grain = 1.0; /* every loop on every thread */
#endif
    for (si = 0; si < n; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2], layout, rows = M <= RLHF__FEW_MAX ? BIG : M + 37;
        float *Abig = floats((size_t)rows * K), *A = floats((size_t)M * K), *B = floats((size_t)K * N);
        float *C0 = floats((size_t)rows * (N + 1));
        fill_uniform(Abig, (size_t)rows * K, &rng, -1, 1);
        memcpy(A, Abig, (size_t)M * K * sizeof(float));
        fill_uniform(B, (size_t)K * N, &rng, -1, 1);
        fill_uniform(C0, (size_t)rows * (N + 1), &rng, -1, 1);
        for (layout = M <= RLHF__FEW_MAX ? 0 : 1; layout < 2; layout++) /* B (K,N) rows contiguous; B stored (N,K) */
            check_gemm_few(M, N, K, A, Abig, B, layout, C0, work, &rng);
        free(Abig); free(A); free(B); free(C0);
    }
#ifdef _OPENMP
    rlhf__par_grain = grain;
#endif
    rlhf__free(work);
}
static void test_kernel_gemm_few(void) {
    static const int shapes[][3] = {{RLHF__FEW_MIN, 1, 1}, {RLHF__FEW_MIN, 37, 300}, {13, 300, 7}, {16, 16, 256},
                                    {21, 531, 513}, {33, 5, 40}, {40, 129, 1}, {RLHF__FEW_MAX, 280, 530},
                                    {RLHF__FEW_MAX - 1, 17, 257}, {17, 4100, 33}, {17, 9, RLHF__MC * RLHF__KC / RLHF__MR},
                                    {20, 9, RLHF__MC * RLHF__KC / RLHF__MR + 1},
                                    {13, 2048, 256}}; /* on 16 threads, runs of 16 panels for every thread room allows */
    run_gemm_few(shapes, sizeof shapes / sizeof shapes[0]);
}
static void test_kernel_gemm_few_cols_big(void) {
    enum { ROOM = 2 * RLHF__BBUF }; /* floats of the B buffers */
    static const int shapes[][3] = {{RLHF__FEW_MAX + 1, ROOM / 520 + 9, 520},
                                    {203, 2 * 16 * RLHF__FEW_RUN * RLHF__MR + 5, ROOM / (2 * 16 * RLHF__FEW_RUN * RLHF__MR + 5) + 1},
                                    {RLHF__FEW_COLS_MMAX, ROOM / (ROOM / 512) + 1, ROOM / 512},
                                    {RLHF__FEW_COLS_MMAX - 3, ROOM / (ROOM / 512 + 1) + 2, ROOM / 512 + 1},
                                    {200, ROOM / 600, 600}};
    CHECK(rlhf__few_cols_big(shapes[0][0], shapes[0][1], shapes[0][2], NULL, 3));
    CHECK(rlhf__few_cols_big(shapes[1][0], shapes[1][1], shapes[1][2], NULL, 16)); /* runs for 16 threads */
    CHECK(rlhf__few_cols_big(shapes[2][0], shapes[2][1], shapes[2][2], NULL, 1)); /* A^T fills the buffers */
    CHECK(!rlhf__few_cols_big(shapes[3][0], shapes[3][1], shapes[3][2], NULL, 1)); /* A^T too large */
    CHECK(!rlhf__few_cols_big(shapes[4][0], shapes[4][1], shapes[4][2], NULL, 1)); /* B^T not larger */
    run_gemm_few(shapes, sizeof shapes / sizeof shapes[0]);
}

/* The decode's matrix-vector kernels on odd shapes: rlhf__gemv (four B rows a pass,
   adjacent or spread over B's quarters) against its scalar twin, and bit for bit
   against one rlhf__axpy per k in the order it claims; rlhf__dot4 bit for bit against rlhf__dot; and the whole
   few-rows path of rlhf__gemm (M <= RLHF__SMALL_M, both layouts; from RLHF__FEW_MIN rows
   on, rlhf__gemm_few_rows' and _cols', and rlhf__gemm_small called directly), N of every residue mod 4,
   fewer columns than four) against rlhf__gemm_ref, with a guard column past
   the end of each C row that must stay untouched. */
/* The few-rows path on a B of a megabyte or more sums k in two halves (RLHF__HALVES),
   each in rlhf__gemv's spread order:
   its bits must be those of the definition written out with rlhf__gemv, on one
   thread and on three, and close to rlhf__gemm_ref. */
static void check_gemv_halves(float *work, rlhf_rng *rng) {
    static const int shapes[][3] = {{1, 1030, 300}, {3, 515, 1001}, {RLHF__FEW_MIN - 1, 258, 1100}, {2, 2311, 119}};
    size_t si;
    for (si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2], ld = N + 1, h = K / 2 / 4 * 4, i, j, acc;
        float *A = floats((size_t)M * K), *B = floats((size_t)K * N), *C0 = floats((size_t)M * ld);
        float *C1 = floats((size_t)M * ld), *C2 = floats((size_t)M * ld), *S = floats((size_t)M * N);
        char what[96];
        CHECK(RLHF__HALVES(M, N, K));
        fill_uniform(A, (size_t)M * K, rng, -1, 1);
        fill_uniform(B, (size_t)K * N, rng, -1, 1);
        fill_uniform(C0, (size_t)M * ld, rng, -1, 1);
        for (acc = 0; acc < 2; acc++) {
            memcpy(C1, C0, (size_t)M * ld * sizeof(float));
            memcpy(C2, C0, (size_t)M * ld * sizeof(float));
            for (i = 0; !acc && i < M; i++) memset(C2 + i * ld, 0, (size_t)N * sizeof(float));
            memset(S, 0, (size_t)M * N * sizeof(float));
            rlhf__gemv(M, h, N, A, K, 1, B, N, C2, ld, 1);
            rlhf__gemv(M, K - h, N, A + h, K, 1, B + (size_t)h * N, N, S, N, 1);
            for (i = 0; i < M; i++)
                for (j = 0; j < N; j++) C2[i * ld + j] += S[(size_t)i * N + j];
            rlhf__gemm(M, N, K, A, K, 1, B, N, 1, C1, ld, acc, work);
            snprintf(what, sizeof what, "gemm halves M=%d N=%d K=%d acc=%d", M, N, K, acc);
            if (memcmp(C1, C2, (size_t)M * ld * sizeof(float)) != 0) {
                fprintf(stderr, "  FAIL %s: not the bits of the halves' definition\n", what);
                g_fail++;
            }
#ifdef _OPENMP
            {
                int threads = omp_get_max_threads();
                memcpy(C2, C0, (size_t)M * ld * sizeof(float));
                omp_set_num_threads(threads > 1 ? 1 : 3);
                rlhf__gemm(M, N, K, A, K, 1, B, N, 1, C2, ld, acc, work);
                omp_set_num_threads(threads);
                if (memcmp(C1, C2, (size_t)M * ld * sizeof(float)) != 0) {
                    fprintf(stderr, "  FAIL %s: another thread count gives other bits\n", what);
                    g_fail++;
                }
            }
#endif
            memcpy(C2, C0, (size_t)M * ld * sizeof(float));
            rlhf__gemm_ref(M, N, K, A, K, 1, B, N, 1, C2, ld, acc);
            close_enough(what, C1, C2, (size_t)M * ld, 2e-7 * K + 1e-6, 1e-5);
            for (i = 0; i < M; i++) CHECK(C1[i * ld + N] == C0[i * ld + N]); /* the guard column */
        }
        free(A); free(B); free(C0); free(C1); free(C2); free(S);
    }
}

static void test_kernel_gemv(void) {
    static const int shapes[][3] = {{1, 1, 1}, {1, 2, 3}, {2, 3, 4}, {1, 9, 5}, {3, 17, 7}, {8, 33, 13},
                                    {5, 64, 100}, {4, 101, 257}, {7, 6, 9}, {1, 250, 66}, {16, 45, 11},
                                    {11, 3, 6}};
    rlhf_rng rng;
    size_t si;
    float *work = rlhf__gemm_work_alloc();
    rlhf_rng_seed(&rng, 14);
    CHECK(work != NULL);
    if (!work) return;
    for (si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2], ld = N + 1, i, k, j, t, layout, spread;
        float *A = floats((size_t)M * K), *B = floats((size_t)K * N), *C0 = floats((size_t)M * ld);
        float *C1 = floats((size_t)M * ld), *C2 = floats((size_t)M * ld), *C3 = floats((size_t)M * ld);
        char what[96];
        fill_uniform(A, (size_t)M * K, &rng, -1, 1);
        fill_uniform(B, (size_t)K * N, &rng, -1, 1);
        fill_uniform(C0, (size_t)M * ld, &rng, -1, 1);
        for (spread = 0; spread < 2; spread++) { /* adjacent rows a pass; one from each quarter */
            memcpy(C1, C0, (size_t)M * ld * sizeof(float));
            memcpy(C2, C0, (size_t)M * ld * sizeof(float));
            memcpy(C3, C0, (size_t)M * ld * sizeof(float));
            rlhf__gemv(M, K, N, A, K, 1, B, N, C1, ld, spread);
            rlhf__gemv_ref(M, K, N, A, K, 1, B, N, C2, ld, spread);
            for (t = 0; t < K; t++) { /* one axpy per k, in the order the kernel claims */
                k = spread ? (t < K / 4 * 4 ? t / 4 + t % 4 * (K / 4) : t) : t;
                for (i = 0; i < M; i++) rlhf__axpy(C3 + i * ld, A[i * K + k], B + (size_t)k * N, N);
            }
            snprintf(what, sizeof what, "gemv M=%d N=%d K=%d spread=%d", M, N, K, spread);
            close_enough(what, C1, C2, (size_t)M * ld, 2e-7 * K + 1e-6, 1e-5);
            if (memcmp(C1, C3, (size_t)M * ld * sizeof(float)) != 0) {
                fprintf(stderr, "  FAIL %s: not the bits of one axpy per k in its order\n", what);
                g_fail++;
            }
            for (i = 0; i < M; i++) CHECK(C1[i * ld + N] == C0[i * ld + N]); /* the guard column */
        }
        for (j = 0; j + 4 <= N; j += N - 4 > 0 ? N - 4 : 1) { /* dot4 of A's row 0 with B as (N,K): columns j..j+3 */
            float d[4], want;
            int q;
            rlhf__dot4(A, B + (size_t)j * K, B + (size_t)(j + 1) * K, B + (size_t)(j + 2) * K, B + (size_t)(j + 3) * K,
                       K, d);
            for (q = 0; q < 4; q++) {
                want = rlhf__dot(A, B + (size_t)(j + q) * K, K);
                CHECK(memcmp(&d[q], &want, sizeof want) == 0);
            }
        }
        for (layout = 0; layout < 2; layout++) { /* B (K,N) rows contiguous; B stored (N,K): dot products */
            ptrdiff_t rsb = layout ? 1 : N, csb = layout ? K : 1;
            int acc = (int)(si % 2);
            memcpy(C1, C0, (size_t)M * ld * sizeof(float));
            memcpy(C2, C0, (size_t)M * ld * sizeof(float));
            rlhf__gemm(M, N, K, A, K, 1, B, rsb, csb, C1, ld, acc, work);
            rlhf__gemm_ref(M, N, K, A, K, 1, B, rsb, csb, C2, ld, acc);
            snprintf(what, sizeof what, "gemm few rows M=%d N=%d K=%d layout=%d acc=%d", M, N, K, layout, acc);
            close_enough(what, C1, C2, (size_t)M * ld, 2e-7 * K + 1e-6, 1e-5);
            for (i = 0; i < M; i++) CHECK(C1[i * ld + N] == C0[i * ld + N]); /* the guard column */
            memcpy(C1, C0, (size_t)M * ld * sizeof(float)); /* itself, where the few-rows paths take over */
            rlhf__gemm_small(M, N, K, A, K, 1, B, rsb, csb, C1, ld, acc, work + RLHF__GEMM_HEADER);
            close_enough(what, C1, C2, (size_t)M * ld, 2e-7 * K + 1e-6, 1e-5);
            for (i = 0; i < M; i++) CHECK(C1[i * ld + N] == C0[i * ld + N]);
        }
        free(A); free(B); free(C0); free(C1); free(C2); free(C3);
    }
    check_gemv_halves(work, &rng);
    rlhf__free(work);
}

static void test_kernel_adamw(void) {
    rlhf_rng rng;
    int s, c;
    rlhf_rng_seed(&rng, 3);
    for (c = 0; c < 2; c++) /* without and with the gradient clip folded in */
        for (s = 0; s < N_ODD + 1; s++) {
            int n = s < N_ODD ? ODD_SIZES[s] : 4096 * 2 + 3; /* the last spans several tasks */
            float *p1 = floats(n), *m1 = floats(n), *v1 = floats(n), *g1 = floats(n);
            float *p2 = floats(n), *m2 = floats(n), *v2 = floats(n), *g2 = floats(n), clip = c ? 0.37f : 1.0f;
            char what[64];
            fill_uniform(p1, n, &rng, -1, 1);
            fill_uniform(m1, n, &rng, -0.1f, 0.1f);
            fill_uniform(v1, n, &rng, 0, 0.01f);
            fill_uniform(g1, n, &rng, -1, 1);
            memcpy(p2, p1, n * sizeof(float)); memcpy(m2, m1, n * sizeof(float)); memcpy(v2, v1, n * sizeof(float));
            memcpy(g2, g1, n * sizeof(float));
            rlhf__adamw(p1, m1, v1, g1, n, 0.9f, 0.95f, 1e-8f, 0.999f, 0.0123f, 0.31f, clip);
            rlhf__adamw_ref(p2, m2, v2, g2, n, 0.9f, 0.95f, 1e-8f, 0.999f, 0.0123f, 0.31f, clip);
            /* the same IEEE operations in the same order; 1e-6 relative allows a
               compiler that contracts the scalar twin's a*b+c into an FMA */
            snprintf(what, sizeof what, "adamw p n=%d clip %g", n, (double)clip);
            close_enough(what, p1, p2, n, 1e-7, 1e-6);
            snprintf(what, sizeof what, "adamw m n=%d clip %g", n, (double)clip);
            close_enough(what, m1, m2, n, 1e-8, 1e-6);
            snprintf(what, sizeof what, "adamw v n=%d clip %g", n, (double)clip);
            close_enough(what, v1, v2, n, 1e-9, 1e-6);
            snprintf(what, sizeof what, "adamw clipped g n=%d clip %g", n, (double)clip);
            close_enough(what, g1, g2, n, 0.0, 0.0);
            free(p1); free(m1); free(v1); free(g1); free(p2); free(m2); free(v2); free(g2);
        }
}

/* The gradient norm's sum of squares: the SIMD path against its twin (the
   same bits), and both against a sum in long double; the whole sum (64
   chunks, threads) against the twin's chunks added in order. */
static void test_kernel_sumsq(void) {
    static const int NS[] = {1, 15, 16, 17, 31, 33, 100, 1000, 4099};
    rlhf_rng rng;
    float *x = floats(70000);
    int s;
    size_t i, n = 70000, per = (n + 63) / 64;
    double want = 0.0;
    rlhf_rng_seed(&rng, 12);
    fill_uniform(x, n, &rng, -3, 3);
    for (s = 0; s < (int)(sizeof NS / sizeof NS[0]); s++) {
        long double exact = 0.0L;
        double got = rlhf__sumsq16(x, (size_t)NS[s]), twin = rlhf__sumsq16_ref(x, (size_t)NS[s]);
        for (i = 0; i < (size_t)NS[s]; i++) exact += (long double)x[i] * x[i];
        /* where long double is double (ARM's EABI) the "exact" sum is itself a
           chain of n double adds: allow n units of 2^-52 */
        if (got != twin || fabs(got - (double)exact) > 2.3e-16 * NS[s] * (double)exact) {
            fprintf(stderr, "  FAIL sum of squares n=%d: %.17g, twin %.17g, long double %.17Lg\n", NS[s], got, twin,
                    exact);
            g_fail++;
        }
    }
    for (i = 0; i < n; i += per) want += rlhf__sumsq16_ref(x + i, n - i < per ? n - i : per);
    CHECK(rlhf__sumsq(x, n) == want);
    free(x);
}

/* The vector exp (the SIMD path's only transcendental: GELU, softmax and the
   cross-entropy use it) against libm's exp in double, rounded: the error in
   units in the last place of the float result (for results below FLT_MIN, in
   units of the smallest subnormal, 2^-149, as libm's gradual underflow).
   Glibc's expf is within 1 ulp; the Cephes polynomial with Cody-Waite
   reduction reaches ~1 ulp over its whole range, so 2 ulp is the bound. */
static double ulp_error(float got, double want) {
    float w = (float)want;
    double ulp;
    if (isinf(w)) return isinf(got) && (got > 0) == (w > 0) ? 0.0 : 1e30;
    ulp = fabs(w) < FLT_MIN ? ldexp(1.0, -149) : (double)nextafterf(fabsf(w), INFINITY) - fabs((double)w);
    return fabs((double)got - want) / ulp;
}
static void test_exp_accuracy(void) {
    enum { N = 1 << 20 };
    float *x = floats(N), *y = floats(N);
    static const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, 88.7f, 88.72f, 88.8f, 89.0f, 100.0f, 1e30f,
                                    -87.3f, -100.0f, -103.9f, -104.0f, -110.0f, -1e30f, 1.0f, -1.0f, 0.5f};
    const int ns = (int)(sizeof special / sizeof special[0]);
    double worst = 0.0;
    float worst_x = 0.0f, sv[4];
    int i;
    /* a sweep of 2^20 evenly spaced points over [-104, 89] (every exponent
       range the result takes: 0, subnormal, normal, up to overflow), then the
       special values */
    for (i = 0; i < N; i++) x[i] = -104.0f + 193.0f * (float)i / (float)N;
    for (i = 0; i < ns; i++) x[i] = special[i];
    rlhf__exp(y, x, N);
    for (i = 0; i < N; i++) {
        double e = ulp_error(y[i], exp((double)x[i]));
        if (e > worst) worst = e, worst_x = x[i];
    }
    printf("  vector exp (%s) against libm over [-104, 89]: max error %.2f ulp at x = %.9g\n", rlhf_simd_name(), worst,
           (double)worst_x);
    CHECK(worst <= 2.0);
    /* as libm: exp(+-0) = 1, exp(-inf) = +0, exp(+inf) = +inf, NaN in NaN out, overflow to inf, underflow to 0 */
    sv[0] = -INFINITY, sv[1] = INFINITY, sv[2] = NAN, sv[3] = -0.0f;
    rlhf__exp(sv, sv, 4);
    CHECK(sv[0] == 0.0f && !signbit(sv[0]));
    CHECK(isinf(sv[1]) && sv[1] > 0);
    CHECK(isnan(sv[2]));
    CHECK(sv[3] == 1.0f);
    for (i = 0; i < ns; i++) CHECK(y[i] == expf(special[i]) || ulp_error(y[i], exp((double)special[i])) <= 2.0);
    free(x);
    free(y);
}

/* sizes for the row kernels: 1, around one and two registers, and long odd rows */
static const int ROW_SIZES[] = {1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 130, 257, 1023};
#define N_ROW (int)(sizeof ROW_SIZES / sizeof ROW_SIZES[0])

/* GELU: the kernel against its twin, and both against the tanh form computed
   in double with libm (an independent definition of gelu_new). */
static void test_kernel_gelu(void) {
    rlhf_rng rng;
    int s, i;
    rlhf_rng_seed(&rng, 4);
    for (s = 0; s < N_ROW + 1; s++) {
        int n = s < N_ROW ? ROW_SIZES[s] : 4096 * 2 + 3; /* the last spans several tasks, with a tail */
        float *x = floats(n), *y1 = floats(n), *y2 = floats(n), *d1 = floats(n), *d2 = floats(n), *want = floats(n);
        char what[64];
        fill_uniform(x, n, &rng, -9, 9);
        if (n > 4) x[0] = -30.0f, x[1] = 30.0f, x[2] = 0.0f, x[3] = -0.0f; /* saturated both ways, and zero */
        fill_uniform(d1, n, &rng, -1, 1);
        memcpy(d2, d1, n * sizeof(float));
        rlhf__gelu_forward(y1, x, n);
        rlhf__gelu_forward_ref(y2, x, n);
        for (i = 0; i < n; i++) {
            double xd = x[i], u = 0.7978845608028654 * (xd + 0.044715 * xd * xd * xd);
            want[i] = (float)(0.5 * xd * (1.0 + tanh(u)));
        }
        /* a few ulp of exp, the division's rounding, and the cubic's: 2e-6
           relative; 1e-7 absolute near gelu's zero at x = 0 */
        snprintf(what, sizeof what, "gelu fwd vs twin n=%d", n);
        close_enough(what, y1, y2, n, 1e-7, 2e-6);
        snprintf(what, sizeof what, "gelu fwd vs tanh form n=%d", n);
        close_enough(what, y1, want, n, 1e-7, 2e-6);
        rlhf__gelu_backward(d1, x, n);
        rlhf__gelu_backward_ref(d2, x, n);
        /* the local derivative crosses 0 near x = -0.75 (cancellation in
           s + 2xs(1-s)...): 1e-6 absolute there, 4e-6 relative elsewhere */
        snprintf(what, sizeof what, "gelu bwd n=%d", n);
        close_enough(what, d1, d2, n, 1e-6, 4e-6);
        free(x); free(y1); free(y2); free(d1); free(d2); free(want);
    }
}

/* On AVX-512 hosts the GELU kernels take 16 lanes at a time (rlhf__gelu512,
   rlhf__dgelu512, rlhf__exp512) before the 8-lane loop: the same operations
   on each lane, so each element must have the bits of the 8-lane functions,
   on 2^16 points spread over exp's whole range (every range of its result),
   on its special values, and on GELU's inputs (saturated, zero, around the
   derivative's zero). */
static void test_kernel_gelu_lanes(void) {
#if defined(RLHF__AVX512)
    enum { N = 1 << 16 };
    static const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 88.72f, 89.0f, 100.0f, -87.3f, -103.9f, -104.0f,
                                    -110.0f, 1e30f, -1e30f, -0.75f, 30.0f, -30.0f};
    float *x = floats(N), *y = floats(N), *d = floats(N), w8[8], w16[16];
    int i, j, bad = 0, ns = (int)(sizeof special / sizeof special[0]);
    for (i = 0; i < N; i++) x[i] = -104.0f + 193.0f * (float)i / (float)N;
    for (i = 0; i < ns; i++) x[i] = special[i];
    x[ns] = INFINITY, x[ns + 1] = -INFINITY, x[ns + 2] = NAN;
    for (i = 0; i < N; i += 16) { /* exp: 16 lanes against two 8-lane calls */
        _mm512_storeu_ps(w16, rlhf__exp512(_mm512_loadu_ps(x + i)));
        for (j = 0; j < 16; j += 8) {
            _mm256_storeu_ps(w8, rlhf__exp256(_mm256_loadu_ps(x + i + j)));
            if (memcmp(w8, w16 + j, sizeof w8)) bad++;
        }
    }
    CHECK(bad == 0);
    for (i = ns + 3; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (float)N; /* GELU's range, past saturation */
    for (i = 0; i < N; i++) d[i] = 1.0f - (float)(i % 7) / 3.0f;
    rlhf__gelu_forward(y, x, N);
    rlhf__gelu_backward(d, x, N);
    for (bad = 0, i = 0; i < N; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(w8, rlhf__gelu256(xv));
        if (memcmp(w8, y + i, sizeof w8)) bad++;
        for (j = 0; j < 8; j++) w16[j] = 1.0f - (float)((i + j) % 7) / 3.0f;
        _mm256_storeu_ps(w8, _mm256_mul_ps(_mm256_loadu_ps(w16), rlhf__dgelu256(xv)));
        if (memcmp(w8, d + i, sizeof w8)) bad++;
    }
    CHECK(bad == 0);
    free(x); free(y); free(d);
#else
    g_skip = "no AVX-512: the GELU kernels have no 16-lane path";
#endif
}

/* LayerNorm forward and backward against the twin, rows of odd widths. Sums
   of C terms in another order: 1e-5 relative, 1e-6 absolute (values ~1). */
static void test_kernel_layernorm(void) {
    rlhf_rng rng;
    int s;
    rlhf_rng_seed(&rng, 6);
    for (s = 0; s < N_ROW; s++) {
        int C = ROW_SIZES[s], BT = 3;
        size_t n = (size_t)BT * C;
        float *x = floats(n), *w = floats(C), *b = floats(C), *y1 = floats(n), *y2 = floats(n), *dy = floats(n);
        float *m1 = floats(BT), *r1 = floats(BT), *m2 = floats(BT), *r2 = floats(BT);
        float *dx1 = floats(n), *dx2 = floats(n), *dw1 = floats(C), *dw2 = floats(C);
        float *db1 = floats(C), *db2 = floats(C);
        char what[64];
        fill_uniform(x, n, &rng, -2, 3);
        fill_uniform(w, C, &rng, 0.5f, 1.5f);
        fill_uniform(b, C, &rng, -0.5f, 0.5f);
        fill_uniform(dy, n, &rng, -1, 1);
        fill_uniform(dx1, n, &rng, -1, 1); /* the backward accumulates */
        memcpy(dx2, dx1, n * sizeof(float));
        rlhf__layernorm_forward(y1, m1, r1, x, w, b, BT, C);
        rlhf__layernorm_forward_ref(y2, m2, r2, x, w, b, BT, C);
        snprintf(what, sizeof what, "layernorm out C=%d", C);
        close_enough(what, y1, y2, n, 1e-5, 1e-5);
        snprintf(what, sizeof what, "layernorm mean C=%d", C);
        close_enough(what, m1, m2, BT, 1e-6, 1e-5);
        snprintf(what, sizeof what, "layernorm rstd C=%d", C);
        close_enough(what, r1, r2, BT, 1e-6, 1e-5);
        rlhf__layernorm_backward(dx1, dw1, db1, dy, x, w, m2, r2, BT, C);
        rlhf__layernorm_backward_ref(dx2, dw2, db2, dy, x, w, m2, r2, BT, C);
        snprintf(what, sizeof what, "layernorm dinp C=%d", C);
        close_enough(what, dx1, dx2, n, 1e-5, 1e-5);
        snprintf(what, sizeof what, "layernorm dweight C=%d", C);
        close_enough(what, dw1, dw2, C, 1e-6, 1e-6);
        snprintf(what, sizeof what, "layernorm dbias C=%d", C);
        close_enough(what, db1, db2, C, 1e-6, 1e-6);
        free(x); free(w); free(b); free(y1); free(y2); free(dy); free(m1); free(r1); free(m2); free(r2);
        free(dx1); free(dx2); free(dw1); free(dw2); free(db1); free(db2);
    }
}

/* One attention row (scores, softmax, weighted sum of values) against the
   twin, for key counts n and head sizes hs of odd widths; keys and values
   strided as in qkv. Probabilities 1e-6 + 1e-5 relative (a few ulp of exp
   and a sum in another order), outputs the same; the raw dot products (hs
   terms of size up to 4, summed in another order) 1e-5 + 1e-5 relative, and
   the weighted sum of up to 1023 rows with those dot products as weights
   (sums in the hundreds; the twin rounds each product, the SIMD path fuses
   it into the add) 1e-4 + 1e-5 relative. */
static void test_kernel_softmax(void) {
    static const int HS[] = {1, 7, 8, 9, 16, 17, 24, 40, 64, 65, 100, 130};
    rlhf_rng rng;
    int s, h;
    rlhf_rng_seed(&rng, 8);
    for (h = 0; h < (int)(sizeof HS / sizeof HS[0]); h++)
        for (s = 0; s < N_ROW; s++) {
            int n = ROW_SIZES[s], hs = HS[h];
            size_t stride = (size_t)3 * hs + 5;
            float *kv = floats((size_t)n * stride + 2 * hs), *q = floats(hs), *o1 = floats(hs), *o2 = floats(hs);
            float *row1 = floats(n), *row2 = floats(n);
            char what[64];
            fill_uniform(kv, (size_t)n * stride + 2 * hs, &rng, -2, 2);
            fill_uniform(q, hs, &rng, -2, 2);
            rlhf__attend_row(o1, row1, q, kv, kv + hs, stride, n, hs, 0.5f);
            rlhf__attend_row_ref(o2, row2, q, kv, kv + hs, stride, n, hs, 0.5f);
            snprintf(what, sizeof what, "softmax n=%d hs=%d", n, hs);
            close_enough(what, row1, row2, n, 1e-6, 1e-5);
            snprintf(what, sizeof what, "attention out n=%d hs=%d", n, hs);
            close_enough(what, o1, o2, hs, 1e-5, 1e-5);
            /* the backward's pieces: dot products with n keys, and o += sum_j w[j] v_j */
            rlhf__dots(row1, q, kv, stride, n, hs);
            rlhf__dots_ref(row2, q, kv, stride, n, hs);
            snprintf(what, sizeof what, "dots n=%d hs=%d", n, hs);
            close_enough(what, row1, row2, n, 1e-5, 1e-5);
            fill_uniform(o1, hs, &rng, -1, 1);
            memcpy(o2, o1, hs * sizeof(float));
            rlhf__wsum(o1, row2, kv + 2 * hs, stride, n, hs, 1);
            rlhf__wsum_ref(o2, row2, kv + 2 * hs, stride, n, hs, 1);
            snprintf(what, sizeof what, "weighted sum n=%d hs=%d", n, hs);
            close_enough(what, o1, o2, hs, 1e-4, 1e-5);
            free(kv); free(q); free(o1); free(o2); free(row1); free(row2);
        }
}

/* On AVX-512 hosts the softmax's exponentials go 16 lanes at a time
   (rlhf__exp512) and are summed in 8 lanes, the low half then the high: each
   element and the sum must have the bits of the 8-lane loop (written out
   here), on rows of every length class, with -inf entries (masked keys). Its
   scaling and maximum (16 lanes, masked tails) against scalar loops. */
static void test_kernel_softmax_lanes(void) {
#if defined(RLHF__AVX512)
    rlhf_rng rng;
    int s, i, bad = 0;
    rlhf_rng_seed(&rng, 12);
    for (s = 0; s < N_ROW; s++) {
        int n = ROW_SIZES[s];
        float *x = floats(n), *y = floats(n), sum, want, maxv;
        __m256 acc = _mm256_setzero_ps();
        fill_uniform(x, n, &rng, -3, 3); /* terms of one size: a change of order shows in the sum's bits */
        if (n > 3) x[n / 3] = -INFINITY;
        maxv = rlhf__row_max(x, n);
        for (i = 0; i + 8 <= n; i += 8) { /* the 8-lane loop */
            __m256 e = rlhf__exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(maxv)));
            _mm256_storeu_ps(y + i, e);
            acc = _mm256_add_ps(acc, e);
        }
        if (i < n) {
            __m256 e = rlhf__exp256(_mm256_sub_ps(rlhf__load_part(x + i, n - i, -INFINITY), _mm256_set1_ps(maxv)));
            rlhf__store_part(y + i, e, n - i);
            acc = _mm256_add_ps(acc, e);
        }
        want = rlhf__hsum256(acc);
        sum = rlhf__exp_shift_sum(x, n, maxv);
        if (memcmp(&sum, &want, sizeof sum) != 0 || memcmp(x, y, (size_t)n * sizeof(float)) != 0) {
            fprintf(stderr, "  FAIL softmax sum n=%d: %.9g, the 8-lane loop %.9g (or its elements differ)\n", n,
                    (double)sum, (double)want);
            bad++;
        }
        /* a row whose maximum is -inf (a query that sees no key): every element and the sum NaN, as the 8-lane
           loop gives them (of either sign: nothing compares NaN payloads) */
        for (i = 0; i < n; i++) x[i] = -INFINITY;
        maxv = rlhf__row_max(x, n);
        sum = rlhf__exp_shift_sum(x, n, maxv);
        for (i = 0; i < n && x[i] != x[i]; i++) {}
        if (maxv != -INFINITY || sum == sum || i < n) {
            fprintf(stderr, "  FAIL softmax of a row of -inf n=%d: max %g, sum %g, element %d not NaN\n", n,
                    (double)maxv, (double)sum, i);
            bad++;
        }
        /* the scaling (16 lanes and the tail) and the maximum, NaN entries skipped, against scalar loops */
        fill_uniform(x, n, &rng, -3, 3);
        x[n - 1] = 5.0f + (float)n; /* the maximum last: in the tail when there is one */
        if (n > 2) x[n / 2] = NAN;
        memcpy(y, x, (size_t)n * sizeof(float));
        rlhf__scale(x, n, 0.37f);
        for (i = 0; i < n; i++) y[i] *= 0.37f;
        for (i = 0, want = -INFINITY; i < n; i++)
            if (y[i] > want) want = y[i];
        if (memcmp(x, y, (size_t)n * sizeof(float)) != 0 || rlhf__row_max(x, n) != want) {
            fprintf(stderr, "  FAIL scale or row max n=%d: max %.9g, want %.9g\n", n, (double)rlhf__row_max(x, n),
                    (double)want);
            bad++;
        }
        free(x); free(y);
    }
    g_fail += bad;
#else
    printf("  skipped: no AVX-512 (the 8-lane loop is the only one)\n");
#endif
}

/* cross-entropy forward (loss, logsumexp) and backward against the twin on
   vocabularies of odd sizes, an ignored row (target -1) and a row with -inf
   logits. lse to 1e-6 + 1e-6 relative (exp's ulp, sums in another order),
   gradients 1e-9 + 1e-5 relative. */
static void test_kernel_crossentropy(void) {
    rlhf_rng rng;
    int s, i;
    rlhf_rng_seed(&rng, 9);
    for (s = 0; s < N_ROW + 1; s++) {
        int V = s < N_ROW ? ROW_SIZES[s] : 50257, BT = 3;
        size_t n = (size_t)BT * V;
        float *l = floats(n), *d1 = floats(n), *d2 = floats(n), *loss1 = floats(BT), *loss2 = floats(BT);
        float *lse1 = floats(BT), *lse2 = floats(BT);
        int tg[3];
        char what[64];
        fill_uniform(l, n, &rng, -8, 8);
        for (i = 0; i < BT; i++) tg[i] = (int)(rlhf_rng_u64(&rng) % (uint64_t)V);
        tg[1] = -1;
        if (V > 2) l[2 * V + (tg[2] + 1) % V] = -INFINITY; /* a masked-out logit: probability 0 */
        rlhf__crossentropy_forward(loss1, lse1, l, tg, BT, V);
        rlhf__crossentropy_forward_ref(loss2, lse2, l, tg, BT, V);
        snprintf(what, sizeof what, "crossentropy lse V=%d", V);
        close_enough(what, lse1, lse2, BT, 1e-6, 1e-6);
        snprintf(what, sizeof what, "crossentropy loss V=%d", V);
        close_enough(what, loss1, loss2, BT, 1e-5, 1e-6);
        memcpy(d1, l, n * sizeof(float));
        memcpy(d2, l, n * sizeof(float));
        rlhf__crossentropy_backward(d1, lse2, tg, 0.25f, BT, V);
        rlhf__crossentropy_backward_ref(d2, lse2, tg, 0.25f, BT, V);
        snprintf(what, sizeof what, "crossentropy dlogits V=%d", V);
        close_enough(what, d1, d2, n, 1e-9, 1e-5);
        free(l); free(d1); free(d2); free(loss1); free(loss2); free(lse1); free(lse2);
    }
}

/* the bias gradient (column sums of dout, added to dbias) against its twin on
   odd widths, full 64-channel chunks and partial ones: the same additions in
   the same order, so the same bits */
static void test_kernel_bias_backward(void) {
    static const int OCS[] = {1, 7, 9, 63, 64, 65, 130, 257};
    rlhf_rng rng;
    int s;
    rlhf_rng_seed(&rng, 10);
    for (s = 0; s < (int)(sizeof OCS / sizeof OCS[0]); s++) {
        int OC = OCS[s], BT = 37;
        float *d = floats((size_t)BT * OC), *b1 = floats(OC), *b2 = floats(OC);
        char what[64];
        fill_uniform(d, (size_t)BT * OC, &rng, -1, 1);
        fill_uniform(b1, OC, &rng, -1, 1);
        memcpy(b2, b1, OC * sizeof(float));
        rlhf__bias_backward(b1, d, BT, OC);
        rlhf__bias_backward_ref(b2, d, BT, OC);
        snprintf(what, sizeof what, "bias backward OC=%d", OC);
        close_enough(what, b1, b2, OC, 0.0, 0.0);
        free(d); free(b1); free(b2);
    }
}

/* ---- finite differences ------------------------------------------------------
   Each backward is checked against central differences of the scalar
   S = sum_i w_i * out_i (w random, so dout = w), computed in double. */
typedef void (*fd_forward_fn)(void *ctx, const float *x, float *out);

/* Check analytic gradient `grad` (nx) of S(x) against central differences at
   `n_probe` coordinates (all when n_probe >= nx). */
static void fd_check(const char *what, fd_forward_fn f, void *ctx, float *x, size_t nx, size_t nout, const float *w,
                     const float *grad, size_t n_probe, float h, double atol, double rtol) {
    float *out = floats(nout), *num = floats(nx), *ana = floats(nx);
    size_t k, i, n = n_probe < nx ? n_probe : nx;
    for (k = 0; k < n; k++) {
        size_t j = n_probe < nx ? (k * 7919u) % nx : k; /* spread probes over x */
        float keep = x[j];
        double sp = 0, sm = 0;
        x[j] = keep + h;
        f(ctx, x, out);
        for (i = 0; i < nout; i++) sp += (double)w[i] * out[i];
        x[j] = keep - h;
        f(ctx, x, out);
        for (i = 0; i < nout; i++) sm += (double)w[i] * out[i];
        x[j] = keep;
        num[k] = (float)((sp - sm) / (2.0 * h));
        ana[k] = grad[j];
    }
    close_enough(what, ana, num, n, atol, rtol);
    free(out); free(num); free(ana);
}

typedef struct { int BT, C; const float *w, *b; float *mean, *rstd; } ln_ctx;
static void ln_fwd(void *c, const float *x, float *out) {
    ln_ctx *k = (ln_ctx *)c;
    rlhf__layernorm_forward(out, k->mean, k->rstd, x, k->w, k->b, k->BT, k->C);
}
typedef struct { int BT, C; const float *x, *b; float *mean, *rstd; } lnw_ctx;
static void lnw_fwd(void *c, const float *w, float *out) {
    lnw_ctx *k = (lnw_ctx *)c;
    rlhf__layernorm_forward(out, k->mean, k->rstd, k->x, w, k->b, k->BT, k->C);
}
static void test_fd_layernorm(void) {
    enum { BT = 5, C = 13 };
    rlhf_rng rng;
    float x[BT * C], w[C], b[C], out[BT * C], dout[BT * C], dx[BT * C] = {0}, dw[C] = {0}, db[C] = {0}, mean[BT], rstd[BT];
    ln_ctx k;
    lnw_ctx kw;
    int i;
    rlhf_rng_seed(&rng, 4);
    fill_uniform(x, BT * C, &rng, -2, 2);
    fill_uniform(w, C, &rng, 0.5f, 1.5f);
    fill_uniform(b, C, &rng, -0.5f, 0.5f);
    fill_uniform(dout, BT * C, &rng, -1, 1);
    rlhf__layernorm_forward(out, mean, rstd, x, w, b, BT, C);
    rlhf__layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, BT, C);
    k.BT = BT; k.C = C; k.w = w; k.b = b; k.mean = mean; k.rstd = rstd;
    /* fp32 forward, h = 1e-2: truncation O(h^2) ~ 1e-4, rounding ~ 1e-5 */
    fd_check("layernorm dinp", ln_fwd, &k, x, BT * C, BT * C, dout, dx, BT * C, 1e-2f, 5e-4, 1e-2);
    kw.BT = BT; kw.C = C; kw.x = x; kw.b = b; kw.mean = mean; kw.rstd = rstd;
    fd_check("layernorm dweight", lnw_fwd, &kw, w, C, BT * C, dout, dw, C, 1e-2f, 5e-4, 1e-2);
    /* dbias is exactly the column sum of dout */
    for (i = 0; i < C; i++) {
        float s = 0;
        int r;
        for (r = 0; r < BT; r++) s += dout[r * C + i];
        CHECK(fabsf(db[i] - s) <= 1e-6f);
    }
}

static void gelu_fwd(void *c, const float *x, float *out) { rlhf__gelu_forward(out, x, *(size_t *)c); }
static void test_fd_gelu(void) {
    enum { N = 41 };
    float x[N], w[N], d[N];
    size_t n = N;
    int i;
    for (i = 0; i < N; i++) x[i] = -6.0f + 12.0f * i / (N - 1) + 0.01f; /* spans the tails and 0 */
    for (i = 0; i < N; i++) w[i] = 1.0f, d[i] = 1.0f;
    rlhf__gelu_backward(d, x, n);
    fd_check("gelu", gelu_fwd, &n, x, N, N, w, d, N, 1e-3f, 2e-4, 1e-3);
    /* the tails: no NaN where exp overflows, the right limits */
    {
        float in[4] = {-100.0f, -10.0f, 10.0f, 100.0f}, o[4], dd[4] = {1, 1, 1, 1};
        rlhf__gelu_forward(o, in, 4);
        rlhf__gelu_backward(dd, in, 4);
        CHECK(o[0] == 0.0f && o[1] <= 0.0f && o[1] > -1e-20f && o[2] == 10.0f && o[3] == 100.0f);
        CHECK(dd[0] == 0.0f && fabsf(dd[1]) < 1e-20f && dd[2] == 1.0f && dd[3] == 1.0f);
    }
    /* known values of tanh-GELU (PyTorch gelu(approximate='tanh')) */
    {
        float in[3] = {-1.0f, 0.5f, 2.0f}, o[3], want[3] = {-0.15880801f, 0.34571401f, 1.95459769f};
        rlhf__gelu_forward(o, in, 3);
        close_enough("gelu values", o, want, 3, 1e-7, 1e-6);
    }
}

typedef struct { int B, T, C, NH; float *att, *out; const int *doc; } attn_ctx;
static void attn_fwd(void *c, const float *qkv, float *out) {
    attn_ctx *k = (attn_ctx *)c;
    rlhf__attention_forward(out, k->att, NULL, qkv, k->doc, k->B, k->T, k->C, k->NH, g_att_work);
}
static void test_fd_attention(void) {
    enum { B = 2, T = 5, C = 12, NH = 3 };
    rlhf_rng rng;
    float qkv[B * T * 3 * C], out[B * T * C], dout[B * T * C], dqkv[B * T * 3 * C] = {0};
    float att[B * NH * T * T], scratch[B * NH * RLHF__ATT_QB * T];
    attn_ctx k;
    rlhf_rng_seed(&rng, 5);
    fill_uniform(qkv, B * T * 3 * C, &rng, -1.5f, 1.5f);
    fill_uniform(dout, B * T * C, &rng, -1, 1);
    rlhf__attention_forward(out, att, NULL, qkv, NULL, B, T, C, NH, g_att_work);
    rlhf__attention_backward(dqkv, scratch, dout, qkv, att, NULL, B, T, C, NH, g_att_work);
    {   /* without the cache (inference rows), the same output bit for bit */
        float out2[B * T * C];
        rlhf__attention_forward(out2, NULL, scratch, qkv, NULL, B, T, C, NH, g_att_work);
        CHECK(memcmp(out, out2, sizeof out) == 0);
        memset(scratch, 0, sizeof scratch);
    }
    k.B = B; k.T = T; k.C = C; k.NH = NH; k.att = att; k.out = out; k.doc = NULL;
    fd_check("attention dqkv", attn_fwd, &k, qkv, B * T * 3 * C, B * T * C, dout, dqkv, B * T * 3 * C, 1e-2f, 5e-4, 1e-2);
    /* causality: the output at t=0 is v_0 of each head exactly */
    CHECK(out[0] == qkv[2 * C] && out[C - 1] == qkv[3 * C - 1]);
    {   /* documents: row 0 left-padded by 2, row 1 two packed documents [0,2) [2,5) */
        static const int doc[B * T] = {0, 1, 2, 2, 2, 0, 0, 2, 2, 2};
        memset(dqkv, 0, sizeof dqkv);
        rlhf__attention_forward(out, att, NULL, qkv, doc, B, T, C, NH, g_att_work);
        rlhf__attention_backward(dqkv, scratch, dout, qkv, att, doc, B, T, C, NH, g_att_work);
        k.doc = doc;
        fd_check("attention dqkv, documents", attn_fwd, &k, qkv, B * T * 3 * C, B * T * C, dout, dqkv, B * T * 3 * C, 1e-2f, 5e-4, 1e-2);
        /* a document's first token sees only itself: out = its own v */
        CHECK(out[(size_t)1 * C] == qkv[(size_t)1 * 3 * C + 2 * C] && out[(size_t)(T + 2) * C] == qkv[(size_t)(T + 2) * 3 * C + 2 * C]);
    }
    {   /* heads of 16 channels: the tiled path (rlhf__attention_forward_tiled), 9 rows (one block: a tile of MR
           rows and one of 9 - MR), row 0 left-padded by 2, row 1 two documents [0,4) [4,9) */
        enum { T2 = 9, C2 = 32, NH2 = 2 };
        static const int doc2[B * T2] = {0, 1, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 4, 4, 4, 4, 4};
        float qkv2[B * T2 * 3 * C2], out3[B * T2 * C2], dout2[B * T2 * C2], dqkv2[B * T2 * 3 * C2] = {0};
        float att2[B * NH2 * T2 * T2], scratch2[B * NH2 * RLHF__ATT_QB * T2];
        fill_uniform(qkv2, B * T2 * 3 * C2, &rng, -1.5f, 1.5f);
        fill_uniform(dout2, B * T2 * C2, &rng, -1, 1);
        rlhf__attention_forward(out3, att2, NULL, qkv2, doc2, B, T2, C2, NH2, g_att_work);
        rlhf__attention_backward(dqkv2, scratch2, dout2, qkv2, att2, doc2, B, T2, C2, NH2, g_att_work);
        k.B = B; k.T = T2; k.C = C2; k.NH = NH2; k.att = att2; k.doc = doc2;
        fd_check("attention dqkv, heads of 16", attn_fwd, &k, qkv2, B * T2 * 3 * C2, B * T2 * C2, dout2, dqkv2,
                 B * T2 * 3 * C2, 1e-2f, 5e-4, 1e-2);
        CHECK(out3[0] == qkv2[2 * C2] && out3[(size_t)(T2 + 4) * C2] == qkv2[(size_t)(T2 + 4) * 3 * C2 + 2 * C2]);
    }
}

typedef struct { int BT, V; const int *tg; float *lse; } ce_ctx;
static void ce_fwd(void *c, const float *logits, float *out) {
    ce_ctx *k = (ce_ctx *)c;
    rlhf__crossentropy_forward(out, k->lse, logits, k->tg, k->BT, k->V);
}
static void test_fd_crossentropy(void) {
    enum { BT = 4, V = 11 };
    rlhf_rng rng;
    int tg[BT] = {3, -1, 0, 10};
    float logits[BT * V], keep[BT * V], losses[BT], lse[BT], w[BT] = {0.25f, 0.25f, 0.25f, 0.25f};
    ce_ctx k;
    rlhf_rng_seed(&rng, 6);
    fill_uniform(logits, BT * V, &rng, -3, 3);
    memcpy(keep, logits, sizeof logits);
    rlhf__crossentropy_forward(losses, lse, logits, tg, BT, V);
    CHECK(losses[1] == 0.0f);
    {   /* loss of row 0 by the definition, in double */
        double s = 0;
        int v;
        for (v = 0; v < V; v++) s += exp((double)logits[v]);
        CHECK(fabs(losses[0] - (log(s) - logits[3])) < 1e-5);
    }
    rlhf__crossentropy_backward(logits, lse, tg, 0.25f, BT, V); /* logits now hold dlogits */
    k.BT = BT; k.V = V; k.tg = tg; k.lse = lse;
    fd_check("crossentropy dlogits", ce_fwd, &k, keep, BT * V, BT, w, logits, BT * V, 1e-2f, 2e-4, 1e-2);
    /* huge logits stay finite: the row maximum is subtracted */
    {
        float big[V];
        int v, t0 = 2;
        for (v = 0; v < V; v++) big[v] = 1e4f * (float)v;
        rlhf__crossentropy_forward(losses, lse, big, &t0, 1, V);
        CHECK(isfinite(losses[0]) && fabsf(losses[0] - 8e4f) < 1.0f);
    }
}

typedef struct { int BT, IC, OC; const float *w, *b; float *work; } lin_ctx;
static void lin_fwd(void *c, const float *x, float *out) {
    lin_ctx *k = (lin_ctx *)c;
    rlhf__linear_forward(out, x, k->w, k->b, NULL, k->BT, k->IC, k->OC, k->work);
}
typedef struct { int BT, IC, OC; const float *x, *b; float *work; } linw_ctx;
static void linw_fwd(void *c, const float *w, float *out) {
    linw_ctx *k = (linw_ctx *)c;
    rlhf__linear_forward(out, k->x, w, k->b, NULL, k->BT, k->IC, k->OC, k->work);
}
static void test_fd_linear(void) {
    enum { BT = 7, IC = 13, OC = 19 };
    rlhf_rng rng;
    float x[BT * IC], w[IC * OC], b[OC], out[BT * OC], dout[BT * OC], dx[BT * IC], dw[IC * OC] = {0}, db[OC] = {0};
    float *work = rlhf__gemm_work_alloc();
    lin_ctx k;
    linw_ctx kw;
    rlhf_rng_seed(&rng, 7);
    fill_uniform(x, BT * IC, &rng, -1, 1);
    fill_uniform(w, IC * OC, &rng, -1, 1);
    fill_uniform(b, OC, &rng, -1, 1);
    fill_uniform(dout, BT * OC, &rng, -1, 1);
    rlhf__linear_forward(out, x, w, b, NULL, BT, IC, OC, work);
    rlhf__linear_backward(dx, dw, db, dout, x, w, BT, IC, OC, work);
    k.BT = BT; k.IC = IC; k.OC = OC; k.w = w; k.b = b; k.work = work;
    /* linear in x: central differences are exact up to rounding */
    fd_check("linear dinp", lin_fwd, &k, x, BT * IC, BT * OC, dout, dx, BT * IC, 1e-2f, 2e-4, 1e-3);
    kw.BT = BT; kw.IC = IC; kw.OC = OC; kw.x = x; kw.b = b; kw.work = work;
    fd_check("linear dweight", linw_fwd, &kw, w, IC * OC, BT * OC, dout, dw, IC * OC, 1e-2f, 2e-4, 1e-3);
    rlhf__free(work);
}

/* ---- the whole model ---------------------------------------------------------- */
static rlhf_config tiny_config(void) {
    rlhf_config c;
    c.vocab_size = 29; c.n_ctx = 16; c.n_layer = 2; c.n_head = 2; c.n_embd = 12;
    return c;
}
static void random_tokens(int *x, int n, int V, rlhf_rng *rng) {
    int i;
    for (i = 0; i < n; i++) x[i] = (int)(rlhf_rng_u64(rng) % (uint64_t)V);
}
/* scale every parameter so that gradients are large enough to measure */
static void spread_params(rlhf_model *m, rlhf_rng *rng) {
    int i;
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info t;
        size_t j;
        rlhf_model_tensor(m, i, &t);
        for (j = 0; j < t.numel; j++) t.data[j] += 0.2f * rlhf_rng_normal(rng);
    }
}

static void test_fd_model(void) {
    rlhf_config cfg = tiny_config();
    rlhf_model *m;
    rlhf_rng rng;
    enum { B = 2, T = 7 };
    int x[B * T], y[B * T], i, probes = 0;
    float loss, *ana, *num;
    rlhf_rng_seed(&rng, 8);
    CHECK_OK(rlhf_model_create(&m, &cfg, 8));
    if (!m) return;
    spread_params(m, &rng);
    random_tokens(x, B * T, cfg.vocab_size, &rng);
    random_tokens(y, B * T, cfg.vocab_size, &rng);
    y[3] = y[9] = -1;
    CHECK_OK(rlhf_model_reserve(m, B, T, 1));
    CHECK_OK(rlhf_model_forward(m, x, y, B, T, NULL, &loss));
    CHECK_OK(rlhf_model_zero_grad(m));
    CHECK_OK(rlhf_model_backward(m));
    ana = floats(64 * 4);
    num = floats(64 * 4);
    /* 4 coordinates of every tensor (both ends and two inside) */
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info t;
        size_t picks[4], k;
        rlhf_model_tensor(m, i, &t);
        picks[0] = 0; picks[1] = t.numel - 1; picks[2] = t.numel / 3; picks[3] = (t.numel * 7) / 11;
        for (k = 0; k < 4; k++) {
            float keep = t.data[picks[k]], lp, lm;
            const float h = 1e-2f;
            t.data[picks[k]] = keep + h;
            rlhf_model_forward(m, x, y, B, T, NULL, &lp);
            t.data[picks[k]] = keep - h;
            rlhf_model_forward(m, x, y, B, T, NULL, &lm);
            t.data[picks[k]] = keep;
            num[probes] = (lp - lm) / (2 * h);
            ana[probes] = t.grad[picks[k]];
            probes++;
        }
    }
    /* fp32 loss ~3 differenced over 2h = 0.02: rounding noise ~3e-5, plus
       O(h^2) truncation; 1e-3 + 2% still catches any wrong term */
    close_enough("model dloss/dparam (finite differences)", ana, num, (size_t)probes, 1e-3, 2e-2);
    free(ana); free(num);
    rlhf_model_free(m);
}

/* ---- golden test against PyTorch (tools/gen_golden.py) --------------------------- */
typedef struct fixture_rec { char name[96]; int dtype, ndim, dims[4]; size_t n; void *data; } fixture_rec;
typedef struct fixture { fixture_rec *rec; int n; } fixture;

static int read_u32(FILE *f, uint32_t *v) {
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}
/* The fixture format: "RLHFFIX1", u32 count, then records (see tools/gen_golden.py). */
static int fixture_load(fixture *fx, const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[8];
    uint32_t count, i, v;
    memset(fx, 0, sizeof *fx);
    if (!f) { fprintf(stderr, "  cannot open %s\n", path); return 0; }
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "RLHFFIX1", 8) != 0 || !read_u32(f, &count) || count > 10000) goto bad;
    fx->rec = (fixture_rec *)calloc(count, sizeof(fixture_rec));
    fx->n = (int)count;
    for (i = 0; i < count; i++) {
        fixture_rec *r = &fx->rec[i];
        uint32_t len, k;
        size_t j;
        if (!read_u32(f, &len) || len >= sizeof r->name || fread(r->name, 1, len, f) != len) goto bad;
        if (!read_u32(f, &v) || v > 1) goto bad;
        r->dtype = (int)v;
        if (!read_u32(f, &v) || v > 4) goto bad;
        r->ndim = (int)v;
        r->n = 1;
        for (k = 0; k < (uint32_t)r->ndim; k++) {
            if (!read_u32(f, &v) || v > (1u << 24)) goto bad;
            r->dims[k] = (int)v;
            r->n *= v;
        }
        r->data = malloc(r->n * 4 + 4);
        for (j = 0; j < r->n; j++) {
            uint32_t u;
            if (!read_u32(f, &u)) goto bad;
            memcpy((char *)r->data + 4 * j, &u, 4); /* host order from little-endian bytes */
        }
    }
    fclose(f);
    return 1;
bad:
    fprintf(stderr, "  malformed fixture %s\n", path);
    fclose(f);
    return 0;
}
static void fixture_free(fixture *fx) {
    int i;
    for (i = 0; i < fx->n; i++) free(fx->rec[i].data);
    free(fx->rec);
}
static fixture_rec *fixture_get(fixture *fx, const char *name) {
    int i;
    for (i = 0; i < fx->n; i++)
        if (strcmp(fx->rec[i].name, name) == 0) return &fx->rec[i];
    fprintf(stderr, "  FAIL fixture has no record \"%s\"\n", name);
    g_fail++;
    return NULL;
}

/* Attention in tiles (heads of 16 and 64 channels) against PyTorch in float64
   (tools/gen_attention_golden.py, which says how the inputs are made): the
   output and dqkv; the inference rows give the training output bit for bit,
   and so do 1 and 3 threads. */
static float golden_val(size_t i, uint32_t salt) {
    uint32_t h = (uint32_t)i * 2654435761u + salt * 40503u;
    return (float)((int)(h % 1001u) - 500) / 256.0f;
}
/* forward with the cache, then backward into dqkv (zeroed first) */
static void attention_both(float *out, float *dqkv, float *att, float *scratch, const float *qkv, const float *dout,
                           const int *doc, int B, int T, int C, int NH) {
    memset(dqkv, 0, (size_t)B * T * 3 * C * sizeof(float));
    rlhf__attention_forward(out, att, NULL, qkv, doc, B, T, C, NH, g_att_work);
    rlhf__attention_backward(dqkv, scratch, dout, qkv, att, doc, B, T, C, NH, g_att_work);
}
/* The tiled path without its room (rlhf__att_room out of memory: each block
   of queries packs its keys' panels, V and K read in place) for every head:
   out and dqkv must have the bits of the default path's */
static void attention_without_room(float *out, float *dqkv, float *att, float *scratch, const float *qkv,
                                   const float *dout, const int *doc, int B, int T, int C, int NH) {
    int hs = C / NH, bh;
    float scale = 1.0f / sqrtf((float)hs);
    memset(dqkv, 0, (size_t)B * T * 3 * C * sizeof(float));
    for (bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *base = qkv + (ptrdiff_t)b * T * 3 * C + h * hs;
        const int *d = doc ? doc + (ptrdiff_t)b * T : NULL;
        rlhf__attention_forward_tiled(out + (ptrdiff_t)b * T * C + h * hs, att + (ptrdiff_t)bh * T * T, NULL, NULL,
                                      base, d, T, C, hs, scale);
        rlhf__attention_backward_tiled(dqkv + (ptrdiff_t)b * T * 3 * C + h * hs, scratch, NULL,
                                       dout + (ptrdiff_t)b * T * C + h * hs, base, att + (ptrdiff_t)bh * T * T, d, T,
                                       C, hs, scale);
    }
}
static void test_golden_attention(void) {
    fixture fx;
    int n;
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/attention_golden.bin")) { g_fail++; return; }
    for (n = 0; n < 6; n++) {
        char name[64];
        fixture_rec *cf, *dc, *ow, *gw;
        const int *ci, *doc;
        int B, T, C, NH;
        size_t i, nq, no;
        float *qkv, *dout, *out, *out2, *dqkv, *dqkv2, *att, *rows;
        snprintf(name, sizeof name, "case%d.config", n); cf = fixture_get(&fx, name);
        snprintf(name, sizeof name, "case%d.doc", n); dc = fixture_get(&fx, name);
        snprintf(name, sizeof name, "case%d.out", n); ow = fixture_get(&fx, name);
        snprintf(name, sizeof name, "case%d.dqkv", n); gw = fixture_get(&fx, name);
        if (!cf || !dc || !ow || !gw) {
            fprintf(stderr, "  FAIL attention_golden.bin has no case %d (make attention-fixture)\n", n);
            g_fail++;
            break;
        }
        ci = (const int *)cf->data, doc = (const int *)dc->data;
        B = ci[0], T = ci[1], C = ci[2], NH = ci[3];
        CHECK(RLHF__ATT_TILED(C / NH));
        nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
        qkv = floats(nq), dout = floats(no), out = floats(no), out2 = floats(no), dqkv = floats(nq);
        dqkv2 = floats(nq), att = floats((size_t)B * NH * T * T), rows = floats((size_t)B * NH * RLHF__ATT_QB * T);
        for (i = 0; i < nq; i++) qkv[i] = golden_val(i, 1);
        for (i = 0; i < no; i++) dout[i] = golden_val(i, 2);
        attention_both(out, dqkv, att, rows, qkv, dout, doc, B, T, C, NH);
        snprintf(name, sizeof name, "attention out, case %d", n);
        close_enough(name, out, (const float *)ow->data, no, 1e-5, 1e-4);
        snprintf(name, sizeof name, "attention dqkv, case %d", n);
        close_enough(name, dqkv, (const float *)gw->data, nq, 1e-5, 1e-4);
        rlhf__attention_forward(out2, NULL, rows, qkv, doc, B, T, C, NH, g_att_work);
        CHECK(memcmp(out, out2, no * sizeof(float)) == 0); /* the inference rows: the same bits */
        attention_without_room(out2, dqkv2, att, rows, qkv, dout, doc, B, T, C, NH);
        CHECK(memcmp(out, out2, no * sizeof(float)) == 0 && memcmp(dqkv, dqkv2, nq * sizeof(float)) == 0);
#ifdef _OPENMP
        {   /* 1 and 3 threads: the same bits */
            int keep = omp_get_max_threads(), t;
            for (t = 1; t <= 3; t += 2) {
                omp_set_num_threads(t);
                attention_both(out2, dqkv2, att, rows, qkv, dout, doc, B, T, C, NH);
                CHECK(memcmp(out, out2, no * sizeof(float)) == 0 && memcmp(dqkv, dqkv2, nq * sizeof(float)) == 0);
            }
            omp_set_num_threads(keep);
        }
#endif
        free(qkv); free(dout); free(out); free(out2); free(dqkv); free(dqkv2); free(att); free(rows);
    }
    fixture_free(&fx);
}

static void test_golden_pytorch(void) {
    fixture fx;
    fixture_rec *r;
    rlhf_config cfg;
    rlhf_model *m = NULL;
    rlhf_adamw_config opt;
    const int *ci;
    const float *ai;
    int B, T, i, step;
    float loss, *logits;
    char name[128];
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/gpt2_golden.bin")) { g_fail++; return; }
    if (!(r = fixture_get(&fx, "config"))) goto done;
    ci = (const int *)r->data;
    cfg.vocab_size = ci[0]; cfg.n_ctx = ci[1]; cfg.n_layer = ci[2]; cfg.n_head = ci[3]; cfg.n_embd = ci[4];
    B = ci[5]; T = ci[6];
    CHECK_OK(rlhf_model_create(&m, &cfg, 0));
    if (!m) goto done;
    /* every tensor by its Hugging Face name, shapes must agree */
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info t;
        rlhf_model_tensor(m, i, &t);
        if (!(r = fixture_get(&fx, t.name))) goto done;
        CHECK(r->n == t.numel && r->ndim == t.ndim && r->dims[0] == t.shape[0]);
        if (r->n == t.numel) memcpy(t.data, r->data, t.numel * sizeof(float));
    }
    {
        fixture_rec *in = fixture_get(&fx, "inputs"), *tg = fixture_get(&fx, "targets");
        fixture_rec *lg = fixture_get(&fx, "logits"), *ls = fixture_get(&fx, "loss");
        fixture_rec *sl = fixture_get(&fx, "steps.loss"), *sn = fixture_get(&fx, "steps.grad_norm");
        if (!in || !tg || !lg || !ls || !sl || !sn || !(r = fixture_get(&fx, "adamw"))) goto done;
        ai = (const float *)r->data;
        opt.lr = ai[0]; opt.beta1 = ai[1]; opt.beta2 = ai[2]; opt.eps = ai[3]; opt.weight_decay = ai[4]; opt.grad_clip = ai[5];
        logits = floats((size_t)B * T * cfg.vocab_size);
        CHECK_OK(rlhf_model_reserve(m, B, T, 1));
        CHECK_OK(rlhf_model_forward(m, (const int *)in->data, (const int *)tg->data, B, T, logits, &loss));
        /* the reference is float64; ours is float32 through 2 layers:
           1e-5 relative on the loss, 1e-4 on logits and gradients */
        close_enough("golden logits", logits, (const float *)lg->data, lg->n, 1e-5, 1e-4);
        close_enough("golden loss", &loss, (const float *)ls->data, 1, 0, 1e-5);
        CHECK_OK(rlhf_model_zero_grad(m));
        CHECK_OK(rlhf_model_backward(m));
        for (i = 0; i < rlhf_model_num_tensors(m); i++) {
            rlhf_tensor_info t;
            rlhf_model_tensor(m, i, &t);
            snprintf(name, sizeof name, "grad.%s", t.name);
            if (!(r = fixture_get(&fx, name))) continue;
            /* atol 1e-6: gradient entries near zero carry absolute rounding */
            close_enough(name, t.grad, (const float *)r->data, t.numel, 1e-6, 1e-4);
        }
        /* 10 AdamW steps with weight decay and clipping at 0.5 */
        for (step = 0; step < 10; step++) {
            float gn;
            CHECK_OK(rlhf_model_forward(m, (const int *)in->data, (const int *)tg->data, B, T, NULL, &loss));
            CHECK_OK(rlhf_model_zero_grad(m));
            CHECK_OK(rlhf_model_backward(m));
            CHECK_OK(rlhf_model_adamw_update(m, &opt, &gn));
            snprintf(name, sizeof name, "step %d loss", step);
            close_enough(name, &loss, (const float *)sl->data + step, 1, 0, 1e-5);
            snprintf(name, sizeof name, "step %d grad norm", step);
            close_enough(name, &gn, (const float *)sn->data + step, 1, 0, 1e-4);
        }
        for (i = 0; i < rlhf_model_num_tensors(m); i++) {
            rlhf_tensor_info t;
            rlhf_model_tensor(m, i, &t);
            snprintf(name, sizeof name, "final.%s", t.name);
            if (!(r = fixture_get(&fx, name))) continue;
            if (strstr(t.name, "c_attn.bias")) {
                /* The key bias (channels [C, 2C)) has an exactly zero
                   gradient: q.(k + b) shifts a whole softmax row by q.b. Adam
                   divides that zero by its own tiny RMS, so both float32 and
                   float64 take lr-sized steps driven by rounding noise: not
                   comparable. Its gradient is checked above (~0); here only
                   the query and value slices. */
                int C = cfg.n_embd;
                close_enough(name, t.data, (const float *)r->data, C, 1e-5, 1e-4);
                close_enough(name, t.data + 2 * C, (const float *)r->data + 2 * C, C, 1e-5, 1e-4);
                continue;
            }
            /* after 10 Adam steps of size ~lr=1e-2, float32 vs float64
               trajectories differ by ~1e-6 absolute */
            close_enough(name, t.data, (const float *)r->data, t.numel, 1e-5, 1e-4);
        }
        free(logits);
    }
done:
    rlhf_model_free(m);
    fixture_free(&fx);
}

/* ---- KV cache ------------------------------------------------------------------ */
/* B sequences decoded together: 3 take the matrix-vector path, 10 the packed matmul */
static void kv_decode_check(int B) {
    rlhf_config cfg = tiny_config();
    rlhf_model *m;
    rlhf_kv_cache *c;
    rlhf_rng rng;
    enum { T = 16 }; /* T = n_ctx: the last position too */
    int x[10 * T], t, b;
    size_t V;
    float *full, *step;
    rlhf_rng_seed(&rng, 9);
    CHECK_OK(rlhf_model_create(&m, &cfg, 9));
    if (!m) return;
    spread_params(m, &rng);
    V = (size_t)cfg.vocab_size;
    random_tokens(x, B * T, cfg.vocab_size, &rng);
    full = floats((size_t)B * T * V);
    step = floats((size_t)B * V);
    CHECK_OK(rlhf_model_logits(m, x, B, T, full));
    CHECK_OK(rlhf_kv_cache_create(&c, m, B, T));
    for (t = 0; t < T; t++) {
        int tok[10];
        for (b = 0; b < B; b++) tok[b] = x[b * T + t];
        CHECK_OK(rlhf_model_decode(m, c, tok, step));
        for (b = 0; b < B; b++) {
            char what[64];
            snprintf(what, sizeof what, "decode b=%d t=%d", b, t);
            /* the same math through the matrix-vector path (another
               summation order): a few float32 roundings */
            close_enough(what, step + b * V, full + ((size_t)b * T + t) * V, V, 2e-5, 1e-4);
        }
    }
    CHECK(rlhf_kv_cache_length(c) == T);
    {   /* full cache refuses another token */
        int tok[10] = {0};
        CHECK(rlhf_model_decode(m, c, tok, step) == RLHF_ERR_CONTEXT_FULL);
        CHECK(rlhf_model_prefill(m, c, x, 3, step) == RLHF_ERR_STATE); /* not empty */
    }
    {   /* prefill 7 prompt tokens in one pass, then decode the rest */
        enum { P = 7 };
        int prompt[10 * P];
        rlhf_kv_cache_reset(c);
        for (b = 0; b < B; b++) memcpy(prompt + b * P, x + b * T, P * sizeof(int));
        CHECK_OK(rlhf_model_prefill(m, c, prompt, P, step));
        for (b = 0; b < B; b++)
            close_enough("prefill logits", step + b * V, full + ((size_t)b * T + P - 1) * V, V, 2e-5, 1e-4);
        for (t = P; t < T; t++) {
            int tok[10];
            for (b = 0; b < B; b++) tok[b] = x[b * T + t];
            CHECK_OK(rlhf_model_decode(m, c, tok, step));
            for (b = 0; b < B; b++) {
                char what[64];
                snprintf(what, sizeof what, "decode after prefill b=%d t=%d", b, t);
                close_enough(what, step + b * V, full + ((size_t)b * T + t) * V, V, 2e-5, 1e-4);
            }
        }
    }
    rlhf_kv_cache_free(c);
    free(full); free(step);
    rlhf_model_free(m);
}
static void test_kv_decode_matches_forward(void) {
    kv_decode_check(3);
    kv_decode_check(10);
}

/* ---- determinism ----------------------------------------------------------------- */
static void train_few(rlhf_model **out, uint64_t seed, int steps) {
    rlhf_config cfg = tiny_config();
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_rng rng;
    int x[4 * 9], y[4 * 9], i;
    float loss;
    rlhf_model_create(out, &cfg, seed);
    rlhf_rng_seed(&rng, seed);
    for (i = 0; i < steps; i++) {
        random_tokens(x, 36, cfg.vocab_size, &rng);
        random_tokens(y, 36, cfg.vocab_size, &rng);
        CHECK_OK(rlhf_model_train_step(*out, x, y, 4, 9, &opt, &loss));
    }
}
static void test_determinism(void) {
    rlhf_model *a = NULL, *b = NULL;
    train_few(&a, 11, 5);
    train_few(&b, 11, 5);
    if (!a || !b) { g_fail++; return; }
    CHECK(memcmp(a->param_mem, b->param_mem, a->num_params * sizeof(float)) == 0);
    rlhf_model_free(b);
    train_few(&b, 12, 5);
    CHECK(memcmp(a->param_mem, b->param_mem, a->num_params * sizeof(float)) != 0);
    rlhf_model_free(b);
#ifdef _OPENMP
    {   /* the same bytes on 1 thread as on several (fixed-order reductions) */
        int keep = omp_get_max_threads();
        omp_set_num_threads(1);
        train_few(&b, 11, 5);
        omp_set_num_threads(keep < 2 ? 2 : keep);
        CHECK(memcmp(a->param_mem, b->param_mem, a->num_params * sizeof(float)) == 0);
        rlhf_model_free(b);
        omp_set_num_threads(keep);
    }
#endif
    rlhf_model_free(a);
}

/* ---- activation recompute ------------------------------------------------------- */
/* Two copies of one model, b recomputing: every loss, value, log-prob and
   gradient of a's caching forward and backward, byte for byte, through the
   three backwards (the LM loss with documents, the scalar head, log-probs
   with entropy), then AdamW steps; and b's caches are what the budget says. */
static int same_bytes(const char *what, const void *a, const void *b, size_t n) {
    if (memcmp(a, b, n) == 0) return 1;
    fprintf(stderr, "  FAIL %s: not the same bytes with and without recompute\n", what);
    return 0;
}
static void test_recompute(void) {
    rlhf_config cfg = tiny_config();
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *a = NULL, *b = NULL;
    rlhf_rng ra, rb, rng;
    rlhf_memory mem;
    enum { B = 3, T = 11, BT = B * T };
    int x[BT], y[BT], doc[BT], pad[B] = {0, 4, 9}, i;
    float la, lb, va[BT], vb[BT], pa[BT], pb[BT], ea[BT], eb[BT], dv[BT], dl[BT], de[BT];
    size_t n;
    long allocs;
    cfg.n_layer = 3; /* layers 0 and 1 are recomputed; the last keeps the forward's caches */
    CHECK_OK(rlhf_model_create(&a, &cfg, 21));
    CHECK_OK(rlhf_model_create(&b, &cfg, 21));
    if (!a || !b) { rlhf_model_free(a); rlhf_model_free(b); return; }
    CHECK(rlhf_model_recompute(b) == 0);
    CHECK_OK(rlhf_model_set_recompute(b, 1));
    CHECK(rlhf_model_recompute(b) == 1 && rlhf_model_recompute(a) == 0);
    rlhf_rng_seed(&ra, 22), rlhf_rng_seed(&rb, 22);
    spread_params(a, &ra), spread_params(b, &rb);
    CHECK_OK(rlhf_model_add_score_head(a, 0.5f, 23));
    CHECK_OK(rlhf_model_add_score_head(b, 0.5f, 23));
    n = rlhf_model_num_params(a);
    rlhf_rng_seed(&rng, 24);
    random_tokens(x, BT, cfg.vocab_size, &rng);
    random_tokens(y, BT, cfg.vocab_size, &rng);
    y[0] = y[15] = -1;
    rlhf_doc_left_pad(doc, pad, B, T);
    fill_uniform(dv, BT, &rng, -1, 1);
    fill_uniform(dl, BT, &rng, -1, 1);
    fill_uniform(de, BT, &rng, -1, 1);
    CHECK_OK(rlhf_model_reserve(a, B, T, 1));
    CHECK_OK(rlhf_model_reserve(b, B, T, 1));
    allocs = g_allocs;

    /* the LM loss, packed documents */
    CHECK_OK(rlhf_model_forward_docs(a, x, y, doc, B, T, NULL, &la));
    CHECK_OK(rlhf_model_forward_docs(b, x, y, doc, B, T, NULL, &lb));
    CHECK_OK(rlhf_model_zero_grad(a)); CHECK_OK(rlhf_model_zero_grad(b));
    CHECK_OK(rlhf_model_backward(a)); CHECK_OK(rlhf_model_backward(b));
    CHECK(same_bytes("LM loss", &la, &lb, sizeof la) && same_bytes("LM gradients", a->grad_mem, b->grad_mem, n * 4));

    /* the scalar head (reward model, critic), added to the gradients above */
    CHECK_OK(rlhf_model_forward_values(a, x, doc, B, T, va, 1));
    CHECK_OK(rlhf_model_forward_values(b, x, doc, B, T, vb, 1));
    CHECK_OK(rlhf_model_backward_values(a, dv)); CHECK_OK(rlhf_model_backward_values(b, dv));
    CHECK(same_bytes("values", va, vb, sizeof va) && same_bytes("value gradients", a->grad_mem, b->grad_mem, n * 4));

    /* PPO's log-probs and entropy at a temperature */
    CHECK_OK(rlhf_model_logprobs(a, x, y, NULL, B, T, 0.7f, pa, ea, 1));
    CHECK_OK(rlhf_model_logprobs(b, x, y, NULL, B, T, 0.7f, pb, eb, 1));
    CHECK_OK(rlhf_model_backward_logprobs(a, dl, de)); CHECK_OK(rlhf_model_backward_logprobs(b, dl, de));
    CHECK(same_bytes("log-probs", pa, pb, sizeof pa) && same_bytes("entropies", ea, eb, sizeof ea));
    CHECK(same_bytes("log-prob gradients", a->grad_mem, b->grad_mem, n * 4));

    /* training steps: the same weights after AdamW, and no allocation in a reserved shape */
    for (i = 0; i < 3; i++) {
        CHECK_OK(rlhf_model_train_step(a, x, y, B, T, &opt, &la));
        CHECK_OK(rlhf_model_train_step(b, x, y, B, T, &opt, &lb));
    }
    CHECK(same_bytes("weights after 3 steps", a->param_mem, b->param_mem, n * 4));
    CHECK(g_allocs == allocs);

    /* the budget: L layers of caches against one, what b allocated; a setting change drops a pending backward */
    CHECK_OK(rlhf_model_memory(b, B, T, 1, &mem));
    CHECK(mem.activations_recompute < mem.activations && mem.total_recompute < mem.total);
    CHECK(mem.total_recompute - mem.activations_recompute == mem.total - mem.activations);
    {
        size_t s[RLHF__NUM_ACTS];
        rlhf__act_sizes(&b->cfg, b->cap_bt, b->cap_btt, 1, s);
        CHECK(rlhf__sum_sizes(s, RLHF__NUM_ACTS) * 4 + 3 * b->cap_bt * sizeof(int) == mem.activations_recompute);
    }
    CHECK_OK(rlhf_model_forward(b, x, y, B, T, NULL, &lb));
    CHECK_OK(rlhf_model_set_recompute(b, 0));
    CHECK(rlhf_model_backward(b) == RLHF_ERR_STATE);
    CHECK_OK(rlhf_model_forward(b, x, y, B, T, NULL, &lb));
    CHECK_OK(rlhf_model_backward(b));
    CHECK(rlhf_model_set_recompute(NULL, 1) == RLHF_ERR_INVALID_ARGUMENT && rlhf_model_recompute(NULL) == 0);
    /* a grown vocabulary keeps the setting (the model is rebuilt inside) */
    CHECK_OK(rlhf_model_set_recompute(b, 1));
    CHECK_OK(rlhf_model_resize_vocab(a, cfg.vocab_size + 3));
    CHECK_OK(rlhf_model_resize_vocab(b, cfg.vocab_size + 3));
    CHECK(rlhf_model_recompute(b) == 1 && rlhf_model_recompute(a) == 0);
    CHECK_OK(rlhf_model_train_step(a, x, y, B, T, &opt, &la));
    CHECK_OK(rlhf_model_train_step(b, x, y, B, T, &opt, &lb));
    CHECK(same_bytes("weights after a step with a grown vocabulary", a->param_mem, b->param_mem,
                     rlhf_model_num_params(a) * 4));
    {   /* GPT-2 124M at B 4, T 1024: the attention probabilities of 12 layers go, the logits stay.
           A 32-bit size_t holds B 1 (3.4 GB in all) but not B 4 (7.8 GB): that is an overflow there */
        rlhf_config g = rlhf_config_gpt2_124m();
        int gb = sizeof(size_t) >= 8 ? 4 : 1;
        if (gb == 1) CHECK(rlhf_config_memory(&g, 4, 1024, 1, &mem) == RLHF_ERR_SIZE_OVERFLOW);
        CHECK_OK(rlhf_config_memory(&g, gb, 1024, 1, &mem));
        CHECK(mem.activations_recompute * 4 < mem.activations);
        CHECK(mem.activations_recompute > (size_t)gb * 1024 * 50257 * 4);
        CHECK_OK(rlhf_config_memory(&g, gb, 1024, 0, &mem));
        CHECK(mem.activations_recompute == mem.activations && mem.total_recompute == mem.total);
    }
    rlhf_model_free(a);
    rlhf_model_free(b);
}

/* ---- threads: dynamic split and size threshold ------------------------------------
   With the grain at 1 operation every loop (matmul tiles and packing, LayerNorm,
   GELU, attention, cross-entropy, log-probs, AdamW, clipping, decoding) runs on
   all threads with its dynamic split, and must give the bytes of one thread. */
#ifdef _OPENMP
/* a model of odd shape (C 18, 3 heads of 6, V 37, T 13, targets with -1): two
   train steps, log-probs with entropy and their backward, AdamW with clipping,
   then 3 decoded positions after a 5-token prefill; params and logits out */
static void threads_odd_run(float *params, float *logits) {
    rlhf_config cfg;
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m = NULL;
    rlhf_kv_cache *kv = NULL;
    rlhf_rng rng;
    int x[3 * 13], y[3 * 13], i;
    float loss, logp[3 * 13], ent[3 * 13], dlogp[3 * 13], dent[3 * 13];
    cfg.vocab_size = 37; cfg.n_ctx = 13; cfg.n_layer = 2; cfg.n_head = 3; cfg.n_embd = 18;
    CHECK_OK(rlhf_model_create(&m, &cfg, 5));
    if (!m) return;
    rlhf_rng_seed(&rng, 5);
    random_tokens(x, 39, 37, &rng);
    random_tokens(y, 39, 37, &rng);
    for (i = 0; i < 39; i += 7) y[i] = -1;
    for (i = 0; i < 39; i++) dlogp[i] = 0.1f * (float)(i % 5) - 0.2f, dent[i] = 0.01f * (float)(i % 3);
    opt.grad_clip = 0.01f; /* the clipping loop runs */
    for (i = 0; i < 2; i++) CHECK_OK(rlhf_model_train_step(m, x, y, 3, 13, &opt, &loss));
    CHECK_OK(rlhf_model_zero_grad(m));
    CHECK_OK(rlhf_model_logprobs(m, x, y, NULL, 3, 13, 0.7f, logp, ent, 1));
    CHECK_OK(rlhf_model_backward_logprobs(m, dlogp, dent));
    CHECK_OK(rlhf_model_adamw_update(m, &opt, NULL));
    memcpy(params, m->param_mem, m->num_params * sizeof(float));
    CHECK_OK(rlhf_kv_cache_create(&kv, m, 3, 8));
    if (kv) {
        int prompt[3 * 5];
        for (i = 0; i < 15; i++) prompt[i] = x[i];
        CHECK_OK(rlhf_model_prefill(m, kv, prompt, 5, logits));
        for (i = 0; i < 3; i++) CHECK_OK(rlhf_model_decode(m, kv, x + 3 * i, logits + (size_t)(i + 1) * 3 * 37));
    }
    rlhf_kv_cache_free(kv);
    rlhf_model_free(m);
}
/* every gemm layout on shapes with partial tiles, K > KC, M > MC, N > NC */
static void threads_gemm_bytes(float *out, int threads) {
    static const int shapes[][3] = {{9, 13, 7}, {13, 17, 300}, {101, 37, 300}, {20, 2100, 9}, {130, 129, 257}};
    float *work = rlhf__gemm_work_alloc();
    rlhf_rng rng;
    size_t si, at = 0;
    int layout;
    rlhf_set_num_threads(threads, 0);
    rlhf_rng_seed(&rng, 9);
    for (si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (layout = 0; layout < 3; layout++) {
            int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
            ptrdiff_t rsa = layout == 2 ? 1 : K, csa = layout == 2 ? M : 1;
            ptrdiff_t rsb = layout == 1 ? 1 : N, csb = layout == 1 ? K : 1;
            float *A = floats((size_t)M * K), *B = floats((size_t)K * N);
            fill_uniform(A, (size_t)M * K, &rng, -1, 1);
            fill_uniform(B, (size_t)K * N, &rng, -1, 1);
            fill_uniform(out + at, (size_t)M * N, &rng, -1, 1);
            rlhf__gemm(M, N, K, A, rsa, csa, B, rsb, csb, out + at, N, layout != 1, work);
            at += (size_t)M * N;
            free(A); free(B);
        }
    rlhf__free(work);
}
#endif
static void test_threads_same_bytes(void) {
#ifdef _OPENMP
    enum { NP = 20000, NL = 4 * 3 * 37, NG = 3 * (9 * 13 + 13 * 17 + 101 * 37 + 20 * 2100 + 130 * 129) };
    float *p1 = floats(NP), *p2 = floats(NP), *l1 = floats(NL), *l2 = floats(NL);
    float *g1 = floats(NG), *g2 = floats(NG);
    int keep = omp_get_max_threads(), two = keep < 2 ? 2 : keep;
    double grain = rlhf__par_grain;
    memset(p1, 0, NP * sizeof(float)); memset(p2, 0, NP * sizeof(float));
    rlhf__par_grain = 1.0; /* every loop on every thread */
    rlhf_set_num_threads(1, 0);
    threads_odd_run(p1, l1);
    threads_gemm_bytes(g1, 1);
    rlhf_set_num_threads(two, 0);
    CHECK(rlhf_threads_in_use() == two);
    threads_odd_run(p2, l2);
    CHECK(memcmp(p1, p2, NP * sizeof(float)) == 0);
    CHECK(memcmp(l1, l2, NL * sizeof(float)) == 0);
    threads_gemm_bytes(g2, two);
    CHECK(memcmp(g1, g2, NG * sizeof(float)) == 0);
    rlhf__par_grain = grain; /* and with the threshold: small loops on one thread, the rest on all */
    threads_odd_run(p2, l2);
    CHECK(memcmp(p1, p2, NP * sizeof(float)) == 0);
    CHECK(memcmp(l1, l2, NL * sizeof(float)) == 0);
    threads_gemm_bytes(g2, two);
    CHECK(memcmp(g1, g2, NG * sizeof(float)) == 0);
    rlhf_set_num_threads(keep, 1);
    free(p1); free(p2); free(l1); free(l2); free(g1); free(g2);
#else
    g_skip = "built without OpenMP: one thread only";
#endif
}

/* ---- training ------------------------------------------------------------------- */
static void test_train_memorises(void) {
    rlhf_config cfg = tiny_config();
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m;
    int x[15], y[15], i;
    float loss = 0, first = 0;
    long allocs;
    opt.lr = 1e-2f;
    for (i = 0; i < 15; i++) x[i] = (i * 7 + 3) % cfg.vocab_size;
    for (i = 0; i < 15; i++) y[i] = i + 1 < 15 ? x[i + 1] : -1;
    CHECK_OK(rlhf_model_create(&m, &cfg, 3));
    if (!m) return;
    CHECK_OK(rlhf_model_reserve(m, 2, 15, 1));
    allocs = g_allocs;
    for (i = 0; i < 150; i++) {
        CHECK_OK(rlhf_model_train_step(m, x, y, 1, 15, &opt, &loss));
        if (i == 0) first = loss;
    }
    CHECK(g_allocs == allocs); /* no allocation inside a step that fits the reservation */
    CHECK(fabsf(first - logf((float)cfg.vocab_size)) < 0.1f); /* GPT-2 init: near-uniform predictions */
    CHECK(loss < 0.05f);
    if (!(loss < 0.05f)) fprintf(stderr, "  loss after 150 steps: %g (from %g)\n", loss, first);
    CHECK(rlhf_model_adamw_steps(m) == 150);
    rlhf_model_free(m);
}

/* two backward calls add up; a non-finite gradient norm refuses the update */
static void test_grad_accumulation(void) {
    rlhf_config cfg = tiny_config();
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m;
    rlhf_rng rng;
    int x[2 * 9], y[2 * 9];
    float loss, *g1, gn;
    size_t i, n;
    rlhf_rng_seed(&rng, 13);
    CHECK_OK(rlhf_model_create(&m, &cfg, 13));
    if (!m) return;
    random_tokens(x, 18, cfg.vocab_size, &rng);
    random_tokens(y, 18, cfg.vocab_size, &rng);
    n = rlhf_model_num_params(m);
    CHECK(rlhf_model_adamw_update(m, &opt, &gn) == RLHF_ERR_STATE); /* no gradients yet */
    /* grow: reserve small, then a larger forward, then backward */
    CHECK_OK(rlhf_model_reserve(m, 1, 3, 1));
    CHECK_OK(rlhf_model_forward(m, x, y, 2, 9, NULL, &loss));
    CHECK_OK(rlhf_model_zero_grad(m));
    CHECK_OK(rlhf_model_backward(m));
    g1 = floats(n);
    memcpy(g1, m->grad_mem, n * sizeof(float));
    CHECK(rlhf_model_backward(m) == RLHF_ERR_STATE); /* the logits became dlogits: forward again */
    CHECK_OK(rlhf_model_forward(m, x, y, 2, 9, NULL, &loss));
    CHECK_OK(rlhf_model_backward(m));
    for (i = 0; i < n; i++) g1[i] *= 2.0f;
    /* the second backward adds g again; a tensor fed by several terms (wte:
       LM head and embedding) rounds (a+b)+a+b, not 2(a+b): a few ulp */
    close_enough("accumulated gradient", m->grad_mem, g1, n, 1e-9, 1e-6);
    m->grad_mem[7] = INFINITY;
    memcpy(g1, m->param_mem, n * sizeof(float));
    CHECK(rlhf_model_adamw_update(m, &opt, &gn) == RLHF_ERR_NON_FINITE && isinf(gn));
    CHECK(memcmp(g1, m->param_mem, n * sizeof(float)) == 0 && rlhf_model_adamw_steps(m) == 0);
    free(g1);
    rlhf_model_free(m);
}

static void test_memory_budget(void) {
    rlhf_config cfg = rlhf_config_gpt2_124m(), tiny = tiny_config();
    rlhf_model *m;
    rlhf_memory mem, inf, viam;
    CHECK(rlhf_config_num_params(&cfg) == 124439808u); /* GPT-2 124M with n_ctx 1024 */
    CHECK_OK(rlhf_config_memory(&cfg, 4, 64, 1, &mem));
    CHECK_OK(rlhf_config_memory(&cfg, 4, 64, 0, &inf));
    CHECK(mem.params == 124439808u * 4u && mem.grads == mem.params && mem.optimizer == 2 * mem.params);
    CHECK(inf.grads == 0 && inf.backward == 0 && inf.activations < mem.activations / 10); /* one layer, no att */
    CHECK(mem.total == mem.params + mem.grads + mem.optimizer + mem.activations + mem.backward + mem.workspace);
    /* logits alone are 4*64*50257 floats */
    CHECK(mem.activations > (size_t)4 * 64 * 50257 * 4);
    CHECK(rlhf_config_memory(&cfg, 1, 1025, 1, &mem) == RLHF_ERR_INVALID_ARGUMENT);
    /* a model reports its config's budget and allocates what it says */
    CHECK_OK(rlhf_model_create(&m, &tiny, 1));
    if (!m) return;
    CHECK_OK(rlhf_model_memory(m, 3, 5, 1, &viam));
    CHECK_OK(rlhf_config_memory(&tiny, 3, 5, 1, &mem));
    CHECK(memcmp(&viam, &mem, sizeof mem) == 0);
    {   /* logits without targets (no caches) equal those of a caching forward, bit for bit,
           and a reserved inference shape never allocates */
        int x[3 * 5], y[3 * 5], i;
        float *l1 = floats(15 * 29), *l2 = floats(15 * 29), loss;
        long allocs;
        for (i = 0; i < 15; i++) x[i] = (i * 7) % 29, y[i] = (i * 5) % 29;
        CHECK_OK(rlhf_model_reserve(m, 3, 5, 0));
        allocs = g_allocs;
        CHECK_OK(rlhf_model_logits(m, x, 3, 5, l1));
        CHECK_OK(rlhf_model_logits(m, x, 1, 5, l1));
        CHECK_OK(rlhf_model_logits(m, x, 3, 5, l1));
        CHECK(g_allocs == allocs);
        CHECK_OK(rlhf_model_forward(m, x, y, 3, 5, l2, &loss));
        CHECK(memcmp(l1, l2, 15 * 29 * sizeof(float)) == 0);
        free(l1); free(l2);
    }
    CHECK(rlhf_model_num_params(m) == rlhf_config_num_params(&tiny));
    rlhf_model_free(m);
}

/* ---- bad input -------------------------------------------------------------------- */
static void test_errors(void) {
    rlhf_config cfg = tiny_config(), bad;
    rlhf_model *m = NULL;
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    int x[4] = {1, 2, 3, 4}, y[4] = {2, 3, 4, 5}, ign[4] = {-1, -1, -1, -1};
    float loss;
    bad = cfg; bad.n_head = 5; /* 12 % 5 != 0 */
    CHECK(rlhf_model_create(&m, &bad, 1) == RLHF_ERR_INVALID_ARGUMENT && m == NULL);
    bad = cfg; bad.n_layer = 0;
    CHECK(rlhf_model_create(&m, &bad, 1) == RLHF_ERR_INVALID_ARGUMENT);
    bad = cfg; bad.vocab_size = 2000000000; bad.n_embd = 2000000000; bad.n_head = 1;
    CHECK(rlhf_model_create(&m, &bad, 1) == RLHF_ERR_INVALID_ARGUMENT);
    CHECK_OK(rlhf_model_create(&m, &cfg, 1));
    if (!m) return;
    x[2] = cfg.vocab_size;
    CHECK(rlhf_model_train_step(m, x, y, 1, 4, &opt, &loss) == RLHF_ERR_BAD_TOKEN);
    CHECK(strstr(rlhf_model_last_error(m), "inputs[0][2] = 29") != NULL);
    x[2] = 3;
    y[1] = -2;
    CHECK(rlhf_model_train_step(m, x, y, 1, 4, &opt, &loss) == RLHF_ERR_BAD_TOKEN);
    CHECK(strstr(rlhf_model_last_error(m), "targets[0][1] = -2") != NULL);
    y[1] = 3;
    CHECK(rlhf_model_train_step(m, x, ign, 1, 4, &opt, &loss) == RLHF_ERR_NO_TARGETS);
    CHECK(rlhf_model_forward(m, x, y, 1, 17, NULL, &loss) == RLHF_ERR_CONTEXT_FULL);
    CHECK(rlhf_model_forward(m, x, y, 0, 4, NULL, &loss) == RLHF_ERR_INVALID_ARGUMENT);
    CHECK(rlhf_model_backward(m) == RLHF_ERR_STATE); /* the failed forward left nothing to backpropagate */
    {   /* a NaN weight: the step is refused and the parameters stay as they were */
        rlhf_tensor_info t;
        float keep, *before = floats(m->num_params);
        CHECK_OK(rlhf_model_find_tensor(m, "h.1.mlp.c_fc.weight", &t));
        keep = t.data[5];
        t.data[5] = NAN;
        memcpy(before, m->param_mem, m->num_params * sizeof(float));
        CHECK(rlhf_model_train_step(m, x, y, 1, 4, &opt, &loss) == RLHF_ERR_NON_FINITE);
        CHECK(isnan(loss));
        CHECK(memcmp(before, m->param_mem, m->num_params * sizeof(float)) == 0);
        t.data[5] = keep;
        free(before);
    }
    CHECK(rlhf_model_find_tensor(m, "h.9.ln_1.weight", NULL) == RLHF_ERR_INVALID_ARGUMENT);
    {
        rlhf_tensor_info t;
        CHECK(rlhf_model_find_tensor(m, "h.9.ln_1.weight", &t) == RLHF_ERR_INVALID_ARGUMENT);
        CHECK(strstr(rlhf_model_last_error(m), "h.9.ln_1.weight") != NULL);
    }
    opt.beta1 = 1.0f;
    CHECK(rlhf_model_train_step(m, x, y, 1, 4, &opt, &loss) == RLHF_ERR_INVALID_ARGUMENT);
    rlhf_model_free(m);
}

static void test_tensor_table(void) {
    rlhf_config cfg = tiny_config();
    rlhf_model *m;
    rlhf_tensor_info t;
    size_t total = 0;
    int i;
    CHECK_OK(rlhf_model_create(&m, &cfg, 1));
    if (!m) return;
    CHECK(rlhf_model_num_tensors(m) == 2 + 12 * 2 + 2);
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_model_tensor(m, i, &t);
        total += t.numel;
    }
    CHECK(total == rlhf_model_num_params(m));
    CHECK_OK(rlhf_model_find_tensor(m, "h.1.attn.c_attn.weight", &t));
    CHECK(t.ndim == 2 && t.shape[0] == 12 && t.shape[1] == 36 && t.weight_decay == 1);
    CHECK(t.data == m->params.qkvw + 12 * 36);
    CHECK_OK(rlhf_model_find_tensor(m, "h.0.mlp.c_proj.weight", &t));
    CHECK(t.shape[0] == 48 && t.shape[1] == 12);
    CHECK_OK(rlhf_model_find_tensor(m, "ln_f.bias", &t));
    CHECK(t.ndim == 1 && t.shape[0] == 12 && t.weight_decay == 0 && t.data[0] == 0.0f);
    CHECK_OK(rlhf_model_find_tensor(m, "h.1.ln_2.weight", &t));
    CHECK(t.data[11] == 1.0f && t.weight_decay == 0);
    {   /* residual projections start with std 0.02/sqrt(2L) = 0.01; c_attn with 0.02 */
        double s1 = 0, s2 = 0;
        size_t j;
        rlhf_config big = rlhf_config_default();
        rlhf_model *mb;
        CHECK_OK(rlhf_model_create(&mb, &big, 5));
        if (!mb) { rlhf_model_free(m); return; }
        rlhf_model_find_tensor(mb, "h.0.attn.c_proj.weight", &t);
        for (j = 0; j < t.numel; j++) s1 += (double)t.data[j] * t.data[j];
        rlhf_model_find_tensor(mb, "h.0.attn.c_attn.weight", &t);
        for (j = 0; j < t.numel; j++) s2 += (double)t.data[j] * t.data[j];
        CHECK(fabs(sqrt(s1 / (128.0 * 128)) - 0.02 / sqrt(8.0)) < 0.0005);
        CHECK(fabs(sqrt(s2 / (128.0 * 384)) - 0.02) < 0.0005);
        rlhf_model_free(mb);
    }
    rlhf_model_free(m);
}

/* ---- sampling ------------------------------------------------------------------- */
static void test_sampling(void) {
    enum { V = 6, DRAWS = 20000 };
    float logits[V] = {1.0f, 3.0f, 0.5f, 2.0f, -1.0f, 2.0f};
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_sampler *s;
    rlhf_rng rng;
    int counts[V], i, tok;
    double p[V], z = 0;
    rlhf_rng_seed(&rng, 10);
    /* greedy */
    sc.temperature = 0.0f;
    CHECK_OK(rlhf_sampler_create(&s, V, &sc));
    CHECK(rlhf_sampler_sample(s, logits, &rng) == 1);
    rlhf_sampler_free(s);
    /* plain sampling at temperature 0.7 matches softmax(l / 0.7) */
    sc.temperature = 0.7f;
    CHECK_OK(rlhf_sampler_create(&s, V, &sc));
    memset(counts, 0, sizeof counts);
    for (i = 0; i < DRAWS; i++) counts[rlhf_sampler_sample(s, logits, &rng)]++;
    for (i = 0; i < V; i++) z += p[i] = exp(logits[i] / 0.7);
    for (i = 0; i < V; i++) {
        /* 20000 draws: standard error <= 0.0036; 5 sigma */
        CHECK(fabs(counts[i] / (double)DRAWS - p[i] / z) < 0.018);
    }
    rlhf_sampler_free(s);
    /* top-k 3 keeps ids 1, 3, 5 (3 and 5 tie at 2.0) */
    sc.temperature = 1.0f;
    sc.top_k = 3;
    CHECK_OK(rlhf_sampler_create(&s, V, &sc));
    memset(counts, 0, sizeof counts);
    for (i = 0; i < DRAWS; i++) counts[rlhf_sampler_sample(s, logits, &rng)]++;
    CHECK(counts[0] == 0 && counts[2] == 0 && counts[4] == 0 && counts[1] > 0 && counts[3] > 0 && counts[5] > 0);
    rlhf_sampler_free(s);
    /* top-k 2 with a tie at the boundary: the lower id wins the tie */
    sc.top_k = 2;
    CHECK_OK(rlhf_sampler_create(&s, V, &sc));
    for (i = 0; i < 2000; i++) {
        tok = rlhf_sampler_sample(s, logits, &rng);
        CHECK(tok == 1 || tok == 3);
        if (!(tok == 1 || tok == 3)) break;
    }
    rlhf_sampler_free(s);
    /* top-p: probabilities ~ (0.07, 0.53, 0.04, 0.19, 0.03, 0.19) sorted 1, 3, 5, ...;
       top_p 0.6 needs ids 1 and 3 (0.53 + 0.19 >= 0.6) and nothing else */
    sc.top_k = 0;
    sc.top_p = 0.6f;
    CHECK_OK(rlhf_sampler_create(&s, V, &sc));
    memset(counts, 0, sizeof counts);
    for (i = 0; i < DRAWS; i++) counts[rlhf_sampler_sample(s, logits, &rng)]++;
    CHECK(counts[1] > 0 && counts[3] > 0 && counts[0] + counts[2] + counts[4] + counts[5] == 0);
    /* renormalised over the kept two: P(1) = e^3 / (e^3 + e^2) = 0.731 */
    CHECK(fabs(counts[1] / (double)DRAWS - 0.7311) < 0.02);
    rlhf_sampler_free(s);
    /* NaN logits are never chosen; all NaN gives -1 */
    sc = rlhf_sampler_config_default(); /* before the block: tcc 0.9.27 puts the returned struct over its arrays */
    {
        float nanl[V] = {NAN, 0.0f, NAN, NAN, NAN, NAN}, alln[V] = {NAN, NAN, NAN, NAN, NAN, NAN};
        CHECK_OK(rlhf_sampler_create(&s, V, &sc));
        for (i = 0; i < 100; i++) CHECK(rlhf_sampler_sample(s, nanl, &rng) == 1);
        CHECK(rlhf_sampler_sample(s, alln, &rng) == -1);
        rlhf_sampler_free(s);
    }
    /* a nucleus smaller than the best token keeps the best token (top-k 2
       leaves 0.73/0.27; top_p 0.1 is below both) */
    sc = rlhf_sampler_config_default();
    sc.top_k = 2;
    sc.top_p = 0.1f;
    CHECK_OK(rlhf_sampler_create(&s, V, &sc));
    for (i = 0; i < 200; i++) CHECK(rlhf_sampler_sample(s, logits, &rng) == 1);
    CHECK(rlhf_sampler_sample(s, logits, NULL) == -1); /* no rng: no draw */
    rlhf_sampler_free(s);
    /* -inf logits are never drawn, even as the last candidate */
    {
        float banned[V] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, -INFINITY};
        sc = rlhf_sampler_config_default();
        CHECK_OK(rlhf_sampler_create(&s, V, &sc));
        for (i = 0; i < 5000; i++) CHECK(rlhf_sampler_sample(s, banned, &rng) != 5);
        rlhf_sampler_free(s);
    }
    sc.top_p = 0.0f;
    CHECK(rlhf_sampler_create(&s, V, &sc) == RLHF_ERR_INVALID_ARGUMENT);
}

static void test_generate(void) {
    rlhf_config cfg = tiny_config();
    rlhf_model *m;
    rlhf_kv_cache *c;
    rlhf_sampler *s;
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_rng rng;
    int prompt[3] = {1, 2, 3}, out[16], n = 0, i, ctx[16];
    float *logits;
    rlhf_rng_seed(&rng, 12);
    CHECK_OK(rlhf_model_create(&m, &cfg, 12));
    if (!m) return;
    spread_params(m, &rng);
    sc.temperature = 0.0f;
    CHECK_OK(rlhf_kv_cache_create(&c, m, 1, 16));
    CHECK_OK(rlhf_sampler_create(&s, cfg.vocab_size, &sc));
    CHECK_OK(rlhf_model_generate(m, c, s, &rng, prompt, 3, 10, -1, out, &n));
    CHECK(n == 10);
    /* greedy generation equals argmax of the full forward at each step */
    logits = floats(16 * (size_t)cfg.vocab_size);
    memcpy(ctx, prompt, sizeof prompt);
    for (i = 0; i < n; i++) {
        int v, best = 0, T = 3 + i;
        const float *row;
        memcpy(ctx + 3, out, (size_t)i * sizeof(int));
        CHECK_OK(rlhf_model_logits(m, ctx, 1, T, logits));
        row = logits + (size_t)(T - 1) * cfg.vocab_size;
        for (v = 1; v < cfg.vocab_size; v++)
            if (row[v] > row[best]) best = v;
        CHECK(out[i] == best);
    }
    /* stops after the first EOS */
    {
        int eos = out[2], first = 0;
        while (out[first] != eos) first++;
        CHECK_OK(rlhf_model_generate(m, c, s, &rng, prompt, 3, 10, eos, out, &n));
        CHECK(n == first + 1 && out[n - 1] == eos);
    }
    /* stops when the cache is full: 16 positions, 3 for the prompt */
    CHECK_OK(rlhf_model_generate(m, c, s, &rng, prompt, 3, 100, -1, ctx, &n));
    CHECK(n == 14);
    free(logits);
    rlhf_sampler_free(s);
    rlhf_kv_cache_free(c);
    rlhf_model_free(m);
}

/* ---- JSON ------------------------------------------------------------------------ */
/* parse a NUL-terminated literal; returns the document or NULL */
static rlhf_json_doc *jparse(const char *text, rlhf_json_error *err) {
    rlhf_json_doc *d = NULL;
    rlhf_json_parse(&d, text, strlen(text), 0, err);
    return d;
}
/* expect a parse failure at line:column with `what` in the message */
static void jreject(const char *text, size_t len, size_t line, size_t col, const char *what) {
    rlhf_json_doc *d = NULL;
    rlhf_json_error e;
    rlhf_result r = rlhf_json_parse(&d, text, len, 0, &e);
    if (r == RLHF_OK || d != NULL || e.line != line || e.column != col || !strstr(e.message, what)) {
        fprintf(stderr, "  FAIL json reject \"%.40s\": got %s at %zu:%zu \"%s\", want %zu:%zu \"%s\"\n", text,
                rlhf_result_string(r), e.line, e.column, e.message, line, col, what);
        g_fail++;
    }
    rlhf_json_free(d);
}

static void test_json_values(void) {
    rlhf_json_error e;
    rlhf_json_doc *d;
    const rlhf_json *root, *v;
    int64_t iv;
    static const char nul_text[] = "[\"a\\u0000b\", \"\\ud83d\\ude00\", \"\\u00e9\\/\\n\"]";
    d = jparse("{\"a\": [1, -2.5e3, 0.1, true, false, null], \"b\": {\"c\": \"x\"}, \"a\": 7}", &e);
    CHECK(d != NULL);
    if (!d) return;
    root = rlhf_json_root(d);
    CHECK(root->type == RLHF_JSON_OBJECT && root->len == 3);
    v = rlhf_json_get(root, "a"); /* the first of duplicate names */
    CHECK(v && v->type == RLHF_JSON_ARRAY && v->len == 6);
    CHECK(rlhf_json_at(v, 0)->number == 1.0 && rlhf_json_at(v, 1)->number == -2500.0);
    CHECK(rlhf_json_at(v, 2)->number == 0.1); /* correctly rounded: the same double as the C literal */
    CHECK(rlhf_json_at(v, 3)->type == RLHF_JSON_TRUE && rlhf_json_at(v, 4)->type == RLHF_JSON_FALSE);
    CHECK(rlhf_json_at(v, 5)->type == RLHF_JSON_NULL && rlhf_json_at(v, 6) == NULL);
    CHECK(strcmp(rlhf_json_get(rlhf_json_get(root, "b"), "c")->str, "x") == 0);
    CHECK(rlhf_json_get(root, "zz") == NULL && rlhf_json_get(v, "a") == NULL);
    CHECK(rlhf_json_at(v, 0)->key == NULL && v->key && strcmp(v->key, "a") == 0); /* array elements have no name */
    CHECK(rlhf_json_int64(rlhf_json_at(v, 0), &iv) && iv == 1);
    CHECK(!rlhf_json_int64(rlhf_json_at(v, 1), &iv)); /* -2.5e3 is not written as an integer */
    rlhf_json_free(d);
    /* strings keep their length: NUL is data; surrogate pairs; escapes */
    d = jparse(nul_text, &e);
    CHECK(d != NULL);
    if (!d) return;
    root = rlhf_json_root(d);
    CHECK(root->len == 3);
    v = rlhf_json_at(root, 0);
    CHECK(v->len == 3 && memcmp(v->str, "a\0b", 3) == 0);
    v = rlhf_json_at(root, 1);
    CHECK(v->len == 4 && memcmp(v->str, "\xF0\x9F\x98\x80", 4) == 0); /* U+1F600 */
    v = rlhf_json_at(root, 2);
    CHECK(v->len == 4 && memcmp(v->str, "\xC3\xA9/\n", 4) == 0);
    rlhf_json_free(d);
    /* exponents far past 10^22: scaled in steps (a few ulp), underflow to 0 */
    d = jparse("[1e-390, 4e-320, 1e300, 12345e-320, 1.5e-300]", &e);
    CHECK(d != NULL);
    if (!d) return;
    root = rlhf_json_root(d);
    CHECK(rlhf_json_at(root, 0)->number == 0.0);
    CHECK(fabs(rlhf_json_at(root, 1)->number / 4e-320 - 1.0) < 1e-3); /* subnormal: few bits */
    CHECK(fabs(rlhf_json_at(root, 2)->number / 1e300 - 1.0) < 1e-14);
    CHECK(fabs(rlhf_json_at(root, 3)->number / 12345e-320 - 1.0) < 1e-6);
    CHECK(fabs(rlhf_json_at(root, 4)->number / 1.5e-300 - 1.0) < 1e-14);
    rlhf_json_free(d);
    /* int64 edges */
    d = jparse("[9223372036854775807, -9223372036854775808, 9223372036854775808, 1e2, -0]", &e);
    CHECK(d != NULL);
    if (!d) return;
    root = rlhf_json_root(d);
    CHECK(rlhf_json_int64(rlhf_json_at(root, 0), &iv) && iv == INT64_MAX);
    CHECK(rlhf_json_int64(rlhf_json_at(root, 1), &iv) && iv == INT64_MIN);
    CHECK(!rlhf_json_int64(rlhf_json_at(root, 2), &iv));
    CHECK(!rlhf_json_int64(rlhf_json_at(root, 3), &iv) && rlhf_json_at(root, 3)->number == 100.0);
    CHECK(rlhf_json_int64(rlhf_json_at(root, 4), &iv) && iv == 0);
    rlhf_json_free(d);
    /* numbers: long mantissas, exponents, underflow */
    d = jparse("[3.141592653589793238462643383279, 1.5e-7, 12345678901234567890123, 1e-500, 2.2250738585072014e-308]", &e);
    CHECK(d != NULL);
    if (!d) return;
    root = rlhf_json_root(d);
    CHECK(fabs(rlhf_json_at(root, 0)->number - 3.141592653589793) < 1e-15);
    CHECK(rlhf_json_at(root, 1)->number == 1.5e-7);
    CHECK(fabs(rlhf_json_at(root, 2)->number / 1.2345678901234567e22 - 1.0) < 1e-15);
    CHECK(rlhf_json_at(root, 3)->number == 0.0);
    CHECK(fabs(rlhf_json_at(root, 4)->number / 2.2250738585072014e-308 - 1.0) < 1e-14);
    rlhf_json_free(d);
}

static void test_json_errors(void) {
    static const char with_nul[] = "[1, \0]";
    char *deep;
    size_t i, n = 100000;
    rlhf_json_doc *d = NULL;
    rlhf_json_error e;
    jreject("", 0, 1, 1, "expected a value, found end of input");
    jreject("[1, 2", 5, 1, 6, "expected ',' or ']', found end of input");
    jreject("{\"a\" 1}", 7, 1, 6, "expected ':' after a member name, found '1'");
    jreject("{\"a\":1,}", 8, 1, 8, "expected '\"' (a member name) after ','");
    jreject("[1,\n 2,\n 03]", 12, 3, 3, "leading zero in a number");
    jreject("[1.]", 4, 1, 4, "expected a digit after '.'");
    jreject("[1e]", 4, 1, 4, "expected a digit in the exponent");
    jreject("[-]", 3, 1, 3, "expected a digit");
    jreject("[tru]", 5, 1, 2, "expected a value");
    jreject("[\"a\tb\"]", 7, 1, 4, "control character in a string");
    jreject("[\"\\x\"]", 6, 1, 4, "expected an escape");
    jreject("[\"\\u12G4\"]", 10, 1, 3, "expected 4 hex digits after \\u");
    jreject("[\"\\ud800\"]", 10, 1, 3, "expected a low surrogate");
    jreject("[\"\\udc00\"]", 10, 1, 3, "lone low surrogate");
    jreject("[\"\xC0\xAF\"]", 6, 1, 3, "invalid UTF-8");         /* overlong '/' */
    jreject("[\"\xED\xA0\x80\"]", 7, 1, 3, "invalid UTF-8");     /* encoded surrogate */
    jreject("[\"\xF4\x90\x80\x80\"]", 8, 1, 3, "invalid UTF-8"); /* above U+10FFFF */
    jreject("[\"abc", 5, 1, 6, "unterminated string");
    jreject("[1] x", 5, 1, 5, "expected the end of the input");
    jreject("\xEF\xBB\xBF{}", 5, 1, 1, "expected a value");        /* a BOM is not JSON */
    jreject("[1e999]", 7, 1, 2, "number too large");
    jreject(with_nul, sizeof with_nul - 1, 1, 5, "found byte 0x00");
    /* 100,000 nested arrays: refused at the depth limit, no recursion */
    deep = (char *)malloc(2 * n);
    for (i = 0; i < n; i++) deep[i] = '[';
    for (i = 0; i < n; i++) deep[n + i] = ']';
    CHECK(rlhf_json_parse(&d, deep, 2 * n, 0, &e) == RLHF_ERR_TOO_LARGE && d == NULL);
    CHECK(e.column == RLHF_JSON_DEFAULT_MAX_DEPTH + 1 && strstr(e.message, "nesting deeper than 512") != NULL);
    /* ... and accepted when the caller allows that depth */
    CHECK(rlhf_json_parse(&d, deep, 2 * n, (int)n, &e) == RLHF_OK && d != NULL);
    rlhf_json_free(d);
    free(deep);
}

static void write_file(const char *path, const char *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    fwrite(bytes, 1, len, f);
    fclose(f);
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

static void test_jsonl(void) {
    static const char text[] = "{\"x\": 1}\r\n\n   \r\n{\"x\": 2}\n{\"x\": \n[3]\n{\"x\": 4}";
    const char *path = "build/test_jsonl.jsonl";
    rlhf_jsonl *r;
    rlhf_json_doc *d;
    rlhf_json_error e;
    int64_t x;
    char big[300];
    write_file(path, text, sizeof text - 1);
    CHECK_OK(rlhf_jsonl_open(&r, path, 0, &e));
    if (!r) return;
    CHECK_OK(rlhf_jsonl_next(r, &d, &e)); /* CRLF */
    CHECK(d && rlhf_json_int64(rlhf_json_get(rlhf_json_root(d), "x"), &x) && x == 1 && rlhf_jsonl_line(r) == 1);
    rlhf_json_free(d);
    CHECK_OK(rlhf_jsonl_next(r, &d, &e)); /* blank and whitespace lines skipped */
    CHECK(d && rlhf_json_int64(rlhf_json_get(rlhf_json_root(d), "x"), &x) && x == 2 && rlhf_jsonl_line(r) == 4);
    rlhf_json_free(d);
    CHECK(rlhf_jsonl_next(r, &d, &e) == RLHF_ERR_PARSE && d == NULL); /* a record may not span lines */
    CHECK(strcmp(e.message, "build/test_jsonl.jsonl:5:7: expected a value, found end of input") == 0);
    if (strcmp(e.message, "build/test_jsonl.jsonl:5:7: expected a value, found end of input") != 0) fprintf(stderr, "  got \"%s\"\n", e.message);
    CHECK_OK(rlhf_jsonl_next(r, &d, &e)); /* the reader goes on after a bad line */
    CHECK(d && rlhf_json_root(d)->type == RLHF_JSON_ARRAY && rlhf_jsonl_line(r) == 6);
    rlhf_json_free(d);
    CHECK_OK(rlhf_jsonl_next(r, &d, &e)); /* the last line has no newline */
    CHECK(d && rlhf_json_int64(rlhf_json_get(rlhf_json_root(d), "x"), &x) && x == 4 && rlhf_jsonl_line(r) == 7);
    rlhf_json_free(d);
    CHECK_OK(rlhf_jsonl_next(r, &d, &e));
    CHECK(d == NULL); /* end */
    rlhf_jsonl_close(r);
    /* a line over the limit is an error, and the next line still reads */
    memset(big, ' ', sizeof big);
    big[0] = '[';
    big[297] = ']';
    big[298] = '\n';
    big[299] = '1';
    write_file(path, big, sizeof big);
    CHECK_OK(rlhf_jsonl_open(&r, path, 100, &e));
    if (!r) return;
    CHECK(rlhf_jsonl_next(r, &d, &e) == RLHF_ERR_TOO_LARGE && strstr(e.message, ":1:1: line longer than the limit of 100 bytes"));
    CHECK_OK(rlhf_jsonl_next(r, &d, &e));
    CHECK(d && rlhf_json_root(d)->number == 1.0 && rlhf_jsonl_line(r) == 2);
    rlhf_json_free(d);
    rlhf_jsonl_close(r);
    {   /* a line of 1.5 million values is refused (TOO_LARGE), the next line still reads */
        size_t nv = 1500000, q;
        char *line = (char *)malloc(2 * nv + 8);
        line[0] = '[';
        for (q = 0; q < nv; q++) { line[1 + 2 * q] = '0'; line[2 + 2 * q] = ','; }
        line[2 * nv] = ']';
        line[2 * nv + 1] = '\n';
        line[2 * nv + 2] = '7';
        write_file(path, line, 2 * nv + 3);
        free(line);
        CHECK_OK(rlhf_jsonl_open(&r, path, 0, &e));
        if (r) {
            CHECK(rlhf_jsonl_next(r, &d, &e) == RLHF_ERR_TOO_LARGE && strstr(e.message, ":1:") && strstr(e.message, "more than 1000000 values"));
            CHECK_OK(rlhf_jsonl_next(r, &d, &e));
            CHECK(d && rlhf_json_root(d)->number == 7.0);
            rlhf_json_free(d);
            rlhf_jsonl_close(r);
        }
    }
    CHECK(rlhf_jsonl_open(&r, "build/no/such/file.jsonl", 0, &e) == RLHF_ERR_IO && r == NULL);
    CHECK(strstr(e.message, "build/no/such/file.jsonl") && strstr(e.message, "cannot open"));
}

/* ---- safetensors ---------------------------------------------------------------- */
static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (unsigned char *)malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); fclose(f); return NULL; }
    fclose(f);
    *len = (size_t)n;
    return b;
}
/* a safetensors file from a header text and data bytes; hlen is the length
   field (normally strlen(header)) */
static void write_st(const char *path, uint64_t hlen, const char *header, const void *data, size_t dlen) {
    FILE *f = fopen(path, "wb");
    unsigned char len8[8];
    int k;
    for (k = 0; k < 8; k++) len8[k] = (unsigned char)(hlen >> (8 * k));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (dlen) fwrite(data, 1, dlen, f);
    fclose(f);
}
/* expect rlhf_model_load_ex(path) to fail with code and `what` in the message */
static void st_reject(const char *name, const char *path, rlhf_result code, const char *what) {
    rlhf_model *m = (rlhf_model *)1;
    rlhf_error e;
    rlhf_result r = rlhf_model_load_ex(&m, path, &e);
    if (r != code || m != NULL || !strstr(e.message, what)) {
        fprintf(stderr, "  FAIL hostile file \"%s\": got %s \"%s\", want %s \"%s\"\n", name, rlhf_result_string(r), e.message,
                rlhf_result_string(code), what);
        g_fail++;
    }
    rlhf_model_free(m != (rlhf_model *)1 ? m : NULL);
}
static rlhf_config st_config(void) {
    rlhf_config c;
    c.vocab_size = 5; c.n_ctx = 4; c.n_layer = 1; c.n_head = 2; c.n_embd = 4;
    return c;
}

static void test_safetensors_roundtrip(void) {
    rlhf_config cfg = tiny_config();
    rlhf_model *a, *b = NULL;
    rlhf_rng rng;
    rlhf_error e;
    int x[2 * 8];
    float *la, *lb;
    size_t n1, n2;
    unsigned char *f1, *f2;
    rlhf_rng_seed(&rng, 21);
    CHECK_OK(rlhf_model_create(&a, &cfg, 21));
    if (!a) return;
    spread_params(a, &rng);
    CHECK_OK(rlhf_model_set_meta(a, "kind", "policy"));
    CHECK_OK(rlhf_model_set_meta(a, "tokenizer", "{\"quote\": \"\\\"\", \"tab\":\"\t\", \"utf8\": \"\xC3\xA9\"}"));
    CHECK(rlhf_model_set_meta(a, "config", "x") == RLHF_ERR_INVALID_ARGUMENT);
    CHECK(rlhf_model_set_meta(a, "bad", "\xFF") == RLHF_ERR_INVALID_ARGUMENT);
    CHECK_OK(rlhf_model_save(a, "build/rt.safetensors"));
    CHECK_OK(rlhf_model_load_ex(&b, "build/rt.safetensors", &e));
    if (!b) { fprintf(stderr, "  %s\n", e.message); rlhf_model_free(a); return; }
    CHECK(memcmp(&a->cfg, &b->cfg, sizeof cfg) == 0);
    CHECK(memcmp(a->param_mem, b->param_mem, a->num_params * sizeof(float)) == 0);
    CHECK(strcmp(rlhf_model_meta(b, "kind"), "policy") == 0);
    CHECK(strcmp(rlhf_model_meta(b, "tokenizer"), rlhf_model_meta(a, "tokenizer")) == 0);
    CHECK(b->m_mem == NULL); /* no training yet: no AdamW state saved or made */
    /* saving what was loaded gives the same bytes */
    CHECK_OK(rlhf_model_save(b, "build/rt2.safetensors"));
    f1 = read_all("build/rt.safetensors", &n1);
    f2 = read_all("build/rt2.safetensors", &n2);
    CHECK(f1 && f2 && n1 == n2 && memcmp(f1, f2, n1) == 0);
    if (f1) CHECK((8 + (f1[0] | f1[1] << 8)) % 8 == 0); /* header padded: the data starts at a multiple of 8 */
    free(f1); free(f2);
    /* identical logits */
    random_tokens(x, 16, cfg.vocab_size, &rng);
    la = floats(16 * (size_t)cfg.vocab_size);
    lb = floats(16 * (size_t)cfg.vocab_size);
    CHECK_OK(rlhf_model_logits(a, x, 2, 8, la));
    CHECK_OK(rlhf_model_logits(b, x, 2, 8, lb));
    CHECK(memcmp(la, lb, 16 * (size_t)cfg.vocab_size * sizeof(float)) == 0);
    free(la); free(lb);
    {   /* a failed save says why through err and writes nothing into its const model */
        rlhf_error e;
        char before[256];
        snprintf(before, sizeof before, "%s", rlhf_model_last_error(a));
        CHECK(rlhf_model_save_ex(a, "build/no-such-dir/x.safetensors", 0, &e) == RLHF_ERR_IO);
        CHECK(strncmp(e.message, "rlhf_model_save: ", 17) == 0 && strstr(e.message, "no-such-dir") != NULL);
        CHECK(strcmp(rlhf_model_last_error(a), before) == 0);
        CHECK(rlhf_model_save(a, "build/no-such-dir/x.safetensors") == RLHF_ERR_IO);
    }
    rlhf_model_free(a);
    rlhf_model_free(b);
    CHECK(rlhf_model_save(NULL, "x") == RLHF_ERR_INVALID_ARGUMENT);
    st_reject("no such file", "build/does-not-exist.safetensors", RLHF_ERR_IO, "cannot open the file");
}

/* N steps straight == N/2 steps, save, load, N/2 steps: bit for bit */
static void test_safetensors_resume(void) {
    rlhf_config cfg = tiny_config();
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *a, *b, *c = NULL;
    rlhf_rng rng;
    int x[3 * 10], y[3 * 10], step;
    float loss;
    opt.lr = 3e-3f;
    CHECK_OK(rlhf_model_create(&a, &cfg, 5));
    CHECK_OK(rlhf_model_create(&b, &cfg, 5));
    if (!a || !b) return;
    rlhf_rng_seed(&rng, 5);
    for (step = 0; step < 8; step++) {
        random_tokens(x, 30, cfg.vocab_size, &rng);
        random_tokens(y, 30, cfg.vocab_size, &rng);
        CHECK_OK(rlhf_model_train_step(a, x, y, 3, 10, &opt, &loss));
        if (step < 4) CHECK_OK(rlhf_model_train_step(b, x, y, 3, 10, &opt, &loss));
        if (step == 3) {
            CHECK_OK(rlhf_model_save(b, "build/resume.safetensors"));
            rlhf_model_free(b);
            CHECK_OK(rlhf_model_load(&c, "build/resume.safetensors"));
            if (!c) { rlhf_model_free(a); return; }
            CHECK(rlhf_model_adamw_steps(c) == 4);
        }
        if (step >= 4) CHECK_OK(rlhf_model_train_step(c, x, y, 3, 10, &opt, &loss));
    }
    CHECK(memcmp(a->param_mem, c->param_mem, a->num_params * sizeof(float)) == 0);
    CHECK(memcmp(a->m_mem, c->m_mem, a->num_params * sizeof(float)) == 0);
    CHECK(memcmp(a->v_mem, c->v_mem, a->num_params * sizeof(float)) == 0);
    /* weights only: no moments in the file */
    CHECK_OK(rlhf_model_save_ex(a, "build/resume_w.safetensors", RLHF_SAVE_WEIGHTS_ONLY, NULL));
    rlhf_model_free(c);
    CHECK_OK(rlhf_model_load(&c, "build/resume_w.safetensors"));
    CHECK(c && c->m_mem == NULL && rlhf_model_adamw_steps(c) == 0);
    rlhf_model_free(c);
    rlhf_model_free(a);
}

/* Hugging Face files written by tools/gen_hf_fixtures.py (PyTorch, float64) */
static void test_safetensors_hf(void) {
    static const char *files[5] = {"pretrained/model.safetensors", "pretrained/model_with_lm_head.safetensors",
                                   "pretrained/model_f16.safetensors", "pretrained/model_bf16.safetensors", "hub/model.safetensors"};
    static const char *want[5] = {"logits.f32", "logits.f32", "logits.f16", "logits.bf16", "logits.f32"};
    fixture fx;
    fixture_rec *in, *cf;
    int i;
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/hf/expected.bin")) { g_fail++; return; }
    in = fixture_get(&fx, "inputs");
    cf = fixture_get(&fx, "config");
    for (i = 0; in && cf && i < 5; i++) {
        char path[256];
        rlhf_model *m = NULL;
        rlhf_error e;
        fixture_rec *lg = fixture_get(&fx, want[i]);
        const int *c = (const int *)cf->data;
        float *logits;
        snprintf(path, sizeof path, "%s/hf/%s", RLHF_FIXTURE_DIR, files[i]);
        if (rlhf_model_load_ex(&m, path, &e) != RLHF_OK) {
            fprintf(stderr, "  FAIL loading %s: %s\n", path, e.message);
            g_fail++;
            continue;
        }
        CHECK(m->cfg.vocab_size == c[0] && m->cfg.n_ctx == c[1] && m->cfg.n_layer == c[2] && m->cfg.n_head == c[3] &&
              m->cfg.n_embd == c[4]);
        logits = floats(lg->n);
        CHECK_OK(rlhf_model_logits(m, (const int *)in->data, in->dims[0], in->dims[1], logits));
        /* float64 reference from the same (rounded) weights: float32 error only */
        close_enough(path, logits, (const float *)lg->data, lg->n, 1e-5, 1e-4);
        free(logits);
        rlhf_model_free(m);
    }
    fixture_free(&fx);
}

/* Replace the first `from` in the header of file src by `to` and write dst
   with a corrected header length. */
static void st_mutate(const char *src, const char *dst, const char *from, const char *to) {
    size_t n, hlen, fl = strlen(from), tl = strlen(to);
    unsigned char *b = read_all(src, &n);
    char *h, *pos, *nh;
    if (!b) { g_fail++; return; }
    hlen = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16;
    h = (char *)malloc(hlen + 1);
    memcpy(h, b + 8, hlen);
    h[hlen] = 0;
    pos = strstr(h, from);
    if (!pos) { fprintf(stderr, "  test bug: \"%s\" not in the header\n", from); g_fail++; free(h); free(b); return; }
    nh = (char *)malloc(hlen + tl + 1);
    memcpy(nh, h, (size_t)(pos - h));
    memcpy(nh + (pos - h), to, tl);
    strcpy(nh + (pos - h) + tl, pos + fl);
    write_st(dst, strlen(nh), nh, b + 8 + hlen, n - 8 - hlen);
    free(nh); free(h); free(b);
}

static void test_safetensors_hostile(void) {
    const char *p = "build/hostile.safetensors", *base = "build/hostile_base.safetensors";
    static const float two[4] = {1, 2, 3, 4};
    char *deep;
    size_t i, nd = 100000;
    rlhf_config cfg = st_config();
    rlhf_model *m;
    int count = 0;
#define AUTO UINT64_MAX - 1 /* the header's real length */
#define HOSTILE(name, hlen, header, data, dlen, code, what) \
    do { write_st(p, (hlen) == (AUTO) ? strlen(header) : (hlen), (header), (data), (dlen)); st_reject((name), p, (code), (what)); count++; } while (0)
#define AB "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}"
    /* the file and its header length */
    write_st(p, 0, "", NULL, 0);
    {   FILE *f = fopen(p, "wb"); fclose(f); }
    st_reject("empty file", p, RLHF_ERR_PARSE, "shorter than the 8-byte header length"); count++;
    { FILE *f = fopen(p, "wb"); fwrite("\x10\0\0\0\0\0\0", 1, 7, f); fclose(f); }
    st_reject("7 bytes", p, RLHF_ERR_PARSE, "shorter than the 8-byte header length"); count++;
    HOSTILE("header length 0", 0, "", two, 16, RLHF_ERR_PARSE, "header length is 0");
    HOSTILE("header length past the end", 4096, AB, two, 16, RLHF_ERR_PARSE,
            "hostile.safetensors: header length 4096 is larger than the file (132 bytes): not a safetensors file, or truncated");
    HOSTILE("header length 2^64-1", UINT64_MAX, AB, two, 16, RLHF_ERR_PARSE, "header length 18446744073709551615 is larger than the file");
    {   /* over the limit in a file that really is that large (sparse: no disk used) */
        FILE *f;
        write_st(p, 100000001u, AB, two, 16);
        f = fopen(p, "r+b");
        fseek(f, 8 + 100000001L + 15, SEEK_SET);
        fputc(0, f);
        fclose(f);
        st_reject("header length over the limit", p, RLHF_ERR_TOO_LARGE, "header length 100000001 exceeds the limit of 100000000 bytes");
        count++;
    }
    /* files that are not checkpoints at all: say what they are */
    write_file(p, "{\"vocab_size\": 50257, \"n_layer\": 12}\n", 37);
    st_reject("a JSON object", p, RLHF_ERR_PARSE, "build/hostile.safetensors: looks like a JSON file, not a safetensors checkpoint"); count++;
    write_file(p, "\n  [1, 2, 3, 4, 5, 6, 7]", 24);
    st_reject("a JSON array after whitespace", p, RLHF_ERR_PARSE, "looks like a JSON file, not a safetensors checkpoint"); count++;
    write_file(p, "{}", 2);
    st_reject("JSON of 2 bytes", p, RLHF_ERR_PARSE, "looks like a JSON file, not a safetensors checkpoint"); count++;
    {   /* a header length of 123 starts the file with '{': a real checkpoint, read past the length */
        char h123[124];
        memset(h123, ' ', 123);
        memcpy(h123, AB, strlen(AB));
        h123[123] = 0;
        HOSTILE("header length 123 ('{')", AUTO, h123, two, 16, RLHF_ERR_PARSE, "no config: the metadata has none");
    }
#if defined(__unix__) || defined(__APPLE__) /* elsewhere a directory does not open as a file */
    st_reject("a directory", "build", RLHF_ERR_IO, "build: is a directory without config.json, so not a Hugging Face model"); count++;
    st_reject("a directory with a slash", "build/", RLHF_ERR_IO, "build/: is a directory without config.json"); count++;
#endif
    HOSTILE("header cut in the middle", strlen(AB) - 10, AB, NULL, 0, RLHF_ERR_PARSE, "header byte");
    HOSTILE("header not JSON", AUTO, "hello", NULL, 0, RLHF_ERR_PARSE, "expected a value");
    HOSTILE("header not an object", AUTO, "[]", NULL, 0, RLHF_ERR_PARSE, "not a JSON object");
    HOSTILE("header not UTF-8", AUTO, "{\"\xFF\":{\"dtype\":\"F32\"}}   ", NULL, 0, RLHF_ERR_PARSE, "invalid UTF-8");
    HOSTILE("header with a BOM", AUTO, "\xEF\xBB\xBF{}", NULL, 0, RLHF_ERR_PARSE, "expected a value");
    deep = (char *)malloc(2 * nd + 1);
    for (i = 0; i < nd; i++) deep[i] = '{' == 0 ? 0 : '[';
    for (i = 0; i < nd; i++) deep[nd + i] = ']';
    deep[2 * nd] = 0;
    HOSTILE("100,000-deep nesting", 2 * nd, deep, NULL, 0, RLHF_ERR_TOO_LARGE, "nesting deeper than");
    free(deep);
    HOSTILE("duplicate names", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
            two, 16, RLHF_ERR_PARSE, "duplicate name \"a\"");
    HOSTILE("entry not an object", AUTO, "{\"a\":[1]}", NULL, 0, RLHF_ERR_PARSE, "entry is not an object");
    HOSTILE("no dtype", AUTO, "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}     ", two, 8, RLHF_ERR_PARSE, "no \"dtype\" string");
    HOSTILE("unknown dtype", AUTO, "{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}    ", two, 8, RLHF_ERR_PARSE, "unknown dtype \"F31\"");
    HOSTILE("shape not an array", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}    ", two, 8, RLHF_ERR_PARSE, "\"shape\" must be an array");
    HOSTILE("negative shape", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}  ", two, 8, RLHF_ERR_PARSE, "shape[0] is not a non-negative integer");
    HOSTILE("fractional shape", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}  ", two, 8, RLHF_ERR_PARSE, "shape[0] is not a non-negative integer");
    HOSTILE("shape product overflows", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}        ",
            two, 8, RLHF_ERR_PARSE, "element count overflows");
    HOSTILE("byte size overflows", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}   ", two, 8,
            RLHF_ERR_PARSE, "byte size overflows");
    HOSTILE("no data_offsets", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}      ", two, 8, RLHF_ERR_PARSE, "\"data_offsets\" must be two");
    HOSTILE("reversed offsets", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}   ", two, 8, RLHF_ERR_PARSE, "end before they begin");
    HOSTILE("negative offsets", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}   ", two, 8, RLHF_ERR_PARSE, "two non-negative integers");
    HOSTILE("non-integer offsets", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}  ", two, 8, RLHF_ERR_PARSE, "two non-negative integers");
    HOSTILE("three offsets", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}  ", two, 8, RLHF_ERR_PARSE, "two non-negative integers");
    HOSTILE("offsets as strings", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}} ", two, 8, RLHF_ERR_PARSE, "two non-negative integers");
    HOSTILE("dtype size vs span", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}   ", two, 8, RLHF_ERR_PARSE, "holds 12 bytes but data_offsets span 8");
    HOSTILE("F16 size vs span", AUTO, "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}   ", two, 8, RLHF_ERR_PARSE, "F16 shape holds 4 bytes");
    HOSTILE("overlapping", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
            two, 12, RLHF_ERR_PARSE, "overlaps the previous tensor");
    HOSTILE("gap", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
            two, 16, RLHF_ERR_PARSE, "a gap before it");
    HOSTILE("not starting at 0", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}  ", two, 12, RLHF_ERR_PARSE, "starts at data offset 4, expected 0");
    HOSTILE("out of range", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
            two, 16, RLHF_ERR_PARSE, "cover 24 bytes of data but the file holds 16");
    HOSTILE("bytes after the tensors", strlen(AB), AB, two, 12, RLHF_ERR_PARSE, "cover 16 bytes of data but the file holds 12");
    HOSTILE("data truncated", strlen(AB), AB, two, 9, RLHF_ERR_PARSE, "the file holds 9");
    HOSTILE("unknown field", AUTO, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}   ", two, 8, RLHF_ERR_PARSE, "unknown field \"extra\"");
    HOSTILE("metadata not an object", AUTO, "{\"__metadata__\":[1]}", NULL, 0, RLHF_ERR_PARSE, "__metadata__ is not an object");
    HOSTILE("metadata value not a string", AUTO, "{\"__metadata__\":{\"a\":1}}", NULL, 0, RLHF_ERR_PARSE, "__metadata__ \"a\" is not a string");
    HOSTILE("a field twice", AUTO, "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8, RLHF_ERR_PARSE,
            "field \"dtype\" appears twice");
    HOSTILE("metadata key twice", AUTO, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", NULL, 0, RLHF_ERR_PARSE, "duplicate __metadata__ key \"k\"");
    HOSTILE("space before the header", AUTO, " {}", NULL, 0, RLHF_ERR_PARSE, "starting at its first byte");
    {   /* 3 million values in a small header: refused before the tree grows past the budget */
        size_t nv = 3000000, q;
        char *big = (char *)malloc(2 * nv + 16);
        strcpy(big, "{\"a\":[");
        for (q = 0; q < nv; q++) { big[6 + 2 * q] = '0'; big[7 + 2 * q] = ','; }
        strcpy(big + 6 + 2 * nv - 1, "]}");
        HOSTILE("too many values", AUTO, big, NULL, 0, RLHF_ERR_TOO_LARGE, "more than 2000000 values");
        free(big);
    }
    HOSTILE("NUL in a name", AUTO, "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8, RLHF_ERR_PARSE, "contains a NUL byte");
    HOSTILE("no config anywhere", strlen(AB), AB, two, 16, RLHF_ERR_PARSE, "no config: the metadata has none and build/config.json cannot be read");
    /* model-level: a real checkpoint of a tiny model, mutated */
    CHECK_OK(rlhf_model_create(&m, &cfg, 3));
    if (!m) return;
    CHECK_OK(rlhf_model_save(m, base));
    rlhf_model_free(m);
    m = NULL;
    CHECK_OK(rlhf_model_load(&m, base)); /* the unmutated base loads */
    rlhf_model_free(m);
#define MUTATE(name, from, to, code, what) do { st_mutate(base, p, (from), (to)); st_reject((name), p, (code), (what)); count++; } while (0)
    MUTATE("config n_head 0", "\\\"n_head\\\":2", "\\\"n_head\\\":0", RLHF_ERR_PARSE, "\"n_head\" must be an integer from 1 to 2^30, got 0");
    MUTATE("config n_head not dividing C", "\\\"n_head\\\":2", "\\\"n_head\\\":3", RLHF_ERR_PARSE, "n_head 3 does not divide n_embd 4");
    /* a config bigger than the weights is refused before the model is allocated (the fuzzer's
       config.json of 250,256 layers beside a 2-layer file once allocated 3.3 GB first) */
    MUTATE("config with more layers", "\\\"n_layer\\\":1", "\\\"n_layer\\\":2", RLHF_ERR_PARSE,
           "the config (n_layer 2, n_embd 4, n_head 2, vocab_size 5, n_ctx 4) describes 532 parameters but the weights "
           "hold only 288 values");
    MUTATE("config of 250,000 layers", "\\\"n_layer\\\":1", "\\\"n_layer\\\":250256", RLHF_ERR_PARSE,
           "describes 61062508 parameters but the weights hold only 288 values");
    MUTATE("config wider than the weights", "\\\"n_layer\\\":1,\\\"n_head\\\":2,\\\"n_embd\\\":4", "\\\"n_layer\\\":1,\\\"n_head\\\":2,\\\"n_embd\\\":8",
           RLHF_ERR_PARSE, "describes 960 parameters but the weights hold only 288 values");
    /* smaller, or as big with a tensor missing: named by the tensor */
    MUTATE("config narrower than the weights", "\\\"n_layer\\\":1,\\\"n_head\\\":2,\\\"n_embd\\\":4", "\\\"n_layer\\\":1,\\\"n_head\\\":2,\\\"n_embd\\\":2",
           RLHF_ERR_PARSE, "tensor \"wte.weight\" has shape [5, 4], expected [5, 2]");
    MUTATE("missing tensor (renamed to a skipped buffer)", "\"ln_f.bias\"", "\"h.0.attn.bias\"", RLHF_ERR_PARSE,
           "missing tensor \"ln_f.bias\"");
    MUTATE("config not JSON", "{\\\"vocab_size\\\"", "{vocab_size", RLHF_ERR_PARSE, "__metadata__ config:");
    MUTATE("config field missing", "\\\"vocab_size\\\":5,", "", RLHF_ERR_PARSE, "has no \"vocab_size\"");
    MUTATE("extra tensor", "\"ln_f.bias\"", "\"h.7.attn.c_attn.weight\"", RLHF_ERR_PARSE, "unexpected tensor \"h.7.attn.c_attn.weight\"");
    MUTATE("missing tensor (renamed)", "\"ln_f.bias\"", "\"ln_f.bias2\"", RLHF_ERR_PARSE, "unexpected tensor \"ln_f.bias2\"");
    MUTATE("transposed c_attn", "\"shape\":[4,12]", "\"shape\":[12,4]", RLHF_ERR_PARSE,
           "tensor \"h.0.attn.c_attn.weight\" has shape [12, 4], expected [4, 12] (Conv1D layout [in, out])");
    MUTATE("weights as I32", "\"wte.weight\":{\"dtype\":\"F32\"", "\"wte.weight\":{\"dtype\":\"I32\"", RLHF_ERR_PARSE, "is I32; weights must be F32");
    MUTATE("a tensor under two names", "\"h.0.ln_1.bias\"", "\"transformer.h.0.ln_1.weight\"", RLHF_ERR_PARSE,
           "tensor \"h.0.ln_1.weight\" appears twice");
    MUTATE("optim.step not a number", "\"rlhf.version\"", "\"optim.step\":\"x\",\"rlhf.version\"", RLHF_ERR_PARSE, "optim.step \"x\" is not a step count");
    MUTATE("moments without optim.v", "\"ln_f.bias\"", "\"optim.m.ln_f.bias\"", RLHF_ERR_PARSE, "incomplete AdamW state");
    CHECK(count >= 40);
    {   /* the base file cut at every length: each one rejected, none crashes */
        size_t n, k, loaded = 0;
        unsigned char *b = read_all(base, &n);
        for (k = 0; b && k < n; k++) {
            FILE *f = fopen(p, "wb");
            rlhf_model *tm = NULL;
            rlhf_error te;
            fwrite(b, 1, k, f);
            fclose(f);
            if (rlhf_model_load_ex(&tm, p, &te) == RLHF_OK) loaded++;
            rlhf_model_free(tm);
        }
        CHECK(b && loaded == 0);
        free(b);
    }
#undef HOSTILE
#undef AUTO
#undef MUTATE
#undef AB
}

/* AdamW moments no run writes (NaN, inf, a negative second moment: a damaged
   file) are refused at load, named by tensor and element, instead of loading
   and turning the resumed run's weights NaN at its first update. */
static void st_poke(const char *src, const char *dst, const char *tensor, int elem, float value) {
    size_t n, hlen, off = 0;
    unsigned char *b = read_all(src, &n);
    char key[96], *h, *pos;
    if (!b) { g_fail++; return; }
    hlen = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16;
    h = (char *)malloc(hlen + 1);
    memcpy(h, b + 8, hlen);
    h[hlen] = 0;
    snprintf(key, sizeof key, "\"%s\":", tensor);
    pos = strstr(h, key);
    pos = pos ? strstr(pos, "\"data_offsets\":[") : NULL;
    if (pos) off = (size_t)strtoul(pos + 16, NULL, 10);
    if (!pos || off == 0) { /* (no moment comes first in the file: its data offset is never 0) */
        fprintf(stderr, "  test bug: no %s in the header\n", tensor);
        g_fail++;
    } else {
        memcpy(b + 8 + hlen + off + 4 * (size_t)elem, &value, 4); /* little-endian host: as the file */
        write_st(dst, hlen, h, b + 8 + hlen, n - 8 - hlen);
    }
    free(h); free(b);
}
static void test_safetensors_bad_moments(void) {
    const char *p = "build/moments.safetensors", *base = "build/moments_base.safetensors";
    rlhf_config cfg = st_config();
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m = NULL;
    int x[4] = {1, 2, 3, 4}, y[4] = {2, 3, 4, 0};
    float loss, one = 1.0f;
    unsigned char probe[4];
    memcpy(probe, &one, 4);
    if (probe[3] != 0x3f) { printf("  skipped: a big-endian host (the test writes floats as the file holds them)\n"); return; }
    CHECK_OK(rlhf_model_create(&m, &cfg, 3));
    if (!m) return;
    CHECK_OK(rlhf_model_train_step(m, x, y, 1, 4, &opt, &loss));
    CHECK_OK(rlhf_model_save(m, base));
    rlhf_model_free(m);
    m = NULL;
    CHECK_OK(rlhf_model_load(&m, base)); /* the unpoked file loads */
    rlhf_model_free(m);
    st_poke(base, p, "optim.v.ln_f.bias", 1, NAN);
    st_reject("NaN second moment", p, RLHF_ERR_PARSE, "optim.v.ln_f.bias[1] is "); /* nan (its spelling: the libc's) */
    st_reject("NaN second moment", p, RLHF_ERR_PARSE, ", not a state AdamW writes (its moments are never NaN)");
    st_poke(base, p, "optim.v.h.0.mlp.c_fc.weight", 7, -1.0f);
    st_reject("negative second moment", p, RLHF_ERR_PARSE, "optim.v.h.0.mlp.c_fc.weight[7] is -1, not a state AdamW "
              "writes (a second moment is a mean of squares, never negative)");
    st_poke(base, p, "optim.m.wte.weight", 0, NAN);
    st_reject("NaN first moment", p, RLHF_ERR_PARSE, "optim.m.wte.weight[0] is ");
    st_reject("NaN first moment", p, RLHF_ERR_PARSE, ", not a state AdamW writes (its moments are never NaN)");
    st_poke(base, p, "optim.v.wte.weight", 3, 0.0f); /* zero, as an unused token's, loads */
    CHECK_OK(rlhf_model_load(&m, p));
    rlhf_model_free(m);
    m = NULL;
    st_poke(base, p, "optim.v.wte.weight", 2, INFINITY); /* g*g overflowing float without clipping: a run writes it */
    CHECK_OK(rlhf_model_load(&m, p));
    rlhf_model_free(m);
}

/* Byte order: a model filled with an exactly representable pattern (no libm)
   saved here must give the very bytes of tests/fixtures/pattern.safetensors,
   which was written on x86-64 (little-endian); and that file must load here
   with the pattern intact. `make test-s390x` runs this on a big-endian host.
   The header holds the library version: after a version change, regenerate
   the fixture on a little-endian host (run this test, then copy
   build/pattern.safetensors to tests/fixtures/). */
static float pattern_value(size_t i, int which) {
    return (float)((int)(((uint32_t)i * 2654435761u + (uint32_t)which * 40503u) % 2001u) - 1000) / 512.0f;
}
static void test_safetensors_endian(void) {
    rlhf_config cfg = st_config();
    rlhf_model *m, *r = NULL;
    rlhf_error e;
    size_t i, n1, n2;
    unsigned char *a, *b;
    int bad = 0;
    CHECK_OK(rlhf_model_create(&m, &cfg, 1));
    if (!m) return;
    CHECK_OK(rlhf_model_reserve(m, 1, 1, 1)); /* AdamW state exists */
    for (i = 0; i < m->num_params; i++) {
        m->param_mem[i] = pattern_value(i, 0);
        m->m_mem[i] = pattern_value(i, 1);
        m->v_mem[i] = fabsf(pattern_value(i, 2));
    }
    m->adam_steps = 7;
    CHECK_OK(rlhf_model_set_meta(m, "kind", "policy"));
    CHECK_OK(rlhf_model_save(m, "build/pattern.safetensors"));
    a = read_all("build/pattern.safetensors", &n1);
    b = read_all(RLHF_FIXTURE_DIR "/pattern.safetensors", &n2);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0);
    free(a); free(b);
    CHECK_OK(rlhf_model_load_ex(&r, RLHF_FIXTURE_DIR "/pattern.safetensors", &e));
    if (!r) { fprintf(stderr, "  %s\n", e.message); rlhf_model_free(m); return; }
    for (i = 0; i < m->num_params; i++)
        bad += r->param_mem[i] != m->param_mem[i] || r->m_mem[i] != m->m_mem[i] || r->v_mem[i] != m->v_mem[i];
    CHECK(bad == 0 && rlhf_model_adamw_steps(r) == 7 && strcmp(rlhf_model_meta(r, "kind"), "policy") == 0);
    rlhf_model_free(r);
    rlhf_model_free(m);
}

/* ---- datasets --------------------------------------------------------------------- */
static rlhf_dataset *load_text(const char *path, const char *text, rlhf_data_format fmt, int skip, rlhf_error *e) {
    rlhf_dataset *d = NULL;
    rlhf_data_options o = rlhf_data_options_default();
    o.skip_bad = skip;
    write_file(path, text, strlen(text));
    rlhf_dataset_load(&d, path, fmt, &o, e);
    return d;
}
static int str_is(rlhf_str s, const char *want) { return s.len == strlen(want) && memcmp(s.str, want, s.len) == 0; }
/* expect the load of one-record text to fail with exactly `msg` */
static void data_reject(rlhf_data_format fmt, const char *text, const char *msg) {
    rlhf_error e;
    rlhf_dataset *d = load_text("build/bad.jsonl", text, fmt, 0, &e);
    if (d || strcmp(e.message, msg) != 0) {
        fprintf(stderr, "  FAIL dataset \"%s\": got \"%s\", want \"%s\"\n", text, d ? "(loaded)" : e.message, msg);
        g_fail++;
    }
    rlhf_dataset_free(d);
}

/* ---- Hugging Face model directories ------------------------------------------------ */
#if defined(__unix__) || defined(__APPLE__)
/* s with its first `from` replaced by `to` (a new string; the test fails if from is absent) */
static char *str_edit(const char *s, const char *from, const char *to) {
    const char *pos = strstr(s, from);
    char *o = (char *)malloc(strlen(s) + strlen(to) + 1);
    if (!pos) { fprintf(stderr, "  test bug: \"%s\" not found\n", from); g_fail++; strcpy(o, s); return o; }
    memcpy(o, s, (size_t)(pos - s));
    strcpy(o + (pos - s), to);
    strcat(o, pos + strlen(from));
    return o;
}
static void copy_file(const char *src, const char *dst) {
    size_t n = 0;
    unsigned char *b = read_all(src, &n);
    if (!b) { fprintf(stderr, "  cannot read %s\n", src); g_fail++; return; }
    write_file(dst, (const char *)b, n);
    free(b);
}
/* build/hfdir_NAME: the sharded fixture's config.json, index (edited: index_from -> index_to
   when given) and the shards in `shards` (bit 1: shard 1, bit 2: shard 2) */
static const char *hf_dir_variant(const char *name, const char *index_from, const char *index_to, int shards) {
    static char dir[128];
    char src[256], dst[256];
    size_t n = 0;
    char *idx, *ed;
    const char *shard[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    int k;
    snprintf(dir, sizeof dir, "build/hfdir_%s", name);
    mkdir(dir, 0755);
    snprintf(dst, sizeof dst, "%s/model.safetensors.index.json", dir);
    remove(dst);
    for (k = 0; k < 2; k++) {
        snprintf(dst, sizeof dst, "%s/%s", dir, shard[k]);
        remove(dst);
        snprintf(src, sizeof src, RLHF_FIXTURE_DIR "/hf/sharded/%s", shard[k]);
        if (shards & (1 << k)) copy_file(src, dst);
    }
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    copy_file(RLHF_FIXTURE_DIR "/hf/sharded/config.json", dst);
    idx = (char *)read_all(RLHF_FIXTURE_DIR "/hf/sharded/model.safetensors.index.json", &n);
    if (!idx) { g_fail++; return dir; }
    idx[n] = 0;
    ed = index_from ? str_edit(idx, index_from, index_to) : idx;
    snprintf(dst, sizeof dst, "%s/model.safetensors.index.json", dir);
    write_file(dst, ed, strlen(ed));
    if (ed != idx) free(ed);
    free(idx);
    return dir;
}
#endif

/* A directory loads as its model.safetensors, or as its shards through the
   index, with the logits of the float64 reference; each broken directory is
   refused naming the file, the tensor or the shard. */
static void test_hf_directory(void) {
    static const char *dirs[3] = {"pretrained", "hub", "sharded"};
    fixture fx;
    fixture_rec *in, *lg;
    int i;
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/hf/expected.bin")) { g_fail++; return; }
    in = fixture_get(&fx, "inputs");
    lg = fixture_get(&fx, "logits.f32");
    for (i = 0; in && lg && i < 3; i++) {
        char path[256];
        rlhf_model *m = NULL;
        rlhf_error e;
        float *logits;
        snprintf(path, sizeof path, "%s/hf/%s%s", RLHF_FIXTURE_DIR, dirs[i], i == 2 ? "/" : "");
        if (rlhf_model_load_ex(&m, path, &e) != RLHF_OK) {
            fprintf(stderr, "  FAIL loading %s: %s\n", path, e.message);
            g_fail++;
            continue;
        }
        logits = floats(lg->n);
        CHECK_OK(rlhf_model_logits(m, (const int *)in->data, in->dims[0], in->dims[1], logits));
        close_enough(path, logits, (const float *)lg->data, lg->n, 1e-5, 1e-4); /* float32 error only */
        free(logits);
        rlhf_model_free(m);
    }
    fixture_free(&fx);
#if defined(__unix__) || defined(__APPLE__)
    {
        const char *S1 = "model-00001-of-00002.safetensors", *S2 = "model-00002-of-00002.safetensors";
        char buf[512];
        mkdir("build/hfdir_empty", 0755);
        remove("build/hfdir_empty/config.json"); /* from an earlier run */
        st_reject("no config.json", "build/hfdir_empty", RLHF_ERR_IO, "build/hfdir_empty: is a directory without config.json");
        copy_file(RLHF_FIXTURE_DIR "/hf/sharded/config.json", "build/hfdir_empty/config.json");
        st_reject("no weights", "build/hfdir_empty", RLHF_ERR_IO,
                  "build/hfdir_empty: no weights: neither model.safetensors nor model.safetensors.index.json");
        write_file("build/hfdir_empty/pytorch_model.bin", "PK", 2);
        st_reject("pickle only", "build/hfdir_empty", RLHF_ERR_PARSE, "PyTorch's pickle format (pytorch_model.bin)");
        remove("build/hfdir_empty/pytorch_model.bin");
        {   /* the fuzzer's find: GPT-2's config.json with 250,256 layers beside hub's 2-layer weights
               (here 25,000 layers, 328 MB: 250,256 is too large for a 32-bit host's size_t, refused before) */
            size_t n = 0;
            char *c = (char *)read_all(RLHF_FIXTURE_DIR "/hf/hub/config.json", &n), *ed;
            mkdir("build/hfdir_huge", 0755);
            copy_file(RLHF_FIXTURE_DIR "/hf/hub/model.safetensors", "build/hfdir_huge/model.safetensors");
            if (c) {
                c[n] = 0;
                ed = str_edit(c, "\"n_layer\": 2", "\"n_layer\": 25000");
                write_file("build/hfdir_huge/config.json", ed, strlen(ed));
                if (ed != c) free(ed);
                free(c);
            } else g_fail++;
            st_reject("config.json of 25,000 layers", "build/hfdir_huge", RLHF_ERR_PARSE,
                      "build/hfdir_huge/model.safetensors: the config (n_layer 25000, n_embd 16, n_head 2, vocab_size "
                      "61, n_ctx 12) describes 82001200 parameters but the weights hold only 8050 values");
        }
        st_reject("a shard missing", hf_dir_variant("missing", NULL, NULL, 1), RLHF_ERR_IO,
                  "build/hfdir_missing/model.safetensors.index.json: shard model-00002-of-00002.safetensors is missing");
        st_reject("no weight_map", hf_dir_variant("nomap", "\"weight_map\"", "\"weights\"", 3), RLHF_ERR_PARSE,
                  "no \"weight_map\" object");
        st_reject("index not JSON", hf_dir_variant("notjson", "{", "", 3), RLHF_ERR_PARSE,
                  "build/hfdir_notjson/model.safetensors.index.json: 2:13: expected the end of the input");
        snprintf(buf, sizeof buf, "\"transformer.ln_f.bias\": \"%s\",\n", S1);
        st_reject("a tensor the index does not map", hf_dir_variant("unmapped", buf, "", 3), RLHF_ERR_PARSE,
                  "model-00001-of-00002.safetensors: tensor \"transformer.ln_f.bias\" is not in the weight_map");
        snprintf(buf, sizeof buf, "\"transformer.ln_f.bias\": \"%s\"", S1);
        {
            char to[1024];
            snprintf(to, sizeof to, "\"transformer.ln_f.bias\": \"%s\"", S2);
            st_reject("a tensor mapped to the other shard", hf_dir_variant("moved", buf, to, 3), RLHF_ERR_PARSE,
                      "tensor \"transformer.ln_f.bias\" is here, but build/hfdir_moved/model.safetensors.index.json maps it "
                      "to model-00002-of-00002.safetensors");
            snprintf(buf, sizeof buf, "\"transformer.wpe.weight\": \"%s\"", S2);
            snprintf(to, sizeof to, "\"transformer.extra\": \"%s\",\n  %s", S2, buf);
            st_reject("the index names a tensor the shard lacks", hf_dir_variant("extra", buf, to, 3), RLHF_ERR_PARSE,
                      "maps tensor \"transformer.extra\" to this shard, which does not hold it");
        }
        snprintf(buf, sizeof buf, "\"lm_head.weight\": \"%s\",\n", S1);
        {
            char to[1024];
            snprintf(to, sizeof to, "%s    \"lm_head.weight\": \"%s\",\n", buf, S1);
            st_reject("a name given twice in the index", hf_dir_variant("twice", buf, to, 3), RLHF_ERR_PARSE,
                      "tensor \"lm_head.weight\" is given twice in the weight_map");
        }
        snprintf(buf, sizeof buf, "\"transformer.wte.weight\": \"%s\"", S2);
        st_reject("a shard outside the directory", hf_dir_variant("escape", buf, "\"transformer.wte.weight\": \"../x\"", 3),
                  RLHF_ERR_PARSE, "weight_map: tensor \"transformer.wte.weight\" must name a file in the directory");
        /* shard 2 without its tensors in the index and on disk: a tensor of the model missing, named from the index */
        {
            size_t n = 0;
            char *idx = (char *)read_all(RLHF_FIXTURE_DIR "/hf/sharded/model.safetensors.index.json", &n), *p, *q;
            const char *dir = hf_dir_variant("half", NULL, NULL, 1);
            char path[256];
            idx[n] = 0;
            while ((p = strstr(idx, S2)) != NULL) { /* drop each line that maps to shard 2 */
                while (p > idx && p[-1] != '\n') p--;
                q = strchr(p, '\n');
                memmove(p, q + 1, strlen(q + 1) + 1);
            }
            p = strstr(idx, "\",\n  }");
            if (p) memmove(p + 1, p + 2, strlen(p + 2) + 1); /* the last entry's comma */
            snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
            write_file(path, idx, strlen(idx));
            free(idx);
            st_reject("half the tensors missing from every shard", dir, RLHF_ERR_PARSE,
                      "build/hfdir_half/model.safetensors.index.json: the config (n_layer 2, n_embd 16, n_head 2, "
                      "vocab_size 61, n_ctx 12) describes 7760 parameters but the weights hold only 4288 values");
        }
        /* the same tensor in both shards, once with the prefix and once without */
        {
            const char *dir = hf_dir_variant("dup", "\"transformer.h.0.ln_1.weight\"", "\"h.1.ln_1.weight\"", 1);
            char src[256], dst[256];
            snprintf(src, sizeof src, RLHF_FIXTURE_DIR "/hf/sharded/%s", S2);
            snprintf(dst, sizeof dst, "%s/%s", dir, S2);
            st_mutate(src, dst, "\"transformer.h.0.ln_1.weight\"", "\"h.1.ln_1.weight\"");
            st_reject("a tensor in two shards", dir, RLHF_ERR_PARSE, "tensor \"h.1.ln_1.weight\" appears twice");
        }
        /* lm_head (shard 1) must equal wte (shard 2): checked once both are read */
        {
            const char *dir = hf_dir_variant("untied", NULL, NULL, 2);
            char src[256], dst[256];
            size_t n = 0;
            unsigned char *b;
            snprintf(src, sizeof src, RLHF_FIXTURE_DIR "/hf/sharded/%s", S1);
            snprintf(dst, sizeof dst, "%s/%s", dir, S1);
            b = read_all(src, &n);
            b[8 + ((size_t)b[0] | (size_t)b[1] << 8)] ^= 0x40; /* the first data byte: lm_head.weight[0] (names sort first) */
            write_file(dst, (const char *)b, n);
            free(b);
            snprintf(src, sizeof src, RLHF_FIXTURE_DIR "/hf/sharded/%s", S2);
            snprintf(dst, sizeof dst, "%s/%s", dir, S2);
            copy_file(src, dst);
            st_reject("an untied lm_head in another shard than wte", dir, RLHF_ERR_PARSE,
                      "model-00001-of-00002.safetensors: lm_head.weight differs from wte.weight at element 0");
        }
    }
#endif
}

static void test_datasets(void) {
    rlhf_error e;
    rlhf_dataset *d;
    const rlhf_record *r;
    /* SFT: prompt/completion and messages */
    d = load_text("build/sft.jsonl",
                  "{\"prompt\": \"add 2 and 3\", \"completion\": \" 5\", \"id\": 7}\n"
                  "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"hi\"},"
                  " {\"role\": \"assistant\", \"content\": \"hello\\u0000!\"}]}\n",
                  RLHF_DATA_SFT, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 2);
    if (!d) { fprintf(stderr, "  %s\n", e.message); return; }
    r = rlhf_dataset_record(d, 0);
    CHECK(r->kind == RLHF_RECORD_COMPLETION && str_is(r->prompt, "add 2 and 3") && str_is(r->completion, " 5") && r->line == 1);
    r = rlhf_dataset_record(d, 1);
    CHECK(r->kind == RLHF_RECORD_MESSAGES && r->n_messages == 3 && r->messages[0].role == RLHF_ROLE_SYSTEM &&
          r->messages[2].role == RLHF_ROLE_ASSISTANT && r->messages[2].content.len == 7 && r->line == 2);
    CHECK(rlhf_dataset_record(d, 2) == NULL);
    rlhf_dataset_free(d);
    /* preferences: explicit prompt, HH-RLHF transcripts, rankings */
    d = load_text("build/pref.jsonl",
                  "{\"prompt\": \"p\", \"chosen\": \"good\", \"rejected\": \"bad\"}\n"
                  "{\"chosen\": \"\\n\\nHuman: hi\\n\\nAssistant: hello there\", \"rejected\": \"\\n\\nHuman: hi\\n\\nAssistant: go away\"}\n"
                  "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: d\", "
                  "\"rejected\": \"\\n\\nHuman: a\\n\\nAssistant: x\\n\\nHuman: c\\n\\nAssistant: d\"}\n"
                  "{\"chosen\": \"Human: one\", \"rejected\": \"Robot: two\"}\n"
                  "{\"prompt\": \"q\", \"completions\": [\"w0\", \"w1\", \"w2\", \"w3\"], \"ranking\": [2, 0, 3, 1]}\n",
                  RLHF_DATA_PREFERENCE, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 5);
    if (!d) { fprintf(stderr, "  %s\n", e.message); return; }
    r = rlhf_dataset_record(d, 0);
    CHECK(r->kind == RLHF_RECORD_PAIR && str_is(r->prompt, "p") && str_is(r->chosen, "good") && str_is(r->rejected, "bad"));
    r = rlhf_dataset_record(d, 1);
    CHECK(str_is(r->prompt, "\n\nHuman: hi\n\nAssistant:") && str_is(r->chosen, " hello there") && str_is(r->rejected, " go away"));
    r = rlhf_dataset_record(d, 2); /* the transcripts differ at an earlier turn: split at the last SHARED marker */
    CHECK(str_is(r->prompt, "\n\nHuman: a\n\nAssistant:") && str_is(r->chosen, " b\n\nHuman: c\n\nAssistant: d") &&
          str_is(r->rejected, " x\n\nHuman: c\n\nAssistant: d"));
    r = rlhf_dataset_record(d, 3); /* nothing shared: empty prompt, whole transcripts, counted */
    CHECK(r->prompt.len == 0 && str_is(r->chosen, "Human: one") && rlhf_dataset_unshared_prompts(d) == 1);
    r = rlhf_dataset_record(d, 4);
    CHECK(r->kind == RLHF_RECORD_RANKING && r->n_completions == 4 && str_is(r->completions[0], "w2") &&
          str_is(r->completions[1], "w0") && str_is(r->completions[2], "w3") && str_is(r->completions[3], "w1"));
    rlhf_dataset_free(d);
    /* prompts */
    d = load_text("build/prompts.jsonl", "{\"prompt\": \"tell me\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
                  RLHF_DATA_PROMPTS, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 2 && str_is(rlhf_dataset_record(d, 0)->prompt, "tell me") &&
          rlhf_dataset_record(d, 1)->n_messages == 1);
    rlhf_dataset_free(d);
    /* text: JSONL and plain */
    d = load_text("build/text.jsonl", "{\"text\": \"one\"}\n{\"text\": \"two\"}", RLHF_DATA_TEXT, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 2 && str_is(rlhf_dataset_record(d, 1)->text, "two"));
    rlhf_dataset_free(d);
    d = load_text("build/plain.txt", "Line one.\nLine two, caf\xC3\xA9.\n", RLHF_DATA_TEXT, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 1 && str_is(rlhf_dataset_record(d, 0)->text, "Line one.\nLine two, caf\xC3\xA9.\n"));
    rlhf_dataset_free(d);
    d = load_text("build/plain.txt", "ok\nbad \xC3\x28 here", RLHF_DATA_TEXT, 0, &e);
    CHECK(!d && strcmp(e.message, "build/plain.txt: 2:5: invalid UTF-8 (byte 0xC3)") == 0);
    d = load_text("build/plain.txt", "", RLHF_DATA_TEXT, 0, &e);
    CHECK(!d && strstr(e.message, "the file is empty"));
    /* every way a record can be malformed, with its place */
    data_reject(RLHF_DATA_SFT, "{\"prompt\": \"a\"}", "build/bad.jsonl:1:1: missing \"completion\"");
    data_reject(RLHF_DATA_SFT, "{\"prompt\": 3, \"completion\": \"b\"}", "build/bad.jsonl:1:12: \"prompt\" must be a string");
    data_reject(RLHF_DATA_SFT, "{\"text\": \"a\"}", "build/bad.jsonl:1:1: expected {\"prompt\", \"completion\"} or {\"messages\"}");
    data_reject(RLHF_DATA_SFT, "[1]", "build/bad.jsonl:1:1: a record must be a JSON object");
    data_reject(RLHF_DATA_SFT, "{\"messages\": []}", "build/bad.jsonl:1:14: \"messages\" must be a non-empty array");
    data_reject(RLHF_DATA_SFT, "{\"messages\": [1]}", "build/bad.jsonl:1:15: messages[0] must be an object");
    data_reject(RLHF_DATA_SFT, "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}",
                "build/bad.jsonl:1:24: messages[0] role must be \"system\", \"user\" or \"assistant\"");
    data_reject(RLHF_DATA_SFT, "{\"messages\": [{\"content\": \"x\"}]}", "build/bad.jsonl:1:15: messages[0] needs a \"role\" string");
    data_reject(RLHF_DATA_SFT, "{\"messages\": [{\"role\": \"user\"}]}", "build/bad.jsonl:1:15: missing \"content\"");
    data_reject(RLHF_DATA_SFT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
                "build/bad.jsonl:1:14: \"messages\" has no assistant turn: nothing to learn");
    data_reject(RLHF_DATA_SFT, "{\"prompt\": \"a\", \"completion\": \"b\"", "build/bad.jsonl:1:34: expected ',' or '}', found end of input");
    data_reject(RLHF_DATA_PREFERENCE, "{\"chosen\": \"a\"}", "build/bad.jsonl:1:1: missing \"rejected\"");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": [\"b\"]}",
                "build/bad.jsonl:1:44: \"rejected\" must be a string");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"completions\": [\"a\"], \"ranking\": [0]}",
                "build/bad.jsonl:1:32: \"completions\" must be an array of at least 2 strings");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"completions\": [\"a\", \"b\"]}", "build/bad.jsonl:1:1: missing \"ranking\"");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"completions\": [\"a\", \"b\"], \"ranking\": [0]}",
                "build/bad.jsonl:1:55: \"ranking\" must be an array of 2 indices (one per completion)");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"completions\": [\"a\", \"b\"], \"ranking\": [0, 2]}",
                "build/bad.jsonl:1:59: ranking[1] must be an index from 0 to 1");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"completions\": [\"a\", \"b\"], \"ranking\": [1, 1]}",
                "build/bad.jsonl:1:59: ranking[1] repeats index 1");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"completions\": [\"a\", \"b\"], \"ranking\": [0, 1.5]}",
                "build/bad.jsonl:1:59: ranking[1] must be an index from 0 to 1");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"completions\": [\"a\", 7], \"ranking\": [1, 0]}",
                "build/bad.jsonl:1:38: completions[1] must be a string");
    data_reject(RLHF_DATA_PREFERENCE, "{\"completions\": [\"a\", \"b\"], \"ranking\": [1, 0]}", "build/bad.jsonl:1:1: missing \"prompt\"");
    data_reject(RLHF_DATA_PROMPTS, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}",
                "build/bad.jsonl:1:14: \"messages\" must end with a user turn");
    data_reject(RLHF_DATA_PROMPTS, "{\"question\": \"x\"}", "build/bad.jsonl:1:1: missing \"prompt\"");
    data_reject(RLHF_DATA_TEXT, "{\"text\": null}", "build/bad.jsonl:1:10: \"text\" must be a string");
    data_reject(RLHF_DATA_TEXT, "\n\n", "build/bad.jsonl: no records");
    /* skipping: counted, the first kept, the good records loaded */
    d = load_text("build/skip.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": 1}\nnot json\n{\"prompt\": \"c\", \"completion\": \"d\"}\n",
                  RLHF_DATA_SFT, 1, &e);
    CHECK(d && rlhf_dataset_size(d) == 2 && rlhf_dataset_skipped(d) == 2);
    CHECK(d && strcmp(rlhf_dataset_first_skip(d), "build/skip.jsonl:2:12: \"prompt\" must be a string") == 0);
    rlhf_dataset_free(d);
    d = load_text("build/skip.jsonl", "{\"prompt\": 1}\n", RLHF_DATA_SFT, 1, &e);
    CHECK(!d && strstr(e.message, "all 1 records are bad; the first: build/skip.jsonl:1:12"));
    CHECK(rlhf_dataset_load(&d, "build/none.jsonl", RLHF_DATA_SFT, NULL, &e) == RLHF_ERR_IO && strstr(e.message, "cannot open"));
}

/* a message has this role and content */
static int turn_is(const rlhf_message *m, rlhf_role role, const char *content) {
    return m->role == role && str_is(m->content, content);
}
#define U(s) "{\"role\": \"user\", \"content\": \"" s "\"}"
#define A(s) "{\"role\": \"assistant\", \"content\": \"" s "\"}"
#define S(s) "{\"role\": \"system\", \"content\": \"" s "\"}"
/* TRL's conversational forms and unpaired preference, each into its record */
static void test_datasets_trl(void) {
    rlhf_error e;
    rlhf_dataset *d;
    const rlhf_record *r;
    /* SFT: conversational prompt-completion, one prompt with an assistant turn of its own */
    d = load_text("build/sft.jsonl",
                  "{\"prompt\": [" S("be brief") ", " U("hi") "], \"completion\": [" A("hello") "]}\n"
                  "{\"prompt\": [" U("a") ", " A("b") ", " U("c") "], \"completion\": [" A("d") "]}\n",
                  RLHF_DATA_SFT, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 2);
    if (!d) { fprintf(stderr, "  %s\n", e.message); return; }
    r = rlhf_dataset_record(d, 0);
    CHECK(r->kind == RLHF_RECORD_COMPLETION && r->n_prompt_messages == 2 && r->n_completion_messages == 1 && !r->prompt.str);
    CHECK(turn_is(&r->prompt_messages[0], RLHF_ROLE_SYSTEM, "be brief") && turn_is(&r->prompt_messages[1], RLHF_ROLE_USER, "hi") &&
          turn_is(&r->completion_messages[0], RLHF_ROLE_ASSISTANT, "hello"));
    r = rlhf_dataset_record(d, 1);
    CHECK(r->n_prompt_messages == 3 && turn_is(&r->prompt_messages[1], RLHF_ROLE_ASSISTANT, "b") && r->line == 2);
    rlhf_dataset_free(d);
    /* preference: explicit prompt; implicit prompt (shared messages up to the last assistant turn both have) */
    d = load_text("build/pref.jsonl",
                  "{\"prompt\": [" U("q") "], \"chosen\": [" A("good") "], \"rejected\": [" A("bad") "]}\n"
                  "{\"chosen\": [" U("hi") ", " A("hello") "], \"rejected\": [" U("hi") ", " A("go away") "]}\n"
                  "{\"chosen\": [" U("a") ", " A("b") ", " U("c") ", " A("d") "], \"rejected\": [" U("a") ", " A("x") ", " U("c") ", " A("d") "]}\n"
                  "{\"chosen\": [" U("a") ", " A("b") ", " U("c") ", " A("d") "], \"rejected\": [" U("a") ", " A("b") ", " U("e") ", " A("f") "]}\n"
                  "{\"chosen\": [" U("a") ", " A("b") "], \"rejected\": [" U("a") ", " A("b") ", " U("c") ", " A("d") "]}\n"
                  "{\"chosen\": [" U("p") ", " A("q") "], \"rejected\": [" U("r") ", " A("s") "]}\n",
                  RLHF_DATA_PREFERENCE, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 6);
    if (!d) { fprintf(stderr, "  %s\n", e.message); return; }
    r = rlhf_dataset_record(d, 0);
    CHECK(r->kind == RLHF_RECORD_PAIR && r->n_prompt_messages == 1 && turn_is(&r->prompt_messages[0], RLHF_ROLE_USER, "q") &&
          r->n_chosen_messages == 1 && turn_is(&r->chosen_messages[0], RLHF_ROLE_ASSISTANT, "good") &&
          r->n_rejected_messages == 1 && turn_is(&r->rejected_messages[0], RLHF_ROLE_ASSISTANT, "bad"));
    r = rlhf_dataset_record(d, 1);
    CHECK(r->n_prompt_messages == 1 && turn_is(&r->prompt_messages[0], RLHF_ROLE_USER, "hi") && r->n_chosen_messages == 1 &&
          turn_is(&r->chosen_messages[0], RLHF_ROLE_ASSISTANT, "hello") && turn_is(&r->rejected_messages[0], RLHF_ROLE_ASSISTANT, "go away"));
    r = rlhf_dataset_record(d, 2); /* they differ at an earlier assistant turn: the prompt ends before it */
    CHECK(r->n_prompt_messages == 1 && r->n_chosen_messages == 3 && r->n_rejected_messages == 3 &&
          turn_is(&r->chosen_messages[0], RLHF_ROLE_ASSISTANT, "b") && turn_is(&r->rejected_messages[0], RLHF_ROLE_ASSISTANT, "x") &&
          turn_is(&r->chosen_messages[2], RLHF_ROLE_ASSISTANT, "d"));
    r = rlhf_dataset_record(d, 3); /* they differ at a user turn: the prompt ends before the assistant turn before it */
    CHECK(r->n_prompt_messages == 1 && r->n_chosen_messages == 3 && turn_is(&r->rejected_messages[1], RLHF_ROLE_USER, "e"));
    r = rlhf_dataset_record(d, 4); /* one conversation goes on after the other: both replies keep the last assistant turn */
    CHECK(r->n_prompt_messages == 1 && r->n_chosen_messages == 1 && r->n_rejected_messages == 3);
    r = rlhf_dataset_record(d, 5); /* nothing shared: no prompt, whole conversations, counted */
    CHECK(r->prompt_messages && r->n_prompt_messages == 0 && r->n_chosen_messages == 2 && rlhf_dataset_unshared_prompts(d) == 1);
    rlhf_dataset_free(d);
    /* prompt-only conversational */
    d = load_text("build/prompts.jsonl", "{\"prompt\": [" S("be brief") ", " U("hi") "]}\n", RLHF_DATA_PROMPTS, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 1);
    r = rlhf_dataset_record(d, 0);
    CHECK(r && r->kind == RLHF_RECORD_PROMPT && r->n_messages == 2 && r->n_prompt_messages == 2 &&
          turn_is(&r->messages[1], RLHF_ROLE_USER, "hi"));
    rlhf_dataset_free(d);
    /* unpaired preference, standard and conversational */
    d = load_text("build/kto.jsonl",
                  "{\"prompt\": \"2+3?\", \"completion\": \" 5\", \"label\": true}\n"
                  "{\"prompt\": [" U("2+3?") "], \"completion\": [" A("6") "], \"label\": false}\n",
                  RLHF_DATA_UNPAIRED, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 2);
    if (!d) { fprintf(stderr, "  %s\n", e.message); return; }
    r = rlhf_dataset_record(d, 0);
    CHECK(r->kind == RLHF_RECORD_UNPAIRED && r->label == 1 && str_is(r->prompt, "2+3?") && str_is(r->completion, " 5") &&
          !r->prompt_messages);
    r = rlhf_dataset_record(d, 1);
    CHECK(r->kind == RLHF_RECORD_UNPAIRED && r->label == 0 && turn_is(&r->completion_messages[0], RLHF_ROLE_ASSISTANT, "6") &&
          r->n_prompt_messages == 1);
    rlhf_dataset_free(d);
}
/* every way a conversational or unpaired record can be malformed, with its place */
static void test_datasets_trl_malformed(void) {
    data_reject(RLHF_DATA_SFT, "{\"prompt\": [" U("a") "], \"completion\": \"b\"}",
                "build/bad.jsonl:1:62: \"completion\" must be a list of messages, as \"prompt\" is");
    data_reject(RLHF_DATA_SFT, "{\"prompt\": \"a\", \"completion\": [" A("b") "]}",
                "build/bad.jsonl:1:12: \"prompt\" must be a list of messages, as \"completion\" is");
    data_reject(RLHF_DATA_SFT, "{\"prompt\": [" U("a") "], \"completion\": [" U("b") "]}",
                "build/bad.jsonl:1:62: \"completion\" has no assistant turn");
    data_reject(RLHF_DATA_SFT, "{\"prompt\": [], \"completion\": [" A("b") "]}", "build/bad.jsonl:1:12: \"prompt\" must be a non-empty array");
    data_reject(RLHF_DATA_SFT, "{\"prompt\": [{\"role\": \"bot\", \"content\": \"x\"}], \"completion\": [" A("b") "]}",
                "build/bad.jsonl:1:22: prompt[0] role must be \"system\", \"user\" or \"assistant\"");
    data_reject(RLHF_DATA_SFT, "{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true}",
                "build/bad.jsonl:1:1: an unpaired preference record (\"label\"): SFT learns every completion it is given; "
                "give it {\"prompt\", \"completion\"} or {\"messages\"}");
    data_reject(RLHF_DATA_PREFERENCE, "{\"chosen\": [" U("a") ", " A("b") "], \"rejected\": \"x\"}",
                "build/bad.jsonl:1:99: \"rejected\" must be a list of messages, as \"chosen\" is");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": [" U("q") "], \"chosen\": \"a\", \"rejected\": \"b\"}",
                "build/bad.jsonl:1:58: \"chosen\" must be a list of messages, as \"prompt\" is");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"chosen\": [" A("a") "], \"rejected\": [" A("b") "]}",
                "build/bad.jsonl:1:12: \"prompt\" must be a list of messages, as \"chosen\" is");
    data_reject(RLHF_DATA_PREFERENCE, "{\"chosen\": [" U("a") "], \"rejected\": [" U("a") ", " A("b") "]}",
                "build/bad.jsonl:1:12: \"chosen\" must end with an assistant turn");
    data_reject(RLHF_DATA_PREFERENCE, "{\"chosen\": [" U("a") ", " A("b") "], \"rejected\": [" U("a") "]}",
                "build/bad.jsonl:1:99: \"rejected\" must end with an assistant turn");
    data_reject(RLHF_DATA_PREFERENCE, "{\"chosen\": [" U("a") ", " A("b") "], \"rejected\": [" U("a") ", " A("b") "]}",
                "build/bad.jsonl:1:99: \"rejected\" is the same as \"chosen\": nothing to compare");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": [" U("q") "], \"chosen\": [" A("b") "], \"rejected\": [" A("b") "]}",
                "build/bad.jsonl:1:111: \"rejected\" is the same as \"chosen\": nothing to compare");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"q\", \"chosen\": \" b\", \"rejected\": \" b\"}",
                "build/bad.jsonl:1:45: \"rejected\" is the same as \"chosen\": nothing to compare");
    data_reject(RLHF_DATA_PREFERENCE, "{\"chosen\": \"Human: q Assistant: b\", \"rejected\": \"Human: q Assistant: b\"}",
                "build/bad.jsonl:1:49: \"rejected\" is the same as \"chosen\": nothing to compare");
    data_reject(RLHF_DATA_PREFERENCE, "{\"chosen\": [{\"role\": \"assistant\"}], \"rejected\": [" A("b") "]}",
                "build/bad.jsonl:1:13: missing \"content\"");
    data_reject(RLHF_DATA_PREFERENCE, "{\"chosen\": [" A("a") ", 3], \"rejected\": [" A("b") "]}",
                "build/bad.jsonl:1:52: chosen[1] must be an object");
    data_reject(RLHF_DATA_PREFERENCE, "{\"prompt\": \"p\", \"completion\": \"c\", \"label\": false}",
                "build/bad.jsonl:1:1: an unpaired preference record ({\"prompt\", \"completion\", \"label\"}), not a pair: "
                "this needs {\"chosen\", \"rejected\"} or {\"completions\", \"ranking\"}");
    data_reject(RLHF_DATA_PROMPTS, "{\"prompt\": [" U("a") ", " A("b") "]}", "build/bad.jsonl:1:12: \"prompt\" must end with a user turn");
    data_reject(RLHF_DATA_PROMPTS, "{\"prompt\": [7]}", "build/bad.jsonl:1:13: prompt[0] must be an object");
    data_reject(RLHF_DATA_UNPAIRED, "{\"prompt\": \"p\", \"completion\": \"c\"}", "build/bad.jsonl:1:1: missing \"label\"");
    data_reject(RLHF_DATA_UNPAIRED, "{\"prompt\": \"p\", \"completion\": \"c\", \"label\": 1}",
                "build/bad.jsonl:1:45: \"label\" must be true or false");
    data_reject(RLHF_DATA_UNPAIRED, "{\"prompt\": [" U("p") "], \"completion\": [" U("c") "], \"label\": true}",
                "build/bad.jsonl:1:62: \"completion\" has no assistant turn");
    data_reject(RLHF_DATA_UNPAIRED, "{\"prompt\": \"p\", \"completion\": [" A("c") "], \"label\": true}",
                "build/bad.jsonl:1:12: \"prompt\" must be a list of messages, as \"completion\" is");
}
/* HH-RLHF transcripts in turns: only "\n\nHuman:" and "\n\nAssistant:" start a turn */
static void test_datasets_hh_turns(void) {
    rlhf_error e;
    rlhf_dataset *d;
    const rlhf_record *r;
    d = load_text("build/hh.jsonl",
                  "{\"chosen\": \"\\n\\nHuman: hi\\n\\nAssistant: hello there\", \"rejected\": \"\\n\\nHuman: hi\\n\\nAssistant: go away\"}\n"
                  "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: d\", "
                  "\"rejected\": \"\\n\\nHuman: a\\n\\nAssistant: x\\n\\nHuman: c\\n\\nAssistant: d\"}\n"
                  "{\"chosen\": \"\\n\\nHuman: What does 'Human: hi' mean?\\nHuman: a tag?\\n\\nAssistant: A speaker tag. Assistant: too."
                  "\\n\\nHuman:ok\\n\\nAssistant: Good.\", "
                  "\"rejected\": \"\\n\\nHuman: What does 'Human: hi' mean?\\nHuman: a tag?\\n\\nAssistant: A speaker tag. Assistant: too."
                  "\\n\\nHuman:ok\\n\\nAssistant: Bad.\\n\\nHuman: why?\\n\\nAssistant: Just so.\"}\n"
                  "{\"chosen\": \"Human: a\\n\\nAssistant: x\", \"rejected\": \"Human: a\\n\\nAssistant: y\"}\n"
                  "{\"chosen\": \"\\n\\nHuman: a\\n\\nHuman: b\\n\\nHuman: c\\n\\nAssistant: x\", "
                  "\"rejected\": \"\\n\\nHuman: a\\n\\nHuman: b\\n\\nHuman: c\\n\\nAssistant: y\"}\n"
                  "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: x\\n\\nHuman: more\", \"rejected\": \"\\n\\nHuman: a\\n\\nAssistant: y\"}\n"
                  "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: x\", \"rejected\": \"\\n\\nHuman: b\\n\\nAssistant: x\"}\n",
                  RLHF_DATA_PREFERENCE, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 7);
    if (!d) { fprintf(stderr, "  %s\n", e.message); return; }
    r = rlhf_dataset_record(d, 0); /* the strings keep their meaning; the turns come beside them */
    CHECK(str_is(r->prompt, "\n\nHuman: hi\n\nAssistant:") && str_is(r->chosen, " hello there"));
    CHECK(r->n_prompt_messages == 1 && turn_is(&r->prompt_messages[0], RLHF_ROLE_USER, "hi") && r->n_chosen_messages == 1 &&
          turn_is(&r->chosen_messages[0], RLHF_ROLE_ASSISTANT, "hello there") &&
          turn_is(&r->rejected_messages[0], RLHF_ROLE_ASSISTANT, "go away"));
    r = rlhf_dataset_record(d, 1); /* differing at an earlier turn: the replies hold the later turns */
    CHECK(r->n_prompt_messages == 1 && r->n_chosen_messages == 3 && r->n_rejected_messages == 3 &&
          turn_is(&r->chosen_messages[0], RLHF_ROLE_ASSISTANT, "b") && turn_is(&r->chosen_messages[1], RLHF_ROLE_USER, "c") &&
          turn_is(&r->chosen_messages[2], RLHF_ROLE_ASSISTANT, "d") && turn_is(&r->rejected_messages[0], RLHF_ROLE_ASSISTANT, "x"));
    r = rlhf_dataset_record(d, 2); /* "Human:" and "Assistant:" inside a turn are its text */
    CHECK(r->n_prompt_messages == 3 &&
          turn_is(&r->prompt_messages[0], RLHF_ROLE_USER, "What does 'Human: hi' mean?\nHuman: a tag?") &&
          turn_is(&r->prompt_messages[1], RLHF_ROLE_ASSISTANT, "A speaker tag. Assistant: too.") &&
          turn_is(&r->prompt_messages[2], RLHF_ROLE_USER, "ok"));
    CHECK(r->n_chosen_messages == 1 && turn_is(&r->chosen_messages[0], RLHF_ROLE_ASSISTANT, "Good.") &&
          r->n_rejected_messages == 3 && turn_is(&r->rejected_messages[2], RLHF_ROLE_ASSISTANT, "Just so."));
    r = rlhf_dataset_record(d, 3); /* a transcript may start at "Human:" without the blank line */
    CHECK(r->n_prompt_messages == 1 && turn_is(&r->prompt_messages[0], RLHF_ROLE_USER, "a"));
    r = rlhf_dataset_record(d, 4); /* Human turns in a row: not the pattern, strings only */
    CHECK(!r->prompt_messages && !r->chosen_messages && str_is(r->prompt, "\n\nHuman: a\n\nHuman: b\n\nHuman: c\n\nAssistant:"));
    r = rlhf_dataset_record(d, 5); /* a reply that ends with a Human turn: strings only */
    CHECK(!r->prompt_messages && str_is(r->chosen, " x\n\nHuman: more"));
    CHECK(rlhf_dataset_unsplit_transcripts(d) == 2);
    r = rlhf_dataset_record(d, 6); /* no shared Assistant turn: empty prompt string, whole transcripts, counted */
    CHECK(!r->prompt_messages && r->prompt.len == 0 && rlhf_dataset_unshared_prompts(d) == 1);
    rlhf_dataset_free(d);
}

/* ---- tokenizer -------------------------------------------------------------------- */
#ifndef RLHF_SHARED_DIR
#define RLHF_SHARED_DIR "../shared/testdata"
#endif
static rlhf_tokenizer *load_gpt2_tokenizer(void) {
    rlhf_tokenizer *t = NULL;
    rlhf_error e;
    FILE *f = fopen(RLHF_SHARED_DIR "/gpt2/encoder.json", "rb");
    if (!f) {
        printf("  (GPT-2 files not found in " RLHF_SHARED_DIR "/gpt2: GPT-2 tokenizer checks skipped)\n");
        return NULL;
    }
    fclose(f);
    if (rlhf_tokenizer_load_gpt2_ex(&t, RLHF_SHARED_DIR "/gpt2/encoder.json", RLHF_SHARED_DIR "/gpt2/vocab.bpe", &e) != RLHF_OK) {
        fprintf(stderr, "  FAIL loading GPT-2's tokenizer: %s\n", e.message);
        g_fail++;
    }
    return t;
}

/* OpenAI's ids for the texts of tools/gen_gpt2_parity.py, exactly */
/* A UTF-8 byte-order mark at the start of a file (Windows editors write
   one) is skipped by the JSONL reader and the text loader; anywhere else it
   is data, and line numbers do not move. */
#define BOM "\xEF\xBB\xBF"
static void test_bom(void) {
    rlhf_error e;
    rlhf_json_error je;
    rlhf_dataset *d;
    rlhf_jsonl *r = NULL;
    rlhf_json_doc *doc = NULL;
    const rlhf_record *rec;
    d = load_text("build/bom_sft.jsonl", BOM "{\"prompt\": \"hi\", \"completion\": \"there\"}\r\n{\"prompt\": \"a\", \"completion\": \"b\"}\n",
                  RLHF_DATA_SFT, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 2);
    if (!d) fprintf(stderr, "  %s\n", e.message);
    rec = d ? rlhf_dataset_record(d, 0) : NULL;
    CHECK(rec && str_is(rec->prompt, "hi") && str_is(rec->completion, "there") && rec->line == 1);
    rlhf_dataset_free(d);
    d = load_text("build/bom_prompts.jsonl", BOM "{\"prompt\": \"rate this:\"}\n", RLHF_DATA_PROMPTS, 0, &e);
    CHECK(d && rlhf_dataset_size(d) == 1 && str_is(rlhf_dataset_record(d, 0)->prompt, "rate this:"));
    rlhf_dataset_free(d);
    d = load_text("build/bom_text.txt", BOM "hello\nworld", RLHF_DATA_TEXT, 0, &e);
    CHECK(d && str_is(rlhf_dataset_record(d, 0)->text, "hello\nworld") && rlhf_dataset_record(d, 0)->text.str[11] == 0);
    rlhf_dataset_free(d);
    /* a text file of only a BOM is empty; an error after a BOM has the same line and column */
    d = load_text("build/bom_text.txt", BOM, RLHF_DATA_TEXT, 0, &e);
    CHECK(d == NULL && strstr(e.message, "the file is empty"));
    d = load_text("build/bom_text.txt", BOM "ok\nbad \xFF", RLHF_DATA_TEXT, 0, &e);
    CHECK(d == NULL && strcmp(e.message, "build/bom_text.txt: 2:5: invalid UTF-8 (byte 0xFF)") == 0);
    {
        static const char text[] = BOM "{\"x\": }\n{\"x\": }\n" BOM "[1]\n";
        write_file("build/bom.jsonl", text, sizeof text - 1);
    }
    CHECK_OK(rlhf_jsonl_open(&r, "build/bom.jsonl", 0, &je));
    if (!r) return;
    CHECK(rlhf_jsonl_next(r, &doc, &je) == RLHF_ERR_PARSE && strstr(je.message, "build/bom.jsonl:1:7: expected a value") == je.message);
    if (!strstr(je.message, ":1:7:")) fprintf(stderr, "  got \"%s\"\n", je.message);
    CHECK(rlhf_jsonl_next(r, &doc, &je) == RLHF_ERR_PARSE && strstr(je.message, "build/bom.jsonl:2:7: expected a value") == je.message);
    CHECK(rlhf_jsonl_next(r, &doc, &je) == RLHF_ERR_PARSE && strstr(je.message, "build/bom.jsonl:3:1: ")); /* not at the start of the file */
    rlhf_jsonl_close(r);
}
#undef BOM

static void test_tokenizer_gpt2_parity(void) {
    rlhf_tokenizer *t = load_gpt2_tokenizer();
    fixture fx;
    fixture_rec *cnt;
    int i, n, exact = 0;
    if (!t) return;
    CHECK(rlhf_tokenizer_vocab_size(t) == 50262 && rlhf_tokenizer_special(t, RLHF_TOKEN_EOS) == 50256);
    CHECK(rlhf_tokenizer_special(t, RLHF_TOKEN_PAD) == 50257 && rlhf_tokenizer_special(t, RLHF_TOKEN_END) == 50261);
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/gpt2_parity.bin")) { g_fail++; rlhf_tokenizer_free(t); return; }
    cnt = fixture_get(&fx, "count");
    n = cnt ? ((const int *)cnt->data)[0] : 0;
    for (i = 0; i < n; i++) {
        char name[32], *text, *back;
        fixture_rec *tx, *want;
        int *got;
        size_t k, ng = 0, nb = 0;
        snprintf(name, sizeof name, "text.%d", i);
        tx = fixture_get(&fx, name);
        snprintf(name, sizeof name, "ids.%d", i);
        want = fixture_get(&fx, name);
        if (!tx || !want) break;
        text = (char *)malloc(tx->n + 1);
        back = (char *)malloc(tx->n + 1);
        got = (int *)malloc((tx->n + 1) * sizeof(int));
        for (k = 0; k < tx->n; k++) text[k] = (char)((const int *)tx->data)[k];
        CHECK_OK(rlhf_tokenizer_encode(t, text, tx->n, got, tx->n + 1, &ng));
        if (ng == want->n && memcmp(got, want->data, ng * sizeof(int)) == 0) exact++;
        else {
            fprintf(stderr, "  FAIL parity text %d (%zu bytes): %zu ids, want %zu; first difference at", i, tx->n, ng, want->n);
            for (k = 0; k < ng && k < want->n && got[k] == ((const int *)want->data)[k]; k++) {}
            fprintf(stderr, " %zu (got %d want %d)\n", k, k < ng ? got[k] : -1, k < want->n ? ((const int *)want->data)[k] : -1);
            g_fail++;
        }
        CHECK_OK(rlhf_tokenizer_decode(t, got, ng, back, tx->n + 1, &nb));
        CHECK(nb == tx->n && memcmp(back, text, nb) == 0);
        free(text); free(back); free(got);
    }
    printf("  GPT-2 parity: %d of %d texts give OpenAI's ids exactly\n", exact, n);
    CHECK(n > 50 && exact == n);
    fixture_free(&fx);
    {   /* special-token strings: ordinary text never becomes a special id */
        int ids[32];
        size_t ni;
        const char *s = "a<|endoftext|>b";
        CHECK_OK(rlhf_tokenizer_encode(t, s, strlen(s), ids, 32, &ni));
        CHECK(ni > 3);
        for (size_t k = 0; k < ni; k++) CHECK(ids[k] < 50256);
        CHECK_OK(rlhf_tokenizer_encode_special(t, s, strlen(s), ids, 32, &ni));
        CHECK(ni == 3 && ids[1] == 50256);
        CHECK(rlhf_tokenizer_encode(t, "Hello world", 11, ids, 1, &ni) == RLHF_ERR_TOO_LARGE && ni == 2);
    }
    rlhf_tokenizer_free(t);
}

static const char *TOK_CORPUS =
    "The labeler reads the prompt and writes a helpful answer. The model reads the prompt and writes an answer. "
    "The labeler ranks four answers from best to worst; the reward model learns the ranking. "
    "Don't stop: it's 2026, and the policy's answers are scored 10, 20, 30 times!  Caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC. ";

static void test_tokenizer_train(void) {
    rlhf_tokenizer *a = NULL, *b = NULL, *c = NULL, *g;
    rlhf_error e;
    rlhf_rng rng;
    char *corpus;
    size_t clen = 0, n1, n2, i, nb;
    int ids[4096], ids2[4096], trial;
    char back[4096];
    corpus = (char *)malloc(strlen(TOK_CORPUS) * 20 + 1);
    corpus[0] = 0;
    for (i = 0; i < 20; i++) strcat(corpus, TOK_CORPUS);
    clen = strlen(corpus);
    CHECK_OK(rlhf_tokenizer_train(&a, corpus, clen, 330, &e));
    CHECK_OK(rlhf_tokenizer_train(&b, corpus, clen, 330, &e));
    if (!a || !b) { free(corpus); rlhf_tokenizer_free(a); rlhf_tokenizer_free(b); return; }
    CHECK(rlhf_tokenizer_vocab_size(a) == 330 && rlhf_tokenizer_special(a, RLHF_TOKEN_EOS) == 324 &&
          rlhf_tokenizer_special(a, RLHF_TOKEN_END) == 329 && rlhf_tokenizer_special(a, RLHF_TOKEN_PAD) != rlhf_tokenizer_special(a, RLHF_TOKEN_EOS));
    /* deterministic: the same merges in the same order */
    CHECK(a->n_merges == b->n_merges && memcmp(a->merges, b->merges, (size_t)a->n_merges * sizeof(rlhf__merge)) == 0);
    /* merges never cross pre-token boundaries, and they compress */
    CHECK_OK(rlhf_tokenizer_encode(a, TOK_CORPUS, strlen(TOK_CORPUS), ids, 4096, &n1));
    CHECK(n1 < strlen(TOK_CORPUS) / 2); /* 68 merges of its most frequent pairs at least halve it */
    for (i = 0; i < (size_t)a->n_merges; i++) {
        const unsigned char *p = a->pool + a->tok_off[a->merges[i].c];
        size_t len = a->tok_off[a->merges[i].c + 1] - a->tok_off[a->merges[i].c];
        if (rlhf__valid_utf8((const char *)p, len)) CHECK(rlhf__pretoken_end(p, len, 0) == len); /* within one piece */
    }
    /* the corpus runs out of pairs before 1000 tokens: a smaller vocabulary, said so */
    CHECK_OK(rlhf_tokenizer_train(&c, corpus, clen, 1000, &e));
    CHECK(c && rlhf_tokenizer_vocab_size(c) < 1000 && rlhf_tokenizer_special(c, RLHF_TOKEN_END) == rlhf_tokenizer_vocab_size(c) - 1);
    rlhf_tokenizer_free(c);
    c = NULL;
    /* round trip: random byte strings, invalid UTF-8 included, with both tokenizers */
    g = load_gpt2_tokenizer();
    rlhf_rng_seed(&rng, 31);
    for (trial = 0; trial < 300; trial++) {
        char buf[600];
        size_t len = (size_t)(rlhf_rng_u64(&rng) % 600), k;
        rlhf_tokenizer *tk = trial % 2 && g ? g : a;
        for (k = 0; k < len; k++) { /* mostly text, some arbitrary bytes */
            uint64_t x = rlhf_rng_u64(&rng);
            buf[k] = x % 4 == 0 ? (char)(x >> 8) : "ab c\n'9\xC3\xA9!"[(x >> 8) % 11];
        }
        CHECK_OK(rlhf_tokenizer_encode(tk, buf, len, ids, 4096, &n1));
        CHECK_OK(rlhf_tokenizer_decode(tk, ids, n1, back, sizeof back, &nb));
        if (nb != len || memcmp(back, buf, len) != 0) { fprintf(stderr, "  FAIL round trip, trial %d\n", trial); g_fail++; break; }
    }
    /* the heap path for long pieces equals the plain BPE loop (the definition) */
    {
        int *s1 = (int *)malloc(3000 * sizeof(int)), *s2 = (int *)malloc(3000 * (3 * sizeof(int) + 6 * sizeof(uint64_t)) + 8);
        unsigned char piece[3000];
        for (trial = 0; trial < 60; trial++) {
            size_t len = 65 + (size_t)(rlhf_rng_u64(&rng) % 2900), k, m1, m2;
            rlhf_tokenizer *tk = trial % 2 && g ? g : a;
            uint64_t *h = (uint64_t *)(void *)(s2 + 3 * len + (len & 1));
            for (k = 0; k < len; k++) piece[k] = (unsigned char)"aabababcab e"[rlhf_rng_u64(&rng) % (trial % 3 ? 12 : 3)];
            m1 = rlhf__bpe(tk, piece, len, s1);
            m2 = rlhf__bpe_heap(tk, piece, len, s2, s2 + len, s2 + 2 * len, h, h + 3 * len);
            if (m1 != m2 || memcmp(s1, s2, m1 * sizeof(int)) != 0) { fprintf(stderr, "  FAIL heap BPE differs, trial %d\n", trial); g_fail++; break; }
        }
        free(s1); free(s2);
    }
    /* storage: standalone JSON and inside a checkpoint */
    CHECK_OK(rlhf_tokenizer_save(a, "build/tok.json"));
    CHECK_OK(rlhf_tokenizer_load(&c, "build/tok.json", &e));
    if (c) {
        CHECK_OK(rlhf_tokenizer_encode(c, TOK_CORPUS, strlen(TOK_CORPUS), ids2, 4096, &n2));
        CHECK_OK(rlhf_tokenizer_encode(a, TOK_CORPUS, strlen(TOK_CORPUS), ids, 4096, &n1));
        CHECK(n1 == n2 && memcmp(ids, ids2, n1 * sizeof(int)) == 0);
        rlhf_tokenizer_free(c);
        c = NULL;
    }
    {
        rlhf_config cfg = tiny_config();
        rlhf_model *m, *m2 = NULL;
        cfg.vocab_size = 330;
        CHECK_OK(rlhf_model_create(&m, &cfg, 1));
        if (m) {
            CHECK_OK(rlhf_model_set_tokenizer(m, a));
            CHECK_OK(rlhf_model_save(m, "build/with_tok.safetensors"));
            CHECK_OK(rlhf_model_load(&m2, "build/with_tok.safetensors"));
            if (m2) {
                CHECK_OK(rlhf_tokenizer_from_model(&c, m2, &e));
                if (c) {
                    CHECK_OK(rlhf_tokenizer_encode(c, TOK_CORPUS, strlen(TOK_CORPUS), ids2, 4096, &n2));
                    CHECK(n1 == n2 && memcmp(ids, ids2, n1 * sizeof(int)) == 0);
                }
            }
            rlhf_model_free(m2);
            cfg.vocab_size = 300;
            rlhf_model_free(m);
            CHECK_OK(rlhf_model_create(&m, &cfg, 1));
            CHECK(rlhf_model_set_tokenizer(m, a) == RLHF_ERR_INVALID_ARGUMENT); /* 330 tokens do not fit V = 300 */
            {
                rlhf_tokenizer *none = NULL;
                CHECK(rlhf_tokenizer_from_model(&none, m, &e) == RLHF_ERR_STATE && none == NULL);
            }
            rlhf_model_free(m);
        }
    }
    rlhf_tokenizer_free(c);
    rlhf_tokenizer_free(g);
    rlhf_tokenizer_free(a);
    rlhf_tokenizer_free(b);
    CHECK(rlhf_tokenizer_train(&a, corpus, clen, 100, &e) == RLHF_ERR_INVALID_ARGUMENT && a == NULL);
    free(corpus);
}

/* rlhf_tokenizer_save is atomic: a save that fails leaves the file that was
   there byte for byte, and no temporary file. Training needs some text. */
static void test_tokenizer_save(void) {
    static const char text[] = "the quick brown fox jumps over the lazy dog. the lazy dog sleeps.";
    const char *path = "build/test_tok_save.json";
    rlhf_tokenizer *a = NULL, *b = NULL, *back = NULL;
    rlhf_error e;
    unsigned char *before, *after;
    size_t n_before = 0, n_after = 0;
    CHECK(rlhf_tokenizer_train(&a, text, 0, 300, &e) == RLHF_ERR_INVALID_ARGUMENT && a == NULL);
    CHECK(strcmp(e.message, "rlhf_tokenizer_train: no text to learn from (0 bytes)") == 0);
    CHECK(rlhf_tokenizer_train(&a, NULL, 0, 300, &e) == RLHF_ERR_INVALID_ARGUMENT && strstr(e.message, "no text to learn from"));
    CHECK_OK(rlhf_tokenizer_train(&a, text, strlen(text), 270, &e));
    CHECK_OK(rlhf_tokenizer_train(&b, text, strlen(text), 280, &e));
    if (!a || !b) goto done;
    CHECK_OK(rlhf_tokenizer_save(a, path));
    before = read_all(path, &n_before);
    CHECK(before != NULL);
    /* failures: no such directory; the target is a directory */
    CHECK(rlhf_tokenizer_save(b, "build/no/such/dir/tok.json") == RLHF_ERR_IO);
    CHECK(rlhf_tokenizer_save(b, "build") == RLHF_ERR_IO);
    CHECK(rlhf_tokenizer_save(b, "") == RLHF_ERR_INVALID_ARGUMENT);
#if defined(__unix__) || defined(__APPLE__)
    {   /* the temporary of the failed save into "build" is gone; and a save
           to path whose temporary cannot be created fails without touching path */
        char tmp[64];
        snprintf(tmp, sizeof tmp, "build.tmp-%ld", (long)getpid());
        CHECK(!file_exists(tmp));
        snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
        CHECK(mkdir(tmp, 0755) == 0);
        CHECK(rlhf_tokenizer_save(b, path) == RLHF_ERR_IO);
        rmdir(tmp);
    }
    {   /* a pipe (or a device: /dev/null as root) at the target is written into by nobody: it stays what it was */
        struct stat st;
        const char *fifo = "build/tok_fifo";
        remove(fifo);
        CHECK(mkfifo(fifo, 0644) == 0);
        CHECK(rlhf_tokenizer_save(b, fifo) == RLHF_ERR_IO);
        CHECK(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
        remove(fifo);
    }
#endif
    after = read_all(path, &n_after);
    CHECK(after && n_after == n_before && memcmp(before, after, n_before) == 0);
    free(after);
    /* and a save that works replaces it whole */
    CHECK_OK(rlhf_tokenizer_save(b, path));
    CHECK_OK(rlhf_tokenizer_load(&back, path, &e));
    CHECK(back && rlhf_tokenizer_vocab_size(back) == rlhf_tokenizer_vocab_size(b) && rlhf_tokenizer_vocab_size(b) != rlhf_tokenizer_vocab_size(a));
    free(before);
done:
    rlhf_tokenizer_free(a); rlhf_tokenizer_free(b); rlhf_tokenizer_free(back);
}

static void test_tokenizer_chat(void) {
    rlhf_tokenizer *t = NULL;
    rlhf_error e;
    rlhf_message msg[3];
    int ids[256], plain[64];
    unsigned char mask[256];
    size_t n, np, i;
    CHECK_OK(rlhf_tokenizer_train(&t, TOK_CORPUS, strlen(TOK_CORPUS), 300, &e));
    if (!t) return;
    msg[0].role = RLHF_ROLE_SYSTEM; msg[0].content.str = "be brief"; msg[0].content.len = 8;
    msg[1].role = RLHF_ROLE_USER; msg[1].content.str = "add 2 and 3"; msg[1].content.len = 11;
    msg[2].role = RLHF_ROLE_ASSISTANT; msg[2].content.str = "5"; msg[2].content.len = 1;
    CHECK_OK(rlhf_tokenizer_chat(t, msg, 3, 0, ids, mask, 256, &n));
    CHECK(ids[0] == rlhf_tokenizer_special(t, RLHF_TOKEN_SYSTEM) && mask[0] == 0);
    CHECK(ids[n - 3] == rlhf_tokenizer_special(t, RLHF_TOKEN_ASSISTANT) && mask[n - 3] == 0);
    CHECK(ids[n - 2] == '5' && mask[n - 2] == 1);                                  /* the reply: learned */
    CHECK(ids[n - 1] == rlhf_tokenizer_special(t, RLHF_TOKEN_END) && mask[n - 1] == 1); /* and where it stops */
    for (i = 0; i + 3 < n; i++) CHECK(mask[i] == 0);                              /* nothing else */
    /* the user's content is encoded as ordinary text between its markers */
    CHECK_OK(rlhf_tokenizer_encode(t, "add 2 and 3", 11, plain, 64, &np));
    {
        size_t sys_len;
        int tmp[64];
        CHECK_OK(rlhf_tokenizer_encode(t, "be brief", 8, tmp, 64, &sys_len));
        CHECK(ids[sys_len + 2] == rlhf_tokenizer_special(t, RLHF_TOKEN_USER));
        CHECK(memcmp(ids + sys_len + 3, plain, np * sizeof(int)) == 0);
    }
    /* the generation prompt ends where the reply begins */
    CHECK_OK(rlhf_tokenizer_chat(t, msg, 2, 1, ids, NULL, 256, &n));
    CHECK(ids[n - 1] == rlhf_tokenizer_special(t, RLHF_TOKEN_ASSISTANT) && ids[n - 2] == rlhf_tokenizer_special(t, RLHF_TOKEN_END));
    CHECK(rlhf_tokenizer_chat(t, msg, 3, 0, ids, mask, 3, &n) == RLHF_ERR_TOO_LARGE && n > 3);
    {   /* decode shows special tokens as their strings */
        char out[128];
        int sp[2] = {rlhf_tokenizer_special(t, RLHF_TOKEN_USER), 'h'};
        CHECK_OK(rlhf_tokenizer_decode(t, sp, 2, out, sizeof out, &n));
        CHECK(n == 9 && memcmp(out, "<|user|>h", 9) == 0);
        sp[0] = 300;
        CHECK(rlhf_tokenizer_decode(t, sp, 2, out, sizeof out, &n) == RLHF_ERR_BAD_TOKEN);
    }
    rlhf_tokenizer_free(t);
}

/* HH-RLHF's plain template against tools/gen_hh_template.py: its Jinja string rendered by jinja2 and
   tokenized as Hugging Face does (split at <|endoftext|>, each piece GPT-2 BPE) gives rlhf.h's ids; the
   mask learns the replies (" a", with the space) and their <|endoftext|>, nothing else */
static void hh_check_mask(const rlhf_tokenizer *t, const int *ids, const unsigned char *mask, size_t n,
                          const fixture_rec *tx) {
    /* in the rendered text, a reply runs from the end of "\n\nAssistant:" to the next "<|endoftext|>" */
    const int *text = (const int *)tx->data;
    unsigned char *in_reply = (unsigned char *)calloc(tx->n + 1, 1);
    size_t k, j, pos = 0;
    for (k = 0; k + 12 <= tx->n; k++) {
        int hit = 1;
        for (j = 0; j < 12; j++) hit &= text[k + j] == "\n\nAssistant:"[j];
        for (j = k + 12; hit && j + 13 <= tx->n; j++) {
            int eos = 1, q;
            for (q = 0; q < 13; q++) eos &= text[j + (size_t)q] == "<|endoftext|>"[q];
            if (eos) { memset(in_reply + k + 12, 1, j - k - 12); break; }
        }
    }
    for (k = 0; k < n; k++) {
        char piece[64];
        size_t nb = 0;
        if (ids[k] == 50256) { /* "<|endoftext|>" in the text: learned */
            nb = 13;
            CHECK(mask[k] == 1);
        } else {
            CHECK_OK(rlhf_tokenizer_decode(t, ids + k, 1, piece, sizeof piece, &nb));
            if (mask[k] != in_reply[pos]) { fprintf(stderr, "  FAIL hh mask: token %zu at byte %zu\n", k, pos); g_fail++; }
        }
        pos += nb;
    }
    CHECK(pos == tx->n);
    free(in_reply);
}
static void test_tokenizer_hh(void) {
    rlhf_tokenizer *t = load_gpt2_tokenizer(), *back = NULL;
    fixture fx;
    fixture_rec *cnt;
    rlhf_error e;
    int i, n, exact = 0;
    if (!t) return;
    CHECK(rlhf_tokenizer_template(t) == RLHF_TEMPLATE_CHAT && rlhf_tokenizer_reply_end(t) == 50261);
    CHECK(rlhf_tokenizer_set_template(t, (rlhf_chat_template)7) == RLHF_ERR_INVALID_ARGUMENT);
    CHECK_OK(rlhf_tokenizer_set_template(t, RLHF_TEMPLATE_HH));
    CHECK(rlhf_tokenizer_reply_end(t) == 50256); /* a reply ends with <|endoftext|> */
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/hh_template.bin")) { g_fail++; rlhf_tokenizer_free(t); return; }
    cnt = fixture_get(&fx, "count");
    n = cnt ? ((const int *)cnt->data)[0] : 0;
    for (i = 0; i < n; i++) {
        char name[48];
        fixture_rec *roles, *gen, *want, *tx;
        rlhf_message msg[8];
        char *content[8];
        int ids[512], nm, j;
        unsigned char mask[512];
        size_t ng = 0, k;
        snprintf(name, sizeof name, "roles.%d", i); roles = fixture_get(&fx, name);
        snprintf(name, sizeof name, "gen.%d", i); gen = fixture_get(&fx, name);
        snprintf(name, sizeof name, "ids.%d", i); want = fixture_get(&fx, name);
        snprintf(name, sizeof name, "text.%d", i); tx = fixture_get(&fx, name);
        if (!roles || !gen || !want || !tx || roles->n > 8) { g_fail++; break; }
        nm = (int)roles->n;
        for (j = 0; j < nm; j++) {
            fixture_rec *c;
            snprintf(name, sizeof name, "msg.%d.%d", i, j);
            c = fixture_get(&fx, name);
            content[j] = (char *)malloc(c ? c->n + 1 : 1);
            for (k = 0; c && k < c->n; k++) content[j][k] = (char)((const int *)c->data)[k];
            content[j][c ? c->n : 0] = 0;
            msg[j].role = (rlhf_role)((const int *)roles->data)[j];
            msg[j].content.str = content[j];
            msg[j].content.len = c ? c->n : 0;
        }
        CHECK_OK(rlhf_tokenizer_chat(t, msg, nm, ((const int *)gen->data)[0], ids, mask, 512, &ng));
        if (ng == want->n && memcmp(ids, want->data, ng * sizeof(int)) == 0) {
            exact++;
            hh_check_mask(t, ids, mask, ng, tx);
        } else {
            for (k = 0; k < ng && k < want->n && ids[k] == ((const int *)want->data)[k]; k++) {}
            fprintf(stderr, "  FAIL hh conversation %d: %zu ids, want %zu; first difference at %zu\n", i, ng, want->n, k);
            g_fail++;
        }
        for (j = 0; j < nm; j++) free(content[j]);
    }
    printf("  HH template: %d of %d conversations give the Jinja template's ids exactly\n", exact, n);
    CHECK(n >= 8 && exact == n);
    {   /* an export writes that very Jinja string as its chat_template */
        rlhf_config cfg = rlhf_config_default();
        rlhf_model *m = NULL;
        fixture_rec *jinja = fixture_get(&fx, "jinja");
        rlhf_json_doc *doc = NULL;
        const rlhf_json *ct;
        char *json;
        size_t len = 0, k;
        cfg.vocab_size = rlhf_tokenizer_vocab_size(t), cfg.n_ctx = 16, cfg.n_layer = 1, cfg.n_head = 1, cfg.n_embd = 8;
        CHECK_OK(rlhf_model_create(&m, &cfg, 1));
        rlhf_export_options xo = rlhf_export_options_default();
        xo.overwrite = 1; /* an earlier run's export is replaced */
#ifdef RLHF__POSIX_IO
        CHECK_OK(rlhf_model_export_hf(m, t, "build/hh_export", &xo, &e));
        json = (char *)read_all("build/hh_export/tokenizer_config.json", &len);
        CHECK(json && jinja && rlhf_json_parse(&doc, json, len, 16, NULL) == RLHF_OK);
        ct = doc ? rlhf_json_get(rlhf_json_root(doc), "chat_template") : NULL;
        CHECK(ct && ct->type == RLHF_JSON_STRING && jinja && ct->len == jinja->n);
        for (k = 0; ct && jinja && k < ct->len && k < jinja->n; k++)
            if ((unsigned char)ct->str[k] != ((const int *)jinja->data)[k]) { CHECK(!"chat_template differs"); break; }
        rlhf_json_free(doc);
        free(json);
#else
        (void)doc, (void)ct, (void)json, (void)len, (void)k, (void)jinja, (void)xo;
        printf("  the export's chat_template: skipped (exporting a directory needs POSIX)\n");
#endif
        rlhf_model_free(m);
    }
    fixture_free(&fx);
    {   /* the template is saved with the tokenizer (and only then: a chat tokenizer's file is unchanged) */
        CHECK_OK(rlhf_tokenizer_save(t, "build/hh_tok.json"));
        CHECK_OK(rlhf_tokenizer_load(&back, "build/hh_tok.json", &e));
        CHECK(back && rlhf_tokenizer_template(back) == RLHF_TEMPLATE_HH && rlhf_tokenizer_reply_end(back) == 50256);
        rlhf_tokenizer_free(back);
        remove("build/hh_tok.json");
    }
    rlhf_tokenizer_free(t);
}

/* ids of a record's k-th response (k < 0: its SFT encoding; k == -2: its prompt) */
static size_t record_ids(const rlhf_tokenizer *t, const rlhf_record *r, int k, int *ids, unsigned char *mask) {
    size_t n = 0;
    rlhf_result res = k == -1 ? rlhf_sft_encode(t, r, ids, mask, 512, &n) : k == -2 ? rlhf_prompt_encode(t, r, ids, 512, &n)
                                                                                    : rlhf_response_encode(t, r, k, ids, 512, &n);
    CHECK_OK(res);
    return n;
}
/* a record's encoding is the chat template of the conversation a messages record spells out */
static void same_ids(const rlhf_tokenizer *t, const rlhf_record *r, int k, const rlhf_record *conv, const char *what) {
    int a[512], b[512];
    size_t na = record_ids(t, r, k, a, NULL), nb = record_ids(t, conv, -1, b, NULL);
    if (na != nb || memcmp(a, b, na * sizeof(int)) != 0) {
        fprintf(stderr, "  FAIL %s: %zu ids, the messages record's template %zu, or they differ\n", what, na, nb);
        g_fail++;
    }
}
static void test_datasets_chat_ids(void) {
    rlhf_tokenizer *t = NULL;
    rlhf_dataset *sft = NULL, *pref = NULL, *msgs = NULL, *pr = NULL, *kto = NULL;
    rlhf_model *m = NULL;
    rlhf_config cfg;
    rlhf_error e;
    int a[512], b[512];
    unsigned char ma[512], mb[512];
    size_t na, nb, np, i;
    CHECK_OK(rlhf_tokenizer_train(&t, TOK_CORPUS, strlen(TOK_CORPUS), 300, &e));
    sft = load_text("build/c_sft.jsonl",
                    "{\"prompt\": [" S("be brief") ", " U("add 2 and 3") "], \"completion\": [" A("5") "]}\n"
                    "{\"prompt\": [" U("a cat") ", " A("sat") ", " U("then?") "], \"completion\": [" A("it slept") "]}\n",
                    RLHF_DATA_SFT, 0, &e);
    pref = load_text("build/c_pref.jsonl",
                     "{\"prompt\": [" U("the quick") "], \"chosen\": [" A("fox") "], \"rejected\": [" A("dog") "]}\n"
                     "{\"chosen\": [" U("a cat") ", " A("sat") ", " U("then?") ", " A("it slept") "], "
                     "\"rejected\": [" U("a cat") ", " A("ran") ", " U("then?") ", " A("it slept") "]}\n"
                     "{\"chosen\": \"\\n\\nHuman: a cat\\n\\nAssistant: sat\\n\\nHuman: then?\\n\\nAssistant: it slept\", "
                     "\"rejected\": \"\\n\\nHuman: a cat\\n\\nAssistant: ran\\n\\nHuman: then?\\n\\nAssistant: it slept\"}\n",
                     RLHF_DATA_PREFERENCE, 0, &e);
    /* the same conversations as messages records */
    msgs = load_text("build/c_msgs.jsonl",
                     "{\"messages\": [" S("be brief") ", " U("add 2 and 3") ", " A("5") "]}\n"
                     "{\"messages\": [" U("a cat") ", " A("sat") ", " U("then?") ", " A("it slept") "]}\n"
                     "{\"messages\": [" U("the quick") ", " A("fox") "]}\n"
                     "{\"messages\": [" U("the quick") ", " A("dog") "]}\n"
                     "{\"messages\": [" U("a cat") ", " A("ran") ", " U("then?") ", " A("it slept") "]}\n",
                     RLHF_DATA_SFT, 0, &e);
    pr = load_text("build/c_prompts.jsonl", "{\"prompt\": [" S("be brief") ", " U("a cat") "]}\n"
                   "{\"messages\": [" S("be brief") ", " U("a cat") "]}\n", RLHF_DATA_PROMPTS, 0, &e);
    kto = load_text("build/c_kto.jsonl", "{\"prompt\": [" U("the quick") "], \"completion\": [" A("dog") "], \"label\": false}\n",
                    RLHF_DATA_UNPAIRED, 0, &e);
    CHECK(t && sft && pref && msgs && pr && kto);
    if (!t || !sft || !pref || !msgs || !pr || !kto) goto done;

    /* SFT: the template of prompt + completion, the completion's assistant turns learned */
    na = record_ids(t, rlhf_dataset_record(sft, 0), -1, a, ma);
    nb = record_ids(t, rlhf_dataset_record(msgs, 0), -1, b, mb);
    CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0 && memcmp(ma, mb, na) == 0);
    na = record_ids(t, rlhf_dataset_record(sft, 1), -1, a, ma); /* the prompt's own assistant turn is not learned */
    nb = record_ids(t, rlhf_dataset_record(msgs, 1), -1, b, mb);
    CHECK(rlhf_tokenizer_chat(t, rlhf_dataset_record(sft, 1)->prompt_messages, 3, 0, NULL, NULL, 0, &np) == RLHF_ERR_TOO_LARGE);
    CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0 && np < na);
    for (i = 0; i < na; i++) CHECK(ma[i] == (i < np ? 0 : mb[i]));
    CHECK(memchr(mb, 1, np) != NULL); /* the messages record learns that turn: the two masks do differ there */

    {   /* a long conversation (more turns than the encoder keeps on its stack) */
        char conv[2048] = "{\"prompt\": [", whole[2048] = "{\"messages\": [";
        rlhf_dataset *c2, *m2;
        int k;
        for (k = 0; k < 9; k++) {
            strcat(conv, U("more?") ", " A("yes") ", ");
            strcat(whole, U("more?") ", " A("yes") ", ");
        }
        strcat(conv, U("last") "], \"completion\": [" A("done") "]}\n");
        strcat(whole, U("last") ", " A("done") "]}\n");
        c2 = load_text("build/c_long.jsonl", conv, RLHF_DATA_SFT, 0, &e);
        m2 = load_text("build/c_long_msgs.jsonl", whole, RLHF_DATA_SFT, 0, &e);
        CHECK(c2 && m2 && rlhf_dataset_record(c2, 0)->n_prompt_messages == 19);
        if (c2 && m2) {
            same_ids(t, rlhf_dataset_record(c2, 0), 0, rlhf_dataset_record(m2, 0), "19 prompt turns");
            na = record_ids(t, rlhf_dataset_record(c2, 0), -1, a, ma);
            for (i = 0, np = 0; i < na; i++) np += ma[i];
            CHECK_OK(rlhf_tokenizer_encode(t, "done", 4, b, 512, &nb));
            CHECK(np == nb + 1); /* "done" and its <|end|>: the prompt's nine "yes" are context */
        }
        rlhf_dataset_free(c2);
        rlhf_dataset_free(m2);
    }

    /* preferences: each response after its prompt is the template of the whole conversation */
    same_ids(t, rlhf_dataset_record(pref, 0), 0, rlhf_dataset_record(msgs, 2), "explicit prompt, chosen");
    same_ids(t, rlhf_dataset_record(pref, 0), 1, rlhf_dataset_record(msgs, 3), "explicit prompt, rejected");
    same_ids(t, rlhf_dataset_record(pref, 1), 0, rlhf_dataset_record(msgs, 1), "implicit prompt, chosen");
    same_ids(t, rlhf_dataset_record(pref, 1), 1, rlhf_dataset_record(msgs, 4), "implicit prompt, rejected");
    same_ids(t, rlhf_dataset_record(pref, 2), 0, rlhf_dataset_record(msgs, 1), "HH-RLHF turns, chosen");
    same_ids(t, rlhf_dataset_record(pref, 2), 1, rlhf_dataset_record(msgs, 4), "HH-RLHF turns, rejected");
    same_ids(t, rlhf_dataset_record(kto, 0), 0, rlhf_dataset_record(msgs, 3), "unpaired, conversational");
    CHECK(rlhf_response_encode(t, rlhf_dataset_record(pref, 0), 2, a, 512, &na) == RLHF_ERR_INVALID_ARGUMENT);
    /* prompts end with <|assistant|>: the implicit and HH prompts are the shared user turn */
    na = record_ids(t, rlhf_dataset_record(pref, 1), -2, a, NULL);
    nb = record_ids(t, rlhf_dataset_record(pref, 2), -2, b, NULL);
    CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0);
    CHECK_OK(rlhf_tokenizer_chat(t, rlhf_dataset_record(msgs, 1)->messages, 1, 1, b, NULL, 512, &nb));
    CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0);
    na = record_ids(t, rlhf_dataset_record(pr, 0), -2, a, NULL);
    nb = record_ids(t, rlhf_dataset_record(pr, 1), -2, b, NULL);
    CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0 && a[na - 1] == rlhf_tokenizer_special(t, RLHF_TOKEN_ASSISTANT));

    /* unpaired records are stored, and the stages that learn from pairs or completions refuse them */
    cfg.vocab_size = rlhf_tokenizer_vocab_size(t); cfg.n_ctx = 48; cfg.n_layer = 1; cfg.n_head = 2; cfg.n_embd = 16;
    CHECK_OK(rlhf_model_create(&m, &cfg, 5));
    if (!m) goto done;
    {
        rlhf_train_options o = rlhf_train_options_sft();
        CHECK(rlhf_sft_train(m, t, kto, NULL, &o, NULL, &e) == RLHF_ERR_INVALID_ARGUMENT &&
              strstr(e.message, "unpaired preference records"));
        CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 5));
        CHECK(rlhf_reward_train(m, t, kto, NULL, &o, NULL, &e) == RLHF_ERR_INVALID_ARGUMENT &&
              strstr(e.message, "line 1: an unpaired preference record"));
    }
    /* the reward of each response is the reward of the messages record's ids */
    {
        float got[2], want[2];
        int len;
        rlhf_rng rng;
        rlhf_rng_seed(&rng, 5);
        spread_params(m, &rng);
        CHECK_OK(rlhf_reward_score_record(m, t, rlhf_dataset_record(pref, 1), 0, got, NULL));
        len = (int)record_ids(t, rlhf_dataset_record(msgs, 1), -1, a, NULL);
        CHECK_OK(rlhf_reward_score_ids(m, a, NULL, &len, 1, len, &want[0]));
        len = (int)record_ids(t, rlhf_dataset_record(msgs, 4), -1, a, NULL);
        CHECK_OK(rlhf_reward_score_ids(m, a, NULL, &len, 1, len, &want[1]));
        close_enough("rlhf_reward_score_record", got, want, 2, 1e-6, 1e-5);
        CHECK(fabsf(got[0] - got[1]) > 1e-4f); /* the two responses are told apart */
        CHECK_OK(rlhf_reward_score_record(m, t, rlhf_dataset_record(sft, 1), 0, got, NULL)); /* a completion: one response */
        /* a response longer than the context: skipped and counted (the long-record rule) */
        cfg.n_ctx = 8;
        rlhf_model_free(m);
        m = NULL;
        CHECK_OK(rlhf_model_create(&m, &cfg, 5));
        if (m) CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 5));
        if (m) {
            rlhf_fit_report fit;
            memset(&fit, 0, sizeof fit);
            CHECK(rlhf_reward_score_record(m, t, rlhf_dataset_record(pref, 1), 0, got, &fit) == RLHF_ERR_CONTEXT_FULL);
            CHECK(fit.skipped == 1 && fit.kept == 0);
        }
    }
done:
    rlhf_model_free(m);
    rlhf_dataset_free(sft); rlhf_dataset_free(pref); rlhf_dataset_free(msgs); rlhf_dataset_free(pr); rlhf_dataset_free(kto);
    rlhf_tokenizer_free(t);
}

/* malformed tokenizer files: each a clear error */
static void tok_reject(const char *json, const char *what) {
    rlhf_tokenizer *t = NULL;
    rlhf_error e;
    write_file("build/badtok.json", json, strlen(json));
    if (rlhf_tokenizer_load(&t, "build/badtok.json", &e) == RLHF_OK || t || !strstr(e.message, what)) {
        fprintf(stderr, "  FAIL tokenizer file %.60s: got \"%s\", want \"%s\"\n", json, t ? "(loaded)" : e.message, what);
        g_fail++;
    }
    rlhf_tokenizer_free(t);
}
static void test_tokenizer_malformed(void) {
    rlhf_tokenizer *t = NULL;
    rlhf_error e;
    char *json, *p;
    size_t len;
    FILE *f;
    CHECK_OK(rlhf_tokenizer_train(&t, TOK_CORPUS, strlen(TOK_CORPUS), 270, &e));
    if (!t) return;
    CHECK_OK(rlhf_tokenizer_save(t, "build/goodtok.json"));
    rlhf_tokenizer_free(t);
    json = (char *)read_all("build/goodtok.json", &len);
    json = (char *)realloc(json, len + 64);
    json[len] = 0;
    tok_reject("{\"type\": \"rlhf-bpe\", ", "expected");
    tok_reject("{\"type\": \"other\", \"version\": 1}", "not an rlhf.h tokenizer");
    tok_reject("{\"type\": \"rlhf-bpe\", \"version\": 1, \"vocab\": [\"a\"], \"merges\": [], \"special\": [0,1,2,3,4,5]}", "expected \"vocab\" (at least 256");
    {   /* mutations of the good file */
        char *m = (char *)malloc(len + 64);
        /* a merge naming a token outside the table */
        strcpy(m, json);
        p = strstr(m, "\"merges\":[[");
        if (p) { memcpy(p + 11, "9999", 4); tok_reject(m, "merges[0] must be three token ids"); }
        /* a merge whose result is not the concatenation (swap a and b) */
        strcpy(m, json);
        p = strstr(m, "\"special\":[");
        if (p) { memcpy(p + 11, "265", 3); tok_reject(m, "share id"); } /* eos made equal to pad's id */
        /* duplicate tokens: token 1 becomes the same as token 0 */
        strcpy(m, json);
        p = strstr(m, "\"vocab\":[\"");
        if (p) {
            /* "\u0100" is byte 0; byte 1 is "\u0101": write Ā (U+0100) over ā (U+0101) */
            char *q = strstr(p, "\xC4\x81");
            if (q) { q[1] = '\x80'; tok_reject(m, "duplicates vocab[0]"); }
        }
        /* a template the library does not know */
        strcpy(m, json);
        if (len > 1 && m[len - 1] == '}') { strcpy(m + len - 1, ",\"template\":\"llama\"}"); tok_reject(m, "\"template\" must be"); }
        /* a character outside the byte alphabet */
        strcpy(m, json);
        p = strstr(m, "\"vocab\":[\"");
        if (p) { char *q = strstr(p, "\xC4\x81"); if (q) { q[0] = '\xD0'; q[1] = '\xAF'; tok_reject(m, "outside the byte alphabet"); } }
        free(m);
    }
    free(json);
    /* GPT-2 files that lie */
    f = fopen("build/enc_bad.json", "wb"); fputs("{\"a\": 0, \"b\": 0}", f); fclose(f);
    f = fopen("build/merges_bad.bpe", "wb"); fputs("#version: 0.2\nzqzqzq qxqxqx\n", f); fclose(f);
    CHECK(rlhf_tokenizer_load_gpt2_ex(&t, "build/enc_bad.json", "build/merges_bad.bpe", &e) == RLHF_ERR_PARSE);
    CHECK(strstr(e.message, "id 0 is given to \"a\" and to \"b\"") != NULL);
    f = fopen("build/enc_noeos.json", "wb"); fputs("{\"<x\": 0, \"b\": 1}", f); fclose(f);
    CHECK(rlhf_tokenizer_load_gpt2_ex(&t, "build/enc_noeos.json", "build/merges_bad.bpe", &e) == RLHF_ERR_PARSE);
    CHECK(strstr(e.message, "no <|endoftext|> token") != NULL);
    {
        FILE *g = fopen(RLHF_SHARED_DIR "/gpt2/encoder.json", "rb");
        if (g) {
            fclose(g);
            CHECK(rlhf_tokenizer_load_gpt2_ex(&t, RLHF_SHARED_DIR "/gpt2/encoder.json", "build/merges_bad.bpe", &e) == RLHF_ERR_PARSE);
            CHECK(strstr(e.message, "merges_bad.bpe: 2: merge \"zqzqzq qxqxqx\" names a token not in") != NULL);
            CHECK(rlhf_tokenizer_load_gpt2_ex(&t, "build/merges_bad.bpe", RLHF_SHARED_DIR "/gpt2/vocab.bpe", &e) == RLHF_ERR_PARSE);
        }
    }
    CHECK(rlhf_tokenizer_load_gpt2_ex(&t, "build/none.json", "build/none.bpe", &e) == RLHF_ERR_IO && t == NULL);
}

/* ---- RLHF losses ------------------------------------------------------------------ */
static float rank_loss_at(const float *r, int K) { return rlhf_ranking_loss(r, K, NULL); }
/* ---- Hugging Face tokenizer files --------------------------------------------------- */
#if defined(__unix__) || defined(__APPLE__)
/* GPT-2's tokenizer.json, written from encoder.json and vocab.bpe: merges as
   "a b" strings (pairs = 0) or as [a, b] pairs (pairs = 1, newer tokenizers) */
static int write_gpt2_tokenizer_json(const char *path, int pairs) {
    size_t ne = 0, nb = 0, i;
    char *enc = (char *)read_all(RLHF_SHARED_DIR "/gpt2/encoder.json", &ne);
    char *bpe = (char *)read_all(RLHF_SHARED_DIR "/gpt2/vocab.bpe", &nb);
    FILE *f = fopen(path, "wb");
    int first = 1;
    if (!enc || !bpe || !f) { free(enc); free(bpe); if (f) fclose(f); return 0; }
    fputs("{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [{\"id\": 50256, \"content\": "
          "\"<|endoftext|>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, "
          "\"special\": true}], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": "
          "false, \"trim_offsets\": true, \"use_regex\": true}, \"post_processor\": null, \"decoder\": {\"type\": "
          "\"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
          "\"continuing_subword_prefix\": \"\", \"end_of_word_suffix\": \"\", \"fuse_unk\": false, \"byte_fallback\": "
          "false, \"vocab\": ", f);
    fwrite(enc, 1, ne, f);
    fputs(", \"merges\": [", f);
    for (i = 0; i < nb;) { /* each line after "#version": one merge, its two tokens JSON-escaped */
        size_t e = i, k;
        while (e < nb && bpe[e] != '\n') e++;
        if (e > i && !(i == 0 && strncmp(bpe, "#version", 8) == 0)) { /* "# #" is a merge: only line 1 is the header */
            fputs(first ? "" : ",", f);
            fputs(pairs ? "[\"" : "\"", f);
            for (k = i; k < e; k++) {
                if (bpe[k] == ' ' && pairs) { fputs("\", \"", f); continue; }
                if (bpe[k] == '"' || bpe[k] == '\\') fputc('\\', f);
                fputc(bpe[k], f);
            }
            fputs(pairs ? "\"]" : "\"", f);
            first = 0;
        }
        i = e + 1;
    }
    fputs("]}}", f);
    fclose(f);
    free(enc);
    free(bpe);
    return 1;
}
/* a and b are the same tokenizer: every token's bytes, every merge, every special id */
static int same_tokenizer(const rlhf_tokenizer *a, const rlhf_tokenizer *b) {
    int k;
    if (a->n_vocab != b->n_vocab || a->n_merges != b->n_merges || memcmp(a->tok_off, b->tok_off, ((size_t)a->n_vocab + 1) * 4) != 0 ||
        memcmp(a->pool, b->pool, a->tok_off[a->n_vocab]) != 0 || memcmp(a->merges, b->merges, (size_t)a->n_merges * sizeof *a->merges) != 0)
        return 0;
    for (k = 0; k < RLHF_NUM_SPECIAL_TOKENS; k++)
        if (a->special[k] != b->special[k]) return 0;
    return 1;
}
/* OpenAI's ids (gpt2_parity.bin) for every text of the fixture */
static int parity_texts_ok(const rlhf_tokenizer *t) {
    fixture fx;
    fixture_rec *cnt;
    int i, n, exact = 0;
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/gpt2_parity.bin")) return 0;
    cnt = fixture_get(&fx, "count");
    n = cnt ? ((const int *)cnt->data)[0] : 0;
    for (i = 0; i < n; i++) {
        char name[32], *text;
        fixture_rec *tx, *want;
        int *got;
        size_t k, ng = 0;
        snprintf(name, sizeof name, "text.%d", i);
        tx = fixture_get(&fx, name);
        snprintf(name, sizeof name, "ids.%d", i);
        want = fixture_get(&fx, name);
        if (!tx || !want) break;
        text = (char *)malloc(tx->n + 1);
        got = (int *)malloc((tx->n + 1) * sizeof(int));
        for (k = 0; k < tx->n; k++) text[k] = (char)((const int *)tx->data)[k];
        if (rlhf_tokenizer_encode(t, text, tx->n, got, tx->n + 1, &ng) == RLHF_OK && ng == want->n &&
            memcmp(got, want->data, ng * sizeof(int)) == 0)
            exact++;
        free(text);
        free(got);
    }
    fixture_free(&fx);
    return n > 50 && exact == n;
}
static void write_str(const char *path, const char *s) { write_file(path, s, strlen(s)); }
/* a small byte-level vocabulary (the 256 bytes, "<|endoftext|>" at 256) as a JSON object */
static void byte_vocab_json(char *out, size_t cap) {
    uint32_t cp_of_byte[256];
    int byte_of_cp[324], b;
    size_t o = 0;
    rlhf__gpt2_alphabet(cp_of_byte, byte_of_cp);
    o += (size_t)snprintf(out + o, cap - o, "{");
    for (b = 0; b < 256; b++) {
        uint32_t cp = cp_of_byte[b];
        const char *esc = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : "";
        if (*esc) o += (size_t)snprintf(out + o, cap - o, "\"%s\": %d, ", esc, b);
        else if (cp < 128) o += (size_t)snprintf(out + o, cap - o, "\"%c\": %d, ", (char)cp, b);
        else o += (size_t)snprintf(out + o, cap - o, "\"%c%c\": %d, ", (char)(0xC0 | cp >> 6), (char)(0x80 | (cp & 63)), b);
    }
    snprintf(out + o, cap - o, "\"<|endoftext|>\": 256}");
}
/* build/hftok/tokenizer.json from a template with %s where the byte vocabulary goes */
static const char *small_tokenizer_json(const char *tmpl) {
    static char vocab[8192], text[16384];
    byte_vocab_json(vocab, sizeof vocab);
    snprintf(text, sizeof text, tmpl, vocab);
    mkdir("build/hftok", 0755);
    write_file("build/hftok/tokenizer.json", text, strlen(text));
    return "build/hftok/tokenizer.json";
}
static void hftok_reject(const char *name, const char *path, rlhf_result code, const char *what) {
    rlhf_tokenizer *t = (rlhf_tokenizer *)1;
    rlhf_error e;
    rlhf_result r = rlhf_tokenizer_load_hf(&t, path, &e);
    if (r != code || t != NULL || !strstr(e.message, what)) {
        fprintf(stderr, "  FAIL tokenizer \"%s\": got %s \"%s\", want %s \"%s\"\n", name, rlhf_result_string(r), e.message,
                rlhf_result_string(code), what);
        g_fail++;
    }
    if (t != (rlhf_tokenizer *)1) rlhf_tokenizer_free(t);
}
#define BPE_MODEL(pre) "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": " pre ", \"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": []}}"
#define BYTE_LEVEL "{\"type\": \"ByteLevel\", \"add_prefix_space\": false}"
#endif

/* GPT-2's tokenizer from each Hugging Face form is rlhf_tokenizer_load_gpt2's,
   token for token, and gives OpenAI's ids; rlhf's markers keep the ids the
   files give them; other tokenizers are refused with what was found. */
static void test_tokenizer_hf(void) {
#if defined(__unix__) || defined(__APPLE__)
    static const char *forms[] = {"build/hftok_vm", "build/hftok_vm/vocab.json", "build/hftok_vm/merges.txt", "build/hftok_str",
                                  "build/hftok_str/tokenizer.json", "build/hftok_pair", RLHF_SHARED_DIR "/gpt2",
                                  RLHF_SHARED_DIR "/gpt2/vocab.bpe"};
    rlhf_tokenizer *ref = load_gpt2_tokenizer(), *t;
    rlhf_error e;
    size_t k;
    if (ref) {
        mkdir("build/hftok_vm", 0755), mkdir("build/hftok_str", 0755), mkdir("build/hftok_pair", 0755);
        remove("build/hftok_vm/tokenizer_config.json");
        copy_file(RLHF_SHARED_DIR "/gpt2/encoder.json", "build/hftok_vm/vocab.json");
        copy_file(RLHF_SHARED_DIR "/gpt2/vocab.bpe", "build/hftok_vm/merges.txt");
        CHECK(write_gpt2_tokenizer_json("build/hftok_str/tokenizer.json", 0));
        CHECK(write_gpt2_tokenizer_json("build/hftok_pair/tokenizer.json", 1));
        for (k = 0; k < sizeof forms / sizeof forms[0]; k++) {
            t = NULL;
            if (rlhf_tokenizer_load_hf(&t, forms[k], &e) != RLHF_OK) {
                fprintf(stderr, "  FAIL %s: %s\n", forms[k], e.message);
                g_fail++;
                continue;
            }
            if (!same_tokenizer(t, ref) || !parity_texts_ok(t)) {
                fprintf(stderr, "  FAIL %s is not GPT-2's tokenizer\n", forms[k]);
                g_fail++;
            }
            rlhf_tokenizer_free(t);
        }

        /* markers given as added tokens (as an rlhf export writes them) keep their ids; the rest follow */
        write_str("build/hftok_vm/tokenizer_config.json",
                   "{\"added_tokens_decoder\": {\"50256\": {\"content\": \"<|endoftext|>\", \"special\": true}, "
                   "\"50257\": {\"content\": \"<|user|>\", \"special\": true}, \"50258\": {\"content\": \"<|pad|>\"}}}");
        t = NULL;
        CHECK_OK(rlhf_tokenizer_load_hf(&t, "build/hftok_vm", &e));
        if (t) {
            CHECK(rlhf_tokenizer_vocab_size(t) == 50262 && rlhf_tokenizer_special(t, RLHF_TOKEN_EOS) == 50256);
            CHECK(rlhf_tokenizer_special(t, RLHF_TOKEN_USER) == 50257 && rlhf_tokenizer_special(t, RLHF_TOKEN_PAD) == 50258);
            CHECK(rlhf_tokenizer_special(t, RLHF_TOKEN_SYSTEM) == 50259 && rlhf_tokenizer_special(t, RLHF_TOKEN_END) == 50261);
            CHECK(parity_texts_ok(t));
            rlhf_tokenizer_free(t);
        }
        write_str("build/hftok_vm/tokenizer_config.json", "{\"added_tokens_decoder\": {\"50259\": {\"content\": \"<|user|>\"}}}");
        hftok_reject("an added id past a gap", "build/hftok_vm", RLHF_ERR_PARSE,
                   "added token \"<|user|>\" has id 50259, expected 50257 (ids must follow the vocabulary without a gap)");
        write_str("build/hftok_vm/tokenizer_config.json", "{\"added_tokens_decoder\": {\"50000\": {\"content\": \"<|user|>\"}}}");
        hftok_reject("an added id the vocabulary holds", "build/hftok_vm", RLHF_ERR_PARSE,
                   "added token \"<|user|>\" has id 50000, which the vocabulary gives to another token");
        remove("build/hftok_vm/tokenizer_config.json");
        rlhf_tokenizer_free(ref);
    }

    /* a small byte-level BPE: added markers in tokenizer.json keep their ids */
    t = NULL;
    CHECK_OK(rlhf_tokenizer_load_hf(&t, small_tokenizer_json("{\"added_tokens\": [{\"id\": 257, \"content\": \"<|end|>\"}], "
                                                              "\"pre_tokenizer\": " BYTE_LEVEL ", \"model\": {\"vocab\": %s, \"merges\": []}}"), &e));
    CHECK(t && rlhf_tokenizer_vocab_size(t) == 262 && rlhf_tokenizer_special(t, RLHF_TOKEN_END) == 257 &&
          rlhf_tokenizer_special(t, RLHF_TOKEN_PAD) == 258 && rlhf_tokenizer_special(t, RLHF_TOKEN_ASSISTANT) == 261);
    rlhf_tokenizer_free(t);

    /* not GPT-2's byte-level BPE: refused, saying what was found */
    hftok_reject("WordPiece", small_tokenizer_json("{\"model\": {\"type\": \"WordPiece\", \"vocab\": %s}}"), RLHF_ERR_PARSE,
               "build/hftok/tokenizer.json: the model is WordPiece, not BPE");
    hftok_reject("Metaspace", small_tokenizer_json(BPE_MODEL("{\"type\": \"Metaspace\"}")), RLHF_ERR_PARSE,
               "the pre-tokenizer is Metaspace, not ByteLevel");
    hftok_reject("no pre-tokenizer", small_tokenizer_json(BPE_MODEL("null")), RLHF_ERR_PARSE, "the pre-tokenizer is none, not ByteLevel");
    hftok_reject("prefix space", small_tokenizer_json(BPE_MODEL("{\"type\": \"ByteLevel\"}")), RLHF_ERR_PARSE,
               "adds a prefix space (the default when the field is absent)");
    hftok_reject("normalizer", small_tokenizer_json("{\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": " BYTE_LEVEL
                                                  ", \"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": []}}"),
               RLHF_ERR_PARSE, "a normalizer (NFC) is set");
    hftok_reject("dropout", small_tokenizer_json("{\"pre_tokenizer\": " BYTE_LEVEL ", \"model\": {\"type\": \"BPE\", \"dropout\": 0.1, "
                                               "\"vocab\": %s, \"merges\": []}}"), RLHF_ERR_PARSE, "sets \"dropout\"");
    hftok_reject("a merge of unknown tokens", small_tokenizer_json("{\"pre_tokenizer\": " BYTE_LEVEL ", \"model\": {\"vocab\": %s, "
                                                                 "\"merges\": [\"a b\"]}}"), RLHF_ERR_PARSE,
               "merges[0] (\"a\" + \"b\") names a token not in the vocabulary");
    {   /* <|end|> made by merges from its bytes: ordinary text would encode into the marker */
        char vocab[8192], text[16384], *v2;
        byte_vocab_json(vocab, sizeof vocab);
        v2 = str_edit(vocab, "256}", "256, \"<|\": 257, \"en\": 258, \"end\": 259, \"<|end\": 260, \"|>\": 261, \"<|end|>\": 262}");
        snprintf(text, sizeof text, "{\"pre_tokenizer\": " BYTE_LEVEL ", \"model\": {\"vocab\": %s, \"merges\": [\"< |\", "
                 "\"e n\", \"en d\", \"<| end\", \"| >\", \"<|end |>\"]}}", v2);
        free(v2);
        write_str("build/hftok/tokenizer.json", text);
        hftok_reject("a marker made by a merge", "build/hftok/tokenizer.json", RLHF_ERR_PARSE,
                     "merge 5 makes the special token <|end|> (id 262)");
    }
    write_str("build/hftok/tokenizer.json", "{\"merges\": []}");
    hftok_reject("not a tokenizer", "build/hftok", RLHF_ERR_PARSE,
                 "build/hftok/tokenizer.json: not a Hugging Face tokenizer.json (no \"model\" object)");
    write_str("build/hftok/tokenizer.json", "{\"type\": \"rlhf-bpe\"}");
    hftok_reject("an rlhf tokenizer", "build/hftok/tokenizer.json", RLHF_ERR_PARSE, "an rlhf tokenizer loads with rlhf_tokenizer_load");
    remove("build/hftok/tokenizer.json");
    hftok_reject("an empty directory", "build/hftok", RLHF_ERR_IO, "no tokenizer here");
    write_str("build/hftok/vocab.json", "{\"a\": 0}"); /* not from ../shared: this check runs without it */
    hftok_reject("vocab.json alone", "build/hftok", RLHF_ERR_IO, "its partner build/hftok/merges.txt cannot be read");
    remove("build/hftok/vocab.json");
    hftok_reject("no such path", "build/no/such/dir", RLHF_ERR_IO, "build/no/such/dir: cannot be read");
#else
    g_skip = "POSIX only (mkdir)";
#endif
}

static void test_ranking_loss(void) {
    float r2[2] = {1.0f, 0.0f}, r3[3] = {2.0f, 1.0f, 0.0f}, g[9], want, r[9], gsum[9], pg[2], pr[2];
    int K, i, j;
    rlhf_rng rng;
    /* hand values: -log sigmoid(1) = log(1 + e^-1); K = 3: mean over the 3 pairs */
    want = 0.31326168751822286f;
    CHECK(fabsf(rlhf_ranking_loss(r2, 2, g) - want) < 1e-7f);
    CHECK(fabsf(g[0] + 0.26894142f) < 1e-7f && fabsf(g[1] - 0.26894142f) < 1e-7f); /* -+sigmoid(-1) */
    want = (float)((2.0 * log1p(exp(-1.0)) + log1p(exp(-2.0))) / 3.0);
    CHECK(fabsf(rlhf_ranking_loss(r3, 3, NULL) - want) < 1e-7f);
    rlhf_rng_seed(&rng, 41);
    for (K = 2; K <= 9; K++) {
        char what[64];
        float num[9];
        fill_uniform(r, (size_t)K, &rng, -3, 3);
        rlhf_ranking_loss(r, K, g);
        /* finite differences, in float: h = 1e-2 on a smooth loss */
        for (i = 0; i < K; i++) {
            float keep = r[i];
            double lp, lm;
            r[i] = keep + 1e-2f; lp = rank_loss_at(r, K);
            r[i] = keep - 1e-2f; lm = rank_loss_at(r, K);
            r[i] = keep;
            num[i] = (float)((lp - lm) / 2e-2);
        }
        snprintf(what, sizeof what, "ranking loss gradient K=%d", K);
        close_enough(what, g, num, (size_t)K, 2e-5, 2e-3);
        /* the K-way gradient is the sum over its C(K,2) pairs, weighted 1/C(K,2) */
        for (i = 0; i < K; i++) gsum[i] = 0.0f;
        for (i = 0; i < K; i++)
            for (j = i + 1; j < K; j++) {
                pr[0] = r[i]; pr[1] = r[j];
                rlhf_ranking_loss(pr, 2, pg);
                gsum[i] += pg[0] / (0.5f * K * (K - 1));
                gsum[j] += pg[1] / (0.5f * K * (K - 1));
            }
        snprintf(what, sizeof what, "K=%d gradient vs sum over pairs", K);
        close_enough(what, g, gsum, (size_t)K, 1e-7, 1e-5);
    }
    /* extreme gaps: finite, and the right limits */
    r2[0] = 100.0f; r2[1] = 0.0f;
    CHECK(rlhf_ranking_loss(r2, 2, g) < 1e-30f && isfinite(g[0]) && fabsf(g[0]) < 1e-30f);
    r2[0] = 0.0f; r2[1] = 100.0f;
    CHECK(fabsf(rlhf_ranking_loss(r2, 2, g) - 100.0f) < 1e-4f && g[0] == -1.0f && g[1] == 1.0f);
    r2[0] = -1e30f; r2[1] = 1e30f;
    CHECK(isfinite(rlhf_ranking_loss(r2, 2, g)) && isfinite(g[0]));
    CHECK(rlhf_ranking_loss(r2, 1, g) == 0.0f && g[0] == 0.0f);
}

static void test_gae(void) {
    /* worked by hand: rewards (0, 0, 1), values (0.5, 0.4, 0.3)
       gamma 1, lambda 0.95: delta = (-0.1, -0.1, 0.7); A_2 = 0.7,
       A_1 = -0.1 + 0.95 * 0.7 = 0.565, A_0 = -0.1 + 0.95 * 0.565 = 0.43675 */
    float rw[3] = {0.0f, 0.0f, 1.0f}, v[3] = {0.5f, 0.4f, 0.3f}, adv[3], ret[3];
    float want_adv[3] = {0.43675f, 0.565f, 0.7f}, want_ret[3] = {0.93675f, 0.965f, 1.0f};
    float want_adv2[3] = {-0.05675f, 0.185f, 0.7f};
    rlhf_gae(rw, v, 3, 1.0f, 0.95f, adv, ret);
    close_enough("gae advantages (gamma 1, lambda 0.95)", adv, want_adv, 3, 1e-6, 1e-6);
    close_enough("gae returns", ret, want_ret, 3, 1e-6, 1e-6);
    /* gamma 0.9, lambda 0.5: delta = (0.36 - 0.5, 0.27 - 0.4, 0.7); A_1 = -0.13 + 0.45 * 0.7 = 0.185,
       A_0 = -0.14 + 0.45 * 0.185 = -0.05675 */
    rlhf_gae(rw, v, 3, 0.9f, 0.5f, adv, ret);
    close_enough("gae advantages (gamma 0.9, lambda 0.5)", adv, want_adv2, 3, 1e-6, 1e-6);
    /* lambda 1, gamma 1: the advantage is the return-to-go minus the value */
    rlhf_gae(rw, v, 3, 1.0f, 1.0f, adv, ret);
    CHECK(fabsf(adv[0] - 0.5f) < 1e-6f && fabsf(ret[0] - 1.0f) < 1e-6f && fabsf(ret[1] - 1.0f) < 1e-6f);
}


static void test_kl_control(void) {
    /* Ziegler et al. 2019's controller, worked by hand with beta 0.05,
       target 6, horizon 10000 and 16 episodes (K_beta = 16/10000 = 0.0016):
         KL 6.6: e = 6.6/6 - 1 = 0.1             beta = 0.05 (1 + 0.1 x 0.0016)  = 0.050008
         KL 9:   e = 0.5, clipped to 0.2          beta = 0.05 (1 + 0.2 x 0.0016)  = 0.050016
         KL 3:   e = -0.5, clipped to -0.2        beta = 0.05 (1 - 0.2 x 0.0016)  = 0.049984
         KL 6:   e = 0                            beta unchanged
       and a short horizon, 100 episodes of horizon 50 (K_beta = 2), KL 7.2:
         e = 0.2                                  beta = 0.05 (1 + 0.4) = 0.07 */
    const float kl[5] = {6.6f, 9.0f, 3.0f, 6.0f, 7.2f}, horizon[5] = {1e4f, 1e4f, 1e4f, 1e4f, 50.0f};
    const int n[5] = {16, 16, 16, 16, 100};
    const float want[5] = {0.050008f, 0.050016f, 0.049984f, 0.05f, 0.07f};
    float got[5];
    int i;
    for (i = 0; i < 5; i++) got[i] = rlhf_kl_control(0.05f, kl[i], 6.0f, horizon[i], n[i]);
    close_enough("adaptive KL coefficient", got, want, 5, 1e-7, 1e-6);
    /* a run of iterations at KL above target raises beta geometrically: 0.05 x 1.00032^10 */
    for (i = 0, got[0] = 0.05f; i < 10; i++) got[0] = rlhf_kl_control(got[0], 12.0f, 6.0f, 1e4f, 16);
    CHECK(fabs((double)got[0] - 0.05 * pow(1.00032, 10)) < 1e-7);
}

/* Growing the vocabulary (chat markers added to a trained model): every old
   logit unchanged, the new rows at the mean of the old ones, AdamW's state
   and the metadata kept, training and saving go on at the new size. */
static void test_resize_vocab(void) {
    rlhf_config cfg = tiny_config();
    rlhf_adamw_config opt = rlhf_adamw_config_default();
    rlhf_model *m = NULL, *b = NULL;
    rlhf_tensor_info wte;
    rlhf_rng rng;
    int x[2 * 8], y[2 * 8], V = cfg.vocab_size, V2 = cfg.vocab_size + 5, C = cfg.n_embd, bt, v, c, same = 1;
    float *la = floats((size_t)16 * V), *lb = floats((size_t)16 * V2), loss;
    double worst = 0.0;
    long steps;
    CHECK_OK(rlhf_model_create(&m, &cfg, 3));
    if (!m || !la || !lb) { free(la); free(lb); rlhf_model_free(m); return; }
    rlhf_rng_seed(&rng, 3);
    random_tokens(x, 16, V, &rng);
    random_tokens(y, 16, V, &rng);
    CHECK_OK(rlhf_model_train_step(m, x, y, 2, 8, &opt, &loss));
    CHECK_OK(rlhf_model_set_meta(m, "note", "kept"));
    CHECK_OK(rlhf_model_logits(m, x, 2, 8, la));
    steps = rlhf_model_adamw_steps(m);

    /* shrinking is refused; growing keeps every old logit and puts the new rows at the mean */
    CHECK(rlhf_model_resize_vocab(m, V - 1) == RLHF_ERR_INVALID_ARGUMENT);
    CHECK_OK(rlhf_model_resize_vocab(m, V2));
    CHECK(rlhf_model_config(m)->vocab_size == V2 && rlhf_model_adamw_steps(m) == steps);
    CHECK(rlhf_model_meta(m, "note") && strcmp(rlhf_model_meta(m, "note"), "kept") == 0);
    CHECK_OK(rlhf_model_logits(m, x, 2, 8, lb));
    for (bt = 0; bt < 16; bt++)
        for (v = 0; v < V; v++) {
            double d = fabs((double)la[bt * V + v] - (double)lb[bt * V2 + v]);
            same &= la[bt * V + v] == lb[bt * V2 + v];
            worst = d > worst ? d : worst;
        }
    printf("    old logits after growing %d -> %d tokens: %s (worst |difference| %.3g)\n", V, V2,
           same ? "bit for bit" : "within rounding", worst);
    CHECK(worst <= 1e-6);
    CHECK_OK(rlhf_model_find_tensor(m, "wte.weight", &wte));
    for (c = 0; c < C; c++) {
        double mean = 0.0;
        for (v = 0; v < V; v++) mean += wte.data[v * C + c];
        mean /= V;
        for (v = V; v < V2; v++) CHECK(fabs(wte.data[v * C + c] - mean) < 1e-6);
    }

    /* the new tokens train and the model saves and loads at its new size */
    x[3] = V2 - 1, y[4] = V2 - 2;
    CHECK_OK(rlhf_model_train_step(m, x, y, 2, 8, &opt, &loss));
    CHECK(isfinite(loss) && rlhf_model_adamw_steps(m) == steps + 1);
    CHECK_OK(rlhf_model_save(m, "build/resize.safetensors"));
    CHECK_OK(rlhf_model_load(&b, "build/resize.safetensors"));
    CHECK(b && rlhf_model_config(b)->vocab_size == V2);
    rlhf_model_free(b);
    b = NULL;

    /* a reward model keeps its scalar head and its values */
    CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 4));
    CHECK_OK(rlhf_model_forward_values(m, x, NULL, 2, 8, la, 0));
    CHECK_OK(rlhf_model_resize_vocab(m, V2 + 3));
    CHECK(rlhf_model_has_score_head(m));
    CHECK_OK(rlhf_model_forward_values(m, x, NULL, 2, 8, lb, 0));
    CHECK(memcmp(la, lb, 16 * sizeof(float)) == 0);
    free(la); free(lb);
    rlhf_model_free(m);
}

/* ---- runner -------------------------------------------------------------------- */
/* slow: a training run to convergence (seconds natively, many minutes under
   qemu); `--no-slow` skips them (the emulated runs check kernels and byte
   order, which the other tests cover). */
typedef struct { const char *name; void (*fn)(void); int slow; } test_case;

/* DPO's losses (sigmoid, cDPO, IPO, hinge) and their gradients, and the group
   advantages of GRPO, Dr. GRPO and RLOO, against PyTorch in float64
   (tools/gen_dpo_golden.py): extreme gaps, label smoothing, groups of equal
   rewards, G = 1, 2, 4, 7. rlhf.h computes in double and rounds once, so the
   results agree to a few float ulps. */
/* GRPO's and RLOO's losses and gradients against tools/gen_dpo_golden.py
   (PyTorch, float64, TRL's formulas), in the same fixture as DPO's. */
static void golden_group_losses(fixture *fx) {
    char name[64];
    fixture_rec *r;
    int k, count, kind;
    for (kind = 0; kind < 2; kind++) {
        const char *pre = kind ? "rloo" : "grpo";
        snprintf(name, sizeof name, "%s.count", pre);
        if (!(r = fixture_get(fx, name))) { g_fail++; return; }
        count = *(const int *)r->data;
        for (k = 0; k < count; k++) {
            fixture_rec *f[13] = {NULL};
            static const char *const FIELDS[13] = {"eps", "lens", "adv", "logp", "old", "loss", "d",
                                                   "ref", "agg", "beta", "norm", "clipfrac", "kl"};
            float d[256], loss, cf, kl = 0.0f;
            const float *eps;
            int i, nf = kind ? 7 : 13;
            for (i = 0; i < nf; i++) {
                snprintf(name, sizeof name, "%s.%d.%s", pre, k, FIELDS[i]);
                if (!(f[i] = fixture_get(fx, name))) { g_fail++; return; }
            }
            if (f[3]->n > 256) { g_fail++; return; }
            eps = (const float *)f[0]->data;
            if (kind)
                loss = rlhf_rloo_loss((const float *)f[3]->data, (const float *)f[4]->data, (const float *)f[2]->data,
                                      (const int *)f[1]->data, (int)f[1]->n, eps[0], eps[1], d, &cf);
            else
                loss = rlhf_grpo_loss((const float *)f[3]->data, (const float *)f[4]->data, (const float *)f[7]->data,
                                      (const float *)f[2]->data, (const int *)f[1]->data, (int)f[1]->n, eps[0], eps[1],
                                      *(const float *)f[9]->data, (rlhf_loss_agg) * (const int *)f[8]->data,
                                      *(const float *)f[10]->data, d, &cf, &kl);
            snprintf(name, sizeof name, "%s case %d loss", pre, k);
            close_enough(name, &loss, (const float *)f[5]->data, 1, 1e-6, 1e-5);
            snprintf(name, sizeof name, "%s case %d dloss/dlogp", pre, k);
            close_enough(name, d, (const float *)f[6]->data, f[3]->n, 1e-7, 1e-5);
            if (!kind) {
                snprintf(name, sizeof name, "grpo case %d clipfrac, mean k3", k);
                close_enough(name, &cf, (const float *)f[11]->data, 1, 1e-6, 1e-6);
                close_enough(name, &kl, (const float *)f[12]->data, 1, 1e-6, 1e-5);
            }
        }
    }
}

/* KTO's loss and gradient against TRL's kto_loss in PyTorch (same fixture) */
static void golden_kto(fixture *fx) {
    char name[64];
    fixture_rec *r;
    int k, count;
    if (!(r = fixture_get(fx, "kto.count"))) { g_fail++; return; }
    count = *(const int *)r->data;
    for (k = 0; k < count; k++) {
        static const char *const FIELDS[6] = {"cfg", "label", "policy", "ref", "loss", "d"};
        fixture_rec *f[6];
        const float *c;
        float d[64], loss;
        int i;
        for (i = 0; i < 6; i++) {
            snprintf(name, sizeof name, "kto.%d.%s", k, FIELDS[i]);
            if (!(f[i] = fixture_get(fx, name)) || f[i]->n > 64) { g_fail++; return; }
        }
        c = (const float *)f[0]->data;
        loss = rlhf_kto_loss((const float *)f[2]->data, (const float *)f[3]->data, (const int *)f[1]->data,
                             (int)f[2]->n, c[1], c[0], c[2], c[3], d);
        snprintf(name, sizeof name, "kto case %d loss", k);
        close_enough(name, &loss, (const float *)f[4]->data, 1, 1e-7, 2e-6);
        snprintf(name, sizeof name, "kto case %d dloss/dpolicy", k);
        close_enough(name, d, (const float *)f[5]->data, f[2]->n, 1e-9, 2e-6);
    }
}

static void test_golden_dpo(void) {
    fixture fx;
    fixture_rec *r;
    char name[64];
    int k, count;
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/dpo_golden.bin")) { g_fail++; return; }
    if (!(r = fixture_get(&fx, "dpo.count"))) goto done;
    count = *(const int *)r->data;
    for (k = 0; k < count; k++) {
        fixture_rec *ty, *be, *ep, *pc, *pr, *rc, *rr, *lo, *dc, *dr;
        float d_c[64], d_r[64], loss;
#define DPO_REC(var, field) snprintf(name, sizeof name, "dpo.%d.%s", k, field); if (!(var = fixture_get(&fx, name))) goto done
        DPO_REC(ty, "type"); DPO_REC(be, "beta"); DPO_REC(ep, "eps"); DPO_REC(pc, "pc"); DPO_REC(pr, "pr");
        DPO_REC(rc, "rc"); DPO_REC(rr, "rr"); DPO_REC(lo, "loss"); DPO_REC(dc, "dc"); DPO_REC(dr, "dr");
#undef DPO_REC
        if (pc->n > 64) goto done;
        loss = rlhf_dpo_loss((const float *)pc->data, (const float *)pr->data, (const float *)rc->data,
                             (const float *)rr->data, (int)pc->n, *(const float *)be->data,
                             (rlhf_dpo_loss_type) * (const int *)ty->data, *(const float *)ep->data, d_c, d_r);
        snprintf(name, sizeof name, "dpo case %d loss", k);
        close_enough(name, &loss, (const float *)lo->data, 1, 1e-7, 2e-6);
        snprintf(name, sizeof name, "dpo case %d d_chosen", k);
        close_enough(name, d_c, (const float *)dc->data, pc->n, 1e-9, 2e-6);
        snprintf(name, sizeof name, "dpo case %d d_rejected", k);
        close_enough(name, d_r, (const float *)dr->data, pc->n, 1e-9, 2e-6);
        /* the gradients are optional; the loss is the same without them */
        CHECK(rlhf_dpo_loss((const float *)pc->data, (const float *)pr->data, (const float *)rc->data,
                            (const float *)rr->data, (int)pc->n, *(const float *)be->data,
                            (rlhf_dpo_loss_type) * (const int *)ty->data, *(const float *)ep->data, NULL,
                            NULL) == loss);
    }
    golden_group_losses(&fx);
    golden_kto(&fx);
    if (!(r = fixture_get(&fx, "adv.count"))) goto done;
    count = *(const int *)r->data;
    for (k = 0; k < count; k++) {
        fixture_rec *ty, *rw, *ad;
        float adv[64], inplace[64];
        snprintf(name, sizeof name, "adv.%d.type", k);
        if (!(ty = fixture_get(&fx, name))) goto done;
        snprintf(name, sizeof name, "adv.%d.r", k);
        if (!(rw = fixture_get(&fx, name))) goto done;
        snprintf(name, sizeof name, "adv.%d.adv", k);
        if (!(ad = fixture_get(&fx, name)) || rw->n > 64 || rw->ndim != 2) goto done;
        rlhf_group_advantages((const float *)rw->data, rw->dims[0], rw->dims[1],
                              (rlhf_advantage_type) * (const int *)ty->data, adv);
        snprintf(name, sizeof name, "advantages case %d (type %d, G %d)", k, *(const int *)ty->data, rw->dims[1]);
        close_enough(name, adv, (const float *)ad->data, rw->n, 1e-6, 2e-6);
        memcpy(inplace, rw->data, rw->n * sizeof(float)); /* in place: the same numbers */
        rlhf_group_advantages(inplace, rw->dims[0], rw->dims[1], (rlhf_advantage_type) * (const int *)ty->data,
                              inplace);
        CHECK(memcmp(inplace, adv, rw->n * sizeof(float)) == 0);
    }
    {   /* gaps far beyond any log-prob: the sigmoid and hinge losses and all
           gradients stay finite (IPO's square of 1e30 is not a float); n = 0 */
        static const float big[2] = {1e30f, -1e30f}, zero[2] = {0.0f, 0.0f};
        float d_c[2], d_r[2], l;
        l = rlhf_dpo_loss(big, zero, zero, zero, 2, 0.1f, RLHF_DPO_SIGMOID, 0.2f, d_c, d_r);
        CHECK(isfinite(l) && isfinite(d_c[0]) && isfinite(d_c[1]) && isfinite(d_r[0]) && isfinite(d_r[1]));
        l = rlhf_dpo_loss(big, zero, zero, zero, 2, 0.1f, RLHF_DPO_HINGE, 0.0f, d_c, d_r);
        CHECK(isfinite(l) && isfinite(d_c[0]) && isfinite(d_r[1]));
        l = rlhf_dpo_loss(big, zero, zero, zero, 2, 0.1f, RLHF_DPO_IPO, 0.0f, d_c, d_r);
        CHECK(isfinite(d_c[0]) && isfinite(d_r[1]));
        CHECK(rlhf_dpo_loss(big, zero, zero, zero, 0, 0.1f, RLHF_DPO_SIGMOID, 0.0f, d_c, d_r) == 0.0f);
    }
    {   /* a NaN log-prob gives a NaN loss and gradient under every loss (as torch), so a trainer sees it */
        const float nan1[1] = {NAN}, zero1[1] = {0.0f};
        float d_c[1], d_r[1];
        int ty;
        for (ty = 0; ty < 3; ty++) {
            float l = rlhf_dpo_loss(nan1, zero1, zero1, zero1, 1, 2.0f, (rlhf_dpo_loss_type)ty, 0.0f, d_c, d_r);
            CHECK(isnan(l) && isnan(d_c[0]) && isnan(d_r[0]));
        }
    }
done:
    fixture_free(&fx);
}

/* The scalar head and document starts against PyTorch (tools/gen_reward_golden.py):
   left padding, packing and right padding in one batch; the reward model's
   values, InstructGPT's ranking loss on the last tokens, every gradient; and
   the LM loss over the same documents. */
static void test_golden_reward(void) {
    fixture fx;
    fixture_rec *r, *in, *doc, *last, *wv, *vals, *rw, *rl, *rg, *tg, *lg, *ls;
    rlhf_config cfg;
    rlhf_model *m = NULL;
    const int *ci;
    int B, T, i, b;
    float *values = NULL, *values2 = NULL, *dvalues = NULL, *logits = NULL, rewards[16] = {0}, grad[16] = {0}, loss;
    char name[128];
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/reward_golden.bin")) { g_fail++; return; }
    if (!(r = fixture_get(&fx, "config"))) goto done;
    ci = (const int *)r->data;
    cfg.vocab_size = ci[0]; cfg.n_ctx = ci[1]; cfg.n_layer = ci[2]; cfg.n_head = ci[3]; cfg.n_embd = ci[4];
    B = ci[5]; T = ci[6];
    CHECK_OK(rlhf_model_create(&m, &cfg, 0));
    if (!m || B > 16) goto done;
    CHECK(!rlhf_model_has_score_head(m));
    CHECK(rlhf_model_forward_values(m, (const int *)fixture_get(&fx, "inputs")->data, NULL, B, T, grad, 0) == RLHF_ERR_STATE);
    CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 1));
    CHECK(rlhf_model_has_score_head(m) && rlhf_model_num_tensors(m) == 2 + 12 * cfg.n_layer + 4);
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info t;
        rlhf_model_tensor(m, i, &t);
        if (!(r = fixture_get(&fx, t.name))) goto done;
        CHECK(r->n == t.numel && r->ndim == t.ndim && r->dims[0] == t.shape[0]);
        if (r->n == t.numel) memcpy(t.data, r->data, t.numel * sizeof(float));
    }
    in = fixture_get(&fx, "inputs"); doc = fixture_get(&fx, "doc_start"); last = fixture_get(&fx, "last");
    wv = fixture_get(&fx, "wv"); vals = fixture_get(&fx, "values"); rw = fixture_get(&fx, "rewards");
    rl = fixture_get(&fx, "rank_loss"); rg = fixture_get(&fx, "rank_grad");
    tg = fixture_get(&fx, "lm.targets"); lg = fixture_get(&fx, "lm.logits"); ls = fixture_get(&fx, "lm.loss");
    if (!in || !doc || !last || !wv || !vals || !rw || !rl || !rg || !tg || !lg || !ls) goto done;
    values = floats((size_t)B * T); values2 = floats((size_t)B * T); dvalues = floats((size_t)B * T);
    logits = floats((size_t)B * T * cfg.vocab_size);
    /* part A: values at every position, the ranking loss on the last tokens */
    CHECK_OK(rlhf_model_forward_values(m, (const int *)in->data, (const int *)doc->data, B, T, values, 1));
    close_enough("reward golden values", values, (const float *)vals->data, vals->n, 1e-5, 1e-4);
    for (b = 0; b < B; b++) rewards[b] = values[(size_t)b * T + ((const int *)last->data)[b]];
    loss = rlhf_ranking_loss(rewards, B, grad);
    close_enough("reward golden rewards", rewards, (const float *)rw->data, (size_t)B, 1e-5, 1e-4);
    close_enough("reward golden ranking loss", &loss, (const float *)rl->data, 1, 1e-6, 1e-5);
    close_enough("reward golden ranking grad", grad, (const float *)rg->data, (size_t)B, 1e-6, 1e-4);
    memcpy(dvalues, wv->data, (size_t)B * T * sizeof(float));
    for (b = 0; b < B; b++) dvalues[(size_t)b * T + ((const int *)last->data)[b]] += grad[b];
    CHECK_OK(rlhf_model_zero_grad(m));
    CHECK_OK(rlhf_model_backward_values(m, dvalues));
    CHECK(rlhf_model_backward_values(m, dvalues) == RLHF_ERR_STATE); /* one backward per forward */
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info t;
        rlhf_model_tensor(m, i, &t);
        snprintf(name, sizeof name, "grad_a.%s", t.name);
        if (!(r = fixture_get(&fx, name))) continue;
        close_enough(name, t.grad, (const float *)r->data, t.numel, 1e-5, 1e-4);
    }
    /* the inference path (no caches) gives the same values bit for bit */
    CHECK_OK(rlhf_model_forward_values(m, (const int *)in->data, (const int *)doc->data, B, T, values2, 0));
    CHECK(memcmp(values, values2, (size_t)B * T * sizeof(float)) == 0);
    /* part B: the LM loss over the same documents; the head gets no gradient */
    CHECK_OK(rlhf_model_forward_docs(m, (const int *)in->data, (const int *)tg->data, (const int *)doc->data, B, T, logits, &loss));
    close_enough("lm golden logits (documents)", logits, (const float *)lg->data, lg->n, 1e-5, 1e-4);
    close_enough("lm golden loss (documents)", &loss, (const float *)ls->data, 1, 0, 1e-5);
    CHECK_OK(rlhf_model_zero_grad(m));
    CHECK_OK(rlhf_model_backward(m));
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info t;
        size_t j;
        rlhf_model_tensor(m, i, &t);
        if (strncmp(t.name, "score.", 6) == 0) {
            for (j = 0; j < t.numel; j++) CHECK(t.grad[j] == 0.0f);
            continue;
        }
        snprintf(name, sizeof name, "grad_b.%s", t.name);
        if (!(r = fixture_get(&fx, name))) continue;
        close_enough(name, t.grad, (const float *)r->data, t.numel, 1e-6, 1e-4);
    }
    /* and through the inference path */
    CHECK_OK(rlhf_model_forward_docs(m, (const int *)in->data, NULL, (const int *)doc->data, B, T, logits, NULL));
    close_enough("lm golden logits (documents, inference)", logits, (const float *)lg->data, lg->n, 1e-5, 1e-4);
    {   /* a bad document start is refused with its place */
        int bad[64];
        memcpy(bad, doc->data, (size_t)B * T * sizeof(int));
        bad[T + 1] = 2;
        CHECK(rlhf_model_forward_values(m, (const int *)in->data, bad, B, T, values, 0) == RLHF_ERR_INVALID_ARGUMENT);
        CHECK(strstr(rlhf_model_last_error(m), "doc_start[1][1] = 2") != NULL);
    }
done:
    free(values); free(values2); free(dvalues); free(logits);
    rlhf_model_free(m);
    fixture_free(&fx);
}


/* ---- issue 5: SFT and the reward model ---------------------------------------- */

/* The whole reward model's gradient by finite differences: one prompt, K = 3
   completions of different lengths (right-padded), InstructGPT's loss on the
   values at their last tokens. */
static float rm_loss_at(rlhf_model *m, const int *x, const int *len, int K, int T, float *values) {
    float r[3];
    int k;
    rlhf_model_forward_values(m, x, NULL, K, T, values, 0);
    for (k = 0; k < K; k++) r[k] = values[k * T + len[k] - 1];
    return rlhf_ranking_loss(r, K, NULL);
}
static void test_fd_reward_model(void) {
    rlhf_config cfg = tiny_config();
    rlhf_model *m;
    rlhf_rng rng;
    enum { K = 3, T = 9 };
    int x[K * T], len[K] = {9, 6, 4}, i, k, probes = 0;
    float values[K * T], dvalues[K * T] = {0}, r[K], g[K], *ana, *num;
    rlhf_rng_seed(&rng, 9);
    CHECK_OK(rlhf_model_create(&m, &cfg, 9));
    if (!m) return;
    CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 3));
    spread_params(m, &rng);
    random_tokens(x, K * T, cfg.vocab_size, &rng);
    CHECK_OK(rlhf_model_forward_values(m, x, NULL, K, T, values, 1));
    for (k = 0; k < K; k++) r[k] = values[k * T + len[k] - 1];
    rlhf_ranking_loss(r, K, g);
    for (k = 0; k < K; k++) dvalues[k * T + len[k] - 1] = g[k];
    CHECK_OK(rlhf_model_zero_grad(m));
    CHECK_OK(rlhf_model_backward_values(m, dvalues));
    ana = floats(64 * 4);
    num = floats(64 * 4);
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info t;
        size_t picks[4], p;
        rlhf_model_tensor(m, i, &t);
        picks[0] = 0; picks[1] = t.numel - 1; picks[2] = t.numel / 3; picks[3] = (t.numel * 7) / 11;
        for (p = 0; p < 4; p++) {
            float keep = t.data[picks[p]], lp, lm;
            const float h = 1e-2f;
            t.data[picks[p]] = keep + h;
            lp = rm_loss_at(m, x, len, K, T, values);
            t.data[picks[p]] = keep - h;
            lm = rm_loss_at(m, x, len, K, T, values);
            t.data[picks[p]] = keep;
            num[probes] = (lp - lm) / (2 * h);
            ana[probes] = t.grad[picks[p]];
            probes++;
        }
    }
    close_enough("reward model dloss/dparam (finite differences)", ana, num, (size_t)probes, 1e-3, 2e-2);
    /* positions after a completion's end get no gradient: the padding of
       completion 2 (tokens 4..8) changes nothing */
    {
        float v2[K * T], before = rm_loss_at(m, x, len, K, T, v2);
        x[2 * T + 6] = (x[2 * T + 6] + 1) % cfg.vocab_size;
        CHECK(rm_loss_at(m, x, len, K, T, v2) == before);
    }
    free(ana); free(num);
    rlhf_model_free(m);
}

/* A tokenizer for the little worlds below. */
static rlhf_tokenizer *world_tokenizer(void) {
    static const char text[] =
        "rate this: good bad fine okay meh good good bad fine okay meh. repeat after me: red blue green cat dog sun moon. "
        "answer: yes no maybe. the quick brown fox jumps over the lazy dog. one two three four five six seven eight nine ten.";
    rlhf_tokenizer *t = NULL;
    rlhf_error e;
    CHECK_OK(rlhf_tokenizer_train(&t, text, strlen(text), 300, &e));
    return t;
}
static rlhf_model *world_model(const rlhf_tokenizer *t, uint64_t seed) {
    rlhf_config cfg;
    rlhf_model *m = NULL;
    cfg.vocab_size = rlhf_tokenizer_vocab_size(t); cfg.n_ctx = 48; cfg.n_layer = 2; cfg.n_head = 2; cfg.n_embd = 32;
    CHECK_OK(rlhf_model_create(&m, &cfg, seed));
    return m;
}
static void metrics_count(void *user, const char *json) {
    long *n = (long *)user;
    if (json[0] == '{' && json[strlen(json) - 1] == '}') (*n)++;
}

/* The preferred response follows a rule a tiny model can learn: more
   "good" words is better. Rankings of K = 2..4 (pairs and longer lists
   mixed); the reward model must rank >= 90% of held-out pairs right. */
static void good_words(FILE *f, int g, rlhf_rng *rng) {
    static const char *words[] = {"bad", "fine", "okay", "meh"};
    int w;
    for (w = 0; w < 4; w++) { /* g "good" among 4 words, at random places */
        int is_good = (int)(rlhf_rng_u64(rng) % (uint64_t)(4 - w)) < g;
        if (is_good) g--;
        fprintf(f, "%s%s", w ? " " : "", is_good ? "good" : words[rlhf_rng_u64(rng) % 4]);
    }
}
static void write_preference_world(const char *path, int n, uint64_t seed) {
    FILE *f = fopen(path, "wb");
    rlhf_rng rng;
    int i, k, j;
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    rlhf_rng_seed(&rng, seed);
    for (i = 0; i < n; i++) {
        int K = 2 + (int)(rlhf_rng_u64(&rng) % 3), counts[5] = {4, 3, 2, 1, 0}, goods[4], q[4], tmp;
        /* K distinct counts of "good" in 0..4, best first */
        for (k = 4; k > 0; k--) {
            j = (int)(rlhf_rng_u64(&rng) % (uint64_t)(k + 1));
            tmp = counts[k]; counts[k] = counts[j]; counts[j] = tmp;
        }
        for (k = 0; k < K; k++) goods[k] = counts[k];
        for (k = 0; k < K; k++)
            for (j = k + 1; j < K; j++)
                if (goods[j] > goods[k]) { tmp = goods[k]; goods[k] = goods[j]; goods[j] = tmp; }
        if (K == 2) {
            fprintf(f, "{\"prompt\": \"rate this:\", \"chosen\": \"");
            good_words(f, goods[0], &rng);
            fprintf(f, "\", \"rejected\": \"");
            good_words(f, goods[1], &rng);
            fprintf(f, "\"}\n");
            continue;
        }
        /* a ranking: completions in a random order q, the ranking lists them best first */
        for (k = 0; k < K; k++) q[k] = k;
        for (k = K - 1; k > 0; k--) {
            j = (int)(rlhf_rng_u64(&rng) % (uint64_t)(k + 1));
            tmp = q[k]; q[k] = q[j]; q[j] = tmp;
        }
        fprintf(f, "{\"prompt\": \"rate this:\", \"completions\": [");
        for (k = 0; k < K; k++) {
            fprintf(f, "%s\"", k ? ", " : "");
            good_words(f, goods[q[k]], &rng);
            fprintf(f, "\"");
        }
        fprintf(f, "], \"ranking\": [");
        for (j = 0; j < K; j++) /* rank j: the position holding goods[j] */
            for (k = 0; k < K; k++)
                if (q[k] == j) fprintf(f, "%s%d", j ? ", " : "", k);
        fprintf(f, "]}\n");
    }
    fclose(f);
}

static void test_reward_learnable(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL, *policy = NULL, *back = NULL;
    rlhf_dataset *train = NULL, *val = NULL, *prompts = NULL;
    rlhf_train_options o = rlhf_train_options_reward();
    rlhf_train_report rep;
    rlhf_error e;
    long n_metrics = 0;
    if (!t) return;
    write_preference_world("build/test_prefs_train.jsonl", 600, 1);
    write_preference_world("build/test_prefs_val.jsonl", 100, 2);
    CHECK_OK(rlhf_dataset_load(&train, "build/test_prefs_train.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    CHECK_OK(rlhf_dataset_load(&val, "build/test_prefs_val.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    m = world_model(t, 5);
    if (!m || !train || !val) goto done;
    /* no scalar head: refused with the reason */
    CHECK(rlhf_reward_train(m, t, train, val, &o, &rep, &e) == RLHF_ERR_STATE && strstr(e.message, "scalar head") != NULL);
    CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 5));
    o.opt.lr = 1e-3f;
    o.batch_size = 8;
    o.micro_batch = 16;
    o.epochs = 2;
    o.eval_every = 0;
    o.log_every = 0;
    o.metrics = metrics_count;
    o.metrics_user = &n_metrics;
    CHECK_OK(rlhf_reward_train(m, t, train, val, &o, &rep, &e));
    if (e.message[0]) fprintf(stderr, "  %s\n", e.message);
    printf("    reward model: %ld steps in %.2f s, held-out accuracy %.3f (loss %.3f), train accuracy %.3f\n", rep.steps, rep.seconds,
           (double)rep.val_accuracy, (double)rep.val_loss, (double)rep.train_accuracy);
    CHECK(rep.steps == 150 && rep.skipped_steps == 0 && rep.val_examples == 100 && rep.train_examples == 600);
    CHECK(rep.val_accuracy >= 0.90f);
    CHECK(n_metrics == rep.steps + 1); /* one line per step, one validation */
    CHECK(strcmp(rlhf_model_meta(m, "rlhf.kind"), "reward") == 0);
    {   /* scoring through the chat template agrees with the rule */
        const char *pr[2] = {"rate this:", "rate this:"}, *rs[2] = {"good good good fine", "bad meh okay bad"};
        float s[2];
        CHECK_OK(rlhf_reward_score(m, t, pr, rs, 2, s));
        CHECK(s[0] > s[1]);
    }
    /* normalisation on samples of a policy (here an untrained model of the
       same shape): re-drawing the same samples and scoring them with the
       stored gain and bias gives mean 0, std 1 */
    policy = world_model(t, 77);
    CHECK_OK(rlhf_dataset_load(&prompts, "build/test_prefs_train.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    if (policy && prompts) {
        rlhf_sampler_config sc = rlhf_sampler_config_default();
        float mean_raw, std_raw, gain, bias;
        enum { N = 40, NEW = 8 };
        rlhf_kv_cache *c = NULL;
        rlhf_sampler *s = NULL;
        rlhf_rng rng;
        double sum = 0, sumsq = 0;
        int i, seq[48];
        CHECK_OK(rlhf_reward_normalize(m, policy, t, prompts, N, &sc, NEW, 11, &mean_raw, &std_raw));
        rlhf_reward_normalization(m, &gain, &bias);
        CHECK(std_raw > 0 && fabsf(gain * std_raw - 1.0f) < 1e-5f && fabsf(gain * mean_raw + bias) < 1e-5f);
        CHECK_OK(rlhf_kv_cache_create(&c, policy, 1, 48));
        CHECK_OK(rlhf_sampler_create(&s, rlhf_tokenizer_vocab_size(t), &sc));
        rlhf_rng_seed(&rng, 11);
        for (i = 0; i < N && c && s; i++) {
            size_t np;
            int nr = 0, len;
            float score;
            CHECK_OK(rlhf_prompt_encode(t, rlhf_dataset_record(prompts, (size_t)i), seq, 48, &np));
            CHECK_OK(rlhf_model_generate(policy, c, s, &rng, seq, (int)np, NEW, rlhf_tokenizer_special(t, RLHF_TOKEN_END), seq + np, &nr));
            if (nr == 0 || seq[np + (size_t)nr - 1] != rlhf_tokenizer_special(t, RLHF_TOKEN_END)) /* cut: scored at an <|end|> */
                seq[np + (size_t)nr++] = rlhf_tokenizer_special(t, RLHF_TOKEN_END);
            len = (int)np + nr;
            CHECK_OK(rlhf_reward_score_ids(m, seq, NULL, &len, 1, len, &score));
            sum += score;
            sumsq += (double)score * score;
        }
        printf("    normalised rewards of %d policy samples: mean %.2e, std %.6f (raw mean %.4f, std %.4f)\n", N, sum / N,
               sqrt(sumsq / N - (sum / N) * (sum / N)), (double)mean_raw, (double)std_raw);
        CHECK(fabs(sum / N) < 1e-4 && fabs(sqrt(sumsq / N - (sum / N) * (sum / N)) - 1.0) < 1e-4);
        rlhf_kv_cache_free(c);
        rlhf_sampler_free(s);
    }
    {   /* the checkpoint keeps the head, the normalisation and the kind */
        const char *pr[1] = {"rate this:"}, *rs[1] = {"good fine good meh"};
        float s1, s2;
        CHECK_OK(rlhf_model_save(m, "build/test_reward.safetensors"));
        CHECK_OK(rlhf_model_load_ex(&back, "build/test_reward.safetensors", &e));
        if (back) {
            CHECK(rlhf_model_has_score_head(back) && strcmp(rlhf_model_meta(back, "rlhf.kind"), "reward") == 0);
            CHECK_OK(rlhf_reward_score(m, t, pr, rs, 1, &s1));
            CHECK_OK(rlhf_reward_score(back, t, pr, rs, 1, &s2));
            CHECK(s1 == s2);
        }
    }
done:
    rlhf_model_free(m); rlhf_model_free(policy); rlhf_model_free(back);
    rlhf_dataset_free(train); rlhf_dataset_free(val); rlhf_dataset_free(prompts);
    rlhf_tokenizer_free(t);
}

/* The reward sits at the last real token whatever the padding: right
   padding (never attended) and left padding (masked, positions shifted)
   give the unpadded sequence's reward. */
static void test_reward_padding(void) {
    rlhf_config cfg = tiny_config();
    rlhf_model *m = NULL;
    rlhf_rng rng;
    enum { B = 3, T = 10 };
    int seqs[B][T], lens[B] = {10, 6, 3}, right[B * T], left[B * T], npad[B], b, t, pad = 28;
    float alone[B], sr[B], sl[B];
    rlhf_rng_seed(&rng, 13);
    CHECK_OK(rlhf_model_create(&m, &cfg, 13));
    if (!m) return;
    CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 13));
    spread_params(m, &rng);
    for (b = 0; b < B; b++) {
        random_tokens(seqs[b], T, cfg.vocab_size - 1, &rng);
        CHECK_OK(rlhf_reward_score_ids(m, seqs[b], NULL, &lens[b], 1, lens[b], &alone[b]));
        npad[b] = T - lens[b];
        for (t = 0; t < T; t++) {
            right[b * T + t] = t < lens[b] ? seqs[b][t] : pad;
            left[b * T + t] = t < npad[b] ? pad : seqs[b][t - npad[b]];
        }
    }
    CHECK_OK(rlhf_reward_score_ids(m, right, NULL, lens, B, T, sr));
    CHECK_OK(rlhf_reward_score_ids(m, left, npad, lens, B, T, sl));
    close_enough("reward, right padding", sr, alone, B, 1e-6, 1e-5);
    close_enough("reward, left padding", sl, alone, B, 1e-6, 1e-5);
    /* reading at the wrong place is visible: the value one token earlier differs */
    {
        int l1 = lens[0] - 1;
        float early;
        CHECK_OK(rlhf_reward_score_ids(m, seqs[0], NULL, &l1, 1, lens[0], &early));
        CHECK(fabsf(early - alone[0]) > 1e-4f);
    }
    /* padding that does not fit, and a model without a head, are refused */
    lens[0] = 11;
    CHECK(rlhf_reward_score_ids(m, right, NULL, lens, B, T, sr) == RLHF_ERR_INVALID_ARGUMENT);
    rlhf_model_free(m);
    CHECK_OK(rlhf_model_create(&m, &cfg, 13));
    if (m) CHECK(rlhf_reward_score_ids(m, right, NULL, lens + 1, 1, T, sr) == RLHF_ERR_STATE);
    rlhf_model_free(m);
}

/* SFT learns completions only: a constant preamble in every prompt would be
   learned to near-zero loss if it were a target; it stays at its untrained
   loss while the completions' loss falls. */
static void measure_sft_losses(rlhf_model *m, const rlhf_tokenizer *t, const rlhf_dataset *d, double *prompt_loss, double *completion_loss) {
    int ids[64], in[64], tg_p[64], tg_c[64];
    unsigned char mask[64];
    size_t i, n, k;
    double sp = 0, sc = 0;
    int np = 0, nc = 0;
    for (i = 0; i < rlhf_dataset_size(d); i++) {
        float lp = 0, lc = 0;
        int cp = 0, cc = 0;
        CHECK_OK(rlhf_sft_encode(t, rlhf_dataset_record(d, i), ids, mask, 64, &n));
        for (k = 0; k + 1 < n; k++) {
            in[k] = ids[k];
            /* prompt targets: the preamble's text tokens (after <|user|>, before <|end|>) */
            tg_p[k] = !mask[k + 1] && k >= 1 && k + 1 < n && ids[k + 1] < 256 + 100 && !mask[k] && k < 6 ? ids[k + 1] : -1;
            tg_c[k] = mask[k + 1] ? ids[k + 1] : -1;
            cp += tg_p[k] >= 0;
            cc += tg_c[k] >= 0;
        }
        if (cp) { CHECK_OK(rlhf_model_forward(m, in, tg_p, 1, (int)n - 1, NULL, &lp)); sp += lp * cp; np += cp; }
        if (cc) { CHECK_OK(rlhf_model_forward(m, in, tg_c, 1, (int)n - 1, NULL, &lc)); sc += lc * cc; nc += cc; }
    }
    *prompt_loss = np ? sp / np : 0;
    *completion_loss = nc ? sc / nc : 0;
}
static void write_sft_world(const char *path, int n, uint64_t seed, int messages) {
    static const char *words[] = {"red", "blue", "green", "cat", "dog", "sun", "moon"};
    FILE *f = fopen(path, "wb");
    rlhf_rng rng;
    int i;
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    rlhf_rng_seed(&rng, seed);
    for (i = 0; i < n; i++) {
        const char *w = words[rlhf_rng_u64(&rng) % 7];
        if (messages && i % 2)
            fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"repeat after me: %s\"}, {\"role\": \"assistant\", \"content\": \"%s %s %s\"}]}\n", w, w, w, w);
        else
            fprintf(f, "{\"prompt\": \"repeat after me: %s\", \"completion\": \"%s %s %s\"}\n", w, w, w, w);
    }
    fclose(f);
}
static void test_sft_completion_only(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL, *best = NULL;
    rlhf_dataset *train = NULL, *val = NULL;
    rlhf_train_options o = rlhf_train_options_sft();
    rlhf_train_report rep;
    rlhf_error e;
    double p0, c0, p1, c1;
    int pack;
    if (!t) return;
    write_sft_world("build/test_sft_train.jsonl", 200, 3, 1);
    write_sft_world("build/test_sft_val.jsonl", 40, 4, 0);
    CHECK_OK(rlhf_dataset_load(&train, "build/test_sft_train.jsonl", RLHF_DATA_SFT, NULL, &e));
    CHECK_OK(rlhf_dataset_load(&val, "build/test_sft_val.jsonl", RLHF_DATA_SFT, NULL, &e));
    if (!train || !val) goto done;
    for (pack = 0; pack <= 1; pack++) {
        m = world_model(t, 21);
        if (!m) goto done;
        measure_sft_losses(m, t, val, &p0, &c0);
        o.opt.lr = 4e-3f;
        o.batch_size = 8;
        o.micro_batch = 4; /* two forwards per step: the accumulation path */
        o.epochs = 15;
        o.warmup_steps = 5;
        o.eval_every = 50;
        o.log_every = 0;
        o.pack = pack;
        o.out_dir = "build";
        CHECK_OK(rlhf_sft_train(m, t, train, val, &o, &rep, &e));
        if (e.message[0]) fprintf(stderr, "  %s\n", e.message);
        measure_sft_losses(m, t, val, &p1, &c1);
        printf("    sft%s: %ld steps, %.2f s; completion loss %.3f -> %.3f, prompt-preamble loss %.3f -> %.3f, val %.3f (best %.3f at %ld)\n",
               pack ? " (packed)" : "", rep.steps, rep.seconds, c0, c1, p0, p1, (double)rep.val_loss, (double)rep.best_val_loss, rep.best_step);
        CHECK(c1 < 0.3 && c1 < 0.1 * c0);       /* completions learned */
        CHECK(p1 > 0.5 * p0 && p1 > 2.0);       /* the constant preamble was never a target */
        CHECK(fabsf(rep.val_loss - (float)c1) < 1e-3f);
        CHECK(pack ? rep.steps < 375 : rep.steps == 375); /* packing fits several examples per row */
        rlhf_model_free(m);
        m = NULL;
    }
    /* the best checkpoint is a complete policy: kind, tokenizer, weights */
    CHECK_OK(rlhf_model_load_ex(&best, "build/best.safetensors", &e));
    if (best) {
        rlhf_tokenizer *t2 = NULL;
        CHECK(strcmp(rlhf_model_meta(best, "rlhf.kind"), "policy") == 0);
        CHECK_OK(rlhf_tokenizer_from_model(&t2, best, &e));
        CHECK(t2 && rlhf_tokenizer_vocab_size(t2) == rlhf_tokenizer_vocab_size(t));
        rlhf_tokenizer_free(t2);
    }
    /* the schedule: warm-up, cosine to the floor */
    o = rlhf_train_options_sft();
    o.opt.lr = 1.0f; o.warmup_steps = 10; o.min_lr_ratio = 0.1f;
    CHECK(fabsf(rlhf_lr_at(&o, 0, 110) - 0.1f) < 1e-6f && rlhf_lr_at(&o, 9, 110) == 1.0f);
    CHECK(rlhf_lr_at(&o, 10, 110) == 1.0f && fabsf(rlhf_lr_at(&o, 60, 110) - 0.55f) < 1e-6f);
    CHECK(rlhf_lr_at(&o, 109, 110) > 0.1f && rlhf_lr_at(&o, 109, 110) < 0.1003f); /* the floor, after the last step */
    o.decay = RLHF_LR_LINEAR; o.min_lr_ratio = 0.0f;
    CHECK(fabsf(rlhf_lr_at(&o, 109, 110) - 0.01f) < 1e-6f && fabsf(rlhf_lr_at(&o, 10 + 33, 110) - 0.67f) < 1e-6f);
    o.warmup_steps = 0;
    CHECK(rlhf_lr_at(&o, 0, 1) == 1.0f); /* a one-step run still learns */
done:
    rlhf_model_free(m); rlhf_model_free(best);
    rlhf_dataset_free(train); rlhf_dataset_free(val);
    rlhf_tokenizer_free(t);
}

/* Pretraining through the same loop: text records, every token a target. */
static float text_loss(rlhf_model *m, const int *ids, int n) {
    float loss = 0;
    CHECK_OK(rlhf_model_forward(m, ids, ids + 1, 1, n - 1, NULL, &loss));
    return loss;
}
static void test_pretrain_text(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL;
    rlhf_dataset *d = NULL;
    rlhf_train_options o = rlhf_train_options_sft();
    rlhf_train_report rep;
    rlhf_error e;
    static const char text[] = "one two three four five six seven eight nine ten. one two three four five six seven eight nine ten. "
                               "one two three four five six seven eight nine ten. one two three four five six seven eight nine ten. ";
    if (!t) return;
    write_file("build/test_pretrain.txt", text, strlen(text));
    CHECK_OK(rlhf_dataset_load(&d, "build/test_pretrain.txt", RLHF_DATA_TEXT, NULL, &e));
    m = world_model(t, 31);
    if (m && d) {
        o.opt.lr = 5e-3f; o.batch_size = 2; o.seq_len = 16; o.max_steps = 150; o.val_fraction = 0; o.log_every = 0;
        float before, after;
        int ids[64];
        size_t n;
        CHECK_OK(rlhf_tokenizer_encode(t, text, 60, ids, 64, &n));
        before = text_loss(m, ids, (int)n);
        CHECK_OK(rlhf_sft_train(m, t, d, NULL, &o, &rep, &e));
        after = text_loss(m, ids, (int)n);
        printf("    pretraining: %ld steps, loss on the text %.3f -> %.3f\n", rep.steps, (double)before, (double)after);
        CHECK(rep.steps == 150 && after < 1.0f && before > 4.0f && isnan(rep.val_loss));
        CHECK(rlhf_model_meta(m, "rlhf.kind") && strcmp(rlhf_model_meta(m, "rlhf.kind"), "base") == 0);
        /* bad options say which */
        o.batch_size = 0;
        CHECK(rlhf_sft_train(m, t, d, NULL, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT && strstr(e.message, "batch_size") != NULL);
    }
    rlhf_model_free(m);
    rlhf_dataset_free(d);
    rlhf_tokenizer_free(t);
}


/* ---- issue 6: PPO ---------------------------------------------------------------- */

/* Finite differences of the clipped surrogate, the clipped value loss and
   the KL-penalised reward path (k1 and k3). Inputs keep away from the kinks
   (ratio at 1 +- eps, |v - v_old| at eps, equal branches). */
static float ppo_pl_at(const float *lp, const float *old, const float *a, int n, float eps) {
    return rlhf_ppo_policy_loss(lp, old, a, n, eps, NULL, NULL, NULL);
}
static void test_ppo_losses(void) {
    enum { N = 24 };
    float lp[N], old[N], a[N], d[N], num[N], v[N], vold[N], ret[N], dv[N], cf, akl;
    rlhf_rng rng;
    int i, n_clipped = 0, n_vclipped = 0;
    const float eps = 0.2f, h = 1e-3f;
    rlhf_rng_seed(&rng, 61);
    for (i = 0; i < N; i++) {
        float lr;
        do lr = (rlhf_rng_float(&rng) - 0.5f) * 1.2f; /* log-ratio in (-0.6, 0.6): both sides of the clip */
        while (fabsf(expf(lr) - 0.8f) < 0.02f || fabsf(expf(lr) - 1.2f) < 0.02f);
        old[i] = -1.0f - 2.0f * rlhf_rng_float(&rng);
        lp[i] = old[i] + lr;
        a[i] = (rlhf_rng_float(&rng) - 0.5f) * 4.0f;
        vold[i] = rlhf_rng_normal(&rng);
        do v[i] = vold[i] + (rlhf_rng_float(&rng) - 0.5f) * 1.0f;
        while (fabsf(fabsf(v[i] - vold[i]) - eps) < 0.02f);
        ret[i] = rlhf_rng_normal(&rng);
    }
    rlhf_ppo_policy_loss(lp, old, a, N, eps, d, &cf, &akl);
    for (i = 0; i < N; i++) {
        float keep = lp[i], p1, m1;
        lp[i] = keep + h; p1 = ppo_pl_at(lp, old, a, N, eps);
        lp[i] = keep - h; m1 = ppo_pl_at(lp, old, a, N, eps);
        lp[i] = keep;
        num[i] = (p1 - m1) / (2 * h);
        n_clipped += d[i] == 0.0f;
    }
    close_enough("clipped surrogate d/dlogp (finite differences)", d, num, N, 2e-4, 1e-2);
    CHECK(n_clipped > 2 && n_clipped < N - 2 && fabsf(cf - (float)n_clipped / N) < 1e-6f); /* both branches exercised */
    {   /* approxkl by its definition */
        double s = 0;
        for (i = 0; i < N; i++) s += 0.5 * (double)(lp[i] - old[i]) * (lp[i] - old[i]);
        CHECK(fabs(akl - s / N) < 1e-6);
    }
    rlhf_ppo_value_loss(v, vold, ret, N, eps, dv, &cf);
    for (i = 0; i < N; i++) {
        float keep = v[i], p1, m1;
        v[i] = keep + h; p1 = rlhf_ppo_value_loss(v, vold, ret, N, eps, NULL, NULL);
        v[i] = keep - h; m1 = rlhf_ppo_value_loss(v, vold, ret, N, eps, NULL, NULL);
        v[i] = keep;
        num[i] = (p1 - m1) / (2 * h);
        n_vclipped += fabsf(v[i] - vold[i]) > eps && dv[i] == 0.0f;
    }
    close_enough("clipped value loss d/dv (finite differences)", dv, num, N, 2e-4, 1e-2);
    CHECK(n_vclipped > 0 && cf > 0.0f && cf < 1.0f);
    {   /* the reward path: r_t = -beta KL_t (+ score at the end); d r_t / d logp_t by differences */
        float rw[N], kl[N], rp[N], rm[N], beta = 0.3f, score = 1.5f;
        int est;
        for (est = 0; est < 2; est++) {
            rlhf_kl_estimator e = est ? RLHF_KL_K3 : RLHF_KL_K1;
            rlhf_ppo_rewards(lp, old, N, score, beta, e, rw, kl);
            for (i = 0; i < N; i++) {
                float keep = lp[i], want = est ? -beta * (1.0f - expf(old[i] - lp[i])) : -beta;
                lp[i] = keep + h; rlhf_ppo_rewards(lp, old, N, score, beta, e, rp, NULL);
                lp[i] = keep - h; rlhf_ppo_rewards(lp, old, N, score, beta, e, rm, NULL);
                lp[i] = keep;
                num[i] = (rp[i] - rm[i]) / (2 * h);
                d[i] = want;
                if (est) CHECK(kl[i] >= 0.0f); /* k3 is never negative */
                else CHECK(kl[i] == lp[i] - old[i]);
            }
            close_enough(est ? "k3 reward path d r/d logp" : "k1 reward path d r/d logp", num, d, N, 1e-3, 1e-2);
            CHECK(fabsf(rw[N - 1] - (-beta * kl[N - 1] + score)) < 1e-6f && fabsf(rw[0] + beta * kl[0]) < 1e-6f);
        }
    }
}

/* The KV cache with left-padded prompts: each sequence decodes as it would
   alone, and the sampler's log-probs equal the log-prob pass's over the
   whole padded sequences (what PPO's rollout and learning phases each see). */
static void test_ppo_padded_generation(void) {
    rlhf_config cfg = tiny_config();
    rlhf_model *m = NULL;
    rlhf_kv_cache *c = NULL, *c1 = NULL;
    rlhf_rng rng;
    enum { N = 3, P = 6, R = 5, T = P + R };
    int plen[N] = {6, 2, 4}, npad[N], prompts[N * P], seqs[N * T], tg[N * T], doc[N * T], s, i, tok[N];
    float logits[N * 29], one[29], gen_lp[N * R], lp[N * T], temp = 0.8f;
    rlhf_rng_seed(&rng, 71);
    CHECK_OK(rlhf_model_create(&m, &cfg, 71));
    if (!m) return;
    spread_params(m, &rng);
    CHECK_OK(rlhf_kv_cache_create(&c, m, N, T));
    CHECK_OK(rlhf_kv_cache_create(&c1, m, 1, T));
    for (s = 0; s < N; s++) {
        npad[s] = P - plen[s];
        for (i = 0; i < P; i++) prompts[s * P + i] = i < npad[s] ? 28 : (int)(rlhf_rng_u64(&rng) % 27);
    }
    CHECK_OK(rlhf_model_prefill_padded(m, c, prompts, npad, P, logits));
    for (s = 0; s < N; s++) memcpy(seqs + s * T, prompts + s * P, P * sizeof(int));
    for (i = 0; i < R; i++) {
        for (s = 0; s < N; s++) {
            const float *l = logits + s * 29;
            double sum = 0;
            float mx = -INFINITY;
            int v;
            tok[s] = (int)(rlhf_rng_u64(&rng) % 29);
            for (v = 0; v < 29; v++) mx = l[v] / temp > mx ? l[v] / temp : mx;
            for (v = 0; v < 29; v++) sum += exp(l[v] / temp - mx);
            gen_lp[s * R + i] = l[tok[s]] / temp - mx - (float)log(sum);
            seqs[s * T + P + i] = tok[s];
        }
        if (i + 1 < R) CHECK_OK(rlhf_model_decode(m, c, tok, logits));
    }
    /* each sequence alone, unpadded: the same next-token logits at the end */
    for (s = 0; s < N; s++) {
        int k;
        rlhf_kv_cache_reset(c1);
        CHECK_OK(rlhf_model_prefill(m, c1, seqs + s * T + npad[s], plen[s], one));
        for (k = 0; k + 1 < R; k++) CHECK_OK(rlhf_model_decode(m, c1, seqs + s * T + P + k, one));
        /* logits after the last fed token: compare with a fresh padded decode state is not kept,
           so compare the log-prob of the last sampled token instead */
        {
            double sum = 0;
            float mx = -INFINITY, want;
            int v, a = seqs[s * T + P + R - 1];
            for (v = 0; v < 29; v++) mx = one[v] / temp > mx ? one[v] / temp : mx;
            for (v = 0; v < 29; v++) sum += exp(one[v] / temp - mx);
            want = one[a] / temp - mx - (float)log(sum);
            close_enough("padded decode vs alone (last log-prob)", &gen_lp[s * R + R - 1], &want, 1, 1e-5, 1e-4);
        }
    }
    /* the log-prob pass over the padded sequences */
    for (s = 0; s < N; s++)
        for (i = 0; i < T; i++) tg[s * T + i] = i >= P - 1 && i < T - 1 ? seqs[s * T + i + 1] : -1;
    rlhf_doc_left_pad(doc, npad, N, T);
    CHECK_OK(rlhf_model_logprobs(m, seqs, tg, doc, N, T, temp, lp, NULL, 0));
    for (s = 0; s < N; s++) {
        float got[R];
        for (i = 0; i < R; i++) got[i] = lp[s * T + P - 1 + i];
        close_enough("sampler log-probs vs log-prob pass", got, gen_lp + s * R, R, 1e-5, 1e-4);
    }
    rlhf_kv_cache_free(c);
    rlhf_kv_cache_free(c1);
    rlhf_model_free(m);
}

/* d/dlogits of the log-prob pass (logp and entropy) by finite differences
   through the whole model */
static void test_fd_logprobs(void) {
    rlhf_config cfg = tiny_config();
    rlhf_model *m;
    rlhf_rng rng;
    enum { B = 2, T = 6 };
    int x[B * T], tg[B * T], i, probes = 0;
    float lp[B * T], ent[B * T], wl[B * T], we[B * T], ana[64 * 4], num[64 * 4];
    const float temp = 0.7f;
    rlhf_rng_seed(&rng, 81);
    CHECK_OK(rlhf_model_create(&m, &cfg, 81));
    if (!m) return;
    spread_params(m, &rng);
    random_tokens(x, B * T, cfg.vocab_size, &rng);
    random_tokens(tg, B * T, cfg.vocab_size, &rng);
    tg[0] = tg[7] = -1;
    fill_uniform(wl, B * T, &rng, -1, 1);
    fill_uniform(we, B * T, &rng, -1, 1);
    CHECK_OK(rlhf_model_logprobs(m, x, tg, NULL, B, T, temp, lp, ent, 1));
    CHECK_OK(rlhf_model_zero_grad(m));
    CHECK_OK(rlhf_model_backward_logprobs(m, wl, we));
    for (i = 0; i < rlhf_model_num_tensors(m); i++) {
        rlhf_tensor_info t;
        size_t picks[4], k;
        rlhf_model_tensor(m, i, &t);
        picks[0] = 0; picks[1] = t.numel - 1; picks[2] = t.numel / 3; picks[3] = (t.numel * 7) / 11;
        for (k = 0; k < 4; k++) {
            float keep = t.data[picks[k]];
            double sp = 0, sm = 0;
            int j;
            const float h = 1e-2f;
            t.data[picks[k]] = keep + h;
            rlhf_model_logprobs(m, x, tg, NULL, B, T, temp, lp, ent, 0);
            for (j = 0; j < B * T; j++) sp += wl[j] * lp[j] + we[j] * ent[j];
            t.data[picks[k]] = keep - h;
            rlhf_model_logprobs(m, x, tg, NULL, B, T, temp, lp, ent, 0);
            for (j = 0; j < B * T; j++) sm += wl[j] * lp[j] + we[j] * ent[j];
            t.data[picks[k]] = keep;
            num[probes] = (float)((sp - sm) / (2 * h));
            ana[probes] = t.grad[picks[k]];
            probes++;
        }
    }
    close_enough("log-prob + entropy pass d/dparam (finite differences)", ana, num, (size_t)probes, 2e-3, 2e-2);
    CHECK(lp[0] == 0.0f && ent[7] == 0.0f); /* rows without a target */
    rlhf_model_free(m);
}

/* A task whose reward is a known function of the response: how often the
   token "good" appears. */
typedef struct { int good; } count_task;
static float count_good(void *user, const int *prompt, int n_prompt, const int *response, int n_response) {
    const count_task *ct = (const count_task *)user;
    int i, c = 0;
    (void)prompt; (void)n_prompt;
    for (i = 0; i < n_response; i++) c += response[i] == ct->good;
    return (float)c;
}
typedef struct { rlhf_tokenizer *t; rlhf_model *policy, *ref, *critic; rlhf_dataset *prompts; rlhf_ppo *ppo; count_task task; } ppo_world;
static int ppo_world_make(ppo_world *w, const rlhf_ppo_config *cfg) {
    rlhf_error e;
    size_t n;
    int id[4];
    memset(w, 0, sizeof *w);
    w->t = world_tokenizer();
    if (!w->t) return 0;
    CHECK_OK(rlhf_tokenizer_encode(w->t, " good", 5, id, 4, &n));
    w->task.good = id[0];
    CHECK(n == 1);
    w->policy = world_model(w->t, 91);
    w->ref = world_model(w->t, 91);
    w->critic = world_model(w->t, 92);
    if (!w->policy || !w->ref || !w->critic) return 0;
    CHECK_OK(rlhf_model_add_score_head(w->critic, 0.0f, 1));
    {
        static const char prompts[] = "{\"prompt\": \"rate this:\"}\n{\"prompt\": \"answer: yes\"}\n{\"prompt\": \"repeat after me: dog\"}\n"
                                      "{\"messages\": [{\"role\": \"user\", \"content\": \"one two three\"}]}\n";
        write_file("build/test_ppo_prompts.jsonl", prompts, strlen(prompts));
    }
    CHECK_OK(rlhf_dataset_load(&w->prompts, "build/test_ppo_prompts.jsonl", RLHF_DATA_PROMPTS, NULL, &e));
    if (!w->prompts) return 0;
    CHECK_OK(ppo_create_with(&w->ppo, w->policy, w->ref, w->critic, NULL, count_good, &w->task, w->t, w->prompts, NULL, cfg, &e));
    if (!w->ppo) fprintf(stderr, "  %s\n", e.message);
    return w->ppo != NULL;
}
static void ppo_world_free(ppo_world *w) {
    rlhf_ppo_free(w->ppo);
    rlhf_model_free(w->policy); rlhf_model_free(w->ref); rlhf_model_free(w->critic);
    rlhf_dataset_free(w->prompts);
    rlhf_tokenizer_free(w->t);
}
static rlhf_ppo_config ppo_test_config(void) {
    rlhf_ppo_config c = rlhf_ppo_config_default();
    c.batch_size = 16;
    c.mini_batch = 8;
    c.ppo_epochs = 2;
    c.max_new_tokens = 8;
    c.sampling.temperature = 1.0f;
    c.penalize_missing_eos = 0;
    c.kl_coef = 0.02f;
    c.policy_opt.lr = 3e-3f;
    c.critic_opt.lr = 3e-3f;
    c.log_samples = 0;
    c.seed = 5;
    return c;
}
static void test_ppo_learns(void) {
    enum { NIT = 40 };
    ppo_world w;
    rlhf_ppo_config c = ppo_test_config();
    rlhf_ppo_stats st;
    rlhf_error e;
    int it;
    float first = 0, last = 0, kl_last = 0;
    /* beta 0.2: the KL-regularised optimum is interior. Per token, pi*(a) is
       proportional to pi_ref(a) exp(r(a) / beta); with pi_ref(good) ~ 1/300
       that is pi*(good) ~ e^5/300 / (1 + e^5/300) ~ 0.33: a count of ~2.6 in 8
       tokens at a KL of ~10, far below the ~45 of a policy that always says
       "good". */
    c.batch_size = 32;
    c.kl_coef = 0.2f;
    c.policy_opt.lr = 1e-2f;
    if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
    printf("    ppo curve (iteration: score / KL):");
    for (it = 0; it < NIT; it++) {
        CHECK_OK(rlhf_ppo_step(w.ppo, &st, &e));
        if (it < 3) first += st.score / 3;
        if (it >= NIT - 3) last += st.score / 3, kl_last += st.kl / 3;
        if (it % 4 == 0 || it == NIT - 1) printf(" %d: %.2f / %.2f%s", it + 1, (double)st.score, (double)st.kl, it == NIT - 1 ? "\n" : ",");
    }
    printf("    ppo (beta 0.2): mean count of \"good\" in 8 tokens %.2f -> %.2f in %d iterations, KL %.2f, %.3f s/iteration (gen %.3f, score %.3f, learn %.3f)\n",
           (double)first, (double)last, NIT, (double)kl_last, st.seconds_generate + st.seconds_score + st.seconds_learn, st.seconds_generate,
           st.seconds_score, st.seconds_learn);
    CHECK(last > first + 1.0f && last > 4.0f * (first + 0.05f));   /* the reward rises well above the start */
    CHECK(kl_last > 0.0f && kl_last < 25.0f && st.skipped_updates == 0); /* and KL stays far from the collapsed ~45 */
    {   /* the trace of one episode */
        char buf[8192];
        size_t nb;
        rlhf_ppo_trace_row rows[16];
        int n;
        CHECK_OK(rlhf_ppo_trace(w.ppo, 0, rows, 16, &n));
        CHECK(n >= 1 && n <= 8 && fabsf(rows[n - 1].ret - (rows[n - 1].advantage + rows[n - 1].value)) < 1e-5f);
        CHECK(fabsf(rows[0].kl - (rows[0].logp - rows[0].ref_logp)) < 1e-6f);
        CHECK_OK(rlhf_ppo_trace_text(w.ppo, 0, buf, sizeof buf, &nb));
        CHECK(strstr(buf, "delta_t") && strstr(buf, "A_t") && strlen(buf) == nb);
    }
    ppo_world_free(&w);
    /* a very large beta keeps the policy at the reference: the mean KL of the
       last 5 of 15 iterations at most a tenth of beta 0.2's ~14 above (each
       iteration's KL is a sampled estimate from 32 replies that wanders between
       0.2 and 1.0 under clang and between -0.04 and 0.6 under the other builds
       of CI: a single iteration under 0.5 failed by chance) */
    c.kl_coef = 5.0f;
    if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
    kl_last = 0;
    for (it = 0; it < 15; it++) {
        CHECK_OK(rlhf_ppo_step(w.ppo, &st, &e));
        if (it >= 10) kl_last += st.kl / 5;
    }
    printf("    ppo (beta 5): count %.2f, KL %.3f after 15 iterations (%.3f over the last 5)\n", (double)st.score,
           (double)st.kl, (double)kl_last);
    CHECK(fabsf(kl_last) < 1.5f);
    ppo_world_free(&w);
}

/* GRPO (with the DAPO and Dr. GRPO variants) and RLOO on the same task as
   ppo_learns: no critic, G replies per prompt. Each moves the count of
   "good" well up; a very large beta keeps the policy at the reference. */
static rlhf_ppo_config group_test_config(rlhf_estimator est, int variant) {
    rlhf_ppo_config c = ppo_test_config();
    c.estimator = est;
    c.group_size = 4;
    c.batch_size = 32;
    c.mini_batch = 16;
    c.ppo_epochs = 1;
    c.kl_coef = 0.2f;
    c.policy_opt.lr = 1e-2f;
    if (variant == 1) { c.loss_agg = RLHF_AGG_DAPO; c.cliprange_high = 0.28f; c.ppo_epochs = 2; }
    if (variant == 2) { c.loss_agg = RLHF_AGG_CONSTANT; c.scale_rewards = RLHF_SCALE_NONE; c.kl_coef = 0.0f; }
    if (variant == 3) c.scale_rewards = RLHF_SCALE_BATCH;
    return c;
}
static void test_group_learns(void) {
    static const struct { rlhf_estimator est; int variant; const char *name; } RUNS[5] = {
        {RLHF_EST_GRPO, 0, "grpo"}, {RLHF_EST_GRPO, 1, "grpo dapo-loss clip-higher"},
        {RLHF_EST_GRPO, 2, "dr-grpo beta 0, no reference"}, {RLHF_EST_GRPO, 3, "grpo scale batch"},
        {RLHF_EST_RLOO, 0, "rloo"}};
    enum { NIT = 30 };
    int k, it;
    for (k = 0; k < 5; k++) {
        ppo_world w;
        rlhf_ppo_config c = group_test_config(RUNS[k].est, RUNS[k].variant);
        rlhf_ppo_stats st;
        rlhf_error e;
        float first = 0, last = 0, kl_last = 0;
        if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
        if (c.kl_coef == 0.0f) { /* beta 0 needs no reference: a trainer without one learns the same */
            rlhf_ppo_free(w.ppo);
            w.ppo = NULL;
            CHECK_OK(ppo_create_with(&w.ppo, w.policy, NULL, NULL, NULL, count_good, &w.task, w.t, w.prompts, NULL, &c, &e));
            if (!w.ppo) { ppo_world_free(&w); return; }
        }
        for (it = 0; it < NIT; it++) {
            CHECK_OK(rlhf_ppo_step(w.ppo, &st, &e));
            if (it < 3) first += st.score / 3;
            if (it >= NIT - 3) last += st.score / 3, kl_last += st.kl / 3;
        }
        printf("    %-30s count of \"good\" %.2f -> %.2f in %d iterations, KL %.2f, zero-std groups %.2f, %.3f s/iteration\n",
               RUNS[k].name, (double)first, (double)last, NIT, (double)kl_last, (double)st.frac_reward_zero_std,
               st.seconds_generate + st.seconds_score + st.seconds_learn);
        CHECK(last > first + 1.0f && last > 3.0f * (first + 0.05f));
        CHECK(st.skipped_updates == 0 && isnan(st.value_loss) && st.reward_std >= 0.0f);
        CHECK(st.frac_reward_zero_std >= 0.0f && st.frac_reward_zero_std <= 1.0f);
        ppo_world_free(&w);
    }
    for (k = 0; k < 2; k++) { /* a very large beta keeps either at the reference */
        ppo_world w;
        rlhf_ppo_config c = group_test_config(k ? RLHF_EST_RLOO : RLHF_EST_GRPO, 0);
        rlhf_ppo_stats st;
        rlhf_error e;
        c.kl_coef = 5.0f;
        if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
        for (it = 0; it < 15; it++) CHECK_OK(rlhf_ppo_step(w.ppo, &st, &e));
        printf("    %s (beta 5): count %.2f, KL %.3f after 15 iterations\n", k ? "rloo" : "grpo", (double)st.score, (double)st.kl);
        CHECK(fabsf(st.kl) < 0.5f);
        ppo_world_free(&w);
    }
}

/* Each trainer's policy gradient (PPO's clipped surrogate, GRPO's with
   k3 and each aggregation, RLOO's sequence ratio) by finite differences
   on the world model: one rollout, evaluated; then the policy moved off
   pi_old so that ratios spread and some are clipped; the loss over the
   whole rollout as one minibatch, its gradient from the trainer's own
   4a + 4c, against central differences of the same loss. */
/* Central differences (h = 1e-2) of loss(ctx) in two entries (the last, and
   the one at frac of the way) of every every-th tensor of m (counted from
   offset; the last tensor always), beside the gradient already in m's
   grads: ana and num (room for cap) get the pairs; returns how many. */
static int fd_probes(rlhf_model *m, int every, int offset, double frac, double (*loss)(void *), void *ctx, float *ana,
                     float *num, int cap) {
    int i, probes = 0;
    for (i = 0; i < rlhf_model_num_tensors(m) && probes + 2 <= cap; i++) {
        rlhf_tensor_info ti;
        size_t picks[2], q;
        rlhf_model_tensor(m, i, &ti);
        if ((i + offset) % every != 0 && i != rlhf_model_num_tensors(m) - 1) continue;
        picks[0] = ti.numel - 1; picks[1] = (size_t)((double)ti.numel * frac);
        for (q = 0; q < 2; q++) ana[probes + (int)q] = ti.grad[picks[q]];
        for (q = 0; q < 2; q++) {
            float keep = ti.data[picks[q]];
            double lp, lm;
            const float h = 1e-2f;
            ti.data[picks[q]] = keep + h;
            lp = loss(ctx);
            ti.data[picks[q]] = keep - h;
            lm = loss(ctx);
            ti.data[picks[q]] = keep;
            num[probes++] = (float)((lp - lm) / (2 * h));
        }
    }
    return probes;
}

static float varied_score(void *user, const int *prompt, int n_prompt, const int *response, int n_response) {
    (void)user; (void)prompt; (void)n_prompt;
    return (float)(response[0] % 7) * 0.3f + 0.1f * (float)n_response;
}
static double group_fd_loss(rlhf_ppo *p, const size_t *rows, int do_grad) {
    rlhf__learn_sums sums;
    size_t nt = 0;
    double mr;
    float loss = NAN, cf, akl;
    int finite;
    memset(&sums, 0, sizeof sums);
    rlhf__ppo_fill(p, rows, p->B);
    CHECK_OK(rlhf__ppo_policy_forward(p, rows, p->B, &sums, &nt, &mr));
    if (do_grad) CHECK_OK(rlhf__ppo_policy_grad(p, rows, p->B, nt, &sums, &loss, &cf, &akl, &finite));
    else loss = rlhf__ppo_surrogate(p, rows, p->B, nt, &cf, &akl);
    return loss;
}
static double group_fd_eval(void *ppo) {
    static const size_t rows[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    return group_fd_loss((rlhf_ppo *)ppo, rows, 0);
}
static void test_fd_group(void) {
    static const struct { rlhf_estimator est; rlhf_loss_agg agg; float beta, eps_hi; const char *name; } CASES[6] = {
        {RLHF_EST_GAE, RLHF_AGG_SEQUENCE, 0.1f, 0.0f, "ppo"}, {RLHF_EST_GRPO, RLHF_AGG_SEQUENCE, 0.3f, 0.3f, "grpo"},
        {RLHF_EST_GRPO, RLHF_AGG_TOKEN, 0.3f, 0.0f, "grpo bnpo-loss"},
        {RLHF_EST_GRPO, RLHF_AGG_CONSTANT, 0.0f, 0.0f, "dr-grpo"}, {RLHF_EST_RLOO, RLHF_AGG_SEQUENCE, 0.3f, 0.3f, "rloo"},
        {RLHF_EST_GRPO, RLHF_AGG_DAPO, 0.3f, 0.28f, "grpo dapo-loss"}};
    int c;
    for (c = 0; c < 6; c++) {
        ppo_world w;
        rlhf_ppo_config cfg = group_test_config(CASES[c].est, 0);
        size_t rows[8];
        double tokens = 0.0;
        float ana[128], num[128];
        int i, probes = 0, clipped = 0;
        rlhf_rng rng;
        char what[96];
        if (CASES[c].est == RLHF_EST_GAE) cfg.group_size = 1;
        cfg.batch_size = cfg.mini_batch = 8;
        cfg.kl_coef = CASES[c].beta;
        cfg.loss_agg = CASES[c].agg;
        cfg.cliprange_high = CASES[c].eps_hi;
        if (!ppo_world_make(&w, &cfg)) { ppo_world_free(&w); return; }
        w.ppo->cfg.score_fn = varied_score; /* rewards that differ within every group */
        /* the rollout, as rlhf_ppo_step begins it; then theta moves away from pi_old */
        CHECK_OK(rlhf__ppo_rollout(w.ppo, &tokens));
        CHECK_OK(rlhf__ppo_evaluate(w.ppo));
        w.ppo->ro_tokens = rlhf__ppo_advantages(w.ppo); /* as rlhf_ppo_step keeps it (DAPO's normaliser) */
        rlhf_rng_seed(&rng, 31 + (uint64_t)c);
        for (i = 0; i < rlhf_model_num_tensors(w.policy); i++) {
            rlhf_tensor_info ti;
            size_t j;
            rlhf_model_tensor(w.policy, i, &ti);
            for (j = 0; j < ti.numel; j++) ti.data[j] += 0.05f * rlhf_rng_normal(&rng);
        }
        for (i = 0; i < 8; i++) rows[i] = (size_t)i;
        group_fd_loss(w.ppo, rows, 1);
        for (i = 0; i < 8; i++) {
            int t;
            for (t = 0; t < w.ppo->ro.rlen[i]; t++) clipped += w.ppo->ro.clipped[rlhf__tok(w.ppo, i, t)];
        }
        probes = fd_probes(w.policy, 2, c, 5.0 / 9.0, group_fd_eval, w.ppo, ana, num, 128);
        snprintf(what, sizeof what, "%s policy loss d/dparam (finite differences; %d tokens clipped)", CASES[c].name, clipped);
        close_enough(what, ana, num, (size_t)probes, 2e-3, 3e-2);
        printf("    %-15s %d probes, %d of the rollout's tokens clipped\n", CASES[c].name, probes, clipped);
        CHECK(clipped > 0 && probes >= 20);
        ppo_world_free(&w);
    }
}

/* Resume: N iterations straight equal N/2, save, load into a fresh trainer,
   N/2 more, bit for bit (policy, critic, EMA, KL coefficient). */
static void test_ppo_resume(void) {
    ppo_world a, b;
    rlhf_ppo_config c = ppo_test_config();
    rlhf_ppo_stats st;
    rlhf_error e;
    int it;
    c.adaptive_kl = 1;
    c.kl_target = 0.5f;
    c.kl_horizon = 100.0f;
    c.ema_decay = 0.9f;
    c.entropy_coef = 0.01f;
    c.total_iterations = 10; /* linear annealing, which depends on the restored iteration */
    if (!ppo_world_make(&a, &c)) { ppo_world_free(&a); return; }
    for (it = 0; it < 6; it++) CHECK_OK(rlhf_ppo_step(a.ppo, &st, &e));
    CHECK(fabsf(st.lr - 0.5f * c.policy_opt.lr) < 1e-9f); /* iteration 6 of 10: lr * (1 - 5/10) */
    if (!ppo_world_make(&b, &c)) { ppo_world_free(&a); ppo_world_free(&b); return; }
    for (it = 0; it < 3; it++) CHECK_OK(rlhf_ppo_step(b.ppo, &st, &e));
    CHECK_OK(rlhf_ppo_save(b.ppo, "build", &e));
    ppo_world_free(&b);
    if (!ppo_world_make(&b, &c)) { ppo_world_free(&a); ppo_world_free(&b); return; }
    CHECK_OK(rlhf_ppo_load(b.ppo, "build", &e));
    if (e.message[0]) fprintf(stderr, "  %s\n", e.message);
    for (it = 0; it < 3; it++) CHECK_OK(rlhf_ppo_step(b.ppo, &st, &e));
    CHECK(memcmp(a.policy->param_mem, b.policy->param_mem, a.policy->num_params * sizeof(float)) == 0);
    CHECK(memcmp(a.critic->param_mem, b.critic->param_mem, a.critic->num_params * sizeof(float)) == 0);
    CHECK(memcmp(rlhf_ppo_ema(a.ppo)->param_mem, rlhf_ppo_ema(b.ppo)->param_mem, a.policy->num_params * sizeof(float)) == 0);
    CHECK(rlhf_ppo_kl_coef(a.ppo) == rlhf_ppo_kl_coef(b.ppo) && rlhf_ppo_kl_coef(a.ppo) != c.kl_coef);
    /* a different reference is refused by its fingerprint */
    a.ref->param_mem[0] += 1.0f;
    ppo_world_free(&b);
    {
        rlhf_ppo *q = NULL;
        CHECK_OK(ppo_create_with(&q, a.policy, a.ref, a.critic, NULL, count_good, &a.task, a.t, a.prompts, NULL, &c, &e));
        if (q) CHECK(rlhf_ppo_load(q, "build", &e) == RLHF_ERR_INVALID_ARGUMENT && strstr(e.message, "reference") != NULL);
        rlhf_ppo_free(q);
    }
    ppo_world_free(&a);
}


/* GRPO and RLOO resume bit for bit too (no critic file: none is saved);
   a run is refused by a trainer of the other algorithm. */
static void test_group_resume(void) {
    int k, it;
    for (k = 0; k < 2; k++) {
        ppo_world a, b;
        rlhf_ppo_config c = group_test_config(k ? RLHF_EST_RLOO : RLHF_EST_GRPO, k ? 0 : 1);
        rlhf_ppo_stats st;
        rlhf_error e;
        const char *dir = k ? "build/rloo_resume" : "build/grpo_resume";
        c.ema_decay = 0.9f;
        c.total_iterations = 10;
        c.ppo_epochs = 2;
        c.adaptive_kl = 1;
        mkdir(dir, 0755);
        if (!ppo_world_make(&a, &c)) { ppo_world_free(&a); return; }
        for (it = 0; it < 4; it++) CHECK_OK(rlhf_ppo_step(a.ppo, &st, &e));
        if (!ppo_world_make(&b, &c)) { ppo_world_free(&a); ppo_world_free(&b); return; }
        for (it = 0; it < 2; it++) CHECK_OK(rlhf_ppo_step(b.ppo, &st, &e));
        CHECK_OK(rlhf_ppo_save(b.ppo, dir, &e));
        ppo_world_free(&b);
        if (!ppo_world_make(&b, &c)) { ppo_world_free(&a); ppo_world_free(&b); return; }
        CHECK_OK(rlhf_ppo_load(b.ppo, dir, &e));
        if (e.message[0]) fprintf(stderr, "  %s\n", e.message);
        for (it = 0; it < 2; it++) CHECK_OK(rlhf_ppo_step(b.ppo, &st, &e));
        CHECK(memcmp(a.policy->param_mem, b.policy->param_mem, a.policy->num_params * sizeof(float)) == 0);
        CHECK(memcmp(rlhf_ppo_ema(a.ppo)->param_mem, rlhf_ppo_ema(b.ppo)->param_mem, a.policy->num_params * sizeof(float)) == 0);
        CHECK(rlhf_ppo_kl_coef(a.ppo) == rlhf_ppo_kl_coef(b.ppo));
        {   /* the trace names the estimator's equations: no critic, the group's advantage */
            char buf[8192];
            size_t nb;
            CHECK_OK(rlhf_ppo_trace_text(b.ppo, 0, buf, sizeof buf, &nb));
            CHECK(strstr(buf, k ? "leave-one-out" : "group advantage") != NULL && strstr(buf, "no critic") != NULL);
        }
        ppo_world_free(&b);
        {   /* the other algorithm, or PPO, refuses this run */
            rlhf_ppo *q = NULL;
            rlhf_ppo_config o = group_test_config(k ? RLHF_EST_GRPO : RLHF_EST_RLOO, 0);
            o.ema_decay = 0.9f;
            CHECK_OK(ppo_create_with(&q, a.policy, a.ref, a.critic, NULL, count_good, &a.task, a.t, a.prompts, NULL, &o, &e));
            if (q) CHECK(rlhf_ppo_load(q, dir, &e) == RLHF_ERR_INVALID_ARGUMENT && strstr(e.message, k ? "rloo run" : "grpo run"));
            rlhf_ppo_free(q);
        }
        if (k == 1) { /* refusals, each with its reason */
            static const struct { int est, G, batch, no_ref, no_critic; float beta; const char *why; } BAD[6] = {
                {RLHF_EST_GRPO, 1, 32, 0, 1, 0.1f, "group_size >= 2"}, {RLHF_EST_RLOO, 3, 32, 0, 1, 0.1f, "multiple"},
                {RLHF_EST_GRPO, 4, 32, 1, 1, 0.1f, "no reference"}, {RLHF_EST_GAE, 1, 32, 0, 1, 0.1f, "needs a critic"},
                {RLHF_EST_GAE, 4, 32, 0, 0, 0.1f, "group estimator"}, {7, 4, 32, 0, 1, 0.1f, "unknown estimator"}};
            int q;
            for (q = 0; q < 6; q++) {
                rlhf_ppo *bad = NULL;
                rlhf_ppo_config o = group_test_config(RLHF_EST_GRPO, 0);
                o.estimator = (rlhf_estimator)BAD[q].est, o.group_size = BAD[q].G, o.batch_size = BAD[q].batch;
                o.kl_coef = BAD[q].beta;
                CHECK(ppo_create_with(&bad, a.policy, BAD[q].no_ref ? NULL : a.ref, BAD[q].no_critic ? NULL : a.critic, NULL,
                                      count_good, &a.task, a.t, a.prompts, NULL, &o, &e) == RLHF_ERR_INVALID_ARGUMENT);
                CHECK(bad == NULL && strstr(e.message, BAD[q].why) != NULL);
                if (!strstr(e.message, BAD[q].why)) fprintf(stderr, "  case %d: %s\n", q, e.message);
            }
        }
        ppo_world_free(&a);
    }
}

/* rlhf_ppo_save is journaled: what a save killed before its commit point
   left is removed, one killed after it is finished, by the next load (or
   save); a trainer whose weights are not finite is not saved.
   tests/test_crash.c kills real saves at random moments. */
static int ppo_leftovers(void) {
    return file_exists("build/policy.safetensors.next") + file_exists("build/critic.safetensors.next") +
           file_exists("build/ema.safetensors.next") + file_exists("build/ppo.commit") + file_exists("build/ppo.commit.tmp");
}
static void test_ppo_save_journal(void) {
    ppo_world w, v;
    rlhf_ppo_config c = ppo_test_config();
    rlhf_error e;
    unsigned char *pol1 = NULL, *cri1 = NULL;
    size_t n_pol1 = 0, n_cri1 = 0;
    float keep;
    c.batch_size = 4; c.mini_batch = 4; c.ppo_epochs = 1; c.max_new_tokens = 4;
    c.ema_decay = 0.9f; /* three files a save */
    memset(&v, 0, sizeof v);
    if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
    CHECK_OK(rlhf_ppo_step(w.ppo, NULL, &e));
    CHECK_OK(rlhf_ppo_save(w.ppo, "build", &e));
    CHECK(ppo_leftovers() == 0);
    pol1 = read_all("build/policy.safetensors", &n_pol1);
    cri1 = read_all("build/critic.safetensors", &n_cri1);
    if (!pol1 || !cri1) goto done;
    /* killed before its commit point: a cut policy.next, a whole critic.next, half a commit */
    write_file("build/policy.safetensors.next", (const char *)pol1, n_pol1 / 2);
    write_file("build/critic.safetensors.next", (const char *)cri1, n_cri1);
    write_file("build/ppo.commit.tmp", "{\"itera", 7);
    if (!ppo_world_make(&v, &c)) goto done;
    CHECK_OK(rlhf_ppo_load(v.ppo, "build", &e));
    CHECK(v.ppo->iteration == 1 && ppo_leftovers() == 0);
    /* killed after its commit point, between renames: iteration 2's EMA is
       in place, its policy and critic still *.next beside iteration 1's */
    CHECK_OK(rlhf_ppo_step(w.ppo, NULL, &e));
    CHECK_OK(rlhf_ppo_save(w.ppo, "build", &e));
    CHECK(rename("build/policy.safetensors", "build/policy.safetensors.next") == 0);
    CHECK(rename("build/critic.safetensors", "build/critic.safetensors.next") == 0);
    write_file("build/policy.safetensors", (const char *)pol1, n_pol1);
    write_file("build/critic.safetensors", (const char *)cri1, n_cri1);
    write_file("build/ppo.commit", "{\"iteration\":2}\n", 16);
    ppo_world_free(&v);
    if (!ppo_world_make(&v, &c)) goto done;
    CHECK_OK(rlhf_ppo_load(v.ppo, "build", &e));
    if (e.message[0]) fprintf(stderr, "  %s\n", e.message);
    CHECK(v.ppo->iteration == 2 && ppo_leftovers() == 0);
    CHECK(memcmp(v.policy->param_mem, w.policy->param_mem, w.policy->num_params * sizeof(float)) == 0);
    CHECK(memcmp(v.critic->param_mem, w.critic->param_mem, w.critic->num_params * sizeof(float)) == 0);
    /* a NaN anywhere: no save, the files stay at iteration 2 */
    CHECK_OK(rlhf_ppo_step(w.ppo, NULL, &e));
    keep = w.critic->param_mem[7];
    w.critic->param_mem[7] = NAN;
    CHECK(rlhf_ppo_save(w.ppo, "build", &e) == RLHF_ERR_NON_FINITE);
    CHECK(strstr(e.message, "ppo: build: the weights of the critic are not finite after iteration 3 (") == e.message &&
          strstr(e.message, "checkpoint not written"));
    w.critic->param_mem[7] = keep;
    CHECK(ppo_leftovers() == 0);
    ppo_world_free(&v);
    if (!ppo_world_make(&v, &c)) goto done;
    CHECK_OK(rlhf_ppo_load(v.ppo, "build", &e));
    CHECK(v.ppo->iteration == 2);
done:
    free(pol1);
    free(cri1);
    ppo_world_free(&v);
    ppo_world_free(&w);
}

/* PPO-ptx learns the pretraining text alongside; the ratio guard skips and
   counts minibatches. */
/* log lines that contain a needle, counted */
typedef struct { const char *needle; int hits; char metric[64]; } log_watch;
static void watch_log(void *user, rlhf_log_level level, const char *msg) {
    log_watch *w = (log_watch *)user;
    if (level == RLHF_LOG_WARN && strstr(msg, w->needle)) w->hits++;
}
static void watch_metrics(void *user, const char *json) {
    log_watch *w = (log_watch *)user;
    static const char key[] = "\"val/missing_eos_frac\":";
    const char *at = strstr(json, key);
    if (at) snprintf(w->metric, sizeof w->metric, "%.20s", at + strlen(key));
}

/* Replies cut by the length limit: with max_new_tokens 1 the untrained
   policy's replies almost never end with <|end|>; every iteration warns and
   reports the share in val/missing_eos_frac. */
static void test_ppo_missing_eos(void) {
    ppo_world w;
    rlhf_ppo_config c = ppo_test_config();
    rlhf_ppo_stats st;
    rlhf_ppo *q = NULL;
    rlhf_error e;
    log_watch lw = {"replies ended without <|end|>", 0, ""};
    int it;
    memset(&st, 0, sizeof st);
    if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
    c.max_new_tokens = 1;
    c.log = watch_log, c.log_user = &lw, c.metrics = watch_metrics, c.metrics_user = &lw;
    CHECK_OK(ppo_create_with(&q, w.policy, w.ref, w.critic, NULL, count_good, &w.task, w.t, w.prompts, NULL, &c, &e));
    for (it = 0; q && it < 2; it++) CHECK_OK(rlhf_ppo_step(q, &st, &e));
    printf("    replies without <|end|>: %.2f of them; %d warnings in 2 iterations; metric %s\n", (double)st.missing_eos,
           lw.hits, lw.metric);
    CHECK(st.missing_eos > 0.5f && fabsf(st.missing_eos - (float)(c.batch_size - st.num_eos) / (float)c.batch_size) < 1e-6f);
    CHECK(lw.hits == 2 && fabs(atof(lw.metric) - (double)st.missing_eos) < 1e-6);
    rlhf_ppo_free(q);
    ppo_world_free(&w);
}

/* The guards and the small equations of PPO's iteration, each against a
   value computed here: the missing-EOS penalty as the score; whitened
   rewards (the mean kept) and advantages; the negative-KL warning; the
   adaptive controller's beta after known iterations; the EMA's weights
   after one update; and PPO's bytes on 1 and 2 threads. */
static void ppo_guard_whitening(ppo_world *w) {
    rlhf__rollout *ro = &w->ppo->ro;
    double sum = 0.0, sq = 0.0, mean, sd, worst = 0.0, n = 0.0;
    float *raw = floats((size_t)w->ppo->B * w->ppo->max_new);
    double tokens = 0.0;
    int b, t;
    /* the rewards before whitening, from rlhf_ppo_rewards as the trainer calls it */
    CHECK_OK(rlhf__ppo_rollout(w->ppo, &tokens));
    CHECK_OK(rlhf__ppo_evaluate(w->ppo));
    for (b = 0; b < w->ppo->B; b++) {
        size_t o = rlhf__tok(w->ppo, b, 0);
        float kl[64];
        rlhf_ppo_rewards(ro->logp + o, ro->ref_logp + o, ro->rlen[b], ro->score[b], w->ppo->kl_coef,
                         w->ppo->cfg.kl_estimator, raw + o, kl);
        for (t = 0; t < ro->rlen[b]; t++) sum += raw[o + (size_t)t], n += 1.0;
    }
    mean = sum / n;
    for (b = 0; b < w->ppo->B; b++)
        for (t = 0; t < ro->rlen[b]; t++) sq += (raw[rlhf__tok(w->ppo, b, t)] - mean) * (raw[rlhf__tok(w->ppo, b, t)] - mean);
    sd = sqrt(sq / (n - 1.0) + 1e-8);
    rlhf__ppo_advantages(w->ppo);
    /* r_t <- (r_t - mean) / sd + mean ("N implementation details", item 14) */
    for (b = 0; b < w->ppo->B; b++)
        for (t = 0; t < ro->rlen[b]; t++) {
            size_t o = rlhf__tok(w->ppo, b, t);
            double want = (raw[o] - mean) / sd + mean;
            worst = fmax(worst, fabs(ro->rewards[o] - want));
        }
    CHECK(worst < 1e-5);
    /* A_t whitened: mean 0, std 1 over the rollout's tokens */
    sum = sq = 0.0;
    for (b = 0; b < w->ppo->B; b++)
        for (t = 0; t < ro->rlen[b]; t++) sum += ro->adv_white[rlhf__tok(w->ppo, b, t)];
    for (b = 0; b < w->ppo->B; b++)
        for (t = 0; t < ro->rlen[b]; t++) sq += pow(ro->adv_white[rlhf__tok(w->ppo, b, t)] - sum / n, 2.0);
    CHECK(fabs(sum / n) < 1e-5 && fabs(sqrt(sq / (n - 1.0)) - 1.0) < 1e-3);
    free(raw);
}
static void ppo_guard_negative_kl(ppo_world *w, log_watch *lw) {
    rlhf__rollout *ro = &w->ppo->ro;
    rlhf_ppo_stats st;
    double tokens = 0.0;
    size_t n;
    int b, t;
    /* a reference that gives every sampled token 1 nat more than the policy: KL_t = -1 */
    memset(&st, 0, sizeof st);
    CHECK_OK(rlhf__ppo_rollout(w->ppo, &tokens));
    CHECK_OK(rlhf__ppo_evaluate(w->ppo));
    for (b = 0; b < w->ppo->B; b++)
        for (t = 0; t < ro->rlen[b]; t++) ro->ref_logp[rlhf__tok(w->ppo, b, t)] = ro->logp[rlhf__tok(w->ppo, b, t)] + 1.0f;
    n = rlhf__ppo_advantages(w->ppo);
    lw->hits = 0;
    rlhf__ppo_statistics(w->ppo, n, &st);
    CHECK(st.kl < 0.0f && fabsf(st.kl + st.response_length) < 1e-4f && lw->hits == 1);
}
static void test_ppo_guards(void) {
    ppo_world w;
    rlhf_ppo_config c = ppo_test_config();
    rlhf_ppo_stats st;
    rlhf_error e;
    log_watch lw = {"mean KL is negative", 0, ""};
    float beta, kl;
    int it, b;
    /* 1. the missing-EOS penalty is the score of a reply cut at max_new; the others keep the task's */
    c.penalize_missing_eos = 1, c.missing_eos_penalty = -3.0f, c.max_new_tokens = 2;
    c.whiten_rewards = 1, c.log = watch_log, c.log_user = &lw;
    if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
    CHECK_OK(rlhf_ppo_step(w.ppo, &st, &e));
    for (b = 0; b < w.ppo->B; b++)
        CHECK(w.ppo->ro.has_eos[b] ? w.ppo->ro.score[b] >= 0.0f : w.ppo->ro.score[b] == -3.0f);
    CHECK(st.num_eos < w.ppo->B);
    /* 2. whitening; 3. the negative-KL warning */
    ppo_guard_whitening(&w);
    ppo_guard_negative_kl(&w, &lw);
    ppo_world_free(&w);

    /* 4. the adaptive controller: beta' = beta (1 + clip(KL / target - 1, -0.2, 0.2) B / horizon), by hand */
    c = ppo_test_config();
    c.adaptive_kl = 1, c.kl_target = 0.5f, c.kl_horizon = 40.0f, c.kl_coef = 0.1f;
    c.ema_decay = 0.75f, c.batch_size = c.mini_batch = 8, c.ppo_epochs = 1; /* one update an iteration (5.) */
    if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
    w.ppo->cfg.score_fn = varied_score; /* rewards that move the policy from the first iteration */
    for (it = 0; it < 3; it++) {
        double err;
        beta = rlhf_ppo_kl_coef(w.ppo);
        CHECK_OK(rlhf_ppo_step(w.ppo, &st, &e));
        kl = st.kl;
        err = (double)kl / 0.5 - 1.0;
        err = err < -0.2 ? -0.2 : err > 0.2 ? 0.2 : err;
        CHECK(st.kl_coef == beta && fabs(rlhf_ppo_kl_coef(w.ppo) - beta * (1.0 + err * 8.0 / 40.0)) < 1e-6 * beta);
    }
    {   /* 5. the EMA after one more update: ema' = d ema + (1 - d) theta', every weight */
        size_t np = w.policy->num_params, q;
        float *ema0 = floats(np);
        double worst = 0.0, gap = 0.0;
        memcpy(ema0, rlhf_ppo_ema(w.ppo)->param_mem, np * sizeof(float));
        CHECK_OK(rlhf_ppo_step(w.ppo, &st, &e));
        for (q = 0; q < np; q++)
            worst = fmax(worst, fabs(rlhf_ppo_ema(w.ppo)->param_mem[q] - (0.75 * ema0[q] + 0.25 * w.policy->param_mem[q])));
        for (q = 0; q < np; q++) gap = fmax(gap, fabs(ema0[q] - w.policy->param_mem[q]));
        printf("    ema: %.3g from d ema + (1 - d) theta at most, where ema and theta differ by up to %.3g\n", worst, gap);
        CHECK(worst < 1e-6 && gap > 1e-3 && st.skipped_updates == 0);
        free(ema0);
    }
    ppo_world_free(&w);
}

/* PPO's bytes are the same on 1 thread and on 2 (every sum in a fixed order) */
static void test_ppo_threads(void) {
#ifdef _OPENMP
    ppo_world a, b;
    rlhf_ppo_config c = ppo_test_config();
    rlhf_ppo_stats st;
    rlhf_error e;
    int keep = rlhf_num_threads(), it;
    rlhf_set_num_threads(1, 0);
    if (!ppo_world_make(&a, &c)) { ppo_world_free(&a); rlhf_set_num_threads(keep, 1); return; }
    for (it = 0; it < 3; it++) CHECK_OK(rlhf_ppo_step(a.ppo, &st, &e));
    rlhf_set_num_threads(2, 0);
    if (!ppo_world_make(&b, &c)) { ppo_world_free(&a); ppo_world_free(&b); rlhf_set_num_threads(keep, 1); return; }
    for (it = 0; it < 3; it++) CHECK_OK(rlhf_ppo_step(b.ppo, &st, &e));
    CHECK(memcmp(a.policy->param_mem, b.policy->param_mem, a.policy->num_params * sizeof(float)) == 0);
    CHECK(memcmp(a.critic->param_mem, b.critic->param_mem, a.critic->num_params * sizeof(float)) == 0);
    ppo_world_free(&a);
    ppo_world_free(&b);
    rlhf_set_num_threads(keep, 1);
#else
    g_skip = "built without OpenMP: one thread only";
#endif
}

/* A reward that fails for some replies (NaN, as a reward model in a mix
   that ran out of memory): PPO, GRPO and RLOO leave those replies out
   (advantage 0) with a warning, and go on learning from the others. */
static float nan_some(void *user, const int *prompt, int n_prompt, const int *response, int n_response) {
    (void)user; (void)prompt; (void)n_prompt;
    return response[0] % 3 == 0 ? NAN : (float)(response[0] % 5) + 0.1f * (float)n_response;
}
static void test_nan_rewards(void) {
    static const rlhf_estimator EST[3] = {RLHF_EST_GAE, RLHF_EST_GRPO, RLHF_EST_RLOO};
    int k, it;
    for (k = 0; k < 3; k++) {
        ppo_world w;
        rlhf_ppo_config c = group_test_config(EST[k], 0);
        rlhf_ppo_stats st;
        rlhf_error e;
        log_watch lw = {"scored NaN or inf", 0, {0}};
        if (EST[k] == RLHF_EST_GAE) c.group_size = 1;
        c.log = watch_log, c.log_user = &lw;
        if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
        w.ppo->cfg.score_fn = nan_some;
        for (it = 0; it < 4; it++) CHECK_OK(rlhf_ppo_step(w.ppo, &st, &e));
        CHECK(lw.hits == 4 && st.skipped_updates == 0 && isfinite(st.score) && isfinite(st.policy_loss));
        {   /* counted, and never trained on: the failed replies' advantages are all 0 */
            const rlhf__rollout *ro = &w.ppo->ro;
            int b, t, failed = 0, zero = 1;
            for (b = 0; b < w.ppo->B; b++) {
                if (isfinite(ro->score[b])) continue;
                failed++;
                for (t = 0; t < ro->rlen[b]; t++) zero &= ro->adv_white[rlhf__tok(w.ppo, b, t)] == 0.0f;
            }
            CHECK(failed > 0 && st.nonfinite_scores == failed && zero);
        }
        CHECK(rlhf__non_finite_tensor(w.policy) == NULL);
        if (k) CHECK(isfinite(st.reward_std));
        ppo_world_free(&w);
    }
}

static void test_ppo_ptx_and_guards(void) {
    ppo_world w;
    rlhf_ppo_config c = ppo_test_config();
    rlhf_ppo_stats st;
    rlhf_dataset *text = NULL;
    rlhf_ppo *q = NULL;
    rlhf_error e;
    int it;
    float first = 0;
    static const char corpus[] = "one two three four five six seven eight nine ten. one two three four five six seven eight nine ten. ";
    memset(&st, 0, sizeof st);
    if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
    write_file("build/test_ptx.txt", corpus, strlen(corpus));
    CHECK_OK(rlhf_dataset_load(&text, "build/test_ptx.txt", RLHF_DATA_TEXT, NULL, &e));
    c.ptx_coef = 1.0f;
    c.ptx_batch = 2;
    /* without the text dataset, ptx_coef is refused */
    CHECK(ppo_create_with(&q, w.policy, w.ref, w.critic, NULL, count_good, &w.task, w.t, w.prompts, NULL, &c, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          strstr(e.message, "TEXT") != NULL);
    CHECK_OK(ppo_create_with(&q, w.policy, w.ref, w.critic, NULL, count_good, &w.task, w.t, w.prompts, text, &c, &e));
    for (it = 0; q && it < 10; it++) {
        CHECK_OK(rlhf_ppo_step(q, &st, &e));
        if (it == 0) first = st.ptx_loss;
    }
    printf("    ppo-ptx: LM loss on the pretraining text %.3f -> %.3f in 10 iterations\n", (double)first, (double)st.ptx_loss);
    CHECK(isfinite(first) && st.ptx_loss < 0.7f * first);
    rlhf_ppo_free(q);
    q = NULL;
    /* a ratio threshold barely above 1 with a large step: minibatches are skipped and counted */
    c = ppo_test_config();
    c.ratio_threshold = 1.01f;
    c.policy_opt.lr = 0.05f;
    c.ppo_epochs = 4;
    CHECK_OK(ppo_create_with(&q, w.policy, w.ref, w.critic, NULL, count_good, &w.task, w.t, w.prompts, NULL, &c, &e));
    for (it = 0; q && it < 3; it++) CHECK_OK(rlhf_ppo_step(q, &st, &e));
    printf("    ratio guard: %ld minibatches skipped of %d\n", st.skipped_minibatches, 3 * 4 * 2);
    CHECK(st.skipped_minibatches > 0 && st.skipped_minibatches < 24);
    rlhf_ppo_free(q);
    {   /* a reward model instead of a score function; cut replies are scored at an <|end|> */
        rlhf_model *rm = world_model(w.t, 93);
        c = ppo_test_config();
        if (rm) CHECK_OK(rlhf_model_add_score_head(rm, -1.0f, 4));
        q = NULL;
        if (rm) CHECK_OK(ppo_create_with(&q, w.policy, w.ref, w.critic, rm, NULL, NULL, w.t, w.prompts, NULL, &c, &e));
        for (it = 0; q && it < 2; it++) CHECK_OK(rlhf_ppo_step(q, &st, &e));
        CHECK(q && isfinite(st.score) && isfinite(st.value_loss));
        rlhf_ppo_free(q);
        rlhf_model_free(rm);
    }
    /* bad configurations say what is wrong */
    c = ppo_test_config();
    c.mini_batch = 32;
    CHECK(ppo_create_with(&q, w.policy, w.ref, w.critic, NULL, count_good, &w.task, w.t, w.prompts, NULL, &c, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          q == NULL && strstr(e.message, "mini_batch") != NULL);
    c = ppo_test_config();
    c.max_new_tokens = 100;
    CHECK(ppo_create_with(&q, w.policy, w.ref, w.critic, NULL, count_good, &w.task, w.t, w.prompts, NULL, &c, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          strstr(e.message, "context") != NULL);
    CHECK(ppo_create_with(&q, w.policy, w.ref, w.policy, NULL, count_good, &w.task, w.t, w.prompts, NULL, &c, &e) == RLHF_ERR_INVALID_ARGUMENT);
    rlhf_dataset_free(text);
    ppo_world_free(&w);
}


/* SFT resume: a run stopped at step 20 and resumed from its last.safetensors
   ends with the same weights, bit for bit, as the run that never stopped, and
   its last metric line counts the same tokens (those before the checkpoint
   included). */
typedef struct { int copied; double tokens40; } resume_watch;
static void copy_at_step_21(void *user, const char *json) {
    resume_watch *w = (resume_watch *)user;
    const char *tk = strstr(json, "\"tokens\":");
    if (strstr(json, "\"step\":40,") && tk) w->tokens40 = atof(tk + 9);
    if (!w->copied && strstr(json, "\"step\":21,")) {
        size_t n;
        unsigned char *b = read_all("build/last.safetensors", &n);
        if (b) { write_file("build/resume_at20.safetensors", (const char *)b, n); free(b); w->copied = 1; }
    }
}
static void test_sft_resume(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *a = NULL, *b = NULL;
    rlhf_dataset *d = NULL;
    rlhf_train_options o = rlhf_train_options_sft();
    rlhf_train_report rep;
    rlhf_error e;
    resume_watch w = {0, 0.0}, w2 = {0, 0.0};
    if (!t) return;
    write_sft_world("build/test_resume.jsonl", 120, 9, 1);
    CHECK_OK(rlhf_dataset_load(&d, "build/test_resume.jsonl", RLHF_DATA_SFT, NULL, &e));
    a = world_model(t, 17);
    if (!a || !d) goto done;
    o.opt.lr = 2e-3f; o.batch_size = 8; o.max_steps = 40; o.eval_every = 20; o.log_every = 0;
    o.out_dir = "build";
    o.metrics = copy_at_step_21;
    o.metrics_user = &w;
    CHECK_OK(rlhf_sft_train(a, t, d, NULL, &o, &rep, &e));
    CHECK(w.copied);
    CHECK_OK(rlhf_model_load_ex(&b, "build/resume_at20.safetensors", &e));
    if (!b) goto done;
    CHECK(strcmp(rlhf_model_meta(b, "rlhf.train.step"), "20") == 0 && rlhf_model_adamw_steps(b) == 20);
    o.resume_step = 20;
    w2.copied = 1;
    o.metrics_user = &w2;
    CHECK_OK(rlhf_sft_train(b, t, d, NULL, &o, &rep, &e));
    CHECK(rep.steps == 20);
    CHECK(w.tokens40 > 0.0 && w2.tokens40 == w.tokens40);
    CHECK(memcmp(a->param_mem, b->param_mem, a->num_params * sizeof(float)) == 0);
done:
    rlhf_model_free(a); rlhf_model_free(b);
    rlhf_dataset_free(d);
    rlhf_tokenizer_free(t);
}

/* ---- DPO ------------------------------------------------------------------------ */

/* Cancellation: a should_stop that says stop after step `at` (it is polled
   once after every update, so the calls count the steps). */
typedef struct { int calls, at; } stop_after;
static int stop_at_step(void *user) {
    stop_after *s = (stop_after *)user;
    return ++s->calls == s->at;
}

/* a preference stage's run over the whole of d (DPO's options, no validation, micro sequences a forward) */
static int rig_begin(rlhf__trainrun *run, rlhf_train_options *o, rlhf_error *e, const char *stage, rlhf_model *m,
                     const rlhf_tokenizer *t, const rlhf_dataset *d, int micro) {
    rlhf_result r;
    *o = rlhf_train_options_dpo();
    o->val_fraction = 0.0f;
    o->log_every = 0;
    o->micro_batch = micro;
    return rlhf__run_begin(run, stage, m, t, d, o, e, &r);
}

/* KTO's world: single replies of 4 words, desirable when 3 or 4 of them
   are "good", undesirable when 0 or 1 are, in TRL's unpaired format */
static void write_unpaired_world(const char *path, int n, uint64_t seed) {
    FILE *f = fopen(path, "wb");
    rlhf_rng rng;
    int i;
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    rlhf_rng_seed(&rng, seed);
    for (i = 0; i < n; i++) {
        int good = (int)(rlhf_rng_u64(&rng) % 4), g = good < 2 ? good : good + 1; /* 0, 1, 3 or 4 */
        fprintf(f, "{\"prompt\": \"rate this:\", \"completion\": \"");
        good_words(f, g, &rng);
        fprintf(f, "\", \"label\": %s}\n", g >= 3 ? "true" : "false");
    }
    fclose(f);
}

/* A KTO stage over the whole of d, as rlhf_kto_train sets it up; its loss
   at a fixed reference point z (the gradient holds z constant, as TRL) */
typedef struct { rlhf__trainrun run; rlhf__kto_stage k; rlhf__stage st; rlhf_train_options o; rlhf_error e; double z; } kto_rig;
static int kto_rig_open(kto_rig *g, rlhf_model *m, rlhf_model *ref, const rlhf_tokenizer *t, const rlhf_dataset *d,
                        float beta, int micro) {
    memset(g, 0, sizeof *g);
    if (!rig_begin(&g->run, &g->o, &g->e, "kto", m, t, d, micro)) return 0;
    g->k.cfg = rlhf_kto_config_default();
    g->k.cfg.beta = beta, g->k.cfg.desirable_weight = 1.3f, g->k.cfg.precompute_ref = 1;
    g->k.d.cfg = rlhf_dpo_config_default();
    g->k.d.ref = ref;
    return rlhf__kto_setup(&g->run, &g->k, &g->st, t, d, NULL) == RLHF_OK;
}
static void kto_rig_close(kto_rig *g) {
    rlhf__kto_free(&g->k, &g->st);
    rlhf__free(g->run.line.p);
}
static double kto_rig_loss(kto_rig *g, double z) {
    double sum = 0.0, m[7] = {0};
    size_t i, take;
    int B, T;
    for (i = 0; i < g->st.n_train; i += take) {
        take = rlhf__rm_take(&g->k.d.ex, g->st.order, i, g->st.n_train, g->k.d.micro);
        CHECK_OK(rlhf__dpo_forward(&g->run, &g->k.d, &g->k.d.ex, g->k.d.ref_ex, g->st.order + i, take, 0, &B, &T));
        sum += rlhf__kto_losses(&g->k, g->k.lab, g->st.order + i, take, z, 0, 0.0, m);
    }
    return sum / (double)g->st.n_train;
}
static double kto_rig_eval(void *g) { return kto_rig_loss((kto_rig *)g, ((kto_rig *)g)->z); }
static void test_fd_kto(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL, *ref = NULL;
    rlhf_dataset *d = NULL;
    rlhf_rng rng;
    rlhf_error e;
    kto_rig g;
    rlhf__step_out so;
    float ana[128], num[128];
    double z, loss0;
    int i, probes = 0;
    if (!t) return;
    write_unpaired_world("build/test_kto_fd.jsonl", 6, 5);
    CHECK_OK(rlhf_dataset_load(&d, "build/test_kto_fd.jsonl", RLHF_DATA_UNPAIRED, NULL, &e));
    m = world_model(t, 51);
    ref = world_model(t, 52);
    if (!m || !ref || !d) goto done;
    rlhf_rng_seed(&rng, 53);
    spread_params(m, &rng);
    for (i = 0; i < 3; i++) spread_params(ref, &rng); /* a reference further from the data: z > 0, not clamped */
    if (!kto_rig_open(&g, m, ref, t, d, 0.05f, 4)) {
        fprintf(stderr, "  %s\n", g.e.message);
        g_fail++;
        kto_rig_close(&g);
        goto done;
    }
    /* the trainer's gradient (and its z), then central differences of the loss at that z */
    memset(&so, 0, sizeof so);
    so.finite = 1;
    rlhf_model_zero_grad(m);
    CHECK_OK(rlhf__kto_grads(&g.k, &g.run, g.st.order, g.st.n_train, 0, &so));
    z = g.k.m[6];
    loss0 = kto_rig_loss(&g, z);
    CHECK(fabs(loss0 - so.loss) < 1e-6 * (1.0 + fabs(loss0)) && g.k.m[0] > 0 && g.k.m[1] > 0);
    g.z = z;
    probes = fd_probes(m, 2, 0, 3.0 / 7.0, kto_rig_eval, &g, ana, num, 128);
    close_enough("KTO loss dloss/dparam at fixed z (finite differences)", ana, num, (size_t)probes, 2e-4, 3e-2);
    CHECK(z > 0.0);
    printf("    kto: %d probes, z = %.3f, %g desirable and %g undesirable records\n", probes, z, g.k.m[0], g.k.m[1]);
    kto_rig_close(&g);
done:
    rlhf_model_free(m); rlhf_model_free(ref);
    rlhf_dataset_free(d);
    rlhf_tokenizer_free(t);
}

/* KTO learns the world's labels from unpaired replies: afterwards desirable
   replies gain log-probability against the reference and undesirable ones
   lose it (the held-out share on their label's side of z), a precomputed
   reference gives the live run's bits, and pairs are refused by name. */
static void test_kto_learns(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL, *m2 = NULL, *ref = NULL;
    rlhf_dataset *train = NULL, *val = NULL, *pairs = NULL;
    rlhf_train_options o = rlhf_train_options_dpo();
    rlhf_kto_config kc = rlhf_kto_config_default();
    rlhf_train_report rep, rep2;
    rlhf_error e;
    if (!t) return;
    write_unpaired_world("build/test_kto_train.jsonl", 300, 1);
    write_unpaired_world("build/test_kto_val.jsonl", 60, 2);
    write_preference_world("build/test_kto_pairs.jsonl", 10, 3);
    CHECK_OK(rlhf_dataset_load(&train, "build/test_kto_train.jsonl", RLHF_DATA_UNPAIRED, NULL, &e));
    CHECK_OK(rlhf_dataset_load(&val, "build/test_kto_val.jsonl", RLHF_DATA_UNPAIRED, NULL, &e));
    CHECK_OK(rlhf_dataset_load(&pairs, "build/test_kto_pairs.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    m = world_model(t, 31); m2 = world_model(t, 31); ref = world_model(t, 31);
    if (!m || !m2 || !ref || !train || !val || !pairs) goto done;
    CHECK(rlhf_kto_train(m, NULL, t, train, val, &kc, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT);
    CHECK(rlhf_kto_train(m, ref, t, pairs, NULL, &kc, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          strstr(e.message, "unpaired") != NULL);
    o.opt.lr = 2e-3f; o.batch_size = 8; o.epochs = 2; o.eval_every = 0; o.log_every = 0;
    CHECK_OK(rlhf_kto_train(m, ref, t, train, val, &kc, &o, &rep, &e));
    if (e.message[0]) fprintf(stderr, "  %s\n", e.message);
    printf("    kto: %ld steps in %.2f s, held-out loss %.3f, %.3f of the records on their label's side\n", rep.steps,
           rep.seconds, (double)rep.val_loss, (double)rep.val_accuracy);
    CHECK(rep.val_accuracy >= 0.85f && rep.val_loss < 0.45f && rep.skipped_steps == 0);
    kc.precompute_ref = 1;
    CHECK_OK(rlhf_kto_train(m2, ref, t, train, val, &kc, &o, &rep2, &e));
    CHECK(memcmp(m->param_mem, m2->param_mem, m->num_params * sizeof(float)) == 0 && rep2.val_loss == rep.val_loss);
done:
    rlhf_model_free(m); rlhf_model_free(m2); rlhf_model_free(ref);
    rlhf_dataset_free(train); rlhf_dataset_free(val); rlhf_dataset_free(pairs);
    rlhf_tokenizer_free(t);
}

/* A DPO stage over the whole of d (no validation), as rlhf_dpo_train sets it up */
typedef struct { rlhf__trainrun run; rlhf__dpo_stage d; rlhf__stage st; rlhf_train_options o; rlhf_error e; } dpo_rig;
static int dpo_rig_open(dpo_rig *g, rlhf_model *m, rlhf_model *ref, const rlhf_tokenizer *t, const rlhf_dataset *d,
                        rlhf_dpo_loss_type loss, float beta, float eps, int micro) {
    memset(g, 0, sizeof *g);
    if (!rig_begin(&g->run, &g->o, &g->e, "dpo", m, t, d, micro)) return 0;
    g->d.cfg = rlhf_dpo_config_default();
    g->d.cfg.loss = loss, g->d.cfg.beta = beta, g->d.cfg.label_smoothing = eps;
    g->d.cfg.precompute_ref = 1; /* the reference once, not at every evaluation of the loss */
    g->d.ref = loss == RLHF_DPO_SIMPO ? NULL : ref; /* SimPO has none */
    return rlhf__dpo_setup(&g->run, &g->d, &g->st, t, d, NULL) == RLHF_OK;
}
static void dpo_rig_close(dpo_rig *g) {
    rlhf__free(g->st.order); rlhf__free(g->d.vidx); rlhf__free(g->d.inputs); rlhf__free(g->d.targets);
    rlhf__free(g->d.logp); rlhf__free(g->d.dlogp); rlhf__free(g->d.seq); rlhf__free(g->d.ref_ex); rlhf__free(g->d.ref_vex);
    rlhf__ex_free(&g->d.ex); rlhf__ex_free(&g->d.vex); rlhf__free(g->run.line.p);
}
/* the stage's loss over every unit, its gradient into the model's */
static double dpo_rig_loss(dpo_rig *g);
static double dpo_rig_eval(void *g) { return dpo_rig_loss((dpo_rig *)g); }
static double dpo_rig_loss(dpo_rig *g) {
    rlhf__step_out s;
    memset(&s, 0, sizeof s);
    s.finite = 1;
    rlhf_model_zero_grad(g->run.m);
    CHECK_OK(rlhf__dpo_grads(&g->d, &g->run, g->st.order, g->st.n_train, 0, &s));
    return s.loss;
}

/* The sequence log-prob the stage uses is the sum (IPO: the mean) of
   log pi over exactly the reply's tokens, its <|end|> included: checked one
   group at a time against the log-probs of the whole rows, summed here over
   the positions past the prompt's own length (rlhf_prompt_encode of the
   record; the world's prompts are never cut). */
static void dpo_reply_sums(dpo_rig *g, const rlhf_tokenizer *t, const rlhf_dataset *d) {
    size_t gi;
    for (gi = 0; gi < g->d.ex.ng && gi < rlhf_dataset_size(d); gi++) {
        int B, T, k, pos, ids[64];
        size_t np;
        float *lp;
        CHECK_OK(rlhf__dpo_forward(&g->run, &g->d, &g->d.ex, NULL, &gi, 1, 0, &B, &T));
        CHECK_OK(rlhf_prompt_encode(t, rlhf_dataset_record(d, gi), ids, 64, &np));
        lp = floats((size_t)B * T);
        for (k = 0; k < B; k++) { /* row k: targets at positions np-1 .. len-2 (predicting tokens np .. len-1) */
            int len = g->d.ex.len[g->d.ex.gfirst[gi] + (size_t)k], n = 0;
            double sum = 0.0;
            for (pos = 0; pos < T; pos++) g->d.targets[(size_t)k * T + pos] = pos >= (int)np - 1 && pos < len - 1
                                                                                ? g->d.inputs[(size_t)k * T + pos + 1] : -1;
            CHECK_OK(rlhf_model_logprobs(g->run.m, g->d.inputs + (size_t)k * T, g->d.targets + (size_t)k * T, NULL, 1, T,
                                         1.0f, lp, NULL, 0));
            for (pos = (int)np - 1; pos < len - 1; pos++) sum += lp[pos], n++;
            if (g->d.cfg.loss == RLHF_DPO_IPO || g->d.cfg.loss == RLHF_DPO_SIMPO) sum /= n;
            CHECK(n == len - (int)np && fabs(sum - g->d.seq[k]) <= 1e-4 * (1.0 + fabs(sum)));
        }
        free(lp);
    }
}

/* The DPO stage's whole gradient (log-probs of the replies through the model,
   the loss over every pair of pairs and rankings, back into every tensor)
   against central differences of its loss, for the three losses (the hinge
   with a beta that keeps every pair on its slope: differences across the
   kink are not derivatives; tests golden_dpo covers the flat side). */
static void test_fd_dpo(void) {
    static const struct { rlhf_dpo_loss_type loss; float beta, eps; int micro; } CASES[4] = {
        {RLHF_DPO_SIGMOID, 0.5f, 0.1f, 3}, {RLHF_DPO_IPO, 0.5f, 0.0f, 32}, {RLHF_DPO_HINGE, 0.1f, 0.0f, 32},
        {RLHF_DPO_SIMPO, 2.0f, 0.1f, 3}};
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL, *ref = NULL;
    rlhf_dataset *d = NULL;
    rlhf_rng rng;
    rlhf_error e;
    int c;
    if (!t) return;
    write_preference_world("build/test_dpo_fd.jsonl", 3, 3);
    CHECK_OK(rlhf_dataset_load(&d, "build/test_dpo_fd.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    m = world_model(t, 21);
    ref = world_model(t, 22);
    if (!m || !ref || !d) goto done;
    rlhf_rng_seed(&rng, 23);
    spread_params(m, &rng);
    spread_params(ref, &rng);
    for (c = 0; c < 4; c++) {
        dpo_rig g;
        float ana[256], num[256];
        int probes;
        char what[80];
        if (!dpo_rig_open(&g, m, ref, t, d, CASES[c].loss, CASES[c].beta, CASES[c].eps, CASES[c].micro)) {
            fprintf(stderr, "  %s\n", g.e.message);
            g_fail++;
            dpo_rig_close(&g);
            continue;
        }
        dpo_rig_loss(&g);
        /* two entries of a third of the tensors per case: quick under qemu */
        probes = fd_probes(m, 3, c, 7.0 / 11.0, dpo_rig_eval, &g, ana, num, 256);
        snprintf(what, sizeof what, "DPO loss %d dloss/dparam (finite differences)", (int)CASES[c].loss);
        close_enough(what, ana, num, (size_t)probes, 2e-3, 3e-2);
        dpo_reply_sums(&g, t, d);
        dpo_rig_close(&g);
    }
done:
    rlhf_model_free(m); rlhf_model_free(ref);
    rlhf_dataset_free(d);
    rlhf_tokenizer_free(t);
}

/* DPO learns the preference world's rule (more "good" words is better) from
   pairs and rankings: held-out accuracy of the implicit reward and a loss
   below log 2; the reference's log-probs precomputed give the very same run
   as the reference run beside the policy; a large beta keeps the policy
   nearer the reference than a small one; a run stopped at step 3 and resumed
   gives the uninterrupted run's weights. */
typedef struct { long lines; double last_acc; } dpo_watch;
static void dpo_metrics(void *user, const char *json) {
    dpo_watch *w = (dpo_watch *)user;
    const char *a = strstr(json, "\"rewards/accuracies\":");
    w->lines++;
    if (a) w->last_acc = strtod(a + strlen("\"rewards/accuracies\":"), NULL);
}
static double dpo_drift(rlhf_model *m, rlhf_model *ref, const rlhf_tokenizer *t, const rlhf_dataset *d) {
    /* mean |log pi - log pi_ref| over the replies of d */
    dpo_rig g;
    double sum = 0.0;
    size_t i;
    if (!dpo_rig_open(&g, m, ref, t, d, RLHF_DPO_SIGMOID, 0.1f, 0.0f, 32)) { g_fail++; dpo_rig_close(&g); return 0.0; }
    for (i = 0; i < g.d.ex.ng; i++) {
        int B, T, k;
        CHECK_OK(rlhf__dpo_forward(&g.run, &g.d, &g.d.ex, NULL, &i, 1, 0, &B, &T));
        for (k = 0; k < B; k++) sum += fabs((double)g.d.seq[k] - g.d.rseq[k]);
    }
    sum /= (double)g.d.ex.n;
    dpo_rig_close(&g);
    return sum;
}
static void test_dpo_learns(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL, *ref = NULL, *m2 = NULL, *m3 = NULL, *r2 = NULL;
    rlhf_dataset *train = NULL, *val = NULL;
    rlhf_train_options o = rlhf_train_options_dpo();
    rlhf_dpo_config dc = rlhf_dpo_config_default();
    rlhf_train_report rep, rep2;
    rlhf_error e;
    dpo_watch w = {0, 0.0};
    stop_after s = {0, 3};
    double drift_small, drift_large;
    long best_step = 0;
    float best_loss = 0.0f;
    if (!t) return;
    write_preference_world("build/test_dpo_train.jsonl", 300, 1);
    write_preference_world("build/test_dpo_val.jsonl", 60, 2);
    CHECK_OK(rlhf_dataset_load(&train, "build/test_dpo_train.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    CHECK_OK(rlhf_dataset_load(&val, "build/test_dpo_val.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    m = world_model(t, 31); ref = world_model(t, 31); m2 = world_model(t, 31);
    if (!m || !ref || !m2 || !train || !val) goto done;
    /* refusals: no reference, the policy as its own reference, a nonsense beta */
    CHECK(rlhf_dpo_train(m, NULL, t, train, val, &dc, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          strstr(e.message, "reference") != NULL);
    CHECK(rlhf_dpo_train(m, m, t, train, val, &dc, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT);
    dc.beta = -1.0f;
    CHECK(rlhf_dpo_train(m, ref, t, train, val, &dc, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          strstr(e.message, "beta") != NULL);
    dc.beta = 0.1f;
    dc.loss = RLHF_DPO_IPO, dc.label_smoothing = 0.1f;
    CHECK(rlhf_dpo_train(m, ref, t, train, val, &dc, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          strstr(e.message, "sigmoid and simpo losses only") != NULL);
    dc.loss = RLHF_DPO_SIGMOID, dc.label_smoothing = 0.0f;

    /* learning, live reference */
    o.opt.lr = 2e-3f; o.batch_size = 8; o.epochs = 2; o.eval_every = 0; o.log_every = 0;
    o.metrics = dpo_metrics; o.metrics_user = &w;
    CHECK_OK(rlhf_dpo_train(m, ref, t, train, val, &dc, &o, &rep, &e));
    if (e.message[0]) fprintf(stderr, "  %s\n", e.message);
    printf("    dpo: %ld steps in %.2f s, held-out accuracy %.3f, loss %.3f\n", rep.steps, rep.seconds,
           (double)rep.val_accuracy, (double)rep.val_loss);
    CHECK(rep.steps == 76 && rep.skipped_steps == 0 && w.lines == rep.steps + 1);
    CHECK(rep.val_accuracy >= 0.85f && rep.val_loss < 0.6f && w.last_acc > 0.5);
    CHECK(strcmp(rlhf_model_meta(m, "rlhf.kind"), "policy") == 0);

    /* the same run with the reference precomputed: the same weights, bit for bit */
    o.metrics = NULL;
    dc.precompute_ref = 1;
    CHECK_OK(rlhf_dpo_train(m2, ref, t, train, val, &dc, &o, &rep2, &e));
    CHECK(memcmp(m->param_mem, m2->param_mem, m->num_params * sizeof(float)) == 0);
    CHECK(rep2.val_loss == rep.val_loss);

    /* a large beta pulls the policy toward the reference */
    drift_small = dpo_drift(m, ref, t, val);
    m3 = world_model(t, 31);
    dc.beta = 5.0f;
    if (m3) CHECK_OK(rlhf_dpo_train(m3, ref, t, train, val, &dc, &o, &rep2, &e));
    drift_large = m3 ? dpo_drift(m3, ref, t, val) : 0.0;
    printf("    dpo: mean |log pi - log pi_ref| of a reply: beta 0.1 %.3f, beta 5 %.3f\n", drift_small, drift_large);
    CHECK(drift_large < 0.5 * drift_small);

    /* SimPO: no reference at all (NULL), per-token means and a margin; learns the same preference */
    rlhf_model_free(m3);
    m3 = world_model(t, 31);
    dc.beta = 2.0f; dc.loss = RLHF_DPO_SIMPO; dc.simpo_gamma = 0.5f;
    if (m3) {
        CHECK_OK(rlhf_dpo_train(m3, NULL, t, train, val, &dc, &o, &rep2, &e));
        printf("    simpo: %ld steps, held-out accuracy %.3f, loss %.3f\n", rep2.steps, (double)rep2.val_accuracy,
               (double)rep2.val_loss);
        CHECK(rep2.val_accuracy >= 0.85f && rep2.skipped_steps == 0);
    }
    dc.loss = RLHF_DPO_SIGMOID;

    /* stopped after step 3 of 8, resumed from last.safetensors: the uninterrupted weights */
    rlhf_model_free(m2);
    m2 = world_model(t, 31);
    rlhf_model_free(m3);
    m3 = world_model(t, 31);
    dc.beta = 0.1f;
    o.epochs = 1; o.max_steps = 8; o.eval_every = 5; o.out_dir = "build";
    if (!m2 || !m3) goto done;
    /* an earlier stage's best in the metadata (a model trained before): not this run's, stopped before its
       first validation or not */
    CHECK_OK(rlhf__set_meta(m2, "rlhf.train.best_val_loss", "0.0001")); /* as a checkpoint of that stage holds */
    CHECK_OK(rlhf__set_meta(m3, "rlhf.train.best_val_loss", "0.0001"));
    CHECK_OK(rlhf_dpo_train(m2, ref, t, train, val, &dc, &o, &rep, &e));
    best_step = rep.best_step, best_loss = rep.best_val_loss;
    CHECK(best_step > 0); /* its own validations, not the stale value, make the best */
    o.should_stop = stop_at_step; o.stop_user = &s;
    CHECK(rlhf_dpo_train(m3, ref, t, train, val, &dc, &o, &rep, &e) == RLHF_ERR_INTERRUPTED);
    CHECK_OK(rlhf_model_load_ex(&r2, "build/last.safetensors", &e));
    if (!r2) goto done;
    o.should_stop = NULL;
    o.resume_step = 3;
    CHECK_OK(rlhf_dpo_train(r2, ref, t, train, val, &dc, &o, &rep, &e));
    CHECK(rep.steps == 5 && memcmp(r2->param_mem, m2->param_mem, m2->num_params * sizeof(float)) == 0);
    CHECK(rep.best_step == best_step && rep.best_val_loss == best_loss);
done:
    rlhf_model_free(m); rlhf_model_free(ref); rlhf_model_free(m2); rlhf_model_free(m3); rlhf_model_free(r2);
    rlhf_dataset_free(train); rlhf_dataset_free(val);
    rlhf_tokenizer_free(t);
}

/* ---- best-of-N ---------------------------------------------------------------- */

/* a verifiable reward: the number of "good" tokens a reply holds (the id is in user) */
static float count_token(void *user, const int *prompt, int n_prompt, const int *resp, int n) {
    int i, c = 0;
    (void)prompt, (void)n_prompt;
    for (i = 0; i < n; i++) c += resp[i] == *(const int *)user;
    return (float)c;
}
/* NaN for the first reply, then 1, 1, ...: counts its calls */
static float nan_first(void *user, const int *prompt, int n_prompt, const int *resp, int n) {
    int *calls = (int *)user;
    (void)prompt, (void)n_prompt, (void)resp, (void)n;
    return (*calls)++ == 0 ? NAN : 1.0f;
}
/* Best-of-N keeps the reply with the highest score: with a score function, the
   winner's score is the maximum and its tokens are those of that reply (the
   same seed replays the same N replies); with a reward model, the scores are
   rlhf_reward_score_ids of each reply; n = 1 is plain sampling; bad arguments
   are refused. */
static void test_best_of_n(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL, *rm = NULL;
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_rng rng;
    enum { N = 6, NEW = 10 };
    int prompt[48], best[NEW], best2[NEW], nb = 0, nb2 = 0, win = -1, i, good, np1;
    float sc1[N], sc2[N], top = -1e30f;
    size_t np;
    rlhf_record rec;
    if (!t) return;
    m = world_model(t, 41);
    rm = world_model(t, 42);
    if (!m || !rm) goto done;
    CHECK_OK(rlhf_model_add_score_head(rm, -1.0f, 42));
    sc.temperature = 1.0f;
    memset(&rec, 0, sizeof rec);
    rec.kind = RLHF_RECORD_PROMPT;
    rec.prompt.str = "rate this:";
    rec.prompt.len = strlen(rec.prompt.str);
    CHECK_OK(rlhf_prompt_encode(t, &rec, prompt, 48, &np));
    np1 = (int)np;
    {   /* the token of " good" */
        int ids[4];
        size_t n = 0;
        CHECK_OK(rlhf_tokenizer_encode(t, " good", 5, ids, 4, &n));
        good = ids[0];
    }
    rlhf_rng_seed(&rng, 7);
    CHECK_OK(rlhf_best_of_n(m, NULL, count_token, &good, t, prompt, np1, N, NEW, &sc, &rng, best, &nb, sc1, &win));
    for (i = 0; i < N; i++) top = sc1[i] > top ? sc1[i] : top;
    CHECK(win >= 0 && win < N && sc1[win] == top && count_token(&good, prompt, np1, best, nb) == top);
    for (i = 0; i < win; i++) CHECK(sc1[i] < top); /* the first of the best */
    /* the same seed: the same replies, so the same scores and winner */
    rlhf_rng_seed(&rng, 7);
    CHECK_OK(rlhf_best_of_n(m, NULL, count_token, &good, t, prompt, np1, N, NEW, &sc, &rng, best2, &nb2, sc2, NULL));
    CHECK(nb2 == nb && memcmp(best, best2, (size_t)nb * sizeof(int)) == 0 && memcmp(sc1, sc2, sizeof sc1) == 0);
    /* a reward model: each score is the model's score of that reply */
    rlhf_rng_seed(&rng, 8);
    CHECK_OK(rlhf_best_of_n(m, rm, NULL, NULL, t, prompt, np1, N, NEW, &sc, &rng, best, &nb, sc1, &win));
    {   /* scored at an <|end|>: the reply's own, or one appended to a reply cut at NEW (as PPO scores) */
        int seq[48 + NEW + 1], len = np1 + nb, stop = rlhf_tokenizer_reply_end(t);
        float s;
        memcpy(seq, prompt, (size_t)np1 * sizeof(int));
        memcpy(seq + np1, best, (size_t)nb * sizeof(int));
        if (nb == 0 || best[nb - 1] != stop) seq[len++] = stop;
        CHECK_OK(rlhf_reward_score_ids(rm, seq, NULL, &len, 1, len, &s));
        CHECK(s == sc1[win]);
        for (i = 0; i < N; i++) CHECK(sc1[i] <= s);
        {   /* a mix of the reward model (weight 0.5) and the count of " good" (weight 2): the weighted sum */
            rlhf_reward_mix mix;
            float want, got;
            memset(&mix, 0, sizeof mix);
            mix.tokenizer = t;
            mix.n = 2;
            mix.model[0] = rm; mix.weight[0] = 0.5f;
            mix.fn[1] = count_token; mix.user[1] = &good; mix.weight[1] = 2.0f;
            got = rlhf_reward_mix_score(&mix, prompt, np1, best, nb);
            want = (float)(0.5 * (double)s + 2.0 * (double)count_token(&good, prompt, np1, best, nb));
            CHECK(got == want && mix.last[0] == s);
            /* as best-of-N's score function: the same winner as the reward model alone when the count is off */
            mix.weight[1] = 0.0f;
            rlhf_rng_seed(&rng, 8);
            CHECK_OK(rlhf_best_of_n(m, NULL, rlhf_reward_mix_score, &mix, t, prompt, np1, N, NEW, &sc, &rng, best2, &nb2, sc2, NULL));
            for (i = 0; i < N; i++) CHECK(sc2[i] == 0.5f * sc1[i]);
            CHECK(nb2 == nb && memcmp(best, best2, (size_t)nb * sizeof(int)) == 0);
            mix.n = 0;
            CHECK(isnan(rlhf_reward_mix_score(&mix, prompt, np1, best, nb)));
        }
    }
    {   /* a NaN score never wins over a number, even as the first */
        int calls = 0;
        rlhf_rng_seed(&rng, 9);
        CHECK_OK(rlhf_best_of_n(m, NULL, nan_first, &calls, t, prompt, np1, 3, NEW, &sc, &rng, best, &nb, sc1, &win));
        CHECK(calls == 3 && isnan(sc1[0]) && win == 1 && sc1[1] == 1.0f);
    }
    /* refusals: no reward at all, n 0, a prompt and reply beyond n_ctx */
    CHECK(rlhf_best_of_n(m, NULL, NULL, NULL, t, prompt, np1, N, NEW, &sc, &rng, best, &nb, NULL, NULL) == RLHF_ERR_INVALID_ARGUMENT);
    CHECK(rlhf_best_of_n(m, rm, NULL, NULL, t, prompt, np1, 0, NEW, &sc, &rng, best, &nb, NULL, NULL) == RLHF_ERR_INVALID_ARGUMENT);
    CHECK(rlhf_best_of_n(m, rm, NULL, NULL, t, prompt, np1, N, 48, &sc, &rng, best, &nb, NULL, NULL) == RLHF_ERR_INVALID_ARGUMENT);
done:
    rlhf_model_free(m); rlhf_model_free(rm);
    rlhf_tokenizer_free(t);
}

/* SFT stopped by the caller at step 3 of 8: RLHF_ERR_INTERRUPTED, the step's
   last.safetensors (step 3, AdamW state), and resuming it to the end gives
   the uninterrupted run's weights bit for bit. Then the same, shorter, for
   the reward model, and a stop without out_dir. */
static void test_train_stop(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *a = NULL, *b = NULL, *c = NULL;
    rlhf_dataset *d = NULL, *prefs = NULL;
    rlhf_train_options o = rlhf_train_options_sft();
    rlhf_train_report rep;
    rlhf_error e;
    stop_after s = {0, 3};
    if (!t) return;
    CHECK(o.should_stop == NULL && o.stop_user == NULL && rlhf_train_options_reward().should_stop == NULL);
    write_sft_world("build/test_stop.jsonl", 60, 9, 1);
    CHECK_OK(rlhf_dataset_load(&d, "build/test_stop.jsonl", RLHF_DATA_SFT, NULL, &e));
    a = world_model(t, 17);
    b = world_model(t, 17);
    if (!a || !b || !d) goto done;
    o.opt.lr = 2e-3f; o.batch_size = 8; o.max_steps = 8; o.eval_every = 5; o.log_every = 0;
    o.out_dir = "build";
    o.should_stop = stop_at_step;
    o.stop_user = &s;
    remove("build/last.safetensors");
    CHECK(rlhf_sft_train(b, t, d, NULL, &o, &rep, &e) == RLHF_ERR_INTERRUPTED);
    CHECK(strcmp(e.message, "sft: stopped at step 3 of 8; build/last.safetensors holds it") == 0);
    if (strcmp(e.message, "sft: stopped at step 3 of 8; build/last.safetensors holds it") != 0) fprintf(stderr, "  got \"%s\"\n", e.message);
    CHECK(rep.steps == 3 && s.calls == 3 && isfinite(rep.train_loss));
    rlhf_model_free(b);
    b = NULL;
    CHECK_OK(rlhf_model_load_ex(&b, "build/last.safetensors", &e));
    if (!b) goto done;
    CHECK(rlhf_model_meta(b, "rlhf.train.step") && strcmp(rlhf_model_meta(b, "rlhf.train.step"), "3") == 0);
    CHECK(rlhf_model_adamw_steps(b) == 3);
    o.should_stop = NULL;
    o.resume_step = 3;
    CHECK_OK(rlhf_sft_train(b, t, d, NULL, &o, &rep, &e));
    CHECK(rep.steps == 5);
    o.resume_step = 0;
    CHECK_OK(rlhf_sft_train(a, t, d, NULL, &o, &rep, &e));
    CHECK(memcmp(a->param_mem, b->param_mem, a->num_params * sizeof(float)) == 0);

    /* the reward model: stop at step 2 of 4, resume, compare */
    rlhf_model_free(a); rlhf_model_free(b);
    a = b = NULL;
    write_preference_world("build/test_stop_prefs.jsonl", 40, 3);
    CHECK_OK(rlhf_dataset_load(&prefs, "build/test_stop_prefs.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    a = world_model(t, 5);
    b = world_model(t, 5);
    if (!a || !b || !prefs) goto done;
    CHECK_OK(rlhf_model_add_score_head(a, -1.0f, 5));
    CHECK_OK(rlhf_model_add_score_head(b, -1.0f, 5));
    o = rlhf_train_options_reward();
    o.opt.lr = 1e-3f; o.batch_size = 8; o.micro_batch = 16; o.max_steps = 4; o.eval_every = 0; o.log_every = 0;
    o.out_dir = "build";
    o.should_stop = stop_at_step;
    o.stop_user = &s;
    s.calls = 0;
    s.at = 2;
    remove("build/last.safetensors");
    CHECK(rlhf_reward_train(b, t, prefs, NULL, &o, &rep, &e) == RLHF_ERR_INTERRUPTED && rep.steps == 2);
    CHECK(strcmp(e.message, "rm: stopped at step 2 of 4; build/last.safetensors holds it") == 0);
    rlhf_model_free(b);
    b = NULL;
    CHECK_OK(rlhf_model_load_ex(&b, "build/last.safetensors", &e));
    if (!b) goto done;
    CHECK(rlhf_model_meta(b, "rlhf.train.step") && strcmp(rlhf_model_meta(b, "rlhf.train.step"), "2") == 0);
    o.should_stop = NULL;
    o.resume_step = 2;
    CHECK_OK(rlhf_reward_train(b, t, prefs, NULL, &o, &rep, &e));
    o.resume_step = 0;
    CHECK_OK(rlhf_reward_train(a, t, prefs, NULL, &o, &rep, &e));
    CHECK(memcmp(a->param_mem, b->param_mem, a->num_params * sizeof(float)) == 0);

    /* without out_dir nothing is written, and the message says only where it stopped */
    c = world_model(t, 5);
    if (!c) goto done;
    CHECK_OK(rlhf_model_add_score_head(c, -1.0f, 5));
    o.out_dir = NULL;
    o.should_stop = stop_at_step;
    s.calls = 0;
    s.at = 1;
    CHECK(rlhf_reward_train(c, t, prefs, NULL, &o, &rep, &e) == RLHF_ERR_INTERRUPTED && rep.steps == 1);
    CHECK(strcmp(e.message, "rm: stopped at step 1 of 4") == 0);
    /* a stop asked for after the last step is no stop: the run is complete */
    s.calls = 0;
    s.at = 4;
    CHECK_OK(rlhf_reward_train(c, t, prefs, NULL, &o, &rep, &e));
    CHECK(s.calls == 3);
done:
    rlhf_model_free(a); rlhf_model_free(b); rlhf_model_free(c);
    rlhf_dataset_free(d); rlhf_dataset_free(prefs);
    rlhf_tokenizer_free(t);
}

/* A run that trains into NaN or infinity fails with RLHF_ERR_NON_FINITE
   and never writes a checkpoint; non-finite options are refused by name. */
static void test_train_non_finite(void) {
    rlhf_tokenizer *t = world_tokenizer();
    rlhf_model *m = NULL;
    rlhf_dataset *d = NULL, *prefs = NULL;
    rlhf_train_options o = rlhf_train_options_sft();
    rlhf_train_report rep;
    rlhf_error e;
    if (!t) return;
    write_sft_world("build/test_nan.jsonl", 40, 9, 0);
    CHECK_OK(rlhf_dataset_load(&d, "build/test_nan.jsonl", RLHF_DATA_SFT, NULL, &e));
    m = world_model(t, 17);
    if (!m || !d) goto done;
    o.batch_size = 8; o.max_steps = 4; o.eval_every = 0; o.log_every = 0; /* validation and checkpoint at the end only */
    o.out_dir = "build";
    /* refused before anything runs, naming the field */
    o.opt.lr = INFINITY;
    CHECK(rlhf_sft_train(m, t, d, NULL, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT && strstr(e.message, "opt.lr is inf"));
    o.opt.lr = 1e-3f;
    o.opt.grad_clip = NAN;
    CHECK(rlhf_sft_train(m, t, d, NULL, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT && strstr(e.message, "opt.grad_clip"));
    o.opt.grad_clip = 1.0f;
    o.opt.weight_decay = -INFINITY;
    CHECK(rlhf_sft_train(m, t, d, NULL, &o, &rep, &e) == RLHF_ERR_INVALID_ARGUMENT && strstr(e.message, "opt.weight_decay"));
    o.opt.weight_decay = 0.1f;
    /* lr 1e38 without warm-up: AdamW's first step, lr / (1 - beta1) = 1e39,
       overflows every weight it moves. Step 2's loss is NaN and is skipped;
       the weights are then found non-finite and the run stops there. */
    o.opt.lr = 1e38f;
    o.warmup_steps = 0;
    remove("build/last.safetensors");
    remove("build/best.safetensors");
    CHECK(rlhf_sft_train(m, t, d, NULL, &o, &rep, &e) == RLHF_ERR_NON_FINITE);
    CHECK(strstr(e.message, "sft: the weights are not finite after step 1 (") == e.message && strstr(e.message, "learning rate too high?)"));
    if (!strstr(e.message, "after step 1")) fprintf(stderr, "  got \"%s\"\n", e.message);
    CHECK(rep.steps == 1 && rep.skipped_steps == 0);
    CHECK(!file_exists("build/last.safetensors") && !file_exists("build/best.safetensors"));
    /* diverged on the last step: the final checkpoint is refused */
    rlhf_model_free(m);
    m = world_model(t, 17);
    if (!m) goto done;
    o.max_steps = 1;
    CHECK(rlhf_sft_train(m, t, d, NULL, &o, &rep, &e) == RLHF_ERR_NON_FINITE);
    CHECK(strstr(e.message, "after step 1 (") && strstr(e.message, "; checkpoint not written"));
    CHECK(!file_exists("build/last.safetensors") && !file_exists("build/best.safetensors"));
    /* the reward model's loop stops the same way */
    write_preference_world("build/test_nan_prefs.jsonl", 40, 3);
    CHECK_OK(rlhf_dataset_load(&prefs, "build/test_nan_prefs.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    rlhf_model_free(m);
    m = world_model(t, 5);
    if (!m || !prefs) goto done;
    CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 5));
    o = rlhf_train_options_reward();
    o.opt.lr = 1e38f; o.batch_size = 8; o.max_steps = 4; o.eval_every = 0; o.log_every = 0;
    o.out_dir = "build";
    CHECK(rlhf_reward_train(m, t, prefs, NULL, &o, &rep, &e) == RLHF_ERR_NON_FINITE && strstr(e.message, "rm: the weights are not finite after step 1"));
    CHECK(!file_exists("build/last.safetensors") && !file_exists("build/best.safetensors"));
done:
    rlhf_model_free(m);
    rlhf_dataset_free(d); rlhf_dataset_free(prefs);
    rlhf_tokenizer_free(t);
}

/* ---- export to a Hugging Face directory --------------------------------------------
   The models below are deterministic (a tokenizer trained on fixed text,
   weights drawn from fixed seeds), rebuilt at every run and exported to
   build/hf_export/: tools/hf_reference.py reads those directories with its
   own safetensors parser, byte-level BPE and GPT-2 forward (PyTorch) and
   wrote tests/fixtures/hf_export.bin (`make hf-export-fixture` regenerates
   it). The tests read the exports back with rlhf.h and compare with it. */
static const char EXPORT_TEXT[] =
    "The quick brown fox jumps over the lazy dog. It's 12:30, isn't it? The dog's bowl holds 3 apples.\n"
    "Naïve café owners serve crème brûlée; the fox doesn't care.  Tabs\tand   spaces stay.\n"
    "Hello world! Hello there, general. We'll see what they've done, and you'd agree.\n";
#define EXPORT_DIR "build/hf_export"

/* rlhf_model_export_hf needs POSIX: elsewhere (Windows) the export tests say they skipped */
#ifdef RLHF__POSIX_IO
#define EXPORT_NEEDS_POSIX() ((void)0)
#else
#define EXPORT_NEEDS_POSIX()                                     \
    do {                                                         \
        g_skip = "exporting a directory needs POSIX (Windows)"; \
        return;                                                  \
    } while (0)
#endif
static rlhf_tokenizer *export_tokenizer(void) {
    rlhf_tokenizer *t = NULL;
    rlhf_error e;
    if (rlhf_tokenizer_train(&t, EXPORT_TEXT, sizeof EXPORT_TEXT - 1, 330, &e) != RLHF_OK) {
        fprintf(stderr, "  FAIL training the export tokenizer: %s\n", e.message);
        g_fail++;
    }
    return t;
}
/* A GPT-2 whose every weight comes from seed: matrices and embeddings
   uniform with std 0.3, biases std 0.1, LayerNorm weights 1 + std 0.2, so
   each tensor's place in the export matters to the logits. Uniform draws
   (rlhf_rng_float, then basic arithmetic rounded at each assignment) give
   the same bits on every platform; a normal draw goes through libm, whose
   last bit differs between hosts, and a weight 1 ulp away can round to
   another F16. */
static rlhf_model *export_model(int V, int n_ctx, int L, int C, uint64_t seed, int score) {
    rlhf_config cfg = {0, 0, 0, 2, 0};
    rlhf_model *m = NULL;
    rlhf_rng rng;
    int i;
    cfg.vocab_size = V; cfg.n_ctx = n_ctx; cfg.n_layer = L; cfg.n_embd = C;
    if (rlhf_model_create(&m, &cfg, seed) != RLHF_OK ||
        (score && rlhf_model_add_score_head(m, 0.5f, seed) != RLHF_OK)) {
        g_fail++;
        rlhf_model_free(m);
        return NULL;
    }
    rlhf_rng_seed(&rng, seed);
    for (i = 0; i < m->n_tensors; i++) {
        const rlhf__tensor *mt = &m->tensors[i];
        float *x = m->param_mem + mt->offset;
        int is_ln = strstr(mt->name, "ln_") != NULL, is_bias = strstr(mt->name, ".bias") != NULL;
        size_t j;
        for (j = 0; j < mt->numel; j++) {
            /* each product rounded to float through a volatile: s390x's gcc keeps float
               expressions in double (FLT_EVAL_METHOD 1), even across plain assignments */
            volatile float u = 2.0f * rlhf_rng_float(&rng) - 1.0f; /* exact: uniform in [-1, 1) */
            volatile float t = (is_ln && !is_bias ? 0.34641016f : is_bias ? 0.17320508f : 0.51961524f) * u;
            x[j] = is_ln && !is_bias ? 1.0f + t : t; /* std 0.2, 0.1, 0.3 (sqrt(3) x std x u) */
        }
    }
    return m;
}
static rlhf_result export_to(const rlhf_model *m, const rlhf_tokenizer *t, const char *name, rlhf_export_dtype dt,
                             rlhf_error *e) {
    char dir[256];
    rlhf_export_options o = rlhf_export_options_default();
    o.dtype = dt;
    o.overwrite = 1;
    snprintf(dir, sizeof dir, EXPORT_DIR "/%s", name);
    return rlhf_model_export_hf(m, t, dir, &o, e);
}
/* a fixture record of bytes (stored one per int32) as a NUL-terminated string */
static char *fx_bytes(fixture_rec *r) {
    char *s = (char *)malloc(r ? r->n + 1 : 1);
    size_t k;
    for (k = 0; r && k < r->n; k++) s[k] = (char)((const int *)r->data)[k];
    s[r ? r->n : 0] = 0;
    return s;
}
static int ids_equal(const char *what, const int *got, size_t n, fixture_rec *want) {
    size_t k;
    if (want && n == want->n && memcmp(got, want->data, n * sizeof(int)) == 0) return 1;
    for (k = 0; want && k < n && k < want->n && got[k] == ((const int *)want->data)[k]; k++) {}
    fprintf(stderr, "  FAIL %s: %zu ids, want %zu; first difference at %zu\n", what, n, want ? want->n : 0, k);
    g_fail++;
    return 0;
}
/* The tokenizer side against the reference: plain texts and the chat
   template (its text exactly, and its ids with the markers as added tokens),
   through t and through back (the tokenizer read back from vocab.json and
   merges.txt; may be NULL). */
static void export_check_tokens(fixture *fx, const char *tag, const rlhf_tokenizer *t, const rlhf_tokenizer *back) {
    fixture_rec *cnt = fixture_get(fx, "texts"), *cc = fixture_get(fx, "convs");
    int i, n = cnt ? ((const int *)cnt->data)[0] : 0, nc = cc ? ((const int *)cc->data)[0] : 0, ids[4096];
    char name[96];
    for (i = 0; i < n; i++) {
        size_t ng = 0;
        char *text;
        snprintf(name, sizeof name, "text.%d", i);
        text = fx_bytes(fixture_get(fx, name));
        snprintf(name, sizeof name, "%s.ids.%d", tag, i);
        CHECK_OK(rlhf_tokenizer_encode(t, text, strlen(text), ids, 4096, &ng));
        ids_equal(name, ids, ng, fixture_get(fx, name));
        if (back) {
            CHECK_OK(rlhf_tokenizer_encode(back, text, strlen(text), ids, 4096, &ng));
            ids_equal(name, ids, ng, fixture_get(fx, name));
        }
        free(text);
    }
    for (i = 0; i < nc; i++) {
        rlhf_message msg[8];
        char *texts[8], *want, got[8192];
        fixture_rec *roles, *gen;
        int k, nm;
        size_t ng = 0, nb = 0;
        snprintf(name, sizeof name, "conv.%d.roles", i);
        roles = fixture_get(fx, name);
        snprintf(name, sizeof name, "conv.%d.gen", i);
        gen = fixture_get(fx, name);
        if (!roles || !gen) return;
        nm = (int)roles->n;
        for (k = 0; k < nm && k < 8; k++) {
            snprintf(name, sizeof name, "conv.%d.msg.%d", i, k);
            texts[k] = fx_bytes(fixture_get(fx, name));
            msg[k].role = (rlhf_role)((const int *)roles->data)[k];
            msg[k].content.str = texts[k];
            msg[k].content.len = strlen(texts[k]);
        }
        CHECK_OK(rlhf_tokenizer_chat(t, msg, nm, ((const int *)gen->data)[0], ids, NULL, 4096, &ng));
        snprintf(name, sizeof name, "%s.conv.%d.ids", tag, i);
        ids_equal(name, ids, ng, fixture_get(fx, name));
        /* the Jinja template's text is the template's, byte for byte */
        CHECK_OK(rlhf_tokenizer_decode(t, ids, ng, got, sizeof got - 1, &nb));
        got[nb] = 0;
        snprintf(name, sizeof name, "conv.%d.text", i);
        want = fx_bytes(fixture_get(fx, name));
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "  FAIL %s: rlhf.h's template gives \"%s\", Jinja \"%s\"\n", name, got, want);
            g_fail++;
        }
        free(want);
        for (k = 0; k < nm && k < 8; k++) free(texts[k]);
    }
}
/* logits (T,V) of the fixture's ids through the model read back from dir;
   keep (may be NULL) receives the model */
static void export_check_logits(fixture *fx, const char *dir, const char *ids_name, const char *want_name,
                                const char *cols_name, double atol, double rtol, rlhf_model **keep) {
    char path[256];
    rlhf_model *m = NULL;
    rlhf_error e;
    fixture_rec *ids = fixture_get(fx, ids_name), *want = fixture_get(fx, want_name);
    fixture_rec *cols = cols_name ? fixture_get(fx, cols_name) : NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (rlhf_model_load_ex(&m, path, &e) != RLHF_OK) {
        fprintf(stderr, "  FAIL reading back %s: %s\n", path, e.message);
        g_fail++;
        return;
    }
    if (ids && want) {
        int T = (int)ids->n, V = m->cfg.vocab_size, t, k;
        float *logits = floats((size_t)T * V), *sel = floats(want->n);
        CHECK_OK(rlhf_model_logits(m, (const int *)ids->data, 1, T, logits));
        for (t = 0; cols && t < T; t++) /* only some columns of a large vocabulary are in the fixture */
            for (k = 0; k < (int)cols->n; k++)
                sel[(size_t)t * cols->n + k] = logits[(size_t)t * V + ((const int *)cols->data)[k]];
        close_enough(want_name, cols ? sel : logits, (const float *)want->data, want->n, atol, rtol);
        free(logits);
        free(sel);
    }
    if (keep) *keep = m;
    else rlhf_model_free(m);
}

/* A trained tokenizer's model and GPT-2's tokenizer with a model of its 50,262 tokens, exported and read
   back: ids, the chat template and logits against tools/hf_reference.py; logits read back bit for bit. */
static void test_export_hf(void) {
    EXPORT_NEEDS_POSIX();
    rlhf_tokenizer *t = export_tokenizer(), *back = NULL, *g2 = NULL;
    rlhf_model *m = NULL, *mb = NULL, *g = NULL;
    rlhf_error e;
    fixture fx;
    int i, loaded = 0;
    if (!t) return;
#ifdef RLHF__POSIX_IO
    mkdir("build", 0755);
    mkdir(EXPORT_DIR, 0755);
#endif
    if (!(m = export_model(rlhf_tokenizer_vocab_size(t), 24, 2, 16, 11, 0))) goto done;
    CHECK_OK(rlhf_model_set_tokenizer(m, t));
    /* the tokenizer stored in the model (t NULL), and the model in BF16 and F16 */
    if (export_to(m, NULL, "trained", RLHF_EXPORT_F32, &e) != RLHF_OK) {
        fprintf(stderr, "  FAIL export: %s\n", e.message);
        g_fail++;
        goto done;
    }
    CHECK_OK(export_to(m, t, "trained_bf16", RLHF_EXPORT_BF16, &e));
    CHECK_OK(export_to(m, t, "trained_f16", RLHF_EXPORT_F16, &e));
    /* GPT-2's own tokenizer: OpenAI's 50,257 tokens in vocab.json, the 5 added ones after them */
    if ((g2 = load_gpt2_tokenizer()) != NULL &&
        (g = export_model(rlhf_tokenizer_vocab_size(g2), 32, 1, 8, 12, 0)) != NULL)
        CHECK_OK(export_to(g, g2, "gpt2", RLHF_EXPORT_F32, &e));
    if (!(loaded = fixture_load(&fx, RLHF_FIXTURE_DIR "/hf_export.bin"))) { g_fail++; goto done; }

    /* the chat template as written, and the texts and ids it gives */
    {
        size_t len = 0;
        char *cfg = (char *)read_all(EXPORT_DIR "/trained/tokenizer_config.json", &len), *tmpl;
        rlhf_json_doc *doc = NULL;
        const rlhf_json *v = NULL;
        tmpl = fx_bytes(fixture_get(&fx, "template"));
        if (cfg && rlhf_json_parse(&doc, cfg, len, 0, NULL) == RLHF_OK)
            v = rlhf_json_get(rlhf_json_root(doc), "chat_template");
        CHECK(v && v->type == RLHF_JSON_STRING && strcmp(v->str, tmpl) == 0);
        rlhf_json_free(doc);
        free(cfg);
        free(tmpl);
    }
    /* vocab.json + merges.txt read back by rlhf.h's GPT-2 loader: the same table, the reference's ids */
    if (rlhf_tokenizer_load_gpt2_ex(&back, EXPORT_DIR "/trained/vocab.json", EXPORT_DIR "/trained/merges.txt", &e) !=
        RLHF_OK) {
        fprintf(stderr, "  FAIL reading back vocab.json + merges.txt: %s\n", e.message);
        g_fail++;
    } else
        for (i = 0; i < RLHF_NUM_SPECIAL_TOKENS; i++)
            CHECK(rlhf_tokenizer_special(back, (rlhf_special_token)i) ==
                  rlhf_tokenizer_special(t, (rlhf_special_token)i));
    export_check_tokens(&fx, "trained", t, back);

    /* logits: PyTorch's float64 forward of the exported weights (float32 error only), and the
       F32 export read back gives the model's logits bit for bit */
    export_check_logits(&fx, EXPORT_DIR "/trained", "trained.lids.0", "trained.logits.0", NULL, 1e-5, 1e-4, &mb);
    export_check_logits(&fx, EXPORT_DIR "/trained", "trained.lids.1", "trained.logits.1", NULL, 1e-5, 1e-4, NULL);
    export_check_logits(&fx, EXPORT_DIR "/trained_bf16", "trained.lids.0", "trained_bf16.logits.0", NULL, 1e-5, 1e-4,
                        NULL);
    export_check_logits(&fx, EXPORT_DIR "/trained_f16", "trained.lids.0", "trained_f16.logits.0", NULL, 1e-5, 1e-4,
                        NULL);
    if (mb) {
        fixture_rec *ids = fixture_get(&fx, "trained.lids.1");
        size_t n = ids ? ids->n * (size_t)m->cfg.vocab_size : 1;
        float *a = floats(n), *b = floats(n);
        CHECK(ids && mb->cfg.vocab_size == m->cfg.vocab_size && mb->num_params == m->num_params);
        if (ids) {
            CHECK_OK(rlhf_model_logits(m, (const int *)ids->data, 1, (int)ids->n, a));
            CHECK_OK(rlhf_model_logits(mb, (const int *)ids->data, 1, (int)ids->n, b));
            CHECK(memcmp(a, b, n * sizeof(float)) == 0);
        }
        free(a);
        free(b);
    }

    if (g2 && g) { /* GPT-2's tokenizer read back from the export */
        rlhf_tokenizer *gback = NULL;
        CHECK_OK(rlhf_tokenizer_load_gpt2_ex(&gback, EXPORT_DIR "/gpt2/vocab.json", EXPORT_DIR "/gpt2/merges.txt", &e));
        CHECK(gback && rlhf_tokenizer_vocab_size(gback) == 50262 &&
              rlhf_tokenizer_special(gback, RLHF_TOKEN_END) == 50261);
        export_check_tokens(&fx, "gpt2", g2, gback);
        export_check_logits(&fx, EXPORT_DIR "/gpt2", "gpt2.lids.0", "gpt2.logits.0", "gpt2.cols", 1e-5, 1e-4, NULL);
        rlhf_tokenizer_free(gback);
    }
done:
    if (loaded) fixture_free(&fx);
    rlhf_model_free(m);
    rlhf_model_free(mb);
    rlhf_model_free(g);
    rlhf_tokenizer_free(t);
    rlhf_tokenizer_free(back);
    rlhf_tokenizer_free(g2);
}

/* A normalised reward model as GPT2ForSequenceClassification: the reference's
   score (the logit at the last token that is not pad, plus rlhf_score_offset)
   is rlhf.h's; read back, the model scores the same and is a normalised reward model. */
static void test_export_hf_reward(void) {
    EXPORT_NEEDS_POSIX();
    rlhf_tokenizer *t = export_tokenizer();
    rlhf_model *rm = NULL, *back = NULL;
    rlhf_error e;
    fixture fx;
    fixture_rec *in, *len, *want;
    float got[8], again[8];
    if (!t) return;
#ifdef RLHF__POSIX_IO
    mkdir("build", 0755);
    mkdir(EXPORT_DIR, 0755);
#endif
    if (!(rm = export_model(rlhf_tokenizer_vocab_size(t), 24, 2, 16, 13, 1))) goto done;
    CHECK_OK(rlhf__set_meta(rm, "rlhf.kind", "reward"));
    CHECK_OK(rlhf_reward_set_normalization(rm, 1.7f, -0.3f));
    CHECK_OK(export_to(rm, t, "reward", RLHF_EXPORT_F32, &e));
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/hf_export.bin")) { g_fail++; goto done; }
    in = fixture_get(&fx, "reward.inputs");
    len = fixture_get(&fx, "reward.lengths");
    want = fixture_get(&fx, "reward.scores");
    if (in && len && want && in->dims[0] <= 8) {
        int B = in->dims[0], T = in->dims[1];
        /* float64 reference on float32 weights; the gain folded into score.weight rounds once more */
        CHECK_OK(rlhf_reward_score_ids(rm, (const int *)in->data, NULL, (const int *)len->data, B, T, got));
        close_enough("reward scores", got, (const float *)want->data, (size_t)B, 1e-5, 1e-4);
        if (rlhf_model_load_ex(&back, EXPORT_DIR "/reward/model.safetensors", &e) != RLHF_OK) {
            fprintf(stderr, "  FAIL reading back the reward model: %s\n", e.message);
            g_fail++;
        } else {
            CHECK(rlhf_model_has_score_head(back));
            CHECK(rlhf_model_meta(back, "rlhf.kind") && strcmp(rlhf_model_meta(back, "rlhf.kind"), "reward") == 0);
            CHECK(rlhf_model_meta(back, "rlhf.reward.gain") &&
                  strcmp(rlhf_model_meta(back, "rlhf.reward.gain"), "1") == 0);
            CHECK_OK(rlhf_reward_score_ids(back, (const int *)in->data, NULL, (const int *)len->data, B, T, again));
            close_enough("reward scores read back", again, (const float *)want->data, (size_t)B, 1e-5, 1e-4);
            close_enough("reward scores read back vs the model", again, got, (size_t)B, 1e-5, 1e-5);
        }
    }
    fixture_free(&fx);
done:
    rlhf_model_free(rm);
    rlhf_model_free(back);
    rlhf_tokenizer_free(t);
}

/* Export, then import through the directory: rlhf_model_load_ex(DIR) and rlhf_tokenizer_load_hf(DIR) give
   back the same tokenizer (token for token, merge for merge, the same special ids and template), the same
   logits bit for bit (F32), and a reward model's scores (its gain is folded into score.weight: one more
   rounding) */
static void export_import_tokenizer(const char *dir, const rlhf_tokenizer *t) {
    rlhf_tokenizer *back = NULL;
    rlhf_error e;
    char *a, *b;
    size_t na = 0, nb = 0;
    if (rlhf_tokenizer_load_hf(&back, dir, &e) != RLHF_OK) {
        fprintf(stderr, "  FAIL rlhf_tokenizer_load_hf(%s): %s\n", dir, e.message);
        g_fail++;
        return;
    }
    a = rlhf__tokenizer_json(t, &na);
    b = rlhf__tokenizer_json(back, &nb);
    if (!a || !b || na != nb || memcmp(a, b, na) != 0) {
        fprintf(stderr, "  FAIL %s: the tokenizer read back differs from the one exported\n", dir);
        g_fail++;
    }
    rlhf__free(a);
    rlhf__free(b);
    rlhf_tokenizer_free(back);
}
static void export_import_logits(const char *dir, rlhf_model *m) {
    rlhf_model *back = NULL;
    rlhf_error e;
    int ids[20], k, V = m->cfg.vocab_size;
    float *a = floats((size_t)20 * V), *b = floats((size_t)20 * V);
    for (k = 0; k < 20; k++) ids[k] = (k * 7919 + 3) % V;
    if (rlhf_model_load_ex(&back, dir, &e) != RLHF_OK) {
        fprintf(stderr, "  FAIL rlhf_model_load_ex(%s): %s\n", dir, e.message);
        g_fail++;
    } else {
        CHECK_OK(rlhf_model_logits(m, ids, 2, 10, a));
        CHECK_OK(rlhf_model_logits(back, ids, 2, 10, b));
        CHECK(memcmp(a, b, (size_t)20 * V * sizeof(float)) == 0);
    }
    rlhf_model_free(back);
    free(a);
    free(b);
}
static void test_export_import(void) {
    EXPORT_NEEDS_POSIX();
    rlhf_tokenizer *t = export_tokenizer(), *g2 = NULL;
    rlhf_model *m = NULL, *g = NULL, *rm = NULL, *back = NULL;
    rlhf_error e;
    if (!t) return;
#ifdef RLHF__POSIX_IO
    mkdir("build", 0755);
    mkdir(EXPORT_DIR, 0755);
#endif
    /* a trained tokenizer (with HH-RLHF's template, which travels as the Jinja string only) */
    if (!(m = export_model(rlhf_tokenizer_vocab_size(t), 24, 2, 16, 21, 0))) goto done;
    CHECK_OK(export_to(m, t, "roundtrip", RLHF_EXPORT_F32, &e));
    export_import_tokenizer(EXPORT_DIR "/roundtrip", t);
    export_import_logits(EXPORT_DIR "/roundtrip", m);
    /* GPT-2's tokenizer: vocab.json holds OpenAI's 50,257, the markers come back from the added tokens */
    if ((g2 = load_gpt2_tokenizer()) != NULL && (g = export_model(rlhf_tokenizer_vocab_size(g2), 16, 1, 8, 22, 0))) {
        CHECK_OK(export_to(g, g2, "roundtrip_gpt2", RLHF_EXPORT_F32, &e));
        export_import_tokenizer(EXPORT_DIR "/roundtrip_gpt2", g2);
        export_import_logits(EXPORT_DIR "/roundtrip_gpt2", g);
    }
    /* a normalised reward model: the directory loads as a reward model with the same scores */
    if ((rm = export_model(rlhf_tokenizer_vocab_size(t), 24, 2, 16, 23, 1)) != NULL) {
        int ids[2 * 12], lens[2] = {12, 9}, k;
        float want[2], got[2];
        for (k = 0; k < 24; k++) ids[k] = (k * 31 + 5) % rlhf_tokenizer_vocab_size(t);
        CHECK_OK(rlhf__set_meta(rm, "rlhf.kind", "reward"));
        CHECK_OK(rlhf_reward_set_normalization(rm, 2.5f, 0.75f));
        CHECK_OK(export_to(rm, t, "roundtrip_reward", RLHF_EXPORT_F32, &e));
        CHECK_OK(rlhf_reward_score_ids(rm, ids, NULL, lens, 2, 12, want));
        if (rlhf_model_load_ex(&back, EXPORT_DIR "/roundtrip_reward", &e) != RLHF_OK) {
            fprintf(stderr, "  FAIL rlhf_model_load_ex(roundtrip_reward): %s\n", e.message);
            g_fail++;
        } else {
            CHECK(rlhf_model_has_score_head(back));
            CHECK_OK(rlhf_reward_score_ids(back, ids, NULL, lens, 2, 12, got));
            close_enough("reward scores through the directory", got, want, 2, 1e-5, 1e-5);
        }
    }
done:
    rlhf_model_free(m);
    rlhf_model_free(g);
    rlhf_model_free(rm);
    rlhf_model_free(back);
    rlhf_tokenizer_free(t);
    rlhf_tokenizer_free(g2);
}

/* BF16 and F16 exports round as torch's .to(bfloat16 / float16) does (nearest, ties to even,
   subnormals): values put into wte, exported, read back (the reader widens exactly) */
static void test_export_hf_rounding(void) {
    EXPORT_NEEDS_POSIX();
    rlhf_tokenizer *t = export_tokenizer();
    rlhf_model *m = NULL, *back = NULL;
    rlhf_error e;
    fixture fx;
    fixture_rec *vals, *want[2];
    static const char *const names[2] = {"round_bf16", "round_f16"};
    int k;
    if (!t) return;
    if (!fixture_load(&fx, RLHF_FIXTURE_DIR "/hf_export.bin")) { g_fail++; rlhf_tokenizer_free(t); return; }
    vals = fixture_get(&fx, "round.values");
    want[0] = fixture_get(&fx, "round.bf16");
    want[1] = fixture_get(&fx, "round.f16");
    m = export_model(rlhf_tokenizer_vocab_size(t), 8, 1, 8, 5, 0);
    for (k = 0; m && vals && want[0] && want[1] && k < 2; k++) {
        char path[256];
        memcpy(m->params.wte, vals->data, vals->n * sizeof(float));
        CHECK_OK(export_to(m, t, names[k], k ? RLHF_EXPORT_F16 : RLHF_EXPORT_BF16, &e));
        snprintf(path, sizeof path, EXPORT_DIR "/%s/model.safetensors", names[k]);
        if (rlhf_model_load_ex(&back, path, &e) != RLHF_OK) {
            fprintf(stderr, "  FAIL reading back %s: %s\n", path, e.message);
            g_fail++;
            continue;
        }
        if (memcmp(back->params.wte, want[k]->data, vals->n * sizeof(float)) != 0) {
            size_t j;
            for (j = 0; j < vals->n && memcmp(&back->params.wte[j], (const float *)want[k]->data + j, 4) == 0; j++) {}
            fprintf(stderr, "  FAIL %s: %.9g became %.9g, torch says %.9g\n", names[k],
                    (double)((const float *)vals->data)[j], (double)back->params.wte[j],
                    (double)((const float *)want[k]->data)[j]);
            g_fail++;
        }
        rlhf_model_free(back);
        back = NULL;
    }
    fixture_free(&fx);
    rlhf_model_free(m);
    rlhf_tokenizer_free(t);
}

/* The directory is written as a unit: a refused or failed export leaves DIR as it was (and no temporary
   directory behind); an overwrite replaces an earlier export whole, and nothing else. */
#ifdef RLHF__POSIX_IO
static int same_file(const char *path, const unsigned char *bytes, size_t n) {
    size_t len = 0;
    unsigned char *b = read_all(path, &len);
    int same = b && len == n && memcmp(b, bytes, n) == 0;
    free(b);
    return same;
}
#endif
static void test_export_hf_atomic(void) {
#ifdef RLHF__POSIX_IO
    const char *dir = EXPORT_DIR "/atomic";
    rlhf_tokenizer *t = export_tokenizer();
    rlhf_model *m = NULL, *small = NULL;
    rlhf_export_options o = rlhf_export_options_default();
    rlhf_error e;
    unsigned char *cfg0 = NULL;
    size_t n0 = 0;
    char blocker[256];
    if (!t) return;
    mkdir("build", 0755);
    mkdir(EXPORT_DIR, 0755);
    if (!(m = export_model(rlhf_tokenizer_vocab_size(t), 16, 1, 8, 21, 0))) goto done;
    rlhf__export_remove(dir);
    mkdir(dir, 0755); /* an empty directory is replaced */
    CHECK_OK(rlhf_model_export_hf(m, t, dir, NULL, &e));
    cfg0 = read_all(EXPORT_DIR "/atomic/config.json", &n0);
    CHECK(cfg0 && file_exists(EXPORT_DIR "/atomic/generation_config.json"));

    /* an existing export: refused without overwrite */
    CHECK(rlhf_model_export_hf(m, t, dir, NULL, &e) == RLHF_ERR_IO && strstr(e.message, "exists and is not empty"));
    /* non-finite weights, or F16's range exceeded: refused before anything is written */
    o.overwrite = 1;
    m->params.wte[5] = NAN;
    CHECK(rlhf_model_export_hf(m, t, dir, &o, &e) == RLHF_ERR_NON_FINITE && strstr(e.message, "wte.weight[5] is ") &&
          strstr(e.message, "nan")); /* "-nan" where NAN is 0.0f / 0.0f (tcc) */
    m->params.wte[5] = 70000.0f;
    o.dtype = RLHF_EXPORT_F16;
    CHECK(rlhf_model_export_hf(m, t, dir, &o, &e) == RLHF_ERR_TOO_LARGE &&
          strstr(e.message, "wte.weight[5] is 70000, beyond F16"));
    o.dtype = RLHF_EXPORT_BF16; /* BF16 holds it */
    CHECK_OK(rlhf_model_export_hf(m, t, EXPORT_DIR "/atomic_bf16", &o, &e));
    rlhf__export_remove(EXPORT_DIR "/atomic_bf16");
    o.dtype = RLHF_EXPORT_F32;
    /* a failure while writing: the temporary directory cannot be made (a file is in its place) */
    snprintf(blocker, sizeof blocker, "%s.tmp-%ld", dir, (long)getpid());
    write_file(blocker, "x", 1);
    CHECK(rlhf_model_export_hf(m, t, dir, &o, &e) == RLHF_ERR_IO &&
          strstr(e.message, "cannot create the temporary directory"));
    remove(blocker);
    CHECK(same_file(EXPORT_DIR "/atomic/config.json", cfg0, n0));
    /* a model whose tokenizer does not fit its vocabulary */
    small = export_model(100, 16, 1, 8, 21, 0);
    CHECK(small && rlhf_model_export_hf(small, t, EXPORT_DIR "/atomic_small", NULL, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          strstr(e.message, "but the model only 100"));
    CHECK(!file_exists(EXPORT_DIR "/atomic_small"));

    /* overwrite: a file the export does not write is never deleted: refused */
    write_file(EXPORT_DIR "/atomic/notes.txt", "mine", 4);
    CHECK(rlhf_model_export_hf(m, t, dir, &o, &e) == RLHF_ERR_IO && strstr(e.message, "holds \"notes.txt\""));
    CHECK(file_exists(EXPORT_DIR "/atomic/notes.txt") && same_file(EXPORT_DIR "/atomic/config.json", cfg0, n0));
    remove(EXPORT_DIR "/atomic/notes.txt");
    /* overwrite of an earlier export: the new one whole (a reward model: no generation_config.json) */
    m->params.wte[5] = 0.5f;
    CHECK_OK(rlhf_model_add_score_head(m, 0.5f, 3));
    CHECK_OK(rlhf_model_export_hf(m, t, dir, &o, &e));
    CHECK(!same_file(EXPORT_DIR "/atomic/config.json", cfg0, n0) &&
          !file_exists(EXPORT_DIR "/atomic/generation_config.json"));
    snprintf(blocker, sizeof blocker, "%s.old-%ld", dir, (long)getpid());
    CHECK(!file_exists(blocker));
    snprintf(blocker, sizeof blocker, "%s.tmp-%ld", dir, (long)getpid());
    CHECK(!file_exists(blocker));
done:
    free(cfg0);
    rlhf_model_free(m);
    rlhf_model_free(small);
    rlhf_tokenizer_free(t);
#else
    g_skip = "exporting a directory needs POSIX";
#endif
}

/* ---- issue 13, item 5: long records, one rule ------------------------------------- */

/* the rule on lengths alone, and its report line */
static void long_records_cut_rule(void) {
    static const size_t turns[4] = {0, 10, 20, 29}; /* a 30-token prompt: three turns, then <|assistant|> at 29 */
    rlhf_fit_report f;
    char line[256];
    int mid = -1;
    CHECK(rlhf_fit_cut(30, turns, 4, 10, 40, &mid) == 0 && mid == 0);    /* fits whole */
    CHECK(rlhf_fit_cut(30, turns, 4, 10, 25, &mid) == 20 && mid == 0);   /* room 15: the last turn (10) fits, not two */
    CHECK(rlhf_fit_cut(30, turns, 4, 10, 39, &mid) == 10 && mid == 0);   /* room 29: the earliest start that fits */
    CHECK(rlhf_fit_cut(30, turns, 4, 20, 25, &mid) == 25 && mid == 1);   /* room 5 < the last turn: its tail, mid-turn */
    CHECK(rlhf_fit_cut(30, turns, 4, 24, 25, &mid) == 29 && mid == 1);   /* room 1: <|assistant|> alone, the minimum */
    CHECK(rlhf_fit_cut(30, turns, 4, 25, 25, &mid) == -1);               /* the completion leaves no room: skipped */
    CHECK(rlhf_fit_cut(30, NULL, 0, 10, 25, &mid) == 15 && mid == 1);    /* no turn starts known: its last tokens */
    CHECK(rlhf_fit_cut(0, NULL, 0, 4, 4, NULL) == 0 && rlhf_fit_cut(0, NULL, 0, 5, 4, NULL) == -1);
    memset(&f, 0, sizeof f);
    f.kept = 9120, f.prompts_cut = 1204, f.mid_turn = 3, f.skipped = 311, f.max_len = 256;
    CHECK(strcmp(rlhf_fit_describe(&f, line, sizeof line), "9,120 records kept (1,204 prompts cut from the left, 3 mid-turn), "
                                                          "311 skipped (completion longer than 255 tokens)") == 0);
    f.prompts_only = 1, f.mid_turn = 0;
    CHECK(strcmp(rlhf_fit_describe(&f, line, sizeof line), "9,120 prompts kept (1,204 cut from the left to 256 tokens)") == 0);
    f.prompts_only = 0, f.kept = 1, f.prompts_cut = 1, f.skipped = 0, f.max_len = 48;
    CHECK(strcmp(rlhf_fit_describe(&f, line, sizeof line), "1 record kept (1 prompt cut from the left), 0 skipped "
                                                          "(completion longer than 47 tokens)") == 0);
}

/* The chat template's ids of a record, whole (the test's own reading of the
   template): the prompt up to <|assistant|>, and the response after it. */
static size_t whole_prompt(const rlhf_tokenizer *t, const rlhf_record *r, int *ids) {
    size_t n = 0;
    CHECK_OK(rlhf_prompt_encode(t, r, ids, 1024, &n));
    return n;
}
/* Kept ids == the rightmost kp tokens of the whole prompt, then the whole response. */
static int kept_is_right_part(const int *kept, size_t n_kept, const int *prompt, size_t np, const int *resp, size_t nr) {
    size_t kp;
    if (n_kept < nr + 1 || n_kept - nr > np) return 0;
    kp = n_kept - nr;
    return memcmp(kept, prompt + (np - kp), kp * sizeof(int)) == 0 &&
           (nr == 0 || memcmp(kept + kp, resp, nr * sizeof(int)) == 0); /* resp may be NULL when nr is 0 */
}

static const char LONG_TEXT[] = "one two three four five six seven eight nine ten. one two three four five six seven eight nine "
                                "ten. the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog.";
/* SFT under the rule, record by record and through the stage (n_ctx 48: 49 tokens, 48 positions) */
static void long_records_sft(const rlhf_tokenizer *t) {
    FILE *f = fopen("build/test_long_sft.jsonl", "wb");
    rlhf_dataset *d = NULL;
    rlhf_fit_report fit;
    rlhf_train_options o = rlhf_train_options_sft();
    rlhf_train_report rep;
    rlhf_error e;
    rlhf_model *m = NULL;
    int ids[1024], prompt[1024], full[1024];
    unsigned char mask[1024];
    size_t i, n, np, nf;
    if (!f) return;
    fprintf(f, "{\"prompt\": \"rate this:\", \"completion\": \"good\"}\n");                            /* 1: fits */
    fprintf(f, "{\"prompt\": \"%s\", \"completion\": \"yes\"}\n", LONG_TEXT);                         /* 2: mid-turn cut */
    fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"okay\"}, "
               "{\"role\": \"user\", \"content\": \"rate this:\"}, {\"role\": \"assistant\", \"content\": \"good\"}]}\n",
            LONG_TEXT);                                                                                 /* 3: cut at a turn */
    fprintf(f, "{\"prompt\": \"rate this:\", \"completion\": \"%s\"}\n", LONG_TEXT);                  /* 4: skipped */
    fclose(f);
    CHECK_OK(rlhf_dataset_load(&d, "build/test_long_sft.jsonl", RLHF_DATA_SFT, NULL, &e));
    if (!d) return;
    memset(&fit, 0, sizeof fit);
    for (i = 0; i < rlhf_dataset_size(d); i++) {
        const rlhf_record *r = rlhf_dataset_record(d, i);
        rlhf_result res = rlhf_sft_encode_fit(t, r, 49, ids, mask, 1024, &n, &fit);
        np = whole_prompt(t, r, prompt);
        CHECK_OK(rlhf_sft_encode(t, r, full, NULL, 1024, &nf)); /* whole: the prompt, then the response */
        printf("    sft record %zu: prompt %zu + response %zu tokens -> %zu kept\n", i + 1, np, nf - np, n);
        if (i == 3) {
            CHECK(res == RLHF_ERR_CONTEXT_FULL && n == 0 && nf - np > 48);
            continue;
        }
        CHECK(res == RLHF_OK && n <= 49 && kept_is_right_part(ids, n, prompt, np, full + np, nf - np));
        CHECK(mask[n - 1] == 1 && mask[n - (nf - np)] == 1 && mask[n - (nf - np) - 1] == 0); /* the response learned */
        if (i == 0) CHECK(n == nf);
        if (i == 1) CHECK(n == 49);                                               /* mid-turn: every position used */
        if (i == 2) CHECK(n < 49 && ids[0] == rlhf_tokenizer_special(t, RLHF_TOKEN_ASSISTANT)); /* whole turns */
    }
    CHECK(fit.kept == 3 && fit.prompts_cut == 2 && fit.mid_turn == 1 && fit.skipped == 1 && fit.max_len == 49);

    /* the stage: the same counts in its report, and it trains on what it kept */
    m = world_model(t, 5);
    o.max_steps = 1, o.batch_size = 2, o.val_fraction = 0, o.log_every = 0;
    if (m) CHECK_OK(rlhf_sft_train(m, t, d, NULL, &o, &rep, &e));
    if (m) CHECK(rep.fit.kept == 3 && rep.fit.prompts_cut == 2 && rep.fit.mid_turn == 1 && rep.fit.skipped == 1 &&
                 rep.truncated == 2 && rep.dropped == 1 && rep.train_examples == 3);
    rlhf_model_free(m);
    rlhf_dataset_free(d);
}

/* Reward model, scoring and normalisation under the rule (n_ctx 48) */
static void long_records_reward(const rlhf_tokenizer *t) {
    FILE *f = fopen("build/test_long_prefs.jsonl", "wb");
    rlhf_dataset *d = NULL;
    rlhf_fit_report fit, nfit;
    rlhf_train_options o = rlhf_train_options_reward();
    rlhf_train_report rep;
    rlhf_sampler_config sc = rlhf_sampler_config_default();
    rlhf_error e;
    rlhf_model *m = NULL, *policy = NULL;
    int prompt[1024], resp[2][1024], row[2][64], lens[2];
    size_t i, np, nr[2];
    float s[2], want[2], mean, sd;
    if (!f) return;
    fprintf(f, "{\"prompt\": \"rate this:\", \"chosen\": \"good good\", \"rejected\": \"bad\"}\n");         /* fits */
    fprintf(f, "{\"prompt\": \"%s\", \"chosen\": \"good\", \"rejected\": \"bad meh\"}\n", LONG_TEXT);      /* cut */
    fprintf(f, "{\"prompt\": \"rate this:\", \"chosen\": \"%s\", \"rejected\": \"bad\"}\n", LONG_TEXT);    /* skipped */
    fprintf(f, "{\"prompt\": \"answer: yes no maybe. one two three four\", \"chosen\": \"good\", "
               "\"rejected\": \"the quick brown fox jumps over the lazy dog\"}\n"); /* cut for the longer rejected */
    fclose(f);
    CHECK_OK(rlhf_dataset_load(&d, "build/test_long_prefs.jsonl", RLHF_DATA_PREFERENCE, NULL, &e));
    m = world_model(t, 6);
    policy = world_model(t, 7);
    if (!d || !m || !policy) goto done;
    CHECK_OK(rlhf_model_add_score_head(m, -1.0f, 6));

    /* scoring: each completion after the same kept prompt, scored as those ids alone */
    memset(&fit, 0, sizeof fit);
    for (i = 0; i < rlhf_dataset_size(d); i++) {
        const rlhf_record *r = rlhf_dataset_record(d, i);
        rlhf_result res = rlhf_reward_score_record(m, t, r, 0, s, &fit);
        size_t k, kp, longest;
        np = whole_prompt(t, r, prompt);
        for (k = 0; k < 2; k++) { /* the response: the assistant turn's ids after its role marker */
            rlhf_message a;
            int tmp[1024];
            a.role = RLHF_ROLE_ASSISTANT, a.content = k == 0 ? r->chosen : r->rejected;
            CHECK_OK(rlhf_tokenizer_chat(t, &a, 1, 0, tmp, NULL, 1024, &nr[k]));
            memcpy(resp[k], tmp + 1, --nr[k] * sizeof(int));
        }
        longest = nr[0] > nr[1] ? nr[0] : nr[1];
        printf("    pair %zu: prompt %zu + responses %zu, %zu tokens\n", i + 1, np, nr[0], nr[1]);
        if (i == 2) {
            CHECK(res == RLHF_ERR_CONTEXT_FULL && longest >= 48);
            continue;
        }
        CHECK_OK(res);
        kp = np + longest <= 48 ? np : 48 - longest; /* a single user turn: no turn start but its own fits */
        for (k = 0; k < 2; k++) {
            memcpy(row[k], prompt + (np - kp), kp * sizeof(int));
            memcpy(row[k] + kp, resp[k], nr[k] * sizeof(int));
            lens[k] = (int)(kp + nr[k]);
            CHECK_OK(rlhf_reward_score_ids(m, row[k], NULL, &lens[k], 1, lens[k], &want[k]));
        }
        close_enough("score of the kept ids", s, want, 2, 1e-6, 1e-5);
    }
    CHECK(fit.kept == 3 && fit.prompts_cut == 2 && fit.mid_turn == 2 && fit.skipped == 1 && fit.max_len == 48);

    /* training: the same counts */
    o.max_steps = 1, o.batch_size = 2, o.val_fraction = 0, o.log_every = 0;
    CHECK_OK(rlhf_reward_train(m, t, d, NULL, &o, &rep, &e));
    CHECK(rep.fit.kept == 3 && rep.fit.prompts_cut == 2 && rep.fit.skipped == 1 && rep.dropped == 1 && rep.train_examples == 3);

    /* normalisation: every prompt used, the long one cut to 48 - 8 tokens; 8 samples go round the 4 records twice */
    memset(&nfit, 0, sizeof nfit);
    CHECK_OK(rlhf_reward_normalize_ex(m, policy, t, d, 8, &sc, 8, 3, 0, &mean, &sd, &nfit, &e));
    CHECK(nfit.kept == 8 && nfit.prompts_cut == 2 && nfit.mid_turn == 2 && nfit.skipped == 0 && nfit.max_len == 40 &&
          nfit.prompts_only == 1);
    CHECK(rlhf_reward_normalize_ex(m, policy, t, d, 8, &sc, 8, 3, 49, &mean, &sd, &nfit, &e) == RLHF_ERR_INVALID_ARGUMENT &&
          strstr(e.message, "max_len") != NULL);
done:
    rlhf_model_free(m);
    rlhf_model_free(policy);
    rlhf_dataset_free(d);
}

/* PPO prompts under the rule: counted once at creation, cut from the left in the rollouts */
static void long_records_ppo(void) {
    ppo_world w;
    rlhf_ppo_config c = ppo_test_config();
    rlhf_ppo *q = NULL;
    rlhf_dataset *long_prompts = NULL;
    rlhf_fit_report pf;
    rlhf_error e;
    int ids[1024], whole[1024];
    size_t n, nw;
    FILE *f;
    if (!ppo_world_make(&w, &c)) { ppo_world_free(&w); return; }
    f = fopen("build/test_long_prompts.jsonl", "wb");
    if (!f) { ppo_world_free(&w); return; }
    fprintf(f, "{\"prompt\": \"rate this:\"}\n{\"prompt\": \"%s\"}\n", LONG_TEXT);
    fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"okay\"}, "
               "{\"role\": \"user\", \"content\": \"rate this:\"}]}\n", LONG_TEXT);
    fclose(f);
    CHECK_OK(rlhf_dataset_load(&long_prompts, "build/test_long_prompts.jsonl", RLHF_DATA_PROMPTS, NULL, &e));
    c.max_prompt_tokens = 20;
    if (long_prompts) CHECK_OK(ppo_create_with(&q, w.policy, w.ref, w.critic, NULL, count_good, &w.task, w.t, long_prompts, NULL, &c, &e));
    pf = rlhf_ppo_prompt_fit(q);
    CHECK(q && pf.kept == 3 && pf.prompts_cut == 2 && pf.mid_turn == 1 && pf.skipped == 0 && pf.max_len == 20);
    if (q) CHECK_OK(rlhf_ppo_step(q, NULL, &e)); /* the rollouts take the cut prompts */
    if (long_prompts) { /* the turn cut keeps the last exchange, from its <|assistant|> on */
        nw = whole_prompt(w.t, rlhf_dataset_record(long_prompts, 2), whole);
        CHECK_OK(rlhf_prompt_encode_fit(w.t, rlhf_dataset_record(long_prompts, 2), 20, ids, 1024, &n, NULL));
        CHECK(n < 20 && kept_is_right_part(ids, n, whole, nw, NULL, 0) && ids[0] == rlhf_tokenizer_special(w.t, RLHF_TOKEN_ASSISTANT));
        nw = whole_prompt(w.t, rlhf_dataset_record(long_prompts, 1), whole);
        CHECK_OK(rlhf_prompt_encode_fit(w.t, rlhf_dataset_record(long_prompts, 1), 20, ids, 1024, &n, NULL));
        CHECK(n == 20 && kept_is_right_part(ids, n, whole, nw, NULL, 0));
    }
    rlhf_ppo_free(q);
    rlhf_dataset_free(long_prompts);
    ppo_world_free(&w);
}

/* Records longer than n_ctx through SFT, the reward model, scoring,
   normalisation and PPO prompts: one rule, exact counts, and the kept ids
   are the rightmost part of the prompt plus the whole completion. */
/* Under HH-RLHF's template (no role markers) a prompt is cut at a turn start too: the kept part of a
   six-turn conversation is the template of its last turns alone, ids and mask */
static void long_records_hh(void) {
    rlhf_tokenizer *t = NULL;
    rlhf_error e;
    rlhf_message msg[6];
    rlhf_record rec;
    rlhf_fit_report fit;
    static const char *const text[6] = {"how do I add 2 and 3", "you add them: 5", "and 10 and 20",
                                        "that is 30", "and 7 and 8 please", "15"};
    int ids[512], tail[512], j, found = -1;
    unsigned char mask[512], tmask[512];
    size_t n = 0, nt = 0, full = 0;
    CHECK_OK(rlhf_tokenizer_train(&t, TOK_CORPUS, strlen(TOK_CORPUS), 300, &e));
    if (!t) return;
    CHECK_OK(rlhf_tokenizer_set_template(t, RLHF_TEMPLATE_HH));
    for (j = 0; j < 6; j++) {
        msg[j].role = j % 2 ? RLHF_ROLE_ASSISTANT : RLHF_ROLE_USER;
        msg[j].content.str = text[j];
        msg[j].content.len = strlen(text[j]);
    }
    memset(&rec, 0, sizeof rec);
    rec.kind = RLHF_RECORD_MESSAGES;
    rec.messages = msg;
    rec.n_messages = 6;
    CHECK_OK(rlhf_tokenizer_chat(t, msg, 6, 0, ids, mask, 512, &full));
    memset(&fit, 0, sizeof fit);
    CHECK_OK(rlhf_sft_encode_fit(t, &rec, (int)full - 8, ids, mask, 512, &n, &fit));
    CHECK(fit.kept == 1 && fit.prompts_cut == 1 && fit.mid_turn == 0);
    for (j = 1; j < 6; j++) { /* which turn the kept part starts with */
        CHECK_OK(rlhf_tokenizer_chat(t, msg + j, 6 - j, 0, tail, tmask, 512, &nt));
        if (nt == n && memcmp(tail, ids, n * sizeof(int)) == 0 && memcmp(tmask, mask, n) == 0) found = j;
    }
    CHECK(found >= 1);
    if (found > 1) { /* the longest tail that fits: one more turn would not */
        CHECK_OK(rlhf_tokenizer_chat(t, msg + found - 1, 7 - found, 0, tail, NULL, 512, &nt));
        CHECK(nt > full - 8);
    }
    rlhf_tokenizer_free(t);
}
static void test_long_records(void) {
    rlhf_tokenizer *t = world_tokenizer();
    long_records_cut_rule();
    long_records_hh();
    if (!t) return;
    long_records_sft(t);
    long_records_reward(t);
    long_records_ppo();
    rlhf_tokenizer_free(t);
}

static const test_case TESTS[] = {
    {"result_strings", test_result_strings, 0},
    {"alloc_alignment", test_alloc_alignment, 0},
    {"rng", test_rng, 0},
    {"kernel_dot_axpy", test_kernel_dot_axpy, 0},
    {"kernel_gemm_tile", test_kernel_gemm_tile, 0},
    {"kernel_gemm", test_kernel_gemm, 0},
    {"kernel_gemv", test_kernel_gemv, 0},
    {"kernel_gemm_few", test_kernel_gemm_few, 0},
    {"kernel_gemm_few_cols_big", test_kernel_gemm_few_cols_big, 1},
    {"kernel_adamw", test_kernel_adamw, 0},
    {"kernel_sumsq", test_kernel_sumsq, 0},
    {"kernel_bias_backward", test_kernel_bias_backward, 0},
    {"exp_accuracy", test_exp_accuracy, 0},
    {"kernel_gelu", test_kernel_gelu, 0},
    {"kernel_gelu_lanes", test_kernel_gelu_lanes, 0},
    {"kernel_layernorm", test_kernel_layernorm, 0},
    {"kernel_softmax", test_kernel_softmax, 0},
    {"kernel_softmax_lanes", test_kernel_softmax_lanes, 0},
    {"kernel_crossentropy", test_kernel_crossentropy, 0},
    {"fd_layernorm", test_fd_layernorm, 0},
    {"fd_gelu", test_fd_gelu, 0},
    {"fd_attention", test_fd_attention, 0},
    {"fd_crossentropy", test_fd_crossentropy, 0},
    {"fd_linear", test_fd_linear, 0},
    {"fd_model", test_fd_model, 0},
    {"golden_pytorch", test_golden_pytorch, 0},
    {"golden_attention", test_golden_attention, 0},
    {"golden_reward", test_golden_reward, 0},
    {"golden_dpo", test_golden_dpo, 0},
    {"fd_dpo", test_fd_dpo, 0},
    {"dpo_learns", test_dpo_learns, 1},
    {"fd_kto", test_fd_kto, 0},
    {"kto_learns", test_kto_learns, 1},
    {"best_of_n", test_best_of_n, 0},
    {"fd_reward_model", test_fd_reward_model, 0},
    {"reward_padding", test_reward_padding, 0},
    {"reward_learnable", test_reward_learnable, 1},
    {"sft_completion_only", test_sft_completion_only, 1},
    {"pretrain_text", test_pretrain_text, 1},
    {"sft_resume", test_sft_resume, 0},
    {"train_stop", test_train_stop, 0},
    {"train_non_finite", test_train_non_finite, 0},
    {"ppo_losses", test_ppo_losses, 0},
    {"ppo_padded_generation", test_ppo_padded_generation, 0},
    {"fd_logprobs", test_fd_logprobs, 0},
    {"ppo_learns", test_ppo_learns, 1},
    {"group_learns", test_group_learns, 1},
    {"fd_group", test_fd_group, 0},
    {"group_resume", test_group_resume, 0},
    {"nan_rewards", test_nan_rewards, 0},
    {"ppo_guards", test_ppo_guards, 0},
    {"ppo_threads", test_ppo_threads, 0},
    {"ppo_resume", test_ppo_resume, 0},
    {"ppo_save_journal", test_ppo_save_journal, 0},
    {"ppo_ptx_and_guards", test_ppo_ptx_and_guards, 1},
    {"kv_decode_matches_forward", test_kv_decode_matches_forward, 0},
    {"determinism", test_determinism, 0},
    {"recompute", test_recompute, 0},
    {"threads_same_bytes", test_threads_same_bytes, 0},
    {"train_memorises", test_train_memorises, 0},
    {"grad_accumulation", test_grad_accumulation, 0},
    {"memory_budget", test_memory_budget, 0},
    {"errors", test_errors, 0},
    {"tensor_table", test_tensor_table, 0},
    {"sampling", test_sampling, 0},
    {"generate", test_generate, 0},
    {"json_values", test_json_values, 0},
    {"json_errors", test_json_errors, 0},
    {"jsonl", test_jsonl, 0},
    {"safetensors_roundtrip", test_safetensors_roundtrip, 0},
    {"safetensors_resume", test_safetensors_resume, 0},
    {"safetensors_hf", test_safetensors_hf, 0},
    {"safetensors_hostile", test_safetensors_hostile, 0},
    {"safetensors_bad_moments", test_safetensors_bad_moments, 0},
    {"safetensors_endian", test_safetensors_endian, 0},
    {"hf_directory", test_hf_directory, 0},
    {"datasets", test_datasets, 0},
    {"datasets_trl", test_datasets_trl, 0},
    {"datasets_trl_malformed", test_datasets_trl_malformed, 0},
    {"datasets_hh_turns", test_datasets_hh_turns, 0},
    {"bom", test_bom, 0},
    {"tokenizer_gpt2_parity", test_tokenizer_gpt2_parity, 0},
    {"tokenizer_train", test_tokenizer_train, 0},
    {"tokenizer_chat", test_tokenizer_chat, 0},
    {"tokenizer_hh", test_tokenizer_hh, 0},
    {"datasets_chat_ids", test_datasets_chat_ids, 0},
    {"tokenizer_save", test_tokenizer_save, 0},
    {"tokenizer_malformed", test_tokenizer_malformed, 0},
    {"tokenizer_hf", test_tokenizer_hf, 0},
    {"ranking_loss", test_ranking_loss, 0},
    {"gae", test_gae, 0},
    {"kl_control", test_kl_control, 0},
    {"resize_vocab", test_resize_vocab, 0},
    {"ppo_missing_eos", test_ppo_missing_eos, 0},
    {"export_hf", test_export_hf, 0},
    {"export_hf_reward", test_export_hf_reward, 0},
    {"export_hf_rounding", test_export_hf_rounding, 0},
    {"export_hf_atomic", test_export_hf_atomic, 0},
    {"export_import", test_export_import, 0},
    {"long_records", test_long_records, 0},
};

int main(int argc, char **argv) {
    size_t i, n = sizeof TESTS / sizeof TESTS[0];
    int failed = 0, ran = 0, skipped = 0, no_slow = argc > 1 && strcmp(argv[1], "--no-slow") == 0;
    const char *filter = argc > 1 + no_slow ? argv[1 + no_slow] : NULL;
    printf("rlhf.h %s tests: simd %s, %d thread(s)\n", RLHF_VERSION_STRING, rlhf_simd_name(), rlhf_num_threads());
    if (!(g_att_work = rlhf__gemm_work_alloc())) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (filter && !strstr(TESTS[i].name, filter)) continue;
        if (no_slow && TESTS[i].slow) {
            printf("%-28s skipped (--no-slow)\n", TESTS[i].name);
            skipped++;
            continue;
        }
        g_fail = 0;
        g_skip = NULL;
        TESTS[i].fn();
        if (g_skip && !g_fail) {
            printf("%-28s skipped (%s)\n", TESTS[i].name, g_skip);
            skipped++;
            continue;
        }
        printf("%-28s %s\n", TESTS[i].name, g_fail ? "FAIL" : "ok");
        fflush(stdout);
        ran++;
        if (g_fail) failed++;
    }
    if (ran == 0 && skipped == 0) {
        fprintf(stderr, "no test matches \"%s\"\n", filter ? filter : "");
        return 2;
    }
    printf("%d of %d tests passed", ran - failed, ran);
    if (skipped) printf(" (%d skipped)", skipped);
    printf("\n");
    rlhf__free(g_att_work);
    return failed ? 1 : 0;
}
