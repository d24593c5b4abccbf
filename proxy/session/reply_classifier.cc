#include "proxy/session/reply_classifier.h"

namespace pgshift::proxy {

namespace backend = protocol::backend;

protocol::Delivery ReplyDecision::delivery() const {
  switch (action) {
    case ReplyAction::kForward:
    case ReplyAction::kDrop:
    case ReplyAction::kInvalid:
    case ReplyAction::kInternal: return protocol::Delivery::kStream;
    case ReplyAction::kReadyForQuery:
    case ReplyAction::kInternalWhole:
    case ReplyAction::kReshapeTag:
    case ReplyAction::kStripColumns:
    case ReplyAction::kCollectRows:
    case ReplyAction::kCapture:
    case ReplyAction::kInspectError: return protocol::Delivery::kWhole;
  }
  return protocol::Delivery::kStream;
}

namespace {

bool Capturing(const ReplyUnit& unit) {
  return unit.capture && !unit.describe && !unit.capture->queued();
}

// A message of a sampled read's result, before the result's shape is
// looked at. True when that decides it.
bool ClassifyCaptured(char type, ReplyDecision& d) {
  using Step = ReplyDecision::CaptureStep;
  switch (type) {
    case backend::kRowDescription:
    case backend::kDataRow:
      d.capture = Step::kKeep;
      d.action = ReplyAction::kCapture;
      return true;
    case backend::kErrorResponse: d.capture = Step::kKeep; return false;
    case backend::kCommandComplete:
      d.capture = Step::kComplete;
      d.advance = true;
      return true;
    case backend::kEmptyQueryResponse:
    case backend::kPortalSuspended:  // nothing to compare with, or only part of it
      d.capture = Step::kIncomplete;
      d.advance = true;
      return true;
    default: return false;
  }
}

// A message of the current unit's result, reshaped as its statement's plan
// says. True when that decides it.
bool ClassifyShaped(const ExpectedReply& expected, char type, ReplyDecision& d) {
  const ReplyUnit& unit = expected.units[expected.next];
  const routing::ResultShape& shape = unit.shape;
  const bool strip = shape.strips_mirror_columns();
  const bool drop = shape.no_rows || shape.hidden;
  switch (type) {
    case backend::kRowDescription:
      if (!unit.describe) {
        d.action = drop    ? ReplyAction::kDrop
                   : strip ? ReplyAction::kStripColumns
                           : ReplyAction::kForward;
        return true;
      }
      d.advance = true;
      // A Describe of a sampled read's portal (before its Execute): the
      // columns of the result that is kept.
      if (expected.next + 1 < expected.units.size() && !shape.shaped() &&
          Capturing(expected.units[expected.next + 1])) {
        d.capture = ReplyDecision::CaptureStep::kKeepNext;
        d.action = ReplyAction::kCapture;
        return true;
      }
      d.action = shape.no_rows || strip ? ReplyAction::kStripColumns : ReplyAction::kForward;
      return true;
    case backend::kNoData: d.advance = unit.describe; return true;
    case backend::kDataRow:
      if (strip && expected.mirror && unit.mirror_index >= 0) {
        d.action = ReplyAction::kCollectRows;
      } else {
        d.action = drop ? ReplyAction::kDrop : ReplyAction::kForward;
      }
      return true;
    case backend::kCommandComplete:
      d.advance = true;
      // A hidden mirrored write (a COPY's INSERT) still counts its rows.
      d.action = shape.hidden && shape.counts_rows == nullptr ? ReplyAction::kDrop
                 : shape.tag.empty()                          ? ReplyAction::kForward
                                                              : ReplyAction::kReshapeTag;
      return true;
    case backend::kEmptyQueryResponse:
    case backend::kPortalSuspended: d.advance = true; return true;
    case backend::kErrorResponse:  // the server skips the rest of the cycle
      d.ends_units = true;
      return false;
    default: return true;
  }
}

}  // namespace

ReplyDecision ClassifyReply(const ExpectedReply* expected, char type, size_t size,
                            bool refusals_pending) {
  ReplyDecision d;
  if (type == backend::kReadyForQuery) {
    d.action =
        size == protocol::kHeaderSize + 1 ? ReplyAction::kReadyForQuery : ReplyAction::kInvalid;
    return d;
  }
  if (expected != nullptr && expected->internal != nullptr) {
    bool wanted = type == backend::kErrorResponse ||
                  (type == backend::kDataRow && !expected->internal->value);
    d.action = wanted ? ReplyAction::kInternalWhole : ReplyAction::kInternal;
    return d;
  }
  if (expected != nullptr) {
    // The client must send its COPY data before anything is settled.
    d.held =
        expected->mirror && expected->mirror->holds_replies() && type != backend::kCopyInResponse;
    if (!expected->statement_key.empty()) {
      // A Query sent on pgshift's prepared statement: the extended
      // protocol's own replies are not the client's.
      d.statement_parsed = type == backend::kParseComplete;
      if (type == backend::kParseComplete || type == backend::kBindComplete ||
          type == backend::kNoData) {
        d.action = ReplyAction::kDrop;
        return d;
      }
      d.from_own_statement = type == backend::kErrorResponse;
    }
    if (expected->next < expected->units.size()) {
      d.unit = static_cast<int32_t>(expected->next);
      if (Capturing(expected->units[expected->next]) && ClassifyCaptured(type, d)) return d;
      if (ClassifyShaped(*expected, type, d)) return d;
    }
  }
  if (type == backend::kErrorResponse) {
    d.fails_cycle = expected != nullptr;
    if (refusals_pending || d.capture == ReplyDecision::CaptureStep::kKeep ||
        d.from_own_statement) {
      d.action = ReplyAction::kInspectError;
    }
  }
  return d;
}

void Advance(const ReplyDecision& decision, ExpectedReply& expected) {
  if (decision.statement_parsed) expected.parse_completed = true;
  if (decision.fails_cycle) expected.failed = true;
  if (decision.ends_units) {
    expected.next = expected.units.size();
  } else if (decision.advance) {
    ++expected.next;
  }
}

}  // namespace pgshift::proxy
