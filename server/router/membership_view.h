#ifndef TALLY_SERVER_ROUTER_MEMBERSHIP_VIEW_H_
#define TALLY_SERVER_ROUTER_MEMBERSHIP_VIEW_H_

// MembershipView tails <app>.members from the beginning and keeps the latest record of every
// node, publishing a new RoutingTable whenever a record arrives and at least every 500 ms (nodes
// die by falling silent, which no record announces).
//
// Reading the current table is lock-free (an atomic shared_ptr): the read path of every GetState
// takes it. Thread safety: Start() and Stop() from one thread; the rest from any thread.

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/kafka/config.h"
#include "server/node/standby.h"
#include "server/router/routing_table.h"
#include "tally/config/v1/config.pb.h"

namespace tally::router {

// Where routers get routing tables from (a seam: tests feed tables by hand).
class RoutingSource {
 public:
  virtual ~RoutingSource() = default;
  // The latest table; never null.
  virtual std::shared_ptr<const RoutingTable> Current() const = 0;
  // Waits until a table newer than `version` exists or `deadline`; returns the latest.
  virtual std::shared_ptr<const RoutingTable> WaitNewer(uint64_t version,
                                                        absl::Time deadline) const = 0;
};

class MembershipView final : public RoutingSource {
 public:
  // `config` must outlive the view; `factory` makes the clients of nodes.
  MembershipView(const config::v1::Config& config, ShardClientFactory factory);
  ~MembershipView() override;

  // Starts tailing and waits (until `ready_deadline`) for the records that existed at start to be
  // read, so the first tables are complete. UNAVAILABLE if Kafka cannot be reached in time.
  absl::Status Start(absl::Time ready_deadline);
  void Stop();

  std::shared_ptr<const RoutingTable> Current() const override { return table_.load(); }
  std::shared_ptr<const RoutingTable> WaitNewer(uint64_t version,
                                                absl::Time deadline) const override;

 private:
  void Run();
  // Keeps the record in `msg` as its node's latest; false (logged) if it is not a member record.
  // A record after a silence of the tail starts a Resumption (see RoutingTable).
  bool Apply(const rd_kafka_message_t& msg);
  void Rebuild();

  // Constant after construction.
  const config::v1::Config& config_;
  const ShardClientFactory factory_;

  kafka::HandlePtr consumer_;  // used by the tail thread only, after Start()
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::shared_ptr<const RoutingTable>> table_;

  mutable absl::Mutex mu_;
  // Guarded by mu_.
  absl::flat_hash_map<std::string, internal::v1::MemberRecord> members_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_record_at_ ABSL_GUARDED_BY(mu_);  // when the tail last read a record
  Resumption resumption_ ABSL_GUARDED_BY(mu_);      // the last silence of the tail that ended
};

// The membership a node places its standby replicas by, read from a router's routing tables.
class NodeMembership final : public node::MembershipSource {
 public:
  // Both must outlive this.
  NodeMembership(const config::v1::Config& config, const RoutingSource& routes)
      : config_(config), routes_(routes) {}
  uint64_t version() const override { return routes_.Current()->version(); }
  node::ClusterMembership Current() const override;

 private:
  const config::v1::Config& config_;
  const RoutingSource& routes_;
};

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_MEMBERSHIP_VIEW_H_
