#!/usr/bin/env bash
# Fetches the jars of Apache Kafka 3.9.1 (and the reload4j logging jars the 3.9 tarball ships) from
# Maven Central into a cache outside the repository, and prints the cache's libs directory.
#
#   deploy/kafka/fetch.sh            # prints e.g. /root/.cache/tally/kafka-3.9.1/libs
#
# Cached: when the libs directory is complete, nothing is downloaded. Needs java and mvn (the
# caller installs them; tests/run.sh and the quickstart do).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version=3.9.1
cache="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}/kafka-$version"
libs="$cache/libs"
stamp="$cache/.complete"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$(sha256sum "$here/pom.xml" | cut -d' ' -f1)" ]]; then
  echo "$libs"
  exit 0
fi

command -v mvn >/dev/null || { echo "fetch.sh: mvn not found (apt-get install maven)" >&2; exit 1; }
rm -rf "$cache.tmp"
mkdir -p "$cache.tmp"
echo "fetch.sh: resolving Kafka $version jars from Maven Central into $libs" >&2
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$cache.tmp/libs" >&2
[[ -f "$cache.tmp/libs/kafka_2.13-$version.jar" ]] || {
  echo "fetch.sh: kafka_2.13-$version.jar missing after resolution" >&2; exit 1; }
rm -rf "$cache"
mv "$cache.tmp" "$cache"
sha256sum "$here/pom.xml" | cut -d' ' -f1 > "$stamp"
echo "$libs"
