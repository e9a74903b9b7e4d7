#ifndef TALLY_SERVER_ROUTER_PARSE_ERROR_INTERCEPTOR_H_
#define TALLY_SERVER_ROUTER_PARSE_ERROR_INTERCEPTOR_H_

// A request that does not parse (e.g. a string field that is not valid UTF-8, which proto3
// refuses) fails inside gRPC before any service code runs, with an empty INTERNAL (synchronous
// methods) or UNIMPLEMENTED (callback methods) status — neither tells the caller that the fault
// is theirs. This interceptor turns those statuses of the public API's methods into
// INVALID_ARGUMENT saying so. Other statuses pass unchanged.

#include <memory>

#include "grpcpp/support/server_interceptor.h"

namespace tally::router {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewParseErrorInterceptor();

}  // namespace tally::router

#endif  // TALLY_SERVER_ROUTER_PARSE_ERROR_INTERCEPTOR_H_
