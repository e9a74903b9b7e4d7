// Fail-over benchmark: three tallyd processes (node and router each, session timeout 6 s, as
// TestCluster configures them, standby_replicas: 1) and a router-only process r1; OBJECTS
// objects; each run starts once every partition has a caught-up standby. Readers poll one
// object through r1, owned by n2, without (fresh) and with a staleness bound (max_lag), while n2
// is SIGKILLed. Prints, as a markdown table, the time from the kill to the first fresh read
// served again and to the first max_lag read, per run and their median, next to what bounds a
// fresh read without standbys: the group's session timeout (the killed member's partitions move
// only once the broker declares it dead, a session timeout after its last heartbeat, so up to a
// heartbeat interval sooner after the kill). After each run n2 restarts and the cluster settles
// before the next.
//
//   failover_bench BOOTSTRAP [RUNS=3] [OBJECTS=100000]

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/kafka/partitioner.h"
#include "tests/bench/bench_util.h"
#include "tests/testing/wait.h"

namespace tally::bench {
namespace {

constexpr int kPartitions = 6;
constexpr absl::Duration kSessionTimeout = test::TestCluster::kSessionTimeout;

struct Run {
  absl::Duration fresh = absl::InfiniteDuration(), bounded = absl::InfiniteDuration();
  std::string bounded_served_by;
};

// An object whose partition `victim` owns, per DescribeCluster via `via`.
absl::StatusOr<std::string> KeyOwnedBy(test::TestCluster& cluster, const std::string& via,
                                       const std::string& victim, int64_t objects) {
  auto described = cluster.Describe(via);
  if (!described.ok()) return described.status();
  for (int64_t i = 0; i < objects; ++i) {
    const int32_t p = kafka::PartitionFor(ObjectKey(i), kPartitions);
    for (const v1::PartitionInfo& info : described->partitions()) {
      if (info.partition() == p && info.active_node() == victim) return ObjectKey(i);
    }
  }
  return absl::NotFoundError(absl::StrCat(victim, " owns no partition"));
}

Run KillOwner(test::TestCluster& cluster, const std::string& key) {
  Run run;
  std::atomic<int64_t> kill_ns{0};
  std::atomic<bool> stop{false};
  auto reader = [&](int64_t max_lag, absl::Duration* first_ok, std::string* served_by) {
    while (!stop.load()) {
      // Only a read sent after the kill counts: one in flight then may still be answered.
      const int64_t sent_ns = absl::GetCurrentTimeNanos();
      v1::GetStateRequest request;
      request.set_scenario(test::TestCluster::kScenario);
      request.set_object_key(key);
      request.set_max_lag(max_lag);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(250));
      v1::GetStateResponse response;
      grpc::Status status = cluster.state("r1").GetState(&context, request, &response);
      const int64_t killed = kill_ns.load();
      if (status.ok() && killed != 0 && sent_ns >= killed) {
        *first_ok = absl::Nanoseconds(absl::GetCurrentTimeNanos() - killed);
        if (served_by != nullptr) *served_by = response.served_by();
        return;
      }
      if (!status.ok()) absl::SleepFor(absl::Milliseconds(1));  // polling an outage
    }
  };
  std::thread fresh(reader, 0, &run.fresh, nullptr);
  std::thread bounded(reader, int64_t{1} << 40, &run.bounded, &run.bounded_served_by);
  absl::SleepFor(absl::Milliseconds(200));  // readers running before the kill
  kill_ns.store(absl::GetCurrentTimeNanos());
  cluster.process("n2").Signal(SIGKILL);
  // Bounded: a fail-over taking longer than this is reported as not served.
  std::thread timer([&] {
    for (int i = 0; i < 1200 && !stop.load(); ++i) absl::SleepFor(absl::Milliseconds(100));
    stop.store(true);
  });
  fresh.join();
  bounded.join();
  stop.store(true);
  timer.join();
  return run;
}

std::string Seconds(absl::Duration d) {
  return d == absl::InfiniteDuration() ? "not served in 120 s"
                                       : absl::StrFormat("%.2f", absl::ToDoubleSeconds(d));
}

int Main(int argc, char** argv) {
  // Debian's Abseil keeps debug deadlock detection on (every Mutex lock, gRPC's too, updates a
  // global graph): the load generator's CPU comes out of the servers' cores, so turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (argc < 2) {
    std::cerr << "usage: failover_bench BOOTSTRAP [RUNS=3] [OBJECTS=100000]\n";
    return 2;
  }
  const std::string bootstrap = argv[1];
  const int runs = argc > 2 ? std::stoi(argv[2]) : 3;
  const int64_t objects = argc > 3 ? std::stoll(argv[3]) : 100'000;

  test::TestCluster cluster(bootstrap, kPartitions, "", "", "", "standby_replicas: 1");
  for (const char* id : {"n1", "n2", "n3"}) {
    if (absl::Status s = cluster.StartNode(id); !s.ok()) return std::cerr << s << "\n", 1;
  }
  if (absl::Status s = cluster.StartRouter("r1"); !s.ok()) return std::cerr << s << "\n", 1;
  if (!cluster.WaitAllActive("r1", {"n1", "n2", "n3"})) {
    std::cerr << "partitions not active\n" << cluster.Logs();
    return 1;
  }
  if (absl::Status s = LoadObjects(bootstrap, cluster, objects); !s.ok()) {
    std::cerr << s << "\n" << cluster.Logs();
    return 1;
  }
  auto end = ReportsEnd(bootstrap, cluster);
  if (!end.ok()) return std::cerr << end.status() << "\n", 1;
  std::vector<Run> results;
  for (int r = 0; r < runs; ++r) {
    if (!test::WaitFor([&] { return cluster.StandbysCaughtUp("r1", *end); }, absl::Seconds(180))) {
      std::cerr << "standbys did not catch up\n" << cluster.Logs();
      return 1;
    }
    auto key = KeyOwnedBy(cluster, "r1", "n2", objects);
    if (!key.ok()) return std::cerr << key.status() << "\n", 1;
    const Run run = KillOwner(cluster, *key);
    results.push_back(run);
    std::cerr << "run " << r << ": fresh " << run.fresh << ", max_lag " << run.bounded << "\n";
    if (absl::Status s = cluster.StartNode("n2"); !s.ok()) return std::cerr << s << "\n", 1;
    if (!cluster.WaitAllActive("r1", {"n1", "n2", "n3"}, absl::Seconds(180))) {
      std::cerr << "cluster did not settle after the restart\n" << cluster.Logs();
      return 1;
    }
  }

  auto median = [&](absl::Duration Run::*field) {
    std::vector<absl::Duration> values;
    for (const Run& r : results) values.push_back(r.*field);
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
  };
  std::cout << absl::StrFormat(
      "3 nodes (node and router each), %d partitions, standby_replicas 1, %s objects, node "
      "session timeout %s; the "
      "owner of the read object's partition is SIGKILLed; reads through a router-only process "
      "every ~1 ms while they fail (250 ms deadline). Median of %d runs.\n\n",
      kPartitions, Thousands(objects), absl::FormatDuration(kSessionTimeout), runs, runs);
  std::cout << "| figure | seconds after SIGKILL | runs | / session timeout |\n"
               "|---|---:|---|---:|\n";
  std::cout << absl::StrFormat("| reference: the group's session timeout (the broker declares a silent member dead) | %.2f | | 1.00 |\n",
                               absl::ToDoubleSeconds(kSessionTimeout));
  for (const auto& [name, field] :
       std::vector<std::pair<std::string, absl::Duration Run::*>>{
           {"first fresh read (max_lag 0) served again", &Run::fresh},
           {"first max_lag read served", &Run::bounded}}) {
    std::string each;
    for (const Run& r : results) absl::StrAppend(&each, each.empty() ? "" : ", ", Seconds(r.*field));
    const absl::Duration m = median(field);
    std::cout << absl::StrFormat(
        "| %s | %s | %s | %s |\n", name, Seconds(m), each,
        m == absl::InfiniteDuration()
            ? "-"
            : absl::StrFormat("%.2f", absl::ToDoubleSeconds(m) / absl::ToDoubleSeconds(kSessionTimeout)));
  }
  std::cout << "\nFirst max_lag reads served by: ";
  for (const Run& r : results) std::cout << (r.bounded_served_by.empty() ? "?" : r.bounded_served_by) << " ";
  std::cout << "\n";
  return 0;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) { return tally::bench::Main(argc, argv); }
