// news.h: streaming readers for news article/headline datasets (RIA, Lenta.ru, ODS).
//
// Formats (the bytes may be gzip-compressed: detected by the magic bytes 1f 8b, never by
// the file name; concatenated gzip members are read one after another):
//   ria    one JSON object per line, {"text": "<html body>", "title": "..."}; other keys
//          are allowed in any order and skipped (any JSON value); for a repeated key the
//          last one counts. Strict JSON strings: all escapes including \uXXXX surrogate
//          pairs; raw control characters are an error. Blank lines are skipped. The body
//          is HTML and comes out as plain text (see "Text" below); the title gets the
//          same treatment without tag stripping (RIA titles are plain text): entities
//          decoded, whitespace collapsed to single spaces.
//   lenta  Lenta.ru CSV, header `url,title,text,topic,tags`.
//   ods    ODS news dump CSV, header `date,url,edition,topics,authors,title,text,...`.
//   Both CSV formats are RFC 4180 (fields in double quotes may hold commas, doubled
//   quotes and line breaks; records end in LF or CRLF). Columns are found by their
//   header names (title, text, url, date, topic/topics), so their order may differ.
//   CSV fields come out as written in the file, unquoted, with CRLF inside quoted fields
//   turned into LF; they are not HTML. The header is required; blank lines are skipped.
//   lenta and ods are read the same way; the name records what was asked or detected.
//   auto   detected from the first bytes (after decompression and a UTF-8 BOM): '{'
//          means ria; otherwise the first line must be a CSV header with title and text
//          columns: ods if it has an "edition" column, else lenta.
//
// Text (ria bodies): tags are removed. These block elements end a paragraph: p, br, li, tr,
// ul, ol, hr, dl, dt, dd, h1-h6, div, pre, nav, table, blockquote, section, article,
// header, footer, aside, figure, figcaption, address, center, form, main, caption, option,
// details, summary, tbody, thead, tfoot, iframe; td/th become a space; any other tag goes
// without a trace. A tag is '<' or '</', an ASCII letter, the rest of its name (letters,
// digits) and everything up to '>', where a quoted attribute value may hold '>' (a quote
// without its match is ignored: the next '>' ends the tag); tag names in any case. Comments
// (to "-->", or the end) and <!...>, <?...> markup are dropped, and so are the contents of
// script/style up to the matching end tag (any case; or the end). A '<' that starts no tag,
// or markup without its '>', is text. Entities are decoded once (&amp;lt; gives "&lt;"):
// the named ones nbsp mdash ndash laquo raquo quot amp lt gt apos hellip bdquo ldquo rdquo
// lsquo rsquo sbquo copy reg trade deg minus times middot bull euro numero ensp emsp
// thinsp shy AMP LT GT QUOT (names as written here), numeric &#NNN; (at most 8 digits) /
// &#xHH; (at most 7 hex digits) (&#128;-&#159; as Windows-1252, as browsers do).
// An unknown or malformed entity, one without its ';', or a numeric one naming no
// character (0, surrogates, controls, beyond U+10FFFF, the 5 holes of Windows-1252) stays as
// written. Whitespace collapses to one space: raw, the ASCII whitespace characters (space,
// \t, \n, \v, \f, \r) and U+00A0; as an entity, U+0009, U+000A, U+000C, U+000D, U+0020,
// U+00A0 (&nbsp;), U+2002 (&ensp;), U+2003 (&emsp;) and U+2009 (&thinsp;) (raw U+2002,
// U+2003, U+2009 and the other Unicode spaces are text). Paragraphs are separated by one
// '\n'; no empty paragraphs, no spaces at either end of a paragraph; soft hyphens (raw or
// &shy;) and C0 controls/DEL are dropped. The output is valid UTF-8 and never longer than
// its input.
//
// Bad rows: a record that cannot be used is skipped, counted in NewsStats and reported
// with the line it starts on (see NewsBadFn), never dropped silently. Reasons:
//   syntax    broken JSON (also a non-string title/text); CSV: a quote inside an unquoted
//             field, text after a closing quote, a quoted field still open at the end of
//             the file, a record whose number of fields differs from the header's;
//   utf8      invalid UTF-8 (overlong forms, surrogates, truncated sequences...) in a
//             field that is returned (title, text, url, date, topic), or a JSON \u escape
//             that is a lone surrogate;
//   too_long  a record (a JSON line, a CSV record) longer than max_record_bytes;
//   missing   no title or no text, or one that is empty or only whitespace (the raw
//             whitespace of "Text": ASCII whitespace and U+00A0; a ria body that is empty
//             once its markup is removed included).
// Then the reader goes on. ria: at the next line. CSV: after the record, except after a
// syntax error, where the record's end is unknown: parsing resumes at the line where the
// error was found if that is a later line than the record's first, else at the next
// line, and goes on line by line until a record parses with the header's number of
// fields and, when there is a url column, a url starting with "http"; the damaged region
// is reported once, as "<first error>; skipped lines A-B". A stray quote thus costs the
// records it spans and no more, and the work stays linear in the file size. A quote left
// open at the end of the file makes the rest of the file one bad record; a too_long CSV
// record is skipped to the next line end outside quotes.
//
// Memory is bounded by the limits, whatever the file size: at most about
// 3 x (max_record_bytes + 1 MiB) + 0.3 MiB (window, field arena, text output).
//
// Implementation: a hand-written single-pass scanner per record, no json-c. json-c builds
// a tree and allocates every string, and a body would then need a second walk for the
// HTML anyway; here a JSON string is unescaped and UTF-8-checked in one pass into a
// per-reader arena, and one HTML pass writes the text into an output buffer. Nothing is
// allocated per record. About 250-300 MB/s of uncompressed RIA input on one core of an
// AMD EPYC (tests/bench/bench_news.c), 130-190 MB/s from gzip.

#ifndef CONFLUX_NEWS_H
#define CONFLUX_NEWS_H

#include <stddef.h>
#include <stdint.h>

typedef enum NewsFormat {
    NEWS_FMT_AUTO = 0,
    NEWS_FMT_RIA,
    NEWS_FMT_LENTA,
    NEWS_FMT_ODS,
    NEWS_FMT_COUNT
} NewsFormat;

// "auto", "ria", "lenta", "ods"; NULL when out of range.
const char *news_format_name(NewsFormat fmt);
// Parses a format name. Returns 0, or -1 when unknown.
int news_format_parse(const char *name, NewsFormat *out);

typedef enum NewsBad {
    NEWS_BAD_SYNTAX = 0,
    NEWS_BAD_UTF8,
    NEWS_BAD_TOO_LONG,
    NEWS_BAD_MISSING,
    NEWS_BAD_COUNT
} NewsBad;

// "syntax", "utf8", "too_long", "missing"; NULL when out of range.
const char *news_bad_name(NewsBad reason);

// Receives one skipped record: the line it starts on (1-based, in the decompressed
// bytes), the reason, and a message (what and where, without the path or line number;
// valid during the call only). Called from inside news_next().
typedef void (*NewsBadFn)(void *ctx, uint64_t line, NewsBad reason, const char *msg);

typedef struct NewsLimits {
    size_t max_record_bytes; // longest record (JSON line, CSV record) in bytes; longer
                             // ones are skipped as too_long. 0 means the default, 8 MiB.
    NewsBadFn on_bad;        // NULL: skipped records are printed to stderr as
                             // "news: PATH:LINE: skipped (REASON): MSG", the first 20 of
                             // each reader, then one line saying the rest are only counted
    void *on_bad_ctx;
} NewsLimits;

#define NEWS_DEFAULT_MAX_RECORD_BYTES ((size_t)8 << 20)

// One article. The strings are NUL-terminated UTF-8, owned by the reader and valid until
// the next news_next() or news_close(). Absent fields are "" with length 0.
typedef struct NewsItem {
    const char *title;
    size_t title_bytes;
    const char *text; // plain text, paragraphs separated by '\n'
    size_t text_bytes;
    const char *url; // lenta, ods
    size_t url_bytes;
    const char *date; // ods ("2019-04-30 13:26:00" as in the file)
    size_t date_bytes;
    const char *topic; // lenta "topic", ods "topics"
    size_t topic_bytes;
    uint64_t line;  // line the record starts on, 1-based (the CSV header is line 1)
    uint64_t index; // 0-based count of items returned before this one
} NewsItem;

typedef struct NewsStats {
    uint64_t items;               // items returned
    uint64_t bad_rows;            // records skipped, all reasons
    uint64_t bad[NEWS_BAD_COUNT]; // records skipped, per reason
    uint64_t lines;               // lines consumed so far (the header included; at the end:
                                  // the lines in the file)
    uint64_t file_bytes;          // bytes read from the file (compressed ones for gzip)
    uint64_t data_bytes;          // bytes after decompression (= file_bytes when plain)
} NewsStats;

typedef struct NewsReader NewsReader;

// Opens path ("-" is not special) for reading in format fmt (NEWS_FMT_AUTO detects it).
// lim may be NULL (defaults); it is copied. Reads the first block (and the CSV header).
// Returns the reader, or NULL with err (CX_ERRLEN bytes) filled: the file cannot be
// opened or read, corrupt or truncated gzip before the first block, a CSV file without a
// header or without title/text columns, an empty file with fmt auto/lenta/ods (an empty
// ria file opens and yields nothing). Allocation failure is fatal (CHECK).
NewsReader *news_open(const char *path, NewsFormat fmt, const NewsLimits *lim, char *err);

// The format being read (the detected one for NEWS_FMT_AUTO).
NewsFormat news_format(const NewsReader *r);

// Reads the next article into out. Returns 1 (an item), 0 (end of the data: every record
// was either returned or reported as skipped), or -1 with err filled on a fatal error
// (read error, corrupt or truncated gzip: "truncated gzip stream after N compressed
// bytes"); items before the damage have been returned. After 0 or -1 every further call
// returns the same.
int news_next(NewsReader *r, NewsItem *out, char *err);

// Counters so far.
void news_stats(const NewsReader *r, NewsStats *out);

// Closes the file and frees r (NULL is allowed).
void news_close(NewsReader *r);

// ---- building blocks, exposed for tests and other readers ----

// Converts n_bytes of HTML (valid UTF-8, not necessarily terminated) to plain text as
// described under "Text" above, into out (room for n_bytes + 1 bytes; the result is
// NUL-terminated and never longer than n_bytes). With strip_tags 0, '<' is ordinary text
// and only entities and whitespace are processed (one paragraph). Returns the length.
size_t news_html_to_text(const char *html, size_t n_bytes, char *out, int strip_tags);


#endif
