// conflux-tokenizer: trains the byte-level BPE tokenizer (io/tokenizer/bpe.h), encodes and decodes
// text with it, writes token shards (io/store/shard.h) and measures encoding speed.
//
// Exit status: 0 success, 1 runtime failure (files, data), 2 usage error.
// Errors read "conflux-tokenizer: error: what (where)".
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/tokenizer/bpe.h"
#include "io/store/shard.h"
#include "models/common.h"

#define TOOL "conflux-tokenizer"

static const char usage_main[] =
    "usage: " TOOL " COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Byte-level BPE tokenizer (GPT-2/RoBERTa format: DIR/vocab.json + DIR/merges.txt).\n"
    "Ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, bytes 5..260, then merged tokens.\n"
    "\n"
    "commands:\n"
    "  train --vocab-size N --out DIR FILE...     train on text files (one document per line)\n"
    "  encode --tokenizer DIR [--tokens] [TEXT]   print the ids of TEXT, or of each stdin line\n"
    "  decode --tokenizer DIR [IDS...]            print the text of IDS, or of each stdin line\n"
    "  shard --tokenizer DIR --out FILE.h5 FILE... encode each line as a document into a shard\n"
    "  bench --tokenizer DIR FILE                 measure encoding throughput on one core\n"
    "\n"
    "'" TOOL " COMMAND --help' describes a command. Exit status: 0 success, 1 failure,\n"
    "2 usage error.\n";

static const char usage_train[] =
    "usage: " TOOL " train [--vocab-size N] --out DIR [--quiet] FILE...\n"
    "\n"
    "Trains a byte-level BPE tokenizer on the concatenation of FILEs (each line is one\n"
    "document, pre-tokenized without its newline) and writes DIR/vocab.json and\n"
    "DIR/merges.txt (DIR is created).\n"
    "\n"
    "  --vocab-size N  total vocabulary, 5 special + 256 byte tokens included (default 8192;\n"
    "                  fewer when no pair occurs twice any more)\n"
    "  --out DIR       output directory\n"
    "  --quiet         no progress lines on stderr\n";

static const char usage_encode[] =
    "usage: " TOOL " encode --tokenizer DIR [--tokens] [TEXT]\n"
    "\n"
    "Prints the token ids of TEXT on one line, space-separated. Without TEXT, encodes each\n"
    "line of stdin (without its newline) and prints one line of ids per input line.\n"
    "The strings [PAD] [UNK] [CLS] [SEP] [MASK] in the text become their special ids.\n"
    "\n"
    "  --tokenizer DIR  directory with vocab.json and merges.txt\n"
    "  --tokens         print the token strings instead of ids (vocab.json form: byte-level,\n"
    "                   e.g. \"ĠÐ¼Ð¸ÑĢ\" for \" мир\")\n";

static const char usage_decode[] =
    "usage: " TOOL " decode --tokenizer DIR [IDS...]\n"
    "\n"
    "Prints the text of the ids given as arguments, followed by a newline. Without IDS,\n"
    "decodes each line of stdin (space-separated ids) into one line of text.\n"
    "\n"
    "  --tokenizer DIR  directory with vocab.json and merges.txt\n";

static const char usage_shard[] =
    "usage: " TOOL " shard --tokenizer DIR --out FILE.h5 [--quiet] FILE...\n"
    "\n"
    "Encodes every non-empty line of the FILEs (\"-\" is stdin) as one document and writes\n"
    "an HDF5 token shard (format in io/store/shard.h). Progress (lines, MB, MB/s) goes to stderr.\n"
    "\n"
    "  --tokenizer DIR  directory with vocab.json and merges.txt\n"
    "  --out FILE.h5    the shard to write (replaced atomically when complete)\n"
    "  --quiet          no progress lines\n";

static const char usage_bench[] =
    "usage: " TOOL " bench --tokenizer DIR FILE\n"
    "\n"
    "Encodes FILE line by line on one thread, twice (the first pass starts with an empty\n"
    "word cache), and prints the throughput of each pass in MB/s.\n"
    "\n"
    "  --tokenizer DIR  directory with vocab.json and merges.txt\n";

// Usage error (exit status 2) and runtime failure (exit status 1).
#define die_usage(...) cx_tool_fail(TOOL, 2, __VA_ARGS__)
#define die(...) cx_tool_fail(TOOL, 1, __VA_ARGS__)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

// Whether the option name (name_len bytes of name) is exactly opt.
static int opt_is(const char *name, size_t name_len, const char *opt) {
    return strlen(opt) == name_len && strncmp(name, opt, name_len) == 0;
}

// Parsed command line of one subcommand.
typedef struct {
    const char *tokenizer, *out, *vocab_size;
    int tokens, quiet;
    const char **args;  // positional arguments
    int n_args;
} Opts;

// Parses argv[2..] of subcommand cmd. `allowed` lists the accepted options
// ("tokenizer", "out", "vocab-size", "tokens", "quiet"); prints help and exits on --help.
static void parse_opts(int argc, char **argv, const char *cmd, const char *help,
                       const char *const *allowed, Opts *o) {
    memset(o, 0, sizeof *o);
    o->args = calloc((size_t)argc, sizeof *o->args);
    CHECK(o->args != NULL, "out of memory");
    int only_args = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (only_args || a[0] != '-' || strcmp(a, "-") == 0) {
            o->args[o->n_args++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = 1;
            continue;
        }
        if (is_help(a)) {
            fputs(help, stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0) die_usage("unknown option %s (%s)", a, cmd);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        int known = 0;
        for (const char *const *k = allowed; *k; k++)
            if (opt_is(name, name_len, *k)) known = 1;
        if (!known) die_usage("unknown option %.*s (%s)", (int)(name_len + 2), a, cmd);
        if (opt_is(name, name_len, "tokens") || opt_is(name, name_len, "quiet")) {
            if (eq) die_usage("option --%.*s takes no value (%s)", (int)name_len, name, cmd);
            if (name[0] == 't') o->tokens = 1;
            else o->quiet = 1;
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc)
                die_usage("option --%.*s needs a value (%s)", (int)name_len, name, cmd);
            val = argv[++i];
        }
        if (opt_is(name, name_len, "tokenizer")) o->tokenizer = val;
        else if (opt_is(name, name_len, "out")) o->out = val;
        else o->vocab_size = val;
    }
}

static Bpe *load_or_die(const char *dir, const char *cmd) {
    if (!dir) die_usage("--tokenizer DIR is required (%s)", cmd);
    char err[CX_ERRLEN];
    Bpe *b;
    if (bpe_load(&b, dir, err) != 0) die("%s", err);
    return b;
}

// Buffered writing of ids to stdout.
static void put_int(long v, FILE *fp) {
    char buf[24];
    int n = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    do {
        buf[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) buf[n++] = '-';
    while (n) putc_unlocked(buf[--n], fp);
}

// Encodes len bytes into *ids (grown as needed); returns the number of ids.
static size_t encode_all(const Bpe *b, const char *text, size_t len, int32_t **ids, size_t *cap) {
    size_t n;
    if (bpe_encode(b, text, len, *ids, *cap, &n) != 0) {
        *cap = n + n / 2 + 16;
        *ids = realloc(*ids, *cap * sizeof **ids);
        CHECK(*ids != NULL, "out of memory");
        CHECK(bpe_encode(b, text, len, *ids, *cap, &n) == 0, "encode did not fit its own size");
    }
    return n;
}

static void print_encoded(const Bpe *b, const int32_t *ids, size_t n, int tokens) {
    for (size_t k = 0; k < n; k++) {
        if (k) putc_unlocked(' ', stdout);
        if (tokens) fputs(bpe_token_str(b, ids[k]), stdout);
        else put_int(ids[k], stdout);
    }
    putc_unlocked('\n', stdout);
}

static void check_stdout(void) {
    if (fflush(stdout) != 0 || ferror(stdout))
        die("cannot write output: %s (stdout)", strerror(errno));
}

static int cmd_encode(int argc, char **argv) {
    static const char *const allowed[] = {"tokenizer", "tokens", NULL};
    Opts o;
    parse_opts(argc, argv, "encode", usage_encode, allowed, &o);
    if (o.n_args > 1)
        die_usage("encode takes at most one TEXT argument, got %d (quote the text)", o.n_args);
    Bpe *b = load_or_die(o.tokenizer, "encode");
    int32_t *ids = NULL;
    size_t cap = 0;
    if (o.n_args == 1) {
        size_t n = encode_all(b, o.args[0], strlen(o.args[0]), &ids, &cap);
        print_encoded(b, ids, n, o.tokens);
    } else {
        char *line = NULL;
        size_t line_cap = 0;
        ssize_t got;
        while ((got = getline(&line, &line_cap, stdin)) > 0) {
            size_t len = (size_t)got;
            if (line[len - 1] == '\n') len--;
            size_t n = encode_all(b, line, len, &ids, &cap);
            print_encoded(b, ids, n, o.tokens);
        }
        if (ferror(stdin)) die("cannot read input: %s (stdin)", strerror(errno));
        free(line);
    }
    check_stdout();
    free(ids);
    free(o.args);
    bpe_free(b);
    return 0;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Parses one id; 0 on success.
static int parse_id(const char *s, size_t len, const Bpe *b, int32_t *id) {
    if (len == 0 || len > 11) return -1;
    char buf[16];
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno || *end || buf[0] == '+' || buf[0] == ' ' || v < 0 || v >= bpe_vocab_size(b))
        return -1;
    *id = (int32_t)v;
    return 0;
}

static void write_text(const Bpe *b, const int32_t *ids, size_t n, char **text, size_t *cap) {
    size_t len = bpe_decode(b, ids, n, *text, *cap);
    if (len > *cap) {
        *cap = len + len / 2 + 64;
        *text = realloc(*text, *cap);
        CHECK(*text != NULL, "out of memory");
        bpe_decode(b, ids, n, *text, *cap);
    }
    fwrite(*text, 1, len, stdout);
    putc_unlocked('\n', stdout);
}

static int cmd_decode(int argc, char **argv) {
    static const char *const allowed[] = {"tokenizer", NULL};
    Opts o;
    parse_opts(argc, argv, "decode", usage_decode, allowed, &o);
    Bpe *b = load_or_die(o.tokenizer, "decode");
    int32_t *ids = NULL;
    size_t cap = 0, n = 0, text_cap = 0;
    char *text = NULL;
    if (o.n_args > 0) {
        ids = malloc((size_t)o.n_args * sizeof *ids);
        CHECK(ids != NULL, "out of memory");
        for (int k = 0; k < o.n_args; k++)
            if (parse_id(o.args[k], strlen(o.args[k]), b, &ids[n++]) != 0)
                die_usage("invalid id \"%s\": expected an integer in 0..%d (argument %d)",
                          o.args[k], bpe_vocab_size(b) - 1, k + 1);
        write_text(b, ids, n, &text, &text_cap);
    } else {
        char *line = NULL;
        size_t line_cap = 0, line_no = 0;
        ssize_t got;
        while ((got = getline(&line, &line_cap, stdin)) > 0) {
            line_no++;
            size_t len = (size_t)got;
            n = 0;
            for (size_t i = 0; i < len;) {
                while (i < len && is_blank(line[i])) i++;
                size_t j = i;
                while (j < len && !is_blank(line[j])) j++;
                if (j == i) break;
                if (n == cap) {
                    cap = cap ? 2 * cap : 256;
                    ids = realloc(ids, cap * sizeof *ids);
                    CHECK(ids != NULL, "out of memory");
                }
                if (parse_id(line + i, j - i, b, &ids[n++]) != 0)
                    die("invalid id \"%.*s\": expected an integer in 0..%d (stdin line %zu)",
                        (int)(j - i > 40 ? 40 : j - i), line + i, bpe_vocab_size(b) - 1, line_no);
                i = j;
            }
            write_text(b, ids, n, &text, &text_cap);
        }
        if (ferror(stdin)) die("cannot read input: %s (stdin)", strerror(errno));
        free(line);
    }
    check_stdout();
    free(text);
    free(ids);
    free(o.args);
    bpe_free(b);
    return 0;
}

static int cmd_train(int argc, char **argv) {
    static const char *const allowed[] = {"vocab-size", "out", "quiet", NULL};
    Opts o;
    parse_opts(argc, argv, "train", usage_train, allowed, &o);
    long vocab = 8192;
    if (o.vocab_size) {
        char *end;
        errno = 0;
        vocab = strtol(o.vocab_size, &end, 10);
        if (errno || *end || end == o.vocab_size || vocab < BPE_N_SPECIAL + 256 ||
            vocab > (1 << 24))
            die_usage("invalid --vocab-size \"%s\": expected an integer in %d..%d (train)",
                      o.vocab_size, BPE_N_SPECIAL + 256, 1 << 24);
    }
    if (!o.out) die_usage("--out DIR is required (train)");
    if (o.n_args == 0) die_usage("no training files given (train)");
    char err[CX_ERRLEN];
    Bpe *b;
    double t0 = now_s();
    if (bpe_train(&b, o.args, o.n_args, (int)vocab, !o.quiet, err) != 0) die("%s", err);
    double t_train = now_s() - t0;
    if (bpe_save(b, o.out, err) != 0) die("%s", err);
    printf("%s: trained %d tokens in %.2f s on %d file%s; wrote %s/vocab.json and %s/merges.txt "
           "(fingerprint %s)\n",
           TOOL, bpe_vocab_size(b), t_train, o.n_args, o.n_args == 1 ? "" : "s", o.out, o.out,
           bpe_fingerprint(b));
    check_stdout();
    free(o.args);
    bpe_free(b);
    return 0;
}

static void shard_progress(const char *out, size_t lines, double bytes, double t0, int final) {
    double dt = now_s() - t0;
    fprintf(stderr, "%s: shard %s: %zu lines, %.1f MB, %.1f MB/s%s\n", TOOL, out, lines,
            bytes / 1e6, dt > 0 ? bytes / 1e6 / dt : 0.0, final ? " (done)" : "");
}

static int cmd_shard(int argc, char **argv) {
    static const char *const allowed[] = {"tokenizer", "out", "quiet", NULL};
    Opts o;
    parse_opts(argc, argv, "shard", usage_shard, allowed, &o);
    if (!o.out) die_usage("--out FILE.h5 is required (shard)");
    if (o.n_args == 0) die_usage("no input files given (shard)");
    Bpe *b = load_or_die(o.tokenizer, "shard");
    char err[CX_ERRLEN];
    ShardWriter *w;
    if (shard_writer_open(&w, o.out, bpe_vocab_size(b), bpe_fingerprint(b), err) != 0)
        die("%s", err);
    int32_t *ids = NULL;
    size_t cap = 0, lines = 0, docs = 0, empty = 0;
    uint64_t tokens = 0;
    double bytes = 0, t0 = now_s(), next_report = t0 + 2.0;
    char *line = NULL;
    size_t line_cap = 0;
    for (int f = 0; f < o.n_args; f++) {
        const char *path = o.args[f];
        FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
        if (!fp) {
            shard_writer_abort(w);
            die("cannot open input: %s (%s)", strerror(errno), path);
        }
        size_t line_no = 0;
        ssize_t got;
        while ((got = getline(&line, &line_cap, fp)) > 0) {
            line_no++;
            lines++;
            bytes += (double)got;
            size_t len = (size_t)got;
            if (line[len - 1] == '\n') len--;
            if (len == 0) {
                empty++;
                continue;
            }
            size_t n = encode_all(b, line, len, &ids, &cap);
            if (shard_writer_add(w, ids, n, err) != 0) {
                shard_writer_abort(w);
                die("%s (while adding %s line %zu)", err, path, line_no);
            }
            docs++;
            tokens += n;
            if (!o.quiet && (lines & 1023) == 0 && now_s() >= next_report) {
                shard_progress(o.out, lines, bytes, t0, 0);
                next_report = now_s() + 5.0;
            }
        }
        int bad = ferror(fp);
        int saved = errno;
        if (fp != stdin) fclose(fp);
        if (bad) {
            shard_writer_abort(w);
            die("cannot read input: %s (%s)", strerror(saved), path);
        }
    }
    free(line);
    free(ids);
    if (shard_writer_close(w, err) != 0) die("%s", err);
    if (!o.quiet) shard_progress(o.out, lines, bytes, t0, 1);
    printf("%s: wrote %s: %zu documents, %llu tokens (%zu empty lines skipped), %.2f bytes/token\n",
           TOOL, o.out, docs, (unsigned long long)tokens, empty,
           tokens ? bytes / (double)tokens : 0.0);
    check_stdout();
    free(o.args);
    bpe_free(b);
    return 0;
}

static int cmd_bench(int argc, char **argv) {
    static const char *const allowed[] = {"tokenizer", NULL};
    Opts o;
    parse_opts(argc, argv, "bench", usage_bench, allowed, &o);
    if (o.n_args != 1) die_usage("bench takes one FILE, got %d", o.n_args);
    Bpe *b = load_or_die(o.tokenizer, "bench");
    const char *path = o.args[0];
    FILE *fp = fopen(path, "rb");
    if (!fp) die("cannot open input: %s (%s)", strerror(errno), path);
    size_t len = 0, cap = 0;
    char *text = NULL;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? 2 * cap : 1 << 20;
            text = realloc(text, cap);
            CHECK(text != NULL, "out of memory");
        }
        size_t got = fread(text + len, 1, cap - len, fp);
        len += got;
        if (got == 0) break;
    }
    if (ferror(fp)) die("cannot read input: %s (%s)", strerror(errno), path);
    fclose(fp);
    int32_t *ids = NULL;
    size_t ids_cap = 0;
    for (int pass = 1; pass <= 2; pass++) {
        uint64_t tokens = 0;
        double t0 = now_s();
        for (size_t i = 0; i < len;) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - text) : len;
            tokens += encode_all(b, text + i, e - i, &ids, &ids_cap);
            i = e + 1;
        }
        double dt = now_s() - t0;
        printf("%s: bench pass %d (%s cache): %.1f MB in %.3f s = %.1f MB/s, %llu tokens, "
               "%.2f bytes/token, one thread\n",
               TOOL, pass, pass == 1 ? "cold" : "warm", (double)len / 1e6, dt,
               dt > 0 ? (double)len / 1e6 / dt : 0.0, (unsigned long long)tokens,
               tokens ? (double)len / (double)tokens : 0.0);
    }
    check_stdout();
    free(ids);
    free(text);
    free(o.args);
    bpe_free(b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (is_help(cmd)) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("%s %s\n", TOOL, CONFLUX_VERSION);
        return 0;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc, argv);
    if (strcmp(cmd, "encode") == 0) return cmd_encode(argc, argv);
    if (strcmp(cmd, "decode") == 0) return cmd_decode(argc, argv);
    if (strcmp(cmd, "shard") == 0) return cmd_shard(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    die_usage("unknown command \"%s\"", cmd);
}
