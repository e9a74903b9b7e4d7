#ifndef TALLY_SERVER_KAFKA_ADMIN_H_
#define TALLY_SERVER_KAFKA_ADMIN_H_

// Admin is the cluster-metadata side of the Kafka adapter: it makes sure a scenario's topics
// exist with the partition count the configuration says, and answers questions about topics
// (partition count, topic configs, watermark offsets). Every call is bounded by the Admin's
// timeout and names the topic in its errors; error codes follow errors.h (UNAVAILABLE = retry).
//
// Thread safety: an Admin is safe for concurrent use from any thread (each call has its own
// librdkafka result queue); the handle it uses may be shared with a producer or consumer.

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/kafka/config.h"

namespace tally::kafka {

// A topic as the configuration wants it. (A constructor rather than designated initializers:
// GCC's -Wmissing-field-initializers flags designated initializers that leave fields out.)
struct TopicSpec {
  TopicSpec(std::string name, int partitions, int replication_factor = -1, Properties configs = {})
      : name(std::move(name)),
        partitions(partitions),
        replication_factor(replication_factor),
        configs(std::move(configs)) {}

  std::string name;
  int partitions;          // must be > 0
  int replication_factor;  // -1: the broker's default.replication.factor
  Properties configs;      // topic configs, e.g. {"cleanup.policy", "compact"}
};

class Admin {
 public:
  static constexpr absl::Duration kDefaultTimeout = absl::Seconds(30);

  // Uses `rk` (any handle type), which must outlive the Admin; does not take ownership.
  explicit Admin(rd_kafka_t* rk, absl::Duration timeout = kDefaultTimeout);

  // An Admin with a handle of its own, made from `properties` (at least bootstrap.servers), with
  // allow.auto.create.topics=false unless `properties` says otherwise.
  // Errors: INVALID_ARGUMENT for properties librdkafka rejects (see BuildConf).
  static absl::StatusOr<std::unique_ptr<Admin>> Create(const Properties& properties,
                                                       absl::Duration timeout = kDefaultTimeout);

  Admin(const Admin&) = delete;
  Admin& operator=(const Admin&) = delete;
  ~Admin();

  // Makes sure every topic of `topics` exists with its spec's partition count. First checks the
  // topics that exist: if one has another partition count, fails with FAILED_PRECONDITION
  //   topic "x.y.reports" has 3 partitions, the config says 6
  // and creates nothing. Then creates the missing topics (partitions, replication factor and
  // configs from their specs) and returns once every topic is visible in the cluster metadata
  // with a leader for each partition. Existing topics are left as they are: their configs are not
  // compared or changed. Idempotent (a second call sends no CreateTopics request), and safe to
  // race with another process creating the same topics.
  // Other errors: INVALID_ARGUMENT for a spec without a name or with partitions <= 0, for
  // duplicate names, or for a topic the broker rejects (bad name or config, a replication factor
  // larger than the cluster); UNAVAILABLE when the cluster does not answer, or the metadata does
  // not show the topics, within the timeout. After an error other than FAILED_PRECONDITION some
  // topics may have been created; calling again completes the work.
  absl::Status EnsureTopics(absl::Span<const TopicSpec> topics);

  // The partition count of `topic`. Errors: NOT_FOUND if the topic does not exist.
  absl::StatusOr<int> PartitionCount(std::string_view topic);

  // The effective configuration of `topic` (explicit and default entries alike); entries without
  // a value (sensitive or unset) are left out. Errors: NOT_FOUND if the topic does not exist.
  absl::StatusOr<Properties> DescribeTopicConfig(std::string_view topic);

  // {low, high}: the first offset in `partition` of `topic` and the end offset. The end offset
  // follows the handle's isolation.level: with read_committed (librdkafka's default, also on
  // producer handles) it is the last stable offset, else the high watermark.
  // Errors: NOT_FOUND for an unknown topic or partition. (On a borrowed producer handle with
  // allow.auto.create.topics=true, a broker that auto-creates topics would create a missing one.)
  absl::StatusOr<std::pair<int64_t, int64_t>> WatermarkOffsets(std::string_view topic,
                                                               int32_t partition);

 private:
  Admin(HandlePtr owned, absl::Duration timeout);

  // Constant after construction.
  HandlePtr owned_;  // null when the handle is borrowed
  rd_kafka_t* const rk_;
  const absl::Duration timeout_;
};

}  // namespace tally::kafka

#endif  // TALLY_SERVER_KAFKA_ADMIN_H_
