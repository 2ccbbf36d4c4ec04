// h5util_internal.h: HDF5 helpers shared by the checkpoint (io/ckpt.c) and shard
// (io/shard.c) code, and the headline pair shards (io/headline.c). Internal to io/: only
// ckpt.c, shard.c, headline.c and h5util.c include this header (and so <hdf5.h>).
//
// Errors follow the second tier of STYLE.md: a helper returns -1 (or NULL, or
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

// Checks that a dataset's type is class cls with elem_bytes bytes per element (and signed,
// for integers). Returns 0, or -1 with why "dtype is TYPE, expected WANT", where WANT is
// the name of want (the memory type the caller reads into).
int h5u_check_dtype(hid_t type, H5T_class_t cls, size_t elem_bytes, hid_t want, char *why);

#endif
