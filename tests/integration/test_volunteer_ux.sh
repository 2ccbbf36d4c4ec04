#!/bin/bash
# test_volunteer_ux.sh: the volunteer's tools before and during a run (issue 16, parts 3 and
# 4), against a real run: 2 trainer ranks + conflux-bridge under mpirun (pinned to CPU 0),
# volunteers as separate processes.
#  1. --check over loopback (exit 0, probe figures, BYE), and its failures, each with its
#     exit code and message: a revoked token (6), a closed port (3), a wrong certificate
#     pin (5), a bridge that closes during the TLS handshake (4), a bridge of protocol
#     major 2 and one that refuses our version with ERROR VERSION (7); the real bridge
#     answers a major-2 peer with ERROR code 2. A full disk: --stats on /dev/full,
#     --identity-file on a full tmpfs.
#  2. --check behind an emulated link (tests/wan.sh: 80 ms RTT, 8 Mbit/s up, 20 Mbit/s
#     down): rates within 20% of the link's, the minimum RTT within 20% of 80 ms; the same
#     link cut: "no answer" (3).
#  3. --max-upload-rate 400k: the upload rate, by the volunteer's --stats and by the bridge's
#     bridge.csv (bytes and seconds it timed), within 10% of 400,000 bytes/s; then SIGTERM
#     during an upload: that share is finished first, and the summary's accepted samples
#     equal the bridge's accepted rows for that identity.
#  4. --pause-when-busy 0.4 (the volunteer on CPU 1): 2 `yes` burners on CPU 1 make it
#     pause (it leaves; the bridge accepts nothing more of it); they stop, it comes back and
#     trains again.
#  5. --hours: a window without the current hour: it waits without joining; one with it:
#     it trains.
# usage: tests/integration/test_volunteer_ux.sh BUILD_DIR DATA_DIR (VUX_PARTS="4": only part 4)
set -u
BUILD=${1:?usage: test_volunteer_ux.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_volunteer_ux.sh BUILD_DIR DATA_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)  # tests/
source "$HERE/lib.sh"
source "$HERE/wan.sh"
BIN=$(cd "$BUILD/bin" && pwd)
BUILD=$(cd "$BUILD" && pwd)
DATA=$(cd "$DATA" && pwd)
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/conflux-vux-test.XXXXXX)
chmod 755 "$WORK"
MNT=
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    wait 2>/dev/null
    wan_cleanup
    [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export WAN_QUIET=1
[ "$(nproc)" -ge 2 ] || skip "needs 2 CPUs (the run on CPU 0, the volunteer and the burners on CPU 1)"
field() { grep -o "$2=[0-9.]*" "$1" | tail -1 | cut -d= -f2; }  # FILE KEY: from "check: k=v ..."
within() { awk -v x="$1" -v want="$2" -v tol="$3" 'BEGIN { exit !(x != "" && x >= want * (1 - tol) && x <= want * (1 + tol)) }'; }
accepted_rows() {  # IDENTITY: samples the bridge accepted (fresh or late) from that identity
    awk -F, -v id="$1" '$3 == id && ($6 == "accepted" || $6 == "accepted-stale") { s += $7 } END { print s + 0 }' \
        "$R/volunteers.csv"
}

PORT=$(free_ports)
TOKENS=$WORK/tokens.txt
TOK=$WORK/alice.token
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" alice --out "$TOK" 2>/dev/null
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" bob --out "$WORK/bob.token" 2>/dev/null
"$BIN/conflux-bridge" token revoke --tokens "$TOKENS" bob >/dev/null
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")
JOIN="127.0.0.1:$PORT#$FP"
R=$WORK/run
# the run: trainers and bridge on CPU 0 (mpirun must not re-bind them). Its rounds must be
# slower than a volunteer takes to apply one (a volunteer gets a share only once it is in
# step, and the bridge does not wait for one that is not), hence the global batch of 64.
taskset -c 0 mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "$BIN/conflux-train" "${TINY_MODEL[@]}" \
    --set train.global_batch=64 --set train.micro_batch=4 --set train.steps=100000 --set train.eval_every=0 \
    --set run.dir="$R" -q \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 0.0.0.0:$PORT --plan equal --deadline 10 \
    >"$WORK/bridge.log" 2>&1 &
MP=$!
wait_log "$WORK/bridge.log" "listening on" 60 || { bad "the bridge did not start"; tail "$WORK/bridge.log"; exit 1; }
V=("$BIN/conflux-volunteer" --token-file "$TOK" --set data.train="$DATA/shards/train.h5")
part() { [[ " ${VUX_PARTS:-1 2 3 4 5} " == *" $1 "* ]]; }  # VUX_PARTS="3 4": only those parts

# ---- 1. --check's failures --------------------------------------------------------------
if part 1; then
check_fails() {  # NAME CODE TEXT ARGS...: --check exits CODE and prints TEXT
    local name=$1 code=$2 text=$3; shift 3
    "$@" --check >"$WORK/check-$name.log" 2>&1
    local rc=$?
    [ $rc = "$code" ] && grep -qF -- "$text" "$WORK/check-$name.log" \
        && ok "--check, $name: exit $code, \"$(grep -oF -- "$text" "$WORK/check-$name.log" | head -1)\"" \
        || { bad "--check, $name: rc=$rc (want $code)"; cat "$WORK/check-$name.log"; }
}
check_fails revoked-token 6 "error: the bridge refused the join token: unknown or revoked join token (bridge 127.0.0.1:$PORT" \
    "$BIN/conflux-volunteer" --join "$JOIN" --token-file "$WORK/bob.token"
check_fails closed-port 3 "error: cannot reach the bridge at 127.0.0.1:$((PORT + 9)): connection refused" \
    "${V[@]}" --join "127.0.0.1:$((PORT + 9))#$FP"
# and one that works, over loopback: the bridge answers the probes, the check leaves with BYE
"${V[@]}" --join "$JOIN" --name lo-check --check >"$WORK/check-lo.log" 2>&1; rc=$?
[ $rc = 0 ] && grep -q '^check: .*rtt_min_ms=[0-9.]' "$WORK/check-lo.log" \
    && grep -q "^check: .*up_mbit=[0-9.]" "$WORK/check-lo.log" \
    && wait_log "$WORK/bridge.log" "lo-check (.*leaves (reason 1)" 10 \
    && ok "--check over loopback: exit 0, $(grep -o 'rtt_min_ms=[0-9.]*' "$WORK/check-lo.log"), left with BYE" \
    || { bad "--check over loopback: rc=$rc"; cat "$WORK/check-lo.log"; }
WRONG="sha256:$(printf '0%.0s' $(seq 64))"
check_fails wrong-pin 5 "TLS certificate fingerprint mismatch: the bridge presented $FP but the join string pins $WRONG" \
    "${V[@]}" --join "127.0.0.1:$PORT#$WRONG"
# fake bridges (plaintext TCP, one connection each): MODE close | major2 | errversion
fake_bridge() {
    "$PY" - "$1" "$2" "$HERE/ref" <<'EOF' &
import socket, struct, sys, time
sys.path.insert(0, sys.argv[3])
import proto_ref as P
mode, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(1); s.settimeout(20)
c, _ = s.accept()
if mode == "major2":        # what a bridge of protocol 2 sends
    c.recv(65536); c.sendall(b"CXBR\x02\x00\x0b\x00" + bytes(12))
elif mode == "errversion":  # a bridge that refuses this client's version
    c.recv(65536)
    msg = b"this bridge speaks protocol 1.7 and needs clients of 1.5 or newer"
    c.sendall(P.frame(P.ERROR, struct.pack("<IH", 2, len(msg)) + msg))
time.sleep(0.5); c.close()
EOF
    FAKES+=($!)
    sleep 0.5
}
FAKES=()
FPORT=$((PORT + 5))
fake_bridge close $FPORT
check_fails tls-handshake 4 "TLS handshake failed" "${V[@]}" --join "127.0.0.1:$FPORT#$FP"
fake_bridge major2 $((FPORT + 1))
check_fails version-frames 7 "error: the bridge speaks protocol version 2.x and this conflux-volunteer 1.1 (bridge 127.0.0.1:$((FPORT + 1))): install the conflux-volunteer version the collaboration host names" \
    "${V[@]}" --plaintext --join "127.0.0.1:$((FPORT + 1))"
fake_bridge errversion $((FPORT + 2))
check_fails version-error 7 "error: the bridge refused this volunteer's protocol version: this bridge speaks protocol 1.7 and needs clients of 1.5 or newer (bridge 127.0.0.1:$((FPORT + 2)), error 2;" \
    "${V[@]}" --plaintext --join "127.0.0.1:$((FPORT + 2))"
wait "${FAKES[@]}"
# the real bridge tells a peer of another major version so, with ERROR code 2 (VERSION)
"$PY" - "$PORT" <<'EOF' >"$WORK/major2-peer.log" 2>&1 && ok "the bridge answers a protocol-2 peer with ERROR VERSION: $(cat "$WORK/major2-peer.log")" || bad "major-2 peer: $(cat "$WORK/major2-peer.log")"
import socket, ssl, struct, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10))
s.sendall(b"CXBR\x02\x00\x01\x00" + bytes(12))
data = b""
while len(data) < 26:
    d = s.recv(4096)
    if not d: break
    data += d
code, n = struct.unpack("<IH", data[20:26])
msg = data[26:26 + n].decode(errors="replace")
print(f"code {code}: {msg[:60]}")
sys.exit(0 if data[6] == 11 and code == 2 and "major version 2" in msg else 1)
EOF
# a full disk
"${V[@]}" --join "$JOIN" --stats /dev/full >"$WORK/full-stats.log" 2>&1; rc=$?
[ $rc = 1 ] && grep -q "error: cannot write --stats /dev/full: No space left on device (disk full: free some space or write elsewhere)" "$WORK/full-stats.log" \
    && ok "--stats on a full disk (/dev/full): exit 1, \"$(grep -o 'cannot write.*' "$WORK/full-stats.log")\"" \
    || bad "--stats /dev/full: rc=$rc $(cat "$WORK/full-stats.log")"
MNT=$WORK/full
mkdir -p "$MNT"
if mount -t tmpfs -o size=64k tmpfs "$MNT" 2>/dev/null; then
    dd if=/dev/zero of="$MNT/fill" bs=4k 2>/dev/null
    "${V[@]}" --join "$JOIN" --identity-file "$MNT/me.id" --steps 1 >"$WORK/full-id.log" 2>&1; rc=$?
    [ $rc = 1 ] && grep -q "error: cannot write the identity file $MNT/me.id: No space left on device (disk full" "$WORK/full-id.log" \
        && ok "--identity-file on a full tmpfs: exit 1, named" || bad "full identity file: rc=$rc $(cat "$WORK/full-id.log")"
    umount "$MNT"; MNT=
else
    MNT=
    skip_check "a full disk for --identity-file: cannot mount a tmpfs here (needs root)"
fi

fi
# ---- 2. --check behind an emulated link ---------------------------------------------------
if part 2; then
ID=236
if ! wan_available; then
    skip_check "--check behind an emulated link: $WAN_SKIP_REASON"
elif ! wan_link_up $ID 80 0 0 8 20; then
    bad "wan_link_up $ID"
else
    wan_exec $ID "${V[@]}" --join "10.77.$ID.1:$PORT#$FP" --name checker --check >"$WORK/check-wan.log" 2>&1; rc=$?
    f=$WORK/check-wan.log
    up=$(field "$f" up_mbit) down=$(field "$f" down_mbit) rtt=$(field "$f" rtt_min_ms) sps=$(field "$f" samples_per_s)
    echo "   --check over 80 ms RTT, 8 up / 20 down Mbit/s: $(grep '^check:' "$f")"
    [ $rc = 0 ] && grep -q "the link to the bridge works (left with BYE; no rounds joined)" "$f" \
        && ok "--check over the emulated link: exit 0" || { bad "--check over the link: rc=$rc"; cat "$f"; }
    within "$up" 8 0.2 && ok "upload rate $up Mbit/s within 20% of the link's 8" || bad "upload rate $up, link 8 Mbit/s"
    within "$down" 20 0.2 && ok "download rate $down Mbit/s within 20% of the link's 20" || bad "download rate $down, link 20 Mbit/s"
    within "$rtt" 80 0.2 && ok "minimum RTT $rtt ms within 20% of 80" || bad "RTT $rtt ms, link 80 ms"
    awk -v x="$sps" 'BEGIN { exit !(x > 0) }' && grep -q "an upload of the fp16 gradient (0.6 MB) takes" "$f" \
        && ok "it says what this machine would contribute: $sps samples/s, $(grep -o 'takes [0-9.]* s' "$f")" \
        || bad "no contribution figures: $(grep -A1 compute "$f")"
    wait_log "$WORK/bridge.log" "checker (.*leaves (reason 1)" 10 \
        && ok "the check left with BYE" || bad "no BYE of the check in the bridge log"
    wan_cut $ID
    wan_exec $ID "${V[@]}" --join "10.77.$ID.1:$PORT#$FP" --check --timeout 2 >"$WORK/check-cut.log" 2>&1; rc=$?
    [ $rc = 3 ] && grep -q "error: cannot reach the bridge at 10.77.$ID.1:$PORT: no answer within 2 s (connection timed out" "$WORK/check-cut.log" \
        && ok "--check over a cut link: exit 3, no answer within 2 s" || bad "cut link: rc=$rc $(cat "$WORK/check-cut.log")"
    wan_link_down $ID
fi

fi
# ---- 3. --max-upload-rate, then the summary at SIGTERM -------------------------------------
if part 3; then
RATE=400000
"${V[@]}" --join "$JOIN" --name paced --identity-file "$WORK/paced.id" --max-upload-rate 400k \
    --stats "$WORK/paced.csv" >"$WORK/paced.log" 2>&1 &
PACED=$!
shares() { awk -F, 'NR > 1 && $2 > 0' "$1" 2>/dev/null | wc -l; }
for _ in $(seq 1200); do [ "$(shares "$WORK/paced.csv")" -ge 5 ] && break; sleep 0.05; done
# the next round opens at once: its share computes for ~0.1 s, then uploads for ~1.6 s at
# 400k: the signal lands during that upload, which must finish (and count) before it leaves
sleep 0.7
n_sig=$(shares "$WORK/paced.csv")
kill -TERM $PACED; wait $PACED; rc=$?
[ "$(shares "$WORK/paced.csv")" = $((n_sig + 1)) ] && ok "SIGTERM during an upload: that share was finished before leaving" \
    || bad "SIGTERM during an upload: $n_sig shares at the signal, $(shares "$WORK/paced.csv") at the end"

up=$(awk -F, 'NR > 1 && $5 > 0 { b += $5; s += $4 } END { if (s > 0) printf "%.0f", b / s }' "$WORK/paced.csv")
within "$up" $RATE 0.1 && ok "--max-upload-rate 400k: the volunteer's uploads ran at $up bytes/s" \
    || { bad "--max-upload-rate 400k: $up bytes/s"; cat "$WORK/paced.csv"; }
# the bridge's own timing (bytes after each upload's first chunk, over the time since): only
# this volunteer uploaded so far
bup=$(awk -F, 'NR > 1 { b += $18; s += $19 } END { if (s > 0) printf "%.0f", b / s }' "$R/bridge.csv")
within "$bup" $RATE 0.1 && ok "... and by the bridge's bridge.csv: $bup bytes/s" || bad "bridge.csv upload rate $bup bytes/s"
sleep 1  # the bridge writes the rows of the round the volunteer left in
sum=$(grep "summary:" "$WORK/paced.log")
got=$(echo "$sum" | grep -o "accepted [0-9]*" | cut -d' ' -f2)
want=$(accepted_rows "$(cat "$WORK/paced.id")")
[ $rc = 0 ] && [ -n "$got" ] && [ "$got" -gt 0 ] && [ "$got" = "$want" ] \
    && echo "$sum" | grep -q "samples contributed $got, accepted $got, up [0-9.]* MB, down [0-9.]* MB, trained [0-9]* s" \
    && ok "SIGTERM: exit 0 and the summary's $got accepted samples are the bridge's: ${sum#*summary: }" \
    || bad "SIGTERM summary: rc=$rc, '$sum', bridge accepted $want"
grep -q "finishing the round in flight, then leaving" "$WORK/paced.log" || bad "no word about the round in flight"

fi
# ---- 4. --pause-when-busy ---------------------------------------------------------------
if part 4; then
# CPU 1 must be idle for this part (other work there would look like the burners)
idle1=$("$PY" - <<'PYEOF'
import time
def ticks():
    for l in open("/proc/stat"):
        if l.startswith("cpu1 "):
            v = [int(x) for x in l.split()[1:9]]
            return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], sum(v)
b0, t0 = ticks(); time.sleep(2); b1, t1 = ticks()
print("%.2f" % ((b1 - b0) / max(t1 - t0, 1)))
PYEOF
)
if awk -v x="$idle1" 'BEGIN { exit !(x > 0.25) }'; then
    skip_check "--pause-when-busy: CPU 1 is already busy with other work ($idle1 of it), which would look like the burners"
else
taskset -c 1 "${V[@]}" --join "$JOIN" --name busy --identity-file "$WORK/busy.id" --threads 1 \
    --pause-when-busy 0.4 --resume-after 3 >"$WORK/busy.log" 2>&1 &
BUSYV=$!
if wait_log "$R/volunteers.csv" '"busy","alice",accepted' 60; then
    taskset -c 1 yes >/dev/null & B1=$!
    taskset -c 1 yes >/dev/null & B2=$!
    if wait_log "$WORK/busy.log" "pausing: busy: other processes use" 20; then
        ok "busy: it paused: $(grep -o 'pausing: busy: other processes use [0-9.]* cores' "$WORK/busy.log")"
        wait_log "$WORK/bridge.log" "busy (alice.*leaves (reason 1)" 10 && ok "busy: it left the rounds (BYE)" \
            || bad "busy: no BYE in the bridge log"
        n0=$(accepted_rows "$(cat "$WORK/busy.id")")
        sleep 4
        n1=$(accepted_rows "$(cat "$WORK/busy.id")")
        [ "$n0" = "$n1" ] && ok "busy: no share accepted while paused ($n1 samples before and after 4 s)" \
            || bad "busy: accepted samples grew while paused: $n0 -> $n1"
    else
        bad "busy: did not pause with 2 burners on its CPU"; tail -3 "$WORK/busy.log"
    fi
    kill $B1 $B2; wait $B1 $B2 2>/dev/null
    n1=$(accepted_rows "$(cat "$WORK/busy.id")")
    if wait_log "$WORK/busy.log" "^conflux-volunteer: resuming after" 30; then
        for _ in $(seq 100); do [ "$(accepted_rows "$(cat "$WORK/busy.id")")" -gt "$n1" ] && break; sleep 0.2; done
        [ "$(accepted_rows "$(cat "$WORK/busy.id")")" -gt "$n1" ] \
            && ok "busy: resumed after the burners stopped and trains again ($(grep -o '^conflux-volunteer: resuming after [0-9]* s' "$WORK/busy.log" | cut -d' ' -f2-))" \
            || bad "busy: resumed but no share accepted since"
    else
        bad "busy: did not resume: $(tail -2 "$WORK/busy.log")"
    fi
else
    bad "busy: the volunteer never trained: $(tail -3 "$WORK/busy.log")"
fi
kill -TERM $BUSYV; wait $BUSYV
fi

fi
# ---- 5. --hours ----------------------------------------------------------------------------
if part 5; then
h=$((10#$(date +%H)))
out="$(((h + 2) % 24))-$(((h + 3) % 24))"  # (h+1 at the latest by the end: still outside)
in="$h-$(((h + 2) % 24))"
"${V[@]}" --join "$JOIN" --name night --hours "$out" >"$WORK/night.log" 2>&1 &
NIGHT=$!
wait_log "$WORK/night.log" "waiting, not joined: outside --hours" 10 && sleep 3
kill -TERM $NIGHT; wait $NIGHT; rc=$?
[ $rc = 0 ] && grep -q "waiting, not joined: outside --hours $(printf %02d-%02d $(((h + 2) % 24)) $(((h + 3) % 24)))" "$WORK/night.log" \
    && ! grep -q "night (alice" "$WORK/bridge.log" && grep -q "summary: rounds joined 0" "$WORK/night.log" \
    && ok "--hours $out (now $h h): it waited without joining" || bad "--hours outside: rc=$rc $(cat "$WORK/night.log")"
"${V[@]}" --join "$JOIN" --name day --hours "$in" --steps 2 >"$WORK/day.log" 2>&1; rc=$?
[ $rc = 0 ] && grep -q "leaving after 2 contributed step" "$WORK/day.log" \
    && ok "--hours $in (now $h h): it trained" || bad "--hours inside: rc=$rc $(tail -3 "$WORK/day.log")"

fi

kill $MP 2>/dev/null
wait $MP 2>/dev/null
echo "volunteer ux test: $fails failure(s)"
[ "$fails" = 0 ]
