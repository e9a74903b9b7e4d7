#ifndef TALLY_SERVER_COMMON_LOG_H_
#define TALLY_SERVER_COMMON_LOG_H_

// Structured logging: one line per event in logfmt, written to stderr with a single write so lines
// from different threads never interleave:
//   ts=2026-11-25T07:52:45.286Z level=info msg="shard restored" scenario=demo partition=3
// Safe to call from any thread. The Debian Abseil (20220623) predates absl/log, hence this.

#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace tally::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// One key=value pair; the value is anything absl::StrCat accepts.
struct Field {
  template <typename T>
  Field(std::string_view k, const T& v) : key(k), value(absl::StrCat(v)) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  // Debian's Abseil has its own string_view, which StrCat does not take std::string_view as.
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  std::string_view key;
  std::string value;
};

// Events below `level` are dropped. Default kInfo; TALLY_LOG_LEVEL=debug|info|warn|error sets it.
void SetLevel(Level level);
bool Enabled(Level level);

void Write(Level level, std::string_view msg, std::initializer_list<Field> fields);

inline void Debug(std::string_view msg, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, msg, fields);
}
inline void Info(std::string_view msg, std::initializer_list<Field> fields = {}) {
  Write(Level::kInfo, msg, fields);
}
inline void Warn(std::string_view msg, std::initializer_list<Field> fields = {}) {
  Write(Level::kWarn, msg, fields);
}
inline void Error(std::string_view msg, std::initializer_list<Field> fields = {}) {
  Write(Level::kError, msg, fields);
}

// Appends `value` to `out` as a logfmt value: bare if it needs no quoting, else quoted and
// escaped. Exposed for tests.
void AppendValue(std::string& out, std::string_view value);

}  // namespace tally::log

#endif  // TALLY_SERVER_COMMON_LOG_H_
