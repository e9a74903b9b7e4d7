// TLS through real tallyd processes, with a CA the test makes itself (openssl): a two-node
// cluster with mutual TLS on every listener — so routers read from nodes over mTLS too — serves
// clients that present a certificate of the CA, and refuses plaintext clients, clients without a
// certificate, and clients whose certificate another CA signed.

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/kafka/partitioner.h"
#include "tally/v1/state.grpc.pb.h"
#include "tests/integration/cluster.h"
#include "tests/testing/kafka_bootstrap.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace tally::test {
namespace {

constexpr int kPartitions = 4;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Makes `<name>.pem`/`<name>.key` in `dir`, signed by the CA `<ca>.pem` (self-signed if ca is
// empty). Fails the test if openssl fails.
void MakeCert(const std::string& dir, const std::string& name, const std::string& ca) {
  const std::string base = absl::StrCat(dir, "/", name);
  std::string command;
  if (ca.empty()) {
    command = absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=", name,
                           " -keyout ", base, ".key -out ", base, ".pem");
  } else {
    std::ofstream(base + ".ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 << "basicConstraints=CA:FALSE\n"
                                 << "extendedKeyUsage=serverAuth,clientAuth\n";
    const std::string ca_base = absl::StrCat(dir, "/", ca);
    command = absl::StrCat("openssl req -newkey rsa:2048 -nodes -subj /CN=", name, " -keyout ",
                           base, ".key -out ", base, ".csr && openssl x509 -req -days 1 -in ", base,
                           ".csr -CA ", ca_base, ".pem -CAkey ", ca_base,
                           ".key -CAcreateserial -extfile ", base, ".ext -out ", base, ".pem");
  }
  ASSERT_EQ(std::system(absl::StrCat("(", command, ") >", base, ".log 2>&1").c_str()), 0)
      << Read(base + ".log");
}

std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& dir, const std::string& ca,
                                              const std::string& cert) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = Read(absl::StrCat(dir, "/", ca, ".pem"));
  if (!cert.empty()) {
    options.pem_cert_chain = Read(absl::StrCat(dir, "/", cert, ".pem"));
    options.pem_private_key = Read(absl::StrCat(dir, "/", cert, ".key"));
  }
  return grpc::SslCredentials(options);
}

grpc::Status Describe(const std::string& address,
                      std::shared_ptr<grpc::ChannelCredentials> credentials) {
  auto stub = v1::AdminService::NewStub(grpc::CreateChannel(address, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::DescribeClusterResponse response;
  return stub->DescribeCluster(&context, {}, &response);
}

TEST(TlsTest, MutualTlsServesCertifiedClientsAndRoutesBetweenNodesAndRefusesTheRest) {
  TempDir certs;
  MakeCert(certs.path(), "ca", "");
  MakeCert(certs.path(), "node", "ca");
  MakeCert(certs.path(), "client", "ca");
  MakeCert(certs.path(), "other-ca", "");
  MakeCert(certs.path(), "stranger", "other-ca");
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  const std::string& d = certs.path();
  TestCluster cluster(
      KafkaBootstrapOrDie(), kPartitions, "", "",
      absl::StrCat("tls { cert_file: \"", d, "/node.pem\" key_file: \"", d,
                   "/node.key\" ca_file: \"", d, "/ca.pem\" require_client_cert: true }"));
  cluster.set_channel_credentials(Tls(d, "ca", "client"));
  ASSERT_TRUE(cluster.StartNode("n1").ok());
  ASSERT_TRUE(cluster.StartNode("n2").ok());
  ASSERT_TRUE(cluster.WaitAllActive("n1", {"n1", "n2"})) << cluster.Logs();
  EXPECT_THAT(cluster.process("n1").Log(), ::testing::HasSubstr("listener uses TLS"));

  // Written through n1, read through n2: half the keys live on n1, so n2's router reads them
  // from n1 over mutual TLS.
  int remote_reads = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string key = absl::StrCat("site-", i);
    v1::ReportStateRequest report;
    report.set_scenario(TestCluster::kScenario);
    report.set_object_key(key);
    report.set_agent_id("a");
    report.set_state("up");
    grpc::ClientContext write_context;
    write_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::ReportStateResponse written;
    grpc::Status status = cluster.state("n1").ReportState(&write_context, report, &written);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::GetStateRequest get;
    get.set_scenario(TestCluster::kScenario);
    get.set_object_key(key);
    get.set_min_token(written.token());
    grpc::ClientContext read_context;
    read_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::GetStateResponse got;
    status = cluster.state("n2").GetState(&read_context, get, &got);
    ASSERT_TRUE(status.ok()) << key << ": " << status.error_message();
    EXPECT_EQ(got.state().state(), "up");
    remote_reads += got.served_by() == "n1" ? 1 : 0;
  }
  EXPECT_GT(remote_reads, 0) << "no read crossed from router n2 to node n1";

  // A tally-agent reporting over mutual TLS with its own certificate.
  {
    std::ofstream(absl::StrCat(d, "/state")) << "calm\n";
    std::ofstream(absl::StrCat(d, "/agent.textproto"))
        << "agent_id: \"agent-1\"\n"
        << "routers: [\"" << cluster.process("n2").address() << "\"]\n"
        << "spool { dir: \"" << d << "/spool\" }\n"
        << "interval { seconds: 1 }\n"
        << "tls { ca_file: \"" << d << "/ca.pem\" cert_file: \"" << d
        << "/client.pem\" key_file: \"" << d << "/client.key\" }\n"
        << "watches { scenario: \"" << TestCluster::kScenario
        << "\" object_key: \"agent-site\" check { file { path: \"" << d << "/state\" } } }\n";
    const std::string command = absl::StrCat(AGENT_PATH, " --config=", d, "/agent.textproto > ", d,
                                             "/agent.log 2>&1 & echo $! > ", d, "/agent.pid");
    ASSERT_EQ(std::system(command.c_str()), 0);
    bool reported = WaitFor(
        [&] {
          v1::GetStateRequest get;
          get.set_scenario(TestCluster::kScenario);
          get.set_object_key("agent-site");
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
          v1::GetStateResponse got;
          return cluster.state("n1").GetState(&context, get, &got).ok() &&
                 got.state().state() == "calm";
        },
        absl::Seconds(60));
    std::system(absl::StrCat("kill $(cat ", d, "/agent.pid)").c_str());
    EXPECT_TRUE(reported) << Read(absl::StrCat(d, "/agent.log"));
  }

  const std::string address = cluster.process("n1").address();
  EXPECT_TRUE(Describe(address, Tls(d, "ca", "client")).ok());
  EXPECT_EQ(Describe(address, grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a plaintext client must not get through";
  EXPECT_EQ(Describe(address, Tls(d, "ca", "")).error_code(), grpc::StatusCode::UNAVAILABLE)
      << "a client without a certificate must not get through";
  EXPECT_EQ(Describe(address, Tls(d, "ca", "stranger")).error_code(), grpc::StatusCode::UNAVAILABLE)
      << "a certificate of another CA must not get through";
}

}  // namespace
}  // namespace tally::test
