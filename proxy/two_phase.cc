#include "proxy/two_phase.h"

#include <memory>
#include <optional>

#include "common/strings.h"
#include "proxy/backend_query.h"
#include "proxy/control_connection.h"
#include "proxy/log.h"
#include "proxy/packet_buffer.h"
#include "routing/state_schema.h"

namespace pgshift::proxy {

namespace {

using routing::BackendId;

struct Connection {
  std::unique_ptr<Stream> stream;
  PacketBuffer buffer;
};

awaitable<std::optional<Connection>> Open(const routing::Config& config,
                                          const routing::BackendConfig& backend,
                                          std::string_view name, asio::ssl::context& tls) {
  auto opened = co_await OpenControlConnection(config, backend, name, tls);
  if (!opened.ok()) {
    LogEvent(LogLevel::kWarning, "mirror_readiness_unknown",
             {{"backend", name}, {"reason", MessageOf(opened.status())}});
    co_return std::nullopt;
  }
  co_return Connection{std::move(*opened), PacketBuffer()};
}

bool AnyIn(const routing::Config& config, bool (*phase_test)(routing::Phase)) {
  for (const routing::TableConfig& t : config.tables) {
    if (phase_test(t.phase)) return true;
  }
  return false;
}

awaitable<void> Ready(const routing::Config& config, asio::ssl::context& tls,
                      MirrorReadiness& out) {
  std::array<std::optional<Connection>, 2> servers;
  servers[0] = co_await Open(config, config.old_backend, "old", tls);
  servers[1] = co_await Open(config, *config.new_backend, "new", tls);
  // The divergence log lives where writes are authoritative while mirrored.
  const bool old_authoritative = AnyIn(config, [](routing::Phase p) {
    return p == routing::Phase::kDualWrite || p == routing::Phase::kShadowRead;
  });
  const bool new_authoritative =
      AnyIn(config, [](routing::Phase p) { return p == routing::Phase::kNewPrimary; });
  for (int s = 0; s < 2; ++s) {
    if (!servers[s]) continue;
    Connection& c = *servers[s];
    std::string_view name = routing::BackendName(static_cast<BackendId>(s));
    if (s == 0 ? old_authoritative : new_authoritative) {
      auto created = co_await RunQuery(*c.stream, c.buffer, routing::kCreateDivergenceTable);
      if (!created.ok()) {
        LogEvent(LogLevel::kError, "divergence_log_unavailable",
                 {{"backend", name}, {"reason", MessageOf(created.status())}});
      }
    }
    auto max = co_await RunQuery(*c.stream, c.buffer, "SHOW max_prepared_transactions");
    int64_t n = 0;
    out.can_prepare[s] = max.ok() && !max->rows.empty() && max->rows[0][0] &&
                         ParseInt(*max->rows[0][0], n) && n > 0;
  }
  // A mirror server that cannot prepare: said once, at start or reload.
  for (int mirror = 0; mirror < 2; ++mirror) {
    const bool mirrors_to_it = mirror == 1 ? old_authoritative : new_authoritative;
    if (out.can_prepare[mirror] || !mirrors_to_it || !servers[mirror]) continue;
    std::string_view name = routing::BackendName(static_cast<BackendId>(mirror));
    std::string_view other = routing::BackendName(static_cast<BackendId>(1 - mirror));
    LogEvent(LogLevel::kWarning, "two_phase_commit_unavailable",
             {{"backend", name},
              {"reason", StrCat("max_prepared_transactions is 0: mirrored transactions commit on ",
                                name, " after ", other, " without PREPARE TRANSACTION, and "
                                "every key whose mirror commit fails is logged")}});
  }
  // Prepared transactions left by a crash: committed when the transaction
  // they mirror committed, rolled back when it did not.
  for (int s = 0; s < 2; ++s) {
    if (!servers[s]) continue;
    Connection& c = *servers[s];
    auto left = co_await RunQuery(
        *c.stream, c.buffer,
        "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
        "AND gid LIKE 'pgshift\\_%' ORDER BY prepared");
    if (!left.ok()) continue;
    for (const auto& row : left->rows) {
      const std::string gid = row[0].value_or("");
      std::vector<std::string_view> parts = Split(gid, '_');
      int64_t xid = 0;
      if (parts.size() != 3 || !ParseInt(parts[2], xid)) continue;
      const int authority = parts[1] == "old" ? 0 : 1;
      if (authority == s || !servers[authority]) continue;
      Connection& a = *servers[authority];
      auto fate = co_await RunQuery(*a.stream, a.buffer,
                                    StrCat("SELECT pg_catalog.txid_status(", xid, ")"));
      if (!fate.ok()) continue;
      std::optional<std::string> status = fate->rows.empty() ? std::nullopt : fate->rows[0][0];
      if (status == "in progress") continue;  // a running pgshift is finishing it
      const bool commit = status == "committed";
      auto done = co_await RunQuery(*c.stream, c.buffer,
                                    StrCat(commit ? "COMMIT PREPARED " : "ROLLBACK PREPARED ",
                                           QuoteLiteral(gid)));
      LogEvent(done.ok() ? LogLevel::kWarning : LogLevel::kError, "prepared_mirror_resolved",
               {{"backend", routing::BackendName(static_cast<BackendId>(s))},
                {"transaction", gid},
                {"authoritative", status.value_or("unknown")},
                {"action", commit ? "committed" : "rolled back"},
                {"result", done.ok() ? "done" : std::string(MessageOf(done.status()))}});
    }
  }
  for (auto& c : servers) {
    if (c) c->stream->Close();
  }
}

}  // namespace

MirrorReadiness ReadyMirroring(const routing::Config& config, asio::ssl::context& tls) {
  if (!config.new_backend) return {};
  return RunToCompletion<MirrorReadiness>([&]() -> awaitable<MirrorReadiness> {
    MirrorReadiness readiness;
    co_await Ready(config, tls, readiness);
    co_return readiness;
  });
}

std::string PreparedTransactionId(BackendId authoritative, std::string_view xid) {
  return StrCat("pgshift_", routing::BackendName(authoritative), "_", xid);
}

}  // namespace pgshift::proxy
