// The shard's WriteBatch: writes buffered in memory and applied in one LMDB write transaction.

#include <lmdb.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/storage/internal/keys.h"
#include "server/storage/internal/object_record.h"
#include "server/storage/internal/reads.h"
#include "server/storage/internal/shard_impl.h"
#include "server/storage/internal/staged_writes.h"
#include "server/storage/shard.h"

namespace tally::storage::internal {
namespace {

using records::v1::ShardMeta;

// The first 8 bytes of `key`, big-endian, zero-padded. Comparing heads orders keys as their
// bytes do, except for ties, and takes no trip to the key's memory: it makes sorting the
// million keys of a restore batch several times faster. (A shorter key padded with zeros sorts
// before a longer one with the same bytes, as it should, because keys hold no '\0'.)
uint64_t KeyHead(std::string_view key) {
  uint64_t head = 0;
  for (size_t i = 0; i < sizeof(head); ++i) {
    head = (head << 8) | (i < key.size() ? static_cast<unsigned char>(key[i]) : 0);
  }
  return head;
}

// The last key a database held when the write transaction began. A key after it has no stored
// entry to replace, and keys after it that arrive in ascending order can go in with MDB_APPEND,
// which skips the B-tree search and leaves full pages behind: what makes a restore fast.
class AppendPoint {
 public:
  absl::Status Init(WriteTxn& txn, MDB_cursor* cursor, std::string_view db_name) {
    after_ = false;
    last_.clear();
    MDB_val key;
    MDB_val value;
    const int rc = mdb_cursor_get(cursor, &key, &value, MDB_LAST);
    if (rc == MDB_NOTFOUND) {
      after_ = true;  // An empty database: everything is after its end.
      return absl::OkStatus();
    }
    if (rc != MDB_SUCCESS) {
      return txn.Fail(absl::StrCat("mdb_cursor_get(", AbslView(db_name), ", MDB_LAST)"), rc);
    }
    last_.assign(FromVal(key));
    return absl::OkStatus();
  }

  // Whether `key` is after the database's initial end. Keys must come in ascending order; once
  // one is after the end, so are all later ones. (Deletes in between only lower the real end.)
  bool After(std::string_view key) {
    if (!after_) after_ = key > last_;
    return after_;
  }

 private:
  std::string last_;
  bool after_ = false;
};

// An expiry entry to write, for the object `key`, whose KeyHead is `head`.
struct ExpiryPut {
  uint64_t time;
  uint64_t head;
  std::string_view key;
};

// Applies object writes, given in ascending key order, in one write transaction, keeping
// `objects` and `expiry` in step. Each database is written through one cursor, so LMDB never has
// to fix up a second cursor after a change. Must be destroyed before the transaction ends (LMDB
// frees a write transaction's cursors itself).
class ObjectWriter {
 public:
  // `expiry_puts` is a buffer kept across the attempts of one commit.
  ObjectWriter(WriteTxn& txn, std::vector<ExpiryPut>& expiry_puts)
      : txn_(txn), dbs_(txn.dbs()), expiry_puts_(expiry_puts) {}

  absl::Status Init();
  // Makes the object what `object` says. Keys must be ascending and distinct across calls.
  absl::Status Write(const PendingObject& object, uint64_t head);
  // Writes the expiry entries that Write() collected.
  absl::Status Finish();

 private:
  WriteTxn& txn_;
  const ShardDbs& dbs_;
  std::vector<ExpiryPut>& expiry_puts_;
  std::string expiry_key_;
  CursorPtr objects_;
  CursorPtr expiry_;
  AppendPoint objects_end_;
  AppendPoint expiry_end_;
};

absl::Status ObjectWriter::Init() {
  expiry_puts_.clear();
  const std::tuple<CursorPtr*, AppendPoint*, MDB_dbi, const char*> dbs[] = {
      {&objects_, &objects_end_, dbs_.objects, "objects"},
      {&expiry_, &expiry_end_, dbs_.expiry, "expiry"},
  };
  for (const auto& [cursor, end, dbi, name] : dbs) {
    absl::StatusOr<CursorPtr> opened = OpenCursor(dbs_, txn_.txn(), dbi, name);
    if (!opened.ok()) return opened.status();
    *cursor = std::move(*opened);
    if (absl::Status status = end->Init(txn_, cursor->get(), name); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ObjectWriter::Write(const PendingObject& object, uint64_t head) {
  // The stored object's expiry entry, if it has one. A key past the end of `objects` has no
  // stored object: a restore into an empty shard never searches the tree.
  const bool new_object = objects_end_.After(object.key);
  bool stored = false;
  // (GCC 12 warns of optional<uint64_t> in comparisons here, wrongly: plain pairs instead.)
  bool has_old_expiry = false;
  uint64_t old_expiry = 0;
  if (!new_object) {
    MDB_val key = ToVal(object.key);
    MDB_val value;
    const int rc = mdb_cursor_get(objects_.get(), &key, &value, MDB_SET_KEY);
    if (rc == MDB_SUCCESS) {
      stored = true;
      const std::optional<RecordSummary> old = ScanObjectRecord(FromVal(value));
      if (!old.has_value()) return UnparseableValue(dbs_, "objects", object.key, "ObjectRecord");
      has_old_expiry = old->min_expiry.has_value();
      old_expiry = old->min_expiry.value_or(0);
    } else if (rc != MDB_NOTFOUND) {
      return txn_.Fail("mdb_cursor_get(objects)", rc);
    }
  }

  const bool has_new_expiry = !object.deleted && object.summary.min_expiry.has_value();
  const uint64_t new_expiry = object.summary.min_expiry.value_or(0);
  if (object.deleted) {
    if (stored) {
      if (const int rc = mdb_cursor_del(objects_.get(), 0); rc != MDB_SUCCESS) {
        return txn_.Fail("mdb_cursor_del(objects)", rc);
      }
    }
  } else {
    MDB_val key = ToVal(object.key);
    MDB_val value = ToVal(object.value);
    if (const int rc = mdb_cursor_put(objects_.get(), &key, &value, new_object ? MDB_APPEND : 0);
        rc != MDB_SUCCESS) {
      return txn_.Fail("mdb_cursor_put(objects)", rc);
    }
  }
  // Most replacements keep the object's earliest expiry (its state changed, or a later vote did):
  // then its expiry entry stays as it is.
  if (has_old_expiry == has_new_expiry && old_expiry == new_expiry) return absl::OkStatus();
  if (has_old_expiry) {
    SetExpiryKey(old_expiry, object.key, &expiry_key_);
    if (absl::Status s = txn_.CursorDelete(expiry_.get(), "expiry", expiry_key_); !s.ok()) {
      return s;
    }
  }
  // Deferred to Finish(): in time order the inserts touch neighbouring pages, where in object
  // order every one would land on a random page of the index. Deferring is safe because no
  // delete of this commit can hit a key put here: an object occurs once per batch, and its
  // deleted entry differs from the put one in time.
  if (has_new_expiry) expiry_puts_.push_back({new_expiry, head, object.key});
  return absl::OkStatus();
}

absl::Status ObjectWriter::Finish() {
  std::sort(expiry_puts_.begin(), expiry_puts_.end(), [](const ExpiryPut& a, const ExpiryPut& b) {
    if (a.time != b.time) return a.time < b.time;
    if (a.head != b.head) return a.head < b.head;
    return a.key < b.key;
  });
  for (const ExpiryPut& put : expiry_puts_) {
    SetExpiryKey(put.time, put.key, &expiry_key_);
    absl::Status status = txn_.CursorPutEmpty(expiry_.get(), "expiry", expiry_key_,
                                              expiry_end_.After(expiry_key_) ? MDB_APPEND : 0);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

class WriteBatchImpl final : public WriteBatch {
 public:
  explicit WriteBatchImpl(ShardImpl* shard) : shard_(shard) {}
  WriteBatchImpl(const WriteBatchImpl&) = delete;
  WriteBatchImpl& operator=(const WriteBatchImpl&) = delete;
  ~WriteBatchImpl() override {
    ReleaseSnapshot();
    if (!committed_) shard_->BatchClosed();
  }

  absl::StatusOr<std::optional<ObjectData>> GetObject(std::string_view object_key) override {
    absl::StatusOr<std::optional<std::string_view>> bytes = FindObjectBytes(object_key);
    if (!bytes.ok()) return bytes.status();
    if (!bytes->has_value()) return std::nullopt;
    std::optional<ObjectData> data(std::in_place);
    // Pending bytes were serialized by the batch itself or checked by PutObjectBytes; stored ones
    // by a commit.
    if (!ParseObjectRecord(**bytes, &*data)) {
      return UnparseableValue(shard_->dbs(), "objects", object_key, "ObjectRecord");
    }
    return data;
  }

  absl::StatusOr<std::optional<std::string>> GetObjectBytes(std::string_view object_key) override {
    absl::StatusOr<std::optional<std::string_view>> bytes = FindObjectBytes(object_key);
    if (!bytes.ok()) return bytes.status();
    if (!bytes->has_value()) return std::nullopt;
    return std::string(**bytes);
  }

  void PutObject(std::string_view object_key, ObjectData data) override {
    StageObject(object_key, data, writes_);
  }

  absl::Status PutObjectBytes(std::string_view object_key, std::string_view record) override {
    return StageObjectBytes(shard_->dir(), object_key, record, writes_);
  }

  void DeleteObject(std::string_view object_key) override { writes_.Delete(object_key); }

  void PutStaged(StagedObjects staged) override { writes_.Append(WritesOf(staged)); }

  void SetMeta(ShardMeta meta) override { meta_ = std::move(meta); }

  absl::StatusOr<ShardMeta> GetMeta() override {
    if (committed_) return Spent();
    if (meta_.has_value()) return *meta_;
    absl::StatusOr<MDB_txn*> snapshot = Snapshot();
    if (!snapshot.ok()) return snapshot.status();
    return ReadMeta(shard_->dbs(), *snapshot);
  }

  size_t size() const override {
    IndexWrites();
    return index_.size();
  }

  void SkipSync() override { sync_ = false; }

  absl::Status Commit() override;

 private:
  // Brings the index up to date with writes_. Lazy, so that a batch that is only written to (a
  // restore) never hashes a key: its commit resolves repeated keys by sorting, which it does
  // anyway.
  void IndexWrites() const {
    for (; indexed_ < writes_.writes.size(); ++indexed_) {
      index_.insert_or_assign(AbslView(writes_.writes[indexed_].key), indexed_);
    }
  }

  // The object's value: that of its last pending write, else the stored one in the snapshot; valid
  // until Commit() or the batch's destruction. nullopt if it has none.
  absl::StatusOr<std::optional<std::string_view>> FindObjectBytes(std::string_view object_key);

  // The read transaction behind GetObject and GetMeta. Begun on first use rather than when the
  // batch is opened: no other batch can commit while this one is open, so the snapshot is the
  // same either way, and a batch that only writes (a restore) never holds a reader slot.
  absl::StatusOr<MDB_txn*> Snapshot();
  void ReleaseSnapshot();
  // A pending object to sort by key; `head` is KeyHead(object->key).
  struct SortedObject {
    uint64_t head;
    const PendingObject* object;
  };
  // The last write of every key, in key order.
  std::vector<SortedObject> LastWritesByKey() const;
  // INVALID_ARGUMENT if a key breaks the rules in shard.h; checked before the transaction so
  // that LMDB never sees a bad key (it would fail with MDB_BAD_VALSIZE, or worse, misfile it).
  absl::Status Validate(const std::vector<SortedObject>& objects) const;
  absl::Status Apply(WriteTxn& txn, const std::vector<SortedObject>& objects,
                     std::vector<ExpiryPut>& expiry_puts);
  absl::Status Spent() const {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", shard_->dir(), ": WriteBatch used after Commit"));
  }

  ShardImpl* const shard_;
  MDB_txn* snapshot_ = nullptr;
  // Commit() was called; the shard's one batch slot is free again.
  bool committed_ = false;
  bool sync_ = true;  // See SkipSync().
  StagedWrites writes_;
  // The position in writes_.writes of the last write of each key (a view into the arena) among
  // the first indexed_ writes.
  mutable absl::flat_hash_map<absl::string_view, size_t> index_;
  mutable size_t indexed_ = 0;
  std::optional<ShardMeta> meta_;
};

absl::StatusOr<std::optional<std::string_view>> WriteBatchImpl::FindObjectBytes(
    std::string_view object_key) {
  if (committed_) return Spent();
  IndexWrites();
  if (auto it = index_.find(AbslView(object_key)); it != index_.end()) {
    const PendingObject& object = writes_.writes[it->second];
    if (object.deleted) return std::nullopt;
    return object.value;
  }
  absl::StatusOr<MDB_txn*> snapshot = Snapshot();
  if (!snapshot.ok()) return snapshot.status();
  return ReadObjectBytes(shard_->dbs(), *snapshot, object_key);
}

absl::StatusOr<MDB_txn*> WriteBatchImpl::Snapshot() {
  if (snapshot_ == nullptr) {
    absl::StatusOr<MDB_txn*> txn = shard_->BeginRead();
    if (!txn.ok()) return txn.status();
    snapshot_ = *txn;
  }
  return snapshot_;
}

void WriteBatchImpl::ReleaseSnapshot() {
  if (snapshot_ != nullptr) shard_->EndRead(std::exchange(snapshot_, nullptr));
}

std::vector<WriteBatchImpl::SortedObject> WriteBatchImpl::LastWritesByKey() const {
  // Key order: neighbouring writes touch the same B-tree pages, and writes past the end of a
  // database can append; in hash order every write would search from the root. Writes of one key
  // sort by their position (their address in the vector), so the last of a run is the latest.
  std::vector<SortedObject> objects;
  objects.reserve(writes_.writes.size());
  for (const PendingObject& object : writes_.writes) {
    objects.push_back({KeyHead(object.key), &object});
  }
  std::sort(objects.begin(), objects.end(), [](const SortedObject& a, const SortedObject& b) {
    if (a.head != b.head) return a.head < b.head;
    if (const int order = a.object->key.compare(b.object->key); order != 0) return order < 0;
    return a.object < b.object;
  });
  size_t kept = 0;
  for (size_t i = 0; i < objects.size(); ++i) {
    if (i + 1 < objects.size() && objects[i + 1].object->key == objects[i].object->key) continue;
    objects[kept++] = objects[i];
  }
  objects.resize(kept);
  return objects;
}

absl::Status WriteBatchImpl::Validate(const std::vector<SortedObject>& objects) const {
  auto invalid = [this](std::string_view object_key, std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", shard_->dir(), ": object key \"",
                     absl::CHexEscape(AbslView(object_key.substr(0, 100))), "\": ", AbslView(why)));
  };
  for (const SortedObject& sorted : objects) {
    const PendingObject& object = *sorted.object;
    const std::string_view key = object.key;
    if (key.empty()) return invalid(key, "empty");
    if (key.find(kKeySeparator) != std::string::npos) return invalid(key, "has \\0");
    if (key.size() > kMaxObjectAndAgentIdSize) {
      return invalid(key, absl::StrCat("longer than ", kMaxObjectAndAgentIdSize, " bytes"));
    }
    if (key.size() + object.summary.max_agent_id_size > kMaxObjectAndAgentIdSize) {
      return invalid(
          key, absl::StrCat("with an agent_id of ", object.summary.max_agent_id_size,
                            " bytes: longer than ", kMaxObjectAndAgentIdSize, " bytes together"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteBatchImpl::Commit() {
  if (committed_) return Spent();
  committed_ = true;
  // Write() resizes the map only once no read transaction is active, ours included.
  ReleaseSnapshot();
  const std::vector<SortedObject> objects = LastWritesByKey();
  absl::Status status = Validate(objects);
  if (status.ok()) {
    std::vector<ExpiryPut> expiry_puts;
    status = shard_->Write([&](WriteTxn& txn) { return Apply(txn, objects, expiry_puts); }, sync_);
  }
  // Free the slot only now: the next batch's snapshot must not be taken before this commit.
  shard_->BatchClosed();
  return status;
}

absl::Status WriteBatchImpl::Apply(WriteTxn& txn, const std::vector<SortedObject>& objects,
                                   std::vector<ExpiryPut>& expiry_puts) {
  {
    ObjectWriter writer(txn, expiry_puts);
    absl::Status status = writer.Init();
    for (size_t i = 0; status.ok() && i < objects.size(); ++i) {
      status = writer.Write(*objects[i].object, objects[i].head);
    }
    if (status.ok()) status = writer.Finish();
    if (!status.ok()) return status;
  }
  if (meta_.has_value()) return txn.Put(shard_->dbs().meta, "meta", kMetaKey, *meta_);
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<WriteBatch> NewWriteBatchImpl(ShardImpl* shard) {
  return std::make_unique<WriteBatchImpl>(shard);
}

void StagedWrites::Append(StagedWrites& other) {
  if (writes.empty()) {
    std::swap(*this, other);  // The common case: a batch that holds one StagedObjects.
  } else {
    arena.Adopt(other.arena);
    writes.insert(writes.end(), other.writes.begin(), other.writes.end());
    max_source_offset = std::max(max_source_offset, other.max_source_offset);
    max_changes_offset = std::max(max_changes_offset, other.max_changes_offset);
    bytes += other.bytes;
  }
  other.writes.clear();
  other.max_source_offset = -1;
  other.max_changes_offset = -1;
  other.bytes = 0;
}

absl::Status StageObjectBytes(std::string_view dir, std::string_view object_key,
                              std::string_view record, StagedWrites& writes) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir.empty() ? "" : absl::StrCat("shard ", AbslView(dir), ": "), "object key \"",
        absl::CHexEscape(AbslView(object_key.substr(0, 100))), "\": ", AbslView(why)));
  };
  const std::optional<RecordSummary> summary = ScanObjectRecord(record);
  if (!summary.has_value()) return invalid("value is not a serialized ObjectRecord");
  if (summary->votes_canonical) {
    writes.Put(object_key, record, *summary);
  } else {
    // Votes out of order or doubled: store them as PutObject would.
    ObjectData data;
    if (!ParseObjectRecord(record, &data)) {
      return invalid("value does not parse as an ObjectRecord");
    }
    StageObject(object_key, data, writes);
  }
  writes.max_source_offset = std::max(writes.max_source_offset, summary->source_offset);
  writes.max_changes_offset = std::max(writes.max_changes_offset, summary->changes_offset);
  return absl::OkStatus();
}

void StageObject(std::string_view object_key, const ObjectData& data, StagedWrites& writes) {
  // Serialized now rather than at Commit: the batch then holds one form of every object, and a
  // read of it through GetObject costs a parse, as a copy of an ObjectData would.
  thread_local std::string scratch;
  scratch.clear();
  const RecordSummary summary = AppendObjectRecord(data, &scratch);
  writes.Put(object_key, scratch, summary);
}

StagedWrites& WritesOf(StagedObjects& staged) { return *staged.writes_; }

}  // namespace tally::storage::internal

namespace tally::storage {

StagedObjects::StagedObjects() : writes_(std::make_unique<internal::StagedWrites>()) {}
StagedObjects::~StagedObjects() = default;
StagedObjects::StagedObjects(StagedObjects&& other) noexcept
    : writes_(std::exchange(other.writes_, std::make_unique<internal::StagedWrites>())) {}
StagedObjects& StagedObjects::operator=(StagedObjects&& other) noexcept {
  writes_.swap(other.writes_);
  return *this;
}

absl::Status StagedObjects::PutObjectBytes(std::string_view object_key, std::string_view record) {
  return internal::StageObjectBytes("", object_key, record, *writes_);
}

void StagedObjects::DeleteObject(std::string_view object_key) { writes_->Delete(object_key); }

size_t StagedObjects::size() const { return writes_->writes.size(); }

size_t StagedObjects::bytes() const { return writes_->bytes; }

int64_t StagedObjects::max_source_offset() const { return writes_->max_source_offset; }
int64_t StagedObjects::max_changes_offset() const { return writes_->max_changes_offset; }

}  // namespace tally::storage
