/* plot.h - SVG charts of a run directory's metrics.jsonl, no dependencies.
   Part of the rlhf tool (tools/rlhf.c includes it once). */
#ifndef RLHF_PLOT_H
#define RLHF_PLOT_H
#include "atomic_file.h"

/* ---- plots: SVG line charts from metrics.jsonl, no dependencies ------------------ */
typedef struct series { const char *label; const char *color; double *x, *y; int n, cap; } series;
static void series_add(series *s, double x, double y) {
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 256;
        double *nx = (double *)realloc(s->x, (size_t)nc * sizeof(double)), *ny;
        if (!nx) return;
        s->x = nx;
        ny = (double *)realloc(s->y, (size_t)nc * sizeof(double));
        if (!ny) return;
        s->y = ny;
        s->cap = nc;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}
/* one chart: the series share the axes; x and y ranges from the data */
static int svg_chart(const char *path, const char *title, const char *xlabel, const char *ylabel, series *s, int ns) {
    const double W = 640, H = 400, L = 70, R = 20, T = 40, B = 50;
    double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
    int i, k, any = 0;
    FILE *f;
    for (k = 0; k < ns; k++)
        for (i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i])) continue;
            x0 = fmin(x0, s[k].x[i]); x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i]); y1 = fmax(y1, s[k].y[i]);
            any = 1;
        }
    if (!any) return 0;
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    y0 -= 0.05 * (y1 - y0);
    y1 += 0.05 * (y1 - y0);
    if (!(f = fopen(path, "w"))) return -1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%g\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">%s</text>\n", W / 2, title);
    fprintf(f, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#444\"/>\n", L, T, W - L - R, H - T - B);
    for (i = 0; i <= 4; i++) { /* ticks */
        double fx = x0 + (x1 - x0) * i / 4, fy = y0 + (y1 - y0) * i / 4;
        double px = L + (W - L - R) * i / 4, py = H - B - (H - T - B) * i / 4;
        fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#ddd\"/>\n", L, py, W - R, py);
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.3g</text>\n", L - 6, py + 4, fy);
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%.3g</text>\n", px, H - B + 16, fx);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%s</text>\n", L + (W - L - R) / 2, H - 12, xlabel);
    fprintf(f, "<text x=\"16\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 16 %g)\">%s</text>\n", T + (H - T - B) / 2,
            T + (H - T - B) / 2, ylabel);
    for (k = 0; k < ns; k++) {
        if (s[k].n == 0) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", s[k].color);
        for (i = 0; i < s[k].n; i++)
            if (isfinite(s[k].y[i]))
                fprintf(f, "%.1f,%.1f ", L + (W - L - R) * (s[k].x[i] - x0) / (x1 - x0), H - B - (H - T - B) * (s[k].y[i] - y0) / (y1 - y0));
        fprintf(f, "\"/>\n<text x=\"%g\" y=\"%g\" fill=\"%s\">%s</text>\n", L + 10, T + 16 + 16 * k, s[k].color, s[k].label);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
    return 1;
}
static double json_num(const rlhf_json *o, const char *key) {
    const rlhf_json *v = rlhf_json_get(o, key);
    return v && v->type == RLHF_JSON_NUMBER ? v->number : NAN;
}
/* every chart a run's metrics allow; returns the number written, -1 on error */
static int plot_run(const char *dir, int verbose) {
    char path[1024], out[1100];
    rlhf_jsonl *r;
    rlhf_json_doc *doc;
    rlhf_json_error je;
    series loss[3], ppo[2], over[2], rm[2];
    int written = 0, k;
    memset(loss, 0, sizeof loss); memset(ppo, 0, sizeof ppo); memset(over, 0, sizeof over); memset(rm, 0, sizeof rm);
    loss[0].label = "pretraining loss"; loss[0].color = "#1f77b4";
    loss[1].label = "SFT loss (completions)"; loss[1].color = "#2ca02c";
    loss[2].label = "reward-model loss"; loss[2].color = "#d62728";
    rm[0].label = "reward model: pairwise accuracy (train batches)"; rm[0].color = "#d62728";
    rm[1].label = "held out"; rm[1].color = "#9467bd";
    ppo[0].label = "reward-model score (objective/scores)"; ppo[0].color = "#1f77b4";
    ppo[1].label = "KL to SFT (objective/kl)"; ppo[1].color = "#ff7f0e";
    over[0].label = "reward-model score (proxy)"; over[0].color = "#1f77b4";
    over[1].label = "gold judge, held-out prompts"; over[1].color = "#2ca02c";
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (rlhf_jsonl_open(&r, path, 0, &je) != RLHF_OK) {
        fprintf(stderr, "rlhf plot: %s\n", je.message);
        return -1;
    }
    for (;;) {
        const rlhf_json *o, *st;
        double step;
        if (rlhf_jsonl_next(r, &doc, &je) != RLHF_OK) {
            fprintf(stderr, "rlhf plot: %s (line skipped)\n", je.message);
            continue;
        }
        if (!doc) break;
        o = rlhf_json_root(doc);
        st = rlhf_json_get(o, "stage");
        step = json_num(o, "step");
        if (st && st->type == RLHF_JSON_STRING) {
            if (strcmp(st->str, "pretrain") == 0 && isfinite(json_num(o, "loss"))) series_add(&loss[0], step, json_num(o, "loss"));
            if (strcmp(st->str, "sft") == 0 && isfinite(json_num(o, "loss"))) series_add(&loss[1], step, json_num(o, "loss"));
            if (strcmp(st->str, "rm") == 0 && isfinite(json_num(o, "loss"))) series_add(&loss[2], step, json_num(o, "loss"));
            if (strcmp(st->str, "rm") == 0 && isfinite(json_num(o, "accuracy"))) series_add(&rm[0], step, json_num(o, "accuracy"));
            if (strcmp(st->str, "rm") == 0 && isfinite(json_num(o, "val/accuracy"))) series_add(&rm[1], step, json_num(o, "val/accuracy"));
            if (strcmp(st->str, "ppo") == 0) {
                series_add(&ppo[0], step, json_num(o, "objective/scores"));
                series_add(&ppo[1], step, json_num(o, "objective/kl"));
            }
            if (strcmp(st->str, "ppo_gold") == 0) {
                series_add(&over[0], json_num(o, "objective/kl"), json_num(o, "objective/scores"));
                series_add(&over[1], json_num(o, "objective/kl"), json_num(o, "gold/heldout"));
            }
        }
        rlhf_json_free(doc);
    }
    rlhf_jsonl_close(r);
#define RLHF__PLOT(file, title, xl, yl, s, n)                                      \
    do {                                                                           \
        int w_;                                                                    \
        snprintf(out, sizeof out, "%s/%s", dir, file);                             \
        w_ = svg_chart(out, title, xl, yl, s, n);                                  \
        if (w_ < 0) fprintf(stderr, "rlhf plot: cannot write %s\n", out);          \
        if (w_ > 0) { written++; if (verbose) printf("wrote %s\n", out); }         \
    } while (0)
    RLHF__PLOT("loss.svg", "Training losses per stage", "step (of its stage)", "loss", loss, 3);
    RLHF__PLOT("reward_model.svg", "Reward model: pairs ranked right", "step", "accuracy", rm, 2);
    RLHF__PLOT("ppo.svg", "PPO: reward-model score and KL to SFT", "iteration", "value", ppo, 2);
    RLHF__PLOT("gold_vs_proxy.svg", "Gold score vs the reward model's (proxy) score", "KL to SFT", "score", over, 2);
#undef RLHF__PLOT
    for (k = 0; k < 3; k++) { free(loss[k].x); free(loss[k].y); }
    for (k = 0; k < 2; k++) { free(ppo[k].x); free(ppo[k].y); free(over[k].x); free(over[k].y); free(rm[k].x); free(rm[k].y); }
    return written;
}
#endif
