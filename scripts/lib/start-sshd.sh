#!/usr/bin/env bash
# Two real OpenSSH servers on 127.0.0.1 for the multi-host tests (Debian's openssh-server), with
# keys generated here (never the machine's own): one in front of this machine's dockerd (a
# "remote" host), and one in a mount namespace whose /run and /var/run are empty tmpfs (a host
# without Docker). Reused while they run; prints the exports. Nothing is installed in ~/.ssh.
set -euo pipefail
dir="$VLMCTL_CACHE/sshd"
mkdir -p "$dir" /run/sshd
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" -C vlmctl-test-host
[ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key" -C vlmctl-test-client
[ -f "$dir/stranger_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/stranger_key" -C vlmctl-test-stranger
cp "$dir/client_key.pub" "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys" "$dir/client_key" "$dir/stranger_key"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
answers() { python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
            if s.recv(4).startswith(b"SSH-"):
                sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

# start NAME [wrapper...]: sshd NAME on a free port (or the one still running), port on stdout.
start() {
  local name=$1; shift
  local pidf="$dir/$name.pid" portf="$dir/$name.port"
  if [ -f "$pidf" ] && [ -f "$portf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null && answers "$(cat "$portf")"; then
    cat "$portf"; return
  fi
  local port; port=$(free_port)
  cat >"$dir/$name.conf" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $pidf
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
CONF
  "$@" /usr/sbin/sshd -f "$dir/$name.conf" -E "$dir/$name.log" </dev/null >/dev/null 2>&1
  answers "$port" || { tail -5 "$dir/$name.log" >&2; echo "sshd $name did not answer on $port" >&2; exit 1; }
  echo "$port" >"$portf"
  echo "$port"
}

with_docker=$(start docker)
# The same machine seen without its Docker socket: /run and /var/run replaced in a private
# mount namespace (sshd needs /run/sshd there, so it is made again).
without_docker=$(start nodocker unshare -m sh -c 'mount -t tmpfs none /run && mkdir -p /run/sshd && mount -t tmpfs none /var/run 2>/dev/null; mkdir -p /run/sshd; exec "$@"' sh)

cat >"$dir/ssh_config" <<CONF
Host *
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking accept-new
CONF
cat >"$dir/stranger_config" <<CONF
Host *
  IdentityFile $dir/stranger_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking accept-new
CONF
printf 'export VLMCTL_TEST_SSH_PORT=%q\n' "$with_docker"
printf 'export VLMCTL_TEST_SSH_NODOCKER_PORT=%q\n' "$without_docker"
printf 'export VLMCTL_TEST_SSH_CONFIG=%q\n' "$dir/ssh_config"
printf 'export VLMCTL_TEST_SSH_STRANGER_CONFIG=%q\n' "$dir/stranger_config"
