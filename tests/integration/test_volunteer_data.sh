#!/bin/bash
# test_volunteer_data.sh: volunteers get the run's training data from the collaboration
# (issue 16, part 2): the bridge states its shard's SHA-256 in WELCOME and serves the file
# over the authenticated connection (DATA_REQUEST / DATA_CHUNK, bridge/proto.h).
# One run (1 trainer rank + bridge, the tiny ALBERT; its first round waits for the 4 volunteers
# that get the data: v1, v2 once restarted, v3, v5) whose data path exists only in the
# host's directory; every volunteer runs elsewhere, so none has the run's file where the
# configuration says:
#  1. v1, no local data: downloads the shard into its cache (the file's SHA-256 is the
#     shard's), trains to the end matching the bridge's parameter hash at every round.
#  2. v2, rate-limited, killed with SIGKILL once its .part file holds 3 MB, restarted: it
#     resumes at that byte (its log, and the bridge's "from byte N > 0"), downloads only the
#     rest, and trains to the end.
#  3. v3, a cache file of the run's name with one byte changed: named as damaged, deleted,
#     downloaded again; it trains.
#  4. v4, --set data.train= a shard with the same number of windows but other tokens: refused
#     before training (exit 1), the message naming the file and both hashes.
#  5. hostile peers: a DATA_REQUEST before HELLO, across the end of the data, beyond the
#     download window, after going live: each refused with its exact code and reason.
#  6. v5, the run's shard given with --set data.train: used after the hash check, nothing
#     downloaded.
#  7. no volunteer has a share of a round before it is live (its data and state downloaded).
# usage: tests/integration/test_volunteer_data.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_volunteer_data.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_volunteer_data.sh BUILD_DIR DATA_DIR}
BUILD=$(cd "$BUILD" && pwd)
DATA=$(cd "$DATA" && pwd)   # absolute: the run starts in a directory of its own
source tests/lib.sh
BIN=$BUILD/bin
[ -f "$DATA/shards/train.h5" ] || skip "$DATA/shards/train.h5 missing (make data)"
WORK=$(mktemp -d /tmp/conflux-voldata-test.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT   # KEEP=1: keep $WORK (logs, caches) for a look
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
PORT=$(free_ports)
TOKENS=$WORK/tokens.txt
TOK=$WORK/alice.token
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" alice --out "$TOK" >/dev/null || { echo "FAIL: token issue"; exit 1; }
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")
SHARD=$DATA/shards/train.h5
SIZE=$(stat -c %s "$SHARD")
SHA=$(sha256sum "$SHARD" | cut -c1-64)
# the host's directory: the run's data path (relative) exists only here
HOST=$WORK/host
mkdir -p "$HOST/shards" "$WORK/vol"
ln -s "$SHARD" "$HOST/shards/train.h5"
RUN=("${TINY_MODEL[@]}" --set data.train=shards/train.h5 --set train.micro_batch=2 --set train.global_batch=8
     --set train.replica_check_every=1 --set train.steps=40 -q)
# a shard with the same number of windows and other tokens (h5py writes its checksums again)
OTHER=$WORK/other.h5
cp "$SHARD" "$OTHER"
/usr/bin/python3 - "$OTHER" <<'EOF' || { echo "FAIL: cannot write the other shard"; exit 1; }
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    t = f["tokens"]
    t[1000:1064] = (t[1000:1064] + 7) % 8000 + 100
EOF
# a damaged cache: the run's file under its own name, one byte changed in the middle
mkdir -p "$WORK/cache3/data"
cp "$SHARD" "$WORK/cache3/data/$SHA.h5"
printf '\x5a' | dd of="$WORK/cache3/data/$SHA.h5" bs=1 seek=$((SIZE / 2)) conv=notrunc status=none
# --max-preauth-per-addr 16: five volunteers and four hostile peers connect from 127.0.0.1 at
# once, nine waiting for HELLO; the default 8 per address would refuse one of them (busy)
(cd "$HOST" && exec "${MPIRUN[@]}" -np 1 "$BIN/conflux-train" "${RUN[@]}" --set run.dir="$WORK/run" \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$PORT --plan equal --aggregate mean \
    --wait-volunteers 4 --wait-timeout 90 --idle-timeout 600 --max-preauth-per-addr 16 >"$WORK/bridge.log" 2>&1) &
MP=$!
J="127.0.0.1:$PORT#$FP"
vol() {  # NAME ARGS... &: a volunteer in $WORK/vol (no shards/ there), its log in $WORK/NAME.log;
         # always in the background (it execs: $! is the volunteer's own pid)
    local name=$1
    shift
    cd "$WORK/vol" && exec "$BIN/conflux-volunteer" --join "$J" --token-file "$TOK" --name "$name" \
        --set train.threads=1 --retries 30 "$@" >"$WORK/$name.log" 2>&1
}
wait_log "$WORK/bridge.log" "listening on" 120 || { bad "the bridge did not start: $(tail -3 "$WORK/bridge.log")"; exit 1; }
T0=$(date +%s.%N)
vol v1 --cache-dir "$WORK/cache1" &
V1=$!
vol v2 --cache-dir "$WORK/cache2" --download-limit 2 &
V2=$!
vol v3 --cache-dir "$WORK/cache3" &
V3=$!
vol v4 --cache-dir "$WORK/cache4" --set data.train="$OTHER" &
V4=$!
vol v5 --cache-dir "$WORK/cache5" --set data.train="$SHARD" &
V5=$!
# hostile peers while the downloads run
N='[0-9]+'
declare -A WANT=(
    [datapreauth]='1 ^DATA_REQUEST frame not accepted in this connection state at stream offset 6$'
    [datarange]="9 ^data bytes \\[$((SIZE - 1)), \\+2\\) outside the $SIZE-byte training data\$"
    [datawindow]='9 ^data requests beyond the download window: 3145728 bytes requested and not yet sent, at most 2097152$'
    [datalive]='9 ^DATA_REQUEST after the connection went live$'
)
MODES="datapreauth datarange datawindow datalive"
for m in $MODES; do
    timeout 120 "$BUILD/tests/tools/tool_badpeer" --expect "${WANT[$m]%% *}" "${WANT[$m]#* }" "$J" $m "$(cat "$TOK")" \
        >"$WORK/bad-$m.log" 2>&1 &
    eval "BAD_$m=\$!"
done
# 2. cut v2's download once 3 MB of it are on disk, restart it
PART2=$WORK/cache2/data/$SHA.h5.part
for _ in $(seq 300); do
    [ "$(stat -c %s "$PART2" 2>/dev/null || echo 0)" -ge 3000000 ] && break
    sleep 0.1
done
kill -9 $V2
wait $V2 2>/dev/null
CUT=$(stat -c %s "$PART2" 2>/dev/null || echo 0)
[ "$CUT" -ge 3000000 ] && [ "$CUT" -lt "$SIZE" ] && ok "v2 killed with $CUT of $SIZE bytes downloaded" \
    || bad "v2's partial download holds $CUT bytes (expected 3 MB .. $SIZE)"
vol v2b --cache-dir "$WORK/cache2" &
V2B=$!
for m in $MODES; do
    eval "pid=\$BAD_$m"
    wait $pid && ok "hostile peer '$m': $(grep -m1 'bridge error' "$WORK/bad-$m.log" | cut -c1-150)" \
        || { bad "hostile peer '$m' was not refused with error ${WANT[$m]}"; cat "$WORK/bad-$m.log"; }
done
wait $V4; rc=$?
want4="conflux-volunteer: error: the training data $OTHER ($(stat -c %s "$OTHER") bytes) has sha256:$(sha256sum "$OTHER" | cut -c1-64), the run's ($SIZE bytes) has sha256:$SHA: use the run's shard, or leave out --set data.train to download it from the bridge"
[ $rc = 1 ] && grep -qxF "$want4" "$WORK/v4.log" && ! grep -q "^step " "$WORK/v4.log" \
    && ok "a local shard with the same windows but other bytes is refused, naming the file and both hashes (exit 1)" \
    || { bad "v4 (another shard): rc=$rc"; tail -3 "$WORK/v4.log"; }
wait $MP && [ -f "$WORK/run/finished" ] && ok "the run finished (1 trainer + bridge + volunteers)" \
    || { bad "the run failed"; tail -5 "$WORK/bridge.log"; }
for v in v1 v2b v3 v5; do
    eval "pid=\$$(echo "$v" | tr a-z A-Z)"
    wait $pid; rc=$?
    [ $rc = 0 ] && grep -q "the run ended; contributed to [1-9][0-9]* step" "$WORK/$v.log" \
        && ! grep -q "reconnecting\|differs" "$WORK/$v.log" \
        && ok "$v trained to the end, matching the bridge's parameter hash at every round" \
        || { bad "$v: rc=$rc"; tail -3 "$WORK/$v.log"; }
done
# 1. v1 downloaded the whole shard; the cached file is the shard
grep -q "downloading the training data ($SIZE bytes, sha256:${SHA:0:16}...)" "$WORK/v1.log" \
    && grep -q "downloaded $SIZE bytes of training data in" "$WORK/v1.log" \
    && [ "$(sha256sum <"$WORK/cache1/data/$SHA.h5" | cut -c1-64)" = "$SHA" ] && [ ! -e "$WORK/cache1/data/$SHA.h5.part" ] \
    && ok "v1 (no local data) downloaded the $SIZE-byte shard into its cache: $(grep -o 'downloaded .*s)' "$WORK/v1.log")" \
    || { bad "v1's download"; grep -i "data" "$WORK/v1.log" | head -5; }
# 2. v2b resumed at the byte v2 stopped at, and fetched only the rest
got=$(grep -o "resuming the training data download at byte [0-9]*" "$WORK/v2b.log" | grep -o '[0-9]*$')
rest=$(grep -o "downloaded [0-9]* bytes of training data" "$WORK/v2b.log" | grep -o '[0-9][0-9]*')
[ -n "$got" ] && [ "$got" -gt 0 ] && [ "$got" = "$CUT" ] && [ "$rest" = $((SIZE - CUT)) ] \
    && grep -q "v2b (alice, [0-9a-f]*, [0-9.:]*) downloads the training data from byte $CUT of $SIZE" "$WORK/bridge.log" \
    && [ "$(sha256sum <"$WORK/cache2/data/$SHA.h5" | cut -c1-64)" = "$SHA" ] \
    && ok "v2 restarted resumed at byte $got (the bridge served from byte $got; $rest bytes the second time)" \
    || { bad "v2's resume: at '$got' (cut $CUT), second download '$rest' bytes"; grep -i "data" "$WORK/v2b.log" | head; }
# 3. the damaged cache file
want3="conflux-volunteer: the cached training data $WORK/cache3/data/$SHA.h5 ($SIZE bytes) has sha256:"
grep -qF "$want3" "$WORK/v3.log" && grep -q "not the run's sha256:$SHA: deleting it and downloading again" "$WORK/v3.log" \
    && grep -q "downloaded $SIZE bytes of training data" "$WORK/v3.log" \
    && [ "$(sha256sum <"$WORK/cache3/data/$SHA.h5" | cut -c1-64)" = "$SHA" ] \
    && ok "a damaged cache file is named, deleted and downloaded again" \
    || { bad "v3 (damaged cache)"; grep -i "data" "$WORK/v3.log" | head -5; }
# 6. the run's shard given locally: checked, not downloaded
grep -q "the training data $SHARD matches the run's (sha256:${SHA:0:16}...)" "$WORK/v5.log" \
    && ! grep -q "downloading the training data" "$WORK/v5.log" && [ ! -d "$WORK/cache5/data" ] \
    && ok "a local copy of the run's shard (--set data.train) is used after the hash check" \
    || { bad "v5 (local copy)"; head -5 "$WORK/v5.log"; }
# 7. the plan (bridge/planner.h): a volunteer still downloading is not live and gets no share:
# v2 (killed during its download) has no row with samples; every other volunteer's first
# row with samples comes after its "live" row
/usr/bin/python3 - "$WORK/run/volunteers.csv" <<'EOF' && ok "no share before a volunteer is live: v2 (killed while downloading) got none" \
    || bad "a volunteer got a share before it was live (volunteers.csv)"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault((r["identity"], r["name"]), []).append(r)
names = [n for _, n in by]
assert "v2" in names and "v2b" in names, names
for (ident, name), rs in by.items():
    if name == "v2":
        assert all(int(r["samples"]) == 0 for r in rs if r["event"] != "summary"), rs
        continue
    events = [r["event"] for r in rs]
    first = next((i for i, r in enumerate(rs) if int(r["samples"]) > 0 and r["event"] != "summary"), None)
    if first is not None:
        assert "live" in events[:first], (name, events)
EOF
grep -q "serving the training data shards/train.h5 to volunteers: $SIZE bytes, sha256:$SHA" "$WORK/bridge.log" \
    && ok "the bridge states its shard's size and SHA-256" || bad "no 'serving the training data' line in the bridge log"
echo "volunteer data test: $fails failure(s) ($(printf '%.0f' "$(echo "$(date +%s.%N) - $T0" | bc)") s)"
[ "$fails" = 0 ]
