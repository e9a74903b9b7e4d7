// Point-read benchmark: GetState on a cluster of one node (n1, node and router) and one router
// (r1, router only, forwarding to n1's ShardService over the network), OBJECTS objects in one
// partition. Prints, as markdown tables:
// - the maximum rate (closed loop) and latency at a fixed open-loop rate of GetState through r1,
//   GetState at n1 (router in-process), and ShardService.Get directly at the owner, with the
//   project's C++ load generator (callback API) and with ghz, a second, independent client;
// - the router's hop at p50 (through r1 against directly at the owner) at that rate and at a
//   light 1,000 calls/s, where it is the router's own work rather than queueing for a core;
// - ceilings measured in the same run: an empty unary call (grpc.health.v1.Health/Check) on the
//   same kind of process, and raw LMDB point reads as the owner does them (a read txn a read).
// The clients run on the same 2 cores as the servers and the broker: a client's CPU bounds its
// rates too, which is why each rate is given as a ratio to the empty call by the same client.
//
//   read_bench BOOTSTRAP [GHZ] [OBJECTS=100000] [RATE=20000] [SECONDS=8]
// GHZ: path of the ghz binary, "" to skip; run from the repository root (it reads proto/).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/router/shard_client.h"
#include "tally/internal/v1/shard.grpc.pb.h"
#include "tests/bench/bench_util.h"
#include "tests/integration/metrics_http.h"
#include "tests/testing/temp_dir.h"

namespace tally::bench {
namespace {

constexpr int kConcurrency = 64;
constexpr int kConnections = 4;

struct Row {
  std::string name;
  double max_per_second = 0;
  double rate = 0;                // of the latency run
  double p50_us = 0, p99_us = 0;  // at `rate`
  int64_t errors = 0;
};

struct Target {
  std::string name;
  StartCall call;
};

// The maximum rate of each target (closed loop), then each one's latency at `rate`, or at half
// the lowest maximum when that is lower, the same rate for all so that they compare: an open
// loop above what a server sustains only measures its queue (and, on a synchronous gRPC server,
// piles up a thread per waiting call that slows every later row).
std::vector<Row> Measure(const std::vector<Target>& targets, double rate,
                         absl::Duration duration) {
  std::vector<Row> rows;
  double lowest = rate * 2;
  for (const Target& target : targets) {
    LoadClosed(target.call, kConcurrency, absl::Seconds(1));  // warm-up: connections, caches
    LoadResult max = LoadClosed(target.call, kConcurrency, duration);
    rows.push_back(Row{target.name, max.per_second});
    rows.back().errors = max.errors;
    lowest = std::min(lowest, max.per_second);
    std::cerr << target.name << ": " << max.per_second << "/s\n";
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    rows[i].rate = std::floor(std::min(rate, lowest / 2));
    LoadResult fixed = LoadOpen(targets[i].call, rows[i].rate, duration);
    rows[i].p50_us = Percentile(fixed.latency_ns, 0.5, 1e3);
    rows[i].p99_us = Percentile(fixed.latency_ns, 0.99, 1e3);
    rows[i].errors += fixed.errors;
  }
  return rows;
}

// Runs ghz; the "Requests/sec" and the 50 % and 99 % latencies of its summary.
std::optional<Row> Ghz(const std::string& ghz, const std::string& name, const std::string& args,
                       const std::string& address) {
  std::string command = absl::StrCat(ghz, " --insecure --import-paths=proto,/usr/include ", args,
                                     " ", address, " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  if (pclose(pipe) != 0) {
    std::cerr << "ghz failed: " << command << "\n" << out << "\n";
    return std::nullopt;
  }
  Row row{name};
  auto micros = [](absl::string_view value, absl::string_view unit) {
    double v = 0;
    if (!absl::SimpleAtod(value, &v)) return 0.0;
    if (unit == "ns") return v / 1000;
    if (unit == "ms") return v * 1000;
    if (unit == "s") return v * 1e6;
    return v;  // µs
  };
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    std::vector<absl::string_view> words = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (words.size() == 2 && words[0] == "Requests/sec:") {
      (void)absl::SimpleAtod(words[1], &row.max_per_second);
    } else if (words.size() == 5 && words[1] == "%" && words[2] == "in") {
      if (words[0] == "50") row.p50_us = micros(words[3], words[4]);
      if (words[0] == "99") row.p99_us = micros(words[3], words[4]);
    } else if (words.size() >= 2 && absl::StartsWith(words[0], "[") && words[0] != "[OK]") {
      // The status code distribution: every code but OK is an error.
      int64_t n = 0;
      if (absl::SimpleAtoi(words[1], &n)) row.errors += n;
    }
  }
  return row;
}

// Raw LMDB point reads as the owner does them (a Reader, i.e. a read txn, per read) on a shard of
// `objects` objects: reads per second on one thread and on two.
absl::StatusOr<std::pair<double, double>> LmdbReads(int64_t objects, absl::Duration duration) {
  test::TempDir dir;
  auto shard = LocalShard(dir.path() + "/shard", objects);
  if (!shard.ok()) return shard.status();
  auto rate = [&](int threads) -> double {
    std::atomic<int64_t> reads{0};
    std::vector<std::thread> workers;
    const absl::Time end = absl::Now() + duration;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        int64_t n = 0;
        for (int64_t i = t * 7919; absl::Now() < end; i += 104729) {
          for (int k = 0; k < 100; ++k, ++n) {
            auto reader = (*shard)->NewReader();
            if (!reader.ok() || !(*reader)->GetObject(ObjectKey((i + k) % objects)).ok()) return;
          }
        }
        reads += n;
      });
    }
    for (std::thread& w : workers) w.join();
    return reads.load() / absl::ToDoubleSeconds(duration);
  };
  return std::pair{rate(1), rate(2)};
}

int Main(int argc, char** argv) {
  // Debian's Abseil keeps debug deadlock detection on (every Mutex lock, gRPC's too, updates a
  // global graph): the load generator's CPU comes out of the servers' cores, so turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (argc < 2) {
    std::cerr << "usage: read_bench BOOTSTRAP [GHZ] [OBJECTS=100000] [RATE=20000] [SECONDS=8]\n";
    return 2;
  }
  const std::string bootstrap = argv[1];
  const std::string ghz = argc > 2 ? argv[2] : "";
  const int64_t objects = argc > 3 ? std::stoll(argv[3]) : 100'000;
  const double rate = argc > 4 ? std::stod(argv[4]) : 20'000;
  const absl::Duration duration = absl::Seconds(argc > 5 ? std::stoi(argv[5]) : 8);

  test::TestCluster cluster(bootstrap, 1, "", "", "metrics_address: \"127.0.0.1:0\"");
  if (absl::Status s = cluster.StartNode("n1"); !s.ok()) return std::cerr << s << "\n", 1;
  if (absl::Status s = cluster.StartRouter("r1"); !s.ok()) return std::cerr << s << "\n", 1;
  if (!cluster.WaitAllActive("r1", {"n1"})) {
    std::cerr << "partitions not active\n" << cluster.Logs();
    return 1;
  }
  if (absl::Status s = LoadObjects(bootstrap, cluster, objects); !s.ok()) {
    std::cerr << s << "\n" << cluster.Logs();
    return 1;
  }
  const std::string router = cluster.process("r1").address();
  const std::string owner = cluster.process("n1").address();

  auto get_state = [&](const std::string& address) {
    auto stubs = std::make_shared<std::vector<std::unique_ptr<v1::StateService::Stub>>>();
    for (auto& channel : Channels(address, kConnections)) {
      stubs->push_back(v1::StateService::NewStub(channel));
    }
    return Unary<v1::GetStateRequest, v1::GetStateResponse>(
        [stubs, n = std::make_shared<std::atomic<int>>()](auto* c, auto* q, auto* r, auto cb) {
          (*stubs)[(*n)++ % stubs->size()]->async()->GetState(c, q, r, std::move(cb));
        },
        [objects](int64_t i) {
          v1::GetStateRequest request;
          request.set_scenario(test::TestCluster::kScenario);
          request.set_object_key(ObjectKey(i * 7919 % objects));
          return request;
        });
  };
  auto shard_get = [&](const std::string& address) {
    auto stubs = std::make_shared<std::vector<std::unique_ptr<internal::v1::ShardService::Stub>>>();
    for (auto& channel : Channels(address, kConnections)) {
      stubs->push_back(internal::v1::ShardService::NewStub(channel));
    }
    return Unary<internal::v1::ShardGetRequest, internal::v1::ShardGetResponse>(
        [stubs, n = std::make_shared<std::atomic<int>>()](auto* c, auto* q, auto* r, auto cb) {
          (*stubs)[(*n)++ % stubs->size()]->async()->Get(c, q, r, std::move(cb));
        },
        [objects](int64_t i) {
          internal::v1::ShardGetRequest request;
          request.set_scenario(test::TestCluster::kScenario);
          request.set_partition(0);
          request.set_object_key(ObjectKey(i * 7919 % objects));
          request.set_min_offset(-1);
          return request;
        });
  };
  auto health = [&](const std::string& address) {
    auto stubs = std::make_shared<std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>>>();
    for (auto& channel : Channels(address, kConnections)) {
      stubs->push_back(grpc::health::v1::Health::NewStub(channel));
    }
    return Unary<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse>(
        [stubs, n = std::make_shared<std::atomic<int>>()](auto* c, auto* q, auto* r, auto cb) {
          (*stubs)[(*n)++ % stubs->size()]->async()->Check(c, q, r, std::move(cb));
        },
        [](int64_t) { return grpc::health::v1::HealthCheckRequest(); });
  };

  std::vector<Row> rows = Measure(
      {{"ceiling: empty unary call (Health/Check) at the router", health(router)},
       {"GetState through the router (r1 → n1's ShardService)", get_state(router)},
       {"ShardService.Get directly at the owner", shard_get(owner)},
       {"GetState at the owner's own router (in-process)", get_state(owner)}},
      rate, duration);
  std::vector<Row> ghz_rows;
  if (!ghz.empty()) {
    const std::string secs = absl::StrCat(absl::ToInt64Seconds(duration), "s");
    const std::string get = absl::StrFormat(
        "--proto=proto/tally/v1/state.proto --call=tally.v1.StateService.GetState "
        "-d '{\"scenario\":\"demo\",\"object_key\":\"object-{{mod .RequestNumber %d}}\"}'",
        objects);
    const std::string direct = absl::StrFormat(
        "--proto=proto/tally/internal/v1/shard.proto --call=tally.internal.v1.ShardService.Get "
        "-d '{\"scenario\":\"demo\",\"partition\":0,\"object_key\":\"object-{{mod "
        ".RequestNumber %d}}\",\"min_offset\":-1}'",
        objects);
    const std::string empty =
        "--proto=proto/grpc/health/v1/health.proto --call=grpc.health.v1.Health.Check -d '{}'";
    const std::string load =
        absl::StrCat("-c ", kConcurrency, " --connections=", kConnections, " -z ", secs);
    for (auto [name, call, address] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"ghz: ceiling: empty unary call at the router", empty, router},
             {"ghz: GetState through the router", get, router},
             {"ghz: ShardService.Get directly at the owner", direct, owner}}) {
      auto max = Ghz(ghz, name, absl::StrCat(call, " ", load), address);
      if (!max) continue;
      max->rate = std::min(rate, std::floor(max->max_per_second / 2));
      auto fixed = Ghz(ghz, name, absl::StrCat(call, " ", load, " --rps=", max->rate), address);
      if (!fixed) continue;
      max->p50_us = fixed->p50_us;
      max->p99_us = fixed->p99_us;
      max->errors += fixed->errors;
      ghz_rows.push_back(*max);
    }
  }
  // The hop without queueing: both paths again at a light open-loop load, where the difference
  // is the router's own work per call rather than waiting for a core.
  constexpr double kLightRate = 1000;
  double light_p50_us[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    LoadResult light = LoadOpen(i == 0 ? get_state(router) : shard_get(owner), kLightRate,
                                duration);
    light_p50_us[i] = Percentile(light.latency_ns, 0.5, 1e3);
  }
  // How r1's reads went to n1 over the whole run (only the through-the-router rows reach n1
  // from r1): alone, or queued and batched while r1's calls to n1 were in flight.
  const std::string r1_metrics =
      test::HttpGet(cluster.process("r1").Log(), "GET /metrics HTTP/1.0");
  const double alone =
      test::MetricValue(r1_metrics, "tally_router_shard_calls_total{method=\"Get\"}");
  const double batches =
      test::MetricValue(r1_metrics, "tally_router_shard_calls_total{method=\"GetBatch\"}");
  const double batched = test::MetricValue(r1_metrics, "tally_router_batched_reads_total");
  if (alone < 0 || batches < 0 || batched < 0) {
    std::cerr << "r1's /metrics lacks the point-read counters:\n" << r1_metrics << "\n";
    return 1;
  }
  auto lmdb = LmdbReads(objects, duration);
  if (!lmdb.ok()) return std::cerr << lmdb.status() << "\n", 1;

  std::cout << absl::StrFormat(
      "%s objects in one partition; node n1 (node and router) and router r1 (router only) are "
      "separate tallyd processes. Max: closed loop, %d calls outstanding over %d connections, "
      "%s. Latency: open loop at %s calls/s, or at half the lowest maximum when that is lower "
      "(column \"at\"; ghz: half its own row's). Clients, servers and the broker share the 2 cores. ghz counts the calls "
      "its -z deadline cancels as errors.\n\n",
      Thousands(objects), kConcurrency, kConnections, absl::FormatDuration(duration),
      Thousands(rate));
  std::cout << "| figure | max calls/s | / empty call | at calls/s | p50 µs | p99 µs | errors |\n"
               "|---|---:|---:|---:|---:|---:|---:|\n";
  auto print = [](const std::vector<Row>& table) {
    for (const Row& row : table) {
      std::cout << absl::StrFormat("| %s | %s | %.2f | %s | %.0f | %.0f | %d |\n", row.name,
                                   Thousands(row.max_per_second),
                                   row.max_per_second / table[0].max_per_second,
                                   Thousands(row.rate), row.p50_us, row.p99_us, row.errors);
    }
  };
  print(rows);
  if (!ghz_rows.empty()) print(ghz_rows);
  std::cout << absl::StrFormat(
      "| ceiling: raw LMDB point reads (a read txn a read), 1 thread / 2 threads | %s / %s | | "
      "| | | |\n",
      Thousands(lmdb->first), Thousands(lmdb->second));
  const Row& via_router = rows[1];
  const Row& direct = rows[2];
  const double hop_us = via_router.p50_us - direct.p50_us;
  const double light_hop_us = light_p50_us[0] - light_p50_us[1];
  std::cout << absl::StrFormat(
      "\nRouter hop at p50 (through the router − directly at the owner): %.0f µs at %s calls/s; "
      "%.0f µs at a light %s calls/s (p50 %.0f against %.0f µs). Targets: through the router "
      ">= 50,000/s -> %s; p99 <= 2 ms at %s/s -> %s; router adds <= 100 µs at p50 -> %s at "
      "%s/s, %s at %s/s.\n",
      hop_us, Thousands(via_router.rate), light_hop_us, Thousands(kLightRate), light_p50_us[0],
      light_p50_us[1], via_router.max_per_second >= 50000 ? "met" : "NOT met", Thousands(rate),
      via_router.rate >= rate && via_router.p99_us <= 2000
          ? "met"
          : absl::StrCat("NOT met (measured at ", Thousands(via_router.rate), "/s)"),
      hop_us <= 100 ? "met" : "NOT met", Thousands(via_router.rate),
      light_hop_us <= 100 ? "met" : "NOT met", Thousands(kLightRate));
  std::cout << absl::StrFormat(
      "\nr1's reads of n1 over the run: %s alone (Get), %s in %s GetBatch calls (%.1f a call; "
      "reads queue and share a call while r1's %d calls to n1 are in flight).\n",
      Thousands(alone), Thousands(batched), Thousands(batches),
      batches > 0 ? batched / batches : 0.0, router::GetBatching{}.max_in_flight);
  return 0;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) { return tally::bench::Main(argc, argv); }
