#!/bin/bash
# test_status.sh: the bridge's live status page against a real local collaboration
# (2 trainer ranks + bridge + 2 volunteers):
#   - /status.json under concurrent polling (8 pollers) while rounds run: every answer is
#     200 and valid JSON, steps never go backwards, both volunteers are listed, and no
#     response contains a join token;
#   - the page rendered in headless Chromium (Debian's chromium): after its script ran, the
#     participants table holds both volunteers and the step counter shows progress;
#   - only GET/HEAD are served; other paths are 404.
# usage: tests/integration/test_status.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_status.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_status.sh BUILD_DIR DATA_DIR}
source tests/lib.sh
BIN=$BUILD/bin
WORK=$(mktemp -d /tmp/conflux-status-test.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    wait 2>/dev/null
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(free_ports)
SPORT=$((PORT + 1))
TOKENS=$WORK/tokens.txt
"$BIN/conflux-bridge" token issue --tokens "$TOKENS" host --out "$WORK/host.token"; TOKF=$WORK/host.token; TOK=$(cat "$TOKF")
FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")  # the join string pins it
mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN/conflux-train" "${TINY_MODEL[@]}" \
    --set train.global_batch=8 --set train.micro_batch=2 --set train.steps=400 \
    --set train.eval_every=0 --set run.dir="$WORK/run" -q \
    : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$PORT --plan equal \
    --status 127.0.0.1:$SPORT --wait-volunteers 2 --wait-timeout 60 >"$WORK/bridge.log" 2>&1 &
MP=$!
for v in alpha beta; do
    "$BIN/conflux-volunteer" --join "127.0.0.1:$PORT#$FP" --token-file "$TOKF" --name "$v" --set train.threads=1 \
        -q >"$WORK/$v.log" 2>&1 &
done
# wait for both volunteers to be live and a few steps done
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$SPORT/status.json" -o "$WORK/s.json" 2>/dev/null &&
        /usr/bin/python3 -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not (s['live_volunteers']==2 and s['step']>=5))" "$WORK/s.json" && break
    sleep 0.1
done
/usr/bin/python3 -c "import json,sys; s=json.load(open(sys.argv[1])); sys.exit(s['live_volunteers']!=2)" "$WORK/s.json" 2>/dev/null \
    && ok "status.json shows the live collaboration: $(head -c 160 "$WORK/s.json")..." || { bad "no live collaboration on the status page"; tail -5 "$WORK/bridge.log"; }
/usr/bin/python3 - "$WORK/s.json" <<'EOF' && ok "status.json: mode sync, each volunteer's codec (fp16) and bytes per contributed sample" || bad "status.json lacks the mode, codec or bytes per sample"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["mode"] == "sync" and s["inner_steps"] == 1, (s["mode"], s["inner_steps"])
live = [v for v in s["volunteers"] if v["connected"]]
assert live and all(v["codec"] == "fp16" for v in live), [v["codec"] for v in live]
for v in live:
    n = v["samples_accepted"] + v["samples_late"]
    assert n == 0 or abs(v["bytes_per_sample"] - (v["bytes_sent"] + v["bytes_received"]) / n) < 1e-6 * v["bytes_per_sample"], v
EOF

# concurrent polling while rounds run
/usr/bin/python3 - "http://127.0.0.1:$SPORT/status.json" "$TOK" <<'EOF' && ok "8 concurrent pollers x 40 requests: all 200, valid JSON, monotone steps, no token" || bad "concurrent polling"
import json, sys, threading, urllib.request
url, tok = sys.argv[1], sys.argv[2]
errors, counts = [], []
def poll():
    last, n = -1, 0
    for _ in range(40):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read().decode()
                if r.status != 200: errors.append(f"status {r.status}")
        except Exception as e:
            errors.append(repr(e)); continue
        if tok in body: errors.append("token in the response")
        s = json.loads(body)
        if s["step"] < last: errors.append(f"step went back {last} -> {s['step']}")
        last = s["step"]
        names = sorted(v["name"] for v in s["volunteers"])
        if names != ["alpha", "beta"]: errors.append(f"volunteers {names}")
        n += 1
    counts.append(n)
ts = [threading.Thread(target=poll) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"{sum(counts)} answers, {len(errors)} errors {errors[:3]}")
sys.exit(1 if errors or sum(counts) != 320 else 0)
EOF
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$SPORT/status.json")
[ "$code" = 405 ] || [ "$code" = 501 ] && ok "POST refused ($code)" || bad "POST answered $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SPORT/secret")
[ "$code" = 404 ] && ok "unknown path: 404" || bad "unknown path answered $code"

# the page in a real browser
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
    skip_check "headless browser check (no chromium; apt-get install chromium)"
else
    timeout 60 "$CHROME" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --user-data-dir="$WORK/chrome" --virtual-time-budget=6000 --dump-dom \
        "http://127.0.0.1:$SPORT/" >"$WORK/dom.html" 2>"$WORK/chrome.log"
    rows=$(grep -o '<tr class="participant"><td>[^<'"'"']*</td>' "$WORK/dom.html" | wc -l)
    step=$(sed -n 's/.*id="step">\([0-9]*\)<.*/\1/p' "$WORK/dom.html" | head -1)
    if [ "$rows" = 2 ] && grep -q '>alpha<' "$WORK/dom.html" && grep -q '>beta<' "$WORK/dom.html" \
        && [ "${step:-0}" -gt 0 ] && grep -q '<path d="M' "$WORK/dom.html" && ! grep -q "$TOK" "$WORK/dom.html"; then
        ok "Chromium rendered the page: 2 participant rows (alpha, beta), step $step, a loss curve"
    else
        bad "rendered page: $rows rows, step '${step}'"; head -c 600 "$WORK/dom.html"; tail -3 "$WORK/chrome.log"
    fi
    if [ -n "${CONFLUX_STATUS_SCREENSHOT:-}" ]; then
        timeout 60 "$CHROME" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
            --user-data-dir="$WORK/chrome2" --virtual-time-budget=6000 --window-size=1000,900 \
            --screenshot="$CONFLUX_STATUS_SCREENSHOT" "http://127.0.0.1:$SPORT/" >/dev/null 2>&1
    fi
fi
kill $MP 2>/dev/null
echo "status test: $fails failure(s)"
[ "$fails" = 0 ]   # not "exit $fails": 77 means skipped
