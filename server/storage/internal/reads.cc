#include "server/storage/internal/reads.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "server/storage/internal/keys.h"
#include "server/storage/internal/mdb_status.h"

namespace tally::storage::internal {
namespace {

using records::v1::ShardMeta;
using records::v1::StoredState;
using records::v1::Vote;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

absl::Status UnparseableValue(const ShardDbs& dbs, std::string_view db_name, std::string_view key,
                              std::string_view type) {
  return absl::DataLossError(absl::StrCat("shard ", AbslView(dbs.dir), ": ", AbslView(db_name),
                                          "[\"", absl::CHexEscape(AbslView(key)),
                                          "\"]: value is not a ", AbslView(type)));
}

absl::StatusOr<CursorPtr> OpenCursor(const ShardDbs& dbs, MDB_txn* txn, MDB_dbi dbi,
                                     std::string_view db_name) {
  MDB_cursor* cursor = nullptr;
  const int rc = mdb_cursor_open(txn, dbi, &cursor);
  if (rc != MDB_SUCCESS) {
    return MdbStatus(dbs.dir, absl::StrCat("mdb_cursor_open(", AbslView(db_name), ")"), rc);
  }
  return CursorPtr(cursor);
}

absl::StatusOr<std::optional<StoredState>> ReadState(const ShardDbs& dbs, MDB_txn* txn,
                                                     std::string_view object_key) {
  MDB_val key = ToVal(object_key);
  MDB_val value;
  const int rc = mdb_get(txn, dbs.states, &key, &value);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  if (rc != MDB_SUCCESS) return MdbStatus(dbs.dir, "mdb_get(states)", rc);
  std::optional<StoredState> state(std::in_place);
  if (!state->ParseFromArray(value.mv_data, static_cast<int>(value.mv_size))) {
    return UnparseableValue(dbs, "states", object_key, "StoredState");
  }
  return state;
}

absl::StatusOr<std::optional<ObjectData>> ReadObject(const ShardDbs& dbs, MDB_txn* txn,
                                                     std::string_view object_key) {
  absl::StatusOr<std::optional<StoredState>> state = ReadState(dbs, txn, object_key);
  if (!state.ok()) return state.status();
  if (!state->has_value()) return std::nullopt;
  std::optional<ObjectData> object(std::in_place);
  object->state = std::move(**state);

  absl::StatusOr<CursorPtr> cursor = OpenCursor(dbs, txn, dbs.reports, "reports");
  if (!cursor.ok()) return cursor.status();
  std::string prefix;
  SetReportsPrefix(object_key, &prefix);
  MDB_val key = ToVal(prefix);
  MDB_val value;
  int rc = mdb_cursor_get(cursor->get(), &key, &value, MDB_SET_RANGE);
  // Key order within the prefix is agent_id order, which is the order ObjectData promises.
  while (rc == MDB_SUCCESS && StartsWith(FromVal(key), prefix)) {
    Vote& vote = object->votes.emplace_back();
    if (!vote.ParseFromArray(value.mv_data, static_cast<int>(value.mv_size))) {
      return UnparseableValue(dbs, "reports", FromVal(key), "Vote");
    }
    rc = mdb_cursor_get(cursor->get(), &key, &value, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return MdbStatus(dbs.dir, "mdb_cursor_get(reports)", rc);
  }
  return object;
}

absl::StatusOr<std::optional<ShardMeta>> ReadMetaIfPresent(const ShardDbs& dbs, MDB_txn* txn) {
  MDB_val key = ToVal(kMetaKey);
  MDB_val value;
  const int rc = mdb_get(txn, dbs.meta, &key, &value);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  if (rc != MDB_SUCCESS) return MdbStatus(dbs.dir, "mdb_get(meta)", rc);
  std::optional<ShardMeta> meta(std::in_place);
  if (!meta->ParseFromArray(value.mv_data, static_cast<int>(value.mv_size))) {
    return UnparseableValue(dbs, "meta", kMetaKey, "ShardMeta");
  }
  return meta;
}

absl::StatusOr<ShardMeta> ReadMeta(const ShardDbs& dbs, MDB_txn* txn) {
  absl::StatusOr<std::optional<ShardMeta>> meta = ReadMetaIfPresent(dbs, txn);
  if (!meta.ok()) return meta.status();
  if (!meta->has_value()) {
    // Open writes it before anyone can read, so its absence means the files were tampered with.
    return absl::DataLossError(absl::StrCat("shard ", AbslView(dbs.dir), ": meta record missing"));
  }
  return std::move(**meta);
}

absl::StatusOr<std::vector<std::pair<std::string, StoredState>>> ScanStates(
    const ShardDbs& dbs, MDB_txn* txn, std::string_view prefix, std::string_view after,
    bool inclusive, size_t limit) {
  std::vector<std::pair<std::string, StoredState>> out;
  if (limit == 0) return out;
  absl::StatusOr<CursorPtr> cursor = OpenCursor(dbs, txn, dbs.states, "states");
  if (!cursor.ok()) return cursor.status();

  // Every key with the prefix is >= prefix, so an `after` below it bounds nothing.
  std::string_view start = prefix;
  bool skip_start = false;
  if (!after.empty() && after >= prefix) {
    start = after;
    skip_start = !inclusive;
  }
  MDB_val key = ToVal(start);
  MDB_val value;
  // LMDB keys are never empty, so an empty start means the first key.
  int rc = mdb_cursor_get(cursor->get(), &key, &value, start.empty() ? MDB_FIRST : MDB_SET_RANGE);
  if (rc == MDB_SUCCESS && skip_start && FromVal(key) == start) {
    rc = mdb_cursor_get(cursor->get(), &key, &value, MDB_NEXT);
  }
  while (rc == MDB_SUCCESS && StartsWith(FromVal(key), prefix)) {
    auto& [object_key, state] = out.emplace_back(FromVal(key), StoredState());
    if (!state.ParseFromArray(value.mv_data, static_cast<int>(value.mv_size))) {
      return UnparseableValue(dbs, "states", object_key, "StoredState");
    }
    if (out.size() == limit) return out;
    rc = mdb_cursor_get(cursor->get(), &key, &value, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return MdbStatus(dbs.dir, "mdb_cursor_get(states)", rc);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ReadExpiredObjects(const ShardDbs& dbs, MDB_txn* txn,
                                                            int64_t now_ms, size_t limit) {
  std::vector<std::string> out;
  if (limit == 0 || now_ms < 0) return out;
  const uint64_t now = static_cast<uint64_t>(now_ms);
  absl::StatusOr<CursorPtr> cursor = OpenCursor(dbs, txn, dbs.expiry, "expiry");
  if (!cursor.ok()) return cursor.status();
  // Views into the map: valid as long as the transaction.
  absl::flat_hash_set<absl::string_view> seen;
  MDB_val key;
  MDB_val value;
  int rc = mdb_cursor_get(cursor->get(), &key, &value, MDB_FIRST);
  while (rc == MDB_SUCCESS) {
    const std::string_view k = FromVal(key);
    if (k.size() <= kExpiryTimeSize) {
      return absl::DataLossError(absl::StrCat("shard ", AbslView(dbs.dir), ": expiry key \"",
                                              absl::CHexEscape(AbslView(k)), "\" is too short"));
    }
    if (ExpiryKeyTime(k) > now) break;
    const std::string_view object_key = ExpiryKeyObject(k);
    if (seen.insert(AbslView(object_key)).second) {
      out.emplace_back(object_key);
      if (out.size() == limit) return out;
    }
    rc = mdb_cursor_get(cursor->get(), &key, &value, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return MdbStatus(dbs.dir, "mdb_cursor_get(expiry)", rc);
  }
  return out;
}

absl::StatusOr<uint64_t> CountStates(const ShardDbs& dbs, MDB_txn* txn) {
  MDB_stat stat;
  const int rc = mdb_stat(txn, dbs.states, &stat);
  if (rc != MDB_SUCCESS) return MdbStatus(dbs.dir, "mdb_stat(states)", rc);
  return uint64_t{stat.ms_entries};
}

std::optional<int64_t> ParseVoteExpiry(std::string_view serialized_vote) {
  // Wire types of the protobuf encoding (stable since proto2); groups are not used by Vote.
  enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };
  constexpr uint32_t kExpiryTag = (Vote::kExpiresAtMsFieldNumber << 3) | kVarint;
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(serialized_vote.data()),
      static_cast<int>(serialized_vote.size()));
  int64_t expires_at_ms = 0;
  while (const uint32_t tag = in.ReadTag()) {
    uint64_t varint = 0;
    uint32_t length = 0;
    bool ok = false;
    switch (tag & 7) {
      case kVarint:
        ok = in.ReadVarint64(&varint);
        // The last occurrence wins, as in a full parse.
        if (ok && tag == kExpiryTag) expires_at_ms = static_cast<int64_t>(varint);
        break;
      case kFixed64:
        ok = in.Skip(8);
        break;
      case kLengthDelimited:
        ok = in.ReadVarint32(&length) && in.Skip(static_cast<int>(length));
        break;
      case kFixed32:
        ok = in.Skip(4);
        break;
    }
    if (!ok) return std::nullopt;
  }
  // ReadTag() returns 0 both at the end and on a malformed tag.
  if (!in.ConsumedEntireMessage()) return std::nullopt;
  return expires_at_ms;
}

}  // namespace tally::storage::internal
