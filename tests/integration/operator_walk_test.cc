// An operator's walk of one table across servers, from old-only to
// new-only, as the runbook tells it: before every step `pgshift status`
// says where the table stands and what moves it on, and `pgshift plan`
// plans the statements the application really sent under the next phase.
// What plan says a flip would refuse, the flip then refuses in the same
// words; what it says is mirrored is on both servers afterwards.
#include <gtest/gtest.h>

#include <memory>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

constexpr const char* kJoin =
    "SELECT c.title, p.body FROM channels c JOIN posts p ON p.channel_id = c.id";
constexpr const char* kJoinRefusal =
    "pgshift: this statement needs tables that are answered by different servers: "
    "public.channels (new-primary, on new), public.posts (not migrating, on old)";

class OperatorWalk : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(new_cluster_.ok());
    for (int port : {Cluster().port(), new_cluster_.port()}) {
      PgConn admin("host=127.0.0.1 port=" + std::to_string(port) +
                   " dbname=postgres user=postgres");
      ASSERT_TRUE(admin.Ok("CREATE DATABASE walk")) << admin.error();
    }
    ASSERT_TRUE(
        Old().Ok("CREATE TABLE channels (id serial PRIMARY KEY, title text NOT NULL);"
                 "INSERT INTO channels (title) VALUES ('a'), ('b');"
                 "CREATE TABLE posts (id serial PRIMARY KEY, channel_id int, body text);"
                 "INSERT INTO posts (channel_id, body) VALUES (1, 'p1'), (2, 'p2')"));
    ASSERT_TRUE(New().Ok("CREATE TABLE channels_v2 (id serial PRIMARY KEY, name text NOT NULL)"));
    backends_ = "[backends.new]\nport = " + std::to_string(new_cluster_.port()) + "\n" +
                (new_login_ ? "dbname = \"walk\"\nuser = \"postgres\"\n" : "") +
                "[[users]]\nname = \"postgres\"\nadmin = true\n";
    proxy_settings_ = "admin_listen = \"127.0.0.1:" + std::to_string(FreePort()) + "\"";
    proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), proxy_settings_,
                                              "dbname = \"walk\"\nuser = \"postgres\"",
                                              backends_ + Table(start_phase_));
    ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  }

  std::string Table(const std::string& phase) const {
    return "[[tables]]\nname = \"channels\"\nnew_name = \"channels_v2\"\nkey = [\"id\"]\n"
           "columns = { title = \"name\" }\nshadow_sample = 1.0\nmin_shadow_compared = 0\n"
           "phase = \"" +
           phase +
           "\"\n"
           "[[tables]]\nname = \"comments\"\nnew_name = \"comments_v2\"\nphase = \"old-only\"\n";
  }
  void Flip(const std::string& phase) {
    proxy_->RewriteConfig(proxy_settings_, "dbname = \"walk\"\nuser = \"postgres\"",
                          backends_ + Table(phase));
    std::string verdict = proxy_->Reload();
    ASSERT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  }
  // `pgshift WHAT --config F --table channels ...`; its exit status.
  int Run(const std::string& what, std::string& out) const {
    return CaptureCommand(PgshiftBinary() + " " + what + " --config " + proxy_->dir() +
                              "/pgshift.toml --table channels",
                          out);
  }
  // What the application sends at every phase: a read by key, a write,
  // and a join with a table that stays on old.
  void Traffic(int id) {
    PgConn app(proxy_->ConnInfo("dbname=walk"));
    ASSERT_TRUE(app.ok()) << app.error();
    EXPECT_TRUE(app.Ok("SELECT title FROM channels WHERE id = 1"));
    EXPECT_TRUE(
        app.Ok("INSERT INTO channels (id, title) VALUES (" + std::to_string(id) + ", 'c')"));
    app.Ok(kJoin);
  }
  PgConn Old() { return PgConn(Cluster().ConnInfo("dbname=walk")); }
  PgConn New() { return PgConn(new_cluster_.ConnInfo("dbname=walk")); }
  void TearDown() override {
    proxy_.reset();
    for (int port : {Cluster().port(), new_cluster_.port()}) {
      PgConn admin("host=127.0.0.1 port=" + std::to_string(port) +
                   " dbname=postgres user=postgres");
      admin.Ok("DROP DATABASE IF EXISTS walk WITH (FORCE)");
    }
  }

  // Whether backends.new gives pgshift a login of its own.
  bool new_login_ = true;
  std::string start_phase_ = "old-only";
  PgCluster new_cluster_;
  std::string backends_;
  std::string proxy_settings_;
  std::unique_ptr<PgshiftProcess> proxy_;
};

void ExpectLines(const std::string& out, std::initializer_list<const char*> lines) {
  for (const char* line : lines)
    EXPECT_NE(out.find(line), std::string::npos) << line << " in:\n" << out;
}

TEST_F(OperatorWalk, StatusAndPlanSayWhatEachFlipWillDoAndItDoesIt) {
  std::string out;
  // old-only.
  Traffic(10);
  ASSERT_EQ(Run("status", out), 0) << out;
  ExpectLines(out, {"public.channels: old-only since ", "next:     dual-write",
                    "[met] no write reaches it unseen", "run:      set phase = \"dual-write\""});
  ASSERT_EQ(Run("plan --to dual-write", out), 0) << out;
  ExpectLines(out,
              {"public.channels: old-only -> dual-write\n",
               "recorded: the instance's on 127.0.0.1:", "rewritten (write, 1 seen, last ",
               "): INSERT INTO channels (id, title) VALUES ($1, $2)\n"
               "  served by old\n"
               "  sent as:  WITH pgshift_rows AS (INSERT INTO channels (id, title) VALUES ($1, $2) "
               "RETURNING channels.*) SELECT ",
               "  mirrored: rows applied on the other server in the client's transaction",
               "as sent (read, 1 seen, last ",
               "): SELECT title FROM channels WHERE id = $1\n"
               "  served by old\n",
               "3 statement shapes: 0 refused, 1 rewritten, 2 as sent"});
  ASSERT_EQ(Run("plan --to new-only", out), 1) << out;
  ExpectLines(out, {"refused:  the flip itself would be refused: "});
  // A table whose tables do not exist: the flip itself is refused.
  ASSERT_EQ(CaptureCommand(PgshiftBinary() + " plan --config " + proxy_->dir() +
                               "/pgshift.toml --table comments --to dual-write",
                           out),
            1)
      << out;
  ExpectLines(out, {"refused:  the flip itself would be refused: public.comments cannot move to "
                    "dual-write: cannot read the columns of public.comments"});

  // dual-write: the insert is mirrored, as planned. Until the reload, plan
  // starts from the running instance's phase, not the edited file's.
  proxy_->RewriteConfig(proxy_settings_, "dbname = \"walk\"\nuser = \"postgres\"",
                        backends_ + Table("dual-write"));
  ASSERT_EQ(Run("plan --to shadow-read", out), 1) << out;
  ExpectLines(out, {"public.channels: old-only -> shadow-read\n",
                    "refused:  the flip itself would be refused: "});
  ASSERT_EQ(Run("status", out), 0) << out;
  ExpectLines(out, {"public.channels: old-only since ", "next:     dual-write"});
  Flip("dual-write");
  Traffic(11);
  EXPECT_EQ(New().Value("SELECT name FROM channels_v2 WHERE id = 11"), "c");
  ASSERT_EQ(Run("status", out), 0) << out;
  ExpectLines(
      out, {"public.channels: dual-write since ", "next:     shadow-read",
            "[not met] a clean verify since dual-write", "run:      pgshift backfill --config "});
  ASSERT_EQ(Run("plan --to shadow-read", out), 0) << out;
  ExpectLines(out, {"): SELECT title FROM channels WHERE id = $1\n"
                    "  served by old\n"
                    "  shadowed: on new at sample 1\n"});
  ASSERT_EQ(Run("backfill", out), 0) << out;
  ASSERT_EQ(Run("verify", out), 0) << out;
  ASSERT_EQ(Run("status", out), 0) << out;
  ExpectLines(out,
              {"[met] a clean verify since dual-write", "run:      set phase = \"shadow-read\""});

  // shadow-read: the step into new-primary would refuse the join.
  Flip("shadow-read");
  Traffic(12);
  ASSERT_EQ(Run("status", out), 0) << out;
  ExpectLines(out, {"public.channels: shadow-read since ", "next:     new-primary",
                    "[not met] its key sequence ahead of its keys",
                    "[met] shadow reads compared, few mismatched: "});
  ASSERT_TRUE(New().Ok("SELECT setval('channels_v2_id_seq', 1000)"));
  ASSERT_EQ(Run("status", out), 0) << out;
  ExpectLines(out, {"[met] its key sequence ahead of its keys"});
  ASSERT_EQ(Run("plan --to new-primary", out), 1) << out;
  ExpectLines(
      out, {"refused (read, 3 seen, last ",
            std::string("): ").append(kJoin).append("\n  refusal:  ").append(kJoinRefusal).c_str(),
            "rewritten (read, 3 seen, last ",
            "  served by new\n  sent as:  SELECT name AS title FROM public.channels_v2 channels "
            "WHERE id = $1\n"
            "  shadowed: on old at sample 1\n",
            "3 statement shapes: 1 refused, 2 rewritten, 0 as sent"});
  // The refused statement comes first, for the eye and for scripts.
  EXPECT_LT(out.find("refused (read"), out.find("rewritten (read")) << out;
  ASSERT_EQ(Run("plan --json --to new-primary", out), 1) << out;
  ExpectLines(out,
              {"{\"table\":\"public.channels\",\"from\":\"shadow-read\",\"to\":\"new-primary\"",
               "\"flip_refused\":null,\"refused\":1,\"statements\":[{\"verdict\":\"refused\","
               "\"kind\":\"read\",\"seen\":3,"});

  // new-primary: refused as planned, word for word; writes reach both sides.
  Flip("new-primary");
  PgConn app(proxy_->ConnInfo("dbname=walk"));
  PgResult joined = app.Exec(kJoin);
  EXPECT_EQ(ErrorOf(joined.get()).message, kJoinRefusal);
  Traffic(13);
  ASSERT_EQ(Run("status", out), 0) << out;
  ExpectLines(out, {"public.channels: new-primary since ", "next:     new-only"});
  ASSERT_EQ(Run("plan --to new-only", out), 1) << out;
  ExpectLines(out, {"refused (read, 5 seen, last ", "3 statement shapes: 1 refused, 2 rewritten"});
  EXPECT_EQ(Old().Value("SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM channels"),
            New().Value("SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM channels_v2"));

  // new-only: the end of the walk.
  Flip("new-only");
  ASSERT_EQ(Run("status", out), 0) << out;
  ExpectLines(out, {"public.channels: new-only since ", "next:     none"});
  ASSERT_EQ(Run("plan --to new-primary", out), 1) << out;
  ExpectLines(out, {"refused:  the flip itself would be refused: table \"public.channels\": "
                    "new-only -> new-primary leaves new-only, and old is stale by then"});
}

// Without a login of its own on new, pgshift cannot look for triggers and
// rules writing the new table: status says so, rather than "met".
class OperatorWalkWithoutNewLogin : public OperatorWalk {
 protected:
  OperatorWalkWithoutNewLogin() {
    new_login_ = false;
    start_phase_ = "shadow-read";
  }
};

TEST_F(OperatorWalkWithoutNewLogin, StatusSaysWhatItCouldNotCheck) {
  const std::string admin_port = proxy_settings_.substr(proxy_settings_.rfind(':') + 1, 5);
  std::string out;
  ASSERT_EQ(CaptureCommand("psql -X -h 127.0.0.1 -p " + admin_port +
                               " -U postgres -d pgshift -At -c 'SHOW STATUS'",
                           out),
            0)
      << out;
  ExpectLines(out, {"[unknown] no write reaches it unseen: not checked: pgshift needs a backend's "
                    "dbname and user"});
  EXPECT_TRUE(proxy_->AwaitLog("event=hidden_write_paths_unchecked")) << proxy_->log();
}

}  // namespace
}  // namespace pgshift::testing
