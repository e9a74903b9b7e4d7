#include "server/kafka/errors.h"

#include <librdkafka/rdkafka_mock.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kafka/config.h"

namespace tally::kafka {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

void ExpectCode(std::initializer_list<rd_kafka_resp_err_t> errs, absl::StatusCode code) {
  for (rd_kafka_resp_err_t err : errs) {
    EXPECT_EQ(KafkaStatusCode(err), code) << rd_kafka_err2name(err);
    EXPECT_EQ(KafkaStatus(err, "ctx").code(), code) << rd_kafka_err2name(err);
  }
}

TEST(KafkaStatusTest, NoErrorIsOk) {
  EXPECT_TRUE(KafkaStatus(RD_KAFKA_RESP_ERR_NO_ERROR, "anything").ok());
}

TEST(KafkaStatusTest, TransportTimeoutsAndMovingLeadersAreUnavailable) {
  ExpectCode({RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
              RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
              RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
              RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
              RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
              RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS},
             absl::StatusCode::kUnavailable);
}

TEST(KafkaStatusTest, FencingAndFatalErrorsAreFailedPrecondition) {
  ExpectCode({RD_KAFKA_RESP_ERR__FENCED, RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
              RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
              RD_KAFKA_RESP_ERR__FATAL, RD_KAFKA_RESP_ERR__STATE},
             absl::StatusCode::kFailedPrecondition);
}

TEST(KafkaStatusTest, LostGenerationAndAbortableProducerErrorsAreAborted) {
  ExpectCode({RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
              RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST,
              RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
              RD_KAFKA_RESP_ERR__PURGE_QUEUE},
             absl::StatusCode::kAborted);
}

TEST(KafkaStatusTest, TopicExistenceHasItsOwnCodes) {
  ExpectCode({RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS}, absl::StatusCode::kAlreadyExists);
  ExpectCode({RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
              RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION},
             absl::StatusCode::kNotFound);
}

TEST(KafkaStatusTest, BadRequestsAreInvalidArgument) {
  ExpectCode({RD_KAFKA_RESP_ERR__INVALID_ARG, RD_KAFKA_RESP_ERR_INVALID_PARTITIONS,
              RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR, RD_KAFKA_RESP_ERR_INVALID_CONFIG,
              RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE},
             absl::StatusCode::kInvalidArgument);
}

TEST(KafkaStatusTest, AuthFailuresAreDeniedOrUnauthenticated) {
  ExpectCode({RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
              RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED},
             absl::StatusCode::kPermissionDenied);
  ExpectCode({RD_KAFKA_RESP_ERR__AUTHENTICATION, RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED},
             absl::StatusCode::kUnauthenticated);
}

TEST(KafkaStatusTest, OffsetsAndEndOfPartitionAreOutOfRange) {
  ExpectCode({RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE, RD_KAFKA_RESP_ERR__PARTITION_EOF},
             absl::StatusCode::kOutOfRange);
}

TEST(KafkaStatusTest, UnmappedCodeIsUnknown) {
  // (A valid enumerator: casting an arbitrary int to the enum would be undefined behaviour.)
  ExpectCode({RD_KAFKA_RESP_ERR__APPLICATION, RD_KAFKA_RESP_ERR_UNKNOWN},
             absl::StatusCode::kUnknown);
}

TEST(KafkaStatusTest, MessageHasContextReasonAndErrorName) {
  absl::Status status = KafkaStatus(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS, "create topic \"t\"");
  EXPECT_EQ(status.message(), std::string("create topic \"t\": ") +
                                  rd_kafka_err2str(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) +
                                  " (TOPIC_ALREADY_EXISTS)");
}

TEST(KafkaStatusTest, DetailReplacesLibraryDescription) {
  absl::Status status = KafkaStatus(RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR, "create",
                                    "only 1 broker(s) are registered");
  EXPECT_EQ(status.message(),
            "create: only 1 broker(s) are registered (INVALID_REPLICATION_FACTOR)");
}

TEST(TakeKafkaErrorTest, NullIsSuccessWithoutFlags) {
  KafkaError error = TakeKafkaError(nullptr, "commit");
  EXPECT_TRUE(error.status.ok());
  EXPECT_FALSE(error.retriable || error.txn_requires_abort || error.fatal);
  EXPECT_TRUE(KafkaStatus(static_cast<rd_kafka_error_t*>(nullptr), "commit").ok());
}

TEST(TakeKafkaErrorTest, PlainErrorUsesItsCodeAndString) {
  KafkaError error = TakeKafkaError(
      rd_kafka_error_new(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "gone %d", 7), "produce");
  EXPECT_EQ(error.status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(error.status.message(), "produce: gone 7 (UNKNOWN_TOPIC_OR_PART)");
  EXPECT_FALSE(error.retriable || error.txn_requires_abort || error.fatal);
}

TEST(TakeKafkaErrorTest, ErrorObjectWithNoErrorCodeIsStillAFailure) {
  absl::Status status = KafkaStatus(rd_kafka_error_new(RD_KAFKA_RESP_ERR_NO_ERROR, "odd"), "call");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
}

// The flags come from real librdkafka transactional calls against its in-process mock cluster
// (test.mock.num.brokers), which injects broker errors. Only the error translation is under
// test here; transactions themselves are tested against the real broker in tests/integration.
class MockTransactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<ConfPtr> conf = BuildConf(
        {{"test.mock.num.brokers", "1"}, {"transactional.id", "errors-test"}, {"log_level", "2"}});
    ASSERT_TRUE(conf.ok()) << conf.status();
    absl::StatusOr<HandlePtr> producer = NewHandle(RD_KAFKA_PRODUCER, *std::move(conf));
    ASSERT_TRUE(producer.ok()) << producer.status();
    producer_ = *std::move(producer);
    cluster_ = rd_kafka_handle_mock_cluster(producer_.get());
    ASSERT_NE(cluster_, nullptr);
    ASSERT_EQ(rd_kafka_mock_topic_create(cluster_, "t", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_TRUE(KafkaStatus(rd_kafka_init_transactions(producer_.get(), 10000), "init").ok());
    ASSERT_TRUE(KafkaStatus(rd_kafka_begin_transaction(producer_.get()), "begin").ok());
  }

  void ProduceOne() {
    char value[] = "v";
    ASSERT_EQ(rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_VALUE(value, 1),
                                RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_flush(producer_.get(), 10000);
  }

  // Kafka protocol API keys.
  static constexpr int16_t kProduce = 0;
  static constexpr int16_t kEndTxn = 26;

  HandlePtr producer_;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;  // owned by producer_
};

TEST_F(MockTransactionTest, FencedCommitIsFatalAndFailedPrecondition) {
  ProduceOne();
  rd_kafka_mock_push_request_errors(cluster_, kEndTxn, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
  KafkaError error = TakeKafkaError(rd_kafka_commit_transaction(producer_.get(), 10000), "commit");
  EXPECT_TRUE(error.fatal);
  EXPECT_EQ(error.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(error.status.message()), StartsWith("commit: "));
  EXPECT_THAT(std::string(error.status.message()), HasSubstr("[fatal]"));
}

TEST_F(MockTransactionTest, AbortableFlagWinsOverTheErrorCode) {
  // TOPIC_AUTHORIZATION_FAILED alone maps to PERMISSION_DENIED; inside a transaction librdkafka
  // flags it "abort the transaction", and that is what the caller must do.
  ASSERT_EQ(KafkaStatusCode(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED),
            absl::StatusCode::kPermissionDenied);
  rd_kafka_mock_push_request_errors(cluster_, kProduce, 1,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  ProduceOne();
  KafkaError error = TakeKafkaError(rd_kafka_commit_transaction(producer_.get(), 10000), "commit");
  EXPECT_TRUE(error.txn_requires_abort);
  EXPECT_FALSE(error.fatal);
  EXPECT_EQ(error.status.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(error.status.message()), HasSubstr("[txn_requires_abort]"));
  EXPECT_THAT(std::string(error.status.message()), HasSubstr("(TOPIC_AUTHORIZATION_FAILED)"));
}

}  // namespace
}  // namespace tally::kafka
