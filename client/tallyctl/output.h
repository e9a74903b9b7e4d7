#ifndef TALLY_CLIENT_TALLYCTL_OUTPUT_H_
#define TALLY_CLIENT_TALLYCTL_OUTPUT_H_

// What tallyctl prints: aligned tables for people, and protobuf JSON (one object per line, every
// field present, lowerCamelCase names as in grpcurl's output) for scripts. Pure functions of the
// responses, so they are tested without a cluster. Every returned text ends with a newline.

#include <string>
#include <vector>

#include "google/protobuf/message.h"
#include "tally/v1/state.pb.h"

namespace tally::tallyctl {

// Columns padded to their widest cell, two spaces apart; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// One line of JSON for `message`.
std::string JsonLine(const google::protobuf::Message& message);

// RFC 3339 in UTC with milliseconds, "-" for an unset timestamp.
std::string FormatTimestamp(const google::protobuf::Timestamp& t);
// "attack=2 ok=1", sorted by value; "-" when empty.
std::string FormatTally(const v1::ObjectState& state);

// get: the object's fields one per line, then its votes as a table.
std::string GetTable(const v1::GetStateResponse& response);
// list: one row per state.
std::string StatesTable(const std::vector<v1::ObjectState>& states);
// watch: one line per event; "" for progress events.
std::string WatchLine(const v1::WatchStateResponse& event);
// report, set, purge.
std::string TokenText(const std::string& token);
// describe: the nodes, then the partitions.
std::string DescribeTable(const v1::DescribeClusterResponse& response);

}  // namespace tally::tallyctl

#endif  // TALLY_CLIENT_TALLYCTL_OUTPUT_H_
