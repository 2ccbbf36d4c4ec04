// h5util_internal.h: HDF5 helpers shared by the checkpoint (io/store/ckpt.c) and shard
// (io/store/shard.c) code, and the headline pair shards (io/tasks/headline.c). Internal to io/: only
// ckpt.c, shard.c, headline.c and h5util.c include this header (and so <hdf5.h>).
//
// Errors follow the second tier of docs/style.md: a helper returns -1 (or NULL, or
// H5I_INVALID_HID) and fills the caller's `why` buffer (H5U_WHY_LEN bytes) with a short
// message; the caller puts the file name in front ("checkpoint PATH: why"). HDF5's own
// error stack is turned into that message by h5u_why() and cleared; call h5u_quiet() at
// the start of every public entry point so that HDF5 prints nothing itself.
#ifndef CONFLUX_H5UTIL_INTERNAL_H
#define CONFLUX_H5UTIL_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define H5U_WHY_LEN 320

// ---- error handling ----------------------------------------------------------------------

// Turns off HDF5's automatic printing of its error stack (for the calling thread's default
// stack). Cannot fail.
void h5u_quiet(void);

// Describes the current HDF5 error stack in why (H5U_WHY_LEN bytes) as "WHAT: problem"
// (just "problem" when what is NULL or empty) and clears the stack. The problem is the
// innermost HDF5 message, translated for the cases a user can meet: "file is truncated (N
// bytes, header says M)", "checksum mismatch (Fletcher32): data is corrupted", "metadata
// checksum mismatch: file is corrupted", "file is corrupted (an address points past its
// end)"; "HDF5 error" when the stack is empty. Returns why.
const char *h5u_why(char *why, const char *what);

// Closes *id with fn (H5Dclose, H5Gclose, ...) when it is valid, then sets it to
// H5I_INVALID_HID, so that cleanup paths can call it on every id. A close error is left on
// the HDF5 error stack.
void h5u_close_id(hid_t *id, herr_t (*fn)(hid_t));

// A human name for an HDF5 type ("float32", "int64", "uint8", "string", "HDF5 type class
// N") into buf (cap bytes), for messages. Clears the HDF5 error stack.
void h5u_type_name(hid_t type, char *buf, size_t cap);

// ---- files ---------------------------------------------------------------------------------

// Checks, before HDF5 opens it, that path is a non-empty regular file with the HDF5
// signature and at least a superblock's worth of bytes. Returns 0, or -1 with err (CX_ERRLEN
// bytes) set to "cannot open KIND PATH: <errno text>", "cannot open KIND PATH: not a regular
// file", "KIND PATH: empty file, not an HDF5 file", "KIND PATH: not an HDF5 file (no HDF5
// signature; N bytes)" or "KIND PATH: file is truncated (N bytes, shorter than an HDF5
// superblock)". kind is the word for the file in messages ("checkpoint", "shard").
int h5u_check_signature(const char *path, const char *kind, char *err);

// Starts an atomic write of path: creates PATH.tmp.<pid> (with open(2), so that a missing or
// read-only directory gets a clear errno message) and creates it as an HDF5 file with the
// HDF5 1.10 format (checksummed metadata) and the strong close degree. On success returns
// the file id and sets *tmp to the malloc'd temporary path: the caller owns both, and on a
// later failure closes the file, unlinks *tmp and frees it. On failure returns
// H5I_INVALID_HID with why ("out of memory", "cannot create TMP: <errno text>", "file access
// properties: ...", "TMP: <HDF5 problem>"), *tmp NULL and no temporary file left behind.
hid_t h5u_tmp_create(const char *path, char **tmp, char *why);

// Finishes an atomic write: flushes and closes *file (*file is H5I_INVALID_HID afterwards,
// whatever the result), fsyncs tmp, renames it over path and fsyncs the directory (best
// effort). Returns 0, or -1 with why ("flush: ...", "close: ...", "fsync TMP: <errno text>",
// "rename TMP: <errno text>"); then tmp is still there and the caller unlinks it.
int h5u_tmp_commit(hid_t *file, const char *tmp, const char *path, char *why);

// ---- writing -------------------------------------------------------------------------------

// A fixed-length (len + 1 bytes), NUL-terminated UTF-8 string type; the caller closes it
// with H5Tclose. H5I_INVALID_HID on failure (error left on the HDF5 stack).
hid_t h5u_str_type(size_t len);

// Writes the scalar string attribute NAME = val on obj (object header, so checksummed).
// Returns 0, or -1 with why ("NAME: <HDF5 problem>").
int h5u_write_str_attr(hid_t obj, const char *name, const char *val, char *why);

// Writes the scalar integer attribute NAME = val on obj, stored as file_type (e.g.
// H5T_STD_I32LE, H5T_STD_I64LE). Returns 0, or -1 with why ("NAME: <HDF5 problem>").
int h5u_write_int_attr(hid_t obj, const char *name, hid_t file_type, int64_t val, char *why);

// Creates dataset NAME under loc with shape dims[0..ndim) (ndim 0: scalar; at most
// H5S_MAX_RANK) stored as file_type, and writes buf (mem_type, elem_bytes bytes per element;
// buf is only read, and may be NULL when the shape holds no element). Non-empty arrays are
// chunked (about 1 MiB per chunk, trailing dimensions kept whole first, chunks of equal
// size) with Fletcher32; a scalar is compact (covered by the object header checksum).
// Returns 0, or -1 with why ("LABEL: <HDF5 problem>"); label names the dataset in messages
// (e.g. "/params/x").
int h5u_write_array(hid_t loc, const char *name, const char *label, hid_t file_type,
                    hid_t mem_type, size_t elem_bytes, int ndim, const hsize_t *dims,
                    const void *buf, char *why);

// ---- appendable int32 columns --------------------------------------------------------------

// A 1-D int32 dataset that grows by appends through a one-chunk buffer, with the end offset
// of every record appended kept in memory: the /tokens of a token shard (records are
// documents) and the /src_tokens and /tgt_tokens of a pair shard (records are pairs). The
// caller writes off[0..n_off) as the offsets dataset when it closes the file.
typedef struct {
    hid_t ds;
    int32_t *buf;             // n_buf elements not yet written (room for chunk)
    size_t n_buf, chunk;
    uint64_t n_written;       // elements already in the dataset
    int64_t *off;             // n_off entries: 0, end of record 0, end of record 1, ...
    size_t n_off, cap_off;
    const char *label;        // the dataset in messages ("/tokens"); not copied
} H5uColumn;

// Sets c up empty (no dataset yet, off = {0}) with a buffer of chunk elements. Returns 0, or
// -1 with why "out of memory"; either way h5u_column_free(c) releases it.
int h5u_column_init(H5uColumn *c, size_t chunk, const char *label, char *why);

// Creates c's dataset NAME under loc: int32 little-endian, empty, unlimited, chunks of
// c->chunk elements, Fletcher32; with keep_times 0 the object's times are not stored.
// Returns 0, or -1 with why ("LABEL: <HDF5 problem>").
int h5u_column_create(H5uColumn *c, hid_t loc, const char *name, int keep_times, char *why);

// Makes room for one more record offset. Returns 0, or -1 with why "out of memory" (c is
// unchanged). Call it before h5u_column_append.
int h5u_column_reserve(H5uColumn *c, char *why);

// Appends the record t[0..n) (t may be NULL when n is 0), writing every full chunk, and
// records its end offset (room for it must be reserved). Returns 0, or -1 with why ("LABEL:
// <HDF5 problem>"); then the dataset may hold part of the record.
int h5u_column_append(H5uColumn *c, const int32_t *t, size_t n, char *why);

// Writes the buffered elements to the dataset. Returns 0, or -1 with why ("LABEL: <HDF5
// problem>").
int h5u_column_flush(H5uColumn *c, char *why);

// Closes c's dataset (if open) and frees its buffers; c can be freed again afterwards.
void h5u_column_free(H5uColumn *c);

// ---- reading -------------------------------------------------------------------------------

// Whether obj has attribute NAME: 1, 0, or -1 with why ("NAME: <HDF5 problem>") when HDF5
// cannot tell (a damaged object header).
int h5u_has_attr(hid_t obj, const char *name, char *why);

// 0 if obj has attribute NAME; otherwise -1 with why "missing attribute WHERE NAME" (where
// is put in front of name as it is, e.g. "/optim/" or "") or the HDF5 problem.
int h5u_need_attr(hid_t obj, const char *where, const char *name, char *why);

// Reads the scalar string attribute NAME (fixed or variable length, at most 64 KiB) of obj.
// Returns a malloc'd NUL-terminated string the caller frees, or NULL with why ("attribute
// NAME is not a single string (TYPE)", "attribute NAME is too long", "attribute NAME has a
// bad length (N)", "out of memory", "NAME: <HDF5 problem>"). The attribute must exist (see
// h5u_need_attr).
char *h5u_read_str_attr(hid_t obj, const char *name, char *why);

// Reads the scalar string dataset NAME under loc (fixed or variable length, shorter than
// max_bytes). Returns a malloc'd NUL-terminated string the caller frees, or NULL with why
// ("LABEL is not a single string (TYPE)", "LABEL is too long", "LABEL has a bad length (N)",
// "out of memory", "LABEL: <HDF5 problem>"); label names the dataset in messages.
char *h5u_read_str_dataset(hid_t loc, const char *name, const char *label, size_t max_bytes,
                           char *why);

// Reads the scalar integer attribute NAME of obj into *val (converted to int64 by HDF5).
// Returns 0, or -1 with why ("attribute NAME is not a single integer (TYPE)", "NAME: <HDF5
// problem>"). The attribute must exist (see h5u_need_attr).
int h5u_read_int_attr(hid_t obj, const char *name, int64_t *val, char *why);

// The string attribute NAME, which must exist, copied into buf (cap bytes). Returns 0, or
// -1 with why ("missing attribute NAME", "attribute NAME is longer than N bytes", or as
// h5u_read_str_attr).
int h5u_read_str_attr_into(hid_t obj, const char *name, char *buf, size_t cap, char *why);

// The integer attribute NAME, which must exist (h5u_need_attr + h5u_read_int_attr).
int h5u_read_int_attr_req(hid_t obj, const char *name, int64_t *val, char *why);

// Reads the 1-D integer dataset NAME (elem_size bytes per element, read as mem_type) into a
// malloc'd array *out (the caller frees) of *n_out elements. Returns 0, or -1 with why
// (missing, wrong type, not 1-D, too large, out of memory, or the HDF5 problem).
int h5u_read_1d(hid_t file, const char *name, size_t elem_size, hid_t mem_type, void **out,
                size_t *n_out, char *why);

// Opens path read-only (call h5u_check_signature first) and reads its "format" attribute
// into fmt (cap bytes). Returns the file id (the caller closes it and compares fmt), or
// H5I_INVALID_HID with the file closed and why ("cannot open: <HDF5 problem>", "not a
// conflux KIND (no format attribute)", or as h5u_has_attr and h5u_read_str_attr_into).
hid_t h5u_open_format(const char *path, const char *kind, char *fmt, size_t cap, char *why);

// Reads the integer attribute "vocab_size" (which must exist) of obj into *vocab_size.
// Returns 0, or -1 with why "vocab_size N is out of range" (not in [1, INT32_MAX]) or as
// h5u_read_int_attr_req.
int h5u_read_vocab_size(hid_t obj, int *vocab_size, char *why);

// 0 if every t[0..n) is in [0, vocab_size); otherwise -1 with why "token I is V, outside
// [0, vocab_size N)" for the first that is not.
int h5u_check_tokens(const int32_t *t, size_t n, int vocab_size, char *why);

// Checks a record offsets array (off[0..n_off)) against its n_tokens elements: at least one
// entry, starting at 0, not decreasing, ending at n_tokens. Returns 0, or -1 with why "empty
// (needs COUNT + 1 entries)", "starts at N, expected 0", "entry I (A) is less than entry J
// (B)" or "ends at N, expected TOTAL M"; count and total name the two numbers in messages
// ("n_docs" and "n_tokens").
int h5u_check_offsets(const int64_t *off, size_t n_off, size_t n_tokens, const char *count,
                      const char *total, char *why);

// Whether the link path (absolute or relative to loc) exists, every component checked:
// 1, 0, or -1 with why (the HDF5 problem, or "out of memory") when HDF5 fails (a damaged
// group).
int h5u_link_exists(hid_t loc, const char *path, char *why);

// Whether the object at path (which exists) is a dataset: 1, 0, or -1 with why (the HDF5
// problem) when HDF5 cannot open it (a damaged object header).
int h5u_is_dataset(hid_t loc, const char *path, char *why);

// Opens the dataset at path under loc with its type and dataspace. Returns 0 with *ds,
// *type and *space open (the caller closes them with h5u_close_dataset), or -1 with the
// three set to H5I_INVALID_HID and why ("missing dataset", "not a dataset" or the HDF5
// problem; the caller names the dataset).
int h5u_open_dataset(hid_t loc, const char *path, hid_t *ds, hid_t *type, hid_t *space,
                     char *why);

// Closes what h5u_open_dataset opened (any of the three may already be H5I_INVALID_HID)
// and sets all three to H5I_INVALID_HID.
void h5u_close_dataset(hid_t *ds, hid_t *type, hid_t *space);

// Checks that a dataset's type is class cls with elem_bytes bytes per element (and, for
// integers, signed or unsigned as want is). Returns 0, or -1 with why "dtype is TYPE, expected WANT", where WANT is
// the name of want (the memory type the caller reads into).
int h5u_check_dtype(hid_t type, H5T_class_t cls, size_t elem_bytes, hid_t want, char *why);

#endif
