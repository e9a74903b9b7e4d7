#include "agent/config/config.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace tally::agent {
namespace {

constexpr char kTextConfig[] = R"pb(
  agent_id: "edge-1"
  routers: "127.0.0.1:7070"
  spool { dir: "/var/lib/tally-agent" }
  watches {
    scenario: "site-under-attack"
    object_key: "site-42"
    check { file { path: "/run/site-42/state" } }
  }
  watches {
    scenario: "site-under-attack"
    object_key: "site-43"
    interval { seconds: 2 }
    check {
      http {
        url: "http://127.0.0.1:8080/health"
        status_codes { key: 200 value: "ok" }
      }
    }
  }
)pb";

v1::AgentConfig Valid() {
  auto config = ParseAgentConfig(kTextConfig, "test");
  EXPECT_TRUE(config.ok()) << config.status();
  ApplyDefaults(*config);
  return *config;
}

TEST(AgentConfigTest, TextprotoWithDefaultsIsValid) {
  v1::AgentConfig config = Valid();
  EXPECT_TRUE(ValidateAgentConfig(config, /*once=*/false).ok());
  EXPECT_EQ(ToDuration(config.watches(0).interval()), absl::Seconds(10));
  EXPECT_EQ(ToDuration(config.watches(1).interval()), absl::Seconds(2));
  EXPECT_EQ(ToDuration(config.watches(1).ttl()), absl::Seconds(60));
  EXPECT_DOUBLE_EQ(config.jitter(), 0.1);
  EXPECT_EQ(config.spool().max_bytes(), 64 << 20);
}

TEST(AgentConfigTest, JsonIsAcceptedAndExplicitZeroJitterKept) {
  auto config = ParseAgentConfig(R"({"agentId": "a", "jitter": 0, "routers": ["r:1"],
      "spool": {"dir": "/tmp/x"},
      "watches": [{"scenario": "s", "objectKey": "o", "ttl": "1.5s",
                   "check": {"exec": {"command": ["true"], "exitCodes": {"0": "ok"}}}}]})",
                                 "test.json");
  ASSERT_TRUE(config.ok()) << config.status();
  ApplyDefaults(*config);
  EXPECT_DOUBLE_EQ(config->jitter(), 0.0);
  EXPECT_EQ(ToDuration(config->watches(0).ttl()), absl::Milliseconds(1500));
  EXPECT_TRUE(ValidateAgentConfig(*config, false).ok());
}

TEST(AgentConfigTest, UnknownFieldIsRefusedWithItsPosition) {
  auto config = ParseAgentConfig("agent_id: \"a\"\nbogus: 1\n", "agent.textproto");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("agent.textproto"), absl::string_view::npos);
  EXPECT_NE(config.status().message().find("2:"), absl::string_view::npos) << config.status();
}

TEST(AgentConfigTest, ErrorsNameTheField) {
  struct Case {
    std::function<void(v1::AgentConfig&)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](auto& c) { c.clear_agent_id(); }, "agent_id"},
      {[](auto& c) { c.clear_routers(); }, "routers"},
      {[](auto& c) { c.mutable_spool()->clear_dir(); }, "spool.dir"},
      {[](auto& c) { c.set_jitter(0.9); }, "jitter"},
      {[](auto& c) { c.mutable_watches(1)->mutable_check()->mutable_http()->set_url("ftp://x"); },
       "watches[1].check.http.url"},
      {[](auto& c) { c.mutable_watches(1)->set_object_key("site-42"); }, "watches[1]"},
      {[](auto& c) { c.mutable_watches(0)->mutable_ttl()->set_seconds(0); }, "watches[0].ttl"},
      {[](auto& c) { c.mutable_watches(0)->clear_scenario(); }, "watches[0].scenario"},
      {[](auto& c) { c.clear_watches(); }, "watches"},
      {[](auto& c) { c.set_agent_id(std::string("a\0b", 3)); }, "agent_id"},
      {[](auto& c) { c.mutable_watches(0)->set_error_state(std::string("x\0", 2)); },
       "watches[0].error_state"},
      {[](auto& c) { (*c.mutable_watches(0)->mutable_attributes())["k"] = std::string("\0", 1); },
       "watches[0].attributes"},
      {[](auto& c) { c.mutable_tls()->set_cert_file("agent.pem"); }, "tls.ca_file"},
      {[](auto& c) {
         c.mutable_tls()->set_ca_file("ca.pem");
         c.mutable_tls()->set_cert_file("agent.pem");
       },
       "tls.key_file"},
  };
  for (const Case& c : cases) {
    v1::AgentConfig config = Valid();
    c.mutate(config);
    absl::Status status = ValidateAgentConfig(config, false);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << c.field;
    EXPECT_TRUE(absl::StartsWith(status.message(), c.field + ":")) << status;
  }
}

TEST(AgentConfigTest, OnceNeedsNoRoutersOrSpool) {
  v1::AgentConfig config = Valid();
  config.clear_routers();
  config.mutable_spool()->clear_dir();
  EXPECT_TRUE(ValidateAgentConfig(config, /*once=*/true).ok());
}

}  // namespace
}  // namespace tally::agent
