#include "migration/older_transactions.h"

#include <chrono>
#include <optional>
#include <thread>
#include <vector>

namespace pgshift::migration {

absl::Status WaitForOlderTransactions(PgClient& db, const std::string& xid, std::FILE* out,
                                      std::string_view command, const std::string& table,
                                      const std::string& peers) {
  using Clock = std::chrono::steady_clock;
  // Named by pid and start, so that a pid reused by a later transaction is
  // not waited for.
  std::string sql =
      "SELECT coalesce(array_agg(pid || ' ' || xact_start), '{}')::text "
      "FROM pg_catalog.pg_stat_activity "
      "WHERE pid <> pg_catalog.pg_backend_pid() AND datname = pg_catalog.current_database() AND "
      "backend_type = 'client backend' AND xact_start IS NOT NULL AND "
      "((backend_xmin IS NOT NULL AND pg_catalog.age(backend_xmin) >= "
      "pg_catalog.age($1::pg_catalog.xid)) OR backend_xid IS NOT NULL)";
  std::vector<std::optional<std::string>> params{xid};
  if (!peers.empty()) {
    // The very session that claimed (pid and start): a pid a dead
    // worker left in its range may be a client's by now.
    sql +=
        " AND NOT EXISTS (SELECT FROM pgshift_state WHERE table_name = $2 AND kind = $3 AND "
        "detail->>'holder' IS NOT NULL AND (detail->>'backend')::int = pid AND "
        "(detail->>'backend_start')::timestamptz = backend_start)";
    params.push_back(table);
    params.push_back(peers);
  }
  auto older = db.Exec(sql, params);
  if (!older.ok()) return older.status();
  const std::string transactions = *older->rows[0][0];
  const auto waiting_since = Clock::now();
  bool said = false;
  while (transactions != "{}") {
    auto running = db.Exec(
        "SELECT count(*) FROM pg_catalog.pg_stat_activity "
        "WHERE pid || ' ' || xact_start = ANY($1::pg_catalog.text[])",
        {transactions});
    if (!running.ok()) return running.status();
    if (*running->rows[0][0] == "0") break;
    if (!said && Clock::now() - waiting_since > std::chrono::seconds(2)) {
      std::fprintf(out,
                   "pgshift %.*s: waiting for %s transactions older than its writes to finish "
                   "(long transactions hold it up)\n",
                   static_cast<int>(command.size()), command.data(), running->rows[0][0]->c_str());
      std::fflush(out);
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return absl::OkStatus();
}

}  // namespace pgshift::migration
