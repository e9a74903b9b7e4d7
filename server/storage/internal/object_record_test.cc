#include "server/storage/internal/object_record.h"

#include <string>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tally/records/v1/records.pb.h"

namespace tally::storage::internal {
namespace {

using google::protobuf::util::MessageDifferencer;
using records::v1::ObjectRecord;
using records::v1::StoredState;
using records::v1::Vote;

Vote MakeVote(const std::string& agent_id, int64_t expires_at_ms) {
  Vote vote;
  vote.set_agent_id(agent_id);
  vote.set_state("attacked");
  (*vote.mutable_attributes())["k"] = "v";
  vote.set_observed_at_ms(1'700'000'000'000);
  vote.set_expires_at_ms(expires_at_ms);
  return vote;
}

ObjectRecord MakeRecord(std::initializer_list<Vote> votes) {
  ObjectRecord record;
  record.mutable_state()->set_state("attacked");
  record.mutable_state()->set_version(3);
  (*record.mutable_state()->mutable_tally())["attacked"] = static_cast<int32_t>(votes.size());
  for (const Vote& vote : votes) *record.add_votes() = vote;
  record.set_source_offset(99);
  record.set_changes_offset(42);
  return record;
}

TEST(ScanObjectRecordTest, FindsEarliestExpiryAndLongestAgentId) {
  const auto summary =
      ScanObjectRecord(MakeRecord({MakeVote("a", 300), MakeVote("bbb", 100), MakeVote("c", 200)})
                           .SerializeAsString());
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->min_expiry, 100u);
  EXPECT_EQ(summary->max_agent_id_size, 3u);
  EXPECT_TRUE(summary->votes_canonical);
  EXPECT_EQ(summary->source_offset, 99);
  EXPECT_EQ(summary->changes_offset, 42);
}

TEST(ScanObjectRecordTest, NoVotesMeansNoExpiry) {
  auto summary = ScanObjectRecord(MakeRecord({}).SerializeAsString());
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->min_expiry, std::nullopt);
  summary = ScanObjectRecord("");
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->min_expiry, std::nullopt);
}

TEST(ScanObjectRecordTest, AbsentExpiryIsZeroAndNegativeExpiryClampsToZero) {
  Vote no_expiry;
  no_expiry.set_agent_id("a");
  auto summary = ScanObjectRecord(MakeRecord({no_expiry, MakeVote("b", 5)}).SerializeAsString());
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->min_expiry, 0u);
  summary = ScanObjectRecord(MakeRecord({MakeVote("a", -5), MakeVote("b", 5)}).SerializeAsString());
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->min_expiry, 0u);
}

TEST(ScanObjectRecordTest, VotesOutOfOrderOrDoubledAreNotCanonical) {
  auto summary =
      ScanObjectRecord(MakeRecord({MakeVote("b", 1), MakeVote("a", 2)}).SerializeAsString());
  ASSERT_TRUE(summary.has_value());
  EXPECT_FALSE(summary->votes_canonical);
  summary = ScanObjectRecord(MakeRecord({MakeVote("a", 1), MakeVote("a", 2)}).SerializeAsString());
  ASSERT_TRUE(summary.has_value());
  EXPECT_FALSE(summary->votes_canonical);
}

TEST(ScanObjectRecordTest, SkipsFieldsOfEveryWireTypeFromNewerSchemas) {
  Vote vote = MakeVote("a", 42);
  std::string unknown;
  unknown += std::string("\x99\x06", 2) + std::string(8, '\x01');  // field 99, fixed64
  unknown += std::string("\x9d\x06", 2) + std::string(4, '\x02');  // field 99, fixed32
  unknown += std::string("\x9a\x06\x03", 3) + "abc";               // field 99, bytes
  unknown += std::string("\x98\x06\xff\x01", 4);                   // field 99, varint
  const std::string vote_bytes = vote.SerializeAsString() + unknown;
  std::string record = MakeRecord({}).SerializeAsString() + unknown;
  record += '\x12';  // field 2 (votes), length-delimited
  record += static_cast<char>(vote_bytes.size());
  record += vote_bytes;
  const auto summary = ScanObjectRecord(record);
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->min_expiry, 42u);
  ObjectData parsed;
  ASSERT_TRUE(ParseObjectRecord(record, &parsed));
  ASSERT_EQ(parsed.votes.size(), 1u);
  EXPECT_EQ(parsed.votes[0].expires_at_ms(), 42);
}

TEST(ScanObjectRecordTest, LastOccurrenceOfAVoteFieldWinsAsInAFullParse) {
  Vote first = MakeVote("first", 1);
  Vote second;
  second.set_agent_id("second");
  second.set_expires_at_ms(2);
  const std::string vote_bytes = first.SerializeAsString() + second.SerializeAsString();
  std::string record = "\x12";
  record += static_cast<char>(vote_bytes.size());
  record += vote_bytes;
  ObjectRecord parsed;
  ASSERT_TRUE(parsed.ParseFromString(record));
  const auto summary = ScanObjectRecord(record);
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->min_expiry, static_cast<uint64_t>(parsed.votes(0).expires_at_ms()));
  EXPECT_EQ(summary->max_agent_id_size, parsed.votes(0).agent_id().size());
}

TEST(ScanObjectRecordTest, RejectsTruncatedOrMalformedBytes) {
  const std::string bytes = MakeRecord({MakeVote("agent", 1'700'000'060'000)}).SerializeAsString();
  EXPECT_EQ(ScanObjectRecord(bytes.substr(0, bytes.size() - 1)), std::nullopt);
  EXPECT_EQ(ScanObjectRecord(bytes.substr(0, 3)), std::nullopt);
  EXPECT_EQ(ScanObjectRecord(std::string("\x00", 1)), std::nullopt);      // tag 0
  EXPECT_EQ(ScanObjectRecord(std::string("\x0b", 1)), std::nullopt);      // start group
  EXPECT_EQ(ScanObjectRecord(std::string("\x0a\x05", 2)), std::nullopt);  // length past end
  // A vote whose own fields are broken, inside a well-framed record.
  EXPECT_EQ(ScanObjectRecord(std::string("\x12\x02\x0a\x05", 4)), std::nullopt);
}

TEST(AppendObjectRecordTest, SortsVotesKeepsTheLaterOfAnAgentAndRoundTrips) {
  ObjectData data;
  data.state.set_state("attacked");
  data.state.set_version(7);
  data.votes = {MakeVote("c", 30), MakeVote("a", 10), MakeVote("b", 500), MakeVote("b", 20)};
  std::string bytes = "prefix";
  const RecordSummary summary = AppendObjectRecord(data, &bytes);
  ASSERT_EQ(bytes.substr(0, 6), "prefix");
  bytes.erase(0, 6);
  EXPECT_EQ(summary.min_expiry, 10u);
  EXPECT_TRUE(summary.votes_canonical);
  const auto scanned = ScanObjectRecord(bytes);
  ASSERT_TRUE(scanned.has_value());
  EXPECT_EQ(scanned->min_expiry, 10u);
  EXPECT_TRUE(scanned->votes_canonical);

  ObjectData parsed;
  ASSERT_TRUE(ParseObjectRecord(bytes, &parsed));
  EXPECT_TRUE(MessageDifferencer::Equals(parsed.state, data.state));
  ASSERT_EQ(parsed.votes.size(), 3u);
  EXPECT_EQ(parsed.votes[0].agent_id(), "a");
  EXPECT_EQ(parsed.votes[1].agent_id(), "b");
  EXPECT_EQ(parsed.votes[1].expires_at_ms(), 20);  // The later of b's two votes.
  EXPECT_EQ(parsed.votes[2].agent_id(), "c");
}

TEST(ParseObjectStateTest, ReadsOnlyTheStateAndMergesRepeatedOccurrences) {
  const ObjectRecord record = MakeRecord({MakeVote("a", 1)});
  StoredState state;
  state.set_pin_reason("stale");
  ASSERT_TRUE(ParseObjectState(record.SerializeAsString(), &state));
  EXPECT_TRUE(MessageDifferencer::Equals(state, record.state()));

  StoredState later;
  later.set_version(9);
  ObjectRecord second;
  *second.mutable_state() = later;
  const std::string bytes = record.SerializeAsString() + second.SerializeAsString();
  ObjectRecord parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  ASSERT_TRUE(ParseObjectState(bytes, &state));
  EXPECT_TRUE(MessageDifferencer::Equals(state, parsed.state()));

  ASSERT_TRUE(ParseObjectState("", &state));
  EXPECT_TRUE(MessageDifferencer::Equals(state, StoredState()));
  EXPECT_FALSE(ParseObjectState(std::string("\x0a\x05", 2), &state));
}

}  // namespace
}  // namespace tally::storage::internal
