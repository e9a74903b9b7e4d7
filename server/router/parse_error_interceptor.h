#ifndef TALLY_SERVER_ROUTER_PARSE_ERROR_INTERCEPTOR_H_
#define TALLY_SERVER_ROUTER_PARSE_ERROR_INTERCEPTOR_H_

// A request that does not parse (e.g. a string field that is not valid UTF-8, which proto3
// refuses) fails inside gRPC before any service code runs, with an empty INTERNAL (synchronous
// methods) or UNIMPLEMENTED (callback methods) status — neither tells the caller that the fault
// is theirs. This interceptor turns those statuses of the public API's methods into
// INVALID_ARGUMENT saying so. Other statuses pass unchanged. WatchState is left out: registered
// raw, it parses its request itself and answers with RequestDoesNotParse.

#include <memory>
#include <string>

#include "google/protobuf/message.h"
#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"

namespace tally::router {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewParseErrorInterceptor();

// The INVALID_ARGUMENT status for a request to `method` (e.g. "/tally.v1.StateService/GetState")
// that does not parse. Given the request's `bytes` and an instance of its type (for a method
// that parses its own request), the message names the first field that does not parse.
grpc::Status RequestDoesNotParse(const std::string& method);
grpc::Status RequestDoesNotParse(const std::string& method,
                                 const google::protobuf::Message& prototype,
                                 const std::string& bytes);

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_PARSE_ERROR_INTERCEPTOR_H_
