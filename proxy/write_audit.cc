#include "proxy/write_audit.h"

#include <algorithm>

#include "common/strings.h"
#include "proxy/backend_query.h"
#include "proxy/control_connection.h"
#include "proxy/log.h"
#include "routing/mirror.h"
#include "routing/phase.h"

namespace pgshift::proxy {

void WriteAudit::Begin(Count& count, const Reading& reading, uint64_t proxied_base) {
  count.begun = true;
  count.history.clear();
  count.server_base = reading.server_rows;
  count.proxied_base = proxied_base;
}

void WriteAudit::Record(Clock::time_point now, const std::vector<Reading>& readings,
                        const std::vector<std::string>& mirrored) {
  absl::MutexLock lock(&mutex_);
  for (auto it = counts_.begin(); it != counts_.end();) {
    bool kept = std::find(mirrored.begin(), mirrored.end(), it->first) != mirrored.end();
    if (kept) {
      ++it;
    } else {
      counts_.erase(it++);
    }
  }
  for (const Reading& r : readings) {
    auto [it, added] = counts_.try_emplace(r.table);
    Count& count = it->second;
    // A new count when the table's authoritative side changed, or the
    // server's statistics were reset.
    if (!added &&
        (count.relation != r.relation || (count.begun && r.server_rows < count.server_base))) {
      count = Count{};
      added = true;
    }
    if (added) {
      count.relation = r.relation;
      count.since = now;
      // pgshift had written nothing yet (not so when a reload turned the
      // audit on later: then it waits like any other).
      if (first_round_ && r.proxied_rows == 0) Begin(count, r, 0);
    }
    if (!count.begun) {
      count.history.push_back({now, r.proxied_rows});
      if (now - count.since < kStatisticsDelay) continue;
      // pgshift's count from kStatisticsDelay ago or earlier (never before
      // the table entered its phase: history starts then).
      uint64_t base = count.history.front().proxied;
      for (const Sample& s : count.history) {
        if (now - s.at >= kStatisticsDelay) base = s.proxied;
      }
      Begin(count, r, base);
    }
    const uint64_t server = r.server_rows - count.server_base;
    const uint64_t proxied = r.proxied_rows - count.proxied_base;
    count.unexplained = server > proxied ? server - proxied : 0;
  }
  first_round_ = false;
}

bool WriteAudit::Failed(routing::BackendId server, const std::string& reason) {
  absl::MutexLock lock(&mutex_);
  std::string& last = last_failure_[static_cast<int>(server)];
  const bool changed = last != reason;
  last = reason;
  return changed && !reason.empty();
}

std::optional<uint64_t> WriteAudit::Unexplained(const std::string& table) const {
  absl::MutexLock lock(&mutex_);
  auto it = counts_.find(table);
  if (it == counts_.end() || !it->second.begun) return std::nullopt;
  return it->second.unexplained;
}

namespace {

// Rows inserted, updated or deleted in each relation (a partitioned
// table's partitions summed), as published, in the order given.
std::string PublishedRowsQuery(const std::vector<std::string>& relations) {
  std::string list;
  for (const std::string& r : relations) {
    list = StrCat(list, list.empty() ? "" : ", ", QuoteLiteral(routing::QuoteQualified(r)));
  }
  return StrCat(
      "SELECT COALESCE((SELECT pg_catalog.sum(s.n_tup_ins + s.n_tup_upd + s.n_tup_del) "
      "FROM pg_catalog.pg_stat_all_tables s WHERE s.relid = pg_catalog.to_regclass(x.name) OR "
      "s.relid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree("
      "pg_catalog.to_regclass(x.name)) p)), 0)::pg_catalog.text "
      "FROM pg_catalog.unnest(ARRAY[",
      list, "]::pg_catalog.text[]) WITH ORDINALITY AS x(name, i) ORDER BY x.i");
}

}  // namespace

awaitable<void> AuditWrites(const routing::Config& config, asio::ssl::context& tls,
                            routing::TableCounterRegistry& counters, WriteAudit& audit) {
  using routing::BackendId;
  struct Wanted {
    const routing::TableConfig* table;
    std::string relation;
  };
  std::vector<std::string> mirrored;
  std::vector<Wanted> wanted[2];
  for (const routing::TableConfig& t : config.tables) {
    if (!routing::MirrorsWrites(t.phase)) continue;
    mirrored.push_back(t.name);
    const bool on_new = routing::ReadsFromNew(t.phase);
    const BackendId server = on_new && config.new_backend ? BackendId::kNew : BackendId::kOld;
    wanted[static_cast<int>(server)].push_back({&t, on_new ? t.new_name : t.name});
  }
  std::vector<WriteAudit::Reading> readings;
  for (BackendId server : {BackendId::kOld, BackendId::kNew}) {
    const std::vector<Wanted>& here = wanted[static_cast<int>(server)];
    if (here.empty()) continue;
    const routing::BackendConfig& backend =
        server == BackendId::kOld ? config.old_backend : *config.new_backend;
    const std::string name(routing::BackendName(server));
    // pgshift's counts first: the server's can only be later, so never behind them.
    std::vector<uint64_t> proxied;
    for (const Wanted& w : here) proxied.push_back(counters.For(w.table->name).rows_written.load());
    auto opened = co_await OpenControlConnection(config, backend, name, tls);
    if (!opened.ok()) continue;  // logged by the catalog reads and recovery already
    std::vector<std::string> relations;
    for (const Wanted& w : here) relations.push_back(w.relation);
    PacketBuffer buffer;
    auto result = co_await RunQuery(**opened, buffer, PublishedRowsQuery(relations));
    if (!result.ok() || result->rows.size() != here.size()) {
      std::string reason = result.ok() ? "short answer" : std::string(MessageOf(result.status()));
      if (audit.Failed(server, reason)) {
        LogEvent(LogLevel::kWarning, "write_audit_failed", {{"backend", name}, {"reason", reason}});
      }
      continue;
    }
    audit.Failed(server, "");
    for (size_t i = 0; i < here.size(); ++i) {
      uint64_t rows = 0;
      if (!result->rows[i][0] || !ParseInt(*result->rows[i][0], rows)) continue;
      readings.push_back(
          {here[i].table->name, StrCat(name, ":", here[i].relation), rows, proxied[i]});
    }
  }
  audit.Record(WriteAudit::Clock::now(), readings, mirrored);
}

}  // namespace pgshift::proxy
