#!/bin/sh
# Builds and runs the peers benchmark in release mode: benches/peers/run.sh [peers options]
# d-engine-proto's build script needs protoc; unless PROTOC is set, use the binary shipped by the
# protoc-bin-vendored crate (the same one `cargo xtask protoc` prints).
set -eu
cd "$(dirname "$0")/../.."
if [ -z "${PROTOC:-}" ]; then
    cargo fetch --quiet
    PROTOC=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*protoc-bin-vendored-linux-x86_64-*/bin/protoc' | sort | tail -n 1)
    [ -n "$PROTOC" ] || { echo "vendored protoc not found; set PROTOC" >&2; exit 1; }
    export PROTOC
fi
exec cargo run --release -p tierlog-peers -- "$@"
