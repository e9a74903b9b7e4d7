// Records read from a reports topic are untrusted bytes (anyone with access to the topic can
// write them): parse, validate, and apply what passes to an object, as the processor does.

#include <cstddef>
#include <cstdint>
#include <string>

#include "server/processor/object_update.h"
#include "server/processor/record_validation.h"
#include "server/processor/reducer.h"
#include "tally/config/v1/config.pb.h"
#include "tally/records/v1/records.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto* reducer = [] {
    tally::config::v1::Reducer config;
    config.mutable_majority();
    return tally::processor::NewReducer(config)->release();
  }();
  tally::records::v1::ReportRecord record;
  if (!record.ParseFromArray(data, static_cast<int>(size))) return 0;
  if (!tally::processor::ValidateReportRecord(record, "demo", record.object_key()).ok()) return 0;
  // Twice: once on a new object, once on the object the first produced.
  auto first = tally::processor::ApplyRecord(*reducer, std::nullopt, record, 1'700'000'000'000);
  std::optional<tally::storage::ObjectData> current;
  if (!first.deleted) current = first.data;
  tally::processor::ApplyRecord(*reducer, current, record, 1'700'000'000'001);
  return 0;
}
