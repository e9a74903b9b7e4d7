#include "server/tallyd/server.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/common/log.h"
#include "server/common/metrics_server.h"
#include "server/common/tls.h"
#include "server/config/config.h"
#include "server/node/processor.h"
#include "server/router/parse_error_interceptor.h"

namespace tally {
namespace {

// How long the router waits at start-up to read the membership records that already exist.
constexpr absl::Duration kRouterReadyTimeout = absl::Seconds(30);
// Completion queues (a thread each) that WatchState streams are spread over.
constexpr int kWatchQueues = 8;

std::string AdvertiseAddress(const config::v1::Config& config, const std::string& bound) {
  if (!config.server().advertise_address().empty()) return config.server().advertise_address();
  std::string host = bound.substr(0, bound.rfind(':'));
  std::string port = bound.substr(bound.rfind(':') + 1);
  if (host == "0.0.0.0" || host == "[::]" || host == "::" || host.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') host = name;
  }
  return absl::StrCat(host, ":", port);
}

}  // namespace

Server::Server(config::v1::Config config) : config_(std::move(config)) {}

Server::~Server() { Stop(); }

absl::Status Server::Start() {
  // Links the health descriptor in so reflection can describe gRPC's built-in health service.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  const absl::Duration default_deadline =
      absl::Milliseconds(config::DurationMs(config_.router().default_deadline()));
  grpc::EnableDefaultHealthCheckService(true);
  if (!config_.server().disable_reflection()) {
    // libgrpc++_reflection registers its plugin with every ServerBuilder from a static
    // initializer: linking it would mean reflection always on. Loaded only when wanted, it is a
    // switch.
    if (dlopen(TALLY_GRPC_REFLECTION_LIBRARY, RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load gRPC reflection (", TALLY_GRPC_REFLECTION_LIBRARY,
                       "): ", dlerror(), "; set server.disable_reflection to run without it"));
    }
  }
  grpc::ServerBuilder builder;

  if (config_.node().enabled()) {
    node_ = std::make_unique<node::Node>(config_);
    // A ShardService Get waits for min_offset at most as long as a router's call may.
    shard_service_ = std::make_unique<node::ShardService>(node_->queries(), default_deadline);
    builder.RegisterService(shard_service_.get());
  }
  bool standbys = false;
  for (const config::v1::Scenario& s : config_.scenarios()) standbys |= s.standby_replicas() > 0;
  if (config_.node().enabled() && !config_.router().enabled() && standbys) {
    // A node-only process places its standbys by the membership too; it reads no shard of
    // another node, so it makes no clients.
    view_ = std::make_unique<router::MembershipView>(
        config_, [](const std::string&, const std::string&) { return nullptr; });
  }
  if (config_.router().enabled()) {
    std::unique_ptr<auth::TokenStore> tokens;
    if (!config_.auth().token_file().empty()) {
      auto store = auth::TokenStore::Load(config_.auth().token_file());
      if (!store.ok()) return store.status();
      log::Info("auth on", {{"token_file", config_.auth().token_file()},
                            {"principals", static_cast<int64_t>((*store)->size())}});
      tokens = std::move(*store);
    } else {
      log::Warn(
          "auth off (no auth.token_file): every caller may report as any agent and administer");
    }
    auth_ = std::make_unique<auth::Authorizer>(std::move(tokens));
    if (!config_.node().enabled()) {
      // A router-only process still needs the topics it writes and tails.
      if (absl::Status s = node::EnsureTopics(config_); !s.ok()) return s;
    }
    auto sink =
        router::KafkaReportSink::Create(config::KafkaProperties(config_), "tally-router-reports");
    if (!sink.ok()) return sink.status();
    sink_ = std::move(*sink);
    const node::Node* local = node_.get();
    const std::string local_id = config_.node().node_id();
    auto peer_credentials = common::PeerChannelCredentials(config_.server().tls());
    if (!peer_credentials.ok()) return peer_credentials.status();
    const router::GetBatching batching{
        .max_in_flight = config_.router().node_calls_in_flight(),
        .max_batch = config_.router().node_batch_max(),
        .stats = &get_batch_stats_,
    };
    view_ = std::make_unique<router::MembershipView>(
        config_, [local, local_id, credentials = *peer_credentials, batching](
                     const std::string& id, const std::string& endpoint) {
          // The node in this process is read directly, without a network hop.
          if (local != nullptr && id == local_id) {
            return router::NewLocalShardClient(local->queries());
          }
          return router::NewGrpcShardClient(endpoint, credentials, batching);
        });
    router_ = std::make_unique<router::Router>(config_, *sink_, *view_);
    feed_ = std::make_unique<watch::ChangeFeed>(config_);
    watch::WatchOptions watch_options;
    watch_options.max_queued = static_cast<size_t>(config_.router().watch_max_queued());
    // The feed ticks about once a second.
    watch_options.idle_ticks_per_progress = static_cast<int>(std::max<int64_t>(
        1, config::DurationMs(config_.router().watch_progress_interval()) / 1000));
    report_limit_ = std::make_unique<auth::ReportRateLimiter>(config_.router().reports_per_second(),
                                                              config_.router().report_burst());
    watch_limit_ = std::make_unique<auth::WatchLimiter>(config_.router().max_watches());
    state_service_ = std::make_unique<router::StateService>(
        *router_, *feed_, *auth_, router::Limits{*report_limit_, *watch_limit_}, default_deadline,
        watch_options);
    admin_service_ =
        std::make_unique<router::AdminService>(*router_, feed_.get(), *auth_, default_deadline);
    builder.RegisterService(state_service_.get());
    builder.RegisterService(admin_service_.get());
    // WatchState on queues of its own (see watch_call.h): each holds an eighth of the streams.
    router::StateService* state = state_service_.get();
    watch_server_ = std::make_unique<watch::WatchServer>(
        builder, kWatchQueues,
        [state](grpc::ServerContext* context, grpc::ByteBuffer* request,
                grpc::ServerAsyncWriter<grpc::ByteBuffer>* writer, grpc::ServerCompletionQueue* cq,
                void* tag) { state->RequestWatchState(context, request, writer, cq, cq, tag); },
        [state](watch::WatchCall& call, const grpc::ByteBuffer& request) {
          state->HandleWatch(call, request);
        });
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(router::NewParseErrorInterceptor());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }

  int port = 0;
  const std::string& listen = config_.server().listen_address();
  auto credentials = common::ServerCredentials(config_.server().tls());
  if (!credentials.ok()) {
    Stop();
    return credentials.status();
  }
  builder.AddListeningPort(listen, *credentials, &port);
  // Larger requests are refused by gRPC with RESOURCE_EXHAUSTED before they reach a service.
  builder.SetMaxReceiveMessageSize(config_.router().max_request_bytes());
  if (common::TlsEnabled(config_.server().tls())) {
    log::Info("listener uses TLS",
              {{"address", listen},
               {"client_certificates",
                config_.server().tls().require_client_cert() ? "required" : "not asked"}});
  } else {
    log::Warn("listener is plaintext (no TLS configured): for local development only",
              {{"address", listen}});
  }
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port == 0) {
    grpc_server_.reset();
    Stop();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on server.listen_address \"", listen, "\""));
  }
  grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  if (watch_server_ != nullptr) watch_server_->Start();
  std::string host = listen.substr(0, listen.rfind(':'));
  address_ = absl::StrCat(host, ":", port);
  advertise_address_ = AdvertiseAddress(config_, address_);

  if (node_ != nullptr) {
    if (view_ != nullptr) {
      node_membership_ = std::make_unique<router::NodeMembership>(config_, *view_);
    }
    if (absl::Status s = node_->Start(advertise_address_, node_membership_.get()); !s.ok()) {
      Stop();
      return s;
    }
  }
  if (view_ != nullptr) {
    if (absl::Status s = view_->Start(absl::Now() + kRouterReadyTimeout); !s.ok()) {
      Stop();
      return s;
    }
  }
  if (feed_ != nullptr) {
    if (absl::Status s = feed_->Start(absl::Now() + kRouterReadyTimeout); !s.ok()) {
      Stop();
      return s;
    }
  }
  if (!config_.server().metrics_address().empty()) {
    auto metrics = common::MetricsServer::Start(config_.server().metrics_address(),
                                                [this] { return RenderMetrics(); });
    if (!metrics.ok()) {
      Stop();
      return metrics.status();
    }
    metrics_ = std::move(*metrics);
    log::Info("metrics serving", {{"address", metrics_->address()}});
  }
  grpc_server_->GetHealthCheckService()->SetServingStatus(true);
  log::Info("serving", {{"address", address_},
                        {"advertise", advertise_address_},
                        {"node", config_.node().enabled() ? "on" : "off"},
                        {"router", config_.router().enabled() ? "on" : "off"}});
  return absl::OkStatus();
}

absl::Status Server::ReloadAuth() {
  if (auth_ == nullptr) return absl::OkStatus();
  return auth_->Reload();
}

std::string Server::RenderMetrics() const {
  std::string out;
  if (node_ != nullptr) {
    const std::vector<node::ShardInfo> shards = node_->registry().List();
    auto labels = [](const node::ShardInfo& info) {
      return absl::StrCat("scenario=\"", common::PrometheusLabel(info.scenario), "\",partition=\"",
                          info.partition, "\"");
    };
    absl::StrAppend(&out,
                    "# HELP tally_shard_role Shards this node holds, by role "
                    "(restoring, active, standby): 1.\n# TYPE tally_shard_role gauge\n");
    for (const node::ShardInfo& info : shards) {
      const char* role = info.role == node::ShardRole::kActive    ? "active"
                         : info.role == node::ShardRole::kStandby ? "standby"
                                                                  : "restoring";
      absl::StrAppend(&out, "tally_shard_role{", labels(info), ",role=\"", role, "\"} 1\n");
    }
    auto gauge = [&](absl::string_view name, absl::string_view help,
                     int64_t (*value)(const node::ShardInfo&)) {
      absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " gauge\n");
      for (const node::ShardInfo& info : shards) {
        absl::StrAppend(&out, name, "{", labels(info), "} ", value(info), "\n");
      }
    };
    gauge("tally_shard_applied_offset", "Next reports-topic offset the shard has yet to reflect.",
          [](const node::ShardInfo& info) { return info.applied_offset; });
    gauge(
        "tally_shard_end_offset", "End of the reports partition as the node last saw it.",
        [](const node::ShardInfo& info) { return std::max(info.end_offset, info.applied_offset); });
    gauge("tally_shard_lag",
          "Reports the shard has yet to reflect (while restoring: left to restore).",
          [](const node::ShardInfo& info) { return info.lag(); });
    const node::BatchStats batches = node_->batch_stats();
    absl::StrAppend(
        &out,
        "# HELP tally_batches_total Batches the processor committed, one Kafka transaction "
        "each.\n# TYPE tally_batches_total counter\ntally_batches_total ",
        batches.batches,
        "\n# HELP tally_batch_records_total Reports-topic records of the committed batches.\n"
        "# TYPE tally_batch_records_total counter\ntally_batch_records_total ",
        batches.records,
        "\n# HELP tally_batch_seconds_total Time the committed batches spent in each phase; "
        "divided by tally_batches_total, a batch's average.\n"
        "# TYPE tally_batch_seconds_total counter\n");
    for (int i = 0; i < node::kBatchPhases; ++i) {
      absl::StrAppend(&out, "tally_batch_seconds_total{phase=\"", node::kBatchPhaseNames[i], "\"} ",
                      absl::StrFormat("%.6f", absl::ToDoubleSeconds(batches.time[i])), "\n");
    }
  }
  if (feed_ != nullptr) {
    const watch::FeedStats stats = feed_->Stats();
    absl::StrAppend(&out, "# HELP tally_watchers Open WatchState streams.\n",
                    "# TYPE tally_watchers gauge\ntally_watchers ", stats.watchers, "\n",
                    "# HELP tally_watch_queued_events Events waiting to be written, all "
                    "watchers.\n# TYPE tally_watch_queued_events gauge\n"
                    "tally_watch_queued_events ",
                    stats.queued_events, "\n");
  }
  if (config_.router().enabled()) {
    const router::GetBatchStats& gets = get_batch_stats_;
    auto value = [](const std::atomic<int64_t>& v) { return v.load(std::memory_order_relaxed); };
    absl::StrAppend(
        &out,
        "# HELP tally_router_shard_calls_total Point-read calls to other nodes' ShardService: "
        "Get for a read alone, GetBatch for reads that queued while the node's calls were in "
        "flight.\n# TYPE tally_router_shard_calls_total counter\n"
        "tally_router_shard_calls_total{method=\"Get\"} ",
        value(gets.get_calls), "\ntally_router_shard_calls_total{method=\"GetBatch\"} ",
        value(gets.batch_calls),
        "\n# HELP tally_router_batched_reads_total Point reads that went in GetBatch calls.\n"
        "# TYPE tally_router_batched_reads_total counter\ntally_router_batched_reads_total ",
        value(gets.batched_reads),
        "\n# HELP tally_router_queued_reads_expired_total Point reads whose deadline passed "
        "while they queued for a node whose calls did not end.\n"
        "# TYPE tally_router_queued_reads_expired_total counter\n"
        "tally_router_queued_reads_expired_total ",
        value(gets.expired_queued), "\n");
  }
  return out;
}

void Server::Stop() {
  metrics_.reset();
  if (grpc_server_ != nullptr) {
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc_server_->Wait();
  }
  // The server's Shutdown cancelled the watch streams; their queues close once they are over,
  // and before the server goes.
  watch_server_.reset();
  grpc_server_.reset();
  if (view_ != nullptr) view_->Stop();
  if (feed_ != nullptr) feed_->Stop();
  admin_service_.reset();
  state_service_.reset();
  router_.reset();
  feed_.reset();
  sink_.reset();  // flushes pending writes
  node_.reset();  // announces the departure, stops the processor and closes the shards
  node_membership_.reset();
  view_.reset();  // after the node: its standby replicator reads the view until it stops
  shard_service_.reset();
}

}  // namespace tally
