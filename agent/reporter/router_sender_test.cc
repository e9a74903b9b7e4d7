#include "agent/reporter/router_sender.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "agent/testing/fake_router.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tally::agent {
namespace {

using test::FakeRouter;

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

TEST(RouterSenderTest, OneReportIsUnaryManyAreOneStreamInOrder) {
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
  EXPECT_EQ(router.stream_calls(), 1u);
  std::vector<tally::v1::ReportStateRequest> got = router.reports();
  ASSERT_EQ(got.size(), 6u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(got[i + 1].object_key(), absl::StrCat("o", i));
  EXPECT_THAT(router.authorizations(), ::testing::ElementsAre("", ""));
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

TEST(RouterSenderTest, RefusedReportStopsTheBatchWithInvalidArgument) {
  FakeRouter router;
  ASSERT_TRUE(router.Start().ok());
  router.RefuseState("bad");
  std::vector<tally::v1::ReportStateRequest> reports = Reports(3);
  reports[1].set_state("bad");
  RouterSender sender(To({router.address()}), Stubs());
  SendResult r = sender.Send(reports);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status)) << r.status;
  EXPECT_EQ(r.delivered, 1u);
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
  EXPECT_THAT(router.authorizations(), ::testing::ElementsAre("Bearer s3cret", "Bearer rotated"));
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
