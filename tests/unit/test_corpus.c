// test_corpus.c: the corpus builder's extractors, normalisation, dedup and split
// (io/corpus/corpus.h), on small inputs written here.
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/corpus/corpus.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

// Document i of d with each paragraph normalised, joined by " | " (empty ones left out).
static const char *doc_str(const CorpusDocs *d, size_t i) {
    static char out[8192];
    char para[4096];
    size_t o = 0;
    out[0] = '\0';
    if (i >= d->n_docs) return "<no such document>";
    const char *s = d->text + d->off[i];
    size_t n = d->len[i], p = 0;
    while (p < n) {
        const char *nl = memchr(s + p, '\n', n - p);
        size_t end = nl ? (size_t)(nl - s) : n;
        size_t len = end - p < sizeof para ? end - p : sizeof para;
        size_t m = corpus_normalize(s + p, len, para, NULL);
        if (m > 0 && o + m + 4 < sizeof out) {
            if (o) {
                memcpy(out + o, " | ", 3);
                o += 3;
            }
            memcpy(out + o, para, m);
            o += m;
            out[o] = '\0';
        }
        p = end + 1;
    }
    return out;
}

// Extracts text (a C string) with fmt into a fresh list.
static void extract(CorpusFormat fmt, const char *text, CorpusDocs *d) {
    char err[CX_ERRLEN];
    corpus_docs_init(d);
    CU_ASSERT_EQUAL_FATAL(corpus_extract(fmt, text, strlen(text), d, err), 0);
}

#define ASSERT_DOC(d, i, want)                                                              \
    do {                                                                                    \
        const char *got_ = doc_str((d), (i));                                               \
        if (strcmp(got_, (want)) != 0)                                                      \
            fprintf(stderr, "\n  document %zu:\n    got  [%s]\n    want [%s]\n", (size_t)(i), \
                    got_, (want));                                                          \
        CU_ASSERT_STRING_EQUAL(got_, (want));                                               \
    } while (0)

// ---- formats ----

static void test_formats(void) {
    CorpusFormat f;
    for (int i = 0; i < CORPUS_FMT_COUNT; i++) {
        CU_ASSERT_EQUAL(corpus_format_parse(corpus_format_name((CorpusFormat)i), &f), 0);
        CU_ASSERT_EQUAL(f, (CorpusFormat)i);
    }
    CU_ASSERT_EQUAL(corpus_format_parse("pdf", &f), -1);
    CU_ASSERT_PTR_NULL(corpus_format_name(CORPUS_FMT_COUNT));
    CU_ASSERT(corpus_format_accepts(CORPUS_FMT_HTML, "/x/ru/a.html"));
    CU_ASSERT(corpus_format_accepts(CORPUS_FMT_HTML, "/x/ru/a.HTM.gz"));
    CU_ASSERT(!corpus_format_accepts(CORPUS_FMT_HTML, "/x/ru/a.png"));
    CU_ASSERT(corpus_format_accepts(CORPUS_FMT_XML, "help/ru/a.page"));
    CU_ASSERT(corpus_format_accepts(CORPUS_FMT_MO, "ru/LC_MESSAGES/x.mo"));
    CU_ASSERT(!corpus_format_accepts(CORPUS_FMT_MO, "ru/LC_MESSAGES/x.po"));
    CU_ASSERT(corpus_format_accepts(CORPUS_FMT_FORTUNE, "fortunes/ru/2001.03"));
    CU_ASSERT(!corpus_format_accepts(CORPUS_FMT_FORTUNE, "fortunes/ru/2001.03.dat"));
    CU_ASSERT(corpus_format_accepts(CORPUS_FMT_MAN, "man/ru/man1/ls.1.gz"));
}

// ---- extractors ----

static void test_fortune(void) {
    const char *src = "Аппетит приходит... и уходит.\n"
                      "\t\t-- Евгений Кащеев\n"
                      "%\n"
                      "- Сессию сдал?\r\n"
                      "- Так ведь парольная.\r\n"
                      "%% a comment-free separator\n"
                      "%%\n"
                      "%\n"
                      "   \n"
                      "%\n"
                      "Последняя запись без конца строки";
    CorpusDocs d;
    extract(CORPUS_FMT_FORTUNE, src, &d);
    // "%%" then "%": nothing between, and a blank entry: neither is a document
    CU_ASSERT_EQUAL(d.n_docs, 3);
    ASSERT_DOC(&d, 0, "Аппетит приходит... и уходит. -- Евгений Кащеев");
    ASSERT_DOC(&d, 1, "- Сессию сдал? - Так ведь парольная. %% a comment-free separator");
    ASSERT_DOC(&d, 2, "Последняя запись без конца строки");
    corpus_docs_free(&d);
}

static void test_fortune_entries(void) {
    // the documents, one by one (a blank entry is not a document)
    const char *src = "Первая\n%\n\n%\nВторая\nстрока\n%\n";
    CorpusDocs d;
    extract(CORPUS_FMT_FORTUNE, src, &d);
    CU_ASSERT_EQUAL(d.n_docs, 2);
    ASSERT_DOC(&d, 0, "Первая");
    ASSERT_DOC(&d, 1, "Вторая строка");
    corpus_docs_free(&d);
}

static void test_text(void) {
    CorpusDocs d;
    extract(CORPUS_FMT_TEXT, "Первый абзац,\nв две строки.\n\n\n  Второй абзац.\n", &d);
    CU_ASSERT_EQUAL(d.n_docs, 1);
    ASSERT_DOC(&d, 0, "Первый абзац, в две строки. | Второй абзац.");
    corpus_docs_free(&d);
    extract(CORPUS_FMT_TEXT, " \n\t\n", &d);
    CU_ASSERT_EQUAL(d.n_docs, 0);
    corpus_docs_free(&d);
}

static void test_news(void) {
    // one article: the title, then the body's paragraphs (blank lines are not paragraphs)
    CorpusDocs d;
    extract(CORPUS_FMT_NEWS, "Заголовок статьи\nПервый абзац.\n\nВторой абзац.", &d);
    CU_ASSERT_EQUAL(d.n_docs, 1);
    ASSERT_DOC(&d, 0, "Заголовок статьи | Первый абзац. | Второй абзац.");
    corpus_docs_free(&d);
    extract(CORPUS_FMT_NEWS, "\n \n", &d);
    CU_ASSERT_EQUAL(d.n_docs, 0);
    corpus_docs_free(&d);
    CU_ASSERT(corpus_format_accepts(CORPUS_FMT_NEWS, "train/rt_ng_train.json.gz"));
}

static void test_man(void) {
    const char *src =
        ".\\\" Copyright comment that must vanish\n"
        "'\\\" t\n"
        ".TH LS 1 2023-01-01 \"GNU coreutils\"\n"
        ".de XX\n"
        "macro body that must vanish\n"
        "..\n"
        ".SH ИМЯ\n"
        "ls \\- вывод содержимого каталогов\n"
        ".SH \"ОБЗОР\"\n"
        ".B ls\n"
        "[\\fIПАРАМЕТР\\fP]... [\\fBФАЙЛ\\fR]...\n"
        ".SH ОПИСАНИЕ\n"
        "Выводит информацию о \\fIфайлах\\fP \\(em по умолчанию\n"
        "о текущем каталоге. Кавычки: \\*(lqтак\\*(rq и \\(Foтак\\(Fc, \\[u0439]од.\n"
        ".PP\n"
        "Второй абзац\\c\n"
        "слитно. \\s-1МЕЛКО\\s0 и \\f(CWмоно\\fP; \\%перенос\\&.\n"
        ".TP\n"
        ".BR \\-a \", \" \\-\\-all\n"
        "не скрывать записи, начинающиеся с .\n"
        ".IP \\(bu 2\n"
        "пункт списка\n"
        ".EX\n"
        "$ ls -la /tmp\n"
        ".EE\n"
        ".if n \\{\\\n"
        "скрытое условие\n"
        ".\\}\n"
        ".nf\n"
        "строка один\n"
        "строка два\n"
        ".fi\n"
        ".TS\n"
        "tab(;);\n"
        "l l.\n"
        "Ячейка;другая ячейка\n"
        ".TE\n"
        "Подробнее на\n"
        ".UR https://example.org/\n"
        "сайте\n"
        ".UE .\n";
    CorpusDocs d;
    extract(CORPUS_FMT_MAN, src, &d);
    CU_ASSERT_EQUAL_FATAL(d.n_docs, 1);
    ASSERT_DOC(&d, 0,
               "ИМЯ | ls - вывод содержимого каталогов | ОБЗОР | ls [ПАРАМЕТР]... [ФАЙЛ]... | "
               "ОПИСАНИЕ | Выводит информацию о файлах \xe2\x80\x94 по умолчанию о текущем "
               "каталоге. Кавычки: \xe2\x80\x9cтак\xe2\x80\x9d и \xc2\xabтак\xc2\xbb, йод. | "
               "Второй абзацслитно. МЕЛКО и моно; перенос. | -a, --all | "
               "не скрывать записи, начинающиеся с . | \xe2\x80\xa2 | пункт списка | "
               "строка один | строка два | Ячейка другая ячейка | Подробнее на сайте.");
    const char *t = doc_str(&d, 0);
    CU_ASSERT_PTR_NULL(strstr(t, "Copyright"));
    CU_ASSERT_PTR_NULL(strstr(t, "macro body"));
    CU_ASSERT_PTR_NULL(strstr(t, "скрытое"));
    CU_ASSERT_PTR_NULL(strstr(t, "/tmp"));
    CU_ASSERT_PTR_NULL(strstr(t, "https"));
    CU_ASSERT_PTR_NULL(strchr(t, '\\'));
    corpus_docs_free(&d);
}

static void test_html(void) {
    const char *src =
        "<!DOCTYPE html>\n<html lang=\"ru\"><head><meta charset=\"utf-8\">"
        "<title>Заголовок окна</title><style>p { color: red; }</style></head>\n"
        "<body class=\"article toc2\"><div class=\"navheader\"><a href=\"x\">Назад</a></div>\n"
        "<script type=\"text/javascript\">if (a < b) { document.write('<p>нет</p>'); }"
        "</script>\n"
        "<h1 id=\"h\">Глава&nbsp;1. Начало</h1>\n"
        "<p class=\"para\">Текст &laquo;в&raquo; кавычках &mdash; и <b>жирный</b>"
        "<i>курсив</i>, &amp; &lt;тег&gt; &#1103;&#x44F; &unknown; &copy 2023.</p>\n"
        "<!-- комментарий <p>скрыт</p> -->\n"
        "<pre class=\"screen\">$ apt-get install что-то</pre>\n"
        "<ul><li>первый</li><li>второй<br>с переносом</li></ul>\n"
        "<p title=\"a > b\">Атрибут с &gt; внутри.</p><img src=\"x.png\" alt=\"Значок\">\n"
        "<div class=\"footer\">Подвал <div>вложенный</div> тоже</div>\n"
        "<p>После подвала, 5 < 6.</p>\n"
        "</body></html>\n";
    CorpusDocs d;
    extract(CORPUS_FMT_HTML, src, &d);
    CU_ASSERT_EQUAL_FATAL(d.n_docs, 1);
    ASSERT_DOC(&d, 0,
               "Глава 1. Начало | Текст \xc2\xabв\xc2\xbb кавычках \xe2\x80\x94 и жирныйкурсив, "
               "& <тег> яя \xc2\xa9 2023. | первый | второй | с переносом | Атрибут с > внутри. "
               "| После подвала, 5 < 6.");
    corpus_docs_free(&d);
}

static void test_xhp(void) {
    const char *src =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<helpdocument version=\"1.0\">\n<meta><topic id=\"t\" indexer=\"include\">"
        "<title id=\"tit\" xml-lang=\"ru\">Мета-заголовок</title>"
        "<filename>/text/x.xhp</filename></topic></meta>\n<body>\n"
        "<bookmark xml-lang=\"ru\" branch=\"index\" id=\"bm\">"
        "<bookmark_value>формулы;вставка</bookmark_value></bookmark>\n"
        "<paragraph role=\"heading\" id=\"hd\" level=\"1\">Вставка формул</paragraph>\n"
        "<paragraph role=\"paragraph\" id=\"p1\"><ahelp hid=\".\">Вставляет формулу</ahelp> "
        "в документ. Нажмите <switchinline select=\"sys\"><caseinline select=\"MAC\">Command"
        "</caseinline><defaultinline>Ctrl</defaultinline></switchinline>+Enter &amp; "
        "<item type=\"menuitem\">Вставка - Объект</item>.</paragraph>\n"
        "<comment>UFI: внутренний комментарий</comment>\n"
        "<image src=\"a.png\" id=\"img\"><alt id=\"alt\">Значок</alt></image>\n"
        "<embed href=\"text/shared/00/x.xhp#y\"/>\n"
        "</body>\n</helpdocument>\n";
    CorpusDocs d;
    extract(CORPUS_FMT_XHP, src, &d);
    CU_ASSERT_EQUAL_FATAL(d.n_docs, 1);
    ASSERT_DOC(&d, 0,
               "Вставка формул | Вставляет формулу в документ. Нажмите Ctrl+Enter & "
               "Вставка - Объект.");
    corpus_docs_free(&d);
}

static void test_mallard(void) {
    const char *src =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<page xmlns=\"http://projectmallard.org/1.0/\" type=\"topic\" id=\"x\">\n"
        "<info><desc>Описание в info</desc><mal:credit xmlns:mal=\"m\" type=\"translator\">"
        "<mal:name>Переводчик</mal:name></mal:credit></info>\n"
        "<title>Печать</title>\n<p>Нажмите <keyseq><key>Ctrl</key><key>P</key></keyseq> "
        "или <gui>Печать</gui>.</p>\n<screen>lpr file</screen>\n"
        "<list><item><p>Один</p></item><item><p>Два</p></item></list>\n</page>\n";
    CorpusDocs d;
    extract(CORPUS_FMT_XML, src, &d);
    CU_ASSERT_EQUAL_FATAL(d.n_docs, 1);
    ASSERT_DOC(&d, 0, "Печать | Нажмите Ctrl+P или Печать. | Один | Два");
    corpus_docs_free(&d);
}

static void test_debtrans(void) {
    const char *src =
        "Package: 7kaa\n"
        "Description-md5: 37b0a07b664e6e2e6b3370a23d7a49cb\n"
        "Description-ru: Семь враждебных королевств\n"
        " «Семь королевств» является уникальной смесью\n"
        " стратегии в реальном времени.\n"
        " .\n"
        " Возможности:\n"
        "  * торговля;\n"
        "  * дипломатия.\n"
        "\n"
        "Package: empty\n"
        "Description-md5: 0123\n"
        "\n"
        "Package: libfoo\r\n"
        "Description-md5: 4567\r\n"
        "Description-ru: библиотека foo\r\n"
        " Библиотека для работы с foo.\r\n";
    CorpusDocs d;
    extract(CORPUS_FMT_DEBTRANS, src, &d);
    CU_ASSERT_EQUAL_FATAL(d.n_docs, 2);
    ASSERT_DOC(&d, 0,
               "Семь враждебных королевств | «Семь королевств» является уникальной смесью "
               "стратегии в реальном времени. | Возможности: | торговля; | дипломатия.");
    ASSERT_DOC(&d, 1, "библиотека foo | Библиотека для работы с foo.");
    corpus_docs_free(&d);
}

// Builds a .mo image of n messages (msgid, msgstr pairs; msgstr may hold "\0" plural
// forms given with explicit lengths). Returns its size.
typedef struct {
    const char *id;
    const char *str;
    size_t str_len;
} MoMsg;

static void put32(unsigned char *p, uint32_t v, int be) {
    for (int k = 0; k < 4; k++) p[be ? k : 3 - k] = (unsigned char)(v >> (8 * (3 - k)));
}

static size_t build_mo(unsigned char *buf, size_t cap, const MoMsg *m, int n, int be) {
    size_t o_tab = 28, t_tab = o_tab + 8 * (size_t)n, pos = t_tab + 8 * (size_t)n;
    memset(buf, 0, cap);
    put32(buf, 0x950412deu, be);
    put32(buf + 4, 0, be);
    put32(buf + 8, (uint32_t)n, be);
    put32(buf + 12, (uint32_t)o_tab, be);
    put32(buf + 16, (uint32_t)t_tab, be);
    for (int i = 0; i < n; i++) {
        size_t il = strlen(m[i].id), sl = m[i].str_len ? m[i].str_len : strlen(m[i].str);
        CU_ASSERT_FATAL(pos + il + sl + 2 < cap);
        put32(buf + o_tab + 8 * (size_t)i, (uint32_t)il, be);
        put32(buf + o_tab + 8 * (size_t)i + 4, (uint32_t)pos, be);
        memcpy(buf + pos, m[i].id, il);
        pos += il + 1;
        put32(buf + t_tab + 8 * (size_t)i, (uint32_t)sl, be);
        put32(buf + t_tab + 8 * (size_t)i + 4, (uint32_t)pos, be);
        memcpy(buf + pos, m[i].str, sl);
        pos += sl + 1;
    }
    return pos;
}

static void test_mo(void) {
    static const char plural[] = "%d файл\0%d файла\0%d файлов";
    static const char plural2[] = "Один раздел\0Несколько разделов";
    const MoMsg msgs[] = {
        {"", "Content-Type: text/plain; charset=UTF-8\n", 0},
        {"Open the file", "Открыть файл.\nВторая строка сообщения.", 0},
        {"%d file", plural, sizeof plural - 1},
        {"One section", plural2, sizeof plural2 - 1},
        {"Hello %s", "Привет, %s!", 0},
        {"Use %PRODUCTNAME", "Используйте %PRODUCTNAME", 0},
        {"%1 of %2", "%1 из %2", 0},
        {"50% done", "Сделано на 50% и 100%%", 0},
    };
    unsigned char buf[4096];
    char err[CX_ERRLEN];
    for (int be = 0; be < 2; be++) {
        size_t n = build_mo(buf, sizeof buf, msgs, 8, be);
        CorpusDocs d;
        corpus_docs_init(&d);
        CU_ASSERT_EQUAL_FATAL(corpus_extract(CORPUS_FMT_MO, (const char *)buf, n, &d, err), 0);
        CU_ASSERT_EQUAL(d.n_docs, 3);
        ASSERT_DOC(&d, 0, "Открыть файл. | Вторая строка сообщения.");
        ASSERT_DOC(&d, 1, "Один раздел");
        ASSERT_DOC(&d, 2, "Сделано на 50% и 100%%");
        corpus_docs_free(&d);
    }
    // corrupt files: an error, and nothing appended
    size_t n = build_mo(buf, sizeof buf, msgs, 8, 0);
    CorpusDocs d;
    corpus_docs_init(&d);
    CU_ASSERT_EQUAL(corpus_extract(CORPUS_FMT_MO, (const char *)buf, 10, &d, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "header"));
    unsigned char bad[4096];
    memcpy(bad, buf, n);
    bad[0] ^= 0xFF;
    CU_ASSERT_EQUAL(corpus_extract(CORPUS_FMT_MO, (const char *)bad, n, &d, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "magic"));
    memcpy(bad, buf, n);
    put32(bad + 8, 100000, 0);  // more strings than the file holds
    CU_ASSERT_EQUAL(corpus_extract(CORPUS_FMT_MO, (const char *)bad, n, &d, err), -1);
    memcpy(bad, buf, n);
    put32(bad + 28 + 8 * 8 + 8 * 3 + 4, 0xFFFFFF00u, 0);  // a translation beyond the end
    CU_ASSERT_EQUAL(corpus_extract(CORPUS_FMT_MO, (const char *)bad, n, &d, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "translation 3"));
    memcpy(bad, buf, n);
    put32(bad + 4, 0x20000, 0);  // revision 2.0
    CU_ASSERT_EQUAL(corpus_extract(CORPUS_FMT_MO, (const char *)bad, n, &d, err), -1);
    CU_ASSERT_EQUAL(d.n_docs, 0);
    CU_ASSERT_EQUAL(d.text_bytes, 0);
    corpus_docs_free(&d);
}

// Extractors must survive any bytes: truncations of every fixture and noise.
static void test_extract_robust(void) {
    const char *samples[] = {
        "<p a=\"x>y<b>&#x110000;&#99999999999; &#; &", "<!-- never closed", "<![CDATA[ open",
        ".TS\ntab(", ".if t \\{\\\n", "\\", "\\f", "\\(", "\\[u04", "\\*[", ".IP \"unterminated",
        "Description-ru: x\n  * ", "%\n%%\n",
    };
    for (int f = 0; f < CORPUS_FMT_COUNT; f++) {
        for (size_t s = 0; s < sizeof samples / sizeof *samples; s++) {
            size_t n = strlen(samples[s]);
            for (size_t cut = 0; cut <= n; cut++) {
                CorpusDocs d;
                char err[CX_ERRLEN];
                corpus_docs_init(&d);
                int rc = corpus_extract((CorpusFormat)f, samples[s], cut, &d, err);
                CU_ASSERT(rc == 0 || (f == CORPUS_FMT_MO && rc == -1));
                for (size_t i = 0; i < d.n_docs; i++)
                    CU_ASSERT(d.off[i] + d.len[i] <= d.text_bytes);
                corpus_docs_free(&d);
            }
        }
    }
    // pseudo-random bytes
    unsigned char noise[2048];
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 40; round++) {
        for (size_t i = 0; i < sizeof noise; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            static const char special[] = "<>&\\.\n\"%;#[(";
            noise[i] = round % 2 ? (unsigned char)special[x % 12] : (unsigned char)x;
        }
        for (int f = 0; f < CORPUS_FMT_COUNT; f++) {
            CorpusDocs d;
            char err[CX_ERRLEN];
            corpus_docs_init(&d);
            (void)corpus_extract((CorpusFormat)f, (const char *)noise, sizeof noise, &d, err);
            corpus_docs_free(&d);
        }
    }
}

// ---- normalisation ----

static void test_normalize(void) {
    char out[256];
    uint64_t bad = 99;
    size_t n;
    // whitespace, controls, special spaces, soft hyphen, zero width, BOM, composition
    const char *in = "\xef\xbb\xbf  При\xc2\xadвет,\t\xc2\xa0мир!\x01\n\xe2\x80\x8b"
                     "Ещ\xd0\xb5\xcc\x88 \xd0\xb8\xcc\x86\xd0\xbe\xd0\xb4  \xe2\x80\x83 \r\n";
    n = corpus_normalize(in, strlen(in), out, &bad);
    out[n] = '\0';
    CU_ASSERT_STRING_EQUAL(out, "Привет, мир! Ещё йод");
    CU_ASSERT_EQUAL(bad, 0);
    // invalid UTF-8: each maximal invalid subpart counts once and is dropped
    struct {
        const char *in;
        const char *want;
        uint64_t bad;
    } cases[] = {
        {"a\xc3\x28z", "a(z", 1},               // bad continuation
        {"a\xa0\xa1z", "az", 2},                // lone continuation bytes
        {"a\xe2\x28\xa1z", "a(z", 2},           // truncated 3-byte, then a lone byte
        {"a\xc0\xafz", "az", 2},                // overlong '/'
        {"a\xe0\x80\xafz", "az", 3},            // overlong 3-byte
        {"a\xed\xa0\x80z", "az", 3},            // surrogate U+D800
        {"a\xf4\x90\x80\x80z", "az", 4},        // above U+10FFFF
        {"a\xf0\x9f\x98z", "az", 1},            // truncated 4-byte
        {"a\xfe\xffz", "az", 2},                // never valid
        {"\xd0\xaf\xd0", "\xd0\xaf", 1},        // truncated at the end
        {"\xf0\x9f\x98\x80 ok", "\xf0\x9f\x98\x80 ok", 0},  // a valid 4-byte sequence
        {"\xef\xbf\xbd\xee\x80\x80x", "x", 0},  // U+FFFD and private use: dropped, valid
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        n = corpus_normalize(cases[i].in, strlen(cases[i].in), out, &bad);
        out[n] = '\0';
        CU_ASSERT_STRING_EQUAL(out, cases[i].want);
        CU_ASSERT_EQUAL(bad, cases[i].bad);
        if (strcmp(out, cases[i].want) != 0 || bad != cases[i].bad)
            fprintf(stderr, "\n  case %zu: got [%s] bad=%llu\n", i, out, (unsigned long long)bad);
    }
    CU_ASSERT_EQUAL(corpus_normalize("   \n\t ", 6, out, NULL), 0);
    CU_ASSERT_EQUAL(corpus_normalize("", 0, out, NULL), 0);
}

static void test_count(void) {
    size_t chars, letters, cyr;
    const char *s = "Ёж и hedgehog: 3 ёжика, ἀλφα!";
    corpus_count(s, strlen(s), &chars, &letters, &cyr);
    CU_ASSERT_EQUAL(chars, 29);
    CU_ASSERT_EQUAL(cyr, 2 + 1 + 5);
    CU_ASSERT_EQUAL(letters, 8 + 8 + 4);
    corpus_count("12 + 3", 6, &chars, &letters, NULL);
    CU_ASSERT_EQUAL(chars, 6);
    CU_ASSERT_EQUAL(letters, 0);
}

static void test_hash(void) {
    // FNV-1a 64 reference values
    CU_ASSERT_EQUAL(corpus_hash64("", 0), 0xcbf29ce484222325ull);
    CU_ASSERT_EQUAL(corpus_hash64("a", 1), 0xaf63dc4c8601ec8cull);
    CU_ASSERT_EQUAL(corpus_hash64("foobar", 6), 0x85944171f73967e8ull);
    CU_ASSERT_NOT_EQUAL(corpus_hash64("пример", strlen("пример")),
                        corpus_hash64("примеp", strlen("примеp")));
}

// ---- filter: dedup, length, Cyrillic share, chunking, split ----

typedef struct {
    char lines[64][512];
    int split[64];
    int n;
    int stop_after;  // emit returns non-zero after this many lines (0: never)
} Sink;

static int sink_emit(void *ctx, const char *line, size_t n, int is_valid) {
    Sink *s = ctx;
    CU_ASSERT_PTR_NULL(memchr(line, '\n', n));
    if (s->n < 64 && n < 512) {
        memcpy(s->lines[s->n], line, n);
        s->lines[s->n][n] = '\0';
        s->split[s->n] = is_valid;
    }
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static int add(CorpusFilter *f, const char *doc, CorpusStats *st, Sink *s) {
    return corpus_filter_add(f, doc, strlen(doc), st, sink_emit, s);
}

static void test_filter(void) {
    CorpusOptions opt;
    corpus_options_default(&opt);
    opt.valid_percent = 0;
    CorpusFilter *f = corpus_filter_new(&opt);
    CorpusStats st = {0};
    Sink s = {0};
    const char *credit = "Перевод выполнил переводчик, лицензия GPL версии 3.";
    char doc[512];
    snprintf(doc, sizeof doc, "Первая  страница\tруководства.\n%s", credit);
    CU_ASSERT_EQUAL(add(f, doc, &st, &s), 0);
    CU_ASSERT_EQUAL(add(f, "Первая страница руководства.\nПеревод выполнил переводчик, лицензия "
                           "GPL версии 3.",
                        &st, &s),
                    0);  // the same after normalisation
    snprintf(doc, sizeof doc, "Вторая страница руководства.\n%s\nint main(void) { return 0; }",
             credit);
    CU_ASSERT_EQUAL(add(f, doc, &st, &s), 0);
    CU_ASSERT_EQUAL(add(f, "Коротко.", &st, &s), 0);
    CU_ASSERT_EQUAL(add(f, "This paragraph is English only, not Russian.", &st, &s), 0);
    CU_ASSERT_EQUAL(add(f, "Смесь слов: a b c d e f g h i j k l m n o p", &st, &s),
                    0);
    CU_ASSERT_EQUAL(add(f, "\n\n \n", &st, &s), 0);
    CU_ASSERT_EQUAL(add(f, "Битый \xff\xfeтекст, но русский.", &st, &s), 0);
    CU_ASSERT_EQUAL(s.n, 3);
    CU_ASSERT_STRING_EQUAL(s.lines[0], "Первая страница руководства. Перевод выполнил "
                                       "переводчик, лицензия GPL версии 3.");
    CU_ASSERT_STRING_EQUAL(s.lines[1], "Вторая страница руководства.");  // credit and code gone
    CU_ASSERT_STRING_EQUAL(s.lines[2], "Битый текст, но русский.");
    CU_ASSERT_EQUAL(st.docs_in, 8);
    CU_ASSERT_EQUAL(st.docs_dup, 1);
    CU_ASSERT_EQUAL(st.docs_short, 2);   // "Коротко." and the blank one
    CU_ASSERT_EQUAL(st.docs_noncyr, 2);  // English; the mixture fails the document share
    CU_ASSERT_EQUAL(st.docs_kept, 3);
    CU_ASSERT_EQUAL(st.paras_dup, 1);
    CU_ASSERT_EQUAL(st.paras_noncyr, 2);  // the code line and the English paragraph
    CU_ASSERT_EQUAL(st.invalid_utf8, 2);
    CU_ASSERT_EQUAL(st.lines[0], 3);
    CU_ASSERT_EQUAL(st.lines[1], 0);
    CU_ASSERT_EQUAL(st.bytes[0], strlen(s.lines[0]) + strlen(s.lines[1]) + strlen(s.lines[2]));
    corpus_filter_free(f);

    // without paragraph dedup the credit stays
    opt.para_dedup = 0;
    f = corpus_filter_new(&opt);
    memset(&s, 0, sizeof s);
    memset(&st, 0, sizeof st);
    snprintf(doc, sizeof doc, "Первая страница.\n%s", credit);
    add(f, doc, &st, &s);
    snprintf(doc, sizeof doc, "Вторая страница.\n%s", credit);
    add(f, doc, &st, &s);
    CU_ASSERT_EQUAL(s.n, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(s.lines[1], "лицензия"));
    corpus_filter_free(f);
}

static void test_chunks_and_stop(void) {
    CorpusOptions opt;
    corpus_options_default(&opt);
    opt.max_chars = 30;
    opt.min_chars = 5;
    opt.valid_percent = 50;
    CorpusFilter *f = corpus_filter_new(&opt);
    CorpusStats st = {0};
    Sink s = {0};
    // paragraphs of 14 characters: two fit in 30 (14 + 1 + 14)
    const char *doc = "Абзац номер 1.\nАбзац номер 2.\nАбзац номер 3.\nАбзац номер 4.\n"
                      "Очень длинный абзац, который длиннее предела.";
    CU_ASSERT_EQUAL(add(f, doc, &st, &s), 0);
    CU_ASSERT_EQUAL_FATAL(s.n, 3);
    CU_ASSERT_STRING_EQUAL(s.lines[0], "Абзац номер 1. Абзац номер 2.");
    CU_ASSERT_STRING_EQUAL(s.lines[1], "Абзац номер 3. Абзац номер 4.");
    CU_ASSERT_STRING_EQUAL(s.lines[2], "Очень длинный абзац, который длиннее предела.");
    CU_ASSERT(s.split[0] == s.split[1] && s.split[1] == s.split[2]);  // one document, one side
    CU_ASSERT_EQUAL(st.docs_kept, 1);
    CU_ASSERT_EQUAL(st.lines[0] + st.lines[1], 3);
    // an emit that fails stops the document
    Sink stop = {.stop_after = 1};
    CU_ASSERT_EQUAL(add(f, "Другой документ.\nС двумя абзацами и ещё одним длинным хвостом.",
                        &st, &stop),
                    -1);
    CU_ASSERT_EQUAL(stop.n, 1);
    corpus_filter_free(f);
}

static void test_split(void) {
    // share of validation documents close to the request, 0 and 100 exact
    int n_valid = 0, n = 200000;
    for (int i = 0; i < n; i++) {
        char b[32];
        int len = snprintf(b, sizeof b, "документ %d", i);
        uint64_t h = corpus_hash64(b, (size_t)len);
        n_valid += corpus_split_is_valid(h, 3.0);
        CU_ASSERT_FATAL(corpus_split_is_valid(h, 0.0) == 0);
        CU_ASSERT_FATAL(corpus_split_is_valid(h, 100.0) == 1);
        CU_ASSERT_FATAL(corpus_split_is_valid(h, 3.0) == corpus_split_is_valid(h, 3.0));
    }
    double share = 100.0 * n_valid / n;
    CU_ASSERT(share > 2.8 && share < 3.2);

    // the split of a document does not depend on the order documents arrive in
    CorpusOptions opt;
    corpus_options_default(&opt);
    opt.valid_percent = 30;
    const char *docs[12];
    char store[12][128];
    for (int i = 0; i < 12; i++) {
        snprintf(store[i], sizeof store[i], "Документ номер %d, вполне русский.", i);
        docs[i] = store[i];
    }
    Sink fwd = {0}, rev = {0};
    CorpusStats st = {0};
    CorpusFilter *f = corpus_filter_new(&opt);
    for (int i = 0; i < 12; i++) add(f, docs[i], &st, &fwd);
    corpus_filter_free(f);
    f = corpus_filter_new(&opt);
    for (int i = 11; i >= 0; i--) add(f, docs[i], &st, &rev);
    corpus_filter_free(f);
    CU_ASSERT_EQUAL_FATAL(fwd.n, 12);
    CU_ASSERT_EQUAL_FATAL(rev.n, 12);
    int some_valid = 0, some_train = 0;
    for (int i = 0; i < 12; i++) {
        CU_ASSERT_STRING_EQUAL(fwd.lines[i], rev.lines[11 - i]);
        CU_ASSERT_EQUAL(fwd.split[i], rev.split[11 - i]);
        some_valid |= fwd.split[i];
        some_train |= !fwd.split[i];
    }
    CU_ASSERT(some_valid && some_train);  // with 30% and 12 documents, both sides occur
}

int main(void) {
    static const TuTest ex_tests[] = {
        {"format names and file filters", test_formats},
        {"fortune files", test_fortune},
        {"fortune entries", test_fortune_entries},
        {"plain text", test_text},
        {"news: one article, the title first", test_news},
        {"roff man pages", test_man},
        {"HTML", test_html},
        {"LibreOffice XHP", test_xhp},
        {"Mallard XML", test_mallard},
        {"Debian Translation-ru", test_debtrans},
        {"gettext .mo, both byte orders, corrupt files", test_mo},
        {"truncated and random input", test_extract_robust},
    };
    static const TuTest fl_tests[] = {
        {"UTF-8 validation and normalisation", test_normalize},
        {"letter counts", test_count},
        {"FNV-1a hash", test_hash},
        {"dedup, length and Cyrillic filters", test_filter},
        {"long documents and emit failure", test_chunks_and_stop},
        {"train/validation split", test_split},
    };
    const TuSuite suites[] = {
        {.name = "corpus extractors", .init = NULL, .clean = NULL, .tests = ex_tests, .n_tests = TU_NELEM(ex_tests)},
        {.name = "corpus filtering", .init = NULL, .clean = NULL, .tests = fl_tests, .n_tests = TU_NELEM(fl_tests)},
    };
    return tu_run(suites, TU_NELEM(suites), NULL, CU_BRM_VERBOSE);
}
