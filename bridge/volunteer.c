// volunteer.c: the volunteer, everything of conflux-volunteer but its one-line main (see
// volunteer.h). Joins a collaborative run through its bridge: connects outbound (works
// behind NAT), downloads the current state, then runs the same model and training loop as
// the cluster ranks on the shares of each global batch the bridge assigns. Reconnects on
// its own after link failures, with the same identity; re-downloads the state when it fell
// too far behind.
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/client.h"
#include "bridge/datafile.h"
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
            "  --cache-dir DIR       where the training data is downloaded and kept\n"
            "                        (default $XDG_CACHE_HOME/conflux, or ~/.cache/conflux)\n"
            "  --download-limit MB/S the training data download's rate at most, in MB/s\n"
            "                        (default: none)\n"
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
            "The run's training data comes from the bridge (downloaded once into the cache,\n"
            "resumed after a break, checked against the SHA-256 the bridge states), or from\n"
            "a local copy of the run's shard: --set data.train=PATH (refused unless its\n"
            "SHA-256 is the run's). Runs of conflux-train\n"
            "(ALBERT) and of conflux-headline train (the encoder-decoder: a pair shard, or a\n"
            "token shard and the tokenizer, data.tokenizer=DIR, for denoising) are both joined\n"
            "this way; the run's configuration says which model to build.\n"
            "\n"
            "SIGINT or SIGTERM ends the round in flight, leaves and prints a summary (rounds,\n"
            "samples contributed and accepted, bytes, time); a second signal leaves at once.\n"
            "\n"
            "examples:\n"
            "  " TOOL " --join 10.0.0.5:7070#sha256:3f9a...c1 --token-file alice.token --check\n"
            "  " TOOL " --join 10.0.0.5:7070#sha256:3f9a...c1 --token-file alice.token\n"
            "  " TOOL " --join 10.0.0.5:7070#sha256:3f9a...c1 --token-file alice.token \\\n"
            "      --threads 2 --hours 22-07 --max-upload-rate 2M\n");
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

// ---- the run's training data: a local copy, the cache, or a download ----
//
// Where the data comes from (the first that applies), each checked against the SHA-256 the
// bridge's WELCOME states (bridge/datafile.h) before it is used:
//   1. --set data.train=PATH: that file; another hash is an error (exit 1).
//   2. the cache: CACHE_DIR/data/<sha256>.h5, a complete earlier download; another hash
//      (a damaged file) is said, the file deleted and the data downloaded again.
//   3. the run's own data.train path, when this machine has a file there (the same machine
//      or a shared filesystem) with the run's hash.
//   4. a download over the bridge connection (DATA_REQUEST) into CACHE_DIR/data/<sha256>.part,
//      resumed from its size after a break (a disconnect, a restart of this program),
//      checked when complete and renamed to <sha256>.h5. A flock on the .part file keeps
//      two volunteers sharing the cache from writing it at once.
// A 1.0 bridge states no hash: the run's path or --set is used as before, checked by its
// number of examples only.
typedef struct {
    const char *local;      // --set data.train=PATH (NULL: none)
    const char *cache_dir;  // --cache-dir, or the default
    double rate_limit;      // --download-limit, bytes per second (0: none)
    int quiet;
    int ready;              // resolved (kept across reconnects)
    char path[4400];        // the file the replica reads
    char set[4420];         // "data.train=PATH" for replica_build (empty: no override)
    // the download in progress
    BrMeter meter;
    int fd;
    BrSha256 *h;
    double t0;
    uint64_t have0;
} DataSrc;

enum { DATA_OK = 0, DATA_RETRY = -1, DATA_FATAL = 1 };

static int mkdirs(const char *dir, char *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0700) != 0 && errno != EEXIST)
                return cx_err(err, "cannot create the cache directory %s: %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    return 0;
}

// SHA-256 and size of a whole file; -1 with err when it cannot be read.
static int hash_path(const char *path, uint8_t hash[BR_SHA256_BYTES], uint64_t *n, char *err) {
    BrSha256 *h = br_sha256_new();
    int rc = br_sha256_file(path, UINT64_MAX, h, n, err);
    if (rc == 0) br_sha256_final(h, hash);
    br_sha256_free(h);
    return rc;
}

static int data_sink(void *ctx, const uint8_t *p, size_t n, char *err) {
    DataSrc *d = ctx;
    struct stat st;
    if (fstat(d->fd, &st) != 0) return cx_err(err, "cannot stat %s.part: %s", d->path, strerror(errno));
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(d->fd, p + done, n - done, st.st_size + (off_t)done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return cx_err(err, "cannot write the data download %s.part: %s", d->path,
                          w < 0 ? strerror(errno) : "nothing written");
        done += (size_t)w;
    }
    br_sha256_update(d->h, p, n);
    return 0;
}

// The download's progress: the same meter as the state's (bridge/meter.h: a bar on a
// terminal, a line every 2 s otherwise; bytes, rate, ETA).
static void data_progress(void *ctx, uint64_t have, uint64_t total) {
    DataSrc *d = ctx;
    (void)total;
    br_meter_update(&d->meter, (double)have);
}

// The data file to use, given the bridge's WELCOME and the downloaded state (the run's
// configuration). DATA_OK with d->ready, DATA_RETRY (the link broke or the download was
// damaged: reconnect; a download resumes), DATA_FATAL (err says why: a wrong local copy,
// an unwritable cache).
static int data_resolve(DataSrc *d, BrClient *cl, const BrState *st, char *err) {
    if (d->ready) return DATA_OK;
    const BrWelcome *w = br_client_welcome(cl);
    char want[BR_SHA256_HEX + 1], got[BR_SHA256_HEX + 1];
    uint8_t hash[BR_SHA256_BYTES];
    uint64_t n = 0;
    if (br_client_bridge_minor(cl) < 1 || w->data_bytes == 0) {  // no hash to check against
        if (!d->quiet)
            fprintf(stderr, TOOL ": the bridge (protocol 1.%d) does not state the training data's "
                    "hash: the data is checked by its number of examples only\n", br_client_bridge_minor(cl));
        d->set[0] = 0;
        d->ready = 1;
        return DATA_OK;
    }
    br_sha256_hex(w->data_hash, want);
    if (d->local) {  // 1. a local copy: it must be the run's
        if (hash_path(d->local, hash, &n, err) != 0) return DATA_FATAL;
        if (n != w->data_bytes || memcmp(hash, w->data_hash, BR_SHA256_BYTES) != 0) {
            cx_err(err, "the training data %s (%llu bytes) has sha256:%s, the run's (%llu bytes) has "
                   "sha256:%s: use the run's shard, or leave out --set data.train to download it from "
                   "the bridge", d->local, (unsigned long long)n, br_sha256_hex(hash, got),
                   (unsigned long long)w->data_bytes, want);
            return DATA_FATAL;
        }
        snprintf(d->path, sizeof d->path, "%s", d->local);
        d->set[0] = 0;  // already among the --set options
        d->ready = 1;
        if (!d->quiet) fprintf(stderr, TOOL ": the training data %s matches the run's (sha256:%.16s...)\n",
                               d->local, want);
        return DATA_OK;
    }
    if (!d->cache_dir) {
        cx_err(err, "no cache directory for the training data: give --cache-dir DIR (neither "
               "XDG_CACHE_HOME nor HOME is set), or a local copy with --set data.train=PATH");
        return DATA_FATAL;
    }
    char dir[4096], final_path[4200], part[4300];
    snprintf(dir, sizeof dir, "%s/data", d->cache_dir);
    snprintf(final_path, sizeof final_path, "%s/%s.h5", dir, want);
    snprintf(part, sizeof part, "%s.part", final_path);
    struct stat sb;
    int waited = 0;
    for (;;) {
        // 2. a complete download from before
        if (stat(final_path, &sb) == 0) {
            if (hash_path(final_path, hash, &n, err) != 0) return DATA_FATAL;
            if (n == w->data_bytes && memcmp(hash, w->data_hash, BR_SHA256_BYTES) == 0) {
                snprintf(d->path, sizeof d->path, "%s", final_path);
                if (!d->quiet)
                    fprintf(stderr, TOOL ": using the cached training data %s (sha256 matches)\n", final_path);
                break;
            }
            fprintf(stderr, TOOL ": the cached training data %s (%llu bytes) has sha256:%s, not the run's "
                    "sha256:%s: deleting it and downloading again\n", final_path, (unsigned long long)n,
                    br_sha256_hex(hash, got), want);
            unlink(final_path);
        }
        // 3. the run's own path, when this machine has the same file there
        if (!waited) {
            Replica tmp;
            recipe_config_init(&tmp, recipe_for_config(st->config));
            char e2[CX_ERRLEN];
            if (recipe_config_from_text(&tmp, st->config, "the run's configuration", NULL, 0, NULL, e2) == 0 &&
                tmp.data_train && tmp.data_train[0] && stat(tmp.data_train, &sb) == 0) {
                if (hash_path(tmp.data_train, hash, &n, e2) == 0 && n == w->data_bytes &&
                    memcmp(hash, w->data_hash, BR_SHA256_BYTES) == 0) {
                    snprintf(d->path, sizeof d->path, "%s", tmp.data_train);
                    recipe_free(&tmp);
                    if (!d->quiet)
                        fprintf(stderr, TOOL ": using the run's training data path %s (sha256 matches)\n", d->path);
                    break;
                }
                if (!d->quiet)
                    fprintf(stderr, TOOL ": %s (the run's data.train) is not the run's data here (sha256 "
                            "differs); downloading it\n", tmp.data_train);
            }
            recipe_free(&tmp);
        }
        // 4. download (resuming a .part), one volunteer at a time per cache
        if (mkdirs(dir, err) != 0) return DATA_FATAL;
        d->fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (d->fd < 0) {
            cx_err(err, "cannot write %s: %s", part, strerror(errno));
            return DATA_FATAL;
        }
        if (flock(d->fd, LOCK_EX | LOCK_NB) != 0) {
            close(d->fd);
            d->fd = -1;
            if (!waited && !d->quiet)
                fprintf(stderr, TOOL ": another conflux-volunteer is downloading %s; waiting for it\n", part);
            waited = 1;
            for (int i = 0; i < 10 && !g_stop; i++) {  // 1 s, keeping the link alive
                usleep(100000);
                br_client_pump(cl);
            }
            if (g_stop) {
                cx_err(err, "interrupted");
                return DATA_RETRY;
            }
            continue;
        }
        if (waited && stat(final_path, &sb) == 0) {  // the other one finished: check its file
            close(d->fd);
            d->fd = -1;
            waited = 0;
            continue;
        }
        int rc = DATA_FATAL;
        struct stat ps;
        if (fstat(d->fd, &ps) != 0) {
            cx_err(err, "cannot stat %s: %s", part, strerror(errno));
            goto done;
        }
        uint64_t have = (uint64_t)ps.st_size;
        if (have > w->data_bytes) {  // not a prefix of this data: start over
            if (ftruncate(d->fd, 0) != 0) {
                cx_err(err, "cannot truncate %s: %s", part, strerror(errno));
                goto done;
            }
            have = 0;
        }
        d->h = br_sha256_new();
        if (have > 0) {
            uint64_t k = 0;
            if (br_sha256_file(part, have, d->h, &k, err) != 0) goto done;
            if (k != have) {
                cx_err(err, "%s shrank while being read", part);
                goto done;
            }
            if (!d->quiet)
                fprintf(stderr, TOOL ": resuming the training data download at byte %llu of %llu (%s)\n",
                        (unsigned long long)have, (unsigned long long)w->data_bytes, part);
        } else if (!d->quiet) {
            fprintf(stderr, TOOL ": downloading the training data (%llu bytes, sha256:%.16s...) into %s\n",
                    (unsigned long long)w->data_bytes, want, part);
        }
        snprintf(d->path, sizeof d->path, "%s", final_path);  // data_sink names the .part by it
        d->t0 = cx_now();
        d->have0 = have;
        br_meter_start(&d->meter, stderr, TOOL ": data", (double)w->data_bytes, (double)have, d->quiet);
        int dl = br_client_download_data(cl, &have, d->rate_limit, data_sink, d, data_progress, d, err);
        br_meter_finish(&d->meter, (double)have);
        if (dl != 0) {
            // a full disk will not get better by reconnecting
            rc = strstr(err, "cannot write the data download") ? DATA_FATAL : DATA_RETRY;
            goto done;
        }
        br_sha256_final(d->h, hash);
        if (memcmp(hash, w->data_hash, BR_SHA256_BYTES) != 0) {
            cx_err(err, "the downloaded training data %s has sha256:%s, the run's is sha256:%s: "
                   "deleted; downloading it again", part, br_sha256_hex(hash, got), want);
            unlink(part);
            rc = DATA_RETRY;
            goto done;
        }
        if (fsync(d->fd) != 0 || rename(part, final_path) != 0) {
            cx_err(err, "cannot complete %s: %s", final_path, strerror(errno));
            goto done;
        }
        double dt = cx_now() - d->t0;
        if (!d->quiet)
            fprintf(stderr, TOOL ": downloaded %llu bytes of training data in %.2f s (%.1f MB/s) into %s\n",
                    (unsigned long long)(w->data_bytes - d->have0), dt,
                    (double)(w->data_bytes - d->have0) / 1e6 / (dt > 1e-6 ? dt : 1e-6), final_path);
        rc = DATA_OK;
    done:
        br_sha256_free(d->h);
        d->h = NULL;
        close(d->fd);  // (releases the lock)
        d->fd = -1;
        if (rc != DATA_OK) return rc;
        break;
    }
    snprintf(d->set, sizeof d->set, "data.train=%s", d->path);
    d->ready = 1;
    return DATA_OK;
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
        {"cache-dir", required_argument, 0, 'D'}, {"download-limit", required_argument, 0, 'L'},
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
    const char *tcp_cc = "bbr", *stats_path = NULL, *cache_dir = NULL;
    double download_limit = 0;
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
        case 'D': cache_dir = optarg; break;
        case 'L': {
            char *end;
            download_limit = strtod(optarg, &end) * 1e6;
            if (*end || !(download_limit > 0)) {
                fprintf(stderr, TOOL ": error: --download-limit must be a positive rate in MB/s, not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        }
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
    // the training data: a local copy (--set data.train), else the cache or a download
    char default_cache[4096];
    if (!cache_dir) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && xdg[0] == '/') snprintf(default_cache, sizeof default_cache, "%s/conflux", xdg);
        else if (home && home[0]) snprintf(default_cache, sizeof default_cache, "%s/.cache/conflux", home);
        else default_cache[0] = 0;
        cache_dir = default_cache[0] ? default_cache : NULL;
    }
    DataSrc data = {.cache_dir = cache_dir, .rate_limit = download_limit, .quiet = quiet, .fd = -1};
    for (int i = 0; i < n_sets; i++)
        if (!strncmp(sets[i], "data.train=", 11)) data.local = sets[i] + 11;
    const char *all_sets[MAX_SETS + 1];
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
        if (br_client_connect(&cl, &o, &failure, err) != 0) {
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
            int dr = data_resolve(&data, cl, &st, err);
            if (dr != DATA_OK) {
                br_state_free(&st);
                if (dr == DATA_RETRY) goto broken;
                fprintf(stderr, TOOL ": error: %s\n", err);
                br_client_leave(cl);
                rc = 1;
                break;
            }
            int n_all = 0;
            for (int i = 0; i < n_sets; i++) all_sets[n_all++] = sets[i];
            if (data.set[0]) all_sets[n_all++] = data.set;
            int br = replica_build(&rep, &st, all_sets, n_all, err);
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
