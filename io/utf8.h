// utf8.h: UTF-8 encoding shared by the text code of io/ (corpus, news readers, ROUGE,
// headline pairs).
#ifndef CONFLUX_IO_UTF8_H
#define CONFLUX_IO_UTF8_H

#include <stddef.h>
#include <stdint.h>

// Writes the UTF-8 encoding of code point cp (at most U+10FFFF; the caller checks) into
// out, which has room for 4 bytes. Returns the number of bytes written (1..4).
size_t utf8_encode(uint32_t cp, char *out);

#endif
