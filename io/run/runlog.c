// runlog.c: run.json (json-c) and metrics.csv (see runlog.h).
#include "io/run/runlog.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/run/runcols.h"
#include "models/common.h"

static const char METRICS_HEADER[] = RUNCOLS_METRICS;

int runlog_mkdirs(const char *dir, char *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return cx_err(err, "path too long: %s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return cx_err(err, "cannot create directory %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return cx_err(err, "cannot create directory %s: %s", path, strerror(errno));
    return 0;
}

void runlog_iso_time(char *buf, size_t cap) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int runlog_write_info(const char *dir, const RunInfo *info, char *err) {
    json_object *o = json_object_new_object();
    char ts[32], host[256] = "unknown";
    runlog_iso_time(ts, sizeof ts);
    gethostname(host, sizeof host - 1);
    json_object_object_add(o, "tool", json_object_new_string(info->tool));
    json_object_object_add(o, "started", json_object_new_string(ts));
    json_object_object_add(o, "host", json_object_new_string(host));
    json_object_object_add(o, "ranks", json_object_new_int(info->ranks));
    json_object_object_add(o, "nodes", json_object_new_int(info->nodes));
    // the ranks' layout: replicas of a tensor-parallel grid (1 x 1: plain data parallelism)
    int tp_r = info->tp_rows > 1 ? info->tp_rows : 1, tp_c = info->tp_cols > 1 ? info->tp_cols : 1;
    json_object *lay = json_object_new_object();
    json_object_object_add(lay, "replicas", json_object_new_int(info->ranks / (tp_r * tp_c)));
    json_object_object_add(lay, "tp_rows", json_object_new_int(tp_r));
    json_object_object_add(lay, "tp_cols", json_object_new_int(tp_c));
    json_object_object_add(o, "layout", lay);
    json_object_object_add(o, "launcher", json_object_new_string(info->launcher));
    json_object_object_add(o, "resumed_from", info->resumed_from
                                                  ? json_object_new_string(info->resumed_from)
                                                  : NULL);
    json_object *v = json_object_new_object();
    json_object_object_add(v, "conflux", json_object_new_string(CONFLUX_VERSION));
    for (int i = 0; i < 8 && info->extra_versions[i][0]; i++)
        json_object_object_add(v, info->extra_versions[i][0],
                               json_object_new_string(info->extra_versions[i][1]));
    json_object_object_add(o, "versions", v);
    // the configuration, both as INI text and as {section: {key: value}}
    json_object_object_add(o, "config_ini", json_object_new_string(info->config_ini));
    json_object *cfg = json_object_new_object(), *sec = NULL;
    char *text = strdup(info->config_ini), *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '[') {
            char *end = strchr(line, ']');
            if (end) *end = 0;
            sec = json_object_new_object();
            json_object_object_add(cfg, line + 1, sec);
        } else if (sec) {
            char *eq = strstr(line, " = ");
            if (!eq) continue;
            *eq = 0;
            json_object_object_add(sec, line, json_object_new_string(eq + 3));
        }
    }
    free(text);
    json_object_object_add(o, "config", cfg);

    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/run.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (!f || fputs(s, f) < 0 || fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rc = cx_err(err, "cannot write %s: %s", path, strerror(errno));
    }
    if (f && fclose(f) != 0 && rc == 0) rc = cx_err(err, "cannot write %s: %s", path, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0) rc = cx_err(err, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc != 0) unlink(tmp);
    json_object_put(o);
    return rc;
}

int runlog_write_finished(const char *dir, long step, char *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/finished", dir);
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%ld\n", step) < 0 || fclose(f) != 0)
        return cx_err(err, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

FILE *runlog_open_metrics(const char *dir, char *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *f = fopen(path, "a+");
    if (!f) {
        cx_err(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    if (ftell(f) == 0) {
        fprintf(f, "%s\n", METRICS_HEADER);
    } else {
        char line[512] = "";
        rewind(f);
        if (!fgets(line, sizeof line, f) || strncmp(line, METRICS_HEADER, strlen(METRICS_HEADER)) != 0) {
            cx_err(err, "%s: existing file does not start with the metrics header", path);
            fclose(f);
            return NULL;
        }
        fseek(f, 0, SEEK_END);
    }
    fflush(f);
    return f;
}

void runlog_write_bridge_row(FILE *f, const BridgeRow *r) {
    fprintf(f, "%.3f,%ld,%ld,%ld,%d,%llu,%llu,%llu,%llu,%llu,%d,%d,%.6f,%.4f,%.4f,%.0f,%.0f,%.0f,%.4f\n",
            r->time_s, r->step, r->samples, r->trainer_samples, r->volunteers_assigned,
            r->volunteer_samples_assigned, r->fresh, r->stale, r->dropped, r->lost, r->participants,
            r->live_volunteers, r->loss, r->wait_s, r->allreduce_s, r->bytes_sent, r->bytes_recv,
            r->upload_bytes, r->upload_s);
    fflush(f);
}

static void csv_field(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void runlog_write_volunteer_row(FILE *f, double time_s, unsigned long long step, const char *identity,
                                const char *name, const char *token_name, const char *event,
                                unsigned long long samples, const char *detail) {
    fprintf(f, "%.3f,%llu,%s,", time_s, step, identity);
    csv_field(f, name);
    fputc(',', f);
    csv_field(f, token_name);
    fprintf(f, ",%s,%llu,", event, samples);
    csv_field(f, detail ? detail : "");
    fputc('\n', f);
    fflush(f);
}

int runlog_write_row(FILE *f, const MetricsRow *r) {
    char vl[32] = "";
    if (!isnan(r->valid_loss)) snprintf(vl, sizeof vl, "%.6f", r->valid_loss);
    int n = fprintf(f, "%.3f,%ld,%ld,%.6f,%.6g,%.2f,%.1f,%.4f,%.4f,%lld,%lld,%d,%s\n", r->time_s,
                    r->step, r->samples, r->loss, r->lr, r->samples_per_s, r->tokens_per_s,
                    r->compute_s, r->comm_s, r->bytes_sent, r->bytes_recv, r->participants, vl);
    if (n < 0 || fflush(f) != 0) return -1;
    return 0;
}
