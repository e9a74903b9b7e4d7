#include "client/tallyctl/output.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"

namespace tally::tallyctl {
namespace {

std::string YesNo(bool b) { return b ? "yes" : "no"; }

const char* CauseName(v1::ChangeCause cause) {
  switch (cause) {
    case v1::REPORT:
      return "report";
    case v1::EXPIRY:
      return "expiry";
    case v1::SET:
      return "set";
    case v1::PURGE:
      return "purge";
    default:
      return "-";
  }
}

const char* StatusName(v1::PartitionStatus status) {
  switch (status) {
    case v1::RESTORING:
      return "RESTORING";
    case v1::ACTIVE:
      return "ACTIVE";
    case v1::STANDBY:
      return "STANDBY";
    default:
      return "-";
  }
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

std::string Table::Render() const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string JsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  std::string json;
  // Printing a well-formed message cannot fail for our messages (no Any, no unknown types).
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return absl::StrCat(json, "\n");
}

std::string FormatTimestamp(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  absl::Time time = absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

std::string FormatTally(const v1::ObjectState& state) {
  std::map<std::string, int32_t> sorted(state.tally().begin(), state.tally().end());
  if (sorted.empty()) return "-";
  return absl::StrJoin(sorted, " ", absl::PairFormatter("="));
}

std::string GetTable(const v1::GetStateResponse& response) {
  const v1::ObjectState& s = response.state();
  Table fields({"scenario:", s.scenario()});
  fields.AddRow({"key:", s.object_key()});
  fields.AddRow({"state:", s.state()});
  fields.AddRow({"version:", absl::StrCat(s.version())});
  fields.AddRow({"updated:", FormatTimestamp(s.updated_at())});
  fields.AddRow({"pinned:", YesNo(s.pinned())});
  fields.AddRow({"tally:", FormatTally(s)});
  fields.AddRow(
      {"served by:", absl::StrCat(OrDash(response.served_by()), " (lag ", response.lag(), ")")});
  std::string out = fields.Render();
  if (s.votes_size() == 0) return absl::StrCat(out, "votes: none\n");
  Table votes({"AGENT", "STATE", "OBSERVED", "EXPIRES"});
  for (const v1::Vote& v : s.votes()) {
    votes.AddRow({v.agent_id(), v.state(), FormatTimestamp(v.observed_at()),
                  FormatTimestamp(v.expires_at())});
  }
  return absl::StrCat(out, "votes:\n", votes.Render());
}

std::string StatesTable(const std::vector<v1::ObjectState>& states) {
  Table table({"KEY", "STATE", "VERSION", "UPDATED", "PINNED", "TALLY"});
  for (const v1::ObjectState& s : states) {
    table.AddRow({s.object_key(), s.state(), absl::StrCat(s.version()),
                  FormatTimestamp(s.updated_at()), YesNo(s.pinned()), FormatTally(s)});
  }
  return table.Render();
}

std::string WatchLine(const v1::WatchStateResponse& event) {
  switch (event.event_case()) {
    case v1::WatchStateResponse::kChange: {
      const v1::StateChange& c = event.change();
      return absl::StrCat(FormatTimestamp(c.time()), "  ", CauseName(c.cause()), "  ",
                          c.object_key(), "  ", OrDash(c.old_state()), " -> ",
                          OrDash(c.new_state()), "  v", c.version(), "\n");
    }
    case v1::WatchStateResponse::kInitial: {
      const v1::ObjectState& s = event.initial();
      return absl::StrCat(FormatTimestamp(s.updated_at()), "  initial  ", s.object_key(), "  ",
                          s.state(), "  v", s.version(), s.pinned() ? "  pinned" : "", "\n");
    }
    case v1::WatchStateResponse::kSnapshotDone:
      return "-- snapshot done; changes follow --\n";
    default:
      return "";
  }
}

std::string TokenText(const std::string& token) { return absl::StrCat("token: ", token, "\n"); }

std::string DescribeTable(const v1::DescribeClusterResponse& response) {
  Table nodes({"NODE", "ENDPOINT", "ALIVE", "LAST HEARTBEAT"});
  for (const v1::NodeInfo& n : response.nodes()) {
    nodes.AddRow(
        {n.id(), OrDash(n.endpoint()), YesNo(n.alive()), FormatTimestamp(n.last_heartbeat())});
  }
  Table partitions(
      {"SCENARIO", "PARTITION", "STATUS", "ACTIVE", "STANDBYS", "APPLIED", "END", "LAG"});
  for (const v1::PartitionInfo& p : response.partitions()) {
    partitions.AddRow(
        {p.scenario(), absl::StrCat(p.partition()), StatusName(p.status()), OrDash(p.active_node()),
         p.standbys().empty() ? "-" : absl::StrJoin(p.standbys(), ","),
         absl::StrCat(p.applied_offset()), absl::StrCat(p.end_offset()), absl::StrCat(p.lag())});
  }
  return absl::StrCat(nodes.Render(), "\n", partitions.Render());
}

}  // namespace tally::tallyctl
