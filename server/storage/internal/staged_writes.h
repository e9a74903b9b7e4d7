#ifndef TALLY_SERVER_STORAGE_INTERNAL_STAGED_WRITES_H_
#define TALLY_SERVER_STORAGE_INTERNAL_STAGED_WRITES_H_

// Object writes held in memory until a commit: what a WriteBatch and a StagedObjects hold.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "server/storage/internal/object_record.h"
#include "server/storage/shard.h"

namespace tally::storage::internal {

// Bytes that live as long as their owner: the keys and values of pending writes, copied in once
// and viewed from then on. Blocks never move, so views stay valid as the arena grows and when its
// blocks are taken over by another arena.
class Arena {
 public:
  std::string_view Copy(std::string_view bytes) {
    if (bytes.size() > left_) {
      const size_t size = std::max(kBlockSize, bytes.size());
      blocks_.push_back(std::make_unique<char[]>(size));
      next_ = blocks_.back().get();
      left_ = size;
    }
    char* at = next_;
    if (!bytes.empty()) std::memcpy(at, bytes.data(), bytes.size());
    next_ += bytes.size();
    left_ -= bytes.size();
    return std::string_view(at, bytes.size());
  }

  // Takes over the blocks of `other` (views into them stay valid); `other` is left empty.
  void Adopt(Arena& other) {
    for (auto& block : other.blocks_) blocks_.push_back(std::move(block));
    other.blocks_.clear();
    other.next_ = nullptr;
    other.left_ = 0;
  }

 private:
  static constexpr size_t kBlockSize = size_t{1} << 20;
  std::vector<std::unique_ptr<char[]>> blocks_;
  char* next_ = nullptr;
  size_t left_ = 0;
};

// One object write: the whole new value, or a delete.
struct PendingObject {
  std::string_view key;    // In the owner's arena.
  std::string_view value;  // In the owner's arena; a stored ObjectRecord (see object_record.h).
  bool deleted = false;
  RecordSummary summary;  // Of `value`.
};

// Object writes in the order they were made; a later write to a key replaces an earlier one
// (resolved when they are committed, so that staging never hashes a key).
struct StagedWrites {
  Arena arena;
  std::vector<PendingObject> writes;
  int64_t max_source_offset = -1;
  int64_t max_changes_offset = -1;
  size_t bytes = 0;  // Of keys, values and writes.

  void Put(std::string_view key, std::string_view value, const RecordSummary& summary) {
    writes.push_back({arena.Copy(key), arena.Copy(value), false, summary});
    bytes += key.size() + value.size() + sizeof(PendingObject);
  }
  void Delete(std::string_view key) {
    writes.push_back({arena.Copy(key), std::string_view(), true, RecordSummary()});
    bytes += key.size() + sizeof(PendingObject);
  }
  // Adds `other`'s writes after these; `other` is left empty.
  void Append(StagedWrites& other);
};

// PutObjectBytes of WriteBatch and StagedObjects: see shard.h. `dir` names the shard in errors
// (empty for a StagedObjects, which belongs to none yet).
absl::Status StageObjectBytes(std::string_view dir, std::string_view object_key,
                              std::string_view record, StagedWrites& writes);
// PutObject of WriteBatch.
void StageObject(std::string_view object_key, const ObjectData& data, StagedWrites& writes);

// The writes of a StagedObjects (defined in write_batch.cc).
StagedWrites& WritesOf(StagedObjects& staged);

}  // namespace tally::storage::internal

#endif  // TALLY_SERVER_STORAGE_INTERNAL_STAGED_WRITES_H_
