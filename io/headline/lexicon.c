// lexicon.c: decoding headlines in known words (see lexicon.h).
#include "io/headline/lexicon.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/eval/rouge.h"
#include "io/text/utf8.h"
#include "models/common.h"
#include "models/par.h"

enum { F_NODE = 1, F_TERM = 2 };  // a permanent node; a permanent word's end
#define ROOT 0
#define LEX_MEMO 64  // word states whose tokens' verdicts LexRule keeps

struct Lexicon {
    // edges: key (parent << 21 | code point) + 1 -> child; open addressing, 0 = empty
    uint64_t *keys;
    int32_t *child;
    size_t cap, n_edges;
    // nodes: permanent flags; the article epoch in which a node / word end was last added
    uint8_t *flags;
    int32_t *ep_node, *ep_term;
    size_t n_nodes, node_cap;
    int32_t epoch;  // the current article's (0: none)
    size_t n_words;
};

int lexicon_is_letter(uint32_t cp) {
    if (cp < 128) return (cp | 32) >= 'a' && (cp | 32) <= 'z';
    if (cp >= 0xC0 && cp <= 0x24F) return cp != 0xD7 && cp != 0xF7;      // Latin-1, Extended A/B
    if (cp >= 0x370 && cp <= 0x3FF) return cp != 0x37E && cp != 0x387;    // Greek
    return cp >= 0x400 && cp <= 0x52F && !(cp >= 0x482 && cp <= 0x489);   // Cyrillic
}

static uint64_t mix(uint64_t x) {  // splitmix64's finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t edge_key(int32_t node, uint32_t cp) { return (((uint64_t)node << 21) | cp) + 1; }

// The slot of key in a table of cap (a power of two) keys: where it is, or the empty slot
// where it would go.
static size_t slot_of(const uint64_t *keys, size_t cap, uint64_t key) {
    size_t i = mix(key) & (cap - 1);
    while (keys[i] && keys[i] != key) i = (i + 1) & (cap - 1);
    return i;
}

static int32_t edge_get(const Lexicon *l, int32_t node, uint32_t cp) {
    const uint64_t key = edge_key(node, cp);
    const size_t i = slot_of(l->keys, l->cap, key);
    return l->keys[i] == key ? l->child[i] : -1;
}

static int32_t node_new(Lexicon *l) {
    if (l->n_nodes == l->node_cap) {
        l->node_cap *= 2;
        l->flags = realloc(l->flags, l->node_cap);
        l->ep_node = realloc(l->ep_node, l->node_cap * sizeof(int32_t));
        l->ep_term = realloc(l->ep_term, l->node_cap * sizeof(int32_t));
        CHECK(l->flags && l->ep_node && l->ep_term, "out of memory (lexicon of %zu nodes)", l->n_nodes);
    }
    l->flags[l->n_nodes] = 0;
    l->ep_node[l->n_nodes] = l->ep_term[l->n_nodes] = 0;
    return (int32_t)l->n_nodes++;
}

static void edges_grow(Lexicon *l) {
    uint64_t *ok = l->keys;
    int32_t *oc = l->child;
    size_t ocap = l->cap;
    l->cap = ocap ? 2 * ocap : 1 << 16;
    l->keys = cx_calloc(l->cap, sizeof *l->keys);
    l->child = cx_calloc(l->cap, sizeof *l->child);
    for (size_t j = 0; j < ocap; j++) {
        if (!ok[j]) continue;
        const size_t i = slot_of(l->keys, l->cap, ok[j]);
        l->keys[i] = ok[j];
        l->child[i] = oc[j];
    }
    free(ok);
    free(oc);
}

// The child of node by the (folded) letter cp, created if missing.
static int32_t edge_add(Lexicon *l, int32_t node, uint32_t cp) {
    if (2 * (l->n_edges + 1) > l->cap) edges_grow(l);
    const uint64_t key = edge_key(node, cp);
    const size_t i = slot_of(l->keys, l->cap, key);
    if (l->keys[i] == key) return l->child[i];
    l->keys[i] = key;
    l->child[i] = node_new(l);
    l->n_edges++;
    return l->child[i];
}

Lexicon *lexicon_new(void) {
    Lexicon *l = cx_calloc(1, sizeof *l);
    l->node_cap = 1024;
    l->flags = cx_calloc(l->node_cap, 1);
    l->ep_node = cx_calloc(l->node_cap, sizeof(int32_t));
    l->ep_term = cx_calloc(l->node_cap, sizeof(int32_t));
    edges_grow(l);
    node_new(l);  // the root
    l->flags[ROOT] = F_NODE;
    return l;
}

void lexicon_free(Lexicon *l) {
    if (!l) return;
    free(l->keys);
    free(l->child);
    free(l->flags);
    free(l->ep_node);
    free(l->ep_term);
    free(l);
}

// Adds the words of text: permanently (epoch 0) or for the current article.
static void add_words(Lexicon *l, const char *s, size_t n, int article) {
    int32_t node = ROOT;
    for (size_t i = 0; i <= n;) {
        uint32_t cp = 0;
        size_t r = i < n ? utf8_decode(s + i, n - i, &cp) : 0;
        if (i < n && r > 0 && lexicon_is_letter(cp)) {
            node = edge_add(l, node, rouge_fold_case(cp));
            if (article) l->ep_node[node] = l->epoch;
            else l->flags[node] |= F_NODE;
        } else if (node != ROOT) {
            if (article) l->ep_term[node] = l->epoch;
            else {
                l->n_words += !(l->flags[node] & F_TERM);
                l->flags[node] |= F_TERM;
            }
            node = ROOT;
        }
        i += r > 0 ? r : 1;
    }
}

void lexicon_add_text(Lexicon *l, const char *text, size_t n) { add_words(l, text, n, 0); }

size_t lexicon_n_words(const Lexicon *l) { return l->n_words; }

static int node_alive(const Lexicon *l, int32_t v) {
    return (l->flags[v] & F_NODE) || (l->epoch && l->ep_node[v] == l->epoch);
}

static int node_term(const Lexicon *l, int32_t v) {
    return (l->flags[v] & F_TERM) || (l->epoch && l->ep_term[v] == l->epoch);
}

// The live child of node by (unfolded) letter cp, or -1.
static int32_t step_folded(const Lexicon *l, int32_t node, uint32_t folded) {
    int32_t c = edge_get(l, node, folded);
    return c >= 0 && node_alive(l, c) ? c : -1;
}

static int32_t step(const Lexicon *l, int32_t node, uint32_t cp) {
    return step_folded(l, node, rouge_fold_case(cp));
}

int lexicon_has_word(const Lexicon *l, const char *w, size_t n) {
    int32_t node = ROOT;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t r = utf8_decode(w + i, n - i, &cp);
        if (r == 0 || !lexicon_is_letter(cp) || (node = step(l, node, cp)) < 0) return 0;
        i += r;
    }
    return node != ROOT && node_term(l, node);
}

int lexicon_load(Lexicon **out, const char *path, char *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cx_err(err, "cannot read lexicon %s: %s", path, strerror(errno));
    Lexicon *l = lexicon_new();
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) add_words(l, line, (size_t)got, 0);
    int bad = ferror(f);
    free(line);
    fclose(f);
    if (bad) {
        lexicon_free(l);
        return cx_err(err, "cannot read lexicon %s: read error", path);
    }
    if (l->n_words == 0) {
        lexicon_free(l);
        return cx_err(err, "lexicon %s holds no word (letters of a UTF-8 text)", path);
    }
    *out = l;
    return 0;
}

// ---------------------------------------------------------------------------------------
// the decoding rule

// What lex_rule_mask writes: one per pool thread (models/par.h), as beam_sample masks
// samples on several threads at once.
typedef struct {
    int32_t *class_child;  // (n_class) the node each first letter leads to, or -1
    // without no_repeat_min, whether a letter-led token may follow a word in progress
    // depends only on the word's node, last and the article: the verdicts of the last
    // LEX_MEMO (node, last) pairs met (the samples of minimum Bayes risk share many)
    int32_t memo_node[LEX_MEMO];  // -1: free
    uint8_t memo_last[LEX_MEMO];
    int memo_next;                // the entry taken next (round robin)
    uint8_t *memo;                // (LEX_MEMO, V): 0 not known yet, 1 allowed, 2 forbidden
    char *text;                   // a hypothesis' text and the next token's bytes
    size_t text_cap;
    int32_t *done;  // the ends (nodes) of the hypothesis' words of >= no_repeat_min letters
    size_t done_cap;
} LexScratch;

struct LexRule {
    Lexicon *lex;
    int V, no_repeat_min;
    uint32_t *off;    // (V + 1) token t's bytes are bytes[off[t], off[t+1])
    size_t longest;   // bytes of the longest token
    // what reading a token does from a word boundary depends only on the article, so it is
    // computed once per article for the tokens that start with a separator (" Москве",
    // ", и": they end the word in progress first) and for those that start with a letter
    // (read where no word is in progress: after "«", or first)
    uint8_t *lead_sep;     // (V) 1: the token's first character is whole and not a letter
    uint8_t *inner_end;    // (V) 1: a letter of the token is followed by a separator in it
    int32_t *root_node;    // (V) the word state after the token read at a word boundary,
    int32_t *root_letters; //     -1 where the rule forbids it; its letters
    // tokens that start with a whole letter: the first step of their walk depends only on
    // the word in progress and that letter, so it is taken once per mask call and letter
    // (most tokens fail there), not once per token
    int32_t *first_class;  // (V) the index of the token's first letter (case-folded) in
                           //     class_cp, or -1
    uint32_t *class_cp;    // (n_class) the case-folded letters
    int n_class;
    LexScratch *scratch[CX_PAR_MAX_THREADS];  // lex_rule_mask's per thread (tid), made on
                                              // that thread's first call
    char *bytes;
};

static void cache_tokens(LexRule *r);

static void memo_forget(LexScratch *sc) {
    for (int e = 0; e < LEX_MEMO; e++) sc->memo_node[e] = -1;
}

// Thread tid's scratch, made on its first call (only tid itself touches its slot).
static LexScratch *scratch_of(LexRule *r, int tid) {
    CHECK(tid >= 0 && tid < CX_PAR_MAX_THREADS, "lexicon rule: thread %d", tid);
    if (!r->scratch[tid]) {
        LexScratch *sc = cx_calloc(1, sizeof *sc);
        sc->class_child = cx_calloc((size_t)r->V, sizeof(int32_t));
        sc->memo = cx_calloc((size_t)LEX_MEMO * r->V, 1);
        memo_forget(sc);
        r->scratch[tid] = sc;
    }
    return r->scratch[tid];
}

LexRule *lex_rule_create(Lexicon *lex, const Bpe *bpe, int V, int no_repeat_min) {
    CHECK(V >= 1 && no_repeat_min >= 0, "lexicon rule over %d tokens", V);
    LexRule *r = cx_calloc(1, sizeof *r);
    r->lex = lex;
    r->V = V;
    r->no_repeat_min = no_repeat_min;
    r->off = cx_calloc((size_t)V + 1, sizeof *r->off);
    // each token's bytes (tokens past the tokenizer's vocabulary have none)
    const int nb = bpe_vocab_size(bpe) < V ? bpe_vocab_size(bpe) : V;
    for (int t = 0; t < V; t++) {
        const size_t k = t < nb ? bpe_decode(bpe, &(int32_t){t}, 1, NULL, 0) : 0;
        r->off[t + 1] = r->off[t] + (uint32_t)k;
        if (k > r->longest) r->longest = k;
    }
    r->bytes = cx_calloc((size_t)r->off[V] + 1, 1);
    for (int t = 0; t < nb; t++)
        bpe_decode(bpe, &(int32_t){t}, 1, r->bytes + r->off[t], r->off[t + 1] - r->off[t]);
    r->lead_sep = cx_calloc((size_t)V, 1);
    r->inner_end = cx_calloc((size_t)V, 1);
    r->root_node = cx_calloc((size_t)V, sizeof(int32_t));
    r->root_letters = cx_calloc((size_t)V, sizeof(int32_t));
    r->first_class = cx_calloc((size_t)V, sizeof(int32_t));
    r->class_cp = cx_calloc((size_t)V, sizeof(uint32_t));
    for (int t = 0; t < V; t++) {
        const char *b = r->bytes + r->off[t];
        const size_t k = r->off[t + 1] - r->off[t];
        int seen_letter = 0;
        r->first_class[t] = -1;
        for (size_t i = 0; i < k;) {
            uint32_t cp;
            size_t c = utf8_decode(b + i, k - i, &cp);
            if (c == 0) break;  // an incomplete or ill-formed character: read dynamically
            const int letter = lexicon_is_letter(cp);
            if (i == 0) r->lead_sep[t] = !letter;
            if (i == 0 && letter) {  // its class: the letters seen so far are few (< 1,000)
                const uint32_t f = rouge_fold_case(cp);
                int j = 0;
                while (j < r->n_class && r->class_cp[j] != f) j++;
                if (j == r->n_class) r->class_cp[r->n_class++] = f;
                r->first_class[t] = j;
            }
            if (letter) seen_letter = 1;
            else if (seen_letter) r->inner_end[t] = 1;
            i += c;
        }
    }
    cache_tokens(r);
    return r;
}

void lex_rule_free(LexRule *r) {
    if (!r) return;
    free(r->off);
    free(r->bytes);
    for (int i = 0; i < CX_PAR_MAX_THREADS; i++) {
        LexScratch *sc = r->scratch[i];
        if (!sc) continue;
        free(sc->class_child);
        free(sc->memo);
        free(sc->text);
        free(sc->done);
        free(sc);
    }
    free(r->lead_sep);
    free(r->inner_end);
    free(r->root_node);
    free(r->root_letters);
    free(r->first_class);
    free(r->class_cp);
    free(r);
}

void lex_rule_set_article(LexRule *r, const char *text, size_t n) {
    for (int i = 0; i < CX_PAR_MAX_THREADS; i++)  // the words change
        if (r->scratch[i]) memo_forget(r->scratch[i]);
    r->lex->epoch++;
    add_words(r->lex, text, n, 1);
    cache_tokens(r);
}

// The state of a text being read: the node of the word in progress (ROOT: none) and its
// letters.
typedef struct {
    int32_t node;
    int letters;
} Walk;

static int repeated(const LexScratch *sc, size_t n_done, int32_t node) {
    for (size_t i = 0; i < n_done; i++)
        if (sc->done[i] == node) return 1;
    return 0;
}

// Whether s[0, n) (n >= 1) is the start of a well-formed character that is not complete.
static int cut_off(const char *s, size_t n) {
    int st = 0;
    for (size_t i = 0; i < n; i++)
        if ((st = utf8_fsm_step(st, (unsigned char)s[i])) <= 0) return 0;
    return 1;
}

// Reads s[0, n) from w; -1 where the rule forbids it. Returns the bytes read: an incomplete
// character at the end is left for later. The ends of the words of >= no_repeat_min letters
// read go to sc->done (*n_done of them).
static long walk(const LexRule *r, LexScratch *sc, Walk *w, const char *s, size_t n, size_t *n_done) {
    const Lexicon *l = r->lex;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k == 0) {
            if (cut_off(s + i, n - i)) break;  // a character whose end is still to come
            k = utf8_invalid_len(s + i, n - i);
            cp = 0xFFFD;  // ill-formed: a separator
        }
        if (lexicon_is_letter(cp)) {
            if ((w->node = step(l, w->node, cp)) < 0) return -1;
            w->letters++;
        } else if (w->node != ROOT) {
            if (!node_term(l, w->node)) return -1;
            if (r->no_repeat_min && w->letters >= r->no_repeat_min) {
                if (repeated(sc, *n_done, w->node)) return -1;
                if (*n_done == sc->done_cap) {
                    sc->done_cap = sc->done_cap ? 2 * sc->done_cap : 16;
                    sc->done = realloc(sc->done, sc->done_cap * sizeof *sc->done);
                    CHECK(sc->done, "out of memory");
                }
                sc->done[(*n_done)++] = w->node;
            }
            w->node = ROOT;
            w->letters = 0;
        }
        i += k;
    }
    return (long)i;
}

// Whether the word in progress may end here (a whole lexicon word, not a repeat).
static int may_end(const LexRule *r, const LexScratch *sc, const Walk *w, size_t n_done) {
    if (w->node == ROOT) return 1;
    if (!node_term(r->lex, w->node)) return 0;
    return !(r->no_repeat_min && w->letters >= r->no_repeat_min && repeated(sc, n_done, w->node));
}

// The word state after each token that starts with a whole character, read at a word
// boundary, for the current article's words.
static void cache_tokens(LexRule *r) {
    LexScratch *sc = scratch_of(r, 0);
    for (int v = 0; v < r->V; v++) {
        if (!r->lead_sep[v] && r->first_class[v] < 0) continue;
        Walk w = {ROOT, 0};
        size_t nd = 0;
        const long got = walk(r, sc, &w, r->bytes + r->off[v], r->off[v + 1] - r->off[v], &nd);
        r->root_node[v] = got < 0 ? -1 : w.node;
        r->root_letters[v] = w.letters;
    }
}

void lex_rule_mask(void *ctx, int tid, const int32_t *hist, int t, int last, int32_t eos, double *lp) {
    LexRule *r = ctx;
    LexScratch *sc = scratch_of(r, tid);
    const int V = r->V;
    // the hypothesis' text (room for one more token after it), read up to its incomplete
    // last character
    const size_t need = ((size_t)t + 1) * r->longest + 1;
    if (need > sc->text_cap) {
        sc->text_cap = 2 * need;
        sc->text = realloc(sc->text, sc->text_cap);
        CHECK(sc->text, "out of memory");
    }
    size_t n = 0;
    for (int i = 0; i < t; i++) {
        const size_t k = r->off[hist[i] + 1] - r->off[hist[i]];
        memcpy(sc->text + n, r->bytes + r->off[hist[i]], k);
        n += k;
    }
    Walk w0 = {ROOT, 0};
    size_t n_done = 0;
    long used = walk(r, sc, &w0, sc->text, n, &n_done);
    if (used < 0) {  // an earlier step broke the rule (not through this mask): nothing continues
        for (int v = 0; v < V; v++) lp[v] = -INFINITY;
        return;
    }
    const size_t rest = n - (size_t)used;  // bytes of an incomplete character
    const int can_end = may_end(r, sc, &w0, n_done);
    if (!can_end) lp[eos] = -INFINITY;
    char *buf = sc->text + used;
    if (rest == 0)  // the node each first letter leads to from the word in progress
        for (int j = 0; j < r->n_class; j++)
            sc->class_child[j] = step_folded(r->lex, w0.node, r->class_cp[j]);
    uint8_t *verdict = NULL;  // the memo's verdicts for this word in progress
    if (rest == 0 && w0.node != ROOT && !r->no_repeat_min) {
        int e = 0;
        while (e < LEX_MEMO && !(sc->memo_node[e] == w0.node && sc->memo_last[e] == last)) e++;
        if (e == LEX_MEMO) {
            e = sc->memo_next;
            sc->memo_next = (e + 1) % LEX_MEMO;
            sc->memo_node[e] = w0.node;
            sc->memo_last[e] = (uint8_t)last;
            memset(sc->memo + (size_t)e * V, 0, (size_t)V);
        }
        verdict = sc->memo + (size_t)e * V;
    }
    for (int v = 0; v < V; v++) {
        if (lp[v] == -INFINITY || v == eos) continue;
        // a letter-led token whose first letter no word continues with: walk's first step
        if (rest == 0 && r->first_class[v] >= 0 && sc->class_child[r->first_class[v]] < 0) {
            lp[v] = -INFINITY;
            continue;
        }
        // a separator-led token ends the word in progress, then reads as from a boundary, and
        // a letter-led one reads so where no word is in progress (unless words it ends must
        // be checked against this hypothesis' words)
        if (rest == 0 && (r->lead_sep[v] || (w0.node == ROOT && r->first_class[v] >= 0)) &&
            !(r->no_repeat_min && (r->inner_end[v] || last))) {
            if (!can_end || r->root_node[v] < 0) {
                lp[v] = -INFINITY;
            } else if (last) {
                const Walk w = {r->root_node[v], r->root_letters[v]};
                if (!may_end(r, sc, &w, n_done)) lp[v] = -INFINITY;
            }
            continue;
        }
        uint8_t *known = verdict && r->first_class[v] >= 0 ? verdict + v : NULL;
        if (known && *known) {
            if (*known == 2) lp[v] = -INFINITY;
            continue;
        }
        const size_t k = r->off[v + 1] - r->off[v];
        const char *s = r->bytes + r->off[v];
        Walk w = w0;
        size_t nd = n_done;  // the words this token ends count for the ones after them
        long got;
        if (rest == 0) {
            got = walk(r, sc, &w, s, k, &nd);
        } else {
            memcpy(buf + rest, s, k);
            got = walk(r, sc, &w, buf, rest + k, &nd);
        }
        const int forbid = got < 0 || (last && !may_end(r, sc, &w, nd));
        if (forbid) lp[v] = -INFINITY;
        if (known) *known = forbid ? 2 : 1;
    }
}
