#ifndef TALLY_TESTS_INTEGRATION_NODE_HARNESS_H_
#define TALLY_TESTS_INTEGRATION_NODE_HARNESS_H_

// Test harness for node-level tests: real tallyd processes (started, SIGTERMed, SIGKILLed) and a
// Kafka client that produces reports and reads topics back with read_committed.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/kafka/config.h"

namespace tally::test {

// One tallyd process. Not thread-safe.
class TallydProcess {
 public:
  TallydProcess(std::string config_path, std::string node_id, std::string data_dir,
                std::string log_path);
  ~TallydProcess();  // SIGKILLs a process still running

  // Starts tallyd and waits (bounded) until it serves.
  absl::Status Start();
  // Sends `signal` and, for SIGTERM/SIGKILL, waits for the exit. Returns the exit status as
  // from waitpid, or -1 if not running.
  int Signal(int signal);
  bool running() const { return pid_ > 0; }
  // host:port the process serves on (from its ready file); valid after Start().
  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  // The process's log so far.
  std::string Log() const;
  // Sum of `field` over the log lines whose msg is `msg` (e.g. restored_records of
  // "partition assigned"), and the number of such lines.
  std::pair<int64_t, int> SumLogField(const std::string& msg, const std::string& field) const;

 private:
  const std::string config_path_, node_id_, data_dir_, log_path_;
  pid_t pid_ = -1;
  std::string address_;
};

struct Record {
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::optional<std::string> value;  // nullopt: tombstone
  int64_t timestamp_ms = 0;          // the record's Kafka timestamp
};

// A Kafka client for tests. Not thread-safe.
class KafkaTestClient {
 public:
  static absl::StatusOr<std::unique_ptr<KafkaTestClient>> Create(const std::string& bootstrap);
  ~KafkaTestClient();

  // Queues a record (idempotent producer, acks=all). value nullptr: a tombstone.
  absl::Status Produce(const std::string& topic, int32_t partition, const std::string& key,
                       const std::string* value);
  // Waits until every queued record is acknowledged; the first failed delivery, if any.
  absl::Status Flush();
  // Every record of `topic` (partitions 0..partitions-1) from the start to the last stable
  // offset, read_committed, in offset order per partition. With `read_committed` false: to the
  // high watermark, records of aborted and open transactions included.
  absl::StatusOr<std::vector<Record>> ReadAll(const std::string& topic, int partitions,
                                              bool read_committed = true);
  // True once the group's committed offsets reach the end of every partition of `topic`.
  absl::StatusOr<bool> GroupCaughtUp(const std::string& group, const std::string& topic,
                                     int partitions);

 private:
  explicit KafkaTestClient(std::string bootstrap) : bootstrap_(std::move(bootstrap)) {}
  const std::string bootstrap_;
  kafka::HandlePtr producer_;
  absl::Status delivery_error_;
};

}  // namespace tally::test

#endif  // TALLY_TESTS_INTEGRATION_NODE_HARNESS_H_
