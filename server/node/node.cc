#include "server/node/node.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/common/log.h"

namespace tally::node {
namespace {

// Sets the calling thread's nice value (on Linux a thread's own; threads it starts inherit it).
absl::Status SetThreadNice(int nice) {
  errno = 0;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "node.processor_nice ", nice, ": setpriority: ", std::strerror(errno),
      nice < 0 ? " (a negative value needs CAP_SYS_NICE or an RLIMIT_NICE that allows it)" : ""));
}

}  // namespace

Node::Node(const config::v1::Config& config)
    : config_(config),
      files_(config),
      queries_(registry_, config.node().node_id()),
      standbys_(config, registry_, files_),
      processor_(config, registry_, files_, standbys_) {}

Node::~Node() { Stop(); }

absl::Status Node::Start(const std::string& endpoint, const MembershipSource* membership) {
  const int nice = config_.node().processor_nice();
  if (nice != 0) {
    // Find out now, before anything starts, whether the processor's thread may take this nice
    // value: a probe thread (same credentials and limits) tries it on itself.
    absl::Status allowed;
    std::thread([&] { allowed = SetThreadNice(nice); }).join();
    if (!allowed.ok()) return allowed;
  }
  if (absl::Status s = processor_.EnsureTopics(); !s.ok()) return s;
  if (absl::Status s = standbys_.Start(membership); !s.ok()) return s;
  membership_ = std::make_unique<MembershipPublisher>(config_, registry_, endpoint);
  if (absl::Status s = membership_->Start(); !s.ok()) {
    membership_.reset();
    return s;
  }
  thread_ = std::thread([this, nice] {
    if (nice != 0) {
      if (absl::Status s = SetThreadNice(nice); !s.ok()) {
        log::Error("processor priority not set", {{"error", s.ToString()}});
      } else {
        log::Info("processor priority set", {{"nice", nice}});
      }
    }
    processor_.Run();
  });
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
