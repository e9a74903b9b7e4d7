#ifndef TALLY_TESTS_FAULTS_PRIVATE_BROKER_H_
#define TALLY_TESTS_FAULTS_PRIVATE_BROKER_H_

// A Kafka broker of one test's own (deploy/kafka/kafka.sh in a temporary directory), for tests
// that stop and start the broker: the shared broker of tests/run.sh must never be restarted.
// The broker runs in a session of its own, so a watchdog process stops it and removes its
// directory if the test dies without running destructors (a crash, a ctest timeout).
// Not thread-safe.

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "tests/testing/temp_dir.h"

namespace tally::test {

class PrivateBroker {
 public:
  PrivateBroker();   // starts the watchdog
  ~PrivateBroker();  // always stops the broker, then the watchdog

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
  pid_t watchdog_ = -1;
};

}  // namespace tally::test

#endif  // TALLY_TESTS_FAULTS_PRIVATE_BROKER_H_
