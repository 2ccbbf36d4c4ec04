// bpe.h: byte-level BPE tokenizer (GPT-2 / RoBERTa scheme), trained by conflux.
//
// Saved and loaded as vocab.json (token string -> id) + merges.txt ("#version: 0.2"
// header, then one "left right" merge per line, highest priority first), readable by
// Hugging Face tokenizers. Token strings use the GPT-2 byte-to-unicode mapping (a byte
// 0x20 is "Ġ", etc.), so any byte sequence, invalid UTF-8 included, round-trips.
//
// Ids: the special tokens come first, [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then the
// 256 single-byte tokens, then one token per merge in merge order.
// Pre-tokenization follows GPT-2's pattern ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
// ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+) with Unicode letters and digits (Cyrillic included).
#ifndef CONFLUX_BPE_H
#define CONFLUX_BPE_H

#include <stddef.h>
#include <stdint.h>

enum { BPE_PAD = 0, BPE_UNK = 1, BPE_CLS = 2, BPE_SEP = 3, BPE_MASK = 4, BPE_N_SPECIAL = 5 };

typedef struct Bpe Bpe;

// Trains on the concatenation of the given text files (one document per line; every
// byte counts). vocab_size includes the 5 special and 256 byte tokens (>= 261).
// progress: when non-zero, prints progress to stderr. Returns 0, or -1 with err filled.
int bpe_train(Bpe **out, const char *const *paths, int n_paths, int vocab_size, int progress,
              char *err);
// Writes DIR/vocab.json and DIR/merges.txt (creates DIR). -1 with err on failure.
int bpe_save(const Bpe *bpe, const char *dir, char *err);
// Loads DIR/vocab.json + DIR/merges.txt; malformed files give -1 with err naming the file
// and line/offset.
int bpe_load(Bpe **out, const char *dir, char *err);
void bpe_free(Bpe *bpe);

int bpe_vocab_size(const Bpe *bpe);
// The vocab.json string of an id (byte-level form, e.g. "Ġпривет"), NULL if out of range.
const char *bpe_token_str(const Bpe *bpe, int id);
// Id of a vocab.json string, or -1.
int bpe_token_id(const Bpe *bpe, const char *tok);
// A stable fingerprint of the vocabulary and merges (hex string, for shard headers).
const char *bpe_fingerprint(const Bpe *bpe);

// Encodes len bytes of text. The special-token strings "[PAD]", "[UNK]", "[CLS]",
// "[SEP]", "[MASK]" in the text map to their ids; all other text is byte-level BPE.
// Writes at most cap ids; *n_out receives the number needed (may exceed cap: then the
// output is truncated and the function returns 1). Returns 0 on success.
int bpe_encode(const Bpe *bpe, const char *text, size_t len, int32_t *ids, size_t cap,
               size_t *n_out);
// Decodes ids back to bytes (special tokens render as their strings). Writes at most cap
// bytes (no terminator); returns the number of bytes the full decoding needs.
size_t bpe_decode(const Bpe *bpe, const int32_t *ids, size_t n, char *out, size_t cap);

// The token automaton of well-formed UTF-8 over a model vocabulary of V ids (V may exceed
// bpe_vocab_size: the extra ids are never allowed), for a decoder's search (BeamConfig.fsm):
// fsm[s * V + id] (s < UTF8_FSM_STATES, io/text/utf8.h) is the utf8_fsm_step state after
// all of token id's bytes in state s, or 255 where they cannot follow. Special tokens
// decode to their ASCII strings, so they (EOS too) only follow a complete character.
void bpe_utf8_automaton(const Bpe *bpe, int V, uint8_t *fsm);

#endif
