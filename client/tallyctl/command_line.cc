#include "client/tallyctl/command_line.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tally::tallyctl {
namespace {

constexpr char kDefaultRouters[] = "127.0.0.1:7070";

const char kExitCodes[] =
    "Exit codes:\n"
    "  0  success\n"
    "  1  not found (no such object or scenario)\n"
    "  2  usage error: bad command, arguments or flags, or a request the router refused as\n"
    "     invalid (INVALID_ARGUMENT)\n"
    "  3  unavailable: no router answered in time (UNAVAILABLE, DEADLINE_EXCEEDED); retrying\n"
    "     later may succeed\n"
    "  4  any other error (e.g. FAILED_PRECONDITION, PERMISSION_DENIED, OUT_OF_RANGE)\n";

const FlagSpec kMaxLag = {"max_lag",
                          0,
                          FlagType::kInt,
                          "N",
                          "0",
                          "0: only the partition's active owner answers; N > 0: a standby at\n"
                          "most N records behind may answer"};

const FlagSpec kReason = {"reason", 0,  FlagType::kString,
                          "TEXT",   "", "why, recorded with the write (at most 1024 bytes)"};

const std::vector<CommandSpec>& AllCommands() {
  static const auto* commands = new std::vector<CommandSpec>{
      {"get",
       "SCENARIO KEY",
       2,
       2,
       "print the computed state of one object",
       "Prints the state of object KEY in SCENARIO: its value, version, update time, pin, tally\n"
       "and live votes, and the node that served it. Exit code 1 if the object has no state.\n"
       "-o json prints the GetStateResponse as one JSON object.",
       {{"min_token", 0, FlagType::kString, "TOKEN", "",
         "a token printed by report, set or purge: wait (within --timeout) until that write\n"
         "is applied, so the answer reflects it"},
        kMaxLag}},
      {"list",
       "SCENARIO [PREFIX]",
       1,
       2,
       "print the states of all objects (under a prefix), in key order",
       "Lists every state of SCENARIO whose key starts with PREFIX (all if absent), in key\n"
       "order, fetching pages of --page_size as it goes. The table is printed once the listing\n"
       "is complete; -o json prints one ObjectState JSON object per line as pages arrive.",
       {{"page_size", 0, FlagType::kInt, "N", "100", "states per ListState call (1..1000)"},
        kMaxLag,
        {"limit", 0, FlagType::kInt, "N", "0", "stop after N states; 0: no limit"}}},
      {"watch",
       "SCENARIO [KEY]",
       1,
       2,
       "print changes of one object, of objects under a prefix, or of all objects",
       "Follows changes of object KEY, of every object under --prefix, or (neither given) of\n"
       "every object of SCENARIO, until interrupted, --count events or --for. A broken\n"
       "connection is resumed on the next router from the last event's resume token, with no\n"
       "gap and no duplicate. Table: one line per event (progress events are not shown).\n"
       "-o json: one WatchStateResponse JSON object per line, progress included.\n"
       "The watch ends with exit code 4 on OUT_OF_RANGE (the token is too old, or the\n"
       "connection broke during the --initial snapshot: watch again with --initial) and on\n"
       "RESOURCE_EXHAUSTED (the reader was too slow: watch again with --resume_token); the\n"
       "last resume token is printed on stderr.",
       {{"prefix", 0, FlagType::kString, "PREFIX", "", "watch every object under PREFIX"},
        {"initial", 0, FlagType::kBool, "", "false",
         "first print the current state of every watched object, then changes"},
        {"resume_token", 0, FlagType::kString, "TOKEN", "",
         "continue after the event that carried TOKEN"},
        {"count", 0, FlagType::kInt, "N", "0",
         "exit (0) after N events, progress not counted; 0: no limit"},
        {"for", 0, FlagType::kDuration, "DURATION", "",
         "exit (0) after DURATION (e.g. 30s); absent: no limit"}}},
      {"report",
       "SCENARIO KEY STATE",
       3,
       3,
       "report STATE for object KEY, as an agent would",
       "Sends one report (ReportState) and prints its write token once it is durably in Kafka;\n"
       "pass the token to get --min_token to read your write.",
       {{"agent", 0, FlagType::kString, "ID", "tallyctl", "the reporting agent's id"},
        {"ttl", 0, FlagType::kDuration, "DURATION", "",
         "how long the report counts (1ms..168h); absent: the scenario's default"},
        {"attr", 0, FlagType::kKeyValue, "KEY=VALUE", "", "an attribute of the report", true}}},
      {"set",
       "SCENARIO KEY [STATE]",
       2,
       3,
       "set (or pin) an object's state as an operator",
       "With STATE and --pin: pins STATE; the agents' votes keep being recorded but do not\n"
       "change it until it is unpinned. With STATE alone: sets STATE until the next update\n"
       "recomputes it from the votes. Without STATE (and without --pin): removes a pin and lets\n"
       "the votes decide again. Prints the write token.",
       {{"pin", 0, FlagType::kBool, "", "false", "pin STATE until unpinned"}, kReason}},
      {"purge",
       "SCENARIO KEY",
       2,
       2,
       "remove an object, its votes and its pin",
       "Removes object KEY of SCENARIO with its votes and pin; the next report starts it\n"
       "afresh. Prints the write token.",
       {kReason}},
      {"describe",
       "",
       0,
       0,
       "print the cluster: nodes, partitions, owners, standbys, lag",
       "Prints the nodes of the cluster and, per scenario and partition, its status, active\n"
       "node, standbys, applied and end offsets and lag. -o json prints the\n"
       "DescribeClusterResponse as one JSON object.",
       {}},
  };
  return *commands;
}

const std::vector<FlagSpec>& AllGlobalFlags() {
  static const auto* flags = new std::vector<FlagSpec>{
      {"routers", 0, FlagType::kString, "HOST:PORT,...", "",
       "the routers to call, comma-separated; a router that is unavailable is skipped for the\n"
       "next (default: $TALLY_ROUTERS, else 127.0.0.1:7070)"},
      {"token_file", 0, FlagType::kString, "PATH", "",
       "send the bearer token in PATH (whitespace trimmed) with every call"},
      {"ca_file", 0, FlagType::kString, "PATH", "",
       "use TLS, verifying the routers' certificates against the PEM CA bundle in PATH"},
      {"cert_file", 0, FlagType::kString, "PATH", "",
       "with --ca_file: present this PEM certificate (mutual TLS); needs --key_file"},
      {"key_file", 0, FlagType::kString, "PATH", "", "the PEM private key of --cert_file"},
      {"timeout", 0, FlagType::kDuration, "DURATION", "10s",
       "deadline of each call, retries included (not used by watch; see watch --for)"},
      {"output", 'o', FlagType::kString, "table|json", "table",
       "table: aligned text for people; json: protobuf JSON, one object per line"},
      {"help", 'h', FlagType::kBool, "", "", "print help (tallyctl COMMAND --help for a command)"},
  };
  return *flags;
}

const CommandSpec* FindCommand(const std::string& name) {
  for (const CommandSpec& c : AllCommands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const FlagSpec* FindFlag(const std::vector<FlagSpec>& flags, const std::string& name,
                         char short_name) {
  for (const FlagSpec& f : flags) {
    if ((!name.empty() && f.name == name) || (short_name != 0 && f.short_name == short_name)) {
      return &f;
    }
  }
  return nullptr;
}

absl::Status Usage(absl::string_view message) {
  return absl::InvalidArgumentError(std::string(message));
}

absl::Status CheckValue(const FlagSpec& flag, const std::string& value) {
  switch (flag.type) {
    case FlagType::kBool:
      if (value != "true" && value != "false") {
        return Usage(absl::StrCat("--", flag.name, ": \"", value, "\" is not true or false"));
      }
      return absl::OkStatus();
    case FlagType::kInt: {
      int64_t n;
      if (!absl::SimpleAtoi(value, &n) || n < 0) {
        return Usage(
            absl::StrCat("--", flag.name, ": \"", value, "\" is not a non-negative integer"));
      }
      return absl::OkStatus();
    }
    case FlagType::kDuration: {
      absl::Duration d;
      if (!absl::ParseDuration(value, &d) || d <= absl::ZeroDuration() ||
          d == absl::InfiniteDuration()) {
        return Usage(absl::StrCat("--", flag.name, ": \"", value,
                                  "\" is not a positive duration (e.g. 500ms, 10s, 2m)"));
      }
      return absl::OkStatus();
    }
    case FlagType::kKeyValue:
      if (value.find('=') == std::string::npos || value[0] == '=') {
        return Usage(absl::StrCat("--", flag.name, ": \"", value, "\" is not KEY=VALUE"));
      }
      return absl::OkStatus();
    case FlagType::kString:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

const FlagSpec& Spec(const std::string& command, const std::string& name, FlagType type) {
  const CommandSpec* c = FindCommand(command);
  assert(c != nullptr);
  const FlagSpec* f = FindFlag(c->flags, name, 0);
  assert(f != nullptr && f->type == type);
  (void)type;
  return *f;
}

// The value of the command's flag `name` (declared with `type`): the last one given, else the
// spec's default.
const std::string& Value(const Invocation& inv, const std::string& name, FlagType type) {
  const FlagSpec& f = Spec(inv.command, name, type);
  auto it = inv.flags.find(name);
  return it == inv.flags.end() ? f.default_value : it->second.back();
}

// Checks what the flag table cannot say: combinations of arguments and flags.
absl::Status CheckCombinations(const Invocation& inv) {
  if (inv.command == "list" && inv.Has("page_size") &&
      (inv.Int("page_size") < 1 || inv.Int("page_size") > 1000)) {
    return Usage("--page_size: must be in 1..1000");
  }
  if (inv.command == "watch" && inv.args.size() == 2 && inv.Has("prefix")) {
    return Usage("watch: give either KEY or --prefix, not both");
  }
  if (inv.command == "set" && inv.args.size() == 2 && inv.Bool("pin")) {
    return Usage("set: --pin needs the STATE to pin");
  }
  return absl::OkStatus();
}

std::string FlagHelp(const std::vector<FlagSpec>& flags) {
  std::string out;
  for (const FlagSpec& f : flags) {
    std::string left = "  ";
    if (f.short_name != 0) absl::StrAppend(&left, "-", std::string(1, f.short_name), ", ");
    absl::StrAppend(&left, "--", f.name);
    if (f.type != FlagType::kBool) absl::StrAppend(&left, "=", f.value_name);
    std::string help = f.help;
    if (!f.default_value.empty() && f.type != FlagType::kBool) {
      absl::StrAppend(&help, "\ndefault: ", f.default_value);
    }
    if (f.repeated) absl::StrAppend(&help, "\nmay be given more than once");
    absl::StrAppend(&out, left, "\n");
    for (absl::string_view line : absl::StrSplit(help, '\n')) {
      absl::StrAppend(&out, "        ", line, "\n");
    }
  }
  return out;
}

}  // namespace

const std::vector<CommandSpec>& Commands() { return AllCommands(); }
const std::vector<FlagSpec>& GlobalFlags() { return AllGlobalFlags(); }

std::string Invocation::String(const std::string& name) const {
  return Value(*this, name, FlagType::kString);
}

int64_t Invocation::Int(const std::string& name) const {
  int64_t n = 0;
  bool ok = absl::SimpleAtoi(Value(*this, name, FlagType::kInt), &n);
  assert(ok);
  (void)ok;
  return n;
}

bool Invocation::Bool(const std::string& name) const {
  return Value(*this, name, FlagType::kBool) == "true";
}

absl::Duration Invocation::Duration(const std::string& name) const {
  const std::string& value = Value(*this, name, FlagType::kDuration);
  absl::Duration d = absl::ZeroDuration();
  if (!value.empty()) absl::ParseDuration(value, &d);
  return d;
}

std::vector<std::pair<std::string, std::string>> Invocation::KeyValues(
    const std::string& name) const {
  Spec(command, name, FlagType::kKeyValue);
  std::vector<std::pair<std::string, std::string>> out;
  auto it = flags.find(name);
  if (it == flags.end()) return out;
  for (const std::string& v : it->second) {
    size_t eq = v.find('=');
    out.emplace_back(v.substr(0, eq), v.substr(eq + 1));
  }
  return out;
}

absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args,
                                            const std::string& tally_routers_env) {
  Invocation inv;
  std::map<std::string, std::string> globals;  // last value wins
  const CommandSpec* command = nullptr;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool is_flag = !flags_ended && arg.size() > 1 && arg[0] == '-';
    if (!is_flag) {
      if (command == nullptr) {
        if (arg == "help") {  // tallyctl help [COMMAND]
          inv.help = true;
          if (i + 1 < args.size()) {
            command = FindCommand(args[i + 1]);
            if (command == nullptr)
              return Usage(
                  absl::StrCat("unknown command \"", args[i + 1], "\"; see tallyctl --help"));
            inv.command = command->name;
          }
          return inv;
        }
        command = FindCommand(arg);
        if (command == nullptr) {
          return Usage(absl::StrCat("unknown command \"", arg, "\"; see tallyctl --help"));
        }
        inv.command = command->name;
      } else {
        inv.args.push_back(arg);
      }
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    // --name[=value], -n[=value]
    std::string name, value;
    bool has_value = false;
    char short_name = 0;
    absl::string_view body = arg;
    if (absl::ConsumePrefix(&body, "--")) {
      size_t eq = body.find('=');
      name = std::string(body.substr(0, eq));
      if (eq != absl::string_view::npos) {
        value = std::string(body.substr(eq + 1));
        has_value = true;
      }
    } else {
      body.remove_prefix(1);
      if (body.size() > 1 && body[1] != '=') {
        return Usage(absl::StrCat("unknown flag ", arg, "; see tallyctl --help"));
      }
      short_name = body[0];
      if (body.size() > 1) {
        value = std::string(body.substr(2));
        has_value = true;
      }
    }
    const FlagSpec* flag = FindFlag(GlobalFlags(), name, short_name);
    const bool global = flag != nullptr;
    if (flag == nullptr && command != nullptr) flag = FindFlag(command->flags, name, short_name);
    if (flag == nullptr) {
      const std::string shown =
          short_name != 0 ? absl::StrCat("-", std::string(1, short_name)) : "--" + name;
      return Usage(absl::StrCat(
          "unknown flag ", shown,
          command == nullptr
              ? "; see tallyctl --help"
              : absl::StrCat(" for ", command->name, "; see tallyctl ", command->name, " --help")));
    }
    if (flag->type == FlagType::kBool) {
      if (!has_value) value = "true";
    } else if (!has_value) {
      if (i + 1 >= args.size()) return Usage(absl::StrCat("--", flag->name, " needs a value"));
      value = args[++i];
    }
    if (absl::Status s = CheckValue(*flag, value); !s.ok()) return s;
    if (flag->name == "help") {
      inv.help = value == "true";
      continue;
    }
    if (global) {
      globals[flag->name] = value;
    } else {
      if (!flag->repeated && inv.flags.count(flag->name)) {
        return Usage(absl::StrCat("--", flag->name, " given more than once"));
      }
      inv.flags[flag->name].push_back(value);
    }
  }
  if (inv.help) return inv;
  if (command == nullptr) return Usage("no command given; see tallyctl --help");
  const int n = static_cast<int>(inv.args.size());
  if (n < command->min_args || n > command->max_args) {
    return Usage(absl::StrCat(command->name, ": expected ",
                              command->usage_args.empty() ? "no arguments" : command->usage_args,
                              ", got ", n, n == 1 ? " argument" : " arguments", "; see tallyctl ",
                              command->name, " --help"));
  }
  for (const std::string& a : inv.args) {
    if (a.empty()) return Usage(absl::StrCat(command->name, ": arguments must not be empty"));
  }

  // A global flag's value: the last one given, else the spec's default (one place for both).
  auto global = [&](const std::string& name) {
    auto it = globals.find(name);
    return it != globals.end() ? it->second : FindFlag(GlobalFlags(), name, 0)->default_value;
  };
  std::string routers = globals.count("routers")     ? globals["routers"]
                        : !tally_routers_env.empty() ? tally_routers_env
                                                     : kDefaultRouters;
  for (absl::string_view r : absl::StrSplit(routers, ',', absl::SkipWhitespace())) {
    inv.routers.emplace_back(absl::StripAsciiWhitespace(r));
  }
  if (inv.routers.empty()) return Usage("--routers: no router given");
  inv.token_file = global("token_file");
  inv.ca_file = global("ca_file");
  inv.cert_file = global("cert_file");
  inv.key_file = global("key_file");
  if (inv.cert_file.empty() != inv.key_file.empty()) {
    return Usage("--cert_file and --key_file go together");
  }
  if (!inv.cert_file.empty() && inv.ca_file.empty()) {
    return Usage("--cert_file needs --ca_file (mutual TLS is TLS)");
  }
  absl::ParseDuration(global("timeout"), &inv.timeout);
  const std::string output = global("output");
  if (output == "table") {
    inv.output = OutputFormat::kTable;
  } else if (output == "json") {
    inv.output = OutputFormat::kJson;
  } else {
    return Usage(absl::StrCat("--output: \"", output, "\" is not table or json"));
  }
  if (absl::Status s = CheckCombinations(inv); !s.ok()) return s;
  return inv;
}

std::string GlobalHelp() {
  std::string out =
      "tallyctl: read, watch and operate Tally's shared state from the command line.\n\n"
      "Usage: tallyctl [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]\n\nCommands:\n";
  size_t width = 0;
  for (const CommandSpec& c : Commands()) width = std::max(width, c.name.size());
  for (const CommandSpec& c : Commands()) {
    absl::StrAppend(&out, "  ", c.name, std::string(width - c.name.size() + 2, ' '), c.summary,
                    "\n");
  }
  absl::StrAppend(&out, "  help", std::string(width - 4 + 2, ' '),
                  "print help for a command (same as tallyctl COMMAND --help)\n");
  absl::StrAppend(&out, "\nGlobal flags (before or after the command):\n", FlagHelp(GlobalFlags()),
                  "\nFlags take --name=value or --name value; booleans --name or "
                  "--name=true|false.\n\n",
                  kExitCodes);
  return out;
}

std::string CommandHelp(const std::string& name) {
  const CommandSpec* c = FindCommand(name);
  if (c == nullptr) return GlobalHelp();
  std::string out = absl::StrCat("tallyctl ", c->name, ": ", c->summary, "\n\nUsage: tallyctl ",
                                 c->name, c->usage_args.empty() ? "" : " ", c->usage_args,
                                 c->flags.empty() ? "" : " [FLAGS]", "\n\n", c->description, "\n");
  if (!c->flags.empty()) absl::StrAppend(&out, "\nFlags:\n", FlagHelp(c->flags));
  absl::StrAppend(&out, "\nGlobal flags:\n", FlagHelp(GlobalFlags()), "\n", kExitCodes);
  return out;
}

}  // namespace tally::tallyctl
