#!/usr/bin/env bash
# Builds the local image vlmctl-test/llama-server:cpu through the Docker daemon from a context with
# no base image: `FROM scratch` + llama-server + the shared libraries it links + the loader. No
# registry can be pulled from here. The image is labelled with the binary's sha256 and rebuilt
# only when the binary or this recipe changes. Usage: llama-image.sh PATH/TO/llama-server BUSYBOX
# Like llama.cpp's published images, it has a HEALTHCHECK that probes port 8080 whatever --port
# says (their `curl -f http://localhost:8080/health`; busybox wget here, as there is no curl):
# vlmctl must aim it at the deployment's port. Like theirs, it has a /bin/sh (busybox's): `docker run
# --health-cmd`, as `vlmctl export --format docker-run` writes it, always runs through the shell.
# Not labelled org.vlmctl.managed: containers inherit image labels, and that label must mean
# "this container was created by vlmctl".
set -euo pipefail
bin=$1
busybox=$2
image=${VLMCTL_TEST_LLAMA_IMAGE:-vlmctl-test/llama-server:cpu}
log() { printf '[image] %s\n' "$*" >&2; }
recipe=4
sum=$(sha256sum "$bin" | cut -d' ' -f1)-r$recipe
have=$(docker image inspect --format '{{ index .Config.Labels "org.vlmctl.llama-server-sha256" }}' "$image" 2>/dev/null || true)
if [ "$have" = "$sum" ]; then
  log "up to date: $image (llama-server sha256 ${sum:0:12})"
  exit 0
fi
if [ -n "${VLMCTL_NO_INSTALL:-}" ]; then
  log "$image is missing or stale and VLMCTL_NO_INSTALL is set: a warm set-up would build it"
  exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/llama-server"
cp "$busybox" "$ctx/busybox"
# Every library the binary needs, at the path the loader looks for it (ldd resolves symlinks for
# us; cp -L copies the real file under the soname's path).
ldd "$bin" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u | while read -r lib; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
COPY llama-server /usr/local/bin/llama-server
COPY busybox /bin/busybox
COPY busybox /bin/sh
HEALTHCHECK CMD [ "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://localhost:8080/health" ]
LABEL org.vlmctl.test-image=llama-server org.vlmctl.llama-server-sha256=$sum
ENTRYPOINT ["/usr/local/bin/llama-server"]
DOCKERFILE
log "building $image from scratch + llama-server + $(find "$ctx/rootfs" -type f | wc -l) shared libraries"
DOCKER_BUILDKIT=0 docker build --quiet --tag "$image" "$ctx" >"$ctx/build.log" 2>&1 || { cat "$ctx/build.log" >&2; exit 1; }
docker run --rm "$image" --version >/dev/null 2>&1 || { log "the built image does not run: docker run --rm $image --version"; docker run --rm "$image" --version >&2 || true; exit 1; }
log "built $image"
