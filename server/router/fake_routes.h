#ifndef TALLY_SERVER_ROUTER_FAKE_ROUTES_H_
#define TALLY_SERVER_ROUTER_FAKE_ROUTES_H_

// Test doubles for routing: nodes whose ShardClient answers what the test says, and a
// RoutingSource whose tables the test publishes by hand. For unit tests of reads, no network.

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/router/membership_view.h"
#include "server/router/shard_client.h"

namespace tally::router {

// Answers Get with `get` (UNIMPLEMENTED without one). GetAsync answers inline, or on a thread of
// its own with `answer_on_thread` (as gRPC does), joined when the client is destroyed.
class FakeShardClient final : public ShardClient {
 public:
  using GetFn = std::function<absl::StatusOr<internal::v1::ShardGetResponse>(
      const internal::v1::ShardGetRequest&, absl::Time deadline)>;

  explicit FakeShardClient(GetFn get, bool answer_on_thread = false)
      : get_(std::move(get)), answer_on_thread_(answer_on_thread) {}
  ~FakeShardClient() override;

  absl::StatusOr<internal::v1::ShardGetResponse> Get(const internal::v1::ShardGetRequest& request,
                                                     absl::Time deadline) override;
  void GetAsync(const internal::v1::ShardGetRequest& request, absl::Time deadline,
                Done<internal::v1::ShardGetResponse> done) override;
  absl::StatusOr<internal::v1::ShardScanResponse> Scan(const internal::v1::ShardScanRequest&,
                                                       absl::Time) override;
  absl::Status Snapshot(const internal::v1::ShardSnapshotRequest&, absl::Time,
                        const SnapshotEmit&) override;

  int calls() const;

 private:
  const GetFn get_;
  const bool answer_on_thread_;
  mutable absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

// A found object as node `node_id` answers it, with `lag`.
internal::v1::ShardGetResponse Found(const std::string& node_id, int64_t lag);

// Tables of scenario "demo" built from nodes the test declares; every node is alive.
class FakeRoutes final : public RoutingSource {
 public:
  FakeRoutes();

  // Node `id` (its client `client`) holds `partition` in `role`, `lag` behind. Call Publish after.
  void Hold(const std::string& id, std::shared_ptr<ShardClient> client, int32_t partition,
            internal::v1::ShardRole role, int64_t lag = 0);
  // Node `id` holds nothing any more.
  void Forget(const std::string& id);
  // Makes a new table (version + 1) of the nodes as declared.
  void Publish();

  std::shared_ptr<const RoutingTable> Current() const override;
  std::shared_ptr<const RoutingTable> WaitNewer(uint64_t version,
                                                absl::Time deadline) const override;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, internal::v1::MemberRecord> members_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<ShardClient>> clients_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const RoutingTable> table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_FAKE_ROUTES_H_
