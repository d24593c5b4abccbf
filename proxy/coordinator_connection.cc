#include "proxy/coordinator_connection.h"

#include <algorithm>

#include "common/strings.h"
#include "proxy/control_connection.h"
#include "proxy/deadline.h"
#include "routing/state_schema.h"

namespace pgshift::proxy {

namespace {

// Where the coordinator is: old, or another route to it.
routing::BackendConfig CoordinatorBackend(const routing::Config& config) {
  routing::BackendConfig backend = config.old_backend;
  if (config.coordination.host) backend.endpoint.host = *config.coordination.host;
  if (config.coordination.port) backend.endpoint.port = *config.coordination.port;
  return backend;
}

}  // namespace

awaitable<void> Sleep(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  error_code ignored;
  co_await timer.async_wait(WithError(ignored));
}

awaitable<absl::StatusOr<std::unique_ptr<Stream>>> OpenCoordinator(const routing::Config& config,
                                                                   asio::ssl::context& tls) {
  const routing::BackendConfig backend = CoordinatorBackend(config);
  // A coordinator that does not answer is given up on well within the
  // lease, so that the next attempt comes soon once it answers again.
  routing::Config bounded = config;
  bounded.proxy.connect_timeout_s =
      std::min(config.proxy.connect_timeout_s, config.coordination.lease_timeout_s / 2);
  auto opened = co_await OpenControlConnection(bounded, backend, "old", tls);
  if (!opened.ok()) co_return opened.status();
  Deadline deadline(**opened, bounded.proxy.connect_timeout_s);
  PacketBuffer buffer;
  for (const char* ddl :
       {routing::kCreateStateTable, routing::kCreatePhasesTable, routing::kCreateFlipSequence,
        routing::kCreateInstancesTable, routing::kUpgradeInstancesTable,
        routing::kCreateEvidenceTable, routing::kCreateFingerprintsTable}) {
    absl::Status created = absl::OkStatus();
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto result = co_await RunQuery(**opened, buffer, ddl);
      created = result.status();
      if (created.ok()) break;
      co_await Sleep(std::chrono::milliseconds(20 * (attempt + 1)));
    }
    if (!created.ok()) co_return created;
  }
  co_return std::move(*opened);
}

absl::StatusOr<SharedPhases> ReadPhases(const routing::Config& file, asio::ssl::context& tls,
                                        bool seed) {
  return RunToCompletion<absl::StatusOr<SharedPhases>>(
      [&]() -> awaitable<absl::StatusOr<SharedPhases>> {
        auto opened = co_await OpenCoordinator(file, tls);
        if (!opened.ok()) co_return opened.status();
        CoordinatorConnection c(std::move(*opened));
        Deadline deadline(*c.stream, file.coordination.lease_timeout_s);
        for (const routing::TableConfig& t : file.tables) {
          if (!seed) break;
          std::string sql = StrCat(
              "INSERT INTO pgshift_phases (table_name, phase) VALUES (", QuoteLiteral(t.name), ", ",
              QuoteLiteral(routing::PhaseName(t.phase)), ") ON CONFLICT (table_name) DO NOTHING");
          auto seeded = co_await c.Query(sql);
          if (!seeded.ok()) co_return seeded.status();
        }
        auto rows = co_await c.Query("SELECT table_name, phase FROM pgshift_phases");
        if (!rows.ok()) co_return rows.status();
        SharedPhases phases;
        for (const auto& row : rows->rows) {
          if (auto phase = routing::PhaseFromName(Text(row[1]))) phases[Text(row[0])] = *phase;
        }
        c.stream->Close();
        co_return phases;
      });
}

std::string StaleFlipSql(const routing::CoordinationSettings& settings) {
  return StrCat("coalesce(now() - flip_started > interval '",
                static_cast<int64_t>(settings.cutover_timeout_s * 1000) + 10000,
                " milliseconds', false)");
}

std::string ListenSql() { return StrCat("LISTEN ", routing::kCoordinationChannel); }
std::string NotifySql() { return StrCat("NOTIFY ", routing::kCoordinationChannel); }

}  // namespace pgshift::proxy
