#ifndef TALLY_SERVER_STORAGE_INTERNAL_READS_H_
#define TALLY_SERVER_STORAGE_INTERNAL_READS_H_

// Reads of a shard's databases inside one LMDB transaction (read-only or write): what Reader and
// WriteBatch share. Errors name the shard's directory; a value that does not parse is DATA_LOSS.

#include <lmdb.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/storage/shard.h"
#include "tally/records/v1/records.pb.h"

namespace tally::storage::internal {

// The handles of one shard's databases. Constant once the shard is open.
struct ShardDbs {
  std::string_view dir;
  MDB_dbi objects = 0;
  MDB_dbi expiry = 0;
  MDB_dbi meta = 0;
};

absl::StatusOr<std::optional<records::v1::StoredState>> ReadState(const ShardDbs& dbs, MDB_txn* txn,
                                                                  std::string_view object_key);

// The object's state and votes (sorted by agent_id); nullopt if it has no state.
absl::StatusOr<std::optional<ObjectData>> ReadObject(const ShardDbs& dbs, MDB_txn* txn,
                                                     std::string_view object_key);

// The object's stored value (a serialized ObjectRecord), in LMDB's memory: valid until `txn` ends
// or writes. nullopt if it has none.
absl::StatusOr<std::optional<std::string_view>> ReadObjectBytes(const ShardDbs& dbs, MDB_txn* txn,
                                                                std::string_view object_key);

// nullopt if the meta record is missing (only before Open has written it).
absl::StatusOr<std::optional<records::v1::ShardMeta>> ReadMetaIfPresent(const ShardDbs& dbs,
                                                                        MDB_txn* txn);
// DATA_LOSS if the meta record is missing.
absl::StatusOr<records::v1::ShardMeta> ReadMeta(const ShardDbs& dbs, MDB_txn* txn);

// See Reader::Scan.
absl::StatusOr<std::vector<std::pair<std::string, records::v1::StoredState>>> ScanStates(
    const ShardDbs& dbs, MDB_txn* txn, std::string_view prefix, std::string_view after,
    bool inclusive, size_t limit);
// See Reader::ScanObjects.
absl::StatusOr<std::vector<std::pair<std::string, ObjectData>>> ScanObjects(
    const ShardDbs& dbs, MDB_txn* txn, std::string_view prefix, std::string_view after,
    bool inclusive, size_t limit);

// See Reader::ExpiredObjects.
absl::StatusOr<std::vector<std::string>> ReadExpiredObjects(const ShardDbs& dbs, MDB_txn* txn,
                                                            int64_t now_ms, size_t limit);

absl::StatusOr<uint64_t> CountStates(const ShardDbs& dbs, MDB_txn* txn);

struct CursorCloser {
  void operator()(MDB_cursor* cursor) const { mdb_cursor_close(cursor); }
};
using CursorPtr = std::unique_ptr<MDB_cursor, CursorCloser>;

// A cursor on `dbi` (named `db_name` in errors).
absl::StatusOr<CursorPtr> OpenCursor(const ShardDbs& dbs, MDB_txn* txn, MDB_dbi dbi,
                                     std::string_view db_name);

// DATA_LOSS naming the shard, the database and the key whose value does not parse.
absl::Status UnparseableValue(const ShardDbs& dbs, std::string_view db_name, std::string_view key,
                              std::string_view type);

}  // namespace tally::storage::internal

#endif  // TALLY_SERVER_STORAGE_INTERNAL_READS_H_
