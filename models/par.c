// par.c: the pool of par.h: workers that spin briefly, then sleep on a futex.
//
// One job at a time: the caller publishes (fn, ctx, n, grain), bumps the generation
// counter `gen` and takes chunks itself like the workers; a worker that finds none left
// decrements `pending`.
// Sleeping is Dekker-style with sequentially consistent atomics: a worker announces itself
// in `sleepers`, re-reads `gen` and only then waits on the futex; the caller bumps `gen`,
// then wakes if `sleepers` is non-zero. The caller's wait for `pending` works the same way
// with `waiting`.
#include "models/par.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "models/common.h"

extern void openblas_set_num_threads(int);

static struct {
    int nt;                       // threads in the pool, caller included
    pthread_t th[CX_PAR_MAX_THREADS];
    _Atomic unsigned gen;         // bumped once per job (and once to quit)
    _Atomic unsigned pending;     // workers still on the current job
    _Atomic int sleepers;         // workers on (or about to be on) the gen futex
    _Atomic int waiting;          // caller on (or about to be on) the pending futex
    _Atomic int busy;             // a par_run is in flight
    unsigned start_gen;           // gen when the workers were created
    int quit;
    ParFn fn;
    void *ctx;
    size_t n, grain;
    unsigned nchunks;
    _Atomic unsigned next;        // the next chunk to take
} P = {.nt = 1};

static _Thread_local int in_worker;

static void futex_wait(_Atomic unsigned *addr, unsigned val) {
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void futex_wake(_Atomic unsigned *addr) {
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, CX_PAR_MAX_THREADS, NULL, NULL, 0);
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Spins until *addr != val for up to CX_PAR_SPIN_US; returns 1 if it changed.
static int spin_while_equal(_Atomic unsigned *addr, unsigned val) {
    double t0 = 0.0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != val) return 1;
        cpu_relax();
        if ((i & 255) == 0) {
            double t = mono_now();
            if (t0 == 0.0) t0 = t;
            else if (t - t0 > 1e-6 * CX_PAR_SPIN_US) return 0;
        }
    }
}

// chunk c of [0, n) in nchunks, boundaries on multiples of grain
static void chunk(size_t n, size_t grain, unsigned nchunks, unsigned c, size_t *lo, size_t *hi) {
    size_t units = (n + grain - 1) / grain;
    size_t a = units * c / nchunks, b = units * (c + 1) / nchunks;
    *lo = a * grain < n ? a * grain : n;
    *hi = b * grain < n ? b * grain : n;
}

// Takes chunks until none is left (the caller and the workers alike): a thread slowed down
// by the machine takes fewer chunks instead of holding the others up.
static void take_chunks(int tid) {
    for (;;) {
        unsigned c = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed);
        if (c >= P.nchunks) return;
        size_t lo, hi;
        chunk(P.n, P.grain, P.nchunks, c, &lo, &hi);
        if (lo < hi) P.fn(P.ctx, tid, lo, hi);
    }
}

static void *worker_main(void *arg) {
    const int tid = (int)(size_t)arg;
    in_worker = 1;
    unsigned seen = P.start_gen;  // not gen now: a job may have been published already
    for (;;) {
        if (!spin_while_equal(&P.gen, seen)) {
            atomic_fetch_add(&P.sleepers, 1);
            while (atomic_load(&P.gen) == seen) futex_wait(&P.gen, seen);
            atomic_fetch_sub(&P.sleepers, 1);
        }
        seen = atomic_load_explicit(&P.gen, memory_order_acquire);
        if (P.quit) return NULL;
        take_chunks(tid);
        if (atomic_fetch_sub(&P.pending, 1) == 1 && atomic_load(&P.waiting))
            futex_wake(&P.pending);
    }
}

static void pool_stop(void) {
    if (P.nt <= 1) return;
    P.quit = 1;
    atomic_fetch_add(&P.gen, 1);
    futex_wake(&P.gen);
    for (int i = 1; i < P.nt; i++) pthread_join(P.th[i], NULL);
    P.quit = 0;
    P.nt = 1;
}

int par_default_threads(void) {
    cpu_set_t set;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
    if (n < 1) n = 1;
    // unbound ranks of one job on one node share its CPUs
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!local) local = getenv("MPI_LOCALNRANKS");
    int ranks = local ? atoi(local) : 1;
    if (ranks > 1 && n == online) n = n / ranks > 0 ? n / ranks : 1;
    return n;
}

// A child of fork() has none of the workers: its pool is the caller alone.
static void pool_forget_in_child(void) {
    P.nt = 1;
    atomic_store(&P.busy, 0);
    atomic_store(&P.sleepers, 0);
    atomic_store(&P.waiting, 0);
}

void par_set_threads(int n) {
    static int atfork_set;
    if (!atfork_set) {
        CHECK(pthread_atfork(NULL, NULL, pool_forget_in_child) == 0, "par: pthread_atfork failed");
        atfork_set = 1;
    }
    if (n <= 0) n = par_default_threads();
    if (n > CX_PAR_MAX_THREADS) n = CX_PAR_MAX_THREADS;
    openblas_set_num_threads(1);
    if (n == P.nt) return;
    pool_stop();
    P.start_gen = atomic_load(&P.gen);
    for (int i = 1; i < n; i++) {
        int rc = pthread_create(&P.th[i], NULL, worker_main, (void *)(size_t)i);
        CHECK(rc == 0, "par: cannot start worker thread %d of %d (error %d)", i, n, rc);
        P.nt = i + 1;
    }
}

int par_threads(void) { return P.nt; }

void par_run(size_t n, size_t grain, ParFn fn, void *ctx) {
    if (grain == 0) grain = 1;
    int expected = 0;
    if (P.nt <= 1 || n < 2 * grain || in_worker ||
        !atomic_compare_exchange_strong(&P.busy, &expected, 1)) {
        if (n > 0) fn(ctx, 0, 0, n);
        return;
    }
    P.fn = fn;
    P.ctx = ctx;
    P.n = n;
    P.grain = grain;
    const size_t units = (n + grain - 1) / grain, most = (size_t)P.nt * CX_PAR_CHUNKS_PER_THREAD;
    P.nchunks = (unsigned)(units < most ? units : most);
    atomic_store(&P.next, 0);
    atomic_store(&P.pending, (unsigned)(P.nt - 1));
    atomic_fetch_add(&P.gen, 1);
    if (atomic_load(&P.sleepers) > 0) futex_wake(&P.gen);
    take_chunks(0);
    double t0 = par_prof_begin();
    // spin while workers keep finishing, sleep when none has for CX_PAR_SPIN_US (the last
    // worker to finish wakes the caller)
    unsigned left;
    while ((left = atomic_load(&P.pending)) != 0) {
        if (spin_while_equal(&P.pending, left)) continue;
        atomic_store(&P.waiting, 1);
        if (atomic_load(&P.pending) == left) futex_wait(&P.pending, left);
        atomic_store(&P.waiting, 0);
    }
    par_prof_end(PAR_PROF_IDLE, t0);
    atomic_store(&P.busy, 0);
}

// ---------------------------------------------------------------------------------------
// profiling

const char *const par_prof_names[PAR_PROF_N] = {
    "gemm", "attention", "gelu", "layernorm", "dropout", "add", "bias_grad", "embedding",
    "xent", "optimizer", "copy", "idle"};

static int prof_on;
static double prof_acc[PAR_PROF_N];

void par_prof_enable(int on) { prof_on = on; }
void par_prof_reset(void) {
    for (int i = 0; i < PAR_PROF_N; i++) prof_acc[i] = 0.0;
}
void par_prof_get(double out[PAR_PROF_N]) {
    for (int i = 0; i < PAR_PROF_N; i++) out[i] = prof_acc[i];
}
double par_prof_begin(void) { return prof_on && !in_worker ? mono_now() : 0.0; }
void par_prof_end(int slot, double t0) {
    if (t0 != 0.0 && !in_worker) prof_acc[slot] += mono_now() - t0;
}
