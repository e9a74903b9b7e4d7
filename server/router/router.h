#ifndef TALLY_SERVER_ROUTER_ROUTER_H_
#define TALLY_SERVER_ROUTER_ROUTER_H_

// Router is the logic of the public API, apart from gRPC: it checks requests, writes reports and
// operator commands to the reports topic (partition = murmur2(object_key) % partitions, as Java
// producers choose), and answers reads from the owner of the key's partition.
//
// Reads retry on a fresh routing table while the deadline allows: when a node answers that it no
// longer holds the partition (ABORTED), when it is restoring or unreachable (UNAVAILABLE), or
// when no alive node holds the partition.
//
// Lag-bounded reads (max_lag > 0) also go to standbys whose lag is within the bound, so that
// they keep being answered while the active copy is down, hung or restoring: the active is tried
// first unless it failed recently, with a slice of the deadline (kAttemptTimeout) when a standby
// could answer instead, then the standbys, least lag first. A copy that failed as unreachable
// (UNAVAILABLE, or its slice ran out) is tried last for kUnreachableFor.
//
// The routing decisions live in ReadRoute; Router drives them synchronously (Snapshot, List) or
// asynchronously (Get: no thread is held while a copy answers or while a read waits for a newer
// routing table, see TableWaiter).
//
// Errors, by what the caller should do:
//   INVALID_ARGUMENT   bad request; the message names the field;
//   NOT_FOUND          unknown scenario, or an object with no state;
//   UNAVAILABLE        no owner reachable before the deadline, or Kafka did not confirm a write:
//                      retry;
//   DEADLINE_EXCEEDED  min_token not applied before the deadline.
//
// Thread safety: every method may be called from any thread concurrently.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/router/membership_view.h"
#include "server/router/read_route.h"
#include "server/router/report_sink.h"
#include "server/router/table_waiter.h"
#include "tally/config/v1/config.pb.h"
#include "tally/v1/state.pb.h"

namespace tally::router {

class Router {
 public:
  // The token of the write, or why it failed. Runs on the sink's thread; must not block.
  using WriteDone = std::function<void(absl::StatusOr<std::string> token)>;

  // All references must outlive the router.
  Router(const config::v1::Config& config, ReportSink& sink, const RoutingSource& routes);
  // Ends the reads waiting for a newer routing table with their last error. Reads waiting for a
  // node's answer must have ended (the server that called Get stopped first).
  ~Router() = default;

  void Report(const v1::ReportStateRequest& request, WriteDone done);
  // The tokens of a batch's writes in the request's order, or why the batch failed. Runs on the
  // sink's thread, or inline when the batch is refused before any write; must not block.
  using BatchDone = std::function<void(absl::StatusOr<std::vector<std::string>> tokens)>;
  // Checks every report first (1 to kMaxBatchReports of them): a bad one refuses the batch with
  // its index and field (INVALID_ARGUMENT `reports[3].state: must not be empty`, NOT_FOUND for
  // an unknown scenario) and nothing is written. Then writes each one as Report does, and calls
  // `done` once, after the last write is confirmed or failed: a failed write fails the batch
  // with UNAVAILABLE naming the first report that failed (the others may be written: a retried
  // report replaces the same vote). `request` need not outlive the call.
  void ReportBatch(const v1::ReportBatchRequest& request, BatchDone done);
  void Set(const v1::SetStateRequest& request, WriteDone done);
  void Purge(const v1::PurgeStateRequest& request, WriteDone done);

  // The answer of a read, or why it failed. Runs once: inline, on a gRPC thread or on the
  // TableWaiter's; must not block.
  template <typename Response>
  using ReadDone = std::function<void(absl::StatusOr<Response>)>;

  // Does not block; `request` need not outlive the call.
  void Get(const v1::GetStateRequest& request, absl::Time deadline,
           ReadDone<v1::GetStateResponse> done) const;
  absl::StatusOr<v1::ListStateResponse> List(const v1::ListStateRequest& request,
                                             absl::Time deadline) const;
  v1::DescribeClusterResponse Describe() const;

  // Checks a WatchState request (all but its resume token); the scenario's partition count.
  absl::StatusOr<int32_t> CheckWatch(const v1::WatchStateRequest& request) const;
  // Streams a consistent snapshot of one partition from its active node (retrying on a fresh
  // routing table until `deadline`); its changes offset.
  absl::StatusOr<int64_t> Snapshot(
      const internal::v1::ShardSnapshotRequest& request, absl::Time deadline,
      const std::function<bool(const internal::v1::ShardSnapshotResponse&)>& emit) const;

  // The partition of an object in a scenario; NOT_FOUND for an unknown scenario.
  absl::StatusOr<int32_t> PartitionOf(const std::string& scenario,
                                      const std::string& object_key) const;

 private:
  struct Scenario {
    const config::v1::Scenario* config;
    std::string reports_topic;
  };

  absl::StatusOr<const Scenario*> FindScenario(const std::string& name) const;
  void Write(const Scenario& scenario, absl::StatusOr<records::v1::ReportRecord> record,
             WriteDone done);
  // Calls `read` (with the deadline of the attempt) on the copies of (scenario, partition) that
  // may answer with `max_lag`, in the order and with the retries the class comment says.
  template <typename Response>
  absl::StatusOr<Response> Route(
      const std::string& scenario, int32_t partition, int64_t max_lag, absl::Time deadline,
      absl::FunctionRef<absl::StatusOr<Response>(ShardClient&, absl::Time)> read) const;
  // The same without blocking: `start` is ShardClient::GetAsync or ScanAsync, called with
  // `request` (whose scenario and partition are routed); `done` gets the answer.
  template <typename Request, typename Response>
  void RouteAsync(Request request, int64_t max_lag, absl::Time deadline,
                  void (ShardClient::*start)(const Request&, absl::Time,
                                             ShardClient::Done<Response>),
                  ReadDone<Response> done) const;

  // Constant after construction.
  const config::v1::Config& config_;
  ReportSink& sink_;
  const RoutingSource& routes_;
  absl::flat_hash_map<std::string, Scenario> scenarios_;
  std::string scenario_names_;  // for NOT_FOUND messages

  mutable TableWaiter waiter_;  // thread-safe; where asynchronous reads wait for newer tables
};

// The most reports a ReportBatch request may carry.
inline constexpr int kMaxBatchReports = 1000;

// ListState's page size when the request gives none, and the largest it accepts.
inline constexpr int32_t kDefaultPageSize = 100;
inline constexpr int32_t kMaxPageSize = 1000;
// A ListState page asks each partition for twice its share of the page, and at least this many
// (but never more than the page): small scans would make short pages under skew.
inline constexpr size_t kMinScanPerPartition = 64;

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_ROUTER_H_
