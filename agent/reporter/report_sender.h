#ifndef TALLY_AGENT_REPORTER_REPORT_SENDER_H_
#define TALLY_AGENT_REPORTER_REPORT_SENDER_H_

// ReportSender: delivers reports to Tally. The interface the Outbox depends on, so its logic is
// tested with a scripted sender; RouterSender (router_sender.h) is the gRPC implementation.

#include <cstddef>
#include <span>

#include "absl/status/status.h"
#include "tally/v1/state.pb.h"

namespace tally::agent {

struct SendResult {
  // reports[0, delivered) were accepted (durably, by the router's contract).
  size_t delivered = 0;
  // OK if every report was delivered; else why reports[delivered] was not. INVALID_ARGUMENT
  // means that report itself was refused (retrying it cannot help); any other code means the
  // router could not be reached or failed, and the same reports may be tried again later.
  absl::Status status;
};

class ReportSender {
 public:
  virtual ~ReportSender() = default;
  // Sends `reports` in order, stopping at the first failure. Blocks for at most the sender's
  // own deadlines. Called from one thread at a time.
  virtual SendResult Send(std::span<const tally::v1::ReportStateRequest> reports) = 0;
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_REPORTER_REPORT_SENDER_H_
