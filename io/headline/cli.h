// cli.h: the subcommands of conflux-headline that need no MPI (pairs, prepare, generate,
// evaluate; `train` stays in mpi/conflux-headline.c) and the pieces they share: error
// messages, option parsing, the tokenizer as the model saw it, the article readers and the
// generator that loads a checkpoint for decoding.
//
// Each headline_cmd_* takes the subcommand's argv (argv[0] is the subcommand name), prints
// its own usage on -h/--help and returns the exit status: 0 success, 1 runtime failure,
// 2 usage error. Errors read "conflux-headline: error: what (where)" on stderr.
#ifndef CONFLUX_HEADLINE_CLI_H
#define CONFLUX_HEADLINE_CLI_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include <zlib.h>

#include "io/eval/rouge.h"
#include "io/headline/lexicon.h"
#include "io/tokenizer/bpe.h"
#include "io/tasks/headline.h"
#include "io/news/news.h"
#include "models/beam.h"
#include "models/encdec.h"

#define HL_TOOL "conflux-headline"

// The subcommands (see the usage text in each file).
int headline_cmd_pairs(int argc, char **argv);
int headline_cmd_prepare(int argc, char **argv);
int headline_cmd_generate(int argc, char **argv);
int headline_cmd_evaluate(int argc, char **argv);

// ---- errors and options ---------------------------------------------------------------------

// Prints "conflux-headline: error: MSG" and a newline to stderr.
void hl_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Usage error of subcommand cmd: prints the message and a hint to its --help, returns 2.
int hl_usage_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Parses a non-negative decimal integer option; -1 on error (empty, junk, overflow, < 0).
long hl_parse_count(const char *s);

// ---- tokenizing text the way the model saw it in training -----------------------------------

typedef struct {
    Bpe *bpe;
    int lowercase;
    char *buf;  // work buffer, grows to the longest text
    size_t cap;
} HlEncoder;

// Loads the BPE tokenizer of dir (vocab.json + merges.txt); lowercase as the training data
// was. 0, or -1 with err (CX_ERRLEN bytes). End with hl_encoder_close.
int hl_encoder_open(HlEncoder *e, const char *dir, int lowercase, char *err);

// Frees what hl_encoder_open allocated; e is zeroed.
void hl_encoder_close(HlEncoder *e);

// Tokenizes n bytes of text (line breaks become spaces, lowercased when asked) into at most
// cap ids. Returns the number of ids written.
size_t hl_encoder_run(HlEncoder *e, const char *text, size_t n, int32_t *ids, size_t cap);

// ---- reading articles: news files (io/news/news.h), TSV pairs or plain text lines -----------------

enum { HL_SRC_NEWS, HL_SRC_TSV, HL_SRC_TEXT };

// One open input file; the fields are read-only for callers.
typedef struct {
    int kind;  // HL_SRC_*
    NewsReader *news;
    gzFile gz;
    const char *path;
    char *line;
    size_t cap;
    uint64_t line_no, bad, too_long;
    NewsFormat news_fmt;  // the detected format (HL_SRC_NEWS)
} ArticleReader;

// "tsv", "text", or the news format's name (io/news/news.h) of an open reader.
const char *hl_reader_kind_name(const ArticleReader *r);

// The articles of several FILEs in turn, each opened when the one before it is read to
// the end: the read loop of prepare, generate and evaluate. Set the fields up to
// stdin_text_only in a zeroed struct; end with hl_stream_close_file.
typedef struct {
    char *const *files;  // "-" is stdin (text and tsv only)
    int n_files;
    int next;            // index of the file opened after the current one
    const char *format;  // "auto", "ria", "lenta", "ods", "tsv", "text"; auto: *.tsv(.gz)
                         // is tsv, else news with the format detected
    int allow_text;      // "text" (one article per line, no title) is allowed
    int stdin_text_only; // "-" only with --format text or tsv (generate)
    int by_name;         // format "text" was not chosen but defaulted (generate): a FILE named
                         // *.tsv(.gz) is tsv, *.json, *.jsonl, *.csv (.gz) or *.ods a news
                         // dump (auto), any other (and stdin) text
    int is_open;
    ArticleReader r;     // the current file (is_open)
    uint64_t skipped;    // records skipped as bad in the files opened so far
    // the current article (hl_stream_next returned 1); title NULL for text input
    const char *title, *text;
    size_t title_n, text_n;
    uint64_t line;
} ArticleStream;

// 1: the next article is in s->title..s->line (valid until the next call); 2: the next file
// was just opened (s->r), before any of its articles are read; 0: every file was read; -1
// with err: a file cannot be opened or read; -2 with err: stdin given with a news format
// (stdin_text_only). Bad records are reported on stderr with their line and skipped.
int hl_stream_next(ArticleStream *s, char *err);

// Closes the current file, if any, adding its skipped records to s->skipped.
void hl_stream_close_file(ArticleStream *s);

// ---- generate / evaluate: a model loaded for decoding --------------------------------------

typedef struct {
    int beam, min_len, max_len, block_trigrams, src_len, threads;
    float alpha;
    const char *lexicon;  // NULL: words are not constrained (io/headline/lexicon.h)
    int no_repeat_words;  // with a lexicon: no word of this many letters twice (0: off)
    // minimum Bayes risk decoding (hl_gen_run): mbr samples (0: off) drawn with
    // mbr_temperature and mbr_epsilon, utility weights of ROUGE-1/2/L F, the weight of a
    // candidate's ROUGE-2 precision against its article added to its utility (mbr_article),
    // seed of the draws
    int mbr;
    float mbr_temperature, mbr_epsilon;
    double mbr_weights[3];
    double mbr_article;
    const char *mbr_candidates;  // NULL, or the file every candidate is written to
    uint64_t seed;
} HlGenOpts;  // -1 (alpha < 0): the checkpoint's [generate] / [data] value; threads 0: unset

// The defaults: the checkpoint's decoding options, no minimum Bayes risk (when --mbr N turns
// it on: temperature 1, epsilon 0.02, utility the mean of the three F, no article term,
// seed 1).
#define HL_GEN_OPTS_INIT                                                                       \
    {.beam = -1, .min_len = -1, .max_len = -1, .block_trigrams = -1, .src_len = -1,            \
     .threads = 0, .alpha = -1.0f, .lexicon = NULL, .no_repeat_words = 0, .mbr = 0,            \
     .mbr_temperature = 1.0f, .mbr_epsilon = 0.02f,                                            \
     .mbr_weights = {1.0 / 3, 1.0 / 3, 1.0 / 3}, .mbr_article = 0.0,                           \
     .mbr_candidates = NULL, .seed = 1}

#define HL_MAX_MODELS 8
#define HL_MAX_MBR 256  // most samples --mbr draws

// The checkpoints given with --checkpoint (several: an ensemble).
typedef struct {
    const char *path[HL_MAX_MODELS];
    int n;
} HlCkpts;

typedef struct {
    HeadlineConfig cfg;  // the first checkpoint's configuration, the options applied
    int n_models;        // 1, or an ensemble (models/encdec.h) of n_models
    EncDec *m[HL_MAX_MODELS];
    EncDecGen *g[HL_MAX_MODELS];
    int src_len[HL_MAX_MODELS];  // each model's data.src_len (or --src-len)
    int longest;                 // the model with the longest src_len
    EncDecEnsemble *ens;         // n_models > 1
    HlEncoder enc;
    BeamConfig bc;  // read-only for callers (beam_size, max_len)
    int32_t banned[4];
    uint8_t *fsm;  // bc.fsm: io/tokenizer's UTF-8 token automaton
    Lexicon *lex;  // --lexicon: bc.mask is rule's
    LexRule *rule;
    int32_t *src[HL_MAX_MODELS], *out;
    char *text;
    size_t text_cap;
    long n_tokens;  // generated tokens (EOS excluded) over all calls
    long n_unconstrained;  // headlines the lexicon rule left without any hypothesis, decoded
                           // without it
    // minimum Bayes risk decoding (mbr.n > 0)
    BeamSampling mbr;        // seed: --seed; each article draws with one derived from it
    double mbr_weights[3];
    double mbr_article;      // --mbr-article
    double *mbr_prior;       // (1 + mbr.n): mbr_article x each candidate's R-2 P vs the article
    double *mbr_expected;    // (1 + mbr.n): the expected utilities, the prior included
    FILE *cand_out;          // --mbr-candidates, or NULL
    const char *cand_path;
    long n_run;              // articles hl_gen_run has decoded
    RougeScorer *mbr_rouge;  // standard mode
    int32_t *samples;        // (mbr.n, max_len)
    int *sample_len;
    double *sample_score;
    char **cand;             // (1 + mbr.n) candidate texts: the beam's, then the samples'
    size_t *cand_cap, *cand_bytes;
    long n_mbr_sample;  // headlines MBR took from the samples rather than the beam
} HlGenerator;

// Loads the encdec checkpoints ck (one, or several decoded as an ensemble: the mean of their
// next-token distributions) with their configurations, the options o applied (o->threads is
// the caller's; decoding options come from the first checkpoint), and the tokenizer tok_dir
// (NULL: the first checkpoint's data.tokenizer). The models of an ensemble must share the
// vocabulary size and data.lowercase; each reads its own data.src_len tokens of an article
// (unless o->src_len). 0, or -1 with err naming the checkpoint; G is then zeroed. End with
// hl_gen_close.
int hl_gen_open(HlGenerator *G, const HlCkpts *ck, const char *tok_dir, const HlGenOpts *o,
                char *err);

// Frees what hl_gen_open allocated; G is zeroed.
void hl_gen_close(HlGenerator *G);

// Generates the headline of n bytes of article text. Returns it (NUL-terminated, owned by G,
// valid until the next call), or NULL with err. With a lexicon, an article whose every
// hypothesis runs into words the lexicon cannot finish is decoded again without the rule
// (G->n_unconstrained counts them). With minimum Bayes risk decoding (o->mbr > 0), the beam
// search's headline and o->mbr samples (beam.h's sampling, under the same rules; seed
// derived from o->seed and the article's bytes, so a headline depends on its article only)
// are the candidates, the complete samples the pseudo-references, and the headline is
// rouge_mbr_pick's choice (standard-mode ROUGE, o->mbr_weights; ties: the beam's), each
// candidate's expected utility raised by o->mbr_article times the ROUGE-2 precision of the
// candidate against the article (the share of its word bigrams that the article has). With
// o->mbr_candidates every candidate is written there, one TSV line each.
const char *hl_gen_run(HlGenerator *G, const char *text, size_t n, char *err);

// " + W x R-2 P against the article" for the statistics lines when --mbr-article W is on,
// else "" (static storage).
const char *hl_mbr_article_term(const HlGenerator *G);

// The help lines of the options in HL_GEN_LONG_OPTIONS (without --format and --limit,
// whose help differs between the subcommands).
#define HL_GEN_OPTIONS_HELP                                                                    \
    "  --checkpoint CKPT    encdec checkpoint (" HL_TOOL " train); given several times (at most\n" \
    "                       8), an ensemble: the mean of the models' next-token distributions\n" \
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
    "  --threads N          threads of the pool (models/par.h; default: the process's CPUs)\n"  \
    "  --lexicon FILE       headlines in known words only: those of FILE (UTF-8 text, e.g. the\n"  \
    "                       training corpus) and of the article; no garbled spellings\n"       \
    "  --no-repeat-words N  with --lexicon: no word of N or more letters twice (default 0: off)\n" \
    "  --mbr N              minimum Bayes risk decoding (Freitag et al. 2022): draw N samples\n"  \
    "                       (at most 256) and keep, of them and the beam's headline, the one\n"   \
    "                       with the highest mean ROUGE F against the samples (default 0: off)\n" \
    "  --mbr-epsilon E      with --mbr: epsilon sampling, tokens below probability E are not\n"  \
    "                       drawn (default 0.02; 0: plain sampling)\n"                            \
    "  --mbr-temperature T  with --mbr: sampling temperature (default 1)\n"                      \
    "  --mbr-utility U      with --mbr: mean (of R-1, R-2, R-L F; default), r1, r2 or rl\n"      \
    "  --mbr-article W      with --mbr: add W x the candidate's ROUGE-2 precision against the\n" \
    "                       article (its word bigrams found there) to its utility (default 0)\n" \
    "  --mbr-candidates FILE\n"                                                                 \
    "                       with --mbr: write every candidate to FILE (TSV: article, candidate,\n" \
    "                       kind, expected utility, the article term, chosen, text)\n"          \
    "  --seed S             with --mbr: seed of the draws (default 1)\n"

// getopt_long values of the shared options; a subcommand numbers its own from HL_OPT_NEXT.
enum { HL_OPT_BEAM = 1000, HL_OPT_MINLEN, HL_OPT_MAXLEN, HL_OPT_ALPHA, HL_OPT_BLOCK,
       HL_OPT_NOBLOCK, HL_OPT_SRCLEN, HL_OPT_THREADS, HL_OPT_LIMIT, HL_OPT_TOKENIZER,
       HL_OPT_CKPT, HL_OPT_FORMAT, HL_OPT_LEXICON, HL_OPT_NOREPEAT, HL_OPT_MBR,
       HL_OPT_MBR_EPS, HL_OPT_MBR_TEMP, HL_OPT_MBR_UTIL, HL_OPT_MBR_ARTICLE, HL_OPT_MBR_CANDS,
       HL_OPT_SEED, HL_OPT_NEXT };

// struct option entries of the shared options (--format and --limit are the subcommand's
// to handle), for the start of a subcommand's table.
#define HL_GEN_LONG_OPTIONS                                                                    \
    {"checkpoint", required_argument, 0, HL_OPT_CKPT},                                         \
        {"tokenizer", required_argument, 0, HL_OPT_TOKENIZER},                                 \
        {"beam", required_argument, 0, HL_OPT_BEAM},                                           \
        {"min-len", required_argument, 0, HL_OPT_MINLEN},                                      \
        {"max-len", required_argument, 0, HL_OPT_MAXLEN},                                      \
        {"alpha", required_argument, 0, HL_OPT_ALPHA},                                         \
        {"block-trigrams", no_argument, 0, HL_OPT_BLOCK},                                      \
        {"no-block-trigrams", no_argument, 0, HL_OPT_NOBLOCK},                                 \
        {"src-len", required_argument, 0, HL_OPT_SRCLEN},                                      \
        {"threads", required_argument, 0, HL_OPT_THREADS},                                     \
        {"lexicon", required_argument, 0, HL_OPT_LEXICON},                                     \
        {"no-repeat-words", required_argument, 0, HL_OPT_NOREPEAT},                            \
        {"mbr", required_argument, 0, HL_OPT_MBR},                                             \
        {"mbr-epsilon", required_argument, 0, HL_OPT_MBR_EPS},                                 \
        {"mbr-temperature", required_argument, 0, HL_OPT_MBR_TEMP},                            \
        {"mbr-utility", required_argument, 0, HL_OPT_MBR_UTIL},                                \
        {"mbr-article", required_argument, 0, HL_OPT_MBR_ARTICLE},                             \
        {"mbr-candidates", required_argument, 0, HL_OPT_MBR_CANDS},                            \
        {"seed", required_argument, 0, HL_OPT_SEED},                                           \
        {"format", required_argument, 0, HL_OPT_FORMAT},                                       \
        {"limit", required_argument, 0, HL_OPT_LIMIT}

// Handles getopt_long's value c (with optarg) if it is a shared generation option, filling
// o, ck or *tok. 1 handled, 0 not one of them, 2 usage error of cmd (printed).
int hl_gen_option(const char *cmd, int c, HlGenOpts *o, HlCkpts *ck, const char **tok);

#endif
