// Client to backend: turns what the client sends into steps, each a run of
// messages for one link with the replies they will be answered with. With
// no configured tables every message is streamed to old untouched. With
// them, the messages that carry or follow SQL are read whole: Query and
// Parse are planned (the fast path skips planning for text that names no
// configured table), Bind, Describe, Execute and Close follow their
// statement or portal, Sync and Flush their batch. A refused statement is
// replaced by a probe that fails in its place (refusals.h).
//
// The planner keeps the client's statements, portals and SQL PREPAREs; it
// reads and updates the rest of the session through PlannerContext, so it
// is tested with a context of its own and no sockets.
//
// planner.cc: messages, steps, Query; planner_extended.cc: Parse, Bind,
// Execute, Describe, Close; planner_prepared.cc: SQL PREPARE and the
// statements pgshift prepares on a connection; planner_refusals.cc: what
// is refused, and why.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "protocol/frame.h"
#include "protocol/messages/parse.h"
#include "proxy/server.h"
#include "proxy/session/client_statements.h"
#include "proxy/session/client_transaction.h"
#include "proxy/session/link.h"
#include "proxy/session/refusals.h"
#include "proxy/session/step.h"
#include "routing/coordination_gate.h"
#include "routing/router.h"
#include "routing/session_settings.h"

namespace pgshift::proxy {

class ShadowRunner;

// The session state the planner reads and keeps, beside its own.
struct PlannerContext {
  const SettingsPtr& settings;  // renewed by the session between transactions
  std::array<Link, 2>& links;   // indexed by routing::BackendId
  ClientTransaction& transaction;
  // The client's SETs and the like, which run on old only.
  routing::SessionSettings& client_settings;
  Refusals& refusals;
  ShadowRunner* shadow;  // null: no shadow reads are compared
  uint64_t session_id;
  // With coordination: the lease and the flips' fences (null: off).
  routing::CoordinationGate* gate = nullptr;
};

class Planner : public protocol::FrameHandler {
 public:
  explicit Planner(PlannerContext context) : ctx_(context) {}
  // A session that ends inside a transaction leaves the gate too (else a
  // flip of its tables would wait for it forever).
  ~Planner() override { LeaveGate(); }
  Planner(const Planner&) = delete;
  Planner& operator=(const Planner&) = delete;

  // Before each client read: no steps yet.
  void Reset();
  protocol::Delivery OnHeader(char type, size_t) override;
  void OnStreamed(std::string_view bytes) override;
  void OnWhole(char type, std::string_view message) override;

  // This read's steps.
  Step* begin() { return steps_.data(); }
  Step* end() { return steps_.data() + count_; }
  size_t size() const { return count_; }
  bool terminated() const { return terminated_; }
  // A malformed message: the session ends with 08P01.
  const std::string& error() const { return error_; }
  // An extended batch is open (its Sync not yet sent).
  bool in_batch() const { return batch_link_.has_value(); }
  // The client's Query, Sync and FunctionCall messages so far.
  uint64_t queries() const { return queries_; }
  // The client's transaction ended on every server. While this read's
  // steps are still being run, its tables stay in flight at the gate until
  // they have all run: a later step was planned under the entries this
  // transaction held (a pipelined COMMIT; UPDATE), and a flip acknowledged
  // in between would let it run under the old phase.
  void EndTransaction();
  // The session has run this read's steps (Reset: it is about to plan the
  // next read's).
  void StepsRun() { steps_running_ = false; }
  // Coordination (planner_coordination.cc): whether `bytes` (what the
  // client sent, whole messages first) may touch a table a flip has
  // fenced, when this transaction has touched none of the flip's tables
  // yet: a Query's or Parse's text that names it, a Bind or Execute of a
  // statement planned on it. The session holds such messages until the
  // flip has ended.
  bool MayTouchFenced(std::string_view bytes) const;
  // This transaction touched a configured table (its plan is the
  // settings': they cannot be renewed before it ends).
  bool entered_tables() const { return !entered_.empty(); }
  // Some table this transaction touched changed phase after settings
  // generation `generation`.
  bool EnteredChangedSince(uint64_t generation) const;

 private:
  using Prepared = ClientStatements::Prepared;
  using SqlPrepared = ClientStatements::SqlPrepared;
  using BackendId = routing::BackendId;

  const routing::Config& config() const { return *ctx_.settings->config; }
  routing::Router& router() { return *ctx_.settings->router; }
  bool two_servers() { return router().has_new_server(); }
  Link& link(BackendId server) { return ctx_.links[static_cast<int>(server)]; }
  bool in_transaction() const { return ctx_.transaction.open(); }

  // Steps (planner.cc).
  Step& NewStep(BackendId target);
  // The current step when it is `target`'s and not sealed, else a new one.
  Step& Target(BackendId target);
  // With two servers a Query, and an extended batch, starts a step of its
  // own, so that pgshift may begin a transaction before it (a write mirrored
  // across servers outside one) or act between it and what follows.
  void OpenStep(BackendId target);
  // Nothing more goes into the current step (two servers only).
  void Seal();
  void Add(BackendId target, std::string_view bytes);
  void AddOwned(BackendId target, std::string bytes);
  // What the Query about to be added will be answered with.
  ExpectedReply& ExpectQuery(BackendId target, std::vector<ReplyUnit> units = {});
  // A Sync closes its batch's reply cycle.
  void ExpectSync(BackendId target);
  // The result of an Execute or the answer to a Describe, reshaped as
  // `plan` says for its statement.
  void ExpectUnit(BackendId target, bool describe, const routing::PlanPtr& plan,
                  std::shared_ptr<ShadowCapture> capture = nullptr);
  static std::vector<ReplyUnit> Units(const std::vector<routing::ResultShape>& shapes);
  // The step of a COMMIT, SAVEPOINT or mirrored write, which pgshift
  // prepares for when it runs. A COMMIT gets a stand-in that fails in its
  // place, in case the mirror cannot be prepared.
  void MarkStep(BackendId target, const routing::Plan& plan, bool simple_query);

  // Plans and where they go (planner.cc).
  // Outside the fast path, and in any transaction when a second server is
  // in play (so that writes and transaction control are known), a text gets
  // a plan.
  routing::PlanPtr PlanFor(std::string_view sql);
  // Transaction control with no table goes where the client's transaction
  // is, and the other server, when it is in the transaction too, runs it
  // first.
  BackendId TransactionTarget(const routing::Plan& plan);
  // The server a statement goes to: its plan's (transaction control goes
  // where the client's transaction is), or old without a plan.
  BackendId TargetOf(const routing::PlanPtr& plan);
  // With a second server, the client's setting changes, which run on old
  // only, are kept so that new can be given them (Session::SyncSettings).
  // A prepared one counts when it is parsed. A refusal when keeping them
  // would pass client_state_max_bytes.
  std::optional<routing::Refusal> NoteSettings(std::string_view sql);
  // A refusal (54000) when keeping `adding` more bytes of the client's
  // statements, portals and settings would pass client_state_max_bytes.
  std::optional<routing::Refusal> OverStateLimit(size_t adding) const;
  // The client's transaction as this statement leaves it, and whether the
  // transaction's setting changes stand once it ends.
  void NoteTransactionControl(const routing::Plan& plan);
  void NoteWrite(const routing::Plan& plan, BackendId target);

  // The simple protocol (planner.cc).
  void OnSync(std::string_view message);
  void OnQuery(std::string_view message, std::string_view payload);
  // One Query's text (`message` carries it), or one statement of a split one.
  void PlanQuery(std::string_view message, std::string_view sql);
  // A Query split at its transaction control (Plan::statements): each
  // statement planned as a Query of its own, in one group, so that only the
  // last one's (or a failed one's) ReadyForQuery reaches the client and a
  // failure skips the rest, as PostgreSQL stops at the first error.
  void SplitQuery(const routing::Plan& plan);
  // A planned Query's messages, once it is known to go ahead.
  void SendQuery(BackendId target, const routing::PlanPtr& plan, std::string_view message);
  // The client's Query as it is, answered as it would be directly.
  void ForwardQuery(BackendId target, std::string_view message);
  // A Query whose statements need different servers: one Query per part,
  // each sent once the one before has succeeded.
  void AddParts(const routing::Plan& plan);

  // The extended protocol (planner_extended.cc).
  // Extended-protocol messages go where their batch goes.
  void StartBatch(BackendId target);
  void AddToBatch(BackendId target, std::string_view bytes);
  void OnParse(std::string_view message, std::string_view payload);
  void OnBind(std::string_view message, std::string_view payload);
  void OnExecute(std::string_view message, std::string_view payload);
  void OnDescribeOrClose(char type, std::string_view message, std::string_view payload);
  // A named statement prepared under earlier settings is planned again when
  // a batch begins with it; when its text or server changed, it is
  // prepared again there (and closed where it was) before the batch, unseen
  // by the client. Mid-batch it keeps its plan until the next batch. False
  // when the new plan refuses it (a refusal is in place).
  bool Refresh(Prepared& prepared);
  // A write mirrored across servers is applied once its batch's
  // ReadyForQuery has come, so transaction control after it in the same
  // batch (no Sync between) must wait for the mirror, and a write after a
  // COMMIT or ROLLBACK in it must not join the ending transaction's
  // mirror: pgshift ends the batch there with a Sync of its own, whose
  // ReadyForQuery the client sees only if the batch failed (which skips
  // the rest, as the server would have up to the client's Sync). Inside a
  // transaction block the client's statements and portals outlive that
  // Sync; after its end, so do the statements (the portals ended with it).
  void SplitBatch(BackendId target);

  // SQL PREPARE, and pgshift's own statements (planner_prepared.cc).
  // An SQL-level EXECUTE or DEALLOCATE of a statement PREPAREd on a
  // configured table goes where the PREPARE went; one prepared under
  // earlier settings is prepared again first (on its new server, and
  // dropped on the old one), unseen by the client. DEALLOCATE ALL and
  // DISCARD ALL go to old as any statement does, and drop those on new
  // too. True when `sql` was routed here.
  bool RouteSqlPrepared(std::string_view message, std::string_view sql);
  bool DeallocateAll(std::string_view message);
  // Plans an SQL-level PREPARE again under the current settings and
  // prepares it again where that plan sends it, in a step of its own that
  // the EXECUTE joins. False when the new plan refuses it (the refusal
  // answers the EXECUTE). Its entry is gone when it no longer touches a
  // configured table.
  bool Reprepare(const std::string& name, SqlPrepared& p);
  // A Query as an extended batch on a statement pgshift prepares once per
  // server connection: PostgreSQL parses and plans a mirrored write's long
  // text once, not on every execution. False: sent as a Query after all.
  bool SendPrepared(BackendId target, const routing::ParameterizedText& p, ExpectedReply& reply);
  // Makes room among a full link's statements: the one used least recently
  // (and not in flight) is closed ahead of the Parse in `messages`.
  static bool CloseLeastUsed(Link& link, std::string& messages);
  // DISCARD ALL and DEALLOCATE drop pgshift's prepared statements with the
  // client's. A text that merely mentions either word costs only preparing
  // again, under new names, so a case-insensitive search is enough here.
  // Such a text names no configured table, so it runs on old: new keeps
  // pgshift's statements (forgetting them there would leave them behind).
  void ForgetStatementsIfDeallocated(std::string_view sql);

  // Coordination (planner_coordination.cc). A statement on configured
  // tables: refused (57P03) when this instance cannot confirm their phase
  // (no lease), or (40001) when a flip changed it during this transaction;
  // else its tables count as in flight until the transaction ends.
  // `planned_under` is the settings generation the plan was made under: a
  // portal bound before a flip and executed after it carries the old
  // phase's routing, and is refused (40001) rather than run.
  std::optional<routing::Refusal> Admit(const routing::Plan& plan, uint64_t planned_under);
  // Admit's verdict on `tables` (a commit's: those its transaction entered).
  std::optional<routing::Refusal> Admitted(const std::vector<std::string>& tables,
                                           uint64_t planned_under);
  // The transaction's tables are no longer in flight.
  void LeaveGate();

  // Refusals (planner_refusals.cc).
  // Answers in place of the statement with `refusal`, raised on `target`.
  void Refuse(BackendId target, const routing::Refusal& refusal, bool simple_query);
  // A transaction may write on one server only: its commit cannot be made
  // atomic across two.
  std::optional<routing::Refusal> SecondWriter(const routing::Plan& plan, BackendId target);
  // Transaction control after a write mirrored across servers in the same
  // batch, outside a transaction block: pgshift cannot split that batch
  // (SplitBatch) without ending the implicit transaction.
  std::optional<routing::Refusal> ControlAfterImplicitMirroredWrite();
  // With two servers, transaction control in a Query with statements on
  // migrating tables.
  std::optional<routing::Refusal> MixedTransactionControl(const routing::Plan& plan);
  // A split Query whose statements outside a transaction block are followed
  // by anything but COMMIT or its end: PostgreSQL runs them with what
  // follows as one implicit transaction (a ROLLBACK undoes them, a BEGIN
  // takes them in), which separate Queries cannot keep.
  std::optional<routing::Refusal> UnsplittableQuery(
      const std::vector<routing::QueryStatement>& statements);
  // Transaction control the other server runs too, first, when it is in
  // the client's transaction (not PREPARE TRANSACTION, nor the prepared
  // transactions' COMMIT and ROLLBACK, which name one server's).
  static bool RunsOnBothServers(routing::TransactionKind kind);
  // One batch (up to Sync) goes to one server; a message for the other is
  // refused, and the server skips the rest of the batch.
  bool BatchMismatch(BackendId target);

  PlannerContext ctx_;
  std::vector<Step> steps_;  // the first `count_` are this read's
  size_t count_ = 0;
  bool terminated_ = false;
  std::string error_;
  bool routing_ = false;  // some table is configured
  BackendId last_target_ = BackendId::kOld;
  uint64_t queries_ = 0;
  ClientStatements client_;              // the client's statements, portals and SQL PREPAREs
  std::optional<BackendId> batch_link_;  // where this extended batch goes
  bool batch_refused_ = false;           // the rest of it is skipped by the server
  // A write mirrored across servers is in the client's open extended batch.
  bool mirrored_in_batch_ = false;
  // The client's transaction ended (COMMIT, ROLLBACK, PREPARE TRANSACTION)
  // in its open extended batch, across servers: what follows before its
  // Sync goes in a batch of its own (SplitBatch).
  std::optional<BackendId> ended_in_batch_;
  // The group of the client's extended batch once pgshift split it
  // (SplitBatch): the steps after the split carry it.
  uint64_t split_batch_group_ = 0;
  BackendId copy_link_ = BackendId::kOld;  // where COPY data goes
  uint64_t next_group_ = 0;                // numbers Queries split between servers
  // While the statements of a split Query are planned one by one: their
  // group, and whether the one being planned is its first, its last.
  struct QueryPart {
    uint64_t group = 0;
    bool first = true;
    bool last = true;
  };
  QueryPart part_;
  // The Queries a split Query became, for this read's steps.
  std::deque<std::string> split_messages_;
  // With coordination: the configured tables this transaction touched
  // (entered at the gate).
  std::vector<std::string> entered_;
  bool steps_running_ = false;  // from Reset until StepsRun
  uint64_t entered_epoch_ = 0;  // the gate's lease epoch when entered_ began
};

}  // namespace pgshift::proxy
