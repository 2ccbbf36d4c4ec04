// trainer.c: the trainer ranks' side of a run (see trainer.h).
#include "mpi/trainer.h"

#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/store/ckpt.h"
#include "io/run/run.h"
#include "io/run/runlog.h"
#include "models/common.h"
#include "mpi/hybrid.h"
#include "mpi/tp_run.h"

// OpenBLAS extension (declared in its cblas.h on Debian)
extern char *openblas_get_config(void);

enum { MAX_SETS = 256, MAX_ALIASES = 32 };
// train.checkpoint_every of a run with a bridge when the configuration leaves it at 0
enum { BRIDGED_CHECKPOINT_EVERY = 100 };

typedef struct {
    const TrainerTool *t;
    HybridComm *hc;
    int rank, size;  // among the trainers
    int joined;      // every rank passed set-up (the barrier)
    Replica rep;
    Averager avg;    // the averaging strategy (MPI with several ranks; none alone)
    Diloco *outer;   // diloco: the worker's outer state (models/diloco.h); NULL in sync mode
    TpRun *tp;       // a tensor-parallel run (tp.rows x tp.cols > 1); NULL otherwise
    Ckpt *resume;
    char *cfg_text;
    FILE *metrics;
    char *sets[MAX_SETS];
    int n_sets;
} TrainerRun;

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

// "TOOL: error: ..." on stderr; with several ranks prefixed by the rank.
__attribute__((format(printf, 2, 3))) static void report(const TrainerRun *s, const char *fmt, ...) {
    char msg[CX_ERRLEN + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s->size > 1) fprintf(stderr, "%s: error: rank %d: %s\n", s->t->tool, s->rank, msg);
    else fprintf(stderr, "%s: error: %s\n", s->t->tool, msg);
}

// A usage error: the message and where to read more; returns 2.
__attribute__((format(printf, 2, 3))) static int usage_error(const TrainerRun *s, const char *fmt, ...) {
    char msg[CX_ERRLEN + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const TrainerTool *t = s->t;
    fprintf(stderr, "%s: error: %s (see '%s%s%s --help')\n", t->tool, msg, t->tool,
            t->command ? " " : "", t->command ? t->command : "");
    return 2;
}

static int add_set(TrainerRun *s, const char *key, const char *value) {
    if (s->n_sets == MAX_SETS) return usage_error(s, "more than %d --set options", MAX_SETS);
    size_t l = (key ? strlen(key) + 1 : 0) + strlen(value) + 1;
    char *a = cx_calloc(l, 1);
    if (key) snprintf(a, l, "%s=%s", key, value);
    else snprintf(a, l, "%s", value);
    s->sets[s->n_sets++] = a;
    return 0;
}

// Everything before the loop, in the order of trainer.h. Returns -1 to go on (set-up
// done), or an exit status.
static int trainer_setup(TrainerRun *s, int argc, char **argv, int *quiet) {
    const TrainerTool *t = s->t;
    const Recipe *recipe = t->recipe;
    HybridComm *hc = s->hc;
    const int world_size = hybrid_size(hc), bridged = hybrid_bridge_rank(hc) >= 0;
    struct option opts[7 + MAX_ALIASES] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"resume", required_argument, 0, 'r'}, {"print-config", no_argument, 0, 'p'},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'}};
    int n_opts = 6;
    for (int i = 0; t->aliases && t->aliases[i].option; i++) {
        CHECK(i < MAX_ALIASES, "more than %d option aliases", MAX_ALIASES);
        opts[n_opts++] = (struct option){t->aliases[i].option, required_argument, 0, 1000 + i};
    }
    opts[n_opts] = (struct option){0, 0, 0, 0};
    const char *config_path = NULL, *resume_path = NULL;
    int print_config = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:s:r:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 's':
            if (add_set(s, NULL, optarg) != 0) return 2;
            break;
        case 'r': resume_path = optarg; break;
        case 'p': print_config = 1; break;
        case 'q': *quiet = 1; break;
        case 'h':
            if (s->rank == 0) fputs(t->usage, stdout);
            return 0;
        default:
            if (c >= 1000 && c < 1000 + MAX_ALIASES) {
                if (add_set(s, t->aliases[c - 1000].key, optarg) != 0) return 2;
                break;
            }
            return usage_error(s, "bad option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error(s, "unexpected argument '%s'", argv[optind]);

    // configuration
    char err[CX_ERRLEN];
    Replica *rep = &s->rep;
    recipe_config_init(rep, recipe);
    if (resume_path) {
        if (ckpt_open(&s->resume, resume_path, err) != 0) {
            report(s, "%s", err);
            return 1;
        }
        if (strcmp(ckpt_model(s->resume), recipe->name) != 0) {
            report(s, "cannot resume from %s: it holds a '%s' model, not %s", resume_path,
                   ckpt_model(s->resume), recipe->name);
            return 1;
        }
        if (recipe_config_load_checkpoint(rep, ckpt_config_text(s->resume), resume_path, err) != 0) {
            report(s, "checkpoint configuration: %s", err);
            return 1;
        }
        // the grid is the launch's, not the model's: a checkpoint of any layout continues on
        // the grid the command line and configuration file ask for (1 x 1 by default)
        if (rep->tp) *rep->tp = (TpSettings){.rows = 1, .cols = 1};
    }
    if (config_path && recipe_config_load_file(rep, config_path, err) != 0) {
        report(s, "%s", err);
        return 2;
    }
    for (int i = 0; i < s->n_sets; i++) {
        if (recipe_config_set(rep, s->sets[i], err) != 0) {
            report(s, "%s", err);
            return 2;
        }
    }
    if (!resume_path && recipe->config_resolve) {
        int usage = 0;
        if (recipe->config_resolve(rep->cfg, &usage, err) != 0) {
            report(s, "%s", err);
            return usage ? 2 : 1;
        }
    }
    if (bridged && rep->train->checkpoint_every == 0) {
        // a run with volunteers checkpoints by default: peers are strangers, and a run that
        // ends without a checkpoint loses everything (in diloco mode at a round boundary)
        long every = BRIDGED_CHECKPOINT_EVERY, H = rep->train->avg.inner_steps;
        if (rep->train->avg.mode == AVG_DILOCO && H > 0) every = (every + H - 1) / H * H;
        rep->train->checkpoint_every = every;
    }
    if (recipe->config_check(rep->cfg, err) != 0) {
        report(s, "configuration: %s", err);
        return 2;
    }
    if (s->resume && s->rank == 0) {
        // paths never come from a checkpoint: say so where the run's differ from its own
        Replica was;
        recipe_config_init(&was, recipe);
        if (recipe_config_load_string(&was, ckpt_config_text(s->resume), resume_path, err) == 0 &&
            strcmp(was.data_train, rep->data_train) != 0)
            fprintf(stderr, "%s: note: resuming on data.train = %s; the checkpoint was trained on %s "
                    "(paths never come from a checkpoint: --set data.train=... to continue on it)\n",
                    s->t->tool, rep->data_train, was.data_train);
        if (was.tp && (was.tp->rows != rep->tp->rows || was.tp->cols != rep->tp->cols))
            fprintf(stderr, "%s: note: resuming on a %d x %d grid; the checkpoint was trained on %d x %d "
                    "(the grid is the launch's: --set tp.rows=%d --set tp.cols=%d to continue on it)\n",
                    s->t->tool, rep->tp->rows, rep->tp->cols, was.tp->rows, was.tp->cols, was.tp->rows,
                    was.tp->cols);
        recipe_free(&was);
    }
    if (print_config) {
        char *text = recipe_config_text(rep);
        if (s->rank == 0) fputs(text, stdout);
        free(text);
        return 0;
    }
    run_set_threads(rep->train);

    // tensor parallelism: the trainers form replicas of a grid, and the recipe builds the
    // model on the grid's engine (mpi/tp_run.h)
    if (tp_settings_on(rep->tp)) {
        if (!(s->tp = tp_run_create(hc, rep->tp, err))) return usage_error(s, "%s", err);
        rep->albert_engine = tp_run_engine(s->tp);
    }
    const int shares = s->tp ? tp_run_replicas(s->tp) : s->size;

    // the replica: model, data, tasks, optimizer
    rep->resume_path = resume_path;
    if (recipe_build(rep, REPLICA_TRAINER, err) != 0) {
        report(s, "%s", err);
        return 1;
    }
    s->cfg_text = recipe_config_text(rep);
    if (!bridged && rep->tr.global_batch < shares) {
        report(s, "train.global_batch (%ld) is smaller than the number of %s (%d)",
               rep->tr.global_batch, s->tp ? "tensor-parallel replicas" : "ranks", shares);
        return 2;
    }

    // the averaging strategy; a bridge builds the same replica from the configuration text
    if (bridged) hybrid_bcast_config(hc, &s->cfg_text);
    const int diloco = rep->train->avg.mode == AVG_DILOCO;
    if (diloco && s->resume && rep->train->avg.workers > 1) {
        report(s, "cannot resume a run of %d DiLoCo workers from %s: its checkpoint holds the "
               "outer state and worker 0's inner state only (a cluster of any size is one worker; "
               "with a bridge, volunteers rejoin)", rep->train->avg.workers, resume_path);
        return 2;
    }
    if (s->tp) {
        // grid sums, then the replicas' sum (and, with a bridge, trainer 0's with it)
        s->avg = tp_run_averager(s->tp, rep);
    } else if (world_size > 1 || diloco) {
        // the model's split layout lets most of the all-reduce start during the backward
        hybrid_create_averager(hc, rep);
        s->avg = hybrid_trainer_averager(hc, &rep->tr.optim.step);
    } else {
        s->avg = (Averager){.rank = 0, .n_ranks = 1};
    }
    if (s->resume && s->tp) {
        if (tp_run_load(s->tp, rep, resume_path, err) != 0) {
            report(s, "cannot resume from %s: %s", resume_path, err);
            return 1;
        }
    } else if (s->resume) {
        if (ckpt_load_trainer(s->resume, recipe->name, &rep->tr, err) != 0) {
            report(s, "cannot resume from %s: %s", resume_path, err);
            return 1;
        }
    }
    // diloco: the worker's outer state, fresh from the parameters or from the checkpoint
    int64_t meta[4] = {0, 0, 0, (int64_t)rep->tr.samples_seen};
    if (diloco) {
        s->outer = cx_calloc(1, sizeof *s->outer);
        diloco_init(s->outer, &rep->train->avg, rep->tr.task.params, rep->tr.task.n_params, s->avg);
        if (s->resume && ckpt_load_outer(s->resume, &rep->tr, s->outer, meta, err) < 0) {
            report(s, "cannot resume from %s: %s", resume_path, err);
            return 1;
        }
    }
    if (s->resume) {
        ckpt_close(s->resume);
        s->resume = NULL;
    }
    // the bridge keeps a replica and volunteers download it: trainer 0's state (fresh,
    // initialised or resumed)
    if (bridged && s->tp) tp_run_send_state(s->tp, rep);
    else if (bridged) hybrid_bcast_state(hc, rep);
    if (diloco) {
        if (bridged) hybrid_bcast_outer(hc, s->outer, meta);
        Diloco *d = s->outer;
        diloco_restore(d, meta);
        d->cursor = &rep->tr.samples_seen;
        d->sched_step = &rep->tr.optim.step;
        d->last_step = rep->train->steps;
        d->link = hybrid_outer_link(hc, d, rep->tr.global_batch, d->base);
        s->avg = diloco_averager(d);
    }

    // run directory (trainer 0)
    int nodes = hybrid_nodes(hc);
    if (s->rank == 0) {
        RunInfo info = {.tool = t->tool, .config_ini = s->cfg_text, .ranks = s->size, .nodes = nodes,
                        .launcher = hybrid_launcher_name(), .resumed_from = resume_path,
                        .tp_rows = rep->tp ? rep->tp->rows : 1, .tp_cols = rep->tp ? rep->tp->cols : 1,
                        .extra_versions = {{"openblas", openblas_get_config()},
                                           {"mpi", hybrid_mpi_version()}}};
        if (runlog_mkdirs(rep->run_dir, err) != 0 || runlog_write_info(rep->run_dir, &info, err) != 0 ||
            !(s->metrics = runlog_open_metrics(rep->run_dir, err))) {
            report(s, "%s", err);
            return 1;
        }
    }
    // every rank got here: from now on a failure anywhere aborts the job
    if (world_size > 1) hybrid_barrier(hc);
    s->joined = 1;
    if (s->rank == 0 && !*quiet) {
        char what[512];
        recipe->describe(rep, what, sizeof what);
        char layout[128] = "";
        if (s->tp)
            snprintf(layout, sizeof layout, " (tensor-parallel: %d replica(s) of a %d x %d grid, "
                     "%zu parameters on rank 0)", shares, rep->tp->rows, rep->tp->cols, rep->tr.task.n_params);
        fprintf(stderr, "%s: %s, %zu parameters, %d rank(s) on %d node(s)%s, global batch %ld, "
                        "micro-batch %d, steps %ld..%ld, run dir %s\n",
                t->tool, what, s->tp ? tp_run_n_whole(s->tp) : rep->tr.task.n_params, s->size, nodes, layout,
                rep->tr.global_batch, rep->train->micro_batch, rep->tr.optim.step, rep->train->steps,
                rep->run_dir);
    }
    return -1;
}

static int trainer_run(TrainerRun *s, int argc, char **argv) {
    int quiet = 0;
    int rc = trainer_setup(s, argc, argv, &quiet);
    if (rc >= 0) return rc;
    cx_catch_stop_signals(on_signal, 1, 0);
    RunLoop L = {.tool = s->t->tool, .rep = &s->rep, .avg = s->avg,
                 .comm = s->tp ? tp_run_comm(s->tp) : hybrid_run_comm(s->hc),
                 .save = s->tp ? tp_run_save : NULL, .save_ctx = s->tp,
                 .writer = s->rank == 0, .validate = 1, .quiet = quiet, .cfg_text = s->cfg_text,
                 .metrics = s->metrics, .stop_flag = &g_stop_signal, .outer = s->outer};
    char err[CX_ERRLEN];
    if (run_loop(&L, err) < 0) {
        report(s, "%s", err);
        return 1;
    }
    return 0;
}

int trainer_tool_main(int argc, char **argv, const TrainerTool *t) {
    // trainer ranks, and optionally one conflux-bridge rank (mpi/hybrid.h)
    TrainerRun s = {.t = t};
    s.hc = hybrid_init(&argc, &argv, HYBRID_TRAINER);
    s.rank = hybrid_trainer_rank(s.hc);
    s.size = hybrid_n_trainers(s.hc);
    int rc = trainer_run(&s, argc, argv);
    // a failure on any rank, or a trainer that left before joining a bridge's set-up,
    // would leave the others waiting in a collective: end the whole job
    if ((rc != 0 && hybrid_size(s.hc) > 1) || (!s.joined && hybrid_bridge_rank(s.hc) >= 0))
        hybrid_abort(s.hc, rc);
    if (s.metrics) fclose(s.metrics);
    if (s.resume) ckpt_close(s.resume);
    recipe_free(&s.rep);
    tp_run_free(s.tp);  // after the model on its grid
    if (s.outer) diloco_free(s.outer);
    free(s.outer);
    free(s.cfg_text);
    for (int i = 0; i < s.n_sets; i++) free(s.sets[i]);
    hybrid_finalize(s.hc);
    return rc;
}
