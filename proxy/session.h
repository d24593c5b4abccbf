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
#include "proxy/session/client.h"
#include "proxy/session/client_transaction.h"
#include "proxy/session/expected_reply.h"
#include "proxy/session/internal_port.h"
#include "proxy/session/link.h"
#include "proxy/session/mirror_coordinator.h"
#include "proxy/session/planner.h"
#include "proxy/session/query_timer.h"
#include "proxy/session/refusals.h"
#include "proxy/session/reply_relay.h"
#include "proxy/session/settings_sync.h"
#include "proxy/session/step.h"
#include "proxy/session/wakeup.h"
#include "proxy/stream.h"
#include "routing/config.h"
#include "routing/router.h"
#include "routing/session_settings.h"

namespace pgshift::proxy {

class Deadline;

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

class Session : public std::enable_shared_from_this<Session>,
                private ReplyRelay::Listener,
                private InternalPort {
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
  asio::any_io_executor executor() { return client_.stream.socket().get_executor(); }

 private:
  awaitable<void> ForwardCancel(const protocol::CancelRequest& request);
  // Logs a login the login_timeout cut short.
  void LogLoginTimeout(const Deadline& deadline) const;

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
  // The client's own two-phase commit with a second server: PREPARE
  // TRANSACTION is refused (false: its stand-in is sent) while the other
  // server holds the mirror of its writes, which COMMIT PREPARED could not
  // finish; the other server's side of a transaction that only read there
  // is ended first. COMMIT and ROLLBACK PREPARED go where the transaction
  // was prepared.
  awaitable<bool> ClientTwoPhase(Step& step);
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
  // `fatal`: a failure ends the session (else it is only returned).
  awaitable<std::optional<protocol::ErrorFields>> ConnectNew(bool fatal = true);
  // How to log in to `server` as the client (session_login.cc). Kept in a
  // named local by the caller: GCC 12 miscompiles aggregate temporaries
  // inside a co_await expression.
  BackendLoginParams LoginParams(routing::BackendId server) const;
  // InternalPort: pgshift's own exchanges on the links (session_internal.cc).
  awaitable<std::shared_ptr<InternalReply>> SendInternal(Link& link, std::string messages) override;
  awaitable<Error> AwaitInternal(const std::shared_ptr<InternalReply>& reply,
                                 std::string* value) override;
  awaitable<void> WaitFor(std::function<bool()> ready) override { co_await WaitUntil(ready); }
  awaitable<void> Pause(std::chrono::milliseconds duration) override {
    asio::steady_timer timer(executor(), duration);
    error_code ec;
    co_await timer.async_wait(WithError(ec));
  }
  awaitable<Error> ConnectServer(Link& link) override;
  // SettingsSync::Sync (settings_sync.h).
  awaitable<void> SyncSettings(Link& link) override;
  // The transaction ended on every server: a new one starts clean, under
  // the newest settings.
  void AfterTransaction();
  // With coordination: what the client sent waits while a flip is fenced
  // on a table it may touch that its transaction has not touched yet
  // (Planner::MayTouchFenced), then is planned under the phases the flip
  // left. Returns with a planning pass open at the gate, which the caller
  // ends once the messages are planned.
  awaitable<void> HoldForFlip();
  // Once every statement the client sent is answered, its transaction is as
  // the last ReadyForQuery says.
  void ReconcileSentTransaction();
  // Waits, on the session's executor, until `ready()` or the session ends.
  template <typename Ready>
  awaitable<void> WaitUntil(Ready ready) {
    auto done = [&] { return ready() || ended(); };
    co_await life_.wake.Until(done);
  }
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
  uint32_t PendingResults() const { return client_.cycles.pending(); }
  // Makes the relay's state visible to Describe().
  void PublishState();
  Link& link(routing::BackendId server) { return links_[static_cast<int>(server)]; }

  awaitable<void> SendToClient(std::string_view bytes) override;
  // Writes to the client once `who` may (nobody else is writing, nor in the
  // middle of a message); `mid_message`: the bytes end inside one, and `who`
  // keeps the client until it is finished. False when the session ended or
  // the write failed.
  awaitable<bool> WriteToClient(ClientConnection::Writer who,
                                const std::vector<asio::const_buffer>& buffers, bool mid_message);

  Server& server_;
  const uint64_t id_;
  ShadowRunner* const shadow_;
  // The client's SETs and the like, which ran on old only.
  routing::SessionSettings client_settings_;
  // The settings this session answers by; renewed between transactions.
  SettingsPtr settings_;
  const routing::Config& config() const { return *settings_->config; }
  ClientConnection client_;
  std::array<Link, 2> links_;  // indexed by routing::BackendId
  ClientRecord record_;
  ClientTransaction transaction_;
  // Refusals in flight: the server's error for their probe is replaced.
  Refusals refusals_;
  // Plans what the client sends (the client pump's).
  Planner planner_{PlannerContext{settings_, links_, transaction_, client_settings_, refusals_,
                                  shadow_, id_, server_.coordination_gate()}};
  // Mirrors writes across servers and carries the mirror through the
  // client's transaction.
  MirrorCoordinator mirror_{MirrorContext{*this, links_, settings_, transaction_, refusals_,
                                          client_settings_, id_, server_.writes_in_flight()}};
  // Gives new the client's settings before it answers.
  SettingsSync settings_sync_{*this, client_settings_, id_};

  // Relay state. All pumps run on this session's executor, so no locking.
  // Logging in until the client is told AuthenticationOk; draining once a
  // shutdown waits for the client to be idle outside a transaction.
  enum class Lifecycle { kLoggingIn, kRelaying, kDraining, kEnded };
  struct Life {
    explicit Life(asio::any_io_executor executor) : wake(executor) {}
    Lifecycle stage = Lifecycle::kLoggingIn;
    std::optional<protocol::ErrorFields> final_error;  // why it ended, for the client
    Wakeup wake;  // what the pumps, the mirror and the end wait on
  };
  Life life_{client_.stream.socket().get_executor()};
  bool ended() const override { return life_.stage == Lifecycle::kEnded; }
};

}  // namespace pgshift::proxy
