// tool_linkemu.c: a user-space WAN link emulator for the integration tests (tests/wan.sh).
//
// The kernel of the test machines has no netem qdisc, so this process plays the wire: it
// creates two TAP devices, A and B, each in a network namespace of its choice, and relays
// every Ethernet frame read from one to the other, applying per direction (a->b, b->a):
//
//   loss    each frame is dropped with probability loss (xoshiro256** seeded by --seed;
//           one stream per direction and purpose, so the loss pattern of a direction does
//           not depend on the other direction's traffic or on jitter being on). Applied on
//           arrival: a lost frame uses no bandwidth and no queue.
//   rate    a bottleneck of R bit/s: a frame of L bytes (the Ethernet frame as read from
//           the TAP, header included, no preamble/FCS) takes L*8/R s to serialise, after the
//           frames ahead of it. Drop-tail: a frame arriving while the backlog ahead of it
//           exceeds --queue-ms of serialisation time is dropped ("queue"). TCP goodput over
//           1500-byte MTU frames is therefore about 1448/1514 = 0.956 R.
//   delay   propagation after serialisation: delay + U(-jitter, +jitter), never below 0.
//   jitter  frames of one direction never overtake each other: a frame whose sample would
//           make it depart before its predecessor departs right after it instead. Reordering is
//           rare on real paths and TCP reads it as loss, so netem's default (reorder on
//           jitter) would measure the emulator rather than the link. The price: with dense
//           traffic the delay distribution is skewed upwards (mean a little above delay).
//
// The whole schedule is computed on arrival (virtual time), so each direction is a single
// FIFO whose departure times never decrease. The FIFO is a preallocated byte ring with a
// ring of descriptors (no allocation per frame), sized from rate*(queue+delay+jitter), or
// without a rate from --queue-frames (default: 1 Gbit/s of full frames over
// queue+delay+jitter, at least 1024 frames); a full store drops the frame ("queue").
//
// One thread; non-blocking fds; ppoll() with a nanosecond timeout up to the next departure.
// Signals reach the loop through handlers writing to a self-pipe (not a signalfd: libraries
// linked into the test programs, e.g. OpenBLAS in the sanitizer build, start threads before
// main, and a signal blocked only in the main thread would kill the process through them).
// SIGUSR1 cuts the link (frames held are dropped, new frames are dropped; counted as "cut"),
// SIGUSR2 restores it, SIGTERM/SIGINT exit 0 after printing the per-direction counters to
// stderr. Both TAP devices are non-persistent: they vanish when the process exits.
//
// Errors: "tool_linkemu: error: what (where)"; exit 2 on usage errors, 1 on runtime errors.
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/if_tun.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "tool_linkemu"
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

#define FRAME_MAX_BYTES (1 << 17)    // read buffer: above any TAP MTU (65535) plus header
#define READ_BATCH 64                // frames read from one TAP per loop turn (fairness)
#define MIN_FRAME_BYTES 42           // smallest usual frame (ARP): sizes the descriptor ring
#define FULL_FRAME_BYTES 1514        // "full frame" for sizing a store without a rate
#define NORATE_SIZING_BPS 1e9        // a store without rate holds 1 Gbit/s of full frames
#define STORE_MAX_BYTES (1ull << 30) // refuse configurations needing more than 1 GiB a way
#define NETNS_DIR "/var/run/netns"

// ---------------------------------------------------------------- errors

static void die(int code, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

// Prints "tool_linkemu: error: <fmt...> (<where>)" and exits with code.
static void die(int code, const char *where, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (%s)\n", where);
    va_end(ap);
    if (code == EXIT_USAGE) fprintf(stderr, "try '" PROG " --help'\n");
    exit(code);
}

static void usage(FILE *f) {
    fprintf(f,
"usage: " PROG " --tap-a DEV [--ns-a NAME] --tap-b DEV [--ns-b NAME] [options]\n"
"\n"
"User-space WAN link emulator: creates TAP devices A and B (IFF_TAP|IFF_NO_PI, not\n"
"persistent: they vanish when this process exits) and relays Ethernet frames between\n"
"them with per-direction delay, jitter, random loss and a rate limit. Direction 'ab'\n"
"carries frames read from A to B, 'ba' the reverse. Addresses, routes and link state\n"
"are left to the caller (write them after --ready-file appears).\n"
"\n"
"devices:\n"
"  --tap-a DEV        name of TAP device A (at most %d characters)\n"
"  --ns-a NAME        network namespace of A: " NETNS_DIR "/NAME (as made by\n"
"                     'ip netns add'); absent or empty: the namespace it starts in\n"
"  --tap-b DEV        name of TAP device B\n"
"  --ns-b NAME        network namespace of B (as --ns-a)\n"
"\n"
"per direction (XY is ab or ba; all default 0):\n"
"  --delay-XY MS      one-way propagation delay, milliseconds (0..60000, fractions ok)\n"
"  --jitter-XY MS     delay varies uniformly in [-MS, +MS] (0..60000; the delay never\n"
"                     drops below 0). Frames never overtake each other: one whose delay\n"
"                     sample would make it depart before its predecessor leaves with it\n"
"  --loss-XY PCT      drop each frame with probability PCT/100 (0..100)\n"
"  --rate-XY MBIT     bottleneck rate in Mbit/s (10^6 bit/s) of Ethernet frame bytes\n"
"                     (header included, no preamble/FCS); 0 = unlimited, else at least\n"
"                     0.001 (1 kbit/s)\n"
"\n"
"both directions:\n"
"  --queue-ms MS      drop-tail limit of the rate queue: a frame is dropped when the\n"
"                     serialisation time of the frames ahead of it exceeds MS (default 100)\n"
"  --queue-frames N   without a rate: the most frames held per direction (default: enough\n"
"                     for 1 Gbit/s of 1514-byte frames over queue-ms + delay + jitter, at\n"
"                     least 1024); with a rate the store is sized from the rate instead\n"
"  --seed N           seed of the loss and jitter generators (default 1); the same seed\n"
"                     and the same traffic give the same drops\n"
"  --ready-file PATH  written (atomically, containing the pid) once both devices exist\n"
"  --die-with-parent  exit (as on SIGTERM) when the parent process dies\n"
"  --help             this text\n"
"\n"
"signals: SIGUSR1 cuts the link (frames held and arriving are dropped, counted as 'cut'),\n"
"SIGUSR2 restores it; each is acknowledged on stderr by a line 'SIGUSR1: link cut' or\n"
"'SIGUSR2: link restored'. SIGTERM or SIGINT exit 0 after printing to stderr, per\n"
"direction: frames and bytes forwarded, frames dropped by loss, by queue overflow, by\n"
"cut, and by a failed write to the TAP.\n"
"\n"
"exit status: 0 after SIGTERM/SIGINT, 1 on a runtime error, 2 on a usage error\n",
        IFNAMSIZ - 1);
}

// ---------------------------------------------------------------- random numbers

// xoshiro256** (Blackman & Vigna), seeded through splitmix64.
typedef struct {
    uint64_t s[4];
} Rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(Rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

// uniform in [0, 1)
static double rng_unit(Rng *r) {
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

// ---------------------------------------------------------------- signals

static int sig_pipe_wr = -1;   // the handler writes the signal number here, one byte each

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(sig_pipe_wr, &b, 1);   // a full pipe loses the byte: harmless
    (void)r;
    errno = saved;
}

// Installs on_signal for the signals handled; returns the read end of the self-pipe.
static int signals_install(void) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        die(EXIT_RUNTIME, "setup", "pipe2: %s", strerror(errno));
    sig_pipe_wr = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    const int sigs[] = {SIGUSR1, SIGUSR2, SIGTERM, SIGINT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], &sa, NULL) < 0)
            die(EXIT_RUNTIME, "setup", "sigaction(%d): %s", sigs[i], strerror(errno));
    // the handlers replace an inherited SIG_IGN (a non-interactive shell starts background
    // jobs with SIGINT ignored); the signal mask is inherited too: unblock ours
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&set, sigs[i]);
    if (sigprocmask(SIG_UNBLOCK, &set, NULL) < 0)
        die(EXIT_RUNTIME, "setup", "sigprocmask: %s", strerror(errno));
    return fds[0];
}

// ---------------------------------------------------------------- one direction

typedef struct {
    int64_t depart_ns;   // CLOCK_MONOTONIC time the frame leaves for the output TAP
    uint32_t off;        // byte offset of the frame in Direction.data (< STORE_MAX_BYTES)
    uint32_t len;        // frame bytes (<= FRAME_MAX_BYTES)
} Slot;

typedef struct {
    uint64_t fwd_frames, fwd_bytes;
    uint64_t drop_loss, drop_queue, drop_cut, drop_write;
} Counters;

typedef struct {
    char name[8];               // "a->b"
    const char *in_dev, *out_dev;
    int in_fd, out_fd;
    // configuration
    int64_t delay_ns, jitter_ns, queue_ns;
    double rate_bps;            // 0: unlimited
    double loss;                // probability in [0, 1]
    Rng loss_rng, jitter_rng;
    // FIFO of frames held: descriptors slots[head .. head+count) mod n_slots; the frame
    // bytes are contiguous in data, written at wr, oldest at slots[head].off
    Slot *slots;
    size_t n_slots, head, count;
    uint8_t *data;
    size_t data_bytes, wr;
    int64_t tx_free_ns;         // when the bottleneck finishes the frames accepted so far
    int64_t last_depart_ns;     // departure of the newest frame held (FIFO order)
    int out_blocked;            // the last write said EAGAIN: wait for POLLOUT
    Counters c;
} Direction;

typedef struct {
    double delay_ms, jitter_ms, loss_pct, rate_mbit;
} DirConfig;

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t ms_to_ns(double ms) {
    return (int64_t)llround(ms * 1e6);
}

// Allocates the stores of d for its configuration; queue_frames 0 = default. Exits on
// failure (setup error).
static void dir_alloc(Direction *d, double queue_ms, long queue_frames) {
    double hold_s = (queue_ms + (double)(d->delay_ns + d->jitter_ns) / 1e6) / 1e3;
    double bytes;
    if (d->rate_bps > 0) {
        // the rate queue bounds what is held: rate * (queue + delay + jitter), plus
        // the frame that may exceed the queue limit and rounding slack
        bytes = d->rate_bps / 8 * hold_s + 4.0 * FRAME_MAX_BYTES;
        d->n_slots = (size_t)(bytes / MIN_FRAME_BYTES) + 1024;
    } else {
        double frames = queue_frames > 0
            ? (double)queue_frames
            : fmax(1024, ceil(NORATE_SIZING_BPS / 8 / FULL_FRAME_BYTES * hold_s));
        d->n_slots = (size_t)frames;
        bytes = frames * (FULL_FRAME_BYTES + 64) + 2.0 * FRAME_MAX_BYTES;
    }
    if (bytes > (double)STORE_MAX_BYTES)
        die(EXIT_USAGE, d->name, "the store would need %.0f MB: lower the delay, rate, "
            "queue-ms or queue-frames", bytes / 1e6);
    d->data_bytes = (size_t)bytes;
    d->data = malloc(d->data_bytes);
    d->slots = calloc(d->n_slots, sizeof *d->slots);
    if (!d->data || !d->slots)
        die(EXIT_RUNTIME, d->name, "out of memory for a %zu-byte store", d->data_bytes);
}

// Where a frame of len bytes goes in the byte ring, or (size_t)-1 when it does not fit.
// Frames are contiguous: a frame that does not fit in the tail end of the ring goes to its
// start (the tail end stays unused until the oldest frame passes it). Frames held occupy
// [rd, wr) when wr > rd, else [rd, end) and [0, wr): wr == rd with frames held means full.
static size_t dir_place(const Direction *d, size_t len) {
    if (d->count == 0) return len <= d->data_bytes ? 0 : (size_t)-1;
    if (d->count == d->n_slots) return (size_t)-1;
    size_t rd = d->slots[d->head].off;
    if (d->wr > rd) {
        if (d->data_bytes - d->wr >= len) return d->wr;
        return len <= rd ? 0 : (size_t)-1;
    }
    return rd - d->wr >= len ? d->wr : (size_t)-1;
}

// Drops every frame held, counting them as cut.
static void dir_flush_cut(Direction *d, int64_t now) {
    d->c.drop_cut += d->count;
    d->count = 0;
    d->head = 0;
    d->wr = 0;
    d->tx_free_ns = now;
    d->last_depart_ns = now;
}

// Takes one frame that arrived at now: loss, cut, rate queue, delay; stores it or drops it.
static void dir_accept(Direction *d, const uint8_t *frame, size_t len, int64_t now, int cut) {
    if (cut) {
        d->c.drop_cut++;
        return;
    }
    if (d->loss > 0 && rng_unit(&d->loss_rng) < d->loss) {
        d->c.drop_loss++;
        return;
    }
    int64_t start = now, sent = now;
    if (d->rate_bps > 0) {
        if (d->tx_free_ns > start) start = d->tx_free_ns;
        if (start - now > d->queue_ns) {
            d->c.drop_queue++;
            return;
        }
        sent = start + (int64_t)llround((double)len * 8e9 / d->rate_bps);
    }
    int64_t depart = sent + d->delay_ns;
    if (d->jitter_ns > 0)
        depart += (int64_t)llround((2 * rng_unit(&d->jitter_rng) - 1) * (double)d->jitter_ns);
    if (depart < sent) depart = sent;
    if (depart < d->last_depart_ns) depart = d->last_depart_ns;   // no reordering
    size_t off = dir_place(d, len);
    if (off == (size_t)-1) {
        d->c.drop_queue++;
        return;
    }
    memcpy(d->data + off, frame, len);
    Slot *s = &d->slots[(d->head + d->count) % d->n_slots];
    s->depart_ns = depart;
    s->off = (uint32_t)off;
    s->len = (uint32_t)len;
    d->count++;
    d->wr = off + len;
    d->tx_free_ns = sent;
    d->last_depart_ns = depart;
}

// Writes the frames due by now to the output TAP. Returns the departure time of the next
// frame held (INT64_MAX when none). A write that would block leaves the frame at the head
// and sets out_blocked; a failed write drops the frame (counted); a vanished device is fatal.
static int64_t dir_send_due(Direction *d, int64_t now) {
    while (d->count > 0) {
        Slot *s = &d->slots[d->head];
        if (s->depart_ns > now) return s->depart_ns;
        ssize_t n = write(d->out_fd, d->data + s->off, s->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            d->out_blocked = 1;
            return INT64_MAX;
        }
        if (n < 0 && (errno == EBADFD || errno == ENODEV))
            die(EXIT_RUNTIME, d->out_dev, "write to the TAP device failed: %s (device gone?)",
                strerror(errno));
        if (n == (ssize_t)s->len) {
            d->c.fwd_frames++;
            d->c.fwd_bytes += s->len;
        } else {
            d->c.drop_write++;   // e.g. EIO: the device is down
        }
        d->head = (d->head + 1) % d->n_slots;
        d->count--;
        if (d->count == 0) d->wr = 0;
    }
    d->out_blocked = 0;
    return INT64_MAX;
}

// Reads up to READ_BATCH frames from the input TAP into the FIFO. Returns 1 when more may
// be waiting (the batch was used up), 0 when the device said EAGAIN.
static int dir_read(Direction *d, uint8_t *buf, int cut) {
    for (int i = 0; i < READ_BATCH; i++) {
        ssize_t n = read(d->in_fd, buf, FRAME_MAX_BYTES);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 0;
        if (n < 0) die(EXIT_RUNTIME, d->in_dev, "read from the TAP device failed: %s",
                       strerror(errno));
        if (n == 0) return 0;
        dir_accept(d, buf, (size_t)n, mono_ns(), cut);
    }
    return 1;
}

static void dir_report(const Direction *d) {
    const Counters *c = &d->c;
    fprintf(stderr,
            PROG ": %s (%s -> %s): forwarded %" PRIu64 " frames %" PRIu64 " bytes; dropped "
            "loss %" PRIu64 " queue %" PRIu64 " cut %" PRIu64 " write-error %" PRIu64 "\n",
            d->name, d->in_dev, d->out_dev, c->fwd_frames, c->fwd_bytes, c->drop_loss,
            c->drop_queue, c->drop_cut, c->drop_write);
}

// ---------------------------------------------------------------- setup

// Number for option opt in [lo, hi], or a usage error.
static double parse_num(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < lo || v > hi)
        die(EXIT_USAGE, opt, "expected a number in [%g, %g], got '%s'", lo, hi, s);
    return v;
}

static void check_ns_name(const char *opt, const char *ns) {
    if (!ns || !ns[0]) return;
    if (strchr(ns, '/') || !strcmp(ns, ".") || !strcmp(ns, "..") || strlen(ns) > NAME_MAX)
        die(EXIT_USAGE, opt, "'%s' is not a namespace name (as in 'ip netns add NAME')", ns);
}

static void check_dev_name(const char *opt, const char *dev) {
    if (!dev || !dev[0]) die(EXIT_USAGE, opt, "a TAP device name is required");
    if (strlen(dev) >= IFNAMSIZ || strchr(dev, '/') || strchr(dev, ' ') || strchr(dev, ':'))
        die(EXIT_USAGE, opt, "'%s' is not a usable device name (at most %d characters, no "
            "'/', ':' or space)", dev, IFNAMSIZ - 1);
}

// Opens TAP dev inside namespace ns (NULL or "": the home namespace), non-blocking and
// not persistent; returns to the home namespace (home_fd) before returning the fd. The fd
// stays bound to its device whatever namespace the process is in later.
static int tap_open(const char *opt, const char *dev, const char *ns, int home_fd) {
    char where[128];
    snprintf(where, sizeof where, "%s %s%s%s", opt, dev, ns && ns[0] ? " in namespace " : "",
             ns && ns[0] ? ns : "");
    if (ns && ns[0]) {
        char path[sizeof NETNS_DIR + NAME_MAX + 2];
        snprintf(path, sizeof path, NETNS_DIR "/%s", ns);
        int nsfd = open(path, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0) die(EXIT_RUNTIME, where, "cannot open %s: %s", path, strerror(errno));
        if (setns(nsfd, CLONE_NEWNET) < 0)
            die(EXIT_RUNTIME, where, "setns(%s) failed: %s", path, strerror(errno));
        close(nsfd);
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) die(EXIT_RUNTIME, where, "cannot open /dev/net/tun: %s", strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    memcpy(ifr.ifr_name, dev, strlen(dev));   // checked: shorter than IFNAMSIZ
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        die(EXIT_RUNTIME, where, "TUNSETIFF(IFF_TAP) failed: %s%s", strerror(e),
            e == EBUSY ? " (the device exists and is in use: another emulator?)"
            : e == EINVAL ? " (a device of another kind has this name?)" : "");
    }
    // a leftover persistent TAP of this name was reattached: make it vanish with us
    if (ioctl(fd, TUNSETPERSIST, 0) < 0)
        die(EXIT_RUNTIME, where, "TUNSETPERSIST(0) failed: %s", strerror(errno));
    if (ns && ns[0] && setns(home_fd, CLONE_NEWNET) < 0)
        die(EXIT_RUNTIME, where, "setns back to the starting namespace failed: %s",
            strerror(errno));
    return fd;
}

static void write_ready_file(const char *path) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
        die(EXIT_USAGE, "--ready-file", "path too long: %s", path);
    FILE *f = fopen(tmp, "w");
    if (!f) die(EXIT_RUNTIME, "--ready-file", "cannot create %s: %s", tmp, strerror(errno));
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        die(EXIT_RUNTIME, "--ready-file", "cannot write %s: %s", path, strerror(e));
    }
}

enum {
    OPT_TAP_A = 256, OPT_NS_A, OPT_TAP_B, OPT_NS_B,
    OPT_DELAY_AB, OPT_JITTER_AB, OPT_LOSS_AB, OPT_RATE_AB,
    OPT_DELAY_BA, OPT_JITTER_BA, OPT_LOSS_BA, OPT_RATE_BA,
    OPT_QUEUE_MS, OPT_QUEUE_FRAMES, OPT_SEED, OPT_READY, OPT_PDEATH, OPT_HELP
};

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"tap-a", required_argument, 0, OPT_TAP_A},
        {"ns-a", required_argument, 0, OPT_NS_A},
        {"tap-b", required_argument, 0, OPT_TAP_B},
        {"ns-b", required_argument, 0, OPT_NS_B},
        {"delay-ab", required_argument, 0, OPT_DELAY_AB},
        {"jitter-ab", required_argument, 0, OPT_JITTER_AB},
        {"loss-ab", required_argument, 0, OPT_LOSS_AB},
        {"rate-ab", required_argument, 0, OPT_RATE_AB},
        {"delay-ba", required_argument, 0, OPT_DELAY_BA},
        {"jitter-ba", required_argument, 0, OPT_JITTER_BA},
        {"loss-ba", required_argument, 0, OPT_LOSS_BA},
        {"rate-ba", required_argument, 0, OPT_RATE_BA},
        {"queue-ms", required_argument, 0, OPT_QUEUE_MS},
        {"queue-frames", required_argument, 0, OPT_QUEUE_FRAMES},
        {"seed", required_argument, 0, OPT_SEED},
        {"ready-file", required_argument, 0, OPT_READY},
        {"die-with-parent", no_argument, 0, OPT_PDEATH},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0},
    };
    const char *tap_a = NULL, *tap_b = NULL, *ns_a = NULL, *ns_b = NULL, *ready = NULL;
    DirConfig cab = {0, 0, 0, 0}, cba = {0, 0, 0, 0};
    double queue_ms = 100;
    long queue_frames = 0;
    uint64_t seed = 1;
    int pdeath = 0;

    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        switch (o) {
        case OPT_TAP_A: tap_a = optarg; break;
        case OPT_NS_A: ns_a = optarg; break;
        case OPT_TAP_B: tap_b = optarg; break;
        case OPT_NS_B: ns_b = optarg; break;
        case OPT_DELAY_AB: cab.delay_ms = parse_num("--delay-ab", optarg, 0, 60000); break;
        case OPT_JITTER_AB: cab.jitter_ms = parse_num("--jitter-ab", optarg, 0, 60000); break;
        case OPT_LOSS_AB: cab.loss_pct = parse_num("--loss-ab", optarg, 0, 100); break;
        case OPT_RATE_AB: cab.rate_mbit = parse_num("--rate-ab", optarg, 0, 1e6); break;
        case OPT_DELAY_BA: cba.delay_ms = parse_num("--delay-ba", optarg, 0, 60000); break;
        case OPT_JITTER_BA: cba.jitter_ms = parse_num("--jitter-ba", optarg, 0, 60000); break;
        case OPT_LOSS_BA: cba.loss_pct = parse_num("--loss-ba", optarg, 0, 100); break;
        case OPT_RATE_BA: cba.rate_mbit = parse_num("--rate-ba", optarg, 0, 1e6); break;
        case OPT_QUEUE_MS: queue_ms = parse_num("--queue-ms", optarg, 0.001, 60000); break;
        case OPT_QUEUE_FRAMES:
            queue_frames = (long)parse_num("--queue-frames", optarg, 1, 1e7);
            if ((double)queue_frames != strtod(optarg, NULL))
                die(EXIT_USAGE, "--queue-frames", "expected a whole number, got '%s'", optarg);
            break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 0);
            if (end == optarg || *end || errno || optarg[0] == '-')
                die(EXIT_USAGE, "--seed", "expected an unsigned integer, got '%s'", optarg);
            seed = v;
            break;
        }
        case OPT_READY: ready = optarg; break;
        case OPT_PDEATH: pdeath = 1; break;
        case OPT_HELP: usage(stdout); return 0;
        case ':': die(EXIT_USAGE, name, "option needs a value");
        default: die(EXIT_USAGE, name, "unknown option");
        }
    }
    if (optind < argc) die(EXIT_USAGE, argv[optind], "unexpected argument");
    if (cab.rate_mbit > 0 && cab.rate_mbit < 0.001)
        die(EXIT_USAGE, "--rate-ab", "a rate is 0 (unlimited) or at least 0.001 Mbit/s");
    if (cba.rate_mbit > 0 && cba.rate_mbit < 0.001)
        die(EXIT_USAGE, "--rate-ba", "a rate is 0 (unlimited) or at least 0.001 Mbit/s");
    if (!tap_a) die(EXIT_USAGE, "command line", "--tap-a is required");
    if (!tap_b) die(EXIT_USAGE, "command line", "--tap-b is required");
    check_dev_name("--tap-a", tap_a);
    check_dev_name("--tap-b", tap_b);
    check_ns_name("--ns-a", ns_a);
    check_ns_name("--ns-b", ns_b);
    if (!strcmp(tap_a, tap_b) && !strcmp(ns_a ? ns_a : "", ns_b ? ns_b : ""))
        die(EXIT_USAGE, "--tap-b", "A and B are the same device '%s' in the same namespace",
            tap_a);

    // signals first: a signal sent as soon as the ready file appears must find them
    int sfd = signals_install();
    if (pdeath) {
        pid_t parent = getppid();
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
            die(EXIT_RUNTIME, "--die-with-parent", "prctl: %s", strerror(errno));
        if (getppid() != parent) raise(SIGTERM);   // the parent died before prctl
    }
    // timer precision: departures are scheduled to the microsecond
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

    Direction dirs[2];
    memset(dirs, 0, sizeof dirs);
    const DirConfig *cfg[2] = {&cab, &cba};
    for (int i = 0; i < 2; i++) {
        Direction *d = &dirs[i];
        snprintf(d->name, sizeof d->name, i == 0 ? "a->b" : "b->a");
        d->delay_ns = ms_to_ns(cfg[i]->delay_ms);
        d->jitter_ns = ms_to_ns(cfg[i]->jitter_ms);
        d->queue_ns = ms_to_ns(queue_ms);
        d->rate_bps = cfg[i]->rate_mbit * 1e6;
        d->loss = cfg[i]->loss_pct / 100;
        rng_seed(&d->loss_rng, seed, 2 * (uint64_t)i + 1);
        rng_seed(&d->jitter_rng, seed, 2 * (uint64_t)i + 2);
        dir_alloc(d, queue_ms, queue_frames);
    }
    uint8_t *buf = malloc(FRAME_MAX_BYTES);
    if (!buf) die(EXIT_RUNTIME, "setup", "out of memory");

    int home_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_fd < 0) die(EXIT_RUNTIME, "setup", "cannot open /proc/self/ns/net: %s",
                         strerror(errno));
    int fd_a = tap_open("--tap-a", tap_a, ns_a, home_fd);
    int fd_b = tap_open("--tap-b", tap_b, ns_b, home_fd);
    close(home_fd);
    dirs[0].in_fd = fd_a, dirs[0].out_fd = fd_b, dirs[0].in_dev = tap_a, dirs[0].out_dev = tap_b;
    dirs[1].in_fd = fd_b, dirs[1].out_fd = fd_a, dirs[1].in_dev = tap_b, dirs[1].out_dev = tap_a;
    for (int i = 0; i < 2; i++) {
        const Direction *d = &dirs[i];
        char rate[32];
        if (d->rate_bps > 0) snprintf(rate, sizeof rate, "%g Mbit/s", d->rate_bps / 1e6);
        else snprintf(rate, sizeof rate, "unlimited");
        fprintf(stderr, PROG ": %s (%s -> %s): delay %g ms jitter %g ms loss %g%% rate %s "
                "queue %g ms; store %zu frames %zu bytes\n", d->name, d->in_dev, d->out_dev,
                (double)d->delay_ns / 1e6, (double)d->jitter_ns / 1e6, d->loss * 100, rate,
                queue_ms, d->n_slots, d->data_bytes);
    }
    if (ready) write_ready_file(ready);

    int cut = 0, running = 1, more[2] = {0, 0};
    uint64_t cuts = 0;
    while (running) {
        int64_t now = mono_ns();
        int64_t next = INT64_MAX;
        for (int i = 0; i < 2; i++) {
            int64_t t = dir_send_due(&dirs[i], now);
            if (t < next) next = t;
        }
        struct pollfd pfd[3] = {
            {.fd = sfd, .events = POLLIN},
            {.fd = fd_a, .events = (short)(POLLIN | (dirs[1].out_blocked ? POLLOUT : 0))},
            {.fd = fd_b, .events = (short)(POLLIN | (dirs[0].out_blocked ? POLLOUT : 0))},
        };
        struct timespec ts, *tsp = NULL;
        if (more[0] || more[1]) next = now;   // a batch was cut short: only peek
        if (next != INT64_MAX) {
            int64_t wait = next > now ? next - now : 0;
            ts.tv_sec = (time_t)(wait / 1000000000);
            ts.tv_nsec = (long)(wait % 1000000000);
            tsp = &ts;
        }
        int n = ppoll(pfd, 3, tsp, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            die(EXIT_RUNTIME, "main loop", "ppoll: %s", strerror(errno));
        }
        if (pfd[0].revents & POLLIN) {
            unsigned char signo;
            while (read(sfd, &signo, 1) == 1) {
                // one line per signal, even when it changes nothing: scripts wait for it
                if (signo == SIGUSR1) {
                    if (!cut) {
                        cut = 1;
                        cuts++;
                        now = mono_ns();
                        dir_flush_cut(&dirs[0], now);
                        dir_flush_cut(&dirs[1], now);
                    }
                    fprintf(stderr, PROG ": SIGUSR1: link cut\n");
                } else if (signo == SIGUSR2) {
                    cut = 0;
                    fprintf(stderr, PROG ": SIGUSR2: link restored\n");
                } else {
                    running = 0;
                }
            }
        }
        for (int i = 0; i < 2; i++) {
            // dirs[0] reads A (pfd[1]), dirs[1] reads B (pfd[2])
            short ev = pfd[1 + i].revents;
            if (ev & (POLLERR | POLLNVAL))
                die(EXIT_RUNTIME, dirs[i].in_dev, "the TAP device reports an error");
            more[i] = (ev & POLLIN) || more[i] ? dir_read(&dirs[i], buf, cut) : 0;
        }
    }
    fprintf(stderr, PROG ": exiting; the link was cut %" PRIu64 " time(s)\n", cuts);
    dir_report(&dirs[0]);
    dir_report(&dirs[1]);
    close(fd_a);
    close(fd_b);
    close(sfd);
    close(sig_pipe_wr);
    for (int i = 0; i < 2; i++) {
        free(dirs[i].data);
        free(dirs[i].slots);
    }
    free(buf);
    return 0;
}
