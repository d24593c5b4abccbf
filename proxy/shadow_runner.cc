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

// query_canceled: statement_timeout cut a read short.
constexpr std::string_view kQueryCanceled = "57014";
constexpr std::string_view kInsufficientPrivilege = "42501";
// What a prepared statement fails with once its table's columns changed.
constexpr std::string_view kStalePlan = "0A000";
constexpr std::string_view kStalePlanMessage = "cached plan must not change result type";

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

ShadowBytes ShadowRunner::Bytes() {
  budget_->limit = static_cast<size_t>(server_.settings()->config->proxy.shadow_max_bytes);
  return ShadowBytes(budget_);
}

bool ShadowRunner::Enqueue(ShadowJob job) {
  if (queue_.size() + waiting_ + slot_waiters_.size() >=
      static_cast<size_t>(server_.settings()->config->proxy.shadow_queue_size)) {
    Dropped(*job.plan->shadow, "the queue is full");
    return false;
  }
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
    while (!queue_.empty() && slot_waiters_.empty() && comparing_ < most) {
      ++comparing_;
      asio::co_spawn(context_, Run(std::move(queue_.front())), asio::detached);
      queue_.pop_front();
    }
    wake_.expires_at(asio::steady_timer::time_point::max());
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

awaitable<bool> ShadowRunner::Borrow(Comparing& run, BackendId side) {
  ConnectionPtr& held = run.connections[static_cast<int>(side)];
  if (held && held->stream && held->stream->is_open()) co_return true;
  std::vector<ConnectionPtr>& idle = idle_[static_cast<int>(side)];
  while (!idle.empty()) {
    held = std::move(idle.back());
    idle.pop_back();
    if (held->stream && held->stream->is_open()) co_return true;
  }
  held.reset();
  SettingsPtr settings = server_.settings();
  const routing::Config& config = *settings->config;
  const bool new_side = side == BackendId::kNew;
  if (new_side && !config.new_backend) co_return false;  // a reload removed it
  routing::BackendConfig backend = new_side ? *config.new_backend : config.old_backend;
  if (!config.proxy.shadow_user.empty()) {
    backend.user = config.proxy.shadow_user;
    backend.password = config.proxy.shadow_password;
  }
  // Every transaction on it is one REPEATABLE READ snapshot that cannot
  // write (a batch of reads up to one Sync is such a transaction), and a
  // read runs at most shadow_timeout. As startup options they are what
  // DISCARD ALL, after each comparison, returns to.
  const std::string options = StrCat(
      "-c default_transaction_isolation=repeatable\\ read -c "
      "default_transaction_read_only=on -c statement_timeout=",
      std::max<int64_t>(1, static_cast<int64_t>(config.proxy.shadow_timeout_s * 1000)));
  auto opened = co_await OpenControlConnection(config, backend, new_side ? "new" : "old",
                                               server_.backend_tls(), options);
  if (!opened.ok()) {
    LogEvent(LogLevel::kWarning, "shadow_unavailable",
             {{"backend", new_side ? "new" : "old"}, {"reason", MessageOf(opened.status())}});
    co_return false;
  }
  held = std::make_unique<Connection>();
  held->stream = std::move(*opened);
  co_return true;
}

void ShadowRunner::GiveBack(Comparing& run) {
  for (size_t side = 0; side < run.connections.size(); ++side) {
    ConnectionPtr& held = run.connections[side];
    if (held && held->stream && held->stream->is_open()) idle_[side].push_back(std::move(held));
    held.reset();
  }
}

void ShadowRunner::AppendRead(Comparing& run, BackendId side, std::string& out,
                              const std::string& sql,
                              const std::shared_ptr<const std::string>& bind, bool sync) {
  protocol::Bind params;
  if (bind) {
    auto decoded = protocol::Bind::Decode(std::string_view(*bind).substr(protocol::kHeaderSize));
    if (decoded.ok()) params = *std::move(decoded);
  }
  params.portal.clear();
  params.statement.clear();
  params.result_formats.clear();  // text, for comparing
  Connection* c = run.connections[static_cast<int>(side)].get();
  if (run.discard || c == nullptr) {
    protocol::Parse{"", sql, {}}.Encode(out);
  } else {
    // Prepared once per connection: parsing and planning each read again
    // would cost the server more than the client's own read.
    if (c->prepared_unsure || c->prepared.size() >= kMaxPrepared) {
      for (const auto& [text, name] : c->prepared) {
        protocol::Close{protocol::Target::kStatement, name}.Encode(out);
      }
      c->prepared.clear();
      c->prepared_unsure = false;
    }
    auto [at, added] = c->prepared.try_emplace(sql);
    if (added) {
      at->second = StrCat("pgshift_shadow_", ++c->statements_made);
      protocol::Parse{at->second, sql, {}}.Encode(out);
    }
    params.statement = at->second;
  }
  params.Encode(out);
  protocol::Describe{protocol::Target::kPortal, ""}.Encode(out);
  protocol::Execute{"", 0}.Encode(out);
  if (sync) protocol::Sync{}.Encode(out);
}

awaitable<bool> ShadowRunner::Send(Comparing& run, BackendId side, const std::string& out) {
  Connection* c = run.connections[static_cast<int>(side)].get();
  if (c == nullptr || !c->stream) co_return false;
  std::string batch = out;
  if (run.discard) {
    protocol::Query{"DISCARD ALL"}.Encode(batch);
    c->prepared.clear();  // DISCARD ALL deallocates them
  }
  error_code ec;
  co_await c->stream->Write(asio::buffer(batch), ec);
  if (ec) {
    c->stream.reset();
  } else if (run.discard) {
    ++c->discards_pending;
  }
  co_return !ec;
}

awaitable<std::vector<routing::ResultSet>> ShadowRunner::Collect(Comparing& run, BackendId side) {
  std::vector<routing::ResultSet> results(1);
  Connection* held = run.connections[static_cast<int>(side)].get();
  Connection empty;
  Connection& c = held != nullptr ? *held : empty;
  error_code ec;
  bool discarding = false;  // the reads answered: the DISCARD ALL's reply follows
  while (c.stream) {
    routing::ResultSet& result = results.back();
    auto message = co_await ReadWholeMessage(*c.stream, c.buffer, protocol::kBackendTypes, ec,
                                             protocol::kDefaultMaxMessageSize);
    if (ec || !message.ok()) break;
    std::string_view payload = std::string_view(*message).substr(protocol::kHeaderSize);
    if (discarding) {
      if ((*message)[0] != protocol::backend::kReadyForQuery) continue;
      --c.discards_pending;
      co_return results;
    }
    switch ((*message)[0]) {
      case protocol::backend::kRowDescription: {
        auto desc = protocol::RowDescription::Decode(payload);
        if (!desc.ok()) break;
        for (const auto& f : desc->fields) result.columns.push_back({f.name, f.type_oid});
        break;
      }
      case protocol::backend::kDataRow: {
        auto row = protocol::DataRow::Decode(payload);
        if (!row.ok()) break;
        if (run.skipped_because.empty() &&
            run.reading.Take(routing::ResultSet::RowBytes(message->size(), row->values.size()))) {
          result.rows.push_back(std::move(row->values));
        } else if (run.skipped_because.empty()) {
          run.skipped_because = "result above shadow_max_bytes";
        }
        break;
      }
      case protocol::backend::kErrorResponse: {
        auto e = protocol::ErrorResponse::Decode(payload);
        c.prepared_unsure = true;
        result.error_sqlstate = e.ok() ? std::string(e->sqlstate()) : "XX000";
        result.error_message = e.ok() ? std::string(e->message()) : "malformed error";
        if (result.error_sqlstate == kQueryCanceled && run.skipped_because.empty()) {
          run.skipped_because = "a read ran past shadow_timeout";
        } else if (result.error_sqlstate == kStalePlan && !run.discard &&
                   result.error_message == kStalePlanMessage && run.skipped_because.empty()) {
          // "cached plan must not change result type": the table changed
          // under a statement pgshift prepared; prepared afresh next time.
          run.skipped_because = StrCat("a prepared shadow read went stale: ", result.error_message);
        } else if (result.error_sqlstate == kInsufficientPrivilege && run.skipped_because.empty()) {
          // Both sides failing alike would look like agreement.
          run.skipped_because = StrCat("the shadow role may not read: ", result.error_message);
          if (!privilege_warned_) {
            privilege_warned_ = true;
            LogEvent(LogLevel::kWarning, "shadow_privilege_missing",
                     {{"backend", side == BackendId::kNew ? "new" : "old"},
                      {"reason", result.error_message}});
          }
        }
        break;  // the server skips the rest of the batch
      }
      case protocol::backend::kCommandComplete:  // this read's end: the next one's result follows
        results.emplace_back();
        break;
      case protocol::backend::kReadyForQuery:
        if (results.size() > 1 && results.back().columns.empty() && results.back().rows.empty() &&
            results.back().error_sqlstate.empty()) {
          results.pop_back();
        }
        if (c.discards_pending == 0) co_return results;
        discarding = true;
        break;
      default:
        break;
    }
  }
  // The connection is gone: a fresh one next time. Once the reads had all
  // answered (only the DISCARD ALL's reply was due), their results stand.
  c.stream.reset();
  if (discarding) co_return results;
  run.lost = true;
  routing::ResultSet lost;
  lost.error_sqlstate = "08006";
  lost.error_message = "pgshift's shadow connection was lost";
  co_return std::vector<routing::ResultSet>{lost};
}

awaitable<routing::ResultSet> ShadowRunner::CollectOne(Comparing& run, BackendId side) {
  std::vector<routing::ResultSet> results = co_await Collect(run, side);
  co_return std::move(results.front());
}

awaitable<void> ShadowRunner::Compare(Comparing& run, ShadowJob& job) {
  const routing::Plan& plan = *job.plan;
  const routing::ShadowPlan& shadow = *plan.shadow;
  // One co_await per statement: GCC 12 mishandles them inside || and ?:.
  bool connected = co_await Borrow(run, plan.server);
  if (connected) connected = co_await Borrow(run, shadow.server);
  if (!connected) {
    Dropped(shadow, "no connection");
    co_return;
  }
  // The client's result came from an earlier moment than the other side's
  // read: when they differ, both sides are read now, and only that
  // comparison counts.
  if (job.served) {
    bool matched = co_await MatchesServed(run, job);
    if (matched || Unjudged(run, shadow)) co_return;
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

// The client's own result against the other side's read, run now: most
// comparisons cost one read. A difference may be a write that came in
// between, so it is only counted once read again on both.
awaitable<bool> ShadowRunner::MatchesServed(Comparing& run, const ShadowJob& job) {
  const routing::ShadowPlan& shadow = *job.plan->shadow;
  std::string out;
  AppendRead(run, shadow.server, out, shadow.sql, job.bind, true);
  run.reading.Release();  // nothing read before is held any more
  bool sent = co_await Send(run, shadow.server, out);
  routing::ResultSet b = co_await CollectOne(run, shadow.server);
  if (!sent || !run.skipped_because.empty() ||
      !routing::CompareResults(*job.served, b, shadow.ordered).match) {
    co_return false;
  }
  shadow.Count(&routing::TableCounters::shadow_compared);
  shadow.Count(&routing::TableCounters::shadow_matched);
  LogEvent(LogLevel::kDebug, "shadow_compared",
           {{"table", shadow.table}, {"reads", "one"}, {"outcome", "matched"}});
  co_return true;
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
  bool connected = co_await Borrow(run, job.plan->server);
  if (connected) connected = co_await Borrow(run, shadow.server);
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
  bool connected = co_await Borrow(run, job.plan->server);
  if (connected) connected = co_await Borrow(run, job.plan->shadow->server);
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
