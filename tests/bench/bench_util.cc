#include "tests/bench/bench_util.h"

#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/kafka/admin.h"
#include "server/kafka/partitioner.h"
#include "server/router/requests.h"
#include "tests/integration/node_harness.h"
#include "tests/testing/wait.h"

namespace tally::bench {
namespace {

// Latencies and counts of one load run, filled from gRPC's callback threads.
class Recorder {
 public:
  void Add(int64_t latency_ns, bool ok) {
    std::lock_guard lock(mu_);
    latency_ns_.push_back(latency_ns);
    if (!ok) ++errors_;
    if (--outstanding_ == 0) idle_.notify_all();
  }
  void Started() {
    std::lock_guard lock(mu_);
    ++outstanding_;
  }
  // Waits until every started call has completed; then the result over `elapsed`.
  LoadResult Finish(absl::Duration elapsed) {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return outstanding_ == 0; });
    LoadResult result;
    result.calls = static_cast<int64_t>(latency_ns_.size());
    result.errors = errors_;
    result.per_second = result.calls / absl::ToDoubleSeconds(elapsed);
    result.latency_ns = std::move(latency_ns_);
    return result;
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  std::vector<int64_t> latency_ns_;
  int64_t errors_ = 0;
  int64_t outstanding_ = 0;
};

int64_t NowNs() { return absl::GetCurrentTimeNanos(); }

std::string ReportsTopic(const test::TestCluster& cluster) {
  return absl::StrCat(cluster.app(), ".", test::TestCluster::kScenario, ".reports");
}

}  // namespace

LoadResult LoadClosed(const StartCall& start, int concurrency, absl::Duration duration) {
  Recorder recorder;
  std::atomic<int64_t> next{0};
  const int64_t start_ns = NowNs();
  const int64_t end_ns = start_ns + absl::ToInt64Nanoseconds(duration);
  std::atomic<int64_t> last_done_ns{start_ns};
  // Each slot starts its next call from the completion of the previous one.
  std::function<void()> issue = [&] {
    const int64_t t0 = NowNs();
    if (t0 >= end_ns) return;
    recorder.Started();
    start(next.fetch_add(1), [&, t0](bool ok) {
      const int64_t t1 = NowNs();
      last_done_ns.store(t1);
      issue();  // before Add: the recorder must not look idle while a slot goes on
      recorder.Add(t1 - t0, ok);
    });
  };
  for (int i = 0; i < concurrency; ++i) issue();
  LoadResult result = recorder.Finish(absl::Nanoseconds(end_ns - start_ns));
  result.per_second = result.calls / (static_cast<double>(last_done_ns.load() - start_ns) / 1e9);
  return result;
}

LoadResult LoadOpen(const StartCall& start, double rate, absl::Duration duration) {
  Recorder recorder;
  const int64_t start_ns = NowNs();
  const int64_t count = static_cast<int64_t>(rate * absl::ToDoubleSeconds(duration));
  // Sleeps until each call is due, without spinning: on two cores shared with the servers and
  // the broker, a spinning sender takes CPU from what it measures. This thread's timer slack is
  // cut to 1 µs (Linux's default 50 µs would be added to every call's latency, counted from `due`).
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t due = start_ns + static_cast<int64_t>(i * 1e9 / rate);
    const int64_t now = NowNs();
    if (due > now) absl::SleepFor(absl::Nanoseconds(due - now));
    recorder.Started();
    start(i, [&recorder, due](bool ok) { recorder.Add(NowNs() - due, ok); });
  }
  return recorder.Finish(absl::Nanoseconds(NowNs() - start_ns));
}

void ReportError(const grpc::Status& status) {
  static std::atomic<int> reported{0};
  if (reported++ < 5) {
    std::cerr << "call failed: " << status.error_code() << " " << status.error_message() << "\n";
  }
}

std::vector<std::shared_ptr<grpc::Channel>> Channels(const std::string& address, int count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < count; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("tally.bench.connection", c);  // distinct args: no shared subchannel
    channels.push_back(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

double Percentile(std::vector<int64_t> values, double q, double scale) {
  if (values.empty()) return 0;
  size_t i = std::min(values.size() - 1, static_cast<size_t>(q * (values.size() - 1)));
  std::nth_element(values.begin(), values.begin() + static_cast<ptrdiff_t>(i), values.end());
  return static_cast<double>(values[i]) / scale;
}

std::string Thousands(double value) {
  const std::string digits = absl::StrCat(static_cast<int64_t>(value + 0.5));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

int64_t RssKiB(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  const std::string prefix = field + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stoll(line.substr(prefix.size()));
  }
  return 0;
}

void WritePercentiles(const std::string& path, const std::vector<int64_t>& latency_ns) {
  std::vector<int64_t> sorted = latency_ns;
  std::sort(sorted.begin(), sorted.end());
  std::ofstream out(path);
  if (sorted.empty()) return;
  for (int permille = 1; permille < 1000; ++permille) {
    size_t i = static_cast<size_t>(permille / 1000.0 * (sorted.size() - 1));
    out << permille / 10.0 << " " << sorted[i] / 1e6 << "\n";
  }
}

std::string ObjectKey(int64_t i) { return absl::StrCat("object-", i); }

records::v1::ReportRecord ReportOf(int64_t i, const std::string& agent, const std::string& state) {
  config::v1::Scenario scenario;
  scenario.set_name(test::TestCluster::kScenario);
  auto record = router::ReportRecordFor(test::ReportRequest(ObjectKey(i), agent, state), scenario,
                                        absl::ToUnixMillis(absl::Now()));
  assert(record.ok());  // a well-formed request by construction
  return *record;
}

absl::StatusOr<std::unique_ptr<storage::Shard>> LocalShard(const std::string& dir,
                                                           int64_t objects) {
  auto shard = storage::Shard::Open(dir, {});
  if (!shard.ok()) return shard.status();
  const int64_t expires_at_ms = absl::ToUnixMillis(absl::Now() + absl::Hours(1));
  for (int64_t first = 0; first < objects; first += 50'000) {
    auto batch = (*shard)->NewWriteBatch();
    if (!batch.ok()) return batch.status();
    for (int64_t i = first; i < std::min(objects, first + 50'000); ++i) {
      storage::ObjectData data;
      data.state.set_state(i % 3 ? "ok" : "attack");
      data.state.set_version(1);
      data.votes.emplace_back();
      data.votes.back().set_agent_id("a1");
      data.votes.back().set_state(data.state.state());
      data.votes.back().set_expires_at_ms(expires_at_ms);
      (*batch)->PutObject(ObjectKey(i), std::move(data));
    }
    (*batch)->SkipSync();
    if (absl::Status s = (*batch)->Commit(); !s.ok()) return s;
  }
  return shard;
}

absl::Status LoadObjects(const std::string& bootstrap, test::TestCluster& cluster,
                         int64_t objects) {
  auto client = test::KafkaTestClient::Create(bootstrap);
  if (!client.ok()) return client.status();
  const std::string topic = ReportsTopic(cluster);
  for (int64_t i = 0; i < objects; ++i) {
    records::v1::ReportRecord record = ReportOf(i, "a1", i % 3 ? "ok" : "attack");
    const std::string value = record.SerializeAsString();
    if (absl::Status s = (*client)->Produce(
            topic, kafka::PartitionFor(record.object_key(), cluster.partitions()),
            record.object_key(), &value);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = (*client)->Flush(); !s.ok()) return s;
  return WaitApplied(bootstrap, cluster, absl::Minutes(10));
}

absl::Status WaitApplied(const std::string& bootstrap, test::TestCluster& cluster,
                         absl::Duration timeout) {
  auto client = test::KafkaTestClient::Create(bootstrap);
  if (!client.ok()) return client.status();
  const std::string topic = ReportsTopic(cluster);
  absl::Status last;
  bool done = test::WaitFor(
      [&] {
        auto caught_up = (*client)->GroupCaughtUp(cluster.app(), topic, cluster.partitions());
        if (!caught_up.ok()) last = caught_up.status();
        return caught_up.ok() && *caught_up;
      },
      timeout);
  if (done) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat("the node did not apply every report in ", absl::FormatDuration(timeout),
                   last.ok() ? "" : absl::StrCat(" (", last.ToString(), ")")));
}

absl::StatusOr<std::map<int32_t, int64_t>> ReportsEnd(const std::string& bootstrap,
                                                      test::TestCluster& cluster) {
  auto admin = kafka::Admin::Create({{"bootstrap.servers", bootstrap}});
  if (!admin.ok()) return admin.status();
  std::map<int32_t, int64_t> end;
  for (int32_t p = 0; p < cluster.partitions(); ++p) {
    auto marks = (*admin)->WatermarkOffsets(ReportsTopic(cluster), p);
    if (!marks.ok()) return marks.status();
    end[p] = marks->second;
  }
  return end;
}

}  // namespace tally::bench
