// run.c: the run loop (see run.h).
#include "io/run/run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/run/runlog.h"
#include "io/store/ckpt.h"
#include "models/common.h"
#include "models/par.h"

// OpenBLAS extension (declared in its cblas.h on Debian; io/ does not include it)

int run_checkpoint_step(const TrainSettings *t, long step, int stop) {
    return (t->checkpoint_every > 0 && step % t->checkpoint_every == 0) || step == t->steps || stop;
}

int run_check_step(const TrainSettings *t, long step, int stop) {
    return (t->replica_check_every > 0 && step % t->replica_check_every == 0) ||
           run_checkpoint_step(t, step, stop);
}

// Writes a duration as "42s", "3m07s", "1h05m" ("?" when unknown or absurd).
static void run_format_eta(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
}

void run_set_threads(const TrainSettings *t) {
    par_set_threads(t->threads);
}

// Mean validation loss over the first examples (train.eval_samples, at most the validation
// set), split over the data-holding participants; prints the line when talk is set.
static int run_validate(RunLoop *L, long step, int talk, double *out, char *err) {
    Replica *rep = L->rep;
    const int rank = L->comm.size > 1 ? L->comm.rank : 0, size = L->comm.size > 1 ? L->comm.size : 1;
    long ne = rep->train->eval_samples < rep->n_valid ? rep->train->eval_samples : rep->n_valid;
    long lo = ne * rank / size, hi = ne * (rank + 1) / size, ntok = 0;
    double aux = 0.0;
    double mean = task_eval(&rep->valid, (uint64_t)lo, hi - lo, &ntok, &aux);
    double v[3] = {mean * (double)ntok, (double)ntok, aux * (double)(hi - lo)};
    if (L->comm.sum && size > 1 && L->comm.sum(L->comm.ctx, v, 3, err) != 0) return -1;
    *out = v[1] > 0 ? v[0] / v[1] : NAN;
    if (talk) {
        fprintf(stderr, "valid step %ld: loss %.4f (ppl %.1f) over %.0f %s tokens of %ld %s", step,
                *out, exp(*out), v[1], rep->valid_unit, ne, rep->example_unit);
        if (rep->aux_name) fprintf(stderr, ", %s loss %.4f", rep->aux_name, ne > 0 ? v[2] / (double)ne : 0.0);
        fputc('\n', stderr);
    }
    return 0;
}

// "lr 1.00e-03", or with a second parameter group "lr 2.00e-04/1.50e-03".
static void run_format_lr(const Optim *o, const StepResult *r, char *buf, size_t cap) {
    if (o->group_first > 0)
        snprintf(buf, cap, "lr %.2e/%.2e", (double)r->lr, (double)optim_spec_lr(o, o->group_first, r->step - 1));
    else
        snprintf(buf, cap, "lr %.2e", (double)r->lr);
}

int run_loop(RunLoop *L, char *err) {
    Replica *rep = L->rep;
    Trainer *tr = &rep->tr;
    const TrainSettings *ts = rep->train;
    const long total = ts->steps;
    const int talk = L->writer && !L->quiet;
    const int validate = L->validate && rep->n_valid > 0 && ts->eval_every > 0;
    const int n_ranks = L->comm.size > 0 ? L->comm.size : 1;
    const char *run_dir = rep->run_dir;
    char e2[CX_ERRLEN];
    double t_start = cx_now(), t_window = t_start;
    double window_samples = 0, window_tokens = 0;
    long first_step = tr->optim.step;
    recipe_wire_averager(rep, &L->avg);
    if (validate && tr->optim.step == 0 && total > 0) {
        double v0;  // where the run starts from (not a metrics row)
        if (run_validate(L, 0, talk, &v0, e2) != 0) return cx_err(err, "validation at step 0: %s", e2);
    }
    while (L->unbounded || tr->optim.step < total) {
        StepResult r;
        if (trainer_step(tr, &r, err) != 0) return -1;
        // a signal on any participant stops every one at this same step boundary (for
        // strategies with longer rounds: at the end of this round)
        const int boundary = !tr->avg.boundary || tr->avg.boundary(tr->avg.ctx);
        int stop = boundary && L->stop_flag && *L->stop_flag != 0;
        if (boundary && L->comm.stop_vote && (stop = L->comm.stop_vote(L->comm.ctx, stop, err)) < 0)
            return -1;
        const float *shared = tr->avg.shared ? tr->avg.shared(tr->avg.ctx) : tr->task.params;
        if (boundary && L->comm.check_replicas && run_check_step(ts, r.step, stop) &&
            L->comm.check_replicas(L->comm.ctx, shared, tr->task.n_params, r.step, err) != 0)
            return -1;
        double now = cx_now(), step_s = r.compute_s + r.comm_s;
        double tokens = rep->recipe->step_tokens(rep, &r, n_ranks);
        window_samples += (double)r.samples;
        window_tokens += tokens;
        double sent = 0, recv = 0;
        if (tr->avg.traffic) tr->avg.traffic(tr->avg.ctx, &sent, &recv);
        MetricsRow row = {.time_s = now - t_start, .step = r.step, .samples = (long)tr->samples_seen,
                          .loss = r.loss, .lr = r.lr, .samples_per_s = r.samples / step_s,
                          .tokens_per_s = tokens / step_s, .compute_s = r.compute_s,
                          .comm_s = r.comm_s, .bytes_sent = (long long)sent,
                          .bytes_recv = (long long)recv, .participants = r.participants,
                          .valid_loss = NAN};
        if (validate && (r.step % ts->eval_every == 0 || r.step == total) &&
            run_validate(L, r.step, talk, &row.valid_loss, e2) != 0)
            return cx_err(err, "validation at step %ld: %s", r.step, e2);
        if (L->writer && L->metrics && runlog_write_row(L->metrics, &row) != 0)
            return cx_err(err, "cannot write %s/metrics.csv: %s", run_dir, strerror(errno));
        if (talk && (r.step % ts->log_every == 0 || r.step == total || r.step == first_step + 1)) {
            double dt = now - t_window;
            double per_step = (now - t_start) / (double)(r.step - first_step);
            char eta[32], lr[64], aux[48] = "";
            run_format_eta(eta, sizeof eta, per_step * (double)(total - r.step));
            run_format_lr(&tr->optim, &r, lr, sizeof lr);
            if (rep->aux_name) snprintf(aux, sizeof aux, " | %s %.4f", rep->aux_name, r.aux_loss);
            fprintf(stderr, "step %ld/%ld | loss %.4f%s | %s | grad %.3f | %.1f samples/s | %.0f tok/s | ETA %s\n",
                    r.step, total, r.loss, aux, lr, r.grad_norm, dt > 0 ? window_samples / dt : 0.0,
                    dt > 0 ? window_tokens / dt : 0.0, eta);
            t_window = now;
            window_samples = window_tokens = 0;
        }
        const int ckpt = boundary && run_checkpoint_step(ts, r.step, stop);
        if (ckpt && tr->avg.flush && tr->avg.flush(tr->avg.ctx, err) != 0) return -1;
        if (ckpt && (L->writer || L->save)) {
            char writer[64];
            snprintf(writer, sizeof writer, "%s %s", L->tool, CONFLUX_VERSION);
            if (L->save) {
                if (L->save(L->save_ctx, tr, run_dir, writer, L->cfg_text, ts->seed, err) != 0) return -1;
            } else {
                int n_alias;
                const TensorAlias *aliases = rep->recipe->aliases(&n_alias);
                if (ckpt_save_trainer(run_dir, rep->recipe->name, writer, L->cfg_text, tr, aliases,
                                      n_alias, ts->seed, L->outer, err) != 0)
                    return -1;
            }
            if (L->writer && !L->quiet) fprintf(stderr, "checkpoint %s/checkpoint-%06ld.h5\n", run_dir, r.step);
        }
        int hook = L->after_step ? L->after_step(L->ctx, &r, err) : 0;
        if (hook < 0) return -1;
        if (stop) {
            int sig = L->stop_flag ? (int)*L->stop_flag : 0;
            if (L->writer && sig)
                fprintf(stderr, "%s: signal %d: checkpointed at step %ld, exiting\n", L->tool, sig, r.step);
            else if (L->writer)
                fprintf(stderr, "%s: another participant was signalled: checkpointed at step %ld, "
                                "exiting\n", L->tool, r.step);
            return RUN_STOPPED;
        }
        if (hook == 1) return RUN_STOPPED;
    }
    // RUN_DIR/finished marks a run that took all its steps (a batch script requeues a job
    // that exited 0 without it: stopped by a signal at a step boundary)
    if (L->writer && runlog_write_finished(run_dir, tr->optim.step, err) != 0) return -1;
    return RUN_FINISHED;
}
