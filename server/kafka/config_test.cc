#include "server/kafka/config.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::kafka {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Get(rd_kafka_conf_t* conf, const char* name) {
  char value[256];
  size_t size = sizeof(value);
  if (rd_kafka_conf_get(conf, name, value, &size) != RD_KAFKA_CONF_OK) return "<unset>";
  return value;
}

TEST(BuildConfTest, SetsBaseAndOverridesWithOverridesWinning) {
  absl::StatusOr<ConfPtr> conf =
      BuildConf({{"bootstrap.servers", "127.0.0.1:9"}, {"linger.ms", "5"}}, {{"linger.ms", "7"}});
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_EQ(Get(conf->get(), "bootstrap.servers"), "127.0.0.1:9");
  EXPECT_EQ(Get(conf->get(), "linger.ms"), "7");
}

TEST(BuildConfTest, InvalidValueNamesThePropertyAndLibrdkafkasReason) {
  absl::StatusOr<ConfPtr> conf = BuildConf({{"linger.ms", "soon"}});
  ASSERT_FALSE(conf.ok());
  EXPECT_EQ(conf.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(conf.status().message()), StartsWith("kafka property \"linger.ms\": "));
  // librdkafka's reason; the value itself is not echoed (it could be a password).
  EXPECT_THAT(std::string(conf.status().message()), HasSubstr("Invalid value"));
}

TEST(BuildConfTest, UnknownPropertyIsInvalidArgument) {
  absl::StatusOr<ConfPtr> conf = BuildConf({}, {{"no.such.property", "1"}});
  ASSERT_FALSE(conf.ok());
  EXPECT_EQ(conf.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(conf.status().message()),
              StartsWith("kafka property \"no.such.property\": "));
  EXPECT_THAT(std::string(conf.status().message()), HasSubstr("No such configuration property"));
}

TEST(BuildConfTest, OverrideReplacesABadBaseValue) {
  absl::StatusOr<ConfPtr> conf = BuildConf({{"linger.ms", "soon"}}, {{"linger.ms", "5"}});
  ASSERT_TRUE(conf.ok()) << conf.status();
  EXPECT_EQ(Get(conf->get(), "linger.ms"), "5");
}

TEST(BuildConfTest, FirstBadPropertyInNameOrderIsReported) {
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<ConfPtr> conf = BuildConf({{"linger.ms", "x"}, {"acks", "many"}});
    ASSERT_FALSE(conf.ok());
    EXPECT_THAT(std::string(conf.status().message()), StartsWith("kafka property \"acks\": "));
  }
}

TEST(NewHandleTest, MakesAProducerWithoutContactingBrokers) {
  absl::StatusOr<ConfPtr> conf = BuildConf({{"bootstrap.servers", "127.0.0.1:1"}});
  ASSERT_TRUE(conf.ok()) << conf.status();
  absl::StatusOr<HandlePtr> rk = NewHandle(RD_KAFKA_PRODUCER, *std::move(conf));
  ASSERT_TRUE(rk.ok()) << rk.status();
  EXPECT_THAT(rd_kafka_name(rk->get()), HasSubstr("producer"));
}

TEST(NewHandleTest, PropertiesThatDoNotFitTogetherAreInvalidArgument) {
  absl::StatusOr<ConfPtr> conf =
      BuildConf({{"transactional.id", "t"}, {"enable.idempotence", "false"}});
  ASSERT_TRUE(conf.ok()) << conf.status();
  absl::StatusOr<HandlePtr> rk = NewHandle(RD_KAFKA_PRODUCER, *std::move(conf));
  ASSERT_FALSE(rk.ok());
  EXPECT_EQ(rk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rk.status().message()), StartsWith("kafka client: "));
  EXPECT_THAT(std::string(rk.status().message()), HasSubstr("idempotence"));
}

}  // namespace
}  // namespace tally::kafka
