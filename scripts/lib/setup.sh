# Shared set-up for flotilla's scripts on a Debian machine: root check, apt
# packages, and a Rust toolchain new enough for the crate (edition 2024, 1.89+).
# Sourced, not run.

FLOTILLA_MIN_RUST="1.89"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "run this as root (sudo $0): the demo cluster creates network namespaces"
    [ "$(uname -s)" = Linux ] || die "flotilla's demo cluster needs Linux"
}

# install_packages PKG...: installs the Debian packages that are missing.
install_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]}, and this is not a Debian machine: install them by hand"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed: check the machine's network and sources"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# The packages the demo cluster and the tests use at run time, and the C
# toolchain some crates (ring) build with.
FLOTILLA_PACKAGES=(openssh-server openssh-client docker-registry busybox-static iproute2 util-linux sudo
                   containernetworking-plugins iptables
                   ca-certificates gcc libc6-dev curl tmux)

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

ensure_rust() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    if command -v cargo >/dev/null; then
        local have
        have=$(rustc --version | awk '{print $2}')
        version_ge "$have" "$FLOTILLA_MIN_RUST" && return 0
        if command -v rustup >/dev/null; then
            say "Rust $have is older than $FLOTILLA_MIN_RUST: updating with rustup"
            rustup update stable >&2 && return 0
        fi
        die "Rust $have is older than $FLOTILLA_MIN_RUST; install a current toolchain from https://rustup.rs"
    fi
    say "no Rust toolchain: installing one with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy >&2 \
        || die "could not install Rust; install Rust $FLOTILLA_MIN_RUST or newer from https://rustup.rs"
    . "$HOME/.cargo/env"
}

# build_agent [--release] [-q]: links flotilla-agent statically, as hosts run
# it (src/bin/flotilla-agent.rs says why), with glibc's static libraries
# from libc6-dev. A plain `cargo build` links it dynamically; this relinks
# only the agent, the crates it shares with that build are not rebuilt.
# Fails if the result still asks for an ELF interpreter.
build_agent() {
    local args=() profile=debug bin
    for arg in "$@"; do
        args+=("$arg")
        [ "$arg" = --release ] && profile=release
    done
    cargo rustc --locked "${args[@]}" --bin flotilla-agent -- -C target-feature=+crt-static
    bin="${CARGO_TARGET_DIR:-$PWD/target}/$profile/flotilla-agent"
    if readelf -l "$bin" | grep -q "program interpreter"; then
        die "$bin is dynamically linked after a static build: is libc6-dev (libc.a) installed?"
    fi
}

# build_release [-q]: the console and the agent in release mode, the agent
# linked statically.
build_release() {
    cargo build --locked --release "$@" --bin flotilla
    build_agent --release "$@"
}
