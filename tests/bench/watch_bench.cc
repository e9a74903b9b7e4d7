// WatchState fan-out benchmark: one tallyd (node and router) on a real broker, N watchers on it
// (completion-queue-API streams over 16 connections), and paced changes. Prints, as a table, the
// delivery latency p50/p99 from the change's time (stamped by the processor in the transaction
// that commits it) to its receipt by each watcher, next to baselines measured in the same run:
// an empty gRPC call (Health/Check) and the same delivery with one watcher. N watchers twice:
// each following every object (every event goes to all N: the worst case), and each following
// one of 50 objects (an event goes to N / 50 of them). Also the router's
// memory per watcher (RSS growth while the watchers connect, divided by their number), and the
// CPU time the router and this client spent per event while the N watchers received them: the
// router, the broker and this client share the machine's cores, so a slow figure can be told
// apart from a busy machine.
//
//   watch_bench BOOTSTRAP [WATCHERS=10000] [EVENTS=100] [PACE_MS=200]

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tally/v1/state.grpc.pb.h"
#include "tests/bench/bench_util.h"
#include "tests/integration/cluster.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

using google::protobuf::util::TimeUtil;

// N WatchState streams on gRPC's completion-queue API, spread over `queues` queues with a
// thread each, recording each change's latency. Not the callback API, on purpose: Debian's gRPC
// is built without NDEBUG, and a debug build checks every completion's tag against all the
// operations pending on its queue, one by one. The callback API puts every stream's pending
// operations (two a stream: the read and the status) on one process-wide queue, so that check
// scanned 20,000 entries per received message and took a third of this client's CPU, out of
// the cores the router runs on. Here a stream has one operation pending at a time, on a queue
// of its own group.
class Watchers {
 public:
  // Watcher i follows `object_key(i)`, or every object when that is empty.
  Watchers(const std::vector<std::unique_ptr<v1::StateService::Stub>>& stubs, int n, int queues,
           const std::function<std::string(int)>& object_key = {}) {
    for (int q = 0; q < queues; ++q) queues_.push_back(std::make_unique<grpc::CompletionQueue>());
    for (int i = 0; i < n; ++i) {
      auto w = std::make_unique<Watcher>();
      v1::WatchStateRequest request;
      request.set_scenario(TestCluster::kScenario);
      if (object_key) request.set_object_key(object_key(i));
      w->reader = stubs[i % stubs.size()]->PrepareAsyncWatchState(&w->context, request,
                                                                  queues_[i % queues].get());
      watchers_.push_back(std::move(w));
    }
    for (auto& q : queues_) threads_.emplace_back([this, cq = q.get()] { Poll(cq); });
    for (auto& w : watchers_) w->reader->StartCall(w.get());
  }
  ~Watchers() { Stop(); }

  size_t size() const { return watchers_.size(); }
  size_t changes(size_t i) {
    std::lock_guard lock(watchers_[i]->mu);
    return watchers_[i]->latencies_us.size();
  }
  bool AllResponded() {
    for (auto& w : watchers_) {
      if (w->responses.load() == 0) return false;
    }
    return true;
  }
  std::vector<int64_t> Latencies() {
    std::vector<int64_t> all;
    for (auto& w : watchers_) {
      std::lock_guard lock(w->mu);
      all.insert(all.end(), w->latencies_us.begin(), w->latencies_us.end());
    }
    return all;
  }
  // Cancels every stream and waits until gRPC is done with them. Idempotent.
  void Stop() {
    if (threads_.empty()) return;
    for (auto& w : watchers_) w->context.TryCancel();
    if (!WaitFor([&] { return finished_.load() == watchers_.size(); }, absl::Seconds(60))) {
      std::cerr << "watch streams did not end after their cancellation\n";
      std::abort();  // the polling threads still use them
    }
    for (auto& q : queues_) q->Shutdown();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  struct Watcher {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientAsyncReader<v1::WatchStateResponse>> reader;
    v1::WatchStateResponse response;
    grpc::Status status;
    bool reading = false;  // StartCall has completed
    bool finishing = false;
    std::atomic<int> responses{0};
    std::mutex mu;
    std::vector<int64_t> latencies_us;  // guarded by mu
  };

  void Poll(grpc::CompletionQueue* cq) {
    void* tag;
    bool ok;
    while (cq->Next(&tag, &ok)) {
      auto* w = static_cast<Watcher*>(tag);
      if (w->finishing) {
        finished_.fetch_add(1);
        continue;
      }
      if (!ok) {  // the stream ended (or never started): its status next
        w->finishing = true;
        w->reader->Finish(&w->status, w);
        continue;
      }
      if (w->reading) {  // a Read's message, not StartCall's completion
        if (w->response.has_change()) {
          const int64_t now = absl::ToUnixMicros(absl::Now());
          std::lock_guard lock(w->mu);
          w->latencies_us.push_back(now -
                                    TimeUtil::TimestampToMicroseconds(w->response.change().time()));
        }
        w->responses.fetch_add(1);
      }
      w->reading = true;
      w->response.Clear();
      w->reader->Read(&w->response, w);
    }
  }

  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues_;
  std::vector<std::unique_ptr<Watcher>> watchers_;
  std::vector<std::thread> threads_;
  std::atomic<size_t> finished_{0};
};

// User plus system CPU time of a process so far.
absl::Duration CpuTime(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may hold spaces.
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
  if (f.size() < 13) return absl::ZeroDuration();
  return absl::Seconds(static_cast<double>(std::stoll(f[11]) + std::stoll(f[12])) /
                       sysconf(_SC_CLK_TCK));
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

// The changes go to kObjects objects in turn: change i to ObjectOf(i).
constexpr int kObjects = 50;
std::string ObjectOf(int i) { return absl::StrCat("bench-", i % kObjects); }

// Writes `events` changes, one every `pace`, and waits until every watcher has those it
// follows: all of them, or with `per_object` those of its object, ObjectOf(watcher index).
bool Drive(TestCluster& cluster, Watchers& watchers, int events, absl::Duration pace, int round,
           bool per_object = false) {
  std::vector<size_t> expected;
  for (size_t i = 0; i < watchers.size(); ++i) {
    size_t mine = events;
    if (per_object) mine = events / kObjects + (static_cast<int>(i % kObjects) < events % kObjects);
    expected.push_back(watchers.changes(i) + mine);
  }
  for (int i = 0; i < events; ++i) {
    // Every report a change.
    v1::ReportStateRequest request =
        ReportRequest(ObjectOf(i), "a", absl::StrCat("r", round, "-", i / kObjects));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ReportStateResponse response;
    if (!cluster.state("n1").ReportState(&context, request, &response).ok()) return false;
    absl::SleepFor(pace);  // pacing the load, not synchronisation
  }
  return WaitFor(
      [&] {
        for (size_t i = 0; i < watchers.size(); ++i) {
          if (watchers.changes(i) < expected[i]) return false;
        }
        return true;
      },
      absl::Seconds(300));
}

int Main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex lock (gRPC's included) also
  // updates a process-wide deadlock graph. This process is only the load: its CPU comes out of
  // the cores the router runs on, so it spends none on that.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (argc < 2) {
    std::cerr << "usage: watch_bench BOOTSTRAP [WATCHERS=10000] [EVENTS=100] [PACE_MS=200]\n";
    return 2;
  }
  const std::string bootstrap = argv[1];
  const int n = argc > 2 ? std::stoi(argv[2]) : 10000;
  const int events = argc > 3 ? std::stoi(argv[3]) : 100;
  const absl::Duration pace = absl::Milliseconds(argc > 4 ? std::stoi(argv[4]) : 200);

  TestCluster cluster(bootstrap, 2, "watch_max_queued: 100000");
  if (absl::Status s = cluster.StartNode("n1"); !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  if (!cluster.WaitAllActive("n1", {"n1"})) {
    std::cerr << "partitions not active\n" << cluster.Logs();
    return 1;
  }
  const std::string address = cluster.process("n1").address();

  // Baseline 1: an empty gRPC call.
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::vector<int64_t> empty_us;
  for (int i = 0; i < 2000; ++i) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckResponse response;
    absl::Time start = absl::Now();
    health->Check(&context, {}, &response);
    empty_us.push_back(absl::ToInt64Microseconds(absl::Now() - start));
  }

  std::vector<std::unique_ptr<v1::StateService::Stub>> stubs;
  for (auto& channel : bench::Channels(address, 16)) {
    stubs.push_back(v1::StateService::NewStub(channel));
  }
  constexpr int kQueues = 8;
  auto registered = [](Watchers& ws) {
    return WaitFor([&] { return ws.AllResponded(); }, absl::Seconds(300));
  };

  // Baseline 2: the same delivery with one watcher.
  Watchers one(stubs, 1, 1);
  if (!registered(one) || !Drive(cluster, one, events, pace, 0)) {
    std::cerr << "one-watcher run failed\n" << cluster.Logs();
    return 1;
  }
  std::vector<int64_t> one_us = one.Latencies();
  one.Stop();

  // N watchers.
  const pid_t pid = cluster.process("n1").pid();
  const int64_t rss_before = bench::RssKiB(pid);
  Watchers many(stubs, n, kQueues);
  if (!registered(many)) {
    std::cerr << "watchers did not all register\n";
    return 1;
  }
  const int64_t rss_after = bench::RssKiB(pid);
  const std::string load_before = LoadAverage();
  const absl::Duration router_cpu_before = CpuTime(pid), client_cpu_before = CpuTime(getpid());
  if (!Drive(cluster, many, events, pace, 1)) {
    std::cerr << "not every watcher got every event\n" << cluster.Logs();
    return 1;
  }
  const absl::Duration router_cpu = CpuTime(pid) - router_cpu_before;
  const absl::Duration client_cpu = CpuTime(getpid()) - client_cpu_before;
  const std::string load_after = LoadAverage();
  std::vector<int64_t> many_us = many.Latencies();
  many.Stop();

  // N watchers again, each following one of the kObjects objects: an event goes to N / kObjects
  // of them (dashboards following one site each, rather than every watcher every change).
  Watchers by_object(stubs, n, kQueues, [](int i) { return ObjectOf(i); });
  if (!registered(by_object)) {
    std::cerr << "per-object watchers did not all register\n";
    return 1;
  }
  const absl::Duration by_object_cpu_before = CpuTime(pid);
  if (!Drive(cluster, by_object, events, pace, 2, /*per_object=*/true)) {
    std::cerr << "not every per-object watcher got its events\n" << cluster.Logs();
    return 1;
  }
  const absl::Duration by_object_cpu = CpuTime(pid) - by_object_cpu_before;
  std::vector<int64_t> by_object_us = by_object.Latencies();
  by_object.Stop();

  auto ms = [](const std::vector<int64_t>& us, double q) { return bench::Percentile(us, q, 1e3); };
  const double empty_p50 = ms(empty_us, 0.5), empty_p99 = ms(empty_us, 0.99);
  const double one_p50 = ms(one_us, 0.5), one_p99 = ms(one_us, 0.99);
  const double many_p50 = ms(many_us, 0.5), many_p99 = ms(many_us, 0.99);
  const double by_object_p50 = ms(by_object_us, 0.5), by_object_p99 = ms(by_object_us, 0.99);
  std::cout << absl::StrFormat(
      "%d watchers on one router, %d changes one every %s; latency from the change's time to "
      "receipt.\n\n",
      n, events, absl::FormatDuration(pace));
  std::cout << "| figure | p50 ms | p99 ms | p99 / empty call p99 |\n|---|---|---|---|\n";
  std::cout << absl::StrFormat("| empty gRPC call (Health/Check), baseline | %.2f | %.2f | 1.0 |\n",
                               empty_p50, empty_p99);
  std::cout << absl::StrFormat("| delivery to 1 watcher, baseline | %.2f | %.2f | %.1f |\n",
                               one_p50, one_p99, one_p99 / empty_p99);
  std::cout << absl::StrFormat("| delivery to each of %d watchers | %.2f | %.2f | %.1f |\n", n,
                               many_p50, many_p99, many_p99 / empty_p99);
  std::cout << absl::StrFormat(
      "| %d watchers, each following one of %d objects: delivery to the %d of an event's object "
      "| %.2f | %.2f | %.1f |\n",
      n, kObjects, n / kObjects, by_object_p50, by_object_p99, by_object_p99 / empty_p99);
  std::cout << absl::StrFormat(
      "\nSamples: %zu deliveries to every watcher, %zu to watchers of one object. Target: p99 <= "
      "50 ms with every watcher receiving every event -> %s. Router memory: %.1f KiB per "
      "watcher (RSS %d -> %d KiB).\n",
      many_us.size(), by_object_us.size(), many_p99 <= 50 ? "met" : "NOT met",
      static_cast<double>(rss_after - rss_before) / n, rss_before, rss_after);
  std::cout << absl::StrFormat(
      "CPU per event while %d watchers received them: router %.1f ms, this client %.1f ms (%d "
      "cores shared by router, broker and client; load average %s before, %s after).\n",
      n, absl::ToDoubleMilliseconds(router_cpu) / events,
      absl::ToDoubleMilliseconds(client_cpu) / events,
      static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)), load_before, load_after);
  std::cout << absl::StrFormat("Router CPU per event with watchers of one object each: %.1f ms.\n",
                               absl::ToDoubleMilliseconds(by_object_cpu) / events);
  return 0;
}

}  // namespace
}  // namespace tally::test

int main(int argc, char** argv) { return tally::test::Main(argc, argv); }
