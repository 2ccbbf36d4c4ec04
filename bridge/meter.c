// meter.c: transfer progress, a bar or lines (see meter.h).
#include "bridge/meter.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "models/common.h"
#include "models/train.h"  // cx_now

#define TTY_INTERVAL_S 0.2
#define LINES_INTERVAL_S 2.0
#define BAR_WIDTH 24

char *br_meter_format_eta(char *buf, size_t cap, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, cap, "?");
    else if (s < 60) snprintf(buf, cap, "%.0f s", s);
    else if (s < 3600) snprintf(buf, cap, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, cap, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
    return buf;
}

// "%.1f MB" style sizes (decimal MB, as rates are).
static double mb(double bytes) { return bytes / 1e6; }

char *br_meter_format(char *buf, size_t cap, const char *label, double have, double total,
                      double rate) {
    char eta[32];
    if (total > 0) {
        double left = total - have > 0 ? total - have : 0;
        br_meter_format_eta(eta, sizeof eta, rate > 0 ? left / rate : (left > 0 ? -1 : 0));
        if (rate > 0)
            snprintf(buf, cap, "%s %.1f / %.1f MB (%.0f%%), %.2f MB/s, ETA %s", label, mb(have),
                     mb(total), 100 * have / total, mb(rate), eta);
        else
            snprintf(buf, cap, "%s %.1f / %.1f MB (%.0f%%)", label, mb(have), mb(total),
                     100 * have / total);
    } else if (rate > 0) {
        snprintf(buf, cap, "%s %.1f MB, %.2f MB/s", label, mb(have), mb(rate));
    } else {
        snprintf(buf, cap, "%s %.1f MB", label, mb(have));
    }
    return buf;
}

void br_meter_start(BrMeter *m, FILE *out, const char *label, double total, double have, int quiet) {
    memset(m, 0, sizeof *m);
    m->out = out;
    snprintf(m->label, sizeof m->label, "%s", label);
    m->total = total;
    m->start_bytes = have;
    m->t0 = cx_now();
    m->t_shown = m->t0;
    m->quiet = quiet || !out;
    m->tty = out && isatty(fileno(out));
}

static void draw(BrMeter *m, double have, double now, int final) {
    double dt = now - m->t0;
    double rate = dt > 0 && have > m->start_bytes ? (have - m->start_bytes) / dt : 0;
    char line[256];
    if (m->tty) {
        char bar[BAR_WIDTH + 1], eta[32];
        double frac = m->total > 0 ? have / m->total : 0;
        if (frac > 1) frac = 1;
        int fill = (int)(frac * BAR_WIDTH);
        for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '#' : '.';
        bar[BAR_WIDTH] = 0;
        double left = m->total - have > 0 ? m->total - have : 0;
        br_meter_format_eta(eta, sizeof eta, final ? 0 : rate > 0 ? left / rate : -1);
        snprintf(line, sizeof line, "%s [%s] %3.0f%%  %.1f/%.1f MB  %.2f MB/s  %s %s", m->label, bar,
                 100 * frac, mb(have), mb(m->total), mb(rate), final ? "in" : "ETA",
                 final ? br_meter_format_eta(eta, sizeof eta, dt) : eta);
        fprintf(m->out, "\r%s\033[K%s", line, final ? "\n" : "");
    } else {
        br_meter_format(line, sizeof line, m->label, have, m->total, rate);
        fprintf(m->out, "%s\n", line);
    }
    fflush(m->out);
    m->t_shown = now;
}

void br_meter_update_at(BrMeter *m, double have, double now, int force) {
    if (m->quiet) return;
    double every = m->tty ? TTY_INTERVAL_S : LINES_INTERVAL_S;
    if (force || now - m->t_shown >= every) draw(m, have, now, 0);
}

void br_meter_update(BrMeter *m, double have) { br_meter_update_at(m, have, cx_now(), 0); }

void br_meter_finish(BrMeter *m, double have) {
    if (m->quiet) return;
    draw(m, have, cx_now(), 1);
}
