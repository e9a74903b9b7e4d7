#include "agent/reporter/router_sender.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "agent/reporter/clock.h"
#include "agent/reporter/outbox.h"
#include "agent/spool/spool.h"
#include "agent/testing/fake_router.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tally::agent {
namespace {

using test::FakeRouter;
using ::testing::ElementsAre;

std::vector<tally::v1::ReportStateRequest> Reports(int n) {
  std::vector<tally::v1::ReportStateRequest> out;
  for (int i = 0; i < n; ++i) {
    tally::v1::ReportStateRequest r;
    r.set_scenario("web");
    r.set_object_key(absl::StrCat("o", i));
    r.set_agent_id("a");
    r.set_state("up");
    out.push_back(r);
  }
  return out;
}

RouterSenderOptions To(std::vector<std::string> routers, std::string token_file = "") {
  RouterSenderOptions options;
  options.routers = std::move(routers);
  options.token_file = std::move(token_file);
  return options;
}

StubFactory Stubs() { return InsecureStubFactory({absl::Milliseconds(50), absl::Seconds(1), 0}); }

std::vector<std::string> Keys(const std::vector<tally::v1::ReportStateRequest>& reports) {
  std::vector<std::string> out;
  for (const auto& r : reports) out.push_back(r.object_key());
  return out;
}

TEST(RouterSenderTest, OneReportIsUnaryManyAreOneBatchInOrder) {
  FakeRouter router;
  ASSERT_TRUE(router.Start().ok());
  RouterSender sender(To({router.address()}), Stubs());
  SendResult one = sender.Send(Reports(1));
  EXPECT_TRUE(one.status.ok()) << one.status;
  EXPECT_EQ(one.delivered, 1u);
  SendResult many = sender.Send(Reports(5));
  EXPECT_TRUE(many.status.ok()) << many.status;
  EXPECT_EQ(many.delivered, 5u);
  EXPECT_EQ(router.unary_calls(), 1u);
  EXPECT_EQ(router.batch_calls(), 1u);
  EXPECT_EQ(router.stream_calls(), 0u);
  EXPECT_THAT(Keys(router.reports()), ElementsAre("o0", "o0", "o1", "o2", "o3", "o4"));
  EXPECT_THAT(router.authorizations(), ElementsAre("", ""));
}

TEST(RouterSenderTest, RouterWithoutReportBatchGetsBatchesAsStreamsWithoutBeingAskedAgain) {
  FakeRouter old_router;
  old_router.AnswerReportBatchUnimplemented();
  ASSERT_TRUE(old_router.Start().ok());
  RouterSender sender(To({old_router.address()}), Stubs());
  SendResult first = sender.Send(Reports(3));
  EXPECT_TRUE(first.status.ok()) << first.status;
  EXPECT_EQ(first.delivered, 3u);
  EXPECT_EQ(old_router.batch_calls(), 1u);
  EXPECT_EQ(old_router.stream_calls(), 1u);
  // The next batch goes straight to ReportStates.
  SendResult second = sender.Send(Reports(2));
  EXPECT_TRUE(second.status.ok()) << second.status;
  EXPECT_EQ(second.delivered, 2u);
  EXPECT_EQ(old_router.batch_calls(), 1u);
  EXPECT_EQ(old_router.stream_calls(), 2u);
  EXPECT_EQ(old_router.unary_calls(), 0u);
  EXPECT_THAT(Keys(old_router.reports()), ElementsAre("o0", "o1", "o2", "o0", "o1"));
}

TEST(RouterSenderTest, RouterUpgradedUnderTheAgentGetsBatchesAgainAfterTheRetryDelay) {
  FakeRouter router;
  router.AnswerReportBatchUnimplemented();
  ASSERT_TRUE(router.Start().ok());
  ManualClock clock;
  RouterSenderOptions options = To({router.address()});
  options.batch_retry_after = absl::Minutes(10);
  RouterSender sender(options, Stubs(), &clock);
  ASSERT_TRUE(sender.Send(Reports(2)).status.ok());
  EXPECT_EQ(router.batch_calls(), 1u);
  EXPECT_EQ(router.stream_calls(), 1u);

  router.AnswerReportBatchUnimplemented(false);  // upgraded
  clock.Advance(absl::Minutes(9));
  ASSERT_TRUE(sender.Send(Reports(2)).status.ok());
  EXPECT_EQ(router.batch_calls(), 1u) << "not asked again before the retry delay";
  EXPECT_EQ(router.stream_calls(), 2u);

  clock.Advance(absl::Minutes(1));
  SendResult later = sender.Send(Reports(3));
  EXPECT_TRUE(later.status.ok()) << later.status;
  EXPECT_EQ(later.delivered, 3u);
  EXPECT_EQ(router.batch_calls(), 2u);
  EXPECT_EQ(router.stream_calls(), 2u) << "the batch went as a ReportBatch";
  EXPECT_THAT(Keys(router.reports()), ElementsAre("o0", "o1", "o0", "o1", "o0", "o1", "o2"));
}

TEST(RouterSenderTest, OnlyTheRouterWithoutReportBatchIsSentStreams) {
  FakeRouter old_router, new_router;
  old_router.AnswerReportBatchUnimplemented();
  ASSERT_TRUE(old_router.Start().ok());
  ASSERT_TRUE(new_router.Start().ok());
  RouterSender sender(To({old_router.address(), new_router.address()}), Stubs());
  ASSERT_TRUE(sender.Send(Reports(2)).status.ok());
  EXPECT_EQ(old_router.stream_calls(), 1u);
  old_router.Stop();  // the sender fails over to the newer router
  SendResult r = sender.Send(Reports(2));
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.delivered, 2u);
  EXPECT_EQ(sender.current_router(), new_router.address());
  EXPECT_EQ(new_router.batch_calls(), 1u);
  EXPECT_EQ(new_router.stream_calls(), 0u);
  EXPECT_EQ(new_router.reports().size(), 2u);
}

TEST(RouterSenderTest, MovesToTheNextRouterAndSticksToIt) {
  FakeRouter down, up;
  ASSERT_TRUE(down.Start().ok());
  down.Stop();  // a known port with nobody on it
  ASSERT_TRUE(up.Start().ok());
  RouterSender sender(To({down.address(), up.address()}), Stubs());
  SendResult r = sender.Send(Reports(3));
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.delivered, 3u);
  EXPECT_EQ(sender.current_router(), up.address());
  EXPECT_TRUE(sender.Send(Reports(1)).status.ok());
  EXPECT_EQ(up.reports().size(), 4u);
}

TEST(RouterSenderTest, AllRoutersDownIsUnavailable) {
  FakeRouter a, b;
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  a.Stop();
  b.Stop();
  RouterSender sender(To({a.address(), b.address()}), Stubs());
  SendResult r = sender.Send(Reports(2));
  EXPECT_TRUE(absl::IsUnavailable(r.status)) << r.status;
  EXPECT_EQ(r.delivered, 0u);
}

TEST(RouterSenderTest, RefusedReportStopsTheBatchWithInvalidArgumentAtIt) {
  FakeRouter router, other;
  ASSERT_TRUE(router.Start().ok());
  ASSERT_TRUE(other.Start().ok());
  router.RefuseState("bad");
  std::vector<tally::v1::ReportStateRequest> reports = Reports(3);
  reports[1].set_state("bad");
  RouterSender sender(To({router.address(), other.address()}), Stubs());
  SendResult r = sender.Send(reports);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status)) << r.status;
  // The batch was refused whole; the stream it was sent again as delivered the report before
  // the refused one, so `delivered` names the refused one (reports[1]).
  EXPECT_EQ(r.delivered, 1u);
  EXPECT_EQ(router.batch_calls(), 1u);
  EXPECT_EQ(router.stream_calls(), 1u);
  EXPECT_THAT(Keys(router.reports()), ElementsAre("o0"));
  // No other router is tried: it would refuse the report too.
  EXPECT_EQ(other.batch_calls() + other.stream_calls() + other.unary_calls(), 0u);
  EXPECT_EQ(sender.current_router(), router.address());
}

TEST(RouterSenderTest, RefusedFirstReportOfABatchDeliversNothing) {
  FakeRouter router;
  ASSERT_TRUE(router.Start().ok());
  router.RefuseState("bad");
  std::vector<tally::v1::ReportStateRequest> reports = Reports(3);
  reports[0].set_state("bad");
  RouterSender sender(To({router.address()}), Stubs());
  SendResult r = sender.Send(reports);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status)) << r.status;
  EXPECT_EQ(r.delivered, 0u);
  EXPECT_TRUE(router.reports().empty());
}

// What the Outbox makes of a refused report in a batch: that report alone is dropped, and the
// reports around it are delivered in order.
TEST(RouterSenderTest, OutboxDropsOnlyTheRefusedReportOfABatch) {
  FakeRouter router;
  ASSERT_TRUE(router.Start().ok());
  router.RefuseState("bad");
  ::tally::test::TempDir dir;
  SpoolOptions spool_options;
  spool_options.dir = dir.path();
  spool_options.sync = false;
  absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(spool_options);
  ASSERT_TRUE(spool.ok()) << spool.status();
  RouterSender sender(To({router.address()}), Stubs());
  ManualClock clock;
  OutboxOptions outbox_options;
  outbox_options.max_batch = 4;
  Outbox outbox(**spool, sender, clock, outbox_options);
  std::vector<tally::v1::ReportStateRequest> reports = Reports(4);
  reports[2].set_state("bad");
  outbox.Submit(reports);
  // Each DeliverOnce sends one batch; InfiniteFuture once nothing is queued.
  int sends = 0;
  while (outbox.DeliverOnce() != absl::InfiniteFuture()) ASSERT_LT(++sends, 10);
  EXPECT_THAT(Keys(router.reports()), ElementsAre("o0", "o1", "o3"));
  OutboxStats stats = outbox.Stats();
  EXPECT_EQ(stats.delivered, 3);
  EXPECT_EQ(stats.refused_invalid, 1);
  EXPECT_FALSE(stats.out);
}

TEST(RouterSenderTest, BearerTokenFromTheFileIsReadOnEverySend) {
  ::tally::test::TempDir dir;
  const std::string token_file = dir.path() + "/token";
  std::ofstream(token_file) << "s3cret\n";
  FakeRouter router;
  ASSERT_TRUE(router.Start().ok());
  RouterSender sender(To({router.address()}, token_file), Stubs());
  ASSERT_TRUE(sender.Send(Reports(1)).status.ok());
  std::ofstream(token_file, std::ios::trunc) << "rotated";
  ASSERT_TRUE(sender.Send(Reports(2)).status.ok());
  EXPECT_THAT(router.authorizations(), ElementsAre("Bearer s3cret", "Bearer rotated"));
}

TEST(RouterSenderTest, UnreadableTokenFileFailsTheSend) {
  FakeRouter router;
  ASSERT_TRUE(router.Start().ok());
  RouterSender sender(To({router.address()}, "/nonexistent/token"), Stubs());
  SendResult r = sender.Send(Reports(1));
  EXPECT_TRUE(absl::IsUnavailable(r.status)) << r.status;
  EXPECT_TRUE(router.reports().empty());
}

}  // namespace
}  // namespace tally::agent
