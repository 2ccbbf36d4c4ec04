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
#include "bridge/meter.h"
#include "bridge/state.h"
#include "bridge/tls.h"
#include "bridge/tokens.h"
#include "bridge/vcheck.h"
#include "bridge/vlimits.h"
#include "bridge/volunteer.h"
#include "io/run/run.h"
#include "io/tasks/recipe.h"
#include "models/common.h"
#include "models/train.h"

#define TOOL "conflux-volunteer"

// The first SIGINT/SIGTERM stops at the next step boundary (a share in flight is finished,
// so both sides count its samples); a second one stops every wait at once.
static volatile sig_atomic_t g_stop = 0, g_abort = 0;
static void on_signal(int sig) {
    static const char msg[] = TOOL ": finishing the round in flight, then leaving (signal again "
                              "to leave at once)\n";
    if (g_stop) g_abort = sig;
    else if (write(2, msg, sizeof msg - 1) < 0) g_abort = 0;  // (nothing to do about it)
    g_stop = sig;
}

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
            "  --check               measure the link instead of joining: TLS, token, round\n"
            "                        trips, download and upload rates, and what this machine\n"
            "                        would contribute; then leave (exit 0: the link works;\n"
            "                        3 unreachable, 4 TLS, 5 certificate pin, 6 token,\n"
            "                        7 protocol version, 8 bridge busy)\n"
            "\n"
            "Your machine's limits:\n"
            "  --threads N           compute threads (train.threads; default: all cores)\n"
            "  --max-upload-rate R   upload at most R bytes/s (k, M, G: 2M = 16 Mbit/s)\n"
            "  --hours FROM-TO       train only within these local hours (22-07: 22:00 to\n"
            "                        06:59); outside them leave the rounds and come back\n"
            "  --pause-when-busy L   leave the rounds while other processes use more than L\n"
            "                        cores of this process's CPUs (averaged over 5 s); come\n"
            "                        back once below L for --resume-after seconds\n"
            "  --resume-after S      seconds of calm before resuming (default 60)\n"
            "  -q, --quiet           no progress lines\n"
            "  -h, --help            this text\n"
            "\n"
            "The run's training data must be on this machine at the configured path (or\n"
            "--set data.train=PATH); it is checked against the run's. Runs of conflux-train\n"
            "(ALBERT) and of conflux-headline train (the encoder-decoder: a pair shard, or a\n"
            "token shard and the tokenizer, data.tokenizer=DIR, for denoising) are both joined\n"
            "this way; the run's configuration says which model to build.\n"
            "\n"
            "SIGINT or SIGTERM ends the round in flight, leaves and prints a summary (rounds,\n"
            "samples contributed and accepted, bytes, time); a second signal leaves at once.\n"
            "\n"
            "examples:\n"
            "  " TOOL " --join 10.0.0.5:7070#sha256:3f9a...c1 --token-file alice.token --check\n"
            "  " TOOL " --join 10.0.0.5:7070#sha256:3f9a...c1 --token-file alice.token \\\n"
            "      --set data.train=shards/train.h5 --threads 2 --hours 22-07\n");
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

// ---- the owner's limits: --hours, --pause-when-busy ----

// A volunteer outside its hours or on a busy machine leaves the rounds (BYE) and comes
// back later, rather than staying connected idle: the bridge gives every live volunteer in
// step a share ahead of its acknowledgment (bridge/rounds.c) and sends it every round's
// full result, and drops one that stops acknowledging; a volunteer that left costs the run
// nothing and is never waited for. Coming back, it replays the rounds it missed from the
// bridge's history, or downloads a fresh state when it missed more than a few.
typedef struct {
    int has_hours;
    VlHours hours;
    double busy_load;        // > 0: --pause-when-busy
    double resume_after_s;
    VlBusy busy;
    int paused_busy;
    double t_calm;           // since when the load has been below busy_load (0: it is not)
} Limits;

#define BUSY_WINDOW_S 5.0

// Whether the owner's limits hold training back now; why says so (for the log).
static int limits_hold(Limits *L, char *why, size_t cap) {
    if (L->has_hours) {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        if (!vl_hours_inside(&L->hours, tm.tm_hour)) {
            snprintf(why, cap, "outside --hours %02d-%02d (now %02d:%02d; back in %.0f min)",
                     L->hours.from, L->hours.to, tm.tm_hour, tm.tm_min,
                     vl_hours_until_open(&L->hours, tm.tm_hour, tm.tm_min, tm.tm_sec) / 60);
            return 1;
        }
    }
    if (L->busy_load > 0) {
        double load = vl_busy_load(&L->busy, BUSY_WINDOW_S);
        double now = cx_now();
        if (!L->paused_busy) {
            if (load > L->busy_load) {
                L->paused_busy = 1;
                L->t_calm = 0;
            }
        } else if (load >= 0 && load <= L->busy_load) {
            if (L->t_calm == 0) L->t_calm = now;
            if (now - L->t_calm >= L->resume_after_s) L->paused_busy = 0;
        } else {
            L->t_calm = 0;
        }
        if (L->paused_busy) {
            snprintf(why, cap, "busy: other processes use %.2f cores of this machine's CPUs "
                     "(--pause-when-busy %.2f; resuming after %.0f s below it)", load, L->busy_load,
                     L->resume_after_s);
            return 1;
        }
    }
    why[0] = 0;
    return 0;
}

// ---- the summary at exit ----

typedef struct {
    long rounds, shares, connections;
    uint64_t samples, accepted;
    double bytes_up, bytes_down;
    double joined_s, compute_s, paused_s;
} Totals;

// A connection ends: its figures into the totals (t_joined: when it joined; 0: it did not).
static void tally(Totals *t, const BrClient *cl, double t_joined) {
    const BrClientStats *s = br_client_stats(cl);
    t->rounds += s->rounds;
    t->shares += s->shares;
    t->samples += s->samples;
    t->accepted += s->accepted;
    t->bytes_up += s->bytes_sent;
    t->bytes_down += s->bytes_recv;
    if (t_joined > 0) t->joined_s += cx_now() - t_joined;
    t->connections++;
}

static void print_summary(const Totals *t) {
    fprintf(stderr, TOOL ": summary: rounds joined %ld (with a share %ld), samples contributed "
            "%llu, accepted %llu, up %.1f MB, down %.1f MB, trained %.0f s (computing %.1f s), "
            "paused %.0f s, connections %ld\n", t->rounds, t->shares,
            (unsigned long long)t->samples, (unsigned long long)t->accepted, t->bytes_up / 1e6,
            t->bytes_down / 1e6, t->joined_s, t->compute_s, t->paused_s, t->connections);
}

// " (disk full: ...)" for the errors of a full disk or quota, else "".
static const char *disk_hint(int e) {
    return e == ENOSPC || e == EDQUOT ? " (disk full: free some space or write elsewhere)" : "";
}

// The volunteer's after-step work in the run loop: the stats row, the progress line,
// --steps and the owner's limits.
typedef struct {
    Replica *rep;
    BrClient *cl;
    FILE *stats;
    const char *stats_path;
    long *contributed, max_steps;
    uint64_t shares_before, samples_before;
    double t_last;
    int quiet;
    Totals *tot;
    Limits *lim;
    char pause_why[256];  // set when the limits stopped the loop
    char fatal[CX_ERRLEN];  // set when the volunteer must exit (a write failed)
} Contribution;

static int contribution_after_step(void *ctx, const StepResult *r, char *err) {
    (void)err;
    Contribution *v = ctx;
    const BrClientStats *cs = br_client_stats(v->cl);
    int had_share = (uint64_t)cs->shares > v->shares_before;
    uint64_t share_samples = cs->samples - v->samples_before;  // of the share(s) posted this step
    if (had_share) {
        (*v->contributed)++;
        v->tot->compute_s += cs->compute_s;
    }
    v->shares_before = cs->shares;
    v->samples_before = cs->samples;
    if (v->stats) {
        fprintf(v->stats, "%ld,%llu,%.4f,%.4f,%.0f,%.4f,%.0f,%.4f,%.4f,%.0f\n", r->step,
                (unsigned long long)share_samples,
                had_share ? cs->compute_s : 0.0, had_share ? cs->up_s : 0.0,
                had_share ? cs->up_bytes : 0.0, cs->down_s, cs->down_bytes, cs->round_s,
                cs->down_steady_s, cs->down_steady_bytes);
        if (fflush(v->stats) != 0 || ferror(v->stats)) {
            int e = errno;
            snprintf(v->fatal, sizeof v->fatal, "cannot write --stats %s: %s%s", v->stats_path,
                     strerror(e), disk_hint(e));
            return 1;
        }
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
    if (v->max_steps >= 0 && *v->contributed >= v->max_steps) return 1;
    return limits_hold(v->lim, v->pause_why, sizeof v->pause_why);
}

// The state download's progress (bridge/meter.h: a bar on a terminal, lines otherwise).
static void download_progress(void *ctx, size_t have, size_t total) {
    BrMeter *m = ctx;
    if (have < total) br_meter_update(m, (double)have);
}

// Writes the identity (32 hex digits) to path atomically (temporary file, fsync, rename).
// 0, or -1 with err.
static int write_identity(const char *path, const BrIdentity *id, char *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return cx_err(err, "cannot write the identity file %s: %s%s", tmp, strerror(errno), disk_hint(errno));
    for (int i = 0; i < 16; i++) fprintf(f, "%02x", id->bytes[i]);
    fputc('\n', f);
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) bad = 1, e = errno;
    if (!bad && rename(tmp, path) != 0) bad = 1, e = errno;
    if (bad) {
        unlink(tmp);
        return cx_err(err, "cannot write the identity file %s: %s%s", path, strerror(e), disk_hint(e));
    }
    return 0;
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
        {"help", no_argument, 0, 'h'},
        // the link check and the owner's limits
        {"check", no_argument, 0, 'K'},         {"threads", required_argument, 0, 'N'},
        {"max-upload-rate", required_argument, 0, 'U'}, {"hours", required_argument, 0, 'H'},
        {"pause-when-busy", required_argument, 0, 'B'}, {"resume-after", required_argument, 0, 'A'},
        {0, 0, 0, 0}};
    const char *join = NULL, *token_file = NULL, *idfile = NULL;
    int plaintext = 0;
    char name[128] = "";
    gethostname(name, sizeof name - 1);
    enum { MAX_SETS = 17 };  // 16 --set and --threads
    const char *sets[MAX_SETS];
    int n_sets = 0, quiet = 0, c, check = 0;
    char threads_set[64] = "";
    double max_upload_rate = 0;
    Limits limits = {.resume_after_s = 60};
    char err[CX_ERRLEN];
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
            if (n_sets == MAX_SETS - 1) {
                fprintf(stderr, TOOL ": error: more than %d --set options\n", MAX_SETS - 1);
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
        case 'K': check = 1; break;
        case 'N': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || end == optarg || n < 1 || n > 1024) {
                fprintf(stderr, TOOL ": error: --threads '%s' is not a count 1..1024\n", optarg);
                return 2;
            }
            snprintf(threads_set, sizeof threads_set, "train.threads=%ld", n);
            break;
        }
        case 'U':
            if (vl_rate_parse(optarg, &max_upload_rate, err) != 0) {
                fprintf(stderr, TOOL ": error: %s\n", err);
                return 2;
            }
            break;
        case 'H':
            if (vl_hours_parse(optarg, &limits.hours, err) != 0) {
                fprintf(stderr, TOOL ": error: %s\n", err);
                return 2;
            }
            limits.has_hours = 1;
            break;
        case 'B': {
            char *end;
            limits.busy_load = strtod(optarg, &end);
            if (*end || end == optarg || !(limits.busy_load > 0)) {
                fprintf(stderr, TOOL ": error: --pause-when-busy '%s' is not a load in cores > 0 "
                        "(e.g. 0.5: pause while other processes use more than half a core)\n", optarg);
                return 2;
            }
            break;
        }
        case 'A': {
            char *end;
            limits.resume_after_s = strtod(optarg, &end);
            if (*end || end == optarg || limits.resume_after_s < 0) {
                fprintf(stderr, TOOL ": error: --resume-after '%s' is not seconds >= 0\n", optarg);
                return 2;
            }
            break;
        }
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
    if (threads_set[0]) sets[n_sets++] = threads_set;  // after --set: --threads wins
    if (limits.busy_load > 0) vl_busy_init(&limits.busy);
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
                         .codecs = codecs, .timeout_s = timeout, .tcp_cc = tcp_cc,
                         .max_upload_rate = max_upload_rate};
    if (check) return volunteer_check(&o, sets, n_sets);
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
        if (fflush(stats) != 0) {
            fprintf(stderr, TOOL ": error: cannot write --stats %s: %s%s\n", stats_path,
                    strerror(errno), disk_hint(errno));
            fclose(stats);
            return 1;
        }
    }
    Replica rep = {0};  // built: rep.recipe set
    Diloco outer = {0};  // diloco mode: this worker's outer state
    uint8_t *blob = NULL;
    size_t blob_have = 0, blob_total = 0;
    uint64_t blob_step = UINT64_MAX;
    int need_state = 1, failures = 0, rc = 0;
    long contributed = 0;
    double t_start = cx_now();
    Totals tot = {0};
    char why[256];
    while (!g_stop) {
        // the owner's limits: outside the hours, or busy, wait without a connection
        if (limits_hold(&limits, why, sizeof why)) {
            double t_pause = cx_now();
            if (!quiet) fprintf(stderr, TOOL ": waiting, not joined: %s\n", why);
            while (!g_stop && limits_hold(&limits, why, sizeof why)) usleep(500000);
            tot.paused_s += cx_now() - t_pause;
            if (g_stop) break;
            if (!quiet) fprintf(stderr, TOOL ": resuming after %.0f s\n", cx_now() - t_pause);
        }
        BrClient *cl = NULL;
        double t_joined = 0;
        int failure = 0;
        if (br_client_connect_ex(&cl, &o, &failure, err) != 0) {
            fprintf(stderr, TOOL ": %s%s\n", failure == BR_CONNECT_UNREACHABLE ? "" : "error: ", err);
            // a refused token, a certificate that is not the pinned one, another protocol
            // version: retrying will not help
            if (failure == BR_CONNECT_AUTH || failure == BR_CONNECT_PIN || failure == BR_CONNECT_VERSION) {
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
        br_client_set_interrupt(cl, &g_abort);
        br_client_set_soft_interrupt(cl, &g_stop);
        t_joined = cx_now();
        const BrWelcome *w = br_client_welcome(cl);
        o.identity = w->identity;
        o.timeout_s = timeout;
        if (idfile && write_identity(idfile, &w->identity, err) != 0) {
            fprintf(stderr, TOOL ": error: %s\n", err);
            tally(&tot, cl, 0);
            br_client_leave(cl);
            rc = 1;
            break;
        }
        // back after a pause with a replica more rounds behind than a state download costs
        // (a round's result is a third of the state's bytes): download afresh
        if (rep.recipe && !need_state && w->step > (uint64_t)rep.tr.optim.step + 2) need_state = 1;
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
            BrMeter meter;
            br_meter_start(&meter, stderr, TOOL ": state", (double)blob_total, (double)blob_have, quiet);
            if (br_client_download(cl, blob, &blob_have, download_progress, &meter, err) != 0) goto broken;
            br_meter_finish(&meter, (double)blob_have);
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
                tally(&tot, cl, 0);
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
        Contribution contribution = {.rep = &rep, .cl = cl, .stats = stats, .stats_path = stats_path,
                                     .contributed = &contributed,
                                     .max_steps = max_steps, .shares_before = br_client_stats(cl)->shares,
                                     .samples_before = br_client_stats(cl)->samples,
                                     .t_last = cx_now(), .quiet = quiet, .tot = &tot, .lim = &limits};
        // the run's loop, until the run ends (the bridge says so), a signal or --steps
        // the link's averager; the model drives the link during its backward
        RunLoop loop = {.tool = TOOL, .rep = &rep, .avg = avg, .quiet = quiet,
                        .stop_flag = &g_stop, .unbounded = 1,
                        .after_step = contribution_after_step, .ctx = &contribution};
        if (max_steps != 0 && run_loop(&loop, err) < 0) goto broken;
        if (contribution.fatal[0]) {
            fprintf(stderr, TOOL ": error: %s\n", contribution.fatal);
            rc = 1;
        } else if (contribution.pause_why[0] && !g_stop) {
            // the owner's limits: leave the rounds (the bridge does not wait for a volunteer
            // that left), wait, and come back (the loop's top)
            if (!quiet)
                fprintf(stderr, TOOL ": pausing: %s; leaving the rounds (the bridge does not wait "
                        "for this machine)\n", contribution.pause_why);
            tally(&tot, cl, t_joined);
            br_client_leave(cl);
            // diloco: a worker's local state is not worth keeping (as after a broken link)
            if (rep.train->avg.mode == AVG_DILOCO) need_state = 1;
            continue;
        }
        if (!quiet)
            fprintf(stderr, TOOL ": leaving after %ld contributed step(s), %.0f s\n", contributed,
                    cx_now() - t_start);
        tally(&tot, cl, t_joined);
        br_client_leave(cl);
        break;
    broken:
        tally(&tot, cl, t_joined);
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
    if (!quiet || g_stop) print_summary(&tot);
    free(blob);
    if (outer.theta) diloco_free(&outer);
    recipe_free(&rep);
    if (stats) fclose(stats);
    return rc;
}
