// planner.c: the bridge's round plans (see planner.h).
#include "bridge/planner.h"

#include "models/common.h"

// The throughput plan for the nv volunteers v[0..nv) (all in the plan): writes share[0..nv).
static void plan_throughput(const BrPlanParams *p, int nv, BrPlanSpeed *v, long *share) {
    const long G = p->global_batch;
    const int NT = p->n_trainers;
    const double rt = p->trainer_rate;
    const long probe = p->probe_samples > 0 ? p->probe_samples : 1;
    int measured[BR_PLAN_MAX_VOLUNTEERS], use[BR_PLAN_MAX_VOLUNTEERS];
    for (int j = 0; j < nv; j++) measured[j] = use[j] = rt > 0 && v[j].rate > 0;
    double tau = 0;
    for (int iter = 0, changed = 1; iter < 8 && changed; iter++) {
        double num = (double)G, den = NT * rt;
        for (int j = 0; j < nv; j++) {
            if (use[j]) {
                num += v[j].rate * v[j].up_s;
                den += v[j].rate;
            } else if (!measured[j]) {
                num -= (double)probe;  // probes come off the top
            }
        }
        tau = den > 0 ? num / den : 0;
        changed = 0;
        for (int j = 0; j < nv; j++)
            if (use[j] && tau <= v[j].up_s) use[j] = 0, changed = 1;
    }
    // without volunteers a round would take tau0; a volunteer whose upload alone takes more
    // than twice that would only slow the cluster down: it gets no share (and falls behind:
    // the bridge drops laggards); every other one gets at least a probe-sized share, which
    // also keeps it in step (the round waits for its upload, at most until the deadline)
    double tau0 = rt > 0 ? (double)G / (NT * rt) : 0;
    long total = 0;
    for (int j = 0; j < nv; j++) {
        if (measured[j]) {
            share[j] = use[j] ? (long)(0.9 * v[j].rate * (tau - v[j].up_s)) : 0;
            if (share[j] < probe) share[j] = v[j].up_s <= 2 * tau0 ? probe : 0;
        } else {
            share[j] = probe;
        }
        // a volunteer left out for a while gets a probe share: its speed may have changed
        if (share[j] == 0 && ++v[j].idle_rounds >= 8) share[j] = probe;
        if (share[j] > 0) v[j].idle_rounds = 0;
        total += share[j];
    }
    // the trainers keep at least one sample each
    for (int j = nv - 1; j >= 0 && total > G - NT; j--) {
        long cut = total - (G - NT) < share[j] ? total - (G - NT) : share[j];
        share[j] -= cut;
        total -= cut;
    }
}

int br_plan_round(const BrPlanParams *p, BrPlanSpeed *v, int n_vols, long *share,
                  long *trainer_samples) {
    CHECK(n_vols >= 0 && n_vols <= BR_PLAN_MAX_VOLUNTEERS, "br_plan_round: %d volunteers", n_vols);
    const long G = p->global_batch;
    const int NT = p->n_trainers;
    // every participant needs at least one sample: leave volunteers out from the start
    int nv = n_vols;
    while (nv > 0 && G < NT + nv) nv--;
    int first = n_vols - nv;
    for (int j = 0; j < first; j++) share[j] = 0;
    // the equal plan: participant k of P takes G*(k+1)/P - G*k/P
    long P = NT + nv;
    long *in = share + first;
    for (int j = 0; j < nv; j++) in[j] = G * (NT + j + 1) / P - G * (NT + j) / P;
    if (!p->equal && nv > 0) plan_throughput(p, nv, v + first, in);
    long vol_total = 0;
    for (int j = 0; j < nv; j++) {
        if (p->max_share > 0 && in[j] > p->max_share) in[j] = p->max_share;
        vol_total += in[j];
    }
    *trainer_samples = G - vol_total;
    return nv;
}

void br_plan_note_upload(BrPlanSpeed *v, uint64_t samples, double compute_s, double upload_s) {
    double rate = compute_s > 1e-3 ? (double)samples / compute_s : 0.0;
    v->rate = v->rate > 0 ? 0.5 * v->rate + 0.5 * rate : rate;
    v->up_s = v->up_s > 0 ? 0.5 * v->up_s + 0.5 * upload_s : upload_s;
}

double br_plan_note_trainers(double rate, long trainer_samples, int n_trainers,
                             double compute_s_sum) {
    double tc = compute_s_sum / n_trainers;
    if (tc > 1e-4 && trainer_samples > 0) {
        double r = (double)trainer_samples / n_trainers / tc;
        rate = rate > 0 ? 0.5 * rate + 0.5 * r : r;
    }
    return rate;
}
