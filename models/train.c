// train.c: the training loop (see train.h).
#include "models/train.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "models/common.h"

double cx_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int trainer_step(Trainer *t, StepResult *r, char *err) {
    if (t->avg.step) return t->avg.step(t->avg.ctx, t, r, err);
    TrainTask *k = &t->task;
    double t0 = cx_now(), t_begin = t0;
    memset(k->grads, 0, k->n_params * sizeof(float));
    // this participant's contiguous share of the global batch
    long G = t->global_batch, R = t->avg.n_ranks > 0 ? t->avg.n_ranks : 1;
    long lo = G * t->avg.rank / R, hi = G * (t->avg.rank + 1) / R;
    if (t->avg.plan) {
        if (t->avg.plan(t->avg.plan_ctx, G, &lo, &hi, err) != 0) return -1;
        if (lo < 0 || hi < lo || hi > G)
            return cx_err(err, "step %ld: planned share [%ld, %ld) lies outside the global "
                          "batch of %ld", t->optim.step + 1, lo, hi, G);
        t0 = cx_now();  // waiting for the plan is communication, not compute
    }
    double t_plan = t0;
    double stats[STAT_COUNT] = {0};
    stats[STAT_PARTICIPANTS] = hi > lo ? 1.0 : 0.0;
    for (long s = lo; s < hi; s += k->micro_batch) {
        int B = (int)(hi - s < k->micro_batch ? hi - s : k->micro_batch);
        long ntok = 0;
        double aux = 0.0;
        int final = s + k->micro_batch >= hi;
        if (final && t->avg.begin) t->avg.begin(t->avg.ctx);
        stats[STAT_LOSS_SUM] +=
            k->micro_step(k->ctx, t->samples_seen + (uint64_t)s, B, 1, final, &ntok, &aux);
        stats[STAT_TOKENS] += (double)ntok;
        stats[STAT_AUX_SUM] += aux;
        stats[STAT_SAMPLES] += B;
    }
    double t1 = cx_now();
    stats[STAT_COMPUTE_S] = t1 - t0;
    if (t->avg.sum && t->avg.sum(t->avg.ctx, k->grads, k->n_params, stats, STAT_COUNT, err) != 0)
        return -1;
    double t2 = cx_now();
    if (stats[STAT_TOKENS] < 1)
        return cx_err(err, "step %ld: the global batch has no loss tokens", t->optim.step + 1);
    float inv = (float)(1.0 / stats[STAT_TOKENS]);
    optim_scale(k->grads, k->n_params, inv);
    double loss = stats[STAT_LOSS_SUM] / stats[STAT_TOKENS];
    r->lr = optim_lr(&t->optim.cfg, t->optim.step);
    double gn = optim_global_grad_norm(&t->optim, k->grads);
    if (!isfinite(loss) || !isfinite(gn))
        return cx_err(err, "step %ld: non-finite loss (%g) or gradient norm (%g); not applied",
                      t->optim.step + 1, loss, gn);
    optim_step_with_norm(&t->optim, k->params, k->grads, gn);
    if (k->prepare) k->prepare(k->prep_ctx, k->params);
    r->grad_norm = gn;
    t->samples_seen += (uint64_t)G;
    double t3 = cx_now();
    r->step = t->optim.step;
    r->loss = loss;
    r->aux_loss = stats[STAT_SAMPLES] > 0 ? stats[STAT_AUX_SUM] / stats[STAT_SAMPLES] : 0.0;
    r->tokens = (long)stats[STAT_TOKENS];
    r->samples = (long)stats[STAT_SAMPLES];
    r->participants = (int)stats[STAT_PARTICIPANTS];
    r->compute_s = (t1 - t0) + (t3 - t2);
    r->comm_s = (t2 - t1) + (t_plan - t_begin);
    if (t->avg.after_step) {
        if (t->avg.after_step(t->avg.ctx, t, r, err) != 0) return -1;
        r->comm_s += cx_now() - t3;  // an outer step's exchange is communication
    }
    return 0;
}

double task_eval(const TrainTask *k, uint64_t s0, long n_samples, long *n_tokens, double *aux) {
    double sum = 0.0, aux_sum = 0.0;
    long tok = 0;
    for (long s = 0; s < n_samples; s += k->micro_batch) {
        int B = (int)(n_samples - s < k->micro_batch ? n_samples - s : k->micro_batch);
        long nt = 0;
        double a = 0.0;
        sum += k->micro_step(k->ctx, s0 + (uint64_t)s, B, 0, 0, &nt, &a);
        tok += nt;
        aux_sum += a;
    }
    *n_tokens = tok;
    if (aux) *aux = n_samples > 0 ? aux_sum / (double)n_samples : 0.0;
    return tok > 0 ? sum / (double)tok : 0.0;
}
