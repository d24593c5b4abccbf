// The configuration loader: SPEC section 3's schema, and errors that name
// the key and line.
#include <gtest/gtest.h>

#include "routing/config.h"

namespace pgshift::routing {
namespace {

constexpr std::string_view kFull = R"(
[proxy]
listen = "127.0.0.1:6432"
workers = 2
admin_listen = "127.0.0.1:6433"
metrics_listen = "127.0.0.1:9930"
auth_method = "scram-sha-256"
max_clients = 1000
shutdown_timeout = 2.5

[[users]]
name = "app"
password = "secret"

[[users]]
name = "ops"
password = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$WxbHl5wPvDrx5HIoKnjGxGdQd8B3LDhRMu8zIeKT3nk=:jvA8+HqP0vjGAbSGGbPrsQL2nhS+kBEqKQk3+rZBm6o="
admin = true

[backends.old]
host = "127.0.0.1"
port = 5432
dbname = "app"
user = "app"
password = "secret"
sslmode = "disable"

[backends.new]
host = "10.0.0.2"
port = 5433

[[tables]]
name = "channels"
new_name = "public.channels_v2"
phase = "dual-write"
key = ["id"]
columns = { title = "name" }
shadow_sample = 0.1
on_mirror_error = "log"
)";

TEST(Config, ReadsEveryKeyOfTheSpecExample) {
  auto c = ParseConfig(kFull, "full.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  const Config& config = **c;
  EXPECT_EQ(config.proxy.listen.port, 6432);
  EXPECT_EQ(config.proxy.workers, 2);
  ASSERT_TRUE(config.proxy.admin_listen);
  EXPECT_EQ(config.proxy.admin_listen->port, 6433);
  EXPECT_EQ(config.proxy.auth_method, AuthMethod::kScramSha256);
  EXPECT_DOUBLE_EQ(config.proxy.shutdown_timeout_s, 2.5);
  ASSERT_EQ(config.users.size(), 2u);
  EXPECT_TRUE(config.users[1].admin);
  EXPECT_EQ(config.old_backend.dbname, "app");
  EXPECT_EQ(config.old_backend.sslmode, SslMode::kDisable);
  ASSERT_TRUE(config.new_backend);
  EXPECT_EQ(config.new_backend->endpoint.host, "10.0.0.2");
  ASSERT_EQ(config.tables.size(), 1u);
  const TableConfig& t = config.tables[0];
  EXPECT_EQ(t.name, "public.channels") << "unqualified names resolve to public";
  EXPECT_EQ(t.phase, Phase::kDualWrite);
  EXPECT_EQ(t.key, std::vector<std::string>{"id"});
  EXPECT_EQ(t.columns.at("title"), "name");
  EXPECT_EQ(t.on_mirror_error, MirrorErrorPolicy::kLog);
  EXPECT_NE(config.FindUser("app"), nullptr);
  EXPECT_EQ(config.FindUser("nobody"), nullptr);
}

TEST(Config, MinimalFileHasDefaults) {
  auto c = ParseConfig("[backends.old]\nport = 5432\n", "min.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->proxy.auth_method, AuthMethod::kTrust);
  EXPECT_EQ((*c)->proxy.max_clients, 1000);
  EXPECT_EQ((*c)->old_backend.sslmode, SslMode::kPrefer);
  EXPECT_FALSE((*c)->new_backend);
}

struct BadCase {
  std::string toml;
  std::string expected;  // a substring of the error
  // Names the case in test listings by the error it expects.
  friend void PrintTo(const BadCase& c, std::ostream* os) { *os << c.expected; }
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NameTheKeyAndLine) {
  auto c = ParseConfig(GetParam().toml, "bad.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find(GetParam().expected), std::string::npos)
      << c.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        BadCase{"[backends.old]\nport = 5432\n[proxy]\nlisen = \"x:1\"\n",
                "bad.toml:4: unknown key \"proxy.lisen\""},
        BadCase{"[backends.old]\nport = 5432\nbogus = 1\n", "bad.toml:3: unknown key \"backends.old.bogus\""},
        BadCase{"[backends.old]\nport = \"5432\"\n", "bad.toml:2: \"backends.old.port\" must be an integer"},
        BadCase{"[backends.old]\nport = 70000\n", "bad.toml:2: \"backends.old.port\" must be between 1 and 65535"},
        BadCase{"[proxy]\nauth_method = \"password\"\n[backends.old]\n",
                "bad.toml:2: \"proxy.auth_method\" is \"password\"; must be one of trust, md5, scram-sha-256"},
        BadCase{"[proxy]\nlisten = \"nowhere\"\n[backends.old]\n", "bad.toml:2: \"proxy.listen\""},
        BadCase{"[proxy]\ntls_cert = \"a.crt\"\n[backends.old]\n", "needs both proxy.tls_cert and proxy.tls_key"},
        BadCase{"[proxy]\nauth_method = \"md5\"\n[backends.old]\n", "needs at least one [[users]] entry"},
        BadCase{"[proxy]\nworkers = 2\n", "[backends.old] is required"},
        BadCase{"[backends.old]\n[[tables]]\nname = \"t\"\nnew_name = \"t2\"\nphase = \"dual-writes\"\n",
                "bad.toml:5: \"tables[0].phase\" is \"dual-writes\""},
        BadCase{"[backends.old]\n[[tables]]\nname = \"t\"\nnew_name = \"t2\"\nphase = \"old-only\"\nshadow_sample = 2.0\n",
                "\"tables[0].shadow_sample\" must be a number from 0 to 1"},
        BadCase{"[backends.old]\n[[tables]]\nname = \"t\"\nphase = \"old-only\"\n", "tables[0].new_name is required"},
        BadCase{"[backends.old]\n[[users]]\nname = \"a\"\n[[users]]\nname = \"a\"\n", "user \"a\" is listed twice"},
        BadCase{"[backends.old]\nport = 5432\n[[users]]\nname = \"a\"\npassword = \"SCRAM-SHA-256$oops\"\n",
                "looks like a SCRAM-SHA-256 verifier but is malformed"},
        BadCase{"[backends.old\n", "bad.toml:1:"}));

}  // namespace
}  // namespace pgshift::routing
