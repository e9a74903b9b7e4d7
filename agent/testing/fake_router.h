#ifndef TALLY_AGENT_TESTING_FAKE_ROUTER_H_
#define TALLY_AGENT_TESTING_FAKE_ROUTER_H_

// FakeRouter: a real gRPC server in the test process that implements tally.v1.StateService's
// ReportState, ReportStates and ReportBatch by recording what it accepts — a test double of
// tallyd's router that tests start and stop to simulate outages, or make older than ReportBatch.
// Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server.h"
#include "tally/v1/state.grpc.pb.h"

namespace tally::agent::test {

class FakeRouter {
 public:
  FakeRouter();
  ~FakeRouter();  // Stop()

  // Serves on 127.0.0.1:`port`; 0 picks a free port the first time and reuses it on every later
  // Start, so clients see the same router come back. UNAVAILABLE if it cannot listen.
  absl::Status Start(int port = 0);
  // Stops serving; calls in progress are cancelled. What was recorded is kept.
  void Stop();

  std::string address() const;  // 127.0.0.1:PORT, once started

  // Refuses reports with this state with INVALID_ARGUMENT: a ReportStates stream ends there, and
  // a ReportBatch holding one is refused whole (`reports[i].state: ...`), none of it recorded.
  void RefuseState(std::string state);
  // Answers ReportBatch with UNIMPLEMENTED from now on (`unimplemented`), as a router older than
  // it does (such a call is counted in batch_calls but records no authorization), or serves it
  // again, as the same router once upgraded.
  void AnswerReportBatchUnimplemented(bool unimplemented = true);

  // Accepted reports, in the order they arrived.
  std::vector<tally::v1::ReportStateRequest> reports() const;
  // The authorization metadata of each call served (empty if it had none), in order.
  std::vector<std::string> authorizations() const;
  size_t unary_calls() const;   // ReportState
  size_t stream_calls() const;  // ReportStates
  size_t batch_calls() const;   // ReportBatch, those answered UNIMPLEMENTED included

  // Records one report; what both RPCs do for each request. Public for the service.
  grpc::Status Accept(const grpc::CallbackServerContext& ctx,
                      const tally::v1::ReportStateRequest& request,
                      tally::v1::ReportStateResponse* response, bool first_of_call, bool stream);
  // Records a whole batch, or none of it; what ReportBatch does. Public for the service.
  grpc::Status AcceptBatch(const grpc::CallbackServerContext& ctx,
                           const tally::v1::ReportBatchRequest& request,
                           tally::v1::ReportBatchResponse* response);

 private:
  class Service;

  std::unique_ptr<Service> service_;
  mutable absl::Mutex mu_;
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(mu_);
  int port_ ABSL_GUARDED_BY(mu_) = 0;
  std::string refused_state_ ABSL_GUARDED_BY(mu_);
  bool batch_unimplemented_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<tally::v1::ReportStateRequest> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> authorizations_ ABSL_GUARDED_BY(mu_);
  size_t unary_calls_ ABSL_GUARDED_BY(mu_) = 0;
  size_t stream_calls_ ABSL_GUARDED_BY(mu_) = 0;
  size_t batch_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally::agent::test

#endif  // TALLY_AGENT_TESTING_FAKE_ROUTER_H_
