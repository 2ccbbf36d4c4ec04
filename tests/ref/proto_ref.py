#!/usr/bin/python3
# proto_ref.py: an independent decoder of the bridge's wire protocol, written from the
# specification in bridge/proto.h (its comments and constants) and models/codec.h (chunk
# sizes), not from bridge/proto.c. Used by tests/integration/test_proto_ref.sh to check the
# labels of the stored fuzz corpus tests/tools/fuzz/proto/, which were produced by the C
# decoder itself (test_proto --classify).
# Standard library only (Python 3.11).
#
# What it checks, all from proto.h, in stream order (the first failure is the outcome):
#   header (20 bytes), as "When the header is judged" in proto.h says: the magic "CXBR"
#   (every byte of a prefix) and major == 1 as soon as those bytes arrive; the rest once
#   all 20 bytes are there: header CRC32C of bytes 0..11, type 1..16 and in the accepted
#   types (default: all), flags == 0, payload_bytes <= the type's limit (HELLO 4096, ERROR
#   2048, STATE_CHUNK/GRAD_CHUNK/AVG_CHUNK/DATA_CHUNK 64 + max_chunk_bytes, every other
#   type 256; default max_chunk_bytes 1 MiB), payload_bytes >= the type's size in the table
#   in the frame's minor (the fixed part of HELLO, STATE_CHUNK, GRAD_CHUNK, AVG_CHUNK,
#   ERROR, DATA_CHUNK; WELCOME 68 in a 1.0 frame, 108 from 1.1) and, for the other
#   (fixed-size) types, == that size unless the frame's minor is newer than ours; then,
#   once the payload is whole, the frame CRC32C of bytes 0..15 + payload, then the payload
#   rules of its type:
#     size       exactly the size the fields give; when the frame's minor is newer than
#                ours (1.1: minor > 1), trailing bytes after them are accepted and ignored
#     HELLO      major == the frame's major; flags: only bit 0 (resume); res 0; codecs
#                nonzero; identity nonzero when resuming; token 1..256 bytes, name 0..128
#                bytes, both well-formed UTF-8 without NUL
#     WELCOME    identity nonzero; round_deadline_ms > 0; max_chunk_bytes in
#                64..64 MiB; codec a known one (1 fp32, 2 fp16, 3 int8); res 0; from 1.1
#                the u64 data size and 32 bytes of data hash (any values)
#     STATE_REQUEST  n_bytes 1..max_chunk_bytes
#     STATE_CHUNK    n_bytes <= max_chunk_bytes; offset + n_bytes <= total_bytes
#     DATA_REQUEST, DATA_CHUNK   (1.1) as STATE_REQUEST and STATE_CHUNK
#     ROUND_OPEN target_samples > 0; n_samples <= target_samples
#     ROUND_CLOSE res 0; loss sum and auxiliary loss sum finite
#     GRAD_CHUNK samples > 0; losses finite; n_elems > 0; codec known; res 0; encoded
#                bytes (4n, 2n, 4*ceil(n/128)+n) <= max_chunk_bytes; offset + n_elems
#                fits in a u64; the payload holds exactly those bytes of data
#     AVG_CHUNK  n_elems > 0; codec known; res 0; encoded bytes <= max_chunk_bytes;
#                offset + n_elems fits in a u64 ("as in BrGradChunk")
#     ERROR      code nonzero; message 0..1024 bytes of UTF-8 without NUL
#     PROGRESS, HEARTBEAT, BYE: only their size
#     PROBE      (types 15, 16: the link check) n_bytes <= max_chunk_bytes, the payload
#                holds exactly those bytes; PROBE_ACK res 0
# Chunk data is opaque here (the protocol does not look at the values).
#
# The outcome of a whole stream, as tests/tools/fuzz/README.md names the corpus files:
#   ok    one or more whole frames, no error, nothing left over
#   need  no error, and the stream ends inside a frame (or holds no byte at all: the empty
#         stream is a valid prefix of a frame)
#   err   a decoder error
#
# usage:
#   proto_ref.py classify FILE...   prints "LABEL<TAB>FILE<TAB>DETAIL" per file (DETAIL: the
#                                   frames decoded, or what was wrong at which offset)
#   proto_ref.py check DIR          classifies every file of a corpus directory named
#                                   ok-*/need-*/err-* (README.md is skipped) and compares with
#                                   its prefix; prints each disagreement and a count; exit 1
#                                   when any file disagrees or is misnamed, 0 otherwise
#   proto_ref.py mutate SEED N SRC_DIR OUT_DIR
#                                   writes N streams derived from the corpus in SRC_DIR (bytes
#                                   changed, cut, inserted, deleted; CRCs and lengths mostly
#                                   repaired so the payload rules are reached): inputs on which
#                                   to compare this decoder with test_proto --classify
#   proto_ref.py selftest           the CRC32C check value and a few built frames
import math
import os
import struct
import sys

MAGIC = b"CXBR"
MAJOR, MINOR = 1, 1
HDR = 20
HELLO, WELCOME, STATE_REQUEST, STATE_CHUNK, PROGRESS, ROUND_OPEN, ROUND_CLOSE, \
    GRAD_CHUNK, AVG_CHUNK, HEARTBEAT, ERROR, BYE, DATA_REQUEST, DATA_CHUNK = range(1, 15)
NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", STATE_REQUEST: "STATE_REQUEST",
         STATE_CHUNK: "STATE_CHUNK", PROGRESS: "PROGRESS", ROUND_OPEN: "ROUND_OPEN",
         ROUND_CLOSE: "ROUND_CLOSE", GRAD_CHUNK: "GRAD_CHUNK", AVG_CHUNK: "AVG_CHUNK",
         HEARTBEAT: "HEARTBEAT", ERROR: "ERROR", BYE: "BYE", DATA_REQUEST: "DATA_REQUEST",
         DATA_CHUNK: "DATA_CHUNK"}
# the link check (conflux-volunteer --check)
PROBE, PROBE_ACK = 15, 16
NAMES.update({PROBE: "PROBE", PROBE_ACK: "PROBE_ACK"})
CHUNK_TYPES = (STATE_CHUNK, GRAD_CHUNK, AVG_CHUNK, DATA_CHUNK)
MAX_HELLO, MAX_ERROR, MAX_CONTROL, CHUNK_OVERHEAD = 4096, 2048, 256, 64
DEFAULT_CHUNK, MIN_CHUNK, MAX_CHUNK = 1 << 20, 64, 64 << 20
MAX_TOKEN, MAX_NAME, MAX_MESSAGE = 256, 128, 1024
U64_MAX = (1 << 64) - 1
# payload sizes of the table in proto.h: the whole payload of a fixed-size type (1.0), the
# fixed part of a variable one (HELLO: with two empty strings)
FIXED = {HELLO: 28, WELCOME: 68, STATE_REQUEST: 12, STATE_CHUNK: 20, PROGRESS: 16,
         ROUND_OPEN: 48, ROUND_CLOSE: 56, GRAD_CHUNK: 56, AVG_CHUNK: 24, HEARTBEAT: 8,
         ERROR: 6, BYE: 4, DATA_REQUEST: 12, DATA_CHUNK: 20, PROBE: 8, PROBE_ACK: 24}
VARIABLE = (HELLO, STATE_CHUNK, GRAD_CHUNK, AVG_CHUNK, ERROR, DATA_CHUNK, PROBE)


def fixed(t, minor):
    # WELCOME grew in 1.1 (data size and hash)
    return 108 if t == WELCOME and minor >= 1 else FIXED[t]


# ---------------------------------------------------------------- CRC32C (RFC 3720)

def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _crc_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------- payload rules

class Bad(Exception):
    """a decoder error: what, and the stream offset where it was found"""

    def __init__(self, offset, what):
        super().__init__("%s (stream offset %d)" % (what, offset))


def encoded_bytes(codec, n):
    # models/codec.h: 4n (fp32), 2n (fp16), 4 * ceil(n / 128) + n (int8)
    return {1: 4 * n, 2: 2 * n, 3: 4 * ((n + 127) // 128) + n}[codec]


def utf8_ok(b):
    # proto.h br_proto_utf8_valid: well-formed UTF-8 (no overlong forms, surrogates or code
    # points above U+10FFFF: exactly what Python's strict decoder rejects) and no NUL byte
    if b"\x00" in b:
        return False
    try:
        b.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def finite(bits):
    return math.isfinite(struct.unpack("<d", struct.pack("<Q", bits))[0])


class Payload:
    """reads little-endian fields of one payload in order; pos is the payload offset"""

    def __init__(self, p, at):
        self.p, self.at, self.pos = p, at, 0   # at: stream offset of the payload

    def fail(self, what, field_pos=None):
        raise Bad(self.at + (self.pos if field_pos is None else field_pos), what)

    def need(self, n, what):
        if len(self.p) - self.pos < n:
            self.fail("payload too short for %s" % what)

    def u(self, size, what):
        self.need(size, what)
        v = int.from_bytes(self.p[self.pos:self.pos + size], "little")
        self.pos += size
        return v

    def raw(self, n, what):
        self.need(n, what)
        v = self.p[self.pos:self.pos + n]
        self.pos += n
        return v

    def end(self, newer):
        # exact size, unless the frame's minor is newer than ours (trailing fields ignored)
        if self.pos != len(self.p) and not newer:
            self.fail("%d trailing payload bytes" % (len(self.p) - self.pos))


def check_payload(t, frame_major, frame_minor, p, at, max_chunk):
    newer = frame_minor > MINOR
    r = Payload(p, at)
    if t == HELLO:
        major = r.u(1, "major")
        if major != frame_major:
            r.fail("HELLO major %d differs from the frame's %d" % (major, frame_major), 0)
        r.u(1, "minor")
        flags = r.u(1, "flags")
        if flags & ~1:
            r.fail("HELLO flags 0x%02x: only bit 0 (resume) is defined" % flags, 2)
        if r.u(1, "res"):
            r.fail("HELLO reserved byte not 0", 3)
        if r.u(4, "codecs") == 0:
            r.fail("HELLO codecs mask is 0", 4)
        ident = r.raw(16, "identity")
        if flags & 1 and not any(ident):
            r.fail("HELLO resume without an identity", 8)
        for what, lo, hi in (("token", 1, MAX_TOKEN), ("client name", 0, MAX_NAME)):
            n = r.u(2, what + " length")
            if not lo <= n <= hi:
                r.fail("HELLO %s length %d not in %d..%d" % (what, n, lo, hi), r.pos - 2)
            if not utf8_ok(r.raw(n, what)):
                r.fail("HELLO %s not UTF-8 without NUL" % what, r.pos - n)
    elif t == WELCOME:
        r.u(8, "session id")
        if not any(r.raw(16, "identity")):
            r.fail("WELCOME identity is 0", 8)
        for what in ("step", "samples_seen", "n_params", "state_bytes"):
            r.u(8, what)
        if r.u(4, "round_deadline_ms") == 0:
            r.fail("WELCOME round_deadline_ms is 0", 56)
        mcb = r.u(4, "max_chunk_bytes")
        if not MIN_CHUNK <= mcb <= MAX_CHUNK:
            r.fail("WELCOME max_chunk_bytes %d not in %d..%d" % (mcb, MIN_CHUNK, MAX_CHUNK), 60)
        codec = r.u(1, "codec")
        if codec not in (1, 2, 3):
            r.fail("WELCOME unknown codec %d" % codec, 64)
        if any(r.raw(3, "res")):
            r.fail("WELCOME reserved bytes not 0", 65)
        if frame_minor >= 1:
            r.u(8, "data size")
            r.raw(32, "data hash")
    elif t in (STATE_REQUEST, DATA_REQUEST):
        r.u(8, "offset")
        n = r.u(4, "n_bytes")
        if not 1 <= n <= max_chunk:
            r.fail("%s n_bytes %d not in 1..%d" % (NAMES[t], n, max_chunk), 8)
    elif t in (STATE_CHUNK, DATA_CHUNK):
        off, total, n = r.u(8, "offset"), r.u(8, "total_bytes"), r.u(4, "n_bytes")
        if n > max_chunk:
            r.fail("%s n_bytes %d over %d" % (NAMES[t], n, max_chunk), 16)
        if off + n > total:
            r.fail("%s offset %d + %d bytes beyond total %d" % (NAMES[t], off, n, total), 0)
        r.raw(n, "chunk bytes")
    elif t == PROGRESS:
        r.u(8, "step")
        r.u(8, "samples")
    elif t == ROUND_OPEN:
        for what in ("round id", "step"):
            r.u(8, what)
        target = r.u(8, "target samples")
        r.u(8, "sample start")
        n = r.u(8, "sample count")
        r.u(8, "parameter hash")
        if target == 0:
            r.fail("ROUND_OPEN target samples is 0", 16)
        if n > target:
            r.fail("ROUND_OPEN share %d over target %d" % (n, target), 32)
    elif t == ROUND_CLOSE:
        for what in ("round id", "accepted", "samples", "tokens"):
            r.u(8, what)
        r.u(4, "participants")
        if any(r.raw(4, "res")):
            r.fail("ROUND_CLOSE reserved bytes not 0", 36)
        for what in ("loss sum", "auxiliary loss sum"):
            if not finite(r.u(8, what)):
                r.fail("ROUND_CLOSE %s not finite" % what, r.pos - 8)
    elif t in (GRAD_CHUNK, AVG_CHUNK):
        name = NAMES[t]
        r.u(8, "round id")
        off = r.u(8, "offset")
        if t == GRAD_CHUNK:
            if r.u(8, "samples") == 0:
                r.fail("GRAD_CHUNK samples is 0", 16)
            r.u(8, "tokens")
            for what in ("loss sum", "auxiliary loss sum"):
                if not finite(r.u(8, what)):
                    r.fail("GRAD_CHUNK %s not finite" % what, r.pos - 8)
        n = r.u(4, "n_elems")
        codec = r.u(1, "codec")
        if any(r.raw(3, "res")):
            r.fail("%s reserved bytes not 0" % name, r.pos - 3)
        if n == 0:
            r.fail("%s n_elems is 0" % name, r.pos - 8)
        if codec not in (1, 2, 3):
            r.fail("%s unknown codec %d" % (name, codec), r.pos - 4)
        eb = encoded_bytes(codec, n)
        if eb > max_chunk:
            r.fail("%s %d encoded bytes over %d" % (name, eb, max_chunk), r.pos - 8)
        if off + n > U64_MAX:
            r.fail("%s offset %d + %d elements overflows a u64" % (name, off, n), 8)
        r.raw(eb, "chunk data")
    elif t == HEARTBEAT:
        r.u(8, "time")
    elif t == ERROR:
        if r.u(4, "code") == 0:
            r.fail("ERROR code 0", 0)
        n = r.u(2, "message length")
        if n > MAX_MESSAGE:
            r.fail("ERROR message length %d over %d" % (n, MAX_MESSAGE), 4)
        if not utf8_ok(r.raw(n, "message")):
            r.fail("ERROR message not UTF-8 without NUL", 6)
    elif t == BYE:
        r.u(4, "reason")
    elif t == PROBE:  # the link check
        r.u(4, "sequence")
        n = r.u(4, "length")
        if n > max_chunk:
            r.fail("PROBE of %d bytes over %d" % (n, max_chunk), 4)
        r.raw(n, "filler")
    elif t == PROBE_ACK:
        r.u(4, "sequence")
        if r.u(4, "res"):
            r.fail("PROBE_ACK reserved bytes not 0", 4)
        r.u(8, "bytes")
        r.u(8, "elapsed")
    r.end(newer)


# ---------------------------------------------------------------- streams

def max_payload(t, max_chunk):
    if t == HELLO:
        return MAX_HELLO
    if t == ERROR:
        return MAX_ERROR
    if t in CHUNK_TYPES or t == PROBE:
        return CHUNK_OVERHEAD + max_chunk
    return MAX_CONTROL


def decode_stream(data, max_chunk=DEFAULT_CHUNK, accept=frozenset(NAMES)):
    """returns (label, frames, detail)"""
    pos, frames = 0, []
    while pos < len(data):
        h = data[pos:pos + HDR]
        try:
            for i, b in enumerate(h[:4]):
                if b != MAGIC[i]:
                    raise Bad(pos + i, "bad magic %r" % bytes(h[:4]))
            if len(h) > 4 and h[4] != MAJOR:
                raise Bad(pos + 4, "unsupported protocol major version %d" % h[4])
            if len(h) < HDR:
                return "need", frames, "ends inside the header of frame %d (stream offset %d)" % (
                    len(frames) + 1, pos)
            if int.from_bytes(h[12:16], "little") != crc32c(h[:12]):
                raise Bad(pos + 12, "header CRC mismatch")
            t, minor, plen = h[6], h[5], int.from_bytes(h[8:12], "little")
            if t not in NAMES:
                raise Bad(pos + 6, "unknown message type %d" % t)
            if h[7] != 0:
                raise Bad(pos + 7, "flags 0x%02x" % h[7])
            if t not in accept:
                raise Bad(pos + 6, "%s not accepted" % NAMES[t])
            if plen > max_payload(t, max_chunk):
                raise Bad(pos + 8, "%s payload of %d bytes over %d" %
                          (NAMES[t], plen, max_payload(t, max_chunk)))
            if plen < fixed(t, minor):
                raise Bad(pos + 8, "%s payload of %d bytes under its fixed part %d" %
                          (NAMES[t], plen, fixed(t, minor)))
            if t not in VARIABLE and minor <= MINOR and plen != fixed(t, minor):
                raise Bad(pos + 8, "%s payload of %d bytes; 1.%d defines %d" %
                          (NAMES[t], plen, minor, fixed(t, minor)))
            if len(data) - pos - HDR < plen:
                return "need", frames, "ends inside the payload of frame %d (stream offset %d)" % (
                    len(frames) + 1, pos)
            payload = data[pos + HDR:pos + HDR + plen]
            if int.from_bytes(h[16:20], "little") != crc32c(payload, crc32c(h[:16])):
                raise Bad(pos + 16, "frame CRC mismatch")
            check_payload(t, h[4], minor, payload, pos + HDR, max_chunk)
        except Bad as e:
            return "err", frames, str(e)
        frames.append(NAMES[t])
        pos += HDR + plen
    if not frames:
        return "need", frames, "empty stream"
    return "ok", frames, "%d frame(s): %s" % (len(frames), " ".join(frames))


def classify_file(path):
    with open(path, "rb") as f:
        return decode_stream(f.read())


# ---------------------------------------------------------------- commands

def cmd_classify(paths):
    for p in paths:
        label, _, detail = classify_file(p)
        print("%s\t%s\t%s" % (label, p, detail))
    return 0


def cmd_check(d):
    names = sorted(n for n in os.listdir(d) if not n.startswith(".") and n != "README.md")
    counts, bad = {"ok": 0, "need": 0, "err": 0}, 0
    for n in names:
        want = n.split("-", 1)[0]
        if want not in counts or "-" not in n:
            print("FAIL: %s/%s: not named ok-*, need-* or err-*" % (d, n))
            bad += 1
            continue
        got, _, detail = classify_file(os.path.join(d, n))
        if got != want:
            print("FAIL: %s/%s: the specification says %s (%s)" % (d, n, got, detail))
            bad += 1
        else:
            counts[want] += 1
    print("proto_ref: %d of %d corpus files agree with their label (%d ok, %d need, %d err)"
          % (len(names) - bad, len(names), counts["ok"], counts["need"], counts["err"]))
    return 1 if bad or not names else 0


def frame(t, payload, minor=0, major=MAJOR, flags=0):
    h = MAGIC + bytes([major, minor, t, flags]) + struct.pack("<I", len(payload))
    h += struct.pack("<I", crc32c(h))
    return h + struct.pack("<I", crc32c(payload, crc32c(h))) + payload


def cmd_selftest():
    assert crc32c(b"123456789") == 0xE3069283
    hb = frame(HEARTBEAT, struct.pack("<Q", 5))
    assert decode_stream(hb)[0] == "ok"
    assert decode_stream(hb + hb)[:2] == ("ok", ["HEARTBEAT", "HEARTBEAT"])
    assert decode_stream(b"")[0] == "need"
    assert all(decode_stream(hb[:k])[0] == "need" for k in range(1, len(hb)))
    assert decode_stream(frame(HEARTBEAT, b"\0" * 9))[0] == "err"
    assert decode_stream(frame(HEARTBEAT, b"\0" * 9, minor=1))[0] == "err"   # 1.1 is ours
    assert decode_stream(frame(HEARTBEAT, b"\0" * 9, minor=2))[0] == "ok"
    assert decode_stream(b"GET / HTTP/1.1\r\n")[0] == "err"
    assert decode_stream(b"CXBR\x02")[0] == "err"
    assert decode_stream(frame(BYE, b"\0" * 4, flags=1))[0] == "err"
    odd = bytearray(frame(BYE, b"\0" * 4))
    odd[6] = 200   # an unknown type is judged with the whole header, not before
    assert decode_stream(bytes(odd[:19]))[0] == "need" and decode_stream(bytes(odd))[0] == "err"
    assert decode_stream(frame(BYE, b"\0" * 3)[:20])[0] == "err"      # no BYE has 3 bytes
    assert decode_stream(frame(HEARTBEAT, b"\0" * 9)[:20])[0] == "err"
    assert decode_stream(frame(HEARTBEAT, b"\0" * 9, minor=2)[:20])[0] == "need"
    welcome = struct.pack("<Q16s4Q2IB3x", 1, b"\1" * 16, 0, 0, 10, 100, 1000, 1 << 20, 2)
    assert decode_stream(frame(WELCOME, welcome))[0] == "ok"                        # 1.0: 68
    assert decode_stream(frame(WELCOME, welcome, minor=1))[0] == "err"              # 1.1: 108
    assert decode_stream(frame(WELCOME, welcome + b"\0" * 40, minor=1))[0] == "ok"
    assert decode_stream(frame(DATA_REQUEST, struct.pack("<QI", 0, 0), minor=1))[0] == "err"
    assert decode_stream(frame(DATA_CHUNK, struct.pack("<QQI", 2, 4, 3) + b"abc", minor=1))[0] == "err"
    assert decode_stream(frame(DATA_CHUNK, struct.pack("<QQI", 1, 4, 3) + b"abc", minor=1))[0] == "ok"
    bad = bytearray(hb)
    bad[-1] ^= 1
    assert decode_stream(bytes(bad))[0] == "err"
    err = struct.pack("<IH", 1, 2) + b"ok"
    assert decode_stream(frame(ERROR, err))[0] == "ok"
    assert decode_stream(frame(ERROR, struct.pack("<IH", 0, 0)))[0] == "err"
    assert decode_stream(frame(ERROR, struct.pack("<IH", 1, 2) + b"\xc0\x80"))[0] == "err"
    grad = struct.pack("<QQQQddIB3x", 1, 0, 3, 40, 1.5, 0.0, 130, 3) + b"\0" * (8 + 130)
    assert decode_stream(frame(GRAD_CHUNK, grad))[0] == "ok"
    assert decode_stream(frame(GRAD_CHUNK, grad[:-1]))[0] == "err"
    probe = struct.pack("<II", 7, 3) + b"abc"
    assert decode_stream(frame(PROBE, probe))[0] == "ok"
    assert decode_stream(frame(PROBE, probe[:-1]))[0] == "err"
    assert decode_stream(frame(PROBE_ACK, struct.pack("<IIQQ", 7, 0, 3, 1000)))[0] == "ok"
    assert decode_stream(frame(PROBE_ACK, struct.pack("<IIQQ", 7, 1, 3, 1000)))[0] == "err"
    assert decode_stream(frame(13, b""))[0] == "err"
    print("proto_ref selftest passed")
    return 0


def repair(b, fix_length=False):
    """b with every frame's CRCs recomputed, walking by the length fields (the way
    `test_proto --repair-crcs` prepares fuzzer finds); with fix_length, b is one frame whose
    length field is first set to the bytes after its header"""
    b, pos = bytearray(b), 0
    if fix_length and len(b) >= HDR:
        b[8:12] = struct.pack("<I", len(b) - HDR)
    while len(b) - pos >= HDR:
        b[pos + 12:pos + 16] = struct.pack("<I", crc32c(b[pos:pos + 12]))
        plen = int.from_bytes(b[pos + 8:pos + 12], "little")
        if len(b) - pos - HDR < plen:
            break
        end = pos + HDR + plen
        b[pos + 16:pos + 20] = struct.pack("<I", crc32c(b[pos + HDR:end], crc32c(b[pos:pos + 16])))
        pos = end
    return bytes(b)


def cmd_mutate(seed, n, src, out):
    """writes n streams derived from the corpus files of src into out (m-00000.bin, ...):
    half change 1-3 bytes anywhere (or cut, insert, delete one) and mostly get their CRCs
    repaired; half change the payload of one ok- frame (its length and CRCs repaired), so
    that they reach the payload rules. For comparing this decoder with the C one beyond the
    corpus (test_proto --classify)."""
    import random
    rng = random.Random(seed)
    names = sorted(x for x in os.listdir(src) if not x.startswith(".") and x != "README.md")
    every = [open(os.path.join(src, x), "rb").read() for x in names]
    single = [b for x, b in zip(names, every) if x.startswith("ok-") and x != "ok-stream.bin"]
    single = [b for b in single if len(b) > HDR]
    os.makedirs(out, exist_ok=True)
    for k in range(n):
        if k % 2 == 0:
            b = bytearray(rng.choice([x for x in every if x]))
            for _ in range(rng.randint(1, 3)):
                if not b:
                    break
                i, r = rng.randrange(len(b)), rng.random()
                if r < 0.6:
                    b[i] = rng.randrange(256)
                elif r < 0.75:
                    b[i] ^= 1 << rng.randrange(8)
                elif r < 0.85:
                    del b[i:]
                elif r < 0.95:
                    b[i:i] = bytes([rng.randrange(256)])
                else:
                    del b[i]
            b = repair(b) if rng.random() < 0.8 else bytes(b)
        else:
            b = bytearray(rng.choice(single))
            for _ in range(rng.randint(1, 2)):
                i, r = rng.randrange(HDR, len(b)), rng.random()
                if r < 0.5:
                    b[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
                elif r < 0.7:
                    b[i] ^= 1 << rng.randrange(8)
                elif r < 0.8:
                    b[5] = rng.choice([0, 1])   # the minor: trailing bytes allowed or not
                elif r < 0.9:
                    del b[i]
                else:
                    b[i:i] = b"\0"
            b = repair(b, fix_length=True)
        with open(os.path.join(out, "m-%05d.bin" % k), "wb") as f:
            f.write(b)
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "classify":
        return cmd_classify(argv[1:])
    if len(argv) == 2 and argv[0] == "check":
        return cmd_check(argv[1])
    if len(argv) == 5 and argv[0] == "mutate":
        return cmd_mutate(int(argv[1]), int(argv[2]), argv[3], argv[4])
    if argv == ["selftest"]:
        return cmd_selftest()
    sys.stderr.write("usage: proto_ref.py classify FILE... | check DIR | "
                     "mutate SEED N SRC_DIR OUT_DIR | selftest\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
