#include "proxy/two_phase.h"

#include <chrono>
#include <memory>
#include <optional>

#include "absl/strings/numbers.h"
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
                                          std::string_view name, asio::ssl::context& tls,
                                          bool log) {
  auto opened = co_await OpenControlConnection(config, backend, name, tls);
  if (!opened.ok() && log) {
    LogEvent(LogLevel::kWarning, "mirror_readiness_unknown",
             {{"backend", name}, {"reason", MessageOf(opened.status())}});
  }
  if (!opened.ok()) co_return std::nullopt;
  co_return Connection{std::move(*opened), PacketBuffer()};
}

bool AnyIn(const routing::Config& config, bool (*phase_test)(routing::Phase)) {
  for (const routing::TableConfig& t : config.tables) {
    if (phase_test(t.phase)) return true;
  }
  return false;
}

// The divergence log where it is needed, and which servers can prepare.
awaitable<void> Ready(const routing::Config& config,
                      std::array<std::optional<Connection>, 2>& servers, MirrorReadiness& out) {
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
}

// The fate of the authoritative transaction `id` follows: txid_status's
// answer, nullopt for NULL; an error when it cannot be asked.
awaitable<absl::StatusOr<std::optional<std::string>>> FateOf(Connection& authority,
                                                             const PreparedMirrorId& id) {
  auto fate = co_await RunQuery(*authority.stream, authority.buffer,
                                StrCat("SELECT pg_catalog.txid_status(", id.xid, ")"));
  if (!fate.ok()) co_return fate.status();
  co_return fate->rows.empty() ? std::nullopt : fate->rows[0][0];
}

// pgshift's prepared transactions in the connection's database: gid, and
// age in seconds by the server's own clock (as `prepared` is), oldest first.
awaitable<absl::StatusOr<QueryResult>> ListLeftovers(Connection& c) {
  co_return co_await RunQuery(
      *c.stream, c.buffer,
      "SELECT gid, pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - prepared) "
      "FROM pg_catalog.pg_prepared_xacts WHERE database = pg_catalog.current_database() "
      "AND gid LIKE 'pgshift\\_%' ORDER BY prepared");
}

// Prepared transactions left by a crash: committed when the transaction
// they mirror committed, rolled back when it did not, left alone (and
// reported) when that cannot be known.
awaitable<void> Resolve(const routing::Config& config,
                        std::array<std::optional<Connection>, 2>& servers, RecoveryReport& report) {
  report.complete = servers[0] && servers[1];
  for (int s = 0; s < 2; ++s) {
    if (!servers[s]) continue;
    Connection& c = *servers[s];
    const std::string backend(routing::BackendName(static_cast<BackendId>(s)));
    auto left = co_await ListLeftovers(c);
    if (!left.ok()) {
      report.complete = false;
      continue;
    }
    for (const auto& row : left->rows) {
      const std::string gid = row[0].value_or("");
      std::optional<PreparedMirrorId> id = ParsePreparedTransactionId(gid);
      double age_s = 0;
      if (!id || !absl::SimpleAtod(row[1].value_or("0"), &age_s)) continue;
      const int authority = static_cast<int>(id->authoritative);
      if (authority == s) continue;
      auto leave = [&](std::string reason) {
        report.unresolved.push_back({backend, gid, std::move(reason)});
      };
      switch (ClassifyLeftover(*id, age_s, config.proxy.deployment,
                               config.proxy.recovery_min_age_s)) {
        case Leftover::kInFlight:
          continue;
        case Leftover::kOtherDeployment:
          leave(StrCat("deployment ", id->deployment, "'s, not this one's (",
                       config.proxy.deployment, "): its own pgshift resolves it; if none runs "
                       "any more, commit or roll it back by hand as transaction ", id->xid,
                       " on its authoritative server did"));
          continue;
        case Leftover::kOurs:
          break;
      }
      if (!servers[authority]) {
        leave(StrCat("server ", routing::BackendName(id->authoritative), " cannot be reached"));
        continue;
      }
      auto fate = co_await FateOf(*servers[authority], *id);
      if (!fate.ok()) {
        leave(StrCat("txid_status(", id->xid, ") on server ",
                     routing::BackendName(id->authoritative),
                     " failed: ", MessageOf(fate.status())));
        continue;
      }
      ResolutionChoice choice = ChooseResolution(*fate, SettlingMirrors::Get().Contains(gid));
      if (choice.resolution == Resolution::kLeave) {
        if (!choice.why.empty()) leave(std::string(choice.why));
        continue;
      }
      const bool commit = choice.resolution == Resolution::kCommit;
      auto done = co_await RunQuery(*c.stream, c.buffer,
                                    StrCat(commit ? "COMMIT PREPARED " : "ROLLBACK PREPARED ",
                                           QuoteLiteral(gid)));
      if (done.ok()) ++report.resolved;
      LogEvent(done.ok() ? LogLevel::kWarning : LogLevel::kError, "prepared_mirror_resolved",
               {{"backend", backend},
                {"transaction", gid},
                {"authoritative", fate->value_or("unknown")},
                {"action", commit ? "committed" : "rolled back"},
                {"result", done.ok() ? "done" : std::string(MessageOf(done.status()))}});
    }
  }
}

awaitable<std::array<std::optional<Connection>, 2>> OpenBoth(const routing::Config& config,
                                                             asio::ssl::context& tls, bool log) {
  std::array<std::optional<Connection>, 2> servers;
  servers[0] = co_await Open(config, config.old_backend, "old", tls, log);
  servers[1] = co_await Open(config, *config.new_backend, "new", tls, log);
  co_return servers;
}

void CloseBoth(std::array<std::optional<Connection>, 2>& servers) {
  for (auto& c : servers) {
    if (c) c->stream->Close();
  }
}

// Closes a run's connections if it has not finished within
// kRecoveryRunTimeoutS: what waits on them then fails, and the run ends. The
// state is shared with the timer's handler, which may run after the run.
class RunDeadline {
 public:
  RunDeadline(std::array<std::optional<Connection>, 2>& servers, asio::any_io_executor executor)
      : timer_(executor), state_(std::make_shared<State>(State{&servers})) {
    timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(kRecoveryRunTimeoutS * 1000)));
    timer_.async_wait([state = state_](error_code ec) {
      if (ec || !state->servers) return;
      LogEvent(LogLevel::kError, "prepared_mirror_recovery_timeout",
               {{"timeout_s", StrCat(kRecoveryRunTimeoutS)}});
      CloseBoth(*state->servers);
    });
  }
  ~RunDeadline() {
    state_->servers = nullptr;
    timer_.cancel();
  }
  RunDeadline(const RunDeadline&) = delete;
  RunDeadline& operator=(const RunDeadline&) = delete;

 private:
  struct State {
    std::array<std::optional<Connection>, 2>* servers;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

}  // namespace

MirrorReadiness ReadyMirroring(const routing::Config& config, asio::ssl::context& tls,
                               RecoveryReport& recovery) {
  if (!config.new_backend) return {};
  return RunToCompletion<MirrorReadiness>([&]() -> awaitable<MirrorReadiness> {
    MirrorReadiness readiness;
    auto servers = co_await OpenBoth(config, tls, /*log=*/true);
    {
      RunDeadline deadline(servers, co_await asio::this_coro::executor);
      co_await Ready(config, servers, readiness);
      co_await Resolve(config, servers, recovery);
    }
    CloseBoth(servers);
    co_return readiness;
  });
}

awaitable<RecoveryReport> ResolvePreparedMirrors(const routing::Config& config,
                                                 asio::ssl::context& tls) {
  RecoveryReport report;
  if (!config.new_backend) co_return report;
  auto servers = co_await OpenBoth(config, tls, /*log=*/false);
  {
    RunDeadline deadline(servers, co_await asio::this_coro::executor);
    co_await Resolve(config, servers, report);
  }
  CloseBoth(servers);
  co_return report;
}

absl::Status CheckDeploymentChange(const routing::Config& running, const routing::Config& next,
                                   asio::ssl::context& tls) {
  const std::string& was = running.proxy.deployment;
  if (was == next.proxy.deployment || !running.new_backend) return absl::OkStatus();
  return RunToCompletion<absl::Status>([&]() -> awaitable<absl::Status> {
    auto servers = co_await OpenBoth(running, tls, /*log=*/false);
    absl::Status verdict = absl::OkStatus();
    {
      RunDeadline deadline(servers, co_await asio::this_coro::executor);
      for (int s = 0; s < 2 && verdict.ok(); ++s) {
        std::string_view name = routing::BackendName(static_cast<BackendId>(s));
        absl::StatusOr<QueryResult> left =
            absl::UnavailableError(StrCat("server ", name, " cannot be reached"));
        if (servers[s]) left = co_await ListLeftovers(*servers[s]);
        if (!left.ok()) {
          verdict = absl::FailedPreconditionError(
              StrCat("proxy.deployment cannot change from ", was, " to ", next.proxy.deployment,
                     " unless ", was, "'s prepared mirrors are known to be gone: ",
                     MessageOf(left.status())));
          continue;
        }
        for (const auto& row : left->rows) {
          auto id = ParsePreparedTransactionId(row[0].value_or(""));
          if (!id || id->deployment != was) continue;
          verdict = absl::FailedPreconditionError(StrCat(
              "proxy.deployment cannot change from ", was, " to ", next.proxy.deployment,
              " while ", was, "'s prepared mirror ", *row[0], " is left on server ", name,
              ": recovery under the new name would never resolve it (SHOW PREPARED, "
              "pg_prepared_xacts); change it once none is left"));
          break;
        }
      }
    }
    CloseBoth(servers);
    co_return verdict;
  });
}

std::string PreparedTransactionId(std::string_view deployment, BackendId authoritative,
                                  std::string_view xid) {
  return StrCat("pgshift_", deployment, "_", routing::BackendName(authoritative), "_", xid);
}

std::optional<PreparedMirrorId> ParsePreparedTransactionId(std::string_view gid) {
  std::vector<std::string_view> parts = Split(gid, '_');
  if ((parts.size() != 3 && parts.size() != 4) || parts[0] != "pgshift") return std::nullopt;
  PreparedMirrorId id;
  if (parts.size() == 4) {
    if (parts[1].empty()) return std::nullopt;
    id.deployment = std::string(parts[1]);
  }
  std::string_view server = parts[parts.size() - 2];
  if (server == "old") {
    id.authoritative = BackendId::kOld;
  } else if (server == "new") {
    id.authoritative = BackendId::kNew;
  } else {
    return std::nullopt;
  }
  if (!ParseInt(parts.back(), id.xid) || id.xid <= 0) return std::nullopt;
  return id;
}

Leftover ClassifyLeftover(const PreparedMirrorId& id, double age_s, std::string_view deployment,
                          double min_age_s) {
  if (age_s < min_age_s) return Leftover::kInFlight;
  // An unnamed one predates deployments: whichever deployment finds it
  // resolves it.
  if (!id.deployment.empty() && id.deployment != deployment) return Leftover::kOtherDeployment;
  return Leftover::kOurs;
}

ResolutionChoice ChooseResolution(const std::optional<std::string>& authoritative_status,
                                  bool settling) {
  // Its session finishes it; nothing to report.
  if (settling) return {Resolution::kLeave, ""};
  if (!authoritative_status) {
    return {Resolution::kLeave,
            "the transaction it follows is too old for txid_status to know its outcome: commit "
            "or roll it back by hand after checking old's rows"};
  }
  if (*authoritative_status == "committed") return {Resolution::kCommit, ""};
  if (*authoritative_status == "aborted") return {Resolution::kRollBack, ""};
  return {Resolution::kLeave,
          "the transaction it follows is still in progress (a pgshift session is settling it)"};
}

SettlingMirrors& SettlingMirrors::Get() {
  static SettlingMirrors* mirrors = new SettlingMirrors;
  return *mirrors;
}

void SettlingMirrors::Add(const std::string& gid) {
  absl::MutexLock lock(&mutex_);
  gids_.insert(gid);
}

void SettlingMirrors::Remove(const std::string& gid) {
  absl::MutexLock lock(&mutex_);
  gids_.erase(gid);
}

bool SettlingMirrors::Contains(const std::string& gid) const {
  absl::MutexLock lock(&mutex_);
  return gids_.contains(gid);
}

}  // namespace pgshift::proxy
