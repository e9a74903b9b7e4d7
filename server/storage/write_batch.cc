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

// Bytes that live as long as their batch: the keys and values of its pending writes, copied in
// once and viewed from then on. Blocks never move, so views stay valid as the arena grows.
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
    std::memcpy(at, bytes.data(), bytes.size());
    next_ += bytes.size();
    left_ -= bytes.size();
    return std::string_view(at, bytes.size());
  }

 private:
  static constexpr size_t kBlockSize = size_t{1} << 20;
  std::vector<std::unique_ptr<char[]>> blocks_;
  char* next_ = nullptr;
  size_t left_ = 0;
};

// One pending object write: the whole new value, or a delete.
struct PendingObject {
  std::string_view key;    // In the batch's arena.
  std::string_view value;  // In the batch's arena; a stored ObjectRecord (see object_record.h).
  bool deleted = false;
  RecordSummary summary;  // Of `value`.
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
    if (committed_) return Spent();
    if (auto it = index_.find(AbslView(object_key)); it != index_.end()) {
      const PendingObject& object = pending_[it->second];
      if (object.deleted) return std::nullopt;
      std::optional<ObjectData> data(std::in_place);
      // The batch wrote these bytes itself (or checked them in PutObjectBytes).
      if (!ParseObjectRecord(object.value, &*data)) {
        return absl::InternalError(
            absl::StrCat("shard ", shard_->dir(), ": pending object does not parse"));
      }
      return data;
    }
    absl::StatusOr<MDB_txn*> snapshot = Snapshot();
    if (!snapshot.ok()) return snapshot.status();
    return ReadObject(shard_->dbs(), *snapshot, object_key);
  }

  void PutObject(std::string_view object_key, ObjectData data) override {
    // Serialized now rather than at Commit: the batch then holds one form of every object, and a
    // read of it through GetObject costs a parse, as a copy of an ObjectData would.
    scratch_.clear();
    const RecordSummary summary = AppendObjectRecord(data, &scratch_);
    PendingObject& object = Pending(object_key);
    object.value = arena_.Copy(scratch_);
    object.deleted = false;
    object.summary = summary;
  }

  absl::Status PutObjectBytes(std::string_view object_key, std::string_view record) override {
    std::optional<RecordSummary> summary = ScanObjectRecord(record);
    if (!summary.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard ", shard_->dir(), ": object key \"",
                       absl::CHexEscape(AbslView(object_key.substr(0, 100))),
                       "\": value is not a serialized ObjectRecord"));
    }
    if (!summary->votes_canonical) {
      // Votes out of order or doubled: store them as PutObject would.
      ObjectData data;
      if (!ParseObjectRecord(record, &data)) {
        return absl::InvalidArgumentError(
            absl::StrCat("shard ", shard_->dir(), ": object key \"",
                         absl::CHexEscape(AbslView(object_key.substr(0, 100))),
                         "\": value does not parse as an ObjectRecord"));
      }
      PutObject(object_key, std::move(data));
      return absl::OkStatus();
    }
    PendingObject& object = Pending(object_key);
    object.value = arena_.Copy(record);
    object.deleted = false;
    object.summary = *summary;
    return absl::OkStatus();
  }

  void DeleteObject(std::string_view object_key) override {
    PendingObject& object = Pending(object_key);
    object.value = std::string_view();
    object.deleted = true;
    object.summary = RecordSummary();
  }

  void SetMeta(ShardMeta meta) override { meta_ = std::move(meta); }

  absl::StatusOr<ShardMeta> GetMeta() override {
    if (committed_) return Spent();
    if (meta_.has_value()) return *meta_;
    absl::StatusOr<MDB_txn*> snapshot = Snapshot();
    if (!snapshot.ok()) return snapshot.status();
    return ReadMeta(shard_->dbs(), *snapshot);
  }

  size_t size() const override { return pending_.size(); }

  void SkipSync() override { sync_ = false; }

  absl::Status Commit() override;

 private:
  // The pending write of `object_key`, created (as a delete) if there is none.
  PendingObject& Pending(std::string_view object_key) {
    // Copy first and waste the copy on a hit: one hash lookup either way, and the index's key
    // must point at bytes that live as long as the batch.
    const std::string_view key = arena_.Copy(object_key);
    auto [it, inserted] = index_.try_emplace(AbslView(key), pending_.size());
    if (inserted) pending_.push_back({key, std::string_view(), true, RecordSummary()});
    return pending_[it->second];
  }

  // The read transaction behind GetObject and GetMeta. Begun on first use rather than when the
  // batch is opened: no other batch can commit while this one is open, so the snapshot is the
  // same either way, and a batch that only writes (a restore) never holds a reader slot.
  absl::StatusOr<MDB_txn*> Snapshot();
  void ReleaseSnapshot();
  // INVALID_ARGUMENT if a key breaks the rules in shard.h; checked before the transaction so
  // that LMDB never sees a bad key (it would fail with MDB_BAD_VALSIZE, or worse, misfile it).
  absl::Status Validate() const;
  // A pending object to sort by key; `head` is KeyHead(key).
  struct SortedObject {
    uint64_t head;
    const PendingObject* object;
  };
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
  Arena arena_;
  // The pending object writes, one per key, in the order of their first write, and their index
  // by key (a view into the arena).
  std::vector<PendingObject> pending_;
  absl::flat_hash_map<absl::string_view, size_t> index_;
  std::optional<ShardMeta> meta_;
  std::string scratch_;  // PutObject's serialization buffer.
};

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

absl::Status WriteBatchImpl::Validate() const {
  auto invalid = [this](std::string_view object_key, std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", shard_->dir(), ": object key \"",
                     absl::CHexEscape(AbslView(object_key.substr(0, 100))), "\": ", AbslView(why)));
  };
  for (const PendingObject& object : pending_) {
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
  absl::Status status = Validate();
  if (status.ok()) {
    // Key order: neighbouring writes touch the same B-tree pages, and writes past the end of a
    // database can append; in hash order every write would search from the root.
    std::vector<SortedObject> objects;
    objects.reserve(pending_.size());
    for (const PendingObject& object : pending_) objects.push_back({KeyHead(object.key), &object});
    std::sort(objects.begin(), objects.end(), [](const SortedObject& a, const SortedObject& b) {
      if (a.head != b.head) return a.head < b.head;
      return a.object->key < b.object->key;
    });
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

}  // namespace tally::storage::internal
