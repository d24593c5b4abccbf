// One client connection and the server connections that answer it, for the
// connection's lifetime (session mode). A statement that may touch a
// configured table is planned by the settings' Router and sent, rewritten
// when its tables live in new, to the server that answers it; everything
// else is relayed to old untouched.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "protocol/error_fields.h"
#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/startup.h"
#include "proxy/asio.h"
#include "proxy/forward_list.h"
#include "proxy/packet_buffer.h"
#include "proxy/server.h"
#include "proxy/session/query_timer.h"
#include "proxy/stream.h"
#include "routing/config.h"
#include "routing/router.h"
#include "routing/session_settings.h"

namespace pgshift::proxy {

// One row of SHOW CLIENTS.
struct ClientRow {
  uint64_t session = 0;
  std::string client;
  std::string user;
  std::string database;
  int32_t backend_pid = 0;
  bool tls = false;
  std::string state;  // starting, idle, active, idle in transaction, ...
  uint64_t queries = 0;
  std::chrono::system_clock::time_point connected_at;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `shadow` runs this worker's shadow reads.
  Session(Server& server, tcp::socket socket, uint64_t id, ShadowRunner* shadow);
  ~Session();

  awaitable<void> Run();

  // Both run on the session's executor (the server posts them there).
  // Ends the session as soon as it is idle outside a transaction.
  void BeginShutdown();
  // Ends it now.
  void Abort();

  uint64_t id() const { return id_; }
  // Safe from any thread: reads only what the session has published.
  ClientRow Describe() const;
  asio::any_io_executor executor() { return client_.socket().get_executor(); }

 private:
  class ClientToBackend;
  class BackendToClient;

  // An exchange pgshift runs itself on a link (joining a transaction,
  // finishing one on the other server); its reply never reaches the client.
  struct InternalReply {
    bool done = false;
    std::optional<protocol::ErrorFields> error;
    std::optional<std::string> value;  // the first column of the first row, if any
  };

  // A sampled read's result, kept as the client gets it for its shadow
  // comparison, whose job is queued once the result is complete.
  struct ShadowCapture {
    static constexpr size_t kMaxRows = 10000;  // more: the comparison reads both sides
    ShadowJob job;
    std::shared_ptr<routing::ResultSet> result = std::make_shared<routing::ResultSet>();
    bool usable = true;
    bool queued = false;
  };

  // One result the client expects, in order within a reply cycle.
  struct ReplyUnit {
    bool describe = false;  // a Describe's answer, else a statement's result
    routing::ResultShape shape;
    int32_t mirror_index = -1;  // its rows' entry in the cycle's MirrorBatch
    std::shared_ptr<ShadowCapture> capture;  // a sampled read's result is kept
  };

  // A reply cycle whose outcome the session acts on before the client may
  // go on: one with writes mirrored to the other server (their rows are
  // collected and its replies held back until the mirror is settled), or a
  // client's COMMIT whose mirror is prepared on the other server.
  struct MirrorBatch {
    struct Rows {
      std::shared_ptr<const routing::RemoteMirror> mirror;
      std::string json = "[";  // the rows as a JSON array, closed when applied
      size_t count = 0;
      std::vector<std::optional<std::string>> keys;
    };
    std::vector<Rows> rows;
    bool hold = true;       // the client's replies wait in `held`
    std::string held;
    bool done = false;      // its ReadyForQuery has arrived
    bool failed = false;    // the server raised an error in it
    // That ReadyForQuery's transaction status.
    protocol::TransactionStatus status = protocol::TransactionStatus::kIdle;
    // pgshift began the transaction around it (the client was outside
    // one) and ends it once the mirror is settled.
    bool implicit = false;
    std::shared_ptr<InternalReply> begun;  // that BEGIN's reply (with the txid)
    // The client was outside a transaction but its batch had already
    // started, so the write committed on its own: the mirror follows.
    bool autocommitted = false;
    // A COMMIT: the mirror's prepared transaction ("" when the mirror
    // server cannot prepare, so it commits after).
    bool commit = false;
    std::string prepared_id;
  };

  // The replies up to one ReadyForQuery: a Query's, or an extended batch's.
  struct Cycle {
    std::shared_ptr<InternalReply> internal;  // null: the client's
    bool open = false;                  // an extended batch its Sync has not closed yet
    std::vector<ReplyUnit> units;       // empty: nothing in it to reshape
    size_t next = 0;                    // the unit the next result belongs to
    // A part of the client's Query that another part follows: its
    // ReadyForQuery goes to the client only if it failed, which ends the
    // Query (`group` then stops the parts after it).
    bool continues = false;
    bool failed = false;
    uint64_t group = 0;
    std::shared_ptr<MirrorBatch> mirror;
    // As ReplyNote's: a Query sent as pgshift's prepared statement.
    std::string statement_key;
    bool prepares = false;
    bool parse_completed = false;
  };

  // What a step's messages will be answered with, in their order.
  struct ReplyNote {
    enum Kind { kQuery, kUnit, kSync } kind = kQuery;
    std::vector<ReplyUnit> units;  // kQuery: one per statement, or none; kUnit: exactly one
    bool continues = false;        // kQuery: as Cycle::continues
    uint64_t group = 0;
    // kQuery: the client's Query was sent as an extended batch on a
    // statement pgshift prepared (Plan::parameterized), this key in
    // Link::statements; its ParseComplete, BindComplete and NoData are not
    // the client's. `prepares`: the batch's Parse creates the statement.
    std::string statement_key;
    bool prepares = false;
  };

  // One of the session's server connections.
  struct Link {
    routing::BackendId server = routing::BackendId::kOld;
    std::string_view name;  // "old" or "new", for messages
    std::unique_ptr<Stream> stream;
    PacketBuffer buffer;
    protocol::TransactionStatus transaction_status = protocol::TransactionStatus::kIdle;
    bool in_batch = false;  // extended-protocol messages sent since its last Sync
    bool written = false;   // has written in the client's current transaction
    bool mirrored = false;  // holds mirrored rows of the client's current transaction
    // New was lost while it held only pgshift's work; it is connected again
    // for the next transaction that needs it.
    bool broken = false;
    // Reply cycles still to come, in order.
    std::deque<Cycle> cycles;
    uint32_t forward_pending = 0;  // the client's closed cycles in `cycles`
    bool pump_running = false;
    // Statements pgshift prepared on this connection: for the client's
    // Queries (Plan::parameterized; keyed by text and parameter types, used
    // once their ParseComplete has come, so that a failing Parse fails only
    // its own Query), and for its own mirror writes (ApplyRows).
    struct ServerStatement {
      std::string name;
      bool parsed = false;
      uint64_t last_used = 0;  // statement_uses when last sent
    };
    absl::flat_hash_map<std::string, ServerStatement> statements;
    uint64_t statement_uses = 0;
    // New: the version of the client's settings it was given
    // (SessionSettings::version()), and how many of the current
    // transaction's setting changes it has run.
    uint64_t settings_version = 0;
    size_t transaction_settings = 0;
    char last_type = 0;
    int32_t backend_pid = 0;
  };

  // A run of client messages for one link, and what must happen first.
  struct Step {
    // Back to a new step's state, keeping the buffers of `bytes` and
    // `notes` for the next client read.
    void Clear() {
      ForwardList kept_bytes = std::move(bytes);
      std::vector<ReplyNote> kept_notes = std::move(notes);
      kept_bytes.clear();
      kept_notes.clear();
      *this = Step{};
      bytes = std::move(kept_bytes);
      notes = std::move(kept_notes);
    }

    routing::BackendId target = routing::BackendId::kOld;
    ForwardList bytes;
    std::vector<ReplyNote> notes;
    // Transaction control the other link must run too, before this step
    // (it is in the same client transaction).
    std::string on_other_link_first;
    // A later part of a Query split between servers: skipped when an
    // earlier part of the same group failed.
    uint64_t skip_if_failed = 0;
    // Its bytes begin a Query or an extended batch: pgshift may run a BEGIN
    // of its own before them.
    bool opens = false;
    bool sealed = false;    // later messages go into a new step
    bool mirrored = false;  // a statement in it is mirrored to the other server
    // Its mirrored statement is in the client's transaction, as the client's
    // statements before it leave it (a BEGIN may precede it in the batch).
    bool in_client_transaction = false;
    // Its statement, when it is transaction control alone (COMMIT prepares
    // the mirror first; SAVEPOINT joins the other server).
    routing::TransactionKind transaction = routing::TransactionKind::kNone;
    // Sent instead of `bytes` when the COMMIT must fail (the mirror could not
    // be prepared): a statement whose error, refusal `fail_probe`, is replaced.
    std::string fail_with;
    uint64_t fail_probe = 0;
    // A statement prepared before a reload, prepared again under the new
    // plan before the step (on its server; closed on the other): messages
    // ending in Sync, whose replies the client never sees.
    std::string reprepare;
    std::string close_elsewhere;
    // A COPY FROM STDIN whose mirror is settled once the client's data has
    // ended (the step with its CopyDone or CopyFail).
    bool copy_in = false;
    bool ends_copy = false;
  };

  // Where a prepared statement or portal lives and what it does.
  struct Prepared {
    routing::BackendId server = routing::BackendId::kOld;
    routing::PlanPtr plan;  // null: the fast path, nothing configured touched
    // A portal of a shadowed read in the sample: its Bind, for the
    // shadow's parameters.
    std::shared_ptr<const std::string> bind;
    // A named statement: the client's Parse, and the settings generation
    // its plan was made under, so that it is prepared again after a reload.
    std::shared_ptr<const protocol::Parse> parse;
    uint64_t generation = 0;
  };

  awaitable<void> ForwardCancel(const protocol::CancelRequest& request);

  awaitable<void> Relay();
  awaitable<void> PumpClientToBackend();
  awaitable<void> PumpBackendToClient(Link& link);
  void StartPump(Link& link);
  awaitable<bool> RunStep(Step& step);
  // `fatal`: a failure ends the session (else it is only returned).
  awaitable<std::optional<protocol::ErrorFields>> ConnectNew(bool fatal = true);
  // Messages that run `statements` (one statement each) for pgshift on
  // `link`, ending in Sync. They use a statement and a portal of pgshift's
  // own names, so the client's unnamed statement and portal on that
  // connection, which may outlive a Sync, are left alone.
  static std::string InternalBatch(std::initializer_list<std::string_view> statements);
  // Appends the messages that run `sql` (with `param`) in pgshift's portal:
  // as the statement `prepared` names, or else parsed afresh.
  static void AppendInternal(std::string& out, std::string_view sql,
                             std::optional<std::string> param = std::nullopt,
                             const std::string* prepared = nullptr);
  // Runs `sql` on `link` for pgshift itself; the error, if the server
  // raised one.
  awaitable<std::optional<protocol::ErrorFields>> RunInternal(Link& link, std::string_view sql,
                                                              std::string* value = nullptr);
  // As RunInternal, for messages ending in one Sync (or one Query).
  awaitable<std::optional<protocol::ErrorFields>> RunInternalMessages(Link& link,
                                                                      std::string messages,
                                                                      std::string* value);
  // RunInternalMessages in two halves, so that other work can overlap the
  // round trip: the reply is filled in by the link's pump.
  awaitable<std::shared_ptr<InternalReply>> SendInternal(Link& link, std::string messages);
  awaitable<std::optional<protocol::ErrorFields>> AwaitInternal(
      const std::shared_ptr<InternalReply>& reply, std::string* value);
  // Mirroring across servers (session_mirror.cc).
  // Before a step: pgshift's BEGIN around a mirrored write outside a
  // transaction, the mirror's PREPARE before a COMMIT, the other server
  // joined at a SAVEPOINT. False: write `fail_with` instead of the bytes.
  awaitable<bool> BeforeMirroredStep(Step& step, std::shared_ptr<MirrorBatch>& batch);
  // After a cycle with a MirrorBatch: applies the rows or finishes the
  // commit on the other server, then lets the client have the replies.
  awaitable<void> SettleMirror(Link& authoritative, MirrorBatch& batch);
  // Connects the mirror server if need be; an error when its side of the
  // transaction is lost or failed.
  awaitable<std::optional<protocol::ErrorFields>> JoinMirror(Link& mirror);
  struct ApplyOptions {
    bool begin = false;      // the mirror joins the transaction
    bool savepoint = false;  // undo only the mirror's part if it fails (on_mirror_error = log)
    std::string prepare_as;  // pgshift's own transaction: prepared under this name
    bool commit = false;     // or committed (the write committed on its own)
  };
  awaitable<std::optional<protocol::ErrorFields>> ApplyRows(Link& mirror, MirrorBatch& batch,
                                                            const ApplyOptions& options);
  // Writes each key to pgshift_divergence on `authoritative`, in its
  // current transaction (or on its own when it has none).
  awaitable<std::optional<protocol::ErrorFields>> LogDivergence(
      Link& authoritative, const std::vector<std::pair<std::string, std::optional<std::string>>>& keys,
      std::string_view error);
  // Brings new to the settings the client gave old (SET, RESET, DISCARD
  // ALL, BEGIN's modes) before it answers for the session: outside a
  // transaction the session's, inside one the transaction's changes it has
  // not run yet. A change new refuses is logged.
  awaitable<void> SyncSettings(Link& link);
  // Whether SyncSettings has anything to do: checked first, so that the
  // steps that have none (nearly all) start no coroutine for it.
  bool SettingsBehind(const Link& link) const;
  awaitable<void> RunSettings(Link& link, const std::vector<std::string>& statements,
                              bool in_transaction);
  // The transaction ended on every server: a new one starts clean, under
  // the newest settings.
  void AfterTransaction();
  // Once every statement the client sent is answered, its transaction is as
  // the last ReadyForQuery says.
  void ReconcileSentTransaction();
  // Waits, on the session's executor, until `ready()` or the session ends.
  template <typename Ready>
  awaitable<void> WaitUntil(Ready ready) {
    while (!ready() && !ended()) {
      wake_->expires_at(asio::steady_timer::time_point::max());
      error_code ignored;
      co_await wake_->async_wait(WithError(ignored));
    }
  }
  void Wake();
  // Records why the session ends (first reason wins) and stops both pumps.
  void End(std::optional<protocol::ErrorFields> final_error);
  bool IdleOutsideTransaction() const;
  // An exchange of pgshift's own is under way on `link`.
  static bool HasInternal(const Link& link);
  // Nothing but pgshift's own exchanges await replies on `link`.
  static bool OnlyInternal(const Link& link);
  // A reply cycle to the client was asked for, or answered. Also times the
  // query cycle.
  void NoteSent();
  void NoteAnswered();
  // Sent and not yet answered.
  uint32_t PendingResults() const { return query_timer_.pending(); }
  // Makes the relay's state visible to Describe().
  void PublishState();
  Link& link(routing::BackendId server) { return links_[static_cast<int>(server)]; }

  awaitable<void> SendToClient(std::string_view bytes);

  Server& server_;
  const uint64_t id_;
  ShadowRunner* const shadow_;
  // Migrating tables written in the client's current transaction: their
  // shadow reads are skipped (the other side cannot see those writes).
  std::vector<routing::TableCounters*> written_tables_;
  // Keys mirrored to the other server in the client's current transaction
  // (table, key), for the divergence log if its commit there fails.
  std::vector<std::pair<std::string, std::optional<std::string>>> mirrored_keys_;
  bool settling_ = false;  // a mirror is being settled: the transaction is not over
  // Mirrored COPYs waiting for the client's data to end.
  std::vector<std::shared_ptr<MirrorBatch>> awaiting_copy_;
  // A table mirrored in the current transaction fails the client when its
  // mirror fails (on_mirror_error = "fail"), so a failed mirror commit
  // fails the COMMIT.
  bool fail_on_mirror_error_ = false;
  // txid_current() of the authoritative side's transaction, once a mirror
  // joined it: names the mirror's prepared transaction.
  std::string authoritative_xid_;
  // The client's SETs and the like, which ran on old only.
  routing::SessionSettings client_settings_;
  // The client's transaction ends with a COMMIT (its setting changes stand).
  bool commit_requested_ = false;
  // The settings this session answers by; renewed between transactions.
  SettingsPtr settings_;
  const routing::Config& config() const { return *settings_->config; }
  Stream client_;
  std::array<Link, 2> links_;  // indexed by routing::BackendId
  PacketBuffer client_buffer_;
  std::string client_address_;
  protocol::StartupMessage startup_;
  const std::chrono::system_clock::time_point connected_at_ = std::chrono::system_clock::now();
  // Written once before `described_` is set, read by Describe() after.
  std::string user_;
  std::string database_;
  int32_t backend_pid_ = 0;
  bool tls_ = false;
  std::atomic<bool> described_{false};
  // What SHOW CLIENTS says the session is doing.
  enum class ClientState : uint8_t {
    kStarting,
    kActive,
    kIdle,
    kInTransaction,
    kFailedTransaction
  };
  std::atomic<ClientState> published_state_{ClientState::kStarting};
  std::atomic<uint64_t> published_queries_{0};
  uint64_t queries_ = 0;
  QueryTimer query_timer_;
  bool admitted_ = false;
  std::optional<std::pair<int32_t, int32_t>> cancel_key_;

  // Routing state, kept by the client pump.
  // SQL-level PREPAREs of statements on configured tables: where each went,
  // its plan and text, and the settings generation it was planned under, so
  // that EXECUTE and DEALLOCATE follow it and a reload prepares it again.
  struct SqlPrepared {
    routing::BackendId server = routing::BackendId::kOld;
    routing::PlanPtr plan;
    std::string sql;  // the client's PREPARE
    uint64_t generation = 0;
  };
  absl::flat_hash_map<std::string, SqlPrepared> sql_prepared_;
  absl::flat_hash_map<std::string, Prepared> statements_;
  absl::flat_hash_map<std::string, Prepared> portals_;
  std::optional<routing::BackendId> batch_link_;  // where this extended batch goes
  bool batch_refused_ = false;                 // the rest of it is skipped by the server
  routing::BackendId copy_link_ = routing::BackendId::kOld;
  // Refusals in flight: the server's error for probe n is replaced by them.
  std::map<uint64_t, protocol::ErrorFields> refusals_;
  uint64_t next_probe_ = 0;
  // Queries split between servers: the last one whose part failed.
  uint64_t next_group_ = 0;
  uint64_t failed_group_ = 0;
  uint64_t next_statement_ = 0;  // names pgshift's prepared statements

  // Relay state. All pumps run on this session's executor, so no locking.
  // Logging in until the client is told AuthenticationOk; draining once a
  // shutdown waits for the client to be idle outside a transaction.
  enum class Lifecycle { kLoggingIn, kRelaying, kDraining, kEnded };
  Lifecycle lifecycle_ = Lifecycle::kLoggingIn;
  bool ended() const { return lifecycle_ == Lifecycle::kEnded; }
  bool client_writable_ = true;        // false once a write to the client failed
  bool client_mid_message_ = false;    // the client has been sent part of a message
  bool client_sent_partial_ = false;   // a backend has been sent part of a message
  // As the client was last told.
  protocol::TransactionStatus transaction_status_ = protocol::TransactionStatus::kIdle;
  // The client's transaction as its statements sent since leave it, until
  // every reply to them has come (ReconcileSentTransaction).
  enum class SentTransaction { kAsReported, kBegun, kEnded };
  SentTransaction sent_transaction_ = SentTransaction::kAsReported;
  std::optional<protocol::ErrorFields> final_error_;
  std::unique_ptr<asio::steady_timer> wake_;  // the client pump waits on it
};

}  // namespace pgshift::proxy
