// lexicon.h: decoding headlines in known words. A small model spelling with byte-level BPE
// pieces garbles words ("Гаканканкан", "аудиальным"); this rule lets a hypothesis form only
// words of a lexicon (the words of a text corpus, plus the words of the article being
// summarised, so that names it holds can be copied) and, optionally, not repeat a word.
//
// Words are maximal runs of letters (Latin, Latin-1 and Latin Extended A/B, Greek, Cyrillic:
// lexicon_is_letter), compared case-folded (rouge_fold_case); digits, punctuation, spaces
// and every other character separate words and are never constrained. A hypothesis' text is
// its tokens' bytes; a character split between two tokens is judged when it is whole.
//
// The rule as a BeamConfig mask (models/beam.h), for every live hypothesis at every step:
//  - a token may not add a letter that no lexicon word continues with (the word so far must
//    stay a prefix of a lexicon word), nor end a word (a separator, EOS, or the token at
//    max_len) that is not a whole lexicon word;
//  - with no_repeat_min > 0, a word of at least that many letters may not end a second
//    time in the same hypothesis (case-folded: "ЦСКА" then "цска" repeats).
//
// Memory: the lexicon is a trie of code points held in a hash table; an article's words are
// added with an epoch and forgotten when the next article begins (their nodes stay, marked
// stale: memory grows with the distinct words of all articles seen, about 100 nodes each).
// A rule keeps, besides its tables of the V tokens, the verdicts on letter-led tokens after
// the last 64 words in progress it met (64 x V bytes), forgotten when the article changes.
#ifndef CONFLUX_HEADLINE_LEXICON_H
#define CONFLUX_HEADLINE_LEXICON_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer/bpe.h"

typedef struct Lexicon Lexicon;

// Reads the words of a UTF-8 text file (ill-formed bytes separate words). 0, or -1 with err
// naming the file (cannot be read, or holds no word).
int lexicon_load(Lexicon **out, const char *path, char *err);
// An empty lexicon (only article words will be known).
Lexicon *lexicon_new(void);
void lexicon_free(Lexicon *lex);
// Adds the words of n bytes of text to the permanent lexicon.
void lexicon_add_text(Lexicon *lex, const char *text, size_t n);
// Distinct permanent words.
size_t lexicon_n_words(const Lexicon *lex);
// Whether the case-folded word w (n bytes, letters only) is a permanent or current-article word.
int lexicon_has_word(const Lexicon *lex, const char *w, size_t n);

int lexicon_is_letter(uint32_t cp);

// The rule over a tokenizer's V tokens.
typedef struct LexRule LexRule;

// lex (kept alive, written to by lex_rule_set_article), bpe (its token bytes are copied),
// no_repeat_min as above (0: words may repeat). CHECKs V >= 1 (setup).
LexRule *lex_rule_create(Lexicon *lex, const Bpe *bpe, int V, int no_repeat_min);
void lex_rule_free(LexRule *r);
// The article being summarised: its words are allowed until the next call.
void lex_rule_set_article(LexRule *r, const char *text, size_t n);
// BeamConfig.mask (ctx = the LexRule): sets lp[w] = -INFINITY for every token w the rule
// forbids after the t tokens of hist; eos is the end token; last: w would be the final
// token (max_len). Threads of different tid (models/par.h) may call it at once; each
// has its own scratch, made on its first call. Not during lex_rule_set_article.
void lex_rule_mask(void *ctx, int tid, const int32_t *hist, int t, int last, int32_t eos,
                   double *lp);

#endif
