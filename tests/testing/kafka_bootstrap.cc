#include "tests/testing/kafka_bootstrap.h"

#include <cstdio>
#include <cstdlib>

namespace tally::test {

std::string KafkaBootstrapOrDie() {
  const char* bootstrap = std::getenv("TALLY_KAFKA_BOOTSTRAP");
  if (bootstrap == nullptr || *bootstrap == '\0') {
    std::fputs(
        "\n*** FAILED: this test needs the real Kafka broker, but TALLY_KAFKA_BOOTSTRAP is unset.\n"
        "*** Run the tests with tests/run.sh (it starts a broker), or start one yourself:\n"
        "***   deploy/kafka/kafka.sh start --dir /tmp/tally-kafka    # prints 127.0.0.1:PORT\n"
        "***   TALLY_KAFKA_BOOTSTRAP=127.0.0.1:PORT ctest -L kafka\n"
        "*** Tests that need Kafka fail rather than skip, so a missing broker never passes.\n\n",
        stderr);
    std::fflush(stderr);
    std::abort();
  }
  return bootstrap;
}

}  // namespace tally::test
