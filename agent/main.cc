// tally-agent: the sidecar that watches objects and reports their state to Tally's routers.
// See README.md beside this file.

#include <signal.h>
#include <string.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/check/check.h"
#include "agent/config/config.h"
#include "agent/reporter/outbox.h"
#include "agent/reporter/router_sender.h"
#include "agent/runner/agent.h"
#include "agent/runner/schedule.h"
#include "agent/spool/spool.h"
#include "google/protobuf/util/json_util.h"
#include "server/common/log.h"
#include "server/common/tls.h"

ABSL_FLAG(std::string, config, "",
          "Path of the config file (tally.agent.v1.AgentConfig as JSON or textproto). Required.");
ABSL_FLAG(std::string, agent_id, "", "Overrides agent_id: this agent's id (its vote).");
ABSL_FLAG(std::string, routers, "",
          "Overrides routers: comma-separated host:port list, tried in order.");
ABSL_FLAG(std::string, spool_dir, "",
          "Overrides spool.dir: where undelivered reports are kept across restarts.");
ABSL_FLAG(std::string, token_file, "",
          "Overrides token_file: a file holding the bearer token sent to the routers.");
ABSL_FLAG(bool, once, false,
          "Run every check once, print the report each would send (one JSON object a line on "
          "stdout), send nothing, and exit: 0 if every watch has a report, 1 if not.");

namespace {

using tally::agent::v1::AgentConfig;

int RunOnce(tally::agent::Schedule& schedule) {
  int missing = 0;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  for (const auto& report : schedule.RunAllOnce()) {
    if (!report.ok()) {
      tally::log::Error("no report", {{"error", report.status().ToString()}});
      ++missing;
      continue;
    }
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(*report, &json, options);
    std::printf("%s\n", json.c_str());
  }
  std::fflush(stdout);
  return missing == 0 ? 0 : 1;
}

int Run() {
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) {
    tally::log::Error("--config is required (see --help)");
    return 2;
  }
  absl::StatusOr<AgentConfig> config = tally::agent::LoadAgentConfigFile(config_path);
  if (!config.ok()) {
    tally::log::Error("cannot load config", {{"error", config.status().ToString()}});
    return 2;
  }
  if (!absl::GetFlag(FLAGS_agent_id).empty()) config->set_agent_id(absl::GetFlag(FLAGS_agent_id));
  if (!absl::GetFlag(FLAGS_routers).empty()) {
    config->clear_routers();
    for (absl::string_view r :
         absl::StrSplit(absl::GetFlag(FLAGS_routers), ',', absl::SkipWhitespace())) {
      config->add_routers(std::string(r));
    }
  }
  if (!absl::GetFlag(FLAGS_spool_dir).empty()) {
    config->mutable_spool()->set_dir(absl::GetFlag(FLAGS_spool_dir));
  }
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    config->set_token_file(absl::GetFlag(FLAGS_token_file));
  }
  const bool once = absl::GetFlag(FLAGS_once);
  tally::agent::ApplyDefaults(*config);
  if (absl::Status s = tally::agent::ValidateAgentConfig(*config, once); !s.ok()) {
    tally::log::Error("invalid config", {{"file", config_path}, {"error", s.ToString()}});
    return 2;
  }

  const uint64_t seed = std::random_device{}();
  tally::agent::RealClock clock;
  auto schedule = tally::agent::Schedule::Create(*config, clock, tally::agent::NewCheck, seed);
  if (!schedule.ok()) {
    tally::log::Error("invalid config", {{"error", schedule.status().ToString()}});
    return 2;
  }
  if (once) return RunOnce(**schedule);

  // Block the shutdown signals in every thread; this one waits for them below. SIGPIPE is
  // ignored so a router closing a socket is an error, not the end of the agent.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  tally::agent::SpoolOptions spool_options;
  spool_options.dir = config->spool().dir();
  spool_options.max_bytes = config->spool().max_bytes();
  spool_options.segment_bytes = config->spool().segment_bytes();
  auto spool = tally::agent::Spool::Open(spool_options);
  if (!spool.ok()) {
    tally::log::Error("cannot open spool", {{"error", spool.status().ToString()}});
    return 1;
  }
  tally::agent::BackoffOptions backoff;
  backoff.initial = tally::agent::ToDuration(config->backoff().initial());
  backoff.max = tally::agent::ToDuration(config->backoff().max());
  backoff.jitter = config->backoff().jitter();
  tally::agent::RouterSenderOptions sender_options;
  sender_options.routers.assign(config->routers().begin(), config->routers().end());
  sender_options.token_file = config->token_file();
  sender_options.rpc_timeout = tally::agent::ToDuration(config->rpc_timeout());
  tally::agent::StubFactory stubs = tally::agent::InsecureStubFactory(backoff);
  if (!config->tls().ca_file().empty()) {
    grpc::SslCredentialsOptions tls;
    for (auto [path, out, field] :
         {std::tuple{config->tls().ca_file(), &tls.pem_root_certs, "tls.ca_file"},
          std::tuple{config->tls().cert_file(), &tls.pem_cert_chain, "tls.cert_file"},
          std::tuple{config->tls().key_file(), &tls.pem_private_key, "tls.key_file"}}) {
      if (path.empty()) continue;
      auto pem = tally::common::ReadPem(path, field);
      if (!pem.ok()) {
        tally::log::Error("cannot read TLS files", {{"error", pem.status().ToString()}});
        return 2;
      }
      *out = *pem;
    }
    stubs = tally::agent::StubFactoryWith(backoff, grpc::SslCredentials(tls));
  } else {
    tally::log::Warn("talking to the routers in plaintext (no tls.ca_file)");
  }
  tally::agent::RouterSender sender(sender_options, std::move(stubs));
  tally::agent::OutboxOptions outbox_options;
  outbox_options.max_batch = static_cast<size_t>(config->max_batch());
  outbox_options.backoff = backoff;
  outbox_options.seed = seed + 1;
  tally::agent::Outbox outbox(**spool, sender, clock, outbox_options);
  tally::agent::Agent agent(**schedule, outbox, clock);

  tally::log::Info("tally-agent started",
                   {{"agent_id", config->agent_id()},
                    {"routers", absl::StrJoin(config->routers(), ",")},
                    {"watches", config->watches_size()},
                    {"spool_dir", config->spool().dir()},
                    {"spooled_records", (*spool)->Stats().records},
                    {"tls", config->tls().ca_file().empty() ? "off" : "on"},
                    {"auth", config->token_file().empty() ? "none" : "bearer token file"}});
  agent.Start();

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  tally::log::Info("shutting down", {{"signal", strsignal(signal_number)}});
  agent.Stop();
  const tally::agent::OutboxStats stats = outbox.Stats();
  const tally::agent::SpoolStats spool_stats = (*spool)->Stats();
  tally::log::Info("tally-agent stopped", {{"delivered", stats.delivered},
                                           {"spooled", stats.spooled},
                                           {"still_spooled", spool_stats.records},
                                           {"lost", stats.lost},
                                           {"refused_invalid", stats.refused_invalid},
                                           {"dropped_superseded", spool_stats.dropped_superseded}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the Tally sidecar: runs checks on objects and reports their states to Tally's routers.\n\n"
      "  tally-agent --config=FILE [--agent_id=ID] [--routers=HOST:PORT,...] [--spool_dir=DIR]\n"
      "              [--token_file=FILE] [--once]\n\n"
      "Each watch's check (a command, an HTTP GET or a file) runs every interval (with jitter);\n"
      "a changed state is reported at once and an unchanged one again every ttl/2, so the vote\n"
      "stays alive. Reports go to the first router that answers (gRPC ReportState for one,\n"
      "ReportBatch for more, ReportStates streams to routers older than ReportBatch; TLS with\n"
      "tls.ca_file, else plaintext; `authorization: Bearer <token>` with a token file).\n"
      "While no router answers, reports are kept in order in a bounded on-disk spool and\n"
      "delivered when one is back, also after a restart. --once runs every check once and\n"
      "prints what it would report.\n"
      "SIGTERM or SIGINT stops it; reports not yet delivered stay in the spool. Logs go to\n"
      "stderr in logfmt; TALLY_LOG_LEVEL=debug|info|warn|error sets the level. Exit codes:\n"
      "0 ok, 1 runtime failure (or --once with a watch that has no report), 2 bad config.\n"
      "See agent/README.md.");
  // --help lists the flags of this file (Abseil's default looks for files named after the
  // program, tally-agent.cc).
  absl::FlagsUsageConfig usage;
  usage.contains_helpshort_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "agent/main.cc");
  };
  usage.contains_help_flags = usage.contains_helpshort_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  return Run();
}
