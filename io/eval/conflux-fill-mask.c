// conflux-fill-mask: top-k predictions for each [MASK] in a text, from an ALBERT checkpoint.
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/bpe.h"
#include "io/store/ckpt.h"
#include "io/run/config.h"
#include "io/text/utf8.h"
#include "models/albert.h"
#include "models/common.h"

#define TOOL "conflux-fill-mask"

static void usage(FILE *f) {
    fprintf(f,
            "usage: " TOOL " --checkpoint FILE.h5 --tokenizer DIR [--top-k K] [--json] TEXT...\n"
            "\n"
            "Prints the K most probable tokens for every [MASK] in TEXT (the arguments are\n"
            "joined with spaces; '-' or no TEXT reads stdin), like a fill-mask pipeline.\n"
            "\n"
            "  --checkpoint FILE  conflux ALBERT checkpoint (its /config gives the model shape)\n"
            "  --tokenizer DIR    directory with vocab.json and merges.txt\n"
            "  -k, --top-k K      predictions per mask (default 5)\n"
            "  --json             one JSON object per masked position:\n"
            "                     {\"input_ids\": [...], \"position\": p,\n"
            "                      \"top\": [{\"token_id\": i, \"token\": \"...\", \"prob\": x}, ...]}\n"
            "  -h, --help         this text\n"
            "\n"
            "example:\n"
            "  " TOOL " --checkpoint runs/demo/latest.h5 --tokenizer build/data/tokenizer \\\n"
            "      \"Москва — столица [MASK].\"\n");
}

// Copies s into out replacing every byte that does not start a valid UTF-8 sequence (and
// NUL) with U+FFFD, so JSON and terminals get text.
static void utf8_clean(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap;) {
        uint32_t cp = 0;
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (len > 0 && cp != 0) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
}

static char *read_stdin(void) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); return NULL; }
            buf = nb;
        }
    }
    if (buf) buf[n] = 0;
    return buf;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, 'c'}, {"tokenizer", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},      {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    const char *ckpt_path = NULL, *tok_dir = NULL;
    int top_k = 5, json = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:t:k:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': ckpt_path = optarg; break;
        case 't': tok_dir = optarg; break;
        case 'k': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, TOOL ": error: --top-k must be an integer in [1, 1000] (got '%s')\n", optarg);
                return 2;
            }
            top_k = (int)v;
            break;
        }
        case 'j': json = 1; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, TOOL ": error: bad option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (!ckpt_path || !tok_dir) {
        fprintf(stderr, TOOL ": error: --checkpoint and --tokenizer are required (see --help)\n");
        return 2;
    }
    char *text;
    if (optind >= argc || (optind == argc - 1 && !strcmp(argv[optind], "-"))) {
        text = read_stdin();
    } else {
        size_t len = 0;
        for (int i = optind; i < argc; i++) len += strlen(argv[i]) + 1;
        text = calloc(len + 1, 1);
        for (int i = optind; i < argc; i++) {
            if (i > optind) strcat(text, " ");
            strcat(text, argv[i]);
        }
    }
    if (!text) {
        fprintf(stderr, TOOL ": error: cannot read the text\n");
        return 1;
    }

    // [MASK] absorbs the whitespace before it (like RoBERTa's <mask> with lstrip): the
    // model learned to predict whole tokens such as " слово", never a lone " " before a mask.
    {
        size_t o = 0, n = strlen(text);
        for (size_t i = 0; i < n; i++) {
            if (text[i] == ' ' || text[i] == '\t' || text[i] == '\n') {
                size_t j = i;
                while (j < n && (text[j] == ' ' || text[j] == '\t' || text[j] == '\n')) j++;
                if (j < n && !strncmp(text + j, "[MASK]", 6)) {
                    i = j - 1;
                    continue;
                }
            }
            text[o++] = text[i];
        }
        text[o] = 0;
    }

    char err[CX_ERRLEN];
    Bpe *bpe = NULL;
    if (bpe_load(&bpe, tok_dir, err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        return 1;
    }
    Ckpt *ck = NULL;
    if (ckpt_open(&ck, ckpt_path, err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        return 1;
    }
    if (strcmp(ckpt_model(ck), "albert") != 0) {
        fprintf(stderr, TOOL ": error: %s holds a '%s' model, not albert\n", ckpt_path, ckpt_model(ck));
        return 1;
    }
    RunConfig cfg;
    config_defaults(&cfg);
    if (config_load_string(&cfg, ckpt_config_text(ck), ckpt_path, err) != 0 ||
        albert_config_check(&cfg.model, err) != 0) {
        fprintf(stderr, TOOL ": error: checkpoint configuration: %s\n", err);
        return 1;
    }
    if (bpe_vocab_size(bpe) > cfg.model.vocab_size) {
        fprintf(stderr, TOOL ": error: tokenizer %s has %d tokens but the model only %d (wrong tokenizer?)\n",
                tok_dir, bpe_vocab_size(bpe), cfg.model.vocab_size);
        return 1;
    }

    // [CLS] text [SEP], truncated to the model's positions
    const int P = cfg.model.max_position;
    int32_t *ids = calloc((size_t)P, sizeof(int32_t));
    size_t n = 0;
    bpe_encode(bpe, text, strlen(text), ids + 1, (size_t)P - 2, &n);
    if (n > (size_t)P - 2) {
        fprintf(stderr, TOOL ": warning: text is %zu tokens; truncated to %d\n", n, P - 2);
        n = (size_t)P - 2;
    }
    const int T = (int)n + 2;
    ids[0] = BPE_CLS;
    ids[T - 1] = BPE_SEP;
    int32_t *mask = calloc((size_t)T, sizeof(int32_t)), *targets = calloc((size_t)T, sizeof(int32_t));
    int n_masks = 0;
    for (int t = 0; t < T; t++) {
        mask[t] = 1;
        targets[t] = ids[t] == BPE_MASK ? 0 : -1;
        n_masks += ids[t] == BPE_MASK;
    }
    if (n_masks == 0) {
        fprintf(stderr, TOOL ": error: the text has no [MASK] token\n");
        return 1;
    }

    Albert *model = albert_create(&cfg.model, 1, T, 0);
    if (ckpt_read_params(ck, albert_specs(model), albert_n_specs(model), albert_params(model), err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        return 1;
    }
    ckpt_close(ck);
    const int V = cfg.model.vocab_size;
    float *probs = calloc((size_t)n_masks * V, sizeof(float));
    AlbertBatch b = {.B = 1, .T = T, .input_ids = ids, .attention_mask = mask, .targets = targets};
    int M = albert_predict(model, &b, probs);

    int *best = calloc((size_t)top_k, sizeof(int));
    char raw[1024], clean[4096];
    for (int r = 0, t = 0; r < M; r++, t++) {
        while (targets[t] < 0) t++;
        const float *pr = probs + (size_t)r * V;
        int k = top_k < V ? top_k : V;
        for (int i = 0; i < k; i++) best[i] = -1;
        for (int v = 0; v < V; v++) {  // insertion into a small sorted list
            if (best[k - 1] >= 0 && pr[v] <= pr[best[k - 1]]) continue;
            int i = k - 1;
            while (i > 0 && (best[i - 1] < 0 || pr[v] > pr[best[i - 1]])) {
                best[i] = best[i - 1];
                i--;
            }
            best[i] = v;
        }
        if (json) {
            json_object *o = json_object_new_object(), *arr = json_object_new_array(), *top = json_object_new_array();
            for (int i = 0; i < T; i++) json_object_array_add(arr, json_object_new_int(ids[i]));
            json_object_object_add(o, "input_ids", arr);
            json_object_object_add(o, "position", json_object_new_int(t));
            for (int i = 0; i < k; i++) {
                size_t len = bpe_decode(bpe, &best[i], 1, raw, sizeof raw);
                utf8_clean(raw, len < sizeof raw ? len : sizeof raw, clean, sizeof clean);
                json_object *e = json_object_new_object();
                json_object_object_add(e, "token_id", json_object_new_int(best[i]));
                json_object_object_add(e, "token", json_object_new_string(clean));
                json_object_object_add(e, "prob", json_object_new_double(pr[best[i]]));
                json_object_array_add(top, e);
            }
            json_object_object_add(o, "top", top);
            puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
            json_object_put(o);
        } else {
            printf("[MASK] at position %d:\n", t);
            for (int i = 0; i < k; i++) {
                size_t len = bpe_decode(bpe, &best[i], 1, raw, sizeof raw);
                utf8_clean(raw, len < sizeof raw ? len : sizeof raw, clean, sizeof clean);
                printf("  %6.4f  %-6d '%s'\n", (double)pr[best[i]], best[i], clean);
            }
        }
    }
    free(best);
    free(probs);
    free(ids);
    free(mask);
    free(targets);
    free(text);
    albert_free(model);
    bpe_free(bpe);
    return 0;
}
