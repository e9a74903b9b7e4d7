// tallyd: the Tally server. Runs the node role (processor and shards for assigned partitions)
// and/or the router role (the public API), as its config says. See README.md.

#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/tallyd/server.h"

ABSL_FLAG(std::string, config, "",
          "Path of the config file (tally.config.v1.Config as JSON or textproto). Required.");
ABSL_FLAG(std::string, node_id, "", "Overrides node.node_id: this node's stable, unique id.");
ABSL_FLAG(std::string, listen, "",
          "Overrides server.listen_address (host:port; port 0 picks a free port).");
ABSL_FLAG(std::string, data_dir, "", "Overrides node.data_dir: where the LMDB shards live.");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, write the bound listen address (host:port) to this file.");

namespace {

absl::Status WriteReadyFile(const std::string& path, const std::string& address) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << address << "\n";
    if (!out.flush()) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

int Run() {
  std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) {
    tally::log::Error("--config is required (see --help)");
    return 2;
  }
  auto config = tally::config::LoadConfigFile(config_path);
  if (!config.ok()) {
    tally::log::Error("cannot load config", {{"error", config.status().ToString()}});
    return 2;
  }
  if (!absl::GetFlag(FLAGS_node_id).empty()) {
    config->mutable_node()->set_node_id(absl::GetFlag(FLAGS_node_id));
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    config->mutable_server()->set_listen_address(absl::GetFlag(FLAGS_listen));
  }
  if (!absl::GetFlag(FLAGS_data_dir).empty()) {
    config->mutable_node()->set_data_dir(absl::GetFlag(FLAGS_data_dir));
  }
  tally::config::ApplyDefaults(*config);
  if (absl::Status status = tally::config::ValidateConfig(*config); !status.ok()) {
    tally::log::Error("invalid config", {{"file", config_path}, {"error", status.ToString()}});
    return 2;
  }

  // Block the shutdown signals in every thread; this one waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  tally::Server server(*config);
  if (absl::Status status = server.Start(); !status.ok()) {
    tally::log::Error("start-up failed", {{"error", status.ToString()}});
    return 1;
  }
  if (!absl::GetFlag(FLAGS_ready_file).empty()) {
    if (absl::Status status = WriteReadyFile(absl::GetFlag(FLAGS_ready_file), server.address());
        !status.ok()) {
      tally::log::Error("cannot write ready file", {{"error", status.ToString()}});
      server.Stop();
      return 1;
    }
  }
  tally::log::Info("tallyd ready", {{"address", server.address()}});

  int signal_number = 0;
  for (;;) {
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) break;
    // SIGHUP: re-read the token file; a bad file keeps the tokens in force.
    if (absl::Status status = server.ReloadAuth(); !status.ok()) {
      tally::log::Error("auth reload failed; the previous tokens stay",
                        {{"error", status.ToString()}});
    } else {
      tally::log::Info("auth reloaded");
    }
  }
  tally::log::Info("shutting down", {{"signal", strsignal(signal_number)}});
  server.Stop();
  tally::log::Info("tallyd stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the Tally server.\n\n"
      "  tallyd --config=FILE [--node_id=ID] [--listen=HOST:PORT] [--data_dir=DIR]\n\n"
      "Serves the gRPC API (grpc.health.v1.Health and server reflection included, so grpcurl\n"
      "needs no .proto files) and, with node.enabled, processes its share of the scenarios'\n"
      "partitions. SIGTERM or SIGINT stops it cleanly; SIGHUP re-reads auth.token_file. Logs go to "
      "stderr in logfmt;\n"
      "TALLY_LOG_LEVEL=debug|info|warn|error sets the level.");
  absl::ParseCommandLine(argc, argv);
  // Debian builds Abseil without NDEBUG, which turns on the Mutex deadlock detector: a lock-order
  // graph updated on every lock, 1-3% of a loaded router's CPU. Unit tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return Run();
}
