// headline_pairs.h: (title, body) pairs from Debian's Russian texts (package descriptions,
// man pages, help pages), for training headline models on this machine's data
// (conflux-headline pairs).
#ifndef CONFLUX_IO_CORPUS_HEADLINE_PAIRS_H
#define CONFLUX_IO_CORPUS_HEADLINE_PAIRS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { HP_DEBTRANS = 0, HP_MAN, HP_HTML, HP_COUNT } HeadlinePairFormat;

// "debtrans", "man", "html"; parse returns 0 or -1.
const char *headline_pair_format_name(HeadlinePairFormat f);
int headline_pair_format_parse(const char *name, HeadlinePairFormat *out);

// Receives one pair (NUL-terminated, normalised UTF-8 on one line each; valid during the
// call). Returns 0, or non-zero to stop.
typedef int (*HeadlinePairFn)(void *ctx, const char *title, const char *body);

typedef struct {
    uint64_t files, docs, pairs, no_title, no_body, not_cyrillic;
} HeadlinePairStats;

// Extracts (title, body) pairs from the bytes of one file:
//   debtrans  each Description-ru: the short description is the title, the long one the body;
//   man       roff page: the text after " - " on the NAME (ИМЯ/НАЗВАНИЕ) line is the title,
//             the DESCRIPTION (ОПИСАНИЕ) section the body;
//   html      <title> is the title (a leading section number "5.4." is dropped), the
//             page's paragraphs except the one equal to the title the body.
// Titles must have 2 to 30 words, bodies at least min_body_chars characters, and both must
// be mostly Cyrillic (share of letters >= 0.5; body paragraphs below 0.3 are dropped).
// Returns the number of pairs emitted, or -1 with err (a corrupt input or emit stopped).
long headline_pairs_extract(HeadlinePairFormat fmt, const char *data, size_t n_bytes,
                            size_t min_body_chars, HeadlinePairStats *st, HeadlinePairFn emit,
                            void *ctx, char *err);

#endif
