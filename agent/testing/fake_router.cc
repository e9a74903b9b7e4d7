#include "agent/testing/fake_router.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace tally::agent::test {

using tally::v1::ReportBatchRequest;
using tally::v1::ReportBatchResponse;
using tally::v1::ReportStateRequest;
using tally::v1::ReportStateResponse;

class FakeRouter::Service : public tally::v1::StateService::CallbackService {
 public:
  explicit Service(FakeRouter* router) : router_(router) {}

  grpc::ServerUnaryReactor* ReportState(grpc::CallbackServerContext* ctx,
                                        const ReportStateRequest* request,
                                        ReportStateResponse* response) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(router_->Accept(*ctx, *request, response, true, false));
    return reactor;
  }

  grpc::ServerBidiReactor<ReportStateRequest, ReportStateResponse>* ReportStates(
      grpc::CallbackServerContext* ctx) override {
    return new Stream(router_, ctx);
  }

  grpc::ServerUnaryReactor* ReportBatch(grpc::CallbackServerContext* ctx,
                                        const ReportBatchRequest* request,
                                        ReportBatchResponse* response) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(router_->AcceptBatch(*ctx, *request, response));
    return reactor;
  }

 private:
  // Reads a request, records it, writes its response, reads the next: one at a time, in order.
  class Stream : public grpc::ServerBidiReactor<ReportStateRequest, ReportStateResponse> {
   public:
    Stream(FakeRouter* router, grpc::CallbackServerContext* ctx) : router_(router), ctx_(ctx) {
      StartRead(&request_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      grpc::Status s = router_->Accept(*ctx_, request_, &response_, first_, true);
      first_ = false;
      if (!s.ok()) {
        Finish(s);
        return;
      }
      StartWrite(&response_);
    }
    void OnWriteDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
        return;
      }
      StartRead(&request_);
    }
    void OnDone() override { delete this; }

   private:
    FakeRouter* const router_;
    grpc::CallbackServerContext* const ctx_;
    ReportStateRequest request_;
    ReportStateResponse response_;
    bool first_ = true;
  };

  FakeRouter* const router_;
};

FakeRouter::FakeRouter() : service_(std::make_unique<Service>(this)) {}

FakeRouter::~FakeRouter() { Stop(); }

absl::Status FakeRouter::Start(int port) {
  absl::MutexLock lock(&mu_);
  if (server_ != nullptr) return absl::OkStatus();
  if (port == 0) port = port_;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(),
                           &bound);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("fake router cannot listen on port ", port));
  }
  port_ = bound;
  return absl::OkStatus();
}

void FakeRouter::Stop() {
  std::unique_ptr<grpc::Server> server;
  {
    absl::MutexLock lock(&mu_);
    server = std::move(server_);
  }
  if (server == nullptr) return;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  server->Wait();
}

std::string FakeRouter::address() const {
  absl::MutexLock lock(&mu_);
  return absl::StrCat("127.0.0.1:", port_);
}

void FakeRouter::RefuseState(std::string state) {
  absl::MutexLock lock(&mu_);
  refused_state_ = std::move(state);
}

void FakeRouter::AnswerReportBatchUnimplemented(bool unimplemented) {
  absl::MutexLock lock(&mu_);
  batch_unimplemented_ = unimplemented;
}

namespace {

std::string Authorization(const grpc::CallbackServerContext& ctx) {
  auto it = ctx.client_metadata().find("authorization");
  return it == ctx.client_metadata().end() ? std::string()
                                           : std::string(it->second.data(), it->second.size());
}

}  // namespace

grpc::Status FakeRouter::Accept(const grpc::CallbackServerContext& ctx,
                                const ReportStateRequest& request, ReportStateResponse* response,
                                bool first_of_call, bool stream) {
  absl::MutexLock lock(&mu_);
  if (first_of_call) {
    ++(stream ? stream_calls_ : unary_calls_);
    authorizations_.push_back(Authorization(ctx));
  }
  if (!refused_state_.empty() && request.state() == refused_state_) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "state: refused by the test");
  }
  reports_.push_back(request);
  response->set_token(absl::StrCat("0:", reports_.size()));
  return grpc::Status::OK;
}

grpc::Status FakeRouter::AcceptBatch(const grpc::CallbackServerContext& ctx,
                                     const ReportBatchRequest& request,
                                     ReportBatchResponse* response) {
  absl::MutexLock lock(&mu_);
  ++batch_calls_;
  if (batch_unimplemented_) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "ReportBatch: not served by this router");
  }
  authorizations_.push_back(Authorization(ctx));
  for (int i = 0; i < request.reports_size(); ++i) {
    if (!refused_state_.empty() && request.reports(i).state() == refused_state_) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("reports[", i, "].state: refused by the test"));
    }
  }
  for (const ReportStateRequest& report : request.reports()) {
    reports_.push_back(report);
    response->add_tokens(absl::StrCat("0:", reports_.size()));
  }
  return grpc::Status::OK;
}

std::vector<ReportStateRequest> FakeRouter::reports() const {
  absl::MutexLock lock(&mu_);
  return reports_;
}

std::vector<std::string> FakeRouter::authorizations() const {
  absl::MutexLock lock(&mu_);
  return authorizations_;
}

size_t FakeRouter::unary_calls() const {
  absl::MutexLock lock(&mu_);
  return unary_calls_;
}

size_t FakeRouter::stream_calls() const {
  absl::MutexLock lock(&mu_);
  return stream_calls_;
}

size_t FakeRouter::batch_calls() const {
  absl::MutexLock lock(&mu_);
  return batch_calls_;
}

}  // namespace tally::agent::test
