#ifndef TALLY_SERVER_COMMON_PROTO_FILE_H_
#define TALLY_SERVER_COMMON_PROTO_FILE_H_

// Configuration files as protobuf messages, in JSON or textproto: what tallyd and tally-agent
// share for reading their configs.

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace tally::common {

// Parses `text` into `message` as JSON if it starts with '{' (after whitespace), else as
// textproto. Unknown fields are errors. INVALID_ARGUMENT with the parser's position on failure,
// prefixed with `origin` (a file name): `tallyd.textproto: invalid textproto config: 2:1: ...`.
absl::Status ParseTextOrJson(const std::string& text, const std::string& origin,
                             google::protobuf::Message* message);

// Reads a file and parses it as above. NOT_FOUND if it cannot be read.
absl::Status LoadTextOrJsonFile(const std::string& path, google::protobuf::Message* message);

}  // namespace tally::common

#endif  // TALLY_SERVER_COMMON_PROTO_FILE_H_
