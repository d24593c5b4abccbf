#include "proxy/session/mirror_coordinator.h"

#include <algorithm>

#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/ready_for_query.h"
#include "proxy/log.h"
#include "proxy/session/mirror_sql.h"
#include "proxy/two_phase.h"
#include "routing/state_schema.h"

namespace pgshift::proxy {

namespace {

using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
namespace backend = protocol::backend;
namespace sqlstate = protocol::sqlstate;
using namespace mirror_sql;  // NOLINT: pgshift's statements around a mirror

}  // namespace

void MirrorCoordinator::AwaitCopy(const std::vector<std::shared_ptr<MirrorBatch>>& batches) {
  awaiting_copy_.insert(awaiting_copy_.end(), batches.begin(), batches.end());
}

std::vector<std::shared_ptr<MirrorBatch>> MirrorCoordinator::TakeAwaitingCopy() {
  return std::exchange(awaiting_copy_, {});
}

void MirrorCoordinator::EndTransaction() {
  ClearKeys();
  authoritative_xid_.clear();
  fail_on_error_ = false;
  if (pending_) {  // (collected at the COMMIT or ROLLBACK that ended it)
    for (const std::string& key : pending_->parsed_here)
      link(pending_->mirror).statements.erase(key);
    pending_.reset();
  }
  failed_.reset();
}

awaitable<bool> MirrorCoordinator::BeforeStep(Step& step, std::shared_ptr<MirrorBatch>& batch) {
  Link& auth = link(step.target);
  Link& mirror = link(routing::OtherBackend(step.target));
  batch = std::make_shared<MirrorBatch>();
  // The session's budget for mirroring: what the transaction's keys leave.
  const size_t budget = static_cast<size_t>(c_.settings->config->proxy.mirror_max_bytes);
  batch->max_bytes = budget - std::min(budget, keys_bytes_);
  bool send = true;
  if (step.transaction == routing::TransactionKind::kCommit) {
    send = co_await BeforeCommit(step, auth, mirror, batch);
  } else if (!step.in_client_transaction) {
    co_await BeforeWrite(step, auth, *batch);
  }
  // Until Settle: the transaction is not over.
  if (batch) settling_ = true;
  co_return send;
}

// The client's COMMIT of a transaction with mirrored rows: the mirror is
// prepared first, and committed once the COMMIT has succeeded.
awaitable<bool> MirrorCoordinator::BeforeCommit(const Step& step, Link& auth, Link& mirror,
                                                std::shared_ptr<MirrorBatch>& batch) {
  batch->mode = MirrorBatch::Mode::kCommit;
  co_await c_.port.WaitFor([&] { return auth.Quiet() && mirror.Quiet(); });
  if (c_.port.ended()) co_return true;
  if (auth.transaction_status == TransactionStatus::kFailed && !failed_) {
    // The COMMIT will roll back; so does the mirror.
    co_await c_.port.RunInternal(mirror, "ROLLBACK");
    c_.transaction.MirrorEnded(mirror.server);
    batch.reset();
    co_return true;
  }
  std::optional<ErrorFields> failed;
  std::string what =
      StrCat("the mirror of this transaction on server ", mirror.name, " could not be committed");
  // A pipelined apply that failed: the COMMIT fails whatever the policy
  // (under "log" only when its keys could not be logged).
  const bool apply_failed = failed_.has_value();
  if (apply_failed) {
    what = StrCat("the mirror of a write in this transaction ", failed_->what, " failed");
    failed = std::move(failed_->cause);
    failed_.reset();
  } else if (mirror.broken() || mirror.transaction_status == TransactionStatus::kFailed) {
    failed = MirrorError(sqlstate::kConnectionFailure,
                         mirror.broken()
                             ? StrCat("lost the connection to backend ", mirror.name)
                             : StrCat("its transaction on backend ", mirror.name, " failed"));
  } else if (can_prepare(mirror) && !authoritative_xid_.empty()) {
    batch->prepared = SettlingMirror(PreparedId(auth));
    failed = co_await c_.port.RunInternal(
        mirror, StrCat("PREPARE TRANSACTION ", QuoteLiteral(batch->prepared.gid())));
  }
  if (!failed) {
    in_flight_.Committing();
    co_return true;
  }
  LogEvent(LogLevel::kError, "mirror_commit_failed",
           {{"session", StrCat(c_.session)},
            {"backend", mirror.name},
            {"keys", StrCat(keys_.size())},
            {"policy", fail_on_error_ ? "fail" : "log"},
            {"reason", failed->message()}});
  if (mirror.transaction_status != TransactionStatus::kIdle && !mirror.broken()) {
    co_await c_.port.RunInternal(mirror, "ROLLBACK");
  }
  c_.transaction.MirrorEnded(mirror.server);
  batch.reset();
  if (!fail_on_error_ && !apply_failed) {
    std::optional<ErrorFields> logged = co_await LogDivergence(auth, keys_, failed->message());
    if (!logged) co_return true;  // the COMMIT goes ahead; the keys are logged
    failed = logged;
  }
  // Both sides roll back, and the COMMIT fails in its stand-in's words.
  if (step.opens) co_await c_.port.RunInternal(auth, "ROLLBACK");
  c_.refusals.Set(
      step.fail_probe,
      ErrorFields::Make(
          "ERROR", failed->sqlstate(),
          StrCat("pgshift: ", what, ", so the transaction was rolled back: ", failed->message())));
  co_return false;
}

// A mirrored write outside the client's transaction (in it, begun earlier
// or ahead of the write in its batch, the mirror joins that one). pgshift
// begins one around it, to end once the mirror is settled.
awaitable<void> MirrorCoordinator::BeforeWrite(const Step& step, Link& auth, MirrorBatch& batch) {
  if (c_.transaction.reported == TransactionStatus::kIdle && step.opens) {
    co_await c_.port.WaitFor([&] { return auth.Quiet(); });
    if (c_.port.ended()) co_return;
  }
  if (auth.transaction_status != TransactionStatus::kIdle ||
      c_.transaction.reported != TransactionStatus::kIdle) {
    co_return;
  }
  if (step.opens) {
    // Sent ahead of the client's statement, not waited for.
    std::string begin = InternalBatch({"BEGIN", "SELECT pg_catalog.txid_current()"});
    batch.begun = co_await c_.port.SendInternal(auth, std::move(begin));
    batch.mode = MirrorBatch::Mode::kImplicit;
  } else {
    // Its batch was already under way: the write commits on its own.
    batch.mode = MirrorBatch::Mode::kAutocommitted;
  }
}

awaitable<void> MirrorCoordinator::Settle(Link& auth, MirrorBatch& batch) {
  if (batch.begun) {
    std::string xid;
    if (co_await c_.port.AwaitInternal(batch.begun, &xid)) {
      // No transaction of pgshift's own: the write committed on its own.
      batch.mode = MirrorBatch::Mode::kAutocommitted;
    } else {
      authoritative_xid_ = xid;
    }
  }
  co_await c_.port.WaitFor([&batch] { return batch.outcome != MirrorBatch::Outcome::kPending; });
  if (c_.port.ended()) co_return;
  // No transaction is open after the batch (a BEGIN before the write
  // failed): the write committed on its own.
  if (batch.mode == MirrorBatch::Mode::kClientTransaction &&
      batch.status == TransactionStatus::kIdle) {
    batch.mode = MirrorBatch::Mode::kAutocommitted;
  }
  Link& mirror = link(routing::OtherBackend(auth.server));
  if (batch.mode == MirrorBatch::Mode::kCommit) {
    co_await FinishCommit(auth, mirror, batch);
  } else if (batch.too_large()) {
    co_await MirrorTooLarge(auth, mirror, batch);
  } else if (batch.outcome == MirrorBatch::Outcome::kFailed) {
    // The write itself failed: there is nothing to mirror.
    if (batch.mode == MirrorBatch::Mode::kImplicit) {
      co_await c_.port.RunInternal(auth, "ROLLBACK");
      co_await ReleaseHeld(batch, TransactionStatus::kIdle);
    } else {
      co_await ReleaseHeld(batch, batch.status);
    }
  } else {
    co_await MirrorWrite(auth, mirror, batch);
  }
  settling_ = false;
}

awaitable<void> MirrorCoordinator::ReleaseHeld(MirrorBatch& batch, TransactionStatus status) {
  std::string& held = batch.held;
  if (batch.held_ready) {
    held.back() = static_cast<char>(status);
    c_.transaction.reported = status;
  }
  co_await c_.port.SendToClient(held);
}

awaitable<void> MirrorCoordinator::FailClient(const MirrorBatch& batch, const ErrorFields& error,
                                              TransactionStatus status) {
  // The client's statement failed: the rest of its Query is skipped.
  c_.transaction.failed_group = batch.group;
  std::string out;
  protocol::ErrorResponse(error).Encode(out);
  protocol::ReadyForQuery{status}.Encode(out);
  c_.transaction.reported = status;
  co_await c_.port.SendToClient(out);
}

// The client's COMMIT has answered: the mirror follows it.
awaitable<void> MirrorCoordinator::FinishCommit(Link& auth, Link& mirror, MirrorBatch& batch) {
  const bool committed = batch.outcome != MirrorBatch::Outcome::kFailed;
  const std::string& prepared = batch.prepared.gid();
  std::string sql = prepared.empty() ? std::string(committed ? "COMMIT" : "ROLLBACK")
                                     : StrCat(committed ? "COMMIT PREPARED " : "ROLLBACK PREPARED ",
                                              QuoteLiteral(prepared));
  std::optional<ErrorFields> failed = co_await c_.port.RunInternal(mirror, sql);
  if (failed && committed) {
    LogEvent(LogLevel::kError, "mirror_commit_failed",
             {{"session", StrCat(c_.session)},
              {"backend", mirror.name},
              {"transaction", prepared},
              {"keys", StrCat(keys_.size())},
              {"reason", failed->message()}});
    co_await LogDivergence(auth, keys_, failed->message());
  }
  c_.transaction.MirrorEnded(mirror.server);
  ClearKeys();
}

void MirrorCoordinator::ClearKeys() {
  keys_.clear();
  keys_bytes_ = 0;
  in_flight_.Release();
}

void MirrorCoordinator::HoldKeys(const MirrorBatch& batch, routing::WritesInFlight::Hold& hold) {
  for (const MirrorBatch::Rows& r : batch.rows) {
    if (r.mirror->truncate) {
      for (absl::string_view t : absl::StrSplit(r.mirror->table, ", "))
        hold.AddTable(std::string(t));
    } else if (batch.keys_lost || r.keys.size() < r.count) {
      hold.AddTable(r.mirror->table);
    } else {
      std::vector<std::pair<std::string, std::optional<std::string>>> keys;
      keys.reserve(r.keys.size());
      for (const auto& k : r.keys) keys.emplace_back(r.mirror->table, k);
      hold.Add(keys);
    }
  }
}

// A write whose rows and replies outgrew the session's mirror_max_bytes:
// it fails, and is rolled back on the authoritative side (nothing was
// applied on the mirror).
awaitable<void> MirrorCoordinator::MirrorTooLarge(Link& auth, Link& mirror, MirrorBatch& batch) {
  MirroredRows rows = MirroredRows::Of(batch);
  rows.fails_client = true;
  const uint64_t limit = static_cast<uint64_t>(c_.settings->config->proxy.mirror_max_bytes);
  ErrorFields error = MirrorError(
      sqlstate::kProgramLimitExceeded,
      StrCat("the mirror of this write would hold ", PrettySize(batch.bytes + keys_bytes_),
             keys_.empty() ? "" : " with the keys this transaction mirrored before it",
             ", above mirror_max_bytes (", PrettySize(limit), ")",
             batch.keys_lost ? "; not every key could be kept: run verify --repair on the table"
                             : ""));
  if (batch.outcome == MirrorBatch::Outcome::kFailed) {
    const bool implicit = batch.mode == MirrorBatch::Mode::kImplicit;
    if (implicit) co_await c_.port.RunInternal(auth, "ROLLBACK");
    co_return co_await FailClient(batch, error, implicit ? TransactionStatus::kIdle : batch.status);
  }
  co_await MirrorFailed(auth, mirror, batch, rows, error);
}

MirrorCoordinator::MirroredRows MirrorCoordinator::MirroredRows::Of(const MirrorBatch& batch) {
  MirroredRows rows;
  for (const MirrorBatch::Rows& r : batch.rows) {
    if (std::find(rows.tables.begin(), rows.tables.end(), r.mirror->table) == rows.tables.end()) {
      rows.tables.push_back(r.mirror->table);
    }
    rows.fails_client =
        rows.fails_client || r.mirror->on_error == routing::MirrorErrorPolicy::kFail;
    rows.anything = rows.anything || r.count > 0 || r.mirror->truncate;
    rows.pipelined = rows.pipelined && r.mirror->pipelined;
    for (const auto& k : r.keys) rows.keys.emplace_back(r.mirror->table, k);
  }
  return rows;
}

awaitable<void> MirrorCoordinator::MirrorWrite(Link& auth, Link& mirror, MirrorBatch& batch) {
  const MirroredRows rows = MirroredRows::Of(batch);
  // An earlier pipelined apply's outcome first: this write fails if it did.
  co_await CollectApply(/*undone=*/false);
  if (failed_) co_return co_await FailAfterEarlierApply(auth, batch);
  const bool pipelined = rows.pipelined && batch.mode == MirrorBatch::Mode::kClientTransaction;
  // Its keys are in flight from now (neither side has committed it) until
  // both sides have: the end of the client's transaction, or of this
  // write when it committed on its own.
  const bool autocommitted = batch.mode == MirrorBatch::Mode::kAutocommitted;
  routing::WritesInFlight::Hold committed_alone = c_.writes_in_flight.NewHold();
  HoldKeys(batch, autocommitted ? committed_alone : in_flight_);
  std::optional<ErrorFields> failed;
  SettlingMirror prepared;
  if (rows.anything) failed = co_await AfterCommittingWrites(mirror, batch);
  if (autocommitted) committed_alone.Committing();
  if (rows.anything && !failed) {
    failed = co_await ApplyMirror(auth, mirror, batch, rows, prepared, pipelined);
  }
  // Committed on its own, the write is settled once its apply has ended
  // (committed there, or failed): nothing of it is pending on the mirror.
  committed_alone.Release();
  if (failed) co_return co_await MirrorFailed(auth, mirror, batch, rows, *failed);
  if (rows.anything && batch.mode != MirrorBatch::Mode::kAutocommitted) {
    c_.transaction.Mirrored(mirror.server);
    keys_.insert(keys_.end(), rows.keys.begin(), rows.keys.end());
    for (const auto& [table, key] : rows.keys) keys_bytes_ += KeyBytes(table, key);
    fail_on_error_ = fail_on_error_ || rows.fails_client;
  }
  if (batch.mode != MirrorBatch::Mode::kImplicit) {
    co_return co_await ReleaseHeld(batch, batch.status);
  }
  // pgshift's own transaction: the authoritative side commits first, then
  // the mirror.
  in_flight_.Committing();
  std::optional<ErrorFields> commit = co_await c_.port.RunInternal(auth, "COMMIT");
  if (rows.anything) {
    std::string sql = prepared.gid().empty()
                          ? std::string(commit ? "ROLLBACK" : "COMMIT")
                          : StrCat(commit ? "ROLLBACK PREPARED " : "COMMIT PREPARED ",
                                   QuoteLiteral(prepared.gid()));
    std::optional<ErrorFields> mirrored = co_await c_.port.RunInternal(mirror, sql);
    if (mirrored && !commit) {
      LogEvent(LogLevel::kError, "mirror_commit_failed",
               {{"session", StrCat(c_.session)},
                {"backend", mirror.name},
                {"transaction", prepared.gid()},
                {"keys", StrCat(rows.keys.size())},
                {"reason", mirrored->message()}});
      co_await LogDivergence(auth, rows.keys, mirrored->message());
    }
  }
  c_.transaction.MirrorEnded(mirror.server);
  ClearKeys();
  if (commit) {
    co_await FailClient(batch, *commit, TransactionStatus::kIdle);
  } else {
    co_await ReleaseHeld(batch, TransactionStatus::kIdle);
  }
}

awaitable<InternalPort::Error> MirrorCoordinator::AfterCommittingWrites(const Link& mirror,
                                                                        const MirrorBatch& batch) {
  auto committing = [&] {
    for (const MirrorBatch::Rows& r : batch.rows) {
      if (!r.mirror->deletes || r.count == 0) continue;
      // Some keys were not kept: any write of the table may be one of them.
      static const std::vector<std::optional<std::string>> kAnyKey{std::nullopt};
      const bool every_key = !batch.keys_lost && r.keys.size() >= r.count;
      if (c_.writes_in_flight.Committing(r.mirror->table, every_key ? r.keys : kAnyKey)) {
        return true;
      }
    }
    return false;
  };
  const double limit_s = c_.settings->config->proxy.mirror_lock_timeout_s;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(limit_s * 1e6));
  // Committing writes are one round trip from done: a short poll.
  while (committing()) {
    if (c_.port.ended()) {
      co_return MirrorError(sqlstate::kConnectionFailure, "the session ended");
    }
    if (limit_s > 0 && std::chrono::steady_clock::now() >= deadline) {
      co_return MirrorError(
          sqlstate::kLockNotAvailable,
          StrCat("waited more than mirror_lock_timeout (", limit_s,
                 " s) for an earlier write of the same rows to commit on server ", mirror.name));
    }
    co_await c_.port.Pause(std::chrono::milliseconds(1));
  }
  co_return std::nullopt;
}

awaitable<InternalPort::Error> MirrorCoordinator::ApplyMirror(Link& auth, Link& mirror,
                                                              MirrorBatch& batch,
                                                              const MirroredRows& rows,
                                                              SettlingMirror& prepared,
                                                              bool pipelined) {
  // In a transaction of the client's, its txid names the mirror's
  // prepared transaction at COMMIT: asked for while the mirror works.
  std::shared_ptr<InternalReply> xid;
  if (!batch.own_transaction() && authoritative_xid_.empty()) {
    std::string query = InternalBatch({"SELECT pg_catalog.txid_current()"});
    xid = co_await c_.port.SendInternal(auth, std::move(query));
  }
  std::optional<ErrorFields> failed = co_await JoinMirror(mirror);
  if (!failed) {
    ApplyOptions options;
    options.begin = mirror.transaction_status == TransactionStatus::kIdle;
    options.savepoint = !rows.fails_client && !batch.own_transaction();
    if (batch.mode == MirrorBatch::Mode::kImplicit && can_prepare(mirror)) {
      options.prepare_as = PreparedId(auth);
      // Registered before it exists, so recovery never sees it unclaimed.
      prepared = SettlingMirror(options.prepare_as);
    }
    options.lock_timeout_s = c_.settings->config->proxy.mirror_lock_timeout_s;
    options.commit = batch.mode == MirrorBatch::Mode::kAutocommitted;
    if (pipelined) {
      PendingApply& p = pending_.emplace();
      p.reply = co_await SendApply(mirror, batch, options, p.parsed_here);
      p.reply->background = true;
      p.rows = rows;
      p.mirror = mirror.server;
      if (xid) xid->background = true;
      p.xid = std::move(xid);
      co_return std::nullopt;
    }
    failed = co_await ApplyRows(mirror, batch, options);
    if (failed) prepared = SettlingMirror();
  }
  if (xid) co_await c_.port.AwaitInternal(xid, &authoritative_xid_);
  co_return failed;
}

awaitable<void> MirrorCoordinator::MirrorFailed(Link& auth, Link& mirror, MirrorBatch& batch,
                                                const MirroredRows& rows, ErrorFields failed) {
  const bool implicit = batch.mode == MirrorBatch::Mode::kImplicit;
  const bool autocommitted = batch.mode == MirrorBatch::Mode::kAutocommitted;
  NoteFailure(rows, mirror, failed);
  const bool savepoint = !rows.fails_client && !batch.own_transaction();
  if (savepoint) {
    co_await UndoToSavepoint(mirror);
  } else if (mirror.ready() && batch.own_transaction() &&
             mirror.transaction_status != TransactionStatus::kIdle) {
    co_await c_.port.RunInternal(mirror, "ROLLBACK");
  }
  // A write that committed on its own stands whatever the policy: its keys
  // are logged.
  std::optional<ErrorFields> unlogged;
  if (!rows.fails_client || autocommitted) {
    unlogged = co_await LogDivergence(auth, rows.keys, failed.message());
  }
  if (autocommitted && (rows.fails_client || unlogged)) {
    // The client may not take it for a mirrored write.
    ErrorFields error = ErrorFields::Make(
        "ERROR", failed.sqlstate(),
        StrCat("pgshift: the write to ", Tables(rows.tables), " committed on server ", auth.name,
               " on its own (its batch began outside a transaction, before pgshift could open "
               "one around it), but its mirror on server ",
               mirror.name, " failed: ", failed.message(),
               unlogged ? StrCat("; its keys could not be logged either: ", unlogged->message())
                        : std::string("; its keys are in pgshift_divergence for verify --repair")));
    co_return co_await FailClient(batch, error, batch.status);
  }
  if (unlogged) failed = *unlogged;
  if ((rows.fails_client || unlogged) && !autocommitted) {
    // Both sides roll back; the client's statement fails with the
    // mirror's error.
    co_await c_.port.RunInternal(auth, implicit ? "ROLLBACK" : kAbortTransaction);
    ErrorFields error = ErrorFields::Make(
        "ERROR", failed.sqlstate(),
        StrCat("pgshift: ", unlogged ? "the divergence log could not be written after " : "",
               "the mirror of this write to ", Tables(rows.tables), " on server ", mirror.name,
               " failed, so the write was rolled back: ", failed.message()));
    co_return co_await FailClient(batch, error,
                                  implicit ? TransactionStatus::kIdle : TransactionStatus::kFailed);
  }
  if (implicit) {
    if (std::optional<ErrorFields> commit = co_await c_.port.RunInternal(auth, "COMMIT")) {
      co_return co_await FailClient(batch, *commit, TransactionStatus::kIdle);
    }
  }
  co_await ReleaseHeld(batch, implicit ? TransactionStatus::kIdle : batch.status);
}

awaitable<InternalPort::Error> MirrorCoordinator::JoinMirror(Link& mirror) {
  if (mirror.broken() && c_.transaction.mirrors(mirror.server)) {
    co_return MirrorError(sqlstate::kConnectionFailure,
                          StrCat("lost the connection to backend ", mirror.name,
                                 " with rows mirrored earlier in this transaction"));
  }
  if (auto failed = co_await c_.port.ConnectServer(mirror)) co_return failed;
  if (mirror.transaction_status == TransactionStatus::kFailed) {
    co_return MirrorError(sqlstate::kConnectionFailure,
                          StrCat("the transaction on backend ", mirror.name, " has failed"));
  }
  co_await c_.port.SyncSettings(mirror);
  co_return std::nullopt;
}

}  // namespace pgshift::proxy
