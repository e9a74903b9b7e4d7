#ifndef TALLY_AGENT_REPORTER_ROUTER_SENDER_H_
#define TALLY_AGENT_REPORTER_ROUTER_SENDER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "agent/reporter/backoff.h"
#include "agent/reporter/clock.h"
#include "agent/reporter/report_sender.h"
#include "grpcpp/security/credentials.h"
#include "tally/v1/state.grpc.pb.h"

namespace tally::agent {

// Makes the StateService stub for one router endpoint (host:port). The seam where tests plug in
// their own channels.
using StubFactory = std::function<std::unique_ptr<tally::v1::StateService::StubInterface>(
    const std::string& endpoint)>;

// Plaintext channels whose reconnect backoff is bounded by `reconnect` (initial..max), so a
// router that comes back is noticed about as soon as the agent's own backoff retries it.
StubFactory InsecureStubFactory(BackoffOptions reconnect);
// The same over TLS with `credentials`.
StubFactory StubFactoryWith(BackoffOptions reconnect,
                            std::shared_ptr<grpc::ChannelCredentials> credentials);

struct RouterSenderOptions {
  std::vector<std::string> routers;  // host:port, at least one
  // Read before every Send; its trimmed content is sent as `authorization: Bearer <token>`.
  // Empty: no authorization header.
  std::string token_file;
  absl::Duration rpc_timeout = absl::Seconds(5);
  // How long a router that answered ReportBatch with UNIMPLEMENTED gets streams before it is
  // asked again (it may have been upgraded meanwhile, in a rolling upgrade).
  absl::Duration batch_retry_after = absl::Minutes(10);
};

// Sends to Tally's routers over gRPC: one report with ReportState, more with one ReportBatch
// call, which is all or nothing: SendResult.delivered is all of them on OK and 0 on any failure
// (INVALID_ARGUMENT aside, below); a failed batch may be sent again whole.
//
// Routers older than ReportBatch answer it with UNIMPLEMENTED: that batch, and every later one
// to the same router endpoint for batch_retry_after, goes as one ReportStates stream (one
// response per report, in order; logged at info); then ReportBatch is tried there again, so an
// agent notices a router upgraded under it. A batch refused as
// INVALID_ARGUMENT is sent again as a ReportStates stream to the same router: a refused
// ReportBatch writes nothing and names the bad report only in its message, while the stream
// delivers the reports before it and stops there, so `delivered` is the index of the refused
// report, as ReportSender's contract says (the Outbox then drops that report alone).
//
// Sticks to the router that last worked; when it fails, moves on to the next in the list, trying
// each router at most once per Send, and returns the last failure if none accepted. An
// INVALID_ARGUMENT answer is returned without trying another router (any router would refuse that
// report). Each router gets one deadline of rpc_timeout per Send, shared by the calls made to it.
// The token file is read once per Send. Stubs are made once per endpoint and reused.
// Send is called from one thread at a time (ReportSender's contract).
class RouterSender : public ReportSender {
 public:
  // `clock` (null: the real one) must outlive the sender.
  RouterSender(RouterSenderOptions options, StubFactory stubs, const Clock* clock = nullptr);

  SendResult Send(std::span<const tally::v1::ReportStateRequest> reports) override;

  // The router the next Send starts with.
  const std::string& current_router() const { return options_.routers[current_]; }

 private:
  struct Router {
    std::unique_ptr<tally::v1::StateService::StubInterface> stub;  // made on first use
    // Until then it gets streams: it answered ReportBatch with UNIMPLEMENTED.
    absl::Time streams_until = absl::InfinitePast();
  };

  // One attempt at routers_[index]: the calls above, all within `deadline`.
  SendResult SendTo(size_t index, const std::string& token, absl::Time deadline,
                    std::span<const tally::v1::ReportStateRequest> reports);

  // Constant after construction.
  const RouterSenderOptions options_;
  const StubFactory stub_factory_;
  const Clock& clock_;

  // Only touched by the thread calling Send.
  std::vector<Router> routers_;  // by index in options_.routers
  size_t current_ = 0;
};

}  // namespace tally::agent

#endif  // TALLY_AGENT_REPORTER_ROUTER_SENDER_H_
