#!/usr/bin/env bash
# Runs a single-node Apache Kafka 3.9 broker (KRaft, combined broker+controller) on 127.0.0.1.
#
#   deploy/kafka/kafka.sh start --dir DIR [--port PORT] [--controller-port PORT]
#       Formats DIR on first use (kafka.tools.StorageTool), starts the broker in the background,
#       waits until it accepts requests, and prints its bootstrap address (127.0.0.1:PORT).
#       PORT 0 or absent picks a free port. Starting an already formatted DIR keeps its data
#       (and its ports), which is how a broker restart is done.
#   deploy/kafka/kafka.sh stop --dir DIR
#       Stops the broker of DIR: SIGTERM, then SIGKILL if it has not exited within 30 s.
#   deploy/kafka/kafka.sh status --dir DIR
#       Exit 0 if the broker of DIR runs.
#
# The broker's log is DIR/broker.log. Settings are those of a test broker: replication factor 1,
# fast group joins, and a log cleaner that compacts promptly.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
cmd="${1:-}"; [[ -n "$cmd" ]] || usage; shift
dir="" port=0 cport=0
while (($#)); do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --controller-port) cport="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "kafka.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ -n "$dir" ]] || { echo "kafka.sh: --dir is required" >&2; exit 2; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
pidfile="$dir/kafka.pid"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  if running; then
    echo "kafka.sh: a broker already runs for $dir (pid $(cat "$pidfile"))" >&2
    exit 1
  fi
  local libs
  libs="$("$here/fetch.sh")"
  if [[ -f "$dir/server.properties" ]]; then
    port="$(sed -n 's/^advertised.listeners=PLAINTEXT:\/\/127.0.0.1://p' "$dir/server.properties")"
  else
    [[ "$port" != 0 ]] || port="$(free_port)"
    [[ "$cport" != 0 ]] || cport="$(free_port)"
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=33554432
PROPS
    cat > "$dir/log4j.properties" <<PROPS
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$dir/broker.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
PROPS
    local id
    # A base64url UUID, never starting with '-' (StorageTool would read it as an option; Kafka's
    # own Uuid.randomUuid() redraws such ids the same way).
    id=-
    while [[ "$id" == -* ]]; do
      id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    done
    java -cp "$libs/*" -Dlog4j.configuration="file:$dir/log4j.properties" \
      kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" > "$dir/format.log" 2>&1 || {
      cat "$dir/format.log" >&2; echo "kafka.sh: formatting $dir failed" >&2; exit 1; }
  fi
  : > "$dir/broker.log"
  # setsid: the broker must not get the terminal's Ctrl-C before our trap stops it cleanly.
  setsid java -Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$libs/*" \
    kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  local deadline=$((SECONDS + 120))
  until grep -q 'Kafka Server started' "$dir/broker.log" 2>/dev/null &&
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! running; then
      tail -n 40 "$dir/stdout.log" "$dir/broker.log" >&2
      echo "kafka.sh: broker exited during start-up (logs in $dir)" >&2
      exit 1
    fi
    if ((SECONDS > deadline)); then
      echo "kafka.sh: broker not ready within 120 s (logs in $dir)" >&2
      stop; exit 1
    fi
    sleep 0.2
  done
  echo "127.0.0.1:$port"
}

stop() {
  running || { rm -f "$pidfile"; return 0; }
  local pid; pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka.sh: broker $pid ignored SIGTERM for 30 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) running ;;
  *) usage ;;
esac
