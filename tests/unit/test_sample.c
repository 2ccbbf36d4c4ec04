// test_sample.c: beam_sample (models/beam.h's sampling) against an independent Python
// reference (tests/ref/sample_golden.h, written by tests/ref/sample_ref.py from beam.h's text)
// draw by draw on pools of one and two threads, a caller's mask called from the pool's
// threads, its frequencies against the exact distributions, and its argument checks.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/beam.h"
#include "models/common.h"
#include "models/par.h"
#include "tests/ref/sample_golden.h"
#include "tests/unit/testutil.h"

// The toy language model: step t's logits for a row are sg_table[t][the token fed]. It
// checks the step contract: t counts up from 0, K == 1 with BOS at t == 0, parents index the
// previous call's rows.
typedef struct {
    int next_t, prev_K, bad;
    long rows;  // rows advanced in all
} Toy;

static void toy_step(void *ctx, int K, const int32_t *parents, const int32_t *tokens, int t,
                     float *logits) {
    Toy *toy = ctx;
    if (t != toy->next_t++ || t >= SG_MAX_LEN || K < 1) toy->bad++;
    if (t == 0 && (K != 1 || parents[0] != 0 || tokens[0] != SG_BOS)) toy->bad++;
    for (int k = 0; k < K; k++) {
        if (t > 0 && (parents[k] < 0 || parents[k] >= toy->prev_K)) toy->bad++;
        if (tokens[k] < 0 || tokens[k] >= SG_V) {
            toy->bad++;
            continue;
        }
        memcpy(logits + (size_t)k * SG_V, sg_table[t < SG_MAX_LEN ? t : 0][tokens[k]],
               SG_V * sizeof(float));
    }
    toy->prev_K = K;
    toy->rows += K;
}

// On a pool of one thread and of two (a step's rows drawn on both: the same draws).
static void test_golden(void) {
    BeamWork *w = beam_work_create(SG_MAX_N, SG_MAX_LEN, SG_V);
    char err[CX_ERRLEN];
    for (int cc = 0; cc < 2 * SG_N_CASES; cc++) {
        const int ci = cc % SG_N_CASES, threads = 1 + cc / SG_N_CASES;
        if (ci == 0) {
            par_set_threads(threads);
            printf("\n  pool of %d thread(s):", threads);
        }
        const SgCase *g = &sg_cases[ci];
        BeamConfig c = {.beam_size = 1, .min_len = g->min_len, .max_len = g->max_len,
                        .alpha = g->alpha, .block_trigrams = g->block_trigrams, .bos = SG_BOS,
                        .eos = SG_EOS, .banned = g->banned, .n_banned = g->n_banned};
        BeamSampling s = {.n = g->n, .temperature = g->temperature, .epsilon = g->epsilon,
                          .seed = g->seed};
        CU_ASSERT_FATAL(beam_config_check(&c, w, err) == 0);
        CU_ASSERT_FATAL(beam_sampling_check(&s, w, err) == 0);
        int32_t out[SG_MAX_N * SG_MAX_LEN];
        int lens[SG_MAX_N];
        double scores[SG_MAX_N];
        Toy toy = {0};
        int got = beam_sample(w, &c, &s, toy_step, &toy, out, lens, scores);
        CU_ASSERT_EQUAL(toy.bad, 0);
        CU_ASSERT_EQUAL(got, g->n_complete);
        int same = 1;
        for (int j = 0; j < g->n; j++) {
            int ok = lens[j] == g->len[j] &&
                     memcmp(out + (size_t)j * g->max_len, g->seq[j], (size_t)lens[j] * sizeof(int32_t)) == 0;
            if (g->len[j] == 0) ok = ok && scores[j] == -INFINITY;
            else ok = ok && fabs(scores[j] - g->score[j]) <= 1e-12 * (1 + fabs(g->score[j]));
            if (!ok) {
                printf("\n  case '%s' sample %d: length %d (want %d), score %.15g (want %.15g)",
                       g->name, j, lens[j], g->len[j], scores[j], g->score[j]);
                same = 0;
            }
        }
        CU_ASSERT(same);
        printf("\n  %-62s %2d of %2d complete, %ld rows stepped", g->name, got, g->n, toy.rows);
    }
    par_set_threads(1);
    printf("\n");
    beam_work_free(w);
}

// A caller's mask called from the pool's threads: each call gets its thread's tid, the
// verdicts (a pure function of the hypothesis) are applied, and two threads draw exactly
// what one does. The mask bans token (last token + t) mod V and counts its calls per tid.
typedef struct {
    long calls[CX_PAR_MAX_THREADS];
    int bad_tid, broke;
} TidMask;

static void tid_mask(void *ctx, int tid, const int32_t *hist, int t, int last, int32_t eos,
                     double *lp) {
    TidMask *m = ctx;
    (void)last;
    if (tid < 0 || tid >= par_threads()) {
        m->bad_tid = 1;  // a plain store: every racing writer stores the same 1
        return;
    }
    m->calls[tid]++;
    const int32_t ban = (int32_t)(((t ? hist[t - 1] : 0) + t) % SG_V);
    if (ban != eos) lp[ban] = -INFINITY;
}

static void test_mask_threads(void) {
    enum { N = 16, L = 6 };
    BeamWork *w = beam_work_create(N, L, SG_V);
    int32_t out[2][N * L];
    int lens[2][N];
    double scores[2][N];
    TidMask m[2] = {0};
    long rows[2];
    for (int k = 0; k < 2; k++) {
        par_set_threads(k + 1);
        BeamConfig c = {.beam_size = 1, .min_len = 2, .max_len = L, .alpha = 0.5f, .bos = SG_BOS,
                        .eos = SG_EOS, .mask = tid_mask, .mask_ctx = &m[k]};
        BeamSampling s = {.n = N, .temperature = 1.5f, .epsilon = 0.0f, .seed = 77};
        Toy toy = {0};
        memset(out[k], 0, sizeof out[k]);
        CU_ASSERT(beam_sample(w, &c, &s, toy_step, &toy, out[k], lens[k], scores[k]) >= 1);
        CU_ASSERT_EQUAL(toy.bad, 0);
        rows[k] = toy.rows;
        long calls = 0;
        for (int i = 0; i < CX_PAR_MAX_THREADS; i++) calls += m[k].calls[i];
        // one call per hypothesis stepped (the BOS row once for all samples)
        CU_ASSERT_EQUAL(calls, toy.rows);
        CU_ASSERT_EQUAL(m[k].bad_tid, 0);
        for (int j = 0; j < N; j++)
            for (int t = 1; t < lens[k][j]; t++) {
                const int32_t tok = out[k][j * L + t];
                if (tok != SG_EOS && tok == (out[k][j * L + t - 1] + t) % SG_V) m[k].broke++;
            }
        CU_ASSERT_EQUAL(m[k].broke, 0);
        printf("\n  pool of %d: %ld rows, mask calls on thread 0 / 1: %ld / %ld", k + 1, toy.rows,
               m[k].calls[0], m[k].calls[1]);
    }
    par_set_threads(1);
    CU_ASSERT_EQUAL(rows[0], rows[1]);
    CU_ASSERT(memcmp(lens[0], lens[1], sizeof lens[0]) == 0);
    CU_ASSERT(memcmp(out[0], out[1], sizeof out[0]) == 0);
    CU_ASSERT(memcmp(scores[0], scores[1], sizeof scores[0]) == 0);
    printf("\n");
    beam_work_free(w);
}

// The first token's frequencies over 64 x 400 draws against the exact distribution
// softmax(lp / T), epsilon-truncated and renormalised, for three settings: within 0.015
// (at most 5 standard deviations), and exactly 0 for the tokens epsilon cuts.
static void test_frequencies(void) {
    enum { N = 64, SEEDS = 400 };
    BeamWork *w = beam_work_create(N, 1, SG_V);
    const int32_t banned[] = {SG_BOS};
    BeamConfig c = {.beam_size = 1, .max_len = 1, .alpha = 0.0f, .bos = SG_BOS, .eos = SG_EOS,
                    .banned = banned, .n_banned = 1};
    const float settings[3][2] = {{1.0f, 0.0f}, {0.5f, 0.0f}, {1.0f, 0.08f}};
    const float *row = sg_table[0][SG_BOS];
    for (int si = 0; si < 3; si++) {
        const double T = settings[si][0], eps = settings[si][1];
        double p[SG_V] = {0}, z = 0, mx = -INFINITY;
        for (int v = 1; v < SG_V; v++) mx = fmax(mx, row[v]);
        for (int v = 1; v < SG_V; v++) z += p[v] = exp((row[v] - mx) / T);
        double kept = 0;
        int n_cut = 0;
        for (int v = 1; v < SG_V; v++) {
            if (p[v] / z < eps) p[v] = 0, n_cut++;
            kept += p[v];
        }
        for (int v = 0; v < SG_V; v++) p[v] /= kept;
        long count[SG_V] = {0};
        int32_t out[N];
        int lens[N];
        double scores[N];
        for (int seed = 0; seed < SEEDS; seed++) {
            BeamSampling s = {.n = N, .temperature = (float)T, .epsilon = (float)eps,
                              .seed = 1000u + (uint64_t)seed};
            Toy toy = {0};
            CU_ASSERT_FATAL(beam_sample(w, &c, &s, toy_step, &toy, out, lens, scores) == N);
            for (int j = 0; j < N; j++) count[out[j]]++;
        }
        double worst = 0;
        int zero_ok = 1;
        for (int v = 0; v < SG_V; v++) {
            double f = (double)count[v] / (N * SEEDS);
            worst = fmax(worst, fabs(f - p[v]));
            if (p[v] == 0 && count[v] != 0) zero_ok = 0;
        }
        printf("\n  T %.1f epsilon %.2f: %d tokens cut, max |frequency - p| %.4f", T, eps, n_cut,
               worst);
        CU_ASSERT(worst < 0.015);
        CU_ASSERT(zero_ok);
        if (eps > 0) CU_ASSERT(n_cut >= 2);  // the setting cuts something
    }
    printf("\n");
    beam_work_free(w);
}

static void test_checks(void) {
    BeamWork *w = beam_work_create(4, 5, SG_V);
    char err[CX_ERRLEN];
    BeamSampling ok = {.n = 4, .temperature = 1.0f, .epsilon = 0.0f};
    CU_ASSERT(beam_sampling_check(&ok, w, err) == 0);
    BeamSampling s = ok;
    s.n = 5;
    CU_ASSERT(beam_sampling_check(&s, w, err) == -1 && strstr(err, "samples must be in [1, 4]"));
    s.n = 0;
    CU_ASSERT(beam_sampling_check(&s, w, err) == -1 && strstr(err, "samples"));
    s = ok;
    s.temperature = 0.0f;
    CU_ASSERT(beam_sampling_check(&s, w, err) == -1 && strstr(err, "temperature"));
    s.temperature = NAN;
    CU_ASSERT(beam_sampling_check(&s, w, err) == -1 && strstr(err, "temperature"));
    s = ok;
    s.epsilon = 1.0f;
    CU_ASSERT(beam_sampling_check(&s, w, err) == -1 && strstr(err, "epsilon"));
    s.epsilon = -0.1f;
    CU_ASSERT(beam_sampling_check(&s, w, err) == -1 && strstr(err, "epsilon"));
    beam_work_free(w);
}

int main(void) {
    const TuTest tests[] = {
        {"samples equal the Python reference's, draw by draw", test_golden},
        {"a caller's mask on the pool's threads: same draws, rules kept", test_mask_threads},
        {"first-token frequencies match the exact distribution", test_frequencies},
        {"invalid sampling settings are refused by name", test_checks},
    };
    const TuSuite suites[] = {
        {.name = "beam_sample", .tests = tests, .n_tests = TU_NELEM(tests)},
    };
    return tu_run(suites, TU_NELEM(suites), NULL, CU_BRM_VERBOSE);
}
