// entity.h: HTML character references for the text code of io/: one table of the named
// ones the corpus extractor and the news readers decode, and the digits of numeric ones
// ("&#1103;", "&#x44F;").
//
// The two readers decode different sets of names and keep doing so (widening either set
// would change its output: the corpus, and with it the tokenizer; the news text of the
// headline pairs). Each looks a name up in its own set. The syntax around the name ('&',
// length limits, whether ';' may be missing) and what an unknown or invalid reference
// becomes are the caller's.
#ifndef CONFLUX_IO_ENTITY_H
#define CONFLUX_IO_ENTITY_H

#include <stddef.h>
#include <stdint.h>

// Sets of names, as bit flags. ENTITY_CORPUS: the 130 HTML 4 names corpus_extract decodes
// in HTML, XML and XHP. ENTITY_NEWS: the 35 names the news readers decode: 30 of those,
// &numero; and the upper-case &AMP; &LT; &GT; &QUOT;.
enum { ENTITY_CORPUS = 1, ENTITY_NEWS = 2 };

// Code point of the entity named name[0..n_bytes) (case-sensitive, without '&' and ';'),
// or 0 when no entity of that name is in one of the sets in `sets`.
uint32_t entity_lookup(const char *name, size_t n_bytes, unsigned sets);

// Reads the digits of a numeric reference at s[0..n_bytes): at most max_digits of them,
// decimal, or hexadecimal (either case) when hex is non-zero. Returns how many it read
// (0: none) and sets *cp to their value, or to 0x110000 when that is above U+10FFFF
// (however many digits there are).
size_t entity_read_number(const char *s, size_t n_bytes, int hex, size_t max_digits,
                          uint32_t *cp);

#endif
