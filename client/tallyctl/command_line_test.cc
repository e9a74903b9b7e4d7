#include "client/tallyctl/command_line.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/tallyctl/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::tallyctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

absl::StatusOr<Invocation> Parse(const std::string& line, const std::string& env = "") {
  std::vector<std::string> args = absl::StrSplit(line, ' ', absl::SkipEmpty());
  return ParseCommandLine(args, env);
}

std::string UsageError(const std::string& line) {
  absl::StatusOr<Invocation> inv = Parse(line);
  EXPECT_EQ(inv.status().code(), absl::StatusCode::kInvalidArgument) << line;
  return std::string(inv.status().message());
}

TEST(CommandLineTest, GlobalFlagsGoBeforeOrAfterTheCommandInEveryForm) {
  absl::StatusOr<Invocation> inv =
      Parse("--routers=a:1,b:2 get demo site-1 -o json --timeout 3s --min_token w1.0.5");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->command, "get");
  EXPECT_THAT(inv->args, ElementsAre("demo", "site-1"));
  EXPECT_THAT(inv->routers, ElementsAre("a:1", "b:2"));
  EXPECT_EQ(inv->output, OutputFormat::kJson);
  EXPECT_EQ(inv->timeout, absl::Seconds(3));
  EXPECT_EQ(inv->String("min_token"), "w1.0.5");
  EXPECT_EQ(inv->Int("max_lag"), 0);

  inv = Parse("get -o=table demo k --output json");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->output, OutputFormat::kJson);  // the last one wins
}

TEST(CommandLineTest, RoutersComeFromTheFlagElseTheEnvironmentElseTheDefault) {
  EXPECT_THAT(Parse("describe")->routers, ElementsAre("127.0.0.1:7070"));
  EXPECT_THAT(Parse("describe", "x:1, y:2")->routers, ElementsAre("x:1", "y:2"));
  EXPECT_THAT(Parse("describe --routers=z:3", "x:1")->routers, ElementsAre("z:3"));
  EXPECT_EQ(Parse("describe")->timeout, absl::Seconds(10));
  EXPECT_EQ(Parse("describe")->output, OutputFormat::kTable);
}

TEST(CommandLineTest, DefaultsComeFromTheFlagTable) {
  absl::StatusOr<Invocation> inv = Parse("report demo site-1 attack");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->String("agent"), "tallyctl");
  EXPECT_FALSE(inv->Has("ttl"));
  EXPECT_TRUE(inv->KeyValues("attr").empty());
  inv = Parse("list demo");
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(inv->Int("page_size"), 100);
  EXPECT_EQ(inv->Int("limit"), 0);
  inv = Parse("watch demo");
  ASSERT_TRUE(inv.ok());
  EXPECT_FALSE(inv->Bool("initial"));
  EXPECT_EQ(inv->Duration("for"), absl::ZeroDuration());
}

TEST(CommandLineTest, CommandFlagsAreTyped) {
  absl::StatusOr<Invocation> inv =
      Parse("report demo k s --agent a1 --ttl=90s --attr=region=eu --attr note=a=b");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->String("agent"), "a1");
  EXPECT_EQ(inv->Duration("ttl"), absl::Seconds(90));
  EXPECT_THAT(inv->KeyValues("attr"), ElementsAre(Pair("region", "eu"), Pair("note", "a=b")));
  inv = Parse("set demo k attack --pin --reason=incident");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_TRUE(inv->Bool("pin"));
  EXPECT_EQ(inv->String("reason"), "incident");
  inv = Parse("set demo k --pin=false");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_FALSE(inv->Bool("pin"));
  inv = Parse("watch demo --prefix site- --initial --count=3 --for 2m --resume_token t");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->String("prefix"), "site-");
  EXPECT_TRUE(inv->Bool("initial"));
  EXPECT_EQ(inv->Int("count"), 3);
  EXPECT_EQ(inv->Duration("for"), absl::Minutes(2));
  EXPECT_EQ(inv->String("resume_token"), "t");
}

TEST(CommandLineTest, DoubleDashEndsFlagsSoArgumentsMayStartWithADash) {
  absl::StatusOr<Invocation> inv = Parse("report demo -- -neg- -1");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_THAT(inv->args, ElementsAre("demo", "-neg-", "-1"));
}

TEST(CommandLineTest, UsageErrorsNameWhatIsWrong) {
  EXPECT_THAT(UsageError(""), HasSubstr("no command given"));
  EXPECT_THAT(UsageError("fetch demo"), HasSubstr("unknown command \"fetch\""));
  EXPECT_THAT(UsageError("get demo"), HasSubstr("get: expected SCENARIO KEY, got 1 argument"));
  EXPECT_THAT(UsageError("describe extra"), HasSubstr("expected no arguments, got 1"));
  EXPECT_THAT(UsageError("get demo k --bogus"), HasSubstr("unknown flag --bogus for get"));
  // A command's flag is not a global one, nor another command's.
  EXPECT_THAT(UsageError("--min_token=t get demo k"), HasSubstr("unknown flag --min_token"));
  EXPECT_THAT(UsageError("list demo --min_token=t"),
              HasSubstr("unknown flag --min_token for list"));
  EXPECT_THAT(UsageError("get demo k --max_lag=-1"), HasSubstr("--max_lag: \"-1\" is not"));
  EXPECT_THAT(UsageError("get demo k --max_lag=lots"), HasSubstr("not a non-negative integer"));
  EXPECT_THAT(UsageError("describe --timeout=soon"), HasSubstr("--timeout: \"soon\""));
  EXPECT_THAT(UsageError("describe --timeout=0s"), HasSubstr("not a positive duration"));
  EXPECT_THAT(UsageError("describe -o yaml"), HasSubstr("--output: \"yaml\""));
  EXPECT_THAT(UsageError("describe --timeout"), HasSubstr("--timeout needs a value"));
  EXPECT_THAT(UsageError("report demo k s --attr=novalue"), HasSubstr("is not KEY=VALUE"));
  EXPECT_THAT(UsageError("set demo k s --pin=maybe"), HasSubstr("is not true or false"));
  EXPECT_THAT(UsageError("set demo k --pin"), HasSubstr("--pin needs the STATE"));
  EXPECT_THAT(UsageError("watch demo k --prefix=p"), HasSubstr("either KEY or --prefix"));
  EXPECT_THAT(UsageError("list demo --page_size=1001"), HasSubstr("--page_size: must be in"));
  EXPECT_THAT(UsageError("get demo k --min_token=a --min_token=b"),
              HasSubstr("--min_token given more than once"));
  EXPECT_THAT(UsageError("describe --routers=,"), HasSubstr("--routers: no router given"));
  EXPECT_THAT(UsageError("describe -x"), HasSubstr("unknown flag -x"));
}

TEST(CommandLineTest, HelpInEveryFormNeedsNoValidArguments) {
  for (const char* line : {"--help", "-h", "help"}) {
    absl::StatusOr<Invocation> inv = Parse(line);
    ASSERT_TRUE(inv.ok()) << line;
    EXPECT_TRUE(inv->help);
    EXPECT_EQ(inv->command, "");
  }
  for (const char* line : {"get --help", "get -h", "help get", "get demo --help"}) {
    absl::StatusOr<Invocation> inv = Parse(line);
    ASSERT_TRUE(inv.ok()) << line;
    EXPECT_TRUE(inv->help);
    EXPECT_EQ(inv->command, "get");
  }
  EXPECT_THAT(UsageError("help nope"), HasSubstr("unknown command \"nope\""));
}

// The help is made from the same table as the parser, so every flag it lists is accepted and
// every flag accepted is listed; and the exit codes it documents are those ExitCodeFor returns.
TEST(CommandLineTest, HelpListsExactlyTheAcceptedFlagsAndTheRealExitCodes) {
  std::string global = GlobalHelp();
  for (const CommandSpec& c : Commands()) {
    EXPECT_THAT(global, HasSubstr("  " + c.name + "  ")) << c.name;
    std::string help = CommandHelp(c.name);
    EXPECT_THAT(help, HasSubstr("Usage: tallyctl " + c.name)) << c.name;
    for (const FlagSpec& f : c.flags) EXPECT_THAT(help, HasSubstr("--" + f.name)) << c.name;
    for (const FlagSpec& f : GlobalFlags()) EXPECT_THAT(help, HasSubstr("--" + f.name));
    EXPECT_THAT(help, HasSubstr("Exit codes:"));
  }
  for (const std::string& text : {global, CommandHelp("get")}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat("  ", kExitNotFound, "  not found")));
    EXPECT_THAT(text, HasSubstr(absl::StrCat("  ", kExitUsage, "  usage error")));
    EXPECT_THAT(text, HasSubstr(absl::StrCat("  ", kExitUnavailable, "  unavailable")));
    EXPECT_THAT(text, HasSubstr(absl::StrCat("  ", kExitOther, "  any other error")));
  }
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), kExitOk);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("")), 1);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("")), 2);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("")), 3);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("")), 3);
  EXPECT_EQ(ExitCodeFor(absl::FailedPreconditionError("")), 4);
  EXPECT_EQ(ExitCodeFor(absl::OutOfRangeError("")), 4);
  // Every documented flag example parses.
  EXPECT_TRUE(Parse("list demo site- --page_size=7 --limit=3 --max_lag=5").ok());
  EXPECT_TRUE(Parse("purge demo k --reason=gone --token_file=/x").ok());
}

}  // namespace
}  // namespace tally::tallyctl
