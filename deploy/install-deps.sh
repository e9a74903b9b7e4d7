#!/usr/bin/env bash
# Installs what Tally's build, tests and quickstart need and is missing, on Debian 12:
#   Debian packages (compiler, CMake, Ninja, gRPC, protobuf, librdkafka, LMDB, Abseil, GoogleTest,
#   Google Benchmark, OpenSSL, clang with libFuzzer, Python 3 for the scripts' JSON, Java, Maven,
#   Go), the Kafka 3.9.1 jars (deploy/kafka/fetch.sh), and grpcurl (go install, pinned).
#   Idempotent and quiet when everything is there: a second run downloads nothing. Needs root (or
#   sudo) only when a Debian package is missing.
#
# Source it to get PATH extended with the tools' directory (TALLY_TOOLS_BIN), or run it.
set -euo pipefail
_tally_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TALLY_CACHE_DIR="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}"
TALLY_TOOLS_BIN="$TALLY_CACHE_DIR/bin"
export TALLY_CACHE_DIR TALLY_TOOLS_BIN
GRPCURL_VERSION=v1.9.3

_tally_packages=(
  build-essential cmake ninja-build pkg-config ca-certificates python3 openssl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librdkafka-dev liblmdb-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev libssl-dev
  clang libclang-rt-14-dev
)

_tally_missing=()
for p in "${_tally_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || _tally_missing+=("$p")
done
command -v java >/dev/null || _tally_missing+=(default-jre-headless)
command -v mvn >/dev/null || _tally_missing+=(maven)
command -v go >/dev/null || [[ -x /usr/local/go/bin/go ]] || _tally_missing+=(golang-go)
if ((${#_tally_missing[@]})); then
  echo "install-deps: installing Debian packages: ${_tally_missing[*]}" >&2
  _sudo=""; [[ $(id -u) == 0 ]] || _sudo="sudo"
  $_sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -q --no-install-recommends \
    "${_tally_missing[@]}" >&2
fi

# Kafka broker jars from Maven Central (cached).
"$_tally_root/deploy/kafka/fetch.sh" >/dev/null

# grpcurl, pinned, built through the Go module proxy into the cache (once).
mkdir -p "$TALLY_TOOLS_BIN"
case ":$PATH:" in *":/usr/local/go/bin:"*) ;; *) [[ -d /usr/local/go/bin ]] && PATH="$PATH:/usr/local/go/bin" ;; esac
if [[ ! -x "$TALLY_TOOLS_BIN/grpcurl" || "$(cat "$TALLY_TOOLS_BIN/.grpcurl-version" 2>/dev/null)" != "$GRPCURL_VERSION" ]]; then
  echo "install-deps: go install grpcurl@$GRPCURL_VERSION" >&2
  GOBIN="$TALLY_TOOLS_BIN" GOFLAGS=-mod=mod go install \
    "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION" >&2
  echo "$GRPCURL_VERSION" > "$TALLY_TOOLS_BIN/.grpcurl-version"
fi
case ":$PATH:" in *":$TALLY_TOOLS_BIN:"*) ;; *) PATH="$TALLY_TOOLS_BIN:$PATH" ;; esac
export PATH
