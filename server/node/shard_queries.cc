#include "server/node/shard_queries.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace tally::node {
namespace {

using google::protobuf::util::TimeUtil;

}  // namespace

bool HasState(const records::v1::StoredState& state) {
  return !state.state().empty() || state.pinned() || !state.tally().empty();
}

v1::ObjectState ToObjectState(const std::string& scenario, const std::string& object_key,
                              const storage::ObjectData& data) {
  v1::ObjectState out;
  out.set_scenario(scenario);
  out.set_object_key(object_key);
  out.set_state(data.state.state());
  out.set_version(data.state.version());
  *out.mutable_updated_at() = TimeUtil::MillisecondsToTimestamp(data.state.updated_at_ms());
  for (const records::v1::Vote& v : data.votes) {
    v1::Vote* vote = out.add_votes();
    vote->set_agent_id(v.agent_id());
    vote->set_state(v.state());
    *vote->mutable_observed_at() = TimeUtil::MillisecondsToTimestamp(v.observed_at_ms());
    *vote->mutable_expires_at() = TimeUtil::MillisecondsToTimestamp(v.expires_at_ms());
  }
  for (const auto& [value, count] : data.state.tally()) (*out.mutable_tally())[value] = count;
  out.set_pinned(data.state.pinned());
  return out;
}

ShardQueries::ShardQueries(const ShardRegistry& registry, std::string node_id)
    : registry_(registry), node_id_(std::move(node_id)) {}

absl::StatusOr<ShardInfo> ShardQueries::Acceptable(const std::string& scenario, int32_t partition,
                                                   int64_t max_lag) const {
  std::optional<ShardInfo> info = registry_.Get(scenario, partition);
  if (!info.has_value()) {
    return absl::AbortedError(absl::StrCat("node ", node_id_, " does not hold partition ",
                                           partition, " of scenario ", scenario));
  }
  switch (info->role) {
    case ShardRole::kActive:
      return *info;
    case ShardRole::kRestoring:
      return absl::UnavailableError(absl::StrCat("partition ", partition, " of scenario ", scenario,
                                                 " is restoring on node ", node_id_));
    case ShardRole::kStandby:
      if (max_lag > 0 && info->lag() <= max_lag) return *info;
      return absl::AbortedError(absl::StrCat(
          "node ", node_id_, " holds only a standby of partition ", partition, " of scenario ",
          scenario, " (lag ", info->lag(), ", max_lag ", max_lag, ")"));
  }
  return absl::InternalError("unknown shard role");
}

absl::StatusOr<internal::v1::ShardGetResponse> ShardQueries::Get(
    const internal::v1::ShardGetRequest& request, absl::Time deadline) const {
  if (request.min_offset() >= 0) {
    if (absl::Status s = registry_.WaitApplied(request.scenario(), request.partition(),
                                               request.min_offset(), deadline);
        !s.ok()) {
      return s;
    }
  }
  return Read(request);
}

void ShardQueries::GetAsync(
    const internal::v1::ShardGetRequest& request, absl::Time deadline,
    std::function<void(absl::StatusOr<internal::v1::ShardGetResponse>)> done) const {
  if (request.min_offset() < 0) return done(Read(request));
  // A read after a write: the registry answers at once if the offset is applied, else from its
  // thread once it is (or the wait ends otherwise).
  registry_.WhenApplied(request.scenario(), request.partition(), request.min_offset(), deadline,
                        [this, request, done = std::move(done)](absl::Status applied) {
                          if (!applied.ok()) return done(applied);
                          done(Read(request));
                        });
}

absl::StatusOr<internal::v1::ShardGetResponse> ShardQueries::Read(
    const internal::v1::ShardGetRequest& request) const {
  auto info = Acceptable(request.scenario(), request.partition(), request.max_lag());
  if (!info.ok()) return info.status();
  auto reader = info->shard->NewReader();
  if (!reader.ok()) return reader.status();
  auto object = (*reader)->GetObject(request.object_key());
  if (!object.ok()) return object.status();
  internal::v1::ShardGetResponse response;
  response.set_node_id(node_id_);
  response.set_applied_offset(info->applied_offset);
  response.set_lag(info->lag());
  if (object->has_value() && HasState((*object)->state)) {
    response.set_found(true);
    *response.mutable_state() = ToObjectState(request.scenario(), request.object_key(), **object);
  }
  return response;
}

absl::StatusOr<internal::v1::ShardScanResponse> ShardQueries::Scan(
    const internal::v1::ShardScanRequest& request) const {
  auto info = Acceptable(request.scenario(), request.partition(), request.max_lag());
  if (!info.ok()) return info.status();
  auto reader = info->shard->NewReader();
  if (!reader.ok()) return reader.status();
  const size_t limit = static_cast<size_t>(std::max(request.limit(), 1));
  // One row more than asked tells whether more follow, so the last page says it is the last.
  auto rows =
      (*reader)->ScanObjects(request.prefix(), request.after(), /*inclusive=*/false, limit + 1);
  if (!rows.ok()) return rows.status();
  internal::v1::ShardScanResponse response;
  response.set_node_id(node_id_);
  response.set_lag(info->lag());
  response.set_more(rows->size() > limit);
  if (rows->size() > limit) rows->pop_back();
  if (!rows->empty()) response.set_last_key(rows->back().first);
  for (const auto& [key, object] : *rows) {
    if (HasState(object.state)) {
      *response.add_states() = ToObjectState(request.scenario(), key, object);
    }
  }
  return response;
}

absl::Status ShardQueries::Snapshot(
    const internal::v1::ShardSnapshotRequest& request,
    const std::function<bool(const internal::v1::ShardSnapshotResponse&)>& emit) const {
  constexpr size_t kChunk = 256;
  auto info = Acceptable(request.scenario(), request.partition(), /*max_lag=*/0);
  if (!info.ok()) return info.status();
  auto reader = info->shard->NewReader();
  if (!reader.ok()) return reader.status();
  auto meta = (*reader)->GetMeta();
  if (!meta.ok()) return meta.status();
  internal::v1::ShardSnapshotResponse chunk;
  chunk.set_node_id(node_id_);
  auto flush = [&](bool done) {
    chunk.set_done(done);
    if (done) chunk.set_changes_offset(meta->changes_offset());
    bool more = emit(chunk);
    chunk.clear_states();
    return more;
  };
  if (!request.object_key().empty()) {
    auto object = (*reader)->GetObject(request.object_key());
    if (!object.ok()) return object.status();
    if (object->has_value() && HasState((*object)->state)) {
      *chunk.add_states() = ToObjectState(request.scenario(), request.object_key(), **object);
    }
    return flush(true) ? absl::OkStatus() : absl::CancelledError("snapshot reader went away");
  }
  std::string after;
  while (true) {
    auto rows = (*reader)->ScanObjects(request.prefix(), after, /*inclusive=*/false, kChunk);
    if (!rows.ok()) return rows.status();
    for (const auto& [key, object] : *rows) {
      if (HasState(object.state)) {
        *chunk.add_states() = ToObjectState(request.scenario(), key, object);
      }
    }
    if (rows->size() < kChunk) break;
    after = rows->back().first;
    if (!flush(false)) return absl::CancelledError("snapshot reader went away");
  }
  return flush(true) ? absl::OkStatus() : absl::CancelledError("snapshot reader went away");
}

}  // namespace tally::node
