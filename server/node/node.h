#ifndef TALLY_SERVER_NODE_NODE_H_
#define TALLY_SERVER_NODE_NODE_H_

// Node is the node role of tallyd: it makes sure the scenarios' topics exist and runs the
// Processor on a thread of its own. Start() and Stop() are called from one thread; registry()
// may be used from any thread.

#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "server/node/processor.h"
#include "server/node/shard_registry.h"
#include "tally/config/v1/config.pb.h"

namespace tally::node {

class Node {
 public:
  // `config` must outlive the Node.
  explicit Node(const config::v1::Config& config);
  ~Node();

  // Creates missing topics (FAILED_PRECONDITION on a partition-count mismatch) and starts
  // processing. Partitions become readable as they are assigned and restored.
  absl::Status Start();
  // Stops processing and closes the shards. Idempotent.
  void Stop();

  ShardRegistry& registry() { return registry_; }

 private:
  ShardRegistry registry_;
  Processor processor_;
  std::thread thread_;
};

}  // namespace tally::node

#endif  // TALLY_SERVER_NODE_NODE_H_
