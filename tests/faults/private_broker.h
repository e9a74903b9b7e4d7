#ifndef TALLY_TESTS_FAULTS_PRIVATE_BROKER_H_
#define TALLY_TESTS_FAULTS_PRIVATE_BROKER_H_

// A Kafka broker of one test's own (deploy/kafka/kafka.sh in a temporary directory), for tests
// that stop and start the broker: the shared broker of tests/run.sh must never be restarted.
// Not thread-safe.

#include <string>

#include "absl/status/statusor.h"
#include "tests/testing/temp_dir.h"

namespace tally::test {

class PrivateBroker {
 public:
  PrivateBroker() = default;
  ~PrivateBroker();  // always stops the broker

  // Starts the broker (formatting the directory the first time; later starts keep its data and
  // port: a broker restart). Returns the bootstrap address.
  absl::StatusOr<std::string> Start();
  // Stops the broker (SIGTERM, then SIGKILL after 30 s) and waits until it has exited.
  absl::Status Stop();
  // The end of the broker's log, for failure messages.
  std::string LogTail() const;

 private:
  absl::StatusOr<std::string> Run(const std::string& command);
  TempDir dir_;
};

}  // namespace tally::test

#endif  // TALLY_TESTS_FAULTS_PRIVATE_BROKER_H_
