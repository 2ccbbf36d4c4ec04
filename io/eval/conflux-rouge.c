// conflux-rouge: ROUGE-1/2/L of a file of hypotheses against a file of references (one
// example per line), macro-averaged, in the standard or the rouge-0.3.2 ("paper") mode of
// io/eval/rouge.h.
//
// Exit status: 0 success, 1 runtime failure (files, data), 2 usage error.
// Errors read "conflux-rouge: error: what (where)".
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "io/eval/rouge.h"
#include "models/common.h"

#define TOOL "conflux-rouge"

static const char usage_text[] =
    "usage: " TOOL " --ref REFS.txt --hyp HYPS.txt [--mode standard|paper]\n"
    "                     [--format text|json|csv] [--per-example] [--keep-case]\n"
    "                     [--baseline BASE.txt [--bootstrap N] [--seed S]]\n"
    "\n"
    "Scores each line of HYPS.txt against the same line of REFS.txt with ROUGE-1, ROUGE-2\n"
    "and ROUGE-L and prints precision, recall and F (x100), averaged over the lines (macro\n"
    "average: the mean of the per-line scores), and the number of lines. Both files must\n"
    "have the same number of lines; \"-\" reads one of them from stdin. A line ends at \"\\n\"\n"
    "(a \"\\r\" before it is dropped; a last line without \"\\n\" counts). Text is UTF-8 and\n"
    "lowercased (Latin, Greek, Cyrillic, without locale); tokens are whitespace-separated,\n"
    "so a lone \",\" is a token. Invalid UTF-8 bytes are kept as opaque characters.\n"
    "\n"
    "  --ref FILE       references, one per line (\"-\": stdin)\n"
    "  --hyp FILE       hypotheses, one per line (\"-\": stdin)\n"
    "  --mode M         standard (default): clipped n-gram counts, ROUGE-L from the LCS of the\n"
    "                   token sequences, F1.\n"
    "                   paper: the Python package rouge 0.3.2 behind the published RIA/Lenta\n"
    "                   scores: sentences split at \".\", n-gram sets, summary-level union LCS,\n"
    "                   ROUGE-L F with beta = P/R. A line without any sentence scores 0 there\n"
    "                   (the package raises an error); a warning counts such lines.\n"
    "  --format F       text (default), json or csv. All formats print scores x100;\n"
    "                   csv: \"line,count,r1_p,r1_r,r1_f,r2_p,r2_r,r2_f,rl_p,rl_r,rl_f\" rows,\n"
    "                   the last one \"mean,N,...\"\n"
    "  --per-example    also print the scores of every line (1-based line numbers)\n"
    "  --keep-case      do not lowercase\n"
    "  --baseline FILE  a second system, one line per reference, scored the same way and\n"
    "                   compared with HYPS by paired bootstrap resampling (Koehn 2004): the\n"
    "                   difference of the F means (hyp - baseline), its 95% interval and the\n"
    "                   share of resamples in which HYPS is ahead. Text or json output.\n"
    "  --bootstrap N    resamples of the lines, 1 to 1000000 (default 1000)\n"
    "  --seed S         seed of the resampling (default 1): the same seed, the same figures\n"
    "  --help           this text\n"
    "\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage error.\n"
    "\n"
    "example:\n"
    "  printf 'пожар в цеху на севере москвы локализован\\n' > refs.txt\n"
    "  printf 'Пожар на севере Москвы локализован , сообщили в МЧС\\n' > hyps.txt\n"
    "  " TOOL " --ref refs.txt --hyp hyps.txt --mode paper\n"
    "  # R-1 F 75.00, R-2 F 42.86, R-L F 60.63 over 1 example\n"
    "  printf 'пожар в цеху\\n' > lead.txt\n"
    "  " TOOL " --ref refs.txt --hyp hyps.txt --baseline lead.txt --mode paper\n"
    "  # F of hyps.txt - lead.txt: R-1 +15.00, R-2 -7.14, R-L +13.61 (one line: no spread)\n";

// Usage error (exit status 2) and runtime failure (exit status 1).
#define die_usage(...) cx_tool_fail(TOOL, 2, __VA_ARGS__)
#define die(...) cx_tool_fail(TOOL, 1, __VA_ARGS__)

enum { FMT_TEXT, FMT_JSON, FMT_CSV };

typedef struct {
    const char *path, *name;  // name: the path, or "<stdin>" for "-"
    FILE *f;
    char *line;
    size_t cap;
    long long n_lines;
} Input;

static void input_open(Input *in, const char *path, const char *what) {
    memset(in, 0, sizeof *in);
    in->path = path;
    if (strcmp(path, "-") == 0) {
        in->name = "<stdin>";
        in->f = stdin;
        return;
    }
    in->name = path;
    in->f = fopen(path, "rb");
    if (!in->f) die("cannot open the %s file: %s (%s)", what, strerror(errno), path);
}

// Reads the next line into in->line without its "\n" (and a "\r" before it). Returns its
// length, or -1 at the end of the file; dies on a read error.
static ssize_t input_line(Input *in, const char *what) {
    errno = 0;
    ssize_t n = getline(&in->line, &in->cap, in->f);
    if (n < 0) {
        if (ferror(in->f))
            die("cannot read the %s file: %s (%s, after line %lld)", what,
                strerror(errno ? errno : EIO), in->name, in->n_lines);
        if (errno == ENOMEM) die("out of memory reading the %s file (%s)", what, in->name);
        return -1;
    }
    in->n_lines++;
    if (n > 0 && in->line[n - 1] == '\n') n--;
    if (n > 0 && in->line[n - 1] == '\r') n--;
    return n;
}

static void input_close(Input *in) {
    if (in->f && in->f != stdin) fclose(in->f);
    free(in->line);
}

// ---- output ----

static const char *const metric_json[3] = {"rouge-1", "rouge-2", "rouge-l"};
static const char *const metric_text[3] = {"R-1", "R-2", "R-L"};

static const RougePRF *prf_of(const RougeScores *sc, int k) {
    return k == 0 ? &sc->r1 : k == 1 ? &sc->r2 : &sc->rl;
}

static void print_json_scores(const RougeScores *sc) {
    for (int k = 0; k < 3; k++) {
        const RougePRF *m = prf_of(sc, k);
        printf("%s\"%s\": {\"p\": %.6f, \"r\": %.6f, \"f\": %.6f}", k ? ", " : "", metric_json[k],
               100.0 * m->p, 100.0 * m->r, 100.0 * m->f);
    }
}

static void print_csv_row(const char *label, long long count, const RougeScores *sc) {
    printf("%s,%lld", label, count);
    for (int k = 0; k < 3; k++) {
        const RougePRF *m = prf_of(sc, k);
        printf(",%.6f,%.6f,%.6f", 100.0 * m->p, 100.0 * m->r, 100.0 * m->f);
    }
    putchar('\n');
}

// The P, R, F table of the text format.
static void print_text_table(const RougeScores *mean) {
    puts("          P        R        F");
    for (int k = 0; k < 3; k++) {
        const RougePRF *m = prf_of(mean, k);
        printf("%s  %7.2f  %7.2f  %7.2f\n", metric_text[k], 100.0 * m->p, 100.0 * m->r, 100.0 * m->f);
    }
}

// The comparison with --baseline: the baseline's means and the bootstrap of the F differences.
typedef struct {
    const char *name;
    RougeScores mean;
    RougeBootstrap bs[3];  // R-1, R-2, R-L F
    int resamples;
    unsigned long long seed;
} Compare;

static void print_results(int format, RougeMode mode, int keep_case, const RougeScores *mean,
                          long long count, const RougeScores *per, int per_example,
                          const Compare *cmp) {
    const char *mname = rouge_mode_name(mode);
    if (format == FMT_JSON) {
        printf("{\"mode\": \"%s\", \"lowercase\": %s, \"scale\": 100, \"count\": %lld, ", mname,
               keep_case ? "false" : "true", count);
        print_json_scores(mean);
        if (cmp) {
            fputs(", \"baseline\": {", stdout);
            print_json_scores(&cmp->mean);
            printf("}, \"bootstrap\": {\"resamples\": %d, \"seed\": %llu", cmp->resamples, cmp->seed);
            for (int k = 0; k < 3; k++) {
                const RougeBootstrap *b = &cmp->bs[k];
                printf(", \"%s\": {\"diff\": %.6f, \"lo\": %.6f, \"hi\": %.6f, \"ahead\": %.6f, "
                       "\"tied\": %.6f}",
                       metric_json[k], 100.0 * b->diff, 100.0 * b->lo, 100.0 * b->hi, b->ahead, b->tied);
            }
            putchar('}');
        }
        if (per_example) {
            fputs(", \"examples\": [", stdout);
            for (long long i = 0; i < count; i++) {
                printf("%s\n  {\"line\": %lld, ", i ? "," : "", i + 1);
                print_json_scores(&per[i]);
                putchar('}');
            }
            fputs("\n]", stdout);
        }
        fputs("}\n", stdout);
    } else if (format == FMT_CSV) {
        puts("line,count,r1_p,r1_r,r1_f,r2_p,r2_r,r2_f,rl_p,rl_r,rl_f");
        if (per_example) {
            char label[32];
            for (long long i = 0; i < count; i++) {
                snprintf(label, sizeof label, "%lld", i + 1);
                print_csv_row(label, 1, &per[i]);
            }
        }
        print_csv_row("mean", count, mean);
    } else {
        if (per_example) {
            static const char *const cols[9] = {"R1-P", "R1-R", "R1-F", "R2-P", "R2-R",
                                                "R2-F", "RL-P", "RL-R", "RL-F"};
            printf("%-6s", "line");
            for (int k = 0; k < 9; k++) printf(" %6s", cols[k]);
            putchar('\n');
            for (long long i = 0; i < count; i++) {
                printf("%-6lld", i + 1);
                for (int k = 0; k < 3; k++) {
                    const RougePRF *m = prf_of(&per[i], k);
                    printf(" %6.2f %6.2f %6.2f", 100.0 * m->p, 100.0 * m->r, 100.0 * m->f);
                }
                putchar('\n');
            }
            putchar('\n');
        }
        printf("ROUGE x100, %s mode%s, %s, macro average over %lld example%s\n", mname,
               mode == ROUGE_PAPER ? " (rouge 0.3.2)" : "", keep_case ? "case kept" : "lowercased",
               count, count == 1 ? "" : "s");
        print_text_table(mean);
        if (cmp) {
            printf("\nbaseline %s\n", cmp->name);
            print_text_table(&cmp->mean);
            printf("\nF, hypotheses - baseline: paired bootstrap, %d resamples of the %lld line%s "
                   "(seed %llu)\n",
                   cmp->resamples, count, count == 1 ? "" : "s", cmp->seed);
            printf("%-5s%10s   %-16s  %7s  %6s\n", "", "difference", "95% interval", "ahead", "tied");
            for (int k = 0; k < 3; k++) {
                const RougeBootstrap *b = &cmp->bs[k];
                printf("%-5s%+10.2f   [%+6.2f, %+6.2f]  %6.1f%%  %5.1f%%\n", metric_text[k],
                       100.0 * b->diff, 100.0 * b->lo, 100.0 * b->hi, 100.0 * b->ahead,
                       100.0 * b->tied);
            }
        }
    }
}

int main(int argc, char **argv) {
    const char *ref_path = NULL, *hyp_path = NULL;
    RougeOptions opt = {ROUGE_STANDARD, 0};
    const char *base_path = NULL;
    int format = FMT_TEXT, per_example = 0, resamples = ROUGE_DEFAULT_RESAMPLES;
    unsigned long long seed = 1;
    static const struct option longopts[] = {
        {"ref", required_argument, NULL, 'r'},  {"hyp", required_argument, NULL, 'y'},
        {"mode", required_argument, NULL, 'm'}, {"format", required_argument, NULL, 'f'},
        {"per-example", no_argument, NULL, 'e'}, {"keep-case", no_argument, NULL, 'k'},
        {"baseline", required_argument, NULL, 'b'}, {"bootstrap", required_argument, NULL, 'B'},
        {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},       {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': ref_path = optarg; break;
        case 'y': hyp_path = optarg; break;
        case 'm':
            if (rouge_mode_parse(optarg, &opt.mode) != 0)
                die_usage("unknown mode '%s' (--mode standard or paper)", optarg);
            break;
        case 'f':
            if (strcmp(optarg, "text") == 0) format = FMT_TEXT;
            else if (strcmp(optarg, "json") == 0) format = FMT_JSON;
            else if (strcmp(optarg, "csv") == 0) format = FMT_CSV;
            else die_usage("unknown format '%s' (--format text, json or csv)", optarg);
            break;
        case 'e': per_example = 1; break;
        case 'k': opt.keep_case = 1; break;
        case 'b': base_path = optarg; break;
        case 'B': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > ROUGE_MAX_RESAMPLES)
                die_usage("--bootstrap must be 1 to %d resamples (got '%s')", ROUGE_MAX_RESAMPLES, optarg);
            resamples = (int)v;
            break;
        }
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-')
                die_usage("--seed must be a non-negative integer (got '%s')", optarg);
            break;
        }
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': printf("%s %s\n", TOOL, CONFLUX_VERSION); return 0;
        case ':': die_usage("option %s needs a value", argv[optind - 1]);
        default: die_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (!ref_path || !hyp_path) die_usage("--ref and --hyp are both required");
    int n_stdin = !strcmp(ref_path, "-") + !strcmp(hyp_path, "-") + (base_path && !strcmp(base_path, "-"));
    if (n_stdin > 1) die_usage("only one of --ref, --hyp and --baseline can be \"-\" (stdin)");
    if (base_path && format == FMT_CSV)
        die_usage("--baseline prints text or json, not csv (--format json)");

    Input ref, hyp, base;
    input_open(&ref, ref_path, "reference");
    input_open(&hyp, hyp_path, "hypothesis");
    if (base_path) input_open(&base, base_path, "baseline");

    char err[CX_ERRLEN];
    RougeScorer *scorer;
    if (rouge_scorer_new(&scorer, &opt, err) != 0) die("%s", err);
    RougeMean mean = {0}, base_mean = {0};
    RougeScores *per = NULL;
    size_t per_cap = 0;
    double *diff = NULL;  // (lines, 3): F of hyp - F of baseline, with --baseline
    size_t diff_cap = 0;
    long long n_empty = 0;
    for (;;) {
        ssize_t nr = input_line(&ref, "reference");
        ssize_t nh = input_line(&hyp, "hypothesis");
        ssize_t nb = base_path ? input_line(&base, "baseline") : 0;
        if (nr < 0 || nh < 0 || nb < 0) break;
        RougeScores sc;
        RougeCounts cn;
        if (rouge_score(scorer, hyp.line, (size_t)nh, ref.line, (size_t)nr, &sc, &cn, err) != 0)
            die("%s (%s:%lld, %s:%lld)", err, ref.name, ref.n_lines, hyp.name, hyp.n_lines);
        if (cn.n_hyp_tokens == 0 || cn.n_ref_tokens == 0) n_empty++;
        rouge_mean_add(&mean, &sc);
        if (base_path) {
            RougeScores bs;
            if (rouge_score(scorer, base.line, (size_t)nb, ref.line, (size_t)nr, &bs, NULL, err) != 0)
                die("%s (%s:%lld, %s:%lld)", err, ref.name, ref.n_lines, base.name, base.n_lines);
            rouge_mean_add(&base_mean, &bs);
            if ((size_t)mean.n_examples > diff_cap) {
                size_t cap = diff_cap ? 2 * diff_cap : 1024;
                double *p = realloc(diff, cap * 3 * sizeof *diff);
                if (!p) die("out of memory keeping per-line differences (line %lld)", ref.n_lines);
                diff = p;
                diff_cap = cap;
            }
            double *d = diff + 3 * (size_t)(mean.n_examples - 1);
            d[0] = sc.r1.f - bs.r1.f;
            d[1] = sc.r2.f - bs.r2.f;
            d[2] = sc.rl.f - bs.rl.f;
        }
        if (per_example) {
            if ((size_t)mean.n_examples > per_cap) {
                size_t cap = per_cap ? 2 * per_cap : 1024;
                RougeScores *p = realloc(per, cap * sizeof *per);
                if (!p) die("out of memory keeping per-example scores (line %lld)", ref.n_lines);
                per = p;
                per_cap = cap;
            }
            per[mean.n_examples - 1] = sc;
        }
    }
    // one file ended: count what is left of the other
    while (input_line(&ref, "reference") >= 0) {
    }
    while (input_line(&hyp, "hypothesis") >= 0) {
    }
    if (ref.n_lines != hyp.n_lines)
        die("the files have different numbers of lines: %lld references, %lld hypotheses "
            "(--ref %s, --hyp %s)",
            ref.n_lines, hyp.n_lines, ref.name, hyp.name);
    if (base_path) {
        while (input_line(&base, "baseline") >= 0) {
        }
        if (base.n_lines != ref.n_lines)
            die("the files have different numbers of lines: %lld references, %lld baseline lines "
                "(--ref %s, --baseline %s)",
                ref.n_lines, base.n_lines, ref.name, base.name);
    }
    if (mean.n_examples == 0) die("no examples: both files are empty (%s, %s)", ref.name, hyp.name);
    if (n_empty > 0)
        fprintf(stderr,
                TOOL ": warning: %lld of %lld examples have an empty hypothesis or reference "
                     "(no token%s) and score 0%s\n",
                n_empty, (long long)mean.n_examples,
                opt.mode == ROUGE_PAPER ? " or no sentence" : "",
                opt.mode == ROUGE_PAPER ? "; the rouge package would raise an error on them" : "");

    Compare cmp = {.name = base_path ? base.name : NULL, .resamples = resamples, .seed = seed};
    if (base_path) {
        cmp.mean = rouge_mean_get(&base_mean);
        if (rouge_paired_bootstrap(diff, mean.n_examples, 3, resamples, seed, cmp.bs, err) != 0)
            die("%s (--baseline %s)", err, base.name);
    }
    RougeScores avg = rouge_mean_get(&mean);
    print_results(format, opt.mode, opt.keep_case, &avg, (long long)mean.n_examples, per,
                  per_example, base_path ? &cmp : NULL);
    free(per);
    free(diff);
    if (base_path) input_close(&base);
    rouge_scorer_free(scorer);
    input_close(&ref);
    input_close(&hyp);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write the results: %s (stdout)", strerror(errno));
    return 0;
}
