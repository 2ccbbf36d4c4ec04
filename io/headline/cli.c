// cli.c: what the subcommands of conflux-headline in io/headline/ share (see cli.h).
#include "io/headline/cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/corpus/corpus.h"
#include "io/news/lead.h"
#include "io/text/utf8.h"
#include "io/store/ckpt.h"
#include "io/text/utf8.h"
#include "models/common.h"
#include "models/rng.h"

void hl_report(const char *fmt, ...) {
    char msg[CX_ERRLEN + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, HL_TOOL ": error: %s\n", msg);
}

int hl_usage_err(const char *cmd, const char *fmt, ...) {
    char msg[CX_ERRLEN + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, HL_TOOL ": error: %s (see '" HL_TOOL " %s --help')\n", msg, cmd);
    return 2;
}

long hl_parse_count(const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 0) return -1;
    return v;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, float *out) {
    double d;
    if (parse_double(s, &d) != 0 || !isfinite((float)d)) return -1;
    *out = (float)d;
    return 0;
}

// ---------------------------------------------------------------------------------------
// Tokenizing text the way the model saw it in training.

int hl_encoder_open(HlEncoder *e, const char *dir, int lowercase, char *err) {
    memset(e, 0, sizeof *e);
    if (bpe_load(&e->bpe, dir, err) != 0) return -1;
    e->lowercase = lowercase;
    return 0;
}

void hl_encoder_close(HlEncoder *e) {
    bpe_free(e->bpe);
    free(e->buf);
    memset(e, 0, sizeof *e);
}

size_t hl_encoder_run(HlEncoder *e, const char *text, size_t n, int32_t *ids, size_t cap) {
    if (n + 1 > e->cap) {
        e->cap = n + 1 > 2 * e->cap ? n + 1 : 2 * e->cap;
        e->buf = realloc(e->buf, e->cap);
        CHECK(e->buf, "out of memory (%zu bytes)", e->cap);
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i] == '\n' || text[i] == '\r' || text[i] == '\t' ? ' ' : text[i];
        if (c == ' ' && (o == 0 || e->buf[o - 1] == ' ')) continue;
        e->buf[o++] = c;
    }
    while (o > 0 && e->buf[o - 1] == ' ') o--;
    if (e->lowercase) o = headline_lowercase(e->buf, o);
    size_t need = 0;
    bpe_encode(e->bpe, e->buf, o, ids, cap, &need);
    return need < cap ? need : cap;
}

// ---------------------------------------------------------------------------------------
// Reading articles: news files (io/news/news.h), TSV pairs or plain text lines.

#define MAX_LINE_BYTES ((size_t)8 << 20)

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

// kind_name: "auto", "ria", "lenta", "ods", "tsv", "text". auto: *.tsv(.gz) is tsv, else news.
static int reader_open(ArticleReader *r, const char *path, const char *kind_name, int allow_text,
                       char *err) {
    memset(r, 0, sizeof *r);
    r->path = path;
    int tsv = !strcmp(kind_name, "tsv") ||
              (!strcmp(kind_name, "auto") && (ends_with(path, ".tsv") || ends_with(path, ".tsv.gz")));
    int text = !strcmp(kind_name, "text");
    if (text && !allow_text) return cx_err(err, "--format text is not allowed here");
    if (tsv || text) {
        r->kind = tsv ? HL_SRC_TSV : HL_SRC_TEXT;
        r->gz = strcmp(path, "-") == 0 ? gzdopen(dup(0), "rb") : gzopen(path, "rb");
        if (!r->gz) return cx_err(err, "cannot open %s: %s", path, strerror(errno ? errno : ENOMEM));
        return 0;
    }
    NewsFormat f;
    if (news_format_parse(kind_name, &f) != 0)
        return cx_err(err, "unknown format '%s' (auto, ria, lenta, ods, tsv%s)", kind_name,
                      allow_text ? ", text" : "");
    r->kind = HL_SRC_NEWS;
    r->news = news_open(path, f, NULL, err);
    if (!r->news) return -1;
    r->news_fmt = news_format(r->news);
    return 0;
}

// One line into r->line (without the newline). 1, 0 at the end, -1 with err.
static int read_line(ArticleReader *r, size_t *len, char *err) {
    size_t n = 0;
    int too_long = 0;
    for (;;) {
        if (n + 2 > r->cap) {
            r->cap = r->cap ? 2 * r->cap : 4096;
            r->line = realloc(r->line, r->cap);
            CHECK(r->line, "out of memory");
        }
        int c = gzgetc(r->gz);
        if (c < 0) {
            int e;
            const char *msg = gzerror(r->gz, &e);
            if (e != Z_OK && e != Z_STREAM_END)
                return cx_err(err, "cannot read %s: %s (line %llu)", r->path, msg,
                              (unsigned long long)r->line_no + 1);
            if (n == 0 && !too_long) return 0;
            break;
        }
        if (c == '\n') break;
        if (n < MAX_LINE_BYTES) r->line[n++] = (char)c;
        else too_long = 1;
    }
    r->line_no++;
    if (n > 0 && r->line[n - 1] == '\r') n--;
    r->line[n] = 0;
    *len = n;
    if (too_long) {
        r->too_long++;
        return 2;  // skipped
    }
    return 1;
}

// Next article: 1 with *title/*text (title NULL for text input), 0 at the end, -1 with err.
static int reader_next(ArticleReader *r, const char **title, size_t *title_n, const char **text,
                       size_t *text_n, uint64_t *line, char *err) {
    if (r->kind == HL_SRC_NEWS) {
        NewsItem it;
        int rc = news_next(r->news, &it, err);
        if (rc != 1) return rc;
        *title = it.title, *title_n = it.title_bytes;
        *text = it.text, *text_n = it.text_bytes;
        *line = it.line;
        return 1;
    }
    for (;;) {
        size_t n = 0;
        int rc = read_line(r, &n, err);
        if (rc <= 0) return rc;
        if (rc == 2) {
            fprintf(stderr, HL_TOOL ": %s:%llu: skipped (longer than %zu bytes)\n", r->path,
                    (unsigned long long)r->line_no, MAX_LINE_BYTES);
            continue;
        }
        *line = r->line_no;
        if (n == 0) continue;  // blank lines are skipped
        size_t bad = utf8_check(r->line, n);
        if (bad != n) {
            r->bad++;
            if (r->bad <= 20)
                fprintf(stderr, HL_TOOL ": %s:%llu: skipped (invalid UTF-8 at byte %zu)\n", r->path,
                        (unsigned long long)r->line_no, bad + 1);
            continue;
        }
        if (r->kind == HL_SRC_TEXT) {
            *title = NULL, *title_n = 0;
            *text = r->line, *text_n = n;
            return 1;
        }
        char *tab = memchr(r->line, '\t', n);
        if (!tab || tab == r->line || tab + 1 == r->line + n) {
            r->bad++;
            if (r->bad <= 20)
                fprintf(stderr, HL_TOOL ": %s:%llu: skipped (%s)\n", r->path,
                        (unsigned long long)r->line_no,
                        !tab ? "no tab: expected title TAB body" : "empty title or body");
            continue;
        }
        *tab = 0;
        *title = r->line, *title_n = (size_t)(tab - r->line);
        *text = tab + 1, *text_n = n - (size_t)(tab + 1 - r->line);
        return 1;
    }
}

// Records skipped so far (news readers count their own).
static uint64_t reader_skipped(const ArticleReader *r) {
    if (r->kind == HL_SRC_NEWS) {
        NewsStats st;
        news_stats(r->news, &st);
        return st.bad_rows;
    }
    return r->bad + r->too_long;
}

static void reader_close(ArticleReader *r) {
    if (r->news) news_close(r->news);
    if (r->gz) gzclose(r->gz);
    free(r->line);
    memset(r, 0, sizeof *r);
}

const char *hl_reader_kind_name(const ArticleReader *r) {
    return r->kind == HL_SRC_TSV    ? "tsv"
           : r->kind == HL_SRC_TEXT ? "text"
                                    : news_format_name(r->news_fmt);
}

void hl_stream_close_file(ArticleStream *s) {
    if (!s->is_open) return;
    s->skipped += reader_skipped(&s->r);
    reader_close(&s->r);
    s->is_open = 0;
}

// The format a FILE is read in (ArticleStream's by_name rule): "auto" for the names of news
// dumps and pairs (reader_open's auto tells *.tsv(.gz) from news), else s->format.
static const char *format_of(const ArticleStream *s, const char *path) {
    static const char *const names[] = {".json", ".json.gz", ".jsonl", ".jsonl.gz", ".csv",
                                        ".csv.gz", ".ods", ".tsv", ".tsv.gz"};
    if (!s->by_name || strcmp(path, "-") == 0) return s->format;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (ends_with(path, names[i])) return "auto";
    return s->format;
}

int hl_stream_next(ArticleStream *s, char *err) {
    if (s->is_open) {
        int got = reader_next(&s->r, &s->title, &s->title_n, &s->text, &s->text_n, &s->line, err);
        if (got != 0) return got;
        hl_stream_close_file(s);
    }
    if (s->next >= s->n_files) return 0;
    const char *path = s->files[s->next++];
    if (s->stdin_text_only && !strcmp(path, "-") && strcmp(s->format, "text") &&
        strcmp(s->format, "tsv")) {
        cx_err(err, "--format %s reads files, not stdin", s->format);
        return -2;
    }
    if (reader_open(&s->r, path, format_of(s, path), s->allow_text, err) != 0) return -1;
    s->is_open = 1;
    return 2;
}

// ---------------------------------------------------------------------------------------
// generate / evaluate: a model loaded for decoding

void hl_gen_close(HlGenerator *G) {
    encdec_ensemble_free(G->ens);
    lex_rule_free(G->rule);
    lexicon_free(G->lex);
    for (int i = 0; i < HL_MAX_MODELS; i++) {
        encdec_gen_free(G->g[i]);
        encdec_free(G->m[i]);
        free(G->src[i]);
    }
    hl_encoder_close(&G->enc);
    rouge_scorer_free(G->mbr_rouge);
    free(G->samples);
    free(G->sample_len);
    free(G->sample_score);
    for (int i = 0; G->cand && i <= G->mbr.n; i++) free(G->cand[i]);
    free(G->cand);
    free(G->cand_cap);
    free(G->cand_bytes);
    free(G->mbr_prior);
    free(G->mbr_expected);
    if (G->cand_out) fclose(G->cand_out);
    free(G->out);
    free(G->text);
    free(G->fsm);
    memset(G, 0, sizeof *G);
}

// Hypotheses a generator decodes at once: the beam, or the samples of minimum Bayes risk.
static int gen_rows(const HeadlineConfig *c, const HlGenOpts *o) {
    return c->generate.beam > o->mbr ? c->generate.beam : o->mbr;
}

// Loads model i of G from path: its configuration (the first's becomes G->cfg, with the
// options), its shape and parameters. 0, or -1 with err.
static int gen_load_model(HlGenerator *G, int i, const char *path, const HlGenOpts *o, char *err) {
    Ckpt *ck = NULL;
    if (ckpt_open(&ck, path, err) != 0) return -1;
    int rc = -1;
    HeadlineConfig own, *c = i == 0 ? &G->cfg : &own;
    if (strcmp(ckpt_model(ck), "encdec") != 0) {
        cx_err(err, "%s holds a '%s' model, not an encoder-decoder (train one with `" HL_TOOL " train`)",
               path, ckpt_model(ck));
        goto out;
    }
    headline_config_defaults(c);
    if (headline_config_load_string(c, ckpt_config_text(ck), path, err) != 0) goto out;
    if (o->src_len >= 0) c->data.src_len = o->src_len;
    if (i == 0) {
        if (o->beam >= 0) c->generate.beam = o->beam;
        if (o->min_len >= 0) c->generate.min_len = o->min_len;
        if (o->max_len >= 0) c->generate.max_len = o->max_len;
        if (o->block_trigrams >= 0) c->generate.block_trigrams = o->block_trigrams;
        if (o->alpha >= 0) c->generate.alpha = o->alpha;
        if (c->generate.beam < 1) {
            cx_err(err, "--beam must be >= 1");
            goto out;
        }
        if (c->generate.min_len >= c->generate.max_len) {
            cx_err(err, "--min-len (%d) must be less than --max-len (%d): EOS counts as a token",
                   c->generate.min_len, c->generate.max_len);
            goto out;
        }
    } else {
        const HeadlineConfig *f = &G->cfg;
        if (c->model.enc.vocab_size != f->model.enc.vocab_size) {
            cx_err(err, "%s: vocabulary of %d tokens, the first checkpoint's %d (an ensemble "
                        "shares one tokenizer)", path, c->model.enc.vocab_size,
                   f->model.enc.vocab_size);
            goto out;
        }
        if (c->data.lowercase != f->data.lowercase) {
            cx_err(err, "%s: data.lowercase = %d, the first checkpoint's %d (an ensemble reads "
                        "the articles one way)", path, c->data.lowercase, f->data.lowercase);
            goto out;
        }
    }
    if (G->cfg.generate.max_len < 1 || G->cfg.generate.max_len > c->model.dec_max_position) {
        cx_err(err, "--max-len must be in [1, %d] (the decoder's positions of %s)",
               c->model.dec_max_position, path);
        goto out;
    }
    if (c->data.src_len < 3 || c->data.src_len > c->model.enc.max_position) {
        cx_err(err, "--src-len must be in [3, %d] (the encoder's positions of %s)",
               c->model.enc.max_position, path);
        goto out;
    }
    if (encdec_config_check(&c->model, err) != 0) goto out;
    G->src_len[i] = c->data.src_len;
    G->m[i] = encdec_create(&c->model, 1, c->data.src_len, 2, 0);
    if (ckpt_read_params(ck, encdec_specs(G->m[i]), encdec_n_specs(G->m[i]), encdec_params(G->m[i]),
                         err) != 0)
        goto out;
    G->g[i] = encdec_gen_create(G->m[i], gen_rows(&G->cfg, o), G->cfg.generate.max_len);
    G->src[i] = cx_calloc((size_t)c->data.src_len, sizeof(int32_t));
    rc = 0;
out:
    ckpt_close(ck);
    return rc;
}

int hl_gen_open(HlGenerator *G, const HlCkpts *ck, const char *tok_dir, const HlGenOpts *o,
                char *err) {
    memset(G, 0, sizeof *G);
    if (ck->n < 1 || ck->n > HL_MAX_MODELS)
        return cx_err(err, "%d checkpoints (1 to %d)", ck->n, HL_MAX_MODELS);
    if (o->no_repeat_words > 0 && !o->lexicon)
        return cx_err(err, "--no-repeat-words needs --lexicon FILE");
    for (int i = 0; i < ck->n; i++) {
        if (gen_load_model(G, i, ck->path[i], o, err) != 0) goto fail;
        G->n_models = i + 1;
        if (G->src_len[i] > G->src_len[G->longest]) G->longest = i;
    }
    HeadlineConfig *c = &G->cfg;
    const char *td = tok_dir ? tok_dir : c->data.tokenizer;
    if (hl_encoder_open(&G->enc, td, c->data.lowercase, err) != 0) {
        char e2[CX_ERRLEN];
        snprintf(e2, sizeof e2, "%s", err);
        cx_err(err, "%s%s", e2, tok_dir ? "" : " (the checkpoint's data.tokenizer; --tokenizer DIR overrides it)");
        goto fail;
    }
    if (bpe_vocab_size(G->enc.bpe) > c->model.enc.vocab_size) {
        cx_err(err, "tokenizer %s has %d tokens, more than the model's %d", td,
               bpe_vocab_size(G->enc.bpe), c->model.enc.vocab_size);
        goto fail;
    }
    if (G->n_models > 1)
        G->ens = encdec_ensemble_create(G->g, G->n_models, gen_rows(c, o), c->generate.max_len);
    G->banned[0] = ED_PAD, G->banned[1] = ED_UNK, G->banned[2] = ED_BOS, G->banned[3] = ED_MASK;
    G->bc = (BeamConfig){.beam_size = c->generate.beam, .min_len = c->generate.min_len,
                         .max_len = c->generate.max_len, .alpha = c->generate.alpha,
                         .block_trigrams = c->generate.block_trigrams, .bos = ED_BOS,
                         .eos = ED_EOS, .banned = G->banned, .n_banned = 4};
    // headlines of whole characters: the byte-level tokens are chosen so that the text is
    // well-formed UTF-8 at every EOS (and at max_len)
    const int V = c->model.enc.vocab_size;
    G->fsm = cx_calloc((size_t)UTF8_FSM_STATES * V, 1);
    bpe_utf8_automaton(G->enc.bpe, V, G->fsm);
    G->bc.fsm = G->fsm;
    G->bc.fsm_states = UTF8_FSM_STATES;
    if (o->lexicon) {
        if (lexicon_load(&G->lex, o->lexicon, err) != 0) goto fail;
        G->rule = lex_rule_create(G->lex, G->enc.bpe, V, o->no_repeat_words);
        G->bc.mask = lex_rule_mask;
        G->bc.mask_ctx = G->rule;
    }
    G->out = cx_calloc((size_t)c->generate.max_len, sizeof(int32_t));
    if (o->mbr > 0) {
        G->mbr = (BeamSampling){.n = o->mbr, .temperature = o->mbr_temperature,
                                .epsilon = o->mbr_epsilon, .seed = o->seed};
        memcpy(G->mbr_weights, o->mbr_weights, sizeof G->mbr_weights);
        G->mbr_article = o->mbr_article;
        RougeOptions ro = {.mode = ROUGE_STANDARD, .keep_case = 0};
        if (rouge_scorer_new(&G->mbr_rouge, &ro, err) != 0) goto fail;
        G->samples = cx_calloc((size_t)o->mbr * c->generate.max_len, sizeof(int32_t));
        G->sample_len = cx_calloc((size_t)o->mbr, sizeof(int));
        G->sample_score = cx_calloc((size_t)o->mbr, sizeof(double));
        G->cand = cx_calloc((size_t)o->mbr + 1, sizeof(char *));
        G->cand_cap = cx_calloc((size_t)o->mbr + 1, sizeof(size_t));
        G->cand_bytes = cx_calloc((size_t)o->mbr + 1, sizeof(size_t));
        G->mbr_prior = cx_calloc((size_t)o->mbr + 1, sizeof(double));
        G->mbr_expected = cx_calloc((size_t)o->mbr + 1, sizeof(double));
    }
    if (o->mbr_candidates) {
        if (o->mbr == 0) {
            cx_err(err, "--mbr-candidates needs --mbr N");
            goto fail;
        }
        G->cand_path = o->mbr_candidates;
        if (!(G->cand_out = fopen(o->mbr_candidates, "w"))) {
            cx_err(err, "cannot write %s: %s", o->mbr_candidates, strerror(errno));
            goto fail;
        }
        fputs("article\tcandidate\tkind\texpected\tarticle_term\tchosen\ttext\n", G->cand_out);
    }
    return 0;
fail:
    hl_gen_close(G);
    return -1;
}

// The text of len generated tokens ids (a final EOS dropped; line breaks and tabs become
// spaces, runs of spaces one, none at either end) into *buf (grown, capacity *cap). Returns
// the tokens it holds.
static int gen_text(HlGenerator *G, const int32_t *ids, int len, char **buf, size_t *cap) {
    if (len > 0 && ids[len - 1] == ED_EOS) len--;
    size_t need = bpe_decode(G->enc.bpe, ids, (size_t)len, NULL, 0);
    if (need + 1 > *cap) {
        *cap = need + 64;
        *buf = realloc(*buf, *cap);
        CHECK(*buf, "out of memory");
    }
    char *t = *buf;
    bpe_decode(G->enc.bpe, ids, (size_t)len, t, need);
    size_t o = 0;
    for (size_t i = 0; i < need; i++) {
        char ch = t[i] == '\n' || t[i] == '\t' || t[i] == '\r' ? ' ' : t[i];
        if (ch == ' ' && (o == 0 || t[o - 1] == ' ')) continue;
        t[o++] = ch;
    }
    while (o > 0 && t[o - 1] == ' ') o--;
    t[o] = 0;
    return len;
}

const char *hl_gen_run(HlGenerator *G, const char *text, size_t n, char *err) {
    const long article = G->n_run++;
    // the article is tokenized once, for the longest source; each model reads its prefix
    const int longest = G->longest;
    int32_t *src = G->src[longest];
    size_t ns = hl_encoder_run(&G->enc, text, n, src + 1, (size_t)G->src_len[longest] - 2);
    int Ts[HL_MAX_MODELS];
    const int32_t *srcs[HL_MAX_MODELS];
    for (int i = 0; i < G->n_models; i++) {
        size_t ni = ns < (size_t)G->src_len[i] - 2 ? ns : (size_t)G->src_len[i] - 2;
        if (i != longest) memcpy(G->src[i] + 1, src + 1, ni * sizeof(int32_t));
        G->src[i][0] = ED_BOS;
        G->src[i][ni + 1] = ED_EOS;
        Ts[i] = (int)ni + 2;
        srcs[i] = G->src[i];
    }
    if (G->rule) lex_rule_set_article(G->rule, text, n);
    int len = 0;
    double score;
    BeamConfig bc = G->bc;
    int rc;
    for (;;) {
        rc = G->ens ? encdec_ensemble_generate(G->ens, &bc, srcs, Ts, G->out, &len, &score, err)
                    : encdec_generate(G->g[0], &bc, srcs[0], NULL, Ts[0], G->out, &len, &score, err);
        if (rc == 0 || !bc.mask) break;
        // every hypothesis the beam kept ran into words the lexicon cannot finish: this
        // article's headline is decoded without the rule (and counted)
        bc.mask = NULL;
        G->n_unconstrained++;
    }
    if (rc != 0) return NULL;
    if (G->mbr.n == 0) {
        G->n_tokens += gen_text(G, G->out, len, &G->text, &G->text_cap);
        return G->text;
    }
    // minimum Bayes risk: candidate 0 is the beam's headline, then the complete samples
    BeamSampling sp = G->mbr;
    sp.seed = cx_rng_derive(G->mbr.seed, corpus_hash64(text, n));
    int got = G->ens ? encdec_ensemble_sample(G->ens, &bc, &sp, srcs, Ts, G->samples, G->sample_len,
                                              G->sample_score, err)
                     : encdec_sample(G->g[0], &bc, &sp, srcs[0], NULL, Ts[0], G->samples,
                                     G->sample_len, G->sample_score, err);
    if (got < 0) return NULL;
    int n_cand = 1, ntok[HL_MAX_MBR + 1];
    const int32_t *ids[HL_MAX_MBR + 1];
    ids[0] = G->out;
    ntok[0] = len;
    for (int j = 0; j < sp.n; j++)
        if (G->sample_len[j] > 0) {
            ids[n_cand] = G->samples + (size_t)j * bc.max_len;
            ntok[n_cand++] = G->sample_len[j];
        }
    int tokens[HL_MAX_MBR + 1];
    for (int i = 0; i < n_cand; i++) {
        tokens[i] = gen_text(G, ids[i], ntok[i], &G->cand[i], &G->cand_cap[i]);
        G->cand_bytes[i] = strlen(G->cand[i]);
    }
    const double *prior = NULL;
    if (G->mbr_article > 0) {
        // a headline's bigrams found in its article: the share of them (R-2 precision with
        // the article as the reference) raises its utility
        for (int i = 0; i < n_cand; i++) {
            RougeScores sc;
            if (rouge_score(G->mbr_rouge, G->cand[i], G->cand_bytes[i], text, n, &sc, NULL, err) != 0)
                return NULL;
            G->mbr_prior[i] = G->mbr_article * sc.r2.p;
        }
        prior = G->mbr_prior;
    }
    int pick = 0;
    if (n_cand > 1 &&
        (pick = rouge_mbr_pick(G->mbr_rouge, (const char *const *)G->cand, G->cand_bytes, n_cand, 1,
                               G->mbr_weights, prior, G->mbr_expected, err)) < 0)
        return NULL;
    if (n_cand == 1) G->mbr_expected[0] = prior ? prior[0] : 0.0;
    if (G->cand_out) {
        for (int i = 0; i < n_cand; i++)
            fprintf(G->cand_out, "%ld\t%d\t%s\t%.17g\t%.17g\t%d\t%s\n", article, i,
                    i ? "sample" : "beam", G->mbr_expected[i], prior ? prior[i] : 0.0, i == pick,
                    G->cand[i]);
        if (fflush(G->cand_out) != 0 || ferror(G->cand_out)) {
            cx_err(err, "cannot write %s: %s", G->cand_path, strerror(errno));
            return NULL;
        }
    }
    G->n_mbr_sample += pick > 0;
    G->n_tokens += tokens[pick];
    return G->cand[pick];
}

const char *hl_mbr_article_term(const HlGenerator *G) {
    static char buf[64];
    if (!(G->mbr_article > 0)) return "";
    snprintf(buf, sizeof buf, " + %g x R-2 P against the article", G->mbr_article);
    return buf;
}

int hl_gen_option(const char *cmd, int c, HlGenOpts *o, HlCkpts *ck, const char **tok) {
    long v;
    switch (c) {
    case HL_OPT_CKPT:
        if (ck->n == HL_MAX_MODELS)
            return hl_usage_err(cmd, "at most %d --checkpoint (an ensemble of %d models)",
                                HL_MAX_MODELS, HL_MAX_MODELS), 2;
        ck->path[ck->n++] = optarg;
        return 1;
    case HL_OPT_TOKENIZER: *tok = optarg; return 1;
    case HL_OPT_BEAM:
        if ((v = hl_parse_count(optarg)) < 1 || v > 64)
            return hl_usage_err(cmd, "--beam must be in [1, 64] (got '%s')", optarg), 2;
        o->beam = (int)v;
        return 1;
    case HL_OPT_MINLEN:
        if ((v = hl_parse_count(optarg)) < 0 || v > 10000)
            return hl_usage_err(cmd, "--min-len must be a count (got '%s')", optarg), 2;
        o->min_len = (int)v;
        return 1;
    case HL_OPT_MAXLEN:
        if ((v = hl_parse_count(optarg)) < 1 || v > 10000)
            return hl_usage_err(cmd, "--max-len must be a positive count (got '%s')", optarg), 2;
        o->max_len = (int)v;
        return 1;
    case HL_OPT_ALPHA:
        if (parse_float(optarg, &o->alpha) != 0 || o->alpha < 0)
            return hl_usage_err(cmd, "--alpha must be a number >= 0 (got '%s')", optarg), 2;
        return 1;
    case HL_OPT_LEXICON: o->lexicon = optarg; return 1;
    case HL_OPT_NOREPEAT:
        if ((v = hl_parse_count(optarg)) < 0 || v > 1000)
            return hl_usage_err(cmd, "--no-repeat-words must be a count (got '%s')", optarg), 2;
        o->no_repeat_words = (int)v;
        return 1;
    case HL_OPT_MBR:
        if ((v = hl_parse_count(optarg)) < 0 || v > HL_MAX_MBR)
            return hl_usage_err(cmd, "--mbr must be 0 to %d samples (got '%s')", HL_MAX_MBR, optarg), 2;
        o->mbr = (int)v;
        return 1;
    case HL_OPT_MBR_EPS:
        if (parse_float(optarg, &o->mbr_epsilon) != 0 || !(o->mbr_epsilon >= 0 && o->mbr_epsilon < 1))
            return hl_usage_err(cmd, "--mbr-epsilon must be in [0, 1) (got '%s')", optarg), 2;
        return 1;
    case HL_OPT_MBR_TEMP:
        if (parse_float(optarg, &o->mbr_temperature) != 0 ||
            !(o->mbr_temperature > 0 && o->mbr_temperature <= 100))
            return hl_usage_err(cmd, "--mbr-temperature must be in (0, 100] (got '%s')", optarg), 2;
        return 1;
    case HL_OPT_MBR_UTIL: {
        static const char *const names[] = {"mean", "r1", "r2", "rl"};
        int k = 0;
        while (k < 4 && strcmp(optarg, names[k])) k++;
        if (k == 4)
            return hl_usage_err(cmd, "--mbr-utility must be mean, r1, r2 or rl (got '%s')", optarg), 2;
        for (int i = 0; i < 3; i++) o->mbr_weights[i] = k == 0 ? 1.0 / 3 : (double)(i == k - 1);
        return 1;
    }
    case HL_OPT_MBR_ARTICLE:
        if (parse_double(optarg, &o->mbr_article) != 0 || !(o->mbr_article >= 0 && o->mbr_article <= 100))
            return hl_usage_err(cmd, "--mbr-article must be in [0, 100] (got '%s')", optarg), 2;
        return 1;
    case HL_OPT_MBR_CANDS: o->mbr_candidates = optarg; return 1;
    case HL_OPT_SEED:
        if ((v = hl_parse_count(optarg)) < 0)
            return hl_usage_err(cmd, "--seed must be a non-negative integer (got '%s')", optarg), 2;
        o->seed = (uint64_t)v;
        return 1;
    case HL_OPT_BLOCK: o->block_trigrams = 1; return 1;
    case HL_OPT_NOBLOCK: o->block_trigrams = 0; return 1;
    case HL_OPT_SRCLEN:
        if ((v = hl_parse_count(optarg)) < 3 || v > 100000)
            return hl_usage_err(cmd, "--src-len must be >= 3 (got '%s')", optarg), 2;
        o->src_len = (int)v;
        return 1;
    case HL_OPT_THREADS:
        if ((v = hl_parse_count(optarg)) < 1 || v > 1024)
            return hl_usage_err(cmd, "--threads must be a positive count (got '%s')", optarg), 2;
        o->threads = (int)v;
        return 1;
    }
    return 0;
}
