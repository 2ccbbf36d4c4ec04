// test_headline.c: the headline data layer (io/tasks/headline.h) and the optimizer's parameter
// groups: pair shards (round trip, bad ids, damaged and foreign files), the first-sentence
// baseline with the RIA dateline rule, lowercasing, mBART corruption (span infilling with
// Poisson lengths, one [MASK] per span, sentence permutation; determinism and statistics),
// (title, body) extraction from Debian formats, the tasks' dynamic padding, a short
// denoising run that lowers the loss, separate encoder/decoder learning rates, and the
// configuration.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/corpus/headline_pairs.h"
#include "io/news/lead.h"
#include "io/store/pairs.h"
#include "io/store/shard.h"
#include "io/tasks/headline.h"
#include "models/common.h"
#include "models/encdec.h"
#include "models/optim.h"
#include "models/rng.h"
#include "models/train.h"
#include "tests/unit/testutil.h"

static char g_dir[256];

static int suite_init(void) { return tu_make_tmpdir(g_dir, sizeof g_dir, "test_headline.") ? -1 : 0; }
static int suite_clean(void) {
    tu_rm_tree(g_dir);
    return 0;
}

// ---------------------------------------------------------------------------------------
// pair shards

static void test_pairs_roundtrip(void) {
    char err[CX_ERRLEN];
    const char *path = tu_path(g_dir, "pairs.h5");
    char p[TU_PATH_LEN];
    snprintf(p, sizeof p, "%s", path);
    PairWriter *w;
    CU_ASSERT_FATAL(pairs_writer_open(&w, p, 50, "fp123", "test", 1, err) == 0);
    // enough pairs to cross a chunk of the token datasets (65536 tokens)
    enum { NP = 700 };
    int32_t src[200], tgt[10];
    for (int i = 0; i < NP; i++) {
        int ns = 1 + i % 200, nt = 1 + i % 10;
        for (int t = 0; t < ns; t++) src[t] = (int32_t)((i + t) % 50);
        for (int t = 0; t < nt; t++) tgt[t] = (int32_t)((3 * i + t) % 50);
        CU_ASSERT_FATAL(pairs_writer_add(w, src, (size_t)ns, tgt, (size_t)nt, err) == 0);
    }
    src[0] = 50;  // outside the vocabulary
    CU_ASSERT(pairs_writer_add(w, src, 1, tgt, 1, err) == -1 && strstr(err, "outside [0, 50)"));
    CU_ASSERT_EQUAL(pairs_writer_count(w), NP);
    CU_ASSERT_FATAL(pairs_writer_close(w, err) == 0);
    Pairs ps;
    CU_ASSERT_FATAL(pairs_read(&ps, p, err) == 0);
    CU_ASSERT_EQUAL(ps.n_pairs, NP);
    CU_ASSERT_EQUAL(ps.vocab_size, 50);
    CU_ASSERT_EQUAL(ps.lowercase, 1);
    CU_ASSERT_STRING_EQUAL(ps.tokenizer, "fp123");
    CU_ASSERT_STRING_EQUAL(ps.source, "test");
    int bad = 0;
    for (int i = 0; i < NP; i++) {
        int ns = 1 + i % 200, nt = 1 + i % 10;
        bad += ps.src_off[i + 1] - ps.src_off[i] != ns || ps.tgt_off[i + 1] - ps.tgt_off[i] != nt;
        for (int t = 0; t < ns && !bad; t++) bad += ps.src[ps.src_off[i] + t] != (i + t) % 50;
        for (int t = 0; t < nt && !bad; t++) bad += ps.tgt[ps.tgt_off[i] + t] != (3 * i + t) % 50;
    }
    CU_ASSERT_EQUAL(bad, 0);
    pairs_free(&ps);

    // a truncated copy is reported, never loaded
    FILE *f = fopen(p, "rb");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n);
    CU_ASSERT_FATAL(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    char q[TU_PATH_LEN];
    snprintf(q, sizeof q, "%s", tu_path(g_dir, "trunc.h5"));
    f = fopen(q, "wb");
    fwrite(buf, 1, (size_t)n / 2, f);
    fclose(f);
    free(buf);
    CU_ASSERT(pairs_read(&ps, q, err) == -1 && strstr(err, q));
    printf("\n  truncated: %s\n", err);

    // a token shard is named as such
    ShardWriter *sw;
    snprintf(q, sizeof q, "%s", tu_path(g_dir, "tokens.h5"));
    int32_t doc[4] = {5, 6, 7, 8};
    CU_ASSERT_FATAL(shard_writer_open(&sw, q, 50, "fp123", err) == 0);
    CU_ASSERT_FATAL(shard_writer_add(sw, doc, 4, err) == 0);
    CU_ASSERT_FATAL(shard_writer_close(sw, err) == 0);
    CU_ASSERT(pairs_read(&ps, q, err) == -1 && strstr(err, "conflux-shard") && strstr(err, "denoise"));
    printf("  token shard: %s\n", err);
    CU_ASSERT(pairs_read(&ps, tu_path(g_dir, "missing.h5"), err) == -1 && strstr(err, "missing.h5"));
}

// ---------------------------------------------------------------------------------------
// text helpers

static void test_first_sentence(void) {
    // the RIA sample's opening (as io/news/news.h gives it): the dateline is skipped
    const char *ria = "москва, 1 дек — риа новости. около 60 тысяч литров нефти вытекли. второе.";
    char out[256];
    headline_first_sentence(ria, strlen(ria), 1, out, NULL);
    CU_ASSERT_STRING_EQUAL(out, "около 60 тысяч литров нефти вытекли.");
    headline_first_sentence(ria, strlen(ria), 0, out, NULL);
    CU_ASSERT_STRING_EQUAL(out, "москва, 1 дек — риа новости.");
    // one sentence only: nothing is skipped (as evaluate.py's lead1skip1)
    const char *one = "  единственное предложение без точки";
    headline_first_sentence(one, strlen(one), 1, out, NULL);
    CU_ASSERT_STRING_EQUAL(out, "единственное предложение без точки");
    // paragraphs are joined with spaces; initials and numbers do not end a sentence;
    // closing quotes stay with the sentence; ?, ! and … end one
    const char *t = "Поэт А. С. Пушкин\nродился в 1799 г. «Где он?» Второе! Третье… конец";
    headline_first_sentence(t, strlen(t), 0, out, NULL);
    CU_ASSERT_STRING_EQUAL(out, "Поэт А. С. Пушкин родился в 1799 г. «Где он?»");
    headline_first_sentence(t, strlen(t), 1, out, NULL);
    CU_ASSERT_STRING_EQUAL(out, "Второе!");
    const char *d = "цена 3.5 рубля. потом";
    headline_first_sentence(d, strlen(d), 0, out, NULL);
    CU_ASSERT_STRING_EQUAL(out, "цена 3.5 рубля.");
    CU_ASSERT_EQUAL(headline_first_sentence("", 0, 1, out, NULL), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
}

// the rest after the lead (prepare --target lead): past the dateline and the first
// sentence, and the spaces after it; the whole text when there is no second sentence
static void test_lead_rest(void) {
    const char *ria = "москва, 1 дек — риа новости. около 60 тысяч литров нефти вытекли.\n  второе. третье";
    size_t r = headline_lead_rest(ria, strlen(ria));
    CU_ASSERT_STRING_EQUAL(ria + r, "второе. третье");
    const char *t = "Поэт А. С. Пушкин\nродился в 1799 г. «Где он?» Второе!";
    CU_ASSERT_STRING_EQUAL(t + headline_lead_rest(t, strlen(t)), "Второе!");
    const char *one = "единственное предложение.  ";
    CU_ASSERT_EQUAL(headline_lead_rest(one, strlen(one)), strlen(one));
    CU_ASSERT_EQUAL(headline_lead_rest("", 0), 0);
}

static void test_dateline(void) {
    struct {
        const char *text;
        const char *lead;  // the first sentence with --dateline auto
    } cases[] = {
        {"москва, 1 дек — риа новости. около 60 тысяч литров. второе.", "около 60 тысяч литров."},
        {"мехико, 30 ноя — риа новости, дмитрий знаменский. текст.", "текст."},
        {"москва, 1 дек- р-спорт. текст.", "текст."},
        {"МОСКВА, 1 декабря. /ТАСС/. Текст.", "/ТАСС/."},
        {"Москва. 30 апреля. INTERFAX.RU - Чемпион мира наказан. Дальше.", "Чемпион мира наказан."},
        {"Нью-Йорк, 7 мая\n— риа новости. Текст.", "Текст."},
        // near misses: kept whole
        {"Ровно сегодня, 25 января, юбилей Высоцкого. Дальше.", "Ровно сегодня, 25 января, юбилей Высоцкого."},
        {"Москва. Дальше.", "Москва."},
        {"В 2019 году, 5 мая — риа новости. Текст.", "В 2019 году, 5 мая — риа новости."},
        {"москва, 123 дек — риа новости. текст.", "москва, 123 дек — риа новости."},
        {"москва, 1 понедельник — риа новости. текст.", "москва, 1 понедельник — риа новости."},
        {"Москва. 30 апреля.Текст без пробела.", "Москва."},
        {"москва, 1 дек — риа новости.", "москва, 1 дек — риа новости."},  // nothing follows
        {"москва, 1 дек — агентство новостей агентство новостей агентство новостей агентство "
         "новостей агентство новостей. текст.",
         "москва, 1 дек — агентство новостей агентство новостей агентство новостей агентство "
         "новостей агентство новостей."},  // an agency part over 80 bytes
    };
    char out[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int skipped = -1;
        headline_first_sentence(cases[i].text, strlen(cases[i].text), HEADLINE_LEAD_AUTO, out,
                                &skipped);
        if (strcmp(out, cases[i].lead) != 0) printf("\n  [%s] -> [%s]\n", cases[i].text, out);
        CU_ASSERT_STRING_EQUAL(out, cases[i].lead);
        CU_ASSERT_EQUAL(skipped, i < 6);
    }
    // skip always leaves the first sentence out; keep never
    const char *t = "Ровно сегодня, 25 января. Дальше.";
    int sk;
    headline_first_sentence(t, strlen(t), HEADLINE_LEAD_SKIP, out, &sk);
    CU_ASSERT_STRING_EQUAL(out, "Дальше.");
    CU_ASSERT_EQUAL(sk, 1);
    const char *r = "москва, 1 дек — риа новости. текст.";
    headline_first_sentence(r, strlen(r), HEADLINE_LEAD_KEEP, out, &sk);
    CU_ASSERT_STRING_EQUAL(out, "москва, 1 дек — риа новости.");
    CU_ASSERT_EQUAL(sk, 0);
    CU_ASSERT_EQUAL(headline_dateline_len(r, strlen(r)), strlen("москва, 1 дек — риа новости. "));
}

static void test_lowercase(void) {
    char s[64] = "Москва ЁЖ Über İstanbul ABC";
    size_t n = headline_lowercase(s, strlen(s));
    s[n] = 0;
    CU_ASSERT_STRING_EQUAL(s, "москва ёж über istanbul abc");
    char b[8] = {'A', (char)0xFF, 'B', 0};  // an invalid byte stays
    n = headline_lowercase(b, 3);
    CU_ASSERT(n == 3 && b[0] == 'a' && (unsigned char)b[1] == 0xFF && b[2] == 'b');
}

// ---------------------------------------------------------------------------------------
// denoising

// Whether in can be produced from out by replacing each [MASK] with one or more tokens
// (dynamic programming over positions); ins_ok allows zero tokens (inserted masks).
static int reconstructs(const int32_t *out, size_t no, const int32_t *in, size_t n) {
    // ok[i][j]: out[0,i) matches in[0,j)
    unsigned char *ok = calloc((no + 1) * (n + 1), 1);
    ok[0] = 1;
    for (size_t i = 1; i <= no; i++)
        for (size_t j = 0; j <= n; j++) {
            unsigned char v = 0;
            if (out[i - 1] == ED_MASK) {
                for (size_t k = 0; k <= j && !v; k++) v = ok[(i - 1) * (n + 1) + k];
            } else if (j > 0 && out[i - 1] == in[j - 1]) {
                v = ok[(i - 1) * (n + 1) + j - 1];
            }
            ok[i * (n + 1) + j] = v;
        }
    int r = ok[no * (n + 1) + n];
    free(ok);
    return r;
}

static void test_poisson(void) {
    enum { N = 40000 };
    double s = 0, s2 = 0;
    int zeros = 0;
    for (int i = 0; i < N; i++) {
        int k = headline_poisson(3.5f, 77, (uint64_t)i);
        s += k;
        s2 += (double)k * k;
        zeros += k == 0;
    }
    double mean = s / N, var = s2 / N - mean * mean;
    printf("\n  Poisson(3.5): mean %.3f, variance %.3f, P(0) %.4f (expected 3.5, 3.5, %.4f)\n",
           mean, var, (double)zeros / N, exp(-3.5));
    CU_ASSERT(fabs(mean - 3.5) < 0.05);
    CU_ASSERT(fabs(var - 3.5) < 0.15);
    CU_ASSERT(fabs((double)zeros / N - exp(-3.5)) < 0.005);
}

static void test_denoise(void) {
    enum { V = 40, N = 120 };
    uint8_t sent_end[V] = {0};
    sent_end[10] = 1;  // token 10 ends a sentence
    int32_t in[N], out[2 * N + 1], out2[2 * N + 1], scratch[3 * N + 1];
    for (int i = 0; i < N; i++) in[i] = i % 12 == 11 ? 10 : 11 + (int)(cx_rng_u64(5, (uint64_t)i) % (V - 11));
    // spans only
    DenoiseConfig c = {.mask_ratio = 0.35f, .poisson_lambda = 3.5f, .permute_sentences = 0};
    double total_masked = 0, total_spans = 0;
    int bad_recon = 0, adjacent = 0, bad_count = 0;
    for (uint64_t s = 0; s < 200; s++) {
        size_t nm = 0;
        size_t no = headline_denoise(&c, sent_end, in, N, 9, s, out, scratch, &nm);
        size_t kept = 0, masks = 0;
        for (size_t i = 0; i < no; i++) {
            if (out[i] == ED_MASK) {
                masks++;
                if (i > 0 && out[i - 1] == ED_MASK) adjacent++;
            } else {
                kept++;
            }
        }
        bad_count += kept + nm != N;
        bad_count += nm != (size_t)lround(0.35 * N);
        bad_recon += !reconstructs(out, no, in, N);
        total_masked += (double)nm;
        total_spans += (double)masks;
    }
    printf("  spans: %.1f%% of tokens masked, %.2f tokens per [MASK] (merged spans included)\n",
           100 * total_masked / (200.0 * N), total_masked / total_spans);
    CU_ASSERT_EQUAL(bad_count, 0);
    CU_ASSERT_EQUAL(bad_recon, 0);
    CU_ASSERT_EQUAL(adjacent, 0);
    // a span covers about lambda tokens (more where spans touch and merge)
    CU_ASSERT(total_masked / total_spans > 3.0 && total_masked / total_spans < 7.0);
    // deterministic per (seed, sample); samples differ
    size_t a = headline_denoise(&c, sent_end, in, N, 9, 3, out, scratch, NULL);
    size_t b = headline_denoise(&c, sent_end, in, N, 9, 3, out2, scratch, NULL);
    CU_ASSERT(a == b && memcmp(out, out2, a * sizeof *out) == 0);
    b = headline_denoise(&c, sent_end, in, N, 9, 4, out2, scratch, NULL);
    CU_ASSERT(a != b || memcmp(out, out2, a * sizeof *out) != 0);

    // permutation only: the same sentences in another order
    c = (DenoiseConfig){.mask_ratio = 0.0f, .poisson_lambda = 3.5f, .permute_sentences = 1};
    int moved = 0, bad_perm = 0;
    for (uint64_t s = 0; s < 50; s++) {
        size_t no = headline_denoise(&c, sent_end, in, N, 9, s, out, scratch, NULL);
        if (no != N) {
            bad_perm++;
            continue;
        }
        moved += memcmp(out, in, sizeof in) != 0;
        // every output sentence (ending in token 10) is one of the input's 10 sentences,
        // each used once: here sentence k starts with its own token sequence
        int used[N / 12] = {0};
        for (size_t i = 0; i < N; i += 12) {
            int found = -1;
            for (int k = 0; k < N / 12; k++)
                if (!used[k] && memcmp(out + i, in + 12 * k, 12 * sizeof *in) == 0) {
                    found = k;
                    break;
                }
            if (found < 0) bad_perm++;
            else used[found] = 1;
        }
    }
    CU_ASSERT_EQUAL(bad_perm, 0);
    CU_ASSERT(moved >= 45);
    // both, and a window without sentence ends (one sentence)
    c = (DenoiseConfig){.mask_ratio = 0.35f, .poisson_lambda = 3.5f, .permute_sentences = 1};
    size_t no = headline_denoise(&c, NULL, in, N, 9, 1, out, scratch, NULL);
    CU_ASSERT(no > 0 && no < N && reconstructs(out, no, in, N));
    CU_ASSERT_EQUAL(headline_denoise(&c, sent_end, in, 0, 9, 1, out, scratch, NULL), 0);
}

// ---------------------------------------------------------------------------------------
// (title, body) pairs

typedef struct {
    int n;
    char title[8][256];
    char body[8][1024];
} Got;

static int collect(void *ctx, const char *title, const char *body) {
    Got *g = ctx;
    if (g->n < 8) {
        snprintf(g->title[g->n], sizeof g->title[0], "%s", title);
        snprintf(g->body[g->n], sizeof g->body[0], "%s", body);
    }
    g->n++;
    return 0;
}

static void test_pairs_extract(void) {
    char err[CX_ERRLEN];
    Got g = {0};
    HeadlinePairStats st = {0};
    const char *tr =
        "Package: foo\nDescription-md5: 0123\nDescription-ru: программа для просмотра файлов\n"
        " Эта программа показывает содержимое файлов в окне терминала и умеет\n"
        " искать в них текст.\n .\n Вторая часть описания программы.\n\n"
        "Package: bar\nDescription-md5: 4567\nDescription-ru: short English title\n"
        " Описание на русском языке, достаточно длинное для проверки фильтра.\n\n"
        "Package: baz\nDescription-md5: 89ab\nDescription-ru: библиотека разбора\n"
        " Кратко.\n";
    long n = headline_pairs_extract(HP_DEBTRANS, tr, strlen(tr), 30, &st, collect, &g, err);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_STRING_EQUAL(g.title[0], "программа для просмотра файлов");
    CU_ASSERT_STRING_EQUAL(g.body[0], "Эта программа показывает содержимое файлов в окне "
                                      "терминала и умеет искать в них текст. Вторая часть "
                                      "описания программы.");
    CU_ASSERT(st.not_cyrillic == 1 && st.no_body == 1 && st.pairs == 1);

    memset(&g, 0, sizeof g);
    const char *man =
        ".TH LS 1\n.SH ИМЯ\nls \\- выводит список файлов каталога\n.SH ОБЗОР\n.B ls\n[ПАРАМЕТР]\n"
        ".SH ОПИСАНИЕ\nВыводит информацию о файлах (по умолчанию о текущем каталоге).\n.PP\n"
        "Записи сортируются по алфавиту.\n.SH АВТОР\nНаписано кем-то.\n";
    n = headline_pairs_extract(HP_MAN, man, strlen(man), 20, &st, collect, &g, err);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_STRING_EQUAL(g.title[0], "выводит список файлов каталога");
    CU_ASSERT_STRING_EQUAL(g.body[0], "Выводит информацию о файлах (по умолчанию о текущем "
                                      "каталоге). Записи сортируются по алфавиту.");

    memset(&g, 0, sizeof g);
    const char *html =
        "<html><head><title>5.4. Инструмент &laquo;Лупа&raquo;</title></head><body>"
        "<h1>5.4. Инструмент «Лупа»</h1><p>Лупа изменяет масштаб изображения в окне.</p>"
        "<p>This paragraph is English only and is dropped.</p>"
        "<p>Щелчок увеличивает, Ctrl+щелчок уменьшает.</p></body></html>";
    n = headline_pairs_extract(HP_HTML, html, strlen(html), 20, &st, collect, &g, err);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_STRING_EQUAL(g.title[0], "Инструмент «Лупа»");
    CU_ASSERT(strstr(g.body[0], "Лупа изменяет масштаб") && strstr(g.body[0], "Ctrl+щелчок") &&
              !strstr(g.body[0], "English"));
}

// ---------------------------------------------------------------------------------------
// tasks

static EncDecConfig tiny_config(int V, int P) {
    EncDecConfig c = {.enc = {.vocab_size = V, .embedding_size = 16, .hidden_size = 32,
                              .num_heads = 2, .intermediate_size = 48, .num_layers = 2,
                              .max_position = P, .dropout = 0.0f, .ln_eps = 1e-12f,
                              .init_std = 0.05f},
                      .dec_layers = 1, .dec_heads = 2, .dec_intermediate = 48,
                      .dec_max_position = P, .dec_dropout = 0.0f, .label_smoothing = 0.1f};
    return c;
}

// The pair task pads each micro-batch to its longest row: the loss equals the one of the
// same examples padded to the maximum lengths (no dropout), and rows look as documented.
static void test_pair_task(void) {
    enum { V = 60, NP = 5, TS = 12, TT = 6 };
    Pairs p = {0};
    int64_t so[NP + 1] = {0}, to[NP + 1] = {0};
    int32_t src[NP * 20], tgt[NP * 10];
    int ns[NP] = {3, 15, 1, 7, 4}, nt[NP] = {2, 1, 8, 3, 5};
    for (int i = 0; i < NP; i++) {
        so[i + 1] = so[i] + ns[i];
        to[i + 1] = to[i] + nt[i];
        for (int t = 0; t < ns[i]; t++) src[so[i] + t] = 5 + (i * 7 + t) % (V - 5);
        for (int t = 0; t < nt[i]; t++) tgt[to[i] + t] = 5 + (i * 3 + t) % (V - 5);
    }
    p.src = src, p.tgt = tgt, p.src_off = so, p.tgt_off = to, p.n_pairs = NP, p.vocab_size = V;
    EncDecConfig c = tiny_config(V, 16);
    EncDec *m = encdec_create(&c, NP, TS, TT, 3);
    HeadlineTask ht;
    TrainTask task;
    headline_task_pairs(&ht, &task, m, &p, TS, TT, NP, 1, 0, 0);
    int32_t s[TS], t[TT];
    int ls, lt;
    headline_task_example(&ht, 1, s, &ls, t, &lt);  // 15 tokens cut to TS - 2
    CU_ASSERT(ls == TS && s[0] == ED_BOS && s[TS - 1] == ED_EOS && s[1] == src[so[1]]);
    CU_ASSERT(lt == 2 && t[0] == tgt[to[1]] && t[1] == ED_EOS);
    headline_task_example(&ht, 2, s, &ls, t, &lt);  // 8 headline tokens cut to TT - 1
    CU_ASSERT(ls == 3 && lt == TT && t[TT - 1] == ED_EOS && t[TT - 2] == tgt[to[2] + TT - 2]);
    // dynamic padding does not change the loss
    long ntok = 0;
    double dyn = task.micro_step(task.ctx, 2, 3, 0, 0, &ntok, NULL);  // examples 2, 3, 4
    int32_t bs[3 * TS], bt[3 * TT];
    for (int b = 0; b < 3; b++) {
        headline_task_example(&ht, (uint64_t)(2 + b), s, &ls, t, &lt);
        for (int i = 0; i < TS; i++) bs[b * TS + i] = i < ls ? s[i] : ED_PAD;
        for (int i = 0; i < TT; i++) bt[b * TT + i] = i < lt ? t[i] : ED_PAD;
    }
    EncDecBatch full = {.B = 3, .Ts = TS, .Tt = TT, .src = bs, .tgt = bt, .sample_index0 = 2};
    long ntok2 = 0;
    double ref = encdec_step(m, &full, 0, 0, 0, &ntok2);
    printf("\n  dynamic padding: loss %.6f, padded to the maximum %.6f (%ld tokens)\n", dyn, ref, ntok);
    CU_ASSERT(ntok == ntok2 && ntok == 6 + 4 + 6);
    // the bridge counts an upload's tokens without the model: the same count
    CU_ASSERT_EQUAL(task.count_tokens(task.ctx, 2, 3), ntok);
    CU_ASSERT_EQUAL(task.count_tokens(task.ctx, 0, 5), 3 + 2 + TT + 4 + 6);
    CU_ASSERT(fabs(dyn - ref) < 1e-4 * fabs(ref));
    // epochs are shuffled when asked: every example once per epoch
    HeadlineTask hs;
    TrainTask ts;
    headline_task_pairs(&hs, &ts, m, &p, TS, TT, NP, 7, 1, 0);
    int seen[NP] = {0}, dup = 0;
    for (uint64_t k = NP; k < 2 * NP; k++) {
        headline_task_example(&hs, k, s, &ls, t, &lt);
        int found = -1;
        for (int i = 0; i < NP; i++)
            if (lt - 1 == (nt[i] < TT - 1 ? nt[i] : TT - 1) && t[0] == tgt[to[i]]) found = i;
        if (found < 0 || seen[found]++) dup++;
    }
    CU_ASSERT_EQUAL(dup, 0);
    headline_task_free(&hs);
    headline_task_free(&ht);
    encdec_free(m);
}

// A short denoising run over a synthetic corpus lowers the loss; the corrupted sources
// hold [MASK]s and the targets are the windows.
static void test_denoise_training(void) {
    enum { V = 48, TS = 24, TT = 24, DOCS = 24 };
    char err[CX_ERRLEN];
    char path[TU_PATH_LEN];
    snprintf(path, sizeof path, "%s", tu_path(g_dir, "denoise.h5"));
    ShardWriter *sw;
    CU_ASSERT_FATAL(shard_writer_open(&sw, path, V, "fp", err) == 0);
    // documents of repeated "sentences": a b c d . (token 10 = ".") with per-document words
    for (int d = 0; d < DOCS; d++) {
        int32_t doc[40];
        for (int i = 0; i < 40; i++)
            doc[i] = i % 5 == 4 ? 10 : 11 + (d * 3 + (i % 5)) % (V - 11);
        CU_ASSERT_FATAL(shard_writer_add(sw, doc, 40, err) == 0);
    }
    CU_ASSERT_FATAL(shard_writer_close(sw, err) == 0);
    Shard sh;
    CU_ASSERT_FATAL(shard_read(&sh, path, err) == 0);
    uint8_t sent_end[V] = {0};
    sent_end[10] = 1;
    EncDecConfig c = tiny_config(V, 32);
    EncDec *m = encdec_create(&c, 8, TS, TT, 11);
    DenoiseConfig dn = {.mask_ratio = 0.35f, .poisson_lambda = 3.5f, .permute_sentences = 1};
    HeadlineTask ht;
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    CU_ASSERT_FATAL(headline_task_denoise(&ht, &tr.task, m, &sh, &dn, sent_end, TS, TT, 8, 5, 1,
                                          6, err) == 0);
    CU_ASSERT_EQUAL(ht.n, DOCS * 2);  // 40 tokens -> windows of 22 and 18
    int32_t s[TS], t[TT];
    int ls, lt, masks = 0;
    headline_task_example(&ht, 0, s, &ls, t, &lt);
    for (int i = 0; i < ls; i++) masks += s[i] == ED_MASK;
    CU_ASSERT(s[0] == ED_BOS && s[ls - 1] == ED_EOS && masks >= 1 && t[lt - 1] == ED_EOS);
    CU_ASSERT(lt == 23 || lt == 19);
    // count_tokens (the bridge's check of an upload) agrees with the forward's count
    long nd = 0;
    tr.task.micro_step(tr.task.ctx, 3, 8, 0, 0, &nd, NULL);
    CU_ASSERT(nd > 0);
    CU_ASSERT_EQUAL(tr.task.count_tokens(tr.task.ctx, 3, 8), nd);
    OptimConfig oc = {.kind = OPTIM_ADAMW, .lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.999f,
                      .eps = 1e-8f, .clip_norm = 1.0f, .schedule = SCHED_CONSTANT,
                      .total_steps = 100};
    optim_init(&tr.optim, &oc, tr.task.specs, tr.task.n_specs, tr.task.n_params);
    tr.global_batch = 16;
    StepResult r, r0;
    for (int k = 0; k < 40; k++) {
        CU_ASSERT_FATAL(trainer_step(&tr, &r, err) == 0);
        if (k == 0) r0 = r;
    }
    printf("\n  denoising: training loss %.3f -> %.3f in 40 steps\n", r0.loss, r.loss);
    CU_ASSERT(r.loss < r0.loss - 1.0);
    optim_free(&tr.optim);
    headline_task_free(&ht);
    encdec_free(m);
    shard_free(&sh);
    // a shard without a window of 8 tokens is refused
    CU_ASSERT_FATAL(shard_writer_open(&sw, path, V, "fp", err) == 0);
    int32_t few[3] = {11, 12, 13};
    CU_ASSERT_FATAL(shard_writer_add(sw, few, 3, err) == 0);
    CU_ASSERT_FATAL(shard_writer_close(sw, err) == 0);
    CU_ASSERT_FATAL(shard_read(&sh, path, err) == 0);
    m = encdec_create(&c, 8, TS, TT, 11);
    CU_ASSERT(headline_task_denoise(&ht, &tr.task, m, &sh, &dn, sent_end, TS, TT, 8, 5, 1, 6,
                                    err) == -1 && strstr(err, "nothing to denoise"));
    encdec_free(m);
    shard_free(&sh);
}

// ---------------------------------------------------------------------------------------
// optimizer groups (BertSumAbs: separate encoder and decoder learning rates and warm-ups)

static void test_optim_groups(void) {
    TensorSpec specs[3] = {{.name = "a", .ndim = 1, .shape = {4}, .offset = 0, .n = 4},
                           {.name = "b", .ndim = 1, .shape = {4}, .offset = 16, .n = 4},
                           {.name = "c", .ndim = 1, .shape = {4}, .offset = 32, .n = 4}};
    enum { N = 48 };
    OptimConfig enc = {.kind = OPTIM_ADAMW, .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f,
                       .eps = 1e-8f, .weight_decay = 0.1f, .clip_norm = 0.0f,
                       .schedule = SCHED_INVSQRT, .warmup_steps = 4, .total_steps = 100};
    OptimConfig dec = enc;
    dec.lr = 0.5f;
    dec.warmup_steps = 2;
    dec.weight_decay = 0.0f;
    // schedules: linear warm-up to the peak, then lr * sqrt(warmup / (step + 1))
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&enc, 0), 0.0025, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&enc, 3), 0.01, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&enc, 15), 0.005, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(optim_lr(&dec, 7), 0.25, 1e-7);
    float p1[N], p2[N], g[N], gg[N];
    for (int i = 0; i < N; i++) p1[i] = p2[i] = 1.0f + 0.01f * i, g[i] = (i % 3 - 1) * 0.3f + 0.05f;
    Optim o1, o2;
    optim_init(&o1, &enc, specs, 3, N);
    optim_init(&o2, &enc, specs, 3, N);
    optim_set_group(&o2, 2, &enc);  // a group with the same settings changes nothing
    for (int s = 0; s < 5; s++) {
        memcpy(gg, g, sizeof g);
        optim_step(&o1, p1, gg);
        memcpy(gg, g, sizeof g);
        optim_step(&o2, p2, gg);
    }
    CU_ASSERT(memcmp(p1, p2, sizeof p1) == 0);
    optim_free(&o2);
    // the decoder group moves by its own learning rate: Adam's first step is lr * g / |g|
    for (int i = 0; i < N; i++) p2[i] = 1.0f;
    optim_init(&o2, &enc, specs, 3, N);
    optim_set_group(&o2, 1, &dec);
    memcpy(gg, g, sizeof g);
    optim_step(&o2, p2, gg);
    double lr_e = optim_lr(&enc, 0), lr_d = optim_lr(&dec, 0);
    CU_ASSERT_DOUBLE_EQUAL(optim_spec_lr(&o2, 0, 0), lr_e, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(optim_spec_lr(&o2, 2, 0), lr_d, 1e-9);
    int bad = 0;
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 4; j++) {
            int i = (int)specs[k].offset + j;
            double sg = g[i] > 0 ? 1.0 : -1.0;
            double want = k == 0 ? 1.0 * (1.0 - lr_e * 0.1) - lr_e * sg : 1.0 - lr_d * sg;
            bad += fabs(p2[i] - want) > 1e-5;
        }
    CU_ASSERT_EQUAL(bad, 0);
    optim_free(&o1);
    optim_free(&o2);
}

// ---------------------------------------------------------------------------------------
// configuration

static void test_config(void) {
    char err[CX_ERRLEN];
    HeadlineConfig c, d;
    headline_config_defaults(&c);
    CU_ASSERT(headline_config_check(&c, err) == 0);
    CU_ASSERT(headline_config_set(&c, "data.objective=denoise", err) == 0 && c.data.objective == HL_OBJ_DENOISE);
    CU_ASSERT(headline_config_set(&c, "optim_decoder.schedule=noam", err) == 0 &&
              c.optim_dec.schedule == SCHED_INVSQRT);
    CU_ASSERT(headline_config_set(&c, "decoder.num_layers=3", err) == 0);
    size_t len = headline_config_to_ini(&c, NULL, 0);
    char *text = malloc(len + 1);
    headline_config_to_ini(&c, text, len + 1);
    headline_config_defaults(&d);
    CU_ASSERT(headline_config_load_string(&d, text, "ini", err) == 0);
    CU_ASSERT(memcmp(&c, &d, sizeof c) == 0);
    free(text);
    CU_ASSERT(headline_config_set(&c, "data.objective=summarize", err) == -1 && strstr(err, "objective"));
    CU_ASSERT(headline_config_set(&c, "decoder.colour=1", err) == -1 && strstr(err, "unknown key"));
    CU_ASSERT(headline_config_load_string(&d, "[data]\nsrc_len = many\n", "x.ini", err) == -1 &&
              strstr(err, "x.ini:2"));
    headline_config_defaults(&c);
    c.data.tgt_len = c.model.dec_max_position + 1;
    CU_ASSERT(headline_config_check(&c, err) == -1 && strstr(err, "data.tgt_len"));
    headline_config_defaults(&c);
    c.optim_dec.warmup_steps = -1;
    CU_ASSERT(headline_config_check(&c, err) == -1 && strstr(err, "optim_decoder.warmup_steps"));
}

int main(void) {
    static const TuTest s_tests[] = {
        {"pair shards: round trip, bad ids, damaged and foreign files", test_pairs_roundtrip},
        {"first sentence with the RIA dateline rule", test_first_sentence},
        {"the article after its lead (prepare --target lead)", test_lead_rest},
        {"a news agency's dateline detected (RIA, TASS, Interfax; near misses kept)", test_dateline},
        {"lowercasing", test_lowercase},
        {"Poisson span lengths", test_poisson},
        {"mBART corruption: spans, one [MASK] each, sentence permutation", test_denoise},
        {"(title, body) pairs from debtrans, man and html", test_pairs_extract},
        {"pair task: rows, truncation, dynamic padding, shuffling", test_pair_task},
        {"a short denoising run lowers the loss", test_denoise_training},
        {"separate encoder/decoder learning rates and warm-ups", test_optim_groups},
        {"configuration", test_config},
    };
    const TuSuite suites[] = {
        {.name = "headline", .init = suite_init, .clean = suite_clean, .tests = s_tests, .n_tests = TU_NELEM(s_tests)},
    };
    return tu_run(suites, TU_NELEM(suites), NULL, CU_BRM_VERBOSE);
}
