// Column transforms (new_columns), on one database and across two servers:
// a table changes shape as it moves (cents become numeric, a name splits in
// two, a NOT NULL column is computed, a column is dropped, another renamed)
// while the application writes through pgshift with the old names. The
// mirror, backfill and verify compute new's columns with the same
// expressions, so new holds old's rows transformed and verify reports no
// difference; a bad expression is refused, at start, at reload and by
// check-config, naming the table and column.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "tests/integration/environment.h"
#include "tests/support/pg.h"
#include "tests/support/pgshift_process.h"
#include "tests/support/process.h"

namespace pgshift::testing {
namespace {

constexpr const char* kOldItems =
    "CREATE TABLE items (id serial PRIMARY KEY, price_cents int NOT NULL, full_name text NOT "
    "NULL, label text, legacy text);"
    "INSERT INTO items (price_cents, full_name, label, legacy) SELECT g * 7, 'First' || g || ' "
    "Last' || g, 'label ' || g, 'old ' || g FROM generate_series(1, 3000) g;";
constexpr const char* kNewItems =
    "CREATE TABLE items_v2 (id int PRIMARY KEY, price numeric(10,2) NOT NULL, first_name text "
    "NOT NULL, last_name text NOT NULL, title text, slug text NOT NULL);";

std::string Table(const std::string& new_columns) {
  return "[[tables]]\nname = \"items\"\nnew_name = \"items_v2\"\nkey = [\"id\"]\n"
         "phase = \"dual-write\"\ncolumns = { label = \"title\" }\nnew_columns = { " +
         new_columns +
         " }\nold_columns = { price_cents = \"(price * 100)::int\", full_name = \"first_name || "
         "' ' || last_name\" }\n";
}

const std::string kNewColumns =
    "price = \"price_cents / 100.0\", first_name = \"split_part(full_name, ' ', 1)\", "
    "last_name = \"split_part(full_name, ' ', 2)\", slug = \"lower(replace(full_name, ' ', "
    "'-'))\"";

// Old's rows as new should hold them, and new's rows, as text in one order.
constexpr const char* kOldTransformed =
    "SELECT string_agg(concat_ws('|', id, (price_cents / 100.0)::numeric(10,2), "
    "split_part(full_name, ' ', 1), split_part(full_name, ' ', 2), label, "
    "lower(replace(full_name, ' ', '-'))), E'\\n' ORDER BY id) FROM items";
constexpr const char* kNewRows =
    "SELECT string_agg(concat_ws('|', id, price, first_name, last_name, title, slug), E'\\n' "
    "ORDER BY id) FROM items_v2";

std::string One(PgConn& db, const std::string& sql) {
  PgResult r = db.Exec(sql);
  EXPECT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(r.get()) << sql;
  return PQntuples(r.get()) == 1 ? PQgetvalue(r.get(), 0, 0) : "?";
}

class ColumnTransforms : public ::testing::TestWithParam<bool> {
 protected:
  bool two_servers() const { return GetParam(); }

  void SetUp() override {
    const std::string db = two_servers() ? "transform_two" : "transform_one";
    PgConn admin(Cluster().ConnInfo("dbname=postgres"));
    admin.Ok("DROP DATABASE IF EXISTS " + db);
    ASSERT_TRUE(admin.Ok("CREATE DATABASE " + db)) << admin.error();
    old_info_ = Cluster().ConnInfo("dbname=" + db);
    if (two_servers()) {
      new_cluster_ = std::make_unique<PgCluster>();
      ASSERT_TRUE(new_cluster_->ok());
      new_info_ = new_cluster_->ConnInfo("dbname=postgres");
      backends_ = "[backends.new]\nport = " + std::to_string(new_cluster_->port()) +
                  "\ndbname = \"postgres\"\nuser = \"postgres\"\nsslmode = \"disable\"\n";
    } else {
      new_info_ = old_info_;
    }
    PgConn old_db(old_info_), new_db(new_info_);
    ASSERT_TRUE(old_db.Ok(kOldItems)) << old_db.error();
    ASSERT_TRUE(new_db.Ok(kNewItems)) << new_db.error();
    old_settings_ = "dbname = \"" + db + "\"\nuser = \"postgres\"";
  }

  std::string Config(const std::string& new_columns) const {
    return backends_ + Table(new_columns);
  }

  int Run(const std::string& command, const PgshiftProcess& proxy, std::string& out) {
    return CaptureCommand(
        PgshiftBinary() + " " + command + " --config " + proxy.dir() + "/pgshift.toml", out);
  }

  std::string old_info_, new_info_, backends_, old_settings_;
  std::unique_ptr<PgCluster> new_cluster_;
};

TEST_P(ColumnTransforms, MirrorBackfillAndVerifyComputeNewsColumns) {
  PgshiftProcess proxy(Cluster().port(), "", old_settings_, Config(kNewColumns));
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();

  // The application writes with the old names and types while backfill
  // copies: inserts, updates of the transformed columns, deletes.
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::thread load([&] {
    PgConn app(proxy.ConnInfo());
    for (int n = 1; !stop.load() || writes.load() < 60; ++n) {
      const std::string id = std::to_string(n * 37 % 3000 + 1);
      std::string sql;
      switch (n % 4) {
        case 0:
          sql = "INSERT INTO items (price_cents, full_name, label, legacy) VALUES (" +
                std::to_string(n) + ", 'New" + std::to_string(n) + " Person', 'l', 'x')";
          break;
        case 1:
          sql = "UPDATE items SET price_cents = price_cents + 101, full_name = 'Up" +
                std::to_string(n) + " Dated' WHERE id = " + id;
          break;
        case 2:
          sql = "BEGIN; UPDATE items SET label = NULL WHERE id = " + id +
                "; UPDATE items SET price_cents = 5 WHERE id = " + id + "; COMMIT";
          break;
        default: sql = "DELETE FROM items WHERE id = " + id; break;
      }
      ASSERT_TRUE(app.Ok(sql)) << app.error() << sql;
      ++writes;
    }
  });
  std::string out;
  const int copied = Run("backfill --batch 400 --jobs 2 --table items", proxy, out);
  stop = true;
  load.join();
  ASSERT_EQ(copied, 0) << out;

  // The application reads with its own names and sees what old holds.
  PgConn app(proxy.ConnInfo()), old_db(old_info_), new_db(new_info_);
  const std::string read = "SELECT string_agg(i::text, E'\\n' ORDER BY id) FROM items i";
  EXPECT_EQ(One(app, read), One(old_db, read));
  // New holds old's rows transformed; legacy stayed behind.
  EXPECT_EQ(One(new_db, kNewRows), One(old_db, kOldTransformed));
  EXPECT_EQ(One(new_db, "SELECT count(*) FROM items_v2 WHERE slug LIKE 'up%-dated'"),
            One(old_db, "SELECT count(*) FROM items WHERE full_name LIKE 'Up% Dated'"));
  ASSERT_EQ(Run("verify --jobs 2 --table items", proxy, out), 0) << out;
  EXPECT_NE(out.find(" 0 differences"), std::string::npos) << out;

  // A value new holds otherwise than the expression computes is found and
  // repaired with it.
  ASSERT_TRUE(
      new_db.Ok("UPDATE items_v2 SET price = price + 1 WHERE id = (SELECT min(id) FROM "
                "items_v2); UPDATE items_v2 SET slug = 'x' WHERE id = (SELECT max(id) "
                "FROM items_v2)"));
  EXPECT_EQ(Run("verify --table items", proxy, out), 1) << out;
  EXPECT_NE(out.find(" 2 differences"), std::string::npos) << out;
  ASSERT_EQ(Run("verify --repair --table items", proxy, out), 0) << out;
  EXPECT_EQ(One(new_db, kNewRows), One(old_db, kOldTransformed));
  ASSERT_EQ(Run("check-config --against-database", proxy, out), 0) << out;
  EXPECT_NE(out.find("2 paired; computed on new (new_columns): first_name, last_name, price, "
                     "slug; dropped (old only, not copied): legacy"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("down(up(row)) = row for full_name, price_cents on "), std::string::npos)
      << out;

  // shadow-read: the application still reads old, and every read is also
  // run on new rewritten through old_columns and compared: none differs.
  // A `*` read would need legacy, which new lacks: skipped, with the reason.
  std::string text = ReadFile(proxy.dir() + "/pgshift.toml");
  text.replace(text.find("phase = \"dual-write\""), 20,
               "phase = \"shadow-read\"\nshadow_sample = 1.0");
  proxy.WriteRawConfig(text);
  const std::string verdict = proxy.Reload();
  ASSERT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  ASSERT_TRUE(
      app.Ok("UPDATE items SET price_cents = 4321, full_name = 'Shadow Reader' WHERE id = "
             "(SELECT min(id) FROM items)"))
      << app.error();
  const std::vector<std::string> reads = {
      "SELECT * FROM items WHERE id = 11",
      "SELECT i.* FROM items i WHERE i.full_name LIKE 'First1_ %' ORDER BY i.price_cents DESC",
      "SELECT price_cents, full_name FROM items WHERE price_cents = 4321",
      "SELECT i.id, i.label, i.full_name FROM items i WHERE i.full_name LIKE 'First1_ %' ORDER "
      "BY i.price_cents DESC",
      "SELECT full_name, sum(price_cents) AS total FROM items GROUP BY full_name ORDER BY "
      "full_name LIMIT 20",
      "SELECT count(*) FROM items WHERE price_cents BETWEEN 100 AND 900 AND label IS NOT NULL",
      "SELECT id, price_cents::text AS cents FROM items ORDER BY price_cents, id LIMIT 5"};
  for (const std::string& sql : reads) {
    const std::string all =
        "SELECT string_agg(r::text, E'\\n' ORDER BY r::text) FROM (" + sql + ") r";
    EXPECT_EQ(One(app, all), One(old_db, all)) << sql;
    ASSERT_TRUE(app.Ok(sql)) << app.error() << sql;
  }
  auto count = [&](const std::string& event) {
    size_t n = 0;
    const std::string log = proxy.log();
    for (size_t at = log.find(event); at != std::string::npos; at = log.find(event, at + 1)) ++n;
    return n;
  };
  const std::string matched = "event=shadow_compared table=public.items reads=one outcome=matched";
  const std::string skipped =
      "event=shadow_skipped table=public.items query=\"SELECT * FROM items WHERE id = $1\" "
      "reason=\"it cannot be read on the other side: pgshift cannot expand * over public.items: "
      "its column legacy is not on public.items_v2 and old_columns does not compute it; list the "
      "columns\"";
  for (int i = 0; i < 200 && count(matched) < 2 * (reads.size() - 2); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(count(matched), 2 * (reads.size() - 2)) << proxy.LogEnd();
  EXPECT_EQ(count(skipped), 1u) << proxy.LogEnd();
  EXPECT_EQ(count("event=shadow_skipped"), 4u) << proxy.LogEnd();
  EXPECT_EQ(count("event=shadow_mismatch"), 0u) << proxy.LogEnd();
  EXPECT_EQ(Run("check-config --against-database", proxy, out), 0) << out;
  EXPECT_NE(out.find("new-primary is not available yet"), std::string::npos) << out;
}

TEST_P(ColumnTransforms, ABadExpressionIsRefusedNamingItsTableAndColumn) {
  PgshiftProcess proxy(Cluster().port(), "", old_settings_, Config(kNewColumns));
  ASSERT_TRUE(proxy.ok()) << proxy.LogEnd();
  const std::string good = ReadFile(proxy.dir() + "/pgshift.toml");
  auto with = [&](const std::string& new_columns) {
    std::string text = good;
    text.replace(text.find(kNewColumns), kNewColumns.size(), new_columns);
    return text;
  };
  // A column old lacks: pgshift does not start, and does not reload.
  const std::string typo = with(
      "price = \"price_cent / 100.0\", first_name = \"full_name\", last_name = \"full_name\", "
      "slug = \"full_name\"");
  WriteFile(proxy.dir() + "/typo.toml", typo);
  std::string out;
  EXPECT_EQ(
      CaptureCommand(
          "timeout 30 " + PgshiftBinary() + " serve --config " + proxy.dir() + "/typo.toml", out),
      1)
      << out;
  EXPECT_NE(out.find("new_columns of public.items cannot be computed from public.items on "
                     "backend old"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("price_cent"), std::string::npos) << out;
  proxy.WriteRawConfig(typo);
  std::string verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_rejected"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("price_cent"), std::string::npos) << verdict;
  {
    // The running configuration stays, and mirrors with its expressions.
    PgConn app(proxy.ConnInfo()), new_db(new_info_);
    ASSERT_TRUE(app.Ok("UPDATE items SET price_cents = 1 WHERE id = 1")) << app.error();
    EXPECT_EQ(One(new_db, "SELECT price::text FROM items_v2 WHERE id = 1"), "0.01");
  }
  // A NOT NULL column of new that nothing fills.
  proxy.WriteRawConfig(
      with("price = \"price_cents / 100.0\", first_name = \"full_name\", last_name = "
           "\"full_name\""));
  verdict = proxy.Reload();
  EXPECT_NE(verdict.find("items_v2.slug is NOT NULL without a default, and no column of "
                         "public.items fills it"),
            std::string::npos)
      << verdict;
  EXPECT_EQ(Run("check-config --against-database", proxy, out), 1) << out;
  EXPECT_NE(out.find("items_v2.slug is NOT NULL without a default"), std::string::npos) << out;
  // Each value must be one value of the row, the same in every session
  // that computes it: no aggregate, no set, nothing volatile or stable.
  for (const auto& [slug, reason] :
       {std::pair{"max(full_name)", "must appear in the GROUP BY clause"},
        std::pair{"unnest(string_to_array(full_name, ' '))",
                  "set-returning functions are not allowed"},
        std::pair{"full_name || random()", "generation expression is not immutable"},
        std::pair{"full_name || now()", "generation expression is not immutable"}}) {
    proxy.WriteRawConfig(
        with("price = \"price_cents / 100.0\", first_name = \"full_name\", "
             "last_name = \"full_name\", slug = \"" +
             std::string(slug) + "\""));
    verdict = proxy.Reload();
    EXPECT_NE(verdict.find(reason), std::string::npos) << slug << ": " << verdict;
  }
  // A transform that does not give old's value back, and a column with no
  // way back: check-config says what new-primary would write to old.
  const std::string down = "\"first_name || ' ' || last_name\"";
  std::string lossy = good;
  lossy.replace(lossy.find(down), down.size(), "\"first_name\"");
  proxy.WriteRawConfig(lossy);
  EXPECT_EQ(Run("check-config --against-database", proxy, out), 1) << out;
  EXPECT_NE(out.find("FAIL  round trip"), std::string::npos) << out;
  EXPECT_NE(out.find(" sampled rows do not come back through old_columns (key "), std::string::npos)
      << out;
  EXPECT_NE(out.find(": full_name 'First"), std::string::npos) << out;
  EXPECT_NE(out.find(", back 'First"), std::string::npos) << out;
  lossy = good;
  lossy.replace(lossy.find(", full_name = " + down), 14 + down.size(), "");
  proxy.WriteRawConfig(lossy);
  EXPECT_EQ(Run("check-config --against-database", proxy, out), 1) << out;
  EXPECT_NE(out.find("full_name read by new_columns, neither copied to new nor computed back by "
                     "old_columns: new-primary could not write it back to old"),
            std::string::npos)
      << out;

  // new authoritative is not built yet: a step past shadow-read is refused
  // with the reason.
  std::string next = good;
  next.replace(next.find("phase = \"dual-write\""), 20, "phase = \"new-primary\"\nforce = true");
  proxy.WriteRawConfig(next);
  verdict = proxy.Reload();
  EXPECT_NE(verdict.find("is not available to public.items yet"), std::string::npos) << verdict;

  // A column an expression reads, renamed under the running file: a reload
  // that leaves the table's transforms and phase alone still applies (and
  // says why the table's mirror is broken), and a write of the table fails
  // whole, on neither side.
  proxy.WriteRawConfig(good);
  ASSERT_NE(proxy.Reload().find("event=config_reloaded"), std::string::npos);
  PgConn old_db(old_info_), new_db(new_info_);
  ASSERT_TRUE(old_db.Ok("ALTER TABLE items RENAME COLUMN full_name TO name_in_full"));
  proxy.WriteRawConfig(good + "# touched\n");
  verdict = proxy.Reload();
  EXPECT_NE(verdict.find("event=config_reloaded"), std::string::npos) << verdict;
  EXPECT_TRUE(proxy.AwaitLog("column \\\"full_name\\\" does not exist")) << proxy.LogEnd();
  PgConn app(proxy.ConnInfo());
  EXPECT_FALSE(app.Ok("UPDATE items SET price_cents = 777777 WHERE id = 2"));
  EXPECT_EQ(One(old_db, "SELECT count(*) FROM items WHERE price_cents = 777777"), "0");
  EXPECT_EQ(One(new_db, "SELECT count(*) FROM items_v2 WHERE price = 7777.77"), "0");
}

INSTANTIATE_TEST_SUITE_P(Topologies, ColumnTransforms, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "TwoServers" : "OneDatabase";
                         });

}  // namespace
}  // namespace pgshift::testing
