// The relay's decisions, one server message at a time, against the reply
// the link expects.
#include "proxy/session/reply_classifier.h"

#include <gtest/gtest.h>

#include <vector>

namespace pgshift::proxy {
namespace {

namespace backend = protocol::backend;
using Action = ReplyAction;
using Capture = ReplyDecision::CaptureStep;

constexpr size_t kSize = 64;  // any message size but ReadyForQuery's

std::shared_ptr<const routing::RemoteMirror> Remote() {
  return std::make_shared<routing::RemoteMirror>();
}

// Classifies each message in turn, advancing `expected`, and returns the actions.
std::vector<Action> Classify(ExpectedReply& expected, const std::string& types,
                             bool refusals_pending = false) {
  std::vector<Action> actions;
  for (char type : types) {
    ReplyDecision d = ClassifyReply(&expected, type, kSize, refusals_pending);
    Advance(d, expected);
    actions.push_back(d.action);
  }
  return actions;
}

TEST(ReplyClassifier, ReadyForQueryIsReadWholeAndChecked) {
  ExpectedReply expected;
  EXPECT_EQ(ClassifyReply(&expected, backend::kReadyForQuery, 6, false).action,
            Action::kReadyForQuery);
  EXPECT_EQ(ClassifyReply(nullptr, backend::kReadyForQuery, 6, false).action,
            Action::kReadyForQuery);
  EXPECT_EQ(ClassifyReply(&expected, backend::kReadyForQuery, 7, false).action, Action::kInvalid);
  EXPECT_EQ(ClassifyReply(&expected, backend::kReadyForQuery, 6, false).delivery(),
            protocol::Delivery::kWhole);
}

TEST(ReplyClassifier, AnUnshapedResultIsStreamedOn) {
  ExpectedReply expected;
  std::string types = {backend::kRowDescription, backend::kDataRow, backend::kDataRow,
                       backend::kCommandComplete};
  for (Action a : Classify(expected, types)) EXPECT_EQ(a, Action::kForward);
  EXPECT_EQ(ClassifyReply(&expected, backend::kDataRow, kSize, false).delivery(),
            protocol::Delivery::kStream);
  EXPECT_FALSE(expected.failed);
}

TEST(ReplyClassifier, AnErrorIsReadWholeOnlyWhenItMayBeARefusal) {
  ExpectedReply plain;
  EXPECT_EQ(Classify(plain, {backend::kErrorResponse}), std::vector{Action::kForward});
  EXPECT_TRUE(plain.failed);
  ExpectedReply probed;
  EXPECT_EQ(Classify(probed, {backend::kErrorResponse}, true), std::vector{Action::kInspectError});
  EXPECT_EQ(ClassifyReply(nullptr, backend::kErrorResponse, kSize, true).action,
            Action::kInspectError);
}

TEST(ReplyClassifier, PgshiftsOwnExchangeNeverReachesTheClient) {
  ExpectedReply expected;
  expected.internal = std::make_shared<InternalReply>();
  EXPECT_EQ(Classify(expected, {backend::kRowDescription, backend::kCommandComplete}),
            (std::vector{Action::kInternal, Action::kInternal}));
  EXPECT_EQ(Classify(expected, {backend::kDataRow}), std::vector{Action::kInternalWhole});
  expected.internal->value = "42";  // only the first row's value is kept
  EXPECT_EQ(Classify(expected, {backend::kDataRow}), std::vector{Action::kInternal});
  EXPECT_EQ(Classify(expected, {backend::kErrorResponse}), std::vector{Action::kInternalWhole});
}

// An INSERT without RETURNING, rewritten to return pgshift's two columns
// for its mirror on the other server.
ExpectedReply MirroredWrite(bool returning) {
  ExpectedReply expected;
  ReplyUnit unit;
  unit.shape.tag = "INSERT";
  unit.shape.no_rows = !returning;
  unit.shape.remote = Remote();
  unit.mirror_index = 0;
  expected.units.push_back(unit);
  expected.mirror = std::make_shared<MirrorBatch>();
  expected.mirror->rows.emplace_back();
  return expected;
}

TEST(ReplyClassifier, AMirroredWritesRowsAreCollectedAndItsTagReshaped) {
  ExpectedReply expected = MirroredWrite(false);
  std::string types = {backend::kRowDescription, backend::kDataRow, backend::kDataRow,
                       backend::kCommandComplete};
  EXPECT_EQ(Classify(expected, types), (std::vector{Action::kDrop, Action::kCollectRows,
                                                    Action::kCollectRows, Action::kReshapeTag}));
  EXPECT_EQ(expected.next, 1u);
  // The next result is no longer the write's.
  EXPECT_EQ(Classify(expected, {backend::kCommandComplete}), std::vector{Action::kForward});
}

TEST(ReplyClassifier, AMirroredWriteWithReturningLosesOnlyPgshiftsColumns) {
  ExpectedReply expected = MirroredWrite(true);
  EXPECT_EQ(Classify(expected, {backend::kRowDescription, backend::kDataRow}),
            (std::vector{Action::kStripColumns, Action::kCollectRows}));
}

TEST(ReplyClassifier, AMirroredCyclesRepliesAreHeldExceptForCopyAndCommit) {
  ExpectedReply expected = MirroredWrite(false);
  EXPECT_TRUE(ClassifyReply(&expected, backend::kCommandComplete, kSize, false).held);
  EXPECT_FALSE(ClassifyReply(&expected, backend::kCopyInResponse, kSize, false).held);
  expected.mirror->mode = MirrorBatch::Mode::kCommit;
  EXPECT_FALSE(ClassifyReply(&expected, backend::kCommandComplete, kSize, false).held);
  ExpectedReply plain;
  EXPECT_FALSE(ClassifyReply(&plain, backend::kCommandComplete, kSize, false).held);
}

TEST(ReplyClassifier, ADescribeOfAWriteWithoutRowsIsAnsweredNoData) {
  ExpectedReply expected;
  ReplyUnit describe;
  describe.describe = true;
  describe.shape.no_rows = true;
  describe.shape.tag = "UPDATE";
  expected.units = {describe, describe};
  EXPECT_EQ(Classify(expected, {backend::kRowDescription}), std::vector{Action::kStripColumns});
  EXPECT_EQ(expected.next, 1u);
  EXPECT_EQ(Classify(expected, {backend::kNoData}), std::vector{Action::kForward});
  EXPECT_EQ(expected.next, 2u);
}

TEST(ReplyClassifier, PgshiftsOwnStatementsResultsAreHidden) {
  ExpectedReply expected;
  ReplyUnit unit;
  unit.shape.hidden = true;
  expected.units.push_back(unit);
  EXPECT_EQ(
      Classify(expected, {backend::kRowDescription, backend::kDataRow, backend::kCommandComplete}),
      (std::vector{Action::kDrop, Action::kDrop, Action::kDrop}));
}

TEST(ReplyClassifier, AQueryOnPgshiftsPreparedStatementDropsTheExtendedReplies) {
  ExpectedReply expected;
  expected.statement_key = "INSERT ...";
  expected.prepares = true;
  ReplyDecision parsed = ClassifyReply(&expected, backend::kParseComplete, kSize, false);
  EXPECT_EQ(parsed.action, Action::kDrop);
  EXPECT_TRUE(parsed.statement_parsed);
  Advance(parsed, expected);
  EXPECT_TRUE(expected.parse_completed);
  EXPECT_EQ(
      Classify(expected, {backend::kBindComplete, backend::kNoData, backend::kCommandComplete}),
      (std::vector{Action::kDrop, Action::kDrop, Action::kForward}));
  ReplyDecision failed = ClassifyReply(&expected, backend::kErrorResponse, kSize, false);
  EXPECT_EQ(failed.action, Action::kInspectError);
  EXPECT_TRUE(failed.from_own_statement);
}

TEST(ReplyClassifier, AnErrorEndsTheCyclesUnits) {
  ExpectedReply expected;
  ReplyUnit tagged;
  tagged.shape.tag = "DELETE";
  expected.units = {tagged, tagged, tagged};
  EXPECT_EQ(Classify(expected, {backend::kCommandComplete, backend::kErrorResponse}),
            (std::vector{Action::kReshapeTag, Action::kForward}));
  EXPECT_EQ(expected.next, 3u);
  EXPECT_TRUE(expected.failed);
}

ExpectedReply SampledRead() {
  ExpectedReply expected;
  ReplyUnit unit;
  unit.capture = std::make_shared<ShadowCapture>();
  expected.units.push_back(unit);
  return expected;
}

TEST(ReplyClassifier, ASampledReadIsKeptUntilComplete) {
  ExpectedReply expected = SampledRead();
  ReplyDecision d = ClassifyReply(&expected, backend::kRowDescription, kSize, false);
  EXPECT_EQ(d.action, Action::kCapture);
  EXPECT_EQ(d.capture, Capture::kKeep);
  d = ClassifyReply(&expected, backend::kDataRow, kSize, false);
  EXPECT_EQ(d.capture, Capture::kKeep);
  d = ClassifyReply(&expected, backend::kCommandComplete, kSize, false);
  EXPECT_EQ(d.action, Action::kForward);
  EXPECT_EQ(d.capture, Capture::kComplete);
  EXPECT_TRUE(d.advance);

  ExpectedReply suspended = SampledRead();
  EXPECT_EQ(ClassifyReply(&suspended, backend::kPortalSuspended, kSize, false).capture,
            Capture::kIncomplete);
  ExpectedReply failed = SampledRead();
  d = ClassifyReply(&failed, backend::kErrorResponse, kSize, false);
  EXPECT_EQ(d.action, Action::kInspectError);
  EXPECT_EQ(d.capture, Capture::kKeep);
  // Once queued, the rest is not the capture's.
  expected.units[0].capture->Queue(nullptr);
  EXPECT_EQ(ClassifyReply(&expected, backend::kDataRow, kSize, false).action, Action::kForward);
}

TEST(ReplyClassifier, ADescribeOfASampledPortalGivesTheKeptResultItsColumns) {
  ExpectedReply expected = SampledRead();
  ReplyUnit describe;
  describe.describe = true;
  expected.units.insert(expected.units.begin(), describe);
  ReplyDecision d = ClassifyReply(&expected, backend::kRowDescription, kSize, false);
  EXPECT_EQ(d.action, Action::kCapture);
  EXPECT_EQ(d.capture, Capture::kKeepNext);
  EXPECT_EQ(d.unit, 0);
  Advance(d, expected);
  EXPECT_EQ(expected.next, 1u);
}

}  // namespace
}  // namespace pgshift::proxy
