# Shared by the container benchmarks (bench-run, bench-memory, bench-logs):
# a release flotilla-agent copied out of the target dir, a local registry
# holding the demo busybox image, an agent root with the image pulled, and
# the clean-up of what the agent's pods leave (processes, mounts, cgroups).
# Sourced after setup.sh, not run. The caller sets `work` (a temp dir) and
# calls bench_cleanup from its EXIT trap.

bench_registry_pid=
bench_cgroup_parent=

# bench_build_agent: builds the release agent and copies it to $work/bin
# (checked: a target dir shared with other builds may have its binary
# replaced between our build and the copy). Sets `agent`.
bench_build_agent() {
    local target="${CARGO_TARGET_DIR:-$PWD/target}/release" attempt probe
    agent="$work/bin/flotilla-agent"
    mkdir -p "$work/bin"
    for attempt in 1 2 3; do
        build_agent --release -q
        cp "$target/flotilla-agent" "$agent"
        probe=$("$agent" __init 1 2 2>&1 || true)
        case "$probe" in *"container init stage"*) return 0 ;; esac
    done
    die "$target/flotilla-agent keeps being replaced by another build; set CARGO_TARGET_DIR"
}

# bench_registry: starts docker-registry on 127.0.0.1 (a free port, storage in
# $work), pushes the demo busybox image to it with skopeo. Sets `image`
# (127.0.0.1:PORT/demo/busybox:latest) and `busybox_diff_id`.
bench_registry() {
    local port arch
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$work/registry"
    cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
  secret: flotilla-bench
YAML
    /usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
    bench_registry_pid=$!
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
        kill -0 "$bench_registry_pid" 2>/dev/null || die "docker-registry exited: $(cat "$work/registry.log")"
        sleep 0.1
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" || die "docker-registry does not answer on 127.0.0.1:$port"
    case "$(uname -m)" in
        x86_64) arch=amd64 ;;
        aarch64) arch=arm64 ;;
        *) arch=$(uname -m) ;;
    esac
    busybox_diff_id=$(python3 scripts/bench/make-busybox-layout.py "$work/layout" --arch "$arch")
    image="127.0.0.1:$port/demo/busybox:latest"
    skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:latest" "docker://$image" >&2
}

# bench_pull ROOT: pulls the image into an agent root. Sets `rootfs`, the
# unpacked layer in that root's store (the bundles of crun and runc use it).
bench_pull() {
    "$agent" --root "$1" pull --insecure "$image" >/dev/null
    rootfs="$1/images/layers/sha256/${busybox_diff_id#sha256:}"
    [ -x "$rootfs/bin/busybox" ] || die "the pulled layer is not at $rootfs"
}

# bench_cgroup_parent NAME: a cgroup parent of this run's own, removed by
# bench_cleanup. Sets `bench_cgroup_parent`.
bench_use_cgroup_parent() {
    bench_cgroup_parent="flotilla-bench-$1-$$"
}

# Kills every process in this run's cgroups (shims are in none: they are
# found by their command line naming $work), unmounts whatever is mounted
# under $work or the run dir given, removes the cgroups, stops the registry.
bench_cleanup() {
    local pid dir
    # Shims and agents started from our copy of the binary.
    for pid in $(pgrep -f "^$work/bin/flotilla-agent" || true); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "$bench_cgroup_parent" ]; then
        # A frozen group's processes cannot die: thaw first.
        find /sys/fs/cgroup/freezer/"$bench_cgroup_parent" -name freezer.state 2>/dev/null \
            | while read -r state; do echo THAWED >"$state" 2>/dev/null || true; done
        for dir in /sys/fs/cgroup/*/"$bench_cgroup_parent"; do
            [ -d "$dir" ] || continue
            find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
                kill -KILL "$pid" 2>/dev/null || true
            done
        done
        for _ in $(seq 50); do
            for dir in /sys/fs/cgroup/*/"$bench_cgroup_parent"; do
                [ -d "$dir" ] || continue
                find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
            done
            ls -d /sys/fs/cgroup/*/"$bench_cgroup_parent" >/dev/null 2>&1 || break
            sleep 0.1
        done
    fi
    # Mounts under our dirs (the benchmarks run in private mount namespaces,
    # so normally none reaches here), deepest first.
    awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r dir; do
        umount -l "$dir" 2>/dev/null || true
    done
    if [ -n "$bench_registry_pid" ]; then
        kill "$bench_registry_pid" 2>/dev/null || true
        wait "$bench_registry_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}

# bench_leftovers: prints what this run left (there should be nothing).
bench_leftovers() {
    local left=0
    if [ -n "$bench_cgroup_parent" ] && ls -d /sys/fs/cgroup/*/"$bench_cgroup_parent" >/dev/null 2>&1; then
        say "left: cgroups $(ls -d /sys/fs/cgroup/*/"$bench_cgroup_parent")"
        left=1
    fi
    if pgrep -f "^$work/bin/flotilla-agent" >/dev/null; then
        say "left: processes $(pgrep -af "^$work/bin/flotilla-agent")"
        left=1
    fi
    if grep -q " $work" /proc/self/mounts; then
        say "left: mounts under $work"
        left=1
    fi
    return $left
}
