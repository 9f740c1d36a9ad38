#!/usr/bin/env bash
# Build the bids-deid image with podman and test it the way users run it:
#   --network=none --read-only --tmpfs /tmp, as a non-root user.
# Checks: the demo, and the commands of docs/container.md run verbatim as a non-root user, print
# "validator: 0 errors", no byte of the public output (gunzipped too) holds "canary",
# GeneratedBy.Container is set; the documented participant command without -u is refused in one
# line that says to add it.
#
# Usage: scripts/container-test.sh            (from anywhere; root or rootless podman)
# Env:   BASE=image     use this base image instead of a debootstrapped Debian bookworm
#        IMAGE=name     image tag to build (default localhost/bids-deid:test)
#        KEEP_BUILD=1   keep container-build/ (rootfs, logs) for a faster rerun
# Exits 0 with "SKIP: ..." where podman cannot run here.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
IMAGE="${IMAGE:-localhost/bids-deid:test}"
BASE_IMAGE="${BASE:-localhost/bids-deid-base:bookworm}"
BUILD="$REPO/container-build"
mkdir -p "$BUILD"

skip() { echo "SKIP: $*"; exit 0; }
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v podman >/dev/null || skip "podman is not installed (apt-get install -y podman)"
PODMAN=(podman)
# Machines without systemd / with crun trouble: runc and cgroupfs work where the defaults do not.
if [ -x /usr/sbin/runc ]; then PODMAN+=(--runtime /usr/sbin/runc); fi
PODMAN+=(--cgroup-manager=cgroupfs)
# Some sandboxes refuse raising rlimits: ask for values at or below the current hard limits.
NOFILE="$(ulimit -Hn)"; [ "$NOFILE" = unlimited ] && NOFILE=65536
NPROC="$(ulimit -Hu)"; [ "$NPROC" = unlimited ] && NPROC=65536
[ "$NOFILE" -gt 8192 ] && NOFILE=8192
[ "$NPROC" -gt 8192 ] && NPROC=8192
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")

# ---------------------------------------------------------------- base image
if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  [ -n "${BASE:-}" ] && skip "base image $BASE is not available locally and no registry is assumed"
  command -v debootstrap >/dev/null || skip "no base image and no debootstrap to make one (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || skip "making a base with debootstrap needs root"
  echo "== making a Debian bookworm base with python3.11 (debootstrap)"
  rm -rf "$BUILD/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$BUILD/rootfs" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" > "$BUILD/debootstrap.log" 2>&1 \
    || fail "debootstrap failed; see $BUILD/debootstrap.log"
  # Smaller base: no apt caches or lists, no docs, man pages or translations.
  rm -rf "$BUILD/rootfs/var/cache/apt/"* "$BUILD/rootfs/var/lib/apt/lists/"* "$BUILD/rootfs/usr/share/doc/"* \
    "$BUILD/rootfs/usr/share/man/"* "$BUILD/rootfs/usr/share/locale/"* "$BUILD/rootfs/usr/share/info/"*
  tar -C "$BUILD/rootfs" -c . | "${PODMAN[@]}" import - "$BASE_IMAGE" >/dev/null
  [ -n "${KEEP_BUILD:-}" ] || rm -rf "$BUILD/rootfs"
fi
"${PODMAN[@]}" run --rm "${ULIMITS[@]}" --network=none "$BASE_IMAGE" python3 -c "import sys, venv; assert sys.version_info[:2] == (3, 11)" \
  || skip "podman cannot run a container here (or the base has no python3.11 with venv)"

# ---------------------------------------------------------------- build context: the committed tree
# (HEAD, so other people's uncommitted edits do not leak into the test; FROM_WORKTREE=1 to use them)
CTX="$BUILD/context"
rm -rf "$CTX"; mkdir -p "$CTX"
if [ -n "${FROM_WORKTREE:-}" ] || ! git rev-parse HEAD >/dev/null 2>&1; then
  tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=container-build --exclude=.container-wheels -c . | tar -x -C "$CTX"
else
  git archive HEAD | tar -x -C "$CTX"
fi

# ---------------------------------------------------------------- wheels (the build needs no network)
PY="${PYTHON:-python3}"
if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; fi
echo "== downloading wheels for requirements.lock into the build context's .container-wheels/"
WHEELS="$CTX/.container-wheels"
# The host's Python must match the image's (3.11, same architecture, glibc >= the wheels' needs).
"$PY" -c "import sys; assert sys.version_info[:2] == (3, 11)" || skip "wheels must be fetched by a Python 3.11 ($PY is not)"
"$PY" -m pip download -q --only-binary=:all: -r "$CTX/requirements.lock" -d "$WHEELS" 2>"$BUILD/pip.log" \
  || { tail -5 "$BUILD/pip.log"; fail "pip download failed"; }
"$PY" -m pip wheel -q --no-deps "$CTX" -w "$WHEELS" 2>>"$BUILD/pip.log" \
  || { tail -5 "$BUILD/pip.log"; fail "building the bids-deid wheel failed"; }

# ---------------------------------------------------------------- build
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$CTX/bids_deid/__init__.py")"
echo "== building $IMAGE (version $VERSION) on $BASE_IMAGE"
T0=$(date +%s)
"${PODMAN[@]}" build "${ULIMITS[@]}" --network=none -f "$CTX/Dockerfile" -t "$IMAGE" \
  --build-arg BASE="$BASE_IMAGE" --build-arg VERSION="$VERSION" \
  --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --build-arg VCS_REF="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$CTX" > "$BUILD/build.log" 2>&1 || { tail -30 "$BUILD/build.log"; fail "image build failed; see $BUILD/build.log"; }
T1=$(date +%s)
SIZE="$("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}')"
BASE_SIZE="$("${PODMAN[@]}" image inspect "$BASE_IMAGE" --format '{{.Size}}')"
echo "build time: $((T1 - T0)) s; image size: $((SIZE / 1000000)) MB (base $((BASE_SIZE / 1000000)) MB)"
[ -n "${KEEP_BUILD:-}" ] || rm -rf "$CTX"

# ---------------------------------------------------------------- run, as users do
RUN=("${PODMAN[@]}" run --rm "${ULIMITS[@]}" --network=none --read-only --tmpfs /tmp:rw,exec,size=2g)
TEST="$BUILD/test"
rm -rf "$TEST"; mkdir -p "$TEST/demo"
chmod 0777 "$TEST/demo"  # the demo runs as the image's own user (uid 10001)

check_output() {  # $1: output folder, $2: log file
  grep -q "validator: 0 errors" "$2" || fail "validator did not report 0 errors (see $2)"
  "$PY" - "$1" <<'PY' || fail "leak or metadata check failed in $1"
import gzip, json, sys
from pathlib import Path
root = Path(sys.argv[1])
hits = []
for p in sorted(root.rglob("*")):
    rel = p.relative_to(root).as_posix()
    if "canary" in rel.lower():
        hits.append("name:" + rel)
    if not p.is_file():
        continue
    blobs = [p.read_bytes()]
    if p.name.endswith(".gz"):
        blobs.append(gzip.decompress(blobs[0]))
    for b in blobs:
        low = b.lower()
        if any(f in low for f in (b"canary", "canary".encode("utf-16-le"), "canary".encode("utf-16-be"))):
            hits.append(rel)
if hits:
    sys.exit(f"canary found: {hits[:10]}")
gen = json.loads((root / "dataset_description.json").read_text())["GeneratedBy"][0]
if not gen.get("Container", {}).get("Tag"):
    sys.exit("GeneratedBy.Container missing")
print(f"  ok: no canary in {sum(1 for p in root.rglob('*') if p.is_file())} files; Container = {gen['Container']}")
PY
}

echo "== bids-deid-demo inside the container (--network=none --read-only)"
"${RUN[@]}" -v "$TEST/demo:/demo" --entrypoint bids-deid-demo "$IMAGE" /demo/run > "$TEST/demo.log" 2>&1 \
  || { tail -20 "$TEST/demo.log"; fail "bids-deid-demo failed in the container"; }
grep -E "validator:|^sub-" "$TEST/demo.log" | sed 's/^/  /'
check_output "$TEST/demo/run/output" "$TEST/demo.log"

echo "== the documented commands (docs/container.md, between the container-test markers), verbatim"
# They run as a user would: a non-root uid owns the study and key folders; `docker` is podman with
# this machine's runtime options; mkdir/chmod run as that user. A realistic head (the demo's), so
# defacing passes and no image is withheld.
DOC_UID=4242
DOCS="$TEST/docs"
mkdir -p "$DOCS/home" "$DOCS/study"
"$PY" -c "from bids_deid.demo import build_demo_dataset; from bids_deid.deface import demo_head; \
build_demo_dataset('$DOCS/study/bids', head=demo_head())"
chown -R "$DOC_UID:$DOC_UID" "$DOCS/home" "$DOCS/study"
chmod 0755 "$TEST" "$DOCS"
"${PODMAN[@]}" tag "$IMAGE" "bids-deid:$VERSION"
sed -n '/container-test:begin/,/container-test:end/p' docs/container.md | sed '/^```/d;/container-test:/d' \
  | sed "s/bids-deid:0\.1\.0/bids-deid:$VERSION/g" > "$DOCS/commands.sh"
[ "$(grep -c '^docker run' "$DOCS/commands.sh")" = 3 ] || fail "docs/container.md: expected 3 docker run commands in the tested block"
{
  echo 'set -euo pipefail'
  echo "docker() { [ \"\$1\" = run ] || return 99; shift; ${PODMAN[*]} run ${ULIMITS[*]} \"\$@\"; }"
  echo "id() { case \"\$1\" in -u|-g) echo $DOC_UID ;; *) command id \"\$@\" ;; esac; }"
  echo "mkdir() { setpriv --reuid=$DOC_UID --regid=$DOC_UID --clear-groups mkdir \"\$@\"; }"
  echo "chmod() { setpriv --reuid=$DOC_UID --regid=$DOC_UID --clear-groups chmod \"\$@\"; }"
  echo "export HOME='$DOCS/home' STUDY='$DOCS/study'"
  echo "cd \"\$HOME\""
} > "$DOCS/as-user.sh"
cat "$DOCS/as-user.sh" "$DOCS/commands.sh" > "$DOCS/run.sh"
bash "$DOCS/run.sh" > "$DOCS/run.log" 2>&1 || { tail -20 "$DOCS/run.log"; fail "the documented commands failed"; }
KEY="$DOCS/home/keys/study.key"
[ "$(stat -c '%u %a' "$KEY")" = "$DOC_UID 600" ] || fail "the key is not mode 0600 and owned by the user: $(stat -c '%u %a' "$KEY")"
grep -E "validator:" "$DOCS/run.log" | sed 's/^/  /'
grep -q "leak audit: 0 hits" "$DOCS/run.log" || fail "leak audit did not report 0 hits (see $DOCS/run.log)"
check_output "$DOCS/study/deid" "$DOCS/run.log"
[ -f "$DOCS/study/private/report.html" ] || fail "no report in the private dir"

echo "== the same participant command without -u: refused in one line that says what to do"
awk 'BEGIN{RS=""} /participant --key-file/' "$DOCS/commands.sh" | grep -v '^#' \
  | sed 's/ -u "$(id -u):$(id -g)"//' > "$DOCS/no-u.sh"
grep -q '^docker run' "$DOCS/no-u.sh" || fail "could not find the participant command in the docs"
if bash -c "$(cat "$DOCS/as-user.sh" "$DOCS/no-u.sh")" > "$DOCS/no-u.log" 2>&1; then
  fail "the participant command ran without -u although the key is 0600 and owned by another uid"
fi
grep -qF 'Permission denied (the container runs as uid 10001' "$DOCS/no-u.log" \
  || { cat "$DOCS/no-u.log"; fail "no hint to add -u"; }
grep 'bids-deid: error' "$DOCS/no-u.log" | sed 's/^/  /'

echo "== labels"
"${PODMAN[@]}" image inspect "$IMAGE" --format '{{range $k, $v := .Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' \
  | grep org.opencontainers | sed 's/^/  /'
echo "PASS: image $IMAGE, $((SIZE / 1000000)) MB, built in $((T1 - T0)) s"
[ -n "${KEEP_BUILD:-}" ] || rm -rf "$TEST"
