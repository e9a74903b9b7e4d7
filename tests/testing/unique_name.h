#ifndef TALLY_TESTS_TESTING_UNIQUE_NAME_H_
#define TALLY_TESTS_TESTING_UNIQUE_NAME_H_

#include <string>
#include <string_view>

namespace tally::test {

// "<prefix>-<16 random hex digits>", unique across processes and calls, and a legal Kafka topic,
// group or transactional id: characters of `prefix` outside [a-zA-Z0-9._-] become '_', and the
// prefix is cut so the name stays within Kafka's 249-character limit. Thread-safe.
std::string UniqueName(std::string_view prefix);

}  // namespace tally::test

#endif  // TALLY_TESTS_TESTING_UNIQUE_NAME_H_
