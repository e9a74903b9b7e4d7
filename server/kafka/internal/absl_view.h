#ifndef TALLY_SERVER_KAFKA_INTERNAL_ABSL_VIEW_H_
#define TALLY_SERVER_KAFKA_INTERNAL_ABSL_VIEW_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace tally::kafka::internal {

// Debian's Abseil is built with its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), which
// absl::StrCat and friends take instead of std::string_view; this converts without copying.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace tally::kafka::internal

#endif  // TALLY_SERVER_KAFKA_INTERNAL_ABSL_VIEW_H_
