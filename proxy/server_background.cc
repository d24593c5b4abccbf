// The server's background thread (periodic recovery's): finishing leftover
// prepared mirrors, the write audit's rounds, the status page's rate
// samples, and whatever else may wait on
// a backend (reloads, admin console commands), so that none of it holds up
// the thread that accepts clients.
#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "proxy/log.h"
#include "proxy/server.h"

namespace pgshift::proxy {

awaitable<void> Server::RecoverPeriodically() {
  Recovery& recovery = *periodic_recovery_;
  while (true) {
    SettingsPtr current = settings();
    if (!recovery.soon) {
      recovery.timer.expires_after(std::chrono::milliseconds(
          static_cast<int64_t>(current->config->proxy.recovery_interval_s * 1000)));
      // Ends when it expires, or when RecoverSoon cancels it (shutdown
      // stops the whole context instead).
      error_code ignored;
      co_await recovery.timer.async_wait(WithError(ignored));
    }
    recovery.soon = false;
    current = settings();
    if (!current->config->new_backend) continue;
    RecordRecovery(co_await ResolvePreparedMirrors(*current->config, *backend_tls_));
  }
}

awaitable<void> Server::SampleRatesPeriodically() {
  // Shutdown stops the context, and this frame with it.
  asio::steady_timer timer(periodic_recovery_->context);
  while (true) {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    SettingsPtr current = settings();  // held: a reload may replace it meanwhile
    for (const routing::TableConfig& t : current->config->tables) {
      const routing::TableCounters& c = table_counters_.For(t.name);
      rate_history_.Record(
          t.name, {now, c.rows_written.load(), c.mirror_failures.load(), c.shadow_compared.load(),
                   c.shadow_persistent.load(), c.shadow_dropped.load()});
    }
    timer.expires_after(std::chrono::seconds(RateHistory::kIntervalSeconds));
    error_code ignored;
    co_await timer.async_wait(WithError(ignored));
  }
}

awaitable<void> Server::AuditWritesPeriodically() {
  asio::steady_timer& timer = periodic_recovery_->audit_timer;
  while (true) {
    SettingsPtr current = settings();
    const double interval = current->config->proxy.write_audit_interval_s;
    if (interval > 0)
      co_await AuditWrites(*current->config, *backend_tls_, table_counters_, write_audit_);
    // Off: looks again for a reload that turns it on.
    timer.expires_after(
        std::chrono::milliseconds(static_cast<int64_t>((interval > 0 ? interval : 1) * 1000)));
    error_code ignored;
    co_await timer.async_wait(WithError(ignored));
  }
}

awaitable<std::string> Server::RunInBackground(std::function<std::string()> work) {
  // A timer that never expires, cancelled when the work is done (or at
  // shutdown, which stops the background thread: the work may then never
  // run): waiting on it keeps this thread free meanwhile.
  struct Waiting {
    explicit Waiting(asio::io_context& context)
        : done(context, asio::steady_timer::time_point::max()) {}
    asio::steady_timer done;
    std::string result;
    std::atomic<bool> finished{false};
  };
  auto waiting = std::make_shared<Waiting>(main_);
  std::erase_if(background_waits_, [](const auto& w) { return w.expired(); });
  background_waits_.push_back(std::shared_ptr<asio::steady_timer>(waiting, &waiting->done));
  asio::post(periodic_recovery_->context, [this, work = std::move(work), waiting] {
    try {
      waiting->result = work();
    } catch (const std::exception& e) {
      LogEvent(LogLevel::kError, "background_work_failed", {{"reason", e.what()}});
    }
    waiting->finished.store(true, std::memory_order_release);
    asio::post(main_, [waiting] { waiting->done.cancel(); });
  });
  error_code ignored;
  co_await waiting->done.async_wait(WithError(ignored));
  if (!waiting->finished.load(std::memory_order_acquire)) co_return std::string();
  co_return std::move(waiting->result);
}

void Server::RecoverSoon() {
  Recovery* recovery = periodic_recovery_.get();
  if (recovery == nullptr) return;
  asio::post(recovery->context, [recovery] {
    recovery->soon = true;
    recovery->timer.cancel();
  });
}

void Server::RecordRecovery(RecoveryReport report) {
  absl::MutexLock lock(&recovery_mutex_);
  absl::flat_hash_set<std::string> known;
  for (const UnresolvedMirror& u : recovery_.unresolved) known.insert(u.transaction);
  for (const UnresolvedMirror& u : report.unresolved) {
    if (known.contains(u.transaction)) continue;
    LogEvent(LogLevel::kError, "prepared_mirror_unresolved",
             {{"backend", u.backend}, {"transaction", u.transaction}, {"reason", u.reason}});
  }
  if (!report.complete) {
    // What could not be looked at is as it was.
    for (const UnresolvedMirror& u : recovery_.unresolved) {
      if (std::none_of(report.unresolved.begin(), report.unresolved.end(),
                       [&](const UnresolvedMirror& r) { return r.transaction == u.transaction; })) {
        report.unresolved.push_back(u);
      }
    }
  }
  recovery_ = std::move(report);
}

RecoveryReport Server::LastRecovery() const {
  absl::MutexLock lock(&recovery_mutex_);
  return recovery_;
}

}  // namespace pgshift::proxy
