// The configuration loader: SPEC section 3's schema, and errors that name
// the key and line.
#include <gtest/gtest.h>

#include "common/strings.h"
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
mirror_apply = "sync"
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
  EXPECT_EQ(t.mirror_apply, MirrorApply::kSync);
  EXPECT_NE(config.FindUser("app"), nullptr);
  EXPECT_EQ(config.FindUser("nobody"), nullptr);
}

TEST(Config, ATablesMirrorIsPipelinedByDefault) {
  auto c = ParseConfig(
      "[backends.old]\n[[tables]]\nname = \"t\"\nnew_name = \"t2\"\nphase = \"old-only\"\n",
      "table.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->tables.at(0).mirror_apply, MirrorApply::kPipelined);
  EXPECT_EQ((*c)->tables.at(0).on_mirror_error, MirrorErrorPolicy::kFail);
}

TEST(Config, MinimalFileHasDefaults) {
  auto c = ParseConfig("[backends.old]\nport = 5432\n", "min.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->proxy.auth_method, AuthMethod::kTrust);
  EXPECT_EQ((*c)->proxy.max_clients, 1000);
  EXPECT_EQ((*c)->old_backend.sslmode, SslMode::kPrefer);
  EXPECT_FALSE((*c)->new_backend);
}

TEST(Config, VerifyingTheServerWantsItsCertificateAuthority) {
  auto c = ParseConfig("[backends.old]\nsslmode = \"verify-full\"\nsslrootcert = \"system\"\n",
                       "verify.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->old_backend.sslmode, SslMode::kVerifyFull);
  EXPECT_EQ((*c)->old_backend.sslrootcert, "system");
  EXPECT_EQ(SslModeName(SslMode::kVerifyCa), "verify-ca");
}

TEST(Config, LeftoverMirrorsAreResolvedOnceHalfAMinuteOldUnlessSaidOtherwise) {
  auto plain = ParseConfig("[backends.old]\n", "plain.toml");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->proxy.recovery_min_age_s, 30);
  auto set = ParseConfig("[proxy]\nrecovery_min_age = 0\n[backends.old]\n", "set.toml");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ((*set)->proxy.recovery_min_age_s, 0);
  EXPECT_FALSE(ParseConfig("[proxy]\nrecovery_min_age = -1\n[backends.old]\n", "bad.toml").ok());
}

TEST(Config, TheDeploymentIsNamedOrDerivedFromTheDatabases) {
  auto named = ParseConfig("[proxy]\ndeployment = \"blue1\"\n[backends.old]\n", "named.toml");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ((*named)->proxy.deployment, "blue1");
  auto derived = [](std::string_view file) {
    auto c = ParseConfig(file, "derived.toml");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? (*c)->proxy.deployment : "";
  };
  const std::string a = derived("[backends.old]\nport = 5432\n[backends.new]\nport = 5433\n");
  EXPECT_EQ(a.size(), 12u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
  EXPECT_EQ(
      derived("[proxy]\nworkers = 2\n[backends.old]\nport = 5432\n[backends.new]\nport = 5433\n"),
      a)
      << "the same databases, another file: the same deployment";
  EXPECT_NE(derived("[backends.old]\nport = 5432\n[backends.new]\nport = 5434\n"), a);
}

TEST(Config, CoordinationIsOffUnlessEnabled) {
  auto off = ParseConfig("[backends.old]\n", "off.toml");
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE((*off)->coordination.enabled);
  auto on = ParseConfig(
      "[coordination]\nenabled = true\ninstance_id = \"east-1\"\nlease_timeout = 5\n"
      "cutover_timeout = 1.5\nport = 6543\n[backends.old]\ndbname = \"app\"\nuser = \"u\"\n",
      "on.toml");
  ASSERT_TRUE(on.ok()) << on.status();
  const CoordinationSettings& c = (*on)->coordination;
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.instance_id, "east-1");
  EXPECT_EQ(c.lease_timeout_s, 5);
  EXPECT_EQ(c.cutover_timeout_s, 1.5);
  EXPECT_EQ(c.poll_interval_s, 1);
  EXPECT_EQ(c.port, 6543);
  EXPECT_EQ(c.host, std::nullopt);
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
        BadCase{"[backends.old]\nport = 5432\nbogus = 1\n",
                "bad.toml:3: unknown key \"backends.old.bogus\""},
        BadCase{"[backends.old]\nport = \"5432\"\n",
                "bad.toml:2: \"backends.old.port\" must be an integer"},
        BadCase{"[backends.old]\nport = 70000\n",
                "bad.toml:2: \"backends.old.port\" must be between 1 and 65535"},
        BadCase{"[proxy]\nauth_method = \"password\"\n[backends.old]\n",
                "bad.toml:2: \"proxy.auth_method\" is \"password\"; must be one of trust, md5, "
                "scram-sha-256"},
        BadCase{"[proxy]\nlisten = \"nowhere\"\n[backends.old]\n", "bad.toml:2: \"proxy.listen\""},
        BadCase{"[proxy]\nrecovery_interval = 0\n[backends.old]\n",
                "bad.toml:2: \"proxy.recovery_interval\" must be at least 0.1 seconds"},
        BadCase{"[proxy]\nwrite_audit_interval = 0.01\n[backends.old]\n",
                "bad.toml:2: \"proxy.write_audit_interval\" must be 0 (off) or at least 0.1 "
                "seconds"},
        BadCase{"[proxy]\nmirror_lock_timeout = 0.0001\n[backends.old]\n",
                "\"proxy.mirror_lock_timeout\" must be 0 (no limit) or at least 0.001 seconds"},
        BadCase{"[proxy]\ndeployment = \"Blue_1\"\n[backends.old]\n",
                "bad.toml:2: \"proxy.deployment\" must be 1 to 32 lower-case letters and digits"},
        BadCase{"[proxy]\ntls_cert = \"a.crt\"\n[backends.old]\n",
                "needs both proxy.tls_cert and proxy.tls_key"},
        BadCase{"[proxy]\nauth_method = \"md5\"\n[backends.old]\n",
                "needs at least one [[users]] entry"},
        BadCase{"[proxy]\nworkers = 2\n", "[backends.old] is required"},
        BadCase{"[backends.old]\n[[tables]]\nname = \"t\"\nnew_name = \"t2\"\nphase = "
                "\"dual-writes\"\n",
                "bad.toml:5: \"tables[0].phase\" is \"dual-writes\""},
        BadCase{"[backends.old]\n[[tables]]\nname = \"t\"\nnew_name = \"t2\"\nphase = "
                "\"old-only\"\nshadow_sample = 2.0\n",
                "\"tables[0].shadow_sample\" must be a number from 0 to 1"},
        BadCase{"[backends.old]\n[[tables]]\nname = \"t\"\nnew_name = \"t2\"\nphase = "
                "\"old-only\"\nmirror_apply = \"async\"\n",
                "bad.toml:6: \"tables[0].mirror_apply\" is \"async\"; must be one of sync, "
                "pipelined"},
        BadCase{"[backends.old]\n[[tables]]\nname = \"t\"\nphase = \"old-only\"\n",
                "tables[0].new_name is required"},
        BadCase{"[backends.old]\n[[users]]\nname = \"a\"\n[[users]]\nname = \"a\"\n",
                "user \"a\" is listed twice"},
        BadCase{"[backends.old]\nport = 5432\n[[users]]\nname = \"a\"\npassword = "
                "\"SCRAM-SHA-256$oops\"\n",
                "looks like a SCRAM-SHA-256 verifier but is malformed"},
        BadCase{"[backends.old]\nsslmode = \"verify-full\"\n",
                "backends.old.sslrootcert is required with sslmode \"verify-full\""},
        BadCase{
            "[backends.old]\nsslmode = \"verify-ca\"\nsslrootcert = \"/nonexistent/root.crt\"\n",
            "\"backends.old.sslrootcert\" cannot read \"/nonexistent/root.crt\""},
        BadCase{"[backends.old]\nsslmode = \"verify\"\n",
                "must be one of disable, prefer, require, verify-ca, verify-full"},
        BadCase{"[coordination]\nenabled = true\n[backends.old]\n",
                "coordination.enabled needs backends.old.dbname and user"},
        BadCase{"[coordination]\nlease_timeout = 2\npoll_interval = 1.5\n[backends.old]\n",
                "bad.toml:3: \"coordination.poll_interval\" must be at most half of "
                "lease_timeout"},
        BadCase{"[backends.old\n", "bad.toml:1:"}));

}  // namespace
}  // namespace pgshift::routing

namespace pgshift::routing {
namespace {

// A config with channels in `phase` (and `extra` appended to its table).
ConfigPtr WithChannels(std::string_view phase, std::string_view extra = "") {
  std::string toml = StrCat("[backends.old]\n[[tables]]\nname = \"channels\"\nnew_name = "
                            "\"channels_v2\"\nkey = [\"id\"]\nphase = \"",
                            phase, "\"\n", extra);
  auto c = ParseConfig(toml, "step.toml");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

ConfigPtr WithoutTables() { return *ParseConfig("[backends.old]\n", "empty.toml"); }

std::string Refusal(const ConfigPtr& from, const ConfigPtr& to) {
  absl::Status s = CheckPhaseSteps(*from, *to);
  return s.ok() ? "" : std::string(s.message());
}

TEST(PhaseSteps, OneStepForwardAndAnyStepBackAreAllowed) {
  const char* order[] = {"old-only", "dual-write", "shadow-read", "new-primary", "new-only"};
  for (int i = 0; i + 1 < 5; ++i) {
    EXPECT_EQ(Refusal(WithChannels(order[i]), WithChannels(order[i + 1])), "") << order[i];
    EXPECT_EQ(Refusal(WithChannels(order[i]), WithChannels(order[i])), "") << order[i];
  }
  for (int i = 1; i < 4; ++i) {
    for (int j = 0; j < i; ++j) {
      EXPECT_EQ(Refusal(WithChannels(order[i]), WithChannels(order[j])), "")
          << order[i] << " -> " << order[j];
    }
  }
  EXPECT_EQ(Refusal(WithoutTables(), WithChannels("dual-write")), "") << "a new table starts";
  EXPECT_EQ(Refusal(WithChannels("dual-write"), WithoutTables()), "") << "removal is old-only";
}

// With coordination, a table the fleet migrates that the running file
// lacks steps from the fleet's phase when a file adds it.
TEST(PhaseSteps, ATableTheFleetMigratesStepsFromTheFleetsPhase) {
  auto running = std::make_shared<Config>(*WithoutTables());
  running->unconfigured_migrating["public.channels"] = Phase::kShadowRead;
  EXPECT_EQ(running->PhaseOf("public.channels"), Phase::kShadowRead);
  EXPECT_EQ(running->PhaseOf("public.posts"), Phase::kOldOnly);
  EXPECT_EQ(Refusal(running, WithChannels("shadow-read")), "");
  EXPECT_EQ(Refusal(running, WithChannels("new-primary")), "");
  EXPECT_EQ(Refusal(running, WithChannels("dual-write")), "");
  EXPECT_NE(Refusal(running, WithChannels("new-only"))
                .find("shadow-read -> new-only skips "
                      "new-primary"),
            std::string::npos);
  EXPECT_NE(Refusal(WithoutTables(), WithChannels("shadow-read")).find("skips dual-write"),
            std::string::npos);
}

TEST(PhaseSteps, SkippingForwardIsRefusedWithTheReason) {
  EXPECT_EQ(Refusal(WithChannels("old-only"), WithChannels("shadow-read")),
            "table \"public.channels\": old-only -> shadow-read skips dual-write; set force = "
            "true on the table to allow it");
  EXPECT_NE(Refusal(WithChannels("dual-write"), WithChannels("new-only")), "");
  EXPECT_NE(Refusal(WithoutTables(), WithChannels("new-primary")), "")
      << "a new table is old-only before";
}

TEST(PhaseSteps, LeavingNewOnlyIsRefused) {
  EXPECT_EQ(Refusal(WithChannels("new-only"), WithChannels("new-primary")),
            "table \"public.channels\": new-only -> new-primary leaves new-only, and old is stale "
            "by then; set force = true on the table to allow it");
  EXPECT_NE(Refusal(WithChannels("new-only"), WithoutTables()).find("(removed from the file)"),
            std::string::npos);
}

TEST(PhaseSteps, ForceOverridesEveryRule) {
  EXPECT_EQ(Refusal(WithChannels("old-only"), WithChannels("new-only", "force = true\n")), "");
  EXPECT_EQ(Refusal(WithChannels("new-only"), WithChannels("old-only", "force = true\n")), "");
}

TEST(PhaseSteps, MigratingTablesKeepTheirTarget) {
  auto moved = ParseConfig(
      "[backends.old]\n[[tables]]\nname = \"channels\"\nnew_name = \"channels_v3\"\nkey = "
      "[\"id\"]\nphase = \"dual-write\"\n",
      "moved.toml");
  ASSERT_TRUE(moved.ok());
  EXPECT_NE(Refusal(WithChannels("dual-write"), *moved).find("changes new_name"), std::string::npos);
  EXPECT_EQ(Refusal(WithChannels("old-only"), *moved), "") << "before migrating it may change";
}

// Column transforms: each expression parsed at load, and refused with the
// table, the column and the reason.
TEST(Config, ColumnTransformsAreParsedAndWrittenBack) {
  // As the README writes it: the entry's maps as tables of their own.
  auto c = ParseConfig(R"toml(
[backends.old]
[[tables]]
name = "items"
new_name = "items_v2"
phase = "dual-write"
key = ["id"]
columns = { label = "title" }
[tables.new_columns]
price = "price_cents/100.0"
first_name = "split_part(full_name, ' ', 1)"
[tables.old_columns]
price_cents = "(price * 100)::int"
)toml",
                       "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  const TableConfig& t = (*c)->tables[0];
  ASSERT_EQ(t.new_columns.size(), 2u);
  const ColumnTransform* price = FindTransform(t.new_columns, "price");
  ASSERT_NE(price, nullptr);
  EXPECT_EQ(price->expression, "(price_cents / 100.0)");
  EXPECT_EQ(price->reads, std::vector<std::string>{"price_cents"});
  EXPECT_EQ(FindTransform(t.new_columns, "first_name")->reads,
            std::vector<std::string>{"full_name"});
  ASSERT_EQ(t.old_columns.size(), 1u);
  EXPECT_EQ(t.old_columns[0].reads, std::vector<std::string>{"price"});
}

TEST(Config, ABadColumnTransformIsRefusedWithItsReason) {
  auto refused = [](std::string_view entry, std::string_view phase = "dual-write") {
    auto c = ParseConfig(StrCat("[backends.old]\n[[tables]]\nname = \"items\"\nnew_name = "
                                "\"items_v2\"\nkey = [\"id\"]\ncolumns = { label = \"title\" }\n"
                                "phase = \"",
                                phase, "\"\n", entry, "\n"),
                         "t.toml");
    EXPECT_FALSE(c.ok()) << entry;
    return c.ok() ? std::string() : std::string(MessageOf(c.status()));
  };
  std::string m = refused("new_columns = { price = \"price_cents /\" }");
  EXPECT_NE(m.find("t.toml:8: \"tables[0].new_columns.price\" (table public.items): the "
                   "expression for price: syntax error at end of input"),
            std::string::npos)
      << m;
  m = refused("new_columns = { price = \"1); DROP TABLE items; SELECT (1\" }");
  EXPECT_NE(m.find("syntax error at or near \")\""), std::string::npos) << m;
  m = refused("new_columns = { price = \"1; DROP TABLE items\" }");
  EXPECT_NE(m.find("must be one expression"), std::string::npos) << m;
  m = refused("new_columns = { price = \"old.price_cents\" }");
  EXPECT_NE(m.find("may not contain a qualified or * column reference"), std::string::npos) << m;
  m = refused("new_columns = { price = \"(SELECT max(p) FROM prices)\" }");
  EXPECT_NE(m.find("may not contain a subquery"), std::string::npos) << m;
  m = refused("new_columns = { price = \"sum(price_cents) OVER ()\" }");
  EXPECT_NE(m.find("may not contain a window function"), std::string::npos) << m;
  m = refused("new_columns = { price = \"$1\" }");
  EXPECT_NE(m.find("may not contain a parameter"), std::string::npos) << m;
  m = refused("new_columns = { price = \"price_cents AS p\" }");
  EXPECT_NE(m.find("without AS"), std::string::npos) << m;
  m = refused("new_columns = { price = 5 }");
  EXPECT_NE(m.find("\"tables[0].new_columns.price\" must be a string"), std::string::npos) << m;
  m = refused("new_columns = { id = \"id + 1\" }");
  EXPECT_NE(m.find("of public.items computes key column id"), std::string::npos) << m;
  m = refused("new_columns = { title = \"upper(label)\" }");
  EXPECT_NE(m.find("computes title, which columns also fills from label by rename"),
            std::string::npos)
      << m;
  m = refused("old_columns = { label = \"title\" }");
  EXPECT_NE(m.find("computes label, which columns renames to title"), std::string::npos) << m;
  m = refused("new_columns = { price = \"price_cents / 100.0\" }", "new-primary");
  EXPECT_NE(m.find("\"new-primary\" is not available to public.items yet"), std::string::npos) << m;
}

// SET PHASE checks a step with CheckPhaseSteps, over a copy of the running
// configuration: that too keeps a table with transforms at shadow-read,
// forced or not.
TEST(Config, AStepPastShadowReadWithTransformsIsRefusedEvenForced) {
  auto running = ParseConfig(
      "[backends.old]\n[[tables]]\nname = \"items\"\nnew_name = \"items_v2\"\nkey = [\"id\"]\n"
      "phase = \"dual-write\"\nforce = true\nnew_columns = { price = \"price_cents / 100.0\" }\n",
      "t.toml");
  ASSERT_TRUE(running.ok()) << running.status();
  Config next = **running;
  next.tables[0].phase = Phase::kShadowRead;
  EXPECT_TRUE(CheckPhaseSteps(**running, next).ok());
  next.tables[0].phase = Phase::kNewPrimary;
  absl::Status s = CheckPhaseSteps(**running, next);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(MessageOf(s).find("\"new-primary\" is not available to public.items yet"),
            std::string::npos)
      << s;
}

}  // namespace
}  // namespace pgshift::routing
