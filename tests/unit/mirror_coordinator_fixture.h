// The mirror coordinator driven through a scripted port (scripted_port.h):
// a fixture with both links ready, a write to public.channels, and the
// client's transaction, shared by the coordinator's tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "common/strings.h"
#include "protocol/frame.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/command_complete.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/parse.h"
#include "protocol/messages/ready_for_query.h"
#include "proxy/session/mirror_coordinator.h"
#include "proxy/two_phase.h"
#include "routing/state_schema.h"
#include "tests/unit/scripted_port.h"

namespace pgshift::proxy {
namespace {

using protocol::ErrorFields;
using protocol::TransactionStatus;
using routing::BackendId;
using Statements = std::vector<std::string>;

constexpr int kOld = static_cast<int>(BackendId::kOld);
constexpr int kNew = static_cast<int>(BackendId::kNew);
constexpr const char* kApply = "APPLY public.channels";
constexpr const char* kDeployment = "d1";

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

std::string Reply(std::string_view tag, TransactionStatus status) {
  std::string out;
  protocol::CommandComplete{std::string(tag)}.Encode(out);
  protocol::ReadyForQuery{status}.Encode(out);
  return out;
}

// The error the client was sent, if it was sent one.
std::optional<ErrorFields> ClientError(const std::string& client) {
  if (client.empty() || client[0] != protocol::ErrorResponse::kType) return std::nullopt;
  auto size = protocol::CompleteMessageSize(client, protocol::kBackendTypes,
                                            protocol::kDefaultMaxMessageSize);
  if (!size.ok() || *size == 0) return std::nullopt;
  auto e = protocol::ErrorResponse::Decode(
      std::string_view(client).substr(protocol::kHeaderSize, *size - protocol::kHeaderSize));
  return e.ok() ? std::optional<ErrorFields>(*e) : std::nullopt;
}

class MirrorCoordinatorTest : public ::testing::Test {
 protected:
  MirrorCoordinatorTest() {
    for (BackendId server : {BackendId::kOld, BackendId::kNew}) {
      Link& l = links_[static_cast<int>(server)];
      l.server = server;
      l.name = routing::BackendName(server);
      l.state = Link::State::kReady;
    }
    auto settings = std::make_shared<Settings>();
    config_->proxy.deployment = kDeployment;
    config_->proxy.mirror_lock_timeout_s = 0;  // its statements are tested on their own
    settings->config = config_;
    settings->mirroring.can_prepare = {true, true};
    settings_ = settings;
  }

  Link& old() { return links_[kOld]; }
  Link& fresh() { return links_[kNew]; }

  // A write to public.channels on old, mirrored to new.
  Step Write(bool opens = true) {
    Step step;
    step.target = BackendId::kOld;
    step.mirrored = true;
    step.opens = opens;
    step.in_client_transaction = transaction_.open();
    return step;
  }
  Step Commit() {
    Step step;
    step.target = BackendId::kOld;
    step.transaction = routing::TransactionKind::kCommit;
    step.opens = true;
    step.fail_probe = refusals_.Reserve();
    return step;
  }
  // The write's cycle as old answered it: one row of key `key`.
  void Answered(MirrorBatch& batch, routing::MirrorErrorPolicy policy, std::string key = "1",
                bool deletes = false) {
    auto mirror = std::make_shared<routing::RemoteMirror>();
    mirror->table = "public.channels";
    mirror->apply_sql = kApply;
    mirror->deletes = deletes;
    mirror->on_error = policy;
    mirror->pipelined = pipelined_;
    MirrorBatch::Rows rows;
    rows.mirror = mirror;
    batch.rows.push_back(std::move(rows));
    batch.KeepRow(0, "{\"id\": 1}", std::move(key));
    batch.status = old().transaction_status;
    batch.HoldReply(Reply("INSERT 0 1", batch.status));
    batch.held_ready = true;
    batch.outcome = MirrorBatch::Outcome::kSucceeded;
  }
  // A write run through the coordinator, as the session runs it.
  std::shared_ptr<MirrorBatch> Mirror(Step step, routing::MirrorErrorPolicy policy,
                                      std::string key = "1", bool deletes = false) {
    std::shared_ptr<MirrorBatch> batch;
    EXPECT_TRUE(RunToEnd(mirror_.Collect(step)));
    EXPECT_TRUE(RunToEnd(mirror_.BeforeStep(step, batch)));
    EXPECT_TRUE(mirror_.settling());
    Answered(*batch, policy, std::move(key), deletes);
    RunToEnd(mirror_.Settle(old(), *batch));
    EXPECT_FALSE(mirror_.settling());
    return batch;
  }
  // The session's order before a COMMIT: what a pipelined apply left is
  // collected, then the mirror is prepared.
  bool StartCommit(Step& commit, std::shared_ptr<MirrorBatch>& batch) {
    if (!RunToEnd(mirror_.Collect(commit))) return false;
    return RunToEnd(mirror_.BeforeStep(commit, batch));
  }
  // The client's COMMIT, run as the session runs it, answered by old.
  void CommitAnswered() {
    Step commit = Commit();
    std::shared_ptr<MirrorBatch> batch;
    EXPECT_TRUE(StartCommit(commit, batch));
    ASSERT_TRUE(batch);
    batch->outcome = MirrorBatch::Outcome::kSucceeded;
    RunToEnd(mirror_.Settle(old(), *batch));
  }
  // The client's transaction, begun on old.
  void InClientTransaction() {
    transaction_.reported = TransactionStatus::kInBlock;
    old().transaction_status = TransactionStatus::kInBlock;
  }
  std::string Prepared() const { return PreparedTransactionId(kDeployment, BackendId::kOld, kXid); }
  std::string Divergence() const {
    return StrCat("INSERT INTO ", routing::kDivergenceTable, " (table_name, key, error) VALUES (",
                  QuoteLiteral("public.channels"), ", ", QuoteLiteral("1"), ", ",
                  QuoteLiteral("scripted failure"), ")");
  }

  std::shared_ptr<routing::Config> config_ = std::make_shared<routing::Config>();
  ScriptedPort port_;
  std::array<Link, 2> links_;
  SettingsPtr settings_;
  bool pipelined_ = true;  // the table's mirror_apply
  ClientTransaction transaction_;
  Refusals refusals_;
  routing::SessionSettings client_settings_;
  routing::WritesInFlight writes_;
  MirrorCoordinator mirror_{MirrorContext{port_, links_, settings_, transaction_, refusals_,
                                          client_settings_, 7, writes_}};
};

}  // namespace
}  // namespace pgshift::proxy
