// conflux-train: ALBERT masked-LM pretraining. One training loop (models/train.h) fed by
// token shards; the averaging backend is MPI (mpi/dp.h) when the job has several ranks.
// Runs alone, under mpirun, or under srun --mpi=pmix. Rank 0 writes the run directory,
// metrics and checkpoints; every rank holds an identical replica.
#include <cblas.h>
#include <mpi.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/ckpt.h"
#include "io/config.h"
#include "io/mlm.h"
#include "io/runlog.h"
#include "io/shard.h"
#include "models/albert.h"
#include "models/common.h"
#include "models/rng.h"
#include "models/train.h"
#include "mpi/dp.h"
#include "mpi/hybrid_mpi.h"

#define TOOL "conflux-train"

static int g_rank = 0, g_size = 1;
static int g_joined = 0;  // every rank passed set-up (the barrier)

// "conflux-train: error: ..." on stderr; with several ranks prefixed by the rank.
__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...) {
    char msg[CX_ERRLEN + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_size > 1) fprintf(stderr, TOOL ": error: rank %d: %s\n", g_rank, msg);
    else fprintf(stderr, TOOL ": error: %s\n", msg);
}

// Setup failures return the exit status; with several ranks, main() turns a failure on
// any rank into MPI_Abort so that no rank is left waiting in a collective.
#define SETUP_FAIL(code, ...)   \
    do {                        \
        report(__VA_ARGS__);    \
        return (code);          \
    } while (0)

// OpenBLAS extensions (declared in its cblas.h on Debian, repeated for clarity)
extern void openblas_set_num_threads(int);
extern char *openblas_get_config(void);

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: " TOOL " [--config FILE.ini] [--set section.key=value]... [--resume CHECKPOINT]\n"
            "\n"
            "Pretrains an ALBERT masked-LM on HDF5 token shards.\n"
            "\n"
            "  --config FILE     INI configuration ([model] [optim] [data] [train] [run])\n"
            "  --set S.K=V       override one key (repeatable), e.g. --set train.steps=200\n"
            "  --resume CKPT     continue from a checkpoint (its configuration is the base;\n"
            "                    --config/--set apply on top; model shapes must match)\n"
            "  --print-config    print the effective configuration and exit\n"
            "  -q, --quiet       no progress lines\n"
            "  -h, --help        this text\n"
            "\n"
            "Writes RUN_DIR/run.json, RUN_DIR/metrics.csv and RUN_DIR/checkpoint-STEP.h5\n"
            "(RUN_DIR/latest.h5 links to the newest), and RUN_DIR/finished once every step is\n"
            "done. SIGTERM, SIGINT or SIGUSR1 (on any rank) checkpoints at the next step\n"
            "boundary and exits 0 without RUN_DIR/finished.\n"
            "\n"
            "Runs alone, under mpirun -np N, or under srun --mpi=pmix: ranks split each global\n"
            "batch, average gradients with MPI and apply the same step; rank 0 writes.\n"
            "\n"
            "examples:\n"
            "  " TOOL " --set train.steps=300 --set run.dir=runs/demo\n"
            "  mpirun -np 2 " TOOL " --set train.global_batch=64 --set run.dir=runs/dp2\n");
}

// How the job was started: srun, mpirun, or neither.

static void fmt_eta(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
}

static int save_checkpoint(const char *run_dir, const char *cfg_text, const Trainer *tr, long seed,
                           char *err) {
    int n_alias;
    const TensorAlias *aliases = albert_aliases(&n_alias);
    return ckpt_save_trainer(run_dir, "albert", TOOL " " CONFLUX_VERSION, cfg_text, tr, aliases, n_alias,
                             seed, err);
}

static int train_main(int argc, char **argv, HybridComm *hc) {
    // world: every rank (trainers + bridge) averages; comm: the trainers (data, evaluation,
    // run directory). Without a bridge both are MPI_COMM_WORLD.
    MPI_Comm comm = hybrid_trainers(hc);
    const int rank = g_rank, size = g_size, world_size = hybrid_size(hc);
    const int bridged = hybrid_bridge_rank(hc) >= 0;
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"resume", required_argument, 0, 'r'}, {"print-config", no_argument, 0, 'p'},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *config_path = NULL, *resume_path = NULL;
    enum { MAX_SETS = 256 };
    const char *sets[MAX_SETS];
    int n_sets = 0, quiet = 0, print_config = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:s:r:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 's':
            if (n_sets == MAX_SETS) {
                report("more than %d --set options", MAX_SETS);
                return 2;
            }
            sets[n_sets++] = optarg;
            break;
        case 'r': resume_path = optarg; break;
        case 'p': print_config = 1; break;
        case 'q': quiet = 1; break;
        case 'h':
            if (rank == 0) usage(stdout);
            return 0;
        default:
            report("bad option '%s' (see --help)", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        report("unexpected argument '%s' (see --help)", argv[optind]);
        return 2;
    }

    char err[CX_ERRLEN];
    RunConfig cfg;
    config_defaults(&cfg);
    Ckpt *ck = NULL;
    if (resume_path) {
        if (ckpt_open(&ck, resume_path, err) != 0) {
            SETUP_FAIL(1, "%s", err);
        }
        if (config_load_string(&cfg, ckpt_config_text(ck), resume_path, err) != 0) {
            SETUP_FAIL(1, "checkpoint configuration: %s", err);
        }
    }
    if (config_path && config_load_file(&cfg, config_path, err) != 0) {
        SETUP_FAIL(2, "%s", err);
    }
    for (int i = 0; i < n_sets; i++) {
        if (config_set(&cfg, sets[i], err) != 0) {
            SETUP_FAIL(2, "%s", err);
        }
    }
    if (config_check(&cfg, err) != 0) {
        SETUP_FAIL(2, "configuration: %s", err);
    }
    cfg.optim.total_steps = cfg.train.steps;
    size_t cfg_len = config_to_ini(&cfg, NULL, 0);
    char *cfg_text = cx_calloc(cfg_len + 1, 1);
    config_to_ini(&cfg, cfg_text, cfg_len + 1);
    if (print_config) {
        if (rank == 0) fputs(cfg_text, stdout);
        return 0;
    }
    if (cfg.train.threads > 0) openblas_set_num_threads(cfg.train.threads);

    // data
    Shard train_shard, valid_shard;
    MlmData train_data, valid_data;
    int have_valid = cfg.data.valid[0] && cfg.train.eval_samples > 0;
    if (shard_read(&train_shard, cfg.data.train, err) != 0) {
        SETUP_FAIL(1, "%s", err);
    }
    uint64_t seed = (uint64_t)cfg.train.seed;
    if (mlm_data_init(&train_data, &train_shard, cfg.data.seq_len, cfg.model.vocab_size,
                      cx_rng_derive(seed, 1), 1, cfg.data.mask_prob, cfg.model.sop, err) != 0) {
        SETUP_FAIL(1, "%s (%s)", err, cfg.data.train);
    }
    shard_free(&train_shard);
    if (have_valid) {
        if (shard_read(&valid_shard, cfg.data.valid, err) != 0) {
            SETUP_FAIL(1, "%s", err);
        }
        // validation: fixed windows in order with fixed masking, the same on every run
        if (mlm_data_init(&valid_data, &valid_shard, cfg.data.seq_len, cfg.model.vocab_size, 777,
                          0, cfg.data.mask_prob, cfg.model.sop, err) != 0) {
            SETUP_FAIL(1, "%s (%s)", err, cfg.data.valid);
        }
        shard_free(&valid_shard);
        if ((uint64_t)cfg.train.eval_samples > valid_data.n_windows)
            cfg.train.eval_samples = (long)valid_data.n_windows;
    }

    // model, optimizer, trainer
    Albert *model = albert_create(&cfg.model, cfg.train.micro_batch, cfg.data.seq_len,
                                  cx_rng_derive(seed, 2));
    MlmTask mt, mt_valid;
    Trainer tr = {0};
    mlm_task_init(&mt, &tr.task, model, &train_data, cfg.train.micro_batch, cx_rng_derive(seed, 3));
    TrainTask valid_task;
    if (have_valid) mlm_task_init(&mt_valid, &valid_task, model, &valid_data, cfg.train.micro_batch, 0);
    optim_init(&tr.optim, &cfg.optim, albert_specs(model), albert_n_specs(model),
               albert_n_params(model));
    tr.global_batch = cfg.train.global_batch;
    if (!bridged && tr.global_batch < size)
        SETUP_FAIL(2, "train.global_batch (%ld) is smaller than the number of ranks (%d)",
                   tr.global_batch, size);
    DpComm *dp = NULL;
    HybridTrainerPlan tplan = {.h = hc, .steps_done = &tr.optim.step};
    if (bridged) hybrid_bcast_config(hc, &cfg_text);  // the bridge builds the same model
    if (world_size > 1) {
        // the shared layer's last application and the input-embedding rows are summed
        // apart, so the rest of the gradient can be summed while the backward runs
        hybrid_create_averager(hc, albert_grads(model), albert_n_params(model),
                               albert_specs(model), albert_n_specs(model),
                               albert_enable_grad_split(model));
        dp = hybrid_dp(hc);
        tr.avg = dp_averager(dp);
        if (bridged) {
            tr.avg.plan = hybrid_trainer_plan;
            tr.avg.plan_ctx = &tplan;
            tr.avg.rank = hybrid_trainer_rank(hc);
            tr.avg.n_ranks = hybrid_n_trainers(hc);
        }
        // start each bucket's all-reduce as soon as the backward has finished its gradients
        albert_set_backward_hooks(model, dp_hook_ready, dp_hook_progress, dp);
    } else {
        tr.avg = (Averager){.ctx = NULL, .sum = NULL, .rank = 0, .n_ranks = 1};
    }
    if (ck) {
        if (ckpt_load_trainer(ck, "albert", &tr, err) != 0) {
            SETUP_FAIL(1, "cannot resume from %s: %s", resume_path, err);
        }
        ckpt_close(ck);
    }
    if (bridged) {
        // the bridge keeps a replica: it starts from trainer 0's state (fresh or resumed)
        int64_t meta[3] = {tr.optim.step, (int64_t)tr.samples_seen, (int64_t)train_data.n_windows};
        hybrid_bcast_state(hc, albert_params(model), tr.optim.m, tr.optim.v,
                           albert_n_params(model), meta, 3);
    }

    // run directory (rank 0)
    const char *run_dir = cfg.run.dir;
    int nodes = hybrid_nodes(hc);
    FILE *metrics = NULL;
    if (rank == 0) {
        if (runlog_mkdirs(run_dir, err) != 0) SETUP_FAIL(1, "%s", err);
        RunInfo info = {.tool = TOOL, .config_ini = cfg_text, .ranks = size, .nodes = nodes,
                        .launcher = hybrid_launcher_name(), .resumed_from = resume_path,
                        .extra_versions = {{"openblas", openblas_get_config()},
                                           {"mpi", hybrid_mpi_version()}}};
        if (runlog_write_info(run_dir, &info, err) != 0) SETUP_FAIL(1, "%s", err);
        metrics = runlog_open_metrics(run_dir, err);
        if (!metrics) SETUP_FAIL(1, "%s", err);
    }
    // every rank got here: from now on a failure anywhere aborts the job
    if (world_size > 1) hybrid_barrier(hc);
    g_joined = 1;

    cx_catch_stop_signals(on_signal, 1, 0);

    const long total = cfg.train.steps;
    const int T = cfg.data.seq_len;
    const int talk = rank == 0 && !quiet;
    if (talk)
        fprintf(stderr,
                TOOL ": %zu parameters, %d rank(s) on %d node(s), global batch %ld x %d tokens, "
                     "micro-batch %d, steps %ld..%ld, run dir %s\n",
                albert_n_params(model), size, nodes, cfg.train.global_batch, T,
                cfg.train.micro_batch, tr.optim.step, total, run_dir);
    double t_start = cx_now(), t_window = t_start;
    long window_samples = 0, first_step = tr.optim.step;
    int rc = 0;
    while (tr.optim.step < total) {
        StepResult r;
        if (trainer_step(&tr, &r, err) != 0) {
            report("%s", err);
            rc = 1;
            break;
        }
        // a signal on any rank stops every rank at this same step boundary
        int stop = g_stop_signal != 0;
        if (world_size > 1 && (stop = hybrid_stop_vote(hc, stop, err)) < 0) {
            report("%s", err);
            rc = 1;
            break;
        }
        long check_every = cfg.train.replica_check_every;
        if (world_size > 1 && ((check_every > 0 && r.step % check_every == 0) || r.step == total || stop)) {
            if (hybrid_check_replicas(hc, albert_params(model), albert_n_params(model), r.step, err) != 0) {
                report("%s", err);
                rc = 1;
                break;
            }
        }
        double now = cx_now(), step_s = r.compute_s + r.comm_s;
        window_samples += r.samples;
        DpCounters dc = {0};
        if (dp) dc = *dp_counters(dp);
        MetricsRow row = {.time_s = now - t_start, .step = r.step, .samples = (long)tr.samples_seen,
                          .loss = r.loss, .lr = r.lr, .samples_per_s = r.samples / step_s,
                          .tokens_per_s = (double)r.samples * T / step_s,
                          .compute_s = r.compute_s, .comm_s = r.comm_s,
                          .bytes_sent = (long long)dc.bytes_sent,
                          .bytes_recv = (long long)dc.bytes_recv, .participants = r.participants,
                          .valid_loss = NAN};
        int eval_now = have_valid && cfg.train.eval_every > 0 &&
                       (r.step % cfg.train.eval_every == 0 || r.step == total);
        if (eval_now) {
            // every rank evaluates its share of the validation windows; sums are combined
            long ne = cfg.train.eval_samples, lo = ne * rank / size, hi = ne * (rank + 1) / size;
            long ntok = 0;
            double sop_loss = 0.0;
            double mean = task_eval(&valid_task, (uint64_t)lo, hi - lo, &ntok, &sop_loss);
            double v[3] = {mean * (double)ntok, (double)ntok, sop_loss * (double)(hi - lo)};
            if (size > 1) MPI_CHECK(comm, MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_DOUBLE, MPI_SUM, comm));
            ntok = (long)v[1];
            row.valid_loss = ntok > 0 ? v[0] / v[1] : NAN;
            sop_loss = ne > 0 ? v[2] / (double)ne : 0.0;
            if (talk) {
                fprintf(stderr, "valid step %ld: loss %.4f (ppl %.1f) over %ld masked tokens",
                        r.step, row.valid_loss, exp(row.valid_loss), ntok);
                if (cfg.model.sop) fprintf(stderr, ", sop loss %.4f", sop_loss);
                fputc('\n', stderr);
            }
        }
        if (rank == 0 && runlog_write_row(metrics, &row) != 0) {
            report("cannot write %s/metrics.csv: %s", run_dir, strerror(errno));
            rc = 1;
            break;
        }
        if (talk && (r.step % cfg.train.log_every == 0 || r.step == total || r.step == first_step + 1)) {
            double dt = now - t_window;
            double tok_s = dt > 0 ? (double)window_samples * T / dt : 0.0;
            double per_step = (now - t_start) / (double)(r.step - first_step);
            char eta[32];
            fmt_eta(eta, sizeof eta, per_step * (double)(total - r.step));
            char sop[48] = "";
            if (cfg.model.sop) snprintf(sop, sizeof sop, " | sop %.4f", r.aux_loss);
            fprintf(stderr, "step %ld/%ld | loss %.4f%s | lr %.2e | grad %.3f | %.0f tok/s | ETA %s\n",
                    r.step, total, r.loss, sop, (double)r.lr, r.grad_norm, tok_s, eta);
            t_window = now;
            window_samples = 0;
        }
        int ckpt_now = (cfg.train.checkpoint_every > 0 && r.step % cfg.train.checkpoint_every == 0) ||
                       r.step == total || stop;
        if (ckpt_now && rank == 0) {
            if (save_checkpoint(run_dir, cfg_text, &tr, cfg.train.seed, err) != 0) {
                report("%s", err);
                rc = 1;
                break;
            }
            if (!quiet) fprintf(stderr, "checkpoint %s/checkpoint-%06ld.h5\n", run_dir, r.step);
        }
        if (stop) {
            if (rank == 0)
                fprintf(stderr, TOOL ": signal %d: checkpointed at step %ld, exiting\n",
                        g_stop_signal ? (int)g_stop_signal : 0, r.step);
            break;
        }
    }
    if (rc != 0) return rc;  // main() aborts the job when it has several ranks
    // RUN_DIR/finished marks a run that took all its steps (a batch script requeues a job
    // that exited 0 without it: stopped by a signal at a step boundary)
    if (rank == 0 && tr.optim.step >= total && runlog_write_finished(run_dir, tr.optim.step, err) != 0) {
        report("%s", err);
        return 1;
    }
    if (metrics) fclose(metrics);
    if (have_valid) {
        mlm_task_free(&mt_valid);
        mlm_data_free(&valid_data);
    }
    mlm_task_free(&mt);
    mlm_data_free(&train_data);
    optim_free(&tr.optim);
    albert_free(model);
    free(cfg_text);
    return rc;
}

int main(int argc, char **argv) {
    HybridComm *hc = hybrid_init(&argc, &argv, HYBRID_TRAINER);
    g_rank = hybrid_trainer_rank(hc);
    g_size = hybrid_n_trainers(hc);
    int rc = train_main(argc, argv, hc);
    // a failure on any rank, or a trainer that left before joining a bridge's set-up,
    // would leave the others waiting in a collective: end the whole job
    if ((rc != 0 && hybrid_size(hc) > 1) || (!g_joined && hybrid_bridge_rank(hc) >= 0))
        hybrid_abort(hc, rc);
    hybrid_finalize(hc);
    return rc;
}
