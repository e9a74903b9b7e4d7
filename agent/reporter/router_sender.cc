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

// Sets one call's deadline and authorization header.
void Prepare(grpc::ClientContext& ctx, absl::Time deadline, const std::string& token) {
  ctx.set_deadline(absl::ToChronoTime(deadline));
  if (!token.empty()) ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

SendResult SendOne(tally::v1::StateService::StubInterface& stub, const std::string& token,
                   absl::Time deadline, const tally::v1::ReportStateRequest& report) {
  grpc::ClientContext ctx;
  Prepare(ctx, deadline, token);
  tally::v1::ReportStateResponse response;
  grpc::Status s = stub.ReportState(&ctx, report, &response);
  SendResult result;
  result.status = FromGrpc(s);
  if (s.ok()) result.delivered = 1;
  return result;
}

SendResult SendBatch(tally::v1::StateService::StubInterface& stub, const std::string& token,
                     absl::Time deadline, std::span<const tally::v1::ReportStateRequest> reports) {
  grpc::ClientContext ctx;
  Prepare(ctx, deadline, token);
  tally::v1::ReportBatchRequest request;
  request.mutable_reports()->Reserve(static_cast<int>(reports.size()));
  for (const tally::v1::ReportStateRequest& report : reports) *request.add_reports() = report;
  tally::v1::ReportBatchResponse response;
  grpc::Status s = stub.ReportBatch(&ctx, request, &response);
  SendResult result;
  result.status = FromGrpc(s);
  if (!s.ok()) return result;
  if (static_cast<size_t>(response.tokens_size()) != reports.size()) {
    // Not the router's contract; sending the batch again is harmless, counting it delivered not.
    result.status = absl::UnavailableError(absl::StrCat(
        "router answered ", response.tokens_size(), " tokens for ", reports.size(), " reports"));
    return result;
  }
  result.delivered = reports.size();
  return result;
}

SendResult SendStream(tally::v1::StateService::StubInterface& stub, const std::string& token,
                      absl::Time deadline, std::span<const tally::v1::ReportStateRequest> reports) {
  grpc::ClientContext ctx;
  Prepare(ctx, deadline, token);
  SendResult result;
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

const Clock& RealClockInstance() {
  static const RealClock* const kClock = new RealClock;
  return *kClock;
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

RouterSender::RouterSender(RouterSenderOptions options, StubFactory stubs, const Clock* clock)
    : options_(std::move(options)),
      stub_factory_(std::move(stubs)),
      clock_(clock != nullptr ? *clock : RealClockInstance()) {
  routers_.resize(options_.routers.size());
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
    SendResult r = SendTo(current_, token, absl::Now() + options_.rpc_timeout,
                          reports.subspan(total.delivered));
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

SendResult RouterSender::SendTo(size_t index, const std::string& token, absl::Time deadline,
                                std::span<const tally::v1::ReportStateRequest> reports) {
  Router& router = routers_[index];
  const std::string& endpoint = options_.routers[index];
  if (router.stub == nullptr) router.stub = stub_factory_(endpoint);
  if (reports.size() == 1) return SendOne(*router.stub, token, deadline, reports[0]);
  const absl::Time now = clock_.Now();
  if (now < router.streams_until) return SendStream(*router.stub, token, deadline, reports);
  SendResult batch = SendBatch(*router.stub, token, deadline, reports);
  if (absl::IsUnimplemented(batch.status)) {
    router.streams_until = now + options_.batch_retry_after;
    log::Info(
        "router does not know ReportBatch (older than this agent): sending it batches as "
        "ReportStates streams, and asking again later",
        {{"router", endpoint}, {"ask_again_in", absl::FormatDuration(options_.batch_retry_after)}});
    return SendStream(*router.stub, token, deadline, reports);
  }
  if (!absl::IsInvalidArgument(batch.status)) return batch;
  // The router wrote none of the batch and named the bad report only in its message. The stream
  // delivers the reports before it and stops at it, so `delivered` says which one it is: the
  // Outbox drops that report alone, where dropping reports[0] would lose a good one.
  SendResult stream = SendStream(*router.stub, token, deadline, reports);
  if (stream.status.ok()) {
    // A refusal of the batch itself (e.g. more reports than the router's report_burst), not of
    // a report: every batch pays two calls until max_batch is lowered.
    log::Warn(
        "router refused the batch but accepted its reports one by one (is max_batch above "
        "the router's report_burst?)",
        {{"router", endpoint}, {"error", batch.status.ToString()}});
  }
  return stream;
}

}  // namespace tally::agent
