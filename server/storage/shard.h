#ifndef TALLY_SERVER_STORAGE_SHARD_H_
#define TALLY_SERVER_STORAGE_SHARD_H_

// A Shard is the local store of one (scenario, partition): one LMDB environment in one directory,
// with the databases
//   objects: object_key                      -> tally.records.v1.ObjectRecord (state and votes)
//   expiry:  be64(earliest expires_at_ms) object_key -> ""  (index for the expiry task)
//   meta:    "meta"                          -> tally.records.v1.ShardMeta
// One entry per object in each (schema version 2; version 1 had an entry per vote in `reports`
// and in `expiry`): a restore writes the changelog's record of an object as it comes, two puts
// per object instead of 2 + 2 per vote. An object's expiry entry is at the earliest expiry of
// its votes (none without votes), using max(expires_at_ms, 0), so a negative expiry counts as
// already expired. An ObjectRecord's source_offset and changes_offset are not part of the object:
// they are kept as PutObjectBytes got them and ignored.
// Object keys must be non-empty and must not contain '\0', and every vote must satisfy
// object_key.size() + agent_id.size() <= kMaxObjectAndAgentIdSize (callers validate this; Commit()
// rejects a batch that breaks it with INVALID_ARGUMENT).
//
// Writes are buffered in a WriteBatch and applied in one LMDB transaction by Commit(). This keeps
// the LMDB write lock short and lets Commit() grow the map on MDB_MAP_FULL and re-apply the batch,
// so a full map never fails a write (the processor commits a shard only after its Kafka
// transaction committed, and must not fail then).
//
// Readers (any thread, concurrently with the writer) see committed snapshots only: MDB_NOTLS.
//
// Thread safety: a Shard is safe for concurrent use. At most one WriteBatch may be open at a time
// (the processor's thread); Reader objects may be created and used from any thread. Every Reader
// and WriteBatch must be destroyed before its Shard. A directory may be open in at most one Shard
// per process (LMDB's rule); a second Open of it fails with FAILED_PRECONDITION.
//
// Errors name the shard's directory and the LMDB operation, with codes chosen by what the caller
// should do: UNAVAILABLE (environmental: disk full, I/O error, reader table full; retry later, with
// a new batch for Commit), DATA_LOSS (the files are damaged: rebuild the shard from the changelog),
// FAILED_PRECONDITION (wrong schema version, permissions, incompatible files, a second open batch:
// fix before retrying), INVALID_ARGUMENT (a key that breaks the rules above), RESOURCE_EXHAUSTED
// (a batch too large for one LMDB transaction: commit smaller ones), INTERNAL (a bug, or LMDB's
// MDB_PANIC: close and reopen the shard).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tally/records/v1/records.pb.h"

namespace tally::storage {

struct ShardOptions {
  // Initial LMDB map size; doubled whenever a commit finds the map full.
  uint64_t initial_map_size = uint64_t{1} << 30;
  // Skip fsync on commit (restore does this and syncs once at the end with Sync()).
  bool no_sync = false;
  // LMDB reader table size: the most Readers (plus the open WriteBatch) alive at once. Beyond it
  // NewReader() fails with UNAVAILABLE.
  uint32_t max_readers = 512;
};

// Largest object_key.size() + agent_id.size() of a vote: LMDB's 511-byte key limit less the expiry
// key's 8-byte time and '\0' separator. Object keys alone are bounded by the same number.
inline constexpr size_t kMaxObjectAndAgentIdSize = 502;

// The whole of one object: what the changelog carries and the processor's unit of work.
struct ObjectData {
  records::v1::StoredState state;
  std::vector<records::v1::Vote> votes;  // sorted by agent_id
};

class Shard;
class StagedObjects;
namespace internal {
struct StagedWrites;
StagedWrites& WritesOf(StagedObjects& staged);
}  // namespace internal

// Object writes staged outside any WriteBatch, for WriteBatch::PutStaged to take over without a
// copy: one thread can check and copy the records of the next batch while another commits the
// previous one (which a WriteBatch, one open at a time, cannot do). A restore's pipeline.
// Movable; not thread-safe, but it may move between threads.
class StagedObjects {
 public:
  StagedObjects();
  ~StagedObjects();
  StagedObjects(StagedObjects&& other) noexcept;
  StagedObjects& operator=(StagedObjects&& other) noexcept;

  // As WriteBatch::PutObjectBytes (errors name no shard: the objects belong to none yet).
  absl::Status PutObjectBytes(std::string_view object_key, std::string_view record);
  // As WriteBatch::DeleteObject.
  void DeleteObject(std::string_view object_key);
  // Writes staged; a key written twice counts twice.
  size_t size() const;
  // Memory the staged writes take, roughly (their keys and values and a little more each).
  size_t bytes() const;
  // The largest source_offset of the records staged with PutObjectBytes; -1 if none.
  int64_t max_source_offset() const;
  // The largest changes_offset of the records staged with PutObjectBytes; -1 if none.
  int64_t max_changes_offset() const;

 private:
  friend internal::StagedWrites& internal::WritesOf(StagedObjects& staged);
  std::unique_ptr<internal::StagedWrites> writes_;
};

// A consistent read-only snapshot of a shard (an LMDB read transaction). Cheap to create; hold it
// only briefly: a long-lived reader pins old pages, and it blocks map growth.
//
// Map growth: LMDB may only resize the map while no transaction is active in the process, so every
// live Reader holds a shared claim on the shard, and a Commit() that finds the map full waits until
// all Readers are destroyed, then resizes. While it waits, NewReader() blocks. Hence: never hold a
// Reader on the thread that calls Commit(), and never hold one Reader while creating another;
// either can deadlock once the map is full.
//
// A Reader may move between threads but is not itself thread-safe: use it from one thread at a
// time. Strings and messages it returns are copies; they outlive the Reader.
class Reader {
 public:
  virtual ~Reader() = default;
  virtual absl::StatusOr<std::optional<records::v1::StoredState>> GetState(
      std::string_view object_key) = 0;
  virtual absl::StatusOr<std::optional<ObjectData>> GetObject(std::string_view object_key) = 0;
  // Up to `limit` states with key > `after` (or >= `after` if `inclusive`) and starting with
  // `prefix`, in key order. `after` empty: from the first key with the prefix.
  virtual absl::StatusOr<std::vector<std::pair<std::string, records::v1::StoredState>>> Scan(
      std::string_view prefix, std::string_view after, bool inclusive, size_t limit) = 0;
  // The same with the whole objects (state and votes), for callers that need the votes: one read
  // of each value instead of a Scan and a GetObject per key.
  virtual absl::StatusOr<std::vector<std::pair<std::string, ObjectData>>> ScanObjects(
      std::string_view prefix, std::string_view after, bool inclusive, size_t limit) = 0;
  // Keys of objects with a vote whose expires_at_ms <= now_ms, earliest first, at most `limit`,
  // without duplicates.
  virtual absl::StatusOr<std::vector<std::string>> ExpiredObjects(int64_t now_ms, size_t limit) = 0;
  virtual absl::StatusOr<records::v1::ShardMeta> GetMeta() = 0;
  // Number of objects with a state (for tests and metrics).
  virtual absl::StatusOr<uint64_t> CountStates() = 0;
};

// Buffered writes to one shard. Reads through a batch see its own pending writes over the
// committed snapshot taken when it was opened. Used from one thread at a time. Destroying a batch
// without Commit() discards its writes. A batch is open from NewWriteBatch() until its Commit()
// returns or it is destroyed, whichever comes first.
class WriteBatch {
 public:
  virtual ~WriteBatch() = default;
  virtual absl::StatusOr<std::optional<ObjectData>> GetObject(std::string_view object_key) = 0;
  // The same as a serialized tally.records.v1.ObjectRecord, as the batch would store it (votes
  // sorted by agent_id), without a parse: the processor's changelog record of the object.
  virtual absl::StatusOr<std::optional<std::string>> GetObjectBytes(
      std::string_view object_key) = 0;
  // Replaces the object: its state and its whole set of votes (expiry index kept in step). Votes
  // need not be sorted; of two votes of one agent the later one is kept.
  virtual void PutObject(std::string_view object_key, ObjectData data) = 0;
  // The same from a serialized tally.records.v1.ObjectRecord (a changelog record's value), which
  // is stored as it is when its votes are sorted by agent_id without duplicates (as the processor
  // writes them), and otherwise as PutObject would store what it parses to: no parse and no
  // re-serialization on the restore path. Only the framing of `record` and of its votes is
  // checked here; a record that passes and still does not parse (a bad state, a string that is
  // not UTF-8) is stored, and reads of the object then fail with DATA_LOSS. INVALID_ARGUMENT if
  // the framing is broken; the batch is then unchanged. Keys are checked by Commit() as for
  // PutObject.
  virtual absl::Status PutObjectBytes(std::string_view object_key, std::string_view record) = 0;
  // Removes the object, its votes and their expiry entries.
  virtual void DeleteObject(std::string_view object_key) = 0;
  // Makes the writes of `staged`, in the order they were staged, after those already in the
  // batch (a later write to a key replaces an earlier one). Takes them over without a copy.
  virtual void PutStaged(StagedObjects staged) = 0;
  virtual void SetMeta(records::v1::ShardMeta meta) = 0;
  virtual absl::StatusOr<records::v1::ShardMeta> GetMeta() = 0;
  // Number of pending object writes.
  virtual size_t size() const = 0;
  // Makes Commit() leave this batch's flush to disk to the OS (no fsync), for bulk loads such as
  // a restore, which then call Shard::Sync() once at the end: a flush per commit costs more than
  // the commit. Until that Sync a system crash (not a process crash) may lose such commits, or,
  // on a file system that reorders writes, damage the shard (reads then fail with DATA_LOSS:
  // rebuild it from the changelog). A commit with sync flushes the earlier ones too.
  virtual void SkipSync() = 0;
  // Applies everything in one LMDB transaction. On MDB_MAP_FULL grows the map (waiting for
  // readers to finish) and retries. Returns a non-OK status only for I/O errors and for keys that
  // break the rules at the top of this file; the shard is then unchanged. Either way the batch is
  // spent: GetObject, GetMeta and Commit return FAILED_PRECONDITION, and the next batch may be
  // opened at once, before this one is destroyed.
  //
  // Cost: a commit copies every B-tree page it touches, so a restore, whose keys are spread over
  // the whole shard, should commit large batches (with no_sync, then one Sync()); but not beyond
  // LMDB's limit of dirty pages in one transaction (~512 MiB), past which it spills pages and
  // slows down. Writes past the current end of a database (a restore into an empty shard) are
  // appended.
  virtual absl::Status Commit() = 0;
};

class Shard {
 public:
  virtual ~Shard() = default;
  // Opens or creates the shard in `dir` (created if missing). Fails with FAILED_PRECONDITION if
  // the directory holds a shard of another schema version. A new shard starts with meta
  // {schema_version = kShardSchemaVersion}. An existing shard keeps the larger of its recorded map
  // size and options.initial_map_size.
  static absl::StatusOr<std::unique_ptr<Shard>> Open(const std::string& dir,
                                                     const ShardOptions& options);
  virtual absl::StatusOr<std::unique_ptr<Reader>> NewReader() = 0;
  // At most one open batch at a time (see WriteBatch): FAILED_PRECONDITION while another is.
  virtual absl::StatusOr<std::unique_ptr<WriteBatch>> NewWriteBatch() = 0;
  // Flushes to disk (after writes made with no_sync).
  virtual absl::Status Sync() = 0;
  // Current LMDB map size in bytes.
  virtual uint64_t map_size() const = 0;
  virtual const std::string& dir() const = 0;
};

inline constexpr int32_t kShardSchemaVersion = 2;

}  // namespace tally::storage

#endif  // TALLY_SERVER_STORAGE_SHARD_H_
