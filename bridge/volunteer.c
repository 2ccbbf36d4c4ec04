// volunteer.c: the volunteer, everything of conflux-volunteer but its one-line main (see
// volunteer.h). Joins a collaborative run through its bridge: connects outbound (works
// behind NAT), downloads the current state, then runs the same model and training loop as
// the cluster ranks on the shares of each global batch the bridge assigns. Reconnects on
// its own after link failures, with the same identity; re-downloads the state when it fell
// too far behind.
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge/client.h"
#include "bridge/state.h"
#include "bridge/tls.h"
#include "bridge/tokens.h"
#include "bridge/volunteer.h"
#include "io/run/run.h"
#include "io/tasks/recipe.h"
#include "models/common.h"
#include "models/train.h"

#define TOOL "conflux-volunteer"

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { g_stop = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: " TOOL " --join HOST:PORT#sha256:FINGERPRINT --token-file FILE [options]\n"
            "\n"
            "Joins a conflux collaborative run: downloads the current model and optimizer state\n"
            "from the bridge, then trains on the shares of each global batch it is given,\n"
            "averaging with the cluster every step. Only outbound TCP is needed. The link is\n"
            "TLS 1.3, pinned to the bridge's certificate fingerprint in the join string.\n"
            "\n"
            "  --join HOST:PORT#sha256:FINGERPRINT  the join string (from the collaboration\n"
            "                        host: the bridge's address and certificate fingerprint)\n"
            "  --token-file FILE     your join token (from the host), in a file only you can\n"
            "                        read (a token on the command line is refused: other\n"
            "                        users see argv)\n"
            "  --plaintext           join a --plaintext bridge (no TLS; --join HOST:PORT)\n"
            "  --name NAME           how the host's tables show you (default: host name)\n"
            "  --identity-file F     keeps your volunteer identity across restarts\n"
            "                        (default: none, a new identity per start)\n"
            "  --set S.K=V           override a key of the run's configuration on this\n"
            "                        machine only: data paths (data.train=...) or\n"
            "                        train.threads; the model and batch are the run's\n"
            "  --codec fp16|fp32|int8  upload codec offered (default: all; the bridge picks\n"
            "                        int8 for DiLoCo pseudo-gradients, fp16 for gradients)\n"
            "  --steps N             leave after contributing to N steps (default: until the\n"
            "                        run ends)\n"
            "  --retries N           reconnect attempts in a row before giving up (default 20,\n"
            "                        about 100 s; a bridge restarting for a requeue resets it)\n"
            "  --timeout S           the bridge silent this long is a broken link (default 60)\n"
            "  --tcp-cc NAME         TCP congestion control of the upload (default bbr, which\n"
            "                        keeps a lossy link busy; '' = the system default)\n"
            "  --stats FILE          per-step timings as CSV (step, share samples, compute,\n"
            "                        upload, download, round seconds and bytes)\n"
            "  -q, --quiet           no progress lines\n"
            "  -h, --help            this text\n"
            "\n"
            "The run's training data must be on this machine at the configured path (or\n"
            "--set data.train=PATH); it is checked against the run's. Runs of conflux-train\n"
            "(ALBERT) and of conflux-headline train (the encoder-decoder: a pair shard, or a\n"
            "token shard and the tokenizer, data.tokenizer=DIR, for denoising) are both joined\n"
            "this way; the run's configuration says which model to build.\n"
            "\n"
            "example:\n"
            "  " TOOL " --join 10.0.0.5:7070#sha256:3f9a...c1 --token-file alice.token \\\n"
            "      --set data.train=shards/train.h5\n");
}

static int check_set(const char *set, char *err) {
    if (strncmp(set, "data.train=", 11) && strncmp(set, "data.valid=", 11) &&
        strncmp(set, "train.threads=", 14) && strncmp(set, "data.tokenizer=", 15))
        return cx_err(err, "--set %s: a volunteer may override only data.train, data.valid, "
                      "data.tokenizer and train.threads (the rest is the run's)", set);
    return 0;
}

// The replica (io/tasks/recipe.h): the model kind, data order and optimizer the run's
// configuration names, with this machine's data paths, given the downloaded state. -1
// with err (and r freed) when this machine's data or the state does not fit the run.
static int replica_build(Replica *r, const BrState *s, const char **sets, int n_sets, char *err) {
    recipe_free(r);
    // (br_state_parse NUL-terminates its copy of the configuration text)
    recipe_config_init(r, recipe_for_config(s->config));
    if (recipe_config_from_text(r, s->config, "the run's configuration", sets, n_sets, check_set, err) != 0)
        goto fail;
    run_set_threads(r->train);
    if (recipe_build(r, REPLICA_VOLUNTEER, err) != 0) goto fail;
    if (r->n_examples != s->data_windows) {
        cx_err(err, "the training data here (%s) has %llu %s, the run's has %llu: use the run's "
               "shard (--set data.train=PATH)", r->data_train, (unsigned long long)r->n_examples,
               r->example_unit, (unsigned long long)s->data_windows);
        goto fail;
    }
    Trainer *tr = &r->tr;
    if (tr->task.n_params != s->n_params) {
        cx_err(err, "the run's model has %llu parameters but its configuration builds %zu",
               (unsigned long long)s->n_params, tr->task.n_params);
        goto fail;
    }
    memcpy(tr->task.params, s->params, s->n_params * sizeof(float));
    memcpy(tr->optim.m, s->m, s->n_params * sizeof(float));
    if (s->v) memcpy(tr->optim.v, s->v, s->n_params * sizeof(float));
    else memset(tr->optim.v, 0, s->n_params * sizeof(float));  // a DiLoCo run's outer state
    tr->optim.step = (long)s->step;
    tr->samples_seen = s->samples_seen;
    return 0;
fail:
    recipe_free(r);
    return -1;
}

// The volunteer's after-step work in the run loop: the stats row, the progress line,
// and --steps.
typedef struct {
    Replica *rep;
    BrClient *cl;
    FILE *stats;
    long *contributed, max_steps;
    uint64_t shares_before, samples_before;
    double t_last;
    int quiet;
} Contribution;

static int contribution_after_step(void *ctx, const StepResult *r, char *err) {
    (void)err;
    Contribution *v = ctx;
    const BrClientStats *cs = br_client_stats(v->cl);
    int had_share = (uint64_t)cs->shares > v->shares_before;
    uint64_t share_samples = cs->samples - v->samples_before;  // of the share(s) posted this step
    if (had_share) (*v->contributed)++;
    v->shares_before = cs->shares;
    v->samples_before = cs->samples;
    if (v->stats) {
        fprintf(v->stats, "%ld,%llu,%.4f,%.4f,%.0f,%.4f,%.0f,%.4f,%.4f,%.0f\n", r->step,
                (unsigned long long)share_samples,
                had_share ? cs->compute_s : 0.0, had_share ? cs->up_s : 0.0,
                had_share ? cs->up_bytes : 0.0, cs->down_s, cs->down_bytes, cs->round_s,
                cs->down_steady_s, cs->down_steady_bytes);
        fflush(v->stats);
    }
    double now = cx_now();
    long total = v->rep->train->steps;
    if (!v->quiet && (now - v->t_last > 2.0 || r->step == total)) {
        fprintf(stderr, "step %ld/%ld | loss %.4f | %d participants | my samples %llu "
                        "(accepted on time %llu) | up %.1f Mbit/s | down %.1f Mbit/s\n",
                r->step, total, r->loss, r->participants, (unsigned long long)cs->samples,
                (unsigned long long)cs->accepted, cs->up_s > 0 ? cs->up_bytes * 8 / cs->up_s / 1e6 : 0.0,
                cs->down_s > 0 ? cs->down_bytes * 8 / cs->down_s / 1e6 : 0.0);
        v->t_last = now;
    }
    return v->max_steps >= 0 && *v->contributed >= v->max_steps;
}

static void download_progress(void *ctx, size_t have, size_t total) {
    int *quiet = ctx;
    static double last = 0;
    double now = cx_now();
    if (*quiet || (now - last < 1.0 && have < total)) return;
    last = now;
    fprintf(stderr, TOOL ": state %.1f / %.1f MB\n", (double)have / 1e6, (double)total / 1e6);
}

static int parse_identity(const char *hex, BrIdentity *id) {
    if (strlen(hex) < 32) return -1;
    for (int i = 0; i < 16; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        id->bytes[i] = (uint8_t)v;
    }
    return 0;
}

int conflux_volunteer_main(int argc, char **argv, const VolunteerHooks *hooks) {
    static const struct option opts[] = {
        {"join", required_argument, 0, 'j'},    {"token", required_argument, 0, 't'},
        {"token-file", required_argument, 0, 'F'}, {"plaintext", no_argument, 0, 'P'},
        {"name", required_argument, 0, 'n'},    {"identity-file", required_argument, 0, 'i'},
        {"set", required_argument, 0, 's'},     {"codec", required_argument, 0, 'c'},
        {"steps", required_argument, 0, 'S'},   {"retries", required_argument, 0, 'R'},
        {"timeout", required_argument, 0, 'T'}, {"quiet", no_argument, 0, 'q'},
        {"tcp-cc", required_argument, 0, 'C'}, {"stats", required_argument, 0, 'X'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *join = NULL, *token_file = NULL, *idfile = NULL;
    int plaintext = 0;
    char name[128] = "";
    gethostname(name, sizeof name - 1);
    enum { MAX_SETS = 16 };
    const char *sets[MAX_SETS];
    int n_sets = 0, quiet = 0, c;
    long max_steps = -1, retries = 20;
    double timeout = 60;
    unsigned codecs = 0;
    const char *tcp_cc = "bbr", *stats_path = NULL;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'j': join = optarg; break;
        case 't':
            fprintf(stderr, TOOL ": error: --token on the command line is refused (other users "
                    "of this machine can read argv); put the token in a file only you can read "
                    "and use --token-file FILE\n");
            return 2;
        case 'F': token_file = optarg; break;
        case 'P': plaintext = 1; break;
        case 'n': snprintf(name, sizeof name, "%s", optarg); break;
        case 'i': idfile = optarg; break;
        case 's':
            if (n_sets == MAX_SETS) {
                fprintf(stderr, TOOL ": error: more than %d --set options\n", MAX_SETS);
                return 2;
            }
            sets[n_sets++] = optarg;
            break;
        case 'c':
            if (codec_by_name(optarg)) codecs = BR_CODEC_BIT(codec_by_name(optarg)->id);
            else {
                fprintf(stderr, TOOL ": error: --codec must be fp16, fp32 or int8, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'S': max_steps = atol(optarg); break;
        case 'R': retries = atol(optarg); break;
        case 'T': timeout = atof(optarg); break;
        case 'C': tcp_cc = optarg; break;
        case 'X': stats_path = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, TOOL ": error: bad option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc || !join || !token_file) {
        fprintf(stderr, TOOL ": error: %s (see --help)\n",
                optind < argc ? "unexpected argument" : "--join and --token-file are required");
        return 2;
    }
    char err[CX_ERRLEN];
    // the join string: HOST:PORT#sha256:FINGERPRINT (TLS pinned), or HOST:PORT with --plaintext
    char addr[300], pin[BR_TLS_FP_CHARS + 1];
    const char *hash = strchr(join, '#');
    snprintf(addr, sizeof addr, "%.*s", hash ? (int)(hash - join) : (int)strlen(join), join);
    if (hash && plaintext) {
        fprintf(stderr, TOOL ": error: --plaintext with a pinned join string '%s': drop one\n", join);
        return 2;
    }
    if (!hash && !plaintext) {
        fprintf(stderr, TOOL ": error: --join '%s' has no certificate fingerprint: use the join "
                "string HOST:PORT#sha256:FINGERPRINT from the host (`conflux-bridge tls fingerprint` "
                "or the bridge's log), or --plaintext for a bridge without TLS\n", join);
        return 2;
    }
    if (hash && br_tls_parse_pin(hash + 1, pin, err) != 0) {
        fprintf(stderr, TOOL ": error: --join: %s\n", err);
        return 2;
    }
    if (plaintext)
        fprintf(stderr, TOOL ": warning: --plaintext: the join token and gradients cross the "
                "network unencrypted\n");
    char token[BR_TOKEN_CHARS + 1];
    if (br_token_read_file(token_file, token, err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        return 2;
    }
    join = addr;
    char host[256];
    const char *colon = strrchr(join, ':');
    int port = colon ? atoi(colon + 1) : 0;
    if (!colon || colon == join || port <= 0 || port > 65535 || (size_t)(colon - join) >= sizeof host) {
        fprintf(stderr, TOOL ": error: --join '%s' is not HOST:PORT\n", join);
        return 2;
    }
    memcpy(host, join, (size_t)(colon - join));
    host[colon - join] = 0;
    BrClientOptions o = {.host = host, .port = port, .pin = plaintext ? NULL : pin, .token = token, .name = name,
                         .codecs = codecs, .timeout_s = timeout, .tcp_cc = tcp_cc};
    if (idfile) {
        FILE *f = fopen(idfile, "r");
        char hex[64] = "";
        if (f) {
            if (!fgets(hex, sizeof hex, f) || parse_identity(hex, &o.identity) != 0) {
                fprintf(stderr, TOOL ": error: %s does not hold a 32-hex-digit identity\n", idfile);
                fclose(f);
                return 2;
            }
            fclose(f);
            // identities are bound to tokens: one kept from another token (or from before
            // binding) would be refused, so start afresh
            if (!br_identity_check(token, &o.identity)) {
                fprintf(stderr, TOOL ": warning: the identity in %s was not issued for this token; "
                        "joining with a new one\n", idfile);
                memset(&o.identity, 0, sizeof o.identity);
            }
        }
    }
    cx_catch_stop_signals(on_signal, 0, 1);

    FILE *stats = NULL;
    if (stats_path) {
        stats = fopen(stats_path, "w");
        if (!stats) {
            fprintf(stderr, TOOL ": error: cannot write %s: %s\n", stats_path, strerror(errno));
            return 1;
        }
        fprintf(stats, "step,share_samples,compute_s,upload_s,upload_bytes,download_s,download_bytes,"
                       "round_s,download_steady_s,download_steady_bytes\n");
    }
    Replica rep = {0};  // built: rep.recipe set
    Diloco outer = {0};  // diloco mode: this worker's outer state
    uint8_t *blob = NULL;
    size_t blob_have = 0, blob_total = 0;
    uint64_t blob_step = UINT64_MAX;
    int need_state = 1, failures = 0, rc = 0;
    long contributed = 0;
    double t_start = cx_now();
    while (!g_stop) {
        BrClient *cl = NULL;
        if (br_client_connect(&cl, &o, err) != 0) {
            fprintf(stderr, TOOL ": %s\n", err);
            // BR_ERR_AUTH, or a certificate that is not the pinned one: retrying will not help
            if (strstr(err, "error 3:") || strstr(err, "fingerprint mismatch")) {
                rc = 1;
                break;
            }
            if (++failures > retries) {
                rc = 1;
                break;
            }
            sleep((unsigned)(failures < 5 ? failures : 5));
            continue;
        }
        br_client_set_interrupt(cl, &g_stop);
        const BrWelcome *w = br_client_welcome(cl);
        o.identity = w->identity;
        o.timeout_s = timeout;
        if (idfile) {
            FILE *f = fopen(idfile, "w");
            if (f) {
                for (int i = 0; i < 16; i++) fprintf(f, "%02x", w->identity.bytes[i]);
                fputc('\n', f);
                fclose(f);
            }
        }
        if (!quiet)
            fprintf(stderr, TOOL ": joined %s as %s (step %llu, %s uploads)\n", join, name,
                    (unsigned long long)w->step, codec_find(w->codec)->name);
        if (rep.recipe && !need_state) {
            // reconnecting with a consistent replica: the bridge replays what we missed
            if (br_client_start(cl, (uint64_t)rep.tr.optim.step, rep.tr.task.params,
                                rep.tr.task.n_params, &rep.tr.samples_seen, err) != 0)
                goto broken;
        } else {
            if (blob_step != w->step || blob_total != w->state_bytes) {  // a new state: start over
                free(blob);
                blob_total = (size_t)w->state_bytes;
                blob = malloc(blob_total);
                CHECK(blob, "out of memory for a %zu-byte state", blob_total);
                blob_have = 0;
                blob_step = w->step;
            } else if (!quiet && blob_have > 0) {
                fprintf(stderr, TOOL ": resuming the state download at %.1f MB\n", (double)blob_have / 1e6);
            }
            if (br_client_download(cl, blob, &blob_have, download_progress, &quiet, err) != 0) goto broken;
            BrState st;
            if (br_state_parse(blob, blob_total, &st, err) != 0) {
                fprintf(stderr, TOOL ": error: downloaded state: %s\n", err);
                blob_step = UINT64_MAX;
                goto broken;
            }
            int br = replica_build(&rep, &st, sets, n_sets, err);
            br_state_free(&st);
            if (br != 0) {
                fprintf(stderr, TOOL ": error: %s\n", err);
                br_client_leave(cl);
                rc = 1;
                break;
            }
            blob_step = UINT64_MAX;  // used
            need_state = 0;
            if (br_client_start(cl, (uint64_t)rep.tr.optim.step, rep.tr.task.params,
                                rep.tr.task.n_params, &rep.tr.samples_seen, err) != 0)
                goto broken;
        }
        failures = 0;
        // diloco: this volunteer is one worker; its outer state starts from the download
        // (parameters = the outer parameters, first moment = the outer momentum), its inner
        // AdamW from zero moments
        Averager avg = br_client_averager(cl);
        if (rep.train->avg.mode == AVG_DILOCO) {
            Trainer *tr = &rep.tr;
            size_t n = tr->task.n_params;
            if (outer.theta) diloco_free(&outer);
            diloco_init(&outer, &rep.train->avg, tr->task.params, n, (Averager){.rank = 0, .n_ranks = 1});
            memcpy(outer.buf, tr->optim.m, n * sizeof(float));
            memset(tr->optim.m, 0, n * sizeof(float));
            memset(tr->optim.v, 0, n * sizeof(float));
            tr->optim.moment_steps = 0;  // bias correction from its own first step
            outer.applied = tr->optim.step;  // the outer rounds the state holds
            outer.cursor = &tr->samples_seen;
            outer.sched_step = &tr->optim.step;
            outer.link = br_client_outer_link(cl, &outer, tr->global_batch);
            if (hooks && hooks->wrap_link) outer.link = hooks->wrap_link(hooks->ctx, outer.link);
            avg = diloco_averager(&outer);
        } else if (hooks && hooks->wrap_averager) {
            avg = hooks->wrap_averager(hooks->ctx, avg);
        }
        Contribution contribution = {.rep = &rep, .cl = cl, .stats = stats, .contributed = &contributed,
                                     .max_steps = max_steps, .shares_before = br_client_stats(cl)->shares,
                                     .samples_before = br_client_stats(cl)->samples,
                                     .t_last = cx_now(), .quiet = quiet};
        // the run's loop, until the run ends (the bridge says so), a signal or --steps
        // the link's averager; the model drives the link during its backward
        RunLoop loop = {.tool = TOOL, .rep = &rep, .avg = avg, .quiet = quiet,
                        .stop_flag = &g_stop, .unbounded = 1,
                        .after_step = contribution_after_step, .ctx = &contribution};
        if (max_steps != 0 && run_loop(&loop, err) < 0) goto broken;
        if (!quiet)
            fprintf(stderr, TOOL ": leaving after %ld contributed step(s), %.0f s\n", contributed,
                    cx_now() - t_start);
        br_client_leave(cl);
        break;
    broken:
        if (br_client_bye_reason(cl) == 2 /* BR_BYE_SHUTDOWN */) {
            if (!quiet)
                fprintf(stderr, TOOL ": the run ended; contributed to %ld step(s)\n", contributed);
            br_client_close(cl);
            break;
        }
        if (g_stop) {
            br_client_leave(cl);
            break;
        }
        fprintf(stderr, TOOL ": %s; reconnecting\n", err);
        if (br_client_bye_reason(cl) == 4 /* BR_BYE_RESTART: the job is being requeued */) failures = 0;
        // a replica interrupted inside a step still holds the last applied step, unless the
        // bridge says it differs or is out of reach
        if (br_client_error_code(cl) == 6 /* BR_ERR_STATE */ || !rep.recipe) need_state = 1;
        // diloco: a worker's local state is not worth keeping; rejoin with the outer state
        if (rep.recipe && rep.train->avg.mode == AVG_DILOCO) need_state = 1;
        if (br_client_error_code(cl) == 3 /* BR_ERR_AUTH */) {
            br_client_close(cl);
            rc = 1;
            break;
        }
        br_client_close(cl);
        if (++failures > retries) {
            rc = 1;
            break;
        }
        sleep((unsigned)(failures < 5 ? failures : 5));
    }
    free(blob);
    if (outer.theta) diloco_free(&outer);
    recipe_free(&rep);
    if (stats) fclose(stats);
    return rc;
}
