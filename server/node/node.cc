#include "server/node/node.h"

#include "server/common/log.h"

namespace tally::node {

Node::Node(const config::v1::Config& config)
    : config_(config),
      files_(config),
      queries_(registry_, config.node().node_id()),
      standbys_(config, registry_, files_),
      processor_(config, registry_, files_, standbys_) {}

Node::~Node() { Stop(); }

absl::Status Node::Start(const std::string& endpoint, const MembershipSource* membership) {
  if (absl::Status s = processor_.EnsureTopics(); !s.ok()) return s;
  if (absl::Status s = standbys_.Start(membership); !s.ok()) return s;
  membership_ = std::make_unique<MembershipPublisher>(config_, registry_, endpoint);
  if (absl::Status s = membership_->Start(); !s.ok()) {
    membership_.reset();
    return s;
  }
  thread_ = std::thread([this] { processor_.Run(); });
  return absl::OkStatus();
}

void Node::Stop() {
  if (!thread_.joinable()) {
    standbys_.Stop();  // Start() may have failed after starting it
    return;
  }
  // Routers learn first that this node is going, then the partitions close.
  membership_->Stop();
  processor_.Stop();
  thread_.join();
  standbys_.Stop();
  log::Info("node stopped");
}

}  // namespace tally::node
