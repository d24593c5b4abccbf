// Mirroring across servers, the session's half (the statement's half is
// routing/mirror.cc). A mirrored write runs on the authoritative server and
// returns its rows with the reply; once the reply cycle is complete the
// rows are applied on the other server, in a transaction that follows the
// client's, and only then does the client see the reply. The authoritative
// side commits first: the mirror is prepared before and committed after
// (PREPARE TRANSACTION), so a crash in between is resolved at start.
//
// Inside the client's transaction, a table's mirror_apply = "pipelined"
// lets the client have the reply as soon as the authoritative side gave it:
// the apply is sent, and its outcome collected (mirror_apply.cc) before
// the next step that depends on it: the next mirrored write, any
// transaction control, a step to the mirror's server, at the latest the
// COMMIT (whose PREPARE TRANSACTION follows it).
//
// A failure of the mirror follows the table's on_mirror_error: "fail" fails
// the client's statement (pipelined: the next statement that collects it,
// like a deferred constraint) and leaves both sides rolled back; "log" lets
// the write stand and writes each of its keys to pgshift_divergence on the
// authoritative side, in the client's own transaction. A write that
// committed on its own before its mirror failed has its keys logged under
// either policy, and under "fail" the client is told so.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/error_fields.h"
#include "proxy/asio.h"
#include "proxy/server.h"
#include "proxy/session/client_transaction.h"
#include "proxy/session/expected_reply.h"
#include "proxy/session/internal_port.h"
#include "proxy/session/link.h"
#include "proxy/session/refusals.h"
#include "proxy/session/step.h"
#include "routing/session_settings.h"
#include "routing/writes_in_flight.h"

namespace pgshift::proxy {

// What the coordinator works with, all owned by the session.
struct MirrorContext {
  InternalPort& port;
  std::array<Link, 2>& links;   // indexed by routing::BackendId
  const SettingsPtr& settings;  // renewed between transactions
  ClientTransaction& transaction;
  Refusals& refusals;
  const routing::SessionSettings& client_settings;
  uint64_t session;          // for the log
  routing::WritesInFlight& writes_in_flight;  // the process's, for shadow reads
};

class MirrorCoordinator {
 public:
  using Keys = std::vector<std::pair<std::string, std::optional<std::string>>>;

  explicit MirrorCoordinator(MirrorContext context)
      : c_(context), in_flight_(context.writes_in_flight.NewHold()) {}

  // Before a step that mirrors a write or commits mirrored rows: pgshift's
  // BEGIN around a mirrored write outside a transaction, the mirror's
  // PREPARE before a COMMIT. `batch` is what follows the step's cycles (or
  // null). False: write the step's `fail_with` instead of its bytes.
  awaitable<bool> BeforeStep(Step& step, std::shared_ptr<MirrorBatch>& batch);
  // After a cycle with a MirrorBatch: applies the rows or finishes the
  // commit on the other server, then lets the client have the replies.
  awaitable<void> Settle(Link& authoritative, MirrorBatch& batch);

  // Before any step: a pipelined apply's outcome, when the step depends on
  // it. False: write the step's `fail_with` instead (the apply failed under
  // "fail", and the step fails with its error).
  awaitable<bool> Collect(Step& step);

  // A pipelined apply failed: the transaction's COMMIT must fail.
  bool apply_failed() const { return failed_.has_value(); }

  // A mirror is being settled: the client's transaction is not over.
  bool settling() const { return settling_; }
  // Cycles of a COPY FROM STDIN complete only after the client's data.
  void AwaitCopy(const std::vector<std::shared_ptr<MirrorBatch>>& batches);
  std::vector<std::shared_ptr<MirrorBatch>> TakeAwaitingCopy();
  // The client's transaction ended on every server.
  void EndTransaction();

  // Keys mirrored in the client's current transaction.
  const Keys& keys() const { return keys_; }

 private:
  // What a batch mirrors: its tables, its keys, whether a table's
  // on_mirror_error is "fail", and whether there is anything.
  struct MirroredRows {
    static MirroredRows Of(const MirrorBatch& batch);
    std::vector<std::string> tables;
    Keys keys;
    bool fails_client = false;
    bool anything = false;
    bool pipelined = true;  // every table's mirror_apply is "pipelined"
  };
  // A pipelined apply sent and not yet collected.
  struct PendingApply {
    std::shared_ptr<InternalReply> reply;
    std::shared_ptr<InternalReply> xid;    // the authoritative txid, asked with it
    std::vector<std::string> parsed_here;  // forgotten if it failed
    MirroredRows rows;
    routing::BackendId mirror = routing::BackendId::kNew;
  };
  // A pipelined apply that failed under "fail": each later step that
  // collects fails, until the transaction ends.
  struct FailedApply {
    routing::BackendId mirror = routing::BackendId::kNew;
    std::string what;  // "to public.channels on server new"
    protocol::ErrorFields cause;
  };
  struct ApplyOptions {
    bool begin = false;      // the mirror joins the transaction
    bool savepoint = false;  // undo only the mirror's part if it fails (on_mirror_error = log)
    std::string prepare_as;  // pgshift's own transaction: prepared under this name
    double lock_timeout_s = 0;  // for pgshift's statements (0: the session's own)
    bool commit = false;     // or committed (the write committed on its own)
  };

  // The keys of `batch` go on record as in flight, held by `hold` until
  // both sides have committed them.
  static void HoldKeys(const MirrorBatch& batch, routing::WritesInFlight::Hold& hold);
  // A mirrored DELETE waits until no write of its keys is committing (shown
  // on the authoritative side, not yet on `mirror`): an error past
  // mirror_lock_timeout.
  awaitable<InternalPort::Error> AfterCommittingWrites(const Link& mirror,
                                                       const MirrorBatch& batch);
  static size_t KeyBytes(const std::string& table, const std::optional<std::string>& key) {
    return table.size() + (key ? key->size() : 0) + sizeof(Keys::value_type);
  }
  void ClearKeys();
  Link& link(routing::BackendId server) { return c_.links[static_cast<int>(server)]; }
  bool can_prepare(const Link& l) const {
    return c_.settings->mirroring.can_prepare[static_cast<int>(l.server)];
  }
  // The name of the mirror's prepared transaction in this transaction.
  std::string PreparedId(const Link& authoritative) const {
    return PreparedTransactionId(c_.settings->config->proxy.deployment, authoritative.server,
                                 authoritative_xid_);
  }

  awaitable<bool> BeforeCommit(const Step& step, Link& authoritative, Link& mirror,
                               std::shared_ptr<MirrorBatch>& batch);
  awaitable<void> BeforeWrite(const Step& step, Link& authoritative, MirrorBatch& batch);
  // The client's replies held with `batch`, with `status` in their
  // ReadyForQuery; or, in their place, `error`.
  awaitable<void> ReleaseHeld(MirrorBatch& batch, protocol::TransactionStatus status);
  awaitable<void> FailClient(const MirrorBatch& batch, const protocol::ErrorFields& error,
                             protocol::TransactionStatus status);
  awaitable<void> MirrorTooLarge(Link& authoritative, Link& mirror, MirrorBatch& batch);
  awaitable<void> FinishCommit(Link& authoritative, Link& mirror, MirrorBatch& batch);
  // A successful write: its rows applied on the mirror, and pgshift's own
  // transaction, if any, committed on both.
  awaitable<void> MirrorWrite(Link& authoritative, Link& mirror, MirrorBatch& batch);
  // `prepared`: the mirror's prepared transaction, when it was prepared.
  // `pipelined`: sent, its outcome left to CollectApply.
  awaitable<InternalPort::Error> ApplyMirror(Link& authoritative, Link& mirror, MirrorBatch& batch,
                                             const MirroredRows& rows, SettlingMirror& prepared,
                                             bool pipelined);
  // The pending apply's outcome (mirror_apply.cc): a failure under "log"
  // is undone on the mirror and its keys logged; under "fail" kept in
  // failed_ until the transaction ends. `undone`: the client's ROLLBACK
  // follows, which undoes it whatever it was.
  awaitable<void> CollectApply(bool undone);
  // The error a statement gets in a transaction whose pipelined apply
  // failed, saying what follows from it.
  protocol::ErrorFields EarlierApplyFailed(std::string_view consequence) const;
  // A mirrored write after a failed pipelined apply: it fails with that
  // error, and old's transaction is aborted.
  awaitable<void> FailAfterEarlierApply(Link& authoritative, MirrorBatch& batch);
  // Under "log", in the client's transaction: a failed apply undone on the
  // mirror alone (ROLLBACK TO its savepoint), if the mirror is there.
  awaitable<void> UndoToSavepoint(Link& mirror);
  // Counted and logged: the mirror of `rows` failed.
  void NoteFailure(const MirroredRows& rows, const Link& mirror,
                   const protocol::ErrorFields& failed);
  // The mirror failed: its policy decides (log the keys, or fail the write).
  awaitable<void> MirrorFailed(Link& authoritative, Link& mirror, MirrorBatch& batch,
                               const MirroredRows& rows, protocol::ErrorFields failed);
  // Connects the mirror server if need be; an error when its side of the
  // transaction is lost or failed.
  awaitable<InternalPort::Error> JoinMirror(Link& mirror);
  awaitable<InternalPort::Error> ApplyRows(Link& mirror, MirrorBatch& batch,
                                           const ApplyOptions& options);
  // ApplyRows's batch, sent and not awaited; `parsed_here`: the statements
  // it prepares, to forget if it fails.
  awaitable<std::shared_ptr<InternalReply>> SendApply(Link& mirror, MirrorBatch& batch,
                                                      const ApplyOptions& options,
                                                      std::vector<std::string>& parsed_here);
  // Writes each key to pgshift_divergence on `authoritative`, in its
  // current transaction (or on its own when it has none).
  awaitable<InternalPort::Error> LogDivergence(Link& authoritative, const Keys& keys,
                                               std::string_view error);

  MirrorContext c_;
  // The mirror's side of the client's current transaction.
  // Keys mirrored to the other server (table, key), for the divergence
  // log if its commit there fails.
  Keys keys_;
  size_t keys_bytes_ = 0;  // counted against mirror_max_bytes
  // The same keys, on record as in flight while the transaction lasts.
  routing::WritesInFlight::Hold in_flight_;
  bool settling_ = false;
  // Mirrored COPYs waiting for the client's data to end.
  std::vector<std::shared_ptr<MirrorBatch>> awaiting_copy_;
  // A table mirrored in it fails the client when its mirror fails
  // (on_mirror_error = "fail"), so a failed mirror commit fails the COMMIT.
  bool fail_on_error_ = false;
  // txid_current() of the authoritative side's transaction, once a mirror
  // joined it: names the mirror's prepared transaction.
  std::string authoritative_xid_;
  std::optional<PendingApply> pending_;
  std::optional<FailedApply> failed_;
};

}  // namespace pgshift::proxy
