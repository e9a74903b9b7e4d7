// Config files (tallyd's and tally-agent's), JSON or textproto.

#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/config/config.h"
#include "server/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (auto config = tally::config::ParseConfig(text, "fuzz"); config.ok()) {
    tally::config::ApplyDefaults(*config);
    (void)tally::config::ValidateConfig(*config);
  }
  if (auto agent = tally::agent::ParseAgentConfig(text, "fuzz"); agent.ok()) {
    tally::agent::ApplyDefaults(*agent);
    (void)tally::agent::ValidateAgentConfig(*agent, /*once=*/true);
  }
  return 0;
}
