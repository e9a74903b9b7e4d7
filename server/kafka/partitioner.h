#ifndef TALLY_SERVER_KAFKA_PARTITIONER_H_
#define TALLY_SERVER_KAFKA_PARTITIONER_H_

// The partition of a key: the Java client's default, toPositive(murmur2(key)) % partition_count,
// so producers in any language that use Kafka's default partitioner put a key where Tally looks
// for it. Computed by librdkafka's own murmur2 partitioner, not a second implementation.
//
// Thread-safe; no I/O.

#include <cstdint>
#include <string_view>

namespace tally::kafka {

// The partition in [0, partition_count) of `key` (its bytes as given; an empty key hashes like an
// empty byte array in Java, it is not treated as "no key"). Requires partition_count > 0.
int32_t PartitionFor(std::string_view key, int32_t partition_count);

}  // namespace tally::kafka

#endif  // TALLY_SERVER_KAFKA_PARTITIONER_H_
