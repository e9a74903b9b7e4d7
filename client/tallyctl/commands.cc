#include "client/tallyctl/commands.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "client/tallyctl/output.h"
#include "google/protobuf/util/time_util.h"

namespace tally::tallyctl {
namespace {

using google::protobuf::util::TimeUtil;

int Fail(const std::string& command, const absl::Status& status, std::ostream& err) {
  err << "tallyctl " << command << ": " << absl::StatusCodeToString(status.code()) << ": "
      << status.message() << "\n";
  return ExitCodeFor(status);
}

CallOptions Call(const Invocation& inv) { return CallOptions{.timeout = inv.timeout}; }

// Report, Set and Purge print the token, in the response message's JSON for scripts.
template <typename Response>
int PrintToken(const Invocation& inv, const absl::StatusOr<std::string>& token, std::ostream& out,
               std::ostream& err) {
  if (!token.ok()) return Fail(inv.command, token.status(), err);
  if (inv.output == OutputFormat::kJson) {
    Response response;
    response.set_token(*token);
    out << JsonLine(response);
  } else {
    out << TokenText(*token);
  }
  return kExitOk;
}

int Get(const Invocation& inv, const Client& client, std::ostream& out, std::ostream& err) {
  absl::StatusOr<v1::GetStateResponse> got = client.Get(inv.args[0], inv.args[1],
                                                        {.min_token = inv.String("min_token"),
                                                         .max_lag = inv.Int("max_lag"),
                                                         .timeout = inv.timeout});
  if (!got.ok()) return Fail(inv.command, got.status(), err);
  out << (inv.output == OutputFormat::kJson ? JsonLine(*got) : GetTable(*got));
  return kExitOk;
}

int List(const Invocation& inv, const Client& client, std::ostream& out, std::ostream& err) {
  const int64_t limit = inv.Int("limit");
  StateList list = client.List(inv.args[0], inv.args.size() > 1 ? inv.args[1] : "",
                               {.page_size = static_cast<int32_t>(inv.Int("page_size")),
                                .max_lag = inv.Int("max_lag"),
                                .timeout = inv.timeout});
  std::vector<v1::ObjectState> states;  // table only: aligned once complete
  int64_t n = 0;
  for (auto it = list.begin(); it != list.end(); ++it) {
    if (inv.output == OutputFormat::kJson) {
      out << JsonLine(*it) << std::flush;
    } else {
      states.push_back(*it);
    }
    // Checked before advancing, which could fetch a page for nothing.
    if (++n == limit) break;
  }
  if (inv.output == OutputFormat::kTable && !states.empty()) out << StatesTable(states);
  if (!list.status().ok()) return Fail(inv.command, list.status(), err);
  if (n == 0 && inv.output == OutputFormat::kTable) err << "no states\n";
  return kExitOk;
}

int Watch(const Invocation& inv, const Client& client, std::ostream& out, std::ostream& err) {
  WatchTarget target = inv.args.size() > 1 ? WatchTarget::Key(inv.args[1])
                                           : WatchTarget::Prefix(inv.String("prefix"));
  const absl::Duration duration = inv.Duration("for");
  std::unique_ptr<WatchStream> stream = client.Watch(
      inv.args[0], target,
      {.send_initial = inv.Bool("initial"),
       .resume_token = inv.String("resume_token"),
       .timeout = duration > absl::ZeroDuration() ? duration : absl::InfiniteDuration()});
  const int64_t count = inv.Int("count");
  int64_t seen = 0;
  while (count == 0 || seen < count) {
    absl::StatusOr<v1::WatchStateResponse> event = stream->Next();
    if (!event.ok()) {
      // --for ran out: the watch did what was asked.
      if (duration > absl::ZeroDuration() && absl::IsDeadlineExceeded(event.status())) break;
      const int code = Fail(inv.command, event.status(), err);
      if (!stream->resume_token().empty()) {
        err << "tallyctl watch: last resume token: " << stream->resume_token() << "\n";
      }
      return code;
    }
    if (inv.output == OutputFormat::kJson) {
      out << JsonLine(*event) << std::flush;
    } else {
      out << WatchLine(*event) << std::flush;
    }
    if (!event->has_progress()) ++seen;
  }
  return kExitOk;
}

int Report(const Invocation& inv, const Client& client, std::ostream& out, std::ostream& err) {
  v1::ReportStateRequest request;
  request.set_scenario(inv.args[0]);
  request.set_object_key(inv.args[1]);
  request.set_state(inv.args[2]);
  request.set_agent_id(inv.String("agent"));
  if (inv.Has("ttl")) {
    *request.mutable_ttl() =
        TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(inv.Duration("ttl")));
  }
  for (const auto& [key, value] : inv.KeyValues("attr"))
    (*request.mutable_attributes())[key] = value;
  return PrintToken<v1::ReportStateResponse>(inv, client.Report(request, Call(inv)), out, err);
}

int Set(const Invocation& inv, const Client& client, std::ostream& out, std::ostream& err) {
  v1::SetStateRequest request;
  request.set_scenario(inv.args[0]);
  request.set_object_key(inv.args[1]);
  if (inv.args.size() > 2) request.set_state(inv.args[2]);
  request.set_pin(inv.Bool("pin"));
  request.set_reason(inv.String("reason"));
  return PrintToken<v1::SetStateResponse>(inv, client.Set(request, Call(inv)), out, err);
}

int Purge(const Invocation& inv, const Client& client, std::ostream& out, std::ostream& err) {
  return PrintToken<v1::PurgeStateResponse>(
      inv, client.Purge(inv.args[0], inv.args[1], inv.String("reason"), Call(inv)), out, err);
}

int Describe(const Invocation& inv, const Client& client, std::ostream& out, std::ostream& err) {
  absl::StatusOr<v1::DescribeClusterResponse> cluster = client.Describe(Call(inv));
  if (!cluster.ok()) return Fail(inv.command, cluster.status(), err);
  out << (inv.output == OutputFormat::kJson ? JsonLine(*cluster) : DescribeTable(*cluster));
  return kExitOk;
}

}  // namespace

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kInvalidArgument:
      return kExitUsage;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    default:
      return kExitOther;
  }
}

int RunCommand(const Invocation& inv, const Client& client, std::ostream& out, std::ostream& err) {
  if (inv.command == "get") return Get(inv, client, out, err);
  if (inv.command == "list") return List(inv, client, out, err);
  if (inv.command == "watch") return Watch(inv, client, out, err);
  if (inv.command == "report") return Report(inv, client, out, err);
  if (inv.command == "set") return Set(inv, client, out, err);
  if (inv.command == "purge") return Purge(inv, client, out, err);
  if (inv.command == "describe") return Describe(inv, client, out, err);
  err << "tallyctl: unknown command \"" << inv.command << "\"\n";
  return kExitUsage;
}

}  // namespace tally::tallyctl
