// prepare.c: `conflux-headline prepare`: tokenizes (article, headline) pairs from news files
// or TSV into a pair shard (io/tasks/headline.h) for `train`.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/headline/cli.h"
#include "io/news/lead.h"
#include "io/store/pairs.h"
#include "io/tasks/headline.h"
#include "io/tokenizer/bpe.h"
#include "models/common.h"

int headline_cmd_prepare(int argc, char **argv) {
    static const char usage[] =
        "usage: " HL_TOOL " prepare --tokenizer DIR --out PAIRS.h5 [options] FILE...\n"
        "\n"
        "Tokenizes (article, headline) pairs into a pair shard for `train`. FILEs are news\n"
        "dumps read as they stream (plain or gzip): RIA JSON lines, Lenta.ru CSV, ODS CSV\n"
        "(io/news/news.h; bad records are reported with their line and skipped), or TSV files of\n"
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
        "  --target T        title (default): the pair is (article, headline); lead: the\n"
        "                    pair is (the article after its first sentence, that sentence;\n"
        "                    a dateline is left out), for lead pretraining before the\n"
        "                    headlines (articles of one sentence are skipped)\n"
        "  --source LABEL    label stored in the shard (default: the first file's format)\n"
        "  -q, --quiet       no progress lines\n"
        "  -h, --help        this text\n"
        "\n"
        "examples:\n"
        "  " HL_TOOL " prepare --tokenizer build/data/tokenizer --out build/data/headline/train.h5 \\\n"
        "      build/data/headline/train.tsv\n"
        "  " HL_TOOL " prepare --tokenizer build/data/tokenizer --lowercase --limit 990000 \\\n"
        "      --out ria_train.h5 ria.json.gz\n"
        "  " HL_TOOL " prepare --tokenizer build/data/tokenizer --lowercase --skip 990000 \\\n"
        "      --out ria_valid.h5 ria.json.gz\n";
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"out", required_argument, 0, 'o'},
        {"format", required_argument, 0, 'f'},    {"max-src", required_argument, 0, 's'},
        {"max-tgt", required_argument, 0, 'g'},   {"lowercase", no_argument, 0, 'l'},
        {"skip", required_argument, 0, 'k'},      {"limit", required_argument, 0, 'n'},
        {"source", required_argument, 0, 'S'},    {"quiet", no_argument, 0, 'q'},
        {"target", required_argument, 0, 'T'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *tok_dir = NULL, *out = NULL, *format = "auto", *source = NULL;
    long max_src = 512, max_tgt = 64, skip = 0, limit = 0;
    int lowercase = 0, quiet = 0, lead = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "t:o:f:qh", opts, NULL)) != -1) {
        switch (c) {
        case 't': tok_dir = optarg; break;
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 's':
            if ((max_src = hl_parse_count(optarg)) < 1)
                return hl_usage_err("prepare", "--max-src must be a positive count (got '%s')", optarg);
            break;
        case 'g':
            if ((max_tgt = hl_parse_count(optarg)) < 1)
                return hl_usage_err("prepare", "--max-tgt must be a positive count (got '%s')", optarg);
            break;
        case 'l': lowercase = 1; break;
        case 'k':
            if ((skip = hl_parse_count(optarg)) < 0)
                return hl_usage_err("prepare", "--skip must be a count (got '%s')", optarg);
            break;
        case 'n':
            if ((limit = hl_parse_count(optarg)) < 0)
                return hl_usage_err("prepare", "--limit must be a count (got '%s')", optarg);
            break;
        case 'S': source = optarg; break;
        case 'T':
            if (!strcmp(optarg, "lead")) lead = 1;
            else if (strcmp(optarg, "title"))
                return hl_usage_err("prepare", "unknown --target '%s' (title or lead)", optarg);
            break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return hl_usage_err("prepare", "bad option '%s'", argv[optind - 1]);
        }
    }
    if (!tok_dir) return hl_usage_err("prepare", "--tokenizer DIR is required");
    if (!out) return hl_usage_err("prepare", "--out FILE is required");
    if (optind >= argc) return hl_usage_err("prepare", "no input FILE given");
    if (strcmp(format, "auto") && strcmp(format, "tsv") && strcmp(format, "ria") &&
        strcmp(format, "lenta") && strcmp(format, "ods"))
        return hl_usage_err("prepare", "unknown --format '%s' (auto, ria, lenta, ods, tsv)", format);
    if (source && strlen(source) >= 64) return hl_usage_err("prepare", "--source is longer than 63 bytes");
    char err[CX_ERRLEN];
    HlEncoder enc;
    if (hl_encoder_open(&enc, tok_dir, lowercase, err) != 0) {
        hl_report("%s", err);
        return 1;
    }
    int32_t *src = cx_calloc((size_t)max_src, sizeof(int32_t));
    int32_t *tgt = cx_calloc((size_t)max_tgt, sizeof(int32_t));
    char *lead_buf = NULL;  // --target lead: the first sentence
    size_t lead_cap = 0;
    PairWriter *w = NULL;
    int rc = 0;
    uint64_t seen = 0, kept = 0, skipped_bad, empty = 0, trunc = 0, src_tok = 0, tgt_tok = 0;
    double t0 = cx_now(), t_last = t0;
    uint64_t bytes = 0;
    ArticleStream st = {.files = argv + optind, .n_files = argc - optind, .format = format};
    for (;;) {
        int got = hl_stream_next(&st, err);
        if (got < 0) {
            hl_report("%s", err);
            rc = 1;
            break;
        }
        if (got == 0) break;
        if (got == 2) {
            if (!w) {
                char label[64];
                snprintf(label, sizeof label, "%s", source ? source : hl_reader_kind_name(&st.r));
                if (pairs_writer_open(&w, out, bpe_vocab_size(enc.bpe), bpe_fingerprint(enc.bpe),
                                      label, lowercase, err) != 0) {
                    hl_report("%s", err);
                    rc = 1;
                    break;
                }
            }
            continue;
        }
        bytes += st.title_n + st.text_n;
        if (seen++ < (uint64_t)skip) continue;  // as evaluate --skip: articles read
        const char *sx = st.text, *tx = st.title;
        size_t sxn = st.text_n, txn = st.title_n;
        if (lead) {
            if (st.text_n + 1 > lead_cap) {
                lead_cap = 2 * (st.text_n + 1);
                lead_buf = realloc(lead_buf, lead_cap);
                CHECK(lead_buf, "out of memory");
            }
            txn = headline_first_sentence(st.text, st.text_n, HEADLINE_LEAD_AUTO, lead_buf, NULL);
            tx = lead_buf;
            size_t r = headline_lead_rest(st.text, st.text_n);
            sx = st.text + r;
            sxn = st.text_n - r;
        }
        size_t ns = sxn ? hl_encoder_run(&enc, sx, sxn, src, (size_t)max_src) : 0;
        size_t nt = txn ? hl_encoder_run(&enc, tx, txn, tgt, (size_t)max_tgt) : 0;
        if (ns == 0 || nt == 0) {
            empty++;
            continue;
        }
        if (ns == (size_t)max_src) trunc++;
        if (pairs_writer_add(w, src, ns, tgt, nt, err) != 0) {
            hl_report("%s", err);
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
    hl_stream_close_file(&st);
    skipped_bad = st.skipped;
    if (rc == 0 && kept == 0) {
        hl_report("no usable pair in the input (%llu skipped as bad, %llu empty)",
               (unsigned long long)skipped_bad, (unsigned long long)empty);
        rc = 1;
    }
    if (rc == 0) {
        if (pairs_writer_close(w, err) != 0) {
            hl_report("%s", err);
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
    free(lead_buf);
    free(src);
    free(tgt);
    hl_encoder_close(&enc);
    return rc;
}
