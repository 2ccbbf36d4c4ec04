// conflux-corpus: builds the plain-text pretraining corpus (one document per line, split
// into train and validation) from files of Russian text in several formats. See
// io/corpus/corpus.h for what each format's extractor keeps and how documents are filtered;
// io/corpus/build-corpus.sh fetches the Debian packages and calls this tool.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/corpus/corpus.h"
#include "io/news/news.h"
#include "models/common.h"

static const char *const TOOL = "conflux-corpus";

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s --out DIR [options] SOURCE...\n"
            "\n"
            "Extracts Russian text from SOURCEs, cleans and deduplicates it, and writes\n"
            "DIR/train.txt and DIR/valid.txt (one document per line, UTF-8) and DIR/stats.txt.\n"
            "Each file is written to a temporary name and renamed when complete.\n"
            "\n"
            "SOURCE is [LABEL=]FORMAT[,min=N]:PATH\n"
            "  FORMAT  text | fortune | man | html | xml | xhp | debtrans | mo | news\n"
            "          (news: RIA JSON lines, Lenta.ru or ODS CSV, streamed, gzip or plain\n"
            "          by content; each article, title first, is a document)\n"
            "  PATH    a file (taken whatever its name) or a directory, walked recursively in\n"
            "          sorted order (symbolic links are skipped; files are picked by name:\n"
            "          html *.html *.htm, xml *.xml *.page, xhp *.xhp, mo *.mo, fortune all\n"
            "          but *.dat, others all). Files ending in .gz are decompressed (gzip -dc).\n"
            "  LABEL   name under which the source is counted in the statistics (default:\n"
            "          the format); several sources may share a label.\n"
            "  min=N   minimum document length for this source (default: --min-chars).\n"
            "\n"
            "options:\n"
            "  --out DIR             output directory (created if missing)\n"
            "  --valid-percent P     share of documents in valid.txt, 0..100 (default 3)\n"
            "  --min-chars N         drop documents shorter than N characters (default 20)\n"
            "  --max-chars N         cut longer documents into lines of about N characters at\n"
            "                        paragraph boundaries; 0: never (default 20000)\n"
            "  --min-cyrillic F      share of letters that must be Cyrillic in a document,\n"
            "                        0..1 (default 0.5; paragraphs need 0.3)\n"
            "  --no-para-dedup       keep paragraphs already seen in earlier documents\n"
            "  --quiet               no progress on stderr\n"
            "  --help                this text\n"
            "\n"
            "Exit status: 0 success, 1 runtime failure, 2 usage error.\n"
            "example:\n"
            "  %s --out build/data/corpus fortunes=fortune:x/usr/share/games/fortunes/ru \\\n"
            "      man:x/usr/share/man/ru debtrans:Translation-ru\n",
            TOOL, TOOL);
}

// Prints "conflux-corpus: error: ... (try --help)" and returns the usage exit status.
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: error: ", TOOL);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try --help)\n");
    return 2;
}

typedef struct {
    char label[64];
    CorpusFormat fmt;
    long min_chars;  // -1: the global value
    const char *path;
} Spec;

// Parses [LABEL=]FORMAT[,min=N]:PATH. Returns 0, or -1 with err filled.
static int parse_spec(const char *arg, Spec *sp, char *err) {
    const char *colon = strchr(arg, ':');
    if (!colon || colon[1] == '\0')
        return cx_err(err, "source '%s' is not [LABEL=]FORMAT[,min=N]:PATH", arg);
    char head[128];
    size_t hn = (size_t)(colon - arg);
    if (hn >= sizeof head) return cx_err(err, "source '%s': label and format too long", arg);
    memcpy(head, arg, hn);
    head[hn] = '\0';
    sp->path = colon + 1;
    sp->min_chars = -1;
    char *fmt = head;
    char *eq = strchr(head, '='), *comma = strchr(head, ',');
    if (eq && (!comma || eq < comma)) {
        *eq = '\0';
        if (head[0] == '\0' || strlen(head) >= sizeof sp->label)
            return cx_err(err, "source '%s': bad label", arg);
        for (const char *c = head; *c; c++)
            if (!(((*c | 0x20) >= 'a' && (*c | 0x20) <= 'z') || (*c >= '0' && *c <= '9') ||
                  *c == '-' || *c == '_' || *c == '.'))
                return cx_err(err, "source '%s': label may hold only letters, digits, -_.",
                              arg);
        memcpy(sp->label, head, strlen(head) + 1);  // length checked above
        fmt = eq + 1;
    } else {
        sp->label[0] = '\0';
    }
    comma = strchr(fmt, ',');
    if (comma) {
        *comma = '\0';
        const char *opt = comma + 1;
        char *end;
        if (strncmp(opt, "min=", 4) != 0)
            return cx_err(err, "source '%s': unknown option '%s'", arg, opt);
        errno = 0;
        long v = strtol(opt + 4, &end, 10);
        if (errno || *end || end == opt + 4 || v < 0)
            return cx_err(err, "source '%s': bad min= value", arg);
        sp->min_chars = v;
    }
    if (corpus_format_parse(fmt, &sp->fmt) != 0)
        return cx_err(err, "source '%s': unknown format '%s'", arg, fmt);
    if (sp->label[0] == '\0') memcpy(sp->label, fmt, strlen(fmt) + 1);  // a known name
    return 0;
}

// ---- file lists ----

typedef struct {
    char **path;
    size_t n, cap;
} PathList;

static void paths_add(PathList *l, const char *p) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->path = realloc(l->path, l->cap * sizeof *l->path);
        CHECK(l->path != NULL, "out of memory");
    }
    l->path[l->n] = strdup(p);
    CHECK(l->path[l->n] != NULL, "out of memory");
    l->n++;
}

static void paths_free(PathList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->path[i]);
    free(l->path);
    memset(l, 0, sizeof *l);
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Adds the regular files under dir accepted by fmt, in byte-wise sorted order.
static int walk(const char *dir, CorpusFormat fmt, PathList *out, char *err) {
    DIR *d = opendir(dir);
    if (!d) return cx_err(err, "cannot open directory: %s (%s)", strerror(errno), dir);
    PathList names = {0};
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        paths_add(&names, e->d_name);
    }
    closedir(d);
    if (names.n > 1) qsort(names.path, names.n, sizeof *names.path, str_cmp);  // empty dir: path is NULL
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0; i++) {
        size_t len = strlen(dir) + strlen(names.path[i]) + 2;
        char *p = malloc(len);
        CHECK(p != NULL, "out of memory");
        snprintf(p, len, "%s/%s", dir, names.path[i]);
        struct stat st;
        if (lstat(p, &st) != 0) {
            rc = cx_err(err, "cannot stat: %s (%s)", strerror(errno), p);
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(p, fmt, out, err);
        } else if (S_ISREG(st.st_mode) && corpus_format_accepts(fmt, p)) {
            paths_add(out, p);
        }
        free(p);
    }
    paths_free(&names);
    return rc;
}

// ---- reading ----

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

// Appends everything readable from fd to *buf at *n (grown as needed). Returns 0, or
// -1 with errno set.
static int read_all(int fd, char **buf, size_t *cap, size_t *n) {
    for (;;) {
        if (*cap - *n < 65536) {
            size_t c = *cap ? *cap * 2 : (size_t)1 << 20;
            char *p = realloc(*buf, c);
            CHECK(p != NULL, "out of memory (%zu bytes)", c);
            *buf = p;
            *cap = c;
        }
        ssize_t r = read(fd, *buf + *n, *cap - *n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 0;
        *n += (size_t)r;
    }
}

// Decompresses a .gz file with gzip(1) (Essential in Debian, so no library is needed)
// into *buf. Returns 0, or -1 with err filled.
static int read_gzip(const char *path, char **buf, size_t *cap, size_t *n_bytes, char *err) {
    int fd[2];
    if (pipe(fd) != 0) return cx_err(err, "pipe: %s (%s)", strerror(errno), path);
    pid_t pid = fork();  // the child only execs or _exits: no stdio buffers are flushed twice
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return cx_err(err, "fork: %s (%s)", strerror(errno), path);
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        execlp("gzip", "gzip", "-dc", "--", path, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    int rd = read_all(fd[0], buf, cap, &n);
    int read_errno = errno;
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (rd != 0) return cx_err(err, "read error: %s (%s)", strerror(read_errno), path);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return cx_err(err, "cannot run gzip to decompress (%s)", path);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cx_err(err, "corrupt gzip data: gzip -dc failed (%s)", path);
    *n_bytes = n;
    return 0;
}

// Reads a whole file (decompressing .gz) into *buf (grown as needed). Returns 0, or -1.
static int read_file(const char *path, char **buf, size_t *cap, size_t *n_bytes,
                     uint64_t *disk_bytes, char *err) {
    struct stat st;
    if (stat(path, &st) != 0) return cx_err(err, "cannot stat: %s (%s)", strerror(errno), path);
    *disk_bytes = (uint64_t)st.st_size;
    if (has_suffix(path, ".gz")) return read_gzip(path, buf, cap, n_bytes, err);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return cx_err(err, "cannot open: %s (%s)", strerror(errno), path);
    size_t n = 0;
    int rc = read_all(fd, buf, cap, &n);
    int e = errno;
    close(fd);
    if (rc != 0) return cx_err(err, "read error: %s (%s)", strerror(e), path);
    *n_bytes = n;
    return 0;
}

// ---- output ----

typedef struct {
    FILE *f[2];  // train, valid
    const char *path[2];
    int failed;
} Output;

static int emit(void *ctx, const char *line, size_t n, int is_valid) {
    Output *o = ctx;
    FILE *f = o->f[is_valid ? 1 : 0];
    if (fwrite(line, 1, n, f) != n || fputc('\n', f) == EOF) {
        o->failed = 1;
        return 1;
    }
    return 0;
}

// Streams the articles of a news file (io/news/news.h) through the filter, one document
// each: the title, then the body's paragraphs. Returns 0, or -1 with err filled.
static int add_news_file(const char *path, CorpusFilter *filter, char **buf, size_t *cap,
                         CorpusDocs *docs, CorpusStats *st, Output *out, char *err) {
    char nerr[CX_ERRLEN];
    NewsReader *r = news_open(path, NEWS_FMT_AUTO, NULL, nerr);
    if (!r) return cx_err(err, "%s", nerr);
    NewsItem it;
    int got;
    while ((got = news_next(r, &it, nerr)) == 1) {
        size_t need = it.title_bytes + it.text_bytes + 2;
        if (need > *cap) {
            char *p = realloc(*buf, need);
            CHECK(p != NULL, "out of memory (%zu bytes)", need);
            *buf = p;
            *cap = need;
        }
        memcpy(*buf, it.title, it.title_bytes);
        (*buf)[it.title_bytes] = '\n';
        memcpy(*buf + it.title_bytes + 1, it.text, it.text_bytes);
        corpus_docs_clear(docs);
        char xerr[CX_ERRLEN];
        if (corpus_extract(CORPUS_FMT_NEWS, *buf, need - 1, docs, xerr) != 0) {
            news_close(r);
            return cx_err(err, "%s (%s:%llu)", xerr, path, (unsigned long long)it.line);
        }
        for (size_t d = 0; d < docs->n_docs; d++)
            if (corpus_filter_add(filter, docs->text + docs->off[d], docs->len[d], st, emit,
                                  out) != 0) {
                news_close(r);
                return cx_err(err, "cannot write: %s", strerror(errno));
            }
    }
    NewsStats ns;
    news_stats(r, &ns);
    st->input_bytes += ns.file_bytes;
    news_close(r);
    if (got < 0) return cx_err(err, "%s", nerr);  // the reader names the file
    return 0;
}

static int close_synced(FILE *f, const char *path, char *err) {
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        fclose(f);
        return cx_err(err, "cannot write: %s (%s)", strerror(e), path);
    }
    if (fclose(f) != 0) return cx_err(err, "cannot write: %s (%s)", strerror(errno), path);
    return 0;
}

static int mkdir_p(const char *dir, char *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return cx_err(err, "path too long (%s)", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return cx_err(err, "cannot create directory: %s (%s)", strerror(errno), tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return cx_err(err, "cannot create directory: %s (%s)", strerror(errno), tmp);
    return 0;
}

// ---- statistics ----

typedef struct {
    char label[64];
    CorpusStats st;
} LabelStats;

static double mb(uint64_t b) { return (double)b / 1e6; }

static void print_stats(FILE *f, const LabelStats *ls, int n_labels, const CorpusStats *tot) {
    fprintf(f, "%-24s %6s %8s %8s %7s %7s %7s %8s %9s %9s %8s %8s %11s %11s\n", "source",
            "files", "in_MB", "docs_in", "dup", "short", "noncyr", "kept", "par_dup",
            "par_noncyr", "bad_utf8", "out_MB", "chars", "cyrillic");
    for (int i = 0; i <= n_labels; i++) {
        const CorpusStats *s = i < n_labels ? &ls[i].st : tot;
        const char *name = i < n_labels ? ls[i].label : "TOTAL";
        fprintf(f,
                "%-24s %6llu %8.2f %8llu %7llu %7llu %7llu %8llu %9llu %9llu %8llu %8.2f %11llu "
                "%11llu\n",
                name, (unsigned long long)s->files, mb(s->input_bytes),
                (unsigned long long)s->docs_in, (unsigned long long)s->docs_dup,
                (unsigned long long)s->docs_short, (unsigned long long)s->docs_noncyr,
                (unsigned long long)s->docs_kept, (unsigned long long)s->paras_dup,
                (unsigned long long)s->paras_noncyr, (unsigned long long)s->invalid_utf8,
                mb(s->bytes[0] + s->bytes[1]), (unsigned long long)(s->chars[0] + s->chars[1]),
                (unsigned long long)(s->cyrillic[0] + s->cyrillic[1]));
    }
    fprintf(f, "\n%-8s %10s %10s %12s %12s\n", "split", "lines", "MB", "chars", "cyrillic");
    const char *names[2] = {"train", "valid"};
    for (int k = 0; k < 2; k++)
        fprintf(f, "%-8s %10llu %10.2f %12llu %12llu\n", names[k],
                (unsigned long long)tot->lines[k], mb(tot->bytes[k]),
                (unsigned long long)tot->chars[k], (unsigned long long)tot->cyrillic[k]);
}

int main(int argc, char **argv) {
    CorpusOptions opt;
    corpus_options_default(&opt);
    const char *out_dir = NULL;
    int quiet = 0;
    char err[CX_ERRLEN];
    enum { O_OUT = 1, O_VALID, O_MIN, O_MAX, O_CYR, O_NOPARA, O_QUIET, O_HELP };
    static const struct option longopts[] = {
        {"out", required_argument, NULL, O_OUT},
        {"valid-percent", required_argument, NULL, O_VALID},
        {"min-chars", required_argument, NULL, O_MIN},
        {"max-chars", required_argument, NULL, O_MAX},
        {"min-cyrillic", required_argument, NULL, O_CYR},
        {"no-para-dedup", no_argument, NULL, O_NOPARA},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end = NULL;
        errno = 0;
        switch (c) {
        case O_OUT: out_dir = optarg; break;
        case O_VALID:
            opt.valid_percent = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(opt.valid_percent >= 0) ||
                opt.valid_percent > 100)
                return usage_error("--valid-percent wants a number in 0..100, not '%s'", optarg);
            break;
        case O_MIN:
        case O_MAX: {
            long long v = strtoll(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 0)
                return usage_error("--min-chars/--max-chars want a count, not '%s'", optarg);
            if (c == O_MIN)
                opt.min_chars = (size_t)v;
            else
                opt.max_chars = (size_t)v;
            break;
        }
        case O_CYR:
            opt.min_cyrillic_doc = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(opt.min_cyrillic_doc >= 0) ||
                opt.min_cyrillic_doc > 1)
                return usage_error("--min-cyrillic wants a share in 0..1, not '%s'", optarg);
            break;
        case O_NOPARA: opt.para_dedup = 0; break;
        case O_QUIET: quiet = 1; break;
        case O_HELP: usage(stdout); return 0;
        default:
            return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!out_dir) return usage_error("%s", "--out DIR is required");
    int n_specs = argc - optind;
    if (n_specs <= 0) return usage_error("%s", "no SOURCE given");
    Spec *specs = calloc((size_t)n_specs, sizeof *specs);
    LabelStats *labels = calloc((size_t)n_specs, sizeof *labels);
    CHECK(specs && labels, "out of memory");
    int n_labels = 0;
    for (int i = 0; i < n_specs; i++) {
        if (parse_spec(argv[optind + i], &specs[i], err) != 0) {
            fprintf(stderr, "%s: error: %s (try --help)\n", TOOL, err);
            return 2;
        }
    }
    // every source must exist before any work starts
    for (int i = 0; i < n_specs; i++) {
        struct stat st;
        if (stat(specs[i].path, &st) != 0) {
            fprintf(stderr, "%s: error: source not found: %s (%s)\n", TOOL, strerror(errno),
                    specs[i].path);
            return 1;
        }
    }
    if (mkdir_p(out_dir, err) != 0) {
        fprintf(stderr, "%s: error: %s\n", TOOL, err);
        return 1;
    }
    const char *base[3] = {"train.txt", "valid.txt", "stats.txt"};
    char final_path[3][4096], tmp_path[3][4096];
    for (int k = 0; k < 3; k++) {
        snprintf(final_path[k], sizeof final_path[k], "%s/%s", out_dir, base[k]);
        snprintf(tmp_path[k], sizeof tmp_path[k], "%s/.%s.tmp.%ld", out_dir, base[k],
                 (long)getpid());
    }
    Output out = {.path = {tmp_path[0], tmp_path[1]}};
    for (int k = 0; k < 2; k++) {
        out.f[k] = fopen(tmp_path[k], "wb");
        if (!out.f[k]) {
            fprintf(stderr, "%s: error: cannot create: %s (%s)\n", TOOL, strerror(errno),
                    tmp_path[k]);
            if (k) {
                fclose(out.f[0]);
                unlink(tmp_path[0]);
            }
            return 1;
        }
    }

    CorpusFilter *filter = corpus_filter_new(&opt);
    CorpusDocs docs;
    corpus_docs_init(&docs);
    char *buf = NULL;
    size_t buf_cap = 0;
    CorpusStats total = {0};
    int rc = 0, label_specs = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n_specs && rc == 0; i++) {
        Spec *sp = &specs[i];
        int li = 0;
        while (li < n_labels && strcmp(labels[li].label, sp->label) != 0) li++;
        if (li == n_labels) memcpy(labels[n_labels++].label, sp->label, sizeof sp->label);
        CorpusStats st = {0};
        CorpusOptions so = opt;
        if (sp->min_chars >= 0) so.min_chars = (size_t)sp->min_chars;
        corpus_filter_set_options(filter, &so);
        PathList files = {0};
        struct stat pst;
        if (stat(sp->path, &pst) == 0 && S_ISDIR(pst.st_mode)) {
            if (walk(sp->path, sp->fmt, &files, err) != 0) rc = 1;
        } else {
            paths_add(&files, sp->path);
        }
        if (rc == 0 && files.n == 0) {
            cx_err(err, "no %s files under %s", corpus_format_name(sp->fmt), sp->path);
            rc = 1;
        }
        for (size_t fi = 0; fi < files.n && rc == 0; fi++) {
            if (sp->fmt == CORPUS_FMT_NEWS) {
                st.files++;
                if (add_news_file(files.path[fi], filter, &buf, &buf_cap, &docs, &st, &out,
                                  err) != 0)
                    rc = 1;
                continue;
            }
            size_t n = 0;
            uint64_t disk = 0;
            if (read_file(files.path[fi], &buf, &buf_cap, &n, &disk, err) != 0) {
                rc = 1;
                break;
            }
            st.files++;
            st.input_bytes += disk;
            corpus_docs_clear(&docs);
            char xerr[CX_ERRLEN];
            if (corpus_extract(sp->fmt, buf, n, &docs, xerr) != 0) {
                cx_err(err, "%s (%s)", xerr, files.path[fi]);
                rc = 1;
                break;
            }
            for (size_t d = 0; d < docs.n_docs; d++) {
                if (corpus_filter_add(filter, docs.text + docs.off[d], docs.len[d], &st, emit,
                                      &out) != 0) {
                    cx_err(err, "cannot write: %s (%s)", strerror(errno), out_dir);
                    rc = 1;
                    break;
                }
            }
        }
        paths_free(&files);
        corpus_stats_add(&labels[li].st, &st);
        corpus_stats_add(&total, &st);
        label_specs++;
        // progress: one line per run of sources that share a label
        int last_of_run = i + 1 == n_specs || strcmp(specs[i + 1].label, sp->label) != 0;
        if (!quiet && rc == 0 && last_of_run) {
            const CorpusStats *ls = &labels[li].st;
            fprintf(stderr,
                    "%s: %-24s %-8s %6llu files %8llu docs kept of %8llu, %6.2f MB, %10llu "
                    "Cyrillic chars (%s%s)\n",
                    TOOL, sp->label, corpus_format_name(sp->fmt), (unsigned long long)ls->files,
                    (unsigned long long)ls->docs_kept, (unsigned long long)ls->docs_in,
                    mb(ls->bytes[0] + ls->bytes[1]),
                    (unsigned long long)(ls->cyrillic[0] + ls->cyrillic[1]), sp->path,
                    label_specs > 1 ? " and earlier sources" : "");
        }
        if (last_of_run) label_specs = 0;
    }
    free(buf);
    corpus_docs_free(&docs);
    corpus_filter_free(filter);

    for (int k = 0; k < 2; k++) {
        char cerr[CX_ERRLEN];
        if (close_synced(out.f[k], tmp_path[k], cerr) != 0 && rc == 0) {
            snprintf(err, sizeof err, "%s", cerr);
            rc = 1;
        }
    }
    if (rc == 0) {
        FILE *sf = fopen(tmp_path[2], "wb");
        if (!sf) {
            cx_err(err, "cannot create: %s (%s)", strerror(errno), tmp_path[2]);
            rc = 1;
        } else {
            fprintf(sf,
                    "# conflux-corpus %s: valid_percent=%g min_chars=%zu max_chars=%zu "
                    "min_cyrillic_doc=%g min_cyrillic_para=%g para_dedup=%d\n"
                    "# MB are 10^6 bytes; chars are code points; bad_utf8 counts dropped "
                    "invalid sequences\n",
                    CONFLUX_VERSION, opt.valid_percent, opt.min_chars, opt.max_chars,
                    opt.min_cyrillic_doc, opt.min_cyrillic_para, opt.para_dedup);
            print_stats(sf, labels, n_labels, &total);
            if (close_synced(sf, tmp_path[2], err) != 0) rc = 1;
        }
    }
    // train.txt last: its presence means the set is complete
    for (int k = 2; k >= 0 && rc == 0; k--) {
        if (rename(tmp_path[k], final_path[k]) != 0) {
            cx_err(err, "cannot rename: %s (%s)", strerror(errno), final_path[k]);
            rc = 1;
        }
    }
    if (rc != 0) {
        for (int k = 0; k < 3; k++) unlink(tmp_path[k]);
        fprintf(stderr, "%s: error: %s\n", TOOL, err);
    } else {
        int dfd = open(out_dir, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        print_stats(stdout, labels, n_labels, &total);
        if (!quiet)
            fprintf(stderr, "%s: wrote %s and %s in %.1f s\n", TOOL, final_path[0],
                    final_path[1], secs);
    }
    free(specs);
    free(labels);
    return rc;
}
