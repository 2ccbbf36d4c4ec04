// conflux-headline: Russian news headline generation with the encoder-decoder of
// models/encdec.h. Subcommands:
//   pairs     (title, body) pairs from Debian's Russian texts (TSV), for training here
//   prepare   tokenize (article, headline) pairs (RIA/Lenta/ODS files or TSV) into a pair shard
//   train     fine-tune (headline) or denoise-pretrain (mBART) through models/train.h's loop;
//             alone or under mpirun (the MPI averaging backend of mpi/dp.h), optionally
//             with a conflux-bridge rank that lets volunteers join (mpi/hybrid.h)
//   generate  headlines for text on stdin or in files (greedy or beam search)
//   evaluate  ROUGE (standard and paper mode) against the titles of news files, next to the
//             first-sentence baseline
// This file holds `train`, which averages gradients with MPI, and the dispatch; the other
// subcommands never initialise MPI and live in io/headline/ (one file each, cli.h).
//
// Exit status: 0 success, 1 runtime failure, 2 usage error. Errors read
// "conflux-headline: error: what (where)".
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/bpe.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "io/headline.h"
#include "io/headline/cli.h"
#include "io/runlog.h"
#include "io/shard.h"
#include "models/common.h"
#include "models/encdec.h"
#include "models/train.h"
#include "mpi/dp.h"
#include "mpi/hybrid_mpi.h"

#define TOOL "conflux-headline"

extern void openblas_set_num_threads(int);
extern char *openblas_get_config(void);

static int g_rank = 0, g_size = 1;  // among the trainer ranks (train)
static int g_joined = 0;            // train: every rank passed set-up (the barrier)

__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...) {
    char msg[CX_ERRLEN + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_size > 1) fprintf(stderr, TOOL ": error: rank %d: %s\n", g_rank, msg);
    else fprintf(stderr, TOOL ": error: %s\n", msg);
}

// Usage error: prints the message and a hint, returns 2.
__attribute__((format(printf, 2, 3))) static int usage_err(const char *cmd, const char *fmt, ...) {
    char msg[CX_ERRLEN + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, TOOL ": error: %s (see '" TOOL " %s --help')\n", msg, cmd);
    return 2;
}

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

// ---------------------------------------------------------------------------------------
// train

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

static int save_checkpoint(const char *run_dir, const char *cfg_text, const Trainer *tr, long seed,
                           char *err) {
    int n_alias;
    const TensorAlias *aliases = encdec_aliases(&n_alias);
    return ckpt_save_trainer(run_dir, "encdec", TOOL " " CONFLUX_VERSION, cfg_text, tr, aliases, n_alias,
                             seed, err);
}

static int spec_index(const EncDec *m, const char *name) {
    for (int i = 0; i < encdec_n_specs(m); i++)
        if (!strcmp(encdec_specs(m)[i].name, name)) return i;
    return -1;
}

// The encoder (and, with lm_head, the MLM head as lm_head.*) from an ALBERT checkpoint.
static int load_albert_encoder(Ckpt *ck, const char *path, EncDec *m, int lm_head, char *err) {
    if (strcmp(ckpt_model(ck), "albert") != 0)
        return cx_err(err, "%s holds a '%s' model, not an ALBERT checkpoint (conflux-train)", path,
                      ckpt_model(ck));
    if (ckpt_read_params(ck, encdec_specs(m), AP_N_ENCODER, encdec_params(m), err) != 0) return -1;
    if (!lm_head) return 0;
    static const char *const map[][2] = {
        {"lm_head.dense.weight", "predictions.dense.weight"},
        {"lm_head.dense.bias", "predictions.dense.bias"},
        {"lm_head.LayerNorm.weight", "predictions.LayerNorm.weight"},
        {"lm_head.LayerNorm.bias", "predictions.LayerNorm.bias"},
        {"lm_head.bias", "predictions.bias"},
    };
    TensorSpec specs[5];
    for (int i = 0; i < 5; i++) {
        int k = spec_index(m, map[i][0]);
        CHECK(k >= 0, "no tensor %s", map[i][0]);
        specs[i] = encdec_specs(m)[k];
        snprintf(specs[i].name, sizeof specs[i].name, "%s", map[i][1]);
    }
    return ckpt_read_params(ck, specs, 5, encdec_params(m), err);
}

// Copies the architecture (not dropout or label smoothing) of src into dst.
static void take_architecture(EncDecConfig *dst, const EncDecConfig *src) {
    float ed = dst->enc.dropout, dd = dst->dec_dropout, ls = dst->label_smoothing;
    *dst = *src;
    dst->enc.dropout = ed;
    dst->dec_dropout = dd;
    dst->label_smoothing = ls;
    dst->enc.sop = 0;
}

// Everything train() owns, freed in one place.
typedef struct {
    Ckpt *resume, *init;
    Pairs train_p, valid_p;
    Shard train_s, valid_s;
    Bpe *bpe;
    uint8_t *sent_end;
    EncDec *model;
    HeadlineTask ht, hv;
    int have_ht, have_hv;
    Trainer tr;
    HybridComm *hc;
    DpComm *dp;     // the averaging backend (the HybridComm's: hybrid_finalize frees it)
    FILE *metrics;
    char *cfg_text;
} TrainState;

static void train_state_free(TrainState *s) {
    if (s->resume) ckpt_close(s->resume);
    if (s->init) ckpt_close(s->init);
    if (s->have_ht) headline_task_free(&s->ht);
    if (s->have_hv) headline_task_free(&s->hv);
    pairs_free(&s->train_p);
    pairs_free(&s->valid_p);
    shard_free(&s->train_s);
    shard_free(&s->valid_s);
    bpe_free(s->bpe);
    free(s->sent_end);
    if (s->tr.optim.m) optim_free(&s->tr.optim);
    encdec_free(s->model);
    if (s->metrics) fclose(s->metrics);
    free(s->cfg_text);
}

// Mean validation loss over the first ne examples, split over the ranks; prints it on rank 0.
static int validate(const TrainTask *vt, long ne, MPI_Comm comm, long step, int talk, int denoise,
                    double *out) {
    long lo = ne * g_rank / g_size, hi = ne * (g_rank + 1) / g_size, ntok = 0;
    double mean = task_eval(vt, (uint64_t)lo, hi - lo, &ntok, NULL);
    double v[2] = {mean * (double)ntok, (double)ntok};
    if (g_size > 1 && MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS) {
        report("validation sum failed at step %ld", step);
        return -1;
    }
    *out = v[1] > 0 ? v[0] / v[1] : NAN;
    if (talk)
        fprintf(stderr, "valid step %ld: loss %.4f (ppl %.1f) over %.0f target tokens of %ld %s\n",
                step, *out, exp(*out), v[1], ne, denoise ? "windows" : "pairs");
    return 0;
}

static const char train_usage[] =
    "usage: " TOOL " train [--config FILE.ini] [--set section.key=value]... [options]\n"
    "\n"
    "Trains the encoder-decoder (models/encdec.h) through the shared training loop\n"
    "(models/train.h): alone, or under mpirun / srun --mpi=pmix, where ranks split each\n"
    "global batch and average gradients with MPI (mpi/dp.h). Rank 0 writes RUN_DIR/run.json,\n"
    "RUN_DIR/metrics.csv, RUN_DIR/checkpoint-STEP.h5 and RUN_DIR/latest.h5, and RUN_DIR/finished\n"
    "when every step is done; SIGTERM, SIGINT or SIGUSR1 checkpoints at the next step and\n"
    "exits 0.\n"
    "\n"
    "Volunteers: start one conflux-bridge rank next to the trainer ranks (MPMD), as for\n"
    "conflux-train; volunteers (conflux-volunteer --join) build the same model, data order\n"
    "and optimizer (both parameter groups) from the run's configuration and need the\n"
    "training shard (and, for denoise, the tokenizer) at the configured paths or --set ones:\n"
    "  mpirun -np 2 " TOOL " train --config hl.ini : -np 1 conflux-bridge --tokens tokens.txt\n"
    "\n"
    "Objectives (data.objective):\n"
    "  headline  fine-tuning on a pair shard (`prepare`): the BertSumAbs recipe, separate\n"
    "            learning rates and warm-ups for encoder ([optim]) and decoder\n"
    "            ([optim_decoder]; the tied word embeddings belong to the encoder), label\n"
    "            smoothing (decoder.label_smoothing)\n"
    "  denoise   mBART pretraining of the whole model on a token shard (`conflux-tokenizer\n"
    "            shard`): sentences permuted, Poisson(data.poisson_lambda) spans covering\n"
    "            data.mask_ratio of the tokens replaced by one [MASK] each; the decoder\n"
    "            restores the text\n"
    "\n"
    "  --config FILE        INI configuration ([model] [decoder] [optim] [optim_decoder] [data]\n"
    "                       [train] [init] [run] [generate])\n"
    "  --set S.K=V          override one key (repeatable)\n"
    "  --objective O        headline or denoise (= --set data.objective=O)\n"
    "  --train SHARD        training data (= --set data.train=SHARD)\n"
    "  --valid SHARD        validation data (= --set data.valid=SHARD; '' for none)\n"
    "  --init-encoder CKPT  encoder (and lm_head from predictions.*) from a conflux-train ALBERT\n"
    "                       checkpoint; the [model] shape is taken from it (= init.encoder)\n"
    "  --init CKPT          all weights from an encdec checkpoint, e.g. a denoise run; the shape\n"
    "                       is taken from it (= init.from)\n"
    "  --steps N            optimizer steps (= --set train.steps=N)\n"
    "  --run-dir DIR        run directory (= --set run.dir=DIR)\n"
    "  --resume CKPT        continue a run (its configuration is the base)\n"
    "  --print-config       print the effective configuration and exit\n"
    "  -q, --quiet          no progress lines\n"
    "  -h, --help           this text\n"
    "\n"
    "examples:\n"
    "  " TOOL " train --init-encoder build/runs/demo/latest.h5 --run-dir runs/hl\n"
    "  " TOOL " train --objective denoise --train build/data/shards/train.h5 \\\n"
    "      --valid build/data/shards/valid.h5 --set data.src_len=128 --set data.tgt_len=128 \\\n"
    "      --set optim.separate_decoder=0 --run-dir runs/mbart\n"
    "  " TOOL " train --init runs/mbart/latest.h5 --run-dir runs/hl-mbart\n"
    "  mpirun -np 2 " TOOL " train --set train.threads=1 --run-dir runs/hl2\n";

static int train_main(int argc, char **argv, TrainState *S) {
    HybridComm *hc = S->hc;
    const int world_size = hybrid_size(hc), bridged = hybrid_bridge_rank(hc) >= 0;
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},       {"set", required_argument, 0, 's'},
        {"objective", required_argument, 0, 'O'},    {"train", required_argument, 0, 'T'},
        {"valid", required_argument, 0, 'V'},        {"init-encoder", required_argument, 0, 'E'},
        {"init", required_argument, 0, 'I'},         {"steps", required_argument, 0, 'N'},
        {"run-dir", required_argument, 0, 'D'},      {"resume", required_argument, 0, 'r'},
        {"print-config", no_argument, 0, 'p'},       {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    enum { MAX_SETS = 256 };
    char *sets[MAX_SETS];
    int n_sets = 0, quiet = 0, print_config = 0, c, rc = 0;
    const char *config_path = NULL, *resume_path = NULL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:s:r:qh", opts, NULL)) != -1) {
        const char *key = NULL;
        switch (c) {
        case 'c': config_path = optarg; break;
        case 's': key = ""; break;
        case 'O': key = "data.objective"; break;
        case 'T': key = "data.train"; break;
        case 'V': key = "data.valid"; break;
        case 'E': key = "init.encoder"; break;
        case 'I': key = "init.from"; break;
        case 'N': key = "train.steps"; break;
        case 'D': key = "run.dir"; break;
        case 'r': resume_path = optarg; break;
        case 'p': print_config = 1; break;
        case 'q': quiet = 1; break;
        case 'h':
            if (g_rank == 0) fputs(train_usage, stdout);
            return 0;
        default: rc = usage_err("train", "bad option '%s'", argv[optind - 1]); goto out_sets;
        }
        if (key) {
            if (n_sets == MAX_SETS) {
                rc = usage_err("train", "more than %d --set options", MAX_SETS);
                goto out_sets;
            }
            size_t l = strlen(key) + strlen(optarg) + 2;
            sets[n_sets] = cx_calloc(l, 1);
            if (key[0]) snprintf(sets[n_sets], l, "%s=%s", key, optarg);
            else snprintf(sets[n_sets], l, "%s", optarg);
            n_sets++;
        }
    }
    if (optind < argc) {
        rc = usage_err("train", "unexpected argument '%s'", argv[optind]);
        goto out_sets;
    }

    char err[CX_ERRLEN];
    HeadlineConfig cfg;
    headline_config_defaults(&cfg);
    if (resume_path) {
        if (ckpt_open(&S->resume, resume_path, err) != 0) {
            report("%s", err);
            rc = 1;
            goto out_sets;
        }
        if (strcmp(ckpt_model(S->resume), "encdec") != 0) {
            report("cannot resume from %s: it holds a '%s' model, not encdec", resume_path,
                   ckpt_model(S->resume));
            rc = 1;
            goto out_sets;
        }
        if (headline_config_load_string(&cfg, ckpt_config_text(S->resume), resume_path, err) != 0) {
            report("checkpoint configuration: %s", err);
            rc = 1;
            goto out_sets;
        }
    }
    if (config_path && headline_config_load_file(&cfg, config_path, err) != 0) {
        report("%s", err);
        rc = 2;
        goto out_sets;
    }
    for (int i = 0; i < n_sets; i++)
        if (headline_config_set(&cfg, sets[i], err) != 0) {
            report("%s", err);
            rc = 2;
            goto out_sets;
        }
    // the shape of the model comes from the checkpoint it starts from
    if (!resume_path && cfg.init.encoder[0] && cfg.init.from[0]) {
        report("init.encoder and init.from exclude each other");
        rc = 2;
        goto out_sets;
    }
    if (!resume_path && (cfg.init.encoder[0] || cfg.init.from[0])) {
        const char *p = cfg.init.encoder[0] ? cfg.init.encoder : cfg.init.from;
        if (ckpt_open(&S->init, p, err) != 0) {
            report("%s", err);
            rc = 1;
            goto out_sets;
        }
        if (cfg.init.encoder[0]) {
            RunConfig ac;
            config_defaults(&ac);
            if (strcmp(ckpt_model(S->init), "albert") != 0) {
                report("init.encoder %s holds a '%s' model, not an ALBERT checkpoint%s", p,
                       ckpt_model(S->init),
                       !strcmp(ckpt_model(S->init), "encdec") ? " (use --init for encdec checkpoints)" : "");
                rc = 1;
                goto out_sets;
            }
            if (config_load_string(&ac, ckpt_config_text(S->init), p, err) != 0) {
                report("configuration of %s: %s", p, err);
                rc = 1;
                goto out_sets;
            }
            float d = cfg.model.enc.dropout;
            cfg.model.enc = ac.model;
            cfg.model.enc.dropout = d;
            cfg.model.enc.sop = 0;
        } else {
            HeadlineConfig ec;
            headline_config_defaults(&ec);
            if (strcmp(ckpt_model(S->init), "encdec") != 0) {
                report("init.from %s holds a '%s' model, not encdec%s", p, ckpt_model(S->init),
                       !strcmp(ckpt_model(S->init), "albert") ? " (use --init-encoder for ALBERT checkpoints)" : "");
                rc = 1;
                goto out_sets;
            }
            if (headline_config_load_string(&ec, ckpt_config_text(S->init), p, err) != 0) {
                report("configuration of %s: %s", p, err);
                rc = 1;
                goto out_sets;
            }
            take_architecture(&cfg.model, &ec.model);
        }
    }
    if (headline_config_check(&cfg, err) != 0) {
        report("configuration: %s", err);
        rc = 2;
        goto out_sets;
    }
    cfg.optim.total_steps = cfg.train.steps;
    if (print_config) {
        size_t len = headline_config_to_ini(&cfg, NULL, 0);
        char *t = cx_calloc(len + 1, 1);
        headline_config_to_ini(&cfg, t, len + 1);
        if (g_rank == 0) fputs(t, stdout);
        free(t);
        goto out_sets;
    }
    if (cfg.train.threads > 0) openblas_set_num_threads(cfg.train.threads);

    // data
    const int denoise = cfg.data.objective == HL_OBJ_DENOISE;
    int have_valid = cfg.data.valid[0] && cfg.train.eval_samples > 0;
    if (bpe_load(&S->bpe, cfg.data.tokenizer, err) != 0) {
        report("data.tokenizer: %s", err);
        rc = 1;
        goto out_sets;
    }
    const char *fp = bpe_fingerprint(S->bpe);
    if (!denoise) {
        if (pairs_read(&S->train_p, cfg.data.train, err) != 0 ||
            (have_valid && pairs_read(&S->valid_p, cfg.data.valid, err) != 0)) {
            report("%s", err);
            rc = 1;
            goto out_sets;
        }
        if (strcmp(S->train_p.tokenizer, fp) != 0 || (have_valid && strcmp(S->valid_p.tokenizer, fp) != 0)) {
            report("the pair shards were tokenized with another tokenizer than %s (fingerprints "
                   "%s / %s, tokenizer %s)", cfg.data.tokenizer, S->train_p.tokenizer,
                   have_valid ? S->valid_p.tokenizer : "-", fp);
            rc = 1;
            goto out_sets;
        }
        if (have_valid && S->valid_p.lowercase != S->train_p.lowercase) {
            report("%s is lowercased but %s is not (prepare both with or without --lowercase)",
                   S->train_p.lowercase ? cfg.data.train : cfg.data.valid,
                   S->train_p.lowercase ? cfg.data.valid : cfg.data.train);
            rc = 1;
            goto out_sets;
        }
        cfg.data.lowercase = S->train_p.lowercase;  // generation repeats what training saw
    } else {
        if (shard_read(&S->train_s, cfg.data.train, err) != 0 ||
            (have_valid && shard_read(&S->valid_s, cfg.data.valid, err) != 0)) {
            report("%s%s", err, strstr(err, "conflux-pairs") ? " (--objective denoise takes a token shard)" : "");
            rc = 1;
            goto out_sets;
        }
        if (strcmp(S->train_s.tokenizer, fp) != 0) {
            report("%s was tokenized with another tokenizer than %s", cfg.data.train, cfg.data.tokenizer);
            rc = 1;
            goto out_sets;
        }
        S->sent_end = cx_calloc((size_t)bpe_vocab_size(S->bpe), 1);
        headline_sentence_ends(S->bpe, S->sent_end);
    }
    int data_vocab = denoise ? S->train_s.vocab_size : S->train_p.vocab_size;
    if (data_vocab > cfg.model.enc.vocab_size || bpe_vocab_size(S->bpe) > cfg.model.enc.vocab_size) {
        report("the data's vocabulary (%d tokens) exceeds model.vocab_size (%d)", data_vocab,
               cfg.model.enc.vocab_size);
        rc = 1;
        goto out_sets;
    }
    size_t len = headline_config_to_ini(&cfg, NULL, 0);
    S->cfg_text = cx_calloc(len + 1, 1);
    headline_config_to_ini(&cfg, S->cfg_text, len + 1);

    // model, tasks, optimizer (io/headline.h: as the bridge and volunteers build them)
    const int Ts = cfg.data.src_len, Tt = cfg.data.tgt_len, MB = cfg.train.micro_batch;
    S->model = headline_model_create(&cfg, MB);
    if (S->init) {
        int bad = cfg.init.encoder[0]
                      ? load_albert_encoder(S->init, cfg.init.encoder, S->model, cfg.init.lm_head, err)
                      : ckpt_read_params(S->init, encdec_specs(S->model), encdec_n_specs(S->model),
                                         encdec_params(S->model), err);
        if (bad) {
            report("cannot initialise from %s: %s", cfg.init.encoder[0] ? cfg.init.encoder : cfg.init.from, err);
            rc = 1;
            goto out_sets;
        }
    }
    DenoiseConfig dn = {.mask_ratio = cfg.data.mask_ratio, .poisson_lambda = cfg.data.poisson_lambda,
                        .permute_sentences = cfg.data.permute_sentences};
    Trainer *tr = &S->tr;
    if (headline_task_init(&S->ht, &tr->task, S->model, &cfg, &S->train_p, &S->train_s,
                           S->sent_end, MB, err) != 0) {
        report("%s (%s)", err, cfg.data.train);
        rc = 1;
        goto out_sets;
    }
    S->have_ht = 1;
    TrainTask valid_task;
    long n_valid = 0;
    if (have_valid) {
        if (!denoise) {
            headline_task_pairs(&S->hv, &valid_task, S->model, &S->valid_p, Ts, Tt, MB, 777, 0, 0);
        } else if (headline_task_denoise(&S->hv, &valid_task, S->model, &S->valid_s, &dn,
                                         S->sent_end, Ts, Tt, MB, 777, 0, 0, err) != 0) {
            report("%s (%s)", err, cfg.data.valid);
            rc = 1;
            goto out_sets;
        }
        S->have_hv = 1;
        n_valid = (long)S->hv.n;
        if (cfg.train.eval_samples > n_valid) cfg.train.eval_samples = n_valid;
    }
    headline_optim_init(&tr->optim, &cfg, S->model);
    tr->global_batch = cfg.train.global_batch;
    if (!bridged && tr->global_batch < g_size) {
        report("train.global_batch (%ld) is smaller than the number of ranks (%d)",
               tr->global_batch, g_size);
        rc = 2;
        goto out_sets;
    }
    tr->avg = (Averager){.ctx = NULL, .sum = NULL, .rank = 0, .n_ranks = 1};
    // with a bridge in the job (mpi/hybrid.h) it builds the same replica from the
    // configuration text (headline_replica_build) and averages with the trainers
    HybridTrainerPlan tplan = {.h = hc, .steps_done = &tr->optim.step};
    if (bridged) hybrid_bcast_config(hc, &S->cfg_text);
    if (world_size > 1) {
        hybrid_create_averager(hc, encdec_grads(S->model), encdec_n_params(S->model),
                               encdec_specs(S->model), encdec_n_specs(S->model),
                               encdec_enable_grad_split(S->model));
        S->dp = hybrid_dp(hc);
        tr->avg = dp_averager(S->dp);
        // start each bucket's all-reduce as soon as the backward has finished its gradients
        encdec_set_backward_hooks(S->model, dp_hook_ready, dp_hook_progress, S->dp);
        if (bridged) {
            tr->avg.plan = hybrid_trainer_plan;
            tr->avg.plan_ctx = &tplan;
            tr->avg.rank = g_rank;
            tr->avg.n_ranks = g_size;
        }
    }
    if (S->resume) {
        if (ckpt_load_trainer(S->resume, "encdec", tr, err) != 0) {
            report("cannot resume from %s: %s", resume_path, err);
            rc = 1;
            goto out_sets;
        }
    }
    if (bridged) {
        // the bridge keeps a replica and volunteers download it: trainer 0's state (fresh,
        // initialised or resumed); meta[2]: the training examples, checked by volunteers
        int64_t meta[3] = {tr->optim.step, (int64_t)tr->samples_seen, (int64_t)S->ht.n};
        hybrid_bcast_state(hc, encdec_params(S->model), tr->optim.m, tr->optim.v,
                           encdec_n_params(S->model), meta, 3);
    }
    int nodes = hybrid_nodes(hc);

    // run directory (rank 0)
    const char *run_dir = cfg.run.dir;
    if (g_rank == 0) {
        if (runlog_mkdirs(run_dir, err) != 0) {
            report("%s", err);
            rc = 1;
            goto out_sets;
        }
        int mv = 0, mr = 0, ms = 0;
        MPI_Get_version(&mv, &ms);
        (void)mr;
        char mpiv[32];
        snprintf(mpiv, sizeof mpiv, "%d.%d", mv, ms);
        RunInfo info = {.tool = TOOL, .config_ini = S->cfg_text, .ranks = g_size, .nodes = nodes,
                        .launcher = hybrid_launcher_name(), .resumed_from = resume_path,
                        .extra_versions = {{"openblas", openblas_get_config()}, {"mpi", mpiv}}};
        if (runlog_write_info(run_dir, &info, err) != 0 ||
            !(S->metrics = runlog_open_metrics(run_dir, err))) {
            report("%s", err);
            rc = 1;
            goto out_sets;
        }
    }
    // every rank got here: from now on a failure anywhere aborts the job
    if (world_size > 1) hybrid_barrier(hc);
    g_joined = 1;

    cx_catch_stop_signals(on_signal, 1, 0);

    const long total = cfg.train.steps;
    const int talk = g_rank == 0 && !quiet;
    if (talk)
        fprintf(stderr,
                TOOL ": %s, %zu parameters (encoder %zu), %s%s, %zu %s, %d rank(s), global batch "
                     "%ld, micro-batch %d, src %d / tgt %d tokens, steps %ld..%ld, run dir %s\n",
                headline_objective_name(cfg.data.objective), encdec_n_params(S->model),
                albert_n_params(encdec_encoder(S->model)),
                S->init ? "initialised from " : (S->resume ? "resumed from " : "random init"),
                S->init ? (cfg.init.encoder[0] ? cfg.init.encoder : cfg.init.from)
                        : (S->resume ? resume_path : ""),
                S->ht.n, denoise ? "windows" : "pairs", g_size, cfg.train.global_batch, MB, Ts, Tt,
                tr->optim.step, total, run_dir);
    double t_start = cx_now(), t_window = t_start;
    long window_samples = 0, window_tokens = 0, first_step = tr->optim.step;
    uint64_t src_mark = S->ht.src_tokens_seen;
    // validation sums over the trainers (the bridge holds no data)
    MPI_Comm comm = bridged ? hybrid_trainers(hc) : S->dp ? dp_comm(S->dp) : MPI_COMM_NULL;
    if (have_valid && cfg.train.eval_every > 0 && tr->optim.step == 0 && total > 0) {
        double v0;  // where the run starts from (not a metrics row)
        if (validate(&valid_task, cfg.train.eval_samples, comm, 0, talk, denoise, &v0) != 0) {
            rc = 1;
            goto out_sets;
        }
    }
    while (tr->optim.step < total) {
        StepResult r;
        if (trainer_step(tr, &r, err) != 0) {
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
        double now = cx_now(), step_s = r.compute_s + r.comm_s;
        long src_tok = (long)(S->ht.src_tokens_seen - src_mark) * g_size;
        src_mark = S->ht.src_tokens_seen;
        window_samples += r.samples;
        window_tokens += src_tok + r.tokens;
        DpCounters dc = {0};
        if (S->dp) dc = *dp_counters(S->dp);
        MetricsRow row = {.time_s = now - t_start, .step = r.step, .samples = (long)tr->samples_seen,
                          .loss = r.loss, .lr = r.lr, .samples_per_s = r.samples / step_s,
                          .tokens_per_s = (double)(src_tok + r.tokens) / step_s,
                          .compute_s = r.compute_s, .comm_s = r.comm_s,
                          .bytes_sent = (long long)dc.bytes_sent, .bytes_recv = (long long)dc.bytes_recv,
                          .participants = r.participants, .valid_loss = NAN};
        if (have_valid && cfg.train.eval_every > 0 && (r.step % cfg.train.eval_every == 0 || r.step == total)) {
            if (validate(&valid_task, cfg.train.eval_samples, comm, r.step, talk, denoise,
                         &row.valid_loss) != 0) {
                rc = 1;
                break;
            }
        }
        if (g_rank == 0 && runlog_write_row(S->metrics, &row) != 0) {
            report("cannot write %s/metrics.csv: %s", run_dir, strerror(errno));
            rc = 1;
            break;
        }
        if (talk && (r.step % cfg.train.log_every == 0 || r.step == total || r.step == first_step + 1)) {
            double dt = now - t_window;
            double per_step = (now - t_start) / (double)(r.step - first_step);
            char eta[32], lr[64];
            fmt_eta(eta, sizeof eta, per_step * (double)(total - r.step));
            if (cfg.separate_decoder)
                snprintf(lr, sizeof lr, "lr %.2e/%.2e", (double)r.lr,
                         (double)optim_spec_lr(&tr->optim, AP_N_ENCODER, r.step - 1));
            else
                snprintf(lr, sizeof lr, "lr %.2e", (double)r.lr);
            fprintf(stderr, "step %ld/%ld | loss %.4f | %s | grad %.3f | %.1f samples/s | %.0f tok/s | ETA %s\n",
                    r.step, total, r.loss, lr, r.grad_norm, dt > 0 ? window_samples / dt : 0.0,
                    dt > 0 ? window_tokens / dt : 0.0, eta);
            t_window = now;
            window_samples = window_tokens = 0;
        }
        int ckpt_now = (cfg.train.checkpoint_every > 0 && r.step % cfg.train.checkpoint_every == 0) ||
                       r.step == total || stop;
        // the bridge checks on the same steps (headline_check_step)
        if (world_size > 1 && headline_check_step(&cfg, r.step, stop) &&
            hybrid_check_replicas(hc, encdec_params(S->model), encdec_n_params(S->model), r.step, err) != 0) {
            report("%s", err);
            rc = 1;
            break;
        }
        if (ckpt_now && g_rank == 0) {
            if (save_checkpoint(run_dir, S->cfg_text, tr, cfg.train.seed, err) != 0) {
                report("%s", err);
                rc = 1;
                break;
            }
            if (!quiet) fprintf(stderr, "checkpoint %s/checkpoint-%06ld.h5\n", run_dir, r.step);
        }
        if (stop) {
            if (g_rank == 0)
                fprintf(stderr, TOOL ": signal %d: checkpointed at step %ld, exiting\n",
                        (int)g_stop_signal, r.step);
            break;
        }
    }
    if (rc == 0 && g_rank == 0 && tr->optim.step >= total &&
        runlog_write_finished(run_dir, tr->optim.step, err) != 0) {
        report("%s", err);
        rc = 1;
    }
out_sets:
    for (int i = 0; i < n_sets; i++) free(sets[i]);
    return rc;
}

static int cmd_train(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(train_usage, stdout);
            return 0;
        }
    // trainer ranks, and optionally one conflux-bridge rank (mpi/hybrid.h)
    HybridComm *hc = hybrid_init(&argc, &argv, HYBRID_TRAINER);
    g_rank = hybrid_trainer_rank(hc);
    g_size = hybrid_n_trainers(hc);
    TrainState S;
    memset(&S, 0, sizeof S);
    S.hc = hc;
    int rc = train_main(argc, argv, &S);
    // a failure on any rank, or a trainer that left before joining a bridge's set-up,
    // would leave the others waiting in a collective: end the whole job
    if ((rc != 0 && hybrid_size(hc) > 1) || (!g_joined && hybrid_bridge_rank(hc) >= 0))
        hybrid_abort(hc, rc);
    train_state_free(&S);
    hybrid_finalize(hc);
    return rc;
}

// ---------------------------------------------------------------------------------------

static void main_usage(FILE *f) {
    fprintf(f,
            "usage: " TOOL " COMMAND [options]   (" TOOL " COMMAND --help for each)\n"
            "\n"
            "Russian news headline generation: an ALBERT encoder (conflux-train) plus a\n"
            "transformer decoder (BertSumAbs), or an mBART-style denoising-pretrained\n"
            "encoder-decoder, scored with ROUGE as published (Gusev 2020).\n"
            "\n"
            "commands:\n"
            "  pairs      (title, body) pairs from Debian's Russian texts -> TSV\n"
            "  prepare    tokenize (article, headline) pairs (RIA/Lenta/ODS dumps or TSV) -> pair shard\n"
            "  train      fine-tune (headline) or pretrain (denoise); alone or under mpirun\n"
            "  generate   headlines for articles on stdin or in files (greedy or beam search)\n"
            "  evaluate   ROUGE against reference titles, next to the first-sentence baseline\n"
            "\n"
            "Exit status: 0 success, 1 runtime failure, 2 usage error.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        main_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        main_usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "pairs")) return headline_cmd_pairs(argc - 1, argv + 1);
    if (!strcmp(cmd, "prepare")) return headline_cmd_prepare(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return headline_cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "evaluate")) return headline_cmd_evaluate(argc - 1, argv + 1);
    fprintf(stderr, TOOL ": error: unknown command '%s' (pairs, prepare, train, generate, evaluate; see --help)\n", cmd);
    return 2;
}
