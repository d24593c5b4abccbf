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
#include "proxy/backend_login.h"
#include "proxy/forward_list.h"
#include "proxy/packet_buffer.h"
#include "proxy/server.h"
#include "proxy/session/client_transaction.h"
#include "proxy/session/expected_reply.h"
#include "proxy/session/link.h"
#include "proxy/session/planner.h"
#include "proxy/session/query_timer.h"
#include "proxy/session/refusals.h"
#include "proxy/session/reply_relay.h"
#include "proxy/session/step.h"
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

class Session : public std::enable_shared_from_this<Session>, private ReplyRelay::Listener {
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
  awaitable<void> ForwardCancel(const protocol::CancelRequest& request);

  awaitable<void> Relay();
  awaitable<void> PumpClientToBackend();
  awaitable<void> PumpBackendToClient(Link& link);
  void StartPump(Link& link);
  // Runs one step on its link: false when the session ends.
  awaitable<bool> RunStep(Step& step);
  // Whether the step goes ahead: skipped after a failed earlier part of its
  // Query, stopped when its link cannot be had.
  enum class StepGate { kGo, kSkip, kStop };
  awaitable<StepGate> GateStep(const Step& step);
  // A statement prepared before a reload, prepared again (and closed on
  // the other link) before the step.
  awaitable<void> PrepareAgain(Step& step, Link& target, Link& other);
  // A SAVEPOINT in a transaction the other server has not joined: it
  // joins, so that a mirror can roll back to it later.
  awaitable<void> JoinAtSavepoint(Link& other);
  // Waits for the other link to be quiet, and brings `target` into the
  // client's transaction and settings; the other link runs the step's
  // transaction control first. False when the session ended.
  awaitable<bool> JoinTransaction(const Step& step, Link& target, Link& other,
                                  bool mirrored_commit);
  awaitable<bool> WriteStep(Step& step, Link& target);
  // Queues `reply` on `target` (merged into its open batch when it joins
  // one), with `batch` attached when it has mirrored results; the batch to
  // settle when the reply closes a cycle that has one.
  std::shared_ptr<MirrorBatch> Expect(Link& target, ExpectedReply reply,
                                      const std::shared_ptr<MirrorBatch>& batch);
  // `fatal`: a failure ends the session (else it is only returned).
  awaitable<std::optional<protocol::ErrorFields>> ConnectNew(bool fatal = true);
  // How to log in to `server` as the client (session_login.cc). Kept in a
  // named local by the caller: GCC 12 miscompiles aggregate temporaries
  // inside a co_await expression.
  BackendLoginParams LoginParams(routing::BackendId server) const;
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
  // The client's replies held with `batch`, with `status` in their
  // ReadyForQuery; or, in their place, `error`.
  awaitable<void> ReleaseHeld(MirrorBatch& batch, protocol::TransactionStatus status);
  awaitable<void> FailClient(const protocol::ErrorFields& error,
                             protocol::TransactionStatus status);
  awaitable<void> FinishMirrorCommit(Link& authoritative, Link& mirror, MirrorBatch& batch);
  // What a batch mirrors: its tables, its keys (table, key), whether a
  // table's on_mirror_error is "fail", and whether there is anything.
  struct MirroredRows {
    static MirroredRows Of(const MirrorBatch& batch);
    std::vector<std::string> tables;
    std::vector<std::pair<std::string, std::optional<std::string>>> keys;
    bool fails_client = false;
    bool anything = false;
  };
  // A successful write: its rows applied on the mirror, and pgshift's own
  // transaction, if any, committed on both.
  awaitable<void> MirrorWrite(Link& authoritative, Link& mirror, MirrorBatch& batch);
  // `prepared`: the mirror's prepared transaction, when it was prepared.
  awaitable<std::optional<protocol::ErrorFields>> ApplyMirror(Link& authoritative, Link& mirror,
                                                              MirrorBatch& batch,
                                                              const MirroredRows& rows,
                                                              std::string& prepared);
  // The mirror failed: its policy decides (log the keys, or fail the write).
  awaitable<void> MirrorFailed(Link& authoritative, Link& mirror, MirrorBatch& batch,
                               const MirroredRows& rows, protocol::ErrorFields failed);
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
  // ReplyRelay::Listener.
  void OnInternalAnswered() override;
  void OnClientAnswered(const ExpectedReply& reply, protocol::TransactionStatus status,
                        bool forwarded) override;
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
  // The mirror's side of the client's current transaction.
  struct MirrorTransaction {
    // Keys mirrored to the other server (table, key), for the divergence
    // log if its commit there fails.
    std::vector<std::pair<std::string, std::optional<std::string>>> keys;
    bool settling = false;  // a mirror is being settled: the transaction is not over
    // Mirrored COPYs waiting for the client's data to end.
    std::vector<std::shared_ptr<MirrorBatch>> awaiting_copy;
    // A table mirrored in it fails the client when its mirror fails
    // (on_mirror_error = "fail"), so a failed mirror commit fails the COMMIT.
    bool fail_on_error = false;
    // txid_current() of the authoritative side's transaction, once a
    // mirror joined it: names the mirror's prepared transaction.
    std::string authoritative_xid;
  };
  MirrorTransaction mirror_;
  // The client's SETs and the like, which ran on old only.
  routing::SessionSettings client_settings_;
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
  QueryTimer query_timer_;
  bool admitted_ = false;
  std::optional<std::pair<int32_t, int32_t>> cancel_key_;

  // Queries split between servers: the last one whose part failed.
  uint64_t failed_group_ = 0;
  uint64_t next_statement_ = 0;  // names pgshift's prepared statements
  ClientTransaction transaction_;
  // Refusals in flight: the server's error for their probe is replaced.
  Refusals refusals_;
  // Plans what the client sends (the client pump's).
  Planner planner_{PlannerContext{settings_, links_, transaction_, client_settings_, refusals_,
                                  shadow_, id_, next_statement_}};

  // Relay state. All pumps run on this session's executor, so no locking.
  // Logging in until the client is told AuthenticationOk; draining once a
  // shutdown waits for the client to be idle outside a transaction.
  enum class Lifecycle { kLoggingIn, kRelaying, kDraining, kEnded };
  Lifecycle lifecycle_ = Lifecycle::kLoggingIn;
  bool ended() const { return lifecycle_ == Lifecycle::kEnded; }
  bool client_writable_ = true;        // false once a write to the client failed
  bool client_mid_message_ = false;    // the client has been sent part of a message
  bool client_sent_partial_ = false;   // a backend has been sent part of a message
  std::optional<protocol::ErrorFields> final_error_;
  std::unique_ptr<asio::steady_timer> wake_;  // the client pump waits on it
};

}  // namespace pgshift::proxy
