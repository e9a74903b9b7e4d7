#ifndef TALLY_TESTS_TESTING_KAFKA_BOOTSTRAP_H_
#define TALLY_TESTS_TESTING_KAFKA_BOOTSTRAP_H_

#include <string>

namespace tally::test {

// The bootstrap address ("127.0.0.1:PORT") of the real Kafka broker the test runner started, from
// the environment variable TALLY_KAFKA_BOOTSTRAP. A test that needs Kafka and cannot get it must
// fail, never skip: if the variable is unset or empty this prints what to do to stderr and aborts
// the test binary (ctest reports the test as failed).
std::string KafkaBootstrapOrDie();

}  // namespace tally::test

#endif  // TALLY_TESTS_TESTING_KAFKA_BOOTSTRAP_H_
