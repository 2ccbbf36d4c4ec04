// pairs.c: `conflux-headline pairs`: (title, body) training pairs from Debian's Russian
// texts (io/tasks/headline.h extracts them) into DIR/train.tsv and DIR/valid.tsv.
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/corpus/corpus.h"
#include "io/corpus/headline_pairs.h"
#include "io/headline/cli.h"
#include "io/run/runlog.h"
#include "io/tasks/headline.h"
#include "models/common.h"

// Whole-file reader through zlib (plain or gzip). Returns a malloc'd buffer, or NULL with err.
static char *read_file_gz(const char *path, size_t *n_out, char *err) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        cx_err(err, "cannot open %s: %s", path, strerror(errno ? errno : ENOMEM));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    CHECK(buf, "out of memory");
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf, "out of memory (%zu bytes)", cap);
        }
        int r = gzread(f, buf + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
        if (r < 0) {
            int e;
            cx_err(err, "cannot read %s: %s", path, gzerror(f, &e));
            gzclose(f);
            free(buf);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    gzclose(f);
    *n_out = n;
    return buf;
}

typedef struct {
    FILE *out[2];
    uint64_t *seen;  // open-addressing set of pair hashes
    size_t seen_cap, seen_n;
    uint64_t dup, written[2];
    double valid_percent;
    int failed;
} PairsOut;

static int seen_insert(PairsOut *po, uint64_t h) {
    if (2 * (po->seen_n + 1) > po->seen_cap) {
        size_t cap = po->seen_cap ? 2 * po->seen_cap : 4096;
        uint64_t *t = cx_calloc(cap, sizeof *t);
        for (size_t i = 0; i < po->seen_cap; i++) {
            uint64_t v = po->seen[i];
            if (!v) continue;
            size_t j = v & (cap - 1);
            while (t[j]) j = (j + 1) & (cap - 1);
            t[j] = v;
        }
        free(po->seen);
        po->seen = t;
        po->seen_cap = cap;
    }
    size_t j = h & (po->seen_cap - 1);
    while (po->seen[j]) {
        if (po->seen[j] == h) return 0;
        j = (j + 1) & (po->seen_cap - 1);
    }
    po->seen[j] = h;
    po->seen_n++;
    return 1;
}

static int pairs_emit(void *ctx, const char *title, const char *body) {
    PairsOut *po = ctx;
    // the same body under any title counts once (Debian shares descriptions between packages)
    uint64_t h = corpus_hash64(body, strlen(body));
    if (!seen_insert(po, h)) {
        po->dup++;
        return 0;
    }
    int v = corpus_split_is_valid(h, po->valid_percent);
    if (fprintf(po->out[v], "%s\t%s\n", title, body) < 0) {
        po->failed = 1;
        return 1;
    }
    po->written[v]++;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Files under path (path itself when it is a file), sorted, recursively; symlinks skipped.
static int list_files(const char *path, char ***files, size_t *n, size_t *cap, char *err) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return cx_err(err, "cannot read %s: %s", path, strerror(errno));
    if (S_ISREG(sb.st_mode)) {
        if (*n == *cap) {
            *cap = *cap ? 2 * *cap : 256;
            *files = realloc(*files, *cap * sizeof **files);
            CHECK(*files, "out of memory");
        }
        (*files)[(*n)++] = strdup(path);
        return 0;
    }
    if (!S_ISDIR(sb.st_mode)) return 0;
    DIR *d = opendir(path);
    if (!d) return cx_err(err, "cannot open directory %s: %s", path, strerror(errno));
    char **names = NULL;
    size_t nn = 0, nc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (nn == nc) {
            nc = nc ? 2 * nc : 64;
            names = realloc(names, nc * sizeof *names);
            CHECK(names, "out of memory");
        }
        names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    if (nn) qsort(names, nn, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < nn; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        if (rc == 0) rc = list_files(p, files, n, cap, err);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int html_name(const char *f) {
    const char *dot = strrchr(f, '.');
    if (dot && !strcmp(dot, ".gz")) {
        // look at the extension before .gz
        size_t l = (size_t)(dot - f);
        const char *p = f + l;
        while (p > f && *p != '.' && *p != '/') p--;
        return *p == '.' && ((size_t)(dot - p) == 5 && !strncmp(p, ".html", 5));
    }
    return dot && (!strcmp(dot, ".html") || !strcmp(dot, ".htm") || !strcmp(dot, ".xhtml"));
}

int headline_cmd_pairs(int argc, char **argv) {
    static const char usage[] =
        "usage: " HL_TOOL " pairs --out DIR [--valid-percent P] [--min-body N] SOURCE...\n"
        "\n"
        "Builds (title, body) training pairs from Russian texts found in Debian packages and\n"
        "writes DIR/train.tsv and DIR/valid.tsv (one pair per line: title TAB body, UTF-8,\n"
        "normalised to one line) and DIR/stats.txt. Bodies seen before are dropped (Debian\n"
        "shares descriptions between packages); the split is a hash of the body. The output\n"
        "depends only on the inputs (directories are walked in sorted order).\n"
        "\n"
        "SOURCE is FORMAT:PATH, PATH a file or a directory (walked recursively; .gz files are\n"
        "decompressed):\n"
        "  debtrans  Debian Translation-ru: short description = title, long description = body\n"
        "  man       man pages: NAME line (after ' - ') = title, DESCRIPTION section = body\n"
        "  html      HTML help pages (*.html): <title> = title, Cyrillic paragraphs = body\n"
        "\n"
        "  --out DIR            output directory (created)\n"
        "  --valid-percent P    share of pairs in valid.tsv, 0..100 (default 5)\n"
        "  --min-body N         bodies shorter than N characters are dropped (default 80)\n"
        "  -h, --help           this text\n"
        "\n"
        "example (io/corpus/build-headline-pairs.sh runs this on what io/corpus/build-corpus.sh fetched):\n"
        "  " HL_TOOL " pairs --out build/data/headline debtrans:build/data/debtrans/Translation-ru \\\n"
        "      man:build/data/extract/manpages-ru/usr/share/man/ru\n";
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                          {"valid-percent", required_argument, 0, 'v'},
                                          {"min-body", required_argument, 0, 'm'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    const char *out_dir = NULL;
    double valid_percent = 5.0;
    long min_body = 80;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out_dir = optarg; break;
        case 'v': {
            char *end;
            valid_percent = strtod(optarg, &end);
            if (end == optarg || *end || !(valid_percent >= 0 && valid_percent <= 100))
                return hl_usage_err("pairs", "--valid-percent must be a number in [0, 100] (got '%s')", optarg);
            break;
        }
        case 'm':
            if ((min_body = hl_parse_count(optarg)) < 0)
                return hl_usage_err("pairs", "--min-body must be a count (got '%s')", optarg);
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: return hl_usage_err("pairs", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!out_dir) return hl_usage_err("pairs", "--out DIR is required");
    if (optind >= argc) return hl_usage_err("pairs", "no SOURCE given");
    HeadlinePairFormat fmts[256];
    const char *paths[256];
    int n_src = 0;
    for (int i = optind; i < argc; i++) {
        const char *colon = strchr(argv[i], ':');
        char name[32];
        size_t l = colon ? (size_t)(colon - argv[i]) : 0;
        if (!colon || l == 0 || l >= sizeof name)
            return hl_usage_err("pairs", "source '%s' is not FORMAT:PATH", argv[i]);
        memcpy(name, argv[i], l);
        name[l] = 0;
        if (headline_pair_format_parse(name, &fmts[n_src]) != 0)
            return hl_usage_err("pairs", "unknown format '%s' in '%s' (debtrans, man, html)", name, argv[i]);
        if (n_src == 256) return hl_usage_err("pairs", "more than 256 sources");
        paths[n_src++] = colon + 1;
    }
    char err[CX_ERRLEN];
    if (strlen(out_dir) > 4000) return hl_usage_err("pairs", "--out path is too long");
    if (runlog_mkdirs(out_dir, err) != 0) {
        hl_report("%s", err);
        return 1;
    }
    char tpath[2][4200], tmp[2][4300];
    PairsOut po = {.valid_percent = valid_percent};
    for (int v = 0; v < 2; v++) {
        snprintf(tpath[v], sizeof tpath[v], "%s/%s", out_dir, v ? "valid.tsv" : "train.tsv");
        snprintf(tmp[v], sizeof tmp[v], "%.4199s.tmp.%d", tpath[v], (int)getpid());
        if (!(po.out[v] = fopen(tmp[v], "w"))) {
            hl_report("cannot write %s: %s", tmp[v], strerror(errno));
            if (v) fclose(po.out[0]), unlink(tmp[0]);
            return 1;
        }
    }
    HeadlinePairStats tot = {0}, per[256];
    memset(per, 0, sizeof per);
    int rc = 0;
    for (int s = 0; s < n_src && rc == 0; s++) {
        char **files = NULL;
        size_t nf = 0, cf = 0;
        if (list_files(paths[s], &files, &nf, &cf, err) != 0) {
            hl_report("%s", err);
            rc = 1;
        }
        for (size_t f = 0; f < nf; f++) {
            if (rc == 0 && (fmts[s] != HP_HTML || html_name(files[f]))) {
                size_t n = 0;
                char *data = read_file_gz(files[f], &n, err);
                if (!data) {
                    hl_report("%s", err);
                    rc = 1;
                } else {
                    long r = headline_pairs_extract(fmts[s], data, n, (size_t)min_body, &per[s],
                                                    pairs_emit, &po, err);
                    free(data);
                    if (r < 0) {
                        hl_report(po.failed ? "cannot write %s: %s" : "%s (%s)",
                               po.failed ? tmp[0] : err, po.failed ? strerror(errno) : files[f]);
                        rc = 1;
                    }
                }
            }
            free(files[f]);
        }
        free(files);
    }
    for (int v = 0; v < 2; v++) {
        if (fclose(po.out[v]) != 0 && rc == 0) {
            hl_report("cannot write %s: %s", tmp[v], strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0)
        for (int v = 0; v < 2 && rc == 0; v++)
            if (rename(tmp[v], tpath[v]) != 0) {
                hl_report("cannot rename %s: %s", tmp[v], strerror(errno));
                rc = 1;
            }
    if (rc != 0) {
        unlink(tmp[0]);
        unlink(tmp[1]);
        free(po.seen);
        return rc;
    }
    char spath[4200];
    snprintf(spath, sizeof spath, "%s/stats.txt", out_dir);
    FILE *sf = fopen(spath, "w");
    for (int s = 0; s < n_src; s++) {
        HeadlinePairStats *p = &per[s];
        tot.files += p->files, tot.docs += p->docs, tot.pairs += p->pairs;
        tot.no_title += p->no_title, tot.no_body += p->no_body, tot.not_cyrillic += p->not_cyrillic;
        char line[1200];
        snprintf(line, sizeof line,
                 "%-8s %s: %llu files, %llu documents, %llu pairs (rejected: %llu title, %llu "
                 "body, %llu not Cyrillic)\n",
                 headline_pair_format_name(fmts[s]), paths[s], (unsigned long long)p->files,
                 (unsigned long long)p->docs, (unsigned long long)p->pairs,
                 (unsigned long long)p->no_title, (unsigned long long)p->no_body,
                 (unsigned long long)p->not_cyrillic);
        fputs(line, stderr);
        if (sf) fputs(line, sf);
    }
    char line[512];
    snprintf(line, sizeof line, "total: %llu pairs, %llu duplicate bodies dropped; train %llu, valid %llu\n",
             (unsigned long long)tot.pairs, (unsigned long long)po.dup,
             (unsigned long long)po.written[0], (unsigned long long)po.written[1]);
    fputs(line, stderr);
    if (sf) {
        fputs(line, sf);
        fclose(sf);
    }
    free(po.seen);
    if (po.written[0] == 0) {
        hl_report("no pair was found in the sources (is the path right?)");
        return 1;
    }
    return 0;
}
