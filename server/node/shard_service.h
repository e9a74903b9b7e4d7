#ifndef TALLY_SERVER_NODE_SHARD_SERVICE_H_
#define TALLY_SERVER_NODE_SHARD_SERVICE_H_

// The internal ShardService over gRPC: a thin layer over ShardQueries (proto in, proto out,
// absl::Status to grpc::Status). Get and GetBatch, the routers' hot path, are callback methods
// that hold no thread of gRPC's (ShardQueries::GetAsync: a Get with min_offset whose offset is not
// applied yet parks in the shard registry until it is, or until the call's deadline bounded by
// `max_wait`). GetBatch answers each item as Get would, with its own status; the call ends when
// the last item is answered.
// Scan and Snapshot are synchronous: they read many rows, work for gRPC's sync thread pool rather
// than for the callback threads that every Get shares.

#include "absl/time/time.h"
#include "server/node/shard_queries.h"
#include "tally/internal/v1/shard.grpc.pb.h"

namespace tally::node {

// Most items one GetBatch call may carry (a router's batches are clamped to it).
inline constexpr int kMaxGetBatch = 1000;

class ShardService final
    : public internal::v1::ShardService::WithCallbackMethod_Get<
          internal::v1::ShardService::WithCallbackMethod_GetBatch<
              internal::v1::ShardService::Service>> {
 public:
  // `queries` must outlive the service.
  ShardService(const ShardQueries& queries, absl::Duration max_wait)
      : queries_(queries), max_wait_(max_wait) {}

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const internal::v1::ShardGetRequest* request,
                                internal::v1::ShardGetResponse* response) override;
  grpc::ServerUnaryReactor* GetBatch(grpc::CallbackServerContext* context,
                                     const internal::v1::ShardGetBatchRequest* request,
                                     internal::v1::ShardGetBatchResponse* response) override;
  grpc::Status Scan(grpc::ServerContext* context, const internal::v1::ShardScanRequest* request,
                    internal::v1::ShardScanResponse* response) override;
  grpc::Status Snapshot(grpc::ServerContext* context,
                        const internal::v1::ShardSnapshotRequest* request,
                        grpc::ServerWriter<internal::v1::ShardSnapshotResponse>* writer) override;

 private:
  // How long a read may wait for its min_offset: the call's deadline, at most max_wait_.
  absl::Time Deadline(const grpc::CallbackServerContext& context) const;

  const ShardQueries& queries_;
  const absl::Duration max_wait_;
};

// absl::Status → grpc::Status, code and message kept.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_SHARD_SERVICE_H_
