#include "server/kafka/config.h"

#include <algorithm>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/kafka/internal/absl_view.h"

namespace tally::kafka {

absl::StatusOr<ConfPtr> BuildConf(const Properties& base, const Properties& overrides) {
  std::vector<std::pair<std::string_view, std::string_view>> merged;
  merged.reserve(base.size() + overrides.size());
  for (const auto& [name, value] : overrides) merged.emplace_back(name, value);
  for (const auto& [name, value] : base) {
    if (!overrides.contains(name)) merged.emplace_back(name, value);
  }
  // Sorted, because flat_hash_map's order varies between runs and librdkafka reports only the
  // first bad property; also some properties are aliases of others and the last set wins.
  std::sort(merged.begin(), merged.end());

  ConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  for (const auto& [name, value] : merged) {
    const std::string name_z(name);
    const std::string value_z(value);
    errstr[0] = '\0';
    if (rd_kafka_conf_set(conf.get(), name_z.c_str(), value_z.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat("kafka property \"", internal::AbslView(name), "\": ", errstr));
    }
  }
  return conf;
}

absl::StatusOr<HandlePtr> NewHandle(rd_kafka_type_t type, ConfPtr conf) {
  char errstr[512];
  errstr[0] = '\0';
  // rd_kafka_new takes the configuration only when it succeeds.
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), errstr, sizeof(errstr));
  if (rk == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("kafka client: ", errstr));
  }
  conf.release();
  return HandlePtr(rk);
}

}  // namespace tally::kafka
