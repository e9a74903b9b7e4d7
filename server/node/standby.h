#ifndef TALLY_SERVER_NODE_STANDBY_H_
#define TALLY_SERVER_NODE_STANDBY_H_

// Standby replicas: warm copies of partitions a node does not own, kept current by tailing their
// changelogs, so that lag-bounded reads have somewhere to go while an active copy is down or
// restoring, and so that a standby that becomes active replays only its lag.
//
// Placement (StandbysOf): for every partition of a scenario with standby_replicas = N, the alive
// nodes other than the partition's active one are ranked by a rendezvous hash of (node id,
// scenario, partition); the first N hold its standbys. Every node computes the same ranking from
// the membership records, and a node joining or leaving moves only the standbys it wins or held.
//
// Lag: a standby's applied offset is in reports-topic offsets like an active's, so that routers
// compare copies with one measure. A changelog record carries the reports offset its batch
// reached, but batches that change nothing write no changelog record. So every probe the
// replicator reads the group's committed offset C of each reports partition, then the
// changelog's high watermark H (uncommitted records included). C is committed in the same
// transaction as the changelog records of the batches before it, which were written before C
// became visible, hence lie below H; the commit markers reach partitions one by one, but a
// read_committed reader cannot pass H before they do. So once the standby has read up to H, it
// reflects every report before C. lag = (reports end offset) - max(C proven that way, source
// offset of its last record).
//
// A standby is RESTORING until it has caught up once, then STANDBY (readable with max_lag).
//
// Hand-over with the processor (same process): Claim() before the processor opens a partition
// as active (the replicator stops writing it; the open shard stays for the processor to take
// through ShardFiles), Release() after the processor let it go (it becomes a standby again if
// this node is one of its standbys).
//
// Thread safety: Start/Stop from one thread; Claim/Release from any thread.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/kafka/config.h"
#include "server/node/shard_files.h"
#include "server/node/shard_registry.h"
#include "tally/config/v1/config.pb.h"
#include "tally/records/v1/records.pb.h"

namespace tally::node {

// What placement needs to know of the cluster.
struct ClusterMembership {
  std::vector<std::string> alive;  // ids of the alive nodes
  // The active owner of each partition known to have one, by PartitionKey().
  absl::flat_hash_map<std::string, std::string> active;
};

std::string PartitionKey(const std::string& scenario, int32_t partition);

// Where a node learns the membership (implemented over the router's membership view).
class MembershipSource {
 public:
  virtual ~MembershipSource() = default;
  // Grows whenever Current() may have changed.
  virtual uint64_t version() const = 0;
  virtual ClusterMembership Current() const = 0;
};

struct PartitionId {
  std::string scenario;
  int32_t partition = 0;
  bool operator==(const PartitionId&) const = default;
};

// The partitions `self` should hold standbys of, in config order.
std::vector<PartitionId> StandbysOf(const std::string& self, const config::v1::Config& config,
                                    const ClusterMembership& membership);

class StandbyReplicator {
 public:
  // All must outlive the replicator.
  StandbyReplicator(const config::v1::Config& config, ShardRegistry& registry, ShardFiles& files);
  ~StandbyReplicator();

  // Starts replicating on a thread of its own, placing standbys as `membership` (which must
  // outlive the replicator) says. Does nothing when no scenario asks for standbys.
  absl::Status Start(const MembershipSource* membership);
  // Stops and closes the standbys. Idempotent.
  void Stop();

  // The processor takes the partition as active: stop writing it (waits for a write in progress).
  void Claim(const std::string& scenario, int32_t partition);
  // The processor no longer holds the partition (it never opened it).
  void Release(const std::string& scenario, int32_t partition);
  // The processor let go of a partition it held as active, whose shard holds `meta`: it stays
  // readable with max_lag, as a standby, until another node is active for it (or for good if
  // this node is one of its standbys) — so a node that lost its Kafka session, e.g. in a broker
  // outage, keeps answering lag-bounded reads. Without standbys (not started): removed from the
  // registry.
  void Adopt(const std::string& scenario, int32_t partition, std::shared_ptr<storage::Shard> shard,
             const records::v1::ShardMeta& meta);

  // How often lag is measured.
  static constexpr absl::Duration kProbeInterval = absl::Milliseconds(500);

 private:
  struct ProbeTarget {
    std::string key;
    int64_t committed = -1;  // the group's committed reports offset
    int64_t high = -1;       // the changelog's high watermark, read after `committed`
    int64_t end = -1;        // the reports partition's end offset
  };

  struct Replica {
    PartitionId id;
    std::string changelog_topic;
    std::string reports_topic;
    std::shared_ptr<storage::Shard> shard;
    records::v1::ShardMeta meta;  // as committed in the shard
    int64_t position = 0;         // next changelog offset to read
    int64_t proven_applied = -1;  // a reports offset the shard is known to reflect (see above)
    ProbeTarget pending;          // the last probe, proven once position reaches pending.high
    int64_t end_offset = -1;      // the reports partition's end offset at the last probe
    bool ready = false;           // caught up once: readable
    bool orphan = false;          // adopted from the processor, not placed (see Adopt)
  };
  // A replica of `id` held in `shard`, which holds `meta`; read from its changelog checkpoint.
  Replica NewReplica(const PartitionId& id, std::shared_ptr<storage::Shard> shard,
                     const records::v1::ShardMeta& meta) const;
  void Run();
  // Places standbys as `membership` says; reassigns the tail consumer if the set changed.
  void Reconcile(const ClusterMembership& membership);
  void Assign() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Apply(std::vector<kafka::MessagePtr> messages);
  void Probe();
  void Drop(const std::string& key, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishProgress(Replica& replica) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Proves the pending probe if the replica's position reached it, then tells the registry the
  // replica's progress and role.
  void Settle(Replica& replica) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const config::v1::Config& config_;
  ShardRegistry& registry_;
  ShardFiles& files_;
  const MembershipSource* membership_ = nullptr;
  // The scenario of each changelog topic (Apply's lookup of a record's replica).
  absl::flat_hash_map<std::string, std::string> scenario_of_changelog_;

  kafka::HandlePtr consumer_;  // the tail thread's, after Start()
  kafka::HandlePtr probe_;     // the tail thread's: committed offsets and high watermarks
  std::thread thread_;
  std::atomic<bool> stop_{false};

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Replica> replicas_ ABSL_GUARDED_BY(mu_);  // by PartitionKey
  absl::flat_hash_set<std::string> claimed_ ABSL_GUARDED_BY(mu_);  // held by the processor
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;                         // claims changed: reconcile
  bool assignment_stale_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_STANDBY_H_
