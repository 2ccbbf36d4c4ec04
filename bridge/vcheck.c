// vcheck.c: conflux-volunteer --check (see vcheck.h).
#include "bridge/vcheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/state.h"
#include "io/run/run.h"
#include "io/tasks/recipe.h"
#include "models/codec.h"
#include "models/common.h"
#include "models/train.h"

#define TOOL "conflux-volunteer"
#define RTT_PROBES 7
#define RATE_SECONDS 3.0               // each rate is measured for about this long
#define RATE_MAX_BYTES ((size_t)24 << 20)
#define HEAD_BYTES ((size_t)1 << 20)   // the state's head kept for its configuration
#define BENCH_SECONDS 2.0

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int exit_for(int failure) {
    switch (failure) {
    case BR_CONNECT_UNREACHABLE: return VCHECK_UNREACHABLE;
    case BR_CONNECT_TLS: return VCHECK_TLS;
    case BR_CONNECT_PIN: return VCHECK_PIN;
    case BR_CONNECT_AUTH: return VCHECK_TOKEN;
    case BR_CONNECT_VERSION: return VCHECK_VERSION;
    case BR_CONNECT_BUSY: return VCHECK_BUSY;
    default: return 1;
    }
}

// Forward + backward on micro-batches of the run's model and this machine's data for about
// BENCH_SECONDS: samples per second (0 with err when the replica cannot be built here).
static double bench(const char *config, const char *const *sets, int n_sets, char *what,
                    size_t what_cap, char *err) {
    Replica r = {0};
    recipe_config_init(&r, recipe_for_config(config));
    double rate = 0;
    if (recipe_config_from_text(&r, config, "the run's configuration", sets, n_sets, NULL, err) != 0)
        goto done;
    run_set_threads(r.train);
    if (recipe_build(&r, REPLICA_VOLUNTEER, err) != 0) goto done;
    TrainTask *k = &r.tr.task;
    int B = k->micro_batch;
    long tokens;
    double aux;
    k->micro_step(k->ctx, 0, B, 1, 1, &tokens, &aux);  // warm-up
    double t0 = cx_now();
    long n = 0;
    do {
        k->micro_step(k->ctx, (uint64_t)(n + 1) * (uint64_t)B, B, 1, 1, &tokens, &aux);
        n++;
    } while (cx_now() - t0 < BENCH_SECONDS || n < 2);
    rate = (double)(n * B) / (cx_now() - t0);
    snprintf(what, what_cap, "%s, %zu parameters, micro-batch %d, %d thread(s)", r.recipe->name,
             k->n_params, B, r.train->threads > 0 ? r.train->threads : 0);
done:
    recipe_free(&r);
    return rate;
}

int volunteer_check(const BrClientOptions *opts, const char *const *sets, int n_sets) {
    BrClientOptions o = *opts;
    memset(&o.identity, 0, sizeof o.identity);  // a check never resumes an identity
    o.max_upload_rate = 0;                       // the link, not the limit
    if (o.connect_timeout_s <= 0) o.connect_timeout_s = o.timeout_s > 0 && o.timeout_s < 10 ? o.timeout_s : 10;
    if (o.timeout_s <= 0 || o.timeout_s > 30) o.timeout_s = 30;
    char err[CX_ERRLEN];
    fprintf(stderr, TOOL ": checking the link to the bridge at %s:%d\n", o.host, o.port);
    BrClient *c = NULL;
    int failure = 0;
    if (br_client_connect(&c, &o, &failure, err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        fprintf(stderr, TOOL ": check failed (exit %d)\n", exit_for(failure));
        return exit_for(failure);
    }
    const BrWelcome *w = br_client_welcome(c);
    fprintf(stderr, "  connect       ok: TCP in %.1f ms\n", br_client_connect_seconds(c) * 1e3);
    if (o.pin) fprintf(stderr, "  TLS           ok: TLS 1.3, the certificate matches sha256:%.16s...\n", o.pin);
    else fprintf(stderr, "  TLS           none: --plaintext\n");
    const Codec *codec = codec_find(w->codec);
    fprintf(stderr, "  join token    ok: accepted (the run is at step %llu; %llu parameters; %s "
            "uploads; round deadline %.0f s)\n", (unsigned long long)w->step,
            (unsigned long long)w->n_params, codec ? codec->name : "?", w->round_deadline_ms / 1e3);
    double rtt[RTT_PROBES], down = 0, up = 0, got = 0, sent = 0;
    uint8_t *head = cx_calloc(HEAD_BYTES, 1);
    size_t head_have = 0;
    int rc = 0;
    for (int i = 0; i < RTT_PROBES && rc == 0; i++) rc = br_client_probe_rtt(c, &rtt[i], err);
    if (rc == 0) {
        qsort(rtt, RTT_PROBES, sizeof *rtt, cmp_double);
        fprintf(stderr, "  round trip    min %.1f ms, median %.1f ms (%d probes)\n", rtt[0] * 1e3,
                rtt[RTT_PROBES / 2] * 1e3, RTT_PROBES);
        double t0 = cx_now();
        rc = br_client_probe_down(c, RATE_SECONDS, RATE_MAX_BYTES, &down, &got, head, HEAD_BYTES,
                                  &head_have, err);
        if (rc == 0)
            fprintf(stderr, "  download      %.1f Mbit/s (%.1f MB of the state in %.1f s)\n",
                    down * 8 / 1e6, got / 1e6, cx_now() - t0);
    }
    if (rc == 0) {
        double t0 = cx_now();
        rc = br_client_probe_up(c, RATE_SECONDS, RATE_MAX_BYTES, &up, &sent, err);
        if (rc == 0)
            fprintf(stderr, "  upload        %.1f Mbit/s (%.1f MB in %.1f s)\n", up * 8 / 1e6,
                    sent / 1e6, cx_now() - t0);
    }
    if (rc != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        br_client_close(c);
        free(head);
        fprintf(stderr, TOOL ": check failed (exit 1)\n");
        return 1;
    }
    uint64_t n_params = w->n_params;
    int codec_id = w->codec;
    double deadline_s = w->round_deadline_ms / 1e3;
    br_client_leave(c);  // BYE: no rounds joined
    // what this machine would contribute
    char *config = br_state_peek_config(head, head_have);
    free(head);
    double sps = 0;
    char what[256] = "";
    if (!config) {
        snprintf(err, sizeof err, "the state's head did not hold the run's configuration");
    } else {
        sps = bench(config, sets, n_sets, what, sizeof what, err);
    }
    if (sps > 0)
        fprintf(stderr, "  compute       %.1f samples/s on this run's model (%s)\n", sps, what);
    else
        fprintf(stderr, "  compute       not measured: %s (give the run's data with --set "
                "data.train=PATH to measure it)\n", err);
    double up_bytes = (double)codec_encoded_bytes(codec_id, (size_t)n_params);
    double up_s = up > 0 ? up_bytes / up : 0;
    fprintf(stderr, "  contribution  an upload of the %s gradient (%.1f MB) takes %.1f s at %.1f Mbit/s",
            codec ? codec->name : "?", up_bytes / 1e6, up_s, up * 8 / 1e6);
    if (opts->max_upload_rate > 0 && opts->max_upload_rate < up)
        fprintf(stderr, " (%.1f s at --max-upload-rate)", up_bytes / opts->max_upload_rate);
    if (sps > 0 && deadline_s > up_s)
        fprintf(stderr, ";\n                in a round of the bridge's %.0f s deadline this machine could "
                "compute about %.0f samples", deadline_s, sps * (deadline_s - up_s));
    fprintf(stderr, "\n");
    free(config);
    fprintf(stderr, "check: rtt_min_ms=%.2f rtt_median_ms=%.2f down_mbit=%.2f up_mbit=%.2f "
            "samples_per_s=%.2f upload_s=%.2f\n", rtt[0] * 1e3, rtt[RTT_PROBES / 2] * 1e3,
            down * 8 / 1e6, up * 8 / 1e6, sps, up_s);
    fprintf(stderr, TOOL ": the link to the bridge works (left with BYE; no rounds joined)\n");
    return 0;
}
