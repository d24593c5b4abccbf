// SCRAM-SHA-256 and MD5 computations. The integration tests prove them
// against PostgreSQL itself; these pin the edge cases.
#include <gtest/gtest.h>

#include "common/strings.h"
#include "protocol/md5_auth.h"
#include "protocol/scram.h"

namespace pgshift::protocol {
namespace {

TEST(Md5, MatchesPostgresStoredForm) {
  // SELECT 'md5' || md5('secret' || 'app') in PostgreSQL.
  EXPECT_EQ(Md5StoredPassword("secret", "app"), "md56a422f785c9e20873908ce25d1736ae2");
  EXPECT_EQ(Md5StoredPassword("md56a422f785c9e20873908ce25d1736ae2", "app"),
            "md56a422f785c9e20873908ce25d1736ae2");
  EXPECT_TRUE(IsMd5StoredPassword("md56a422f785c9e20873908ce25d1736ae2"));
  EXPECT_FALSE(IsMd5StoredPassword("md5-not-a-hash"));
  std::string r1 = Md5SaltedResponse(Md5StoredPassword("secret", "app"), "abcd");
  EXPECT_EQ(r1.size(), 35u);
  EXPECT_NE(r1, Md5SaltedResponse(Md5StoredPassword("secret", "app"), "abce"));
}

TEST(Scram, ClientAndServerAgreeOnTheRightPassword) {
  ScramServer server(ScramVerifier::FromPassword("pencil"));
  ScramClient client("pencil");
  auto server_first = server.HandleClientFirst(client.ClientFirstMessage());
  ASSERT_TRUE(server_first.ok()) << server_first.status();
  auto client_final = client.HandleServerFirst(*server_first);
  ASSERT_TRUE(client_final.ok()) << client_final.status();
  auto server_final = server.HandleClientFinal(*client_final);
  ASSERT_TRUE(server_final.ok()) << server_final.status();
  EXPECT_TRUE(client.VerifyServerFinal(*server_final).ok());
}

TEST(Scram, WrongPasswordIsPermissionDenied) {
  ScramServer server(ScramVerifier::FromPassword("pencil"));
  ScramClient client("crayon");
  auto client_final = client.HandleServerFirst(*server.HandleClientFirst(client.ClientFirstMessage()));
  auto server_final = server.HandleClientFinal(*client_final);
  EXPECT_TRUE(absl::IsPermissionDenied(server_final.status()));
}

TEST(Scram, DoomedServerFailsEvenTheRightProof) {
  ScramServer server = ScramServer::Doomed("nobody");
  ScramClient client("anything");
  auto client_final = client.HandleServerFirst(*server.HandleClientFirst(client.ClientFirstMessage()));
  EXPECT_TRUE(absl::IsPermissionDenied(server.HandleClientFinal(*client_final).status()));
}

// The salt and iteration count an unknown user gets: the same on every
// attempt (as a real user's stored ones are), different per name, never
// derived from the client's nonce.
TEST(Scram, AnUnknownUsersSaltIsStableLikeARealOne) {
  auto salt_and_iterations = [](std::string_view user, std::string_view nonce) {
    ScramServer server = ScramServer::Doomed(user);
    std::string first = *server.HandleClientFirst(StrCat("n,,n=,r=", nonce));
    return first.substr(first.find(",s="));
  };
  const std::string alice = salt_and_iterations("alice", "n1");
  EXPECT_EQ(alice, salt_and_iterations("alice", "n2"));
  EXPECT_NE(alice, salt_and_iterations("bob", "n1"));
  EXPECT_TRUE(alice.ends_with(",i=4096")) << alice;
  EXPECT_EQ(alice.size(), std::string(",s=").size() + 24 + std::string(",i=4096").size())
      << "16 bytes of salt, as FromPassword makes: " << alice;
}

// A server asking pgshift for more iterations than it computes is refused
// before any are.
TEST(Scram, TheIterationCountAServerAsksForIsCapped) {
  ScramClient client("pencil");
  const std::string first = client.ClientFirstMessage();
  const std::string nonce = first.substr(first.find("r=") + 2);
  auto refused = client.HandleServerFirst(
      StrCat("r=", nonce, "xyz,s=AAAAAAAAAAAAAAAAAAAAAA==,i=", kMaxScramIterations + 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("above pgshift's limit"), absl::string_view::npos);
  EXPECT_TRUE(client
                  .HandleServerFirst(StrCat(
                      "r=", nonce, "xyz,s=AAAAAAAAAAAAAAAAAAAAAA==,i=", kDefaultScramIterations))
                  .ok());
}

TEST(Scram, VerifierTextRoundTripsAndServesLogins) {
  ScramVerifier v = ScramVerifier::FromPassword("pencil", 4096);
  auto parsed = ScramVerifier::Parse(v.ToString());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->ToString(), v.ToString());
  ScramServer server(*parsed);
  ScramClient client("pencil");
  auto client_final = client.HandleServerFirst(*server.HandleClientFirst(client.ClientFirstMessage()));
  EXPECT_TRUE(server.HandleClientFinal(*client_final).ok());
}

TEST(Scram, RejectsMalformedMessages) {
  EXPECT_FALSE(ScramVerifier::Parse("SCRAM-SHA-256$x:salt$a:b").ok());
  EXPECT_FALSE(ScramVerifier::Parse("md5abc").ok());
  ScramServer server(ScramVerifier::FromPassword("pencil"));
  EXPECT_FALSE(server.HandleClientFirst("p=tls-server-end-point,,n=,r=abc").ok());
  EXPECT_FALSE(server.HandleClientFirst("x,,n=,r=abc").ok());
  EXPECT_FALSE(server.HandleClientFirst("n,,r=abc").ok());
  ScramServer s2(ScramVerifier::FromPassword("pencil"));
  ASSERT_TRUE(s2.HandleClientFirst("n,,n=,r=abc").ok());
  EXPECT_FALSE(s2.HandleClientFinal("c=biws,r=wrongnonce,p=AAAA").ok());
  ScramClient client("pencil");
  client.ClientFirstMessage();
  EXPECT_FALSE(client.HandleServerFirst("r=someoneelse,s=AAAA,i=4096").ok());
  EXPECT_FALSE(client.VerifyServerFinal("v=AAAA").ok());
  EXPECT_FALSE(client.VerifyServerFinal("e=invalid-proof").ok());
}

}  // namespace
}  // namespace pgshift::protocol
