#ifndef TALLY_CLIENT_TALLYCTL_COMMAND_LINE_H_
#define TALLY_CLIENT_TALLYCTL_COMMAND_LINE_H_

// tallyctl's command line: the subcommands, their arguments and flags, and the global flags, as
// one table from which both the parser and the --help texts are made (so help cannot drift from
// what is accepted).
//
//   tallyctl [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]
//
// Flags may come before or after the command (a command's own flags only after it), as
// --name=value, --name value, or -o value for the one-letter forms; boolean flags as --name or
// --name=true|false. "--" ends the flags. Values are checked here (integers, durations, key=value
// pairs), so every usage error is found before anything is sent.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tally::tallyctl {

enum class FlagType { kBool, kString, kInt, kDuration, kKeyValue };

struct FlagSpec {
  std::string name;
  char short_name = 0;  // 0: none
  FlagType type = FlagType::kString;
  std::string value_name;          // shown in help, e.g. TOKEN
  std::string default_value = "";  // the value when absent; "" means none
  std::string help;
  bool repeated = false;  // may be given more than once
};

struct CommandSpec {
  std::string name;
  std::string usage_args;  // e.g. "SCENARIO KEY [STATE]"
  int min_args = 0;
  int max_args = 0;
  std::string summary;      // one line
  std::string description;  // what it does and prints, for its --help
  std::vector<FlagSpec> flags;
};

// The subcommands, in the order help lists them.
const std::vector<CommandSpec>& Commands();
// Flags every command accepts.
const std::vector<FlagSpec>& GlobalFlags();

enum class OutputFormat { kTable, kJson };

// A parsed command line.
struct Invocation {
  // The command; empty only with `help` (tallyctl --help).
  std::string command;
  // --help, -h, or "tallyctl help [COMMAND]": print help for `command` (or all) and exit 0.
  bool help = false;
  std::vector<std::string> args;  // positional arguments after the command

  // Global settings, resolved (defaults and environment applied).
  std::vector<std::string> routers;
  std::string token_file;
  std::string ca_file, cert_file, key_file;  // TLS; empty ca_file: plaintext
  absl::Duration timeout;
  OutputFormat output = OutputFormat::kTable;

  // The command's flags as given, checked against their types; absent flags are not here.
  std::map<std::string, std::vector<std::string>> flags;

  // Typed access to the command's flags; the spec's default when absent. Only for flags the
  // command declares with that type (checked with assert).
  std::string String(const std::string& name) const;
  int64_t Int(const std::string& name) const;
  bool Bool(const std::string& name) const;
  absl::Duration Duration(const std::string& name) const;  // ZeroDuration if absent, no default
  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  std::vector<std::pair<std::string, std::string>> KeyValues(const std::string& name) const;
};

// Parses `args` (argv without argv[0]). `tally_routers_env` is the value of $TALLY_ROUTERS
// (empty if unset), the default of --routers. INVALID_ARGUMENT with a message for the user on a
// usage error (unknown command or flag, bad value, wrong number of arguments).
absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args,
                                            const std::string& tally_routers_env);

// tallyctl --help: commands, global flags, exit codes.
std::string GlobalHelp();
// tallyctl COMMAND --help: its usage, description, flags, global flags, exit codes.
std::string CommandHelp(const std::string& command);

// The exit codes, documented in the help texts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitNotFound = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnavailable = 3;
inline constexpr int kExitOther = 4;

}  // namespace tally::tallyctl

#endif  // TALLY_CLIENT_TALLYCTL_COMMAND_LINE_H_
