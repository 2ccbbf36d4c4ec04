// report.c: run directories in, comparison tables and plots out (see report.h).
#include "io/eval/report.h"

#include <errno.h>
#include <ini.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/run/runcols.h"
#include "models/common.h"

static const char METRICS_HEADER13[] = RUNCOLS_METRICS;
static const char BRIDGE_HEADER[] = RUNCOLS_BRIDGE;
static const char VOLUNTEERS_HEADER[] = RUNCOLS_VOLUNTEERS;

enum { METRICS_COLS = RUNCOLS_METRICS_N, BRIDGE_COLS = RUNCOLS_BRIDGE_N, MAX_LINE = 4096 };
#define MAX_FILE_BYTES (1024L * 1024 * 1024)

// ---- small helpers ----

// A field quoted for a message: at most 40 bytes, control bytes as '?'.
static const char *quoted(const char *s, size_t len, char *buf, size_t cap) {
    size_t n = len < 40 ? len : 40, j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++)
        buf[j++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (len > n && j + 4 < cap) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = 0;
    return buf;
}

// Reads a whole file (NUL-terminated copy). Returns 0, -1 with err, or -2 when the file
// does not exist and missing_ok.
static int read_whole(const char *path, char **out, size_t *len, int missing_ok, char *err) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing_ok && errno == ENOENT) return -2;
        return cx_err(err, "cannot open %s: %s", path, strerror(errno));
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return cx_err(err, "out of memory reading %s", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= (size_t)MAX_FILE_BYTES) {
                free(buf);
                fclose(f);
                return cx_err(err, "%s is larger than %ld bytes", path, MAX_FILE_BYTES);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return cx_err(err, "out of memory reading %s", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return cx_err(err, "cannot read %s", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

// Line iteration over a file held in memory; lines are NUL-terminated in place.
typedef struct {
    char *p, *end;
    const char *path;
    int lineno;
} Lines;

// Next line (without "\n" and a "\r" before it), or NULL at the end. A last line without
// "\n" is a truncated file: -1 in *rc with err. A NUL byte inside is malformed.
static char *lines_next(Lines *L, int *rc, char *err) {
    *rc = 0;
    if (L->p >= L->end) return NULL;
    L->lineno++;
    char *s = L->p, *nl = memchr(s, '\n', (size_t)(L->end - s));
    if (!nl) {
        *rc = cx_err(err, "truncated: the last line has no end of line (%s:%d)", L->path, L->lineno);
        return NULL;
    }
    if (memchr(s, 0, (size_t)(nl - s))) {
        *rc = cx_err(err, "NUL byte in the line (%s:%d)", L->path, L->lineno);
        return NULL;
    }
    if (nl - s > MAX_LINE) {
        *rc = cx_err(err, "line longer than %d bytes (%s:%d)", MAX_LINE, L->path, L->lineno);
        return NULL;
    }
    *nl = 0;
    if (nl > s && nl[-1] == '\r') nl[-1] = 0;
    L->p = nl + 1;
    return s;
}

// Splits s at commas in place into at most cap fields; returns the number of fields.
static int split_commas(char *s, char **fields, int cap) {
    int n = 0;
    fields[n++] = s;
    for (char *p = s; *p; p++) {
        if (*p != ',') continue;
        *p = 0;
        if (n == cap) return cap + 1;  // more than cap
        fields[n++] = p + 1;
    }
    return n;
}

// Parses a number occupying the whole field. nan_ok: "nan" is accepted (a diverged loss).
static int parse_num(const char *field, double *out, int nan_ok) {
    if (!*field || *field == ' ') return -1;
    char *end;
    errno = 0;
    double v = strtod(field, &end);
    if (*end || errno == ERANGE) return -1;
    if (isnan(v) && !nan_ok) return -1;
    if (isinf(v)) return -1;
    *out = v;
    return 0;
}

// A non-negative decimal integer occupying the whole field.
static int parse_count(const char *field, long long *out) {
    if (*field < '0' || *field > '9') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(field, &end, 10);
    if (*end || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

static int bad_field(char *err, const char *what, const char *field, const char *path, int line) {
    char q[64];
    return cx_err(err, "bad %s '%s' (%s:%d)", what, quoted(field, strlen(field), q, sizeof q),
                  path, line);
}

// A row's column value that does not parse: "bad NAME value 'FIELD' (path:line)".
static int bad_value(char *err, const char *name, const char *field, const char *path, int line) {
    char what[64];
    snprintf(what, sizeof what, "%s value", name);
    return bad_field(err, what, field, path, line);
}

// A row of nf fields (from split_commas: want + 1 means more than want) where want are expected.
static int field_count_error(char *err, int nf, int want, const char *path, int line) {
    return nf > want ? cx_err(err, "more than %d fields, expected %d (%s:%d)", want, want, path, line)
                     : cx_err(err, "%d fields, expected %d (%s:%d)", nf, want, path, line);
}

// "what differs" between a header line and the expected one: the first column that does not
// match, or the column count. Returns err's -1.
static int header_error(char *err, const char *line, const char *expected, const char *path) {
    char a[MAX_LINE + 1], b[1024], *fa[64], *fb[64], q[64];
    snprintf(a, sizeof a, "%s", line);
    snprintf(b, sizeof b, "%s", expected);
    int na = split_commas(a, fa, 63), nb = split_commas(b, fb, 63);
    for (int i = 0; i < na && i < nb && i < 63; i++)
        if (strcmp(fa[i], fb[i]) != 0)
            return cx_err(err, "unexpected header: column %d is '%s', expected '%s' (%s:1)", i + 1,
                          quoted(fa[i], strlen(fa[i]), q, sizeof q), fb[i], path);
    return cx_err(err, "unexpected header: %s%d columns, expected %d (%s:1)", na > 63 ? "more than " : "",
                  na > 63 ? 63 : na, nb, path);
}

// Reads a CSV file whole and its header line. expected: the header it must be, or NULL
// to leave the check to the caller. Returns 0 with *text (the caller frees it), *L at the
// first row and *header; -2 when the file does not exist and missing_ok; -1 with err and
// nothing to free.
static int csv_open(const char *path, int missing_ok, const char *expected, char **text, Lines *L,
                    char **header, char *err) {
    size_t len;
    int rc = read_whole(path, text, &len, missing_ok, err);
    if (rc != 0) return rc;
    *L = (Lines){.p = *text, .end = *text + len, .path = path};
    *header = lines_next(L, &rc, err);
    if (!*header) {
        if (rc == 0) rc = cx_err(err, "empty file: no header (%s:1)", path);
    } else if (expected && strcmp(*header, expected) != 0) {
        rc = header_error(err, *header, expected, path);
    }
    if (rc != 0) {
        free(*text);
        *text = NULL;
    }
    return rc;
}

// ---- run.json ----

static void copy_str(char *dst, size_t cap, json_object *o, const char *key) {
    json_object *v;
    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
        snprintf(dst, cap, "%s", json_object_get_string(v));
}

static int json_pos_int(json_object *o, const char *key, int *out, const char *path, char *err) {
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return cx_err(err, "run.json has no \"%s\" (%s)", key, path);
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1 ||
        json_object_get_int64(v) > 1000000)
        return cx_err(err, "\"%s\" is not a positive integer (%s)", key, path);
    *out = (int)json_object_get_int64(v);
    return 0;
}

static int load_run_json(RepRun *r, char *err) {
    char path[1100];
    snprintf(path, sizeof path, "%s/run.json", r->dir);
    char *text;
    size_t len;
    if (read_whole(path, &text, &len, 0, err) != 0) return -1;
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    int rc = 0;
    if (!o || je != json_tokener_success) {
        size_t off = json_tokener_get_parse_end(tok);
        if (off > len) off = len;
        int line = 1;
        for (size_t i = 0; i < off; i++) line += text[i] == '\n';
        if (je == json_tokener_continue)
            rc = cx_err(err, "truncated JSON: the document ends early (%s:%d)", path, line);
        else
            rc = cx_err(err, "malformed JSON: %s (%s:%d)", json_tokener_error_desc(je), path, line);
    } else if (json_tokener_get_parse_end(tok) < len &&
               strspn(text + json_tokener_get_parse_end(tok), " \t\r\n") != len - json_tokener_get_parse_end(tok)) {
        rc = cx_err(err, "malformed JSON: text after the document (%s)", path);
    } else if (!json_object_is_type(o, json_type_object)) {
        rc = cx_err(err, "run.json is not a JSON object (%s)", path);
    }
    if (rc == 0) rc = json_pos_int(o, "ranks", &r->ranks, path, err);
    if (rc == 0) rc = json_pos_int(o, "nodes", &r->nodes, path, err);
    r->tp_rows = r->tp_cols = 1;
    json_object *lay;
    if (rc == 0 && json_object_object_get_ex(o, "layout", &lay)) {
        if (json_object_is_type(lay, json_type_object)) {
            rc = json_pos_int(lay, "tp_rows", &r->tp_rows, path, err);
            if (rc == 0) rc = json_pos_int(lay, "tp_cols", &r->tp_cols, path, err);
        }
        if (rc == 0 && (!json_object_is_type(lay, json_type_object) || r->ranks % (r->tp_rows * r->tp_cols)))
            rc = cx_err(err, "run.json: layout must be an object whose tp_rows x tp_cols grid divides "
                        "the %d ranks (%s)", r->ranks, path);
    }
    if (rc == 0) {
        copy_str(r->tool, sizeof r->tool, o, "tool");
        copy_str(r->started, sizeof r->started, o, "started");
        copy_str(r->host, sizeof r->host, o, "host");
        copy_str(r->launcher, sizeof r->launcher, o, "launcher");
        json_object *v, *cfg = NULL, *train, *gb;
        if (json_object_object_get_ex(o, "versions", &v)) copy_str(r->version, sizeof r->version, v, "conflux");
        r->resumed = json_object_object_get_ex(o, "resumed_from", &v) && v != NULL &&
                     !json_object_is_type(v, json_type_null);
        r->simulated = json_object_object_get_ex(o, "simulated", &v) && v != NULL &&
                       json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
        if (json_object_object_get_ex(o, "config", &cfg) &&
            json_object_object_get_ex(cfg, "train", &train) &&
            json_object_object_get_ex(train, "global_batch", &gb))
            r->global_batch = atol(json_object_get_string(gb));
        if (r->global_batch < 0) r->global_batch = 0;
        snprintf(r->mode, sizeof r->mode, "sync");
        json_object *av, *mo, *hs;
        if (cfg && json_object_object_get_ex(cfg, "averaging", &av) &&
            json_object_object_get_ex(av, "mode", &mo)) {
            const char *m = json_object_get_string(mo);
            if (strcmp(m, "sync") != 0 && strcmp(m, "diloco") != 0)
                rc = cx_err(err, "config averaging.mode is '%.20s', expected sync or diloco (%s)", m, path);
            else
                snprintf(r->mode, sizeof r->mode, "%s", m);
            if (rc == 0 && !strcmp(m, "diloco") && json_object_object_get_ex(av, "inner_steps", &hs))
                r->inner_steps = atol(json_object_get_string(hs));
            if (r->inner_steps < 0) r->inner_steps = 0;
        }
    }
    json_object_put(o);
    json_tokener_free(tok);
    free(text);
    return rc;
}

// ---- metrics.csv ----

static int load_metrics(RepRun *r, char *err) {
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.csv", r->dir);
    char *text, *line;
    Lines L;
    int rc = csv_open(path, 0, NULL, &text, &L, &line, err);
    if (rc != 0) return -1;
    // docs/design.md's 12 columns, or runlog's 13 (with valid_loss)
    size_t h12 = strlen(METRICS_HEADER13) - strlen(",valid_loss");
    int ncols;
    if (strcmp(line, METRICS_HEADER13) == 0) ncols = 13;
    else if (strlen(line) == h12 && strncmp(line, METRICS_HEADER13, h12) == 0) ncols = 12;
    else {
        rc = header_error(err, line, METRICS_HEADER13, path);
        goto done;
    }
    r->has_valid_column = ncols == 13;
    size_t cap = 0;
    double base = 0.0;  // continued clock: end of the previous segments
    for (;;) {
        line = lines_next(&L, &rc, err);
        if (!line) break;
        if (!*line) {
            rc = cx_err(err, "empty line (%s:%d)", path, L.lineno);
            break;
        }
        char *f[METRICS_COLS + 1];
        int nf = split_commas(line, f, METRICS_COLS);
        if (nf != ncols) {
            rc = field_count_error(err, nf, ncols, path, L.lineno);
            break;
        }
        RepMetric m = {.valid_loss = NAN};
        long long step, samples, bs, br, parts;
        static const char *names[] = {"time_s", "step", "samples", "loss", "lr", "samples_per_s",
                                      "tokens_per_s", "compute_s", "comm_s", "bytes_sent",
                                      "bytes_recv", "participants", "valid_loss"};
        double *dv[] = {&m.time_s, NULL, NULL, &m.loss, &m.lr, &m.samples_per_s, &m.tokens_per_s,
                        &m.compute_s, &m.comm_s};
        long long *iv[] = {NULL, &step, &samples, NULL, NULL, NULL, NULL, NULL, NULL, &bs, &br, &parts};
        int bad = -1;
        for (int c = 0; c < 12 && bad < 0; c++) {
            if (c < 9 && dv[c]) {
                if (parse_num(f[c], dv[c], c == 3) != 0 || (c != 3 && *dv[c] < 0)) bad = c;
            } else if (parse_count(f[c], iv[c]) != 0) {
                bad = c;
            }
        }
        if (bad < 0 && ncols == 13 && f[12][0] && parse_num(f[12], &m.valid_loss, 1) != 0) bad = 12;
        if (bad >= 0) {
            rc = bad_value(err, names[bad], f[bad], path, L.lineno);
            break;
        }
        if (step < 1 || step > LONG_MAX / 2 || samples > LONG_MAX / 2 || parts < 1 || parts > 1000000) {
            rc = cx_err(err, "out-of-range step, samples or participants (%s:%d)", path, L.lineno);
            break;
        }
        m.step = (long)step;
        m.samples = (long)samples;
        m.bytes_sent = bs;
        m.bytes_recv = br;
        m.participants = (int)parts;
        const RepMetric *prev = r->n_m ? &r->m[r->n_m - 1] : NULL;
        int new_segment = !prev || m.time_s < prev->time_s;
        if (prev && new_segment) base = prev->t;
        if (!prev) r->n_segments = 1;
        else if (new_segment) r->n_segments++;
        m.t = base + m.time_s;
        if (!new_segment) {
            if (m.step <= prev->step) {
                rc = cx_err(err, "step %ld after step %ld at a later time: steps must increase (%s:%d)",
                            m.step, prev->step, path, L.lineno);
                break;
            }
            if (m.samples < prev->samples) {
                rc = cx_err(err, "samples %ld after %ld: the data cursor went back (%s:%d)", m.samples,
                            prev->samples, path, L.lineno);
                break;
            }
            m.step_samples = m.samples - prev->samples;
        } else if (m.step == 1) {
            m.step_samples = m.samples;
        } else if (prev && prev->step == m.step - 1 && m.samples >= prev->samples) {
            m.step_samples = m.samples - prev->samples;  // resumed from the last step
        } else if (r->global_batch > 0) {
            m.step_samples = r->global_batch;
        } else {
            m.step_samples = lround(m.samples_per_s * (m.compute_s + m.comm_s));
        }
        if ((size_t)r->n_m == cap) {
            cap = cap ? cap * 2 : 256;
            RepMetric *nm = realloc(r->m, cap * sizeof *nm);
            if (!nm) {
                rc = cx_err(err, "out of memory (%s)", path);
                break;
            }
            r->m = nm;
        }
        r->m[r->n_m++] = m;
    }
    if (rc == 0 && r->n_m == 0) rc = cx_err(err, "no step rows after the header (%s:2)", path);
done:
    free(text);
    return rc;
}

// Index of the metrics row of segment seg with this step, or -1.
static int metrics_find(const RepRun *r, int seg, long step) {
    int s = 0;
    for (int i = 0; i < r->n_m; i++) {
        if (i > 0 && r->m[i].time_s < r->m[i - 1].time_s) s++;
        if (s == seg && r->m[i].step == step) return i;
        if (s > seg) break;
    }
    return -1;
}

// Added to a time of metrics segment seg to continue the clock.
static double metrics_base(const RepRun *r, int seg) {
    int s = 0;
    for (int i = 0; i < r->n_m; i++) {
        if (i > 0 && r->m[i].time_s < r->m[i - 1].time_s) s++;
        if (s == seg) return r->m[i].t - r->m[i].time_s;
    }
    return r->m[r->n_m - 1].t;  // a bridge segment without trainer rows: after the end
}

// ---- bridge.csv ----

static int load_bridge(RepRun *r, double **seg_offset, int *n_seg, char *err) {
    *seg_offset = NULL;
    *n_seg = 0;
    char path[1100];
    snprintf(path, sizeof path, "%s/bridge.csv", r->dir);
    char *text, *line;
    Lines L;
    int rc = csv_open(path, 1, BRIDGE_HEADER, &text, &L, &line, err);
    if (rc == -2) return 0;
    if (rc != 0) return -1;
    r->has_bridge = 1;
    char names_buf[] = RUNCOLS_BRIDGE;  // column names for messages
    char *names[BRIDGE_COLS + 1];
    CHECK(split_commas(names_buf, names, BRIDGE_COLS) == BRIDGE_COLS, "RUNCOLS_BRIDGE_N is wrong");
    size_t cap = 0;
    int *seg_of = NULL;  // segment of each row
    for (;;) {
        line = lines_next(&L, &rc, err);
        if (!line) break;
        char *f[BRIDGE_COLS + 1];
        int nf = split_commas(line, f, BRIDGE_COLS);
        if (nf != BRIDGE_COLS) {
            rc = field_count_error(err, nf, BRIDGE_COLS, path, L.lineno);
            break;
        }
        RepRound b = {0};
        long long c[12];
        double d[8];
        int bad = -1;
        if (parse_num(f[0], &b.time_s, 0) != 0 || b.time_s < 0) bad = 0;
        for (int k = 1; k <= 11 && bad < 0; k++)
            if (parse_count(f[k], &c[k]) != 0) bad = k;
        for (int k = 12; k < BRIDGE_COLS && bad < 0; k++)
            if (parse_num(f[k], &d[k - 12], k == 12) != 0 || (k != 12 && d[k - 12] < 0)) bad = k;
        if (bad >= 0) {
            rc = bad_value(err, names[bad], f[bad], path, L.lineno);
            break;
        }
        b.step = (long)c[1];
        b.samples = (long)c[2];
        b.trainer_samples = (long)c[3];
        b.volunteers_assigned = (long)c[4];
        b.volunteer_samples_assigned = c[5];
        b.fresh = c[6];
        b.stale = c[7];
        b.dropped = c[8];
        b.lost = c[9];
        b.participants = (long)c[10];
        b.live_volunteers = (long)c[11];
        b.loss = d[0];
        b.wait_s = d[1];
        b.allreduce_s = d[2];
        b.bytes_sent = d[3];
        b.bytes_recv = d[4];
        b.upload_bytes = d[5];
        b.upload_s = d[6];
        if ((size_t)r->n_b == cap) {
            cap = cap ? cap * 2 : 256;
            RepRound *nb = realloc(r->b, cap * sizeof *nb);
            int *ns = realloc(seg_of, cap * sizeof *ns);
            if (ns) seg_of = ns;
            if (!nb || !ns) {
                if (nb) r->b = nb;
                rc = cx_err(err, "out of memory (%s)", path);
                break;
            }
            r->b = nb;
        }
        int seg = r->n_b == 0 ? 0 : seg_of[r->n_b - 1] + (b.time_s < r->b[r->n_b - 1].time_s);
        seg_of[r->n_b] = seg;
        r->b[r->n_b++] = b;
    }
    if (rc == 0 && r->n_b > 0) {
        // align each bridge segment (one bridge process) to the trainer's clock
        int ns = seg_of[r->n_b - 1] + 1;
        double *off = calloc((size_t)ns, sizeof *off);
        if (!off) {
            rc = cx_err(err, "out of memory (%s)", path);
        } else {
            for (int s = 0; s < ns; s++) {
                int mseg = s < r->n_segments ? s : r->n_segments - 1;
                off[s] = NAN;
                for (int i = 0; i < r->n_b && isnan(off[s]); i++) {
                    if (seg_of[i] != s) continue;
                    int j = metrics_find(r, mseg, r->b[i].step);
                    if (j >= 0) off[s] = r->m[j].t - r->b[i].time_s;
                }
                if (isnan(off[s])) off[s] = metrics_base(r, s);
            }
            for (int i = 0; i < r->n_b; i++) r->b[i].t = r->b[i].time_s + off[seg_of[i]];
            *seg_offset = off;
            *n_seg = ns;
        }
    }
    free(seg_of);
    free(text);
    return rc;
}

// ---- volunteers.csv ----

typedef struct {
    int open;
    double start, last_seen;
} VolState;

static int add_session(RepVolunteer *v, double a, double b) {
    if (b < a) b = a;
    double *s = realloc(v->sess_start, (size_t)(v->n_sessions + 1) * sizeof *s);
    if (!s) return -1;
    v->sess_start = s;
    double *e = realloc(v->sess_end, (size_t)(v->n_sessions + 1) * sizeof *e);
    if (!e) return -1;
    v->sess_end = e;
    v->sess_start[v->n_sessions] = a;
    v->sess_end[v->n_sessions] = b;
    v->n_sessions++;
    v->connected_s += b - a;
    return 0;
}

// Parses "fresh=.. stale=.. dropped=.. lost=.. bytes_in=.. bytes_out=.." for the bytes.
static int parse_summary(const char *detail, double *in, double *out) {
    int have = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", detail);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) return -1;
        *eq = 0;
        double x;
        if (parse_num(eq + 1, &x, 0) != 0 || x < 0) return -1;
        if (!strcmp(tok, "bytes_in")) *in = x, have |= 1;
        else if (!strcmp(tok, "bytes_out")) *out = x, have |= 2;
    }
    return have == 3 ? 0 : -1;
}

// "a ""b"", c" -> a "b", c (a field quoted the RFC 4180 way); other text is left as it is.
static void unquote(char *f) {
    size_t n = strlen(f);
    if (n < 2 || f[0] != '"' || f[n - 1] != '"') return;
    char *o = f;
    for (size_t i = 1; i + 1 < n; i++) {
        if (f[i] == '"' && f[i + 1] == '"') i++;
        *o++ = f[i];
    }
    *o = 0;
}

// Splits a volunteers.csv row. The bridge writes name and token name unquoted (they may
// hold commas) and the detail in quotes, so: time, step, identity from the left; then the
// leftmost ",EVENT,SAMPLES,\"" (EVENT of [a-z-]); name and token name split at the last
// comma before it.
static int split_volunteer_row(char *line, char **f) {
    char *p = line;
    for (int k = 0; k < 3; k++) {
        f[k] = p;
        p = strchr(p, ',');
        if (!p) return -1;
        *p++ = 0;
    }
    size_t n = strlen(p);
    if (n < 2 || p[n - 1] != '"') return -1;
    for (char *c = p; (c = strchr(c, ',')) != NULL; c++) {
        char *e = c + 1, *q = e;
        while ((*q >= 'a' && *q <= 'z') || *q == '-') q++;
        if (q == e || *q != ',') continue;
        char *d = q + 1, *s = d;
        while (*s >= '0' && *s <= '9') s++;
        if (s == d || s[0] != ',' || s[1] != '"' || s + 1 == p + n - 1) continue;
        // name,token_name is p .. c
        *c = 0;
        char *comma = strrchr(p, ',');
        if (!comma) {
            *c = ',';
            continue;
        }
        *comma = 0;
        f[3] = p;
        f[4] = comma + 1;
        *q = 0;
        f[5] = e;
        *s = 0;
        f[6] = d;
        p[n - 1] = 0;
        f[7] = s + 2;
        // the detail: a '"' inside only as '""' (RFC 4180); a lone one is a damaged row
        char *o = f[7];
        for (char *i = f[7]; *i; i++) {
            if (*i == '"' && *++i != '"') return -1;
            *o++ = *i;
        }
        *o = 0;
        unquote(f[3]);
        unquote(f[4]);
        return 0;
    }
    return -1;
}

static int load_volunteers(RepRun *r, const double *boff, int n_boff, char *err) {
    char path[1100];
    snprintf(path, sizeof path, "%s/volunteers.csv", r->dir);
    char *text, *line;
    Lines L;
    int rc = csv_open(path, 1, VOLUNTEERS_HEADER, &text, &L, &line, err);
    if (rc == -2) return 0;
    if (rc != 0) return -1;
    r->has_volunteers = 1;
    VolState *st = NULL;
    int seg = 0, after_summary = 0;
    double prev_time = -1.0;
    double off = n_boff > 0 ? boff[0] : metrics_base(r, 0);
    // closes every open session at its last sign of life (end of a bridge process)
#define CLOSE_ALL()                                                                       \
    for (int i_ = 0; i_ < r->n_v; i_++)                                                   \
        if (st[i_].open) {                                                                \
            st[i_].open = 0;                                                              \
            if (add_session(&r->v[i_], st[i_].start, st[i_].last_seen) != 0) goto oom;    \
        }
    for (;;) {
        line = lines_next(&L, &rc, err);
        if (!line) break;
        char *f[8];
        if (split_volunteer_row(line, f) != 0) {
            rc = cx_err(err, "malformed row: expected time_s,step,identity,name,token_name,event,samples,\"detail\" (%s:%d)",
                        path, L.lineno);
            break;
        }
        double t;
        long long step, samples;
        if (parse_num(f[0], &t, 0) != 0 || t < 0) {
            rc = bad_field(err, "time_s value", f[0], path, L.lineno);
            break;
        }
        if (parse_count(f[1], &step) != 0) {
            rc = bad_field(err, "step value", f[1], path, L.lineno);
            break;
        }
        if (strlen(f[2]) != 32 || strspn(f[2], "0123456789abcdef") != 32) {
            rc = bad_field(err, "identity (32 hex digits)", f[2], path, L.lineno);
            break;
        }
        if (parse_count(f[6], &samples) != 0) {
            rc = bad_field(err, "samples value", f[6], path, L.lineno);
            break;
        }
        const char *ev = f[5];
        static const char *events[] = {"joined", "live", "accepted", "accepted-stale", "dropped-stale", "late",
                                       "lost", "kicked", "left", "unfinished", "summary", "disconnected",
                                       "rejected-norm", "rejected-tokens", "clipped", "down-weighted"};
        int known = 0;
        for (size_t k = 0; k < sizeof events / sizeof *events; k++) known |= !strcmp(ev, events[k]);
        if (!known) {
            rc = bad_field(err, "event", ev, path, L.lineno);
            break;
        }
        int is_summary = !strcmp(ev, "summary");
        // a new bridge process: its clock starts again, or rows follow the summary rows
        if ((prev_time >= 0 && t < prev_time) || (after_summary && !is_summary)) {
            CLOSE_ALL();
            seg++;
            off = seg < n_boff ? boff[seg] : metrics_base(r, seg);
        }
        prev_time = t;
        after_summary = is_summary;
        double at = t + off;
        int vi = -1;
        for (int i = 0; i < r->n_v; i++)
            if (!strcmp(r->v[i].identity, f[2])) vi = i;
        if (vi < 0) {
            RepVolunteer *nv = realloc(r->v, (size_t)(r->n_v + 1) * sizeof *nv);
            if (!nv) goto oom;
            r->v = nv;
            VolState *ns = realloc(st, (size_t)(r->n_v + 1) * sizeof *ns);
            if (!ns) goto oom;
            st = ns;
            vi = r->n_v++;
            memset(&r->v[vi], 0, sizeof r->v[vi]);
            memset(&st[vi], 0, sizeof st[vi]);
            snprintf(r->v[vi].identity, sizeof r->v[vi].identity, "%s", f[2]);
        }
        RepVolunteer *v = &r->v[vi];
        VolState *s = &st[vi];
        snprintf(v->name, sizeof v->name, "%s", f[3]);
        snprintf(v->token_name, sizeof v->token_name, "%s", f[4]);
        if (!strcmp(ev, "joined")) {
            if (s->open && add_session(v, s->start, s->last_seen) != 0) goto oom;
            s->open = 1;
            s->start = s->last_seen = at;
        } else if (!strcmp(ev, "left") || !strcmp(ev, "kicked") || !strcmp(ev, "lost") ||
                   !strcmp(ev, "unfinished") || !strcmp(ev, "disconnected")) {
            if (!strcmp(ev, "lost")) v->lost += samples;
            if (s->open) {
                s->open = 0;
                if (add_session(v, s->start, at) != 0) goto oom;
            }
        } else if (!strcmp(ev, "accepted") || !strcmp(ev, "accepted-stale") ||
                   !strcmp(ev, "dropped-stale") || !strcmp(ev, "rejected-norm") ||
                   !strcmp(ev, "rejected-tokens") || !strcmp(ev, "late") || !strcmp(ev, "live") ||
                   !strcmp(ev, "clipped") || !strcmp(ev, "down-weighted")) {
            if (!strcmp(ev, "accepted")) v->accepted += samples;
            else if (!strcmp(ev, "accepted-stale")) v->accepted_stale += samples;
            else if (!strcmp(ev, "dropped-stale") || !strcmp(ev, "rejected-norm") ||
                     !strcmp(ev, "rejected-tokens"))
                v->dropped += samples;
            else if (!strcmp(ev, "late")) v->late_events++;
            if (s->open && at > s->last_seen) s->last_seen = at;
        } else if (is_summary) {
            double in = 0, out = 0;
            if (parse_summary(f[7], &in, &out) != 0) {
                rc = bad_field(err, "summary detail (no bytes_in=N bytes_out=N)", f[7], path, L.lineno);
                break;
            }
            v->have_summary = 1;
            v->bytes_sent += in;  // the bridge received it: the volunteer's upload
            v->bytes_recv += out;
        }
    }
    if (rc == 0) {
        CLOSE_ALL();
    }
    goto done;
oom:
    rc = cx_err(err, "out of memory (%s)", path);
done:
#undef CLOSE_ALL
    free(st);
    free(text);
    return rc;
}

#define SIM_SUFFIX " (simulated)"

int report_load_run(const char *dir, RepRun *r, char *err) {
    memset(r, 0, sizeof *r);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n >= sizeof r->dir) return cx_err(err, "path too long: %s", dir);
    memcpy(r->dir, dir, n);
    r->dir[n] = 0;
    const char *base = strrchr(r->dir, '/');
    const char *nm = base && base[1] ? base + 1 : r->dir;
    if (strlen(nm) >= sizeof r->name) return cx_err(err, "run directory name too long: %s", r->dir);
    memcpy(r->name, nm, strlen(nm) + 1);
    struct stat sb;
    if (stat(r->dir, &sb) != 0) return cx_err(err, "cannot open run directory %s: %s", r->dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return cx_err(err, "%s is not a directory", r->dir);
    if (load_run_json(r, err) != 0 || load_metrics(r, err) != 0) return -1;
    if (r->simulated) {  // marked wherever the run's name shows
        size_t len = strlen(r->name);
        if (len + sizeof SIM_SUFFIX > sizeof r->name) return cx_err(err, "run directory name too long: %s", r->dir);
        memcpy(r->name + len, SIM_SUFFIX, sizeof SIM_SUFFIX);
    }
    double *off = NULL;
    int n_off = 0;
    int rc = load_bridge(r, &off, &n_off, err);
    if (rc == 0) rc = load_volunteers(r, off, n_off, err);
    free(off);
    return rc;
}

void report_run_free(RepRun *r) {
    free(r->m);
    free(r->b);
    for (int i = 0; i < r->n_v; i++) {
        free(r->v[i].sess_start);
        free(r->v[i].sess_end);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

// ---- prices ----

typedef struct {
    RepPrices *p;
    char err[CX_ERRLEN];
} PriceCtx;

static int price_handler(void *user, const char *section, const char *name, const char *value) {
    PriceCtx *c = user;
    RepPrices *p = c->p;
    double x = 0;
    int is_price = strcmp(section, "runs") != 0;
    if (is_price && (parse_num(value, &x, 0) != 0 || x < 0)) {
        snprintf(c->err, sizeof c->err, "bad price '%.60s' for %.60s (a non-negative number of $ per hour)",
                 value, name);
        return 0;
    }
    if (!strcmp(section, "prices")) {
        if (!strcmp(name, "volunteer")) {
            p->volunteer_default = x;
            return 1;
        }
        if (p->n_types == 32 || strlen(name) >= sizeof p->type[0]) {
            snprintf(c->err, sizeof c->err, "too many node types or too long a name");
            return 0;
        }
        snprintf(p->type[p->n_types], sizeof p->type[0], "%s", name);
        p->type_price[p->n_types++] = x;
    } else if (!strcmp(section, "runs")) {
        if (p->n_runs == 64 || strlen(name) >= sizeof p->run[0] || strlen(value) >= sizeof p->run_type[0]) {
            snprintf(c->err, sizeof c->err, "too many runs or too long a name");
            return 0;
        }
        snprintf(p->run[p->n_runs], sizeof p->run[0], "%s", name);
        snprintf(p->run_type[p->n_runs++], sizeof p->run_type[0], "%s", value);
    } else if (!strcmp(section, "volunteers")) {
        if (p->n_vols == 256 || strlen(name) >= sizeof p->vol[0]) {
            snprintf(c->err, sizeof c->err, "too many volunteers or too long a name");
            return 0;
        }
        snprintf(p->vol[p->n_vols], sizeof p->vol[0], "%s", name);
        p->vol_price[p->n_vols++] = x;
    } else {
        snprintf(c->err, sizeof c->err, "unknown section [%.60s] (expected [prices], [runs], [volunteers])",
                 section);
        return 0;
    }
    return 1;
}

int report_load_prices(const char *path, RepPrices *p, char *err) {
    memset(p, 0, sizeof *p);
    snprintf(p->path, sizeof p->path, "%s", path);
    PriceCtx c = {.p = p};
    FILE *f = fopen(path, "r");
    if (!f) return cx_err(err, "cannot open prices file %s: %s", path, strerror(errno));
    int line = ini_parse_file(f, price_handler, &c);
    fclose(f);
    if (line > 0) return cx_err(err, "%s (%s:%d)", c.err[0] ? c.err : "malformed INI line", path, line);
    if (line < 0) return cx_err(err, "cannot read prices file %s", path);
    for (int i = 0; i < p->n_runs; i++) {
        int found = 0;
        for (int k = 0; k < p->n_types; k++) found |= !strcmp(p->type[k], p->run_type[i]);
        if (!found)
            return cx_err(err, "run '%s' has node type '%s', which [prices] does not price (%s)", p->run[i],
                          p->run_type[i], path);
    }
    return 0;
}

static const char *node_type(const RepPrices *p, const RepRun *r) {
    for (int i = 0; i < p->n_runs; i++)
        if (!strcmp(p->run[i], r->name) || !strcmp(p->run[i], r->dir) ||
            (r->simulated && strlen(p->run[i]) + strlen(SIM_SUFFIX) == strlen(r->name) &&
             !strncmp(p->run[i], r->name, strlen(p->run[i]))))
            return p->run_type[i];
    return "node";
}

static int node_price(const RepPrices *p, const RepRun *r, double *price) {
    const char *t = node_type(p, r);
    for (int k = 0; k < p->n_types; k++)
        if (!strcmp(p->type[k], t)) {
            *price = p->type_price[k];
            return 0;
        }
    return -1;
}

static double volunteer_price(const RepPrices *p, const RepVolunteer *v) {
    for (int i = 0; i < p->n_vols; i++) if (!strcmp(p->vol[i], v->name)) return p->vol_price[i];
    for (int i = 0; i < p->n_vols; i++) if (!strcmp(p->vol[i], v->token_name)) return p->vol_price[i];
    for (int i = 0; i < p->n_vols; i++) {
        size_t n = strlen(p->vol[i]);
        if (n >= 8 && n <= 32 && !strncmp(p->vol[i], v->identity, n)) return p->vol_price[i];
    }
    return p->volunteer_default;
}

// ---- analysis ----

int report_analyze(const RepRun *r, double target, const RepPrices *prices, RepStats *s, char *err) {
    memset(s, 0, sizeof *s);
    const RepMetric *last = &r->m[r->n_m - 1];
    s->wall_s = last->t;
    s->steps = last->step;
    s->samples = last->samples;
    s->final_loss = last->loss;
    s->final_valid = s->best_valid = NAN;
    s->time_to_target = s->samples_to_target = NAN;
    double comp = 0, comm = 0, bs = 0, br = 0;
    const RepMetric *pv = NULL;  // the previous validation row
    for (int i = 0; i < r->n_m; i++) {
        const RepMetric *m = &r->m[i];
        s->samples_processed += (double)m->step_samples;
        if (i == 0 || m->participants < s->participants_min) s->participants_min = m->participants;
        if (m->participants > s->participants_max) s->participants_max = m->participants;
        s->participants_mean += (double)m->participants / r->n_m;
        comp += m->compute_s;
        comm += m->comm_s;
        bs += (double)m->bytes_sent;
        br += (double)m->bytes_recv;
        if (isnan(m->valid_loss)) continue;
        s->n_valid++;
        s->final_valid = m->valid_loss;
        if (isnan(s->best_valid) || m->valid_loss < s->best_valid) {
            s->best_valid = m->valid_loss;
            s->best_valid_step = m->step;
        }
        if (!isnan(target) && !s->reached && m->valid_loss <= target) {
            s->reached = 1;
            s->step_at_target = m->step;
            if (pv && pv->valid_loss > target) {
                // linear between the last validation above the target and this one
                double a = (pv->valid_loss - target) / (pv->valid_loss - m->valid_loss);
                s->time_to_target = pv->t + a * (m->t - pv->t);
                s->samples_to_target = (double)pv->samples + a * (double)(m->samples - pv->samples);
            } else {
                s->time_to_target = m->t;
                s->samples_to_target = (double)m->samples;
            }
        }
        pv = m;
    }
    s->samples_per_s = s->wall_s > 0 ? s->samples_processed / s->wall_s : NAN;
    s->compute_util = comp + comm > 0 ? comp / (comp + comm) : NAN;
    s->trainer_bytes_sent = bs;
    s->trainer_bytes_recv = br;
    s->trainer_samples = s->samples_processed;
    s->bridge_bytes_sent = s->bridge_bytes_recv = NAN;
    if (r->has_bridge) {
        double ts = 0;
        s->bridge_bytes_sent = s->bridge_bytes_recv = 0;
        for (int i = 0; i < r->n_b; i++) {
            ts += (double)r->b[i].trainer_samples;
            s->bridge_bytes_sent += r->b[i].bytes_sent;
            s->bridge_bytes_recv += r->b[i].bytes_recv;
        }
        if (r->n_b > 0) s->trainer_samples = ts;
    }
    for (int i = 0; i < r->n_v; i++) {
        s->volunteer_samples += (double)(r->v[i].accepted + r->v[i].accepted_stale);
        s->volunteer_hours += r->v[i].connected_s / 3600.0;
        s->volunteer_bytes_sent += r->v[i].have_summary ? r->v[i].bytes_sent : NAN;
        s->volunteer_bytes_recv += r->v[i].have_summary ? r->v[i].bytes_recv : NAN;
    }
    double wall_h = s->wall_s / 3600.0;
    s->participant_hours = r->ranks * wall_h + s->volunteer_hours;

    double nprice = NAN;
    s->cost = s->cost_to_target = NAN;
    if (prices) {
        if (node_price(prices, r, &nprice) != 0)
            return cx_err(err, "no price for node type '%s' of run '%s' (%s)", node_type(prices, r), r->name,
                          prices->path);
        s->cost = r->nodes * wall_h * nprice;
        if (s->reached) s->cost_to_target = r->nodes * (s->time_to_target / 3600.0) * nprice;
        for (int i = 0; i < r->n_v; i++) {
            const RepVolunteer *v = &r->v[i];
            double vp = volunteer_price(prices, v);
            s->cost += v->connected_s / 3600.0 * vp;
            if (s->reached) {
                double upto = 0;
                for (int k = 0; k < v->n_sessions; k++) {
                    double a = fmax(v->sess_start[k], 0.0), b = fmin(v->sess_end[k], s->time_to_target);
                    if (b > a) upto += b - a;
                }
                s->cost_to_target += upto / 3600.0 * vp;
            }
        }
    }

    // participants: trainer ranks (one row each up to 16, else one row "each"), volunteers, the bridge
    int per_rank = r->ranks <= 16;
    int nt = per_rank ? r->ranks : 1;
    s->parts = calloc((size_t)(nt + r->n_v + 1), sizeof *s->parts);
    if (!s->parts) return cx_err(err, "out of memory");
    for (int k = 0; k < nt; k++) {
        RepParticipant *p = &s->parts[s->n_parts++];
        p->kind = "trainer";
        if (per_rank) snprintf(p->name, sizeof p->name, "rank %d", k);
        else snprintf(p->name, sizeof p->name, "ranks 0-%d (each)", r->ranks - 1);
        p->hours = wall_h;
        // a tensor-parallel replica's ranks compute the same samples together
        p->samples = s->trainer_samples / (r->ranks / (r->tp_rows * r->tp_cols));
        p->bytes_sent = bs;
        p->bytes_recv = br;
        p->cost = prices ? r->nodes * wall_h * nprice / r->ranks : NAN;
    }
    for (int i = 0; i < r->n_v; i++) {
        const RepVolunteer *v = &r->v[i];
        RepParticipant *p = &s->parts[s->n_parts++];
        p->kind = "volunteer";
        snprintf(p->name, sizeof p->name, "%s", v->name[0] ? v->name : v->identity);
        p->hours = v->connected_s / 3600.0;
        p->samples = (double)(v->accepted + v->accepted_stale);
        p->bytes_sent = v->have_summary ? v->bytes_sent : NAN;
        p->bytes_recv = v->have_summary ? v->bytes_recv : NAN;
        p->cost = prices ? p->hours * volunteer_price(prices, v) : NAN;
    }
    if (r->has_bridge) {
        RepParticipant *p = &s->parts[s->n_parts++];
        p->kind = "bridge";
        snprintf(p->name, sizeof p->name, "bridge (WAN)");
        p->hours = NAN;
        p->samples = NAN;
        p->bytes_sent = s->bridge_bytes_sent;
        p->bytes_recv = s->bridge_bytes_recv;
        p->cost = NAN;
    }
    // traffic per participant and per sample: trainer ranks (each as rank 0) and
    // volunteers, not the bridge (it relays)
    s->trained_samples = s->trainer_samples + s->volunteer_samples;
    double tb = 0;
    int np = 0;
    for (int k = 0; k < s->n_parts; k++) {
        const RepParticipant *p = &s->parts[k];
        if (!strcmp(p->kind, "bridge")) continue;
        int n_of = !strcmp(p->kind, "trainer") && !per_rank ? r->ranks : 1;  // a row for every rank
        tb += n_of * (p->bytes_sent + p->bytes_recv);
        np += n_of;
    }
    s->bytes_per_participant = np > 0 ? tb / np : NAN;
    s->wan_bytes_per_sample = r->has_bridge && s->trained_samples > 0
                                  ? (s->bridge_bytes_sent + s->bridge_bytes_recv) / s->trained_samples
                                  : NAN;
    return 0;
}

void report_stats_free(RepStats *s) {
    free(s->parts);
    memset(s, 0, sizeof *s);
}

// ---- formatting ----

static const char *fmt_dur(char *b, size_t cap, double s) {
    if (isnan(s)) snprintf(b, cap, "n/a");
    else if (s < 120) snprintf(b, cap, "%.2f s", s);
    else if (s < 7200) snprintf(b, cap, "%.1f min", s / 60);
    else snprintf(b, cap, "%.2f h", s / 3600);
    return b;
}

static const char *fmt_bytes(char *b, size_t cap, double x) {
    if (isnan(x)) snprintf(b, cap, "n/a");
    else if (x < 1e3) snprintf(b, cap, "%.0f B", x);
    else if (x < 1e6) snprintf(b, cap, "%.1f kB", x / 1e3);
    else if (x < 1e9) snprintf(b, cap, "%.1f MB", x / 1e6);
    else snprintf(b, cap, "%.2f GB", x / 1e9);
    return b;
}

static const char *fmt_cost(char *b, size_t cap, double x) {
    if (isnan(x)) snprintf(b, cap, "n/a");
    else if (x < 1) snprintf(b, cap, "$%.4f", x);
    else snprintf(b, cap, "$%.2f", x);
    return b;
}

static const char *fmt_ratio(char *b, size_t cap, double x) {
    if (isnan(x) || isinf(x)) snprintf(b, cap, "n/a");
    else snprintf(b, cap, "%.2fx", x);
    return b;
}

// x with the given number of decimals; NaN is "n/a".
static const char *fmt_fixed(char *b, size_t cap, int decimals, double x) {
    if (isnan(x)) snprintf(b, cap, "n/a");
    else snprintf(b, cap, "%.*f", decimals, x);
    return b;
}

static double ratio(double a, double b) { return isnan(a) || isnan(b) || b == 0 ? NAN : a / b; }

// A table rendered as aligned text or as a markdown table: cells row by row.
typedef struct {
    int nc, n, cap;
    char **cell;
    const char *align;  // 'l' or 'r' per column
} Table;

static void tab_init(Table *t, int nc, const char *align) { *t = (Table){.nc = nc, .align = align}; }

static void tab_cell(Table *t, const char *s) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        char **c = realloc(t->cell, (size_t)t->cap * sizeof *c);
        CHECK(c, "out of memory for a table");
        t->cell = c;
    }
    t->cell[t->n] = strdup(s);
    CHECK(t->cell[t->n], "out of memory for a table");
    t->n++;
}

__attribute__((format(printf, 2, 3))) static void tab_cellf(Table *t, const char *fmt, ...) {
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    tab_cell(t, b);
}

static void tab_free(Table *t) {
    for (int i = 0; i < t->n; i++) free(t->cell[i]);
    free(t->cell);
}

// Display width: UTF-8 code points.
static int u8width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void put_md(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

// The first row is the header.
static void tab_print(FILE *f, const Table *t, RepFormat fmt) {
    int nr = t->n / t->nc;
    if (fmt == REP_MARKDOWN) {
        for (int r = 0; r < nr; r++) {
            for (int c = 0; c < t->nc; c++) {
                fputs("| ", f);
                put_md(f, t->cell[r * t->nc + c]);
                fputc(' ', f);
            }
            fputs("|\n", f);
            if (r == 0) {
                for (int c = 0; c < t->nc; c++) fputs(t->align[c] == 'r' ? "|---:" : "|---", f);
                fputs("|\n", f);
            }
        }
        fputc('\n', f);
        return;
    }
    int w[32] = {0};
    for (int i = 0; i < t->n; i++) {
        int c = i % t->nc, x = u8width(t->cell[i]);
        if (x > w[c]) w[c] = x;
    }
    for (int r = 0; r < nr; r++) {
        fputs("  ", f);
        for (int c = 0; c < t->nc; c++) {
            const char *s = t->cell[r * t->nc + c];
            int pad = w[c] - u8width(s), last = c == t->nc - 1;
            if (t->align[c] == 'r') fprintf(f, "%*s%s", pad, "", s);
            else fprintf(f, "%s%*s", s, last ? 0 : pad, "");
            if (!last) fputs("  ", f);
        }
        fputc('\n', f);
        if (r == 0) {
            fputs("  ", f);
            for (int c = 0; c < t->nc; c++) {
                for (int k = 0; k < w[c]; k++) fputc('-', f);
                if (c < t->nc - 1) fputs("  ", f);
            }
            fputc('\n', f);
        }
    }
    fputc('\n', f);
}

static void heading(FILE *f, RepFormat fmt, int level, const char *title) {
    if (fmt == REP_MARKDOWN) {
        for (int i = 0; i < level; i++) fputc('#', f);
        fprintf(f, " %s\n\n", title);
    } else {
        fprintf(f, "%s\n", title);
        if (level < 3) {
            for (int i = u8width(title); i > 0; i--) fputc(level == 1 ? '=' : '-', f);
            fputc('\n', f);
        }
        fputc('\n', f);
    }
}

static const char INTERP_RULE[] =
    "Time to target: the first validation at or below the target, interpolated linearly "
    "(in time and in samples) from the last validation above it; a first validation "
    "already below counts at its own time";

// "sync" or "diloco, H=N": how the run averaged.
static void mode_desc(const RepRun *r, char *b, size_t cap) {
    if (!strcmp(r->mode, "diloco") && r->inner_steps > 0) snprintf(b, cap, "diloco, H=%ld", r->inner_steps);
    else snprintf(b, cap, "%s", r->mode);
}

static void write_run_doc(FILE *f, RepFormat fmt, const RepRun *r, const RepStats *s, double target,
                          const RepPrices *prices) {
    char t1[64], t2[64], t3[64], title[400];
    snprintf(title, sizeof title, "Run %s", r->name);
    heading(f, fmt, 2, title);
    fprintf(f, "%s%s%s: %s %s, %d trainer rank%s on %d node%s (%s), host %s, started %s%s\n\n",
            fmt == REP_MARKDOWN ? "`" : "", r->dir, fmt == REP_MARKDOWN ? "`" : "",
            r->tool[0] ? r->tool : "?", r->version, r->ranks, r->ranks == 1 ? "" : "s", r->nodes,
            r->nodes == 1 ? "" : "s", r->launcher[0] ? r->launcher : "?", r->host[0] ? r->host : "?",
            r->started[0] ? r->started : "?", r->resumed ? " (resumed)" : "");
    if (r->tp_rows * r->tp_cols > 1)
        fprintf(f, "Tensor-parallel: %d replica%s of a %d x %d grid.\n\n", r->ranks / (r->tp_rows * r->tp_cols),
                r->ranks / (r->tp_rows * r->tp_cols) == 1 ? "" : "s", r->tp_rows, r->tp_cols);
    Table t;
    tab_init(&t, 2, "ll");
    tab_cell(&t, "metric");
    tab_cell(&t, "value");
    tab_cell(&t, "kind");
    char mode[64];
    mode_desc(r, mode, sizeof mode);
    const char *sim = r->simulated ? "simulated (conflux-sim), " : "";
    if (r->has_bridge || r->has_volunteers)
        tab_cellf(&t, "%scollaborative: %d trainer rank%s + bridge, %d volunteer%s; %s", sim, r->ranks,
                  r->ranks == 1 ? "" : "s", r->n_v, r->n_v == 1 ? "" : "s", mode);
    else
        tab_cellf(&t, "%sMPI only: %d trainer rank%s; %s", sim, r->ranks, r->ranks == 1 ? "" : "s", mode);
    tab_cell(&t, "steps / samples");
    tab_cellf(&t, "%ld / %ld", s->steps, s->samples);
    tab_cell(&t, "wall time");
    if (r->n_segments > 1)
        tab_cellf(&t, "%s (%d segments: resumed; restarts not counted)", fmt_dur(t1, sizeof t1, s->wall_s),
                  r->n_segments);
    else
        tab_cell(&t, fmt_dur(t1, sizeof t1, s->wall_s));
    if (!isnan(target)) {
        tab_cellf(&t, "time to valid loss %g", target);
        if (s->reached)
            tab_cellf(&t, "%s (%.0f samples; first at or below at step %ld)", fmt_dur(t1, sizeof t1, s->time_to_target),
                      s->samples_to_target, s->step_at_target);
        else if (s->n_valid == 0)
            tab_cell(&t, "not reached (no validation rows)");
        else
            tab_cellf(&t, "not reached (best %.4f at step %ld)", s->best_valid, s->best_valid_step);
    }
    tab_cell(&t, "samples/s");
    tab_cell(&t, fmt_fixed(t1, sizeof t1, 1, s->samples_per_s));
    tab_cell(&t, "participants per step: min / mean / max");
    tab_cellf(&t, "%d / %.2f / %d", s->participants_min, s->participants_mean, s->participants_max);
    tab_cell(&t, "compute utilization");
    if (isnan(s->compute_util)) tab_cell(&t, "n/a");
    else tab_cellf(&t, "%.1f %%", 100 * s->compute_util);
    tab_cell(&t, "loss: final train / final valid / best valid");
    if (s->n_valid)
        tab_cellf(&t, "%.4f / %.4f / %.4f (step %ld)", s->final_loss, s->final_valid, s->best_valid,
                  s->best_valid_step);
    else
        tab_cellf(&t, "%.4f / n/a / n/a", s->final_loss);
    tab_cell(&t, "traffic per trainer rank: sent / received");
    tab_cellf(&t, "%s / %s", fmt_bytes(t1, sizeof t1, s->trainer_bytes_sent),
              fmt_bytes(t2, sizeof t2, s->trainer_bytes_recv));
    if (r->has_volunteers) {
        tab_cell(&t, "traffic of all volunteers: sent / received");
        tab_cellf(&t, "%s / %s", fmt_bytes(t1, sizeof t1, s->volunteer_bytes_sent),
                  fmt_bytes(t2, sizeof t2, s->volunteer_bytes_recv));
    }
    if (r->has_bridge) {
        tab_cell(&t, "bridge WAN traffic: sent / received");
        tab_cellf(&t, "%s / %s", fmt_bytes(t1, sizeof t1, s->bridge_bytes_sent),
                  fmt_bytes(t2, sizeof t2, s->bridge_bytes_recv));
    }
    tab_cell(&t, "traffic per participant (sent + received, mean of ranks and volunteers)");
    tab_cell(&t, fmt_bytes(t1, sizeof t1, s->bytes_per_participant));
    if (r->has_bridge) {
        tab_cell(&t, "bridge WAN bytes (in + out) per trained sample");
        tab_cellf(&t, "%s (%.0f samples)", fmt_bytes(t1, sizeof t1, s->wan_bytes_per_sample), s->trained_samples);
    }
    tab_cell(&t, "accepted samples: trainers / volunteers");
    tab_cellf(&t, "%.0f / %.0f", s->trainer_samples, s->volunteer_samples);
    tab_cell(&t, "participant-hours");
    tab_cellf(&t, "%.4g (%d rank%s x %.4g h + volunteers %.4g h)", s->participant_hours, r->ranks,
              r->ranks == 1 ? "" : "s", s->wall_s / 3600, s->volunteer_hours);
    if (prices) {
        double np = 0;
        node_price(prices, r, &np);
        tab_cell(&t, "cost");
        tab_cellf(&t, "%s (%d node%s of type '%s' at $%g/h%s)", fmt_cost(t1, sizeof t1, s->cost), r->nodes,
                  r->nodes == 1 ? "" : "s", node_type(prices, r), np, r->n_v ? ", volunteers at their prices" : "");
        if (!isnan(target)) {
            tab_cell(&t, "cost to target");
            tab_cell(&t, s->reached ? fmt_cost(t1, sizeof t1, s->cost_to_target) : "not reached");
        }
    }
    tab_print(f, &t, fmt);
    tab_free(&t);

    snprintf(title, sizeof title, "Participants of %s", r->name);
    heading(f, fmt, 3, title);
    int nc = prices ? 7 : 6;
    tab_init(&t, nc, "llrrrrr");
    const char *hdr[] = {"participant", "kind", "connected", "samples", "sent", "received", "cost"};
    for (int c = 0; c < nc; c++) tab_cell(&t, hdr[c]);
    for (int i = 0; i < s->n_parts; i++) {
        const RepParticipant *p = &s->parts[i];
        tab_cell(&t, p->name);
        tab_cell(&t, p->kind);
        tab_cell(&t, isnan(p->hours) ? "-" : fmt_dur(t1, sizeof t1, p->hours * 3600));
        tab_cell(&t, isnan(p->samples) ? "-" : fmt_fixed(t2, sizeof t2, 0, p->samples));
        tab_cell(&t, fmt_bytes(t3, sizeof t3, p->bytes_sent));
        tab_cell(&t, fmt_bytes(t1, sizeof t1, p->bytes_recv));
        if (prices) tab_cell(&t, isnan(p->cost) ? "-" : fmt_cost(t2, sizeof t2, p->cost));
    }
    tab_print(f, &t, fmt);
    tab_free(&t);
}

static void write_doc(FILE *f, RepFormat fmt, const RepRun *runs, const RepStats *st, int n, int base,
                      double target, const RepPrices *prices) {
    heading(f, fmt, 1, "conflux run report");
    const char *q = fmt == REP_MARKDOWN ? "`" : "'";
    fprintf(f, "%d run%s; baseline %s%s%s", n, n == 1 ? "" : "s", q, runs[base].name, q);
    if (!isnan(target)) fprintf(f, "; target validation loss %g", target);
    if (prices) fprintf(f, "; prices from %s%s%s", q, prices->path, q);
    fputs(".\n", f);
    if (!isnan(target)) fprintf(f, "%s.\n", INTERP_RULE);
    fputc('\n', f);
    for (int i = 0; i < n; i++) write_run_doc(f, fmt, &runs[i], &st[i], target, prices);

    char title[400], t1[64], t2[64];
    snprintf(title, sizeof title, "Comparison (baseline: %s)", runs[base].name);
    heading(f, fmt, 2, title);
    fputs("Ratios are run / baseline: below 1 is faster to the target or cheaper, above 1 is more "
          "throughput.\n\n", f);
    Table t;
    int has_t = !isnan(target), has_c = prices != NULL;
    int nc = 8 + 2 * has_t + 2 * has_c + 2 * (has_t && has_c);
    tab_init(&t, nc, "llrrrrrrrrrrrrr");
    tab_cell(&t, "run");
    tab_cell(&t, "mode");
    if (has_t) {
        tab_cell(&t, "time to target");
        tab_cell(&t, "x baseline");
    }
    tab_cell(&t, "samples/s");
    tab_cell(&t, "x baseline");
    tab_cell(&t, "compute util.");
    tab_cell(&t, "bytes/participant");
    tab_cell(&t, "WAN bytes/sample");
    tab_cell(&t, "participant-hours");
    if (has_c) {
        tab_cell(&t, "cost");
        tab_cell(&t, "x baseline");
    }
    if (has_t && has_c) {
        tab_cell(&t, "cost to target");
        tab_cell(&t, "x baseline");
    }
    const RepStats *b = &st[base];
    for (int i = 0; i < n; i++) {
        const RepStats *s = &st[i];
        tab_cell(&t, runs[i].name);
        char mode[64];
        mode_desc(&runs[i], mode, sizeof mode);
        tab_cell(&t, mode);
        if (has_t) {
            tab_cell(&t, s->reached ? fmt_dur(t1, sizeof t1, s->time_to_target) : "not reached");
            tab_cell(&t, fmt_ratio(t2, sizeof t2, ratio(s->time_to_target, b->time_to_target)));
        }
        tab_cell(&t, fmt_fixed(t1, sizeof t1, 1, s->samples_per_s));
        tab_cell(&t, fmt_ratio(t2, sizeof t2, ratio(s->samples_per_s, b->samples_per_s)));
        if (isnan(s->compute_util)) tab_cell(&t, "n/a");
        else tab_cellf(&t, "%.1f %%", 100 * s->compute_util);
        tab_cell(&t, fmt_bytes(t1, sizeof t1, s->bytes_per_participant));
        tab_cell(&t, isnan(s->wan_bytes_per_sample) ? "-" : fmt_bytes(t2, sizeof t2, s->wan_bytes_per_sample));
        tab_cellf(&t, "%.4g", s->participant_hours);
        if (has_c) {
            tab_cell(&t, fmt_cost(t1, sizeof t1, s->cost));
            tab_cell(&t, fmt_ratio(t2, sizeof t2, ratio(s->cost, b->cost)));
        }
        if (has_t && has_c) {
            tab_cell(&t, s->reached ? fmt_cost(t1, sizeof t1, s->cost_to_target) : "not reached");
            tab_cell(&t, fmt_ratio(t2, sizeof t2, ratio(s->cost_to_target, b->cost_to_target)));
        }
    }
    tab_print(f, &t, fmt);
    tab_free(&t);
}

// ---- csv ----

static void csv_str(FILE *f, const char *s) {
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
}

static void csv_num(FILE *f, double x) {
    fputc(',', f);
    if (!isnan(x) && !isinf(x)) fprintf(f, "%.10g", x);
}

static const char CSV_HEADER[] =
    "run,dir,kind,mode,inner_steps,trainer_ranks,nodes,volunteers,segments,steps,samples,wall_s,samples_per_s,"
    "participants_min,participants_mean,participants_max,compute_utilization,final_loss,final_valid_loss,best_valid_loss,target_loss,reached,"
    "time_to_target_s,samples_to_target,step_at_target,trainer_bytes_sent_per_rank,"
    "trainer_bytes_recv_per_rank,volunteer_bytes_sent,volunteer_bytes_recv,bridge_bytes_sent,"
    "bridge_bytes_recv,trainer_samples,volunteer_samples,trained_samples,bytes_per_participant,"
    "wan_bytes_per_sample,volunteer_hours,participant_hours,cost,"
    "cost_to_target,time_to_target_ratio,throughput_ratio,cost_ratio,cost_to_target_ratio";

static void write_csv(FILE *f, const RepRun *runs, const RepStats *st, int n, int base, double target) {
    fprintf(f, "%s\n", CSV_HEADER);
    const RepStats *b = &st[base];
    for (int i = 0; i < n; i++) {
        const RepRun *r = &runs[i];
        const RepStats *s = &st[i];
        csv_str(f, r->name);
        fputc(',', f);
        csv_str(f, r->dir);
        fprintf(f, ",%s,%s,%ld,%d,%d,%d,%d,%ld,%ld", r->has_bridge || r->has_volunteers ? "collaborative" : "mpi",
                r->mode, r->inner_steps, r->ranks, r->nodes, r->n_v, r->n_segments, s->steps, s->samples);
        csv_num(f, s->wall_s);
        csv_num(f, s->samples_per_s);
        csv_num(f, s->participants_min);
        csv_num(f, s->participants_mean);
        csv_num(f, s->participants_max);
        csv_num(f, s->compute_util);
        csv_num(f, s->final_loss);
        csv_num(f, s->final_valid);
        csv_num(f, s->best_valid);
        csv_num(f, target);
        fprintf(f, ",%d", s->reached);
        csv_num(f, s->time_to_target);
        csv_num(f, s->samples_to_target);
        csv_num(f, s->reached ? (double)s->step_at_target : NAN);
        csv_num(f, s->trainer_bytes_sent);
        csv_num(f, s->trainer_bytes_recv);
        csv_num(f, r->n_v ? s->volunteer_bytes_sent : NAN);
        csv_num(f, r->n_v ? s->volunteer_bytes_recv : NAN);
        csv_num(f, s->bridge_bytes_sent);
        csv_num(f, s->bridge_bytes_recv);
        csv_num(f, s->trainer_samples);
        csv_num(f, s->volunteer_samples);
        csv_num(f, s->trained_samples);
        csv_num(f, s->bytes_per_participant);
        csv_num(f, s->wan_bytes_per_sample);
        csv_num(f, s->volunteer_hours);
        csv_num(f, s->participant_hours);
        csv_num(f, s->cost);
        csv_num(f, s->cost_to_target);
        csv_num(f, ratio(s->time_to_target, b->time_to_target));
        csv_num(f, ratio(s->samples_per_s, b->samples_per_s));
        csv_num(f, ratio(s->cost, b->cost));
        csv_num(f, ratio(s->cost_to_target, b->cost_to_target));
        fputc('\n', f);
    }
}

// ---- json ----

static json_object *jnum(double x) { return isnan(x) || isinf(x) ? NULL : json_object_new_double(x); }
static json_object *jstr(const char *s) { return json_object_new_string(s); }
static void jadd(json_object *o, const char *k, json_object *v) { json_object_object_add(o, k, v); }

static void write_json(FILE *f, const RepRun *runs, const RepStats *st, int n, int base, double target,
                       const RepPrices *prices) {
    json_object *root = json_object_new_object();
    jadd(root, "tool", jstr("conflux-report"));
    jadd(root, "version", jstr(CONFLUX_VERSION));
    jadd(root, "target_loss", jnum(target));
    jadd(root, "time_to_target_rule", jstr(INTERP_RULE));
    jadd(root, "baseline", jstr(runs[base].name));
    jadd(root, "prices", prices ? jstr(prices->path) : NULL);
    json_object *arr = json_object_new_array();
    const RepStats *b = &st[base];
    for (int i = 0; i < n; i++) {
        const RepRun *r = &runs[i];
        const RepStats *s = &st[i];
        json_object *o = json_object_new_object();
        jadd(o, "name", jstr(r->name));
        jadd(o, "simulated", json_object_new_boolean(r->simulated));
        jadd(o, "dir", jstr(r->dir));
        jadd(o, "kind", jstr(r->has_bridge || r->has_volunteers ? "collaborative" : "mpi"));
        jadd(o, "mode", jstr(r->mode));
        jadd(o, "inner_steps", r->inner_steps > 0 ? json_object_new_int64(r->inner_steps) : NULL);
        jadd(o, "tool", jstr(r->tool));
        jadd(o, "conflux_version", jstr(r->version));
        jadd(o, "host", jstr(r->host));
        jadd(o, "started", jstr(r->started));
        jadd(o, "launcher", jstr(r->launcher));
        jadd(o, "trainer_ranks", json_object_new_int(r->ranks));
        jadd(o, "nodes", json_object_new_int(r->nodes));
        jadd(o, "volunteers", json_object_new_int(r->n_v));
        jadd(o, "resumed", json_object_new_boolean(r->resumed));
        jadd(o, "segments", json_object_new_int(r->n_segments));
        jadd(o, "steps", json_object_new_int64(s->steps));
        jadd(o, "samples", json_object_new_int64(s->samples));
        jadd(o, "samples_processed", jnum(s->samples_processed));
        jadd(o, "wall_s", jnum(s->wall_s));
        jadd(o, "samples_per_s", jnum(s->samples_per_s));
        json_object *pp = json_object_new_object();
        jadd(pp, "min", json_object_new_int(s->participants_min));
        jadd(pp, "mean", jnum(s->participants_mean));
        jadd(pp, "max", json_object_new_int(s->participants_max));
        jadd(o, "participants_per_step", pp);
        jadd(o, "compute_utilization", jnum(s->compute_util));
        jadd(o, "final_loss", jnum(s->final_loss));
        jadd(o, "final_valid_loss", jnum(s->final_valid));
        jadd(o, "best_valid_loss", jnum(s->best_valid));
        jadd(o, "best_valid_step", s->n_valid ? json_object_new_int64(s->best_valid_step) : NULL);
        jadd(o, "validations", json_object_new_int(s->n_valid));
        json_object *tg = json_object_new_object();
        jadd(tg, "loss", jnum(target));
        jadd(tg, "reached", json_object_new_boolean(s->reached));
        jadd(tg, "time_s", jnum(s->time_to_target));
        jadd(tg, "samples", jnum(s->samples_to_target));
        jadd(tg, "step", s->reached ? json_object_new_int64(s->step_at_target) : NULL);
        jadd(o, "target", tg);
        json_object *tr = json_object_new_object();
        jadd(tr, "trainer_bytes_sent_per_rank", jnum(s->trainer_bytes_sent));
        jadd(tr, "trainer_bytes_recv_per_rank", jnum(s->trainer_bytes_recv));
        jadd(tr, "volunteer_bytes_sent", r->n_v ? jnum(s->volunteer_bytes_sent) : NULL);
        jadd(tr, "volunteer_bytes_recv", r->n_v ? jnum(s->volunteer_bytes_recv) : NULL);
        jadd(tr, "bridge_wan_bytes_sent", jnum(s->bridge_bytes_sent));
        jadd(tr, "bridge_wan_bytes_recv", jnum(s->bridge_bytes_recv));
        jadd(tr, "bytes_per_participant", jnum(s->bytes_per_participant));
        jadd(o, "traffic", tr);
        jadd(o, "trained_samples", jnum(s->trained_samples));
        jadd(o, "wan_bytes_per_sample", jnum(s->wan_bytes_per_sample));
        jadd(o, "trainer_samples", jnum(s->trainer_samples));
        jadd(o, "volunteer_samples", jnum(s->volunteer_samples));
        jadd(o, "volunteer_hours", jnum(s->volunteer_hours));
        jadd(o, "participant_hours", jnum(s->participant_hours));
        jadd(o, "cost", jnum(s->cost));
        jadd(o, "cost_to_target", jnum(s->cost_to_target));
        json_object *ps = json_object_new_array();
        for (int k = 0; k < s->n_parts; k++) {
            const RepParticipant *p = &s->parts[k];
            json_object *po = json_object_new_object();
            jadd(po, "name", jstr(p->name));
            jadd(po, "kind", jstr(p->kind));
            jadd(po, "hours", jnum(p->hours));
            jadd(po, "samples", jnum(p->samples));
            jadd(po, "bytes_sent", jnum(p->bytes_sent));
            jadd(po, "bytes_recv", jnum(p->bytes_recv));
            jadd(po, "cost", jnum(p->cost));
            if (!strcmp(p->kind, "volunteer")) {
                const RepVolunteer *v = &r->v[k - (s->n_parts - r->n_v - r->has_bridge)];
                jadd(po, "identity", jstr(v->identity));
                jadd(po, "token_name", jstr(v->token_name));
                jadd(po, "sessions", json_object_new_int(v->n_sessions));
                jadd(po, "accepted_fresh", json_object_new_int64(v->accepted));
                jadd(po, "accepted_stale", json_object_new_int64(v->accepted_stale));
                jadd(po, "dropped_stale", json_object_new_int64(v->dropped));
                jadd(po, "lost", json_object_new_int64(v->lost));
            }
            json_object_array_add(ps, po);
        }
        jadd(o, "participants", ps);
        json_object *cmp = json_object_new_object();
        jadd(cmp, "time_to_target_ratio", jnum(ratio(s->time_to_target, b->time_to_target)));
        jadd(cmp, "throughput_ratio", jnum(ratio(s->samples_per_s, b->samples_per_s)));
        jadd(cmp, "cost_ratio", jnum(ratio(s->cost, b->cost)));
        jadd(cmp, "cost_to_target_ratio", jnum(ratio(s->cost_to_target, b->cost_to_target)));
        jadd(o, "comparison", cmp);
        json_object_array_add(arr, o);
    }
    jadd(root, "runs", arr);
    fputs(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE), f);
    fputc('\n', f);
    json_object_put(root);
}

int report_write(FILE *f, RepFormat fmt, const RepRun *runs, const RepStats *stats, int n, int baseline,
                 double target, const RepPrices *prices, char *err) {
    if (fmt == REP_CSV) write_csv(f, runs, stats, n, baseline, target);
    else if (fmt == REP_JSON) write_json(f, runs, stats, n, baseline, target, prices);
    else write_doc(f, fmt, runs, stats, n, baseline, target, prices);
    if (fflush(f) != 0 || ferror(f)) return cx_err(err, "cannot write the report: %s", strerror(errno));
    return 0;
}

// ---- plots ----

static const char *PALETTE[] = {"1f77b4", "d62728", "2ca02c", "ff7f0e", "9467bd", "8c564b", "e377c2", "17becf"};

// s as the inside of a gnuplot single-quoted string (' doubled, control bytes dropped).
static void gp_str(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20) continue;
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

// Finds an executable: a path, or a name looked up in PATH. 0 with out filled, -1 if none.
static int find_program(const char *name, char *out, size_t cap) {
    if (strchr(name, '/')) {
        snprintf(out, cap, "%s", name);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (!path) return -1;
    const char *p = path;
    while (*p) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, p, name) < cap) {
            struct stat sb;
            if (stat(out, &sb) == 0 && S_ISREG(sb.st_mode) && access(out, X_OK) == 0) return 0;
        }
        p += n + (e != NULL);
    }
    return -1;
}

static FILE *open_in(const char *dir, const char *name, char *err) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) cx_err(err, "cannot write %s: %s", path, strerror(errno));
    return f;
}

static int close_out(FILE *f, const char *dir, const char *name, char *err) {
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return cx_err(err, "cannot write %s/%s", dir, name);
    return 0;
}

static void gp_num(FILE *f, double x) {
    if (isnan(x) || isinf(x)) fputs(" ?", f);
    else fprintf(f, " %.9g", x);
}

// runN.dat: t samples loss throughput; runN.valid.dat: t samples valid_loss;
// contribution.dat: "label" samples run.
typedef struct {
    int valid, loss, thr;  // points with a value: validation, training loss, throughput
} PlotCounts;

static int write_plot_data(const char *dir, const RepRun *runs, const RepStats *st, int n, PlotCounts *pc,
                           char *err) {
    char name[64];
    for (int i = 0; i < n; i++) {
        const RepRun *r = &runs[i];
        snprintf(name, sizeof name, "run%d.dat", i + 1);
        FILE *f = open_in(dir, name, err);
        if (!f) return -1;
        fprintf(f, "# %s: time_s samples loss samples_per_s(moving window)\n", r->name);
        int w = r->n_m / 25 > 1 ? r->n_m / 25 : 1;
        double cum = 0, *cs = malloc((size_t)r->n_m * sizeof *cs);
        if (!cs) {
            fclose(f);
            return cx_err(err, "out of memory");
        }
        for (int k = 0; k < r->n_m; k++) {
            const RepMetric *m = &r->m[k];
            cum += (double)m->step_samples;
            cs[k] = cum;
            double s0 = k >= w ? cs[k - w] : 0, t0 = k >= w ? r->m[k - w].t : 0;
            double thr = m->t > t0 ? (cs[k] - s0) / (m->t - t0) : NAN;
            fprintf(f, "%.6f %ld", m->t, m->samples);
            gp_num(f, m->loss);
            gp_num(f, thr);
            fputc('\n', f);
            pc[i].loss += !isnan(m->loss);
            pc[i].thr += !isnan(thr);
        }
        free(cs);
        if (close_out(f, dir, name, err) != 0) return -1;
        snprintf(name, sizeof name, "run%d.valid.dat", i + 1);
        if (!(f = open_in(dir, name, err))) return -1;
        fprintf(f, "# %s: time_s samples valid_loss\n", r->name);
        for (int k = 0; k < r->n_m; k++) {
            const RepMetric *m = &r->m[k];
            if (isnan(m->valid_loss)) continue;
            fprintf(f, "%.6f %ld %.9g\n", m->t, m->samples, m->valid_loss);
            pc[i].valid++;
        }
        if (close_out(f, dir, name, err) != 0) return -1;
    }
    FILE *f = open_in(dir, "contribution.dat", err);
    if (!f) return -1;
    fputs("# participant accepted_samples run\n", f);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < st[i].n_parts; k++) {
            const RepParticipant *p = &st[i].parts[k];
            if (isnan(p->samples)) continue;
            fputc('"', f);
            for (const char *s = runs[i].name; *s; s++) fputc(*s == '"' || (unsigned char)*s < 0x20 ? '\'' : *s, f);
            fputs(": ", f);
            for (const char *s = p->name; *s; s++) fputc(*s == '"' || (unsigned char)*s < 0x20 ? '\'' : *s, f);
            fprintf(f, "\" %.0f %d\n", p->samples, i % 8 + 1);
        }
    }
    return close_out(f, dir, "contribution.dat", err);
}

// A plot command with no series would fail; an empty frame says "no data" instead.
static void plot_empty(FILE *f) {
    fputs("set label 1 'no data' at graph 0.5, 0.5 center\nset xrange [0:1]\nset yrange [0:1]\n"
          "plot 2 notitle\nunset label 1\nset autoscale\n", f);
}

static void plot_losses(FILE *f, const RepRun *runs, int n, const PlotCounts *pc, int xcol, double xscale,
                        double target) {
    const char *sep = "plot ";
    for (int i = 0; i < n; i++) {
        char ttl[300];
        if (pc[i].loss) {
            fprintf(f, "%s'run%d.dat' using ($%d/%g):3 with lines lw 1 lc rgb '#90%s' title ", sep, i + 1, xcol,
                    xscale, PALETTE[i % 8]);
            snprintf(ttl, sizeof ttl, "%s train", runs[i].name);
            gp_str(f, ttl);
            sep = ", \\\n     ";
        }
        if (pc[i].valid) {
            fprintf(f, "%s'run%d.valid.dat' using ($%d/%g):3 with linespoints lw 2 pt 7 ps 0.8 lc rgb '#%s' title ",
                    sep, i + 1, xcol, xscale, PALETTE[i % 8]);
            snprintf(ttl, sizeof ttl, "%s valid", runs[i].name);
            gp_str(f, ttl);
            sep = ", \\\n     ";
        }
    }
    if (sep[0] == 'p') {
        plot_empty(f);
        return;
    }
    if (!isnan(target)) fprintf(f, "%s%.9g with lines dt 2 lw 1.5 lc rgb 'black' title 'target %g'", sep, target, target);
    fputc('\n', f);
}

static const char *PNGS[] = {"loss_vs_time.png", "loss_vs_samples.png", "throughput.png", "contribution.png"};

int report_plots(const char *dir, const char *gnuplot, const RepRun *runs, const RepStats *st, int n,
                 double target, char *err) {
    char prog[4096];
    if (find_program(gnuplot, prog, sizeof prog) != 0)
        return cx_err(err, "gnuplot not found (looked for '%s'%s): install gnuplot-nox, set GNUPLOT to "
                           "its path, or leave out --plots", gnuplot, strchr(gnuplot, '/') ? "" : " in PATH");
    PlotCounts *pc = calloc((size_t)n, sizeof *pc);
    if (!pc) return cx_err(err, "out of memory");
    if (write_plot_data(dir, runs, st, n, pc, err) != 0) {
        free(pc);
        return -1;
    }
    double wall = 0;
    for (int i = 0; i < n; i++) wall = fmax(wall, st[i].wall_s);
    double xs = wall <= 300 ? 1 : wall <= 3 * 3600 ? 60 : 3600;
    const char *xu = xs == 1 ? "s" : xs == 60 ? "min" : "h";
    FILE *f = open_in(dir, "plots.gp", err);
    if (!f) {
        free(pc);
        return -1;
    }
    fputs("# written by conflux-report; `gnuplot plots.gp` in this directory draws the plots again\n"
          "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "    set terminal pngcairo size 1100,650 noenhanced font ',10'\n"
          "} else {\n"
          "    set terminal png size 1100,650 noenhanced\n"
          "}\n"
          "set datafile missing '?'\n"
          "set grid\n"
          "set key outside right top\n", f);
    fputs("set output 'loss_vs_time.png'\nset title 'Loss against time (lines: training, points: validation)'\n", f);
    fprintf(f, "set xlabel 'time (%s)'\nset ylabel 'loss'\n", xu);
    plot_losses(f, runs, n, pc, 1, xs, target);
    fputs("set output 'loss_vs_samples.png'\nset title 'Loss against samples (lines: training, points: validation)'\n"
          "set xlabel 'samples (data cursor)'\n", f);
    plot_losses(f, runs, n, pc, 2, 1, target);
    fputs("set output 'throughput.png'\nset title 'Throughput over time (moving window)'\n", f);
    fprintf(f, "set xlabel 'time (%s)'\nset ylabel 'samples/s'\nset yrange [0:*]\n", xu);
    const char *sep = "plot ";
    for (int i = 0; i < n; i++) {
        if (!pc[i].thr) continue;
        fprintf(f, "%s'run%d.dat' using ($1/%g):4 with lines lw 2 lc rgb '#%s' title ", sep, i + 1, xs, PALETTE[i % 8]);
        gp_str(f, runs[i].name);
        sep = ", \\\n     ";
    }
    if (sep[0] == 'p') plot_empty(f);
    else fputc('\n', f);
    fputs("set output 'contribution.png'\nset title 'Contribution per participant (accepted samples)'\n"
          "unset key\nset style fill solid 0.85 border -1\nset boxwidth 0.7\n"
          "set xtics rotate by -35 left nomirror\nset xlabel ''\nset ylabel 'samples'\nset yrange [0:*]\n"
          "set bmargin 8\n", f);
    for (int i = 0; i < 8; i++) fprintf(f, "set linetype %d lc rgb '#%s'\n", i + 1, PALETTE[i]);
    fputs("plot 'contribution.dat' using 0:2:3:xticlabels(1) with boxes lc variable\n", f);
    free(pc);
    if (close_out(f, dir, "plots.gp", err) != 0) return -1;
    for (int i = 0; i < 4; i++) {
        char png[1400];
        snprintf(png, sizeof png, "%s/%s", dir, PNGS[i]);
        unlink(png);
    }

    char logp[1400];
    snprintf(logp, sizeof logp, "%s/gnuplot.log", dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return cx_err(err, "cannot start gnuplot: %s", strerror(errno));
    if (pid == 0) {
        FILE *lf = fopen(logp, "w");
        if (!lf || chdir(dir) != 0) _exit(126);
        dup2(fileno(lf), 1);
        dup2(fileno(lf), 2);
        execl(prog, prog, "plots.gp", (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", prog, strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return cx_err(err, "waiting for gnuplot: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char first[200] = "";
        FILE *lf = fopen(logp, "r");
        if (lf) {
            if (!fgets(first, sizeof first, lf)) first[0] = 0;
            fclose(lf);
            first[strcspn(first, "\n")] = 0;
        }
        return cx_err(err, "gnuplot failed (%s %d)%s%s (%s)", WIFEXITED(status) ? "exit status" : "signal",
                      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), first[0] ? ": " : "", first,
                      logp);
    }
    for (int i = 0; i < 4; i++) {
        char png[1400];
        struct stat sb;
        snprintf(png, sizeof png, "%s/%s", dir, PNGS[i]);
        if (stat(png, &sb) != 0 || sb.st_size == 0)
            return cx_err(err, "gnuplot did not write %s (see %s)", png, logp);
    }
    return 0;
}
