#ifndef TALLY_TESTS_FAULTS_TOPIC_AUDIT_H_
#define TALLY_TESTS_FAULTS_TOPIC_AUDIT_H_

// What a scenario's changes and changelog topics show about who wrote to them, read back with a
// read_committed consumer (what every reader, restore and watch sees) and a read_uncommitted one
// (which also shows the records of aborted transactions). A writer that kept writing after
// losing its partitions (a zombie that was not fenced) shows in the committed history as a
// repeated or skipped version of an object, or as a changelog record whose source offset goes
// back.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tally::test {

struct TopicAudit {
  // Committed history that no single writer per partition could have produced.
  std::vector<std::string> errors;
  int64_t committed_changes = 0;
  int64_t committed_changelog = 0;
  // Records of both topics that never became visible (aborted transactions), in all and among
  // those produced at or after `since`.
  int64_t aborted = 0;
  int64_t aborted_since = 0;
};

// Reads the topics of scenario `scenario` of `app` (once the cluster is quiet) and checks that
// each object's committed change events have versions 1, 2, ... up to `final_versions[key]`, and
// that each changelog partition's source offsets never go back.
absl::StatusOr<TopicAudit> AuditTopics(const std::string& bootstrap, const std::string& app,
                                       const std::string& scenario, int partitions,
                                       const std::map<std::string, int64_t>& final_versions,
                                       absl::Time since);

}  // namespace tally::test

#endif  // TALLY_TESTS_FAULTS_TOPIC_AUDIT_H_
