#ifndef TALLY_SERVER_STORAGE_INTERNAL_KEYS_H_
#define TALLY_SERVER_STORAGE_INTERNAL_KEYS_H_

// Key layouts of the shard's databases (see ../shard.h) and MDB_val <-> string_view.

#include <lmdb.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace tally::storage::internal {

// Debian's Abseil has its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW is 0), which is
// what StrCat, CHexEscape and absl's string-keyed containers take; std::string_view does not
// convert to it by itself.
inline absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

inline constexpr char kKeySeparator = '\0';
inline constexpr std::string_view kMetaKey = "meta";
inline constexpr size_t kExpiryTimeSize = 8;

// LMDB never writes through an MDB_val it is given as input, so the const_cast is safe.
inline MDB_val ToVal(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view FromVal(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// The expiry index orders by time as unsigned big-endian bytes, so negative times (never written
// by the processor) are stored as 0: already expired, and still in order.
inline uint64_t ExpiryTime(int64_t expires_at_ms) {
  return static_cast<uint64_t>(std::max<int64_t>(expires_at_ms, 0));
}

// Sets *out to be64(time) object_key.
inline void SetExpiryKey(uint64_t time, std::string_view object_key, std::string* out) {
  out->resize(kExpiryTimeSize);
  for (size_t i = 0; i < kExpiryTimeSize; ++i) {
    (*out)[i] = static_cast<char>(time >> (8 * (kExpiryTimeSize - 1 - i)));
  }
  out->append(object_key);
}

// The time of an expiry key; the key must be at least kExpiryTimeSize bytes.
inline uint64_t ExpiryKeyTime(std::string_view key) {
  uint64_t t = 0;
  for (size_t i = 0; i < kExpiryTimeSize; ++i) {
    t = (t << 8) | static_cast<unsigned char>(key[i]);
  }
  return t;
}

// The object key of an expiry key.
inline std::string_view ExpiryKeyObject(std::string_view key) {
  return key.substr(kExpiryTimeSize);
}

}  // namespace tally::storage::internal

#endif  // TALLY_SERVER_STORAGE_INTERNAL_KEYS_H_
