#include "agent/reporter/outbox.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tally::agent {
namespace {

using ::testing::ElementsAre;

tally::v1::ReportStateRequest Report(const std::string& object, const std::string& state) {
  tally::v1::ReportStateRequest r;
  r.set_scenario("web");
  r.set_object_key(object);
  r.set_agent_id("a");
  r.set_state(state);
  return r;
}

// A sender that is up or down as the test says, and records what it delivered.
class ScriptedSender : public ReportSender {
 public:
  SendResult Send(std::span<const tally::v1::ReportStateRequest> reports) override {
    ++calls;
    SendResult r;
    for (const auto& report : reports) {
      if (!up || delivered.size() == fail_after) {
        r.status = absl::UnavailableError("down");
        return r;
      }
      if (report.state() == refused_state) {
        r.status = absl::InvalidArgumentError("refused");
        return r;
      }
      delivered.push_back(absl::StrCat(report.object_key(), "=", report.state()));
      ++r.delivered;
    }
    return r;
  }
  bool up = true;
  size_t fail_after = SIZE_MAX;
  std::string refused_state;
  int calls = 0;
  std::vector<std::string> delivered;
};

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenSpool(); }
  void OpenSpool() {
    spool_.reset();
    SpoolOptions options;
    options.dir = dir_.path();
    options.sync = false;
    auto spool = Spool::Open(options);
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_ = *std::move(spool);
  }
  std::unique_ptr<Outbox> NewOutbox() {
    OutboxOptions options;
    options.max_batch = 2;
    options.backoff = {absl::Milliseconds(200), absl::Seconds(1), 0.0};
    return std::make_unique<Outbox>(*spool_, sender_, clock_, options);
  }
  // Delivers until the outbox is idle or waits for a retry; returns its answer.
  absl::Time Drain(Outbox& outbox) {
    for (int i = 0; i < 100; ++i) {
      absl::Time next = outbox.DeliverOnce();
      if (next > clock_.Now()) return next;
    }
    ADD_FAILURE() << "outbox never settled";
    return absl::InfiniteFuture();
  }

  test::TempDir dir_;
  std::unique_ptr<Spool> spool_;
  ScriptedSender sender_;
  ManualClock clock_;
};

TEST_F(OutboxTest, DeliversFromMemoryInOrderWhileRoutersAnswer) {
  auto outbox = NewOutbox();
  outbox->Submit({Report("a", "1"), Report("b", "1"), Report("a", "2")});
  EXPECT_EQ(Drain(*outbox), absl::InfiniteFuture());
  EXPECT_THAT(sender_.delivered, ElementsAre("a=1", "b=1", "a=2"));
  EXPECT_TRUE(spool_->empty());
  EXPECT_EQ(outbox->Stats().delivered, 3);
  EXPECT_EQ(outbox->Stats().spooled, 0);
}

TEST_F(OutboxTest, OutageSpoolsEverythingAndBacksOffThenDeliversInOrder) {
  auto outbox = NewOutbox();
  sender_.up = false;
  outbox->Submit({Report("a", "1"), Report("b", "1"), Report("a", "2")});
  const absl::Time t0 = clock_.Now();
  EXPECT_EQ(Drain(*outbox), t0 + absl::Milliseconds(200));
  EXPECT_TRUE(outbox->Stats().out);
  EXPECT_EQ(spool_->Stats().records, 3);
  // While out, new reports go straight to the spool, behind the others.
  outbox->Submit({Report("b", "2")});
  EXPECT_EQ(spool_->Stats().records, 4);
  // Before the retry time nothing is tried.
  const int calls = sender_.calls;
  EXPECT_EQ(outbox->DeliverOnce(), t0 + absl::Milliseconds(200));
  EXPECT_EQ(sender_.calls, calls);
  // A failed retry doubles the wait.
  clock_.Advance(absl::Milliseconds(200));
  EXPECT_EQ(Drain(*outbox), clock_.Now() + absl::Milliseconds(400));
  clock_.Advance(absl::Milliseconds(400));
  sender_.up = true;
  EXPECT_EQ(Drain(*outbox), absl::InfiniteFuture());
  EXPECT_THAT(sender_.delivered, ElementsAre("a=1", "b=1", "a=2", "b=2"));
  EXPECT_FALSE(outbox->Stats().out);
  EXPECT_TRUE(spool_->empty());
  // Back to memory, and the backoff starts over.
  outbox->Submit({Report("c", "1")});
  EXPECT_TRUE(spool_->empty());
  sender_.up = false;
  EXPECT_EQ(Drain(*outbox), clock_.Now() + absl::Milliseconds(200));
}

TEST_F(OutboxTest, PartlyDeliveredBatchSpoolsOnlyTheRest) {
  auto outbox = NewOutbox();
  sender_.fail_after = 1;
  outbox->Submit({Report("a", "1"), Report("b", "1")});
  Drain(*outbox);
  EXPECT_THAT(sender_.delivered, ElementsAre("a=1"));
  EXPECT_EQ(spool_->Stats().records, 1);
  sender_.fail_after = SIZE_MAX;
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Drain(*outbox), absl::InfiniteFuture());
  EXPECT_THAT(sender_.delivered, ElementsAre("a=1", "b=1"));
}

TEST_F(OutboxTest, RefusedReportIsCountedAndSkipped) {
  auto outbox = NewOutbox();
  sender_.refused_state = "bad";
  outbox->Submit({Report("a", "1"), Report("a", "bad"), Report("a", "2")});
  EXPECT_EQ(Drain(*outbox), absl::InfiniteFuture());
  EXPECT_THAT(sender_.delivered, ElementsAre("a=1", "a=2"));
  EXPECT_EQ(outbox->Stats().refused_invalid, 1);
  EXPECT_FALSE(outbox->Stats().out);
}

TEST_F(OutboxTest, FlushedReportsAreDeliveredFirstAfterARestart) {
  {
    auto outbox = NewOutbox();
    outbox->Submit({Report("a", "1"), Report("b", "1")});
    outbox->Flush();  // shutdown before any delivery
  }
  OpenSpool();
  auto outbox = NewOutbox();
  EXPECT_TRUE(outbox->Stats().out);
  outbox->Submit({Report("a", "2")});  // made after the restart: queued behind the spool
  EXPECT_EQ(Drain(*outbox), absl::InfiniteFuture());
  EXPECT_THAT(sender_.delivered, ElementsAre("a=1", "b=1", "a=2"));
}

}  // namespace
}  // namespace tally::agent
