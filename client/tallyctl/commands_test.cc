// tallyctl's subcommands against in-process fake routers: the watch subcommand's scripted
// streams and the exit codes of answers a healthy cluster does not give.

#include "client/tallyctl/commands.h"

#include <sstream>

#include "absl/strings/str_split.h"
#include "client/testing/fake_router.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace tally::tallyctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::WatchStateResponse Change(const std::string& key, const std::string& from,
                              const std::string& to, const std::string& token) {
  v1::WatchStateResponse event;
  event.mutable_change()->set_object_key(key);
  event.mutable_change()->set_old_state(from);
  event.mutable_change()->set_new_state(to);
  event.mutable_change()->set_version(2);
  event.mutable_change()->set_cause(v1::REPORT);
  event.set_resume_token(token);
  return event;
}

v1::WatchStateResponse Progress(const std::string& token) {
  v1::WatchStateResponse event;
  event.mutable_progress();
  event.set_resume_token(token);
  return event;
}

class CommandsTest : public ::testing::Test {
 protected:
  CommandsTest() {
    ClientOptions options;
    options.channel_factory = [this](const std::string&) {
      return router_.server->InProcessChannel({});
    };
    options.sleep = [](absl::Duration) {};
    client_ = *Client::Create({"fake"}, std::move(options));
  }

  void Script(std::vector<v1::WatchStateResponse> events, grpc::Status end) {
    absl::MutexLock lock(&router_.state.mu);
    router_.state.watch_scripts.push_back({std::move(events), std::move(end)});
  }

  // Runs the command line `line` against the fake router.
  int Run(const std::string& line) {
    std::vector<std::string> args = absl::StrSplit(line, ' ', absl::SkipEmpty());
    absl::StatusOr<Invocation> inv = ParseCommandLine(args, "");
    EXPECT_TRUE(inv.ok()) << inv.status();
    out_.str("");
    err_.str("");
    return RunCommand(*inv, *client_, out_, err_);
  }

  test::FakeRouter router_;
  std::unique_ptr<Client> client_;
  std::ostringstream out_, err_;
};

TEST_F(CommandsTest, WatchPrintsOneLinePerEventUntilCount) {
  Script({Change("site-1", "ok", "attack", "t1"), Progress("t2"), Change("site-2", "", "ok", "t3"),
          Change("site-3", "", "ok", "t4")},
         grpc::Status::OK);
  EXPECT_EQ(Run("watch demo --prefix=site- --count=2"), 0) << err_.str();
  std::vector<std::string> lines = absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out_.str();  // progress is not shown, nor counted
  EXPECT_THAT(lines[0], HasSubstr("report  site-1  ok -> attack  v2"));
  EXPECT_THAT(lines[1], HasSubstr("report  site-2  - -> ok  v2"));
  absl::MutexLock lock(&router_.state.mu);
  ASSERT_EQ(router_.state.watch_requests.size(), 1u);
  EXPECT_EQ(router_.state.watch_requests[0].prefix(), "site-");
  EXPECT_EQ(router_.state.watch_requests[0].object_key(), "");
}

TEST_F(CommandsTest, WatchJsonPrintsEveryEventOnItsOwnLine) {
  Script({Progress("t1"), Change("k", "ok", "attack", "t2"), Change("k", "attack", "ok", "t3")},
         grpc::Status::OK);
  EXPECT_EQ(Run("watch demo k --initial --resume_token=t0 -o json --count=1"), 0) << err_.str();
  std::vector<std::string> lines = absl::StrSplit(out_.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out_.str();  // progress is printed in JSON, but not counted
  v1::WatchStateResponse first, second;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[0], &first).ok());
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[1], &second).ok());
  EXPECT_TRUE(first.has_progress());
  EXPECT_EQ(first.resume_token(), "t1");
  EXPECT_EQ(second.change().new_state(), "attack");
  absl::MutexLock lock(&router_.state.mu);
  const v1::WatchStateRequest& request = router_.state.watch_requests[0];
  EXPECT_EQ(request.object_key(), "k");
  EXPECT_TRUE(request.send_initial());
  EXPECT_EQ(request.resume_token(), "t0");
}

TEST_F(CommandsTest, WatchResumesAcrossABreakAndReportsTheTokenWhenItEnds) {
  Script({Change("a", "ok", "attack", "t1")},
         grpc::Status(grpc::StatusCode::UNAVAILABLE, "router restarting"));
  Script({Change("b", "ok", "attack", "t2")},
         grpc::Status(grpc::StatusCode::OUT_OF_RANGE, "resume token too old"));
  EXPECT_EQ(Run("watch demo"), 4);
  EXPECT_THAT(out_.str(), HasSubstr("  a  ok -> attack"));
  EXPECT_THAT(out_.str(), HasSubstr("  b  ok -> attack"));
  EXPECT_THAT(err_.str(), HasSubstr("tallyctl watch: OUT_OF_RANGE: "));
  EXPECT_THAT(err_.str(), HasSubstr("last resume token: t2"));
  absl::MutexLock lock(&router_.state.mu);
  ASSERT_EQ(router_.state.watch_requests.size(), 2u);
  EXPECT_EQ(router_.state.watch_requests[1].resume_token(), "t1");
}

TEST_F(CommandsTest, WatchThatNoRouterServesExitsUnavailable) {
  // No script: every attempt ends UNAVAILABLE before an event.
  EXPECT_EQ(Run("watch demo"), 3);
  EXPECT_THAT(err_.str(), HasSubstr("UNAVAILABLE: WatchState: no router answered"));
}

TEST_F(CommandsTest, WatchForADurationEndsCleanly) {
  Script({Change("a", "ok", "attack", "t1")},
         grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "hang until the deadline"));
  EXPECT_EQ(Run("watch demo --for=200ms"), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("  a  ok -> attack"));
}

TEST_F(CommandsTest, OtherCodesExitFour) {
  router_.state.fail_with = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "not now");
  EXPECT_EQ(Run("report demo k s"), 4);
  EXPECT_EQ(err_.str(), "tallyctl report: FAILED_PRECONDITION: router fake: not now\n");
  router_.state.fail_with = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow");
  EXPECT_EQ(Run("get demo k"), 3);
  EXPECT_EQ(out_.str(), "");
}

}  // namespace
}  // namespace tally::tallyctl
