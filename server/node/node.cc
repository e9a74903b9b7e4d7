#include "server/node/node.h"

#include "server/common/log.h"

namespace tally::node {

Node::Node(const config::v1::Config& config) : processor_(config, registry_) {}

Node::~Node() { Stop(); }

absl::Status Node::Start() {
  if (absl::Status s = processor_.EnsureTopics(); !s.ok()) return s;
  thread_ = std::thread([this] { processor_.Run(); });
  return absl::OkStatus();
}

void Node::Stop() {
  if (!thread_.joinable()) return;
  processor_.Stop();
  thread_.join();
  log::Info("node stopped");
}

}  // namespace tally::node
