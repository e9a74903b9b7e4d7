#include "server/kafka/partitioner.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace tally::kafka {
namespace {

// Java's Utils.murmur2 of each key, from Kafka's own test
// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2). The empty
// key's value was worked out by hand from the Java algorithm (no 4-byte blocks, no tail, only the
// final mix of seed ^ 0).
struct JavaVector {
  std::string key;
  int32_t murmur2;
};
const JavaVector kJavaVectors[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
    {"", 275646681},
};

// The Java default partitioner: Utils.toPositive(murmur2(key)) % numPartitions.
int32_t JavaPartition(int32_t murmur2, int32_t partition_count) {
  return static_cast<int32_t>((static_cast<uint32_t>(murmur2) & 0x7fffffffu) %
                              static_cast<uint32_t>(partition_count));
}

TEST(PartitionForTest, MatchesJavaDefaultPartitionerOnKafkaVectors) {
  // INT32_MAX partitions exposes almost all 31 bits of the hash, the small counts the modulo.
  for (int32_t count : {1, 2, 3, 12, 50, 1000, std::numeric_limits<int32_t>::max()}) {
    for (const JavaVector& v : kJavaVectors) {
      EXPECT_EQ(PartitionFor(v.key, count), JavaPartition(v.murmur2, count))
          << "key \"" << v.key << "\", " << count << " partitions";
    }
  }
}

TEST(PartitionForTest, FoobarLandsWhereJavaPutsIt) {
  // toPositive(-790332482) = 1357151166.
  EXPECT_EQ(PartitionFor("foobar", 10), 6);
  EXPECT_EQ(PartitionFor("foobar", 50), 16);
}

TEST(PartitionForTest, MatchesPublishedTwelvePartitionTable) {
  // Keys and partitions for 12 partitions as placed by the Java client, from a public table
  // (checked against the Java algorithm independently of librdkafka).
  const std::pair<std::string, int32_t> kTable[] = {
      {"1039-36302-36840-2-9f138052", 4},
      {"1388-20023-36900-2-c9985f66", 0},
      {"1175-03505-36600-2-126dd9ca", 1},
      {"1011-98208-36480-2-9eef750a", 8},
      {"233-75504-36900-2-609151bd", 10},
      {"1182-07205-22440-2-0ad4507d", 9},
      {"1010-98110-23700-2-295bfb4c", 10},
      {"1137-01302-23820-2-d560d49a", 4},
      {"599999", 3},
  };
  for (const auto& [key, partition] : kTable) {
    EXPECT_EQ(PartitionFor(key, 12), partition) << key;
  }
}

TEST(PartitionForTest, EmptyStringViewWithNullDataHashesAsEmptyKey) {
  EXPECT_EQ(PartitionFor(std::string_view(), 1000), JavaPartition(275646681, 1000));
}

TEST(PartitionForTest, KeyBytesAfterNulCount) {
  // The key is its bytes, not a C string: "a\0b" and "a" must hash differently here.
  const std::string with_nul("a\0b", 3);
  EXPECT_NE(PartitionFor(with_nul, std::numeric_limits<int32_t>::max()),
            PartitionFor("a", std::numeric_limits<int32_t>::max()));
}

}  // namespace
}  // namespace tally::kafka
