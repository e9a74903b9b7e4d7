#include "server/storage/internal/reads.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/storage/internal/keys.h"
#include "server/storage/internal/mdb_status.h"
#include "server/storage/internal/object_record.h"

namespace tally::storage::internal {
namespace {

using records::v1::ShardMeta;
using records::v1::StoredState;
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

namespace {

// The value of `key` in `dbi` (named `db_name` in errors), parsed by `parse` into a T; nullopt if
// the key is absent, DATA_LOSS naming the value's `type` if it does not parse.
template <typename T, typename Parse>
absl::StatusOr<std::optional<T>> ReadValue(const ShardDbs& dbs, MDB_txn* txn, MDB_dbi dbi,
                                           std::string_view db_name, std::string_view key,
                                           std::string_view type, const Parse& parse) {
  MDB_val k = ToVal(key);
  MDB_val value;
  const int rc = mdb_get(txn, dbi, &k, &value);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  if (rc != MDB_SUCCESS) {
    return MdbStatus(dbs.dir, absl::StrCat("mdb_get(", AbslView(db_name), ")"), rc);
  }
  std::optional<T> out(std::in_place);
  if (!parse(FromVal(value), &*out)) return UnparseableValue(dbs, db_name, key, type);
  return out;
}

// Reader::Scan, with each value parsed by `parse` into a T.
template <typename T, typename Parse>
absl::StatusOr<std::vector<std::pair<std::string, T>>> ScanValues(const ShardDbs& dbs, MDB_txn* txn,
                                                                  std::string_view prefix,
                                                                  std::string_view after,
                                                                  bool inclusive, size_t limit,
                                                                  const Parse& parse) {
  std::vector<std::pair<std::string, T>> out;
  if (limit == 0) return out;
  absl::StatusOr<CursorPtr> cursor = OpenCursor(dbs, txn, dbs.objects, "objects");
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
    auto& [object_key, parsed] = out.emplace_back(FromVal(key), T());
    if (!parse(FromVal(value), &parsed)) {
      return UnparseableValue(dbs, "objects", object_key, "ObjectRecord");
    }
    if (out.size() == limit) return out;
    rc = mdb_cursor_get(cursor->get(), &key, &value, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return MdbStatus(dbs.dir, "mdb_cursor_get(objects)", rc);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::optional<StoredState>> ReadState(const ShardDbs& dbs, MDB_txn* txn,
                                                     std::string_view object_key) {
  // Only the state: point reads and scans of states need nothing else, and the votes are most of
  // a value.
  return ReadValue<StoredState>(dbs, txn, dbs.objects, "objects", object_key, "ObjectRecord",
                                ParseObjectState);
}

absl::StatusOr<std::optional<ObjectData>> ReadObject(const ShardDbs& dbs, MDB_txn* txn,
                                                     std::string_view object_key) {
  // Stored votes are sorted by agent_id already (the writer makes them so).
  return ReadValue<ObjectData>(dbs, txn, dbs.objects, "objects", object_key, "ObjectRecord",
                               ParseObjectRecord);
}

absl::StatusOr<std::optional<std::string_view>> ReadObjectBytes(const ShardDbs& dbs, MDB_txn* txn,
                                                                std::string_view object_key) {
  return ReadValue<std::string_view>(dbs, txn, dbs.objects, "objects", object_key, "ObjectRecord",
                                     [](std::string_view bytes, std::string_view* out) {
                                       *out = bytes;
                                       return true;
                                     });
}

absl::StatusOr<std::optional<ShardMeta>> ReadMetaIfPresent(const ShardDbs& dbs, MDB_txn* txn) {
  return ReadValue<ShardMeta>(dbs, txn, dbs.meta, "meta", kMetaKey, "ShardMeta",
                              [](std::string_view bytes, ShardMeta* meta) {
                                return meta->ParseFromArray(bytes.data(),
                                                            static_cast<int>(bytes.size()));
                              });
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
  return ScanValues<StoredState>(dbs, txn, prefix, after, inclusive, limit, ParseObjectState);
}

absl::StatusOr<std::vector<std::pair<std::string, ObjectData>>> ScanObjects(
    const ShardDbs& dbs, MDB_txn* txn, std::string_view prefix, std::string_view after,
    bool inclusive, size_t limit) {
  return ScanValues<ObjectData>(dbs, txn, prefix, after, inclusive, limit, ParseObjectRecord);
}

absl::StatusOr<std::vector<std::string>> ReadExpiredObjects(const ShardDbs& dbs, MDB_txn* txn,
                                                            int64_t now_ms, size_t limit) {
  std::vector<std::string> out;
  if (limit == 0 || now_ms < 0) return out;
  const uint64_t now = static_cast<uint64_t>(now_ms);
  absl::StatusOr<CursorPtr> cursor = OpenCursor(dbs, txn, dbs.expiry, "expiry");
  if (!cursor.ok()) return cursor.status();
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
    // One entry per object (at its earliest vote expiry), so no object comes twice.
    out.emplace_back(ExpiryKeyObject(k));
    if (out.size() == limit) return out;
    rc = mdb_cursor_get(cursor->get(), &key, &value, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    return MdbStatus(dbs.dir, "mdb_cursor_get(expiry)", rc);
  }
  return out;
}

absl::StatusOr<uint64_t> CountStates(const ShardDbs& dbs, MDB_txn* txn) {
  MDB_stat stat;
  const int rc = mdb_stat(txn, dbs.objects, &stat);
  if (rc != MDB_SUCCESS) return MdbStatus(dbs.dir, "mdb_stat(objects)", rc);
  return uint64_t{stat.ms_entries};
}

}  // namespace tally::storage::internal
