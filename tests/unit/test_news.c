// test_news.c: the news readers (io/news/news.h) on the real samples in ../shared/data/news
// (skipped with a notice when absent) and on malformed input written here to temporary
// files: broken JSON, unterminated quotes, invalid UTF-8, records over the size limit,
// empty files, truncated and corrupt gzip, CRLF line ends, entity and tag edge cases.
#include <CUnit/Basic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/news/news.h"
#include "io/text/utf8.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

static char tmp_dir[256];

// ---- helpers ----

#define MAX_ITEMS 256
#define MAX_BAD   64

// Everything one read of a file produced.
typedef struct Got {
    int open_ok;
    char open_err[CX_ERRLEN];
    int rc; // last news_next result
    char err[CX_ERRLEN];
    size_t n; // items
    char *title[MAX_ITEMS], *text[MAX_ITEMS], *url[MAX_ITEMS], *date[MAX_ITEMS], *topic[MAX_ITEMS];
    uint64_t line[MAX_ITEMS];
    size_t n_bad;
    uint64_t bad_line[MAX_BAD];
    NewsBad bad_reason[MAX_BAD];
    char bad_msg[MAX_BAD][CX_ERRLEN];
    NewsStats st;
    NewsFormat fmt;
} Got;

static void on_bad(void *ctx, uint64_t line, NewsBad reason, const char *msg) {
    Got *g = ctx;
    if (g->n_bad < MAX_BAD) {
        g->bad_line[g->n_bad] = line;
        g->bad_reason[g->n_bad] = reason;
        snprintf(g->bad_msg[g->n_bad], CX_ERRLEN, "%s", msg);
    }
    g->n_bad++;
}

static void got_free(Got *g) {
    for (size_t i = 0; i < g->n && i < MAX_ITEMS; i++) {
        free(g->title[i]);
        free(g->text[i]);
        free(g->url[i]);
        free(g->date[i]);
        free(g->topic[i]);
    }
    memset(g, 0, sizeof *g);
}

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    CHECK(p != NULL, "out of memory");
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

// Reads path to the end (or the first fatal error) with the given record limit (0:
// default), collecting items and skipped records.
static void read_file(const char *path, NewsFormat fmt, size_t max_record, Got *g) {
    memset(g, 0, sizeof *g);
    NewsLimits lim = {.max_record_bytes = max_record, .on_bad = on_bad, .on_bad_ctx = g};
    NewsReader *r = news_open(path, fmt, &lim, g->open_err);
    if (!r) return;
    g->open_ok = 1;
    g->fmt = news_format(r);
    NewsItem it;
    while ((g->rc = news_next(r, &it, g->err)) == 1) {
        // the strings are NUL-terminated at their lengths
        CU_ASSERT_EQUAL(strlen(it.title), it.title_bytes);
        CU_ASSERT_EQUAL(strlen(it.text), it.text_bytes);
        CU_ASSERT_EQUAL(it.index, g->n);
        if (g->n < MAX_ITEMS) {
            g->title[g->n] = dup_n(it.title, it.title_bytes);
            g->text[g->n] = dup_n(it.text, it.text_bytes);
            g->url[g->n] = dup_n(it.url, it.url_bytes);
            g->date[g->n] = dup_n(it.date, it.date_bytes);
            g->topic[g->n] = dup_n(it.topic, it.topic_bytes);
            g->line[g->n] = it.line;
        }
        g->n++;
    }
    news_stats(r, &g->st);
    // finished or failed readers keep answering the same
    char err2[CX_ERRLEN];
    CU_ASSERT_EQUAL(news_next(r, &it, err2), g->rc);
    news_close(r);
    CU_ASSERT_EQUAL(g->st.items, g->n);
    CU_ASSERT_EQUAL(g->st.bad_rows, g->n_bad);
}

// Writes n bytes to a file in the temp dir; returns its path (static, one per name slot).
static const char *put_file(const char *name, const void *data, size_t n) {
    const char *p = tu_path(tmp_dir, name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL, "cannot create %s", p);
    CHECK(fwrite(data, 1, n, f) == n, "cannot write %s", p);
    CHECK(fclose(f) == 0, "cannot close %s", p);
    return p;
}

static const char *put_str(const char *name, const char *s) { return put_file(name, s, strlen(s)); }

// gzip (one member) of data into a malloc'd buffer.
static unsigned char *gzip_bytes(const void *data, size_t n, size_t *out_n) {
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK,
          "deflateInit2");
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    unsigned char *out = malloc(cap);
    CHECK(out != NULL, "out of memory");
    z.next_in = (unsigned char *)data;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
    *out_n = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)len + 1);
    CHECK(p != NULL, "out of memory");
    CHECK(fread(p, 1, (size_t)len, f) == (size_t)len, "read %s", path);
    p[len] = '\0';
    fclose(f);
    *n = (size_t)len;
    return p;
}

// The real samples: $CONFLUX_NEWS_DATA, else ../shared/data/news relative to the
// repository root (the working directory of tests/run-tests.sh). NULL when absent, after
// TU_SKIP (a visible skip; a failure under CONFLUX_NO_SKIP=1).
static const char *sample(const char *name) {
    static char path[TU_PATH_LEN];
    const char *dir = getenv("CONFLUX_NEWS_DATA");
    if (!dir || !dir[0]) dir = "../shared/data/news";
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, R_OK) != 0) {
        char why[TU_PATH_LEN + 64];
        snprintf(why, sizeof why, "news sample %s not found (set CONFLUX_NEWS_DATA)", path);
        TU_SKIP(why);
        return NULL;
    }
    return path;
}

static int has_tag_or_entity(const char *s) {
    for (const char *p = s; *p; p++) {
        if (*p == '<' && (p[1] == '/' || ((p[1] | 32) >= 'a' && (p[1] | 32) <= 'z'))) return 1;
        if (*p == '&') {
            const char *q = p + 1;
            if (*q == '#') q++;
            const char *n0 = q;
            while (((*q | 32) >= 'a' && (*q | 32) <= 'z') || (*q >= '0' && *q <= '9')) q++;
            if (q > n0 && *q == ';') return 1;
        }
    }
    return 0;
}

static int valid_utf8(const char *s) { return utf8_check(s, strlen(s)) == strlen(s); }

static const char *html(const char *in, int strip) {
    static char out[4096];
    size_t n = strlen(in);
    CHECK(n < sizeof out, "test input too long");
    size_t m = news_html_to_text(in, n, out, strip);
    CU_ASSERT(m <= n);
    CU_ASSERT_EQUAL(strlen(out), m);
    return out;
}

#define ASSERT_HTML(in, strip, want)                                                               \
    do {                                                                                           \
        const char *got_ = html((in), (strip));                                                    \
        if (strcmp(got_, (want)) != 0)                                                             \
            fprintf(stderr, "\n  html [%s]\n    got  [%s]\n    want [%s]\n", (in), got_, (want));  \
        CU_ASSERT_STRING_EQUAL(got_, (want));                                                      \
    } while (0)

// ---- names ----

static void test_names(void) {
    NewsFormat f;
    for (int i = 0; i < NEWS_FMT_COUNT; i++) {
        CU_ASSERT_EQUAL(news_format_parse(news_format_name((NewsFormat)i), &f), 0);
        CU_ASSERT_EQUAL(f, (NewsFormat)i);
    }
    CU_ASSERT_EQUAL(news_format_parse("csv", &f), -1);
    CU_ASSERT_PTR_NULL(news_format_name(NEWS_FMT_COUNT));
    CU_ASSERT_STRING_EQUAL(news_bad_name(NEWS_BAD_TOO_LONG), "too_long");
    CU_ASSERT_PTR_NULL(news_bad_name(NEWS_BAD_COUNT));
}

// ---- HTML and entities ----

static void test_html(void) {
    // entities: decoded once; unknown, malformed and unterminated ones stay as written
    ASSERT_HTML("a &amp;lt; b", 1, "a &lt; b");
    ASSERT_HTML("&foo; &unknownentity; AT&T &nbsp &; &#; &#x; &#12a;", 1,
                "&foo; &unknownentity; AT&T &nbsp &; &#; &#x; &#12a;");
    ASSERT_HTML("&laquo;да&raquo; &mdash; &ndash; &hellip; &bdquo;x&ldquo; &lsquo;y&rsquo; "
                "&quot;&apos;&lt;&gt;&amp; &copy;",
                1, "«да» — – … „x“ ‘y’ \"'<>& ©");
    ASSERT_HTML("&#1084;&#x43E;&#X441;&#1082;&#x432;&#1072; &#151; &#8212;", 1, "москва — —");
    ASSERT_HTML("&#128512; &#x1F600;", 1, "\xf0\x9f\x98\x80 \xf0\x9f\x98\x80");
    // numeric ones naming no character stay as written
    ASSERT_HTML("&#0; &#xD800; &#1114112; &#1; &#129; &#99999999999;", 1,
                "&#0; &#xD800; &#1114112; &#1; &#129; &#99999999999;");
    // spaces: &nbsp;, raw U+00A0, numeric ones; soft hyphens dropped
    ASSERT_HTML("1&nbsp;дек&nbsp;&mdash; риа\xc2\xa0новости&#160;x&#xA0;y&thinsp;z", 1,
                "1 дек — риа новости x y z");
    ASSERT_HTML("пере&shy;нос пере\xc2\xadнос", 1, "перенос перенос");
    ASSERT_HTML("  a \t\n  b\r\n  ", 1, "a b");
    // tags: block ones make paragraphs, inline ones vanish, td is a space
    ASSERT_HTML("<p><strong></strong></p>\n<p><strong>москва, 1 дек&nbsp;&mdash; риа новости."
                "</strong> около</p>\n<p>второй</p>",
                1, "москва, 1 дек — риа новости. около\nвторой");
    ASSERT_HTML("x<br>y<BR/>z<br />w", 1, "x\ny\nz\nw");
    ASSERT_HTML("<div><h1>Заголовок</h1><ul><li>один</li><li>два</li></ul></div>", 1,
                "Заголовок\nодин\nдва");
    ASSERT_HTML("<table><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>", 1, "a b\nc");
    ASSERT_HTML("<P CLASS=\"x\">up</P><H6>h</H6>", 1, "up\nh");
    ASSERT_HTML("a<img src=\"/img/a.gif\" border=\"0\">b <a href=\"x>y\" title='q>r'>link</a>", 1,
                "ab link");
    ASSERT_HTML("a<!-- <p>hidden</p> -->b<!DOCTYPE html>c<?xml x?>d", 1, "abcd");
    ASSERT_HTML("<script type=\"text/javascript\">var s = '<p>no</p>';</script>yes"
                "<STYLE>p { x: 1 }</STYLE>!",
                1, "yes!");
    ASSERT_HTML("a <script>never closed", 1, "a");
    ASSERT_HTML("<!-- never closed", 1, "");
    // '<' that starts no tag is text
    ASSERT_HTML("a < b, 3<4, <-, <", 1, "a < b, 3<4, <-, <");
    ASSERT_HTML("x <b unclosed", 1, "x <b unclosed");
    ASSERT_HTML("&lt;p&gt; stays text", 1, "<p> stays text");
    // titles: no tag stripping, one paragraph
    ASSERT_HTML("a <b> c\n\nd &amp; e", 0, "a <b> c d & e");
    // controls are dropped
    ASSERT_HTML("a\x01\x02"
                "b\x7f"
                "c",
                1, "abc");
    ASSERT_HTML("", 1, "");
    ASSERT_HTML("<p></p><br>&nbsp;", 1, "");
}

// The output is never longer than the input and is valid UTF-8 for valid UTF-8 input,
// whatever the markup: random sequences of tricky pieces.
static void test_html_random(void) {
    static const char *const pieces[] = {
        "<",
        ">",
        "&",
        ";",
        "#",
        "x",
        "<p>",
        "</p>",
        "<br>",
        "&nbsp;",
        "&#",
        "&#x",
        "1",
        "F",
        "\"",
        "'",
        "<!--",
        "-->",
        "<script>",
        "</script>",
        " ",
        "\n",
        "\xc2\xa0",
        "ж",
        "&amp;",
        "&lt;",
        "<a href=\"",
        "&#151;",
        "&#0;",
        "&shy;",
        "\xf0\x9f\x98\x80",
        "<td>",
        "&mdash;",
        "<style",
        "&#x10FFFF;",
    };
    const size_t n_pieces = sizeof pieces / sizeof pieces[0];
    uint64_t s = 12345;
    char in[2048], out[2049];
    for (int t = 0; t < 20000; t++) {
        size_t n = 0;
        int k = (int)(s % 40);
        for (int j = 0; j < k; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            const char *p = pieces[(s >> 33) % n_pieces];
            size_t m = strlen(p);
            if (n + m >= sizeof in) break;
            memcpy(in + n, p, m);
            n += m;
        }
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        for (int strip = 0; strip < 2; strip++) {
            size_t m = news_html_to_text(in, n, out, strip);
            CU_ASSERT_FATAL(m <= n);
            CU_ASSERT_EQUAL(out[m], '\0');
            CU_ASSERT_EQUAL(utf8_check(out, m), m);
            if (m) {
                CU_ASSERT(out[0] != ' ' && out[0] != '\n');
                CU_ASSERT(out[m - 1] != ' ' && out[m - 1] != '\n');
            }
            CU_ASSERT_PTR_NULL(strstr(out, "  "));
            CU_ASSERT_PTR_NULL(strstr(out, "\n\n"));
        }
    }
}

static void test_utf8_check(void) {
    CU_ASSERT_EQUAL(utf8_check("abc", 3), 3);
    CU_ASSERT_EQUAL(utf8_check("москва", strlen("москва")), strlen("москва"));
    CU_ASSERT_EQUAL(utf8_check("\xf0\x9f\x98\x80", 4), 4);
    CU_ASSERT_EQUAL(utf8_check("ab\xff", 3), 2);
    CU_ASSERT_EQUAL(utf8_check("a\xc0\x80", 3), 1);        // overlong
    CU_ASSERT_EQUAL(utf8_check("a\xe0\x80\x80", 4), 1);    // overlong
    CU_ASSERT_EQUAL(utf8_check("\xed\xa0\x80", 3), 0);     // surrogate
    CU_ASSERT_EQUAL(utf8_check("\xf4\x90\x80\x80", 4), 0); // beyond U+10FFFF
    CU_ASSERT_EQUAL(utf8_check("abcdefghij\xd0", 11), 10); // truncated
    CU_ASSERT_EQUAL(utf8_check("abcdefgh\x80", 9), 8);     // stray continuation
}

// ---- the real samples ----

// Reads a real sample with the format left to detection, and checks that it is detected
// as want and reads to the end without a skipped row.
static void read_sample_clean(const char *path, NewsFormat want, Got *g) {
    read_file(path, NEWS_FMT_AUTO, 0, g);
    CU_ASSERT_FATAL(g->open_ok);
    CU_ASSERT_EQUAL(g->fmt, want);
    CU_ASSERT_EQUAL(g->rc, 0);
    CU_ASSERT_EQUAL(g->n_bad, 0);
}

static void test_sample_ria(void) {
    const char *p = sample("ria_20.json");
    if (!p) return;
    Got g;
    read_sample_clean(p, NEWS_FMT_RIA, &g);
    CU_ASSERT_EQUAL(g.n, 20);
    CU_ASSERT_EQUAL(g.st.lines, 20);
    CU_ASSERT_EQUAL(g.st.file_bytes, 57198);
    CU_ASSERT_EQUAL(g.st.data_bytes, 57198);
    size_t moscow = 0;
    for (size_t i = 0; i < g.n; i++) {
        CU_ASSERT(strlen(g.title[i]) > 0);
        CU_ASSERT(strlen(g.text[i]) > 200);
        CU_ASSERT(!has_tag_or_entity(g.text[i]));
        CU_ASSERT(!has_tag_or_entity(g.title[i]));
        CU_ASSERT(valid_utf8(g.text[i]) && valid_utf8(g.title[i]));
        CU_ASSERT_PTR_NULL(strstr(g.text[i], "\xc2\xa0"));
        CU_ASSERT_PTR_NULL(strstr(g.text[i], "  "));
        CU_ASSERT_EQUAL(g.line[i], i + 1);
        // dateline at the start: "<city>, <day> <month> — риа новости." (one has "р-спорт.",
        // one "дек- риа новости.", one "риа новости, <author>.")
        char head[100];
        snprintf(head, sizeof head, "%s", g.text[i]);
        const char *comma = strstr(head, ", ");
        CU_ASSERT(comma != NULL && comma - head < 30);
        const char *agency = strstr(head, "риа новости");
        if (!agency) agency = strstr(head, "р-спорт");
        CU_ASSERT(agency != NULL);
        const char *dash = strstr(head, "— ");
        if (!dash) dash = strstr(head, "- ");
        CU_ASSERT(dash != NULL && comma < dash && dash < agency);
        if (strncmp(head, "москва, ", strlen("москва, ")) == 0) moscow++;
        if (!agency || !dash) printf("\n  item %zu starts: %s\n", i, head);
    }
    CU_ASSERT(moscow >= 10);
    CU_ASSERT_STRING_EQUAL(g.title[0],
                           "в канаде из нефтепровода в болото вытекли около 60 тысяч литров нефти");
    CU_ASSERT(strncmp(g.text[0],
                      "москва, 1 дек — риа новости. около 60 тысяч литров "
                      "неочищенной нефти вытекли из нефтепровода компании",
                      strlen("москва, 1 дек — риа новости. около 60 тысяч литров "
                             "неочищенной нефти вытекли из нефтепровода компании")) == 0);
    CU_ASSERT_STRING_EQUAL(g.title[2], "пожар в цеху на севере москвы локализован");
    // paragraphs: the third article has several
    CU_ASSERT_PTR_NOT_NULL(strchr(g.text[2], '\n'));

    // the same file gzipped (and as two concatenated gzip members) reads the same
    size_t n, z1_n, z2_n;
    char *raw = slurp(p, &n);
    const char *cut = raw;
    for (int k = 0; k < 10; k++) cut = strchr(cut, '\n') + 1;
    unsigned char *z1 = gzip_bytes(raw, (size_t)(cut - raw), &z1_n);
    unsigned char *z2 = gzip_bytes(cut, n - (size_t)(cut - raw), &z2_n);
    unsigned char *zz = malloc(z1_n + z2_n);
    memcpy(zz, z1, z1_n);
    memcpy(zz + z1_n, z2, z2_n);
    const char *gz = put_file("ria_two_members.gz", zz, z1_n + z2_n);
    Got h;
    read_file(gz, NEWS_FMT_AUTO, 0, &h);
    CU_ASSERT_FATAL(h.open_ok);
    CU_ASSERT_EQUAL(h.rc, 0);
    CU_ASSERT_EQUAL_FATAL(h.n, 20);
    for (size_t i = 0; i < 20; i++) {
        CU_ASSERT_STRING_EQUAL(h.title[i], g.title[i]);
        CU_ASSERT_STRING_EQUAL(h.text[i], g.text[i]);
    }
    CU_ASSERT_EQUAL(h.st.file_bytes, z1_n + z2_n);
    CU_ASSERT_EQUAL(h.st.data_bytes, n);
    got_free(&h);
    free(raw);
    free(z1);
    free(z2);
    free(zz);
    got_free(&g);
}

static void test_sample_lenta(void) {
    const char *p = sample("lenta-ru-news.csv.gz");
    if (!p) return;
    Got g;
    read_sample_clean(p, NEWS_FMT_LENTA, &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_STRING_EQUAL(g.url[0], "https://lenta.ru/news/2018/12/14/cancer/");
    CU_ASSERT_STRING_EQUAL(
        g.title[0], "Названы регионы России с\xc2\xa0самой высокой смертностью от\xc2\xa0рака");
    CU_ASSERT_STRING_EQUAL(g.topic[0], "Россия");
    CU_ASSERT(strncmp(g.text[0], "Вице-премьер по социальным вопросам Татьяна Голикова",
                      strlen("Вице-премьер по социальным вопросам Татьяна Голикова")) == 0);
    CU_ASSERT_PTR_NULL(strchr(g.text[0], '\r'));
    CU_ASSERT_EQUAL(g.line[0], 2);
    CU_ASSERT_EQUAL(g.st.lines, 2);
    CU_ASSERT_EQUAL(g.st.file_bytes, 680);
    CU_ASSERT_EQUAL(g.st.data_bytes, 1415);
    got_free(&g);
    // explicit format: the same
    read_file(p, NEWS_FMT_LENTA, 0, &g);
    CU_ASSERT(g.open_ok && g.n == 1 && g.rc == 0);
    got_free(&g);
}

static void test_sample_ods(void) {
    static const char *const files[] = {"ods/gazeta.csv.gz", "ods/interfax.csv.gz", "ods/iz.csv.gz",
                                        "ods/meduza.csv.gz"};
    size_t total = 0;
    for (size_t k = 0; k < 4; k++) {
        const char *p = sample(files[k]);
        if (!p) return;
        Got g;
        read_sample_clean(p, NEWS_FMT_ODS, &g);
        CU_ASSERT_EQUAL(g.n, 9);
        for (size_t i = 0; i < g.n; i++) {
            CU_ASSERT(strlen(g.title[i]) > 0 && strlen(g.text[i]) > 100);
            CU_ASSERT(strncmp(g.url[i], "https://", 8) == 0);
            CU_ASSERT(strlen(g.date[i]) == 19 && g.date[i][4] == '-' && g.date[i][10] == ' ');
            CU_ASSERT(valid_utf8(g.text[i]));
            CU_ASSERT_EQUAL(g.line[i], i + 2);
        }
        if (k == 2) {
            CU_ASSERT_STRING_EQUAL(g.title[0], "Чтобы помнили");
            CU_ASSERT_STRING_EQUAL(g.date[0], "2017-01-24 18:24:00");
            CU_ASSERT_STRING_EQUAL(g.topic[0], "Мир");
        }
        total += g.n;
        got_free(&g);
    }
    CU_ASSERT_EQUAL(total, 36);
}

// ---- RIA malformed input ----

static void test_ria_broken_json(void) {
    const char *p = put_str(
        "broken.json",
        "{\"text\": \"<p>one</p>\", \"title\": \"t1\"}\n"
        "{\"title\": \"t2\", \"text\": \"two\"}\n"
        "{\"text\": \"three\", \"title\": \"t3\"\n" // no closing brace
        "{\"text\": \"four\", \"title\": \"t4\", \"extra\": [1, {\"a\": null}, true, -2.5e3]}\n"
        "\n"
        "   \n"
        "{\"text\": \"five\" \"title\": \"t5\"}\n" // no comma
        "{\"text\": \"six\", \"title\": \"t6\"} trailing\n"
        "{\"text\": \"seven\", \"title\": \"t7\"}"); // no final newline
    Got g;
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_FATAL(g.open_ok);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL_FATAL(g.n, 4);
    CU_ASSERT_STRING_EQUAL(g.text[0], "one");
    CU_ASSERT_STRING_EQUAL(g.title[1], "t2");
    CU_ASSERT_STRING_EQUAL(g.text[2], "four");
    CU_ASSERT_STRING_EQUAL(g.text[3], "seven");
    CU_ASSERT_EQUAL(g.line[0], 1);
    CU_ASSERT_EQUAL(g.line[1], 2);
    CU_ASSERT_EQUAL(g.line[2], 4);
    CU_ASSERT_EQUAL(g.line[3], 9);
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 3);
    CU_ASSERT_EQUAL(g.bad_line[0], 3);
    CU_ASSERT_EQUAL(g.bad_line[1], 7);
    CU_ASSERT_EQUAL(g.bad_line[2], 8);
    for (int k = 0; k < 3; k++) CU_ASSERT_EQUAL(g.bad_reason[k], NEWS_BAD_SYNTAX);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[2], "after the end of the object"));
    CU_ASSERT_EQUAL(g.st.bad[NEWS_BAD_SYNTAX], 3);
    CU_ASSERT_EQUAL(g.st.lines, 9);
    got_free(&g);

    // exactly the brief's case: one broken line in the middle
    p = put_str("broken1.json", "{\"text\": \"a\", \"title\": \"A\"}\n"
                                "{\"text\": \"b\", \"title\": \"B\"}\n"
                                "{\"text\": \"c\", \"title\n"
                                "{\"text\": \"d\", \"title\": \"D\"}\n"
                                "{\"text\": \"e\", \"title\": \"E\"}\n");
    read_file(p, NEWS_FMT_RIA, 0, &g);
    CU_ASSERT_EQUAL(g.n, 4);
    CU_ASSERT_EQUAL(g.st.bad_rows, 1);
    CU_ASSERT_EQUAL(g.bad_line[0], 3);
    CU_ASSERT_EQUAL(g.bad_reason[0], NEWS_BAD_SYNTAX);
    got_free(&g);
}

static void test_ria_json_details(void) {
    const char *p = put_str(
        "details.json",
        "\xef\xbb\xbf{\"id\": 7, \"title\": \"\\u0441\\u043b\\u043e\\u0432\\u043e \\\"q\\\" \\\\ "
        "\\/\","
        " \"text\": \"<p>a\\nb\\tc<\\/p><p>\\ud83d\\ude00 &amp;amp;<\\/p>\"}\n"
        "{\"title\": null, \"text\": \"x\"}\n"                         // null title
        "{\"title\": \"no text\"}\n"                                   // missing text
        "{\"title\": \"   \", \"text\": \"x\"}\n"                      // blank title
        "{\"title\": \"t\", \"text\": \"<p><img src=x></p>&nbsp;\"}\n" // text empty after markup
        "{\"title\": 5, \"text\": \"x\"}\n"                            // not a string
        "{\"title\": \"t\", \"text\": \"lone \\ud800 surrogate\"}\n"
        "{\"title\": \"t\", \"text\": \"bad \\x escape\"}\n"
        "{\"title\": \"t\", \"text\": \"raw\ttab\"}\n"
        "{\"title\": \"t\", \"text\": \"unterminated}\n"
        "[1, 2]\n"
        "{}\n"
        "{\"t\\u0069tle\": \"escaped key\", \"text\": \"ok\", \"title\": \"last wins\"}\n");
    Got g;
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_FATAL(g.open_ok);
    CU_ASSERT_EQUAL(g.fmt, NEWS_FMT_RIA);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_STRING_EQUAL(g.title[0], "слово \"q\" \\ /");
    CU_ASSERT_STRING_EQUAL(g.text[0], "a b c\n\xf0\x9f\x98\x80 &amp;");
    CU_ASSERT_STRING_EQUAL(g.title[1], "last wins");
    CU_ASSERT_EQUAL(g.line[1], 13);
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 11);
    const NewsBad want[11] = {NEWS_BAD_MISSING, NEWS_BAD_MISSING, NEWS_BAD_MISSING,
                              NEWS_BAD_MISSING, NEWS_BAD_SYNTAX,  NEWS_BAD_UTF8,
                              NEWS_BAD_SYNTAX,  NEWS_BAD_SYNTAX,  NEWS_BAD_SYNTAX,
                              NEWS_BAD_SYNTAX,  NEWS_BAD_MISSING};
    for (int k = 0; k < 11; k++) {
        CU_ASSERT_EQUAL(g.bad_line[k], (uint64_t)k + 2);
        CU_ASSERT_EQUAL(g.bad_reason[k], want[k]);
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[5], "surrogate"));
    CU_ASSERT_EQUAL(g.st.bad[NEWS_BAD_MISSING], 5);
    got_free(&g);
}

static void test_ria_invalid_utf8(void) {
    const char *p = put_str("utf8.json", "{\"text\": \"ok\", \"title\": \"a\"}\n"
                                         "{\"text\": \"bad \xff byte\", \"title\": \"b\"}\n"
                                         "{\"text\": \"ok\", \"title\": \"over\xc0\x80long\"}\n"
                                         "{\"text\": \"sur\xed\xa0\x80rogate\", \"title\": \"c\"}\n"
                                         "{\"text\": \"cut \xd0\", \"title\": \"d\"}\n"
                                         "{\"text\": \"ок \xf0\x9f\x98\x80\", \"title\": \"e\"}\n");
    Got g;
    read_file(p, NEWS_FMT_RIA, 0, &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_STRING_EQUAL(g.text[1], "ок \xf0\x9f\x98\x80");
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 4);
    for (int k = 0; k < 4; k++) {
        CU_ASSERT_EQUAL(g.bad_reason[k], NEWS_BAD_UTF8);
        CU_ASSERT_EQUAL(g.bad_line[k], (uint64_t)k + 2);
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[0], "column 15"));
    got_free(&g);
}

// A line over the limit is skipped and counted wherever it falls (inside one window, across
// windows, at the end without '\n'); the default limit is 8 MiB.
static void test_ria_too_long(void) {
    size_t big = 100000;
    char *s = malloc(3 * big + 1000);
    size_t o = 0;
    o += (size_t)sprintf(s + o, "{\"text\": \"a\", \"title\": \"A\"}\n");
    o += (size_t)sprintf(s + o, "{\"text\": \"");
    memset(s + o, 'x', big);
    o += big;
    o += (size_t)sprintf(s + o, "\", \"title\": \"B\"}\n");
    o += (size_t)sprintf(s + o, "{\"text\": \"c\", \"title\": \"C\"}\n");
    o += (size_t)sprintf(s + o, "{\"text\": \"");
    memset(s + o, 'y', big);
    o += big;
    const char *p = put_file("long.json", s, o); // the last line never ends
    Got g;
    read_file(p, NEWS_FMT_RIA, 4096, &g);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_STRING_EQUAL(g.title[1], "C");
    CU_ASSERT_EQUAL(g.line[1], 3);
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 2);
    CU_ASSERT_EQUAL(g.bad_reason[0], NEWS_BAD_TOO_LONG);
    CU_ASSERT_EQUAL(g.bad_line[0], 2);
    CU_ASSERT_EQUAL(g.bad_line[1], 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[0], "4096"));
    CU_ASSERT_EQUAL(g.st.lines, 4);
    got_free(&g);
    // under a generous limit the same file reads (the last line is then broken JSON)
    read_file(p, NEWS_FMT_RIA, 1 << 20, &g);
    CU_ASSERT_EQUAL(g.n, 3);
    CU_ASSERT_EQUAL(g.n_bad, 1);
    CU_ASSERT_EQUAL(g.bad_reason[0], NEWS_BAD_SYNTAX);
    CU_ASSERT_EQUAL(strlen(g.text[1]), big);
    got_free(&g);
    free(s);

    // default limit: a 9 MiB body is skipped, the next line is read
    size_t huge = (size_t)9 << 20;
    s = malloc(huge + 200);
    o = (size_t)sprintf(s, "{\"title\": \"huge\", \"text\": \"");
    for (size_t i = 0; i < huge; i += 2) memcpy(s + o + i, "ж", 2);
    o += huge;
    o += (size_t)sprintf(s + o, "\"}\n{\"text\": \"small\", \"title\": \"S\"}\n");
    p = put_file("huge.json", s, o);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_STRING_EQUAL(g.title[0], "S");
    CU_ASSERT_EQUAL(g.line[0], 2);
    CU_ASSERT_EQUAL(g.n_bad, 1);
    CU_ASSERT_EQUAL(g.bad_reason[0], NEWS_BAD_TOO_LONG);
    CU_ASSERT_EQUAL(g.bad_line[0], 1);
    got_free(&g);
    free(s);
}

static void test_crlf(void) {
    const char *p =
        put_str("crlf.json", "{\"text\": \"<p>a</p>\\r\\n<p>b</p>\", \"title\": \"A\"}\r\n"
                             "\r\n"
                             "{\"text\": \"c\", \"title\": \"C\"}\r\n");
    Got g;
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_EQUAL(g.n_bad, 0);
    CU_ASSERT_STRING_EQUAL(g.text[0], "a\nb");
    CU_ASSERT_STRING_EQUAL(g.title[1], "C");
    CU_ASSERT_EQUAL(g.line[1], 3);
    got_free(&g);

    p = put_str("crlf.csv", "url,title,text,topic,tags\r\n"
                            "http://a/1,Первый,\"строка 1\r\nстрока 2\",t,x\r\n"
                            "\r\n"
                            "http://a/2,\"Второй, с запятой\",\"\"\"в кавычках\"\" текст\",t,\r\n"
                            "http://a/3,Третий,последний,t,x");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.fmt, NEWS_FMT_LENTA);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL_FATAL(g.n, 3);
    CU_ASSERT_EQUAL(g.n_bad, 0);
    CU_ASSERT_STRING_EQUAL(g.text[0], "строка 1\nстрока 2");
    CU_ASSERT_STRING_EQUAL(g.title[1], "Второй, с запятой");
    CU_ASSERT_STRING_EQUAL(g.text[1], "\"в кавычках\" текст");
    CU_ASSERT_STRING_EQUAL(g.text[2], "последний");
    CU_ASSERT_STRING_EQUAL(g.url[2], "http://a/3");
    CU_ASSERT_EQUAL(g.line[0], 2);
    CU_ASSERT_EQUAL(g.line[1], 5);
    CU_ASSERT_EQUAL(g.line[2], 6);
    CU_ASSERT_EQUAL(g.st.lines, 6);
    got_free(&g);
}

// ---- CSV malformed input ----

static void test_csv_unterminated(void) {
    // a quote left open at the end of the file: one bad record, what came before is read
    const char *p = put_str("open.csv", "url,title,text,topic,tags\n"
                                        "http://a/1,T1,text one,t,x\n"
                                        "http://a/2,T2,\"text two\n"
                                        "goes on\n"
                                        "and never ends,t,x\n");
    Got g;
    read_file(p, NEWS_FMT_LENTA, 0, &g);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_STRING_EQUAL(g.title[0], "T1");
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 1);
    CU_ASSERT_EQUAL(g.bad_line[0], 3);
    CU_ASSERT_EQUAL(g.bad_reason[0], NEWS_BAD_SYNTAX);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[0], "not closed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[0], "lines 3-5"));
    got_free(&g);

    // a closing quote missing in the middle: the reader finds the next record again
    p = put_str("missing_quote.csv", "url,title,text,topic,tags\n"
                                     "http://a/1,T1,\"text one\",t,x\n"
                                     "http://a/2,\"T2,text two,t,x\n"
                                     "http://a/3,\"T3\",\"text three\",t,x\n"
                                     "http://a/4,T4,\"text\n four\",t,x\n");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL_FATAL(g.n, 3);
    CU_ASSERT_STRING_EQUAL(g.title[1], "T3");
    CU_ASSERT_STRING_EQUAL(g.text[2], "text\n four");
    CU_ASSERT_EQUAL(g.line[1], 4);
    CU_ASSERT_EQUAL(g.line[2], 5);
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 1);
    CU_ASSERT_EQUAL(g.bad_line[0], 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[0], "lines 3-3"));
    got_free(&g);

    // stray quotes, wrong field counts, blank and missing fields
    p = put_str("stray.csv", "title,text,url\n"
                             "ok one,text,http://x/1\n"
                             "too,many,fields,here\n"
                             "too few\n"
                             ",no title,http://x/5\n"
                             "no text,,http://x/6\n"
                             "\n"
                             "bad \"quote,text,http://x/8\n"
                             "\"closed\"junk,text,http://x/9\n"
                             "text, with a comma,and more\n"
                             "ok two,text,http://x/11\n");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_STRING_EQUAL(g.title[1], "ok two");
    CU_ASSERT_EQUAL(g.line[1], 11);
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 5);
    CU_ASSERT_EQUAL(g.bad_line[0], 3);
    CU_ASSERT_EQUAL(g.bad_reason[0], NEWS_BAD_SYNTAX);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[0], "4 fields"));
    CU_ASSERT_EQUAL(g.bad_line[1], 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[1], "1 fields"));
    CU_ASSERT_EQUAL(g.bad_line[2], 5);
    CU_ASSERT_EQUAL(g.bad_reason[2], NEWS_BAD_MISSING);
    CU_ASSERT_EQUAL(g.bad_line[3], 6);
    CU_ASSERT_EQUAL(g.bad_reason[3], NEWS_BAD_MISSING);
    // after a syntax error the reader resynchronises line by line: lines 8-10 (the last
    // one has three fields but no URL) form one damaged region
    CU_ASSERT_EQUAL(g.bad_line[4], 8);
    CU_ASSERT_EQUAL(g.bad_reason[4], NEWS_BAD_SYNTAX);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[4], "quote"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[4], "lines 8-10"));
    got_free(&g);

    // "only whitespace" is news.h's raw whitespace, U+00A0 and \v \f included (as a RIA
    // body of &nbsp; is missing); an em space is text (found by tests/ref/first_sentence_ref.py)
    p = put_str("blank.csv", "url,title,text,topic,tags\n"
                             "http://x/2,nbsp text,\"\xc2\xa0 \xc2\xa0\",t,\n"
                             "http://x/3,vt ff text,\"\v\f\t\",t,\n"
                             "http://x/4,\xc2\xa0,nbsp title,t,\n"
                             "http://x/5,em space text,\xe2\x80\x83,t,\n"
                             "http://x/6,ok,text,t,\n");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_STRING_EQUAL(g.text[0], "\xe2\x80\x83");
    CU_ASSERT_STRING_EQUAL(g.title[1], "ok");
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 3);
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_EQUAL(g.bad_line[k], (uint64_t)(2 + k));
        CU_ASSERT_EQUAL(g.bad_reason[k], NEWS_BAD_MISSING);
    }
    got_free(&g);
}

static void test_csv_invalid_utf8_and_long(void) {
    const char *p =
        put_str("bad.csv", "date,url,edition,topics,authors,title,text,reposts_fb\n"
                           "2019-01-01 10:00:00,http://a/1,-,Мир,,Хорошо,текст,1\n"
                           "2019-01-01 10:00:00,http://a/2,-,Мир,,Плохо \xff,текст,1\n"
                           "2019-01-01 10:00:00,http://a/3,-,Мир,,Тоже,\"текст \xe2\x82\",1\n"
                           "2019-01-01 10:00:00,http://a/4,\xff,Мир,,ignored column,текст,1\n");
    Got g;
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.fmt, NEWS_FMT_ODS);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_STRING_EQUAL(g.topic[0], "Мир");
    CU_ASSERT_STRING_EQUAL(g.title[1], "ignored column"); // edition is not checked
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 2);
    CU_ASSERT_EQUAL(g.bad_reason[0], NEWS_BAD_UTF8);
    CU_ASSERT_EQUAL(g.bad_line[0], 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.bad_msg[0], "title"));
    CU_ASSERT_EQUAL(g.bad_reason[1], NEWS_BAD_UTF8);
    CU_ASSERT_EQUAL(g.bad_line[1], 4);
    got_free(&g);

    // a multi-line quoted field over the limit (with quotes and newlines inside)
    size_t big = 50000;
    char *s = malloc(big * 2 + 1000);
    size_t o = (size_t)sprintf(s, "url,title,text,topic,tags\nhttp://a/1,A,a,t,x\nhttp://a/2,B,\"");
    for (size_t i = 0; i < big; i++) s[o++] = i % 100 == 99 ? '\n' : (i % 100 == 50 ? ',' : 'z');
    o += (size_t)sprintf(s + o, "\"\"q\"\" end\",t,x\nhttp://a/3,C,c,t,x\n");
    p = put_file("long.csv", s, o);
    read_file(p, NEWS_FMT_LENTA, 4096, &g);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL_FATAL(g.n, 2);
    CU_ASSERT_STRING_EQUAL(g.title[1], "C");
    CU_ASSERT_EQUAL(g.line[1], 3 + big / 100 + 1);
    CU_ASSERT_EQUAL_FATAL(g.n_bad, 1);
    CU_ASSERT_EQUAL(g.bad_reason[0], NEWS_BAD_TOO_LONG);
    CU_ASSERT_EQUAL(g.bad_line[0], 3);
    got_free(&g);
    read_file(p, NEWS_FMT_LENTA, 0, &g);
    CU_ASSERT_EQUAL(g.n, 3);
    CU_ASSERT_EQUAL(g.n_bad, 0);
    got_free(&g);
    free(s);
}

static void test_csv_header(void) {
    Got g;
    // columns in another order, extra ones, a BOM, spaces around names
    const char *p = put_str("order.csv", "\xef\xbb\xbftags, Text ,extra,TITLE\n"
                                         "a,the text,\"x,y\",the title\n");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_FATAL(g.open_ok);
    CU_ASSERT_EQUAL(g.fmt, NEWS_FMT_LENTA);
    CU_ASSERT_EQUAL_FATAL(g.n, 1);
    CU_ASSERT_STRING_EQUAL(g.title[0], "the title");
    CU_ASSERT_STRING_EQUAL(g.text[0], "the text");
    CU_ASSERT_STRING_EQUAL(g.url[0], "");
    got_free(&g);
    // no title column
    p = put_str("notitle.csv", "url,headline,text\nhttp://a,b,c\n");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT(!g.open_ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.open_err, "title"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g.open_err, "notitle.csv"));
    read_file(p, NEWS_FMT_ODS, 0, &g);
    CU_ASSERT(!g.open_ok);
    // not a news file at all
    p = put_str("random.txt", "hello world\nthis is not news\n");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT(!g.open_ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.open_err, "not a recognised news format"));
    // a missing file
    read_file(tu_path(tmp_dir, "does-not-exist.json"), NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT(!g.open_ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.open_err, "cannot open"));
}

static void test_empty(void) {
    Got g;
    const char *p = put_file("empty.json", "", 0);
    read_file(p, NEWS_FMT_RIA, 0, &g); // an empty JSON-lines file has no records
    CU_ASSERT_FATAL(g.open_ok);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL(g.n, 0);
    CU_ASSERT_EQUAL(g.n_bad, 0);
    CU_ASSERT_EQUAL(g.st.lines, 0);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT(!g.open_ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.open_err, "empty"));
    read_file(p, NEWS_FMT_LENTA, 0, &g);
    CU_ASSERT(!g.open_ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.open_err, "empty"));
    // whitespace only, and a gzip of nothing
    p = put_str("blank.json", "\n  \n\r\n");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT(!g.open_ok);
    read_file(p, NEWS_FMT_RIA, 0, &g);
    CU_ASSERT(g.open_ok && g.rc == 0 && g.n == 0 && g.n_bad == 0);
    size_t zn;
    unsigned char *z = gzip_bytes("", 0, &zn);
    p = put_file("empty.gz", z, zn);
    free(z);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT(!g.open_ok);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.open_err, "empty"));
    read_file(p, NEWS_FMT_RIA, 0, &g);
    CU_ASSERT(g.open_ok && g.rc == 0 && g.n == 0);
    // a header and nothing else
    p = put_str("header_only.csv", "url,title,text,topic,tags\n");
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT(g.open_ok && g.rc == 0 && g.n == 0 && g.n_bad == 0);
}

// Many RIA lines (about 160-360 bytes each; the longest length in *longest, may be NULL).
static char *many_lines(size_t n_lines, size_t *n, size_t *longest) {
    char *s = malloc(n_lines * 600 + 100);
    size_t o = 0, top = 0;
    for (size_t i = 0; i < n_lines; i++) {
        size_t o0 = o;
        o += (size_t)sprintf(
            s + o,
            "{\"title\": \"заголовок %zu\", \"text\": \"<p>москва, 1 дек&nbsp;&mdash; "
            "риа новости. текст номер %zu&hellip;<\\/p>\\n<p>%0*zu<\\/p>\"}\n",
            i, i, (int)(i % 200), i);
        if (o - o0 - 1 > top) top = o - o0 - 1;
    }
    *n = o;
    if (longest) *longest = top;
    return s;
}

static void test_gzip_truncated_and_corrupt(void) {
    size_t n, zn;
    char *s = many_lines(20000, &n, NULL);
    unsigned char *z = gzip_bytes(s, n, &zn);
    Got g;
    const char *p = put_file("full.json.gz", z, zn);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.rc, 0);
    CU_ASSERT_EQUAL(g.st.items, 20000);
    CU_ASSERT_EQUAL(g.n_bad, 0);
    CU_ASSERT_EQUAL(g.st.data_bytes, n);
    CU_ASSERT_EQUAL(g.st.file_bytes, zn);
    CU_ASSERT_STRING_EQUAL(g.title[7], "заголовок 7");
    CU_ASSERT_STRING_EQUAL(g.text[1], "москва, 1 дек — риа новости. текст номер 1…\n1");
    got_free(&g);

    // cut in half: the items before the cut, then a clear error
    p = put_file("cut.json.gz", z, zn / 2);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_FATAL(g.open_ok);
    CU_ASSERT_EQUAL(g.rc, -1);
    CU_ASSERT(g.st.items > 1000 && g.st.items < 20000);
    CU_ASSERT_EQUAL(g.n_bad, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.err, "truncated gzip"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g.err, "cut.json.gz"));
    got_free(&g);
    // cut inside the 8-byte trailer: every record is there, the stream is still incomplete
    p = put_file("cut_trailer.json.gz", z, zn - 3);
    read_file(p, NEWS_FMT_RIA, 0, &g);
    CU_ASSERT_EQUAL(g.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.err, "truncated gzip"));
    got_free(&g);
    // cut inside the header: the open already fails or the first read does
    p = put_file("cut_header.json.gz", z, 5);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT(!g.open_ok || g.rc == -1);
    if (!g.open_ok) CU_ASSERT_PTR_NOT_NULL(strstr(g.open_err, "truncated gzip"));
    got_free(&g);

    // corrupt bytes in the middle: an error (bad data or bad checksum), never a crash
    unsigned char *c = malloc(zn);
    memcpy(c, z, zn);
    for (size_t k = zn / 2; k < zn / 2 + 64; k++) c[k] ^= 0x5A;
    p = put_file("corrupt.json.gz", c, zn);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.err, "gzip"));
    got_free(&g);
    // a wrong CRC in the trailer
    memcpy(c, z, zn);
    c[zn - 8] ^= 1;
    p = put_file("badcrc.json.gz", c, zn);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.err, "corrupt gzip"));
    got_free(&g);
    // garbage after the stream
    unsigned char *t = malloc(zn + 4);
    memcpy(t, z, zn);
    memcpy(t + zn, "JUNK", 4);
    p = put_file("trailing.json.gz", t, zn + 4);
    read_file(p, NEWS_FMT_AUTO, 0, &g);
    CU_ASSERT_EQUAL(g.st.items, 20000);
    CU_ASSERT_EQUAL(g.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g.err, "not gzip"));
    got_free(&g);
    free(t);
    free(c);
    free(z);

    // every cut of a small gzip file ends in 0 items + error or in a clean end; no crash
    size_t sn;
    char *small = many_lines(30, &sn, NULL);
    z = gzip_bytes(small, sn, &zn);
    for (size_t cut = 2; cut < zn; cut++) { // 0 and 1 bytes are not gzip
        p = put_file("cutk.gz", z, cut);
        read_file(p, NEWS_FMT_RIA, 0, &g);
        CU_ASSERT(!g.open_ok || g.rc == -1);
        CU_ASSERT(g.n <= 30); // a cut in the 8-byte trailer leaves every record readable
        got_free(&g);
    }
    free(z);
    free(small);
    free(s);
}

// The same records read plainly, gzipped, and with the smallest limits that still fit
// them give the same items.
static void test_windows(void) {
    size_t n, zn;
    size_t longest;
    char *s = many_lines(20000, &n, &longest); // 5 MB: records cross window boundaries
    const char *p = put_file("many.json", s, n);
    Got a, b;
    read_file(p, NEWS_FMT_AUTO, 0, &a);
    read_file(p, NEWS_FMT_AUTO, longest, &b); // the smallest limit that fits every line
    CU_ASSERT_EQUAL(a.st.items, 20000);
    CU_ASSERT_EQUAL(b.st.items, 20000);
    CU_ASSERT_EQUAL(a.n_bad + b.n_bad, 0);
    CU_ASSERT_EQUAL(a.st.lines, 20000);
    for (size_t i = 0; i < MAX_ITEMS; i++) {
        CU_ASSERT_STRING_EQUAL(a.text[i], b.text[i]);
        CU_ASSERT_EQUAL(a.line[i], i + 1);
    }
    got_free(&a);
    got_free(&b);
    read_file(p, NEWS_FMT_AUTO, longest - 1, &b); // one byte less: those lines are skipped
    CU_ASSERT(b.n_bad > 0 && b.st.items + b.n_bad == 20000);
    for (size_t i = 0; i < b.n_bad && i < MAX_BAD; i++)
        CU_ASSERT_EQUAL(b.bad_reason[i], NEWS_BAD_TOO_LONG);
    got_free(&b);
    free(s);
    unsigned char *z;

    // CSV with multi-line quoted records across windows
    size_t cap = 20000 * 200 + 100, o = 0;
    s = malloc(cap);
    o += (size_t)sprintf(s, "url,title,text,topic,tags\n");
    for (size_t i = 0; i < 20000; i++)
        o += (size_t)sprintf(
            s + o, "https://lenta.ru/%zu,\"Заголовок, %zu\",\"Строка\n\"\"%zu\"\"\n%0*zu\",Мир,\n",
            i, i, i, (int)(i % 50), i);
    p = put_file("many.csv", s, o);
    read_file(p, NEWS_FMT_AUTO, 0, &a);
    CU_ASSERT_EQUAL(a.rc, 0);
    CU_ASSERT_EQUAL(a.st.items, 20000);
    CU_ASSERT_EQUAL(a.n_bad, 0);
    CU_ASSERT_EQUAL(a.st.lines, 1 + 3 * 20000);
    CU_ASSERT_STRING_EQUAL(a.title[5], "Заголовок, 5");
    CU_ASSERT_STRING_EQUAL(a.text[5], "Строка\n\"5\"\n00005");
    for (size_t i = 0; i < MAX_ITEMS; i++) CU_ASSERT_EQUAL(a.line[i], 2 + 3 * i);
    got_free(&a);
    z = gzip_bytes(s, o, &zn);
    p = put_file("many.csv.gz", z, zn);
    read_file(p, NEWS_FMT_LENTA, 300, &a);
    CU_ASSERT_EQUAL(a.st.items, 20000);
    CU_ASSERT_EQUAL(a.n_bad, 0);
    got_free(&a);
    free(z);
    free(s);
}

// Random damage to valid files: reading always ends, every record is either returned or
// reported, and nothing crashes (run under MODE=asan too).
static void test_random_damage(void) {
    size_t n;
    char *ria = many_lines(300, &n, NULL);
    size_t cn = 0;
    char *csv = malloc(300 * 120 + 100);
    cn += (size_t)sprintf(csv, "url,title,text,topic,tags\n");
    for (int i = 0; i < 300; i++)
        cn += (size_t)sprintf(csv + cn, "http://l/%d,\"T %d\",\"a \"\"b\"\"\nc, d\",x,y\n", i, i);
    static const char noise[] = "\"\n,\r{}\\<&\xff\xd0 ";
    uint64_t s = 99;
    char *buf = malloc((n > cn ? n : cn) + 1);
    for (int t = 0; t < 300; t++) {
        int is_csv = t & 1;
        const char *src = is_csv ? csv : ria;
        size_t len = is_csv ? cn : n;
        memcpy(buf, src, len);
        for (int k = 0; k < 1 + t % 8; k++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (size_t)(s >> 20) % len;
            buf[at] = noise[(s >> 8) % (sizeof noise - 1)];
        }
        const char *p = put_file(is_csv ? "damaged.csv" : "damaged.json", buf, len);
        Got g;
        read_file(p, NEWS_FMT_AUTO, t % 3 ? 0 : 200, &g);
        if (g.open_ok) {
            CU_ASSERT_EQUAL(g.rc, 0);
            CU_ASSERT(g.n + g.n_bad <= 300 + 8);
            CU_ASSERT(g.n + g.n_bad >= 1);
            for (size_t i = 0; i < g.n && i < MAX_ITEMS; i++)
                CU_ASSERT(valid_utf8(g.text[i]) && valid_utf8(g.title[i]));
        }
        got_free(&g);
    }
    free(buf);
    free(csv);
    free(ria);
}

// Without a callback, skipped records go to stderr (the first 20) and are still counted.
static void test_default_report(void) {
    char *s = malloc(30 * 40);
    size_t o = 0;
    for (int i = 0; i < 30; i++) o += (size_t)sprintf(s + o, "{\"text\": broken %d}\n", i);
    o += (size_t)sprintf(s + o, "{\"text\": \"ok\", \"title\": \"t\"}\n");
    const char *p = put_file("noisy.json", s, o);
    free(s);
    char err[CX_ERRLEN];
    NewsReader *r = news_open(p, NEWS_FMT_RIA, NULL, err);
    CU_ASSERT_FATAL(r != NULL);
    NewsItem it;
    CU_ASSERT_EQUAL(news_next(r, &it, err), 1);
    CU_ASSERT_EQUAL(it.line, 31);
    CU_ASSERT_EQUAL(news_next(r, &it, err), 0);
    NewsStats st;
    news_stats(r, &st);
    CU_ASSERT_EQUAL(st.bad_rows, 30);
    CU_ASSERT_EQUAL(st.bad[NEWS_BAD_SYNTAX], 30);
    news_close(r);
    news_close(NULL);
}

int main(void) {
    if (tu_make_tmpdir(tmp_dir, sizeof tmp_dir, "test_news_") != 0) {
        perror("mkdtemp");
        return 1;
    }
    static const TuTest t_tests[] = {
        {"format and reason names", test_names},
        {"HTML tags and entities", test_html},
        {"HTML on random markup", test_html_random},
        {"UTF-8 check", test_utf8_check},
    };
    static const TuTest s_tests[] = {
        {"RIA ria_20.json (plain and gzip)", test_sample_ria},
        {"Lenta.ru lenta-ru-news.csv.gz", test_sample_lenta},
        {"ODS ods/*.csv.gz", test_sample_ods},
    };
    static const TuTest m_tests[] = {
        {"RIA broken JSON lines", test_ria_broken_json},
        {"RIA JSON escapes, keys, missing fields", test_ria_json_details},
        {"RIA invalid UTF-8", test_ria_invalid_utf8},
        {"RIA lines over the limit", test_ria_too_long},
        {"CRLF line ends (RIA and CSV)", test_crlf},
        {"CSV unterminated and stray quotes", test_csv_unterminated},
        {"CSV invalid UTF-8 and records over the limit", test_csv_invalid_utf8_and_long},
        {"CSV headers", test_csv_header},
        {"empty files", test_empty},
        {"truncated and corrupt gzip", test_gzip_truncated_and_corrupt},
        {"records across read windows", test_windows},
        {"random damage", test_random_damage},
        {"default reporting to stderr", test_default_report},
    };
    const TuSuite suites[] = {
        {.name = "news text", .init = NULL, .clean = NULL, .tests = t_tests, .n_tests = TU_NELEM(t_tests)},
        {.name = "news samples", .init = NULL, .clean = NULL, .tests = s_tests, .n_tests = TU_NELEM(s_tests)},
        {.name = "news malformed input", .init = NULL, .clean = NULL, .tests = m_tests, .n_tests = TU_NELEM(m_tests)},
    };
    int rc = tu_run(suites, TU_NELEM(suites), NULL, CU_BRM_VERBOSE);
    if (tu_rm_tree(tmp_dir) != 0) {
        fprintf(stderr, "test_news: cannot remove %s\n", tmp_dir);
        rc = 1;
    }
    return rc;
}
