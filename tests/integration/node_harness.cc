#include "tests/integration/node_harness.h"

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "server/kafka/admin.h"
#include "server/kafka/errors.h"
#include "tests/testing/wait.h"

namespace tally::test {

TallydProcess::TallydProcess(std::string config_path, std::string node_id, std::string data_dir,
                             std::string log_path)
    : config_path_(std::move(config_path)),
      node_id_(std::move(node_id)),
      data_dir_(std::move(data_dir)),
      log_path_(std::move(log_path)) {}

TallydProcess::~TallydProcess() {
  if (pid_ > 0) Signal(SIGKILL);
}

absl::Status TallydProcess::Start() {
  std::string ready = absl::StrCat(log_path_, ".ready");
  std::filesystem::remove(ready);
  std::vector<std::string> args = {TALLYD_PATH,
                                   absl::StrCat("--config=", config_path_),
                                   absl::StrCat("--node_id=", node_id_),
                                   absl::StrCat("--data_dir=", data_dir_),
                                   "--listen=127.0.0.1:0",
                                   absl::StrCat("--ready_file=", ready)};
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // A test that crashes must not leave tallyd running (destructors do not run then): the
    // kernel kills the child when the thread that forked it exits. Tests start processes from
    // their main thread, which lives as long as the test.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the test died before prctl took effect
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  bool ok = WaitFor(
      [&] {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          return true;
        }
        return std::filesystem::exists(ready);
      },
      absl::Seconds(60));
  if (pid_ < 0) return absl::InternalError(absl::StrCat("tallyd exited at start:\n", Log()));
  if (!ok) return absl::DeadlineExceededError(absl::StrCat("tallyd not ready:\n", Log()));
  std::ifstream in(ready);
  std::getline(in, address_);
  return absl::OkStatus();
}

int TallydProcess::Signal(int signal) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  if (signal != SIGTERM && signal != SIGKILL) return 0;
  int status = 0;
  // Bounded: a SIGTERM that does not end it within 30 s becomes a SIGKILL (and a failure the
  // caller sees in the exit status).
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  pid_ = -1;
  return status;
}

std::string TallydProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::pair<int64_t, int> TallydProcess::SumLogField(const std::string& msg,
                                                   const std::string& field) const {
  int64_t sum = 0;
  int lines = 0;
  std::string needle = absl::StrCat("msg=\"", msg, "\"");
  std::string prefix = absl::StrCat(field, "=");
  for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
    if (line.find(needle) == absl::string_view::npos) continue;
    ++lines;
    for (absl::string_view part : absl::StrSplit(line, ' ')) {
      if (absl::ConsumePrefix(&part, prefix)) {
        int64_t v = 0;
        if (absl::SimpleAtoi(part, &v)) sum += v;
      }
    }
  }
  return {sum, lines};
}

absl::StatusOr<std::unique_ptr<KafkaTestClient>> KafkaTestClient::Create(
    const std::string& bootstrap) {
  std::unique_ptr<KafkaTestClient> client(new KafkaTestClient(bootstrap));
  auto conf = kafka::BuildConf({{"bootstrap.servers", bootstrap},
                                {"enable.idempotence", "true"},
                                {"acks", "all"},
                                {"linger.ms", "5"}});
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_opaque(conf->get(), client.get());
  rd_kafka_conf_set_dr_msg_cb(
      conf->get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
        auto* self = static_cast<KafkaTestClient*>(opaque);
        if (m->err && self->delivery_error_.ok()) {
          self->delivery_error_ = kafka::KafkaStatus(m->err, "test produce");
        }
      });
  auto producer = kafka::NewHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!producer.ok()) return producer.status();
  client->producer_ = std::move(*producer);
  return client;
}

KafkaTestClient::~KafkaTestClient() {
  if (producer_) rd_kafka_flush(producer_.get(), 10000);
}

absl::Status KafkaTestClient::Produce(const std::string& topic, int32_t partition,
                                      const std::string& key, const std::string* value) {
  while (true) {
    rd_kafka_resp_err_t err =
        rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                          RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key.data(), key.size()),
                          RD_KAFKA_V_VALUE(value ? const_cast<char*>(value->data()) : nullptr,
                                           value ? value->size() : 0),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(producer_.get(), 10);
      continue;
    }
    return kafka::KafkaStatus(err, "test produce");
  }
}

absl::Status KafkaTestClient::Flush() {
  if (rd_kafka_resp_err_t err = rd_kafka_flush(producer_.get(), 60000); err) {
    return kafka::KafkaStatus(err, "test flush");
  }
  return delivery_error_;
}

absl::StatusOr<std::vector<Record>> KafkaTestClient::ReadAll(const std::string& topic,
                                                             int partitions, bool read_committed) {
  auto conf = kafka::BuildConf({{"bootstrap.servers", bootstrap_},
                                {"group.id", "tally-test-reader"},
                                {"enable.auto.commit", "false"},
                                {"isolation.level",
                                 read_committed ? "read_committed" : "read_uncommitted"},
                                {"enable.partition.eof", "true"},
                                {"auto.offset.reset", "earliest"}});
  if (!conf.ok()) return conf.status();
  auto consumer = kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer.ok()) return consumer.status();
  rd_kafka_t* rk = consumer->get();
  rd_kafka_poll_set_consumer(rk);
  kafka::Admin admin(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  int pending = 0;
  for (int p = 0; p < partitions; ++p) {
    auto marks = admin.WatermarkOffsets(topic, p);
    if (!marks.ok()) {
      rd_kafka_topic_partition_list_destroy(list);
      return marks.status();
    }
    if (marks->second > marks->first) {
      rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
      ++pending;
    }
  }
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<Record> out;
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (pending > 0) {
    if (absl::Now() > deadline)
      return absl::DeadlineExceededError("ReadAll: not at the end in 60 s");
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      --pending;
    } else if (!m->err) {
      Record r;
      r.partition = m->partition;
      r.offset = m->offset;
      r.key.assign(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) r.value.emplace(static_cast<const char*>(m->payload), m->len);
      r.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  return out;
}

absl::StatusOr<bool> KafkaTestClient::GroupCaughtUp(const std::string& group,
                                                    const std::string& topic, int partitions) {
  auto conf = kafka::BuildConf({{"bootstrap.servers", bootstrap_},
                                {"group.id", group},
                                {"enable.auto.commit", "false"},
                                {"isolation.level", "read_committed"}});
  if (!conf.ok()) return conf.status();
  auto consumer = kafka::NewHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!consumer.ok()) return consumer.status();
  kafka::Admin admin(consumer->get());
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  rd_kafka_resp_err_t err = rd_kafka_committed(consumer->get(), list, 10000);
  bool caught_up = err == RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int p = 0; caught_up && p < partitions; ++p) {
    auto marks = admin.WatermarkOffsets(topic, p);
    if (!marks.ok()) {
      caught_up = false;
      break;
    }
    int64_t committed = list->elems[p].offset;
    if (marks->second > 0 && committed < marks->second) caught_up = false;
  }
  rd_kafka_topic_partition_list_destroy(list);
  return caught_up;
}

}  // namespace tally::test
