#include "server/router/parse_error_interceptor.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"

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
        methods->ModifySendStatus(RequestDoesNotParse(method_));
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
        "/tally.v1.StateService/ReportBatch", "/tally.v1.StateService/GetState",
        "/tally.v1.StateService/ListState",   "/tally.v1.AdminService/SetState",
        "/tally.v1.AdminService/PurgeState",  "/tally.v1.AdminService/DescribeCluster"};
    const std::string method = info->method();
    if (!kMethods->contains(method)) return nullptr;
    return new ParseErrorInterceptor(method);
  }
};

}  // namespace

grpc::Status RequestDoesNotParse(const std::string& method) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("the request to ", method,
                                   " does not parse: every string field must be valid UTF-8, and "
                                   "the message must be the method's request type"));
}

grpc::Status RequestDoesNotParse(const std::string& method,
                                 const google::protobuf::Message& prototype,
                                 const std::string& bytes) {
  // Without the type, the bytes split into fields; the first that does not parse alone as one
  // of the type's fields (in proto3, a string that is not UTF-8) is the one to name.
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(bytes)) return RequestDoesNotParse(method);
  std::unique_ptr<google::protobuf::Message> probe(prototype.New());
  for (int i = 0; i < fields.field_count(); ++i) {
    google::protobuf::UnknownFieldSet one;
    one.AddField(fields.field(i));
    std::string field_bytes;
    if (!one.SerializeToString(&field_bytes) || probe->ParseFromString(field_bytes)) continue;
    const google::protobuf::FieldDescriptor* field =
        prototype.GetDescriptor()->FindFieldByNumber(fields.field(i).number());
    if (field == nullptr) break;
    const bool string = field->type() == google::protobuf::FieldDescriptor::TYPE_STRING;
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat(field->name(), string ? ": must be valid UTF-8" : ": does not parse"));
  }
  return RequestDoesNotParse(method);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewParseErrorInterceptor() {
  return std::make_unique<Factory>();
}

}  // namespace tally::router
