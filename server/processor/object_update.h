#ifndef TALLY_SERVER_PROCESSOR_OBJECT_UPDATE_H_
#define TALLY_SERVER_PROCESSOR_OBJECT_UPDATE_H_

// The processor's per-object step, without I/O: a validated record (or the passing of time) and
// the object's current data give its new data and, if its state changed, one change event.
// Deterministic for the same inputs and `now_ms`, so reprocessing after an aborted transaction
// gives the same answer. Thread-compatible (no shared state).
//
// Rules:
// - REPORT replaces the agent's vote (expires_at = observed_at + ttl); a report that is already
//   expired removes the agent's vote. Votes expired at `now_ms` are dropped on every update.
// - SET with pin=true pins `state` (votes keep being recorded and tallied, the state does not
//   follow them); SET with pin=false unpins and sets `state`, or, if empty, recomputes from the
//   votes. An unpinned state follows the reducer on the next update.
// - PURGE removes the object, its votes and its pin; the next record starts it at version 1.
// - The version grows by one with every change of state value or pin, and each such change
//   produces exactly one ChangeEvent. An object whose last vote expired keeps its record (state
//   "", its version) so versions keep growing if it comes back.

#include <cstdint>
#include <optional>

#include "server/processor/reducer.h"
#include "server/storage/shard.h"
#include "tally/records/v1/records.pb.h"

namespace tally::processor {

struct ObjectUpdate {
  // The object's data changed and must be written (shard and changelog).
  bool changed = false;
  // The object is gone (PURGE): delete it and write a changelog tombstone. Implies changed.
  bool deleted = false;
  storage::ObjectData data;  // the new data, unless deleted
  std::optional<records::v1::ChangeEvent> event;
};

// Applies a record that passed ValidateReportRecord. `current` is the object's data, if any.
ObjectUpdate ApplyRecord(const Reducer& reducer, const std::optional<storage::ObjectData>& current,
                         const records::v1::ReportRecord& record, int64_t now_ms);

// Drops the votes of `current` that expired at `now_ms` and recomputes its state.
ObjectUpdate ExpireVotes(const Reducer& reducer, const std::string& scenario,
                         const std::string& object_key, const storage::ObjectData& current,
                         int64_t now_ms);

}  // namespace tally::processor

#endif  // TALLY_SERVER_PROCESSOR_OBJECT_UPDATE_H_
