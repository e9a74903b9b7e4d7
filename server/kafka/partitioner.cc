#include "server/kafka/partitioner.h"

#include <librdkafka/rdkafka.h>

#include <cassert>

namespace tally::kafka {

int32_t PartitionFor(std::string_view key, int32_t partition_count) {
  assert(partition_count > 0);
  // In librdkafka 2.0.2 rd_kafka_msg_partitioner_murmur2 reads only key, keylen and partition_cnt
  // (src/rdkafka_msg.c: `(rd_murmur2(key, keylen) & 0x7fffffff) % partition_cnt`), so no topic
  // object is needed. partitioner_test.cc pins the result to Kafka's own Java vectors, which
  // would catch a librdkafka that started to depend on the topic.
  // A default string_view has a null data(); give librdkafka a real pointer for the empty key.
  const char* bytes = key.empty() ? "" : key.data();
  return rd_kafka_msg_partitioner_murmur2(/*rkt=*/nullptr, bytes, key.size(), partition_count,
                                          /*rkt_opaque=*/nullptr,
                                          /*msg_opaque=*/nullptr);
}

}  // namespace tally::kafka
