#ifndef TALLY_SERVER_STORAGE_INTERNAL_SHARD_IMPL_H_
#define TALLY_SERVER_STORAGE_INTERNAL_SHARD_IMPL_H_

// The LMDB-backed Shard, shared by shard.cc (environment, readers) and write_batch.cc (writes).

#include <lmdb.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message_lite.h"
#include "server/storage/internal/reads.h"
#include "server/storage/shard.h"

namespace tally::storage::internal {

// One LMDB write transaction. Every failure is returned as a Status naming the shard and the
// operation, and its MDB code is remembered in rc(), so that ShardImpl::Write can tell
// MDB_MAP_FULL (grow the map and run again) from the rest. Aborted on destruction unless committed.
class WriteTxn {
 public:
  explicit WriteTxn(const ShardDbs& dbs) : dbs_(dbs) {}
  WriteTxn(const WriteTxn&) = delete;
  WriteTxn& operator=(const WriteTxn&) = delete;
  ~WriteTxn() { Abort(); }

  absl::Status Begin(MDB_env* env);
  absl::Status Commit();
  void Abort();

  MDB_txn* txn() const { return txn_; }
  const ShardDbs& dbs() const { return dbs_; }
  // The MDB code of the first failure, MDB_SUCCESS if none.
  int rc() const { return rc_; }

  // Records a failure of `operation` with code `rc` and returns its Status.
  absl::Status Fail(std::string_view operation, int rc);

  // Writes `value` serialized straight into the page LMDB reserves for it (no intermediate copy).
  absl::Status Put(MDB_dbi dbi, std::string_view db_name, std::string_view key,
                   const google::protobuf::MessageLite& value);
  // The same through a cursor on `db_name`, which is left on the new entry. `flags` is 0 or
  // MDB_APPEND.
  absl::Status CursorPut(MDB_cursor* cursor, std::string_view db_name, std::string_view key,
                         const google::protobuf::MessageLite& value, unsigned flags);
  absl::Status CursorPutEmpty(MDB_cursor* cursor, std::string_view db_name, std::string_view key,
                              unsigned flags);
  // Deletes the key through the cursor; a missing key is not an error.
  absl::Status CursorDelete(MDB_cursor* cursor, std::string_view db_name, std::string_view key);

 private:
  const ShardDbs& dbs_;
  MDB_txn* txn_ = nullptr;
  int rc_ = MDB_SUCCESS;
};

// A process-wide claim on a directory: LMDB's locks break if one process opens an environment
// twice, so a second claim on the same directory fails while the first is alive.
class DirClaim {
 public:
  // FAILED_PRECONDITION if `canonical_dir` is claimed already.
  static absl::StatusOr<DirClaim> Acquire(std::string canonical_dir);
  DirClaim(DirClaim&& other) noexcept : dir_(std::move(other.dir_)) { other.dir_.clear(); }
  DirClaim& operator=(DirClaim&&) = delete;
  ~DirClaim();

 private:
  explicit DirClaim(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;  // Empty once moved from.
};

class ShardImpl final : public Shard {
 public:
  // See Shard::Open.
  static absl::StatusOr<std::unique_ptr<ShardImpl>> Create(const std::string& dir,
                                                           const ShardOptions& options);
  ~ShardImpl() override;

  absl::StatusOr<std::unique_ptr<Reader>> NewReader() override;
  absl::StatusOr<std::unique_ptr<WriteBatch>> NewWriteBatch() override;
  absl::Status Sync() override;
  uint64_t map_size() const override;
  const std::string& dir() const override { return dir_; }

  const ShardDbs& dbs() const { return dbs_; }

  // Begins a read-only transaction that counts as an active reader for map growth: blocks while
  // the map is being resized. End it with EndRead().
  absl::StatusOr<MDB_txn*> BeginRead();
  void EndRead(MDB_txn* txn);

  // Runs `apply` in a write transaction and commits it. If `apply` or the commit fails with
  // MDB_MAP_FULL, aborts, doubles the map (once no reader is active) and runs `apply` again, so
  // `apply` must leave its inputs as it found them. The calling thread must hold no read
  // transaction of this shard. Only one thread may call it at a time (the open batch's, or Open).
  // With `sync` false the commit skips its fsync (see WriteBatch::SkipSync).
  absl::Status Write(absl::FunctionRef<absl::Status(WriteTxn&)> apply, bool sync = true);

  // Called by the open WriteBatch when its Commit() returns or it is destroyed, whichever is
  // first.
  void BatchClosed();

 private:
  ShardImpl(std::string dir, DirClaim claim, MDB_env* env, uint64_t map_size, bool no_sync);

  // Creates the databases and the meta record, or checks the existing meta's schema version.
  absl::Status Init();
  // Doubles the map once no read transaction is active.
  absl::Status Grow();
  // Ends an active read; keeps `reset_txn` (reset, or null) for reuse.
  void LeaveActiveReads(MDB_txn* reset_txn);

  // Reset read transactions kept for reuse: mdb_txn_renew() of one keeps its reader slot, which
  // spares the reader table lock that mdb_txn_begin() takes under MDB_NOTLS.
  static constexpr size_t kMaxIdleReadTxns = 32;

  // Constant after construction.
  const std::string dir_;
  const DirClaim claim_;
  MDB_env* const env_;
  const bool no_sync_;  // Opened with MDB_NOSYNC.
  ShardDbs dbs_;        // Set by Init(), before the shard is returned to anyone.

  // The resize gate: a shared lock in the form of a count, active_reads_, which every read
  // transaction holds from BeginRead to EndRead and Grow() waits to drain. A count rather than a
  // reader-writer mutex held by each Reader, because a Reader may end on another thread than it
  // began on, and both std::shared_mutex and absl::Mutex must be unlocked by their locker.
  //
  // std::mutex rather than absl::Mutex: Debian's Abseil is built without ThreadSanitizer
  // annotations, so TSAN cannot see an absl::Mutex order anything and reports a race on every
  // access it guards; the resize gate below is what the TSAN run of the tests must check.
  mutable std::mutex mu_;
  // Signalled when a resize ends and when the last active read ends during one.
  std::condition_variable cv_;
  // Guarded by mu_.
  int active_reads_ = 0;   // Read transactions begun by BeginRead and not yet ended.
  bool resizing_ = false;  // Grow() is waiting for active_reads_ to reach 0, or resizing.
  uint64_t map_size_;
  bool batch_open_ = false;
  std::vector<MDB_txn*> idle_read_txns_;
};

// The shard's WriteBatch (write_batch.cc); `shard` has marked its batch open.
std::unique_ptr<WriteBatch> NewWriteBatchImpl(ShardImpl* shard);

}  // namespace tally::storage::internal

#endif  // TALLY_SERVER_STORAGE_INTERNAL_SHARD_IMPL_H_
