// conflux-bridge: the extra rank of a cluster job that lets volunteers join its averaging
// over the internet (bridge/server.h), and the host's join-token tool.
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/outer.h"
#include "bridge/proto.h"
#include "bridge/robust.h"
#include "bridge/server.h"
#include "bridge/tls.h"
#include "bridge/tokens.h"
#include "io/run/run.h"
#include "io/tasks/recipe.h"
#include "models/common.h"
#include "models/train.h"
#include "mpi/hybrid.h"

#define TOOL "conflux-bridge"

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { g_stop = sig; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: " TOOL " [options]                 (as one rank of an MPMD job)\n"
            "       " TOOL " token issue|revoke|list|migrate --tokens FILE [NAME|TOKEN]\n"
            "       " TOOL " tls fingerprint --tokens FILE | --tls-cert FILE\n"
            "\n"
            "Runs as the bridge rank of a cluster job: trainers and volunteers average\n"
            "together. Start it next to the trainers, e.g.\n"
            "  mpirun -np 2 conflux-train --config run.ini : -np 1 " TOOL " --tokens tokens.txt\n"
            "or next to conflux-headline train ranks (the encoder-decoder):\n"
            "  mpirun -np 2 conflux-headline train --config hl.ini : -np 1 " TOOL " --tokens tokens.txt\n"
            "The run configuration comes from the trainers; volunteers join over TLS 1.3,\n"
            "pinning the bridge's certificate (its fingerprint is in the log at start and\n"
            "from `" TOOL " tls fingerprint --tokens FILE`):\n"
            "  conflux-volunteer --join HOST:PORT#sha256:FINGERPRINT --token-file alice.token\n"
            "\n"
            "  --listen HOST:PORT    address for volunteers (default 0.0.0.0:7070)\n"
            "  --tokens FILE         join tokens, stored hashed (re-read when it changes:\n"
            "                        revocation is live; an unreadable or malformed file\n"
            "                        refuses joins and drops volunteers until it is fixed)\n"
            "  --tls-cert FILE       TLS certificate (PEM) for the volunteer port (default\n"
            "                        FILE.cert.pem next to --tokens, generated once: self-\n"
            "                        signed EC P-256, kept so volunteers' pins stay valid)\n"
            "  --tls-key FILE        its private key (default FILE.key.pem, mode 0600)\n"
            "  --plaintext           no TLS (tokens and gradients travel readable): only\n"
            "                        for trusted networks; volunteers need --plaintext too\n"
            "  --deadline S          longest a round waits for volunteer uploads (default 30;\n"
            "                        in diloco mode the deadline adapts to the measured\n"
            "                        speeds and this is its upper bound)\n"
            "  --plan throughput|equal  how volunteers' shares are sized: to their measured\n"
            "                        speed and link so the cluster does not wait (default), or\n"
            "                        each the size of a trainer's share (reproducible runs)\n"
            "  --max-share F         one volunteer takes at most this fraction of a round's\n"
            "                        global batch (default 0.5; 0 = no cap): its weight stays\n"
            "                        bounded however fast it claims to be\n"
            "  --max-staleness N     rounds a late upload may still count (default 1)\n"
            "  --max-volunteers N    (default 64)\n"
            "  --codecs LIST         upload codecs accepted: fp16,fp32 (default both; fp16\n"
            "                        preferred)\n"
            "  --history N           rounds kept to bring rejoining volunteers up to date\n"
            "                        (default 16)\n"
            "  --idle-timeout S      drop a silent peer (default 60)\n"
            "  --heartbeat S         heartbeat interval (default 5)\n"
            "  --max-grad-norm X     reject uploads whose L2 norm per loss token exceeds X\n"
            "                        (default 1e4; 0 = no check)\n"
            "  --max-delta-ratio X   diloco: reject a pseudo-gradient whose norm exceeds X\n"
            "                        times the cluster's of the same round (default 4; 0 = no check)\n"
            "  --aggregate KIND      how volunteers' uploads combine: centered-clip (default;\n"
            "                        robust to a hostile minority), trimmed-mean, or mean (the\n"
            "                        exact sum: trusted volunteers, bit-for-bit equivalence)\n"
            "  --clip-ratio X        robust modes: clip each upload's per-token gradient (diloco:\n"
            "                        pseudo-gradient) to X times the trainers' own (default 4;\n"
            "                        0 = no clipping)\n"
            "  --trim F              trimmed-mean: weight share cut from each end (default 0.2)\n"
            "  --wait-volunteers N   the first round waits for N live volunteers ...\n"
            "  --wait-timeout S      ... at most S seconds (default 120)\n"
            "  --run-dir DIR         where bridge.csv and volunteers.csv go (default: the\n"
            "                        run's run.dir)\n"
            "  --status HOST:PORT    serve a read-only status page (/, and /status.json: step,\n"
            "                        loss, samples/s, participants and their contributions;\n"
            "                        no tokens) for the collaboration to link to\n"
            "  --tcp-cc NAME         TCP congestion control towards volunteers (default bbr;\n"
            "                        '' = the system default)\n"
            "Limits on peers (memory and connections stay bounded whatever they send):\n"
            "  --hello-timeout S     a connection must send HELLO within S seconds (default 5)\n"
            "  --max-preauth N       connections waiting for HELLO at most, apart from\n"
            "                        --max-volunteers (default 32) ...\n"
            "  --max-preauth-per-addr N  ... and from one address (default 8)\n"
            "  --max-conns-per-token N   connections on one join token (default 16)\n"
            "  --max-ids-per-token N     identities kept per join token (default 64; beyond,\n"
            "                        the longest-departed one is retired into the token's\n"
            "                        summary row of volunteers.csv)\n"
            "  --download-slack S    a state download must end within S seconds plus ...\n"
            "  --download-min-rate K ... the state's size at K KiB/s (defaults 30 and 128);\n"
            "                        a volunteer downloading the training data (served from\n"
            "                        data.train to those without a copy) gets its size at\n"
            "                        K KiB/s more\n"
            "  --max-status-conns N  status page connections at most (default 32)\n"
            "  -q, --quiet           no progress lines\n"
            "  -h, --help            this text\n"
            "\n"
            "Join tokens (the host's side; the file keeps only SHA-256 hashes, mode 0600):\n"
            "  " TOOL " token issue --tokens tokens.txt alice     prints alice's new token (once)\n"
            "  " TOOL " token issue --tokens tokens.txt alice --out alice.token\n"
            "                                  writes it to a volunteer token file (mode 0600)\n"
            "  " TOOL " token revoke --tokens tokens.txt alice    by name or by token\n"
            "  " TOOL " token list --tokens tokens.txt            names and status, no secrets\n"
            "  " TOOL " token migrate --tokens tokens.txt         hashes an older plaintext file\n"
            "  " TOOL " tls fingerprint --tokens tokens.txt       prints sha256:... (generates the\n"
            "                                  certificate when absent) for the join string\n");
}

static int token_main(int argc, char **argv) {
    const char *path = NULL, *cmd = argc > 1 ? argv[1] : "";
    const char *arg = NULL, *out = NULL;
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {  // `token --help`
        usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, TOOL ": error: bad option '%s' (see --help)\n", argv[i]);
            return 2;
        } else if (!arg) arg = argv[i];
        else {
            fprintf(stderr, TOOL ": error: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, TOOL ": error: token %s needs --tokens FILE\n", cmd);
        return 2;
    }
    char err[CX_ERRLEN];
    if (!strcmp(cmd, "issue")) {
        if (!arg) {
            fprintf(stderr, TOOL ": error: token issue needs a NAME\n");
            return 2;
        }
        char tok[BR_TOKEN_CHARS + 1];
        // the volunteer file first: a token that could not be handed over is never valid
        if (out && br_token_write_file(out, "", err) != 0) {
            fprintf(stderr, TOOL ": error: %s\n", err);
            return 1;
        }
        if (br_tokens_issue(path, arg, tok, err) != 0 || (out && br_token_write_file(out, tok, err) != 0)) {
            fprintf(stderr, TOOL ": error: %s\n", err);
            return 1;
        }
        if (out) fprintf(stderr, TOOL ": %s's token is in %s (mode 0600); %s keeps only its hash\n",
                         arg, out, path);
        else printf("%s\n", tok);
        return 0;
    }
    if (!strcmp(cmd, "revoke")) {
        if (!arg) {
            fprintf(stderr, TOOL ": error: token revoke needs a NAME or TOKEN\n");
            return 2;
        }
        int n = br_tokens_revoke(path, arg, err);
        if (n < 0) {
            fprintf(stderr, TOOL ": error: %s\n", err);
            return 1;
        }
        if (n == 0) {
            fprintf(stderr, TOOL ": error: no valid token named '%s' (%s)\n", arg, path);
            return 1;
        }
        printf("revoked %d token(s)\n", n);
        return 0;
    }
    if (!strcmp(cmd, "list")) {
        BrTokens t;
        if (br_tokens_load(path, &t, err) != 0) {
            fprintf(stderr, TOOL ": error: %s\n", err);
            return 1;
        }
        for (int i = 0; i < t.n; i++)
            printf("%-24s issued %ld  %s\n", t.items[i].name, t.items[i].issued,
                   t.items[i].revoked ? "revoked" : "valid");
        if (t.n_plain > 0)
            fprintf(stderr, TOOL ": warning: %d token(s) in %s are stored in plaintext; "
                    "'token migrate' hashes them\n", t.n_plain, path);
        br_tokens_free(&t);
        return 0;
    }
    if (!strcmp(cmd, "migrate")) {
        int n = br_tokens_migrate(path, err);
        if (n < 0) {
            fprintf(stderr, TOOL ": error: %s\n", err);
            return 1;
        }
        printf("%d plaintext token(s) hashed; %s holds hashes only\n", n, path);
        return 0;
    }
    fprintf(stderr, TOOL ": error: unknown token command '%s' (issue, revoke, list, migrate)\n", cmd);
    return 2;
}

// `tls fingerprint`: the certificate's SHA-256 fingerprint for the join string (the default
// certificate next to the token file is generated when absent, as the bridge would).
static int tls_main(int argc, char **argv) {
    const char *tokens = NULL, *cert_opt = NULL, *key_opt = NULL;
    if (argc < 2 || strcmp(argv[1], "fingerprint") != 0) {
        fprintf(stderr, TOOL ": error: usage: " TOOL " tls fingerprint --tokens FILE | --tls-cert FILE\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = argv[++i];
        else if (!strcmp(argv[i], "--tls-cert") && i + 1 < argc) cert_opt = argv[++i];
        else if (!strcmp(argv[i], "--tls-key") && i + 1 < argc) key_opt = argv[++i];
        else {
            fprintf(stderr, TOOL ": error: bad argument '%s' to tls fingerprint\n", argv[i]);
            return 2;
        }
    }
    if (!tokens && !cert_opt) {
        fprintf(stderr, TOOL ": error: tls fingerprint needs --tokens FILE or --tls-cert FILE\n");
        return 2;
    }
    char cert[4096], key[4096], fp[BR_TLS_FP_CHARS + 1], err[CX_ERRLEN];
    br_tls_default_paths(tokens ? tokens : cert_opt, cert, key, sizeof cert);
    if (cert_opt) snprintf(cert, sizeof cert, "%s", cert_opt);
    if (key_opt) snprintf(key, sizeof key, "%s", key_opt);
    // only the certificate is read when it is given; its key stays where it is
    if (cert_opt && !key_opt) snprintf(key, sizeof key, "%s", cert);
    if (br_tls_load_or_make(cert, key, !cert_opt, fp, err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        return 1;
    }
    printf("sha256:%s\n", fp);
    return 0;
}

static int parse_double(const char *s, const char *opt, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= 0)) {
        fprintf(stderr, TOOL ": error: %s needs a non-negative number, got '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "token")) return token_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "tls")) return tls_main(argc - 1, argv + 1);
    BridgeOptions o;
    bridge_options_default(&o);
    o.wait_timeout_s = 120;
    const char *run_dir = NULL;
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'},       {"tokens", required_argument, 0, 't'},
        {"deadline", required_argument, 0, 'd'},     {"max-staleness", required_argument, 0, 's'},
        {"max-volunteers", required_argument, 0, 'm'}, {"codecs", required_argument, 0, 'c'},
        {"history", required_argument, 0, 'H'},      {"idle-timeout", required_argument, 0, 'i'},
        {"heartbeat", required_argument, 0, 'b'},    {"max-grad-norm", required_argument, 0, 'g'},
        {"wait-volunteers", required_argument, 0, 'w'}, {"wait-timeout", required_argument, 0, 'W'},
        {"run-dir", required_argument, 0, 'r'},      {"quiet", no_argument, 0, 'q'},
        {"tcp-cc", required_argument, 0, 'C'},       {"plan", required_argument, 0, 'P'},
        {"status", required_argument, 0, 'S'},       {"max-delta-ratio", required_argument, 0, 'D'},
        {"max-share", required_argument, 0, 'X'},
        {"tls-cert", required_argument, 0, 'E'},     {"tls-key", required_argument, 0, 'K'},
        {"plaintext", no_argument, 0, 'p'},
        {"hello-timeout", required_argument, 0, 1001}, {"max-preauth", required_argument, 0, 1002},
        {"max-preauth-per-addr", required_argument, 0, 1003},
        {"max-conns-per-token", required_argument, 0, 1004},
        {"max-ids-per-token", required_argument, 0, 1005},
        {"download-slack", required_argument, 0, 1006},
        {"download-min-rate", required_argument, 0, 1007},
        {"max-status-conns", required_argument, 0, 1008},
        {"aggregate", required_argument, 0, 'A'},    {"clip-ratio", required_argument, 0, 1010},
        {"trim", required_argument, 0, 'F'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    int c;
    double x;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': o.listen = optarg; break;
        case 't': o.tokens_path = optarg; break;
        case 'd': if (parse_double(optarg, "--deadline", &o.deadline_s)) return 2; break;
        case 'i': if (parse_double(optarg, "--idle-timeout", &o.idle_timeout_s)) return 2; break;
        case 'b': if (parse_double(optarg, "--heartbeat", &o.heartbeat_s)) return 2; break;
        case 'g': if (parse_double(optarg, "--max-grad-norm", &o.max_grad_norm)) return 2; break;
        case 'D': if (parse_double(optarg, "--max-delta-ratio", &o.max_delta_ratio)) return 2; break;
        case 'W': if (parse_double(optarg, "--wait-timeout", &o.wait_timeout_s)) return 2; break;
        case 'X':
            if (parse_double(optarg, "--max-share", &o.max_share)) return 2;
            if (o.max_share > 1) {
                fprintf(stderr, TOOL ": error: --max-share is a fraction of the global batch, 0..1; got '%s'\n", optarg);
                return 2;
            }
            break;
        case 1010: if (parse_double(optarg, "--clip-ratio", &o.clip_ratio)) return 2; break;
        case 'F':
            if (parse_double(optarg, "--trim", &o.trim)) return 2;
            if (!(o.trim < 0.5)) {
                fprintf(stderr, TOOL ": error: --trim must be in [0, 0.5), not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'A':
            o.aggregate = robust_kind_by_name(optarg);
            if (o.aggregate < 0) {
                fprintf(stderr, TOOL ": error: --aggregate must be centered-clip, trimmed-mean or mean, "
                        "not '%s'\n", optarg);
                return 2;
            }
            break;
        case 's': case 'm': case 'H': case 'w':
            if (parse_double(optarg, "a count option", &x) || x != (double)(int)x || x > 1024) {
                fprintf(stderr, TOOL ": error: '%s' is not a count 0..1024\n", optarg);
                return 2;
            }
            if (c == 's') o.max_staleness = (int)x;
            else if (c == 'm') o.max_volunteers = (int)x;
            else if (c == 'H') o.history = (int)x;
            else o.wait_volunteers = (int)x;
            break;
        case 1001: if (parse_double(optarg, "--hello-timeout", &o.hello_timeout_s)) return 2; break;
        case 1006: if (parse_double(optarg, "--download-slack", &o.download_slack_s)) return 2; break;
        case 1007:
            if (parse_double(optarg, "--download-min-rate", &x) || x <= 0) {
                fprintf(stderr, TOOL ": error: --download-min-rate needs a positive KiB/s, got '%s'\n", optarg);
                return 2;
            }
            o.download_min_rate = x * 1024;
            break;
        case 1002: case 1003: case 1004: case 1005: case 1008:
            if (parse_double(optarg, "a limit", &x) || x != (double)(int)x || x < 1 || x > 65536) {
                fprintf(stderr, TOOL ": error: '%s' is not a limit 1..65536\n", optarg);
                return 2;
            }
            if (c == 1002) o.max_preauth = (int)x;
            else if (c == 1003) o.max_preauth_per_addr = (int)x;
            else if (c == 1004) o.max_conns_per_token = (int)x;
            else if (c == 1005) o.max_ids_per_token = (int)x;
            else o.max_status_conns = (int)x;
            break;
        case 'c': {
            o.codecs = 0;
            char buf[64];
            snprintf(buf, sizeof buf, "%s", optarg);
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                const Codec *k = codec_by_name(tok);
                if (k) o.codecs |= BR_CODEC_BIT(k->id);
                else {
                    fprintf(stderr, TOOL ": error: unknown codec '%s' (fp16, fp32)\n", tok);
                    return 2;
                }
            }
            if (!o.codecs) {
                fprintf(stderr, TOOL ": error: --codecs names no codec\n");
                return 2;
            }
            break;
        }
        case 'r': run_dir = optarg; break;
        case 'C': o.tcp_cc = optarg; break;
        case 'S': o.status_listen = optarg; break;
        case 'E': o.tls_cert = optarg; break;
        case 'K': o.tls_key = optarg; break;
        case 'p': o.plaintext = 1; break;
        case 'P':
            if (!strcmp(optarg, "equal")) o.plan_equal = 1;
            else if (!strcmp(optarg, "throughput")) o.plan_equal = 0;
            else {
                fprintf(stderr, TOOL ": error: --plan must be throughput or equal, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'q': o.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, TOOL ": error: bad option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, TOOL ": error: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (!o.tokens_path) {
        fprintf(stderr, TOOL ": error: --tokens FILE is required (see --help)\n");
        return 2;
    }
    if (o.plaintext && (o.tls_cert || o.tls_key)) {
        fprintf(stderr, TOOL ": error: --plaintext and --tls-cert/--tls-key exclude each other\n");
        return 2;
    }
    if (o.history < 1 || o.max_volunteers < 1) {
        fprintf(stderr, TOOL ": error: --history and --max-volunteers must be at least 1\n");
        return 2;
    }

    HybridComm *h = hybrid_init(&argc, &argv, HYBRID_BRIDGE);
    char err[CX_ERRLEN];
    // the same set-up collectives as the trainers (mpi/trainer.h)
    char *cfg_text = NULL;
    hybrid_bcast_config(h, &cfg_text);
    // the trainers' model kind and run, from their configuration (io/tasks/recipe.h); the
    // bridge's replica reads the training data only to count the loss tokens of volunteers'
    // shares (it trains on none)
    Replica rep;
    recipe_config_init(&rep, recipe_for_config(cfg_text));
    if (recipe_config_from_text(&rep, cfg_text, "the trainers' configuration", NULL, 0, NULL, err) != 0 ||
        recipe_build(&rep, REPLICA_BRIDGE, err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        hybrid_abort(h, 1);
    }
    Trainer *tr = &rep.tr;
    const long total = rep.train->steps;
    o.probe_samples = rep.train->micro_batch;
    // the trainers' split layout (the replica's rows stay empty) and trainer 0's state
    hybrid_create_averager(h, &rep);
    hybrid_bcast_state(h, &rep);
    // diloco: the outer state (theta and its momentum are the replica's parameters and first
    // moment: what volunteers download)
    const int diloco = rep.train->avg.mode == AVG_DILOCO;
    Diloco outer = {0};
    if (diloco) {
        int64_t meta[4] = {0};
        diloco_init(&outer, &rep.train->avg, tr->task.params, tr->task.n_params, (Averager){0});
        hybrid_bcast_outer(h, &outer, meta);
        diloco_restore(&outer, meta);
        memcpy(tr->task.params, outer.theta, tr->task.n_params * sizeof(float));
        memcpy(tr->optim.m, outer.buf, tr->task.n_params * sizeof(float));
        memset(tr->optim.v, 0, tr->task.n_params * sizeof(float));
        free(outer.theta);
        free(outer.buf);
        outer.theta = tr->task.params;
        outer.buf = tr->optim.m;
    }
    hybrid_nodes(h);
    hybrid_barrier(h);  // the trainers' run directory exists from here on
    o.run_dir = run_dir ? run_dir : rep.run_dir;
    o.total_steps = total;
    o.log_every = rep.train->log_every;
    o.data_path = rep.data_train;  // served to volunteers without a copy (DATA_REQUEST)
    BridgeServer *b = bridge_create(&o, tr, h, cfg_text, rep.n_examples, err);
    if (!b) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        hybrid_abort(h, 1);
    }
    BrOuter *bo = diloco ? br_outer_create(b, &outer, tr->samples_seen) : NULL;
    cx_catch_stop_signals(on_signal, 1, 1);
    if (!o.quiet)
        fprintf(stderr, TOOL ": listening on %s for volunteers; %s, %zu parameters, %d trainer rank(s), "
                        "global batch %ld, steps %ld..%ld\n",
                o.listen, rep.recipe->what, tr->task.n_params, hybrid_n_trainers(h), tr->global_batch,
                tr->optim.step, total);
    // the trainers' loop and collectives; the bridge writes no run directory of its own
    RunLoop loop = {.tool = TOOL, .rep = &rep, .avg = bo ? br_outer_averager(bo) : bridge_averager(b),
                    .comm = hybrid_run_comm(h), .quiet = o.quiet, .stop_flag = &g_stop};
    int rc = run_loop(&loop, err);
    if (rc < 0) fprintf(stderr, TOOL ": error: %s\n", err);
    // a signal: the job checkpoints and may be requeued
    if (rc == RUN_STOPPED && tr->optim.step < total) bridge_set_restarting(b);
    bridge_free(b);
    br_outer_free(bo);
    if (diloco) {  // theta and buf belong to the replica
        outer.theta = outer.buf = NULL;
        diloco_free(&outer);
    }
    if (rc < 0) hybrid_abort(h, 1);
    recipe_free(&rep);
    free(cfg_text);
    hybrid_finalize(h);
    return 0;
}
