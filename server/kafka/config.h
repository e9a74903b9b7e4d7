#ifndef TALLY_SERVER_KAFKA_CONFIG_H_
#define TALLY_SERVER_KAFKA_CONFIG_H_

// librdkafka configuration objects built from string properties, and the client handles made from
// them. Properties are librdkafka's own names ("bootstrap.servers", "linger.ms", ...), so Kafka
// security settings (SASL/SSL) pass through unchanged.
//
// All functions are thread-safe; the objects they return are owned by the caller.

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace tally::kafka {

// librdkafka properties: name -> value.
using Properties = absl::flat_hash_map<std::string, std::string>;

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
// A client handle. Destroying it does not flush a producer: flush (or purge) first.
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;

// Owning pointers for the other librdkafka objects the adapters and the node hold.
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* t) const { rd_kafka_topic_destroy(t); }
};
using TopicPtr = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;

// A new configuration with every property of `base`, then of `overrides` (which win over `base`
// for the same name), set in name order so a failure is reproducible.
// Errors: INVALID_ARGUMENT naming the first property librdkafka rejects, with its reason:
//   kafka property "linger.ms": Invalid value "soon" for configuration property "linger.ms"
// (unknown names are rejected the same way).
absl::StatusOr<ConfPtr> BuildConf(const Properties& base, const Properties& overrides = {});

// A new client handle of `type` made from `conf`, which it consumes.
// Errors: INVALID_ARGUMENT with librdkafka's reason when the properties do not fit together (for
// example transactional.id with enable.idempotence=false), prefixed "kafka client: ".
absl::StatusOr<HandlePtr> NewHandle(rd_kafka_type_t type, ConfPtr conf);

}  // namespace tally::kafka

#endif  // TALLY_SERVER_KAFKA_CONFIG_H_
