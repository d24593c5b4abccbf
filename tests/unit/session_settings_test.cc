// A session's setting changes: found by the parser, and kept as the
// statements that bring a second server to the same state.
#include "routing/session_settings.h"

#include <gtest/gtest.h>

namespace pgshift::routing {
namespace {

using Strings = std::vector<std::string>;

TEST(SessionSettings, ThePrefilterPassesEveryChangeAndSkipsPlainStatements) {
  for (const char* sql : {"SET x = 1", "reset all", "Discard All", "SELECT 1; set search_path to a",
                          "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                          "begin isolation level serializable", "  /* c */ -- d\n SET x = 1",
                          "SELECT 1;START TRANSACTION READ ONLY"}) {
    EXPECT_TRUE(MayChangeSettings(sql)) << sql;
  }
  for (const char* sql : {"SELECT * FROM posts WHERE id = 1", "UPDATE t SET a = 1 WHERE b = 'set'",
                          "SELECT offset_set FROM settings", "", "SELECT 1;", "BEGIN;",
                          "start transaction"}) {
    EXPECT_FALSE(MayChangeSettings(sql)) << sql;
  }
}

TEST(SessionSettings, ThePrefilterPassesEveryBeginAndSkipsOtherStatements) {
  for (const char* sql : {"BEGIN", "begin work", "  /* c */ START TRANSACTION READ ONLY",
                          "-- x\nBegin ISOLATION LEVEL SERIALIZABLE", "(begin)"}) {
    EXPECT_TRUE(MayBeginTransaction(sql)) << sql;
  }
  for (const char* sql : {"COMMIT", "INSERT INTO t VALUES ('begin')", "SELECT 1; BEGIN", "",
                          "SET x = 1", "ROLLBACK"}) {
    EXPECT_FALSE(MayBeginTransaction(sql)) << sql;
  }
}

TEST(SessionSettings, ChangesAreFoundByKindWithTheClientsText) {
  std::vector<SettingChange> changes = SettingChangesOf(
      "SET search_path TO app, public; SELECT 1; SET LOCAL statement_timeout = 5;"
      " RESET TimeZone; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; RESET ALL;"
      " DISCARD ALL; DISCARD PLANS; SET TRANSACTION SNAPSHOT '00000003-0000001B-1';"
      " SET NAMES 'UTF8'");
  ASSERT_EQ(changes.size(), 7u);
  EXPECT_EQ(changes[0].kind, SettingChange::kSession);
  EXPECT_EQ(changes[0].key, "search_path");
  EXPECT_EQ(changes[0].sql, "SET search_path TO app, public");
  EXPECT_EQ(changes[1].kind, SettingChange::kTransaction);
  EXPECT_EQ(changes[1].key, "statement_timeout");
  EXPECT_EQ(changes[2].kind, SettingChange::kSession);
  EXPECT_EQ(changes[2].key, "timezone");
  EXPECT_EQ(changes[3].kind, SettingChange::kTransaction);
  EXPECT_EQ(changes[4].kind, SettingChange::kResetAll);
  EXPECT_EQ(changes[5].kind, SettingChange::kDiscardAll);
  EXPECT_EQ(changes[6].key, "client_encoding");
  EXPECT_TRUE(SettingChangesOf("SET x TO").empty());  // a syntax error
  EXPECT_TRUE(SettingChangesOf("BEGIN; COMMIT").empty());
  EXPECT_TRUE(SettingChangesOf("UPDATE t SET a = 1").empty());
}

TEST(SessionSettings, BeginsModesBelongToTheTransactionItOpens) {
  std::vector<SettingChange> changes =
      SettingChangesOf("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE");
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].kind, SettingChange::kTransaction);
  EXPECT_TRUE(changes[0].opens_transaction);
  EXPECT_EQ(changes[0].sql, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE");
  SessionSettings s;
  s.Record(changes[0], false);  // sent outside the transaction it opens
  EXPECT_EQ(s.TransactionStatements(), (Strings{changes[0].sql}));
  s.EndTransaction(true);
  EXPECT_TRUE(s.TransactionStatements().empty());
  EXPECT_EQ(s.version(), 0u);
}

TEST(SessionSettings, TheSessionStateIsTheLastChangeOfEachSetting) {
  SessionSettings s;
  EXPECT_EQ(s.version(), 0u);
  for (const SettingChange& c : SettingChangesOf(
           "SET search_path TO a; SET TimeZone = 'UTC'; SET search_path TO b; RESET timezone;"
           " SET LOCAL work_mem = '1MB'")) {
    s.Record(c, false);
  }
  EXPECT_EQ(s.SessionStatements(),
            (Strings{"RESET ALL", "SET search_path TO b", "RESET timezone"}));
  uint64_t before = s.version();
  for (const SettingChange& c : SettingChangesOf("SET ROLE app; SET a.b = 1; RESET ALL")) {
    s.Record(c, false);
  }
  EXPECT_GT(s.version(), before);
  EXPECT_EQ(s.SessionStatements(), (Strings{"RESET ALL", "SET ROLE app"}));
  for (const SettingChange& c : SettingChangesOf("DISCARD ALL")) s.Record(c, false);
  EXPECT_EQ(s.SessionStatements(),
            (Strings{"RESET SESSION AUTHORIZATION", "RESET ROLE", "RESET ALL"}));
}

TEST(SessionSettings, ATransactionsChangesStandOnlyIfItCommits) {
  SessionSettings s;
  for (const SettingChange& c :
       SettingChangesOf("SET search_path TO a; SET LOCAL lock_timeout = 1; SET x.y = 2")) {
    s.Record(c, true);
  }
  EXPECT_EQ(s.TransactionStatements(),
            (Strings{"SET search_path TO a", "SET LOCAL lock_timeout = 1", "SET x.y = 2"}));
  EXPECT_EQ(s.version(), 0u);
  s.EndTransaction(false);
  EXPECT_TRUE(s.TransactionStatements().empty());
  EXPECT_EQ(s.SessionStatements(), (Strings{"RESET ALL"}));

  for (const SettingChange& c :
       SettingChangesOf("SET search_path TO a; SET LOCAL lock_timeout = 1; RESET ALL; SET x.y = 2")) {
    s.Record(c, true);
  }
  s.EndTransaction(true);
  EXPECT_GT(s.version(), 0u);  // the local change ended with the transaction
  EXPECT_EQ(s.SessionStatements(), (Strings{"RESET ALL", "SET x.y = 2"}));
}

}  // namespace
}  // namespace pgshift::routing
