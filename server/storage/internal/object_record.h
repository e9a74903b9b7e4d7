#ifndef TALLY_SERVER_STORAGE_INTERNAL_OBJECT_RECORD_H_
#define TALLY_SERVER_STORAGE_INTERNAL_OBJECT_RECORD_H_

// The value of an object in the shard's `objects` database: a serialized
// tally.records.v1.ObjectRecord (state = 1, votes = 2 sorted by agent_id without duplicates;
// source_offset = 3 is kept when a changelog record is stored verbatim, and ignored).
//
// The restore path stores changelog records as they come, so what the shard needs from a value
// (its votes' agent ids and expiries) is read here from the wire format without building
// messages: a full parse allocates every string and map entry, and was most of a restore's time.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/storage/shard.h"
#include "tally/records/v1/records.pb.h"

namespace tally::storage::internal {

// What ScanObjectRecord learns about a serialized ObjectRecord.
struct RecordSummary {
  // The earliest ExpiryTime() of its votes; nullopt without votes.
  std::optional<uint64_t> min_expiry;
  // Whether the votes are sorted by agent_id without duplicates, as the shard stores them.
  bool votes_canonical = true;
  // The longest agent_id of its votes.
  size_t max_agent_id_size = 0;
  // Its source_offset (ScanObjectRecord only; 0 if absent).
  int64_t source_offset = 0;
  // Its changes_offset (ScanObjectRecord only; 0 if absent).
  int64_t changes_offset = 0;
};

// Walks the wire format of an ObjectRecord: every top-level field and every field of every vote
// (unknown fields are skipped, as a parse would). The last occurrence of a vote's agent_id or
// expires_at_ms wins, as in a parse; a field of another wire type than its declared one is
// skipped as unknown. nullopt if the framing is broken (a truncated field, a bad tag, a group).
// The state and the contents of the votes' other fields are not checked; a value that passes here
// and still does not parse reads back as DATA_LOSS.
std::optional<RecordSummary> ScanObjectRecord(std::string_view bytes);

// Serializes `data` as the shard stores it: votes sorted by agent_id, and of two votes of one
// agent only the later one (in `data.votes` order). Appends to *out and returns the summary of
// what it wrote.
RecordSummary AppendObjectRecord(const ObjectData& data, std::string* out);

// Parses a stored value (or any ObjectRecord) into *out. False if it does not parse.
bool ParseObjectRecord(std::string_view bytes, ObjectData* out);

// Parses only the state of a stored value. False if the framing or the state does not parse.
bool ParseObjectState(std::string_view bytes, records::v1::StoredState* out);

}  // namespace tally::storage::internal

#endif  // TALLY_SERVER_STORAGE_INTERNAL_OBJECT_RECORD_H_
