// datafile.h: the run's training data as a file of bytes: its identity (SHA-256 of the whole
// file, what WELCOME carries) and the incremental hash a download computes as chunks arrive.
//
// Why the file's bytes and not the token windows or pairs the task reads: the bytes are
// what travels (DATA_CHUNK) and what a volunteer caches, so one hash checks the download, the
// cache and a local copy alike, before the HDF5 library ever parses the file; any different
// or damaged shard (one flipped byte, a truncation, another shard with the same number of
// examples) has another hash. The price: a byte-different file with the same tokens (the
// same corpus written again, another creation time in its attributes) is refused too; a
// volunteer uses the very file the bridge trains from.
#ifndef CONFLUX_BRIDGE_DATAFILE_H
#define CONFLUX_BRIDGE_DATAFILE_H

#include <stddef.h>
#include <stdint.h>

#define BR_SHA256_BYTES 32
#define BR_SHA256_HEX 64

// An incremental SHA-256 (OpenSSL's EVP underneath; the struct is opaque).
typedef struct BrSha256 BrSha256;
BrSha256 *br_sha256_new(void);  // CHECKs allocation
void br_sha256_update(BrSha256 *h, const void *data, size_t n);
// Writes the digest of everything fed since br_sha256_new; h is then reset to empty.
void br_sha256_final(BrSha256 *h, uint8_t out[BR_SHA256_BYTES]);
void br_sha256_free(BrSha256 *h);  // NULL: nothing

// SHA-256 of the bytes [0, n) of the file at path, read in pieces (any size of file, bounded
// memory), and the file's size in *n_bytes (n = the whole file when limit is UINT64_MAX;
// otherwise at most limit bytes are read: the hash of a download's prefix). 0, or -1 with
// err naming the file and what failed.
int br_sha256_file(const char *path, uint64_t limit, BrSha256 *h, uint64_t *n_bytes, char *err);

// 64 lowercase hex digits and a NUL into out (65 bytes); returns out.
char *br_sha256_hex(const uint8_t hash[BR_SHA256_BYTES], char *out);

#endif
