#include "migration/older_transactions.h"

#include <chrono>
#include <thread>

namespace pgshift::migration {

absl::Status WaitForOlderTransactions(PgClient& db, const std::string& xid, std::FILE* out,
                                      std::string_view command) {
  using Clock = std::chrono::steady_clock;
  // Named by pid and start, so that a pid reused by a later transaction is
  // not waited for.
  auto older = db.Exec(
      "SELECT coalesce(array_agg(pid || ' ' || xact_start), '{}')::text "
      "FROM pg_catalog.pg_stat_activity "
      "WHERE pid <> pg_catalog.pg_backend_pid() AND datname = pg_catalog.current_database() AND "
      "backend_type = 'client backend' AND xact_start IS NOT NULL AND "
      "((backend_xmin IS NOT NULL AND pg_catalog.age(backend_xmin) >= "
      "pg_catalog.age($1::pg_catalog.xid)) OR backend_xid IS NOT NULL)",
      {xid});
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
