// Routing plans: which server answers, what text it gets, what is refused.
#include "routing/router.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace pgshift::routing {
namespace {

ConfigPtr MakeConfig(std::string_view channels_phase, bool second_server) {
  std::string toml = "[backends.old]\n";
  if (second_server) toml += "[backends.new]\nport = 5433\n";
  toml += "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n";
  toml += "columns = { title = \"name\" }\nphase = \"" + std::string(channels_phase) + "\"\n";
  toml += "[[tables]]\nname = \"posts\"\nnew_name = \"posts_v2\"\nphase = \"old-only\"\n";
  auto config = ParseConfig(toml, "router.toml");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

struct Fixture {
  explicit Fixture(std::string_view phase, bool second_server = false)
      : router(MakeConfig(phase, second_server),
               Catalog{{}, {{"public.channels_v2", {"id", "name", "created_at"}}}}, counters) {}
  TableCounterRegistry counters;
  Router router;
};

TEST(Router, UntouchedTextTakesTheFastPath) {
  Fixture f("new-only");
  EXPECT_FALSE(f.router.MayTouch("SELECT * FROM users"));
  EXPECT_TRUE(f.router.MayTouch("SELECT * FROM Channels"));
}

// TRUNCATE ... CASCADE may empty a mirrored table without naming it (a
// foreign key of it references what the statement names): refused while a
// table's writes are mirrored, whatever it names; planned only then.
TEST(Router, TruncateCascadeIsRefusedWhileATableIsMirrored) {
  for (const char* phase : {"dual-write", "shadow-read", "new-primary"}) {
    Fixture f(phase, true);
    const std::string sql = "truncate users cascade";
    ASSERT_TRUE(f.router.MayTouch(sql)) << phase;
    PlanPtr plan = f.router.PlanFor(sql);
    ASSERT_TRUE(plan->refusal) << phase;
    EXPECT_EQ(plan->refusal->sqlstate, "0A000");
    EXPECT_NE(plan->refusal->message.find("public.channels (" + std::string(phase) + ")"),
              std::string::npos)
        << plan->refusal->message;
    EXPECT_FALSE(f.router.PlanFor("TRUNCATE users")->refusal) << "without CASCADE";
  }
  for (const char* phase : {"old-only", "new-only"}) {
    Fixture f(phase, true);
    EXPECT_FALSE(f.router.MayTouch("TRUNCATE users CASCADE")) << phase;
    EXPECT_FALSE(f.router.PlanFor("TRUNCATE users CASCADE")->refusal) << phase;
  }
}

// With coordination, a table the fleet migrates that this file lacks
// (Config::unconfigured_migrating) is refused wherever it is named: on old
// alone, its writes would bypass the other instances' mirror.
TEST(Router, ATableTheFleetMigratesButThisFileLacksIsRefused) {
  auto config = std::make_shared<Config>(*MakeConfig("dual-write", true));
  config->unconfigured_migrating["public.comments"] = Phase::kDualWrite;
  TableCounterRegistry counters;
  Router router(config, Catalog{{}, {{"public.channels_v2", {"id", "name"}}}}, counters);
  for (const char* sql :
       {"INSERT INTO comments VALUES (1)", "SELECT * FROM Comments JOIN users ON true",
        "UPDATE public.comments SET body = '' WHERE id = 1"}) {
    ASSERT_TRUE(router.MayTouch(sql)) << sql;
    PlanPtr plan = router.PlanFor(sql);
    ASSERT_TRUE(plan->refusal) << sql;
    EXPECT_EQ(plan->refusal->sqlstate, "57P03");
    EXPECT_NE(plan->refusal->message.find("public.comments is in dual-write in the coordinated "
                                          "migration, but this instance's file (router.toml)"),
              std::string::npos)
        << plan->refusal->message;
  }
  EXPECT_FALSE(router.MayTouch("SELECT * FROM users"));
  EXPECT_FALSE(router.PlanFor("SELECT * FROM users")->refusal);
  EXPECT_FALSE(router.PlanFor("SELECT * FROM comments_archive")->refusal);
}

// Found by the fuzzer: libpg_query writes a "$0" back as "?", which no
// parser takes. What would not parse is refused, never sent.
TEST(Router, ARewriteThatWouldNotParseIsRefusedNotSent) {
  Fixture f("new-only");
  PlanPtr plan = f.router.PlanFor("SELECT title FROM channels WHERE id = $0");
  ASSERT_TRUE(plan->refusal) << plan->sql;
  EXPECT_NE(plan->refusal->message.find("as SQL PostgreSQL accepts"), std::string::npos)
      << plan->refusal->message;
  EXPECT_EQ(f.router.PlanFor("SELECT title FROM channels WHERE id = $1")->refusal, std::nullopt);
}

TEST(Router, OldOnlyGoesToOldUnchanged) {
  Fixture f("old-only");
  PlanPtr plan = f.router.PlanFor("SELECT title FROM channels");
  EXPECT_EQ(plan->server, BackendId::kOld);
  EXPECT_FALSE(plan->rewritten);
  EXPECT_EQ(plan->sql, "SELECT title FROM channels");
  EXPECT_FALSE(plan->refusal);
}

TEST(Router, NewOnlyOnOneDatabaseIsRewrittenForOld) {
  Fixture f("new-only");
  PlanPtr plan = f.router.PlanFor("SELECT c.title, p.body FROM channels c JOIN posts p ON true");
  EXPECT_EQ(plan->server, BackendId::kOld);
  EXPECT_TRUE(plan->rewritten);
  EXPECT_EQ(plan->sql,
            "SELECT c.name AS title, p.body FROM public.channels_v2 c JOIN posts p ON true");
  EXPECT_FALSE(plan->refusal);
}

TEST(Router, NewOnlyOnASecondServer) {
  Fixture f("new-only", true);
  PlanPtr plan = f.router.PlanFor("UPDATE channels SET title = $1 WHERE id = $2");
  EXPECT_EQ(plan->server, BackendId::kNew);
  EXPECT_TRUE(plan->writes);
  EXPECT_EQ(plan->sql, "UPDATE public.channels_v2 channels SET name = $1 WHERE id = $2");

  PlanPtr mixed = f.router.PlanFor("SELECT * FROM channels JOIN posts ON true");
  ASSERT_TRUE(mixed->refusal);
  EXPECT_EQ(mixed->refusal->sqlstate, "0A000");
  EXPECT_EQ(mixed->refusal->message,
            "pgshift: this statement needs tables that are answered by different servers: "
            "public.channels (new-only, on new), public.posts (old-only, on old)");
}

TEST(Router, RefusesWhatThisPhaseCannotDo) {
  Fixture dual("dual-write");
  EXPECT_FALSE(dual.router.PlanFor("SELECT * FROM channels")->refusal) << "reads stay on old";
  PlanPtr write = dual.router.PlanFor("DELETE FROM channels");
  ASSERT_TRUE(write->refusal);
  EXPECT_NE(write->refusal->message.find("public.channels in phase dual-write"),
            std::string::npos);

  Fixture new_only("new-only");
  PlanPtr ddl = new_only.router.PlanFor("ALTER TABLE channels ADD COLUMN x int");
  ASSERT_TRUE(ddl->refusal);
  EXPECT_EQ(ddl->refusal->message,
            "pgshift: DDL on public.channels is refused in phase new-only; change the old and "
            "new tables directly");
}

TEST(Router, PlansAreCachedAndCounted) {
  Fixture f("new-only");
  PlanPtr a = f.router.PlanFor("SELECT title FROM channels");
  PlanPtr b = f.router.PlanFor("SELECT title FROM channels");
  EXPECT_EQ(a.get(), b.get());
  a->Count();
  b->Count();
  f.router.PlanFor("INSERT INTO channels (title) VALUES ('x')")->Count();
  f.router.PlanFor("ALTER TABLE channels ADD COLUMN x int")->Count();
  TableCounters& c = f.counters.For("public.channels");
  EXPECT_EQ(c.reads.load(), 2u);
  EXPECT_EQ(c.writes.load(), 1u);
  EXPECT_EQ(c.refused.load(), 1u);
}

TEST(Router, StatementsOnConfiguredTablesAreRecordedByShape) {
  Fixture f("dual-write");
  // The same shape with other constants, as a template and as a parameter.
  f.router.PlanFor("SELECT title FROM channels WHERE id = 1")->Count();
  f.router.PlanFor("SELECT title FROM channels WHERE id = 2")->Count();
  f.router.PlanFor("SELECT title FROM channels WHERE id = $1")->Count();
  f.router.PlanFor("DELETE FROM channels")->Count();  // refused in dual-write
  f.router.PlanFor("SELECT * FROM users")->Count();   // no configured table
  std::vector<QueryFingerprints::Row> rows = f.counters.fingerprints().Rows();
  ASSERT_EQ(rows.size(), 2u);
  std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.writes < b.writes; });
  EXPECT_EQ(rows[0].normalized, "SELECT title FROM channels WHERE id = $1");
  EXPECT_EQ(rows[0].tables, std::vector<std::string>{"public.channels"});
  EXPECT_EQ(rows[0].executions, 3u);
  EXPECT_EQ(rows[0].refused, 0u);
  EXPECT_GT(rows[0].last_seen_ms, 0);
  EXPECT_TRUE(rows[1].writes);
  EXPECT_EQ(rows[1].executions, 0u);
  EXPECT_EQ(rows[1].refused, 1u);
}

TEST(Router, ShapesPastTheBoundAreCountedNotKept) {
  QueryFingerprints fingerprints(2);
  EXPECT_NE(fingerprints.For("SELECT a FROM t", {"t"}, false), nullptr);
  EXPECT_NE(fingerprints.For("SELECT b FROM t", {"t"}, false), nullptr);
  EXPECT_EQ(fingerprints.For("SELECT c FROM t", {"t"}, false), nullptr);
  EXPECT_EQ(fingerprints.For("SELECT a FROM t", {"t"}, false),
            fingerprints.For("SELECT a FROM t", {"t"}, false));
  EXPECT_EQ(fingerprints.Rows().size(), 2u);
  EXPECT_EQ(fingerprints.untracked(), 1u);
}

TEST(Router, SyntaxErrorsGoToOldAsWritten) {
  Fixture f("new-only");
  PlanPtr plan = f.router.PlanFor("SELEC title FROM channels");
  EXPECT_EQ(plan->server, BackendId::kOld);
  EXPECT_EQ(plan->sql, "SELEC title FROM channels");
  EXPECT_FALSE(plan->refusal);
}

TEST(Router, MultiStatementQueriesAreRewrittenStatementByStatement) {
  Fixture f("new-only");
  PlanPtr plan = f.router.PlanFor("BEGIN; SELECT title FROM channels; SELECT 1; COMMIT");
  EXPECT_TRUE(plan->transaction_control);
  EXPECT_EQ(plan->sql,
            "BEGIN; SELECT name AS title FROM public.channels_v2 channels; SELECT 1; COMMIT");
}

TEST(Router, StatementsForDifferentServersBecomeParts) {
  Fixture f("new-only", true);
  PlanPtr plan = f.router.PlanFor("SELECT 1; SELECT title FROM channels; SELECT body FROM posts");
  ASSERT_FALSE(plan->refusal) << plan->refusal->message;
  ASSERT_EQ(plan->parts.size(), 2u);
  EXPECT_EQ(plan->parts[0].server, BackendId::kNew);
  EXPECT_EQ(plan->parts[0].sql, "SELECT 1; SELECT name AS title FROM public.channels_v2 channels");
  EXPECT_EQ(plan->parts[1].server, BackendId::kOld);
  EXPECT_EQ(plan->parts[1].sql, "SELECT body FROM posts");
  EXPECT_EQ(plan->server, BackendId::kOld);
  PlanPtr write_first = f.router.PlanFor("DELETE FROM channels; SELECT body FROM posts");
  ASSERT_TRUE(write_first->refusal);
  EXPECT_EQ(write_first->refusal->message,
            "pgshift: this query writes on server new and then runs statements on server old; a "
            "failure there could not undo the write: send them separately");
  EXPECT_FALSE(f.router.PlanFor("SELECT * FROM posts; DELETE FROM channels")->refusal);
}

}  // namespace
}  // namespace pgshift::routing
