// The shard's WriteBatch: writes buffered in memory and applied in one LMDB write transaction.

#include <lmdb.h>

#include <algorithm>
#include <deque>
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
#include "server/storage/internal/reads.h"
#include "server/storage/internal/shard_impl.h"
#include "server/storage/shard.h"

namespace tally::storage::internal {
namespace {

using records::v1::ShardMeta;
using records::v1::Vote;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool ByAgentId(const Vote* a, const Vote* b) { return a->agent_id() < b->agent_id(); }

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

// Buffers that every object of a commit reuses, so that a large batch (a restore) allocates
// almost nothing per object. Kept across the attempts of one commit.
struct ApplyBuffers {
  struct OldVote {
    std::string agent_id;
    int64_t expires_at_ms = 0;
  };
  // An expiry entry to write: be64(time) followed by arena[offset, offset + size), whose
  // KeyHead is `head`.
  struct ExpiryPut {
    uint64_t time;
    uint64_t head;
    size_t offset;
    size_t size;
  };

  std::string prefix;      // object_key '\0'
  std::string report_key;  // object_key '\0' agent_id
  std::string expiry_key;
  std::vector<OldVote> old_votes;  // Only [0, old_count) is current; the rest keeps capacity.
  size_t old_count = 0;
  std::vector<const Vote*> new_votes;
  std::string expiry_arena;  // object_key '\0' agent_id of each ExpiryPut, back to back.
  std::vector<ExpiryPut> expiry_puts;
};

// Applies object writes, given in ascending key order, in one write transaction, keeping
// `reports`, `expiry` and `states` in step. Each database is written through one cursor, so LMDB
// never has to fix up a second cursor after a change. Must be destroyed before the transaction
// ends (LMDB frees a write transaction's cursors itself).
class ObjectWriter {
 public:
  ObjectWriter(WriteTxn& txn, ApplyBuffers& buffers) : txn_(txn), dbs_(txn.dbs()), b_(buffers) {}

  absl::Status Init();
  // Makes the object `object_key` what `data` says, or deletes it if `data` is empty. Keys must
  // be ascending and distinct across calls.
  absl::Status Write(std::string_view object_key, const std::optional<ObjectData>& data);
  // Writes the expiry entries that Write() collected.
  absl::Status Finish();

 private:
  // Reads the object's stored votes into old_votes[0, old_count).
  absl::Status ReadOldVotes();
  absl::Status RemoveVote(std::string_view object_key, const ApplyBuffers::OldVote& vote);
  void AddExpiry(std::string_view object_key, const Vote& vote);

  WriteTxn& txn_;
  const ShardDbs& dbs_;
  ApplyBuffers& b_;
  CursorPtr reports_;
  CursorPtr states_;
  CursorPtr expiry_;
  AppendPoint reports_end_;
  AppendPoint states_end_;
  AppendPoint expiry_end_;
};

absl::Status ObjectWriter::Init() {
  b_.expiry_arena.clear();
  b_.expiry_puts.clear();
  const std::tuple<CursorPtr*, AppendPoint*, MDB_dbi, const char*> dbs[] = {
      {&reports_, &reports_end_, dbs_.reports, "reports"},
      {&states_, &states_end_, dbs_.states, "states"},
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

absl::Status ObjectWriter::Write(std::string_view object_key,
                                 const std::optional<ObjectData>& data) {
  SetReportsPrefix(object_key, &b_.prefix);
  // Every key of this object's votes starts with the prefix, so if the prefix is past the end of
  // `reports`, there are none.
  const bool new_object = reports_end_.After(b_.prefix);
  b_.old_count = 0;
  if (!new_object) {
    if (absl::Status status = ReadOldVotes(); !status.ok()) return status;
  }

  b_.new_votes.clear();
  if (data.has_value()) {
    for (const Vote& vote : data->votes) b_.new_votes.push_back(&vote);
    // Callers pass votes sorted (ObjectData's promise); sort only if they did not. Stable, so
    // that of two votes of one agent the later one wins below.
    if (!std::is_sorted(b_.new_votes.begin(), b_.new_votes.end(), ByAgentId)) {
      std::stable_sort(b_.new_votes.begin(), b_.new_votes.end(), ByAgentId);
    }
  }

  // Merge the old and the new votes, both in agent_id order (the order of LMDB's keys too).
  const unsigned put_flags = new_object ? MDB_APPEND : 0;
  size_t i = 0;
  size_t j = 0;
  while (i < b_.old_count || j < b_.new_votes.size()) {
    if (j + 1 < b_.new_votes.size() &&
        b_.new_votes[j]->agent_id() == b_.new_votes[j + 1]->agent_id()) {
      ++j;
      continue;
    }
    int order;
    if (i == b_.old_count) {
      order = 1;
    } else if (j == b_.new_votes.size()) {
      order = -1;
    } else {
      order = b_.old_votes[i].agent_id.compare(b_.new_votes[j]->agent_id());
    }
    if (order < 0) {  // A vote that is no longer there.
      if (absl::Status s = RemoveVote(object_key, b_.old_votes[i]); !s.ok()) return s;
      ++i;
      continue;
    }
    const Vote& vote = *b_.new_votes[j];
    b_.report_key.assign(b_.prefix).append(vote.agent_id());
    absl::Status status = txn_.CursorPut(reports_.get(), "reports", b_.report_key, vote, put_flags);
    if (!status.ok()) return status;
    // Most replacements keep an agent's expiry (the object's state changed, not the vote's):
    // then its expiry entry stays as it is.
    if (order > 0 ||
        ExpiryTime(b_.old_votes[i].expires_at_ms) != ExpiryTime(vote.expires_at_ms())) {
      if (order == 0) {
        SetExpiryKey(b_.old_votes[i].expires_at_ms, object_key, vote.agent_id(), &b_.expiry_key);
        status = txn_.CursorDelete(expiry_.get(), "expiry", b_.expiry_key);
        if (!status.ok()) return status;
      }
      AddExpiry(object_key, vote);
    }
    if (order == 0) ++i;
    ++j;
  }

  if (!data.has_value()) return txn_.CursorDelete(states_.get(), "states", object_key);
  return txn_.CursorPut(states_.get(), "states", object_key, data->state,
                        states_end_.After(object_key) ? MDB_APPEND : 0);
}

absl::Status ObjectWriter::ReadOldVotes() {
  MDB_val key = ToVal(b_.prefix);
  MDB_val value;
  int rc = mdb_cursor_get(reports_.get(), &key, &value, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS) {
    const std::string_view k = FromVal(key);
    if (!StartsWith(k, b_.prefix)) break;
    const std::optional<int64_t> expires_at_ms = ParseVoteExpiry(FromVal(value));
    if (!expires_at_ms.has_value()) return UnparseableValue(dbs_, "reports", k, "Vote");
    if (b_.old_count == b_.old_votes.size()) b_.old_votes.emplace_back();
    // Copied: the page under `key` changes as soon as this object's votes are written.
    b_.old_votes[b_.old_count].agent_id.assign(k.substr(b_.prefix.size()));
    b_.old_votes[b_.old_count].expires_at_ms = *expires_at_ms;
    ++b_.old_count;
    rc = mdb_cursor_get(reports_.get(), &key, &value, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return txn_.Fail("mdb_cursor_get(reports)", rc);
  }
  return absl::OkStatus();
}

absl::Status ObjectWriter::RemoveVote(std::string_view object_key,
                                      const ApplyBuffers::OldVote& vote) {
  b_.report_key.assign(b_.prefix).append(vote.agent_id);
  if (absl::Status s = txn_.CursorDelete(reports_.get(), "reports", b_.report_key); !s.ok()) {
    return s;
  }
  SetExpiryKey(vote.expires_at_ms, object_key, vote.agent_id, &b_.expiry_key);
  return txn_.CursorDelete(expiry_.get(), "expiry", b_.expiry_key);
}

void ObjectWriter::AddExpiry(std::string_view object_key, const Vote& vote) {
  // Deferred to Finish(): in time order the inserts touch neighbouring pages, where in object
  // order every one would land on a random page of the index. Deferring is safe because no
  // delete of this commit can hit a key put here: an object occurs once per batch, and within
  // it a deleted entry differs from the put one in agent or time.
  b_.expiry_puts.push_back({ExpiryTime(vote.expires_at_ms()), KeyHead(object_key),
                            b_.expiry_arena.size(),
                            object_key.size() + 1 + vote.agent_id().size()});
  b_.expiry_arena.append(object_key);
  b_.expiry_arena.push_back(kKeySeparator);
  b_.expiry_arena.append(vote.agent_id());
}

absl::Status ObjectWriter::Finish() {
  const std::string_view arena = b_.expiry_arena;
  std::sort(b_.expiry_puts.begin(), b_.expiry_puts.end(),
            [arena](const ApplyBuffers::ExpiryPut& a, const ApplyBuffers::ExpiryPut& b) {
              if (a.time != b.time) return a.time < b.time;
              if (a.head != b.head) return a.head < b.head;
              return arena.substr(a.offset, a.size) < arena.substr(b.offset, b.size);
            });
  for (const ApplyBuffers::ExpiryPut& put : b_.expiry_puts) {
    SetExpiryKey(put.time, arena.substr(put.offset, put.size), &b_.expiry_key);
    absl::Status status = txn_.CursorPutEmpty(expiry_.get(), "expiry", b_.expiry_key,
                                              expiry_end_.After(b_.expiry_key) ? MDB_APPEND : 0);
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
    if (auto it = index_.find(AbslView(object_key)); it != index_.end()) return it->second->data;
    absl::StatusOr<MDB_txn*> snapshot = Snapshot();
    if (!snapshot.ok()) return snapshot.status();
    return ReadObject(shard_->dbs(), *snapshot, object_key);
  }

  void PutObject(std::string_view object_key, ObjectData data) override {
    Pending(object_key).data = std::move(data);
  }

  void DeleteObject(std::string_view object_key) override { Pending(object_key).data.reset(); }

  void SetMeta(ShardMeta meta) override { meta_ = std::move(meta); }

  absl::StatusOr<ShardMeta> GetMeta() override {
    if (committed_) return Spent();
    if (meta_.has_value()) return *meta_;
    absl::StatusOr<MDB_txn*> snapshot = Snapshot();
    if (!snapshot.ok()) return snapshot.status();
    return ReadMeta(shard_->dbs(), *snapshot);
  }

  size_t size() const override { return pending_.size(); }

  absl::Status Commit() override;

 private:
  struct PendingObject {
    std::string key;
    std::optional<ObjectData> data;  // nullopt: delete the object.
  };

  // The pending write of `object_key`, created empty if there is none.
  PendingObject& Pending(std::string_view object_key) {
    // Append first and undo on a hit: one hash lookup either way, and the index's key must point
    // at the entry's own copy.
    PendingObject& fresh = pending_.emplace_back();
    fresh.key.assign(object_key);
    auto [it, inserted] = index_.try_emplace(AbslView(fresh.key), &fresh);
    if (!inserted) pending_.pop_back();
    return *it->second;
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
    std::string_view key;
    const std::optional<ObjectData>* data;
  };
  absl::Status Apply(WriteTxn& txn, const std::vector<SortedObject>& objects,
                     ApplyBuffers& buffers);
  absl::Status Spent() const {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", shard_->dir(), ": WriteBatch used after Commit"));
  }

  ShardImpl* const shard_;
  MDB_txn* snapshot_ = nullptr;
  // Commit() was called; the shard's one batch slot is free again.
  bool committed_ = false;
  // The pending object writes, one per key, in the order of their first write. A deque so that
  // entries (and the keys the index points into) never move; objects are moved in once and
  // never again, where a map holding them would move them on every rehash.
  std::deque<PendingObject> pending_;
  absl::flat_hash_map<absl::string_view, PendingObject*> index_;
  std::optional<ShardMeta> meta_;
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
  for (const auto& [object_key, data] : pending_) {
    if (object_key.empty()) return invalid(object_key, "empty");
    if (object_key.find(kKeySeparator) != std::string::npos) return invalid(object_key, "has \\0");
    if (object_key.size() > kMaxObjectAndAgentIdSize) {
      return invalid(object_key, absl::StrCat("longer than ", kMaxObjectAndAgentIdSize, " bytes"));
    }
    if (!data.has_value()) continue;
    for (const Vote& vote : data->votes) {
      if (object_key.size() + vote.agent_id().size() > kMaxObjectAndAgentIdSize) {
        return invalid(
            object_key,
            absl::StrCat("with agent_id \"", absl::CHexEscape(vote.agent_id().substr(0, 100)),
                         "\" longer than ", kMaxObjectAndAgentIdSize, " bytes together"));
      }
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
    for (const PendingObject& object : pending_) {
      objects.push_back({KeyHead(object.key), object.key, &object.data});
    }
    std::sort(objects.begin(), objects.end(), [](const SortedObject& a, const SortedObject& b) {
      if (a.head != b.head) return a.head < b.head;
      return a.key < b.key;
    });
    ApplyBuffers buffers;
    status = shard_->Write([&](WriteTxn& txn) { return Apply(txn, objects, buffers); });
  }
  // Free the slot only now: the next batch's snapshot must not be taken before this commit.
  shard_->BatchClosed();
  return status;
}

absl::Status WriteBatchImpl::Apply(WriteTxn& txn, const std::vector<SortedObject>& objects,
                                   ApplyBuffers& buffers) {
  {
    ObjectWriter writer(txn, buffers);
    absl::Status status = writer.Init();
    for (size_t i = 0; status.ok() && i < objects.size(); ++i) {
      status = writer.Write(objects[i].key, *objects[i].data);
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
