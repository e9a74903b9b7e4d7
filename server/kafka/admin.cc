#include "server/kafka/admin.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/kafka/errors.h"
#include "server/kafka/internal/absl_view.h"

namespace tally::kafka {
namespace {

using internal::AbslView;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* ev) const { rd_kafka_event_destroy(ev); }
};
struct OptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};
struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* t) const { rd_kafka_NewTopic_destroy(t); }
};
struct ConfigResourceDeleter {
  void operator()(rd_kafka_ConfigResource_t* r) const { rd_kafka_ConfigResource_destroy(r); }
};
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* md) const { rd_kafka_metadata_destroy(md); }
};
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, EventDeleter>;
using OptionsPtr = std::unique_ptr<rd_kafka_AdminOptions_t, OptionsDeleter>;
using NewTopicPtr = std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter>;
using ConfigResourcePtr = std::unique_ptr<rd_kafka_ConfigResource_t, ConfigResourceDeleter>;
using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;

// librdkafka rejects admin timeouts above one hour; below 1 ms means "no wait" to some calls.
constexpr int64_t kMaxTimeoutMs = 3'600'000;

int RemainingMs(absl::Time deadline) {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline - absl::Now()), 1, kMaxTimeoutMs));
}

std::string Quoted(std::string_view topic) {
  return absl::StrCat("topic \"", AbslView(topic), "\"");
}

// `status` with "<prefix>: " in front of its message, so errors of shared steps name the topic.
absl::Status Prefixed(const absl::Status& status, std::string_view prefix) {
  return absl::Status(status.code(), absl::StrCat(AbslView(prefix), ": ", status.message()));
}

absl::StatusOr<OptionsPtr> NewOptions(rd_kafka_t* rk, rd_kafka_admin_op_t op, absl::Time deadline) {
  OptionsPtr options(rd_kafka_AdminOptions_new(rk, op));
  char errstr[512];
  rd_kafka_resp_err_t err = rd_kafka_AdminOptions_set_request_timeout(
      options.get(), RemainingMs(deadline), errstr, sizeof(errstr));
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && op == RD_KAFKA_ADMIN_OP_CREATETOPICS) {
    // Half of the time for the controller to finish the creation, so that its answer (rather than
    // our request timeout) tells what happened; the metadata wait covers the rest.
    err = rd_kafka_AdminOptions_set_operation_timeout(
        options.get(), std::max(1, RemainingMs(deadline) / 2), errstr, sizeof(errstr));
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(err, "admin options", errstr);
  return options;
}

// Waits for the result of an admin request on `queue`. librdkafka always posts a result, with
// _TIMED_OUT once the request timeout passes, so the margin only guards against a lost event.
absl::StatusOr<EventPtr> AwaitResult(rd_kafka_queue_t* queue, absl::Time deadline,
                                     std::string_view context) {
  EventPtr event(rd_kafka_queue_poll(queue, RemainingMs(deadline + absl::Seconds(5))));
  if (event == nullptr) {
    return absl::UnavailableError(
        absl::StrCat(AbslView(context), ": no answer from the cluster in time"));
  }
  rd_kafka_resp_err_t err = rd_kafka_event_error(event.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* reason = rd_kafka_event_error_string(event.get());
    return KafkaStatus(err, context, reason != nullptr ? reason : "");
  }
  return event;
}

absl::StatusOr<MetadataPtr> FetchMetadata(rd_kafka_t* rk, absl::Time deadline) {
  // All topics rather than one: asking for a named topic lets a producer handle (whose
  // allow.auto.create.topics defaults to true) auto-create it on brokers that allow that.
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk, /*all_topics=*/1, /*only_rkt=*/nullptr, &md, RemainingMs(deadline));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(err, "cluster metadata");
  return MetadataPtr(md);
}

const rd_kafka_metadata_topic_t* FindTopic(const rd_kafka_metadata_t& md, std::string_view name) {
  for (int i = 0; i < md.topic_cnt; ++i) {
    if (name == md.topics[i].topic) return &md.topics[i];
  }
  return nullptr;
}

absl::Status ValidateSpecs(absl::Span<const TopicSpec> topics) {
  absl::flat_hash_set<std::string_view> names;
  for (const TopicSpec& spec : topics) {
    if (spec.name.empty()) return absl::InvalidArgumentError("topic spec without a name");
    if (spec.partitions <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(Quoted(spec.name), ": partitions must be > 0, not ", spec.partitions));
    }
    if (!names.insert(spec.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(Quoted(spec.name), " is listed twice"));
    }
  }
  return absl::OkStatus();
}

// Sends one CreateTopics request for all of `topics`. On success, existed[i] says whether
// topics[i] was there already.
absl::StatusOr<std::vector<bool>> CreateTopics(rd_kafka_t* rk, absl::Span<const TopicSpec> topics,
                                               absl::Time deadline) {
  std::vector<NewTopicPtr> owned;
  std::vector<rd_kafka_NewTopic_t*> raw;
  char errstr[512];
  for (const TopicSpec& spec : topics) {
    errstr[0] = '\0';
    NewTopicPtr topic(rd_kafka_NewTopic_new(spec.name.c_str(), spec.partitions,
                                            spec.replication_factor, errstr, sizeof(errstr)));
    if (topic == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(Quoted(spec.name), ": ", errstr));
    }
    std::vector<std::pair<std::string, std::string>> configs(spec.configs.begin(),
                                                             spec.configs.end());
    std::sort(configs.begin(), configs.end());
    for (const auto& [name, value] : configs) {
      rd_kafka_resp_err_t err =
          rd_kafka_NewTopic_set_config(topic.get(), name.c_str(), value.c_str());
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return KafkaStatus(err, absl::StrCat(Quoted(spec.name), " config \"", name, "\""));
      }
    }
    raw.push_back(topic.get());
    owned.push_back(std::move(topic));
  }

  absl::StatusOr<OptionsPtr> options = NewOptions(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, deadline);
  if (!options.ok()) return options.status();
  QueuePtr queue(rd_kafka_queue_new(rk));
  rd_kafka_CreateTopics(rk, raw.data(), raw.size(), options->get(), queue.get());
  const std::string context =
      absl::StrCat("create ", absl::StrJoin(topics, ", ", [](std::string* out, const TopicSpec& t) {
                     out->append(Quoted(t.name));
                   }));
  absl::StatusOr<EventPtr> event = AwaitResult(queue.get(), deadline, context);
  if (!event.ok()) return event.status();

  const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event->get());
  if (result == nullptr) return absl::InternalError("create topics: unexpected result event");
  size_t count = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &count);
  std::vector<bool> existed(topics.size(), false);
  std::vector<bool> answered(topics.size(), false);
  for (size_t i = 0; i < count; ++i) {
    std::string_view name = rd_kafka_topic_result_name(results[i]);
    auto it = std::find_if(topics.begin(), topics.end(),
                           [&](const TopicSpec& spec) { return spec.name == name; });
    if (it == topics.end()) continue;
    const size_t index = it - topics.begin();
    answered[index] = true;
    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      existed[index] = true;
    } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* reason = rd_kafka_topic_result_error_string(results[i]);
      return KafkaStatus(err, absl::StrCat("create ", Quoted(name)), reason ? reason : "");
    }
  }
  for (size_t i = 0; i < topics.size(); ++i) {
    if (!answered[i]) {
      return absl::UnavailableError(
          absl::StrCat("create ", Quoted(topics[i].name), ": no result in the answer"));
    }
  }
  return existed;
}

// Why `spec` is not ready in `md` yet (empty: ready), or a FAILED_PRECONDITION status when an
// existing topic has another partition count.
absl::StatusOr<std::string> NotReadyReason(const rd_kafka_metadata_t& md, const TopicSpec& spec,
                                           bool existed) {
  const rd_kafka_metadata_topic_t* topic = FindTopic(md, spec.name);
  if (topic == nullptr || topic->partition_cnt == 0) {
    return absl::StrCat(Quoted(spec.name), " is not in the metadata");
  }
  if (topic->partition_cnt != spec.partitions) {
    // A topic we just created may show up partially only on a lagging broker; one that existed
    // before has the partitions it has.
    if (existed) {
      return absl::FailedPreconditionError(
          absl::StrCat(Quoted(spec.name), " has ", topic->partition_cnt,
                       " partitions, the config says ", spec.partitions));
    }
    return absl::StrCat(Quoted(spec.name), " shows ", topic->partition_cnt, " of ", spec.partitions,
                        " partitions");
  }
  for (int p = 0; p < topic->partition_cnt; ++p) {
    if (topic->partitions[p].leader < 0) {
      return absl::StrCat(Quoted(spec.name), " partition ", topic->partitions[p].id,
                          " has no leader");
    }
  }
  return std::string();
}

}  // namespace

Admin::Admin(rd_kafka_t* rk, absl::Duration timeout) : rk_(rk), timeout_(timeout) {}

Admin::Admin(HandlePtr owned, absl::Duration timeout)
    : owned_(std::move(owned)), rk_(owned_.get()), timeout_(timeout) {}

Admin::~Admin() = default;

absl::StatusOr<std::unique_ptr<Admin>> Admin::Create(const Properties& properties,
                                                     absl::Duration timeout) {
  // Looking up a missing topic must never create it, even on brokers that auto-create topics.
  absl::StatusOr<ConfPtr> conf = BuildConf({{"allow.auto.create.topics", "false"}}, properties);
  if (!conf.ok()) return conf.status();
  absl::StatusOr<HandlePtr> handle = NewHandle(RD_KAFKA_PRODUCER, *std::move(conf));
  if (!handle.ok()) return handle.status();
  return absl::WrapUnique(new Admin(*std::move(handle), timeout));
}

absl::Status Admin::EnsureTopics(absl::Span<const TopicSpec> topics) {
  if (absl::Status status = ValidateSpecs(topics); !status.ok()) return status;
  if (topics.empty()) return absl::OkStatus();
  const absl::Time deadline = absl::Now() + timeout_;

  // Check the topics that exist first, so a config that disagrees with the cluster creates
  // nothing; CreateTopics still copes with topics that appear in between.
  absl::StatusOr<MetadataPtr> before = FetchMetadata(rk_, deadline);
  if (!before.ok()) return Prefixed(before.status(), "ensure topics");
  std::vector<bool> existed(topics.size(), false);
  std::vector<TopicSpec> missing;
  for (size_t i = 0; i < topics.size(); ++i) {
    const rd_kafka_metadata_topic_t* topic = FindTopic(**before, topics[i].name);
    if (topic == nullptr || topic->partition_cnt == 0) {
      missing.push_back(topics[i]);
      continue;
    }
    existed[i] = true;
    absl::StatusOr<std::string> reason = NotReadyReason(**before, topics[i], /*existed=*/true);
    if (!reason.ok()) return reason.status();
  }
  if (!missing.empty()) {
    absl::StatusOr<std::vector<bool>> already = CreateTopics(rk_, missing, deadline);
    if (!already.ok()) return already.status();
    for (size_t i = 0, m = 0; i < topics.size(); ++i) {
      if (!existed[i]) existed[i] = (*already)[m++];
    }
  }

  // Kafka has no notification for "the topic is usable", so poll the metadata with backoff.
  absl::Duration backoff = absl::Milliseconds(20);
  std::string not_ready;
  for (;;) {
    not_ready.clear();
    absl::StatusOr<MetadataPtr> md = FetchMetadata(rk_, deadline);
    if (md.ok()) {
      for (size_t i = 0; i < topics.size() && not_ready.empty(); ++i) {
        absl::StatusOr<std::string> reason = NotReadyReason(**md, topics[i], existed[i]);
        if (!reason.ok()) return reason.status();
        not_ready = *std::move(reason);
      }
      if (not_ready.empty()) return absl::OkStatus();
    } else if (md.status().code() != absl::StatusCode::kUnavailable) {
      return Prefixed(md.status(), "ensure topics");
    } else {
      not_ready = std::string(md.status().message());
    }
    if (absl::Now() + backoff >= deadline) break;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
  return absl::UnavailableError(
      absl::StrCat("topics [",
                   absl::StrJoin(topics, ", ",
                                 [](std::string* out, const TopicSpec& t) { out->append(t.name); }),
                   "] not ready within ", absl::FormatDuration(timeout_), ": ", not_ready));
}

absl::StatusOr<int> Admin::PartitionCount(std::string_view topic) {
  absl::StatusOr<MetadataPtr> md = FetchMetadata(rk_, absl::Now() + timeout_);
  if (!md.ok()) return Prefixed(md.status(), absl::StrCat("partition count of ", Quoted(topic)));
  const rd_kafka_metadata_topic_t* found = FindTopic(**md, topic);
  if (found == nullptr || found->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    return absl::NotFoundError(absl::StrCat(Quoted(topic), " does not exist"));
  }
  if (found->partition_cnt == 0) {
    return KafkaStatus(found->err != RD_KAFKA_RESP_ERR_NO_ERROR
                           ? found->err
                           : RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                       Quoted(topic));
  }
  return found->partition_cnt;
}

absl::StatusOr<Properties> Admin::DescribeTopicConfig(std::string_view topic) {
  const absl::Time deadline = absl::Now() + timeout_;
  const std::string name(topic);
  const std::string context = absl::StrCat("describe configs of ", Quoted(topic));
  ConfigResourcePtr resource(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name.c_str()));
  absl::StatusOr<OptionsPtr> options = NewOptions(rk_, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, deadline);
  if (!options.ok()) return options.status();
  QueuePtr queue(rd_kafka_queue_new(rk_));
  rd_kafka_ConfigResource_t* resources[] = {resource.get()};
  rd_kafka_DescribeConfigs(rk_, resources, 1, options->get(), queue.get());
  absl::StatusOr<EventPtr> event = AwaitResult(queue.get(), deadline, context);
  if (!event.ok()) return event.status();

  const rd_kafka_DescribeConfigs_result_t* result =
      rd_kafka_event_DescribeConfigs_result(event->get());
  size_t count = 0;
  const rd_kafka_ConfigResource_t** described =
      result ? rd_kafka_DescribeConfigs_result_resources(result, &count) : nullptr;
  if (count != 1) return absl::InternalError(absl::StrCat(context, ": unexpected result"));
  rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(described[0]);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* reason = rd_kafka_ConfigResource_error_string(described[0]);
    return KafkaStatus(err, context, reason ? reason : "");
  }
  size_t entry_count = 0;
  const rd_kafka_ConfigEntry_t** entries =
      rd_kafka_ConfigResource_configs(described[0], &entry_count);
  Properties configs;
  for (size_t i = 0; i < entry_count; ++i) {
    const char* value = rd_kafka_ConfigEntry_value(entries[i]);
    if (value != nullptr) configs[rd_kafka_ConfigEntry_name(entries[i])] = value;
  }
  return configs;
}

absl::StatusOr<std::pair<int64_t, int64_t>> Admin::WatermarkOffsets(std::string_view topic,
                                                                    int32_t partition) {
  const std::string name(topic);
  int64_t low = 0;
  int64_t high = 0;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
      rk_, name.c_str(), partition, &low, &high, RemainingMs(absl::Now() + timeout_));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return KafkaStatus(
        err, absl::StrCat("watermark offsets of ", Quoted(topic), " partition ", partition));
  }
  return std::make_pair(low, high);
}

}  // namespace tally::kafka
