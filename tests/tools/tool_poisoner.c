// tool_poisoner: a hostile volunteer for the poisoning tests (tests/integration/test_poison.sh,
// issue 15). It is conflux-volunteer (its own main, download, training loop and client code,
// through bridge/volunteer.h) computing real gradients on its real shares, except that
// what it uploads is scaled by --scale X first: the gradient sum of its share in sync rounds,
// its pseudo-gradient in DiLoCo rounds; with --tokens-scale Y the loss tokens it claims are
// multiplied by Y (the count divides the round's gradient). Its replica still applies the
// bridge's results, so it stays in step and keeps being given shares.
//
//   tool_poisoner --scale X [--tokens-scale Y] --join HOST:PORT#PIN --token-file F [any
//                 conflux-volunteer option]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/volunteer.h"
#include "models/common.h"

typedef struct {
    float scale;
    double tokens_scale;
    Averager inner;
    OuterLink link;
    float *buf;  // the scaled pseudo-gradient (diloco)
    size_t buf_n;
} Poison;

static int poison_sum(void *ctx, float *grads, size_t n, double *stats, int n_stats, char *err) {
    Poison *p = ctx;
    for (size_t i = 0; i < n; i++) grads[i] *= p->scale;  // then uploaded; replaced by the round's sum
    stats[STAT_TOKENS] *= p->tokens_scale;
    return p->inner.sum(p->inner.ctx, grads, n, stats, n_stats, err);
}

static void poison_progress(void *ctx) {
    Poison *p = ctx;
    if (p->inner.progress) p->inner.progress(p->inner.ctx);
}

static Averager wrap_averager(void *ctx, Averager inner) {
    Poison *p = ctx;
    CHECK(inner.sum && !inner.ready && !inner.begin && !inner.after_step && !inner.step,
          "tool_poisoner: the volunteer's averager has hooks this wrapper does not forward");
    p->inner = inner;
    Averager a = inner;
    a.ctx = p;
    a.sum = poison_sum;
    a.progress = inner.progress ? poison_progress : NULL;
    return a;
}

static int poison_post(void *ctx, long round, const float *delta, size_t n, const double *stats, char *err) {
    Poison *p = ctx;
    if (p->buf_n < n) {
        free(p->buf);
        p->buf = cx_calloc(n, sizeof(float));
        p->buf_n = n;
    }
    for (size_t i = 0; i < n; i++) p->buf[i] = p->scale * delta[i];
    double st[STAT_COUNT];
    memcpy(st, stats, sizeof st);
    st[STAT_TOKENS] *= p->tokens_scale;
    return p->link.post(p->link.ctx, round, p->buf, n, st, err);
}

static int poison_assign(void *ctx, long *round, uint64_t *start, long *steps, char *err) {
    Poison *p = ctx;
    return p->link.assign(p->link.ctx, round, start, steps, err);
}

static int poison_wait(void *ctx, long round, char *err) {
    Poison *p = ctx;
    return p->link.wait(p->link.ctx, round, err);
}

static void poison_link_progress(void *ctx) {
    Poison *p = ctx;
    if (p->link.progress) p->link.progress(p->link.ctx);
}

static void poison_traffic(void *ctx, double *sent, double *recv) {
    Poison *p = ctx;
    if (p->link.traffic) p->link.traffic(p->link.ctx, sent, recv);
    else *sent = *recv = 0;
}

static OuterLink wrap_link(void *ctx, OuterLink inner) {
    Poison *p = ctx;
    p->link = inner;
    return (OuterLink){.ctx = p, .assign = poison_assign, .post = poison_post, .wait = poison_wait,
                       .progress = poison_link_progress, .traffic = poison_traffic};
}

static int parse_number(const char *opt, const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    if (*end || !*s || !(*out == *out)) {
        fprintf(stderr, "tool_poisoner: error: %s needs a number, got '%s'\n", opt, s);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    static Poison p;
    double scale, tokens_scale = 1;
    if (argc < 3 || strcmp(argv[1], "--scale") != 0) {
        fprintf(stderr, "usage: tool_poisoner --scale X [--tokens-scale Y] [conflux-volunteer options]\n");
        return 2;
    }
    if (parse_number("--scale", argv[2], &scale)) return 2;
    int used = 2;
    if (argc > 4 && !strcmp(argv[3], "--tokens-scale")) {
        if (parse_number("--tokens-scale", argv[4], &tokens_scale)) return 2;
        used = 4;
    }
    p.scale = (float)scale;
    p.tokens_scale = tokens_scale;
    VolunteerHooks hooks = {.ctx = &p, .wrap_averager = wrap_averager, .wrap_link = wrap_link};
    argv[used] = argv[0];  // conflux-volunteer's own arguments follow
    int rc = conflux_volunteer_main(argc - used, argv + used, &hooks);
    free(p.buf);
    return rc;
}
