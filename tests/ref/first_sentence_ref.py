#!/usr/bin/python3
# first_sentence_ref.py: an independent reference for the first-sentence (lead) baseline of
# `conflux-headline evaluate`, written from the documented rules, not from the C code:
#   reading    io/news/news.h (formats, HTML to text, bad records), docs/tools.md (evaluate;
#              `pairs` for TSV)
#   the lead   io/news/lead.h (paragraphs joined with spaces, the sentence splitter, the RIA
#              dateline skipped when the body has more than one sentence)
#   scoring    tests/ref/rouge_ref.py, imported (both modes; lowercased with its fold();
#              F x100, macro average over the articles)
# Used by tests/integration/test_baseline_ref.sh to check the first-sentence figures of
# docs/headline.md and the tool that produced them. Standard library only (Python 3.11).
# Where those headers left a choice open, comparing with the tool on generated articles
# (the `gen` command) found it, and the header now says which way it goes (see
# tests/ref/README.md); this file follows the headers.
#
# The rules, in brief (the headers say them in full):
#   formats (news.h): detected from the first bytes after gunzip (magic 1f 8b) and a UTF-8
#     BOM: "{" is RIA (one JSON object per line, "title" and "text" strings, blank lines
#     skipped); otherwise a CSV header (RFC 4180) with title and text columns: ODS when it
#     has an "edition" column, else Lenta; a FILE named *.tsv or *.tsv.gz is "title TAB
#     body" lines. CSV fields are used as written (not HTML); CRLF in a quoted field is LF.
#   RIA text (news.h "Text"): tags removed (BLOCK end a paragraph, td/th are a space,
#     others nothing), comments, <!...>, <?...> and script/style contents dropped; entities
#     decoded once (NAMED, &#NNN; up to 8 digits, &#xHH; up to 7, &#128;-&#159; as
#     Windows-1252; anything else stays as written); whitespace (raw: ASCII's and U+00A0;
#     as an entity also U+2002, U+2003, U+2009) collapses to one space; soft hyphens and C0
#     controls/DEL dropped; paragraphs trimmed, joined by "\n", empty ones dropped. A RIA
#     title gets the same without tag stripping.
#   bad records (news.h): a title or text that is empty or only whitespace (ASCII's and
#     U+00A0) is skipped, as is a CSV record with another number of fields than the header;
#     TSV: a line without a tab, or with an empty title or body.
#   the lead (lead.h): a sentence ends after a run of ".", "!", "?", "…" plus the closers
#     " ' ) ] » “ ” after it, followed by ASCII space, tab, CR, LF or the end; not at a lone
#     "." right after a one-letter (ASCII or Cyrillic) word. The baseline is the first
#     sentence, whitespace runs made one space; --dateline skip: the second one when there
#     are two or more (RIA's published baseline); auto: the first sentence after a news
#     agency's dateline (dateline_len below), if the body starts with one.
#
# usage:
#   first_sentence_ref.py [--format auto|ria|lenta|ods|tsv] [--dateline auto|skip|keep]
#                         [--hyps-out FILE] [--per-example] FILE...
#     All FILEs form one test set (as in `conflux-headline evaluate`). Prints the last line
#     of `conflux-headline evaluate` without a model:
#       first-sentence-ref: n=N lead_paper=R1/R2/RL lead_standard=R1/R2/RL
#     (F x100, %.2f). --hyps-out writes "title TAB TAB first sentence" lines (the layout of
#     evaluate's --hyps-out without a model); --per-example prints the per-article F
#     values to stderr.
#   first_sentence_ref.py gen --seed S --n N --ria FILE.json --csv FILE.csv
#     writes N generated RIA articles (HTML bodies: tags of every kind, entities good and
#     bad, raw and entity spaces, controls, initials, abbreviations, closing quotes) and N
#     Lenta CSV records (plain text: tabs, U+00A0 after periods, CRLF, blank fields), made
#     of invented words, for comparing the reference with the tool beyond the real samples.
#   first_sentence_ref.py selftest
import argparse
import csv
import gzip
import io
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rouge_ref  # noqa: E402  (tests/ref/rouge_ref.py: fold, score_standard, score_paper)

csv.field_size_limit(1 << 30)

# ---------------------------------------------------------------- HTML to text (news.h)

NAMED = {
    "nbsp": "\u00a0", "mdash": "\u2014", "ndash": "\u2013", "laquo": "\u00ab",
    "raquo": "\u00bb", "quot": '"', "amp": "&", "lt": "<", "gt": ">", "apos": "'",
    "hellip": "\u2026", "bdquo": "\u201e", "ldquo": "\u201c", "rdquo": "\u201d",
    "lsquo": "\u2018", "rsquo": "\u2019", "sbquo": "\u201a", "copy": "\u00a9",
    "reg": "\u00ae", "trade": "\u2122", "deg": "\u00b0", "minus": "\u2212",
    "times": "\u00d7", "middot": "\u00b7", "bull": "\u2022", "euro": "\u20ac",
    "numero": "\u2116", "ensp": "\u2002", "emsp": "\u2003", "thinsp": "\u2009",
    "shy": "\u00ad", "AMP": "&", "LT": "<", "GT": ">", "QUOT": '"',
}
# the block elements news.h lists: they end a paragraph
BLOCK = {
    "p", "br", "li", "tr", "ul", "ol", "hr", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5",
    "h6", "div", "pre", "nav", "table", "blockquote", "section", "article", "header",
    "footer", "aside", "figure", "figcaption", "address", "center", "form", "main",
    "caption", "option", "details", "summary", "tbody", "thead", "tfoot", "iframe",
}
CELL = {"td", "th"}
DROP_CONTENT = {"script", "style"}
# whitespace of the text rule: ASCII's six and U+00A0, raw; as an entity also U+2002,
# U+2003, U+2009 (raw, those and other Unicode spaces are text)
SPACES = " \t\n\v\f\r\u00a0"
ENTITY_SPACES = {0x09, 0x0A, 0x0C, 0x0D, 0x20, 0xA0, 0x2002, 0x2003, 0x2009}
PARA, SPACE = object(), object()   # marks: paragraph end, a space (entity, table cell)

ENTITY_RE = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9A-Fa-f]{1,7})|([A-Za-z0-9]{1,8}));")
TAG_NAME_RE = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)")


def entity_at(s, i):
    """(end, replacement) of the entity at s[i] == "&", or None when it stays as written"""
    m = ENTITY_RE.match(s, i)
    if not m:
        return None
    if m.group(3) is not None:
        if m.group(3) not in NAMED:
            return None
        cp = ord(NAMED[m.group(3)])
    else:
        cp = int(m.group(1)) if m.group(1) is not None else int(m.group(2), 16)
        if 0x80 <= cp <= 0x9F:   # Windows-1252, as browsers read them
            try:
                cp = ord(bytes([cp]).decode("cp1252"))
            except UnicodeDecodeError:
                return None   # 0x81, 0x8D, 0x8F, 0x90, 0x9D: no character
    if cp in ENTITY_SPACES:
        return m.end(), SPACE
    if cp == 0xAD:
        return m.end(), ""
    if cp < 0x20 or cp == 0x7F or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
        return None
    return m.end(), chr(cp)


def tag_at(s, i):
    """(end, replacement) of the markup at s[i] == "<", or None when the "<" is text"""
    if s.startswith("<!--", i):   # a comment runs to "-->" or the end
        e = s.find("-->", i + 4)
        return (len(s) if e < 0 else e + 3), ""
    if s.startswith("<!", i) or s.startswith("<?", i):   # <!DOCTYPE ...>, <?...?>
        e = s.find(">", i)
        return None if e < 0 else (e + 1, "")
    m = TAG_NAME_RE.match(s, i)
    if not m:
        return None   # "a < b", "</ 3>": text
    j = m.end()
    while j < len(s) and s[j] != ">":
        if s[j] in "\"'":   # a quoted attribute value may hold ">"
            q = s.find(s[j], j + 1)
            if q < 0:   # an unmatched quote is ignored: the next ">" ends the tag
                j = s.find(">", j)
                if j < 0:
                    return None
                break
            j = q + 1
        else:
            j += 1
    if j >= len(s):
        return None   # no ">": text
    name, closing = m.group(1).lower(), s[i + 1] == "/"
    if name in DROP_CONTENT and not closing:   # to the end tag (any case) and its ">"
        e = s.lower().find("</" + name, j + 1)
        if e < 0:
            return len(s), ""
        g = s.find(">", e)
        return (len(s) if g < 0 else g + 1), ""
    return j + 1, PARA if name in BLOCK else SPACE if name in CELL else ""


def html_to_text(html, strip_tags=True):
    """news.h "Text"; with strip_tags false (RIA titles) "<" is ordinary text"""
    out, i = [], 0
    while i < len(html):
        c = html[i]
        got = tag_at(html, i) if c == "<" and strip_tags else entity_at(html, i) if c == "&" else None
        if got:
            i, rep = got
            out.append(rep)
        else:   # raw text: controls and soft hyphens dropped, whitespace marked
            if c in SPACES:
                out.append(SPACE)
            elif not (ord(c) < 32 or ord(c) == 127 or c == "\u00ad"):
                out.append(c)
            i += 1
    paras, cur = [], []
    for t in out + [PARA]:
        if t is PARA:
            paras.append(re.sub(" +", " ", "".join(cur)).strip(" "))
            cur = []
        else:
            cur.append(" " if t is SPACE else t)
    return "\n".join(p for p in paras if p)


# ---------------------------------------------------------------- readers

class Article:
    def __init__(self, title, text, where):
        self.title, self.text, self.where = title, text, where


def _blank(s):
    """empty or only whitespace, the raw whitespace of news.h's text rule"""
    return all(c in SPACES for c in s)


def read_bytes(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)   # concatenated members too
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    return data


def detect(path, data):
    if path.endswith(".tsv") or path.endswith(".tsv.gz"):
        return "tsv"
    if data[:1] == b"{":
        return "ria"
    header = next(csv.reader(io.StringIO(data.split(b"\n", 1)[0].decode("utf-8"))), [])
    return "ods" if "edition" in header else "lenta"


def read_articles(path, fmt, bad):
    """yields the usable articles of one file; bad(where, why) gets the skipped ones"""
    data = read_bytes(path)
    if fmt == "auto":
        fmt = detect(path, data)
    if fmt == "ria":
        for k, line in enumerate(data.split(b"\n"), 1):
            where = "%s:%d" % (path, k)
            if line.strip(b" \t\r") == b"":
                continue
            try:
                d = json.loads(line.decode("utf-8"))
                title, text = d.get("title"), d.get("text")
            except (ValueError, AttributeError) as e:
                bad(where, "syntax: %s" % e)
                continue
            if not isinstance(title, str) or not isinstance(text, str):
                bad(where, "missing or not a string: title/text")
                continue
            title, text = html_to_text(title, strip_tags=False), html_to_text(text)
            if _blank(title) or _blank(text):
                bad(where, "missing: empty title or text")
                continue
            yield Article(title, text, where)
    elif fmt in ("lenta", "ods"):
        rows = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
        header = next(rows)
        ti, xi = header.index("title"), header.index("text")
        for row in rows:
            where = "%s:%d" % (path, rows.line_num)
            if not row:
                continue
            if len(row) != len(header):
                bad(where, "syntax: %d fields, the header has %d" % (len(row), len(header)))
                continue
            title, text = row[ti].replace("\r\n", "\n"), row[xi].replace("\r\n", "\n")
            if _blank(title) or _blank(text):
                bad(where, "missing: empty title or text")
                continue
            yield Article(title, text, where)
    elif fmt == "tsv":
        for k, line in enumerate(data.decode("utf-8").split("\n"), 1):
            line = line[:-1] if line.endswith("\r") else line
            if not line:
                continue   # a blank line; any other line without a tab is a bad one
            title, tab, text = line.partition("\t")
            if not tab or not title or not text:
                bad("%s:%d" % (path, k), "not title TAB body")
                continue
            yield Article(title, text, "%s:%d" % (path, k))
    else:
        raise ValueError("unknown format %r" % fmt)


# ---------------------------------------------------------------- the lead (lead.h)

ENDS = ".!?\u2026"
# the closing quotes and brackets lead.h lists: " ' ) ] » “ ”
CLOSING = "\"')]\u00bb\u201c\u201d"
# the splitter's whitespace (lead.h): ASCII space, tab, LF, CR; a U+00A0 after a period
# does not end a sentence ("ст.\u00a020.2")
WS = " \t\n\r"


def _letter(c):
    return ("a" <= c.lower() <= "z" and c.isascii()) or 0x400 <= ord(c) <= 0x4FF


def _clean(piece):
    """runs of WS to one space, none at either end"""
    return " ".join(w for w in re.split("[ \t\n\r]", piece) if w)


def sentences(text):
    """lead.h's splitter; text's paragraphs ("\n") are whitespace like spaces"""
    s = text
    out, start, i, n = [], 0, 0, len(s)
    while i < n:
        if s[i] not in ENDS:
            i += 1
            continue
        j = i
        while j < n and s[j] in ENDS:
            j += 1
        k = j
        while k < n and s[k] in CLOSING:
            k += 1
        if k == n or s[k] in WS:
            # a lone "." (nothing else in the run, no closer) after a one-letter word
            initial = k - i == 1 and s[i] == "." and i >= 1 and _letter(s[i - 1]) and (i == 1 or s[i - 2] in WS)
            if not initial:
                piece = _clean(s[start:k])
                if piece:
                    out.append(piece)
                start = k
        i = k
    piece = _clean(s[start:])
    if piece:
        out.append(piece)
    return out


def first_sentence(text, skip_first):
    sents = sentences(text)
    if not sents:
        return ""
    return sents[1] if skip_first and len(sents) > 1 else sents[0]


# A news agency's dateline at the start of a body (lead.h, headline_dateline_len), written
# again as regular expressions: PLACE (no digits, '.' or ','; at most 60 UTF-8 bytes), DAY,
# a Russian month, then RIA's dash and agency up to a '.' (at most 80 bytes), TASS's '.',
# or Interfax's ". AGENCY - " (one word of at most 30 bytes); text must follow.
_MONTH = r"(?:янв|фев|мар|апр|ма|июн|июл|авг|сен|окт|ноя|дек)[a-zа-яё]*"
_DASH = "[-\u2013\u2014]"
_DATELINES = [  # (expression, the agency group's byte limit)
    (re.compile(r"([^0-9.,]+), [0-9]{1,2} " + _MONTH + r" *" + _DASH + r" *([^.]+)\.(?= |$) *", re.I), 80),
    (re.compile(r"([^0-9.,]+), [0-9]{1,2} " + _MONTH + r"\. *", re.I), None),
    (re.compile(r"([^0-9.,]+)\. [0-9]{1,2} " + _MONTH + r"\. (\S+) " + _DASH + r" *", re.I), 30),
]


def dateline_len(text):
    """characters of the dateline at the start of text (with its trailing spaces), or 0"""
    t = re.sub("[\n\t\r]", " ", text)
    for rx, limit in _DATELINES:
        m = rx.match(t)
        if not m or len(m.group(1).encode()) > 60:
            continue
        if limit is not None and len(m.group(2).encode()) > limit:
            continue
        return m.end() if m.end() < len(t) else 0
    return 0


# ---------------------------------------------------------------- evaluation

def evaluate(paths, fmt="auto", dateline="auto", bad=None):
    """[(title, lead, path:line)] over all files, in order"""
    out = []
    for p in paths:
        kind = fmt if fmt != "auto" else detect(p, read_bytes(p))
        for a in read_articles(p, kind, bad or (lambda w, why: None)):
            if dateline == "auto":
                lead = first_sentence(a.text[dateline_len(a.text):], False)
            else:
                lead = first_sentence(a.text, dateline == "skip")
            out.append((a.title, lead, a.where))
    return out


def score(pairs):
    """macro-average F x100 per mode: {"paper": [r1, r2, rl], "standard": [...]}, and the
    per-example F values"""
    res, per = {}, []
    for mode, fn in (("paper", rouge_ref.score_paper), ("standard", rouge_ref.score_standard)):
        sums = [0.0, 0.0, 0.0]
        for k, (title, lead, _) in enumerate(pairs):
            f = [prf[2] for prf in fn(rouge_ref.fold(lead), rouge_ref.fold(title))]
            sums = [a + b for a, b in zip(sums, f)]
            if mode == "paper":
                per.append(f)
            else:
                per[k] = per[k] + f
        res[mode] = [100.0 * s / max(len(pairs), 1) for s in sums]
    return res, per


# pieces of generated articles: invented and common words, markup, entities, spaces and
# controls, and the cases of lead.h's splitter (initials, "т.е", "3.5", closers, U+00A0)
GEN_WORDS = [
    "москва", "риа", "новости", "а", "с", "г", "в", "т.е", "3.5", "пушкин", "дек", "1799",
    "«да", "нет»", "(см", "ниже)", "ё", "Ё.", "x", "Z", "q.", "α.", "Ω", "ΑΒΓ", "word", "слово",
    "ст.\u00a020.2", "конец.\u00a0Начало", "a.\u2019", "’", "}", "\u2009", "\u2003", "\t",
    "\u00a0", "\u000b", "\u000c", "\u001f", "\u0000", "\u0085",
]
GEN_HTML = [
    "&laquo;кавычки&raquo;", "&nbsp;", "&NBSP;", "&mdash;", "&hellip;", "&#8230;", "&#133;",
    "&#129;", "&shy;", "&amp;lt;", "&foo;", "&#0;", "&#x41;", "&#11;", "&#9;", "&#8201;",
    "&#x110000;", "&#xD800;", "&#000000065;", "&#x0000041;", "&nbsp", "&amp", "&thinsp;",
    "&ensp;", "&am\u0001p;", "<b>жирный</b>", "<i>", "</i>", "<br>", "<br/>", "</p><p>",
    "<!-- c -->", "<!-- open", "<td>", "<TH>", "<span class=\"a>b\">", "</span>", "<a href='x'>",
    "<b title=\"x>", "<script>x. y. z</script>", "<STYLE>p{}</style >", "<style>a", "a<b",
    "< b", "</ 3>", "<!DOCTYPE html>", "<?xml?>", "<!x", "<h2>", "</h2>", "<ul><li>", "<hr>",
    "<dialog>", "<b\u0001>",
]
GEN_ENDS = [".", "!", "?", "…", "...", "?!", ".»", "!)", "?\"", ".”", ".'", ". ", "", ".’",
            ".}", ".\u00a0", ".\t", "!\u000c", "….»", ".\r\n"]


# dateline-like openings for generated bodies: real forms and near misses
GEN_PLACES = ["москва", "МОСКВА", "Нью-Йорк", "санкт-петербург", "Ровно сегодня", "в 2019 году",
              "Ростов-на-Дону", "очень длинное название одного места на карте мира"]
GEN_MONTHS = ["дек", "декабря", "ноя", "мая", "май", "Марта", "понедельник", "Января", "dec"]
GEN_TAILS = [" — риа новости.", "- р-спорт.", " — риа новости, иван петров.", ".",
             ". INTERFAX.RU - ", ". Интерфакс —", ", юбилей.", " —риа новости.", "",
             " — " + "агентство новостей " * 5 + "."]


def gen_dateline(rng):
    day = rng.choice(["1", "30", "123", "7"])
    return (rng.choice(GEN_PLACES) + rng.choice([", ", ". ", ","]) + day + " " +
            rng.choice(GEN_MONTHS) + rng.choice(GEN_TAILS) + rng.choice([" ", "", "\n"]))


def cmd_gen(a):
    import random
    rng = random.Random(a.seed)

    def sentence(pieces):
        return " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) + rng.choice(GEN_ENDS)
    with open(a.ria, "w", encoding="utf-8") as f:
        pieces = GEN_WORDS + GEN_HTML
        for _ in range(a.n):
            lead = gen_dateline(rng) if rng.random() < 0.4 else ""
            body = "<p>" + rng.choice(["", "<strong>"]) + lead + " ".join(
                sentence(pieces) for _ in range(rng.randint(1, 5))) + "</p>"
            if rng.random() < 0.5:
                body += "<p>" + " ".join(sentence(pieces) for _ in range(rng.randint(1, 3))) + "</p>"
            title = "заголовок " + rng.choice(pieces)
            f.write(json.dumps({"text": body, "title": title}, ensure_ascii=False) + "\n")
    with open(a.csv, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["url", "title", "text", "topic", "tags"])
        pieces = [x for x in GEN_WORDS if x not in ("\u0000", "\u001f", "\u0085")]
        pieces += ["\r\n", "\n\n", "&amp;", "<b>"]
        for k in range(a.n):
            text = " ".join(sentence(pieces) for _ in range(rng.randint(1, 5)))
            if rng.random() < 0.4:
                text = gen_dateline(rng) + text
            if rng.random() < 0.02:
                text = rng.choice(["", " \t", "\u00a0", "\u000b\u000c", "\u2003"])
            w.writerow(["https://example.org/%d" % k, "заголовок " + rng.choice(pieces), text, "t", ""])
    return 0


def cmd_selftest():
    t = html_to_text('<p><strong>москва, 1 дек&nbsp;&mdash; риа новости.</strong> текст'
                     '&nbsp;и&amp;lt; <a href="x>y">ссылка</a></p><p></p><p>второй&#133;'
                     '&shy;&foo; &#0;<br>третий</p><!-- c --><script>x<y</script>')
    assert t == "москва, 1 дек \u2014 риа новости. текст и&lt; ссылка\nвторой\u2026&foo; &#0;\nтретий", repr(t)
    assert html_to_text("a &lt;b&gt; <i>c</i>", strip_tags=False) == "a <b> <i>c</i>"
    assert sentences("а. с. пушкин родился в 1799 г. в москве. потом «да!» и т.е. 3.5 раза…") == \
        ["а. с. пушкин родился в 1799 г. в москве.", "потом «да!»", "и т.е.", "3.5 раза…"]
    assert first_sentence("москва, 1 дек — риа новости. текст один. два", True) == "текст один."
    assert first_sentence("одно предложение", True) == "одно предложение"
    assert first_sentence("дата. один", False) == "дата."
    print("first_sentence_ref selftest passed")
    return 0


def main():
    if sys.argv[1:] == ["selftest"]:
        return cmd_selftest()
    if sys.argv[1:2] == ["gen"]:
        g = argparse.ArgumentParser(prog="first_sentence_ref.py gen")
        g.add_argument("--seed", type=int, default=1)
        g.add_argument("--n", type=int, default=1000)
        g.add_argument("--ria", required=True)
        g.add_argument("--csv", required=True)
        return cmd_gen(g.parse_args(sys.argv[2:]))
    ap = argparse.ArgumentParser(description="first-sentence baseline reference")
    ap.add_argument("--format", default="auto", choices=["auto", "ria", "lenta", "ods", "tsv"])
    ap.add_argument("--dateline", default="auto", choices=["auto", "skip", "keep"])
    ap.add_argument("--hyps-out")
    ap.add_argument("--per-example", action="store_true")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    n_bad = [0]

    def bad(where, why):
        n_bad[0] += 1
        sys.stderr.write("first_sentence_ref.py: %s: skipped (%s)\n" % (where, why))
    pairs = evaluate(a.files, a.format, a.dateline, bad)
    if not pairs:
        sys.exit("first_sentence_ref.py: no article to score (%d skipped)" % n_bad[0])
    res, per = score(pairs)
    if a.hyps_out:
        with open(a.hyps_out, "w", encoding="utf-8") as f:
            for title, lead, _ in pairs:
                f.write("%s\t\t%s\n" % (title, lead))
    if a.per_example:
        for (title, lead, where), f in zip(pairs, per):
            sys.stderr.write("%s paper %s standard %s\n" % (
                where, "/".join("%.2f" % (100 * v) for v in f[:3]),
                "/".join("%.2f" % (100 * v) for v in f[3:])))
    print("first-sentence-ref: n=%d lead_paper=%s lead_standard=%s" % (
        len(pairs), "/".join("%.2f" % v for v in res["paper"]),
        "/".join("%.2f" % v for v in res["standard"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
