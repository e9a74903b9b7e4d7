#ifndef TALLY_SERVER_NODE_PROCESSOR_H_
#define TALLY_SERVER_NODE_PROCESSOR_H_

// Processor is a node's stream processor: a member of the consumer group <app_id> (cooperative-
// sticky assignment, static membership with group.instance.id = node id) subscribed to the reports
// topics of every scenario. For each assigned partition it owns a Shard, restored from the
// changelog before any record of the partition is processed.
//
// Per polled batch (exactly-once, the Kafka Streams EOS-v2 shape made crash-safe for LMDB):
//   1. begin a Kafka transaction; buffer the shard writes in one WriteBatch per partition;
//   2. per record: validate (bad → dead-letter topic), apply it to the object, and for every
//      object that changed produce one changelog record (its final data in the batch) and, per
//      change of state, one change event;
//   3. send the consumed offsets to the transaction and commit it;
//   4. only then write the checkpoints into the shards' meta and commit the WriteBatches.
// A crash between 3 and 4 leaves a shard behind its changelog, never ahead; the next assignment
// restores the difference. Any Kafka error inside a transaction aborts it and restarts the
// session (new consumer and producer, same group instance): with static membership this moves no
// partition, and the shards restore only what they missed.
//
// Expiry runs in the same loop: every expiry_interval the votes past their TTL are dropped and
// their objects recomputed, through the same transactional path.
//
// Thread safety: Run() runs on one thread (the processor's); Stop() may be called from any
// thread; shards are read concurrently through the ShardRegistry.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/node/shard_files.h"
#include "server/node/shard_registry.h"
#include "server/node/standby.h"
#include "tally/config/v1/config.pb.h"

namespace tally::node {

// Creates the topics `config` needs if missing: per scenario the reports, changelog (compacted),
// changes and dead-letter topics, and <app>.members (compacted, one partition).
// FAILED_PRECONDITION when an existing topic has another partition count than the config says.
absl::Status EnsureTopics(const config::v1::Config& config);

// The phases of a batch, in their order (see above): kApply is step 2 without its waits (begin,
// validate, reduce, produce, expire); kEventDelivery waits for the change events' delivery, whose
// offsets go into the changelog records; kChangelog produces those records; kSendOffsets is
// send_offsets_to_transaction (two round trips); kFlush waits for every delivery;
// kCommitTransaction is commit_transaction; kCommitShards the shards' LMDB commits (in parallel).
enum class BatchPhase {
  kApply,
  kEventDelivery,
  kChangelog,
  kSendOffsets,
  kFlush,
  kCommitTransaction,
  kCommitShards,
};
inline constexpr int kBatchPhases = static_cast<int>(BatchPhase::kCommitShards) + 1;
// Metric label of each phase, by BatchPhase.
inline constexpr std::array<const char*, kBatchPhases> kBatchPhaseNames = {
    "apply", "event_delivery", "changelog", "send_offsets", "flush", "commit_transaction",
    "commit_shards"};
static_assert(kBatchPhaseNames[kBatchPhases - 1] != nullptr, "a BatchPhase without a name");

// What the processor's committed batches did, since the process started.
struct BatchStats {
  uint64_t batches = 0;  // committed transactions
  uint64_t records = 0;  // reports-topic records they consumed
  std::array<absl::Duration, kBatchPhases> time{};  // spent in each phase, by BatchPhase
};

// Sums the batches of every session (thread-safe).
class BatchStatsSink {
 public:
  void Add(uint64_t records, const std::array<absl::Duration, kBatchPhases>& time) {
    absl::MutexLock lock(&mu_);
    ++stats_.batches;
    stats_.records += records;
    for (int i = 0; i < kBatchPhases; ++i) stats_.time[i] += time[i];
  }
  BatchStats Get() const {
    absl::MutexLock lock(&mu_);
    return stats_;
  }

 private:
  mutable absl::Mutex mu_;
  BatchStats stats_ ABSL_GUARDED_BY(mu_);
};

class Processor {
 public:
  // All must outlive the processor. `standbys` learns which partitions it takes and lets go.
  Processor(const config::v1::Config& config, ShardRegistry& registry, ShardFiles& files,
            StandbyReplicator& standbys);
  ~Processor();

  // EnsureTopics(config) for this processor's config.
  absl::Status EnsureTopics() { return node::EnsureTopics(config_); }

  // Processes until Stop(). Restarts its Kafka session after errors.
  void Run();
  void Stop() { stop_.store(true); }
  // Any thread.
  BatchStats batch_stats() const { return batch_stats_.Get(); }

 private:
  class Session;

  const config::v1::Config& config_;
  ShardRegistry& registry_;
  ShardFiles& files_;
  StandbyReplicator& standbys_;
  std::atomic<bool> stop_{false};
  BatchStatsSink batch_stats_;
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_PROCESSOR_H_
