#include "agent/reporter/router_sender.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/common/log.h"

namespace tally::agent {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::UnavailableError(
        absl::StrCat("cannot read token file ", path, ": ", std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(buffer.str()));
  if (token.empty()) return absl::UnavailableError(absl::StrCat("token file ", path, " is empty"));
  return token;
}

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

}  // namespace

StubFactory InsecureStubFactory(BackoffOptions reconnect) {
  return StubFactoryWith(reconnect, grpc::InsecureChannelCredentials());
}

StubFactory StubFactoryWith(BackoffOptions reconnect,
                            std::shared_ptr<grpc::ChannelCredentials> credentials) {
  return [reconnect, credentials](const std::string& endpoint) {
    grpc::ChannelArguments args;
    const int initial = static_cast<int>(absl::ToInt64Milliseconds(reconnect.initial));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::max(1, initial));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::max(1, initial));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                std::max(1, static_cast<int>(absl::ToInt64Milliseconds(reconnect.max))));
    return tally::v1::StateService::NewStub(grpc::CreateCustomChannel(endpoint, credentials, args));
  };
}

RouterSender::RouterSender(RouterSenderOptions options, StubFactory stubs)
    : options_(std::move(options)), stub_factory_(std::move(stubs)) {
  stubs_.resize(options_.routers.size());
}

SendResult RouterSender::Send(std::span<const tally::v1::ReportStateRequest> reports) {
  SendResult total;
  if (reports.empty()) return total;
  std::string token;
  if (!options_.token_file.empty()) {
    absl::StatusOr<std::string> t = ReadToken(options_.token_file);
    if (!t.ok()) {
      log::Error("cannot authenticate to routers", {{"error", t.status().ToString()}});
      total.status = t.status();
      return total;
    }
    token = *std::move(t);
  }
  for (size_t attempt = 0; attempt < options_.routers.size(); ++attempt) {
    const std::string& router = options_.routers[current_];
    if (stubs_[current_] == nullptr) stubs_[current_] = stub_factory_(router);
    SendResult r = SendTo(*stubs_[current_], token, reports.subspan(total.delivered));
    total.delivered += r.delivered;
    total.status = r.status;
    if (r.status.ok() || absl::IsInvalidArgument(r.status)) return total;
    const size_t next = (current_ + 1) % options_.routers.size();
    log::Warn("router failed", {{"router", router},
                                {"error", r.status.ToString()},
                                {"next_router", options_.routers[next]}});
    current_ = next;
  }
  return total;
}

SendResult RouterSender::SendTo(tally::v1::StateService::StubInterface& stub,
                                const std::string& token,
                                std::span<const tally::v1::ReportStateRequest> reports) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(options_.rpc_timeout));
  if (!token.empty()) ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  SendResult result;
  if (reports.size() == 1) {
    tally::v1::ReportStateResponse response;
    grpc::Status s = stub.ReportState(&ctx, reports[0], &response);
    result.status = FromGrpc(s);
    if (s.ok()) result.delivered = 1;
    return result;
  }
  // Writes everything, then reads the answers: a batch is small (AgentConfig.max_batch) and a
  // response is a short token, so the router never blocks on an unread response.
  std::unique_ptr<grpc::ClientReaderWriterInterface<tally::v1::ReportStateRequest,
                                                    tally::v1::ReportStateResponse>>
      stream = stub.ReportStates(&ctx);
  for (const tally::v1::ReportStateRequest& report : reports) {
    if (!stream->Write(report)) break;
  }
  stream->WritesDone();
  tally::v1::ReportStateResponse response;
  while (result.delivered < reports.size() && stream->Read(&response)) ++result.delivered;
  grpc::Status s = stream->Finish();
  result.status = FromGrpc(s);
  if (result.status.ok() && result.delivered < reports.size()) {
    result.status = absl::UnavailableError(
        absl::StrCat("router answered ", result.delivered, " of ", reports.size(), " reports"));
  }
  return result;
}

}  // namespace tally::agent
