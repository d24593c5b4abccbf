#include "proxy/shadow_runner.h"

#include <algorithm>

#include "common/strings.h"
#include "protocol/message_type.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/describe.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "protocol/messages/row_description.h"
#include "proxy/backend_query.h"
#include "proxy/control_connection.h"
#include "proxy/log.h"
#include "proxy/message_io.h"
#include "proxy/server.h"

namespace pgshift::proxy {

namespace {

using routing::BackendId;

std::string Join(const std::vector<std::string>& rows) {
  std::string out;
  for (const std::string& r : rows) out = StrCat(out, out.empty() ? "" : " ", r);
  return out;
}

// The read's parameters as text (nullopt: NULL, or sent in binary).
std::vector<std::optional<std::string>> TextParameters(
    const std::shared_ptr<const std::string>& bind) {
  if (!bind) return {};
  auto decoded = protocol::Bind::Decode(std::string_view(*bind).substr(protocol::kHeaderSize));
  if (!decoded.ok()) return {};
  std::vector<std::optional<std::string>> out = decoded->parameters;
  const std::vector<int16_t>& formats = decoded->parameter_formats;
  for (size_t i = 0; i < out.size(); ++i) {
    const int16_t format = formats.size() == 1 ? formats[0] : i < formats.size() ? formats[i] : 0;
    if (format != 0) out[i].reset();
  }
  return out;
}

std::chrono::steady_clock::duration ToDuration(double seconds) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(seconds));
}

}  // namespace

void MismatchLog::Add(MismatchRecord record) {
  absl::MutexLock lock(&mutex_);
  auto now = std::chrono::steady_clock::now();
  auto& last = last_logged_[record.fingerprint];
  if (last == std::chrono::steady_clock::time_point() || now - last >= std::chrono::minutes(1)) {
    last = now;
    LogEvent(LogLevel::kWarning, "shadow_mismatch",
             {{"table", record.table}, {"fingerprint", record.fingerprint},
              {"query", record.query}, {"detail", record.detail}});
  }
  recent_.push_back(std::move(record));
  if (recent_.size() > 100) recent_.pop_front();
}

std::vector<MismatchRecord> MismatchLog::Recent() const {
  absl::MutexLock lock(&mutex_);
  return {recent_.rbegin(), recent_.rend()};
}

ShadowRunner::ShadowRunner(Server& server, asio::io_context& context)
    : server_(server), context_(context), wake_(context) {}

size_t ShadowRunner::JobBytes(const ShadowJob& job) {
  // About: the job, the shared blocks it points to, and what its strings
  // hold; the rows are counted by served_bytes.
  constexpr size_t kSharedBlock = 32;
  size_t bytes = sizeof(ShadowJob);
  if (job.bind) bytes += kSharedBlock + sizeof(std::string) + job.bind->capacity();
  if (job.served) {
    bytes += kSharedBlock + sizeof(routing::ResultSet);
    for (const auto& column : job.served->columns) {
      bytes += sizeof(column) + column.name.capacity();
    }
  }
  return bytes;
}

ShadowBytes ShadowRunner::Bytes(ShadowBytes::Kind kind) {
  budget_->limit = static_cast<size_t>(server_.settings()->config->proxy.shadow_max_bytes);
  return ShadowBytes(budget_, kind);
}

bool ShadowRunner::Enqueue(ShadowJob job) {
  if (queue_.size() + waiting_ + slot_waiters_.size() >=
      static_cast<size_t>(server_.settings()->config->proxy.shadow_queue_size)) {
    Dropped(*job.plan->shadow, "the queue is full");
    return false;
  }
  job.own_bytes = Bytes(ShadowBytes::Kind::kWaiting);
  if (!job.own_bytes.Take(JobBytes(job))) {
    Dropped(*job.plan->shadow, "shadow_max_bytes is reached");
    return false;
  }
  job.queued = std::chrono::steady_clock::now();
  queue_.push_back(std::move(job));
  if (!running_) {
    running_ = true;
    asio::co_spawn(context_, Loop(), asio::detached);
  } else {
    wake_.cancel();
  }
  return true;
}

awaitable<void> ShadowRunner::Loop() {
  while (true) {
    const auto most = static_cast<size_t>(server_.settings()->config->proxy.shadow_connections);
    auto wake_at = asio::steady_timer::time_point::max();
    while (!queue_.empty() && slot_waiters_.empty() && comparing_ < most) {
      if (!Batched(queue_.front())) {
        ++comparing_;
        asio::co_spawn(context_, Run(std::move(queue_.front())), asio::detached);
        queue_.pop_front();
        continue;
      }
      const size_t batch = BatchAtFront();
      const auto due = queue_.front().queued + kBatchLinger;
      // It waits for company only when every queued read could join it.
      if (batch == queue_.size() && batch < kBatchReads && std::chrono::steady_clock::now() < due) {
        wake_at = due;
        break;
      }
      ++comparing_;
      std::vector<ShadowJob> jobs(std::make_move_iterator(queue_.begin()),
                                  std::make_move_iterator(queue_.begin() + batch));
      queue_.erase(queue_.begin(), queue_.begin() + batch);
      asio::co_spawn(context_, RunBatch(std::move(jobs)), asio::detached);
    }
    wake_.expires_at(wake_at);
    error_code ignored;
    co_await wake_.async_wait(WithError(ignored));
  }
}

awaitable<void> ShadowRunner::Run(ShadowJob job) {
  Comparing run(Bytes());
  run.discard = job.plan->shadow->calls_functions;
  co_await Compare(run, job);
  GiveBack(run);
  GiveSlot();
}

awaitable<void> ShadowRunner::TakeSlot() {
  const auto most = static_cast<size_t>(server_.settings()->config->proxy.shadow_connections);
  if (comparing_ < most && slot_waiters_.empty()) {
    ++comparing_;
    co_return;
  }
  asio::steady_timer turn(context_, asio::steady_timer::time_point::max());
  slot_waiters_.push_back(&turn);
  error_code ignored;
  co_await turn.async_wait(WithError(ignored));  // GiveSlot hands its slot over
}

void ShadowRunner::GiveSlot() {
  if (!slot_waiters_.empty()) {
    slot_waiters_.front()->cancel();  // the slot passes to it
    slot_waiters_.pop_front();
    return;
  }
  --comparing_;
  wake_.cancel();  // room for the next queued one
}

awaitable<void> ShadowRunner::Compare(Comparing& run, ShadowJob& job) {
  const routing::Plan& plan = *job.plan;
  const routing::ShadowPlan& shadow = *plan.shadow;
  bool connected = co_await BorrowBoth(run, job);
  if (!connected) {
    Dropped(shadow, "no connection");
    co_return;
  }
  // The client's result came from an earlier moment than the other side's
  // read: when they differ, both sides are read now, and only that
  // comparison counts.
  if (job.served) {
    std::string out;
    AppendRead(run, shadow.server, out, shadow.sql, job.bind, true);
    run.reading.Release();  // nothing read before is held any more
    bool sent = co_await Send(run, shadow.server, out);
    routing::ResultSet b = co_await CollectOne(run, shadow.server);
    if (sent && run.skipped_because.empty() && MatchesServed(job, b)) co_return;
    if (Unjudged(run, shadow)) co_return;
    job.served.reset();  // its bytes go back to the worker's budget
    job.served_bytes.Release();
  }
  Outcome outcome;
  if (plan.server == shadow.server) {
    std::optional<Outcome> compared = co_await CompareInOneSnapshot(run, job);
    if (!compared) run.lost = true;
    if (Unjudged(run, shadow)) co_return;
    outcome = *std::move(compared);
  } else {
    outcome = co_await CompareAcrossServers(run, job);
  }
  if (outcome.verdict == Verdict::kDropped) {
    Dropped(shadow, "no connection after a wait");
    co_return;
  }
  if (Unjudged(run, shadow)) co_return;
  Tally(job, outcome);
}

// The client's own result against the other side's read, run later: most
// comparisons cost one read. A difference may be a write that came in
// between, so it is only counted once read again on both.
bool ShadowRunner::MatchesServed(const ShadowJob& job, const routing::ResultSet& b) {
  const routing::ShadowPlan& shadow = *job.plan->shadow;
  if (!routing::CompareResults(*job.served, b, shadow.ordered).match) return false;
  shadow.Count(&routing::TableCounters::shadow_compared);
  shadow.Count(&routing::TableCounters::shadow_matched);
  LogEvent(LogLevel::kDebug, "shadow_compared",
           {{"table", shadow.table}, {"reads", "one"}, {"outcome", "matched"}});
  return true;
}

// Both reads in one batch up to one Sync: one transaction, so one
// REPEATABLE READ snapshot (the connection's default).
awaitable<std::optional<ShadowRunner::Outcome>> ShadowRunner::CompareInOneSnapshot(
    Comparing& run, const ShadowJob& job) {
  const routing::Plan& plan = *job.plan;
  const routing::ShadowPlan& shadow = *plan.shadow;
  std::string out;
  AppendRead(run, plan.server, out, plan.sql, job.bind, false);
  AppendRead(run, plan.server, out, shadow.sql, job.bind, true);
  run.reading.Release();
  bool sent = co_await Send(run, plan.server, out);
  std::vector<routing::ResultSet> results = co_await Collect(run, plan.server);
  if (!sent || (results.size() == 1 && results[0].error_sqlstate == "08006"))
    co_return std::nullopt;
  routing::ResultSet& a = results[0];
  routing::ResultSet b;
  if (!a.error_sqlstate.empty() || results.size() < 2) {
    // The failed read ended the batch: the other side's read runs on its
    // own.
    std::string alone;
    AppendRead(run, plan.server, alone, shadow.sql, job.bind, true);
    co_await Send(run, plan.server, alone);
    b = co_await CollectOne(run, plan.server);
  } else {
    b = std::move(results[1]);
  }
  // One snapshot: a difference is real.
  Outcome outcome;
  outcome.comparison = routing::CompareResults(a, b, shadow.ordered);
  if (!outcome.comparison.match) {
    outcome.verdict = Verdict::kPersistent;
    outcome.keys = DifferingKeys(job, a, b, nullptr);
  }
  co_return outcome;
}

// No common snapshot: a write committed on one side and not yet on the
// other can explain a difference. pgshift knows its own mirrored writes:
// a difference they explain is read again once they are settled.
awaitable<ShadowRunner::Outcome> ShadowRunner::CompareAcrossServers(Comparing& run,
                                                                    const ShadowJob& job) {
  const routing::Plan& plan = *job.plan;
  const routing::ShadowPlan& shadow = *plan.shadow;
  const SettingsPtr settings = server_.settings();  // held: a reload may replace it meanwhile
  const routing::ProxySettings& proxy = settings->config->proxy;
  const auto deadline = std::chrono::steady_clock::now() + ToDuration(proxy.shadow_quiet_timeout_s);
  bool rechecked = false;  // an unexplained difference was read again
  bool differed = false;
  Outcome outcome;
  while (true) {
    Explanation why;
    {
      std::string first, second;
      run.reading.Release();  // the last round's results are gone
      AppendRead(run, plan.server, first, plan.sql, job.bind, true);
      AppendRead(run, shadow.server, second, shadow.sql, job.bind, true);
      const auto began = std::chrono::steady_clock::now();
      co_await Send(run, plan.server, first);
      co_await Send(run, shadow.server, second);
      routing::ResultSet a = co_await CollectOne(run, plan.server);
      routing::ResultSet b = co_await CollectOne(run, shadow.server);
      if (run.lost || !run.skipped_because.empty()) co_return outcome;  // Unjudged
      outcome.comparison = routing::CompareResults(a, b, shadow.ordered);
      if (outcome.comparison.match) {
        outcome.verdict = differed ? Verdict::kTransient : Verdict::kMatched;
        co_return outcome;
      }
      differed = true;
      why = Explain(job, a, b, began);
      run.reading.Release();  // a and b go here: their bytes are not held while waiting
    }
    if (!why.explained) {
      outcome.keys = why.unexplained;
      if (rechecked) {
        outcome.verdict = Verdict::kPersistent;
        co_return outcome;
      }
      // Nothing pgshift did explains it; a write it cannot see (another
      // instance's) might: once more after a short delay.
      rechecked = true;
      bool resumed = co_await Pause(run, job, ToDuration(proxy.shadow_recheck_s));
      if (!resumed) {
        outcome.verdict = Verdict::kDropped;
        co_return outcome;
      }
      continue;
    }
    rechecked = false;  // a later unexplained difference gets its own recheck
    bool quiet = co_await WaitUntilQuiet(run, job, why, deadline);
    if (!quiet) {
      outcome.verdict = run.lost ? Verdict::kDropped : Verdict::kUnstable;
      co_return outcome;
    }
  }
}

std::vector<std::string> ShadowRunner::DifferingKeys(const ShadowJob& job,
                                                     const routing::ResultSet& a,
                                                     const routing::ResultSet& b, bool* pinned) {
  const routing::ShadowPlan& shadow = *job.plan->shadow;
  if (shadow.key.empty() || a.columns != b.columns || !a.error_sqlstate.empty() ||
      !b.error_sqlstate.empty()) {
    return {};
  }
  // The read's text under the table's old names: its key is named so.
  const std::string& sql = shadow.new_is_authoritative ? shadow.sql : job.plan->sql;
  routing::KeyTrace trace = routing::TraceKeys(sql, shadow.key, TextParameters(job.bind));
  if (trace.columns.empty()) {
    if (pinned != nullptr) *pinned = true;
    return trace.pinned;
  }
  std::vector<size_t> at;
  for (const std::string& name : trace.columns) {
    auto column = std::find_if(a.columns.begin(), a.columns.end(),
                               [&](const auto& c) { return c.name == name; });
    if (column == a.columns.end()) return {};
    at.push_back(static_cast<size_t>(column - a.columns.begin()));
  }
  return routing::DifferingKeys(a, b, at);
}

ShadowRunner::Explanation ShadowRunner::Explain(const ShadowJob& job, const routing::ResultSet& a,
                                                const routing::ResultSet& b,
                                                std::chrono::steady_clock::time_point began) const {
  const routing::ShadowPlan& shadow = *job.plan->shadow;
  const routing::WritesInFlight& writes = server_.writes_in_flight();
  Explanation why;
  bool pinned = false;
  why.keys = DifferingKeys(job, a, b, &pinned);
  const bool quiet = std::all_of(shadow.tables.begin(), shadow.tables.end(),
                                 [&](const std::string& t) { return writes.Quiet(t, began); });
  if (!why.keys.empty()) {
    const std::string& table = shadow.tables.front();
    for (const std::string& key : why.keys) {
      if (!writes.Explains(table, key, began)) why.unexplained.push_back(key);
    }
    why.explained = why.unexplained.empty();
    // A key pinned by the statement's text ('007', an upper-case uuid) may
    // be spelled otherwise than PostgreSQL writes it: while the table was
    // written it counts as a result without keys.
    if (why.explained || !pinned || quiet) return why;
    why.keys.clear();
    why.unexplained.clear();
  }
  // No keys to trace the difference to: only a moment without any write
  // of the read's tables in flight tells.
  why.explained = !quiet;
  return why;
}

awaitable<bool> ShadowRunner::WaitUntilQuiet(Comparing& run, const ShadowJob& job,
                                             const Explanation& why,
                                             std::chrono::steady_clock::time_point deadline) {
  const routing::ShadowPlan& shadow = *job.plan->shadow;
  const routing::WritesInFlight& writes = server_.writes_in_flight();
  auto quiet = [&] {
    if (!why.keys.empty()) {
      return std::none_of(why.keys.begin(), why.keys.end(), [&](const std::string& k) {
        return writes.Writing(shadow.tables.front(), k);
      });
    }
    return std::none_of(shadow.tables.begin(), shadow.tables.end(),
                        [&](const std::string& t) { return writes.Writing(t); });
  };
  // Polled: the writes settle on other workers' threads. The connections
  // and the slot serve others meanwhile.
  constexpr auto kPoll = std::chrono::milliseconds(2);
  if (std::chrono::steady_clock::now() >= deadline) co_return false;
  if (quiet()) co_return true;
  GiveBack(run);
  GiveSlot();
  ++waiting_;
  bool became_quiet = false;
  asio::steady_timer timer(context_);
  while (std::chrono::steady_clock::now() + kPoll < deadline) {
    timer.expires_after(kPoll);
    error_code ignored;
    co_await timer.async_wait(WithError(ignored));
    if (quiet()) {
      became_quiet = true;
      break;
    }
  }
  --waiting_;
  co_await TakeSlot();  // held again, as Run expects
  if (!became_quiet) co_return false;
  bool connected = co_await BorrowBoth(run, job);
  if (!connected) run.lost = true;
  co_return connected;
}

awaitable<bool> ShadowRunner::Pause(Comparing& run, const ShadowJob& job,
                                    std::chrono::steady_clock::duration delay) {
  // Other comparisons use the connections and the slot meanwhile; a
  // waiting comparison counts against the queue's bound.
  GiveBack(run);
  GiveSlot();
  ++waiting_;
  asio::steady_timer timer(context_);
  timer.expires_after(delay);
  error_code ignored;
  co_await timer.async_wait(WithError(ignored));
  --waiting_;
  co_await TakeSlot();
  bool connected = co_await BorrowBoth(run, job);
  if (!connected) run.lost = true;
  co_return connected;
}

void ShadowRunner::Dropped(const routing::ShadowPlan& shadow, std::string_view why) {
  shadow.Count(&routing::TableCounters::shadow_dropped);
  LogEvent(LogLevel::kDebug, "shadow_dropped",
           {{"table", shadow.table}, {"query", shadow.normalized}, {"reason", why}});
}

bool ShadowRunner::Unjudged(const Comparing& run, const routing::ShadowPlan& shadow) {
  if (run.lost) {
    Dropped(shadow, "a connection was lost");
    return true;
  }
  if (run.skipped_because.empty()) return false;
  // Not all of a result could be had: no verdict either way.
  shadow.Count(&routing::TableCounters::shadow_skipped);
  LogEvent(
      LogLevel::kDebug, "shadow_skipped",
      {{"table", shadow.table}, {"query", shadow.normalized}, {"reason", run.skipped_because}});
  return true;
}

void ShadowRunner::Tally(const ShadowJob& job, const Outcome& outcome) {
  const routing::ShadowPlan& shadow = *job.plan->shadow;
  const char* said = "matched";
  switch (outcome.verdict) {
    case Verdict::kMatched: shadow.Count(&routing::TableCounters::shadow_matched); break;
    case Verdict::kTransient:
      said = "transient";
      shadow.Count(&routing::TableCounters::shadow_transient);
      break;
    case Verdict::kPersistent:
      said = "persistent";
      shadow.Count(&routing::TableCounters::shadow_persistent);
      Report(job, outcome);
      break;
    case Verdict::kUnstable:
      // No verdict: not counted compared.
      shadow.Count(&routing::TableCounters::shadow_unstable);
      LogEvent(LogLevel::kDebug, "shadow_compared",
               {{"table", shadow.table}, {"reads", "both"}, {"outcome", "unstable"}});
      return;
    case Verdict::kDropped: return;
  }
  shadow.Count(&routing::TableCounters::shadow_compared);
  LogEvent(LogLevel::kDebug, "shadow_compared",
           {{"table", shadow.table}, {"reads", "both"}, {"outcome", said}});
}

void ShadowRunner::Report(const ShadowJob& job, const Outcome& outcome) {
  const routing::ShadowPlan& shadow = *job.plan->shadow;
  const routing::Comparison& comparison = outcome.comparison;
  const char* authoritative = shadow.new_is_authoritative ? "new" : "old";
  const char* other = shadow.new_is_authoritative ? "old" : "new";
  std::string detail = comparison.reason;
  if (!comparison.only_authoritative.empty()) {
    detail = StrCat(detail, "; only in ", authoritative, ": ", Join(comparison.only_authoritative));
  }
  if (!comparison.only_other.empty()) {
    detail = StrCat(detail, "; only in ", other, ": ", Join(comparison.only_other));
  }
  if (!outcome.keys.empty()) {
    std::vector<std::string> keys(outcome.keys.begin(),
                                  outcome.keys.begin() + std::min<size_t>(outcome.keys.size(), 20));
    detail = StrCat(detail, "; differing keys: ", Join(keys),
                    outcome.keys.size() > keys.size() ? " ..." : "");
  }
  server_.mismatches().Add(MismatchRecord{std::chrono::system_clock::now(), shadow.table,
                                          shadow.fingerprint, shadow.normalized, detail});
}

}  // namespace pgshift::proxy
