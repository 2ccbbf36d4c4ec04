// corpus.h: turns Russian text found in Debian packages into a clean pretraining corpus.
//
// Two stages, both pure (no file I/O; the tool conflux-corpus reads files, decompresses
// .gz and writes the output):
//
// 1. Extraction: corpus_extract() turns the bytes of one input file of a given format
//    into documents. A document is a sequence of paragraphs separated by '\n'; the text
//    is still raw (may hold invalid UTF-8, runs of spaces). Formats:
//      text      plain text; blank lines separate paragraphs; one document per file
//      fortune   fortune(6) files; entries separated by lines "%" (or "%%"); one
//                document (one paragraph) per entry
//      man       roff man pages (man(7) macros): requests, comments, font/size escapes,
//                macro definitions, conditionals, .EX/.EE examples and tbl format lines
//                are dropped; \(xx, \[xx], \[uXXXX], \*(xx are mapped to characters;
//                .SH/.SS headings, .TP/.IP tags and .nf lines become paragraphs.
//                mdoc(7) macros are not interpreted (their lines are dropped).
//      html      HTML: tags stripped, entities decoded (&amp; &#1234; &#x4E0; and the
//                named ones common in documentation), comments dropped; the contents of
//                head/script/style/pre/nav/header/footer/aside and of elements whose
//                class names navigation or code (navheader, docnav, toc, sphinxsidebar,
//                code, ...) are dropped; block elements end paragraphs.
//      xml       Mallard/DocBook-like XML: as html, plus info/screen/programlisting/
//                synopsis/comment/indexterm/media contents are dropped; keys inside
//                keyseq/keycombo are joined with "+" (Ctrl+P).
//      xhp       LibreOffice XHP help: as xml, plus meta/bookmark/comment/image/
//                caseinline/case contents are dropped (defaultinline/default are kept).
//      debtrans  Debian Translation-xx index: one document per Description-xx field; the
//                first line (short description) is a paragraph of its own, continuation
//                lines " ." break paragraphs, list items ("* x", "- x", "o x") become
//                paragraphs without their bullets.
//      mo        GNU gettext .mo catalogues (either byte order): one document per
//                translated string (the first plural form; '\n' breaks paragraphs); the
//                header entry and messages with placeholders (printf "%s" "%2$d", Qt
//                "%1", "%PRODUCTNAME", "$(ARG)", "${x}"), whose text is not whole, are
//                skipped.
//      news      one news article as conflux-corpus passes it (it streams RIA JSON
//                lines, Lenta.ru and ODS CSV files, plain or gzip, through io/news/news.h,
//                so the HTML of RIA bodies is already text): the title, '\n', then the
//                body's paragraphs separated by '\n'; one document, the title its first
//                paragraph
//
// 2. Filtering: a CorpusFilter takes extracted documents one at a time and emits output
//    lines (one document per line, no newline inside), in this order:
//      a. each paragraph is normalised (corpus_normalize: invalid UTF-8 dropped and
//         counted, controls dropped, Unicode spaces -> ' ', whitespace collapsed);
//      b. paragraphs whose letters are less than min_cyrillic_para Cyrillic (code,
//         English, bare numbers) are dropped;
//      c. documents whose remaining text was seen before are dropped (exact dedup by a
//         64-bit hash); this hash also decides the train/validation split, so the split
//         depends on the document's text only, never on file order;
//      d. paragraphs seen before in any earlier document (boilerplate: translator
//         credits, navigation, repeated notes) are dropped;
//      e. documents shorter than min_chars characters, or whose letters are less than
//         min_cyrillic_doc Cyrillic, are dropped;
//      f. documents longer than max_chars are cut at paragraph boundaries into several
//         lines (all on the same side of the split); paragraphs are joined by a space.
#ifndef CONFLUX_CORPUS_H
#define CONFLUX_CORPUS_H

#include <stddef.h>
#include <stdint.h>

typedef enum CorpusFormat {
    CORPUS_FMT_TEXT = 0,
    CORPUS_FMT_FORTUNE,
    CORPUS_FMT_MAN,
    CORPUS_FMT_HTML,
    CORPUS_FMT_XML,
    CORPUS_FMT_XHP,
    CORPUS_FMT_DEBTRANS,
    CORPUS_FMT_MO,
    CORPUS_FMT_NEWS,
    CORPUS_FMT_COUNT
} CorpusFormat;

// Name of a format ("text", "fortune", ...); NULL if out of range.
const char *corpus_format_name(CorpusFormat fmt);
// Parses a format name. Returns 0, or -1 if the name is unknown.
int corpus_format_parse(const char *name, CorpusFormat *out);
// Whether a file met while walking a directory belongs to the format, judged by its
// name (a trailing ".gz" is ignored): html takes .html/.htm/.xhtml, xml .xml/.page/
// .docbook, xhp .xhp, mo .mo, fortune everything but .dat, the others everything.
int corpus_format_accepts(CorpusFormat fmt, const char *filename);

// A growable list of documents in one text arena. Document i is text[off[i]..+len[i]),
// paragraphs separated by '\n'. Owns its memory.
typedef struct CorpusDocs {
    char *text;
    size_t text_bytes, text_cap;
    size_t *off, *len;
    size_t n_docs, docs_cap;
} CorpusDocs;

void corpus_docs_init(CorpusDocs *d);
void corpus_docs_clear(CorpusDocs *d);  // keeps the memory
void corpus_docs_free(CorpusDocs *d);

// Extracts documents from the n_bytes of one file (already decompressed) and appends
// them to out (documents that come out empty are not appended). Returns 0, or -1 with err (CX_ERRLEN bytes)
// filled when the bytes are not of the format (e.g. a corrupt .mo); then nothing is
// appended. Formats other than mo accept any bytes.
int corpus_extract(CorpusFormat fmt, const char *data, size_t n_bytes, CorpusDocs *out,
                   char *err);

// Normalises n_bytes of text into out (room for n_bytes bytes; the result is never
// longer): invalid UTF-8 (bad lead or continuation bytes, overlong forms, surrogates,
// code points above U+10FFFF, truncated sequences) is dropped, each maximal invalid
// subpart counted once in *n_invalid (may be NULL); C0/C1 controls, soft hyphens,
// zero-width characters, BOMs, U+FFFD and private-use characters are dropped; tabs,
// newlines, no-break and other Unicode spaces become spaces; runs of spaces collapse to
// one, none at either end; Cyrillic letters written decomposed (и/е + combining breve/
// diaeresis) are composed into й/ё. Returns the number of bytes written (valid UTF-8).
size_t corpus_normalize(const char *in, size_t n_bytes, char *out, uint64_t *n_invalid);

// Counts code points, letters (Latin, Greek, Cyrillic, other alphabets and CJK) and
// Cyrillic letters (U+0400..U+052F) in valid UTF-8. Any output pointer may be NULL.
void corpus_count(const char *s, size_t n_bytes, size_t *n_chars, size_t *n_letters,
                  size_t *n_cyrillic);

// 64-bit FNV-1a of the bytes, never 0 (0 maps to 1).
uint64_t corpus_hash64(const char *s, size_t n_bytes);
// The split decision for a document hash: 1 (validation) for about valid_percent of all
// hashes (0..100), else 0 (train). Pure function of its arguments.
int corpus_split_is_valid(uint64_t doc_hash, double valid_percent);

typedef struct CorpusOptions {
    size_t min_chars;         // documents shorter than this (code points) are dropped
    size_t max_chars;         // longer documents are cut into lines of about this size
    double min_cyrillic_doc;  // share of letters that must be Cyrillic, per document
    double min_cyrillic_para; // same, per paragraph (paragraphs without letters go)
    double valid_percent;     // share of documents in the validation split, 0..100
    int para_dedup;           // drop paragraphs seen in earlier documents
} CorpusOptions;

// min_chars 20, max_chars 20000, min_cyrillic_doc 0.5, min_cyrillic_para 0.3,
// valid_percent 3, para_dedup 1.
void corpus_options_default(CorpusOptions *opt);

// Counters, per source or in total. Characters are code points.
typedef struct CorpusStats {
    uint64_t files, input_bytes;
    uint64_t docs_in;         // documents extracted
    uint64_t docs_dup;        // dropped as exact duplicates
    uint64_t docs_short;      // dropped as shorter than min_chars (empty ones included)
    uint64_t docs_noncyr;     // dropped as not Cyrillic enough
    uint64_t docs_kept;
    uint64_t paras_in, paras_noncyr, paras_dup;
    uint64_t invalid_utf8;    // invalid sequences dropped
    uint64_t lines[2], bytes[2], chars[2], cyrillic[2];  // [0] train, [1] validation
} CorpusStats;

void corpus_stats_add(CorpusStats *dst, const CorpusStats *src);

// Receives one output line (n_bytes of valid UTF-8, no newline, not terminated) and its
// split (0 train, 1 validation). Returns 0, or non-zero to stop (corpus_filter_add then
// returns -1).
typedef int (*CorpusEmitFn)(void *ctx, const char *line, size_t n_bytes, int is_valid);

typedef struct CorpusFilter CorpusFilter;

// A filter with its own dedup state; the options are copied. Allocation failure is
// fatal (CHECK).
CorpusFilter *corpus_filter_new(const CorpusOptions *opt);
void corpus_filter_free(CorpusFilter *f);
// Replaces the options (e.g. a per-source min_chars) and keeps the dedup state.
void corpus_filter_set_options(CorpusFilter *f, const CorpusOptions *opt);
// Runs one extracted document (paragraphs separated by '\n') through steps a-f, updating
// st (docs_in and later counters; not files/input_bytes) and calling emit for each
// output line. Returns 0, or -1 when emit asked to stop.
int corpus_filter_add(CorpusFilter *f, const char *doc, size_t n_bytes, CorpusStats *st,
                      CorpusEmitFn emit, void *ctx);

#endif
