// mpi_bench_tp: the tensor-parallel ALBERT encoder (mpi/tp_albert.h) on a P x Q grid of the
// ranks it is started with. Prints one line:
//
//   tp-bench: grid=PxQ step_ms=S param_mb_per_rank=M pgemm_gflops=G sgemm_gflops=R
//             gather_sgemm_ms=X pgemm_ratio=G/R block=C pblas_nb=K threads=T
//
//   step_ms            median forward + backward + gradient sums of one micro-batch
//   param_mb_per_rank  the rank's share of the encoder's parameters (rank 0's), MB
//   pgemm_gflops       PSGEMM's aggregate rate on the FFN's forward product (B*T, H) x (H, FF)
//                      over the grid's ranks (median)
//   sgemm_gflops       OpenBLAS sgemm's rate on the same product on rank 0 with every core
//                      (--cores threads) while the other ranks sleep: the machine's rate
//   gather_sgemm_ms    the plain-MPI reference of the same product: gather both operands to
//                      rank 0, one sgemm there (median)
//   block              the feature block (a grid row's heads together, tp_albert_create)
//   pblas_nb           PSGEMM's panel width (TP_PBLAS_NB, CONFLUX_PBLAS_NB)
// Every rank runs OpenBLAS on one thread for PSGEMM (P*Q ranks share the machine's cores);
// one rank (1x1) runs it on every core.
// usage: mpirun -np P*Q mpi_bench_tp --grid PxQ [--hidden 1024] [--heads 16] [--ffn 4096]
//        [--embedding 128] [--layers 1] [--batch 4] [--seq 128] [--reps 5] [--cores N]
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models/common.h"
#include "models/rng.h"
#include "models/train.h"
#include "mpi/dp.h"
#include "mpi/tp_albert.h"

void openblas_set_num_threads(int n);

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

// Waits at a barrier without spinning (the ranks that wait must leave the cores to rank 0).
static void sleepy_barrier(MPI_Comm comm) {
    MPI_Request r;
    MPI_CHECK(comm, MPI_Ibarrier(comm, &r));
    int done = 0;
    while (!done) {
        MPI_CHECK(comm, MPI_Test(&r, &done, MPI_STATUS_IGNORE));
        if (!done) nanosleep(&(struct timespec){0, 200000}, NULL);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm world = MPI_COMM_WORLD;  // a benchmark program's choice
    int rank, size;
    MPI_CHECK(world, MPI_Comm_rank(world, &rank));
    MPI_CHECK(world, MPI_Comm_size(world, &size));
    int P = 1, Q = 1, H = 1024, NH = 16, FF = 4096, E = 128, L = 1, B = 4, T = 128, reps = 5;
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    static const struct option opts[] = {
        {"grid", required_argument, 0, 'g'}, {"hidden", required_argument, 0, 'H'},
        {"heads", required_argument, 0, 'n'}, {"ffn", required_argument, 0, 'I'},
        {"embedding", required_argument, 0, 'E'}, {"layers", required_argument, 0, 'L'},
        {"batch", required_argument, 0, 'B'}, {"seq", required_argument, 0, 'T'},
        {"reps", required_argument, 0, 'r'}, {"cores", required_argument, 0, 'c'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'g': if (sscanf(optarg, "%dx%d", &P, &Q) != 2) P = 0; break;
        case 'H': H = atoi(optarg); break;
        case 'n': NH = atoi(optarg); break;
        case 'I': FF = atoi(optarg); break;
        case 'E': E = atoi(optarg); break;
        case 'L': L = atoi(optarg); break;
        case 'B': B = atoi(optarg); break;
        case 'T': T = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'c': cores = atoi(optarg); break;
        default:
            if (rank == 0) fprintf(stderr, "mpi_bench_tp: bad option (see the source's usage line)\n");
            MPI_Finalize();
            return 2;
        }
    }
    char err[CX_ERRLEN];
    TpGrid g;
    if (P < 1 || Q < 1 || reps < 1 || tp_grid_create(&g, world, P, Q, err) != 0) {
        if (rank == 0) fprintf(stderr, "mpi_bench_tp: %s\n", P < 1 || Q < 1 ? "--grid must be PxQ" : err);
        MPI_Finalize();
        return 2;
    }
    AlbertConfig cfg = {.vocab_size = 30000, .embedding_size = E, .hidden_size = H, .num_heads = NH,
                        .intermediate_size = FF, .num_layers = L, .max_position = 512, .dropout = 0.1f,
                        .ln_eps = 1e-12f, .init_std = 0.02f};
    if (albert_config_check(&cfg, err) != 0 || tp_albert_check(&cfg, &g, err) != 0) {
        if (rank == 0) fprintf(stderr, "mpi_bench_tp: %s\n", err);
        MPI_Finalize();
        return 2;
    }
    TpAlbert *m = tp_albert_create(&cfg, &g, B, T, 0);
    // parameters: HF initialisation of the whole arena on rank 0, dealt out
    TensorSpec specs[AP_COUNT];
    int n_specs;
    size_t n_full = albert_spec_table(&cfg, 1, specs, &n_specs);
    float *full = NULL;
    if (rank == 0) {
        full = cx_calloc(n_full, sizeof(float));
        tensor_init_hf(specs, full, 0, n_specs, 1, cfg.init_std);
    }
    tp_albert_load(m, full);
    free(full);
    const int N = B * T;
    int32_t *ids = cx_calloc((size_t)N, sizeof(int32_t)), *mask = cx_calloc((size_t)N, sizeof(int32_t));
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(cx_rng_u64(3, (uint64_t)i) % 30000), mask[i] = 1;
    AlbertBatch b = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask};
    TpMat dl;
    tp_albert_out_layout(m, B, T, &dl, NULL);
    float *dloc = cx_calloc((size_t)dl.lrows * dl.lcols + 1, sizeof(float));
    tp_albert_out_layout(m, B, T, &dl, dloc);
    for (size_t i = 0; i < (size_t)dl.lrows * dl.lcols; i++) dloc[i] = 1e-3f * cx_rng_normal(4, i);

    openblas_set_num_threads(P * Q == 1 ? cores : 1);  // every rank one thread; one rank all
    double *t = cx_calloc((size_t)reps + 1, sizeof(double));
    // the step: forward, backward, the grid's gradient sums
    for (int r = 0; r <= reps; r++) {
        MPI_CHECK(world, MPI_Barrier(world));
        double t0 = cx_now();
        tp_albert_encode(m, &b, 1, 9);
        tp_albert_encode_backward(m, &b, 1, 9, &dl);
        if (tp_albert_reduce_grads(m, err) != 0) CHECK(0, "%s", err);
        MPI_CHECK(world, MPI_Barrier(world));
        if (r > 0) t[r - 1] = cx_now() - t0;  // the first is warm-up
    }
    double step_ms = 1e3 * median(t, reps);

    // PSGEMM alone on the FFN's product: out (N, I) = inp (N, H) W^T, W (I, H)
    const int blk = tp_albert_block(m);
    TpMat X, W, Y;
    size_t nx = tp_local_count(&g, N, H, T, blk), nw = tp_local_count(&g, FF, H, blk % Q ? blk : blk / Q, blk);
    size_t ny = tp_local_count(&g, N, FF, T, blk);
    float *xa = cx_calloc(nx + 1, 4), *wa = cx_calloc(nw + 1, 4), *ya = cx_calloc(ny + 1, 4);
    for (size_t i = 0; i < nx; i++) xa[i] = cx_rng_normal(5, i);
    for (size_t i = 0; i < nw; i++) wa[i] = cx_rng_normal(6, i);
    tp_mat_init(&X, &g, N, H, T, blk, xa);
    tp_mat_init(&W, &g, FF, H, blk % Q ? blk : blk / Q, blk, wa);
    tp_mat_init(&Y, &g, N, FF, T, blk, ya);
    const double flops = 2.0 * N * H * FF;
    for (int r = 0; r <= reps; r++) {
        MPI_CHECK(world, MPI_Barrier(world));
        double t0 = cx_now();
        tp_linear_forward(&Y, &X, &W, NULL, &g);
        MPI_CHECK(world, MPI_Barrier(world));
        if (r > 0) t[r - 1] = cx_now() - t0;
    }
    double pgemm = flops / median(t, reps) / 1e9;

    // sgemm's rate on rank 0 with every core while the other ranks sleep; then the plain-MPI
    // reference: gather the operands to rank 0, one sgemm there
    float *Xf = NULL, *Wf = NULL, *Yf = NULL;
    if (rank == 0) {
        Xf = cx_calloc((size_t)N * H, 4), Wf = cx_calloc((size_t)FF * H, 4), Yf = cx_calloc((size_t)N * FF, 4);
        for (size_t i = 0; i < (size_t)N * H; i++) Xf[i] = cx_rng_normal(5, i);
        for (size_t i = 0; i < (size_t)FF * H; i++) Wf[i] = cx_rng_normal(6, i);
    }
    double *ts = cx_calloc((size_t)reps + 1, sizeof(double));
    if (rank == 0) {
        openblas_set_num_threads(cores);
        for (int r = 0; r <= reps; r++) {
            double t0 = cx_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, FF, H, 1.0f, Xf, H, Wf, H, 0.0f, Yf, FF);
            if (r > 0) ts[r - 1] = cx_now() - t0;
        }
    }
    sleepy_barrier(world);
    for (int r = 0; r <= reps; r++) {
        MPI_CHECK(world, MPI_Barrier(world));
        double t0 = cx_now();
        tp_gather(&X, &g, Xf, 0);
        tp_gather(&W, &g, Wf, 0);
        if (rank == 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, FF, H, 1.0f, Xf, H, Wf, H, 0.0f, Yf, FF);
        if (r > 0) t[r - 1] = cx_now() - t0;
        sleepy_barrier(world);
    }
    double gather_ms = 1e3 * median(t, reps), sgemm = flops / median(ts, reps) / 1e9;
    MPI_CHECK(world, MPI_Bcast(&sgemm, 1, MPI_DOUBLE, 0, world));
    MPI_CHECK(world, MPI_Bcast(&gather_ms, 1, MPI_DOUBLE, 0, world));
    if (rank == 0)
        printf("tp-bench: grid=%dx%d step_ms=%.1f param_mb_per_rank=%.2f pgemm_gflops=%.1f sgemm_gflops=%.1f "
               "gather_sgemm_ms=%.1f pgemm_ratio=%.2f block=%d pblas_nb=%d threads=%d\n",
               P, Q, step_ms, tp_albert_n_local(m) * 4.0 / 1e6, pgemm, sgemm, gather_ms, pgemm / sgemm,
               tp_albert_block(m), tp_pblas_nb(), cores);
    free(Xf), free(Wf), free(Yf), free(xa), free(wa), free(ya), free(t), free(ts), free(ids), free(mask), free(dloc);
    tp_albert_free(m);
    tp_grid_free(&g);
    MPI_Finalize();
    return 0;
}
