#include "server/router/fake_routes.h"

namespace tally::router {

FakeShardClient::~FakeShardClient() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
}

absl::StatusOr<internal::v1::ShardGetResponse> FakeShardClient::Get(
    const internal::v1::ShardGetRequest& request, absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    ++calls_;
  }
  if (!get_) return absl::UnimplementedError("no answer in this test");
  return get_(request, deadline);
}

void FakeShardClient::GetAsync(const internal::v1::ShardGetRequest& request, absl::Time deadline,
                               Done<internal::v1::ShardGetResponse> done) {
  if (!answer_on_thread_) return done(Get(request, deadline));
  absl::MutexLock lock(&mu_);
  threads_.emplace_back([this, request, deadline, done = std::move(done)] {
    done(Get(request, deadline));
  });
}

absl::StatusOr<internal::v1::ShardScanResponse> FakeShardClient::Scan(
    const internal::v1::ShardScanRequest&, absl::Time) {
  return absl::UnimplementedError("no scans in this test");
}

absl::Status FakeShardClient::Snapshot(const internal::v1::ShardSnapshotRequest&, absl::Time,
                                       const SnapshotEmit&) {
  return absl::UnimplementedError("no snapshots in this test");
}

int FakeShardClient::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

internal::v1::ShardGetResponse Found(const std::string& node_id, int64_t lag) {
  internal::v1::ShardGetResponse response;
  response.set_found(true);
  response.set_node_id(node_id);
  response.set_lag(lag);
  response.mutable_state()->set_state("calm");
  return response;
}

FakeRoutes::FakeRoutes() : table_(std::make_shared<RoutingTable>()) {}

void FakeRoutes::Hold(const std::string& id, std::shared_ptr<ShardClient> client,
                      int32_t partition, internal::v1::ShardRole role, int64_t lag) {
  absl::MutexLock lock(&mu_);
  internal::v1::MemberRecord& member = members_[id];
  member.set_node_id(id);
  member.set_endpoint(id + ":7070");
  member.set_heartbeat_interval_ms(1000);
  internal::v1::PartitionState* p = member.add_partitions();
  p->set_scenario("demo");
  p->set_partition(partition);
  p->set_role(role);
  p->set_since_ms(1);
  p->set_applied_offset(100);
  p->set_end_offset(100 + lag);
  clients_[id] = std::move(client);
}

void FakeRoutes::Forget(const std::string& id) {
  absl::MutexLock lock(&mu_);
  members_.erase(id);
  clients_.erase(id);
}

void FakeRoutes::Publish() {
  absl::MutexLock lock(&mu_);
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (auto& [id, member] : members_) member.set_heartbeat_ms(now_ms);
  table_ = std::make_shared<RoutingTable>(
      table_->version() + 1, members_, now_ms, nullptr,
      [this](const std::string& id, const std::string&) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return clients_.at(id);  // called by the constructor, under mu_
      });
}

std::shared_ptr<const RoutingTable> FakeRoutes::Current() const {
  absl::MutexLock lock(&mu_);
  return table_;
}

std::shared_ptr<const RoutingTable> FakeRoutes::WaitNewer(uint64_t version,
                                                          absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto newer = [this, version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return table_->version() > version;
  };
  mu_.AwaitWithDeadline(absl::Condition(&newer), deadline);
  return table_;
}

}  // namespace tally::router
