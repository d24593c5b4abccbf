#include "proxy/session.h"

#include <algorithm>

#include "absl/strings/str_join.h"
#include "common/strings.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/close.h"
#include "protocol/messages/command_complete.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/describe.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/execute.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/query.h"
#include "protocol/messages/ready_for_query.h"
#include "protocol/messages/row_description.h"
#include "protocol/wire.h"
#include "proxy/client_login.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "routing/mirror.h"
#include "routing/sql_analysis.h"

namespace pgshift::proxy {

namespace {

using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
namespace backend = protocol::backend;
namespace frontend = protocol::frontend;
namespace sqlstate = protocol::sqlstate;

ErrorFields AdminShutdown() {
  return Fatal(sqlstate::kAdminShutdown, "terminating connection due to administrator command");
}

}  // namespace

Session::Session(Server& server, tcp::socket socket, uint64_t id, ShadowRunner* shadow)
    : server_(server),
      id_(id),
      shadow_(shadow),
      settings_(server.settings()),
      client_(std::move(socket)) {
  links_[0].server = BackendId::kOld;
  links_[0].name = "old";
  links_[1].server = BackendId::kNew;
  links_[1].name = "new";
  error_code ec;
  auto remote = client_.stream.socket().remote_endpoint(ec);
  record_.address = ec ? "unknown" : StrCat(remote.address().to_string(), ":", remote.port());
}

Session::~Session() {
  if (record_.cancel_key)
    server_.cancels().Remove({record_.cancel_key->first, record_.cancel_key->second});
  if (record_.admitted) server_.ReleaseClient();
}

awaitable<void> Session::Relay() {
  auto self = shared_from_this();
  StartPump(link(BackendId::kOld));
  co_await PumpClientToBackend();
  // The pumps end once End() has closed the links.
  auto pumps_ended = [this] { return !links_[0].pump_running && !links_[1].pump_running; };
  co_await life_.wake.Until(pumps_ended);
  if (life_.final_error && client_.at_boundary() && client_.stream.is_open()) {
    // The pumps have ended: nobody else writes.
    std::string out;
    protocol::ErrorResponse(*life_.final_error).Encode(out);
    error_code ignored;
    co_await client_.stream.Write(asio::buffer(out), ignored);
  }
  client_.stream.Close();
}

void Session::StartPump(Link& l) {
  l.pump_running = true;
  auto self = shared_from_this();
  asio::co_spawn(
      client_.stream.socket().get_executor(),
      [self, &l]() -> awaitable<void> {
        co_await self->PumpBackendToClient(l);
        l.pump_running = false;
        // Nothing more will answer these.
        for (ExpectedReply& c : l.replies) {
          if (c.internal == nullptr) continue;
          c.internal->done = true;
          if (!c.internal->error) {
            c.internal->error = Fatal(sqlstate::kConnectionFailure,
                                      StrCat("pgshift: lost the connection to backend ", l.name));
          }
        }
        l.replies.clear();
        l.forward_pending = 0;
        self->life_.wake.Notify();
      },
      asio::detached);
}

awaitable<void> Session::PumpClientToBackend() {
  protocol::FrameDecoder decoder(protocol::kFrontendTypes, config().proxy.max_message_size);
  // What the client sent with its startup packet (a Query in the same
  // write) is already here: decoded before anything more is awaited.
  bool unread = !client_.buffer.empty();
  while (!ended()) {
    error_code ec;
    size_t n = 0;
    if (!std::exchange(unread, false))
      n = co_await client_.stream.ReadSome(client_.buffer.PrepareRead(), ec);
    if (ec) {
      if (!ended() && client_.forwarding_partial) {
        LogEvent(LogLevel::kInfo, "client_lost_mid_message",
                 {{"session", StrCat(id_)}, {"client", record_.address}});
      }
      if (ec != asio::error::operation_aborted) client_.Failed();
      End(std::nullopt);
      break;
    }
    client_.buffer.Commit(n);
    // Between transactions, what the client sends next is planned under
    // the newest settings.
    AfterTransaction();
    co_await HoldForFlip();
    planner_.Reset();
    auto used = decoder.Decode(client_.buffer.data(), planner_);
    if (routing::CoordinationGate* gate = server_.coordination_gate()) gate->EndPass();
    if (!used.ok() || !planner_.error().empty()) {
      std::string why = used.ok() ? planner_.error() : std::string(MessageOf(used.status()));
      server_.stats().protocol_violations.fetch_add(1, std::memory_order_relaxed);
      LogEvent(LogLevel::kWarning, "protocol_violation",
               {{"session", StrCat(id_)},
                {"client", record_.address},
                {"side", "client"},
                {"reason", why}});
      End(Fatal(sqlstate::kProtocolViolation, StrCat("pgshift: ", why)));
      break;
    }
    client_.forwarding_partial = decoder.streaming();
    for (Step& step : planner_) {
      if (ended() || !co_await RunStep(step)) break;
    }
    planner_.StepsRun();
    // A transaction that ended while the steps ran leaves the gate now.
    AfterTransaction();
    if (ended()) break;
    client_.buffer.Consume(*used);
    PublishState();
    if (planner_.terminated()) {
      End(std::nullopt);
      break;
    }
  }
}

awaitable<bool> Session::RunStep(Step& step) {
  switch (co_await GateStep(step)) {
    case StepGate::kGo: break;
    case StepGate::kSkip: co_return true;
    case StepGate::kStop: co_return false;
  }
  // A pipelined mirror's outcome, where the step depends on it.
  bool send = co_await mirror_.Collect(step);
  if (ended()) co_return false;
  if (send && !step.gid.empty() && settings_->router->has_new_server()) {
    send = co_await ClientTwoPhase(step);
    if (ended()) co_return false;
  }
  Link& target = link(step.target);
  Link& other = link(routing::OtherBackend(step.target));
  co_await PrepareAgain(step, target, other);
  const bool mirrored_commit = send && step.transaction == routing::TransactionKind::kCommit &&
                               transaction_.mirrors(other.server) &&
                               (other.transaction_status != TransactionStatus::kIdle ||
                                other.broken() || mirror_.apply_failed());
  if (!send) {
    step.on_other_link_first.clear();  // it fails on its own server
  } else if (step.transaction == routing::TransactionKind::kSavepoint) {
    co_await JoinAtSavepoint(other);
  }
  if (other.ready() && !co_await JoinTransaction(step, target, other, mirrored_commit)) {
    co_return false;
  }
  // Mirroring across servers: what must happen before the step, and the
  // batch that follows its cycles.
  std::shared_ptr<MirrorBatch> batch;
  if (send && (step.mirrored || mirrored_commit)) {
    send = co_await mirror_.BeforeStep(step, batch);
    if (ended()) co_return false;
  }
  std::vector<std::shared_ptr<MirrorBatch>> closed;  // cycles this step closes that have one
  for (ExpectedReply& reply : step.replies) {
    Link::Queued queued = target.Expect(std::move(reply), batch);
    if (!queued.closes) continue;
    NoteSent();
    if (queued.mirror) closed.push_back(std::move(queued.mirror));
  }
  if (!send) {
    // The COMMIT (or PREPARE TRANSACTION) fails in its stand-in's words;
    // the rest of its batch, if any, is skipped by the server.
    step.bytes.clear();
    step.bytes.AddOwned(std::move(step.fail_with));
  }
  if (!co_await WriteStep(step, target)) co_return false;
  if (step.copy_in) {
    // Its reply completes only after the client's data, read later.
    mirror_.AwaitCopy(closed);
    co_return true;
  }
  if (step.ends_copy) {
    std::vector<std::shared_ptr<MirrorBatch>> copies = mirror_.TakeAwaitingCopy();
    closed.insert(closed.begin(), copies.begin(), copies.end());
  }
  for (const std::shared_ptr<MirrorBatch>& b : closed) {
    co_await mirror_.Settle(target, *b);
    if (ended()) co_return false;
    ReconcileSentTransaction();
    PublishState();
    AfterTransaction();
  }
  co_return true;
}

awaitable<Session::StepGate> Session::GateStep(const Step& step) {
  if (step.skip_if_failed != 0) {
    // Once the parts before have answered, so that their outcome is known.
    co_await WaitUntil(
        [this] { return links_[0].forward_pending == 0 && links_[1].forward_pending == 0; });
    if (ended()) co_return StepGate::kStop;
    if (transaction_.failed_group == step.skip_if_failed) co_return StepGate::kSkip;
  }
  // New is connected when first needed, and again after it was lost, once
  // the client is outside the transaction that lost it.
  const Link& fresh = link(BackendId::kNew);
  if (step.target == BackendId::kNew &&
      (fresh.absent() || (fresh.broken() && transaction_.reported == TransactionStatus::kIdle))) {
    if (co_await ConnectNew()) co_return StepGate::kStop;
  }
  if (link(step.target).broken()) {
    End(Fatal(sqlstate::kConnectionFailure,
              StrCat("pgshift: lost the connection to backend ", link(step.target).name)));
    co_return StepGate::kStop;
  }
  co_return StepGate::kGo;
}

awaitable<void> Session::PrepareAgain(Step& step, Link& target, Link& other) {
  if (!step.close_elsewhere.empty() && other.ready()) {
    co_await RunInternalMessages(other, std::move(step.close_elsewhere), nullptr);
  }
  if (step.reprepare.empty()) co_return;
  std::optional<ErrorFields> failed =
      co_await RunInternalMessages(target, std::move(step.reprepare), nullptr);
  if (failed) {
    LogEvent(LogLevel::kWarning, "statement_prepare_failed",
             {{"session", StrCat(id_)}, {"backend", target.name}, {"reason", failed->message()}});
  }
}

awaitable<bool> Session::WriteStep(Step& step, Link& target) {
  if (step.bytes.empty()) co_return true;
  error_code ec;
  co_await target.stream->Write(step.bytes.buffers(), ec);
  if (!ec) {
    target.Sent(step.batch);
    co_return true;
  }
  if (!ended()) {
    End(Fatal(sqlstate::kConnectionFailure,
              StrCat("pgshift: lost the connection to backend ", target.name, ": ", ec.message())));
  }
  co_return false;
}

awaitable<void> Session::PumpBackendToClient(Link& l) {
  ReplyRelay handler(l, refusals_, shadow_, *this);
  protocol::FrameDecoder decoder(protocol::kBackendTypes, config().proxy.max_message_size);
  while (!ended()) {
    error_code ec;
    size_t n = co_await l.stream->ReadSome(l.buffer.PrepareRead(), ec);
    if (ec) {
      // A backend that ends with a FATAL error has told the client why.
      bool explained = l.last_type == backend::kErrorResponse && !decoder.streaming();
      if (!ended()) {
        server_.stats().backend_failures.fetch_add(1, std::memory_order_relaxed);
        LogEvent(LogLevel::kWarning, "backend_lost",
                 {{"session", StrCat(id_)}, {"backend", l.name}, {"reason", ec.message()}});
      }
      if (!ended() && l.server == BackendId::kNew && l.OnlyInternal()) {
        // New held only pgshift's own work (a mirror): the session goes on,
        // and the mirror's policy decides what its loss means.
        l.Break();
        break;
      }
      End(explained ? std::nullopt
                    : std::optional(Fatal(sqlstate::kConnectionFailure,
                                          StrCat("pgshift: lost the connection to backend ",
                                                 l.name, ": ", ec.message()))));
      break;
    }
    l.buffer.Commit(n);
    handler.Reset();
    auto used = decoder.Decode(l.buffer.data(), handler);
    if (!used.ok() || !handler.error.empty()) {
      std::string why = used.ok() ? handler.error : std::string(MessageOf(used.status()));
      server_.stats().protocol_violations.fetch_add(1, std::memory_order_relaxed);
      LogEvent(LogLevel::kError, "protocol_violation",
               {{"session", StrCat(id_)}, {"side", StrCat("backend ", l.name)}, {"reason", why}});
      End(Fatal(sqlstate::kProtocolViolation,
                StrCat("pgshift: backend ", l.name, " sent an invalid message: ", why)));
      break;
    }
    if (!handler.out.empty() &&
        !co_await WriteToClient(l.server == BackendId::kOld ? ClientConnection::Writer::kOld
                                                            : ClientConnection::Writer::kNew,
                                handler.out.buffers(), decoder.streaming())) {
      End(std::nullopt);
      break;
    }
    l.buffer.Consume(*used);
    if (handler.answered > 0) {
      // Counted only once written: the other server may answer next.
      l.forward_pending -= std::min(l.forward_pending, handler.answered);
      ReconcileSentTransaction();
      AfterTransaction();
      life_.wake.Notify();
    }
    PublishState();
    if (life_.stage == Lifecycle::kDraining && IdleOutsideTransaction()) End(AdminShutdown());
  }
}

void Session::AfterTransaction() {
  Link& old = link(BackendId::kOld);
  Link& fresh = link(BackendId::kNew);
  for (const Link* l : {&old, &fresh}) {
    if (l->broken()) continue;  // its transaction is gone with it
    if (l->transaction_status != TransactionStatus::kIdle || l->forward_pending != 0 ||
        l->HasInternal())
      return;
  }
  // An extended batch under way (its Sync not yet sent) is in a transaction
  // too: an implicit one, whose portals it may still execute.
  if (transaction_.reported != TransactionStatus::kIdle || mirror_.settling() ||
      PendingResults() > 0 || planner_.in_batch())
    return;
  client_settings_.EndTransaction(transaction_.commit_requested);
  transaction_.End();
  fresh.transaction_settings = 0;
  mirror_.EndTransaction();
  planner_.EndTransaction();
  // Between transactions: the next one runs under the newest settings.
  if (server_.settings_generation() != settings_->generation) {
    settings_ = server_.settings();
  }
}

awaitable<void> Session::HoldForFlip() {
  routing::CoordinationGate* gate = server_.coordination_gate();
  if (gate == nullptr) co_return;
  while (true) {
    // Open before the fences are looked at: a flip fenced after this
    // waits for the pass (CoordinationGate), so none can commit until the
    // messages are planned.
    gate->BeginPass();
    if (ended() || !gate->LeaseValid() || !planner_.MayTouchFenced(client_.buffer.data())) {
      // A transaction that has touched no configured table yet (BEGIN
      // alone, or none) takes the phases of a flip that ended meanwhile,
      // read now that no fence holds it: under the old ones its statement
      // would be refused as stale (40001).
      // So does one that touched only tables the flip left alone: it goes
      // on under the new phases, as it would had it begun now. (Other
      // changes of the settings still wait for the transaction's end.)
      const uint64_t generation = settings_->generation;
      if (server_.settings_generation() != generation &&
          (!planner_.entered_tables() ||
           (gate->PhasesChangedSince(generation) && !planner_.EnteredChangedSince(generation)))) {
        settings_ = server_.settings();
      }
      co_return;
    }
    gate->EndPass();
    co_await Pause(std::chrono::milliseconds(2));
  }
}

bool Session::IdleOutsideTransaction() const {
  return PendingResults() == 0 && transaction_.reported == TransactionStatus::kIdle &&
         !client_.forwarding_partial && client_.output != ClientConnection::Output::kMidMessage &&
         !links_[0].HasInternal() && !links_[1].HasInternal();
}

void Session::OnInternalAnswered() { life_.wake.Notify(); }

void Session::OnClientAnswered(const ExpectedReply& reply, TransactionStatus status,
                               bool forwarded) {
  NoteAnswered();
  // The session settles the mirror before the client goes on.
  if (reply.mirror) life_.wake.Notify();
  // The rest of its Query is skipped, whether or not its reply waits with a mirror.
  if (reply.failed) transaction_.failed_group = reply.group;
  if (!forwarded) return;
  transaction_.reported = status;
}

void Session::NoteSent() { client_.cycles.Sent(QueryTimer::Clock::now()); }

void Session::ReconcileSentTransaction() {
  if (links_[0].forward_pending == 0 && links_[1].forward_pending == 0 && !planner_.in_batch() &&
      !mirror_.settling()) {
    transaction_.sent = ClientTransaction::Sent::kAsReported;
  }
}

void Session::NoteAnswered() {
  if (auto took = client_.cycles.Answered(QueryTimer::Clock::now())) {
    server_.stats().ObserveQuery(*took);
  }
}

void Session::PublishState() {
  ClientRecord::State state = ClientRecord::State::kActive;
  if (PendingResults() == 0) {
    switch (transaction_.reported) {
      case TransactionStatus::kIdle: state = ClientRecord::State::kIdle; break;
      case TransactionStatus::kInBlock: state = ClientRecord::State::kInTransaction; break;
      case TransactionStatus::kFailed: state = ClientRecord::State::kFailedTransaction; break;
    }
  }
  record_.state.store(state, std::memory_order_relaxed);
  record_.queries.store(planner_.queries(), std::memory_order_relaxed);
}

ClientRow Session::Describe() const {
  ClientRow row;
  row.session = id_;
  row.client = record_.address;
  row.connected_at = record_.connected_at;
  if (!record_.described.load(std::memory_order_acquire)) {
    row.state = "starting";
    return row;
  }
  row.user = record_.user;
  row.database = record_.database;
  row.backend_pid = record_.backend_pid;
  row.tls = record_.tls;
  row.queries = record_.queries.load(std::memory_order_relaxed);
  switch (record_.state.load(std::memory_order_relaxed)) {
    case ClientRecord::State::kStarting: row.state = "starting"; break;
    case ClientRecord::State::kActive: row.state = "active"; break;
    case ClientRecord::State::kIdle: row.state = "idle"; break;
    case ClientRecord::State::kInTransaction: row.state = "idle in transaction"; break;
    case ClientRecord::State::kFailedTransaction:
      row.state = "idle in transaction (aborted)";
      break;
  }
  return row;
}

void Session::End(std::optional<ErrorFields> final_error) {
  if (ended()) return;
  life_.stage = Lifecycle::kEnded;
  life_.final_error = std::move(final_error);
  client_.stream.Cancel();
  for (Link& l : links_) {
    if (l.stream) l.stream->Close();
  }
  life_.wake.Notify();
}

void Session::BeginShutdown() {
  switch (life_.stage) {
    case Lifecycle::kLoggingIn: client_.stream.Close(); return;
    case Lifecycle::kRelaying: life_.stage = Lifecycle::kDraining; break;
    case Lifecycle::kDraining: break;
    case Lifecycle::kEnded: return;
  }
  if (IdleOutsideTransaction()) End(AdminShutdown());
}

void Session::Abort() {
  if (life_.stage == Lifecycle::kLoggingIn) {
    client_.stream.Close();
    return;
  }
  End(AdminShutdown());
}

awaitable<void> Session::SendToClient(std::string_view bytes) {
  std::vector<asio::const_buffer> buffers{asio::buffer(bytes.data(), bytes.size())};
  co_await WriteToClient(ClientConnection::Writer::kSession, buffers, false);
}

awaitable<bool> Session::WriteToClient(ClientConnection::Writer who,
                                       const std::vector<asio::const_buffer>& buffers,
                                       bool mid_message) {
  co_await WaitUntil([this, who] { return client_.MayWrite(who); });
  if (ended() || !client_.writable()) co_return false;
  client_.writer = who;
  error_code ec;
  co_await client_.stream.Write(buffers, ec);
  if (ec) {
    client_.Failed();
    co_return false;
  }
  client_.Relayed(who, mid_message);
  if (!mid_message) life_.wake.Notify();
  co_return true;
}

}  // namespace pgshift::proxy
