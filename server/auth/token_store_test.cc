#include "server/auth/token_store.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/authorizer.h"
#include "tests/testing/temp_dir.h"

namespace tally::auth {
namespace {

using ::testing::HasSubstr;

TEST(Sha256HexTest, MatchesTheStandardVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

class TokenStoreTest : public ::testing::Test {
 protected:
  void Write(const std::string& text) {
    std::ofstream out(path_, std::ios::trunc);
    out << text;
  }
  test::TempDir dir_;
  std::string path_ = dir_.path() + "/tokens";
};

TEST_F(TokenStoreTest, LooksUpPrincipalsAndRolesByTokenHash) {
  Write("# agents\n" + Sha256Hex("t-agent") + " agent-1 agent\n\n" + Sha256Hex("t-ops") +
        "  ops  reader,admin  # both\n");
  auto store = TokenStore::Load(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->size(), 2u);
  auto agent = (*store)->Lookup("t-agent");
  ASSERT_TRUE(agent.has_value());
  EXPECT_EQ(agent->name, "agent-1");
  EXPECT_TRUE(agent->Has(kAgent));
  EXPECT_FALSE(agent->Has(kReader));
  auto ops = (*store)->Lookup("t-ops");
  ASSERT_TRUE(ops.has_value());
  EXPECT_TRUE(ops->Has(kReader) && ops->Has(kAdmin) && !ops->Has(kAgent));
  EXPECT_FALSE((*store)->Lookup("t-unknown").has_value());
  EXPECT_FALSE((*store)->Lookup(Sha256Hex("t-agent")).has_value()) << "the hash is not a token";
}

TEST_F(TokenStoreTest, MalformedLinesAreNamed) {
  for (const auto& [text, message] : std::vector<std::pair<std::string, std::string>>{
           {"abc agent-1 agent\n", "line 1: the first field must be the 64 hex digits"},
           {"\n" + Sha256Hex("x") + " a agent extra\n", "line 2: want <sha256 hex>"},
           {Sha256Hex("x") + " a root\n", "line 1: unknown role \"root\""},
           {Sha256Hex("x") + " a agent\n" + Sha256Hex("x") + " b agent\n",
            "line 2: the token appears twice"}}) {
    Write(text);
    auto store = TokenStore::Load(path_);
    EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(store.status().message(), HasSubstr(message));
  }
}

TEST_F(TokenStoreTest, ReloadSwapsInNewTokensAndKeepsOldOnesOnError) {
  Write(Sha256Hex("old") + " a agent\n");
  auto store = TokenStore::Load(path_);
  ASSERT_TRUE(store.ok());
  Write(Sha256Hex("new") + " b reader\n");
  ASSERT_TRUE((*store)->Reload().ok());
  EXPECT_FALSE((*store)->Lookup("old").has_value());
  EXPECT_TRUE((*store)->Lookup("new").has_value());
  Write("garbage\n");
  EXPECT_FALSE((*store)->Reload().ok());
  EXPECT_TRUE((*store)->Lookup("new").has_value()) << "a bad file must not lock everyone out";
}

TEST_F(TokenStoreTest, AuthorizerChecksTokenAndRole) {
  Write(Sha256Hex("t-reader") + " r reader\n");
  auto store = TokenStore::Load(path_);
  ASSERT_TRUE(store.ok());
  Authorizer auth(std::move(*store));
  std::multimap<grpc::string_ref, grpc::string_ref> metadata;
  EXPECT_EQ(auth.Authorize(metadata, kReader, "GetState").status().code(),
            absl::StatusCode::kUnauthenticated);
  const std::string bearer = "Bearer t-reader", wrong = "Bearer nope", basic = "Basic x";
  metadata.emplace("authorization", wrong);
  EXPECT_EQ(auth.Authorize(metadata, kReader, "GetState").status().code(),
            absl::StatusCode::kUnauthenticated);
  metadata.clear();
  metadata.emplace("authorization", basic);
  EXPECT_EQ(auth.Authorize(metadata, kReader, "GetState").status().code(),
            absl::StatusCode::kUnauthenticated);
  metadata.clear();
  metadata.emplace("authorization", bearer);
  EXPECT_TRUE(auth.Authorize(metadata, kReader, "GetState").ok());
  auto denied = auth.Authorize(metadata, kAdmin, "SetState");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(), HasSubstr("lacks the role admin that SetState needs"));
}

}  // namespace
}  // namespace tally::auth
