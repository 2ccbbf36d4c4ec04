// bench_news.c: throughput of the news readers (io/news/news.h).
//
// Writes a synthetic RIA-format file of SIZE_MB megabytes (default 200) into a fresh
// temporary directory: one JSON object per line, bodies of 1-6 KB of HTML paragraphs
// with Cyrillic words, &nbsp; &mdash; &laquo; entities, <strong>/<a> tags, escaped
// slashes and quotes, an occasional \uXXXX escape, like the real RIA dump. Then reads it
// with news_next() after one warm-up read (so it is in the page cache), 3 timed runs,
// and the same for a gzip (level 6) copy of its first GZ_MB megabytes (default 64) and a
// Lenta-format CSV of the same articles. Rates are MB (10^6 bytes) of uncompressed input
// per second, one thread; min/median/max of the runs are printed, the median is the rate.
//
// usage: bench_news [SIZE_MB [GZ_MB]]
// Last line: news-bench: ria_mb_s=X ria_gz_mb_s=Y
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "io/news/news.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

#define RUNS 3

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(uint32_t n) { // xorshift64*, uniform enough for text
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)(((rng_state * 0x2545F4914F6CDD1DULL) >> 32) % n);
}

static const char *const WORDS[] = {
    "москва",
    "россии",
    "заявил",
    "президент",
    "правительство",
    "в",
    "на",
    "по",
    "из",
    "с",
    "и",
    "что",
    "года",
    "сообщил",
    "риа",
    "новости",
    "министр",
    "области",
    "компании",
    "результате",
    "воскресенье",
    "декабря",
    "тысяч",
    "рублей",
    "выборах",
    "парламент",
    "партии",
    "данным",
    "представитель",
    "нефти",
    "учения",
    "войска",
    "пресс-службы",
    "региона",
    "сотрудники",
    "полиции",
    "2015",
    "1,5",
    "30%",
    "около",
    "более",
    "всех",
    "lufthansa",
    "nasa",
    "ооо",
    "глава",
    "суд",
    "решение",
};
#define N_WORDS (sizeof WORDS / sizeof WORDS[0])

// Appends one paragraph's words (JSON-escaped HTML) to b.
static size_t put_words(char *b, int n_words) {
    size_t o = 0;
    for (int w = 0; w < n_words; w++) {
        uint32_t k = rnd(100);
        const char *sep = " ";
        if (w == 0)
            sep = "";
        else if (k < 12)
            sep = "&nbsp;";
        else if (k < 14)
            sep = "&nbsp;&mdash; ";
        else if (k < 16)
            sep = ", ";
        o += (size_t)sprintf(b + o, "%s", sep);
        k = rnd(100);
        if (k < 2)
            o += (size_t)sprintf(b + o, "&laquo;%s&raquo;", WORDS[rnd(N_WORDS)]);
        else if (k < 4)
            o += (size_t)sprintf(b + o, "\\\"%s\\\"", WORDS[rnd(N_WORDS)]);
        else if (k < 5)
            o += (size_t)sprintf(b + o, "<strong>%s<\\/strong>", WORDS[rnd(N_WORDS)]);
        else if (k < 6)
            o += (size_t)sprintf(
                b + o, "<a href=\\\"https:\\/\\/ria.ru\\/%u\\\" target=\\\"_blank\\\">%s<\\/a>",
                rnd(1000000), WORDS[rnd(N_WORDS)]);
        else if (k < 7)
            o += (size_t)sprintf(b + o, "\\u0410\\u0411%s", WORDS[rnd(N_WORDS)]);
        else
            o += (size_t)sprintf(b + o, "%s", WORDS[rnd(N_WORDS)]);
    }
    return o;
}

// One RIA line (with '\n') into b; at most 9 paragraphs of 80 words, well under 128 KiB.
static size_t ria_line(char *b) {
    size_t o = (size_t)sprintf(
        b,
        "{\"text\": \"<p><strong><\\/strong><\\/p>\\n<p><strong>москва, %u дек&nbsp;&mdash; "
        "риа новости.<\\/strong> ",
        1 + rnd(30));
    int paras = 2 + (int)rnd(8);
    for (int p = 0; p < paras; p++) {
        if (p) o += (size_t)sprintf(b + o, "<\\/p>\\n<p>");
        o += put_words(b + o, 20 + (int)rnd(60));
        o += (size_t)sprintf(b + o, ".");
    }
    o += (size_t)sprintf(b + o, "<\\/p>\", \"title\": \"");
    o += put_words(b + o, 5 + (int)rnd(8));
    o += (size_t)sprintf(b + o, "\"}\n");
    return o;
}

// One Lenta CSV record into b: url, title, quoted multi-line text, topic, tags.
static size_t csv_line(char *b, uint64_t k) {
    size_t o =
        (size_t)sprintf(b, "https://lenta.ru/news/2018/12/14/n%llu/,\"", (unsigned long long)k);
    for (int w = 0, n = 5 + (int)rnd(8); w < n; w++)
        o += (size_t)sprintf(b + o, "%s%s", w ? " " : "", WORDS[rnd(N_WORDS)]);
    o += (size_t)sprintf(b + o, "\",\"");
    int paras = 2 + (int)rnd(8);
    for (int p = 0; p < paras; p++) {
        if (p) b[o++] = '\n';
        for (int w = 0, n = 20 + (int)rnd(60); w < n; w++) {
            uint32_t q = rnd(100);
            o += (size_t)sprintf(b + o, q < 3 ? "%s\"\"%s\"\"" : "%s%s", w ? " " : "",
                                 WORDS[rnd(N_WORDS)]);
        }
        b[o++] = '.';
    }
    o += (size_t)sprintf(b + o, "\",Россия,Общество\n");
    return o;
}

typedef size_t (*LineFn)(char *b, uint64_t k);
static size_t ria_line_k(char *b, uint64_t k) {
    (void)k;
    return ria_line(b);
}

// Writes about `bytes` bytes of header + lines into path. Returns the size.
static uint64_t write_file(const char *path, const char *header, LineFn fn, uint64_t bytes) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    static char buf[1 << 22];
    size_t o = 0;
    uint64_t total = 0;
    if (header) {
        fputs(header, f);
        total += strlen(header);
    }
    for (uint64_t k = 0; total + o < bytes; k++) {
        o += fn(buf + o, k);
        if (o > sizeof buf - (1 << 17)) {
            CHECK(fwrite(buf, 1, o, f) == o, "write %s", path);
            total += o;
            o = 0;
        }
    }
    CHECK(fwrite(buf, 1, o, f) == o, "write %s", path);
    total += o;
    CHECK(fclose(f) == 0, "close %s", path);
    return total;
}

// gzip (level 6) copy of the first `bytes` bytes of src (whole lines). Returns the
// uncompressed bytes written.
static uint64_t gzip_copy(const char *src, const char *dst, uint64_t bytes) {
    FILE *in = fopen(src, "rb");
    gzFile out = gzopen(dst, "wb6");
    CHECK(in && out, "cannot open %s / %s", src, dst);
    static char line[1 << 16];
    uint64_t total = 0;
    while (total < bytes && fgets(line, sizeof line, in)) {
        size_t n = strlen(line);
        CHECK(gzwrite(out, line, (unsigned)n) == (int)n, "gzwrite %s", dst);
        total += n;
    }
    fclose(in);
    CHECK(gzclose(out) == Z_OK, "gzclose %s", dst);
    return total;
}

// Reads the whole file; returns seconds. Checks that nothing was skipped.
static double read_all(const char *path, NewsFormat fmt, uint64_t *items) {
    char err[CX_ERRLEN];
    double t0 = now_s();
    NewsReader *r = news_open(path, fmt, NULL, err);
    CHECK(r != NULL, "%s", err);
    NewsItem it;
    int rc;
    uint64_t sum = 0;
    while ((rc = news_next(r, &it, err)) == 1) sum += it.text_bytes + it.title_bytes;
    double dt = now_s() - t0;
    CHECK(rc == 0, "%s", err);
    NewsStats st;
    news_stats(r, &st);
    CHECK(st.bad_rows == 0, "%s: %llu bad rows in generated data", path,
          (unsigned long long)st.bad_rows);
    CHECK(sum > 0, "no text");
    *items = st.items;
    news_close(r);
    return dt;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Warm-up read, then RUNS timed reads; prints a line and returns the median MB/s.
static double bench(const char *label, const char *path, NewsFormat fmt, uint64_t data_bytes,
                    uint64_t file_bytes) {
    uint64_t items;
    read_all(path, fmt, &items);
    double t[RUNS];
    for (int k = 0; k < RUNS; k++) t[k] = read_all(path, fmt, &items);
    qsort(t, RUNS, sizeof t[0], cmp_double);
    double mb = (double)data_bytes / 1e6;
    printf("%-8s %8.1f MB (%.1f MB in the file), %llu items: %.1f / %.1f / %.1f MB/s "
           "(max/median/min), %.0f items/s\n",
           label, mb, (double)file_bytes / 1e6, (unsigned long long)items, mb / t[0],
           mb / t[RUNS / 2], mb / t[RUNS - 1], (double)items / t[RUNS / 2]);
    fflush(stdout);
    return mb / t[RUNS / 2];
}

static char bench_dir[256];

// Removes the temporary directory however the program ends (CHECK failures included).
static void remove_bench_dir(void) {
    if (bench_dir[0]) tu_rm_tree(bench_dir);
}

int main(int argc, char **argv) {
    double size_mb = argc > 1 ? atof(argv[1]) : 200;
    double gz_mb = argc > 2 ? atof(argv[2]) : 64;
    if (size_mb <= 0 || gz_mb < 0) {
        fprintf(stderr, "usage: bench_news [SIZE_MB [GZ_MB]]\n");
        return 2;
    }
    if (gz_mb > size_mb) gz_mb = size_mb;
    char *dir = bench_dir;
    CHECK(tu_make_tmpdir(bench_dir, sizeof bench_dir, "bench_news_") == 0,
          "cannot create a temp dir");
    atexit(remove_bench_dir);
    char ria[TU_PATH_LEN], gz[TU_PATH_LEN], csv[TU_PATH_LEN];
    snprintf(ria, sizeof ria, "%s", tu_path(dir, "ria.json"));
    snprintf(gz, sizeof gz, "%s", tu_path(dir, "ria.json.gz"));
    snprintf(csv, sizeof csv, "%s", tu_path(dir, "lenta.csv"));

    double t0 = now_s();
    uint64_t ria_bytes = write_file(ria, NULL, ria_line_k, (uint64_t)(size_mb * 1e6));
    printf("generated %s: %.1f MB in %.1f s\n", ria, (double)ria_bytes / 1e6, now_s() - t0);
    double ria_mb_s = bench("ria", ria, NEWS_FMT_RIA, ria_bytes, ria_bytes);

    double gz_mb_s = 0;
    if (gz_mb > 0) {
        t0 = now_s();
        uint64_t gz_data = gzip_copy(ria, gz, (uint64_t)(gz_mb * 1e6));
        FILE *f = fopen(gz, "rb");
        CHECK(f != NULL, "open %s", gz);
        fseek(f, 0, SEEK_END);
        uint64_t gz_file = (uint64_t)ftell(f);
        fclose(f);
        printf("gzip -6 copy of the first %.1f MB: %.1f MB in %.1f s\n", (double)gz_data / 1e6,
               (double)gz_file / 1e6, now_s() - t0);
        gz_mb_s = bench("ria.gz", gz, NEWS_FMT_AUTO, gz_data, gz_file);
    }
    remove(gz);

    uint64_t csv_bytes =
        write_file(csv, "url,title,text,topic,tags\n", csv_line, (uint64_t)(size_mb * 1e6 / 4));
    double csv_mb_s = bench("lenta", csv, NEWS_FMT_LENTA, csv_bytes, csv_bytes);
    printf("news-bench-csv: lenta_mb_s=%.1f\n", csv_mb_s);

    remove(ria);
    remove(csv);
    printf("news-bench: ria_mb_s=%.1f ria_gz_mb_s=%.1f\n", ria_mb_s, gz_mb_s);
    return 0;
}
