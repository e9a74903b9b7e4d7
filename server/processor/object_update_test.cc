#include "server/processor/object_update.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/processor/record_validation.h"

namespace tally::processor {
namespace {

using records::v1::ChangeCause;
using records::v1::ReportKind;
using records::v1::ReportRecord;
using ::testing::HasSubstr;

constexpr int64_t kNow = 1'000'000;

class ObjectUpdateTest : public ::testing::Test {
 protected:
  ObjectUpdateTest() {
    config::v1::Reducer config;
    config.mutable_majority();
    reducer_ = *NewReducer(config);
  }

  static ReportRecord Report(const std::string& agent, const std::string& state,
                             int64_t observed_at = kNow, int64_t ttl = 60'000) {
    ReportRecord r;
    r.set_kind(ReportKind::REPORT_KIND_REPORT);
    r.set_scenario("s");
    r.set_object_key("site-1");
    r.set_agent_id(agent);
    r.set_state(state);
    r.set_observed_at_ms(observed_at);
    r.set_ttl_ms(ttl);
    return r;
  }

  static ReportRecord Set(const std::string& state, bool pin) {
    ReportRecord r;
    r.set_kind(ReportKind::REPORT_KIND_SET);
    r.set_scenario("s");
    r.set_object_key("site-1");
    r.set_state(state);
    r.set_pin(pin);
    r.set_reason("ops");
    return r;
  }

  // Applies and keeps the result as the current object.
  ObjectUpdate Apply(const ReportRecord& r, int64_t now = kNow) {
    ObjectUpdate u = ApplyRecord(*reducer_, current_, r, now);
    if (u.deleted) {
      current_.reset();
    } else if (u.changed) {
      current_ = u.data;
    }
    return u;
  }

  std::unique_ptr<Reducer> reducer_;
  std::optional<storage::ObjectData> current_;
};

TEST_F(ObjectUpdateTest, FirstReportCreatesStateAtVersionOneWithEvent) {
  ObjectUpdate u = Apply(Report("a", "attack"));
  EXPECT_TRUE(u.changed);
  EXPECT_FALSE(u.deleted);
  EXPECT_EQ(u.data.state.state(), "attack");
  EXPECT_EQ(u.data.state.version(), 1);
  EXPECT_EQ(u.data.state.tally().at("attack"), 1);
  ASSERT_TRUE(u.event.has_value());
  EXPECT_EQ(u.event->old_state(), "");
  EXPECT_EQ(u.event->new_state(), "attack");
  EXPECT_EQ(u.event->version(), 1);
  EXPECT_EQ(u.event->cause(), ChangeCause::CHANGE_CAUSE_REPORT);
  ASSERT_EQ(u.data.votes.size(), 1u);
  EXPECT_EQ(u.data.votes[0].expires_at_ms(), kNow + 60'000);
}

TEST_F(ObjectUpdateTest, RepeatedVoteRefreshesExpiryWithoutEvent) {
  Apply(Report("a", "attack"));
  ObjectUpdate u = Apply(Report("a", "attack", kNow + 10));
  EXPECT_TRUE(u.changed);  // expires_at moved
  EXPECT_FALSE(u.event.has_value());
  EXPECT_EQ(u.data.state.version(), 1);
  EXPECT_EQ(u.data.votes[0].expires_at_ms(), kNow + 10 + 60'000);
}

TEST_F(ObjectUpdateTest, IdenticalReportChangesNothing) {
  Apply(Report("a", "attack"));
  ObjectUpdate u = Apply(Report("a", "attack"));
  EXPECT_FALSE(u.changed);
  EXPECT_FALSE(u.event.has_value());
}

TEST_F(ObjectUpdateTest, OnlyTheReportingAgentsVoteDecidesWhetherAReportChangesAnything) {
  for (const char* agent : {"a", "b", "c"}) Apply(Report(agent, "attack"));
  // b reports again among others, as before: nothing to write.
  ObjectUpdate same = Apply(Report("b", "attack"));
  EXPECT_FALSE(same.changed);
  // b's vote differs only in an attribute: written, but no change of state.
  ReportRecord tagged = Report("b", "attack");
  (*tagged.mutable_attributes())["source"] = "probe-2";
  ObjectUpdate u = Apply(tagged);
  EXPECT_TRUE(u.changed);
  EXPECT_FALSE(u.event.has_value());
  ASSERT_EQ(u.data.votes.size(), 3u);
  EXPECT_EQ(u.data.votes[1].attributes().at("source"), "probe-2");
  // An already expired report of an agent without a vote: nothing to write.
  EXPECT_FALSE(Apply(Report("d", "ok", kNow - 120'000)).changed);
  // The same from an agent with a vote removes it.
  ObjectUpdate removed = Apply(Report("c", "ok", kNow - 120'000));
  EXPECT_TRUE(removed.changed);
  EXPECT_EQ(removed.data.votes.size(), 2u);
}

TEST_F(ObjectUpdateTest, MajorityFlipsOnlyWithStrictMajority) {
  Apply(Report("a", "attack"));
  Apply(Report("b", "ok"));  // 1:1, keep previous
  EXPECT_EQ(current_->state.state(), "attack");
  ObjectUpdate u = Apply(Report("c", "ok"));
  EXPECT_EQ(u.data.state.state(), "ok");
  EXPECT_EQ(u.data.state.version(), 2);
  EXPECT_EQ(u.event->old_state(), "attack");
  EXPECT_EQ(u.data.state.tally().at("ok"), 2);
  EXPECT_EQ(u.data.state.tally().at("attack"), 1);
  // Votes stay sorted by agent id.
  ASSERT_EQ(u.data.votes.size(), 3u);
  EXPECT_EQ(u.data.votes[0].agent_id(), "a");
  EXPECT_EQ(u.data.votes[2].agent_id(), "c");
}

TEST_F(ObjectUpdateTest, AlreadyExpiredReportRemovesTheAgentsVote) {
  Apply(Report("a", "attack"));
  Apply(Report("b", "attack"));
  ObjectUpdate u = Apply(Report("a", "attack", kNow - 120'000));
  ASSERT_EQ(u.data.votes.size(), 1u);
  EXPECT_EQ(u.data.votes[0].agent_id(), "b");
}

TEST_F(ObjectUpdateTest, PinHoldsStateAgainstVotesUntilUnpinned) {
  Apply(Report("a", "attack"));
  ObjectUpdate pinned = Apply(Set("maintenance", true));
  EXPECT_EQ(pinned.data.state.state(), "maintenance");
  EXPECT_TRUE(pinned.data.state.pinned());
  EXPECT_EQ(pinned.event->cause(), ChangeCause::CHANGE_CAUSE_SET);
  ObjectUpdate vote = Apply(Report("b", "attack"));
  EXPECT_EQ(vote.data.state.state(), "maintenance");
  EXPECT_FALSE(vote.event.has_value());
  EXPECT_EQ(vote.data.state.tally().at("attack"), 2);  // votes are still counted
  ObjectUpdate unpin = Apply(Set("", false));
  EXPECT_FALSE(unpin.data.state.pinned());
  EXPECT_EQ(unpin.data.state.state(), "attack");  // recomputed from the votes
  EXPECT_EQ(unpin.data.state.version(), 3);  // created, pinned, unpinned
}

TEST_F(ObjectUpdateTest, PurgeDeletesWithOneEvent) {
  Apply(Report("a", "attack"));
  ObjectUpdate u = Apply(Set("", false));  // no change of state or pin: no event
  EXPECT_FALSE(u.event.has_value());
  u = ApplyRecord(*reducer_, current_, [] {
    ReportRecord r;
    r.set_kind(ReportKind::REPORT_KIND_PURGE);
    r.set_scenario("s");
    r.set_object_key("site-1");
    return r;
  }(), kNow);
  EXPECT_TRUE(u.deleted);
  ASSERT_TRUE(u.event.has_value());
  EXPECT_EQ(u.event->cause(), ChangeCause::CHANGE_CAUSE_PURGE);
  EXPECT_EQ(u.event->old_state(), "attack");
  EXPECT_EQ(u.event->new_state(), "");
  EXPECT_EQ(u.event->version(), 2);
}

TEST_F(ObjectUpdateTest, PurgeOfMissingObjectChangesNothing) {
  ReportRecord r;
  r.set_kind(ReportKind::REPORT_KIND_PURGE);
  ObjectUpdate u = ApplyRecord(*reducer_, std::nullopt, r, kNow);
  EXPECT_FALSE(u.changed);
  EXPECT_FALSE(u.event.has_value());
}

TEST_F(ObjectUpdateTest, ExpiryDropsSilentVoterAndFlipsMajority) {
  Apply(Report("a", "attack", kNow, 1'000));
  Apply(Report("b", "attack", kNow, 60'000));
  Apply(Report("c", "ok", kNow, 60'000));
  EXPECT_EQ(current_->state.state(), "attack");
  ObjectUpdate none = ExpireVotes(*reducer_, "s", "site-1", *current_, kNow + 500);
  EXPECT_FALSE(none.changed);
  ObjectUpdate u = ExpireVotes(*reducer_, "s", "site-1", *current_, kNow + 1'000);
  EXPECT_TRUE(u.changed);
  ASSERT_EQ(u.data.votes.size(), 2u);
  // 1:1 after a's vote expired: majority keeps the previous state, so no event.
  EXPECT_EQ(u.data.state.state(), "attack");
  EXPECT_FALSE(u.event.has_value());
  current_ = u.data;
  // b switches to ok: both live votes say ok.
  ObjectUpdate flip =
      ApplyRecord(*reducer_, current_, Report("b", "ok", kNow + 2'000), kNow + 2'000);
  ASSERT_TRUE(flip.event.has_value());
  EXPECT_EQ(flip.event->old_state(), "attack");
  EXPECT_EQ(flip.data.state.state(), "ok");
}

TEST_F(ObjectUpdateTest, LastVoteExpiringKeepsTheRecordWithItsVersion) {
  Apply(Report("a", "attack", kNow, 1'000));
  ObjectUpdate u = ExpireVotes(*reducer_, "s", "site-1", *current_, kNow + 1'000);
  EXPECT_TRUE(u.changed);
  EXPECT_FALSE(u.deleted);
  EXPECT_EQ(u.data.state.state(), "");
  EXPECT_EQ(u.data.state.version(), 2);
  ASSERT_TRUE(u.event.has_value());
  EXPECT_EQ(u.event->cause(), ChangeCause::CHANGE_CAUSE_EXPIRY);
  EXPECT_EQ(u.event->new_state(), "");
}

// A report that passes validation for scenario "s" and Kafka key "k".
ReportRecord ValidReport() {
  ReportRecord r;
  r.set_kind(ReportKind::REPORT_KIND_REPORT);
  r.set_scenario("s");
  r.set_object_key("k");
  r.set_agent_id("a");
  r.set_state("x");
  r.set_observed_at_ms(1);
  r.set_ttl_ms(1000);
  return r;
}

TEST(RecordValidationTest, GoodReportPasses) {
  EXPECT_TRUE(ValidateReportRecord(ValidReport(), "s", "k").ok());
}

TEST(RecordValidationTest, BadRecordsNameTheField) {
  struct Case {
    std::function<void(ReportRecord&)> mutate;
    std::string message;
  };
  std::vector<Case> cases = {
      {[](ReportRecord& r) { r.set_scenario("other"); }, "scenario: \"other\" is not"},
      {[](ReportRecord& r) { r.set_object_key(""); }, "object_key: must not be empty"},
      {[](ReportRecord& r) { r.set_object_key(std::string(257, 'k')); },
       "object_key: 257 bytes, the limit is 256"},
      {[](ReportRecord& r) { r.set_object_key(std::string("a\0b", 3)); },
       "object_key: must not contain NUL"},
      {[](ReportRecord& r) { r.set_object_key("other"); }, "object_key: differs from"},
      {[](ReportRecord& r) { r.clear_agent_id(); }, "agent_id: must not be empty"},
      {[](ReportRecord& r) { r.clear_state(); }, "state: must not be empty"},
      {[](ReportRecord& r) { r.set_state(std::string(257, 's')); }, "state: 257 bytes"},
      {[](ReportRecord& r) { r.set_ttl_ms(-5); }, "ttl_ms: must be in [1, "},
      {[](ReportRecord& r) { r.set_observed_at_ms(0); }, "observed_at_ms: must be > 0"},
      // Found by report_record_fuzz: observed_at_ms + ttl_ms overflowed in ApplyRecord.
      {[](ReportRecord& r) { r.set_observed_at_ms(int64_t{9223372036854775740}); },
       "observed_at_ms: must be at most 253402300799999 (the end of year 9999)"},
      {[](ReportRecord& r) { r.set_kind(ReportKind::REPORT_KIND_UNSPECIFIED); },
       "kind: unknown report kind 0"},
      {[](ReportRecord& r) {
         for (int i = 0; i < 33; ++i) (*r.mutable_attributes())[std::to_string(i)] = "v";
       },
       "attributes: 33 entries, the limit is 32"},
      {[](ReportRecord& r) { (*r.mutable_attributes())["k"] = std::string(1025, 'v'); },
       "attributes[\"k\"]: 1025 bytes"},
  };
  for (const Case& c : cases) {
    ReportRecord r = ValidReport();
    c.mutate(r);
    absl::Status s = ValidateReportRecord(r, "s", "k");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(s.message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace tally::processor
