// Ingest benchmark: reports through the router's ReportStates streams until the node(s) have
// applied them (exactly-once processing on: the consumer group has committed every report), with
// a cluster of 1 and of 3 tallyd processes (node and router each). Prints, as markdown tables:
// - the sustained rate next to two ceilings measured in the same run: a bare librdkafka producer
//   with the router's settings writing records of the same size to the same broker, and the
//   processor's per-record work alone, without Kafka (parse, validate, read the object, reduce,
//   write it, read its changelog bytes, one LMDB commit a batch): what one processor thread
//   could apply if it never waited for Kafka nor for a core;
// - report-to-visible latency at half the 1-node maximum: the time from sending a ReportState to
//   the answer of GetState(min_token) for its token (read-your-writes, served once applied).
// - the processors' batches during the half-load phase (from the nodes' /metrics): how many,
//   their size, and the time per phase: what report-to-visible is made of.
// Writes the latency percentiles to DATA_DIR/ingest_latency_<nodes>.dat for the plots.
//
//   ingest_bench BOOTSTRAP DATA_DIR [REPORTS=1000000] [OBJECTS=100000]
// (the apply ceiling's shard goes to a temporary directory under DATA_DIR)

#include <librdkafka/rdkafka.h>

#include <array>
#include <atomic>
#include <iostream>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/kafka/admin.h"
#include "server/kafka/config.h"
#include "server/node/processor.h"
#include "server/processor/object_update.h"
#include "server/processor/record_validation.h"
#include "server/processor/reducer.h"
#include "server/router/requests.h"
#include "server/storage/shard.h"
#include "tests/bench/bench_util.h"
#include "tests/integration/metrics_http.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/unique_name.h"

namespace tally::bench {
namespace {

constexpr int kPartitions = 6;
constexpr int kStreamsPerRouter = 4;
// ReportBatch writers per router, each with one call in flight: agents, each sending its batch.
// Four of them kept too few reports in flight to load one node (a call waits for Kafka's
// acknowledgement, about 10 ms here, so 4 x 100 reports a call came to ~40,000/s).
constexpr int kBatchWritersPerRouter = 16;
constexpr int kProbeThreads = 8;
// Reports a ReportBatch call carries: the agent's default batch (tally-agent's max_batch).
constexpr int kBatchReports = 100;

// Report number i: agent (i / objects) % 5 votes on object i % objects, so every report of a run
// is a new or a changed vote and costs the processor a changelog write.
v1::ReportStateRequest Report(int64_t i, int64_t objects) {
  v1::ReportStateRequest request =
      test::ReportRequest(ObjectKey(i % objects), absl::StrCat("agent-", (i / objects) % 5),
                          ((i / objects) / 5 + i) % 3 ? "ok" : "attack");
  return request;
}

// The raw produce ceiling: `count` records of `record_bytes` with the router's producer settings.
absl::StatusOr<double> ProduceCeiling(const std::string& bootstrap, int64_t count,
                                      size_t record_bytes) {
  const std::string topic = test::UniqueName("bench-produce");
  auto admin = kafka::Admin::Create({{"bootstrap.servers", bootstrap}});
  if (!admin.ok()) return admin.status();
  if (absl::Status s = (*admin)->EnsureTopics({kafka::TopicSpec(topic, kPartitions)}); !s.ok()) {
    return s;
  }
  auto conf = kafka::BuildConf({{"bootstrap.servers", bootstrap},
                                {"enable.idempotence", "true"},
                                {"acks", "all"},
                                {"linger.ms", "2"},
                                {"batch.num.messages", "10000"},
                                {"queue.buffering.max.messages", "200000"}});
  if (!conf.ok()) return conf.status();
  auto producer = kafka::NewHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!producer.ok()) return producer.status();
  const std::string value(record_bytes, 'x');
  absl::Time start = absl::Now();
  for (int64_t i = 0; i < count; ++i) {
    const std::string key = ObjectKey(i);
    while (true) {
      rd_kafka_resp_err_t err =
          rd_kafka_producev(producer->get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                            RD_KAFKA_V_PARTITION(static_cast<int32_t>(i % kPartitions)),
                            RD_KAFKA_V_KEY(key.data(), key.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return absl::InternalError(rd_kafka_err2str(err));
      rd_kafka_poll(producer->get(), 1);
    }
    rd_kafka_poll(producer->get(), 0);
  }
  if (rd_kafka_flush(producer->get(), 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::DeadlineExceededError("produce ceiling: flush timed out");
  }
  return count / absl::ToDoubleSeconds(absl::Now() - start);
}

// The processor's per-record work on `count` reports (the same as the cluster phases send),
// without Kafka, into a fresh shard in `dir`, in batches of the processor's default size; in
// records/s.
absl::StatusOr<double> ApplyCeiling(const std::string& dir, int64_t count, int64_t objects) {
  constexpr int64_t kBatchRecords = 5000;  // node.max_batch_records' default
  auto shard = storage::Shard::Open(dir, storage::ShardOptions{});
  if (!shard.ok()) return shard.status();
  config::v1::Reducer reducer_config;
  reducer_config.mutable_majority();
  auto reducer = processor::NewReducer(reducer_config);
  if (!reducer.ok()) return reducer.status();
  config::v1::Scenario scenario;
  scenario.set_name(test::TestCluster::kScenario);
  scenario.mutable_default_ttl()->set_seconds(60);  // config loading's default
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  std::vector<std::string> values;  // as the reports topic holds them
  values.reserve(count);
  for (int64_t i = 0; i < count; ++i) {
    auto record = router::ReportRecordFor(Report(i, objects), scenario, now_ms);
    if (!record.ok()) return record.status();
    values.push_back(record->SerializeAsString());
  }
  const absl::Time start = absl::Now();
  for (int64_t first = 0; first < count; first += kBatchRecords) {
    auto batch = (*shard)->NewWriteBatch();
    if (!batch.ok()) return batch.status();
    absl::flat_hash_set<std::string> dirty;
    for (int64_t i = first; i < std::min(count, first + kBatchRecords); ++i) {
      records::v1::ReportRecord record;
      if (!record.ParseFromString(values[i])) return absl::InternalError("unparsable record");
      const std::string key = record.object_key();
      if (absl::Status s = processor::ValidateReportRecord(record, scenario.name(), key); !s.ok()) {
        return s;
      }
      auto current = (*batch)->GetObject(key);
      if (!current.ok()) return current.status();
      processor::ObjectUpdate update = processor::ApplyRecord(**reducer, *current, record, now_ms);
      if (update.event.has_value()) update.event->SerializeAsString();  // the change event
      if (!update.changed) continue;
      (*batch)->PutObject(key, std::move(update.data));
      dirty.insert(key);
    }
    for (const std::string& key : dirty) {  // the changelog records
      if (auto bytes = (*batch)->GetObjectBytes(key); !bytes.ok()) return bytes.status();
    }
    if (absl::Status s = (*batch)->Commit(); !s.ok()) return s;
  }
  return count / absl::ToDoubleSeconds(absl::Now() - start);
}

// Sends reports [first, first + count) at `rate` per second in all (0: as fast as they go);
// returns when every token is back. With `batch` 0 from kStreamsPerRouter threads per router,
// each with one ReportStates stream (a message a report); otherwise from
// kBatchWritersPerRouter threads per router, each sending ReportBatch calls of `batch` reports,
// one at a time.
absl::Status SendReports(test::TestCluster& cluster, const std::vector<std::string>& routers,
                         int64_t first, int64_t count, int64_t objects, double rate, int batch) {
  const int streams =
      static_cast<int>(routers.size()) * (batch > 0 ? kBatchWritersPerRouter : kStreamsPerRouter);
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  // Pacing the load at the asked rate, not synchronisation.
  auto pace = [&](int64_t sent, int s) {
    if (rate <= 0) return;
    absl::Time due = start + absl::Seconds((sent * streams + s) / rate);
    if (due > absl::Now()) absl::SleepFor(due - absl::Now());
  };
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      v1::StateService::Stub& stub = cluster.state(routers[s % routers.size()]);
      if (batch > 0) {
        int64_t sent = 0;
        for (int64_t i = first + s; i < first + count;) {
          v1::ReportBatchRequest request;
          for (; i < first + count && request.reports_size() < batch; i += streams) {
            *request.add_reports() = Report(i, objects);
          }
          pace(sent, s);
          sent += request.reports_size();
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
          v1::ReportBatchResponse response;
          if (grpc::Status status = stub.ReportBatch(&context, request, &response); !status.ok()) {
            std::cerr << "ReportBatch: " << status.error_message() << "\n";
            ++failed;
            return;
          }
        }
        return;
      }
      grpc::ClientContext context;
      auto stream = stub.ReportStates(&context);
      std::thread reader([&] {
        v1::ReportStateResponse response;
        while (stream->Read(&response)) {
        }
      });
      int64_t sent = 0;
      for (int64_t i = first + s; i < first + count; i += streams, ++sent) {
        pace(sent, s);
        if (!stream->Write(Report(i, objects))) break;
      }
      stream->WritesDone();
      reader.join();
      if (grpc::Status status = stream->Finish(); !status.ok()) {
        std::cerr << "ReportStates: " << status.error_message() << "\n";
        ++failed;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return failed == 0 ? absl::OkStatus() : absl::UnavailableError("a report writer failed");
}

// Report-to-visible latency probes, one every `every` on each of kProbeThreads threads (each
// waits for its probe to be visible before the next), until `stop`.
std::vector<int64_t> Probe(test::TestCluster& cluster, const std::string& router,
                           std::atomic<bool>& stop, absl::Duration every) {
  std::vector<int64_t> latency_ns[kProbeThreads];
  std::vector<std::thread> threads;
  for (int t = 0; t < kProbeThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int64_t n = 0; !stop.load(); ++n) {
        const int64_t t0 = absl::GetCurrentTimeNanos();
        v1::ReportStateRequest report = test::ReportRequest(absl::StrCat("probe-", t, "-", n % 100),
                                                            "probe", absl::StrCat("v", n));
        grpc::ClientContext write_context;
        write_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        v1::ReportStateResponse token;
        if (!cluster.state(router).ReportState(&write_context, report, &token).ok()) continue;
        v1::GetStateRequest read;
        read.set_scenario(test::TestCluster::kScenario);
        read.set_object_key(report.object_key());
        read.set_min_token(token.token());
        grpc::ClientContext read_context;
        read_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        v1::GetStateResponse state;
        if (cluster.state(router).GetState(&read_context, read, &state).ok()) {
          latency_ns[t].push_back(absl::GetCurrentTimeNanos() - t0);
        }
        absl::SleepFor(every);  // pacing the probes, not synchronisation
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<int64_t> all;
  for (const auto& l : latency_ns) all.insert(all.end(), l.begin(), l.end());
  return all;
}

// The processor batches' counters of every node (from /metrics), summed.
struct BatchCounters {
  double batches = 0, records = 0;
  std::array<double, node::kBatchPhases> seconds{};
};

// NOT_FOUND, naming the node and the metric, if a node's answer lacks one.
absl::StatusOr<BatchCounters> ReadBatchCounters(test::TestCluster& cluster,
                                                const std::vector<std::string>& nodes) {
  BatchCounters sum;
  for (const std::string& node : nodes) {
    const std::string metrics = test::HttpGet(cluster.process(node).Log(), "GET /metrics HTTP/1.0");
    auto add = [&](const std::string& name, double& to) {
      const double value = test::MetricValue(metrics, name);
      if (value < 0) {
        return absl::NotFoundError(absl::StrCat(node, "'s /metrics has no ", name, ":\n", metrics));
      }
      to += value;
      return absl::OkStatus();
    };
    absl::Status s = add("tally_batches_total", sum.batches);
    s.Update(add("tally_batch_records_total", sum.records));
    for (int i = 0; i < node::kBatchPhases; ++i) {
      s.Update(
          add(absl::StrCat("tally_batch_seconds_total{phase=\"", node::kBatchPhaseNames[i], "\"}"),
              sum.seconds[i]));
    }
    if (!s.ok()) return s;
  }
  return sum;
}

// A phase at full speed: the rate of tokens back, and of reports applied.
struct MaxRate {
  double acked_per_second = 0, max_per_second = 0;
};

struct IngestFigures {
  MaxRate streams;  // ReportStates, a message a report
  MaxRate batches;  // ReportBatch, kBatchReports reports a call
  double half_rate = 0, p50_ms = 0, p99_ms = 0;
  size_t samples = 0;
  // The processors' batches during the half-load phase: how many, and their average.
  double half_batches = 0, half_records_per_batch = 0;
  std::array<double, node::kBatchPhases> half_phase_ms{};
};

absl::StatusOr<IngestFigures> RunCluster(const std::string& bootstrap, int nodes, int64_t reports,
                                         int64_t objects, double half_rate,
                                         const std::string& data_dir) {
  test::TestCluster cluster(bootstrap, kPartitions, "", "", "metrics_address: \"127.0.0.1:0\"");
  std::vector<std::string> routers;
  for (int n = 1; n <= nodes; ++n) {
    routers.push_back(absl::StrCat("n", n));
    if (absl::Status s = cluster.StartNode(routers.back()); !s.ok()) return s;
  }
  if (!cluster.WaitAllActive("n1", {routers.begin(), routers.end()})) {
    return absl::DeadlineExceededError("partitions not active:\n" + cluster.Logs());
  }
  IngestFigures f;
  // Reports [0, reports) through ReportStates, then [reports, 2 * reports) through ReportBatch.
  for (auto [rate, batch] : {std::pair{&f.streams, 0}, std::pair{&f.batches, kBatchReports}}) {
    const int64_t first = batch == 0 ? 0 : reports;
    absl::Time start = absl::Now();
    if (absl::Status s = SendReports(cluster, routers, first, reports, objects, 0, batch);
        !s.ok()) {
      return s;
    }
    rate->acked_per_second = reports / absl::ToDoubleSeconds(absl::Now() - start);
    if (absl::Status s = WaitApplied(bootstrap, cluster, absl::Minutes(10)); !s.ok()) return s;
    rate->max_per_second = reports / absl::ToDoubleSeconds(absl::Now() - start);
  }

  // Latency at half load: half the 1-node maximum (through ReportBatch, the faster way in), the
  // same rate for both clusters, sent through ReportBatch.
  f.half_rate = half_rate > 0 ? half_rate : f.batches.max_per_second / 2;
  const int64_t half_reports = static_cast<int64_t>(f.half_rate * 10);  // ~10 s
  auto before = ReadBatchCounters(cluster, routers);
  if (!before.ok()) return before.status();
  std::atomic<bool> stop{false};
  std::vector<int64_t> latency;
  std::thread prober([&] { latency = Probe(cluster, "n1", stop, absl::Milliseconds(5)); });
  absl::Status sent =
      SendReports(cluster, routers, 2 * reports, half_reports, objects, f.half_rate, kBatchReports);
  stop.store(true);
  prober.join();
  if (!sent.ok()) return sent;
  auto after = ReadBatchCounters(cluster, routers);
  if (!after.ok()) return after.status();
  f.half_batches = after->batches - before->batches;
  if (f.half_batches > 0) {
    f.half_records_per_batch = (after->records - before->records) / f.half_batches;
    for (int i = 0; i < node::kBatchPhases; ++i) {
      f.half_phase_ms[i] = (after->seconds[i] - before->seconds[i]) * 1000 / f.half_batches;
    }
  }
  if (absl::Status s = WaitApplied(bootstrap, cluster, absl::Minutes(10)); !s.ok()) return s;
  f.p50_ms = Percentile(latency, 0.5, 1e6);
  f.p99_ms = Percentile(latency, 0.99, 1e6);
  f.samples = latency.size();
  WritePercentiles(absl::StrCat(data_dir, "/ingest_latency_", nodes, ".dat"), latency);
  return f;
}

int Main(int argc, char** argv) {
  // Debian's Abseil keeps debug deadlock detection on (every Mutex lock, gRPC's too, updates a
  // global graph): the load generator's CPU comes out of the servers' cores, so turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (argc < 3) {
    std::cerr << "usage: ingest_bench BOOTSTRAP DATA_DIR [REPORTS=1000000] [OBJECTS=100000]\n";
    return 2;
  }
  const std::string bootstrap = argv[1], data_dir = argv[2];
  const int64_t reports = argc > 3 ? std::stoll(argv[3]) : 1'000'000;
  const int64_t objects = argc > 4 ? std::stoll(argv[4]) : 100'000;

  config::v1::Scenario scenario;
  scenario.set_name(test::TestCluster::kScenario);
  auto record = router::ReportRecordFor(Report(reports / 2, objects), scenario,
                                        absl::ToUnixMillis(absl::Now()));
  if (!record.ok()) {
    std::cerr << record.status() << "\n";
    return 1;
  }
  const size_t record_bytes = record->ByteSizeLong();
  auto ceiling = ProduceCeiling(bootstrap, reports, record_bytes);
  if (!ceiling.ok()) {
    std::cerr << "produce ceiling: " << ceiling.status() << "\n";
    return 1;
  }
  test::TempDir apply_dir;
  auto apply = ApplyCeiling(apply_dir.path(), reports, objects);
  if (!apply.ok()) {
    std::cerr << "apply ceiling: " << apply.status() << "\n";
    return 1;
  }
  auto one = RunCluster(bootstrap, 1, reports, objects, 0, data_dir);
  if (!one.ok()) {
    std::cerr << "1 node: " << one.status() << "\n";
    return 1;
  }
  auto three = RunCluster(bootstrap, 3, reports, objects, one->half_rate, data_dir);
  if (!three.ok()) {
    std::cerr << "3 nodes: " << three.status() << "\n";
    return 1;
  }

  std::cout << absl::StrFormat(
      "%s reports over %s objects (5 agents; every report a new or changed vote) a phase, %d "
      "partitions; per router %d ReportStates streams (a message a report), or %d writers of "
      "ReportBatch calls of %d reports, one call at a time each; each tallyd runs the node and "
      "the router role. Rate: reports / time from the first send to the consumer group's commit "
      "of the last one (exactly-once on). Records of %zu bytes.\n\n",
      Thousands(reports), Thousands(objects), kPartitions, kStreamsPerRouter,
      kBatchWritersPerRouter, kBatchReports, record_bytes);
  std::cout << "| figure | reports/s | / produce ceiling | / apply ceiling |\n"
               "|---|---:|---:|---:|\n";
  std::cout << absl::StrFormat(
      "| ceiling: bare librdkafka produce, same record size, router's producer settings | %s | "
      "1.00 | |\n",
      Thousands(*ceiling));
  std::cout << absl::StrFormat(
      "| ceiling: the processor's per-record work alone, one thread, no Kafka (parse, reduce, "
      "LMDB) | %s | | 1.00 |\n",
      Thousands(*apply));
  for (const auto& [nodes, f] : {std::pair{1, *one}, std::pair{3, *three}}) {
    for (const auto& [api, rate] :
         {std::pair{"ReportStates", f.streams}, std::pair{"ReportBatch", f.batches}}) {
      std::cout << absl::StrFormat(
          "| ingest, %d node%s: %s → applied (tokens back at %s/s) | %s | %.2f | %.2f |\n", nodes,
          nodes > 1 ? "s" : "", api, Thousands(rate.acked_per_second),
          Thousands(rate.max_per_second), rate.max_per_second / *ceiling,
          rate.max_per_second / *apply);
    }
  }
  std::cout << "\n| report-to-visible (ReportState → GetState(min_token) answers; the load "
               "through ReportBatch) | load "
               "reports/s | p50 ms | p99 ms | samples |\n|---|---:|---:|---:|---:|\n";
  for (const auto& [nodes, f] : {std::pair{1, *one}, std::pair{3, *three}}) {
    std::cout << absl::StrFormat(
        "| %d node%s, at half the 1-node maximum | %s | %.2f | %.2f | %zu |\n", nodes,
        nodes > 1 ? "s" : "", Thousands(f.half_rate), f.p50_ms, f.p99_ms, f.samples);
  }
  std::cout << "\n| processor batches at half load (per node's /metrics) | batches | records "
               "per batch | ms per batch |";
  for (const char* phase : node::kBatchPhaseNames) std::cout << " " << phase << " ms |";
  std::cout << "\n|---|---:|---:|---:|";
  for (int i = 0; i < node::kBatchPhases; ++i) std::cout << "---:|";
  std::cout << "\n";
  for (const auto& [nodes, f] : {std::pair{1, *one}, std::pair{3, *three}}) {
    double total = 0;
    for (double ms : f.half_phase_ms) total += ms;
    std::cout << absl::StrFormat("| %d node%s | %s | %.0f | %.1f |", nodes, nodes > 1 ? "s" : "",
                                 Thousands(f.half_batches), f.half_records_per_batch, total);
    for (double ms : f.half_phase_ms) std::cout << absl::StrFormat(" %.1f |", ms);
    std::cout << "\n";
  }
  std::cout << absl::StrFormat(
      "\nTargets: 1 node >= 100,000 reports/s -> %s; >= 40%% of the produce ceiling -> %s; "
      "p99 report-to-visible <= 20 ms at half load -> %s.\n",
      one->batches.max_per_second >= 100000 ? "met" : "NOT met",
      one->batches.max_per_second >= 0.4 * *ceiling ? "met" : "NOT met",
      one->p99_ms <= 20 ? "met" : "NOT met");
  return 0;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) { return tally::bench::Main(argc, argv); }
