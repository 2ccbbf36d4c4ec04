// evaluate.c: `conflux-headline evaluate`: ROUGE of the model's headlines and of the
// first-sentence baseline against the titles of news files.
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/eval/rouge.h"
#include "io/headline/cli.h"
#include "io/news/lead.h"
#include "io/news/news.h"
#include "io/tasks/headline.h"
#include "models/common.h"
#include "models/par.h"

enum { OPT_SKIP = HL_OPT_NEXT, OPT_DATELINE, OPT_HYPS_OUT, OPT_SHOW, OPT_BOOTSTRAP };

#define BOOTSTRAP_SEED 1  // the resamples are the same from run to run

typedef struct {
    RougeMean mean[2];  // standard, paper
} Board;

// Results per source: one per input file (its name without directories and extensions:
// rt_ng_valid, ria_20, gazeta, ...).
#define MAX_SOURCES 64
typedef struct {
    char name[64];
    Board model, lead;
    long n, n_dateline;
} Source;

static int source_index(Source *src, int *n_src, const char *path) {
    char name[64];
    const char *base = strrchr(path, '/');
    snprintf(name, sizeof name, "%s", base ? base + 1 : path);
    for (int pass = 0; pass < 3; pass++) {  // .json.gz, .csv.gz, .tsv...
        char *dot = strrchr(name, '.');
        if (dot && dot != name &&
            (!strcmp(dot, ".gz") || !strcmp(dot, ".json") || !strcmp(dot, ".jsonl") ||
             !strcmp(dot, ".csv") || !strcmp(dot, ".tsv")))
            *dot = 0;
    }
    for (int i = 0; i < *n_src; i++)
        if (!strcmp(src[i].name, name)) return i;
    if (*n_src == MAX_SOURCES) return MAX_SOURCES - 1;  // the rest share the last row
    memset(&src[*n_src], 0, sizeof src[*n_src]);
    snprintf(src[*n_src].name, sizeof src[*n_src].name, "%s", name);
    return (*n_src)++;
}

// Scores hyp against ref once, in both modes, into the overall board and the source's;
// f (when not NULL) gets the F of, R-L in standard mode then in paper mode.
static int board_add(Board *all, Board *src, RougeScorer *sc[2], const char *hyp, const char *ref,
                     double f[6], char *err) {
    for (int m = 0; m < 2; m++) {
        RougeScores s;
        if (rouge_score(sc[m], hyp, strlen(hyp), ref, strlen(ref), &s, NULL, err) != 0) return -1;
        rouge_mean_add(&all->mean[m], &s);
        rouge_mean_add(&src->mean[m], &s);
        if (f) {
            f[3 * m] = s.r1.f;
            f[3 * m + 1] = s.r2.f;
            f[3 * m + 2] = s.rl.f;
        }
    }
    return 0;
}

static const char *const metric_names[3] = {"R-1", "R-2", "R-L"};

// The model against the first sentence by paired bootstrap over the articles (rouge.h):
// diff is (n, 6), model F - first sentence F, standard R-1/2/L then paper R-1/2/L; the rows
// whose article came from source s (src_of), or all of them when s < 0. b gets the six
// results. Returns the rows resampled (0: none, b untouched), -1 on error (err filled).
static long bootstrap_rows(const double *diff, const int *src_of, long n, int s, int resamples,
                           RougeBootstrap b[6], char *err) {
    long n_s = n;
    double *d = NULL;
    if (s >= 0) {
        n_s = 0;
        for (long i = 0; i < n; i++) n_s += src_of[i] == s;
        if (n_s == 0) return 0;
        d = cx_calloc((size_t)n_s * 6, sizeof *d);
        long j = 0;
        for (long i = 0; i < n; i++)
            if (src_of[i] == s) memcpy(d + 6 * (size_t)j++, diff + 6 * (size_t)i, 6 * sizeof *d);
    }
    int rc = rouge_paired_bootstrap(d ? d : diff, n_s, 6, resamples, BOOTSTRAP_SEED, b, err);
    free(d);
    return rc != 0 ? -1 : n_s;
}

// The pooled comparison, a table of mode, metric, difference, interval, share ahead.
static int bootstrap_print(const double *diff, long n, int resamples, char *err) {
    RougeBootstrap b[6];
    if (bootstrap_rows(diff, NULL, n, -1, resamples, b, err) < 0) return -1;
    printf("model - first sentence, F: paired bootstrap, %d resamples of the %ld articles\n",
           resamples, n);
    printf("%-9s %-6s %10s   %-16s  %7s\n", "mode", "metric", "difference", "95% interval",
           "ahead");
    for (int m = 1; m >= 0; m--)
        for (int k = 0; k < 3; k++) {
            const RougeBootstrap *x = &b[3 * m + k];
            printf("%-9s %-6s %+10.2f   [%+6.2f, %+6.2f]  %6.1f%%\n", rouge_mode_name((RougeMode)m),
                   metric_names[k], 100 * x->diff, 100 * x->lo, 100 * x->hi, 100 * x->ahead);
        }
    return 0;
}

// The same for source s, one line per mode (nothing when no article came from s).
static int bootstrap_print_source(const double *diff, const int *src_of, long n, int s,
                                  const char *label, int resamples, char *err) {
    RougeBootstrap b[6];
    long n_s = bootstrap_rows(diff, src_of, n, s, resamples, b, err);
    if (n_s <= 0) return (int)n_s;
    for (int m = 1; m >= 0; m--) {
        printf("  %-30s %-9s", label, rouge_mode_name((RougeMode)m));
        for (int k = 0; k < 3; k++) {
            const RougeBootstrap *x = &b[3 * m + k];
            printf("  %s %+6.2f [%+6.2f, %+6.2f] %5.1f%%", metric_names[k], 100 * x->diff,
                   100 * x->lo, 100 * x->hi, 100 * x->ahead);
        }
        printf("\n");
    }
    return 0;
}

static void board_print(const Board *b, const char *name) {
    for (int m = 1; m >= 0; m--) {
        RougeScores s = rouge_mean_get(&b->mean[m]);
        printf("%-44s %-9s %6.2f %6.2f %6.2f\n", name, rouge_mode_name((RougeMode)m), 100 * s.r1.f, 100 * s.r2.f,
               100 * s.rl.f);
    }
}

static void board_line(const Board *b, const char *key) {
    for (int m = 1; m >= 0; m--) {
        RougeScores s = rouge_mean_get(&b->mean[m]);
        printf(" %s_%s=%.2f/%.2f/%.2f", key, rouge_mode_name((RougeMode)m), 100 * s.r1.f,
               100 * s.r2.f, 100 * s.rl.f);
    }
}

int headline_cmd_evaluate(int argc, char **argv) {
    static const char usage[] =
        "usage: " HL_TOOL " evaluate [--checkpoint CKPT] [options] FILE...\n"
        "\n"
        "Scores headlines against the titles of news files (RIA JSON lines, Lenta.ru or ODS CSV,\n"
        "plain or gzip, format detected; or title TAB body TSV) with ROUGE-1/2/L F (x100,\n"
        "macro-averaged over the articles, lowercased text, whitespace tokens) in both modes of\n"
        "io/eval/rouge.h: paper (the rouge 0.3.2 package behind the published scores) and standard.\n"
        "Next to the model it prints the first-sentence baseline computed as published: the\n"
        "first sentence of the body, or the second one when the first is a news agency's\n"
        "dateline (\"москва, 1 дек — риа новости.\", \"МОСКВА, 1 декабря.\"), detected article\n"
        "by article. Without --checkpoint only the baseline is scored. All FILEs together form\n"
        "one test set; with several, each file's results follow as a source of its own.\n"
        "\n" HL_GEN_OPTIONS_HELP
        "  --format F           auto (default), ria, lenta, ods or tsv\n"
        "  --dateline D         auto (default: skip a first sentence that is a dateline), skip\n"
        "                       (always skip the first sentence, as RIA's published baseline)\n"
        "                       or keep\n"
        "  --skip N             skip the first N articles (e.g. the training part of a dump)\n"
        "  --limit N            score at most N articles\n"
        "  --hyps-out FILE      write reference TAB model TAB baseline lines\n"
        "  --show N             print the first N examples to stderr\n"
        "  --bootstrap N        compare the model with the first sentence by paired bootstrap\n"
        "                       over the articles (Koehn 2004; N resamples, default 1000, 0: off):\n"
        "                       the F difference, its 95% interval, the share of resamples\n"
        "                       in which the model is ahead; with several FILEs, for each source too\n"
        "  -h, --help           this text\n"
        "\n"
        "Prints a table and a last line\n"
        "  headline-eval: n=N model_paper=R1/R2/RL model_standard=... lead_paper=... lead_standard=...\n"
        "\n"
        "examples:\n"
        "  " HL_TOOL " evaluate ../shared/data/news/ria_20.json            # baseline only\n"
        "  " HL_TOOL " evaluate --checkpoint runs/hl/latest.h5 --beam 4 ria_20.json\n"
        "  " HL_TOOL " evaluate --checkpoint runs/ria/latest.h5 --skip 990000 ria.json.gz\n"
        "  " HL_TOOL " evaluate --checkpoint a/latest.h5 --checkpoint b/latest.h5 ria_20.json  # ensemble\n";
    static const struct option opts[] = {HL_GEN_LONG_OPTIONS,
                                          {"skip", required_argument, 0, OPT_SKIP},
                                          {"dateline", required_argument, 0, OPT_DATELINE},
                                          {"hyps-out", required_argument, 0, OPT_HYPS_OUT},
                                          {"show", required_argument, 0, OPT_SHOW},
                                          {"bootstrap", required_argument, 0, OPT_BOOTSTRAP},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    HlGenOpts o = HL_GEN_OPTS_INIT;
    HlCkpts ckpt = {0};
    const char *tok = NULL, *format = "auto", *dateline = "auto", *hyps_out = NULL;
    long limit = 0, skip = 0, show = 0, resamples = ROUGE_DEFAULT_RESAMPLES;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int g = hl_gen_option("evaluate", c, &o, &ckpt, &tok);
        if (g == 2) return 2;
        if (g == 1) continue;
        switch (c) {
        case HL_OPT_FORMAT: format = optarg; break;
        case HL_OPT_LIMIT:
            if ((limit = hl_parse_count(optarg)) < 0)
                return hl_usage_err("evaluate", "--limit must be a count (got '%s')", optarg);
            break;
        case OPT_SKIP:
            if ((skip = hl_parse_count(optarg)) < 0)
                return hl_usage_err("evaluate", "--skip must be a count (got '%s')", optarg);
            break;
        case OPT_SHOW:
            if ((show = hl_parse_count(optarg)) < 0)
                return hl_usage_err("evaluate", "--show must be a count (got '%s')", optarg);
            break;
        case OPT_BOOTSTRAP:
            if ((resamples = hl_parse_count(optarg)) < 0 || resamples > ROUGE_MAX_RESAMPLES)
                return hl_usage_err("evaluate", "--bootstrap must be 0 to %d resamples (got '%s')",
                                    ROUGE_MAX_RESAMPLES, optarg);
            break;
        case OPT_DATELINE:
            if (strcmp(optarg, "auto") && strcmp(optarg, "skip") && strcmp(optarg, "keep"))
                return hl_usage_err("evaluate", "--dateline must be auto, skip or keep (got '%s')", optarg);
            dateline = optarg;
            break;
        case OPT_HYPS_OUT: hyps_out = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return hl_usage_err("evaluate", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return hl_usage_err("evaluate", "no news FILE given");
    if (strcmp(format, "auto") && strcmp(format, "tsv") && strcmp(format, "ria") &&
        strcmp(format, "lenta") && strcmp(format, "ods"))
        return hl_usage_err("evaluate", "unknown --format '%s' (auto, ria, lenta, ods, tsv)", format);
    par_set_threads(o.threads);
    char err[CX_ERRLEN];
    HlGenerator G;
    int have_model = ckpt.n > 0;
    if (have_model && hl_gen_open(&G, &ckpt, tok, &o, err) != 0) {
        hl_report("%s", err);
        return 1;
    }
    RougeScorer *sc[2] = {NULL, NULL};
    for (int m = 0; m < 2; m++) {
        RougeOptions ro = {.mode = m ? ROUGE_PAPER : ROUGE_STANDARD, .keep_case = 0};
        if (rouge_scorer_new(&sc[m], &ro, err) != 0) {
            hl_report("%s", err);
            return 1;
        }
    }
    FILE *hf = NULL;
    if (hyps_out && !(hf = fopen(hyps_out, "w"))) {
        hl_report("cannot write %s: %s", hyps_out, strerror(errno));
        return 1;
    }
    Board model = {0}, lead = {0};
    Source *srcs = cx_calloc(MAX_SOURCES, sizeof *srcs);
    int n_src = 0, cur = 0;
    const int lead_mode = !strcmp(dateline, "skip")   ? HEADLINE_LEAD_SKIP
                          : !strcmp(dateline, "keep") ? HEADLINE_LEAD_KEEP
                                                      : HEADLINE_LEAD_AUTO;
    long n = 0, seen = 0, skipped_bad, n_dateline = 0;
    char kinds[128] = "";
    int rc = 0;
    char *lead_buf = NULL;
    size_t lead_cap = 0;
    double *diff = NULL;  // (articles, 6): model F - first sentence F, for the bootstrap
    int *src_of = NULL;   // (articles): the source of each row of diff
    size_t diff_cap = 0;
    const int keep_diff = have_model && resamples > 0;
    double t0 = cx_now(), t_last = t0;
    ArticleStream st = {.files = argv + optind, .n_files = argc - optind, .format = format};
    for (;;) {
        int got = hl_stream_next(&st, err);
        if (got < 0) {
            hl_report("%s", err);
            rc = 1;
        }
        if (got <= 0) break;
        if (got == 2) {
            const char *kn = hl_reader_kind_name(&st.r);
            if (!strstr(kinds, kn) && strlen(kinds) + strlen(kn) + 2 < sizeof kinds) {
                if (kinds[0]) strcat(kinds, "+");
                strcat(kinds, kn);
            }
            cur = source_index(srcs, &n_src, st.r.path);
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
        int skipped_dl = 0;
        headline_first_sentence(text, xn, lead_mode, lead_buf, &skipped_dl);
        n_dateline += skipped_dl;
        srcs[cur].n_dateline += skipped_dl;
        char *ref = strndup(title, tn);
        CHECK(ref, "out of memory");
        const char *hyp = "";
        if (have_model && !(hyp = hl_gen_run(&G, text, xn, err))) {
            hl_report("%s (%s:%llu)", err, path, (unsigned long long)st.line);
            free(ref);
            rc = 1;
            break;
        }
        double f_model[6], f_lead[6];
        if ((have_model && board_add(&model, &srcs[cur].model, sc, hyp, ref, f_model, err) != 0) ||
            board_add(&lead, &srcs[cur].lead, sc, lead_buf, ref, f_lead, err) != 0) {
            hl_report("%s (%s:%llu)", err, path, (unsigned long long)st.line);
            free(ref);
            rc = 1;
            break;
        }
        if (keep_diff) {
            if ((size_t)n >= diff_cap) {
                diff_cap = diff_cap ? 2 * diff_cap : 1024;
                diff = realloc(diff, diff_cap * 6 * sizeof *diff);
                src_of = realloc(src_of, diff_cap * sizeof *src_of);
                CHECK(diff && src_of, "out of memory");
            }
            src_of[n] = cur;
            for (int i = 0; i < 6; i++) diff[6 * (size_t)n + i] = f_model[i] - f_lead[i];
        }
        if (hf) fprintf(hf, "%s\t%s\t%s\n", ref, hyp, lead_buf);
        if (n < show)
            fprintf(stderr, "[%ld] reference: %s\n     model:     %s\n     first sentence: %s\n",
                    n + 1, ref, have_model ? hyp : "-", lead_buf);
        free(ref);
        n++;
        srcs[cur].n++;
        double now = cx_now();
        if (now - t_last >= 10.0) {
            fprintf(stderr, "evaluate: %ld articles, %.1f/s\n", n, n / (now - t0));
            t_last = now;
        }
        if (limit && n >= limit) break;
    }
    hl_stream_close_file(&st);
    skipped_bad = (long)st.skipped;
    free(lead_buf);
    if (hf && fclose(hf) != 0 && rc == 0) {
        hl_report("cannot write %s: %s", hyps_out, strerror(errno));
        rc = 1;
    }
    if (rc == 0 && n == 0) {
        hl_report("no article to score (%ld skipped as bad records)", skipped_bad);
        rc = 1;
    }
    if (rc == 0) {
        printf("%ld articles (%s), %ld bad records skipped; ROUGE F x100, macro average, lowercased\n",
               n, kinds, skipped_bad);
        if (have_model && G.rule)
            printf("in known words (--lexicon, %zu words): %ld of %ld headlines; %ld decoded without "
                   "the rule (no hypothesis could finish its words)\n",
                   lexicon_n_words(G.lex), n - G.n_unconstrained, n, G.n_unconstrained);
        if (have_model && G.mbr.n > 0)
            printf("minimum Bayes risk: %d samples (temperature %g, epsilon %g), utility %.2f R-1 + "
                   "%.2f R-2 + %.2f R-L F%s; %ld of %ld headlines from the samples, the rest the "
                   "beam's\n",
                   G.mbr.n, (double)G.mbr.temperature, (double)G.mbr.epsilon, G.mbr_weights[0],
                   G.mbr_weights[1], G.mbr_weights[2], hl_mbr_article_term(&G), G.n_mbr_sample, n);
        printf("%-44s %-9s %6s %6s %6s\n", "system", "mode", "R-1", "R-2", "R-L");
        if (have_model) {
            char who[32] = "model", name[96];
            if (G.n_models > 1) snprintf(who, sizeof who, "ensemble of %d", G.n_models);
            int at = snprintf(name, sizeof name, "%s (%s %d", who,
                              G.bc.beam_size > 1 ? "beam" : "greedy", G.bc.beam_size);
            if (G.mbr.n > 0) at += snprintf(name + at, sizeof name - at, ", MBR %d", G.mbr.n);
            snprintf(name + at, sizeof name - at, ")");
            board_print(&model, name);
        }
        char lname[96];
        if (n_dateline == 0) snprintf(lname, sizeof lname, "first sentence");
        else snprintf(lname, sizeof lname, "first sentence (%ld datelines skipped)", n_dateline);
        board_print(&lead, lname);
        if (keep_diff && bootstrap_print(diff, n, (int)resamples, err) != 0) {
            hl_report("%s", err);
            rc = 1;
        }
        if (n_src > 1) {
            printf("per source:\n");
            for (int i = 0; i < n_src; i++) {
                if (srcs[i].n == 0) continue;
                char name[160];
                if (have_model) {
                    snprintf(name, sizeof name, "  %s (%ld) model", srcs[i].name, srcs[i].n);
                    board_print(&srcs[i].model, name);
                }
                snprintf(name, sizeof name, "  %s (%ld) first sentence%s", srcs[i].name, srcs[i].n,
                         srcs[i].n_dateline ? " (-dateline)" : "");
                board_print(&srcs[i].lead, name);
            }
            if (keep_diff) {
                printf("per source, model - first sentence, F: paired bootstrap, %ld resamples "
                       "(difference [95%% interval] ahead)\n",
                       resamples);
                for (int i = 0; i < n_src && rc == 0; i++) {
                    char label[96];
                    snprintf(label, sizeof label, "%s (%ld)", srcs[i].name, srcs[i].n);
                    if (bootstrap_print_source(diff, src_of, n, i, label, (int)resamples, err) != 0) {
                        hl_report("%s", err);
                        rc = 1;
                    }
                }
            }
        }
        printf("headline-eval: n=%ld", n);
        if (have_model) board_line(&model, "model");
        board_line(&lead, "lead");
        printf("\n");
    }
    free(srcs);
    free(diff);
    free(src_of);
    for (int m = 0; m < 2; m++) rouge_scorer_free(sc[m]);
    if (have_model) hl_gen_close(&G);
    return rc;
}
