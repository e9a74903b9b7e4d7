#include "client/client.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace tally {

namespace {

ChannelFactory ChannelFactoryWith(std::shared_ptr<grpc::ChannelCredentials> credentials) {
  return [credentials](const std::string& endpoint) -> std::shared_ptr<grpc::ChannelInterface> {
    grpc::ChannelArguments args;
    // gRPC's defaults (1 s, growing to 120 s) would keep a channel in TRANSIENT_FAILURE long
    // after its router came back; our own retries already pace the calls.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5 * 60 * 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
    return grpc::CreateCustomChannel(endpoint, credentials, args);
  };
}

}  // namespace

ChannelFactory InsecureChannelFactory() {
  return ChannelFactoryWith(grpc::InsecureChannelCredentials());
}

ChannelFactory TlsChannelFactory(std::string ca_pem, std::string cert_pem, std::string key_pem) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = std::move(ca_pem);
  options.pem_cert_chain = std::move(cert_pem);
  options.pem_private_key = std::move(key_pem);
  return ChannelFactoryWith(grpc::SslCredentials(options));
}

absl::Status FromGrpcStatus(const grpc::Status& status, const std::string& endpoint) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share their numbering (both are google.rpc.Code).
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  if (endpoint.empty()) return absl::Status(code, status.error_message());
  return absl::Status(code, absl::StrCat("router ", endpoint, ": ", status.error_message()));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(std::vector<std::string> endpoints,
                                                       ClientOptions options) {
  if (endpoints.empty()) return absl::InvalidArgumentError("routers: at least one is needed");
  for (const std::string& endpoint : endpoints) {
    if (endpoint.empty()) return absl::InvalidArgumentError("routers: an endpoint is empty");
  }
  if (options.default_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_timeout: must be positive");
  }
  if (options.retry.max_attempts < 1) {
    return absl::InvalidArgumentError("retry.max_attempts: must be at least 1");
  }
  if (options.retry.jitter < 0 || options.retry.jitter >= 1) {
    return absl::InvalidArgumentError("retry.jitter: must be in [0, 1)");
  }
  if (!options.channel_factory) options.channel_factory = InsecureChannelFactory();
  std::vector<Endpoint> stubs;
  for (const std::string& address : endpoints) {
    std::shared_ptr<grpc::ChannelInterface> channel = options.channel_factory(address);
    if (channel == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("routers: no channel for ", address));
    }
    stubs.push_back(
        {address, v1::StateService::NewStub(channel), v1::AdminService::NewStub(channel)});
  }
  return std::unique_ptr<Client>(
      new Client(std::move(endpoints), std::move(options), std::move(stubs)));
}

Client::Client(std::vector<std::string> addresses, ClientOptions options,
               std::vector<Endpoint> endpoints)
    : endpoints_(std::move(addresses)),
      options_(std::move(options)),
      stubs_(std::move(endpoints)) {}

std::unique_ptr<grpc::ClientContext> Client::NewContext(absl::Time deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (deadline != absl::InfiniteFuture()) context->set_deadline(absl::ToChronoTime(deadline));
  if (!options_.bearer_token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.bearer_token));
  }
  return context;
}

absl::Duration Client::Timeout(absl::Duration requested) const {
  return requested > absl::ZeroDuration() ? requested : options_.default_timeout;
}

absl::Duration Client::NextBackoff(int retry) const {
  absl::MutexLock lock(&mu_);
  return BackoffDelay(options_.retry, retry, rng_);
}

void Client::Sleep(absl::Duration d) const {
  if (options_.sleep) {
    options_.sleep(d);
  } else {
    absl::SleepFor(d);
  }
}

size_t Client::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

void Client::Failed(size_t endpoint) const {
  absl::MutexLock lock(&mu_);
  // Only the first caller to see this endpoint fail moves everyone on; others that failed on it
  // concurrently must not skip the next endpoint too.
  if (current_ == endpoint) current_ = (endpoint + 1) % stubs_.size();
}

void Client::Answered(size_t endpoint) const {
  absl::MutexLock lock(&mu_);
  current_ = endpoint;
}

template <typename Response>
absl::StatusOr<Response> Client::Call(const char* method, absl::Duration timeout,
                                      const Rpc<Response>& rpc) const {
  const absl::Time deadline = absl::Now() + Timeout(timeout);
  size_t endpoint = current();
  absl::Status last;
  int attempt = 1;
  for (;; ++attempt) {
    const Endpoint& target = stubs_[endpoint];
    std::unique_ptr<grpc::ClientContext> context = NewContext(deadline);
    Response response;
    absl::Status status = FromGrpcStatus(rpc(target, context.get(), &response), target.address);
    if (status.ok() || !IsRetryable(status)) {
      // The router answered (a NOT_FOUND is an answer too): stay with it.
      Answered(endpoint);
      if (status.ok()) return response;
      return status;
    }
    last = std::move(status);
    Failed(endpoint);
    endpoint = (endpoint + 1) % stubs_.size();
    if (attempt >= options_.retry.max_attempts) break;
    const absl::Duration delay = NextBackoff(attempt);
    // No point in waiting past the deadline only to fail with DEADLINE_EXCEEDED: the last
    // UNAVAILABLE says more.
    if (absl::Now() + delay >= deadline) break;
    Sleep(delay);
  }
  return absl::UnavailableError(absl::StrCat(method, ": no router answered (", attempt,
                                             attempt == 1 ? " attempt" : " attempts",
                                             "); last error: ", last.message()));
}

absl::StatusOr<std::string> Client::Report(const v1::ReportStateRequest& request,
                                           CallOptions options) const {
  absl::StatusOr<v1::ReportStateResponse> response = Call<v1::ReportStateResponse>(
      "ReportState", options.timeout,
      [&](const Endpoint& e, grpc::ClientContext* context, v1::ReportStateResponse* out) {
        return e.state->ReportState(context, request, out);
      });
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_token());
}

absl::StatusOr<std::string> Client::Report(const std::string& scenario,
                                           const std::string& object_key,
                                           const std::string& agent_id, const std::string& state,
                                           CallOptions options) const {
  v1::ReportStateRequest request;
  request.set_scenario(scenario);
  request.set_object_key(object_key);
  request.set_agent_id(agent_id);
  request.set_state(state);
  return Report(request, options);
}

absl::StatusOr<std::vector<std::string>> Client::ReportBatch(const v1::ReportBatchRequest& request,
                                                             CallOptions options) const {
  absl::StatusOr<v1::ReportBatchResponse> response = Call<v1::ReportBatchResponse>(
      "ReportBatch", options.timeout,
      [&](const Endpoint& e, grpc::ClientContext* context, v1::ReportBatchResponse* out) {
        return e.state->ReportBatch(context, request, out);
      });
  if (!response.ok()) return response.status();
  google::protobuf::RepeatedPtrField<std::string>& tokens = *response->mutable_tokens();
  return std::vector<std::string>(std::make_move_iterator(tokens.begin()),
                                  std::make_move_iterator(tokens.end()));
}

absl::StatusOr<v1::GetStateResponse> Client::Get(const std::string& scenario,
                                                 const std::string& object_key,
                                                 GetOptions options) const {
  v1::GetStateRequest request;
  request.set_scenario(scenario);
  request.set_object_key(object_key);
  request.set_min_token(options.min_token);
  request.set_max_lag(options.max_lag);
  return Call<v1::GetStateResponse>(
      "GetState", options.timeout,
      [&](const Endpoint& e, grpc::ClientContext* context, v1::GetStateResponse* out) {
        return e.state->GetState(context, request, out);
      });
}

StateList Client::List(const std::string& scenario, const std::string& prefix,
                       ListOptions options) const {
  v1::ListStateRequest request;
  request.set_scenario(scenario);
  request.set_prefix(prefix);
  request.set_page_size(options.page_size);
  request.set_max_lag(options.max_lag);
  request.set_page_token(options.page_token);
  return StateList(this, std::move(request), options.timeout);
}

absl::StatusOr<v1::ListStateResponse> Client::ListPage(const v1::ListStateRequest& request,
                                                       CallOptions options) const {
  return Call<v1::ListStateResponse>(
      "ListState", options.timeout,
      [&](const Endpoint& e, grpc::ClientContext* context, v1::ListStateResponse* out) {
        return e.state->ListState(context, request, out);
      });
}

absl::StatusOr<std::string> Client::Set(const v1::SetStateRequest& request,
                                        CallOptions options) const {
  absl::StatusOr<v1::SetStateResponse> response = Call<v1::SetStateResponse>(
      "SetState", options.timeout,
      [&](const Endpoint& e, grpc::ClientContext* context, v1::SetStateResponse* out) {
        return e.admin->SetState(context, request, out);
      });
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_token());
}

absl::StatusOr<std::string> Client::Purge(const std::string& scenario,
                                          const std::string& object_key, const std::string& reason,
                                          CallOptions options) const {
  v1::PurgeStateRequest request;
  request.set_scenario(scenario);
  request.set_object_key(object_key);
  request.set_reason(reason);
  absl::StatusOr<v1::PurgeStateResponse> response = Call<v1::PurgeStateResponse>(
      "PurgeState", options.timeout,
      [&](const Endpoint& e, grpc::ClientContext* context, v1::PurgeStateResponse* out) {
        return e.admin->PurgeState(context, request, out);
      });
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_token());
}

absl::StatusOr<v1::DescribeClusterResponse> Client::Describe(CallOptions options) const {
  return Call<v1::DescribeClusterResponse>(
      "DescribeCluster", options.timeout,
      [&](const Endpoint& e, grpc::ClientContext* context, v1::DescribeClusterResponse* out) {
        return e.admin->DescribeCluster(context, v1::DescribeClusterRequest(), out);
      });
}

}  // namespace tally
