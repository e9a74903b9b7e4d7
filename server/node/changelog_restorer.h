#ifndef TALLY_SERVER_NODE_CHANGELOG_RESTORER_H_
#define TALLY_SERVER_NODE_CHANGELOG_RESTORER_H_

// ChangelogRestorer brings a shard up to date with its changelog partition: it reads from the
// shard's checkpoint (ShardMeta.changelog_offset) to the partition's last stable offset with
// read_committed, applies every record (an ObjectRecord puts the object, a tombstone deletes
// it) in large LMDB transactions, and moves the checkpoint along with them. A shard is never
// ahead of its changelog, so replaying from the checkpoint is always safe: records are whole
// objects and applying one twice changes nothing.
//
// Records go into the shard as the changelog holds them (PutObjectBytes: no parse), in
// transactions of kRecordsPerTxn records that skip their fsync, with one Shard::Sync() at the
// end. Fetching and writing overlap: a second thread polls Kafka and stages the records of the
// next transaction (storage::StagedObjects) while the calling thread commits the previous one.
// Memory: up to 256 MiB of fetched records in librdkafka's queue and 64 MiB staged (see the .cc).
//
// Thread-compatible: one Restore() at a time per restorer.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/kafka/config.h"
#include "server/storage/shard.h"

namespace tally::node {

struct RestoreStats {
  int64_t records = 0;       // changelog records applied
  int64_t start_offset = 0;  // checkpoint before
  int64_t end_offset = 0;    // checkpoint after
  absl::Duration elapsed;
};

class ChangelogRestorer {
 public:
  // `properties`: librdkafka properties (bootstrap.servers and security settings).
  explicit ChangelogRestorer(kafka::Properties properties);

  // Restores `shard` from `topic`/`partition`. Logs progress (records, records/s, ETA) about
  // every 2 s. UNAVAILABLE if Kafka stops answering for `stall_timeout`; the shard then keeps
  // what was restored so far (a consistent prefix) and a later call continues from there.
  // DATA_LOSS if a record is not an ObjectRecord (the topic is not a Tally changelog of this
  // version); the shard then keeps the records before it. The shard is synced to disk before
  // this returns, whether it succeeds or not.
  // `progress`, if set, is called after every transaction with the shard's source offset then
  // (ShardMeta.source_offset: the reports offset the restored records reach).
  absl::StatusOr<RestoreStats> Restore(storage::Shard& shard, const std::string& topic,
                                       int32_t partition,
                                       absl::Duration stall_timeout = absl::Seconds(60),
                                       const std::function<void(int64_t)>& progress = nullptr);

  // Records applied per LMDB transaction.
  static constexpr int64_t kRecordsPerTxn = 50000;

  // The librdkafka consumer settings the restore reads with (on top of the given properties),
  // for benchmarks that measure a bare consumer the same way.
  static kafka::Properties FetchProperties();

 private:
  const kafka::Properties properties_;
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_CHANGELOG_RESTORER_H_
