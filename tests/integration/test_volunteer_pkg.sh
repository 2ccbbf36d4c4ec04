#!/bin/bash
# test_volunteer_pkg.sh: the volunteer built without MPI (make volunteer) and its Debian
# package (make deb), issue 16. make check-run builds both (build/volunteer/).
#  1. ldd of build/volunteer/bin/conflux-volunteer lists no MPI library (Open MPI's libmpi,
#     libopen-rte, libopen-pal, libhwloc, PMIx, HDF5's MPI flavour) and resolves every
#     library; its HDF5 is the serial one.
#  2. It works: --help exits 0, and it joins a bridged run (a conflux-train rank and
#     conflux-bridge from BUILD, under mpirun) as the run's only volunteer: its shares are
#     accepted by the bridge (volunteers.csv), every step had 2 participants (metrics.csv),
#     and its replica matched the bridge's parameter hash at every round to the end.
#  3. The .deb: Depends names no -dev and no MPI package, nor does anything it reaches
#     (apt-cache depends --recurse: what a bare machine would install); as root, apt-get installs it with
#     only runtime dependencies, /usr/bin/conflux-volunteer --help runs; removed, reinstalled,
#     --help again; removed at the end, with anything apt pulled in (a conflux-volunteer
#     installed before the test is reinstalled from its own .deb afterwards). Without root
#     that part is skipped; a package whose Depends failed the checks is not installed.
# usage: tests/integration/test_volunteer_pkg.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?usage: test_volunteer_pkg.sh BUILD_DIR DATA_DIR}
DATA=${2:?usage: test_volunteer_pkg.sh BUILD_DIR DATA_DIR}
source tests/lib.sh
BIN=$BUILD/bin
VBIN=build/volunteer/bin/conflux-volunteer
VERSION=$(sed -n 's/^#define CONFLUX_VERSION "\(.*\)"/\1/p' models/common.h)
DEB=build/volunteer/conflux-volunteer_${VERSION}_$(dpkg --print-architecture).deb
WORK=$(mktemp -d /tmp/conflux-volpkg-test.XXXXXX)
cleanup() {
    jobs -p | xargs -r kill -9 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
[ -x "$VBIN" ] || { echo "FAIL: $VBIN not built (make volunteer)"; exit 1; }
[ -f "$DEB" ] || { echo "FAIL: $DEB not built (make deb)"; exit 1; }

# ---- 1. no MPI in the volunteer's libraries ---------------------------------------------
MPI_LIBS='libmpi|libopen-rte|libopen-pal|libhwloc|libpmix|libhdf5_openmpi|libhdf5_mpich|libmpich|libucp|libucs|libfabric|libpsm'
if ldd "$VBIN" >"$WORK/ldd.txt" 2>&1; then
    n_libs=$(grep -c '=>\|ld-linux' "$WORK/ldd.txt")
    mpi=$(grep -oE "($MPI_LIBS)[^ ]*" "$WORK/ldd.txt" | sort -u | tr '\n' ' ')
    [ -z "$mpi" ] && ok "ldd $VBIN: $n_libs libraries, none of MPI" \
        || bad "ldd $VBIN lists MPI libraries: $mpi"
else
    bad "ldd $VBIN failed: $(cat "$WORK/ldd.txt")"
fi
grep -q 'not found' "$WORK/ldd.txt" && bad "ldd: unresolved libraries: $(grep 'not found' "$WORK/ldd.txt" | tr -s ' \t' ' ')"
grep -q 'libhdf5_serial\.so' "$WORK/ldd.txt" && ok "its HDF5 is the serial one (libhdf5_serial)" \
    || bad "no serial HDF5 in ldd $VBIN: $(grep -o 'libhdf5[^ ]*' "$WORK/ldd.txt" | tr '\n' ' ')"

# ---- 2. it works: --help, and a bridged run with it as the volunteer -------------------
"$VBIN" --help >"$WORK/help.txt" 2>&1 && grep -q '^usage: conflux-volunteer --join' "$WORK/help.txt" \
    && ok "$VBIN --help exits 0" || bad "$VBIN --help: $(head -3 "$WORK/help.txt")"
if ! command -v mpirun >/dev/null; then
    skip_check "the bridged run with the volunteer build needs mpirun"
else
    MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
    PORT=$(free_ports)
    TOKENS=$WORK/tokens.txt
    TOK=$WORK/laptop.token
    "$BIN/conflux-bridge" token issue --tokens "$TOKENS" laptop --out "$TOK" >/dev/null || bad "token issue"
    FP=$("$BIN/conflux-bridge" tls fingerprint --tokens "$TOKENS")
    R=$WORK/run
    STEPS=10
    "${MPIRUN[@]}" -np 1 "$BIN/conflux-train" "${TINY_MODEL[@]}" --set train.micro_batch=2 --set train.global_batch=8 \
        --set train.steps=$STEPS --set train.replica_check_every=1 --set run.dir="$R" -q \
        : -np 1 "$BIN/conflux-bridge" --tokens "$TOKENS" --listen 127.0.0.1:$PORT --aggregate mean --plan equal \
        --wait-volunteers 1 --wait-timeout 60 >"$R.bridge.log" 2>&1 &
    MP=$!
    "$VBIN" --join "127.0.0.1:$PORT#$FP" --token-file "$TOK" --name serialvol --set train.threads=1 \
        --set data.train="$DATA/shards/train.h5" --retries 30 >"$R.vol.log" 2>&1 &
    VOL=$!
    wait $MP; rc=$?
    [ $rc = 0 ] && [ -f "$R/finished" ] && ok "a 1-rank trainer + bridge ran $STEPS steps with this volunteer" \
        || { bad "the bridged run failed (rc=$rc)"; tail -5 "$R.bridge.log"; }
    wait $VOL; vrc=$?
    [ $vrc = 0 ] && grep -q "the run ended; contributed to $STEPS step" "$R.vol.log" \
        && ! grep -q "reconnecting\|differs" "$R.vol.log" \
        && ok "the volunteer contributed to all $STEPS steps and matched the bridge's parameter hash at every round" \
        || bad "volunteer: rc=$vrc $(tail -3 "$R.vol.log")"
    /usr/bin/python3 - "$R" "$STEPS" <<'EOF' && ok "volunteers.csv: serialvol's shares accepted; metrics.csv: 2 participants every step" \
        || bad "the volunteer's contribution is not in the run's tables"
import csv, sys
d, steps = sys.argv[1], int(sys.argv[2])
ev = list(csv.DictReader(open(f"{d}/volunteers.csv")))
acc = [e for e in ev if e["name"] == "serialvol" and e["event"] == "accepted"]
met = list(csv.DictReader(open(f"{d}/metrics.csv")))
print(f"{len(acc)} accepted shares, {sum(int(e['samples']) for e in acc)} samples; "
      f"participants per step {sorted(set(r['participants'] for r in met))}")
assert len(acc) == steps and all(int(e["samples"]) > 0 for e in acc), acc
assert len(met) == steps and all(r["participants"] == "2" for r in met)
EOF
fi

# ---- 3. the Debian package ------------------------------------------------------------
dpkg-deb --info "$DEB" >"$WORK/info.txt" || bad "dpkg-deb --info $DEB"
depends=$(sed -n 's/^ Depends: //p' "$WORK/info.txt")
bad_deps=$(echo "$depends" | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -E -- '-dev$|mpi|hwloc|pmix' | tr '\n' ' ')
[ -n "$depends" ] && [ -z "$bad_deps" ] && echo "$depends" | grep -q 'libhdf5-103-1' \
    && ok "$(basename "$DEB") ($(stat -c %s "$DEB") bytes): Depends: $depends" \
    || bad "Depends of $DEB: '$depends' (-dev or MPI: ${bad_deps:-none})"
# what apt may pull onto a machine that has none of them: every package Depends reaches
# (alternatives included), from apt's package lists
closure=$(echo "$depends" | tr ',|' '\n\n' | sed 's/^ *//; s/ .*//' | xargs -r apt-cache depends --recurse \
    --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances 2>/dev/null | grep -v '^ ' | sort -u)
bad_closure=$(echo "$closure" | grep -E -- '-dev$|mpi|hwloc|pmix' | tr '\n' ' ')
[ -n "$closure" ] && [ -z "$bad_closure" ] \
    && ok "everything its Depends reach: $(echo "$closure" | wc -l) packages, none -dev or MPI" \
    || bad "its Depends reach -dev or MPI packages: ${bad_closure:-(apt-cache depends found nothing)}"
dpkg-deb -c "$DEB" >"$WORK/contents.txt" || bad "dpkg-deb -c $DEB"
for f in ./usr/bin/conflux-volunteer ./usr/share/doc/conflux-volunteer/README ./usr/share/doc/conflux-volunteer/copyright; do
    grep -q " $f\$" "$WORK/contents.txt" || bad "$f is not in $DEB"
done
if [ "$(id -u)" != 0 ]; then
    skip_check "installing $DEB with apt-get needs root"
elif [ -z "$depends" ] || [ -n "$bad_deps$bad_closure" ]; then
    bad "$DEB not installed: its Depends would pull -dev or MPI packages"
else
    # Leaves the system as found: what apt installs besides conflux-volunteer (nothing where
    # make deps ran: the runtime libraries come with the -dev packages) is removed again.
    APT=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
    prior=$(dpkg-query -W -f='${Status} ${Version}' conflux-volunteer 2>/dev/null | sed -n 's/^install ok installed //p')
    [ -n "$prior" ] && echo "note: conflux-volunteer $prior is installed; it is reinstalled at the end"
    for pass in install reinstall; do
        pulled=
        if "${APT[@]}" install "./$DEB" >"$WORK/apt-$pass.log" 2>&1; then
            new=$(awk '/^The following NEW packages/ {f = 1; next} f && /^  / {printf " %s", $0; next} {f = 0}' \
                "$WORK/apt-$pass.log" | tr -s ' ' ' ')
            pulled=$(echo $new | tr ' ' '\n' | grep -vx 'conflux-volunteer' | tr '\n' ' ')
            [ -n "$pulled" ] && echo "note: apt also installed $pulled(removed again below)"
            /usr/bin/conflux-volunteer --help >"$WORK/help-$pass.txt" 2>&1 \
                && grep -q '^usage: conflux-volunteer' "$WORK/help-$pass.txt" \
                && ok "$pass: apt-get install ./$(basename "$DEB") (new:${new}), /usr/bin/conflux-volunteer --help exits 0" \
                || bad "$pass: /usr/bin/conflux-volunteer --help: $(head -3 "$WORK/help-$pass.txt")"
            echo "$new " | grep -qE -- '-dev |mpi|hwloc|pmix' && bad "$pass: apt installed -dev or MPI packages: $new"
        else
            bad "$pass: apt-get install ./$DEB failed: $(tail -5 "$WORK/apt-$pass.log")"
        fi
        "${APT[@]}" remove conflux-volunteer >"$WORK/remove-$pass.log" 2>&1 && [ ! -e /usr/bin/conflux-volunteer ] \
            && ! dpkg-query -W -f='${Status}' conflux-volunteer 2>/dev/null | grep -q "install ok installed" \
            && ok "$pass: apt-get remove conflux-volunteer removed /usr/bin/conflux-volunteer" \
            || bad "$pass: apt-get remove: $(tail -3 "$WORK/remove-$pass.log")"
        if [ -n "$pulled" ]; then
            "${APT[@]}" remove $pulled >"$WORK/remove-pulled-$pass.log" 2>&1 \
                || bad "could not remove what apt pulled in: $pulled: $(tail -3 "$WORK/remove-pulled-$pass.log")"
        fi
    done
    if [ -n "$prior" ]; then
        echo "note: conflux-volunteer $prior was installed before the test; reinstalling the test's build of it"
        "${APT[@]}" install "./$DEB" >/dev/null 2>&1 || bad "could not restore conflux-volunteer"
    fi
fi
echo "volunteer package test: $fails failure(s)"
exit $fails
