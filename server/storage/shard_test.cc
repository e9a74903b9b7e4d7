#include "server/storage/shard.h"

#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace tally::storage {
namespace {

using records::v1::ObjectRecord;
using records::v1::ShardMeta;
using records::v1::StoredState;
using records::v1::Vote;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

#define TALLY_CONCAT_INNER(a, b) a##b
#define TALLY_CONCAT(a, b) TALLY_CONCAT_INNER(a, b)
#define ASSERT_OK(expr)                                        \
  do {                                                         \
    const absl::Status tally_status = (expr);                  \
    ASSERT_TRUE(tally_status.ok()) << tally_status.ToString(); \
  } while (false)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(TALLY_CONCAT(tally_statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(statusor, lhs, expr)        \
  auto statusor = (expr);                                     \
  ASSERT_TRUE(statusor.ok()) << statusor.status().ToString(); \
  lhs = std::move(*statusor)

MATCHER_P(EqualsProto, expected, "") {
  return google::protobuf::util::MessageDifferencer::Equals(arg, expected);
}

MATCHER_P(AgentIs, agent_id, "") { return arg.agent_id() == agent_id; }

Vote MakeVote(const std::string& agent_id, const std::string& state, int64_t expires_at_ms) {
  Vote vote;
  vote.set_agent_id(agent_id);
  vote.set_state(state);
  vote.set_observed_at_ms(expires_at_ms - 1000);
  vote.set_expires_at_ms(expires_at_ms);
  (*vote.mutable_attributes())["source"] = absl::StrCat("check-", agent_id);
  return vote;
}

ObjectData MakeObject(const std::string& state, std::vector<Vote> votes) {
  ObjectData data;
  data.state.set_state(state);
  data.state.set_version(7);
  data.state.set_updated_at_ms(1234);
  for (const Vote& vote : votes) ++(*data.state.mutable_tally())[vote.state()];
  data.votes = std::move(votes);
  return data;
}

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "shard_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << "mkdtemp " << pattern;
    root_ = pattern;
    dir_ = root_ + "/shard";
  }

  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  static ShardOptions FastOptions() {
    ShardOptions options;
    options.no_sync = true;
    return options;
  }

  absl::StatusOr<std::unique_ptr<Shard>> Open(const ShardOptions& options = FastOptions()) {
    return Shard::Open(dir_, options);
  }

  // Commits one batch that puts `objects`.
  static absl::Status PutAll(Shard& shard,
                             std::vector<std::pair<std::string, ObjectData>> objects) {
    absl::StatusOr<std::unique_ptr<WriteBatch>> batch = shard.NewWriteBatch();
    if (!batch.ok()) return batch.status();
    for (auto& [key, data] : objects) (*batch)->PutObject(key, std::move(data));
    return (*batch)->Commit();
  }

  static absl::Status Delete(Shard& shard, const std::string& key) {
    absl::StatusOr<std::unique_ptr<WriteBatch>> batch = shard.NewWriteBatch();
    if (!batch.ok()) return batch.status();
    (*batch)->DeleteObject(key);
    return (*batch)->Commit();
  }

  static std::optional<ObjectData> Get(Shard& shard, const std::string& key) {
    absl::StatusOr<std::unique_ptr<Reader>> reader = shard.NewReader();
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return std::nullopt;
    absl::StatusOr<std::optional<ObjectData>> object = (*reader)->GetObject(key);
    EXPECT_TRUE(object.ok()) << object.status();
    return object.ok() ? std::move(*object) : std::nullopt;
  }

  static std::vector<std::string> Expired(Shard& shard, int64_t now_ms, size_t limit = 1000) {
    absl::StatusOr<std::unique_ptr<Reader>> reader = shard.NewReader();
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return {};
    absl::StatusOr<std::vector<std::string>> keys = (*reader)->ExpiredObjects(now_ms, limit);
    EXPECT_TRUE(keys.ok()) << keys.status();
    return keys.ok() ? std::move(*keys) : std::vector<std::string>{};
  }

  static std::vector<std::string> ScanKeys(Shard& shard, std::string_view prefix,
                                           std::string_view after, bool inclusive, size_t limit) {
    absl::StatusOr<std::unique_ptr<Reader>> reader = shard.NewReader();
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return {};
    auto states = (*reader)->Scan(prefix, after, inclusive, limit);
    EXPECT_TRUE(states.ok()) << states.status();
    std::vector<std::string> keys;
    if (states.ok()) {
      for (const auto& [key, state] : *states) keys.push_back(key);
    }
    return keys;
  }

  static uint64_t Count(Shard& shard) {
    absl::StatusOr<std::unique_ptr<Reader>> reader = shard.NewReader();
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return 0;
    absl::StatusOr<uint64_t> count = (*reader)->CountStates();
    EXPECT_TRUE(count.ok()) << count.status();
    return count.ok() ? *count : 0;
  }

  std::string root_;
  std::string dir_;
};

void ExpectObjectsEqual(const ObjectData& actual, const ObjectData& expected) {
  EXPECT_THAT(actual.state, EqualsProto(expected.state));
  ASSERT_EQ(actual.votes.size(), expected.votes.size());
  for (size_t i = 0; i < expected.votes.size(); ++i) {
    EXPECT_THAT(actual.votes[i], EqualsProto(expected.votes[i])) << "vote " << i;
  }
}

// --- Open and meta ---

TEST_F(ShardTest, OpenCreatesDirectoryAndMetaWithSchemaVersion) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  EXPECT_TRUE(std::filesystem::is_directory(dir_));
  EXPECT_EQ(shard->dir(), dir_);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(ShardMeta meta, reader->GetMeta());
  EXPECT_EQ(meta.schema_version(), kShardSchemaVersion);
  EXPECT_EQ(meta.source_offset(), 0);
  EXPECT_EQ(meta.changelog_offset(), 0);
  ASSERT_OK_AND_ASSIGN(uint64_t count, reader->CountStates());
  EXPECT_EQ(count, 0u);
}

TEST_F(ShardTest, OpenUsesInitialMapSizeForNewShard) {
  ShardOptions options = FastOptions();
  options.initial_map_size = uint64_t{8} << 20;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
  EXPECT_EQ(shard->map_size(), options.initial_map_size);
}

TEST_F(ShardTest, OpenOnARegularFileFailsWithFailedPrecondition) {
  std::ofstream(root_ + "/file") << "not a directory";
  absl::StatusOr<std::unique_ptr<Shard>> shard = Shard::Open(root_ + "/file", FastOptions());
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kFailedPrecondition) << shard.status();
  EXPECT_THAT(shard.status().message(), HasSubstr(root_ + "/file"));
}

TEST_F(ShardTest, SecondOpenOfSameDirectoryFailsWhileFirstIsOpen) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> first, Open());
  // Through another spelling of the same path.
  absl::StatusOr<std::unique_ptr<Shard>> second = Shard::Open(root_ + "/./shard", FastOptions());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr("already open"));
  first.reset();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> again, Open());
}

TEST_F(ShardTest, ReopenWithOtherSchemaVersionFailsWithFailedPrecondition) {
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
    ShardMeta meta;
    meta.set_schema_version(kShardSchemaVersion + 1);
    batch->SetMeta(meta);
    ASSERT_OK(batch->Commit());
  }
  absl::StatusOr<std::unique_ptr<Shard>> shard = Open();
  ASSERT_FALSE(shard.ok());
  EXPECT_EQ(shard.status().code(), absl::StatusCode::kFailedPrecondition) << shard.status();
  EXPECT_THAT(shard.status().message(), HasSubstr(dir_));
  EXPECT_THAT(shard.status().message(),
              HasSubstr(absl::StrCat("schema version ", kShardSchemaVersion + 1)));
  EXPECT_THAT(shard.status().message(),
              HasSubstr(absl::StrCat("reads version ", kShardSchemaVersion)));
  // The failed open released the directory: opening again fails the same way.
  EXPECT_THAT(Open().status().message(), HasSubstr("schema version"));
}

TEST_F(ShardTest, ReopenKeepsCommittedObjectsAndMeta) {
  constexpr int kObjects = 500;
  ShardMeta meta;
  meta.set_schema_version(kShardSchemaVersion);
  meta.set_scenario("site-under-attack");
  meta.set_partition(3);
  meta.set_source_offset(4242);
  meta.set_changelog_offset(99);
  {
    ShardOptions options;  // Synced commits: what the processor uses.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
    for (int i = 0; i < kObjects; ++i) {
      batch->PutObject(
          absl::StrFormat("obj/%04d", i),
          MakeObject("up", {MakeVote("a", "up", 1000 + i), MakeVote("b", "up", 5000)}));
    }
    batch->SetMeta(meta);
    ASSERT_OK(batch->Commit());
    batch.reset();
    ASSERT_OK(Delete(*shard, "obj/0007"));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  EXPECT_EQ(Count(*shard), kObjects - 1u);
  EXPECT_EQ(Get(*shard, "obj/0007"), std::nullopt);
  for (int i = 0; i < kObjects; ++i) {
    if (i == 7) continue;
    std::optional<ObjectData> object = Get(*shard, absl::StrFormat("obj/%04d", i));
    ASSERT_TRUE(object.has_value()) << i;
    ExpectObjectsEqual(
        *object, MakeObject("up", {MakeVote("a", "up", 1000 + i), MakeVote("b", "up", 5000)}));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(ShardMeta reopened_meta, reader->GetMeta());
  EXPECT_THAT(reopened_meta, EqualsProto(meta));
  // The expiry index survived too: votes of "a" expire at 1000 + i.
  EXPECT_THAT(Expired(*shard, 1005),
              ElementsAre("obj/0000", "obj/0001", "obj/0002", "obj/0003", "obj/0004", "obj/0005"));
}

// --- Objects ---

TEST_F(ShardTest, PutObjectThenGetObjectRoundTrips) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ObjectData object = MakeObject(
      "attacked", {MakeVote("agent-1", "attacked", 10'000), MakeVote("agent-2", "calm", 20'000)});
  object.state.set_pinned(true);
  object.state.set_pin_reason("operator");
  ASSERT_OK(PutAll(*shard, {{"site/a", object}}));

  std::optional<ObjectData> read = Get(*shard, "site/a");
  ASSERT_TRUE(read.has_value());
  ExpectObjectsEqual(*read, object);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(std::optional<StoredState> state, reader->GetState("site/a"));
  ASSERT_TRUE(state.has_value());
  EXPECT_THAT(*state, EqualsProto(object.state));
  EXPECT_EQ(Count(*shard), 1u);
}

TEST_F(ShardTest, ObjectWithEmptyStateAndNoVotesRoundTrips) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"empty", ObjectData{}}}));
  std::optional<ObjectData> read = Get(*shard, "empty");
  ASSERT_TRUE(read.has_value());
  EXPECT_THAT(read->state, EqualsProto(StoredState()));
  EXPECT_THAT(read->votes, IsEmpty());
}

TEST_F(ShardTest, MissingObjectReadsAsNullopt) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"present", MakeObject("x", {MakeVote("a", "x", 1)})}}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> object, reader->GetObject("absent"));
  EXPECT_EQ(object, std::nullopt);
  ASSERT_OK_AND_ASSIGN(std::optional<StoredState> state, reader->GetState("absent"));
  EXPECT_EQ(state, std::nullopt);
  // A key that is a prefix of a stored one is a different object.
  ASSERT_OK_AND_ASSIGN(object, reader->GetObject("pres"));
  EXPECT_EQ(object, std::nullopt);
}

TEST_F(ShardTest, VotesReadBackSortedByAgentId) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"o", MakeObject("x", {MakeVote("c", "x", 3), MakeVote("a", "x", 1),
                                                   MakeVote("b", "x", 2)})}}));
  std::optional<ObjectData> read = Get(*shard, "o");
  ASSERT_TRUE(read.has_value());
  EXPECT_THAT(read->votes, ElementsAre(AgentIs("a"), AgentIs("b"), AgentIs("c")));
}

TEST_F(ShardTest, TwoVotesOfOneAgentKeepTheLaterOne) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(
      *shard, {{"o", MakeObject("x", {MakeVote("a", "old", 10), MakeVote("a", "new", 500)})}}));
  std::optional<ObjectData> read = Get(*shard, "o");
  ASSERT_TRUE(read.has_value());
  ASSERT_THAT(read->votes, SizeIs(1));
  EXPECT_EQ(read->votes[0].state(), "new");
  EXPECT_THAT(Expired(*shard, 499), IsEmpty());  // No expiry entry for the dropped vote.
  EXPECT_THAT(Expired(*shard, 500), ElementsAre("o"));
}

TEST_F(ShardTest, DeleteObjectRemovesVotesStateAndExpiryEntries) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(
      PutAll(*shard, {{"gone", MakeObject("x", {MakeVote("a", "x", 10), MakeVote("b", "x", 20)})},
                      {"kept", MakeObject("y", {MakeVote("a", "y", 30)})}}));
  ASSERT_OK(Delete(*shard, "gone"));

  EXPECT_EQ(Get(*shard, "gone"), std::nullopt);
  EXPECT_EQ(Count(*shard), 1u);
  EXPECT_THAT(Expired(*shard, 1'000'000), ElementsAre("kept"));
  // Putting the object again shows no leftover votes.
  ASSERT_OK(PutAll(*shard, {{"gone", MakeObject("z", {MakeVote("c", "z", 40)})}}));
  std::optional<ObjectData> again = Get(*shard, "gone");
  ASSERT_TRUE(again.has_value());
  EXPECT_THAT(again->votes, ElementsAre(AgentIs("c")));
}

TEST_F(ShardTest, DeleteOfMissingObjectSucceedsAndChangesNothing) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"kept", MakeObject("y", {MakeVote("a", "y", 30)})}}));
  ASSERT_OK(Delete(*shard, "never-written"));
  EXPECT_EQ(Count(*shard), 1u);
  EXPECT_TRUE(Get(*shard, "kept").has_value());
}

TEST_F(ShardTest, ObjectKeysThatPrefixEachOtherKeepSeparateVotes) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"a", MakeObject("x", {MakeVote("1", "x", 10)})},
                            {"ab", MakeObject("y", {MakeVote("2", "y", 20)})},
                            {"a b", MakeObject("z", {MakeVote("3", "z", 30)})}}));
  ASSERT_OK(Delete(*shard, "a"));
  std::optional<ObjectData> ab = Get(*shard, "ab");
  ASSERT_TRUE(ab.has_value());
  EXPECT_THAT(ab->votes, ElementsAre(AgentIs("2")));
  std::optional<ObjectData> a_b = Get(*shard, "a b");
  ASSERT_TRUE(a_b.has_value());
  EXPECT_THAT(a_b->votes, ElementsAre(AgentIs("3")));
  EXPECT_THAT(Expired(*shard, 100), ElementsAre("ab", "a b"));
}

TEST_F(ShardTest, ReplacingVotesRemovesStaleVotesAndStaleExpiryEntries) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"o", MakeObject("x", {MakeVote("a", "x", 10), MakeVote("b", "x", 20),
                                                   MakeVote("c", "x", 30)})}}));
  // "a" and "c" leave, "b" gets a later expiry, "d" joins.
  ObjectData replacement = MakeObject("y", {MakeVote("b", "y", 100), MakeVote("d", "y", 200)});
  ASSERT_OK(PutAll(*shard, {{"o", replacement}}));

  std::optional<ObjectData> read = Get(*shard, "o");
  ASSERT_TRUE(read.has_value());
  ExpectObjectsEqual(*read, replacement);
  // An expiry entry left at 10, 20 or 30 would list "o" before 100.
  EXPECT_THAT(Expired(*shard, 99), IsEmpty());
  EXPECT_THAT(Expired(*shard, 100), ElementsAre("o"));

  // Dropping "d" and keeping "b" as it was removes d's entry only.
  ASSERT_OK(PutAll(*shard, {{"o", MakeObject("z", {MakeVote("b", "z", 100)})}}));
  EXPECT_THAT(Expired(*shard, 99), IsEmpty());
  EXPECT_THAT(Expired(*shard, 100), ElementsAre("o"));
  // With "b" gone too, nothing of "o" is left in the index.
  ASSERT_OK(PutAll(*shard, {{"o", MakeObject("", {})}}));
  EXPECT_THAT(Expired(*shard, 1'000'000), IsEmpty());
  read = Get(*shard, "o");
  ASSERT_TRUE(read.has_value());
  EXPECT_THAT(read->votes, IsEmpty());
}

TEST_F(ShardTest, ReplacingVotesWithUnchangedExpiryKeepsTheirExpiryEntries) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(
      PutAll(*shard, {{"o", MakeObject("x", {MakeVote("a", "x", 50), MakeVote("b", "x", 60)})}}));
  ASSERT_OK(
      PutAll(*shard, {{"o", MakeObject("y", {MakeVote("a", "y", 50), MakeVote("b", "y", 60)})}}));
  EXPECT_THAT(Expired(*shard, 49), IsEmpty());
  EXPECT_THAT(Expired(*shard, 50), ElementsAre("o"));
  std::optional<ObjectData> read = Get(*shard, "o");
  ASSERT_TRUE(read.has_value());
  ASSERT_THAT(read->votes, SizeIs(2));
  EXPECT_EQ(read->votes[0].state(), "y");
  EXPECT_EQ(read->votes[1].state(), "y");
}

TEST_F(ShardTest, KeysWithHighBytesSortAsUnsignedBytes) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  // One batch into an empty shard: written in our sorted order with MDB_APPEND, which LMDB
  // refuses if that order differs from its own (memcmp). Object keys are raw bytes; agent ids are
  // proto strings, so UTF-8 ("\xc3\xa9" is e-acute).
  ASSERT_OK(PutAll(
      *shard, {{"\xff", MakeObject("x", {MakeVote("\xc3\xa9", "x", 1), MakeVote("b", "x", 1)})},
               {"a", MakeObject("x", {MakeVote("\xc3\xa9", "x", 1)})},
               {"\x7f", MakeObject("x", {})},
               {"\x80\x01", MakeObject("x", {})}}));
  EXPECT_THAT(ScanKeys(*shard, "", "", false, 10), ElementsAre("a", "\x7f", "\x80\x01", "\xff"));
  std::optional<ObjectData> high = Get(*shard, "\xff");
  ASSERT_TRUE(high.has_value());
  EXPECT_THAT(high->votes, ElementsAre(AgentIs("b"), AgentIs("\xc3\xa9")));
}

TEST_F(ShardTest, LaterBatchWithKeysBeforeAmongAndAfterStoredOnesKeepsEverything) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"m1", MakeObject("old", {MakeVote("a", "x", 10)})},
                            {"m3", MakeObject("old", {MakeVote("a", "x", 30)})}}));
  // Before the stored keys, between them, replacing one, and past the end (the append path).
  ASSERT_OK(PutAll(*shard, {{"z9", MakeObject("new", {MakeVote("a", "x", 90)})},
                            {"a0", MakeObject("new", {MakeVote("a", "x", 5)})},
                            {"m2", MakeObject("new", {MakeVote("a", "x", 20)})},
                            {"m3", MakeObject("new", {MakeVote("b", "x", 35)})},
                            {"z8", MakeObject("new", {MakeVote("a", "x", 80)})}}));
  EXPECT_THAT(ScanKeys(*shard, "", "", false, 10), ElementsAre("a0", "m1", "m2", "m3", "z8", "z9"));
  std::optional<ObjectData> m3 = Get(*shard, "m3");
  ASSERT_TRUE(m3.has_value());
  EXPECT_EQ(m3->state.state(), "new");
  EXPECT_THAT(m3->votes, ElementsAre(AgentIs("b")));
  EXPECT_THAT(Expired(*shard, 100), ElementsAre("a0", "m1", "m2", "m3", "z8", "z9"));
  EXPECT_THAT(Expired(*shard, 34), ElementsAre("a0", "m1", "m2"));  // m3's old entry (30) is gone
}

TEST_F(ShardTest, LongestAllowedKeysAreAccepted) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  const std::string key(kMaxObjectAndAgentIdSize - 2, 'k');
  ASSERT_OK(PutAll(*shard, {{key, MakeObject("x", {MakeVote("ag", "x", 5)})},
                            {std::string(kMaxObjectAndAgentIdSize, 'z'), MakeObject("x", {})}}));
  std::optional<ObjectData> read = Get(*shard, key);
  ASSERT_TRUE(read.has_value());
  EXPECT_THAT(read->votes, ElementsAre(AgentIs("ag")));
  EXPECT_THAT(Expired(*shard, 5), ElementsAre(key));
}

TEST_F(ShardTest, CommitRejectsInvalidKeysAndLeavesShardUnchanged) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"kept", MakeObject("y", {MakeVote("a", "y", 30)})}}));
  const std::vector<std::pair<std::string, ObjectData>> invalid = {
      {"", MakeObject("x", {})},
      {std::string("nul\0key", 7), MakeObject("x", {})},
      {std::string(kMaxObjectAndAgentIdSize + 1, 'k'), MakeObject("x", {})},
      {std::string(kMaxObjectAndAgentIdSize - 1, 'k'), MakeObject("x", {MakeVote("ag", "x", 1)})},
  };
  for (const auto& [key, data] : invalid) {
    SCOPED_TRACE(key.size());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
    batch->PutObject("valid", MakeObject("v", {}));
    batch->PutObject(key, data);
    absl::Status status = batch->Commit();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(dir_));
    // The batch is spent.
    EXPECT_EQ(batch->Commit().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(batch->GetObject("kept").status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(batch->GetMeta().status().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(Count(*shard), 1u);
  EXPECT_EQ(Get(*shard, "valid"), std::nullopt);
}

// --- Objects from serialized changelog records ---

std::string Record(const ObjectData& data, int64_t source_offset = 0) {
  records::v1::ObjectRecord record;
  *record.mutable_state() = data.state;
  for (const Vote& vote : data.votes) *record.add_votes() = vote;
  record.set_source_offset(source_offset);
  return record.SerializeAsString();
}

TEST_F(ShardTest, PutObjectBytesStoresTheObjectAndItsExpiryAsPutObjectWould) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  const ObjectData object =
      MakeObject("x", {MakeVote("a", "x", 40), MakeVote("b", "x", 20), MakeVote("c", "y", 30)});
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  ASSERT_OK(batch->PutObjectBytes("bytes", Record(object, 1234)));
  // The batch reads its pending bytes back as an object.
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> pending, batch->GetObject("bytes"));
  ASSERT_TRUE(pending.has_value());
  ExpectObjectsEqual(*pending, object);
  ASSERT_OK(batch->Commit());
  batch.reset();

  std::optional<ObjectData> read = Get(*shard, "bytes");
  ASSERT_TRUE(read.has_value());
  ExpectObjectsEqual(*read, object);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(std::optional<StoredState> state, reader->GetState("bytes"));
  ASSERT_TRUE(state.has_value());
  EXPECT_THAT(*state, EqualsProto(object.state));
  reader.reset();
  EXPECT_THAT(Expired(*shard, 19), IsEmpty());
  EXPECT_THAT(Expired(*shard, 20), ElementsAre("bytes"));
  EXPECT_EQ(Count(*shard), 1u);
}

TEST_F(ShardTest, PutObjectBytesWithUnsortedOrDoubledVotesSortsAndKeepsTheLaterVote) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  ASSERT_OK(batch->PutObjectBytes(
      "o", Record(MakeObject(
               "x", {MakeVote("c", "x", 3), MakeVote("a", "old", 1), MakeVote("a", "new", 100)}))));
  ASSERT_OK(batch->Commit());
  batch.reset();
  std::optional<ObjectData> read = Get(*shard, "o");
  ASSERT_TRUE(read.has_value());
  ASSERT_THAT(read->votes, ElementsAre(AgentIs("a"), AgentIs("c")));
  EXPECT_EQ(read->votes[0].state(), "new");
  EXPECT_THAT(Expired(*shard, 2), IsEmpty());  // No expiry entry for the dropped vote.
  EXPECT_THAT(Expired(*shard, 3), ElementsAre("o"));
}

TEST_F(ShardTest, PutObjectBytesReplacesAStoredObjectAndMovesItsExpiryEntry) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"o", MakeObject("x", {MakeVote("a", "x", 10)})},
                            {"p", MakeObject("x", {MakeVote("a", "x", 15)})}}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  ASSERT_OK(batch->PutObjectBytes("o", Record(MakeObject("y", {MakeVote("b", "y", 50)}))));
  ASSERT_OK(batch->PutObjectBytes("p", Record(MakeObject("y", {}))));
  ASSERT_OK(batch->Commit());
  batch.reset();
  EXPECT_THAT(Expired(*shard, 49), IsEmpty());  // The old entries at 10 and 15 are gone.
  EXPECT_THAT(Expired(*shard, 50), ElementsAre("o"));
  std::optional<ObjectData> o = Get(*shard, "o");
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->state.state(), "y");
  EXPECT_THAT(o->votes, ElementsAre(AgentIs("b")));
  std::optional<ObjectData> p = Get(*shard, "p");
  ASSERT_TRUE(p.has_value());
  EXPECT_THAT(p->votes, IsEmpty());
}

TEST_F(ShardTest, PutObjectBytesRejectsBrokenFramingAndLeavesTheBatchUnchanged) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  const std::string record = Record(MakeObject("x", {MakeVote("a", "x", 10)}));
  const absl::Status status = batch->PutObjectBytes("o", record.substr(0, record.size() - 1));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(dir_));
  EXPECT_EQ(batch->size(), 0u);
  ASSERT_OK(batch->Commit());
  batch.reset();
  EXPECT_EQ(Count(*shard), 0u);
}

TEST_F(ShardTest, CommitRejectsPutObjectBytesWithTooLongAgentId) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  ASSERT_OK(batch->PutObjectBytes(std::string(kMaxObjectAndAgentIdSize - 1, 'k'),
                                  Record(MakeObject("x", {MakeVote("ag", "x", 1)}))));
  const absl::Status status = batch->Commit();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  batch.reset();
  EXPECT_EQ(Count(*shard), 0u);
}

TEST_F(ShardTest, PutStagedAppliesStagedWritesAfterTheBatchsOwnInTheirOrder) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"b", MakeObject("x", {MakeVote("a", "x", 5)})}}));

  StagedObjects staged;
  EXPECT_EQ(staged.size(), 0u);
  EXPECT_EQ(staged.max_source_offset(), -1);
  ASSERT_OK(staged.PutObjectBytes("a", Record(MakeObject("staged", {MakeVote("a", "y", 30)}), 7)));
  staged.DeleteObject("b");
  ASSERT_OK(staged.PutObjectBytes("c", Record(MakeObject("first", {MakeVote("a", "y", 10)}), 9)));
  ASSERT_OK(staged.PutObjectBytes("c", Record(MakeObject("second", {MakeVote("a", "y", 40)}), 8)));
  EXPECT_EQ(staged.size(), 4u);  // Writes, not objects.
  EXPECT_GT(staged.bytes(), 4u);
  EXPECT_EQ(staged.max_source_offset(), 9);
  absl::Status broken = staged.PutObjectBytes("d", "\x0a\x05");
  EXPECT_EQ(broken.code(), absl::StatusCode::kInvalidArgument) << broken;
  EXPECT_EQ(staged.size(), 4u);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  batch->PutObject("a", MakeObject("own", {MakeVote("a", "x", 20)}));
  batch->PutStaged(std::move(staged));
  EXPECT_EQ(batch->size(), 3u);  // a, b, c
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> a, batch->GetObject("a"));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->state.state(), "staged");
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> b, batch->GetObject("b"));
  EXPECT_EQ(b, std::nullopt);
  ASSERT_OK(batch->Commit());
  batch.reset();

  std::optional<ObjectData> read = Get(*shard, "a");
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->state.state(), "staged");
  EXPECT_EQ(Get(*shard, "b"), std::nullopt);
  read = Get(*shard, "c");
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->state.state(), "second");
  // Only the last write of each key has an expiry entry: a at 30, c at 40 (not 10, not 20).
  EXPECT_THAT(Expired(*shard, 29), IsEmpty());
  EXPECT_THAT(Expired(*shard, 40), ElementsAre("a", "c"));
}

TEST_F(ShardTest, TwoStagedObjectsInOneBatchApplyInOrder) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  StagedObjects first;
  ASSERT_OK(first.PutObjectBytes("k", Record(MakeObject("first", {MakeVote("a", "x", 10)}))));
  ASSERT_OK(first.PutObjectBytes("only-first", Record(MakeObject("x", {}))));
  StagedObjects second;
  ASSERT_OK(second.PutObjectBytes("k", Record(MakeObject("second", {MakeVote("a", "x", 20)}))));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  batch->PutStaged(std::move(first));
  batch->PutStaged(std::move(second));
  ASSERT_OK(batch->Commit());
  batch.reset();
  std::optional<ObjectData> k = Get(*shard, "k");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->state.state(), "second");
  EXPECT_TRUE(Get(*shard, "only-first").has_value());
  EXPECT_THAT(Expired(*shard, 15), IsEmpty());
  EXPECT_THAT(Expired(*shard, 20), ElementsAre("k"));
}

TEST_F(ShardTest, LastWriteOfAKeyInABatchIsTheOneCommitted) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  batch->PutObject("k", MakeObject("first", {MakeVote("a", "x", 10)}));
  batch->DeleteObject("k");
  batch->PutObject("k", MakeObject("last", {MakeVote("a", "x", 30)}));
  batch->PutObject("gone", MakeObject("x", {MakeVote("a", "x", 5)}));
  batch->DeleteObject("gone");
  ASSERT_OK(batch->Commit());
  batch.reset();
  std::optional<ObjectData> k = Get(*shard, "k");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->state.state(), "last");
  EXPECT_EQ(Get(*shard, "gone"), std::nullopt);
  EXPECT_EQ(Count(*shard), 1u);
  EXPECT_THAT(Expired(*shard, 29), IsEmpty());
  EXPECT_THAT(Expired(*shard, 30), ElementsAre("k"));
}

// --- Write batches ---

TEST_F(ShardTest, BatchGetObjectBytesIsWhatGetObjectParses) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  const ObjectData committed = MakeObject("x", {MakeVote("a", "x", 10)});
  ASSERT_OK(PutAll(*shard, {{"c", committed}, {"d", committed}}));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  // Unsorted votes: the bytes are what the batch would store, votes sorted.
  const ObjectData pending = MakeObject("y", {MakeVote("b", "y", 20), MakeVote("a", "y", 30)});
  batch->PutObject("new", pending);
  batch->DeleteObject("d");
  for (const char* key : {"c", "new"}) {
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> bytes, batch->GetObjectBytes(key));
    ASSERT_TRUE(bytes.has_value()) << key;
    ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> object, batch->GetObject(key));
    ASSERT_TRUE(object.has_value()) << key;
    ObjectRecord record;
    ASSERT_TRUE(record.ParseFromString(*bytes)) << key;
    ObjectData parsed{record.state(), {record.votes().begin(), record.votes().end()}};
    ExpectObjectsEqual(parsed, *object);
  }
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> bytes, batch->GetObjectBytes("new"));
  ObjectRecord record;
  ASSERT_TRUE(record.ParseFromString(*bytes));
  EXPECT_THAT(record.votes(), ElementsAre(AgentIs("a"), AgentIs("b")));
  ASSERT_OK_AND_ASSIGN(bytes, batch->GetObjectBytes("d"));
  EXPECT_EQ(bytes, std::nullopt);
  ASSERT_OK_AND_ASSIGN(bytes, batch->GetObjectBytes("absent"));
  EXPECT_EQ(bytes, std::nullopt);
  ASSERT_OK(batch->Commit());
  EXPECT_EQ(batch->GetObjectBytes("c").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShardTest, BatchReadsSeeItsPendingWritesOverCommittedData) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  const ObjectData committed = MakeObject("x", {MakeVote("a", "x", 10)});
  ASSERT_OK(PutAll(*shard, {{"c", committed}, {"d", committed}}));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  EXPECT_EQ(batch->size(), 0u);
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> c, batch->GetObject("c"));
  ASSERT_TRUE(c.has_value());
  ExpectObjectsEqual(*c, committed);

  const ObjectData pending = MakeObject("y", {MakeVote("b", "y", 20), MakeVote("a", "y", 30)});
  batch->PutObject("c", pending);
  batch->PutObject("new", pending);
  batch->DeleteObject("d");
  EXPECT_EQ(batch->size(), 3u);
  ASSERT_OK_AND_ASSIGN(c, batch->GetObject("c"));
  ASSERT_TRUE(c.has_value());
  EXPECT_THAT(c->state, EqualsProto(pending.state));
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> created, batch->GetObject("new"));
  EXPECT_TRUE(created.has_value());
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> d, batch->GetObject("d"));
  EXPECT_EQ(d, std::nullopt);
  // Later writes to a key replace earlier ones.
  batch->DeleteObject("c");
  batch->PutObject("d", committed);
  EXPECT_EQ(batch->size(), 3u);
  ASSERT_OK_AND_ASSIGN(c, batch->GetObject("c"));
  EXPECT_EQ(c, std::nullopt);
  ASSERT_OK_AND_ASSIGN(d, batch->GetObject("d"));
  EXPECT_TRUE(d.has_value());

  ASSERT_OK_AND_ASSIGN(ShardMeta meta, batch->GetMeta());
  EXPECT_EQ(meta.schema_version(), kShardSchemaVersion);
  meta.set_source_offset(77);
  batch->SetMeta(meta);
  ASSERT_OK_AND_ASSIGN(ShardMeta pending_meta, batch->GetMeta());
  EXPECT_EQ(pending_meta.source_offset(), 77);

  // Readers see none of it before Commit.
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
    ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> reader_c, reader->GetObject("c"));
    ASSERT_TRUE(reader_c.has_value());
    EXPECT_THAT(reader_c->state, EqualsProto(committed.state));
    ASSERT_OK_AND_ASSIGN(ShardMeta reader_meta, reader->GetMeta());
    EXPECT_EQ(reader_meta.source_offset(), 0);
  }
  ASSERT_OK(batch->Commit());
  EXPECT_EQ(Get(*shard, "c"), std::nullopt);
  EXPECT_TRUE(Get(*shard, "new").has_value());
  EXPECT_TRUE(Get(*shard, "d").has_value());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(ShardMeta committed_meta, reader->GetMeta());
  EXPECT_EQ(committed_meta.source_offset(), 77);
}

TEST_F(ShardTest, BatchDestroyedWithoutCommitChangesNothing) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  const ObjectData committed = MakeObject("x", {MakeVote("a", "x", 10)});
  ASSERT_OK(PutAll(*shard, {{"c", committed}}));
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
    batch->PutObject("c", MakeObject("y", {MakeVote("b", "y", 5)}));
    batch->PutObject("new", MakeObject("y", {}));
    batch->DeleteObject("c");
    ShardMeta meta;
    meta.set_schema_version(kShardSchemaVersion);
    meta.set_source_offset(5);
    batch->SetMeta(meta);
    ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> c, batch->GetObject("c"));
    EXPECT_EQ(c, std::nullopt);
  }
  std::optional<ObjectData> c = Get(*shard, "c");
  ASSERT_TRUE(c.has_value());
  ExpectObjectsEqual(*c, committed);
  EXPECT_EQ(Get(*shard, "new"), std::nullopt);
  EXPECT_EQ(Count(*shard), 1u);
  EXPECT_THAT(Expired(*shard, 9), IsEmpty());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(ShardMeta meta, reader->GetMeta());
  EXPECT_EQ(meta.source_offset(), 0);
  // The batch slot is free again.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> next, shard->NewWriteBatch());
}

TEST_F(ShardTest, SecondOpenBatchFailsWithFailedPrecondition) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  absl::StatusOr<std::unique_ptr<WriteBatch>> second = shard->NewWriteBatch();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr(dir_));
}

TEST_F(ShardTest, BatchIsSpentAfterCommit) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  // Reading first takes a snapshot, which the commit must release.
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> before, batch->GetObject("o"));
  EXPECT_EQ(before, std::nullopt);
  batch->PutObject("o", MakeObject("x", {MakeVote("a", "x", 10)}));
  ASSERT_OK(batch->Commit());
  EXPECT_EQ(batch->GetObject("o").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(batch->GetMeta().status().code(), absl::StatusCode::kFailedPrecondition);
  batch->DeleteObject("o");
  absl::Status again = batch->Commit();
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.message(), HasSubstr("after Commit"));
  EXPECT_TRUE(Get(*shard, "o").has_value());  // The write after Commit went nowhere.
}

TEST_F(ShardTest, NextBatchMayOpenOnceCommitReturnsBeforeTheOldOneIsDestroyed) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  batch->PutObject("first", MakeObject("x", {}));
  ASSERT_OK(batch->Commit());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> next, shard->NewWriteBatch());
  batch.reset();  // Destroying the spent batch does not free the slot a second time.
  EXPECT_EQ(shard->NewWriteBatch().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> first, next->GetObject("first"));
  EXPECT_TRUE(first.has_value());
  next->PutObject("second", MakeObject("y", {}));
  ASSERT_OK(next->Commit());
  EXPECT_EQ(Count(*shard), 2u);
}

TEST_F(ShardTest, FailedCommitAlsoEndsTheBatch) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  batch->PutObject("", MakeObject("x", {}));
  EXPECT_EQ(batch->Commit().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> next, shard->NewWriteBatch());
}

// --- Readers ---

TEST_F(ShardTest, ReaderKeepsItsSnapshotAcrossLaterCommits) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"o", MakeObject("old", {})}}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> old_reader, shard->NewReader());
  ASSERT_OK(PutAll(*shard, {{"o", MakeObject("new", {})}, {"p", MakeObject("new", {})}}));
  ASSERT_OK_AND_ASSIGN(std::optional<StoredState> old_state, old_reader->GetState("o"));
  ASSERT_TRUE(old_state.has_value());
  EXPECT_EQ(old_state->state(), "old");
  ASSERT_OK_AND_ASSIGN(uint64_t old_count, old_reader->CountStates());
  EXPECT_EQ(old_count, 1u);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> new_reader, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(std::optional<StoredState> new_state, new_reader->GetState("o"));
  ASSERT_TRUE(new_state.has_value());
  EXPECT_EQ(new_state->state(), "new");
}

TEST_F(ShardTest, ReaderTableFullIsUnavailableUntilAReaderEnds) {
  ShardOptions options = FastOptions();
  options.max_readers = 2;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> first, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> second, shard->NewReader());
  absl::StatusOr<std::unique_ptr<Reader>> third = shard->NewReader();
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kUnavailable) << third.status();
  EXPECT_THAT(third.status().message(), HasSubstr("MDB_READERS_FULL"));
  EXPECT_THAT(third.status().message(), HasSubstr(dir_));
  second.reset();
  ASSERT_OK_AND_ASSIGN(third, shard->NewReader());
  ASSERT_OK_AND_ASSIGN(uint64_t count, (*third)->CountStates());
  EXPECT_EQ(count, 0u);
}

class ScanTest : public ShardTest {
 protected:
  void SetUp() override {
    ShardTest::SetUp();
    ASSERT_OK_AND_ASSIGN(shard_, Open());
    std::vector<std::pair<std::string, ObjectData>> objects;
    for (const char* key : {"a", "a/1", "a/2", "a/3", "b/1", "b/2", "c"}) {
      objects.emplace_back(key, MakeObject(absl::StrCat("state of ", key), {}));
    }
    ASSERT_OK(PutAll(*shard_, std::move(objects)));
  }

  std::vector<std::string> Scan(std::string_view prefix, std::string_view after, bool inclusive,
                                size_t limit = 100) {
    return ScanKeys(*shard_, prefix, after, inclusive, limit);
  }

  std::unique_ptr<Shard> shard_;
};

TEST_F(ScanTest, EmptyPrefixAndAfterListsAllKeysInOrder) {
  EXPECT_THAT(Scan("", "", false), ElementsAre("a", "a/1", "a/2", "a/3", "b/1", "b/2", "c"));
  EXPECT_THAT(Scan("", "", true), ElementsAre("a", "a/1", "a/2", "a/3", "b/1", "b/2", "c"));
}

TEST_F(ScanTest, ReturnsStatesWithTheirKeys) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard_->NewReader());
  ASSERT_OK_AND_ASSIGN(auto states, reader->Scan("b/", "", false, 10));
  ASSERT_THAT(states, SizeIs(2));
  EXPECT_EQ(states[0].first, "b/1");
  EXPECT_EQ(states[0].second.state(), "state of b/1");
  EXPECT_EQ(states[1].first, "b/2");
  EXPECT_EQ(states[1].second.state(), "state of b/2");
}

TEST_F(ScanTest, ScanObjectsReturnsTheVotesWithTheStateInTheSameRange) {
  const ObjectData voted = MakeObject("up", {MakeVote("x", "up", 5000), MakeVote("y", "up", 6000)});
  ASSERT_OK(PutAll(*shard_, {{"b/1", voted}}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard_->NewReader());
  ASSERT_OK_AND_ASSIGN(auto objects, reader->ScanObjects("a/", "a/1", false, 10));
  ASSERT_THAT(objects, SizeIs(2));
  EXPECT_EQ(objects[0].first, "a/2");
  EXPECT_EQ(objects[1].first, "a/3");
  ASSERT_OK_AND_ASSIGN(objects, reader->ScanObjects("b/", "", false, 1));
  ASSERT_THAT(objects, SizeIs(1));
  EXPECT_EQ(objects[0].first, "b/1");
  ExpectObjectsEqual(objects[0].second, voted);
}

TEST_F(ScanTest, PrefixSelectsOnlyMatchingKeys) {
  EXPECT_THAT(Scan("a/", "", false), ElementsAre("a/1", "a/2", "a/3"));
  EXPECT_THAT(Scan("a", "", false), ElementsAre("a", "a/1", "a/2", "a/3"));
  EXPECT_THAT(Scan("c", "", false), ElementsAre("c"));
  EXPECT_THAT(Scan("d", "", false), IsEmpty());
  EXPECT_THAT(Scan("0", "", false), IsEmpty());
  EXPECT_THAT(Scan("b/2/", "", false), IsEmpty());
}

TEST_F(ScanTest, AfterIsExclusiveUnlessInclusive) {
  EXPECT_THAT(Scan("a/", "a/1", false), ElementsAre("a/2", "a/3"));
  EXPECT_THAT(Scan("a/", "a/1", true), ElementsAre("a/1", "a/2", "a/3"));
  EXPECT_THAT(Scan("", "b/1", false), ElementsAre("b/2", "c"));
  EXPECT_THAT(Scan("", "b/1", true), ElementsAre("b/1", "b/2", "c"));
}

TEST_F(ScanTest, AfterBetweenKeysStartsAtTheNextKey) {
  EXPECT_THAT(Scan("a/", "a/15", false), ElementsAre("a/2", "a/3"));
  EXPECT_THAT(Scan("a/", "a/15", true), ElementsAre("a/2", "a/3"));
}

TEST_F(ScanTest, AfterBeforeThePrefixStartsAtThePrefix) {
  EXPECT_THAT(Scan("b/", "a/2", false), ElementsAre("b/1", "b/2"));
  EXPECT_THAT(Scan("b/", "0", true), ElementsAre("b/1", "b/2"));
}

TEST_F(ScanTest, AfterPastThePrefixOrTheLastKeyFindsNothing) {
  EXPECT_THAT(Scan("a/", "a/3", false), IsEmpty());
  EXPECT_THAT(Scan("a/", "b", true), IsEmpty());
  EXPECT_THAT(Scan("", "c", false), IsEmpty());
  EXPECT_THAT(Scan("", "z", true), IsEmpty());
  EXPECT_THAT(Scan("a/", "a/3", true), ElementsAre("a/3"));
}

TEST_F(ScanTest, LimitCapsTheResult) {
  EXPECT_THAT(Scan("", "", false, 2), ElementsAre("a", "a/1"));
  EXPECT_THAT(Scan("a/", "a/1", true, 1), ElementsAre("a/1"));
  EXPECT_THAT(Scan("a/", "", false, 3), ElementsAre("a/1", "a/2", "a/3"));
  EXPECT_THAT(Scan("", "", false, 0), IsEmpty());
}

TEST_F(ScanTest, PagingWithTheLastKeyVisitsEveryKeyOnce) {
  std::vector<std::string> all;
  std::string after;
  for (int page = 0; page < 10; ++page) {
    std::vector<std::string> keys = Scan("", after, false, 3);
    if (keys.empty()) break;
    all.insert(all.end(), keys.begin(), keys.end());
    after = keys.back();
  }
  EXPECT_THAT(all, ElementsAre("a", "a/1", "a/2", "a/3", "b/1", "b/2", "c"));
}

TEST_F(ShardTest, ExpiredObjectsAreEarliestFirstWithoutDuplicatesUpToLimit) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  // Expiry entries in time order: (3, b) (5, c) (10, b) (20, a) (20, d) (40, e).
  ASSERT_OK(PutAll(*shard, {{"a", MakeObject("x", {MakeVote("1", "x", 20)})},
                            {"b", MakeObject("x", {MakeVote("1", "x", 10), MakeVote("2", "x", 3)})},
                            {"c", MakeObject("x", {MakeVote("1", "x", 5)})},
                            {"d", MakeObject("x", {MakeVote("1", "x", 20)})},
                            {"e", MakeObject("x", {MakeVote("1", "x", 40)})}}));
  EXPECT_THAT(Expired(*shard, 2), IsEmpty());
  EXPECT_THAT(Expired(*shard, 3), ElementsAre("b"));
  EXPECT_THAT(Expired(*shard, 15), ElementsAre("b", "c"));
  EXPECT_THAT(Expired(*shard, 20), ElementsAre("b", "c", "a", "d"));
  EXPECT_THAT(Expired(*shard, 1'000), ElementsAre("b", "c", "a", "d", "e"));
  // The limit counts distinct objects.
  EXPECT_THAT(Expired(*shard, 1'000, 2), ElementsAre("b", "c"));
  EXPECT_THAT(Expired(*shard, 1'000, 1), ElementsAre("b"));
  EXPECT_THAT(Expired(*shard, 1'000, 0), IsEmpty());
}

TEST_F(ShardTest, ExpiryOrderHoldsAcrossByteBoundariesOfTheTime) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  // Big-endian keys: 0x1ff sorts after 0xff although its low byte is smaller.
  ASSERT_OK(PutAll(*shard, {{"late", MakeObject("x", {MakeVote("1", "x", 0x1ff)})},
                            {"early", MakeObject("x", {MakeVote("1", "x", 0xff)})},
                            {"now", MakeObject("x", {MakeVote("1", "x", 1'700'000'000'000)})}}));
  EXPECT_THAT(Expired(*shard, 0x1fe), ElementsAre("early"));
  EXPECT_THAT(Expired(*shard, 1'700'000'000'000), ElementsAre("early", "late", "now"));
}

TEST_F(ShardTest, NegativeExpiryCountsAsAlreadyExpired) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"neg", MakeObject("x", {MakeVote("1", "x", -5)})},
                            {"pos", MakeObject("x", {MakeVote("1", "x", 7)})}}));
  EXPECT_THAT(Expired(*shard, 0), ElementsAre("neg"));
  EXPECT_THAT(Expired(*shard, -1), IsEmpty());
  // Replacing it still finds and removes the clamped entry.
  ASSERT_OK(PutAll(*shard, {{"neg", MakeObject("x", {MakeVote("1", "x", 100)})}}));
  EXPECT_THAT(Expired(*shard, 50), ElementsAre("pos"));
}

// --- Map growth ---

TEST_F(ShardTest, CommitGrowsAFullMapAndKeepsAllDataAfterReopen) {
  constexpr int kBatches = 4;
  constexpr int kPerBatch = 2'500;
  ShardOptions options = FastOptions();
  options.initial_map_size = 64 << 10;
  uint64_t grown_size = 0;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
    const uint64_t initial = shard->map_size();
    for (int b = 0; b < kBatches; ++b) {
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
      for (int i = 0; i < kPerBatch; ++i) {
        const int n = b * kPerBatch + i;
        batch->PutObject(absl::StrFormat("object/%06d", n),
                         MakeObject(absl::StrCat("s", n), {MakeVote("agent-a", "s", n),
                                                           MakeVote("agent-b", "s", n + 1)}));
      }
      ShardMeta meta;
      meta.set_schema_version(kShardSchemaVersion);
      meta.set_changelog_offset((b + 1) * kPerBatch);
      batch->SetMeta(meta);
      ASSERT_OK(batch->Commit());
    }
    grown_size = shard->map_size();
    // Several doublings: ~10k objects need megabytes.
    EXPECT_GE(grown_size, initial * 16);
    ASSERT_OK(shard->Sync());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
  EXPECT_GE(shard->map_size(), grown_size);  // The file remembers its size.
  EXPECT_EQ(Count(*shard), uint64_t{kBatches * kPerBatch});
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Reader> reader, shard->NewReader());
  for (int n = 0; n < kBatches * kPerBatch; n += 97) {
    ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> object,
                         reader->GetObject(absl::StrFormat("object/%06d", n)));
    ASSERT_TRUE(object.has_value()) << n;
    EXPECT_EQ(object->state.state(), absl::StrCat("s", n));
    EXPECT_THAT(object->votes, ElementsAre(AgentIs("agent-a"), AgentIs("agent-b")));
  }
  ASSERT_OK_AND_ASSIGN(ShardMeta meta, reader->GetMeta());
  EXPECT_EQ(meta.changelog_offset(), kBatches * kPerBatch);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> expired, reader->ExpiredObjects(2, 10));
  EXPECT_THAT(expired, ElementsAre("object/000000", "object/000001", "object/000002"));
}

TEST_F(ShardTest, BatchThatReadBeforeCommitStillGrowsTheMap) {
  ShardOptions options = FastOptions();
  options.initial_map_size = 64 << 10;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
  const uint64_t initial = shard->map_size();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
  // The read holds a snapshot; Commit must drop it, or the resize would wait for it forever.
  ASSERT_OK_AND_ASSIGN(std::optional<ObjectData> missing, batch->GetObject("object/000000"));
  EXPECT_EQ(missing, std::nullopt);
  for (int n = 0; n < 2'000; ++n) {
    batch->PutObject(absl::StrFormat("object/%06d", n), MakeObject("x", {MakeVote("a", "x", n)}));
  }
  ASSERT_OK(batch->Commit());
  EXPECT_GT(shard->map_size(), initial);
  EXPECT_EQ(Count(*shard), 2'000u);
}

TEST_F(ShardTest, ReopenWithLargerInitialMapSizeUsesIt) {
  ShardOptions options = FastOptions();
  options.initial_map_size = 1 << 20;
  { ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options)); }
  options.initial_map_size = 32 << 20;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
  EXPECT_EQ(shard->map_size(), options.initial_map_size);
}

// --- Concurrency ---

// Every batch rewrites all kKeys keys with one value and sets meta.source_offset to its number;
// readers on other threads must only ever see all keys at one batch's value, matching the meta.
// The map starts tiny and filler objects make it grow while readers are active.
TEST_F(ShardTest, ConcurrentReadersSeeOnlyWholeBatchesWhileTheMapGrows) {
  static constexpr int kBatches = 60;
  static constexpr int kKeys = 40;
  static constexpr int kFillerPerBatch = 60;
  constexpr int kReaders = 4;
  ShardOptions options = FastOptions();
  options.initial_map_size = 128 << 10;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
  const uint64_t initial_map_size = shard->map_size();

  std::atomic<bool> writer_done{false};
  auto read_loop = [&shard, &writer_done](int* snapshots) {
    int64_t last_offset = 0;
    bool last_round = false;
    while (!last_round) {
      // Read once more after the writer is done, so the last batch is checked too.
      last_round = writer_done.load();
      absl::StatusOr<std::unique_ptr<Reader>> reader = shard->NewReader();
      ASSERT_TRUE(reader.ok()) << reader.status();
      absl::StatusOr<ShardMeta> meta = (*reader)->GetMeta();
      ASSERT_TRUE(meta.ok()) << meta.status();
      auto states = (*reader)->Scan("key/", "", false, 1000);
      ASSERT_TRUE(states.ok()) << states.status();
      const int64_t offset = meta->source_offset();
      ASSERT_GE(offset, last_offset) << "snapshots went back in time";
      last_offset = offset;
      if (offset == 0) {
        ASSERT_THAT(*states, IsEmpty());
      } else {
        ASSERT_THAT(*states, SizeIs(kKeys));
        for (const auto& [key, state] : *states) {
          ASSERT_EQ(state.state(), absl::StrCat("batch-", offset)) << key;
        }
      }
      ++*snapshots;
    }
    EXPECT_EQ(last_offset, kBatches);
  };
  std::vector<int> snapshots(kReaders, 0);
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) readers.emplace_back(read_loop, &snapshots[r]);

  auto write_batches = [&shard]() -> absl::Status {
    for (int b = 1; b <= kBatches; ++b) {
      absl::StatusOr<std::unique_ptr<WriteBatch>> batch = shard->NewWriteBatch();
      if (!batch.ok()) return batch.status();
      for (int k = 0; k < kKeys; ++k) {
        (*batch)->PutObject(absl::StrFormat("key/%03d", k),
                            MakeObject(absl::StrCat("batch-", b), {MakeVote("a", "x", b)}));
      }
      for (int f = 0; f < kFillerPerBatch; ++f) {
        ObjectData filler = MakeObject("filler", {MakeVote("a", "x", b)});
        (*filler.votes[0].mutable_attributes())["padding"] = std::string(512, 'p');
        (*batch)->PutObject(absl::StrFormat("filler/%03d/%03d", b, f), std::move(filler));
      }
      ShardMeta meta;
      meta.set_schema_version(kShardSchemaVersion);
      meta.set_source_offset(b);
      (*batch)->SetMeta(meta);
      if (absl::Status status = (*batch)->Commit(); !status.ok()) return status;
    }
    return absl::OkStatus();
  };
  const absl::Status written = write_batches();
  writer_done = true;
  for (std::thread& reader : readers) reader.join();
  ASSERT_OK(written);

  EXPECT_GE(shard->map_size(), initial_map_size * 8) << "the map should have grown meanwhile";
  for (int r = 0; r < kReaders; ++r) EXPECT_GE(snapshots[r], 1) << "reader " << r;
}

TEST_F(ShardTest, SyncSucceedsAfterUnsyncedWrites) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  ASSERT_OK(PutAll(*shard, {{"o", MakeObject("x", {MakeVote("a", "x", 1)})}}));
  ASSERT_OK(shard->Sync());
}

TEST_F(ShardTest, CommitsThatSkipSyncAreKeptAfterSyncAndReopen) {
  {
    ShardOptions options;  // Synced commits, as the processor opens shards.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open(options));
    for (int b = 0; b < 3; ++b) {
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<WriteBatch> batch, shard->NewWriteBatch());
      if (b < 2) batch->SkipSync();  // The last one syncs as usual.
      batch->PutObject(absl::StrCat("o", b), MakeObject("x", {MakeVote("a", "x", 10 + b)}));
      ASSERT_OK(batch->Commit());
    }
    EXPECT_EQ(Count(*shard), 3u);
    ASSERT_OK(shard->Sync());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Shard> shard, Open());
  EXPECT_EQ(Count(*shard), 3u);
  EXPECT_THAT(Expired(*shard, 12), ElementsAre("o0", "o1", "o2"));
}

}  // namespace
}  // namespace tally::storage
