#include "server/router/requests.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::router {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kNowMs = 1'700'000'000'000;

config::v1::Scenario Demo() {
  config::v1::Scenario scenario;
  scenario.set_name("demo");
  scenario.mutable_default_ttl()->set_seconds(60);
  return scenario;
}

v1::ReportStateRequest Valid() {
  v1::ReportStateRequest request;
  request.set_scenario("demo");
  request.set_object_key("site-1");
  request.set_agent_id("agent-1");
  request.set_state("attack");
  return request;
}

TEST(RequestsTest, ReportFillsDefaultsFromScenarioAndClock) {
  auto record = ReportRecordFor(Valid(), Demo(), kNowMs);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->kind(), records::v1::REPORT_KIND_REPORT);
  EXPECT_EQ(record->ttl_ms(), 60000);
  EXPECT_EQ(record->observed_at_ms(), kNowMs);
  EXPECT_EQ(record->object_key(), "site-1");
}

TEST(RequestsTest, ReportKeepsGivenTtlAndObservedAt) {
  v1::ReportStateRequest request = Valid();
  request.mutable_ttl()->set_seconds(5);
  request.mutable_observed_at()->set_seconds(kNowMs / 1000 - 10);
  auto record = ReportRecordFor(request, Demo(), kNowMs);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->ttl_ms(), 5000);
  EXPECT_EQ(record->observed_at_ms(), kNowMs - 10000);
}

TEST(RequestsTest, BadReportsNameTheField) {
  struct Case {
    std::function<void(v1::ReportStateRequest&)> mutate;
    std::string message;
  };
  std::vector<Case> cases = {
      {[](auto& r) { r.clear_object_key(); }, "object_key: must not be empty"},
      {[](auto& r) { r.set_object_key(std::string(257, 'k')); },
       "object_key: 257 bytes, the limit is 256"},
      {[](auto& r) { r.set_agent_id(std::string(129, 'a')); },
       "agent_id: 129 bytes, the limit is 128"},
      {[](auto& r) { r.clear_state(); }, "state: must not be empty"},
      {[](auto& r) { r.mutable_ttl()->set_seconds(8 * 24 * 3600); }, "ttl: must be between"},
      {[](auto& r) { r.mutable_ttl()->set_seconds(-1); }, "ttl: must be a positive duration"},
      {[](auto& r) { r.mutable_observed_at()->set_seconds(kNowMs / 1000 + 3600); },
       "observed_at: "},
      {[](auto& r) { (*r.mutable_attributes())[""] = "v"; }, "attributes key: must not be empty"},
      {[](auto& r) { (*r.mutable_attributes())["k"] = std::string(1025, 'v'); },
       "attributes[\"k\"]: 1025 bytes"},
      {[](auto& r) { r.set_agent_id(std::string("a\0b", 3)); }, "agent_id: must not contain NUL"},
      {[](auto& r) { (*r.mutable_attributes())["k"] = std::string("v\0", 2); },
       "attributes[\"k\"]: must not contain NUL"},
  };
  for (const Case& c : cases) {
    v1::ReportStateRequest request = Valid();
    c.mutate(request);
    auto record = ReportRecordFor(request, Demo(), kNowMs);
    EXPECT_EQ(record.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(record.status().message(), HasSubstr(c.message));
  }
}

TEST(RequestsTest, SetWithPinNeedsAState) {
  v1::SetStateRequest request;
  request.set_object_key("k");
  request.set_pin(true);
  EXPECT_THAT(SetRecordFor(request, kNowMs).status().message(), HasSubstr("state: must not be"));
  request.set_pin(false);
  auto record = SetRecordFor(request, kNowMs);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->kind(), records::v1::REPORT_KIND_SET);
}

TEST(RequestsTest, PurgeNeedsAKey) {
  v1::PurgeStateRequest request;
  EXPECT_THAT(PurgeRecordFor(request, kNowMs).status().message(),
              HasSubstr("object_key: must not be empty"));
}

}  // namespace
}  // namespace tally::router
