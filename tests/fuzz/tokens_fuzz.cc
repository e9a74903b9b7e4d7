// Tokens come back from clients: write tokens (min_token), page tokens, resume tokens.

#include <cstddef>
#include <cstdint>
#include <string>

#include "server/router/tokens.h"
#include "server/watch/resume_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (auto token = tally::router::ParseWriteToken(text, "min_token"); token.ok()) {
    if (tally::router::ParseWriteToken(tally::router::EncodeWriteToken(*token), "t")->offset !=
        token->offset) {
      __builtin_trap();  // a parsed token must survive a round trip
    }
  }
  if (auto key = tally::router::ParsePageToken(text); key.ok()) {
    if (*tally::router::ParsePageToken(tally::router::EncodePageToken(*key)) != *key) {
      __builtin_trap();
    }
  }
  for (int32_t partitions : {1, 6}) {
    if (auto position = tally::watch::ParseResumeToken(text, "demo", partitions); position.ok()) {
      auto again = tally::watch::ParseResumeToken(tally::watch::EncodeResumeToken(*position),
                                                  "demo", partitions);
      if (!again.ok() || again->offsets != position->offsets) __builtin_trap();
    }
  }
  return 0;
}
