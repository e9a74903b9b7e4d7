#ifndef TALLY_TESTS_BENCH_BENCH_UTIL_H_
#define TALLY_TESTS_BENCH_BENCH_UTIL_H_

// What the cluster benchmarks (ingest, read, list, fail-over, watch) share: a unary-call load
// generator on gRPC's callback API (closed loop for the maximum rate, open loop for latency at a
// fixed rate), percentiles, resident memory of a process, loading objects straight into a
// scenario's reports topic, and waiting until the consumer group has applied every report.
//
// Thread safety: Load*() may be called from one thread at a time; the StartCall passed in is
// called from that thread and from gRPC's callback threads.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/storage/shard.h"
#include "tally/records/v1/records.pb.h"
#include "tests/integration/cluster.h"

namespace tally::bench {

// Starts call number `i`; the callee calls `done(ok)` exactly once, from any thread.
using StartCall = std::function<void(int64_t i, std::function<void(bool ok)> done)>;

struct LoadResult {
  double per_second = 0;          // completed calls (ok or not) per second
  int64_t calls = 0, errors = 0;
  std::vector<int64_t> latency_ns;  // per completed call, in completion order
};

// Keeps `concurrency` calls outstanding for `duration`: the highest rate the server (and this
// client, on the same machine) sustains.
LoadResult LoadClosed(const StartCall& start, int concurrency, absl::Duration duration);
// Starts calls at `rate` per second for `duration`, whatever the answers: latency at that rate,
// measured from each call's scheduled start (no coordinated omission).
LoadResult LoadOpen(const StartCall& start, double rate, absl::Duration duration);

// Logs the first few failed calls' status to stderr.
void ReportError(const grpc::Status& status);

// A StartCall for a unary method of the callback API, e.g.
//   Unary<v1::GetStateRequest, v1::GetStateResponse>(
//       [&](auto* c, auto* q, auto* r, auto cb) { stub.async()->GetState(c, q, r, cb); },
//       [](int64_t i) { ...request i... });
template <typename Request, typename Response>
StartCall Unary(
    std::function<void(grpc::ClientContext*, const Request*, Response*,
                       std::function<void(grpc::Status)>)>
        method,
    std::function<Request(int64_t)> make_request) {
  return [method, make_request](int64_t i, std::function<void(bool)> done) {
    struct Call {
      grpc::ClientContext context;
      Request request;
      Response response;
    };
    auto* call = new Call;
    call->request = make_request(i);
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    method(&call->context, &call->request, &call->response,
           [call, done = std::move(done)](grpc::Status status) {
             if (!status.ok()) ReportError(status);
             delete call;
             done(status.ok());
           });
  };
}

// `count` channels to `address`, each its own TCP connection.
std::vector<std::shared_ptr<grpc::Channel>> Channels(const std::string& address, int count);

// The value at quantile `q` (0..1) of `values`, in the values' unit divided by `scale`.
double Percentile(std::vector<int64_t> values, double q, double scale = 1);
// 1234567 -> "1,234,567".
std::string Thousands(double value);
// A memory figure of `pid` in KiB from /proc/<pid>/status (VmRSS: resident; RssAnon: resident
// less mapped files such as LMDB's), 0 if unknown.
int64_t RssKiB(pid_t pid, const std::string& field = "VmRSS");
// Writes "q value" lines (quantiles 0.001..0.999 of `latency_ns`, in ms) for a latency plot.
void WritePercentiles(const std::string& path, const std::vector<int64_t>& latency_ns);

// Object key number i of the benchmarks' data set.
std::string ObjectKey(int64_t i);
// A report of `agent` on object i (TTL one hour), as a router writes it to the reports topic.
records::v1::ReportRecord ReportOf(int64_t i, const std::string& agent, const std::string& state);

// A shard in `dir` holding `objects` objects (ObjectKey(i), one vote each, as LoadObjects writes
// them), committed: the raw-LMDB ceilings read it.
absl::StatusOr<std::unique_ptr<storage::Shard>> LocalShard(const std::string& dir, int64_t objects);

// Produces one report by agent "a1" for each of `objects` objects into the cluster's reports topic
// (each into its key's partition, as a router does) and waits until the node has applied them.
absl::Status LoadObjects(const std::string& bootstrap, test::TestCluster& cluster,
                         int64_t objects);
// Waits (up to `timeout`) until the cluster's consumer group has committed every report.
absl::Status WaitApplied(const std::string& bootstrap, test::TestCluster& cluster,
                         absl::Duration timeout);
// Where each partition of the cluster's reports topic ends: the applied offset of a copy that
// reflects every report, for TestCluster::StandbysCaughtUp.
absl::StatusOr<std::map<int32_t, int64_t>> ReportsEnd(const std::string& bootstrap,
                                                      test::TestCluster& cluster);

}  // namespace tally::bench

#endif  // TALLY_TESTS_BENCH_BENCH_UTIL_H_
