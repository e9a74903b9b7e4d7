#include "server/router/parse_error_interceptor.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace tally::router {
namespace {

class ParseErrorInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ParseErrorInterceptor(std::string method) : method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      // Our services never answer these two codes with an empty message: only gRPC's
      // deserialization does.
      if ((status.error_code() == grpc::StatusCode::INTERNAL ||
           status.error_code() == grpc::StatusCode::UNIMPLEMENTED) &&
          status.error_message().empty()) {
        methods->ModifySendStatus(grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("the request to ", method_,
                         " does not parse: every string field must be valid UTF-8, and the "
                         "message must be the method's request type")));
      }
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
};

class Factory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // Only methods the router implements: an unknown method keeps its UNIMPLEMENTED. Not
    // WatchState: it is registered raw and answers a request that does not parse itself, and an
    // interceptor would run on each of its many writes.
    static const auto* const kMethods = new absl::flat_hash_set<std::string>{
        "/tally.v1.StateService/ReportState", "/tally.v1.StateService/ReportStates",
        "/tally.v1.StateService/GetState",    "/tally.v1.StateService/ListState",
        "/tally.v1.AdminService/SetState",    "/tally.v1.AdminService/PurgeState",
        "/tally.v1.AdminService/DescribeCluster"};
    const std::string method = info->method();
    if (!kMethods->contains(method)) return nullptr;
    return new ParseErrorInterceptor(method);
  }
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewParseErrorInterceptor() {
  return std::make_unique<Factory>();
}

}  // namespace tally::router
