// Listing and node-memory benchmark: OBJECTS objects (one vote each) produced into a scenario of
// 6 partitions held by one node (n1, node and router), then a full ListState paging (page_size
// 1000) through a separate router r1 and through n1's own router. Prints, as markdown tables:
// - the time of the full listing and objects/s, next to the ceiling measured in the same run: a
//   raw LMDB scan of a local shard with as many objects, in pages of the same size (ScanObjects,
//   what a node does for a page), on one thread;
// - the node's resident memory holding the objects (VmRSS, and RssAnon: without the mapped LMDB
//   files, whose pages the kernel may drop), before and after the listings touched every page.
//
//   list_bench BOOTSTRAP [OBJECTS=1000000]

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tests/bench/bench_util.h"
#include "tests/testing/temp_dir.h"

namespace tally::bench {
namespace {

constexpr int kPartitions = 6;
constexpr int kPageSize = 1000;

// Pages through every object via `router`; the number listed, or an error.
absl::StatusOr<int64_t> ListAll(test::TestCluster& cluster, const std::string& router) {
  v1::ListStateRequest request;
  request.set_scenario(test::TestCluster::kScenario);
  request.set_page_size(kPageSize);
  int64_t listed = 0;
  std::string last;
  do {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ListStateResponse response;
    grpc::Status status = cluster.state(router).ListState(&context, request, &response);
    if (!status.ok()) return absl::UnavailableError(status.error_message());
    for (const v1::ObjectState& state : response.states()) {
      if (state.object_key() <= last) {
        return absl::InternalError(absl::StrCat("out of order: ", state.object_key()));
      }
      last = state.object_key();
    }
    listed += response.states_size();
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return listed;
}

int Main(int argc, char** argv) {
  // Debian's Abseil keeps debug deadlock detection on (every Mutex lock, gRPC's too, updates a
  // global graph): the load generator's CPU comes out of the servers' cores, so turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (argc < 2) {
    std::cerr << "usage: list_bench BOOTSTRAP [OBJECTS=1000000]\n";
    return 2;
  }
  const std::string bootstrap = argv[1];
  const int64_t objects = argc > 2 ? std::stoll(argv[2]) : 1'000'000;

  test::TestCluster cluster(bootstrap, kPartitions);
  if (absl::Status s = cluster.StartNode("n1"); !s.ok()) return std::cerr << s << "\n", 1;
  if (absl::Status s = cluster.StartRouter("r1"); !s.ok()) return std::cerr << s << "\n", 1;
  if (!cluster.WaitAllActive("r1", {"n1"})) {
    std::cerr << "partitions not active\n" << cluster.Logs();
    return 1;
  }
  const pid_t node = cluster.process("n1").pid();
  const int64_t empty_rss = RssKiB(node);
  const absl::Time load_start = absl::Now();
  if (absl::Status s = LoadObjects(bootstrap, cluster, objects); !s.ok()) {
    std::cerr << s << "\n" << cluster.Logs();
    return 1;
  }
  const absl::Duration load_time = absl::Now() - load_start;
  const int64_t loaded_rss = RssKiB(node), loaded_anon = RssKiB(node, "RssAnon");

  struct Listing {
    std::string name;
    absl::Duration time;
  };
  std::vector<Listing> listings;
  for (const auto& [name, via] : std::vector<std::pair<std::string, std::string>>{
           {"ListState through the router (r1 → n1's ShardService)", "r1"},
           {"ListState at the owner's own router (in-process)", "n1"}}) {
    absl::Time start = absl::Now();
    auto listed = ListAll(cluster, via);
    if (!listed.ok() || *listed != objects) {
      std::cerr << name << ": " << (listed.ok() ? absl::StrCat(*listed, " listed") : listed.status().ToString())
                << "\n";
      return 1;
    }
    listings.push_back({name, absl::Now() - start});
  }
  const int64_t listed_rss = RssKiB(node), listed_anon = RssKiB(node, "RssAnon");

  // Ceiling: the same pages from a local shard, no RPC, no merge of partitions.
  test::TempDir dir;
  auto shard = LocalShard(dir.path() + "/shard", objects);
  if (!shard.ok()) return std::cerr << shard.status() << "\n", 1;
  absl::Time scan_start = absl::Now();
  int64_t scanned = 0;
  std::string after;
  while (true) {
    auto reader = (*shard)->NewReader();
    if (!reader.ok()) return std::cerr << reader.status() << "\n", 1;
    auto page = (*reader)->ScanObjects("", after, false, kPageSize);
    if (!page.ok()) return std::cerr << page.status() << "\n", 1;
    if (page->empty()) break;
    scanned += static_cast<int64_t>(page->size());
    after = page->back().first;
  }
  const absl::Duration scan_time = absl::Now() - scan_start;

  std::cout << absl::StrFormat(
      "%s objects in %d partitions on one node (loaded straight into the reports topic and "
      "applied in %s); page_size %d.\n\n",
      Thousands(objects), kPartitions, absl::FormatDuration(absl::Trunc(load_time, absl::Milliseconds(1))),
      kPageSize);
  std::cout << "| figure | seconds | objects/s | / ceiling |\n|---|---:|---:|---:|\n";
  const double ceiling = scanned / absl::ToDoubleSeconds(scan_time);
  std::cout << absl::StrFormat("| ceiling: raw LMDB scan of a local shard, pages of %d | %.2f | %s | 1.00 |\n",
                               kPageSize, absl::ToDoubleSeconds(scan_time), Thousands(ceiling));
  for (const Listing& l : listings) {
    const double rate = objects / absl::ToDoubleSeconds(l.time);
    std::cout << absl::StrFormat("| %s | %.2f | %s | %.2f |\n", l.name, absl::ToDoubleSeconds(l.time),
                                 Thousands(rate), rate / ceiling);
  }
  std::cout << absl::StrFormat("\nTarget: ListState of %s objects <= 10 s -> %s.\n\n",
                               Thousands(objects),
                               absl::ToDoubleSeconds(listings[0].time) <= 10 ? "met" : "NOT met");
  std::cout << "| node memory | VmRSS MiB | RssAnon MiB |\n|---|---:|---:|\n";
  std::cout << absl::StrFormat("| node with no objects | %.0f | |\n", empty_rss / 1024.0);
  std::cout << absl::StrFormat("| node holding %s objects, after loading | %.0f | %.0f |\n",
                               Thousands(objects), loaded_rss / 1024.0, loaded_anon / 1024.0);
  std::cout << absl::StrFormat("| the same, after the listings | %.0f | %.0f |\n",
                               listed_rss / 1024.0, listed_anon / 1024.0);
  return 0;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) { return tally::bench::Main(argc, argv); }
