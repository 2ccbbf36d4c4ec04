// test_ckpt.c: HDF5 checkpoints (io/store/ckpt.h) and token shards (io/store/shard.h).
//
// Round trips are compared bit for bit (parameters are random 32-bit patterns, NaN payloads
// included). Damaged files are made from real ones: truncated at many lengths, a byte
// flipped inside a data chunk found with H5Dget_chunk_info, bytes flipped all over a small
// file, attributes and datasets rewritten with HDF5. Each must give -1 and a message naming
// the file (and the dataset), never a crash and never silently different data.
//
// CONFLUX_KEEP_CKPT=PATH: also saves the sample checkpoint at PATH (for test_ckpt_h5py.sh).
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/store/ckpt.h"
#include "io/store/shard.h"
#include "models/common.h"
#include "models/rng.h"
#include "tests/unit/testutil.h"

static char g_dir[256];

// A path in the test directory: TPATH(var, "name") declares a buffer; tpath() is for
// immediate use only (a few rotating buffers).
#define TPATH(var, name)        \
    char var[512];              \
    snprintf(var, sizeof var, "%s/%s", g_dir, name)

static const char *tpath(const char *name) {
    return tu_path(g_dir, name);
}

// LeakSanitizer (MODE=asan): HDF5 1.10.8 loses an object header's free-list blocks when that
// header fails its checksum, which the damaged-file tests provoke on purpose. Only HDF5's
// internal free-list allocations are suppressed; our allocations and HDF5's vlen strings
// (plain malloc) are still checked, and open HDF5 files and objects are counted after every
// test.
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:H5FL_reg_malloc\nleak:H5FL_blk_malloc\n";
}

// After every test: no HDF5 file, group, dataset, attribute or named type left open by the
// code under test or the test itself (H5Inmembers refuses library types in 1.10, so
// transient dataspaces and property lists are not counted).
static void check_no_open_ids(void) {
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n != 0) {
        fprintf(stderr, "\n  %zd HDF5 files/objects left open\n", n);
        CU_FAIL("HDF5 files or objects left open");
    }
}

// Full malloc stacks (libhdf5 has no frame pointers), so that the suppressions above can see
// the HDF5 frames.
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "fast_unwind_on_malloc=0";
}

static void test_setup(void) {}

// Byte-flip positions per file (fewer under AddressSanitizer, whose full malloc stacks make
// each HDF5 open slow).
#ifdef __SANITIZE_ADDRESS__
#define FLIPS_CKPT 200
#define FLIPS_SHARD 150
#else
#define FLIPS_CKPT 1500
#define FLIPS_SHARD 1000
#endif

static int suite_init(void) {
    return tu_make_tmpdir(g_dir, sizeof g_dir, "conflux_ckpt_");
}

static int suite_clean(void) {
    return tu_rm_tree(g_dir) == 0 ? 0 : -1;
}

// Number of "*.tmp.*" files left in the test directory.
static int count_tmp_files(void) {
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (buf) *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

static void spit(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void xor_byte(const char *path, long off, unsigned char mask) {
    int fd = open(path, O_RDWR);
    CU_ASSERT_FATAL(fd >= 0);
    unsigned char b;
    CU_ASSERT(pread(fd, &b, 1, off) == 1);
    b ^= mask;
    CU_ASSERT(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

// ---------------------------------------------------------------------------------------
// The sample state.

enum { N_SPECS = 8 };
#define V 67
#define E 8
#define H 12

typedef struct {
    TensorSpec specs[N_SPECS];
    TensorAlias aliases[2];
    float *params, *m, *v;
    size_t n_params;
    int64_t rng[4], cursor[3];
    CkptState st;
} Sample;

static const char *CONFIG =
    "[model]\nvocab_size = 67\nhidden = 12\n# комментарий по-русски\n[optim]\nname = lamb\n";

static void add_spec(Sample *s, int i, const char *name, int ndim, long d0, long d1, long d2,
                     long d3) {
    TensorSpec *t = &s->specs[i];
    long d[4] = {d0, d1, d2, d3};
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->n = 1;
    for (int k = 0; k < ndim; k++) {
        t->shape[k] = d[k];
        t->n *= (size_t)d[k];
    }
    t->offset = i == 0 ? 0 : s->specs[i - 1].offset + s->specs[i - 1].n;
}

static void fill_bits(float *a, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)cx_rng_u64(seed, i);
        memcpy(&a[i], &bits, sizeof bits);
    }
}

// big: include a tensor that spans several chunks. optim: include /optim.
static void sample_init(Sample *s, int big, int optim) {
    memset(s, 0, sizeof *s);
    int i = 0;
    add_spec(s, i++, "albert.embeddings.word_embeddings.weight", 2, V, E, 0, 0);
    add_spec(s, i++, "albert.embeddings.LayerNorm.bias", 1, E, 0, 0, 0);
    add_spec(s, i++, "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight",
             2, H, H, 0, 0);
    add_spec(s, i++, "predictions.bias", 1, V, 0, 0, 0);
    add_spec(s, i++, "big.weight", 2, big ? 300 : 3, big ? 1000 : 5, 0, 0);
    add_spec(s, i++, "tiny.scale", 1, 1, 0, 0, 0);
    add_spec(s, i++, "scalar.temperature", 0, 0, 0, 0, 0);
    add_spec(s, i++, "four.d", 4, 2, 3, 4, 5);
    s->n_params = s->specs[N_SPECS - 1].offset + s->specs[N_SPECS - 1].n;
    s->params = cx_calloc(s->n_params, sizeof(float));
    s->m = cx_calloc(s->n_params, sizeof(float));
    s->v = cx_calloc(s->n_params, sizeof(float));
    fill_bits(s->params, s->n_params, 1);
    fill_bits(s->m, s->n_params, 2);
    fill_bits(s->v, s->n_params, 3);
    s->params[0] = -0.0f;
    s->aliases[0] = (TensorAlias){"predictions.decoder.weight",
                                  "albert.embeddings.word_embeddings.weight"};
    s->aliases[1] = (TensorAlias){"predictions.decoder.bias", "predictions.bias"};
    int64_t rng[4] = {INT64_MIN, INT64_MAX, 0, -1};
    int64_t cur[3] = {42, 1234567890123LL, 7};
    memcpy(s->rng, rng, sizeof rng);
    memcpy(s->cursor, cur, sizeof cur);

    CkptState *st = &s->st;
    st->model = "albert";
    st->step = 123456789012L;
    st->samples_seen = 987654321098L;
    st->config_text = CONFIG;
    st->writer = "test_ckpt " CONFLUX_VERSION;
    st->specs = s->specs;
    st->n_specs = N_SPECS;
    st->aliases = s->aliases;
    st->n_aliases = 2;
    st->params = s->params;
    if (optim) {
        st->optim_name = "lamb";
        st->optim_step = 17;
        st->n_slots = 2;
        st->slot_names[0] = "exp_avg";
        st->slot_names[1] = "exp_avg_sq";
        st->slots[0] = s->m;
        st->slots[1] = s->v;
    }
    st->n_extra = 3;
    st->extra[0] = (CkptExtra){"rng/state", s->rng, 4};
    st->extra[1] = (CkptExtra){"data/cursor", s->cursor, 3};
    st->extra[2] = (CkptExtra){"data/empty", NULL, 0};
}

static void sample_free(Sample *s) {
    free(s->params);
    free(s->m);
    free(s->v);
}

// Opens and reads everything; 0 if every byte matches the sample, -1 on any error
// (message in err), 1 if something loaded but differs (silent corruption).
static int load_and_compare(const char *path, const Sample *s, char *err) {
    Ckpt *ck = NULL;
    float *buf = cx_calloc(s->n_params, sizeof(float));
    int rc = -1;
    if (ckpt_open(&ck, path, err)) goto out;
    if (ckpt_read_params(ck, s->specs, N_SPECS, buf, err)) goto out;
    rc = 1;
    if (memcmp(buf, s->params, s->n_params * sizeof(float)) != 0) goto out;
    if (strcmp(ckpt_model(ck), s->st.model) || ckpt_step(ck) != s->st.step ||
        ckpt_samples_seen(ck) != s->st.samples_seen || strcmp(ckpt_config_text(ck), CONFIG))
        goto out;
    if (s->st.optim_name) {
        char name[32];
        long step;
        rc = -1;
        if (ckpt_read_optim_info(ck, name, sizeof name, &step, err)) goto out;
        rc = 1;
        if (strcmp(name, "lamb") || step != 17) goto out;
        for (int k = 0; k < 2; k++) {
            rc = -1;
            if (ckpt_read_slot(ck, s->st.slot_names[k], s->specs, N_SPECS, buf, err)) goto out;
            rc = 1;
            if (memcmp(buf, k ? s->v : s->m, s->n_params * sizeof(float))) goto out;
        }
    }
    int64_t rng[4], cur[3];
    rc = -1;
    if (ckpt_read_extra(ck, "rng/state", rng, 4, err) ||
        ckpt_read_extra(ck, "/data/cursor", cur, 3, err) ||
        ckpt_read_extra(ck, "data/empty", NULL, 0, err))
        goto out;
    rc = 1;
    if (memcmp(rng, s->rng, sizeof rng) || memcmp(cur, s->cursor, sizeof cur)) goto out;
    rc = 0;
out:
    ckpt_close(ck);
    free(buf);
    return rc;
}

static int contains(const char *hay, const char *needle) {
    return strstr(hay, needle) != NULL;
}

// Reads a root string attribute with plain HDF5 (for fields the API does not expose).
static int h5_root_str(const char *path, const char *name, char *out, size_t cap) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    size_t size = H5Tget_size(t);
    int rc = -1;
    if (size < cap && H5Tis_variable_str(t) == 0) {
        memset(out, 0, cap);
        rc = H5Aread(a, t, out) < 0 ? -1 : 0;
    }
    H5Tclose(t);
    H5Aclose(a);
    H5Fclose(f);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Checkpoint tests.

static void test_ckpt_roundtrip(void) {
    Sample s;
    sample_init(&s, 1, 1);
    char err[CX_ERRLEN] = "";
    TPATH(p, "rt.h5");
    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    CU_ASSERT(count_tmp_files() == 0);
    CU_ASSERT(load_and_compare(p, &s, err) == 0);
    // overwrite in place with a different step
    s.st.step = 5;
    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    CU_ASSERT(load_and_compare(p, &s, err) == 0);

    Ckpt *ck = NULL;
    CU_ASSERT_FATAL(ckpt_open(&ck, p, err) == 0);
    CU_ASSERT_STRING_EQUAL(ckpt_model(ck), "albert");
    CU_ASSERT(ckpt_step(ck) == 5);
    CU_ASSERT_STRING_EQUAL(ckpt_config_text(ck), CONFIG);

    // aliases read like parameters and hold the target's data
    TensorSpec al[2] = {s.specs[0], s.specs[3]};
    snprintf(al[0].name, CX_NAME_LEN, "predictions.decoder.weight");
    snprintf(al[1].name, CX_NAME_LEN, "predictions.decoder.bias");
    float *buf = cx_calloc(s.n_params, sizeof(float));
    CU_ASSERT(ckpt_read_params(ck, al, 2, buf, err) == 0);
    CU_ASSERT(memcmp(buf + al[0].offset, s.params + al[0].offset, al[0].n * sizeof(float)) == 0);
    CU_ASSERT(memcmp(buf + al[1].offset, s.params + al[1].offset, al[1].n * sizeof(float)) == 0);

    // any dataset by absolute path, exact counts and dtypes
    float one;
    CU_ASSERT(ckpt_read_float(ck, "/params/tiny.scale", &one, 1, err) == 0);
    CU_ASSERT(memcmp(&one, s.params + s.specs[5].offset, sizeof one) == 0);
    CU_ASSERT(ckpt_read_float(ck, "/params/scalar.temperature", &one, 1, err) == 0);
    CU_ASSERT(memcmp(&one, s.params + s.specs[6].offset, sizeof one) == 0);
    float two[2];
    CU_ASSERT(ckpt_read_float(ck, "/params/tiny.scale", two, 2, err) == -1);
    CU_ASSERT(contains(err, "/params/tiny.scale") && contains(err, "expected 2"));
    int32_t i32;
    CU_ASSERT(ckpt_read_int32(ck, "/params/tiny.scale", &i32, 1, err) == -1);
    CU_ASSERT(contains(err, "dtype is float32, expected int32"));
    int64_t x[5];
    CU_ASSERT(ckpt_read_extra(ck, "rng/state", x, 5, err) == -1);
    CU_ASSERT(contains(err, "/rng/state") && contains(err, "holds 4 elements"));
    CU_ASSERT(ckpt_read_float(ck, "/params", &one, 1, err) == -1);
    CU_ASSERT(contains(err, "not a dataset"));
    CU_ASSERT(ckpt_read_float(ck, "/nothing/here", &one, 1, err) == -1);
    CU_ASSERT(contains(err, "/nothing/here") && contains(err, "missing dataset"));
    ckpt_close(ck);
    free(buf);

    // attributes not exposed by the API, the link structure and the filters
    char created[64], writer[64], fmt[64];
    CU_ASSERT(h5_root_str(p, "created", created, sizeof created) == 0);
    CU_ASSERT(strlen(created) == 20 && created[4] == '-' && created[10] == 'T' &&
              created[19] == 'Z');
    CU_ASSERT(h5_root_str(p, "writer", writer, sizeof writer) == 0);
    CU_ASSERT_STRING_EQUAL(writer, "test_ckpt " CONFLUX_VERSION);
    CU_ASSERT(h5_root_str(p, "format", fmt, sizeof fmt) == 0);
    CU_ASSERT_STRING_EQUAL(fmt, "conflux-checkpoint");
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    H5L_info_t li;
    CU_ASSERT(H5Lget_info(f, "/params/predictions.decoder.weight", &li, H5P_DEFAULT) >= 0);
    CU_ASSERT(li.type == H5L_TYPE_HARD);
    hid_t d1 = H5Dopen2(f, "/params/predictions.decoder.weight", H5P_DEFAULT);
    hid_t d2 = H5Dopen2(f, "/params/albert.embeddings.word_embeddings.weight", H5P_DEFAULT);
    hid_t d3 = H5Dopen2(f, "/params/big.weight", H5P_DEFAULT);
    H5O_info_t o1, o2;
    CU_ASSERT(H5Oget_info(d1, &o1) >= 0 && H5Oget_info(d2, &o2) >= 0);
    CU_ASSERT(o1.addr == o2.addr && o1.rc == 2);
    hid_t dcpl = H5Dget_create_plist(d3);
    CU_ASSERT(H5Pget_layout(dcpl) == H5D_CHUNKED);
    unsigned flags;
    size_t nelm = 0;
    CU_ASSERT(H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &nelm, NULL, 0, NULL,
                                   NULL) >= 0);
    hid_t sp = H5Dget_space(d3);
    hsize_t nchunks = 0;
    CU_ASSERT(H5Dget_num_chunks(d3, sp, &nchunks) >= 0 && nchunks >= 2);
    H5Sclose(sp);
    H5Pclose(dcpl);
    H5Dclose(d1);
    H5Dclose(d2);
    H5Dclose(d3);
    H5Fclose(f);
    sample_free(&s);
}

static void test_ckpt_no_optim(void) {
    Sample s;
    sample_init(&s, 0, 0);
    char err[CX_ERRLEN] = "", name[16];
    long step;
    TPATH(p, "noopt.h5");
    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    CU_ASSERT(load_and_compare(p, &s, err) == 0);
    Ckpt *ck = NULL;
    CU_ASSERT_FATAL(ckpt_open(&ck, p, err) == 0);
    CU_ASSERT(ckpt_read_optim_info(ck, name, sizeof name, &step, err) == -1);
    CU_ASSERT(contains(err, "no /optim group") && contains(err, p));
    CU_ASSERT(ckpt_read_slot(ck, "exp_avg", s.specs, N_SPECS, s.m, err) == -1);
    CU_ASSERT(contains(err, "/optim/albert.embeddings.word_embeddings.weight/exp_avg"));
    ckpt_close(ck);
    // optimizer name too long for the caller's buffer
    s.st.optim_name = "a-very-long-optimizer-name";
    s.st.n_slots = 0;
    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    CU_ASSERT_FATAL(ckpt_open(&ck, p, err) == 0);
    CU_ASSERT(ckpt_read_optim_info(ck, name, sizeof name, &step, err) == -1);
    CU_ASSERT(contains(err, "too long"));
    char big[64];
    CU_ASSERT(ckpt_read_optim_info(ck, big, sizeof big, &step, err) == 0);
    CU_ASSERT_STRING_EQUAL(big, "a-very-long-optimizer-name");
    ckpt_close(ck);
    sample_free(&s);
}

static void test_ckpt_truncated(void) {
    Sample s;
    sample_init(&s, 1, 1);
    char err[CX_ERRLEN] = "";
    TPATH(p, "full.h5");
    TPATH(q, "cut.h5");
    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    size_t n;
    unsigned char *all = slurp(p, &n);
    CU_ASSERT_FATAL(all != NULL && n > 100000);
    size_t cuts[] = {1, 7, 8, 48, 100, 511, 2048, 4096, n / 10, n / 3, n / 2, n - 65536,
                     n - 4096, n - 100, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(q, all, cuts[i]);
        err[0] = '\0';
        int rc = load_and_compare(q, &s, err);
        CU_ASSERT(rc == -1);
        CU_ASSERT(contains(err, q));
        if (cuts[i] >= 8) CU_ASSERT(contains(err, "truncated"));
    }
    free(all);
    sample_free(&s);
}

// Flips one byte inside the first and the last chunk of a dataset located with
// H5Dget_chunk_info; every read of it must fail with a checksum error.
static void test_ckpt_corrupt_chunk(void) {
    Sample s;
    sample_init(&s, 1, 1);
    char err[CX_ERRLEN] = "";
    TPATH(p, "chunk.h5");
    const char *targets[] = {"/params/big.weight", "/params/predictions.bias",
                             "/params/scalar.temperature", "/optim/four.d/exp_avg_sq",
                             "/rng/state"};
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        for (int which = 0; which < 3; which++) {
            CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
            hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
            hid_t d = H5Dopen2(f, targets[t], H5P_DEFAULT);
            CU_ASSERT_FATAL(d >= 0);
            haddr_t addr = HADDR_UNDEF;
            hsize_t size = 0;
            hid_t dcpl = H5Dget_create_plist(d);
            if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
                hid_t sp = H5Dget_space(d);
                hsize_t nch = 0, off[4];
                unsigned mask;
                CU_ASSERT(H5Dget_num_chunks(d, sp, &nch) >= 0 && nch >= 1);
                hsize_t idx = which == 0 ? 0 : nch - 1;
                CU_ASSERT(H5Dget_chunk_info(d, sp, idx, off, &mask, &addr, &size) >= 0);
                H5Sclose(sp);
            } else {
                // compact scalar: its value lives in the (checksummed) object header; find it
                H5O_info_t oi;
                CU_ASSERT(H5Oget_info(d, &oi) >= 0);
                addr = oi.addr;
                size = 64;
            }
            H5Pclose(dcpl);
            H5Dclose(d);
            H5Fclose(f);
            CU_ASSERT_FATAL(addr != HADDR_UNDEF && size > 4);
            // data byte in the middle, first byte, or (layout permitting) the stored checksum
            long off = which == 0 ? (long)(addr + size / 2)
                     : which == 1 ? (long)addr : (long)(addr + size - 1);
            xor_byte(p, off, 0x5a);
            err[0] = '\0';
            int rc = load_and_compare(p, &s, err);
            CU_ASSERT(rc == -1);
            CU_ASSERT(contains(err, p));
            if (!contains(targets[t], "scalar")) {
                CU_ASSERT(contains(err, targets[t]));
                CU_ASSERT(contains(err, "checksum"));
            }
        }
    }
    sample_free(&s);
}

// Flips bytes all over a small checkpoint: every load either fails with a message or
// returns exactly the original data. Never a crash.
static void test_ckpt_flip_everywhere(void) {
    Sample s;
    sample_init(&s, 0, 1);
    char err[CX_ERRLEN] = "";
    TPATH(p, "flip.h5");
    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    struct stat sb;
    CU_ASSERT_FATAL(stat(p, &sb) == 0);
    long n = (long)sb.st_size, step = n / FLIPS_CKPT + 1;
    int errors = 0, same = 0, silent = 0;
    for (long off = 0; off < n; off += step) {
        unsigned char mask = (unsigned char)(1u << (off % 8));
        xor_byte(p, off, mask);
        err[0] = '\0';
        int rc = load_and_compare(p, &s, err);
        xor_byte(p, off, mask);
        if (rc == -1) {
            errors++;
            if (!contains(err, p)) CU_FAIL("error message does not name the file");
        } else if (rc == 0) {
            same++;
        } else {
            silent++;
            fprintf(stderr, "\n  silent change with byte %ld flipped (of %ld)\n", off, n);
        }
    }
    fprintf(stderr, "(%ld-byte file, %d bytes flipped: %d errors, %d unchanged) ", n,
            errors + same + silent, errors, same);
    CU_ASSERT(silent == 0);
    CU_ASSERT(errors > 0);
    CU_ASSERT(load_and_compare(p, &s, err) == 0);
    sample_free(&s);
}

static void test_ckpt_not_hdf5(void) {
    char err[CX_ERRLEN] = "";
    Ckpt *ck = (Ckpt *)1;
    TPATH(p, "random.bin");
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)cx_rng_u64(9, i);
    spit(p, junk, sizeof junk);
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(ck == NULL);
    CU_ASSERT(contains(err, p) && contains(err, "not an HDF5 file"));
    spit(p, "", 0);
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(contains(err, p) && contains(err, "empty file"));
    // the HDF5 signature followed by junk
    memcpy(junk, "\211HDF\r\n\032\n", 8);
    spit(p, junk, sizeof junk);
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(contains(err, p));
    CU_ASSERT(ckpt_open(&ck, tpath("does-not-exist.h5"), err) == -1);
    CU_ASSERT(contains(err, "does-not-exist.h5") && contains(err, "No such file"));
    CU_ASSERT(ckpt_open(&ck, g_dir, err) == -1);
    CU_ASSERT(contains(err, "not a regular file"));
}

// Rewrites a root attribute of an existing file with plain HDF5.
static void set_root_attr(const char *path, const char *name, const char *sval, int ival) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    if (sval || ival >= 0) {
        hid_t sp = H5Screate(H5S_SCALAR), t;
        if (sval) {
            t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, strlen(sval) + 1);
        } else {
            t = H5Tcopy(H5T_STD_I64LE);
        }
        hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        int64_t v = ival;
        CU_ASSERT(H5Awrite(a, sval ? t : H5T_NATIVE_INT64, sval ? (const void *)sval : &v) >= 0);
        H5Aclose(a);
        H5Tclose(t);
        H5Sclose(sp);
    }
    H5Fclose(f);
}

static void test_ckpt_bad_header(void) {
    Sample s;
    sample_init(&s, 0, 0);
    char err[CX_ERRLEN] = "";
    Ckpt *ck = NULL;
    TPATH(p, "hdr.h5");

    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    set_root_attr(p, "format", "something-else", -1);
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(contains(err, p) && contains(err, "not a conflux checkpoint") &&
              contains(err, "something-else"));

    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    set_root_attr(p, "format", NULL, -1);
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(contains(err, "no format attribute"));

    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    set_root_attr(p, "format", NULL, 7);   // an integer where a string belongs
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(contains(err, "format") && contains(err, "not a single string"));

    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    set_root_attr(p, "version", NULL, 2);
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(contains(err, p) && contains(err, "unsupported checkpoint version 2"));

    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    set_root_attr(p, "version", "1", -1);   // a string where an integer belongs
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(contains(err, "version") && contains(err, "not a single integer"));

    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "config", H5P_DEFAULT);
    H5Fclose(f);
    CU_ASSERT(ckpt_open(&ck, p, err) == -1);
    CU_ASSERT(contains(err, "missing dataset /config"));

    // a shard is not a checkpoint
    ShardWriter *w;
    CU_ASSERT_FATAL(shard_writer_open(&w, tpath("s.h5"), 10, "fp", err) == 0);
    CU_ASSERT_FATAL(shard_writer_close(w, err) == 0);
    CU_ASSERT(ckpt_open(&ck, tpath("s.h5"), err) == -1);
    CU_ASSERT(contains(err, "format is \"conflux-shard\""));
    CU_ASSERT(ck == NULL);
    sample_free(&s);
}

static void test_ckpt_bad_datasets(void) {
    Sample s;
    sample_init(&s, 0, 1);
    char err[CX_ERRLEN] = "";
    Ckpt *ck = NULL;
    TPATH(p, "ds.h5");
    float *buf = cx_calloc(s.n_params, sizeof(float));

    // missing: deleted from the file, and a name the file never had
    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT(H5Ldelete(f, "/params/albert.embeddings.LayerNorm.bias", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    CU_ASSERT_FATAL(ckpt_open(&ck, p, err) == 0);
    CU_ASSERT(ckpt_read_params(ck, s.specs, N_SPECS, buf, err) == -1);
    CU_ASSERT(contains(err, p) &&
              contains(err, "dataset /params/albert.embeddings.LayerNorm.bias: missing dataset"));
    ckpt_close(ck);

    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    CU_ASSERT_FATAL(ckpt_open(&ck, p, err) == 0);
    TensorSpec other = s.specs[1];
    snprintf(other.name, CX_NAME_LEN, "albert.pooler.weight");
    CU_ASSERT(ckpt_read_params(ck, &other, 1, buf, err) == -1);
    CU_ASSERT(contains(err, "/params/albert.pooler.weight: missing dataset"));

    // wrong shape: same element count, transposed
    TensorSpec tr = s.specs[0];
    tr.shape[0] = E;
    tr.shape[1] = V;
    CU_ASSERT(ckpt_read_params(ck, &tr, 1, buf, err) == -1);
    CU_ASSERT(contains(err, "/params/albert.embeddings.word_embeddings.weight: shape is (67,8), "
                            "expected (8,67)"));
    TensorSpec flat = s.specs[0];
    flat.ndim = 1;
    flat.shape[0] = V * E;
    CU_ASSERT(ckpt_read_params(ck, &flat, 1, buf, err) == -1);
    CU_ASSERT(contains(err, "shape is (67,8), expected (536)"));
    TensorSpec sc = s.specs[5];   // (1,) read as a scalar
    sc.ndim = 0;
    CU_ASSERT(ckpt_read_params(ck, &sc, 1, buf, err) == -1);
    CU_ASSERT(contains(err, "shape is (1), expected ()"));
    CU_ASSERT(ckpt_read_slot(ck, "exp_avg", &tr, 1, buf, err) == -1);
    CU_ASSERT(contains(err, "/optim/albert.embeddings.word_embeddings.weight/exp_avg: shape"));
    CU_ASSERT(ckpt_read_slot(ck, "momentum", s.specs, 1, buf, err) == -1);
    CU_ASSERT(contains(err, "/exp_avg") == 0 && contains(err, "momentum: missing dataset"));
    ckpt_close(ck);

    // wrong dtype: a float64 parameter and an int32 extra
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT(H5Ldelete(f, "/params/predictions.bias", H5P_DEFAULT) >= 0);
    CU_ASSERT(H5Ldelete(f, "/params/predictions.decoder.bias", H5P_DEFAULT) >= 0);
    hsize_t dims[1] = {V};
    double dd[V] = {0};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "/params/predictions.bias", H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, dd);
    H5Dclose(d);
    H5Sclose(sp);
    CU_ASSERT(H5Ldelete(f, "/rng/state", H5P_DEFAULT) >= 0);
    dims[0] = 4;
    int32_t ii[4] = {1, 2, 3, 4};
    sp = H5Screate_simple(1, dims, NULL);
    d = H5Dcreate2(f, "/rng/state", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ii);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
    CU_ASSERT_FATAL(ckpt_open(&ck, p, err) == 0);
    CU_ASSERT(ckpt_read_params(ck, s.specs, N_SPECS, buf, err) == -1);
    CU_ASSERT(contains(err, "/params/predictions.bias: dtype is float64, expected float32"));
    int64_t r[4];
    CU_ASSERT(ckpt_read_extra(ck, "rng/state", r, 4, err) == -1);
    CU_ASSERT(contains(err, "/rng/state: dtype is int32, expected int64"));
    int32_t r32[4];
    CU_ASSERT(ckpt_read_int32(ck, "/rng/state", r32, 4, err) == 0);
    CU_ASSERT(r32[3] == 4);
    ckpt_close(ck);
    free(buf);
    sample_free(&s);
}

static void test_ckpt_failed_save(void) {
    Sample s;
    sample_init(&s, 0, 1);
    char err[CX_ERRLEN] = "";
    TPATH(p, "keep.h5");
    CU_ASSERT_FATAL(ckpt_save(p, &s.st, err) == 0);
    size_t n0, n1;
    unsigned char *before = slurp(p, &n0);

    // fails half way through writing (two datasets with one name)
    Sample bad;
    sample_init(&bad, 0, 1);
    snprintf(bad.specs[4].name, CX_NAME_LEN, "%s", bad.specs[2].name);
    CU_ASSERT(ckpt_save(p, &bad.st, err) == -1);
    CU_ASSERT(strncmp(err, "cannot write checkpoint ", 24) == 0 && contains(err, p));
    CU_ASSERT(contains(err, bad.specs[2].name));
    CU_ASSERT(count_tmp_files() == 0);
    sample_free(&bad);

    // invalid requests are refused before anything is written
    sample_init(&bad, 0, 1);
    bad.aliases[0].target = "no.such.tensor";
    CU_ASSERT(ckpt_save(p, &bad.st, err) == -1);
    CU_ASSERT(contains(err, "no.such.tensor"));
    bad.aliases[0].target = s.aliases[0].target;
    bad.st.extra[0].path = "params/x";
    CU_ASSERT(ckpt_save(p, &bad.st, err) == -1);
    CU_ASSERT(contains(err, "reserved"));
    bad.st.extra[0].path = "a/b/c";
    CU_ASSERT(ckpt_save(p, &bad.st, err) == -1);
    CU_ASSERT(contains(err, "a/b/c"));
    bad.st.extra[0].path = "rng/state";
    bad.specs[1].n = 3;
    CU_ASSERT(ckpt_save(p, &bad.st, err) == -1);
    CU_ASSERT(contains(err, "albert.embeddings.LayerNorm.bias"));
    bad.specs[1].n = E;
    snprintf(bad.specs[1].name, CX_NAME_LEN, "has/slash");
    CU_ASSERT(ckpt_save(p, &bad.st, err) == -1);
    CU_ASSERT(contains(err, "invalid name"));
    sample_free(&bad);

    // missing directory; target is a non-empty directory (rename fails after writing)
    CU_ASSERT(ckpt_save(tpath("no-such-dir/x.h5"), &s.st, err) == -1);
    CU_ASSERT(contains(err, "cannot write checkpoint") && contains(err, "no-such-dir/x.h5") &&
              contains(err, "No such file or directory"));
    TPATH(dir, "occupied");
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    spit(tpath("occupied/file"), "x", 1);
    CU_ASSERT(ckpt_save(dir, &s.st, err) == -1);
    CU_ASSERT(contains(err, "rename"));
    CU_ASSERT(count_tmp_files() == 0);
    unlink(tpath("occupied/file"));
    rmdir(dir);

    // read-only directory (meaningless as root, who may write anyway)
    if (geteuid() != 0) {
        TPATH(ro, "ro");
        CU_ASSERT_FATAL(mkdir(ro, 0755) == 0);
        chmod(ro, 0555);
        CU_ASSERT(ckpt_save(tpath("ro/x.h5"), &s.st, err) == -1);
        CU_ASSERT(contains(err, "Permission denied"));
        chmod(ro, 0755);
        rmdir(ro);
    }

    unsigned char *after = slurp(p, &n1);
    CU_ASSERT(n0 == n1 && memcmp(before, after, n0) == 0);
    CU_ASSERT(load_and_compare(p, &s, err) == 0);
    free(before);
    free(after);
    sample_free(&s);
}

// Reads a checkpoint written by tests/ref/albert_golden.py (h5py, variable-length strings),
// when it is there.
static void test_ckpt_h5py_written(void) {
    const char *p = "tests/ref/albert_tiny.h5";
    if (access(p, R_OK) != 0) return;
    char err[CX_ERRLEN] = "";
    Ckpt *ck = NULL;
    CU_ASSERT_FATAL(ckpt_open(&ck, p, err) == 0);
    CU_ASSERT_STRING_EQUAL(ckpt_model(ck), "albert");
    CU_ASSERT(strlen(ckpt_config_text(ck)) > 0);
    float loss;
    CU_ASSERT(ckpt_read_float(ck, "/golden/loss_sum", &loss, 1, err) == 0);
    ckpt_close(ck);
}

static void test_ckpt_keep_sample(void) {
    const char *keep = getenv("CONFLUX_KEEP_CKPT");
    if (!keep || !keep[0]) return;
    Sample s;
    sample_init(&s, 1, 1);
    char err[CX_ERRLEN] = "";
    // finite values for readers that print statistics
    for (size_t i = 0; i < s.n_params; i++) {
        s.params[i] = cx_rng_normal(11, i);
        s.m[i] = cx_rng_normal(12, i);
        s.v[i] = cx_rng_uniform(13, i);
    }
    CU_ASSERT(ckpt_save(keep, &s.st, err) == 0);
    if (err[0]) fprintf(stderr, "%s\n", err);
    CU_ASSERT(load_and_compare(keep, &s, err) == 0);
    sample_free(&s);
}

// ---------------------------------------------------------------------------------------
// Shard tests.

static int32_t tok(uint64_t seed, uint64_t i, int vocab) {
    return (int32_t)(cx_rng_u64(seed, i) % (uint64_t)vocab);
}

static void test_shard_roundtrip(void) {
    const int vocab = 1000, n_docs = 3000;
    char err[CX_ERRLEN] = "";
    TPATH(p, "shard.h5");
    ShardWriter *w = NULL;
    CU_ASSERT_FATAL(shard_writer_open(&w, p, vocab, "bpe-8192-abcdef", err) == 0);
    size_t cap = 200000, total = 0;
    int32_t *doc = malloc(cap * sizeof *doc);
    int64_t *offs = malloc((n_docs + 1) * sizeof *offs);
    offs[0] = 0;
    for (int d = 0; d < n_docs; d++) {
        uint64_t r = cx_rng_u64(5, (uint64_t)d);
        size_t len = r % 10 == 0 ? 0 : (size_t)(r >> 32) % 300;
        if (d == 1000) len = 150000;   // one document longer than two chunks
        for (size_t i = 0; i < len; i++) doc[i] = tok(6, total + i, vocab);
        if (d == 7) doc[0] = 0, doc[1] = vocab - 1;
        CU_ASSERT_FATAL(shard_writer_add(w, doc, len, err) == 0);
        total += len;
        offs[d + 1] = (int64_t)total;
    }
    CU_ASSERT(count_tmp_files() == 1);
    CU_ASSERT(access(p, F_OK) != 0);   // nothing at PATH before close
    CU_ASSERT_FATAL(shard_writer_close(w, err) == 0);
    CU_ASSERT(count_tmp_files() == 0);

    Shard s;
    CU_ASSERT_FATAL(shard_read(&s, p, err) == 0);
    CU_ASSERT(s.n_docs == (size_t)n_docs);
    CU_ASSERT(s.n_tokens == total);
    CU_ASSERT(total > 4 * 65536);
    CU_ASSERT(s.vocab_size == vocab);
    CU_ASSERT_STRING_EQUAL(s.tokenizer, "bpe-8192-abcdef");
    CU_ASSERT(memcmp(s.doc_offsets, offs, (n_docs + 1) * sizeof *offs) == 0);
    int ok = 1;
    total = 0;
    for (int d = 0; d < n_docs && ok; d++) {
        for (int64_t i = offs[d]; i < offs[d + 1]; i++)
            if (s.tokens[i] != (d == 7 && i == offs[d] ? 0
                                : d == 7 && i == offs[d] + 1 ? vocab - 1
                                : tok(6, (uint64_t)i, vocab)))
                ok = 0;
    }
    CU_ASSERT(ok);
    shard_free(&s);
    CU_ASSERT(s.tokens == NULL);
    free(doc);
    free(offs);

    // no documents at all; only empty documents
    CU_ASSERT_FATAL(shard_writer_open(&w, p, 5, "", err) == 0);
    CU_ASSERT_FATAL(shard_writer_close(w, err) == 0);
    CU_ASSERT_FATAL(shard_read(&s, p, err) == 0);
    CU_ASSERT(s.n_docs == 0 && s.n_tokens == 0 && s.doc_offsets[0] == 0);
    shard_free(&s);
    CU_ASSERT_FATAL(shard_writer_open(&w, p, 5, "fp", err) == 0);
    for (int d = 0; d < 3; d++) CU_ASSERT(shard_writer_add(w, NULL, 0, err) == 0);
    CU_ASSERT_FATAL(shard_writer_close(w, err) == 0);
    CU_ASSERT_FATAL(shard_read(&s, p, err) == 0);
    CU_ASSERT(s.n_docs == 3 && s.n_tokens == 0 && s.doc_offsets[3] == 0);
    shard_free(&s);

    // many tiny documents: /doc_offsets spans several chunks
    const size_t many = 300000;
    CU_ASSERT_FATAL(shard_writer_open(&w, p, 7, "fp", err) == 0);
    int added = 1;
    for (size_t d = 0; d < many && added; d++) {
        int32_t t = (int32_t)(d % 7);
        added = shard_writer_add(w, &t, d % 3 == 0 ? 0 : 1, err) == 0;
    }
    CU_ASSERT_FATAL(added);
    CU_ASSERT_FATAL(shard_writer_close(w, err) == 0);
    CU_ASSERT_FATAL(shard_read(&s, p, err) == 0);
    CU_ASSERT(s.n_docs == many && s.n_tokens == many - many / 3);
    ok = 1;
    for (size_t d = 0; d < many && ok; d++) {
        int64_t len = s.doc_offsets[d + 1] - s.doc_offsets[d];
        if (len != (d % 3 == 0 ? 0 : 1) || (len && s.tokens[s.doc_offsets[d]] != (int32_t)(d % 7)))
            ok = 0;
    }
    CU_ASSERT(ok);
    shard_free(&s);
}

static void test_shard_writer_errors(void) {
    char err[CX_ERRLEN] = "";
    TPATH(p, "w.h5");
    ShardWriter *w = NULL;
    int32_t good[3] = {1, 2, 3}, bad[3] = {1, 10, 3}, neg[1] = {-1};
    CU_ASSERT_FATAL(shard_writer_open(&w, p, 10, "fp", err) == 0);
    CU_ASSERT(shard_writer_add(w, good, 3, err) == 0);
    CU_ASSERT(shard_writer_add(w, bad, 3, err) == -1);
    CU_ASSERT(contains(err, p) && contains(err, "token 1 is 10, outside [0, 10)"));
    CU_ASSERT(shard_writer_add(w, neg, 1, err) == -1);
    CU_ASSERT(shard_writer_add(w, good, 2, err) == 0);   // still usable; bad docs left out
    CU_ASSERT_FATAL(shard_writer_close(w, err) == 0);
    Shard s;
    CU_ASSERT_FATAL(shard_read(&s, p, err) == 0);
    CU_ASSERT(s.n_docs == 2 && s.n_tokens == 5 && s.doc_offsets[1] == 3);
    shard_free(&s);

    // abort leaves nothing behind
    CU_ASSERT_FATAL(shard_writer_open(&w, tpath("aborted.h5"), 10, "fp", err) == 0);
    CU_ASSERT(shard_writer_add(w, good, 3, err) == 0);
    shard_writer_abort(w);
    CU_ASSERT(access(tpath("aborted.h5"), F_OK) != 0);
    CU_ASSERT(count_tmp_files() == 0);

    CU_ASSERT(shard_writer_open(&w, tpath("nodir/x.h5"), 10, "fp", err) == -1);
    CU_ASSERT(w == NULL && contains(err, "nodir/x.h5") && contains(err, "No such file"));
    CU_ASSERT(shard_writer_open(&w, p, 0, "fp", err) == -1);
    char longfp[200];
    memset(longfp, 'a', sizeof longfp - 1);
    longfp[sizeof longfp - 1] = '\0';
    CU_ASSERT(shard_writer_open(&w, p, 10, longfp, err) == -1);
    CU_ASSERT(count_tmp_files() == 0);
}

static int write_small_shard(const char *p, int vocab) {
    char err[CX_ERRLEN];
    ShardWriter *w = NULL;
    if (shard_writer_open(&w, p, vocab, "fp", err)) return -1;
    int32_t doc[100];
    for (int d = 0; d < 50; d++) {
        for (int i = 0; i < 100; i++) doc[i] = tok(8, (uint64_t)(d * 100 + i), vocab);
        doc[0] = vocab - 1;
        if (shard_writer_add(w, doc, (size_t)(d % 7) * 14, err)) return -1;
    }
    return shard_writer_close(w, err);
}

static void test_shard_damaged(void) {
    char err[CX_ERRLEN] = "";
    TPATH(p, "bad.h5");
    TPATH(q, "bad-cut.h5");
    Shard s;

    // a token out of range (vocab_size rewritten below the ids in the file)
    CU_ASSERT_FATAL(write_small_shard(p, 1000) == 0);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "vocab_size", H5P_DEFAULT);
    int32_t v = 999;
    H5Awrite(a, H5T_NATIVE_INT32, &v);
    H5Aclose(a);
    H5Fclose(f);
    CU_ASSERT(shard_read(&s, p, err) == -1);
    CU_ASSERT(contains(err, p) && contains(err, "/tokens") && contains(err, "is 999, outside"));
    CU_ASSERT(s.tokens == NULL && s.doc_offsets == NULL);

    // offsets: not monotone, not ending at n_tokens, not starting at 0
    int64_t patches[3][2] = {{10, -1000}, {50, 1}, {0, 3}};   // index, change
    const char *msgs[3] = {"is less than entry", "expected n_tokens", "starts at 3"};
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_FATAL(write_small_shard(p, 1000) == 0);
        f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "doc_offsets", H5P_DEFAULT);
        int64_t off[51];
        H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
        off[patches[k][0]] += patches[k][1];
        H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
        H5Dclose(d);
        H5Fclose(f);
        CU_ASSERT(shard_read(&s, p, err) == -1);
        CU_ASSERT(contains(err, "/doc_offsets") && contains(err, msgs[k]));
    }

    // missing dataset, wrong format, wrong version
    CU_ASSERT_FATAL(write_small_shard(p, 1000) == 0);
    f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "doc_offsets", H5P_DEFAULT);
    H5Fclose(f);
    CU_ASSERT(shard_read(&s, p, err) == -1);
    CU_ASSERT(contains(err, "/doc_offsets: missing dataset"));
    CU_ASSERT_FATAL(write_small_shard(p, 1000) == 0);
    set_root_attr(p, "version", NULL, 3);
    CU_ASSERT(shard_read(&s, p, err) == -1);
    CU_ASSERT(contains(err, "unsupported shard version 3"));
    Sample smp;
    sample_init(&smp, 0, 0);
    CU_ASSERT_FATAL(ckpt_save(p, &smp.st, err) == 0);
    sample_free(&smp);
    CU_ASSERT(shard_read(&s, p, err) == -1);
    CU_ASSERT(contains(err, "not a conflux shard"));

    // a corrupted token chunk
    CU_ASSERT_FATAL(write_small_shard(p, 1000) == 0);
    f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hsize_t zero[1] = {0}, size = 0;
    haddr_t addr = HADDR_UNDEF;
    unsigned mask;
    CU_ASSERT(H5Dget_chunk_info_by_coord(d, zero, &mask, &addr, &size) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    CU_ASSERT_FATAL(addr != HADDR_UNDEF && size > 100);
    xor_byte(p, (long)(addr + 37), 0x01);
    CU_ASSERT(shard_read(&s, p, err) == -1);
    CU_ASSERT(contains(err, p) && contains(err, "/tokens") && contains(err, "checksum"));

    // truncated at several lengths; junk; empty
    CU_ASSERT_FATAL(write_small_shard(p, 1000) == 0);
    size_t n;
    unsigned char *all = slurp(p, &n);
    size_t cuts[] = {3, 8, 30, 100, 1000, n / 2, n - 10, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(q, all, cuts[i]);
        CU_ASSERT(shard_read(&s, q, err) == -1);
        CU_ASSERT(contains(err, q));
        if (cuts[i] >= 8) CU_ASSERT(contains(err, "truncated"));
    }
    free(all);
    spit(q, "", 0);
    CU_ASSERT(shard_read(&s, q, err) == -1);
    CU_ASSERT(contains(err, "empty file"));
    spit(q, "hello world, not hdf5 at all", 28);
    CU_ASSERT(shard_read(&s, q, err) == -1);
    CU_ASSERT(contains(err, "not an HDF5 file"));
    CU_ASSERT(shard_read(&s, tpath("missing.h5"), err) == -1);
    CU_ASSERT(contains(err, "missing.h5") && contains(err, "No such file"));
}

// Flips bytes all over a small shard: each read fails with a message or returns the
// original tokens and offsets.
static void test_shard_flip_everywhere(void) {
    char err[CX_ERRLEN] = "";
    TPATH(p, "flip-shard.h5");
    CU_ASSERT_FATAL(write_small_shard(p, 1000) == 0);
    Shard ref, s;
    CU_ASSERT_FATAL(shard_read(&ref, p, err) == 0);
    struct stat sb;
    CU_ASSERT_FATAL(stat(p, &sb) == 0);
    long n = (long)sb.st_size, step = n / FLIPS_SHARD + 1;
    int errors = 0, silent = 0;
    for (long off = 0; off < n; off += step) {
        unsigned char mask = (unsigned char)(1u << (off % 8));
        xor_byte(p, off, mask);
        err[0] = '\0';
        int rc = shard_read(&s, p, err);
        xor_byte(p, off, mask);
        if (rc == -1) {
            errors++;
            if (!contains(err, p)) CU_FAIL("error message does not name the file");
            continue;
        }
        if (s.n_tokens != ref.n_tokens || s.n_docs != ref.n_docs ||
            s.vocab_size != ref.vocab_size || strcmp(s.tokenizer, ref.tokenizer) ||
            memcmp(s.tokens, ref.tokens, ref.n_tokens * sizeof *ref.tokens) ||
            memcmp(s.doc_offsets, ref.doc_offsets, (ref.n_docs + 1) * sizeof *ref.doc_offsets)) {
            silent++;
            fprintf(stderr, "\n  silent change with byte %ld flipped (of %ld)\n", off, n);
        }
        shard_free(&s);
    }
    CU_ASSERT(silent == 0);
    CU_ASSERT(errors > 0);
    shard_free(&ref);
}

static const TuTest CKPT_TESTS[] = {
    {"round trip, bit for bit", test_ckpt_roundtrip},
    {"no /optim group", test_ckpt_no_optim},
    {"truncated files", test_ckpt_truncated},
    {"corrupted chunk -> checksum error", test_ckpt_corrupt_chunk},
    {"bytes flipped everywhere", test_ckpt_flip_everywhere},
    {"not HDF5", test_ckpt_not_hdf5},
    {"bad format / version / config", test_ckpt_bad_header},
    {"missing dataset, wrong shape, wrong dtype", test_ckpt_bad_datasets},
    {"failed save keeps the old file", test_ckpt_failed_save},
    {"file written by h5py", test_ckpt_h5py_written},
    {"CONFLUX_KEEP_CKPT sample", test_ckpt_keep_sample},
};
static const TuTest SHARD_TESTS[] = {
    {"round trip across chunks", test_shard_roundtrip},
    {"writer errors and abort", test_shard_writer_errors},
    {"damaged shards", test_shard_damaged},
    {"bytes flipped everywhere", test_shard_flip_everywhere},
};

// Usage: test_ckpt [SUBSTRING]   runs the tests whose "suite: name" contains SUBSTRING.
int main(int argc, char **argv) {
    const TuSuite suites[] = {
        {.name = "ckpt", .init = suite_init, .clean = suite_clean, .setup = test_setup,
         .teardown = check_no_open_ids, .tests = CKPT_TESTS, .n_tests = TU_NELEM(CKPT_TESTS)},
        {.name = "shard", .init = suite_init, .clean = suite_clean, .setup = test_setup,
         .teardown = check_no_open_ids, .tests = SHARD_TESTS, .n_tests = TU_NELEM(SHARD_TESTS)},
    };
    return tu_run(suites, TU_NELEM(suites), argc > 1 ? argv[1] : NULL, CU_BRM_VERBOSE);
}
