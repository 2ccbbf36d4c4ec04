// generate.c: `conflux-headline generate`: one headline per article read from stdin or files.
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "io/headline/cli.h"
#include "models/common.h"
#include "models/par.h"

enum { OPT_STATS = HL_OPT_NEXT };

int headline_cmd_generate(int argc, char **argv) {
    static const char usage[] =
        "usage: " HL_TOOL " generate --checkpoint CKPT [options] [FILE...]\n"
        "\n"
        "Writes one headline per article to stdout, one per line. Articles come from FILEs or,\n"
        "without FILE (or with \"-\"), from stdin. Without --format, stdin and FILEs hold one\n"
        "article per line (plain text), except FILEs named *.json, *.jsonl, *.csv (also .gz) or\n"
        "*.ods, read as news dumps (format detected, the title column ignored), and *.tsv(.gz),\n"
        "title TAB body lines. --format reads every FILE one way. Articles are tokenized as in\n"
        "training (lowercased when the training data was) and cut to the encoder's length.\n"
        "\n" HL_GEN_OPTIONS_HELP
        "  --format F           text, tsv, ria, lenta, ods or auto (default: by the name, above)\n"
        "  --limit N            stop after N articles\n"
        "  --stats              print the number of headlines and headlines/s to stderr\n"
        "  -h, --help           this text\n"
        "\n"
        "examples:\n"
        "  echo 'Программа для просмотра и печати файлов PDF с поддержкой закладок.' |\n"
        "      " HL_TOOL " generate --checkpoint runs/hl/latest.h5\n"
        "  " HL_TOOL " generate --checkpoint runs/hl/latest.h5 --format ria --beam 4 \\\n"
        "      --block-trigrams --alpha 0.9 --max-len 24 ria_test.json\n";
    static const struct option opts[] = {HL_GEN_LONG_OPTIONS,
                                          {"stats", no_argument, 0, OPT_STATS},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    HlGenOpts o = HL_GEN_OPTS_INIT;
    HlCkpts ckpt = {0};
    const char *tok = NULL, *format = NULL;
    long limit = 0;
    int stats = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int g = hl_gen_option("generate", c, &o, &ckpt, &tok);
        if (g == 2) return 2;
        if (g == 1) continue;
        switch (c) {
        case HL_OPT_FORMAT: format = optarg; break;
        case HL_OPT_LIMIT:
            if ((limit = hl_parse_count(optarg)) < 0)
                return hl_usage_err("generate", "--limit must be a count (got '%s')", optarg);
            break;
        case OPT_STATS: stats = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return hl_usage_err("generate", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (ckpt.n == 0) return hl_usage_err("generate", "--checkpoint CKPT is required");
    const int by_name = format == NULL;
    if (by_name) format = "text";
    if (strcmp(format, "text") && strcmp(format, "tsv") && strcmp(format, "auto") &&
        strcmp(format, "ria") && strcmp(format, "lenta") && strcmp(format, "ods"))
        return hl_usage_err("generate", "unknown --format '%s' (text, tsv, ria, lenta, ods, auto)", format);
    par_set_threads(o.threads);
    char err[CX_ERRLEN];
    HlGenerator G;
    if (hl_gen_open(&G, &ckpt, tok, &o, err) != 0) {
        hl_report("%s", err);
        return 1;
    }
    static char *const stdin_only[] = {"-"};
    char *const *files = optind < argc ? argv + optind : stdin_only;
    int n_files = optind < argc ? argc - optind : 1;
    long done = 0;
    int rc = 0;
    double t0 = cx_now();
    ArticleStream st = {.files = files, .n_files = n_files, .format = format, .allow_text = 1,
                        .stdin_text_only = 1, .by_name = by_name};
    for (;;) {
        int got = hl_stream_next(&st, err);
        if (got < 0) {
            hl_report("%s", err);
            rc = got == -2 ? 2 : 1;
        }
        if (got <= 0) break;
        if (got == 2) continue;
        const char *h = hl_gen_run(&G, st.text, st.text_n, err);
        if (!h) {
            hl_report("%s (%s:%llu)", err, st.r.path, (unsigned long long)st.line);
            rc = 1;
            break;
        }
        if (printf("%s\n", h) < 0 || fflush(stdout) != 0) {
            hl_report("cannot write the output: %s", strerror(errno));
            rc = 1;
            break;
        }
        if (limit && ++done >= limit) break;
        if (!limit) done++;
    }
    hl_stream_close_file(&st);
    double dt = cx_now() - t0;
    if (stats && rc == 0)
        fprintf(stderr, "generate: %ld headlines in %.2f s: %.2f headlines/s, %.1f tokens each "
                        "(beam %d, max_len %d)\n",
                done, dt, dt > 0 ? done / dt : 0.0, done ? (double)G.n_tokens / done : 0.0,
                G.bc.beam_size, G.bc.max_len);
    if (stats && rc == 0 && G.mbr.n > 0)
        fprintf(stderr, "generate: minimum Bayes risk over %d samples%s: %ld of %ld headlines from "
                        "the samples, the rest the beam's\n",
                G.mbr.n, hl_mbr_article_term(&G), G.n_mbr_sample, done);
    if (stats && rc == 0 && G.rule)
        fprintf(stderr, "generate: %ld decoded without the lexicon (no hypothesis could finish "
                        "its words)\n", G.n_unconstrained);
    hl_gen_close(&G);
    return rc;
}
