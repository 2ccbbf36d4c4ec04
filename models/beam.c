// beam.c: greedy and beam-search decoding (see beam.h).
#include "models/beam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/par.h"
#include "models/rng.h"

typedef struct {
    double score;  // summed log-probability of the continuation
    int k;         // live hypothesis it extends
    int32_t w;     // token
} Cand;

struct BeamWork {
    int max_beam, max_len, V;
    float *logits;            // (max_beam, V)
    double *lp;               // (max_beam, V) masked log-probabilities
    int32_t *hist[2];         // (max_beam, max_len) tokens of the live hypotheses (double buffer)
    double *raw[2];           // (max_beam) summed log-probabilities
    int32_t *parents, *toks;  // (max_beam) the selection fed to the next step
    Cand *heap;               // (max_beam) min-heap of the best continuations
    Cand *sorted;             // (max_beam) the same, best first
    int32_t *best;            // (max_len) best finished hypothesis
    int32_t *slot[2];         // (max_beam) beam_sample: the sample each live row belongs to
    int32_t *drawn;           // (max_beam) beam_sample: each row's token, -1: none allowed
    double *q;                // (CX_PAR_MAX_THREADS, V) beam_sample: scratch weights per
                              // pool thread (calloc'd: pages no thread uses stay unmapped)
};

BeamWork *beam_work_create(int max_beam, int max_len, int vocab_size) {
    CHECK(max_beam >= 1 && max_len >= 1 && vocab_size >= 2, "beam workspace %d x %d x %d", max_beam,
          max_len, vocab_size);
    BeamWork *w = cx_calloc(1, sizeof *w);
    w->max_beam = max_beam;
    w->max_len = max_len;
    w->V = vocab_size;
    size_t KV = (size_t)max_beam * vocab_size, KL = (size_t)max_beam * max_len;
    w->logits = cx_calloc(KV, sizeof(float));
    w->lp = cx_calloc(KV, sizeof(double));
    for (int i = 0; i < 2; i++) {
        w->hist[i] = cx_calloc(KL, sizeof(int32_t));
        w->raw[i] = cx_calloc((size_t)max_beam, sizeof(double));
    }
    w->parents = cx_calloc((size_t)max_beam, sizeof(int32_t));
    w->toks = cx_calloc((size_t)max_beam, sizeof(int32_t));
    w->heap = cx_calloc((size_t)max_beam, sizeof(Cand));
    w->sorted = cx_calloc((size_t)max_beam, sizeof(Cand));
    w->best = cx_calloc((size_t)max_len, sizeof(int32_t));
    for (int i = 0; i < 2; i++) w->slot[i] = cx_calloc((size_t)max_beam, sizeof(int32_t));
    w->drawn = cx_calloc((size_t)max_beam, sizeof(int32_t));
    w->q = cx_calloc((size_t)CX_PAR_MAX_THREADS * vocab_size, sizeof(double));
    return w;
}

void beam_work_free(BeamWork *w) {
    if (!w) return;
    free(w->logits);
    free(w->lp);
    for (int i = 0; i < 2; i++) {
        free(w->hist[i]);
        free(w->raw[i]);
    }
    free(w->parents);
    free(w->toks);
    free(w->heap);
    free(w->sorted);
    free(w->best);
    for (int i = 0; i < 2; i++) free(w->slot[i]);
    free(w->drawn);
    free(w->q);
    free(w);
}

int beam_config_check(const BeamConfig *c, const BeamWork *w, char *err) {
    if (c->beam_size < 1 || c->beam_size > w->max_beam)
        return cx_err(err, "decode.beam_size must be in [1, %d] (got %d)", w->max_beam,
                      c->beam_size);
    if (c->max_len < 1 || c->max_len > w->max_len)
        return cx_err(err, "decode.max_len must be in [1, %d] (got %d)", w->max_len, c->max_len);
    if (c->min_len < 0 || c->min_len >= c->max_len)
        return cx_err(err, "decode.min_len must be in [0, max_len) (got %d, max_len %d)",
                      c->min_len, c->max_len);
    if (!(c->alpha >= 0.0f && c->alpha <= 10.0f))
        return cx_err(err, "decode.length_penalty must be in [0, 10] (got %g)", (double)c->alpha);
    if (c->bos < 0 || c->bos >= w->V || c->eos < 0 || c->eos >= w->V)
        return cx_err(err, "decode: bos %d / eos %d outside the vocabulary (%d)", c->bos, c->eos,
                      w->V);
    if (c->n_banned < 0 || (c->n_banned > 0 && !c->banned))
        return cx_err(err, "decode: banned token list missing");
    for (int i = 0; i < c->n_banned; i++)
        if (c->banned[i] < 0 || c->banned[i] >= w->V || c->banned[i] == c->eos)
            return cx_err(err, "decode: banned token %d invalid (outside [0, %d) or eos)",
                          c->banned[i], w->V);
    if (c->fsm && (c->fsm_states < 1 || c->fsm_states >= BEAM_FSM_REJECT))
        return cx_err(err, "decode: token automaton with %d states (must be in [1, %d])",
                      c->fsm_states, BEAM_FSM_REJECT - 1);
    return 0;
}

int beam_sampling_check(const BeamSampling *s, const BeamWork *w, char *err) {
    if (s->n < 1 || s->n > w->max_beam)
        return cx_err(err, "decode: samples must be in [1, %d] (got %d)", w->max_beam, s->n);
    if (!(s->temperature > 0.0f && s->temperature <= 100.0f))
        return cx_err(err, "decode: sampling temperature must be in (0, 100] (got %g)",
                      (double)s->temperature);
    if (!(s->epsilon >= 0.0f && s->epsilon < 1.0f))
        return cx_err(err, "decode: sampling epsilon must be in [0, 1) (got %g)", (double)s->epsilon);
    return 0;
}

double beam_length_penalty(int len, float alpha) {
    return alpha == 0.0f ? 1.0 : pow((5.0 + len) / 6.0, (double)alpha);
}

// lp (V) = log_softmax(logits) with the forbidden continuations of a hypothesis whose t
// tokens are hist set to -inf (the token t + 1 == max_len is the last one).
static void masked_logprobs(double *lp, const float *logits, int V, const BeamConfig *c,
                            const int32_t *hist, int t, int tid) {
    float fmx = -INFINITY;  // NaN logits are passed over, as fmax would
    for (int v = 0; v < V; v++)
        if (logits[v] > fmx) fmx = logits[v];
    double mx = (double)fmx, s = 0.0;
    for (int v = 0; v < V; v++) s += exp((double)logits[v] - mx);
    const double lse = mx + log(s);
    for (int v = 0; v < V; v++) lp[v] = (double)logits[v] - lse;
    for (int i = 0; i < c->n_banned; i++) lp[c->banned[i]] = -INFINITY;
    if (t < c->min_len) lp[c->eos] = -INFINITY;
    if (c->block_trigrams && t >= 2) {
        // the candidate trigram is (hist[t-2], hist[t-1], w): ban w where that pair was
        // followed by w before
        for (int i = 0; i + 2 < t; i++)
            if (hist[i] == hist[t - 2] && hist[i + 1] == hist[t - 1]) lp[hist[i + 2]] = -INFINITY;
    }
    if (c->fsm) {
        // the hypothesis' state, from its tokens (a state past fsm_states is a malformed
        // table: nothing continues it)
        int st = 0;
        for (int i = 0; i < t && st < c->fsm_states; i++) st = c->fsm[(size_t)st * V + hist[i]];
        if (st >= c->fsm_states) {
            for (int v = 0; v < V; v++) lp[v] = -INFINITY;
            return;
        }
        const uint8_t *next = c->fsm + (size_t)st * V;
        const int last = t + 1 == c->max_len;
        for (int v = 0; v < V; v++)
            if (next[v] == BEAM_FSM_REJECT || ((last || v == c->eos) && next[v] != 0)) lp[v] = -INFINITY;
    }
    if (c->mask) c->mask(c->mask_ctx, tid, hist, t, t + 1 == c->max_len, c->eos, lp);
}

// a ranks before b: higher score, then lower hypothesis, then lower token
static int better(const Cand *a, const Cand *b) {
    if (a->score != b->score) return a->score > b->score;
    if (a->k != b->k) return a->k < b->k;
    return a->w < b->w;
}

// min-heap by "better": heap[0] is the worst kept candidate
static void sift_down(Cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && better(&h[m], &h[l])) m = l;
        if (r < n && better(&h[m], &h[r])) m = r;
        if (m == i) return;
        Cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void sift_up(Cand *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!better(&h[p], &h[i])) return;
        Cand t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

// Empties the heap of n into out (n), best first (heap sort: no allocation, unlike qsort).
static void heap_drain(Cand *h, int n, Cand *out) {
    for (int i = n - 1; i >= 0; i--) {
        out[i] = h[0];
        h[0] = h[i];
        sift_down(h, i, 0);
    }
}

int beam_search(BeamWork *w, const BeamConfig *c, BeamStepFn step, void *ctx, int32_t *out,
                int *out_len, double *score) {
    const int K = c->beam_size, V = w->V, L = c->max_len;
    const double lp_max = beam_length_penalty(L, c->alpha);
    int cur = 0, n_live = 1, best_len = 0;
    double best_score = -INFINITY;
    w->raw[cur][0] = 0.0;
    w->parents[0] = 0;
    w->toks[0] = c->bos;
    *out_len = 0;
    for (int t = 0; t < L && n_live > 0; t++) {
        step(ctx, n_live, w->parents, w->toks, t, w->logits);
        const int32_t *hist = w->hist[cur];
        const double *raw = w->raw[cur];
        int n = 0;  // candidates kept in the heap
        for (int k = 0; k < n_live; k++) {
            double *lp = w->lp + (size_t)k * V;
            masked_logprobs(lp, w->logits + (size_t)k * V, V, c, hist + (size_t)k * w->max_len, t, 0);
            for (int v = 0; v < V; v++) {
                if (lp[v] == -INFINITY) continue;
                Cand cd = {raw[k] + lp[v], k, v};
                if (n < K) {
                    w->heap[n] = cd;
                    sift_up(w->heap, n++);
                } else if (better(&cd, &w->heap[0])) {
                    w->heap[0] = cd;
                    sift_down(w->heap, n, 0);
                }
            }
        }
        heap_drain(w->heap, n, w->sorted);
        int nxt = 1 - cur, n_next = 0;
        for (int i = 0; i < n; i++) {
            const Cand *cd = &w->sorted[i];
            const int32_t *src = hist + (size_t)cd->k * w->max_len;
            if (cd->w == c->eos || t + 1 == L) {
                double s = cd->score / beam_length_penalty(t + 1, c->alpha);
                if (s > best_score) {  // ties: the earlier (better-ranked) one stays
                    best_score = s;
                    best_len = t + 1;
                    memcpy(w->best, src, (size_t)t * sizeof(int32_t));
                    w->best[t] = cd->w;
                }
                continue;
            }
            int32_t *dst = w->hist[nxt] + (size_t)n_next * w->max_len;
            memcpy(dst, src, (size_t)t * sizeof(int32_t));
            dst[t] = cd->w;
            w->raw[nxt][n_next] = cd->score;
            w->parents[n_next] = cd->k;
            w->toks[n_next] = cd->w;
            n_next++;
        }
        cur = nxt;
        n_live = n_next;
        // stop when no live hypothesis can beat the best finished one
        if (n_live > 0 && best_len > 0) {
            double bound = -INFINITY;
            for (int k = 0; k < n_live; k++) bound = fmax(bound, w->raw[cur][k] / lp_max);
            if (best_score >= bound) break;
        }
    }
    if (best_len == 0) return -1;
    memcpy(out, w->best, (size_t)best_len * sizeof(int32_t));
    *out_len = best_len;
    *score = best_score;
    return 0;
}

int beam_greedy(BeamWork *w, const BeamConfig *c, BeamStepFn step, void *ctx, int32_t *out,
                int *out_len, double *score) {
    const int V = w->V, L = c->max_len;
    int32_t parent = 0, tok = c->bos;
    double raw = 0.0;
    *out_len = 0;
    for (int t = 0; t < L; t++) {
        step(ctx, 1, &parent, &tok, t, w->logits);
        masked_logprobs(w->lp, w->logits, V, c, out, t, 0);
        int arg = -1;
        for (int v = 0; v < V; v++)
            if (w->lp[v] != -INFINITY && (arg < 0 || w->lp[v] > w->lp[arg])) arg = v;
        if (arg < 0) return -1;  // every continuation forbidden
        raw += w->lp[arg];
        out[t] = tok = arg;
        if (arg == c->eos || t + 1 == L) {
            *out_len = t + 1;
            *score = raw / beam_length_penalty(t + 1, c->alpha);
            return 0;
        }
    }
    return -1;  // not reached: t + 1 == L ends the loop
}

// The distribution a token is drawn from (beam.h's rule): q (V) the weights
// exp((lp[v] - lp[arg]) / T) of the masked log-probabilities lp (V), kept where q[v] / Z >=
// epsilon. Returns -1 when every token is forbidden.
typedef struct {
    int32_t arg;  // the most likely token (the first of equals)
    double cut;   // epsilon * Z: the least weight kept
    double kept;  // the kept weights' sum
} SampleDist;

static int sample_prepare(const double *lp, int V, const BeamSampling *s, double *q, SampleDist *d) {
    int32_t arg = -1;
    for (int v = 0; v < V; v++)
        if (lp[v] != -INFINITY && (arg < 0 || lp[v] > lp[arg])) arg = v;
    if (arg < 0) return -1;
    const double inv_t = 1.0 / (double)s->temperature, mx = lp[arg];
    double z = 0.0;
    for (int v = 0; v < V; v++) {
        q[v] = lp[v] == -INFINITY ? 0.0 : exp((lp[v] - mx) * inv_t);
        z += q[v];
    }
    d->arg = arg;
    d->cut = (double)s->epsilon * z;
    d->kept = 0.0;
    for (int v = 0; v < V; v++)
        if (q[v] > 0.0 && q[v] >= d->cut) d->kept += q[v];
    return 0;
}

// The token drawn from d (weights q) with the uniform number u.
static int32_t sample_draw(const double *q, int V, const SampleDist *d, double u) {
    if (q[d->arg] < d->cut) return d->arg;  // nothing reaches epsilon: the most likely token
    const double target = u * d->kept;
    double cum = 0.0;
    int32_t last = d->arg;
    for (int v = 0; v < V; v++) {
        if (!(q[v] > 0.0 && q[v] >= d->cut)) continue;
        cum += q[v];
        last = v;
        if (cum > target) return v;
    }
    return last;
}

// The uniform number token t of sample j is drawn with (beam.h's rule).
static double draw_uniform(const BeamSampling *s, int j, int L, int t) {
    return cx_rng_uniform(s->seed, (uint64_t)j * (uint64_t)L + (uint64_t)t);
}

// One step's draws for live rows [lo, hi) (t > 0): row r is sample slot[r], fed its
// hypothesis' last token; its token goes to drawn[r]. Rows are independent, so the pool's
// threads take them in any split with the same result.
typedef struct {
    BeamWork *w;
    const BeamConfig *c;
    const BeamSampling *s;
    const int32_t *slot;
    int32_t *out;
    int t;
} SampleRows;

static void sample_rows(void *ctx, int tid, size_t lo, size_t hi) {
    const SampleRows *a = ctx;
    BeamWork *w = a->w;
    const int V = w->V, L = a->c->max_len;
    double *q = w->q + (size_t)tid * V;
    for (size_t r = lo; r < hi; r++) {
        const int j = a->slot[r];
        double *lp = w->lp + r * V;
        masked_logprobs(lp, w->logits + r * V, V, a->c, a->out + (size_t)j * L, a->t, tid);
        SampleDist d;
        if (sample_prepare(lp, V, a->s, q, &d) != 0) {
            w->drawn[r] = -1;
            continue;
        }
        w->drawn[r] = sample_draw(q, V, &d, draw_uniform(a->s, j, L, a->t));
    }
}

int beam_sample(BeamWork *w, const BeamConfig *c, const BeamSampling *s, BeamStepFn step,
                void *ctx, int32_t *out, int *lens, double *scores) {
    const int N = s->n, V = w->V, L = c->max_len;
    int cur = 0, n_live = 1, n_done = 0;
    for (int j = 0; j < N; j++) {
        lens[j] = 0;
        scores[j] = -INFINITY;
    }
    w->parents[0] = 0;
    w->toks[0] = c->bos;
    for (int t = 0; t < L && n_live > 0; t++) {
        step(ctx, n_live, w->parents, w->toks, t, w->logits);
        int nxt = 1 - cur, n_next = 0;
        // at t == 0 the one row (the BOS) is every sample's: its distribution is made once;
        // afterwards row r is sample slot[r], and the rows draw on the pool's threads
        const int rows = t == 0 ? N : n_live;
        if (t == 0) {
            SampleDist d;
            masked_logprobs(w->lp, w->logits, V, c, out, 0, 0);
            const int none = sample_prepare(w->lp, V, s, w->q, &d) != 0;
            for (int j = 0; j < N; j++)
                w->drawn[j] = none ? -1 : sample_draw(w->q, V, &d, draw_uniform(s, j, L, 0));
        } else {
            SampleRows a = {w, c, s, w->slot[cur], out, t};
            par_run((size_t)n_live, 1, sample_rows, &a);
        }
        for (int r = 0; r < rows; r++) {
            const int k = t == 0 ? 0 : r, j = t == 0 ? r : w->slot[cur][r];
            const int32_t v = w->drawn[r];
            if (v < 0) continue;  // this sample cannot be completed: it stays at length 0
            out[(size_t)j * L + t] = v;
            const double raw = (t == 0 ? 0.0 : w->raw[cur][r]) + w->lp[(size_t)k * V + v];
            if (v == c->eos || t + 1 == L) {
                lens[j] = t + 1;
                scores[j] = raw / beam_length_penalty(t + 1, c->alpha);
                n_done++;
                continue;
            }
            w->raw[nxt][n_next] = raw;
            w->slot[nxt][n_next] = j;
            w->parents[n_next] = k;
            w->toks[n_next] = v;
            n_next++;
        }
        cur = nxt;
        n_live = n_next;
    }
    return n_done;
}
