// lead.h: the first-sentence (lead) baseline of headline generation, and lowercasing as
// the published scores did.
//
// As published (Gusev's summarus evaluate.py, "lead1" / "lead1skip1"): the body's paragraphs
// are joined with spaces, cut into sentences, and the first sentence is the headline; for
// RIA the first sentence is the dateline ("москва, 1 дек — риа новости.") and is skipped
// when the body has more than one sentence. The sentence splitter approximates NLTK's Punkt
// (which evaluate.py used) on this text:
// - a sentence ends after a run of '.', '!', '?' and '…' (U+2026), taken together with the
//   closing quotes and brackets right after it (" ' ) ] » “ ”), when that is followed by
//   whitespace (here: ASCII space, tab, CR or LF) or the end of the text;
// - except a lone '.' (no other terminator, no closer) after a one-letter word: an ASCII or
//   Cyrillic (U+0400-U+04FF) letter at the start of the text or after that whitespace
//   ("а. с. пушкин", "1799 г. в"), which Punkt would usually keep together too;
// - "3.5" and the inner period of "т.е." never split (no whitespace after the period); a
//   U+00A0 after a period does not split either (it binds "ст.\u00a020.2"), while "т.е. x"
//   does split after "т.е." (the word before the period is "т.е", not one letter).
// The sentence keeps its terminators and closers; runs of that whitespace in it become one
// space, none at either end.
//
#ifndef CONFLUX_IO_NEWS_LEAD_H
#define CONFLUX_IO_NEWS_LEAD_H

#include <stddef.h>

// Lowercases n bytes of UTF-8 text in place (rouge_fold_case: ASCII, Latin-1/Extended-A,
// Greek, Cyrillic; invalid bytes and other scripts unchanged). Returns the new length, <= n
// (only U+0130 'İ' -> 'i' shrinks; Cyrillic keeps its byte length).
size_t headline_lowercase(char *s, size_t n);

// How the lead treats the start of the text: keep the first sentence, skip it (as RIA's
// published "lead1skip1" baseline: it is the dateline there), or skip a leading dateline
// (headline_dateline_len), whatever its sentences. SKIP skips only when the text has two
// sentences or more.
enum { HEADLINE_LEAD_KEEP = 0, HEADLINE_LEAD_SKIP = 1, HEADLINE_LEAD_AUTO = 2 };

// Writes the first sentence of text (paragraphs separated by '\n') into out (room for
// n + 1 bytes; NUL-terminated), after what skip says to leave out. *skipped (may be NULL)
// receives whether something was left out. Returns the length.
size_t headline_first_sentence(const char *text, size_t n, int skip, char *out, int *skipped);

// Where the text after the lead ends up: the offset just past the sentence that
// headline_first_sentence(text, n, HEADLINE_LEAD_AUTO, ...) returns (its dateline and the
// sentence itself are before it), or n when nothing follows that sentence. For lead
// pretraining (prepare --target lead): the rest of the article is the source, the lead
// the target.
size_t headline_lead_rest(const char *text, size_t n);

// The length of a news agency's dateline at the start of text (with the spaces after it),
// or 0. Any case; the dateline starts with PLACE (1-60 bytes, no digits, no '.') then
// ", " or ". ", DAY (1-2 digits) and a Russian month (name or abbreviation), then:
//   RIA      a dash and the agency (and author) up to a sentence's '.' (at most 80 bytes):
//            "москва, 1 дек — риа новости." "мехико, 30 ноя — риа новости, автор."
//            "москва, 1 дек- р-спорт."
//   TASS     '.': "МОСКВА, 1 декабря."
//   Interfax ". AGENCY - " (AGENCY one word of at most 30 bytes): "Москва. 30 апреля. INTERFAX.RU - "
// and text must follow. "Ровно сегодня, 25 января, юбилей ..." is not a dateline.
#define HEADLINE_DATELINE_MAX 240
size_t headline_dateline_len(const char *text, size_t n);

#endif
