#!/usr/bin/env bash
# The floor for `flotilla demo up`: the same shape of cluster (a bridge, N
# nodes each in its own network/UTS/mount/PID namespaces running sshd, and a
# distribution registry) built by a plain shell script with iproute2 and
# util-linux, without images. Used only by scripts/bench-demo as the peer.
#   shell-demo.sh up N DIR | down N DIR
set -euo pipefail
cmd=$1; n=$2; dir=$3
br=flpeer; net=10.78.0
case "$cmd" in
up)
    mkdir -p "$dir"
    [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
    [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    ip link add $br type bridge; ip addr add $net.1/24 dev $br; ip link set $br up
    mkdir -p /run/sshd "$dir/registry"
    printf 'version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s.1:5000}\n' \
        "$dir/registry" $net > "$dir/registry.yml"
    setsid docker-registry serve "$dir/registry.yml" >/dev/null 2>&1 < /dev/null &
    echo $! > "$dir/registry.pid"
    for i in $(seq 1 "$n"); do
        ip netns add flpeer$i
        ip link add flpeer-$i type veth peer name eth0 netns flpeer$i
        ip link set flpeer-$i master $br up
        ip -n flpeer$i link set lo up
        ip -n flpeer$i addr add $net.$((10 + i))/24 dev eth0
        ip -n flpeer$i link set eth0 up
        printf 'ListenAddress %s\nHostKey %s\nAuthorizedKeysFile %s\nUsePAM no\nPidFile none\nPasswordAuthentication no\n' \
            $net.$((10 + i)) "$dir/host_key" "$dir/authorized_keys" > "$dir/sshd$i.conf"
        setsid ip netns exec flpeer$i unshare --uts --mount --pid --fork --mount-proc \
            sh -c "hostname node$i; exec /usr/sbin/sshd -D -f $dir/sshd$i.conf" >/dev/null 2>&1 < /dev/null &
    done
    for i in $(seq 1 "$n"); do
        until (exec 3<>/dev/tcp/$net.$((10 + i))/22) 2>/dev/null; do sleep 0.01; done
    done
    until (exec 3<>/dev/tcp/$net.1/5000) 2>/dev/null; do sleep 0.01; done
    ;;
down)
    for i in $(seq 1 "$n"); do
        { ip netns pids flpeer$i 2>/dev/null || true; } | xargs -r kill -9
        ip netns del flpeer$i 2>/dev/null || true
    done
    [ -f "$dir/registry.pid" ] && kill -9 "$(cat "$dir/registry.pid")" 2>/dev/null || true
    ip link del $br 2>/dev/null || true
    rm -rf "$dir/registry" "$dir/registry.pid"
    ;;
esac
