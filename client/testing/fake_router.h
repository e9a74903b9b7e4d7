#ifndef TALLY_CLIENT_TESTING_FAKE_ROUTER_H_
#define TALLY_CLIENT_TESTING_FAKE_ROUTER_H_

// Fake routers for tests of tally::Client and tallyctl: StateService and AdminService served in
// process (no port, no network), with scripted answers, and a record of what they were asked.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tally/v1/state.grpc.pb.h"

namespace tally::test {

// One watch connection's script: the events the fake sends, then the status it ends with.
struct WatchScript {
  std::vector<v1::WatchStateResponse> events;
  grpc::Status end;
};

class FakeState final : public v1::StateService::Service {
 public:
  grpc::Status ReportState(grpc::ServerContext* context, const v1::ReportStateRequest* request,
                           v1::ReportStateResponse* response) override {
    Record(context);
    if (!fail_with.ok()) return fail_with;
    response->set_token(absl::StrCat("w1.0.", request->object_key()));
    return grpc::Status::OK;
  }

  // Tokens "w1.0.<object_key>", one a report in order; a batch with a report of empty state is
  // refused whole, naming it, as the router does.
  grpc::Status ReportBatch(grpc::ServerContext* context, const v1::ReportBatchRequest* request,
                           v1::ReportBatchResponse* response) override {
    Record(context);
    {
      absl::MutexLock lock(&mu);
      batches.push_back(*request);
    }
    if (!fail_with.ok()) return fail_with;
    for (int i = 0; i < request->reports_size(); ++i) {
      if (request->reports(i).state().empty()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("reports[", i, "].state: must not be empty"));
      }
    }
    for (const v1::ReportStateRequest& report : request->reports()) {
      response->add_tokens(absl::StrCat("w1.0.", report.object_key()));
    }
    return grpc::Status::OK;
  }

  grpc::Status GetState(grpc::ServerContext* context, const v1::GetStateRequest* request,
                        v1::GetStateResponse* response) override {
    Record(context);
    if (!fail_with.ok()) return fail_with;
    auto it = states.find(request->object_key());
    if (it == states.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no state");
    *response->mutable_state() = it->second;
    response->set_served_by(absl::StrCat("min_token=", request->min_token()));
    return grpc::Status::OK;
  }

  // Pages of states (page token = the last key), with an empty page with a token in between when
  // empty_pages is set.
  grpc::Status ListState(grpc::ServerContext* context, const v1::ListStateRequest* request,
                         v1::ListStateResponse* response) override {
    Record(context);
    {
      absl::MutexLock lock(&mu);
      page_tokens.push_back(request->page_token());
    }
    if (!fail_with.ok()) return fail_with;
    if (fail_page_token && request->page_token() == *fail_page_token) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "page broke");
    }
    if (empty_pages && request->page_token().rfind("empty:", 0) != 0) {
      response->set_next_page_token(absl::StrCat("empty:", request->page_token()));
      return grpc::Status::OK;
    }
    std::string after = request->page_token();
    if (after.rfind("empty:", 0) == 0) after = after.substr(6);
    auto it = after.empty() ? states.begin() : states.upper_bound(after);
    const int page_size = request->page_size() > 0 ? request->page_size() : 100;
    for (; it != states.end() && response->states_size() < page_size; ++it) {
      if (it->first.rfind(request->prefix(), 0) != 0) continue;
      *response->add_states() = it->second;
    }
    if (it != states.end() && response->states_size() > 0) {
      response->set_next_page_token(response->states().rbegin()->object_key());
    }
    return grpc::Status::OK;
  }

  grpc::Status WatchState(grpc::ServerContext* context, const v1::WatchStateRequest* request,
                          grpc::ServerWriter<v1::WatchStateResponse>* writer) override {
    Record(context);
    WatchScript script;
    {
      absl::MutexLock lock(&mu);
      watch_requests.push_back(*request);
      if (watch_scripts.empty()) {
        script.end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "no script left");
      } else {
        script = watch_scripts.front();
        watch_scripts.erase(watch_scripts.begin());
      }
    }
    for (const v1::WatchStateResponse& event : script.events) writer->Write(event);
    if (script.end.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      // "Hang": wait until the client cancels.
      while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(1));
      return grpc::Status::CANCELLED;
    }
    return script.end;
  }

  void Record(grpc::ServerContext* context) {
    absl::MutexLock lock(&mu);
    ++calls;
    auto auth = context->client_metadata().find("authorization");
    authorization = auth == context->client_metadata().end()
                        ? ""
                        : std::string(auth->second.data(), auth->second.size());
    deadline = absl::FromChrono(context->deadline());
  }

  int Calls() {
    absl::MutexLock lock(&mu);
    return calls;
  }

  // Set before calls start.
  grpc::Status fail_with = grpc::Status::OK;
  std::map<std::string, v1::ObjectState> states;
  bool empty_pages = false;
  std::optional<std::string> fail_page_token;

  absl::Mutex mu;
  int calls ABSL_GUARDED_BY(mu) = 0;
  std::string authorization ABSL_GUARDED_BY(mu);
  absl::Time deadline ABSL_GUARDED_BY(mu);
  std::vector<std::string> page_tokens ABSL_GUARDED_BY(mu);
  std::vector<WatchScript> watch_scripts ABSL_GUARDED_BY(mu);
  std::vector<v1::WatchStateRequest> watch_requests ABSL_GUARDED_BY(mu);
  std::vector<v1::ReportBatchRequest> batches ABSL_GUARDED_BY(mu);  // every ReportBatch request
};

class FakeAdmin final : public v1::AdminService::Service {
 public:
  grpc::Status SetState(grpc::ServerContext*, const v1::SetStateRequest* request,
                        v1::SetStateResponse* response) override {
    response->set_token(absl::StrCat("set:", request->state(), ":", request->pin()));
    return grpc::Status::OK;
  }
  grpc::Status PurgeState(grpc::ServerContext*, const v1::PurgeStateRequest* request,
                          v1::PurgeStateResponse* response) override {
    response->set_token(absl::StrCat("purge:", request->object_key(), ":", request->reason()));
    return grpc::Status::OK;
  }
  grpc::Status DescribeCluster(grpc::ServerContext*, const v1::DescribeClusterRequest*,
                               v1::DescribeClusterResponse* response) override {
    response->add_nodes()->set_id("n1");
    return grpc::Status::OK;
  }
};

// A router served in process: no port, no network.
struct FakeRouter {
  FakeRouter() {
    grpc::ServerBuilder builder;
    builder.RegisterService(&state);
    builder.RegisterService(&admin);
    server = builder.BuildAndStart();
  }
  ~FakeRouter() { server->Shutdown(absl::ToChronoTime(absl::Now())); }
  FakeState state;
  FakeAdmin admin;
  std::unique_ptr<grpc::Server> server;
};

}  // namespace tally::test

#endif  // TALLY_CLIENT_TESTING_FAKE_ROUTER_H_
