#!/usr/bin/env bash
# "beast": a second host on this machine, as separate from it as a test can make it, for the
# multi-host tests that must be able to fail on what a real remote host would catch.
#   - Its own network namespace (vlmctl-beast) with only a loopback: a server it binds to
#     127.0.0.1 is not reachable from here except through an SSH forward, and it reaches nothing
#     outside itself (no registry, no internet).
#   - Its own mount namespace: /run (hence /var/run and the Docker socket there) and /tmp are its
#     own, and $VLMCTL_CACHE/models is an empty folder of its own: the weights this machine has
#     are not on beast until vlmctl pushes them.
#   - Its own dockerd (own data root under $VLMCTL_CACHE/beast, own containerd, no bridge, no
#     iptables: the test deployments use the host network, which is beast's namespace), holding
#     only the test image, loaded from this machine's daemon (`docker save | docker load`). With
#     the no-op NVIDIA hook on its PATH (scripts/lib/fake-nvidia: GPU specs launch there; a test
#     that puts a stand-in nvidia-smi in beast's /run/vlmctl-fake-nvidia/ gives beast a "driver").
#     A beast whose dockerd runs without it gets its dockerd restarted (its address stays).
#   - Its own sshd on its own 127.0.0.1:22, with the keys of scripts/lib/start-sshd.sh, reached
#     from here as ssh://root@127.0.0.1:PORT: a socat on this machine's 127.0.0.1:PORT hands each
#     connection to a socat inside the namespace (the way in that a router would be). Only ssh
#     crosses; everything else vlmctl needs there goes through its SSH forwards.
# The test code looks at beast's files through /proc/PID/root (PID: its sshd), and at its
# daemon through a second socket of that dockerd, $VLMCTL_CACHE/beast/docker.sock; vlmctl knows
# neither. Reused while it runs; prints the exports. Needs root, iproute2, util-linux, socat.
set -euo pipefail
for tool in ip nsenter unshare socat; do
  command -v "$tool" >/dev/null || { echo "[beast] needs $tool (iproute2, util-linux, socat)" >&2; exit 1; }
done
dir="$VLMCTL_CACHE/beast"
ns=vlmctl-beast
image=${VLMCTL_TEST_LLAMA_IMAGE:?}
sshd_dir="$VLMCTL_CACHE/sshd"
hook_dir="$dir/fake-nvidia"
mkdir -p "$dir/docker" "$dir/models" "$dir/tmp" "$VLMCTL_CACHE/models" "$hook_dir"
# The hook as this checkout has it (dockerd looks it up on its PATH for each GPU container).
cp -f "$(dirname "$0")/fake-nvidia/nvidia-container-runtime-hook" "$hook_dir/"
log() { printf '[beast] %s\n' "$*" >&2; }
beast_docker() { docker -H "unix://$dir/docker.sock" "$@"; }
# beast's dockerd, started in beast's namespaces by the caller; records its pid. Without the
# caller's other file descriptors: a daemon that kept a lock file open (`flock FILE
# scripts/lib/start-beast.sh`) would hold the lock for as long as it runs.
dockerd_cmd='PATH="$hook_dir:$PATH" dockerd --data-root "$dir/docker" --exec-root /run/docker --pidfile /run/docker.pid \
      -H unix:///var/run/docker.sock -H "unix://$dir/docker.sock" \
      --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
      >"$dir/dockerd.log" 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    echo $! >"$dir/dockerd.pid"'
# Whether beast's dockerd runs with the hook on its PATH (it registers the "nvidia" driver only
# when it finds the hook as it starts).
has_hook() {
  local env
  env=$(tr '\0' '\n' <"/proc/$(cat "$dir/dockerd.pid")/environ" 2>/dev/null) || return 1
  grep -qx "PATH=$hook_dir:.*" <<<"$env"
}

alive() {
  [ -f "$dir/sshd.pid" ] && [ -f "$dir/dockerd.pid" ] && [ -f "$dir/door.pid" ] && [ -f "$dir/port" ] &&
    kill -0 "$(cat "$dir/door.pid")" 2>/dev/null &&
    socat -T2 - "TCP:127.0.0.1:$(cat "$dir/port")" </dev/null 2>/dev/null | head -c4 | grep -q SSH- &&
    kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null &&
    kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null &&
    beast_docker info >/dev/null 2>&1 &&
    nsenter --net="/run/netns/$ns" socat -T2 - TCP:127.0.0.1:22 </dev/null 2>/dev/null | head -c4 | grep -q SSH-
}

if ! alive; then
  log "starting (network namespace $ns, dockerd data root $dir/docker)"
  # Whatever an earlier beast left: its processes die with their namespace's last user.
  # Only processes that are beast's (a pid file can outlive a reboot, and its pid be another
  # process's now): the door is the socat naming our namespace, the rest run in it.
  ours() {
    case $1 in
      door) tr '\0' ' ' 2>/dev/null <"/proc/$2/cmdline" | grep -q "netns/$ns" ;;
      *) ip netns identify "$2" 2>/dev/null | grep -qx "$ns" ;;
    esac
  }
  for f in door sshd dockerd; do
    [ -f "$dir/$f.pid" ] || continue
    pid=$(cat "$dir/$f.pid")
    ours "$f" "$pid" || continue
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  # Whatever else still runs in the namespace (container processes, shims).
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -f "$dir/docker.sock" "$dir"/*.pid
  rm -rf "${dir:?}/tmp" && mkdir -p "$dir/tmp"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  cat >"$dir/sshd.conf" <<CONF
Port 22
ListenAddress 127.0.0.1
HostKey $sshd_dir/host_key
AuthorizedKeysFile $sshd_dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd.pid
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
CONF
  # The namespaces live while dockerd and sshd do. setsid: not in this script's session.
  VLMCTL_CACHE=$VLMCTL_CACHE dir=$dir hook_dir=$hook_dir setsid nsenter --net="/run/netns/$ns" unshare --mount --propagation private sh -c '
    set -e
    mount -t tmpfs -o mode=755 beast-run /run
    # /var/run is /run on Debian; where it is a folder of its own, it is masked as well.
    [ -L /var/run ] || mount -t tmpfs -o mode=755 beast-varrun /var/run
    mkdir -p /run/sshd
    mount --bind "$dir/tmp" /tmp
    chmod 1777 /tmp
    mount --bind "$dir/models" "$VLMCTL_CACHE/models"
    '"$dockerd_cmd"'
    /usr/sbin/sshd -f "$dir/sshd.conf" -E "$dir/sshd.log" </dev/null >/dev/null 2>&1
    for _ in $(seq 100); do [ -s /run/sshd.pid ] && break; sleep 0.1; done
    cp /run/sshd.pid "$dir/sshd.pid"
  ' </dev/null >"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; log "could not start in its namespaces"; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "$port" >"$dir/port"
  setsid socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" \
    "EXEC:nsenter --net=/run/netns/$ns socat STDIO TCP\:127.0.0.1\:22" </dev/null >"$dir/door.log" 2>&1 &
  echo $! >"$dir/door.pid"
  for _ in $(seq 1 60); do alive && break; sleep 0.5; done
  alive || { tail -n 5 "$dir/start.log" "$dir/dockerd.log" "$dir/sshd.log" >&2; log "did not start"; exit 1; }
fi

if ! has_hook; then
  # An older beast's dockerd, started without the hook: restarted in beast's namespaces (those of
  # its sshd), so that its address and root stay what the exports say.
  log "restarting beast's dockerd with the no-op NVIDIA hook on its PATH"
  pid=$(cat "$dir/dockerd.pid")
  ip netns identify "$pid" 2>/dev/null | grep -qx "$ns" || { log "$dir/dockerd.pid names no process of beast"; exit 1; }
  kill "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  dir=$dir hook_dir=$hook_dir setsid nsenter --net="/run/netns/$ns" --mount="/proc/$(cat "$dir/sshd.pid")/ns/mnt" \
    sh -c "$dockerd_cmd" </dev/null >>"$dir/start.log" 2>&1
  for _ in $(seq 1 120); do beast_docker info >/dev/null 2>&1 && break; sleep 0.5; done
  { beast_docker info >/dev/null 2>&1 && has_hook; } || { tail -n 5 "$dir/dockerd.log" >&2; log "its dockerd did not start again"; exit 1; }
fi

# The test image, as this machine's daemon has it (rebuilt images are loaded again).
want=$(docker image inspect --format '{{.Id}}' "$image")
have=$(beast_docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  log "loading $image into beast's daemon"
  docker save "$image" | beast_docker load -q >/dev/null
  # The image it replaced, untagged now, is not kept.
  beast_docker image prune -f >/dev/null
fi

printf 'export VLMCTL_TEST_BEAST=%q\n' "ssh://root@127.0.0.1:$(cat "$dir/port")"
printf 'export VLMCTL_TEST_BEAST_ROOT=%q\n' "/proc/$(cat "$dir/sshd.pid")/root"
printf 'export VLMCTL_TEST_BEAST_DOCKER=%q\n' "unix://$dir/docker.sock"
