#ifndef TALLY_SERVER_ROUTER_SHARD_CLIENT_H_
#define TALLY_SERVER_ROUTER_SHARD_CLIENT_H_

// ShardClient is how a router reads a node's shards: over the internal gRPC ShardService, or
// directly through ShardQueries when the node runs in the router's own process. Errors keep the
// node's codes (ABORTED: not the owner; UNAVAILABLE: restoring or unreachable). Thread-safe.
//
// Get and Scan block the calling thread; GetAsync and ScanAsync do not (the public API's
// callback handlers use them): their `done` runs once, on a gRPC thread, or inline before they
// return when the answer needs no wait (the in-process client). `done` must not block, and the
// request must stay valid until `done` runs. The client must outlive the `done`s of its calls
// (the router's reads hold it until then).

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/node/shard_queries.h"
#include "tally/internal/v1/shard.grpc.pb.h"

namespace tally::router {

class ShardClient {
 public:
  virtual ~ShardClient() = default;
  virtual absl::StatusOr<internal::v1::ShardGetResponse> Get(
      const internal::v1::ShardGetRequest& request, absl::Time deadline) = 0;
  virtual absl::StatusOr<internal::v1::ShardScanResponse> Scan(
      const internal::v1::ShardScanRequest& request, absl::Time deadline) = 0;

  template <typename Response>
  using Done = std::function<void(absl::StatusOr<Response>)>;
  // By default they answer inline through Get and Scan: right for clients that never wait (test
  // fakes); the gRPC and in-process clients override them.
  virtual void GetAsync(const internal::v1::ShardGetRequest& request, absl::Time deadline,
                        Done<internal::v1::ShardGetResponse> done) {
    done(Get(request, deadline));
  }
  virtual void ScanAsync(const internal::v1::ShardScanRequest& request, absl::Time deadline,
                         Done<internal::v1::ShardScanResponse> done) {
    done(Scan(request, deadline));
  }
  // Streams a consistent snapshot of the partition to `emit`, chunk by chunk (see ShardService).
  using SnapshotEmit = std::function<bool(const internal::v1::ShardSnapshotResponse&)>;
  virtual absl::Status Snapshot(const internal::v1::ShardSnapshotRequest& request,
                                absl::Time deadline, const SnapshotEmit& emit) = 0;

  // Routers mark a node whose call failed as unreachable, to try other copies first until then.
  void MarkUnreachable(absl::Time until) {
    unreachable_until_ns_.store(absl::ToUnixNanos(until), std::memory_order_relaxed);
  }
  bool Unreachable(absl::Time now) const {
    return absl::ToUnixNanos(now) < unreachable_until_ns_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<int64_t> unreachable_until_ns_{0};
};

// How the gRPC client batches point reads (GetAsync without min_offset): up to `max_in_flight`
// calls to the node at once; reads that arrive while all are in flight queue, and each call that
// ends takes the queue (at most `max_batch` of it) along as one GetBatch. An idle node gets every
// read on its own at once; a busy one gets fewer, larger calls, which cost both sides far less
// per read. A read with min_offset may wait on the node, so it always goes alone, as a Get.
// Each of those calls ends within `call_slice` (its reads that still have time are sent again),
// so a node that stopped answering does not keep the reads queued behind it past their
// deadlines; queued reads whose deadlines pass end DEADLINE_EXCEEDED, at most a slice late.
// What a router's node clients did with point reads (all nodes together; /metrics).
struct GetBatchStats {
  std::atomic<int64_t> get_calls{0};       // reads that went alone
  std::atomic<int64_t> batch_calls{0};     // GetBatch calls
  std::atomic<int64_t> batched_reads{0};   // reads that went in them
  std::atomic<int64_t> expired_queued{0};  // reads whose deadline passed while queued
};

struct GetBatching {
  int max_in_flight = 4;
  int max_batch = 64;
  absl::Duration call_slice = absl::Milliseconds(250);
  GetBatchStats* stats = nullptr;  // if set, must outlive the client; counts its calls
};

// Over a gRPC channel to `endpoint` with `credentials` (one channel per node, reused by every
// call).
std::shared_ptr<ShardClient> NewGrpcShardClient(
    const std::string& endpoint, std::shared_ptr<grpc::ChannelCredentials> credentials,
    GetBatching batching = {});

// In-process; `queries` must outlive the client. GetAsync is ShardQueries::GetAsync: inline, except
// a read after a write whose offset is not applied yet, which the shard registry's thread answers.
std::shared_ptr<ShardClient> NewLocalShardClient(const node::ShardQueries& queries);

// grpc::Status → absl::Status, code and message kept.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_SHARD_CLIENT_H_
