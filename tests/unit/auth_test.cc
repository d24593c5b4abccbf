// SCRAM-SHA-256 and MD5 computations. The integration tests prove them
// against PostgreSQL itself; these pin the edge cases.
#include <gtest/gtest.h>

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
  ScramServer server = ScramServer::Doomed();
  ScramClient client("anything");
  auto client_final = client.HandleServerFirst(*server.HandleClientFirst(client.ClientFirstMessage()));
  EXPECT_TRUE(absl::IsPermissionDenied(server.HandleClientFinal(*client_final).status()));
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
