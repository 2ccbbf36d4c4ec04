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
// The tool lives in mpi/ because `train` averages gradients with MPI; the other subcommands
// never initialise MPI.
//
// Exit status: 0 success, 1 runtime failure, 2 usage error. Errors read
// "conflux-headline: error: what (where)".
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/bpe.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "io/corpus.h"
#include "io/headline.h"
#include "io/news.h"
#include "io/rouge.h"
#include "io/runlog.h"
#include "io/shard.h"
#include "models/beam.h"
#include "models/common.h"
#include "models/encdec.h"
#include "models/rng.h"
#include "models/train.h"
#include "mpi/dp.h"
#include "mpi/hybrid_mpi.h"
#include "mpi/trainer.h"

#define TOOL "conflux-headline"

extern void openblas_set_num_threads(int);
extern char *openblas_get_config(void);

static int g_rank = 0, g_size = 1;  // among the trainer ranks (train)

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

// Parses a non-negative integer option; -1 on error.
static long parse_count(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 0) return -1;
    return v;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

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

// ---------------------------------------------------------------------------------------
// Shared: tokenizing text the way the model saw it in training.

typedef struct {
    Bpe *bpe;
    int lowercase;
    char *buf;
    size_t cap;
} Encoder;

static int encoder_open(Encoder *e, const char *dir, int lowercase, char *err) {
    memset(e, 0, sizeof *e);
    if (bpe_load(&e->bpe, dir, err) != 0) return -1;
    e->lowercase = lowercase;
    return 0;
}

static void encoder_close(Encoder *e) {
    bpe_free(e->bpe);
    free(e->buf);
    memset(e, 0, sizeof *e);
}

// Tokenizes n bytes of text (line breaks become spaces, lowercased when asked) into at most
// cap ids. Returns the number of ids written.
static size_t encoder_run(Encoder *e, const char *text, size_t n, int32_t *ids, size_t cap) {
    if (n + 1 > e->cap) {
        e->cap = n + 1 > 2 * e->cap ? n + 1 : 2 * e->cap;
        e->buf = realloc(e->buf, e->cap);
        CHECK(e->buf, "out of memory (%zu bytes)", e->cap);
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i] == '\n' || text[i] == '\r' || text[i] == '\t' ? ' ' : text[i];
        if (c == ' ' && (o == 0 || e->buf[o - 1] == ' ')) continue;
        e->buf[o++] = c;
    }
    while (o > 0 && e->buf[o - 1] == ' ') o--;
    if (e->lowercase) o = headline_lowercase(e->buf, o);
    size_t need = 0;
    bpe_encode(e->bpe, e->buf, o, ids, cap, &need);
    return need < cap ? need : cap;
}

// ---------------------------------------------------------------------------------------
// pairs

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

static int cmd_pairs(int argc, char **argv) {
    static const char usage[] =
        "usage: " TOOL " pairs --out DIR [--valid-percent P] [--min-body N] SOURCE...\n"
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
        "example (io/build-headline-pairs.sh runs this on what io/build-corpus.sh fetched):\n"
        "  " TOOL " pairs --out build/data/headline debtrans:build/data/debtrans/Translation-ru \\\n"
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
                return usage_err("pairs", "--valid-percent must be a number in [0, 100] (got '%s')", optarg);
            break;
        }
        case 'm':
            if ((min_body = parse_count(optarg)) < 0)
                return usage_err("pairs", "--min-body must be a count (got '%s')", optarg);
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: return usage_err("pairs", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!out_dir) return usage_err("pairs", "--out DIR is required");
    if (optind >= argc) return usage_err("pairs", "no SOURCE given");
    HeadlinePairFormat fmts[256];
    const char *paths[256];
    int n_src = 0;
    for (int i = optind; i < argc; i++) {
        const char *colon = strchr(argv[i], ':');
        char name[32];
        size_t l = colon ? (size_t)(colon - argv[i]) : 0;
        if (!colon || l == 0 || l >= sizeof name)
            return usage_err("pairs", "source '%s' is not FORMAT:PATH", argv[i]);
        memcpy(name, argv[i], l);
        name[l] = 0;
        if (headline_pair_format_parse(name, &fmts[n_src]) != 0)
            return usage_err("pairs", "unknown format '%s' in '%s' (debtrans, man, html)", name, argv[i]);
        if (n_src == 256) return usage_err("pairs", "more than 256 sources");
        paths[n_src++] = colon + 1;
    }
    char err[CX_ERRLEN];
    if (strlen(out_dir) > 4000) return usage_err("pairs", "--out path is too long");
    if (runlog_mkdirs(out_dir, err) != 0) {
        report("%s", err);
        return 1;
    }
    char tpath[2][4200], tmp[2][4300];
    PairsOut po = {.valid_percent = valid_percent};
    for (int v = 0; v < 2; v++) {
        snprintf(tpath[v], sizeof tpath[v], "%s/%s", out_dir, v ? "valid.tsv" : "train.tsv");
        snprintf(tmp[v], sizeof tmp[v], "%.4199s.tmp.%d", tpath[v], (int)getpid());
        if (!(po.out[v] = fopen(tmp[v], "w"))) {
            report("cannot write %s: %s", tmp[v], strerror(errno));
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
            report("%s", err);
            rc = 1;
        }
        for (size_t f = 0; f < nf; f++) {
            if (rc == 0 && (fmts[s] != HP_HTML || html_name(files[f]))) {
                size_t n = 0;
                char *data = read_file_gz(files[f], &n, err);
                if (!data) {
                    report("%s", err);
                    rc = 1;
                } else {
                    long r = headline_pairs_extract(fmts[s], data, n, (size_t)min_body, &per[s],
                                                    pairs_emit, &po, err);
                    free(data);
                    if (r < 0) {
                        report(po.failed ? "cannot write %s: %s" : "%s (%s)",
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
            report("cannot write %s: %s", tmp[v], strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0)
        for (int v = 0; v < 2 && rc == 0; v++)
            if (rename(tmp[v], tpath[v]) != 0) {
                report("cannot rename %s: %s", tmp[v], strerror(errno));
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
        report("no pair was found in the sources (is the path right?)");
        return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// Reading articles: news files (io/news.h), TSV pairs or plain text lines.

enum { SRC_NEWS, SRC_TSV, SRC_TEXT };

typedef struct {
    int kind;
    NewsReader *news;
    gzFile gz;
    const char *path;
    char *line;
    size_t cap;
    uint64_t line_no, bad, too_long;
    NewsFormat news_fmt;  // the detected format (SRC_NEWS)
} ArticleReader;

#define MAX_LINE_BYTES ((size_t)8 << 20)

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

// kind_name: "auto", "ria", "lenta", "ods", "tsv", "text". auto: *.tsv(.gz) is tsv, else news.
static int reader_open(ArticleReader *r, const char *path, const char *kind_name, int allow_text,
                       char *err) {
    memset(r, 0, sizeof *r);
    r->path = path;
    int tsv = !strcmp(kind_name, "tsv") ||
              (!strcmp(kind_name, "auto") && (ends_with(path, ".tsv") || ends_with(path, ".tsv.gz")));
    int text = !strcmp(kind_name, "text");
    if (text && !allow_text) return cx_err(err, "--format text is not allowed here");
    if (tsv || text) {
        r->kind = tsv ? SRC_TSV : SRC_TEXT;
        r->gz = strcmp(path, "-") == 0 ? gzdopen(dup(0), "rb") : gzopen(path, "rb");
        if (!r->gz) return cx_err(err, "cannot open %s: %s", path, strerror(errno ? errno : ENOMEM));
        return 0;
    }
    NewsFormat f;
    if (news_format_parse(kind_name, &f) != 0)
        return cx_err(err, "unknown format '%s' (auto, ria, lenta, ods, tsv%s)", kind_name,
                      allow_text ? ", text" : "");
    r->kind = SRC_NEWS;
    r->news = news_open(path, f, NULL, err);
    if (!r->news) return -1;
    r->news_fmt = news_format(r->news);
    return 0;
}

// One line into r->line (without the newline). 1, 0 at the end, -1 with err.
static int read_line(ArticleReader *r, size_t *len, char *err) {
    size_t n = 0;
    int too_long = 0;
    for (;;) {
        if (n + 2 > r->cap) {
            r->cap = r->cap ? 2 * r->cap : 4096;
            r->line = realloc(r->line, r->cap);
            CHECK(r->line, "out of memory");
        }
        int c = gzgetc(r->gz);
        if (c < 0) {
            int e;
            const char *msg = gzerror(r->gz, &e);
            if (e != Z_OK && e != Z_STREAM_END)
                return cx_err(err, "cannot read %s: %s (line %llu)", r->path, msg,
                              (unsigned long long)r->line_no + 1);
            if (n == 0 && !too_long) return 0;
            break;
        }
        if (c == '\n') break;
        if (n < MAX_LINE_BYTES) r->line[n++] = (char)c;
        else too_long = 1;
    }
    r->line_no++;
    if (n > 0 && r->line[n - 1] == '\r') n--;
    r->line[n] = 0;
    *len = n;
    if (too_long) {
        r->too_long++;
        return 2;  // skipped
    }
    return 1;
}

// Next article: 1 with *title/*text (title NULL for text input), 0 at the end, -1 with err.
static int reader_next(ArticleReader *r, const char **title, size_t *title_n, const char **text,
                       size_t *text_n, uint64_t *line, char *err) {
    if (r->kind == SRC_NEWS) {
        NewsItem it;
        int rc = news_next(r->news, &it, err);
        if (rc != 1) return rc;
        *title = it.title, *title_n = it.title_bytes;
        *text = it.text, *text_n = it.text_bytes;
        *line = it.line;
        return 1;
    }
    for (;;) {
        size_t n = 0;
        int rc = read_line(r, &n, err);
        if (rc <= 0) return rc;
        if (rc == 2) {
            fprintf(stderr, TOOL ": %s:%llu: skipped (longer than %zu bytes)\n", r->path,
                    (unsigned long long)r->line_no, MAX_LINE_BYTES);
            continue;
        }
        *line = r->line_no;
        if (n == 0) continue;  // blank lines are skipped
        size_t bad = news_utf8_check(r->line, n);
        if (bad != n) {
            r->bad++;
            if (r->bad <= 20)
                fprintf(stderr, TOOL ": %s:%llu: skipped (invalid UTF-8 at byte %zu)\n", r->path,
                        (unsigned long long)r->line_no, bad + 1);
            continue;
        }
        if (r->kind == SRC_TEXT) {
            *title = NULL, *title_n = 0;
            *text = r->line, *text_n = n;
            return 1;
        }
        char *tab = memchr(r->line, '\t', n);
        if (!tab || tab == r->line || tab + 1 == r->line + n) {
            r->bad++;
            if (r->bad <= 20)
                fprintf(stderr, TOOL ": %s:%llu: skipped (%s)\n", r->path,
                        (unsigned long long)r->line_no,
                        !tab ? "no tab: expected title TAB body" : "empty title or body");
            continue;
        }
        *tab = 0;
        *title = r->line, *title_n = (size_t)(tab - r->line);
        *text = tab + 1, *text_n = n - (size_t)(tab + 1 - r->line);
        return 1;
    }
}

// Records skipped so far (news readers count their own).
static uint64_t reader_skipped(const ArticleReader *r) {
    if (r->kind == SRC_NEWS) {
        NewsStats st;
        news_stats(r->news, &st);
        return st.bad_rows;
    }
    return r->bad + r->too_long;
}

static void reader_close(ArticleReader *r) {
    if (r->news) news_close(r->news);
    if (r->gz) gzclose(r->gz);
    free(r->line);
    memset(r, 0, sizeof *r);
}

static const char *reader_kind_name(const ArticleReader *r) {
    return r->kind == SRC_TSV ? "tsv" : r->kind == SRC_TEXT ? "text" : news_format_name(r->news_fmt);
}

// The articles of several FILEs in turn, each opened when the one before it is read to
// the end: the read loop of prepare, generate and evaluate. Set the fields up to
// stdin_text_only in a zeroed struct; end with stream_close_file.
typedef struct {
    char *const *files;
    int n_files;
    int next;            // index of the file opened after the current one
    const char *format;  // as reader_open's kind_name
    int allow_text;      // as reader_open's
    int stdin_text_only; // "-" only with --format text or tsv (generate)
    int is_open;
    ArticleReader r;     // the current file (is_open)
    uint64_t skipped;    // records skipped as bad in the files opened so far
    // the current article (stream_next returned 1); title NULL for text input
    const char *title, *text;
    size_t title_n, text_n;
    uint64_t line;
} ArticleStream;

// Closes the current file, adding its skipped records to s->skipped.
static void stream_close_file(ArticleStream *s) {
    if (!s->is_open) return;
    s->skipped += reader_skipped(&s->r);
    reader_close(&s->r);
    s->is_open = 0;
}

// 1: the next article is in s->title..s->line; 2: the next file was just opened (s->r),
// before any of its articles are read; 0: every file was read; -1 with err: a file cannot
// be opened or read; -2 with err: stdin given with a news format (stdin_text_only).
static int stream_next(ArticleStream *s, char *err) {
    if (s->is_open) {
        int got = reader_next(&s->r, &s->title, &s->title_n, &s->text, &s->text_n, &s->line, err);
        if (got != 0) return got;
        stream_close_file(s);
    }
    if (s->next >= s->n_files) return 0;
    const char *path = s->files[s->next++];
    if (s->stdin_text_only && !strcmp(path, "-") && strcmp(s->format, "text") &&
        strcmp(s->format, "tsv")) {
        cx_err(err, "--format %s reads files, not stdin", s->format);
        return -2;
    }
    if (reader_open(&s->r, path, s->format, s->allow_text, err) != 0) return -1;
    s->is_open = 1;
    return 2;
}

// ---------------------------------------------------------------------------------------
// prepare

static int cmd_prepare(int argc, char **argv) {
    static const char usage[] =
        "usage: " TOOL " prepare --tokenizer DIR --out PAIRS.h5 [options] FILE...\n"
        "\n"
        "Tokenizes (article, headline) pairs into a pair shard for `train`. FILEs are news\n"
        "dumps read as they stream (plain or gzip): RIA JSON lines, Lenta.ru CSV, ODS CSV\n"
        "(io/news.h; bad records are reported with their line and skipped), or TSV files of\n"
        "title TAB body lines (from `pairs`). Articles become one line (paragraph breaks are\n"
        "spaces) and are cut to --max-src tokens, headlines to --max-tgt.\n"
        "\n"
        "  --tokenizer DIR   BPE tokenizer (vocab.json + merges.txt), the model's\n"
        "  --out FILE        pair shard to write (atomically)\n"
        "  --format F        auto (default: *.tsv is tsv, otherwise detected from the\n"
        "                    content), ria, lenta, ods or tsv\n"
        "  --max-src N       article tokens kept (default 512)\n"
        "  --max-tgt N       headline tokens kept (default 64)\n"
        "  --lowercase       lowercase articles and headlines (the RIA dump is lowercased; the\n"
        "                    flag is recorded in the shard and the model repeats it at generation)\n"
        "  --skip N          skip the first N articles (over all FILEs, in order; bad records\n"
        "                    do not count), as evaluate --skip does\n"
        "  --limit N         keep at most N pairs after the skipped ones (0: all)\n"
        "  --source LABEL    label stored in the shard (default: the first file's format)\n"
        "  -q, --quiet       no progress lines\n"
        "  -h, --help        this text\n"
        "\n"
        "examples:\n"
        "  " TOOL " prepare --tokenizer build/data/tokenizer --out build/data/headline/train.h5 \\\n"
        "      build/data/headline/train.tsv\n"
        "  " TOOL " prepare --tokenizer build/data/tokenizer --lowercase --limit 990000 \\\n"
        "      --out ria_train.h5 ria.json.gz\n"
        "  " TOOL " prepare --tokenizer build/data/tokenizer --lowercase --skip 990000 \\\n"
        "      --out ria_valid.h5 ria.json.gz\n";
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"out", required_argument, 0, 'o'},
        {"format", required_argument, 0, 'f'},    {"max-src", required_argument, 0, 's'},
        {"max-tgt", required_argument, 0, 'g'},   {"lowercase", no_argument, 0, 'l'},
        {"skip", required_argument, 0, 'k'},      {"limit", required_argument, 0, 'n'},
        {"source", required_argument, 0, 'S'},    {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    const char *tok_dir = NULL, *out = NULL, *format = "auto", *source = NULL;
    long max_src = 512, max_tgt = 64, skip = 0, limit = 0;
    int lowercase = 0, quiet = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "t:o:f:qh", opts, NULL)) != -1) {
        switch (c) {
        case 't': tok_dir = optarg; break;
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 's':
            if ((max_src = parse_count(optarg)) < 1)
                return usage_err("prepare", "--max-src must be a positive count (got '%s')", optarg);
            break;
        case 'g':
            if ((max_tgt = parse_count(optarg)) < 1)
                return usage_err("prepare", "--max-tgt must be a positive count (got '%s')", optarg);
            break;
        case 'l': lowercase = 1; break;
        case 'k':
            if ((skip = parse_count(optarg)) < 0)
                return usage_err("prepare", "--skip must be a count (got '%s')", optarg);
            break;
        case 'n':
            if ((limit = parse_count(optarg)) < 0)
                return usage_err("prepare", "--limit must be a count (got '%s')", optarg);
            break;
        case 'S': source = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return usage_err("prepare", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!tok_dir) return usage_err("prepare", "--tokenizer DIR is required");
    if (!out) return usage_err("prepare", "--out FILE is required");
    if (optind >= argc) return usage_err("prepare", "no input FILE given");
    if (strcmp(format, "auto") && strcmp(format, "tsv") && strcmp(format, "ria") &&
        strcmp(format, "lenta") && strcmp(format, "ods"))
        return usage_err("prepare", "unknown --format '%s' (auto, ria, lenta, ods, tsv)", format);
    if (source && strlen(source) >= 64) return usage_err("prepare", "--source is longer than 63 bytes");
    char err[CX_ERRLEN];
    Encoder enc;
    if (encoder_open(&enc, tok_dir, lowercase, err) != 0) {
        report("%s", err);
        return 1;
    }
    int32_t *src = cx_calloc((size_t)max_src, sizeof(int32_t));
    int32_t *tgt = cx_calloc((size_t)max_tgt, sizeof(int32_t));
    PairWriter *w = NULL;
    int rc = 0;
    uint64_t seen = 0, kept = 0, skipped_bad, empty = 0, trunc = 0, src_tok = 0, tgt_tok = 0;
    double t0 = cx_now(), t_last = t0;
    uint64_t bytes = 0;
    ArticleStream st = {.files = argv + optind, .n_files = argc - optind, .format = format};
    for (;;) {
        int got = stream_next(&st, err);
        if (got < 0) {
            report("%s", err);
            rc = 1;
            break;
        }
        if (got == 0) break;
        if (got == 2) {
            if (!w) {
                char label[64];
                snprintf(label, sizeof label, "%s", source ? source : reader_kind_name(&st.r));
                if (pairs_writer_open(&w, out, bpe_vocab_size(enc.bpe), bpe_fingerprint(enc.bpe),
                                      label, lowercase, err) != 0) {
                    report("%s", err);
                    rc = 1;
                    break;
                }
            }
            continue;
        }
        bytes += st.title_n + st.text_n;
        if (seen++ < (uint64_t)skip) continue;  // as evaluate --skip: articles read
        size_t ns = encoder_run(&enc, st.text, st.text_n, src, (size_t)max_src);
        size_t nt = encoder_run(&enc, st.title, st.title_n, tgt, (size_t)max_tgt);
        if (ns == 0 || nt == 0) {
            empty++;
            continue;
        }
        if (ns == (size_t)max_src) trunc++;
        if (pairs_writer_add(w, src, ns, tgt, nt, err) != 0) {
            report("%s", err);
            rc = 1;
            break;
        }
        kept++;
        src_tok += ns;
        tgt_tok += nt;
        if (limit && kept >= (uint64_t)limit) break;
        double now = cx_now();
        if (!quiet && now - t_last >= 5.0) {
            fprintf(stderr, "prepare: %llu pairs, %.1f MB of text, %.1f MB/s\n",
                    (unsigned long long)kept, (double)bytes / 1e6,
                    (double)bytes / 1e6 / (now - t0));
            t_last = now;
        }
    }
    stream_close_file(&st);
    skipped_bad = st.skipped;
    if (rc == 0 && kept == 0) {
        report("no usable pair in the input (%llu skipped as bad, %llu empty)",
               (unsigned long long)skipped_bad, (unsigned long long)empty);
        rc = 1;
    }
    if (rc == 0) {
        if (pairs_writer_close(w, err) != 0) {
            report("%s", err);
            rc = 1;
        }
    } else {
        pairs_writer_abort(w);
    }
    if (rc == 0 && !quiet)
        fprintf(stderr,
                "prepare: %s: %llu pairs (%llu skipped as bad records, %llu empty, %llu before "
                "--skip), mean %.1f article tokens (%.1f%% cut at %ld), %.1f headline tokens, "
                "%.1f s\n",
                out, (unsigned long long)kept, (unsigned long long)skipped_bad,
                (unsigned long long)empty, (unsigned long long)(seen < (uint64_t)skip ? seen : (uint64_t)skip),
                kept ? (double)src_tok / (double)kept : 0.0,
                kept ? 100.0 * (double)trunc / (double)kept : 0.0, max_src,
                kept ? (double)tgt_tok / (double)kept : 0.0, cx_now() - t0);
    free(src);
    free(tgt);
    encoder_close(&enc);
    return rc;
}

// ---------------------------------------------------------------------------------------
// train: the encoder-decoder recipe (io/tasks/recipe_encdec.c) through the trainer ranks'
// set-up and the run loop shared with conflux-train (mpi/trainer.h)

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

static int cmd_train(int argc, char **argv) {
    static const TrainerAlias aliases[] = {
        {"objective", "data.objective"}, {"train", "data.train"},   {"valid", "data.valid"},
        {"init-encoder", "init.encoder"}, {"init", "init.from"},    {"steps", "train.steps"},
        {"run-dir", "run.dir"},           {0, 0}};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(train_usage, stdout);
            return 0;
        }
    TrainerTool t = {.tool = TOOL, .command = "train", .usage = train_usage,
                     .recipe = recipe_find("encdec"), .aliases = aliases};
    return trainer_tool_main(argc, argv, &t);
}

// ---------------------------------------------------------------------------------------
// generate / evaluate: a model loaded for decoding

typedef struct {
    int beam, min_len, max_len, block_trigrams, src_len, threads;
    float alpha;
} GenOpts;  // -1 (alpha < 0): the checkpoint's [generate] / [data] value

typedef struct {
    HeadlineConfig cfg;
    EncDec *m;
    EncDecGen *g;
    Encoder enc;
    BeamConfig bc;
    int32_t banned[4];
    int32_t *src, *out;
    char *text;
    size_t text_cap;
    int Ts;
    long n_tokens;  // generated tokens (EOS excluded) over all calls
} Generator;

static void gen_close(Generator *G) {
    encdec_gen_free(G->g);
    encdec_free(G->m);
    encoder_close(&G->enc);
    free(G->src);
    free(G->out);
    free(G->text);
    memset(G, 0, sizeof *G);
}

static int gen_open(Generator *G, const char *ckpt_path, const char *tok_dir, const GenOpts *o,
                    char *err) {
    memset(G, 0, sizeof *G);
    Ckpt *ck = NULL;
    if (ckpt_open(&ck, ckpt_path, err) != 0) return -1;
    int rc = -1;
    if (strcmp(ckpt_model(ck), "encdec") != 0) {
        cx_err(err, "%s holds a '%s' model, not an encoder-decoder (train one with `" TOOL " train`)",
               ckpt_path, ckpt_model(ck));
        goto out;
    }
    headline_config_defaults(&G->cfg);
    if (headline_config_load_string(&G->cfg, ckpt_config_text(ck), ckpt_path, err) != 0) goto out;
    HeadlineConfig *c = &G->cfg;
    if (o->beam >= 0) c->generate.beam = o->beam;
    if (o->min_len >= 0) c->generate.min_len = o->min_len;
    if (o->max_len >= 0) c->generate.max_len = o->max_len;
    if (o->block_trigrams >= 0) c->generate.block_trigrams = o->block_trigrams;
    if (o->alpha >= 0) c->generate.alpha = o->alpha;
    if (o->src_len >= 0) c->data.src_len = o->src_len;
    if (c->generate.beam < 1) {
        cx_err(err, "--beam must be >= 1");
        goto out;
    }
    if (c->generate.max_len < 1 || c->generate.max_len > c->model.dec_max_position) {
        cx_err(err, "--max-len must be in [1, %d] (the decoder's positions)", c->model.dec_max_position);
        goto out;
    }
    if (c->generate.min_len >= c->generate.max_len) {
        cx_err(err, "--min-len (%d) must be less than --max-len (%d): EOS counts as a token",
               c->generate.min_len, c->generate.max_len);
        goto out;
    }
    if (c->data.src_len < 3 || c->data.src_len > c->model.enc.max_position) {
        cx_err(err, "--src-len must be in [3, %d] (the encoder's positions)", c->model.enc.max_position);
        goto out;
    }
    if (encdec_config_check(&c->model, err) != 0) goto out;
    G->Ts = c->data.src_len;
    G->m = encdec_create(&c->model, 1, G->Ts, 2, 0);
    if (ckpt_read_params(ck, encdec_specs(G->m), encdec_n_specs(G->m), encdec_params(G->m), err) != 0)
        goto out;
    const char *td = tok_dir ? tok_dir : c->data.tokenizer;
    if (encoder_open(&G->enc, td, c->data.lowercase, err) != 0) {
        char e2[CX_ERRLEN];
        snprintf(e2, sizeof e2, "%s", err);
        cx_err(err, "%s%s", e2, tok_dir ? "" : " (the checkpoint's data.tokenizer; --tokenizer DIR overrides it)");
        goto out;
    }
    if (bpe_vocab_size(G->enc.bpe) > c->model.enc.vocab_size) {
        cx_err(err, "tokenizer %s has %d tokens, more than the model's %d", td,
               bpe_vocab_size(G->enc.bpe), c->model.enc.vocab_size);
        goto out;
    }
    G->g = encdec_gen_create(G->m, c->generate.beam, c->generate.max_len);
    G->banned[0] = ED_PAD, G->banned[1] = ED_UNK, G->banned[2] = ED_BOS, G->banned[3] = ED_MASK;
    G->bc = (BeamConfig){.beam_size = c->generate.beam, .min_len = c->generate.min_len,
                         .max_len = c->generate.max_len, .alpha = c->generate.alpha,
                         .block_trigrams = c->generate.block_trigrams, .bos = ED_BOS,
                         .eos = ED_EOS, .banned = G->banned, .n_banned = 4};
    G->src = cx_calloc((size_t)G->Ts, sizeof(int32_t));
    G->out = cx_calloc((size_t)c->generate.max_len, sizeof(int32_t));
    rc = 0;
out:
    ckpt_close(ck);
    if (rc != 0) gen_close(G);
    return rc;
}

// Generates the headline of n bytes of article text. Returns it (NUL-terminated, owned by G,
// valid until the next call), or NULL with err.
static const char *gen_run(Generator *G, const char *text, size_t n, char *err) {
    size_t ns = encoder_run(&G->enc, text, n, G->src + 1, (size_t)G->Ts - 2);
    G->src[0] = ED_BOS;
    G->src[ns + 1] = ED_EOS;
    int len = 0;
    double score;
    if (encdec_generate(G->g, &G->bc, G->src, NULL, (int)ns + 2, G->out, &len, &score, err) != 0)
        return NULL;
    if (len > 0 && G->out[len - 1] == ED_EOS) len--;
    G->n_tokens += len;
    size_t need = bpe_decode(G->enc.bpe, G->out, (size_t)len, NULL, 0);
    if (need + 1 > G->text_cap) {
        G->text_cap = need + 64;
        G->text = realloc(G->text, G->text_cap);
        CHECK(G->text, "out of memory");
    }
    bpe_decode(G->enc.bpe, G->out, (size_t)len, G->text, need);
    size_t o = 0;
    for (size_t i = 0; i < need; i++) {
        char ch = G->text[i] == '\n' || G->text[i] == '\t' || G->text[i] == '\r' ? ' ' : G->text[i];
        if (ch == ' ' && (o == 0 || G->text[o - 1] == ' ')) continue;
        G->text[o++] = ch;
    }
    while (o > 0 && G->text[o - 1] == ' ') o--;
    G->text[o] = 0;
    return G->text;
}

#define GEN_OPTIONS_HELP                                                                       \
    "  --checkpoint CKPT    encdec checkpoint (" TOOL " train)\n"                              \
    "  --tokenizer DIR      tokenizer (default: the checkpoint's data.tokenizer)\n"            \
    "  --beam K             beam size; 1 = greedy search (default: the checkpoint's, 4)\n"     \
    "  --min-len N          EOS is forbidden while fewer than N tokens were generated\n"    \
    "                       (default 3; below --max-len)\n"                                 \
    "  --max-len N          at most N tokens, EOS included (default 30)\n"                  \
    "  --alpha A            GNMT length penalty ((5 + len) / 6)^A (default 0.9)\n"             \
    "  --block-trigrams     no trigram twice in a headline (default)\n"                        \
    "  --no-block-trigrams  allow repeated trigrams\n"                                         \
    "  --src-len N          article tokens fed to the encoder, [CLS]/[SEP] included (default:\n" \
    "                       the training data.src_len)\n"                                       \
    "  --threads N          OpenBLAS threads (default: OpenBLAS's choice)\n"

enum { OPT_BEAM = 1000, OPT_MINLEN, OPT_MAXLEN, OPT_ALPHA, OPT_BLOCK, OPT_NOBLOCK, OPT_SRCLEN,
       OPT_THREADS, OPT_STATS, OPT_LIMIT, OPT_SKIP, OPT_DATELINE, OPT_HYPS_OUT, OPT_SHOW,
       OPT_TOKENIZER, OPT_CKPT, OPT_FORMAT };

#define GEN_LONG_OPTIONS                                                                       \
    {"checkpoint", required_argument, 0, OPT_CKPT},                                            \
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},                                    \
        {"beam", required_argument, 0, OPT_BEAM}, {"min-len", required_argument, 0, OPT_MINLEN}, \
        {"max-len", required_argument, 0, OPT_MAXLEN},                                         \
        {"alpha", required_argument, 0, OPT_ALPHA},                                            \
        {"block-trigrams", no_argument, 0, OPT_BLOCK},                                         \
        {"no-block-trigrams", no_argument, 0, OPT_NOBLOCK},                                    \
        {"src-len", required_argument, 0, OPT_SRCLEN},                                         \
        {"threads", required_argument, 0, OPT_THREADS},                                        \
        {"format", required_argument, 0, OPT_FORMAT}, {"limit", required_argument, 0, OPT_LIMIT}

// Handles a generation option; 1 handled, 0 not one, 2 usage error (printed).
static int gen_option(const char *cmd, int c, GenOpts *o, const char **ckpt, const char **tok) {
    long v;
    switch (c) {
    case OPT_CKPT: *ckpt = optarg; return 1;
    case OPT_TOKENIZER: *tok = optarg; return 1;
    case OPT_BEAM:
        if ((v = parse_count(optarg)) < 1 || v > 64)
            return usage_err(cmd, "--beam must be in [1, 64] (got '%s')", optarg), 2;
        o->beam = (int)v;
        return 1;
    case OPT_MINLEN:
        if ((v = parse_count(optarg)) < 0 || v > 10000)
            return usage_err(cmd, "--min-len must be a count (got '%s')", optarg), 2;
        o->min_len = (int)v;
        return 1;
    case OPT_MAXLEN:
        if ((v = parse_count(optarg)) < 1 || v > 10000)
            return usage_err(cmd, "--max-len must be a positive count (got '%s')", optarg), 2;
        o->max_len = (int)v;
        return 1;
    case OPT_ALPHA:
        if (parse_float(optarg, &o->alpha) != 0 || o->alpha < 0)
            return usage_err(cmd, "--alpha must be a number >= 0 (got '%s')", optarg), 2;
        return 1;
    case OPT_BLOCK: o->block_trigrams = 1; return 1;
    case OPT_NOBLOCK: o->block_trigrams = 0; return 1;
    case OPT_SRCLEN:
        if ((v = parse_count(optarg)) < 3 || v > 100000)
            return usage_err(cmd, "--src-len must be >= 3 (got '%s')", optarg), 2;
        o->src_len = (int)v;
        return 1;
    case OPT_THREADS:
        if ((v = parse_count(optarg)) < 1 || v > 1024)
            return usage_err(cmd, "--threads must be a positive count (got '%s')", optarg), 2;
        o->threads = (int)v;
        return 1;
    }
    return 0;
}

static int cmd_generate(int argc, char **argv) {
    static const char usage[] =
        "usage: " TOOL " generate --checkpoint CKPT [options] [FILE...]\n"
        "\n"
        "Writes one headline per article to stdout, one per line. Articles come from FILEs or,\n"
        "without FILE (or with \"-\"), from stdin: by default one article per line (plain text);\n"
        "--format ria|lenta|ods|auto reads news dumps (the title column is ignored), --format tsv\n"
        "title TAB body lines. Articles are tokenized as in training (lowercased when the\n"
        "training data was) and cut to the encoder's length.\n"
        "\n" GEN_OPTIONS_HELP
        "  --format F           text (default), tsv, ria, lenta, ods or auto\n"
        "  --limit N            stop after N articles\n"
        "  --stats              print the number of headlines and headlines/s to stderr\n"
        "  -h, --help           this text\n"
        "\n"
        "examples:\n"
        "  echo 'Программа для просмотра и печати файлов PDF с поддержкой закладок.' |\n"
        "      " TOOL " generate --checkpoint runs/hl/latest.h5\n"
        "  " TOOL " generate --checkpoint runs/hl/latest.h5 --format ria --beam 4 \\\n"
        "      --block-trigrams --alpha 0.9 --max-len 24 ria_test.json\n";
    static const struct option opts[] = {GEN_LONG_OPTIONS,
                                          {"stats", no_argument, 0, OPT_STATS},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    GenOpts o = {-1, -1, -1, -1, -1, 0, -1.0f};
    const char *ckpt = NULL, *tok = NULL, *format = "text";
    long limit = 0;
    int stats = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int g = gen_option("generate", c, &o, &ckpt, &tok);
        if (g == 2) return 2;
        if (g == 1) continue;
        switch (c) {
        case OPT_FORMAT: format = optarg; break;
        case OPT_LIMIT:
            if ((limit = parse_count(optarg)) < 0)
                return usage_err("generate", "--limit must be a count (got '%s')", optarg);
            break;
        case OPT_STATS: stats = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return usage_err("generate", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!ckpt) return usage_err("generate", "--checkpoint CKPT is required");
    if (strcmp(format, "text") && strcmp(format, "tsv") && strcmp(format, "auto") &&
        strcmp(format, "ria") && strcmp(format, "lenta") && strcmp(format, "ods"))
        return usage_err("generate", "unknown --format '%s' (text, tsv, ria, lenta, ods, auto)", format);
    if (o.threads > 0) openblas_set_num_threads(o.threads);
    char err[CX_ERRLEN];
    Generator G;
    if (gen_open(&G, ckpt, tok, &o, err) != 0) {
        report("%s", err);
        return 1;
    }
    static char *const stdin_only[] = {"-"};
    char *const *files = optind < argc ? argv + optind : stdin_only;
    int n_files = optind < argc ? argc - optind : 1;
    long done = 0;
    int rc = 0;
    double t0 = cx_now();
    ArticleStream st = {.files = files, .n_files = n_files, .format = format, .allow_text = 1,
                        .stdin_text_only = 1};
    for (;;) {
        int got = stream_next(&st, err);
        if (got < 0) {
            report("%s", err);
            rc = got == -2 ? 2 : 1;
        }
        if (got <= 0) break;
        if (got == 2) continue;
        const char *h = gen_run(&G, st.text, st.text_n, err);
        if (!h) {
            report("%s (%s:%llu)", err, st.r.path, (unsigned long long)st.line);
            rc = 1;
            break;
        }
        if (printf("%s\n", h) < 0 || fflush(stdout) != 0) {
            report("cannot write the output: %s", strerror(errno));
            rc = 1;
            break;
        }
        if (limit && ++done >= limit) break;
        if (!limit) done++;
    }
    stream_close_file(&st);
    double dt = cx_now() - t0;
    if (stats && rc == 0)
        fprintf(stderr, "generate: %ld headlines in %.2f s: %.2f headlines/s, %.1f tokens each "
                        "(beam %d, max_len %d)\n",
                done, dt, dt > 0 ? done / dt : 0.0, done ? (double)G.n_tokens / done : 0.0,
                G.bc.beam_size, G.bc.max_len);
    gen_close(&G);
    return rc;
}

// ---------------------------------------------------------------------------------------
// evaluate

typedef struct {
    RougeMean mean[2];  // standard, paper
} Board;

static int board_add(Board *b, RougeScorer *sc[2], const char *hyp, const char *ref, char *err) {
    for (int m = 0; m < 2; m++) {
        RougeScores s;
        if (rouge_score(sc[m], hyp, strlen(hyp), ref, strlen(ref), &s, NULL, err) != 0) return -1;
        rouge_mean_add(&b->mean[m], &s);
    }
    return 0;
}

static void board_print(const Board *b, const char *name) {
    static const char *const modes[2] = {"standard", "paper"};
    for (int m = 1; m >= 0; m--) {
        RougeScores s = rouge_mean_get(&b->mean[m]);
        printf("%-38s %-9s %6.2f %6.2f %6.2f\n", name, modes[m], 100 * s.r1.f, 100 * s.r2.f,
               100 * s.rl.f);
    }
}

static void board_line(const Board *b, const char *key) {
    for (int m = 1; m >= 0; m--) {
        RougeScores s = rouge_mean_get(&b->mean[m]);
        printf(" %s_%s=%.2f/%.2f/%.2f", key, m ? "paper" : "standard", 100 * s.r1.f,
               100 * s.r2.f, 100 * s.rl.f);
    }
}

static int cmd_evaluate(int argc, char **argv) {
    static const char usage[] =
        "usage: " TOOL " evaluate [--checkpoint CKPT] [options] FILE...\n"
        "\n"
        "Scores headlines against the titles of news files (RIA JSON lines, Lenta.ru or ODS CSV,\n"
        "plain or gzip, format detected; or title TAB body TSV) with ROUGE-1/2/L F (x100,\n"
        "macro-averaged over the articles, lowercased text, whitespace tokens) in both modes of\n"
        "io/rouge.h: paper (the rouge 0.3.2 package behind the published scores) and standard.\n"
        "Next to the model it prints the first-sentence baseline computed as published: the\n"
        "first sentence of the body, and for RIA the second one (the first is the dateline\n"
        "\"москва, 1 дек — риа новости.\") when there are two or more. Without --checkpoint only\n"
        "the baseline is scored. All FILEs together form one test set.\n"
        "\n" GEN_OPTIONS_HELP
        "  --format F           auto (default), ria, lenta, ods or tsv\n"
        "  --dateline D         auto (default: skip it for RIA only), skip or keep\n"
        "  --skip N             skip the first N articles (e.g. the training part of a dump)\n"
        "  --limit N            score at most N articles\n"
        "  --hyps-out FILE      write reference TAB model TAB baseline lines\n"
        "  --show N             print the first N examples to stderr\n"
        "  -h, --help           this text\n"
        "\n"
        "Prints a table and a last line\n"
        "  headline-eval: n=N model_paper=R1/R2/RL model_standard=... lead_paper=... lead_standard=...\n"
        "\n"
        "examples:\n"
        "  " TOOL " evaluate ../shared/data/news/ria_20.json            # baseline only\n"
        "  " TOOL " evaluate --checkpoint runs/hl/latest.h5 --beam 4 ria_20.json\n"
        "  " TOOL " evaluate --checkpoint runs/ria/latest.h5 --skip 990000 ria.json.gz\n";
    static const struct option opts[] = {GEN_LONG_OPTIONS,
                                          {"skip", required_argument, 0, OPT_SKIP},
                                          {"dateline", required_argument, 0, OPT_DATELINE},
                                          {"hyps-out", required_argument, 0, OPT_HYPS_OUT},
                                          {"show", required_argument, 0, OPT_SHOW},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    GenOpts o = {-1, -1, -1, -1, -1, 0, -1.0f};
    const char *ckpt = NULL, *tok = NULL, *format = "auto", *dateline = "auto", *hyps_out = NULL;
    long limit = 0, skip = 0, show = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int g = gen_option("evaluate", c, &o, &ckpt, &tok);
        if (g == 2) return 2;
        if (g == 1) continue;
        switch (c) {
        case OPT_FORMAT: format = optarg; break;
        case OPT_LIMIT:
            if ((limit = parse_count(optarg)) < 0)
                return usage_err("evaluate", "--limit must be a count (got '%s')", optarg);
            break;
        case OPT_SKIP:
            if ((skip = parse_count(optarg)) < 0)
                return usage_err("evaluate", "--skip must be a count (got '%s')", optarg);
            break;
        case OPT_SHOW:
            if ((show = parse_count(optarg)) < 0)
                return usage_err("evaluate", "--show must be a count (got '%s')", optarg);
            break;
        case OPT_DATELINE:
            if (strcmp(optarg, "auto") && strcmp(optarg, "skip") && strcmp(optarg, "keep"))
                return usage_err("evaluate", "--dateline must be auto, skip or keep (got '%s')", optarg);
            dateline = optarg;
            break;
        case OPT_HYPS_OUT: hyps_out = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return usage_err("evaluate", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return usage_err("evaluate", "no news FILE given");
    if (strcmp(format, "auto") && strcmp(format, "tsv") && strcmp(format, "ria") &&
        strcmp(format, "lenta") && strcmp(format, "ods"))
        return usage_err("evaluate", "unknown --format '%s' (auto, ria, lenta, ods, tsv)", format);
    if (o.threads > 0) openblas_set_num_threads(o.threads);
    char err[CX_ERRLEN];
    Generator G;
    int have_model = ckpt != NULL;
    if (have_model && gen_open(&G, ckpt, tok, &o, err) != 0) {
        report("%s", err);
        return 1;
    }
    RougeScorer *sc[2] = {NULL, NULL};
    for (int m = 0; m < 2; m++) {
        RougeOptions ro = {.mode = m ? ROUGE_PAPER : ROUGE_STANDARD, .keep_case = 0};
        if (rouge_scorer_new(&sc[m], &ro, err) != 0) {
            report("%s", err);
            return 1;
        }
    }
    FILE *hf = NULL;
    if (hyps_out && !(hf = fopen(hyps_out, "w"))) {
        report("cannot write %s: %s", hyps_out, strerror(errno));
        return 1;
    }
    Board model = {0}, lead = {0};
    long n = 0, seen = 0, skipped_bad, n_dateline = 0;
    char kinds[128] = "";
    int rc = 0;
    char *lead_buf = NULL;
    size_t lead_cap = 0;
    double t0 = cx_now(), t_last = t0;
    int skip_dl = 0;  // the current file's
    ArticleStream st = {.files = argv + optind, .n_files = argc - optind, .format = format};
    for (;;) {
        int got = stream_next(&st, err);
        if (got < 0) {
            report("%s", err);
            rc = 1;
        }
        if (got <= 0) break;
        if (got == 2) {
            const char *kn = reader_kind_name(&st.r);
            if (!strstr(kinds, kn) && strlen(kinds) + strlen(kn) + 2 < sizeof kinds) {
                if (kinds[0]) strcat(kinds, "+");
                strcat(kinds, kn);
            }
            skip_dl = !strcmp(dateline, "skip") ||
                      (!strcmp(dateline, "auto") && st.r.kind == SRC_NEWS &&
                       st.r.news_fmt == NEWS_FMT_RIA);
            continue;
        }
        const char *title = st.title, *text = st.text, *path = st.r.path;
        size_t tn = st.title_n, xn = st.text_n;
        if (seen++ < skip) continue;
        if (xn + 1 > lead_cap) {
            lead_cap = 2 * (xn + 1);
            lead_buf = realloc(lead_buf, lead_cap);
            CHECK(lead_buf, "out of memory");
        }
        headline_first_sentence(text, xn, skip_dl, lead_buf);
        n_dateline += skip_dl;
        char *ref = strndup(title, tn);
        CHECK(ref, "out of memory");
        const char *hyp = "";
        if (have_model && !(hyp = gen_run(&G, text, xn, err))) {
            report("%s (%s:%llu)", err, path, (unsigned long long)st.line);
            free(ref);
            rc = 1;
            break;
        }
        if ((have_model && board_add(&model, sc, hyp, ref, err) != 0) ||
            board_add(&lead, sc, lead_buf, ref, err) != 0) {
            report("%s (%s:%llu)", err, path, (unsigned long long)st.line);
            free(ref);
            rc = 1;
            break;
        }
        if (hf) fprintf(hf, "%s\t%s\t%s\n", ref, hyp, lead_buf);
        if (n < show)
            fprintf(stderr, "[%ld] reference: %s\n     model:     %s\n     first sentence: %s\n",
                    n + 1, ref, have_model ? hyp : "-", lead_buf);
        free(ref);
        n++;
        double now = cx_now();
        if (now - t_last >= 10.0) {
            fprintf(stderr, "evaluate: %ld articles, %.1f/s\n", n, n / (now - t0));
            t_last = now;
        }
        if (limit && n >= limit) break;
    }
    stream_close_file(&st);
    skipped_bad = (long)st.skipped;
    free(lead_buf);
    if (hf && fclose(hf) != 0 && rc == 0) {
        report("cannot write %s: %s", hyps_out, strerror(errno));
        rc = 1;
    }
    if (rc == 0 && n == 0) {
        report("no article to score (%ld skipped as bad records)", skipped_bad);
        rc = 1;
    }
    if (rc == 0) {
        printf("%ld articles (%s), %ld bad records skipped; ROUGE F x100, macro average, lowercased\n",
               n, kinds, skipped_bad);
        printf("%-38s %-9s %6s %6s %6s\n", "system", "mode", "R-1", "R-2", "R-L");
        if (have_model) {
            char name[96];
            snprintf(name, sizeof name, "model (%s %d)", G.bc.beam_size > 1 ? "beam" : "greedy",
                     G.bc.beam_size);
            board_print(&model, name);
        }
        board_print(&lead, n_dateline == n ? "first sentence (dateline skipped)"
                           : n_dateline ? "first sentence (RIA dateline skipped)"
                                        : "first sentence");
        printf("headline-eval: n=%ld", n);
        if (have_model) board_line(&model, "model");
        board_line(&lead, "lead");
        printf("\n");
    }
    for (int m = 0; m < 2; m++) rouge_scorer_free(sc[m]);
    if (have_model) gen_close(&G);
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
    if (!strcmp(cmd, "pairs")) return cmd_pairs(argc - 1, argv + 1);
    if (!strcmp(cmd, "prepare")) return cmd_prepare(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "evaluate")) return cmd_evaluate(argc - 1, argv + 1);
    fprintf(stderr, TOOL ": error: unknown command '%s' (pairs, prepare, train, generate, evaluate; see --help)\n", cmd);
    return 2;
}
