// Mirroring across servers, the session's half (the statement's half is
// routing/mirror.cc). A mirrored write runs on the authoritative server and
// returns its rows with the reply; once the reply cycle is complete the
// rows are applied on the other server, in a transaction that follows the
// client's, and only then does the client see the reply. The authoritative
// side commits first: the mirror is prepared before and committed after
// (PREPARE TRANSACTION), so a crash in between is resolved at start.
//
// A failure of the mirror follows the table's on_mirror_error: "fail" fails
// the client's statement and leaves both sides rolled back; "log" lets the
// write stand and writes each of its keys to pgshift_divergence on the
// authoritative side, in the client's own transaction.
#include <algorithm>

#include "common/strings.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "protocol/messages/ready_for_query.h"
#include "routing/state_schema.h"
#include "proxy/log.h"
#include "proxy/session.h"
#include "proxy/two_phase.h"

namespace pgshift::proxy {

namespace {

using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
namespace backend = protocol::backend;
namespace sqlstate = protocol::sqlstate;

// A statement that fails, leaving the transaction aborted as the client's
// failed statement would have; its text says why in the server's log.
constexpr const char* kAbortTransaction =
    "SELECT 'pgshift: the mirror of this statement failed; transaction aborted'::regclass";

constexpr const char* kSavepoint = "SAVEPOINT pgshift_mirror";
constexpr const char* kReleaseSavepoint = "RELEASE SAVEPOINT pgshift_mirror";
constexpr const char* kRollbackToSavepoint = "ROLLBACK TO SAVEPOINT pgshift_mirror";

ErrorFields MirrorError(std::string_view code, std::string_view message) {
  return ErrorFields::Make("ERROR", code, message);
}

std::string Tables(const std::vector<std::string>& tables) {
  std::string out;
  for (const std::string& t : tables) out = out.empty() ? t : StrCat(out, ", ", t);
  return out;
}

}  // namespace

awaitable<bool> Session::BeforeMirroredStep(Step& step, std::shared_ptr<MirrorBatch>& batch) {
  Link& auth = link(step.target);
  Link& mirror = link(routing::OtherBackend(step.target));
  batch = std::make_shared<MirrorBatch>();
  if (step.transaction == routing::TransactionKind::kCommit) {
    // The client's COMMIT of a transaction with mirrored rows: the mirror is
    // prepared first, and committed once the COMMIT has succeeded.
    batch->mode = MirrorBatch::Mode::kCommit;
    co_await WaitUntil([&] { return auth.Quiet() && mirror.Quiet(); });
    if (ended()) co_return true;
    if (auth.transaction_status == TransactionStatus::kFailed) {
      // The COMMIT will roll back; so does the mirror.
      co_await RunInternal(mirror, "ROLLBACK");
      mirror.mirrored = false;
      batch.reset();
      co_return true;
    }
    std::optional<ErrorFields> failed;
    if (mirror.broken() || mirror.transaction_status == TransactionStatus::kFailed) {
      failed = MirrorError(sqlstate::kConnectionFailure,
                           mirror.broken()
                               ? StrCat("lost the connection to backend ", mirror.name)
                               : StrCat("its transaction on backend ", mirror.name, " failed"));
    } else if (settings_->mirroring.can_prepare[static_cast<int>(mirror.server)] &&
               !mirror_.authoritative_xid.empty()) {
      batch->prepared_id = PreparedTransactionId(auth.server, mirror_.authoritative_xid);
      failed = co_await RunInternal(mirror,
                                    StrCat("PREPARE TRANSACTION ", QuoteLiteral(batch->prepared_id)));
    }
    if (!failed) co_return true;
    LogEvent(LogLevel::kError, "mirror_commit_failed",
             {{"session", StrCat(id_)},
              {"backend", mirror.name},
              {"keys", StrCat(mirror_.keys.size())},
              {"policy", mirror_.fail_on_error ? "fail" : "log"},
              {"reason", failed->message()}});
    if (mirror.transaction_status != TransactionStatus::kIdle && !mirror.broken()) {
      co_await RunInternal(mirror, "ROLLBACK");
    }
    mirror.mirrored = false;
    batch.reset();
    if (!mirror_.fail_on_error) {
      std::optional<ErrorFields> logged =
          co_await LogDivergence(auth, mirror_.keys, failed->message());
      if (!logged) co_return true;  // the COMMIT goes ahead; the keys are logged
      failed = logged;
    }
    // Both sides roll back, and the COMMIT fails in its stand-in's words.
    if (step.opens) co_await RunInternal(auth, "ROLLBACK");
    refusals_.Set(
        step.fail_probe,
        ErrorFields::Make("ERROR", failed->sqlstate(),
                          StrCat("pgshift: the mirror of this transaction on server ", mirror.name,
                                 " could not be committed, so the transaction was rolled back: ",
                                 failed->message())));
    co_return false;
  }
  // A mirrored write. Outside a transaction pgshift begins one around it,
  // to end once the mirror is settled; in the client's (begun earlier, or
  // ahead of it in its batch) the mirror joins that one.
  if (step.in_client_transaction) co_return true;
  if (transaction_.reported == TransactionStatus::kIdle && step.opens) {
    co_await WaitUntil([&] { return auth.Quiet(); });
    if (ended()) co_return true;
  }
  if (auth.transaction_status == TransactionStatus::kIdle &&
      transaction_.reported == TransactionStatus::kIdle) {
    if (step.opens) {
      // Sent ahead of the client's statement, not waited for.
      std::string begin = InternalBatch({"BEGIN", "SELECT pg_catalog.txid_current()"});
      batch->begun = co_await SendInternal(auth, std::move(begin));
      batch->mode = MirrorBatch::Mode::kImplicit;
    } else {
      // Its batch was already under way: the write commits on its own.
      batch->mode = MirrorBatch::Mode::kAutocommitted;
    }
  }
  co_return true;
}

awaitable<void> Session::SettleMirror(Link& auth, MirrorBatch& batch) {
  if (batch.begun) {
    std::string xid;
    if (co_await AwaitInternal(batch.begun, &xid)) {
      // No transaction of pgshift's own: the write committed on its own.
      batch.mode = MirrorBatch::Mode::kAutocommitted;
    } else {
      mirror_.authoritative_xid = xid;
    }
  }
  co_await WaitUntil([&batch] { return batch.outcome != MirrorBatch::Outcome::kPending; });
  if (ended()) co_return;
  // No transaction is open after the batch (a BEGIN before the write
  // failed): the write committed on its own.
  if (batch.mode == MirrorBatch::Mode::kClientTransaction &&
      batch.status == TransactionStatus::kIdle) {
    batch.mode = MirrorBatch::Mode::kAutocommitted;
  }
  Link& mirror = link(routing::OtherBackend(auth.server));
  if (batch.mode == MirrorBatch::Mode::kCommit) {
    co_await FinishMirrorCommit(auth, mirror, batch);
  } else if (batch.outcome == MirrorBatch::Outcome::kFailed) {
    // The write itself failed: there is nothing to mirror.
    if (batch.mode == MirrorBatch::Mode::kImplicit) {
      co_await RunInternal(auth, "ROLLBACK");
      co_await ReleaseHeld(batch, TransactionStatus::kIdle);
    } else {
      co_await ReleaseHeld(batch, batch.status);
    }
  } else {
    co_await MirrorWrite(auth, mirror, batch);
  }
  mirror_.settling = false;
  ReconcileSentTransaction();
  PublishState();
  AfterTransaction();
}

awaitable<void> Session::ReleaseHeld(MirrorBatch& batch, TransactionStatus status) {
  std::string& held = batch.held;
  if (held.size() >= 6 && held[held.size() - 6] == backend::kReadyForQuery) {
    held.back() = static_cast<char>(status);
  }
  transaction_.reported = status;
  co_await SendToClient(held);
}

awaitable<void> Session::FailClient(const ErrorFields& error, TransactionStatus status) {
  std::string out;
  protocol::ErrorResponse(error).Encode(out);
  protocol::ReadyForQuery{status}.Encode(out);
  transaction_.reported = status;
  co_await SendToClient(out);
}

// The client's COMMIT has answered: the mirror follows it.
awaitable<void> Session::FinishMirrorCommit(Link& auth, Link& mirror, MirrorBatch& batch) {
  const bool committed = batch.outcome != MirrorBatch::Outcome::kFailed;
  std::string sql = batch.prepared_id.empty()
                        ? std::string(committed ? "COMMIT" : "ROLLBACK")
                        : StrCat(committed ? "COMMIT PREPARED " : "ROLLBACK PREPARED ",
                                 QuoteLiteral(batch.prepared_id));
  std::optional<ErrorFields> failed = co_await RunInternal(mirror, sql);
  if (failed && committed) {
    LogEvent(LogLevel::kError, "mirror_commit_failed",
             {{"session", StrCat(id_)},
              {"backend", mirror.name},
              {"transaction", batch.prepared_id},
              {"keys", StrCat(mirror_.keys.size())},
              {"reason", failed->message()}});
    co_await LogDivergence(auth, mirror_.keys, failed->message());
  }
  mirror.mirrored = false;
  mirror_.keys.clear();
}

Session::MirroredRows Session::MirroredRows::Of(const MirrorBatch& batch) {
  MirroredRows rows;
  for (const MirrorBatch::Rows& r : batch.rows) {
    if (std::find(rows.tables.begin(), rows.tables.end(), r.mirror->table) == rows.tables.end()) {
      rows.tables.push_back(r.mirror->table);
    }
    rows.fails_client =
        rows.fails_client || r.mirror->on_error == routing::MirrorErrorPolicy::kFail;
    rows.anything = rows.anything || r.count > 0 || r.mirror->truncate;
    for (const auto& k : r.keys) rows.keys.emplace_back(r.mirror->table, k);
  }
  return rows;
}

awaitable<void> Session::MirrorWrite(Link& auth, Link& mirror, MirrorBatch& batch) {
  const MirroredRows rows = MirroredRows::Of(batch);
  std::optional<ErrorFields> failed;
  std::string prepared;
  if (rows.anything) failed = co_await ApplyMirror(auth, mirror, batch, rows, prepared);
  if (failed) co_return co_await MirrorFailed(auth, mirror, batch, rows, *failed);
  if (rows.anything && batch.mode != MirrorBatch::Mode::kAutocommitted) {
    mirror.mirrored = true;
    mirror_.keys.insert(mirror_.keys.end(), rows.keys.begin(), rows.keys.end());
    mirror_.fail_on_error = mirror_.fail_on_error || rows.fails_client;
  }
  if (batch.mode != MirrorBatch::Mode::kImplicit)
    co_return co_await ReleaseHeld(batch, batch.status);
  // pgshift's own transaction: old commits first, then the mirror.
  std::optional<ErrorFields> commit = co_await RunInternal(auth, "COMMIT");
  if (rows.anything) {
    std::string sql = prepared.empty()
                          ? std::string(commit ? "ROLLBACK" : "COMMIT")
                          : StrCat(commit ? "ROLLBACK PREPARED " : "COMMIT PREPARED ",
                                   QuoteLiteral(prepared));
    std::optional<ErrorFields> mirrored = co_await RunInternal(mirror, sql);
    if (mirrored && !commit) {
      LogEvent(LogLevel::kError, "mirror_commit_failed",
               {{"session", StrCat(id_)},
                {"backend", mirror.name},
                {"transaction", prepared},
                {"keys", StrCat(rows.keys.size())},
                {"reason", mirrored->message()}});
      co_await LogDivergence(auth, rows.keys, mirrored->message());
    }
  }
  mirror.mirrored = false;
  mirror_.keys.clear();
  if (commit) {
    co_await FailClient(*commit, TransactionStatus::kIdle);
  } else {
    co_await ReleaseHeld(batch, TransactionStatus::kIdle);
  }
}

awaitable<std::optional<ErrorFields>> Session::ApplyMirror(Link& auth, Link& mirror,
                                                           MirrorBatch& batch,
                                                           const MirroredRows& rows,
                                                           std::string& prepared) {
  // In a transaction of the client's, its txid names the mirror's
  // prepared transaction at COMMIT: asked for while the mirror works.
  std::shared_ptr<InternalReply> xid;
  if (!batch.own_transaction() && mirror_.authoritative_xid.empty()) {
    std::string query = InternalBatch({"SELECT pg_catalog.txid_current()"});
    xid = co_await SendInternal(auth, std::move(query));
  }
  std::optional<ErrorFields> failed = co_await JoinMirror(mirror);
  if (!failed) {
    ApplyOptions options;
    options.begin = mirror.transaction_status == TransactionStatus::kIdle;
    options.savepoint = !rows.fails_client && !batch.own_transaction();
    if (batch.mode == MirrorBatch::Mode::kImplicit &&
        settings_->mirroring.can_prepare[static_cast<int>(mirror.server)]) {
      options.prepare_as = PreparedTransactionId(auth.server, mirror_.authoritative_xid);
    }
    options.commit = batch.mode == MirrorBatch::Mode::kAutocommitted;
    failed = co_await ApplyRows(mirror, batch, options);
    if (!failed) prepared = options.prepare_as;
  }
  if (xid) co_await AwaitInternal(xid, &mirror_.authoritative_xid);
  co_return failed;
}

awaitable<void> Session::MirrorFailed(Link& auth, Link& mirror, MirrorBatch& batch,
                                      const MirroredRows& rows, ErrorFields failed) {
  const bool implicit = batch.mode == MirrorBatch::Mode::kImplicit;
  LogEvent(LogLevel::kError, "mirror_failed",
           {{"session", StrCat(id_)},
            {"tables", Tables(rows.tables)},
            {"backend", mirror.name},
            {"keys", StrCat(rows.keys.size())},
            {"policy", rows.fails_client ? "fail" : "log"},
            {"reason", failed.message()}});
  const bool savepoint = !rows.fails_client && !batch.own_transaction();
  if (mirror.ready() && savepoint && mirror.transaction_status == TransactionStatus::kFailed) {
    std::string undo = InternalBatch({kRollbackToSavepoint, kReleaseSavepoint});
    co_await RunInternalMessages(mirror, std::move(undo), nullptr);
  } else if (mirror.ready() && batch.own_transaction() &&
             mirror.transaction_status != TransactionStatus::kIdle) {
    co_await RunInternal(mirror, "ROLLBACK");
  }
  std::optional<ErrorFields> unlogged;
  if (!rows.fails_client) {
    unlogged = co_await LogDivergence(auth, rows.keys, failed.message());
    if (unlogged) failed = *unlogged;
  }
  if ((rows.fails_client || unlogged) && batch.mode != MirrorBatch::Mode::kAutocommitted) {
    // Both sides roll back; the client's statement fails with the
    // mirror's error.
    co_await RunInternal(auth, implicit ? "ROLLBACK" : kAbortTransaction);
    ErrorFields error = ErrorFields::Make(
        "ERROR", failed.sqlstate(),
        StrCat("pgshift: ", unlogged ? "the divergence log could not be written after " : "",
               "the mirror of this write to ", Tables(rows.tables), " on server ", mirror.name,
               " failed, so the write was rolled back: ", failed.message()));
    co_return co_await FailClient(error,
                                  implicit ? TransactionStatus::kIdle : TransactionStatus::kFailed);
  }
  if (implicit) {
    if (std::optional<ErrorFields> commit = co_await RunInternal(auth, "COMMIT")) {
      co_return co_await FailClient(*commit, TransactionStatus::kIdle);
    }
  }
  co_await ReleaseHeld(batch, implicit ? TransactionStatus::kIdle : batch.status);
}

awaitable<std::optional<ErrorFields>> Session::JoinMirror(Link& mirror) {
  if (mirror.broken() && mirror.mirrored) {
    co_return MirrorError(sqlstate::kConnectionFailure,
                          StrCat("lost the connection to backend ", mirror.name,
                                 " with rows mirrored earlier in this transaction"));
  }
  if (mirror.server == BackendId::kNew && !mirror.ready()) {
    if (auto failed = co_await ConnectNew(false)) co_return failed;
  }
  if (mirror.transaction_status == TransactionStatus::kFailed) {
    co_return MirrorError(sqlstate::kConnectionFailure,
                          StrCat("the transaction on backend ", mirror.name, " has failed"));
  }
  if (SettingsBehind(mirror)) co_await SyncSettings(mirror);
  co_return std::nullopt;
}

// One round trip: the mirror's BEGIN when it joins, each write's rows, and
// the PREPARE or COMMIT that ends pgshift's own transaction; an error skips
// the rest, as in any batch.
//
// The statements are prepared once per connection (a PREPARE TRANSACTION,
// whose name changes, each time), under pgshift's names (AppendInternal).
awaitable<std::optional<ErrorFields>> Session::ApplyRows(Link& mirror, MirrorBatch& batch,
                                                         const ApplyOptions& options) {
  std::string messages;
  std::vector<std::string> parsed_here;  // forgotten if the batch fails
  auto add = [&](std::string_view sql, std::optional<std::string> param, bool reuse = true) {
    if (!reuse) return AppendInternal(messages, sql, std::move(param));
    std::string key = StrCat(sql, std::string_view("\0internal", 9));
    auto it = mirror.statements.find(key);
    if (it == mirror.statements.end()) {
      std::string name = StrCat("pgshift_statement_", ++next_statement_);
      protocol::Parse{name, std::string(sql), {}}.Encode(messages);
      it = mirror.statements.emplace(key, Link::ServerStatement{name, true, 0}).first;
      parsed_here.push_back(std::move(key));
    }
    it->second.last_used = ++mirror.statement_uses;
    AppendInternal(messages, sql, std::move(param), &it->second.name);
  };
  if (options.begin) {
    add("BEGIN", std::nullopt);
    // The setting changes the client made in its transaction so far.
    const std::vector<std::string>& changes = client_settings_.TransactionStatements();
    if (mirror.server == BackendId::kNew) {
      for (const std::string& sql : changes) add(sql, std::nullopt, false);
      mirror.transaction_settings = changes.size();
    }
  }
  if (options.savepoint) add(kSavepoint, std::nullopt);
  for (MirrorBatch::Rows& r : batch.rows) {
    if (r.mirror->truncate) {
      add(r.mirror->apply_sql, std::nullopt);
    } else if (r.count > 0) {
      r.json += ']';
      add(r.mirror->apply_sql, std::move(r.json));
    }
  }
  if (options.savepoint) add(kReleaseSavepoint, std::nullopt);
  if (!options.prepare_as.empty()) {
    add(StrCat("PREPARE TRANSACTION ", QuoteLiteral(options.prepare_as)), std::nullopt, false);
  }
  if (options.commit) add("COMMIT", std::nullopt);
  protocol::Sync{}.Encode(messages);
  std::optional<ErrorFields> failed =
      co_await RunInternalMessages(mirror, std::move(messages), nullptr);
  if (failed) {
    for (const std::string& key : parsed_here) mirror.statements.erase(key);
  }
  co_return failed;
}

awaitable<std::optional<ErrorFields>> Session::LogDivergence(
    Link& auth, const std::vector<std::pair<std::string, std::optional<std::string>>>& keys,
    std::string_view error) {
  if (keys.empty()) co_return std::nullopt;
  std::string values;
  for (const auto& [table, key] : keys) {
    values = StrCat(values, values.empty() ? "" : ", ", "(", QuoteLiteral(table), ", ",
                    key ? QuoteLiteral(*key) : "NULL", ", ", QuoteLiteral(error), ")");
  }
  std::optional<ErrorFields> failed = co_await RunInternal(
      auth, StrCat("INSERT INTO ", routing::kDivergenceTable, " (table_name, key, error) VALUES ",
                   values));
  LogEvent(failed ? LogLevel::kError : LogLevel::kWarning, "divergence_logged",
           {{"session", StrCat(id_)}, {"backend", auth.name}, {"keys", StrCat(keys.size())},
            {"result", failed ? failed->message() : "written"}});
  co_return failed;
}

}  // namespace pgshift::proxy
