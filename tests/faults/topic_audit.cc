#include "tests/faults/topic_audit.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "tally/records/v1/records.pb.h"
#include "tests/integration/node_harness.h"

namespace tally::test {
namespace {

// Records of `topic` in the read_uncommitted history that the read_committed one lacks.
absl::Status CountAborted(KafkaTestClient& client, const std::string& topic, int partitions,
                          const std::vector<Record>& committed, absl::Time since,
                          TopicAudit& audit) {
  auto all = client.ReadAll(topic, partitions, /*read_committed=*/false);
  if (!all.ok()) return all.status();
  std::set<std::pair<int32_t, int64_t>> visible;
  for (const Record& r : committed) visible.insert({r.partition, r.offset});
  for (const Record& r : *all) {
    if (visible.count({r.partition, r.offset})) continue;
    ++audit.aborted;
    if (r.timestamp_ms >= absl::ToUnixMillis(since)) ++audit.aborted_since;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TopicAudit> AuditTopics(const std::string& bootstrap, const std::string& app,
                                       const std::string& scenario, int partitions,
                                       const std::map<std::string, int64_t>& final_versions,
                                       absl::Time since) {
  auto client = KafkaTestClient::Create(bootstrap);
  if (!client.ok()) return client.status();
  const std::string changes_topic = absl::StrCat(app, ".", scenario, ".changes");
  const std::string changelog_topic = absl::StrCat(app, ".", scenario, ".changelog");
  TopicAudit audit;

  auto changes = (*client)->ReadAll(changes_topic, partitions);
  if (!changes.ok()) return changes.status();
  std::map<std::string, int64_t> versions;
  for (const Record& r : *changes) {
    records::v1::ChangeEvent event;
    if (!r.value.has_value() || !event.ParseFromString(*r.value)) {
      audit.errors.push_back(absl::StrCat(changes_topic, " ", r.partition, "@", r.offset,
                                          ": not a ChangeEvent"));
      continue;
    }
    ++audit.committed_changes;
    int64_t& last = versions[r.key];
    if (event.version() != last + 1) {
      audit.errors.push_back(absl::StrCat(changes_topic, " ", r.partition, "@", r.offset, ": ",
                                          r.key, " v", event.version(), " after v", last));
    }
    last = std::max(last, event.version());
  }
  for (const auto& [key, version] : final_versions) {
    if (versions[key] != version) {
      audit.errors.push_back(absl::StrCat(key, ": the committed change events end at v",
                                          versions[key], ", the state is at v", version));
    }
  }

  auto changelog = (*client)->ReadAll(changelog_topic, partitions);
  if (!changelog.ok()) return changelog.status();
  std::map<int32_t, int64_t> source_offsets;
  for (const Record& r : *changelog) {
    ++audit.committed_changelog;
    if (!r.value.has_value()) continue;  // a tombstone carries no offsets
    records::v1::ObjectRecord record;
    if (!record.ParseFromString(*r.value)) {
      audit.errors.push_back(absl::StrCat(changelog_topic, " ", r.partition, "@", r.offset,
                                          ": not an ObjectRecord"));
      continue;
    }
    int64_t& last = source_offsets[r.partition];
    if (record.source_offset() < last) {
      audit.errors.push_back(absl::StrCat(changelog_topic, " ", r.partition, "@", r.offset,
                                          ": source offset ", record.source_offset(),
                                          " after ", last, " (", r.key, ")"));
    }
    last = std::max(last, record.source_offset());
  }

  if (absl::Status s = CountAborted(**client, changes_topic, partitions, *changes, since, audit);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CountAborted(**client, changelog_topic, partitions, *changelog, since, audit);
      !s.ok()) {
    return s;
  }
  return audit;
}

}  // namespace tally::test
