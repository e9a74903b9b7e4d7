// tallyctl: Tally's command-line client. See `tallyctl --help` (client/tallyctl/command_line.cc
// holds the commands, flags and help texts).

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "client/client.h"
#include "client/tallyctl/command_line.h"
#include "client/tallyctl/commands.h"
#include "server/common/tls.h"

namespace {

// The bearer token in `path`, whitespace trimmed; an error message if it cannot be used.
bool ReadToken(const std::string& path, std::string* token, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "--token_file: cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  *token = std::string(absl::StripAsciiWhitespace(buffer.str()));
  if (token->empty()) {
    *error = "--token_file: " + path + " is empty";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tally::tallyctl;
  std::vector<std::string> args(argv + 1, argv + argc);
  const char* env = std::getenv("TALLY_ROUTERS");
  absl::StatusOr<Invocation> inv = ParseCommandLine(args, env == nullptr ? "" : env);
  if (!inv.ok()) {
    std::cerr << "tallyctl: " << inv.status().message() << "\n";
    return kExitUsage;
  }
  if (inv->help) {
    std::cout << (inv->command.empty() ? GlobalHelp() : CommandHelp(inv->command));
    return kExitOk;
  }
  tally::ClientOptions options;
  options.default_timeout = inv->timeout;
  if (!inv->token_file.empty()) {
    std::string error;
    if (!ReadToken(inv->token_file, &options.bearer_token, &error)) {
      std::cerr << "tallyctl: " << error << "\n";
      return kExitUsage;
    }
  }
  if (!inv->ca_file.empty()) {
    std::string ca, cert, key;
    for (auto [path, out, flag] : {std::tuple{&inv->ca_file, &ca, "--ca_file"},
                                   std::tuple{&inv->cert_file, &cert, "--cert_file"},
                                   std::tuple{&inv->key_file, &key, "--key_file"}}) {
      if (path->empty()) continue;
      absl::StatusOr<std::string> pem = tally::common::ReadPem(*path, flag);
      if (!pem.ok()) {
        std::cerr << "tallyctl: " << pem.status().message() << "\n";
        return kExitUsage;
      }
      *out = *std::move(pem);
    }
    options.channel_factory = tally::TlsChannelFactory(ca, cert, key);
  }
  absl::StatusOr<std::unique_ptr<tally::Client>> client =
      tally::Client::Create(inv->routers, std::move(options));
  if (!client.ok()) {
    std::cerr << "tallyctl: " << client.status().message() << "\n";
    return kExitUsage;
  }
  return RunCommand(*inv, **client, std::cout, std::cerr);
}
