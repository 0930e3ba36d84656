/* plot.h - SVG charts of a run directory's metrics.jsonl, no dependencies.
   Part of the rlhf tool: tools/rlhf.c includes it once, after rlhf.h.

   plot_run(dir, &po) writes into dir every chart its metrics.jsonl allows:
     loss.svg                   training loss, one panel per stage (pretraining, SFT, reward model)
     reward_model.svg           the reward model's pairwise accuracy, training batches and held out
     ppo.svg                    PPO per iteration: reward-model and gold scores; KL to SFT below
     gold_vs_proxy.svg          gold judge and reward model (proxy) against KL to SFT: the
                                over-optimisation curve of Gao et al. 2022
     gold_vs_proxy_sqrt_kl.svg  the same against sqrt(KL), the x axis of their figures
     dpo.svg                    DPO: loss, pairs ranked right and reward margin (training
                                batches and held out), the implicit rewards of chosen and
                                rejected replies
     kto.svg                    KTO: loss (training batches and held out), held-out records on
                                their label's side of the reference point z, z itself (the KL
                                estimate), the implicit rewards of desirable and undesirable
                                completions
     grpo.svg, rloo.svg         GRPO, RLOO per iteration: score, KL to SFT, the spread of the
                                rewards within groups and the groups without any
   Ticks fall on 1, 2 or 5 x 10^k; legends sit in a band below the panels; noisy
   curves get a moving average drawn over the faint raw values. */
#ifndef RLHF_PLOT_H
#define RLHF_PLOT_H
#include "atomic_file.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* smooth: moving-average window in points (0: off, -1: automatic, ~n/20) */
typedef struct plot_options { int smooth; int verbose; } plot_options;
static plot_options plot_options_default(void) {
    plot_options o;
    o.smooth = -1;
    o.verbose = 1;
    return o;
}

/* Every series the charts can draw; index 0 is "none" so a zeroed slot is empty. */
enum { PS_NONE, PS_PRE, PS_PRE_VAL, PS_SFT, PS_SFT_VAL, PS_RM, PS_RM_VAL, PS_ACC, PS_ACC_VAL, PS_SCORE, PS_KL,
       PS_GOLD_IT, PS_PROXY_KL, PS_GOLD_KL, PS_PROXY_SQ, PS_GOLD_SQ, PS_DPO, PS_DPO_VAL, PS_DPO_ACC, PS_DPO_ACC_VAL,
       PS_DPO_MARGIN, PS_DPO_MARGIN_VAL, PS_DPO_CHOSEN, PS_DPO_REJECTED,
       PS_GRPO_SCORE, PS_GRPO_KL, PS_GRPO_STD, PS_GRPO_ZERO, PS_RLOO_SCORE, PS_RLOO_KL, PS_RLOO_STD, PS_RLOO_ZERO,
       PS_KTO, PS_KTO_VAL, PS_KTO_ACC_VAL, PS_KTO_KL, PS_KTO_KL_VAL, PS_KTO_CHOSEN, PS_KTO_REJECTED, PS_N };
/* a line; a line with a dot per point (sparse evaluations); dots with a fitted trend through them */
enum { PLOT_LINE, PLOT_MARKS, PLOT_SCATTER };
static const struct plot_look { const char *label, *color; int style; } plot_looks[PS_N] = {
    {"", "", 0},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"reward model (proxy), PPO batches", "#1f77b4", PLOT_LINE}, {"KL to SFT", "#2ca02c", PLOT_LINE},
    {"gold judge, held-out prompts", "#e6550d", PLOT_MARKS},
    {"reward model (proxy), PPO batches", "#1f77b4", PLOT_SCATTER}, {"gold judge, held-out prompts", "#e6550d", PLOT_SCATTER},
    {"reward model (proxy), PPO batches", "#1f77b4", PLOT_SCATTER}, {"gold judge, held-out prompts", "#e6550d", PLOT_SCATTER},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"chosen replies (training batches)", "#2ca02c", PLOT_LINE}, {"rejected replies (training batches)", "#d62728", PLOT_LINE},
    {"reward model, sampled replies", "#1f77b4", PLOT_LINE}, {"KL to SFT", "#2ca02c", PLOT_LINE},
    {"std of the rewards within a group, mean over groups", "#9467bd", PLOT_LINE},
    {"groups whose replies all scored the same", "#d62728", PLOT_LINE},
    {"reward model, sampled replies", "#1f77b4", PLOT_LINE}, {"KL to SFT", "#2ca02c", PLOT_LINE},
    {"std of the rewards within a group, mean over groups", "#9467bd", PLOT_LINE},
    {"groups whose replies all scored the same", "#d62728", PLOT_LINE},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"training batches", "#1f77b4", PLOT_LINE}, {"held out", "#ff7f0e", PLOT_MARKS},
    {"desirable completions (training batches)", "#2ca02c", PLOT_LINE},
    {"undesirable completions (training batches)", "#d62728", PLOT_LINE}};
/* where each series comes from: lines of `stage`, x and y read from two keys */
static const struct plot_src { const char *stage, *xkey, *ykey; int s, sqrt_x; } plot_srcs[] = {
    {"pretrain", "step", "loss", PS_PRE, 0}, {"pretrain", "step", "val/loss", PS_PRE_VAL, 0},
    {"sft", "step", "loss", PS_SFT, 0}, {"sft", "step", "val/loss", PS_SFT_VAL, 0},
    {"rm", "step", "loss", PS_RM, 0}, {"rm", "step", "val/loss", PS_RM_VAL, 0},
    {"rm", "step", "accuracy", PS_ACC, 0}, {"rm", "step", "val/accuracy", PS_ACC_VAL, 0},
    {"ppo", "step", "objective/scores", PS_SCORE, 0}, {"ppo", "step", "objective/kl", PS_KL, 0},
    {"ppo_gold", "step", "gold/heldout", PS_GOLD_IT, 0},
    {"ppo_gold", "objective/kl", "objective/scores", PS_PROXY_KL, 0}, {"ppo_gold", "objective/kl", "gold/heldout", PS_GOLD_KL, 0},
    {"ppo_gold", "objective/kl", "objective/scores", PS_PROXY_SQ, 1}, {"ppo_gold", "objective/kl", "gold/heldout", PS_GOLD_SQ, 1},
    {"dpo", "step", "loss", PS_DPO, 0}, {"dpo", "step", "val/loss", PS_DPO_VAL, 0},
    {"dpo", "step", "rewards/accuracies", PS_DPO_ACC, 0}, {"dpo", "step", "val/rewards/accuracies", PS_DPO_ACC_VAL, 0},
    {"dpo", "step", "rewards/margins", PS_DPO_MARGIN, 0}, {"dpo", "step", "val/rewards/margins", PS_DPO_MARGIN_VAL, 0},
    {"dpo", "step", "rewards/chosen", PS_DPO_CHOSEN, 0}, {"dpo", "step", "rewards/rejected", PS_DPO_REJECTED, 0},
    {"grpo", "step", "objective/scores", PS_GRPO_SCORE, 0}, {"grpo", "step", "objective/kl", PS_GRPO_KL, 0},
    {"grpo", "step", "reward_std", PS_GRPO_STD, 0}, {"grpo", "step", "frac_reward_zero_std", PS_GRPO_ZERO, 0},
    {"rloo", "step", "objective/scores", PS_RLOO_SCORE, 0}, {"rloo", "step", "objective/kl", PS_RLOO_KL, 0},
    {"rloo", "step", "reward_std", PS_RLOO_STD, 0}, {"rloo", "step", "frac_reward_zero_std", PS_RLOO_ZERO, 0},
    {"kto", "step", "loss", PS_KTO, 0}, {"kto", "step", "val/loss", PS_KTO_VAL, 0},
    {"kto", "step", "val/accuracy", PS_KTO_ACC_VAL, 0}, {"kto", "step", "kl", PS_KTO_KL, 0},
    {"kto", "step", "val/kl", PS_KTO_KL_VAL, 0}, {"kto", "step", "rewards/chosen", PS_KTO_CHOSEN, 0},
    {"kto", "step", "rewards/rejected", PS_KTO_REJECTED, 0}};

typedef struct plot_panel { const char *title, *xlabel, *ylabel; int s[3]; } plot_panel;
/* a file: up to PLOT_PANELS panels on a grid of `cols` columns, each cell_h high; a panel without data is left out */
enum { PLOT_PANELS = 4 };
typedef struct plot_fig { const char *file, *title; int width, cols, cell_h; plot_panel p[PLOT_PANELS]; } plot_fig;
static const plot_fig plot_figs[] = {
    {"loss.svg", "Training loss per stage", 960, 3, 320,
     {{"Pretraining", "step", "loss (nats per token)", {PS_PRE, PS_PRE_VAL}},
      {"SFT", "step", "loss (completion tokens)", {PS_SFT, PS_SFT_VAL}},
      {"Reward model", "step", "pairwise loss", {PS_RM, PS_RM_VAL}}}},
    {"reward_model.svg", "Reward model: pairs ranked as the labelers ranked them", 720, 1, 380,
     {{"", "step", "pairwise accuracy", {PS_ACC, PS_ACC_VAL}}}},
    {"ppo.svg", "PPO against the reward model", 720, 1, 250,
     {{"Score", "PPO iteration", "mean score", {PS_SCORE, PS_GOLD_IT}},
      {"KL to the SFT policy", "PPO iteration", "KL (nats per reply)", {PS_KL}}}},
    {"gold_vs_proxy.svg", "Reward over-optimisation: gold judge vs reward model", 720, 1, 420,
     {{"", "KL to the SFT policy (nats per reply)", "mean score", {PS_PROXY_KL, PS_GOLD_KL}}}},
    {"gold_vs_proxy_sqrt_kl.svg", "Reward over-optimisation: gold judge vs reward model", 720, 1, 420,
     {{"", "d = \xe2\x88\x9a" "KL to the SFT policy (as in Gao et al. 2022)", "mean score", {PS_PROXY_SQ, PS_GOLD_SQ}}}},
    {"dpo.svg", "DPO: the policy against its frozen reference", 960, 2, 300,
     {{"Loss", "step", "DPO loss (mean over pairs)", {PS_DPO, PS_DPO_VAL}},
      {"Pairs ranked as labelled", "step", "rewards/accuracies", {PS_DPO_ACC, PS_DPO_ACC_VAL}},
      {"Reward margin, chosen - rejected", "step", "rewards/margins", {PS_DPO_MARGIN, PS_DPO_MARGIN_VAL}},
      {"Implicit rewards", "step", "\xce\xb2 log(\xcf\x80 / \xcf\x80_ref), mean over pairs", {PS_DPO_CHOSEN, PS_DPO_REJECTED}}}},
    {"kto.svg", "KTO: the policy against its frozen reference, on unpaired labels", 960, 2, 300,
     {{"Loss", "step", "KTO loss (mean over records)", {PS_KTO, PS_KTO_VAL}},
      {"Records on their label's side of z", "step", "val/accuracy", {PS_KTO_ACC_VAL}},
      {"Reference point z (KL to the reference)", "step", "kl (nats per completion)", {PS_KTO_KL, PS_KTO_KL_VAL}},
      {"Implicit rewards", "step", "\xce\xb2 log(\xcf\x80 / \xcf\x80_ref), mean over records", {PS_KTO_CHOSEN, PS_KTO_REJECTED}}}},
    {"grpo.svg", "GRPO: groups of replies against the reward model", 960, 2, 300,
     {{"Score", "iteration", "mean score", {PS_GRPO_SCORE}},
      {"KL to the SFT policy", "iteration", "KL (nats per reply)", {PS_GRPO_KL}},
      {"Reward spread within groups", "iteration", "reward_std", {PS_GRPO_STD}},
      {"Groups that teach nothing", "iteration", "frac_reward_zero_std", {PS_GRPO_ZERO}}}},
    {"rloo.svg", "RLOO: groups of replies against the reward model", 960, 2, 300,
     {{"Score", "iteration", "mean score", {PS_RLOO_SCORE}},
      {"KL to the SFT policy", "iteration", "KL (nats per reply)", {PS_RLOO_KL}},
      {"Reward spread within groups", "iteration", "reward_std", {PS_RLOO_STD}},
      {"Groups that teach nothing", "iteration", "frac_reward_zero_std", {PS_RLOO_ZERO}}}}};

typedef struct plot_pt { double x, y; } plot_pt;
typedef struct plot_series { plot_pt *p; int n, cap; } plot_series;
static int plot_add(plot_series *s, double x, double y) {
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 256;
        plot_pt *np = (plot_pt *)realloc(s->p, (size_t)nc * sizeof *np);
        if (!np) return -1;
        s->p = np;
        s->cap = nc;
    }
    s->p[s->n].x = x;
    s->p[s->n++].y = y;
    return 0;
}
static int plot_cmp_x(const void *a, const void *b) {
    double d = ((const plot_pt *)a)->x - ((const plot_pt *)b)->x;
    return (d > 0) - (d < 0);
}
/* Points in a line's moving average, or in a scatter's local fit. A scatter
   always gets its fit (the trend is what the chart is for), a line only when
   asked and long enough to be noisy. */
static int plot_window(const plot_options *po, int style, int n) {
    if (style == PLOT_SCATTER) return n < 5 ? 0 : n / 3 < 4 ? 4 : n / 3;
    if (style != PLOT_LINE || po->smooth == 0) return 0;
    if (po->smooth > 0) return po->smooth < n ? po->smooth : n;
    return n >= 60 ? n / 20 : 0;
}
/* Centred moving average over w points, fewer at the ends, of x as well as y:
   a trend then stays unbiased up to the ends instead of flattening there. */
static void plot_smooth(const plot_pt *p, int n, int w, plot_pt *out) {
    double sx = 0, sy = 0;
    int i, a = 0, b = -1, h = w / 2;
    for (i = 0; i < n; i++) {
        int na = i - h < 0 ? 0 : i - h, nb = i + w - 1 - h < n ? i + w - 1 - h : n - 1;
        while (b < nb) b++, sx += p[b].x, sy += p[b].y;
        while (a < na) sx -= p[a].x, sy -= p[a].y, a++;
        out[i].x = sx / (b - a + 1);
        out[i].y = sy / (b - a + 1);
    }
}

/* Local linear fit at x, Gaussian-weighted with a bandwidth that reaches the
   k-th nearest point (q sorted by x): it follows a trend up to the ends of
   the data, where over-optimisation shows (a running mean flattens there),
   and the bandwidth widens where points are sparse, at high KL. */
static double plot_local_fit(const plot_pt *q, int n, int k, double x) {
    double h, s0 = 0, s1 = 0, s2 = 0, t0 = 0, t1 = 0, d;
    int lo = 0, hi, i;
    while (lo < n && q[lo].x < x) lo++;
    for (hi = lo; hi - lo < k;) /* grow [lo, hi) from x's place towards the nearer side */
        if (lo > 0 && (hi == n || x - q[lo - 1].x <= q[hi].x - x)) lo--;
        else hi++;
    h = fmax(x - q[lo].x, q[hi - 1].x - x) + 1e-300;
    for (i = 0; i < n; i++) {
        double dx = q[i].x - x, w = exp(-0.5 * (dx / h) * (dx / h));
        s0 += w, s1 += w * dx, s2 += w * dx * dx, t0 += w * q[i].y, t1 += w * dx * q[i].y;
    }
    d = s0 * s2 - s1 * s1;
    return d > 1e-9 * s0 * s2 ? (s2 * t0 - s1 * t1) / d : t0 / s0; /* all at one x: their mean */
}

/* ---- axes: round ticks ------------------------------------------------------------ */
typedef struct plot_axis { double lo, hi, step, p0, len; } plot_axis; /* data range; pixel start and length */
static double plot_px(const plot_axis *a, double v) { return a->p0 + (v - a->lo) / (a->hi - a->lo) * a->len; }
/* A step of 1, 2 or 5 x 10^k giving about t intervals over [mn, mx], and the
   range widened to its multiples. Data within a tenth of a step past a tick
   stops there (a KL of -0.03 is drawn a hair below 0, not on an axis from -5). */
static double plot_nice(double mn, double mx, int t, double *lo, double *hi) {
    double raw = (mx - mn) / t, p = pow(10, floor(log10(raw))), m = raw / p;
    double step = (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
    *lo = floor(mn / step + 0.1) * step;
    *hi = ceil(mx / step - 0.1) * step;
    return step;
}
/* about `target` intervals, or one more or fewer when that wastes much less of the panel */
static void plot_axis_fit(plot_axis *a, double mn, double mx, int target, double p0, double len) {
    double lo, hi, step, best = -1;
    int t;
    if (!(mx > mn)) { /* one value: a range around it */
        double d = mn != 0 ? 0.1 * fabs(mn) : 1;
        mn -= d, mx += d;
    }
    for (t = 0; t < 3; t++) {
        int ti = t == 0 ? target : t == 1 ? target - 1 : target + 1; /* the target itself first: it wins ties */
        if (ti < 1) continue;
        step = plot_nice(mn, mx, ti, &lo, &hi);
        if ((mx - mn) / (hi - lo) > best + 0.1) best = (mx - mn) / (hi - lo), a->step = step, a->lo = lo, a->hi = hi;
    }
    a->p0 = p0;
    a->len = len;
}
/* v, a multiple of step, with just the decimals step needs: 0.05, 0.1, 200, 1500, 20k */
static void plot_tick_label(char *b, size_t n, double v, double step) {
    int k = step >= 1000, dec;
    if (k) v /= 1000, step /= 1000;
    dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(b, n - 1, "%.*f", dec, v);
    if (strchr(b, '.')) {
        char *e = b + strlen(b) - 1;
        while (*e == '0') *e-- = 0;
        if (*e == '.') *e = 0;
    }
    if (strcmp(b, "-0") == 0) strcpy(b, "0");
    if (k && strcmp(b, "0") != 0) strcat(b, "k");
}
/* grid lines and labels of one axis; `o` is the other axis, which the grid spans */
static void plot_ticks(FILE *f, const plot_axis *a, const plot_axis *o, int is_x) {
    long i, i0 = lround(a->lo / a->step), i1 = lround(a->hi / a->step);
    double e0 = o->p0, e1 = o->p0 + o->len;
    char b[40];
    fprintf(f, "<g class=\"ticks\" fill=\"#444\" font-size=\"11\" text-anchor=\"%s\">\n", is_x ? "middle" : "end");
    for (i = i0; i <= i1; i++) {
        double p = plot_px(a, (double)i * a->step);
        plot_tick_label(b, sizeof b, (double)i * a->step, a->step);
        if (is_x)
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e8e8e8\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n", p,
                    e0, p, e1, p, e0 + 16, b);
        else
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e8e8e8\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n", e0,
                    p, e1, p, e0 - 6, p + 4, b);
    }
    fprintf(f, "</g>\n");
}

/* ---- drawing ------------------------------------------------------------------------ */
static void plot_polyline(FILE *f, const plot_pt *p, int n, const plot_axis *ax, const plot_axis *ay, const char *color,
                          double opacity, double width) {
    int i;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-opacity=\"%g\" stroke-width=\"%g\" stroke-linejoin=\"round\" points=\"",
            color, opacity, width);
    for (i = 0; i < n; i++) fprintf(f, "%.1f,%.1f%s", plot_px(ax, p[i].x), plot_px(ay, p[i].y), i % 10 == 9 ? "\n" : " ");
    fprintf(f, "\"/>\n");
}
/* one series, sorted by x: a resumed run may log a step twice, a scatter is in time order */
static int plot_series_draw(FILE *f, const plot_series *s, const struct plot_look *lk, int w, const plot_axis *ax,
                            const plot_axis *ay) {
    enum { GRID = 100 }; /* points of a scatter's fitted curve */
    int i, n = s->n, ns = lk->style == PLOT_SCATTER ? GRID : n;
    plot_pt *q = (plot_pt *)malloc(((size_t)n + (size_t)ns) * sizeof *q), *sm;
    if (!q) return -1;
    sm = q + n; /* the smoothed curve */
    memcpy(q, s->p, (size_t)n * sizeof *q);
    qsort(q, (size_t)n, sizeof *q, plot_cmp_x);
    if (w > 1 && lk->style == PLOT_SCATTER)
        for (i = 0; i < GRID; i++) {
            sm[i].x = q[0].x + (q[n - 1].x - q[0].x) * i / (GRID - 1);
            sm[i].y = plot_local_fit(q, n, w, sm[i].x);
        }
    else if (w > 1) plot_smooth(q, n, w, sm);
    if (lk->style != PLOT_SCATTER) plot_polyline(f, q, n, ax, ay, lk->color, w > 1 ? 0.25 : 1, w > 1 ? 1 : 1.8);
    if (lk->style != PLOT_LINE || n == 1) /* a lone point of a line is drawn too */
        for (i = 0; i < n; i++)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%g\" fill=\"%s\" fill-opacity=\"%g\"/>\n", plot_px(ax, q[i].x),
                    plot_px(ay, q[i].y), lk->style == PLOT_SCATTER ? 3.5 : 2.5, lk->color, lk->style == PLOT_SCATTER ? 0.4 : 1);
    if (w > 1) plot_polyline(f, sm, ns, ax, ay, lk->color, 1, 2.2);
    free(q);
    return 0;
}
/* a panel in the cell at (cx, cy): title, grid, ticks, axis labels, its series */
static int plot_panel_draw(FILE *f, const plot_panel *pn, const plot_series *S, const plot_options *po, double cx, double cy,
                           double cw, double ch) {
    double x0 = HUGE_VAL, x1 = -HUGE_VAL, y0 = HUGE_VAL, y1 = -HUGE_VAL;
    plot_axis ax, ay;
    int i, j, win = 0, scatter = 0, whole = 1, tx = cw > 500 ? 8 : 5;
    for (j = 0; j < 3; j++)
        for (i = 0; pn->s[j] && i < S[pn->s[j]].n; i++) {
            const plot_pt *p = &S[pn->s[j]].p[i];
            x0 = fmin(x0, p->x), x1 = fmax(x1, p->x), y0 = fmin(y0, p->y), y1 = fmax(y1, p->y);
            whole &= p->x == floor(p->x);
        }
    if (whole && x1 - x0 >= 1 && x1 - x0 < tx) tx = (int)(x1 - x0); /* steps: no tick at step 1.5 */
    plot_axis_fit(&ax, x0, x1, tx, cx + 64, cw - 84);
    plot_axis_fit(&ay, y0, y1, ch > 300 ? 6 : 4, cy + ch - 48, -(ch - 80));
    plot_ticks(f, &ay, &ax, 0);
    plot_ticks(f, &ax, &ay, 1);
    fprintf(f, "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#555\"/>\n", ax.p0, ay.p0 + ay.len, ay.p0, ax.p0 + ax.len);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", ax.p0 + ax.len / 2, cy + ch - 12, pn->xlabel);
    fprintf(f, "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", cx + 16,
            ay.p0 + ay.len / 2, pn->ylabel);
    for (j = 0; j < 3; j++) {
        const struct plot_look *lk = &plot_looks[pn->s[j]];
        int w;
        if (!pn->s[j] || S[pn->s[j]].n == 0) continue;
        w = plot_window(po, lk->style, S[pn->s[j]].n);
        if (w > win) win = w, scatter = lk->style == PLOT_SCATTER;
        if (plot_series_draw(f, &S[pn->s[j]], lk, w, &ax, &ay) != 0) return -1;
    }
    if (!pn->title[0] && win < 2) return 0;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">%s", cx + 16, cy + 18, pn->title);
    if (win > 1 && scatter)
        fprintf(f, "<tspan dx=\"%d\" fill=\"#777\" font-weight=\"normal\" font-size=\"12\">dots: evaluations; "
                   "lines: their trend (local linear fit)</tspan>", pn->title[0] ? 10 : 0);
    else if (win > 1)
        fprintf(f, "<tspan dx=\"%d\" fill=\"#777\" font-weight=\"normal\" font-size=\"12\">%d-point moving average</tspan>",
                pn->title[0] ? 10 : 0, win);
    fprintf(f, "</text>\n");
    return 0;
}
/* The legend: a band below the panels, one entry per label drawn, wrapped to
   the width. Measures only when f is NULL; returns its height. */
static double plot_legend(FILE *f, const plot_panel *const *pn, int np, const plot_series *S, const plot_options *po, double W,
                          double y0) {
    const char *seen[PLOT_PANELS * 3 + 1];
    double x = 64, y = y0 + 18;
    int k, j, i, ns = 0, faint = 0;
    for (k = 0; k < np; k++)
        for (j = 0; j < 3; j++) {
            int s = pn[k]->s[j];
            const struct plot_look *lk = &plot_looks[s];
            double ew;
            if (!s || S[s].n == 0) continue;
            faint |= lk->style == PLOT_LINE && plot_window(po, lk->style, S[s].n) > 1;
            for (i = 0; i < ns && strcmp(seen[i], lk->label) != 0; i++) {}
            if (i < ns) continue;
            seen[ns++] = lk->label;
            ew = 34 + 7 * (double)strlen(lk->label);
            if (x + ew > W - 16 && x > 64) x = 64, y += 20;
            if (f) {
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.2\"/>\n", x, y - 4, x + 22,
                        y - 4, lk->color);
                if (lk->style != PLOT_LINE)
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", x + 11, y - 4, lk->color);
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x + 28, y, lk->label);
            }
            x += ew + 16;
        }
    if (faint) {
        if (x + 180 > W - 16 && x > 64) x = 64, y += 20;
        if (f) fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#777\">faint: every point, unsmoothed</text>\n", x, y);
    }
    return y - y0 + 14;
}
/* an SVG file W x H with its title, opened atomically; NULL on error (on stderr) */
static FILE *plot_svg_open(atomic_file *af, const char *path, double W, double H, const char *title) {
    FILE *f = atomic_open(af, path);
    if (!f) {
        fprintf(stderr, "rlhf plot: cannot write %s: %s\n", path, strerror(errno));
        return NULL;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\" fill=\"#222\">\n",
            W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.1f\" y=\"27\" font-size=\"16\" text-anchor=\"middle\">%s</text>\n", W / 2.0, title);
    return f;
}
/* the file closed and committed, or dropped when drawing failed (rc != 0: out of memory); 1 written, -1 error */
static int plot_svg_close(atomic_file *af, const char *path, int rc, const plot_options *po) {
    fprintf(af->f, "</svg>\n");
    if (rc != 0) {
        atomic_abort(af);
        fprintf(stderr, "rlhf plot: out of memory drawing %s\n", path);
        return -1;
    }
    if (atomic_commit(af) != 0) {
        fprintf(stderr, "rlhf plot: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (po->verbose) printf("wrote %s\n", path);
    return 1;
}
/* one file, written atomically; 1 written, 0 nothing to draw, -1 error (on stderr) */
static int plot_fig_write(const char *dir, const plot_fig *fg, const plot_series *S, const plot_options *po) {
    const plot_panel *pn[PLOT_PANELS];
    char path[1024];
    atomic_file af;
    FILE *f;
    int np = 0, k, j, cols, rows, rc = 0;
    double cw, top = 44, legend_h, H;
    for (k = 0; k < PLOT_PANELS; k++) {
        int any = 0;
        for (j = 0; j < 3; j++) any |= fg->p[k].s[j] && S[fg->p[k].s[j]].n > 0;
        if (fg->p[k].title && any) pn[np++] = &fg->p[k];
    }
    if (!np) return 0;
    cols = fg->cols < np ? fg->cols : np;
    rows = (np + cols - 1) / cols;
    cw = (double)fg->width / cols;
    legend_h = plot_legend(NULL, pn, np, S, po, fg->width, 0);
    H = top + rows * fg->cell_h + legend_h;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, fg->file) >= sizeof path) {
        fprintf(stderr, "rlhf plot: the path %s/%s is too long\n", dir, fg->file);
        return -1;
    }
    if (!(f = plot_svg_open(&af, path, fg->width, H, fg->title))) return -1;
    for (k = 0; k < np && rc == 0; k++) rc = plot_panel_draw(f, pn[k], S, po, (k % cols) * cw, top + (k / cols) * fg->cell_h, cw, fg->cell_h);
    plot_legend(f, pn, np, S, po, fg->width, top + rows * fg->cell_h);
    return plot_svg_close(&af, path, rc, po);
}
static double plot_num(const rlhf_json *o, const char *key) {
    const rlhf_json *v = rlhf_json_get(o, key);
    return v && v->type == RLHF_JSON_NUMBER ? v->number : NAN;
}
/* dir/metrics.jsonl into the series; a malformed line (a run killed mid-write) is skipped */
static int plot_read(const char *dir, plot_series *S) {
    char path[1024];
    rlhf_jsonl *r;
    rlhf_json_doc *doc;
    rlhf_json_error je;
    rlhf_result res;
    int bad = 0, k, rc = 0;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (rlhf_jsonl_open(&r, path, 0, &je) != RLHF_OK) {
        fprintf(stderr, "rlhf plot: %s\n", je.message);
        return -1;
    }
    while (rc == 0 && ((res = rlhf_jsonl_next(r, &doc, &je)) != RLHF_OK || doc)) {
        const rlhf_json *o, *st;
        if (res == RLHF_ERR_IO || res == RLHF_ERR_OUT_OF_MEMORY) {
            fprintf(stderr, "rlhf plot: %s\n", je.message);
            rc = -1;
        } else if (res != RLHF_OK) {
            if (bad++ == 0) fprintf(stderr, "rlhf plot: %s (line skipped)\n", je.message);
        } else {
            o = rlhf_json_root(doc);
            st = rlhf_json_get(o, "stage");
            for (k = 0; st && st->type == RLHF_JSON_STRING && k < (int)(sizeof plot_srcs / sizeof *plot_srcs); k++) {
                const struct plot_src *sr = &plot_srcs[k];
                double x = plot_num(o, sr->xkey), y = plot_num(o, sr->ykey);
                if (strcmp(st->str, sr->stage) != 0 || !(fabs(x) < 1e100 && fabs(y) < 1e100) || (sr->sqrt_x && x < 0))
                    continue; /* not a number, or beyond any chart's range arithmetic */
                if (plot_add(&S[sr->s], sr->sqrt_x ? sqrt(x) : x, y) != 0) {
                    fprintf(stderr, "rlhf plot: out of memory reading %s\n", path);
                    rc = -1;
                    break;
                }
            }
            rlhf_json_free(doc);
        }
    }
    if (bad > 1) fprintf(stderr, "rlhf plot: %d malformed lines of %s skipped\n", bad, path);
    rlhf_jsonl_close(r);
    return rc;
}
/* every chart the run's metrics allow, written atomically into dir; returns
   the number written, -1 on error (message on stderr as "rlhf plot: ...") */
static int plot_run(const char *dir, const plot_options *po) {
    plot_series S[PS_N];
    int k, w, written;
    memset(S, 0, sizeof S);
    written = plot_read(dir, S);
    for (k = 0; written >= 0 && k < (int)(sizeof plot_figs / sizeof *plot_figs); k++)
        written = (w = plot_fig_write(dir, &plot_figs[k], S, po)) < 0 ? -1 : written + w;
    for (k = 0; k < PS_N; k++) free(S[k].p);
    return written;
}

/* ---- bars: one value per category with its 95% interval (rlhf demo --algos: compare.svg) ------------- */
/* a category: its bar in the top panel (v, lo, hi) and in the bottom one (v2, lo2, hi2; NaN: none) */
typedef struct plot_bar { const char *label, *color; double v, lo, hi, v2, lo2, hi2; } plot_bar;
/* a panel of bars, each with its interval as a whisker and its value above, and a dashed line at ref (named
   at the panel's top right) */
static void plot_bars_panel(FILE *f, const char *title, const char *ylabel, const plot_bar *b, int n, int second, double ref,
                            const char *ref_label, double cy, double W, double ch) {
    plot_axis ax, ay;
    double mn = fmin(0, ref), mx = ref, slot;
    int i;
    for (i = 0; i < n; i++) {
        double lo = second ? b[i].lo2 : b[i].lo, hi = second ? b[i].hi2 : b[i].hi;
        if (isfinite(lo) && isfinite(hi)) mn = fmin(mn, lo), mx = fmax(mx, hi);
    }
    ax.lo = 0, ax.hi = n, ax.step = 1, ax.p0 = 64, ax.len = W - 84;
    plot_axis_fit(&ay, mn, mx, 5, cy + ch - 40, -(ch - 76));
    plot_ticks(f, &ay, &ax, 0);
    fprintf(f, "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#555\"/>\n", ax.p0, ay.p0 + ay.len, ay.p0, ax.p0 + ax.len);
    fprintf(f, "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", ay.p0 + ay.len / 2, ylabel);
    fprintf(f, "<text x=\"16\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", cy + 18, title);
    slot = ax.len / n;
    for (i = 0; i < n; i++) {
        double v = second ? b[i].v2 : b[i].v, lo = second ? b[i].lo2 : b[i].lo, hi = second ? b[i].hi2 : b[i].hi;
        double x = ax.p0 + (i + 0.5) * slot, w = 0.55 * slot, y0 = plot_px(&ay, fmax(ay.lo, 0)), y = plot_px(&ay, v);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, ay.p0 + 18, b[i].label);
        if (!isfinite(v)) continue;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" fill-opacity=\"0.8\"/>\n", x - w / 2, fmin(y, y0), w,
                fabs(y0 - y), b[i].color);
        fprintf(f, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#222\" stroke-width=\"1.4\"/>\n", x, plot_px(&ay, lo),
                plot_px(&ay, hi), x - 6, plot_px(&ay, lo), x + 6, x - 6, plot_px(&ay, hi), x + 6);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%.3f</text>\n", x, plot_px(&ay, hi) - 5, v);
    }
    fprintf(f, "<path d=\"M%.1f %.1fH%.1f\" stroke=\"#d62728\" stroke-width=\"1.4\" stroke-dasharray=\"6 4\"/>\n", ax.p0, plot_px(&ay, ref),
            ax.p0 + ax.len);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#d62728\">dashed: %s</text>\n", ax.p0 + ax.len, cy + 18, ref_label);
}
/* compare.svg: gold score per category above (a line at the first category's, SFT), win rate below (a line
   at 0.5, no better than SFT); 1 written, -1 error (on stderr) */
static int plot_bars_write(const char *path, const plot_bar *b, int n, const plot_options *po) {
    const double W = 760, top = 44, ch = 320, note = 28;
    char ref[64];
    atomic_file af;
    FILE *f = plot_svg_open(&af, path, W, top + 2 * ch + note, "The same SFT model and reward model, each algorithm judged by the gold judge");
    if (!f) return -1;
    snprintf(ref, sizeof ref, "%s %.3f", b[0].label, b[0].v);
    plot_bars_panel(f, "Gold score on held-out prompts", "mean gold score", b, n, 0, b[0].v, ref, top, W, ch);
    plot_bars_panel(f, "Win rate over SFT, prompt by prompt (ties half)", "win rate", b, n, 1, 0.5, "0.5: no better than SFT", top + ch,
                    W, ch);
    fprintf(f, "<text x=\"64\" y=\"%.1f\" fill=\"#777\">whiskers: 95%% intervals (mean \xc2\xb1 1.96 standard errors over the prompts); "
               "orange: rewarded by the gold judge itself</text>\n",
            top + 2 * ch + 14);
    return plot_svg_close(&af, path, 0, po);
}
#endif
