// Changelog records are stored as they come (the restore's fast path reads them from the wire
// format without a full parse): the scanner and the parser must reject garbage, not crash.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/storage/internal/object_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  tally::storage::internal::ScanObjectRecord(bytes);
  tally::storage::ObjectData object;
  if (tally::storage::internal::ParseObjectRecord(bytes, &object)) {
    std::string again;
    tally::storage::internal::AppendObjectRecord(object, &again);
    tally::storage::internal::ScanObjectRecord(again);
  }
  tally::records::v1::StoredState state;
  tally::storage::internal::ParseObjectState(bytes, &state);
  return 0;
}
