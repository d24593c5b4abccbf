// backfill, verify and verify --repair with keys of every kind, on one
// database and across two servers, while writes run through pgshift: text
// keys holding backslashes, newlines, tabs, quotes, commas, braces, emoji and
// the empty string; a composite key of text, int and date; uuid and numeric
// keys; a text key whose collation differs between the sides. Keys travel as data, so none is
// mistaken for another (nor as a bound of the key ranges workers share), and the sweep of rows
// deleted meanwhile never deletes a row it has just copied. Each run ends with old equal to new, by
// verify and by EXCEPT ALL both ways.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>

#include "common/json.h"
#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

struct KeyKind {
  std::string table;
  std::string key_columns;  // as in the configuration's key = [...]
  std::string columns;      // CREATE TABLE's column list, the same on both sides
  std::string rows;         // a SELECT of the rows old starts with
  std::string write;        // one write of the load, `%d` a number
  std::string new_columns = {};  // new's column list, when not `columns`
};

const std::vector<KeyKind>& Kinds() {
  static const std::vector<KeyKind> kinds = {
      {"k_text", "\"k\"", "k text PRIMARY KEY, v text",
       "SELECT k, 'v' FROM unnest(ARRAY[E'back\\\\slash', E'new\\nline', E'tab\\there', "
       "'quote''s \"double\"', 'comma,value', '{braces}', 'emoji 🎉', '', 'NULL', ' spaced ', "
       "E'\\\\u0041', '\"', E'\\\\', 'ROW(1)']) k UNION ALL SELECT 'plain ' || g, 'v' FROM "
       "generate_series(1, 3000) g",
       "INSERT INTO k_text VALUES (E'new\\n%d', 'w') ON CONFLICT (k) DO UPDATE SET v = 'u'"},
      {"k_mixed", "\"a\", \"b\", \"c\"", "a text, b int, c date, v text, PRIMARY KEY (a, b, c)",
       "SELECT a, b, date '2026-01-01' + b, 'v' FROM unnest(ARRAY['x,y', E'x\\ny', '(x)', '']) "
       "a, generate_series(1, 800) b",
       "UPDATE k_mixed SET v = v || '+' WHERE a = 'x,y' AND b = %d % 800 + 1"},
      {"k_uuid", "\"k\"", "k uuid PRIMARY KEY, v int",
       "SELECT md5(g::text)::uuid, g FROM generate_series(1, 3000) g",
       "DELETE FROM k_uuid WHERE k = md5((%d % 3000 + 1)::text)::uuid"},
      {"k_numeric", "\"k\"", "k numeric PRIMARY KEY, v text",
       "SELECT g / 7.0, 'v' FROM generate_series(1, 3000) g UNION ALL SELECT 1e30, 'big' "
       "UNION ALL SELECT -0.000001, 'small'",
       "INSERT INTO k_numeric VALUES (%d + 0.5, 'w') ON CONFLICT (k) DO NOTHING"},
      // Every column kind: an identity key (copied with its values), a
      // generated column (computed on each side, never written), a domain,
      // an array, jsonb, bytea and timestamptz (new runs in another time
      // zone across servers).
      {"k_columns", "\"k\"",
       "k int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, d posint, a int[], j jsonb, "
       "b bytea, t timestamptz, twice int GENERATED ALWAYS AS (k * 2) STORED",
       "OVERRIDING SYSTEM VALUE SELECT g, 'v', g, ARRAY[g, NULL, g + 1], "
       "jsonb_build_object('n', g, 's', E'x\"y\\n'), decode(md5(g::text), 'hex'), "
       "timestamptz '2026-01-01 00:00+00' + g * interval '1 minute' FROM generate_series(1, "
       "2000) g; SELECT setval(pg_get_serial_sequence('k_columns', 'k'), 5000)",
       "INSERT INTO k_columns (v, d, a, j, b, t) VALUES ('w', %d, ARRAY[%d], '{\"n\": %d}', "
       "'\\x00ff', now())"},
      // A text key that sorts otherwise on the two sides (bytes on old,
      // ICU's root locale on new: 'B' < 'a' against 'a' < 'B'): ranges
      // of keys must hold the same keys on both.
      {"k_collated", "\"k\"", "k text COLLATE \"C\" PRIMARY KEY, v text",
       "SELECT chr(65 + g % 26 + (g % 2) * 32) || g, 'v' FROM generate_series(1, 3000) g",
       "UPDATE k_collated SET v = v || '+' WHERE k = chr(65 + %d % 26 + (%d % 2) * 32) || %d % "
       "3000",
       "k text COLLATE \"und-x-icu\" PRIMARY KEY, v text"},
  };
  return kinds;
}

std::string TablesToml() {
  std::string out;
  for (const KeyKind& kind : Kinds()) {
    out += "[[tables]]\nname = \"" + kind.table + "\"\nnew_name = \"" + kind.table +
           "_v2\"\nkey = [" + kind.key_columns + "]\nphase = \"dual-write\"\n";
  }
  return out;
}

std::string Format(std::string text, int n) {
  for (size_t at = text.find("%d"); at != std::string::npos; at = text.find("%d")) {
    text.replace(at, 2, std::to_string(n));
  }
  return text;
}

void Exec(PgConn& db, const std::string& sql) {
  PgResult r = db.Exec(sql);
  ASSERT_TRUE(PQresultStatus(r.get()) == PGRES_COMMAND_OK ||
              PQresultStatus(r.get()) == PGRES_TUPLES_OK)
      << PQresultErrorMessage(r.get()) << sql;
}

// Rows of one side that the other lacks, counted with duplicates.
std::string Lacking(PgConn& from, PgConn& to, const std::string& table, const std::string& other) {
  // Across servers the two sides are compared as text rows, in one time zone.
  from.Ok("SET timezone = 'UTC'");
  to.Ok("SET timezone = 'UTC'");
  PgResult rows = from.Exec("SELECT t::text FROM " + table + " t");
  EXPECT_EQ(PQresultStatus(rows.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(rows.get());
  std::vector<std::string> params;
  for (int i = 0; i < PQntuples(rows.get()); ++i) {
    params.emplace_back(PQgetvalue(rows.get(), i, 0));
  }
  std::vector<const char*> raw;
  const std::string json = JsonArray(params);
  raw.push_back(json.c_str());
  PgResult r(PQexecParams(to.get(),
                          ("SELECT count(*) FROM (SELECT jsonb_array_elements_text($1::jsonb) "
                           "EXCEPT ALL SELECT t::text FROM " +
                           other + " t) d")
                              .c_str(),
                          1, nullptr, raw.data(), nullptr, nullptr, 0));
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(r.get());
  return PQntuples(r.get()) == 1 ? PQgetvalue(r.get(), 0, 0) : "?";
}

class KeyKinds : public ::testing::TestWithParam<bool> {
 protected:
  bool two_servers() const { return GetParam(); }

  void SetUp() override {
    const std::string db = two_servers() ? "keys_two" : "keys_one";
    PgConn admin(Cluster().ConnInfo("dbname=postgres"));
    admin.Ok("DROP DATABASE IF EXISTS " + db);
    ASSERT_TRUE(admin.Ok("CREATE DATABASE " + db)) << admin.error();
    old_info_ = Cluster().ConnInfo("dbname=" + db);
    std::string backends;
    if (two_servers()) {
      new_cluster_ = std::make_unique<PgCluster>();
      ASSERT_TRUE(new_cluster_->ok());
      new_info_ = new_cluster_->ConnInfo("dbname=postgres");
      backends = "[backends.new]\nport = " + std::to_string(new_cluster_->port()) +
                 "\ndbname = \"postgres\"\nuser = \"postgres\"\nsslmode = \"disable\"\n";
    } else {
      new_info_ = old_info_;
    }
    PgConn old_db(old_info_), new_db(new_info_);
    Exec(old_db, "CREATE DOMAIN posint AS int CHECK (VALUE > 0)");
    if (two_servers()) {
      Exec(new_db,
           "CREATE DOMAIN posint AS int CHECK (VALUE > 0);"
           "ALTER DATABASE postgres SET timezone = 'Pacific/Chatham'");
    }
    for (const KeyKind& kind : Kinds()) {
      Exec(old_db, "CREATE TABLE " + kind.table + " (" + kind.columns + "); INSERT INTO " +
                       kind.table + " " + kind.rows);
      Exec(new_db, "CREATE TABLE " + kind.table + "_v2 (" +
                       (kind.new_columns.empty() ? kind.columns : kind.new_columns) + ")");
    }
    backends_ = backends;
    old_settings_ = "dbname = \"" + db + "\"\nuser = \"postgres\"";
    proxy_ = std::make_unique<PgshiftProcess>(Cluster().port(), "", old_settings_,
                                              backends + TablesToml());
    ASSERT_TRUE(proxy_->ok()) << proxy_->LogEnd();
  }

  int Run(const std::string& command, const std::string& table, std::string& out,
          const PgshiftProcess* proxy = nullptr) {
    // Quoted for the shell: a table's name may hold quotes and spaces.
    std::string quoted = "'";
    for (char c : table) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    quoted += "'";
    return CaptureCommand(PgshiftBinary() + " " + command + " --config " +
                              (proxy ? proxy : proxy_.get())->dir() + "/pgshift.toml --table " +
                              quoted,
                          out);
  }

  // Old and new hold the same rows, by EXCEPT ALL both ways.
  void ExpectEqual(const KeyKind& kind) { ExpectEqual(kind.table, kind.table + "_v2"); }
  void ExpectEqual(const std::string& old_table, const std::string& new_table) {
    PgConn old_db(old_info_), new_db(new_info_);
    EXPECT_EQ(Lacking(old_db, new_db, old_table, new_table), "0")
        << old_table << ": rows of old missing on new";
    EXPECT_EQ(Lacking(new_db, old_db, new_table, old_table), "0")
        << old_table << ": rows of new missing on old";
  }

  std::string old_info_, new_info_, backends_, old_settings_;
  std::unique_ptr<PgCluster> new_cluster_;
  std::unique_ptr<PgshiftProcess> proxy_;
};

TEST_P(KeyKinds, BackfillVerifyAndRepairKeepEveryKeyUnderLoad) {
  for (const KeyKind& kind : Kinds()) {
    SCOPED_TRACE(kind.table);
    std::atomic<bool> stop{false};
    std::atomic<int> writes{0}, errors{0};
    std::thread load([&] {
      PgConn app(proxy_->ConnInfo());
      for (int n = 1; !stop.load(); ++n) {
        if (app.Ok(Format(kind.write, n))) {
          ++writes;
        } else {
          ++errors;
          ADD_FAILURE() << app.error();
        }
      }
    });
    std::string out;
    // Two workers, each key range's bounds sampled from these keys.
    const int copied = Run("backfill --batch 500 --jobs 2", kind.table, out);
    stop = true;
    load.join();
    ASSERT_EQ(copied, 0) << out;
    if (two_servers()) {
      // A domain is not built in: k_columns's rows travel as text.
      const bool binary = kind.table != "k_columns";
      EXPECT_NE(out.find(binary ? "rows travel by COPY in binary format"
                                : "rows travel by COPY in text format"),
                std::string::npos)
          << out;
    }
    EXPECT_GT(writes.load(), 0);
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(Run("verify --chunk 700 --jobs 2", kind.table, out), 0) << out;
    // Equal sides: every range's checksums agree (none read row by row).
    EXPECT_NE(out.find("(0 compared row by row)"), std::string::npos) << out;
    ExpectEqual(kind);

    // Differences of each kind, among the odd keys, then repaired.
    PgConn new_db(new_info_);
    const std::string copy = kind.table + "_v2";
    Exec(new_db, "DELETE FROM " + copy + " WHERE ctid IN (SELECT ctid FROM " + copy + " ORDER BY " +
                     kind.key_columns + " LIMIT 5)");
    Exec(new_db, "UPDATE " + copy + " SET v = NULL WHERE ctid IN (SELECT ctid FROM " + copy +
                     " ORDER BY " + kind.key_columns + " DESC LIMIT 3)");
    EXPECT_EQ(Run("verify --jobs 3", kind.table, out), 1) << out;
    EXPECT_NE(out.find(" 8 differences"), std::string::npos) << out;
    ASSERT_EQ(Run("verify --repair --jobs 2", kind.table, out), 0) << out;
    EXPECT_EQ(Run("verify", kind.table, out), 0) << out;
    ExpectEqual(kind);
  }
}

// verify --repair while clients update, delete and insert the same keys
// through pgshift: the authoritative rows are held while the mirror is
// rewritten, so no write made meanwhile is overwritten by an older row.
TEST_P(KeyKinds, RepairUnderWritesToTheSameKeysNeverRevertsOne) {
  const KeyKind& kind = Kinds()[0];  // k_text
  std::string out;
  ASSERT_EQ(Run("backfill --batch 1000", kind.table, out), 0) << out;
  PgConn new_db(new_info_);
  Exec(new_db, "UPDATE k_text_v2 SET v = 'stale' WHERE k LIKE 'plain %'");
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t) {
    load.emplace_back([&, t] {
      PgConn app(proxy_->ConnInfo());
      std::mt19937 random(t);
      while (!stop.load()) {
        const std::string key = "'plain " + std::to_string(random() % 3000 + 1) + "'";
        std::string sql;
        switch (random() % 4) {
          case 0: sql = "DELETE FROM k_text WHERE k = " + key; break;
          case 1:
            sql = "INSERT INTO k_text VALUES (" + key + ", 'back') ON CONFLICT (k) DO NOTHING";
            break;
          default: sql = "UPDATE k_text SET v = v || '+' WHERE k = " + key; break;
        }
        if (app.Ok(sql)) ++writes;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int repaired = Run("verify --repair --chunk 500", kind.table, out);
  stop = true;
  for (std::thread& t : load) t.join();
  EXPECT_EQ(repaired, 0) << out;
  EXPECT_NE(out.find("repaired"), std::string::npos) << out;
  EXPECT_GT(writes.load(), 100);
  EXPECT_EQ(Run("verify", kind.table, out), 0) << out;
  ExpectEqual(kind);
}

// Tables and columns named with quotes, a dot, upper case, spaces and
// letters outside ASCII, the key column among them and one column renamed:
// mirrored through pgshift, copied, verified and repaired.
TEST_P(KeyKinds, OddIdentifiersWorkInEveryCommandAndInMirroring) {
  const std::string old_table = R"(public."Odd ""Tab'le"".ü")";
  const std::string new_table = R"(public."New Tab'le")";
  const std::string key = R"("Key ""Col""")";
  PgConn old_db(old_info_), new_db(new_info_);
  Exec(old_db, "CREATE TABLE " + old_table + " (" + key +
                   R"( int PRIMARY KEY, "Mixed Case" text, "dot.ted" int); INSERT INTO )" +
                   old_table + " SELECT g, 'row ' || g, g FROM generate_series(1, 500) g");
  Exec(new_db, "CREATE TABLE " + new_table + " (" + key +
                   R"( int PRIMARY KEY, "Mixed Case" text, "ünïcode" int))");
  PgshiftProcess proxy(Cluster().port(), "", old_settings_, backends_ + R"([[tables]]
name = "public.Odd \"Tab'le\".ü"
new_name = "public.New Tab'le"
key = ["Key \"Col\""]
columns = { "dot.ted" = "ünïcode" }
phase = "dual-write"
)");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  PgConn app(proxy.ConnInfo());
  const std::string table = R"("Odd ""Tab'le"".ü")";
  ASSERT_TRUE(app.Ok("INSERT INTO " + table + " (" + key +
                     R"(, "Mixed Case", "dot.ted") VALUES (1001, 'new', 7))"))
      << app.error();
  ASSERT_TRUE(app.Ok("UPDATE " + table + R"( SET "dot.ted" = 8 WHERE )" + key + " = 1001"))
      << app.error();
  EXPECT_EQ(new_db.Value(R"(SELECT "ünïcode" FROM )" + new_table + " WHERE " + key + " = 1001"),
            "8");
  ASSERT_TRUE(app.Ok("DELETE FROM " + table + " WHERE " + key + " = 1001")) << app.error();
  ASSERT_TRUE(app.Ok("INSERT INTO " + table + " VALUES (1002, 'kept', 9)")) << app.error();
  EXPECT_EQ(new_db.Value(R"(SELECT "ünïcode" FROM )" + new_table + " WHERE " + key + " = 1002"),
            "9");
  EXPECT_EQ(new_db.Value("SELECT count(*) FROM " + new_table + " WHERE " + key + " = 1001"), "0");
  const std::string name = "public.Odd \"Tab'le\".ü";
  std::string out;
  ASSERT_EQ(Run("backfill --batch 100", name, out, &proxy), 0) << out;
  EXPECT_EQ(Run("verify --chunk 150", name, out, &proxy), 0) << out;
  Exec(new_db, "DELETE FROM " + new_table + " WHERE " + key + " <= 3; UPDATE " + new_table +
                   R"( SET "Mixed Case" = 'x' WHERE )" + key + " = 400; INSERT INTO " + new_table +
                   " VALUES (-1, 'extra', 0)");
  EXPECT_EQ(Run("verify", name, out, &proxy), 1) << out;
  EXPECT_NE(out.find(" 5 differences"), std::string::npos) << out;
  ASSERT_EQ(Run("verify --repair", name, out, &proxy), 0) << out;
  EXPECT_EQ(Run("verify", name, out, &proxy), 0) << out;
  ExpectEqual(old_table, new_table);
}

// A table mirrored without a key (an append-only log) is verified as a
// multiset of whole rows and repaired: rows old has that new lacks (as a
// write under on_mirror_error = "log" leaves them while new is down),
// duplicates one side has more of, rows only new has; the repair while
// inserts run.
TEST_P(KeyKinds, AKeylessTableIsVerifiedAndRepairedAsAMultiset) {
  PgConn old_db(old_info_), new_db(new_info_);
  Exec(old_db, "CREATE TABLE k_log (n int, note text)");
  Exec(new_db, "CREATE TABLE k_log_v2 (n int, note text)");
  PgshiftProcess proxy(Cluster().port(), "", old_settings_,
                       backends_ +
                           "[[tables]]\nname = \"k_log\"\nnew_name = \"k_log_v2\"\n"
                           "phase = \"dual-write\"\non_mirror_error = \"log\"\n");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  PgConn app(proxy.ConnInfo());
  ASSERT_TRUE(app.Ok("INSERT INTO k_log SELECT g % 300, 'same' FROM generate_series(1, 3000) g"))
      << app.error();
  std::string out;
  EXPECT_EQ(Run("verify", "k_log", out, &proxy), 0) << out;
  Exec(old_db, "INSERT INTO k_log VALUES (7, 'only on old'), (7, 'only on old'), (NULL, NULL)");
  Exec(new_db,
       "DELETE FROM k_log_v2 WHERE ctid IN (SELECT ctid FROM k_log_v2 WHERE n = 5 LIMIT 4);"
       "INSERT INTO k_log_v2 VALUES (-1, 'only on new')");
  EXPECT_EQ(Run("verify", "k_log", out, &proxy), 1) << out;
  EXPECT_NE(out.find("missing in new (3)"), std::string::npos) << out;
  EXPECT_NE(out.find("extra in new (1)"), std::string::npos) << out;
  EXPECT_NE(out.find(" x4"), std::string::npos) << "four copies of one row\n" << out;
  // Repaired while inserts run through pgshift: a row in flight between
  // the two sides is no difference (one snapshot on one database; across
  // servers, what differs twice).
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread load([&] {
    PgConn writer(proxy.ConnInfo());
    for (int n = 100000; !stop.load(); ++n) {
      if (writer.Ok("INSERT INTO k_log VALUES (" + std::to_string(n) + ", 'load')")) ++writes;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int repaired = Run("verify --repair", "k_log", out, &proxy);
  stop = true;
  load.join();
  EXPECT_EQ(repaired, 0) << out;
  EXPECT_NE(out.find("missing in new (3)"), std::string::npos) << out;
  EXPECT_NE(out.find("extra in new (1)"), std::string::npos) << out;
  EXPECT_NE(out.find("repaired"), std::string::npos) << out;
  EXPECT_GT(writes.load(), 10);
  EXPECT_EQ(Run("verify", "k_log", out, &proxy), 0) << out;
  ExpectEqual("k_log", "k_log_v2");
  EXPECT_NE(Run("backfill", "k_log", out, &proxy), 0) << "backfill still wants a key\n" << out;
}

// check-config --against-database says, per table, what a person must
// know before moving it on, and fails (exit 1) on what would stop it: no
// unique index on new for the key, a write that reaches it unseen.
TEST_P(KeyKinds, CheckConfigAgainstTheDatabasesSaysWhatEachTableNeeds) {
  PgConn old_db(old_info_), new_db(new_info_);
  Exec(old_db,
       "CREATE TABLE k_check (id int PRIMARY KEY, a int, legacy text);"
       "CREATE FUNCTION k_check_log() RETURNS trigger LANGUAGE plpgsql AS "
       "  'BEGIN RETURN NULL; END';"
       "CREATE TRIGGER k_check_log AFTER INSERT ON k_check FOR EACH ROW "
       "  EXECUTE FUNCTION k_check_log()");
  Exec(new_db, "CREATE TABLE k_check_v2 (id bigint, a int)");
  PgshiftProcess proxy(Cluster().port(), "", old_settings_,
                       backends_ +
                           "[[tables]]\nname = \"k_check\"\nnew_name = \"k_check_v2\"\n"
                           "key = [\"id\"]\nphase = \"old-only\"\n");
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  const std::string command = PgshiftBinary() + " check-config --against-database --config " +
                              proxy.dir() + "/pgshift.toml";
  std::string out;
  EXPECT_EQ(CaptureCommand(command, out), 1) << out;
  for (const char* said :
       {"public.k_check (old-only)", "no unique index on (id) in public.k_check_v2",
        "dropped (old only, not copied): legacy", "differ: \"id\" integer -> \"id\" bigint",
        "FAIL  hidden writes (old)  trigger k_check_log on k_check",
        "dual-write next: backfill, then verify"}) {
    EXPECT_NE(out.find(said), std::string::npos) << said << "\n" << out;
  }
  Exec(new_db, "ALTER TABLE k_check_v2 ADD PRIMARY KEY (id)");
  Exec(old_db, "DROP TRIGGER k_check_log ON k_check");
  EXPECT_EQ(CaptureCommand(command, out), 0) << out;
  EXPECT_EQ(out.find("FAIL"), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Topologies, KeyKinds, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "TwoServers" : "OneDatabase");
                         });

}  // namespace
}  // namespace pgshift::testing
