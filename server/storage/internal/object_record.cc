#include "server/storage/internal/object_record.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "server/storage/internal/keys.h"

namespace tally::storage::internal {
namespace {

using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;
using records::v1::ObjectRecord;
using records::v1::StoredState;
using records::v1::Vote;

// Wire types of the protobuf encoding (stable since proto2). Groups are not used by these
// messages, so a group is broken framing here.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

constexpr uint32_t Tag(int field, WireType type) {
  return (static_cast<uint32_t>(field) << 3) | type;
}

constexpr uint32_t kStateTag = Tag(ObjectRecord::kStateFieldNumber, kLengthDelimited);
constexpr uint32_t kVoteTag = Tag(ObjectRecord::kVotesFieldNumber, kLengthDelimited);
constexpr uint32_t kSourceOffsetTag = Tag(ObjectRecord::kSourceOffsetFieldNumber, kVarint);
constexpr uint32_t kChangesOffsetTag = Tag(ObjectRecord::kChangesOffsetFieldNumber, kVarint);
constexpr uint32_t kAgentIdTag = Tag(Vote::kAgentIdFieldNumber, kLengthDelimited);
constexpr uint32_t kExpiryTag = Tag(Vote::kExpiresAtMsFieldNumber, kVarint);

CodedInputStream Input(std::string_view bytes) {
  return CodedInputStream(reinterpret_cast<const uint8_t*>(bytes.data()),
                          static_cast<int>(bytes.size()));
}

// Reads protobuf wire format from one flat buffer. CodedInputStream does the same for any
// stream, with a limit stack and refills that a restore paid for on every field of every record
// (a third of the restore's writer thread); this is the part of it that the scans here need.
class WireReader {
 public:
  explicit WireReader(std::string_view bytes)
      : next_(reinterpret_cast<const uint8_t*>(bytes.data())), end_(next_ + bytes.size()) {}

  bool done() const { return next_ == end_; }

  bool ReadVarint(uint64_t* value) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && next_ != end_; shift += 7) {
      const uint8_t byte = *next_++;
      result |= uint64_t{byte & 0x7fu} << shift;
      if (byte < 0x80) {
        *value = result;
        return true;
      }
    }
    return false;  // Truncated, or longer than 10 bytes.
  }

  // A tag with field number 0 or above 2^29 - 1 is malformed, as in a parse.
  bool ReadTag(uint32_t* tag) {
    uint64_t value = 0;
    if (!ReadVarint(&value) || value > 0xffffffffu || (value >> 3) == 0) return false;
    *tag = static_cast<uint32_t>(value);
    return true;
  }

  // The payload of a length-delimited field whose tag was just read.
  bool ReadLengthDelimited(std::string_view* out) {
    uint64_t length = 0;
    if (!ReadVarint(&length) || length > static_cast<uint64_t>(end_ - next_)) return false;
    *out = std::string_view(reinterpret_cast<const char*>(next_), length);
    next_ += length;
    return true;
  }

  // Skips the payload of a field whose tag was just read.
  bool SkipField(uint32_t tag) {
    uint64_t varint = 0;
    std::string_view payload;
    switch (tag & 7) {
      case kVarint:
        return ReadVarint(&varint);
      case kFixed64:
        return Skip(8);
      case kLengthDelimited:
        return ReadLengthDelimited(&payload);
      case kFixed32:
        return Skip(4);
      default:
        return false;
    }
  }

 private:
  bool Skip(size_t n) {
    if (n > static_cast<size_t>(end_ - next_)) return false;
    next_ += n;
    return true;
  }

  const uint8_t* next_;
  const uint8_t* const end_;
};

// The agent_id and expires_at_ms (0 if absent) of a serialized Vote.
bool ScanVote(std::string_view vote, std::string_view* agent_id, int64_t* expires_at_ms) {
  WireReader in(vote);
  *agent_id = std::string_view();
  *expires_at_ms = 0;
  uint32_t tag = 0;
  while (!in.done()) {
    if (!in.ReadTag(&tag)) return false;
    if (tag == kAgentIdTag) {
      if (!in.ReadLengthDelimited(agent_id)) return false;
    } else if (tag == kExpiryTag) {
      uint64_t varint = 0;
      if (!in.ReadVarint(&varint)) return false;
      *expires_at_ms = static_cast<int64_t>(varint);
    } else if (!in.SkipField(tag)) {
      return false;
    }
  }
  return true;
}

void AppendVarint(uint64_t value, std::string* out) {
  uint8_t buffer[10];
  const uint8_t* end = CodedOutputStream::WriteVarint64ToArray(value, buffer);
  out->append(reinterpret_cast<const char*>(buffer), end - buffer);
}

// Appends field `tag` holding `message`, serialized with the sizes its ByteSizeLong() cached.
void AppendMessage(uint32_t tag, const google::protobuf::MessageLite& message, size_t size,
                   std::string* out) {
  AppendVarint(tag, out);
  AppendVarint(size, out);
  const size_t at = out->size();
  out->resize(at + size);
  message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out->data() + at));
}

void Note(std::string_view agent_id, int64_t expires_at_ms, RecordSummary* summary) {
  const uint64_t expiry = ExpiryTime(expires_at_ms);
  if (!summary->min_expiry.has_value() || expiry < *summary->min_expiry) {
    summary->min_expiry = expiry;
  }
  summary->max_agent_id_size = std::max(summary->max_agent_id_size, agent_id.size());
}

}  // namespace

std::optional<RecordSummary> ScanObjectRecord(std::string_view bytes) {
  WireReader in(bytes);
  RecordSummary summary;
  std::string_view previous_agent_id;
  bool first_vote = true;
  uint32_t tag = 0;
  while (!in.done()) {
    if (!in.ReadTag(&tag)) return std::nullopt;
    if (tag == kSourceOffsetTag) {
      uint64_t varint = 0;
      if (!in.ReadVarint(&varint)) return std::nullopt;
      summary.source_offset = static_cast<int64_t>(varint);
      continue;
    }
    if (tag == kChangesOffsetTag) {
      uint64_t varint = 0;
      if (!in.ReadVarint(&varint)) return std::nullopt;
      summary.changes_offset = static_cast<int64_t>(varint);
      continue;
    }
    if (tag != kVoteTag) {
      if (!in.SkipField(tag)) return std::nullopt;
      continue;
    }
    std::string_view vote;
    std::string_view agent_id;
    int64_t expires_at_ms = 0;
    if (!in.ReadLengthDelimited(&vote) || !ScanVote(vote, &agent_id, &expires_at_ms)) {
      return std::nullopt;
    }
    if (!first_vote && agent_id <= previous_agent_id) summary.votes_canonical = false;
    first_vote = false;
    previous_agent_id = agent_id;
    Note(agent_id, expires_at_ms, &summary);
  }
  return summary;
}

RecordSummary AppendObjectRecord(const ObjectData& data, std::string* out) {
  std::vector<const Vote*> votes;
  votes.reserve(data.votes.size());
  for (const Vote& vote : data.votes) votes.push_back(&vote);
  // Stable, so that of two votes of one agent the later one is last of its run and kept below.
  std::stable_sort(votes.begin(), votes.end(),
                   [](const Vote* a, const Vote* b) { return a->agent_id() < b->agent_id(); });
  RecordSummary summary;
  AppendMessage(kStateTag, data.state, data.state.ByteSizeLong(), out);
  for (size_t i = 0; i < votes.size(); ++i) {
    const Vote& vote = *votes[i];
    if (i + 1 < votes.size() && votes[i + 1]->agent_id() == vote.agent_id()) continue;
    AppendMessage(kVoteTag, vote, vote.ByteSizeLong(), out);
    Note(vote.agent_id(), vote.expires_at_ms(), &summary);
  }
  return summary;
}

bool ParseObjectRecord(std::string_view bytes, ObjectData* out) {
  ObjectRecord record;
  if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
  out->state = std::move(*record.mutable_state());
  out->votes.assign(std::make_move_iterator(record.mutable_votes()->begin()),
                    std::make_move_iterator(record.mutable_votes()->end()));
  return true;
}

bool ParseObjectState(std::string_view bytes, StoredState* out) {
  out->Clear();
  WireReader in(bytes);
  uint32_t tag = 0;
  while (!in.done()) {
    if (!in.ReadTag(&tag)) return false;
    if (tag != kStateTag) {
      if (!in.SkipField(tag)) return false;
      continue;
    }
    std::string_view state;
    if (!in.ReadLengthDelimited(&state)) return false;
    // Repeated occurrences of a message field merge, as in a full parse.
    CodedInputStream state_in = Input(state);
    if (!out->MergeFromCodedStream(&state_in)) return false;
  }
  return true;
}

}  // namespace tally::storage::internal
