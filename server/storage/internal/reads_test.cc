#include "server/storage/internal/reads.h"

#include <string>

#include "gtest/gtest.h"
#include "tally/records/v1/records.pb.h"

namespace tally::storage::internal {
namespace {

using records::v1::Vote;

TEST(ParseVoteExpiryTest, ReadsExpiryOfAFullVote) {
  Vote vote;
  vote.set_agent_id("agent");
  vote.set_state("attacked");
  (*vote.mutable_attributes())["k"] = "v";
  vote.set_observed_at_ms(1'700'000'000'000);
  vote.set_expires_at_ms(1'700'000'060'000);
  EXPECT_EQ(ParseVoteExpiry(vote.SerializeAsString()), 1'700'000'060'000);
}

TEST(ParseVoteExpiryTest, AbsentExpiryIsZero) {
  Vote vote;
  vote.set_agent_id("agent");
  EXPECT_EQ(ParseVoteExpiry(vote.SerializeAsString()), 0);
  EXPECT_EQ(ParseVoteExpiry(""), 0);
}

TEST(ParseVoteExpiryTest, NegativeExpiryRoundTrips) {
  Vote vote;
  vote.set_expires_at_ms(-5);
  EXPECT_EQ(ParseVoteExpiry(vote.SerializeAsString()), -5);
}

TEST(ParseVoteExpiryTest, SkipsFieldsOfEveryWireTypeFromNewerSchemas) {
  Vote vote;
  vote.set_expires_at_ms(42);
  std::string bytes = vote.SerializeAsString();
  bytes += std::string("\x99\x06", 2) + std::string(8, '\x01');  // field 99, fixed64
  bytes += std::string("\x9d\x06", 2) + std::string(4, '\x02');  // field 99, fixed32
  bytes += std::string("\x9a\x06\x03", 3) + "abc";               // field 99, bytes
  bytes += std::string("\x98\x06\xff\x01", 4);                   // field 99, varint
  EXPECT_EQ(ParseVoteExpiry(bytes), 42);
}

TEST(ParseVoteExpiryTest, LastOccurrenceWinsAsInAFullParse) {
  Vote first;
  first.set_expires_at_ms(1);
  Vote second;
  second.set_expires_at_ms(2);
  const std::string bytes = first.SerializeAsString() + second.SerializeAsString();
  Vote parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(ParseVoteExpiry(bytes), parsed.expires_at_ms());
}

TEST(ParseVoteExpiryTest, RejectsTruncatedOrMalformedBytes) {
  Vote vote;
  vote.set_agent_id("agent");
  vote.set_expires_at_ms(1'700'000'060'000);
  const std::string bytes = vote.SerializeAsString();
  EXPECT_EQ(ParseVoteExpiry(bytes.substr(0, bytes.size() - 1)), std::nullopt);
  EXPECT_EQ(ParseVoteExpiry(bytes.substr(0, 3)), std::nullopt);
  EXPECT_EQ(ParseVoteExpiry(std::string("\x00", 1)), std::nullopt);      // tag 0
  EXPECT_EQ(ParseVoteExpiry(std::string("\x0b", 1)), std::nullopt);      // start group
  EXPECT_EQ(ParseVoteExpiry(std::string("\x0a\x05", 2)), std::nullopt);  // length past end
}

}  // namespace
}  // namespace tally::storage::internal
