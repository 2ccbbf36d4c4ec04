// common.h: error conventions shared by every module.
//
// Two tiers of errors (docs/style.md):
//  1. bugs and unrecoverable setup failures: CHECK() prints file:line and why, then exits.
//  2. anything caused by input, files or peers: the function returns -1 and fills the
//     caller's error buffer (at least CX_ERRLEN bytes) with a message naming what and where.
#ifndef CONFLUX_COMMON_H
#define CONFLUX_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define CX_ERRLEN 512
#define CONFLUX_VERSION "0.1.0"

// Formats into err (CX_ERRLEN bytes) when err is not NULL. Always returns -1 so that
// `return cx_err(err, ...)` reads naturally.
int cx_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Copies the string src into dst (cap bytes, always terminated, cut where it does not fit)
// with control characters (bytes below 0x20 and 0x7f) written as \xHH: text from peers or
// files goes into logs this way, so a newline cannot forge a line. Returns dst.
char *cx_escape_controls(char *dst, size_t cap, const char *src);

// For command-line tools (docs/design.md conventions): prints "TOOL: error: MESSAGE" on stderr
// and exits with status; a usage error (status 2) adds "Try 'TOOL --help'.".
void cx_tool_fail(const char *tool, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

// A tool's stop signals: handler for SIGTERM and SIGINT, and SIGUSR1 too when usr1 is set
// (Slurm's warning before a time limit or preemption); SIGPIPE ignored when nopipe is set
// (tools with sockets: a closed peer is an error return, not a signal).
void cx_catch_stop_signals(void (*handler)(int), int usr1, int nopipe);

// Fatal: prints "conflux: fatal: FILE:LINE: msg" and exits with status 1.
void cx_fatal(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) cx_fatal(__FILE__, __LINE__, __VA_ARGS__);                  \
    } while (0)

// malloc/calloc that CHECK their result (setup-time allocations only; nothing in a
// training step allocates). Returned memory is 64-byte aligned and zeroed.
void *cx_calloc(size_t n, size_t size);

// 64-bit hash of the bytes of x[0, n) (FNV-style with a mixer: any single changed 64-bit
// word changes the hash for certain). Same bytes, same hash, on every host of one byte
// order: replicas compare parameters by it.
uint64_t cx_checksum(const float *x, size_t n);

#endif
